//! One small process-wide logger used by the registrar and the library: a level (rsplib's 0–9:
//! 0 quiet, 1 errors, 2 warnings, 3 notices — the registrar's default, registrations and
//! removals — 4 actions, 5–9 verbose), and a target (stderr or a file, truncated or appended;
//! [`reopen`] opens the file again after logrotate moved it).
//!
//! A line reads `2026-12-02 13:17:15.123456 NOTICE registrar: text`: local date and time with
//! microseconds (the C library's `localtime_r`, so the system's time zone), the level's name,
//! the component, the text. Under systemd (stderr is the journal stream named by
//! `$JOURNAL_STREAM`) a line is `<5>registrar: text` instead: the journal stamps it itself and
//! reads the syslog priority from the prefix. `-logcolor=on` colours lines by level.
//!
//! The level and the lock are shared with C programs (`loglevel.h`): the level is the C
//! variable `gLogLevel`, and every write holds [`LOG_MUTEX`] (`gLogMutex`), the recursive lock
//! that a C program's `LOG_*` blocks and `loggingMutexLock` take too, so that the library's
//! lines and the program's never interleave.

use std::cell::UnsafeCell;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use crate::ffi::threadsafety::ThreadSafety;

/// The level; C programs read and set it as `unsigned int gLogLevel` (`loglevel.h`), whose
/// `LOG_*` blocks compare it with their `LOGLEVEL_*`.
#[export_name = "gLogLevel"]
static LEVEL: AtomicU32 = AtomicU32::new(2);
static COLOR: AtomicBool = AtomicBool::new(false);
static TARGET: Mutex<Option<(File, PathBuf)>> = Mutex::new(None);
/// Whether lines wait in [`PENDING`] for [`flush`] (see [`set_batched`]).
static BATCHED: AtomicBool = AtomicBool::new(false);
/// Lines logged while batching, not yet written (taken under [`LOG_MUTEX`], after [`TARGET`]).
static PENDING: Mutex<Vec<u8>> = Mutex::new(Vec::new());
/// Batched lines are written once they reach this many bytes, whether or not `flush` comes.
const BATCH_MAX: usize = 64 * 1024;
static COMPONENT: Mutex<&'static str> = Mutex::new("rsplib");

pub const ERROR: u32 = 1;
pub const WARNING: u32 = 2;
/// rsplib's "note" level (3): what an operator wants by default.
pub const ACTION: u32 = 3;
pub const VERBOSE: u32 = 5;

/// The logging lock: a recursive pthread mutex in the layout of `struct ThreadSafety`, exported
/// to C as `gLogMutex` (so `threadSafetyLock(&gLogMutex)` and `loggingMutexLock()` take the
/// same lock). Every write to the log holds it.
#[repr(transparent)]
pub struct LogMutex(UnsafeCell<ThreadSafety>);

// SAFETY: the cell is only used through pthread_mutex_lock/unlock, which synchronise.
unsafe impl Sync for LogMutex {}

#[export_name = "gLogMutex"]
pub static LOG_MUTEX: LogMutex = LogMutex(UnsafeCell::new(ThreadSafety {
    Mutex: libc::PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP,
    Name: mutex_name(b"gLogMutex"),
}));

const fn mutex_name(name: &[u8]) -> [libc::c_char; 32] {
    let mut out = [0; 32];
    let mut i = 0;
    while i < name.len() && i < 31 {
        out[i] = name[i] as libc::c_char;
        i += 1;
    }
    out
}

impl LogMutex {
    fn raw(&self) -> *mut libc::pthread_mutex_t {
        // SAFETY: a field address inside the static cell; no reference is made.
        unsafe { &raw mut (*self.0.get()).Mutex }
    }

    /// Takes the lock (again, if this thread holds it already).
    pub fn lock_raw(&self) {
        // SAFETY: a statically initialised recursive mutex.
        unsafe { libc::pthread_mutex_lock(self.raw()) };
    }

    /// Takes the lock if no other thread holds it.
    pub fn try_lock_raw(&self) -> bool {
        // SAFETY: as lock_raw.
        unsafe { libc::pthread_mutex_trylock(self.raw()) == 0 }
    }

    /// Releases the lock once; a thread that does not hold it changes nothing (a recursive
    /// mutex refuses with EPERM).
    pub fn unlock_raw(&self) {
        // SAFETY: as lock_raw.
        unsafe { libc::pthread_mutex_unlock(self.raw()) };
    }
}

/// Holds [`LOG_MUTEX`] until dropped (in the thread that took it).
pub struct LogLock(PhantomData<*const ()>);

impl Drop for LogLock {
    fn drop(&mut self) {
        LOG_MUTEX.unlock_raw();
    }
}

/// Takes the logging lock until the returned guard is dropped (recursive).
pub fn lock() -> LogLock {
    LOG_MUTEX.lock_raw();
    LogLock(PhantomData)
}

/// Sets the level (0 = nothing).
pub fn set_level(level: u32) {
    LEVEL.store(level, Ordering::Relaxed);
}

/// The current level.
pub fn level() -> u32 {
    LEVEL.load(Ordering::Relaxed)
}

/// True if messages of `level` are written.
pub fn enabled(level: u32) -> bool {
    level != 0 && level <= self::level()
}

/// ANSI colours by level on or off.
pub fn set_color(on: bool) {
    COLOR.store(on, Ordering::Relaxed);
}

/// The component named in lines logged with [`log`] ("rsplib" unless a program says else).
pub fn set_component(name: &'static str) {
    *COMPONENT.lock() = name;
}

/// Batching on or off. On, lines are kept and written together by [`flush`] (or once 64 KiB
/// wait): one write for many lines. The registrar, which logs from one thread only, turns it
/// on; its transports flush before every socket write and its event loop before it waits, so
/// a line is written before anything the registrar sends after logging it, and before the
/// registrar sleeps. A registration storm at the default level then costs one log write per
/// batch of answers instead of one per PE. Off (the default, and what C programs get), every
/// line is written at once; turning it off writes what was kept.
pub fn set_batched(on: bool) {
    BATCHED.store(on, Ordering::Relaxed);
    if !on {
        flush();
    }
}

/// Writes the lines kept by batching.
pub fn flush() {
    if PENDING.lock().is_empty() {
        return;
    }
    let _lock = lock();
    flush_to(&mut TARGET.lock());
}

/// [`flush`] unless another thread is in the logger (for a panic hook, which may run in the
/// middle of a log call of its own thread too: then it must not wait for a lock it holds).
pub fn flush_if_free() {
    if !LOG_MUTEX.try_lock_raw() {
        return;
    }
    let _lock = LogLock(PhantomData);
    if let Some(mut target) = TARGET.try_lock() {
        if let Some(mut pending) = PENDING.try_lock() {
            write_pending(&mut target, &mut pending);
        }
    }
}

/// Writes the kept lines to `target`; the caller holds [`LOG_MUTEX`] and `target`'s lock.
fn flush_to(target: &mut Option<(File, PathBuf)>) {
    write_pending(target, &mut PENDING.lock());
}

fn write_pending(target: &mut Option<(File, PathBuf)>, pending: &mut Vec<u8>) {
    if pending.is_empty() {
        return;
    }
    let result = match target.as_mut() {
        Some((f, _)) => f.write_all(pending),
        None => io::stderr().write_all(pending),
    };
    // As for a single line: what cannot be written is dropped.
    drop(result);
    pending.clear();
    if pending.capacity() > 2 * BATCH_MAX {
        pending.shrink_to(BATCH_MAX);
    }
}

/// Logs to `path` from now on (appending or truncating); `None` = stderr. Kept lines go to the
/// old target first.
pub fn set_file(path: Option<(&Path, bool)>) -> io::Result<()> {
    let file = match path {
        None => None,
        Some((p, append)) => Some((open(p, append)?, p.to_path_buf())),
    };
    let _lock = lock();
    let mut target = TARGET.lock();
    flush_to(&mut target);
    *target = file;
    Ok(())
}

fn open(p: &Path, append: bool) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(p)
}

/// Opens the log file again under its name, appending (SIGHUP after logrotate). Nothing to do
/// when logging goes to stderr.
pub fn reopen() -> io::Result<()> {
    let _lock = lock();
    let mut target = TARGET.lock();
    flush_to(&mut target);
    if let Some((file, path)) = target.as_mut() {
        *file = open(path, true)?;
    }
    Ok(())
}

/// Microseconds since the Unix epoch (wall clock).
pub fn wall_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The name printed for a level.
pub fn level_name(level: u32) -> &'static str {
    match level {
        0 | 1 => "ERROR",
        2 => "WARNING",
        3 => "NOTICE",
        4 => "ACTION",
        _ => "VERBOSE",
    }
}

/// The syslog priority of a level (the journal's `<N>` prefix).
pub fn syslog_priority(level: u32) -> u8 {
    match level {
        0 | 1 => 3,
        2 => 4,
        3 => 5,
        4 => 6,
        _ => 7,
    }
}

fn color_of(level: u32) -> &'static str {
    match level {
        0 | 1 => "\x1b[1;31m",
        2 => "\x1b[33m",
        3 => "\x1b[32m",
        4 => "\x1b[36m",
        _ => "\x1b[2m",
    }
}

/// `micros` since the epoch as local `YYYY-MM-DD hh:mm:ss.uuuuuu`. The date and time of the
/// last second converted are kept: lines come many to a second, and the C library's
/// conversion cost a line more than all the rest of its formatting (a registration storm).
pub fn local_time(micros: u64) -> String {
    static LAST: Mutex<Option<(u64, String)>> = Mutex::new(None);
    let secs = micros / 1_000_000;
    let mut last = LAST.lock();
    if last.as_ref().is_none_or(|(s, _)| *s != secs) {
        let Some(text) = local_second(secs) else {
            return format!("@{secs}.{:06}", micros % 1_000_000);
        };
        *last = Some((secs, text));
    }
    let (_, text) = last.as_ref().expect("set above");
    format!("{text}.{:06}", micros % 1_000_000)
}

/// `secs` since the epoch as local `YYYY-MM-DD hh:mm:ss`.
fn local_second(secs: u64) -> Option<String> {
    let t = secs as libc::time_t;
    // SAFETY: localtime_r fills the zeroed struct from a valid time_t (glibc reads the time
    // zone on first use).
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return None;
        }
        tm
    };
    Some(format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
    ))
}

/// The time stamp at the start of a log line (as [`format_line`] writes it, local time) as
/// microseconds since the epoch; `None` for a line without one.
pub fn line_time(line: &str) -> Option<u64> {
    let stamp = line.get(..26)?;
    let b = stamp.as_bytes();
    if b[4] != b'-' || b[7] != b'-' || b[10] != b' ' || b[13] != b':' || b[19] != b'.' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| stamp.get(r)?.parse::<i32>().ok();
    // SAFETY: mktime reads and normalizes a zeroed, filled-in struct.
    let secs = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        tm.tm_year = n(0..4)? - 1900;
        tm.tm_mon = n(5..7)? - 1;
        tm.tm_mday = n(8..10)?;
        tm.tm_hour = n(11..13)?;
        tm.tm_min = n(14..16)?;
        tm.tm_sec = n(17..19)?;
        tm.tm_isdst = -1;
        libc::mktime(&mut tm)
    };
    let micros = u64::try_from(n(20..26)?).ok()?;
    Some(u64::try_from(secs).ok()? * 1_000_000 + micros)
}

/// Whether stderr is the journal's stream (systemd sets `JOURNAL_STREAM=dev:inode` of it).
fn stderr_is_journal() -> bool {
    static JOURNAL: OnceLock<bool> = OnceLock::new();
    *JOURNAL.get_or_init(|| {
        let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
            return false;
        };
        let v = v.to_string_lossy();
        let Some((dev, ino)) = v.split_once(':') else {
            return false;
        };
        // SAFETY: fstat on descriptor 2 into a zeroed struct.
        let st = unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            if libc::fstat(2, &mut st) != 0 {
                return false;
            }
            st
        };
        dev.parse::<u64>().ok() == Some(st.st_dev) && ino.parse::<u64>().ok() == Some(st.st_ino)
    })
}

/// One line as written: `journal` = for the journal (priority prefix, no stamp).
pub fn format_line(
    micros: u64,
    level: u32,
    component: &str,
    text: &str,
    journal: bool,
    color: bool,
) -> String {
    if journal {
        return format!("<{}>{component}: {text}\n", syslog_priority(level));
    }
    let line = format!(
        "{} {:<7} {component}: {text}",
        local_time(micros),
        level_name(level)
    );
    if color {
        format!("{}{line}\x1b[0m\n", color_of(level))
    } else {
        format!("{line}\n")
    }
}

/// Writes one line of the process's component if `level` is enabled.
pub fn log(level: u32, text: &str) {
    if !enabled(level) {
        return;
    }
    let component = *COMPONENT.lock();
    log_from(component, level, text);
}

/// Writes one line of `component` if `level` is enabled.
pub fn log_from(component: &str, level: u32, text: &str) {
    if !enabled(level) {
        return;
    }
    let color = COLOR.load(Ordering::Relaxed);
    let _lock = lock();
    let mut target = TARGET.lock();
    let journal = target.is_none() && stderr_is_journal();
    let line = format_line(wall_micros(), level, component, text, journal, color);
    if BATCHED.load(Ordering::Relaxed) {
        let mut pending = PENDING.lock();
        pending.extend_from_slice(line.as_bytes());
        if pending.len() >= BATCH_MAX {
            write_pending(&mut target, &mut pending);
        }
        return;
    }
    let result = match target.as_mut() {
        Some((f, _)) => f.write_all(line.as_bytes()),
        None => io::stderr().write_all(line.as_bytes()),
    };
    // A log line that cannot be written is dropped: logging must never fail the caller.
    drop(result);
}

/// The size of the log file, or `None` when logging goes to stderr.
pub fn file_len() -> Option<u64> {
    TARGET
        .lock()
        .as_ref()
        .map(|(f, _)| f.metadata().map(|m| m.len()).unwrap_or(0))
}

/// The descriptor of the log file, or `None` when logging goes to stderr. It stays the log
/// file's while the caller holds [`lock`] (the target only changes under it).
pub fn file_fd() -> Option<RawFd> {
    TARGET.lock().as_ref().map(|(f, _)| f.as_raw_fd())
}

/// Writes `text` as is (no timestamp, whatever the level) to the log target.
pub fn write_raw(text: &str) {
    let _lock = lock();
    let mut target = TARGET.lock();
    flush_to(&mut target);
    let result = match target.as_mut() {
        Some((f, _)) => f.write_all(text.as_bytes()).and_then(|_| f.flush()),
        None => io::stderr().write_all(text.as_bytes()),
    };
    drop(result);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_local_time_level_and_component() {
        let line = format_line(1_796_204_355_003_114, 3, "registrar", "hello", false, false);
        // 2026-12-01 or -02 depending on the time zone; the layout is fixed.
        let (stamp, rest) = line.split_at(26);
        assert!(stamp.starts_with("2026-1"), "{line}");
        assert_eq!(&stamp[10..11], " ");
        assert!(stamp.ends_with(".003114"), "{line}");
        assert_eq!(rest, " NOTICE  registrar: hello\n");
        assert_eq!(line_time(&line), Some(1_796_204_355_003_114), "read back");
        assert_eq!(line_time("[1.2] old style"), None);
        assert_eq!(
            format_line(0, 2, "registrar", "w", true, false),
            "<4>registrar: w\n"
        );
        let colored = format_line(0, 1, "x", "e", false, true);
        assert!(colored.starts_with("\x1b[1;31m") && colored.ends_with("\x1b[0m\n"));
    }

    #[test]
    fn the_kept_second_serves_only_that_second() {
        let first = 1_796_204_355_000_001;
        let a = local_time(first);
        let b = local_time(first + 999_998);
        let c = local_time(first + 999_999);
        assert_eq!(a[..19], b[..19]);
        assert_ne!(b[..19], c[..19]);
        for (text, micros) in [(&a, first), (&b, first + 999_998), (&c, first + 999_999)] {
            assert_eq!(line_time(text), Some(micros), "{text}");
        }
    }

    #[test]
    fn levels_map_to_syslog_priorities() {
        let p: Vec<u8> = (1..=9).map(syslog_priority).collect();
        assert_eq!(p, [3, 4, 5, 6, 7, 7, 7, 7, 7]);
        assert_eq!(level_name(9), "VERBOSE");
    }
}
