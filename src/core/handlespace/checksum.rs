//! The handlespace checksum (ENRP PE Checksum parameter), spec `wire-format-detailed.md` §6.
//!
//! Each PE contributes a 32-bit partial sum: the pool handle's bytes as 16-bit little-endian words
//! (an odd trailing byte zero-padded to its own word) plus the two 16-bit words of the PE id
//! written big-endian and read little-endian — rsplib sums in x86 host order. A set of PEs is
//! summed in a *wrapping* `u32` (as rsplib does; removal subtracts), then folded to 16 bits and
//! complemented. The empty set gives 0xffff. The value is the "host order" view hsdump prints;
//! on the wire the two bytes appear swapped (`to_le_bytes()`).

use crate::core::types::{PeId, PoolHandle};

/// The un-folded partial sum of one PE.
pub fn pe_partial_sum(handle: &PoolHandle, pe: PeId) -> u32 {
    let mut sum = 0u32;
    let mut words = handle.as_bytes().chunks(2);
    for w in &mut words {
        let lo = w[0];
        let hi = w.get(1).copied().unwrap_or(0);
        sum = sum.wrapping_add(u32::from(u16::from_le_bytes([lo, hi])));
    }
    let id = pe.0.to_be_bytes();
    sum = sum.wrapping_add(u32::from(u16::from_le_bytes([id[0], id[1]])));
    sum.wrapping_add(u32::from(u16::from_le_bytes([id[2], id[3]])))
}

/// Folds a (wrapping) sum of partial sums into the final 16-bit checksum.
pub fn finish(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The checksum of a single PE (what hsdump prints as its `chsum`).
pub fn pe_checksum(handle: &PoolHandle, pe: PeId) -> u16 {
    finish(pe_partial_sum(handle, pe))
}

/// An O(1)-updatable checksum accumulator over a set of PEs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChecksumAccumulator {
    sum: u32,
}

impl ChecksumAccumulator {
    /// Adds a PE's partial sum.
    pub fn add(&mut self, partial: u32) {
        self.sum = self.sum.wrapping_add(partial);
    }

    /// Removes a PE's partial sum.
    pub fn remove(&mut self, partial: u32) {
        self.sum = self.sum.wrapping_sub(partial);
    }

    /// The raw wrapping sum.
    pub fn raw(&self) -> u32 {
        self.sum
    }

    /// The folded, complemented checksum (0xffff for the empty set).
    pub fn value(&self) -> u16 {
        finish(self.sum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ph(s: &str) -> PoolHandle {
        PoolHandle::from(s)
    }

    #[test]
    fn fact_sheet_vectors() {
        assert_eq!(pe_checksum(&ph("EchoPool"), PeId(0x0000_e001)), 0x4fb2);
        assert_eq!(pe_checksum(&ph("WrrPool"), PeId(0x0000_a001)), 0xcbba);
        assert_eq!(ChecksumAccumulator::default().value(), 0xffff);
    }

    /// Every `chsum=` of a PE in the hsdump captures (hsdump-before.txt and -after.txt).
    #[test]
    fn hsdump_pe_vectors() {
        let cases = [
            ("LudPool", 0xc001, 0xc8b3),
            ("WrrPool", 0xa001, 0xcbba),
            ("EchoPool", 0xe001, 0x4fb2),
            ("EchoPool", 0xe002, 0x4eb2),
            ("CalcAppPool", 0xca01, 0x08f9),
            ("CalcAppPool", 0xca02, 0x07f9),
        ];
        for (h, id, want) in cases {
            assert_eq!(pe_checksum(&ph(h), PeId(id)), want, "{h} {id:#x}");
        }
    }

    #[test]
    fn ownership_sums() {
        let owned_22 = [
            ("LudPool", 0xc001),
            ("EchoPool", 0xe002),
            ("CalcAppPool", 0xca02),
        ];
        let owned_11 = [
            ("WrrPool", 0xa001),
            ("EchoPool", 0xe001),
            ("CalcAppPool", 0xca01),
        ];
        let mut a = ChecksumAccumulator::default();
        for (h, id) in owned_22 {
            a.add(pe_partial_sum(&ph(h), PeId(id)));
        }
        assert_eq!(a.value(), 0x1f5f);
        assert_eq!(a.value().to_le_bytes(), [0x5f, 0x1f]);
        let mut b = ChecksumAccumulator::default();
        for (h, id) in owned_11 {
            b.add(pe_partial_sum(&ph(h), PeId(id)));
        }
        // The wire shows 6624, i.e. host-order 0x2466; after e001 died, b3d4 (0xd4b3).
        assert_eq!(b.value().to_le_bytes(), [0x66, 0x24]);
        b.remove(pe_partial_sum(&ph("EchoPool"), PeId(0xe001)));
        assert_eq!(b.value().to_le_bytes(), [0xb3, 0xd4]);
        b.add(pe_partial_sum(&ph("EchoPool"), PeId(0xe001)));
        for (h, id) in owned_22 {
            b.add(pe_partial_sum(&ph(h), PeId(id)));
        }
        assert_eq!(b.value(), 0x43c5);
    }

    #[test]
    fn removal_undoes_addition_even_when_wrapping() {
        let mut a = ChecksumAccumulator::default();
        let p = pe_partial_sum(&ph("x"), PeId(0xffff_ffff));
        for _ in 0..100_000 {
            a.add(p);
        }
        for _ in 0..100_000 {
            a.remove(p);
        }
        assert_eq!(a.value(), 0xffff);
    }
}
