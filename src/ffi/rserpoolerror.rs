//! `rserpoolerror.h`: the classic `RSPERR_*` codes (the C ABI numbers, not the wire's cause
//! codes) and their descriptions.
#![allow(non_snake_case)]

use super::guard::{guard, write_to_file};

pub const RSPERR_OKAY: libc::c_uint = 0x0000;
pub const RSPERR_UNRECOGNIZED_PARAMETER: libc::c_uint = 0x0001;
pub const RSPERR_UNRECOGNIZED_MESSAGE: libc::c_uint = 0x0002;
pub const RSPERR_AUTHORIZATION_FAILURE: libc::c_uint = 0x0003;
pub const RSPERR_INVALID_VALUES: libc::c_uint = 0x0004;
pub const RSPERR_NOT_INITIALIZED: libc::c_uint = 0x1000;
pub const RSPERR_BUFFERSIZE_EXCEEDED: libc::c_uint = 0x1001;
pub const RSPERR_OUT_OF_MEMORY: libc::c_uint = 0x1002;
pub const RSPERR_READ_ERROR: libc::c_uint = 0x1003;
pub const RSPERR_WRITE_ERROR: libc::c_uint = 0x1004;
pub const RSPERR_CONNECTION_FAILURE_SOCKET: libc::c_uint = 0x1005;
pub const RSPERR_CONNECTION_FAILURE_CONNECT: libc::c_uint = 0x1006;
pub const RSPERR_NO_REGISTRAR: libc::c_uint = 0x1007;
pub const RSPERR_NO_RESOURCES: libc::c_uint = 0xf002;
pub const RSPERR_NOT_FOUND: libc::c_uint = 0xf003;
pub const RSPERR_INVALID_ID: libc::c_uint = 0xf004;
pub const RSPERR_DUPLICATE_ID: libc::c_uint = 0xf005;
pub const RSPERR_WRONG_PROTOCOL: libc::c_uint = 0xf006;
pub const RSPERR_WRONG_CONTROLCHANNEL_HANDLING: libc::c_uint = 0xf007;
pub const RSPERR_INCOMPATIBLE_POOL_POLICY: libc::c_uint = 0xf008;
pub const RSPERR_INVALID_POOL_POLICY: libc::c_uint = 0xf009;
pub const RSPERR_INVALID_POOL_HANDLE: libc::c_uint = 0xf00a;
pub const RSPERR_INVALID_ADDRESSES: libc::c_uint = 0xf00b;
pub const RSPERR_INVALID_REGISTRATOR: libc::c_uint = 0xf00c;
pub const RSPERR_NO_USABLE_ASAP_ADDRESSES: libc::c_uint = 0xf00d;
pub const RSPERR_NO_USABLE_USER_ADDRESSES: libc::c_uint = 0xf00e;

/// The description of every classic code (NUL-terminated, static).
const DESCRIPTIONS: &[(libc::c_uint, &std::ffi::CStr)] = &[
    (RSPERR_OKAY, c"Okay"),
    (RSPERR_UNRECOGNIZED_PARAMETER, c"Unrecognized parameter"),
    (RSPERR_UNRECOGNIZED_MESSAGE, c"Unrecognized message"),
    (RSPERR_AUTHORIZATION_FAILURE, c"Authorization failure"),
    (RSPERR_INVALID_VALUES, c"Invalid values"),
    (RSPERR_NOT_INITIALIZED, c"rsplib not initialized"),
    (RSPERR_BUFFERSIZE_EXCEEDED, c"Buffer size exceeded"),
    (RSPERR_OUT_OF_MEMORY, c"Out of memory"),
    (RSPERR_READ_ERROR, c"Read error"),
    (RSPERR_WRITE_ERROR, c"Write error"),
    (
        RSPERR_CONNECTION_FAILURE_SOCKET,
        c"Connection failure: cannot create socket",
    ),
    (
        RSPERR_CONNECTION_FAILURE_CONNECT,
        c"Connection failure: connect failed",
    ),
    (RSPERR_NO_REGISTRAR, c"No registrar available"),
    (RSPERR_NO_RESOURCES, c"No resources"),
    (RSPERR_NOT_FOUND, c"Not found"),
    (RSPERR_INVALID_ID, c"Invalid pool element identifier"),
    (RSPERR_DUPLICATE_ID, c"Duplicate pool element identifier"),
    (RSPERR_WRONG_PROTOCOL, c"Wrong transport protocol"),
    (
        RSPERR_WRONG_CONTROLCHANNEL_HANDLING,
        c"Wrong control channel handling",
    ),
    (RSPERR_INCOMPATIBLE_POOL_POLICY, c"Incompatible pool policy"),
    (RSPERR_INVALID_POOL_POLICY, c"Invalid pool policy"),
    (RSPERR_INVALID_POOL_HANDLE, c"Invalid pool handle"),
    (RSPERR_INVALID_ADDRESSES, c"Invalid addresses"),
    (RSPERR_INVALID_REGISTRATOR, c"Invalid registrator"),
    (RSPERR_NO_USABLE_ASAP_ADDRESSES, c"No usable ASAP addresses"),
    (RSPERR_NO_USABLE_USER_ADDRESSES, c"No usable user addresses"),
];

const UNKNOWN: &std::ffi::CStr = c"Unknown error";

/// The static description of a code; "Unknown error" for codes not listed. Never NULL.
pub fn description(error: libc::c_uint) -> &'static std::ffi::CStr {
    DESCRIPTIONS
        .iter()
        .find(|(code, _)| *code == error)
        .map(|(_, text)| *text)
        .unwrap_or(UNKNOWN)
}

/// Static text for an `RSPERR_*` code; never NULL, never to be freed.
#[no_mangle]
pub extern "C" fn rserpoolErrorGetDescription(error: libc::c_uint) -> *const libc::c_char {
    guard("rserpoolErrorGetDescription", || {
        description(error).as_ptr()
    })
}

/// Prints the description of `error` to `fd` (nothing for a NULL `fd`).
///
/// # Safety
/// `fd` must be NULL or an open `FILE*`.
#[no_mangle]
pub unsafe extern "C" fn rserpoolErrorPrint(error: libc::c_uint, fd: *mut libc::FILE) {
    guard("rserpoolErrorPrint", || {
        write_to_file(fd, description(error).to_str().unwrap_or("Unknown error"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_own_description() {
        let mut texts: Vec<&str> = DESCRIPTIONS
            .iter()
            .map(|(_, t)| t.to_str().unwrap())
            .collect();
        assert_eq!(texts.len(), 26);
        texts.sort();
        texts.dedup();
        assert_eq!(texts.len(), 26);
        assert_eq!(description(0xbeef), UNKNOWN);
        assert_eq!(description(RSPERR_NOT_FOUND).to_str().unwrap(), "Not found");
    }
}

/// Wire Operation Error cause (RFC 5352 §3.13, and rsplib 3.x's own numbers) → classic
/// `RSPERR_*` code: the one table between the two numberings.
const WIRE_TO_CLASSIC: &[(u16, libc::c_uint)] = &[
    (0x0001, RSPERR_UNRECOGNIZED_PARAMETER),
    (0x0002, RSPERR_UNRECOGNIZED_MESSAGE),
    (0x0003, RSPERR_INVALID_VALUES),
    (0x0004, RSPERR_DUPLICATE_ID),
    (0x0005, RSPERR_INCOMPATIBLE_POOL_POLICY),
    (0x0006, RSPERR_NO_RESOURCES),
    (0x0007, RSPERR_WRONG_PROTOCOL),
    (0x0008, RSPERR_WRONG_CONTROLCHANNEL_HANDLING),
    (0x0009, RSPERR_NOT_FOUND),
    (0x000a, RSPERR_AUTHORIZATION_FAILURE),
    // rsplib 3.x internal numbers seen on the wire.
    (0x0010, RSPERR_UNRECOGNIZED_MESSAGE),
    (0x0011, RSPERR_INVALID_VALUES),
    (0x100a, RSPERR_WRONG_PROTOCOL),
    (0x100b, RSPERR_INVALID_POOL_POLICY),
    (0xf000, RSPERR_INVALID_ID),
    (0xf003, RSPERR_INVALID_POOL_POLICY),
    (0xf004, RSPERR_INVALID_POOL_HANDLE),
    (0xf005, RSPERR_INVALID_ADDRESSES),
    (0xf006, RSPERR_INVALID_REGISTRATOR),
    (0xf007, RSPERR_NO_USABLE_ASAP_ADDRESSES),
    (0xf008, RSPERR_NO_USABLE_USER_ADDRESSES),
];

/// The classic code for a wire cause; unknown causes are "invalid values".
pub fn from_wire_cause(cause: u16) -> libc::c_uint {
    WIRE_TO_CLASSIC
        .iter()
        .find(|(w, _)| *w == cause)
        .map(|(_, c)| *c)
        .unwrap_or(RSPERR_INVALID_VALUES)
}

/// The classic code for a failed library request.
pub fn from_request_error(e: &crate::core::asap_client::RequestError) -> libc::c_uint {
    use crate::core::asap_client::RequestError::*;
    match e {
        Timeout | Disconnected => RSPERR_READ_ERROR,
        Refused(cause) => from_wire_cause(*cause),
        NoRegistrar => RSPERR_NO_REGISTRAR,
        SendFailed => RSPERR_WRITE_ERROR,
        Encode(_) => RSPERR_INVALID_VALUES,
    }
}

#[cfg(test)]
mod mapping_tests {
    use super::*;

    #[test]
    fn wire_causes_map_to_classic_codes() {
        assert_eq!(from_wire_cause(0x0009), RSPERR_NOT_FOUND);
        assert_eq!(from_wire_cause(0x0005), RSPERR_INCOMPATIBLE_POOL_POLICY);
        assert_eq!(from_wire_cause(0xf008), RSPERR_NO_USABLE_USER_ADDRESSES);
        assert_eq!(from_wire_cause(0x7777), RSPERR_INVALID_VALUES);
        // Every classic code in the table has a description of its own.
        for (_, c) in WIRE_TO_CLASSIC {
            assert_ne!(description(*c), UNKNOWN);
        }
    }
}
