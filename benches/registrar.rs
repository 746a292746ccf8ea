//! Registrar throughput and reaction time over loopback TCP: `cargo bench --bench registrar`.
//!
//! Starts the real `rspregistrar` binary and measures, with 1, 10 and 100 concurrent clients
//! (one TCP connection and thread each, one request outstanding per client):
//! * handle resolutions/s (pool of 3 PEs, 3 PEs per answer),
//! * registrations/s (each request registers a new PE),
//! * with 10 000 PEs connected (one connection each), handle resolution latency,
//! * the time from a PE's kill -9 to its removal, and from the registrar seeing the connection
//!   close to the removal (both read from the registrar's microsecond log timestamps).
//!
//! `BENCH_MS` sets the measuring time per figure (default 2000), `BENCH_CONNECTED` the number of
//! connected PEs (default 10000).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rsplib::core::types::{
    PeId, PolicyInfo, PolicyType, PoolHandle, TransportAddress, TransportProtocol,
};
use rsplib::core::wire::{AsapBody, AsapMessage, PoolElement};

const REGISTRAR: &str = env!("CARGO_BIN_EXE_rspregistrar");
const TOOL: &str = env!("CARGO_BIN_EXE_rsptool");

struct Registrar {
    child: Child,
    addr: SocketAddr,
    log: std::path::PathBuf,
}

impl Drop for Registrar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_registrar(log: &str) -> Registrar {
    let logpath = std::env::temp_dir().join(log);
    let mut child = Command::new(REGISTRAR)
        .args([
            "-asap=127.0.0.1:0",
            "-enrp=127.0.0.1:0",
            "-asapannounce=off",
            "-enrpannounce=off",
            "-transport=tcp",
            "-minaddressscope=loopback",
            // Long keep-alive interval: the benchmark's clients do not answer keep-alives.
            "-endpointkeepalivetransmissioninterval=3600000",
            // All clients are one host here: lift the per-host and per-pool limits.
            "-maxconnectionsperhost=-1",
            "-maxpesperhost=-1",
            "-maxpesperpool=-1",
            "-loglevel=5",
            &format!("-logfile={}", logpath.display()),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start rspregistrar");
    let out = child.stdout.take().unwrap();
    let mut addr = None;
    let mut lines = BufReader::new(out).lines();
    for line in lines.by_ref().map_while(Result::ok) {
        if let Some(a) = line.strip_prefix("Listening: ASAP over TCP on ") {
            addr = Some(a.parse().unwrap());
            break;
        }
    }
    // Keep reading: a closed pipe would make the registrar's next line (ENRP) fail with EPIPE.
    std::thread::spawn(move || lines.for_each(drop));
    Registrar {
        child,
        addr: addr.expect("registrar address"),
        log: logpath,
    }
}

fn element(id: u32) -> PoolElement {
    let t = TransportAddress::new(
        TransportProtocol::Tcp,
        10000 + (id % 50000) as u16,
        vec!["127.0.0.1".parse().unwrap()],
    );
    let mut e = PoolElement::new(PeId(id), t, PolicyInfo::new(PolicyType::RoundRobin));
    e.registration_life = 3_600_000;
    e
}

fn encode(body: AsapBody) -> Vec<u8> {
    AsapMessage::new(body).to_bytes().unwrap()
}

/// Sends one request and reads one whole answer.
fn exchange(s: &mut TcpStream, request: &[u8], buf: &mut Vec<u8>) -> u8 {
    s.write_all(request).unwrap();
    let mut header = [0u8; 4];
    s.read_exact(&mut header).unwrap();
    let len = u16::from_be_bytes([header[2], header[3]]) as usize;
    buf.resize(len - 4, 0);
    s.read_exact(buf).unwrap();
    header[0]
}

/// Runs `clients` threads for `budget`, each calling `op` in a loop; returns total ops/s.
fn concurrent(
    addr: SocketAddr,
    clients: usize,
    budget: Duration,
    op: impl Fn(&mut TcpStream, usize, u64, &mut Vec<u8>) + Send + Sync + 'static,
) -> f64 {
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicU64::new(0));
    let barrier = Arc::new(std::sync::Barrier::new(clients + 1));
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let (op, stop, total, barrier) =
                (op.clone(), stop.clone(), total.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_nodelay(true).unwrap();
                let mut buf = Vec::new();
                barrier.wait();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    op(&mut s, c, n, &mut buf);
                    n += 1;
                }
                total.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    std::thread::sleep(budget);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    total.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// The wall-clock µs timestamp of the first log line after `from` containing `text`.
fn log_time(log: &std::path::Path, text: &str, from: u64) -> Option<u64> {
    let content = std::fs::read_to_string(log).ok()?;
    content.lines().find_map(|l| {
        let t = rsplib::logging::line_time(l)?;
        (t >= from && l.contains(text)).then_some(t)
    })
}

fn wall_micros() -> u64 {
    rsplib::logging::wall_micros()
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let budget = Duration::from_millis(
        std::env::var("BENCH_MS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(2000),
    );
    let connected: usize = std::env::var("BENCH_CONNECTED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let reg = start_registrar("rsplib-bench-registrar.log");
    let addr = reg.addr;

    // A pool of 3 PEs for the handle resolutions (held by one connection).
    let mut holder = TcpStream::connect(addr).unwrap();
    let mut buf = Vec::new();
    for id in 1..=3 {
        let r = encode(AsapBody::Registration {
            pool_handle: "BenchPool".into(),
            element: element(id),
        });
        assert_eq!(exchange(&mut holder, &r, &mut buf), 0x03);
    }
    let hr = encode(AsapBody::HandleResolution {
        pool_handle: "BenchPool".into(),
        items: Some(3),
    });

    println!(
        "rspregistrar over loopback TCP, one request outstanding per client ({} ms each)",
        budget.as_millis()
    );
    println!("{:<44} {:>8} {:>14}", "operation", "clients", "ops/s");
    for clients in [1, 10, 100] {
        let hr = hr.clone();
        let r = concurrent(addr, clients, budget, move |s, _, _, buf| {
            assert_eq!(exchange(s, &hr, buf), 0x06);
        });
        println!(
            "{:<44} {:>8} {:>14.0}",
            "handle resolution (3 of 3 PEs)", clients, r
        );
    }
    for (round, clients) in [1usize, 10, 100].into_iter().enumerate() {
        let r = concurrent(addr, clients, budget, move |s, c, n, buf| {
            let id = ((round as u32 + 1) << 28) | ((c as u32) << 20) | (n as u32 & 0xfffff);
            let pool = PoolHandle::new(format!("RegPool{}", c % 10).as_bytes());
            let m = encode(AsapBody::Registration {
                pool_handle: pool,
                element: element(id.max(4)),
            });
            assert_eq!(exchange(s, &m, buf), 0x03);
        });
        println!(
            "{:<44} {:>8} {:>14.0}",
            "registration (new PE each)", clients, r
        );
    }

    // Many connected PEs on the one registrar thread.
    let mut pes = Vec::with_capacity(connected);
    let t0 = Instant::now();
    for i in 0..connected {
        let mut s = match TcpStream::connect(addr) {
            Ok(s) => s,
            Err(e) => {
                println!("stopped at {i} connected PEs: {e}");
                break;
            }
        };
        let m = encode(AsapBody::Registration {
            pool_handle: PoolHandle::new(format!("ConnPool{}", i % 100).as_bytes()),
            element: element(0x0f00_0000 + i as u32),
        });
        assert_eq!(exchange(&mut s, &m, &mut buf), 0x03);
        pes.push(s);
    }
    let setup = t0.elapsed();
    let mut lat = Vec::new();
    let mut probe = TcpStream::connect(addr).unwrap();
    probe.set_nodelay(true).unwrap();
    let end = Instant::now() + budget;
    while Instant::now() < end {
        let t = Instant::now();
        assert_eq!(exchange(&mut probe, &hr, &mut buf), 0x06);
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    println!(
        "{} PEs connected (set up in {:.2} s): handle resolution latency median {:.0} µs, p99 {:.0} µs, {} answered",
        pes.len(),
        setup.as_secs_f64(),
        percentile(&mut lat, 0.5),
        percentile(&mut lat, 0.99),
        lat.len()
    );
    drop(pes);

    // kill -9 of a PE → removal.
    let mut kill_to_removal = Vec::new();
    let mut down_to_removal = Vec::new();
    for trial in 0..20u32 {
        let id = 0x0e00_0000 + trial;
        let mut child = Command::new(TOOL)
            .args([
                "pe",
                &format!("-registrar={addr}"),
                "-poolhandle=KillPool",
                &format!("-identifier=0x{id:x}"),
                "-port=4444",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains("registered"), "{line}");
        let before = wall_micros();
        child.kill().unwrap();
        child.wait().unwrap();
        let text = format!("removed PE 0x{id:08x}");
        let deadline = Instant::now() + Duration::from_secs(5);
        let removed = loop {
            if let Some(t) = log_time(&reg.log, &text, before) {
                break t;
            }
            assert!(Instant::now() < deadline, "PE {id:x} not removed");
            std::thread::sleep(Duration::from_millis(5));
        };
        kill_to_removal.push((removed - before) as f64);
        if let Some(down) = log_time(&reg.log, "closed by the peer", before) {
            down_to_removal.push(removed.saturating_sub(down) as f64);
        }
    }
    println!(
        "kill -9 -> PE removed: median {:.0} µs, max {:.0} µs (20 trials)",
        percentile(&mut kill_to_removal, 0.5),
        percentile(&mut kill_to_removal, 1.0)
    );
    if !down_to_removal.is_empty() {
        println!(
            "connection reported closed -> PE removed: median {:.0} µs, max {:.0} µs",
            percentile(&mut down_to_removal, 0.5),
            percentile(&mut down_to_removal, 1.0)
        );
    }
}
