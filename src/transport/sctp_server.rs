//! The registrar's kernel SCTP endpoint: one one-to-many socket for all associations.
//!
//! All associations share one socket, so one association cannot be paused without pausing
//! all: the bounds here are per round (at most [`ROUND_MESSAGES`] messages and notifications
//! are read, then the other servers and the timers have their turn) and per association (its
//! queued output; an association over [`Limits::hard_output`] is aborted). The kernel's
//! receive buffer pushes back on a flooding peer meanwhile.
//!
//! Input is read [`sctp::BATCH`] messages per `recvmmsg`; output is queued during the round and
//! written by [`SctpServer::flush`], [`sctp::BATCH`] messages per `sendmmsg`.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use super::log_limit::LogLimiter;
use super::{next_token, sctp, ConnId, DownReason, Event, Limits, MAX_MESSAGE_SIZE};
use crate::logging;

/// Messages and notifications read per round.
const ROUND_MESSAGES: usize = 64;

pub(super) struct SctpServer {
    pub(super) fd: OwnedFd,
    pub(super) token: Token,
    pub(super) by_assoc: HashMap<sctp::AssocId, ConnId>,
    by_conn: HashMap<ConnId, sctp::AssocId>,
    /// Messages the socket did not take yet, in order.
    pending: VecDeque<(sctp::AssocId, u32, Vec<u8>)>,
    /// Bytes in `pending` per association.
    pending_bytes: HashMap<sctp::AssocId, usize>,
    want_write: bool,
    /// Output was queued since the last [`SctpServer::flush`].
    dirty: bool,
    /// The socket may hold unread messages: an edge was reported and no read has since said
    /// WouldBlock.
    readable: bool,
    /// Reads left in this round.
    round_left: usize,
    /// Events of one read beyond the one returned (an association's Up before its first
    /// message).
    events: VecDeque<Event>,
    limits: Limits,
    batch: sctp::RecvBatch,
    close_log: LogLimiter,
}

impl SctpServer {
    pub(super) fn bind(addrs: &[SocketAddr], registry: &Registry) -> io::Result<SctpServer> {
        let family = if addrs.iter().any(|a| a.is_ipv6()) {
            libc::AF_INET6
        } else {
            libc::AF_INET
        };
        let fd = sctp::socket(family, libc::SOCK_SEQPACKET)?;
        let one: libc::c_int = 1;
        // SAFETY: plain setsockopt with an int.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_REUSEADDR,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        sctp::configure(&fd)?;
        sctp::bind_all(&fd, addrs)?;
        sctp::listen(&fd, 1024)?;
        let token = next_token();
        registry.register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE)?;
        Ok(SctpServer {
            fd,
            token,
            by_assoc: HashMap::new(),
            by_conn: HashMap::new(),
            pending: VecDeque::new(),
            pending_bytes: HashMap::new(),
            want_write: false,
            dirty: false,
            // A backlog that arrived before registration would raise no edge.
            readable: true,
            round_left: 0,
            events: VecDeque::new(),
            limits: Limits::default(),
            batch: sctp::RecvBatch::new(MAX_MESSAGE_SIZE + 1024),
            close_log: LogLimiter::new(Duration::from_secs(10), 10),
        })
    }

    pub(super) fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Notes readiness; writes what is queued.
    pub(super) fn ready(&mut self, registry: &Registry, readable: bool, writable: bool) {
        if readable {
            self.readable = true;
        }
        if writable && !self.pending.is_empty() {
            self.write_pending();
        }
        self.update_interest(registry);
    }

    /// Writes what was queued during the round.
    pub(super) fn flush(&mut self, registry: &Registry) {
        self.dirty = false;
        self.write_pending();
        self.update_interest(registry);
    }

    /// True while output queued during the round waits for [`SctpServer::flush`].
    pub(super) fn has_unflushed(&self) -> bool {
        self.dirty
    }

    pub(super) fn start_round(&mut self) {
        self.round_left = ROUND_MESSAGES;
    }

    pub(super) fn has_work(&self) -> bool {
        self.readable || !self.events.is_empty()
    }

    /// The next message or association change of this round.
    pub(super) fn next_input(&mut self) -> Option<Event> {
        while self.events.is_empty() && self.readable && self.round_left > 0 {
            self.read_batch();
        }
        self.events.pop_front()
    }

    /// Reads up to [`sctp::BATCH`] messages and notifications into `events`; they count
    /// against the round's [`ROUND_MESSAGES`] (a round may thus read up to a batch more).
    fn read_batch(&mut self) {
        let n = loop {
            match self.batch.recv(self.fd.as_raw_fd()) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.readable = false;
                    return;
                }
            }
        };
        self.round_left = self.round_left.saturating_sub(n);
        for i in 0..n {
            let (received, data) = self.batch.get(i);
            match received {
                sctp::Received::Data {
                    assoc,
                    ppid,
                    len,
                    complete,
                    ..
                } => {
                    if complete {
                        let data = data[..len].to_vec();
                        let conn = self.conn_for(assoc);
                        self.events.push_back(Event::Message { conn, ppid, data });
                    } else {
                        // Larger than any ASAP/ENRP message can be: drop the association.
                        self.conn_for(assoc);
                        let _ = sctp::abort(self.fd.as_raw_fd(), assoc);
                        self.drop_assoc(assoc, DownReason::ProtocolError);
                    }
                }
                sctp::Received::AssocChange { assoc, state } => match state {
                    sctp::SCTP_COMM_UP | sctp::SCTP_RESTART => {
                        self.conn_for(assoc);
                    }
                    sctp::SCTP_SHUTDOWN_COMP => self.drop_assoc(assoc, DownReason::Closed),
                    _ => self.drop_assoc(assoc, DownReason::Lost),
                },
                sctp::Received::Shutdown { assoc } => self.drop_assoc(assoc, DownReason::Closed),
                sctp::Received::OtherNotification => {}
            }
        }
    }

    fn conn_for(&mut self, assoc: sctp::AssocId) -> ConnId {
        if let Some(c) = self.by_assoc.get(&assoc) {
            return *c;
        }
        let conn = next_token().0 as ConnId;
        self.by_assoc.insert(assoc, conn);
        self.by_conn.insert(conn, assoc);
        let peer = sctp::peer_addrs(&self.fd, assoc).unwrap_or_default();
        self.events.push_back(Event::Up { conn, peer });
        conn
    }

    fn drop_assoc(&mut self, assoc: sctp::AssocId, reason: DownReason) {
        if let Some(conn) = self.by_assoc.remove(&assoc) {
            self.by_conn.remove(&conn);
            self.forget_pending(assoc);
            self.events.push_back(Event::Down { conn, reason });
        }
    }

    /// Drops the queued output of an association that is gone.
    fn forget_pending(&mut self, assoc: sctp::AssocId) {
        if self.pending_bytes.remove(&assoc).is_some() {
            self.pending.retain(|(a, _, _)| *a != assoc);
        }
    }

    fn update_interest(&mut self, registry: &Registry) {
        let want = !self.pending.is_empty();
        if want != self.want_write {
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if registry
                .reregister(&mut SourceFd(&self.fd.as_raw_fd()), self.token, interest)
                .is_ok()
            {
                self.want_write = want;
            }
        }
    }

    /// Writes queued messages, [`sctp::BATCH`] per call, until the socket takes no more.
    fn write_pending(&mut self) {
        if !self.pending.is_empty() {
            // Log lines kept by batching go first: nothing sent overtakes a line logged
            // before it.
            logging::flush();
        }
        while !self.pending.is_empty() {
            let batch: Vec<(sctp::AssocId, u32, &[u8])> = self
                .pending
                .iter()
                .take(sctp::BATCH)
                .map(|(a, p, d)| (*a, *p, d.as_slice()))
                .collect();
            let done = match sctp::send_batch(self.fd.as_raw_fd(), &batch) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // The first message's association is gone (its Down arrives as a
                // notification): drop that message.
                Err(_) => 1,
            };
            for _ in 0..done {
                let (assoc, _, data) = self.pending.pop_front().expect("sent");
                if let Some(n) = self.pending_bytes.get_mut(&assoc) {
                    *n -= data.len();
                    if *n == 0 {
                        self.pending_bytes.remove(&assoc);
                    }
                }
            }
        }
    }

    pub(super) fn send(
        &mut self,
        registry: &Registry,
        conn: ConnId,
        ppid: u32,
        data: &[u8],
    ) -> io::Result<()> {
        let assoc = *self
            .by_conn
            .get(&conn)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))?;
        let queued = self.pending_bytes.get(&assoc).copied().unwrap_or(0) + data.len();
        if queued > self.limits.hard_output {
            let peer = sctp::peer_addrs(&self.fd, assoc).unwrap_or_default();
            let limit = self.limits.hard_output;
            self.close_log.log(Instant::now(), logging::WARNING, || {
                format!(
                    "{} association {conn} from {peer:?} over SCTP aborted: it does not read \
                     its answers ({queued} bytes waiting, over the limit of {limit})",
                    super::protocol_name(ppid)
                )
            });
            self.close(conn);
            return Err(io::Error::other(format!(
                "connection dropped: {:?}",
                DownReason::TooSlow
            )));
        }
        self.pending.push_back((assoc, ppid, data.to_vec()));
        self.pending_bytes.insert(assoc, queued);
        self.dirty = true;
        // A round's output that fills a batch goes now (the rest with the round's flush).
        if self.pending.len() >= sctp::BATCH {
            self.write_pending();
            self.update_interest(registry);
        }
        Ok(())
    }

    /// Unsent output of `conn`.
    pub(super) fn buffered(&self, conn: ConnId) -> Option<usize> {
        let assoc = self.by_conn.get(&conn)?;
        Some(self.pending_bytes.get(assoc).copied().unwrap_or(0))
    }

    /// Starts an association to `to` from this endpoint; it comes up as an `Up` event.
    pub(super) fn connect(&mut self, to: SocketAddr) -> io::Result<()> {
        match sctp::connectx(self.fd.as_raw_fd(), &[to]) {
            Ok(()) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINPROGRESS) | Some(libc::EALREADY) | Some(libc::EISCONN)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    pub(super) fn close(&mut self, conn: ConnId) {
        if let Some(assoc) = self.by_conn.remove(&conn) {
            self.by_assoc.remove(&assoc);
            self.forget_pending(assoc);
            let _ = sctp::abort(self.fd.as_raw_fd(), assoc);
        }
    }
}
