//! How the registrar lives as a service: signals into the event loop (signal-hook), rsplib's
//! daemon mode (`-daemonpidfile=`: fork, the parent writes the child's pid and exits, as
//! Debian's SysV script with start-stop-daemon expects), and systemd's readiness notification
//! (`Type=notify`: one datagram to `$NOTIFY_SOCKET` once the sockets are bound).

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
use std::path::Path;

use mio::{Interest, Registry, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

/// What a signal asks the loop to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalAction {
    /// SIGINT, SIGTERM: shut down.
    Stop,
    /// SIGHUP: reopen the log file (after logrotate moved it).
    ReopenLog,
}

/// SIGINT, SIGTERM and SIGHUP as readiness events of the event loop.
pub struct SignalWatch {
    signals: Signals,
    token: Token,
}

impl SignalWatch {
    pub fn new(registry: &Registry, token: Token) -> io::Result<SignalWatch> {
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
        registry.register(&mut signals, token, Interest::READABLE)?;
        Ok(SignalWatch { signals, token })
    }

    pub fn token(&self) -> Token {
        self.token
    }

    /// The signals that arrived since the last call, as actions.
    pub fn pending(&mut self) -> Vec<SignalAction> {
        self.signals
            .pending()
            .map(|s| {
                if s == SIGHUP {
                    SignalAction::ReopenLog
                } else {
                    SignalAction::Stop
                }
            })
            .collect()
    }
}

/// rsplib's daemon mode: forks; the parent writes the child's pid into `pid_file` and exits
/// with 0 (or kills the child and exits with 1 if it cannot write the file). The child starts
/// a session of its own (no controlling terminal) and returns.
///
/// Call before any thread is started: only the calling thread lives on in the child.
pub fn daemonize(pid_file: &Path) -> Result<(), String> {
    // SAFETY: fork(2) in a process that has no other threads (see above); the child only
    // continues this thread's code.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(format!("cannot fork: {}", io::Error::last_os_error()));
    }
    if child > 0 {
        match std::fs::write(pid_file, format!("{child}\n")) {
            Ok(()) => std::process::exit(0),
            Err(e) => {
                // SAFETY: kill(2) on the child we just created.
                unsafe { libc::kill(child, libc::SIGKILL) };
                eprintln!(
                    "rspregistrar: cannot write pid file {}: {e}",
                    pid_file.display()
                );
                std::process::exit(1);
            }
        }
    }
    // SAFETY: setsid(2) has no memory effects; failing (already a group leader) is harmless.
    unsafe { libc::setsid() };
    Ok(())
}

/// Sends `state` (e.g. "READY=1") to systemd's notification socket, if the service manager
/// gave one (`$NOTIFY_SOCKET`: a path, or `@name` in the abstract namespace). Returns whether
/// a datagram was sent.
pub fn notify(state: &str) -> bool {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return false;
    };
    let path = path.to_string_lossy().into_owned();
    let addr = match path.strip_prefix('@') {
        Some(name) => UnixAddr::from_abstract_name(name.as_bytes()),
        None => UnixAddr::from_pathname(&path),
    };
    let sent = addr.and_then(|addr| {
        let socket = UnixDatagram::unbound()?;
        socket.send_to_addr(state.as_bytes(), &addr)
    });
    sent.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_sends_one_datagram_to_the_socket() {
        let dir = std::env::temp_dir().join(format!("rsplib-notify-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).unwrap();
        // The only test in this binary that sets NOTIFY_SOCKET.
        std::env::set_var("NOTIFY_SOCKET", &path);
        assert!(notify("READY=1\nSTATUS=test"));
        std::env::remove_var("NOTIFY_SOCKET");
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=test");
        assert!(!notify("READY=1"), "without NOTIFY_SOCKET nothing is sent");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
