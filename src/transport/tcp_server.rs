//! The registrar's TCP endpoint: a listener plus one stream per peer, messages cut out of each
//! stream by [`Deframer`].
//!
//! Input is pulled, not pushed: [`TcpServer::ready`] only notes that a stream is readable and
//! puts it on the `active` list; [`TcpServer::next_input`] then hands over one message at a
//! time, at most [`Limits::batch`] per connection and round, so that the caller queues each
//! message's answers before the next message of that connection is read. A connection whose
//! unsent output reaches [`Limits::soft_output`] is paused (nothing is read from it) until a
//! writable event drains it; the kernel's socket buffers then push back on the peer. What one
//! connection costs us is bounded: its deframer holds at most [`MAX_BUFFERED_INPUT`] bytes
//! (never a whole message more than it needs), its output at most the soft cap plus the
//! answers to one message; over [`Limits::hard_output`] (only timers can get it there) it is
//! closed.
//!
//! mio is edge-triggered: a stream left with input (batch used up) stays on the `active` list
//! and the caller polls with a zero timeout while [`TcpServer::has_work`]; a paused stream
//! leaves the list and is put back when its output drains.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream as MioTcpStream};
use mio::{Interest, Registry, Token};

use super::framing::Deframer;
use super::log_limit::LogLimiter;
use super::{
    describe_duration, next_token, protocol_name, ConnId, DownReason, Event, Limits,
    MAX_MESSAGE_SIZE,
};
use crate::logging;

/// Most bytes a connection's deframer holds: one maximal message. Reading stops while the
/// deframer has a whole message, and never fills it beyond this.
pub const MAX_BUFFERED_INPUT: usize = MAX_MESSAGE_SIZE + 1;

/// Connections accepted per round; a longer backlog is taken in the next round.
const ACCEPT_BATCH: usize = 64;

/// When accept cannot get a descriptor even with the reserve released, it is tried again
/// after this long.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Log lines about closed connections: a few per 10 s, then a count.
const CLOSE_LOG_BURST: u32 = 10;
const LOG_PERIOD: Duration = Duration::from_secs(10);

pub(super) struct TcpConn {
    stream: MioTcpStream,
    peer: SocketAddr,
    deframer: Deframer,
    output: VecDeque<u8>,
    want_write: bool,
    /// The socket may hold unread bytes: an edge was reported and no read has since said
    /// WouldBlock.
    readable: bool,
    /// On the server's `active` list.
    queued: bool,
    /// Messages handed over in the current round.
    batch: usize,
    /// Since when the deframer holds the beginning of a message (while not paused).
    partial_since: Option<Instant>,
    /// Since when the unsent output is at or over the soft cap; reading is paused meanwhile.
    over_since: Option<Instant>,
    /// On the server's `watched` list.
    watched: bool,
}

impl TcpConn {
    fn paused(&self) -> bool {
        self.over_since.is_some()
    }

    /// Input is waiting, in the socket or as a whole message in the deframer.
    fn has_input(&self) -> bool {
        self.readable || self.deframer.has_message()
    }

    fn buffered(&self) -> usize {
        self.deframer.pending() + self.output.len()
    }
}

/// What one pull from a connection gave.
enum Pulled {
    Message(Vec<u8>),
    /// Nothing more until the socket becomes readable again.
    Nothing,
    Down(DownReason),
}

pub(super) struct TcpServer {
    pub(super) listener: TcpListener,
    pub(super) listener_token: Token,
    ppid: u32,
    limits: Limits,
    pub(super) conns: HashMap<Token, TcpConn>,
    /// Connections with input to hand over, in round-robin order (closed ones are skipped).
    active: VecDeque<Token>,
    /// Entries of `active` still to visit in the current round.
    round_left: usize,
    /// Connections with a partial message or paused output, checked by `sweep`.
    watched: Vec<Token>,
    /// The earliest time a watched connection can time out.
    next_sweep: Option<Instant>,
    /// The backlog may hold connections (an edge was seen, accept has not said WouldBlock).
    accept_pending: bool,
    /// accept failed for want of descriptors (or memory): not before this time again.
    accept_retry_at: Option<Instant>,
    /// One descriptor held back for the moment the process runs out: released, it lets
    /// accept take a pending connection and close it at once (see `accept`).
    reserve: Option<File>,
    /// Connections closed at once for want of descriptors, since start.
    refused: u64,
    buf: Box<[u8]>,
    close_log: LogLimiter,
    accept_log: LogLimiter,
    refuse_log: LogLimiter,
}

fn open_reserve() -> Option<File> {
    File::open("/dev/null").ok()
}

impl TcpServer {
    pub(super) fn bind(
        addrs: &[SocketAddr],
        ppid: u32,
        registry: &Registry,
    ) -> io::Result<TcpServer> {
        let addr = *addrs
            .first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to bind"))?;
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        if addr.is_ipv6() {
            socket.set_only_v6(false).ok();
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        let mut listener = TcpListener::from_std(socket.into());
        let listener_token = next_token();
        registry.register(&mut listener, listener_token, Interest::READABLE)?;
        Ok(TcpServer {
            listener,
            listener_token,
            ppid,
            limits: Limits::default(),
            conns: HashMap::new(),
            active: VecDeque::new(),
            round_left: 0,
            watched: Vec::new(),
            next_sweep: None,
            // A backlog that filled before registration would raise no edge.
            accept_pending: true,
            accept_retry_at: None,
            reserve: open_reserve(),
            refused: 0,
            buf: vec![0u8; MAX_BUFFERED_INPUT].into_boxed_slice(),
            close_log: LogLimiter::new(LOG_PERIOD, CLOSE_LOG_BURST),
            accept_log: LogLimiter::new(LOG_PERIOD, 1),
            refuse_log: LogLimiter::new(LOG_PERIOD, 1),
        })
    }

    pub(super) fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Notes readiness of the listener or of a stream; a writable stream is flushed (a write
    /// error ends it: `Down` in `out`).
    pub(super) fn ready(
        &mut self,
        registry: &Registry,
        token: Token,
        readable: bool,
        writable: bool,
        out: &mut Vec<Event>,
    ) {
        if token == self.listener_token {
            self.accept_pending = true;
            return;
        }
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        if readable {
            conn.readable = true;
        }
        if writable {
            if let Err(reason) = flush(conn) {
                self.drop_conn(registry, token, reason, out);
                return;
            }
        }
        if let Err(reason) = self.output_changed(registry, token) {
            self.drop_conn(registry, token, reason, out);
            return;
        }
        self.activate(token);
    }

    /// True while there is input to hand over (or a backlog to accept) without waiting for
    /// an event: the caller must poll with a zero timeout.
    pub(super) fn has_work(&self) -> bool {
        !self.active.is_empty() || (self.accept_pending && self.accept_retry_at.is_none())
    }

    /// When the caller must come back even if no event arrives: a stalled connection's
    /// timeout, or a retry of accept.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let retry = self.accept_retry_at.filter(|_| self.accept_pending);
        match (self.next_sweep, retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Begins a round: closes connections that stalled (`Down` in `out`), accepts up to
    /// [`ACCEPT_BATCH`] new ones (`Up` in `out`), and fixes which active connections the
    /// following [`TcpServer::next_input`] calls visit.
    pub(super) fn start_round(&mut self, registry: &Registry, now: Instant, out: &mut Vec<Event>) {
        if self.next_sweep.is_some_and(|t| t <= now) {
            self.sweep(registry, now, out);
        }
        if self.accept_pending && self.accept_retry_at.is_none_or(|t| t <= now) {
            self.accept_retry_at = None;
            self.accept(registry, now, out);
        }
        self.round_left = self.active.len();
    }

    /// The next input of this round: a message, or a connection ending (`Down`, after which
    /// the connection is gone). `None` when the round is over.
    pub(super) fn next_input(&mut self, registry: &Registry) -> Option<Event> {
        while self.round_left > 0 {
            let token = *self.active.front()?;
            let Some(conn) = self.conns.get_mut(&token) else {
                self.active.pop_front();
                self.round_left -= 1;
                continue;
            };
            if conn.batch < self.limits.batch && !conn.paused() {
                match pull(conn, &mut self.buf) {
                    Pulled::Message(data) => {
                        conn.batch += 1;
                        return Some(Event::Message {
                            conn: token.0 as ConnId,
                            ppid: self.ppid,
                            data,
                        });
                    }
                    Pulled::Down(reason) => {
                        self.active.pop_front();
                        self.round_left -= 1;
                        let mut out = Vec::with_capacity(1);
                        self.drop_conn(registry, token, reason, &mut out);
                        return out.pop();
                    }
                    Pulled::Nothing => {
                        if conn.partial_since.is_some() {
                            self.watch(token);
                        }
                    }
                }
            }
            // Done with it for this round: batch used up, paused, or nothing left.
            let conn = self.conns.get_mut(&token).expect("still open");
            self.active.pop_front();
            self.round_left -= 1;
            conn.batch = 0;
            if conn.has_input() && !conn.paused() {
                self.active.push_back(token);
            } else {
                conn.queued = false;
            }
        }
        None
    }

    /// Queues one message; a connection whose output exceeds the hard cap is closed (error).
    pub(super) fn send(
        &mut self,
        registry: &Registry,
        conn_id: ConnId,
        data: &[u8],
    ) -> io::Result<()> {
        let token = Token(conn_id as usize);
        let conn = self
            .conns
            .get_mut(&token)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))?;
        conn.output.extend(data);
        let result = flush(conn).and_then(|_| {
            if conn.output.len() > self.limits.hard_output {
                let waiting = conn.output.len();
                let limit = self.limits.hard_output;
                self.close_log.log(Instant::now(), logging::WARNING, || {
                    format!(
                        "{} closed: it does not read its answers ({waiting} bytes waiting, \
                         over the limit of {limit})",
                        describe(self.ppid, conn_id, &conn.peer)
                    )
                });
                return Err(DownReason::TooSlow);
            }
            Ok(())
        });
        let result = result.and_then(|_| self.output_changed(registry, token));
        if let Err(reason) = result {
            self.close(registry, conn_id);
            return Err(io::Error::other(format!("connection dropped: {reason:?}")));
        }
        self.activate(token);
        Ok(())
    }

    /// Bytes held for `conn`: its deframer's and its unsent output.
    pub(super) fn buffered(&self, conn: ConnId) -> Option<usize> {
        self.conns.get(&Token(conn as usize)).map(TcpConn::buffered)
    }

    pub(super) fn close(&mut self, registry: &Registry, conn: ConnId) {
        if let Some(mut c) = self.conns.remove(&Token(conn as usize)) {
            let _ = registry.deregister(&mut c.stream);
        }
    }

    /// Closes a connection that ended or failed, logs attacks, and reports it in `out`.
    fn drop_conn(
        &mut self,
        registry: &Registry,
        token: Token,
        reason: DownReason,
        out: &mut Vec<Event>,
    ) {
        let conn_id = token.0 as ConnId;
        if let Some(c) = self.conns.get(&token) {
            let why = match reason {
                DownReason::ProtocolError => Some(
                    "its byte stream cannot be cut into messages (a header's length is below 4)"
                        .to_string(),
                ),
                DownReason::Stalled => Some(format!(
                    "it left a message incomplete for {} ({} bytes held)",
                    describe_duration(self.limits.stall_timeout),
                    c.deframer.pending()
                )),
                DownReason::TooSlow => Some(format!(
                    "it did not read its answers for {} ({} bytes waiting)",
                    describe_duration(self.limits.stall_timeout),
                    c.output.len()
                )),
                DownReason::Closed | DownReason::Lost => None,
            };
            if let Some(why) = why {
                let who = describe(self.ppid, conn_id, &c.peer);
                self.close_log.log(Instant::now(), logging::WARNING, || {
                    format!("{who} closed: {why}")
                });
            }
        }
        self.close(registry, conn_id);
        out.push(Event::Down {
            conn: conn_id,
            reason,
        });
    }

    /// Puts a connection with input on the active list unless it is there or paused.
    fn activate(&mut self, token: Token) {
        if let Some(conn) = self.conns.get_mut(&token) {
            if !conn.queued && !conn.paused() && conn.has_input() {
                conn.queued = true;
                self.active.push_back(token);
            }
        }
    }

    fn watch(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        if !conn.watched {
            conn.watched = true;
            self.watched.push(token);
        }
        // Every deadline set later is later than those already set (one timeout for all),
        // except after a pause; an early sweep finds nothing and computes the true next one.
        if self.next_sweep.is_none() {
            let since = conn.over_since.or(conn.partial_since);
            self.next_sweep = since.map(|t| t + self.limits.stall_timeout);
        }
    }

    /// After the output of `token` changed: pause or resume reading at the soft cap, and ask
    /// for writable events while there is output.
    fn output_changed(&mut self, registry: &Registry, token: Token) -> Result<(), DownReason> {
        let Some(conn) = self.conns.get_mut(&token) else {
            return Ok(());
        };
        let over = conn.output.len() >= self.limits.soft_output;
        let watch = match (over, conn.over_since) {
            (true, None) => {
                conn.over_since = Some(Instant::now());
                true
            }
            (false, Some(_)) => {
                conn.over_since = None;
                // Its partial message could not advance while paused: the clock restarts.
                if conn.partial_since.is_some() {
                    conn.partial_since = Some(Instant::now());
                }
                false
            }
            _ => false,
        };
        let want = !conn.output.is_empty();
        if want != conn.want_write {
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            registry
                .reregister(&mut conn.stream, token, interest)
                .map_err(|_| DownReason::Lost)?;
            conn.want_write = want;
        }
        if watch {
            self.watch(token);
        }
        Ok(())
    }

    /// Closes watched connections whose partial message or unread output is older than the
    /// stall timeout, and computes when to look again.
    fn sweep(&mut self, registry: &Registry, now: Instant, out: &mut Vec<Event>) {
        let stall = self.limits.stall_timeout;
        let mut next: Option<Instant> = None;
        let mut expired = Vec::new();
        self.watched.retain(|token| {
            let Some(conn) = self.conns.get_mut(token) else {
                return false;
            };
            let (since, reason) = match (conn.over_since, conn.partial_since) {
                (Some(t), _) => (t, DownReason::TooSlow),
                (None, Some(t)) => (t, DownReason::Stalled),
                (None, None) => {
                    conn.watched = false;
                    return false;
                }
            };
            let deadline = since + stall;
            if deadline <= now {
                expired.push((*token, reason));
                return false;
            }
            next = Some(next.map_or(deadline, |n| n.min(deadline)));
            true
        });
        self.next_sweep = next;
        for (token, reason) in expired {
            self.drop_conn(registry, token, reason, out);
        }
    }

    fn accept(&mut self, registry: &Registry, now: Instant, out: &mut Vec<Event>) {
        for _ in 0..ACCEPT_BATCH {
            match self.listener.accept() {
                Ok((stream, peer)) => self.admit(registry, stream, peer, out),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.accept_pending = false;
                    return;
                }
                Err(e)
                    if e.kind() == io::ErrorKind::Interrupted
                        || e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    if !self.refuse_one(now, &e) {
                        return;
                    }
                }
                // Linux reports errors of the new connection itself through accept: the
                // next one may be fine.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(
                            libc::ENETDOWN
                                | libc::EPROTO
                                | libc::ENOPROTOOPT
                                | libc::EHOSTDOWN
                                | libc::ENONET
                                | libc::EHOSTUNREACH
                                | libc::EOPNOTSUPP
                                | libc::ENETUNREACH
                        )
                    ) =>
                {
                    self.log_accept_error(now, &e, "");
                }
                // ENOBUFS, ENOMEM and anything unexpected: not in a busy loop.
                Err(e) => {
                    self.log_accept_error(now, &e, "; trying again in 100 ms");
                    self.accept_retry_at = Some(now + ACCEPT_RETRY);
                    return;
                }
            }
        }
    }

    fn log_accept_error(&mut self, now: Instant, e: &io::Error, tail: &str) {
        let name = protocol_name(self.ppid);
        self.accept_log.log(now, logging::ERROR, || {
            format!("{name} over TCP: accepting a connection failed: {e}{tail}")
        });
    }

    /// The process is out of descriptors and a connection waits in the backlog: release the
    /// reserve, accept the connection and close it at once (the client reads EOF instead of
    /// hanging in the backlog), take the reserve back. False if that is impossible now (no
    /// reserve to release): accept is retried after [`ACCEPT_RETRY`].
    fn refuse_one(&mut self, now: Instant, error: &io::Error) -> bool {
        let name = protocol_name(self.ppid);
        if self.reserve.take().is_none() {
            // A descriptor may have been freed meanwhile: retake the reserve first.
            self.reserve = open_reserve();
            if self.reserve.is_none() {
                self.refuse_log.log(now, logging::ERROR, || {
                    format!(
                        "{name} over TCP: no descriptor left ({error}) and no reserve to \
                         release: new connections wait in the backlog"
                    )
                });
                self.accept_retry_at = Some(now + ACCEPT_RETRY);
                return false;
            }
            return true;
        }
        let result = self.listener.accept();
        let refused = match result {
            Ok((stream, peer)) => {
                drop(stream);
                Ok(peer)
            }
            Err(e) => Err(e),
        };
        // Only now that the connection's descriptor is closed again.
        self.reserve = open_reserve();
        match refused {
            Ok(peer) => {
                self.refused += 1;
                let (open, refused) = (self.conns.len(), self.refused);
                self.refuse_log.log(now, logging::ERROR, || {
                    format!(
                        "{name} over TCP: no descriptor left ({error}) with {open} connections \
                         open: closed the new connection from {peer} at once, {refused} so far \
                         (raise the descriptor limit, ulimit -n, or lower -maxconnections)"
                    )
                });
                true
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.accept_pending = false;
                false
            }
            Err(_) => true,
        }
    }

    fn admit(
        &mut self,
        registry: &Registry,
        mut stream: MioTcpStream,
        peer: SocketAddr,
        out: &mut Vec<Event>,
    ) {
        let token = next_token();
        let _ = stream.set_nodelay(true);
        if let Err(e) = registry.register(&mut stream, token, Interest::READABLE) {
            let name = protocol_name(self.ppid);
            self.accept_log.log(Instant::now(), logging::ERROR, || {
                format!("{name} over TCP: cannot watch the new connection from {peer}: {e}")
            });
            return;
        }
        self.conns.insert(
            token,
            TcpConn {
                stream,
                peer,
                deframer: Deframer::new(),
                output: VecDeque::new(),
                want_write: false,
                // Bytes that arrived before registration raise no edge: look once.
                readable: true,
                queued: true,
                batch: 0,
                partial_since: None,
                over_since: None,
                watched: false,
            },
        );
        self.active.push_back(token);
        out.push(Event::Up {
            conn: token.0 as ConnId,
            peer: vec![peer],
        });
    }
}

/// "ASAP connection 17 from 10.0.0.1:4711 over TCP".
fn describe(ppid: u32, conn: ConnId, peer: &SocketAddr) -> String {
    format!(
        "{} connection {conn} from {peer} over TCP",
        protocol_name(ppid)
    )
}

/// The next message of `conn`, reading from the socket only when the deframer has none.
fn pull(conn: &mut TcpConn, buf: &mut [u8]) -> Pulled {
    loop {
        match conn.deframer.next_message() {
            Ok(Some(data)) => {
                conn.partial_since = None;
                return Pulled::Message(data);
            }
            Ok(None) => {}
            Err(_) => return Pulled::Down(DownReason::ProtocolError),
        }
        let pending = conn.deframer.pending();
        if pending > 0 && conn.partial_since.is_none() {
            conn.partial_since = Some(Instant::now());
        }
        if !conn.readable {
            return Pulled::Nothing;
        }
        // No whole message is buffered, so pending < MAX_MESSAGE_SIZE and room >= 2.
        let room = MAX_BUFFERED_INPUT - pending;
        match conn.stream.read(&mut buf[..room]) {
            Ok(0) => return Pulled::Down(DownReason::Closed),
            Ok(n) => conn.deframer.push(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                conn.readable = false;
                return Pulled::Nothing;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Pulled::Down(DownReason::Lost),
        }
    }
}

/// Writes what the socket takes.
fn flush(conn: &mut TcpConn) -> Result<(), DownReason> {
    while !conn.output.is_empty() {
        let (a, _) = conn.output.as_slices();
        match conn.stream.write(a) {
            Ok(0) => return Err(DownReason::Lost),
            Ok(n) => {
                conn.output.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(DownReason::Lost),
        }
    }
    if conn.output.is_empty() && conn.output.capacity() > 64 * 1024 {
        conn.output = VecDeque::new();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::time::{Duration, Instant};

    use mio::{Events, Poll, Registry, Token};

    use super::MAX_BUFFERED_INPUT;
    use crate::transport::{
        Association, ConnId, DownReason, Event, Limits, Protocol, Server, ServerInner, PPID_ASAP,
    };

    /// A TCP server on loopback and the event loop around it.
    struct Harness {
        poll: Poll,
        events: Events,
        server: Server,
    }

    type OnEvent<'a> = dyn FnMut(&mut Server, &Registry, Event) + 'a;

    impl Harness {
        fn new(limits: Limits) -> Harness {
            let poll = Poll::new().unwrap();
            let mut server = Server::bind(
                Protocol::Tcp,
                &["127.0.0.1:0".parse().unwrap()],
                PPID_ASAP,
                poll.registry(),
            )
            .unwrap();
            server.set_limits(limits);
            Harness {
                poll,
                events: Events::with_capacity(256),
                server,
            }
        }

        fn addr(&self) -> SocketAddr {
            self.server.local_addrs()[0]
        }

        /// One turn of the loop (readiness, then one round of input), unless `deadline` has
        /// passed: then the test fails, saying it was waiting until `what`. Every event goes
        /// to `on_event`, which may answer before the next one is taken.
        fn turn(&mut self, deadline: Instant, what: &str, on_event: &mut OnEvent) {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            let server = &mut self.server;
            let timeout = if server.has_work() {
                Duration::ZERO
            } else {
                let wait = Duration::from_millis(20);
                server.next_deadline().map_or(wait, |d| {
                    d.saturating_duration_since(Instant::now()).min(wait)
                })
            };
            self.poll.poll(&mut self.events, Some(timeout)).unwrap();
            let registry = self.poll.registry();
            let mut got = Vec::new();
            for ev in self.events.iter() {
                assert!(server.owns(ev.token()));
                server.ready(
                    registry,
                    ev.token(),
                    ev.is_readable() || ev.is_read_closed() || ev.is_error(),
                    ev.is_writable() || ev.is_error(),
                    &mut got,
                );
            }
            server.start_round(registry, Instant::now(), &mut got);
            for e in got {
                on_event(server, registry, e);
            }
            while let Some(e) = server.next_input(registry) {
                on_event(server, registry, e);
            }
        }

        /// Whether reading from `conn` is paused (its output is over the soft cap).
        fn paused(&self, conn: ConnId) -> bool {
            match &self.server.inner {
                ServerInner::Tcp(t) => t.conns[&Token(conn as usize)].paused(),
                ServerInner::Sctp(_) => unreachable!(),
            }
        }
    }

    fn deadline() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    /// An ASAP-shaped message of `len` bytes, type `kind`.
    fn message(kind: u8, len: usize) -> Vec<u8> {
        let mut m = vec![0u8; len];
        m[0] = kind;
        m[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        m
    }

    fn up_conn(e: &Event) -> Option<ConnId> {
        match e {
            Event::Up { conn, .. } => Some(*conn),
            _ => None,
        }
    }

    #[test]
    fn tcp_server_delivers_whole_messages_and_reports_close() {
        let mut h = Harness::new(Limits::default());
        let addr = h.addr();
        let mut client =
            Association::connect(Protocol::Tcp, &[addr], Duration::from_secs(2), PPID_ASAP)
                .unwrap();
        // Two messages in one write, the second split across writes.
        client
            .send(PPID_ASAP, &[7, 0, 0, 8, 1, 2, 3, 4, 8, 0])
            .unwrap();
        client.send(PPID_ASAP, &[0, 4]).unwrap();

        let mut got = Vec::new();
        let d = deadline();
        while got
            .iter()
            .filter(|e| matches!(e, Event::Message { .. }))
            .count()
            < 2
        {
            h.turn(d, "two messages arrived", &mut |_, _, e| got.push(e));
        }
        let conn = match &got[0] {
            Event::Up { conn, peer } => {
                assert_eq!(peer[0].ip(), addr.ip());
                *conn
            }
            other => panic!("first event {other:?}"),
        };
        assert_eq!(
            got[1],
            Event::Message {
                conn,
                ppid: PPID_ASAP,
                data: vec![7, 0, 0, 8, 1, 2, 3, 4]
            }
        );
        assert_eq!(
            got[2],
            Event::Message {
                conn,
                ppid: PPID_ASAP,
                data: vec![8, 0, 0, 4]
            }
        );

        // The server answers; the client reads it back whole.
        h.server
            .send(h.poll.registry(), conn, PPID_ASAP, &[3, 0, 0, 4])
            .unwrap();
        let reply = client.recv(Some(Duration::from_secs(2))).unwrap();
        assert_eq!(reply, Some((PPID_ASAP, vec![3, 0, 0, 4])));
        assert_eq!(client.recv(Some(Duration::from_millis(50))).unwrap(), None);

        drop(client);
        got.clear();
        let d = deadline();
        while !got.iter().any(|e| matches!(e, Event::Down { .. })) {
            h.turn(d, "the close was seen", &mut |_, _, e| got.push(e));
        }
        assert_eq!(
            got.last(),
            Some(&Event::Down {
                conn,
                reason: DownReason::Closed
            })
        );
        assert_eq!(h.server.connections(), 0);
        assert!(h
            .server
            .send(h.poll.registry(), conn, PPID_ASAP, &[3, 0, 0, 4])
            .is_err());
    }

    #[test]
    fn tcp_server_drops_a_stream_with_a_lying_length() {
        let mut h = Harness::new(Limits::default());
        let mut client = TcpStream::connect(h.addr()).unwrap();
        client.write_all(&[1, 0, 0, 2]).unwrap();
        let mut got = Vec::new();
        let d = deadline();
        while !got.iter().any(|e| matches!(e, Event::Down { .. })) {
            h.turn(d, "the stream was dropped", &mut |_, _, e| got.push(e));
        }
        assert!(matches!(
            got.last(),
            Some(Event::Down {
                reason: DownReason::ProtocolError,
                ..
            })
        ));
    }

    /// Writes `count` 16-byte requests on a new connection from a thread and never reads;
    /// the thread gives up when the kernel takes nothing for 2 s.
    fn flood(addr: SocketAddr, count: usize) -> (TcpStream, std::thread::JoinHandle<usize>) {
        let stream = TcpStream::connect(addr).unwrap();
        let mut writer = stream.try_clone().unwrap();
        let thread = std::thread::spawn(move || {
            writer
                .set_write_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let requests: Vec<u8> = (0..count).flat_map(|_| message(5, 16)).collect();
            let mut written = 0;
            while written < requests.len() {
                match writer.write(&requests[written..]) {
                    Ok(n) => written += n,
                    Err(_) => break,
                }
            }
            written
        });
        (stream, thread)
    }

    /// 8 KiB of answer to each 16-byte request: a Handle Resolution asking for 128 PEs.
    const ANSWER: usize = 8192;

    #[test]
    fn a_client_that_never_reads_is_paused_with_bounded_buffers_and_others_are_served() {
        let limits = Limits {
            stall_timeout: Duration::from_secs(60),
            ..Limits::default()
        };
        let bound = limits.soft_output + ANSWER + MAX_BUFFERED_INPUT;
        let mut h = Harness::new(limits);
        let addr = h.addr();
        // 1 MiB of requests would make 512 MiB of answers.
        let (_flooder, writer) = flood(addr, 65536);
        let mut flood_conn = None;
        let mut answered = 0usize;
        let mut most_buffered = 0usize;
        let d = deadline();
        while !flood_conn.is_some_and(|c| h.paused(c)) {
            h.turn(
                d,
                "the flooder is paused",
                &mut |server, registry, e| match e {
                    Event::Up { conn, .. } => flood_conn = Some(conn),
                    Event::Message { conn, .. } => {
                        server
                            .send(registry, conn, PPID_ASAP, &message(6, ANSWER))
                            .expect("never over the hard cap");
                        answered += 1;
                        most_buffered = most_buffered.max(server.buffered(conn).unwrap());
                    }
                    Event::Down { .. } => panic!("the flooder must not be dropped: {e:?}"),
                },
            );
        }
        let flood_conn = flood_conn.unwrap();
        assert!(answered < 65536, "paused before all requests were answered");

        // Another client is served while the flooder stays paused and bounded.
        let mut client =
            Association::connect(Protocol::Tcp, &[addr], Duration::from_secs(2), PPID_ASAP)
                .unwrap();
        client.send(PPID_ASAP, &message(5, 16)).unwrap();
        let d = deadline();
        let mut reply = None;
        while reply.is_none() {
            h.turn(
                d,
                "the other client is answered",
                &mut |server, registry, e| match e {
                    Event::Message { conn, .. } => {
                        assert_ne!(conn, flood_conn, "a paused connection is not read");
                        server
                            .send(registry, conn, PPID_ASAP, &message(6, 4))
                            .unwrap();
                    }
                    Event::Down { .. } => panic!("{e:?}"),
                    Event::Up { .. } => {}
                },
            );
            let buffered = h.server.buffered(flood_conn).expect("still open");
            most_buffered = most_buffered.max(buffered);
            reply = client.recv(Some(Duration::ZERO)).unwrap();
        }
        assert_eq!(reply, Some((PPID_ASAP, message(6, 4))));
        assert!(h.paused(flood_conn));
        assert!(
            most_buffered <= bound,
            "{most_buffered} bytes held for the flooder, bound {bound}"
        );
        drop(_flooder);
        let _ = writer.join();
    }

    #[test]
    fn a_client_that_does_not_read_its_answers_is_closed_after_the_stall_timeout() {
        let mut h = Harness::new(Limits {
            stall_timeout: Duration::from_millis(200),
            ..Limits::default()
        });
        let (_flooder, writer) = flood(h.addr(), 65536);
        let mut down = None;
        let d = deadline();
        while down.is_none() {
            h.turn(
                d,
                "the flooder is closed",
                &mut |server, registry, e| match e {
                    Event::Message { conn, .. } => {
                        let _ = server.send(registry, conn, PPID_ASAP, &message(6, ANSWER));
                    }
                    Event::Down { reason, .. } => down = Some(reason),
                    Event::Up { .. } => {}
                },
            );
        }
        assert_eq!(down, Some(DownReason::TooSlow));
        assert_eq!(h.server.connections(), 0);
        let _ = writer.join();
    }

    #[test]
    fn a_partial_message_is_dropped_after_the_stall_timeout_a_slow_whole_one_is_not() {
        let stall = Duration::from_millis(300);
        let mut h = Harness::new(Limits {
            stall_timeout: stall,
            ..Limits::default()
        });
        let addr = h.addr();
        let mut ups = Vec::new();
        let mut stalled = TcpStream::connect(addr).unwrap();
        let sent_at = Instant::now();
        stalled.write_all(&message(5, 100)[..10]).unwrap();
        let d = deadline();
        while ups.is_empty() {
            h.turn(d, "the first client is up", &mut |_, _, e| {
                ups.extend(up_conn(&e))
            });
        }
        let mut slow = TcpStream::connect(addr).unwrap();
        let whole = message(5, 100);
        slow.write_all(&whole[..50]).unwrap();

        let mut messages = Vec::new();
        let mut downs = Vec::new();
        let mut rest_sent = false;
        let d = deadline();
        while downs.is_empty() {
            h.turn(d, "the stalled client is dropped", &mut |_, _, e| match e {
                Event::Up { conn, .. } => ups.push(conn),
                Event::Message { conn, data, .. } => messages.push((conn, data)),
                Event::Down { conn, reason } => downs.push((conn, reason, sent_at.elapsed())),
            });
            if !rest_sent && sent_at.elapsed() >= stall / 3 {
                slow.write_all(&whole[50..]).unwrap();
                rest_sent = true;
            }
        }
        assert_eq!(ups.len(), 2);
        assert_eq!(downs.len(), 1, "{downs:?}");
        let (conn, reason, after) = downs[0];
        assert_eq!((conn, reason), (ups[0], DownReason::Stalled));
        assert!(
            after >= stall,
            "dropped after {after:?}, before the stall timeout"
        );
        assert_eq!(messages, vec![(ups[1], whole)]);
        // The dropped client reads EOF.
        stalled
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(stalled.read(&mut [0u8; 16]).unwrap(), 0);
    }

    #[test]
    fn output_over_the_hard_cap_closes_the_connection() {
        let limits = Limits::default();
        let mut h = Harness::new(limits);
        let _client = TcpStream::connect(h.addr()).unwrap();
        let mut conn = None;
        let d = deadline();
        while conn.is_none() {
            h.turn(d, "the client is up", &mut |_, _, e| {
                conn = conn.or(up_conn(&e))
            });
        }
        let conn = conn.unwrap();
        // Timers can queue output however paused a connection is; 64 MiB cannot fit into the
        // kernel's buffers.
        let big = message(6, 65532);
        let mut result = Ok(());
        for _ in 0..1024 {
            result = h.server.send(h.poll.registry(), conn, PPID_ASAP, &big);
            if result.is_err() {
                break;
            }
            assert!(h.server.buffered(conn).unwrap() <= limits.hard_output);
        }
        assert!(result.is_err());
        assert_eq!(h.server.buffered(conn), None);
        assert_eq!(h.server.connections(), 0);
    }

    #[test]
    fn a_flood_on_one_connection_does_not_keep_another_waiting() {
        let batch = 16;
        let mut h = Harness::new(Limits {
            batch,
            ..Limits::default()
        });
        let addr = h.addr();
        let total = 65536;
        let (_flooder, writer) = flood(addr, total);
        let mut flood_conn = None;
        let mut flood_handled = 0usize;
        let d = deadline();
        while flood_handled == 0 {
            h.turn(d, "the flood arrives", &mut |_, _, e| match e {
                Event::Up { conn, .. } => flood_conn = Some(conn),
                Event::Message { .. } => flood_handled += 1,
                Event::Down { .. } => panic!("{e:?}"),
            });
        }
        let mut other = TcpStream::connect(addr).unwrap();
        other.write_all(&message(5, 16)).unwrap();
        let before = flood_handled;
        let mut served_after = None;
        let d = deadline();
        while served_after.is_none() {
            h.turn(
                d,
                "the other client's message is taken",
                &mut |_, _, e| match e {
                    Event::Message { conn, .. } if Some(conn) == flood_conn => flood_handled += 1,
                    Event::Message { .. } => served_after = Some(flood_handled - before),
                    Event::Down { .. } => panic!("{e:?}"),
                    Event::Up { .. } => {}
                },
            );
        }
        let served_after = served_after.unwrap();
        assert!(
            served_after <= 2 * batch,
            "{served_after} flood messages were taken before the other client's one"
        );
        assert!(flood_handled < total / 2, "the flood was still waiting");
        drop(_flooder);
        let _ = writer.join();
    }

    #[test]
    fn a_connection_closed_right_after_up_reads_eof_and_is_forgotten() {
        let mut h = Harness::new(Limits::default());
        let mut client = TcpStream::connect(h.addr()).unwrap();
        client.write_all(&message(5, 16)).unwrap();
        let mut refused = None;
        let mut later = Vec::new();
        let d = deadline();
        while refused.is_none() {
            h.turn(d, "the client is up", &mut |server, registry, e| {
                if let Some(conn) = up_conn(&e) {
                    // As the core does for a connection over the limits.
                    server.close(registry, conn);
                    refused = Some(conn);
                } else {
                    later.push(e);
                }
            });
        }
        for _ in 0..5 {
            h.turn(deadline(), "", &mut |_, _, e| later.push(e));
        }
        assert_eq!(later, vec![], "no event for a closed connection");
        assert_eq!(h.server.connections(), 0);
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        // EOF, or a reset because the request it sent was never read.
        assert!(matches!(client.read(&mut [0u8; 16]), Ok(0) | Err(_)));
    }
}
