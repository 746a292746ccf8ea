//! `netutilities.h`, second part: the address helpers (text, family, length, scope,
//! comparison, packed `struct sockaddr` blocks and `sockaddr_union` arrays, 24-bit byte order,
//! padding). `build.rs` writes these items into `netutilities.h` beside those of
//! `netutilities.rs`.
//!
//! The original aborted the program on an address family other than IPv4/IPv6; these return
//! the documented failure value instead (false, 0, NULL).
#![allow(non_snake_case)]

use std::cmp::Ordering;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use libc::{c_char, c_int, c_uint};

use super::ctypes::CBool;
use super::guard::{guard, try_array, try_mut, try_ref};
use super::sockaddrunion::sockaddr_union;

/// `sizeof(struct sockaddr_in)` / `sizeof(struct sockaddr_in6)` for an IPv4/IPv6 family.
fn family_len(family: c_int) -> Option<usize> {
    match family {
        libc::AF_INET => Some(std::mem::size_of::<libc::sockaddr_in>()),
        libc::AF_INET6 => Some(std::mem::size_of::<libc::sockaddr_in6>()),
        _ => None,
    }
}

/// The IPv4/IPv6 address at `p`, or `None` for NULL or another family.
///
/// # Safety
/// `p` must be NULL or a valid socket address (see [`sockaddr_union::read_from`]).
unsafe fn read_addr(p: *const libc::sockaddr) -> Option<SocketAddr> {
    sockaddr_union::read_from(p).and_then(|u| u.to_socket_addr())
}

/// The classic scope of an address (higher = wider): 0 unspecified, 1 IPv6 node-local
/// multicast, 2 loopback, 3 IPv6 link-local multicast, 4 IPv6 link-local, 5 IPv6 site-local
/// multicast, 6 IPv6 site-local and IPv4 private (10/8, 172.16/12, 192.168/16), 7 IPv6
/// organisation-local multicast, 8 IPv4 and IPv6 global multicast, 10 anything else
/// (global). IPv4-mapped IPv6 addresses have the scope of their IPv4 address.
pub fn scope(ip: &IpAddr) -> c_uint {
    match ip {
        IpAddr::V4(a) => scope_v4(a),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => scope_v4(&v4),
            None => scope_v6(a),
        },
    }
}

fn scope_v4(a: &Ipv4Addr) -> c_uint {
    let [b1, b2, ..] = a.octets();
    if a.is_unspecified() {
        0
    } else if b1 == 127 {
        2
    } else if b1 == 10 || (b1 == 172 && (16..=31).contains(&b2)) || (b1 == 192 && b2 == 168) {
        6
    } else if a.is_multicast() {
        8
    } else {
        10
    }
}

fn scope_v6(a: &Ipv6Addr) -> c_uint {
    let s = a.segments();
    // Multicast scopes: the low nibble of the second byte (RFC 4291 §2.7).
    let multicast_scope = (s[0] & 0xff00 == 0xff00).then_some(s[0] & 0x000f);
    if a.is_unspecified() {
        0
    } else if multicast_scope == Some(0x1) {
        1
    } else if a.is_loopback() {
        2
    } else if multicast_scope == Some(0x2) {
        3
    } else if s[0] & 0xffc0 == 0xfe80 {
        4
    } else if multicast_scope == Some(0x5) {
        5
    } else if s[0] & 0xffc0 == 0xfec0 {
        6
    } else if multicast_scope == Some(0x8) {
        7
    } else if multicast_scope == Some(0xe) {
        8
    } else {
        10
    }
}

/// Writes `text` into `buffer` of `length` bytes, NUL-terminated and truncated if need be;
/// false if it did not fit whole.
///
/// # Safety
/// `buffer` must be writable for `length` bytes (length ≥ 1).
unsafe fn write_c_text(buffer: *mut c_char, length: usize, text: &str) -> bool {
    let n = text.len().min(length - 1);
    std::ptr::copy_nonoverlapping(text.as_ptr(), buffer.cast::<u8>(), n);
    *buffer.add(n) = 0;
    n == text.len()
}

/// Writes the text of an address into `buffer` (`length` bytes, always NUL-terminated):
/// `a.b.c.d:port` and `[v6]:port` when `port` is nonzero, `a.b.c.d` and `v6` otherwise
/// (IPv6 scope ids are left out), `(unspecified)` for `AF_UNSPEC`. False for a NULL address or
/// buffer, a zero length, another family (the buffer then holds "(unsupported address family
/// N)") or a text that did not fit (the buffer holds it truncated).
///
/// # Safety
/// `address` must be NULL or a valid socket address; `buffer` NULL or writable for `length`
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn address2string(
    address: *const libc::sockaddr,
    buffer: *mut c_char,
    length: usize,
    port: CBool,
) -> bool {
    guard("address2string", || {
        let Some(sa) = try_ref(address) else {
            return false;
        };
        if buffer.is_null() || length == 0 {
            return false;
        }
        let text = match read_addr(address) {
            Some(a) => {
                let ip = a.ip();
                match (ip, port != 0) {
                    (IpAddr::V4(v4), true) => format!("{v4}:{}", a.port()),
                    (IpAddr::V6(v6), true) => format!("[{v6}]:{}", a.port()),
                    (ip, false) => ip.to_string(),
                }
            }
            None if sa.sa_family as c_int == libc::AF_UNSPEC => "(unspecified)".to_string(),
            None => {
                let text = format!("(unsupported address family {})", sa.sa_family);
                write_c_text(buffer, length, &text);
                return false;
            }
        };
        write_c_text(buffer, length, &text)
    })
}

/// The family of an address; `AF_UNSPEC` for NULL.
///
/// # Safety
/// `address` must be NULL or point to a readable `struct sockaddr` header.
#[no_mangle]
pub unsafe extern "C" fn getFamily(address: *const libc::sockaddr) -> c_int {
    guard("getFamily", || {
        try_ref(address).map_or(libc::AF_UNSPEC, |sa| sa.sa_family as c_int)
    })
}

/// The length of an address for `bind`/`connect`: `sizeof(struct sockaddr_in)` (16) for
/// IPv4, `sizeof(struct sockaddr_in6)` (28) for IPv6, `sizeof(struct sockaddr)` (16) for any
/// other family; 0 for NULL.
///
/// # Safety
/// `address` must be NULL or point to a readable `struct sockaddr` header.
#[no_mangle]
pub unsafe extern "C" fn getSocklen(address: *const libc::sockaddr) -> usize {
    guard("getSocklen", || match try_ref(address) {
        None => 0,
        Some(sa) => {
            family_len(sa.sa_family as c_int).unwrap_or(std::mem::size_of::<libc::sockaddr>())
        }
    })
}

/// The scope of an address (see [`scope`]: 0 unspecified … 2 loopback … 6 private/site-local
/// … 10 global); 0 for NULL or a family other than IPv4/IPv6.
///
/// # Safety
/// `address` must be NULL or a valid socket address.
#[no_mangle]
pub unsafe extern "C" fn getScope(address: *const libc::sockaddr) -> c_uint {
    guard("getScope", || {
        read_addr(address).map_or(0, |a| scope(&a.ip()))
    })
}

/// Of `addrcnt` addresses packed one after the other (each as long as its family's
/// `sockaddr_in`/`sockaddr_in6`), the first one of the highest scope. NULL for NULL,
/// `addrcnt` < 1 or a first address that is not IPv4/IPv6; the walk stops at the first
/// address of another family.
///
/// # Safety
/// `addrs` must be NULL or point to `addrcnt` packed socket addresses.
#[no_mangle]
pub unsafe extern "C" fn getBestScopedAddress(
    addrs: *const libc::sockaddr,
    addrcnt: c_int,
) -> *const libc::sockaddr {
    guard("getBestScopedAddress", || {
        let mut best: Option<(*const libc::sockaddr, c_uint)> = None;
        let mut p = addrs;
        for _ in 0..addrcnt.max(0) {
            let (Some(a), Some(len)) = (
                read_addr(p),
                try_ref(p).and_then(|sa| family_len(sa.sa_family as c_int)),
            ) else {
                break;
            };
            let s = scope(&a.ip());
            if best.is_none_or(|(_, b)| s > b) {
                best = Some((p, s));
            }
            p = p.cast::<u8>().add(len).cast();
        }
        best.map_or(std::ptr::null(), |(p, _)| p)
    })
}

/// Orders two addresses as the original did: wider scope first, then by address (IPv4 as
/// IPv4-mapped IPv6, bytewise), then by port when `port` is nonzero. Returns -1, 0 or 1. A
/// NULL address or one of another family orders after every IPv4/IPv6 address (two such are
/// equal).
///
/// # Safety
/// `a1`, `a2` must be NULL or valid socket addresses.
#[no_mangle]
pub unsafe extern "C" fn addresscmp(
    a1: *const libc::sockaddr,
    a2: *const libc::sockaddr,
    port: CBool,
) -> c_int {
    guard("addresscmp", || {
        let order = match (read_addr(a1), read_addr(a2)) {
            (Some(x), Some(y)) => compare(&x, &y, port != 0),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        order as c_int
    })
}

fn compare(x: &SocketAddr, y: &SocketAddr, port: bool) -> Ordering {
    let bytes = |a: &SocketAddr| match a.ip() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    };
    scope(&y.ip())
        .cmp(&scope(&x.ip()))
        .then_with(|| bytes(x).cmp(&bytes(y)))
        .then_with(|| {
            if port {
                x.port().cmp(&y.port())
            } else {
                Ordering::Equal
            }
        })
}

/// The number of bytes that pad `size` to a multiple of `alignment` (0 for an alignment of 0).
#[no_mangle]
pub extern "C" fn getPadding(size: usize, alignment: usize) -> usize {
    guard("getPadding", || match alignment {
        0 => 0,
        a => (a - size % a) % a,
    })
}

/// The 24-bit value in the first three bytes of `value` as stored in memory, read in network
/// byte order (the classic helper for 24-bit fields: on little-endian hosts it swaps the low
/// three bytes, on big-endian ones it returns `value`).
#[no_mangle]
pub extern "C" fn ntoh24(value: u32) -> u32 {
    guard("ntoh24", || swap24(value))
}

/// The inverse of `ntoh24` (the same operation).
#[no_mangle]
pub extern "C" fn hton24(value: u32) -> u32 {
    guard("hton24", || swap24(value))
}

fn swap24(value: u32) -> u32 {
    if cfg!(target_endian = "big") {
        return value;
    }
    let [a, b, c, _] = value.to_ne_bytes();
    (u32::from(a) << 16) | (u32::from(b) << 8) | u32::from(c)
}

/// A `malloc`ed copy of `addresses` unions (free with `deleteAddressArray` or `free`); NULL
/// for NULL, 0 addresses or no memory.
///
/// # Safety
/// `addressArray` must be NULL or point to `addresses` unions.
#[no_mangle]
pub unsafe extern "C" fn duplicateAddressArray(
    addressArray: *const sockaddr_union,
    addresses: usize,
) -> *mut sockaddr_union {
    guard("duplicateAddressArray", || {
        let Some(src) = try_array(addressArray, addresses).filter(|a| !a.is_empty()) else {
            return std::ptr::null_mut();
        };
        let copy = libc::malloc(std::mem::size_of_val(src)) as *mut sockaddr_union;
        if !copy.is_null() {
            std::ptr::copy_nonoverlapping(src.as_ptr(), copy, src.len());
        }
        copy
    })
}

/// Frees an address array of these helpers (`free`); NULL is fine.
///
/// # Safety
/// `addressArray` must be NULL or a `malloc`ed array not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn deleteAddressArray(addressArray: *mut sockaddr_union) {
    guard("deleteAddressArray", || libc::free(addressArray.cast()))
}

/// Packs `addrs` unions into one `malloc`ed block of `struct sockaddr_in`/`sockaddr_in6`
/// one after the other (the form `sctp_bindx`/`sctp_connectx` take); the caller `free`s it.
/// NULL for NULL, 0 addresses, a family other than IPv4/IPv6, or no memory.
///
/// # Safety
/// `addrArray` must be NULL or point to `addrs` unions.
#[no_mangle]
pub unsafe extern "C" fn pack_sockaddr_union(
    addrArray: *const sockaddr_union,
    addrs: usize,
) -> *mut libc::sockaddr {
    guard("pack_sockaddr_union", || {
        let Some(src) = try_array(addrArray, addrs).filter(|a| !a.is_empty()) else {
            return std::ptr::null_mut();
        };
        let Some(lens) = src
            .iter()
            .map(|u| family_len(u.sa.sa_family as c_int))
            .collect::<Option<Vec<usize>>>()
        else {
            return std::ptr::null_mut();
        };
        let block = libc::malloc(lens.iter().sum()) as *mut u8;
        if block.is_null() {
            return std::ptr::null_mut();
        }
        let mut at = 0;
        for (u, len) in src.iter().zip(lens) {
            std::ptr::copy_nonoverlapping(
                (u as *const sockaddr_union).cast::<u8>(),
                block.add(at),
                len,
            );
            at += len;
        }
        block.cast()
    })
}

/// Unpacks `addrs` packed addresses (as `pack_sockaddr_union` makes them) into a `malloc`ed
/// array of unions; the caller `free`s it. NULL for NULL, 0 addresses, a family other than
/// IPv4/IPv6 (the walk cannot go past it), or no memory.
///
/// # Safety
/// `addrArray` must be NULL or point to `addrs` packed socket addresses.
#[no_mangle]
pub unsafe extern "C" fn unpack_sockaddr(
    addrArray: *mut libc::sockaddr,
    addrs: usize,
) -> *mut sockaddr_union {
    guard("unpack_sockaddr", || {
        if addrArray.is_null() || addrs == 0 {
            return std::ptr::null_mut();
        }
        let mut unions = Vec::with_capacity(addrs.min(1024));
        let mut p = addrArray.cast_const();
        for _ in 0..addrs {
            let (Some(u), Some(len)) = (
                sockaddr_union::read_from(p),
                try_ref(p).and_then(|sa| family_len(sa.sa_family as c_int)),
            ) else {
                return std::ptr::null_mut();
            };
            unions.push(u);
            p = p.cast::<u8>().add(len).cast();
        }
        let out = libc::malloc(std::mem::size_of_val(unions.as_slice())) as *mut sockaddr_union;
        if let Some(o) = try_mut(out) {
            std::ptr::copy_nonoverlapping(unions.as_ptr(), o, unions.len());
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn scopes_follow_the_classic_table() {
        for (a, s) in [
            ("0.0.0.0", 0),
            ("127.0.0.1", 2),
            ("10.1.2.3", 6),
            ("172.16.0.1", 6),
            ("172.32.0.1", 10),
            ("192.168.1.1", 6),
            ("239.0.0.1", 8),
            ("8.8.8.8", 10),
            ("::", 0),
            ("ff01::1", 1),
            ("::1", 2),
            ("ff02::1", 3),
            ("fe80::1", 4),
            ("ff05::1", 5),
            ("fec0::1", 6),
            ("ff08::1", 7),
            ("ff0e::1", 8),
            ("2001:db8::1", 10),
            ("::ffff:10.0.0.1", 6),
        ] {
            assert_eq!(scope(&ip(a)), s, "{a}");
        }
    }

    #[test]
    fn wider_scope_orders_first_then_address_then_port() {
        let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(
            compare(&sa("8.8.8.8:1"), &sa("127.0.0.1:1"), true),
            Ordering::Less
        );
        assert_eq!(
            compare(&sa("10.0.0.1:1"), &sa("10.0.0.2:1"), true),
            Ordering::Less
        );
        assert_eq!(
            compare(&sa("10.0.0.1:2"), &sa("10.0.0.1:1"), true),
            Ordering::Greater
        );
        assert_eq!(
            compare(&sa("10.0.0.1:2"), &sa("10.0.0.1:1"), false),
            Ordering::Equal
        );
        assert_eq!(
            compare(&sa("10.0.0.1:1"), &sa("[::ffff:10.0.0.1]:1"), true),
            Ordering::Equal
        );
    }

    #[test]
    fn padding_and_24_bit_order() {
        assert_eq!(getPadding(5, 4), 3);
        assert_eq!(getPadding(8, 4), 0);
        assert_eq!(getPadding(8, 0), 0);
        let wire = u32::from_ne_bytes([0x12, 0x34, 0x56, 0]);
        assert_eq!(ntoh24(wire), 0x12_3456);
        assert_eq!(hton24(ntoh24(wire)), wire);
    }
}
