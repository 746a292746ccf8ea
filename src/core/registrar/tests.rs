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
    // These tests jump the clock; stall recovery has tests of its own.
    cfg.stall_gap = None;
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
    assert_eq!(next_timer(&r), Some(5 * SEC));
    assert_eq!(
        r.next_wakeup(),
        Some(TICK),
        "the registrar is woken every tick"
    );
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
    assert!(next_timer(&r).is_none(), "no timers left for removed PEs");
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

/// The earliest keep-alive timer.
fn next_timer(r: &Registrar) -> Option<Micros> {
    r.supervision.next_due()
}

/// Brings up connection `conn` from `addr`; returns what the registrar said.
fn connect(r: &mut Registrar, now: Micros, conn: ConnId, addr: &str) -> Vec<Output> {
    let mut out = Vec::new();
    r.connection_up(
        now,
        conn,
        TransportProtocol::Tcp,
        vec![addr.parse().unwrap()],
        &mut out,
    );
    out
}

fn unreachable_from(r: &mut Registrar, now: Micros, conn: ConnId, id: u32) {
    send(
        r,
        now,
        conn,
        AsapBody::EndpointUnreachable {
            pool_handle: "EchoPool".into(),
            pe_id: PeId(id),
        },
    );
}

#[test]
fn unreachable_reports_remove_after_reports_from_distinct_hosts() {
    let mut r = registrar();
    register(&mut r, 0, 1, PolicyType::RoundRobin);
    // Three reports from one host, over three connections, count once.
    for conn in 10..13 {
        connect(&mut r, 0, conn, "127.0.0.2:5000");
        unreachable_from(&mut r, 1, conn, 1);
    }
    unreachable_from(&mut r, 1, PU_CONN, 1);
    assert_eq!(r.handlespace().len(), 1, "two hosts reported so far");
    assert_eq!(
        r.handlespace()
            .get(&"EchoPool".into(), PeId(1))
            .unwrap()
            .unreachable_reports(),
        2
    );
    connect(&mut r, 0, 20, "127.0.0.3:5000");
    unreachable_from(&mut r, 1, 20, 1);
    assert_eq!(
        r.handlespace().len(),
        0,
        "the third host's report removes it"
    );
    assert!(r.reporters.is_empty(), "nothing kept about a removed PE");
    assert!(r.supervision.is_empty());
    assert_eq!(r.counters().removed_unreachable, 1);
}

#[test]
fn the_unreachable_rate_is_per_host_not_per_connection() {
    let mut r = registrar();
    r.cfg.max_eu_rate = Some(1);
    r.cfg.max_bad_pe_reports = 1;
    r.hs.config_mut().max_bad_pe_reports = 1;
    register(&mut r, 0, 1, PolicyType::RoundRobin);
    register(&mut r, 0, 2, PolicyType::RoundRobin);
    connect(&mut r, 0, 10, "127.0.0.2:5000");
    connect(&mut r, 0, 11, "127.0.0.2:5001");
    let mut out = Vec::new();
    let bytes = |id: u32| {
        AsapMessage::new(AsapBody::EndpointUnreachable {
            pool_handle: "EchoPool".into(),
            pe_id: PeId(id),
        })
        .to_bytes()
        .unwrap()
    };
    r.receive(SEC, 10, PPID_ASAP, &bytes(1), &mut out);
    r.receive(SEC, 11, PPID_ASAP, &bytes(2), &mut out);
    assert_eq!(
        r.handlespace().len(),
        1,
        "the second report, on a new connection, is over the rate"
    );
    assert_eq!(r.counters().refused(Refusal::UnreachableRate), 1);
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Log { text, .. } if text.contains("-maxeurate"))));
    r.receive(2 * SEC, 11, PPID_ASAP, &bytes(2), &mut out);
    assert_eq!(r.handlespace().len(), 0, "a second later it counts");
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

/// What hsdump sends (a Presence, then a Handle Table Request) from connection `conn`, and
/// everything the registrar answered.
fn enrp_query(r: &mut Registrar, conn: ConnId) -> Vec<Output> {
    let tool = RegistrarId(0x5c46_3c96);
    let mut out = Vec::new();
    let presence = EnrpMessage::new(
        tool,
        RegistrarId(0),
        EnrpBody::Presence {
            checksum: 0xffff,
            server_info: ServerInformation::new(tool, vec![]),
        },
    );
    r.receive(0, conn, PPID_ENRP, &presence.to_bytes().unwrap(), &mut out);
    // One page per request; the next request continues while M is set.
    loop {
        let htr = EnrpMessage::new(tool, r.id(), EnrpBody::HandleTableRequest);
        let mut page = Vec::new();
        r.receive(0, conn, PPID_ENRP, &htr.to_bytes().unwrap(), &mut page);
        let more = enrp_sent(&page).iter().any(|m| {
            matches!(m.body, EnrpBody::HandleTableResponse { .. }) && m.flags & enrp::FLAG_MORE != 0
        });
        out.extend(page);
        if !more {
            return out;
        }
    }
}

/// The ENRP messages among `out`.
fn enrp_sent(out: &[Output]) -> Vec<EnrpMessage> {
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

/// hsdump's queries from the PU's connection (loopback, an allowed tool) and the ENRP replies.
fn hsdump_queries(r: &mut Registrar) -> Vec<EnrpMessage> {
    enrp_sent(&enrp_query(r, PU_CONN))
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
    // Like rsplib: a Presence to the new "peer" and a List Request, then the table.
    assert!(matches!(replies[0].body, EnrpBody::Presence { .. }));
    assert!(matches!(replies[1].body, EnrpBody::ListRequest));
    match &replies[2].body {
        EnrpBody::HandleTableResponse { pools } => {
            assert_eq!(replies[2].flags, 0);
            assert_eq!(pools[0].elements[0].id, PeId(0xe001));
            assert!(pools[0].elements[0].asap_transport.is_some());
        }
        other => panic!("{other:?}"),
    }
}

/// A second connection from the same host as the PE's.
const SAME_HOST: ConnId = 30;

fn register_on(
    r: &mut Registrar,
    now: Micros,
    conn: ConnId,
    id: u32,
    element: wire::PoolElement,
) -> AsapMessage {
    let out = send(
        r,
        now,
        conn,
        AsapBody::Registration {
            pool_handle: "EchoPool".into(),
            element: wire::PoolElement {
                id: PeId(id),
                ..element
            },
        },
    );
    sent(&out, conn).remove(0)
}

fn reg_error(m: &AsapMessage) -> Option<u16> {
    match &m.body {
        AsapBody::RegistrationResponse { error, .. } => error.as_ref().map(|e| e.code()),
        other => panic!("{other:?}"),
    }
}

fn deregister_on(r: &mut Registrar, now: Micros, conn: ConnId, id: u32) -> Option<u16> {
    let out = send(
        r,
        now,
        conn,
        AsapBody::Deregistration {
            pool_handle: "EchoPool".into(),
            pe_id: PeId(id),
        },
    );
    match &sent(&out, conn)[0].body {
        AsapBody::DeregistrationResponse { error, .. } => error.as_ref().map(|e| e.code()),
        other => panic!("{other:?}"),
    }
}

fn port_of(r: &Registrar, id: u32) -> Option<u16> {
    r.handlespace()
        .get(&"EchoPool".into(), PeId(id))
        .map(|pe| pe.user_transport().port)
}

#[test]
fn a_rejected_reregistration_from_another_connection_changes_nothing() {
    // Issue 14, attack 2 ("ghost PEs").
    for variant in ["life 0", "other policy"] {
        let mut r = registrar();
        register(&mut r, 0, 1, PolicyType::RoundRobin);
        connect(&mut r, 0, SAME_HOST, "127.0.0.1:41000");
        let mut e = element(1, PolicyType::RoundRobin, 7001);
        if variant == "life 0" {
            e.registration_life = 0;
        } else {
            e.policy = PolicyInfo::new(PolicyType::LeastUsed);
        }
        let resp = register_on(&mut r, SEC, SAME_HOST, 1, e);
        assert_eq!(resp.flags, asap::FLAG_REJECT, "{variant}");
        // What the message says is judged first; either way nothing changes.
        let expected = if variant == "life 0" {
            cause::INVALID_VALUES
        } else {
            cause::INCONSISTENT_POOLING_POLICY
        };
        assert_eq!(reg_error(&resp), Some(expected), "{variant}");
        assert_eq!(
            r.supervision
                .get(&("EchoPool".into(), PeId(1)))
                .unwrap()
                .conn,
            PE_CONN
        );
        // The owner still owns it: closing its connection removes the PE at once.
        let mut out = Vec::new();
        r.connection_down(2 * SEC, PE_CONN, &mut out);
        assert_eq!(r.handlespace().len(), 0, "{variant}: no ghost");
    }
    // The same host's own rejected re-registration (life 0) keeps it too.
    let mut r = registrar();
    register(&mut r, 0, 1, PolicyType::RoundRobin);
    let mut e = element(1, PolicyType::RoundRobin, 7001);
    e.registration_life = 0;
    let resp = register_on(&mut r, SEC, PE_CONN, 1, e);
    assert_eq!(reg_error(&resp), Some(cause::INVALID_VALUES));
    assert_eq!(deregister_on(&mut r, SEC, PE_CONN, 1), None);
    assert_eq!(r.handlespace().len(), 0);
}

#[test]
fn another_connection_from_the_same_host_cannot_hijack_a_live_pe() {
    // Issue 14, attack 3.
    let mut r = registrar();
    register_on(
        &mut r,
        0,
        PE_CONN,
        1,
        element(1, PolicyType::RoundRobin, 8001),
    );
    connect(&mut r, 0, SAME_HOST, "127.0.0.1:41000");
    let out = send(
        &mut r,
        SEC,
        SAME_HOST,
        AsapBody::Registration {
            pool_handle: "EchoPool".into(),
            element: element(1, PolicyType::RoundRobin, 6666),
        },
    );
    assert_eq!(
        reg_error(&sent(&out, SAME_HOST)[0]),
        Some(cause::REJECTED_SECURITY)
    );
    assert_eq!(port_of(&r, 1), Some(8001));
    assert_eq!(r.counters().refused(Refusal::Ownership), 1);
    // The owner is probed at once: a dead owner is found within one keep-alive timeout.
    assert_eq!(next_timer(&r), Some(SEC));
    let mut out = Vec::new();
    r.poll(SEC, &mut out);
    assert!(matches!(
        sent(&out, PE_CONN)[0].body,
        AsapBody::EndpointKeepAlive { .. }
    ));
    // Nor may it deregister it; the owner may.
    assert_eq!(
        deregister_on(&mut r, SEC, SAME_HOST, 1),
        Some(cause::REJECTED_SECURITY)
    );
    assert_eq!(deregister_on(&mut r, SEC, PE_CONN, 1), None);
    assert_eq!(r.handlespace().len(), 0);
}

#[test]
fn a_pe_without_a_live_owner_may_be_taken_from_its_own_address_only() {
    // The documented case: no supervising connection (here: an orphan after a stall).
    let mut r = registrar();
    r.cfg.stall_gap = Some(4 * SEC);
    register_on(
        &mut r,
        0,
        PE_CONN,
        1,
        element(1, PolicyType::RoundRobin, 8001),
    );
    let mut out = Vec::new();
    r.poll(10 * SEC, &mut out); // a stall: recovery starts
    assert!(r.recovering(10 * SEC));
    r.connection_down(10 * SEC, PE_CONN, &mut out);
    assert_eq!(r.handlespace().len(), 1, "kept as an orphan");
    // Another host may not take it.
    connect(&mut r, 10 * SEC, 40, "127.0.0.9:5000");
    let e = element(1, PolicyType::RoundRobin, 8001);
    let resp = register_on(&mut r, 10 * SEC, 40, 1, e.clone());
    assert_eq!(
        reg_error(&resp),
        Some(cause::RSPLIB_NO_USABLE_USER_ADDRESSES)
    );
    let mut foreign = e.clone();
    foreign.user_transport.addresses = vec!["127.0.0.9".parse().unwrap()];
    let resp = register_on(&mut r, 10 * SEC, 40, 1, foreign);
    assert_eq!(reg_error(&resp), Some(cause::REJECTED_SECURITY));
    assert_eq!(
        deregister_on(&mut r, 10 * SEC, 40, 1),
        Some(cause::REJECTED_SECURITY)
    );
    // Its own host may: it becomes the owner.
    connect(&mut r, 10 * SEC, SAME_HOST, "127.0.0.1:41000");
    assert_eq!(
        reg_error(&register_on(&mut r, 10 * SEC, SAME_HOST, 1, e)),
        None
    );
    assert_eq!(
        r.supervision
            .get(&("EchoPool".into(), PeId(1)))
            .unwrap()
            .conn,
        SAME_HOST
    );
    assert!(r.orphans.is_empty());
    // Once the recovery is over, its connection's end removes it at once.
    r.cfg.keepalive_interval = 3600 * SEC;
    r.arm(
        ("EchoPool".into(), PeId(1)),
        3600 * SEC,
        TimerKind::SendKeepAlive,
    );
    for t in 11..=21 {
        r.poll(t * SEC, &mut out);
    }
    assert!(!r.recovering(21 * SEC));
    r.connection_down(21 * SEC, SAME_HOST, &mut out);
    assert_eq!(r.handlespace().len(), 0);
}

#[test]
fn a_stalled_registrar_gives_every_pe_one_keep_alive_round() {
    // Issue 14, attack 9: SIGSTOP, the PEs drop their connections meanwhile and reconnect.
    let mut r = registrar();
    r.cfg.stall_gap = Some(4 * SEC);
    r.cfg.keepalive_interval = 5 * SEC;
    r.cfg.keepalive_timeout = 5 * SEC;
    register_on(
        &mut r,
        0,
        PE_CONN,
        1,
        element(1, PolicyType::RoundRobin, 8001),
    );
    register_on(
        &mut r,
        0,
        PE_CONN,
        2,
        element(2, PolicyType::RoundRobin, 8002),
    );
    let mut out = Vec::new();
    for t in 1..=4 {
        r.poll(t * SEC, &mut out); // a live registrar polls at least every second
    }
    assert!(!r.recovering(4 * SEC));
    // 10 s without running: the first thing it sees is the PE connection's end.
    let mut out = Vec::new();
    r.connection_down(14 * SEC, PE_CONN, &mut out);
    assert!(r.recovering(14 * SEC));
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Log { text, .. } if text.contains("did not run"))));
    assert_eq!(r.handlespace().len(), 2, "the pool is not emptied");
    // PE 1 comes back over a new connection; PE 2 does not.
    connect(&mut r, 14 * SEC, SAME_HOST, "127.0.0.1:41000");
    let resp = register_on(
        &mut r,
        14 * SEC,
        SAME_HOST,
        1,
        element(1, PolicyType::RoundRobin, 8001),
    );
    assert_eq!(reg_error(&resp), None);
    // Recovery lasts one keep-alive round: interval + timeout.
    // PE 1 answers its keep-alives.
    let ack = |r: &mut Registrar, t: Micros, out: &[Output]| {
        for m in sent(out, SAME_HOST) {
            if let AsapBody::EndpointKeepAlive { pe_id, .. } = m.body {
                send(
                    r,
                    t,
                    SAME_HOST,
                    AsapBody::EndpointKeepAliveAck {
                        pool_handle: "EchoPool".into(),
                        pe_id: pe_id.unwrap(),
                    },
                );
            }
        }
    };
    for t in 15..=23 {
        let mut out = Vec::new();
        r.poll(t * SEC, &mut out);
        ack(&mut r, t * SEC, &out);
        assert_eq!(r.handlespace().len(), 2, "at {t} s");
    }
    let mut out = Vec::new();
    r.poll(25 * SEC, &mut out);
    ack(&mut r, 25 * SEC, &out);
    assert!(!r.recovering(25 * SEC));
    assert_eq!(
        r.handlespace().len(),
        1,
        "the orphan that did not return is removed"
    );
    assert!(r.handlespace().get(&"EchoPool".into(), PeId(1)).is_some());
    assert!(r.orphans.is_empty());
}

#[test]
fn after_a_stall_live_pes_get_a_keep_alive_and_nothing_expires_meanwhile() {
    let mut r = registrar();
    r.cfg.stall_gap = Some(4 * SEC);
    r.cfg.keepalive_interval = 5 * SEC;
    r.cfg.keepalive_timeout = 5 * SEC;
    let mut e = element(1, PolicyType::RoundRobin, 8001);
    e.registration_life = 8_000; // expires at 8 s
    register_on(&mut r, 0, PE_CONN, 1, e);
    let mut out = Vec::new();
    r.poll(3 * SEC, &mut out);
    // Stopped from 3 s to 20 s: the keep-alive sent at 5 s and its timeout never ran.
    let mut out = Vec::new();
    r.poll(20 * SEC, &mut out);
    assert!(r.recovering(20 * SEC));
    assert_eq!(r.handlespace().len(), 1, "no expiry during recovery");
    assert!(
        !out.contains(&Output::Close { conn: PE_CONN }),
        "no timeout without a fresh keep-alive"
    );
    assert!(matches!(
        sent(&out, PE_CONN)[0].body,
        AsapBody::EndpointKeepAlive { .. }
    ));
    // The PE answers and re-registers: it stays.
    send(
        &mut r,
        20 * SEC,
        PE_CONN,
        AsapBody::EndpointKeepAliveAck {
            pool_handle: "EchoPool".into(),
            pe_id: PeId(1),
        },
    );
    register_on(
        &mut r,
        21 * SEC,
        PE_CONN,
        1,
        element(1, PolicyType::RoundRobin, 8001),
    );
    for t in 22..=40 {
        r.poll(t * SEC, &mut out);
    }
    assert_eq!(
        r.handlespace().len(),
        0,
        "unacked keep-alives close the connection after recovery"
    );
}

#[test]
fn resolutions_are_limited_per_host_and_refused_with_a_security_cause() {
    // Issue 14, attack 5: one new connection per request does not get round the limit.
    let mut r = registrar();
    r.cfg.max_hr_rate = Some(2);
    register(&mut r, 0, 1, PolicyType::RoundRobin);
    let mut answers = Vec::new();
    for conn in 100..110 {
        connect(&mut r, SEC, conn, "127.0.0.2:6000");
        let out = send(
            &mut r,
            SEC,
            conn,
            AsapBody::HandleResolution {
                pool_handle: "EchoPool".into(),
                items: None,
            },
        );
        match &sent(&out, conn)[0].body {
            AsapBody::HandleResolutionResponse { error, .. } => {
                answers.push(error.as_ref().map(|e| e.code()))
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(answers.iter().filter(|a| a.is_none()).count(), 2);
    assert!(answers[2..]
        .iter()
        .all(|a| *a == Some(cause::REJECTED_SECURITY)));
    assert_eq!(r.counters().refused(Refusal::ResolutionRate), 8);
    // Another host is served.
    assert!(resolved_ids(&resolve(&mut r, SEC, None)).contains(&1));
}

#[test]
fn registrations_are_limited_per_host_and_per_pool() {
    // Issue 14, attack 6.
    let mut r = registrar();
    r.cfg.max_pes_per_host = Some(3);
    for id in 1..=3 {
        assert_eq!(
            reg_error(&register(&mut r, 0, id, PolicyType::RoundRobin)),
            None
        );
    }
    let resp = register(&mut r, 0, 4, PolicyType::RoundRobin);
    assert_eq!(reg_error(&resp), Some(cause::LACK_OF_RESOURCES));
    // Re-registering one it has is fine at the limit, on any of the host's connections' PEs.
    assert_eq!(
        reg_error(&register(&mut r, SEC, 3, PolicyType::RoundRobin)),
        None
    );
    // The count follows deregistrations.
    assert_eq!(deregister_on(&mut r, SEC, PE_CONN, 1), None);
    assert_eq!(
        reg_error(&register(&mut r, SEC, 4, PolicyType::RoundRobin)),
        None
    );
    assert_eq!(r.counters().refused(Refusal::PesPerHost), 1);
    // Per pool, from several hosts.
    r.cfg.max_pes_per_host = None;
    r.cfg.max_pes_per_pool = Some(3);
    connect(&mut r, SEC, 50, "127.0.0.5:7000");
    let mut e = element(9, PolicyType::RoundRobin, 9000);
    e.user_transport.addresses = vec!["127.0.0.5".parse().unwrap()];
    let resp = register_on(&mut r, SEC, 50, 9, e);
    assert_eq!(reg_error(&resp), Some(cause::LACK_OF_RESOURCES));
    assert_eq!(r.counters().refused(Refusal::PesPerPool), 1);
    assert_eq!(r.hosts[&"127.0.0.1".parse::<IpAddr>().unwrap()].pes, 3);
}

#[test]
fn connections_are_limited_in_all_and_per_host() {
    let mut r = registrar();
    r.cfg.max_connections_per_host = Some(3);
    r.cfg.max_connections = Some(5);
    // 127.0.0.1 has two already.
    assert!(connect(&mut r, 0, 60, "127.0.0.1:1").is_empty());
    let out = connect(&mut r, 0, 61, "127.0.0.1:2");
    assert!(out.contains(&Output::Close { conn: 61 }));
    assert!(!r.conns.contains_key(&61));
    assert!(connect(&mut r, 0, 62, "127.0.0.2:1").is_empty());
    assert!(connect(&mut r, 0, 63, "127.0.0.3:1").is_empty());
    let out = connect(&mut r, 0, 64, "127.0.0.4:1");
    assert!(out.contains(&Output::Close { conn: 64 }), "five in all");
    assert_eq!(r.connections(), 5);
    assert_eq!(r.counters().refused(Refusal::Connection), 2);
    let logs = out
        .iter()
        .filter(|o| matches!(o, Output::Log { .. }))
        .count();
    assert_eq!(
        logs, 0,
        "the second refusal within the interval is not logged"
    );
    r.connection_down(0, 62, &mut Vec::new());
    assert!(connect(&mut r, 0, 65, "127.0.0.4:1").is_empty());
}

#[test]
fn idle_connections_without_pes_are_closed() {
    let mut r = registrar();
    r.cfg.idle_timeout = 5 * SEC;
    r.cfg.keepalive_interval = 3600 * SEC;
    register(&mut r, 0, 1, PolicyType::RoundRobin);
    let mut out = Vec::new();
    resolve(&mut r, 3 * SEC, None);
    r.poll(5 * SEC, &mut out);
    assert!(out.is_empty(), "{out:?}");
    r.poll(8 * SEC, &mut out);
    assert!(out.contains(&Output::Close { conn: PU_CONN }));
    assert!(
        !out.contains(&Output::Close { conn: PE_CONN }),
        "a PE's connection stays"
    );
    assert_eq!(r.connections(), 1);
}

#[test]
fn a_poll_does_bounded_work_and_asks_to_be_called_again() {
    let mut r = registrar();
    r.cfg.max_pes_per_host = None;
    for id in 1..=2500 {
        register(&mut r, 0, id, PolicyType::RoundRobin);
    }
    let mut out = Vec::new();
    r.poll(5 * SEC, &mut out);
    assert_eq!(sent(&out, PE_CONN).len(), MAX_WORK_PER_POLL);
    assert!(r.next_wakeup().unwrap() <= 5 * SEC);
    let mut out = Vec::new();
    r.poll(5 * SEC, &mut out);
    r.poll(5 * SEC, &mut out);
    assert_eq!(sent(&out, PE_CONN).len(), 2500 - MAX_WORK_PER_POLL);
}

fn table_ports(out: &[Output]) -> Vec<u16> {
    enrp_sent(out)
        .into_iter()
        .filter_map(|m| match m.body {
            EnrpBody::HandleTableResponse { pools } => Some(pools),
            _ => None,
        })
        .flatten()
        .flat_map(|p| p.elements)
        .map(|e| e.asap_transport.expect("an ASAP transport").port)
        .collect()
}

#[test]
fn enrp_is_answered_only_for_peers_and_allowed_hosts_and_tools_see_no_ports() {
    // Issue 14, attack 10.
    let mut r = registrar();
    r.cfg.enrp_allow = vec![AddressPrefix::parse("127.0.0.1").unwrap()];
    r.cfg.peers = vec!["127.0.0.7".parse().unwrap()];
    register(&mut r, 0, 1, PolicyType::RoundRobin);
    connect(&mut r, 0, 70, "127.0.0.2:9901");
    let out = enrp_query(&mut r, 70);
    assert!(table_ports(&out).is_empty());
    assert!(out.contains(&Output::Close { conn: 70 }));
    assert!(!out.iter().any(|o| matches!(o, Output::Send { .. })));
    assert_eq!(r.counters().refused(Refusal::EnrpAccess), 1);
    // An allowed tool: the table, registrar-side ports hidden.
    assert_eq!(
        table_ports(&enrp_query(&mut r, PU_CONN)),
        vec![HIDDEN_ASAP_PORT]
    );
    // A configured peer: the real port (takeover needs it).
    connect(&mut r, 0, 71, "127.0.0.7:9901");
    assert_eq!(table_ports(&enrp_query(&mut r, 71)), vec![40000]);
}

/// The PE ids of the keep-alives sent to `conn`.
fn keep_alive_ids(out: &[Output], conn: ConnId) -> Vec<u32> {
    sent(out, conn)
        .into_iter()
        .filter_map(|m| match m.body {
            AsapBody::EndpointKeepAlive { pe_id, .. } => pe_id.map(|p| p.0),
            _ => None,
        })
        .collect()
}

fn ack(r: &mut Registrar, now: Micros, conn: ConnId, id: u32) {
    send(
        r,
        now,
        conn,
        AsapBody::EndpointKeepAliveAck {
            pool_handle: "EchoPool".into(),
            pe_id: PeId(id),
        },
    );
}

#[test]
fn many_pes_of_one_connection_each_keep_their_own_keep_alive_time() {
    // Issue 18: the timers of one connection's PEs are kept together, the times stay per PE.
    let mut r = registrar();
    r.cfg.max_pes_per_host = None;
    for id in 1..=100 {
        register(&mut r, 0, id, PolicyType::RoundRobin);
    }
    let mut out = Vec::new();
    r.poll(5 * SEC - 1, &mut out);
    assert!(keep_alive_ids(&out, PE_CONN).is_empty(), "none early");
    let mut out = Vec::new();
    r.poll(5 * SEC, &mut out);
    assert_eq!(keep_alive_ids(&out, PE_CONN), (1..=100).collect::<Vec<_>>());
    r.check_invariants().unwrap();
    // All but PE 7 answer at once; PE 7 answers late, just before its timeout; PE 9
    // registers again at 7 s (its keep-alive is then due 5 s later, its ack no longer awaited).
    for id in (1..=100).filter(|&id| id != 7) {
        ack(&mut r, 5 * SEC + 100_000, PE_CONN, id);
    }
    register(&mut r, 7 * SEC, 9, PolicyType::RoundRobin);
    ack(&mut r, 10 * SEC - 1, PE_CONN, 7);
    r.check_invariants().unwrap();
    let mut out = Vec::new();
    r.poll(10 * SEC, &mut out);
    assert!(!out.contains(&Output::Close { conn: PE_CONN }));
    assert!(keep_alive_ids(&out, PE_CONN).is_empty());
    let mut out = Vec::new();
    r.poll(10 * SEC + 100_000, &mut out);
    let mut expected: Vec<u32> = (1..=100).filter(|&id| id != 7 && id != 9).collect();
    assert_eq!(keep_alive_ids(&out, PE_CONN), expected);
    let mut out = Vec::new();
    r.poll(12 * SEC, &mut out);
    assert_eq!(keep_alive_ids(&out, PE_CONN), vec![9]);
    // PE 7's is due at 15 s - 1 µs: sent in the 10 ms slot that ends at 15 s.
    let mut out = Vec::new();
    r.poll(15 * SEC - 2, &mut out);
    assert!(keep_alive_ids(&out, PE_CONN).is_empty());
    r.poll(15 * SEC, &mut out);
    assert_eq!(keep_alive_ids(&out, PE_CONN), vec![7]);
    assert_eq!(r.handlespace().len(), 100);
    // Everyone answers except PE 9: its timeout (17 s) closes the connection and removes all.
    expected.push(7);
    for id in expected {
        ack(&mut r, 15 * SEC, PE_CONN, id);
    }
    let mut out = Vec::new();
    r.poll(17 * SEC - 1, &mut out);
    assert_eq!(r.handlespace().len(), 100);
    r.poll(17 * SEC, &mut out);
    assert!(out.contains(&Output::Close { conn: PE_CONN }));
    assert_eq!(r.handlespace().len(), 0);
    assert_eq!(r.counters().keepalive_timeouts, 1);
    assert!(
        r.next_wakeup().is_some_and(|t| t > 17 * SEC),
        "no timer left"
    );
    assert!(r.supervision.next_due().is_none());
    r.check_invariants().unwrap();
}

#[test]
fn a_silent_pe_takes_only_its_own_connection_down() {
    let mut r = registrar();
    r.cfg.max_pes_per_host = None;
    connect(&mut r, 0, SAME_HOST, "127.0.0.1:41000");
    for id in 1..=50 {
        register_on(
            &mut r,
            0,
            PE_CONN,
            id,
            element(id, PolicyType::RoundRobin, 7000),
        );
        register_on(
            &mut r,
            SEC / 2,
            SAME_HOST,
            100 + id,
            element(id, PolicyType::RoundRobin, 7001),
        );
    }
    let mut out = Vec::new();
    r.poll(5 * SEC, &mut out);
    assert_eq!(keep_alive_ids(&out, PE_CONN).len(), 50);
    assert!(keep_alive_ids(&out, SAME_HOST).is_empty());
    r.poll(5 * SEC + SEC / 2, &mut out);
    assert_eq!(keep_alive_ids(&out, SAME_HOST).len(), 50);
    // SAME_HOST's PEs all answer; of PE_CONN's, PE 50 does not.
    for id in 1..=49 {
        ack(&mut r, 6 * SEC, PE_CONN, id);
    }
    for id in 101..=150 {
        ack(&mut r, 6 * SEC, SAME_HOST, id);
    }
    let mut out = Vec::new();
    r.poll(10 * SEC, &mut out);
    assert!(out.contains(&Output::Close { conn: PE_CONN }));
    assert!(!out.contains(&Output::Close { conn: SAME_HOST }));
    assert_eq!(r.handlespace().len(), 50);
    assert!(r.handlespace().get(&"EchoPool".into(), PeId(101)).is_some());
    r.check_invariants().unwrap();
    // The other connection's PEs go on: keep-alives 5 s after their acks.
    let mut out = Vec::new();
    r.poll(11 * SEC, &mut out);
    assert_eq!(keep_alive_ids(&out, SAME_HOST).len(), 50);
    // Closing it by the peer removes its PEs and their timers.
    r.connection_down(12 * SEC, SAME_HOST, &mut out);
    assert_eq!(r.handlespace().len(), 0);
    assert!(r.supervision.next_due().is_none());
    r.check_invariants().unwrap();
}

/// The frequent lines (a PE registered, re-registered, deregistered) are made only up to the
/// I/O loop's level: everything by default; at level 3 a re-registration makes none; at
/// level 2 neither does a registration or a deregistration, which are still answered.
#[test]
fn frequent_log_lines_follow_the_configured_level() {
    fn lines(out: &[Output]) -> Vec<String> {
        out.iter()
            .filter_map(|o| match o {
                Output::Log { text, .. } => Some(text.clone()),
                _ => None,
            })
            .collect()
    }
    let registration = || AsapBody::Registration {
        pool_handle: "EchoPool".into(),
        element: element(1, PolicyType::RoundRobin, 7001),
    };
    let deregistration = || AsapBody::Deregistration {
        pool_handle: "EchoPool".into(),
        pe_id: PeId(1),
    };
    let mut r = registrar();
    let out = send(&mut r, 0, PE_CONN, registration());
    assert!(lines(&out)
        .iter()
        .any(|l| l.starts_with("registered PE 0x00000001")));
    let out = send(&mut r, 1, PE_CONN, registration());
    assert!(lines(&out)
        .iter()
        .any(|l| l.starts_with("re-registered PE 0x00000001")));

    r.cfg.log_level = LOG_ACTION;
    let out = send(&mut r, 2, PE_CONN, registration());
    assert_eq!(lines(&out), Vec::<String>::new());
    let out = send(&mut r, 3, PE_CONN, deregistration());
    assert!(lines(&out)
        .iter()
        .any(|l| l.starts_with("deregistered PE 0x00000001")));

    r.cfg.log_level = LOG_WARNING;
    let out = send(&mut r, 4, PE_CONN, registration());
    assert_eq!(lines(&out), Vec::<String>::new());
    assert_eq!(reg_error(&sent(&out, PE_CONN)[0]), None);
    let out = send(&mut r, 5, PE_CONN, deregistration());
    assert_eq!(lines(&out), Vec::<String>::new());
    assert_eq!(sent(&out, PE_CONN).len(), 1);
    assert!(resolved_ids(&resolve(&mut r, 6, None)).is_empty());
}
