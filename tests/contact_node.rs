//! Contact-node mode with real processes (docs/contact-node.md): our registrar over loopback
//! TCP, worker PEs and a contact (this binary run again in a role, tests/common/contact.rs),
//! and plain TCP clients that use no RSerPool library. Every byte a client sends (the first
//! line, which the contact read, included) comes back echoed by one worker, in order; the
//! pool's policy spreads clients over the workers; a worker that does not receive passed
//! sockets is skipped; bad arguments are errors.
//!
//! `harness = false` (Cargo.toml): the binary is also the role processes, and the tests run
//! one after the other (each starts its own registrar and processes).

mod common;
#[path = "common/contact.rs"]
mod roles;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use common::{temp_dir, Registrar};
use roles::{spawn_contact, spawn_worker};
use rsplib::core::types::PoolHandle;
use rsplib::library::contact::{self, errno_of, MAX_ALREADY_READ};
use rsplib::library::{Library, LibraryConfig};
use rsplib::transport::Protocol;

const REGISTRAR: &str = env!("CARGO_BIN_EXE_rspregistrar");

/// A registrar whose handle resolutions return up to 8 PEs (every worker of a test).
fn registrar(name: &str) -> Registrar {
    let dir = temp_dir(name);
    Registrar::start(
        REGISTRAR,
        &dir.join("registrar.log"),
        &["-loglevel=3", "-maxhresitems=8"],
    )
}

/// One client: connects to the contact, sends `lines` (the first line, then the rest in the
/// pieces given, some lines split across writes), reads every echo. Returns the PE id that
/// served it; panics unless every line came back, in order, with one PE's prefix.
fn client(contact: SocketAddr, first: &str, pieces: &[String]) -> u32 {
    let s = TcpStream::connect(contact).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let sent: String = std::iter::once(first.to_string())
        .chain(pieces.iter().cloned())
        .collect();
    let expected: Vec<&str> = sent.split_inclusive('\n').collect();
    let mut writer = s.try_clone().unwrap();
    let (first, pieces) = (first.to_string(), pieces.to_vec());
    // Written from a thread while this one reads: big clients would otherwise fill both
    // directions' buffers.
    let w = std::thread::spawn(move || {
        writer.write_all(first.as_bytes()).unwrap();
        for p in pieces {
            std::thread::sleep(Duration::from_millis(1));
            writer.write_all(p.as_bytes()).unwrap();
        }
    });
    let mut reader = BufReader::new(s);
    let mut pe = None;
    for want in &expected {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(
            !line.starts_with("ERROR"),
            "the contact could not pass: {line}"
        );
        let (id, echoed) = line
            .split_once(' ')
            .unwrap_or_else(|| panic!("no prefix in {line:?}"));
        let id = u32::from_str_radix(id, 16).unwrap();
        assert_eq!(*pe.get_or_insert(id), id, "one client, one PE");
        assert_eq!(echoed, *want, "bytes lost or reordered");
    }
    w.join().unwrap();
    pe.unwrap()
}

/// The lines of client `i`: some clients send a second line in the same write as the first
/// (the contact reads and passes both), some a piece of one (split there), one a lot.
fn traffic(i: usize) -> (String, Vec<String>) {
    let mut first = format!("hello {i}\n");
    match i % 3 {
        0 => first.push_str(&format!("second {i} in the first write\n")),
        1 => first.push_str(&format!("half of line two of {i}")),
        _ => {}
    }
    let mut rest = vec![format!(" and its end\nthird {i}\n")];
    if i == 7 {
        // Far more than the socket buffers hold.
        for k in 0..3000 {
            rest.push(format!("{i} bulk {k} {}\n", "x".repeat(90)));
        }
    }
    rest.push(format!("last {i}\n"));
    (first, rest)
}

fn clients_are_served_by_workers_with_every_byte_in_order() {
    let reg = registrar("contact-spread");
    let pool = "ContactSpread";
    let workers: Vec<_> = (0..3)
        .map(|_| spawn_worker(reg.asap, pool, "echo"))
        .collect();
    let (mut contact, addr) = spawn_contact(reg.asap, pool, None);
    let mut served: BTreeMap<u32, usize> = BTreeMap::new();
    // 30 clients, 6 at a time.
    for round in 0..5 {
        let threads: Vec<_> = (0..6)
            .map(|k| {
                let i = round * 6 + k;
                std::thread::spawn(move || {
                    let (first, rest) = traffic(i);
                    client(addr, &first, &rest)
                })
            })
            .collect();
        for t in threads {
            *served.entry(t.join().unwrap()).or_default() += 1;
        }
    }
    let ids: Vec<u32> = workers.iter().map(|(_, id)| *id).collect();
    assert_eq!(served.values().sum::<usize>(), 30);
    for (id, n) in &served {
        assert!(ids.contains(id), "served by {id:08x}, not a worker");
        assert!(
            *n >= 5,
            "round robin: every worker serves about 10: {served:x?}"
        );
    }
    assert_eq!(served.len(), 3, "all three workers served: {served:x?}");
    contact.wait_for("passed", Duration::from_secs(1));
}

fn a_worker_that_does_not_receive_is_skipped() {
    let reg = registrar("contact-skip");
    let pool = "ContactSkip";
    let dir = temp_dir("contact-skip-log");
    let log = dir.join("contact.log");
    let (_w1, id1) = spawn_worker(reg.asap, pool, "echo");
    let (_w2, id2) = spawn_worker(reg.asap, pool, "echo");
    // Registered, but started without accepting passed sockets.
    let (_deaf, deaf) = spawn_worker(reg.asap, pool, "deaf");
    let (mut victim, victim_id) = spawn_worker(reg.asap, pool, "echo");
    let (_contact, addr) = spawn_contact(reg.asap, pool, Some(&log));
    let mut before: BTreeMap<u32, usize> = BTreeMap::new();
    for i in 0..6 {
        let id = client(addr, &format!("client {i}\n"), &[format!("more {i}\n")]);
        *before.entry(id).or_default() += 1;
    }
    assert!(
        !before.contains_key(&deaf),
        "the deaf PE cannot serve: {before:x?}"
    );
    assert!(
        before.contains_key(&victim_id),
        "round robin reached the fourth worker: {before:x?}"
    );
    // Killed: the registrar drops it with its connection, but the contact's cache still has
    // it; its socket went with the process.
    victim.kill9();
    let mut after: BTreeMap<u32, usize> = BTreeMap::new();
    for i in 6..14 {
        let id = client(addr, &format!("client {i}\n"), &[format!("more {i}\n")]);
        *after.entry(id).or_default() += 1;
    }
    assert!(
        after.keys().all(|id| *id == id1 || *id == id2),
        "only the receiving workers serve: {after:x?}"
    );
    assert_eq!(after.len(), 2, "both receiving workers serve: {after:x?}");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    for skipped in [deaf, victim_id] {
        assert!(
            text.contains(&format!(
                "PE 0x{skipped:08x} of pool \"{pool}\" receives no passed sockets"
            )),
            "PE {skipped:08x} was tried, reported and skipped; the contact's log:\n{text}"
        );
    }
}

fn bad_input_gives_errors() {
    use rsplib::ffi::contact::{
        rspPassSocketToPool, rspPoolElementAcceptPassedSockets, rspPoolElementReceivePassedSocket,
    };
    let errno = || std::io::Error::last_os_error().raw_os_error().unwrap();
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    let fd = a.as_raw_fd();
    let big = vec![0u8; MAX_ALREADY_READ + 1];
    let ph = b"ContactBad";
    let x33 = [b'x'; 33];
    let null = std::ptr::null::<u8>();
    // (what, pool handle, its size, descriptor, already-read bytes, their size, errno)
    type Case<'a> = (&'a str, *const u8, usize, i32, *const u8, usize, i32);
    let cases: [Case; 6] = [
        ("NULL pool handle", null, 4, fd, null, 0, libc::EINVAL),
        (
            "zero-sized pool handle",
            ph.as_ptr(),
            0,
            fd,
            null,
            0,
            libc::EINVAL,
        ),
        (
            "33-byte pool handle",
            x33.as_ptr(),
            33,
            fd,
            null,
            0,
            libc::EINVAL,
        ),
        (
            "NULL bytes with a size",
            ph.as_ptr(),
            ph.len(),
            fd,
            null,
            3,
            libc::EINVAL,
        ),
        (
            "oversized bytes",
            ph.as_ptr(),
            ph.len(),
            fd,
            big.as_ptr(),
            big.len(),
            libc::EMSGSIZE,
        ),
        (
            "negative descriptor",
            ph.as_ptr(),
            ph.len(),
            -1,
            null,
            0,
            libc::EBADF,
        ),
    ];
    // SAFETY: the C functions with valid or deliberately NULL/invalid arguments.
    unsafe {
        for (what, handle, size, fd, data, len, want) in cases {
            let id = rspPassSocketToPool(handle, size, fd, data.cast(), len, std::ptr::null_mut());
            assert_eq!(id, 0, "{what}");
            assert_eq!(errno(), want, "{what}");
        }
        // Valid arguments but no rspInitialize: an error too, and the socket stays ours.
        assert_eq!(
            rspPassSocketToPool(
                ph.as_ptr(),
                ph.len(),
                fd,
                b"x".as_ptr().cast(),
                1,
                std::ptr::null_mut()
            ),
            0
        );
        assert_eq!(errno(), libc::EINVAL);
        assert!(
            libc::fcntl(fd, libc::F_GETFD) >= 0,
            "the descriptor is still open"
        );
        assert_eq!(rspPoolElementAcceptPassedSockets(std::ptr::null_mut()), -1);
        assert_eq!(errno(), libc::EINVAL);
        let mut size = 0usize;
        assert_eq!(
            rspPoolElementReceivePassedSocket(
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                &mut size,
                std::ptr::null_mut()
            ),
            -1
        );
        assert_eq!(errno(), libc::EINVAL);
    }

    // The Rust API against a registrar: oversized bytes, an invalid handle and an empty pool
    // are errors, and the socket stays with the caller.
    let reg = registrar("contact-bad");
    let lib = Library::start(LibraryConfig {
        transport: Protocol::Tcp,
        announce_groups: Vec::new(),
        ..LibraryConfig::default()
    })
    .unwrap();
    lib.add_static_registrar(vec![reg.asap]);
    let pool = PoolHandle::from("ContactNobody");
    let e = contact::pass_socket_to_pool(&lib, &pool, a.as_fd(), &big).unwrap_err();
    assert_eq!(errno_of(&e), Some(libc::EMSGSIZE), "{e}");
    assert!(e.to_string().contains("at most 65536"), "{e}");
    let e = contact::pass_socket_to_pool(&lib, &PoolHandle::new(b""), a.as_fd(), b"x").unwrap_err();
    assert_eq!(errno_of(&e), Some(libc::EINVAL), "{e}");
    let e = contact::pass_socket_to_pool(&lib, &pool, a.as_fd(), b"x").unwrap_err();
    assert_eq!(errno_of(&e), Some(libc::ENOENT), "{e}");
    assert!(e.to_string().contains("no pool element"), "{e}");
    // SAFETY: querying our descriptor.
    assert!(unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0);
}

type Test = (&'static str, fn());
const TESTS: &[Test] = &[
    (
        "clients_are_served_by_workers_with_every_byte_in_order",
        clients_are_served_by_workers_with_every_byte_in_order,
    ),
    (
        "a_worker_that_does_not_receive_is_skipped",
        a_worker_that_does_not_receive_is_skipped,
    ),
    ("bad_input_gives_errors", bad_input_gives_errors),
];

fn main() {
    roles::run_role_if_child();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in TESTS {
            println!("{name}: test");
        }
        return;
    }
    let filter = args.iter().find(|a| !a.starts_with('-'));
    let selected: Vec<&Test> = TESTS
        .iter()
        .filter(|(name, _)| filter.is_none_or(|f| name.contains(f.as_str())))
        .collect();
    println!("\nrunning {} tests", selected.len());
    let mut failed = Vec::new();
    for (name, test) in selected.iter().copied() {
        let r = std::panic::catch_unwind(test);
        println!(
            "test {name} ... {}",
            if r.is_ok() { "ok" } else { "FAILED" }
        );
        if r.is_err() {
            failed.push(*name);
        }
    }
    println!(
        "\ntest result: {}. {} passed; {} failed",
        if failed.is_empty() { "ok" } else { "FAILED" },
        selected.len() - failed.len(),
        failed.len()
    );
    if !failed.is_empty() {
        println!("failures: {failed:?}");
        std::process::exit(101);
    }
}
