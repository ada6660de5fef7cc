//! Bounds-checked reads from a packet.
//!
//! The eBPF program implements [`PacketCursor`] over `data..data_end` with
//! pointer comparisons the verifier understands; the host implements it over a
//! byte slice. The classifier only ever reads through this trait, so a read
//! past the end is a `None`, never undefined behaviour.

/// Read-only view of a frame. `read` returns `None` when any byte of
/// `offset..offset + N` lies outside the frame.
pub trait PacketCursor {
    /// Length of the whole frame in bytes.
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copy `N` bytes starting at `offset`.
    fn read<const N: usize>(&self, offset: usize) -> Option<[u8; N]>;
}

/// Host cursor over a byte slice (tests, fuzzing, `portier xdp classify`).
pub struct SliceCursor<'a>(pub &'a [u8]);

impl PacketCursor for SliceCursor<'_> {
    #[inline(always)]
    fn len(&self) -> usize {
        self.0.len()
    }

    #[inline(always)]
    fn read<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        let end = offset.checked_add(N)?;
        let bytes = self.0.get(offset..end)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_inside_and_refuses_past_end() {
        let c = SliceCursor(&[1, 2, 3, 4]);
        assert_eq!(c.read::<2>(2), Some([3, 4]));
        assert_eq!(c.read::<2>(3), None);
        assert_eq!(c.read::<1>(usize::MAX), None);
        assert_eq!(c.read::<0>(4), Some([]));
    }
}
