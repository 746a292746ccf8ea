//! rsplib 3.4's whole registrar command line (tests/data/rspregistrar-3.4-options.txt, taken
//! from its manual page and its parser): every option is accepted by our parser, named in
//! `--help` and in our manual page, and the binary starts with all of them at once.

use std::collections::BTreeSet;
use std::time::Duration;

use rsplib::registrar::config::{parse_with_env, Command};

mod common;
use common::Proc;

const REGISTRAR: &str = env!("CARGO_BIN_EXE_rspregistrar");

/// The options of the list with their example values, in order.
fn rsplib_options() -> Vec<String> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/rspregistrar-3.4-options.txt"
    ))
    .expect("the option list");
    let opts: Vec<String> = text
        .lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    assert!(opts.len() > 50, "the list has {} options", opts.len());
    opts
}

fn name(opt: &str) -> &str {
    opt.split('=').next().unwrap()
}

#[test]
fn every_rsplib_option_parses() {
    for opt in rsplib_options() {
        match parse_with_env(std::slice::from_ref(&opt), |_| None) {
            Ok(Command::Run(_)) => {}
            other => panic!("{opt}: {other:?}"),
        }
    }
}

#[test]
fn every_rsplib_option_is_in_help_and_manual_page() {
    let manual =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/man/rspregistrar.8"))
            .expect("man/rspregistrar.8");
    // roff escapes the minus sign.
    let manual = manual.replace("\\-", "-").replace("\\&", "");
    let names: BTreeSet<String> = rsplib_options().iter().map(|o| name(o).into()).collect();
    for n in &names {
        assert!(
            rsplib::registrar::USAGE.contains(n.as_str()),
            "{n} missing from --help"
        );
        assert!(
            manual.contains(n.as_str()),
            "{n} missing from rspregistrar(8)"
        );
    }
}

#[test]
fn options_without_effect_say_so_once_and_bad_values_are_refused() {
    let parse = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        match parse_with_env(&args, |_| None) {
            Ok(Command::Run(c)) => Ok(*c),
            Ok(Command::Help) => panic!("help"),
            Err(e) => Err(e.0),
        }
    };
    let c = parse(&["-distancestep=10", "-maxincrement=4"]).unwrap();
    assert_eq!(c.extras.ignored.len(), 1, "{:?}", c.extras.ignored);
    assert!(c.extras.ignored[0].contains("ignored"));
    // -maxincrement is implemented: it reaches the handlespace's round-robin policies.
    assert_eq!(c.extras.max_increment, 4);
    assert!(parse(&["-maxincrement=0"])
        .unwrap()
        .extras
        .ignored
        .is_empty());
    let c = parse(&[
        "-cspserver=127.0.0.1",
        "-announcettl=999",
        "-statsinterval=1",
    ])
    .unwrap();
    assert_eq!(c.extras.csp, Some(("127.0.0.1:2960".parse().unwrap(), 250)));
    assert_eq!(c.extras.announce_ttl, 255);
    assert_eq!(c.extras.stats_interval_ms, 10);
    assert!(parse(&["-disable-ipv6", "-asap=[::1]:3863"])
        .unwrap_err()
        .contains("IPv6"));
    assert!(parse(&["-uptime=-1"]).is_err());
    assert!(parse(&["-cspserver=nowhere"]).is_err());
    // rsplib's environment: CSP_INTERVAL turns reports on (at least 250 ms).
    let args = vec!["-quiet".to_string()];
    let env = |k: &str| match k {
        "CSP_SERVER" => Some("127.0.0.1:3000".to_string()),
        "CSP_INTERVAL" => Some("100".to_string()),
        _ => None,
    };
    let Ok(Command::Run(c)) = parse_with_env(&args, env) else {
        panic!()
    };
    assert_eq!(c.extras.csp, Some(("127.0.0.1:3000".parse().unwrap(), 250)));
}

#[test]
fn the_binary_starts_with_every_option_at_once() {
    let dir = common::temp_dir("all-options");
    let mut args: Vec<String> = Vec::new();
    for opt in rsplib_options() {
        let n = name(&opt);
        // Replaced below by loopback values (the list's own examples bind 1.2.3.4, fork, …).
        if matches!(
            n,
            "-asap"
                | "-enrp"
                | "-peer"
                | "-asapannounce"
                | "-enrpannounce"
                | "-enrpmulticast"
                | "-daemonpidfile"
                | "-logfile"
                | "-logappend"
                | "-logquiet"
                | "-quiet"
                | "-loglevel"
        ) || opt.starts_with("-minaddressscope=")
            || n.ends_with("file")
            || n == "-scalar"
        {
            continue;
        }
        args.push(opt);
    }
    let log = dir.join("log");
    args.extend([
        "-asap=127.0.0.1:0".to_string(),
        "-enrp=127.0.0.1:0".into(),
        "-asapannounce=off".into(),
        "-enrpmulticast=off".into(),
        "-peer=127.0.0.1:1".into(),
        "-transport=tcp".into(),
        "-minaddressscope=loopback".into(),
        "-loglevel=3".into(),
        format!("-logfile={}", log.display()),
        format!("-statsfile={}", dir.join("stats").display()),
        format!("-actionlogfile={}", dir.join("actions").display()),
        format!("-scalar={}", dir.join("scalars").display()),
    ]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut p = Proc::spawn(REGISTRAR, &refs);
    p.wait_for("Listening: ASAP over TCP", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    p.signal(libc::SIGTERM);
    let status = p.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains(" WARNING ")).collect();
    // -distancestep, -enrpmulticast: one line each.
    assert_eq!(warnings.len(), 2, "{text}");
    assert!(text.contains("-distancestep= is ignored"), "{text}");
    let scalars = std::fs::read_to_string(dir.join("scalars")).unwrap();
    assert!(scalars.contains("\"registrar\" \"Registrar Total Registrations\""));
}
