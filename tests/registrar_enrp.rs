//! ENRP between real registrar processes over loopback TCP: three registrars with static peers,
//! PEs registered through the library at each; a registrar killed with SIGKILL is taken over by
//! exactly one survivor, its PEs stay resolvable everywhere and the survivors agree; a restarted
//! registrar fetches the handle table from a mentor.

mod common;

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use rsplib::registrar::hsdump;
use rsplib::transport::Protocol;

const REGISTRAR: &str = env!("CARGO_BIN_EXE_rspregistrar");
const RSPTOOL: &str = env!("CARGO_BIN_EXE_rsptool");

/// ENRP and keep-alive timers at rsplib's lower bounds, so that a death is found in ~2 s.
const FAST: &[&str] = &[
    "-peerheartbeatcycle=1000",
    "-peermaxtimelastheard=1000",
    "-peermaxtimenoresponse=1000",
    "-takeoverexpiryinterval=2000",
    "-mentordiscoverytimeout=2000",
    "-endpointkeepalivetransmissioninterval=2000",
    "-endpointkeepalivetimeoutinterval=2000",
];

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Cluster {
    asap: Vec<SocketAddr>,
    enrp: Vec<SocketAddr>,
    regs: Vec<Option<Registrar>>,
    dir: std::path::PathBuf,
}

impl Cluster {
    fn new(n: usize, name: &str) -> Cluster {
        let asap = (0..n)
            .map(|_| SocketAddr::from(([127, 0, 0, 1], free_port())))
            .collect();
        let enrp = (0..n)
            .map(|_| SocketAddr::from(([127, 0, 0, 1], free_port())))
            .collect();
        let mut c = Cluster {
            asap,
            enrp,
            regs: (0..n).map(|_| None).collect(),
            dir: temp_dir(name),
        };
        for i in 0..n {
            c.start(i, 0x10 * (i as u32 + 1));
        }
        c
    }

    fn start(&mut self, i: usize, id: u32) {
        let mut extra: Vec<String> = vec![
            format!("-asap={}", self.asap[i]),
            format!("-enrp={}", self.enrp[i]),
            format!("-identifier=0x{id:x}"),
            "-loglevel=5".into(),
        ];
        extra.extend(FAST.iter().map(|s| s.to_string()));
        for (j, e) in self.enrp.iter().enumerate() {
            if j != i {
                extra.push(format!("-peer={e}"));
            }
        }
        let refs: Vec<&str> = extra.iter().map(String::as_str).collect();
        let log = self.dir.join(format!("registrar{i}-{id:x}.log"));
        self.regs[i] = Some(Registrar::start(REGISTRAR, &log, &refs));
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut r) = self.regs[i].take() {
            r.proc.kill9();
        }
    }

    fn live(&self) -> Vec<usize> {
        (0..self.regs.len())
            .filter(|&i| self.regs[i].is_some())
            .collect()
    }

    fn log(&self, i: usize) -> String {
        self.regs[i]
            .as_ref()
            .map(|r| r.log_text())
            .unwrap_or_default()
    }

    /// (PE id, home) of every PE registrar `i` holds, and whether an id appeared twice.
    fn table(&self, i: usize) -> (BTreeSet<(u32, u32)>, bool) {
        let dump = hsdump::query(self.enrp[i], Protocol::Tcp, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("hsdump of registrar {i}: {e}"));
        let mut set = BTreeSet::new();
        let mut dup = false;
        for pool in &dump.pools {
            for e in &pool.elements {
                dup |= !set.insert((e.id.0, e.home_registrar.0));
            }
        }
        (set, dup)
    }

    fn ids(&self, i: usize) -> BTreeSet<u32> {
        self.table(i).0.iter().map(|(id, _)| *id).collect()
    }

    /// Waits until every live registrar holds exactly `ids` with the same homes.
    fn converge(&self, ids: &BTreeSet<u32>, within: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < within {
            let tables: Vec<(BTreeSet<(u32, u32)>, bool)> =
                self.live().iter().map(|&i| self.table(i)).collect();
            let agree = tables.windows(2).all(|w| w[0].0 == w[1].0);
            let complete = tables.iter().all(|(t, dup)| {
                !dup && t.iter().map(|(id, _)| *id).collect::<BTreeSet<u32>>() == *ids
            });
            if agree && complete {
                return Ok(start.elapsed());
            }
            last = format!("{tables:x?}");
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("no agreement within {within:?}: {last}"))
    }
}

/// PE `k` through the library; the registrar it tries first is `first` (the library's hunt
/// starts at the second entry of its list).
fn pe(c: &Cluster, k: u32, first: usize) -> Proc {
    let n = c.asap.len();
    let mut args = vec![
        "lib-pe".to_string(),
        "-poolhandle=EnrpPool".into(),
        format!("-identifier={k}"),
        format!("-port={}", 7000 + k),
        "-reregister=500".into(),
    ];
    for j in 0..n {
        args.push(format!("-registrar={}", c.asap[(first + n - 1 + j) % n]));
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut p = Proc::spawn(RSPTOOL, &refs);
    p.wait_for("registered PE", Duration::from_secs(10));
    p
}

fn resolve_all(c: &Cluster, i: usize) -> BTreeSet<u32> {
    let out = std::process::Command::new(RSPTOOL)
        .args([
            "resolve",
            &format!("-registrar={}", c.asap[i]),
            "-poolhandle=EnrpPool",
            "-items=100",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("PE 0x"))
        .filter_map(|l| u32::from_str_radix(&l[..8], 16).ok())
        .collect()
}

fn count(text: &str, what: &str) -> usize {
    text.lines().filter(|l| l.contains(what)).count()
}

fn wait_log(c: &Cluster, i: usize, what: &str, within: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if c.log(i).contains(what) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn three_registrars_replicate_take_over_and_resynchronise() {
    let mut c = Cluster::new(3, "enrp3");
    // Each registrar sees the other two.
    for i in 0..3 {
        assert!(
            wait_log(&c, i, "joined", Duration::from_secs(10)),
            "registrar {i}: {}",
            c.log(i)
        );
    }
    let _pes: Vec<Proc> = (1..=6).map(|k| pe(&c, k, (k as usize) % 3)).collect();
    // PE 7 is not a library PE: it knows registrar 1 only and never registers again.
    let mut plain = Proc::spawn(
        RSPTOOL,
        &[
            "pe",
            &format!("-registrar={}", c.asap[1]),
            "-poolhandle=EnrpPool",
            "-identifier=7",
            "-port=7007",
        ],
    );
    plain.wait_for("registered PE", Duration::from_secs(10));
    let all: BTreeSet<u32> = (1..=7).collect();
    c.converge(&all, Duration::from_secs(10)).unwrap();
    for i in 0..3 {
        assert_eq!(resolve_all(&c, i), all, "resolution at registrar {i}");
        let (t, _) = c.table(i);
        assert!(
            t.iter().any(|(_, home)| *home == 0x20),
            "registrar 1 is home for some PEs"
        );
    }

    // kill -9 of registrar 1: exactly one survivor takes over; nothing is lost or doubled.
    c.kill(1);
    let killed = Instant::now();
    let taken = |c: &Cluster| {
        [0, 2]
            .iter()
            .map(|&i| count(&c.log(i), "took over registrar 0x00000020"))
            .sum::<usize>()
    };
    while taken(&c) == 0 && killed.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let takeover_at = killed.elapsed();
    assert_eq!(taken(&c), 1, "{}\n{}", c.log(0), c.log(2));
    let converged = c.converge(&all, Duration::from_secs(2)).unwrap();
    let taker = if count(&c.log(0), "took over registrar") > 0 {
        0x10
    } else {
        0x30
    };
    for i in [0, 2] {
        assert_eq!(resolve_all(&c, i), all, "resolution at registrar {i}");
        let (t, _) = c.table(i);
        assert!(t.iter().all(|(_, home)| *home != 0x20));
        assert!(t.contains(&(7, taker)), "PE 7 is the taker's now");
    }
    // PE 7 does not register again: the taker removes it after one keep-alive round, everywhere.
    let rest: BTreeSet<u32> = (1..=6).collect();
    c.converge(&rest, Duration::from_secs(8)).unwrap();
    assert_eq!(taken(&c), 1, "still exactly one takeover");
    drop(plain);
    eprintln!(
        "takeover {:.1} s after SIGKILL; survivors agreed {} ms later",
        takeover_at.as_secs_f64(),
        converged.as_millis()
    );

    // Registrar 1 comes back (a new id): it fetches the table from a mentor.
    c.start(1, 0x21);
    assert!(
        wait_log(&c, 1, "handle table from mentor", Duration::from_secs(10)),
        "{}",
        c.log(1)
    );
    c.converge(&rest, Duration::from_secs(5)).unwrap();
    assert_eq!(c.ids(1), rest);
    assert_eq!(resolve_all(&c, 1), rest);
    let _ = Path::new(&c.dir);
}

#[test]
fn enrp_from_an_unknown_host_is_refused_and_a_forged_sender_ignored() {
    let c = Cluster::new(2, "enrp-hostile");
    assert!(wait_log(&c, 0, "joined", Duration::from_secs(10)));
    // A tool on loopback (allowed) may dump; it sees both registrars' peers.
    let dump = hsdump::query(c.enrp[0], Protocol::Tcp, Duration::from_secs(5)).unwrap();
    assert_eq!(dump.registrar.map(|r| r.0), Some(0x10));
    assert!(dump.peers.iter().any(|p| p.server_id.0 == 0x20));
    // A forged Handle Update over a real connection (the access refusal of unknown hosts is
    // in the unit tests: every host here is loopback).
    use rsplib::core::types::{PeId, PolicyInfo, PolicyType, RegistrarId, TransportAddress};
    use rsplib::core::wire::{enrp, EnrpBody, EnrpMessage, PoolElement, ServerInformation};
    use rsplib::transport::{Association, PPID_ENRP};
    let mut a = Association::connect(
        Protocol::Tcp,
        &[c.enrp[0]],
        Duration::from_secs(2),
        PPID_ENRP,
    )
    .unwrap();
    let me = RegistrarId(0x77);
    let presence = EnrpMessage::new(
        me,
        RegistrarId(0),
        EnrpBody::Presence {
            checksum: 0,
            server_info: ServerInformation::new(me, vec![]),
        },
    );
    a.send(PPID_ENRP, &presence.to_bytes().unwrap()).unwrap();
    let mut e = PoolElement::new(
        PeId(0xbad),
        TransportAddress::new(
            rsplib::core::types::TransportProtocol::Tcp,
            1,
            vec!["127.0.0.1".parse().unwrap()],
        ),
        PolicyInfo::new(PolicyType::RoundRobin),
    );
    e.home_registrar = RegistrarId(0x20);
    // Claims to be registrar 0x20 on a connection that speaks for 0x77.
    let forged = EnrpMessage::new(
        RegistrarId(0x20),
        RegistrarId(0x10),
        EnrpBody::HandleUpdate {
            action: enrp::UPDATE_ADD_PE,
            reserved: 0,
            pool_handle: "EnrpPool".into(),
            element: e,
        },
    );
    a.send(PPID_ENRP, &forged.to_bytes().unwrap()).unwrap();
    assert!(wait_log(
        &c,
        0,
        "claiming to be from 0x00000020",
        Duration::from_secs(5)
    ));
    assert!(c.ids(0).is_empty());
}
