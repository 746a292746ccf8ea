//! The stored PEs: their records in a [`Slab`], and beside them, in chunks of the same slots,
//! what a selection reads and writes ([`Hot`]: the selection state, the load degradation a
//! selection adds, and the pool, which tells a sorted pool's stale entries).
//!
//! A handle resolution changes the selected PEs' sequence numbers (and a degradation policy's
//! accumulated degradation, after reading the PE's load degradation). Kept in the PE record,
//! each of those went to a line of a ~120-byte record that a large handlespace mostly does not
//! hold in cache. Here they take 32 bytes a PE, two to a line, in an array a third the size of
//! the records, mostly cached where the records are not. Measured (handlespace bench, 10⁴ PEs
//! in pools of 100, alternating runs on a noisy machine): least-used and LU-with-degradation
//! resolution about 5 % faster; 8 bytes a PE more.

use std::ops::Deref;

use super::policy::{self, SelectionState};
use super::slab::{Slab, CHUNK, CHUNK_BITS};
use super::PoolElement;
use crate::core::types::PolicyInfo;

/// What a selection reads and writes of a PE: its selection state, the load degradation its
/// selection adds, and its pool.
#[derive(Clone, Copy, Default)]
pub(super) struct Hot {
    pub(super) state: SelectionState,
    /// The policy's load degradation for a policy whose selection adds one
    /// ([`policy::selection_adds_degradation`]), else 0.
    pub(super) step: u32,
    /// The PE's pool (as in its record; a PE never changes pools): a sorted pool tells its
    /// stale entries from current ones by the pool and the sequence number (`stale.rs`)
    /// without reading the record.
    pub(super) pool: u32,
}

/// The PE records and their [`Hot`] parts, by slot. Reads of the records go through `Deref`.
/// A record's policy changes with [`Hot::set_policy`], so that its step follows.
pub(super) struct Pes {
    slab: Slab<PoolElement>,
    /// Chunks of [`CHUNK`] slots, as the slab's: growth copies nothing and leaves at most one
    /// chunk unused.
    hot: Vec<Box<[Hot]>>,
}

impl Deref for Pes {
    type Target = Slab<PoolElement>;
    fn deref(&self) -> &Slab<PoolElement> {
        &self.slab
    }
}

/// The load degradation a selection of `pe` adds (read from its policy values as stored).
#[inline]
fn step_of(pe: &PoolElement) -> u32 {
    if policy::selection_adds_degradation(pe.policy_type) {
        pe.policy_values[policy::DEGRADATION_VALUE]
    } else {
        0
    }
}

impl Pes {
    pub(super) const fn new() -> Self {
        Pes {
            slab: Slab::new(),
            hot: Vec::new(),
        }
    }

    /// Stores a PE with its selection state; its slot.
    pub(super) fn insert(&mut self, pe: PoolElement, state: SelectionState) -> u32 {
        let step = step_of(&pe);
        let pool = pe.pool;
        let slot = self.slab.insert(pe);
        let chunk = (slot >> CHUNK_BITS) as usize;
        while self.hot.len() <= chunk {
            self.hot
                .push(vec![Hot::default(); CHUNK].into_boxed_slice());
        }
        *self.at_mut(slot) = Hot { state, step, pool };
        slot
    }

    #[inline]
    fn at(&self, slot: u32) -> &Hot {
        &self.hot[(slot >> CHUNK_BITS) as usize][slot as usize & (CHUNK - 1)]
    }

    #[inline]
    fn at_mut(&mut self, slot: u32) -> &mut Hot {
        hot_at_mut(&mut self.hot, slot)
    }

    /// Takes the PE out of `slot`, with its selection state.
    pub(super) fn remove(&mut self, slot: u32) -> (PoolElement, SelectionState) {
        let pe = self.slab.remove(slot);
        // A free slot's hot part is never read: it is left as it is.
        let state = self.at(slot).state;
        (pe, state)
    }

    #[inline]
    pub(super) fn get_mut(&mut self, slot: u32) -> &mut PoolElement {
        self.slab.get_mut(slot)
    }

    /// The selection state of the live PE in `slot`.
    #[inline]
    pub(super) fn state(&self, slot: u32) -> &SelectionState {
        &self.hot(slot).state
    }

    #[inline]
    pub(super) fn state_mut(&mut self, slot: u32) -> &mut SelectionState {
        &mut self.hot_mut(slot).state
    }

    /// The hot part of the live PE in `slot`.
    #[inline]
    pub(super) fn hot(&self, slot: u32) -> &Hot {
        debug_assert!(self.slab.is_live(slot));
        self.at(slot)
    }

    /// The hot part of the live PE in `slot`, for a selection.
    #[inline]
    pub(super) fn hot_mut(&mut self, slot: u32) -> &mut Hot {
        debug_assert!(self.slab.is_live(slot));
        self.at_mut(slot)
    }

    /// The record and the hot part of the live PE in `slot`.
    #[inline]
    pub(super) fn both_mut(&mut self, slot: u32) -> (&mut PoolElement, &mut Hot) {
        (self.slab.get_mut(slot), hot_at_mut(&mut self.hot, slot))
    }
}

/// The hot part of `slot` in `chunks` (apart from `Pes`, so that the slab can be borrowed
/// beside it).
#[inline]
fn hot_at_mut(chunks: &mut [Box<[Hot]>], slot: u32) -> &mut Hot {
    &mut chunks[(slot >> CHUNK_BITS) as usize][slot as usize & (CHUNK - 1)]
}

impl Hot {
    /// Sets the policy of `pe`, whose hot part this is: its values and the degradation step.
    pub(super) fn set_policy(&mut self, pe: &mut PoolElement, info: &PolicyInfo) {
        pe.set_policy(info);
        self.step = step_of(pe);
    }
}
