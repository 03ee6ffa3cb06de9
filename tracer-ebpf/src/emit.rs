//! Hands finished records to user space; counts what the ring buffer could not take.

use tracer_common::Event;

use crate::maps::{DROPS, EVENTS};

/// Writes `event` to the ring buffer, or counts it as dropped.
#[inline(always)]
pub fn emit(event: &Event) {
    if EVENTS.output::<Event>(event, 0).is_err()
        && let Some(count) = DROPS.get_ptr_mut(0)
    {
        // SAFETY: a per-CPU slot, written only by programs on this CPU.
        unsafe { *count += 1 };
    }
}
