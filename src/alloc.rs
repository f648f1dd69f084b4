//! The process allocator's settings: the server and oxctl run on mimalloc (glibc's malloc
//! gave memory back to the kernel and faulted it in again on every burst of requests, a
//! tenth of the server's CPU under load, measured with perf). This module owns only the
//! options the binaries set before they start work; the `#[global_allocator]` lives in each
//! binary.

/// mimalloc option numbers, in the order of `mi_option_e` in mimalloc 3's `mimalloc.h` (the
/// version libmimalloc-sys 0.1.49 builds; Cargo.lock pins it). libmimalloc-sys names only
/// some of them.
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long mimalloc keeps a freed page before it gives it back to the kernel, in ms.
/// Giving it back at once (0) cost a tenth of the server's CPU under load: perf showed
/// `madvise` from `mi_arena_purge` and the page faults that brought the pages back on the
/// next burst. Measured on one member, 100,000 puts of 256-byte values at 100 clients, 4 A/B
/// runs: 56 µs of server CPU per put at 0 ms, 52 at 10 ms, 49 at 100 ms; resident memory
/// after the puts 60, 61 and 64 MB.
const PURGE_DELAY_MS: std::ffi::c_long = 100;

/// Commits arena memory only as it is used, instead of whole arenas up front, and keeps
/// freed pages only briefly (`PURGE_DELAY_MS`). After 100,000 puts of 256-byte values on
/// one member: 124 MB resident with mimalloc's defaults, 64 MB with these.
///
/// Arena commit is decided when mimalloc reserves its first arena, before `main`: a binary
/// calls this from its load-time constructor (`set_options_at_load!`), which runs before
/// Rust's runtime allocates. It allocates nothing itself. These settings take the place of
/// `MIMALLOC_PURGE_DELAY` and `MIMALLOC_ARENA_EAGER_COMMIT` from the environment.
pub extern "C" fn return_memory_promptly() {
    for (option, value) in [
        (MI_OPTION_ARENA_EAGER_COMMIT, 0),
        (MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS),
    ] {
        // SAFETY: mi_option_set only stores a value in mimalloc's option table; any option
        // number below `_mi_option_last` is valid.
        unsafe { libmimalloc_sys::mi_option_set(option, value) };
    }
}

/// Registers [`return_memory_promptly`] as a load-time constructor of the binary that
/// invokes it (an ELF `.init_array` entry), so it runs before anything allocates.
#[macro_export]
macro_rules! set_options_at_load {
    () => {
        #[used]
        #[unsafe(link_section = ".init_array")]
        static SET_ALLOCATOR_OPTIONS: extern "C" fn() = $crate::alloc::return_memory_promptly;
    };
}
