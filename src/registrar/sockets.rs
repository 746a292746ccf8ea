//! What one event-loop thread moves bytes and time between ([`Sockets`]), and the core they
//! share ([`Core`]).
//!
//! With one thread (the default) the first loop has every endpoint. With `-threads=N` the
//! first loop still has every endpoint, the announces, the metrics and the core's timers, and
//! deals the ASAP connections it accepts over TCP out in turn to itself and the other `N - 1`
//! loops (`shards.rs`), each with its own poll and its own connections. Every loop hands its
//! events to the one core under a lock (one event at a time with one loop, up to
//! [`LOCK_BATCH`] with several); reading, writing and waiting happen outside it. An output of
//! the core for a connection of another loop (a keep-alive from the timers, the close of a
//! connection whose PE another one took over, a Handle Update to a peer) is passed to that
//! loop's inbox at the end of the round and written there.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::Registry;
use parking_lot::Mutex;

use super::metrics::Metrics;
use super::reports::Reports;
use super::shards::{Inbound, Shared};
use super::{down_reason, transport_protocol, Announcer};
use crate::core::registrar::{ConnId, Output, Registrar};
use crate::logging;
use crate::transport::{Event, Readiness, Server, PPID_ENRP};

/// The core and what is counted with it: shared by the event-loop threads under one lock.
pub(super) struct Core {
    pub(super) registrar: Registrar,
    pub(super) reports: Reports,
    /// The connections served by a loop other than the first, and by which one (connection
    /// ids are a process-wide counter, not chosen by peers: a fast hash).
    pub(super) owner: HashMap<ConnId, usize, foldhash::fast::FixedState>,
}

/// What one event loop moves bytes and time between: its endpoints, which endpoint each
/// connection belongs to, the announce sockets (the first loop's).
pub(super) struct Sockets {
    /// Which loop this is: 0 runs everything, the others serve ASAP connections over TCP.
    pub(super) shard: usize,
    pub(super) registry: Registry,
    pub(super) servers: Vec<(Server, u32)>,
    /// Keyed by connection ids (a counter, not chosen by peers): a fast hash.
    pub(super) conn_server: HashMap<ConnId, usize, foldhash::fast::FixedState>,
    pub(super) announcer: Option<Announcer>,
    /// ENRP Presence by multicast: the sender and the listening socket.
    pub(super) enrp_announcer: Option<Announcer>,
    pub(super) presence_socket: Option<UdpSocket>,
    pub(super) start: Instant,
    /// Reused output buffer of the core.
    pub(super) outputs: Vec<Output>,
    /// Reused by `dispatch` for the outputs it carries out while new ones are collected.
    pub(super) dispatching: Vec<Output>,
    /// The `-metrics=` endpoint.
    pub(super) metrics: Option<Metrics>,
    /// The loop's clock: read when the loop wakes up, when a round ends, and after every
    /// [`CLOCK_REUSE`] readings of [`Sockets::now`] in between.
    pub(super) clock: Instant,
    /// Readings of `clock` since it was read.
    pub(super) clock_uses: u32,
    /// The other loops (`None` with one thread) …
    pub(super) shared: Option<Arc<Shared>>,
    /// … and what this round passes to each of them.
    pub(super) outbox: Vec<Vec<Inbound>>,
}

/// Events read before the core is locked for them all, with more than one loop.
const LOCK_BATCH: usize = 64;

/// How many events of one round share a clock reading: they are microseconds apart, and a
/// reading costs about as much as the core's work on one resolution.
const CLOCK_REUSE: u32 = 32;

impl Sockets {
    /// A loop over `servers`, with nothing else (no announces, no metrics) and no peers yet.
    pub(super) fn new(
        shard: usize,
        registry: Registry,
        servers: Vec<(Server, u32)>,
        start: Instant,
    ) -> Sockets {
        Sockets {
            shard,
            registry,
            servers,
            conn_server: HashMap::default(),
            announcer: None,
            enrp_announcer: None,
            presence_socket: None,
            start,
            outputs: Vec::new(),
            dispatching: Vec::new(),
            metrics: None,
            clock: Instant::now(),
            clock_uses: 0,
            shared: None,
            outbox: Vec::new(),
        }
    }

    /// Links this loop to the others.
    pub(super) fn join(&mut self, shared: Arc<Shared>) {
        self.outbox = (0..shared.loops()).map(|_| Vec::new()).collect();
        self.shared = Some(shared);
    }

    /// Reads the clock.
    pub(super) fn tick(&mut self) -> Instant {
        self.clock = Instant::now();
        self.clock_uses = 0;
        self.clock
    }

    /// The core's clock: microseconds since start, of the loop's last clock reading (the
    /// clock is read again after [`CLOCK_REUSE`] calls).
    pub(super) fn now(&mut self) -> u64 {
        if self.clock_uses >= CLOCK_REUSE {
            self.tick();
        }
        self.clock_uses += 1;
        self.micros()
    }

    /// The core's clock, read now (for events whose handling depends on a stall being seen).
    fn fresh_now(&mut self) -> u64 {
        self.tick();
        self.micros()
    }

    /// The last clock reading as the core's time.
    pub(super) fn micros(&self) -> u64 {
        self.clock.saturating_duration_since(self.start).as_micros() as u64
    }

    /// How long the loop may sleep: not at all while a server has input waiting or the core
    /// has work due; otherwise until the core's next timer (the first loop: `core` given) or
    /// a server's next deadline (from the last clock reading, at the end of the round).
    pub(super) fn timeout(&self, core: Option<&Core>) -> Option<Duration> {
        if self.servers.iter().any(|(s, _)| s.has_work()) {
            return Some(Duration::ZERO);
        }
        let now = self.micros();
        let timer = core
            .and_then(|c| c.registrar.next_wakeup())
            .map(|at| Duration::from_micros(at.saturating_sub(now)));
        let wall = self.clock;
        let servers = self
            .servers
            .iter()
            .filter_map(|(s, _)| s.next_deadline())
            .chain(core.and_then(|c| c.reports.next_deadline()))
            .chain(self.metrics.as_ref().and_then(Metrics::next_deadline))
            .min()
            .map(|at| at.saturating_duration_since(wall));
        match (timer, servers) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// One round of input: each server reads a bounded amount, a message's answers are
    /// queued before the next message of its connection is read (with several loops: before
    /// the next batch is). The core is locked for one event at a time (with several loops: for
    /// a batch of events), never while a socket is read.
    pub(super) fn round(&mut self, core: &Mutex<Core>, wall: Instant, events: &mut Vec<Event>) {
        for idx in 0..self.servers.len() {
            self.servers[idx]
                .0
                .start_round(&self.registry, wall, events);
            self.handle_all(idx, core, events);
            for (shard, stream, peer) in self.servers[idx].0.take_handed_off() {
                self.outbox[shard].push(Inbound::Adopt(stream, peer));
            }
            if self.shared.is_none() {
                while let Some(te) = self.servers[idx].0.next_input(&self.registry) {
                    self.handle(idx, te, &mut core.lock());
                }
                continue;
            }
            // With other loops, one lock for up to LOCK_BATCH events: taking it per event
            // made the loops wait for each other (a registration storm of 10⁶ PEs took twice
            // as long with two loops as with one). A message's answers are then queued after
            // the batch is read, not before its connection's next message is.
            loop {
                while events.len() < LOCK_BATCH {
                    match self.servers[idx].0.next_input(&self.registry) {
                        Some(te) => events.push(te),
                        None => break,
                    }
                }
                if events.is_empty() {
                    break;
                }
                self.handle_all(idx, core, events);
            }
        }
    }

    /// Readiness of one of server `idx`'s tokens; what the server reports goes to the core.
    pub(super) fn ready(
        &mut self,
        idx: usize,
        ev: &mio::event::Event,
        core: &Mutex<Core>,
        events: &mut Vec<Event>,
    ) {
        self.servers[idx]
            .0
            .ready(&self.registry, ev.token(), Readiness::of(ev), events);
        self.handle_all(idx, core, events);
    }

    /// Server `idx`'s `events` into the core, under one lock (none taken for none).
    fn handle_all(&mut self, idx: usize, core: &Mutex<Core>, events: &mut Vec<Event>) {
        if events.is_empty() {
            return;
        }
        self.handle_each(idx, events, &mut core.lock());
    }

    /// Server `idx`'s `events` into the core, whose lock the caller holds.
    fn handle_each(&mut self, idx: usize, events: &mut Vec<Event>, core: &mut Core) {
        for te in events.drain(..) {
            self.handle(idx, te, core);
        }
    }

    /// One transport event of server `idx` into the core; the core's answers out at once.
    pub(super) fn handle(&mut self, idx: usize, event: Event, core: &mut Core) {
        let mut outputs = std::mem::take(&mut self.outputs);
        // A connection that goes down removes its PEs unless the core sees that the registrar
        // was stopped (a stall: then they are kept for a while): that needs the time of now,
        // not of a reading from before a SIGSTOP that hit the middle of a round.
        let now = match event {
            Event::Down { .. } => self.fresh_now(),
            _ => self.now(),
        };
        match event {
            Event::Up { conn, peer } => {
                self.conn_server.insert(conn, idx);
                if self.shard != 0 {
                    core.owner.insert(conn, self.shard);
                }
                let p = transport_protocol(self.servers[idx].0.protocol());
                let from: Vec<String> = peer.iter().map(|a| a.to_string()).collect();
                logging::log(
                    logging::VERBOSE,
                    &format!(
                        "connection {conn} from {} over {}{}",
                        from.join(", "),
                        self.servers[idx].0.protocol().name(),
                        self.thread_name()
                    ),
                );
                core.registrar
                    .connection_up(now, conn, p, peer, &mut outputs);
            }
            Event::Message { conn, ppid, data } => {
                core.reports.message(false, ppid, &data);
                core.registrar.receive(now, conn, ppid, &data, &mut outputs);
                self.servers[idx].0.recycle(data);
            }
            Event::Down { conn, reason } => {
                self.gone(core, conn);
                logging::log(
                    logging::VERBOSE,
                    &format!("connection {conn} {}", down_reason(reason)),
                );
                core.registrar.connection_down(now, conn, &mut outputs);
            }
        }
        self.dispatch(core, &mut outputs);
        self.outputs = outputs;
    }

    /// " (thread 2)" for a connection's log line when there are several loops.
    fn thread_name(&self) -> String {
        if self.shared.is_some() {
            format!(" (thread {})", self.shard)
        } else {
            String::new()
        }
    }

    /// Forgets a connection of this loop; `None` if it is not one.
    fn gone(&mut self, core: &mut Core, conn: ConnId) -> Option<usize> {
        let idx = self.conn_server.remove(&conn)?;
        if self.shard != 0 {
            core.owner.remove(&conn);
        }
        Some(idx)
    }

    /// Writes what the round queued on every server; connections that fail on it go down in
    /// the core, whose answers to that are written too.
    pub(super) fn flush(&mut self, core: &Mutex<Core>, events: &mut Vec<Event>) {
        while self.servers.iter().any(|(s, _)| s.has_unflushed()) {
            for idx in 0..self.servers.len() {
                self.servers[idx].0.flush(&self.registry, events);
                self.handle_all(idx, core, events);
            }
        }
    }

    /// Takes what the other loops passed to this one: streams to serve, outputs to carry out.
    pub(super) fn take_inbox(&mut self, core: &Mutex<Core>, events: &mut Vec<Event>) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let inbound = shared.take(self.shard);
        if inbound.is_empty() {
            return;
        }
        let mut core = core.lock();
        let mut outputs = std::mem::take(&mut self.outputs);
        for item in inbound {
            match item {
                Inbound::Adopt(stream, peer) => {
                    // The loops other than the first have one server: ASAP over TCP.
                    self.servers[0]
                        .0
                        .adopt(&self.registry, stream, peer, events);
                    self.handle_each(0, events, &mut core);
                }
                Inbound::Output(out) => outputs.push(out),
            }
        }
        self.dispatch(&mut core, &mut outputs);
        self.outputs = outputs;
    }

    /// Passes what this round gave other loops to their inboxes, and wakes them.
    pub(super) fn send_forwards(&mut self) {
        let Some(shared) = &self.shared else {
            return;
        };
        for (shard, items) in self.outbox.iter_mut().enumerate() {
            if !items.is_empty() {
                shared.pass(shard, items);
            }
        }
    }

    /// Takes every multicast Presence waiting on the announce socket.
    pub(super) fn read_presence(&mut self, core: &mut Core) {
        let mut buf = [0u8; 65536];
        for _ in 0..256 {
            let Some(s) = &self.presence_socket else {
                return;
            };
            let Ok((n, from)) = s.recv_from(&mut buf) else {
                return;
            };
            let mut outputs = std::mem::take(&mut self.outputs);
            let now = self.now();
            core.registrar
                .receive_announce(now, &buf[..n], from, &mut outputs);
            self.dispatch(core, &mut outputs);
            self.outputs = outputs;
        }
    }

    /// Opens an ENRP connection to a peer over the first transport's ENRP endpoint.
    fn connect(&mut self, core: &mut Core, to: SocketAddr, outputs: &mut Vec<Output>) {
        let Some(idx) = self.servers.iter().position(|(_, ppid)| *ppid == PPID_ENRP) else {
            return;
        };
        let now = self.now();
        let protocol = self.servers[idx].0.protocol();
        match self.servers[idx].0.connect(&self.registry, to) {
            Ok(Some(conn)) => {
                self.conn_server.insert(conn, idx);
                logging::log(
                    logging::VERBOSE,
                    &format!("connecting to ENRP peer {to} over {}", protocol.name()),
                );
                core.registrar
                    .connected(now, conn, transport_protocol(protocol), to, outputs);
            }
            Ok(None) => logging::log(
                logging::VERBOSE,
                &format!("associating with ENRP peer {to} over {}", protocol.name()),
            ),
            Err(e) => {
                logging::log(
                    logging::VERBOSE,
                    &format!("cannot connect to ENRP peer {to}: {e}"),
                );
                core.registrar.connect_failed(now, to, outputs);
            }
        }
    }

    /// An output this loop cannot carry out goes to the loop that can: the one serving
    /// `conn`, or the first (which has every other endpoint). Dropped if that is this loop
    /// (the connection is gone).
    fn forward(&mut self, core: &Core, conn: Option<ConnId>, out: Output) {
        let target = conn.and_then(|c| core.owner.get(&c).copied()).unwrap_or(0);
        if target != self.shard {
            self.outbox[target].push(Inbound::Output(out));
        }
    }

    /// Carries out the core's outputs, and those they cause, until none is left.
    pub(super) fn dispatch(&mut self, core: &mut Core, outputs: &mut Vec<Output>) {
        let mut batch = std::mem::take(&mut self.dispatching);
        while !outputs.is_empty() {
            std::mem::swap(outputs, &mut batch);
            for out in batch.drain(..) {
                match out {
                    Output::Send { conn, ppid, data } => {
                        let Some(&idx) = self.conn_server.get(&conn) else {
                            self.forward(core, Some(conn), Output::Send { conn, ppid, data });
                            continue;
                        };
                        core.reports.message(true, ppid, &data);
                        let server = &mut self.servers[idx].0;
                        let sent = server.send(&self.registry, conn, ppid, &data);
                        // The bytes are copied into the connection's output: the buffer can
                        // hold the core's next answer.
                        core.registrar.recycle(data);
                        if let Err(e) = sent {
                            logging::log(
                                logging::VERBOSE,
                                &format!("connection {conn}: send failed ({e}), dropping it"),
                            );
                            self.servers[idx].0.close(&self.registry, conn);
                            self.gone(core, conn);
                            let now = self.fresh_now();
                            core.registrar.connection_down(now, conn, outputs);
                        }
                    }
                    Output::Close { conn } => match self.gone(core, conn) {
                        Some(idx) => self.servers[idx].0.close(&self.registry, conn),
                        None => self.forward(core, Some(conn), Output::Close { conn }),
                    },
                    Output::Connect { to } if self.shard == 0 => self.connect(core, to, outputs),
                    Output::Announce { data } if self.shard == 0 => {
                        if let Some(a) = self.announcer.as_mut() {
                            core.reports.announce(&data);
                            // Kept log lines first, as the transports do before a write.
                            logging::flush();
                            a.send(&data);
                        }
                    }
                    Output::EnrpAnnounce { data } if self.shard == 0 => {
                        if let Some(a) = self.enrp_announcer.as_mut() {
                            logging::flush();
                            a.send(&data);
                        }
                    }
                    Output::Log { level, text } => logging::log(u32::from(level), &text),
                    // Endpoints only the first loop has.
                    other => self.forward(core, None, other),
                }
            }
        }
        self.dispatching = batch;
    }
}
