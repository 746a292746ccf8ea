//! ENRP unit tests: several registrars wired together by a simulated network (TCP semantics:
//! a dead registrar's connections go down at its peers), with a fake clock.

use std::collections::VecDeque;

use super::*;
use crate::core::types::{PolicyType, TRANSPORT_USE_DATA_PLUS_CONTROL};

const SEC: Micros = 1_000_000;
const MS: Micros = 1_000;

/// One endpoint of a simulated connection: registrar index and its connection id.
type End = (usize, ConnId);

/// What sits at the far end of a registrar's connection.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Far {
    Registrar(End),
    /// A pool element (answers keep-alives) or a pool user / tool (records what it gets).
    Client(usize),
}

struct Node {
    r: Registrar,
    alive: bool,
    addr: SocketAddr,
}

struct Net {
    nodes: Vec<Node>,
    links: HashMap<End, Far>,
    next_conn: ConnId,
    now: Micros,
    queue: VecDeque<(usize, Output)>,
    /// Messages received by clients, by client id.
    inbox: HashMap<usize, Vec<Vec<u8>>>,
    logs: Vec<(usize, String)>,
    /// ENRP messages lost on the way: (from, to, message type).
    lost: Vec<(usize, usize, u8)>,
}

fn addr(i: usize) -> SocketAddr {
    format!("127.0.0.{}:9901", i + 1).parse().unwrap()
}

fn settings() -> EnrpSettings {
    EnrpSettings {
        heartbeat_cycle: 500 * MS,
        max_time_last_heard: SEC,
        max_time_no_response: SEC,
        mentor_hunt_interval: 200 * MS,
        mentor_discovery_timeout: 2 * SEC,
        takeover_expiry: 2 * SEC,
        ht_max_pes: 16,
    }
}

fn config(i: usize, id: u32, n: usize) -> RegistrarConfig {
    let mut cfg = RegistrarConfig::new(RegistrarId(id));
    cfg.min_address_scope = AddressScope::Loopback;
    cfg.announce_cycle = None;
    cfg.stall_gap = None;
    cfg.keepalive_interval = SEC;
    cfg.keepalive_timeout = SEC;
    cfg.enrp = settings();
    cfg.enrp_transport = Some(TransportAddress::new(
        TransportProtocol::Tcp,
        9901,
        vec![addr(i).ip()],
    ));
    cfg.static_peers = (0..n).filter(|&j| j != i).map(addr).collect();
    cfg.peers = cfg.static_peers.iter().map(|a| a.ip()).collect();
    cfg
}

/// Registrar `i` has id `0x100 + i`: a lower index is a lower id.
fn id_of(i: usize) -> RegistrarId {
    RegistrarId(0x100 + i as u32)
}

impl Net {
    fn new(n: usize) -> Net {
        let mut net = Net {
            nodes: Vec::new(),
            links: HashMap::new(),
            next_conn: 1000,
            now: 0,
            queue: VecDeque::new(),
            inbox: HashMap::new(),
            logs: Vec::new(),
            lost: Vec::new(),
        };
        for i in 0..n {
            net.nodes.push(Node {
                r: Registrar::new(config(i, id_of(i).0, n), i as u64, 0),
                alive: true,
                addr: addr(i),
            });
        }
        net
    }

    fn conn(&mut self) -> ConnId {
        self.next_conn += 1;
        self.next_conn
    }

    /// Carries every queued output until none is left.
    fn deliver(&mut self) {
        while let Some((i, o)) = self.queue.pop_front() {
            if !self.nodes[i].alive {
                continue;
            }
            let now = self.now;
            let mut out = Vec::new();
            match o {
                Output::Send { conn, ppid, data } => match self.links.get(&(i, conn)).copied() {
                    Some(Far::Registrar((j, _)))
                        if ppid == PPID_ENRP
                            && self
                                .lost
                                .contains(&(i, j, data.first().copied().unwrap_or(0))) => {}
                    Some(Far::Registrar((j, c))) if self.nodes[j].alive => {
                        self.nodes[j].r.receive(now, c, ppid, &data, &mut out);
                        self.queue.extend(out.drain(..).map(|o| (j, o)));
                    }
                    Some(Far::Client(k)) => self.client_receives(i, conn, k, data),
                    _ => {}
                },
                Output::Close { conn } => {
                    if let Some(Far::Registrar((j, c))) = self.links.remove(&(i, conn)) {
                        self.links.remove(&(j, c));
                        if self.nodes[j].alive {
                            self.nodes[j].r.connection_down(now, c, &mut out);
                            self.queue.extend(out.drain(..).map(|o| (j, o)));
                        }
                    }
                }
                Output::Connect { to } => {
                    let target = self.nodes.iter().position(|n| n.addr == to && n.alive);
                    let Some(j) = target else {
                        self.nodes[i].r.connect_failed(now, to, &mut out);
                        self.queue.extend(out.drain(..).map(|o| (i, o)));
                        continue;
                    };
                    let (a, b) = (self.conn(), self.conn());
                    self.links.insert((i, a), Far::Registrar((j, b)));
                    self.links.insert((j, b), Far::Registrar((i, a)));
                    let from: SocketAddr =
                        SocketAddr::new(self.nodes[i].addr.ip(), 40000 + a as u16);
                    self.nodes[j].r.connection_up(
                        now,
                        b,
                        TransportProtocol::Tcp,
                        vec![from],
                        &mut out,
                    );
                    self.queue.extend(out.drain(..).map(|o| (j, o)));
                    self.nodes[i]
                        .r
                        .connected(now, a, TransportProtocol::Tcp, to, &mut out);
                    self.queue.extend(out.drain(..).map(|o| (i, o)));
                }
                Output::Log { text, .. } => self.logs.push((i, text)),
                Output::Announce { .. } | Output::EnrpAnnounce { .. } => {}
            }
        }
    }

    /// A PE answers keep-alives; everything a client gets is kept in its inbox.
    fn client_receives(&mut self, i: usize, conn: ConnId, k: usize, data: Vec<u8>) {
        if let Ok(d) = AsapMessage::decode(&data) {
            if let AsapBody::EndpointKeepAlive {
                pool_handle,
                pe_id: Some(pe_id),
                ..
            } = d.message.body
            {
                let ack = AsapMessage::new(AsapBody::EndpointKeepAliveAck { pool_handle, pe_id })
                    .to_bytes()
                    .unwrap();
                let mut out = Vec::new();
                self.nodes[i]
                    .r
                    .receive(self.now, conn, PPID_ASAP, &ack, &mut out);
                self.queue.extend(out.into_iter().map(|o| (i, o)));
                return;
            }
        }
        self.inbox.entry(k).or_default().push(data);
    }

    /// Runs every live registrar's timers, in steps, for `d`.
    fn run(&mut self, d: Micros) {
        let end = self.now + d;
        while self.now < end {
            self.now = (self.now + 50 * MS).min(end);
            for i in 0..self.nodes.len() {
                if self.nodes[i].alive {
                    let mut out = Vec::new();
                    self.nodes[i].r.poll(self.now, &mut out);
                    self.queue.extend(out.into_iter().map(|o| (i, o)));
                }
            }
            self.deliver();
        }
    }

    /// A client connection to registrar `i` (ASAP); returns its conn id there.
    fn client(&mut self, i: usize, k: usize) -> ConnId {
        let c = self.conn();
        self.links.insert((i, c), Far::Client(k));
        let from: SocketAddr = format!("127.0.1.{}:{}", k % 250 + 1, 50000 + k)
            .parse()
            .unwrap();
        let mut out = Vec::new();
        self.nodes[i]
            .r
            .connection_up(self.now, c, TransportProtocol::Tcp, vec![from], &mut out);
        self.queue.extend(out.into_iter().map(|o| (i, o)));
        self.deliver();
        c
    }

    fn asap(&mut self, i: usize, conn: ConnId, body: AsapBody) {
        let bytes = AsapMessage::new(body).to_bytes().unwrap();
        let mut out = Vec::new();
        self.nodes[i]
            .r
            .receive(self.now, conn, PPID_ASAP, &bytes, &mut out);
        self.queue.extend(out.into_iter().map(|o| (i, o)));
        self.deliver();
    }

    /// PE `k` registers in "pool" at registrar `i`; returns its connection there.
    fn register_pe(&mut self, i: usize, k: usize) -> ConnId {
        let c = self.client(i, k);
        self.asap(
            i,
            c,
            AsapBody::Registration {
                pool_handle: "pool".into(),
                element: pe_element(k),
            },
        );
        c
    }

    /// Registrar `i` dies (kill -9): its TCP connections go down at the other end.
    fn kill(&mut self, i: usize) {
        self.nodes[i].alive = false;
        let ends: Vec<(End, Far)> = self
            .links
            .iter()
            .filter(|((n, _), _)| *n == i)
            .map(|(&e, &f)| (e, f))
            .collect();
        for (e, f) in ends {
            self.links.remove(&e);
            if let Far::Registrar((j, c)) = f {
                self.links.remove(&(j, c));
                let mut out = Vec::new();
                self.nodes[j].r.connection_down(self.now, c, &mut out);
                self.queue.extend(out.into_iter().map(|o| (j, o)));
            }
        }
        self.deliver();
    }

    /// Registrar `i` starts again, with a new id.
    fn restart(&mut self, i: usize, id: u32) {
        let n = self.nodes.len();
        self.logs.retain(|(k, _)| *k != i);
        self.nodes[i] = Node {
            r: Registrar::new(config(i, id, n), 99, self.now),
            alive: true,
            addr: addr(i),
        };
    }

    fn live(&self) -> impl Iterator<Item = &Registrar> {
        self.nodes.iter().filter(|n| n.alive).map(|n| &n.r)
    }

    fn pe_ids(r: &Registrar) -> Vec<u32> {
        let mut ids: Vec<u32> = r
            .handlespace()
            .pool_elements(&"pool".into())
            .map(|pe| pe.id().0)
            .collect();
        ids.sort();
        ids
    }

    fn log_lines(&self, i: usize, text: &str) -> usize {
        self.logs
            .iter()
            .filter(|(n, t)| *n == i && t.contains(text))
            .count()
    }
}

fn pe_element(k: usize) -> wire::PoolElement {
    let mut t = TransportAddress::new(
        TransportProtocol::Tcp,
        7000 + k as u16,
        vec![format!("127.0.1.{}", k % 250 + 1).parse().unwrap()],
    );
    t.transport_use = TRANSPORT_USE_DATA_PLUS_CONTROL;
    let mut e = wire::PoolElement::new(PeId(k as u32), t, PolicyInfo::new(PolicyType::RoundRobin));
    e.registration_life = 60_000;
    e
}

/// Every live registrar holds exactly `ids` and the same checksum.
fn assert_converged(net: &Net, ids: &[u32]) {
    let checksums: Vec<u16> = net.live().map(|r| r.handlespace().checksum()).collect();
    for r in net.live() {
        assert_eq!(Net::pe_ids(r), ids, "registrar {}", r.id());
        r.check_invariants().unwrap();
    }
    assert!(
        checksums.windows(2).all(|w| w[0] == w[1]),
        "checksums {checksums:x?}"
    );
}

/// Three registrars, two PEs at each.
fn three_with_pes() -> Net {
    let mut net = Net::new(3);
    net.run(SEC);
    for k in 1..=6 {
        net.register_pe((k - 1) / 2, k);
    }
    net.run(SEC);
    net
}

#[test]
fn three_registrars_find_each_other_and_share_every_pe() {
    let net = three_with_pes();
    for r in net.live() {
        assert_eq!(r.peers().len(), 2, "registrar {}", r.id());
        assert!(r.peers().iter().all(|p| p.connected));
        assert!(!r.joining());
    }
    assert_converged(&net, &[1, 2, 3, 4, 5, 6]);
    // Each PE's home is the registrar it registered with.
    for (i, n) in net.nodes.iter().enumerate() {
        assert_eq!(n.r.handlespace().owned_count(id_of(i)), 2);
    }
    // One connection per pair: the lower id's dial stays, the other was closed.
    let links = net
        .links
        .values()
        .filter(|f| matches!(f, Far::Registrar(_)))
        .count();
    assert_eq!(links, 6, "3 pairs, both ends");
}

#[test]
fn updates_and_removals_propagate() {
    let mut net = three_with_pes();
    // A deregistration at registrar 0 and a PE connection lost at registrar 2.
    let pe1 = net
        .links
        .iter()
        .find(|(e, f)| e.0 == 0 && **f == Far::Client(1))
        .map(|(e, _)| e.1)
        .unwrap();
    net.asap(
        0,
        pe1,
        AsapBody::Deregistration {
            pool_handle: "pool".into(),
            pe_id: PeId(1),
        },
    );
    let pe6 = net
        .links
        .iter()
        .find(|(e, f)| e.0 == 2 && **f == Far::Client(6))
        .map(|(e, _)| e.1)
        .unwrap();
    let mut out = Vec::new();
    net.nodes[2].r.connection_down(net.now, pe6, &mut out);
    net.queue.extend(out.into_iter().map(|o| (2, o)));
    net.deliver();
    assert_converged(&net, &[2, 3, 4, 5]);
    // A re-registration that changes the PE's port reaches every peer.
    let pe3 = net
        .links
        .iter()
        .find(|(e, f)| e.0 == 1 && **f == Far::Client(3))
        .map(|(e, _)| e.1)
        .unwrap();
    let mut e = pe_element(3);
    e.user_transport.port = 7777;
    net.asap(
        1,
        pe3,
        AsapBody::Registration {
            pool_handle: "pool".into(),
            element: e,
        },
    );
    for r in net.live() {
        let pe = r.handlespace().get(&"pool".into(), PeId(3)).unwrap();
        assert_eq!(pe.user_transport().port, 7777, "at {}", r.id());
        assert_eq!(pe.home(), id_of(1));
    }
}

#[test]
fn a_dead_registrar_is_taken_over_by_exactly_one_survivor() {
    let mut net = three_with_pes();
    net.kill(1);
    // Not heard for 1 s, no answer for another 1 s: dead; then the takeover.
    net.run(3 * SEC);
    let takers: Vec<usize> = (0..3)
        .filter(|&i| net.nodes[i].r.counters().takeovers > 0)
        .collect();
    assert_eq!(takers, vec![0], "the lower id wins");
    // The dead peer's PEs are registrar 0's now, everywhere; nobody lists the dead peer.
    for r in net.live() {
        assert_eq!(r.handlespace().owned_count(id_of(1)), 0);
        assert_eq!(r.handlespace().owned_count(id_of(0)), 4, "at {}", r.id());
        assert!(r.peers().iter().all(|p| p.id != id_of(1)));
    }
    assert_converged(&net, &[1, 2, 3, 4, 5, 6]);
    // PE 3 registers again at registrar 2 (its library hunts); PE 4 never comes back.
    net.register_pe(2, 3);
    net.run(3 * SEC);
    assert_converged(&net, &[1, 2, 3, 5, 6]);
    for r in net.live() {
        let pe = r.handlespace().get(&"pool".into(), PeId(3)).unwrap();
        assert_eq!(pe.home(), id_of(2));
    }
    assert_eq!(net.log_lines(0, "took over registrar"), 1);
    assert_eq!(net.log_lines(2, "took over registrar"), 0);
}

#[test]
fn a_restarted_registrar_fetches_the_table_from_a_mentor_in_pages() {
    let mut net = Net::new(3);
    net.run(SEC);
    // More PEs than one Handle Table Response holds (16 in these tests).
    for k in 1..=40 {
        net.register_pe(k % 2, k);
    }
    net.run(SEC);
    net.kill(2);
    net.run(SEC / 2);
    net.restart(2, 0x999);
    assert!(net.nodes[2].r.joining());
    // A resolution during the transfer waits for the table.
    let pu = net.client(2, 500);
    net.run(100 * MS);
    net.asap(
        2,
        pu,
        AsapBody::HandleResolution {
            pool_handle: "pool".into(),
            items: None,
        },
    );
    net.run(SEC);
    assert!(!net.nodes[2].r.joining());
    let ids: Vec<u32> = (1..=40).collect();
    assert_converged(&net, &ids);
    let answer = &net.inbox[&500];
    let m = AsapMessage::decode(&answer[0]).unwrap().message;
    match m.body {
        AsapBody::HandleResolutionResponse {
            elements, error, ..
        } => {
            assert!(error.is_none());
            assert_eq!(elements.len(), 3);
        }
        other => panic!("{other:?}"),
    }
    assert!(net.log_lines(2, "is our mentor") == 1);
}

#[test]
fn a_lost_update_is_repaired_by_the_audit() {
    let mut net = three_with_pes();
    // Registrar 2 silently loses PE 1 (as if an update had been lost).
    net.nodes[2].r.hs.deregister(&"pool".into(), PeId(1));
    // And holds a PE of registrar 0's that registrar 0 does not have.
    let mut e = pe_element(77);
    e.home_registrar = id_of(0);
    let reg = Registration {
        pe_id: PeId(77),
        home: id_of(0),
        registration_life_ms: 60_000,
        user_transport: e.user_transport,
        policy: e.policy,
        registrator_transport: None,
    };
    let now = net.now;
    net.nodes[2]
        .r
        .hs
        .register(&"pool".into(), reg, now)
        .unwrap();
    net.run(2 * SEC);
    assert_converged(&net, &[1, 2, 3, 4, 5, 6]);
}

/// An ENRP message from registrar `from` on its connection to registrar `to`.
fn inject(net: &mut Net, from: usize, to: usize, msg: EnrpMessage) {
    let (e, _) = net
        .links
        .iter()
        .find(|(e, f)| e.0 == from && matches!(f, Far::Registrar((j, _)) if *j == to))
        .map(|(e, f)| (*e, *f))
        .unwrap();
    net.queue.push_back((
        from,
        Output::Send {
            conn: e.1,
            ppid: PPID_ENRP,
            data: msg.to_bytes().unwrap(),
        },
    ));
    net.deliver();
}

#[test]
fn hostile_enrp_is_ignored_and_corrupts_nothing() {
    let mut net = three_with_pes();
    let before: Vec<u16> = net.live().map(|r| r.handlespace().checksum()).collect();
    // A forged sender id: registrar 1 claims to be registrar 2 and deletes its PE 5.
    let mut pe5 = pe_element(5);
    pe5.home_registrar = id_of(2);
    let forged = EnrpMessage::new(
        id_of(2),
        id_of(0),
        EnrpBody::HandleUpdate {
            action: enrp::UPDATE_DEL_PE,
            reserved: 0,
            pool_handle: "pool".into(),
            element: pe5.clone(),
        },
    );
    inject(&mut net, 1, 0, forged);
    assert_eq!(net.nodes[0].r.counters().refused(Refusal::EnrpForged), 1);
    // Registrar 1 (itself) deletes PE 5, which registrar 2 owns; and adds a PE with home 2.
    for action in [enrp::UPDATE_DEL_PE, enrp::UPDATE_ADD_PE] {
        let mut e = pe_element(if action == enrp::UPDATE_ADD_PE { 66 } else { 5 });
        e.home_registrar = id_of(2);
        let msg = EnrpMessage::new(
            id_of(1),
            id_of(0),
            EnrpBody::HandleUpdate {
                action,
                reserved: 0,
                pool_handle: "pool".into(),
                element: e,
            },
        );
        inject(&mut net, 1, 0, msg);
    }
    assert_eq!(net.nodes[0].r.counters().refused(Refusal::EnrpNotOwner), 2);
    // A Handle Table Response nobody asked for.
    let unsolicited = EnrpMessage::new(
        id_of(1),
        id_of(0),
        EnrpBody::HandleTableResponse {
            pools: vec![PoolEntries {
                pool_handle: "pool".into(),
                elements: vec![pe5],
            }],
        },
    );
    inject(&mut net, 1, 0, unsolicited);
    assert_eq!(
        net.nodes[0].r.counters().refused(Refusal::EnrpUnsolicited),
        1
    );
    // A flood of Presence with the reply-required flag: replies are limited.
    let presence = net.nodes[1].r.presence(id_of(0), enrp::FLAG_REPLY_REQUIRED);
    for _ in 0..200 {
        inject(&mut net, 1, 0, presence.clone());
    }
    assert!(net.nodes[0].r.counters().refused(Refusal::EnrpFlood) >= 150);
    let after: Vec<u16> = net.live().map(|r| r.handlespace().checksum()).collect();
    assert_eq!(before, after);
    assert_converged(&net, &[1, 2, 3, 4, 5, 6]);
    // Each kind was logged once (within the 10 s interval), not per message.
    assert_eq!(net.log_lines(0, "Presence flood"), 1);
}

#[test]
fn an_answer_with_more_than_was_asked_is_not_applied_beyond_the_request() {
    let mut net = three_with_pes();
    // Registrar 0 asks registrar 1 for its own PEs; the answer also carries PEs that claim
    // other homes (registrar 2's, and an unknown registrar's).
    net.nodes[0].r.peers.get_mut(&id_of(1)).unwrap().requesting =
        Some(enrp::FLAG_OWN_CHILDREN_ONLY);
    let elements: Vec<wire::PoolElement> =
        [(3, id_of(1)), (90, id_of(2)), (91, RegistrarId(0x999))]
            .iter()
            .map(|&(k, home)| {
                let mut e = pe_element(k);
                e.home_registrar = home;
                e
            })
            .collect();
    let more = EnrpMessage::new(
        id_of(1),
        id_of(0),
        EnrpBody::HandleTableResponse {
            pools: vec![PoolEntries {
                pool_handle: "pool".into(),
                elements,
            }],
        },
    );
    inject(&mut net, 1, 0, more);
    assert_eq!(
        net.nodes[0].r.counters().refused(Refusal::EnrpUnsolicited),
        1
    );
    // Only its own PE was taken; the others claiming other homes were not stored.
    assert_eq!(Net::pe_ids(&net.nodes[0].r), vec![1, 2, 3, 4, 5, 6]);
}

/// The winner of a takeover finishes it, but its Takeover Server is lost on the way to the
/// other survivor (as rsplib's was in an SCTP lab run: "Sending TakeoverServer failed"). The
/// survivor, which acknowledged, learns of the new homes from the winner's handle table (the
/// audit) and must not take the dead registrar over a second time when its wait runs out.
#[test]
fn a_lost_takeover_server_does_not_make_a_second_takeover() {
    let mut net = three_with_pes();
    net.lost.push((0, 2, wire::enrp::TAKEOVER_SERVER));
    net.kill(1);
    // Dead after 2 s; registrar 2 then waits for the Takeover Server until its Presence
    // timer runs out again (2 s more).
    net.run(4500 * MS);
    let takers: Vec<usize> = (0..3)
        .filter(|&i| net.nodes[i].r.counters().takeovers > 0)
        .collect();
    assert_eq!(takers, vec![0], "the lower id, once");
    assert_eq!(net.log_lines(2, "took over registrar"), 0);
    assert_eq!(
        net.log_lines(2, &format!("{} took over {}", id_of(0), id_of(1))),
        1
    );
    for r in net.live() {
        assert_eq!(r.handlespace().owned_count(id_of(1)), 0);
        assert!(r.peers().iter().all(|p| p.id != id_of(1)));
    }
    // The taken PEs did not register again: the taker removed them, everywhere.
    net.run(2 * SEC);
    assert_converged(&net, &[1, 2, 5, 6]);
}

#[test]
fn two_simultaneous_takeovers_resolve_to_the_lower_id() {
    // Four registrars; registrar 3 dies; 0, 1 and 2 all start a takeover at once.
    let mut net = Net::new(4);
    net.run(SEC);
    for k in 1..=8 {
        net.register_pe((k - 1) / 2, k);
    }
    net.run(SEC);
    net.kill(3);
    // Dead after 2 s; its PEs then have 2 s to register again.
    net.run(3 * SEC);
    let takers: Vec<usize> = (0..4)
        .filter(|&i| net.nodes[i].r.counters().takeovers > 0)
        .collect();
    assert_eq!(takers, vec![0]);
    assert_converged(&net, &[1, 2, 3, 4, 5, 6, 7, 8]);
}

#[test]
fn a_connected_tool_is_not_asked_to_acknowledge_a_takeover() {
    let mut net = three_with_pes();
    // An hsdump-like tool on registrar 0: a Presence to id 0, and it stays connected.
    let tool = net.client(0, 900);
    let tool_id = RegistrarId(0x7777);
    let presence = EnrpMessage::new(
        tool_id,
        RegistrarId(0),
        EnrpBody::Presence {
            checksum: 0xffff,
            server_info: ServerInformation::new(tool_id, vec![]),
        },
    );
    let tool_says_presence = |net: &mut Net| {
        let mut out = Vec::new();
        let now = net.now;
        net.nodes[0].r.receive(
            now,
            tool,
            PPID_ENRP,
            &presence.to_bytes().unwrap(),
            &mut out,
        );
        net.queue.extend(out.into_iter().map(|o| (0, o)));
        net.deliver();
    };
    tool_says_presence(&mut net);
    assert!(net.nodes[0].r.peers().iter().any(|p| p.id == tool_id));
    net.kill(1);
    // Dead after ~2 s; the takeover must not wait for the tool, which stays alive (the
    // takeover's expiry would be 2 s more).
    for _ in 0..25 {
        tool_says_presence(&mut net);
        net.run(100 * MS);
    }
    assert!(net.nodes[0].r.peers().iter().any(|p| p.id == tool_id));
    assert_eq!(net.nodes[0].r.counters().takeovers, 1);
    // Nor is the tool listed to peers as a registrar.
    assert!(net.nodes[2].r.peers().iter().all(|p| p.id != tool_id));
}

#[test]
fn a_known_peer_is_answered_on_a_connection_its_presence_has_not_reached() {
    let mut net = three_with_pes();
    // A second connection from registrar 1's host to registrar 0, no Presence on it yet.
    let conn = net.client(0, 800);
    let htr = EnrpMessage::new(id_of(1), id_of(0), EnrpBody::HandleTableRequest);
    let mut out = Vec::new();
    let now = net.now;
    net.nodes[0]
        .r
        .receive(now, conn, PPID_ENRP, &htr.to_bytes().unwrap(), &mut out);
    let answer = out
        .iter()
        .find_map(|o| match o {
            Output::Send { data, .. } => EnrpMessage::decode(data).ok().map(|d| d.message),
            _ => None,
        })
        .expect("an answer");
    assert_eq!(answer.flags & enrp::FLAG_REJECT, 0);
    assert!(matches!(answer.body, EnrpBody::HandleTableResponse { .. }));
    // An unknown sender on such a connection is still refused.
    let htr = EnrpMessage::new(RegistrarId(0x4242), id_of(0), EnrpBody::HandleTableRequest);
    let mut out = Vec::new();
    net.nodes[0]
        .r
        .receive(now, conn, PPID_ENRP, &htr.to_bytes().unwrap(), &mut out);
    let reject = out.iter().any(|o| match o {
        Output::Send { data, .. } => {
            EnrpMessage::decode(data).is_ok_and(|d| d.message.flags & enrp::FLAG_REJECT != 0)
        }
        _ => false,
    });
    assert!(reject);
}

#[test]
fn no_timer_is_left_due_after_a_poll() {
    // A dial whose registrar is reached over the connection it dialled (ours was closed as
    // the duplicate) must not stay due: the I/O loop would wake at once, again and again.
    let mut net = three_with_pes();
    net.logs.clear();
    net.run(5 * SEC);
    let churn = (0..3)
        .map(|i| net.log_lines(i, "two connections to peer"))
        .sum::<usize>();
    assert_eq!(
        churn, 0,
        "registrars dial peers they already reach: {:?}",
        net.logs
    );
    for n in &net.nodes {
        let next = n.r.next_wakeup().expect("a registrar always has a wakeup");
        assert!(
            next > net.now,
            "registrar {} wants {next} at {}",
            n.r.id(),
            net.now
        );
    }
}
