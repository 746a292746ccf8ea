//! Server-initiated session handoff with real processes over loopback TCP (docs/handoff.md):
//! our registrar, pool elements and pool users run as `rsptool handoff pe|pu`, which number
//! every byte they send, so a byte lost, duplicated or reordered fails the PU.

mod common;

use std::io::Write;
use std::process::{ChildStdin, Command, Stdio};
use std::time::Duration;

use common::{temp_dir, Proc, Registrar};

const REGISTRAR: &str = env!("CARGO_BIN_EXE_rspregistrar");
const RSPTOOL: &str = env!("CARGO_BIN_EXE_rsptool");

struct Pe {
    proc: Proc,
    stdin: ChildStdin,
    id: u32,
    port: u16,
}

impl Pe {
    fn start(reg: &Registrar, id: u32, extra: &[&str]) -> Pe {
        let mut cmd = Command::new(RSPTOOL);
        cmd.args(["handoff", "pe", "--registrar"])
            .arg(reg.asap.to_string())
            .arg(format!("--identifier={id}"))
            .args(extra)
            .stdin(Stdio::piped());
        let mut proc = Proc::spawn_command(&mut cmd);
        let stdin = proc.child.stdin.take().unwrap();
        let line = proc.wait_for("ready id=", Duration::from_secs(10));
        let port = line.rsplit("port=").next().unwrap().parse().unwrap();
        Pe {
            proc,
            stdin,
            id,
            port,
        }
    }

    fn command(&mut self, c: &str) {
        writeln!(self.stdin, "{c}").unwrap();
    }

    /// The PE's count of sessions it handed off.
    fn handed_off(&mut self) -> u64 {
        self.command("quit");
        let line = self
            .proc
            .wait_for("exit handed_off=", Duration::from_secs(10));
        line.rsplit('=').next().unwrap().parse().unwrap()
    }
}

/// Runs a PU to its end: its output lines and exit status.
fn pu(reg: &Registrar, args: &[&str]) -> (Vec<String>, bool) {
    let out = Command::new(RSPTOOL)
        .args(["handoff", "pu", "--registrar"])
        .arg(reg.asap.to_string())
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    (
        text.lines().map(str::to_string).collect(),
        out.status.success(),
    )
}

/// `key=value` of a line.
fn field(line: &str, key: &str) -> String {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
        .to_string()
}

fn total(lines: &[String]) -> &str {
    lines
        .iter()
        .find(|l| l.starts_with("total "))
        .unwrap_or_else(|| panic!("no total line in {lines:?}"))
}

fn registrar(name: &str) -> Registrar {
    let dir = temp_dir(name);
    Registrar::start(REGISTRAR, &dir.join("registrar.log"), &[])
}

#[test]
fn ten_thousand_handoffs_between_three_pes_lose_nothing() {
    let reg = registrar("handoff-10k");
    let mut pes: Vec<Pe> = (1..=3)
        .map(|i| Pe::start(&reg, i, &["--handoff-every=1"]))
        .collect();
    let (mut handoffs, mut sessions) = (0u64, 0u64);
    for _round in 0..6 {
        let (lines, ok) = pu(&reg, &["--sessions=10", "--messages=3000"]);
        assert!(ok, "{lines:?}");
        let t = total(&lines);
        assert_eq!(field(t, "failed"), "0", "{lines:?}");
        for l in lines.iter().filter(|l| l.starts_with("session ")) {
            assert!(l.contains(" ok "), "{l}");
            assert_eq!(field(l, "bytes"), (3000 * 64).to_string(), "{l}");
            assert_eq!(field(l, "failovers"), "0", "{l}");
        }
        handoffs += field(t, "handoffs").parse::<u64>().unwrap();
        sessions += 10;
        if handoffs >= 10_000 {
            break;
        }
    }
    assert!(handoffs >= 10_000, "only {handoffs} handoffs");
    // Every handoff the PU followed was committed by one PE; beyond those, a session may end
    // (the PU has all its answers) between its Handoff Ready and the commit: one at most.
    let committed: u64 = pes.iter_mut().map(Pe::handed_off).sum();
    assert!(
        (handoffs..=handoffs + sessions).contains(&committed),
        "{committed} commits for {handoffs} handoffs of {sessions} sessions"
    );
}

#[test]
fn a_refused_handoff_keeps_the_session() {
    // Two PEs with `pe_args` behind a fresh registrar; a PU of 4 sessions with `pu_args`:
    // its output lines (the PU must succeed).
    let run = |name: &str, pe_args: &[&str], pu_args: &[&str]| -> Vec<String> {
        let reg = registrar(name);
        let _pes: Vec<Pe> = (1..=2).map(|i| Pe::start(&reg, i, pe_args)).collect();
        let mut args = vec!["--sessions=4", "--messages=200"];
        args.extend(pu_args);
        let (lines, ok) = pu(&reg, &args);
        assert!(ok, "{lines:?}");
        lines
    };
    let served_by_one_pe = |lines: &[String]| {
        for l in lines.iter().filter(|l| l.starts_with("session ")) {
            assert_eq!(field(l, "handoffs"), "0", "{l}");
            assert_eq!(
                field(l, "pes"),
                field(l, "pe"),
                "served by one PE only: {l}"
            );
        }
    };
    // The PU refuses.
    served_by_one_pe(&run(
        "handoff-refused",
        &["--handoff-every=2"],
        &["--refuse"],
    ));
    // The receivers refuse the offers (limit 0).
    served_by_one_pe(&run(
        "handoff-offer-refused",
        &["--handoff-every=2", "--offer", "--limit=0"],
        &[],
    ));
    // With a limit the receivers are not at, offers are accepted.
    let lines = run(
        "handoff-offer-accepted",
        &["--handoff-every=2", "--offer", "--limit=100"],
        &[],
    );
    assert!(field(total(&lines), "handoffs").parse::<u64>().unwrap() > 0);
}

#[test]
fn a_receiver_that_died_makes_the_handoff_an_ordinary_failover() {
    let reg = registrar("handoff-dead-receiver");
    let mut dead = Pe::start(&reg, 0xd, &[]);
    let dead_at = format!("d@127.0.0.1:{}", dead.port);
    dead.proc.kill9();
    let _donor = Pe::start(
        &reg,
        1,
        &["--handoff-every=3", &format!("--handoff-to={dead_at}")],
    );
    let _other = Pe::start(&reg, 2, &[]);
    let (lines, ok) = pu(&reg, &["--sessions=4", "--messages=300"]);
    assert!(ok, "{lines:?}");
    let t = total(&lines);
    assert_eq!(field(t, "handoffs"), "0", "{lines:?}");
    let failovers: u64 = lines
        .iter()
        .filter(|l| l.starts_with("session "))
        .map(|l| field(l, "failovers").parse::<u64>().unwrap())
        .sum();
    assert!(failovers > 0, "{lines:?}");
}

#[test]
fn draining_a_pe_with_100_sessions_moves_them_all() {
    let reg = registrar("handoff-drain");
    let mut a = Pe::start(&reg, 0xa, &[]);
    let mut pu = Proc::spawn_command(
        Command::new(RSPTOOL)
            .args(["handoff", "pu", "--registrar"])
            .arg(reg.asap.to_string())
            .args(["--sessions=100", "--messages=250", "--interval=20"]),
    );
    // All 100 sessions on A before the others exist.
    let mut open = 0;
    for _ in 0..100 {
        a.command("stats");
        let line = a.proc.wait_for("sessions=", Duration::from_secs(5));
        open = field(&line, "sessions").parse::<u64>().unwrap();
        a.proc.forget_seen();
        if open == 100 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(open, 100);
    let _b = Pe::start(&reg, 0xb, &[]);
    let _c = Pe::start(&reg, 0xc, &[]);
    a.command("drain");
    let line = a
        .proc
        .wait_for("drain handed_off=", Duration::from_secs(30));
    let t = pu.wait_for("total ", Duration::from_secs(60));
    let status = pu.child.wait().unwrap();
    let sessions = pu.seen_lines();
    // On failure, what the PU saw of each session tells which one the drain closed.
    let odd: Vec<&String> = sessions
        .iter()
        .filter(|l| !l.starts_with("session ") || !l.contains(" failovers=0"))
        .collect();
    assert_eq!(field(&line, "handed_off"), "100", "{line} {odd:?}");
    assert_eq!(field(&line, "closed"), "0", "{line} {odd:?}");
    assert_eq!(field(&line, "sessions"), "0", "{line} {odd:?}");
    assert_eq!(field(&t, "failed"), "0", "{t}");
    assert!(status.success());
    let served: Vec<&String> = sessions
        .iter()
        .filter(|l| l.starts_with("session "))
        .collect();
    assert_eq!(served.len(), 100);
    for l in served {
        assert!(l.contains(" ok "), "{l}");
        assert_ne!(
            field(l, "pe"),
            format!("{:08x}", a.id),
            "still on the drained PE: {l}"
        );
        assert_eq!(field(l, "failovers"), "0", "{l}");
    }
}

/// A receiver's registered load steers a Least-Used choice (`EnhancedPe::set_load`, what
/// `rspPoolElementSetLoad` calls): the donor's "least-used PE" is the one with the lowest.
#[test]
fn set_load_steers_least_used_choices() {
    use rsplib::core::types::{PolicyInfo, PolicyType, PoolHandle, TransportProtocol};
    use rsplib::library::session::{EnhancedPe, PeOptions};
    use rsplib::library::{Library, LibraryConfig};
    use rsplib::transport::Protocol;
    use std::sync::Arc;

    let reg = registrar("handoff-load");
    let lib = Arc::new(
        Library::start(LibraryConfig {
            cache_timeout: 0,
            announce_groups: Vec::new(),
            transport: Protocol::Tcp,
            ..LibraryConfig::default()
        })
        .unwrap(),
    );
    lib.add_static_registrar(vec![reg.asap]);
    let pool = PoolHandle::from("LoadPool");
    let pe = |id| {
        EnhancedPe::create(
            lib.clone(),
            pool.clone(),
            PeOptions {
                identifier: id,
                domain: libc::AF_INET,
                socket_type: libc::SOCK_STREAM,
                protocol: TransportProtocol::Tcp,
                local_port: 0,
                reregistration_interval: Duration::from_secs(60),
                registration_life_ms: 180_000,
                policy: PolicyInfo::new(PolicyType::LeastUsed),
                control_channel: true,
            },
        )
        .unwrap()
    };
    let (a, b) = (pe(0xa1), pe(0xb1));
    let first = |lib: &Library| lib.resolve_fresh(&pool, 1).unwrap()[0].id.0;
    a.set_load(0x8000_0000);
    b.set_load(0x1000_0000);
    assert_eq!(first(&lib), 0xb1);
    assert_eq!(
        first(&lib),
        0xb1,
        "Least Used keeps choosing the lower load"
    );
    b.set_load(0xf000_0000);
    assert_eq!(first(&lib), 0xa1);
    a.delete();
    b.delete();
}
