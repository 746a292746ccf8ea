//! The registrar binary out of file descriptors (`ulimit -n 40`): clients beyond what it can
//! hold read EOF at once instead of hanging in the listen backlog, one rate-limited log line
//! says so, and once connections close a new client is served again.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

mod common;
use common::{temp_dir, Registrar};

const REGISTRAR: &str = env!("CARGO_BIN_EXE_rspregistrar");

/// Descriptors the registrar may have in all.
const FD_LIMIT: usize = 40;
/// Clients opened at once: more than the registrar can hold.
const CLIENTS: usize = 60;

/// Log lines so far containing `text`.
fn logged(reg: &Registrar, text: &str) -> usize {
    reg.log_text().lines().filter(|l| l.contains(text)).count()
}

/// True if the registrar closed `s` (EOF); false while it keeps it open.
fn closed_by_peer(s: &mut TcpStream) -> bool {
    match s.read(&mut [0u8; 64]) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(e) => panic!("expected a clean EOF, got {e}"),
    }
}

/// An unknown message type gets an ASAP Error back: the registrar reads and answers.
fn is_served(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut header = [0u8; 4];
    s.write_all(&[0x33, 0, 0, 4]).is_ok() && s.read_exact(&mut header).is_ok()
}

#[test]
fn out_of_descriptors_new_clients_read_eof_at_once_and_service_resumes() {
    let dir = temp_dir("descriptors");
    let reg = Registrar::start_wrapped(
        REGISTRAR,
        &dir.join("registrar.log"),
        &["-loglevel=3"],
        Some(&format!("ulimit -n {FD_LIMIT}")),
    );
    let addr = reg.asap;
    assert!(is_served(addr));

    let mut clients: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| {
            let s = TcpStream::connect(addr).unwrap();
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    // The registrar holds at most FD_LIMIT descriptors; every client beyond that is closed
    // at once instead of waiting in the backlog.
    let must_close = CLIENTS - FD_LIMIT;
    let mut closed = [false; CLIENTS];
    let deadline = Instant::now() + Duration::from_secs(10);
    while closed.iter().filter(|c| **c).count() < must_close {
        assert!(
            Instant::now() < deadline,
            "only {} of {CLIENTS} clients were closed",
            closed.iter().filter(|c| **c).count()
        );
        std::thread::sleep(Duration::from_millis(20));
        for (s, c) in clients.iter_mut().zip(closed.iter_mut()) {
            *c = *c || closed_by_peer(s);
        }
    }
    let refused = closed.iter().filter(|c| **c).count();
    assert!(refused < CLIENTS, "the clients it can hold stay connected");

    let deadline = Instant::now() + Duration::from_secs(5);
    while logged(&reg, "no descriptor left") == 0 {
        assert!(
            Instant::now() < deadline,
            "no log line: {:?}",
            reg.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let lines = logged(&reg, "no descriptor left");
    assert!(
        lines <= 2,
        "{refused} refusals are rate-limited, not {lines} lines: {:?}",
        reg.log_text()
    );

    drop(clients);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !is_served(addr) {
        assert!(
            Instant::now() < deadline,
            "not served after the clients left"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
