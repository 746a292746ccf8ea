//! `poolpolicysettings.h`: the classic policy numbering (`PPT_*`, local to the C API, not the
//! wire codes) and `struct PoolPolicySettings`.
#![allow(non_snake_case)]

use std::cmp::Ordering;

use super::componentstatusprotocol::write_c_text;
use super::guard::{guard, try_mut, try_ref, write_to_file};
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

/// Classic policy names, as the original's descriptions print them.
fn policy_name(ppt: libc::c_uint) -> &'static str {
    match ppt {
        PPT_ROUNDROBIN => "RoundRobin",
        PPT_WEIGHTED_ROUNDROBIN => "WeightedRoundRobin",
        PPT_RANDOM => "Random",
        PPT_WEIGHTED_RANDOM => "WeightedRandom",
        PPT_LEASTUSED => "LeastUsed",
        PPT_LEASTUSED_DEGRADATION => "LeastUsedDegradation",
        PPT_RANDOMIZED_LEASTUSED => "RandomizedLeastUsed",
        PPT_RANDOMIZED_LEASTUSED_DEGRADATION => "RandomizedLeastUsedDegradation",
        PPT_PRIORITY_LEASTUSED => "PriorityLeastUsed",
        PPT_PRIORITY_LEASTUSED_DEGRADATION => "PriorityLeastUsedDegradation",
        PPT_RANDOMIZED_PRIORITY_LEASTUSED => "RandomizedPriorityLeastUsed",
        PPT_RANDOMIZED_PRIORITY_LEASTUSED_DEGRADATION => "RandomizedPriorityLeastUsedDegradation",
        _ => "?",
    }
}

/// A 24-bit load fraction as a percentage.
fn percent(load: libc::c_uint) -> f64 {
    100.0 * f64::from(load) / f64::from(PEPS_MAX_LOAD)
}

/// One line describing the settings, e.g. "WeightedRandom, weight=5".
pub fn description(pps: &PoolPolicySettings) -> String {
    let name = policy_name(pps.PolicyType);
    match pps.PolicyType {
        PPT_WEIGHTED_ROUNDROBIN | PPT_WEIGHTED_RANDOM => format!("{name}, weight={}", pps.Weight),
        PPT_LEASTUSED | PPT_RANDOMIZED_LEASTUSED => {
            format!("{name}, load={:.3}%", percent(pps.Load))
        }
        PPT_LEASTUSED_DEGRADATION
        | PPT_RANDOMIZED_LEASTUSED_DEGRADATION
        | PPT_PRIORITY_LEASTUSED
        | PPT_PRIORITY_LEASTUSED_DEGRADATION
        | PPT_RANDOMIZED_PRIORITY_LEASTUSED
        | PPT_RANDOMIZED_PRIORITY_LEASTUSED_DEGRADATION => format!(
            "{name}, load={:.3}%, degradation={:.3}%",
            percent(pps.Load),
            percent(pps.LoadDegradation)
        ),
        PPT_ROUNDROBIN | PPT_RANDOM => name.to_string(),
        other => format!("Unknown policy type ${other:02x}"),
    }
}

/// Sets all fields to 0 (`PPT_UNDEFINED`). NULL is ignored.
///
/// # Safety
/// `pps` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn poolPolicySettingsNew(pps: *mut PoolPolicySettings) {
    guard("poolPolicySettingsNew", || {
        if let Some(p) = try_mut(pps) {
            *p = PoolPolicySettings::default();
        }
    })
}

/// Sets all fields to 0. NULL is ignored.
///
/// # Safety
/// `pps` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn poolPolicySettingsDelete(pps: *mut PoolPolicySettings) {
    guard("poolPolicySettingsDelete", || {
        if let Some(p) = try_mut(pps) {
            *p = PoolPolicySettings::default();
        }
    })
}

/// Prints the description to `fd` ("(null)" for NULL settings; nothing for a NULL `fd`).
///
/// # Safety
/// `pps` must be NULL or valid; `fd` NULL or an open `FILE*`.
#[no_mangle]
pub unsafe extern "C" fn poolPolicySettingsPrint(
    pps: *const PoolPolicySettings,
    fd: *mut libc::FILE,
) {
    guard("poolPolicySettingsPrint", || {
        let text = try_ref(pps).map_or_else(|| "(null)".to_string(), description);
        write_to_file(fd, &text);
    })
}

/// Writes the description NUL-terminated into `buffer` (truncated to `bufferSize`).
///
/// # Safety
/// `pps` must be NULL or valid; `buffer` NULL or writable for `bufferSize` bytes.
#[no_mangle]
pub unsafe extern "C" fn poolPolicySettingsGetDescription(
    pps: *const PoolPolicySettings,
    buffer: *mut libc::c_char,
    bufferSize: usize,
) {
    guard("poolPolicySettingsGetDescription", || {
        let text = try_ref(pps).map_or_else(|| "(null)".to_string(), description);
        write_c_text(buffer, bufferSize, &text);
    })
}

/// Orders two settings by weight, load and load degradation: -1, 0 (equal parameters) or 1.
/// NULL sorts first.
///
/// # Safety
/// Both must be NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn poolPolicySettingsComparison(
    pps1: *const PoolPolicySettings,
    pps2: *const PoolPolicySettings,
) -> libc::c_int {
    guard("poolPolicySettingsComparison", || {
        let key = |p: Option<&PoolPolicySettings>| p.map(|p| (p.Weight, p.Load, p.LoadDegradation));
        match key(try_ref(pps1)).cmp(&key(try_ref(pps2))) {
            Ordering::Less => -1,
            Ordering::Equal => 0,
            Ordering::Greater => 1,
        }
    })
}

/// 1 if weight, load and load degradation are within the `PEPS_*` ranges, else 0 (also for
/// NULL).
///
/// # Safety
/// `pps` must be NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn poolPolicySettingsIsValid(pps: *const PoolPolicySettings) -> libc::c_int {
    guard("poolPolicySettingsIsValid", || {
        try_ref(pps).map_or(0, |p| {
            libc::c_int::from(
                p.Load <= PEPS_MAX_LOAD && p.LoadDegradation <= PEPS_MAX_LOADDEGRADATION,
            )
        })
    })
}

/// 1 if the settings already have policy `destinationType`, else 0 (the settings are not
/// changed; also 0 for NULL).
///
/// # Safety
/// `pps` must be NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn poolPolicySettingsAdapt(
    pps: *mut PoolPolicySettings,
    destinationType: libc::c_uint,
) -> libc::c_int {
    guard("poolPolicySettingsAdapt", || {
        try_ref(pps).map_or(0, |p| libc::c_int::from(p.PolicyType == destinationType))
    })
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

    #[test]
    fn descriptions_and_checks() {
        let mut p = PoolPolicySettings {
            PolicyType: PPT_WEIGHTED_RANDOM,
            Weight: 5,
            ..Default::default()
        };
        assert_eq!(description(&p), "WeightedRandom, weight=5");
        p.PolicyType = PPT_LEASTUSED;
        p.Load = PEPS_MAX_LOAD / 2;
        assert_eq!(description(&p), "LeastUsed, load=50.000%");
        p.PolicyType = 0x77;
        assert_eq!(description(&p), "Unknown policy type $77");
        unsafe {
            assert_eq!(poolPolicySettingsIsValid(&p), 1);
            p.Load = PEPS_MAX_LOAD + 1;
            assert_eq!(poolPolicySettingsIsValid(&p), 0);
            assert_eq!(poolPolicySettingsIsValid(std::ptr::null()), 0);
            let q = PoolPolicySettings::default();
            assert_eq!(poolPolicySettingsComparison(&q, &q), 0);
            assert_ne!(poolPolicySettingsComparison(&p, &q), 0);
            assert_eq!(poolPolicySettingsComparison(std::ptr::null(), &q), -1);
            let mut buf = [1 as libc::c_char; 8];
            poolPolicySettingsGetDescription(&q, buf.as_mut_ptr(), buf.len());
            assert_eq!(buf[7], 0);
        }
    }
}
