//! `rsptool bench` against the registrar binary over loopback TCP: its PEs register, its PUs
//! get answers, and it reports rates, latency percentiles and the registrar's CPU time.

mod common;

use common::*;

const REGISTRAR: &str = env!("CARGO_BIN_EXE_rspregistrar");
const RSPTOOL: &str = env!("CARGO_BIN_EXE_rsptool");

#[test]
fn the_load_generator_reports_rates_latencies_and_registrar_cpu() {
    let dir = temp_dir("rsptool-bench");
    let reg = Registrar::start(REGISTRAR, &dir.join("registrar.log"), &[]);
    let text = bench_against(&reg, &["--pus=4"]);
    assert!(text.contains("second 1: "), "{text}");
    assert!(text.contains("latency: p50 "), "{text}");
    assert!(text.contains("µs per resolution"), "{text}");
    // The PEs deregistered at the end: the pool is gone.
    let log = reg.log_text();
    assert_eq!(log.matches(": registered PE 0x4c").count(), 3, "{log}");
    assert_eq!(log.matches("deregistered PE 0x4c").count(), 3, "{log}");
}

/// PUs on one thread, asleep in one epoll or never asleep, several requests outstanding each:
/// every PU gets answers (a PU without one counts as a failure).
#[test]
fn pus_on_one_thread_looping_or_spinning_are_all_answered() {
    let dir = temp_dir("rsptool-bench-loop");
    let reg = Registrar::start(REGISTRAR, &dir.join("registrar.log"), &[]);
    for wait in ["--pu-wait=loop", "--pu-wait=spin"] {
        bench_against(&reg, &["--pus=6", "--depth=3", wait]);
    }
    let log = reg.log_text();
    assert_eq!(log.matches("deregistered PE 0x4c").count(), 6, "{log}");
}

/// Runs `rsptool bench` (3 PEs, 2 s) with `args` against `reg`; checks that it succeeded,
/// all PEs registered, nothing failed and over 100 resolutions were answered.
fn bench_against(reg: &Registrar, args: &[&str]) -> String {
    let out = std::process::Command::new(RSPTOOL)
        .args([
            "bench",
            &format!("--registrar={}", reg.asap),
            "--poolhandle=BenchPool",
            "--pes=3",
            "--seconds=2",
            &format!("--registrar-pid={}", reg.proc.pid()),
        ])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("PEs registered: 3;"), "{args:?}: {text}");
    assert!(text.contains("failures: 0"), "{args:?}: {text}");
    let resolutions: u64 = text
        .split("resolutions: ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(resolutions > 100, "{args:?}: {text}");
    text.into_owned()
}

#[test]
fn an_unreachable_registrar_is_one_clear_error() {
    let out = std::process::Command::new(RSPTOOL)
        .args([
            "bench",
            "--registrar=127.0.0.1:1",
            "--poolhandle=BenchPool",
            "--seconds=1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot connect"), "{err}");
}

/// A registrar that refuses the PEs (here: loopback addresses below its minimum scope) makes
/// the load generator stop with the registrar's reason, instead of timing resolutions of an
/// empty pool.
#[test]
fn refused_registrations_are_one_clear_error_with_the_reason() {
    let dir = temp_dir("rsptool-bench-refused");
    let reg = Registrar::start(
        REGISTRAR,
        &dir.join("registrar.log"),
        &["-minaddressscope=global"],
    );
    let started = std::time::Instant::now();
    let out = std::process::Command::new(RSPTOOL)
        .args([
            "bench",
            &format!("--registrar={}", reg.asap),
            "--poolhandle=BenchPool",
            "--pus=2",
            "--pes=3",
            "--seconds=30",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no PE registered: the registrar refused 3 of 3"),
        "{err}"
    );
    assert!(err.contains("cause 0xf008"), "{err}");
    assert!(err.contains("-minaddressscope=loopback"), "{err}");
    // Stopped at once, not after the 30 s of resolutions.
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}
