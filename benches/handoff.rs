//! Server-initiated session handoff over loopback TCP: `cargo bench --bench handoff`.
//!
//! Real processes: our registrar, `rsptool handoff pe` pool elements and an `rsptool handoff
//! pu` (docs/handoff.md). Measures, as medians of `HANDOFF_ROUNDS` (default 5) rounds:
//! * handoffs per second with 10 streaming sessions that two PEs hand to each other after
//!   every message, and the CPU time per handoff of the PEs (each handoff has one donor and
//!   one receiver: PE CPU / handoffs is the cost of donating plus receiving one), of the PU
//!   and of the registrar; the same load without handoffs is run alternately, and the
//!   difference is the handoffs' own cost;
//! * the client-seen handoff latency (the PU reads the commit, the last message from the
//!   donor, until the receiver's first answer), median and 99th percentile, with one session
//!   and with ten;
//! * the failover latency after kill -9 of the serving PE (the kill until the first answer
//!   from the new PE, CLOCK_MONOTONIC in both processes).
//!
//! `HANDOFF_MESSAGES` sets the messages per session (default 3000). Without `--bench`
//! (`cargo test --benches`) it runs one round of 200 messages: a smoke run.

use std::io::Write;
use std::process::{ChildStdin, Command, Stdio};
use std::time::Duration;

#[path = "../tests/common/mod.rs"]
mod common;

const REGISTRAR: &str = env!("CARGO_BIN_EXE_rspregistrar");
const TOOL: &str = env!("CARGO_BIN_EXE_rsptool");

/// A child process (tests/common's) with its standard input.
struct Proc {
    proc: common::Proc,
    stdin: ChildStdin,
}

impl Proc {
    fn spawn(cmd: &mut Command) -> Proc {
        let mut proc = common::Proc::spawn_command(cmd.stdin(Stdio::piped()));
        let stdin = proc.child.stdin.take().unwrap();
        Proc { proc, stdin }
    }

    fn wait_for(&mut self, text: &str) -> String {
        self.proc.forget_seen();
        self.proc.wait_for(text, Duration::from_secs(120))
    }

    fn pid(&self) -> i32 {
        self.proc.pid()
    }

    fn command(&mut self, c: &str) {
        let _ = writeln!(self.stdin, "{c}");
    }
}

/// user + system CPU time of a process, in µs.
fn cpu_us(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks * 1e6 / hz
}

fn field(line: &str, key: &str) -> String {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
        .to_string()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn pe(reg: &str, id: u32, extra: &[&str]) -> Proc {
    let mut p = Proc::spawn(
        Command::new(TOOL)
            .args(["handoff", "pe", "--registrar", reg])
            .arg(format!("--identifier={id}"))
            .args(extra),
    );
    p.wait_for("ready id=");
    p
}

/// Runs a PU; returns its output lines and (user+system) CPU µs.
fn pu(reg: &str, args: &[&str]) -> (Vec<String>, f64) {
    let mut child = Command::new(TOOL)
        .args(["handoff", "pu", "--registrar", reg])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("pu");
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    // The child's CPU: what the children reaped by this wait add to RUSAGE_CHILDREN.
    let children = || {
        // SAFETY: an all-zero rusage is valid; getrusage fills it.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
        (ru.ru_utime.tv_sec as f64 + ru.ru_stime.tv_sec as f64) * 1e6
            + ru.ru_utime.tv_usec as f64
            + ru.ru_stime.tv_usec as f64
    };
    let before = children();
    let status = child.wait().expect("wait for the PU");
    let cpu = children() - before;
    assert!(status.success(), "PU failed: {out}");
    (out.lines().map(str::to_string).collect(), cpu)
}

fn total(lines: &[String]) -> String {
    lines
        .iter()
        .find(|l| l.starts_with("total "))
        .cloned()
        .expect("total line")
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // Without --bench (`cargo test --benches`, part of `make test`): one small round, a smoke
    // run whose figures mean nothing.
    let full = std::env::args().any(|a| a == "--bench");
    let rounds: usize = std::env::var("HANDOFF_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 5 } else { 1 });
    let messages: u64 = std::env::var("HANDOFF_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 3000 } else { 200 });
    let msgs = format!("--messages={messages}");
    println!("handoff benchmark: {rounds} rounds, 10 sessions x {messages} messages");

    // 1. Throughput and CPU: handing off after every message, alternating with no handoffs.
    let r = common::Registrar::start(
        REGISTRAR,
        &std::env::temp_dir().join("rsplib-handoff-bench-registrar.log"),
        &["-loglevel=3"],
    );
    let reg = r.asap.to_string();
    let (mut rate, mut pe_cpu, mut pu_cpu, mut reg_cpu, mut p50, mut p99) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut pe_base, mut pu_base) = (vec![], vec![]);
    for _ in 0..rounds {
        for with in [true, false] {
            let every = if with {
                "--handoff-every=1"
            } else {
                "--handoff-every=0"
            };
            let mut pes = [pe(&reg, 1, &[every]), pe(&reg, 2, &[every])];
            let before: f64 = pes.iter().map(|p| cpu_us(p.pid())).sum();
            let reg_before = cpu_us(r.proc.pid());
            let (lines, cpu) = pu(&reg, &["--sessions=10", &msgs]);
            let pe_used: f64 = pes.iter().map(|p| cpu_us(p.pid())).sum::<f64>() - before;
            let reg_used = cpu_us(r.proc.pid()) - reg_before;
            let t = total(&lines);
            let handoffs: f64 = field(&t, "handoffs").parse().unwrap();
            for p in &mut pes {
                p.command("quit");
            }
            if with {
                rate.push(field(&t, "handoffs_per_s").parse().unwrap());
                pe_cpu.push(pe_used / handoffs);
                pu_cpu.push(cpu / handoffs);
                reg_cpu.push(reg_used / handoffs);
                p50.push(field(&t, "latency_us_p50").parse().unwrap());
                p99.push(field(&t, "latency_us_p99").parse().unwrap());
                // The same load's cost without handoffs, per handoff of this round.
                pe_base.push(f64::NAN);
                pu_base.push(handoffs);
            } else {
                let n = pu_base.len() - 1;
                let h = pu_base[n];
                pe_base[n] = pe_used / h;
                pu_base[n] = cpu / h;
            }
        }
    }
    let (pe_m, pe_b) = (median(&mut pe_cpu), median(&mut pe_base));
    let (pu_m, pu_b) = (median(&mut pu_cpu), median(&mut pu_base));
    println!(
        "10 sessions, handoff after every message: {:.0} handoffs/s (whole machine: PU, 2 PEs, registrar on these cores)",
        median(&mut rate)
    );
    println!(
        "  CPU per handoff: PEs (donor + receiver) {pe_m:.0} us, of which the data {pe_b:.0} us -> handoff {:.0} us ({:.0} handoffs/s per core); PU {pu_m:.0} us (data {pu_b:.0} us -> {:.0} us); registrar {:.1} us",
        pe_m - pe_b,
        1e6 / (pe_m - pe_b).max(1.0),
        pu_m - pu_b,
        median(&mut reg_cpu)
    );
    println!(
        "  client-seen latency (commit read -> receiver's first answer): p50 {:.0} us, p99 {:.0} us",
        median(&mut p50),
        median(&mut p99)
    );

    // 2. Latency with one session.
    let mut pes = [
        pe(&reg, 1, &["--handoff-every=1"]),
        pe(&reg, 2, &["--handoff-every=1"]),
    ];
    let (mut q50, mut q99) = (vec![], vec![]);
    for _ in 0..rounds {
        let (lines, _) = pu(&reg, &["--sessions=1", "--messages=1000"]);
        let t = total(&lines);
        q50.push(field(&t, "latency_us_p50").parse().unwrap());
        q99.push(field(&t, "latency_us_p99").parse().unwrap());
    }
    println!(
        "1 session: client-seen handoff latency p50 {:.0} us, p99 {:.0} us",
        median(&mut q50),
        median(&mut q99)
    );
    for p in &mut pes {
        p.command("quit");
    }
    drop(pes);

    // 3. Failover after kill -9.
    let (mut lat, mut noticed) = (vec![], vec![]);
    for i in 0..rounds {
        let mut a = pe(&reg, 0x100 + i as u32 * 2, &["--no-check"]);
        let b = pe(&reg, 0x101 + i as u32 * 2, &["--no-check"]);
        let mut child = Command::new(TOOL)
            .args(["handoff", "pu", "--registrar", &reg])
            .args(["--sessions=1", "--messages=200000", "--no-check"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(400));
        // Which PE serves the session?
        a.command("stats");
        let serving_a = a.wait_for("sessions=").contains("sessions=1");
        let victim = if serving_a { &a } else { &b };
        let killed_at = rsplib::library::stream::monotonic_ns();
        // SAFETY: killing our own child.
        unsafe { libc::kill(victim.pid(), libc::SIGKILL) };
        let mut out = String::new();
        std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
        let _ = child.wait();
        let first = |key: &str| -> Option<u64> {
            let l = out.lines().find(|l| l.starts_with(key))?;
            l[key.len()..].split(',').next()?.parse().ok()
        };
        if let (Some(seen), Some(resumed)) =
            (first("failover_seen_ns="), first("failover_resumed_ns="))
        {
            noticed.push(seen.saturating_sub(killed_at) as f64 / 1000.0);
            lat.push(resumed.saturating_sub(killed_at) as f64 / 1000.0);
        }
        drop((a, b));
    }
    if lat.is_empty() {
        println!("failover after kill -9: no failover seen");
    } else {
        let n = lat.len();
        println!(
            "failover after kill -9 (kill -> first answer of the new PE): median {:.0} us of {n} (min {:.0}, max {:.0}); the PU noticed the loss after {:.0} us (median)",
            median(&mut lat),
            lat[0],
            lat[n - 1],
            median(&mut noticed)
        );
    }
    drop(r);
}
