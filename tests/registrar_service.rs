//! The registrar as a service, run as a binary on loopback: Prometheus metrics scraped by a
//! real HTTP client, Component Status reports over UDP, rsplib's statistics and action log,
//! the log's line format (and the journal's), SIGHUP reopening the log file, systemd's
//! readiness notification, and `-daemonpidfile=` driven by Debian's start-stop-daemon.

use std::net::UdpSocket;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{
    deregistration, element, registration, response_cause, MsgReader, PeHolder, Proc, Registrar,
};
use rsplib::core::types::PolicyType;
use std::io::Write;
use std::net::TcpStream;

const REGISTRAR: &str = env!("CARGO_BIN_EXE_rspregistrar");

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn metrics_url(r: &mut Registrar) -> String {
    r.proc
        .wait_for("Metrics: http://", Duration::from_secs(5))
        .trim_start_matches("Metrics: ")
        .to_string()
}

fn sample(page: &str, name: &str) -> u64 {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in\n{page}"))
}

#[test]
fn metrics_are_scraped_over_http() {
    let dir = common::temp_dir("metrics");
    let mut r = Registrar::start(
        REGISTRAR,
        &dir.join("log"),
        &["-metrics=127.0.0.1:0", "-maxpesperpool=2"],
    );
    let url = metrics_url(&mut r);
    let get = |u: &str| {
        ureq::get(u)
            .call()
            .expect("scrape")
            .body_mut()
            .read_to_string()
            .unwrap()
    };
    let page = get(&url);
    assert_eq!(sample(&page, "rsplib_registrar_pool_elements"), 0);
    assert!(page.contains("# TYPE rsplib_registrar_registrations_total counter"));
    let pes = PeHolder::start(r.asap, "127.0.0.1", "MetricsPool", &[1, 2], 21000, 30_000);
    // A third PE in the pool is over -maxpesperpool=2: refused, counted by cause.
    let mut s = common::connect_from("127.0.0.1", r.asap).unwrap();
    let e = common::element(
        3,
        "127.0.0.1",
        21003,
        rsplib::core::types::PolicyType::RoundRobin,
        30_000,
    );
    let mut reader = common::MsgReader::default();
    let answer = common::request(
        &mut s,
        &mut reader,
        &common::registration("MetricsPool", e),
        Duration::from_secs(5),
    )
    .expect("an answer");
    assert!(common::response_cause(&answer).is_err());
    let page = get(&url);
    assert_eq!(sample(&page, "rsplib_registrar_pools"), 1);
    assert_eq!(sample(&page, "rsplib_registrar_pool_elements"), 2);
    assert_eq!(sample(&page, "rsplib_registrar_registrations_total"), 2);
    assert_eq!(
        sample(
            &page,
            "rsplib_registrar_refusals_total{cause=\"pes_per_pool\"}"
        ),
        1
    );
    assert!(sample(&page, "rsplib_registrar_connections") >= 2);
    let err = ureq::get(&url.replace("/metrics", "/nothing")).call();
    assert!(matches!(err, Err(ureq::Error::StatusCode(404))), "{err:?}");
    drop(pes);
}

#[test]
fn csp_reports_statistics_and_action_log_are_written() {
    let dir = common::temp_dir("reports");
    let monitor = UdpSocket::bind("127.0.0.1:0").unwrap();
    monitor
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let stats = dir.join("stats");
    let actions = dir.join("actions");
    let r = Registrar::start(
        REGISTRAR,
        &dir.join("log"),
        &[
            &format!("-cspserver={}", monitor.local_addr().unwrap()),
            "-cspinterval=100",
            "-identifier=0x5eed",
            &format!("-statsfile={}", stats.display()),
            "-statsinterval=100",
            &format!("-actionlogfile={}", actions.display()),
        ],
    );
    let pes = PeHolder::start(r.asap, "127.0.0.1", "ReportPool", &[7], 21100, 30_000);
    // CSP: rsplib's status report layout, sender = registrar group | identifier.
    let mut buf = [0u8; 2048];
    let report = loop {
        let n = monitor.recv(&mut buf).expect("a CSP report");
        let text = String::from_utf8_lossy(&buf[156..284]).to_string();
        if text.starts_with("1[1] PEs in 1 Pool") {
            break buf[..n].to_vec();
        }
    };
    assert_eq!(report[0], 1, "type: report");
    assert_eq!(&report[4..8], &[0, 0, 2, 0], "rsplib 3's version 0x0200");
    assert_eq!(
        usize::from(u16::from_be_bytes([report[2], report[3]])),
        report.len()
    );
    assert_eq!(&report[8..16], &0x0100_0000_0000_5eedu64.to_be_bytes());
    wait_until("three statistics lines", Duration::from_secs(5), || {
        std::fs::read_to_string(&stats).is_ok_and(|t| t.lines().count() >= 4)
    });
    let table = std::fs::read_to_string(&stats).unwrap();
    let mut lines = table.lines();
    assert!(lines
        .next()
        .unwrap()
        .starts_with("AbsTime RelTime Runtime UserTime SystemTime"));
    let row: Vec<&str> = lines.last().unwrap().split_whitespace().collect();
    assert_eq!(row.len(), 18, "{table}");
    assert_eq!(
        &row[6..10],
        &["0", "1", "1", "1"],
        "peers, pools, PEs, owned: {table}"
    );
    let log = std::fs::read_to_string(&actions).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("\"Recv\" \"ASAP\" \"Registration\"")
                && l.contains("\"ReportPool\" 0x7")),
        "{log}"
    );
    drop(pes);
}

#[test]
fn log_lines_have_local_time_level_and_component_and_sighup_reopens() {
    let dir = common::temp_dir("logformat");
    let log = dir.join("log");
    let r = Registrar::start(REGISTRAR, &log, &["-loglevel=3"]);
    let pes = PeHolder::start(r.asap, "127.0.0.1", "LogPool", &[0x42], 21200, 30_000);
    wait_until("the registration logged", Duration::from_secs(5), || {
        r.log_text().contains("registered PE")
    });
    let text = r.log_text();
    let line = text.lines().find(|l| l.contains("registered PE")).unwrap();
    // 2026-12-02 13:17:15.123456 NOTICE  registrar: registered PE 0x00000042 in pool "LogPool" from 127.0.0.1
    let b = line.as_bytes();
    assert!(
        b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[10] == b' ',
        "{line}"
    );
    assert!(
        b[19] == b'.' && b[20..26].iter().all(u8::is_ascii_digit),
        "{line}"
    );
    assert!(
        line[26..].starts_with(" NOTICE  registrar: registered PE"),
        "{line}"
    );
    assert!(
        line.contains("\"LogPool\"") && line.contains("127.0.0.1"),
        "{line}"
    );
    // logrotate: move the file away, SIGHUP, and the registrar writes a new one.
    std::fs::rename(&log, dir.join("log.1")).unwrap();
    r.proc.signal(libc::SIGHUP);
    wait_until("a new log file", Duration::from_secs(5), || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("log file reopened"))
    });
    drop(pes);
    wait_until(
        "the removal in the new file",
        Duration::from_secs(5),
        || std::fs::read_to_string(&log).is_ok_and(|t| t.contains("PE 0x00000042")),
    );
}

#[test]
fn under_the_journal_lines_carry_priorities_and_no_stamp() {
    let dir = common::temp_dir("journal");
    let err_path = dir.join("stderr");
    let err = std::fs::File::create(&err_path).unwrap();
    let meta = err.metadata().unwrap();
    let mut child = Command::new(REGISTRAR)
        .args([
            "-asap=127.0.0.1:0",
            "-enrp=127.0.0.1:0",
            "-asapannounce=off",
            "-enrpannounce=off",
            "-transport=tcp",
            "-distancestep=1",
            "-quiet",
        ])
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .unwrap();
    wait_until("the start line", Duration::from_secs(5), || {
        std::fs::read_to_string(&err_path).is_ok_and(|t| t.contains("started"))
    });
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap();
    let text = std::fs::read_to_string(&err_path).unwrap();
    let mut lines = text.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("<4>registrar: -distancestep= is ignored"),
        "{text}"
    );
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("<5>registrar: registrar 0x"),
        "{text}"
    );
}

#[test]
fn readiness_is_notified_once_the_sockets_are_bound() {
    let dir = common::temp_dir("notify");
    let path = dir.join("notify");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut p = Proc::spawn_command(
        Command::new(REGISTRAR)
            .args([
                "-asap=127.0.0.1:0",
                "-enrp=127.0.0.1:0",
                "-asapannounce=off",
                "-enrpannounce=off",
                "-transport=tcp",
            ])
            .env("NOTIFY_SOCKET", &path),
    );
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).expect("READY=1");
    let msg = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(msg.starts_with("READY=1\n"), "{msg}");
    assert!(msg.contains(&format!("MAINPID={}", p.pid())), "{msg}");
    let line = p.wait_for("Listening: ASAP over TCP on ", Duration::from_secs(1));
    let asap: std::net::SocketAddr = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(
        std::net::TcpStream::connect(asap).is_ok(),
        "bound when ready"
    );
    p.signal(libc::SIGTERM);
    let n = sock.recv(&mut buf).expect("STOPPING=1");
    assert_eq!(&buf[..n], b"STOPPING=1");
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let exists = unsafe { libc::kill(pid, 0) } == 0;
    exists
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

fn start_stop_daemon() -> Option<&'static str> {
    ["/sbin/start-stop-daemon", "/usr/sbin/start-stop-daemon"]
        .into_iter()
        .find(|p| Path::new(p).exists())
}

/// Debian's SysV init script for rsplib's registrar runs
/// `start-stop-daemon --start --pidfile $PIDFILE --exec $DAEMON -- $DAEMON_ARGS` with
/// `DAEMON_ARGS="-quiet -daemonpidfile=$PIDFILE -logfile=… -loglevel=3 -logcolor=off"` and
/// stops with `start-stop-daemon --stop --quiet --pidfile $PIDFILE --exec $DAEMON`.
#[test]
fn daemon_mode_works_with_start_stop_daemon() {
    let dir = common::temp_dir("daemon");
    let pidfile = dir.join("rspregistrar.pid");
    let log = dir.join("rspregistrar.log");
    let daemon_args = [
        "-quiet".to_string(),
        format!("-daemonpidfile={}", pidfile.display()),
        format!("-logfile={}", log.display()),
        "-loglevel=3".into(),
        "-logcolor=off".into(),
        // Ours, to stay on loopback and free ports.
        "-asap=127.0.0.1:0".into(),
        "-enrp=127.0.0.1:0".into(),
        "-asapannounce=off".into(),
        "-enrpannounce=off".into(),
    ];
    let ssd = start_stop_daemon();
    let status = match ssd {
        Some(ssd) => Command::new(ssd)
            .args(["--start", "--pidfile"])
            .arg(&pidfile)
            .args(["--exec", REGISTRAR, "--"])
            .args(&daemon_args)
            .status()
            .unwrap(),
        None => {
            eprintln!("start-stop-daemon not found: starting the registrar directly");
            Command::new(REGISTRAR).args(&daemon_args).status().unwrap()
        }
    };
    assert!(status.success(), "the parent exits with 0: {status:?}");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .expect("pid file written by the parent")
        .trim()
        .parse()
        .unwrap();
    assert!(alive(pid), "the daemon {pid} runs");
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_eq!(exe, std::fs::canonicalize(REGISTRAR).unwrap());
    wait_until("the start line in the log", Duration::from_secs(5), || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("started"))
    });
    match ssd {
        Some(ssd) => {
            let st = Command::new(ssd)
                .args(["--stop", "--quiet", "--pidfile"])
                .arg(&pidfile)
                .args(["--exec", REGISTRAR])
                .status()
                .unwrap();
            assert!(st.success(), "{st:?}");
        }
        // SAFETY: signalling the daemon we started.
        None => unsafe {
            libc::kill(pid, libc::SIGTERM);
        },
    }
    wait_until("the daemon gone", Duration::from_secs(5), || !alive(pid));
    wait_until("the pid file removed", Duration::from_secs(5), || {
        !pidfile.exists()
    });
}

/// Debian's `cspmonitor` (rsplib 3.4, package rsplib-tools) lists the registrar from its
/// Component Status reports over UDP on loopback.
#[test]
fn debians_cspmonitor_lists_the_registrar() {
    if !Path::new("/usr/bin/cspmonitor").exists() {
        eprintln!("SKIPPED: cspmonitor is not installed (apt-get install rsplib-tools)");
        return;
    }
    let dir = common::temp_dir("cspmonitor");
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let screen = dir.join("screen");
    let mut monitor = Command::new("/usr/bin/cspmonitor")
        .args([
            &format!("-localaddress=127.0.0.1:{port}"),
            "-updateinterval=200",
            "-full",
        ])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&screen).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let r = Registrar::start(
        REGISTRAR,
        &dir.join("log"),
        &[
            &format!("-cspserver=127.0.0.1:{port}"),
            "-cspinterval=200",
            "-identifier=0x7e57",
        ],
    );
    let pes = PeHolder::start(r.asap, "127.0.0.1", "CspPool", &[9], 21300, 30_000);
    let seen = |t: &str| t.contains("PR $00007e57") && t.contains("1[1] PEs in 1 Pool, 0 Peers");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut text = String::new();
    while Instant::now() < deadline && !seen(&text) {
        std::thread::sleep(Duration::from_millis(100));
        text = String::from_utf8_lossy(&std::fs::read(&screen).unwrap_or_default()).to_string();
    }
    let _ = monitor.kill();
    let _ = monitor.wait();
    drop(pes);
    let tail: String = text
        .chars()
        .rev()
        .take(2000)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    assert!(seen(&text), "cspmonitor's screen:\n{tail}");
}

/// Two peered registrars: each one's metrics count the other as peer and its CSP reports list
/// it as an ENRP association, as rsplib's do.
#[test]
fn peers_show_in_metrics_and_csp_reports() {
    let dir = common::temp_dir("peers-metrics");
    let (e1, e2) = (common::free_port(), common::free_port());
    let monitor = UdpSocket::bind("127.0.0.1:0").unwrap();
    monitor
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut r1 = Registrar::start(
        REGISTRAR,
        &dir.join("log1"),
        &[
            &format!("-enrp=127.0.0.1:{e1}"),
            &format!("-peer=127.0.0.1:{e2}"),
            "-identifier=0x1001",
            "-metrics=127.0.0.1:0",
            &format!("-cspserver={}", monitor.local_addr().unwrap()),
            "-cspinterval=100",
            "-peerheartbeatcycle=1000",
        ],
    );
    let _r2 = Registrar::start(
        REGISTRAR,
        &dir.join("log2"),
        &[
            &format!("-enrp=127.0.0.1:{e2}"),
            &format!("-peer=127.0.0.1:{e1}"),
            "-identifier=0x1002",
            "-peerheartbeatcycle=1000",
        ],
    );
    let url = metrics_url(&mut r1);
    wait_until(
        "r1's metrics count one peer",
        Duration::from_secs(15),
        || {
            let page = ureq::get(&url)
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_to_string().ok())
                .unwrap_or_default();
            page.lines().any(|l| l == "rsplib_registrar_peers 1")
        },
    );
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        assert!(Instant::now() < deadline, "no CSP report with the peer");
        let n = monitor.recv(&mut buf).expect("a CSP report");
        let associations = u16::from_be_bytes([buf[286], buf[287]]);
        if associations == 1 && n == 288 + 24 {
            // Receiver: registrar group | 0x1002; SCTP; PPID 12 (ENRP).
            assert_eq!(&buf[288..296], &0x0100_0000_0000_1002u64.to_be_bytes());
            assert_eq!(&buf[306..312], &[0, 132, 0, 0, 0, 12]);
            let status = String::from_utf8_lossy(&buf[156..284]).to_string();
            assert!(status.contains(", 1 Peer"), "{status}");
            break;
        }
    }
}

/// The registrar keeps its log lines and writes many at once (`logging::set_batched`); they
/// are out by the time the answers sent after them are read. 50 registrations in one write,
/// the 50 acknowledgements read back, and at once, without waiting, the log holds all 50
/// lines; the same for 50 deregistrations.
#[test]
fn log_lines_are_written_before_the_answers_that_follow_them() {
    let dir = common::temp_dir("logorder");
    let r = Registrar::start(REGISTRAR, &dir.join("log"), &["-loglevel=3"]);
    let mut s = TcpStream::connect(r.asap).unwrap();
    let mut reader = MsgReader::default();
    let ids = 0x0100..0x0132u32;
    let count = |text: &str, what: &str| {
        text.lines()
            .filter(|l| l.contains(what) && l.contains("\"OrderPool\""))
            .count()
    };
    for (request, logged) in [
        (
            ids.clone()
                .flat_map(|id| {
                    let e = element(id, "127.0.0.1", 21300, PolicyType::RoundRobin, 30_000);
                    registration("OrderPool", e)
                })
                .collect::<Vec<u8>>(),
            "registered PE",
        ),
        (
            ids.clone()
                .flat_map(|id| deregistration("OrderPool", id))
                .collect(),
            "deregistered PE",
        ),
    ] {
        s.write_all(&request).unwrap();
        for _ in ids.clone() {
            let m = reader.next_asap(&mut s, Duration::from_secs(5)).unwrap();
            assert_eq!(response_cause(&m), Ok(()), "{m:?}");
        }
        let text = r.log_text();
        assert_eq!(count(&text, logged), ids.len(), "{logged}:\n{text}");
    }
}
