//! A cache prefetch hint for the small contiguous arrays of a cold pool.

/// Asks for every cache line of `part` at once, so that their misses overlap instead of
/// forming a chain (a binary search) or waiting for the hardware prefetcher to notice a stream
/// (a short scan). Costs a few instructions where the lines are cached already; a no-op on
/// targets without a prefetch hint.
pub(super) fn prefetch<T>(part: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let bytes = std::mem::size_of_val(part);
        let base = part.as_ptr().cast::<i8>();
        for off in (0..bytes).step_by(64) {
            // SAFETY: a prefetch is only a hint (it never faults and reads nothing into the
            // program), and SSE, which it needs, is part of every x86_64 target; the address
            // stays inside the slice (`off < bytes`).
            unsafe { _mm_prefetch::<_MM_HINT_T0>(base.wrapping_add(off)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = part;
}
