//! The kernel's counts of what our programs gave up on (`tracer_common::failure::Failure`:
//! records the ring buffer had no room for, full maps, failed reads), read through a memory
//! mapping of the `FAILURES` array (`BPF_F_MMAPABLE`). A map-lookup syscall would do too, but
//! it holds the kernel's per-CPU `bpf_prog_active` guard while it runs; where it can be
//! preempted there (7.x), every kprobe and tracepoint program of another task on that CPU is
//! skipped meanwhile. Read every 10 ms, that lost syscall records. A load from memory guards
//! nothing.

use std::os::fd::{AsFd as _, AsRawFd as _};
use std::ptr::NonNull;

use aya::Ebpf;
use aya::maps::{Array, HashMap, Map};
use tracer_common::failure::{FAILURE_KINDS, Failure};
use tracer_common::maps::{Owner, TALLY_SOCKS_ADDED, TALLY_SOCKS_REMOVED};

use super::error::MapError;

/// Counts per [`Failure`], by its index.
pub type Counts = [u64; FAILURE_KINDS as usize];

/// The mapped counters; unmapped on drop.
pub struct Failures {
    counters: NonNull<u64>,
    len: usize,
}

impl Failures {
    /// Maps `ebpf`'s `FAILURES` array.
    pub fn map(ebpf: &Ebpf) -> Result<Self, MapError> {
        let error = |reason: String| MapError {
            name: "FAILURES",
            reason,
        };
        let Some(Map::Array(data)) = ebpf.map("FAILURES") else {
            return Err(error("missing from the object, or not an array".into()));
        };
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        let len = (FAILURE_KINDS as usize * size_of::<u64>()).next_multiple_of(page);
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
        let counters =
            NonNull::new(addr.cast::<u64>()).ok_or_else(|| error("mmap: null".into()))?;
        Ok(Self { counters, len })
    }

    /// The count for `reason` so far.
    pub fn count(&self, reason: Failure) -> u64 {
        // SAFETY: the mapping is live, page-aligned and holds FAILURE_KINDS u64s (an array's
        // values are laid out back to back, each 8-byte aligned); the kernel adds to each
        // atomically, and a volatile aligned load of one is never torn on the 64-bit targets
        // we build for.
        unsafe { self.counters.as_ptr().add(reason as usize).read_volatile() }
    }

    /// Every count so far.
    pub fn counts(&self) -> Counts {
        Failure::ALL.map(|r| self.count(r))
    }
}

impl Drop for Failures {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping made in `map`, never used after this.
        unsafe { libc::munmap(self.counters.as_ptr().cast(), self.len) };
    }
}

/// The sockets `SOCKS` evicted: an LRU map makes room without telling anyone, so the programs
/// tally what they add and what they remove, and what is neither removed nor still there was
/// evicted. Exact only once no program runs (read after they are unloaded); 0 if a map is
/// unreadable.
pub fn evicted_sockets(ebpf: &Ebpf) -> u64 {
    let tallies = ebpf
        .map("TALLIES")
        .and_then(|m| Array::<_, u64>::try_from(m).ok());
    let socks = ebpf
        .map("SOCKS")
        .and_then(|m| HashMap::<_, u64, Owner>::try_from(m).ok());
    let (Some(tallies), Some(socks)) = (tallies, socks) else {
        return 0;
    };
    let tally = |i| tallies.get(&i, 0).unwrap_or(0);
    let added = tally(TALLY_SOCKS_ADDED);
    let removed = tally(TALLY_SOCKS_REMOVED);
    let live = socks.keys().filter(Result::is_ok).count() as u64;
    added.saturating_sub(removed).saturating_sub(live)
}
