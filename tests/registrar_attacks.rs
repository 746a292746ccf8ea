//! The registrar under attack and overload (issue #14), end to end: the real `rspregistrar`
//! over loopback TCP, attackers on 127.0.0.2 and up (bound as source addresses), a well-behaved
//! PE and a good pool user on 127.0.0.1.
//!
//! Every test checks the good PU: a handle resolution for the well-behaved PE's pool answered
//! with PEs within [`GOOD_PU_BOUND`] on every probe. Memory is the registrar's VmRSS; bounds are
//! stated per test as "baseline + what the design allows", the baseline being measured after
//! the registrar has started and the good PE registered. The registrar here is the debug build:
//! its code pages make the baseline larger than a release build's, but heap use (what the
//! attacks grow) is the same data structures in both, so a bound over the measured baseline
//! holds for either.
//!
//! The tests share the two CPUs with each other badly (floods against a debug build), so they
//! run one at a time ([`serial`]). A test collects every violation of a phase and reports them
//! together, so that one run tells everything that is wrong.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::*;
use rsplib::core::registrar::HIDDEN_ASAP_PORT;
use rsplib::core::types::{PolicyType, PoolHandle};
use rsplib::core::wire::{cause, AsapBody, AsapMessage, EnrpBody, PoolElement};

const REGISTRAR: &str = env!("CARGO_BIN_EXE_rspregistrar");

/// The good PU must be answered within this, on every probe.
const GOOD_PU_BOUND: Duration = Duration::from_millis(100);
/// The pool of the well-behaved PE that the good PU resolves.
const GOOD_POOL: &str = "GoodPool";
/// A registrar past this is killed by the test (it must not take the shared machine with it).
const RSS_KILL_KIB: u64 = 1 << 20;
const MIB: u64 = 1024;

static SERIAL: Mutex<()> = Mutex::new(());

/// The attack tests run one after the other.
fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Violations of one test, reported together at the end.
struct Checks {
    name: &'static str,
    failures: Vec<String>,
    /// Good-PU probes per phase: (count, late or unanswered, worst latency, first bad outcome).
    probes: BTreeMap<String, (u32, u32, Duration, Option<Probe>)>,
}

impl Checks {
    fn new(name: &'static str) -> Checks {
        Checks {
            name,
            failures: Vec::new(),
            probes: BTreeMap::new(),
        }
    }

    fn check(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            let what = what.into();
            eprintln!("[{}] FAIL: {what}", self.name);
            self.failures.push(what);
        }
    }

    fn note(&self, what: impl AsRef<str>) {
        eprintln!("[{}] {}", self.name, what.as_ref());
    }

    /// One good-PU probe, counted in `phase`.
    fn probe(&mut self, pu: &mut GoodPu, phase: &str) -> Probe {
        let p = pu.probe();
        let e = self
            .probes
            .entry(phase.to_string())
            .or_insert((0, 0, Duration::ZERO, None));
        e.0 += 1;
        e.2 = e.2.max(p.latency);
        if !p.ok_within(GOOD_PU_BOUND) {
            e.1 += 1;
            e.3.get_or_insert(p);
        }
        p
    }

    fn finish(mut self) {
        for (phase, (n, bad, worst, first)) in std::mem::take(&mut self.probes) {
            self.note(format!(
                "good PU, {phase}: {n} probes, worst {:.1} ms",
                worst.as_secs_f64() * 1e3
            ));
            self.check(
                bad == 0,
                format!(
                    "good PU, {phase}: {bad} of {n} probes not answered with PEs within \
                     {GOOD_PU_BOUND:?} (worst {worst:?}, first bad: {first:?})"
                ),
            );
        }
        if !self.failures.is_empty() {
            panic!(
                "{}: {} violation(s):\n  - {}",
                self.name,
                self.failures.len(),
                self.failures.join("\n  - ")
            );
        }
    }
}

/// A registrar with `extra` options, a good PE (127.0.0.1, `GOOD_POOL`, `good_pes` PEs) and a
/// good PU with a persistent connection.
struct Setup {
    reg: Registrar,
    good_pe: PeHolder,
    pu: GoodPu,
    baseline_kib: u64,
}

fn setup(name: &str, extra: &[&str], good_pes: u32) -> Setup {
    setup_wrapped(name, extra, good_pes, None)
}

fn setup_wrapped(name: &str, extra: &[&str], good_pes: u32, shell: Option<&str>) -> Setup {
    let dir = temp_dir(name);
    let reg = Registrar::start_wrapped(REGISTRAR, &dir.join("registrar.log"), extra, shell);
    let ids: Vec<u32> = (1..=good_pes).map(|i| 0x600d_0000 + i).collect();
    let good_pe = PeHolder::start(reg.asap, "127.0.0.1", GOOD_POOL, &ids, 20000, 600_000);
    let mut pu = GoodPu::new(reg.asap, GOOD_POOL);
    for _ in 0..3 {
        let p = pu.probe();
        assert!(
            p.ok_within(Duration::from_secs(1)),
            "harness: the good PU is not served before any attack: {p:?}"
        );
    }
    let baseline_kib = reg.rss_kib();
    Setup {
        reg,
        good_pe,
        pu,
        baseline_kib,
    }
}

/// One request on a fresh connection from `source` (None if no answer within 2 s).
fn one_shot(reg: SocketAddr, source: &str, bytes: &[u8]) -> Result<AsapMessage, ReadError> {
    let mut s = connect_from(source, reg).map_err(|_| ReadError::Reset)?;
    let mut r = MsgReader::default();
    request(&mut s, &mut r, bytes, Duration::from_secs(2))
}

/// Resolves `pool` (up to 128 PEs) from 127.0.0.1 on a fresh connection: the PEs, or the cause.
fn resolve(reg: SocketAddr, pool: &str) -> Result<Vec<PoolElement>, u16> {
    let m = one_shot(reg, "127.0.0.1", &handle_resolution(pool, Some(128)))
        .unwrap_or_else(|e| panic!("harness: no answer to a handle resolution: {e:?}"));
    match m.body {
        AsapBody::HandleResolutionResponse {
            elements,
            error: None,
            ..
        } => Ok(elements),
        AsapBody::HandleResolutionResponse { error: Some(e), .. } => Err(e.code()),
        other => panic!("harness: unexpected answer {other:?}"),
    }
}

fn resolvable(reg: SocketAddr, pool: &str, id: u32) -> bool {
    resolve(reg, pool).is_ok_and(|v| v.iter().any(|e| e.id.0 == id))
}

// ------------------------------------------------------------------------------ harness

/// The close detection the tests rely on: a FIN is seen even with unread data in front of it
/// (and reads as EOF once the data is consumed), a reset is seen, an open connection is not.
#[test]
fn harness_sees_closes_and_resets() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let open = connect_from("127.0.0.2", addr).unwrap();
    let (_open_peer, _) = l.accept().unwrap();
    let mut fin = connect_from("127.0.0.2", addr).unwrap();
    let (mut p, _) = l.accept().unwrap();
    p.write_all(b"data").unwrap();
    drop(p);
    let reset = connect_from("127.0.0.2", addr).unwrap();
    let (p, _) = l.accept().unwrap();
    socket2::SockRef::from(&p)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(p);
    std::thread::sleep(Duration::from_millis(50));
    assert!(!peer_closed(&open));
    assert!(peer_closed(&fin));
    assert!(peer_closed(&reset));
    let mut buf = [0u8; 16];
    assert_eq!(fin.read(&mut buf).unwrap(), 4);
    assert_eq!(fin.read(&mut buf).unwrap(), 0);
}

// ------------------------------------------------------------------------------ 1

/// 10 attackers write 1 MiB of 128-item handle resolutions each and never read. Bound: the
/// design caps each connection's unsent output at ~1 MiB, so RSS may grow by 10 x 2 MiB (the cap
/// plus the output buffer's growth by doubling) + 16 MiB of slack (one read buffer's worth of
/// requests in flight per connection, allocator retention) over the baseline.
#[test]
fn unread_answers_stay_bounded_and_attackers_are_dropped_at_the_stall_timeout() {
    let _g = serial();
    let mut c = Checks::new("unread answers");
    let stall = Duration::from_millis(2000);
    let mut s = setup("attack-unread", &["-stalltimeout=2000"], 128);
    let bound = s.baseline_kib + 10 * 2 * MIB + 16 * MIB;
    c.note(format!(
        "baseline {} KiB, bound {} KiB",
        s.baseline_kib, bound
    ));
    let monitor = RssMonitor::start(s.reg.proc.pid(), RSS_KILL_KIB);

    let hr = handle_resolution(GOOD_POOL, Some(128));
    let payload: Arc<Vec<u8>> = Arc::new(hr.repeat((1 << 20) / hr.len()));
    let start = Instant::now();
    let write_deadline = start + Duration::from_secs(6);
    let mut attackers = Vec::new();
    let mut writers = Vec::new();
    for i in 0..10 {
        let a = connect_from(&format!("127.0.0.{}", 2 + i), s.reg.asap).unwrap();
        let w = a.try_clone().unwrap();
        attackers.push(a);
        let payload = payload.clone();
        writers.push(std::thread::spawn(move || {
            let mut w = w;
            w.set_write_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let mut off = 0;
            while off < payload.len() && Instant::now() < write_deadline {
                match w.write(&payload[off..]) {
                    Ok(n) => off += n,
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(_) => break,
                }
            }
            off
        }));
    }
    let mut closed_at: Vec<Option<Duration>> = vec![None; attackers.len()];
    let attack_end = start + stall + Duration::from_secs(6);
    while Instant::now() < attack_end && !monitor.killed() && closed_at.iter().any(|c| c.is_none())
    {
        c.probe(&mut s.pu, "during the attack");
        for (i, a) in attackers.iter().enumerate() {
            if closed_at[i].is_none() && peer_closed(a) {
                closed_at[i] = Some(start.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let after_end = Instant::now() + Duration::from_secs(1);
    while Instant::now() < after_end && !monitor.killed() {
        c.probe(&mut s.pu, "after the attack");
        std::thread::sleep(Duration::from_millis(50));
    }
    let written: Vec<usize> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    c.note(format!(
        "bytes written by the attackers: {written:?}; closed at {closed_at:?}; peak RSS {} KiB",
        monitor.peak()
    ));
    c.check(
        !monitor.killed(),
        format!("registrar RSS passed {RSS_KILL_KIB} KiB: killed by the test"),
    );
    c.check(
        monitor.peak() <= bound,
        format!(
            "registrar peak RSS {} KiB > bound {bound} KiB (baseline {} KiB)",
            monitor.peak(),
            s.baseline_kib
        ),
    );
    // Slack for a loaded machine (it took 4.7 s with both cores busy): the check is that the
    // stall timeout closes them, not how promptly.
    let limit = stall + Duration::from_millis(5000);
    for (i, t) in closed_at.iter().enumerate() {
        c.check(
            t.is_some_and(|t| t <= limit),
            format!(
                "attacker {i} not disconnected within the stall timeout + 5 s ({limit:?}): {t:?}"
            ),
        );
    }
    c.check(!s.good_pe.lost(), "the good PE lost its connection");
    drop(attackers);
    c.finish();
}

// ------------------------------------------------------------------------------ 2

/// A second connection of the same host tries to re-register A's PE with life 0 and with another
/// policy: both refused, and the PE stays A's (A deregisters it; closing A removes it at once).
#[test]
fn refused_reregistrations_do_not_leave_a_ghost_pe() {
    let _g = serial();
    let mut c = Checks::new("ghost PE");
    let mut s = setup("attack-ghost", &[], 1);
    let life = 600_000;
    for variant in ["deregister", "close"] {
        let pool = format!("GhostPool-{variant}");
        let id = if variant == "deregister" {
            0x2001
        } else {
            0x2002
        };
        let mut a = connect_from("127.0.0.1", s.reg.asap).unwrap();
        let mut ra = MsgReader::default();
        let e = element(id, "127.0.0.1", 8001, PolicyType::RoundRobin, life);
        let m = request(
            &mut a,
            &mut ra,
            &registration(&pool, e),
            Duration::from_secs(2),
        )
        .unwrap();
        assert_eq!(response_cause(&m), Ok(()), "harness: A registers");

        let mut b = connect_from("127.0.0.1", s.reg.asap).unwrap();
        let mut rb = MsgReader::default();
        let e = element(id, "127.0.0.1", 8001, PolicyType::RoundRobin, 0);
        let m = request(
            &mut b,
            &mut rb,
            &registration(&pool, e),
            Duration::from_secs(2),
        )
        .unwrap();
        c.check(
            response_cause(&m) == Err(cause::INVALID_VALUES),
            format!(
                "{variant}: life 0 from B: expected cause 0x0003, got {:?}",
                response_cause(&m)
            ),
        );
        let e = element(id, "127.0.0.1", 8001, PolicyType::LeastUsed, life);
        let m = request(
            &mut b,
            &mut rb,
            &registration(&pool, e),
            Duration::from_secs(2),
        )
        .unwrap();
        c.check(
            response_cause(&m) == Err(cause::INCONSISTENT_POOLING_POLICY),
            format!(
                "{variant}: another policy from B: expected cause 0x0005, got {:?}",
                response_cause(&m)
            ),
        );
        c.check(
            resolvable(s.reg.asap, &pool, id),
            format!("{variant}: the PE is gone after B's refused attempts"),
        );
        if variant == "deregister" {
            let m = request(
                &mut a,
                &mut ra,
                &deregistration(&pool, id),
                Duration::from_secs(2),
            )
            .unwrap();
            c.check(
                response_cause(&m) == Ok(()),
                format!(
                    "A's deregistration after B's refused attempts: {:?}",
                    response_cause(&m)
                ),
            );
            c.check(
                !resolvable(s.reg.asap, &pool, id),
                "the PE is still resolvable after A's deregistration",
            );
        } else {
            drop(a);
            let closed = Instant::now();
            let mut gone = false;
            while closed.elapsed() < Duration::from_millis(150) {
                if !resolvable(s.reg.asap, &pool, id) {
                    gone = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            c.check(
                gone,
                "closing A did not remove its PE within 150 ms (a ghost PE owned by nobody)",
            );
        }
        c.probe(&mut s.pu, variant);
    }
    c.finish();
}

// ------------------------------------------------------------------------------ 3

/// Another connection of the same host re-registers A's PE with a new user port while A is
/// alive: refused with 0x000a, the PE keeps port 8001, A can deregister it.
#[test]
fn a_live_pe_cannot_be_hijacked_from_another_connection() {
    let _g = serial();
    let mut c = Checks::new("hijack");
    let mut s = setup("attack-hijack", &[], 1);
    let (pool, id) = ("HijackPool", 0x3001);
    let mut a = connect_from("127.0.0.1", s.reg.asap).unwrap();
    let mut ra = MsgReader::default();
    let e = element(id, "127.0.0.1", 8001, PolicyType::RoundRobin, 600_000);
    let m = request(
        &mut a,
        &mut ra,
        &registration(pool, e),
        Duration::from_secs(2),
    )
    .unwrap();
    assert_eq!(response_cause(&m), Ok(()), "harness: A registers");

    let mut b = connect_from("127.0.0.1", s.reg.asap).unwrap();
    let mut rb = MsgReader::default();
    let e = element(id, "127.0.0.1", 6666, PolicyType::RoundRobin, 600_000);
    let m = request(
        &mut b,
        &mut rb,
        &registration(pool, e),
        Duration::from_secs(2),
    )
    .unwrap();
    c.check(
        response_cause(&m) == Err(cause::REJECTED_SECURITY),
        format!(
            "B's re-registration with port 6666: expected cause 0x000a, got {:?}",
            response_cause(&m)
        ),
    );
    let ports: Vec<u16> = resolve(s.reg.asap, pool)
        .unwrap_or_default()
        .iter()
        .map(|e| e.user_transport.port)
        .collect();
    c.check(
        ports == vec![8001],
        format!("resolution after the hijack attempt gives ports {ports:?}, expected [8001]"),
    );
    let m = request(
        &mut a,
        &mut ra,
        &deregistration(pool, id),
        Duration::from_secs(2),
    )
    .unwrap();
    c.check(
        response_cause(&m) == Ok(()),
        format!("A's deregistration: {:?}", response_cause(&m)),
    );
    c.check(
        !resolvable(s.reg.asap, pool, id),
        "the PE is still resolvable after A's deregistration",
    );
    drop(b);
    c.probe(&mut s.pu, "after");
    c.finish();
}

// ------------------------------------------------------------------------------ 4

/// One Endpoint Unreachable report on a fresh connection from `source`; waits until the
/// registrar has processed it (a handle resolution sent behind it is answered).
fn report_unreachable(reg: SocketAddr, source: &str, pool: &str, id: u32) {
    let mut bytes = unreachable(pool, id);
    bytes.extend_from_slice(&handle_resolution(GOOD_POOL, None));
    one_shot(reg, source, &bytes)
        .unwrap_or_else(|e| panic!("harness: no answer behind an unreachable report: {e:?}"));
}

/// Unreachable reports count per host: three from one host (a new connection each) do not
/// remove a PE, three hosts do; `-maxeurate` holds per host, not per connection.
#[test]
fn unreachable_reports_count_hosts_not_connections() {
    let _g = serial();
    let mut c = Checks::new("unreachable reports");
    let mut s = setup("attack-eu", &["-maxbadpereports=3"], 1);
    let pool = "EuPool";
    let victims = PeHolder::start(
        s.reg.asap,
        "127.0.0.1",
        pool,
        &[0x4001, 0x4002],
        8400,
        600_000,
    );
    for _ in 0..3 {
        report_unreachable(s.reg.asap, "127.0.0.2", pool, 0x4001);
    }
    c.check(
        resolvable(s.reg.asap, pool, 0x4001),
        "three reports from one host (127.0.0.2, a new connection each) removed the PE",
    );
    for (i, host) in ["127.0.0.2", "127.0.0.3", "127.0.0.4"].iter().enumerate() {
        report_unreachable(s.reg.asap, host, pool, 0x4002);
        let present = resolvable(s.reg.asap, pool, 0x4002);
        if i < 2 {
            c.check(
                present,
                format!("PE removed after reports from only {} host(s)", i + 1),
            );
        } else {
            c.check(
                !present,
                "reports from three distinct hosts did not remove the PE",
            );
        }
    }
    c.probe(&mut s.pu, "after the reports");
    drop(victims);

    // -maxeurate=1 with one report enough to remove a PE: five PEs reported within well under
    // a second from one host, one new connection per report: at most one report per second
    // window counts (two windows may be touched).
    let mut s = setup("attack-eurate", &["-maxbadpereports=1", "-maxeurate=1"], 1);
    let ids: Vec<u32> = (0x4101..=0x4105).collect();
    let victims = PeHolder::start(s.reg.asap, "127.0.0.1", pool, &ids, 8500, 600_000);
    let t = Instant::now();
    for &id in &ids {
        report_unreachable(s.reg.asap, "127.0.0.2", pool, id);
    }
    let took = t.elapsed();
    let removed = ids
        .iter()
        .filter(|&&id| !resolvable(s.reg.asap, pool, id))
        .count();
    c.note(format!(
        "-maxeurate=1: 5 reports in {took:?} removed {removed} PE(s)"
    ));
    let windows = took.as_secs() as usize + 2;
    c.check(
        removed <= windows,
        format!(
            "-maxeurate=1: {removed} of 5 reports from one host (a new connection each, in \
             {took:?}) got through; at most {windows} expected"
        ),
    );
    c.probe(&mut s.pu, "after the rate-limited reports");
    drop(victims);
    c.finish();
}

// ------------------------------------------------------------------------------ 5

/// `-maxhrrate=10` holds per host: 100 requests in about a second from 127.0.0.2, one new
/// connection each, get PEs at most at the limit's rate; the others are refused with 0x000a.
#[test]
fn the_handle_resolution_rate_holds_per_host() {
    let _g = serial();
    let mut c = Checks::new("hr rate");
    let mut s = setup("attack-hrrate", &["-maxhrrate=10"], 3);
    // The setup's probes count for 127.0.0.1 too: let their second pass.
    std::thread::sleep(Duration::from_millis(1100));
    let hr = handle_resolution(GOOD_POOL, None);
    let mut causes: BTreeMap<String, u32> = BTreeMap::new();
    let mut with_pes = 0;
    let start = Instant::now();
    let mut next_probe = start;
    for i in 0..100 {
        let at = start + Duration::from_millis(10 * i);
        if let Some(d) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        match one_shot(s.reg.asap, "127.0.0.2", &hr) {
            Ok(m) => match m.body {
                AsapBody::HandleResolutionResponse {
                    ref elements,
                    error: None,
                    ..
                } if !elements.is_empty() => with_pes += 1,
                _ => {
                    let k = format!("{:?}", response_cause(&m).err());
                    *causes.entry(k).or_default() += 1;
                }
            },
            Err(e) => *causes.entry(format!("no answer ({e:?})")).or_default() += 1,
        }
        // The good PU (same limit, its own host) stays well under 10/s.
        if Instant::now() >= next_probe {
            c.probe(&mut s.pu, "during the requests");
            next_probe = Instant::now() + Duration::from_millis(250);
        }
    }
    let took = start.elapsed();
    let allowed = 10 * (took.as_secs() as u32 + 2);
    c.note(format!(
        "100 requests in {took:?}: {with_pes} answered with PEs, others {causes:?}"
    ));
    c.check(
        with_pes <= allowed,
        format!("{with_pes} of 100 requests answered with PEs, at most {allowed} expected"),
    );
    let refused_right = causes.get("Some(10)").copied().unwrap_or(0);
    c.check(
        refused_right + with_pes == 100,
        format!("refused requests must carry cause 0x000a: {causes:?}"),
    );
    c.probe(&mut s.pu, "after the requests");
    c.finish();
}

// ------------------------------------------------------------------------------ 6

/// Counts of a flooder's registration answers.
#[derive(Default)]
struct FloodCount {
    ok: AtomicU64,
    refused: Mutex<BTreeMap<u16, u64>>,
    keepalives: AtomicU64,
    lost: AtomicBool,
}

impl FloodCount {
    fn answered(&self) -> u64 {
        self.ok.load(Ordering::Relaxed) + self.refused.lock().unwrap().values().sum::<u64>()
    }
}

/// A connection from `source` that writes `n` registrations as fast as it can (pool chosen by
/// `pool_of`) and answers every keep-alive; its reader runs until `stop`.
fn flood_registrations(
    reg: SocketAddr,
    source: &str,
    n: u32,
    first_id: u32,
    pool_of: impl Fn(u32) -> String + Send + 'static,
    stop: Arc<AtomicBool>,
) -> (Arc<FloodCount>, std::thread::JoinHandle<()>) {
    let mut s = connect_from(source, reg).unwrap();
    let w = Arc::new(Mutex::new(s.try_clone().unwrap()));
    let count = Arc::new(FloodCount::default());
    let (cnt, wr) = (count.clone(), w.clone());
    let reader = std::thread::spawn(move || {
        let mut r = MsgReader::default();
        while !stop.load(Ordering::Relaxed) {
            match r.next_asap(&mut s, Duration::from_millis(50)) {
                Ok(m) => match &m.body {
                    AsapBody::RegistrationResponse { .. } => match response_cause(&m) {
                        Ok(()) => {
                            cnt.ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(code) => *cnt.refused.lock().unwrap().entry(code).or_default() += 1,
                    },
                    AsapBody::EndpointKeepAlive {
                        pool_handle,
                        pe_id: Some(id),
                        ..
                    } => {
                        cnt.keepalives.fetch_add(1, Ordering::Relaxed);
                        let ack = encode(AsapBody::EndpointKeepAliveAck {
                            pool_handle: pool_handle.clone(),
                            pe_id: *id,
                        });
                        if wr.lock().unwrap().write_all(&ack).is_err() {
                            cnt.lost.store(true, Ordering::Relaxed);
                            return;
                        }
                    }
                    _ => {}
                },
                Err(ReadError::Timeout) => {}
                Err(_) => {
                    cnt.lost.store(true, Ordering::Relaxed);
                    return;
                }
            }
        }
    });
    let source = source.to_string();
    std::thread::spawn(move || {
        for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
            let mut batch = Vec::new();
            for &i in chunk {
                let e = element(
                    first_id + i,
                    &source,
                    10000 + (i % 50000) as u16,
                    PolicyType::RoundRobin,
                    600_000,
                );
                batch.extend_from_slice(&registration(&pool_of(i), e));
            }
            if w.lock().unwrap().write_all(&batch).is_err() {
                return;
            }
        }
    });
    (count, reader)
}

/// A registration flood from one host stops at `-maxpesperhost` (cause 0x0006), several hosts
/// stop at `-maxpesperpool`; memory stays bounded (baseline + 16 MiB: 2 000 PEs take well under
/// 1 KiB each); the good PU is served during the flood and the keep-alive rounds after it.
#[test]
fn registration_floods_stop_at_the_per_host_and_per_pool_limits() {
    let _g = serial();
    let mut c = Checks::new("registration flood");
    let mut s = setup(
        "attack-regflood",
        &[
            "-maxpesperhost=2000",
            "-endpointkeepalivetransmissioninterval=500",
            "-endpointkeepalivetimeoutinterval=1000",
        ],
        1,
    );
    let bound = s.baseline_kib + 16 * MIB;
    let monitor = RssMonitor::start(s.reg.proc.pid(), RSS_KILL_KIB);
    let stop = Arc::new(AtomicBool::new(false));
    let n = 2600;
    let (count, reader) = flood_registrations(
        s.reg.asap,
        "127.0.0.2",
        n,
        0x6000_0000,
        |i| format!("FloodPool{}", i % 4),
        stop.clone(),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while count.answered() < u64::from(n) && Instant::now() < deadline {
        if count.lost.load(Ordering::Relaxed) {
            break;
        }
        c.probe(&mut s.pu, "during the flood");
        std::thread::sleep(Duration::from_millis(5));
    }
    let rounds = Instant::now() + Duration::from_secs(2);
    while Instant::now() < rounds {
        c.probe(&mut s.pu, "keep-alive rounds after the flood");
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    let ok = count.ok.load(Ordering::Relaxed);
    let refused = count.refused.lock().unwrap().clone();
    c.note(format!(
        "{n} registrations from 127.0.0.2: {ok} accepted, refused {refused:?}, {} keep-alives \
         answered; peak RSS {} KiB (baseline {}, bound {bound})",
        count.keepalives.load(Ordering::Relaxed),
        monitor.peak(),
        s.baseline_kib
    ));
    c.check(
        ok == 2000,
        format!("-maxpesperhost=2000: {ok} registrations accepted"),
    );
    c.check(
        refused.get(&cause::LACK_OF_RESOURCES).copied() == Some(u64::from(n) - 2000)
            && refused.len() == 1,
        format!("registrations over the limit must be refused with 0x0006: {refused:?}"),
    );
    c.check(
        !count.lost.load(Ordering::Relaxed),
        "the flooder (answering keep-alives) lost its connection",
    );
    c.check(
        count.keepalives.load(Ordering::Relaxed) > 0,
        "no keep-alive round reached the flooder",
    );
    c.check(
        monitor.peak() <= bound && !monitor.killed(),
        format!("peak RSS {} KiB > bound {bound} KiB", monitor.peak()),
    );
    c.check(!s.good_pe.lost(), "the good PE lost its connection");
    drop(monitor);

    // -maxpesperpool: three hosts, 150 registrations each into one pool capped at 300.
    let mut s = setup("attack-poolflood", &["-maxpesperpool=300"], 1);
    let stop = Arc::new(AtomicBool::new(false));
    let floods: Vec<_> = (0..3u32)
        .map(|h| {
            flood_registrations(
                s.reg.asap,
                &format!("127.0.0.{}", 3 + h),
                150,
                0x7000_0000 + h * 1000,
                |_| "CapPool".to_string(),
                stop.clone(),
            )
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while floods.iter().map(|f| f.0.answered()).sum::<u64>() < 450 && Instant::now() < deadline {
        c.probe(&mut s.pu, "during the pool flood");
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let mut ok = 0;
    let mut refused: BTreeMap<u16, u64> = BTreeMap::new();
    for (count, reader) in floods {
        reader.join().unwrap();
        ok += count.ok.load(Ordering::Relaxed);
        for (k, v) in count.refused.lock().unwrap().iter() {
            *refused.entry(*k).or_default() += v;
        }
    }
    c.note(format!(
        "-maxpesperpool=300, 3 hosts x 150: {ok} accepted, refused {refused:?}"
    ));
    c.check(ok == 300, format!("-maxpesperpool=300: {ok} PEs accepted"));
    c.check(
        refused.get(&cause::LACK_OF_RESOURCES).copied() == Some(150) && refused.len() == 1,
        format!("registrations over the pool limit must be refused with 0x0006: {refused:?}"),
    );
    c.probe(&mut s.pu, "after the pool flood");
    c.finish();
}

// ------------------------------------------------------------------------------ 7

/// 300 connections each send all but the last byte of a 65535-byte message and stall: closed at
/// the stall timeout (EOF). Bounds: while they are held, baseline + 300 x 128 KiB (one partial
/// message each, its buffer grown by doubling) + 16 MiB; once they are closed, baseline + 16 MiB.
/// Idle connections without PEs are closed after `-autoclosetimeout=5`; the good PE's and the
/// good PU's (active) connections are not.
#[test]
fn stalled_and_idle_connections_are_closed() {
    let _g = serial();
    let mut c = Checks::new("stalled connections");
    let stall = Duration::from_millis(2000);
    let autoclose = Duration::from_secs(5);
    let mut s = setup(
        "attack-stall",
        &["-stalltimeout=2000", "-autoclosetimeout=5"],
        1,
    );
    let during_bound = s.baseline_kib + 300 * 128 + 16 * MIB;
    // Freed buffers may stay with the allocator (how much it hands back to the kernel varies
    // from run to run), so RSS after a close says little. What must not happen is growth from
    // one round of the attack to the next: had the registrar kept anything of the first round's
    // 300 connections (about 19 MiB of partial messages), the second round would stack on it and
    // its peak would pass the first round's. Each partial message is one allocation of its
    // announced size (the deframer reserves it), so the peaks of two rounds are within about
    // 0.5 MiB; when buffers still grew by doubling, a round's peak varied by 4 MiB.
    let growth_bound = 4 * MIB;
    let monitor = RssMonitor::start(s.reg.proc.pid(), RSS_KILL_KIB);

    // Idle: three silent connections and one that resolves once, then stays silent.
    let idle_start = Instant::now();
    let mut idle: Vec<TcpStream> = (0..3)
        .map(|_| connect_from("127.0.0.6", s.reg.asap).unwrap())
        .collect();
    let mut once = connect_from("127.0.0.6", s.reg.asap).unwrap();
    let mut r = MsgReader::default();
    request(
        &mut once,
        &mut r,
        &handle_resolution(GOOD_POOL, None),
        Duration::from_secs(2),
    )
    .expect("harness: the idle-to-be connection is answered");
    idle.push(once);

    let mut partial = vec![0u8; 65534];
    partial[..4].copy_from_slice(&[0x05, 0x00, 0xff, 0xff]);
    let mut stalled = Vec::new();
    for i in 0..300 {
        let mut t = connect_from(&format!("127.0.0.{}", 2 + i % 3), s.reg.asap).unwrap();
        t.write_all(&partial).unwrap();
        stalled.push(t);
    }
    let written = Instant::now();
    c.note(format!(
        "300 partial messages written in {:?}",
        written - idle_start
    ));
    let mut closed_at: Vec<Option<Duration>> = vec![None; stalled.len()];
    let mut idle_closed_at: Vec<Option<Duration>> = vec![None; idle.len()];
    let end = idle_start + autoclose + Duration::from_secs(2);
    let mut rss_after_close = None;
    // The second round, once the first is closed.
    let mut second: Vec<TcpStream> = Vec::new();
    let mut second_written = None;
    let mut second_closed: Vec<Option<Duration>> = Vec::new();
    let mut rss_after_second = None;
    let mut first_round_peak = None;
    while Instant::now() < end {
        c.probe(&mut s.pu, "while connections stall and idle");
        for (i, t) in stalled.iter().enumerate() {
            if closed_at[i].is_none() && peer_closed(t) {
                closed_at[i] = Some(written.elapsed());
            }
        }
        for (i, t) in idle.iter().enumerate() {
            if idle_closed_at[i].is_none() && peer_closed(t) {
                idle_closed_at[i] = Some(idle_start.elapsed());
            }
        }
        if rss_after_close.is_none() && closed_at.iter().all(Option::is_some) {
            std::thread::sleep(Duration::from_millis(500));
            rss_after_close = Some(s.reg.rss_kib());
            first_round_peak = Some(monitor.peak());
            for i in 0..300 {
                let mut t = connect_from(&format!("127.0.0.{}", 2 + i % 3), s.reg.asap).unwrap();
                t.write_all(&partial).unwrap();
                second.push(t);
            }
            second_written = Some(Instant::now());
            second_closed = vec![None; second.len()];
        }
        if let Some(w) = second_written {
            for (i, t) in second.iter().enumerate() {
                if second_closed[i].is_none() && peer_closed(t) {
                    second_closed[i] = Some(w.elapsed());
                }
            }
            if rss_after_second.is_none() && second_closed.iter().all(Option::is_some) {
                std::thread::sleep(Duration::from_millis(500));
                rss_after_second = Some(s.reg.rss_kib());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let closed = closed_at.iter().filter(|t| t.is_some()).count();
    let latest = closed_at.iter().flatten().max();
    c.note(format!(
        "stalled: {closed} of 300 closed, the last after {latest:?}; idle closed at \
         {idle_closed_at:?}; peak RSS {} KiB (baseline {}, first round {first_round_peak:?}), \
         after the close {rss_after_close:?}, after a second round {rss_after_second:?}",
        monitor.peak(),
        s.baseline_kib
    ));
    let limit = stall + Duration::from_millis(1500);
    c.check(
        closed == 300 && latest.is_some_and(|t| *t <= limit),
        format!("stalled connections: {closed} of 300 closed within {limit:?} (last {latest:?})"),
    );
    // Closed means EOF: the registrar had read everything, so no reset is expected.
    let mut eof = 0;
    let mut other = BTreeMap::new();
    for (i, t) in stalled.iter_mut().enumerate() {
        if closed_at[i].is_none() {
            continue;
        }
        t.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        match t.read(&mut [0u8; 16]) {
            Ok(0) => eof += 1,
            r => *other.entry(format!("{r:?}")).or_insert(0) += 1,
        }
    }
    c.check(
        eof == closed,
        format!("stalled connections closed without a clean EOF: {other:?}"),
    );
    c.check(
        monitor.peak() <= during_bound && !monitor.killed(),
        format!(
            "peak RSS {} KiB while stalled > bound {during_bound} KiB",
            monitor.peak()
        ),
    );
    let all_peak = monitor.peak();
    c.check(
        matches!((first_round_peak, rss_after_second), (Some(a), Some(b))
            if b <= a + growth_bound && all_peak <= a + growth_bound),
        format!(
            "RSS grew from a peak of {first_round_peak:?} KiB in the first round of stalled \
             connections to a peak of {all_peak} KiB in the second, {rss_after_second:?} KiB \
             after it (bound: +{growth_bound} KiB)"
        ),
    );
    for (i, t) in idle_closed_at.iter().enumerate() {
        c.check(
            t.is_some_and(|t| t >= autoclose - Duration::from_millis(500)),
            format!("idle connection {i} closed at {t:?}, expected after about {autoclose:?}"),
        );
    }
    c.check(!s.good_pe.lost(), "the good PE lost its connection");
    c.finish();
}

// ------------------------------------------------------------------------------ 8

/// How a flood connection ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fate {
    Answered,
    Eof,
    Reset,
    Hang,
}

/// Under `ulimit -n 64` more connections than descriptors: the extra ones get a clean EOF at
/// once, the registrar logs it, and after the flood a new PU is served. `-maxconnectionsperhost`
/// refuses a host's N+1-th connection while other hosts connect.
#[test]
fn descriptor_exhaustion_and_the_per_host_connection_limit() {
    let _g = serial();
    let mut c = Checks::new("descriptors");
    let mut s = setup_wrapped("attack-fds", &[], 1, Some("ulimit -n 64"));
    let log_before = s.reg.log_text().len();
    let mut flood = Vec::new();
    for _ in 0..100 {
        match connect_from("127.0.0.2", s.reg.asap) {
            Ok(t) => flood.push(t),
            Err(e) => {
                c.note(format!("connect failed after {}: {e}", flood.len()));
                break;
            }
        }
    }
    let opened = Instant::now();
    // The extra connections must be closed promptly; the others must be served.
    let mut fates = vec![None; flood.len()];
    while opened.elapsed() < Duration::from_millis(1500) {
        for (i, t) in flood.iter().enumerate() {
            if fates[i].is_none() && peer_closed(t) {
                fates[i] = Some(opened.elapsed());
            }
        }
        c.probe(&mut s.pu, "during the connection flood");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The others are asked a handle resolution each, all at once; one second for all answers.
    let mut tally: BTreeMap<Fate, u32> = BTreeMap::new();
    let hr = handle_resolution(GOOD_POOL, None);
    let mut asked = Vec::new();
    for (i, t) in flood.iter_mut().enumerate() {
        if fates[i].is_some() {
            t.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let fate = match t.read(&mut [0u8; 16]) {
                Ok(0) => Fate::Eof,
                _ => Fate::Reset,
            };
            *tally.entry(fate).or_default() += 1;
        } else if t.write_all(&hr).is_ok() {
            asked.push(t);
        } else {
            *tally.entry(Fate::Reset).or_default() += 1;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    for t in asked {
        let mut r = MsgReader::default();
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        let fate = match r.next(t, left) {
            Ok(_) => Fate::Answered,
            Err(ReadError::Closed) => Fate::Eof,
            Err(ReadError::Reset) => Fate::Reset,
            Err(ReadError::Timeout) => Fate::Hang,
        };
        *tally.entry(fate).or_default() += 1;
    }
    c.note(format!(
        "{} connections under ulimit -n 64: {tally:?}",
        flood.len()
    ));
    c.check(
        !tally.contains_key(&Fate::Hang),
        format!(
            "{} flood connections hang (neither served nor closed)",
            tally.get(&Fate::Hang).unwrap_or(&0)
        ),
    );
    c.check(
        tally.get(&Fate::Eof).copied().unwrap_or(0) >= 30,
        format!("fewer than 30 of 100 connections refused with a clean EOF: {tally:?}"),
    );
    c.check(
        !tally.contains_key(&Fate::Reset),
        format!("connections reset instead of a clean EOF: {tally:?}"),
    );
    let log = s.reg.log_text();
    let new_log = log.get(log_before..).unwrap_or("").to_ascii_lowercase();
    c.check(
        ["descriptor", "too many open files", "emfile", "refus"]
            .iter()
            .any(|w| new_log.contains(w)),
        format!(
            "the registrar did not log the descriptor shortage ({})",
            s.reg.log.display()
        ),
    );
    drop(flood);
    std::thread::sleep(Duration::from_millis(500));
    let mut fresh = GoodPu::new(s.reg.asap, GOOD_POOL).fresh();
    for _ in 0..5 {
        c.probe(&mut fresh, "a new PU after the flood");
    }
    c.probe(&mut s.pu, "after the flood");
    c.check(!s.good_pe.lost(), "the good PE lost its connection");
    drop(s);

    // -maxconnectionsperhost=4: the 5th connection of 127.0.0.2 is closed; 127.0.0.3 connects.
    let mut s = setup("attack-perhost", &["-maxconnectionsperhost=4"], 1);
    let asap = s.reg.asap;
    let served = |c: &mut Checks, from: &str, what: &str| -> TcpStream {
        let mut t = connect_from(from, asap).unwrap();
        let mut r = MsgReader::default();
        let res = request(&mut t, &mut r, &hr, Duration::from_secs(1));
        c.check(res.is_ok(), format!("{what}: not served: {res:?}"));
        t
    };
    let mut kept = Vec::new();
    for i in 0..4 {
        kept.push(served(
            &mut c,
            "127.0.0.2",
            &format!("127.0.0.2 connection {i}"),
        ));
    }
    let extra = connect_from("127.0.0.2", s.reg.asap).unwrap();
    for i in 0..4 {
        kept.push(served(
            &mut c,
            "127.0.0.3",
            &format!("127.0.0.3 connection {i}"),
        ));
    }
    let t = Instant::now();
    while !peer_closed(&extra) && t.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(10));
    }
    c.check(
        peer_closed(&extra),
        "-maxconnectionsperhost=4: the 5th connection of 127.0.0.2 is still open after 1 s",
    );
    c.probe(&mut s.pu, "with the per-host limit reached");
    drop(kept);
    c.finish();
}

// ------------------------------------------------------------------------------ 9

/// Local ports of established client connections to `port` (/proc/net/tcp).
fn client_ports_to(port: u16) -> HashSet<u16> {
    let text = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let local = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
            let remote = u16::from_str_radix(f.get(2)?.rsplit(':').next()?, 16).ok()?;
            (remote == port && *f.get(3)? == "01").then_some(local)
        })
        .collect()
}

/// A PE of our library (the Rust API: `Library` + `EnhancedPe`, as rspCreatePoolElement uses
/// them) registered with a short keep-alive; the registrar is stopped longer than the library's
/// timeouts, so the PE drops its association and reconnects into the listen backlog; after
/// SIGCONT every resolution (every ~10 ms for 3 s) finds the PE.
#[test]
fn a_paused_registrar_never_shows_an_empty_pool() {
    use rsplib::core::types::{PolicyInfo, TransportProtocol};
    use rsplib::library::session::{EnhancedPe, PeOptions};
    use rsplib::library::{Library, LibraryConfig};
    use rsplib::transport::Protocol;

    let _g = serial();
    let mut c = Checks::new("paused registrar");
    let mut s = setup(
        "attack-pause",
        &[
            "-endpointkeepalivetransmissioninterval=250",
            "-endpointkeepalivetimeoutinterval=250",
        ],
        1,
    );
    let lib = Arc::new(
        Library::start(LibraryConfig {
            cache_timeout: 0,
            announce_groups: Vec::new(),
            announce_timeout: 5_000_000,
            connect_max_trials: 2,
            connect_timeout: 300_000,
            request_max_trials: 1,
            response_timeout: 300_000,
            transport: Protocol::Tcp,
        })
        .unwrap(),
    );
    lib.add_static_registrar(vec![s.reg.asap]);
    let pool = "PausePool";
    let pe = EnhancedPe::create(
        lib.clone(),
        PoolHandle::from(pool),
        PeOptions {
            identifier: 0x9001,
            domain: libc::AF_INET,
            socket_type: libc::SOCK_STREAM,
            protocol: TransportProtocol::Tcp,
            local_port: 0,
            reregistration_interval: Duration::from_millis(200),
            registration_life_ms: 30_000,
            policy: PolicyInfo::new(PolicyType::RoundRobin),
            control_channel: false,
        },
    )
    .unwrap();
    let t = Instant::now();
    while !resolvable(s.reg.asap, pool, 0x9001) {
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "harness: the library PE does not register"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut pu = GoodPu::new(s.reg.asap, pool);
    assert!(pu.probe().ok_within(Duration::from_secs(1)));
    // Let a few keep-alive rounds pass with the PE answering.
    std::thread::sleep(Duration::from_millis(600));
    let before = client_ports_to(s.reg.asap.port());

    // Stopped for at least 3 s, longer than the registrar's stall gap (2 s: a shorter pause is
    // indistinguishable from an idle loop) and than the library's response timeout (0.3 s): the
    // library drops its association and connects again (the kernel completes the handshake into
    // the listen backlog). SIGCONT comes while such a new connection is open, its Registration
    // queued.
    s.reg.proc.signal(libc::SIGSTOP);
    let stopped = Instant::now();
    let mut new: Vec<u16>;
    loop {
        std::thread::sleep(Duration::from_millis(5));
        let during = client_ports_to(s.reg.asap.port());
        new = during.difference(&before).copied().collect();
        let waited = stopped.elapsed();
        if (waited >= Duration::from_secs(3) && !new.is_empty()) || waited > Duration::from_secs(6)
        {
            break;
        }
    }
    s.reg.proc.signal(libc::SIGCONT);
    let cont = Instant::now();
    assert!(
        !new.is_empty(),
        "harness: the library did not reconnect while the registrar was stopped (client ports \
         before {before:?})"
    );
    c.note(format!(
        "stopped for {:?}; the library's new connection(s) from port(s) {new:?}",
        cont - stopped
    ));

    let mut missing = Vec::new();
    let mut lat = Vec::new();
    let mut probes = 0;
    while cont.elapsed() < Duration::from_secs(3) {
        let at = cont.elapsed();
        let p = pu.probe();
        probes += 1;
        lat.push(p.latency);
        if !matches!(p.outcome, Outcome::Found(n) if n > 0) {
            missing.push((at, p.outcome));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let (p50, p99, max) = latency_summary(&mut lat);
    c.note(format!(
        "{probes} resolutions after SIGCONT: latency p50 {p50:.1} ms, p99 {p99:.1} ms, max \
         {max:.1} ms; without the PE: {}",
        missing.len()
    ));
    if !missing.is_empty() {
        let log = s.reg.log_text();
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(pool)).collect();
        c.note(format!(
            "registrar log about the pool:\n    {}",
            lines.join("\n    ")
        ));
    }
    c.check(
        missing.is_empty(),
        format!(
            "{} of {probes} resolutions after SIGCONT did not find the PE; first at {:?}: {:?}",
            missing.len(),
            missing.first().map(|m| m.0),
            missing.first().map(|m| m.1)
        ),
    );
    c.probe(&mut s.pu, "after the pause");
    pe.delete();
    lib.shutdown();
    c.finish();
}

// ------------------------------------------------------------------------------ 10

/// `-enrpallow=127.0.0.1`: 127.0.0.2 gets no handle table; 127.0.0.1 gets it, with every PE's
/// registrator transport carrying the placeholder port, not the PE's real one (rsplib's hsdump
/// refuses port 0, so the placeholder is `HIDDEN_ASAP_PORT`).
#[test]
fn the_handle_table_goes_only_to_allowed_hosts_without_registrator_ports() {
    let _g = serial();
    let mut c = Checks::new("handlespace disclosure");
    let mut s = setup("attack-enrp", &["-enrpallow=127.0.0.1"], 3);
    let (got, closed) = ask_handle_table(s.reg.enrp, "127.0.0.2", Duration::from_secs(1));
    let leaked: usize = got
        .iter()
        .map(|m| match &m.body {
            EnrpBody::HandleTableResponse { pools } => pools.iter().map(|p| p.elements.len()).sum(),
            _ => 0,
        })
        .sum();
    c.note(format!(
        "127.0.0.2: {:?}, closed: {closed}",
        got.iter().map(|m| m.name()).collect::<Vec<_>>()
    ));
    c.check(
        leaked == 0,
        format!("127.0.0.2 (not allowed) received a handle table with {leaked} PEs"),
    );

    let (got, _) = ask_handle_table(s.reg.enrp, "127.0.0.1", Duration::from_secs(2));
    let elements: Vec<&PoolElement> = got
        .iter()
        .flat_map(|m| match &m.body {
            EnrpBody::HandleTableResponse { pools } => {
                pools.iter().flat_map(|p| p.elements.iter()).collect()
            }
            _ => Vec::new(),
        })
        .collect();
    c.check(
        elements.len() == 3,
        format!(
            "127.0.0.1 (allowed) received {} PEs in the handle table, expected 3",
            elements.len()
        ),
    );
    for e in &elements {
        let port = e.asap_transport.as_ref().map(|t| t.port);
        c.check(
            port == Some(HIDDEN_ASAP_PORT),
            format!(
                "PE {} discloses its registrator transport port: {port:?} (expected \
                 Some({HIDDEN_ASAP_PORT}))",
                e.id
            ),
        );
    }
    c.probe(&mut s.pu, "after the ENRP queries");
    c.finish();
}

// ------------------------------------------------------------------------------ 11

/// A message of exactly `len` bytes: `head` followed by zeros, the header's length set.
fn sized(head: &[u8], len: usize) -> Vec<u8> {
    let mut m = head.to_vec();
    m.resize(len, 0);
    m[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    m
}

/// A Handle Resolution for `GOOD_POOL` followed by "skip and report" unknown parameters of
/// `param_len` bytes each (type 0xc001), as many as fit in `total` bytes.
fn hr_with_reported_params(total: usize, param_len: usize) -> Vec<u8> {
    let mut m = handle_resolution(GOOD_POOL, None);
    while m.len() + param_len <= total {
        let mut p = vec![0u8; param_len];
        p[0..2].copy_from_slice(&0xc001u16.to_be_bytes());
        p[2..4].copy_from_slice(&(param_len as u16).to_be_bytes());
        m.extend_from_slice(&p);
    }
    let len = m.len() as u16;
    m[2..4].copy_from_slice(&len.to_be_bytes());
    m
}

/// Messages near 64 KiB whose error reply echoes them: each gets an ASAP Error (echo truncated),
/// never nothing.
#[test]
fn error_replies_to_messages_near_64_kib_are_truncated_not_dropped() {
    let _g = serial();
    let mut c = Checks::new("64 KiB errors");
    let mut s = setup("attack-bigerror", &[], 1);
    let mut cases: Vec<(String, Vec<u8>, u16, bool)> = Vec::new();
    for len in [65524, 65528, 65532, 65535] {
        cases.push((
            format!("unknown message type, {len} bytes"),
            sized(&[0x33, 0, 0, 0], len),
            cause::UNRECOGNIZED_MESSAGE,
            true,
        ));
    }
    // A Cookie (a message a registrar never receives) is echoed whole.
    let mut cookie = sized(&[0x0b, 0, 0, 0], 65532);
    cookie[4..8].copy_from_slice(&[0x00, 0x0d, 0xff, 0xf8]);
    cases.push((
        "Cookie of 65532 bytes".into(),
        cookie,
        cause::UNRECOGNIZED_MESSAGE,
        true,
    ));
    // Each reported parameter costs its TLV plus a 4-byte cause header in the reply.
    for param_len in [4, 400] {
        let m = hr_with_reported_params(65532, param_len);
        let n = (m.len() - handle_resolution(GOOD_POOL, None).len()) / param_len;
        cases.push((
            format!("handle resolution with {n} reported unknown parameters of {param_len} bytes"),
            m,
            cause::UNRECOGNIZED_PARAMETER,
            true,
        ));
    }
    // Control: one "stop and report" parameter as large as fits: its echo fits as it is.
    let mut stop = handle_resolution(GOOD_POOL, None);
    let plen = 65532 - stop.len();
    let at = stop.len();
    stop.resize(65532, 0);
    stop[at..at + 2].copy_from_slice(&0x4123u16.to_be_bytes());
    stop[at + 2..at + 4].copy_from_slice(&(plen as u16).to_be_bytes());
    stop[2..4].copy_from_slice(&65532u16.to_be_bytes());
    cases.push((
        "one stop-and-report parameter of 65516 bytes".into(),
        stop,
        cause::UNRECOGNIZED_PARAMETER,
        false,
    ));

    for (what, msg, code, must_truncate) in cases {
        let mut t = connect_from("127.0.0.2", s.reg.asap).unwrap();
        t.write_all(&msg).unwrap();
        let mut r = MsgReader::default();
        let deadline = Instant::now() + Duration::from_secs(10);
        let reply = loop {
            match r.next(&mut t, deadline.saturating_duration_since(Instant::now())) {
                Ok(m) if m[0] == rsplib::core::wire::asap::ERROR => break Ok(m),
                Ok(_) => continue,
                Err(e) => break Err(e),
            }
        };
        match reply {
            Err(e) => c.check(false, format!("{what}: no ASAP Error reply ({e:?})")),
            Ok(bytes) => {
                let declared = u16::from_be_bytes([bytes[2], bytes[3]]) as usize;
                c.check(
                    bytes.len() <= 65535 && declared == bytes.len(),
                    format!("{what}: reply of {} bytes", bytes.len()),
                );
                match AsapMessage::decode(&bytes).map(|d| d.message.body) {
                    Ok(AsapBody::Error { error }) => {
                        c.check(
                            error.code() == code,
                            format!(
                                "{what}: cause 0x{:04x}, expected 0x{code:04x}",
                                error.code()
                            ),
                        );
                        let echoed: usize = error.causes.iter().map(|c| c.info.len()).sum();
                        c.note(format!(
                            "{what}: Error of {} bytes, {} cause(s), {echoed} bytes echoed",
                            bytes.len(),
                            error.causes.len()
                        ));
                        if must_truncate {
                            c.check(
                                echoed < msg.len(),
                                format!("{what}: echo of {echoed} bytes not truncated"),
                            );
                        }
                    }
                    other => c.check(false, format!("{what}: reply does not decode: {other:?}")),
                }
            }
        }
        c.probe(&mut s.pu, "between the large messages");
    }
    c.finish();
}
