//! The registrar's protocol state machine (sans-I/O): ASAP towards pool elements and pool users,
//! and the part of ENRP that answers other registrars' and tools' (hsdump) queries.
//!
//! Input: connections coming up and going down, received messages, the passing of time — each
//! with `now`. Output: [`Output`]s (messages to send, connections to close, announces, log
//! lines) and [`Registrar::next_wakeup`]. The registrar's I/O loop (`crate::registrar`) only
//! moves these in and out.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};

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
    /// Generation of the currently armed timer (older timer entries are stale).
    generation: u64,
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
    timers: BTreeMap<(Micros, u64), (PoolHandle, PeId, TimerKind)>,
    next_generation: u64,
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
            next_generation: 1,
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
    pub fn connection_up(&mut self, conn: ConnId, protocol: TransportProtocol, peer: Vec<SocketAddr>) {
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
            self.supervision.remove(&(ph.clone(), id));
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
        while let Some((&(at, generation), _)) = self.timers.iter().next() {
            if at > now {
                break;
            }
            let (ph, id, kind) = self.timers.remove(&(at, generation)).expect("present");
            let key = (ph, id);
            let Some(sup) = self.supervision.get_mut(&key) else {
                continue;
            };
            if sup.generation != generation {
                continue;
            }
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
            if let Some(sup) = self.supervision.remove(&key) {
                if let Some(c) = self.conns.get_mut(&sup.conn) {
                    c.pes.remove(&key);
                }
            }
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

    fn arm(&mut self, key: (PoolHandle, PeId), at: Micros, kind: TimerKind) {
        let generation = self.next_generation;
        self.next_generation += 1;
        if let Some(sup) = self.supervision.get_mut(&key) {
            sup.generation = generation;
        }
        self.timers.insert((at, generation), (key.0, key.1, kind));
    }

    /// One message received on `conn` with SCTP PPID `ppid` (over TCP: the endpoint's protocol).
    pub fn receive(&mut self, now: Micros, conn: ConnId, ppid: u32, data: &[u8], out: &mut Vec<Output>) {
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
                out.push(log(LOG_WARNING, format!("connection {conn}: bad ASAP message: {e}")));
                if e.should_report() {
                    let msg = AsapMessage::new(AsapBody::Error {
                        error: e.operation_error(data),
                    });
                    push_send(out, conn, PPID_ASAP, &msg.to_bytes());
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
                let key = (pool_handle, pe_id);
                let ok = matches!(self.supervision.get(&key), Some(s) if s.conn == conn);
                if ok {
                    if let Some(s) = self.supervision.get_mut(&key) {
                        s.awaiting_ack = false;
                    }
                    let at = now + self.cfg.keepalive_interval;
                    self.arm(key, at, TimerKind::SendKeepAlive);
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
                format!("connection {conn}: ASAP Error from peer, cause 0x{:04x}", error.code()),
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
                self.supervision.insert(
                    key.clone(),
                    Supervision {
                        conn,
                        generation: 0,
                        awaiting_ack: false,
                    },
                );
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
                out.push(log(LOG_WARNING, format!("connection {conn}: bad ENRP message: {e}")));
                if e.should_report() {
                    let msg = self.enrp_message(
                        0,
                        RegistrarId(0),
                        EnrpBody::Error {
                            error: e.operation_error(data),
                        },
                    );
                    push_send(out, conn, PPID_ENRP, &msg.to_bytes());
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
                let msg = self.enrp_message(0, m.sender, EnrpBody::ListResponse { servers: vec![] });
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
        let checksum = self.hs.ownership_checksum(self.cfg.id).swap_bytes();
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
                let size = element_size(&element) + if pools.last().map(|p| &p.pool_handle) == Some(*ph) { 0 } else { 4 + ph.len().div_ceil(4) * 4 };
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
            cursor = page.items.get(taken.wrapping_sub(1)).map(|(ph, pe)| handlespace::WalkCursor {
                pool: (*ph).clone(),
                pe: pe.id(),
            });
            let flags = if more { enrp::FLAG_MORE } else { 0 };
            messages.push(self.enrp_message(flags, receiver, EnrpBody::HandleTableResponse { pools }));
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
        cause::INCONSISTENT_POOLING_POLICY => wire::param::emit_policy(&mut tlv, &element.policy).is_ok(),
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

fn push_send(out: &mut Vec<Output>, conn: ConnId, ppid: u32, encoded: &Result<Vec<u8>, wire::WireError>) {
    match encoded {
        Ok(data) => out.push(Output::Send {
            conn,
            ppid,
            data: data.clone(),
        }),
        Err(e) => out.push(log(LOG_ERROR, format!("cannot encode a message: {e}"))),
    }
}
