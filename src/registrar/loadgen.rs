//! `rsptool bench`: a load generator for a registrar. Pool elements register and answer
//! keep-alives while pool users send handle resolutions back to back (`depth` outstanding
//! each), over TCP or SCTP; it reports resolutions per second (each second and in all), latency
//! percentiles and, given the registrar's pid, the registrar's CPU time per resolution.
//!
//! How the PUs wait ([`PuWait`]) changes what the registrar's CPU time holds on one host: an
//! answer to a PU asleep in its receive makes the registrar's send wake it (on loopback, the
//! PU's TCP receive runs in that send too). PUs on other hosts cost the registrar no wake-up;
//! [`PuWait::Spin`] stands in for them.
//! [`supervise`]: many PEs per connection under keep-alive supervision (`--pes-per-connection`).

pub mod supervise;

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::core::types::{
    PeId, PolicyInfo, PolicyType, PoolHandle, TransportAddress, TransportProtocol,
    TRANSPORT_USE_DATA_ONLY,
};
use crate::core::wire::{cause, AsapBody, AsapMessage, OperationError, PoolElement};
use crate::transport::{Association, Protocol, PPID_ASAP};

/// What to run.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    pub registrar: Vec<SocketAddr>,
    pub protocol: Protocol,
    pub pool: PoolHandle,
    /// Pool users, each on its own connection and thread.
    pub pus: usize,
    /// Pool elements, each on its own connection and thread.
    pub pes: usize,
    pub duration: Duration,
    /// PEs asked for per resolution (`None`: the registrar's default).
    pub items: Option<u32>,
    /// Resolutions each PU keeps outstanding on its connection (at least 1).
    pub depth: usize,
    /// The registrar's process id, for its CPU time (Linux `/proc`).
    pub registrar_pid: Option<u32>,
    /// How the PUs wait for their answers.
    pub pu_wait: PuWait,
}

/// How the PUs wait for their answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PuWait {
    /// A thread per PU, asleep in its receive until the answer comes.
    #[default]
    Threads,
    /// All PUs on one thread with one epoll, asleep while none has an answer.
    Loop,
    /// All PUs on one thread that polls without ever sleeping, so no answer has a thread to
    /// wake (as for PUs on other hosts). It takes a core of its own.
    Spin,
}

/// What was measured.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Resolutions answered with PEs, each second.
    pub per_second: Vec<u64>,
    pub resolutions: u64,
    /// Answers without PEs, errors, lost connections.
    pub failures: u64,
    pub elapsed: Duration,
    /// Latencies in µs (sorted).
    pub latencies: Vec<u32>,
    /// Registrar CPU time (user + system) during the measurement.
    pub registrar_cpu: Option<Duration>,
    /// The part of it spent in the kernel (system time).
    pub registrar_sys: Option<Duration>,
    pub pes_registered: usize,
}

impl LoadReport {
    /// Resolutions per second over the whole run.
    pub fn rate(&self) -> f64 {
        self.resolutions as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The latency at quantile `q` (0..=1) in µs.
    pub fn percentile(&self, q: f64) -> u32 {
        if self.latencies.is_empty() {
            return 0;
        }
        let i = ((self.latencies.len() - 1) as f64 * q).round() as usize;
        self.latencies[i]
    }

    /// The report as text, one figure per line.
    pub fn format(&self) -> String {
        let mut s = String::new();
        for (i, n) in self.per_second.iter().enumerate() {
            let _ = writeln!(s, "second {}: {n} resolutions", i + 1);
        }
        let _ = writeln!(
            s,
            "PEs registered: {}; resolutions: {} in {:.2} s = {:.0}/s; failures: {}",
            self.pes_registered,
            self.resolutions,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.failures
        );
        let _ = writeln!(
            s,
            "latency: p50 {} µs, p90 {} µs, p99 {} µs, max {} µs",
            self.percentile(0.5),
            self.percentile(0.9),
            self.percentile(0.99),
            self.latencies.last().copied().unwrap_or(0)
        );
        if let Some(cpu) = self.registrar_cpu {
            let per = cpu.as_secs_f64() * 1e6 / (self.resolutions.max(1) as f64);
            let sys = self.registrar_sys.unwrap_or_default().as_secs_f64();
            let _ = writeln!(
                s,
                "registrar CPU: {:.2} s ({:.0} % of it in the kernel) = {per:.2} µs per \
                 resolution = {:.0} resolutions per CPU-second",
                cpu.as_secs_f64(),
                100.0 * sys / cpu.as_secs_f64().max(1e-9),
                1e6 / per.max(1e-9)
            );
        }
        s
    }
}

/// User + system CPU time of a process (`/proc/PID/stat`, clock ticks).
pub fn process_cpu(pid: u32) -> Option<Duration> {
    process_cpu_split(pid).map(|(user, sys)| user + sys)
}

/// User and system CPU time of a process (`/proc/PID/stat`, clock ticks).
pub fn process_cpu_split(pid: u32) -> Option<(Duration, Duration)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: fields follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 of the line, utime 14 and stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let time = |t: u64| Duration::from_micros(t * 1_000_000 / ticks);
    Some((time(utime), time(stime)))
}

fn connect(cfg: &LoadConfig) -> Result<Association, String> {
    Association::connect(
        cfg.protocol,
        &cfg.registrar,
        Duration::from_secs(5),
        PPID_ASAP,
    )
    .map_err(|e| format!("cannot connect to {:?}: {e}", cfg.registrar))
}

fn send(a: &mut Association, body: AsapBody) -> Result<(), String> {
    let bytes = AsapMessage::new(body)
        .to_bytes()
        .map_err(|e| e.to_string())?;
    a.send(PPID_ASAP, &bytes).map_err(|e| e.to_string())
}

fn receive(a: &mut Association, timeout: Duration) -> Option<AsapBody> {
    match a.recv(Some(timeout)) {
        Ok(Some((_, data))) => AsapMessage::decode(&data).ok().map(|d| d.message.body),
        _ => None,
    }
}

/// Why the registrar refused a registration, with a hint where the cause has a usual one.
fn refusal_text(e: &OperationError) -> String {
    let hint = if e.code() == cause::RSPLIB_NO_USABLE_USER_ADDRESSES {
        " (a registrar on loopback needs -minaddressscope=loopback to accept loopback PEs)"
    } else {
        ""
    };
    format!("{} (cause 0x{:04x}){hint}", cause::name(e.code()), e.code())
}

/// The PEs' registrations so far: registered, refused (and the first refusal's reason).
#[derive(Default)]
struct Registrations {
    ready: AtomicU64,
    refused: AtomicU64,
    first_refusal: Mutex<Option<String>>,
}

/// PE `i`: registers, answers keep-alives until `stop`, deregisters. True if it registered.
fn run_pe(cfg: &LoadConfig, i: usize, stop: &AtomicBool, regs: &Registrations) -> bool {
    let Ok(mut a) = connect(cfg) else {
        return false;
    };
    let id = PeId(0x4c00_0000 | (std::process::id() & 0xffff) << 8 | (i as u32 & 0xff));
    let ip = match a.local_addr() {
        Ok(l) => l.ip(),
        Err(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    let mut user = TransportAddress::new(TransportProtocol::Tcp, 20000 + i as u16, vec![ip]);
    user.transport_use = TRANSPORT_USE_DATA_ONLY;
    let mut element = PoolElement::new(id, user, PolicyInfo::new(PolicyType::RoundRobin));
    element.registration_life = 60_000;
    let registration = AsapBody::Registration {
        pool_handle: cfg.pool.clone(),
        element,
    };
    if send(&mut a, registration).is_err() {
        return false;
    }
    let mut registered = false;
    while !stop.load(Ordering::Relaxed) {
        match receive(&mut a, Duration::from_millis(100)) {
            Some(AsapBody::RegistrationResponse { error: None, .. }) if !registered => {
                registered = true;
                regs.ready.fetch_add(1, Ordering::Relaxed);
            }
            Some(AsapBody::RegistrationResponse { error: Some(e), .. }) if !registered => {
                if let Ok(mut first) = regs.first_refusal.lock() {
                    first.get_or_insert_with(|| refusal_text(&e));
                }
                regs.refused.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            Some(AsapBody::EndpointKeepAlive { pool_handle, .. }) => {
                let _ = send(
                    &mut a,
                    AsapBody::EndpointKeepAliveAck {
                        pool_handle,
                        pe_id: id,
                    },
                );
            }
            _ => {}
        }
    }
    let _ = send(
        &mut a,
        AsapBody::Deregistration {
            pool_handle: cfg.pool.clone(),
            pe_id: id,
        },
    );
    let _ = receive(&mut a, Duration::from_millis(500));
    registered
}

/// The request every PU sends.
fn resolution_request(cfg: &LoadConfig) -> Vec<u8> {
    AsapMessage::new(AsapBody::HandleResolution {
        pool_handle: cfg.pool.clone(),
        items: cfg.items,
    })
    .to_bytes()
    .unwrap_or_default()
}

/// True for a resolution's answer with PEs in it.
fn is_answer(body: &AsapBody) -> bool {
    matches!(
        body,
        AsapBody::HandleResolutionResponse { elements, error: None, .. } if !elements.is_empty()
    )
}

/// How long a PU waits for an answer before it counts a failure and gives up.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// One PU: resolutions back to back until `stop`, `cfg.depth` of them outstanding (answers
/// come in order on one connection); latencies in µs, failures.
fn run_pu(cfg: &LoadConfig, stop: &AtomicBool, done: &AtomicU64) -> (Vec<u32>, u64) {
    let mut lat = Vec::new();
    let mut failures = 0;
    let Ok(mut a) = connect(cfg) else {
        return (lat, 1);
    };
    let request = resolution_request(cfg);
    let mut sent = VecDeque::with_capacity(cfg.depth.max(1));
    while !stop.load(Ordering::Relaxed) {
        while sent.len() < cfg.depth.max(1) {
            sent.push_back(Instant::now());
            if a.send(PPID_ASAP, &request).is_err() {
                failures += 1;
                return (lat, failures);
            }
        }
        let answer = receive(&mut a, ANSWER_TIMEOUT);
        let t = sent.pop_front().unwrap_or_else(Instant::now);
        match answer {
            Some(body) if is_answer(&body) => {
                lat.push(micros(t.elapsed()));
                done.fetch_add(1, Ordering::Relaxed);
            }
            Some(_) => failures += 1,
            None => {
                failures += 1;
                break;
            }
        }
    }
    (lat, failures)
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

/// One PU of [`run_pus_in_one_thread`]: its connection and when its outstanding requests
/// went out.
struct LoopPu {
    a: Association,
    sent: VecDeque<Instant>,
    answered: u64,
}

/// All PUs on this thread (`PuWait::Loop` or `PuWait::Spin`): each answer read is followed at
/// once by the PU's next request. Latencies in µs, failures (a PU that fails is dropped).
fn run_pus_in_one_thread(
    cfg: &LoadConfig,
    spin: bool,
    stop: &AtomicBool,
    done: &AtomicU64,
) -> (Vec<u32>, u64) {
    let mut lat = Vec::new();
    let mut failures = 0u64;
    let Ok(mut poll) = Poll::new() else {
        return (lat, cfg.pus as u64);
    };
    let request = resolution_request(cfg);
    let depth = cfg.depth.max(1);
    let mut pus: Vec<Option<LoopPu>> = Vec::with_capacity(cfg.pus);
    for i in 0..cfg.pus {
        let pu = connect(cfg).ok().and_then(|mut a| {
            let fd = a.raw_fd();
            let watched =
                poll.registry()
                    .register(&mut SourceFd(&fd), Token(i), Interest::READABLE);
            let mut sent = VecDeque::with_capacity(depth);
            for _ in 0..depth {
                sent.push_back(Instant::now());
                a.send(PPID_ASAP, &request).ok()?;
            }
            watched.ok().map(|_| LoopPu {
                a,
                sent,
                answered: 0,
            })
        });
        failures += u64::from(pu.is_none());
        pus.push(pu);
    }
    let timeout = if spin {
        Duration::ZERO
    } else {
        Duration::from_millis(50)
    };
    let mut events = Events::with_capacity(cfg.pus.clamp(16, 1024));
    let mut next_check = Instant::now() + Duration::from_secs(1);
    while !stop.load(Ordering::Relaxed) {
        if let Err(e) = poll.poll(&mut events, Some(timeout)) {
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            failures += 1;
            break;
        }
        for event in events.iter() {
            let i = event.token().0;
            let Some(pu) = pus.get_mut(i).and_then(Option::as_mut) else {
                continue;
            };
            // Edge-triggered: read until the socket has nothing more.
            let alive = loop {
                match pu.a.recv(Some(Duration::ZERO)) {
                    Ok(Some((_, data))) => {
                        let t = pu.sent.pop_front().unwrap_or_else(Instant::now);
                        match AsapMessage::decode(&data) {
                            Ok(d) if is_answer(&d.message.body) => {
                                pu.answered += 1;
                                lat.push(micros(t.elapsed()));
                                done.fetch_add(1, Ordering::Relaxed);
                            }
                            _ => failures += 1,
                        }
                        pu.sent.push_back(Instant::now());
                        if pu.a.send(PPID_ASAP, &request).is_err() {
                            break false;
                        }
                    }
                    Ok(None) => break true,
                    Err(_) => break false,
                }
            };
            if !alive {
                failures += 1;
                pus[i] = None;
            }
        }
        let now = Instant::now();
        if now >= next_check {
            next_check = now + Duration::from_secs(1);
            for pu in pus.iter_mut() {
                let stalled = pu.as_ref().is_some_and(|p| {
                    p.sent
                        .front()
                        .is_some_and(|t| now.duration_since(*t) > ANSWER_TIMEOUT)
                });
                if stalled {
                    failures += 1;
                    *pu = None;
                }
            }
        }
    }
    // A PU that never had an answer failed, even if it did not wait long enough to say so.
    failures += pus.iter().flatten().filter(|p| p.answered == 0).count() as u64;
    (lat, failures)
}

/// Runs the load: PEs first (until all registered or 5 s), then the PUs for the duration.
pub fn run(cfg: &LoadConfig) -> Result<LoadReport, String> {
    // Fail early and clearly if the registrar cannot be reached at all.
    drop(connect(cfg)?);
    let stop_pes = Arc::new(AtomicBool::new(false));
    let regs = Arc::new(Registrations::default());
    let mut pe_threads = Vec::new();
    for i in 0..cfg.pes {
        let (cfg, stop, regs) = (cfg.clone(), stop_pes.clone(), regs.clone());
        pe_threads.push(std::thread::spawn(move || run_pe(&cfg, i, &stop, &regs)));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let settled = || regs.ready.load(Ordering::Relaxed) + regs.refused.load(Ordering::Relaxed);
    while (settled() as usize) < cfg.pes && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let refusal = regs.first_refusal.lock().ok().and_then(|r| r.clone());
    if let Some(why) = refusal {
        let refused = regs.refused.load(Ordering::Relaxed);
        if regs.ready.load(Ordering::Relaxed) == 0 {
            stop_pes.store(true, Ordering::Relaxed);
            for t in pe_threads {
                let _ = t.join();
            }
            return Err(format!(
                "no PE registered: the registrar refused {refused} of {}: {why}",
                cfg.pes
            ));
        }
        eprintln!("rsptool bench: the registrar refused {refused} PE registration(s): {why}");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let results = Arc::new(Mutex::new(Vec::new()));
    let cpu_before = cfg.registrar_pid.and_then(process_cpu_split);
    let start = Instant::now();
    let mut pu_threads = Vec::new();
    let drivers = match cfg.pu_wait {
        PuWait::Threads => cfg.pus,
        PuWait::Loop | PuWait::Spin => 1,
    };
    for _ in 0..drivers {
        let (cfg, stop, done, results) = (cfg.clone(), stop.clone(), done.clone(), results.clone());
        pu_threads.push(std::thread::spawn(move || {
            let r = match cfg.pu_wait {
                PuWait::Threads => run_pu(&cfg, &stop, &done),
                PuWait::Loop => run_pus_in_one_thread(&cfg, false, &stop, &done),
                PuWait::Spin => run_pus_in_one_thread(&cfg, true, &stop, &done),
            };
            if let Ok(mut v) = results.lock() {
                v.push(r);
            }
        }));
    }
    let mut report = LoadReport {
        pes_registered: regs.ready.load(Ordering::Relaxed) as usize,
        ..LoadReport::default()
    };
    let mut last = 0;
    let mut next = start + Duration::from_secs(1);
    while start.elapsed() < cfg.duration {
        let now = Instant::now();
        if now >= next {
            let n = done.load(Ordering::Relaxed);
            report.per_second.push(n - last);
            last = n;
            next += Duration::from_secs(1);
        }
        std::thread::sleep(
            Duration::from_millis(5).min(cfg.duration.saturating_sub(start.elapsed())),
        );
    }
    stop.store(true, Ordering::Relaxed);
    report.elapsed = start.elapsed();
    let cpu_after = cfg.registrar_pid.and_then(process_cpu_split);
    for t in pu_threads {
        let _ = t.join();
    }
    stop_pes.store(true, Ordering::Relaxed);
    for t in pe_threads {
        let _ = t.join();
    }
    let results = std::mem::take(&mut *results.lock().map_err(|_| "a PU thread failed")?);
    for (lat, failures) in results {
        report.resolutions += lat.len() as u64;
        report.failures += failures;
        report.latencies.extend(lat);
    }
    report.latencies.sort_unstable();
    if let (Some((u0, s0)), Some((u1, s1))) = (cpu_before, cpu_after) {
        let sys = s1.saturating_sub(s0);
        report.registrar_cpu = Some(u1.saturating_sub(u0) + sys);
        report.registrar_sys = Some(sys);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_own_cpu_time() {
        let r = LoadReport {
            latencies: (1..=100).collect(),
            resolutions: 100,
            elapsed: Duration::from_secs(2),
            ..LoadReport::default()
        };
        assert_eq!(r.percentile(0.5), 51);
        assert_eq!(r.percentile(0.99), 99);
        assert_eq!(r.rate(), 50.0);
        // Our own process has used some CPU by now; a missing one has none.
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(30) {
            std::hint::black_box(0u64);
        }
        assert!(process_cpu(std::process::id()).is_some());
        assert!(process_cpu(u32::MAX).is_none());
    }
}
