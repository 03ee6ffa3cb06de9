//! Giving the heap's free pages back to the system once the programs are loaded.
//!
//! Loading parses the kernel's BTF (megabytes of type data, twice, side by side) and the
//! programs' object file; all of it is freed before tracing starts, but glibc keeps freed
//! heap pages for later allocations, and the trace never needs that many again: without this
//! the tracer's resident memory stays at its startup peak for the whole run.

/// Returns the free pages of every malloc arena to the system (glibc's `malloc_trim(0)`;
/// other C libraries have no such call, and nothing is done there).
pub fn release_startup_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases memory no allocation holds; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}
