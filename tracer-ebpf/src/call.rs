//! Where a syscall-layer program reads its call: a `syscalls:` tracepoint record, or the
//! `struct pt_regs` a syscall function (`__x64_sys_*`) is given, seen by fentry/fexit.
//!
//! Both tiers share every line of [`crate::syscalls`]; only this differs. Both give the
//! syscall's number, by which an enter and an exit pair, so that either tier's exit can
//! complete either's enter. The fentry tier
//! exists because on 7.x kernels a perf-attached program (a tracepoint's) that is preempted
//! keeps the CPU's one `bpf_prog_active` slot, and every other such program on that CPU is
//! skipped meanwhile — whole syscalls went missing. A trampoline's guard is per program.

use aya_ebpf::{
    helpers::generated::{bpf_get_current_task_btf, bpf_task_pt_regs},
    programs::{FEntryContext, FExitContext, TracePointContext},
};
use tracer_common::{
    Via,
    offsets::{SYSCALL_ARG0, SYSCALL_NR},
};

use crate::context::{at, kernel_field};

/// A syscall being entered.
pub trait Call {
    /// The tier, as records name it.
    const VIA: Via;
    /// Its number as the exit program of the same tier will see it: enter and exit are
    /// paired by it.
    fn nr(&self) -> u32;
    /// Its argument `n` (0 to 5).
    fn arg(&self, n: usize) -> u64;
    /// Whether the call is being entered late, at its return (see [`Regs::of_exit`]).
    fn late(&self) -> bool {
        false
    }
}

impl Call for TracePointContext {
    const VIA: Via = Via::Syscalls;

    /// `__syscall_nr`, at byte 8 of every enter and exit record.
    #[inline(always)]
    fn nr(&self) -> u32 {
        at(self, 8)
    }

    /// `args[6]` starts at byte 16 in every enter record, a layout fixed by the syscall
    /// tracing ABI.
    #[inline(always)]
    fn arg(&self, n: usize) -> u64 {
        at(self, 16 + 8 * n)
    }
}

/// The return value in a `syscalls:sys_exit_*` record (`ret`, at byte 16).
#[inline(always)]
pub fn ret(ctx: &TracePointContext) -> i64 {
    at(ctx, 16)
}

/// The user registers a syscall function is given.
pub struct Regs {
    regs: u64,
    late: bool,
}

impl Regs {
    /// The registers of the syscall whose function `ctx` entered.
    #[inline(always)]
    pub fn of(ctx: &FEntryContext) -> Self {
        Self {
            regs: ctx.arg::<u64>(0),
            late: false,
        }
    }

    /// The registers of the syscall whose function `ctx` is returning from: the arguments
    /// and the number are still in them. A record begun with them is late (its enter
    /// program was skipped).
    #[inline(always)]
    pub fn of_exit(ctx: &FExitContext) -> Self {
        Self {
            regs: ctx.arg::<u64>(0),
            late: true,
        }
    }
}

impl Call for Regs {
    const VIA: Via = Via::SyscallFunctions;

    /// The syscall's number as the entry code saved it: the same the tracepoints give, so
    /// that the exit tracepoint can complete a record whose fexit program was skipped.
    #[inline(always)]
    fn nr(&self) -> u32 {
        kernel_field::<u64>(self.regs, SYSCALL_NR) as u32
    }

    /// The register the architecture's syscall convention passes argument `n` in, at the
    /// offset in `struct pt_regs` the loader gave.
    #[inline(always)]
    fn arg(&self, n: usize) -> u64 {
        kernel_field(self.regs, SYSCALL_ARG0 + n)
    }

    #[inline(always)]
    fn late(&self) -> bool {
        self.late
    }
}

/// The registers of the running task's syscall, seen from a function that is not given them
/// (the socket layer's read and write iterators): read as [`Regs`], recorded as
/// [`Via::SocketIterators`].
pub struct TaskRegs(Regs);

impl TaskRegs {
    /// The running task's registers (`bpf_task_pt_regs`, Linux 5.15); `late` as for
    /// [`Regs::of_exit`].
    #[inline(always)]
    pub fn of_current(late: bool) -> Self {
        // SAFETY: both helpers only read the running task; the verifier checks that the task
        // pointer is the BTF one `bpf_task_pt_regs` wants.
        let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as u64;
        Self(Regs { regs, late })
    }
}

impl Call for TaskRegs {
    const VIA: Via = Via::SocketIterators;

    #[inline(always)]
    fn nr(&self) -> u32 {
        self.0.nr()
    }

    #[inline(always)]
    fn arg(&self, n: usize) -> u64 {
        self.0.arg(n)
    }

    #[inline(always)]
    fn late(&self) -> bool {
        self.0.late
    }
}
