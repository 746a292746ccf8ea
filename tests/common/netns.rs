//! A bash script inside a user and network namespace of its own (`unshare -rn`), with loopback
//! up, multicast on it and a 224.0.0.0/4 route: multicast tests send nothing off the machine.
//! Shared by the ASAP announce and ENRP Presence tests.

use std::process::{Command, Output};

/// Whether this machine lets us create the namespace; if not, says that the test is skipped.
pub fn available() -> bool {
    let ok = Command::new("unshare")
        .args(["-rn", "true"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("SKIPPED: `unshare -rn` (user + network namespaces) is not available here");
    }
    ok
}

/// Runs `script` (after `set -e` and the loopback multicast set-up) in a fresh namespace.
pub fn run(script: &str) -> Output {
    let script = format!(
        "set -e\nip link set lo up\nip link set lo multicast on\nip route add 224.0.0.0/4 dev lo\n\
         {script}"
    );
    Command::new("unshare")
        .args(["-rn", "bash", "-c", &script])
        .output()
        .expect("run the namespace script")
}
