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

/// u64 words of control buffer for [`CMSG_FDS`] descriptors (aligned for `cmsghdr`).
const fn cmsg_words() -> usize {
    // CMSG_SPACE(n * 4) on Linux: a 16-byte header, the data rounded up to 8.
    (16 + (CMSG_FDS * size_of::<libc::c_int>()).div_ceil(8) * 8) / 8
}

fn deadline_left(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(Instant::now()))
}

mod pass;
mod receive;
#[cfg(test)]
mod tests;

pub use pass::{pass_socket, pass_socket_to_pool};
pub use receive::PassedSocketReceiver;

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
