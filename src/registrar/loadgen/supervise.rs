//! `rsptool bench --pes-per-connection N`: many PEs supervised (issue #18). Connections, each
//! registering N PEs as a host with many PEs does, driven by a few threads with non-blocking
//! sockets (mio/epoll), answering every Endpoint Keep-Alive with its Ack. Reports PEs
//! registered, registration time, keep-alives answered per second, PEs lost (connections the
//! registrar closed, keep-alives for PEs we do not have, and at the end the PEs missing from the
//! registrar's handle table, read over ENRP), and the registrar's CPU and memory.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::process_cpu;
use crate::core::types::{
    PeId, PolicyInfo, PolicyType, PoolHandle, TransportAddress, TransportProtocol,
    TRANSPORT_USE_DATA_ONLY,
};
use crate::core::wire::{AsapBody, AsapMessage, PoolElement};
use crate::transport::framing::Deframer;
use crate::transport::Protocol;

/// What to run.
#[derive(Clone, Debug)]
pub struct SuperviseConfig {
    pub registrar: SocketAddr,
    /// Registrars a connection re-registers its PEs at when its registrar closes it (a PE that
    /// hunts for a new home after its registrar died); connection `c` tries them in turn from
    /// `fallback[c % len]`. Empty: a closed connection and its PEs are lost.
    pub fallback: Vec<SocketAddr>,
    /// The registrar's ENRP endpoint: at the end its handle table is compared with our PEs.
    pub enrp: Option<SocketAddr>,
    /// Pool handle; with `pools` > 1, PE i goes into pool "<pool>-<i mod pools>".
    pub pool: String,
    pub pools: usize,
    pub connections: usize,
    pub pes_per_connection: usize,
    /// Source addresses, used in turn (stay under per-host limits, spread ephemeral ports).
    pub sources: Vec<IpAddr>,
    /// Driving threads (each owns every `threads`-th connection).
    pub threads: usize,
    /// Connections registering at once (all threads together).
    pub in_flight: usize,
    /// How long the keep-alives are answered once every PE is registered.
    pub duration: Duration,
    /// Give up registering after this long.
    pub register_timeout: Duration,
    /// Registration life of the PEs (ms): longer than the run, the PEs do not re-register.
    pub life_ms: u32,
    pub registrar_pid: Option<u32>,
    /// Progress lines on stderr every this often (None: quiet).
    pub progress: Option<Duration>,
}

/// Figures of a registrar process: CPU (user + system) and memory.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcSample {
    pub cpu: Duration,
    /// VmRSS and VmHWM in KiB.
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

/// CPU time and memory of a process (Linux `/proc`).
pub fn proc_sample(pid: u32) -> Option<ProcSample> {
    let cpu = process_cpu(pid)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Some(ProcSample {
        cpu,
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
    })
}

/// What was measured.
#[derive(Debug, Default)]
pub struct SuperviseReport {
    pub pes_wanted: usize,
    pub pes_registered: u64,
    pub connections_registered: u64,
    pub registration_rejects: u64,
    pub registration_time: Duration,
    pub steady_time: Duration,
    /// Keep-alives answered during the steady phase, and in all.
    pub keepalives_steady: u64,
    pub keepalives_total: u64,
    /// Keep-alives naming a PE this connection did not register.
    pub unknown_keepalives: u64,
    /// Connections that ended (the registrar closed them or they failed) and their PEs.
    pub connections_lost: u64,
    /// Connections whose registrar closed them and that registered all their PEs again at a
    /// fallback registrar.
    pub connections_rehomed: u64,
    pub pes_on_lost_connections: u64,
    /// PEs registered here but missing from the registrar's handle table at the end
    /// (`None`: not checked).
    pub pes_missing: Option<u64>,
    pub pes_in_table: Option<u64>,
    pub table_check_time: Option<Duration>,
    /// Longest time between two keep-alives of one PE (after its first).
    pub max_keepalive_gap: Duration,
    /// Gaps between two keep-alives of a PE: 50 %, 99 %, 99.9 % are below these (100 ms
    /// steps).
    pub keepalive_gap_quantiles: [Duration; 3],
    /// Registrar figures at start, once all are registered, at the end of the steady phase.
    pub registrar: Option<[ProcSample; 3]>,
    /// This generator's CPU time over the run.
    pub generator_cpu: Option<Duration>,
}

impl SuperviseReport {
    /// PEs lost: missing from the handle table if it was read, else the PEs of lost
    /// connections; keep-alives for unknown PEs count too.
    pub fn pes_lost(&self) -> u64 {
        self.pes_missing.unwrap_or(self.pes_on_lost_connections) + self.unknown_keepalives
    }

    pub fn format(&self) -> String {
        let mut s = String::new();
        let reg = self.registration_time.as_secs_f64();
        let steady = self.steady_time.as_secs_f64();
        let _ = writeln!(
            s,
            "PEs registered: {} of {} over {} connections in {reg:.1} s ({:.0} PEs/s); rejected: {}",
            self.pes_registered,
            self.pes_wanted,
            self.connections_registered,
            self.pes_registered as f64 / reg.max(1e-9),
            self.registration_rejects
        );
        let _ = writeln!(
            s,
            "keep-alives answered: {} in {steady:.1} s = {:.0}/s (all: {}); gap between two \
             keep-alives of a PE: 50 % ≤ {:.1} s, 99 % ≤ {:.1} s, 99.9 % ≤ {:.1} s, max {:.2} s",
            self.keepalives_steady,
            self.keepalives_steady as f64 / steady.max(1e-9),
            self.keepalives_total,
            self.keepalive_gap_quantiles[0].as_secs_f64(),
            self.keepalive_gap_quantiles[1].as_secs_f64(),
            self.keepalive_gap_quantiles[2].as_secs_f64(),
            self.max_keepalive_gap.as_secs_f64()
        );
        let table = match (self.pes_missing, self.pes_in_table, self.table_check_time) {
            (Some(m), Some(n), Some(t)) => format!(
                "{m} missing from the registrar's handle table ({n} PEs there, read in {:.1} s)",
                t.as_secs_f64()
            ),
            _ => "handle table not checked".into(),
        };
        let _ = writeln!(
            s,
            "PEs lost: {} ({table}; connections lost: {} with {} PEs; keep-alives for unknown \
             PEs: {})",
            self.pes_lost(),
            self.connections_lost,
            self.pes_on_lost_connections,
            self.unknown_keepalives
        );
        if self.connections_rehomed > 0 {
            let _ = writeln!(
                s,
                "connections re-registered at a fallback registrar: {}",
                self.connections_rehomed
            );
        }
        if let Some([a, b, c]) = self.registrar {
            let cores = |from: &ProcSample, to: &ProcSample, secs: f64| {
                to.cpu.saturating_sub(from.cpu).as_secs_f64() / secs.max(1e-9)
            };
            let _ = writeln!(
                s,
                "registrar CPU: {:.1} s registering = {:.2} cores; {:.1} s steady = {:.2} cores",
                b.cpu.saturating_sub(a.cpu).as_secs_f64(),
                cores(&a, &b, reg),
                c.cpu.saturating_sub(b.cpu).as_secs_f64(),
                cores(&b, &c, steady)
            );
            let _ = writeln!(
                s,
                "registrar memory: VmRSS {:.0} MiB at start, {:.0} MiB registered, {:.0} MiB at \
                 the end; VmHWM {:.0} MiB",
                a.rss_kib as f64 / 1024.0,
                b.rss_kib as f64 / 1024.0,
                c.rss_kib as f64 / 1024.0,
                c.hwm_kib as f64 / 1024.0
            );
        }
        if let Some(cpu) = self.generator_cpu {
            let _ = writeln!(
                s,
                "generator CPU: {:.1} s = {:.2} cores over {:.1} s",
                cpu.as_secs_f64(),
                cpu.as_secs_f64() / (reg + steady).max(1e-9),
                reg + steady
            );
        }
        s
    }
}

struct Shared {
    registered: AtomicU64,
    conns_registered: AtomicU64,
    rejects: AtomicU64,
    keepalives: AtomicU64,
    unknown: AtomicU64,
    conns_lost: AtomicU64,
    pes_lost: AtomicU64,
    conns_rehomed: AtomicU64,
    /// PEs registered again at a fallback registrar (all connections).
    pes_rehomed: AtomicU64,
    max_gap_ms: AtomicU64,
    /// Gaps between two keep-alives of a PE, in 100 ms buckets (the last: 30 s and more).
    gaps: Vec<AtomicU64>,
    /// Connections whose registration has started (all threads; bounded by in_flight).
    started: AtomicU64,
}

const GAP_BUCKET_MS: u64 = 100;
const GAP_BUCKETS: usize = 300;

impl Shared {
    fn new() -> Shared {
        Shared {
            registered: AtomicU64::new(0),
            conns_registered: AtomicU64::new(0),
            rejects: AtomicU64::new(0),
            keepalives: AtomicU64::new(0),
            unknown: AtomicU64::new(0),
            conns_lost: AtomicU64::new(0),
            pes_lost: AtomicU64::new(0),
            conns_rehomed: AtomicU64::new(0),
            pes_rehomed: AtomicU64::new(0),
            max_gap_ms: AtomicU64::new(0),
            gaps: (0..GAP_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            started: AtomicU64::new(0),
        }
    }

    /// The gap below which a fraction `q` of all gaps lie (bucket upper bound).
    fn gap_quantile(&self, q: f64) -> Duration {
        let counts: Vec<u64> = self
            .gaps
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        let want = (total as f64 * q).ceil() as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= want.max(1) {
                return Duration::from_millis((i as u64 + 1) * GAP_BUCKET_MS);
            }
        }
        Duration::ZERO
    }
}

#[derive(PartialEq, Eq)]
enum State {
    Idle,
    Connecting,
    Registering,
    Registered,
    Dead,
}

struct Conn {
    index: usize,
    stream: Option<TcpStream>,
    source: IpAddr,
    state: State,
    deframer: Deframer,
    out: Vec<u8>,
    sent: usize,
    ok: usize,
    /// Per PE: ms (since start) of its last keep-alive, 0 = none yet.
    last_keepalive: Vec<u32>,
    /// Fallback registrars tried so far (the next is `fallback[(index + tries) % len]`).
    tries: usize,
}

/// PE `j` of connection `c`: its id (unique in the run) and pool.
fn pe_id(cfg: &SuperviseConfig, c: usize, j: usize) -> PeId {
    PeId((c * cfg.pes_per_connection + j + 1) as u32)
}

fn pool_of(cfg: &SuperviseConfig, c: usize, j: usize) -> PoolHandle {
    if cfg.pools <= 1 {
        PoolHandle::new(cfg.pool.as_bytes())
    } else {
        let i = (c * cfg.pes_per_connection + j) % cfg.pools;
        PoolHandle::new(format!("{}-{i}", cfg.pool).as_bytes())
    }
}

fn open(registrar: SocketAddr, source: IpAddr) -> io::Result<TcpStream> {
    let domain = socket2::Domain::for_address(registrar);
    let s = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    s.set_nonblocking(true)?;
    s.set_tcp_nodelay(true)?;
    if source.is_ipv4() {
        // Choose the port at connect time (per destination), not at bind time.
        let one: libc::c_int = 1;
        // SAFETY: setsockopt on our own socket with a c_int.
        unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&s),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    s.bind(&SocketAddr::new(source, 0).into())?;
    match s.connect(&registrar.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(s.into()))
}

/// The registrations of connection `c`, all in one buffer.
fn registrations(cfg: &SuperviseConfig, c: usize, source: IpAddr) -> Vec<u8> {
    let mut buf = Vec::new();
    for j in 0..cfg.pes_per_connection {
        let mut user = TransportAddress::new(
            TransportProtocol::Tcp,
            1024 + (j % 60_000) as u16,
            vec![source],
        );
        user.transport_use = TRANSPORT_USE_DATA_ONLY;
        let mut element = PoolElement::new(
            pe_id(cfg, c, j),
            user,
            PolicyInfo::new(PolicyType::RoundRobin),
        );
        element.registration_life = cfg.life_ms;
        let body = AsapBody::Registration {
            pool_handle: pool_of(cfg, c, j),
            element,
        };
        if let Ok(bytes) = AsapMessage::new(body).to_bytes() {
            buf.extend_from_slice(&bytes);
        }
    }
    buf
}

/// Writes what the socket takes; false on an error.
fn flush(conn: &mut Conn) -> bool {
    let Some(stream) = conn.stream.as_mut() else {
        return false;
    };
    while conn.sent < conn.out.len() {
        match stream.write(&conn.out[conn.sent..]) {
            Ok(0) => return false,
            Ok(n) => conn.sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    conn.out.clear();
    conn.sent = 0;
    true
}

struct Worker {
    cfg: SuperviseConfig,
    shared: Arc<Shared>,
    start: Instant,
    poll: Poll,
    conns: Vec<Conn>,
    /// Next connection (of ours) to start.
    next: usize,
    buf: Vec<u8>,
}

impl Worker {
    fn ms(&self) -> u32 {
        self.start.elapsed().as_millis().max(1) as u32
    }

    /// Starts connections while fewer than `in_flight` register (all threads together).
    fn start_more(&mut self) {
        while self.next < self.conns.len() {
            let done = self.shared.conns_registered.load(Ordering::Relaxed)
                + self.shared.conns_lost.load(Ordering::Relaxed);
            let started = self.shared.started.load(Ordering::Relaxed);
            if started.saturating_sub(done) >= self.cfg.in_flight as u64 {
                return;
            }
            self.shared.started.fetch_add(1, Ordering::Relaxed);
            let i = self.next;
            self.next += 1;
            let conn = &mut self.conns[i];
            match open(self.cfg.registrar, conn.source) {
                Ok(mut stream) => {
                    if self
                        .poll
                        .registry()
                        .register(
                            &mut stream,
                            Token(i),
                            Interest::READABLE | Interest::WRITABLE,
                        )
                        .is_ok()
                    {
                        conn.stream = Some(stream);
                        conn.state = State::Connecting;
                        continue;
                    }
                    self.lose(i);
                }
                Err(_) => self.lose(i),
            }
        }
    }

    fn lose(&mut self, i: usize) {
        let conn = &mut self.conns[i];
        if conn.state == State::Dead {
            return;
        }
        // A connection that had registered its PEs hunts on when its registrar closes it: once
        // through the fallback registrars, one attempt each.
        let hunting = conn.state == State::Registered || conn.tries > 0;
        conn.state = State::Dead;
        if let Some(mut s) = conn.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        let n = self.cfg.fallback.len();
        if hunting && conn.tries < n {
            let target = self.cfg.fallback[(conn.index + conn.tries) % n];
            conn.tries += 1;
            conn.ok = 0;
            conn.deframer = Deframer::new();
            conn.out.clear();
            conn.sent = 0;
            // Not dead yet: a failure below goes on to the next fallback.
            conn.state = State::Connecting;
            if let Ok(mut stream) = open(target, conn.source) {
                let token = Token(i);
                let interest = Interest::READABLE | Interest::WRITABLE;
                if self
                    .poll
                    .registry()
                    .register(&mut stream, token, interest)
                    .is_ok()
                {
                    self.conns[i].stream = Some(stream);
                    return;
                }
            }
            return self.lose(i);
        }
        // A connection that hunted in vain loses all its PEs (`ok` counts only the last try).
        let conn = &self.conns[i];
        let lost = if conn.tries > 0 {
            self.cfg.pes_per_connection
        } else {
            conn.ok
        };
        self.shared.conns_lost.fetch_add(1, Ordering::Relaxed);
        self.shared
            .pes_lost
            .fetch_add(lost as u64, Ordering::Relaxed);
    }

    fn event(&mut self, i: usize, readable: bool, writable: bool) {
        if self.conns[i].state == State::Connecting && writable {
            let conn = &mut self.conns[i];
            let stream = conn.stream.as_ref().expect("connecting");
            let connected = matches!(stream.take_error(), Ok(None)) && stream.peer_addr().is_ok();
            if !connected {
                return self.lose(i);
            }
            conn.out = registrations(&self.cfg, conn.index, conn.source);
            conn.sent = 0;
            conn.state = State::Registering;
        }
        if writable && !flush(&mut self.conns[i]) {
            return self.lose(i);
        }
        if readable && self.conns[i].state != State::Connecting {
            self.read(i);
        }
    }

    fn read(&mut self, i: usize) {
        let now_ms = self.ms();
        loop {
            let conn = &mut self.conns[i];
            let Some(stream) = conn.stream.as_mut() else {
                return;
            };
            match stream.read(&mut self.buf) {
                Ok(0) => return self.lose(i),
                Ok(n) => conn.deframer.push(&self.buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return self.lose(i),
            }
            loop {
                let msg = match conn.deframer.next_message() {
                    Ok(Some(m)) => m,
                    Ok(None) => break,
                    Err(_) => return self.lose(i),
                };
                let Ok(decoded) = AsapMessage::decode(&msg) else {
                    continue;
                };
                let base = conn.index * self.cfg.pes_per_connection + 1;
                let local = |id: PeId| {
                    (id.0 as usize)
                        .checked_sub(base)
                        .filter(|&j| j < self.cfg.pes_per_connection)
                };
                match decoded.message.body {
                    AsapBody::RegistrationResponse { error, pe_id, .. } => {
                        if error.is_some() {
                            self.shared.rejects.fetch_add(1, Ordering::Relaxed);
                        } else if local(pe_id).is_some() {
                            conn.ok += 1;
                            let (pes, conns) = if conn.tries > 0 {
                                (&self.shared.pes_rehomed, &self.shared.conns_rehomed)
                            } else {
                                (&self.shared.registered, &self.shared.conns_registered)
                            };
                            pes.fetch_add(1, Ordering::Relaxed);
                            if conn.ok == self.cfg.pes_per_connection {
                                conn.state = State::Registered;
                                conns.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    AsapBody::EndpointKeepAlive {
                        pool_handle, pe_id, ..
                    } => match pe_id.and_then(local) {
                        Some(j) => {
                            let last = conn.last_keepalive[j];
                            if last != 0 {
                                let gap = u64::from(now_ms.saturating_sub(last));
                                self.shared.max_gap_ms.fetch_max(gap, Ordering::Relaxed);
                                let b = (gap / GAP_BUCKET_MS).min(GAP_BUCKETS as u64 - 1);
                                self.shared.gaps[b as usize].fetch_add(1, Ordering::Relaxed);
                            }
                            conn.last_keepalive[j] = now_ms;
                            let ack = AsapBody::EndpointKeepAliveAck {
                                pool_handle,
                                pe_id: pe_id.expect("matched"),
                            };
                            if let Ok(bytes) = AsapMessage::new(ack).to_bytes() {
                                conn.out.extend_from_slice(&bytes);
                            }
                            self.shared.keepalives.fetch_add(1, Ordering::Relaxed);
                        }
                        None => {
                            self.shared.unknown.fetch_add(1, Ordering::Relaxed);
                        }
                    },
                    _ => {}
                }
            }
        }
        // All answers to what was read, in one write.
        if !self.conns[i].out.is_empty() && !flush(&mut self.conns[i]) {
            self.lose(i);
        }
    }

    fn run(mut self, stop: &AtomicBool) {
        let mut events = Events::with_capacity(4096);
        while !stop.load(Ordering::Relaxed) {
            self.start_more();
            if self
                .poll
                .poll(&mut events, Some(Duration::from_millis(50)))
                .is_err()
            {
                continue;
            }
            for ev in events.iter() {
                let i = ev.token().0;
                if self.conns[i].state == State::Dead || self.conns[i].state == State::Idle {
                    continue;
                }
                self.event(
                    i,
                    ev.is_readable() || ev.is_read_closed() || ev.is_error(),
                    ev.is_writable() || ev.is_error(),
                );
            }
        }
    }
}

/// Runs the load; `Err` only if nothing could be started.
pub fn run(cfg: &SuperviseConfig) -> Result<SuperviseReport, String> {
    if cfg.connections == 0 || cfg.pes_per_connection == 0 || cfg.sources.is_empty() {
        return Err(
            "nothing to run: connections, PEs per connection and sources must be > 0".into(),
        );
    }
    if cfg.connections * cfg.pes_per_connection >= u32::MAX as usize {
        return Err("too many PEs".into());
    }
    let shared = Arc::new(Shared::new());
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let own_cpu = process_cpu(std::process::id());
    let reg0 = cfg.registrar_pid.and_then(proc_sample);
    let threads = cfg.threads.clamp(1, cfg.connections);
    let mut handles = Vec::new();
    for t in 0..threads {
        let conns: Vec<Conn> = (t..cfg.connections)
            .step_by(threads)
            .map(|c| Conn {
                index: c,
                stream: None,
                source: cfg.sources[c % cfg.sources.len()],
                state: State::Idle,
                deframer: Deframer::new(),
                out: Vec::new(),
                sent: 0,
                ok: 0,
                last_keepalive: vec![0; cfg.pes_per_connection],
                tries: 0,
            })
            .collect();
        let worker = Worker {
            cfg: cfg.clone(),
            shared: shared.clone(),
            start,
            poll: Poll::new().map_err(|e| format!("cannot create an epoll instance: {e}"))?,
            conns,
            next: 0,
            buf: vec![0; 256 * 1024],
        };
        let stop = stop.clone();
        handles.push(
            std::thread::Builder::new()
                .name(format!("supervise-{t}"))
                .spawn(move || worker.run(&stop))
                .map_err(|e| format!("cannot start a thread: {e}"))?,
        );
    }
    let wanted = (cfg.connections * cfg.pes_per_connection) as u64;
    let progress = |phase: &str, since: Instant, last: &mut Instant, ka_before: u64| {
        if let Some(every) = cfg.progress {
            if last.elapsed() >= every {
                *last = Instant::now();
                let ka = shared.keepalives.load(Ordering::Relaxed) - ka_before;
                let secs = since.elapsed().as_secs_f64();
                let reg = cfg.registrar_pid.and_then(proc_sample);
                eprintln!(
                    "[{:>6.1} s] {phase}: {} PEs registered, {} connections done, {} lost; \
                     keep-alives {:.0}/s{}",
                    start.elapsed().as_secs_f64(),
                    shared.registered.load(Ordering::Relaxed),
                    shared.conns_registered.load(Ordering::Relaxed),
                    shared.conns_lost.load(Ordering::Relaxed),
                    ka as f64 / secs.max(1e-9),
                    reg.map_or(String::new(), |r| format!(
                        "; registrar VmRSS {} MiB, CPU {:.1} s",
                        r.rss_kib / 1024,
                        r.cpu.as_secs_f64()
                    ))
                );
            }
        }
    };
    // Registration: until every connection registered or failed, or the timeout.
    let mut last = Instant::now();
    while start.elapsed() < cfg.register_timeout {
        let done = shared.conns_registered.load(Ordering::Relaxed)
            + shared.conns_lost.load(Ordering::Relaxed);
        if done >= cfg.connections as u64 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        progress("registering", start, &mut last, 0);
    }
    let registration_time = start.elapsed();
    let reg1 = cfg.registrar_pid.and_then(proc_sample);
    let ka0 = shared.keepalives.load(Ordering::Relaxed);
    // Steady: keep-alives answered for the duration.
    let steady_start = Instant::now();
    while steady_start.elapsed() < cfg.duration {
        std::thread::sleep(
            Duration::from_millis(100).min(cfg.duration.saturating_sub(steady_start.elapsed())),
        );
        progress("steady", steady_start, &mut last, ka0);
    }
    let steady_time = steady_start.elapsed();
    let ka1 = shared.keepalives.load(Ordering::Relaxed);
    let reg2 = cfg.registrar_pid.and_then(proc_sample);
    let own_cpu = match (own_cpu, process_cpu(std::process::id())) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    // The handle table, read while the keep-alives are still answered.
    let mut table = None;
    if let Some(enrp) = cfg.enrp {
        let t = Instant::now();
        let dump = super::super::hsdump::query(enrp, Protocol::Tcp, Duration::from_secs(600))?;
        let mut ours: HashSet<(Vec<u8>, u32)> = HashSet::new();
        let mut n = 0u64;
        for p in &dump.pools {
            for e in &p.elements {
                ours.insert((p.pool_handle.as_bytes().to_vec(), e.id.0));
                n += 1;
            }
        }
        table = Some((ours, n, t.elapsed()));
    }
    stop.store(true, Ordering::Relaxed);
    let mut report = SuperviseReport {
        pes_wanted: wanted as usize,
        pes_registered: shared.registered.load(Ordering::Relaxed),
        connections_registered: shared.conns_registered.load(Ordering::Relaxed),
        registration_rejects: shared.rejects.load(Ordering::Relaxed),
        registration_time,
        steady_time,
        keepalives_steady: ka1 - ka0,
        keepalives_total: ka1,
        unknown_keepalives: shared.unknown.load(Ordering::Relaxed),
        connections_lost: shared.conns_lost.load(Ordering::Relaxed),
        connections_rehomed: shared.conns_rehomed.load(Ordering::Relaxed),
        pes_on_lost_connections: shared.pes_lost.load(Ordering::Relaxed),
        max_keepalive_gap: Duration::from_millis(shared.max_gap_ms.load(Ordering::Relaxed)),
        keepalive_gap_quantiles: [0.5, 0.99, 0.999].map(|q| shared.gap_quantile(q)),
        registrar: match (reg0, reg1, reg2) {
            (Some(a), Some(b), Some(c)) => Some([a, b, c]),
            _ => None,
        },
        generator_cpu: own_cpu,
        ..SuperviseReport::default()
    };
    for h in handles {
        h.join().map_err(|_| "a generator thread failed")?;
    }
    if let Some((present, n, took)) = table {
        // Every PE that was registered (on a connection that registered it) must be there.
        let mut missing = 0;
        for c in 0..cfg.connections {
            for j in 0..cfg.pes_per_connection {
                let key = (pool_of(cfg, c, j).as_bytes().to_vec(), pe_id(cfg, c, j).0);
                if !present.contains(&key) {
                    missing += 1;
                }
            }
        }
        // PEs never registered (rejected, failed connections) are not "lost" by supervision.
        let never = wanted - report.pes_registered;
        report.pes_missing = Some((missing as u64).saturating_sub(never));
        report.pes_in_table = Some(n);
        report.table_check_time = Some(took);
    }
    Ok(report)
}
