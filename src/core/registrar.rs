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

/// A simple per-second token bucket.
#[derive(Debug, Default)]
struct Rate {
    window_start: Micros,
    count: u32,
}

impl Rate {
    /// Counts one event; false if it exceeds `limit` in the current second.
    fn allow(&mut self, now: Micros, limit: Option<u32>) -> bool {
        let Some(limit) = limit else { return true };
        if now.saturating_sub(self.window_start) >= 1_000_000 {
            self.window_start = now;
            self.count = 0;
        }
        self.count += 1;
        self.count <= limit
    }
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

    /// A connection came up (`peer` = its remote addresses, several for multihomed SCTP).
    pub fn connection_up(
        &mut self,
        conn: ConnId,
        protocol: TransportProtocol,
        peer: Vec<SocketAddr>,
    ) {
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
    pub fn connection_down(&mut self, conn: ConnId, out: &mut Vec<Output>) {
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
                    self.connection_down(conn, out);
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
                self.connection_down(conn, out);
                out.push(Output::Close { conn });
            }
        }
    }

    fn receive_asap(&mut self, now: Micros, conn: ConnId, data: &[u8], out: &mut Vec<Output>) {
        let decoded = match AsapMessage::decode(data) {
            Ok(d) => d,
            Err(e) => {
                out.push(log(
                    LOG_WARNING,
                    format!("connection {conn}: bad ASAP message: {e}"),
                ));
                if let Some(reply) = wire::asap_error_reply(&e, data) {
                    push_send(out, conn, PPID_ASAP, &reply.to_bytes());
                }
                return;
            }
        };
        if let Some(error) = decoded.report() {
            let msg = AsapMessage::new(AsapBody::Error { error });
            push_send(out, conn, PPID_ASAP, &msg.to_bytes());
        }
        match decoded.message.body {
            AsapBody::Registration {
                pool_handle,
                element,
            } => self.registration(now, conn, pool_handle, element, out),
            AsapBody::Deregistration { pool_handle, pe_id } => {
                self.deregistration(conn, pool_handle, pe_id, out)
            }
            AsapBody::HandleResolution { pool_handle, items } => {
                self.handle_resolution(now, conn, pool_handle, items, out)
            }
            AsapBody::EndpointKeepAliveAck { pool_handle, pe_id } => {
                // Only an ack to an outstanding keep-alive, on the PE's own connection, counts.
                let key = (pool_handle, pe_id);
                if let Some(s) = self.supervision.get_mut(&key) {
                    if s.conn == conn && s.awaiting_ack {
                        s.awaiting_ack = false;
                        let at = now + self.cfg.keepalive_interval;
                        self.arm(key, at, TimerKind::SendKeepAlive);
                    }
                }
            }
            AsapBody::EndpointUnreachable { pool_handle, pe_id } => {
                let limit = self.cfg.max_eu_rate;
                let allowed = self
                    .conns
                    .get_mut(&conn)
                    .map(|c| c.eu_rate.allow(now, limit))
                    .unwrap_or(false);
                if !allowed {
                    return;
                }
                match self.hs.report_unreachable(&pool_handle, pe_id) {
                    UnreachableOutcome::Removed(_) => {
                        self.forget_supervision(&pool_handle, pe_id);
                        out.push(log(
                            LOG_ACTION,
                            format!("removed PE {pe_id} of pool \"{pool_handle}\" after unreachable reports"),
                        ));
                    }
                    UnreachableOutcome::Counted(n) => out.push(log(
                        LOG_VERBOSE,
                        format!("PE {pe_id} of pool \"{pool_handle}\" reported unreachable ({n})"),
                    )),
                    UnreachableOutcome::Unknown => {}
                }
            }
            AsapBody::Error { error } => out.push(log(
                LOG_WARNING,
                format!(
                    "connection {conn}: ASAP Error from peer, cause 0x{:04x}",
                    error.code()
                ),
            )),
            other => {
                // Messages a registrar never receives (responses, announces, cookies …).
                out.push(log(
                    LOG_WARNING,
                    format!(
                        "connection {conn}: unexpected ASAP message {} (type {})",
                        asap::message_name(other.msg_type()),
                        other.msg_type()
                    ),
                ));
                let msg = AsapMessage::new(AsapBody::Error {
                    error: OperationError {
                        causes: vec![ErrorCause::with_tlv(cause::UNRECOGNIZED_MESSAGE, data)],
                    },
                });
                push_send(out, conn, PPID_ASAP, &msg.to_bytes());
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

    fn registration(
        &mut self,
        now: Micros,
        conn: ConnId,
        pool_handle: PoolHandle,
        element: wire::PoolElement,
        out: &mut Vec<Output>,
    ) {
        let pe_id = element.id;
        let reject = |out: &mut Vec<Output>, error: OperationError, why: String| {
            out.push(log(
                LOG_ACTION,
                format!("rejected registration of PE {pe_id} in pool \"{pool_handle}\": {why}"),
            ));
            let msg = AsapMessage::with_flags(
                AsapBody::RegistrationResponse {
                    pool_handle: pool_handle.clone(),
                    pe_id,
                    error: Some(error),
                },
                asap::FLAG_REJECT,
            );
            push_send(out, conn, PPID_ASAP, &msg.to_bytes());
        };
        let c = self.conns.get(&conn).expect("checked by receive");
        if c.peer.is_empty() {
            out.push(log(
                LOG_WARNING,
                format!("connection {conn}: peer addresses unknown, registration ignored"),
            ));
            return;
        }
        if element.asap_transport.is_some() {
            return reject(
                out,
                OperationError::new(cause::RSPLIB_INVALID_REGISTRATOR, &[]),
                "ASAP transport in a registration".into(),
            );
        }
        // User addresses: only those the PE really has (its association's addresses) and of
        // sufficient scope. Over TCP the one peer address is all we know.
        let min = self.cfg.min_address_scope;
        let peer_ips: Vec<IpAddr> = c.peer.iter().map(|a| a.ip()).collect();
        let mut user = element.user_transport.clone();
        user.addresses
            .retain(|a| AddressScope::of(a) >= min && peer_ips.contains(&canonical(a)));
        if user.addresses.is_empty() {
            return reject(
                out,
                OperationError::new(cause::RSPLIB_NO_USABLE_USER_ADDRESSES, &[]),
                "no usable user transport addresses".into(),
            );
        }
        let asap_addrs: Vec<IpAddr> = peer_ips
            .iter()
            .copied()
            .filter(|a| AddressScope::of(a) >= min)
            .collect();
        if asap_addrs.is_empty() {
            return reject(
                out,
                OperationError::new(cause::RSPLIB_NO_USABLE_ASAP_ADDRESSES, &[]),
                "no usable ASAP addresses".into(),
            );
        }
        let registrator = TransportAddress {
            protocol: c.protocol,
            port: c.peer[0].port(),
            transport_use: TRANSPORT_USE_DATA_ONLY,
            dccp_service_code: 0,
            addresses: asap_addrs,
        };
        // Only the PE's own connection may re-register it (RFC 5355 registration spoofing);
        // a new connection from the same host takes over (the PE reconnected).
        let key = (pool_handle.clone(), pe_id);
        if let Some(sup) = self.supervision.get(&key) {
            if sup.conn != conn {
                let old_ips: Vec<IpAddr> = self
                    .conns
                    .get(&sup.conn)
                    .map(|o| o.peer.iter().map(|a| a.ip()).collect())
                    .unwrap_or_default();
                if !old_ips.is_empty() && !old_ips.iter().any(|ip| peer_ips.contains(ip)) {
                    return reject(
                        out,
                        OperationError::new(cause::REJECTED_SECURITY, &[]),
                        "PE identifier registered by another host".into(),
                    );
                }
                let old = sup.conn;
                if let Some(o) = self.conns.get_mut(&old) {
                    o.pes.remove(&key);
                }
                if let Some(s) = self.supervision.get_mut(&key) {
                    s.conn = conn;
                }
            }
        }
        let reg = Registration {
            pe_id,
            home: self.cfg.id,
            registration_life_ms: element.registration_life,
            user_transport: user,
            policy: element.policy,
            registrator_transport: Some(registrator),
        };
        match self.hs.register(&pool_handle, reg, now) {
            Ok(outcome) => {
                out.push(log(
                    LOG_VERBOSE,
                    format!("{outcome:?} PE {pe_id} in pool \"{pool_handle}\" (connection {conn})"),
                ));
                self.conns
                    .get_mut(&conn)
                    .expect("checked")
                    .pes
                    .insert(key.clone());
                let sup = self.supervision.entry(key.clone()).or_insert(Supervision {
                    conn,
                    timer: None,
                    awaiting_ack: false,
                });
                sup.conn = conn;
                sup.awaiting_ack = false;
                let at = now + self.cfg.keepalive_interval;
                self.arm(key, at, TimerKind::SendKeepAlive);
                let msg = AsapMessage::new(AsapBody::RegistrationResponse {
                    pool_handle,
                    pe_id,
                    error: None,
                });
                push_send(out, conn, PPID_ASAP, &msg.to_bytes());
            }
            Err(e) => {
                let error = registration_error(&e, &element);
                reject(out, error, e.to_string());
            }
        }
    }

    fn deregistration(
        &mut self,
        conn: ConnId,
        pool_handle: PoolHandle,
        pe_id: PeId,
        out: &mut Vec<Output>,
    ) {
        let key = (pool_handle.clone(), pe_id);
        let owner = self.supervision.get(&key).map(|s| s.conn);
        let error = match owner {
            Some(owner) if owner != conn => {
                Some(OperationError::new(cause::REJECTED_SECURITY, &[]))
            }
            _ => {
                if self.hs.deregister(&pool_handle, pe_id).is_some() {
                    out.push(log(
                        LOG_VERBOSE,
                        format!("deregistered PE {pe_id} of pool \"{pool_handle}\""),
                    ));
                }
                self.forget_supervision(&pool_handle, pe_id);
                None
            }
        };
        let msg = AsapMessage::new(AsapBody::DeregistrationResponse {
            pool_handle,
            pe_id,
            error,
        });
        push_send(out, conn, PPID_ASAP, &msg.to_bytes());
    }

    fn handle_resolution(
        &mut self,
        now: Micros,
        conn: ConnId,
        pool_handle: PoolHandle,
        items: Option<u32>,
        out: &mut Vec<Output>,
    ) {
        let limit = self.cfg.max_hr_rate;
        let allowed = self
            .conns
            .get_mut(&conn)
            .map(|c| c.hr_rate.allow(now, limit))
            .unwrap_or(false);
        let wanted = match items {
            Some(0) | None => self.cfg.max_hr_items,
            Some(n) => n,
        }
        .min(MAX_HR_ITEMS) as usize;
        let found = if allowed {
            self.hs.handle_resolution(&pool_handle, wanted).map(|pes| {
                pes.into_iter()
                    .map(|pe| to_wire_element(pe, false))
                    .collect::<Vec<_>>()
            })
        } else {
            Err(HandlespaceError::UnknownPoolHandle)
        };
        let body = match found {
            Ok(elements) if !elements.is_empty() => AsapBody::HandleResolutionResponse {
                pool_handle,
                policy: Some(elements[0].policy),
                elements,
                error: None,
            },
            _ => AsapBody::HandleResolutionResponse {
                pool_handle,
                policy: None,
                elements: Vec::new(),
                error: Some(OperationError::new(cause::UNKNOWN_POOL_HANDLE, &[])),
            },
        };
        push_send(out, conn, PPID_ASAP, &AsapMessage::new(body).to_bytes());
    }

    // ------------------------------------------------------------------------------- ENRP

    fn receive_enrp(&mut self, conn: ConnId, data: &[u8], out: &mut Vec<Output>) {
        let decoded = match EnrpMessage::decode(data) {
            Ok(d) => d,
            Err(e) => {
                out.push(log(
                    LOG_WARNING,
                    format!("connection {conn}: bad ENRP message: {e}"),
                ));
                if let Some(reply) = wire::enrp_error_reply(&e, data, self.cfg.id, RegistrarId(0)) {
                    push_send(out, conn, PPID_ENRP, &reply.to_bytes());
                }
                return;
            }
        };
        let m = decoded.message;
        if m.sender == self.cfg.id {
            return;
        }
        match m.body {
            EnrpBody::Presence { .. } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.enrp_peer = Some(m.sender);
                }
                if m.flags & enrp::FLAG_REPLY_REQUIRED != 0 || m.receiver.0 == 0 {
                    let reply = self.presence(m.sender);
                    push_send(out, conn, PPID_ENRP, &reply.to_bytes());
                }
            }
            EnrpBody::ListRequest => {
                let msg =
                    self.enrp_message(0, m.sender, EnrpBody::ListResponse { servers: vec![] });
                push_send(out, conn, PPID_ENRP, &msg.to_bytes());
            }
            EnrpBody::HandleTableRequest => {
                let known = self
                    .conns
                    .get(&conn)
                    .map(|c| c.enrp_peer.is_some())
                    .unwrap_or(false);
                if !known {
                    let msg = self.enrp_message(
                        enrp::FLAG_REJECT,
                        m.sender,
                        EnrpBody::HandleTableResponse { pools: vec![] },
                    );
                    push_send(out, conn, PPID_ENRP, &msg.to_bytes());
                    return;
                }
                let own_only = m.flags & enrp::FLAG_OWN_CHILDREN_ONLY != 0;
                for msg in self.handle_table(m.sender, own_only) {
                    push_send(out, conn, PPID_ENRP, &msg.to_bytes());
                }
            }
            other => out.push(log(
                LOG_VERBOSE,
                format!(
                    "connection {conn}: ENRP {} from {} not handled (no ENRP peering yet)",
                    enrp::message_name(other.msg_type()),
                    m.sender
                ),
            )),
        }
    }

    fn enrp_message(&self, flags: u8, receiver: RegistrarId, body: EnrpBody) -> EnrpMessage {
        EnrpMessage {
            flags,
            sender: self.cfg.id,
            receiver,
            body,
            skipped: Vec::new(),
        }
    }

    /// A Presence carrying our ownership checksum and Server Information.
    fn presence(&self, receiver: RegistrarId) -> EnrpMessage {
        let checksum = checksum::to_wire(self.hs.ownership_checksum(self.cfg.id));
        let transports = self.cfg.enrp_transport.iter().cloned().collect();
        self.enrp_message(
            0,
            receiver,
            EnrpBody::Presence {
                checksum,
                server_info: ServerInformation::new(self.cfg.id, transports),
            },
        )
    }

    /// The whole handlespace (or our own PEs) as Handle Table Responses of at most
    /// [`HT_MAX_PES`] PEs and about [`HT_MAX_BYTES`] bytes each; M set on all but the last.
    fn handle_table(&self, receiver: RegistrarId, own_only: bool) -> Vec<EnrpMessage> {
        let owner = own_only.then_some(self.cfg.id);
        let mut messages = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.hs.walk(cursor.as_ref(), owner, HT_MAX_PES);
            let mut pools: Vec<PoolEntries> = Vec::new();
            let mut bytes = 12;
            let mut taken = 0;
            for (ph, pe) in &page.items {
                let element = to_wire_element(pe, true);
                let size = element_size(&element)
                    + if pools.last().map(|p| &p.pool_handle) == Some(*ph) {
                        0
                    } else {
                        4 + ph.len().div_ceil(4) * 4
                    };
                if taken > 0 && bytes + size > HT_MAX_BYTES {
                    break;
                }
                bytes += size;
                taken += 1;
                match pools.last_mut() {
                    Some(p) if p.pool_handle == **ph => p.elements.push(element),
                    _ => pools.push(PoolEntries {
                        pool_handle: (*ph).clone(),
                        elements: vec![element],
                    }),
                }
            }
            let more = page.more || taken < page.items.len();
            cursor = page.cursor_after(taken.wrapping_sub(1));
            let flags = if more { enrp::FLAG_MORE } else { 0 };
            messages.push(self.enrp_message(
                flags,
                receiver,
                EnrpBody::HandleTableResponse { pools },
            ));
            if !more || cursor.is_none() {
                break;
            }
        }
        messages
    }
}

/// The operation error for a refused registration: the RFC cause, with the offending TLV where
/// Wireshark expects one (policy for 0x0005, user transport for 0x0007).
fn registration_error(e: &HandlespaceError, element: &wire::PoolElement) -> OperationError {
    let code = e.cause_code();
    let mut tlv = Vec::new();
    let ok = match code {
        cause::INCONSISTENT_POOLING_POLICY => {
            wire::param::emit_policy(&mut tlv, &element.policy).is_ok()
        }
        cause::INCONSISTENT_TRANSPORT_TYPE | cause::INVALID_VALUES => {
            wire::param::emit_transport(&mut tlv, &element.user_transport).is_ok()
        }
        _ => false,
    };
    if ok {
        OperationError {
            causes: vec![ErrorCause::with_tlv(code, &tlv)],
        }
    } else {
        OperationError::new(code, &[])
    }
}

/// A stored PE as a Pool Element parameter (with its ASAP transport for ENRP).
fn to_wire_element(pe: &handlespace::PoolElement, with_asap: bool) -> wire::PoolElement {
    let policy: PolicyInfo = pe.policy();
    let mut e = wire::PoolElement::new(pe.id(), pe.user_transport().clone(), policy);
    e.home_registrar = pe.home();
    e.registration_life = pe.registration_life_ms();
    if with_asap {
        e.asap_transport = pe.registrator_transport().cloned();
    }
    e
}

/// Encoded size of a Pool Element parameter.
fn element_size(e: &wire::PoolElement) -> usize {
    let mut buf = Vec::new();
    let _ = e.emit(&mut buf);
    buf.len()
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
mod tests {
    use super::*;
    use crate::core::types::{PolicyType, TRANSPORT_USE_DATA_PLUS_CONTROL};

    const PE_CONN: ConnId = 1;
    const PU_CONN: ConnId = 2;
    const SEC: Micros = 1_000_000;

    fn registrar() -> Registrar {
        let mut cfg = RegistrarConfig::new(RegistrarId(0x1111_1111));
        cfg.min_address_scope = AddressScope::Loopback;
        cfg.announce_cycle = None;
        let mut r = Registrar::new(cfg, 7, 0);
        r.connection_up(
            PE_CONN,
            TransportProtocol::Tcp,
            vec!["127.0.0.1:40000".parse().unwrap()],
        );
        r.connection_up(
            PU_CONN,
            TransportProtocol::Tcp,
            vec!["127.0.0.1:40001".parse().unwrap()],
        );
        r
    }

    fn element(id: u32, policy: PolicyType, port: u16) -> wire::PoolElement {
        let mut t = TransportAddress::new(
            TransportProtocol::Tcp,
            port,
            vec!["127.0.0.1".parse().unwrap()],
        );
        t.transport_use = TRANSPORT_USE_DATA_PLUS_CONTROL;
        let mut e = wire::PoolElement::new(PeId(id), t, PolicyInfo::new(policy));
        e.registration_life = 30_000;
        e
    }

    fn send(r: &mut Registrar, now: Micros, conn: ConnId, body: AsapBody) -> Vec<Output> {
        let mut out = Vec::new();
        let bytes = AsapMessage::new(body).to_bytes().unwrap();
        r.receive(now, conn, PPID_ASAP, &bytes, &mut out);
        out
    }

    /// The ASAP messages sent to `conn`.
    fn sent(out: &[Output], conn: ConnId) -> Vec<AsapMessage> {
        out.iter()
            .filter_map(|o| match o {
                Output::Send {
                    conn: c,
                    ppid: PPID_ASAP,
                    data,
                } if *c == conn => Some(AsapMessage::decode(data).unwrap().message),
                _ => None,
            })
            .collect()
    }

    fn register(r: &mut Registrar, now: Micros, id: u32, policy: PolicyType) -> AsapMessage {
        let out = send(
            r,
            now,
            PE_CONN,
            AsapBody::Registration {
                pool_handle: "EchoPool".into(),
                element: element(id, policy, 7000 + id as u16),
            },
        );
        sent(&out, PE_CONN).remove(0)
    }

    fn resolve(r: &mut Registrar, now: Micros, items: Option<u32>) -> AsapMessage {
        let out = send(
            r,
            now,
            PU_CONN,
            AsapBody::HandleResolution {
                pool_handle: "EchoPool".into(),
                items,
            },
        );
        sent(&out, PU_CONN).remove(0)
    }

    fn resolved_ids(m: &AsapMessage) -> Vec<u32> {
        match &m.body {
            AsapBody::HandleResolutionResponse { elements, .. } => {
                elements.iter().map(|e| e.id.0).collect()
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn registration_is_answered_and_resolvable() {
        let mut r = registrar();
        let resp = register(&mut r, 0, 0xe001, PolicyType::RoundRobin);
        assert_eq!(resp.flags, 0);
        assert!(matches!(
            resp.body,
            AsapBody::RegistrationResponse {
                pe_id: PeId(0xe001),
                error: None,
                ..
            }
        ));
        register(&mut r, 0, 0xe002, PolicyType::RoundRobin);
        let hr = resolve(&mut r, 1, None);
        let mut ids = resolved_ids(&hr);
        ids.sort();
        assert_eq!(ids, vec![0xe001, 0xe002]);
        match hr.body {
            AsapBody::HandleResolutionResponse {
                policy, elements, ..
            } => {
                assert_eq!(policy.unwrap().policy, PolicyType::RoundRobin);
                assert_eq!(elements[0].home_registrar, RegistrarId(0x1111_1111));
                assert!(elements[0].asap_transport.is_none());
            }
            _ => unreachable!(),
        }
        assert_eq!(resolved_ids(&resolve(&mut r, 1, Some(1))).len(), 1);
    }

    #[test]
    fn inconsistent_policy_is_rejected_with_cause_5_and_the_policy_tlv() {
        let mut r = registrar();
        register(&mut r, 0, 1, PolicyType::RoundRobin);
        let resp = register(&mut r, 0, 2, PolicyType::LeastUsed);
        assert_eq!(resp.flags, asap::FLAG_REJECT);
        match resp.body {
            AsapBody::RegistrationResponse { error: Some(e), .. } => {
                assert_eq!(e.code(), cause::INCONSISTENT_POOLING_POLICY);
                assert_eq!(&e.causes[0].info[..2], &[0x00, 0x08]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_pool_gives_cause_9() {
        let mut r = registrar();
        match resolve(&mut r, 0, None).body {
            AsapBody::HandleResolutionResponse {
                error: Some(e),
                elements,
                ..
            } => {
                assert_eq!(e.code(), cause::UNKNOWN_POOL_HANDLE);
                assert!(elements.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn foreign_and_loopback_addresses_are_filtered_by_scope() {
        let mut r = registrar();
        r.cfg.min_address_scope = AddressScope::SiteLocal;
        let resp = register(&mut r, 0, 1, PolicyType::RoundRobin);
        assert_eq!(resp.flags, asap::FLAG_REJECT);
        match resp.body {
            AsapBody::RegistrationResponse { error: Some(e), .. } => {
                assert_eq!(e.code(), cause::RSPLIB_NO_USABLE_USER_ADDRESSES)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn keep_alives_flow_and_a_missing_ack_closes_the_connection() {
        let mut r = registrar();
        register(&mut r, 0, 0xa001, PolicyType::RoundRobin);
        assert_eq!(r.next_wakeup(), Some(5 * SEC));
        let mut out = Vec::new();
        r.poll(5 * SEC, &mut out);
        let ka = sent(&out, PE_CONN);
        assert!(matches!(
            ka[0].body,
            AsapBody::EndpointKeepAlive {
                server_id: RegistrarId(0x1111_1111),
                pe_id: Some(PeId(0xa001)),
                ..
            }
        ));
        assert_eq!(ka[0].flags & asap::FLAG_HOME, 0);
        // Acked in time: the next keep-alive is 5 s after the ack.
        send(
            &mut r,
            6 * SEC,
            PE_CONN,
            AsapBody::EndpointKeepAliveAck {
                pool_handle: "EchoPool".into(),
                pe_id: PeId(0xa001),
            },
        );
        let mut out = Vec::new();
        r.poll(10 * SEC + 500_000, &mut out);
        assert!(sent(&out, PE_CONN).is_empty(), "no keep-alive before 11 s");
        r.poll(11 * SEC, &mut out);
        assert_eq!(sent(&out, PE_CONN).len(), 1);
        // Not acked: at 16 s the connection is closed and the PE is gone.
        let mut out = Vec::new();
        r.poll(16 * SEC, &mut out);
        assert!(out.contains(&Output::Close { conn: PE_CONN }));
        assert_eq!(r.handlespace().len(), 0);
        assert_eq!(r.connections(), 1);
    }

    #[test]
    fn connection_loss_removes_its_pes_at_once() {
        let mut r = registrar();
        register(&mut r, 0, 1, PolicyType::RoundRobin);
        register(&mut r, 0, 2, PolicyType::RoundRobin);
        let mut out = Vec::new();
        r.connection_down(PE_CONN, &mut out);
        assert_eq!(r.handlespace().len(), 0);
        assert!(r.next_wakeup().is_none(), "no timers left for removed PEs");
    }

    #[test]
    fn registration_life_expires() {
        let mut r = registrar();
        r.cfg.keepalive_interval = 3600 * SEC;
        register(&mut r, 0, 1, PolicyType::RoundRobin);
        let mut out = Vec::new();
        r.poll(29 * SEC, &mut out);
        assert_eq!(r.handlespace().len(), 1);
        r.poll(30 * SEC, &mut out);
        assert_eq!(r.handlespace().len(), 0);
    }

    #[test]
    fn unreachable_reports_remove_after_the_threshold() {
        let mut r = registrar();
        register(&mut r, 0, 1, PolicyType::RoundRobin);
        for n in 0..3 {
            assert_eq!(r.handlespace().len(), 1, "after {n} reports");
            send(
                &mut r,
                1,
                PU_CONN,
                AsapBody::EndpointUnreachable {
                    pool_handle: "EchoPool".into(),
                    pe_id: PeId(1),
                },
            );
        }
        assert_eq!(r.handlespace().len(), 0);
    }

    #[test]
    fn only_the_registering_host_may_deregister() {
        let mut r = registrar();
        r.connection_up(
            3,
            TransportProtocol::Tcp,
            vec!["10.0.0.9:5000".parse().unwrap()],
        );
        register(&mut r, 0, 1, PolicyType::RoundRobin);
        let out = send(
            &mut r,
            1,
            3,
            AsapBody::Deregistration {
                pool_handle: "EchoPool".into(),
                pe_id: PeId(1),
            },
        );
        assert!(matches!(
            &sent(&out, 3)[0].body,
            AsapBody::DeregistrationResponse { error: Some(e), .. } if e.code() == cause::REJECTED_SECURITY
        ));
        assert_eq!(r.handlespace().len(), 1);
        let out = send(
            &mut r,
            1,
            PE_CONN,
            AsapBody::Deregistration {
                pool_handle: "EchoPool".into(),
                pe_id: PeId(1),
            },
        );
        assert!(matches!(
            &sent(&out, PE_CONN)[0].body,
            AsapBody::DeregistrationResponse { error: None, .. }
        ));
        assert_eq!(r.handlespace().len(), 0);
    }

    #[test]
    fn malformed_and_unexpected_messages_get_asap_errors() {
        let mut r = registrar();
        let mut out = Vec::new();
        // Unknown message type 0x33.
        r.receive(0, PU_CONN, PPID_ASAP, &[0x33, 0, 0, 4], &mut out);
        let e = sent(&out, PU_CONN);
        assert!(
            matches!(&e[0].body, AsapBody::Error { error } if error.code() == cause::UNRECOGNIZED_MESSAGE)
        );
        // A registrar never receives a Registration Response.
        let out = send(
            &mut r,
            0,
            PU_CONN,
            AsapBody::RegistrationResponse {
                pool_handle: "x".into(),
                pe_id: PeId(1),
                error: None,
            },
        );
        assert!(matches!(
            &sent(&out, PU_CONN)[0].body,
            AsapBody::Error { .. }
        ));
        // Wrong PPID closes the connection.
        let mut out = Vec::new();
        r.receive(0, PU_CONN, 99, &[1, 0, 0, 4], &mut out);
        assert!(out.contains(&Output::Close { conn: PU_CONN }));
    }

    /// What hsdump sends (a Presence, then a Handle Table Request) and the ENRP replies.
    fn hsdump_queries(r: &mut Registrar) -> Vec<EnrpMessage> {
        let tool = RegistrarId(0x5c46_3c96);
        let presence = EnrpMessage::new(
            tool,
            RegistrarId(0),
            EnrpBody::Presence {
                checksum: 0xffff,
                server_info: ServerInformation::new(tool, vec![]),
            },
        );
        let mut out = Vec::new();
        r.receive(
            0,
            PU_CONN,
            PPID_ENRP,
            &presence.to_bytes().unwrap(),
            &mut out,
        );
        let htr = EnrpMessage::new(tool, r.id(), EnrpBody::HandleTableRequest);
        r.receive(0, PU_CONN, PPID_ENRP, &htr.to_bytes().unwrap(), &mut out);
        out.iter()
            .filter_map(|o| match o {
                Output::Send {
                    ppid: PPID_ENRP,
                    data,
                    ..
                } => Some(EnrpMessage::decode(data).unwrap().message),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_big_handle_table_spans_several_responses_with_every_pe_once() {
        let mut r = registrar();
        for id in 1..=300 {
            register(&mut r, 0, id, PolicyType::RoundRobin);
        }
        let replies: Vec<EnrpMessage> = hsdump_queries(&mut r)
            .into_iter()
            .filter(|m| matches!(m.body, EnrpBody::HandleTableResponse { .. }))
            .collect();
        assert!(replies.len() >= 3, "{} responses", replies.len());
        let mut ids = Vec::new();
        for (i, m) in replies.iter().enumerate() {
            let last = i + 1 == replies.len();
            assert_eq!(m.flags & enrp::FLAG_MORE != 0, !last);
            if let EnrpBody::HandleTableResponse { pools } = &m.body {
                ids.extend(pools.iter().flat_map(|p| p.elements.iter().map(|e| e.id.0)));
            }
        }
        ids.sort();
        assert_eq!(ids, (1..=300).collect::<Vec<u32>>());
    }

    #[test]
    fn hsdump_style_enrp_queries_are_answered() {
        let mut r = registrar();
        register(&mut r, 0, 0xe001, PolicyType::RoundRobin);
        let replies = hsdump_queries(&mut r);
        assert!(matches!(replies[0].body, EnrpBody::Presence { .. }));
        match &replies[1].body {
            EnrpBody::HandleTableResponse { pools } => {
                assert_eq!(replies[1].flags, 0);
                assert_eq!(pools[0].elements[0].id, PeId(0xe001));
                assert!(pools[0].elements[0].asap_transport.is_some());
            }
            other => panic!("{other:?}"),
        }
    }
}
