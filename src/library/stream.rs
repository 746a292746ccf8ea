//! Streaming sessions that pool elements hand to each other (docs/handoff.md): the load
//! behind `rsptool handoff pe|pu`, used by the handoff tests and benchmark, and an example of
//! the Rust session API.
//!
//! Both sides number their bytes: byte `i` a PU sends is `pu_byte(i)`, byte `i` the PEs send
//! back is `pe_byte(i)`; a PE answers every message with as many bytes as it read, and after
//! each answer sends a cookie (PU bytes received, PE bytes sent) from which a receiver goes on.
//! Any byte lost, duplicated or reordered shows as a mismatch.
//!
//! A PE reads commands on stdin: `drain` (drain it, print the report, exit), `stats`, `quit`.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::session::{
    EnhancedPe, HandoffOptions, HandoffTarget, PeOptions, PuHandoff, ReadOutcome, Session,
    SessionOptions, WriteOutcome,
};
use super::{Library, LibraryConfig};
use crate::core::types::{
    PeId, PolicyInfo, PolicyType, PoolHandle, TransportAddress, TransportProtocol,
    TRANSPORT_USE_DATA_PLUS_CONTROL,
};
use crate::core::wire::PoolElement;
use crate::transport::Protocol;

/// A streaming pool element.
#[derive(Clone, Debug)]
pub struct StreamPe {
    pub registrar: SocketAddr,
    pub pool: String,
    /// PE identifier (0: random).
    pub id: u32,
    /// Hand a session off after every this many messages (0: never).
    pub handoff_every: u64,
    /// Ask the receiver first.
    pub offer: bool,
    /// Refuse offers while this many sessions are open.
    pub limit: Option<usize>,
    /// Hand off to this PE (`ID@ADDR:PORT`, ID hexadecimal) instead of one the policy chooses.
    pub handoff_to: Option<String>,
    /// Check the PU's numbering (off for failover measurements: what a killed PE had read
    /// after its last cookie is lost, so the numbering skips).
    pub check: bool,
    /// SCTP (to the registrar and for the sessions) instead of TCP.
    pub sctp: bool,
}

/// A pool user with streaming sessions.
#[derive(Clone, Debug)]
pub struct StreamPu {
    pub registrar: SocketAddr,
    pub pool: String,
    pub sessions: usize,
    pub messages: u64,
    /// Bytes per message.
    pub chunk: usize,
    /// Pause between messages.
    pub interval: Duration,
    /// Refuse every handoff.
    pub refuse: bool,
    /// Check the PEs' numbering and that every byte is answered (off for failover
    /// measurements: a failover after kill -9 loses what the dead PE had not covered by a
    /// cookie; writes that fail over are then skipped).
    pub check: bool,
    /// SCTP to the registrar instead of TCP (the sessions use what the PEs registered).
    pub sctp: bool,
}

/// Byte `i` of a PU's stream.
pub fn pu_byte(i: u64) -> u8 {
    (i % 251) as u8
}

/// Byte `i` of the PEs' answers.
pub fn pe_byte(i: u64) -> u8 {
    (i.wrapping_mul(7) % 241) as u8
}

fn library(registrar: SocketAddr, sctp: bool) -> Arc<Library> {
    let lib = Library::start(LibraryConfig {
        // A short cache: a donor finds receivers there (a dead one is reported and dropped).
        cache_timeout: 1_000_000,
        announce_groups: Vec::new(),
        transport: if sctp { Protocol::Sctp } else { Protocol::Tcp },
        ..LibraryConfig::default()
    })
    .expect("library");
    lib.add_static_registrar(vec![registrar]);
    Arc::new(lib)
}

/// `ID@ADDR:PORT` (ID hexadecimal) as a pool element.
pub fn parse_target(s: &str) -> Result<PoolElement, String> {
    let (id, addr) = s.split_once('@').ok_or("want ID@ADDR:PORT")?;
    let id = u32::from_str_radix(id.trim_start_matches("0x"), 16).map_err(|e| e.to_string())?;
    let addr: SocketAddr = addr.parse().map_err(|e| format!("{e}"))?;
    let mut t = TransportAddress::new(TransportProtocol::Tcp, addr.port(), vec![addr.ip()]);
    t.transport_use = TRANSPORT_USE_DATA_PLUS_CONTROL;
    Ok(PoolElement::new(
        PeId(id),
        t,
        PolicyInfo::new(PolicyType::RoundRobin),
    ))
}

/// One accepted session: verify, answer, cookie; hand off every `every` messages.
fn serve(mut s: Session, every: u64, check: bool, opts: &HandoffOptions, target: &HandoffTarget) {
    let (mut pu_received, mut pe_sent, mut messages) = (0u64, 0u64, 0u64);
    let mut buf = vec![0u8; 65536];
    loop {
        match s.read(Some(&mut buf), Some(Duration::from_secs(30)), true) {
            ReadOutcome::CookieEcho { len: 16 } => {
                pu_received = u64::from_be_bytes(buf[..8].try_into().unwrap());
                pe_sent = u64::from_be_bytes(buf[8..16].try_into().unwrap());
            }
            ReadOutcome::Data { len, .. } => {
                for (k, b) in buf[..len].iter().enumerate() {
                    if check && *b != pu_byte(pu_received + k as u64) {
                        println!("MISMATCH pe: PU byte {} is {b}", pu_received + k as u64);
                        std::process::exit(3);
                    }
                }
                pu_received += len as u64;
                let answer: Vec<u8> = (0..len as u64).map(|k| pe_byte(pe_sent + k)).collect();
                match s.write(&answer, 0x5555_5555, 0, Some(Duration::from_secs(10))) {
                    WriteOutcome::Sent(_) => pe_sent += len as u64,
                    _ => return,
                }
                let mut cookie = pu_received.to_be_bytes().to_vec();
                cookie.extend_from_slice(&pe_sent.to_be_bytes());
                s.send_cookie(&cookie, Some(Duration::from_secs(10)));
                messages += 1;
                if every > 0 && messages % every == 0 {
                    let _ = s.hand_off(target.clone(), opts);
                }
            }
            ReadOutcome::ControlRead | ReadOutcome::CookieEcho { .. } | ReadOutcome::Timeout => {}
            _ => return,
        }
    }
}

/// Runs a streaming PE until `drain` or `quit` on stdin (or its end); returns the exit code.
pub fn run_pe(cfg: StreamPe) -> i32 {
    let StreamPe {
        registrar,
        pool,
        id,
        handoff_every,
        offer,
        limit,
        handoff_to,
        check,
        sctp,
    } = cfg;
    let target = match handoff_to.as_deref().map(parse_target) {
        Some(Ok(t)) => HandoffTarget::Pe(t),
        Some(Err(e)) => {
            eprintln!("--handoff-to: {e}");
            return 2;
        }
        None => HandoffTarget::Pool(None),
    };
    let lib = library(registrar, sctp);
    let pe = match EnhancedPe::create(
        lib,
        PoolHandle::from(pool.as_str()),
        PeOptions {
            identifier: id,
            domain: libc::AF_INET,
            socket_type: libc::SOCK_STREAM,
            protocol: if sctp {
                TransportProtocol::Sctp
            } else {
                TransportProtocol::Tcp
            },
            local_port: 0,
            reregistration_interval: Duration::from_secs(5),
            registration_life_ms: 20_000,
            policy: PolicyInfo::new(PolicyType::RoundRobin),
            control_channel: true,
        },
    ) {
        Ok(pe) => Arc::new(pe),
        Err(e) => {
            eprintln!("pool element: {e}");
            return 1;
        }
    };
    pe.set_handoff_limit(limit);
    // SAFETY: a borrowed view of the PE's listening socket, which outlives this statement.
    let port =
        socket2::SockRef::from(&unsafe { std::os::fd::BorrowedFd::borrow_raw(pe.listener_fd()) })
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .map_or(0, |a| a.port());
    println!("ready id={:08x} port={port}", pe.identifier());
    let _ = std::io::stdout().flush();
    let opts = HandoffOptions {
        offer,
        ..HandoffOptions::default()
    };
    {
        let pe = pe.clone();
        let workers = Workers::new(move |s| serve(s, handoff_every, check, &opts, &target));
        std::thread::spawn(move || loop {
            match pe.accept() {
                Ok(s) => workers.run(s),
                Err(_) => return,
            }
        });
    }
    for line in std::io::stdin().lock().lines() {
        match line.as_deref().map(str::trim) {
            Ok("drain") => {
                let t = Instant::now();
                let report = pe.drain(&HandoffOptions {
                    timeout: Duration::from_secs(10),
                    ..HandoffOptions::default()
                });
                println!(
                    "drain handed_off={} closed={} sessions={} ms={}",
                    report.handed_off,
                    report.closed,
                    pe.sessions(),
                    t.elapsed().as_millis()
                );
                break;
            }
            Ok("stats") => println!("handed_off={} sessions={}", pe.handed_off(), pe.sessions()),
            Ok("quit") | Err(_) => break,
            _ => {}
        }
        let _ = std::io::stdout().flush();
    }
    println!("exit handed_off={}", pe.handed_off());
    let _ = std::io::stdout().flush();
    0
}

/// A thread per session, as classic PEs have, but reused: a session goes to an idle thread
/// if there is one (threads wait 10 s for the next session), else to a new one. Sessions
/// handed from PE to PE after every message would otherwise cost a thread start each.
struct Workers<F> {
    serve: Arc<F>,
    idle: Arc<parking_lot::Mutex<Vec<std::sync::mpsc::Sender<Session>>>>,
}

impl<F: Fn(Session) + Send + Sync + 'static> Workers<F> {
    fn new(serve: F) -> Self {
        Workers {
            serve: Arc::new(serve),
            idle: Arc::new(parking_lot::Mutex::new(Vec::new())),
        }
    }

    fn run(&self, mut session: Session) {
        while let Some(tx) = self.idle.lock().pop() {
            match tx.send(session) {
                Ok(()) => return,
                // That thread timed out meanwhile.
                Err(std::sync::mpsc::SendError(s)) => session = s,
            }
        }
        let (serve, idle) = (self.serve.clone(), self.idle.clone());
        std::thread::spawn(move || {
            let mut next = Some(session);
            while let Some(s) = next.take() {
                serve(s);
                let (tx, rx) = std::sync::mpsc::channel();
                idle.lock().push(tx);
                next = rx.recv_timeout(Duration::from_secs(10)).ok();
            }
        });
    }
}

/// Latencies (µs) of all sessions, for percentiles.
static LATENCIES: parking_lot::Mutex<Vec<u64>> = parking_lot::Mutex::new(Vec::new());
/// CLOCK_MONOTONIC (ns) of the first answer after each failover, for a benchmark that knows
/// when it killed the PE.
static FAILOVER_RESUMED: parking_lot::Mutex<Vec<u64>> = parking_lot::Mutex::new(Vec::new());
/// CLOCK_MONOTONIC (ns) when a read or write returned "failover" (the loss was noticed and the
/// failover run).
static FAILOVER_SEEN: parking_lot::Mutex<Vec<u64>> = parking_lot::Mutex::new(Vec::new());

/// CLOCK_MONOTONIC in nanoseconds (comparable between processes).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills our timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[allow(clippy::too_many_arguments)]
fn stream(
    lib: Arc<Library>,
    pool: &str,
    n: usize,
    messages: u64,
    chunk: usize,
    interval: Duration,
    refuse: bool,
    check: bool,
    total_handoffs: &AtomicU64,
) -> Result<String, String> {
    let opts = SessionOptions {
        connect_timeout: Duration::from_secs(2),
        handoff: PuHandoff {
            refuse,
            callback: None,
        },
        ..SessionOptions::default()
    };
    let mut s = Session::connect(lib, PoolHandle::from(pool), opts);
    let (mut sent, mut received) = (0u64, 0u64);
    let mut buf = vec![0u8; 65536];
    let (mut seen_handoffs, mut seen_failovers) = (0, 0);
    let mut pes = Vec::new();
    let window = 4 * chunk as u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut read_some = |s: &mut Session, received: &mut u64, block: bool| -> Result<(), String> {
        let timeout = if block {
            Duration::from_millis(200)
        } else {
            Duration::ZERO
        };
        match s.read(Some(&mut buf), Some(timeout), true) {
            ReadOutcome::Data { len, .. } => {
                for (k, b) in buf[..len].iter().enumerate() {
                    if check && *b != pe_byte(*received + k as u64) {
                        return Err(format!(
                            "session {n}: PE byte {} is {b}, want {}",
                            *received + k as u64,
                            pe_byte(*received + k as u64)
                        ));
                    }
                }
                *received += len as u64;
                if s.failovers() > seen_failovers {
                    seen_failovers = s.failovers();
                    FAILOVER_RESUMED.lock().push(monotonic_ns());
                }
                if s.handoffs() > seen_handoffs {
                    seen_handoffs = s.handoffs();
                    if let Some((_, commit)) = s.last_handoff_times() {
                        LATENCIES.lock().push(commit.elapsed().as_micros() as u64);
                    }
                }
                if pes.last() != Some(&s.pe_id()) {
                    pes.push(s.pe_id());
                }
                Ok(())
            }
            ReadOutcome::Failover => {
                FAILOVER_SEEN.lock().push(monotonic_ns());
                Ok(())
            }
            _ => Ok(()),
        }
    };
    while sent < messages * chunk as u64 {
        if Instant::now() > deadline {
            return Err(format!("session {n}: timed out at {sent} bytes sent"));
        }
        let data: Vec<u8> = (0..chunk as u64).map(|k| pu_byte(sent + k)).collect();
        let delivered = match s.write(&data, 0x5555_5555, 0, Some(Duration::from_secs(5))) {
            WriteOutcome::Sent(_) => {
                sent += chunk as u64;
                true
            }
            WriteOutcome::WouldBlock => false,
            WriteOutcome::Failover if !check => {
                FAILOVER_SEEN.lock().push(monotonic_ns());
                false
            }
            other => return Err(format!("session {n}: write {other:?}")),
        };
        while check && received + window < sent {
            if Instant::now() > deadline {
                return Err(format!("session {n}: no answers ({received}/{sent})"));
            }
            read_some(&mut s, &mut received, true)?;
        }
        // Unchecked (failover runs): one answer awaited per message, so that the first answer
        // after a failover is seen when it arrives.
        read_some(&mut s, &mut received, !check && delivered)?;
        if !interval.is_zero() {
            std::thread::sleep(interval);
        }
    }
    let settle = Instant::now() + Duration::from_secs(2);
    while received < sent {
        if !check && Instant::now() > settle {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("session {n}: missing answers ({received}/{sent})"));
        }
        read_some(&mut s, &mut received, true)?;
    }
    if check && received != sent {
        return Err(format!("session {n}: received {received} of {sent}"));
    }
    total_handoffs.fetch_add(s.handoffs(), Ordering::Relaxed);
    Ok(format!(
        "session {n} ok bytes={sent} handoffs={} failovers={} pe={:08x} pes={}",
        s.handoffs(),
        s.failovers(),
        s.pe_id(),
        pes.iter()
            .map(|p| format!("{p:08x}"))
            .collect::<Vec<_>>()
            .join(",")
    ))
}

/// Runs the PU's sessions to their end; prints one line per session and a total; returns
/// the exit code (1 if any session failed).
pub fn run_pu(cfg: StreamPu) -> i32 {
    let StreamPu {
        registrar,
        pool,
        sessions,
        messages,
        chunk,
        interval,
        refuse,
        check,
        sctp,
    } = cfg;
    let lib = library(registrar, sctp);
    let total = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let threads: Vec<_> = (0..sessions)
        .map(|n| {
            let (lib, pool, total) = (lib.clone(), pool.clone(), total.clone());
            std::thread::spawn(move || {
                stream(
                    lib, &pool, n, messages, chunk, interval, refuse, check, &total,
                )
            })
        })
        .collect();
    let mut failed = 0;
    for t in threads {
        match t.join().unwrap_or_else(|_| Err("panicked".into())) {
            Ok(line) => println!("{line}"),
            Err(e) => {
                println!("FAIL {e}");
                failed += 1;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let mut lat = LATENCIES.lock().clone();
    lat.sort_unstable();
    let pct = |p: f64| lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)));
    for (name, times) in [
        ("failover_seen_ns", FAILOVER_SEEN.lock().clone()),
        ("failover_resumed_ns", FAILOVER_RESUMED.lock().clone()),
    ] {
        if !times.is_empty() {
            let list: Vec<String> = times.iter().map(u64::to_string).collect();
            println!("{name}={}", list.join(","));
        }
    }
    println!(
        "total sessions={sessions} failed={failed} handoffs={} seconds={secs:.2} handoffs_per_s={:.0} latency_us_p50={} latency_us_p99={}",
        total.load(Ordering::Relaxed),
        total.load(Ordering::Relaxed) as f64 / secs,
        pct(0.5).copied().unwrap_or(0),
        pct(0.99).copied().unwrap_or(0),
    );
    i32::from(failed != 0)
}
