//! mimalloc's settings for a short-lived command line tool. A no-op `lifeos build` lives a few
//! milliseconds, and on a VM each page it touches first costs a fault: mimalloc's defaults
//! suit long-running servers.
//!
//! - The first arena is 64 MiB, not 1 GiB: the arena's bitmaps grow with its size, and
//!   initialising those of 1 GiB touched 42 pages, a quarter of the no-op's heap faults. More
//!   arenas come as needed (mimalloc makes each next one larger).
//! - At exit, freed memory is not handed back (a `madvise` per span): the kernel takes it all
//!   back a moment later anyway.

use std::os::raw::c_long;

use libmimalloc_sys::{mi_option_set, mi_option_t};

// The option numbers of mimalloc v3's `mi_option_e` (include/mimalloc.h): the `extended`
// bindings of libmimalloc-sys 0.1.49 still list v2's and lack these. The test pins them
// by their default values.
const PURGE_DELAY: mi_option_t = 15;
const ARENA_RESERVE: mi_option_t = 23;

/// The first arena's size, in KiB as mimalloc counts it.
const ARENA_RESERVE_KIB: c_long = 64 * 1024;

/// Before the first allocation (the first thing `main` does: Rust's runtime allocates
/// nothing before it on Linux); later it only applies to the next arena.
pub fn tune() {
    // SAFETY: a plain store into mimalloc's option table, which it reads on each use.
    unsafe { mi_option_set(ARENA_RESERVE, ARENA_RESERVE_KIB) };
}

/// When the process is about to exit: keep freed memory instead of purging it.
pub fn at_exit() {
    // SAFETY: as in `tune`; -1 means "never purge".
    unsafe { mi_option_set(PURGE_DELAY, -1) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use libmimalloc_sys::mi_option_get;

    #[test]
    fn option_numbers_are_mimalloc_v3s() {
        // SAFETY: reads of mimalloc's option table (defaults: purge_delay 1000 ms, the
        // arena reserve 1 GiB in KiB, arena_purge_mult 1 right after it).
        let (purge, reserve, mult) = unsafe {
            (
                mi_option_get(PURGE_DELAY),
                mi_option_get(ARENA_RESERVE),
                mi_option_get(ARENA_RESERVE + 1),
            )
        };
        assert_eq!(purge, 1000);
        assert_eq!(reserve, 1024 * 1024);
        assert_eq!(mult, 1);
    }
}
