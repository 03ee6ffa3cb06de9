//! Hands finished records to user space; counts what the ring buffer could not take, and
//! every other thing a program gives up on.

use tracer_common::failure::Failure;

use aya_ebpf::maps::Array;

use crate::maps::{EVENTS, FAILURES, RING_BYTES, TALLIES};

/// `BPF_RB_NO_WAKEUP`: user space drains the ring buffer on its own clock (every 10 ms), so no
/// record pays for waking it up; under load that saves a context switch per record.
const NO_WAKEUP: u64 = 1;
/// `BPF_RB_FORCE_WAKEUP`
const FORCE_WAKEUP: u64 = 2;
/// `BPF_RB_AVAIL_DATA`
const AVAIL_DATA: u64 = 0;

/// Wake user space only once the ring buffer is a quarter full: a burst is drained at once
/// instead of at the next tick, and quiet periods cost no wakeups at all.
#[inline(always)]
pub fn wakeup_flags() -> u64 {
    if EVENTS.query(AVAIL_DATA) > u64::from(RING_BYTES / 4) {
        FORCE_WAKEUP
    } else {
        NO_WAKEUP
    }
}

/// Counts one thing a program gave up on, for `reason`.
#[inline(always)]
pub fn count(reason: Failure) {
    add_one(&FAILURES, reason as u32);
}

/// Adds one to tally `index` (`tracer_common::maps::TALLY_*`).
#[inline(always)]
pub fn tally(index: u32) {
    add_one(&TALLIES, index);
}

/// Adds one to counter `index` of `counters`.
#[inline(always)]
fn add_one(counters: &Array<u64>, index: u32) {
    if let Some(count) = counters.get_ptr_mut(index) {
        // SAFETY: a value pointer from the lookup above, valid for the map's lifetime and
        // aligned for a u64; every writer adds atomically.
        unsafe {
            core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(
                count, 1,
            )
        };
    }
}

/// Counts one record the ring buffer had no room for.
#[inline(always)]
pub fn count_drop() {
    count(Failure::RingFull);
}

/// Counts a map update that failed (a full map), for `reason`.
#[inline(always)]
pub fn count_if_refused<E>(update: Result<(), E>, reason: Failure) {
    if update.is_err() {
        count(reason);
    }
}

/// Writes `record` (one of `tracer_common::record`'s structs) to the ring buffer, or counts
/// it as dropped.
#[inline(always)]
pub fn emit<T: 'static>(record: &T) {
    if EVENTS.output::<T>(record, wakeup_flags()).is_err() {
        count_drop();
    }
}
