//! The library's registrar hunt: with two static registrars, when the home registrar dies the
//! next request goes to the other one; with none reachable the answer is "no registrar" within
//! the configured connect timeout × trials.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rsplib::core::asap_client::RequestError;
use rsplib::core::types::{
    PeId, PolicyInfo, PolicyType, PoolHandle, TransportAddress, TransportProtocol,
};
use rsplib::core::wire::PoolElement;
use rsplib::library::{Library, LibraryConfig};
use rsplib::transport::Protocol;

const REGISTRAR: &str = env!("CARGO_BIN_EXE_rspregistrar");

struct Registrar {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Registrar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn registrar(id: &str) -> Registrar {
    let mut child = Command::new(REGISTRAR)
        .args([
            "-asap=127.0.0.1:0",
            "-enrp=127.0.0.1:0",
            "-asapannounce=off",
            "-enrpannounce=off",
            "-transport=tcp",
            "-minaddressscope=loopback",
            &format!("-identifier={id}"),
            "-loglevel=0",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("Listening: ASAP over TCP on ")
                .map(|a| a.parse().unwrap())
        })
        .unwrap();
    // Keep draining stdout so the registrar never writes into a closed pipe.
    std::thread::spawn(move || for _ in lines {});
    Registrar { child, addr }
}

fn config() -> LibraryConfig {
    LibraryConfig {
        transport: Protocol::Tcp,
        announce_groups: Vec::new(),
        connect_timeout: 300_000,
        connect_max_trials: 2,
        ..LibraryConfig::default()
    }
}

fn element(id: u32) -> PoolElement {
    let t = TransportAddress::new(
        TransportProtocol::Tcp,
        4000,
        vec!["127.0.0.1".parse().unwrap()],
    );
    let mut e = PoolElement::new(PeId(id), t, PolicyInfo::new(PolicyType::RoundRobin));
    e.registration_life = 30_000;
    e
}

#[test]
fn the_next_request_goes_to_another_registrar_when_the_home_one_dies() {
    let mut a = registrar("0x0000000a");
    let mut b = registrar("0x0000000b");
    let lib = Library::start(config()).unwrap();
    lib.add_static_registrar(vec![a.addr]);
    lib.add_static_registrar(vec![b.addr]);
    let pool = PoolHandle::from("HuntPool");
    assert_eq!(lib.register(pool.clone(), element(1)), Ok(PeId(1)));

    // Exactly one registrar (the home one, no ENRP between them) has it: kill that one.
    let (in_a, in_b) = (
        rsptool_resolve(a.addr, "HuntPool"),
        rsptool_resolve(b.addr, "HuntPool"),
    );
    assert!(in_a != in_b, "in A: {in_a}, in B: {in_b}");
    let (dead, alive) = if in_a {
        (&mut a, b.addr)
    } else {
        (&mut b, a.addr)
    };
    dead.child.kill().unwrap();
    dead.child.wait().unwrap();

    // The association is gone; the next request hunts and finds the other registrar.
    let mut result = lib.register(pool.clone(), element(1));
    if result == Err(RequestError::Disconnected) {
        // The request raced the association's loss; rsplib's callers retry likewise.
        result = lib.register(pool.clone(), element(1));
    }
    assert_eq!(result, Ok(PeId(1)));
    assert!(
        rsptool_resolve(alive, "HuntPool"),
        "the PE is not at the surviving registrar"
    );
    lib.shutdown();
}

#[test]
fn no_reachable_registrar_is_reported_within_timeout_times_trials() {
    // Port 1 on loopback: nothing listens there (a freed ephemeral port could be taken by a
    // registrar of a test running in parallel).
    let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "something listens on {addr}"
    );
    let lib = Library::start(config()).unwrap();
    lib.add_static_registrar(vec![addr]);
    let t = Instant::now();
    let r = lib.register(PoolHandle::from("NoPool"), element(2));
    let took = t.elapsed();
    assert_eq!(r, Err(RequestError::NoRegistrar));
    // Two rounds of 300 ms: the hunt waits out the first round, not the last.
    assert!(took >= Duration::from_millis(250), "gave up after {took:?}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    lib.shutdown();
}

/// True if `registrar` knows a PE in `pool` (one Handle Resolution through rsptool).
fn rsptool_resolve(registrar: SocketAddr, pool: &str) -> bool {
    Command::new(env!("CARGO_BIN_EXE_rsptool"))
        .args([
            "resolve",
            &format!("-registrar={registrar}"),
            &format!("-poolhandle={pool}"),
        ])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}
