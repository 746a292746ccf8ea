//! `rsplib.h`: the classic API's types, constants and functions.
#![allow(non_snake_case, non_upper_case_globals)]

use super::guard::guard;
use super::rserpoolerror::description;
use super::sockaddrunion::sockaddr_union;

pub const RSPLIB_VERSION: libc::c_int = 0;
pub const RSPLIB_REVISION: libc::c_int = 8001;

pub const RspSelect_Read: libc::c_uint = 1 << 0;
pub const RspSelect_Write: libc::c_uint = 1 << 1;
pub const RspSelect_Except: libc::c_uint = 1 << 2;

/// A pool element's transport endpoint, as handle resolution returns it and `rspRegister`
/// takes it (56 bytes on LP64; field order is the ABI).
#[repr(C)]
#[derive(Debug)]
pub struct EndpointAddressInfo {
    pub ai_family: libc::c_int,
    pub ai_socktype: libc::c_int,
    pub ai_protocol: libc::c_int,
    pub ai_addrlen: usize,
    pub ai_addrs: usize,
    pub ai_addr: *mut sockaddr_union,
    pub ai_next: *mut EndpointAddressInfo,
    pub ai_pe_id: u32,
}

/// Opaque Enhanced Mode pool element descriptor.
pub struct PoolElementDescriptor {
    _private: (),
}

/// Opaque Enhanced Mode session descriptor.
pub struct SessionDescriptor {
    _private: (),
}

/// Static text for an `RSPERR_*` code; never NULL, never to be freed.
#[no_mangle]
pub extern "C" fn rspGetErrorDescription(errorCode: libc::c_uint) -> *const libc::c_char {
    guard("rspGetErrorDescription", || description(errorCode).as_ptr())
}

/// Frees a list returned by `rspHandleResolution`: every node and its address array.
/// NULL is fine.
///
/// # Safety
/// `endpointAddressInfo` must be NULL or a list whose nodes and `ai_addr` arrays were allocated
/// with libc `malloc` (as this library's results are) and not yet freed.
#[no_mangle]
pub unsafe extern "C" fn rspFreeEndpointAddressArray(
    endpointAddressInfo: *mut EndpointAddressInfo,
) {
    guard("rspFreeEndpointAddressArray", || {
        let mut node = endpointAddressInfo;
        while !node.is_null() {
            let next = (*node).ai_next;
            libc::free((*node).ai_addr.cast());
            libc::free(node.cast());
            node = next;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn endpoint_address_info_layout() {
        assert_eq!(size_of::<EndpointAddressInfo>(), 56);
        assert_eq!(offset_of!(EndpointAddressInfo, ai_addrlen), 16);
        assert_eq!(offset_of!(EndpointAddressInfo, ai_addr), 32);
        assert_eq!(offset_of!(EndpointAddressInfo, ai_next), 40);
        assert_eq!(offset_of!(EndpointAddressInfo, ai_pe_id), 48);
    }
}
