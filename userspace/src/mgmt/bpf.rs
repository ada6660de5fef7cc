//! The XDP program's life in userspace: load the embedded object, write the
//! policy into its maps, attach (native, else generic, else none with a
//! warning), pin the maps for operator commands, detach on drop.
//!
//! [`MapSet`] is the typed view of the maps, opened either from a freshly
//! loaded program or from the pins of a running `portier`; `portier xdp …`
//! uses the latter, so operators change the blocklist while the program stays
//! attached.

use std::collections::BTreeSet;
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
    fn from_ebpf(ebpf: &mut Ebpf, pin_dir: Option<&Path>) -> anyhow::Result<MapSet> {
        let mut take = |name: &str| -> anyhow::Result<Map> {
            let map = ebpf
                .take_map(name)
                .ok_or_else(|| anyhow!("the XDP object has no map {name}"))?;
            if let Some(dir) = pin_dir {
                map.pin(dir.join(name))
                    .with_context(|| format!("pinning {name} in {}", dir.display()))?;
            }
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

    /// Open the maps a running `portier` pinned under `pin_dir`.
    pub fn open_pinned(pin_dir: &Path) -> anyhow::Result<MapSet> {
        let open = |name: &str| -> anyhow::Result<Map> {
            let path = pin_dir.join(name);
            let data = MapData::from_pin(&path).with_context(|| {
                format!(
                    "cannot open {} — is portier running with XDP and pin_dir = {:?}?",
                    path.display(),
                    pin_dir
                )
            })?;
            Map::from_map_data(data).with_context(|| format!("map {name}"))
        };
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
    attached: Vec<(String, &'static str)>,
    pin_dir: Option<PathBuf>,
    _ebpf: Ebpf,
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
        Ok(())
    }
}

impl Drop for XdpRuntime {
    fn drop(&mut self) {
        if let Some(dir) = &self.pin_dir {
            remove_pins(dir);
        }
        for (iface, mode) in &self.attached {
            tracing::info!(interface = %iface, mode, "XDP program detached");
        }
    }
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
    let mut maps = MapSet::from_ebpf(&mut ebpf, pin_dir.as_deref())?;
    let policy = settings.policy();
    // Policy before attach: the first packet already meets it.
    maps.apply(&policy, None)?;
    let program: &mut Xdp = ebpf
        .program_mut(PROGRAM_NAME)
        .ok_or_else(|| anyhow!("the XDP object has no program {PROGRAM_NAME}"))?
        .try_into()?;

    let mut attached = Vec::new();
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
            match program.attach(iface, mode) {
                Ok(_) => {
                    ok = Some(name);
                    break;
                }
                Err(e) => errors.push(format!("{name}: {e}")),
            }
        }
        match ok {
            Some(mode) => {
                tracing::info!(interface = %iface, mode, "XDP program attached");
                attached.push((iface.clone(), mode));
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
        attached,
        pin_dir,
        _ebpf: ebpf,
    }))
}
