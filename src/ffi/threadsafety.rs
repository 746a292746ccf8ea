//! `threadsafety.h`: a recursive pthread mutex with a name, in storage the caller owns (the
//! 72-byte `struct ThreadSafety`, embedded by C++ wrappers such as libcppthread's `TDMutex`).
#![allow(non_snake_case)]

use libc::c_char;

use super::guard::{guard, try_cstr, try_mut};

/// Length of `ThreadSafety::Name` including the NUL.
const THREADSAFETY_NAME_SIZE: usize = 32;

/// `struct ThreadSafety { pthread_mutex_t Mutex; char Name[32]; }` (72 bytes, align 8).
#[repr(C)]
pub struct ThreadSafety {
    pub Mutex: libc::pthread_mutex_t,
    pub Name: [c_char; 32],
}

/// Initialises `threadSafety` as a recursive mutex named `name` (truncated to 31 bytes; NULL
/// = no name). NULL `threadSafety` is ignored.
///
/// # Safety
/// `threadSafety` must be NULL or point to writable storage of a `struct ThreadSafety` that is
/// not an initialised, in-use mutex; `name` NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn threadSafetyNew(threadSafety: *mut ThreadSafety, name: *const c_char) {
    guard("threadSafetyNew", || {
        let Some(ts) = try_mut(threadSafety) else {
            return;
        };
        ts.Name = [0; THREADSAFETY_NAME_SIZE];
        let name = try_cstr(name).unwrap_or(b"");
        for (dst, src) in ts
            .Name
            .iter_mut()
            .zip(name.iter().take(THREADSAFETY_NAME_SIZE - 1))
        {
            *dst = *src as c_char;
        }
        let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
        libc::pthread_mutexattr_init(&mut attr);
        libc::pthread_mutexattr_settype(&mut attr, libc::PTHREAD_MUTEX_RECURSIVE);
        libc::pthread_mutex_init(&mut ts.Mutex, &attr);
        libc::pthread_mutexattr_destroy(&mut attr);
    })
}

/// Destroys the mutex (it must be unlocked). NULL is ignored.
///
/// # Safety
/// `threadSafety` must be NULL or initialised by `threadSafetyNew`.
#[no_mangle]
pub unsafe extern "C" fn threadSafetyDelete(threadSafety: *mut ThreadSafety) {
    guard("threadSafetyDelete", || {
        if let Some(ts) = try_mut(threadSafety) {
            libc::pthread_mutex_destroy(&mut ts.Mutex);
            ts.Name = [0; THREADSAFETY_NAME_SIZE];
        }
    })
}

/// Locks the mutex (recursively). NULL is ignored.
///
/// # Safety
/// `threadSafety` must be NULL or initialised by `threadSafetyNew`.
#[no_mangle]
pub unsafe extern "C" fn threadSafetyLock(threadSafety: *mut ThreadSafety) {
    guard("threadSafetyLock", || {
        if let Some(ts) = try_mut(threadSafety) {
            libc::pthread_mutex_lock(&mut ts.Mutex);
        }
    })
}

/// Unlocks the mutex once. NULL is ignored.
///
/// # Safety
/// `threadSafety` must be NULL or initialised by `threadSafetyNew` and locked by this thread.
#[no_mangle]
pub unsafe extern "C" fn threadSafetyUnlock(threadSafety: *mut ThreadSafety) {
    guard("threadSafetyUnlock", || {
        if let Some(ts) = try_mut(threadSafety) {
            libc::pthread_mutex_unlock(&mut ts.Mutex);
        }
    })
}

/// Older name of `threadSafetyNew`.
///
/// # Safety
/// As `threadSafetyNew`.
#[no_mangle]
pub unsafe extern "C" fn threadSafetyInit(threadSafety: *mut ThreadSafety, name: *const c_char) {
    threadSafetyNew(threadSafety, name)
}

/// Older name of `threadSafetyDelete`.
///
/// # Safety
/// As `threadSafetyDelete`.
#[no_mangle]
pub unsafe extern "C" fn threadSafetyDestroy(threadSafety: *mut ThreadSafety) {
    threadSafetyDelete(threadSafety)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_72_bytes() {
        assert_eq!(std::mem::size_of::<ThreadSafety>(), 72);
        assert_eq!(std::mem::align_of::<ThreadSafety>(), 8);
    }

    #[test]
    fn recursive_lock_and_long_name() {
        unsafe {
            let mut ts: ThreadSafety = std::mem::zeroed();
            let long = c"a name that is much longer than thirty-one bytes";
            threadSafetyNew(&mut ts, long.as_ptr());
            assert_eq!(ts.Name[30] as u8, long.to_bytes()[30]);
            assert_eq!(ts.Name[31], 0);
            threadSafetyLock(&mut ts);
            threadSafetyLock(&mut ts);
            threadSafetyUnlock(&mut ts);
            threadSafetyUnlock(&mut ts);
            threadSafetyDelete(&mut ts);
            threadSafetyNew(std::ptr::null_mut(), std::ptr::null());
            threadSafetyLock(std::ptr::null_mut());
        }
    }
}
