//! rspdecode: prints ASAP/ENRP messages as JSON lines.
//!
//! ```text
//! rspdecode CAPTURE.pcapng            # SCTP PPID 11/12, UDP and TCP ports 3863/9901
//! rspdecode [--asap|--enrp] --hex     # or "-": one hex-encoded message per stdin line
//! ```
//! One JSON object per message, in capture order; errors go to stderr with the frame (or line)
//! number. Exit code 0 if every message decoded, 1 otherwise, 2 on usage or I/O errors.
//!
//! JSON is written by hand (a 20-line escaper) rather than pulling serde into the crate.

use std::fmt::Write as _;
use std::io::{BufRead, Write as _};
use std::process::ExitCode;

use rsplib::core::pcap::{extract_messages, Carrier};
use rsplib::core::types::{PolicyInfo, PolicyValue, TransportAddress, TransportProtocol};
use rsplib::core::wire::*;

/// A JSON string literal.
fn js(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

fn id32(v: u32) -> String {
    js(&format!("0x{v:08x}"))
}

/// A JSON object under construction.
#[derive(Default)]
struct Obj(Vec<(String, String)>);

impl Obj {
    fn raw(mut self, k: &str, v: impl Into<String>) -> Self {
        self.0.push((k.to_string(), v.into()));
        self
    }
    fn str(self, k: &str, v: &str) -> Self {
        self.raw(k, js(v))
    }
    fn num(self, k: &str, v: impl std::fmt::Display) -> Self {
        self.raw(k, v.to_string())
    }
    fn done(self) -> String {
        let mut s = String::from("{");
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(s, "{}:{}", js(k), v);
        }
        s.push('}');
        s
    }
}

fn arr(items: impl IntoIterator<Item = String>) -> String {
    format!("[{}]", items.into_iter().collect::<Vec<_>>().join(","))
}

fn transport(t: &TransportAddress) -> String {
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
        arr(t.addresses.iter().map(|a| js(&a.to_string()))),
    )
    .done()
}

fn policy(p: &PolicyInfo) -> String {
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
                .raw("type", js(&format!("0x{:04x}", s.param.param_type())))
                .num("position", s.position)
                .str("value", &hex(s.param.value()))
                .done()
        })),
    )
}

fn element(e: &PoolElement) -> String {
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

fn op_error(e: &OperationError) -> String {
    Obj::default()
        .raw(
            "causes",
            arr(e.causes.iter().map(|c| {
                Obj::default()
                    .raw("code", js(&format!("0x{:04x}", c.code)))
                    .str("name", cause::name(c.code))
                    .str("info", &hex(&c.info))
                    .done()
            })),
        )
        .done()
}

fn server(s: &ServerInformation) -> String {
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

fn opt<T>(o: Obj, k: &str, v: &Option<T>, f: impl Fn(&T) -> String) -> Obj {
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
            opt(ph(o, pool_handle), "hr_option_items", items, |n| {
                n.to_string()
            })
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
        Cookie { cookie } | CookieEcho { cookie } => o.str("cookie", &hex(cookie)),
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
            .raw("pe_checksum", js(&format!("0x{checksum:04x}")))
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
            o.num("update_action", action)
                .str(
                    "update_action_name",
                    match *action {
                        enrp::UPDATE_ADD_PE => "add",
                        enrp::UPDATE_DEL_PE => "delete",
                        _ => "unknown",
                    },
                )
                .num("reserved", reserved),
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
        .num("length", bytes.len());
    o = match m {
        Message::Asap(a) => asap_fields(o, a),
        Message::Enrp(e) => enrp_fields(o, e),
    };
    if !d.unrecognized.is_empty() {
        o = o.raw(
            "to_report",
            arr(d.unrecognized.iter().map(|p| js(&hex(p.bytes())))),
        );
    }
    o.done()
}

fn parse_hex(line: &str) -> Result<Vec<u8>, String> {
    let s: String = line.chars().filter(|c| !c.is_whitespace()).collect();
    let s = s.strip_prefix("0x").unwrap_or(&s);
    if s.len() % 2 != 0 {
        return Err("odd number of hex digits".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| e.to_string()))
        .collect()
}

fn usage() -> ExitCode {
    eprintln!("usage: rspdecode FILE.pcap[ng] | rspdecode [--asap|--enrp] (--hex | -)");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut protocol = Protocol::Asap;
    let mut hex_in = false;
    let mut file = None;
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--asap" => protocol = Protocol::Asap,
            "--enrp" => protocol = Protocol::Enrp,
            "--hex" | "-" => hex_in = true,
            "-h" | "--help" => return usage(),
            f if !f.starts_with('-') && file.is_none() => file = Some(f.to_string()),
            _ => return usage(),
        }
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
                    let _ = writeln!(out, "{}", render(Obj::default().num("line", n + 1), &b, &d));
                }
                Err(e) => {
                    eprintln!("line {}: {e}", n + 1);
                    failed = true;
                }
            }
        }
    } else {
        let Some(path) = file else { return usage() };
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
                .num("frame", m.frame)
                .raw("time", format!("{}.{:09}", m.ts_sec, m.ts_nsec))
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
                        hex(&m.bytes)
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
