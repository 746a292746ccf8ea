//! `randomizer.h`: uniform random numbers from the kernel (`getrandom`), with a time-seeded
//! xorshift fallback, and an exponential variate.
#![allow(non_snake_case)]

use std::sync::atomic::{AtomicU64, Ordering};

use super::guard::guard;
use crate::logging;

static FALLBACK: AtomicU64 = AtomicU64::new(0);

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // SAFETY: getrandom fills at most N bytes of b.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), N, libc::GRND_NONBLOCK) };
    if n == N as isize {
        return b;
    }
    // xorshift64*, seeded from the clock and the pid.
    let mut x = FALLBACK.load(Ordering::Relaxed);
    if x == 0 {
        x = logging::wall_micros() ^ (u64::from(std::process::id()) << 32) | 1;
    }
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    FALLBACK.store(x, Ordering::Relaxed);
    let v = x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_ne_bytes();
    b.copy_from_slice(&v[..N]);
    b
}

/// A uniform random 8-bit number.
#[no_mangle]
pub extern "C" fn random8() -> u8 {
    guard("random8", || random_bytes::<1>()[0])
}

/// A uniform random 16-bit number.
#[no_mangle]
pub extern "C" fn random16() -> u16 {
    guard("random16", || u16::from_ne_bytes(random_bytes()))
}

/// A uniform random 32-bit number.
#[no_mangle]
pub extern "C" fn random32() -> u32 {
    guard("random32", || u32::from_ne_bytes(random_bytes()))
}

/// A uniform random 64-bit number.
#[no_mangle]
pub extern "C" fn random64() -> u64 {
    guard("random64", || u64::from_ne_bytes(random_bytes()))
}

/// An exponentially distributed random number with mean `p` (`-p · ln U`, U uniform in (0,1]).
#[no_mangle]
pub extern "C" fn randomExpDouble(p: f64) -> f64 {
    guard("randomExpDouble", || {
        // 53 random bits → (0, 1].
        let u = ((u64::from_ne_bytes(random_bytes()) >> 11) + 1) as f64 / (1u64 << 53) as f64;
        -p * u.ln()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_mean_is_roughly_p() {
        let n = 20_000;
        let mean: f64 = (0..n).map(|_| randomExpDouble(3.0)).sum::<f64>() / n as f64;
        assert!((mean - 3.0).abs() < 0.2, "{mean}");
        assert!((0..1000).all(|_| randomExpDouble(1.0) >= 0.0));
        assert_eq!(randomExpDouble(0.0), 0.0);
    }

    #[test]
    fn numbers_vary() {
        let a: Vec<u64> = (0..8).map(|_| random64()).collect();
        assert!(a.windows(2).any(|w| w[0] != w[1]));
    }
}
