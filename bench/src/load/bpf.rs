//! Raw `bpf(2)` for the XDP benchmark: three two-instruction XDP programs
//! (`XDP_TX`, `XDP_PASS`, `XDP_DROP`), attaching one in native mode
//! (`BPF_LINK_CREATE`), `BPF_PROG_TEST_RUN` with `repeat` (the in-kernel
//! cost of a program per frame), and the flood generator:
//! `BPF_PROG_TEST_RUN` with `BPF_F_TEST_XDP_LIVE_FRAMES` (Linux ≥ 5.18).
//!
//! The generator runs the `XDP_TX` program over one frame `repeat` times
//! with an `xdp_md` whose `ingress_ifindex` is the sending veth: the kernel
//! turns each `XDP_TX` into a redirect out of that device, so every frame
//! leaves the veth and reaches its peer as an XDP frame (the peer needs an
//! XDP program attached in native mode for veth to take them). Threads,
//! one per CPU given, loop over such calls (each sized to take ~100 ms)
//! until the time is up.
//!
//! Must not: touch a namespace it was not told about (threads enter the one
//! named and leave with their thread), keep a program attached past its
//! [`Link`]. Fed by: the XDP scenario ([`super::xdp`]) and its tests.
//! Emits: descriptors, counts of frames sent, ns per run.
//!
//! Layouts follow `union bpf_attr` and `struct xdp_md` of the kernel's UAPI
//! header `linux/bpf.h`; each struct here is the prefix of its union member
//! that we use (the kernel zero-fills a shorter attr), with explicit padding.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

// enum bpf_cmd
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_LINK_CREATE: libc::c_long = 28;
// enum bpf_prog_type / enum bpf_attach_type
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
/// `XDP_FLAGS_DRV_MODE`: native mode only (fail rather than fall back).
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
/// `BPF_F_TEST_XDP_LIVE_FRAMES`: transmit the frames the program returns.
pub const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;

/// `enum xdp_action` values the tiny programs return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum XdpAction {
    Aborted = 0,
    Drop = 1,
    Pass = 2,
    Tx = 3,
}

impl XdpAction {
    pub fn from_retval(v: u32) -> Option<XdpAction> {
        Some(match v {
            0 => XdpAction::Aborted,
            1 => XdpAction::Drop,
            2 => XdpAction::Pass,
            3 => XdpAction::Tx,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            XdpAction::Aborted => "aborted",
            XdpAction::Drop => "drop",
            XdpAction::Pass => "pass",
            XdpAction::Tx => "tx",
        }
    }
}

/// `struct bpf_insn`: opcode, dst (low nibble) and src (high nibble)
/// registers, offset, immediate.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    /// The instruction as the kernel reads it (little-endian host).
    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = self.regs;
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }
}

/// `r0 = action; exit`. Written by hand rather than compiled: two
/// instructions (BPF_ALU64|BPF_MOV|BPF_K into r0, BPF_JMP|BPF_EXIT) need
/// no toolchain, no object file and no loader.
pub fn return_action(action: XdpAction) -> [Insn; 2] {
    const MOV64_IMM: u8 = 0x07 | 0xb0; // BPF_ALU64 | BPF_MOV | BPF_K
    const EXIT: u8 = 0x05 | 0x90; // BPF_JMP | BPF_EXIT
    [
        Insn {
            code: MOV64_IMM,
            regs: 0, // dst r0
            off: 0,
            imm: action as i32,
        },
        Insn {
            code: EXIT,
            regs: 0,
            off: 0,
            imm: 0,
        },
    ]
}

/// `union bpf_attr` for `BPF_PROG_LOAD`, up to `expected_attach_type`.
#[repr(C)]
#[derive(Default)]
pub struct ProgLoadAttr {
    pub prog_type: u32,
    pub insn_cnt: u32,
    pub insns: u64,
    pub license: u64,
    pub log_level: u32,
    pub log_size: u32,
    pub log_buf: u64,
    pub kern_version: u32,
    pub prog_flags: u32,
    pub prog_name: [u8; 16],
    pub prog_ifindex: u32,
    pub expected_attach_type: u32,
}

/// `union bpf_attr`'s `test` member (`BPF_PROG_TEST_RUN`).
#[repr(C)]
#[derive(Default, Debug)]
pub struct TestRunAttr {
    pub prog_fd: u32,
    pub retval: u32,
    pub data_size_in: u32,
    pub data_size_out: u32,
    pub data_in: u64,
    pub data_out: u64,
    pub repeat: u32,
    /// Out: average nanoseconds per run.
    pub duration: u32,
    pub ctx_size_in: u32,
    pub ctx_size_out: u32,
    pub ctx_in: u64,
    pub ctx_out: u64,
    pub flags: u32,
    pub cpu: u32,
    pub batch_size: u32,
    pub _pad: u32,
}

/// `struct xdp_md`, the XDP test-run context.
#[repr(C)]
#[derive(Default, Debug, Clone, Copy)]
pub struct XdpMd {
    pub data: u32,
    pub data_end: u32,
    pub data_meta: u32,
    pub ingress_ifindex: u32,
    pub rx_queue_index: u32,
    pub egress_ifindex: u32,
}

impl XdpMd {
    /// A frame of `len` bytes received on queue 0 of `ifindex` (the kernel
    /// wants `data` 0, `data_end` the frame's length, no metadata).
    pub fn ingress(ifindex: u32, len: usize) -> XdpMd {
        XdpMd {
            data_end: len as u32,
            ingress_ifindex: ifindex,
            ..XdpMd::default()
        }
    }
}

/// `union bpf_attr` for `BPF_LINK_CREATE`, up to `flags`.
#[repr(C)]
#[derive(Default)]
pub struct LinkCreateAttr {
    pub prog_fd: u32,
    pub target_ifindex: u32,
    pub attach_type: u32,
    pub flags: u32,
}

/// `union bpf_attr` for `BPF_*_GET_FD_BY_ID`.
#[repr(C)]
#[derive(Default)]
pub struct GetFdByIdAttr {
    pub id: u32,
    pub next_id: u32,
    pub open_flags: u32,
}

/// `bpf(cmd, attr, sizeof attr)`: its non-negative result.
fn sys_bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<i64> {
    // SAFETY: `attr` is a live, initialised #[repr(C)] prefix of `union
    // bpf_attr` of the size passed; every pointer inside it points at
    // memory the caller keeps alive across the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// A loaded XDP program.
#[derive(Debug)]
pub struct Prog(OwnedFd);

/// One `BPF_PROG_TEST_RUN` without live frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestRun {
    /// What the program returned (an `enum xdp_action`).
    pub retval: u32,
    /// Average nanoseconds per run, as the kernel measured it.
    pub ns_per_run: u32,
}

impl Prog {
    /// Load `r0 = action; exit` as an XDP program (license "GPL").
    pub fn tiny(action: XdpAction) -> std::io::Result<Prog> {
        let insns = return_action(action);
        let license = c"GPL";
        let mut name = [0u8; 16];
        let n = format!("pbench_{}", action.name());
        name[..n.len()].copy_from_slice(n.as_bytes());
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_XDP,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            prog_name: name,
            ..ProgLoadAttr::default()
        };
        let fd = sys_bpf(BPF_PROG_LOAD, &mut attr)?;
        // SAFETY: the kernel just gave us this descriptor.
        Ok(Prog(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
    }

    /// The program with this id (a running portier's, found with `ip link`).
    pub fn from_id(id: u32) -> std::io::Result<Prog> {
        let mut attr = GetFdByIdAttr {
            id,
            ..GetFdByIdAttr::default()
        };
        let fd = sys_bpf(BPF_PROG_GET_FD_BY_ID, &mut attr)?;
        // SAFETY: the kernel just gave us this descriptor.
        Ok(Prog(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
    }

    /// Run the program over `frame` `repeat` times in the kernel (no device,
    /// nothing sent): its verdict and the average ns per run.
    pub fn test_run(&self, frame: &[u8], repeat: u32) -> std::io::Result<TestRun> {
        let mut attr = TestRunAttr {
            prog_fd: self.0.as_raw_fd() as u32,
            data_size_in: frame.len() as u32,
            data_in: frame.as_ptr() as u64,
            repeat,
            ..TestRunAttr::default()
        };
        sys_bpf(BPF_PROG_TEST_RUN, &mut attr)?;
        Ok(TestRun {
            retval: attr.retval,
            ns_per_run: attr.duration,
        })
    }

    /// Run the program over `frame` `repeat` times as live frames received
    /// on `ctx.ingress_ifindex` (looked up in the calling thread's network
    /// namespace): frames it returns `XDP_TX` for leave that device.
    pub fn run_live(&self, frame: &[u8], ctx: &XdpMd, repeat: u32) -> std::io::Result<()> {
        let mut attr = TestRunAttr {
            prog_fd: self.0.as_raw_fd() as u32,
            data_size_in: frame.len() as u32,
            data_in: frame.as_ptr() as u64,
            repeat,
            ctx_size_in: std::mem::size_of::<XdpMd>() as u32,
            ctx_in: ctx as *const XdpMd as u64,
            flags: BPF_F_TEST_XDP_LIVE_FRAMES,
            ..TestRunAttr::default()
        };
        sys_bpf(BPF_PROG_TEST_RUN, &mut attr).map(drop)
    }

    /// Attach in native mode to `ifindex` (of the calling thread's network
    /// namespace) until the returned link is dropped.
    pub fn attach_native(&self, ifindex: u32) -> std::io::Result<Link> {
        let mut attr = LinkCreateAttr {
            prog_fd: self.0.as_raw_fd() as u32,
            target_ifindex: ifindex,
            attach_type: BPF_XDP,
            flags: XDP_FLAGS_DRV_MODE,
        };
        let fd = sys_bpf(BPF_LINK_CREATE, &mut attr)?;
        // SAFETY: the kernel just gave us this descriptor.
        Ok(Link {
            _fd: unsafe { OwnedFd::from_raw_fd(fd as i32) },
        })
    }
}

/// An attached program; closing the descriptor (drop) detaches it.
#[derive(Debug)]
pub struct Link {
    _fd: OwnedFd,
}

/// Run `f` on a thread that entered network namespace `ns` (by name, as
/// `ip netns` made it); only that thread's namespace changes.
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        enter_netns(&path)?;
        f()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("thread in {ns} panicked"))?
}

/// Move the calling thread into the network namespace at `path`.
pub fn enter_netns(path: &str) -> anyhow::Result<()> {
    let file = File::open(path).with_context(|| format!("open {path}"))?;
    // SAFETY: a valid namespace fd; only this thread's namespace changes.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns {path}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// The index of `name` in the calling thread's network namespace.
pub fn ifindex(name: &str) -> anyhow::Result<u32> {
    let c = std::ffi::CString::new(name)?;
    // SAFETY: a valid C string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        bail!("no interface {name}");
    }
    Ok(i)
}

/// Pin the calling thread to `cpu` (best effort).
pub fn pin_thread(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; affects only this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Attach a tiny program in native mode to `ifname` in namespace `ns`.
pub fn attach_tiny(ns: &str, ifname: &str, action: XdpAction) -> anyhow::Result<Link> {
    let ifname = ifname.to_string();
    in_netns(ns, move || {
        let prog = Prog::tiny(action).context("BPF_PROG_LOAD of a two-instruction XDP program")?;
        let idx = ifindex(&ifname)?;
        prog.attach_native(idx)
            .with_context(|| format!("attaching XDP_{action:?} natively to {ifname}"))
    })
}

/// What a flood sent.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    /// Frames the `XDP_TX` program ran over (each redirected out of the
    /// sending veth; any the peer's ring had no room for are lost there).
    pub frames: u64,
    /// Wall time from the start of the threads to the end of the last one.
    pub secs: f64,
}

/// Aim of each test-run call's duration: short enough to stop on time.
const CALL_SECS: f64 = 0.1;

/// The next call's `repeat`: ~[`CALL_SECS`] at the rate seen so far, no
/// more than what is left of the time, at least a small batch.
pub fn next_repeat(rate_per_sec: f64, left_secs: f64) -> u32 {
    let want = rate_per_sec * CALL_SECS.min(left_secs.max(0.0));
    want.clamp(1024.0, f64::from(1u32 << 28)) as u32
}

/// Flood `frame` out of `ifname` (namespace `ns`) for `secs` with the live
/// test-run generator, one thread per CPU in `cpus`.
pub fn flood(
    ns: &str,
    ifname: &str,
    frame: &[u8],
    secs: f64,
    cpus: &[usize],
) -> anyhow::Result<Sent> {
    let prog = Arc::new(Prog::tiny(XdpAction::Tx).context("BPF_PROG_LOAD of XDP_TX")?);
    let path = format!("/var/run/netns/{ns}");
    let start = Arc::new(Barrier::new(cpus.len() + 1));
    let mut threads = Vec::new();
    for (i, &cpu) in cpus.iter().enumerate() {
        let (prog, path, start) = (prog.clone(), path.clone(), start.clone());
        let ifname = ifname.to_string();
        let mut frame = frame.to_vec();
        // Each thread its own source port (checksum kept valid).
        vary_source_port(&mut frame, i as u16);
        threads.push(std::thread::spawn(move || -> anyhow::Result<u64> {
            let setup = (|| {
                enter_netns(&path)?;
                pin_thread(cpu);
                ifindex(&ifname)
            })();
            start.wait();
            let ctx = XdpMd::ingress(setup?, frame.len());
            let t0 = Instant::now();
            let end = t0 + Duration::from_secs_f64(secs);
            let mut repeat: u32 = 1 << 16;
            let mut sent: u64 = 0;
            loop {
                let left = end.saturating_duration_since(Instant::now()).as_secs_f64();
                if left < 0.002 {
                    break;
                }
                let t = Instant::now();
                prog.run_live(&frame, &ctx, repeat).with_context(|| {
                    format!(
                        "BPF_PROG_TEST_RUN (BPF_F_TEST_XDP_LIVE_FRAMES, XDP_TX, ingress {ifname}, repeat {repeat})"
                    )
                })?;
                sent += u64::from(repeat);
                let el = t.elapsed().as_secs_f64().max(1e-6);
                let left = end.saturating_duration_since(Instant::now()).as_secs_f64();
                repeat = next_repeat(f64::from(repeat) / el, left);
            }
            Ok(sent)
        }));
    }
    start.wait();
    let t0 = Instant::now();
    let mut frames = 0;
    let mut first_err = None;
    for t in threads {
        match t.join() {
            Ok(Ok(n)) => frames += n,
            Ok(Err(e)) => first_err = first_err.or(Some(e)),
            Err(_) => first_err = first_err.or(Some(anyhow::anyhow!("generator thread panicked"))),
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    match first_err {
        Some(e) => Err(e),
        None => Ok(Sent { frames, secs }),
    }
}

/// Add `by` to the TCP source port of an Ethernet + IPv4 (IHL 5) + TCP
/// frame, fixing the TCP checksum incrementally (RFC 1624); other frames
/// are left alone.
pub fn vary_source_port(frame: &mut [u8], by: u16) {
    if by == 0
        || frame.len() < 54
        || frame[12..14] != [0x08, 0x00]
        || frame[14] != 0x45
        || frame[23] != 6
    {
        return;
    }
    let old = u16::from_be_bytes([frame[34], frame[35]]);
    let new = old.wrapping_add(by);
    frame[34..36].copy_from_slice(&new.to_be_bytes());
    // HC' = ~(~HC + ~m + m')
    let hc = u16::from_be_bytes([frame[50], frame[51]]);
    let mut sum = u32::from(!hc) + u32::from(!old) + u32::from(new);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    frame[50..52].copy_from_slice(&(!(sum as u16)).to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn test_run_attr_matches_the_uapi_layout() {
        assert_eq!(offset_of!(TestRunAttr, prog_fd), 0);
        assert_eq!(offset_of!(TestRunAttr, retval), 4);
        assert_eq!(offset_of!(TestRunAttr, data_size_in), 8);
        assert_eq!(offset_of!(TestRunAttr, data_size_out), 12);
        assert_eq!(offset_of!(TestRunAttr, data_in), 16);
        assert_eq!(offset_of!(TestRunAttr, data_out), 24);
        assert_eq!(offset_of!(TestRunAttr, repeat), 32);
        assert_eq!(offset_of!(TestRunAttr, duration), 36);
        assert_eq!(offset_of!(TestRunAttr, ctx_size_in), 40);
        assert_eq!(offset_of!(TestRunAttr, ctx_size_out), 44);
        assert_eq!(offset_of!(TestRunAttr, ctx_in), 48);
        assert_eq!(offset_of!(TestRunAttr, ctx_out), 56);
        assert_eq!(offset_of!(TestRunAttr, flags), 64);
        assert_eq!(offset_of!(TestRunAttr, cpu), 68);
        assert_eq!(offset_of!(TestRunAttr, batch_size), 72);
        assert_eq!(size_of::<TestRunAttr>(), 80);
    }

    #[test]
    fn prog_load_attr_matches_the_uapi_layout() {
        assert_eq!(offset_of!(ProgLoadAttr, insns), 8);
        assert_eq!(offset_of!(ProgLoadAttr, license), 16);
        assert_eq!(offset_of!(ProgLoadAttr, log_buf), 32);
        assert_eq!(offset_of!(ProgLoadAttr, kern_version), 40);
        assert_eq!(offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(offset_of!(ProgLoadAttr, prog_ifindex), 64);
        assert_eq!(offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(size_of::<ProgLoadAttr>(), 72);
    }

    #[test]
    fn small_attrs_and_ctx_match_the_uapi_layout() {
        assert_eq!(size_of::<XdpMd>(), 24);
        assert_eq!(offset_of!(XdpMd, ingress_ifindex), 12);
        assert_eq!(offset_of!(XdpMd, egress_ifindex), 20);
        assert_eq!(size_of::<LinkCreateAttr>(), 16);
        assert_eq!(offset_of!(LinkCreateAttr, flags), 12);
        assert_eq!(size_of::<GetFdByIdAttr>(), 12);
        assert_eq!(size_of::<Insn>(), 8);
    }

    #[test]
    fn tiny_programs_encode_mov_r0_and_exit() {
        let bytes = |a| -> Vec<u8> { return_action(a).iter().flat_map(|i| i.to_bytes()).collect() };
        assert_eq!(
            bytes(XdpAction::Drop),
            [0xb7, 0, 0, 0, 1, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(bytes(XdpAction::Pass)[4], 2);
        assert_eq!(bytes(XdpAction::Tx)[4], 3);
        // The in-memory struct is what the kernel reads.
        let insns = return_action(XdpAction::Tx);
        // SAFETY: Insn is #[repr(C)], 8 bytes, no padding.
        let raw: [u8; 16] = unsafe { std::mem::transmute(insns) };
        assert_eq!(raw[..8], insns[0].to_bytes());
        assert_eq!(raw[8..], insns[1].to_bytes());
    }

    #[test]
    fn xdp_md_describes_the_whole_frame() {
        let m = XdpMd::ingress(7, 60);
        assert_eq!((m.data, m.data_end, m.data_meta), (0, 60, 0));
        assert_eq!(
            (m.ingress_ifindex, m.rx_queue_index, m.egress_ifindex),
            (7, 0, 0)
        );
    }

    #[test]
    fn repeat_follows_the_rate_and_the_time_left() {
        // 10 M frames/s: a 100 ms call is 1 M frames.
        assert_eq!(next_repeat(10e6, 5.0), 1_000_000);
        // 20 ms left: 200 k.
        assert_eq!(next_repeat(10e6, 0.02), 200_000);
        // Never below a batch, never absurd.
        assert_eq!(next_repeat(10.0, 5.0), 1024);
        assert_eq!(next_repeat(1e12, 5.0), 1 << 28);
        assert_eq!(next_repeat(10e6, -1.0), 1024);
    }

    #[test]
    fn varied_source_port_keeps_the_tcp_checksum_valid() {
        let f = super::super::xdp::tcp_frame([10, 203, 0, 9], 40000, 0x29, 0x4000);
        for by in [0u16, 1, 7, 30000] {
            let mut g = f.clone();
            vary_source_port(&mut g, by);
            assert_eq!(
                u16::from_be_bytes([g[34], g[35]]),
                40000u16.wrapping_add(by)
            );
            let mut pseudo = Vec::new();
            pseudo.extend(&g[26..34]);
            pseudo.extend([0, 6, 0, 20]);
            pseudo.extend(&g[34..54]);
            assert_eq!(super::super::xdp::checksum(&pseudo), 0, "port +{by}");
        }
    }

    #[test]
    fn actions_round_trip() {
        for a in [
            XdpAction::Aborted,
            XdpAction::Drop,
            XdpAction::Pass,
            XdpAction::Tx,
        ] {
            assert_eq!(XdpAction::from_retval(a as u32), Some(a));
        }
        assert_eq!(XdpAction::from_retval(4), None);
    }
}
