//! Contact-node descriptor passing, host-local (docs/contact-node.md): our registrar on
//! loopback TCP, worker PEs and a contact as processes (this binary run again in a role,
//! tests/common/contact.rs), the bench itself as the plain TCP clients. Rounds alternate two
//! measurements; the figures are medians over the rounds.
//!
//! * **Passing**: a contact passes one connected TCP socket `CONTACT_BENCH_PASSES` times
//!   (default 100 000) as fast as it can to one worker, which receives and closes each copy:
//!   passes per second each side sustains, and CPU time per pass of each (getrusage of the
//!   process, library thread included).
//! * **Latency**: `CONTACT_BENCH_CLIENTS` (default 2 000) clients one after another, each
//!   connected to the contact (accept, read the first line, `pass_socket_to_pool`) of a pool
//!   of two echo workers. Client-seen: from the client's write of its first line (which the
//!   contact reads) to the first byte of the worker's echo; and for comparison the same
//!   client's round trip (a line and the first byte of its echo) once the worker serves it
//!   (after one untimed round trip, which lets the worker's thread for it start). Median and
//!   p99.
//!
//! `cargo bench --bench contact`; `CONTACT_BENCH_ROUNDS` (default 3). Without `--bench`
//! (`cargo test --benches`) it runs once with tiny sizes: a smoke run, figures meaningless.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/common/contact.rs"]
mod roles;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{temp_dir, Registrar};
use roles::{spawn_contact, spawn_flood, spawn_worker};

const REGISTRAR: &str = env!("CARGO_BIN_EXE_rspregistrar");

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// `key=value` from a role's report line.
fn field(line: &str, key: &str) -> f64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
        .parse()
        .unwrap()
}

struct Passing {
    contact_rate: f64,
    contact_cpu_us: f64,
    worker_rate: f64,
    worker_cpu_us: f64,
    busy: f64,
}

fn passing(reg: SocketAddr, pool: &str, n: u64) -> Passing {
    // The flood's first pass is untimed (the resolution fills the cache); the worker's clock
    // starts at its first pass, so both time n passes.
    let (mut worker, _) = spawn_worker(reg, pool, &format!("count={}", n + 1));
    let mut flood = spawn_flood(reg, pool, n);
    let c = flood.wait_for("flood passes=", Duration::from_secs(120));
    let w = worker.wait_for("received ", Duration::from_secs(120));
    let _ = flood.child.wait();
    let _ = worker.child.wait();
    let passes = field(&c, "passes");
    let received = w.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap();
    Passing {
        contact_rate: passes / (field(&c, "wall_us") / 1e6),
        contact_cpu_us: field(&c, "cpu_us") / passes,
        worker_rate: received / (field(&w, "wall_us") / 1e6),
        worker_cpu_us: field(&w, "cpu_us") / received,
        busy: field(&c, "busy"),
    }
}

struct Latency {
    /// First echo after the first line, µs, sorted.
    first: Vec<f64>,
    /// A served round trip, µs, sorted.
    served: Vec<f64>,
}

/// Reads until `n` bytes have come; the time the first one came.
fn read_n(s: &mut TcpStream, n: usize) -> Instant {
    let mut buf = vec![0u8; n];
    let mut got = s.read(&mut buf).expect("echo");
    assert!(got > 0, "the worker closed the connection");
    let first = Instant::now();
    while got < n {
        let k = s.read(&mut buf[got..]).expect("echo");
        assert!(k > 0, "the worker closed the connection");
        got += k;
    }
    first
}

fn latency(reg: SocketAddr, pool: &str, clients: u64) -> Latency {
    let _w1 = spawn_worker(reg, pool, "echo");
    let _w2 = spawn_worker(reg, pool, "echo");
    let (_contact, addr) = spawn_contact(reg, pool, None);
    let mut lat = Latency {
        first: Vec::new(),
        served: Vec::new(),
    };
    // "<id %08x> " + the line.
    let echo_len = |line: &[u8]| 9 + line.len();
    for i in 0..clients + 20 {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let t0 = Instant::now();
        s.write_all(b"first line\n").unwrap();
        let t1 = read_n(&mut s, echo_len(b"first line\n"));
        // One untimed round trip: the worker's thread for this client is running then.
        s.write_all(b"warm\n").unwrap();
        read_n(&mut s, echo_len(b"warm\n"));
        let t2 = Instant::now();
        s.write_all(b"served\n").unwrap();
        let t3 = read_n(&mut s, echo_len(b"served\n"));
        // The first 20 warm up (caches, worker threads).
        if i >= 20 {
            lat.first.push((t1 - t0).as_secs_f64() * 1e6);
            lat.served.push((t3 - t2).as_secs_f64() * 1e6);
        }
    }
    lat.first.sort_by(f64::total_cmp);
    lat.served.sort_by(f64::total_cmp);
    lat
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    pct(&v, 0.5)
}

fn main() {
    roles::run_role_if_child();
    let full = std::env::args().any(|a| a == "--bench");
    let (passes, clients, rounds) = if full {
        (
            knob("CONTACT_BENCH_PASSES", 100_000),
            knob("CONTACT_BENCH_CLIENTS", 2_000),
            knob("CONTACT_BENCH_ROUNDS", 3),
        )
    } else {
        (200, 30, 1)
    };
    let dir = temp_dir("contact-bench");
    let reg = Registrar::start(
        REGISTRAR,
        &dir.join("registrar.log"),
        &["-loglevel=1", "-maxhresitems=8"],
    );
    println!(
        "contact-node descriptor passing, host-local: {passes} passes, {clients} clients per \
         round, {rounds} round(s) alternating{}",
        if full { "" } else { " (smoke run)" }
    );
    let mut pass_runs = Vec::new();
    let mut lat_runs = Vec::new();
    for r in 0..rounds {
        let p = passing(reg.asap, &format!("BenchPass{r}"), passes);
        println!(
            "round {}: passing: contact {:.0} passes/s, {:.1} µs CPU/pass ({} busy retries); \
             worker {:.0} receives/s, {:.1} µs CPU/pass",
            r + 1,
            p.contact_rate,
            p.contact_cpu_us,
            p.busy,
            p.worker_rate,
            p.worker_cpu_us
        );
        pass_runs.push(p);
        let l = latency(reg.asap, &format!("BenchLatency{r}"), clients);
        println!(
            "round {}: latency: first echo after the first line median {:.1} µs, p99 {:.1} µs; \
             served round trip median {:.1} µs, p99 {:.1} µs",
            r + 1,
            pct(&l.first, 0.5),
            pct(&l.first, 0.99),
            pct(&l.served, 0.5),
            pct(&l.served, 0.99)
        );
        lat_runs.push(l);
    }
    let m = |f: &dyn Fn(&Passing) -> f64| median(pass_runs.iter().map(f).collect());
    let ml = |f: &dyn Fn(&Latency) -> f64| median(lat_runs.iter().map(f).collect());
    println!("medians over {rounds} round(s):");
    println!(
        "  contact: {:.0} passes/s, {:.1} µs CPU per pass",
        m(&|p| p.contact_rate),
        m(&|p| p.contact_cpu_us)
    );
    println!(
        "  worker:  {:.0} receives/s, {:.1} µs CPU per pass",
        m(&|p| p.worker_rate),
        m(&|p| p.worker_cpu_us)
    );
    println!(
        "  client:  first echo after its first line median {:.1} µs, p99 {:.1} µs",
        ml(&|l| pct(&l.first, 0.5)),
        ml(&|l| pct(&l.first, 0.99))
    );
    println!(
        "           served round trip median {:.1} µs, p99 {:.1} µs",
        ml(&|l| pct(&l.served, 0.5)),
        ml(&|l| pct(&l.served, 0.99))
    );
}
