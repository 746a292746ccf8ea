//! `rsplib-handoff.h`, part 2: contact-node descriptor passing for plain clients
//! (docs/contact-node.md). The work is in [`crate::library::contact`]; this converts
//! arguments, keeps the C API's receivers per PE there, and maps errors to `errno`.
#![allow(non_snake_case)]

use std::io;
use std::os::fd::{BorrowedFd, IntoRawFd};
use std::time::Duration;

use libc::{c_int, c_uchar, c_uint};

use super::guard::{guard, set_errno, try_mut, try_ref, try_slice};
use super::rsplib::{instance, PoolElementDescriptor};
use super::rsplib_tags::TAG_RspIO_Timeout;
use super::tagitem::{tagListGetData, TagItem};
use crate::core::types::PoolHandle;
use crate::library::contact::{self, errno_of, MAX_ALREADY_READ};
use crate::logging;

/// The `errno` for an error of the contact module.
fn errno_for(e: &io::Error) -> c_int {
    errno_of(e).unwrap_or(match e.kind() {
        io::ErrorKind::InvalidInput => libc::EINVAL,
        io::ErrorKind::NotFound => libc::ENOENT,
        io::ErrorKind::WouldBlock => libc::EAGAIN,
        io::ErrorKind::TimedOut => libc::ETIMEDOUT,
        io::ErrorKind::PermissionDenied => libc::EACCES,
        io::ErrorKind::ConnectionRefused => libc::ECONNREFUSED,
        _ => libc::EIO,
    })
}

/// Worker PE: starts receiving passed sockets for this PE (binds its abstract socket, see
/// docs/contact-node.md). Returns the descriptor to poll for readability (owned by the
/// library; closed by `rspDeletePoolElement` or `rspCleanUp`), or -1 with errno: `EINVAL` for
/// NULL, `EAGAIN` while the PE has no identifier (not yet registered), `EADDRINUSE` when
/// another socket holds its name. A second call returns the same descriptor.
///
/// # Safety
/// `ped` must be NULL or a live descriptor from `rspCreatePoolElement`.
#[no_mangle]
pub unsafe extern "C" fn rspPoolElementAcceptPassedSockets(
    ped: *mut PoolElementDescriptor,
) -> c_int {
    guard("rspPoolElementAcceptPassedSockets", || {
        let Some(d) = try_ref(ped) else {
            set_errno(libc::EINVAL);
            return -1;
        };
        match contact::pe_receiver(&d.pe) {
            Ok(r) => r.fd(),
            Err(e) => {
                logging::log(
                    logging::WARNING,
                    &format!("rsplib: rspPoolElementAcceptPassedSockets: {e}"),
                );
                set_errno(errno_for(&e));
                -1
            }
        }
    })
}

/// Receives one passed client: returns its connected socket (close-on-exec, now the
/// caller's) and copies the bytes the contact had already read into `buffer` (`*size` in:
/// capacity, out: bytes). Starts receiving first if the PE does not yet. Blocks unless
/// `TAG_RspIO_Timeout` (µs) says otherwise. -1 with errno: `EINVAL` (NULL `ped` or `size`,
/// NULL `buffer` with a capacity), `EAGAIN` (timeout), `EMSGSIZE` (the bytes do not fit:
/// `*size` is set to their number and the next call with that much room returns this client),
/// `EPROTO` (a malformed pass, already closed), `EACCES` (a pass from another user's process).
///
/// # Safety
/// `ped` NULL or live; `size` NULL or writable; `buffer` writable for `*size` bytes; `tags`
/// NULL or a tag list.
#[no_mangle]
pub unsafe extern "C" fn rspPoolElementReceivePassedSocket(
    ped: *mut PoolElementDescriptor,
    buffer: *mut libc::c_void,
    size: *mut usize,
    tags: *mut TagItem,
) -> c_int {
    guard("rspPoolElementReceivePassedSocket", || {
        let (Some(d), Some(size)) = (try_ref(ped), try_mut(size)) else {
            set_errno(libc::EINVAL);
            return -1;
        };
        if buffer.is_null() && *size > 0 || *size > isize::MAX as usize {
            set_errno(libc::EINVAL);
            return -1;
        }
        let buf: &mut [u8] = if *size == 0 {
            &mut []
        } else {
            std::slice::from_raw_parts_mut(buffer.cast::<u8>(), *size)
        };
        let t = tagListGetData(tags, TAG_RspIO_Timeout, !0);
        let timeout = (t < 1 << 63).then(|| Duration::from_micros(t));
        let receiver = match contact::pe_receiver(&d.pe) {
            Ok(r) => r,
            Err(e) => {
                set_errno(errno_for(&e));
                return -1;
            }
        };
        match receiver.receive_timeout(buf, timeout) {
            Ok((fd, n)) => {
                *size = n;
                fd.into_raw_fd()
            }
            Err(e) => {
                let code = errno_for(&e);
                if code == libc::EMSGSIZE {
                    if let Some(n) = receiver.pending_len() {
                        *size = n;
                    }
                } else if code != libc::EAGAIN {
                    logging::log(
                        logging::WARNING,
                        &format!("rsplib: rspPoolElementReceivePassedSocket: {e}"),
                    );
                }
                set_errno(code);
                -1
            }
        }
    })
}

/// Contact: passes the connected plain client socket `fd` (and the `alreadyReadSize` bytes
/// already read from it, at most 65 536) to a PE of the pool on this host, chosen by the
/// pool's policy; PEs that do not receive passed sockets are skipped (see
/// docs/contact-node.md). On success the library has closed `fd` and the PE's identifier is
/// returned; on failure 0 with errno (`EINVAL`: bad arguments or no `rspInitialize`,
/// `EBADF`: `fd` < 0, `EMSGSIZE`: too many bytes, `ENOENT`: no PE in the pool,
/// `ECONNREFUSED`/`EAGAIN`: no PE tried received it, `ETIMEDOUT`: handle resolution failed),
/// and `fd` is still the caller's.
///
/// # Safety
/// `poolHandle` must point to `poolHandleSize` bytes, `alreadyRead` to `alreadyReadSize`
/// bytes (NULL with 0 is fine); `tags` NULL or a tag list.
#[no_mangle]
pub unsafe extern "C" fn rspPassSocketToPool(
    poolHandle: *const c_uchar,
    poolHandleSize: usize,
    fd: c_int,
    alreadyRead: *const libc::c_void,
    alreadyReadSize: usize,
    tags: *mut TagItem,
) -> c_uint {
    let _ = tags;
    // The body returns u64, whose panic fallback is 0 ("no PE"); c_uint's would be an RSPERR
    // code, which a caller would take for a PE identifier. errno says EIO until set.
    set_errno(libc::EIO);
    guard("rspPassSocketToPool", || -> u64 {
        let fail = |code: c_int| {
            set_errno(code);
            0
        };
        let Some(handle) = try_slice(poolHandle, poolHandleSize) else {
            return fail(libc::EINVAL);
        };
        let pool = PoolHandle::new(handle);
        if !pool.is_valid() {
            return fail(libc::EINVAL);
        }
        let Some(data) = try_slice(alreadyRead.cast::<u8>(), alreadyReadSize) else {
            return fail(libc::EINVAL);
        };
        if data.len() > MAX_ALREADY_READ {
            return fail(libc::EMSGSIZE);
        }
        if fd < 0 {
            return fail(libc::EBADF);
        }
        let Ok(lib) = instance() else {
            return fail(libc::EINVAL);
        };
        // SAFETY: the caller's open descriptor, borrowed for this call.
        let client = BorrowedFd::borrow_raw(fd);
        match contact::pass_socket_to_pool(&lib, &pool, client, data) {
            Ok(id) => {
                libc::close(fd);
                u64::from(id)
            }
            Err(e) => {
                logging::log(
                    logging::WARNING,
                    &format!("rsplib: rspPassSocketToPool: {e}"),
                );
                fail(errno_for(&e))
            }
        }
    }) as c_uint
}
