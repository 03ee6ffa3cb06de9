//! The kernel's count of records the ring buffer had no room for, read through a memory
//! mapping of the `DROPS` array (`BPF_F_MMAPABLE`). A map-lookup syscall would do too, but it
//! holds the kernel's per-CPU `bpf_prog_active` guard while it runs; where it can be preempted
//! there (7.x), every kprobe and tracepoint program of another task on that CPU is skipped
//! meanwhile. Read every 10 ms, that lost syscall records. A load from memory guards nothing.

use std::os::fd::{AsFd as _, AsRawFd as _};
use std::ptr::NonNull;

use aya::Ebpf;
use aya::maps::Map;

use super::error::MapError;

/// The mapped counter; unmapped on drop.
pub struct Drops {
    counter: NonNull<u64>,
    len: usize,
}

impl Drops {
    /// Maps `ebpf`'s `DROPS` array (one u64).
    pub fn map(ebpf: &Ebpf) -> Result<Self, MapError> {
        let error = |reason: String| MapError {
            name: "DROPS",
            reason,
        };
        let Some(Map::Array(data)) = ebpf.map("DROPS") else {
            return Err(error("missing from the object, or not an array".into()));
        };
        // SAFETY: sysconf has no preconditions.
        let len = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        // SAFETY: a fresh shared read-only mapping of the array's fd; the kernel checks the
        // fd is an mmapable map and the length fits it.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                data.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(error(format!("mmap: {}", std::io::Error::last_os_error())));
        }
        let counter = NonNull::new(addr.cast::<u64>()).ok_or_else(|| error("mmap: null".into()))?;
        Ok(Self { counter, len })
    }

    /// Records dropped so far.
    pub fn count(&self) -> u64 {
        // SAFETY: the mapping is live and page-aligned; the kernel adds to this u64 atomically,
        // and a volatile aligned load of it is never torn on the 64-bit targets we build for.
        unsafe { self.counter.as_ptr().read_volatile() }
    }
}

impl Drop for Drops {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping made in `map`, never used after this.
        unsafe { libc::munmap(self.counter.as_ptr().cast(), self.len) };
    }
}
