//! Contact-node mode for plain clients on one host (docs/contact-node.md): a contact process
//! accepts a TCP client that uses no RSerPool library, reads what it needs (say, the first
//! line), and passes the connected socket itself, with the bytes it already read, to a worker
//! PE of a pool on the same host; the worker serves the client directly.
//!
//! The passing is descriptor passing (`SCM_RIGHTS`) over a Unix socket of type
//! `SOCK_SEQPACKET` that the worker binds in Linux's abstract namespace under a name derived
//! from its pool handle and PE identifier ([`socket_name`]), so a contact that resolved the
//! pool needs nothing else to reach the worker. One pass is one connection carrying one
//! message: an 8-byte header, the already-read bytes, and exactly one descriptor.

use std::collections::HashMap;
use std::io;
use std::mem::{size_of, zeroed};
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::session::EnhancedPe;
use super::Library;
use crate::core::types::{PeId, PoolHandle};
use crate::core::wire;
use crate::logging;
use crate::transport::{interfaces, poll_fd};

/// The most already-read bytes that travel with a socket (64 KiB). A contact that read more
/// has read more than a first request; it is refused at the sender.
pub const MAX_ALREADY_READ: usize = 64 * 1024;

/// Header of a pass message: `u8 version (1) | u8 flags (0) | u16 reserved (0) |
/// u32 length of the already-read bytes that follow` (network order).
const HEADER: usize = 8;
const VERSION: u8 = 1;

/// Prefix of every worker's abstract socket name (after the leading NUL).
pub const NAME_PREFIX: &str = "rsplib-handoff/";

/// How many PEs [`pass_socket_to_pool`] tries before it gives up.
pub const POOL_ATTEMPTS: usize = 4;

/// Connections a worker's socket queues before contacts are told it is busy (`EAGAIN`).
const BACKLOG: libc::c_int = 1024;

/// How long a worker waits for the message of a connection it accepted (the contact sends it
/// right after connecting), and a contact for buffer space to send it.
const MESSAGE_WAIT: Duration = Duration::from_secs(1);

/// Descriptors one message may carry before its control data is truncated; a pass carries one,
/// the room for more lets a receiver see (and close) extra ones instead of the kernel.
const CMSG_FDS: usize = 8;

/// The abstract socket name (without the leading NUL byte) a worker binds for `pool` and PE
/// `pe_id`: `rsplib-handoff/<pool handle in lower-case hex>/<PE id as %08x>`, at most
/// 15 + 64 + 1 + 8 = 88 bytes.
pub fn socket_name(pool: &PoolHandle, pe_id: u32) -> String {
    let mut s = String::with_capacity(NAME_PREFIX.len() + 2 * pool.len() + 9);
    s.push_str(NAME_PREFIX);
    for b in pool.as_bytes() {
        s.push_str(&format!("{b:02x}"));
    }
    s.push_str(&format!("/{pe_id:08x}"));
    s
}

/// An error with its `errno` and what it was about: [`errno_of`] finds the code (the C API
/// sets it), `Display` says what happened.
#[derive(Debug)]
struct Errno {
    code: libc::c_int,
    what: String,
}

impl std::fmt::Display for Errno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}",
            self.what,
            io::Error::from_raw_os_error(self.code)
        )
    }
}

impl std::error::Error for Errno {}

/// The `errno` of an error of this module (or of any plain OS error).
pub fn errno_of(e: &io::Error) -> Option<libc::c_int> {
    e.raw_os_error().or_else(|| {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<Errno>())
            .map(|x| x.code)
    })
}

fn error_kind(code: libc::c_int, kind: io::ErrorKind, what: impl Into<String>) -> io::Error {
    io::Error::new(
        kind,
        Errno {
            code,
            what: what.into(),
        },
    )
}

/// An error with `errno` `code` (and the kind std gives that code) about `what`.
fn os_error(code: libc::c_int, what: impl Into<String>) -> io::Error {
    error_kind(code, io::Error::from_raw_os_error(code).kind(), what)
}

/// `EINVAL`, kind `InvalidInput`.
fn invalid(what: impl Into<String>) -> io::Error {
    error_kind(libc::EINVAL, io::ErrorKind::InvalidInput, what)
}

/// `EMSGSIZE`, kind `InvalidInput`: more bytes than may travel with a socket.
fn too_long(len: usize) -> io::Error {
    error_kind(
        libc::EMSGSIZE,
        io::ErrorKind::InvalidInput,
        format!("{len} already-read bytes: at most {MAX_ALREADY_READ} travel with a passed socket"),
    )
}

/// An OS error `e` with context `what` (the code kept for [`errno_of`]).
fn context(e: io::Error, what: impl Into<String>) -> io::Error {
    match e.raw_os_error() {
        Some(code) => error_kind(code, e.kind(), what),
        None => e,
    }
}

/// The `sockaddr_un` of the abstract name for (pool, PE id) and its length.
fn address(pool: &PoolHandle, pe_id: u32) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    if !pool.is_valid() {
        return Err(invalid("the pool handle must have 1 to 32 bytes"));
    }
    if pe_id == 0 {
        return Err(invalid("PE identifier 0 names no pool element"));
    }
    let name = socket_name(pool, pe_id);
    // SAFETY: sockaddr_un is plain data; all zeros is valid.
    let mut sa: libc::sockaddr_un = unsafe { zeroed() };
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    // sun_path[0] = 0 (abstract), the name after it, no terminating NUL.
    for (dst, src) in sa.sun_path[1..].iter_mut().zip(name.as_bytes()) {
        *dst = *src as libc::c_char;
    }
    let base = std::mem::offset_of!(libc::sockaddr_un, sun_path);
    Ok((sa, (base + 1 + name.len()) as libc::socklen_t))
}

fn seqpacket_socket() -> io::Result<OwnedFd> {
    // SAFETY: a fresh socket we own from here on.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is fresh.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn deadline_left(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(Instant::now()))
}

// ------------------------------------------------------------------------------- worker

/// A worker's end: the bound abstract socket on which contacts pass clients.
#[derive(Debug)]
pub struct PassedSocketReceiver {
    listener: OwnedFd,
    name: String,
    /// A pass already taken off the socket whose bytes did not fit the caller's buffer: handed
    /// out by the next `receive` with room for them.
    pending: Mutex<Option<(OwnedFd, Vec<u8>)>>,
    /// Room for the part of a pass that does not fit the caller's buffer (allocated once; a
    /// second thread receiving at the same time allocates its own).
    scratch: Mutex<Vec<u8>>,
}

impl PassedSocketReceiver {
    /// Binds the abstract socket of PE `pe_id` of `pool` (see [`socket_name`]) and listens on
    /// it. `AddrInUse` if another socket holds the name (another process serving that PE).
    pub fn bind(pool: &PoolHandle, pe_id: u32) -> io::Result<PassedSocketReceiver> {
        let (sa, len) = address(pool, pe_id)?;
        let listener = seqpacket_socket()?;
        // SAFETY: binding our socket to a valid sockaddr_un of `len` bytes.
        let r = unsafe {
            libc::bind(
                listener.as_raw_fd(),
                (&sa as *const libc::sockaddr_un).cast(),
                len,
            )
        };
        if r != 0 {
            return Err(context(
                io::Error::last_os_error(),
                format!("binding @{}", socket_name(pool, pe_id)),
            ));
        }
        // SAFETY: listen on our bound socket.
        if unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(PassedSocketReceiver {
            listener,
            name: socket_name(pool, pe_id),
            pending: Mutex::new(None),
            scratch: Mutex::new(Vec::new()),
        })
    }

    /// Binds the socket of an Enhanced Mode PE (its pool and identifier). `WouldBlock` while
    /// the PE has no identifier yet (its first registration has not succeeded).
    pub fn for_pe(pe: &EnhancedPe) -> io::Result<PassedSocketReceiver> {
        let id = pe.identifier();
        if id == 0 {
            return Err(os_error(
                libc::EAGAIN,
                "the pool element has no identifier yet (not registered)",
            ));
        }
        PassedSocketReceiver::bind(pe.pool(), id)
    }

    /// The descriptor to poll for readability: readable when a contact has passed a client.
    pub fn fd(&self) -> RawFd {
        self.listener.as_raw_fd()
    }

    /// The abstract name (without its leading NUL).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The size of the already-read bytes of a pass that did not fit the last buffer
    /// (`receive` failed with `EMSGSIZE`; the next `receive` with room returns it).
    pub fn pending_len(&self) -> Option<usize> {
        self.pending.lock().as_ref().map(|(_, data)| data.len())
    }

    /// Receives one passed client, waiting as long as it takes: see [`Self::receive_timeout`].
    pub fn receive(&self, buf: &mut [u8]) -> io::Result<(OwnedFd, usize)> {
        self.receive_timeout(buf, None)
    }

    /// Receives one passed client: its connected socket (close-on-exec, now the caller's) and
    /// the number of already-read bytes copied to the front of `buf`. Waits up to `timeout`
    /// (`None`: forever; zero: only what is queued) and fails with `WouldBlock` then.
    ///
    /// A pass whose bytes do not fit `buf` fails with `EMSGSIZE` and is kept: the next call
    /// with a buffer of [`Self::pending_len`] bytes returns it. A malformed message (no
    /// descriptor, several, truncated control data, a bad header) fails with `EPROTO` after
    /// every descriptor it carried is closed; one from a process of another user (neither
    /// root nor ours, by `SO_PEERCRED`) with `EACCES`. A caller goes on receiving after such
    /// errors.
    pub fn receive_timeout(
        &self,
        buf: &mut [u8],
        timeout: Option<Duration>,
    ) -> io::Result<(OwnedFd, usize)> {
        {
            let mut pending = self.pending.lock();
            if let Some((_, data)) = pending.as_ref() {
                if data.len() > buf.len() {
                    return Err(os_error(
                        libc::EMSGSIZE,
                        format!("{} already-read bytes wait for a larger buffer", data.len()),
                    ));
                }
                let (fd, data) = pending.take().expect("checked");
                buf[..data.len()].copy_from_slice(&data);
                return Ok((fd, data.len()));
            }
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        let conn = loop {
            // SAFETY: accept on our listening socket; the result is a fresh descriptor.
            let fd = unsafe {
                libc::accept4(
                    self.listener.as_raw_fd(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                )
            };
            if fd >= 0 {
                // SAFETY: fd is fresh.
                break unsafe { OwnedFd::from_raw_fd(fd) };
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) | Some(libc::ECONNABORTED) => continue,
                Some(libc::EAGAIN) => {
                    let left = deadline_left(deadline);
                    if left == Some(Duration::ZERO)
                        || !poll_fd(self.listener.as_raw_fd(), libc::POLLIN, left)?
                    {
                        return Err(os_error(libc::EAGAIN, "no client was passed in time"));
                    }
                }
                _ => return Err(e),
            }
        };
        check_peer(&conn)?;
        self.read_pass(&conn, buf)
    }

    /// Reads the one message of an accepted pass connection.
    fn read_pass(&self, conn: &OwnedFd, buf: &mut [u8]) -> io::Result<(OwnedFd, usize)> {
        let mut header = [0u8; HEADER];
        let direct = buf.len().min(MAX_ALREADY_READ);
        // Room for the rest of a maximal pass when `buf` is smaller (kept as pending), and one
        // byte more: a longer message is cut (MSG_TRUNC).
        let need = MAX_ALREADY_READ - direct + 1;
        let mut shared = self.scratch.try_lock();
        let mut own = Vec::new();
        let scratch: &mut [u8] = match shared.as_deref_mut() {
            Some(v) => {
                if v.len() < need {
                    v.resize(MAX_ALREADY_READ + 1, 0);
                }
                &mut v[..need]
            }
            None => {
                own.resize(need, 0);
                &mut own
            }
        };
        let mut iov = [
            libc::iovec {
                iov_base: header.as_mut_ptr().cast(),
                iov_len: HEADER,
            },
            libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: direct,
            },
            libc::iovec {
                iov_base: scratch.as_mut_ptr().cast(),
                iov_len: scratch.len(),
            },
        ];
        let mut control = [0u64; cmsg_words()];
        // SAFETY: msghdr is plain data; the pointers set below stay valid for the call.
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = iov.len();
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of::<[u64; cmsg_words()]>();
        let n = loop {
            // SAFETY: receiving into the buffers described by msg.
            let n = unsafe { libc::recvmsg(conn.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
            if n >= 0 {
                break n as usize;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => {
                    if !poll_fd(conn.as_raw_fd(), libc::POLLIN, Some(MESSAGE_WAIT))? {
                        return Err(os_error(
                            libc::EPROTO,
                            "a contact connected but passed nothing",
                        ));
                    }
                }
                _ => return Err(e),
            }
        };
        // Take every descriptor first: each is closed on any error below.
        // SAFETY: walking the control data the kernel filled in.
        let mut fds = unsafe { received_fds(&msg) };
        if msg.msg_flags & libc::MSG_CTRUNC != 0 {
            return Err(os_error(
                libc::EPROTO,
                "a pass's control data was truncated (too many descriptors)",
            ));
        }
        if msg.msg_flags & libc::MSG_TRUNC != 0 {
            return Err(os_error(libc::EPROTO, "a pass message was too long"));
        }
        if n == 0 && fds.is_empty() {
            return Err(os_error(
                libc::EPROTO,
                "a contact connected but passed nothing",
            ));
        }
        if fds.len() != 1 {
            return Err(os_error(
                libc::EPROTO,
                format!(
                    "a pass must carry exactly one descriptor, not {}",
                    fds.len()
                ),
            ));
        }
        if n < HEADER || header[0] != VERSION {
            return Err(os_error(
                libc::EPROTO,
                "a pass message without a version 1 header",
            ));
        }
        let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        if len != n - HEADER || len > MAX_ALREADY_READ {
            return Err(os_error(
                libc::EPROTO,
                format!(
                    "a pass message announces {len} bytes and has {}",
                    n - HEADER
                ),
            ));
        }
        let fd = fds.pop().expect("one descriptor");
        if len > direct {
            let mut data = buf[..direct].to_vec();
            data.extend_from_slice(&scratch[..len - direct]);
            *self.pending.lock() = Some((fd, data));
            return Err(os_error(
                libc::EMSGSIZE,
                format!("{len} already-read bytes do not fit {} bytes", buf.len()),
            ));
        }
        Ok((fd, len))
    }
}

impl AsRawFd for PassedSocketReceiver {
    fn as_raw_fd(&self) -> RawFd {
        self.listener.as_raw_fd()
    }
}

impl AsFd for PassedSocketReceiver {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }
}

/// u64 words of control buffer for [`CMSG_FDS`] descriptors (aligned for `cmsghdr`).
const fn cmsg_words() -> usize {
    // CMSG_SPACE(n * 4) on Linux: a 16-byte header, the data rounded up to 8.
    (16 + (CMSG_FDS * size_of::<libc::c_int>()).div_ceil(8) * 8) / 8
}

/// Every descriptor in the `SCM_RIGHTS` messages of `msg`, now owned.
///
/// # Safety
/// `msg` must be the result of a successful `recvmsg` with its control buffer.
unsafe fn received_fds(msg: &libc::msghdr) -> Vec<OwnedFd> {
    let mut fds = Vec::new();
    let mut cmsg = libc::CMSG_FIRSTHDR(msg);
    while !cmsg.is_null() {
        let c = &*cmsg;
        if c.cmsg_level == libc::SOL_SOCKET && c.cmsg_type == libc::SCM_RIGHTS {
            let bytes = c.cmsg_len as usize - libc::CMSG_LEN(0) as usize;
            let data = libc::CMSG_DATA(cmsg) as *const libc::c_int;
            for i in 0..bytes / size_of::<libc::c_int>() {
                let fd = std::ptr::read_unaligned(data.add(i));
                if fd >= 0 {
                    fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
        }
        cmsg = libc::CMSG_NXTHDR(msg, cmsg);
    }
    fds
}

/// Accepts passes only from processes of our user or root (the abstract namespace has no
/// file permissions).
fn check_peer(conn: &OwnedFd) -> io::Result<()> {
    // SAFETY: ucred is plain data; getsockopt fills it on our socket.
    let mut cred: libc::ucred = unsafe { zeroed() };
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: as above.
    let r = unsafe {
        libc::getsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    if cred.uid == me || cred.uid == 0 {
        Ok(())
    } else {
        Err(os_error(
            libc::EACCES,
            format!(
                "a pass from pid {} of user {} (not ours, not root) was refused",
                cred.pid, cred.uid
            ),
        ))
    }
}

// ------------------------------------------------------------------------------ contact

/// Passes the connected socket `client` and the `already_read` bytes to PE `pe_id` of `pool`
/// on this host. On success the worker holds its own copy of the socket: the caller closes
/// (drops) its one. On failure the socket is untouched, still the caller's:
/// `ConnectionRefused` (or `NotFound`) when no such worker receives on this host,
/// `WouldBlock` when its queue is full, `InvalidInput` for more than [`MAX_ALREADY_READ`]
/// bytes.
pub fn pass_socket(
    pool: &PoolHandle,
    pe_id: u32,
    client: BorrowedFd<'_>,
    already_read: &[u8],
) -> io::Result<()> {
    if already_read.len() > MAX_ALREADY_READ {
        return Err(too_long(already_read.len()));
    }
    let (sa, len) = address(pool, pe_id)?;
    let sock = seqpacket_socket()?;
    loop {
        // SAFETY: connecting our socket to a valid sockaddr_un of `len` bytes.
        let r = unsafe {
            libc::connect(
                sock.as_raw_fd(),
                (&sa as *const libc::sockaddr_un).cast(),
                len,
            )
        };
        if r == 0 {
            break;
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(context(
                e,
                format!("passing a socket to PE 0x{pe_id:08x} of pool \"{pool}\""),
            ));
        }
    }
    let mut header = [0u8; HEADER];
    header[0] = VERSION;
    header[4..].copy_from_slice(&(already_read.len() as u32).to_be_bytes());
    let mut iov = [
        libc::iovec {
            iov_base: header.as_mut_ptr().cast(),
            iov_len: HEADER,
        },
        libc::iovec {
            iov_base: already_read.as_ptr() as *mut libc::c_void,
            iov_len: already_read.len(),
        },
    ];
    let mut control = [0u64; cmsg_words()];
    // SAFETY: msghdr is plain data; the pointers set below stay valid for the call, and the
    // control buffer holds one cmsghdr with one descriptor (CMSG_SPACE(4) ≤ its size).
    unsafe {
        let mut msg: libc::msghdr = zeroed();
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = iov.len();
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(size_of::<libc::c_int>() as u32) as usize;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<libc::c_int>() as u32) as usize;
        std::ptr::write_unaligned(
            libc::CMSG_DATA(cmsg) as *mut libc::c_int,
            client.as_raw_fd(),
        );
        loop {
            if libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN)
                    if poll_fd(sock.as_raw_fd(), libc::POLLOUT, Some(MESSAGE_WAIT))? =>
                {
                    continue
                }
                _ => return Err(e),
            }
        }
    }
}

/// Is one of the PE's transport addresses on this host (loopback, the wildcard, or an
/// address of one of our interfaces)?
fn on_this_host(pe: &wire::PoolElement) -> bool {
    let ours = interfaces::interface_addrs();
    pe.user_transport.addresses.iter().any(|a: &IpAddr| {
        a.is_loopback() || a.is_unspecified() || ours.iter().any(|o| o.ip() == *a)
    })
}

/// Passes `client` (and the `already_read` bytes) to a PE of `pool` chosen by the pool's
/// policy ([`Library::resolve`]) and returns its identifier. A PE that does not receive passed
/// sockets here is skipped and the next one tried, up to [`POOL_ATTEMPTS`] different PEs
/// (fewer when the selection comes back to one already tried): one on this host (by its
/// addresses) whose socket is absent is reported unreachable ([`Library::report_failure`]: it
/// is dead, or was started without accepting passed sockets); one on another host is only
/// dropped from the cache; a busy one (its queue full) is left as it is. On failure the socket
/// is still the caller's (`NotFound`/`ENOENT` when the pool has no PE, the last PE's error
/// when none took it, `TimedOut` when the resolution failed); on success the caller drops its
/// copy.
pub fn pass_socket_to_pool(
    lib: &Library,
    pool: &PoolHandle,
    client: BorrowedFd<'_>,
    already_read: &[u8],
) -> io::Result<u32> {
    if already_read.len() > MAX_ALREADY_READ {
        return Err(too_long(already_read.len()));
    }
    if !pool.is_valid() {
        return Err(invalid("the pool handle must have 1 to 32 bytes"));
    }
    let mut last = None;
    let mut tried = Vec::with_capacity(POOL_ATTEMPTS);
    for _ in 0..POOL_ATTEMPTS {
        let pe = match lib.resolve(pool) {
            // The pool has no PE we have not tried.
            Ok(Some(pe)) if tried.contains(&pe.id.0) => break,
            Ok(Some(pe)) => pe,
            Ok(None) => break,
            Err(e) => {
                return Err(error_kind(
                    libc::ETIMEDOUT,
                    io::ErrorKind::TimedOut,
                    format!("handle resolution of pool \"{pool}\" failed ({e})"),
                ))
            }
        };
        let id = pe.id.0;
        tried.push(id);
        let e = match pass_socket(pool, id, client, already_read) {
            Ok(()) => return Ok(id),
            Err(e) => e,
        };
        match errno_of(&e) {
            Some(libc::ECONNREFUSED) | Some(libc::ENOENT) if on_this_host(&pe) => {
                logging::log(
                    logging::WARNING,
                    &format!(
                        "rsplib: PE 0x{id:08x} of pool \"{pool}\" receives no passed sockets \
                         on this host: reported unreachable"
                    ),
                );
                let _ = lib.report_failure(pool.clone(), PeId(id));
            }
            Some(libc::ECONNREFUSED) | Some(libc::ENOENT) => lib.forget_cached(pool, PeId(id)),
            // Busy (its queue is full): the selection moves on by itself, or comes back to
            // it and the caller hears EAGAIN.
            Some(libc::EAGAIN) => {}
            _ => return Err(e),
        }
        last = Some(e);
    }
    Err(last
        .unwrap_or_else(|| os_error(libc::ENOENT, format!("pool \"{pool}\" has no pool element"))))
}

// ------------------------------------------------------------ receivers of the C API's PEs

type PeKey = (PoolHandle, u32);

/// The receivers the C API started for its pool elements (`rspPoolElementAcceptPassedSockets`),
/// by (pool, PE id); released by `rspDeletePoolElement` and `rspCleanUp`.
static PE_RECEIVERS: LazyLock<Mutex<HashMap<PeKey, Arc<PassedSocketReceiver>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The receiver of `pe`, bound on the first call.
pub fn pe_receiver(pe: &EnhancedPe) -> io::Result<Arc<PassedSocketReceiver>> {
    let key = (pe.pool().clone(), pe.identifier());
    let mut map = PE_RECEIVERS.lock();
    if let Some(r) = map.get(&key) {
        return Ok(r.clone());
    }
    let r = Arc::new(PassedSocketReceiver::for_pe(pe)?);
    map.insert(key, r.clone());
    Ok(r)
}

/// Closes the receiver of `pe`, if it has one (its socket closes once no call uses it).
pub fn release_pe_receiver(pe: &EnhancedPe) {
    let key = (pe.pool().clone(), pe.identifier());
    let r = PE_RECEIVERS.lock().remove(&key);
    drop(r);
}

/// Closes every receiver started through [`pe_receiver`].
pub fn release_all_pe_receivers() {
    let all = std::mem::take(&mut *PE_RECEIVERS.lock());
    drop(all);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    fn pool(name: &str) -> PoolHandle {
        PoolHandle::new(format!("{name}-{}", std::process::id()).as_bytes())
    }

    #[test]
    fn names_derive_from_pool_and_pe() {
        let p = PoolHandle::new(b"Ab\x00");
        assert_eq!(socket_name(&p, 0x1234), "rsplib-handoff/416200/00001234");
        let long = PoolHandle::new(&[0xff; 32]);
        let n = socket_name(&long, u32::MAX);
        assert_eq!(n.len(), 88);
        assert!(address(&PoolHandle::new(b""), 1).is_err());
        assert!(address(&PoolHandle::new(&[1; 33]), 1).is_err());
        assert!(address(&p, 0).is_err());
    }

    #[test]
    fn a_socket_and_its_bytes_arrive_and_the_socket_works() {
        let p = pool("pass");
        let rx = PassedSocketReceiver::bind(&p, 7).unwrap();
        assert_eq!(
            PassedSocketReceiver::bind(&p, 7).unwrap_err().kind(),
            io::ErrorKind::AddrInUse
        );
        let (mut ours, theirs) = UnixStream::pair().unwrap();
        pass_socket(&p, 7, theirs.as_fd(), b"first line\n").unwrap();
        drop(theirs);
        let mut buf = [0u8; 64];
        let (fd, n) = rx.receive_timeout(&mut buf, Some(Duration::ZERO)).unwrap();
        assert_eq!(&buf[..n], b"first line\n");
        let mut passed = UnixStream::from(fd);
        passed.write_all(b"pong").unwrap();
        let mut got = [0u8; 4];
        ours.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"pong");
        // Nothing more queued.
        let e = rx
            .receive_timeout(&mut buf, Some(Duration::from_millis(20)))
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(errno_of(&e), Some(libc::EAGAIN));
    }

    #[test]
    fn no_receiver_is_refused_and_the_socket_stays() {
        let p = pool("absent");
        let (a, _b) = UnixStream::pair().unwrap();
        let e = pass_socket(&p, 99, a.as_fd(), b"x").unwrap_err();
        assert_eq!(errno_of(&e), Some(libc::ECONNREFUSED));
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
        assert!(e.to_string().contains("PE 0x00000063"), "{e}");
        // Still open: fcntl works on it.
        // SAFETY: querying flags of our descriptor.
        assert!(unsafe { libc::fcntl(a.as_raw_fd(), libc::F_GETFD) } >= 0);
    }

    #[test]
    fn oversized_already_read_is_refused_at_the_sender() {
        let p = pool("big");
        let rx = PassedSocketReceiver::bind(&p, 1).unwrap();
        let (a, _b) = UnixStream::pair().unwrap();
        let big = vec![7u8; MAX_ALREADY_READ + 1];
        let e = pass_socket(&p, 1, a.as_fd(), &big).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(errno_of(&e), Some(libc::EMSGSIZE));
        assert!(e.to_string().contains("65537"), "{e}");
        // The largest allowed passes whole.
        pass_socket(&p, 1, a.as_fd(), &big[..MAX_ALREADY_READ]).unwrap();
        let mut buf = vec![0u8; MAX_ALREADY_READ];
        let (_fd, n) = rx.receive(&mut buf).unwrap();
        assert_eq!(n, MAX_ALREADY_READ);
        assert!(buf.iter().all(|&b| b == 7));
    }

    #[test]
    fn bytes_larger_than_the_buffer_wait_for_a_larger_one() {
        let p = pool("small");
        let rx = PassedSocketReceiver::bind(&p, 2).unwrap();
        let (mut ours, theirs) = UnixStream::pair().unwrap();
        let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        pass_socket(&p, 2, theirs.as_fd(), &data).unwrap();
        drop(theirs);
        let mut small = [0u8; 100];
        let e = rx.receive(&mut small).unwrap_err();
        assert_eq!(errno_of(&e), Some(libc::EMSGSIZE));
        assert!(e.to_string().contains("do not fit"), "{e}");
        assert_eq!(rx.pending_len(), Some(1000));
        assert!(rx.receive(&mut small).is_err());
        let mut big = vec![0u8; 1000];
        let (fd, n) = rx.receive(&mut big).unwrap();
        assert_eq!(&big[..n], &data[..]);
        assert_eq!(rx.pending_len(), None);
        UnixStream::from(fd).write_all(b"k").unwrap();
        let mut k = [0u8; 1];
        ours.read_exact(&mut k).unwrap();
        assert_eq!(&k, b"k");
    }

    /// Sends a raw message with `fds` descriptors and `data` to the receiver's name.
    fn send_raw(p: &PoolHandle, id: u32, data: &[u8], fds: &[RawFd]) {
        let (sa, len) = address(p, id).unwrap();
        let sock = seqpacket_socket().unwrap();
        // SAFETY: test plumbing with valid buffers.
        unsafe {
            assert_eq!(
                libc::connect(
                    sock.as_raw_fd(),
                    (&sa as *const libc::sockaddr_un).cast(),
                    len
                ),
                0
            );
            let mut iov = libc::iovec {
                iov_base: data.as_ptr() as *mut libc::c_void,
                iov_len: data.len(),
            };
            let mut control = vec![0u64; 64];
            let mut msg: libc::msghdr = zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            if !fds.is_empty() {
                let bytes = (fds.len() * 4) as u32;
                msg.msg_control = control.as_mut_ptr().cast();
                msg.msg_controllen = libc::CMSG_SPACE(bytes) as usize;
                let c = libc::CMSG_FIRSTHDR(&msg);
                (*c).cmsg_level = libc::SOL_SOCKET;
                (*c).cmsg_type = libc::SCM_RIGHTS;
                (*c).cmsg_len = libc::CMSG_LEN(bytes) as usize;
                let d = libc::CMSG_DATA(c) as *mut libc::c_int;
                for (i, fd) in fds.iter().enumerate() {
                    std::ptr::write_unaligned(d.add(i), *fd);
                }
            }
            assert!(libc::sendmsg(sock.as_raw_fd(), &msg, 0) >= 0);
        }
    }

    fn header(len: usize) -> Vec<u8> {
        let mut h = vec![VERSION, 0, 0, 0];
        h.extend_from_slice(&(len as u32).to_be_bytes());
        h
    }

    /// True once every copy of `a` (the peer of `b`) is closed: `b` reads end-of-file.
    fn peer_closed(b: &mut UnixStream) -> bool {
        b.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut one = [0u8; 1];
        matches!(b.read(&mut one), Ok(0))
    }

    #[test]
    fn malformed_passes_are_refused_without_leaking_descriptors() {
        let p = pool("bad");
        let rx = PassedSocketReceiver::bind(&p, 3).unwrap();
        let mut buf = [0u8; 64];
        let cases: Vec<(Vec<u8>, usize, &str)> = vec![
            (header(0), 0, "no descriptor"),
            (header(0), 2, "two descriptors"),
            (header(0), 20, "control data truncated"),
            (b"\x02\0\0\0\0\0\0\0".to_vec(), 1, "version 2"),
            (vec![VERSION, 0], 1, "short header"),
            ([header(5), b"abc".to_vec()].concat(), 1, "length mismatch"),
        ];
        for (data, copies, what) in cases {
            // Every copy passed is of `a`; once the receiver has closed them all (and we ours),
            // `b` reads end-of-file. A leaked copy would keep it open.
            let (a, mut b) = UnixStream::pair().unwrap();
            send_raw(&p, 3, &data, &vec![a.as_raw_fd(); copies]);
            drop(a);
            let e = rx.receive(&mut buf).unwrap_err();
            assert_eq!(errno_of(&e), Some(libc::EPROTO), "{what}: {e}");
            assert!(
                peer_closed(&mut b),
                "{what}: a passed descriptor was not closed"
            );
        }
        // The receiver still works afterwards, and a good pass keeps the socket open.
        let (a, mut b) = UnixStream::pair().unwrap();
        pass_socket(&p, 3, a.as_fd(), b"ok").unwrap();
        drop(a);
        let (got, n) = rx.receive(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"ok");
        b.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let mut one = [0u8; 1];
        assert!(
            b.read(&mut one).is_err(),
            "the passed socket must still be open"
        );
        drop(got);
        assert!(peer_closed(&mut b));
    }

    #[test]
    fn a_contact_that_connects_and_sends_nothing_is_an_error_not_a_hang() {
        let p = pool("silent");
        let rx = PassedSocketReceiver::bind(&p, 4).unwrap();
        let (sa, len) = address(&p, 4).unwrap();
        let sock = seqpacket_socket().unwrap();
        // SAFETY: connecting a fresh socket.
        unsafe {
            assert_eq!(
                libc::connect(
                    sock.as_raw_fd(),
                    (&sa as *const libc::sockaddr_un).cast(),
                    len
                ),
                0
            );
        }
        drop(sock);
        let mut buf = [0u8; 8];
        let e = rx.receive(&mut buf).unwrap_err();
        assert!(e.to_string().contains("passed nothing"), "{e}");
    }
}
