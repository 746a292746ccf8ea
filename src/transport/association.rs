//! The PE/PU side: one blocking connection to a registrar (or a PU's to a PE) with timeouts.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use super::framing::Deframer;
use super::{sctp, Protocol, MAX_MESSAGE_SIZE};

/// A PE's or PU's connection to a registrar (or a PU's to a PE): one association, blocking
/// calls with timeouts.
pub struct Association {
    protocol: Protocol,
    inner: AssocInner,
    /// PPID implied for messages received over TCP.
    tcp_ppid: u32,
}

enum AssocInner {
    Sctp(OwnedFd, Box<[u8]>),
    Tcp(TcpStream, Deframer),
}

/// Waits until `fd` is ready for `events` (`None` = forever, EINTR retried); `Ok(false)` on
/// timeout.
pub fn poll_fd(fd: RawFd, events: libc::c_short, timeout: Option<Duration>) -> io::Result<bool> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let ms = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                left.as_millis().min(i32::MAX as u128) as i32
            }
        };
        let mut p = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut p, 1, ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(rc > 0);
    }
}

impl Association {
    /// Connects to a peer reachable at `addrs` (all addresses of one, possibly multihomed,
    /// endpoint; TCP tries them in order) within `timeout`. `tcp_ppid` is the protocol implied
    /// on a TCP connection (the port's protocol: ASAP towards 3863, ENRP towards 9901).
    pub fn connect(
        protocol: Protocol,
        addrs: &[SocketAddr],
        timeout: Duration,
        tcp_ppid: u32,
    ) -> io::Result<Association> {
        let first = *addrs
            .first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address"))?;
        let inner = match protocol {
            Protocol::Tcp => {
                let mut last = io::Error::from(io::ErrorKind::AddrNotAvailable);
                let mut stream = None;
                for a in addrs {
                    match TcpStream::connect_timeout(a, timeout) {
                        Ok(s) => {
                            stream = Some(s);
                            break;
                        }
                        Err(e) => last = e,
                    }
                }
                let s = stream.ok_or(last)?;
                s.set_nodelay(true)?;
                AssocInner::Tcp(s, Deframer::new())
            }
            Protocol::Sctp => {
                let family = if first.is_ipv6() {
                    libc::AF_INET6
                } else {
                    libc::AF_INET
                };
                let fd = sctp::socket(family, libc::SOCK_STREAM)?;
                sctp::configure(&fd)?;
                let sa = socket2::SockAddr::from(first);
                // SAFETY: sa is a valid socket address.
                let rc = unsafe { libc::connect(fd.as_raw_fd(), sa.as_ptr().cast(), sa.len()) };
                if rc < 0 {
                    let e = io::Error::last_os_error();
                    if e.raw_os_error() != Some(libc::EINPROGRESS) {
                        return Err(e);
                    }
                    if !poll_fd(fd.as_raw_fd(), libc::POLLOUT, Some(timeout))? {
                        return Err(io::ErrorKind::TimedOut.into());
                    }
                    let mut err: libc::c_int = 0;
                    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
                    // SAFETY: reads SO_ERROR into an int.
                    unsafe {
                        libc::getsockopt(
                            fd.as_raw_fd(),
                            libc::SOL_SOCKET,
                            libc::SO_ERROR,
                            (&mut err as *mut libc::c_int).cast(),
                            &mut len,
                        );
                    }
                    if err != 0 {
                        return Err(io::Error::from_raw_os_error(err));
                    }
                }
                AssocInner::Sctp(fd, vec![0u8; MAX_MESSAGE_SIZE + 1024].into_boxed_slice())
            }
        };
        Ok(Association {
            protocol,
            inner,
            tcp_ppid,
        })
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The local address of the connection (SCTP: the primary one).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        let addr = match &self.inner {
            AssocInner::Sctp(fd, _) => socket2::SockRef::from(fd).local_addr()?,
            AssocInner::Tcp(s, _) => return s.local_addr(),
        };
        addr.as_socket()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP address"))
    }

    /// The descriptor, for the caller's own poll/select.
    pub fn raw_fd(&self) -> RawFd {
        match &self.inner {
            AssocInner::Sctp(fd, _) => fd.as_raw_fd(),
            AssocInner::Tcp(s, _) => s.as_raw_fd(),
        }
    }

    /// Sends one message (over TCP `ppid` is implied by the connection and not sent).
    pub fn send(&mut self, ppid: u32, data: &[u8]) -> io::Result<()> {
        match &mut self.inner {
            // send(MSG_NOSIGNAL): a library inside a C program must never raise SIGPIPE.
            AssocInner::Tcp(s, _) => {
                let mut rest = data;
                while !rest.is_empty() {
                    // SAFETY: sending from a valid buffer on our own socket.
                    let n = unsafe {
                        libc::send(
                            s.as_raw_fd(),
                            rest.as_ptr().cast(),
                            rest.len(),
                            libc::MSG_NOSIGNAL,
                        )
                    };
                    if n < 0 {
                        let e = io::Error::last_os_error();
                        match e.kind() {
                            io::ErrorKind::Interrupted => continue,
                            io::ErrorKind::WouldBlock => {
                                poll_fd(s.as_raw_fd(), libc::POLLOUT, None)?;
                                continue;
                            }
                            _ => return Err(e),
                        }
                    }
                    rest = &rest[n as usize..];
                }
                Ok(())
            }
            AssocInner::Sctp(fd, _) => loop {
                match sctp::send(fd.as_raw_fd(), 0, ppid, 0, 0, data) {
                    Ok(_) => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        poll_fd(fd.as_raw_fd(), libc::POLLOUT, None)?;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            },
        }
    }

    /// Receives one message: `Ok(None)` on timeout, `UnexpectedEof` when the peer closed.
    pub fn recv(&mut self, timeout: Option<Duration>) -> io::Result<Option<(u32, Vec<u8>)>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let left = |d: Option<Instant>| d.map(|d| d.saturating_duration_since(Instant::now()));
        match &mut self.inner {
            AssocInner::Tcp(s, deframer) => loop {
                if let Some(m) = deframer
                    .next_message()
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
                {
                    return Ok(Some((self.tcp_ppid, m)));
                }
                if !poll_fd(s.as_raw_fd(), libc::POLLIN, left(deadline))? {
                    return Ok(None);
                }
                let mut buf = [0u8; 16 * 1024];
                match s.read(&mut buf) {
                    Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(n) => deframer.push(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            },
            AssocInner::Sctp(fd, buf) => loop {
                if !poll_fd(fd.as_raw_fd(), libc::POLLIN, left(deadline))? {
                    return Ok(None);
                }
                match sctp::recv(fd.as_raw_fd(), buf) {
                    Ok(sctp::Received::Data { ppid, len, .. }) => {
                        if len == 0 {
                            return Err(io::ErrorKind::UnexpectedEof.into());
                        }
                        return Ok(Some((ppid, buf[..len].to_vec())));
                    }
                    Ok(sctp::Received::AssocChange { state, .. })
                        if state != sctp::SCTP_COMM_UP =>
                    {
                        return Err(io::ErrorKind::UnexpectedEof.into())
                    }
                    Ok(sctp::Received::Shutdown { .. }) => {
                        return Err(io::ErrorKind::UnexpectedEof.into())
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            },
        }
    }
}
