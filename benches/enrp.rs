//! ENRP figures, in process (the registrar state machines wired together; every message is
//! encoded and decoded as on the wire, no sockets): handle table transfer of 10⁵ PEs to a
//! joining registrar, Handle Update propagation (registration at one registrar until the peer
//! has applied it), takeover of 10⁴ PEs, and the memory of 10⁶ PEs owned by a peer.
//!
//! Plus two figures over real sockets, with `rspregistrar` processes on loopback TCP:
//! * this bench as a registrar's ENRP peer and as a PE: the time from sending a Registration
//!   until the registrar's Handle Update for it arrives at the peer (median and p99 of 2 000);
//! * takeover end to end: three registrars, 10⁴ PEs on 100 connections registered at one of
//!   them by the supervision load generator, which hunts on to the other two when its
//!   registrar goes away; the registrar is killed with SIGKILL: the time until both survivors
//!   hold every PE with a survivor as home (median of 3), and when they declared the death.
//!
//! `cargo bench --bench enrp` (medians of 5 runs). Without `--bench` (the smoke run of
//! `cargo test --benches`) every size is a hundredth and each figure one run.

use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[path = "../tests/common/cluster.rs"]
mod cluster;
#[path = "../tests/common/mod.rs"]
mod common;

use rsplib::core::handlespace::Micros;
use rsplib::core::registrar::{
    AddressScope, ConnId, EnrpSettings, Output, Registrar, RegistrarConfig,
};
use rsplib::core::types::{
    PeId, PolicyInfo, PolicyType, RegistrarId, TransportAddress, TransportProtocol,
    TRANSPORT_USE_DATA_ONLY,
};
use rsplib::core::wire::{
    enrp, AsapBody, AsapMessage, EnrpBody, EnrpMessage, PoolElement, ServerInformation, PPID_ASAP,
    PPID_ENRP,
};

const SEC: Micros = 1_000_000;

fn addr(i: usize) -> SocketAddr {
    format!("127.0.0.{}:9901", i + 1).parse().unwrap()
}

fn config(i: usize, n: usize) -> RegistrarConfig {
    let mut c = RegistrarConfig::new(RegistrarId(0x100 + i as u32));
    c.min_address_scope = AddressScope::Loopback;
    c.announce_cycle = None;
    c.stall_gap = None;
    c.keepalive_interval = 3600 * SEC;
    c.keepalive_timeout = 3600 * SEC;
    c.enrp = EnrpSettings {
        heartbeat_cycle: SEC,
        max_time_last_heard: SEC,
        max_time_no_response: SEC,
        mentor_hunt_interval: SEC / 10,
        mentor_discovery_timeout: 600 * SEC,
        takeover_expiry: 10 * SEC,
        ht_max_pes: 128,
    };
    c.static_peers = (0..n).filter(|&j| j != i).map(addr).collect();
    c.peers = c.static_peers.iter().map(|a| a.ip()).collect();
    c
}

/// Registrars linked pairwise; PEs on one client connection per registrar.
struct Net {
    r: Vec<Option<Registrar>>,
    links: std::collections::HashMap<(usize, ConnId), (usize, ConnId)>,
    queue: VecDeque<(usize, Output)>,
    next: ConnId,
    now: Micros,
    logs: Vec<String>,
}

impl Net {
    fn new(n: usize, start: &[usize]) -> Net {
        let mut net = Net {
            r: (0..n).map(|_| None).collect(),
            links: Default::default(),
            queue: VecDeque::new(),
            next: 100,
            now: 0,
            logs: Vec::new(),
        };
        for &i in start {
            net.r[i] = Some(Registrar::new(config(i, n), i as u64, 0));
        }
        net
    }

    fn start(&mut self, i: usize) {
        let n = self.r.len();
        self.r[i] = Some(Registrar::new(config(i, n), 9, self.now));
    }

    fn deliver(&mut self) {
        while let Some((i, o)) = self.queue.pop_front() {
            let now = self.now;
            let mut out = Vec::new();
            match o {
                Output::Send { conn, ppid, data } => {
                    if let Some(&(j, c)) = self.links.get(&(i, conn)) {
                        if let Some(r) = self.r[j].as_mut() {
                            r.receive(now, c, ppid, &data, &mut out);
                            self.queue.extend(out.drain(..).map(|o| (j, o)));
                        }
                    }
                }
                Output::Close { conn } => {
                    if let Some((j, c)) = self.links.remove(&(i, conn)) {
                        self.links.remove(&(j, c));
                        if let Some(r) = self.r[j].as_mut() {
                            r.connection_down(now, c, &mut out);
                            self.queue.extend(out.drain(..).map(|o| (j, o)));
                        }
                    }
                }
                Output::Connect { to } => {
                    let j = (0..self.r.len()).find(|&j| addr(j) == to);
                    let Some(j) = j.filter(|&j| self.r[j].is_some()) else {
                        if let Some(r) = self.r[i].as_mut() {
                            r.connect_failed(now, to, &mut out);
                        }
                        self.queue.extend(out.drain(..).map(|o| (i, o)));
                        continue;
                    };
                    self.next += 2;
                    let (a, b) = (self.next, self.next + 1);
                    self.links.insert((i, a), (j, b));
                    self.links.insert((j, b), (i, a));
                    let from: SocketAddr = SocketAddr::new(addr(i).ip(), 40000 + a as u16);
                    let rj = self.r[j].as_mut().unwrap();
                    rj.connection_up(now, b, TransportProtocol::Tcp, vec![from], &mut out);
                    self.queue.extend(out.drain(..).map(|o| (j, o)));
                    let ri = self.r[i].as_mut().unwrap();
                    ri.connected(now, a, TransportProtocol::Tcp, to, &mut out);
                    self.queue.extend(out.drain(..).map(|o| (i, o)));
                }
                Output::Log { text, .. } => self.logs.push(text),
                Output::Announce { .. } | Output::EnrpAnnounce { .. } => {}
            }
        }
    }

    fn run(&mut self, d: Micros) {
        let end = self.now + d;
        while self.now < end {
            self.now += SEC / 10;
            for i in 0..self.r.len() {
                if let Some(r) = self.r[i].as_mut() {
                    let mut out = Vec::new();
                    r.poll(self.now, &mut out);
                    self.queue.extend(out.into_iter().map(|o| (i, o)));
                }
            }
            self.deliver();
        }
    }

    /// A client connection at registrar `i` (PEs come from 127.0.1.1).
    fn client(&mut self, i: usize) -> ConnId {
        self.next += 1;
        let c = self.next;
        let mut out = Vec::new();
        self.r[i].as_mut().unwrap().connection_up(
            self.now,
            c,
            TransportProtocol::Tcp,
            vec!["127.0.1.1:50000".parse().unwrap()],
            &mut out,
        );
        c
    }

    /// Registers PE `k` at registrar `i` over `conn`; the peers' updates are delivered.
    fn register(&mut self, i: usize, conn: ConnId, k: u32) {
        let e = element(k, "127.0.1.1");
        let bytes = AsapMessage::new(AsapBody::Registration {
            pool_handle: format!("pool{}", k % 100).as_str().into(),
            element: e,
        })
        .to_bytes()
        .unwrap();
        let mut out = Vec::new();
        self.r[i]
            .as_mut()
            .unwrap()
            .receive(self.now, conn, PPID_ASAP, &bytes, &mut out);
        // Answers to the PE go nowhere (no link); updates go to the peers.
        self.queue.extend(out.into_iter().map(|o| (i, o)));
        self.deliver();
    }
}

/// PE `k` of a round-robin pool at `ip`:7000, registered for an hour.
fn element(k: u32, ip: &str) -> PoolElement {
    let mut t = TransportAddress::new(TransportProtocol::Tcp, 7000, vec![ip.parse().unwrap()]);
    t.transport_use = TRANSPORT_USE_DATA_ONLY;
    let mut e = PoolElement::new(PeId(k), t, PolicyInfo::new(PolicyType::RoundRobin));
    e.registration_life = 3_600_000;
    e
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or(0)
}

/// Loopback TCP: one registration at the real registrar until its Handle Update reaches us.
fn propagation_over_tcp(n: u32) {
    use rsplib::transport::framing::Deframer;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::process::{Command, Stdio};

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let peer_addr = listener.local_addr().unwrap();
    let asap_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rspregistrar"))
        .args([
            &format!("-asap=127.0.0.1:{asap_port}"),
            "-enrp=127.0.0.1:0",
            "-asapannounce=off",
            "-enrpannounce=off",
            "-transport=tcp",
            "-minaddressscope=loopback",
            "-endpointkeepalivetransmissioninterval=3600000",
            "-maxpesperhost=-1",
            "-loglevel=0",
            "-quiet",
            &format!("-peer={peer_addr}"),
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // The registrar dials us; we answer its Presence so that it takes us for a peer.
    let (mut enrp_conn, _) = listener.accept().unwrap();
    enrp_conn.set_nodelay(true).unwrap();
    let me = RegistrarId(0x0bec0bec);
    let mut deframer = Deframer::new();
    let mut buf = vec![0u8; 65536];
    let mut next = |s: &mut TcpStream, d: &mut Deframer| -> EnrpMessage {
        loop {
            if let Some(m) = d.next_message().unwrap() {
                return EnrpMessage::decode(&m).unwrap().message;
            }
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "registrar closed the ENRP connection");
            d.push(&buf[..n]);
        }
    };
    let first = next(&mut enrp_conn, &mut deframer);
    let presence = EnrpMessage::new(
        me,
        first.sender,
        EnrpBody::Presence {
            checksum: 0xffff,
            server_info: ServerInformation::new(me, vec![]),
        },
    );
    enrp_conn.write_all(&presence.to_bytes().unwrap()).unwrap();
    // Its List Request says that it took us for a peer: only then do updates come.
    while !matches!(
        next(&mut enrp_conn, &mut deframer).body,
        EnrpBody::ListRequest
    ) {}
    let mut pe = loop {
        match TcpStream::connect(("127.0.0.1", asap_port)) {
            Ok(s) => break s,
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    };
    pe.set_nodelay(true).unwrap();
    let mut lat = Vec::new();
    for k in 1..=n {
        let e = element(k, "127.0.0.1");
        let reg = AsapMessage::new(AsapBody::Registration {
            pool_handle: "pool".into(),
            element: e,
        })
        .to_bytes()
        .unwrap();
        let start = Instant::now();
        pe.write_all(&reg).unwrap();
        loop {
            let m = next(&mut enrp_conn, &mut deframer);
            if let EnrpBody::HandleUpdate { element, .. } = m.body {
                if element.id == PeId(k) {
                    break;
                }
            }
        }
        lat.push(start.elapsed().as_secs_f64() * 1e6);
    }
    let _ = child.kill();
    let _ = child.wait();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "handle update propagation over loopback TCP (registration in, update out): median \
         {:.0} µs, p99 {:.0} µs ({n} registrations)",
        lat[lat.len() / 2],
        lat[lat.len() * 99 / 100]
    );
}

/// End to end over loopback TCP: three registrar processes (ENRP timers as in the integration
/// test: a silent peer is declared dead after about 2 s); `pes` PEs, 100 per connection (the
/// generator of `rsptool bench --pes-per-connection`), registered at registrar 1 with the other
/// two as the registrars to hunt on to; registrar 1 is killed with SIGKILL. Prints when the
/// survivors declared it dead and took over, and when both held every PE with a survivor as
/// home and agreed (tables read over ENRP every 20 ms or so).
fn takeover_end_to_end(pes: usize) -> f64 {
    use rsplib::registrar::loadgen::supervise::{run, SuperviseConfig};

    let mut c = cluster::Cluster::new(3, "enrp-bench-takeover");
    for i in 0..3 {
        assert!(
            cluster::wait_log(&c, i, "joined", Duration::from_secs(20)),
            "registrar {i} joined"
        );
    }
    let per = pes.min(100);
    let cfg = SuperviseConfig {
        registrar: c.asap[1],
        fallback: vec![c.asap[2], c.asap[0]],
        enrp: None,
        pool: "TakeoverPool".into(),
        pools: 1,
        connections: pes / per,
        pes_per_connection: per,
        sources: vec!["127.0.0.1".parse().unwrap()],
        threads: 2,
        in_flight: 64,
        duration: Duration::from_secs(6),
        register_timeout: Duration::from_secs(60),
        life_ms: 600_000,
        registrar_pid: None,
        progress: None,
    };
    let generator = std::thread::spawn(move || run(&cfg));
    let all: BTreeSet<u32> = (1..=pes as u32).collect();
    let (dead, survivors) = (BTreeSet::from([0x20]), BTreeSet::from([0x10, 0x30]));
    c.settle(&all, Some(&dead), Duration::from_secs(60))
        .expect("every PE at every registrar, registrar 1 their home");
    let now_us = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros() as u64
    };
    let killed_us = now_us();
    let killed = Instant::now();
    c.kill(1);
    let rehomed = loop {
        let (t0, t2) = (c.table(0), c.table(2));
        let homed = |(t, dup): &(BTreeSet<(u32, u32)>, bool)| {
            !dup && t.len() == all.len() && t.iter().all(|(_, home)| survivors.contains(home))
        };
        let ids: BTreeSet<u32> = t0.0.iter().map(|(id, _)| *id).collect();
        if homed(&t0) && homed(&t2) && ids == all && t0.0 == t2.0 {
            break killed.elapsed();
        }
        assert!(killed.elapsed() < Duration::from_secs(30), "no re-homing");
        std::thread::sleep(Duration::from_millis(20));
    };
    // When the death was declared (after the re-homing, as a rule), from the survivors' log
    // lines, and how many PEs the taker still found to take over.
    let is_dead = |l: &str| l.contains("is dead (no answer");
    let lines = || -> Vec<String> {
        [0, 2]
            .iter()
            .flat_map(|&i| c.log(i).lines().map(String::from).collect::<Vec<_>>())
            .filter(|l| is_dead(l))
            .collect()
    };
    while lines().is_empty() && killed.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let declared = lines()
        .iter()
        .filter_map(|l| rsplib::logging::line_time(l).map(|t| (t, l.clone())))
        .min()
        .map(|(t, l)| {
            let what = l.split(": ").last().unwrap_or_default().to_string();
            (t.saturating_sub(killed_us) as f64 / 1e6, what)
        });
    let report = generator.join().unwrap().expect("generator");
    assert_eq!(report.connections_rehomed as usize, pes / per);
    println!(
        "  {pes} PEs on {} connections: all re-registered at a survivor, both agreeing, {:.0} ms \
         after SIGKILL; death declared at {}",
        pes / per,
        rehomed.as_secs_f64() * 1000.0,
        declared.map_or("(no log line)".into(), |(s, what)| format!(
            "{s:.1} s ({what})"
        )),
    );
    rehomed.as_secs_f64()
}

fn main() {
    // Full sizes under `cargo bench`; a smoke run under `cargo test --benches`.
    let full = std::env::args().any(|a| a == "--bench");
    let (div, runs) = if full { (1, 5) } else { (100, 1) };
    propagation_over_tcp(2000 / div);
    println!("takeover end to end over loopback TCP (3 registrar processes, PEs that hunt on):");
    let secs: Vec<f64> = (0..runs.min(3))
        .map(|_| takeover_end_to_end((10_000 / div) as usize))
        .collect();
    let worst = secs.iter().cloned().fold(0.0, f64::max);
    println!(
        "takeover end to end: every PE re-homed {:.0} ms after SIGKILL (median of {}, max {:.0} ms)",
        median(secs) * 1000.0,
        runs.min(3),
        worst * 1000.0
    );
    // Handle table transfer: registrar 0 holds 10^5 PEs; registrar 1 joins.
    let mut secs = Vec::new();
    let table = 100_000 / div;
    for _ in 0..runs {
        let mut net = Net::new(2, &[0]);
        let c = net.client(0);
        for k in 1..=table {
            net.register(0, c, k);
        }
        net.start(1);
        let t = Instant::now();
        while net.r[1].as_ref().unwrap().joining() {
            net.run(SEC / 10);
        }
        secs.push(t.elapsed().as_secs_f64());
        assert_eq!(
            net.r[1].as_ref().unwrap().handlespace().len(),
            table as usize
        );
    }
    let s = median(secs);
    println!(
        "handle table transfer, {table} PEs: {s:.2} s, {:.0} PEs/s (median of {runs})",
        f64::from(table) / s
    );

    // Update propagation: one registration at registrar 0 until registrar 1 applied it.
    let mut net = Net::new(2, &[0, 1]);
    net.run(SEC);
    let c = net.client(0);
    let mut lat = Vec::new();
    let updates = 20_000 / div;
    for k in 1..=updates {
        let t = Instant::now();
        net.register(0, c, k);
        lat.push(t.elapsed().as_nanos() as f64 / 1000.0);
    }
    assert_eq!(
        net.r[1].as_ref().unwrap().handlespace().len(),
        updates as usize
    );
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "handle update propagation (in process, encode+decode+apply): median {:.1} µs, p99 {:.1} µs",
        lat[lat.len() / 2],
        lat[lat.len() * 99 / 100]
    );

    // Takeover of 10^4 PEs: registrar 1 dies; time from the death being declared (the last
    // poll before the takeover) until registrar 0 is home for all of them.
    let mut secs = Vec::new();
    let taken = 10_000 / div;
    for _ in 0..runs {
        let mut net = Net::new(3, &[0, 1, 2]);
        net.run(SEC);
        let c = net.client(1);
        for k in 1..=taken {
            net.register(1, c, k);
        }
        // Registrar 1 dies silently; the others notice after 2 s.
        net.r[1] = None;
        net.links.retain(|&(i, _), &mut (j, _)| i != 1 && j != 1);
        net.run(19 * SEC / 10);
        let t = Instant::now();
        while net.r[0].as_ref().unwrap().counters().takeovers == 0 {
            net.run(SEC / 10);
        }
        secs.push(t.elapsed().as_secs_f64());
        assert_eq!(
            net.r[2]
                .as_ref()
                .unwrap()
                .handlespace()
                .owned_count(RegistrarId(0x100)),
            taken as usize
        );
    }
    println!(
        "takeover of {taken} PEs (ack round + re-homing at both survivors): {:.1} ms (median of \
         {runs})",
        median(secs) * 1000.0
    );

    // Memory: 10^6 PEs owned by a peer, applied from Handle Updates by a registrar alone
    // (the "peer" is this bench speaking ENRP on one connection).
    let mut r = Registrar::new(config(1, 2), 1, 0);
    let mut out = Vec::new();
    let peer_id = RegistrarId(0x100);
    r.connection_up(0, 1, TransportProtocol::Tcp, vec![addr(0)], &mut out);
    let presence = EnrpMessage::new(
        peer_id,
        RegistrarId(0),
        EnrpBody::Presence {
            checksum: 0xffff,
            server_info: ServerInformation::new(peer_id, vec![]),
        },
    );
    r.receive(0, 1, PPID_ENRP, &presence.to_bytes().unwrap(), &mut out);
    let before = rss_kib();
    let held = 1_000_000 / div;
    for k in 1..=held {
        let mut e = element(k, "127.0.1.1");
        e.home_registrar = peer_id;
        let update = EnrpMessage::new(
            peer_id,
            RegistrarId(0x101),
            EnrpBody::HandleUpdate {
                action: enrp::UPDATE_ADD_PE,
                reserved: 0,
                pool_handle: format!("pool{}", k % 100).as_str().into(),
                element: e,
            },
        );
        out.clear();
        r.receive(1, 1, PPID_ENRP, &update.to_bytes().unwrap(), &mut out);
    }
    let after = rss_kib();
    assert_eq!(r.handlespace().owned_count(peer_id), held as usize);
    println!(
        "memory of {held} PEs owned by a peer: {} MiB RSS growth, {} B per PE",
        after.saturating_sub(before) / 1024,
        after.saturating_sub(before) * 1024 / u64::from(held)
    );
}
