//! The `asap_client` target: requests, responses (well-formed ones built with the codec and raw
//! bytes), disconnects, polls with time jumps and cache selections on one [`AsapClient`], with
//! a model of what its public API promises checked after every step:
//!
//! * every finished request was requested and finishes once, with an answer of its own kind;
//!   `pending()` is the number of unfinished requests (it grows only by requests);
//! * `next_deadline()` is there exactly while requests are pending, never later than a response
//!   timeout from now, and after `poll(now)` never at or before `now`;
//! * a dropped association leaves nothing pending; a disconnect fails every pending request;
//! * whatever is to be sent decodes; keep-alives are acked, a keep-alive for a whole pool
//!   exactly for our own PEs of it;
//! * a cache selection returns only a PE delivered for that pool by a handle resolution within
//!   the cache timeout, as delivered, and not removed since (cache removal, unreachable report,
//!   deregistration, a refused resolution of the pool); the cache never holds more PEs than were
//!   delivered and not removed;
//! * our own PEs are PEs a registration response accepted and no deregistration took back.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use arbitrary::Arbitrary;

use rsplib::core::asap_client::{Answer, AsapClient, ClientConfig, Effects, Operation, RequestId};
use rsplib::core::handlespace::Micros;
use rsplib::core::types::{PeId, PoolHandle, RegistrarId, TransportAddress, TransportProtocol};
use rsplib::core::wire::{self, asap, AsapBody, AsapMessage, OperationError};

use crate::common::{self, life, pe_id, policy, pool, List, Raw};
use crate::{encode_enum, encode_struct};

const START: Micros = 1_000_000;

#[derive(Arbitrary, Clone, Debug, PartialEq)]
pub struct Setup {
    /// Response timeout: (1 + this) · 10 ms.
    pub response_timeout: u8,
    /// Cache timeout: (1 + this) · 20 ms.
    pub cache_timeout: u8,
    pub seed: u8,
}
encode_struct!(Setup {
    response_timeout,
    cache_timeout,
    seed
});

/// A PE as a registrar describes it in a handle resolution response.
#[derive(Arbitrary, Clone, Debug, PartialEq)]
pub struct Element {
    pub pe: u8,
    pub port: u8,
    pub policy: u8,
    pub value: u8,
    pub life: u8,
    pub home: u8,
    /// 1 + this % 3 addresses.
    pub addrs: u8,
    pub sctp: bool,
}
encode_struct!(Element {
    pe,
    port,
    policy,
    value,
    life,
    home,
    addrs,
    sctp
});

impl Element {
    fn to_wire(&self) -> wire::PoolElement {
        let n = 1 + usize::from(self.addrs % 3);
        let addresses: Vec<IpAddr> = (0..n)
            .map(|i| IpAddr::from([10, 0, 0, 1 + i as u8]))
            .collect();
        let protocol = if self.sctp {
            TransportProtocol::Sctp
        } else {
            TransportProtocol::Tcp
        };
        let t = TransportAddress::new(protocol, u16::from(self.port), addresses);
        let mut e = wire::PoolElement::new(pe_id(self.pe), t, policy(self.policy, self.value));
        e.registration_life = life(self.life);
        e.home_registrar = RegistrarId(u32::from(self.home % 3));
        e
    }
}

/// A message from the registrar.
#[derive(Arbitrary, Clone, Debug, PartialEq)]
pub enum Response {
    Registration {
        pool: u8,
        pe: u8,
        error: Option<u8>,
        reject: bool,
    },
    Deregistration {
        pool: u8,
        pe: u8,
        error: Option<u8>,
    },
    Resolution {
        pool: u8,
        elements: List<Element>,
        error: Option<u8>,
    },
    KeepAlive {
        pool: u8,
        pe: Option<u8>,
    },
    Announce,
    Error {
        code: u8,
    },
    Cookie,
}
encode_enum!(Response {
    Registration {
        pool,
        pe,
        error,
        reject
    },
    Deregistration { pool, pe, error },
    Resolution {
        pool,
        elements,
        error
    },
    KeepAlive { pool, pe },
    Announce,
    Error { code },
    Cookie,
});

fn operation_error(code: Option<u8>) -> Option<OperationError> {
    code.map(|c| OperationError::new(u16::from(c % 16), &[]))
}

impl Response {
    fn to_bytes(&self) -> Option<Vec<u8>> {
        let (body, flags) = match self {
            Response::Registration {
                pool: p,
                pe,
                error,
                reject,
            } => (
                AsapBody::RegistrationResponse {
                    pool_handle: pool(*p),
                    pe_id: pe_id(*pe),
                    error: operation_error(*error),
                },
                if *reject { asap::FLAG_REJECT } else { 0 },
            ),
            Response::Deregistration { pool: p, pe, error } => (
                AsapBody::DeregistrationResponse {
                    pool_handle: pool(*p),
                    pe_id: pe_id(*pe),
                    error: operation_error(*error),
                },
                0,
            ),
            Response::Resolution {
                pool: p,
                elements,
                error,
            } => {
                let elements: Vec<wire::PoolElement> =
                    elements.0.iter().map(Element::to_wire).collect();
                (
                    AsapBody::HandleResolutionResponse {
                        pool_handle: pool(*p),
                        policy: elements.first().map(|e| e.policy),
                        elements,
                        error: operation_error(*error),
                    },
                    0,
                )
            }
            Response::KeepAlive { pool: p, pe } => (
                AsapBody::EndpointKeepAlive {
                    server_id: RegistrarId(9),
                    pool_handle: pool(*p),
                    pe_id: pe.map(pe_id),
                },
                asap::FLAG_HOME,
            ),
            Response::Announce => (
                AsapBody::ServerAnnounce {
                    server_id: RegistrarId(9),
                    transports: Vec::new(),
                },
                0,
            ),
            Response::Error { code } => (
                AsapBody::Error {
                    error: OperationError::new(u16::from(*code), &[]),
                },
                0,
            ),
            Response::Cookie => (
                AsapBody::Cookie {
                    cookie: vec![1, 2, 3].into(),
                },
                0,
            ),
        };
        AsapMessage::with_flags(body, flags).to_bytes().ok()
    }
}

/// One step.
#[derive(Arbitrary, Clone, Debug, PartialEq)]
pub enum ClientOp {
    Register {
        pool: u8,
        pe: u8,
        port: u8,
        policy: u8,
        value: u8,
        life: u8,
        /// 0: no address (cannot be encoded), else that many addresses (at most 3).
        addrs: u8,
    },
    Deregister {
        pool: u8,
        pe: u8,
    },
    /// Items: `None`, or `Some(n % 201)`.
    Resolve {
        pool: u8,
        items: Option<u8>,
    },
    Unreachable {
        pool: u8,
        pe: u8,
    },
    Receive(Response),
    Raw(Raw),
    Disconnect,
    Poll,
    /// Time passes: up to 65 ms.
    Advance {
        micros: u16,
    },
    /// Time jumps: up to 65 s.
    Jump {
        ms: u16,
    },
    /// Time moves to the next deadline (or 1 µs on), then poll.
    ToDeadline,
    Select {
        pool: u8,
    },
    CacheRemove {
        pool: u8,
        pe: u8,
    },
}
encode_enum!(ClientOp {
    Register {
        pool,
        pe,
        port,
        policy,
        value,
        life,
        addrs
    },
    Deregister { pool, pe },
    Resolve { pool, items },
    Unreachable { pool, pe },
    Receive(response),
    Raw(bytes),
    Disconnect,
    Poll,
    Advance { micros },
    Jump { ms },
    ToDeadline,
    Select { pool },
    CacheRemove { pool, pe },
});

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Register,
    Deregister,
    Resolve,
}

/// The fuzz target's body.
pub fn run(data: &[u8]) {
    if let Some((setup, ops)) = common::decode::<Setup, ClientOp>(data) {
        run_ops(&setup, &ops);
    }
}

/// Runs the operations, checking after each one; panics on the first violation.
pub fn run_ops(setup: &Setup, ops: &[ClientOp]) {
    let mut h = Harness::new(setup);
    for op in ops {
        h.step(op);
    }
}

struct Harness {
    c: AsapClient,
    cfg: ClientConfig,
    now: Micros,
    next_id: RequestId,
    /// Unfinished requests.
    outstanding: BTreeMap<RequestId, Kind>,
    /// PEs delivered by handle resolutions and not removed since: as delivered, and when.
    delivered: BTreeMap<(PoolHandle, PeId), (wire::PoolElement, Micros)>,
    /// PEs a registration response accepted and no deregistration took back.
    accepted: BTreeSet<(PoolHandle, PeId)>,
}

impl Harness {
    fn new(setup: &Setup) -> Self {
        let cfg = ClientConfig {
            response_timeout: (1 + Micros::from(setup.response_timeout)) * 10_000,
            cache_timeout: (1 + Micros::from(setup.cache_timeout)) * 20_000,
        };
        Harness {
            c: AsapClient::new(cfg, u64::from(setup.seed)),
            cfg,
            now: START,
            next_id: 1,
            outstanding: BTreeMap::new(),
            delivered: BTreeMap::new(),
            accepted: BTreeSet::new(),
        }
    }

    fn step(&mut self, op: &ClientOp) {
        let pending_before = self.c.pending();
        let mut requested = false;
        let fx = match op {
            ClientOp::Register {
                pool: p,
                pe,
                port,
                policy: pol,
                value,
                life: l,
                addrs,
            } => {
                let n = usize::from(addrs % 4);
                let addresses: Vec<IpAddr> = (0..n)
                    .map(|i| IpAddr::from([127, 0, 0, 1 + i as u8]))
                    .collect();
                let t = TransportAddress::new(TransportProtocol::Sctp, u16::from(*port), addresses);
                let mut e = wire::PoolElement::new(pe_id(*pe), t, policy(*pol, *value));
                e.registration_life = life(*l);
                let op = Operation::Register {
                    pool: pool(*p),
                    element: e,
                };
                requested = self.request(op, Kind::Register);
                Effects::default()
            }
            ClientOp::Deregister { pool: p, pe } => {
                let key = (pool(*p), pe_id(*pe));
                let op = Operation::Deregister {
                    pool: key.0.clone(),
                    pe: key.1,
                };
                requested = self.request(op, Kind::Deregister);
                // Taken out of our own PEs and of the cache whether or not it can be sent.
                self.accepted.remove(&key);
                self.delivered.remove(&key);
                Effects::default()
            }
            ClientOp::Resolve { pool: p, items } => {
                let op = Operation::Resolve {
                    pool: pool(*p),
                    items: items.map(|n| u32::from(n) % 201),
                };
                requested = self.request(op, Kind::Resolve);
                Effects::default()
            }
            ClientOp::Unreachable { pool: p, pe } => {
                let key = (pool(*p), pe_id(*pe));
                if let Ok(bytes) = self.c.unreachable(&key.0, key.1) {
                    let m = AsapMessage::decode(&bytes).expect("report decodes").message;
                    assert!(matches!(m.body, AsapBody::EndpointUnreachable { .. }));
                }
                self.delivered.remove(&key);
                Effects::default()
            }
            ClientOp::Receive(r) => match r.to_bytes() {
                Some(bytes) => self.received(&bytes),
                None => Effects::default(),
            },
            ClientOp::Raw(bytes) => self.received(&bytes.0),
            ClientOp::Disconnect => {
                let fx = self.c.disconnected();
                assert!(fx.send.is_empty() && !fx.drop_association);
                assert_eq!(
                    fx.done.len(),
                    self.outstanding.len(),
                    "disconnect fails all"
                );
                fx
            }
            ClientOp::Poll => self.poll(),
            ClientOp::Advance { micros } => {
                self.now += Micros::from(*micros);
                Effects::default()
            }
            ClientOp::Jump { ms } => {
                self.now += Micros::from(*ms) * 1000;
                Effects::default()
            }
            ClientOp::ToDeadline => {
                self.now = self.c.next_deadline().unwrap_or(self.now + 1).max(self.now);
                self.poll()
            }
            ClientOp::Select { pool: p } => {
                let pool_handle = pool(*p);
                if let Some(e) = self.c.cache_select(self.now, &pool_handle) {
                    let key = (pool_handle.clone(), e.id);
                    let Some((d, at)) = self.delivered.get(&key) else {
                        panic!(
                            "cache selected PE {} of \"{pool_handle}\", never delivered or removed since",
                            e.id
                        );
                    };
                    assert!(
                        at + self.cfg.cache_timeout > self.now,
                        "cache selected PE {} of \"{pool_handle}\" delivered at {at}, stale at {}",
                        e.id,
                        self.now
                    );
                    assert_eq!(e.user_transport, d.user_transport, "PE {} transport", e.id);
                    assert_eq!(e.policy.policy, d.policy.policy, "PE {} policy", e.id);
                    assert_eq!(e.home_registrar, d.home_registrar, "PE {} home", e.id);
                }
                Effects::default()
            }
            ClientOp::CacheRemove { pool: p, pe } => {
                let key = (pool(*p), pe_id(*pe));
                self.c.cache_remove(&key.0, key.1);
                self.delivered.remove(&key);
                Effects::default()
            }
        };
        self.check(&fx, pending_before, requested);
    }

    /// Makes a request; true if it is pending now.
    fn request(&mut self, op: Operation, kind: Kind) -> bool {
        let id = self.next_id;
        self.next_id += 1;
        let before = self.c.pending();
        match self.c.request(self.now, id, op) {
            Ok(bytes) => {
                let m = AsapMessage::decode(&bytes).expect("a request decodes");
                assert!(m.unrecognized.is_empty());
                self.outstanding.insert(id, kind);
                true
            }
            Err(e) => {
                assert_eq!(
                    self.c.pending(),
                    before,
                    "a failed request ({e}) is not pending"
                );
                false
            }
        }
    }

    fn received(&mut self, bytes: &[u8]) -> Effects {
        let fx = self.c.received(self.now, bytes);
        let Ok(d) = AsapMessage::decode(bytes) else {
            assert!(
                fx.drop_association,
                "undecodable bytes drop the association"
            );
            return fx;
        };
        let m = d.message;
        match &m.body {
            AsapBody::HandleResolutionResponse {
                pool_handle,
                elements,
                error,
                ..
            } if self.outstanding.values().any(|k| *k == Kind::Resolve) => match error {
                Some(_) => self.delivered.retain(|(p, _), _| p != pool_handle),
                None => {
                    for e in elements {
                        self.delivered
                            .insert((pool_handle.clone(), e.id), (e.clone(), self.now));
                    }
                }
            },
            AsapBody::HandleResolutionResponse {
                pool_handle,
                elements,
                error: None,
                ..
            } => {
                // Nobody asked: the association is dropped, but the PEs may be cached.
                for e in elements {
                    self.delivered
                        .insert((pool_handle.clone(), e.id), (e.clone(), self.now));
                }
            }
            AsapBody::RegistrationResponse {
                pool_handle,
                pe_id,
                error: None,
            } if m.flags & asap::FLAG_REJECT == 0 => {
                self.accepted.insert((pool_handle.clone(), *pe_id));
            }
            AsapBody::EndpointKeepAlive {
                pool_handle, pe_id, ..
            } => {
                let acked: BTreeSet<PeId> = fx
                    .send
                    .iter()
                    .map(
                        |b| match AsapMessage::decode(b).expect("ack decodes").message.body {
                            AsapBody::EndpointKeepAliveAck {
                                pool_handle: ph,
                                pe_id,
                            } => {
                                assert_eq!(&ph, pool_handle, "ack for another pool");
                                pe_id
                            }
                            other => panic!("a keep-alive answered with {other:?}"),
                        },
                    )
                    .collect();
                let expected: BTreeSet<PeId> = match pe_id {
                    Some(id) => [*id].into(),
                    None => self
                        .c
                        .own_pes()
                        .filter(|(p, _)| p == pool_handle)
                        .map(|(_, id)| *id)
                        .collect(),
                };
                assert_eq!(acked, expected, "keep-alive acks");
            }
            _ => {}
        }
        fx
    }

    fn poll(&mut self) -> Effects {
        let fx = self.c.poll(self.now);
        if let Some(d) = self.c.next_deadline() {
            assert!(
                d > self.now,
                "after poll({}) the next deadline {d} is not in the future",
                self.now
            );
        }
        fx
    }

    fn check(&mut self, fx: &Effects, pending_before: usize, requested: bool) {
        let mut finished = BTreeSet::new();
        for (id, result) in &fx.done {
            assert!(finished.insert(*id), "request {id} finished twice");
            let Some(kind) = self.outstanding.remove(id) else {
                panic!("request {id} finished, but it was not pending");
            };
            match (kind, result) {
                (Kind::Register, Ok(Answer::Registered(_)))
                | (Kind::Deregister, Ok(Answer::Deregistered))
                | (Kind::Resolve, Ok(Answer::Resolved(_)))
                | (_, Err(_)) => {}
                (kind, Ok(answer)) => panic!("a {kind:?} request answered with {answer:?}"),
            }
        }
        let pending = self.c.pending();
        assert_eq!(pending, self.outstanding.len(), "pending requests");
        assert!(
            pending <= pending_before + usize::from(requested),
            "pending grew from {pending_before} to {pending}"
        );
        if fx.drop_association {
            assert_eq!(pending, 0, "a dropped association leaves requests pending");
        }
        match self.c.next_deadline() {
            None => assert_eq!(pending, 0, "requests pending without a deadline"),
            Some(d) => {
                assert!(pending > 0, "a deadline without pending requests");
                assert!(
                    d <= self.now + self.cfg.response_timeout,
                    "deadline {d} beyond a response timeout from now {}",
                    self.now
                );
            }
        }
        for b in &fx.send {
            if let Err(e) = AsapMessage::decode(b) {
                panic!("to send: does not decode: {e}");
            }
        }
        for key in self.c.own_pes() {
            assert!(
                self.accepted.contains(key),
                "own PE {} of \"{}\" was never accepted, or deregistered since",
                key.1,
                key.0
            );
        }
        assert!(
            self.c.cache_len() <= self.delivered.len(),
            "cache holds {} PEs, {} delivered and not removed",
            self.c.cache_len(),
            self.delivered.len()
        );
    }
}
