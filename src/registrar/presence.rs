//! ENRP Presence by multicast (`-enrpannounce=`, default 239.0.0.51:9901): the socket that
//! listens for other registrars' Presence on the group. Sending uses the same sender as the
//! ASAP announces (one datagram per multicast-capable interface).

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};

/// Joins `group` on every multicast-capable interface (and the default one) and listens on
/// its port, non-blocking, sharing the port with other registrars on the host.
pub fn listen(group: SocketAddr) -> io::Result<UdpSocket> {
    let IpAddr::V4(g) = group.ip() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "only IPv4 multicast groups are supported",
        ));
    };
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), group.port()).into())?;
    let mut joined = s.join_multicast_v4(&g, &Ipv4Addr::UNSPECIFIED).is_ok();
    for ifa in crate::transport::interfaces::multicast_ipv4() {
        joined |= s.join_multicast_v4(&g, &ifa).is_ok();
    }
    if !joined {
        return Err(io::Error::other(format!(
            "cannot join {g} on any interface"
        )));
    }
    s.set_multicast_loop_v4(true)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}
