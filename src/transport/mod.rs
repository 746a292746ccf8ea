//! The transport layer shared by the registrar and the library: one abstraction, two
//! implementations — kernel SCTP (PPID 11 = ASAP, 12 = ENRP, association notifications) and TCP
//! (messages unframed on the same port numbers; the header's length delimits them, see
//! [`framing`]). No message-level logic lives here: it moves whole messages and reports
//! connections coming up and going down.
//!
//! * [`Server`]: the registrar side, driven by a mio event loop. SCTP uses one one-to-many
//!   socket (`sctp_server.rs`); TCP a listener plus one stream per peer (`tcp_server/`).
//! * [`Association`]: the PE/PU side, one blocking connection with timeouts (`association.rs`).
//!
//! A [`Server`] is pulled, not pushed: readiness only marks where input waits, and the event
//! loop takes one message at a time ([`Server::next_input`]), sending that message's answers
//! before it takes the next, within per-connection [`Limits`] (unsent output, unread input,
//! time). What a peer can make the registrar hold is thereby bounded per connection.

pub mod framing;
pub mod interfaces;
pub mod sctp;

mod association;
mod log_limit;
mod sctp_server;
mod tcp_server;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mio::{Registry, Token};

pub use association::{poll_fd, Association};
use sctp_server::SctpServer;
use tcp_server::TcpServer;
pub use tcp_server::MAX_BUFFERED_INPUT;

pub use crate::core::wire::{PPID_ASAP, PPID_ENRP};

/// Largest ASAP/ENRP message (the header's length field is 16 bits).
pub const MAX_MESSAGE_SIZE: usize = 65535;

/// What a [`Server`] lets one connection cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// TCP: nothing is read from a connection while this much of its output is unsent; the
    /// peer's unread answers then hold back its own requests in the kernel's buffers.
    pub soft_output: usize,
    /// A connection (SCTP: association) with more unsent output than this is closed at once.
    pub hard_output: usize,
    /// TCP: a connection that holds an incomplete message, or keeps its output over
    /// `soft_output`, for this long is closed.
    pub stall_timeout: Duration,
    /// Messages taken from one TCP connection per round, before the others have their turn.
    pub batch: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            soft_output: 64 * 1024,
            hard_output: 1024 * 1024,
            stall_timeout: Duration::from_secs(10),
            batch: 16,
        }
    }
}

/// "ASAP" or "ENRP", for log lines.
fn protocol_name(ppid: u32) -> &'static str {
    match ppid {
        PPID_ASAP => "ASAP",
        PPID_ENRP => "ENRP",
        _ => "other",
    }
}

/// "10 s" or "2500 ms".
fn describe_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 == 0 {
        format!("{} s", ms / 1000)
    } else {
        format!("{ms} ms")
    }
}

/// The two transports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Sctp,
    Tcp,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Sctp => "SCTP",
            Protocol::Tcp => "TCP",
        }
    }
}

/// Which transports to use (`-transport=sctp|tcp|both`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selection {
    /// SCTP where the kernel has it, and TCP (the default).
    Both,
    /// SCTP only; an error where the kernel has none.
    Sctp,
    /// TCP only.
    Tcp,
}

impl Selection {
    /// Parses `sctp`, `tcp`, `both` or `auto`.
    pub fn parse(s: &str) -> Option<Selection> {
        match s {
            "sctp" => Some(Selection::Sctp),
            "tcp" => Some(Selection::Tcp),
            "both" | "auto" => Some(Selection::Both),
            _ => None,
        }
    }

    /// The transports to open, given whether the kernel has SCTP, and a line saying what was
    /// chosen (to be logged). Errors if SCTP is forced but missing.
    pub fn resolve(self, sctp_available: bool) -> Result<(Vec<Protocol>, String), String> {
        match (self, sctp_available) {
            (Selection::Both, true) => Ok((
                vec![Protocol::Sctp, Protocol::Tcp],
                "kernel SCTP and TCP".into(),
            )),
            (Selection::Both, false) => Ok((
                vec![Protocol::Tcp],
                "TCP only: the kernel has no SCTP (automatic fallback)".into(),
            )),
            (Selection::Sctp, true) => Ok((vec![Protocol::Sctp], "SCTP only".into())),
            (Selection::Sctp, false) => {
                Err("SCTP was requested (-transport=sctp) but the kernel has no SCTP".into())
            }
            (Selection::Tcp, _) => Ok((vec![Protocol::Tcp], "TCP only".into())),
        }
    }
}

/// What one readiness event says about a socket (a close or an error counts as both: the
/// next read or write reports it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Readiness {
    pub readable: bool,
    pub writable: bool,
}

impl Readiness {
    pub fn of(ev: &mio::event::Event) -> Readiness {
        Readiness {
            readable: ev.is_readable() || ev.is_read_closed() || ev.is_error(),
            writable: ev.is_writable() || ev.is_write_closed() || ev.is_error(),
        }
    }
}

/// Identifies one association / connection for the lifetime of the process (never reused).
pub type ConnId = u64;

/// Why a connection went away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DownReason {
    /// Orderly close / SCTP shutdown.
    Closed,
    /// Reset, abort, COMM_LOST, I/O error.
    Lost,
    /// The peer sent a byte stream that cannot be cut into messages.
    ProtocolError,
    /// The peer did not read what we sent (too much of it, or for too long).
    TooSlow,
    /// The peer left a message incomplete for longer than the stall timeout.
    Stalled,
}

/// What a [`Server`] reports.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    Up {
        conn: ConnId,
        peer: Vec<SocketAddr>,
    },
    Message {
        conn: ConnId,
        ppid: u32,
        data: Vec<u8>,
    },
    Down {
        conn: ConnId,
        reason: DownReason,
    },
}

static NEXT_TOKEN: AtomicUsize = AtomicUsize::new(1);

fn next_token() -> Token {
    Token(NEXT_TOKEN.fetch_add(1, Ordering::Relaxed))
}

/// The registrar side of one endpoint (e.g. ASAP on port 3863) over one transport.
pub struct Server {
    protocol: Protocol,
    inner: ServerInner,
}

enum ServerInner {
    Sctp(SctpServer),
    Tcp(TcpServer),
}

impl Server {
    /// Binds and listens on `addrs` (several = SCTP multihoming; TCP binds the first).
    /// `ppid` is the protocol this endpoint speaks, implied for every TCP message.
    pub fn bind(
        protocol: Protocol,
        addrs: &[SocketAddr],
        ppid: u32,
        registry: &Registry,
    ) -> io::Result<Server> {
        let inner = match protocol {
            Protocol::Sctp => ServerInner::Sctp(SctpServer::bind(addrs, registry)?),
            Protocol::Tcp => ServerInner::Tcp(TcpServer::bind(addrs, ppid, registry)?),
        };
        Ok(Server { protocol, inner })
    }

    /// A TCP server without a listener, for the streams another server accepts and hands
    /// over ([`Server::set_handoff`], [`Server::adopt`]): a shard of the registrar's loop.
    pub fn tcp_shard(ppid: u32) -> Server {
        Server {
            protocol: Protocol::Tcp,
            inner: ServerInner::Tcp(TcpServer::adopting(ppid)),
        }
    }

    /// TCP: deals the streams this server accepts out to `shards` shards in turn, itself
    /// being shard 0 (1 = keep them all, the default). SCTP: nothing (one socket carries
    /// every association).
    pub fn set_handoff(&mut self, shards: usize) {
        if let ServerInner::Tcp(t) = &mut self.inner {
            t.set_handoff(shards);
        }
    }

    /// The streams accepted for other shards since the last call: (shard, stream, peer),
    /// to be given to that shard's [`Server::adopt`].
    pub fn take_handed_off(&mut self) -> Vec<(usize, mio::net::TcpStream, SocketAddr)> {
        match &mut self.inner {
            ServerInner::Tcp(t) => t.take_handed_off(),
            ServerInner::Sctp(_) => Vec::new(),
        }
    }

    /// Takes over a stream another TCP server accepted (`Up` in `out`). SCTP: ignored.
    pub fn adopt(
        &mut self,
        registry: &Registry,
        stream: mio::net::TcpStream,
        peer: SocketAddr,
        out: &mut Vec<Event>,
    ) {
        if let ServerInner::Tcp(t) = &mut self.inner {
            t.adopt(registry, stream, peer, out);
        }
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The addresses actually bound (with the real port if 0 was asked for).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        match &self.inner {
            ServerInner::Sctp(s) => sctp::local_addrs(&s.fd).unwrap_or_default(),
            ServerInner::Tcp(t) => t
                .listener
                .iter()
                .filter_map(|(l, _)| l.local_addr().ok())
                .collect(),
        }
    }

    /// True if `token` belongs to this server.
    pub fn owns(&self, token: Token) -> bool {
        match &self.inner {
            ServerInner::Sctp(s) => s.token == token,
            ServerInner::Tcp(t) => t.is_listener(token) || t.conns.contains_key(&token),
        }
    }

    /// Sets what one connection may cost (the defaults are [`Limits::default`]).
    pub fn set_limits(&mut self, limits: Limits) {
        match &mut self.inner {
            ServerInner::Sctp(s) => s.set_limits(limits),
            ServerInner::Tcp(t) => t.set_limits(limits),
        }
    }

    /// Notes readiness of one of this server's tokens and writes what is queued. Input is
    /// not read here but by [`Server::next_input`]; a connection that fails while writing is
    /// reported in `out` (`Down`).
    pub fn ready(
        &mut self,
        registry: &Registry,
        token: Token,
        ready: Readiness,
        out: &mut Vec<Event>,
    ) {
        match &mut self.inner {
            ServerInner::Sctp(s) => s.ready(registry, ready.readable, ready.writable),
            ServerInner::Tcp(t) => t.ready(registry, token, ready, out),
        }
    }

    /// Begins a round of input, to be followed by [`Server::next_input`] until it returns
    /// `None`: closes connections that stalled longer than [`Limits::stall_timeout`]
    /// (`Down`), accepts new ones (`Up`), and fixes what the round reads — at most
    /// [`Limits::batch`] messages of each TCP connection, a bounded number over SCTP.
    pub fn start_round(&mut self, registry: &Registry, now: Instant, out: &mut Vec<Event>) {
        match &mut self.inner {
            ServerInner::Sctp(s) => s.start_round(),
            ServerInner::Tcp(t) => t.start_round(registry, now, out),
        }
    }

    /// The next input of this round: a message, a connection coming up (SCTP) or going down;
    /// `None` when the round is over. The caller should send the answers to a message before
    /// it asks for the next: a TCP connection whose unsent output reaches
    /// [`Limits::soft_output`] is not read until that output drains.
    pub fn next_input(&mut self, registry: &Registry) -> Option<Event> {
        match &mut self.inner {
            ServerInner::Sctp(s) => s.next_input(),
            ServerInner::Tcp(t) => t.next_input(registry),
        }
    }

    /// True while input is waiting that no event will announce again (edge-triggered
    /// readiness): the caller must poll with a zero timeout and run another round.
    pub fn has_work(&self) -> bool {
        match &self.inner {
            ServerInner::Sctp(s) => s.has_work(),
            ServerInner::Tcp(t) => t.has_work(),
        }
    }

    /// The latest time the caller must start a round even without events (a stall
    /// timeout, a retry of accept).
    pub fn next_deadline(&self) -> Option<Instant> {
        match &self.inner {
            ServerInner::Sctp(_) => None,
            ServerInner::Tcp(t) => t.next_deadline(),
        }
    }

    /// Bytes held for `conn`: unread input (TCP) and unsent output. `None` if it is unknown.
    pub fn buffered(&self, conn: ConnId) -> Option<usize> {
        match &self.inner {
            ServerInner::Sctp(s) => s.buffered(conn),
            ServerInner::Tcp(t) => t.buffered(conn),
        }
    }

    /// Writes what [`Server::send`] queued during the round and has not written yet (TCP:
    /// output not answering the connection's own input, e.g. keep-alives; SCTP: everything),
    /// one call per connection (TCP) or per 16 messages (SCTP). To be called before the caller
    /// waits for events again; a connection that fails is reported in `out` (`Down`).
    pub fn flush(&mut self, registry: &Registry, out: &mut Vec<Event>) {
        match &mut self.inner {
            ServerInner::Sctp(s) => s.flush(registry),
            ServerInner::Tcp(t) => t.flush(registry, out),
        }
    }

    /// True while output queued by [`Server::send`] waits for [`Server::flush`].
    pub fn has_unflushed(&self) -> bool {
        match &self.inner {
            ServerInner::Sctp(s) => s.has_unflushed(),
            ServerInner::Tcp(t) => t.has_unflushed(),
        }
    }

    /// Queues one message for `conn`, written by [`Server::flush`] with the round's other
    /// output. An unknown connection is an error (NotConnected).
    pub fn send(
        &mut self,
        registry: &Registry,
        conn: ConnId,
        ppid: u32,
        data: &[u8],
    ) -> io::Result<()> {
        match &mut self.inner {
            ServerInner::Sctp(s) => s.send(registry, conn, ppid, data),
            ServerInner::Tcp(t) => t.send(registry, conn, data),
        }
    }

    /// Gives back the buffer of a message [`Server::next_input`] handed over (`Event::Message`),
    /// once it is handled: TCP copies the next message into it instead of a new allocation.
    /// Optional.
    pub fn recycle(&mut self, data: Vec<u8>) {
        match &mut self.inner {
            ServerInner::Sctp(_) => {}
            ServerInner::Tcp(t) => t.recycle(data),
        }
    }

    /// Opens a connection to `to` (a peer registrar's endpoint). TCP: the new connection at
    /// once (messages may be queued before it is established; a failure comes as `Down`).
    /// SCTP: `None`, the association comes up as an `Up` event of this server.
    pub fn connect(&mut self, registry: &Registry, to: SocketAddr) -> io::Result<Option<ConnId>> {
        match &mut self.inner {
            ServerInner::Sctp(s) => s.connect(to).map(|()| None),
            ServerInner::Tcp(t) => t.connect(registry, to).map(Some),
        }
    }

    /// Closes (TCP) or aborts (SCTP) a connection. No `Down` event follows.
    pub fn close(&mut self, registry: &Registry, conn: ConnId) {
        match &mut self.inner {
            ServerInner::Sctp(s) => s.close(conn),
            ServerInner::Tcp(t) => t.close(registry, conn),
        }
    }

    /// Number of open connections / associations.
    pub fn connections(&self) -> usize {
        match &self.inner {
            ServerInner::Sctp(s) => s.by_assoc.len(),
            ServerInner::Tcp(t) => t.conns.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_falls_back_to_tcp_and_refuses_forced_sctp() {
        assert_eq!(
            Selection::Both.resolve(false).unwrap().0,
            vec![Protocol::Tcp]
        );
        assert_eq!(
            Selection::Both.resolve(true).unwrap().0,
            vec![Protocol::Sctp, Protocol::Tcp]
        );
        assert!(Selection::Sctp.resolve(false).is_err());
        assert_eq!(Selection::parse("tcp"), Some(Selection::Tcp));
        assert_eq!(Selection::parse("udp"), None);
    }
}
