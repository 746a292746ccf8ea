//! A Fenwick (binary indexed) tree over u32 weights with u64 sums: O(log n) point update, append,
//! pop and "which position holds cumulative value r" — the weighted draw of the value-tree
//! policies (Random, Weighted Random, RLU, ...).

#[derive(Clone, Debug, Default)]
pub(crate) struct Fenwick {
    /// `tree[i-1]` holds the sum of values at positions (i - lowbit(i), i], 1-based.
    tree: Vec<u64>,
    values: Vec<u32>,
    total: u64,
}

impl Fenwick {
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    pub(crate) fn get(&self, pos: usize) -> u32 {
        self.values[pos]
    }

    fn prefix(&self, mut i: usize) -> u64 {
        // Sum of positions [0, i).
        let mut s = 0;
        while i > 0 {
            s += self.tree[i - 1];
            i &= i - 1;
        }
        s
    }

    /// Appends a value at position `len()`.
    pub(crate) fn push(&mut self, value: u32) {
        let i = self.values.len() + 1; // 1-based index of the new node
        let low = i & i.wrapping_neg();
        // The node covers (i - low, i]: the new value plus positions (i - low, i - 1].
        let covered = self.prefix(i - 1) - self.prefix(i - low);
        self.tree.push(covered + u64::from(value));
        self.values.push(value);
        self.total += u64::from(value);
    }

    /// Removes the last position and returns its value.
    pub(crate) fn pop(&mut self) -> Option<u32> {
        let v = self.values.pop()?;
        // No lower node covers the last position, so dropping its node is enough.
        self.tree.pop();
        self.total -= u64::from(v);
        Some(v)
    }

    /// Sets the value at `pos`.
    pub(crate) fn set(&mut self, pos: usize, value: u32) {
        let old = self.values[pos];
        if old == value {
            return;
        }
        self.values[pos] = value;
        self.total = self.total - u64::from(old) + u64::from(value);
        let mut i = pos + 1;
        while i <= self.tree.len() {
            self.tree[i - 1] = self.tree[i - 1] - u64::from(old) + u64::from(value);
            i += i & i.wrapping_neg();
        }
    }

    /// The position whose cumulative range [prefix(pos), prefix(pos+1)) contains `r`
    /// (`r < total()`); positions with value 0 are never returned.
    pub(crate) fn find(&self, mut r: u64) -> usize {
        debug_assert!(r < self.total);
        let n = self.tree.len();
        let mut pos = 0; // number of positions known to lie entirely below r
        let mut step = if n == 0 {
            0
        } else {
            1 << (usize::BITS - 1 - n.leading_zeros())
        };
        while step > 0 {
            let next = pos + step;
            if next <= n && self.tree[next - 1] <= r {
                r -= self.tree[next - 1];
                pos = next;
            }
            step >>= 1;
        }
        pos
    }

    pub(crate) fn shrink_to_fit(&mut self) {
        self.tree.shrink_to_fit();
        self.values.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_naive_cumulative_search() {
        let mut f = Fenwick::default();
        let vals: Vec<u32> = (0..37).map(|i| (i * 7919 % 13) as u32).collect();
        for v in &vals {
            f.push(*v);
        }
        let check = |f: &Fenwick, vals: &[u32]| {
            let total: u64 = vals.iter().map(|v| u64::from(*v)).sum();
            assert_eq!(f.total(), total);
            let mut acc = 0u64;
            for (pos, v) in vals.iter().enumerate() {
                for r in acc..acc + u64::from(*v) {
                    assert_eq!(f.find(r), pos);
                }
                acc += u64::from(*v);
            }
        };
        check(&f, &vals);
        let mut vals = vals;
        f.set(5, 100);
        vals[5] = 100;
        f.set(0, 0);
        vals[0] = 0;
        check(&f, &vals);
        for _ in 0..10 {
            assert_eq!(f.pop(), vals.pop());
            check(&f, &vals);
        }
        f.push(9);
        vals.push(9);
        check(&f, &vals);
    }
}
