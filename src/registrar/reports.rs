//! What the registrar writes about itself besides its log, as rsplib 3.4's registrar does:
//! Component Status reports to a monitor (`-cspserver=`, read by rsplib's `cspmonitor`), the
//! statistics table (`-statsfile=`/`-statsinterval=`), the action log (`-actionlogfile=`, one
//! line per ASAP/ENRP message) and, at the end, the scalar file (`-scalar=`/`-object=`).
//! Everything runs in the event loop's thread: [`Reports::tick`] sends and writes what is due.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::core::csp::{self, StatusReport};
use crate::core::registrar::Registrar;
use crate::core::wire::asap::{self, AsapBody, AsapMessage};
use crate::core::wire::enrp;
use crate::logging;
use crate::transport::{PPID_ASAP, PPID_ENRP};

use super::config::Config;

/// The handlespace and peer figures every report shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Figures {
    pub peers: usize,
    pub pools: usize,
    pub pool_elements: usize,
    pub owned_pool_elements: usize,
}

impl Figures {
    pub fn of(registrar: &Registrar) -> Figures {
        let hs = registrar.handlespace();
        Figures {
            peers: peers(registrar),
            pools: hs.pool_count(),
            pool_elements: hs.len(),
            owned_pool_elements: hs.owned_count(registrar.id()),
        }
    }
}

/// ENRP peers known to the registrar.
pub fn peers(registrar: &Registrar) -> usize {
    registrar.peers().len()
}

/// Counts of messages the core's counters do not keep (rsplib's statistics columns).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MessageCounts {
    /// Endpoint Keep-Alives sent.
    pub keepalives_sent: u64,
    /// ENRP Handle Table Requests received (rsplib's "Synchronizations").
    pub handle_table_requests: u64,
    /// ENRP Handle Updates received.
    pub handle_updates: u64,
}

/// Time-weighted average of a value since the start.
#[derive(Debug, Default)]
struct Weighted {
    sum: f64,
    last_value: f64,
    last_at: f64,
    start: f64,
}

impl Weighted {
    fn new(start: f64) -> Weighted {
        Weighted {
            start,
            last_at: start,
            ..Weighted::default()
        }
    }
    fn update(&mut self, now: f64, value: usize) {
        self.sum += self.last_value * (now - self.last_at).max(0.0);
        self.last_value = value as f64;
        self.last_at = now;
    }
    fn average(&self, now: f64) -> f64 {
        let total = now - self.start;
        let sum = self.sum + self.last_value * (now - self.last_at).max(0.0);
        if total > 0.0 {
            sum / total
        } else {
            self.last_value
        }
    }
}

struct Csp {
    started: Instant,
    socket: UdpSocket,
    to: SocketAddr,
    interval: Duration,
    next: Instant,
    sender_id: u64,
    location: String,
}

struct Table {
    out: BufWriter<File>,
    interval: Duration,
    next: Instant,
    line: u64,
    started: f64,
}

struct ActionLog {
    out: BufWriter<File>,
    line: u64,
    started: f64,
}

/// The registrar's reports; empty (and free) when no option asked for one.
pub struct Reports {
    csp: Option<Csp>,
    table: Option<Table>,
    actions: Option<ActionLog>,
    scalar: Option<(std::path::PathBuf, String)>,
    averages: [Weighted; 4],
    counts: MessageCounts,
}

fn seconds(micros: u64) -> f64 {
    micros as f64 / 1e6
}

fn create(path: &Path, append: bool, what: &str) -> Result<BufWriter<File>, String> {
    if path.extension().is_some_and(|e| e == "bz2") {
        logging::log(
            logging::WARNING,
            &format!(
                "{what} {}: written uncompressed (rsplib compresses .bz2 files)",
                path.display()
            ),
        );
    }
    OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(path)
        .map(BufWriter::new)
        .map_err(|e| format!("cannot create {what} {}: {e}", path.display()))
}

impl Reports {
    /// Opens what `config` asks for. `append`: later runs of the failure test mode append to
    /// the files of the first, as rsplib does. `asap_addrs`: the component location in CSP
    /// reports.
    pub fn new(
        config: &Config,
        id: u32,
        asap_addrs: &[SocketAddr],
        append: bool,
    ) -> Result<Reports, String> {
        let now = Instant::now();
        let wall = seconds(logging::wall_micros());
        let x = &config.extras;
        let csp = match x.csp {
            Some((to, ms)) => {
                let bind = if to.is_ipv6() {
                    SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0)
                } else {
                    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
                };
                let socket = UdpSocket::bind(bind)
                    .and_then(|s| s.set_nonblocking(true).map(|_| s))
                    .map_err(|e| format!("cannot create the CSP socket: {e}"))?;
                let addrs: Vec<IpAddr> = asap_addrs.iter().map(|a| a.ip()).collect();
                let port = asap_addrs.first().map(|a| a.port()).unwrap_or(0);
                Some(Csp {
                    started: now,
                    socket,
                    to,
                    interval: Duration::from_millis(ms.max(10)),
                    next: now,
                    sender_id: csp::cid_compound(csp::CID_GROUP_REGISTRAR, u64::from(id)),
                    location: location(&addrs, port),
                })
            }
            None => None,
        };
        let table = match &x.stats_file {
            Some(p) => Some(Table {
                out: create(p, append, "statistics file")?,
                interval: Duration::from_millis(x.stats_interval_ms),
                next: now,
                line: 0,
                started: wall,
            }),
            None => None,
        };
        let actions = match &x.action_log {
            Some(p) => {
                let mut out = create(p, append, "action log file")?;
                let _ = out.write_all(
                    b"AbsTime RelTime   Direction Protocol Action Reason   Flags Counter Time   \
                      PoolHandle PoolElementID   SenderID ReceiverID TargetID   ErrorCode\n",
                );
                let _ = out.flush();
                Some(ActionLog {
                    out,
                    line: 0,
                    started: wall,
                })
            }
            None => None,
        };
        Ok(Reports {
            csp,
            table,
            actions,
            scalar: x.scalar_file.clone().map(|p| (p, x.object_name.clone())),
            averages: std::array::from_fn(|_| Weighted::new(wall)),
            counts: MessageCounts::default(),
        })
    }

    /// Messages the core's counters do not count.
    pub fn counts(&self) -> MessageCounts {
        self.counts
    }

    /// When [`Reports::tick`] has something to do next.
    pub fn next_deadline(&self) -> Option<Instant> {
        let a = self.csp.as_ref().map(|c| c.next);
        let b = self.table.as_ref().map(|t| t.next);
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Sends the CSP report and writes the statistics line if due; keeps the averages.
    pub fn tick(&mut self, now: Instant, registrar: &Registrar) {
        let wanted = self.csp.is_some() || self.table.is_some() || self.scalar.is_some();
        if !wanted {
            return;
        }
        let f = Figures::of(registrar);
        if self.scalar.is_some() {
            let wall = seconds(logging::wall_micros());
            for (w, v) in self.averages.iter_mut().zip([
                f.pools,
                f.pool_elements,
                f.owned_pool_elements,
                f.peers,
            ]) {
                w.update(wall, v);
            }
        }
        if let Some(c) = self.csp.as_mut().filter(|c| now >= c.next) {
            c.next = now + c.interval;
            let report = StatusReport {
                sender_id: c.sender_id,
                report_interval: c.interval.as_micros() as u64,
                sender_timestamp: now.saturating_duration_since(c.started).as_micros() as u64,
                status_text: status_text(&f).into_bytes(),
                component_address: c.location.clone().into_bytes(),
                associations: peer_associations(registrar),
            };
            // rsplib 3.x's layout: what Debian's cspmonitor reads.
            if let Err(e) = c.socket.send_to(&report.emit_v3(None), c.to) {
                logging::log(logging::VERBOSE, &format!("CSP report to {}: {e}", c.to));
            }
        }
        if let Some(t) = self.table.as_mut().filter(|t| now >= t.next) {
            t.next = now + t.interval;
            let counters = registrar.counters();
            if let Err(e) = write_table_line(t, &f, counters, &self.counts) {
                logging::log(logging::WARNING, &format!("statistics file: {e}"));
            }
        }
    }

    /// One ASAP/ENRP message into the action log (`sent`: by us) and the message counts.
    pub fn message(&mut self, sent: bool, ppid: u32, data: &[u8]) {
        let kind = data.first().copied().unwrap_or(0);
        match (sent, ppid) {
            (true, PPID_ASAP) if kind == asap::ENDPOINT_KEEP_ALIVE => {
                self.counts.keepalives_sent += 1
            }
            (false, PPID_ENRP) if kind == enrp::HANDLE_TABLE_REQUEST => {
                self.counts.handle_table_requests += 1
            }
            (false, PPID_ENRP) if kind == enrp::HANDLE_UPDATE => self.counts.handle_updates += 1,
            _ => {}
        }
        if let Some(log) = self.actions.as_mut() {
            let protocol = if ppid == PPID_ENRP { "ENRP" } else { "ASAP" };
            let entry = action_entry(ppid, data);
            if let Err(e) = write_action(log, if sent { "Send" } else { "Recv" }, protocol, &entry)
            {
                logging::log(logging::WARNING, &format!("action log: {e}"));
            }
        }
    }

    /// A Server Announce sent by multicast.
    pub fn announce(&mut self, data: &[u8]) {
        if let Some(log) = self.actions.as_mut() {
            let entry = action_entry(PPID_ASAP, data);
            if let Err(e) = write_action(log, "Send", "MulticastASAP", &entry) {
                logging::log(logging::WARNING, &format!("action log: {e}"));
            }
        }
    }

    /// At shutdown: the scalar file, and everything flushed.
    pub fn finish(&mut self, registrar: &Registrar) {
        if let Some(t) = self.table.as_mut() {
            let _ = t.out.flush();
        }
        if let Some(a) = self.actions.as_mut() {
            let _ = a.out.flush();
        }
        let Some((path, object)) = &self.scalar else {
            return;
        };
        let wall = seconds(logging::wall_micros());
        let text = scalar_text(
            object,
            registrar.counters(),
            &self.counts,
            self.averages.each_ref().map(|w| w.average(wall)),
        );
        if let Err(e) = std::fs::write(path, text) {
            logging::log(
                logging::ERROR,
                &format!("cannot write scalar file {}: {e}", path.display()),
            );
        }
    }
}

/// The CSP location: host name and the ASAP addresses, as rsplib's registrar reports it.
fn location(addrs: &[IpAddr], port: u16) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let text = format!("{host} [{}]:{port}", csp::address_list(addrs));
    text.chars().take(csp::TEXT_SIZE - 1).collect()
}

/// The connected ENRP peers as CSP associations, as rsplib's registrar reports them.
fn peer_associations(registrar: &Registrar) -> Vec<csp::AssociationEntry> {
    registrar
        .peers()
        .into_iter()
        .filter(|p| p.connected)
        .map(|p| csp::AssociationEntry {
            receiver_id: csp::cid_compound(csp::CID_GROUP_REGISTRAR, u64::from(p.id.0)),
            duration: u64::MAX,
            flags: 0,
            protocol_id: libc::IPPROTO_SCTP as u16,
            ppid: PPID_ENRP,
        })
        .collect()
}

/// rsplib's CSP status text: "PEs[owned] in pools, peers".
pub fn status_text(f: &Figures) -> String {
    let s = |n: usize| if n == 1 { "" } else { "s" };
    format!(
        "{}[{}] PEs in {} Pool{}, {} Peer{}",
        f.pool_elements,
        f.owned_pool_elements,
        f.pools,
        s(f.pools),
        f.peers,
        s(f.peers)
    )
}

/// User and system CPU time and run time of this process (s), from /proc.
fn process_times() -> Option<(f64, f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let utime = f.get(11)?.parse::<f64>().ok()? / hz;
    let stime = f.get(12)?.parse::<f64>().ok()? / hz;
    let start = f.get(19)?.parse::<f64>().ok()? / hz;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(((uptime - start).max(0.0), utime, stime))
}

fn write_table_line(
    t: &mut Table,
    f: &Figures,
    c: &crate::core::registrar::Counters,
    m: &MessageCounts,
) -> io::Result<()> {
    let now = seconds(logging::wall_micros());
    if t.line == 0 {
        t.out.write_all(
            b"AbsTime RelTime Runtime UserTime SystemTime   Peers Pools PoolElements \
              OwnedPoolElements   Registrations Reregistrations Deregistrations \
              HandleResolutions FailureReports Synchronizations HandleUpdates \
              EndpointKeepAlives\n",
        )?;
        t.line = 1;
        t.started = now;
    }
    let (run, user, system) = process_times().unwrap_or_default();
    writeln!(
        t.out,
        "{:06} {:.6} {:.6}   {:.6} {:.6} {:.6}   {} {} {} {}   {} {} {} {} {} {} {} {}",
        t.line,
        now,
        now - t.started,
        run,
        user,
        system,
        f.peers,
        f.pools,
        f.pool_elements,
        f.owned_pool_elements,
        c.registrations,
        c.reregistrations,
        c.deregistrations,
        c.handle_resolutions,
        c.unreachable_reports,
        m.handle_table_requests,
        m.handle_updates,
        m.keepalives_sent,
    )?;
    t.line += 1;
    t.out.flush()
}

/// What an action log line says about one message.
#[derive(Debug, Default, PartialEq)]
struct ActionEntry {
    action: String,
    flags: u8,
    counter: u64,
    pool_handle: String,
    pe_id: u32,
    sender: u32,
    receiver: u32,
    error: u16,
}

/// A message name without spaces, as rsplib's action log writes it ("HandleResolution").
fn squeeze(name: &str) -> String {
    name.split_whitespace().collect()
}

fn action_entry(ppid: u32, data: &[u8]) -> ActionEntry {
    let kind = data.first().copied().unwrap_or(0);
    let flags = data.get(1).copied().unwrap_or(0);
    if ppid == PPID_ENRP {
        // ENRP: sender and receiver server ids follow the common header (RFC 5353 §2).
        let id = |at: usize| {
            data.get(at..at + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                .unwrap_or(0)
        };
        return ActionEntry {
            action: squeeze(enrp::message_name(kind)),
            flags,
            sender: id(4),
            receiver: id(8),
            ..ActionEntry::default()
        };
    }
    let mut e = ActionEntry {
        action: squeeze(asap::message_name(kind)),
        flags,
        ..ActionEntry::default()
    };
    let Ok(decoded) = AsapMessage::decode(data) else {
        return e;
    };
    let ph = |h: &crate::core::types::PoolHandle| h.to_string();
    match &decoded.message.body {
        AsapBody::Registration {
            pool_handle,
            element,
        } => {
            e.pool_handle = ph(pool_handle);
            e.pe_id = element.id.0;
        }
        AsapBody::Deregistration { pool_handle, pe_id }
        | AsapBody::EndpointKeepAliveAck { pool_handle, pe_id }
        | AsapBody::EndpointUnreachable { pool_handle, pe_id } => {
            e.pool_handle = ph(pool_handle);
            e.pe_id = pe_id.0;
        }
        AsapBody::RegistrationResponse {
            pool_handle,
            pe_id,
            error,
        }
        | AsapBody::DeregistrationResponse {
            pool_handle,
            pe_id,
            error,
        } => {
            e.pool_handle = ph(pool_handle);
            e.pe_id = pe_id.0;
            e.error = error.as_ref().map(|x| x.code()).unwrap_or(0);
        }
        AsapBody::HandleResolution { pool_handle, items } => {
            e.pool_handle = ph(pool_handle);
            e.counter = u64::from(items.unwrap_or(0));
        }
        AsapBody::HandleResolutionResponse {
            pool_handle,
            elements,
            error,
            ..
        } => {
            e.pool_handle = ph(pool_handle);
            e.counter = elements.len() as u64;
            e.error = error.as_ref().map(|x| x.code()).unwrap_or(0);
        }
        AsapBody::EndpointKeepAlive {
            server_id,
            pool_handle,
            pe_id,
        } => {
            e.pool_handle = ph(pool_handle);
            e.pe_id = pe_id.map(|p| p.0).unwrap_or(0);
            e.sender = server_id.0;
        }
        AsapBody::ServerAnnounce { server_id, .. } => e.sender = server_id.0,
        _ => {}
    }
    e
}

fn write_action(
    log: &mut ActionLog,
    direction: &str,
    protocol: &str,
    e: &ActionEntry,
) -> io::Result<()> {
    let now = seconds(logging::wall_micros());
    log.line += 1;
    writeln!(
        log.out,
        "{:06}   {:.6} {:.6}   \"{direction}\" \"{protocol}\" \"{}\" \"\"   0x{:x} {} {:.6}   \
         \"{}\" 0x{:x}   0x{:x} 0x{:x} 0x{:x}   {:x}",
        log.line,
        now,
        now - log.started,
        e.action,
        e.flags,
        e.counter,
        0.0,
        e.pool_handle.replace('"', "'"),
        e.pe_id,
        e.sender,
        e.receiver,
        0,
        e.error,
    )?;
    log.out.flush()
}

/// The OMNeT++ scalar file rsplib writes at the end of a run.
fn scalar_text(
    object: &str,
    c: &crate::core::registrar::Counters,
    m: &MessageCounts,
    averages: [f64; 4],
) -> String {
    let mut s = String::from("run 1 \"scenario\"\n");
    for (name, v) in [
        ("Registrar Total Registrations", c.registrations),
        ("Registrar Total Reregistrations", c.reregistrations),
        ("Registrar Total Deregistrations", c.deregistrations),
        ("Registrar Total Handle Resolutions", c.handle_resolutions),
        ("Registrar Total Failure Reports", c.unreachable_reports),
        ("Registrar Total Synchronizations", m.handle_table_requests),
        ("Registrar Total Handle Updates", m.handle_updates),
        ("Registrar Total Endpoint Keep Alives", m.keepalives_sent),
    ] {
        s.push_str(&format!("scalar \"{object}\" \"{name}\" {v:8}\n"));
    }
    for (name, v) in [
        "Registrar Average Number Of Pools",
        "Registrar Average Number Of Pool Elements",
        "Registrar Average Number Of Owned Pool Elements",
        "Registrar Average Number Of Peers",
    ]
    .iter()
    .zip(averages)
    {
        s.push_str(&format!("scalar \"{object}\" \"{name}\" {v:.6}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::types::{PeId, PoolHandle};

    #[test]
    fn status_text_is_rsplibs() {
        let f = Figures {
            peers: 1,
            pools: 2,
            pool_elements: 5,
            owned_pool_elements: 3,
        };
        assert_eq!(status_text(&f), "5[3] PEs in 2 Pools, 1 Peer");
    }

    #[test]
    fn action_entries_name_the_message_pool_and_pe() {
        let msg = AsapMessage::new(AsapBody::Deregistration {
            pool_handle: PoolHandle::new(b"EchoPool"),
            pe_id: PeId(0x1234),
        });
        let e = action_entry(PPID_ASAP, &msg.to_bytes().unwrap());
        assert_eq!(e.action, "Deregistration");
        assert_eq!(e.pool_handle, "EchoPool");
        assert_eq!(e.pe_id, 0x1234);
        let garbage = action_entry(PPID_ENRP, &[1, 0, 0, 12, 0, 0, 0, 7, 0, 0, 0, 9]);
        assert_eq!((garbage.sender, garbage.receiver), (7, 9));
    }

    #[test]
    fn weighted_average_weighs_by_time() {
        let mut w = Weighted::new(0.0);
        w.update(0.0, 10);
        w.update(1.0, 20);
        assert!((w.average(2.0) - 15.0).abs() < 1e-9);
    }

    #[test]
    fn scalars_have_rsplibs_names() {
        let t = scalar_text(
            "obj",
            &crate::core::registrar::Counters::default(),
            &MessageCounts::default(),
            [1.0, 2.0, 3.0, 0.0],
        );
        assert!(t.starts_with("run 1 \"scenario\"\n"));
        assert!(t.contains("scalar \"obj\" \"Registrar Average Number Of Pool Elements\" 2.000000"));
        assert_eq!(t.lines().count(), 13);
    }
}
