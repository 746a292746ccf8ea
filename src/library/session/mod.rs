//! Enhanced Mode: pool elements with their own listening socket kept registered in the
//! background, and PU–PE sessions with cookies, failover and server-initiated handoff.
//!
//! The session wire: over SCTP, application data and ASAP control messages (Cookie, Cookie
//! Echo, our handoff messages) share the association and are told apart by PPID (11 = ASAP).
//! Over TCP, a PE that registered with the control-channel flag speaks our framing
//! ([`framing`], see docs/session-tcp-framing.md); a PE without it gets a plain byte stream
//! (no cookies, no handoff).
//!
//! Parts: `conn.rs` (the connection, framing, connecting), `pe.rs` (pool elements),
//! `handoff.rs` (docs/handoff.md).

mod conn;
mod handoff;
mod pe;

use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use self::conn::framing;
use self::conn::{connect_pe, errno, recv_exact, wait, Conn, Wire};
pub use self::handoff::{
    offer, DrainReport, HandoffCallback, HandoffError, HandoffOptions, HandoffState, HandoffTarget,
    Offered, PuHandoff,
};
use self::handoff::{CommitPoint, Control, DonorSide, Follow, Queue};
use self::pe::PeShared;
pub use self::pe::{EnhancedPe, PeOptions};
use super::Library;
use crate::core::types::{PeId, PoolHandle};
use crate::core::wire::handoff::is_handoff_type;
use crate::core::wire::{AsapBody, AsapMessage};
use crate::logging;
use crate::transport::{sctp, PPID_ASAP};

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
    /// Donor: the session was handed off to another PE (docs/handoff.md); it is over here.
    HandedOff,
}

/// What `Session::write` produced.
#[derive(Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    Sent(usize),
    /// Send buffer full until the timeout.
    WouldBlock,
    /// The send failed; failover was run; the data was not delivered.
    Failover,
    /// Donor: the session was handed off before this write; the data was not sent (the
    /// receiver continues from the last cookie).
    HandedOff,
}

/// The largest cookie a PE may send (it must fit one ASAP message with its header).
pub const MAX_COOKIE: usize = 65_000;

/// The failover callback: returns a C bool (one byte; non-zero = go on).
pub type FailoverCallback = unsafe extern "C" fn(*mut libc::c_void) -> u8;

/// Options of an outgoing session.
#[derive(Clone, Copy)]
pub struct SessionOptions {
    pub connect_timeout: Duration,
    pub retry_delay: Duration,
    pub callback: Option<(FailoverCallback, *mut libc::c_void)>,
    /// What to do when the PE hands the session off.
    pub handoff: PuHandoff,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            connect_timeout: Duration::from_secs(5),
            retry_delay: Duration::from_millis(250),
            callback: None,
            handoff: PuHandoff::default(),
        }
    }
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
    /// Incoming sessions: the handoff state a drain shares.
    donor: Option<Arc<DonorSide>>,
    /// Incoming sessions: the last cookie the application sent (the state a handoff carries).
    sent_cookie: Option<Vec<u8>>,
    /// Incoming sessions: a handoff offer was answered on this connection.
    offer_answered: bool,
    /// Incoming sessions: when a handoff's commit may go out.
    commit_point: CommitPoint,
    /// Outgoing sessions: a handoff being followed.
    follow: Option<Follow>,
    /// Outgoing sessions: writes waiting for the next connection (during a handoff).
    queue: Queue,
    /// Outgoing sessions: handoffs followed.
    handoffs: u64,
    /// Outgoing sessions: failovers run (a failed handoff included).
    failovers: u64,
    /// Outgoing sessions: when the last handoff's request and commit were read.
    handoff_times: Option<(Instant, Instant)>,
}

impl Session {
    /// An outgoing session to `pool`: resolves and connects at once (the session is returned
    /// unconnected if no PE could be reached; the next read/write retries).
    pub fn connect(lib: Arc<Library>, pool: PoolHandle, opts: SessionOptions) -> Session {
        let mut s = Session::new(lib, Some(pool), opts, None);
        s.connect_new_pe();
        s
    }

    fn new(
        lib: Arc<Library>,
        pool: Option<PoolHandle>,
        opts: SessionOptions,
        conn: Option<Conn>,
    ) -> Session {
        Session {
            lib,
            pool,
            opts,
            conn,
            pe_id: 0,
            cookie: None,
            cookie_echo: None,
            status_text: String::new(),
            owner: None,
            donor: None,
            sent_cookie: None,
            offer_answered: false,
            commit_point: CommitPoint::default(),
            follow: None,
            queue: Queue::default(),
            handoffs: 0,
            failovers: 0,
            handoff_times: None,
        }
    }

    pub fn fd(&self) -> Option<RawFd> {
        self.conn.as_ref().map(|c| c.raw())
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

    /// Outgoing sessions: failovers run so far (a handoff whose receiver could not be reached
    /// counts here).
    pub fn failovers(&self) -> u64 {
        self.failovers
    }

    /// Outgoing sessions: when the last followed handoff's request and commit were read.
    pub fn last_handoff_times(&self) -> Option<(Instant, Instant)> {
        self.handoff_times
    }

    /// Connection time of a connected outgoing session.
    pub fn connected_since(&self) -> Option<Instant> {
        self.conn.as_ref().map(|c| c.connected_at)
    }

    fn control_channel(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| c.link.control_channel())
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
                    self.after_connect();
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

    /// Failover: close, report the old PE, ask the callback, connect a new PE, echo the
    /// cookie, send what was queued.
    pub fn failover(&mut self) -> bool {
        self.follow = None;
        self.failovers += 1;
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
        match &self.conn {
            Some(conn) => conn.link.send(data, ppid, stream, timeout),
            None => Err(io::ErrorKind::NotConnected.into()),
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
        self.check_follow_limit();
        if self.following() {
            return if self.queue.push(data, ppid, stream) {
                WriteOutcome::Sent(data.len())
            } else {
                WriteOutcome::WouldBlock
            };
        }
        if self.donor_check_before_write() {
            return WriteOutcome::HandedOff;
        }
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
        if !self.control_channel() || cookie.len() > MAX_COOKIE {
            return false;
        }
        let msg = AsapMessage::new(AsapBody::Cookie {
            cookie: cookie.into(),
        });
        let sent = match msg.to_bytes() {
            Ok(b) => self.send_message(&b, PPID_ASAP, 0, timeout).is_ok(),
            Err(_) => false,
        };
        if sent && self.donor.is_some() {
            self.donor_cookie_sent(cookie);
        }
        sent
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

    /// Handles one control message from the peer (PPID 11).
    fn control(&mut self, bytes: &[u8]) -> Control {
        if bytes.first().is_some_and(|t| is_handoff_type(*t)) {
            return self.handoff_message(bytes);
        }
        match AsapMessage::decode(bytes).map(|d| d.message.body) {
            Ok(AsapBody::Cookie { cookie }) => self.cookie = Some(cookie.into()),
            // Only one cookie echo is kept until it is read.
            Ok(AsapBody::CookieEcho { cookie }) if self.cookie_echo.is_none() => {
                self.cookie_echo = Some(cookie.into());
            }
            _ => {}
        }
        Control::Consumed
    }

    /// What a read returns after a control message.
    fn after_control(
        &mut self,
        c: Control,
        buf: Option<&mut [u8]>,
        make_failover: bool,
    ) -> ReadOutcome {
        match c {
            Control::HandedOff => ReadOutcome::HandedOff,
            Control::End => {
                self.conn = None;
                if make_failover {
                    ReadOutcome::Failover
                } else {
                    ReadOutcome::ReadError
                }
            }
            Control::Consumed => match buf {
                Some(b) if self.cookie_echo.is_some() => self.deliver_echo(b),
                _ => ReadOutcome::ControlRead,
            },
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
        let outcome = self.read_message(buf, timeout, make_failover);
        if matches!(outcome, ReadOutcome::Data { .. }) && self.donor.is_some() {
            self.commit_point.read_since_cookie = true;
        }
        outcome
    }

    fn read_message(
        &mut self,
        buf: Option<&mut [u8]>,
        timeout: Option<Duration>,
        make_failover: bool,
    ) -> ReadOutcome {
        let mut buf = buf.filter(|b| !b.is_empty());
        self.check_follow_limit();
        if !self.commit_point.probing && self.donor_check_before_read() {
            return ReadOutcome::HandedOff;
        }
        if self.cookie_echo.is_some() {
            if let Some(b) = buf.as_deref_mut() {
                return self.deliver_echo(b);
            }
            return ReadOutcome::CookieEcho { len: 0 };
        }
        let Some(conn) = self.conn.as_mut() else {
            return self.lost(make_failover);
        };
        let fd = conn.raw();
        if conn.wire() == Wire::Sctp {
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
        match conn.wire() {
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
            // A header that arrives in parts is kept across reads (a probe with no wait may
            // find half of one).
            match conn.read_header(timeout.or(Some(Duration::from_secs(5)))) {
                Ok(true) => {}
                Ok(false) => return self.lost(make_failover),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadOutcome::Timeout,
                Err(_) => return self.lost(make_failover),
            }
            let h = conn.header;
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
                let c = self.control(&msg);
                return self.after_control(c, buf, make_failover);
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
                    let c = self.control(&msg[..len]);
                    return Some(self.after_control(c, buf, make_failover));
                }
                _ => return Some(self.lost(make_failover)),
            }
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

// SAFETY: the only members that are not Send are the callbacks' user-data pointers
// (`SessionOptions`), which the library never dereferences: it hands them back to the
// application's callbacks, which run on whatever thread uses the session, as with rsplib.
unsafe impl Send for Session {}

impl Drop for Session {
    fn drop(&mut self) {
        // Counted out before the donor side goes: a drain that sees its last side gone
        // reports no session left.
        if let Some(owner) = &self.owner {
            owner.session_ending();
        }
        self.donor = None;
        self.conn = None;
        if let Some(owner) = &self.owner {
            owner.session_ended();
        }
    }
}
