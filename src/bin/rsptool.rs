//! rsptool: a small ASAP client built on the core codec and transport, for trying a registrar
//! out and for the registrar's tests.
//!
//!   rsptool pe -registrar=ADDR:PORT -poolhandle=NAME [-identifier=0x..] [-port=N]
//!              [-policy=roundrobin|wrr:W|lu:LOAD] [-life=MS] [-transport=tcp|sctp]
//!              [-ignore-keepalives] [-reregister=MS]
//!       registers a pool element and keeps it alive (answers keep-alives) until SIGTERM/SIGINT,
//!       then deregisters. Prints one line per event on stdout.
//!   rsptool resolve -registrar=ADDR:PORT -poolhandle=NAME [-items=N] [-transport=tcp|sctp]
//!       one handle resolution: prints one line per PE ("PE 0x... ADDR:PORT"), exit 2 if none.
//!   rsptool announces [-group=239.0.0.50:3863] [-count=N] [-timeout=S]
//!       joins the ASAP announce group and prints each Server Announce received.
//!   rsptool lib-resolve -poolhandle=NAME [-registrar=ADDR:PORT]... [-transport=tcp|sctp]
//!       resolves through the library (as rspHandleResolution does): without -registrar it
//!       finds a registrar by its announces.
//!   rsptool hsdump ADDR[:PORT] [-transport=tcp|sctp] [-timeout=S]
//!       a registrar's peers and handlespace (pools, PEs, home registrar, policy, addresses),
//!       asked over ENRP (port 9901 unless given).

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::process::exit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rsplib::core::types::{
    PeId, PolicyInfo, PolicyType, PoolHandle, TransportAddress, TransportProtocol,
    TRANSPORT_USE_DATA_ONLY,
};
use rsplib::core::wire::{AsapBody, AsapMessage, PoolElement};
use rsplib::transport::{Association, Protocol, PPID_ASAP};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

struct Options {
    registrar: Vec<SocketAddr>,
    pool: PoolHandle,
    id: u32,
    port: u16,
    policy: PolicyInfo,
    life_ms: u32,
    protocol: Protocol,
    ignore_keepalives: bool,
    reregister_ms: u64,
    items: Option<u32>,
}

fn fail(msg: &str) -> ! {
    let _ = writeln!(io::stderr(), "rsptool: {msg}");
    exit(1)
}

fn parse_number(v: &str) -> Option<u64> {
    match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

fn parse_policy(v: &str) -> Option<PolicyInfo> {
    let (name, arg) = v.split_once(':').unwrap_or((v, ""));
    let value = || parse_number(arg).map(|n| n as u32);
    let p = match name.to_ascii_lowercase().as_str() {
        "roundrobin" | "rr" => PolicyInfo::new(PolicyType::RoundRobin),
        "random" => PolicyInfo::new(PolicyType::Random),
        "weightedroundrobin" | "wrr" => {
            let mut p = PolicyInfo::new(PolicyType::WeightedRoundRobin);
            p.weight = value()?;
            p
        }
        "weightedrandom" | "wrand" => {
            let mut p = PolicyInfo::new(PolicyType::WeightedRandom);
            p.weight = value()?;
            p
        }
        "leastused" | "lu" => {
            let mut p = PolicyInfo::new(PolicyType::LeastUsed);
            p.load = value().unwrap_or(0);
            p
        }
        _ => return None,
    };
    Some(p)
}

fn parse(args: &[String]) -> Options {
    let mut o = Options {
        registrar: Vec::new(),
        pool: PoolHandle::default(),
        id: 0,
        port: 0,
        policy: PolicyInfo::new(PolicyType::RoundRobin),
        life_ms: 30_000,
        protocol: Protocol::Tcp,
        ignore_keepalives: false,
        reregister_ms: 10_000,
        items: None,
    };
    for a in args {
        let (k, v) = a.split_once('=').unwrap_or((a.as_str(), ""));
        let num = || parse_number(v).unwrap_or_else(|| fail(&format!("bad value in {a}")));
        match k {
            "-registrar" => {
                o.registrar = v
                    .split(',')
                    .map(|s| {
                        s.parse()
                            .unwrap_or_else(|_| fail(&format!("bad address {s}")))
                    })
                    .collect()
            }
            "-poolhandle" => o.pool = PoolHandle::new(v.as_bytes()),
            "-identifier" => o.id = num() as u32,
            "-port" => o.port = num() as u16,
            "-policy" => {
                o.policy = parse_policy(v).unwrap_or_else(|| fail(&format!("bad policy {v}")))
            }
            "-life" => o.life_ms = num() as u32,
            "-reregister" => o.reregister_ms = num(),
            "-items" => o.items = Some(num() as u32),
            "-transport" => {
                o.protocol = match v {
                    "tcp" => Protocol::Tcp,
                    "sctp" => Protocol::Sctp,
                    _ => fail("-transport must be tcp or sctp"),
                }
            }
            "-ignore-keepalives" => o.ignore_keepalives = true,
            _ => fail(&format!("unknown option {a}")),
        }
    }
    if o.registrar.is_empty() {
        fail("-registrar=ADDR:PORT is required");
    }
    if o.pool.is_empty() {
        fail("-poolhandle=NAME is required");
    }
    o
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

fn pe(o: Options) {
    let id = if o.id != 0 {
        o.id
    } else {
        (std::process::id() ^ 0x5a5a_0000) | 1
    };
    let mut assoc = connect(&o);
    let mut user = TransportAddress::new(TransportProtocol::Tcp, o.port.max(1), vec![local_ip(&o)]);
    user.transport_use = TRANSPORT_USE_DATA_ONLY;
    let mut element = PoolElement::new(PeId(id), user, o.policy);
    element.registration_life = o.life_ms;
    let registration = AsapBody::Registration {
        pool_handle: o.pool.clone(),
        element,
    };
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
    }
    send(&mut assoc, registration.clone());
    let mut next_rereg = Instant::now() + Duration::from_millis(o.reregister_ms);
    let mut registered = false;
    while !STOP.load(Ordering::Relaxed) {
        if registered && Instant::now() >= next_rereg {
            send(&mut assoc, registration.clone());
            next_rereg = Instant::now() + Duration::from_millis(o.reregister_ms);
        }
        let Some(m) = receive(&mut assoc, Duration::from_millis(100)) else {
            continue;
        };
        match m.body {
            AsapBody::RegistrationResponse { pe_id, error, .. } => {
                if let Some(e) = error {
                    println!(
                        "registration of PE 0x{:08x} rejected: cause 0x{:04x}",
                        pe_id.0,
                        e.code()
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
                if o.ignore_keepalives {
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
                Some(e) => println!("deregistration failed: cause 0x{:04x}", e.code()),
            }
            return;
        }
    }
    println!("no deregistration response");
}

fn resolve(o: Options) {
    let mut assoc = connect(&o);
    send(
        &mut assoc,
        AsapBody::HandleResolution {
            pool_handle: o.pool.clone(),
            items: o.items,
        },
    );
    match receive(&mut assoc, Duration::from_secs(5)).map(|m| m.body) {
        Some(AsapBody::HandleResolutionResponse {
            elements, error, ..
        }) => {
            if let Some(e) = error {
                println!("pool \"{}\": not found (cause 0x{:04x})", o.pool, e.code());
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
fn announces(args: &[String]) {
    let mut group: SocketAddr = "239.0.0.50:3863".parse().unwrap();
    let mut count = u64::MAX;
    let mut timeout = Duration::from_secs(10);
    for a in args {
        let (k, v) = a.split_once('=').unwrap_or((a.as_str(), ""));
        match k {
            "-group" => {
                group = v
                    .parse()
                    .unwrap_or_else(|_| fail(&format!("bad group {v}")))
            }
            "-count" => count = parse_number(v).unwrap_or_else(|| fail("bad -count")),
            "-timeout" => {
                timeout =
                    Duration::from_secs(parse_number(v).unwrap_or_else(|| fail("bad -timeout")))
            }
            _ => fail(&format!("unknown option {a}")),
        }
    }
    let IpAddr::V4(ip) = group.ip() else {
        fail("-group must be IPv4")
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
fn lib_resolve(args: &[String]) {
    let mut pool = PoolHandle::default();
    let mut cfg = rsplib::library::LibraryConfig::default();
    let mut registrars = Vec::new();
    for a in args {
        let (k, v) = a.split_once('=').unwrap_or((a.as_str(), ""));
        match k {
            "-poolhandle" => pool = PoolHandle::new(v.as_bytes()),
            // Repeatable: the library hunts among them in order.
            "-registrar" => registrars.push(
                v.parse::<SocketAddr>()
                    .unwrap_or_else(|_| fail("bad -registrar")),
            ),
            "-transport" => {
                cfg.transport = match v {
                    "tcp" => Protocol::Tcp,
                    "sctp" => Protocol::Sctp,
                    _ => fail("-transport must be tcp or sctp"),
                }
            }
            _ => fail(&format!("unknown option {a}")),
        }
    }
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

/// `rsptool lib-pe -poolhandle=NAME -identifier=ID -registrar=ADDR:PORT... [-reregister=MS]`:
/// a PE registered through the library, as classic PEs are: it re-registers every interval,
/// and when its registrar is gone the library hunts for another among those given.
fn lib_pe(args: &[String]) {
    let mut pool = PoolHandle::default();
    let mut id = 0u32;
    let mut port = 7000u16;
    let mut every = Duration::from_millis(1000);
    let lib = rsplib::library::Library::start(rsplib::library::LibraryConfig::default())
        .unwrap_or_else(|e| fail(&format!("cannot start: {e}")));
    for a in args {
        let (k, v) = a.split_once('=').unwrap_or((a.as_str(), ""));
        match k {
            "-poolhandle" => pool = PoolHandle::new(v.as_bytes()),
            "-identifier" => {
                id = parse_number(v)
                    .and_then(|n| u32::try_from(n).ok())
                    .unwrap_or_else(|| fail("bad -identifier"))
            }
            "-port" => port = v.parse().unwrap_or_else(|_| fail("bad -port")),
            "-reregister" => {
                every = Duration::from_millis(v.parse().unwrap_or_else(|_| fail("bad -reregister")))
            }
            "-registrar" => lib.add_static_registrar(vec![v
                .parse::<SocketAddr>()
                .unwrap_or_else(|_| fail("bad -registrar"))]),
            _ => fail(&format!("unknown option {a}")),
        }
    }
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
    }
    let mut user = TransportAddress::new(
        TransportProtocol::Tcp,
        port,
        vec!["127.0.0.1".parse().expect("address")],
    );
    user.transport_use = TRANSPORT_USE_DATA_ONLY;
    let mut element = PoolElement::new(PeId(id), user, PolicyInfo::new(PolicyType::RoundRobin));
    element.registration_life = 30_000;
    let mut registered = false;
    while !STOP.load(Ordering::Relaxed) {
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
        while Instant::now() < until && !STOP.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    lib.shutdown();
}

/// `rsptool hsdump ADDR[:PORT] [-transport=tcp|sctp] [-timeout=S]`: a registrar's peers and
/// handlespace, asked over ENRP (port 9901 unless given).
fn hsdump(args: &[String]) {
    let mut addr = None;
    let mut protocol = Protocol::Tcp;
    let mut timeout = Duration::from_secs(10);
    for a in args {
        match a.split_once('=') {
            Some(("-transport", "tcp")) => protocol = Protocol::Tcp,
            Some(("-transport", "sctp")) => protocol = Protocol::Sctp,
            Some(("-timeout", v)) => {
                timeout = Duration::from_secs(v.parse().unwrap_or_else(|_| fail("bad -timeout")))
            }
            None if addr.is_none() => {
                addr = Some(
                    rsplib::registrar::config::parse_address(a, 9901)
                        .unwrap_or_else(|| fail(&format!("bad address \"{a}\""))),
                )
            }
            _ => fail(&format!("unknown hsdump option \"{a}\"")),
        }
    }
    let addr =
        addr.unwrap_or_else(|| fail("usage: rsptool hsdump ADDR[:PORT] [-transport=tcp|sctp]"));
    match rsplib::registrar::hsdump::query(addr, protocol, timeout) {
        Ok(dump) => print!("{}", rsplib::registrar::hsdump::format(&dump)),
        Err(e) => fail(&e),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("pe") => pe(parse(&args[1..])),
        Some("resolve") => resolve(parse(&args[1..])),
        Some("announces") => announces(&args[1..]),
        Some("lib-resolve") => lib_resolve(&args[1..]),
        Some("hsdump") => hsdump(&args[1..]),
        Some("lib-pe") => lib_pe(&args[1..]),
        _ => {
            eprintln!(
                "usage: rsptool pe|resolve|announces|lib-resolve|hsdump [options] (see the source's head)"
            );
            exit(1)
        }
    }
}
