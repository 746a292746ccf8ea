//! rsptool's command line: --help and help per subcommand (exit 0), --version, shell
//! completions, host names as well as addresses, rsplib-style single-dash options, and cause
//! names next to cause numbers.

use std::process::{Command, Output};
use std::time::Duration;

mod common;
use common::Registrar;

const TOOL: &str = env!("CARGO_BIN_EXE_rsptool");
const REGISTRAR: &str = env!("CARGO_BIN_EXE_rspregistrar");

fn run(args: &[&str]) -> Output {
    Command::new(TOOL).args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[test]
fn help_version_and_completions() {
    let help = run(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    for sub in [
        "pe",
        "resolve",
        "announces",
        "lib-resolve",
        "lib-pe",
        "hsdump",
        "bench",
        "completions",
    ] {
        assert!(stdout(&help).contains(sub), "{sub} in {}", stdout(&help));
        let h = run(&["help", sub]);
        assert_eq!(h.status.code(), Some(0), "help {sub}");
        assert!(
            stdout(&h).contains(&format!("Usage: rsptool {sub}")),
            "{}",
            stdout(&h)
        );
        assert_eq!(run(&[sub, "--help"]).status.code(), Some(0));
    }
    let v = run(&["--version"]);
    assert_eq!(
        stdout(&v).trim(),
        format!("rsptool {}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(run(&[]).status.code(), Some(2));
    assert_eq!(
        run(&["resolve", "--poolhandle=x"]).status.code(),
        Some(2),
        "no registrar"
    );
    let c = run(&["completions", "bash"]);
    assert!(c.status.success() && stdout(&c).contains("rsptool"));
}

#[test]
fn host_names_single_dash_options_and_cause_names() {
    let dir = common::temp_dir("rsptool-cli");
    let r = Registrar::start(REGISTRAR, &dir.join("log"), &["-maxpesperpool=1"]);
    let by_name = format!("localhost:{}", r.asap.port());
    // A PE registered with the host name, rsplib-style options.
    let mut pe = common::Proc::spawn(
        TOOL,
        &[
            "pe",
            &format!("-registrar={by_name}"),
            "-poolhandle=CliPool",
            "-identifier=0x51",
            "-port=23001",
        ],
    );
    pe.wait_for("registered PE 0x00000051", Duration::from_secs(10));
    let found = run(&[
        "resolve",
        "--registrar",
        &by_name,
        "--poolhandle",
        "CliPool",
    ]);
    assert!(found.status.success(), "{found:?}");
    assert!(
        stdout(&found).contains("PE 0x00000051 127.0.0.1:23001"),
        "{}",
        stdout(&found)
    );
    // A second PE in the full pool is refused: the cause with its name.
    let refused = run(&[
        "pe",
        &format!("--registrar={by_name}"),
        "--poolhandle=CliPool",
        "--identifier=0x52",
        "--port=23002",
    ]);
    assert_eq!(refused.status.code(), Some(4));
    let line = stdout(&refused);
    assert!(line.contains("rejected: cause 0x"), "{line}");
    let cause = line.split("cause ").nth(1).unwrap().trim();
    let (code, name) = cause.split_once(' ').unwrap();
    assert!(code.starts_with("0x") && code.len() == 6, "{line}");
    assert!(
        name.chars().any(|c| c.is_alphabetic()),
        "a name after the number: {line}"
    );
    let bad = run(&[
        "resolve",
        "--registrar=no.such.host.invalid:3863",
        "--poolhandle=x",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("cannot resolve"));
}
