//! The registrar's command line: rsplib 3.4's option names and meanings, so existing init
//! scripts keep working, plus `-transport=`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

pub use crate::core::registrar::{AddressPrefix, AddressScope};
use crate::transport::Selection;

/// Default ASAP announce group (rsplib 3.x).
pub const ASAP_ANNOUNCE_DEFAULT: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(239, 0, 0, 50)), 3863);
/// Default ENRP presence group (rsplib 3.x).
pub const ENRP_ANNOUNCE_DEFAULT: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(239, 0, 0, 51)), 9901);

/// Default `-maxpesperhost=`.
pub const DEFAULT_MAX_PES_PER_HOST: u32 = 16_384;
/// Default `-maxpesperpool=`.
pub const DEFAULT_MAX_PES_PER_POOL: u32 = 65_536;
/// Default `-maxconnections=`.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 16_384;
/// Default `-maxconnectionsperhost=`.
pub const DEFAULT_MAX_CONNECTIONS_PER_HOST: u32 = 1_024;

/// Everything the registrar is configured with.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub asap: Vec<SocketAddr>,
    pub asap_announce: Option<SocketAddr>,
    pub enrp: Vec<SocketAddr>,
    pub enrp_announce: Option<SocketAddr>,
    pub peers: Vec<SocketAddr>,
    pub identifier: Option<u32>,
    pub max_bad_pe_reports: u32,
    /// Handle resolutions per second and PU; `None` = no limit.
    pub max_hr_rate: Option<u32>,
    /// Endpoint Unreachable reports per second and PU; `None` = no limit.
    pub max_eu_rate: Option<u32>,
    pub max_hr_items: u32,
    pub keepalive_transmission_interval_ms: u64,
    pub keepalive_timeout_interval_ms: u64,
    pub server_announce_cycle_ms: u64,
    pub min_address_scope: AddressScope,
    pub transport: Selection,
    pub log_level: u32,
    pub log_file: Option<(PathBuf, bool)>,
    pub quiet: bool,
    pub pid_file: Option<PathBuf>,
    /// PEs registered from one host (source address); `None` = no limit.
    pub max_pes_per_host: Option<u32>,
    /// PEs in one pool; `None` = no limit.
    pub max_pes_per_pool: Option<u32>,
    /// Open ASAP/ENRP connections in all; `None` = no limit.
    pub max_connections: Option<u32>,
    /// Open connections from one host; `None` = no limit.
    pub max_connections_per_host: Option<u32>,
    /// A connection with no PE and no message for this long is closed (rsplib's SCTP autoclose).
    pub autoclose_timeout_s: u64,
    /// A connection that holds an incomplete message, or does not take our output, for this
    /// long is closed.
    pub stall_timeout_ms: u64,
    /// Event-loop threads (`-threads=`, 1 … [`MAX_THREADS`]): the first runs everything; the
    /// others serve ASAP connections over TCP, which the first deals out to them in turn.
    pub threads: usize,
    /// Hosts that may query the handlespace over ENRP as tools (hsdump); `-peer=` hosts always may.
    pub enrp_allow: Vec<AddressPrefix>,
    /// ENRP timing and paging (rsplib 3.4's `-peer…`, `-mentor…`, `-takeover…` options).
    pub enrp_timing: EnrpTiming,
    /// Everything else of rsplib 3.4's command line: reports, statistics, daemon, failure test.
    pub extras: Extras,
}

/// rsplib 3.4's options around the protocol: Component Status reports, statistics files,
/// logging style, multicast TTL, failure test mode, and our `-metrics=`.
#[derive(Clone, Debug, PartialEq)]
pub struct Extras {
    /// Component Status reports to this monitor every this many ms (`-cspserver=`,
    /// `-cspinterval=`, or the environment's `CSP_SERVER`/`CSP_INTERVAL`).
    pub csp: Option<(SocketAddr, u64)>,
    /// rsplib's statistics table (`-statsfile=`), one line every `stats_interval_ms`.
    pub stats_file: Option<PathBuf>,
    /// `-statsinterval=` (10 ms … 1 h); without it, 1000 ms.
    pub stats_interval_ms: u64,
    /// rsplib's action log (`-actionlogfile=`): one line per ASAP/ENRP message.
    pub action_log: Option<PathBuf>,
    /// At the end, the totals and averages as OMNeT++ scalars into this file (`-scalar=`) …
    pub scalar_file: Option<PathBuf>,
    /// … under this object name (`-object=`, "registrar").
    pub object_name: String,
    /// `-disable-ipv6`: IPv4 endpoints only (IPv6 addresses are refused).
    pub disable_ipv6: bool,
    /// TTL of the multicast announces (`-announcettl=`, 1 … 255, 30).
    pub announce_ttl: u32,
    /// Failure test mode: run for an exponentially distributed time of this mean (s) …
    pub uptime_s: f64,
    /// … then stay down for one of this mean (s), and start again (`-uptime=`, `-downtime=`).
    pub downtime_s: f64,
    /// ANSI colours by level in the log (`-logcolor=on`).
    pub log_color: bool,
    /// Serve Prometheus metrics over HTTP here (`-metrics=addr:port`).
    pub metrics: Option<SocketAddr>,
    /// rsplib's MaxIncrement of the round-robin policies (`-maxincrement=`, 0 = default).
    pub max_increment: u32,
    /// One warning line each at start-up: options accepted without effect here, and old
    /// option names.
    pub ignored: Vec<String>,
}

/// Most event-loop threads (`-threads=`).
pub const MAX_THREADS: usize = 64;

/// rsplib's default CSP monitor (`cspmonitor`'s port).
pub const CSP_DEFAULT_SERVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 2960);
/// rsplib's CSP interval when only a server is given.
pub const CSP_DEFAULT_INTERVAL_MS: u64 = 250;

impl Default for Extras {
    fn default() -> Self {
        Extras {
            csp: None,
            stats_file: None,
            stats_interval_ms: 1000,
            action_log: None,
            scalar_file: None,
            object_name: "registrar".into(),
            disable_ipv6: false,
            announce_ttl: 30,
            uptime_s: 0.0,
            downtime_s: 0.0,
            log_color: false,
            metrics: None,
            max_increment: 0,
            ignored: Vec::new(),
        }
    }
}

/// ENRP timers (milliseconds, rsplib 3.4's defaults and bounds) and handle-table paging.
#[derive(Clone, Debug, PartialEq)]
pub struct EnrpTiming {
    /// Presence to every peer this often (`-peerheartbeatcycle=`, 2444 ms).
    pub peer_heartbeat_cycle_ms: u64,
    /// A peer not heard this long is asked for Presence (`-peermaxtimelastheard=`, 5000 ms).
    pub peer_max_time_last_heard_ms: u64,
    /// … and declared dead if it does not answer within this (`-peermaxtimenoresponse=`).
    pub peer_max_time_no_response_ms: u64,
    /// How often a starting registrar tries its peers for a mentor (`-mentorhuntinterval=`).
    pub mentor_hunt_interval_ms: u64,
    /// A registrar that found no mentor this long after start serves alone
    /// (`-mentordiscoverytimeout=`).
    pub mentor_discovery_timeout_ms: u64,
    /// A takeover whose acknowledgements did not all arrive is abandoned after this
    /// (`-takeoverexpiryinterval=`).
    pub takeover_expiry_interval_ms: u64,
    /// PEs per Handle Table Response (`-maxelementsperhtrequest=`, 128).
    pub max_elements_per_ht_request: u32,
    /// Honour and send the Handle Update takeover suggestion (`-supporttakeoversuggestion`).
    pub support_takeover_suggestion: bool,
}

impl Default for EnrpTiming {
    fn default() -> Self {
        EnrpTiming {
            peer_heartbeat_cycle_ms: 2444,
            peer_max_time_last_heard_ms: 5000,
            peer_max_time_no_response_ms: 5000,
            mentor_hunt_interval_ms: 1000,
            mentor_discovery_timeout_ms: 5000,
            takeover_expiry_interval_ms: 5000,
            max_elements_per_ht_request: 128,
            support_takeover_suggestion: false,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            asap: vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 3863)],
            asap_announce: Some(ASAP_ANNOUNCE_DEFAULT),
            enrp: vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 9901)],
            enrp_announce: Some(ENRP_ANNOUNCE_DEFAULT),
            peers: Vec::new(),
            identifier: None,
            max_bad_pe_reports: 3,
            max_hr_rate: None,
            max_eu_rate: None,
            max_hr_items: 3,
            keepalive_transmission_interval_ms: 5000,
            keepalive_timeout_interval_ms: 5000,
            server_announce_cycle_ms: 1000,
            min_address_scope: AddressScope::SiteLocal,
            transport: Selection::Both,
            log_level: 3,
            log_file: None,
            quiet: false,
            pid_file: None,
            max_pes_per_host: Some(DEFAULT_MAX_PES_PER_HOST),
            max_pes_per_pool: Some(DEFAULT_MAX_PES_PER_POOL),
            max_connections: Some(DEFAULT_MAX_CONNECTIONS),
            max_connections_per_host: Some(DEFAULT_MAX_CONNECTIONS_PER_HOST),
            autoclose_timeout_s: 300,
            stall_timeout_ms: 10_000,
            threads: 1,
            enrp_allow: AddressPrefix::loopback(),
            enrp_timing: EnrpTiming::default(),
            extras: Extras::default(),
        }
    }
}

/// What the command line asked for.
#[derive(Debug, PartialEq)]
pub enum Command {
    Run(Box<Config>),
    Help,
}

/// A bad option: one line for the user.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses one address with optional port: `a.b.c.d[:port]`, `[v6][:port]`, `host!port`.
fn parse_address_port(s: &str) -> Option<(IpAddr, Option<u16>)> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        let ip: IpAddr = ip.parse().ok()?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix([':', '!'])?.parse().ok()?),
        };
        return Some((ip, port));
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some((ip, None));
    }
    let (ip, port) = s.rsplit_once([':', '!'])?;
    Some((ip.parse().ok()?, Some(port.parse().ok()?)))
}

/// Parses one address; without a port it gets `default_port`.
pub fn parse_address(s: &str, default_port: u16) -> Option<SocketAddr> {
    let (ip, port) = parse_address_port(s)?;
    Some(SocketAddr::new(ip, port.unwrap_or(default_port)))
}

/// Parses `addr[:port],addr…` (all addresses of one multihomed endpoint). Addresses without a
/// port get the first explicit port, or `default_port`. Port 0 means "any free port".
pub fn parse_address_list(s: &str, default_port: u16) -> Option<Vec<SocketAddr>> {
    let parts: Vec<(IpAddr, Option<u16>)> = s
        .split(',')
        .map(parse_address_port)
        .collect::<Option<_>>()?;
    let port = parts.iter().find_map(|(_, p)| *p).unwrap_or(default_port);
    let out: Vec<SocketAddr> = parts
        .into_iter()
        .map(|(ip, p)| SocketAddr::new(ip, p.unwrap_or(port)))
        .collect();
    (!out.is_empty()).then_some(out)
}

fn number<T: std::str::FromStr>(opt: &str, v: &str) -> Result<T, ConfigError> {
    let parsed = if let Some(hex) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16)
            .ok()
            .and_then(|n| n.to_string().parse().ok())
    } else {
        v.parse().ok()
    };
    parsed.ok_or_else(|| ConfigError(format!("invalid value \"{v}\" for option {opt}")))
}

/// Parses the command line (without the program name), with `CSP_SERVER`/`CSP_INTERVAL` from
/// the environment as rsplib reads them.
pub fn parse(args: &[String]) -> Result<Command, ConfigError> {
    parse_with_env(args, |k| std::env::var(k).ok())
}

/// [`parse`] with the environment given as a lookup function.
pub fn parse_with_env(
    args: &[String],
    env: impl Fn(&str) -> Option<String>,
) -> Result<Command, ConfigError> {
    let mut c = Config::default();
    // rsplib: CSP_INTERVAL (ms, at least 250) turns reports on, CSP_SERVER says where to.
    let mut csp_server = match env("CSP_SERVER") {
        Some(v) => Some(
            parse_address(&v, CSP_DEFAULT_SERVER.port())
                .ok_or_else(|| ConfigError(format!("invalid CSP_SERVER \"{v}\"")))?,
        ),
        None => None,
    };
    let mut csp_interval = match env("CSP_INTERVAL") {
        Some(v) => Some(number::<u64>("CSP_INTERVAL", &v)?.max(CSP_DEFAULT_INTERVAL_MS)),
        None => None,
    };
    for arg in args {
        if matches!(arg.as_str(), "--help" | "-help" | "-h") {
            return Ok(Command::Help);
        }
        let (opt, value) = match arg.split_once('=') {
            Some((o, v)) => (o, Some(v)),
            None => (arg.as_str(), None),
        };
        let need = || value.ok_or_else(|| ConfigError(format!("option {opt} needs a value")));
        let bad = |what: &str| {
            ConfigError(format!(
                "invalid {what} \"{}\" for option {opt}",
                value.unwrap_or("")
            ))
        };
        match opt {
            "-asap" => {
                let v = need()?;
                c.asap = if v == "auto" {
                    Config::default().asap
                } else {
                    parse_address_list(v, 3863).ok_or_else(|| bad("address"))?
                };
            }
            "-enrp" => {
                let v = need()?;
                c.enrp = if v == "auto" {
                    Config::default().enrp
                } else {
                    parse_address_list(v, 9901).ok_or_else(|| bad("address"))?
                };
            }
            "-asapannounce" => {
                c.asap_announce = match need()? {
                    "off" | "none" => None,
                    "auto" | "on" => Some(ASAP_ANNOUNCE_DEFAULT),
                    v => Some(parse_address(v, 3863).ok_or_else(|| bad("address"))?),
                }
            }
            "-enrpannounce" => {
                c.enrp_announce = match need()? {
                    "off" | "none" => None,
                    "auto" | "on" => Some(ENRP_ANNOUNCE_DEFAULT),
                    v => Some(parse_address(v, 9901).ok_or_else(|| bad("address"))?),
                }
            }
            "-peer" => c
                .peers
                .push(parse_address(need()?, 9901).ok_or_else(|| bad("address"))?),
            "-identifier" => c.identifier = Some(number(opt, need()?)?),
            "-maxbadpereports" => c.max_bad_pe_reports = number(opt, need()?)?,
            "-maxhrrate" => c.max_hr_rate = rate(opt, need()?)?,
            "-maxeurate" => c.max_eu_rate = rate(opt, need()?)?,
            "-maxhresitems" => {
                let n: u32 = number(opt, need()?)?;
                if !(1..=128).contains(&n) {
                    return Err(bad("count (1..128)"));
                }
                c.max_hr_items = n;
            }
            "-endpointkeepalivetransmissioninterval" => {
                c.keepalive_transmission_interval_ms = positive(opt, need()?)?
            }
            "-endpointkeepalivetimeoutinterval" => {
                c.keepalive_timeout_interval_ms = positive(opt, need()?)?
            }
            "-serverannouncecycle" => c.server_announce_cycle_ms = positive(opt, need()?)?,
            "-minaddressscope" => {
                c.min_address_scope = AddressScope::parse(need()?).ok_or_else(|| bad("scope"))?
            }
            "-transport" => {
                c.transport = Selection::parse(need()?).ok_or_else(|| bad("transport"))?
            }
            "-loglevel" => {
                let n: u32 = number(opt, need()?)?;
                if n > 9 {
                    return Err(bad("level (0..9)"));
                }
                c.log_level = n;
            }
            "-logfile" => c.log_file = Some((PathBuf::from(need()?), false)),
            "-logappend" => c.log_file = Some((PathBuf::from(need()?), true)),
            "-logquiet" => c.log_level = 0,
            // rsplib: "off" turns colours off, any other value on.
            "-logcolor" => c.extras.log_color = need()? != "off",
            "-quiet" => c.quiet = true,
            "-enrpmulticast" => {
                c.extras
                    .ignored
                    .push("-enrpmulticast= is deprecated, use -enrpannounce=".into());
                c.enrp_announce = match need()? {
                    "off" | "none" => None,
                    "auto" | "on" => Some(ENRP_ANNOUNCE_DEFAULT),
                    v => Some(parse_address(v, 9901).ok_or_else(|| bad("address"))?),
                }
            }
            "-cspserver" => {
                csp_server = Some(parse_address(need()?, 2960).ok_or_else(|| bad("address"))?);
                csp_interval.get_or_insert(CSP_DEFAULT_INTERVAL_MS);
            }
            "-cspinterval" => csp_interval = Some(number(opt, need()?)?),
            "-statsfile" => c.extras.stats_file = Some(PathBuf::from(need()?)),
            "-statsinterval" => {
                c.extras.stats_interval_ms = number::<u64>(opt, need()?)?.clamp(10, 3_600_000)
            }
            "-actionlogfile" => c.extras.action_log = Some(PathBuf::from(need()?)),
            "-scalar" => c.extras.scalar_file = Some(PathBuf::from(need()?)),
            "-object" => c.extras.object_name = need()?.to_string(),
            "-disable-ipv6" => c.extras.disable_ipv6 = true,
            "-announcettl" => c.extras.announce_ttl = number::<u32>(opt, need()?)?.clamp(1, 255),
            "-uptime" => c.extras.uptime_s = seconds(opt, need()?)?,
            "-downtime" => c.extras.downtime_s = seconds(opt, need()?)?,
            "-maxincrement" => c.extras.max_increment = number(opt, need()?)?,
            "-distancestep" => {
                let _: u32 = number(opt, need()?)?;
                c.extras.ignored.push(
                    "-distancestep= is ignored: no distance-sensitive policy measures \
                     distances here"
                        .into(),
                );
            }
            "-metrics" => {
                c.extras.metrics = Some(parse_address(need()?, 9100).ok_or_else(|| bad("address"))?)
            }
            "-daemonpidfile" => c.pid_file = Some(PathBuf::from(need()?)),
            "-maxpesperhost" => c.max_pes_per_host = rate(opt, need()?)?,
            "-maxpesperpool" => c.max_pes_per_pool = rate(opt, need()?)?,
            "-maxconnections" => c.max_connections = rate(opt, need()?)?,
            "-maxconnectionsperhost" => c.max_connections_per_host = rate(opt, need()?)?,
            "-autoclosetimeout" => {
                // rsplib: seconds, at least 5.
                c.autoclose_timeout_s = number::<u64>(opt, need()?)?.max(5)
            }
            "-stalltimeout" => c.stall_timeout_ms = positive(opt, need()?)?,
            "-threads" => {
                c.threads = match number::<usize>(opt, need()?)? {
                    n @ 1..=MAX_THREADS => n,
                    _ => {
                        return Err(ConfigError(format!(
                            "option {opt} must be 1 … {MAX_THREADS}"
                        )))
                    }
                }
            }
            "-enrpallow" => {
                c.enrp_allow = match need()? {
                    "none" => Vec::new(),
                    v => v
                        .split(',')
                        .map(AddressPrefix::parse)
                        .collect::<Option<_>>()
                        .ok_or_else(|| bad("address or prefix"))?,
                }
            }
            "-peerheartbeatcycle" => {
                c.enrp_timing.peer_heartbeat_cycle_ms = millis(opt, need()?, 1000, 300_000)?
            }
            "-peermaxtimelastheard" => {
                c.enrp_timing.peer_max_time_last_heard_ms = millis(opt, need()?, 1000, 300_000)?
            }
            "-peermaxtimenoresponse" => {
                c.enrp_timing.peer_max_time_no_response_ms = millis(opt, need()?, 1000, 60_000)?
            }
            "-mentorhuntinterval" => {
                c.enrp_timing.mentor_hunt_interval_ms = millis(opt, need()?, 100, 60_000)?
            }
            "-mentordiscoverytimeout" => {
                c.enrp_timing.mentor_discovery_timeout_ms = millis(opt, need()?, 1000, 60_000)?
            }
            "-takeoverexpiryinterval" => {
                c.enrp_timing.takeover_expiry_interval_ms = millis(opt, need()?, 1000, 60_000)?
            }
            "-maxelementsperhtrequest" => {
                let n: u32 = number(opt, need()?)?;
                c.enrp_timing.max_elements_per_ht_request = n.clamp(1, 65_536);
            }
            "-supporttakeoversuggestion" => c.enrp_timing.support_takeover_suggestion = true,
            _ => {
                return Err(ConfigError(format!(
                    "unknown option \"{arg}\" (see --help)"
                )))
            }
        }
    }
    if let Some(ms) = csp_interval.filter(|&ms| ms > 0) {
        c.extras.csp = Some((csp_server.unwrap_or(CSP_DEFAULT_SERVER), ms));
    }
    if c.extras.disable_ipv6 {
        let v6 = c
            .asap
            .iter()
            .chain(&c.enrp)
            .chain(&c.peers)
            .chain(c.asap_announce.iter())
            .chain(c.enrp_announce.iter())
            .find(|a| a.is_ipv6());
        if let Some(a) = v6 {
            return Err(ConfigError(format!(
                "-disable-ipv6 is given, but {a} is an IPv6 address"
            )));
        }
    }
    Ok(Command::Run(Box::new(c)))
}

/// A duration in seconds (rsplib's `-uptime=`/`-downtime=`), fractional, not negative.
fn seconds(opt: &str, v: &str) -> Result<f64, ConfigError> {
    match v.parse::<f64>() {
        Ok(s) if s.is_finite() && s >= 0.0 => Ok(s),
        _ => Err(ConfigError(format!(
            "invalid value \"{v}\" for option {opt}"
        ))),
    }
}

fn positive(opt: &str, v: &str) -> Result<u64, ConfigError> {
    let n: u64 = number(opt, v)?;
    if n == 0 {
        return Err(ConfigError(format!("option {opt} must be > 0")));
    }
    Ok(n)
}

/// A time in milliseconds, clamped into rsplib's bounds for that option.
fn millis(opt: &str, v: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
    Ok(number::<u64>(opt, v)?.clamp(min, max))
}

/// A rate or limit option: a negative value or 0 means "no limit" (as rsplib's -1 default).
fn rate(opt: &str, v: &str) -> Result<Option<u32>, ConfigError> {
    if v.starts_with('-') {
        let _: i64 = number(opt, v)?;
        return Ok(None);
    }
    let n: u32 = number(opt, v)?;
    Ok((n > 0).then_some(n))
}

fn list(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn path_or_off(p: &Option<PathBuf>) -> String {
    p.as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "off".into())
}

impl Config {
    /// The effective configuration, printed at start-up like rsplib does.
    pub fn describe(&self, identifier: u32, transports: &str) -> String {
        let opt = |a: &Option<SocketAddr>| a.map(|a| a.to_string()).unwrap_or_else(|| "off".into());
        let r = |r: &Option<u32>| r.map(|n| format!("{n}/s")).unwrap_or_else(|| "off".into());
        let n = |r: &Option<u32>| {
            r.map(|n| n.to_string())
                .unwrap_or_else(|| "unlimited".into())
        };
        format!(
            "Registrar identifier:                      0x{identifier:08x}\n\
             Transport:                                 {transports}\n\
             ASAP address(es):                          {}\n\
             ASAP announce address:                     {}\n\
             ENRP address(es):                          {}\n\
             ENRP announce address:                     {}\n\
             Static ENRP peers:                         {}\n\
             Max bad PE reports:                        {}\n\
             Max handle resolution items:               {}\n\
             Max handle resolution rate:                {}\n\
             Max endpoint unreachable rate:             {}\n\
             Endpoint keep-alive transmission interval: {} ms\n\
             Endpoint keep-alive timeout interval:      {} ms\n\
             Server announce cycle:                     {} ms\n\
             Minimum address scope:                     {}\n\
             Max PEs per host / per pool:               {} / {}\n\
             Max connections / per host:                {} / {}\n\
             Auto-close timeout:                        {} s\n\
             Stall timeout:                             {} ms\n\
             Event-loop threads:                        {}\n\
             ENRP queries allowed from:                 {}\n\
             Peer heartbeat cycle:                      {} ms\n\
             Peer max time last heard / no response:    {} ms / {} ms\n\
             Mentor hunt interval / discovery timeout:  {} ms / {} ms\n\
             Takeover expiry interval:                  {} ms\n\
             Max elements per handle table response:    {}\n\
             Takeover suggestion:                       {}\n\
             Announce TTL:                              {}\n\
             CSP reports:                               {}\n\
             Statistics file:                           {}\n\
             Action log file:                           {}\n\
             Metrics (Prometheus, HTTP):                {}\n",
            list(&self.asap),
            opt(&self.asap_announce),
            list(&self.enrp),
            opt(&self.enrp_announce),
            if self.peers.is_empty() {
                "none".into()
            } else {
                list(&self.peers)
            },
            self.max_bad_pe_reports,
            self.max_hr_items,
            r(&self.max_hr_rate),
            r(&self.max_eu_rate),
            self.keepalive_transmission_interval_ms,
            self.keepalive_timeout_interval_ms,
            self.server_announce_cycle_ms,
            self.min_address_scope.name(),
            n(&self.max_pes_per_host),
            n(&self.max_pes_per_pool),
            n(&self.max_connections),
            n(&self.max_connections_per_host),
            self.autoclose_timeout_s,
            self.stall_timeout_ms,
            self.threads,
            if self.enrp_allow.is_empty() {
                "peers only".into()
            } else {
                self.enrp_allow
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            self.enrp_timing.peer_heartbeat_cycle_ms,
            self.enrp_timing.peer_max_time_last_heard_ms,
            self.enrp_timing.peer_max_time_no_response_ms,
            self.enrp_timing.mentor_hunt_interval_ms,
            self.enrp_timing.mentor_discovery_timeout_ms,
            self.enrp_timing.takeover_expiry_interval_ms,
            self.enrp_timing.max_elements_per_ht_request,
            if self.enrp_timing.support_takeover_suggestion {
                "supported"
            } else {
                "off"
            },
            self.extras.announce_ttl,
            match self.extras.csp {
                Some((to, ms)) => format!("to {to} every {ms} ms"),
                None => "off".into(),
            },
            match &self.extras.stats_file {
                Some(p) => format!("{} every {} ms", p.display(), self.extras.stats_interval_ms),
                None => "off".into(),
            },
            path_or_off(&self.extras.action_log),
            opt(&self.extras.metrics),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Config, ConfigError> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        match parse(&args)? {
            Command::Run(c) => Ok(*c),
            Command::Help => panic!("help"),
        }
    }

    #[test]
    fn rsplib_style_options() {
        let c = run(&[
            "-asap=10.255.0.1:3863,192.168.1.1",
            "-asapannounce=off",
            "-enrp=[::1]:9902",
            "-peer=10.255.0.1:9901",
            "-peer=10.255.0.2",
            "-identifier=0x11111111",
            "-maxbadpereports=5",
            "-maxhresitems=7",
            "-endpointkeepalivetransmissioninterval=2000",
            "-endpointkeepalivetimeoutinterval=1500",
            "-minaddressscope=loopback",
            "-transport=tcp",
            "-loglevel=9",
            "-maxhrrate=-1",
            "-maxeurate=20",
            "-maxpesperhost=10",
            "-maxpesperpool=-1",
            "-maxconnectionsperhost=3",
            "-autoclosetimeout=1",
            "-stalltimeout=2500",
            "-threads=2",
            "-enrpallow=10.0.0.0/8,::1",
            "-peerheartbeatcycle=1500",
            "-peermaxtimelastheard=10",
            "-peermaxtimenoresponse=999999",
            "-mentorhuntinterval=700",
            "-mentordiscoverytimeout=2000",
            "-takeoverexpiryinterval=3000",
            "-maxelementsperhtrequest=64",
            "-supporttakeoversuggestion",
        ])
        .unwrap();
        assert_eq!(
            c.asap,
            vec![
                "10.255.0.1:3863".parse().unwrap(),
                "192.168.1.1:3863".parse().unwrap()
            ]
        );
        assert_eq!(c.asap_announce, None);
        assert_eq!(c.enrp, vec!["[::1]:9902".parse().unwrap()]);
        assert_eq!(c.peers[1], "10.255.0.2:9901".parse().unwrap());
        assert_eq!(c.identifier, Some(0x11111111));
        assert_eq!(c.max_bad_pe_reports, 5);
        assert_eq!(c.max_hr_items, 7);
        assert_eq!(c.keepalive_transmission_interval_ms, 2000);
        assert_eq!(c.keepalive_timeout_interval_ms, 1500);
        assert_eq!(c.min_address_scope, AddressScope::Loopback);
        assert_eq!(c.transport, Selection::Tcp);
        assert_eq!(c.max_hr_rate, None);
        assert_eq!(c.max_eu_rate, Some(20));
        assert_eq!(c.max_pes_per_host, Some(10));
        assert_eq!(c.max_pes_per_pool, None);
        assert_eq!(c.max_connections_per_host, Some(3));
        assert_eq!(c.max_connections, Some(DEFAULT_MAX_CONNECTIONS));
        assert_eq!(c.autoclose_timeout_s, 5, "rsplib's minimum of 5 s");
        assert_eq!(c.stall_timeout_ms, 2500);
        assert_eq!(c.threads, 2);
        assert_eq!(
            c.enrp_allow,
            vec![
                AddressPrefix::parse("10.0.0.0/8").unwrap(),
                AddressPrefix::parse("::1").unwrap()
            ]
        );
        let t = &c.enrp_timing;
        assert_eq!(t.peer_heartbeat_cycle_ms, 1500);
        assert_eq!(
            t.peer_max_time_last_heard_ms, 1000,
            "rsplib's minimum of 1 s"
        );
        assert_eq!(
            t.peer_max_time_no_response_ms, 60_000,
            "rsplib's maximum of 60 s"
        );
        assert_eq!(t.mentor_hunt_interval_ms, 700);
        assert_eq!(t.mentor_discovery_timeout_ms, 2000);
        assert_eq!(t.takeover_expiry_interval_ms, 3000);
        assert_eq!(t.max_elements_per_ht_request, 64);
        assert!(t.support_takeover_suggestion);
        assert_eq!(run(&[]).unwrap(), Config::default());
        assert_eq!(
            run(&["-asap=127.0.0.1:0"]).unwrap().asap,
            vec!["127.0.0.1:0".parse().unwrap()]
        );
    }

    #[test]
    fn bad_options_give_one_clear_error() {
        assert!(run(&["-bogus"]).unwrap_err().0.contains("unknown option"));
        assert!(run(&["-asap=1.2.3"]).unwrap_err().0.contains("-asap"));
        assert!(run(&["-maxhresitems=0"]).is_err());
        assert!(run(&["-loglevel=10"]).is_err());
        assert!(run(&["-threads=0"]).unwrap_err().0.contains("1 … 64"));
        assert!(run(&["-threads=65"]).is_err());
        assert_eq!(run(&[]).unwrap().threads, 1);
        assert!(run(&["-identifier=zz"]).is_err());
        assert!(run(&["-peer"]).unwrap_err().0.contains("needs a value"));
        assert!(run(&["-transport=udp"]).is_err());
        assert!(run(&["-enrpallow=10.0.0.0/33"]).is_err());
        assert!(run(&["-maxpesperhost=many"]).is_err());
    }

    #[test]
    fn address_scopes() {
        let s = |a: &str| AddressScope::of(&a.parse().unwrap());
        assert_eq!(s("127.0.0.1"), AddressScope::Loopback);
        assert_eq!(s("169.254.1.1"), AddressScope::LinkLocal);
        assert_eq!(s("10.255.0.1"), AddressScope::SiteLocal);
        assert_eq!(s("8.8.8.8"), AddressScope::Global);
        assert_eq!(s("::1"), AddressScope::Loopback);
        assert_eq!(s("fe80::1"), AddressScope::LinkLocal);
        assert_eq!(s("fd00::1"), AddressScope::SiteLocal);
        assert_eq!(s("2001:db8::1"), AddressScope::Global);
        assert_eq!(s("::ffff:10.0.0.1"), AddressScope::SiteLocal);
    }
}
