//! The worker's end: the bound abstract socket on which contacts pass clients.

use super::*;

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
