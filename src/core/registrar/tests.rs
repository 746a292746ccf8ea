//! Unit tests of the registrar state machine, with a fake clock.

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
        0,
        PE_CONN,
        TransportProtocol::Tcp,
        vec!["127.0.0.1:40000".parse().unwrap()],
        &mut Vec::new(),
    );
    r.connection_up(
        0,
        PU_CONN,
        TransportProtocol::Tcp,
        vec!["127.0.0.1:40001".parse().unwrap()],
        &mut Vec::new(),
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
    r.connection_down(0, PE_CONN, &mut out);
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
        0,
        3,
        TransportProtocol::Tcp,
        vec!["10.0.0.9:5000".parse().unwrap()],
        &mut Vec::new(),
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
