//! The `registrar` target: a sequence of operations on one [`Registrar`] — connections coming up
//! and going down, structured and raw ASAP / ENRP messages, time passing, polls — with
//! [`Registrar::check_invariants`] and the output checks of [`Harness::check_outputs`] after
//! every step.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use arbitrary::Arbitrary;

use rsplib::core::handlespace::Micros;
use rsplib::core::registrar::{
    AddressPrefix, AddressScope, ConnId, Output, Registrar, RegistrarConfig, HT_MAX_PES,
    MAX_HR_ITEMS,
};
use rsplib::core::types::{
    PoolHandle, RegistrarId, TransportAddress, TransportProtocol, TRANSPORT_USE_DATA_PLUS_CONTROL,
};
use rsplib::core::wire::{
    self, asap, enrp, AsapBody, AsapMessage, EnrpBody, EnrpMessage, ServerInformation, PPID_ASAP,
    PPID_ENRP,
};

use crate::common::{self, life, pe_id, policy, pool, Raw};
use crate::{encode_enum, encode_struct};

/// This registrar's id.
pub const ME: RegistrarId = RegistrarId(0x1111_1111);
/// Another registrar (ENRP peer).
pub const PEER: RegistrarId = RegistrarId(0x2222_2222);
/// Time at the start.
const START: Micros = 1_000_000;

/// Registrar settings taken from the input's first bytes.
#[derive(Arbitrary, Clone, Debug, PartialEq)]
pub struct Setup {
    /// Unreachable reports before removal: 1 + this % 4.
    pub max_bad_pe_reports: u8,
    /// Handle resolutions per second and connection (`None`: unlimited).
    pub hr_rate: Option<u8>,
    /// Endpoint Unreachable reports per second and connection.
    pub eu_rate: Option<u8>,
    /// Default items of a handle resolution: 1 + this % 8.
    pub max_hr_items: u8,
    /// Seeds the randomized policies.
    pub seed: u8,
    /// Tight per-host, per-pool and connection limits (`None`: the registrar's defaults).
    pub limits: Option<Limits>,
}
encode_struct!(Setup {
    max_bad_pe_reports,
    hr_rate,
    eu_rate,
    max_hr_items,
    seed,
    limits
});

/// Small limits, so that a few operations reach them.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// PEs per host: 1 + this % 4.
    pub pes_per_host: u8,
    /// PEs per pool: 1 + this % 4.
    pub pes_per_pool: u8,
    /// Connections per host: 1 + this % 4.
    pub conns_per_host: u8,
    /// Connections in all: 1 + this % 8.
    pub conns: u8,
    /// Idle connections are closed after 1 + this % 30 s.
    pub idle_s: u8,
    /// ENRP from: 0 peers only, 1 loopback, 2 everyone; 10.0.0.1 is a configured peer.
    pub enrp: u8,
}
encode_struct!(Limits {
    pes_per_host,
    pes_per_pool,
    conns_per_host,
    conns,
    idle_s,
    enrp
});

/// Where a connection comes from.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host {
    Lo1,
    Lo2,
    Lo3,
    Ten,
    /// SCTP multihomed: 127.0.0.1 and 10.0.0.1.
    Multi,
    V6Loopback,
    /// A transport that could not tell the peer's addresses.
    Unknown,
}
encode_enum!(Host {
    Lo1,
    Lo2,
    Lo3,
    Ten,
    Multi,
    V6Loopback,
    Unknown
});

impl Host {
    fn ips(self) -> Vec<IpAddr> {
        let ip = |s: &str| s.parse::<IpAddr>().expect("valid");
        match self {
            Host::Lo1 => vec![ip("127.0.0.1")],
            Host::Lo2 => vec![ip("127.0.0.2")],
            Host::Lo3 => vec![ip("127.0.0.3")],
            Host::Ten => vec![ip("10.0.0.1")],
            Host::Multi => vec![ip("127.0.0.1"), ip("10.0.0.1")],
            Host::V6Loopback => vec![ip("::1")],
            Host::Unknown => vec![],
        }
    }
}

/// The user transport addresses a registration names.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addrs {
    /// The connection's own (first) address.
    Peer,
    /// An address of another host.
    Other,
    /// Both.
    Both,
    Unspecified,
    /// 127.0.0.1 as IPv4-mapped IPv6.
    Mapped,
    /// All of the connection's addresses.
    AllPeer,
}
encode_enum!(Addrs {
    Peer,
    Other,
    Both,
    Unspecified,
    Mapped,
    AllPeer
});

#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Sctp,
    Udp,
}
encode_enum!(Proto { Tcp, Sctp, Udp });

/// A Registration (or re-registration) from a connection.
#[derive(Arbitrary, Clone, Debug, PartialEq)]
pub struct Reg {
    pub conn: u8,
    pub pool: u8,
    pub pe: u8,
    /// User port: 0 stays 0 (invalid), otherwise 7000 + this % 4.
    pub port: u8,
    pub policy: u8,
    pub value: u8,
    pub life: u8,
    pub addrs: Addrs,
    pub proto: Proto,
    pub control_channel: bool,
    /// Carries an ASAP transport (refused by registrars).
    pub asap_transport: bool,
}
encode_struct!(Reg {
    conn,
    pool,
    pe,
    port,
    policy,
    value,
    life,
    addrs,
    proto,
    control_channel,
    asap_transport
});

/// One step. `conn` picks one of the open connections (in id order) or, one past them, a
/// connection that is closed (messages racing a close).
#[derive(Arbitrary, Clone, Debug, PartialEq)]
pub enum Op {
    Up {
        host: Host,
        port: u8,
        sctp: bool,
    },
    Down {
        conn: u8,
    },
    Register(Reg),
    Deregister {
        conn: u8,
        pool: u8,
        pe: u8,
    },
    /// Items: `None`, or `Some(n % 201)`.
    Resolve {
        conn: u8,
        pool: u8,
        items: Option<u8>,
    },
    KeepAliveAck {
        conn: u8,
        pool: u8,
        pe: u8,
    },
    Unreachable {
        conn: u8,
        pool: u8,
        pe: u8,
    },
    /// ENRP Presence from `sender` (0, another registrar or ourselves), to us or to 0.
    Presence {
        conn: u8,
        sender: u8,
        reply_required: bool,
        to_me: bool,
    },
    HandleTableRequest {
        conn: u8,
        sender: u8,
        own_children: bool,
    },
    ListRequest {
        conn: u8,
        sender: u8,
    },
    /// Raw bytes as ASAP or ENRP.
    Raw {
        conn: u8,
        enrp: bool,
        bytes: Raw,
    },
    /// A message with a PPID that is neither ASAP nor ENRP.
    WrongPpid {
        conn: u8,
    },
    /// Time passes: up to 65 ms.
    Advance {
        micros: u16,
    },
    /// Time jumps: up to 255 s.
    Jump {
        secs: u8,
    },
    /// Time moves to the next wakeup (or 1 µs on), then poll.
    ToWakeup,
    Poll,
}
encode_enum!(Op {
    Up { host, port, sctp },
    Down { conn },
    Register(reg),
    Deregister { conn, pool, pe },
    Resolve { conn, pool, items },
    KeepAliveAck { conn, pool, pe },
    Unreachable { conn, pool, pe },
    Presence {
        conn,
        sender,
        reply_required,
        to_me
    },
    HandleTableRequest { conn, sender, own_children },
    ListRequest { conn, sender },
    Raw { conn, enrp, bytes },
    WrongPpid { conn },
    Advance { micros },
    Jump { secs },
    ToWakeup,
    Poll,
});

fn registrar_id(i: u8) -> RegistrarId {
    [RegistrarId(0), PEER, ME][usize::from(i % 3)]
}

/// The fuzz target's body.
pub fn run(data: &[u8]) {
    if let Some((setup, ops)) = common::decode::<Setup, Op>(data) {
        run_ops(&setup, &ops);
    }
}

/// Runs the operations, checking after each one; panics on the first violation.
pub fn run_ops(setup: &Setup, ops: &[Op]) {
    let mut h = Harness::new(setup);
    for (i, op) in ops.iter().enumerate() {
        h.step(op);
        if let Err(e) = h.r.check_invariants() {
            panic!("step {i} ({op:?}): invariant violated: {e}");
        }
    }
}

/// The registrar and what its I/O loop knows.
pub struct Harness {
    pub r: Registrar,
    now: Micros,
    /// Open connections and their peer addresses.
    open: BTreeMap<ConnId, Vec<SocketAddr>>,
    next_conn: ConnId,
    /// The last connection closed (by us or by the registrar).
    last_closed: ConnId,
    /// The default items of a handle resolution.
    max_hr_items: u32,
}

impl Harness {
    pub fn new(setup: &Setup) -> Self {
        let mut cfg = RegistrarConfig::new(ME);
        cfg.min_address_scope = AddressScope::Loopback;
        cfg.max_bad_pe_reports = 1 + u32::from(setup.max_bad_pe_reports % 4);
        cfg.max_hr_rate = setup.hr_rate.map(u32::from);
        cfg.max_eu_rate = setup.eu_rate.map(u32::from);
        cfg.max_hr_items = 1 + u32::from(setup.max_hr_items % 8);
        if let Some(l) = &setup.limits {
            cfg.max_pes_per_host = Some(1 + u32::from(l.pes_per_host % 4));
            cfg.max_pes_per_pool = Some(1 + u32::from(l.pes_per_pool % 4));
            cfg.max_connections_per_host = Some(1 + u32::from(l.conns_per_host % 4));
            cfg.max_connections = Some(1 + u32::from(l.conns % 8));
            cfg.idle_timeout = (1 + u64::from(l.idle_s % 30)) * 1_000_000;
            cfg.enrp_allow = match l.enrp % 3 {
                0 => Vec::new(),
                1 => AddressPrefix::loopback(),
                _ => vec![
                    AddressPrefix::parse("0.0.0.0/0").expect("valid"),
                    AddressPrefix::parse("::/0").expect("valid"),
                ],
            };
            cfg.peers = vec!["10.0.0.1".parse().expect("valid")];
        }
        cfg.enrp_transport = Some(TransportAddress::new(
            TransportProtocol::Sctp,
            9901,
            vec!["127.0.0.1".parse().expect("valid")],
        ));
        let max_hr_items = cfg.max_hr_items;
        Harness {
            r: Registrar::new(cfg, u64::from(setup.seed), START),
            now: START,
            open: BTreeMap::new(),
            next_conn: 1,
            last_closed: 1_000,
            max_hr_items,
        }
    }

    fn conn(&self, i: u8) -> ConnId {
        let n = self.open.len();
        let k = usize::from(i) % (n + 1);
        self.open.keys().nth(k).copied().unwrap_or(self.last_closed)
    }

    fn receive(&mut self, conn: ConnId, ppid: u32, bytes: &[u8]) -> Vec<Output> {
        let mut out = Vec::new();
        self.r.receive(self.now, conn, ppid, bytes, &mut out);
        out
    }

    /// Sends an ASAP message (nothing if it cannot be encoded, e.g. a too long pool handle).
    fn asap(&mut self, conn: ConnId, body: AsapBody) -> Option<Vec<Output>> {
        let bytes = AsapMessage::new(body).to_bytes().ok()?;
        Some(self.receive(conn, PPID_ASAP, &bytes))
    }

    fn enrp(
        &mut self,
        conn: ConnId,
        flags: u8,
        sender: RegistrarId,
        receiver: RegistrarId,
        body: EnrpBody,
    ) -> Vec<Output> {
        let msg = EnrpMessage {
            flags,
            sender,
            receiver,
            body,
            skipped: Vec::new(),
        };
        let bytes = msg.to_bytes().expect("ENRP encodes");
        self.receive(conn, PPID_ENRP, &bytes)
    }

    fn poll(&mut self) -> Vec<Output> {
        let mut out = Vec::new();
        self.r.poll(self.now, &mut out);
        if let Some(w) = self.r.next_wakeup() {
            assert!(
                w > self.now,
                "after poll({}) the next wakeup {w} is not in the future",
                self.now
            );
        }
        out
    }

    /// Runs one operation and checks its outputs.
    pub fn step(&mut self, op: &Op) {
        let open_before: BTreeSet<ConnId> = self.open.keys().copied().collect();
        let mut addressable = open_before.clone();
        let out = match op {
            Op::Up { host, port, sctp } => {
                let conn = self.next_conn;
                self.next_conn += 1;
                let peer: Vec<SocketAddr> = host
                    .ips()
                    .into_iter()
                    .map(|ip| SocketAddr::new(ip, 40_000 + u16::from(*port)))
                    .collect();
                let protocol = if *sctp || peer.len() > 1 {
                    TransportProtocol::Sctp
                } else {
                    TransportProtocol::Tcp
                };
                let mut out = Vec::new();
                self.r
                    .connection_up(self.now, conn, protocol, peer.clone(), &mut out);
                self.open.insert(conn, peer);
                addressable.insert(conn);
                out
            }
            Op::Down { conn } => {
                let conn = self.conn(*conn);
                let mut out = Vec::new();
                self.r.connection_down(self.now, conn, &mut out);
                if self.open.remove(&conn).is_some() {
                    self.last_closed = conn;
                }
                addressable.remove(&conn);
                out
            }
            Op::Register(reg) => self.register(reg),
            Op::Deregister { conn, pool: p, pe } => {
                let conn = self.conn(*conn);
                let (pool_handle, pe_id) = (pool(*p), pe_id(*pe));
                let body = AsapBody::Deregistration {
                    pool_handle: pool_handle.clone(),
                    pe_id,
                };
                let out = self.asap(conn, body).unwrap_or_default();
                for m in asap_to(&out, conn) {
                    if let AsapBody::DeregistrationResponse { error: None, .. } = m.body {
                        assert!(
                            self.r.handlespace().get(&pool_handle, pe_id).is_none(),
                            "PE {pe_id} of \"{pool_handle}\" still there after its deregistration succeeded"
                        );
                    }
                }
                out
            }
            Op::Resolve {
                conn,
                pool: p,
                items,
            } => {
                let conn = self.conn(*conn);
                let pool_handle = pool(*p);
                let items = items.map(|n| u32::from(n) % 201);
                let body = AsapBody::HandleResolution {
                    pool_handle: pool_handle.clone(),
                    items,
                };
                match self.asap(conn, body) {
                    Some(out) => {
                        self.check_resolution(&out, conn, &pool_handle, items);
                        out
                    }
                    None => Vec::new(),
                }
            }
            Op::KeepAliveAck { conn, pool: p, pe } => {
                let conn = self.conn(*conn);
                let body = AsapBody::EndpointKeepAliveAck {
                    pool_handle: pool(*p),
                    pe_id: pe_id(*pe),
                };
                self.asap(conn, body).unwrap_or_default()
            }
            Op::Unreachable { conn, pool: p, pe } => {
                let conn = self.conn(*conn);
                let body = AsapBody::EndpointUnreachable {
                    pool_handle: pool(*p),
                    pe_id: pe_id(*pe),
                };
                self.asap(conn, body).unwrap_or_default()
            }
            Op::Presence {
                conn,
                sender,
                reply_required,
                to_me,
            } => {
                let conn = self.conn(*conn);
                let sender = registrar_id(*sender);
                let flags = if *reply_required {
                    enrp::FLAG_REPLY_REQUIRED
                } else {
                    0
                };
                let receiver = if *to_me { ME } else { RegistrarId(0) };
                let body = EnrpBody::Presence {
                    checksum: 0xffff,
                    server_info: ServerInformation::new(sender, Vec::new()),
                };
                self.enrp(conn, flags, sender, receiver, body)
            }
            Op::HandleTableRequest {
                conn,
                sender,
                own_children,
            } => {
                let conn = self.conn(*conn);
                let flags = if *own_children {
                    enrp::FLAG_OWN_CHILDREN_ONLY
                } else {
                    0
                };
                let sender = registrar_id(*sender);
                let out = self.enrp(conn, flags, sender, ME, EnrpBody::HandleTableRequest);
                self.check_handle_table(&out, conn, *own_children);
                out
            }
            Op::ListRequest { conn, sender } => {
                let conn = self.conn(*conn);
                let sender = registrar_id(*sender);
                self.enrp(conn, 0, sender, ME, EnrpBody::ListRequest)
            }
            Op::Raw { conn, enrp, bytes } => {
                let conn = self.conn(*conn);
                let ppid = if *enrp { PPID_ENRP } else { PPID_ASAP };
                self.receive(conn, ppid, &bytes.0)
            }
            Op::WrongPpid { conn } => {
                let conn = self.conn(*conn);
                self.receive(conn, 99, &[1, 0, 0, 4])
            }
            Op::Advance { micros } => {
                self.now += u64::from(*micros);
                Vec::new()
            }
            Op::Jump { secs } => {
                self.now += u64::from(*secs) * 1_000_000;
                Vec::new()
            }
            Op::ToWakeup => {
                self.now = self.r.next_wakeup().unwrap_or(self.now + 1).max(self.now);
                self.poll()
            }
            Op::Poll => self.poll(),
        };
        if crate::common::trace() {
            eprintln!("@{} {op:?}", self.now);
            for o in &out {
                eprintln!("    {}", crate::common::describe(o));
            }
        }
        self.check_outputs(&out, addressable);
    }

    fn register(&mut self, reg: &Reg) -> Vec<Output> {
        let conn = self.conn(reg.conn);
        let peer: Vec<IpAddr> = self
            .open
            .get(&conn)
            .map(|p| p.iter().map(|a| a.ip()).collect())
            .unwrap_or_default();
        let first = peer
            .first()
            .copied()
            .unwrap_or_else(|| "127.0.0.1".parse().expect("valid"));
        let other: IpAddr = if first == "127.0.0.9".parse::<IpAddr>().expect("valid") {
            "127.0.0.8".parse().expect("valid")
        } else {
            "127.0.0.9".parse().expect("valid")
        };
        let addresses = match reg.addrs {
            Addrs::Peer => vec![first],
            Addrs::Other => vec![other],
            Addrs::Both => vec![first, other],
            Addrs::Unspecified => vec!["0.0.0.0".parse().expect("valid")],
            Addrs::Mapped => vec!["::ffff:127.0.0.1".parse().expect("valid")],
            Addrs::AllPeer if peer.is_empty() => vec![first],
            Addrs::AllPeer => peer,
        };
        let protocol = match reg.proto {
            Proto::Tcp => TransportProtocol::Tcp,
            Proto::Sctp => TransportProtocol::Sctp,
            Proto::Udp => TransportProtocol::Udp,
        };
        let port = if reg.port == 0 {
            0
        } else {
            7000 + u16::from(reg.port % 4)
        };
        let mut t = TransportAddress::new(protocol, port, addresses);
        if reg.control_channel {
            t.transport_use = TRANSPORT_USE_DATA_PLUS_CONTROL;
        }
        let mut e = wire::PoolElement::new(pe_id(reg.pe), t, policy(reg.policy, reg.value));
        e.registration_life = life(reg.life);
        if reg.asap_transport {
            e.asap_transport = Some(TransportAddress::new(
                TransportProtocol::Sctp,
                3863,
                vec![first],
            ));
        }
        let pool_handle = pool(reg.pool);
        let id = e.id;
        let Ok(bytes) = AsapMessage::new(AsapBody::Registration {
            pool_handle: pool_handle.clone(),
            element: e,
        })
        .to_bytes() else {
            return Vec::new();
        };
        let out = self.receive(conn, PPID_ASAP, &bytes);
        for m in asap_to(&out, conn) {
            if let AsapBody::RegistrationResponse { error, pe_id, .. } = &m.body {
                assert_eq!(*pe_id, id, "registration response for another PE");
                let ok = error.is_none() && m.flags & asap::FLAG_REJECT == 0;
                if ok {
                    let pe = self.r.handlespace().get(&pool_handle, id);
                    let pe = pe.unwrap_or_else(|| {
                        panic!("PE {id} of \"{pool_handle}\" accepted but not in the handlespace")
                    });
                    // Only addresses the PE really has (its association's) are stored.
                    let peer: Vec<IpAddr> = self.open[&conn].iter().map(|a| a.ip()).collect();
                    for a in &pe.user_transport().addresses {
                        let a = match a {
                            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(*a, IpAddr::V4),
                            v4 => *v4,
                        };
                        assert!(
                            peer.contains(&a),
                            "PE {id} registered with address {a}, not one of its connection's {peer:?}"
                        );
                    }
                }
            }
        }
        out
    }

    /// A handle resolution is answered once, with PEs of that pool that are in the
    /// handlespace (nothing removed is resolvable), at most as many as asked for, no PE twice.
    fn check_resolution(
        &self,
        out: &[Output],
        conn: ConnId,
        pool_handle: &PoolHandle,
        items: Option<u32>,
    ) {
        if !self.open.contains_key(&conn) {
            return;
        }
        let answers = asap_to(out, conn);
        assert_eq!(
            answers.len(),
            1,
            "one answer to a handle resolution: {out:?}"
        );
        let AsapBody::HandleResolutionResponse {
            pool_handle: ph,
            elements,
            error,
            ..
        } = &answers[0].body
        else {
            panic!("a handle resolution answered with {:?}", answers[0]);
        };
        assert_eq!(ph, pool_handle);
        let wanted = match items {
            Some(0) | None => self.max_hr_items,
            Some(n) => n,
        }
        .min(MAX_HR_ITEMS) as usize;
        assert!(
            elements.len() <= wanted,
            "{} PEs, {wanted} wanted",
            elements.len()
        );
        assert!(error.is_some() || !elements.is_empty());
        let mut ids = BTreeSet::new();
        for e in elements {
            assert!(ids.insert(e.id), "PE {} resolved twice", e.id);
            let pe = self.r.handlespace().get(pool_handle, e.id);
            let pe = pe.unwrap_or_else(|| {
                panic!(
                    "resolved PE {} of \"{pool_handle}\" is not in the handlespace",
                    e.id
                )
            });
            assert_eq!(pe.user_transport(), &e.user_transport);
        }
    }

    /// Handle Table Responses to one request: all but the last with M, together every PE (or
    /// every PE of ours) once.
    fn check_handle_table(&self, out: &[Output], conn: ConnId, own_only: bool) {
        let responses: Vec<EnrpMessage> = out
            .iter()
            .filter_map(|o| match o {
                Output::Send {
                    conn: c,
                    ppid: PPID_ENRP,
                    data,
                } if *c == conn => EnrpMessage::decode(data).ok().map(|d| d.message),
                _ => None,
            })
            .filter(|m| matches!(m.body, EnrpBody::HandleTableResponse { .. }))
            .collect();
        if responses.is_empty() || responses[0].flags & enrp::FLAG_REJECT != 0 {
            return;
        }
        let hs = self.r.handlespace();
        let mut seen = BTreeSet::new();
        for (i, m) in responses.iter().enumerate() {
            let last = i + 1 == responses.len();
            assert_eq!(
                m.flags & enrp::FLAG_MORE == 0,
                last,
                "M flag on response {i} of {}",
                responses.len()
            );
            let EnrpBody::HandleTableResponse { pools } = &m.body else {
                unreachable!()
            };
            let n: usize = pools.iter().map(|p| p.elements.len()).sum();
            assert!(n <= HT_MAX_PES);
            for p in pools {
                for e in &p.elements {
                    assert!(
                        seen.insert((p.pool_handle.clone(), e.id)),
                        "PE {} of \"{}\" listed twice",
                        e.id,
                        p.pool_handle
                    );
                    let pe = hs.get(&p.pool_handle, e.id).expect("listed PE exists");
                    assert!(!own_only || pe.home() == ME);
                }
            }
        }
        let expected = if own_only {
            hs.owned_count(ME)
        } else {
            hs.len()
        };
        assert_eq!(
            seen.len(),
            expected,
            "handle table lists {} PEs",
            seen.len()
        );
    }

    /// Outputs go only to open connections (in output order: none after its Close), every
    /// message decodes, and the registrar's count of connections matches ours.
    fn check_outputs(&mut self, out: &[Output], mut addressable: BTreeSet<ConnId>) {
        for o in out {
            match o {
                Output::Send { conn, ppid, data } => {
                    assert!(
                        addressable.contains(conn),
                        "send to connection {conn}, which is not open: {out:?}"
                    );
                    match *ppid {
                        PPID_ASAP => {
                            if let Err(e) = AsapMessage::decode(data) {
                                panic!("sent ASAP does not decode: {e}: {data:02x?}");
                            }
                        }
                        PPID_ENRP => {
                            if let Err(e) = EnrpMessage::decode(data) {
                                panic!("sent ENRP does not decode: {e}: {data:02x?}");
                            }
                        }
                        other => panic!("sent with PPID {other}"),
                    }
                }
                Output::Close { conn } => {
                    assert!(
                        addressable.remove(conn),
                        "close of connection {conn}, which is not open: {out:?}"
                    );
                    self.open.remove(conn);
                    self.last_closed = *conn;
                }
                Output::Announce { data } => match AsapMessage::decode(data) {
                    Ok(d) => assert!(
                        matches!(d.message.body, AsapBody::ServerAnnounce { .. }),
                        "announce is {:?}",
                        d.message
                    ),
                    Err(e) => panic!("announce does not decode: {e}"),
                },
                Output::EnrpAnnounce { data } => match EnrpMessage::decode(data) {
                    Ok(d) => assert!(
                        matches!(d.message.body, EnrpBody::Presence { .. }),
                        "ENRP announce is {:?}",
                        d.message
                    ),
                    Err(e) => panic!("ENRP announce does not decode: {e}"),
                },
                // Peers learned from a fuzzed List Response: never reachable here.
                Output::Connect { .. } => {}
                Output::Log { .. } => {}
            }
        }
        assert_eq!(
            self.r.connections(),
            self.open.len(),
            "registrar has {} connections, the I/O loop {:?}",
            self.r.connections(),
            self.open.keys()
        );
    }
}

/// The ASAP messages sent to `conn`.
fn asap_to(out: &[Output], conn: ConnId) -> Vec<AsapMessage> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send {
                conn: c,
                ppid: PPID_ASAP,
                data,
            } if *c == conn => AsapMessage::decode(data).ok().map(|d| d.message),
            _ => None,
        })
        .collect()
}
