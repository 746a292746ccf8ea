//! rsptool: a small ASAP pool element and pool user built on the core codec and transport, for
//! trying a registrar out and for the registrar's tests. `rsptool --help` and
//! `rsptool help SUBCOMMAND` describe it; rsptool(1) is its manual page.
//!
//! Subcommands are one clap enum ([`Cmd`]): a new one is a variant, its argument struct and a
//! line in `main`.

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::process::exit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use rsplib::core::types::{
    PeId, PolicyInfo, PolicyType, PoolHandle, TransportAddress, TransportProtocol,
    TRANSPORT_USE_DATA_ONLY,
};
use rsplib::core::wire::{cause, AsapBody, AsapMessage, OperationError, PoolElement};
use rsplib::transport::{Association, Protocol, PPID_ASAP};

#[derive(Parser)]
#[command(
    name = "rsptool",
    version,
    about = "A small RSerPool pool element and pool user, for trying a registrar out",
    after_help = "Options may also be written rsplib-style with one dash (-registrar=ADDR).\n\
                  Addresses are host:port with names or numbers (localhost:3863, [::1]:3863)."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Register a pool element and keep it registered (answering keep-alives) until SIGINT or
    /// SIGTERM, then deregister it; one line per event on stdout.
    Pe(PeArgs),
    /// One handle resolution: one line per pool element ("PE 0x... ADDR:PORT ..."); exit
    /// code 2 if the pool is empty or unknown.
    Resolve(ResolveArgs),
    /// Join the ASAP announce group and print each Server Announce received; exit code 2 if
    /// none arrived.
    Announces(AnnouncesArgs),
    /// Resolve through the library, as rspHandleResolution() does (cache, registrar hunt;
    /// without --registrar the registrar is found by its announces).
    LibResolve(LibResolveArgs),
    /// Register a PE through the library, as classic PEs do: it re-registers every interval
    /// and hunts for another registrar among those given when its registrar is gone.
    LibPe(LibPeArgs),
    /// A registrar's peers and handlespace (pools, PEs, home registrar, policy, addresses),
    /// asked over ENRP.
    Hsdump(HsdumpArgs),
    /// Load generator: PEs register and answer keep-alives while PUs send handle resolutions
    /// back to back; prints resolutions per second, latency percentiles and (with
    /// --registrar-pid) the registrar's CPU time per resolution.
    Bench(BenchArgs),
    /// Streaming sessions that pool elements hand to each other (server-initiated handoff):
    /// `handoff pe` serves and hands off, `handoff pu` streams and checks every byte.
    #[command(subcommand)]
    Handoff(HandoffCmd),
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Transport {
    Tcp,
    Sctp,
}

/// How `rsptool bench`'s PUs wait for their answers.
#[derive(Clone, Copy, ValueEnum)]
enum PuWaitArg {
    /// A thread per PU, asleep in its receive: each answer wakes one, and on one host the
    /// registrar's send pays for that.
    Threads,
    /// All PUs on one thread with one epoll, asleep while no answer is there.
    Loop,
    /// All PUs on one thread that never sleeps: no answer wakes anyone, as with PUs on other
    /// hosts. Takes a core of its own.
    Spin,
}

impl From<PuWaitArg> for rsplib::registrar::loadgen::PuWait {
    fn from(w: PuWaitArg) -> Self {
        use rsplib::registrar::loadgen::PuWait;
        match w {
            PuWaitArg::Threads => PuWait::Threads,
            PuWaitArg::Loop => PuWait::Loop,
            PuWaitArg::Spin => PuWait::Spin,
        }
    }
}

impl From<Transport> for Protocol {
    fn from(t: Transport) -> Protocol {
        match t {
            Transport::Tcp => Protocol::Tcp,
            Transport::Sctp => Protocol::Sctp,
        }
    }
}

/// Where the registrar is and how to reach it.
#[derive(Args)]
struct RegistrarArgs {
    /// The registrar: host:port[,host:port...] (all addresses of one multihomed endpoint).
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_endpoints)]
    registrar: Endpoints,
    /// The pool handle.
    #[arg(long, value_name = "NAME")]
    poolhandle: String,
    /// Transport to the registrar.
    #[arg(long, value_enum, default_value = "tcp")]
    transport: Transport,
}

#[derive(Args)]
struct PeArgs {
    #[command(flatten)]
    target: RegistrarArgs,
    /// PE identifier (hexadecimal 0x... or decimal; default: from the process id).
    #[arg(long, value_parser = parse_u32, default_value = "0")]
    identifier: u32,
    /// The PE's (pretended) service port.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Policy: roundrobin, random, wrr:WEIGHT, wrand:WEIGHT, lu[:LOAD].
    #[arg(long, value_parser = parse_policy, default_value = "roundrobin")]
    policy: PolicyInfo,
    /// Registration life in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    life: u32,
    /// Register again every this many milliseconds.
    #[arg(long, default_value_t = 10_000)]
    reregister: u64,
    /// Do not answer keep-alives (the registrar then removes the PE).
    #[arg(long)]
    ignore_keepalives: bool,
}

#[derive(Args)]
struct ResolveArgs {
    #[command(flatten)]
    target: RegistrarArgs,
    /// PEs wanted (the Handle Resolution option); default: the registrar's choice.
    #[arg(long)]
    items: Option<u32>,
}

#[derive(Args)]
struct AnnouncesArgs {
    /// The announce group.
    #[arg(long, default_value = "239.0.0.50:3863")]
    group: SocketAddr,
    /// Stop after this many announces.
    #[arg(long)]
    count: Option<u64>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
}

#[derive(Args)]
struct LibResolveArgs {
    /// The pool handle.
    #[arg(long, value_name = "NAME")]
    poolhandle: String,
    /// A static registrar (host:port); repeatable, hunted in order; without it, announces.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_endpoint)]
    registrar: Vec<SocketAddr>,
    /// Transport to the registrar.
    #[arg(long, value_enum, default_value = "tcp")]
    transport: Transport,
}

#[derive(Args)]
struct LibPeArgs {
    /// The pool handle.
    #[arg(long, value_name = "NAME")]
    poolhandle: String,
    /// PE identifier (hexadecimal 0x... or decimal; 0: the library draws one).
    #[arg(long, value_parser = parse_u32, default_value = "0")]
    identifier: u32,
    /// A static registrar (host:port); repeatable, hunted in order.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_endpoint)]
    registrar: Vec<SocketAddr>,
    /// The PE's (pretended) service port on 127.0.0.1.
    #[arg(long, default_value_t = 7000)]
    port: u16,
    /// Register again every this many milliseconds.
    #[arg(long, default_value_t = 1000)]
    reregister: u64,
}

#[derive(Args)]
struct HsdumpArgs {
    /// The registrar's ENRP endpoint, host[:port] (port 9901 unless given).
    #[arg(value_name = "HOST[:PORT]", value_parser = parse_enrp_endpoint)]
    registrar: SocketAddr,
    /// Transport to the registrar.
    #[arg(long, value_enum, default_value = "tcp")]
    transport: Transport,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
}

#[derive(Subcommand)]
enum HandoffCmd {
    /// A PE (TCP, control channel) answering every message with as many numbered bytes and
    /// a cookie; reads `drain`, `stats`, `quit` on stdin.
    Pe(HandoffPeArgs),
    /// A PU streaming numbered bytes over sessions, checking every byte of the answers; one
    /// line per session, then a total with handoffs per second and latency percentiles.
    Pu(HandoffPuArgs),
}

#[derive(Args)]
struct HandoffPeArgs {
    /// The registrar (host:port, TCP).
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_endpoint)]
    registrar: SocketAddr,
    /// The pool handle.
    #[arg(long, value_name = "NAME", default_value = "HandoffPool")]
    poolhandle: String,
    /// PE identifier (hexadecimal 0x... or decimal; 0: random).
    #[arg(long, value_parser = parse_u32, default_value = "0")]
    identifier: u32,
    /// Hand each session off after every this many messages (0: never).
    #[arg(long, default_value_t = 0)]
    handoff_every: u64,
    /// Ask the receiver first (Handoff Offer).
    #[arg(long)]
    offer: bool,
    /// Refuse offers while this many sessions are open.
    #[arg(long)]
    limit: Option<usize>,
    /// Hand off to this PE (ID@ADDR:PORT, ID hexadecimal) instead of a policy choice.
    #[arg(long, value_name = "ID@ADDR:PORT")]
    handoff_to: Option<String>,
    /// Do not check the PU's numbering (for failover measurements after kill -9).
    #[arg(long)]
    no_check: bool,
    /// Transport to the registrar and of the PE's sessions.
    #[arg(long, value_enum, default_value = "tcp")]
    transport: Transport,
}

#[derive(Args)]
struct HandoffPuArgs {
    /// The registrar (host:port, TCP).
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_endpoint)]
    registrar: SocketAddr,
    /// The pool handle.
    #[arg(long, value_name = "NAME", default_value = "HandoffPool")]
    poolhandle: String,
    /// Sessions (one thread each).
    #[arg(long, default_value_t = 1)]
    sessions: usize,
    /// Messages per session.
    #[arg(long, default_value_t = 100)]
    messages: u64,
    /// Bytes per message.
    #[arg(long, default_value_t = 64)]
    chunk: usize,
    /// Pause between messages (milliseconds).
    #[arg(long, default_value_t = 0)]
    interval: u64,
    /// Refuse every handoff.
    #[arg(long)]
    refuse: bool,
    /// Do not check the answers' numbering or that every byte is answered (for failover
    /// measurements after kill -9, which lose what the dead PE had not covered by a cookie).
    #[arg(long)]
    no_check: bool,
    /// Transport to the registrar (the sessions use what the PEs registered).
    #[arg(long, value_enum, default_value = "tcp")]
    transport: Transport,
}

fn handoff(cmd: HandoffCmd) -> i32 {
    use rsplib::library::stream;
    match cmd {
        HandoffCmd::Pe(a) => stream::run_pe(stream::StreamPe {
            registrar: a.registrar,
            pool: a.poolhandle,
            id: a.identifier,
            handoff_every: a.handoff_every,
            offer: a.offer,
            limit: a.limit,
            handoff_to: a.handoff_to,
            check: !a.no_check,
            sctp: matches!(a.transport, Transport::Sctp),
        }),
        HandoffCmd::Pu(a) => stream::run_pu(stream::StreamPu {
            registrar: a.registrar,
            pool: a.poolhandle,
            sessions: a.sessions,
            messages: a.messages,
            chunk: a.chunk.clamp(1, 65536),
            interval: Duration::from_millis(a.interval),
            refuse: a.refuse,
            check: !a.no_check,
            sctp: matches!(a.transport, Transport::Sctp),
        }),
    }
}

#[derive(Args)]
struct BenchArgs {
    #[command(flatten)]
    target: RegistrarArgs,
    /// Pool users (one connection each).
    #[arg(long, default_value_t = 10)]
    pus: usize,
    /// How the PUs wait for their answers.
    #[arg(long, value_enum, default_value = "threads")]
    pu_wait: PuWaitArg,
    /// Pool elements (one connection and thread each).
    #[arg(long, default_value_t = 3)]
    pes: usize,
    /// Seconds of resolutions.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// PEs wanted per resolution; default: the registrar's choice.
    #[arg(long)]
    items: Option<u32>,
    /// Resolutions each PU keeps outstanding (1: send, wait for the answer, send again).
    #[arg(long, default_value_t = 1)]
    depth: usize,
    /// The registrar's process id: report its CPU time per resolution (and its memory
    /// with --pes-per-connection).
    #[arg(long)]
    registrar_pid: Option<u32>,
    /// Supervision load instead of resolutions: --connections connections each register this
    /// many PEs and answer every keep-alive for --seconds once all are registered.
    #[arg(long)]
    pes_per_connection: Option<usize>,
    /// Connections of the supervision load.
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// Spread the supervision load's PEs over this many pools (<poolhandle>-<i>).
    #[arg(long, default_value_t = 1)]
    pools: usize,
    /// First source address of the supervision load's connections.
    #[arg(long, default_value = "127.0.0.1")]
    source: IpAddr,
    /// Source addresses in all, counting up from --source (IPv4).
    #[arg(long, default_value_t = 1)]
    source_count: u32,
    /// Threads driving the supervision load's connections.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Connections registering at once.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// Give up registering after this many seconds.
    #[arg(long, default_value_t = 600)]
    register_timeout: u64,
    /// The registrar's ENRP endpoint: at the end its handle table is read and compared.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_enrp_endpoint)]
    enrp: Option<SocketAddr>,
    /// Progress lines on stderr every this many seconds (0: none).
    #[arg(long, default_value_t = 10)]
    progress: u64,
}

/// The addresses of one registrar endpoint.
#[derive(Clone, Debug)]
struct Endpoints(Vec<SocketAddr>);

/// `host:port` with a name or a number; without a port, ASAP's 3863.
fn parse_endpoint(s: &str) -> Result<SocketAddr, String> {
    endpoint(s, 3863)
}

/// `host[:port]` with a name or a number; without a port, ENRP's 9901.
fn parse_enrp_endpoint(s: &str) -> Result<SocketAddr, String> {
    endpoint(s, 9901)
}

fn endpoint(s: &str, default_port: u16) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = s.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, default_port));
    }
    let with_port = if s.contains(':') {
        s.to_string()
    } else {
        format!("{s}:{default_port}")
    };
    with_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {s}: {e}"))?
        .next()
        .ok_or_else(|| format!("{s} has no address"))
}

fn parse_endpoints(s: &str) -> Result<Endpoints, String> {
    s.split(',')
        .map(parse_endpoint)
        .collect::<Result<_, _>>()
        .map(Endpoints)
}

fn parse_number(v: &str) -> Option<u64> {
    match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

fn parse_u32(v: &str) -> Result<u32, String> {
    parse_number(v)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| format!("not a 32-bit number: {v}"))
}

fn parse_policy(v: &str) -> Result<PolicyInfo, String> {
    let (name, arg) = v.split_once(':').unwrap_or((v, ""));
    let value = || parse_number(arg).map(|n| n as u32);
    let bad = || format!("bad policy {v} (roundrobin, random, wrr:W, wrand:W, lu[:LOAD])");
    let p = match name.to_ascii_lowercase().as_str() {
        "roundrobin" | "rr" => PolicyInfo::new(PolicyType::RoundRobin),
        "random" => PolicyInfo::new(PolicyType::Random),
        "weightedroundrobin" | "wrr" => {
            let mut p = PolicyInfo::new(PolicyType::WeightedRoundRobin);
            p.weight = value().ok_or_else(bad)?;
            p
        }
        "weightedrandom" | "wrand" => {
            let mut p = PolicyInfo::new(PolicyType::WeightedRandom);
            p.weight = value().ok_or_else(bad)?;
            p
        }
        "leastused" | "lu" => {
            let mut p = PolicyInfo::new(PolicyType::LeastUsed);
            p.load = value().unwrap_or(0);
            p
        }
        _ => return Err(bad()),
    };
    Ok(p)
}

/// "0x0005 policy inconsistent": the cause codes of an Operation Error with their names.
fn causes(e: &OperationError) -> String {
    let list: Vec<String> = e
        .causes
        .iter()
        .map(|c| format!("0x{:04x} {}", c.code, cause::name(c.code).to_lowercase()))
        .collect();
    if list.is_empty() {
        format!(
            "0x{:04x} {}",
            e.code(),
            cause::name(e.code()).to_lowercase()
        )
    } else {
        list.join(", ")
    }
}

fn fail(msg: &str) -> ! {
    let _ = writeln!(io::stderr(), "rsptool: {msg}");
    exit(1)
}

/// The options of one PE or PU run.
struct Options {
    registrar: Vec<SocketAddr>,
    pool: PoolHandle,
    protocol: Protocol,
}

impl From<&RegistrarArgs> for Options {
    fn from(a: &RegistrarArgs) -> Options {
        Options {
            registrar: a.registrar.0.clone(),
            pool: PoolHandle::new(a.poolhandle.as_bytes()),
            protocol: a.transport.into(),
        }
    }
}

fn connect(o: &Options) -> Association {
    Association::connect(o.protocol, &o.registrar, Duration::from_secs(5), PPID_ASAP)
        .unwrap_or_else(|e| fail(&format!("cannot connect to {:?}: {e}", o.registrar)))
}

fn send(assoc: &mut Association, body: AsapBody) {
    let bytes = AsapMessage::new(body)
        .to_bytes()
        .unwrap_or_else(|e| fail(&format!("cannot encode: {e}")));
    assoc
        .send(PPID_ASAP, &bytes)
        .unwrap_or_else(|e| fail(&format!("send failed: {e}")));
}

/// Waits for the next ASAP message; `None` on timeout. Exits when the registrar closes.
fn receive(assoc: &mut Association, timeout: Duration) -> Option<AsapMessage> {
    match assoc.recv(Some(timeout)) {
        Ok(Some((_, data))) => match AsapMessage::decode(&data) {
            Ok(d) => Some(d.message),
            Err(e) => {
                println!("undecodable message from the registrar: {e}");
                None
            }
        },
        Ok(None) => None,
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            println!("registrar closed the connection");
            exit(3)
        }
        Err(e) => fail(&format!("receive failed: {e}")),
    }
}

fn local_ip(o: &Options) -> IpAddr {
    // The PE offers its service on the address it reaches the registrar from.
    std::net::UdpSocket::bind(("0.0.0.0", 0))
        .and_then(|s| s.connect(o.registrar[0]).map(|_| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip())
        .unwrap_or(o.registrar[0].ip())
}

fn pe(a: PeArgs) {
    let o = Options::from(&a.target);
    let id = if a.identifier != 0 {
        a.identifier
    } else {
        (std::process::id() ^ 0x5a5a_0000) | 1
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone())
            .unwrap_or_else(|e| fail(&format!("cannot handle signals: {e}")));
    }
    let mut assoc = connect(&o);
    let mut user = TransportAddress::new(TransportProtocol::Tcp, a.port.max(1), vec![local_ip(&o)]);
    user.transport_use = TRANSPORT_USE_DATA_ONLY;
    let mut element = PoolElement::new(PeId(id), user, a.policy);
    element.registration_life = a.life;
    let registration = AsapBody::Registration {
        pool_handle: o.pool.clone(),
        element,
    };
    send(&mut assoc, registration.clone());
    let mut next_rereg = Instant::now() + Duration::from_millis(a.reregister);
    let mut registered = false;
    while !stop.load(Ordering::Relaxed) {
        if registered && Instant::now() >= next_rereg {
            send(&mut assoc, registration.clone());
            next_rereg = Instant::now() + Duration::from_millis(a.reregister);
        }
        let Some(m) = receive(&mut assoc, Duration::from_millis(100)) else {
            continue;
        };
        match m.body {
            AsapBody::RegistrationResponse { pe_id, error, .. } => {
                if let Some(e) = error {
                    println!(
                        "registration of PE 0x{:08x} rejected: cause {}",
                        pe_id.0,
                        causes(&e)
                    );
                    exit(4);
                }
                if !registered {
                    println!("registered PE 0x{:08x} in pool \"{}\"", pe_id.0, o.pool);
                }
                registered = true;
            }
            AsapBody::EndpointKeepAlive {
                server_id,
                pool_handle,
                ..
            } => {
                if a.ignore_keepalives {
                    println!("keep-alive from registrar {server_id} ignored");
                } else {
                    send(
                        &mut assoc,
                        AsapBody::EndpointKeepAliveAck {
                            pool_handle,
                            pe_id: PeId(id),
                        },
                    );
                    println!("keep-alive from registrar {server_id} answered");
                }
            }
            other => println!("unexpected message type {}", other.msg_type()),
        }
        let _ = io::stdout().flush();
    }
    send(
        &mut assoc,
        AsapBody::Deregistration {
            pool_handle: o.pool.clone(),
            pe_id: PeId(id),
        },
    );
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if let Some(AsapBody::DeregistrationResponse { error, .. }) =
            receive(&mut assoc, Duration::from_millis(200)).map(|m| m.body)
        {
            match error {
                None => println!("deregistered PE 0x{id:08x}"),
                Some(e) => println!("deregistration failed: cause {}", causes(&e)),
            }
            return;
        }
    }
    println!("no deregistration response");
}

fn resolve(a: ResolveArgs) {
    let o = Options::from(&a.target);
    let mut assoc = connect(&o);
    send(
        &mut assoc,
        AsapBody::HandleResolution {
            pool_handle: o.pool.clone(),
            items: a.items,
        },
    );
    match receive(&mut assoc, Duration::from_secs(5)).map(|m| m.body) {
        Some(AsapBody::HandleResolutionResponse {
            elements, error, ..
        }) => {
            if let Some(e) = error {
                println!("pool \"{}\": not found (cause {})", o.pool, causes(&e));
                exit(2);
            }
            for e in &elements {
                let t = &e.user_transport;
                let addrs: Vec<String> = t.addresses.iter().map(|a| a.to_string()).collect();
                println!(
                    "PE 0x{:08x} {}:{} {} {}",
                    e.id.0,
                    addrs.join(","),
                    t.port,
                    t.protocol.name(),
                    e.policy.policy.name()
                );
            }
            if elements.is_empty() {
                exit(2);
            }
        }
        Some(other) => fail(&format!("unexpected answer type {}", other.msg_type())),
        None => fail("no answer from the registrar"),
    }
}

/// Prints the Server Announces arriving on the ASAP announce group.
fn announces(a: AnnouncesArgs) {
    let group = a.group;
    let count = a.count.unwrap_or(u64::MAX);
    let timeout = Duration::from_secs(a.timeout);
    let IpAddr::V4(ip) = group.ip() else {
        fail("--group must be IPv4")
    };
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)
        .unwrap_or_else(|e| fail(&format!("socket: {e}")));
    let _ = s.set_reuse_address(true);
    let _ = s.set_reuse_port(true);
    s.bind(&SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), group.port()).into())
        .unwrap_or_else(|e| fail(&format!("bind: {e}")));
    s.join_multicast_v4(&ip, &std::net::Ipv4Addr::UNSPECIFIED)
        .unwrap_or_else(|e| fail(&format!("cannot join {ip}: {e}")));
    let socket: std::net::UdpSocket = s.into();
    let deadline = Instant::now() + timeout;
    let mut seen = 0;
    let mut buf = [0u8; 2048];
    while seen < count {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            exit(if seen > 0 { 0 } else { 2 });
        }
        socket.set_read_timeout(Some(left)).unwrap();
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        match AsapMessage::decode(&buf[..n]).map(|d| d.message.body) {
            Ok(AsapBody::ServerAnnounce {
                server_id,
                transports,
            }) => {
                println!(
                    "announce from registrar {server_id} at {from} ({} transport parameters)",
                    transports.len()
                );
                seen += 1;
            }
            _ => println!("not an ASAP Server Announce from {from}"),
        }
        let _ = io::stdout().flush();
    }
}

/// One resolution through the library (cache, registrar hunt, announces).
fn lib_resolve(a: LibResolveArgs) {
    let pool = PoolHandle::new(a.poolhandle.as_bytes());
    let cfg = rsplib::library::LibraryConfig {
        transport: a.transport.into(),
        ..Default::default()
    };
    let registrars = a.registrar;
    let lib = rsplib::library::Library::start(cfg)
        .unwrap_or_else(|e| fail(&format!("cannot start: {e}")));
    for r in registrars {
        lib.add_static_registrar(vec![r]);
    }
    match lib.resolve(&pool) {
        Ok(Some(pe)) => {
            let t = &pe.user_transport;
            println!(
                "PE 0x{:08x} {}:{}",
                pe.id.0,
                t.addresses
                    .first()
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
                t.port
            );
        }
        Ok(None) => {
            println!("pool \"{pool}\": not found");
            exit(2)
        }
        Err(e) => {
            println!("resolution failed: {e}");
            exit(3)
        }
    }
    lib.shutdown();
}

/// A PE registered through the library, as classic PEs are: it re-registers every interval,
/// and when its registrar is gone the library hunts for another among those given.
fn lib_pe(a: LibPeArgs) {
    let pool = PoolHandle::new(a.poolhandle.as_bytes());
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone())
            .unwrap_or_else(|e| fail(&format!("cannot handle signals: {e}")));
    }
    let lib = rsplib::library::Library::start(rsplib::library::LibraryConfig::default())
        .unwrap_or_else(|e| fail(&format!("cannot start: {e}")));
    for r in a.registrar {
        lib.add_static_registrar(vec![r]);
    }
    let mut user = TransportAddress::new(
        TransportProtocol::Tcp,
        a.port,
        vec!["127.0.0.1".parse().expect("address")],
    );
    user.transport_use = TRANSPORT_USE_DATA_ONLY;
    let mut element = PoolElement::new(
        PeId(a.identifier),
        user,
        PolicyInfo::new(PolicyType::RoundRobin),
    );
    element.registration_life = 30_000;
    let every = Duration::from_millis(a.reregister);
    let mut registered = false;
    while !stop.load(Ordering::Relaxed) {
        match lib.register(pool.clone(), element.clone()) {
            Ok(pe) if !registered => {
                println!("registered PE 0x{:08x} in pool \"{pool}\"", pe.0);
                registered = true;
            }
            Ok(_) => {}
            Err(e) => {
                println!("registration failed: {e:?}");
                registered = false;
            }
        }
        let _ = io::stdout().flush();
        let until = Instant::now() + every;
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    lib.shutdown();
}

/// A registrar's peers and handlespace, asked over ENRP.
fn hsdump(a: HsdumpArgs) {
    match rsplib::registrar::hsdump::query(
        a.registrar,
        a.transport.into(),
        Duration::from_secs(a.timeout),
    ) {
        Ok(dump) => print!("{}", rsplib::registrar::hsdump::format(&dump)),
        Err(e) => fail(&e),
    }
}

/// rsplib-style `-option=value` (one dash, a long name) as clap's `--option=value`.
fn double_dash(arg: String) -> String {
    let long = arg.len() > 2
        && arg.starts_with('-')
        && !arg.starts_with("--")
        && arg.as_bytes()[1].is_ascii_alphabetic();
    if long {
        format!("-{arg}")
    } else {
        arg
    }
}

fn bench(a: BenchArgs) {
    if let Some(per) = a.pes_per_connection {
        return bench_supervise(a, per);
    }
    let cfg = rsplib::registrar::loadgen::LoadConfig {
        registrar: a.target.registrar.0.clone(),
        protocol: a.target.transport.into(),
        pool: PoolHandle::new(a.target.poolhandle.as_bytes()),
        pus: a.pus.max(1),
        pes: a.pes,
        duration: Duration::from_secs(a.seconds.max(1)),
        items: a.items,
        depth: a.depth.max(1),
        registrar_pid: a.registrar_pid,
        pu_wait: a.pu_wait.into(),
    };
    match rsplib::registrar::loadgen::run(&cfg) {
        Ok(r) => {
            print!("{}", r.format());
            if r.resolutions == 0 {
                exit(2);
            }
        }
        Err(e) => fail(&e),
    }
}

fn bench_supervise(a: BenchArgs, per: usize) {
    use rsplib::registrar::loadgen::supervise;
    let sources: Vec<IpAddr> = match a.source {
        IpAddr::V4(v4) => (0..a.source_count.max(1))
            .map(|i| IpAddr::V4(std::net::Ipv4Addr::from(u32::from(v4).wrapping_add(i))))
            .collect(),
        v6 => vec![v6],
    };
    let run_s = a.register_timeout + a.seconds + 600;
    let cfg = supervise::SuperviseConfig {
        registrar: a.target.registrar.0[0],
        fallback: vec![],
        enrp: a.enrp,
        pool: a.target.poolhandle.clone(),
        pools: a.pools.max(1),
        connections: a.connections,
        pes_per_connection: per,
        sources,
        threads: a.threads.max(1),
        in_flight: a.in_flight.max(1),
        duration: Duration::from_secs(a.seconds),
        register_timeout: Duration::from_secs(a.register_timeout),
        life_ms: (run_s * 1000).min(u64::from(u32::MAX)) as u32,
        registrar_pid: a.registrar_pid,
        progress: (a.progress > 0).then(|| Duration::from_secs(a.progress)),
    };
    match supervise::run(&cfg) {
        Ok(r) => {
            print!("{}", r.format());
            if r.pes_lost() > 0 || r.pes_registered < r.pes_wanted as u64 {
                exit(2);
            }
        }
        Err(e) => fail(&e),
    }
}

fn main() {
    let cli = Cli::parse_from(std::env::args().map(double_dash));
    match cli.command {
        Cmd::Pe(a) => pe(a),
        Cmd::Resolve(a) => resolve(a),
        Cmd::Announces(a) => announces(a),
        Cmd::LibResolve(a) => lib_resolve(a),
        Cmd::LibPe(a) => lib_pe(a),
        Cmd::Hsdump(a) => hsdump(a),
        Cmd::Bench(a) => bench(a),
        Cmd::Handoff(c) => exit(handoff(c)),
        Cmd::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "rsptool", &mut io::stdout())
        }
    }
}
