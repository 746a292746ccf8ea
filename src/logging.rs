//! One small process-wide logger used by the registrar and the library: a level (rsplib's 0–9:
//! 0 quiet, 1 errors, 2 warnings, 3 actions, 5 verbose, 9 everything), and a target (stderr or a
//! file, truncated or appended). Each line starts with a wall-clock timestamp in microseconds,
//! so lines of different processes can be compared.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

static LEVEL: AtomicU32 = AtomicU32::new(2);
static TARGET: Mutex<Option<File>> = Mutex::new(None);

pub const ERROR: u32 = 1;
pub const WARNING: u32 = 2;
pub const ACTION: u32 = 3;
pub const VERBOSE: u32 = 5;

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

/// Logs to `path` from now on (appending or truncating); `None` = stderr.
pub fn set_file(path: Option<(&Path, bool)>) -> io::Result<()> {
    let file = match path {
        None => None,
        Some((p, append)) => Some(
            OpenOptions::new()
                .create(true)
                .write(true)
                .append(append)
                .truncate(!append)
                .open(p)?,
        ),
    };
    *TARGET.lock() = file;
    Ok(())
}

/// Microseconds since the Unix epoch (wall clock).
pub fn wall_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Writes one line if `level` is enabled.
pub fn log(level: u32, text: &str) {
    if !enabled(level) {
        return;
    }
    let t = wall_micros();
    let line = format!("[{}.{:06}] {text}\n", t / 1_000_000, t % 1_000_000);
    let mut target = TARGET.lock();
    let result = match target.as_mut() {
        Some(f) => f.write_all(line.as_bytes()).and_then(|_| f.flush()),
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
        .map(|f| f.metadata().map(|m| m.len()).unwrap_or(0))
}

/// Writes `text` as is (no timestamp, whatever the level) to the log target.
pub fn write_raw(text: &str) {
    let mut target = TARGET.lock();
    let result = match target.as_mut() {
        Some(f) => f.write_all(text.as_bytes()).and_then(|_| f.flush()),
        None => io::stderr().write_all(text.as_bytes()),
    };
    drop(result);
}
