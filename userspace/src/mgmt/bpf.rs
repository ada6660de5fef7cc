//! The XDP program's life in userspace: load the embedded object, write the
//! policy into its maps, attach (native, else generic, else none with a
//! warning), pin the maps for operator commands, detach on drop.
//!
//! [`MapSet`] is the typed view of the maps, opened either from a freshly
//! loaded program or from the pins of a running `portier`; `portier xdp …`
//! uses the latter, so operators change the blocklist while the program stays
//! attached.

use std::collections::BTreeSet;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use aya::Ebpf;
use aya::maps::lpm_trie::Key;
use aya::maps::{Array, LpmTrie, Map, MapData, PerCpuArray};
use aya::programs::{Xdp, XdpMode as AyaMode};
use portier_common::host::HostPolicy;
use portier_common::maps::*;
use portier_common::prefix::Prefix;
use portier_common::reason::{REASON_COUNT, Reason};

use crate::config::{Cidr, XdpMode, XdpSettings};
use crate::mgmt::upgrade::handoff::{PassedLink, PassedXdp};

#[cfg(portier_xdp)]
static OBJECT: &[u8] = aya::include_bytes_aligned!(env!("PORTIER_XDP_OBJECT"));

/// The XDP object compiled into this binary, if it was built with one.
pub fn embedded_object() -> Option<&'static [u8]> {
    #[cfg(portier_xdp)]
    {
        Some(OBJECT)
    }
    #[cfg(not(portier_xdp))]
    {
        None
    }
}

/// Typed handles on the program's maps.
pub struct MapSet {
    counters: PerCpuArray<MapData, Counter>,
    config: Array<MapData, XdpConfig>,
    ports: Array<MapData, u8>,
    block_v4: LpmTrie<MapData, [u8; 4], u8>,
    block_v6: LpmTrie<MapData, [u8; 16], u8>,
    bogon_v4: LpmTrie<MapData, [u8; 4], u8>,
    bogon_v6: LpmTrie<MapData, [u8; 16], u8>,
    /// Held so its fd lives as long as the set; userspace never writes it.
    _syn: Option<Map>,
}

/// Packets and bytes per verdict reason, summed over CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub reasons: Vec<ReasonStats>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ReasonStats {
    pub reason: &'static str,
    pub action: &'static str,
    pub packets: u64,
    pub bytes: u64,
}

impl Stats {
    pub fn get(&self, reason: Reason) -> (u64, u64) {
        self.reasons
            .iter()
            .find(|r| r.reason == reason.name())
            .map_or((0, 0), |r| (r.packets, r.bytes))
    }

    pub fn total(&self, drop: bool) -> u64 {
        self.reasons
            .iter()
            .filter(|r| (r.action == "drop") == drop)
            .map(|r| r.packets)
            .sum()
    }
}

fn typed<T: TryFrom<Map, Error = aya::maps::MapError>>(map: Map, name: &str) -> anyhow::Result<T> {
    T::try_from(map).with_context(|| format!("map {name} has an unexpected type"))
}

impl MapSet {
    /// Take the maps out of a loaded program, pinning each under `pin_dir`
    /// when given.
    fn from_ebpf(
        ebpf: &mut Ebpf,
        pin_dir: Option<&Path>,
        fds: &mut Vec<(String, OwnedFd)>,
    ) -> anyhow::Result<MapSet> {
        let mut take = |name: &str| -> anyhow::Result<Map> {
            let map = ebpf
                .take_map(name)
                .ok_or_else(|| anyhow!("the XDP object has no map {name}"))?;
            if let Some(dir) = pin_dir {
                map.pin(dir.join(name))
                    .with_context(|| format!("pinning {name} in {}", dir.display()))?;
            }
            fds.push((name.to_string(), dup_map_fd(&map, name)?));
            Ok(map)
        };
        let set = MapSet {
            counters: typed(take(MAP_COUNTERS)?, MAP_COUNTERS)?,
            config: typed(take(MAP_CONFIG)?, MAP_CONFIG)?,
            ports: typed(take(MAP_PORTS)?, MAP_PORTS)?,
            block_v4: typed(take(MAP_BLOCK_V4)?, MAP_BLOCK_V4)?,
            block_v6: typed(take(MAP_BLOCK_V6)?, MAP_BLOCK_V6)?,
            bogon_v4: typed(take(MAP_BOGON_V4)?, MAP_BOGON_V4)?,
            bogon_v6: typed(take(MAP_BOGON_V6)?, MAP_BOGON_V6)?,
            // Pinned for inspection (bpftool).
            _syn: Some(take(MAP_SYN_BUCKETS)?),
        };
        Ok(set)
    }

    /// Take the maps a previous process handed over (binary upgrade),
    /// keeping a duplicate of each descriptor for the next handoff.
    fn from_fds(
        passed: Vec<(String, OwnedFd)>,
        fds: &mut Vec<(String, OwnedFd)>,
    ) -> anyhow::Result<MapSet> {
        let mut by_name: std::collections::HashMap<String, OwnedFd> = passed.into_iter().collect();
        let mut open = |name: &str| -> anyhow::Result<Map> {
            let fd = by_name
                .remove(name)
                .ok_or_else(|| anyhow!("the handoff has no map {name}"))?;
            fds.push((name.to_string(), fd.try_clone().context("dup")?));
            let data = MapData::from_fd(fd).with_context(|| format!("map {name}"))?;
            Map::from_map_data(data).with_context(|| format!("map {name}"))
        };
        let mut set = MapSet::opened_with(&mut open)?;
        set._syn = Some(open(MAP_SYN_BUCKETS)?);
        Ok(set)
    }

    /// The typed maps, each opened by `open(name)`; the SYN buckets are not
    /// among them (only a process that hands them on keeps them).
    fn opened_with(open: &mut impl FnMut(&str) -> anyhow::Result<Map>) -> anyhow::Result<MapSet> {
        Ok(MapSet {
            counters: typed(open(MAP_COUNTERS)?, MAP_COUNTERS)?,
            config: typed(open(MAP_CONFIG)?, MAP_CONFIG)?,
            ports: typed(open(MAP_PORTS)?, MAP_PORTS)?,
            block_v4: typed(open(MAP_BLOCK_V4)?, MAP_BLOCK_V4)?,
            block_v6: typed(open(MAP_BLOCK_V6)?, MAP_BLOCK_V6)?,
            bogon_v4: typed(open(MAP_BOGON_V4)?, MAP_BOGON_V4)?,
            bogon_v6: typed(open(MAP_BOGON_V6)?, MAP_BOGON_V6)?,
            _syn: None,
        })
    }

    /// Open the maps a running `portier` pinned under `pin_dir`.
    pub fn open_pinned(pin_dir: &Path) -> anyhow::Result<MapSet> {
        MapSet::opened_with(&mut |name: &str| -> anyhow::Result<Map> {
            let path = pin_dir.join(name);
            let data = MapData::from_pin(&path).with_context(|| {
                format!(
                    "cannot open {} — is portier running with XDP and pin_dir = {:?}?",
                    path.display(),
                    pin_dir
                )
            })?;
            Map::from_map_data(data).with_context(|| format!("map {name}"))
        })
    }

    /// Write a compiled policy. `previous` is what the maps hold now (`None`
    /// for fresh maps); only differences are written, so a reload costs a
    /// handful of syscalls, not 65536.
    pub fn apply(
        &mut self,
        policy: &HostPolicy,
        previous: Option<&HostPolicy>,
    ) -> anyhow::Result<()> {
        for (port, &flags) in policy.ports.iter().enumerate() {
            let before = previous
                .and_then(|p| p.ports.get(port).copied())
                .unwrap_or(0);
            if flags != before {
                self.ports
                    .set(port as u32, flags, 0)
                    .context("writing the port policy")?;
            }
        }
        sync_trie(
            &mut self.bogon_v4,
            &policy.bogon_v4,
            previous.map(|p| &p.bogon_v4[..]),
        )?;
        sync_trie(
            &mut self.bogon_v6,
            &policy.bogon_v6,
            previous.map(|p| &p.bogon_v6[..]),
        )?;
        sync_trie(
            &mut self.block_v4,
            &policy.block_v4,
            previous.map(|p| &p.block_v4[..]),
        )?;
        sync_trie(
            &mut self.block_v6,
            &policy.block_v6,
            previous.map(|p| &p.block_v6[..]),
        )?;
        // Config last: on a fresh program the classifier fails open
        // (PassInternal) until the lists are in place.
        let config = policy.config.unwrap_or_default();
        self.config
            .set(0, config, 0)
            .context("writing the XDP config")?;
        Ok(())
    }

    pub fn stats(&self) -> anyhow::Result<Stats> {
        let mut reasons = Vec::with_capacity(REASON_COUNT as usize);
        for reason in Reason::ALL {
            let per_cpu = self
                .counters
                .get(&reason.index(), 0)
                .with_context(|| format!("reading counter {}", reason.name()))?;
            let (packets, bytes) = per_cpu
                .iter()
                .fold((0u64, 0u64), |(p, b), c| (p + c.packets, b + c.bytes));
            reasons.push(ReasonStats {
                reason: reason.name(),
                action: if reason.is_drop() { "drop" } else { "pass" },
                packets,
                bytes,
            });
        }
        Ok(Stats { reasons })
    }

    pub fn block(&mut self, cidr: Cidr) -> anyhow::Result<()> {
        match cidr {
            Cidr::V4(p) => self.block_v4.insert(&Key::new(p.len as u32, p.addr), 1, 0),
            Cidr::V6(p) => self.block_v6.insert(&Key::new(p.len as u32, p.addr), 1, 0),
        }
        .with_context(|| format!("blocking {cidr}"))
    }

    /// Remove a prefix; `Ok(false)` when it was not in the list.
    pub fn unblock(&mut self, cidr: Cidr) -> anyhow::Result<bool> {
        let result = match cidr {
            Cidr::V4(p) => self.block_v4.remove(&Key::new(p.len as u32, p.addr)),
            Cidr::V6(p) => self.block_v6.remove(&Key::new(p.len as u32, p.addr)),
        };
        match result {
            Ok(()) => Ok(true),
            Err(aya::maps::MapError::KeyNotFound) => Ok(false),
            Err(e) => Err(e).with_context(|| format!("unblocking {cidr}")),
        }
    }

    pub fn blocklist(&self) -> anyhow::Result<Vec<Cidr>> {
        let mut out = Vec::new();
        for key in self.block_v4.keys() {
            let key = key.context("listing the IPv4 blocklist")?;
            if let Some(p) = Prefix::new(key.data(), key.prefix_len() as u8) {
                out.push(Cidr::V4(p));
            }
        }
        for key in self.block_v6.keys() {
            let key = key.context("listing the IPv6 blocklist")?;
            if let Some(p) = Prefix::new(key.data(), key.prefix_len() as u8) {
                out.push(Cidr::V6(p));
            }
        }
        Ok(out)
    }

    pub fn config(&self) -> anyhow::Result<XdpConfig> {
        self.config.get(&0, 0).context("reading the XDP config")
    }
}

fn sync_trie<const N: usize>(
    trie: &mut LpmTrie<MapData, [u8; N], u8>,
    wanted: &[Prefix<N>],
    previous: Option<&[Prefix<N>]>,
) -> anyhow::Result<()>
where
    [u8; N]: aya::Pod,
{
    let wanted_set: BTreeSet<([u8; N], u8)> = wanted.iter().map(|p| (p.addr, p.len)).collect();
    if let Some(prev) = previous {
        for p in prev {
            if !wanted_set.contains(&(p.addr, p.len)) {
                match trie.remove(&Key::new(p.len as u32, p.addr)) {
                    Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                    Err(e) => return Err(e).context("updating a prefix list"),
                }
            }
        }
    }
    for (addr, len) in wanted_set {
        trie.insert(&Key::new(len as u32, addr), 1, 0)
            .context("updating a prefix list")?;
    }
    Ok(())
}

/// A loaded, attached program and its maps. Dropping it detaches the program
/// from every interface and removes the pins.
pub struct XdpRuntime {
    // Field order matters: the maps close before the program detaches.
    maps: MapSet,
    policy: HostPolicy,
    settings: XdpSettings,
    attached: Vec<(String, &'static str)>,
    pin_dir: Option<PathBuf>,
    /// Duplicates of the map descriptors, for a binary upgrade to pass on.
    map_fds: Vec<(String, OwnedFd)>,
    /// Set once a new process took the program over: the pins stay.
    handed_over: bool,
    /// The loaded object (`None` when taken over from a previous process).
    _ebpf: Option<Ebpf>,
    /// One bpf_link per interface (`None`: attached through netlink, which
    /// an upgrade cannot take over). Closing the last descriptor of a link
    /// detaches the program, so these close last.
    links: Vec<(String, Option<OwnedFd>)>,
}

impl XdpRuntime {
    pub fn attached(&self) -> &[(String, &'static str)] {
        &self.attached
    }

    pub fn pin_dir(&self) -> Option<&Path> {
        self.pin_dir.as_deref()
    }

    pub fn maps(&self) -> &MapSet {
        &self.maps
    }

    /// Push a new policy (config reload) without detaching the program.
    pub fn update_policy(&mut self, settings: &XdpSettings) -> anyhow::Result<()> {
        let policy = settings.policy();
        self.maps.apply(&policy, Some(&self.policy))?;
        self.policy = policy;
        self.settings = settings.clone();
        Ok(())
    }

    /// The id of the attached program (the same after an upgrade).
    pub fn program_id(&self) -> Option<u32> {
        self.links
            .iter()
            .find_map(|(_, fd)| fd.as_ref())
            .and_then(|fd| link_info(fd).ok())
            .map(|i| i.prog_id)
    }

    /// What a binary upgrade passes on: the description, with the
    /// descriptors appended to `fds` (indices refer to it).
    pub fn handoff(&self, fds: &mut Vec<OwnedFd>) -> anyhow::Result<PassedXdp> {
        let mut maps = Vec::new();
        for (name, fd) in &self.map_fds {
            maps.push((name.clone(), fds.len()));
            fds.push(fd.try_clone().context("dup")?);
        }
        let mut links = Vec::new();
        for (iface, fd) in &self.links {
            let fd = fd.as_ref().ok_or_else(|| {
                anyhow!("XDP is attached to {iface} through netlink (no bpf_link): an upgrade cannot take it over; restart instead")
            })?;
            let mode = self
                .attached
                .iter()
                .find(|(i, _)| i == iface)
                .map_or("native", |(_, m)| m);
            links.push(PassedLink {
                interface: iface.clone(),
                mode: mode.to_string(),
                fd: fds.len(),
            });
            fds.push(fd.try_clone().context("dup")?);
        }
        Ok(PassedXdp {
            maps,
            links,
            pin_dir: self.pin_dir.clone(),
            settings: self.settings.clone(),
        })
    }

    /// A new process took the program over: close our descriptors without
    /// detaching anything (it holds the links) and leave the pins.
    pub fn hand_over(mut self) {
        self.handed_over = true;
    }

    /// Take over the program a previous process handed over: its maps and
    /// links, never detached, so the program id stays and no packet goes
    /// unfiltered. Nothing is written yet: `update_policy(settings)` then
    /// writes the difference between the old `[xdp]` and the new one
    /// (blocks added live stay). Interfaces no longer configured are
    /// detached; newly configured ones need a restart (said in the log).
    pub fn adopt(
        settings: &XdpSettings,
        passed: PassedXdp,
        take: &mut dyn FnMut(usize) -> anyhow::Result<OwnedFd>,
    ) -> anyhow::Result<Option<XdpRuntime>> {
        let mut map_fds = Vec::new();
        let mut passed_maps = Vec::new();
        for (name, index) in &passed.maps {
            passed_maps.push((name.clone(), take(*index)?));
        }
        let mut links = Vec::new();
        let mut attached = Vec::new();
        for l in &passed.links {
            let fd = take(l.fd)?;
            if settings.mode == XdpMode::Off || !settings.interfaces.contains(&l.interface) {
                tracing::warn!(interface = %l.interface, "no longer configured: XDP detached after the upgrade");
                drop(fd);
                continue;
            }
            let mode = if l.mode == "generic" {
                "generic"
            } else {
                "native"
            };
            attached.push((l.interface.clone(), mode));
            links.push((l.interface.clone(), Some(fd)));
        }
        for iface in &settings.interfaces {
            if settings.mode != XdpMode::Off && !attached.iter().any(|(i, _)| i == iface) {
                tracing::warn!(interface = %iface, "newly configured: XDP attaches there at the next restart, not on an upgrade");
            }
        }
        if links.is_empty() {
            return Ok(None);
        }
        let maps = MapSet::from_fds(passed_maps, &mut map_fds)?;
        // The maps still hold the old process's policy; `update_policy`
        // writes the difference once everything else has started.
        Ok(Some(XdpRuntime {
            maps,
            policy: passed.settings.policy(),
            settings: passed.settings.clone(),
            attached,
            pin_dir: passed.pin_dir,
            map_fds,
            handed_over: false,
            _ebpf: None,
            links,
        }))
    }
}

impl Drop for XdpRuntime {
    fn drop(&mut self) {
        if self.handed_over {
            tracing::info!("XDP program handed over to the new process");
            return;
        }
        if let Some(dir) = &self.pin_dir {
            remove_pins(dir);
        }
        for (iface, mode) in &self.attached {
            tracing::info!(interface = %iface, mode, "XDP program detached");
        }
    }
}

/// A descriptor of our own on a map (its `Map` keeps the other).
fn dup_map_fd(map: &Map, name: &str) -> anyhow::Result<OwnedFd> {
    let data = match map {
        Map::Array(d)
        | Map::PerCpuArray(d)
        | Map::LpmTrie(d)
        | Map::HashMap(d)
        | Map::LruHashMap(d)
        | Map::PerCpuHashMap(d)
        | Map::PerCpuLruHashMap(d) => d,
        _ => bail!("map {name} has a type an upgrade cannot pass on"),
    };
    data.fd()
        .as_fd()
        .try_clone_to_owned()
        .with_context(|| format!("duplicating the descriptor of map {name}"))
}

/// The part of `struct bpf_link_info` read here (the XDP member of its
/// union starts at offset 16).
#[repr(C)]
#[derive(Default)]
struct LinkInfo {
    kind: u32,
    id: u32,
    prog_id: u32,
    _pad: u32,
    ifindex: u32,
    _rest: [u32; 11],
}

const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

fn link_info(fd: &OwnedFd) -> std::io::Result<LinkInfo> {
    #[repr(C)]
    struct Attr {
        fd: u32,
        info_len: u32,
        info: u64,
    }
    let mut info = LinkInfo::default();
    let attr = Attr {
        fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of::<LinkInfo>() as u32,
        info: &mut info as *mut LinkInfo as u64,
    };
    // SAFETY: the attr and the info buffer outlive the call; the kernel
    // writes at most `info_len` bytes.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            &attr as *const Attr,
            std::mem::size_of::<Attr>() as u32,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(info)
}

/// `BPF_LINK_CREATE` for XDP on `ifindex`: the link's only descriptor is
/// ours (closing it detaches; passing it keeps the program attached).
/// Needs CAP_BPF and CAP_NET_ADMIN, not CAP_SYS_ADMIN.
fn create_link(
    prog: std::os::fd::BorrowedFd<'_>,
    ifindex: u32,
    mode: AyaMode,
) -> std::io::Result<OwnedFd> {
    const BPF_LINK_CREATE: libc::c_long = 28;
    const BPF_XDP: u32 = 37;
    const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
    const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
    #[repr(C)]
    #[derive(Default)]
    struct Attr {
        prog_fd: u32,
        target_ifindex: u32,
        attach_type: u32,
        flags: u32,
        _rest: [u64; 6],
    }
    let attr = Attr {
        prog_fd: prog.as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type: BPF_XDP,
        flags: match mode {
            AyaMode::Skb => XDP_FLAGS_SKB_MODE,
            _ => XDP_FLAGS_DRV_MODE,
        },
        ..Attr::default()
    };
    // SAFETY: attr outlives the call; a returned descriptor is ours.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_LINK_CREATE,
            &attr as *const Attr,
            std::mem::size_of::<Attr>() as u32,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn ifindex(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: a valid C string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

fn remove_pins(dir: &Path) {
    for name in ALL_MAPS {
        let _ = std::fs::remove_file(dir.join(name));
    }
    let _ = std::fs::remove_dir(dir);
}

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

fn is_bpffs(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes into the zeroed struct we own; the path is a valid C string.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC
    }
}

/// Make `dir` a usable pin directory: its parent must be on a bpffs (mounted
/// at /sys/fs/bpf by systemd; mounted here when missing).
fn prepare_pin_dir(dir: &Path) -> anyhow::Result<()> {
    let parent = dir.parent().unwrap_or(Path::new("/"));
    if !is_bpffs(parent) {
        if parent == Path::new("/sys/fs/bpf") {
            std::fs::create_dir_all(parent).ok();
            let src = c"bpf";
            let target = c"/sys/fs/bpf";
            // SAFETY: static C strings, no data argument.
            let rc = unsafe {
                libc::mount(
                    src.as_ptr(),
                    target.as_ptr(),
                    src.as_ptr(),
                    0,
                    std::ptr::null(),
                )
            };
            if rc != 0 {
                bail!(
                    "/sys/fs/bpf is not a bpffs and mounting one failed: {}",
                    std::io::Error::last_os_error()
                );
            }
        } else {
            bail!(
                "{} is not on a bpffs (mount -t bpf bpf {})",
                parent.display(),
                parent.display()
            );
        }
    }
    // A previous run that was killed leaves pins behind: they hold maps of a
    // program that is gone, so replace them.
    remove_pins(dir);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(())
}

/// Load, configure, attach. `Ok(None)`: running without XDP (the reason was
/// logged as a warning); only `mode = "auto"` degrades, explicit modes fail.
pub fn start(settings: &XdpSettings) -> anyhow::Result<Option<XdpRuntime>> {
    if settings.mode == XdpMode::Off || settings.interfaces.is_empty() {
        tracing::info!("XDP disabled by configuration");
        return Ok(None);
    }
    let degrade = |why: String| -> anyhow::Result<Option<XdpRuntime>> {
        if settings.mode == XdpMode::Auto {
            tracing::warn!("running WITHOUT XDP: {why}");
            Ok(None)
        } else {
            bail!("{why}")
        }
    };
    let Some(object) = embedded_object() else {
        return degrade(
            "this binary was built without the XDP object (build with `cargo xtask build`)".into(),
        );
    };
    let mut ebpf = match Ebpf::load(object) {
        Ok(e) => e,
        Err(e) => {
            return degrade(format!(
                "cannot load the XDP program ({e}); it needs root or CAP_BPF + CAP_NET_ADMIN"
            ));
        }
    };
    let pin_dir = match prepare_pin_dir(&settings.pin_dir) {
        Ok(()) => Some(settings.pin_dir.clone()),
        Err(e) => {
            tracing::warn!(
                "XDP maps not pinned ({e:#}); `portier xdp` commands will not reach this instance"
            );
            None
        }
    };
    let program: &mut Xdp = ebpf
        .program_mut(PROGRAM_NAME)
        .ok_or_else(|| anyhow!("the XDP object has no program {PROGRAM_NAME}"))?
        .try_into()?;
    if let Err(e) = program.load() {
        if let Some(dir) = &pin_dir {
            remove_pins(dir);
        }
        return degrade(format!("the kernel refused the XDP program: {e:#}"));
    }
    let mut map_fds = Vec::new();
    let mut maps = MapSet::from_ebpf(&mut ebpf, pin_dir.as_deref(), &mut map_fds)?;
    let policy = settings.policy();
    // Policy before attach: the first packet already meets it.
    maps.apply(&policy, None)?;
    let program: &mut Xdp = ebpf
        .program_mut(PROGRAM_NAME)
        .ok_or_else(|| anyhow!("the XDP object has no program {PROGRAM_NAME}"))?
        .try_into()?;

    let mut attached = Vec::new();
    let mut links = Vec::new();
    for iface in &settings.interfaces {
        let tries: &[(AyaMode, &'static str)] = match settings.mode {
            XdpMode::Auto => &[(AyaMode::Driver, "native"), (AyaMode::Skb, "generic")],
            XdpMode::Native => &[(AyaMode::Driver, "native")],
            XdpMode::Generic => &[(AyaMode::Skb, "generic")],
            XdpMode::Off => &[],
        };
        let mut errors = Vec::new();
        let mut ok = None;
        for &(mode, name) in tries {
            // A bpf_link of our own (its descriptor is what an upgrade
            // passes on); aya's netlink attach only where links are missing.
            let prog_fd = program
                .fd()
                .context("the loaded program has no descriptor")?;
            match ifindex(iface).map(|i| create_link(prog_fd.as_fd(), i, mode)) {
                Some(Ok(fd)) => {
                    ok = Some((name, Some(fd)));
                    break;
                }
                Some(Err(e)) if e.raw_os_error() != Some(libc::EINVAL) => {
                    errors.push(format!("{name}: {e}"));
                    continue;
                }
                _ => {}
            }
            match program.attach(iface, mode) {
                Ok(_) => {
                    ok = Some((name, None));
                    break;
                }
                Err(e) => errors.push(format!("{name}: {e}")),
            }
        }
        match ok {
            Some((mode, link)) => {
                tracing::info!(interface = %iface, mode, "XDP program attached");
                attached.push((iface.clone(), mode));
                links.push((iface.clone(), link));
            }
            None if settings.mode == XdpMode::Auto => {
                tracing::warn!(interface = %iface, "XDP not attached ({})", errors.join("; "));
            }
            None => {
                if let Some(dir) = &pin_dir {
                    remove_pins(dir);
                }
                bail!("cannot attach XDP to {iface}: {}", errors.join("; "));
            }
        }
    }
    if attached.is_empty() {
        if let Some(dir) = &pin_dir {
            remove_pins(dir);
        }
        return degrade("XDP attached to no interface".into());
    }
    Ok(Some(XdpRuntime {
        maps,
        policy,
        settings: settings.clone(),
        attached,
        pin_dir,
        map_fds,
        handed_over: false,
        _ebpf: Some(ebpf),
        links,
    }))
}
