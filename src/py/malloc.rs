//! glibc's malloc, which allocates the `bytes` of every message Python gets:
//! its thresholds moved once, as its own heuristic moves them (see
//! [`MALLOC_MAP_FROM`](crate::config::MALLOC_MAP_FROM)).

/// Frees one mapped block of [`MALLOC_MAP_FROM`](crate::config::MALLOC_MAP_FROM)
/// bytes, which raises glibc's mapping and trimming thresholds to its size
/// and twice that, unless they are higher already or were set by the program.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn raise_thresholds() {
    // SAFETY: a block is allocated and freed at once, never touched; a
    // failed allocation gives a null pointer, which `free` ignores.
    unsafe {
        let block = libc::malloc(crate::config::MALLOC_MAP_FROM);
        libc::free(std::hint::black_box(block));
    }
}

/// Other allocators keep what they free without being told.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn raise_thresholds() {}
