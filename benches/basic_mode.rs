//! `rspHandleResolution` calls/s through the classic C entry points, against the real
//! `rspregistrar` on loopback TCP: from the PU cache, and with the cache disabled
//! (`TAG_RspLib_CacheElementTimeout` = 0, every call asks the registrar).
//! `cargo bench --bench basic_mode`; `BENCH_MS` sets the time per figure (default 2000).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rsplib::ffi::rserpoolerror::RSPERR_OKAY;
use rsplib::ffi::rsplib::*;
use rsplib::ffi::rsplib_tags::TAG_RspLib_CacheElementTimeout;
use rsplib::ffi::sockaddrunion::sockaddr_union;
use rsplib::ffi::tagitem::{TagItem, TAG_DONE};

const REGISTRAR: &str = env!("CARGO_BIN_EXE_rspregistrar");

fn rate(budget: Duration, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        for _ in 0..100 {
            f();
        }
        n += 100;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let budget = Duration::from_millis(
        std::env::var("BENCH_MS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(2000),
    );
    let mut reg = Command::new(REGISTRAR)
        .args([
            "-asap=127.0.0.1:0",
            "-enrp=127.0.0.1:0",
            "-asapannounce=off",
            "-enrpannounce=off",
            "-transport=tcp",
            "-minaddressscope=loopback",
            "-loglevel=0",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start rspregistrar");
    let mut lines = BufReader::new(reg.stdout.take().unwrap()).lines();
    let addr = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("Listening: ASAP over TCP on ")
                .map(str::to_string)
        })
        .expect("registrar address");
    // Keep reading: a closed pipe would make the registrar's next line (ENRP) fail with EPIPE.
    std::thread::spawn(move || lines.for_each(drop));
    std::env::set_var("RSPLIB_REGISTRAR", &addr);
    std::env::set_var("RSPLIB_TRANSPORT", "tcp");

    let pool = b"BenchPool";
    println!(
        "rspHandleResolution through rspregistrar on loopback TCP ({} ms each)",
        budget.as_millis()
    );
    println!("{:<36} {:>14}", "mode", "calls/s");
    for (mode, cache_us) in [
        ("from the PU cache (5 s entries)", 5_000_000u64),
        ("cache disabled", 0),
    ] {
        let mut tags = [
            TagItem {
                Tag: TAG_RspLib_CacheElementTimeout,
                Data: cache_us as _,
            },
            TagItem {
                Tag: TAG_DONE,
                Data: 0,
            },
        ];
        unsafe {
            assert_eq!(rspInitialize(tags.as_mut_ptr()), RSPERR_OKAY);
            // Three PEs registered by this very process.
            let mut addrs: Vec<sockaddr_union> = (0..3)
                .map(|i| {
                    sockaddr_union::from_socket_addr(
                        &format!("127.0.0.1:{}", 7000 + i).parse().unwrap(),
                    )
                })
                .collect();
            for a in addrs.iter_mut() {
                let mut eai = EndpointAddressInfo {
                    ai_family: libc::AF_INET,
                    ai_socktype: libc::SOCK_STREAM,
                    ai_protocol: libc::IPPROTO_TCP,
                    ai_addrlen: std::mem::size_of::<sockaddr_union>(),
                    ai_addrs: 1,
                    ai_addr: a,
                    ai_next: std::ptr::null_mut(),
                    ai_pe_id: 0,
                };
                assert_eq!(
                    rspRegister(pool.as_ptr(), pool.len(), &mut eai, std::ptr::null_mut()),
                    RSPERR_OKAY
                );
            }
            let r = rate(budget, || {
                let mut eai: *mut EndpointAddressInfo = std::ptr::null_mut();
                let rc =
                    rspHandleResolution(pool.as_ptr(), pool.len(), &mut eai, std::ptr::null_mut());
                assert_eq!(rc, RSPERR_OKAY);
                rspFreeEndpointAddressArray(eai);
            });
            println!("{mode:<36} {r:>14.0}");
            rspCleanUp();
        }
    }
    let _ = reg.kill();
    let _ = reg.wait();
}
