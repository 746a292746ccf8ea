//! A session's connection: the socket, how it carries messages (SCTP PPIDs, our TCP framing,
//! or a plain byte stream), and the blocking-with-timeout helpers the session uses.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::core::types::{TransportAddress, TransportProtocol, TRANSPORT_USE_DATA_PLUS_CONTROL};
use crate::transport::{poll_fd, sctp, PPID_ASAP};

/// The TCP session framing (version 1): every message is preceded by a 12-byte header
/// `u8 version (1) | u8 flags (0) | u16 stream | u32 PPID | u32 payload length` (network order).
pub mod framing {
    pub const VERSION: u8 = 1;
    pub const HEADER: usize = 12;
    /// Largest payload accepted from a peer.
    pub const MAX_PAYLOAD: usize = 16 << 20;

    pub fn header(stream: u16, ppid: u32, len: usize) -> [u8; HEADER] {
        let mut h = [0u8; HEADER];
        h[0] = VERSION;
        h[2..4].copy_from_slice(&stream.to_be_bytes());
        h[4..8].copy_from_slice(&ppid.to_be_bytes());
        h[8..12].copy_from_slice(&(len as u32).to_be_bytes());
        h
    }

    /// (stream, PPID, payload length) of a header, or `None` if it is not version 1.
    pub fn parse(h: &[u8; HEADER]) -> Option<(u16, u32, usize)> {
        if h[0] != VERSION {
            return None;
        }
        let len = u32::from_be_bytes([h[8], h[9], h[10], h[11]]) as usize;
        (len <= MAX_PAYLOAD).then(|| {
            (
                u16::from_be_bytes([h[2], h[3]]),
                u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
                len,
            )
        })
    }
}

/// How a session's connection carries messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Wire {
    /// SCTP one-to-one association: PPID per message.
    Sctp,
    /// TCP with our framing (control channel available).
    Framed,
    /// Plain TCP byte stream (no control channel).
    Raw,
}

/// The socket of a connection. Shared with a draining PE's thread, which may send a handoff
/// request on it: whole messages go out under `send_lock`, one sender at a time, and the
/// descriptor lives as long as any holder.
pub(super) struct Link {
    pub fd: OwnedFd,
    pub wire: Wire,
    send_lock: Mutex<()>,
}

impl Link {
    pub fn new(fd: OwnedFd, wire: Wire) -> Arc<Link> {
        Arc::new(Link {
            fd,
            wire,
            send_lock: Mutex::new(()),
        })
    }

    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub fn control_channel(&self) -> bool {
        self.wire != Wire::Raw
    }

    /// Sends one message (user data, or with PPID 11 an ASAP-shaped control message).
    pub fn send(
        &self,
        data: &[u8],
        ppid: u32,
        stream: u16,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        let fd = self.raw();
        let _one_sender = self.send_lock.lock();
        match self.wire {
            Wire::Sctp => loop {
                match sctp::send(fd, 0, ppid, stream, 0, data) {
                    Ok(_) => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if !wait(fd, libc::POLLOUT, timeout) {
                            return Err(e);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            },
            Wire::Framed => {
                let header = framing::header(stream, ppid, data.len());
                send_all_vectored(fd, &header, data, timeout)
            }
            Wire::Raw => send_all(fd, data, timeout),
        }
    }

    /// Sends a control message (PPID 11) on a connection that has a control channel.
    pub fn send_control(&self, message: &[u8], timeout: Option<Duration>) -> io::Result<()> {
        if !self.control_channel() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "no control channel",
            ));
        }
        self.send(message, PPID_ASAP, 0, timeout)
    }

    /// Ends the connection in both directions (the holders still own the descriptor).
    pub fn shutdown(&self) {
        // SAFETY: shutdown(2) on our own descriptor.
        unsafe { libc::shutdown(self.raw(), libc::SHUT_RDWR) };
    }
}

/// A connection with the reader's state.
pub(super) struct Conn {
    pub link: Arc<Link>,
    /// Framed TCP: bytes of the current incoming frame not yet delivered.
    pub frame_left: usize,
    pub frame_ppid: u32,
    pub frame_stream: u16,
    /// Framed TCP: the next header, `header_len` bytes of it received so far.
    pub header: [u8; framing::HEADER],
    header_len: usize,
    pub connected_at: Instant,
}

impl Conn {
    pub fn new(fd: OwnedFd, wire: Wire) -> Conn {
        Conn::with_link(Link::new(fd, wire))
    }

    pub fn with_link(link: Arc<Link>) -> Conn {
        Conn {
            link,
            frame_left: 0,
            frame_ppid: 0,
            frame_stream: 0,
            header: [0; framing::HEADER],
            header_len: 0,
            connected_at: Instant::now(),
        }
    }

    /// Framed TCP: completes `header` within `timeout` (`None`: forever); `Ok(false)` on EOF,
    /// `WouldBlock` when the time ran out (what arrived is kept for the next call).
    pub fn read_header(&mut self, timeout: Option<Duration>) -> io::Result<bool> {
        let fd = self.raw();
        let deadline = timeout.map(|t| Instant::now() + t);
        while self.header_len < framing::HEADER {
            let rest = &mut self.header[self.header_len..];
            // SAFETY: receiving into the unfilled part of our header buffer.
            let n =
                unsafe { libc::recv(fd, rest.as_mut_ptr().cast(), rest.len(), libc::MSG_DONTWAIT) };
            match n {
                0 => return Ok(false),
                n if n > 0 => self.header_len += n as usize,
                _ => {
                    let e = io::Error::last_os_error();
                    match e.kind() {
                        io::ErrorKind::Interrupted => {}
                        io::ErrorKind::WouldBlock => {
                            let left =
                                deadline.map(|d| d.saturating_duration_since(Instant::now()));
                            if left.is_some_and(|l| l.is_zero()) || !wait(fd, libc::POLLIN, left) {
                                return Err(io::ErrorKind::WouldBlock.into());
                            }
                        }
                        _ => return Err(e),
                    }
                }
            }
        }
        self.header_len = 0;
        Ok(true)
    }

    pub fn raw(&self) -> RawFd {
        self.link.raw()
    }

    pub fn wire(&self) -> Wire {
        self.link.wire
    }
}

/// Waits until `fd` is ready for `events`; `None` = forever. True if ready.
pub(super) fn wait(fd: RawFd, events: libc::c_short, timeout: Option<Duration>) -> bool {
    poll_fd(fd, events, timeout).unwrap_or(false)
}

pub(super) fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// send(2) of all bytes with MSG_NOSIGNAL, waiting up to `timeout` for buffer space.
pub(super) fn send_all(fd: RawFd, data: &[u8], timeout: Option<Duration>) -> io::Result<()> {
    send_all_vectored(fd, &[], data, timeout)
}

/// sendmsg(2) of `head` then `data` (one system call when the buffer has room), waiting up to
/// `timeout` for buffer space.
fn send_all_vectored(
    fd: RawFd,
    mut head: &[u8],
    mut data: &[u8],
    timeout: Option<Duration>,
) -> io::Result<()> {
    while !head.is_empty() || !data.is_empty() {
        let mut iov = [
            libc::iovec {
                iov_base: head.as_ptr() as *mut libc::c_void,
                iov_len: head.len(),
            },
            libc::iovec {
                iov_base: data.as_ptr() as *mut libc::c_void,
                iov_len: data.len(),
            },
        ];
        let (iov_ptr, iov_len) = if head.is_empty() {
            (iov[1..].as_mut_ptr(), 1)
        } else {
            (iov.as_mut_ptr(), 2)
        };
        // SAFETY: a zeroed msghdr pointing at our live buffers.
        let n = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = iov_ptr;
            msg.msg_iovlen = iov_len;
            libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL)
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => {
                    if !wait(fd, libc::POLLOUT, timeout) {
                        return Err(io::ErrorKind::WouldBlock.into());
                    }
                    continue;
                }
                _ => return Err(e),
            }
        }
        let mut n = n as usize;
        let from_head = n.min(head.len());
        head = &head[from_head..];
        n -= from_head;
        data = &data[n..];
    }
    Ok(())
}

/// recv(2) of exactly `buf.len()` bytes (stream sockets); `Ok(false)` on EOF.
pub(super) fn recv_exact(fd: RawFd, buf: &mut [u8], timeout: Option<Duration>) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        if !wait(fd, libc::POLLIN, timeout) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        // SAFETY: receiving into the unfilled part of `buf`.
        let n = unsafe { libc::recv(fd, buf[got..].as_mut_ptr().cast(), buf.len() - got, 0) };
        match n {
            0 => return Ok(false),
            n if n < 0 => {
                let e = io::Error::last_os_error();
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                ) {
                    continue;
                }
                return Err(e);
            }
            n => got += n as usize,
        }
    }
    Ok(true)
}

/// Connects to a PE's user transport (each address in turn) within `timeout`.
pub(super) fn connect_pe(t: &TransportAddress, timeout: Duration) -> io::Result<Conn> {
    let (ty, proto) = match t.protocol {
        TransportProtocol::Sctp => (libc::SOCK_STREAM, sctp::IPPROTO_SCTP),
        TransportProtocol::Tcp => (libc::SOCK_STREAM, libc::IPPROTO_TCP),
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "only SCTP and TCP sessions",
            ))
        }
    };
    let mut last = io::Error::from(io::ErrorKind::AddrNotAvailable);
    for ip in &t.addresses {
        let addr = SocketAddr::new(*ip, t.port);
        let family = if addr.is_ipv6() {
            libc::AF_INET6
        } else {
            libc::AF_INET
        };
        // SAFETY: a fresh socket we own from here on.
        let raw =
            unsafe { libc::socket(family, ty | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, proto) };
        if raw < 0 {
            last = io::Error::last_os_error();
            continue;
        }
        // SAFETY: raw is a fresh descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        if t.protocol == TransportProtocol::Sctp {
            let _ = sctp::configure(&fd);
        } else {
            let _ = socket2::SockRef::from(&fd).set_tcp_nodelay(true);
        }
        let sa = socket2::SockAddr::from(addr);
        // SAFETY: sa is a valid socket address.
        let rc = unsafe { libc::connect(raw, sa.as_ptr().cast(), sa.len()) };
        if rc < 0 && errno() != libc::EINPROGRESS {
            last = io::Error::last_os_error();
            continue;
        }
        if rc < 0 {
            if !wait(raw, libc::POLLOUT, Some(timeout)) {
                last = io::ErrorKind::TimedOut.into();
                continue;
            }
            let err = socket2::SockRef::from(&fd).take_error()?;
            if let Some(e) = err {
                last = e;
                continue;
            }
        }
        let wire = match (
            t.protocol,
            t.transport_use == TRANSPORT_USE_DATA_PLUS_CONTROL,
        ) {
            (TransportProtocol::Sctp, _) => Wire::Sctp,
            (_, true) => Wire::Framed,
            _ => Wire::Raw,
        };
        return Ok(Conn::new(fd, wire));
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::{framing, Conn, Wire};
    use std::io::Write;
    use std::os::fd::OwnedFd;
    use std::time::Duration;

    #[test]
    fn a_header_in_parts_is_kept_across_reads() {
        let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut conn = Conn::new(OwnedFd::from(theirs), Wire::Framed);
        let h = framing::header(7, 11, 300);
        ours.write_all(&h[..5]).unwrap();
        let e = conn.read_header(Some(Duration::ZERO)).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
        ours.write_all(&h[5..]).unwrap();
        assert!(conn.read_header(Some(Duration::ZERO)).unwrap());
        assert_eq!(framing::parse(&conn.header), Some((7, 11, 300)));
        drop(ours);
        assert!(!conn.read_header(None).unwrap(), "EOF");
    }

    #[test]
    fn framing_header_round_trips_and_rejects_other_versions() {
        let h = framing::header(3, 0x5555_5555, 1234);
        assert_eq!(framing::parse(&h), Some((3, 0x5555_5555, 1234)));
        let mut bad = h;
        bad[0] = 2;
        assert_eq!(framing::parse(&bad), None);
        let huge = framing::header(0, 1, framing::MAX_PAYLOAD + 1);
        assert_eq!(framing::parse(&huge), None);
    }
}
