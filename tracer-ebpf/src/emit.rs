//! Hands finished records to user space; counts what the ring buffer could not take.

use tracer_common::Event;

use crate::maps::{DROPS, EVENTS};

/// `BPF_RB_NO_WAKEUP`: user space drains the ring buffer on its own clock (every 10 ms), so no
/// record pays for waking it up; under load that saves a context switch per record.
pub const NO_WAKEUP: u64 = 1;

/// Writes `event` to the ring buffer, or counts it as dropped.
#[inline(always)]
pub fn emit(event: &Event) {
    if EVENTS.output::<Event>(event, NO_WAKEUP).is_err()
        && let Some(count) = DROPS.get_ptr_mut(0)
    {
        // SAFETY: a per-CPU slot, written only by programs on this CPU.
        unsafe { *count += 1 };
    }
}
