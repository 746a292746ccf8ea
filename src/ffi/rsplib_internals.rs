//! `rsplib-internals.h`: the library's component status for the CSP reporter.
//!
//! Minimal: no association entries are reported yet (the library does not expose its
//! registrar association's age, and Enhanced Mode sessions do not exist yet); the status
//! text is "<n> Session(s)" with n = 0, the component address the host's non-loopback
//! addresses.
#![allow(non_snake_case)]

use libc::c_char;

use super::componentstatusprotocol::{
    write_c_text, ComponentAssociationEntry, CSPH_COMPONENT_ADDRESS_SIZE, CSPH_STATUS_TEXT_SIZE,
};
use super::guard::{guard, try_mut};
use crate::core::csp;
use crate::transport::interfaces;

/// Stores the association entries (a `malloc`ed array, NULL when there are none; free it
/// with `free()` or `componentAssociationEntryArrayDelete`) in `*caeArray` and returns their
/// number; writes the status text and the component address (each ≤ 128 bytes with the NUL)
/// into the caller's buffers. NULL arguments are skipped.
///
/// # Safety
/// `caeArray` must be NULL or writable; `statusText` and `componentAddress` NULL or writable
/// for 128 bytes each.
#[no_mangle]
pub unsafe extern "C" fn rspGetComponentStatus(
    caeArray: *mut *mut ComponentAssociationEntry,
    statusText: *mut c_char,
    componentAddress: *mut c_char,
) -> usize {
    guard("rspGetComponentStatus", || {
        let sessions = 0usize;
        if let Some(out) = try_mut(caeArray) {
            *out = std::ptr::null_mut();
        }
        write_c_text(
            statusText,
            CSPH_STATUS_TEXT_SIZE,
            &format!("{sessions} Session(s)"),
        );
        let ips: Vec<_> = interfaces::interface_addrs()
            .iter()
            .map(|a| a.ip())
            .filter(|ip| !ip.is_loopback())
            .collect();
        write_c_text(
            componentAddress,
            CSPH_COMPONENT_ADDRESS_SIZE,
            &csp::address_list(&ips),
        );
        0
    })
}
