//! Runs the built `rspdecode` on the capture and on hex input.

use std::io::Write;
use std::process::{Command, Stdio};

const CAPTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/captures/rsplib-3.4.4-scenario.pcapng"
);

#[test]
fn decodes_the_capture_as_json_lines() {
    let out = Command::new(env!("CARGO_BIN_EXE_rspdecode"))
        .arg(CAPTURE)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 546);
    let mut last_frame = 0;
    for l in &lines {
        assert!(l.starts_with("{\"frame\":") && l.ends_with('}'), "{l}");
        assert!(l.contains("\"protocol\":\"asap\"") || l.contains("\"protocol\":\"enrp\""));
        assert!(l.contains("\"type\":") && l.contains("\"name\":") && l.contains("\"flags\":"));
        let frame: usize = l[9..l.find(',').unwrap()].parse().unwrap();
        assert!(frame >= last_frame, "capture order");
        last_frame = frame;
    }
    let count = |s: &str| lines.iter().filter(|l| l.contains(s)).count();
    assert_eq!(count("\"name\":\"Registration\""), 25);
    assert_eq!(count("\"name\":\"Endpoint Keep Alive\""), 187);
    assert_eq!(count("\"name\":\"Presence\""), 62);
    let reg = lines
        .iter()
        .find(|l| l.contains("\"name\":\"Registration\"") && l.contains("CalcAppPool"))
        .unwrap();
    for key in [
        "\"pool_handle\":\"CalcAppPool\"",
        "\"pe_id\":\"0x0000ca0",
        "\"policy\":{\"name\":\"LeastUsed\",\"code\":\"0x40000001\",\"load\":0}",
        "\"addresses\":[\"10.255.0.1\"]",
        "\"use\":\"data+control\"",
        "\"time\":",
    ] {
        assert!(reg.contains(key), "{key} missing in {reg}");
    }
}

#[test]
fn hex_input_and_exit_codes() {
    let run = |args: &[&str], input: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_rspdecode"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        c.wait_with_output().unwrap()
    };
    let ok = run(&["--enrp", "-"], "07000010 11111111 22222222 33333333\n");
    assert!(ok.status.success());
    let s = String::from_utf8(ok.stdout).unwrap();
    assert!(
        s.contains("\"protocol\":\"enrp\"") && s.contains("\"target\":\"0x33333333\""),
        "{s}"
    );
    let bad = run(
        &["--hex"],
        "0b000010 000d0009 61626364 65000000\n0f000004\n",
    );
    assert_eq!(bad.status.code(), Some(1));
    assert_eq!(String::from_utf8(bad.stdout).unwrap().lines().count(), 1);
    assert!(String::from_utf8(bad.stderr).unwrap().contains("line 2"));
}

#[test]
fn help_version_and_usage_errors() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_rspdecode"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let help = run(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8(help.stdout).unwrap();
    assert!(
        text.contains("Usage: rspdecode") && text.contains("--hex"),
        "{text}"
    );
    let version = run(&["--version"]);
    assert_eq!(version.status.code(), Some(0));
    assert_eq!(
        String::from_utf8(version.stdout).unwrap().trim(),
        format!("rspdecode {}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(run(&["--bogus"]).status.code(), Some(2));
    assert_eq!(run(&[]).status.code(), Some(2), "neither a file nor --hex");
    assert_eq!(run(&["--asap", "--enrp", "-"]).status.code(), Some(2));
    assert_eq!(run(&["/nonexistent.pcap"]).status.code(), Some(2));
    let completion = run(&["--completions", "bash"]);
    assert!(completion.status.success());
    assert!(String::from_utf8(completion.stdout)
        .unwrap()
        .contains("rspdecode"));
}
