//! The processes of the contact-node tests and benchmark (tests/contact_node.rs,
//! benches/contact.rs, which include this file by path beside `common`): the test or bench
//! binary runs itself again as a worker PE or a contact when `CONTACT_NODE_ROLE` is set.
//!
//! * `worker`: an Enhanced Mode PE (TCP, round robin) of `CONTACT_POOL` registered at
//!   `CONTACT_REGISTRAR`; it prints `worker <id> ready`. `CONTACT_MODE=echo` receives passed
//!   clients and echoes every line prefixed with its PE id (`<id %08x> <line>`): the lines the
//!   contact read at once, the rest in one thread per client; `deaf` receives nothing (a PE started without accepting passed sockets);
//!   `count=N` receives N passes, closes each at once and prints
//!   `received N cpu_us=… wall_us=…` (the benchmark).
//! * `contact`: accepts plain TCP clients on 127.0.0.1 (prints `contact listening on <addr>`),
//!   reads until the first newline, passes socket and bytes with `pass_socket_to_pool`, prints
//!   `passed <id>` or `pass failed: …` (and tells the client `ERROR …`). Library warnings go
//!   to `CONTACT_LOG` when set. `CONTACT_MODE=flood=N` instead passes one connected loopback
//!   socket N times as fast as it can and prints `flood passes=N busy=… cpu_us=… wall_us=…`.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rsplib::core::types::{PolicyInfo, PolicyType, PoolHandle, TransportProtocol};
use rsplib::library::contact::{self, PassedSocketReceiver, MAX_ALREADY_READ};
use rsplib::library::session::{EnhancedPe, PeOptions};
use rsplib::library::{Library, LibraryConfig};
use rsplib::logging;
use rsplib::transport::Protocol;

use crate::common::Proc;

const ROLE: &str = "CONTACT_NODE_ROLE";

/// CPU time (user + system) of this process in µs.
pub fn cpu_us() -> u64 {
    // SAFETY: getrusage fills a plain struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    us(ru.ru_utime) + us(ru.ru_stime)
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

fn library() -> Arc<Library> {
    let lib = Library::start(LibraryConfig {
        transport: Protocol::Tcp,
        announce_groups: Vec::new(),
        ..LibraryConfig::default()
    })
    .expect("library");
    lib.add_static_registrar(vec![env("CONTACT_REGISTRAR").parse().unwrap()]);
    Arc::new(lib)
}

/// Runs the role named in the environment and exits, if there is one; returns otherwise.
pub fn run_role_if_child() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    match role.as_str() {
        "worker" => worker(),
        "contact" => contact(),
        other => panic!("unknown {ROLE} {other}"),
    }
    std::process::exit(0);
}

fn worker() {
    let lib = library();
    let pool = PoolHandle::from(env("CONTACT_POOL").as_str());
    let opts = PeOptions {
        identifier: 0,
        domain: libc::AF_INET,
        socket_type: libc::SOCK_STREAM,
        protocol: TransportProtocol::Tcp,
        local_port: 0,
        reregistration_interval: Duration::from_secs(5),
        registration_life_ms: 30_000,
        policy: PolicyInfo::new(PolicyType::RoundRobin),
        control_channel: false,
    };
    let pe = EnhancedPe::create(lib, pool, opts).expect("pool element");
    let id = pe.identifier();
    assert_ne!(id, 0, "the worker did not register");
    let mode = env("CONTACT_MODE");
    if mode == "deaf" {
        println!("worker {id:08x} ready");
        loop {
            std::thread::sleep(Duration::from_secs(60));
        }
    }
    let rx = PassedSocketReceiver::for_pe(&pe).expect("receiver");
    println!("worker {id:08x} ready");
    let mut buf = vec![0u8; MAX_ALREADY_READ];
    if let Some(n) = mode.strip_prefix("count=") {
        let n: u64 = n.parse().unwrap();
        let (mut cpu0, mut t0) = (0, Instant::now());
        for i in 0..n {
            let (fd, _) = rx.receive(&mut buf).expect("receive");
            drop(fd);
            if i == 0 {
                (cpu0, t0) = (cpu_us(), Instant::now());
            }
        }
        // The first pass started the clock: n - 1 passes were timed.
        println!(
            "received {} cpu_us={} wall_us={}",
            n - 1,
            cpu_us() - cpu0,
            t0.elapsed().as_micros()
        );
        return;
    }
    assert_eq!(mode, "echo");
    loop {
        match rx.receive(&mut buf) {
            Ok((fd, n)) => {
                // The lines the contact read are answered at once, in this thread; the
                // client's thread (spawned after) serves the rest.
                let mut s = TcpStream::from(fd);
                let mut pending = buf[..n].to_vec();
                if echo_lines(id, &mut s, &mut pending) {
                    std::thread::spawn(move || echo(id, s, pending));
                }
            }
            Err(e) => eprintln!("worker {id:08x}: {e}"),
        }
    }
}

/// Echoes the complete lines of `pending` prefixed with the PE id; false if the client is gone.
fn echo_lines(id: u32, s: &mut TcpStream, pending: &mut Vec<u8>) -> bool {
    while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
        let mut out = format!("{id:08x} ").into_bytes();
        out.extend(pending.drain(..=pos));
        if s.write_all(&out).is_err() {
            return false;
        }
    }
    true
}

/// Echoes every further line of the stream (after `pending`, what is left of the bytes the
/// contact read) prefixed with the PE id.
fn echo(id: u32, mut s: TcpStream, mut pending: Vec<u8>) {
    let mut chunk = [0u8; 16384];
    loop {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => pending.extend_from_slice(&chunk[..n]),
        }
        if !echo_lines(id, &mut s, &mut pending) {
            return;
        }
    }
}

fn contact() {
    if let Ok(path) = std::env::var("CONTACT_LOG") {
        logging::set_file(Some((std::path::Path::new(&path), true))).unwrap();
    }
    logging::set_level(logging::WARNING);
    let lib = library();
    let pool = PoolHandle::from(env("CONTACT_POOL").as_str());
    if let Some(n) = env("CONTACT_MODE").strip_prefix("flood=") {
        return flood(&lib, &pool, n.parse().unwrap());
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    println!("contact listening on {}", listener.local_addr().unwrap());
    for client in listener.incoming() {
        let Ok(mut s) = client else { continue };
        let mut read = Vec::new();
        let mut chunk = [0u8; 4096];
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        while !read.contains(&b'\n') && read.len() < MAX_ALREADY_READ {
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => read.extend_from_slice(&chunk[..n]),
            }
        }
        // The worker gets the same open socket: no read timeout of ours on it.
        let _ = s.set_read_timeout(None);
        read.truncate(MAX_ALREADY_READ);
        match contact::pass_socket_to_pool(&lib, &pool, s.as_fd(), &read) {
            Ok(id) => println!("passed {id:08x}"),
            Err(e) => {
                let _ = writeln!(s, "ERROR {e}");
                println!("pass failed: {e}");
            }
        }
    }
}

/// Passes one connected loopback socket `n` times (the worker closes each copy), retrying
/// while the worker's queue is full.
fn flood(lib: &Library, pool: &PoolHandle, n: u64) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let _client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    // One pass first: resolution and cache filled before the clock starts.
    contact::pass_socket_to_pool(lib, pool, s.as_fd(), b"x\n").expect("first pass");
    let (cpu0, t0) = (cpu_us(), Instant::now());
    let mut busy = 0u64;
    let mut done = 0;
    while done < n {
        match contact::pass_socket_to_pool(lib, pool, s.as_fd(), b"x\n") {
            Ok(_) => done += 1,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                busy += 1;
                std::thread::yield_now();
            }
            Err(e) => panic!("pass {done}: {e}"),
        }
    }
    println!(
        "flood passes={n} busy={busy} cpu_us={} wall_us={}",
        cpu_us() - cpu0,
        t0.elapsed().as_micros()
    );
}

fn role(role: &str, registrar: SocketAddr, pool: &str, mode: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env(ROLE, role)
        .env("CONTACT_REGISTRAR", registrar.to_string())
        .env("CONTACT_POOL", pool)
        .env("CONTACT_MODE", mode)
        .env("RSPLIB_ANNOUNCE", "off");
    cmd
}

/// A worker process and its PE id.
pub fn spawn_worker(registrar: SocketAddr, pool: &str, mode: &str) -> (Proc, u32) {
    let mut p = Proc::spawn_command(&mut role("worker", registrar, pool, mode));
    let line = p.wait_for(" ready", Duration::from_secs(10));
    let id = u32::from_str_radix(line.split(' ').nth(1).unwrap(), 16).unwrap();
    (p, id)
}

/// A contact process and its TCP address (warnings logged to `log` if given).
pub fn spawn_contact(
    registrar: SocketAddr,
    pool: &str,
    log: Option<&std::path::Path>,
) -> (Proc, SocketAddr) {
    let mut cmd = role("contact", registrar, pool, "accept");
    if let Some(log) = log {
        cmd.env("CONTACT_LOG", log);
    }
    let mut p = Proc::spawn_command(&mut cmd);
    let line = p.wait_for("contact listening on ", Duration::from_secs(10));
    let addr = line.rsplit(' ').next().unwrap().parse().unwrap();
    (p, addr)
}

/// A contact that floods the pool with `n` passes of one socket.
pub fn spawn_flood(registrar: SocketAddr, pool: &str, n: u64) -> Proc {
    Proc::spawn_command(&mut role("contact", registrar, pool, &format!("flood={n}")))
}
