//! PE storage: fixed-size chunks of slots, so growth never copies the whole table and unused
//! capacity is bounded by one chunk (a doubling `Vec` wastes up to half of the biggest table).

const CHUNK_BITS: u32 = 8;
const CHUNK: usize = 1 << CHUNK_BITS;

pub(crate) struct Slab<T> {
    chunks: Vec<Box<[Option<T>]>>,
    free: Vec<u32>,
    /// Slots `[0, used)` have been handed out at least once.
    used: u32,
}

impl<T> Slab<T> {
    pub(crate) const fn new() -> Self {
        Slab {
            chunks: Vec::new(),
            free: Vec::new(),
            used: 0,
        }
    }

    fn at(&self, slot: u32) -> &Option<T> {
        &self.chunks[(slot >> CHUNK_BITS) as usize][slot as usize & (CHUNK - 1)]
    }

    fn at_mut(&mut self, slot: u32) -> &mut Option<T> {
        &mut self.chunks[(slot >> CHUNK_BITS) as usize][slot as usize & (CHUNK - 1)]
    }

    /// Stores `value` in a free slot and returns the slot.
    pub(crate) fn insert(&mut self, value: T) -> u32 {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                if self.used as usize == self.chunks.len() * CHUNK {
                    self.chunks.push((0..CHUNK).map(|_| None).collect());
                }
                self.used += 1;
                self.used - 1
            }
        };
        *self.at_mut(slot) = Some(value);
        slot
    }

    /// The slot that the next `insert` will use.
    pub(crate) fn next_slot(&self) -> u32 {
        self.free.last().copied().unwrap_or(self.used)
    }

    pub(crate) fn remove(&mut self, slot: u32) -> T {
        let v = self.at_mut(slot).take().expect("live slot");
        self.free.push(slot);
        v
    }

    pub(crate) fn get(&self, slot: u32) -> &T {
        self.at(slot).as_ref().expect("live slot")
    }

    pub(crate) fn get_mut(&mut self, slot: u32) -> &mut T {
        self.at_mut(slot).as_mut().expect("live slot")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
