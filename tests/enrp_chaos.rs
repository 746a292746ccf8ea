//! Chaos: 5 registrars and 50 library PEs over loopback TCP. In rounds, random registrars and
//! PEs are killed with SIGKILL and restarted; after each round settles, every live PE must be
//! resolvable at every live registrar and every live registrar must hold the same handlespace
//! (same PEs, same homes). Prints rounds passed, PEs lost (must be 0) and the time to converge.
//!
//! Bounded (about three minutes); not in `make test`: run it with `make chaos` (or
//! `cargo test --release --test enrp_chaos -- --ignored --nocapture`). `CHAOS_ROUNDS` and
//! `CHAOS_SEED` override the defaults.

#[path = "common/cluster.rs"]
mod cluster;
mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cluster::*;
use common::*;

const REGISTRARS: usize = 5;
const PES: u32 = 50;

/// xorshift64: enough randomness for choosing victims, reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
#[ignore = "a few minutes: run with `make chaos`"]
fn registrars_and_pes_die_and_return_and_nothing_is_lost() {
    let rounds = env_or("CHAOS_ROUNDS", 8) as usize;
    let seed = env_or("CHAOS_SEED", 0x5eed ^ u64::from(std::process::id()));
    let mut rng = Rng(seed | 1);
    println!("chaos: {REGISTRARS} registrars, {PES} PEs, {rounds} rounds, seed {seed}");
    let mut c = Cluster::new(REGISTRARS, "enrp-chaos");
    for i in 0..REGISTRARS {
        assert!(wait_log(&c, i, "joined", Duration::from_secs(15)));
    }
    let mut pes: Vec<Option<Proc>> = (1..=PES)
        .map(|k| Some(pe(&c, k, k as usize % REGISTRARS)))
        .collect();
    let live_pes = |pes: &Vec<Option<Proc>>| -> BTreeSet<u32> {
        (1..=PES)
            .filter(|k| pes[*k as usize - 1].is_some())
            .collect()
    };
    let first = c
        .converge(&live_pes(&pes), Duration::from_secs(30))
        .expect("initial convergence");
    println!("initial convergence: {} ms", first.as_millis());

    let mut times = Vec::new();
    let mut passed = 0;
    let mut lost_total = 0;
    let mut restarts = 0u32;
    for round in 1..=rounds {
        // A registrar dies (keeping at least two alive) and, half the time, a dead one returns.
        let live = c.live();
        let mut what = Vec::new();
        if live.len() > 2 {
            let victim = live[rng.below(live.len())];
            c.kill(victim);
            what.push(format!("killed registrar {victim}"));
        }
        let dead: Vec<usize> = (0..REGISTRARS).filter(|i| c.regs[*i].is_none()).collect();
        if !dead.is_empty() && (rng.below(2) == 0 || c.live().len() <= 2) {
            let back = dead[rng.below(dead.len())];
            restarts += 1;
            // Same id as before: a registrar restarted with its configured -identifier.
            c.start(back, 0x10 * (back as u32 + 1));
            what.push(format!("restarted registrar {back}"));
        }
        // Three PEs die, and as many dead ones return.
        for _ in 0..3 {
            let k = rng.below(PES as usize);
            if let Some(mut p) = pes[k].take() {
                p.kill9();
                what.push(format!("killed PE {}", k + 1));
            }
        }
        let dead_pes: Vec<usize> = (0..PES as usize).filter(|k| pes[*k].is_none()).collect();
        for _ in 0..3.min(dead_pes.len()) {
            let k = dead_pes[rng.below(dead_pes.len())];
            if pes[k].is_none() {
                let home = c.live()[rng.below(c.live().len())];
                pes[k] = Some(pe(&c, k as u32 + 1, home));
                what.push(format!("restarted PE {}", k + 1));
            }
        }
        let started = Instant::now();
        // Settling: death detection (~2 s), takeover, the taker's grace for PEs that do not
        // return (4 s), and the library's re-registration; within 40 s.
        let homes: BTreeSet<u32> = c.live().iter().map(|&i| 0x10 * (i as u32 + 1)).collect();
        match c.settle(&live_pes(&pes), Some(&homes), Duration::from_secs(40)) {
            Ok(_) => {
                let t = started.elapsed();
                // Every live PE resolvable at every live registrar.
                let expected = live_pes(&pes);
                for i in c.live() {
                    let got = resolve_all(&c, i);
                    let missing: Vec<_> = expected.difference(&got).collect();
                    lost_total += missing.len();
                    assert!(
                        missing.is_empty(),
                        "round {round}: registrar {i} misses {missing:?}"
                    );
                }
                passed += 1;
                times.push(t);
                println!(
                    "round {round}: {} — converged in {} ms",
                    what.join(", "),
                    t.as_millis()
                );
            }
            Err(e) => {
                let expected = live_pes(&pes);
                let lost = c
                    .live()
                    .iter()
                    .map(|&i| expected.difference(&c.ids(i)).count())
                    .max()
                    .unwrap_or(0);
                panic!(
                    "round {round} ({}): no convergence; {lost} PEs missing: {e}",
                    what.join(", ")
                );
            }
        }
    }
    times.sort();
    let median = times[times.len() / 2];
    let max = times[times.len() - 1];
    println!(
        "chaos: {passed}/{rounds} rounds passed, {restarts} registrar restarts, PEs lost: \
         {lost_total}, time to converge: median {} ms, max {} ms",
        median.as_millis(),
        max.as_millis()
    );
    assert_eq!(lost_total, 0);
}
