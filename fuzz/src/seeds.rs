//! The seed corpus of the state-machine targets: a handful of operation sequences per target
//! that reach the interesting states (registered PEs, keep-alives, timeouts, ENRP queries,
//! cached PEs, timeouts of requests). `write_seeds` writes them to `corpus/<target>/seed-*`;
//! `seeds_decode_and_run_clean` checks that each decodes back to its operations (the encoder
//! matches `arbitrary`) and passes its harness.

use std::path::Path;

use rsplib::core::types::{PeId, PolicyInfo, PolicyType, TransportAddress, TransportProtocol};
use rsplib::core::wire::{self, AsapBody, AsapMessage};

use crate::asap_client::{self as client, ClientOp, Element, Response};
use crate::common::{self, List, Raw};
use crate::registrar::{self as reg, Addrs, Host, Op, Proto, Reg};

fn registration(conn: u8, pe: u8, port: u8) -> Op {
    Op::Register(Reg {
        conn,
        pool: 0,
        pe,
        port,
        policy: 0,
        value: 0,
        life: 3,
        addrs: Addrs::Peer,
        proto: Proto::Tcp,
        control_channel: false,
        asap_transport: false,
    })
}

fn up(host: Host, port: u8) -> Op {
    Op::Up {
        host,
        port,
        sctp: false,
    }
}

/// A Registration as the codec encodes it (for the raw-bytes seeds).
fn raw_registration() -> Raw {
    let t = TransportAddress::new(
        TransportProtocol::Tcp,
        7000,
        vec!["127.0.0.1".parse().unwrap()],
    );
    let mut e = wire::PoolElement::new(PeId(1), t, PolicyInfo::new(PolicyType::RoundRobin));
    e.registration_life = 30_000;
    let msg = AsapMessage::new(AsapBody::Registration {
        pool_handle: "P".into(),
        element: e,
    });
    Raw(msg.to_bytes().unwrap())
}

pub fn registrar_seeds() -> Vec<(&'static str, reg::Setup, Vec<Op>)> {
    let setup = reg::Setup {
        max_bad_pe_reports: 2,
        hr_rate: None,
        eu_rate: None,
        max_hr_items: 2,
        seed: 7,
        limits: None,
    };
    let limited = reg::Setup {
        max_bad_pe_reports: 0,
        hr_rate: Some(2),
        eu_rate: Some(1),
        limits: Some(reg::Limits {
            pes_per_host: 1,
            pes_per_pool: 2,
            conns_per_host: 1,
            conns: 3,
            idle_s: 4,
            enrp: 1,
        }),
        ..setup.clone()
    };
    vec![
        (
            "keepalive",
            setup.clone(),
            vec![
                up(Host::Lo1, 0),
                registration(0, 0, 1),
                registration(0, 1, 2),
                Op::Resolve {
                    conn: 0,
                    pool: 0,
                    items: Some(5),
                },
                Op::ToWakeup,
                Op::Jump { secs: 4 },
                Op::Poll,
                Op::KeepAliveAck {
                    conn: 0,
                    pool: 0,
                    pe: 0,
                },
                Op::KeepAliveAck {
                    conn: 0,
                    pool: 0,
                    pe: 1,
                },
                Op::Jump { secs: 5 },
                Op::ToWakeup,
                Op::Deregister {
                    conn: 0,
                    pool: 0,
                    pe: 1,
                },
                Op::Down { conn: 0 },
            ],
        ),
        (
            "keepalive-timeout",
            setup.clone(),
            vec![
                up(Host::Lo1, 0),
                up(Host::Lo2, 1),
                registration(0, 0, 1),
                registration(1, 2, 1),
                Op::Jump { secs: 5 },
                Op::Poll,
                Op::KeepAliveAck {
                    conn: 0,
                    pool: 0,
                    pe: 0,
                },
                Op::Jump { secs: 5 },
                Op::Poll,
                registration(1, 2, 1),
                Op::Jump { secs: 40 },
                Op::Poll,
            ],
        ),
        (
            "same-host-takeover",
            setup.clone(),
            vec![
                up(Host::Lo1, 0),
                up(Host::Lo1, 1),
                up(Host::Ten, 2),
                registration(0, 0, 1),
                registration(1, 0, 2),
                registration(2, 0, 1),
                Op::Deregister {
                    conn: 0,
                    pool: 0,
                    pe: 0,
                },
                Op::Down { conn: 1 },
                Op::Resolve {
                    conn: 0,
                    pool: 0,
                    items: None,
                },
            ],
        ),
        (
            "enrp",
            setup.clone(),
            vec![
                up(Host::Lo1, 0),
                up(Host::Lo2, 1),
                registration(0, 0, 1),
                registration(0, 1, 1),
                Op::HandleTableRequest {
                    conn: 1,
                    sender: 1,
                    own_children: false,
                },
                Op::Presence {
                    conn: 1,
                    sender: 1,
                    reply_required: true,
                    to_me: true,
                },
                Op::HandleTableRequest {
                    conn: 1,
                    sender: 1,
                    own_children: false,
                },
                Op::HandleTableRequest {
                    conn: 1,
                    sender: 1,
                    own_children: true,
                },
                Op::ListRequest { conn: 1, sender: 1 },
                Op::Presence {
                    conn: 1,
                    sender: 2,
                    reply_required: false,
                    to_me: false,
                },
            ],
        ),
        (
            "unreachable-and-limits",
            limited,
            vec![
                up(Host::Lo1, 0),
                up(Host::Lo3, 1),
                registration(0, 0, 1),
                registration(0, 1, 1),
                Op::Unreachable {
                    conn: 1,
                    pool: 0,
                    pe: 0,
                },
                Op::Unreachable {
                    conn: 1,
                    pool: 0,
                    pe: 1,
                },
                Op::Resolve {
                    conn: 1,
                    pool: 0,
                    items: Some(0),
                },
                Op::Resolve {
                    conn: 1,
                    pool: 0,
                    items: Some(200),
                },
                Op::Resolve {
                    conn: 1,
                    pool: 0,
                    items: Some(1),
                },
                Op::Advance { micros: 60_000 },
                Op::Jump { secs: 1 },
                Op::Unreachable {
                    conn: 1,
                    pool: 0,
                    pe: 1,
                },
            ],
        ),
        (
            "lives-and-addresses",
            setup.clone(),
            vec![
                Op::Up {
                    host: Host::Multi,
                    port: 0,
                    sctp: true,
                },
                up(Host::V6Loopback, 1),
                up(Host::Unknown, 2),
                Op::Register(Reg {
                    conn: 0,
                    pool: 1,
                    pe: 3,
                    port: 1,
                    policy: 1,
                    value: 3,
                    life: 1,
                    addrs: Addrs::AllPeer,
                    proto: Proto::Sctp,
                    control_channel: true,
                    asap_transport: false,
                }),
                Op::Register(Reg {
                    conn: 1,
                    pool: 1,
                    pe: 2,
                    port: 1,
                    policy: 1,
                    value: 1,
                    life: 0,
                    addrs: Addrs::Peer,
                    proto: Proto::Sctp,
                    control_channel: true,
                    asap_transport: false,
                }),
                registration(2, 1, 1),
                Op::Register(Reg {
                    conn: 0,
                    pool: 2,
                    pe: 4,
                    port: 0,
                    policy: 5,
                    value: 9,
                    life: 4,
                    addrs: Addrs::Other,
                    proto: Proto::Udp,
                    control_channel: false,
                    asap_transport: true,
                }),
                Op::Advance { micros: 2_000 },
                Op::Poll,
            ],
        ),
        (
            "raw",
            setup,
            vec![
                up(Host::Lo1, 0),
                Op::Raw {
                    conn: 0,
                    enrp: false,
                    bytes: raw_registration(),
                },
                Op::Raw {
                    conn: 0,
                    enrp: true,
                    bytes: raw_registration(),
                },
                Op::Raw {
                    conn: 0,
                    enrp: false,
                    bytes: Raw(vec![0x0b, 0, 0, 8, 0xff, 0xff, 0, 4]),
                },
                Op::WrongPpid { conn: 0 },
                Op::Raw {
                    conn: 0,
                    enrp: false,
                    bytes: raw_registration(),
                },
            ],
        ),
    ]
}

/// Inputs that made the registrar target fail, minimized by `cargo fuzz tmin`, as operations
/// (written to `regressions/registrar/` by `write_seeds`).
pub fn registrar_regressions() -> Vec<(&'static str, reg::Setup, Vec<Op>)> {
    let setup = reg::Setup {
        max_bad_pe_reports: 0,
        hr_rate: None,
        eu_rate: None,
        max_hr_items: 0,
        seed: 0,
        limits: None,
    };
    vec![(
        // A re-registration from a second connection of the same host is refused (here: life
        // 0), yet the PE's supervision has moved to that connection, which does not list it:
        // connection 1 can no longer deregister it, closing connection 1 leaves it behind.
        "rejected-reregistration-moves-supervision",
        setup,
        vec![
            Op::Up {
                host: Host::Lo1,
                port: 0,
                sctp: true,
            },
            up(Host::Lo1, 0),
            registration(0, 0, 1),
            Op::Register(Reg {
                conn: 1,
                pool: 0,
                pe: 0,
                port: 0,
                policy: 0,
                value: 0,
                life: 0,
                addrs: Addrs::Peer,
                proto: Proto::Tcp,
                control_channel: false,
                asap_transport: false,
            }),
        ],
    )]
}

fn element(pe: u8, port: u8, policy: u8) -> Element {
    Element {
        pe,
        port,
        policy,
        value: 1,
        life: 3,
        home: 1,
        addrs: 0,
        sctp: false,
    }
}

pub fn asap_client_seeds() -> Vec<(&'static str, client::Setup, Vec<ClientOp>)> {
    let setup = client::Setup {
        response_timeout: 20,
        cache_timeout: 20,
        seed: 3,
    };
    vec![
        (
            "register-keepalive",
            setup.clone(),
            vec![
                ClientOp::Register {
                    pool: 0,
                    pe: 0,
                    port: 7,
                    policy: 0,
                    value: 0,
                    life: 3,
                    addrs: 1,
                },
                ClientOp::Receive(Response::Registration {
                    pool: 0,
                    pe: 0,
                    error: None,
                    reject: false,
                }),
                ClientOp::Receive(Response::KeepAlive { pool: 0, pe: None }),
                ClientOp::Receive(Response::KeepAlive {
                    pool: 0,
                    pe: Some(0),
                }),
                ClientOp::Deregister { pool: 0, pe: 0 },
                ClientOp::Receive(Response::Deregistration {
                    pool: 0,
                    pe: 0,
                    error: None,
                }),
                ClientOp::Receive(Response::Announce),
            ],
        ),
        (
            "resolve-cache",
            setup.clone(),
            vec![
                ClientOp::Resolve {
                    pool: 0,
                    items: Some(3),
                },
                ClientOp::Receive(Response::Resolution {
                    pool: 0,
                    elements: List(vec![element(0, 1, 0), element(1, 2, 0), element(2, 3, 0)]),
                    error: None,
                }),
                ClientOp::Select { pool: 0 },
                ClientOp::Select { pool: 0 },
                ClientOp::Unreachable { pool: 0, pe: 1 },
                ClientOp::Select { pool: 0 },
                ClientOp::CacheRemove { pool: 0, pe: 0 },
                ClientOp::Select { pool: 0 },
                ClientOp::Jump { ms: 500 },
                ClientOp::Select { pool: 0 },
            ],
        ),
        (
            "timeouts-and-strays",
            setup.clone(),
            vec![
                ClientOp::Resolve {
                    pool: 1,
                    items: None,
                },
                ClientOp::Deregister { pool: 1, pe: 2 },
                ClientOp::Advance { micros: 1_000 },
                ClientOp::Poll,
                ClientOp::ToDeadline,
                ClientOp::Receive(Response::Deregistration {
                    pool: 1,
                    pe: 2,
                    error: None,
                }),
                ClientOp::Register {
                    pool: 1,
                    pe: 1,
                    port: 1,
                    policy: 2,
                    value: 0,
                    life: 0,
                    addrs: 0,
                },
                ClientOp::Receive(Response::Registration {
                    pool: 1,
                    pe: 1,
                    error: Some(10),
                    reject: true,
                }),
            ],
        ),
        (
            "errors-and-disconnect",
            setup.clone(),
            vec![
                ClientOp::Resolve {
                    pool: 0,
                    items: Some(200),
                },
                ClientOp::Receive(Response::Resolution {
                    pool: 0,
                    elements: List(vec![]),
                    error: Some(9),
                }),
                ClientOp::Resolve {
                    pool: 0,
                    items: Some(0),
                },
                ClientOp::Register {
                    pool: 2,
                    pe: 4,
                    port: 0,
                    policy: 0,
                    value: 0,
                    life: 0,
                    addrs: 3,
                },
                ClientOp::Disconnect,
                ClientOp::Resolve {
                    pool: 0,
                    items: None,
                },
                ClientOp::Raw(Raw(vec![0x01, 0, 0, 3])),
                ClientOp::Resolve {
                    pool: 0,
                    items: None,
                },
                ClientOp::Receive(Response::Error { code: 3 }),
                ClientOp::Receive(Response::Cookie),
            ],
        ),
        (
            "policy-change",
            setup,
            vec![
                ClientOp::Resolve {
                    pool: 0,
                    items: None,
                },
                ClientOp::Receive(Response::Resolution {
                    pool: 0,
                    elements: List(vec![element(0, 1, 0), element(1, 1, 0)]),
                    error: None,
                }),
                ClientOp::Resolve {
                    pool: 0,
                    items: None,
                },
                ClientOp::Receive(Response::Resolution {
                    pool: 0,
                    elements: List(vec![element(2, 1, 2), element(3, 0, 2)]),
                    error: None,
                }),
                ClientOp::Select { pool: 0 },
                ClientOp::Select { pool: 1 },
            ],
        ),
    ]
}

fn registrar_inputs() -> Vec<(&'static str, Vec<u8>)> {
    registrar_encode(registrar_seeds())
}

fn registrar_encode(
    seeds: Vec<(&'static str, reg::Setup, Vec<Op>)>,
) -> Vec<(&'static str, Vec<u8>)> {
    seeds
        .into_iter()
        .map(|(name, setup, ops)| {
            let bytes = common::input(&setup, &ops);
            let (s, o) = common::decode::<reg::Setup, Op>(&bytes).expect("decodes");
            assert_eq!(
                (&s, &o),
                (&setup, &ops),
                "seed {name} decodes to its operations"
            );
            (name, bytes)
        })
        .collect()
}

fn asap_client_inputs() -> Vec<(&'static str, Vec<u8>)> {
    asap_client_seeds()
        .into_iter()
        .map(|(name, setup, ops)| {
            let bytes = common::input(&setup, &ops);
            let (s, o) = common::decode::<client::Setup, ClientOp>(&bytes).expect("decodes");
            assert_eq!(
                (&s, &o),
                (&setup, &ops),
                "seed {name} decodes to its operations"
            );
            (name, bytes)
        })
        .collect()
}

#[test]
fn seeds_decode_and_run_clean() {
    for (_, bytes) in registrar_inputs() {
        reg::run(&bytes);
    }
    for (_, bytes) in asap_client_inputs() {
        client::run(&bytes);
    }
}

/// Fails while the bugs the regressions reproduce are not fixed (see `registrar_regressions`).
#[test]
fn regressions_run_clean() {
    for (name, bytes) in registrar_encode(registrar_regressions()) {
        if let Err(e) = std::panic::catch_unwind(|| reg::run(&bytes)) {
            let why = e
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "(no message)".into());
            panic!("regression {name} fails: {why}");
        }
    }
}

#[test]
#[ignore = "writes the seed corpus: cargo test -- --ignored write_seeds"]
fn write_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (target, inputs) in [
        ("registrar", registrar_inputs()),
        ("asap_client", asap_client_inputs()),
    ] {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in inputs {
            std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
        }
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions/registrar");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in registrar_encode(registrar_regressions()) {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}
