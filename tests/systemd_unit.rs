//! The systemd unit (systemd/rspregistrar.service): `systemd-analyze verify` accepts it (with
//! ExecStart pointed at the built binary), it is Type=notify and hardened, and the
//! environment file's options are ones the registrar takes.

use std::path::Path;
use std::process::Command;

use rsplib::registrar::config::{parse_with_env, Command as Parsed};

const REGISTRAR: &str = env!("CARGO_BIN_EXE_rspregistrar");
const UNIT: &str = include_str!("../systemd/rspregistrar.service");
const DEFAULTS: &str = include_str!("../systemd/rspregistrar.default");

fn settings(key: &str) -> Vec<&'static str> {
    UNIT.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

#[test]
fn unit_is_notify_and_hardened() {
    assert_eq!(settings("Type"), ["notify"]);
    assert_eq!(settings("DynamicUser"), ["yes"]);
    assert_eq!(settings("CapabilityBoundingSet"), [""], "no capabilities");
    assert_eq!(settings("AmbientCapabilities"), [""]);
    assert_eq!(settings("PrivateTmp"), ["yes"]);
    assert_eq!(settings("NoNewPrivileges"), ["yes"]);
    assert_eq!(settings("ProtectSystem"), ["strict"]);
    assert_eq!(settings("EnvironmentFile"), ["-/etc/default/rspregistrar"]);
    assert!(settings("ExecStart")[0].starts_with("/usr/bin/rspregistrar "));
}

#[test]
fn environment_file_options_parse() {
    let line = DEFAULTS
        .lines()
        .find_map(|l| l.strip_prefix("RSPREGISTRAR_OPTIONS="))
        .expect("RSPREGISTRAR_OPTIONS");
    let mut args: Vec<String> = line
        .trim_matches('"')
        .split_whitespace()
        .map(String::from)
        .collect();
    args.push("-quiet".into());
    assert!(matches!(
        parse_with_env(&args, |_| None),
        Ok(Parsed::Run(_))
    ));
    // The commented examples too.
    for example in DEFAULTS.lines().filter_map(|l| {
        l.trim_start_matches('#')
            .trim()
            .strip_prefix("RSPREGISTRAR_OPTIONS=")
    }) {
        let args: Vec<String> = example
            .trim_matches('"')
            .split_whitespace()
            .map(String::from)
            .collect();
        assert!(
            matches!(parse_with_env(&args, |_| None), Ok(Parsed::Run(_))),
            "{example}"
        );
    }
}

#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("SKIPPED: systemd-analyze is not installed");
        return;
    };
    assert!(out.status.success());
    let dir = std::env::temp_dir().join(format!("rsplib-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let unit = dir.join("rspregistrar.service");
    std::fs::write(&unit, UNIT.replace("/usr/bin/rspregistrar", REGISTRAR)).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.trim().is_empty(), "{text}");
    assert!(Path::new(REGISTRAR).exists());
    let _ = std::fs::remove_dir_all(&dir);
}
