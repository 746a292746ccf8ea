//! `sockaddrunion.h`: `union sockaddr_union` (28 bytes on Linux, the size of `sockaddr_in6`).
#![allow(non_camel_case_types)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// `union sockaddr_union { struct sockaddr sa; struct sockaddr_in in; struct sockaddr_in6 in6; }`
/// cbindgen:field-names=[sa, in, in6]
#[repr(C)]
#[derive(Clone, Copy)]
pub union sockaddr_union {
    pub sa: libc::sockaddr,
    pub in4: libc::sockaddr_in,
    pub in6: libc::sockaddr_in6,
}

impl sockaddr_union {
    /// An all-zero union (family `AF_UNSPEC`).
    pub fn zeroed() -> Self {
        // SAFETY: all-zero bytes are a valid value of every member.
        unsafe { std::mem::zeroed() }
    }

    /// Fills a union from a socket address.
    pub fn from_socket_addr(addr: &SocketAddr) -> Self {
        let mut u = Self::zeroed();
        match addr {
            SocketAddr::V4(a) => {
                u.in4 = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(a.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
            }
            SocketAddr::V6(a) => {
                u.in6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: a.flowinfo().to_be(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    },
                    sin6_scope_id: a.scope_id(),
                };
            }
        }
        u
    }

    /// Copies an IPv4 or IPv6 `struct sockaddr` (whose size its family gives) into a union;
    /// `None` for NULL or another family.
    ///
    /// # Safety
    /// `p` must be NULL or point to a `sockaddr_in` (family `AF_INET`), a `sockaddr_in6`
    /// (family `AF_INET6`) or at least a readable `sa_family` field.
    pub unsafe fn read_from(p: *const libc::sockaddr) -> Option<Self> {
        let family = super::guard::try_ref(p)?.sa_family as libc::c_int;
        let mut u = Self::zeroed();
        match family {
            // Unaligned reads: C callers may hand any buffer that holds the address.
            libc::AF_INET => u.in4 = std::ptr::read_unaligned(p.cast::<libc::sockaddr_in>()),
            libc::AF_INET6 => u.in6 = std::ptr::read_unaligned(p.cast::<libc::sockaddr_in6>()),
            _ => return None,
        }
        Some(u)
    }

    /// The socket address held by the union, or `None` for a family other than IPv4/IPv6.
    pub fn to_socket_addr(&self) -> Option<SocketAddr> {
        // SAFETY: `sa_family` is at the same offset in every member; we read the member the
        // family names.
        unsafe {
            match self.sa.sa_family as libc::c_int {
                libc::AF_INET => {
                    let a = self.in4;
                    let ip = Ipv4Addr::from(a.sin_addr.s_addr.to_ne_bytes());
                    Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be(a.sin_port)))
                }
                libc::AF_INET6 => {
                    let a = self.in6;
                    let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
                    Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                        ip,
                        u16::from_be(a.sin6_port),
                        u32::from_be(a.sin6_flowinfo),
                        a.sin6_scope_id,
                    )))
                }
                _ => None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_linux_sockaddr_in6() {
        assert_eq!(std::mem::size_of::<sockaddr_union>(), 28);
        assert_eq!(std::mem::align_of::<sockaddr_union>(), 4);
    }

    #[test]
    fn round_trips_socket_addresses() {
        for s in ["10.255.0.1:3863", "[::1]:9901", "[fe80::1%3]:1"] {
            let a: SocketAddr = s.parse().unwrap();
            assert_eq!(
                sockaddr_union::from_socket_addr(&a).to_socket_addr(),
                Some(a)
            );
        }
        assert_eq!(sockaddr_union::zeroed().to_socket_addr(), None);
    }
}
