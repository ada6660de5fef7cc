//! Portier's XDP program: classify every frame in the driver, count it by
//! verdict reason, drop what must not reach the stack.
//!
//! Thin on purpose: the classification is `portier_common::classify`, the same
//! code the host tests and the fuzzer run. This file only provides the packet
//! cursor over the XDP context, the policy over BPF maps, and the one place
//! where a reason becomes an XDP action.
#![no_std]
#![no_main]

use aya_ebpf::bindings::xdp_action;
use aya_ebpf::helpers::bpf_ktime_get_ns;
use aya_ebpf::macros::{map, xdp};
use aya_ebpf::maps::lpm_trie::Key;
use aya_ebpf::maps::{Array, LpmTrie, LruHashMap, PerCpuArray};
use aya_ebpf::programs::XdpContext;
use portier_common::gcra::SynBucket;
use portier_common::maps::{
    BOGON_ENTRIES, Counter, LPM_ENTRIES, PORTS_LEN, SYN_SOURCES, XdpConfig,
};
use portier_common::reason::REASON_COUNT;
use portier_common::{PacketCursor, Policy, Reason, classify};

// Map names must match `portier_common::maps::MAP_*` (the loader pins them by name).
#[map(name = "PORTIER_COUNTERS")]
static COUNTERS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(REASON_COUNT, 0);
#[map(name = "PORTIER_CONFIG")]
static CONFIG: Array<XdpConfig> = Array::with_max_entries(1, 0);
#[map(name = "PORTIER_PORTS")]
static PORTS: Array<u8> = Array::with_max_entries(PORTS_LEN, 0);
#[map(name = "PORTIER_BLOCK_V4")]
static BLOCK_V4: LpmTrie<[u8; 4], u8> = LpmTrie::with_max_entries(LPM_ENTRIES, 0);
#[map(name = "PORTIER_BLOCK_V6")]
static BLOCK_V6: LpmTrie<[u8; 16], u8> = LpmTrie::with_max_entries(LPM_ENTRIES, 0);
#[map(name = "PORTIER_BOGON_V4")]
static BOGON_V4: LpmTrie<[u8; 4], u8> = LpmTrie::with_max_entries(BOGON_ENTRIES, 0);
#[map(name = "PORTIER_BOGON_V6")]
static BOGON_V6: LpmTrie<[u8; 16], u8> = LpmTrie::with_max_entries(BOGON_ENTRIES, 0);
#[map(name = "PORTIER_SYN")]
static SYN: LruHashMap<[u8; 16], SynBucket> = LruHashMap::with_max_entries(SYN_SOURCES, 0);

/// The frame, read with explicit `data + off + N <= data_end` checks that the
/// verifier accepts as proof of a safe packet access.
struct Frame<'a> {
    ctx: &'a XdpContext,
}

impl PacketCursor for Frame<'_> {
    #[inline(always)]
    fn len(&self) -> usize {
        self.ctx.data_end() - self.ctx.data()
    }

    #[inline(always)]
    fn read<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        let start = self.ctx.data();
        let end = self.ctx.data_end();
        // Packets are at most 64 KiB; the mask also gives the verifier a bound.
        let at = start + (offset & 0xffff);
        if offset > 0xffff || at + N > end {
            return None;
        }
        // SAFETY: at..at+N lies inside data..data_end, checked just above.
        Some(unsafe { core::ptr::read_unaligned(at as *const [u8; N]) })
    }
}

struct Maps;

impl Policy for Maps {
    #[inline(always)]
    fn config(&self) -> Option<XdpConfig> {
        CONFIG.get(0).copied()
    }

    #[inline(always)]
    fn port_flags(&self, port: u16) -> Option<u8> {
        PORTS.get(port as u32).copied()
    }

    #[inline(always)]
    fn is_bogon_v4(&self, src: [u8; 4]) -> bool {
        BOGON_V4.get(Key::new(32, src)).is_some()
    }

    #[inline(always)]
    fn is_bogon_v6(&self, src: [u8; 16]) -> bool {
        BOGON_V6.get(Key::new(128, src)).is_some()
    }

    #[inline(always)]
    fn is_blocked_v4(&self, src: [u8; 4]) -> bool {
        BLOCK_V4.get(Key::new(32, src)).is_some()
    }

    #[inline(always)]
    fn is_blocked_v6(&self, src: [u8; 16]) -> bool {
        BLOCK_V6.get(Key::new(128, src)).is_some()
    }

    #[inline(always)]
    fn admit_syn(&mut self, source: [u8; 16], config: &XdpConfig) -> bool {
        // SAFETY: the helper has no preconditions.
        let now = unsafe { bpf_ktime_get_ns() };
        match SYN.get_ptr_mut(source) {
            // SAFETY: the map value outlives this call; concurrent updates from
            // other CPUs can only make the limiter slightly more lenient.
            Some(bucket) => unsafe {
                (*bucket).admit(now, config.syn_interval_ns, config.syn_tolerance_ns)
            },
            None => {
                // A full LRU evicts the oldest source; an insert failure fails open.
                let _ = SYN.insert(source, SynBucket::first(now, config.syn_interval_ns), 0);
                true
            }
        }
    }
}

#[xdp]
pub fn portier_xdp(ctx: XdpContext) -> u32 {
    let frame = Frame { ctx: &ctx };
    let reason = classify(&frame, &mut Maps);
    count(reason, frame.len() as u64);
    // The one place a reason becomes an action.
    if reason.is_drop() {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    }
}

#[inline(always)]
fn count(reason: Reason, bytes: u64) {
    if let Some(slot) = COUNTERS.get_ptr_mut(reason.index()) {
        // SAFETY: per-CPU slot, only this CPU writes it, and XDP runs with
        // preemption disabled.
        unsafe {
            (*slot).packets += 1;
            (*slot).bytes += bytes;
        }
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(no_mangle)]
#[unsafe(link_section = "license")]
pub static LICENSE: [u8; 4] = *b"GPL\0";
