//! A small run of the supervision load generator (`rsptool bench --pes-per-connection`, issue
//! #18) against the registrar binary: 2 000 PEs over 20 connections from four source
//! addresses, a short keep-alive interval, three seconds of keep-alives; nothing may be lost. The
//! full-size run is `make bench-supervise`.

mod common;

use std::time::Duration;

use common::{temp_dir, Registrar};
use rsplib::registrar::loadgen::supervise::{run, SuperviseConfig};

#[test]
fn two_thousand_pes_over_twenty_connections_are_supervised_without_loss() {
    let dir = temp_dir("bench-supervise");
    let reg = Registrar::start(
        env!("CARGO_BIN_EXE_rspregistrar"),
        &dir.join("registrar.log"),
        &[
            "-endpointkeepalivetransmissioninterval=500",
            "-endpointkeepalivetimeoutinterval=3000",
            "-maxpesperhost=-1",
        ],
    );
    let cfg = SuperviseConfig {
        registrar: reg.asap,
        fallback: vec![],
        enrp: Some(reg.enrp),
        pool: "SmokePool".into(),
        pools: 3,
        connections: 20,
        pes_per_connection: 100,
        sources: (2..6)
            .map(|i| format!("127.0.0.{i}").parse().unwrap())
            .collect(),
        threads: 2,
        in_flight: 8,
        duration: Duration::from_secs(3),
        register_timeout: Duration::from_secs(20),
        life_ms: 120_000,
        registrar_pid: Some(reg.proc.pid() as u32),
        progress: None,
    };
    let r = run(&cfg).unwrap();
    let text = r.format();
    assert_eq!(r.pes_registered, 2000, "{text}");
    assert_eq!(r.connections_registered, 20, "{text}");
    assert_eq!(r.pes_in_table, Some(2000), "{text}");
    assert_eq!(r.pes_lost(), 0, "{text}");
    assert_eq!(r.connections_lost, 0, "{text}");
    // Every PE gets a keep-alive every half second or so: at least two rounds in 3 s even on
    // a busy machine (the timeout is long for the same reason).
    assert!(r.keepalives_steady >= 2 * 2000, "{text}");
    assert!(r.max_keepalive_gap > Duration::ZERO, "{text}");
    assert!(r.registrar.is_some(), "{text}");
    assert!(!reg.log_text().contains("did not answer its keep-alive"));
}
