//! Handlespace throughput and memory: `cargo bench --bench handlespace`.
//!
//! For 10^3 … 10^6 PEs, in one pool and in pools of 100 PEs (10^4 pools at 10^6), and for the
//! policies RR, WRR, Random, Weighted Random and LU, it measures operations per second of
//! registration, re-registration (new policy value), handle resolution of 3 PEs and
//! deregistration, and the heap bytes per PE counted by a global allocator wrapper (requested
//! bytes of all handlespace structures, excluding the PE's address list — one IPv4 address, 17
//! bytes — and without an ASAP (registrator) transport, which would add a boxed 40-byte
//! transport plus its addresses).
//! The wrapper is around the registrar's allocator, mimalloc (with transparent huge pages, its
//! default; `MIMALLOC_ALLOW_THP=0` turns them off); `HS_BENCH_ALLOC=system` puts it around the
//! system allocator instead.
//! "RSS MiB" is the process's VmRSS right after building (includes the benchmark's own data).
//! Every size is run several times (3 at 10^6, up to 30 at small sizes; `HS_BENCH_REPS`) and the
//! median run of each operation is printed (the machine is shared: a median is what another
//! run reproduces, a best-of only the luckiest moment).
//! After each layout, a "slowdown" row gives, per column, (rate at the smallest size) / (rate at
//! the largest size) from this same run — the target is ≤ 2.0 between 10^3 and 10^6.
//! The "1000+miss" rows run the smallest size again with every operation first waiting for one
//! random load from 4 MiB, the least memory traffic an operation at 10^6 PEs needs (see
//! [`Stall`]); their "slow" rows are the ratio that this alone costs.
//! `HS_BENCH_MAX=100000` / `HS_BENCH_MIN=1000000` limit the sizes (profiling one size),
//! `HS_BENCH_REPS=1` the repetitions, `HS_BENCH_WARMUP=0` the repetitions run first and not
//! counted (1 up to 10^4 PEs, else 0), `HS_BENCH_RESOLUTIONS=0` the handle resolutions per
//! repetition (100 000; fewer to profile the other operations), `HS_BENCH_READ_PES=1` makes each
//! resolution also read its PEs' ids and ports (as a registrar's answer does: a selection that
//! writes into a PE then costs no cache miss of its own), `HS_BENCH_SLOWEST=1` times every
//! deregistration and prints the slowest of each run to stderr (a pause that the rate hides;
//! the timing makes the deregistration rates lower);
//! `HS_BENCH_LAYOUT=single|pools` runs one layout only, `HS_BENCH_POLICY=RR,LU,…` the listed
//! policies only (short names of [`POLICIES`]: also PRIO, LUD, PLU, PLUD, LUDPF, LUDDPF, PLUDPF,
//! PLUDDPF, RLU, RLUD, RPLU, RPLUD, WRANDDPF).
//! `HS_BENCH_MACHINE=1` prints one `HS impl=ours layout=… n=… pools=… policy=… reg=… rereg=…
//! hr=… dereg=… bpe=…` line per row instead of the table (rates in operations per second), the
//! format of the rsplib harness (`benches/rsplib-hs/`), which `make bench-hs-compare` runs
//! alternately with this bench to compare both on the same workload.
//!
//! The workload is what a registrar sees: PE ids are pseudo-random 32-bit values (rsplib draws
//! them at random), PEs register in turn to all pools (so a pool's PEs are spread over the whole
//! PE table), time is monotonic (one registration per µs), every PE is re-registered once in the
//! same order, resolutions go to uniformly random pools, and deregistration follows registration
//! order.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mimalloc::MiMalloc;
use rsplib::core::handlespace::{Config, Handlespace, PeRef, Registration};
use rsplib::core::types::{
    PeId, PolicyInfo, PolicyType, PoolHandle, RegistrarId, TransportAddress, TransportProtocol,
};

/// The registrar's allocator (mimalloc) or, with `HS_BENCH_ALLOC=system`, the system's; chosen
/// at the first allocation, so that every block is freed by the allocator that made it.
struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

/// 0: not chosen yet, 1: system, 2: mimalloc.
static WHICH: AtomicU8 = AtomicU8::new(0);

fn use_system() -> bool {
    match WHICH.load(Ordering::Relaxed) {
        0 => {
            // getenv does not allocate (std::env::var would, from inside the allocator).
            // SAFETY: a NUL-terminated name; the result is only compared, before any thread
            // could change the environment.
            let system = unsafe {
                let v = libc::getenv(c"HS_BENCH_ALLOC".as_ptr());
                !v.is_null() && std::ffi::CStr::from_ptr(v).to_bytes() == b"system"
            };
            WHICH.store(if system { 1 } else { 2 }, Ordering::Relaxed);
            system
        }
        w => w == 1,
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(l.size(), Ordering::Relaxed);
        if use_system() {
            unsafe { System.alloc(l) }
        } else {
            unsafe { MiMalloc.alloc(l) }
        }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        ALLOCATED.fetch_sub(l.size(), Ordering::Relaxed);
        if use_system() {
            unsafe { System.dealloc(p, l) }
        } else {
            unsafe { MiMalloc.dealloc(p, l) }
        }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new, Ordering::Relaxed);
        ALLOCATED.fetch_sub(l.size(), Ordering::Relaxed);
        if use_system() {
            unsafe { System.realloc(p, l, new) }
        } else {
            unsafe { MiMalloc.realloc(p, l, new) }
        }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn vm_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// A bijection on u32 (odd multiplier), so ids are unique, non-sequential and never 0.
fn pe_id(i: usize) -> PeId {
    PeId(((i as u32).wrapping_add(1)).wrapping_mul(0x9e37_79b1))
}

/// PE `i`'s registration (`generation` 0) or re-registration (1); the rsplib harness uses the
/// same values (`benches/rsplib-hs/harness.c`). Values a policy does not use are ignored.
fn registration(i: usize, policy: PolicyType, generation: u32) -> Registration {
    let mut info = PolicyInfo::new(policy);
    info.weight = 1 + (i as u32 + generation) % 7;
    info.priority = info.weight;
    info.load = ((i as u32).wrapping_mul(2_654_435_761) >> 8).wrapping_add(generation);
    info.load_degradation = 1 << 20;
    info.load_dpf = 1 << 12;
    info.weight_dpf = 1 << 12;
    info.distance = i as u32 % 50;
    let octets = (i as u32 + 1).to_be_bytes();
    Registration {
        pe_id: pe_id(i),
        home: RegistrarId(1 + (i as u32 % 3)),
        registration_life_ms: 90_000,
        user_transport: TransportAddress::new(
            TransportProtocol::Sctp,
            4711,
            vec![IpAddr::V4(Ipv4Addr::from(octets))],
        ),
        policy: info,
        registrator_transport: None,
    }
}

fn rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M", r / 1e6)
    } else {
        format!("{:.0} k", r / 1e3)
    }
}

/// The four rates of a row.
fn rate_columns(r: &[f64; 4]) -> String {
    r.map(|x| format!("{:>9}", rate(x))).join(" ")
}

/// The four slowdowns `a / b` of a row.
fn ratio_columns(a: &[f64; 4], b: &[f64; 4]) -> String {
    (0..4)
        .map(|c| format!("{:>8.2}x", a[c] / b[c]))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Short policy names (`HS_BENCH_POLICY`, the harness's `-p`).
const POLICIES: [(&str, PolicyType); 18] = [
    ("RR", PolicyType::RoundRobin),
    ("WRR", PolicyType::WeightedRoundRobin),
    ("RAND", PolicyType::Random),
    ("WRAND", PolicyType::WeightedRandom),
    ("PRIO", PolicyType::Priority),
    ("LU", PolicyType::LeastUsed),
    ("LUD", PolicyType::LeastUsedDegradation),
    ("PLU", PolicyType::PriorityLeastUsed),
    ("PLUD", PolicyType::PriorityLeastUsedDegradation),
    ("LUDPF", PolicyType::LeastUsedDpf),
    ("LUDDPF", PolicyType::LeastUsedDegradationDpf),
    ("PLUDPF", PolicyType::PriorityLeastUsedDpf),
    ("PLUDDPF", PolicyType::PriorityLeastUsedDegradationDpf),
    ("RLU", PolicyType::RandomizedLeastUsed),
    ("RLUD", PolicyType::RandomizedLeastUsedDegradation),
    ("RPLU", PolicyType::RandomizedPriorityLeastUsed),
    ("RPLUD", PolicyType::RandomizedPriorityLeastUsedDegradation),
    ("WRANDDPF", PolicyType::WeightedRandomDpf),
];

fn policy_name(p: PolicyType) -> &'static str {
    POLICIES.iter().find(|(_, q)| *q == p).expect("named").0
}

/// The median of `v` (mean of the middle two for an even count).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let k = v.len();
    if k % 2 == 1 {
        v[k / 2]
    } else {
        (v[k / 2 - 1] + v[k / 2]) / 2.0
    }
}

fn short(n: usize) -> String {
    format!("1e{}", (n as f64).log10().round())
}

/// Latency of a dependent random load over `bytes` of memory (a pointer chase over a random
/// cyclic permutation of 64-byte lines), in ns: the memory hierarchy the ratios run into.
fn load_latency_ns(bytes: usize) -> f64 {
    let lines = bytes / 64;
    let mut next: Vec<[usize; 8]> = vec![[0; 8]; lines];
    let mut order: Vec<usize> = (0..lines).collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in (1..lines).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    for w in 0..lines {
        next[order[w]][0] = order[(w + 1) % lines];
    }
    let steps = 2_000_000;
    let mut p = order[0];
    let t = Instant::now();
    for _ in 0..steps {
        p = next[p][0];
    }
    black_box(p);
    t.elapsed().as_secs_f64() * 1e9 / steps as f64
}

/// What each operation waits for before it starts: nothing, or one random load from a 4 MiB
/// buffer (the "+miss" rows). That is less than any handlespace of 10^6 PEs can get away with:
/// an operation on a PE named by a random id, or on one of 10^4 pools, must read at least one
/// random line of a structure with an entry for each of the 10^6 PEs, which is 4 MiB or more
/// (4 bytes a PE). The load's address is known in advance (as an id from a message is), so the
/// processor may overlap it with earlier work, but the operation needs its value.
trait Stall {
    /// 0, computed from the load (so the operation depends on it).
    fn zero(&mut self) -> usize;
}

struct NoStall;

impl Stall for NoStall {
    #[inline(always)]
    fn zero(&mut self) -> usize {
        0
    }
}

/// Random lines of 4 MiB, addressed by a xorshift sequence.
struct DramStall {
    lines: Vec<[u32; 16]>,
    x: u64,
}

impl DramStall {
    fn new() -> Self {
        let lines = (4usize << 20) / 64;
        // Distinct non-zero contents, so that no page is shared.
        let lines = (0..lines as u32).map(|i| [i + 1; 16]).collect();
        DramStall {
            lines,
            x: 0x2545_f491_4f6c_dd1d,
        }
    }
}

impl Stall for DramStall {
    #[inline(always)]
    fn zero(&mut self) -> usize {
        self.x ^= self.x << 13;
        self.x ^= self.x >> 7;
        self.x ^= self.x << 17;
        let line = self.lines[(self.x as usize) & (self.lines.len() - 1)][0];
        // Line contents are at most 2^20, so this is 0, but only once the load has completed.
        (line >> 24) as usize
    }
}

/// Rates of [reg, rereg, HR(3), dereg], heap bytes per PE and RSS MiB for `n` PEs of `policy`
/// spread over `handles`.
fn measure(
    n: usize,
    policy: PolicyType,
    handles: &[PoolHandle],
    stall: &mut impl Stall,
) -> ([f64; 4], f64, f64) {
    let resolutions: usize = std::env::var("HS_BENCH_RESOLUTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let pool_count = handles.len();
    let read_pes = std::env::var("HS_BENCH_READ_PES").is_ok_and(|v| v == "1");
    let time_each = std::env::var("HS_BENCH_SLOWEST").is_ok_and(|v| v == "1");
    // Every size is repeated and the median run of each operation kept (the machine is
    // shared: the median is what another run reproduces).
    let reps = std::env::var("HS_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or((300_000 / n).clamp(3, 30));
    // Repetitions run first and not counted: the first touches of fresh memory (mimalloc
    // maps huge pages) land there instead of in a timed loop.
    let warmup = std::env::var("HS_BENCH_WARMUP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(usize::from(n <= 10_000));
    // Per run: rates of [reg, rereg, HR, dereg].
    let mut runs: [Vec<f64>; 4] = Default::default();
    let mut per_pe = 0.0;
    let mut rss = 0.0;
    for rep in 0..warmup + reps {
        if rep == warmup {
            runs.iter_mut().for_each(Vec::clear);
        }
        let mut hs = Handlespace::with_seed(Config::registrar(), 1);
        let regs: Vec<Registration> = (0..n).map(|i| registration(i, policy, 0)).collect();
        let before = ALLOCATED.load(Ordering::Relaxed);
        let t = Instant::now();
        for (i, r) in regs.into_iter().enumerate() {
            let h = &handles[(i + stall.zero()) % pool_count];
            black_box(hs.register(h, r, i as u64).unwrap());
        }
        runs[0].push(n as f64 / t.elapsed().as_secs_f64());
        // The delta is: handlespace structures − the freed Registration buffer. The
        // address lists were allocated before `before` and moved in, so they are not
        // in the delta.
        let delta = ALLOCATED.load(Ordering::Relaxed) as f64 - before as f64;
        per_pe = (delta + (n * std::mem::size_of::<Registration>()) as f64) / n as f64;
        rss = vm_rss_kib() as f64 / 1024.0;

        let regs: Vec<Registration> = (0..n).map(|i| registration(i, policy, 1)).collect();
        let t = Instant::now();
        for (i, r) in regs.into_iter().enumerate() {
            let h = &handles[(i + stall.zero()) % pool_count];
            black_box(hs.register(h, r, (n + i) as u64).unwrap());
        }
        runs[1].push(n as f64 / t.elapsed().as_secs_f64());

        let mut out: Vec<PeRef> = Vec::with_capacity(3);
        let mut x: u64 = 0x1234_5678;
        let t = Instant::now();
        for _ in 0..resolutions {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let h = &handles[(x as usize + stall.zero()) % pool_count];
            hs.select_into(h, 3, &mut out).unwrap();
            if read_pes {
                let read = out.iter().map(|&r| {
                    let pe = hs.pe(r);
                    u64::from(pe.id().0) + u64::from(pe.user_transport().port)
                });
                black_box(read.sum::<u64>());
            }
            black_box(&out);
        }
        runs[2].push(resolutions as f64 / t.elapsed().as_secs_f64());

        let t = Instant::now();
        let mut worst = (Duration::ZERO, 0);
        for i in 0..n {
            let h = &handles[(i + stall.zero()) % pool_count];
            let started = time_each.then(Instant::now);
            black_box(hs.deregister(h, pe_id(i)).unwrap());
            if let Some(started) = started {
                worst = worst.max((started.elapsed(), i));
            }
        }
        runs[3].push(n as f64 / t.elapsed().as_secs_f64());
        if time_each {
            eprintln!(
                "slowest deregistration: n={n} pools={pool_count} policy={policy:?} run {rep}: \
                 {:.2} ms (PE {})",
                worst.0.as_secs_f64() * 1e3,
                worst.1
            );
        }
        assert!(hs.is_empty());
    }
    (runs.map(|mut r| median(&mut r)), per_pe, rss)
}

fn main() {
    let max: usize = std::env::var("HS_BENCH_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let min: usize = std::env::var("HS_BENCH_MIN")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let layout = std::env::var("HS_BENCH_LAYOUT").unwrap_or_default();
    let machine = std::env::var("HS_BENCH_MACHINE").is_ok_and(|v| v == "1");
    let sizes: Vec<usize> = [1_000, 10_000, 100_000, 1_000_000]
        .into_iter()
        .filter(|n| *n <= max && *n >= min)
        .collect();
    let policies: Vec<PolicyType> = match std::env::var("HS_BENCH_POLICY") {
        Ok(list) => list
            .split(',')
            .map(|name| {
                POLICIES
                    .iter()
                    .find(|(n, _)| *n == name)
                    .unwrap_or_else(|| panic!("HS_BENCH_POLICY: unknown policy {name}"))
                    .1
            })
            .collect(),
        Err(_) => vec![
            PolicyType::RoundRobin,
            PolicyType::WeightedRoundRobin,
            PolicyType::Random,
            PolicyType::WeightedRandom,
            PolicyType::LeastUsed,
        ],
    };
    if !machine {
        if use_system() {
            println!("allocator: system (HS_BENCH_ALLOC=system)");
        } else {
            println!("allocator: mimalloc, as rspregistrar (HS_BENCH_ALLOC=system: the system's)");
        }
    }
    if max >= 1_000_000 && min == 0 && !machine {
        let probe: Vec<String> = [16usize << 10, 1 << 20, 4 << 20, 8 << 20, 16 << 20, 64 << 20]
            .iter()
            .map(|&b| format!("{} KiB {:.1} ns", b >> 10, load_latency_ns(b)))
            .collect();
        println!("dependent random load: {}", probe.join(", "));
    }
    if !machine {
        println!(
            "{:>9} {:>7} {:>8} | {:>9} {:>9} {:>9} {:>9} | {:>8} {:>7}",
            "PEs", "pools", "policy", "reg/s", "rereg/s", "HR(3)/s", "dereg/s", "B/PE", "RSS MiB"
        );
    }
    let mut dram_stall: Option<DramStall> = None;
    for pools_of_100 in [false, true] {
        if (layout == "single" && pools_of_100) || (layout == "pools" && !pools_of_100) {
            continue;
        }
        // Per policy: the rates at the smallest size, at the largest (with its size and B/PE),
        // and at the smallest size again with each operation first waiting for one DRAM load.
        let mut first: Vec<[f64; 4]> = Vec::new();
        let mut last: Vec<(usize, [f64; 4], f64)> = Vec::new();
        let mut missed: Vec<[f64; 4]> = Vec::new();
        for &n in &sizes {
            let pool_count = if pools_of_100 { n / 100 } else { 1 };
            let handles: Vec<PoolHandle> = (0..pool_count)
                .map(|p| PoolHandle::from(format!("pool-{p:05}").as_str()))
                .collect();
            for (pi, &policy) in policies.iter().enumerate() {
                let (rates, per_pe, rss) = measure(n, policy, &handles, &mut NoStall);
                if machine {
                    println!(
                        "HS impl=ours layout={} n={n} pools={pool_count} policy={} reg={:.0} \
                         rereg={:.0} hr={:.0} dereg={:.0} bpe={per_pe:.1}",
                        if pools_of_100 { "pools" } else { "single" },
                        policy_name(policy),
                        rates[0],
                        rates[1],
                        rates[2],
                        rates[3],
                    );
                    continue;
                }
                if first.len() == pi {
                    first.push(rates);
                }
                if last.len() == pi {
                    last.push((n, rates, per_pe));
                } else {
                    last[pi] = (n, rates, per_pe);
                }
                println!(
                    "{:>9} {:>7} {:>8} | {} | {:>8.1} {:>7.0}",
                    n,
                    pool_count,
                    policy_name(policy),
                    rate_columns(&rates),
                    per_pe,
                    rss,
                );
                if n == sizes[0] && sizes.len() > 1 {
                    let stall = dram_stall.get_or_insert_with(DramStall::new);
                    let (rates, _, _) = measure(n, policy, &handles, stall);
                    missed.push(rates);
                    println!(
                        "{:>9} {:>7} {:>8} | {} |",
                        format!("{n}+miss"),
                        pool_count,
                        policy_name(policy),
                        rate_columns(&rates),
                    );
                }
            }
        }
        if sizes.len() > 1 && !machine {
            for (pi, &policy) in policies.iter().enumerate() {
                let (n, l, per_pe) = last[pi];
                let f = first[pi];
                let worst = (0..4).map(|c| f[c] / l[c]).fold(0.0, f64::max);
                println!(
                    "{:>9} {:>7} {:>8} | {} | {:>8} {}",
                    format!("{}/{}", short(n), short(sizes[0])),
                    "slow",
                    policy_name(policy),
                    ratio_columns(&f, &l),
                    if per_pe < 250.0 { "<250 ok" } else { ">=250 !" },
                    if worst <= 2.0 { "ok" } else { "OVER 2x" },
                );
            }
            for (pi, &policy) in policies.iter().enumerate() {
                let (f, m) = (first[pi], missed[pi]);
                println!(
                    "{:>9} {:>7} {:>8} | {} |",
                    format!("{}+miss", short(sizes[0])),
                    "slow",
                    policy_name(policy),
                    ratio_columns(&f, &m),
                );
            }
        }
    }
}
