//! The registrar (pool registrar, PR): the I/O loop around [`crate::core::registrar`].
//!
//! One thread, one mio poll (epoll): the ASAP and ENRP endpoints over each transport (kernel
//! SCTP where available, TCP), the ASAP announce socket, signals (`service`), the metrics
//! endpoint (`metrics`); with `-threads=N`, N - 1 more threads serve ASAP connections over TCP
//! this one deals out to them (`sockets`, `shards`). Every event becomes a call into the sans-I/O core; every [`Output`] of
//! the core becomes a socket operation here; `reports` writes rsplib's statistics and sends
//! Component Status reports.

pub mod config;
pub mod hsdump;
pub mod loadgen;
pub mod metrics;
mod presence;
pub mod reports;
pub mod service;
mod shards;
mod sockets;

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::core::registrar::{EnrpSettings, Registrar, RegistrarConfig};
use crate::core::types::{RegistrarId, TransportAddress, TransportProtocol};
use crate::logging;
use crate::transport::{self, sctp, DownReason, Limits, Protocol, Server, PPID_ASAP, PPID_ENRP};
use config::{Command, Config};
use metrics::Metrics;
use parking_lot::Mutex;
use reports::Reports;
use service::{SignalAction, SignalWatch};
use shards::{Shards, Shared};
use sockets::{Core, Sockets};

/// Usage text printed by `rspregistrar --help`.
pub const USAGE: &str = "\
Usage: rspregistrar [options]
  -asap=auto|addr:port[,addr...]   ASAP endpoint (default auto = 0.0.0.0:3863)
  -asapannounce=auto|addr:port|off ASAP server announces (default 239.0.0.50:3863)
  -enrp=auto|addr:port[,addr...]   ENRP endpoint (default auto = 0.0.0.0:9901)
  -enrpannounce=auto|addr:port|off ENRP presence multicast (default 239.0.0.51:9901)
  -peer=addr:port                  static ENRP peer (repeatable)
  -identifier=0x...                registrar identifier (default random)
  -maxbadpereports=N               Endpoint Unreachable reports before removal (3)
  -maxhrrate=N                     handle resolutions per second and host (-1 = off)
  -maxeurate=N                     unreachable reports per second and host (-1 = off)
  -maxhresitems=N                  PEs per handle resolution (3, max 128)
  -endpointkeepalivetransmissioninterval=MS   keep-alive interval (5000)
  -endpointkeepalivetimeoutinterval=MS        keep-alive timeout (5000)
  -serverannouncecycle=MS          announce interval (1000)
  -minaddressscope=loopback|linklocal|sitelocal|global   (sitelocal)
  -maxpesperhost=N                 PEs registered from one host (16384, -1 = no limit)
  -maxpesperpool=N                 PEs in one pool (65536, -1 = no limit)
  -maxconnections=N                open connections in all (16384, -1 = no limit)
  -maxconnectionsperhost=N         open connections from one host (1024, -1 = no limit)
  -autoclosetimeout=S              close connections idle without a PE after S s (300, min 5)
  -stalltimeout=MS                 close connections stuck in a message or not reading (10000)
  -threads=N                       event-loop threads; 2 and more share ASAP over TCP (1)
  -enrpallow=PREFIX[,...]|none     hosts that may query over ENRP besides peers (loopback)
  -peerheartbeatcycle=MS           Presence to every peer (2444)
  -peermaxtimelastheard=MS         peer silent this long is asked for Presence (5000)
  -peermaxtimenoresponse=MS        … and declared dead without an answer (5000)
  -mentorhuntinterval=MS           how often a starting registrar asks its peers (1000)
  -mentordiscoverytimeout=MS       serve alone if no mentor answers within (5000)
  -takeoverexpiryinterval=MS       give up a takeover without all acks after (5000)
  -maxelementsperhtrequest=N       PEs per Handle Table Response (128)
  -supporttakeoversuggestion       honour Handle Update takeover suggestions
  -transport=sctp|tcp|both         transports (both: SCTP where the kernel has it, and TCP)
  -announcettl=N                   TTL of multicast announces (30)
  -disable-ipv6                    IPv4 only (IPv6 addresses are refused)
  -maxincrement=N                  MaxIncrement of the round-robin policies (0 = default)
  -distancestep=MS                 accepted; without effect here (a warning says so)
  -enrpmulticast=addr:port|off     old name of -enrpannounce
  -cspserver=addr:port             send Component Status reports there (CSP_SERVER)
  -cspinterval=MS                  … this often (CSP_INTERVAL; 250 with -cspserver)
  -statsfile=FILE                  rsplib's statistics table, one line per interval
  -statsinterval=MS                statistics interval (1000, 10 … 3600000)
  -actionlogfile=FILE              rsplib's action log: one line per ASAP/ENRP message
  -scalar=FILE  -object=NAME       totals and averages as scalars at the end (registrar)
  -uptime=S  -downtime=S           failure test: run for exp(S) s, stop for exp(S) s, again
  -metrics=addr:port               Prometheus metrics over HTTP at /metrics
  -loglevel=0-9  -logfile=FILE  -logappend=FILE  -logquiet  -logcolor=on|off  -quiet
  -daemonpidfile=FILE              fork; the parent writes the child's pid to FILE and exits
  --help                           this text
";

/// Entry point of the `rspregistrar` binary. Returns the process exit code.
pub fn main_with_args(args: &[String]) -> i32 {
    logging::set_component("registrar");
    let config = match config::parse(args) {
        Ok(Command::Help) => {
            print!("{USAGE}");
            return 0;
        }
        Ok(Command::Run(c)) => c,
        Err(e) => {
            let _ = writeln!(io::stderr(), "rspregistrar: {e}");
            return 1;
        }
    };
    // rsplib's failure test mode: run for an exponentially distributed time, stop, wait for
    // one, start again; without -uptime= one run until a signal.
    let mut run_no = 1;
    loop {
        let uptime = draw_exponential(config.extras.uptime_s);
        let end = uptime.map(|t| {
            println!(
                "Run #{run_no}: running registrar for {:.3}s ...",
                t.as_secs_f64()
            );
            Instant::now() + t
        });
        match run(&config, end, run_no > 1) {
            Ok(Stopped::BySignal) => return 0,
            Ok(Stopped::ByTimer) => {
                let down =
                    draw_exponential(config.extras.downtime_s.max(0.000_001)).unwrap_or_default();
                println!("Waiting for {:.3}s ...", down.as_secs_f64());
                std::thread::sleep(down);
                run_no += 1;
            }
            Err(e) => {
                let _ = writeln!(io::stderr(), "rspregistrar: {e}");
                return 1;
            }
        }
    }
}

/// An exponentially distributed duration of mean `mean_s` seconds; `None` for a mean of 0.
fn draw_exponential(mean_s: f64) -> Option<Duration> {
    if mean_s < 0.000_001 {
        return None;
    }
    let u = ((random_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    Some(Duration::from_secs_f64(-mean_s * u.ln()))
}

/// Why [`run`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// SIGINT or SIGTERM.
    BySignal,
    /// The failure test mode's uptime ran out.
    ByTimer,
}

/// Raises the soft descriptor limit to the hard one: a registrar holds one TCP connection per
/// PE/PU (10 000 PEs need more than the usual 1024). Returns the limit then in force.
fn raise_fd_limit() -> Option<u64> {
    // SAFETY: get/setrlimit on a local struct.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return None;
        }
        if r.rlim_cur < r.rlim_max
            && libc::setrlimit(
                libc::RLIMIT_NOFILE,
                &libc::rlimit {
                    rlim_cur: r.rlim_max,
                    rlim_max: r.rlim_max,
                },
            ) == 0
        {
            r.rlim_cur = r.rlim_max;
        }
        Some(r.rlim_cur as u64)
    }
}

/// Descriptors the registrar uses besides its connections (standard streams, epoll, the
/// listeners and their reserves, the signal pipe, the announce, CSP, metrics and log files),
/// rounded up.
const FIXED_DESCRIPTORS: u64 = 16;

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: getrandom fills the buffer.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n == 8 {
        u64::from_ne_bytes(b)
    } else {
        logging::wall_micros() ^ (std::process::id() as u64).rotate_left(32)
    }
}

/// Sends ASAP Server Announces on every multicast-capable interface that exists.
struct Announcer {
    socket: UdpSocket,
    group: SocketAddr,
    warned: bool,
}

impl Announcer {
    fn new(group: SocketAddr, source_port: u16, ttl: u32) -> io::Result<Announcer> {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
        s.set_reuse_address(true)?;
        s.set_multicast_ttl_v4(ttl)?;
        s.set_multicast_loop_v4(true)?;
        let bind = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), source_port);
        if s.bind(&bind.into()).is_err() {
            s.bind(&SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0).into())?;
        }
        s.set_nonblocking(true)?;
        Ok(Announcer {
            socket: s.into(),
            group,
            warned: false,
        })
    }

    fn send(&mut self, data: &[u8]) {
        let interfaces = transport::interfaces::multicast_ipv4();
        if interfaces.is_empty() && !self.warned {
            logging::log(
                logging::WARNING,
                "no multicast-capable interface is up: no server announces are sent",
            );
            self.warned = true;
        }
        let sock = socket2::SockRef::from(&self.socket);
        for ifa in interfaces {
            if sock.set_multicast_if_v4(&ifa).is_ok() {
                if let Err(e) = self.socket.send_to(data, self.group) {
                    logging::log(
                        logging::VERBOSE,
                        &format!("announce via {ifa} to {} failed: {e}", self.group),
                    );
                }
            }
        }
    }
}

/// Binds every endpoint over every transport; a failure is one clear error.
fn bind_endpoints(
    config: &Config,
    protocols: &[Protocol],
    poll: &Poll,
) -> Result<Vec<(Server, u32)>, String> {
    let mut servers = Vec::new();
    for &p in protocols {
        for (addrs, ppid, name) in [
            (&config.asap, PPID_ASAP, "ASAP"),
            (&config.enrp, PPID_ENRP, "ENRP"),
        ] {
            let server = Server::bind(p, addrs, ppid, poll.registry()).map_err(|e| {
                format!(
                    "cannot bind the {name} endpoint {} over {}: {e}",
                    addrs
                        .iter()
                        .map(|a| a.to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                    p.name()
                )
            })?;
            servers.push((server, ppid));
        }
    }
    Ok(servers)
}

fn transport_protocol(p: Protocol) -> TransportProtocol {
    match p {
        Protocol::Sctp => TransportProtocol::Sctp,
        Protocol::Tcp => TransportProtocol::Tcp,
    }
}

/// Words for why a connection went down.
fn down_reason(r: DownReason) -> &'static str {
    match r {
        DownReason::Closed => "closed by the peer",
        DownReason::Lost => "lost (reset, abort or I/O error)",
        DownReason::ProtocolError => "closed: the peer's bytes are no ASAP/ENRP messages",
        DownReason::TooSlow => "closed: the peer did not read its answers",
        DownReason::Stalled => "closed: the peer left a message incomplete",
    }
}

/// Batched logging for the time of [`run`]: on when made, off again (and written out) when
/// dropped.
struct BatchedLog;

impl BatchedLog {
    fn new() -> Self {
        logging::set_batched(true);
        static HOOK: std::sync::Once = std::sync::Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                logging::flush_if_free();
                previous(info);
            }));
        });
        BatchedLog
    }
}

impl Drop for BatchedLog {
    fn drop(&mut self) {
        logging::set_batched(false);
    }
}

/// Runs the registrar until SIGINT/SIGTERM, or until `end` (failure test mode). `again`: a
/// later run of the failure test mode (files are appended to).
pub fn run(config: &Config, end: Option<Instant>, again: bool) -> Result<Stopped, String> {
    logging::set_level(config.log_level);
    logging::set_color(config.extras.log_color);
    if let Some((path, append)) = &config.log_file {
        logging::set_file(Some((path, *append || again)))
            .map_err(|e| format!("cannot open log file {}: {e}", path.display()))?;
    }
    // The lines of a round of the loop go out in one write, before the loop waits again
    // (`logging::set_batched`); the guard writes what is left however this returns, and a
    // panic writes it before its message.
    let _batched = BatchedLog::new();
    if !again {
        for warning in &config.extras.ignored {
            logging::log(logging::WARNING, warning);
        }
    }
    let (protocols, choice) = config.transport.resolve(sctp::available())?;
    let id = config.identifier.unwrap_or_else(|| loop {
        let r = random_u64() as u32;
        if r != 0 {
            break r;
        }
    });

    if let (Some(limit), Some(max)) = (raise_fd_limit(), config.max_connections) {
        if u64::from(max) + FIXED_DESCRIPTORS > limit {
            logging::log(
                logging::WARNING,
                &format!(
                    "the descriptor limit ({limit}) is below -maxconnections ({max}): beyond \
                     about {} open connections, new ones are closed at once",
                    limit.saturating_sub(FIXED_DESCRIPTORS)
                ),
            );
        }
    }
    let mut poll = Poll::new().map_err(|e| format!("cannot create the event loop: {e}"))?;
    let mut servers = bind_endpoints(config, &protocols, &poll)?;
    let asap_port = servers[0]
        .0
        .local_addrs()
        .first()
        .map(|a| a.port())
        .unwrap_or(3863);
    let announcer = match config.asap_announce {
        Some(group) => Some(
            Announcer::new(group, asap_port, config.extras.announce_ttl)
                .map_err(|e| format!("cannot create the announce socket for {group}: {e}"))?,
        ),
        None => None,
    };
    let metrics = match config.extras.metrics {
        Some(addr) => Some(
            Metrics::bind(addr, poll.registry())
                .map_err(|e| format!("cannot bind the metrics endpoint {addr}: {e}"))?,
        ),
        None => None,
    };

    let enrp_transport = servers
        .iter()
        .find(|(s, ppid)| *ppid == PPID_ENRP && s.protocol() == protocols[0])
        .and_then(|(s, _)| {
            let addrs = s.local_addrs();
            let port = addrs.first()?.port();
            Some(TransportAddress::new(
                transport_protocol(protocols[0]),
                port,
                addrs.iter().map(|a| a.ip()).collect(),
            ))
        });
    // Presence by multicast comes from the ENRP endpoint's port, as the ASAP announces come
    // from the ASAP port.
    let enrp_port = enrp_transport.as_ref().map_or(9901, |t| t.port);
    let (enrp_announcer, presence_socket) = match config.enrp_announce {
        Some(group) => (
            Some(
                Announcer::new(group, enrp_port, config.extras.announce_ttl).map_err(|e| {
                    format!("cannot create the ENRP announce socket for {group}: {e}")
                })?,
            ),
            Some(
                presence::listen(group)
                    .map_err(|e| format!("cannot listen for ENRP Presence on {group}: {e}"))?,
            ),
        ),
        None => (None, None),
    };
    let mut core_config = RegistrarConfig::new(RegistrarId(id));
    core_config.log_level = u8::try_from(config.log_level).unwrap_or(u8::MAX);
    core_config.max_hr_items = config.max_hr_items;
    core_config.max_bad_pe_reports = config.max_bad_pe_reports;
    core_config.keepalive_interval = config.keepalive_transmission_interval_ms * 1000;
    core_config.keepalive_timeout = config.keepalive_timeout_interval_ms * 1000;
    core_config.announce_cycle = config
        .asap_announce
        .map(|_| config.server_announce_cycle_ms * 1000);
    core_config.min_address_scope = config.min_address_scope;
    core_config.max_hr_rate = config.max_hr_rate;
    core_config.max_eu_rate = config.max_eu_rate;
    core_config.enrp_transport = enrp_transport;
    core_config.max_pes_per_host = config.max_pes_per_host;
    core_config.max_pes_per_pool = config.max_pes_per_pool;
    core_config.max_connections = config.max_connections;
    core_config.max_connections_per_host = config.max_connections_per_host;
    core_config.idle_timeout = config.autoclose_timeout_s * 1_000_000;
    core_config.enrp_allow = config.enrp_allow.clone();
    core_config.peers = config.peers.iter().map(|a| a.ip()).collect();
    core_config.static_peers = config.peers.clone();
    core_config.enrp_announce = config.enrp_announce.is_some();
    core_config.max_increment = config.extras.max_increment;
    let t = &config.enrp_timing;
    core_config.enrp = EnrpSettings {
        heartbeat_cycle: t.peer_heartbeat_cycle_ms * 1000,
        max_time_last_heard: t.peer_max_time_last_heard_ms * 1000,
        max_time_no_response: t.peer_max_time_no_response_ms * 1000,
        mentor_hunt_interval: t.mentor_hunt_interval_ms * 1000,
        mentor_discovery_timeout: t.mentor_discovery_timeout_ms * 1000,
        takeover_expiry: t.takeover_expiry_interval_ms * 1000,
        ht_max_pes: t.max_elements_per_ht_request as usize,
    };

    let start = Instant::now();
    let registrar = Registrar::new(core_config, random_u64(), 0);

    if !config.quiet {
        // Written in one go, errors ignored: a closed stdout must not stop the registrar.
        let mut text = format!("rspregistrar (rsplib-rs {})\n", env!("CARGO_PKG_VERSION"));
        text.push_str(&config.describe(id, &choice));
        for (s, ppid) in &servers {
            let name = if *ppid == PPID_ASAP { "ASAP" } else { "ENRP" };
            let addrs: Vec<String> = s.local_addrs().iter().map(|a| a.to_string()).collect();
            text.push_str(&format!(
                "Listening: {name} over {} on {}\n",
                s.protocol().name(),
                addrs.join(", ")
            ));
        }
        if let Some(m) = &metrics {
            text.push_str(&format!("Metrics: http://{}/metrics\n", m.local_addr()));
        }
        let mut stdout = io::stdout().lock();
        let _ = stdout
            .write_all(text.as_bytes())
            .and_then(|_| stdout.flush());
    }
    // rsplib's daemon mode forks here, once the sockets are bound; no thread runs yet.
    if let Some(path) = &config.pid_file {
        service::daemonize(path)?;
    }
    let signal_token = Token(usize::MAX / 2 - 1);
    let mut signals = SignalWatch::new(poll.registry(), signal_token)
        .map_err(|e| format!("cannot set up signal handling: {e}"))?;
    let asap_addrs = servers[0].0.local_addrs();
    let reports = Reports::new(config, id, &asap_addrs, again)?;
    logging::log(
        logging::ACTION,
        &format!("registrar 0x{id:08x} started; transport: {choice}"),
    );
    service::notify(&format!(
        "READY=1\nMAINPID={}\nSTATUS=registrar 0x{id:08x} serving",
        std::process::id()
    ));

    let limits = Limits {
        stall_timeout: Duration::from_millis(config.stall_timeout_ms),
        ..Limits::default()
    };
    for (s, _) in &mut servers {
        s.set_limits(limits);
    }
    let registry = poll
        .registry()
        .try_clone()
        .map_err(|e| format!("cannot set up the event loop: {e}"))?;
    let mut sockets = Sockets::new(0, registry, servers, start);
    sockets.announcer = announcer;
    sockets.enrp_announcer = enrp_announcer;
    sockets.presence_socket = presence_socket;
    sockets.metrics = metrics;
    let core = Arc::new(Mutex::new(Core {
        registrar,
        reports,
        owner: HashMap::default(),
    }));
    // With -threads=N: N - 1 more loops, dealt ASAP connections over TCP by this one.
    let tcp_asap = sockets
        .servers
        .iter()
        .position(|(s, ppid)| *ppid == PPID_ASAP && s.protocol() == Protocol::Tcp);
    if config.threads > 1 && tcp_asap.is_none() {
        logging::log(
            logging::WARNING,
            &format!(
                "-threads={}: no ASAP endpoint over TCP to share out; one event loop serves all",
                config.threads
            ),
        );
    }
    let _shards = if let (true, Some(tcp_asap)) = (config.threads > 1, tcp_asap) {
        let mut loops = Vec::new();
        for shard in 1..config.threads {
            let p = Poll::new().map_err(|e| format!("cannot create an event loop: {e}"))?;
            let registry = p
                .registry()
                .try_clone()
                .map_err(|e| format!("cannot set up an event loop: {e}"))?;
            let mut server = Server::tcp_shard(PPID_ASAP);
            server.set_limits(limits);
            loops.push((
                p,
                Sockets::new(shard, registry, vec![(server, PPID_ASAP)], start),
            ));
        }
        let polls: Vec<&Poll> = std::iter::once(&poll)
            .chain(loops.iter().map(|(p, _)| p))
            .collect();
        let shared =
            Arc::new(Shared::new(&polls).map_err(|e| format!("cannot link the event loops: {e}"))?);
        for (_, s) in &mut loops {
            s.join(shared.clone());
        }
        sockets.join(shared.clone());
        sockets.servers[tcp_asap].0.set_handoff(config.threads);
        Some(Shards::start(shared, loops, core.clone())?)
    } else {
        None
    };
    let presence_token = Token(usize::MAX - 2);
    if let Some(s) = &sockets.presence_socket {
        poll.registry()
            .register(
                &mut SourceFd(&s.as_raw_fd()),
                presence_token,
                Interest::READABLE,
            )
            .map_err(|e| format!("cannot watch the ENRP announce socket: {e}"))?;
    }
    let mut events = Events::with_capacity(1024);
    let mut transport_events = Vec::new();
    loop {
        let mut timeout = {
            let core = core.lock();
            if let Some(shared) = &sockets.shared {
                shared.plan(core.registrar.next_wakeup());
            }
            sockets.timeout(Some(&core))
        };
        if let Some(end) = end {
            let left = end.saturating_duration_since(sockets.clock);
            timeout = Some(timeout.map_or(left, |t| t.min(left)));
        }
        logging::flush();
        let polled = poll.poll(&mut events, timeout);
        // The clock, read once for the events and the round (again every CLOCK_REUSE events).
        let wall = sockets.tick();
        if let Err(e) = polled {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("event loop failed: {e}"));
        }
        let mut stop = None;
        for ev in events.iter() {
            if ev.token() == signal_token {
                for action in signals.pending() {
                    match action {
                        SignalAction::Stop => stop = Some(Stopped::BySignal),
                        SignalAction::ReopenLog => match logging::reopen() {
                            Ok(()) => logging::log(logging::ACTION, "SIGHUP: log file reopened"),
                            Err(e) => logging::log(
                                logging::ERROR,
                                &format!("SIGHUP: cannot reopen the log file: {e}"),
                            ),
                        },
                    }
                }
                continue;
            }
            if ev.token() == shards::WAKER {
                continue;
            }
            if let Some(m) = sockets.metrics.as_mut().filter(|m| m.owns(ev.token())) {
                let core = core.lock();
                m.ready(
                    &sockets.registry,
                    ev.token(),
                    &core.registrar,
                    &core.reports.counts(),
                );
                continue;
            }
            if ev.token() == presence_token {
                sockets.read_presence(&mut core.lock());
                continue;
            }
            if let Some(idx) = sockets.servers.iter().position(|(s, _)| s.owns(ev.token())) {
                sockets.ready(idx, ev, &core, &mut transport_events);
            }
        }
        sockets.take_inbox(&core, &mut transport_events);
        sockets.round(&core, wall, &mut transport_events);
        {
            let mut core = core.lock();
            let mut outputs = std::mem::take(&mut sockets.outputs);
            let now = sockets.now();
            core.registrar.poll(now, &mut outputs);
            sockets.dispatch(&mut core, &mut outputs);
            sockets.outputs = outputs;
        }
        // What the round queued and did not write yet (keep-alives, updates to peers, SCTP
        // output) goes out: one write per TCP connection, 16 messages per SCTP call.
        sockets.flush(&core, &mut transport_events);
        sockets.send_forwards();
        let now = sockets.tick();
        {
            let core = &mut *core.lock();
            core.reports.tick(now, &core.registrar);
        }
        if let Some(m) = sockets.metrics.as_mut() {
            m.sweep(&sockets.registry, now);
        }
        if end.is_some_and(|end| now >= end) {
            println!("Shutdown by timer!");
            stop = Some(Stopped::ByTimer);
        }
        if sockets.shared.as_ref().is_some_and(|s| s.failed()) {
            return Err("an event-loop thread failed".into());
        }
        if let Some(stopped) = stop {
            service::notify("STOPPING=1");
            let core = &mut *core.lock();
            core.reports.finish(&core.registrar);
            logging::log(
                logging::ACTION,
                &format!(
                    "shutting down: {} PEs in {} pools, {} connections",
                    core.registrar.handlespace().len(),
                    core.registrar.handlespace().pool_count(),
                    core.registrar.connections()
                ),
            );
            if let Some(path) = &config.pid_file {
                let _ = std::fs::remove_file(path);
            }
            return Ok(stopped);
        }
    }
}

/// Re-exported for tools and tests that speak to the registrar.
pub use transport::Association;
