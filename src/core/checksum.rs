//! The handlespace (PE) checksum of RFC 5353 / rsplib (wire-format.md "Handlespace checksum",
//! wire-format-detailed.md §6).
//!
//! Per PE, rsplib sums the pool handle bytes and the PE id (4 bytes, network order) as 16-bit
//! words read in x86 host (little-endian) order — handle and id separately padded to an even
//! length — in a wrapping u32. A set of PEs sums those per-PE sums (wrapping u32), then folds
//! the carries into 16 bits and complements. `hsdump` prints that host-order value; on the wire
//! (ENRP Presence's PE Checksum parameter) the same two bytes appear, i.e. the big-endian wire
//! value is the byte-swapped printed value.

use super::types::PeId;

/// Sums `bytes` as little-endian 16-bit words (odd trailing byte zero-padded), wrapping.
fn sum_le_words(bytes: &[u8]) -> u32 {
    let mut sum = 0u32;
    let mut chunks = bytes.chunks_exact(2);
    for w in &mut chunks {
        sum = sum.wrapping_add(u16::from_le_bytes([w[0], w[1]]) as u32);
    }
    if let [last] = chunks.remainder() {
        sum = sum.wrapping_add(*last as u32);
    }
    sum
}

/// Folds a 32-bit sum into 16 bits (one's-complement carries) and complements it.
fn finish(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The un-complemented per-PE sum that [`HandlespaceChecksum`] accumulates.
pub fn pe_sum(pool_handle: &[u8], pe_id: PeId) -> u32 {
    pe_sum_of(handle_sum(pool_handle), pe_id)
}

/// The pool handle's part of [`pe_sum`] (the same for every PE of a pool).
pub fn handle_sum(pool_handle: &[u8]) -> u32 {
    sum_le_words(pool_handle)
}

/// [`pe_sum`] from a precomputed [`handle_sum`].
pub fn pe_sum_of(handle_sum: u32, pe_id: PeId) -> u32 {
    handle_sum.wrapping_add(sum_le_words(&pe_id.0.to_be_bytes()))
}

/// A single PE's checksum as `hsdump` prints it (`chsum=$…`): e.g. "EchoPool"/0xe001 → 0x4fb2.
pub fn pe_checksum(pool_handle: &[u8], pe_id: PeId) -> u16 {
    finish(pe_sum(pool_handle, pe_id))
}

/// Converts between the host-order (hsdump) value and the big-endian wire value.
pub const fn to_wire(host_value: u16) -> u16 {
    host_value.swap_bytes()
}

/// Inverse of [`to_wire`].
pub const fn from_wire(wire_value: u16) -> u16 {
    wire_value.swap_bytes()
}

/// The checksum of a set of PEs (e.g. those a registrar owns), updated in O(1) per PE.
///
/// Mirrors rsplib's wrapping u32 accumulator, so results stay exact even when it overflows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HandlespaceChecksum {
    acc: u32,
}

impl HandlespaceChecksum {
    /// The empty set (value 0xffff).
    pub const fn new() -> Self {
        HandlespaceChecksum { acc: 0 }
    }

    /// Adds one PE by its [`pe_sum`].
    pub fn add_sum(&mut self, sum: u32) {
        self.acc = self.acc.wrapping_add(sum);
    }

    /// Removes one PE by its [`pe_sum`].
    pub fn remove_sum(&mut self, sum: u32) {
        self.acc = self.acc.wrapping_sub(sum);
    }

    /// Adds one PE.
    pub fn add(&mut self, pool_handle: &[u8], pe_id: PeId) {
        self.add_sum(pe_sum(pool_handle, pe_id));
    }

    /// Removes one PE (that was added before).
    pub fn remove(&mut self, pool_handle: &[u8], pe_id: PeId) {
        self.remove_sum(pe_sum(pool_handle, pe_id));
    }

    /// The raw accumulator.
    pub const fn accumulator(&self) -> u32 {
        self.acc
    }

    /// The checksum in host order, as `hsdump` prints it.
    pub fn value(&self) -> u16 {
        finish(self.acc)
    }

    /// The value for the PE Checksum parameter (big-endian on the wire).
    pub fn wire_value(&self) -> u16 {
        to_wire(self.value())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fact_sheet_examples() {
        assert_eq!(pe_checksum(b"EchoPool", PeId(0xe001)), 0x4fb2);
        assert_eq!(pe_checksum(b"WrrPool", PeId(0xa001)), 0xcbba);
        assert_eq!(HandlespaceChecksum::new().value(), 0xffff);
        assert_eq!(HandlespaceChecksum::new().wire_value(), 0xffff);
    }

    #[test]
    fn add_remove_is_inverse() {
        let mut c = HandlespaceChecksum::new();
        c.add(b"EchoPool", PeId(0xe001));
        c.add(b"CalcAppPool", PeId(0xca01));
        c.remove(b"EchoPool", PeId(0xe001));
        let mut d = HandlespaceChecksum::new();
        d.add(b"CalcAppPool", PeId(0xca01));
        assert_eq!(c, d);
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
            assert_eq!(pe_checksum(h.as_bytes(), PeId(id)), want, "{h} {id:#x}");
        }
    }

    #[test]
    fn ownership_sums_and_wire_values() {
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
        let mut a = HandlespaceChecksum::new();
        for (h, id) in owned_22 {
            a.add(h.as_bytes(), PeId(id));
        }
        assert_eq!(a.value(), 0x1f5f);
        assert_eq!(a.wire_value(), 0x5f1f);
        let mut b = HandlespaceChecksum::new();
        for (h, id) in owned_11 {
            b.add(h.as_bytes(), PeId(id));
        }
        assert_eq!(b.wire_value(), 0x6624);
        b.remove(b"EchoPool", PeId(0xe001));
        assert_eq!(b.wire_value(), 0xb3d4);
        b.add(b"EchoPool", PeId(0xe001));
        for (h, id) in owned_22 {
            b.add(h.as_bytes(), PeId(id));
        }
        assert_eq!(b.value(), 0x43c5);
    }

    #[test]
    fn removal_undoes_addition_even_when_wrapping() {
        let mut a = HandlespaceChecksum::new();
        let p = pe_sum(b"x", PeId(0xffff_ffff));
        for _ in 0..100_000 {
            a.add_sum(p);
        }
        assert_ne!(a.accumulator(), 0);
        for _ in 0..100_000 {
            a.remove_sum(p);
        }
        assert_eq!(a.value(), 0xffff);
    }
}
