//! Address prefixes (CIDR) as the LPM tries store them, and the default
//! bogon/martian source lists.

/// `addr/len` over `N` address bytes (4 = IPv4, 16 = IPv6), network order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Prefix<const N: usize> {
    pub addr: [u8; N],
    pub len: u8,
}

impl<const N: usize> Prefix<N> {
    /// A prefix with the host bits cleared; `None` when `len` exceeds the width.
    pub fn new(addr: [u8; N], len: u8) -> Option<Self> {
        if len as usize > N * 8 {
            return None;
        }
        let mut masked = addr;
        for (i, byte) in masked.iter_mut().enumerate() {
            let bits = (len as usize).saturating_sub(i * 8).min(8);
            *byte &= if bits == 0 { 0 } else { 0xffu8 << (8 - bits) };
        }
        Some(Prefix { addr: masked, len })
    }

    pub fn contains(&self, addr: &[u8; N]) -> bool {
        let full = self.len as usize / 8;
        if self.addr[..full] != addr[..full] {
            return false;
        }
        let rest = self.len as usize % 8;
        if rest == 0 {
            return true;
        }
        let mask = 0xffu8 << (8 - rest);
        self.addr[full] & mask == addr[full] & mask
    }
}

/// Sources that never appear on a public interface (RFC 6890 special-purpose
/// blocks that are not forwardable as sources). RFC 1918 and 100.64/10 are
/// *not* here: a front node behind a private balancer sees them legitimately;
/// operators add them in the config when their edge is public.
pub const DEFAULT_BOGONS_V4: [([u8; 4], u8); 10] = [
    ([0, 0, 0, 0], 8),
    ([127, 0, 0, 0], 8),
    ([169, 254, 0, 0], 16),
    ([192, 0, 0, 0], 24),
    ([192, 0, 2, 0], 24),
    ([198, 18, 0, 0], 15),
    ([198, 51, 100, 0], 24),
    ([203, 0, 113, 0], 24),
    ([224, 0, 0, 0], 4),
    ([240, 0, 0, 0], 4),
];

/// IPv6 counterpart: unspecified, loopback, IPv4-mapped, discard-only,
/// documentation, multicast (never a source).
pub const DEFAULT_BOGONS_V6: [([u8; 16], u8); 6] = [
    ([0; 16], 128),
    ([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], 128),
    ([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0], 96),
    ([0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 64),
    (
        [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        32,
    ),
    ([0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_host_bits_and_matches() {
        let p = Prefix::new([10, 1, 2, 3], 12).unwrap();
        assert_eq!(p.addr, [10, 0, 0, 0]);
        assert!(p.contains(&[10, 15, 255, 1]));
        assert!(!p.contains(&[10, 16, 0, 1]));
        assert!(
            Prefix::new([1, 2, 3, 4], 0)
                .unwrap()
                .contains(&[9, 9, 9, 9])
        );
        assert!(Prefix::new([1, 2, 3, 4], 33).is_none());
        let host = Prefix::new([1, 2, 3, 4], 32).unwrap();
        assert!(host.contains(&[1, 2, 3, 4]) && !host.contains(&[1, 2, 3, 5]));
    }

    #[test]
    fn default_bogons_are_canonical() {
        for (a, l) in DEFAULT_BOGONS_V4 {
            assert_eq!(Prefix::new(a, l).unwrap().addr, a);
        }
        for (a, l) in DEFAULT_BOGONS_V6 {
            assert_eq!(Prefix::new(a, l).unwrap().addr, a);
        }
    }
}
