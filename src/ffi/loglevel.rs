//! `loglevel.h`: the logging options of classic programs, on top of the process-wide logger
//! (`crate::logging`), which the library's own messages use too.
//!
//! `-logcolor=on|off` switches `setLogColor` on and off; the library's own log lines are plain.
//! `loggingMutexLock`/`loggingMutexUnlock` are the classic programs' lock around multi-line
//! output (recursive, process-wide).
//!
//! Not provided: the variables `gLogLevel`, `gStdLog` and `gLogMutex` and the `LOG_*` macros
//! built on them (our log is not a C `FILE*`); no classic demo used them.
#![allow(non_snake_case)]

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use libc::{c_char, c_uint};
use parking_lot::lock_api::RawReentrantMutex;
use parking_lot::{RawMutex, RawThreadId};

use super::guard::{guard, try_cstr};
use crate::logging;

pub const LOGLEVEL_ERROR: libc::c_uint = 1;
pub const LOGLEVEL_WARNING: libc::c_uint = 2;
pub const LOGLEVEL_NOTE: libc::c_uint = 3;
pub const LOGLEVEL_ACTION: libc::c_uint = 4;
pub const LOGLEVEL_VERBOSE1: libc::c_uint = 5;
pub const LOGLEVEL_VERBOSE2: libc::c_uint = 6;
pub const LOGLEVEL_VERBOSE3: libc::c_uint = 7;
pub const LOGLEVEL_VERBOSE4: libc::c_uint = 8;
pub const LOGLEVEL_VERBOSE5: libc::c_uint = 9;
/// The original's mutex tracing; here the same as `LOGLEVEL_VERBOSE5`.
pub const LOGLEVEL_MUTEX: libc::c_uint = 10;
/// The highest level `-loglevel=` accepts.
pub const MAX_LOGLEVEL: libc::c_uint = 10;

static COLOR: AtomicBool = AtomicBool::new(true);

/// The lock of `loggingMutexLock`/`loggingMutexUnlock`.
static LOG_MUTEX: RawReentrantMutex<RawMutex, RawThreadId> = RawReentrantMutex::INIT;

/// One logging option, as classic programs pass their `-log…` arguments.
#[derive(Debug, PartialEq, Eq)]
enum LogOption<'a> {
    File { path: &'a str, append: bool },
    Quiet,
    Level(u32),
    Color(bool),
}

fn parse(arg: &str) -> Option<LogOption<'_>> {
    if let Some(p) = arg.strip_prefix("-logfile=") {
        return (!p.is_empty()).then_some(LogOption::File {
            path: p,
            append: false,
        });
    }
    if let Some(p) = arg.strip_prefix("-logappend=") {
        return (!p.is_empty()).then_some(LogOption::File {
            path: p,
            append: true,
        });
    }
    if arg == "-logquiet" {
        return Some(LogOption::Quiet);
    }
    if let Some(l) = arg.strip_prefix("-loglevel=") {
        return l
            .parse::<u32>()
            .ok()
            .filter(|l| *l <= MAX_LOGLEVEL)
            .map(LogOption::Level);
    }
    if let Some(c) = arg.strip_prefix("-logcolor=") {
        return match c {
            "on" => Some(LogOption::Color(true)),
            "off" => Some(LogOption::Color(false)),
            _ => None,
        };
    }
    None
}

/// Applies one `-logfile=F`, `-logappend=F`, `-logquiet`, `-loglevel=N` (0–10) or
/// `-logcolor=on|off` argument. False for NULL, any other argument, an invalid value or a log
/// file that cannot be opened (classic programs then exit).
///
/// # Safety
/// `parameter` must be NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn initLogging(parameter: *const c_char) -> bool {
    guard("initLogging", || {
        let Some(arg) = try_cstr(parameter).and_then(|s| std::str::from_utf8(s).ok()) else {
            return false;
        };
        match parse(arg) {
            Some(LogOption::File { path, append }) => {
                logging::set_file(Some((Path::new(path), append))).is_ok()
            }
            Some(LogOption::Quiet) => {
                logging::set_level(0);
                true
            }
            Some(LogOption::Level(l)) => {
                logging::set_level(l);
                true
            }
            Some(LogOption::Color(c)) => {
                COLOR.store(c, Ordering::Relaxed);
                logging::set_color(c);
                true
            }
            None => false,
        }
    })
}

/// Starts logging: a separator line if the log file already has content, and a start note
/// at level ≥ 3 (`LOGLEVEL_NOTE`).
#[no_mangle]
pub extern "C" fn beginLogging() {
    guard("beginLogging", || {
        if logging::file_len().is_some_and(|n| n > 0) {
            logging::write_raw(&format!("\n{}\n\n", "#".repeat(78)));
        }
        logging::log(
            logging::ACTION,
            &format!("Logging started, log level {}", logging::level()),
        );
    })
}

/// Ends logging: a note at level ≥ 3, then the log file (if any) is closed and later messages
/// go to stderr.
#[no_mangle]
pub extern "C" fn finishLogging() {
    guard("finishLogging", || {
        logging::log(logging::ACTION, "Logging finished");
        let _ = logging::set_file(None);
    })
}

/// Switches the terminal colour of the log (ANSI: colours 0–7 normal, 9–15 bright; 0 resets
/// to the default) when `-logcolor` is on (the default); nothing when it is off.
#[no_mangle]
pub extern "C" fn setLogColor(color: c_uint) {
    guard("setLogColor", || {
        if let Some(code) = color_code(color) {
            logging::write_raw(&format!("\x1b[{code}m"));
        }
    })
}

/// The SGR code `setLogColor` writes, or `None` with colours off.
fn color_code(color: c_uint) -> Option<u32> {
    COLOR
        .load(Ordering::Relaxed)
        .then(|| 30 + color % 8 + if color > 8 { 60 } else { 0 })
}

/// Takes the process-wide logging lock (recursive: a thread may take it again).
#[no_mangle]
pub extern "C" fn loggingMutexLock() {
    guard("loggingMutexLock", || LOG_MUTEX.lock())
}

/// Releases the logging lock once; a thread that does not hold it changes nothing.
#[no_mangle]
pub extern "C" fn loggingMutexUnlock() {
    guard("loggingMutexUnlock", || {
        if LOG_MUTEX.is_owned_by_current_thread() {
            // SAFETY: this thread holds the lock (checked just above).
            unsafe { LOG_MUTEX.unlock() }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_classic_options() {
        assert_eq!(
            parse("-logfile=/tmp/x"),
            Some(LogOption::File {
                path: "/tmp/x",
                append: false
            })
        );
        assert_eq!(
            parse("-logappend=y"),
            Some(LogOption::File {
                path: "y",
                append: true
            })
        );
        assert_eq!(parse("-logquiet"), Some(LogOption::Quiet));
        assert_eq!(parse("-loglevel=10"), Some(LogOption::Level(10)));
        assert_eq!(parse("-loglevel=11"), None);
        assert_eq!(parse("-loglevel=x"), None);
        assert_eq!(parse("-logcolor=off"), Some(LogOption::Color(false)));
        assert_eq!(parse("-logcolor=blue"), None);
        assert_eq!(parse("-logfile="), None);
        assert_eq!(parse("-registrar=1.2.3.4"), None);
    }

    #[test]
    fn colors_and_the_recursive_lock() {
        assert_eq!(color_code(0), Some(30));
        assert_eq!(color_code(1), Some(31));
        assert_eq!(color_code(9), Some(91));
        assert_eq!(color_code(12), Some(94));
        loggingMutexLock();
        loggingMutexLock();
        loggingMutexUnlock();
        assert!(LOG_MUTEX.is_locked());
        loggingMutexUnlock();
        assert!(!LOG_MUTEX.is_locked());
        loggingMutexUnlock(); // not held: ignored
        assert!(!LOG_MUTEX.is_locked());
    }
}
