//! The registrar's protocol state machine (sans-I/O): ASAP towards pool elements and pool users
//! (`asap_service.rs`, `supervision.rs`), ENRP towards other registrars and tools
//! (`enrp_service.rs` in, the peer table in `peers.rs`, synchronisation in `sync.rs`,
//! takeover in `takeover.rs`).
//!
//! Input: connections coming up and going down, received messages, the passing of time — each
//! with `now`. Output: [`Output`]s (messages to send, connections to close, announces, log
//! lines) and [`Registrar::next_wakeup`]. The registrar's I/O loop (`crate::registrar`) only
//! moves these in and out.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};

use crate::core::checksum;
use crate::core::handlespace::{
    self, Handlespace, HandlespaceError, Micros, RegisterOutcome, Registration, UnreachableOutcome,
};
use crate::core::types::{
    PeId, PolicyInfo, PoolHandle, RegistrarId, TransportAddress, TransportProtocol,
    TRANSPORT_USE_DATA_ONLY,
};
use crate::core::wire::{
    self, asap, cause, enrp, AsapBody, AsapMessage, EnrpBody, EnrpMessage, ErrorCause,
    OperationError, PoolEntries, ServerInformation, PPID_ASAP, PPID_ENRP,
};

mod asap_service;
mod enrp_service;
mod invariants;
mod keepalive;
mod limits;
mod peers;
mod supervision;
mod sync;
mod takeover;

use asap_service::{element_size, to_wire_element};
use keepalive::KeepAlives;
pub use limits::{AddressPrefix, Counters, Refusal, REFUSAL_LOG_INTERVAL};
use limits::{Host, Rate, RefusalLog};
use peers::{Dial, Peer, Startup};
pub use peers::{EnrpSettings, PeerInfo, MAX_PEERS};

/// Identifies a connection / association (assigned by the transport layer).
pub type ConnId = u64;

/// The port a tool (hsdump, not a peer) sees in every PE's ASAP transport instead of the
/// PE's registrar-side port. Not 0: rsplib's handlespace (and so Debian's `hsdump`) refuses a
/// PE whose registrator transport has port 0; port 1 is never an ephemeral port.
pub const HIDDEN_ASAP_PORT: u16 = 1;

/// Most PEs in one handle resolution response (rsplib `MAX_MAX_HANDLE_RESOLUTION_ITEMS`).
pub const MAX_HR_ITEMS: u32 = 128;
/// Handle Table Response limits (rsplib): PEs and bytes per message.
pub const HT_MAX_PES: usize = 128;
pub const HT_MAX_BYTES: usize = 1400;

/// Smallest address scope accepted in registrations (rsplib's `-minaddressscope`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AddressScope {
    Loopback,
    LinkLocal,
    SiteLocal,
    Global,
}

impl AddressScope {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "loopback" => Some(AddressScope::Loopback),
            "linklocal" => Some(AddressScope::LinkLocal),
            "sitelocal" => Some(AddressScope::SiteLocal),
            "global" => Some(AddressScope::Global),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            AddressScope::Loopback => "loopback",
            AddressScope::LinkLocal => "linklocal",
            AddressScope::SiteLocal => "sitelocal",
            AddressScope::Global => "global",
        }
    }

    /// The scope of an address (unspecified counts as loopback: never usable above it).
    pub fn of(addr: &IpAddr) -> AddressScope {
        match addr {
            IpAddr::V4(a) => {
                if a.is_loopback() || a.is_unspecified() {
                    AddressScope::Loopback
                } else if a.is_link_local() {
                    AddressScope::LinkLocal
                } else if a.is_private() {
                    AddressScope::SiteLocal
                } else {
                    AddressScope::Global
                }
            }
            IpAddr::V6(a) => {
                if let Some(v4) = a.to_ipv4_mapped() {
                    return AddressScope::of(&IpAddr::V4(v4));
                }
                let seg0 = a.segments()[0];
                if a.is_loopback() || a.is_unspecified() {
                    AddressScope::Loopback
                } else if seg0 & 0xffc0 == 0xfe80 {
                    AddressScope::LinkLocal
                } else if seg0 & 0xffc0 == 0xfec0 || seg0 & 0xfe00 == 0xfc00 {
                    AddressScope::SiteLocal
                } else {
                    AddressScope::Global
                }
            }
        }
    }
}

/// Default [`RegistrarConfig::stall_gap`]: the registrar asks to be woken every
/// [`TICK`], so two seconds without a call mean the process did not run.
pub const DEFAULT_STALL_GAP: Micros = 2_000_000;
/// The registrar asks to be woken at least this often (to notice stalls).
pub const TICK: Micros = 500_000;
/// Default [`RegistrarConfig::keepalive_slot`]: 10 ms.
pub const DEFAULT_KEEPALIVE_SLOT: Micros = 10_000;

/// Protocol settings of the registrar (times in microseconds).
#[derive(Clone, Debug)]
pub struct RegistrarConfig {
    pub id: RegistrarId,
    pub max_hr_items: u32,
    pub max_bad_pe_reports: u32,
    pub keepalive_interval: Micros,
    pub keepalive_timeout: Micros,
    pub announce_cycle: Option<Micros>,
    pub min_address_scope: AddressScope,
    /// Handle resolutions per second and host; `None` = unlimited.
    pub max_hr_rate: Option<u32>,
    /// Endpoint Unreachable reports per second and host; `None` = unlimited.
    pub max_eu_rate: Option<u32>,
    /// This registrar's ENRP endpoint, as advertised in Presence (Server Information).
    pub enrp_transport: Option<TransportAddress>,
    /// PEs registered from one host; `None` = no limit.
    pub max_pes_per_host: Option<u32>,
    /// PEs in one pool; `None` = no limit.
    pub max_pes_per_pool: Option<u32>,
    /// Open connections in all; `None` = no limit.
    pub max_connections: Option<u32>,
    /// Open connections from one host; `None` = no limit.
    pub max_connections_per_host: Option<u32>,
    /// A connection with no PE and no message for this long is closed.
    pub idle_timeout: Micros,
    /// Hosts that may query the handlespace over ENRP as tools (hsdump).
    pub enrp_allow: Vec<AddressPrefix>,
    /// Configured ENRP peers' addresses: they may always speak ENRP.
    pub peers: Vec<IpAddr>,
    /// Configured ENRP peers' endpoints (`-peer=`), dialled at start and whenever the
    /// connection is lost.
    pub static_peers: Vec<SocketAddr>,
    /// ENRP timers and paging.
    pub enrp: EnrpSettings,
    /// rsplib's MaxIncrement of the round-robin policies (`-maxincrement=`; 0 = the policy's
    /// default).
    pub max_increment: u32,
    /// Send Presence by multicast every heartbeat ([`Output::EnrpAnnounce`]) and dial the
    /// registrars heard there ([`Registrar::receive_announce`]).
    pub enrp_announce: bool,
    /// A gap this long between two calls means the process did not run (SIGSTOP, a paused
    /// VM): the registrar then gives every PE one keep-alive round before it removes any
    /// (see [`Registrar::recovering`]). `None` = never (tests with a jumping clock).
    pub stall_gap: Option<Micros>,
    /// Keep-alive timers of one connection's PEs are run together in slots this wide: a
    /// keep-alive or timeout is late by less than this (1 = exactly on time).
    pub keepalive_slot: Micros,
    /// The I/O loop's log level: the frequent [`Output::Log`] lines above it (a PE
    /// registered, re-registered or removed) are not made, so their text is never formatted
    /// only to be dropped. [`LOG_ALL`] by default.
    pub log_level: u8,
}

impl RegistrarConfig {
    /// rsplib 3.4's defaults.
    pub fn new(id: RegistrarId) -> Self {
        RegistrarConfig {
            id,
            max_hr_items: 3,
            max_bad_pe_reports: handlespace::DEFAULT_MAX_BAD_PE_REPORTS,
            keepalive_interval: 5_000_000,
            keepalive_timeout: 5_000_000,
            announce_cycle: Some(1_000_000),
            min_address_scope: AddressScope::SiteLocal,
            max_hr_rate: None,
            max_eu_rate: None,
            enrp_transport: None,
            max_pes_per_host: None,
            max_pes_per_pool: None,
            max_connections: None,
            max_connections_per_host: None,
            idle_timeout: 300_000_000,
            enrp_allow: AddressPrefix::loopback(),
            peers: Vec::new(),
            static_peers: Vec::new(),
            enrp: EnrpSettings::default(),
            enrp_announce: false,
            max_increment: 0,
            stall_gap: Some(DEFAULT_STALL_GAP),
            keepalive_slot: DEFAULT_KEEPALIVE_SLOT,
            log_level: LOG_ALL,
        }
    }
}

/// Log levels of [`Output::Log`] (rsplib-style: 1 errors … 9 verbose).
pub const LOG_ERROR: u8 = 1;
pub const LOG_WARNING: u8 = 2;
pub const LOG_ACTION: u8 = 3;
pub const LOG_VERBOSE: u8 = 5;
/// Every line ([`RegistrarConfig::log_level`]).
pub const LOG_ALL: u8 = 9;

/// What the state machine asks its I/O loop to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    /// Send one message on a connection.
    Send {
        conn: ConnId,
        ppid: u32,
        data: Vec<u8>,
    },
    /// Close (TCP) / abort (SCTP) a connection; [`Registrar::connection_down`] need not be called.
    Close { conn: ConnId },
    /// Open an ENRP connection to a peer's endpoint; report the result with
    /// [`Registrar::connected`] / [`Registrar::connect_failed`] (TCP), or let the association
    /// come up as usual (SCTP, [`Registrar::connection_up`]).
    Connect { to: SocketAddr },
    /// Send one ASAP Server Announce by UDP multicast.
    Announce { data: Vec<u8> },
    /// Send one ENRP Presence by UDP multicast (`-enrpannounce=`).
    EnrpAnnounce { data: Vec<u8> },
    /// A log line.
    Log { level: u8, text: String },
}

#[derive(Debug)]
struct Conn {
    protocol: TransportProtocol,
    peer: Vec<SocketAddr>,
    /// The host it comes from (its first peer address): what per-host limits count.
    host: IpAddr,
    /// PEs registered over this connection.
    pes: BTreeSet<(PoolHandle, PeId)>,
    /// An ENRP peer (or tool) identified by its Presence.
    enrp_peer: Option<RegistrarId>,
    /// When it last sent a message (or came up).
    last_activity: Micros,
    /// We opened it (to a peer).
    dialled: bool,
    /// The ENRP endpoint it reaches, if it is one of our dials.
    dial: Option<SocketAddr>,
    /// Where the next Handle Table Response to this connection continues (own-only flag).
    ht_cursor: Option<(bool, handlespace::WalkCursor)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    SendKeepAlive,
    KeepAliveTimeout,
}

/// Most timers, expiries or orphans one [`Registrar::poll`] call handles; the rest waits for
/// the next call ([`Registrar::next_wakeup`] is then due at once), so the I/O loop serves
/// sockets in between.
pub const MAX_WORK_PER_POLL: usize = 1024;
/// How often idle connections, stale host entries and orphans are swept.
const SWEEP_INTERVAL: Micros = 1_000_000;

/// The registrar.
pub struct Registrar {
    cfg: RegistrarConfig,
    hs: Handlespace,
    /// Keyed by the transport's connection ids (a counter, not chosen by peers): a fast hash.
    conns: HashMap<ConnId, Conn, foldhash::fast::FixedState>,
    /// Per-host state: connections, PEs, request rates.
    hosts: HashMap<IpAddr, Host>,
    /// The PEs homed here under keep-alive supervision, with their timers (per connection).
    supervision: KeepAlives,
    next_announce: Option<Micros>,
    /// PEs whose connection went down while the registrar recovered from a stall: kept (not
    /// supervised) until the deadline, for their PE to re-register over a new connection.
    orphans: HashMap<(PoolHandle, PeId), Micros>,
    /// The distinct hosts that reported a PE unreachable.
    reporters: HashMap<(PoolHandle, PeId), Vec<IpAddr>>,
    /// The last time any input arrived (to notice that the process did not run for a while).
    last_seen: Option<Micros>,
    /// Until when the registrar recovers from a stall (see [`RegistrarConfig::stall_gap`]).
    recovering_until: Option<Micros>,
    next_sweep: Micros,
    counters: Counters,
    refusal_log: RefusalLog,
    /// ENRP peers by id.
    peers: BTreeMap<RegistrarId, Peer>,
    /// ENRP endpoints to keep a connection to.
    dials: BTreeMap<SocketAddr, Dial>,
    /// Joining: hunting for a mentor, or fetching its table.
    startup: Option<Startup>,
    next_heartbeat: Micros,
    /// Handle resolutions waiting for the mentor's table.
    deferred: Vec<(ConnId, PoolHandle, Option<u32>)>,
    /// The PEs a handle resolution selects (kept for its capacity).
    selected: Vec<handlespace::PeRef>,
    /// Emptied message buffers given back by the I/O loop ([`Registrar::recycle`]), to encode
    /// handle resolution answers into.
    spare: Vec<Vec<u8>>,
}

/// Most buffers [`Registrar::recycle`] keeps, and the largest capacity it keeps.
const SPARE_BUFFERS: usize = 64;
const SPARE_CAPACITY: usize = 4096;

impl Registrar {
    /// A registrar with an empty handlespace; `seed` drives the randomized policies.
    pub fn new(cfg: RegistrarConfig, seed: u64, now: Micros) -> Self {
        let mut hs_cfg = handlespace::Config::registrar();
        hs_cfg.max_bad_pe_reports = cfg.max_bad_pe_reports;
        hs_cfg.max_increment = cfg.max_increment;
        let next_announce = cfg.announce_cycle.map(|_| now);
        let supervision = KeepAlives::new(cfg.keepalive_slot, seed.rotate_left(17));
        let mut r = Registrar {
            hs: Handlespace::with_seed(hs_cfg, seed),
            cfg,
            conns: HashMap::default(),
            hosts: HashMap::new(),
            supervision,
            next_announce,
            orphans: HashMap::new(),
            reporters: HashMap::new(),
            last_seen: Some(now),
            recovering_until: None,
            next_sweep: now + SWEEP_INTERVAL,
            counters: Counters::default(),
            refusal_log: RefusalLog::default(),
            peers: BTreeMap::new(),
            dials: BTreeMap::new(),
            startup: None,
            next_heartbeat: now,
            deferred: Vec::new(),
            selected: Vec::new(),
            spare: Vec::new(),
        };
        r.init_peers(now);
        r
    }

    pub fn id(&self) -> RegistrarId {
        self.cfg.id
    }

    /// The handlespace (read-only view for tools, tests and ENRP).
    pub fn handlespace(&self) -> &Handlespace {
        &self.hs
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// What the registrar has done and refused so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Gives back the buffer of a sent [`Output::Send`]: later answers to handle resolutions
    /// are encoded into it instead of a new allocation. Optional (a buffer not given back is
    /// simply dropped); a few small ones are kept, the rest dropped.
    pub fn recycle(&mut self, mut buf: Vec<u8>) {
        if self.spare.len() < SPARE_BUFFERS && buf.capacity() <= SPARE_CAPACITY {
            buf.clear();
            self.spare.push(buf);
        }
    }

    /// An empty buffer to encode a message into: a recycled one if there is one.
    fn buffer(&mut self) -> Vec<u8> {
        self.spare.pop().unwrap_or_else(|| Vec::with_capacity(256))
    }

    /// Whether the registrar is recovering from a stall at `now` (see
    /// [`RegistrarConfig::stall_gap`]).
    pub fn recovering(&self, now: Micros) -> bool {
        self.recovering_until.is_some_and(|t| now < t)
    }

    /// A connection came up (`peer` = its remote addresses, several for multihomed SCTP). Over
    /// the connection limits it is refused: [`Output::Close`] and a log line.
    pub fn connection_up(
        &mut self,
        now: Micros,
        conn: ConnId,
        protocol: TransportProtocol,
        peer: Vec<SocketAddr>,
        out: &mut Vec<Output>,
    ) {
        self.observe(now, out);
        let host = peer
            .first()
            .map(|a| canonical(&a.ip()))
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let host_conns = self.hosts.get(&host).map_or(0, |h| h.conns);
        let why = if over(self.conns.len(), self.cfg.max_connections) {
            Some(format!(
                "{} connections open, the limit (-maxconnections)",
                self.conns.len()
            ))
        } else if over(host_conns as usize, self.cfg.max_connections_per_host) {
            Some(format!(
                "{host_conns} connections from {host} already, the limit (-maxconnectionsperhost)"
            ))
        } else {
            None
        };
        if let Some(why) = why {
            self.refuse(Refusal::Connection, now, out, || {
                format!("refused a connection from {host}: {why}")
            });
            out.push(Output::Close { conn });
            return;
        }
        self.hosts.entry(host).or_default().conns += 1;
        self.conns.insert(
            conn,
            Conn {
                protocol,
                peer,
                host,
                pes: BTreeSet::new(),
                enrp_peer: None,
                last_activity: now,
                dialled: false,
                dial: None,
                ht_cursor: None,
            },
        );
        // An SCTP association to an endpoint we dial (whoever started it) serves that dial.
        if protocol == TransportProtocol::Sctp {
            let dial = self
                .conns
                .get(&conn)
                .and_then(|c| c.peer.iter().find(|a| self.dials.contains_key(a)).copied());
            if let Some(addr) = dial {
                if self.dials.get(&addr).is_some_and(|d| d.conn.is_none()) {
                    self.bind_dial(now, addr, conn, out);
                }
            }
        }
    }

    /// A connection went down: every PE registered over it is removed at once (while the
    /// registrar recovers from a stall, they are kept for one keep-alive round instead).
    pub fn connection_down(&mut self, now: Micros, conn: ConnId, out: &mut Vec<Output>) {
        self.observe(now, out);
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        if let Some(h) = self.hosts.get_mut(&c.host) {
            h.conns = h.conns.saturating_sub(1);
            h.pes = h.pes.saturating_sub(c.pes.len() as u32);
        }
        self.enrp_connection_down(now, &c, conn);
        self.deferred.retain(|d| d.0 != conn);
        let keep_until = self.recovering_until.filter(|&t| now < t);
        for key in c.pes {
            if let Some(deadline) = keep_until {
                self.forget_supervision(&key);
                out.push(log(
                    LOG_ACTION,
                    format!(
                        "PE {} of pool \"{}\": its connection went down while the registrar \
                         recovers from a stall; kept {} ms for it to register again",
                        key.1,
                        key.0,
                        (deadline - now) / 1000
                    ),
                ));
                self.orphans.insert(key, deadline);
                continue;
            }
            match self.hs.deregister(&key.0, key.1) {
                Some(pe) => self.removed(&key, &pe, out, |at| {
                    format!(
                        "removed PE {} of pool \"{}\" at {at}: its connection went down",
                        key.1, key.0
                    )
                }),
                None => self.pe_gone(&key),
            }
        }
    }

    /// The next time [`Registrar::poll`] has work to do (at most [`TICK`] ahead: the
    /// registrar sweeps idle connections and notices stalls).
    pub fn next_wakeup(&self) -> Option<Micros> {
        let expiry = match self.recovering_until {
            Some(t) => Some(t),
            None => self.hs.next_expiry(),
        };
        [
            self.supervision.next_due(),
            expiry,
            self.next_announce,
            Some(self.next_sweep),
            self.last_seen.map(|t| t + TICK),
            self.next_peer_wakeup(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs the work due at `now`: keep-alives, keep-alive timeouts, registration expiry,
    /// server announces, sweeps; at most [`MAX_WORK_PER_POLL`] of each kind per call.
    pub fn poll(&mut self, now: Micros, out: &mut Vec<Output>) {
        self.observe(now, out);
        self.run_timers(now, out);
        if self.recovering_until.is_some_and(|t| now >= t) {
            self.recovering_until = None;
        }
        if self.recovering_until.is_none() {
            for _ in 0..MAX_WORK_PER_POLL {
                let Some((ph, pe)) = self.hs.pop_expired(now) else {
                    break;
                };
                let key = (ph, pe.id());
                self.counters.expired += 1;
                self.removed(&key, &pe, out, |at| {
                    format!("PE {} of pool \"{}\" at {at} expired", key.1, key.0)
                });
            }
        }
        self.run_peer_timers(now, out);
        if now >= self.next_sweep {
            self.sweep(now, out);
            self.next_sweep = now + SWEEP_INTERVAL;
        }
        if let (Some(at), Some(cycle)) = (self.next_announce, self.cfg.announce_cycle) {
            if at <= now {
                let msg = AsapMessage::new(AsapBody::ServerAnnounce {
                    server_id: self.cfg.id,
                    transports: Vec::new(),
                });
                if let Ok(data) = msg.to_bytes() {
                    out.push(Output::Announce { data });
                }
                self.next_announce = Some(now + cycle);
            }
        }
    }

    /// One message received on `conn` with SCTP PPID `ppid` (over TCP: the endpoint's protocol).
    pub fn receive(
        &mut self,
        now: Micros,
        conn: ConnId,
        ppid: u32,
        data: &[u8],
        out: &mut Vec<Output>,
    ) {
        self.observe(now, out);
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.last_activity = now;
        match ppid {
            PPID_ASAP => self.receive_asap(now, conn, data, out),
            PPID_ENRP => self.receive_enrp(now, conn, data, out),
            other => {
                out.push(log(
                    LOG_WARNING,
                    format!("connection {conn}: unexpected PPID {other}, closing it"),
                ));
                self.connection_down(now, conn, out);
                out.push(Output::Close { conn });
            }
        }
    }

    /// Stops supervising a PE (its timer too) and takes it off its connection's list.
    fn forget_supervision(&mut self, key: &(PoolHandle, PeId)) {
        if let Some(sup) = self.supervision.remove(key) {
            self.detach(key, sup.conn);
        }
    }

    /// What follows the removal of a PE from the handlespace here (not by a peer's update):
    /// the registrar forgets it, publishes the removal to its peers if the PE was its own,
    /// and logs `line` (given the PE's address).
    fn removed(
        &mut self,
        key: &(PoolHandle, PeId),
        pe: &handlespace::PoolElement,
        out: &mut Vec<Output>,
        line: impl FnOnce(&str) -> String,
    ) {
        self.pe_gone(key);
        self.publish_removal(&key.0, pe, out);
        self.log_if(out, LOG_ACTION, || line(&pe_address(pe)));
    }

    /// A log line of a frequent event, made only if the I/O loop logs its level.
    fn log_if(&self, out: &mut Vec<Output>, level: u8, line: impl FnOnce() -> String) {
        if level <= self.cfg.log_level {
            out.push(log(level, line()));
        }
    }

    /// Everything the registrar keeps about a PE that left the handlespace.
    fn pe_gone(&mut self, key: &(PoolHandle, PeId)) {
        self.forget_supervision(key);
        self.orphans.remove(key);
        self.reporters.remove(key);
    }

    /// Puts a PE on a connection's list (and its host's count).
    fn attach(&mut self, key: &(PoolHandle, PeId), conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            if c.pes.insert(key.clone()) {
                self.hosts.entry(c.host).or_default().pes += 1;
            }
        }
    }

    /// Takes a PE off a connection's list (and its host's count).
    fn detach(&mut self, key: &(PoolHandle, PeId), conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            if c.pes.remove(key) {
                if let Some(h) = self.hosts.get_mut(&c.host) {
                    h.pes = h.pes.saturating_sub(1);
                }
            }
        }
    }

    /// Counts a refusal and logs it (at most once per interval and kind).
    fn refuse(
        &mut self,
        kind: Refusal,
        now: Micros,
        out: &mut Vec<Output>,
        text: impl FnOnce() -> String,
    ) {
        if let Some(line) = self.refusal_log.note(&mut self.counters, kind, now, text) {
            out.push(log(LOG_WARNING, line));
        }
    }
}

/// Whether `n` has reached `limit`.
fn over(n: usize, limit: Option<u32>) -> bool {
    limit.is_some_and(|l| n >= l as usize)
}

/// IPv4-mapped IPv6 addresses compare as IPv4.
fn canonical(a: &IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(*a),
        v4 => *v4,
    }
}

/// A PE's user transport for log lines: "10.0.0.1:7000/TCP" (several addresses joined by ",").
fn pe_address(pe: &handlespace::PoolElement) -> String {
    let t = pe.user_transport();
    let addrs: Vec<String> = t.addresses.iter().map(|a| a.to_string()).collect();
    format!("{}:{}/{}", addrs.join(","), t.port, t.protocol.name())
}

fn log(level: u8, text: String) -> Output {
    Output::Log { level, text }
}

fn push_send(
    out: &mut Vec<Output>,
    conn: ConnId,
    ppid: u32,
    encoded: Result<Vec<u8>, wire::WireError>,
) {
    match encoded {
        Ok(data) => out.push(Output::Send { conn, ppid, data }),
        Err(e) => out.push(log(LOG_ERROR, format!("cannot encode a message: {e}"))),
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod enrp_tests;
