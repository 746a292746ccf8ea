//! Soak: the release registrar for minutes under a steady load and rounds of attacks (issue #14).
//!
//! `make soak [SOAK_SECONDS=180]` runs `SOAK_SECONDS=N cargo bench --bench soak`:
//! * 1 000 PEs in 4 pools, 20 per TCP connection from 127.0.0.1, answering keep-alives sent
//!   every second (timeout 1 s);
//! * a pool user on 127.0.0.1 resolving at 200/s (persistent connections, one per pool);
//! * an attacker on 127.0.0.2-127.0.0.9 running bounded rounds, one kind after the other:
//!   unread 128-item answers, a handle resolution flood (a new connection per request),
//!   unreachable reports from one host (three per PE), a registration flood, stalled partial messages, a
//!   connection flood, hijack attempts, 64 KiB messages that provoke error echoes, handle table
//!   requests.
//!
//! Prints every 10 s the registrar's RSS, the good PU's latency and the PEs missing, at the end
//! the PU latency p50/p99/max and the PEs lost (a PE of the 1 000 that was once missing from the
//! handle table, fetched over ENRP every 10 s, or whose connection was dropped). Exits 1 if a PE
//! was lost.
//!
//! `cargo bench` without `SOAK_SECONDS` skips it; `cargo test --benches` (the smoke run of
//! `make test`) runs 100 PEs for 2 s (`SOAK_SECONDS` to change) against the debug registrar and
//! never fails on its figures.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use rsplib::core::types::PolicyType;
use rsplib::core::wire::EnrpBody;

const REGISTRAR: &str = env!("CARGO_BIN_EXE_rspregistrar");
const POOLS: u32 = 4;
const PES_PER_CONNECTION: u32 = 20;
const FIRST_ID: u32 = 0x5000_0000;

struct Mode {
    seconds: u64,
    pes: u32,
    pu_rate: u32,
    /// Attack sizes and holding times are scaled by this.
    scale: f64,
    smoke: bool,
}

/// The pool of connection `k` (PE index `i` is on connection `i / PES_PER_CONNECTION`).
fn pool(k: u32) -> String {
    format!("SoakPool{}", k % POOLS)
}

fn pool_of_pe(i: u32) -> String {
    pool(i / PES_PER_CONNECTION)
}

fn scaled(n: usize, scale: f64) -> usize {
    ((n as f64 * scale).ceil() as usize).max(1)
}

fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(20).min(end - Instant::now()));
    }
}

// ------------------------------------------------------------------------------ attacks

/// The attack kinds, run one per round in this order, over and over.
const ATTACKS: [&str; 9] = [
    "unread answers",
    "resolution flood",
    "unreachable reports",
    "registration flood",
    "stalled messages",
    "connection flood",
    "hijack",
    "64 KiB errors",
    "handle table",
];

struct Target {
    asap: SocketAddr,
    enrp: SocketAddr,
    pes: u32,
}

fn attack(kind: &str, t: &Target, scale: f64, stop: &AtomicBool) {
    let hold = Duration::from_secs_f64(3.0 * scale);
    match kind {
        "unread answers" => {
            // Two connections write up to 256 KiB of 128-item resolutions, never read.
            let hr = handle_resolution(&pool(0), Some(128));
            let payload = hr.repeat(scaled(256 << 10, scale) / hr.len());
            let conns: Vec<TcpStream> = ["127.0.0.2", "127.0.0.3"]
                .iter()
                .filter_map(|h| connect_from(h, t.asap).ok())
                .collect();
            let end = Instant::now() + hold;
            let mut offs = vec![0; conns.len()];
            while Instant::now() < end && !stop.load(Ordering::Relaxed) {
                for (c, off) in conns.iter().zip(offs.iter_mut()) {
                    if *off < payload.len() {
                        let mut c = c;
                        let _ = c.set_write_timeout(Some(Duration::from_millis(20)));
                        if let Ok(n) = c.write(&payload[*off..]) {
                            *off += n;
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        "resolution flood" => {
            let hr = handle_resolution(&pool(1), None);
            for _ in 0..scaled(200, scale) {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(mut c) = connect_from("127.0.0.4", t.asap) {
                    let mut r = MsgReader::default();
                    let _ = request(&mut c, &mut r, &hr, Duration::from_millis(200));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        "unreachable reports" => {
            // One host, a new connection per report, three reports for each of a few of the
            // soak's own PEs (-maxbadpereports=3 counts hosts, not reports: none may go).
            for i in 0..3 * scaled(3, scale) as u32 {
                let n = ((i / 3) * 97 + 13) % t.pes;
                let mut bytes = unreachable(&pool_of_pe(n), FIRST_ID + n);
                bytes.extend_from_slice(&handle_resolution(&pool_of_pe(n), None));
                if let Ok(mut c) = connect_from("127.0.0.5", t.asap) {
                    let mut r = MsgReader::default();
                    let _ = request(&mut c, &mut r, &bytes, Duration::from_millis(500));
                }
            }
        }
        "registration flood" => {
            if let Ok(mut c) = connect_from("127.0.0.6", t.asap) {
                let mut batch = Vec::new();
                for i in 0..scaled(500, scale) as u32 {
                    let e = element(
                        0x6000_0000 + i,
                        "127.0.0.6",
                        10000 + i as u16,
                        PolicyType::RoundRobin,
                        60_000,
                    );
                    batch.extend_from_slice(&registration("SoakFlood", e));
                }
                let _ = c.set_write_timeout(Some(Duration::from_secs(2)));
                let _ = c.write_all(&batch);
                let mut r = MsgReader::default();
                let end = Instant::now() + hold;
                while Instant::now() < end && r.next(&mut c, end - Instant::now()).is_ok() {}
            }
        }
        "stalled messages" => {
            let mut partial = vec![0u8; 65534];
            partial[..4].copy_from_slice(&[0x05, 0x00, 0xff, 0xff]);
            let conns: Vec<TcpStream> = (0..scaled(50, scale))
                .filter_map(|_| {
                    let mut c = connect_from("127.0.0.7", t.asap).ok()?;
                    let _ = c.set_write_timeout(Some(Duration::from_millis(200)));
                    let _ = c.write_all(&partial);
                    Some(c)
                })
                .collect();
            sleep_unless(stop, hold);
            drop(conns);
        }
        "connection flood" => {
            let conns: Vec<TcpStream> = (0..scaled(200, scale))
                .filter_map(|_| connect_from("127.0.0.8", t.asap).ok())
                .collect();
            sleep_unless(stop, hold);
            drop(conns);
        }
        "hijack" => {
            if let Ok(mut c) = connect_from("127.0.0.9", t.asap) {
                let mut r = MsgReader::default();
                for i in 0..5 {
                    let n = (i * 131 + 7) % t.pes;
                    let e = element(
                        FIRST_ID + n,
                        "127.0.0.9",
                        6666,
                        PolicyType::RoundRobin,
                        60_000,
                    );
                    let _ = request(
                        &mut c,
                        &mut r,
                        &registration(&pool_of_pe(n), e),
                        Duration::from_millis(500),
                    );
                }
            }
        }
        "64 KiB errors" => {
            let mut m = vec![0u8; 65532];
            m[..4].copy_from_slice(&[0x33, 0, 0xff, 0xfc]);
            for _ in 0..3 {
                if let Ok(mut c) = connect_from("127.0.0.9", t.asap) {
                    let _ = c.write_all(&m);
                    let mut r = MsgReader::default();
                    let _ = r.next(&mut c, Duration::from_millis(500));
                }
            }
        }
        "handle table" => {
            let _ = ask_handle_table(t.enrp, "127.0.0.9", Duration::from_secs(1));
        }
        other => unreachable!("attack {other}"),
    }
}

// ------------------------------------------------------------------------------ soak

/// The (pool, PE id) pairs in the registrar's handle table (ENRP, from 127.0.0.1); None if the
/// table could not be read completely.
fn handle_table(enrp: SocketAddr) -> Option<BTreeSet<(String, u32)>> {
    let (msgs, _) = ask_handle_table(enrp, "127.0.0.1", Duration::from_secs(5));
    let mut complete = false;
    let mut set = BTreeSet::new();
    for m in msgs {
        if let EnrpBody::HandleTableResponse { pools } = &m.body {
            complete = m.flags & rsplib::core::wire::enrp::FLAG_MORE == 0;
            for p in pools {
                let name = String::from_utf8_lossy(p.pool_handle.as_bytes()).into_owned();
                for e in &p.elements {
                    set.insert((name.clone(), e.id.0));
                }
            }
        }
    }
    complete.then_some(set)
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let seconds: Option<u64> = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok());
    let mode = match (bench, seconds) {
        (true, None) => {
            println!("soak: skipped (run it with `make soak` or SOAK_SECONDS=N cargo bench --bench soak)");
            return;
        }
        (true, Some(seconds)) => Mode {
            seconds,
            pes: 1000,
            pu_rate: 200,
            scale: 1.0,
            smoke: false,
        },
        (false, s) => Mode {
            seconds: s.unwrap_or(2),
            pes: 100,
            pu_rate: 50,
            scale: 0.1,
            smoke: true,
        },
    };
    let dir = temp_dir("soak");
    let reg = Registrar::start(
        REGISTRAR,
        &dir.join("registrar.log"),
        &[
            "-endpointkeepalivetransmissioninterval=1000",
            "-endpointkeepalivetimeoutinterval=1000",
        ],
    );
    println!(
        "soak: {} s, {} PEs ({} per connection, {POOLS} pools), PU {}/s, attacker rounds of {:?}; \
         registrar {REGISTRAR} (log {})",
        mode.seconds,
        mode.pes,
        PES_PER_CONNECTION,
        mode.pu_rate,
        ATTACKS,
        reg.log.display()
    );
    let monitor = RssMonitor::start(reg.proc.pid(), 4 << 20);

    // The PEs: connection k holds PEs k*20 .. k*20+19, all of pool k % 4.
    let mut expected = BTreeSet::new();
    let holders: Vec<PeHolder> = (0..mode.pes.div_ceil(PES_PER_CONNECTION))
        .map(|k| {
            let first = k * PES_PER_CONNECTION;
            let n = PES_PER_CONNECTION.min(mode.pes - first);
            let ids: Vec<u32> = (first..first + n).map(|i| FIRST_ID + i).collect();
            for &id in &ids {
                expected.insert((pool(k), id));
            }
            PeHolder::start(
                reg.asap,
                "127.0.0.1",
                &pool(k),
                &ids,
                20000 + first as u16,
                600_000,
            )
        })
        .collect();
    let baseline = reg.rss_kib();
    println!(
        "soak: {} PEs registered; RSS {baseline} KiB",
        expected.len()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let latencies = Arc::new(Mutex::new(Vec::<(Duration, bool)>::new()));
    let pu = {
        let (stop, lat, asap, rate) = (stop.clone(), latencies.clone(), reg.asap, mode.pu_rate);
        std::thread::spawn(move || {
            let mut pus: Vec<GoodPu> = (0..POOLS).map(|p| GoodPu::new(asap, &pool(p))).collect();
            let period = Duration::from_secs_f64(1.0 / f64::from(rate));
            let mut next = Instant::now();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let p = pus[i % POOLS as usize].probe();
                i += 1;
                let ok = matches!(p.outcome, Outcome::Found(n) if n > 0);
                lat.lock().unwrap().push((p.latency, ok));
                next += period;
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                } else {
                    next = now; // behind: skip the missed slots rather than burst
                }
            }
        })
    };
    let attacker = {
        let stop = stop.clone();
        let target = Target {
            asap: reg.asap,
            enrp: reg.enrp,
            pes: mode.pes,
        };
        let scale = mode.scale;
        std::thread::spawn(move || {
            let mut rounds = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                attack(ATTACKS[rounds % ATTACKS.len()], &target, scale, &stop);
                rounds += 1;
                let pause = Duration::from_secs_f64(5.0 * scale).saturating_sub(started.elapsed());
                sleep_unless(&stop, pause.max(Duration::from_millis(100)));
            }
            rounds
        })
    };

    let start = Instant::now();
    let end = start + Duration::from_secs(mode.seconds);
    let report_every = Duration::from_secs(10).min(Duration::from_secs(mode.seconds.max(1)));
    let mut lost: BTreeSet<(String, u32)> = BTreeSet::new();
    let mut rss_series = Vec::new();
    let mut seen_lat = 0;
    let check = |lost: &mut BTreeSet<(String, u32)>| -> usize {
        match handle_table(reg.enrp) {
            Some(table) => {
                let missing: Vec<_> = expected.difference(&table).cloned().collect();
                let n = missing.len();
                lost.extend(missing);
                n
            }
            None => usize::MAX,
        }
    };
    while Instant::now() < end {
        let next = (Instant::now() + report_every).min(end);
        while Instant::now() < next {
            std::thread::sleep(Duration::from_millis(50));
        }
        let rss = reg.rss_kib();
        rss_series.push(rss);
        let missing = check(&mut lost);
        for (k, h) in holders.iter().enumerate() {
            if h.lost() {
                for &id in &h.ids {
                    lost.insert((pool(k as u32), id));
                }
            }
        }
        let mut window: Vec<Duration> = {
            let l = latencies.lock().unwrap();
            let w = l[seen_lat..].iter().map(|x| x.0).collect();
            seen_lat = l.len();
            w
        };
        let failed = {
            let l = latencies.lock().unwrap();
            l.iter().filter(|x| !x.1).count()
        };
        let (p50, p99, max) = latency_summary(&mut window);
        println!(
            "t={:>4}s  RSS {rss:>7} KiB  PU {} resolutions, p50 {p50:.2} ms p99 {p99:.2} ms max \
             {max:.1} ms (unanswered so far: {failed})  PEs missing now: {}  lost so far: {}",
            start.elapsed().as_secs(),
            window.len(),
            if missing == usize::MAX {
                "table unreadable".to_string()
            } else {
                missing.to_string()
            },
            lost.len()
        );
    }
    stop.store(true, Ordering::Relaxed);
    pu.join().unwrap();
    let rounds = attacker.join().unwrap();
    for (k, h) in holders.iter().enumerate() {
        if h.lost() {
            for &id in &h.ids {
                lost.insert((pool(k as u32), id));
            }
        }
    }
    let dropped = holders.iter().filter(|h| h.lost()).count();
    let mut all: Vec<Duration> = latencies.lock().unwrap().iter().map(|x| x.0).collect();
    let failed = latencies.lock().unwrap().iter().filter(|x| !x.1).count();
    let (p50, p99, max) = latency_summary(&mut all);
    println!(
        "soak: {} s, {rounds} attack rounds; good PU: {} resolutions, p50 {p50:.2} ms, p99 \
         {p99:.2} ms, max {max:.1} ms, {failed} without PEs",
        start.elapsed().as_secs(),
        all.len()
    );
    println!(
        "soak: registrar RSS baseline {baseline} KiB, every 10 s {rss_series:?}, peak {} KiB{}",
        monitor.peak(),
        if monitor.killed() {
            " (killed by the soak: over 4 GiB)"
        } else {
            ""
        }
    );
    println!(
        "soak: PEs lost: {} of {} ({dropped} PE connections dropped by the registrar)",
        lost.len(),
        expected.len()
    );
    drop(holders);
    drop(monitor);
    // process::exit runs no destructors: the registrar is stopped here.
    drop(reg);
    if !lost.is_empty() {
        if mode.smoke {
            println!("soak: smoke run (cargo test --benches): figures only, not a verdict");
        } else {
            std::process::exit(1);
        }
    }
}
