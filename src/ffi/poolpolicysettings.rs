//! `poolpolicysettings.h`: the classic policy numbering (`PPT_*`, local to the C API, not the
//! wire codes) and `struct PoolPolicySettings`.
#![allow(non_snake_case)]

use crate::core::types::PolicyType;

pub const PPT_UNDEFINED: libc::c_uint = 0x00;
pub const PPT_ROUNDROBIN: libc::c_uint = 0x01;
pub const PPT_WEIGHTED_ROUNDROBIN: libc::c_uint = 0x02;
pub const PPT_RANDOM: libc::c_uint = 0x03;
pub const PPT_WEIGHTED_RANDOM: libc::c_uint = 0x04;
pub const PPT_LEASTUSED: libc::c_uint = 0x05;
pub const PPT_LEASTUSED_DEGRADATION: libc::c_uint = 0x06;
pub const PPT_RANDOMIZED_LEASTUSED: libc::c_uint = 0x07;
pub const PPT_RANDOMIZED_LEASTUSED_DEGRADATION: libc::c_uint = 0x08;
pub const PPT_PRIORITY_LEASTUSED: libc::c_uint = 0x09;
pub const PPT_PRIORITY_LEASTUSED_DEGRADATION: libc::c_uint = 0x0a;
pub const PPT_RANDOMIZED_PRIORITY_LEASTUSED: libc::c_uint = 0x0b;
pub const PPT_RANDOMIZED_PRIORITY_LEASTUSED_DEGRADATION: libc::c_uint = 0x0c;

pub const PEPS_MIN_WEIGHT: libc::c_uint = 0;
pub const PEPS_MAX_WEIGHT: libc::c_uint = 0xffffffff;
pub const PEPS_MIN_LOAD: libc::c_uint = 0;
pub const PEPS_MAX_LOAD: libc::c_uint = 0xffffff;
pub const PEPS_MIN_LOADDEGRADATION: libc::c_uint = 0;
pub const PEPS_MAX_LOADDEGRADATION: libc::c_uint = 0xffffff;

/// A PE's policy as the classic API describes it (16 bytes, align 4).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolPolicySettings {
    pub PolicyType: libc::c_uint,
    pub Weight: libc::c_uint,
    pub Load: libc::c_uint,
    pub LoadDegradation: libc::c_uint,
}

/// Classic `PPT_*` number → wire policy type (one table, both directions).
const PPT_TO_POLICY: [(libc::c_uint, PolicyType); 12] = [
    (PPT_ROUNDROBIN, PolicyType::RoundRobin),
    (PPT_WEIGHTED_ROUNDROBIN, PolicyType::WeightedRoundRobin),
    (PPT_RANDOM, PolicyType::Random),
    (PPT_WEIGHTED_RANDOM, PolicyType::WeightedRandom),
    (PPT_LEASTUSED, PolicyType::LeastUsed),
    (PPT_LEASTUSED_DEGRADATION, PolicyType::LeastUsedDegradation),
    (PPT_RANDOMIZED_LEASTUSED, PolicyType::RandomizedLeastUsed),
    (
        PPT_RANDOMIZED_LEASTUSED_DEGRADATION,
        PolicyType::RandomizedLeastUsedDegradation,
    ),
    (PPT_PRIORITY_LEASTUSED, PolicyType::PriorityLeastUsed),
    (
        PPT_PRIORITY_LEASTUSED_DEGRADATION,
        PolicyType::PriorityLeastUsedDegradation,
    ),
    (
        PPT_RANDOMIZED_PRIORITY_LEASTUSED,
        PolicyType::RandomizedPriorityLeastUsed,
    ),
    (
        PPT_RANDOMIZED_PRIORITY_LEASTUSED_DEGRADATION,
        PolicyType::RandomizedPriorityLeastUsedDegradation,
    ),
];

/// The wire policy for a classic `PPT_*` number.
pub fn policy_from_ppt(ppt: libc::c_uint) -> Option<PolicyType> {
    PPT_TO_POLICY
        .iter()
        .find(|(n, _)| *n == ppt)
        .map(|(_, p)| *p)
}

/// The classic `PPT_*` number of a wire policy (`PPT_UNDEFINED` if it has none).
pub fn ppt_from_policy(policy: PolicyType) -> libc::c_uint {
    PPT_TO_POLICY
        .iter()
        .find(|(_, p)| *p == policy)
        .map(|(n, _)| *n)
        .unwrap_or(PPT_UNDEFINED)
}

/// Classic 24-bit load fraction (0..0xFFFFFF) → wire 32-bit fraction.
pub fn load_to_wire(classic: libc::c_uint) -> u32 {
    classic.min(PEPS_MAX_LOAD) << 8
}

/// Wire 32-bit load fraction → classic 24-bit fraction.
pub fn load_from_wire(wire: u32) -> libc::c_uint {
    wire >> 8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppt_mapping_is_a_bijection() {
        for (n, p) in PPT_TO_POLICY {
            assert_eq!(policy_from_ppt(n), Some(p));
            assert_eq!(ppt_from_policy(p), n);
        }
        assert_eq!(policy_from_ppt(PPT_UNDEFINED), None);
        assert_eq!(ppt_from_policy(PolicyType::Priority), PPT_UNDEFINED);
        assert_eq!(load_to_wire(0xffffff), 0xffffff00);
        assert_eq!(load_from_wire(load_to_wire(0x123456)), 0x123456);
    }
}
