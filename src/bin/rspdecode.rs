//! rspdecode: prints ASAP/ENRP messages as JSON lines (rspdecode(1)).
//!
//! ```text
//! rspdecode CAPTURE.pcapng            # SCTP PPID 11/12, UDP and TCP ports 3863/9901
//! rspdecode [--asap|--enrp] --hex     # or "-": one hex-encoded message per stdin line
//! ```
//! One JSON object per message, in capture order (serde_json, keys in a fixed order); errors go
//! to stderr with the frame (or line) number. Exit code 0 if every message decoded, 1
//! otherwise, 2 on usage or I/O errors.

use std::io::{BufRead, Write as _};
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use serde_json::{json, Map, Number, Value};

use rsplib::core::pcap::{extract_messages, Carrier};
use rsplib::core::types::{PolicyInfo, PolicyValue, TransportAddress, TransportProtocol};
use rsplib::core::wire::*;

#[derive(Parser)]
#[command(
    name = "rspdecode",
    version,
    about = "Prints the ASAP/ENRP messages of a capture, or of hex lines on stdin, as JSON lines",
    after_help = "Exit codes: 0 every message decoded, 1 some did not, 2 usage or I/O error."
)]
struct Cli {
    /// A pcap or pcapng capture (SCTP PPID 11/12, UDP and TCP ports 3863/9901); "-" reads hex
    /// lines from stdin.
    file: Option<String>,
    /// Read one hex-encoded message per line from stdin ('#' starts a comment line).
    #[arg(long)]
    hex: bool,
    /// Hex input is ASAP (the default).
    #[arg(long, conflicts_with = "enrp")]
    asap: bool,
    /// Hex input is ENRP.
    #[arg(long)]
    enrp: bool,
    /// Print a shell completion script and exit.
    #[arg(long, value_name = "SHELL", exclusive = true)]
    completions: Option<clap_complete::Shell>,
}

/// A capture time stamp as a JSON number with all nine decimals.
fn time(sec: u64, nsec: u32) -> Value {
    format!("{sec}.{nsec:09}")
        .parse::<Number>()
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

fn id32(v: u32) -> Value {
    Value::String(format!("0x{v:08x}"))
}

/// A JSON object under construction, keys in insertion order.
#[derive(Default)]
struct Obj(Map<String, Value>);

impl Obj {
    fn raw(mut self, k: &str, v: impl Into<Value>) -> Self {
        self.0.insert(k.to_string(), v.into());
        self
    }
    fn str(self, k: &str, v: &str) -> Self {
        self.raw(k, v)
    }
    fn num(self, k: &str, v: impl Into<Number>) -> Self {
        self.raw(k, Value::Number(v.into()))
    }
    fn done(self) -> Value {
        Value::Object(self.0)
    }
}

fn arr(items: impl IntoIterator<Item = Value>) -> Value {
    Value::Array(items.into_iter().collect())
}

fn transport(t: &TransportAddress) -> Value {
    let mut o = Obj::default()
        .str("protocol", t.protocol.name())
        .num("port", t.port);
    o = match t.protocol {
        TransportProtocol::Sctp | TransportProtocol::Tcp => {
            o.num("transport_use", t.transport_use).str(
                "use",
                if t.transport_use == 1 {
                    "data+control"
                } else if t.transport_use == 0 {
                    "data"
                } else {
                    "unknown"
                },
            )
        }
        TransportProtocol::Dccp => o
            .num("reserved", t.transport_use)
            .num("service_code", t.dccp_service_code),
        _ => o.num("reserved", t.transport_use),
    };
    o.raw(
        "addresses",
        arr(t.addresses.iter().map(|a| Value::String(a.to_string()))),
    )
    .done()
}

fn policy(p: &PolicyInfo) -> Value {
    let mut o = Obj::default()
        .str("name", p.policy.name())
        .raw("code", id32(p.policy.wire_code()));
    for v in p.policy.wire_values() {
        let key = match v {
            PolicyValue::Weight => "weight",
            PolicyValue::Priority => "priority",
            PolicyValue::Load => "load",
            PolicyValue::LoadDegradation => "load_degradation",
            PolicyValue::WeightDpf => "weight_dpf",
            PolicyValue::LoadDpf => "load_dpf",
            PolicyValue::Distance => "distance",
        };
        o = o.num(key, p.get(*v));
    }
    o.done()
}

fn skipped(o: Obj, s: &[SkippedParam]) -> Obj {
    if s.is_empty() {
        return o;
    }
    o.raw(
        "unknown_parameters",
        arr(s.iter().map(|s| {
            Obj::default()
                .str("type", &format!("0x{:04x}", s.param.param_type()))
                .num("position", s.position as u64)
                .str("value", &hex::encode(s.param.value()))
                .done()
        })),
    )
}

fn element(e: &PoolElement) -> Value {
    let mut o = Obj::default()
        .raw("pe_id", id32(e.id.0))
        .raw("home_registrar", id32(e.home_registrar.0))
        .num("registration_life", e.registration_life)
        .raw("user_transport", transport(&e.user_transport))
        .raw("policy", policy(&e.policy));
    if let Some(a) = &e.asap_transport {
        o = o.raw("asap_transport", transport(a));
    }
    skipped(o, &e.skipped).done()
}

fn op_error(e: &OperationError) -> Value {
    Obj::default()
        .raw(
            "causes",
            arr(e.causes.iter().map(|c| {
                Obj::default()
                    .str("code", &format!("0x{:04x}", c.code))
                    .str("name", cause::name(c.code))
                    .str("info", &hex::encode(&c.info))
                    .done()
            })),
        )
        .done()
}

fn server(s: &ServerInformation) -> Value {
    skipped(
        Obj::default()
            .raw("server_id", id32(s.server_id.0))
            .raw("transports", arr(s.transports.iter().map(transport))),
        &s.skipped,
    )
    .done()
}

fn ph(o: Obj, p: &rsplib::core::types::PoolHandle) -> Obj {
    o.str("pool_handle", &p.to_string())
}

fn opt<T>(o: Obj, k: &str, v: &Option<T>, f: impl Fn(&T) -> Value) -> Obj {
    match v {
        Some(v) => o.raw(k, f(v)),
        None => o,
    }
}

fn asap_fields(mut o: Obj, m: &AsapMessage) -> Obj {
    use AsapBody::*;
    o = match &m.body {
        Registration {
            pool_handle,
            element: e,
        } => ph(o, pool_handle).raw("pool_element", element(e)),
        Deregistration { pool_handle, pe_id }
        | EndpointKeepAliveAck { pool_handle, pe_id }
        | EndpointUnreachable { pool_handle, pe_id } => {
            ph(o, pool_handle).raw("pe_id", id32(pe_id.0))
        }
        RegistrationResponse {
            pool_handle,
            pe_id,
            error,
        }
        | DeregistrationResponse {
            pool_handle,
            pe_id,
            error,
        } => opt(
            ph(o, pool_handle).raw("pe_id", id32(pe_id.0)),
            "operation_error",
            error,
            op_error,
        ),
        HandleResolution { pool_handle, items } => {
            opt(ph(o, pool_handle), "hr_option_items", items, |n| json!(n))
        }
        HandleResolutionResponse {
            pool_handle,
            policy: p,
            elements,
            error,
        } => {
            let o = opt(ph(o, pool_handle), "policy", p, policy)
                .raw("pool_elements", arr(elements.iter().map(element)));
            opt(o, "operation_error", error, op_error)
        }
        EndpointKeepAlive {
            server_id,
            pool_handle,
            pe_id,
        } => opt(
            ph(o.raw("server_id", id32(server_id.0)), pool_handle),
            "pe_id",
            pe_id,
            |p| id32(p.0),
        ),
        ServerAnnounce {
            server_id,
            transports,
        } => o
            .raw("server_id", id32(server_id.0))
            .raw("transports", arr(transports.iter().map(transport))),
        Cookie { cookie } | CookieEcho { cookie } => o.str("cookie", &hex::encode(cookie)),
        BusinessCard {
            pool_handle,
            policy: p,
            elements,
        } => opt(ph(o, pool_handle), "policy", p, policy)
            .raw("pool_elements", arr(elements.iter().map(element))),
        Error { error } => o.raw("operation_error", op_error(error)),
    };
    skipped(o, &m.skipped)
}

fn enrp_fields(o: Obj, m: &EnrpMessage) -> Obj {
    use EnrpBody::*;
    let o = o
        .raw("sender", id32(m.sender.0))
        .raw("receiver", id32(m.receiver.0));
    let o = match &m.body {
        Presence {
            checksum,
            server_info,
        } => o
            .str("pe_checksum", &format!("0x{checksum:04x}"))
            .raw("server_information", server(server_info)),
        HandleTableRequest | ListRequest => o,
        HandleTableResponse { pools } => o.raw(
            "pools",
            arr(pools.iter().map(|p| {
                ph(Obj::default(), &p.pool_handle)
                    .raw("pool_elements", arr(p.elements.iter().map(element)))
                    .done()
            })),
        ),
        HandleUpdate {
            action,
            reserved,
            pool_handle,
            element: e,
        } => ph(
            o.num("update_action", *action)
                .str(
                    "update_action_name",
                    match *action {
                        enrp::UPDATE_ADD_PE => "add",
                        enrp::UPDATE_DEL_PE => "delete",
                        _ => "unknown",
                    },
                )
                .num("reserved", *reserved),
            pool_handle,
        )
        .raw("pool_element", element(e)),
        ListResponse { servers } => o.raw("servers", arr(servers.iter().map(server))),
        InitTakeover { target } | InitTakeoverAck { target } | TakeoverServer { target } => {
            o.raw("target", id32(target.0))
        }
        Error { error } => o.raw("operation_error", op_error(error)),
    };
    skipped(o, &m.skipped)
}

/// The JSON line of one message; `context` holds frame/time/address keys.
fn render(context: Obj, bytes: &[u8], d: &Decoded<Message>) -> String {
    let m = &d.message;
    let mut o = context
        .str("protocol", m.protocol().name())
        .num("type", m.msg_type())
        .str("name", m.name())
        .num("flags", m.flags())
        .num("length", bytes.len() as u64);
    o = match m {
        Message::Asap(a) => asap_fields(o, a),
        Message::Enrp(e) => enrp_fields(o, e),
    };
    if !d.unrecognized.is_empty() {
        o = o.raw(
            "to_report",
            arr(d
                .unrecognized
                .iter()
                .map(|p| Value::String(hex::encode(p.bytes())))),
        );
    }
    o.done().to_string()
}

fn parse_hex(line: &str) -> Result<Vec<u8>, String> {
    let s: String = line.chars().filter(|c| !c.is_whitespace()).collect();
    let s = s.strip_prefix("0x").unwrap_or(&s);
    hex::decode(s).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(shell) = cli.completions {
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "rspdecode",
            &mut std::io::stdout(),
        );
        return ExitCode::SUCCESS;
    }
    let protocol = if cli.enrp {
        Protocol::Enrp
    } else {
        Protocol::Asap
    };
    let hex_in = cli.hex || cli.file.as_deref() == Some("-");
    let file = cli.file.filter(|f| f != "-");
    if hex_in == file.is_some() {
        let _ = Cli::command().print_help();
        return ExitCode::from(2);
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut failed = false;
    if hex_in {
        for (n, line) in std::io::stdin().lock().lines().enumerate() {
            let line = match line {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("rspdecode: stdin: {e}");
                    return ExitCode::from(2);
                }
            };
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let result = parse_hex(&line).and_then(|b| {
                decode(protocol, &b)
                    .map(|d| (b, d))
                    .map_err(|e| e.to_string())
            });
            match result {
                Ok((b, d)) => {
                    let ctx = Obj::default().num("line", n as u64 + 1);
                    let _ = writeln!(out, "{}", render(ctx, &b, &d));
                }
                Err(e) => {
                    eprintln!("line {}: {e}", n + 1);
                    failed = true;
                }
            }
        }
    } else {
        let Some(path) = file else {
            return ExitCode::from(2);
        };
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("rspdecode: {path}: {e}");
                return ExitCode::from(2);
            }
        };
        let ex = match extract_messages(&data) {
            Ok(ex) => ex,
            Err(e) => {
                eprintln!("rspdecode: {path}: {e}");
                return ExitCode::from(2);
            }
        };
        for (frame, w) in &ex.warnings {
            eprintln!("frame {frame}: warning: {w}");
        }
        for m in &ex.messages {
            let mut ctx = Obj::default()
                .num("frame", m.frame as u64)
                .raw("time", time(m.ts_sec, m.ts_nsec))
                .str(
                    "carrier",
                    match m.carrier {
                        Carrier::Sctp => "sctp",
                        Carrier::Tcp => "tcp",
                        Carrier::Udp => "udp",
                    },
                );
            if let (Some((sa, sp)), Some((da, dp))) = (m.src, m.dst) {
                ctx = ctx
                    .str("src", &format!("{sa}:{sp}"))
                    .str("dst", &format!("{da}:{dp}"));
            }
            match decode(m.protocol, &m.bytes) {
                Ok(d) => {
                    let _ = writeln!(out, "{}", render(ctx, &m.bytes, &d));
                }
                Err(e) => {
                    eprintln!(
                        "frame {}: {} error: {e} ({})",
                        m.frame,
                        m.protocol.name(),
                        hex::encode(&m.bytes)
                    );
                    failed = true;
                }
            }
        }
    }
    let _ = out.flush();
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
