//! BPF map names, sizes and value layouts shared by the program and the loader.
//!
//! Every value is `repr(C)`, `Copy` and padding-free, so the kernel and
//! userspace agree byte for byte. Map names are the pin file names under the
//! pin directory (`/sys/fs/bpf/portier/` by default).

pub use crate::gcra::SynBucket;

/// Per-CPU `[Counter; REASON_COUNT]`, indexed by `Reason as u32`.
pub const MAP_COUNTERS: &str = "PORTIER_COUNTERS";
/// `Array<XdpConfig>` with one entry.
pub const MAP_CONFIG: &str = "PORTIER_CONFIG";
/// `Array<u8>` of 65536 entries: `PORT_*` flags per destination port.
pub const MAP_PORTS: &str = "PORTIER_PORTS";
/// LPM tries, value `u8` (unused, 1), key `Key<[u8; 4]>` / `Key<[u8; 16]>`.
pub const MAP_BLOCK_V4: &str = "PORTIER_BLOCK_V4";
pub const MAP_BLOCK_V6: &str = "PORTIER_BLOCK_V6";
pub const MAP_BOGON_V4: &str = "PORTIER_BOGON_V4";
pub const MAP_BOGON_V6: &str = "PORTIER_BOGON_V6";
/// LRU hash `[u8; 16]` (IPv4-mapped address or IPv6 /64) -> `SynBucket`.
pub const MAP_SYN_BUCKETS: &str = "PORTIER_SYN";

/// Every map, for pinning and cleanup.
pub const ALL_MAPS: [&str; 8] = [
    MAP_COUNTERS,
    MAP_CONFIG,
    MAP_PORTS,
    MAP_BLOCK_V4,
    MAP_BLOCK_V6,
    MAP_BOGON_V4,
    MAP_BOGON_V6,
    MAP_SYN_BUCKETS,
];

/// Name of the XDP program in the object (the `#[xdp]` function).
pub const PROGRAM_NAME: &str = "portier_xdp";

pub const PORTS_LEN: u32 = 65536;
pub const LPM_ENTRIES: u32 = 65536;
pub const BOGON_ENTRIES: u32 = 1024;
pub const SYN_SOURCES: u32 = 262_144;

/// Port flag: TCP service port (HTTP/HTTPS listeners).
pub const PORT_TCP_SERVICE: u8 = 1;
/// Port flag: allow-listed TCP port (SSH, admin, ...).
pub const PORT_TCP_ALLOW: u8 = 2;
/// Port flag: allow-listed UDP port.
pub const PORT_UDP_ALLOW: u8 = 4;

/// Config flag: drop TCP/UDP to ports that are neither service nor allowed.
pub const CFG_DROP_CLOSED_PORTS: u32 = 1;

/// The single config entry. Rate limiter parameters are precomputed by
/// userspace (see [`crate::gcra::gcra_params`]) so the program never divides.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpConfig {
    /// `CFG_*` flags.
    pub flags: u32,
    /// Inclusive range of the node's ephemeral ports, where replies to its own
    /// outgoing connections arrive (`net.ipv4.ip_local_port_range`).
    pub ephemeral_lo: u16,
    pub ephemeral_hi: u16,
    /// GCRA emission interval per SYN per source; 0 = limiter off.
    pub syn_interval_ns: u64,
    /// GCRA tolerance (interval × (burst − 1)).
    pub syn_tolerance_ns: u64,
}

/// One counter slot (per CPU, per reason).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C), Copy, no padding (checked by the size tests below), and
    // every bit pattern is a valid value.
    unsafe impl aya::Pod for super::XdpConfig {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Counter {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SynBucket {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn map_values_have_no_padding() {
        assert_eq!(size_of::<XdpConfig>(), 4 + 2 + 2 + 8 + 8);
        assert_eq!(size_of::<Counter>(), 16);
        assert_eq!(size_of::<SynBucket>(), 8);
    }
}
