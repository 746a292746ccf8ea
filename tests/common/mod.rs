//! Helpers shared by the tests that run the registrar binary over loopback TCP (and by the soak
//! benchmark, which includes this file by path): child processes, a registrar on free ports,
//! client connections from chosen loopback source addresses, one-message reads, a well-behaved
//! PE holder that answers keep-alives, a good PU that times its handle resolutions, and the
//! registrar's resident memory.
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rsplib::core::types::{
    PeId, PolicyInfo, PolicyType, PoolHandle, RegistrarId, TransportAddress, TransportProtocol,
};
use rsplib::core::wire::{
    enrp, AsapBody, AsapMessage, EnrpBody, EnrpMessage, PoolElement, ServerInformation,
};
use rsplib::transport::framing::Deframer;

/// A child process whose stdout lines arrive on a channel; killed when dropped.
pub struct Proc {
    pub child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    pub fn spawn(program: &str, args: &[&str]) -> Proc {
        Proc::spawn_command(Command::new(program).args(args))
    }

    pub fn spawn_command(cmd: &mut Command) -> Proc {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            // Keeps reading after the receiver is gone: a closed pipe would fail the child's
            // next write.
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Proc {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a stdout line containing `text`.
    pub fn wait_for(&mut self, text: &str, timeout: Duration) -> String {
        if let Some(l) = self.seen.iter().find(|l| l.contains(text)) {
            return l.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(text) {
                        return l;
                    }
                }
                Err(_) => panic!(
                    "no line with {text:?} within {timeout:?}; saw {:?}",
                    self.seen
                ),
            }
        }
    }

    /// Forgets the lines seen so far (a later `wait_for` sees only new ones).
    pub fn forget_seen(&mut self) {
        self.seen.clear();
    }

    /// Every stdout line so far (after the process ended: all of them).
    pub fn seen_lines(&mut self) -> Vec<String> {
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(200)) {
            self.seen.push(l);
        }
        self.seen.clone()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Ports [`free_port`] hands out: below the kernel's ephemeral range (32768 and up by
/// default) and above the fixed ports some tests use.
const FREE_PORTS: std::ops::Range<u32> = 24000..32768;

/// A TCP port on loopback that is free now, for a process started later to listen on. Taken
/// from [`FREE_PORTS`], outside the range the kernel picks from for `bind(0)` and outgoing
/// connections, so no other socket of the tests takes it before that process binds it (a port
/// from `bind(0)`, released, could go to the next registrar started with port 0). Each port is
/// handed out once per test process; each process starts at another place in the range.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let span = FREE_PORTS.end - FREE_PORTS.start;
    let first = std::process::id().wrapping_mul(2654435761) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (FREE_PORTS.start + (first + n) % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FREE_PORTS:?}");
}

/// A fresh directory under the system temp dir for one test's files (log files).
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rsplib-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A registrar on free loopback ports (ASAP and ENRP over TCP, no multicast, loopback scope).
pub struct Registrar {
    pub proc: Proc,
    pub asap: SocketAddr,
    pub enrp: SocketAddr,
    pub log: PathBuf,
}

impl Registrar {
    /// `program` with the standard options, `extra` options and a log file at `log`.
    pub fn start(program: &str, log: &Path, extra: &[&str]) -> Registrar {
        Registrar::start_wrapped(program, log, extra, None)
    }

    /// As [`Registrar::start`], run as `sh -c '<shell_prefix>; exec REGISTRAR ARGS'` when a
    /// prefix is given (e.g. `ulimit -n 64`): the shell execs, so the PID is the registrar's.
    pub fn start_wrapped(
        program: &str,
        log: &Path,
        extra: &[&str],
        shell_prefix: Option<&str>,
    ) -> Registrar {
        let mut args: Vec<String> = [
            "-asap=127.0.0.1:0",
            "-enrp=127.0.0.1:0",
            "-asapannounce=off",
            "-enrpannounce=off",
            "-transport=tcp",
            "-minaddressscope=loopback",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(format!("-logfile={}", log.display()));
        args.extend(extra.iter().map(|s| s.to_string()));
        // `make test-threads`: the same tests against a registrar with several event loops.
        if let Ok(n) = std::env::var("RSPLIB_TEST_REGISTRAR_THREADS") {
            if !args.iter().any(|a| a.starts_with("-threads=")) {
                args.push(format!("-threads={n}"));
            }
        }
        let mut proc = match shell_prefix {
            None => {
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                Proc::spawn(program, &refs)
            }
            Some(prefix) => {
                let mut script = format!("{prefix}; exec \"$0\"");
                for i in 0..args.len() {
                    script.push_str(&format!(" \"${}\"", i + 1));
                }
                let mut cmd = Command::new("sh");
                cmd.arg("-c").arg(script).arg(program).args(&args);
                Proc::spawn_command(&mut cmd)
            }
        };
        let line = proc.wait_for("Listening: ASAP over TCP on ", Duration::from_secs(10));
        let asap = line.rsplit(' ').next().unwrap().parse().unwrap();
        let line = proc.wait_for("Listening: ENRP over TCP on ", Duration::from_secs(10));
        let enrp = line.rsplit(' ').next().unwrap().parse().unwrap();
        Registrar {
            proc,
            asap,
            enrp,
            log: log.to_path_buf(),
        }
    }

    /// Resident memory of the registrar in KiB (0 once it has gone).
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.proc.pid())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// VmRSS of a process in KiB (0 if it is gone).
pub fn rss_kib(pid: i32) -> u64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return 0;
    };
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Samples a process's VmRSS every 10 ms in a thread: peak and latest. Kills the process when
/// it passes `kill_above_kib` (a registrar gone wild must not take the machine with it).
pub struct RssMonitor {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    killed: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RssMonitor {
    pub fn start(pid: i32, kill_above_kib: u64) -> RssMonitor {
        let peak = Arc::new(AtomicU64::new(rss_kib(pid)));
        let stop = Arc::new(AtomicBool::new(false));
        let killed = Arc::new(AtomicBool::new(false));
        let (p, s, k) = (peak.clone(), stop.clone(), killed.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let r = rss_kib(pid);
                p.fetch_max(r, Ordering::Relaxed);
                if r > kill_above_kib && !k.swap(true, Ordering::Relaxed) {
                    // SAFETY: signalling the registrar child of this test.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        RssMonitor {
            peak,
            stop,
            killed,
            thread: Some(thread),
        }
    }

    /// Highest VmRSS seen so far (KiB); resets the peak to `reset_to` when given.
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    pub fn reset(&self, to: u64) {
        self.peak.store(to, Ordering::Relaxed);
    }

    /// Whether the monitor had to kill the process.
    pub fn killed(&self) -> bool {
        self.killed.load(Ordering::Relaxed)
    }
}

impl Drop for RssMonitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A TCP connection to `to` from the loopback source address `from` (any port).
pub fn connect_from(from: &str, to: SocketAddr) -> io::Result<TcpStream> {
    let ip: IpAddr = from.parse().expect("source address");
    let s = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    s.bind(&SocketAddr::new(ip, 0).into())?;
    s.connect_timeout(&to.into(), Duration::from_secs(2))?;
    s.set_tcp_nodelay(true)?;
    Ok(s.into())
}

/// Why a read found no message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    /// Orderly end of stream (FIN).
    Closed,
    /// Reset or another socket error.
    Reset,
    /// Nothing complete within the time given.
    Timeout,
}

/// Reads ASAP/ENRP messages (unframed, the header's length delimits) from a stream.
pub struct MsgReader {
    deframer: Deframer,
    buf: Vec<u8>,
}

impl Default for MsgReader {
    fn default() -> Self {
        MsgReader {
            deframer: Deframer::new(),
            buf: vec![0; 64 * 1024],
        }
    }
}

impl MsgReader {
    /// The next whole message within `timeout`.
    pub fn next(&mut self, s: &mut TcpStream, timeout: Duration) -> Result<Vec<u8>, ReadError> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.deframer.next_message() {
                Ok(Some(m)) => return Ok(m),
                Ok(None) => {}
                Err(_) => return Err(ReadError::Reset),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ReadError::Timeout);
            }
            s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .map_err(|_| ReadError::Reset)?;
            match s.read(&mut self.buf) {
                Ok(0) => return Err(ReadError::Closed),
                Ok(n) => self.deframer.push(&self.buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Err(ReadError::Reset),
            }
        }
    }

    /// The next message decoded as ASAP (a message that does not decode is a test failure).
    pub fn next_asap(
        &mut self,
        s: &mut TcpStream,
        timeout: Duration,
    ) -> Result<AsapMessage, ReadError> {
        let m = self.next(s, timeout)?;
        Ok(AsapMessage::decode(&m)
            .unwrap_or_else(|e| panic!("undecodable ASAP message from the registrar: {e}"))
            .message)
    }
}

/// Whether the peer has closed or reset the connection, without reading from it (poll with
/// POLLRDHUP: unread data does not hide a FIN).
pub fn peer_closed(s: &TcpStream) -> bool {
    let mut p = libc::pollfd {
        fd: s.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}

pub fn encode(body: AsapBody) -> Vec<u8> {
    AsapMessage::new(body).to_bytes().unwrap()
}

/// A pool element on `ip:port`, round robin unless `policy` says otherwise, life `life_ms`.
pub fn element(id: u32, ip: &str, port: u16, policy: PolicyType, life_ms: u32) -> PoolElement {
    let t = TransportAddress::new(TransportProtocol::Tcp, port, vec![ip.parse().unwrap()]);
    let mut e = PoolElement::new(PeId(id), t, PolicyInfo::new(policy));
    e.registration_life = life_ms;
    e
}

pub fn registration(pool: &str, e: PoolElement) -> Vec<u8> {
    encode(AsapBody::Registration {
        pool_handle: PoolHandle::from(pool),
        element: e,
    })
}

pub fn deregistration(pool: &str, id: u32) -> Vec<u8> {
    encode(AsapBody::Deregistration {
        pool_handle: PoolHandle::from(pool),
        pe_id: PeId(id),
    })
}

pub fn handle_resolution(pool: &str, items: Option<u32>) -> Vec<u8> {
    encode(AsapBody::HandleResolution {
        pool_handle: PoolHandle::from(pool),
        items,
    })
}

pub fn unreachable(pool: &str, id: u32) -> Vec<u8> {
    encode(AsapBody::EndpointUnreachable {
        pool_handle: PoolHandle::from(pool),
        pe_id: PeId(id),
    })
}

/// The outcome of a registration, deregistration or resolution: `Ok` or the cause code.
pub fn response_cause(m: &AsapMessage) -> Result<(), u16> {
    match &m.body {
        AsapBody::RegistrationResponse { error, .. }
        | AsapBody::DeregistrationResponse { error, .. }
        | AsapBody::HandleResolutionResponse { error, .. } => match error {
            Some(e) => Err(e.code()),
            None if m.flags & 1 != 0 => Err(0),
            None => Ok(()),
        },
        AsapBody::Error { error } => Err(error.code()),
        other => panic!("not a response: {other:?}"),
    }
}

/// One request on a connection, one answer (keep-alives in between are answered).
pub fn request(
    s: &mut TcpStream,
    r: &mut MsgReader,
    bytes: &[u8],
    timeout: Duration,
) -> Result<AsapMessage, ReadError> {
    s.write_all(bytes).map_err(|_| ReadError::Reset)?;
    let deadline = Instant::now() + timeout;
    loop {
        let m = r.next_asap(s, deadline.saturating_duration_since(Instant::now()))?;
        if let AsapBody::EndpointKeepAlive {
            pool_handle,
            pe_id: Some(id),
            ..
        } = &m.body
        {
            let ack = encode(AsapBody::EndpointKeepAliveAck {
                pool_handle: pool_handle.clone(),
                pe_id: *id,
            });
            s.write_all(&ack).map_err(|_| ReadError::Reset)?;
            continue;
        }
        return Ok(m);
    }
}

/// A well-behaved PE process-in-a-thread: one connection from `source`, several PEs, every
/// keep-alive answered. `lost` turns true if the registrar drops the connection.
pub struct PeHolder {
    writer: Arc<Mutex<TcpStream>>,
    stop: Arc<AtomicBool>,
    lost: Arc<AtomicBool>,
    pub keepalives: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
    pub pool: String,
    pub ids: Vec<u32>,
}

impl PeHolder {
    /// Registers `ids` in `pool` (user transport `source:port_base+i`); panics if one is
    /// refused.
    pub fn start(
        reg: SocketAddr,
        source: &str,
        pool: &str,
        ids: &[u32],
        port_base: u16,
        life_ms: u32,
    ) -> PeHolder {
        let mut s = connect_from(source, reg).expect("PE holder connects");
        let mut r = MsgReader::default();
        let mut batch = Vec::new();
        for (i, &id) in ids.iter().enumerate() {
            let e = element(
                id,
                source,
                port_base + i as u16,
                PolicyType::RoundRobin,
                life_ms,
            );
            batch.extend_from_slice(&registration(pool, e));
        }
        s.write_all(&batch).unwrap();
        let mut answered = 0;
        let deadline = Instant::now() + Duration::from_secs(10);
        while answered < ids.len() {
            let m = r
                .next_asap(&mut s, deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|e| panic!("PE holder: registration answers: {e:?}"));
            match &m.body {
                AsapBody::RegistrationResponse { pe_id, .. } => {
                    assert_eq!(response_cause(&m), Ok(()), "PE holder: PE {pe_id} refused");
                    answered += 1;
                }
                AsapBody::EndpointKeepAlive {
                    pool_handle,
                    pe_id: Some(id),
                    ..
                } => {
                    let ack = encode(AsapBody::EndpointKeepAliveAck {
                        pool_handle: pool_handle.clone(),
                        pe_id: *id,
                    });
                    s.write_all(&ack).unwrap();
                }
                other => panic!("PE holder: unexpected {other:?}"),
            }
        }
        let writer = Arc::new(Mutex::new(s.try_clone().unwrap()));
        let stop = Arc::new(AtomicBool::new(false));
        let lost = Arc::new(AtomicBool::new(false));
        let keepalives = Arc::new(AtomicU64::new(0));
        let (w, st, l, k) = (
            writer.clone(),
            stop.clone(),
            lost.clone(),
            keepalives.clone(),
        );
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match r.next(&mut s, Duration::from_millis(50)) {
                    Ok(m) => {
                        let Ok(d) = AsapMessage::decode(&m) else {
                            continue;
                        };
                        if let AsapBody::EndpointKeepAlive {
                            pool_handle,
                            pe_id: Some(id),
                            ..
                        } = d.message.body
                        {
                            let ack = encode(AsapBody::EndpointKeepAliveAck {
                                pool_handle,
                                pe_id: id,
                            });
                            k.fetch_add(1, Ordering::Relaxed);
                            if w.lock().unwrap().write_all(&ack).is_err() {
                                l.store(true, Ordering::Relaxed);
                                return;
                            }
                        }
                    }
                    Err(ReadError::Timeout) => {}
                    Err(_) => {
                        l.store(true, Ordering::Relaxed);
                        return;
                    }
                }
            }
        });
        PeHolder {
            writer,
            stop,
            lost,
            keepalives,
            thread: Some(thread),
            pool: pool.to_string(),
            ids: ids.to_vec(),
        }
    }

    /// Whether the registrar closed the connection.
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }

    /// Sends raw bytes on the PE's connection (answers are not read back).
    pub fn send(&self, bytes: &[u8]) -> io::Result<()> {
        self.writer.lock().unwrap().write_all(bytes)
    }
}

impl Drop for PeHolder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What one handle resolution of the good PU saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered with this many PEs.
    Found(usize),
    /// Answered with an error cause.
    Refused(u16),
    /// No answer (closed, reset or timed out).
    NoAnswer(ReadError),
}

#[derive(Debug, Clone, Copy)]
pub struct Probe {
    pub latency: Duration,
    pub outcome: Outcome,
}

impl Probe {
    pub fn ok_within(&self, bound: Duration) -> bool {
        matches!(self.outcome, Outcome::Found(n) if n > 0) && self.latency <= bound
    }
}

/// A pool user on 127.0.0.1 timing handle resolutions over a persistent connection (a fresh
/// one after a failure, or always with `fresh`); the connect time counts in the latency.
pub struct GoodPu {
    reg: SocketAddr,
    pool: String,
    source: String,
    conn: Option<(TcpStream, MsgReader)>,
    fresh: bool,
    /// How long a probe waits before giving up (the latency bound is checked separately).
    pub patience: Duration,
}

impl GoodPu {
    pub fn new(reg: SocketAddr, pool: &str) -> GoodPu {
        GoodPu {
            reg,
            pool: pool.to_string(),
            source: "127.0.0.1".into(),
            conn: None,
            fresh: false,
            patience: Duration::from_secs(1),
        }
    }

    /// A new connection for every probe.
    pub fn fresh(mut self) -> GoodPu {
        self.fresh = true;
        self
    }

    pub fn probe(&mut self) -> Probe {
        let start = Instant::now();
        if self.fresh {
            self.conn = None;
        }
        if self.conn.is_none() {
            match connect_from(&self.source, self.reg) {
                Ok(s) => self.conn = Some((s, MsgReader::default())),
                Err(_) => {
                    return Probe {
                        latency: start.elapsed(),
                        outcome: Outcome::NoAnswer(ReadError::Reset),
                    }
                }
            }
        }
        let (s, r) = self.conn.as_mut().unwrap();
        let hr = handle_resolution(&self.pool, None);
        let outcome = match request(s, r, &hr, self.patience) {
            Ok(m) => match m.body {
                AsapBody::HandleResolutionResponse {
                    elements,
                    error: None,
                    ..
                } => Outcome::Found(elements.len()),
                AsapBody::HandleResolutionResponse { error: Some(e), .. }
                | AsapBody::Error { error: e } => Outcome::Refused(e.code()),
                other => panic!("good PU: unexpected answer {other:?}"),
            },
            Err(e) => Outcome::NoAnswer(e),
        };
        if !matches!(outcome, Outcome::Found(_) | Outcome::Refused(_)) {
            self.conn = None;
        }
        Probe {
            latency: start.elapsed(),
            outcome,
        }
    }
}

/// Latency statistics (ms) of a set of probes: p50, p99, max.
pub fn latency_summary(lat: &mut [Duration]) -> (f64, f64, f64) {
    if lat.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    lat.sort();
    let at = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3;
    (at(0.5), at(0.99), at(1.0))
}

pub fn enrp_bytes(flags: u8, sender: u32, body: EnrpBody) -> Vec<u8> {
    let mut m = EnrpMessage::new(RegistrarId(sender), RegistrarId(0), body);
    m.flags = flags;
    m.to_bytes().unwrap()
}

/// Presence, then Handle Table Request, over ENRP from `source`: the ENRP messages received
/// within `wait` (or until the last Handle Table Response, or the close).
pub fn ask_handle_table(reg: SocketAddr, source: &str, wait: Duration) -> (Vec<EnrpMessage>, bool) {
    let sender = 0x0bad_0000 + u32::from(source.rsplit('.').next().unwrap().parse::<u8>().unwrap());
    let mut t = connect_from(source, reg).unwrap();
    let mut bytes = enrp_bytes(
        enrp::FLAG_REPLY_REQUIRED,
        sender,
        EnrpBody::Presence {
            checksum: 0,
            server_info: ServerInformation::new(RegistrarId(sender), Vec::new()),
        },
    );
    bytes.extend_from_slice(&enrp_bytes(0, sender, EnrpBody::HandleTableRequest));
    let _ = t.write_all(&bytes);
    let mut r = MsgReader::default();
    let mut got = Vec::new();
    let deadline = Instant::now() + wait;
    let mut closed = false;
    loop {
        match r.next(&mut t, deadline.saturating_duration_since(Instant::now())) {
            Ok(m) => {
                let m = EnrpMessage::decode(&m)
                    .unwrap_or_else(|e| panic!("undecodable ENRP message: {e}"))
                    .message;
                let last = matches!(m.body, EnrpBody::HandleTableResponse { .. })
                    && m.flags & enrp::FLAG_MORE == 0;
                got.push(m);
                if last {
                    break;
                }
            }
            Err(ReadError::Timeout) => break,
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    (got, closed)
}
