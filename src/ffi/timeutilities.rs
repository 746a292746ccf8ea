//! `timeutilities.h`: wall-clock microseconds and the classic printed timestamp.
#![allow(non_snake_case)]

use super::guard::{guard, write_to_file};
use crate::logging;

/// Microseconds since the Unix epoch (wall clock).
#[no_mangle]
pub extern "C" fn getMicroTime() -> libc::c_ulonglong {
    guard("getMicroTime", logging::wall_micros)
}

/// Local time of `micros` as `DD-Mon-YYYY HH:MM:SS.ffff: ` (4 fractional digits).
pub fn time_stamp(micros: u64) -> String {
    let secs = (micros / 1_000_000) as libc::time_t;
    // SAFETY: localtime_r writes into our zeroed tm; strftime writes at most buf.len() bytes.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&secs, &mut tm).is_null() {
            return format!("{secs}.{:04}: ", (micros % 1_000_000) / 100);
        }
        let mut buf = [0u8; 64];
        let n = libc::strftime(
            buf.as_mut_ptr().cast(),
            buf.len(),
            c"%d-%b-%Y %H:%M:%S".as_ptr(),
            &tm,
        );
        format!(
            "{}.{:04}: ",
            String::from_utf8_lossy(&buf[..n]),
            (micros % 1_000_000) / 100
        )
    }
}

/// Prints the current local time as `DD-Mon-YYYY HH:MM:SS.ffff: ` to `fd` (nothing for NULL).
///
/// # Safety
/// `fd` must be NULL or an open `FILE*`.
#[no_mangle]
pub unsafe extern "C" fn printTimeStamp(fd: *mut libc::FILE) {
    guard("printTimeStamp", || {
        write_to_file(fd, &time_stamp(logging::wall_micros()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_has_the_classic_shape() {
        let s = time_stamp(1_700_000_000_123_456);
        // e.g. "14-Nov-2023 22:13:20.1234: " (local time zone)
        assert!(s.ends_with(".1234: "), "{s}");
        assert_eq!(s.len(), "14-Nov-2023 22:13:20.1234: ".len(), "{s}");
        assert_eq!(&s[2..3], "-");
    }
}
