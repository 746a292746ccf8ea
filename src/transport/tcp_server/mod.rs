//! The registrar's TCP endpoint: a listener plus one stream per peer, messages cut out of each
//! stream by [`Deframer`].
//!
//! Input is pulled, not pushed: [`TcpServer::ready`] only notes that a stream is readable and
//! puts it on the `active` list; [`TcpServer::next_input`] then hands over one message at a
//! time, at most [`Limits::batch`] per connection and round (fewer once the round's answers to
//! it reach [`TURN_OUTPUT`] bytes), so that the caller queues each
//! message's answers before the next message of that connection is read. The answers are
//! written once the last whole message held from the connection is answered: one write for all
//! that one read brought. A connection whose
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
    describe_duration, next_token, protocol_name, ConnId, DownReason, Event, Limits, Readiness,
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

/// Answers to a connection are written, in one write, once the registrar has answered every
/// whole message it holds from that connection; other output (keep-alives, updates to peers)
/// when the round ends ([`TcpServer::flush`]); once this much is queued, at once.
const FLUSH_AT: usize = 16 * 1024;

/// A connection's turn in a round also ends once its answers in that turn reach this many
/// bytes: requests with large answers (handle resolutions for many items) take fewer messages
/// per turn, so the other connections wait about as long behind them as behind small ones.
const TURN_OUTPUT: usize = 16 * 1024;

/// Log lines about closed connections: a few per 10 s, then a count.
const CLOSE_LOG_BURST: u32 = 10;
const LOG_PERIOD: Duration = Duration::from_secs(10);

pub(super) struct TcpConn {
    stream: MioTcpStream,
    peer: SocketAddr,
    deframer: Deframer,
    output: VecDeque<u8>,
    /// The socket may hold unread bytes: an edge was reported and no read has since said
    /// WouldBlock.
    readable: bool,
    /// On the server's `active` list.
    queued: bool,
    /// Messages handed over in the current round.
    batch: usize,
    /// Bytes queued to it while its messages were being answered in the current round.
    turn_output: usize,
    /// Since when the deframer holds the beginning of a message (while not paused).
    partial_since: Option<Instant>,
    /// Since when the unsent output is at or over the soft cap; reading is paused meanwhile.
    over_since: Option<Instant>,
    /// On the server's `watched` list.
    watched: bool,
    /// On the server's `dirty` list: output queued since the last flush.
    dirty: bool,
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

/// Streams accepted for other shards (see [`TcpServer::set_handoff`]).
struct HandOff {
    shards: usize,
    next: usize,
    given: Vec<(usize, MioTcpStream, SocketAddr)>,
}

/// What one pull from a connection gave.
enum Pulled {
    Message(Vec<u8>),
    /// Nothing more until the socket becomes readable again.
    Nothing,
    Down(DownReason),
}

pub(super) struct TcpServer {
    /// The listener and its token; `None` for a server that only adopts streams accepted by
    /// another one (a shard).
    pub(super) listener: Option<(TcpListener, Token)>,
    /// With shards: every accepted stream goes to the next in turn; `given` collects the
    /// ones for other shards until the caller takes them ([`TcpServer::take_handed_off`]).
    handoff: Option<HandOff>,
    ppid: u32,
    limits: Limits,
    /// Keyed by tokens (a counter, not chosen by peers): a fast hash.
    pub(super) conns: HashMap<Token, TcpConn, foldhash::fast::FixedState>,
    /// Connections with input to hand over, in round-robin order (closed ones are skipped).
    active: VecDeque<Token>,
    /// Entries of `active` still to visit in the current round.
    round_left: usize,
    /// Connections with a partial message or paused output, checked by `sweep`.
    watched: Vec<Token>,
    /// Connections with output queued since the last [`TcpServer::flush`].
    dirty: Vec<Token>,
    /// The connection whose message [`TcpServer::next_input`] handed over last.
    current: Option<Token>,
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
    /// The buffer of the last message handed over, given back by [`TcpServer::recycle`]: the
    /// next message is copied into it.
    spare: Vec<u8>,
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
        let mut server = TcpServer::adopting(ppid);
        server.listener = Some((listener, listener_token));
        // A backlog that filled before registration would raise no edge.
        server.accept_pending = true;
        server.reserve = open_reserve();
        Ok(server)
    }

    /// A server without a listener: its streams are accepted by another server and handed
    /// over ([`TcpServer::adopt`]).
    pub(super) fn adopting(ppid: u32) -> TcpServer {
        TcpServer {
            listener: None,
            handoff: None,
            ppid,
            limits: Limits::default(),
            conns: HashMap::default(),
            active: VecDeque::new(),
            round_left: 0,
            watched: Vec::new(),
            dirty: Vec::new(),
            current: None,
            next_sweep: None,
            accept_pending: false,
            accept_retry_at: None,
            // Only a server that accepts needs one (`bind`).
            reserve: None,
            refused: 0,
            buf: vec![0u8; MAX_BUFFERED_INPUT].into_boxed_slice(),
            spare: Vec::new(),
            close_log: LogLimiter::new(LOG_PERIOD, CLOSE_LOG_BURST),
            accept_log: LogLimiter::new(LOG_PERIOD, 1),
            refuse_log: LogLimiter::new(LOG_PERIOD, 1),
        }
    }

    /// True if `token` is this server's listener's.
    pub(super) fn is_listener(&self, token: Token) -> bool {
        self.listener.as_ref().is_some_and(|(_, t)| *t == token)
    }

    /// Deals the streams this server accepts out to `shards` shards in turn, itself being
    /// shard 0: its own it adopts, the others wait for [`TcpServer::take_handed_off`].
    pub(super) fn set_handoff(&mut self, shards: usize) {
        self.handoff = (shards > 1).then(|| HandOff {
            shards,
            next: 0,
            given: Vec::new(),
        });
    }

    /// The streams accepted for other shards since the last call: (shard, stream, peer).
    pub(super) fn take_handed_off(&mut self) -> Vec<(usize, MioTcpStream, SocketAddr)> {
        self.handoff
            .as_mut()
            .map_or_else(Vec::new, |h| std::mem::take(&mut h.given))
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
        ready: Readiness,
        out: &mut Vec<Event>,
    ) {
        if self.is_listener(token) {
            self.accept_pending = true;
            return;
        }
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        if ready.readable {
            conn.readable = true;
        }
        if ready.writable {
            if let Err(reason) = flush(conn) {
                self.drop_conn(registry, token, reason, out);
                return;
            }
        }
        self.output_changed(token);
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
        self.current = None;
        while self.round_left > 0 {
            let token = *self.active.front()?;
            let Some(conn) = self.conns.get_mut(&token) else {
                self.active.pop_front();
                self.round_left -= 1;
                continue;
            };
            if conn.batch < self.limits.batch && conn.turn_output < TURN_OUTPUT && !conn.paused() {
                match pull(conn, &mut self.buf, &mut self.spare) {
                    Pulled::Message(data) => {
                        conn.batch += 1;
                        self.current = Some(token);
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
            conn.turn_output = 0;
            if conn.has_input() && !conn.paused() {
                self.active.push_back(token);
            } else {
                conn.queued = false;
            }
        }
        None
    }

    /// Takes back the buffer of a message [`TcpServer::next_input`] handed over, for the next
    /// one (a buffer not given back is simply dropped).
    pub(super) fn recycle(&mut self, data: Vec<u8>) {
        if data.capacity() > self.spare.capacity() {
            self.spare = data;
        }
    }

    /// Queues one message and writes the connection's output if this answers the last whole
    /// message held from it (or [`FLUSH_AT`] bytes are queued); else it waits for that or for
    /// [`TcpServer::flush`]. A connection whose output exceeds the hard cap is closed (error).
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
        if self.current == Some(token) {
            conn.turn_output += data.len();
        }
        // The answer to the connection's last whole message held here: its answers go out
        // now, in one write, while its peer's next requests may be on their way.
        let answered_all = self.current == Some(token) && !conn.deframer.has_message();
        let written = if answered_all || conn.output.len() >= FLUSH_AT {
            flush(conn)
        } else {
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(token);
            }
            Ok(())
        };
        let result = written.and_then(|_| {
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
        if result.is_ok() {
            self.output_changed(token);
        }
        if let Err(reason) = result {
            self.close(registry, conn_id);
            return Err(io::Error::other(format!("connection dropped: {reason:?}")));
        }
        self.activate(token);
        Ok(())
    }

    /// Writes the output queued since the last flush, one write per connection (more only if
    /// the socket takes it in parts). A connection that fails is closed (`Down` in `out`).
    pub(super) fn flush(&mut self, registry: &Registry, out: &mut Vec<Event>) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for token in dirty.drain(..) {
            let Some(conn) = self.conns.get_mut(&token) else {
                continue;
            };
            conn.dirty = false;
            if let Err(reason) = flush(conn) {
                self.drop_conn(registry, token, reason, out);
                continue;
            }
            self.output_changed(token);
            self.activate(token);
        }
        // Keep the list's capacity (nothing was pushed meanwhile: drop_conn does not send).
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
    }

    /// True if output waits for [`TcpServer::flush`].
    pub(super) fn has_unflushed(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Bytes held for `conn`: its deframer's and its unsent output.
    pub(super) fn buffered(&self, conn: ConnId) -> Option<usize> {
        self.conns.get(&Token(conn as usize)).map(TcpConn::buffered)
    }

    /// Starts a connection to `to`; messages sent before it is established wait in its output.
    /// A refusal is reported later as `Down` (the socket turns readable with an error).
    pub(super) fn connect(&mut self, registry: &Registry, to: SocketAddr) -> io::Result<ConnId> {
        let mut stream = MioTcpStream::connect(to)?;
        let token = next_token();
        let _ = stream.set_nodelay(true);
        registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
        self.conns.insert(
            token,
            TcpConn {
                stream,
                peer: to,
                deframer: Deframer::new(),
                output: VecDeque::new(),
                readable: false,
                queued: false,
                batch: 0,
                turn_output: 0,
                partial_since: None,
                over_since: None,
                watched: false,
                dirty: false,
            },
        );
        Ok(token.0 as ConnId)
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

    /// After the output of `token` changed: pause or resume reading at the soft cap.
    /// (Streams are registered for writable events from the start: edge-triggered, they cost
    /// nothing while the output is empty, and no output change costs an epoll_ctl.)
    fn output_changed(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
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
        if watch {
            self.watch(token);
        }
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
            let Some((listener, _)) = self.listener.as_ref() else {
                self.accept_pending = false;
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => {
                    if let Some(h) = self.handoff.as_mut() {
                        let shard = h.next;
                        h.next = (shard + 1) % h.shards;
                        if shard != 0 {
                            h.given.push((shard, stream, peer));
                            continue;
                        }
                    }
                    self.adopt(registry, stream, peer, out)
                }
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
        let Some((listener, _)) = self.listener.as_ref() else {
            return false;
        };
        let result = listener.accept();
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

    /// Takes a stream this server or another one accepted: from here on it is one of this
    /// server's connections (`Up` in `out`).
    pub(super) fn adopt(
        &mut self,
        registry: &Registry,
        mut stream: MioTcpStream,
        peer: SocketAddr,
        out: &mut Vec<Event>,
    ) {
        let token = next_token();
        let _ = stream.set_nodelay(true);
        if let Err(e) =
            registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
        {
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
                // Bytes that arrived before registration raise no edge: look once.
                readable: true,
                queued: true,
                batch: 0,
                turn_output: 0,
                partial_since: None,
                over_since: None,
                watched: false,
                dirty: false,
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

/// The next message of `conn`, reading from the socket only when the deframer has none; a
/// message is copied into `spare`'s buffer.
fn pull(conn: &mut TcpConn, buf: &mut [u8], spare: &mut Vec<u8>) -> Pulled {
    loop {
        match conn.deframer.next_message_into(spare) {
            Ok(true) => {
                conn.partial_since = None;
                return Pulled::Message(std::mem::take(spare));
            }
            Ok(false) => {}
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

/// Writes what the socket takes. Log lines kept by batching go first: nothing sent overtakes
/// a line logged before it.
fn flush(conn: &mut TcpConn) -> Result<(), DownReason> {
    if !conn.output.is_empty() {
        logging::flush();
    }
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
mod tests;
