//! Several registrar processes on loopback TCP with static peers (every other registrar), PEs
//! registered through the library (`rsptool lib-pe`), and what each registrar holds, asked
//! with `rsptool hsdump`'s query. Shared by the ENRP integration and chaos tests.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::common::*;
use rsplib::registrar::hsdump;
use rsplib::transport::Protocol;

pub const REGISTRAR: &str = env!("CARGO_BIN_EXE_rspregistrar");
pub const RSPTOOL: &str = env!("CARGO_BIN_EXE_rsptool");

/// ENRP and keep-alive timers at rsplib's lower bounds, so that a death is found in ~2 s.
pub const FAST: &[&str] = &[
    "-peerheartbeatcycle=1000",
    "-peermaxtimelastheard=1000",
    "-peermaxtimenoresponse=1000",
    "-takeoverexpiryinterval=2000",
    "-mentordiscoverytimeout=2000",
    "-endpointkeepalivetransmissioninterval=2000",
    "-endpointkeepalivetimeoutinterval=2000",
];

pub struct Cluster {
    pub asap: Vec<SocketAddr>,
    pub enrp: Vec<SocketAddr>,
    pub regs: Vec<Option<Registrar>>,
    pub dir: std::path::PathBuf,
}

impl Cluster {
    pub fn new(n: usize, name: &str) -> Cluster {
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

    pub fn start(&mut self, i: usize, id: u32) {
        let mut extra: Vec<String> = vec![
            format!("-asap={}", self.asap[i]),
            format!("-enrp={}", self.enrp[i]),
            format!("-identifier=0x{id:x}"),
            "-loglevel=5".into(),
        ];
        extra.extend(FAST.iter().map(|s| s.to_string()));
        // The third registrar runs two event loops: what its second loop's PEs do reaches the
        // peers through the first loop's ENRP connections.
        if i == 2 {
            extra.push("-threads=2".into());
        }
        for (j, e) in self.enrp.iter().enumerate() {
            if j != i {
                extra.push(format!("-peer={e}"));
            }
        }
        let refs: Vec<&str> = extra.iter().map(String::as_str).collect();
        let log = self.dir.join(format!("registrar{i}-{id:x}.log"));
        self.regs[i] = Some(Registrar::start(REGISTRAR, &log, &refs));
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(mut r) = self.regs[i].take() {
            r.proc.kill9();
        }
    }

    pub fn live(&self) -> Vec<usize> {
        (0..self.regs.len())
            .filter(|&i| self.regs[i].is_some())
            .collect()
    }

    pub fn log(&self, i: usize) -> String {
        self.regs[i]
            .as_ref()
            .map(|r| r.log_text())
            .unwrap_or_default()
    }

    /// (PE id, home) of every PE registrar `i` holds, and whether an id appeared twice.
    pub fn table(&self, i: usize) -> (BTreeSet<(u32, u32)>, bool) {
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

    pub fn ids(&self, i: usize) -> BTreeSet<u32> {
        self.table(i).0.iter().map(|(id, _)| *id).collect()
    }

    /// Waits until every live registrar holds exactly `ids` with the same homes.
    pub fn converge(&self, ids: &BTreeSet<u32>, within: Duration) -> Result<Duration, String> {
        self.settle(ids, None, within)
    }

    /// As [`Cluster::converge`], and every PE's home is one of `homes` (when given: the live
    /// registrars, so that a dead one's PEs have been taken over or have re-registered).
    pub fn settle(
        &self,
        ids: &BTreeSet<u32>,
        homes: Option<&BTreeSet<u32>>,
        within: Duration,
    ) -> Result<Duration, String> {
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < within {
            let tables: Vec<(BTreeSet<(u32, u32)>, bool)> =
                self.live().iter().map(|&i| self.table(i)).collect();
            let agree = tables.windows(2).all(|w| w[0].0 == w[1].0);
            let complete = tables.iter().all(|(t, dup)| {
                !dup && t.iter().map(|(id, _)| *id).collect::<BTreeSet<u32>>() == *ids
            });
            let homed = tables
                .iter()
                .all(|(t, _)| homes.is_none_or(|h| t.iter().all(|(_, home)| h.contains(home))));
            let complete = complete && homed;
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
pub fn pe(c: &Cluster, k: u32, first: usize) -> Proc {
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

pub fn resolve_all(c: &Cluster, i: usize) -> BTreeSet<u32> {
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

/// Lines of `text` containing `what`.
pub fn count(text: &str, what: &str) -> usize {
    text.lines().filter(|l| l.contains(what)).count()
}

/// Waits until registrar `i`'s log contains `what`.
pub fn wait_log(c: &Cluster, i: usize, what: &str, within: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if c.log(i).contains(what) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}
