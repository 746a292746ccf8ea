//! Kernel SCTP through plain system calls (no libsctp needed at build or run time).
//!
//! The constants and structures are the Linux kernel's user API (`<linux/sctp.h>`); the libc
//! crate does not carry them. PPIDs are sent and read in network byte order, as every SCTP
//! implementation (and rsplib) does.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use socket2::SockAddr;

pub const IPPROTO_SCTP: libc::c_int = 132;
pub const SOL_SCTP: libc::c_int = 132;

// Socket options (linux/sctp.h).
const SCTP_RTOINFO: libc::c_int = 0;
const SCTP_ASSOCINFO: libc::c_int = 1;
const SCTP_NODELAY: libc::c_int = 3;
const SCTP_PEER_ADDR_PARAMS: libc::c_int = 9;
const SCTP_EVENTS: libc::c_int = 11;
const SCTP_SOCKOPT_BINDX_ADD: libc::c_int = 100;
const SCTP_GET_PEER_ADDRS: libc::c_int = 108;
const SCTP_GET_LOCAL_ADDRS: libc::c_int = 109;
const SCTP_SOCKOPT_CONNECTX: libc::c_int = 110;

// spp_flags of struct sctp_paddrparams.
const SPP_HB_ENABLE: u32 = 1 << 0;
const SPP_HB_DISABLE: u32 = 1 << 1;

// Ancillary data type for struct sctp_sndrcvinfo.
const SCTP_SNDRCV: libc::c_int = 1;

// sinfo_flags.
pub const SCTP_ABORT: u16 = 0x0004;
pub const SCTP_EOF: u16 = libc::MSG_FIN as u16;

// recvmsg flags.
const MSG_NOTIFICATION: libc::c_int = 0x8000;

// Notification types and association states.
const SCTP_ASSOC_CHANGE: u16 = (1 << 15) + 1;
const SCTP_SHUTDOWN_EVENT: u16 = (1 << 15) + 5;
pub const SCTP_COMM_UP: u16 = 0;
pub const SCTP_COMM_LOST: u16 = 1;
pub const SCTP_RESTART: u16 = 2;
pub const SCTP_SHUTDOWN_COMP: u16 = 3;
pub const SCTP_CANT_STR_ASSOC: u16 = 4;

/// `sctp_assoc_t` (a signed 32-bit id on Linux).
pub type AssocId = i32;

/// `struct sctp_sndrcvinfo` (32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
struct SndRcvInfo {
    stream: u16,
    ssn: u16,
    flags: u16,
    ppid: u32,
    context: u32,
    timetolive: u32,
    tsn: u32,
    cumtsn: u32,
    assoc_id: AssocId,
}

/// `struct sctp_event_subscribe`, the first 11 fields (the kernel accepts a prefix).
#[repr(C)]
#[derive(Default)]
struct EventSubscribe {
    data_io: u8,
    association: u8,
    address: u8,
    send_failure: u8,
    peer_error: u8,
    shutdown: u8,
    partial_delivery: u8,
    adaptation_layer: u8,
    authentication: u8,
    sender_dry: u8,
    stream_reset: u8,
}

/// What one `recvmsg` on an SCTP socket returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// `len` bytes of user data in the buffer; `complete` unless the message was cut.
    Data {
        assoc: AssocId,
        ppid: u32,
        stream: u16,
        len: usize,
        complete: bool,
    },
    /// An association changed state (`SCTP_COMM_UP`, `SCTP_COMM_LOST`, …).
    AssocChange { assoc: AssocId, state: u16 },
    /// The peer started a graceful shutdown.
    Shutdown { assoc: AssocId },
    /// Another notification, ignored.
    OtherNotification,
}

/// True if the kernel offers SCTP (a probe socket can be created).
pub fn available() -> bool {
    socket(libc::AF_INET, libc::SOCK_SEQPACKET).is_ok()
}

/// A non-blocking, close-on-exec SCTP socket (`SOCK_SEQPACKET` = one-to-many,
/// `SOCK_STREAM` = one-to-one).
pub fn socket(family: libc::c_int, ty: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain system call; the descriptor is owned from here on.
    let fd = unsafe {
        libc::socket(
            family,
            ty | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            IPPROTO_SCTP,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn setsockopt<T>(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
    len: usize,
) -> io::Result<()> {
    // SAFETY: `value` points to at least `len` readable bytes.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            len as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Subscribes to data-I/O (PPID on receive), association and shutdown events; sets NODELAY.
pub fn configure(fd: &OwnedFd) -> io::Result<()> {
    let events = EventSubscribe {
        data_io: 1,
        association: 1,
        shutdown: 1,
        ..Default::default()
    };
    setsockopt(
        fd.as_raw_fd(),
        SOL_SCTP,
        SCTP_EVENTS,
        &events,
        size_of::<EventSubscribe>(),
    )?;
    let one: libc::c_int = 1;
    setsockopt(
        fd.as_raw_fd(),
        SOL_SCTP,
        SCTP_NODELAY,
        &one,
        size_of::<libc::c_int>(),
    )?;
    Ok(())
}

/// Binds to every address (the first with `bind`, the others with `sctp_bindx` ADD):
/// multihoming. All addresses share the first one's port.
pub fn bind_all(fd: &impl AsRawFd, addrs: &[SocketAddr]) -> io::Result<()> {
    let first = addrs
        .first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to bind"))?;
    let sa = SockAddr::from(*first);
    // SAFETY: sa is a valid socket address of the given length.
    if unsafe { libc::bind(fd.as_raw_fd(), sa.as_ptr().cast(), sa.len()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    if addrs.len() > 1 {
        let port = local_addrs(fd)?
            .first()
            .map(|a| a.port())
            .unwrap_or(first.port());
        let rest: Vec<SocketAddr> = addrs[1..]
            .iter()
            .map(|a| SocketAddr::new(a.ip(), port))
            .collect();
        let packed = packed_addrs(&rest);
        // SAFETY: packed holds the concatenated socket addresses.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                SOL_SCTP,
                SCTP_SOCKOPT_BINDX_ADD,
                packed.as_ptr().cast(),
                packed.len() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The socket addresses one after another, as `sctp_bindx` / `sctp_connectx` take them.
fn packed_addrs(addrs: &[SocketAddr]) -> Vec<u8> {
    let mut packed = Vec::new();
    for a in addrs {
        let sa = SockAddr::from(*a);
        // SAFETY: sa.as_ptr() points to sa.len() bytes.
        packed.extend_from_slice(unsafe {
            std::slice::from_raw_parts(sa.as_ptr().cast::<u8>(), sa.len() as usize)
        });
    }
    packed
}

/// `sctp_connectx`: starts an association to all addresses of one peer. A non-blocking
/// socket reports `EINPROGRESS` as an error, as `connect` does.
pub fn connectx(fd: RawFd, addrs: &[SocketAddr]) -> io::Result<()> {
    let packed = packed_addrs(addrs);
    // SAFETY: packed holds the concatenated socket addresses.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            SOL_SCTP,
            SCTP_SOCKOPT_CONNECTX,
            packed.as_ptr().cast(),
            packed.len() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The protocol of a socket (`SO_PROTOCOL`: `IPPROTO_SCTP`, `IPPROTO_TCP`, …).
pub fn socket_protocol(fd: RawFd) -> io::Result<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: v is writable for len bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PROTOCOL,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(v)
    }
}

/// SCTP parameters to change on a socket or association; `None` keeps the current value.
/// Times in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tuning {
    pub rto_min: Option<u32>,
    pub rto_max: Option<u32>,
    pub rto_initial: Option<u32>,
    /// Heartbeat interval; 0 disables heartbeats.
    pub heartbeat: Option<u32>,
    pub path_max_rxt: Option<u16>,
    pub assoc_max_rxt: Option<u16>,
    pub local_rwnd: Option<u32>,
    pub cookie_life: Option<u32>,
}

/// `struct sctp_rtoinfo`.
#[repr(C)]
#[derive(Default)]
struct RtoInfo {
    assoc_id: AssocId,
    initial: u32,
    max: u32,
    min: u32,
}

/// `struct sctp_assocparams`.
#[repr(C)]
#[derive(Default)]
struct AssocParams {
    assoc_id: AssocId,
    asocmaxrxt: u16,
    number_peer_destinations: u16,
    peer_rwnd: u32,
    local_rwnd: u32,
    cookie_life: u32,
}

/// `struct sctp_paddrparams` is packed (156 bytes): offsets of the fields we set.
const PADDR_SIZE: usize = 156;
const PADDR_HBINTERVAL: usize = 132;
const PADDR_PATHMAXRXT: usize = 136;
const PADDR_FLAGS: usize = 146;

fn getsockopt_into<T>(fd: RawFd, name: libc::c_int, value: &mut T) -> io::Result<()> {
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: value is writable for size_of::<T>() bytes.
    let rc = unsafe { libc::getsockopt(fd, SOL_SCTP, name, (value as *mut T).cast(), &mut len) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Applies `t` to an SCTP socket (`assoc` selects the association on a one-to-many socket;
/// 0 = the socket's defaults). Peer address parameters are set for all peer addresses at once.
/// Fails with `ENOPROTOOPT` on a socket that is not SCTP.
pub fn tune(fd: RawFd, assoc: AssocId, t: &Tuning) -> io::Result<()> {
    if socket_protocol(fd)? != IPPROTO_SCTP {
        return Err(io::Error::from_raw_os_error(libc::ENOPROTOOPT));
    }
    if t.rto_min.is_some() || t.rto_max.is_some() || t.rto_initial.is_some() {
        let mut r = RtoInfo {
            assoc_id: assoc,
            ..Default::default()
        };
        getsockopt_into(fd, SCTP_RTOINFO, &mut r)?;
        r.assoc_id = assoc;
        r.min = t.rto_min.unwrap_or(r.min);
        r.max = t.rto_max.unwrap_or(r.max);
        r.initial = t.rto_initial.unwrap_or(r.initial);
        setsockopt(fd, SOL_SCTP, SCTP_RTOINFO, &r, size_of::<RtoInfo>())?;
    }
    if t.assoc_max_rxt.is_some() || t.local_rwnd.is_some() || t.cookie_life.is_some() {
        let mut a = AssocParams {
            assoc_id: assoc,
            ..Default::default()
        };
        getsockopt_into(fd, SCTP_ASSOCINFO, &mut a)?;
        a.assoc_id = assoc;
        a.asocmaxrxt = t.assoc_max_rxt.unwrap_or(a.asocmaxrxt);
        a.local_rwnd = t.local_rwnd.unwrap_or(a.local_rwnd);
        a.cookie_life = t.cookie_life.unwrap_or(a.cookie_life);
        setsockopt(fd, SOL_SCTP, SCTP_ASSOCINFO, &a, size_of::<AssocParams>())?;
    }
    if t.heartbeat.is_some() || t.path_max_rxt.is_some() {
        // A zero address applies to every peer address; zero fields and flags mean "unchanged".
        let mut p = [0u8; PADDR_SIZE];
        p[..4].copy_from_slice(&assoc.to_ne_bytes());
        if let Some(hb) = t.heartbeat {
            let flags = if hb > 0 {
                SPP_HB_ENABLE
            } else {
                SPP_HB_DISABLE
            };
            p[PADDR_HBINTERVAL..PADDR_HBINTERVAL + 4].copy_from_slice(&hb.to_ne_bytes());
            p[PADDR_FLAGS..PADDR_FLAGS + 4].copy_from_slice(&flags.to_ne_bytes());
        }
        if let Some(rxt) = t.path_max_rxt {
            p[PADDR_PATHMAXRXT..PADDR_PATHMAXRXT + 2].copy_from_slice(&rxt.to_ne_bytes());
        }
        setsockopt(fd, SOL_SCTP, SCTP_PEER_ADDR_PARAMS, &p, PADDR_SIZE)?;
    }
    Ok(())
}

/// What `recvmsg` returned on any socket, with SCTP's `sctp_sndrcvinfo` when attached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecvMeta {
    pub len: usize,
    pub msg_flags: libc::c_int,
    pub name_len: libc::socklen_t,
    /// PPID in host byte order (0 without sndrcvinfo).
    pub ppid: u32,
    pub assoc: AssocId,
    pub stream: u16,
}

/// `recvmsg` into `buf`, the sender's address into `name` (if non-NULL, `name_len` bytes).
///
/// # Safety
/// `buf` must be writable for `len` bytes; `name` NULL or writable for `name_len` bytes.
pub unsafe fn recvmsg_meta(
    fd: RawFd,
    buf: *mut libc::c_void,
    len: usize,
    flags: libc::c_int,
    name: *mut libc::sockaddr,
    name_len: libc::socklen_t,
) -> io::Result<RecvMeta> {
    let space = libc::CMSG_SPACE(size_of::<SndRcvInfo>() as u32) as usize + 64;
    let mut control = vec![0u8; space];
    let mut iov = libc::iovec {
        iov_base: buf,
        iov_len: len,
    };
    let mut msg: libc::msghdr = zeroed();
    msg.msg_name = name.cast();
    msg.msg_namelen = if name.is_null() { 0 } else { name_len };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space;
    let n = libc::recvmsg(fd, &mut msg, flags);
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut meta = RecvMeta {
        len: n as usize,
        msg_flags: msg.msg_flags,
        name_len: msg.msg_namelen,
        ..Default::default()
    };
    let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
    while !cmsg.is_null() {
        if (*cmsg).cmsg_level == IPPROTO_SCTP && (*cmsg).cmsg_type == SCTP_SNDRCV {
            let info = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<SndRcvInfo>());
            meta.ppid = u32::from_be(info.ppid);
            meta.assoc = info.assoc_id;
            meta.stream = info.stream;
        }
        cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
    }
    Ok(meta)
}

/// SCTP send parameters (PPID in host byte order; time to live in ms, 0 = reliable).
#[derive(Clone, Copy, Debug, Default)]
pub struct SendInfo {
    pub ppid: u32,
    pub assoc: AssocId,
    pub stream: u16,
    pub flags: u16,
    pub time_to_live: u32,
}

/// `sendmsg` of `data` to `to` (or the connected peer), with an `sctp_sndrcvinfo` if `info`.
/// `MSG_NOSIGNAL` is always added.
pub fn sendmsg_info(
    fd: RawFd,
    to: Option<&SockAddr>,
    flags: libc::c_int,
    info: Option<SendInfo>,
    data: &[u8],
) -> io::Result<usize> {
    // SAFETY: the control buffer is sized with CMSG_SPACE for one SndRcvInfo and filled
    // through the CMSG_* accessors; the iovec points to `data`, the name to `to`.
    unsafe {
        let space = libc::CMSG_SPACE(size_of::<SndRcvInfo>() as u32) as usize;
        let mut control = Control([0; 128]);
        let mut iov = libc::iovec {
            iov_base: data.as_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        };
        let mut msg: libc::msghdr = zeroed();
        if let Some(to) = to {
            msg.msg_name = to.as_ptr() as *mut libc::c_void;
            msg.msg_namelen = to.len();
        }
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if let Some(i) = info {
            msg.msg_control = control.0.as_mut_ptr().cast();
            msg.msg_controllen = space;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = IPPROTO_SCTP;
            (*cmsg).cmsg_type = SCTP_SNDRCV;
            (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<SndRcvInfo>() as u32) as usize;
            let s = SndRcvInfo {
                stream: i.stream,
                flags: i.flags,
                ppid: i.ppid.to_be(),
                timetolive: i.time_to_live,
                assoc_id: i.assoc,
                ..Default::default()
            };
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<SndRcvInfo>(), s);
        }
        let n = libc::sendmsg(fd, &msg, flags | libc::MSG_NOSIGNAL);
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

/// `listen(2)`.
pub fn listen(fd: &OwnedFd, backlog: i32) -> io::Result<()> {
    // SAFETY: plain system call on an owned descriptor.
    if unsafe { libc::listen(fd.as_raw_fd(), backlog) } < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Sends one message. On a one-to-many socket `assoc` selects the association; `flags` may
/// carry [`SCTP_ABORT`] or [`SCTP_EOF`]. Never raises SIGPIPE.
pub fn send(
    fd: RawFd,
    assoc: AssocId,
    ppid: u32,
    stream: u16,
    flags: u16,
    data: &[u8],
) -> io::Result<usize> {
    let info = SendInfo {
        ppid,
        assoc,
        stream,
        flags,
        time_to_live: 0,
    };
    sendmsg_info(fd, None, 0, Some(info), data)
}

/// Aborts an association of a one-to-many socket.
pub fn abort(fd: RawFd, assoc: AssocId) -> io::Result<()> {
    send(fd, assoc, 0, 0, SCTP_ABORT, &[]).map(|_| ())
}

/// Receives one message or notification into `buf`.
pub fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<Received> {
    recv_flags(fd, buf, 0)
}

/// Control buffer for one message's ancillary data: room for an `sctp_sndrcvinfo` and more,
/// 8-byte aligned as `cmsghdr` needs.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct Control([u8; 128]);

const _: () = assert!(
    std::mem::size_of::<Control>() >= 64 + std::mem::size_of::<SndRcvInfo>() + 16,
    "room for one sndrcvinfo cmsg"
);

/// As [`recv`], with recvmsg flags (e.g. `MSG_PEEK`).
pub fn recv_flags(fd: RawFd, buf: &mut [u8], flags: libc::c_int) -> io::Result<Received> {
    // SAFETY: msghdr and the control buffer are set up for recvmsg; the ancillary data is read
    // by `parse_received` through the CMSG_* accessors.
    unsafe {
        let mut control = Control([0; 128]);
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut msg: libc::msghdr = zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = control.0.len();
        let n = libc::recvmsg(fd, &mut msg, flags);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(parse_received(&msg, &buf[..n as usize]))
    }
}

/// What one received `msghdr` holds: a notification, or data with its sndrcvinfo.
///
/// # Safety
/// `msg` must come from a successful recvmsg/recvmmsg whose control buffer is still alive;
/// `data` is the received bytes.
unsafe fn parse_received(msg: &libc::msghdr, data: &[u8]) -> Received {
    if msg.msg_flags & MSG_NOTIFICATION != 0 {
        return parse_notification(data);
    }
    let mut info = SndRcvInfo::default();
    let mut cmsg = libc::CMSG_FIRSTHDR(msg);
    while !cmsg.is_null() {
        if (*cmsg).cmsg_level == IPPROTO_SCTP && (*cmsg).cmsg_type == SCTP_SNDRCV {
            info = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<SndRcvInfo>());
        }
        cmsg = libc::CMSG_NXTHDR(msg, cmsg);
    }
    Received::Data {
        assoc: info.assoc_id,
        ppid: u32::from_be(info.ppid),
        stream: info.stream,
        len: data.len(),
        complete: msg.msg_flags & libc::MSG_EOR != 0,
    }
}

/// Most messages one [`RecvBatch::recv`] or [`send_batch`] call moves.
pub const BATCH: usize = 16;

/// Receives up to [`BATCH`] messages and notifications with one `recvmmsg`, each into its own
/// slot of `slot` bytes.
pub struct RecvBatch {
    bufs: Box<[u8]>,
    slot: usize,
    got: Vec<(Received, usize)>,
}

impl RecvBatch {
    pub fn new(slot: usize) -> RecvBatch {
        RecvBatch {
            bufs: vec![0u8; slot * BATCH].into_boxed_slice(),
            slot,
            got: Vec::with_capacity(BATCH),
        }
    }

    /// Reads what the socket holds, up to [`BATCH`] (nonblocking socket: WouldBlock if
    /// nothing). Returns how many were read; [`RecvBatch::get`] gives each.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.got.clear();
        // SAFETY: every mmsghdr points to its own iovec (a distinct slot of `bufs`) and its own
        // control buffer, all alive across the call; results are parsed before they go.
        unsafe {
            let mut controls = [Control([0; 128]); BATCH];
            let mut iovs: [libc::iovec; BATCH] = zeroed();
            let mut hdrs: [libc::mmsghdr; BATCH] = zeroed();
            let base = self.bufs.as_mut_ptr();
            for i in 0..BATCH {
                iovs[i] = libc::iovec {
                    iov_base: base.add(i * self.slot).cast(),
                    iov_len: self.slot,
                };
                let h = &mut hdrs[i].msg_hdr;
                h.msg_iov = &mut iovs[i];
                h.msg_iovlen = 1;
                h.msg_control = controls[i].0.as_mut_ptr().cast();
                h.msg_controllen = controls[i].0.len();
            }
            let n = libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            );
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            for (i, h) in hdrs.iter().take(n as usize).enumerate() {
                let len = (h.msg_len as usize).min(self.slot);
                let data = &self.bufs[i * self.slot..i * self.slot + len];
                self.got.push((parse_received(&h.msg_hdr, data), len));
            }
            Ok(n as usize)
        }
    }

    /// Message `i` of the last [`RecvBatch::recv`]: what it is and its bytes.
    pub fn get(&self, i: usize) -> (Received, &[u8]) {
        let (r, len) = self.got[i];
        (r, &self.bufs[i * self.slot..i * self.slot + len])
    }
}

/// Sends up to [`BATCH`] messages of a one-to-many socket with one `sendmmsg`, each to its
/// association `(assoc, ppid, data)`. Returns how many the socket took (they go in order);
/// an error (WouldBlock included) concerns the first message, none having been sent.
pub fn send_batch(fd: RawFd, msgs: &[(AssocId, u32, &[u8])]) -> io::Result<usize> {
    let count = msgs.len().min(BATCH);
    if count == 0 {
        return Ok(0);
    }
    // SAFETY: each mmsghdr points to its own iovec (the message's bytes, only read) and its own
    // control buffer holding one sndrcvinfo cmsg written through the CMSG_* accessors.
    unsafe {
        let mut controls = [Control([0; 128]); BATCH];
        let mut iovs: [libc::iovec; BATCH] = zeroed();
        let mut hdrs: [libc::mmsghdr; BATCH] = zeroed();
        let space = libc::CMSG_SPACE(size_of::<SndRcvInfo>() as u32) as usize;
        for (i, (assoc, ppid, data)) in msgs.iter().take(count).enumerate() {
            iovs[i] = libc::iovec {
                iov_base: data.as_ptr() as *mut libc::c_void,
                iov_len: data.len(),
            };
            let h = &mut hdrs[i].msg_hdr;
            h.msg_iov = &mut iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = controls[i].0.as_mut_ptr().cast();
            h.msg_controllen = space;
            let cmsg = libc::CMSG_FIRSTHDR(h);
            (*cmsg).cmsg_level = IPPROTO_SCTP;
            (*cmsg).cmsg_type = SCTP_SNDRCV;
            (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<SndRcvInfo>() as u32) as usize;
            let info = SndRcvInfo {
                ppid: ppid.to_be(),
                assoc_id: *assoc,
                ..Default::default()
            };
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<SndRcvInfo>(), info);
        }
        let n = libc::sendmmsg(
            fd,
            hdrs.as_mut_ptr(),
            count as libc::c_uint,
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        );
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

fn parse_notification(b: &[u8]) -> Received {
    let u16_at = |i: usize| b.get(i..i + 2).map(|s| u16::from_ne_bytes([s[0], s[1]]));
    let i32_at = |i: usize| {
        b.get(i..i + 4)
            .map(|s| i32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
    };
    match u16_at(0) {
        // struct sctp_assoc_change: type, flags, length(u32), state, error, out, in, assoc_id
        Some(SCTP_ASSOC_CHANGE) => match (u16_at(8), i32_at(16)) {
            (Some(state), Some(assoc)) => Received::AssocChange { assoc, state },
            _ => Received::OtherNotification,
        },
        // struct sctp_shutdown_event: type, flags, length(u32), assoc_id
        Some(SCTP_SHUTDOWN_EVENT) => match i32_at(8) {
            Some(assoc) => Received::Shutdown { assoc },
            None => Received::OtherNotification,
        },
        _ => Received::OtherNotification,
    }
}

/// Packed socket addresses as `SCTP_GET_PEER_ADDRS` / `SCTP_GET_LOCAL_ADDRS` return them.
fn addrs_opt(fd: RawFd, name: libc::c_int, assoc: AssocId) -> io::Result<Vec<SocketAddr>> {
    // struct sctp_getaddrs { sctp_assoc_t assoc_id; __u32 addr_num; __u8 addrs[]; }
    let mut buf = vec![0u8; 8 + 64 * size_of::<libc::sockaddr_in6>()];
    buf[..4].copy_from_slice(&assoc.to_ne_bytes());
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: buf is writable for len bytes.
    let rc = unsafe { libc::getsockopt(fd, SOL_SCTP, name, buf.as_mut_ptr().cast(), &mut len) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let count = u32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
    // The kernel's returned length is inconsistent (SCTP_GET_LOCAL_ADDRS leaves out the 8-byte
    // header, SCTP_GET_PEER_ADDRS includes it): walk `count` addresses within the buffer.
    let end = buf.len();
    let mut out = Vec::new();
    let mut off = 8;
    while out.len() < count && off + 2 <= end {
        let family = u16::from_ne_bytes([buf[off], buf[off + 1]]) as libc::c_int;
        let size = match family {
            libc::AF_INET => size_of::<libc::sockaddr_in>(),
            libc::AF_INET6 => size_of::<libc::sockaddr_in6>(),
            _ => break,
        };
        if off + size > end {
            break;
        }
        if let Some(a) = parse_sockaddr(&buf[off..off + size]) {
            out.push(a);
        }
        off += size;
    }
    Ok(out)
}

/// A raw `sockaddr_in` / `sockaddr_in6` as the kernel packs them.
fn parse_sockaddr(b: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes([*b.first()?, *b.get(1)?]) as libc::c_int;
    let port = u16::from_be_bytes([*b.get(2)?, *b.get(3)?]);
    match family {
        libc::AF_INET if b.len() >= 8 => {
            let ip = std::net::Ipv4Addr::new(b[4], b[5], b[6], b[7]);
            Some(SocketAddr::new(ip.into(), port))
        }
        libc::AF_INET6 if b.len() >= 28 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&b[8..24]);
            let flow = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
            let scope = u32::from_ne_bytes([b[24], b[25], b[26], b[27]]);
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                octets.into(),
                port,
                flow,
                scope,
            )))
        }
        _ => None,
    }
}

/// The peer's addresses of an association (`assoc` 0 on a one-to-one socket).
pub fn peer_addrs(fd: &impl AsRawFd, assoc: AssocId) -> io::Result<Vec<SocketAddr>> {
    addrs_opt(fd.as_raw_fd(), SCTP_GET_PEER_ADDRS, assoc)
}

/// The local addresses the socket is bound to.
pub fn local_addrs(fd: &impl AsRawFd) -> io::Result<Vec<SocketAddr>> {
    addrs_opt(fd.as_raw_fd(), SCTP_GET_LOCAL_ADDRS, 0)
}

/// The local addresses of one association (`assoc` 0: of the socket).
pub fn local_addrs_of(fd: RawFd, assoc: AssocId) -> io::Result<Vec<SocketAddr>> {
    addrs_opt(fd, SCTP_GET_LOCAL_ADDRS, assoc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_sizes_match_the_kernel_abi() {
        assert_eq!(size_of::<RtoInfo>(), 16);
        assert_eq!(size_of::<AssocParams>(), 20);
        assert_eq!(size_of::<SndRcvInfo>(), 32);
        assert_eq!(std::mem::offset_of!(SndRcvInfo, ppid), 8);
        assert_eq!(std::mem::offset_of!(SndRcvInfo, assoc_id), 28);
    }

    #[test]
    fn parses_assoc_change_notifications() {
        let mut n = vec![0u8; 20];
        n[0..2].copy_from_slice(&SCTP_ASSOC_CHANGE.to_ne_bytes());
        n[8..10].copy_from_slice(&SCTP_COMM_LOST.to_ne_bytes());
        n[16..20].copy_from_slice(&7i32.to_ne_bytes());
        assert_eq!(
            parse_notification(&n),
            Received::AssocChange {
                assoc: 7,
                state: SCTP_COMM_LOST
            }
        );
        assert_eq!(parse_notification(&n[..10]), Received::OtherNotification);
        assert_eq!(parse_notification(&[]), Received::OtherNotification);
    }

    #[test]
    fn parses_packed_socket_addresses() {
        let sa = SockAddr::from("10.255.0.1:3863".parse::<SocketAddr>().unwrap());
        let bytes =
            unsafe { std::slice::from_raw_parts(sa.as_ptr().cast::<u8>(), sa.len() as usize) };
        assert_eq!(
            parse_sockaddr(bytes),
            Some("10.255.0.1:3863".parse().unwrap())
        );
        let sa6 = SockAddr::from("[::1]:9901".parse::<SocketAddr>().unwrap());
        let bytes6 =
            unsafe { std::slice::from_raw_parts(sa6.as_ptr().cast::<u8>(), sa6.len() as usize) };
        assert_eq!(parse_sockaddr(bytes6), Some("[::1]:9901".parse().unwrap()));
        assert_eq!(parse_sockaddr(&bytes[..5]), None);
    }
}
