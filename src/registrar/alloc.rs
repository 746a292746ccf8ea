//! The registrar's memory allocator: mimalloc, asked to back its memory with transparent huge
//! pages.
//!
//! A registrar's handlespace is a few hundred MiB of small, randomly visited objects at 10^6
//! PEs. With glibc's malloc the per-pool arrays end up scattered over the whole heap, and most
//! visits miss the TLB as well as the caches; mimalloc keeps objects of one size class
//! together, and 2 MiB pages cut the TLB misses (`cargo bench --bench handlespace`, run with
//! `HS_BENCH_ALLOC=system` to compare). The program chooses the allocator
//! (`#[global_allocator]` in `src/bin/rspregistrar.rs`, calling [`prefer_huge_pages`] first); the C library keeps the system one,
//! as its callers expect.

/// Asks mimalloc for huge pages for the memory it maps from now on, unless the environment
/// says otherwise (`MIMALLOC_ALLOW_LARGE_OS_PAGES=0`). Without transparent huge pages in the
/// kernel this changes nothing.
pub fn prefer_huge_pages() {
    // SAFETY: sets the default of a mimalloc option; no preconditions, callable at any time
    // and from any thread.
    unsafe {
        libmimalloc_sys::mi_option_set_enabled_default(
            libmimalloc_sys::mi_option_large_os_pages,
            true,
        )
    };
}
