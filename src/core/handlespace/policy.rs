//! Member selection policies (RFC 5356 + rsplib's extensions): how each policy orders or weighs
//! the PEs of a pool, and what a selection changes. Facts: `wire-format-detailed.md` §7.
//!
//! Two engines, as in rsplib:
//! * **sorted** — the pool is ordered by a per-policy key (ascending); a request for N PEs returns
//!   the first N, then the first `min(N, maxIncrement)` are "updated" (new sequence number, i.e.
//!   moved behind equal keys, plus the policy hook: degradation, WRR counters);
//! * **value tree** — each PE has a weight; each pick draws `r = rand64 % Σweights` and takes the
//!   PE whose cumulative range holds `r`, without replacement.

use crate::core::types::{PolicyInfo, PolicyType};

/// Saturation limit of loads (a load is a fraction of 0xFFFFFFFF).
pub const MAX_LOAD: u64 = 0xffff_ffff;

/// The selection engine a policy uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sorted,
    ValueTree,
}

/// The engine of a policy.
#[inline]
pub const fn engine(p: PolicyType) -> Engine {
    use PolicyType::*;
    match p {
        Random
        | WeightedRandom
        | WeightedRandomDpf
        | RandomizedLeastUsed
        | RandomizedLeastUsedDegradation
        | RandomizedPriorityLeastUsed
        | RandomizedPriorityLeastUsedDegradation => Engine::ValueTree,
        _ => Engine::Sorted,
    }
}

/// The policy's default maxIncrement (rsplib: 0 for RAND, WRAND, WRAND-DPF; 1 otherwise).
#[inline]
pub const fn default_max_increment(p: PolicyType) -> u32 {
    use PolicyType::*;
    match p {
        Random | WeightedRandom | WeightedRandomDpf => 0,
        _ => 1,
    }
}

/// Per-PE selection state kept by the engine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SelectionState {
    /// Per-pool sequence number, assigned on insert and on every update.
    pub seq: u64,
    /// Accumulated load degradation (reset on every (re-)registration).
    pub degradation: u32,
    /// WRR round counter.
    pub round: u64,
    /// WRR virtual counter (selections left in the current round).
    pub virtual_counter: u32,
}

/// The ordering key of a PE under a sorted policy: `(primary, secondary, seq)`, ascending.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SortKey {
    pub primary: u64,
    pub secondary: u32,
    pub seq: u64,
}

#[inline]
fn sat_load(parts: &[u64]) -> u64 {
    parts.iter().sum::<u64>().min(MAX_LOAD)
}

/// The sorted-engine key (meaningless for value-tree policies) of a policy given as stored: its
/// type and its wire values in wire order (`PolicyType::wire_values`, unused ones 0), without
/// building a [`PolicyInfo`] first (every sorted-pool removal and update computes a key).
#[inline]
pub fn sort_key_of_wire(policy: PolicyType, v: &[u32; 4], st: &SelectionState) -> SortKey {
    use PolicyType::*;
    let w = |i: usize| u64::from(v[i]);
    let deg = u64::from(st.degradation);
    // `distance · DPF` in load units (DPF is a fraction of 0xFFFFFFFF per ms of distance), from
    // the wire places of DPF and distance.
    let penalty = |dpf: usize, distance: usize| (w(distance) * w(dpf)).min(MAX_LOAD);
    let (primary, secondary) = match policy {
        RoundRobin => (0, 0),
        WeightedRoundRobin => (st.round, st.virtual_counter),
        Priority => (u64::from(u32::MAX - v[0]), 0),
        LeastUsed => (w(0), 0),
        // [load, load degradation]
        LeastUsedDegradation => (sat_load(&[w(0), deg]), 0),
        PriorityLeastUsed => (sat_load(&[w(0), w(1)]), 0),
        PriorityLeastUsedDegradation => (sat_load(&[w(0), w(1), deg]), 0),
        // [load, load DPF, distance]
        LeastUsedDpf => (sat_load(&[w(0), penalty(1, 2)]), 0),
        // [load, load degradation, load DPF, distance]
        LeastUsedDegradationDpf => (sat_load(&[w(0), deg, penalty(2, 3)]), 0),
        // Not in rsplib's wire codec; extrapolated as PLU / PLUD plus the distance penalty.
        PriorityLeastUsedDpf => (sat_load(&[w(0), w(1), penalty(2, 3)]), 0),
        PriorityLeastUsedDegradationDpf => (sat_load(&[w(0), w(1), deg, penalty(2, 3)]), 0),
        // Value-tree policies.
        _ => (0, 0),
    };
    SortKey {
        primary,
        secondary,
        seq: st.seq,
    }
}

/// The value-tree weight of a PE (meaningless for sorted policies).
#[inline]
pub fn weight_value(info: &PolicyInfo, st: &SelectionState) -> u32 {
    use PolicyType::*;
    let inv = |sub: &[u64]| -> u32 {
        let s = sub.iter().sum::<u64>();
        MAX_LOAD.saturating_sub(s).max(1) as u32
    };
    let load = u64::from(info.load);
    let inc = u64::from(info.load_degradation);
    let deg = u64::from(st.degradation);
    match info.policy {
        Random => 1,
        WeightedRandom => info.weight,
        WeightedRandomDpf => {
            // weight − rint(weight · distance · weightDPF / 0xFFFFFFFF); negative → 1.
            let num =
                u128::from(info.weight) * u128::from(info.distance) * u128::from(info.weight_dpf);
            let den = u128::from(MAX_LOAD);
            let penalty = (2 * num + den) / (2 * den);
            if penalty > u128::from(info.weight) {
                1
            } else {
                info.weight - penalty as u32
            }
        }
        RandomizedLeastUsed => inv(&[load]),
        RandomizedPriorityLeastUsed => inv(&[load, inc]),
        RandomizedLeastUsedDegradation => inv(&[load, deg]),
        RandomizedPriorityLeastUsedDegradation => inv(&[load, inc, deg]),
        _ => 1,
    }
}

/// Initial state of a PE inserted into a pool; `head_round` is the WRR round of the pool's
/// current head (0 for an empty pool).
#[inline]
pub fn on_insert(info: &PolicyInfo, seq: u64, head_round: u64) -> SelectionState {
    SelectionState {
        seq,
        degradation: 0,
        round: head_round,
        virtual_counter: info.weight,
    }
}

/// State change on re-registration with new policy values `info` (old values `old`): the
/// accumulated degradation is reset; the position (sequence number) is kept; a changed WRR weight
/// restarts the PE's virtual counter.
#[inline]
pub fn on_reregistration(old: &PolicyInfo, info: &PolicyInfo, st: &mut SelectionState) {
    st.degradation = 0;
    if old.weight != info.weight {
        st.virtual_counter = info.weight;
    }
}

/// True if a selection changes nothing of a PE's sort key but the sequence number (the PE goes
/// behind its equals): then the engine can move its entry without reading the PE first.
#[inline]
pub const fn selection_renews_only_seq(p: PolicyType) -> bool {
    use PolicyType::*;
    !matches!(
        p,
        WeightedRoundRobin
            | LeastUsedDegradation
            | PriorityLeastUsedDegradation
            | LeastUsedDegradationDpf
            | PriorityLeastUsedDegradationDpf
    )
}

/// True if a selection adds the PE's load degradation to its accumulated degradation, and so
/// (saturating) to its sort key's primary, and changes nothing else but the sequence number.
/// The load degradation is then the policy's wire value [`DEGRADATION_VALUE`].
#[inline]
pub const fn selection_adds_degradation(p: PolicyType) -> bool {
    use PolicyType::*;
    matches!(
        p,
        LeastUsedDegradation
            | PriorityLeastUsedDegradation
            | LeastUsedDegradationDpf
            | PriorityLeastUsedDegradationDpf
    )
}

/// Where the load degradation is among the wire values of a policy for which
/// [`selection_adds_degradation`] holds.
pub const DEGRADATION_VALUE: usize = 1;

/// The policy hook of an "update" after a selection (sequence number set by the caller).
#[inline]
pub fn on_selected(info: &PolicyInfo, st: &mut SelectionState, seq: u64) {
    use PolicyType::*;
    st.seq = seq;
    match info.policy {
        WeightedRoundRobin => {
            if st.virtual_counter <= 1 {
                st.round += 1;
                st.virtual_counter = info.weight;
            } else {
                st.virtual_counter -= 1;
            }
        }
        LeastUsedDegradation
        | PriorityLeastUsedDegradation
        | LeastUsedDegradationDpf
        | PriorityLeastUsedDegradationDpf => {
            st.degradation = st.degradation.saturating_add(info.load_degradation);
        }
        PriorityLeastUsedDpf => {}
        // RLUD / RPLUD: rsplib never increments the degradation (≡ RLU / RPLU).
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `distance · DPF` in load units.
    fn distance_penalty(info: &PolicyInfo) -> u64 {
        (u64::from(info.distance) * u64::from(info.load_dpf)).min(MAX_LOAD)
    }

    /// The sorted-engine key from a [`PolicyInfo`]'s named fields: the reference that
    /// [`sort_key_of_wire`], which reads the stored wire values by place, is checked against.
    fn sort_key(info: &PolicyInfo, st: &SelectionState) -> SortKey {
        use PolicyType::*;
        let load = u64::from(info.load);
        let inc = u64::from(info.load_degradation);
        let deg = u64::from(st.degradation);
        let (primary, secondary) = match info.policy {
            RoundRobin => (0, 0),
            WeightedRoundRobin => (st.round, st.virtual_counter),
            Priority => (u64::from(u32::MAX - info.priority), 0),
            LeastUsed => (load, 0),
            LeastUsedDegradation => (sat_load(&[load, deg]), 0),
            PriorityLeastUsed => (sat_load(&[load, inc]), 0),
            PriorityLeastUsedDegradation => (sat_load(&[load, inc, deg]), 0),
            LeastUsedDpf => (sat_load(&[load, distance_penalty(info)]), 0),
            LeastUsedDegradationDpf => (sat_load(&[load, deg, distance_penalty(info)]), 0),
            PriorityLeastUsedDpf => (sat_load(&[load, inc, distance_penalty(info)]), 0),
            PriorityLeastUsedDegradationDpf => {
                (sat_load(&[load, inc, deg, distance_penalty(info)]), 0)
            }
            _ => (0, 0),
        };
        SortKey {
            primary,
            secondary,
            seq: st.seq,
        }
    }

    /// The key from stored wire values is the key from the policy they make, for every policy
    /// type and values from 0 to the saturating ones.
    #[test]
    fn sort_key_of_wire_is_sort_key() {
        let values = [0, 1, 7, 0x8000_0000, u32::MAX - 1, u32::MAX];
        let mut x: u64 = 5;
        for p in PolicyType::ALL {
            for _ in 0..500 {
                let mut v = [0u32; 4];
                for slot in v.iter_mut().take(p.wire_values().len()) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    *slot = values[(x % values.len() as u64) as usize];
                }
                let st = SelectionState {
                    seq: x >> 40,
                    degradation: values[(x >> 8) as usize % values.len()],
                    round: x >> 50,
                    virtual_counter: (x >> 20) as u32,
                };
                let info =
                    PolicyInfo::from_wire_values(p, &v[..p.wire_values().len()]).expect("values");
                assert_eq!(
                    sort_key_of_wire(p, &v, &st),
                    sort_key(&info, &st),
                    "{p:?} {v:?}"
                );
            }
        }
    }

    #[test]
    fn engines_and_defaults() {
        assert_eq!(engine(PolicyType::RoundRobin), Engine::Sorted);
        assert_eq!(engine(PolicyType::RandomizedLeastUsed), Engine::ValueTree);
        assert_eq!(default_max_increment(PolicyType::WeightedRandom), 0);
        assert_eq!(default_max_increment(PolicyType::LeastUsed), 1);
    }

    #[test]
    fn only_the_listed_policies_change_more_than_the_sequence_number() {
        for p in PolicyType::ALL {
            if engine(p) != Engine::Sorted {
                continue;
            }
            let mut info = PolicyInfo::new(p);
            info.weight = 3;
            info.load = 1000;
            info.load_degradation = 77;
            info.priority = 5;
            info.distance = 9;
            info.load_dpf = 1 << 20;
            let mut st = on_insert(&info, 4, 2);
            let mut changed = false;
            // WRR changes its key only at the end of a round: select a few times.
            for seq in 5..10 {
                let before = sort_key(&info, &st);
                let renewed = SelectionState { seq, ..st };
                on_selected(&info, &mut st, seq);
                let after = sort_key(&info, &st);
                assert_eq!(after.seq, seq);
                if selection_renews_only_seq(p) {
                    assert_eq!(st, renewed, "{p:?}: a selection changes only the seq");
                }
                changed |= (before.primary, before.secondary) != (after.primary, after.secondary);
            }
            assert_eq!(changed, !selection_renews_only_seq(p), "{p:?}");
        }
    }

    #[test]
    fn a_degrading_selection_adds_the_degradation_to_the_primary_key() {
        use crate::core::types::PolicyValue;
        for p in PolicyType::ALL {
            if engine(p) != Engine::Sorted || !selection_adds_degradation(p) {
                continue;
            }
            assert_eq!(
                p.wire_values()[DEGRADATION_VALUE],
                PolicyValue::LoadDegradation
            );
            for (load, inc, deg) in [
                (1000, 77, 0),
                (u32::MAX - 5, 3, 1),
                (7, u32::MAX - 2, u32::MAX - 1),
                (0, 1 << 20, u32::MAX),
            ] {
                let mut info = PolicyInfo::new(p);
                info.load = load;
                info.load_degradation = inc;
                info.distance = 9;
                info.load_dpf = 1 << 20;
                let mut st = on_insert(&info, 4, 0);
                st.degradation = deg;
                let before = sort_key(&info, &st);
                let mut expected = st;
                expected.seq = 5;
                expected.degradation = deg.saturating_add(inc);
                on_selected(&info, &mut st, 5);
                assert_eq!(st, expected, "{p:?}");
                let after = sort_key(&info, &st);
                assert_eq!(
                    after.primary,
                    (before.primary + u64::from(inc)).min(MAX_LOAD)
                );
                assert_eq!(after.secondary, before.secondary);
            }
        }
    }

    #[test]
    fn loads_saturate_instead_of_wrapping() {
        let mut info = PolicyInfo::new(PolicyType::LeastUsedDegradation);
        info.load = u32::MAX;
        info.load_degradation = u32::MAX;
        let mut st = SelectionState::default();
        on_selected(&info, &mut st, 1);
        on_selected(&info, &mut st, 2);
        assert_eq!(st.degradation, u32::MAX);
        assert_eq!(sort_key(&info, &st).primary, MAX_LOAD);
        let mut rlu = PolicyInfo::new(PolicyType::RandomizedPriorityLeastUsed);
        rlu.load = u32::MAX;
        rlu.load_degradation = u32::MAX;
        assert_eq!(weight_value(&rlu, &st), 1);
        let mut dpf = PolicyInfo::new(PolicyType::LeastUsedDpf);
        dpf.distance = u32::MAX;
        dpf.load_dpf = u32::MAX;
        assert_eq!(sort_key(&dpf, &st).primary, MAX_LOAD);
    }

    #[test]
    fn wrand_dpf_weight() {
        let mut info = PolicyInfo::new(PolicyType::WeightedRandomDpf);
        info.weight = 1000;
        info.distance = 100;
        info.weight_dpf = (MAX_LOAD / 1000) as u32; // 0.1 % per ms → 10 % penalty
        assert_eq!(weight_value(&info, &SelectionState::default()), 900);
        info.distance = 5000; // 500 % penalty → negative → 1
        assert_eq!(weight_value(&info, &SelectionState::default()), 1);
    }
}
