//! The registrar's protocol state machine (sans-I/O): ASAP towards pool elements and pool users,
//! and the part of ENRP that answers other registrars' and tools' (hsdump) queries.
//!
//! Input: connections coming up and going down, received messages, the passing of time — each
//! with `now`. Output: [`Output`]s (messages to send, connections to close, announces, log
//! lines) and [`Registrar::next_wakeup`]. The registrar's I/O loop (`crate::registrar`) only
//! moves these in and out.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};

use crate::core::checksum;
use crate::core::handlespace::{
    self, Handlespace, HandlespaceError, Micros, Registration, UnreachableOutcome,
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
mod limits;

pub use limits::AddressPrefix;
use limits::Rate;

/// Identifies a connection / association (assigned by the transport layer).
pub type ConnId = u64;

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
    /// Handle resolutions per second and connection; `None` = unlimited.
    pub max_hr_rate: Option<u32>,
    /// Endpoint Unreachable reports per second and connection; `None` = unlimited.
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
        }
    }
}

/// Log levels of [`Output::Log`] (rsplib-style: 1 errors … 9 verbose).
pub const LOG_ERROR: u8 = 1;
pub const LOG_WARNING: u8 = 2;
pub const LOG_ACTION: u8 = 3;
pub const LOG_VERBOSE: u8 = 5;

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
    /// Send one ASAP Server Announce by UDP multicast.
    Announce { data: Vec<u8> },
    /// A log line.
    Log { level: u8, text: String },
}

#[derive(Debug)]
struct Conn {
    protocol: TransportProtocol,
    peer: Vec<SocketAddr>,
    /// PEs registered over this connection.
    pes: BTreeSet<(PoolHandle, PeId)>,
    hr_rate: Rate,
    eu_rate: Rate,
    /// An ENRP peer (or tool) identified by its Presence.
    enrp_peer: Option<RegistrarId>,
}

/// Keep-alive supervision of one PE this registrar is home for.
#[derive(Debug)]
struct Supervision {
    conn: ConnId,
    /// Key of the one armed timer of this PE in `Registrar::timers`.
    timer: Option<(Micros, u64)>,
    awaiting_ack: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    SendKeepAlive,
    KeepAliveTimeout,
}

/// The registrar.
pub struct Registrar {
    cfg: RegistrarConfig,
    hs: Handlespace,
    conns: HashMap<ConnId, Conn>,
    supervision: HashMap<(PoolHandle, PeId), Supervision>,
    /// Keep-alive timers, one per supervised PE, keyed by (due time, sequence number).
    timers: BTreeMap<(Micros, u64), (PoolHandle, PeId, TimerKind)>,
    next_timer_seq: u64,
    next_announce: Option<Micros>,
}

impl Registrar {
    /// A registrar with an empty handlespace; `seed` drives the randomized policies.
    pub fn new(cfg: RegistrarConfig, seed: u64, now: Micros) -> Self {
        let mut hs_cfg = handlespace::Config::registrar();
        hs_cfg.max_bad_pe_reports = cfg.max_bad_pe_reports;
        let next_announce = cfg.announce_cycle.map(|_| now);
        Registrar {
            hs: Handlespace::with_seed(hs_cfg, seed),
            cfg,
            conns: HashMap::new(),
            supervision: HashMap::new(),
            timers: BTreeMap::new(),
            next_timer_seq: 1,
            next_announce,
        }
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
        let _ = (now, &out);
        self.conns.insert(
            conn,
            Conn {
                protocol,
                peer,
                pes: BTreeSet::new(),
                hr_rate: Rate::default(),
                eu_rate: Rate::default(),
                enrp_peer: None,
            },
        );
    }

    /// A connection went down: every PE registered over it is removed at once.
    pub fn connection_down(&mut self, now: Micros, conn: ConnId, out: &mut Vec<Output>) {
        let _ = now;
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        for (ph, id) in c.pes {
            if let Some(sup) = self.supervision.remove(&(ph.clone(), id)) {
                if let Some(t) = sup.timer {
                    self.timers.remove(&t);
                }
            }
            if self.hs.deregister(&ph, id).is_some() {
                out.push(log(
                    LOG_ACTION,
                    format!("removed PE {id} of pool \"{ph}\": its connection went down"),
                ));
            }
        }
    }

    /// The next time [`Registrar::poll`] has work to do.
    pub fn next_wakeup(&self) -> Option<Micros> {
        [
            self.timers.keys().next().map(|k| k.0),
            self.hs.next_expiry(),
            self.next_announce,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs every timer due at `now`: keep-alives, keep-alive timeouts, registration expiry,
    /// server announces.
    pub fn poll(&mut self, now: Micros, out: &mut Vec<Output>) {
        while let Some((&(at, seq), _)) = self.timers.iter().next() {
            if at > now {
                break;
            }
            let (ph, id, kind) = self.timers.remove(&(at, seq)).expect("present");
            let key = (ph, id);
            let Some(sup) = self.supervision.get_mut(&key) else {
                continue;
            };
            sup.timer = None;
            match kind {
                TimerKind::SendKeepAlive => {
                    let conn = sup.conn;
                    sup.awaiting_ack = true;
                    let msg = AsapMessage::new(AsapBody::EndpointKeepAlive {
                        server_id: self.cfg.id,
                        pool_handle: key.0.clone(),
                        pe_id: Some(key.1),
                    });
                    push_send(out, conn, PPID_ASAP, &msg.to_bytes());
                    let timeout = now + self.cfg.keepalive_timeout;
                    self.arm(key, timeout, TimerKind::KeepAliveTimeout);
                }
                TimerKind::KeepAliveTimeout => {
                    let conn = sup.conn;
                    out.push(log(
                        LOG_ACTION,
                        format!(
                            "PE {} of pool \"{}\" did not answer its keep-alive: closing its connection",
                            key.1, key.0
                        ),
                    ));
                    // As rsplib: the association is aborted, which removes all its PEs.
                    self.connection_down(now, conn, out);
                    out.push(Output::Close { conn });
                }
            }
        }
        while let Some((ph, pe)) = self.hs.pop_expired(now) {
            let key = (ph, pe.id());
            self.forget_supervision(&key.0, key.1);
            out.push(log(
                LOG_ACTION,
                format!("PE {} of pool \"{}\" expired", key.1, key.0),
            ));
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

    /// Arms the PE's one keep-alive timer (replacing the one armed before).
    fn arm(&mut self, key: (PoolHandle, PeId), at: Micros, kind: TimerKind) {
        let Some(sup) = self.supervision.get_mut(&key) else {
            return;
        };
        let seq = self.next_timer_seq;
        self.next_timer_seq += 1;
        if let Some(old) = sup.timer.replace((at, seq)) {
            self.timers.remove(&old);
        }
        self.timers.insert((at, seq), (key.0, key.1, kind));
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
        if !self.conns.contains_key(&conn) {
            return;
        }
        match ppid {
            PPID_ASAP => self.receive_asap(now, conn, data, out),
            PPID_ENRP => self.receive_enrp(conn, data, out),
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

    fn forget_supervision(&mut self, ph: &PoolHandle, id: PeId) {
        let key = (ph.clone(), id);
        if let Some(sup) = self.supervision.remove(&key) {
            if let Some(t) = sup.timer {
                self.timers.remove(&t);
            }
            if let Some(c) = self.conns.get_mut(&sup.conn) {
                c.pes.remove(&key);
            }
        }
    }
}

/// IPv4-mapped IPv6 addresses compare as IPv4.
fn canonical(a: &IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(*a),
        v4 => *v4,
    }
}

fn log(level: u8, text: String) -> Output {
    Output::Log { level, text }
}

fn push_send(
    out: &mut Vec<Output>,
    conn: ConnId,
    ppid: u32,
    encoded: &Result<Vec<u8>, wire::WireError>,
) {
    match encoded {
        Ok(data) => out.push(Output::Send {
            conn,
            ppid,
            data: data.clone(),
        }),
        Err(e) => out.push(log(LOG_ERROR, format!("cannot encode a message: {e}"))),
    }
}

#[cfg(test)]
mod tests;
