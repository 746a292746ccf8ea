//! Codec throughput: `cargo bench --bench codec`. A plain timing loop (no criterion).

use std::hint::black_box;
use std::time::{Duration, Instant};

use rsplib::core::types::*;
use rsplib::core::wire::*;

fn pe(id: u32, port: u16) -> PoolElement {
    let mut t = TransportAddress::new(
        TransportProtocol::Sctp,
        port,
        vec!["10.255.0.1".parse().unwrap()],
    );
    t.transport_use = TRANSPORT_USE_DATA_PLUS_CONTROL;
    let mut p = PolicyInfo::new(PolicyType::LeastUsedDegradation);
    p.load_degradation = 0x0ccc_cccd;
    let mut e = PoolElement::new(PeId(id), t, p);
    e.registration_life = 90_000;
    e
}

/// Runs `f` repeatedly for about `budget`; returns calls per second.
fn rate(budget: Duration, mut f: impl FnMut()) -> f64 {
    for _ in 0..1000 {
        f();
    }
    let mut n = 0u64;
    let start = Instant::now();
    loop {
        for _ in 0..1000 {
            f();
        }
        n += 1000;
        let el = start.elapsed();
        if el >= budget {
            return n as f64 / el.as_secs_f64();
        }
    }
}

fn main() {
    let registration = AsapMessage::new(AsapBody::Registration {
        pool_handle: "CalcAppPool".into(),
        element: pe(0xca02, 59550),
    });
    let mut hrr_pes: Vec<PoolElement> = (0..3).map(|i| pe(0xe001 + i, 5000 + i as u16)).collect();
    for e in &mut hrr_pes {
        e.home_registrar = RegistrarId(0x1111_1111);
    }
    let hrr = AsapMessage::new(AsapBody::HandleResolutionResponse {
        pool_handle: "EchoPool".into(),
        policy: Some(hrr_pes[0].policy),
        elements: hrr_pes,
        error: None,
    });
    let budget = Duration::from_millis(
        std::env::var("BENCH_MS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1000),
    );
    println!(
        "{:<42} {:>6} {:>14} {:>10}",
        "benchmark", "bytes", "messages/s", "MB/s"
    );
    for (name, m) in [
        ("Registration", &registration),
        ("Handle Resolution Response (3 PEs)", &hrr),
    ] {
        let bytes = m.to_bytes().unwrap();
        assert_eq!(AsapMessage::decode(&bytes).unwrap().message, *m);
        let dec = rate(budget, || {
            black_box(AsapMessage::decode(black_box(&bytes)).unwrap());
        });
        let mut buf = Vec::with_capacity(512);
        let enc = rate(budget, || {
            buf.clear();
            black_box(m).emit(&mut buf).unwrap();
            black_box(&buf);
        });
        for (what, r) in [("decode", dec), ("encode", enc)] {
            println!(
                "{:<42} {:>6} {:>14.0} {:>10.1}",
                format!("{what} {name}"),
                bytes.len(),
                r,
                r * bytes.len() as f64 / 1e6
            );
        }
    }
}
