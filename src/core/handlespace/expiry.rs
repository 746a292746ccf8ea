//! The PEs' expiry timers, in (expiry, slot) order.
//!
//! A timer is almost always armed at `now` + a registration life (or a cache's stale time),
//! and `now` never goes back, so most new timers sort after every other: they are appended to
//! a ring (`fifo`) that stays sorted, and the rare earlier one goes into a B-tree (`other`).
//! Re-arming or removing a PE does not look for its old ring entry: the entry is left there,
//! stale, and recognised as such (its slot is free, or its PE's expiry is another) when it
//! reaches the ring's front, or dropped when stale entries outnumber half the timers (a
//! compaction, O(ring) amortized over as many re-arms). An entry in the B-tree is removed at
//! once. The fronts are cleaned after every change, so the first timer is always a PE's.
//!
//! A stale entry whose slot was reused by a PE with the same expiry reads as that PE's: it
//! then is one of its timers (a PE may briefly have two equal ones; the second is stale once
//! the PE is gone). The order of (expiry, slot) pairs is exactly that of one ordered set.

use std::collections::{BTreeSet, VecDeque};

use super::Micros;

/// Compaction once the ring holds this many entries more than half again the PEs.
const SLACK: usize = 64;

#[derive(Default)]
pub(super) struct ExpiryQueue {
    /// Ascending (strictly), possibly with stale entries; its front is current.
    fifo: VecDeque<(Micros, u32)>,
    /// The timers armed out of order (not after the ring's last entry); all current.
    other: BTreeSet<(Micros, u32)>,
    /// How many PEs have a timer.
    timers: usize,
}

impl ExpiryQueue {
    /// The earliest timer.
    #[inline]
    pub(super) fn first(&self) -> Option<(Micros, u32)> {
        match (self.fifo.front(), self.other.first()) {
            (Some(a), Some(b)) => Some(*a.min(b)),
            (a, b) => a.or(b).copied(),
        }
    }

    /// Arms a timer for a new PE (call [`Self::clean`] after the change).
    #[inline]
    pub(super) fn arm(&mut self, at: Micros, slot: u32) {
        self.timers += 1;
        self.push((at, slot));
    }

    /// Moves a PE's timer from `old` to `at` (the PE's expiry is already `at`, or becomes
    /// so before the next [`Self::clean`]).
    #[inline]
    pub(super) fn rearm(&mut self, old: Micros, at: Micros, slot: u32) {
        self.forget((old, slot));
        self.push((at, slot));
    }

    /// Drops a removed PE's timer (call [`Self::clean`] after the change).
    #[inline]
    pub(super) fn disarm(&mut self, at: Micros, slot: u32) {
        self.timers -= 1;
        self.forget((at, slot));
    }

    #[inline]
    fn push(&mut self, e: (Micros, u32)) {
        if self.fifo.back().is_none_or(|b| *b < e) {
            self.fifo.push_back(e);
        } else {
            self.other.insert(e);
        }
    }

    /// An entry no longer current: out of the B-tree now, out of the ring later.
    #[inline]
    fn forget(&mut self, e: (Micros, u32)) {
        if !self.other.is_empty() {
            self.other.remove(&e);
        }
    }

    /// Drops stale entries at the ring's front, and all of them when they are many;
    /// `current(at, slot)`: the slot holds a PE whose expiry is `at`.
    #[inline]
    pub(super) fn clean(&mut self, current: impl Fn(Micros, u32) -> bool) {
        while let Some(&(at, slot)) = self.fifo.front() {
            if current(at, slot) {
                break;
            }
            self.fifo.pop_front();
        }
        if self.fifo.len() > self.timers + self.timers / 2 + SLACK {
            self.fifo.retain(|&(at, slot)| current(at, slot));
            if self.fifo.capacity() > 4 * self.fifo.len() + SLACK {
                self.fifo.shrink_to(2 * self.fifo.len());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Against one ordered set of the current (expiry, slot) pairs, with slots reused, times
    /// mostly ascending and sometimes earlier, re-arms and removals at random.
    #[test]
    fn matches_an_ordered_set_of_current_timers() {
        let mut q = ExpiryQueue::default();
        let mut pes: HashMap<u32, Micros> = HashMap::new();
        let mut free: Vec<u32> = Vec::new();
        let mut next_slot = 0;
        let mut now: Micros = 0;
        let mut x: u64 = 11;
        let mut max_fifo = 0;
        for step in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            now += x % 3;
            let at = if x % 7 == 0 {
                now + (x >> 8) % 50
            } else {
                now + 100
            };
            let grow = (step / 2000) % 2 == 0;
            let op = (x >> 4) % 8;
            if pes.is_empty() || (grow && op < 3) || (!grow && op == 0) {
                let slot = free.pop().unwrap_or_else(|| {
                    next_slot += 1;
                    next_slot - 1
                });
                pes.insert(slot, at);
                q.arm(at, slot);
            } else {
                let mut slots: Vec<u32> = pes.keys().copied().collect();
                slots.sort_unstable();
                let slot = slots[(x >> 20) as usize % slots.len()];
                if op < 5 {
                    let old = pes[&slot];
                    if old != at {
                        pes.insert(slot, at);
                        q.rearm(old, at, slot);
                    }
                } else if op < 7 || (x >> 30) % 4 != 0 {
                    let old = pes.remove(&slot).unwrap();
                    q.disarm(old, slot);
                    free.push(slot);
                } else {
                    // The first timer expires (as pop_expired does).
                    let (at, slot) = q.first().unwrap();
                    assert_eq!(pes.remove(&slot), Some(at));
                    q.disarm(at, slot);
                    free.push(slot);
                }
            }
            q.clean(|at, slot| pes.get(&slot) == Some(&at));
            let model = pes.iter().map(|(&s, &at)| (at, s)).min();
            assert_eq!(q.first(), model);
            max_fifo = max_fifo.max(q.fifo.len());
            assert!(q.fifo.len() <= pes.len() + pes.len() / 2 + SLACK);
            assert!(q.fifo.iter().zip(q.fifo.iter().skip(1)).all(|(a, b)| a < b));
        }
        assert!(!q.other.is_empty() || max_fifo > 0);
    }
}
