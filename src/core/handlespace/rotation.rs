//! Round robin's selection order: a ring of PE slots, front = next.
//!
//! Round robin orders a pool by sequence number, and a PE only ever enters or returns at the
//! back (with the pool's next sequence number). So the order needs no keys and no search: a
//! resolution moves the front to the back, an insertion appends. Only a removal must find the
//! PE, and how depends on the pool's size:
//!
//! * **small** (at most [`INDEXED_MIN`] PEs): the removal scans the ring's 4-byte slots (one
//!   or two cache lines). The PEs' sequence numbers are not kept: the ring alone is the order,
//!   so a resolution writes nothing into the PEs it selects.
//! * **indexed** (past [`INDEXED_MIN`] PEs, until fewer than a quarter of that remain): the
//!   PEs carry their sequence numbers and the ring is indexed by them. The PE at `ring[i]` has
//!   sequence number `front + i`, where `front = next_seq − ring.len()`, so a removal goes
//!   straight to its place and leaves a [`TOMB`]. The front is never a tombstone (they are
//!   dropped as they reach it), and when tombstones make up more than half the ring it is
//!   compacted and renumbered. Every operation is O(1) amortized: a tombstone is passed at
//!   most as many times as a resolution asks for PEs before it reaches the front, and a
//!   compaction (O(n)) follows Θ(n) removals.
//!
//! A selection in the indexed form stores each selected PE's new sequence number: a write into
//! a PE that is not cached in a large handlespace. A registrar reads the selected PEs anyway,
//! to answer with them, and then the write costs nothing of its own; only an in-process bench
//! that does not read them sees it (`HS_BENCH_READ_PES` in `benches/handlespace.rs`).

use std::collections::VecDeque;

use super::pes::Pes;
use super::{scan, PeRef, TOMB};

/// A rotation is indexed past this many PEs, and small again below a quarter of it. In pools
/// of 100 PEs, a deregistration took a quarter longer with a scan and move of the ring than
/// with the indexed form's direct place (10³ PEs: 10.1 against 12.5 M/s).
#[cfg(not(test))]
const INDEXED_MIN: usize = 32;
/// The unit tests index early, so that every test runs through both forms.
#[cfg(test)]
const INDEXED_MIN: usize = 8;

pub(super) struct Rotation {
    ring: VecDeque<u32>,
    indexed: bool,
}

impl Rotation {
    pub(super) fn new() -> Self {
        Rotation {
            ring: VecDeque::new(),
            indexed: false,
        }
    }

    #[cfg(test)]
    pub(super) fn is_indexed(&self) -> bool {
        self.indexed
    }

    /// The sequence number of `ring[0]` (indexed form).
    fn front_seq(&self, next_seq: u64) -> u64 {
        next_seq - self.ring.len() as u64
    }

    /// Appends a new PE (already in `pes`), which took the sequence number `next_seq − 1`;
    /// `live` counts it.
    #[inline]
    pub(super) fn push(&mut self, slot: u32, live: usize, next_seq: u64, pes: &mut Pes) {
        self.ring.push_back(slot);
        if !self.indexed && live > INDEXED_MIN {
            self.renumber(next_seq, pes);
            self.indexed = true;
        }
    }

    /// Drops the tombstones and gives the PEs sequence numbers by their places.
    fn renumber(&mut self, next_seq: u64, pes: &mut Pes) {
        self.ring.retain(|&s| s != TOMB);
        let front = self.front_seq(next_seq);
        for (i, &s) in self.ring.iter().enumerate() {
            pes.state_mut(s).seq = front + i as u64;
        }
    }

    /// The place of `slot`, by a scan.
    fn place_of(&self, slot: u32) -> usize {
        let (a, b) = self.ring.as_slices();
        scan(a, slot)
            .or_else(|| scan(b, slot).map(|i| a.len() + i))
            .expect("PE in its rotation")
    }

    fn drop_front_tombs(&mut self) {
        while self.ring.front() == Some(&TOMB) {
            self.ring.pop_front();
        }
    }

    /// Takes out the PE at `slot` (sequence number `seq`); `live` PEs remain.
    #[inline]
    pub(super) fn remove(
        &mut self,
        slot: u32,
        seq: u64,
        live: usize,
        next_seq: u64,
        pes: &mut Pes,
    ) {
        if !self.indexed {
            let i = self.place_of(slot);
            self.ring.remove(i);
            return;
        }
        let mut i = seq.wrapping_sub(self.front_seq(next_seq)) as usize;
        if self.ring.get(i) != Some(&slot) {
            // Cannot happen (the unit tests check every removal in debug builds); a release
            // build would rather search than take out another PE.
            debug_assert!(false, "PE {slot} not at its place {i}");
            i = self.place_of(slot);
        }
        if i == 0 {
            self.ring.pop_front();
            self.drop_front_tombs();
        } else {
            self.ring[i] = TOMB;
        }
        if live < INDEXED_MIN / 4 {
            self.ring.retain(|&s| s != TOMB);
            self.indexed = false;
        } else if self.ring.len() > 2 * live + 16 {
            self.renumber(next_seq, pes);
        }
    }

    /// The first `n` PEs into `out`; the first `updated` of them go to the back, in their
    /// order, with the next sequence numbers.
    #[inline]
    pub(super) fn select(
        &mut self,
        n: usize,
        updated: usize,
        out: &mut Vec<PeRef>,
        next_seq: &mut u64,
        pes: &mut Pes,
    ) {
        if !self.indexed {
            // The ring is the order: nothing is written into the PEs (their cache lines are
            // not touched at all).
            out.extend(self.ring.iter().take(n).map(|&s| PeRef(s)));
            self.ring.rotate_left(updated.min(out.len()));
            return;
        }
        out.extend(
            self.ring
                .iter()
                .filter(|&&s| s != TOMB)
                .take(n)
                .map(|&s| PeRef(s)),
        );
        for _ in 0..updated.min(out.len()) {
            let s = self.ring.pop_front().expect("picked from the ring");
            self.ring.push_back(s);
            pes.state_mut(s).seq = *next_seq;
            *next_seq += 1;
            self.drop_front_tombs();
        }
    }
}
