//! The registrar binary over TCP on loopback with real processes: test PEs and PUs (`rsptool`,
//! written against the core) register, resolve, get keep-alives, and are removed after kill -9
//! and after missed keep-alives; malformed input gets Operation Errors or the connection closed
//! while everyone else keeps being served.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use rsplib::core::types::{
    PeId, PolicyInfo, PolicyType, PoolHandle, TransportAddress, TransportProtocol,
};
use rsplib::core::wire::{cause, AsapBody, AsapMessage, PoolElement};

mod common;
use common::Proc;

const REGISTRAR: &str = env!("CARGO_BIN_EXE_rspregistrar");
const TOOL: &str = env!("CARGO_BIN_EXE_rsptool");

/// A registrar on a free loopback port, keep-alive interval/timeout in ms.
fn registrar(ka_interval: u32, ka_timeout: u32) -> (Proc, SocketAddr) {
    registrar_with(ka_interval, ka_timeout, &["-loglevel=1"])
}

/// As [`registrar`], with `extra` options.
fn registrar_with(ka_interval: u32, ka_timeout: u32, extra: &[&str]) -> (Proc, SocketAddr) {
    let mut args = vec![
        "-asap=127.0.0.1:0".to_string(),
        "-enrp=127.0.0.1:0".into(),
        "-asapannounce=off".into(),
        "-enrpannounce=off".into(),
        "-transport=tcp".into(),
        "-minaddressscope=loopback".into(),
        format!("-endpointkeepalivetransmissioninterval={ka_interval}"),
        format!("-endpointkeepalivetimeoutinterval={ka_timeout}"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut p = Proc::spawn(REGISTRAR, &refs);
    let line = p.wait_for("Listening: ASAP over TCP on ", Duration::from_secs(10));
    let addr = line.rsplit(' ').next().unwrap().parse().unwrap();
    (p, addr)
}

fn pe(reg: SocketAddr, pool: &str, id: u32, extra: &[&str]) -> Proc {
    let mut args = vec![
        "pe".to_string(),
        format!("-registrar={reg}"),
        format!("-poolhandle={pool}"),
        format!("-identifier=0x{id:x}"),
        format!("-port={}", 20000 + (id & 0xfff)),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut p = Proc::spawn(TOOL, &refs);
    p.wait_for("registered PE", Duration::from_secs(10));
    p
}

/// The PE ids a handle resolution returns (empty if the pool is unknown).
fn resolve(reg: SocketAddr, pool: &str, items: u32) -> Vec<u32> {
    let out = Command::new(TOOL)
        .args([
            "resolve",
            &format!("-registrar={reg}"),
            &format!("-poolhandle={pool}"),
            &format!("-items={items}"),
        ])
        .output()
        .unwrap();
    let mut ids: Vec<u32> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("PE 0x"))
        .map(|l| u32::from_str_radix(&l[..8], 16).unwrap())
        .collect();
    ids.sort();
    ids
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends raw bytes on a fresh connection and returns the decoded answer (None = closed).
fn raw_exchange(reg: SocketAddr, bytes: &[u8]) -> Option<AsapMessage> {
    let mut s = TcpStream::connect(reg).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(bytes).unwrap();
    let mut header = [0u8; 4];
    if s.read_exact(&mut header).is_err() {
        return None;
    }
    let len = u16::from_be_bytes([header[2], header[3]]) as usize;
    let mut msg = header.to_vec();
    msg.resize(len, 0);
    s.read_exact(&mut msg[4..]).unwrap();
    Some(AsapMessage::decode(&msg).unwrap().message)
}

#[test]
fn pes_register_resolve_get_keepalives_and_are_removed_when_killed() {
    let (_reg, addr) = registrar(300, 500);
    let mut a = pe(addr, "EchoPool", 0xe001, &[]);
    let _b = pe(addr, "EchoPool", 0xe002, &[]);
    assert_eq!(resolve(addr, "EchoPool", 10), vec![0xe001, 0xe002]);
    assert_eq!(resolve(addr, "EchoPool", 1).len(), 1);
    assert_eq!(resolve(addr, "NoSuchPool", 3), Vec::<u32>::new());

    // Keep-alives arrive and are answered; the PE stays.
    a.wait_for("keep-alive from registrar", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(resolve(addr, "EchoPool", 10), vec![0xe001, 0xe002]);

    // kill -9: the connection dies, the PE is gone at once.
    a.kill9();
    wait_until("the killed PE is removed", Duration::from_secs(2), || {
        resolve(addr, "EchoPool", 10) == vec![0xe002]
    });
}

#[test]
fn a_pe_that_ignores_keepalives_is_removed() {
    let (_reg, addr) = registrar(200, 300);
    let _good = pe(addr, "KaPool", 0xa001, &[]);
    let mut bad = pe(addr, "KaPool", 0xa002, &["-ignore-keepalives"]);
    assert_eq!(resolve(addr, "KaPool", 10), vec![0xa001, 0xa002]);
    bad.wait_for("ignored", Duration::from_secs(5));
    bad.wait_for("registrar closed the connection", Duration::from_secs(5));
    assert_eq!(resolve(addr, "KaPool", 10), vec![0xa001]);
}

/// The thread whose loop serves the connection PE `id` registered over, from the registrar's
/// log lines "registered PE … (connection N)" and "connection N from … (thread T)".
fn thread_of_pe(log: &std::path::Path, id: u32) -> u32 {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let line = |what: &str| {
        text.lines()
            .find(|l| l.contains(what))
            .unwrap_or_else(|| panic!("no line with {what:?} in the log:\n{text}"))
    };
    let conn = line(&format!("registered PE 0x{id:08x}"))
        .rsplit("(connection ")
        .next()
        .and_then(|t| t.strip_suffix(')'))
        .expect("a connection")
        .to_string();
    line(&format!("connection {conn} from "))
        .rsplit("(thread ")
        .next()
        .and_then(|t| t.strip_suffix(')'))
        .and_then(|t| t.parse().ok())
        .expect("a thread")
}

#[test]
fn with_three_loops_every_thread_serves_pes_keepalives_and_removals() {
    let log = common::temp_dir("registrar-threads").join("registrar.log");
    let (mut reg, addr) = registrar_with(
        200,
        300,
        &[
            "-threads=3",
            "-loglevel=5",
            &format!("-logfile={}", log.display()),
        ],
    );
    // Connections are dealt to the loops in turn as they are accepted: 0, 1, 2, 0.
    let _a = pe(addr, "ThreadPool", 0x7001, &[]);
    let mut bad = pe(addr, "ThreadPool", 0x7002, &["-ignore-keepalives"]);
    let mut c = pe(addr, "ThreadPool", 0x7003, &[]);
    let _d = pe(addr, "ThreadPool", 0x7004, &[]);
    let threads: Vec<u32> = (0x7001..=0x7004).map(|id| thread_of_pe(&log, id)).collect();
    assert_eq!(threads, vec![0, 1, 2, 0]);

    // A PU (on whichever loop) sees the PEs of every loop; the bad PE's keep-alives come from
    // the first loop's timers over the second loop's connection, and it is removed.
    assert_eq!(
        resolve(addr, "ThreadPool", 10),
        vec![0x7001, 0x7002, 0x7003, 0x7004]
    );
    bad.wait_for("ignored", Duration::from_secs(5));
    bad.wait_for("registrar closed the connection", Duration::from_secs(5));
    wait_until("the bad PE is removed", Duration::from_secs(2), || {
        resolve(addr, "ThreadPool", 10) == vec![0x7001, 0x7003, 0x7004]
    });
    // The others answer their keep-alives on every loop and stay.
    c.wait_for("keep-alive from registrar", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        resolve(addr, "ThreadPool", 10),
        vec![0x7001, 0x7003, 0x7004]
    );
    // kill -9 of the third loop's PE: removed at once.
    c.kill9();
    wait_until("the killed PE is removed", Duration::from_secs(2), || {
        resolve(addr, "ThreadPool", 10) == vec![0x7001, 0x7004]
    });
    // SIGTERM stops every loop: exit code 0.
    reg.signal(libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = reg.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the registrar did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
}

#[test]
fn malformed_messages_get_errors_and_everyone_else_is_still_served() {
    let (mut reg, addr) = registrar(5000, 5000);
    let _p = pe(addr, "SafePool", 0x5001, &[]);

    // Unknown message type → ASAP Error "unrecognized message".
    match raw_exchange(addr, &[0x33, 0, 0, 4]).map(|m| m.body) {
        Some(AsapBody::Error { error }) => assert_eq!(error.code(), cause::UNRECOGNIZED_MESSAGE),
        other => panic!("{other:?}"),
    }
    // Unknown parameter 0x4123 ("stop and report") in a Handle Resolution → unrecognized parameter.
    let bad_param = [
        0x05, 0, 0, 0x14, 0, 9, 0, 8, b'S', b'a', b'f', b'e', 0x41, 0x23, 0, 8, 1, 2, 3, 4,
    ];
    match raw_exchange(addr, &bad_param).map(|m| m.body) {
        Some(AsapBody::Error { error }) => assert_eq!(error.code(), cause::UNRECOGNIZED_PARAMETER),
        other => panic!("{other:?}"),
    }
    // A parameter whose length overflows the message → invalid values.
    let overflow = [0x05, 0, 0, 0x0c, 0, 9, 0, 0x40, b'S', b'a', b'f', b'e'];
    match raw_exchange(addr, &overflow).map(|m| m.body) {
        Some(AsapBody::Error { error }) => assert_eq!(error.code(), cause::INVALID_VALUES),
        other => panic!("{other:?}"),
    }
    // A header whose length is below 4 cannot be resynchronised: the connection is closed.
    assert!(raw_exchange(addr, &[0x05, 0, 0, 2]).is_none());
    // Garbage of every length does not disturb the others.
    for n in 0..64u8 {
        let mut s = TcpStream::connect(addr).unwrap();
        let junk: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37).wrapping_add(n)).collect();
        let _ = s.write_all(&junk);
    }
    // An inconsistent policy is rejected with cause 5.
    let mut t = TransportAddress::new(
        TransportProtocol::Tcp,
        9999,
        vec!["127.0.0.1".parse().unwrap()],
    );
    t.transport_use = 0;
    let mut e = PoolElement::new(PeId(0x5002), t, PolicyInfo::new(PolicyType::LeastUsed));
    e.registration_life = 10_000;
    let reg_msg = AsapMessage::new(AsapBody::Registration {
        pool_handle: PoolHandle::from("SafePool"),
        element: e,
    })
    .to_bytes()
    .unwrap();
    match raw_exchange(addr, &reg_msg) {
        Some(m) => {
            assert_eq!(m.flags & 1, 1, "R flag");
            match m.body {
                AsapBody::RegistrationResponse { error: Some(e), .. } => {
                    assert_eq!(e.code(), cause::INCONSISTENT_POOLING_POLICY)
                }
                other => panic!("{other:?}"),
            }
        }
        None => panic!("no answer"),
    }
    assert_eq!(resolve(addr, "SafePool", 3), vec![0x5001]);

    // SIGTERM: clean shutdown, exit code 0.
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(reg.child.id() as i32, libc::SIGTERM);
    }
    let status = reg.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn bad_options_and_busy_ports_fail_with_one_line_and_exit_1() {
    for args in [
        vec!["-bogus"],
        vec!["-asap=not-an-address"],
        vec!["-maxhresitems=0"],
    ] {
        let out = Command::new(REGISTRAR).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("rspregistrar: "), "{err}");
    }
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let out = Command::new(REGISTRAR)
        .args([
            &format!("-asap=127.0.0.1:{port}"),
            "-enrp=127.0.0.1:0",
            "-transport=tcp",
            "-asapannounce=off",
            "-enrpannounce=off",
            "-quiet",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot bind the ASAP endpoint"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let help = Command::new(REGISTRAR).arg("--help").output().unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("-maxbadpereports"));
}
