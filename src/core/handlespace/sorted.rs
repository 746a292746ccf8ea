//! The ordered set of a sorted-policy pool: a sorted ring buffer while the pool is small, a
//! B-tree behind a small sorted ring of its lowest entries once it is large.
//!
//! Most pools are small (tens to a few hundred PEs). There, one contiguous buffer beats a
//! B-tree: a handle resolution reads the first entries and moves the selected one (in place
//! when it keeps its rank, as a least-used PE selected again does; else back to the front or
//! to the back: O(1) in a ring), so it touches one or two cache lines of the pool instead of a
//! root, a leaf and another leaf scattered over the heap. (Round-robin pools of every size use
//! a rotation of slots instead, see `rotation.rs`.) An insert or removal in the middle moves at
//! most half the entries (at most `SMALL_MAX / 2` of 16 bytes: a bounded, contiguous copy).
//! Past `SMALL_MAX` entries the set becomes a B-tree (O(log n) per change); below
//! `SMALL_MAX / 4` it goes back (the hysteresis keeps the O(n) conversions to one per Θ(n)
//! changes).
//!
//! A large set keeps its lowest entries (at most [`HEAD_MAX`]) out of the B-tree, in a sorted
//! ring of their own, the *head*: every head entry is below every tree entry. Resolutions only
//! read and move the lowest entries, so they never enter the tree: a least-used resolution in a
//! pool of 10^6 PEs costs what it costs in a pool of 100. The head is topped up from the tree
//! (to [`HEAD_REFILL`] entries) when it falls below [`HEAD_LOW`], and gives its highest entry to
//! the tree when it overflows: both O(log n) amortized over many operations. Entries that go
//! behind every other (a degraded least-used PE selected again, a WRR PE entering the next
//! round) are appended to a second ring, the *tail* ([`Tail`]), instead of the tree's end; so
//! are entries that a resolution moves from the head to anywhere behind it, as long as they
//! ascend (a degraded least-used PE before the pool's loads converge moves back by about
//! n / 16 places: its entry lands among the tree's, and the next one just behind it).

use std::collections::{BTreeSet, VecDeque};

use super::prefetch::prefetch;

/// Asks for every cache line of the ring at once, before a binary search whose probes would
/// otherwise be a chain of dependent misses into a cold pool.
fn prefetch_ring<T>(v: &VecDeque<T>) {
    if v.len() > PREFETCH_MAX {
        // A binary search touches a few of its lines, not all.
        return;
    }
    let (a, b) = v.as_slices();
    prefetch(a);
    prefetch(b);
}

/// Rings up to this many entries are prefetched whole before a binary search.
const PREFETCH_MAX: usize = 256;

/// Entries up to which the ring is kept (a ring of 1024 × 16 bytes is 16 KiB).
#[cfg(not(test))]
pub(super) const SMALL_MAX: usize = 1024;
/// The unit tests convert early, so that every test runs through both forms.
#[cfg(test)]
pub(super) const SMALL_MAX: usize = 8;

/// A removal from the middle of a large set's tail moves up to this many entries (2 KiB) to
/// close the gap; beyond, the entry is listed as dead instead.
#[cfg(not(test))]
const TAIL_MOVE_MAX: usize = 128;
#[cfg(test)]
const TAIL_MOVE_MAX: usize = 2;

/// An entry that moves from a large set's head to behind it goes to the end of the tail if at
/// most this many tail entries are above it (they go to the tree: entries that registered
/// behind all others, a one-time cost), else into the tree.
#[cfg(not(test))]
const TAIL_EVICT_MAX: usize = 64;
#[cfg(test)]
const TAIL_EVICT_MAX: usize = 2;

/// The most entries a large set keeps in its head ring (4 KiB of 16-byte entries: a selected
/// entry that moves back, as a degraded least-used PE does, mostly stays within it).
#[cfg(not(test))]
const HEAD_MAX: usize = 256;
#[cfg(test)]
const HEAD_MAX: usize = 4;

/// A large set's head is topped up from the tree to [`HEAD_REFILL`] entries when it falls below
/// this many (so that an entry that moves back a few dozen places, as a degraded least-used PE
/// does on each selection, still lands in the head and not in the tree).
#[cfg(not(test))]
const HEAD_LOW: usize = 64;
#[cfg(test)]
const HEAD_LOW: usize = 2;

/// How many entries a large set's head holds after it is topped up from the tree.
#[cfg(not(test))]
const HEAD_REFILL: usize = 192;
#[cfg(test)]
const HEAD_REFILL: usize = 3;

pub(super) enum SortedSet<T: Ord> {
    Small(VecDeque<T>),
    /// Every `head` entry is below every entry of `tree` and `tail`; `head` is empty only if
    /// both are.
    Big {
        head: VecDeque<T>,
        /// Boxed: a pool's selection index stays within its second cache line.
        rest: Box<Rest<T>>,
    },
}

/// A large set's entries behind its head.
pub(super) struct Rest<T: Ord> {
    tree: BTreeSet<T>,
    tail: Tail<T>,
}

/// A large set's entries that went behind all others (as a degraded least-used PE does on each
/// selection once the pool's loads lie within one degradation step), or that a resolution
/// moved from the head to behind the tail's last (as a degraded least-used PE does before the
/// loads converge: each one lands a little behind the one moved before): appended to a ring,
/// not inserted into the B-tree. Its entries ascend and may interleave with the tree's (an
/// entry inserted later below the tail's last goes to the tree; one moved there by a
/// resolution sends the few tail entries above it to the tree, see [`Tail::make_room_for`]);
/// the head is topped up from both in order. An entry removed from the middle of the ring,
/// where that would move many entries, stays in its place marked dead (the ring may hold most
/// of a large pool); the ring is compacted when the dead are more than half of it. Its ends
/// are never dead.
pub(super) struct Tail<T: Ord> {
    /// (entry, dead), ascending by entry.
    ring: VecDeque<(T, bool)>,
    dead: usize,
}

impl<T: Ord + Copy> Tail<T> {
    fn new() -> Self {
        Tail {
            ring: VecDeque::new(),
            dead: 0,
        }
    }

    fn len(&self) -> usize {
        self.ring.len() - self.dead
    }

    fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    fn back(&self) -> Option<&T> {
        self.ring.back().map(|x| &x.0)
    }

    fn front(&self) -> Option<&T> {
        self.ring.front().map(|x| &x.0)
    }

    /// Keeps the ends live.
    fn drop_dead_ends(&mut self) {
        while self.ring.front().is_some_and(|x| x.1) {
            self.ring.pop_front();
            self.dead -= 1;
        }
        while self.ring.back().is_some_and(|x| x.1) {
            self.ring.pop_back();
            self.dead -= 1;
        }
    }

    /// The place of `e` in the ring, dead or alive.
    fn find(&self, e: &T) -> Option<usize> {
        let (f, b) = (self.front()?, self.back()?);
        if e < f || e > b {
            return None;
        }
        // No prefetch: the ring may hold most of a large pool.
        self.ring.binary_search_by(|x| x.0.cmp(e)).ok()
    }

    /// Brings a dead `e` back to life; false if `e` is not a dead entry.
    fn revive(&mut self, e: &T) -> bool {
        if self.dead == 0 {
            return false;
        }
        match self.find(e) {
            Some(i) if self.ring[i].1 => {
                self.ring[i].1 = false;
                self.dead -= 1;
                true
            }
            _ => false,
        }
    }

    /// Removes `e`; false if it is not a live entry.
    fn remove(&mut self, e: &T) -> bool {
        let Some(i) = self.find(e) else {
            return false;
        };
        if self.ring[i].1 {
            return false;
        }
        let len = self.ring.len();
        if i == 0 || i + 1 == len {
            self.ring.remove(i);
            self.drop_dead_ends();
        } else if i.min(len - i) <= TAIL_MOVE_MAX {
            // Few entries on one side: moving them is cheaper than leaving a dead one.
            self.ring.remove(i);
        } else {
            self.ring[i].1 = true;
            self.dead += 1;
            if self.dead * 2 > len {
                self.ring.retain(|x| !x.1);
                self.dead = 0;
            }
        }
        shrink_ring(&mut self.ring);
        true
    }

    /// Makes `e` (not present) fit behind the tail's last entry, moving the few live entries
    /// above it (at most [`TAIL_EVICT_MAX`]) to `tree`; false, with nothing moved, if there
    /// are more. Each entry is appended once and moved once at most, so the moves cost no
    /// more tree insertions than appending nothing would have.
    #[inline]
    fn make_room_for(&mut self, e: &T, tree: &mut BTreeSet<T>) -> bool {
        if self.ring.back().is_none_or(|b| b.0 < *e) {
            return true;
        }
        self.evict_above(e, tree)
    }

    #[inline(never)]
    fn evict_above(&mut self, e: &T, tree: &mut BTreeSet<T>) -> bool {
        let len = self.ring.len();
        if len > TAIL_EVICT_MAX && self.ring[len - 1 - TAIL_EVICT_MAX].0 > *e {
            return false;
        }
        while let Some(&(x, dead)) = self.ring.back() {
            if x < *e {
                break;
            }
            self.ring.pop_back();
            if dead {
                self.dead -= 1;
            } else {
                tree.insert(x);
            }
        }
        self.drop_dead_ends();
        true
    }

    fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.ring.iter().filter(|x| !x.1).map(|x| &x.0)
    }
}

/// The entries of `a` and `b` (each ascending, disjoint) in ascending order.
fn merge<'a, T: Ord + 'a>(
    a: impl Iterator<Item = &'a T>,
    b: impl Iterator<Item = &'a T>,
) -> impl Iterator<Item = &'a T> {
    let mut a = a.peekable();
    let mut b = b.peekable();
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) => {
            if x < y {
                a.next()
            } else {
                b.next()
            }
        }
        (Some(_), None) => a.next(),
        (None, _) => b.next(),
    })
}

/// The number of entries of the ascending slice `s` below `e`.
///
/// A search in quarters whose steps are arithmetic, not branches: the step taken depends on
/// data that a branch predictor cannot guess (a branch would be mispredicted half of the time,
/// ~15 cycles each), and each step's three probes are independent loads, so a step waits for
/// one load, not three, and there are half as many steps as in a binary search.
///
/// Invariant: every entry before `base` is below `e`, and the answer is at most `base + size`.
#[inline]
fn lower_bound<T: Ord>(s: &[T], e: &T) -> usize {
    let mut base = 0;
    let mut size = s.len();
    while size >= 4 {
        let q = size / 4;
        let below = usize::from(s[base + q] < *e)
            + usize::from(s[base + 2 * q] < *e)
            + usize::from(s[base + 3 * q] < *e);
        base += below * q;
        // size − 3q ≥ q: the answer is still within reach whichever quarter it is in.
        size -= 3 * q;
    }
    while size > 1 {
        let half = size / 2;
        base += usize::from(s[base + half] < *e) * half;
        size -= half;
    }
    base + usize::from(size == 1 && s[base] < *e)
}

/// The number of entries of the sorted ring `v` below `e` (where `e` goes).
#[inline]
fn ring_lower_bound<T: Ord>(v: &VecDeque<T>, e: &T) -> usize {
    let (a, b) = v.as_slices();
    match b.first() {
        Some(f) if *f < *e => a.len() + lower_bound(b, e),
        _ => lower_bound(a, e),
    }
}

/// Inserts `e` into the sorted ring `v` (not present before); `cold`: the ring is probably not
/// cached (see [`SortedSet::insert`]).
fn ring_insert<T: Ord + Copy>(v: &mut VecDeque<T>, e: T, cold: bool) {
    // The common cases first, without a search through the ring: an entry that goes last
    // (behind all its equals), or first (a least-used PE selected again keeps the lowest load).
    if v.back().is_none_or(|b| *b < e) {
        v.push_back(e);
    } else if v.front().is_some_and(|f| e < *f) {
        v.push_front(e);
    } else {
        if cold {
            prefetch_ring(v);
        }
        let i = ring_lower_bound(v, &e);
        debug_assert!(v.get(i) != Some(&e), "entry already present");
        v.insert(i, e);
    }
}

/// The place of `e` in the sorted ring `v`; `cold`: the ring is probably not cached.
fn ring_find<T: Ord + Copy>(v: &VecDeque<T>, e: &T, cold: bool) -> Option<usize> {
    if v.front() == Some(e) {
        Some(0)
    } else if v.back() == Some(e) {
        Some(v.len() - 1)
    } else {
        if cold {
            prefetch_ring(v);
        }
        let i = ring_lower_bound(v, e);
        (v.get(i) == Some(e)).then_some(i)
    }
}

/// Replaces `v[i]` by `e` if `e` sorts between its neighbours (the order stays as it is).
fn ring_replace_in_place<T: Ord + Copy>(v: &mut VecDeque<T>, i: usize, e: T) -> bool {
    let after_prev = i == 0 || v[i - 1] < e;
    let before_next = v.get(i + 1).is_none_or(|n| e < *n);
    if after_prev && before_next {
        v[i] = e;
        true
    } else {
        false
    }
}

/// Tops a large set's head up to [`HEAD_REFILL`] entries with the lowest of `tree` and `tail`.
#[inline(never)]
fn refill_head<T: Ord + Copy>(head: &mut VecDeque<T>, tree: &mut BTreeSet<T>, tail: &mut Tail<T>) {
    let mut need = HEAD_REFILL.saturating_sub(head.len());
    // The tree's first entry, looked up again only when it is taken (runs of tail entries,
    // as the degradation policies' moved entries are, come without a tree descent each).
    let mut first = tree.first().copied();
    while need > 0 {
        match tail.ring.front() {
            Some(&(x, dead)) if first.is_none_or(|t| x < t) => {
                tail.ring.pop_front();
                if dead {
                    tail.dead -= 1;
                } else {
                    head.push_back(x);
                    need -= 1;
                }
            }
            _ => {
                let Some(t) = first else { break };
                tree.pop_first();
                head.push_back(t);
                need -= 1;
                first = tree.first().copied();
            }
        }
    }
    tail.drop_dead_ends();
    shrink_ring(&mut tail.ring);
}

pub(super) fn shrink_ring<T>(v: &mut VecDeque<T>) {
    if v.capacity() > 64 && v.len() * 4 < v.capacity() {
        v.shrink_to(2 * v.len());
    }
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
            Self::big_from(v)
        } else {
            SortedSet::Small(v)
        }
    }

    /// The large form of the sorted entries `v`: the lowest in the head, the rest in the tree.
    fn big_from(mut v: VecDeque<T>) -> Self {
        let tree = v.drain(HEAD_REFILL.min(v.len())..).collect();
        v.shrink_to_fit();
        SortedSet::Big {
            head: v,
            rest: Box::new(Rest {
                tree,
                tail: Tail::new(),
            }),
        }
    }

    /// The ring of a small set (none for a large one).
    pub(super) fn small_mut(&mut self) -> Option<&mut VecDeque<T>> {
        match self {
            SortedSet::Small(v) => Some(v),
            SortedSet::Big { .. } => None,
        }
    }

    pub(super) fn first(&self) -> Option<&T> {
        match self {
            SortedSet::Small(v) => v.front(),
            SortedSet::Big { head, .. } => head.front(),
        }
    }

    /// Every entry in order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.first_n(usize::MAX)
    }

    /// The first `n` entries in order.
    pub(super) fn first_n(&self, n: usize) -> impl Iterator<Item = &T> + '_ {
        let (a, b) = match self {
            SortedSet::Small(v) => (v.iter(), None),
            SortedSet::Big { head, rest } => {
                (head.iter(), Some(merge(rest.tree.iter(), rest.tail.iter())))
            }
        };
        a.chain(b.into_iter().flatten()).take(n)
    }

    /// Appends the first `n` entries, in order, to `out`.
    pub(super) fn copy_first_n(&self, n: usize, out: &mut Vec<T>) {
        let (ring, rest) = match self {
            SortedSet::Small(v) => (v, None),
            SortedSet::Big { head, rest } => (head, Some((&rest.tree, &rest.tail))),
        };
        let (a, b) = ring.as_slices();
        let from_a = n.min(a.len());
        out.extend_from_slice(&a[..from_a]);
        let from_b = (n - from_a).min(b.len());
        out.extend_from_slice(&b[..from_b]);
        let more = n - from_a - from_b;
        if more > 0 {
            if let Some((tree, tail)) = rest {
                out.extend(merge(tree.iter(), tail.iter()).take(more));
            }
        }
    }

    /// Inserts `e` (not present before). `cold`: the set is one of so many that its ring is
    /// probably not cached; a search then first asks for all of the ring's cache lines at once
    /// (where the ring is cached, that would only cost time: about a third of a registration
    /// in a handlespace of 10³ PEs).
    pub(super) fn insert(&mut self, e: T, cold: bool) {
        match self {
            SortedSet::Small(v) => {
                ring_insert(v, e, cold);
                if v.len() > SMALL_MAX {
                    *self = Self::big_from(std::mem::take(v));
                }
            }
            SortedSet::Big { head, rest } => {
                let Rest { tree, tail } = &mut **rest;
                if (tree.is_empty() && tail.is_empty()) || head.back().is_some_and(|b| e < *b) {
                    ring_insert(head, e, cold);
                    if head.len() > HEAD_MAX {
                        let last = head.pop_back().expect("a full head");
                        tree.insert(last);
                    }
                } else if tail.revive(&e) {
                    // Back to life at its place in the tail.
                } else if match tail.back() {
                    Some(b) => *b < e,
                    None => tree.last().is_none_or(|t| *t < e),
                } {
                    // Behind every other entry (a degraded PE selected again).
                    tail.ring.push_back((e, false));
                } else {
                    let fresh = tree.insert(e);
                    debug_assert!(fresh, "entry already present");
                }
            }
        }
    }

    /// Removes `e`; false if it was not there. `cold`: as for [`Self::insert`].
    pub(super) fn remove(&mut self, e: &T, cold: bool) -> bool {
        match self {
            SortedSet::Small(v) => {
                let Some(i) = ring_find(v, e, cold) else {
                    return false;
                };
                v.remove(i);
                shrink_ring(v);
                true
            }
            SortedSet::Big { head, rest } => {
                let Rest { tree, tail } = &mut **rest;
                if head.back().is_some_and(|b| e <= b) {
                    let Some(i) = ring_find(head, e, cold) else {
                        return false;
                    };
                    head.remove(i);
                } else if !tail.remove(e) && !tree.remove(e) {
                    return false;
                }
                self.after_big_removal();
                true
            }
        }
    }

    /// Tops up a short head; returns to the small form when few entries are left.
    #[inline(always)]
    fn after_big_removal(&mut self) {
        let SortedSet::Big { head, rest } = self else {
            return;
        };
        let Rest { tree, tail } = &mut **rest;
        if head.len() + tree.len() + tail.len() < SMALL_MAX / 4 {
            let mut v = std::mem::take(head);
            v.extend(merge(tree.iter(), tail.iter()));
            *self = SortedSet::Small(v);
            return;
        }
        if head.len() < HEAD_LOW {
            refill_head(head, tree, tail);
        }
    }

    /// Replaces `old` (present) by `new` (not present): in place when `new` takes the same
    /// rank (a least-used PE selected again), else a removal and an insertion. `cold`: as for
    /// [`Self::insert`].
    pub(super) fn replace(&mut self, old: &T, new: T, cold: bool) {
        if !self.replace_first_in_place(old, new) {
            self.replace_moved(old, new, cold);
        }
    }

    /// The common case of a replacement: a selected least-used PE that stays first.
    #[inline(always)]
    fn replace_first_in_place(&mut self, old: &T, new: T) -> bool {
        let (SortedSet::Small(v) | SortedSet::Big { head: v, .. }) = self;
        if v.front() == Some(old) && v.get(1).is_some_and(|next| new < *next) {
            v[0] = new;
            true
        } else {
            false
        }
    }

    /// [`Self::replace`] after its common case.
    #[inline(never)]
    fn replace_moved(&mut self, old: &T, new: T, cold: bool) {
        // Within one ring: one search for the new place (none for the old one, which is
        // usually the front), then a removal and an insertion that each move the shorter side
        // of the ring (O(1) at its ends). In a large set's head, `new` must also stay below the
        // tree: it does if it is below the head's last entry, which itself only moves by a
        // removal and an insertion through the set.
        let (ring, small) = match self {
            SortedSet::Small(v) => (Some(v), true),
            SortedSet::Big { head, .. } if head.back().is_some_and(|b| *old < *b && new < *b) => {
                (Some(head), false)
            }
            SortedSet::Big { .. } => (None, false),
        };
        if let Some(ring) = ring {
            // A large set's head is where every resolution of the pool reads: cached.
            let i = ring_find(ring, old, cold && small).expect("entry present");
            if ring_replace_in_place(ring, i, new) {
                return;
            }
            // The new place: at an end without a search (a degraded PE that goes last), else
            // by a binary search.
            let j = if ring.back().is_some_and(|b| *b < new) {
                ring.len()
            } else if new < ring[0] {
                0
            } else {
                if cold && small {
                    prefetch_ring(ring);
                }
                ring_lower_bound(ring, &new)
            };
            ring.remove(i);
            ring.insert(if j > i { j - 1 } else { j }, new);
            return;
        }
        let found = self.remove(old, cold);
        debug_assert!(found, "entry present");
        self.insert(new, cold);
    }

    /// [`Self::replace`] for an entry a resolution selected. One that moves from a large set's
    /// head to behind it (a degraded least-used PE selected again, a WRR PE entering the next
    /// round) goes to the tail's end if it fits there (see [`Tail::make_room_for`]), not into
    /// the tree. The moved entries ascend as long as the lowest entries are selected and move
    /// back by the same degradation, so the next one follows it there: a run that may
    /// interleave with the tree's entries.
    #[inline]
    pub(super) fn replace_selected(&mut self, old: &T, new: T, cold: bool) {
        if self.replace_first_in_place(old, new) {
            return;
        }
        // (Below the head's last, `replace` keeps it within the head.)
        if let SortedSet::Big { head, .. } = self {
            if head.back().is_some_and(|b| *b < new) && self.move_behind_head(old, new) {
                return;
            }
        }
        self.replace_moved(old, new, cold);
    }

    /// Moves `old` (in the head) to `new` at the tail's end; false, with nothing changed, if
    /// `old` is not in the head or `new` does not fit there.
    #[inline(never)]
    fn move_behind_head(&mut self, old: &T, new: T) -> bool {
        let SortedSet::Big { head, rest } = self else {
            return false;
        };
        let in_head = head.back().is_some_and(|b| old <= b);
        if !in_head || !rest.tail.make_room_for(&new, &mut rest.tree) {
            return false;
        }
        if head.front() == Some(old) {
            head.pop_front();
        } else {
            // The head is where every resolution of the pool reads: cached.
            let i = ring_find(head, old, false).expect("entry present");
            head.remove(i);
        }
        // Behind the tail's last entry: no dead entry can equal it.
        rest.tail.ring.push_back((new, false));
        self.after_big_removal();
        true
    }

    /// Entries (a large set's tail counts without its dead ones).
    pub(super) fn len(&self) -> usize {
        match self {
            SortedSet::Small(v) => v.len(),
            SortedSet::Big { head, rest } => head.len() + rest.tree.len() + rest.tail.len(),
        }
    }

    #[cfg(test)]
    pub(super) fn is_small(&self) -> bool {
        matches!(self, SortedSet::Small(_))
    }

    /// Panics unless the set's invariants hold.
    #[cfg(test)]
    fn check(&self) {
        let ascending = |v: &mut dyn Iterator<Item = &T>| {
            let v: Vec<&T> = v.collect();
            assert!(v.windows(2).all(|w| w[0] < w[1]), "not ascending");
        };
        match self {
            SortedSet::Small(v) => ascending(&mut v.iter()),
            SortedSet::Big { head, rest } => {
                let Rest { tree, tail } = &**rest;
                ascending(&mut head.iter());
                ascending(&mut tail.ring.iter().map(|x| &x.0));
                assert!(!head.is_empty() || (tree.is_empty() && tail.is_empty()));
                if let Some(b) = head.back() {
                    assert!(tree.first().is_none_or(|t| b < t));
                    assert!(tail.front().is_none_or(|t| b < t));
                }
                assert!(head.len() <= HEAD_MAX);
                assert_eq!(tail.dead, tail.ring.iter().filter(|x| x.1).count());
                assert!(tail.ring.front().is_none_or(|x| !x.1));
                assert!(tail.ring.back().is_none_or(|x| !x.1));
                for (e, dead) in &tail.ring {
                    assert!(*dead || !tree.contains(e), "entry in tree and tail");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The branch-free search agrees with `partition_point`, on slices and on wrapped rings.
    #[test]
    fn lower_bound_is_partition_point() {
        for len in 0..40u64 {
            let s: Vec<u64> = (0..len).map(|i| 2 * i + 1).collect();
            for e in 0..2 * len + 3 {
                assert_eq!(lower_bound(&s, &e), s.partition_point(|x| *x < e));
            }
            for split in 0..=s.len() {
                let mut v: VecDeque<u64> = VecDeque::with_capacity(s.len());
                // Wrap the ring: the first `split` entries end up at the buffer's end.
                for _ in 0..v.capacity() - split {
                    v.push_back(0);
                    v.pop_front();
                }
                v.extend(s.iter().copied());
                for e in 0..2 * len + 3 {
                    assert_eq!(ring_lower_bound(&v, &e), v.partition_point(|x| *x < e));
                }
            }
        }
    }

    /// Against a BTreeSet, through growth past SMALL_MAX and shrinking back, with inserts at
    /// the back, the front and the middle.
    #[test]
    fn matches_a_btreeset_through_both_forms() {
        let mut set = SortedSet::new();
        let mut model = BTreeSet::new();
        let mut x: u64 = 7;
        let mut seen_big = false;
        let mut back_to_small = false;
        let (mut seen_tail, mut seen_dead) = (false, false);
        for step in 0..4000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Grow for a while, then shrink, then grow again.
            let grow = (step / 500) % 2 == 0;
            if (x % 3 != 0) == grow || model.is_empty() {
                let e = match x % 4 {
                    0 => step,             // back
                    1 => (1 << 40) - step, // beyond every other
                    _ => x % 10_000,       // anywhere
                };
                let cold = step % 2 == 0;
                assert_eq!(set.remove(&e, cold), model.remove(&e));
                set.insert(e, !cold);
                model.insert(e);
            } else {
                let k = (x as usize) % model.len();
                let e = *model.iter().nth(k).unwrap();
                assert!(set.remove(&e, step % 3 == 0));
                model.remove(&e);
                assert!(!set.remove(&e, step % 3 == 1));
            }
            if (x >> 11) % 3 == 0 && !model.is_empty() {
                // A replacement: near the old value (often in place), or anywhere; often of
                // the first entry (as a selection does).
                let k = if x % 2 == 0 {
                    0
                } else {
                    (x as usize >> 3) % model.len()
                };
                let e = *model.iter().nth(k).unwrap();
                let new = match (x >> 20) % 5 {
                    0 => (x >> 5) % 10_000,
                    // Back by a few hundred places (a degraded least-used PE before the loads
                    // converge): into the tail, interleaved with the tree.
                    4 => e + 200 + (x >> 40) % 64,
                    // Behind every other (a degraded least-used PE): into the tail.
                    1 => model.last().unwrap() + 1 + (x >> 40) % 3,
                    _ => e + 1,
                };
                if !model.contains(&new) {
                    if k == 0 {
                        set.replace_selected(&e, new, step % 5 < 2);
                    } else {
                        set.replace(&e, new, step % 5 < 2);
                    }
                    model.remove(&e);
                    model.insert(new);
                }
            }
            set.check();
            assert_eq!(set.len(), model.len());
            assert_eq!(set.first(), model.first());
            let n = (x % 5) as usize;
            assert!(set.first_n(n).eq(model.iter().take(n)));
            let mut copied = Vec::new();
            set.copy_first_n(n, &mut copied);
            assert!(copied.iter().eq(model.iter().take(n)));
            if let SortedSet::Big { rest, .. } = &set {
                seen_tail |= rest.tail.ring.len() > 4;
                seen_dead |= rest.tail.dead > 0;
            }
            if !set.is_small() {
                seen_big = true;
            } else if seen_big {
                back_to_small = true;
            }
        }
        assert!(set.first_n(usize::MAX).eq(model.iter()));
        assert!(seen_big && back_to_small && seen_tail && seen_dead);
    }

    /// Degraded least-used PEs selected again and again before the loads converge: the first
    /// entry moves back by a fixed step, landing among the tree's entries; the moved entries go
    /// to the tail as an ascending run interleaved with the tree (evicting the few tail
    /// entries above them), with insertions and removals anywhere in between.
    #[test]
    fn moves_back_form_a_tail_run_among_the_tree() {
        let mut model = BTreeSet::new();
        let mut x: u64 = 11;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..300 {
            model.insert(next() % 100_000);
        }
        // All in the tree, none in the tail.
        let mut set = SortedSet::from_sorted(model.iter().copied());
        let (mut max_tail, mut interleaved, mut evicted) = (0, false, false);
        for step in 0..3000 {
            let r = next();
            match r % 16 {
                // A registration anywhere, often behind every other (a tail record).
                0 | 1 => {
                    let e = if r % 32 == 0 {
                        model.last().unwrap() + 1 + (r >> 8) % 50
                    } else {
                        (r >> 8) % 200_000
                    };
                    if model.insert(e) {
                        set.insert(e, false);
                    }
                }
                // A deregistration anywhere (dead tail entries).
                2 => {
                    let k = (r as usize >> 8) % model.len();
                    let e = *model.iter().nth(k).unwrap();
                    assert!(set.remove(&e, true));
                    model.remove(&e);
                }
                _ => {
                    let e = *model.first().unwrap();
                    let new = e + 5_000 + (r >> 8) % 8;
                    if !model.contains(&new) {
                        let above = |set: &SortedSet<u64>| match set {
                            SortedSet::Big { rest, .. } => rest.tail.back().map(|b| *b > new),
                            SortedSet::Small(_) => None,
                        };
                        let was_above = above(&set) == Some(true);
                        set.replace_selected(&e, new, false);
                        // Tail entries above the moved one went to the tree, it went last.
                        evicted |= was_above && above(&set) == Some(false);
                        model.remove(&e);
                        model.insert(new);
                    }
                }
            }
            set.check();
            assert_eq!(set.len(), model.len());
            let mut copied = Vec::new();
            set.copy_first_n(3, &mut copied);
            assert!(copied.iter().eq(model.iter().take(3)));
            if step % 100 == 0 {
                assert!(set.iter().eq(model.iter()));
            }
            if let SortedSet::Big { rest, .. } = &set {
                max_tail = max_tail.max(rest.tail.len());
                interleaved |= match (rest.tree.last(), rest.tail.front()) {
                    (Some(t), Some(f)) => f < t,
                    _ => false,
                };
            }
        }
        assert!(set.iter().eq(model.iter()));
        assert!(
            max_tail > 50 && interleaved && evicted,
            "{max_tail} {interleaved} {evicted}"
        );
    }
}
