//! The host's interface addresses (`getifaddrs`).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// The IPv4 and IPv6 addresses of every interface that is up (loopback included), port 0,
/// IPv6 link-local addresses with their scope id. Empty if the list cannot be read.
pub fn interface_addrs() -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = interfaces().into_iter().map(|(a, _)| a).collect();
    out.dedup();
    out
}

/// The IPv4 addresses of interfaces that are up and can multicast.
pub fn multicast_ipv4() -> Vec<Ipv4Addr> {
    interfaces()
        .into_iter()
        .filter(|(_, flags)| flags & libc::IFF_MULTICAST != 0)
        .filter_map(|(a, _)| match a {
            SocketAddr::V4(v4) => Some(*v4.ip()),
            SocketAddr::V6(_) => None,
        })
        .collect()
}

/// Every address of every interface that is up, with the interface's flags (`IFF_*`).
fn interfaces() -> Vec<(SocketAddr, libc::c_int)> {
    let mut out = Vec::new();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a list that we walk and free; each ifa_addr is read as the
    // structure its family names.
    unsafe {
        if libc::getifaddrs(&mut ifap) != 0 {
            return out;
        }
        let mut p = ifap;
        while !p.is_null() {
            let ifa = &*p;
            p = ifa.ifa_next;
            let flags = ifa.ifa_flags as libc::c_int;
            if ifa.ifa_addr.is_null() || flags & libc::IFF_UP == 0 {
                continue;
            }
            match (*ifa.ifa_addr).sa_family as libc::c_int {
                libc::AF_INET => {
                    let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                    out.push((SocketAddr::V4(SocketAddrV4::new(ip, 0)), flags));
                }
                libc::AF_INET6 => {
                    let sin6 = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                    let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                    out.push((
                        SocketAddr::V6(SocketAddrV6::new(ip, 0, 0, sin6.sin6_scope_id)),
                        flags,
                    ));
                }
                _ => {}
            }
        }
        libc::freeifaddrs(ifap);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_is_listed() {
        let a = super::interface_addrs();
        assert!(a.iter().any(|a| a.ip().is_loopback()), "{a:?}");
        assert!(a.iter().all(|a| a.port() == 0));
    }
}
