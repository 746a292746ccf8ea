//! PE storage: fixed-size chunks of slots, so growth never copies the whole table and unused
//! capacity is bounded by one chunk (a doubling `Vec` wastes up to half of the biggest table).
//!
//! A free slot holds [`Vacant::vacant`], and which slots are live is a bitmap beside the chunks
//! (one bit a slot, small enough to stay cached). So a write into a live value is only a store:
//! with `Option<T>` slots, finding out that a slot is live read the value's own (cold) cache
//! line first, and a selection that only stores a sequence number into a PE waited for it.

pub(super) const CHUNK_BITS: u32 = 8;
pub(super) const CHUNK: usize = 1 << CHUNK_BITS;

pub(crate) struct Slab<T> {
    chunks: Vec<Box<[T]>>,
    /// Bit `s % 64` of word `s / 64`: slot `s` holds a value.
    live: Vec<u64>,
    free: Vec<u32>,
    /// Slots `[0, used)` have been handed out at least once.
    used: u32,
}

/// What a free slot holds.
pub(crate) trait Vacant {
    fn vacant() -> Self;
}

impl<T: Vacant> Slab<T> {
    pub(crate) const fn new() -> Self {
        Slab {
            chunks: Vec::new(),
            live: Vec::new(),
            free: Vec::new(),
            used: 0,
        }
    }

    pub(crate) fn is_live(&self, slot: u32) -> bool {
        self.live
            .get(slot as usize / 64)
            .is_some_and(|w| w & (1 << (slot % 64)) != 0)
    }

    fn set_live(&mut self, slot: u32, live: bool) {
        let w = &mut self.live[slot as usize / 64];
        if live {
            *w |= 1 << (slot % 64);
        } else {
            *w &= !(1 << (slot % 64));
        }
    }

    pub(crate) fn get(&self, slot: u32) -> &T {
        assert!(self.is_live(slot), "live slot");
        &self.chunks[(slot >> CHUNK_BITS) as usize][slot as usize & (CHUNK - 1)]
    }

    pub(crate) fn get_mut(&mut self, slot: u32) -> &mut T {
        assert!(self.is_live(slot), "live slot");
        &mut self.chunks[(slot >> CHUNK_BITS) as usize][slot as usize & (CHUNK - 1)]
    }

    /// Stores `value` in a free slot and returns the slot.
    pub(crate) fn insert(&mut self, value: T) -> u32 {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                if self.used as usize == self.chunks.len() * CHUNK {
                    self.chunks.push((0..CHUNK).map(|_| T::vacant()).collect());
                    self.live.resize(self.chunks.len() * CHUNK / 64, 0);
                }
                self.used += 1;
                self.used - 1
            }
        };
        self.set_live(slot, true);
        *self.get_mut(slot) = value;
        slot
    }

    /// The slot that the next `insert` will use.
    pub(crate) fn next_slot(&self) -> u32 {
        self.free.last().copied().unwrap_or(self.used)
    }

    pub(crate) fn remove(&mut self, slot: u32) -> T {
        let v = std::mem::replace(self.get_mut(slot), T::vacant());
        self.set_live(slot, false);
        self.free.push(slot);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Vacant for u32 {
        fn vacant() -> Self {
            0
        }
    }

    #[test]
    fn reuses_slots_and_grows_by_chunks() {
        let mut s = Slab::new();
        let slots: Vec<u32> = (0..1000u32).map(|i| s.insert(i)).collect();
        assert_eq!(slots[999], 999);
        assert_eq!(s.chunks.len(), 1000usize.div_ceil(CHUNK));
        assert_eq!(s.remove(500), 500);
        assert_eq!(s.next_slot(), 500);
        assert_eq!(s.insert(7), 500);
        assert_eq!(*s.get(500), 7);
        *s.get_mut(3) += 1;
        assert_eq!(*s.get(3), 4);
    }

    #[test]
    #[should_panic(expected = "live slot")]
    fn a_removed_slot_is_not_readable() {
        let mut s = Slab::new();
        let a = s.insert(1u32);
        s.insert(2);
        s.remove(a);
        s.get(a);
    }
}
