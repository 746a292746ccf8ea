//! The contact's end: passing a client's socket to a PE, or to one its pool's policy chooses.

use super::*;

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
