//! `-metrics=addr:port`: the registrar's figures in Prometheus' text format over HTTP
//! (`GET /metrics`), served from the event loop without threads. A scrape costs one small
//! buffer per client; at most [`MAX_CLIENTS`] at once, each given [`CLIENT_TIMEOUT`] to send
//! its request and take the answer, so a slow or hostile client cannot hold the registrar.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};

use crate::core::registrar::{Refusal, Registrar};
use crate::logging;

use super::reports::{Figures, MessageCounts};

/// Clients served at once; more are closed at once.
pub const MAX_CLIENTS: usize = 32;
/// A client that has not sent its request and taken the answer by then is closed.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest request head read.
const MAX_REQUEST: usize = 8192;
/// Tokens of the listener and its clients: far above the transport's connection tokens, far
/// below the loop's own (signals, ENRP presence) near `usize::MAX`.
const TOKEN_BASE: usize = usize::MAX / 2;
const TOKEN_END: usize = TOKEN_BASE + (1 << 32);

struct Client {
    stream: TcpStream,
    request: Vec<u8>,
    response: Vec<u8>,
    written: usize,
    deadline: Instant,
}

/// The metrics endpoint.
pub struct Metrics {
    listener: TcpListener,
    local: SocketAddr,
    clients: HashMap<Token, Client>,
    next_token: usize,
    started: Instant,
}

impl Metrics {
    /// Binds `addr` and registers the listener.
    pub fn bind(addr: SocketAddr, registry: &Registry) -> io::Result<Metrics> {
        let mut listener = TcpListener::bind(addr)?;
        registry.register(&mut listener, Token(TOKEN_BASE), Interest::READABLE)?;
        Ok(Metrics {
            local: listener.local_addr()?,
            listener,
            clients: HashMap::new(),
            next_token: TOKEN_BASE + 1,
            started: Instant::now(),
        })
    }

    /// The bound address (the port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Whether a readiness event belongs to the metrics endpoint.
    pub fn owns(&self, token: Token) -> bool {
        (TOKEN_BASE..TOKEN_END).contains(&token.0)
    }

    /// Handles a readiness event of the listener or a client.
    pub fn ready(
        &mut self,
        registry: &Registry,
        token: Token,
        registrar: &Registrar,
        counts: &MessageCounts,
    ) {
        if token == Token(TOKEN_BASE) {
            self.accept(registry);
            return;
        }
        let started = self.started;
        let Some(c) = self.clients.get_mut(&token) else {
            return;
        };
        let page = || {
            render(
                registrar,
                &Figures::of(registrar),
                counts,
                started.elapsed(),
            )
        };
        let done = serve(c, page).unwrap_or(true);
        if done {
            self.close(registry, token);
        } else if c_wants_write(self.clients.get(&token)) {
            if let Some(c) = self.clients.get_mut(&token) {
                let _ = registry.reregister(&mut c.stream, token, Interest::WRITABLE);
            }
        }
    }

    /// Closes clients past their deadline.
    pub fn sweep(&mut self, registry: &Registry, now: Instant) {
        let late: Vec<Token> = self
            .clients
            .iter()
            .filter(|(_, c)| now >= c.deadline)
            .map(|(t, _)| *t)
            .collect();
        for t in late {
            self.close(registry, t);
        }
    }

    /// The earliest client deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.clients.values().map(|c| c.deadline).min()
    }

    fn accept(&mut self, registry: &Registry) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, peer)) => {
                    if self.clients.len() >= MAX_CLIENTS {
                        logging::log(
                            logging::VERBOSE,
                            &format!("metrics: too many clients, closing {peer}"),
                        );
                        continue;
                    }
                    let token = Token(self.next_token);
                    self.next_token = if self.next_token + 1 == TOKEN_END {
                        TOKEN_BASE + 1
                    } else {
                        self.next_token + 1
                    };
                    if registry
                        .register(&mut stream, token, Interest::READABLE)
                        .is_ok()
                    {
                        self.clients.insert(
                            token,
                            Client {
                                stream,
                                request: Vec::new(),
                                response: Vec::new(),
                                written: 0,
                                deadline: Instant::now() + CLIENT_TIMEOUT,
                            },
                        );
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    logging::log(logging::VERBOSE, &format!("metrics: accept failed: {e}"));
                    return;
                }
            }
        }
    }

    fn close(&mut self, registry: &Registry, token: Token) {
        if let Some(mut c) = self.clients.remove(&token) {
            let _ = registry.deregister(&mut c.stream);
        }
    }
}

fn c_wants_write(c: Option<&Client>) -> bool {
    c.is_some_and(|c| !c.response.is_empty() && c.written < c.response.len())
}

/// Reads the request and writes the answer as far as the socket takes it; true when done.
fn serve(c: &mut Client, page: impl FnOnce() -> String) -> io::Result<bool> {
    if c.response.is_empty() {
        let mut buf = [0u8; 2048];
        loop {
            match c.stream.read(&mut buf) {
                Ok(0) => return Ok(true),
                Ok(n) => {
                    c.request.extend_from_slice(&buf[..n]);
                    if c.request.len() > MAX_REQUEST {
                        c.response = response(431, "text/plain", "request too large\n");
                        break;
                    }
                    if c.request.windows(4).any(|w| w == b"\r\n\r\n") {
                        c.response = answer(&c.request, page);
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
    while c.written < c.response.len() {
        match c.stream.write(&c.response[c.written..]) {
            Ok(0) => return Ok(true),
            Ok(n) => c.written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// The HTTP answer to one request head.
fn answer(request: &[u8], page: impl FnOnce() -> String) -> Vec<u8> {
    let head = String::from_utf8_lossy(request);
    let mut first = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => response(200, "text/plain; version=0.0.4; charset=utf-8", &page()),
        ("HEAD", "/metrics") => {
            let mut r = response(200, "text/plain; version=0.0.4; charset=utf-8", &page());
            if let Some(end) = r.windows(4).position(|w| w == b"\r\n\r\n") {
                r.truncate(end + 4);
            }
            r
        }
        ("GET", "/") => response(
            200,
            "text/plain; charset=utf-8",
            "rspregistrar: metrics at /metrics\n",
        ),
        ("GET", _) => response(404, "text/plain", "not found\n"),
        _ => response(405, "text/plain", "only GET\n"),
    }
}

fn response(status: u16, content_type: &str, body: &str) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Request Header Fields Too Large",
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// One metric family: help, type and samples.
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(&str, u64)]) {
    let _ = writeln!(out, "# HELP rsplib_registrar_{name} {help}");
    let _ = writeln!(out, "# TYPE rsplib_registrar_{name} {kind}");
    for (labels, v) in samples {
        let _ = writeln!(out, "rsplib_registrar_{name}{labels} {v}");
    }
}

/// The page: gauges of the handlespace and connections, counters of what the core did.
pub fn render(
    registrar: &Registrar,
    f: &Figures,
    counts: &MessageCounts,
    uptime: Duration,
) -> String {
    let mut out = String::with_capacity(4096);
    let info = format!(
        "{{identifier=\"0x{:08x}\",version=\"{}\"}}",
        registrar.id().0,
        env!("CARGO_PKG_VERSION")
    );
    family(
        &mut out,
        "info",
        "gauge",
        "The registrar's identifier and version.",
        &[(&info, 1)],
    );
    let gauges: [(&str, &str, u64); 6] = [
        (
            "uptime_seconds",
            "Seconds since the registrar started.",
            uptime.as_secs(),
        ),
        ("pools", "Pools in the handlespace.", f.pools as u64),
        (
            "pool_elements",
            "Pool elements in the handlespace.",
            f.pool_elements as u64,
        ),
        (
            "owned_pool_elements",
            "Pool elements this registrar is home for.",
            f.owned_pool_elements as u64,
        ),
        (
            "connections",
            "Open ASAP and ENRP connections.",
            registrar.connections() as u64,
        ),
        ("peers", "ENRP peers.", f.peers as u64),
    ];
    for (name, help, v) in gauges {
        family(&mut out, name, "gauge", help, &[("", v)]);
    }
    let c = registrar.counters();
    let counters: [(&str, &str, u64); 10] = [
        (
            "registrations_total",
            "New PE registrations accepted.",
            c.registrations,
        ),
        (
            "reregistrations_total",
            "Re-registrations of known PEs accepted.",
            c.reregistrations,
        ),
        (
            "deregistrations_total",
            "PEs deregistered by their request.",
            c.deregistrations,
        ),
        (
            "handle_resolutions_total",
            "Handle resolutions answered.",
            c.handle_resolutions,
        ),
        (
            "keepalive_timeouts_total",
            "PEs that did not answer a keep-alive.",
            c.keepalive_timeouts,
        ),
        (
            "unreachable_reports_total",
            "Endpoint Unreachable reports received.",
            c.unreachable_reports,
        ),
        (
            "removed_unreachable_total",
            "PEs removed after unreachable reports.",
            c.removed_unreachable,
        ),
        (
            "expired_total",
            "PEs removed when their registration life ran out.",
            c.expired,
        ),
        (
            "takeovers_total",
            "Takeovers of dead ENRP peers carried out.",
            c.takeovers,
        ),
        (
            "keepalives_sent_total",
            "Endpoint Keep-Alives sent.",
            counts.keepalives_sent,
        ),
    ];
    for (name, help, v) in counters {
        family(&mut out, name, "counter", help, &[("", v)]);
    }
    let labels: Vec<String> = Refusal::ALL
        .iter()
        .map(|r| format!("{{cause=\"{}\"}}", r.name()))
        .collect();
    let samples: Vec<(&str, u64)> = labels
        .iter()
        .zip(Refusal::ALL)
        .map(|(l, r)| (l.as_str(), c.refused(r)))
        .collect();
    family(
        &mut out,
        "refusals_total",
        "counter",
        "Requests and connections refused, by cause (limits, ownership, ENRP access).",
        &samples,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_get_metrics_and_refuses_the_rest() {
        let ok =
            String::from_utf8(answer(b"GET /metrics HTTP/1.1\r\n\r\n", || "x 1\n".into())).unwrap();
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.ends_with("\r\n\r\nx 1\n"), "{ok}");
        assert!(ok.contains("Content-Length: 4\r\n"));
        let head = String::from_utf8(answer(b"HEAD /metrics HTTP/1.1\r\n\r\n", || "x 1\n".into()))
            .unwrap();
        assert!(head.ends_with("\r\n\r\n"), "{head}");
        let nf = answer(b"GET /nope HTTP/1.1\r\n\r\n", String::new);
        assert!(nf.starts_with(b"HTTP/1.1 404 "));
        let post = answer(b"POST /metrics HTTP/1.1\r\n\r\n", String::new);
        assert!(post.starts_with(b"HTTP/1.1 405 "));
    }
}
