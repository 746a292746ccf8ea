//! The single panic boundary and the pointer helpers every exported function uses.
//!
//! Every `extern "C"` function body runs inside [`guard`]: a panic is caught, logged on stderr
//! and turned into the fallback value of the function's return type ([`Fallback`]). Raw pointers
//! become references only through [`try_ref`], [`try_mut`] and friends, which check for NULL.

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::rserpoolerror::RSPERR_OUT_OF_MEMORY;

/// What an exported function returns when its body panicked.
pub trait Fallback {
    fn fallback() -> Self;
}

impl Fallback for () {
    fn fallback() -> Self {}
}

impl<T> Fallback for *mut T {
    fn fallback() -> Self {
        std::ptr::null_mut()
    }
}

impl<T> Fallback for *const T {
    fn fallback() -> Self {
        std::ptr::null()
    }
}

/// Status-returning functions (`unsigned int` RSPERR_* codes).
impl Fallback for libc::c_uint {
    fn fallback() -> Self {
        RSPERR_OUT_OF_MEMORY
    }
}

/// `int`-returning functions report failure as -1 (select() style).
impl Fallback for libc::c_int {
    fn fallback() -> Self {
        -1
    }
}

/// `ssize_t`-returning functions report failure as -1.
impl Fallback for isize {
    fn fallback() -> Self {
        -1
    }
}

/// Sizes and counts: 0.
impl Fallback for usize {
    fn fallback() -> Self {
        0
    }
}

/// `tagdata_t` / `unsigned long long`: 0.
impl Fallback for u64 {
    fn fallback() -> Self {
        0
    }
}

/// Ports and small random numbers: 0.
impl Fallback for u16 {
    fn fallback() -> Self {
        0
    }
}

impl Fallback for u8 {
    fn fallback() -> Self {
        0
    }
}

/// `double`: 0.0.
impl Fallback for f64 {
    fn fallback() -> Self {
        0.0
    }
}

impl Fallback for bool {
    fn fallback() -> Self {
        false
    }
}

/// Runs `body`, catching any panic so that it never unwinds into C.
///
/// `name` is the exported function's name, used in the log line.
pub fn guard<R: Fallback>(name: &str, body: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(r) => r,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            eprintln!(
                "rsplib: internal error in {name}(): {what}; returning an error to the caller"
            );
            R::fallback()
        }
    }
}

/// A shared reference from a C pointer, or `None` for NULL.
///
/// # Safety
/// `p` must be NULL or point to a valid, properly aligned `T` that outlives `'a`.
pub unsafe fn try_ref<'a, T>(p: *const T) -> Option<&'a T> {
    p.as_ref()
}

/// A mutable reference from a C pointer, or `None` for NULL.
///
/// # Safety
/// `p` must be NULL or point to a valid, properly aligned `T` not aliased for `'a`.
pub unsafe fn try_mut<'a, T>(p: *mut T) -> Option<&'a mut T> {
    p.as_mut()
}

/// A byte slice from a C pointer and length; `None` for NULL with a nonzero length.
/// A NULL pointer with length 0 is the empty slice.
///
/// # Safety
/// If non-NULL, `p` must point to `len` readable bytes that outlive `'a`.
pub unsafe fn try_slice<'a>(p: *const u8, len: usize) -> Option<&'a [u8]> {
    if p.is_null() {
        return if len == 0 { Some(&[]) } else { None };
    }
    if len > isize::MAX as usize {
        return None;
    }
    Some(std::slice::from_raw_parts(p, len))
}

/// A slice of `len` C values of type `T`; `None` for NULL with a nonzero length. A NULL
/// pointer with length 0 is the empty slice.
///
/// # Safety
/// If non-NULL, `p` must point to `len` valid, properly aligned values that outlive `'a`.
pub unsafe fn try_array<'a, T>(p: *const T, len: usize) -> Option<&'a [T]> {
    if p.is_null() {
        return if len == 0 { Some(&[]) } else { None };
    }
    if len > isize::MAX as usize / std::mem::size_of::<T>().max(1) {
        return None;
    }
    Some(std::slice::from_raw_parts(p, len))
}

/// Sets the calling thread's `errno`.
pub fn set_errno(code: libc::c_int) {
    // SAFETY: __errno_location returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() = code };
}

/// The calling thread's `errno`.
pub fn errno() -> libc::c_int {
    // SAFETY: __errno_location returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// A C string as bytes (without the NUL), or `None` for NULL.
///
/// # Safety
/// If non-NULL, `p` must point to a NUL-terminated string that outlives `'a`.
pub unsafe fn try_cstr<'a>(p: *const libc::c_char) -> Option<&'a [u8]> {
    if p.is_null() {
        None
    } else {
        Some(std::ffi::CStr::from_ptr(p).to_bytes())
    }
}

/// Writes `text` to a C `FILE*`; does nothing for NULL.
///
/// # Safety
/// `fd` must be NULL or a valid open `FILE*`.
pub unsafe fn write_to_file(fd: *mut libc::FILE, text: &str) {
    if fd.is_null() || text.is_empty() {
        return;
    }
    libc::fwrite(text.as_ptr().cast(), 1, text.len(), fd);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_fallback_values() {
        let code: libc::c_uint = guard("test", || panic!("boom"));
        assert_eq!(code, RSPERR_OUT_OF_MEMORY);
        let p: *mut u8 = guard("test", || panic!("boom"));
        assert!(p.is_null());
        let n: libc::c_int = guard("test", || -> libc::c_int { panic!("{}", 42) });
        assert_eq!(n, -1);
        let ok: libc::c_uint = guard("test", || 7);
        assert_eq!(ok, 7);
    }

    #[test]
    fn pointer_helpers_reject_null() {
        unsafe {
            assert!(try_ref::<u32>(std::ptr::null()).is_none());
            assert!(try_slice(std::ptr::null(), 3).is_none());
            assert_eq!(try_slice(std::ptr::null(), 0), Some(&[][..]));
            let v = [1u8, 2, 3];
            assert_eq!(try_slice(v.as_ptr(), 2), Some(&v[..2]));
            assert!(try_cstr(std::ptr::null()).is_none());
            assert_eq!(try_cstr(c"ab".as_ptr()), Some(&b"ab"[..]));
        }
    }
}
