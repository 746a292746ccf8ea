//! The registrar's handle resolution path in one process, without sockets:
//! `cargo bench --bench resolve`. What one TCP resolution costs the registrar besides the
//! kernel: the bytes cut out of the stream ([`Deframer`]), the core's answer
//! ([`Registrar::receive`]) and the answer appended to the connection's output, as
//! `src/registrar/mod.rs` and `src/transport/tcp_server/` do it. Prints heap allocations and
//! CPU time (this thread's) per resolution, for a pool of 3 PEs answered with 3 and with 1.
//!
//! The allocator is the registrar's (mimalloc), wrapped to count calls. `BENCH_MS` sets the
//! measuring time per figure (default 2000).

use std::alloc::{GlobalAlloc, Layout};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mimalloc::MiMalloc;
use rsplib::core::registrar::{AddressScope, Output, Registrar, RegistrarConfig};
use rsplib::core::types::{
    PeId, PolicyInfo, PolicyType, RegistrarId, TransportAddress, TransportProtocol,
};
use rsplib::core::wire::{AsapBody, AsapMessage, PoolElement, PPID_ASAP};
use rsplib::transport::framing::Deframer;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to mimalloc; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { MiMalloc.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { MiMalloc.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { MiMalloc.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { MiMalloc.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// This thread's CPU time.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

const PE_CONN: u64 = 1;
const PU_CONN: u64 = 2;

fn registrar() -> Registrar {
    let mut cfg = RegistrarConfig::new(RegistrarId(0x1111_1111));
    cfg.min_address_scope = AddressScope::Loopback;
    cfg.announce_cycle = None;
    let mut r = Registrar::new(cfg, 7, 0);
    for (conn, port) in [(PE_CONN, 40000), (PU_CONN, 40001)] {
        let peer = format!("127.0.0.1:{port}").parse().unwrap();
        r.connection_up(0, conn, TransportProtocol::Tcp, vec![peer], &mut Vec::new());
    }
    for id in 0..3u32 {
        let t = TransportAddress::new(
            TransportProtocol::Tcp,
            7000 + id as u16,
            vec!["127.0.0.1".parse().unwrap()],
        );
        let mut e = PoolElement::new(
            PeId(0xe001 + id),
            t,
            PolicyInfo::new(PolicyType::RoundRobin),
        );
        e.registration_life = 3_600_000;
        let msg = AsapMessage::new(AsapBody::Registration {
            pool_handle: "EchoPool".into(),
            element: e,
        });
        let mut out = Vec::new();
        r.receive(1, PE_CONN, PPID_ASAP, &msg.to_bytes().unwrap(), &mut out);
    }
    r
}

/// One resolution as the I/O loop handles it; returns the answer's length.
fn resolve(
    r: &mut Registrar,
    now: u64,
    request: &[u8],
    deframer: &mut Deframer,
    message: &mut Vec<u8>,
    outputs: &mut Vec<Output>,
    output: &mut VecDeque<u8>,
) -> usize {
    deframer.push(request);
    assert!(deframer.next_message_into(message).unwrap());
    r.receive(now, PU_CONN, PPID_ASAP, &message[..], outputs);
    let mut len = 0;
    for o in outputs.drain(..) {
        if let Output::Send { data, .. } = o {
            len += data.len();
            output.extend(&data);
            r.recycle(data);
        }
    }
    output.clear();
    len
}

fn main() {
    let budget = Duration::from_millis(
        std::env::var("BENCH_MS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(2000),
    );
    println!(
        "{:<34} {:>7} {:>16} {:>12}",
        "handle resolution", "bytes", "allocs/resol.", "ns CPU/res."
    );
    for items in [3u32, 1] {
        let mut r = registrar();
        let request = AsapMessage::new(AsapBody::HandleResolution {
            pool_handle: "EchoPool".into(),
            items: Some(items),
        })
        .to_bytes()
        .unwrap();
        let mut deframer = Deframer::new();
        let mut message = Vec::new();
        let mut outputs = Vec::new();
        let mut output = VecDeque::new();
        let mut now = 2;
        let mut len = 0;
        for _ in 0..10_000 {
            now += 1;
            len = resolve(
                &mut r,
                now,
                &request,
                &mut deframer,
                &mut message,
                &mut outputs,
                &mut output,
            );
        }
        assert!(len > 60, "no answer with PEs");
        let allocs0 = ALLOCS.load(Ordering::Relaxed);
        let cpu0 = thread_cpu();
        let mut n = 0u64;
        loop {
            for _ in 0..10_000 {
                now += 1;
                std::hint::black_box(resolve(
                    &mut r,
                    now,
                    &request,
                    &mut deframer,
                    &mut message,
                    &mut outputs,
                    &mut output,
                ));
            }
            n += 10_000;
            if thread_cpu() - cpu0 >= budget {
                break;
            }
        }
        let cpu = thread_cpu() - cpu0;
        let allocs = ALLOCS.load(Ordering::Relaxed) - allocs0;
        println!(
            "{:<34} {:>7} {:>16.2} {:>12.0}",
            format!("{items} of 3 PEs"),
            len,
            allocs as f64 / n as f64,
            cpu.as_nanos() as f64 / n as f64
        );
    }
}
