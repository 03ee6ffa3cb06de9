//! Following a traced process's children: with `follow` set (`tracer -- CMD`, `--pid N
//! --follow-children`), every process a traced process forks is traced too, from its first
//! instruction — in the kernel, at the fork, so nothing a short-lived child does is missed.
//!
//! Raw tracepoints: their arguments are the tasks themselves (the perf tracepoint gives only
//! the new task's id, and a new thread looks like a new process there), and the kernel never
//! skips them because another program runs on the CPU.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::raw_tracepoint, programs::RawTracePointContext,
};
use tracer_common::{
    failure::Failure,
    offsets::{TASK_PID, TASK_TGID},
};

use crate::{context::kernel_field, emit::count_if_refused, filter::config, maps::PIDS};

/// `raw_tracepoint:sched_process_fork(parent, child)`: a new process of a traced process is
/// traced. New threads are left out: the filter matches processes.
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn follow_fork(ctx: RawTracePointContext) -> i32 {
    if config().follow == 0 {
        return 0;
    }
    let parent = (bpf_get_current_pid_tgid() >> 32) as u32;
    if PIDS.get_ptr(parent).is_none() {
        return 0;
    }
    let child: u64 = ctx.arg(1);
    let pid: u32 = kernel_field(child, TASK_PID);
    let tgid: u32 = kernel_field(child, TASK_TGID);
    if pid != 0 && pid == tgid {
        count_if_refused(PIDS.insert(tgid, 1, 0), Failure::PidsFull);
    }
    0
}

/// `raw_tracepoint:sched_process_exit(task)`: a followed process ended (its main thread; a
/// thread's exit is not the process's), so its id may be reused by an untraced one.
#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn follow_exit(_ctx: RawTracePointContext) -> i32 {
    if config().follow == 0 {
        return 0;
    }
    let id = bpf_get_current_pid_tgid();
    let (tgid, pid) = ((id >> 32) as u32, id as u32);
    if pid == tgid {
        let _ = PIDS.remove(tgid);
    }
    0
}
