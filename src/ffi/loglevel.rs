//! `loglevel.h`: the logging options of classic programs, on top of the process-wide logger
//! (`crate::logging`), which the library's own messages use too.
//!
//! The classic program's view of that log, all provided:
//! * `gLogLevel` is the logger's level itself, so `-loglevel=`/`-logquiet` and a program's own
//!   assignment act on the `LOG_*` blocks and on the library's lines alike.
//! * `stdlog` (`*gStdLog`) is a `FILE*` onto the log's destination: the C library's `stderr`
//!   by default; with `-logfile=`/`-logappend=` a line-buffered stream of ours on a duplicate of
//!   the log file's descriptor. There is one such stream for the process's life: a later log
//!   file is `dup2`ed onto its descriptor and `finishLogging` puts stderr there, so a `FILE*` a
//!   program kept stays usable. `-logquiet` leaves stdlog as it is (valid); the blocks are
//!   skipped because `gLogLevel` is 0.
//! * `gLogMutex` is the logger's recursive lock (`crate::logging::LOG_MUTEX`, a `struct
//!   ThreadSafety`): `loggingMutexLock`, the `LOG_*` blocks, `logerror` and every line the
//!   library writes hold it, so the program's and the library's lines never interleave.
//! * The `LOG_*` macros of the header open a block run only when `gLogLevel` reaches their level;
//!   `loggingBlockBegin` (ours, behind `LOG_BEGIN`) takes the lock and writes the library's time
//!   stamp and the prefix, `loggingBlockEnd` (`LOG_END`) flushes stdlog and releases the lock,
//!   `loggingBlockEndFatal` (`LOG_END_FATAL`) also writes a last line and aborts the program —
//!   the macro aborts even when the block was skipped. `logerror(text)` is `loggingError(text,
//!   errno)`: `text: strerror(errno)`.
//! * `gLogColorMode` is `-logcolor=`: with it on (the default) `setLogColor` and the blocks
//!   colour their output when stdlog is a terminal; `-logcolor=on` colours a log file too. The
//!   library's own lines are coloured only with `-logcolor=on`.
#![allow(non_snake_case)]

use std::path::Path;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use libc::{c_char, c_int, c_uint, FILE};

use super::guard::{guard, try_cstr};
use crate::logging::{self, LOG_MUTEX};

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

/// `bool gLogColorMode`: colours on (`-logcolor=`). Declared by hand in `loglevel.h.in`:
/// cbindgen:ignore
#[export_name = "gLogColorMode"]
static COLOR: AtomicBool = AtomicBool::new(true);

/// `-logcolor=on` was given: colour stdlog even when it is not a terminal.
static COLOR_FORCED: AtomicBool = AtomicBool::new(false);

extern "C" {
    /// The C library's `stderr` variable.
    static mut stderr: *mut FILE;
}

/// The stream on the log file (null until the first `-logfile=`/`-logappend=`).
static FILE_STREAM: AtomicPtr<FILE> = AtomicPtr::new(ptr::null_mut());

/// `FILE** gStdLog`, where `stdlog` is read: the C library's `stderr` variable or
/// [`FILE_STREAM`]. Declared by hand in `loglevel.h.in`:
/// cbindgen:ignore
#[export_name = "gStdLog"]
static STDLOG: AtomicPtr<*mut FILE> = AtomicPtr::new(&raw mut stderr);

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
                let _lock = logging::lock();
                let opened = logging::set_file(Some((Path::new(path), append))).is_ok();
                retarget_stdlog();
                opened
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
                COLOR_FORCED.store(c, Ordering::Relaxed);
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
        let _lock = logging::lock();
        let _ = logging::set_file(None);
        retarget_stdlog();
    })
}

/// Points `gStdLog` at the log's current destination (see the module text). Called with the
/// logging lock held, after the logger's target changed.
fn retarget_stdlog() {
    let stream = FILE_STREAM.load(Ordering::Acquire);
    // SAFETY: descriptor and stream calls on our own stream and on descriptors that are open
    // while the logging lock is held.
    unsafe {
        let Some(fd) = logging::file_fd() else {
            if !stream.is_null() {
                libc::fflush(stream);
                libc::dup3(2, libc::fileno(stream), libc::O_CLOEXEC);
            }
            STDLOG.store(&raw mut stderr, Ordering::Release);
            return;
        };
        if stream.is_null() {
            let own = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3);
            let new = if own < 0 {
                ptr::null_mut()
            } else {
                libc::fdopen(own, c"w".as_ptr())
            };
            if new.is_null() {
                if own >= 0 {
                    libc::close(own);
                }
                STDLOG.store(&raw mut stderr, Ordering::Release);
                return;
            }
            libc::setvbuf(new, ptr::null_mut(), libc::_IOLBF, 0);
            FILE_STREAM.store(new, Ordering::Release);
        } else {
            libc::fflush(stream);
            if libc::dup3(fd, libc::fileno(stream), libc::O_CLOEXEC) < 0 {
                STDLOG.store(&raw mut stderr, Ordering::Release);
                return;
            }
        }
        STDLOG.store(FILE_STREAM.as_ptr(), Ordering::Release);
    }
}

/// The current `stdlog`.
fn stdlog() -> *mut FILE {
    // SAFETY: gStdLog points to `stderr` or FILE_STREAM (or wherever a program pointed it).
    unsafe { *STDLOG.load(Ordering::Acquire) }
}

/// Writes `bytes` to `stream` (nothing for NULL).
fn put(stream: *mut FILE, bytes: &[u8]) {
    if !stream.is_null() && !bytes.is_empty() {
        // SAFETY: an open stream (stdlog) and a readable buffer.
        unsafe { libc::fwrite(bytes.as_ptr().cast(), 1, bytes.len(), stream) };
    }
}

fn flush(stream: *mut FILE) {
    if !stream.is_null() {
        // SAFETY: an open stream (stdlog).
        unsafe { libc::fflush(stream) };
    }
}

/// The ANSI SGR code of a classic colour number (0–7 normal, 9–15 bright).
fn sgr(color: c_uint) -> u32 {
    30 + color % 8 + if color > 8 { 60 } else { 0 }
}

/// Whether colours are written to `stream`: colour mode on, and `-logcolor=on` given or the
/// stream a terminal.
fn colors_on(stream: *mut FILE) -> bool {
    COLOR.load(Ordering::Relaxed)
        && !stream.is_null()
        && (COLOR_FORCED.load(Ordering::Relaxed)
            // SAFETY: an open stream (stdlog).
            || unsafe { libc::isatty(libc::fileno(stream)) } == 1)
}

/// Switches the terminal colour of stdlog (ANSI: colours 0–7 normal, 9–15 bright) when colours
/// are on for it (see the module text); nothing otherwise.
#[no_mangle]
pub extern "C" fn setLogColor(color: c_uint) {
    guard("setLogColor", || {
        let _lock = logging::lock();
        let stream = stdlog();
        if colors_on(stream) {
            put(stream, format!("\x1b[{}m", sgr(color)).as_bytes());
            flush(stream);
        }
    })
}

/// Takes the process-wide logging lock (recursive: a thread may take it again).
#[no_mangle]
pub extern "C" fn loggingMutexLock() {
    guard("loggingMutexLock", || LOG_MUTEX.lock_raw())
}

/// Releases the logging lock once; a thread that does not hold it changes nothing.
#[no_mangle]
pub extern "C" fn loggingMutexUnlock() {
    guard("loggingMutexUnlock", || LOG_MUTEX.unlock_raw())
}

/// Opens a `LOG_*` block (`LOG_BEGIN(prefix, c1, c2)`): takes the logging lock and writes the
/// time stamp (in colour `c1`) and `prefix` (in colour `c2`; NULL = none) to stdlog.
///
/// # Safety
/// `prefix` must be NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn loggingBlockBegin(prefix: *const c_char, c1: c_uint, c2: c_uint) {
    guard("loggingBlockBegin", || {
        LOG_MUTEX.lock_raw();
        let stream = stdlog();
        let color = colors_on(stream);
        let mut text = Vec::with_capacity(64);
        if color {
            text.extend_from_slice(format!("\x1b[{}m", sgr(c1)).as_bytes());
        }
        text.extend_from_slice(logging::local_time(logging::wall_micros()).as_bytes());
        text.push(b' ');
        if color {
            text.extend_from_slice(format!("\x1b[{}m", sgr(c2)).as_bytes());
        }
        text.extend_from_slice(try_cstr(prefix).unwrap_or(b""));
        put(stream, &text);
    })
}

/// Closes a `LOG_*` block (`LOG_END`): resets the colour, flushes stdlog, releases the lock.
#[no_mangle]
pub extern "C" fn loggingBlockEnd() {
    guard("loggingBlockEnd", || {
        let stream = stdlog();
        if colors_on(stream) {
            put(stream, b"\x1b[0m");
        }
        flush(stream);
        LOG_MUTEX.unlock_raw();
    })
}

/// Closes a `LOG_*` block as `LOG_END_FATAL`: a last line saying the program aborts, then as
/// `loggingBlockEnd`, then `abort()`.
#[no_mangle]
pub extern "C" fn loggingBlockEndFatal() -> ! {
    guard("loggingBlockEndFatal", || {
        put(stdlog(), b"Fatal error: aborting the program.\n");
    });
    loggingBlockEnd();
    std::process::abort()
}

/// `logerror(text)`: writes `text: <the message of error>` and a newline to stdlog, under the
/// logging lock (`text` NULL: the message alone).
///
/// # Safety
/// `text` must be NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn loggingError(text: *const c_char, error: c_int) {
    guard("loggingError", || {
        let _lock = logging::lock();
        let stream = stdlog();
        let mut line = Vec::with_capacity(128);
        if let Some(t) = try_cstr(text) {
            line.extend_from_slice(t);
            line.extend_from_slice(b": ");
        }
        line.extend_from_slice(&error_text(error));
        line.push(b'\n');
        put(stream, &line);
        flush(stream);
    })
}

/// The C library's message for an errno value (`strerror_r`).
fn error_text(error: c_int) -> Vec<u8> {
    let mut buf = [0u8; 256];
    // SAFETY: strerror_r writes a NUL-terminated message of at most buf.len() bytes.
    let rc = unsafe { libc::strerror_r(error, buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return format!("Unknown error {error}").into_bytes();
    }
    let n = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    buf[..n].to_vec()
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

    /// Whether another thread could take the logging lock now.
    fn free_for_others() -> bool {
        std::thread::spawn(|| {
            let got = LOG_MUTEX.try_lock_raw();
            if got {
                LOG_MUTEX.unlock_raw();
            }
            got
        })
        .join()
        .unwrap()
    }

    #[test]
    fn colors_and_the_recursive_lock() {
        assert_eq!(sgr(0), 30);
        assert_eq!(sgr(1), 31);
        assert_eq!(sgr(9), 91);
        assert_eq!(sgr(12), 94);
        assert!(!colors_on(ptr::null_mut()));
        loggingMutexLock();
        loggingMutexLock();
        loggingMutexUnlock();
        assert!(!free_for_others());
        loggingMutexUnlock();
        assert!(free_for_others());
        loggingMutexUnlock(); // not held: ignored
        assert!(free_for_others());
    }

    #[test]
    fn error_texts_and_the_default_stdlog() {
        assert_eq!(error_text(libc::ENOENT), b"No such file or directory");
        assert!(!error_text(-12345).is_empty());
        assert_eq!(STDLOG.load(Ordering::Relaxed), &raw mut stderr);
    }
}
