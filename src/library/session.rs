//! Enhanced Mode: pool elements with their own listening socket kept registered in the
//! background, and PU–PE sessions with cookies and failover.
//!
//! The session wire: over SCTP, application data and ASAP control messages (Cookie, Cookie
//! Echo) share the association and are told apart by PPID (11 = ASAP). Over TCP, a PE that
//! registered with the control-channel flag speaks our framing ([`framing`], see
//! docs/session-tcp-framing.md); a PE without it gets a plain byte stream (no cookies).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::Library;
use crate::core::types::{
    PeId, PolicyInfo, PoolHandle, TransportAddress, TransportProtocol,
    TRANSPORT_USE_DATA_PLUS_CONTROL,
};
use crate::core::wire::{self, AsapBody, AsapMessage};
use crate::logging;
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
enum Wire {
    /// SCTP one-to-one association: PPID per message.
    Sctp,
    /// TCP with our framing (control channel available).
    Framed,
    /// Plain TCP byte stream (no control channel).
    Raw,
}

struct Conn {
    fd: OwnedFd,
    wire: Wire,
    /// Framed TCP: bytes of the current incoming frame not yet delivered.
    frame_left: usize,
    frame_ppid: u32,
    frame_stream: u16,
    connected_at: Instant,
}

impl Conn {
    fn new(fd: OwnedFd, wire: Wire) -> Conn {
        Conn {
            fd,
            wire,
            frame_left: 0,
            frame_ppid: 0,
            frame_stream: 0,
            connected_at: Instant::now(),
        }
    }
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on our own descriptor.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
}

/// Waits until `fd` is ready for `events`; `None` = forever. True if ready.
fn wait(fd: RawFd, events: libc::c_short, timeout: Option<Duration>) -> bool {
    poll_fd(fd, events, timeout).unwrap_or(false)
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// send(2) of all bytes with MSG_NOSIGNAL, waiting up to `timeout` for buffer space.
fn send_all(fd: RawFd, mut data: &[u8], flags: i32, timeout: Option<Duration>) -> io::Result<()> {
    while !data.is_empty() {
        // SAFETY: sending from a valid buffer on our descriptor.
        let n = unsafe {
            libc::send(
                fd,
                data.as_ptr().cast(),
                data.len(),
                flags | libc::MSG_NOSIGNAL,
            )
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
        data = &data[n as usize..];
    }
    Ok(())
}

/// recv(2) of exactly `buf.len()` bytes (stream sockets); `Ok(false)` on EOF.
fn recv_exact(fd: RawFd, buf: &mut [u8], timeout: Option<Duration>) -> io::Result<bool> {
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

/// What `Session::read` produced.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// `len` bytes of user data.
    Data {
        len: usize,
        ppid: u32,
        stream: u16,
    },
    /// `len` bytes of a cookie echo (PE side, after a PU's failover).
    CookieEcho {
        len: usize,
    },
    /// Only an ASAP control message was consumed.
    ControlRead,
    /// The next message is user data but no buffer was given (a probe).
    WrongPpid,
    Timeout,
    ReadError,
    /// The connection failed; failover was run.
    Failover,
    TooBig,
}

/// What `Session::write` produced.
#[derive(Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    Sent(usize),
    /// Send buffer full until the timeout.
    WouldBlock,
    /// The send failed; failover was run; the data was not delivered.
    Failover,
}

/// The failover callback: returns a C bool (one byte; non-zero = go on).
pub type FailoverCallback = unsafe extern "C" fn(*mut libc::c_void) -> u8;

/// Options of an outgoing session.
#[derive(Clone, Copy)]
pub struct SessionOptions {
    pub connect_timeout: Duration,
    pub retry_delay: Duration,
    pub callback: Option<(FailoverCallback, *mut libc::c_void)>,
}

/// One PU–PE session.
pub struct Session {
    lib: Arc<Library>,
    /// Outgoing sessions only (incoming ones cannot fail over).
    pool: Option<PoolHandle>,
    opts: SessionOptions,
    conn: Option<Conn>,
    pe_id: u32,
    cookie: Option<Vec<u8>>,
    cookie_echo: Option<Vec<u8>>,
    status_text: String,
    /// The PE this (incoming) session belongs to.
    owner: Option<Arc<PeShared>>,
}

impl Session {
    /// An outgoing session to `pool`: resolves and connects at once (the session is returned
    /// unconnected if no PE could be reached; the next read/write retries).
    pub fn connect(lib: Arc<Library>, pool: PoolHandle, opts: SessionOptions) -> Session {
        let mut s = Session {
            lib,
            pool: Some(pool),
            opts,
            conn: None,
            pe_id: 0,
            cookie: None,
            cookie_echo: None,
            status_text: String::new(),
            owner: None,
        };
        s.connect_new_pe();
        s
    }

    pub fn fd(&self) -> Option<RawFd> {
        self.conn.as_ref().map(|c| c.fd.as_raw_fd())
    }

    pub fn pe_id(&self) -> u32 {
        self.pe_id
    }

    pub fn has_cookie(&self) -> bool {
        self.cookie.is_some()
    }

    /// A cookie echo is waiting to be read (PE side).
    pub fn has_pending_echo(&self) -> bool {
        self.cookie_echo.is_some()
    }

    pub fn set_status_text(&mut self, text: &str) {
        self.status_text = text.chars().take(127).collect();
    }

    pub fn status_text(&self) -> &str {
        &self.status_text
    }

    /// Connection time of a connected outgoing session.
    pub fn connected_since(&self) -> Option<Instant> {
        self.conn.as_ref().map(|c| c.connected_at)
    }

    fn control_channel(&self) -> bool {
        matches!(
            self.conn.as_ref().map(|c| &c.wire),
            Some(Wire::Sctp) | Some(Wire::Framed)
        )
    }

    /// Resolves the pool and connects to a PE (trying a few, reporting the unreachable ones);
    /// sends the stored cookie as Cookie Echo. True if connected.
    fn connect_new_pe(&mut self) -> bool {
        let Some(pool) = self.pool.clone() else {
            return false;
        };
        for _ in 0..3 {
            let pe = match self.lib.resolve(&pool) {
                Ok(Some(pe)) => pe,
                _ => {
                    std::thread::sleep(self.opts.retry_delay);
                    return false;
                }
            };
            match connect_pe(&pe.user_transport, self.opts.connect_timeout) {
                Ok(conn) => {
                    self.conn = Some(conn);
                    self.pe_id = pe.id.0;
                    if let Some(cookie) = self.cookie.clone() {
                        let msg = AsapMessage::new(AsapBody::CookieEcho {
                            cookie: cookie.into(),
                        });
                        if let Ok(b) = msg.to_bytes() {
                            let _ = self.send_message(&b, PPID_ASAP, 0, None);
                        }
                    }
                    return true;
                }
                Err(e) => {
                    logging::log(
                        logging::VERBOSE,
                        &format!("rsplib: PE {} unreachable: {e}", pe.id),
                    );
                    let _ = self.lib.report_failure(pool.clone(), pe.id);
                }
            }
        }
        false
    }

    /// Failover: close, report the old PE, ask the callback, connect a new PE, echo the cookie.
    pub fn failover(&mut self) -> bool {
        if self.conn.take().is_some() {
            if let Some(pool) = self.pool.clone() {
                let _ = self.lib.report_failure(pool, PeId(self.pe_id));
            }
        }
        if self.pool.is_none() {
            return false;
        }
        if let Some((cb, data)) = self.opts.callback {
            // SAFETY: the application registered this callback with its user data.
            if unsafe { cb(data) } == 0 {
                return false;
            }
        }
        self.connect_new_pe()
    }

    fn send_message(
        &mut self,
        data: &[u8],
        ppid: u32,
        stream: u16,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        let conn = self
            .conn
            .as_ref()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))?;
        let fd = conn.fd.as_raw_fd();
        match conn.wire {
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
                let mut msg = framing::header(stream, ppid, data.len()).to_vec();
                msg.extend_from_slice(data);
                send_all(fd, &msg, 0, timeout)
            }
            Wire::Raw => send_all(fd, data, 0, timeout),
        }
    }

    /// Sends one user message.
    pub fn write(
        &mut self,
        data: &[u8],
        ppid: u32,
        stream: u16,
        timeout: Option<Duration>,
    ) -> WriteOutcome {
        match self.send_message(data, ppid, stream, timeout) {
            Ok(()) => WriteOutcome::Sent(data.len()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => WriteOutcome::WouldBlock,
            Err(_) => {
                self.failover();
                WriteOutcome::Failover
            }
        }
    }

    /// PE side: sends an ASAP Cookie on the control channel.
    pub fn send_cookie(&mut self, cookie: &[u8], timeout: Option<Duration>) -> bool {
        if !self.control_channel() || cookie.len() > 65000 {
            return false;
        }
        let msg = AsapMessage::new(AsapBody::Cookie {
            cookie: cookie.into(),
        });
        match msg.to_bytes() {
            Ok(b) => self.send_message(&b, PPID_ASAP, 0, timeout).is_ok(),
            Err(_) => false,
        }
    }

    fn lost(&mut self, make_failover: bool) -> ReadOutcome {
        if make_failover {
            self.failover();
            ReadOutcome::Failover
        } else {
            self.conn = None;
            ReadOutcome::ReadError
        }
    }

    fn deliver_echo(&mut self, buf: &mut [u8]) -> ReadOutcome {
        let echo = self.cookie_echo.take().unwrap_or_default();
        let n = echo.len().min(buf.len());
        buf[..n].copy_from_slice(&echo[..n]);
        ReadOutcome::CookieEcho { len: n }
    }

    /// Handles one ASAP control message from the peer.
    fn control(&mut self, bytes: &[u8]) {
        match AsapMessage::decode(bytes).map(|d| d.message.body) {
            Ok(AsapBody::Cookie { cookie }) => self.cookie = Some(cookie.into()),
            // Only one cookie echo is kept until it is read.
            Ok(AsapBody::CookieEcho { cookie }) if self.cookie_echo.is_none() => {
                self.cookie_echo = Some(cookie.into());
            }
            _ => {}
        }
    }

    /// Reads the next user message into `buf` (`None` = a probe that only consumes control
    /// messages), waiting up to `timeout` (`None` = forever).
    pub fn read(
        &mut self,
        buf: Option<&mut [u8]>,
        timeout: Option<Duration>,
        make_failover: bool,
    ) -> ReadOutcome {
        let mut buf = buf.filter(|b| !b.is_empty());
        if self.cookie_echo.is_some() {
            if let Some(b) = buf.as_deref_mut() {
                return self.deliver_echo(b);
            }
            return ReadOutcome::CookieEcho { len: 0 };
        }
        let Some(conn) = self.conn.as_mut() else {
            return self.lost(make_failover);
        };
        let fd = conn.fd.as_raw_fd();
        if matches!(conn.wire, Wire::Sctp) {
            // Notifications (COMM_UP …) are consumed on the way; keep waiting for a message.
            let deadline = timeout.map(|t| Instant::now() + t);
            loop {
                let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                if !wait(fd, libc::POLLIN, left) {
                    return ReadOutcome::Timeout;
                }
                if let Some(outcome) = self.read_sctp(fd, buf.as_deref_mut(), make_failover) {
                    return outcome;
                }
            }
        }
        if !wait(fd, libc::POLLIN, timeout) {
            return ReadOutcome::Timeout;
        }
        match conn.wire {
            Wire::Raw => {
                let Some(b) = buf else {
                    return ReadOutcome::WrongPpid;
                };
                // SAFETY: receiving into the caller's buffer.
                let n = unsafe { libc::recv(fd, b.as_mut_ptr().cast(), b.len(), 0) };
                match n {
                    0 => self.lost(make_failover),
                    n if n < 0 && errno() == libc::EAGAIN => ReadOutcome::Timeout,
                    n if n < 0 => self.lost(make_failover),
                    n => ReadOutcome::Data {
                        len: n as usize,
                        ppid: 0,
                        stream: 0,
                    },
                }
            }
            Wire::Framed => self.read_framed(fd, buf, timeout, make_failover),
            Wire::Sctp => unreachable!("handled above"),
        }
    }

    fn read_framed(
        &mut self,
        fd: RawFd,
        buf: Option<&mut [u8]>,
        timeout: Option<Duration>,
        make_failover: bool,
    ) -> ReadOutcome {
        let conn = self.conn.as_mut().expect("connected");
        if conn.frame_left == 0 {
            let mut h = [0u8; framing::HEADER];
            match recv_exact(fd, &mut h, timeout.or(Some(Duration::from_secs(5)))) {
                Ok(true) => {}
                Ok(false) => return self.lost(make_failover),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadOutcome::Timeout,
                Err(_) => return self.lost(make_failover),
            }
            let Some((stream, ppid, len)) = framing::parse(&h) else {
                return self.lost(make_failover);
            };
            if ppid == PPID_ASAP {
                if len > 65536 {
                    return ReadOutcome::TooBig;
                }
                let mut msg = vec![0u8; len];
                match recv_exact(fd, &mut msg, Some(Duration::from_secs(5))) {
                    Ok(true) => {}
                    _ => return self.lost(make_failover),
                }
                self.control(&msg);
                return match buf {
                    Some(b) if self.cookie_echo.is_some() => self.deliver_echo(b),
                    _ => ReadOutcome::ControlRead,
                };
            }
            conn.frame_left = len;
            conn.frame_ppid = ppid;
            conn.frame_stream = stream;
            if len == 0 {
                return ReadOutcome::Data {
                    len: 0,
                    ppid,
                    stream,
                };
            }
        }
        let Some(b) = buf else {
            return ReadOutcome::WrongPpid;
        };
        let want = conn.frame_left.min(b.len());
        // SAFETY: receiving into the caller's buffer.
        let n = unsafe { libc::recv(fd, b.as_mut_ptr().cast(), want, 0) };
        match n {
            0 => self.lost(make_failover),
            n if n < 0 && errno() == libc::EAGAIN => ReadOutcome::Timeout,
            n if n < 0 => self.lost(make_failover),
            n => {
                conn.frame_left -= n as usize;
                ReadOutcome::Data {
                    len: n as usize,
                    ppid: conn.frame_ppid,
                    stream: conn.frame_stream,
                }
            }
        }
    }

    /// One message from an SCTP session; `None` if only a notification was consumed.
    fn read_sctp(
        &mut self,
        fd: RawFd,
        buf: Option<&mut [u8]>,
        make_failover: bool,
    ) -> Option<ReadOutcome> {
        // Peek at the next message to learn its PPID.
        let mut peek = [0u8; 64];
        let ppid = match sctp::recv_flags(fd, &mut peek, libc::MSG_PEEK) {
            Ok(sctp::Received::Data { ppid, len, .. }) => {
                if len == 0 {
                    return Some(self.lost(make_failover));
                }
                ppid
            }
            Ok(sctp::Received::AssocChange { state, .. })
                if state == sctp::SCTP_COMM_UP || state == sctp::SCTP_RESTART =>
            {
                let mut scratch = [0u8; 512];
                let _ = sctp::recv(fd, &mut scratch);
                return None;
            }
            Ok(sctp::Received::OtherNotification) => {
                let mut scratch = [0u8; 512];
                let _ = sctp::recv(fd, &mut scratch);
                return None;
            }
            Ok(_) => return Some(self.lost(make_failover)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Some(ReadOutcome::Timeout),
            Err(_) => return Some(self.lost(make_failover)),
        };
        if ppid == PPID_ASAP {
            let mut msg = vec![0u8; 65536 + 16];
            match sctp::recv(fd, &mut msg) {
                Ok(sctp::Received::Data { len, complete, .. }) => {
                    if !complete {
                        return Some(ReadOutcome::TooBig);
                    }
                    self.control(&msg[..len]);
                }
                _ => return Some(self.lost(make_failover)),
            }
            return Some(match buf {
                Some(b) if self.cookie_echo.is_some() => self.deliver_echo(b),
                _ => ReadOutcome::ControlRead,
            });
        }
        let Some(b) = buf else {
            return Some(ReadOutcome::WrongPpid);
        };
        Some(match sctp::recv(fd, b) {
            Ok(sctp::Received::Data {
                len, ppid, stream, ..
            }) => ReadOutcome::Data { len, ppid, stream },
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => ReadOutcome::Timeout,
            _ => self.lost(make_failover),
        })
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(owner) = &self.owner {
            owner.sessions.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Connects to a PE's user transport (each address in turn) within `timeout`.
fn connect_pe(t: &TransportAddress, timeout: Duration) -> io::Result<Conn> {
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
            let one: libc::c_int = 1;
            // SAFETY: setsockopt with an int.
            unsafe {
                libc::setsockopt(
                    raw,
                    libc::IPPROTO_TCP,
                    libc::TCP_NODELAY,
                    (&one as *const libc::c_int).cast(),
                    4,
                );
            }
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

// ------------------------------------------------------------------------- pool elements

/// Options of an Enhanced Mode PE (`rspCreatePoolElement`'s tags).
#[derive(Clone, Debug)]
pub struct PeOptions {
    pub identifier: u32,
    pub domain: i32,
    pub socket_type: i32,
    pub protocol: TransportProtocol,
    pub local_port: u16,
    pub reregistration_interval: Duration,
    pub registration_life_ms: u32,
    pub policy: PolicyInfo,
    pub control_channel: bool,
}

struct PeShared {
    sessions: AtomicUsize,
    stop: Mutex<bool>,
    wake: Condvar,
}

/// An Enhanced Mode pool element: its listening socket, kept registered by a thread.
pub struct EnhancedPe {
    lib: Arc<Library>,
    pool: PoolHandle,
    listener: OwnedFd,
    opts: PeOptions,
    id: Arc<Mutex<u32>>,
    shared: Arc<PeShared>,
    thread: Option<JoinHandle<()>>,
}

impl EnhancedPe {
    /// Creates the socket, registers it (a failed first registration is retried by the
    /// re-registration thread), starts the re-registration thread.
    pub fn create(lib: Arc<Library>, pool: PoolHandle, opts: PeOptions) -> io::Result<EnhancedPe> {
        let proto = match opts.protocol {
            TransportProtocol::Sctp => sctp::IPPROTO_SCTP,
            TransportProtocol::Tcp => libc::IPPROTO_TCP,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "only SCTP and TCP pool elements",
                ))
            }
        };
        // SAFETY: a fresh socket we own from here on.
        let raw =
            unsafe { libc::socket(opts.domain, opts.socket_type | libc::SOCK_CLOEXEC, proto) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: raw is a fresh descriptor.
        let listener = unsafe { OwnedFd::from_raw_fd(raw) };
        let sock = socket2::SockRef::from(&listener);
        let _ = sock.set_reuse_address(true);
        if opts.protocol == TransportProtocol::Sctp {
            sctp::configure(&listener)?;
        }
        let any: IpAddr = if opts.domain == libc::AF_INET6 {
            let _ = sock.set_only_v6(false);
            Ipv6Addr::UNSPECIFIED.into()
        } else {
            Ipv4Addr::UNSPECIFIED.into()
        };
        sock.bind(&SocketAddr::new(any, opts.local_port).into())?;
        sock.listen(16)?;
        let id = Arc::new(Mutex::new(opts.identifier));
        let shared = Arc::new(PeShared {
            sessions: AtomicUsize::new(0),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        let mut pe = EnhancedPe {
            lib,
            pool,
            listener,
            opts,
            id,
            shared,
            thread: None,
        };
        pe.register_once();
        let (lib, pool, fd, opts, id, shared) = (
            pe.lib.clone(),
            pe.pool.clone(),
            pe.listener.as_raw_fd(),
            pe.opts.clone(),
            pe.id.clone(),
            pe.shared.clone(),
        );
        pe.thread = Some(std::thread::Builder::new().name("rsplib-pe".into()).spawn(
            move || loop {
                {
                    let mut stop = shared.stop.lock();
                    if !*stop {
                        shared
                            .wake
                            .wait_for(&mut stop, opts.reregistration_interval);
                    }
                    if *stop {
                        return;
                    }
                }
                register(&lib, &pool, fd, &opts, &id);
            },
        )?);
        Ok(pe)
    }

    fn register_once(&self) {
        register(
            &self.lib,
            &self.pool,
            self.listener.as_raw_fd(),
            &self.opts,
            &self.id,
        );
    }

    pub fn listener_fd(&self) -> RawFd {
        self.listener.as_raw_fd()
    }

    /// The pool this PE is registered in.
    pub fn pool(&self) -> &PoolHandle {
        &self.pool
    }

    /// The library instance this PE registers through.
    pub fn library(&self) -> &Arc<Library> {
        &self.lib
    }

    pub fn identifier(&self) -> u32 {
        *self.id.lock()
    }

    /// Sessions accepted and not yet deleted.
    pub fn sessions(&self) -> usize {
        self.shared.sessions.load(Ordering::Relaxed)
    }

    /// Accepts the next session (blocks if none is pending).
    pub fn accept(&self) -> io::Result<Session> {
        // SAFETY: accept on our listening socket.
        let raw = unsafe {
            libc::accept4(
                self.listener.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: raw is a fresh descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let wire = match (self.opts.protocol, self.opts.control_channel) {
            (TransportProtocol::Sctp, _) => {
                let _ = sctp::configure(&fd);
                Wire::Sctp
            }
            (_, true) => Wire::Framed,
            _ => Wire::Raw,
        };
        set_nonblocking(fd.as_raw_fd());
        self.shared.sessions.fetch_add(1, Ordering::Relaxed);
        Ok(Session {
            lib: self.lib.clone(),
            pool: None,
            opts: SessionOptions {
                connect_timeout: Duration::from_secs(5),
                retry_delay: Duration::from_millis(250),
                callback: None,
            },
            conn: Some(Conn::new(fd, wire)),
            pe_id: 0,
            cookie: None,
            cookie_echo: None,
            status_text: String::new(),
            owner: Some(self.shared.clone()),
        })
    }

    /// Stops re-registering and deregisters.
    pub fn delete(mut self) {
        *self.shared.stop.lock() = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let id = self.identifier();
        if id != 0 {
            if let Err(e) = self.lib.deregister(self.pool.clone(), PeId(id)) {
                logging::log(
                    logging::WARNING,
                    &format!("rsplib: deregistration of PE 0x{id:08x} failed: {e}"),
                );
            }
        }
    }
}

/// One (re-)registration of an Enhanced Mode PE with the addresses of its socket.
fn register(lib: &Library, pool: &PoolHandle, fd: RawFd, opts: &PeOptions, id: &Mutex<u32>) {
    let local = match opts.protocol {
        TransportProtocol::Sctp => sctp::local_addrs(&fd).unwrap_or_default(),
        _ => Vec::new(),
    };
    // SAFETY: a borrowed view of our own socket, alive for this call.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let sock = socket2::SockRef::from(&borrowed);
    let bound = sock.local_addr().ok().and_then(|a| a.as_socket());
    let port = bound.map(|a| a.port()).unwrap_or(0);
    let mut addrs: Vec<IpAddr> = local
        .iter()
        .map(|a| a.ip())
        .filter(|ip| !ip.is_unspecified())
        .collect();
    if addrs.is_empty() {
        // The wildcard: the library puts in the address the registrar sees us from.
        addrs.push(Ipv4Addr::UNSPECIFIED.into());
    }
    let mut t = TransportAddress::new(opts.protocol, port, addrs);
    if opts.control_channel {
        t.transport_use = TRANSPORT_USE_DATA_PLUS_CONTROL;
    }
    let mut current = *id.lock();
    let chosen = current == 0;
    if chosen {
        current = super::random_pe_id();
    }
    let mut element = wire::PoolElement::new(PeId(current), t, opts.policy);
    element.registration_life = opts.registration_life_ms;
    match lib.register(pool.clone(), element) {
        Ok(_) => *id.lock() = current,
        Err(e) => logging::log(
            logging::WARNING,
            &format!("rsplib: registration of PE 0x{current:08x} in pool \"{pool}\" failed: {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::framing;

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
