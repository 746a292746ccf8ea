//! `breakdetector.h`: Ctrl-C detection for the main loops of classic programs. The SIGINT
//! handler is installed only when the program asks (`installBreakDetector`); it just sets a
//! flag. A second Ctrl-C at least 2 s after the first ends the process (the default action).
#![allow(non_snake_case)]

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, Ordering};

use super::ctypes::CBool;
use super::guard::guard;

static DETECTED: AtomicBool = AtomicBool::new(false);
static FIRST_BREAK: AtomicI64 = AtomicI64::new(0);
static INSTALLED_BY: AtomicI32 = AtomicI32::new(0);
static QUIET: AtomicBool = AtomicBool::new(false);
static PRINTED: AtomicBool = AtomicBool::new(false);

/// Seconds needed between the first and a killing second Ctrl-C.
const KILL_AFTER_SECS: i64 = 2;

/// Monotonic seconds (clock_gettime is async-signal-safe).
fn monotonic_secs() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into ts.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec
}

/// The SIGINT handler: async-signal-safe (atomics, clock_gettime, signal, raise only).
extern "C" fn on_sigint(_signal: libc::c_int) {
    let now = monotonic_secs();
    if !DETECTED.swap(true, Ordering::SeqCst) {
        FIRST_BREAK.store(now, Ordering::SeqCst);
    } else if now - FIRST_BREAK.load(Ordering::SeqCst) >= KILL_AFTER_SECS {
        // SAFETY: both are async-signal-safe; the default action ends the process.
        unsafe {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::raise(libc::SIGINT);
        }
    }
}

fn set_sigint(handler: libc::sighandler_t) -> bool {
    // SAFETY: a zeroed sigaction with an empty mask and our handler (or SIG_DFL).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGINT, &sa, std::ptr::null_mut()) == 0
    }
}

/// Installs the SIGINT handler and clears the break flag.
#[no_mangle]
pub extern "C" fn installBreakDetector() {
    guard("installBreakDetector", || {
        DETECTED.store(false, Ordering::SeqCst);
        PRINTED.store(false, Ordering::SeqCst);
        QUIET.store(false, Ordering::SeqCst);
        let handler: extern "C" fn(libc::c_int) = on_sigint;
        if set_sigint(handler as libc::sighandler_t) {
            // SAFETY: getpid cannot fail.
            INSTALLED_BY.store(unsafe { libc::getpid() }, Ordering::SeqCst);
        }
    })
}

/// Restores the default SIGINT action (the break flag keeps its value).
#[no_mangle]
pub extern "C" fn uninstallBreakDetector() {
    guard("uninstallBreakDetector", || {
        if INSTALLED_BY.swap(0, Ordering::SeqCst) != 0 {
            set_sigint(libc::SIG_DFL);
        }
    })
}

/// True once Ctrl-C was pressed (or `sendBreak` called); the first true result prints
/// "*** Break ***" on stderr unless the break was sent quietly.
#[no_mangle]
pub extern "C" fn breakDetected() -> bool {
    guard("breakDetected", || {
        let detected = DETECTED.load(Ordering::SeqCst);
        if detected && !QUIET.load(Ordering::SeqCst) && !PRINTED.swap(true, Ordering::SeqCst) {
            eprintln!("\n*** Break ***");
        }
        detected
    })
}

/// Sends SIGINT to the process that installed the detector, as if Ctrl-C had been pressed;
/// `quiet` (nonzero) suppresses the notice. Without an installed detector only the flag is
/// set (no signal is sent, so the process is not killed).
#[no_mangle]
pub extern "C" fn sendBreak(quiet: CBool) {
    guard("sendBreak", || {
        QUIET.store(quiet != 0, Ordering::SeqCst);
        let pid = INSTALLED_BY.load(Ordering::SeqCst);
        // SAFETY: kill with a pid we recorded (our own process).
        if pid == 0 || unsafe { libc::kill(pid, libc::SIGINT) } != 0 {
            DETECTED.store(true, Ordering::SeqCst);
        }
    })
}
