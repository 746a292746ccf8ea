//! PE id → slot for a large pool: an open-addressing table whose buckets are one cache line
//! each, holding seven ids next to their seven slots.
//!
//! Why not `hashbrown`: its control bytes and its entries live in two arrays, so a lookup in a
//! table much larger than the caches waits for two misses in a row (the control group, then the
//! entry the group points to). Here the ids and slots a lookup compares sit in the line the hash
//! names, so a lookup waits for one line. Buckets are probed linearly; a bucket that was ever
//! full while an insert passed it carries an `overflow` mark, and a lookup stops at the first
//! bucket without one. Removal only empties the place, so marks can outlive the entries that
//! set them; the table is rebuilt (which clears them) after as many removals as it has places
//! at its grow limit, an amortized O(1) a removal.

/// Entries a bucket holds.
const WAYS: usize = 7;

/// Smallest table, in buckets (a power of two).
const MIN_BUCKETS: usize = 8;

/// An id of 0 marks a free place (PE ids are never 0).
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Bucket {
    ids: [u32; WAYS],
    overflow: u32,
    slots: [u32; WAYS],
    _pad: u32,
}

impl Bucket {
    fn place_of(&self, id: u32) -> Option<usize> {
        // A branch-free compare of all seven ids (the compiler turns it into a vector compare).
        let hits = self
            .ids
            .iter()
            .enumerate()
            .fold(0u32, |m, (i, &x)| m | (u32::from(x == id) << i));
        (hits != 0).then(|| hits.trailing_zeros() as usize)
    }
}

pub(super) struct IdTable {
    buckets: Vec<Bucket>,
    len: usize,
    /// Removals since the table was last built (see the module comment).
    removals: usize,
}

impl IdTable {
    /// A table for `n` entries without growing.
    pub(super) fn with_capacity(n: usize) -> Self {
        IdTable {
            buckets: vec![Bucket::default(); Self::buckets_for(n)],
            len: 0,
            removals: 0,
        }
    }

    fn buckets_for(n: usize) -> usize {
        // Grow limit: 80 % of the places.
        (n * 5 / 4)
            .div_ceil(WAYS)
            .next_power_of_two()
            .max(MIN_BUCKETS)
    }

    fn limit(&self) -> usize {
        self.buckets.len() * WAYS * 4 / 5
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Places (entries it can hold at full load).
    #[cfg(test)]
    pub(super) fn capacity(&self) -> usize {
        self.buckets.len() * WAYS
    }

    fn mask(&self) -> usize {
        self.buckets.len() - 1
    }

    /// The slot of `id`, whose hash is `hash`.
    #[inline]
    pub(super) fn find(&self, hash: u64, id: u32) -> Option<u32> {
        let (b, i) = self.locate(hash, id)?;
        Some(self.buckets[b].slots[i])
    }

    fn locate(&self, hash: u64, id: u32) -> Option<(usize, usize)> {
        if id == 0 {
            return None;
        }
        let mask = self.mask();
        let mut b = hash as usize & mask;
        // Some bucket is never overflowed (the grow limit leaves places free and a rebuild
        // clears stale marks), but the bound keeps a broken invariant from looping forever.
        for _ in 0..self.buckets.len() {
            let bucket = &self.buckets[b];
            if let Some(i) = bucket.place_of(id) {
                return Some((b, i));
            }
            if bucket.overflow == 0 {
                return None;
            }
            b = (b + 1) & mask;
        }
        None
    }

    /// Adds `id` → `slot`; `id` (non-zero) must not be in the table. `hash_of` gives the hash of
    /// any id (for growing).
    pub(super) fn insert_unique(
        &mut self,
        hash: u64,
        id: u32,
        slot: u32,
        hash_of: impl Fn(u32) -> u64,
    ) {
        debug_assert!(id != 0 && self.locate(hash, id).is_none());
        if self.len + 1 > self.limit() {
            self.rebuild(2 * self.buckets.len(), &hash_of);
        }
        self.place(hash, id, slot);
        self.len += 1;
    }

    fn place(&mut self, hash: u64, id: u32, slot: u32) {
        let mask = self.mask();
        let mut b = hash as usize & mask;
        loop {
            let bucket = &mut self.buckets[b];
            if let Some(i) = bucket.place_of(0) {
                bucket.ids[i] = id;
                bucket.slots[i] = slot;
                return;
            }
            bucket.overflow = 1;
            b = (b + 1) & mask;
        }
    }

    /// Removes `id`; returns its slot if it was there.
    pub(super) fn remove(
        &mut self,
        hash: u64,
        id: u32,
        hash_of: impl Fn(u32) -> u64,
    ) -> Option<u32> {
        let (b, i) = self.locate(hash, id)?;
        let bucket = &mut self.buckets[b];
        bucket.ids[i] = 0;
        let slot = bucket.slots[i];
        self.len -= 1;
        self.removals += 1;
        if self.buckets.len() > MIN_BUCKETS && self.len * 8 < self.limit() {
            // A table that emptied to an eighth gives memory back.
            self.rebuild(Self::buckets_for(2 * self.len), &hash_of);
        } else if self.removals > self.limit() {
            self.rebuild(self.buckets.len(), &hash_of);
        }
        Some(slot)
    }

    fn rebuild(&mut self, buckets: usize, hash_of: &impl Fn(u32) -> u64) {
        let old = std::mem::replace(&mut self.buckets, vec![Bucket::default(); buckets]);
        for bucket in &old {
            for (&id, &slot) in bucket.ids.iter().zip(&bucket.slots) {
                if id != 0 {
                    self.place(hash_of(id), id, slot);
                }
            }
        }
        self.removals = 0;
    }

    /// Heap bytes.
    #[cfg(test)]
    pub(super) fn heap_bytes(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<Bucket>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A deliberately poor hash (few distinct buckets) so that probing, overflow marks and
    /// rebuilds are exercised, next to a good one.
    fn check_against_map(hash_of: fn(u32) -> u64) {
        let mut t = IdTable::with_capacity(0);
        let mut model: HashMap<u32, u32> = HashMap::new();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for step in 0..60_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let id = (x % 3000) as u32 + 1;
            // Grow for the first half, then shrink: every size is crossed both ways.
            let insert_bias = if step < 30_000 { 6 } else { 3 };
            if (x >> 40) % 10 < insert_bias {
                if let std::collections::hash_map::Entry::Vacant(e) = model.entry(id) {
                    e.insert(step);
                    t.insert_unique(hash_of(id), id, step, hash_of);
                }
            } else {
                assert_eq!(t.remove(hash_of(id), id, hash_of), model.remove(&id));
            }
            assert_eq!(t.len(), model.len());
            if step % 997 == 0 {
                for probe in 1..=3000 {
                    assert_eq!(t.find(hash_of(probe), probe), model.get(&probe).copied());
                }
            }
        }
        assert_eq!(t.find(hash_of(0), 0), None);
    }

    #[test]
    fn matches_a_map_with_a_good_hash() {
        check_against_map(|id| u64::from(id).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 17);
    }

    #[test]
    fn matches_a_map_with_a_colliding_hash() {
        check_against_map(|id| u64::from(id % 5));
    }

    #[test]
    fn a_bucket_is_one_cache_line_and_the_table_shrinks() {
        assert_eq!(std::mem::size_of::<Bucket>(), 64);
        let h = |id: u32| u64::from(id).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut t = IdTable::with_capacity(0);
        for id in 1..=10_000 {
            t.insert_unique(h(id), id, id, h);
        }
        let full = t.heap_bytes();
        // 64-byte buckets at 40–80 % load: 11–23 bytes an entry.
        assert!(full <= 10_000 * 23, "{full}");
        for id in 1..=9_900 {
            assert_eq!(t.remove(h(id), id, h), Some(id));
        }
        assert!(t.heap_bytes() * 8 <= full, "{} of {full}", t.heap_bytes());
        for id in 9_901..=10_000 {
            assert_eq!(t.find(h(id), id), Some(id));
        }
    }
}
