//! A cache-friendly weighted-selection tree: an implicit 8-ary sum tree over u32 weights with
//! u64 sums. O(log₈ n) point update, append and "which position holds cumulative value r" —
//! the weighted draw of the value-tree policies (Random, Weighted Random, RLU, ...). Each inner
//! node's 8 child sums fill one 64-byte cache line, so a draw over 10⁶ PEs touches ~7 lines
//! (a binary Fenwick tree touches ~20).

const FAN_BITS: u32 = 3;
const FAN: usize = 1 << FAN_BITS;

#[derive(Clone, Debug, Default)]
pub(crate) struct Fenwick {
    values: Vec<u32>,
    /// `sums[0][i]` = Σ values[8i .. 8i+8]; `sums[k][i]` = Σ sums[k-1][8i .. 8i+8]. The last
    /// level has one element (the total) once there are values.
    sums: Vec<Vec<u64>>,
}

impl Fenwick {
    #[inline]
    pub(crate) fn total(&self) -> u64 {
        match self.sums.last() {
            Some(top) => top.first().copied().unwrap_or(0),
            None => 0,
        }
    }

    #[inline]
    pub(crate) fn get(&self, pos: usize) -> u32 {
        self.values[pos]
    }

    /// Appends a value at position `len()`.
    pub(crate) fn push(&mut self, value: u32) {
        self.values.push(value);
        let mut idx = self.values.len() - 1;
        let mut level = 0;
        loop {
            idx >>= FAN_BITS;
            if level == self.sums.len() {
                // A new top level over a level that just grew to two nodes.
                let total = self
                    .sums
                    .last()
                    .map_or(u64::from(value), |l| l.iter().sum());
                self.sums.push(vec![total]);
                return;
            }
            let top = level + 1 == self.sums.len();
            let l = &mut self.sums[level];
            if idx == l.len() {
                l.push(0);
            }
            l[idx] += u64::from(value);
            if top && l.len() == 1 {
                return;
            }
            level += 1;
        }
    }

    /// Sets the value at `pos`.
    #[inline]
    pub(crate) fn set(&mut self, pos: usize, value: u32) {
        let old = self.values[pos];
        if old == value {
            return;
        }
        self.values[pos] = value;
        let mut idx = pos;
        for l in self.sums.iter_mut() {
            idx >>= FAN_BITS;
            l[idx] = l[idx] - u64::from(old) + u64::from(value);
        }
    }

    /// The position whose cumulative range [prefix(pos), prefix(pos+1)) contains `r`
    /// (`r < total()`); positions with value 0 are never returned.
    #[inline]
    pub(crate) fn find(&self, mut r: u64) -> usize {
        debug_assert!(r < self.total());
        let mut idx = 0; // node index at the current level
        for l in self.sums.iter().rev().skip(1) {
            let first = idx << FAN_BITS;
            let end = (first + FAN).min(l.len());
            idx = end - 1;
            for (i, s) in l[first..end].iter().enumerate() {
                if r < *s {
                    idx = first + i;
                    break;
                }
                r -= s;
            }
        }
        let first = idx << FAN_BITS;
        let end = (first + FAN).min(self.values.len());
        for (i, v) in self.values[first..end].iter().enumerate() {
            if r < u64::from(*v) {
                return first + i;
            }
            r -= u64::from(*v);
        }
        unreachable!("r below total")
    }

    /// [`Fenwick::find`] for several values at once, descending the levels in lockstep: the
    /// searches are independent, so their cache misses overlap instead of adding up (a draw of
    /// 3 PEs in a large pool costs about one search's latency, not three).
    pub(crate) fn find_many(&self, rs: &mut [u64], out: &mut [usize]) {
        debug_assert_eq!(rs.len(), out.len());
        out.fill(0);
        for l in self.sums.iter().rev().skip(1) {
            for (r, idx) in rs.iter_mut().zip(out.iter_mut()) {
                let first = *idx << FAN_BITS;
                let end = (first + FAN).min(l.len());
                *idx = end - 1;
                for (i, s) in l[first..end].iter().enumerate() {
                    if *r < *s {
                        *idx = first + i;
                        break;
                    }
                    *r -= s;
                }
            }
        }
        for (r, idx) in rs.iter_mut().zip(out.iter_mut()) {
            let first = *idx << FAN_BITS;
            let end = (first + FAN).min(self.values.len());
            let mut pos = end - 1;
            for (i, v) in self.values[first..end].iter().enumerate() {
                if *r < u64::from(*v) {
                    pos = first + i;
                    break;
                }
                *r -= u64::from(*v);
            }
            *idx = pos;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(f: &Fenwick, vals: &[u32]) {
        let total: u64 = vals.iter().map(|v| u64::from(*v)).sum();
        assert_eq!(f.total(), total);
        let mut acc = 0u64;
        for (pos, v) in vals.iter().enumerate() {
            for r in [
                acc,
                acc + u64::from(*v) / 2,
                (acc + u64::from(*v)).saturating_sub(1),
            ] {
                if *v > 0 {
                    assert_eq!(f.find(r), pos, "r={r}");
                }
            }
            acc += u64::from(*v);
        }
    }

    #[test]
    fn matches_naive_cumulative_search() {
        let mut f = Fenwick::default();
        let mut vals: Vec<u32> = (0..600).map(|i| (i * 7919 % 13) as u32).collect();
        for (i, v) in vals.iter().enumerate() {
            f.push(*v);
            if i % 37 == 0 {
                check(&f, &vals[..=i]);
            }
        }
        check(&f, &vals);
        let total = f.total();
        let mut rs: Vec<u64> = (0..7).map(|i| i * 7_777 % total).collect();
        let want: Vec<usize> = rs.iter().map(|r| f.find(*r)).collect();
        let mut got = vec![0; rs.len()];
        f.find_many(&mut rs, &mut got);
        assert_eq!(got, want);
        f.set(5, 100);
        vals[5] = 100;
        f.set(0, 0);
        vals[0] = 0;
        check(&f, &vals);
        for v in [3, 0, 9] {
            f.push(v);
            vals.push(v);
        }
        check(&f, &vals);
    }
}
