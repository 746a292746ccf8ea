//! The ordered set of a sorted-policy pool: a sorted ring buffer while the pool is small, a
//! B-tree once it is large.
//!
//! Most pools are small (tens to a few hundred PEs). There, one contiguous buffer beats a
//! B-tree: a handle resolution reads the first entries and moves the selected one (back to the
//! front, or to the back: O(1) in a ring), so it touches one or two cache lines of the pool
//! instead of a root, a leaf and another leaf scattered over the heap. (Round-robin pools of
//! every size use a rotation of slots instead, see `rotation.rs`.) An
//! insert or removal in the middle moves at most half the entries (at most `SMALL_MAX / 2` of
//! 16 bytes: a bounded, contiguous copy). Past `SMALL_MAX` entries the set becomes a B-tree
//! (O(log n) per change); below `SMALL_MAX / 4` it goes back (the hysteresis keeps the O(n)
//! conversions to one per Θ(n) changes).

use std::collections::{BTreeSet, VecDeque};

use super::prefetch::prefetch;

/// Asks for every cache line of the ring at once, before a binary search whose probes would
/// otherwise be a chain of dependent misses into a cold pool.
fn prefetch_ring<T>(v: &VecDeque<T>) {
    let (a, b) = v.as_slices();
    prefetch(a);
    prefetch(b);
}

/// Entries up to which the ring is kept (a ring of 256 × 16 bytes is 4 KiB).
#[cfg(not(test))]
pub(super) const SMALL_MAX: usize = 256;
/// The unit tests convert early, so that every test runs through both forms.
#[cfg(test)]
pub(super) const SMALL_MAX: usize = 8;

pub(super) enum SortedSet<T: Ord> {
    Small(VecDeque<T>),
    Big(BTreeSet<T>),
}

impl<T: Ord + Copy> SortedSet<T> {
    pub(super) fn new() -> Self {
        SortedSet::Small(VecDeque::new())
    }

    /// A set of `entries`, which come in ascending order without repeats.
    pub(super) fn from_sorted(entries: impl Iterator<Item = T>) -> Self {
        let v: VecDeque<T> = entries.collect();
        debug_assert!(v.iter().zip(v.iter().skip(1)).all(|(a, b)| a < b));
        if v.len() > SMALL_MAX {
            SortedSet::Big(v.into_iter().collect())
        } else {
            SortedSet::Small(v)
        }
    }

    pub(super) fn first(&self) -> Option<&T> {
        match self {
            SortedSet::Small(v) => v.front(),
            SortedSet::Big(s) => s.first(),
        }
    }

    /// The first `n` entries in order.
    pub(super) fn first_n(&self, n: usize) -> impl Iterator<Item = &T> + '_ {
        let (a, b) = match self {
            SortedSet::Small(v) => (Some(v.iter()), None),
            SortedSet::Big(s) => (None, Some(s.iter())),
        };
        a.into_iter()
            .flatten()
            .chain(b.into_iter().flatten())
            .take(n)
    }

    /// Inserts `e` (not present before).
    pub(super) fn insert(&mut self, e: T) {
        match self {
            SortedSet::Small(v) => {
                // The common cases first, without a search through the ring: an entry that
                // goes last (behind all its equals), or first (a least-used PE selected again
                // keeps the lowest load).
                if v.back().is_none_or(|b| *b < e) {
                    v.push_back(e);
                } else if v.front().is_some_and(|f| e < *f) {
                    v.push_front(e);
                } else {
                    prefetch_ring(v);
                    let i = v.partition_point(|x| *x < e);
                    debug_assert!(v.get(i) != Some(&e), "entry already present");
                    v.insert(i, e);
                }
                if v.len() > SMALL_MAX {
                    *self = SortedSet::Big(v.drain(..).collect());
                }
            }
            SortedSet::Big(s) => {
                let fresh = s.insert(e);
                debug_assert!(fresh, "entry already present");
            }
        }
    }

    /// Removes `e`; false if it was not there.
    pub(super) fn remove(&mut self, e: &T) -> bool {
        match self {
            SortedSet::Small(v) => {
                let i = if v.front() == Some(e) {
                    0
                } else if v.back() == Some(e) {
                    v.len() - 1
                } else {
                    prefetch_ring(v);
                    match v.binary_search(e) {
                        Ok(i) => i,
                        Err(_) => return false,
                    }
                };
                v.remove(i);
                if v.capacity() > 64 && v.len() * 4 < v.capacity() {
                    v.shrink_to(2 * v.len());
                }
                true
            }
            SortedSet::Big(s) => {
                if !s.remove(e) {
                    return false;
                }
                if s.len() < SMALL_MAX / 4 {
                    let v: VecDeque<T> = std::mem::take(s).into_iter().collect();
                    *self = SortedSet::Small(v);
                }
                true
            }
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        match self {
            SortedSet::Small(v) => v.len(),
            SortedSet::Big(s) => s.len(),
        }
    }

    #[cfg(test)]
    pub(super) fn is_small(&self) -> bool {
        matches!(self, SortedSet::Small(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against a BTreeSet, through growth past SMALL_MAX and shrinking back, with inserts at
    /// the back, the front and the middle.
    #[test]
    fn matches_a_btreeset_through_both_forms() {
        let mut set = SortedSet::new();
        let mut model = BTreeSet::new();
        let mut x: u64 = 7;
        let mut seen_big = false;
        let mut back_to_small = false;
        for step in 0..4000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Grow for a while, then shrink, then grow again.
            let grow = (step / 500) % 2 == 0;
            if (x % 3 != 0) == grow || model.is_empty() {
                let e = match x % 4 {
                    0 => step,            // back
                    1 => u64::MAX - step, // beyond every other
                    _ => x % 10_000,      // anywhere
                };
                assert_eq!(set.remove(&e), model.remove(&e));
                set.insert(e);
                model.insert(e);
            } else {
                let k = (x as usize) % model.len();
                let e = *model.iter().nth(k).unwrap();
                assert!(set.remove(&e));
                model.remove(&e);
                assert!(!set.remove(&e));
            }
            assert_eq!(set.len(), model.len());
            assert_eq!(set.first(), model.first());
            let n = (x % 5) as usize;
            assert!(set.first_n(n).eq(model.iter().take(n)));
            if !set.is_small() {
                seen_big = true;
            } else if seen_big {
                back_to_small = true;
            }
        }
        assert!(set.first_n(usize::MAX).eq(model.iter()));
        assert!(seen_big && back_to_small);
    }
}
