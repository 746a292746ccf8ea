//! `netutilities.h`: the socket helpers classic programs use (address parsing and printing,
//! blocking mode, bind/connect over several addresses, SCTP-aware send/receive), and the SCTP
//! tuning tags. SCTP-specific parts work where the kernel has SCTP and fail cleanly (-1, 0 or
//! false with `errno`) where it has not.
#![allow(non_snake_case, non_upper_case_globals)]

use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use libc::{c_char, c_int, c_ulonglong, c_void};
use socket2::SockAddr;

use super::ctypes::{sctp_assoc_t, CBool};
use super::guard::write_to_file;
use super::guard::{errno, guard, set_errno, try_array, try_cstr, try_mut, try_ref, try_slice};
use super::sockaddrunion::sockaddr_union;
use super::tagitem::{tagListFind, tag_t, TagItem, TAG_USER};
use crate::transport::{interfaces, sctp};

// SCTP tuning (tuneSCTP; the session layer applies them after accept and connect).
pub const TAG_TuneSCTP_MinRTO: tag_t = TAG_USER + 15000;
pub const TAG_TuneSCTP_MaxRTO: tag_t = TAG_USER + 15001;
pub const TAG_TuneSCTP_InitialRTO: tag_t = TAG_USER + 15002;
pub const TAG_TuneSCTP_Heartbeat: tag_t = TAG_USER + 15003;
pub const TAG_TuneSCTP_PathMaxRXT: tag_t = TAG_USER + 15004;
pub const TAG_TuneSCTP_AssocMaxRXT: tag_t = TAG_USER + 15006;
pub const TAG_TuneSCTP_LocalRWND: tag_t = TAG_USER + 15007;
pub const TAG_TuneSCTP_CookieLife: tag_t = TAG_USER + 15008;

/// Parses one address: `host:port`, `host!port`, `[v6]:port`, `[v6]!port`, a bare IPv4/IPv6
/// literal or host name (port 0 then). Host names are resolved (first result).
pub fn parse_address(item: &str) -> Option<SocketAddr> {
    let item = item.trim();
    let (host, port) = if let Some(rest) = item.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix([':', '!'])?),
        };
        (h, port)
    } else if item.parse::<IpAddr>().is_ok() {
        (item, None)
    } else {
        match item.rsplit_once([':', '!']) {
            Some((h, p)) => (h, Some(p)),
            None => (item, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port: u16 = match port {
        None => 0,
        Some(p) => p.parse().ok()?,
    };
    match host.parse::<IpAddr>() {
        Ok(ip) => Some(SocketAddr::new(ip, port)),
        Err(_) => (host, port).to_socket_addrs().ok()?.next(),
    }
}

fn fail<T>(e: &io::Error, value: T) -> T {
    set_errno(e.raw_os_error().unwrap_or(libc::EIO));
    value
}

/// The addresses of a C `sockaddr_union` array; `None` for NULL (with n > 0) or any address
/// that is not IPv4/IPv6.
///
/// # Safety
/// `p` must be NULL or point to `n` unions.
unsafe fn union_addrs(p: *const sockaddr_union, n: usize) -> Option<Vec<SocketAddr>> {
    try_array(p, n)?
        .iter()
        .map(sockaddr_union::to_socket_addr)
        .collect()
}

/// A libc-`malloc`ed array of unions for `addrs` (NULL when empty or out of memory).
fn malloc_unions(addrs: &[SocketAddr]) -> *mut sockaddr_union {
    if addrs.is_empty() {
        return std::ptr::null_mut();
    }
    // SAFETY: a fresh C allocation of addrs.len() unions, filled before it is returned.
    unsafe {
        let p =
            libc::calloc(addrs.len(), std::mem::size_of::<sockaddr_union>()) as *mut sockaddr_union;
        if !p.is_null() {
            for (i, a) in addrs.iter().enumerate() {
                p.add(i).write(sockaddr_union::from_socket_addr(a));
            }
        }
        p
    }
}

/// Stores a malloc'ed array of `addrs` in `*out`; returns the count (0 and NULL if empty or
/// out of memory).
fn hand_out(out: &mut *mut sockaddr_union, addrs: &[SocketAddr]) -> usize {
    *out = malloc_unions(addrs);
    if out.is_null() {
        if !addrs.is_empty() {
            set_errno(libc::ENOMEM);
        }
        0
    } else {
        addrs.len()
    }
}

fn sockopt_int(fd: c_int, level: c_int, name: c_int) -> io::Result<c_int> {
    let mut v: c_int = 0;
    let mut len = std::mem::size_of::<c_int>() as libc::socklen_t;
    // SAFETY: v is writable for len bytes.
    let rc = unsafe { libc::getsockopt(fd, level, name, (&mut v as *mut c_int).cast(), &mut len) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(v)
    }
}

/// A poll(2) timeout in ms for µs (≥ 2^63, e.g. `~0`, = forever).
fn poll_ms(us: u64) -> c_int {
    if us >= 1 << 63 {
        -1
    } else {
        us.div_ceil(1000).min(c_int::MAX as u64) as c_int
    }
}

/// Waits until `fd` has `events`; false on timeout.
fn wait_for(fd: c_int, events: libc::c_short, timeout_us: u64) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: one pollfd.
    match unsafe { libc::poll(&mut p, 1, poll_ms(timeout_us)) } {
        n if n < 0 => Err(io::Error::last_os_error()),
        0 => Ok(false),
        _ => Ok(true),
    }
}

fn set_nonblocking(fd: c_int, on: bool) -> bool {
    // SAFETY: fcntl on a caller's descriptor; a bad one fails with EBADF.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 {
            return false;
        }
        let new = if on {
            flags | libc::O_NONBLOCK
        } else {
            flags & !libc::O_NONBLOCK
        };
        new == flags || libc::fcntl(fd, libc::F_SETFL, new) == 0
    }
}

/// Parses an address (see `parse_address`) into `*address`. False for NULL arguments or an
/// address that does not parse or resolve.
///
/// # Safety
/// `string` must be NULL or a NUL-terminated string; `address` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn string2address(
    string: *const c_char,
    address: *mut sockaddr_union,
) -> bool {
    guard("string2address", || {
        let (Some(s), Some(out)) = (try_cstr(string), try_mut(address)) else {
            return false;
        };
        match std::str::from_utf8(s).ok().and_then(parse_address) {
            Some(a) => {
                *out = sockaddr_union::from_socket_addr(&a);
                true
            }
            None => false,
        }
    })
}

/// The text of an address: `a.b.c.d:port` / `[v6]:port` with the port, the bare address
/// without.
pub fn address_text(a: &SocketAddr, with_port: bool) -> String {
    if with_port {
        a.to_string()
    } else {
        a.ip().to_string()
    }
}

/// Prints an IPv4/IPv6 address to `fd`, with its port if `port` is nonzero. NULL or another
/// family prints "(null)" / "(unsupported address family N)"; a NULL `fd` prints nothing.
///
/// # Safety
/// `address` must be NULL or a valid socket address; `fd` NULL or an open `FILE*`.
#[no_mangle]
pub unsafe extern "C" fn fputaddress(
    address: *const libc::sockaddr,
    port: CBool,
    fd: *mut libc::FILE,
) {
    guard("fputaddress", || {
        let text = match (
            try_ref(address),
            sockaddr_union::read_from(address).and_then(|u| u.to_socket_addr()),
        ) {
            (None, _) => "(null)".to_string(),
            (Some(_), Some(a)) => address_text(&a, port != 0),
            (Some(sa), None) => format!("(unsupported address family {})", sa.sa_family),
        };
        write_to_file(fd, &text);
    })
}

/// Clears `O_NONBLOCK`; false (errno set) for a bad descriptor.
#[no_mangle]
pub extern "C" fn setBlocking(fd: c_int) -> bool {
    guard("setBlocking", || set_nonblocking(fd, false))
}

/// Sets `O_NONBLOCK`; false (errno set) for a bad descriptor.
#[no_mangle]
pub extern "C" fn setNonBlocking(fd: c_int) -> bool {
    guard("setNonBlocking", || set_nonblocking(fd, true))
}

/// Binds `sockfd` to `addresses` addresses (several on an SCTP socket: `sctp_bindx`; on other
/// sockets only the first is used). No addresses: the wildcard address of the socket's
/// family. Port 0: the kernel picks one. False with errno on failure.
///
/// # Safety
/// `addressArray` must be NULL or point to `addresses` unions.
#[no_mangle]
pub unsafe extern "C" fn bindplus(
    sockfd: c_int,
    addressArray: *mut sockaddr_union,
    addresses: usize,
) -> bool {
    guard("bindplus", || {
        let mut addrs = if addresses == 0 {
            match sockopt_int(sockfd, libc::SOL_SOCKET, libc::SO_DOMAIN) {
                Ok(libc::AF_INET6) => vec!["[::]:0".parse().unwrap()],
                Ok(_) => vec!["0.0.0.0:0".parse().unwrap()],
                Err(e) => return fail(&e, false),
            }
        } else {
            match union_addrs(addressArray, addresses) {
                Some(a) => a,
                None => {
                    set_errno(libc::EINVAL);
                    return false;
                }
            }
        };
        let result = match sctp::socket_protocol(sockfd) {
            // SAFETY: getsockopt just succeeded on sockfd, so it is an open descriptor.
            Ok(sctp::IPPROTO_SCTP) => {
                sctp::bind_all(&std::os::fd::BorrowedFd::borrow_raw(sockfd), &addrs)
            }
            Ok(_) => {
                addrs.truncate(1);
                let sa = SockAddr::from(addrs[0]);
                if libc::bind(sockfd, sa.as_ptr().cast(), sa.len()) == 0 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                }
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => true,
            Err(e) => fail(&e, false),
        }
    })
}

/// All addresses of the host's interfaces that are up (IPv4 and IPv6, loopback included,
/// port 0) as a `malloc`ed array in `*addressArray` (the caller `free`s it); returns the count.
///
/// # Safety
/// `addressArray` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn gatherLocalAddresses(addressArray: *mut *mut sockaddr_union) -> usize {
    guard("gatherLocalAddresses", || {
        let Some(out) = try_mut(addressArray) else {
            set_errno(libc::EINVAL);
            return 0;
        };
        hand_out(out, &interfaces::interface_addrs())
    })
}

/// The local addresses of a socket: SCTP: of the association (`assocID`, 0 = the socket);
/// other sockets: `getsockname`, a wildcard address expanded to the host's addresses of the
/// socket's family (AF_INET6: all), all with the socket's port. A `malloc`ed array in
/// `*addressArray`; returns the count (0 with errno on error).
///
/// # Safety
/// `addressArray` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn getladdrsplus(
    fd: c_int,
    assocID: sctp_assoc_t,
    addressArray: *mut *mut sockaddr_union,
) -> usize {
    guard("getladdrsplus", || {
        let Some(out) = try_mut(addressArray) else {
            set_errno(libc::EINVAL);
            return 0;
        };
        *out = std::ptr::null_mut();
        let addrs = match sctp::socket_protocol(fd) {
            Ok(sctp::IPPROTO_SCTP) => sctp::local_addrs_of(fd, assocID),
            Ok(_) => socket_name_addrs(fd),
            Err(e) => Err(e),
        };
        match addrs {
            Ok(a) => hand_out(out, &a),
            Err(e) => fail(&e, 0),
        }
    })
}

/// `getsockname`, a wildcard address expanded to the host's addresses.
fn socket_name_addrs(fd: c_int) -> io::Result<Vec<SocketAddr>> {
    let mut u = sockaddr_union::zeroed();
    let mut len = std::mem::size_of::<sockaddr_union>() as libc::socklen_t;
    // SAFETY: u is writable for len bytes.
    if unsafe { libc::getsockname(fd, (&mut u as *mut sockaddr_union).cast(), &mut len) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let a = u
        .to_socket_addr()
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EAFNOSUPPORT))?;
    if !a.ip().is_unspecified() {
        return Ok(vec![a]);
    }
    Ok(interfaces::interface_addrs()
        .into_iter()
        .filter(|i| a.is_ipv6() || i.is_ipv4())
        .map(|mut i| {
            i.set_port(a.port());
            i
        })
        .collect())
}

/// The port (host byte order) of an IPv4/IPv6 address; 0 for NULL or another family.
///
/// # Safety
/// `address` must be NULL or a valid socket address.
#[no_mangle]
pub unsafe extern "C" fn getPort(address: *const libc::sockaddr) -> u16 {
    guard("getPort", || {
        sockaddr_union::read_from(address)
            .and_then(|u| u.to_socket_addr())
            .map(|a| a.port())
            .unwrap_or(0)
    })
}

/// Sets the port (host byte order) of an IPv4/IPv6 address; false for NULL or another family.
///
/// # Safety
/// `address` must be NULL or a valid, writable socket address of the size its family gives.
#[no_mangle]
pub unsafe extern "C" fn setPort(address: *mut libc::sockaddr, port: u16) -> bool {
    guard("setPort", || {
        let Some(sa) = try_ref(address) else {
            return false;
        };
        // The port is at the same offset (2) in sockaddr_in and sockaddr_in6.
        match sa.sa_family as c_int {
            libc::AF_INET | libc::AF_INET6 => {
                let p = address.cast::<u8>().add(2).cast::<u16>();
                p.write_unaligned(port.to_be());
                true
            }
            _ => false,
        }
    })
}

/// `recvmsg` with SCTP's receive information. Sets `sockfd` non-blocking and waits up to
/// `timeout` µs (0: not at all) for data. Every out-pointer may be NULL; `*flags` is the recv
/// flags in and `msg_flags` out; `*fromlen` is the size of `from` in and the address length
/// out; the PPID is in host byte order (0 on non-SCTP sockets). Returns the byte count, or -1
/// with errno (`EAGAIN` on timeout).
///
/// # Safety
/// `buffer` must be NULL or writable for `length` bytes; the out-pointers NULL or writable
/// (`from` for `*fromlen` bytes).
#[no_mangle]
pub unsafe extern "C" fn recvfromplus(
    sockfd: c_int,
    buffer: *mut c_void,
    length: usize,
    flags: *mut c_int,
    from: *mut libc::sockaddr,
    fromlen: *mut libc::socklen_t,
    ppid: *mut u32,
    assocID: *mut sctp_assoc_t,
    streamID: *mut u16,
    timeout: c_ulonglong,
) -> c_int {
    guard("recvfromplus", || {
        if buffer.is_null() && length > 0 {
            set_errno(libc::EINVAL);
            return -1;
        }
        let in_flags = try_ref(flags).copied().unwrap_or(0);
        let (name, name_len) = match try_ref(fromlen) {
            Some(l) if !from.is_null() => (from, *l),
            _ => (std::ptr::null_mut(), 0),
        };
        if !set_nonblocking(sockfd, true) {
            return -1;
        }
        let mut result = sctp::recvmsg_meta(sockfd, buffer, length, in_flags, name, name_len);
        if matches!(&result, Err(e) if e.raw_os_error() == Some(libc::EAGAIN)) && timeout > 0 {
            match wait_for(sockfd, libc::POLLIN, timeout) {
                Ok(true) => {
                    result = sctp::recvmsg_meta(sockfd, buffer, length, in_flags, name, name_len)
                }
                Ok(false) => {}
                Err(e) => result = Err(e),
            }
        }
        match result {
            Ok(meta) => {
                if let Some(f) = try_mut(flags) {
                    *f = meta.msg_flags;
                }
                if let Some(l) = try_mut(fromlen) {
                    *l = if name.is_null() { 0 } else { meta.name_len };
                }
                if let Some(p) = try_mut(ppid) {
                    *p = meta.ppid;
                }
                if let Some(a) = try_mut(assocID) {
                    *a = meta.assoc;
                }
                if let Some(s) = try_mut(streamID) {
                    *s = meta.stream;
                }
                meta.len.min(c_int::MAX as usize) as c_int
            }
            Err(e) => fail(&e, -1),
        }
    })
}

/// Sends `length` bytes to the first of `toaddrs` (or the connected peer when `toaddrcnt` is
/// 0), on SCTP sockets with PPID (host byte order), association, stream and time to live.
/// Sets `sockfd` non-blocking and waits up to `timeout` µs for room. Never raises SIGPIPE.
/// Returns the byte count or -1 with errno.
///
/// # Safety
/// `buffer` must be NULL or readable for `length` bytes; `toaddrs` NULL or `toaddrcnt` unions.
#[no_mangle]
pub unsafe extern "C" fn sendtoplus(
    sockfd: c_int,
    buffer: *const c_void,
    length: usize,
    flags: c_int,
    toaddrs: *mut sockaddr_union,
    toaddrcnt: usize,
    ppid: u32,
    assocID: sctp_assoc_t,
    streamID: u16,
    timeToLive: u32,
    timeout: c_ulonglong,
) -> c_int {
    guard("sendtoplus", || {
        let (Some(data), Some(to)) = (
            try_slice(buffer.cast(), length),
            union_addrs(toaddrs, toaddrcnt),
        ) else {
            set_errno(libc::EINVAL);
            return -1;
        };
        let to = to.first().map(|a| SockAddr::from(*a));
        let info = match sctp::socket_protocol(sockfd) {
            Ok(sctp::IPPROTO_SCTP) => Some(sctp::SendInfo {
                ppid,
                assoc: assocID,
                stream: streamID,
                flags: 0,
                time_to_live: timeToLive,
            }),
            Ok(_) => None,
            Err(e) => return fail(&e, -1),
        };
        if !set_nonblocking(sockfd, true) {
            return -1;
        }
        let send = || sctp::sendmsg_info(sockfd, to.as_ref(), flags, info, data);
        let mut result = send();
        if matches!(&result, Err(e) if e.raw_os_error() == Some(libc::EAGAIN)) && timeout > 0 {
            match wait_for(sockfd, libc::POLLOUT, timeout) {
                Ok(true) => result = send(),
                Ok(false) => {}
                Err(e) => result = Err(e),
            }
        }
        match result {
            Ok(n) => n.min(c_int::MAX as usize) as c_int,
            Err(e) => fail(&e, -1),
        }
    })
}

/// Creates a socket and connects it to `addresses` addresses of one peer (SCTP: all of them,
/// `sctp_connectx`), waiting up to `timeout` µs. Returns the connected descriptor, left
/// non-blocking, or -1 with errno (`ETIMEDOUT` on timeout).
///
/// # Safety
/// `addressArray` must be NULL or point to `addresses` unions.
#[no_mangle]
pub unsafe extern "C" fn establish(
    socketDomain: c_int,
    socketType: c_int,
    socketProtocol: c_int,
    addressArray: *mut sockaddr_union,
    addresses: usize,
    timeout: c_ulonglong,
) -> c_int {
    guard("establish", || {
        let addrs = match union_addrs(addressArray, addresses) {
            Some(a) if !a.is_empty() => a,
            _ => {
                set_errno(libc::EINVAL);
                return -1;
            }
        };
        let fd = libc::socket(socketDomain, socketType, socketProtocol);
        if fd < 0 {
            return -1;
        }
        let close_with = |code: c_int| {
            libc::close(fd);
            set_errno(code);
            -1
        };
        if !set_nonblocking(fd, true) {
            return close_with(errno());
        }
        let started = if socketProtocol == sctp::IPPROTO_SCTP && addrs.len() > 1 {
            sctp::connectx(fd, &addrs)
        } else {
            let sa = SockAddr::from(addrs[0]);
            if libc::connect(fd, sa.as_ptr().cast(), sa.len()) == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        };
        match started {
            Ok(()) => return fd,
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return close_with(e.raw_os_error().unwrap_or(libc::EIO)),
        }
        match wait_for(fd, libc::POLLOUT, timeout) {
            Ok(true) => match sockopt_int(fd, libc::SOL_SOCKET, libc::SO_ERROR) {
                Ok(0) => fd,
                Ok(code) => close_with(code),
                Err(e) => close_with(e.raw_os_error().unwrap_or(libc::EIO)),
            },
            Ok(false) => close_with(libc::ETIMEDOUT),
            Err(e) => close_with(e.raw_os_error().unwrap_or(libc::EIO)),
        }
    })
}

/// Applies the `TAG_TuneSCTP_*` tags to an SCTP socket or association (absent tags keep the
/// current value). False with errno on failure, `ENOPROTOOPT` for a socket that is not SCTP.
///
/// # Safety
/// `tags` must be NULL or a valid tag list.
#[no_mangle]
pub unsafe extern "C" fn tuneSCTP(
    sockfd: c_int,
    assocID: sctp_assoc_t,
    tags: *mut TagItem,
) -> bool {
    guard("tuneSCTP", || {
        let get = |tag| try_ref(tagListFind(tags, tag)).map(|t| t.Data);
        let u32_of = |tag| get(tag).map(|d| d.min(u32::MAX as libc::c_ulong) as u32);
        let u16_of = |tag| get(tag).map(|d| d.min(u16::MAX as libc::c_ulong) as u16);
        let t = sctp::Tuning {
            rto_min: u32_of(TAG_TuneSCTP_MinRTO),
            rto_max: u32_of(TAG_TuneSCTP_MaxRTO),
            rto_initial: u32_of(TAG_TuneSCTP_InitialRTO),
            heartbeat: u32_of(TAG_TuneSCTP_Heartbeat),
            path_max_rxt: u16_of(TAG_TuneSCTP_PathMaxRXT),
            assoc_max_rxt: u16_of(TAG_TuneSCTP_AssocMaxRXT),
            local_rwnd: u32_of(TAG_TuneSCTP_LocalRWND),
            cookie_life: u32_of(TAG_TuneSCTP_CookieLife),
        };
        match sctp::tune(sockfd, assocID, &t) {
            Ok(()) => true,
            Err(e) => fail(&e, false),
        }
    })
}

/// Connects `sockfd` to `addresses` addresses of one peer: on an SCTP socket all of them
/// (`sctp_connectx`), on other sockets the first. Returns 0, or -1 with errno (`EINVAL` for
/// no or unusable addresses; `EINPROGRESS` on a non-blocking socket, as `connect`).
///
/// # Safety
/// `addressArray` must be NULL or point to `addresses` unions.
#[no_mangle]
pub unsafe extern "C" fn connectplus(
    sockfd: c_int,
    addressArray: *mut sockaddr_union,
    addresses: usize,
) -> c_int {
    guard("connectplus", || {
        let addrs = match union_addrs(addressArray, addresses) {
            Some(a) if !a.is_empty() => a,
            _ => {
                set_errno(libc::EINVAL);
                return -1;
            }
        };
        let result = match sctp::socket_protocol(sockfd) {
            Ok(sctp::IPPROTO_SCTP) => sctp::connectx(sockfd, &addrs),
            Ok(_) => {
                let sa = SockAddr::from(addrs[0]);
                if libc::connect(sockfd, sa.as_ptr().cast(), sa.len()) == 0 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                }
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => 0,
            Err(e) => fail(&e, -1),
        }
    })
}

/// Sends an empty SCTP message with `flags` (ABORT or EOF) to an association; 0 or -1.
fn send_sctp_flag(sockfd: c_int, assocID: sctp_assoc_t, flag: u16) -> c_int {
    match sctp::socket_protocol(sockfd) {
        Ok(sctp::IPPROTO_SCTP) => match sctp::send(sockfd, assocID, 0, 0, flag, &[]) {
            Ok(_) => 0,
            Err(e) => fail(&e, -1),
        },
        Ok(_) => {
            set_errno(libc::EOPNOTSUPP);
            -1
        }
        Err(e) => fail(&e, -1),
    }
}

/// Aborts an SCTP association (`SCTP_ABORT`; `assocID` 0 on a one-to-one socket). Returns 0,
/// or -1 with errno (`EOPNOTSUPP` on a socket that is not SCTP).
#[no_mangle]
pub extern "C" fn sendabort(sockfd: c_int, assocID: sctp_assoc_t) -> c_int {
    guard("sendabort", || {
        send_sctp_flag(sockfd, assocID, sctp::SCTP_ABORT)
    })
}

/// Shuts an SCTP association down gracefully (`SCTP_EOF`); on a TCP socket `shutdown(SHUT_WR)`,
/// its equivalent. Returns 0, or -1 with errno.
#[no_mangle]
pub extern "C" fn sendshutdown(sockfd: c_int, assocID: sctp_assoc_t) -> c_int {
    guard("sendshutdown", || match sctp::socket_protocol(sockfd) {
        Ok(libc::IPPROTO_TCP) => {
            // SAFETY: shutdown on a caller's descriptor; a bad one fails with errno.
            unsafe { libc::shutdown(sockfd, libc::SHUT_WR) }
        }
        _ => send_sctp_flag(sockfd, assocID, sctp::SCTP_EOF),
    })
}

/// Sets `SO_REUSEADDR` to `on` (nonzero = on). False with errno on failure.
#[no_mangle]
pub extern "C" fn setReusable(sd: c_int, on: c_int) -> bool {
    guard("setReusable", || {
        let v: c_int = c_int::from(on != 0);
        // SAFETY: v is readable for its size.
        unsafe {
            libc::setsockopt(
                sd,
                libc::SOL_SOCKET,
                libc::SO_REUSEADDR,
                (&v as *const c_int).cast(),
                std::mem::size_of::<c_int>() as libc::socklen_t,
            ) == 0
        }
    })
}

/// Joins (`add` nonzero) or leaves the multicast group `groupAddress` (IPv4 or IPv6) on every
/// interface the kernel picks. Already being a member counts as success. False with errno
/// otherwise (`EINVAL` for NULL or another family).
///
/// # Safety
/// `groupAddress` must be NULL or a valid union.
#[no_mangle]
pub unsafe extern "C" fn joinOrLeaveMulticastGroup(
    sd: c_int,
    groupAddress: *const sockaddr_union,
    add: CBool,
) -> bool {
    guard("joinOrLeaveMulticastGroup", || {
        let add = add != 0;
        let rc = match try_ref(groupAddress).and_then(sockaddr_union::to_socket_addr) {
            Some(SocketAddr::V4(g)) => {
                let mreq = libc::ip_mreq {
                    imr_multiaddr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(g.ip().octets()),
                    },
                    imr_interface: libc::in_addr { s_addr: 0 },
                };
                let name = if add {
                    libc::IP_ADD_MEMBERSHIP
                } else {
                    libc::IP_DROP_MEMBERSHIP
                };
                libc::setsockopt(
                    sd,
                    libc::IPPROTO_IP,
                    name,
                    (&mreq as *const libc::ip_mreq).cast(),
                    std::mem::size_of::<libc::ip_mreq>() as libc::socklen_t,
                )
            }
            Some(SocketAddr::V6(g)) => {
                let mreq = libc::ipv6_mreq {
                    ipv6mr_multiaddr: libc::in6_addr {
                        s6_addr: g.ip().octets(),
                    },
                    ipv6mr_interface: 0,
                };
                let name = if add {
                    libc::IPV6_ADD_MEMBERSHIP
                } else {
                    libc::IPV6_DROP_MEMBERSHIP
                };
                libc::setsockopt(
                    sd,
                    libc::IPPROTO_IPV6,
                    name,
                    (&mreq as *const libc::ipv6_mreq).cast(),
                    std::mem::size_of::<libc::ipv6_mreq>() as libc::socklen_t,
                )
            }
            None => {
                set_errno(libc::EINVAL);
                return false;
            }
        };
        rc == 0 || errno() == libc::EADDRINUSE
    })
}

/// Whether this host can open IPv6 sockets.
#[no_mangle]
pub extern "C" fn checkIPv6() -> bool {
    guard("checkIPv6", || {
        // SAFETY: a socket opened and closed at once.
        unsafe {
            let sd = libc::socket(libc::AF_INET6, libc::SOCK_DGRAM, libc::IPPROTO_UDP);
            if sd >= 0 {
                libc::close(sd);
            }
            sd >= 0
        }
    })
}

/// The peer addresses of a socket: SCTP: of the association (`assocID`, 0 on a one-to-one
/// socket); other sockets: `getpeername`. A `malloc`ed array in `*addressArray`; returns the
/// count (0 with errno, `*addressArray` NULL, on error, e.g. `ENOTCONN`).
///
/// # Safety
/// `addressArray` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn getpaddrsplus(
    fd: c_int,
    assocID: sctp_assoc_t,
    addressArray: *mut *mut sockaddr_union,
) -> usize {
    guard("getpaddrsplus", || {
        let Some(out) = try_mut(addressArray) else {
            set_errno(libc::EINVAL);
            return 0;
        };
        *out = std::ptr::null_mut();
        let addrs = match sctp::socket_protocol(fd) {
            Ok(sctp::IPPROTO_SCTP) => sctp::peer_addrs(&fd, assocID),
            Ok(_) => peer_name_addr(fd).map(|a| vec![a]),
            Err(e) => Err(e),
        };
        match addrs {
            Ok(a) => hand_out(out, &a),
            Err(e) => fail(&e, 0),
        }
    })
}

fn peer_name_addr(fd: c_int) -> io::Result<SocketAddr> {
    let mut u = sockaddr_union::zeroed();
    let mut len = std::mem::size_of::<sockaddr_union>() as libc::socklen_t;
    // SAFETY: u is writable for len bytes.
    if unsafe { libc::getpeername(fd, (&mut u as *mut sockaddr_union).cast(), &mut len) } < 0 {
        return Err(io::Error::last_os_error());
    }
    u.to_socket_addr()
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EAFNOSUPPORT))
}

/// The local addresses of a socket, as `getladdrsplus(sockfd, 0, …)`, or else the one address
/// `getsockname` gives. A `malloc`ed array in `*addressArray`; returns the count (0 with errno
/// on error).
///
/// # Safety
/// `addressArray` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn getAddressesFromSocket(
    sockfd: c_int,
    addressArray: *mut *mut sockaddr_union,
) -> usize {
    guard("getAddressesFromSocket", || {
        let n = getladdrsplus(sockfd, 0, addressArray);
        if n > 0 {
            return n;
        }
        let Some(out) = try_mut(addressArray) else {
            return 0;
        };
        let mut u = sockaddr_union::zeroed();
        let mut len = std::mem::size_of::<sockaddr_union>() as libc::socklen_t;
        if libc::getsockname(sockfd, (&mut u as *mut sockaddr_union).cast(), &mut len) < 0 {
            return 0;
        }
        match u.to_socket_addr() {
            Some(a) => hand_out(out, &[a]),
            None => {
                set_errno(libc::EAFNOSUPPORT);
                0
            }
        }
    })
}

/// Host to network byte order, 64 bits.
#[no_mangle]
pub extern "C" fn hton64(value: u64) -> u64 {
    guard("hton64", || value.to_be())
}

/// Network to host byte order, 64 bits.
#[no_mangle]
pub extern "C" fn ntoh64(value: u64) -> u64 {
    guard("ntoh64", || u64::from_be(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_classic_address_syntax() {
        let p = |s: &str| parse_address(s).map(|a| a.to_string());
        assert_eq!(p("10.0.0.1:3863").as_deref(), Some("10.0.0.1:3863"));
        assert_eq!(p("10.0.0.1!3863").as_deref(), Some("10.0.0.1:3863"));
        assert_eq!(p("10.0.0.1").as_deref(), Some("10.0.0.1:0"));
        assert_eq!(p("[::1]:9").as_deref(), Some("[::1]:9"));
        assert_eq!(p("[::1]!9").as_deref(), Some("[::1]:9"));
        assert_eq!(p("::1").as_deref(), Some("[::1]:0"));
        assert_eq!(p("[::1]").as_deref(), Some("[::1]:0"));
        assert_eq!(p("localhost:7").map(|s| s.ends_with(":7")), Some(true));
        for bad in ["", ":1", "[::1", "[::1]x", "1.2.3.4:99999", "1.2.3.4:x"] {
            assert_eq!(p(bad), None, "{bad}");
        }
    }

    #[test]
    fn poll_timeouts() {
        assert_eq!(poll_ms(0), 0);
        assert_eq!(poll_ms(1), 1);
        assert_eq!(poll_ms(1500), 2);
        assert_eq!(poll_ms(u64::MAX), -1);
    }

    #[test]
    fn byte_order_round_trips() {
        assert_eq!(ntoh64(hton64(0x0102_0304_0506_0708)), 0x0102_0304_0506_0708);
        assert_eq!(hton64(1).to_ne_bytes()[7], 1);
    }
}
