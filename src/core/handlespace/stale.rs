//! Removal from a sorted pool without a search: the removed PE's entry stays in the set,
//! *stale*, until a resolution reaches it or stale entries make up half of the set.
//!
//! Removing an entry from the middle of a sorted ring costs a binary search for it and a move
//! of the entries on its shorter side: in a pool of 10³ PEs, about a quarter of the ring. A
//! stale entry costs neither. It is told from a current one by its PE: an entry is current if
//! its slot holds a PE of the same pool with the entry's sequence number. Sequence numbers are
//! unique within a pool (every registration and selection takes the pool's next one), so a PE
//! registered later into the freed slot, even into the same pool, has another. Stale entries
//! keep their place in the order, so every search and move of the set works across them
//! unchanged; what reads entries as PEs (a resolution's first entries, the head of a WRR pool,
//! a renumbering or rebasing of the whole set) drops them first.
//!
//! A large set (past `SMALL_MAX` entries) keeps stale entries too, in its head ring, its tail
//! and its B-tree: there a removal would otherwise search the tree, about a third of a
//! deregistration from one pool of 10⁴ PEs. An entry at the set's front is removed at once.
//! The others reach the head with its refills, where resolutions drop them, or go all at once
//! when they are half of the set. That last step reads every current entry's PE, at random
//! places in memory: in one pool of 10⁶ it made one deregistration take 110–170 ms. So only
//! sets of up to [`STALE_SET_MAX`] entries gain stale entries (the step then reads at most
//! half that many PEs); above, a removal searches the tree as before. The slowest
//! deregistration (`HS_BENCH_SLOWEST=1` in the handlespace bench, LU, one pool, in
//! registration order) is now 0.2–0.3 ms at 10⁴ PEs (before: 0.04–0.09), 6.3–7.1 ms at 10⁵
//! (0.8–0.9) and 15.0–15.6 ms at 10⁶ (10.2–15.6: a step of the pool's own, at half).

use std::collections::VecDeque;

use super::pes::Pes;
use super::sorted::{shrink_ring, SortedSet};
use super::SortEntry;

/// The largest set that gains stale entries (see the module text).
#[cfg(not(test))]
const STALE_SET_MAX: usize = 1 << 17;
/// The unit tests' pools pass it (their sets go large past 8 entries and hold up to ~40).
#[cfg(test)]
const STALE_SET_MAX: usize = 24;

/// Whether `e`, an entry of pool `pidx`'s ring, belongs to a PE that is still there.
#[inline]
pub(super) fn is_current(pes: &Pes, pidx: u32, e: &SortEntry) -> bool {
    pes.is_live(e.slot) && {
        let hot = pes.hot(e.slot);
        debug_assert_eq!(hot.pool, pes.get(e.slot).pool);
        hot.pool == pidx && hot.state.seq == u64::from(e.seq)
    }
}

/// Removes the entry `e` of a PE just taken out of the slab: at once from an end of a small
/// ring or the front of a large set (no search) or from a set over [`STALE_SET_MAX`] (a
/// search), else left stale. `stale` counts the set's stale entries; they are dropped when
/// they pass half of it (O(1) amortized: each pass follows more removals than it leaves
/// entries).
pub(super) fn remove(
    set: &mut SortedSet<SortEntry>,
    stale: &mut u32,
    pes: &Pes,
    pidx: u32,
    e: &SortEntry,
    cold: bool,
) {
    let Some(ring) = set.small_mut() else {
        if set.first() == Some(e) || set.len() > STALE_SET_MAX {
            let found = set.remove(e, cold);
            debug_assert!(found, "entry present");
        } else {
            *stale += 1;
        }
        if 2 * *stale as usize > set.len() {
            drop_stale(set, stale, pes, pidx);
        }
        return;
    };
    if ring.front() == Some(e) {
        ring.pop_front();
    } else if ring.back() == Some(e) {
        ring.pop_back();
    } else {
        *stale += 1;
    }
    if 2 * *stale as usize > ring.len() {
        drop_all(ring, stale, pes, pidx);
    } else if *stale == 0 {
        shrink_ring(ring);
    }
}

/// Drops every stale entry of a small ring.
fn drop_all(ring: &mut VecDeque<SortEntry>, stale: &mut u32, pes: &Pes, pidx: u32) {
    ring.retain(|e| is_current(pes, pidx, e));
    *stale = 0;
    shrink_ring(ring);
}

/// Drops every stale entry (before the set is read whole, or becomes a large one).
pub(super) fn drop_stale(set: &mut SortedSet<SortEntry>, stale: &mut u32, pes: &Pes, pidx: u32) {
    if *stale == 0 {
        return;
    }
    if let Some(ring) = set.small_mut() {
        drop_all(ring, stale, pes, pidx);
        return;
    }
    let current: Vec<SortEntry> = set
        .iter()
        .filter(|e| is_current(pes, pidx, e))
        .copied()
        .collect();
    *set = SortedSet::from_sorted(current.into_iter());
    *stale = 0;
}

/// Drops the stale entries among the first `n` current ones (before a resolution reads them).
/// Each one dropped here sits within `n` places of the front: a short move.
#[inline]
pub(super) fn drop_stale_first(
    set: &mut SortedSet<SortEntry>,
    stale: &mut u32,
    pes: &Pes,
    pidx: u32,
    n: usize,
) {
    if *stale == 0 {
        return;
    }
    let Some(ring) = set.small_mut() else {
        drop_stale_first_large(set, stale, pes, pidx, n);
        return;
    };
    let mut i = 0;
    while i < n && i < ring.len() && *stale > 0 {
        if is_current(pes, pidx, &ring[i]) {
            i += 1;
        } else {
            ring.remove(i);
            *stale -= 1;
        }
    }
}

/// [`drop_stale_first`] for a large set: a removal through the set keeps its head topped up.
#[inline(never)]
fn drop_stale_first_large(
    set: &mut SortedSet<SortEntry>,
    stale: &mut u32,
    pes: &Pes,
    pidx: u32,
    n: usize,
) {
    let mut i = 0;
    while i < n && *stale > 0 {
        let Some(&e) = set.first_n(i + 1).nth(i) else {
            return;
        };
        if is_current(pes, pidx, &e) {
            i += 1;
        } else {
            let found = set.remove(&e, false);
            debug_assert!(found, "stale entry present");
            *stale -= 1;
        }
    }
}
