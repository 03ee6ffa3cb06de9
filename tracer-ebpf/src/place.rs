//! Where a traced process runs — its cgroup and network namespace — told to user space once,
//! and again when it changed, from the process's own context: `/proc/PID` is gone by the time
//! user space reads the records of a process that lived a few milliseconds.

use aya_ebpf::helpers::bpf_get_current_cgroup_id;
use tracer_common::{
    Via,
    maps::Place,
    record::{Header, PlaceRecord, RecordKind, Task},
};

use crate::{
    emit::emit,
    filter::{config, current_netns},
    maps::PLACES,
};

/// Tells where the current process (`task`, the running thread) runs, unless that was the
/// last thing told of it. Called as a traced syscall starts.
#[inline(always)]
pub fn tell(task: &Task, ts_ns: u64) {
    let place = Place {
        // SAFETY: bpf_get_current_cgroup_id has no preconditions.
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        netns: if config().netns_readable != 0 {
            current_netns()
        } else {
            0
        },
        _pad: 0,
    };
    // SAFETY: a value pointer from the lookup, read at once.
    if PLACES
        .get_ptr(task.pid)
        .is_some_and(|known| unsafe { *known } == place)
    {
        return;
    }
    // An LRU map makes room: a process evicted is told again, never lost.
    let _ = PLACES.insert(task.pid, &place, 0);
    let mut header = Header::new(RecordKind::Place, Via::Syscalls, 0);
    header.ts_ns = ts_ns;
    header.task = *task;
    emit(&PlaceRecord { header, place });
}
