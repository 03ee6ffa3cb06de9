//! The syscall layer: an enter program stashes a record per thread when the fd is a traced
//! socket (one map lookup otherwise); the exit program completes and emits it.
//!
//! Each syscall has programs in two tiers, sharing every line here and told apart only by
//! where they read the call ([`crate::call`]): `syscalls:sys_enter_*` with one shared
//! `sys_exit` (tracepoints), and fentry/fexit on its function (`__x64_sys_*`), which the
//! loader prefers where the kernel has them. On the tracepoint tier the calls whose enter
//! needs only the fd and one argument share one enter program ([`sys_enter_fd`]), which
//! reads the call from the syscall number; a trampoline is per function, so the fentry tier
//! has a pair per call.
//!
//! With a port filter, `socket()` cannot know yet whether the socket will be traced, so its
//! record waits in `HELD_SOCKETS` until `bind()`/`connect()` names a matching port; it is then
//! emitted at that syscall's enter, so it still comes first. Socket options, `fcntl` and
//! `dup*` on the socket meanwhile wait with it (`HELD_CALLS`, up to
//! `tracer_common::maps::MAX_HELD_CALLS` per socket) and follow it out.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user},
    macros::{fentry, fexit, tracepoint},
    programs::{FEntryContext, FExitContext, TracePointContext},
};
use tracer_common::{
    AF_INET, AF_INET6, SyscallOp,
    failure::Failure,
    maps::{FdKey, Held, HeldCallKey, Inflight, MAX_HELD_CALLS},
    record::{FLAG_LATE, RecordKind, SyscallRecord},
    syscall::{SPLICE_TO_SOCKET, sockopt},
};

use crate::{
    call::{Call, Regs, TaskRegs, ret},
    emit::{count, count_if_refused, emit},
    fds,
    filter::{config, current_comm, ports_match, ports_only, task_matches},
    maps::{FDS, HELD_CALLS, HELD_SOCKETS, INFLIGHT, SYSCALL_OPS},
    place,
    sockaddr::{self, End, Sockaddr},
};

const SOCK_STREAM: u64 = 1;
const SOCK_TYPE_MASK: u64 = 0xf;
const IPPROTO_TCP: u64 = 6;

/// A fresh in-flight record for the running thread, in the syscall `call`.
#[inline(always)]
fn begin<C: Call>(call: &C, op: SyscallOp, fd: i32, sock: u64) -> Inflight {
    let pid_tgid = bpf_get_current_pid_tgid();
    let mut record = SyscallRecord::new(op);
    let h = &mut record.header;
    h.via = C::VIA as u8;
    if call.late() {
        h.flags |= FLAG_LATE;
    }
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    h.ts_ns = unsafe { bpf_ktime_get_ns() };
    h.task.pid = (pid_tgid >> 32) as u32;
    h.task.tid = pid_tgid as u32;
    h.task.comm = current_comm();
    h.fd = fd;
    h.sock = sock;
    Inflight {
        record,
        user_addr: 0,
        held: 0,
        nr: call.nr(),
    }
}

/// Remembers `inflight` until the syscall returns; tells the human view it started.
#[inline(always)]
fn stash(inflight: &Inflight) {
    let header = &inflight.record.header;
    // Before the syscall's own records: user space places its connections with it. Not for a
    // held call, nor a `socket()` a port filter will hold: the process may never be traced.
    if inflight.held == 0 && (header.op != SyscallOp::Socket as u8 || config().by_port == 0) {
        place::tell(&header.task, header.ts_ns);
    }
    let tid = header.task.tid;
    if INFLIGHT.insert(tid, inflight, 0).is_err() {
        count(Failure::InflightFull);
        return;
    }
    // A held call's start is not told either: its socket is not shown yet, and may never be.
    if config().emit_enter != 0
        && inflight.record.header.op != SyscallOp::Socket as u8
        && inflight.held == 0
    {
        let mut enter = inflight.record;
        enter.header.kind = RecordKind::SyscallEnter as u8;
        emit(&enter);
    }
}

/// Syscall `$op`'s programs: the enter tracepoint `$tracepoint` (its exit is the shared
/// [`sys_exit`] or [`sys_exit_accept`]), and those of [`syscall_functions!`]. The enter runs
/// `$body` with `$call` the [`Call`].
macro_rules! syscall {
    (
        $tracepoint:ident, $fentry:ident, $fexit:ident, $op:expr, $exit:ident, $rescue:literal,
        |$call:ident| $body:block
    ) => {
        syscall!(
            $tracepoint, $fentry, $fexit, $op, $exit, $rescue, #[inline(always)], |$call| $body
        );
    };
    (
        $tracepoint:ident, $fentry:ident, $fexit:ident, $op:expr, $exit:ident, $rescue:literal,
        #[$rescue_inline:meta], |$call:ident| $body:block
    ) => {
        #[doc = concat!("`syscalls:", stringify!($tracepoint), "`: ", stringify!($op))]
        #[tracepoint]
        pub fn $tracepoint(ctx: TracePointContext) -> u32 {
            #[inline(always)]
            fn body($call: &impl Call) -> u32 $body
            body(&ctx)
        }

        syscall_functions!(
            $tracepoint, $fentry, $fexit, $op, $exit, $rescue, #[$rescue_inline], |$call| $body
        );
    };
}

/// Syscall `$op`'s fentry `$fentry` and fexit `$fexit` on its function (that of tracepoint
/// `$tracepoint`): the fentry runs `$body` with `$call` the [`Call`], the fexit completes the
/// record with `$exit` ([`exit`], or [`accept_exit`] for the accepts), and on kernels that
/// preempt BPF programs the exit tracepoint's program, attached with them, completes it if the
/// kernel skipped the fexit.
///
/// On 7.x a program can be preempted, and a trampoline runs a program on one CPU only once at
/// a time: another task's call of the same syscall meanwhile is skipped. When the fentry
/// program was (`preemptible` in the filter: the loader found the kernel preempts kernel
/// code), the fexit finds no record of its call and, if `$rescue`, runs `$body` itself
/// with the registers, still there: the call is shown, with its return value, and with no
/// duration. Not for `close`: its enter forgets the fd, and at the return
/// the number may already name another thread's new socket. `#[inline(never)]` before the
/// body makes the fexit's rescue and its completion functions of their own (BPF-to-BPF
/// calls, one after the other), for a body and exit that together need more than the 512
/// bytes of stack a program may have (6.1's verifier adds the caller's frame to each call's).
macro_rules! syscall_functions {
    (
        $tracepoint:ident, $fentry:ident, $fexit:ident, $op:expr, $exit:ident, $rescue:literal,
        |$call:ident| $body:block
    ) => {
        syscall_functions!(
            $tracepoint, $fentry, $fexit, $op, $exit, $rescue, #[inline(always)], |$call| $body
        );
    };
    (
        $tracepoint:ident, $fentry:ident, $fexit:ident, $op:expr, $exit:ident, $rescue:literal,
        #[$rescue_inline:meta], |$call:ident| $body:block
    ) => {
        #[doc = concat!("fentry on the function of `", stringify!($tracepoint), "`")]
        #[fentry]
        pub fn $fentry(ctx: FEntryContext) -> u32 {
            #[inline(always)]
            fn body($call: &impl Call) -> u32 $body
            body(&Regs::of(&ctx))
        }

        #[doc = concat!("fexit on the function of `", stringify!($tracepoint), "`")]
        #[fexit]
        pub fn $fexit(ctx: FExitContext) -> u32 {
            #[$rescue_inline]
            fn body($call: &impl Call) -> u32 $body
            let regs = Regs::of_exit(&ctx);
            let nr = regs.nr();
            // Only a preempted run holds the guard that makes the kernel skip an fentry: on
            // other kernels the verifier prunes the rescue, and its lookups with it.
            if $rescue && config().preemptible != 0 && !pending(nr) {
                body(&regs);
            }
            #[$rescue_inline]
            fn complete(nr: u32, ret: i64) -> u32 {
                $exit(nr, ret)
            }
            // The function's one parameter is the registers; its return value comes after.
            complete(nr, ctx.arg::<i64>(1))
        }
    };
}

/// The op of syscall number `nr`, as the loader filled [`SYSCALL_OPS`] in.
#[inline(always)]
fn op_of(nr: u32) -> Option<SyscallOp> {
    SYSCALL_OPS.get(nr).and_then(|op| SyscallOp::from_u8(*op))
}

/// `syscalls:sys_enter_*` of every call whose enter needs only its fd and at most one
/// argument ([`SyscallOp::shown_arg`]): the reads and writes, the sends and receives,
/// `listen`, the accepts, `shutdown`, `sendfile`. One program for all of them, told by the
/// syscall number which call it is in: the verifier checks it once instead of once per call,
/// most of the startup. (`bind` and `connect` keep one each: sharing one, their paths were
/// checked apart anyway, and one 160,000-instruction program cannot be split between the
/// loader's threads as two of 77,000 are.)
#[tracepoint]
pub fn sys_enter_fd(ctx: TracePointContext) -> u32 {
    match op_of(ctx.nr()) {
        Some(op) => fd_enter(&ctx, op, op.shown_arg()),
        None => 0,
    }
}

/// Enter of a syscall whose first argument is the fd: traced only if the fd is. `arg` is the
/// index of the argument the views show, if any (1 to 3).
#[inline(always)]
fn fd_enter(call: &impl Call, op: SyscallOp, arg: Option<usize>) -> u32 {
    let Some(mut inflight) = fd_begin(call, op, false) else {
        return 0;
    };
    // Each read at a constant place: from the shared program `arg` is known only at run time.
    inflight.record.args[0] = match arg {
        Some(1) => call.arg(1),
        Some(2) => call.arg(2),
        Some(3) => call.arg(3),
        _ => 0,
    };
    if op.accepts() {
        inflight.user_addr = call.arg(1);
    }
    stash(&inflight);
    0
}

/// The fentry tier's programs of a syscall of [`sys_enter_fd`]'s shape.
macro_rules! fd_syscall {
    ($tracepoint:ident, $fentry:ident, $fexit:ident, $op:expr) => {
        syscall_functions!($tracepoint, $fentry, $fexit, $op, exit, true, |call| {
            fd_enter(call, $op, $op.shown_arg())
        });
    };
}

fd_syscall!(
    sys_enter_listen,
    fentry_sys_listen,
    fexit_sys_listen,
    SyscallOp::Listen
);
syscall_functions!(
    sys_enter_accept,
    fentry_sys_accept,
    fexit_sys_accept,
    SyscallOp::Accept,
    accept_exit,
    true,
    #[inline(never)],
    |call| { fd_enter(call, SyscallOp::Accept, SyscallOp::Accept.shown_arg()) }
);
syscall_functions!(
    sys_enter_accept4,
    fentry_sys_accept4,
    fexit_sys_accept4,
    SyscallOp::Accept4,
    accept_exit,
    true,
    #[inline(never)],
    |call| { fd_enter(call, SyscallOp::Accept4, SyscallOp::Accept4.shown_arg()) }
);
fd_syscall!(
    sys_enter_read,
    fentry_sys_read,
    fexit_sys_read,
    SyscallOp::Read
);
fd_syscall!(
    sys_enter_write,
    fentry_sys_write,
    fexit_sys_write,
    SyscallOp::Write
);
fd_syscall!(
    sys_enter_readv,
    fentry_sys_readv,
    fexit_sys_readv,
    SyscallOp::Readv
);
fd_syscall!(
    sys_enter_writev,
    fentry_sys_writev,
    fexit_sys_writev,
    SyscallOp::Writev
);
/// `read`, `write`, `readv` or `writev`, if syscall `nr` is one: the calls that reach the
/// socket layer's read and write iterators.
#[inline(always)]
fn iter_op(nr: u32) -> Option<SyscallOp> {
    op_of(nr).filter(|op| {
        matches!(
            op,
            SyscallOp::Read | SyscallOp::Write | SyscallOp::Readv | SyscallOp::Writev
        )
    })
}

/// fentry `$fentry` and fexit `$fexit` on a socket layer's read or write iterator
/// (`sock_read_iter`, `sock_write_iter`), in place of the syscall functions of `read`,
/// `write`, `readv` and `writev`: only a socket's reads and writes reach them, so on the
/// fentry tier a process reading and writing files and pipes meets none of our programs
/// (on the syscall functions every read of every process paid a trampoline pair). The call
/// and its fd are in the task's registers. A socket read some other way (io_uring, aio) is
/// none of those calls and is left to the kernel layer, as before. The duration shown is the
/// iterator's, from its entry to its return.
macro_rules! sock_iter {
    ($fentry:ident, $fexit:ident) => {
        #[doc = concat!("fentry on `", stringify!($fentry), "`'s socket iterator")]
        #[fentry]
        pub fn $fentry(_ctx: FEntryContext) -> u32 {
            let regs = TaskRegs::of_current(false);
            match iter_op(regs.nr()) {
                Some(op) => fd_enter(&regs, op, op.shown_arg()),
                None => 0,
            }
        }

        #[doc = concat!("fexit on `", stringify!($fexit), "`'s socket iterator")]
        #[fexit]
        pub fn $fexit(ctx: FExitContext) -> u32 {
            let regs = TaskRegs::of_current(true);
            let nr = regs.nr();
            let Some(op) = iter_op(nr) else {
                return 0;
            };
            // As for the syscall functions: a preempted run can make the kernel skip the
            // fentry; the call is then begun here, late.
            if config().preemptible != 0 && !pending(nr) {
                fd_enter(&regs, op, op.shown_arg());
            }
            // The iterator's two parameters, then its return value.
            exit(nr, ctx.arg::<i64>(2))
        }
    };
}

sock_iter!(fentry_sock_read_iter, fexit_sock_read_iter);
sock_iter!(fentry_sock_write_iter, fexit_sock_write_iter);

fd_syscall!(
    sys_enter_sendto,
    fentry_sys_sendto,
    fexit_sys_sendto,
    SyscallOp::Sendto
);
fd_syscall!(
    sys_enter_recvfrom,
    fentry_sys_recvfrom,
    fexit_sys_recvfrom,
    SyscallOp::Recvfrom
);
fd_syscall!(
    sys_enter_sendmsg,
    fentry_sys_sendmsg,
    fexit_sys_sendmsg,
    SyscallOp::Sendmsg
);
fd_syscall!(
    sys_enter_recvmsg,
    fentry_sys_recvmsg,
    fexit_sys_recvmsg,
    SyscallOp::Recvmsg
);
fd_syscall!(
    sys_enter_shutdown,
    fentry_sys_shutdown,
    fexit_sys_shutdown,
    SyscallOp::Shutdown
);
fd_syscall!(
    sys_enter_sendfile64,
    fentry_sys_sendfile64,
    fexit_sys_sendfile64,
    SyscallOp::Sendfile
);
fd_syscall!(
    sys_enter_sendmmsg,
    fentry_sys_sendmmsg,
    fexit_sys_sendmmsg,
    SyscallOp::Sendmmsg
);
fd_syscall!(
    sys_enter_recvmmsg,
    fentry_sys_recvmmsg,
    fexit_sys_recvmmsg,
    SyscallOp::Recvmmsg
);

// `dup(oldfd)`.
syscall!(
    sys_enter_dup,
    fentry_sys_dup,
    fexit_sys_dup,
    SyscallOp::Dup,
    exit,
    true,
    |call| {
        if let Some(inflight) = fd_begin(call, SyscallOp::Dup, true) {
            stash(&inflight);
        }
        0
    }
);

// `dup2(oldfd, newfd)`.
syscall!(
    sys_enter_dup2,
    fentry_sys_dup2,
    fexit_sys_dup2,
    SyscallOp::Dup2,
    exit,
    true,
    |call| {
        if let Some(mut inflight) = fd_begin(call, SyscallOp::Dup2, true) {
            inflight.record.args[0] = call.arg(1);
            stash(&inflight);
        }
        0
    }
);

// `dup3(oldfd, newfd, flags)`.
syscall!(
    sys_enter_dup3,
    fentry_sys_dup3,
    fexit_sys_dup3,
    SyscallOp::Dup3,
    exit,
    true,
    |call| {
        if let Some(mut inflight) = fd_begin(call, SyscallOp::Dup3, true) {
            inflight.record.args = [call.arg(1), call.arg(2)];
            stash(&inflight);
        }
        0
    }
);

// `fcntl(fd, cmd, arg)`.
syscall!(
    sys_enter_fcntl,
    fentry_sys_fcntl,
    fexit_sys_fcntl,
    SyscallOp::Fcntl,
    exit,
    true,
    |call| {
        if let Some(mut inflight) = fd_begin(call, SyscallOp::Fcntl, true) {
            inflight.record.args = [call.arg(1), call.arg(2)];
            stash(&inflight);
        }
        0
    }
);

// `setsockopt(fd, level, optname, optval, optlen)`; the value set is read now.
syscall!(
    sys_enter_setsockopt,
    fentry_sys_setsockopt,
    fexit_sys_setsockopt,
    SyscallOp::Setsockopt,
    exit,
    true,
    |call| {
        if let Some(mut inflight) = fd_begin(call, SyscallOp::Setsockopt, true) {
            let level = call.arg(1) as u32;
            let name = call.arg(2) as u32;
            let len = call.arg(4) as u32;
            inflight.record.args = [sockopt(level, name), user_value(call.arg(3), len)];
            stash(&inflight);
        }
        0
    }
);

// `getsockopt(fd, level, optname, optval, optlen)`; the value is read at return ([`finish`]),
// the pointers kept till then.
syscall!(
    sys_enter_getsockopt,
    fentry_sys_getsockopt,
    fexit_sys_getsockopt,
    SyscallOp::Getsockopt,
    exit,
    true,
    |call| {
        if let Some(mut inflight) = fd_begin(call, SyscallOp::Getsockopt, true) {
            let level = call.arg(1) as u32;
            let name = call.arg(2) as u32;
            inflight.record.args = [sockopt(level, name), call.arg(4)];
            inflight.user_addr = call.arg(3);
            stash(&inflight);
        }
        0
    }
);

/// The in-flight record of a syscall whose first argument is the fd, if it is traced: if the
/// fd is, or, when `may_be_held`, if the fd is a held socket (a port filter has not decided
/// yet), which the record says.
#[inline(always)]
fn fd_begin(call: &impl Call, op: SyscallOp, may_be_held: bool) -> Option<Inflight> {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let fd = call.arg(0) as i32;
    let (sock, held) = match fds::traced(tgid, fd) {
        Some(sock) => (sock, false),
        None if may_be_held
            && config().by_port != 0
            && HELD_SOCKETS.get_ptr(FdKey { tgid, fd }).is_some() =>
        {
            (0, true)
        }
        None => return None,
    };
    let mut inflight = begin(call, op, fd, sock);
    inflight.held = u32::from(held);
    Some(inflight)
}

/// Holds a completed call on held socket `key` with it, in the next free slot.
#[inline(always)]
fn hold_call(key: FdKey, record: &SyscallRecord) {
    // Gone if the socket was closed meanwhile.
    let Some(held) = HELD_SOCKETS.get_ptr_mut(key) else {
        return;
    };
    // SAFETY: a value pointer from the lookup above; the socket's fd is its process's own.
    let held = unsafe { &mut *held };
    let slot = held.calls;
    if slot >= MAX_HELD_CALLS {
        count(Failure::HeldFull);
        return;
    }
    if HELD_CALLS
        .insert(HeldCallKey::new(key, slot), *record, 0)
        .is_err()
    {
        // Not held, so never shown: the same loss as a full socket.
        count(Failure::HeldFull);
        return;
    }
    held.calls = slot + 1;
}

/// A held socket is traced from now on: its `socket()` record and the calls held with it go
/// out, in order.
#[inline(always)]
fn release(key: FdKey, held: &Held) {
    emit(&held.record);
    for slot in 0..MAX_HELD_CALLS {
        if slot >= held.calls {
            break;
        }
        let call = HeldCallKey::new(key, slot);
        match HELD_CALLS.get_ptr(call) {
            // SAFETY: a value pointer returned by the lookup just above.
            Some(record) => emit(unsafe { &*record }),
            // Evicted from the LRU map meanwhile: lost, and counted as not held.
            None => count(Failure::HeldFull),
        }
        let _ = HELD_CALLS.remove(call);
    }
}

/// The first `len` bytes (at most 8) at user address `ptr`, as a little-endian word: an
/// option's value (an `int`, a `struct linger`, or the start of an algorithm's name); 0 if
/// unreadable.
#[inline(always)]
fn user_value(ptr: u64, len: u32) -> u64 {
    if ptr == 0 || len == 0 {
        return 0;
    }
    // SAFETY (both reads): bpf_probe_read_user checks the user address; a bad pointer is an
    // error. A 4-byte value may end a page: then only 4 bytes are readable.
    let word: u64 = match unsafe { bpf_probe_read_user(ptr as *const u64) } {
        Ok(word) => word,
        Err(_) => unsafe { bpf_probe_read_user(ptr as *const u32) }.map_or(0, u64::from),
    };
    if len >= 8 {
        word
    } else {
        word & ((1u64 << (8 * len)) - 1)
    }
}

// `splice(fd_in, off_in, fd_out, off_out, len, flags)` with a traced socket at either end;
// `args` hold the length and which end the socket is.
syscall!(
    sys_enter_splice,
    fentry_sys_splice,
    fexit_sys_splice,
    SyscallOp::Splice,
    exit,
    true,
    |call| {
        let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
        let out = call.arg(2) as i32;
        let (fd, sock, to_socket) = match fds::traced(tgid, out) {
            Some(sock) => (out, sock, SPLICE_TO_SOCKET),
            None => {
                let fd = call.arg(0) as i32;
                let Some(sock) = fds::traced(tgid, fd) else {
                    return 0;
                };
                (fd, sock, 0)
            }
        };
        let mut inflight = begin(call, SyscallOp::Splice, fd, sock);
        inflight.record.args = [call.arg(4), to_socket];
        stash(&inflight);
        0
    }
);

// `close(fd)`: records the close, and forgets the fd — traced or a held `socket()` — at once,
// so a reused fd number inherits neither.
syscall!(
    sys_enter_close,
    fentry_sys_close,
    fexit_sys_close,
    SyscallOp::Close,
    exit,
    false,
    |call| {
        let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
        let fd = call.arg(0) as i32;
        if config().by_port != 0 {
            let _ = HELD_SOCKETS.remove(FdKey { tgid, fd });
        }
        fd_enter(call, SyscallOp::Close, None);
        // Forgotten now, not at the return: close() frees the number before it returns (a
        // lingering close, seconds before), and another thread's accept() or socket() may get it
        // and track it first; forgetting it at the return would untrack that new socket.
        fds::closed(tgid, fd);
        0
    }
);

// `socket(family, type, protocol)`: TCP sockets of traced tasks.
syscall!(
    sys_enter_socket,
    fentry_sys_socket,
    fexit_sys_socket,
    SyscallOp::Socket,
    exit,
    true,
    #[inline(never)],
    |call| {
        let family = call.arg(0);
        let ty = call.arg(1);
        let protocol = call.arg(2);
        if family != AF_INET as u64 && family != AF_INET6 as u64 {
            return 0;
        }
        if ty & SOCK_TYPE_MASK != SOCK_STREAM || (protocol != 0 && protocol != IPPROTO_TCP) {
            return 0;
        }
        let cfg = config();
        let mut inflight = begin(call, SyscallOp::Socket, -1, 0);
        let task = &inflight.record.header.task;
        if !task_matches(&cfg, task.pid, &task.comm) {
            return 0;
        }
        inflight.record.tuple.family = family as u16;
        inflight.record.args = [ty, protocol];
        stash(&inflight);
        0
    }
);

/// Enter of `bind`/`connect`: traced if the fd is, or if it is a held socket and the address
/// names a traced port.
#[inline(always)]
fn addr_enter(call: &impl Call, op: SyscallOp) -> u32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let fd = call.arg(0) as i32;
    let sock = fds::traced(tgid, fd);
    let held = match sock {
        Some(_) => None,
        None => match fds::held(tgid, fd) {
            Some(key) => Some(key),
            None => return 0,
        },
    };
    // Whose socket() a held fd is, when a forebear created it (see SyscallRecord's args).
    let mut creator = 0;
    if let Some(held) = held {
        let port = sockaddr::port_of(call.arg(1));
        let cfg = config();
        let matched = if op == SyscallOp::Bind {
            ports_match(&cfg, port, 0)
        } else {
            ports_match(&cfg, 0, port)
        };
        if !matched {
            return 0;
        }
        adopt(held, tgid, fd);
        if held.tgid != tgid {
            creator = held.tgid;
        }
    }
    let mut inflight = begin(call, op, fd, sock.unwrap_or(0));
    // The address is read at the return, as accept's is: read here, into the stacked record,
    // it multiplied the verifier's paths through everything before it (+32k instructions in
    // each of bind and connect).
    inflight.user_addr = call.arg(1);
    if creator != 0 {
        inflight.record.args[1] = u64::from(creator);
    }
    stash(&inflight);
    0
}

/// Held socket `held`, fd `fd` of process `tgid`, is traced from now on: its socket() record
/// and held calls go out first, before anything the syscall at hand causes — its creator's,
/// when a forebear created it.
#[inline(always)]
fn adopt(held: FdKey, tgid: u32, fd: i32) {
    if let Some(record) = HELD_SOCKETS.get_ptr(held) {
        // SAFETY: a value pointer returned by the lookup just above.
        release(held, unsafe { &*record });
    }
    let _ = HELD_SOCKETS.remove(held);
    if held.tgid != tgid {
        fds::track(held.tgid, fd, 0);
    }
    fds::track(tgid, fd, 0);
}

syscall!(
    sys_enter_bind,
    fentry_sys_bind,
    fexit_sys_bind,
    SyscallOp::Bind,
    exit,
    true,
    |call| { addr_enter(call, SyscallOp::Bind) }
);

syscall!(
    sys_enter_connect,
    fentry_sys_connect,
    fexit_sys_connect,
    SyscallOp::Connect,
    exit,
    true,
    |call| { addr_enter(call, SyscallOp::Connect) }
);

/// The thread's in-flight record if it is syscall `nr`'s; a stale one (its exit was skipped
/// by the kernel, which counts that) is dropped.
#[inline(always)]
fn inflight_of(nr: u32, tid: u32) -> Option<&'static mut Inflight> {
    let inflight = INFLIGHT.get_ptr_mut(tid)?;
    // SAFETY: a value pointer from the lookup above; only this thread uses its own entry.
    let inflight = unsafe { &mut *inflight };
    if inflight.nr != nr {
        let _ = INFLIGHT.remove(tid);
        return None;
    }
    Some(inflight)
}

/// The return of syscall `nr` with `ret`: completes the thread's in-flight record, if any.
#[inline(always)]
fn exit(nr: u32, ret: i64) -> u32 {
    let tid = bpf_get_current_pid_tgid() as u32;
    let Some(inflight) = inflight_of(nr, tid) else {
        return 0;
    };
    finish(inflight, ret);
    let _ = INFLIGHT.remove(tid);
    0
}

/// The return of an accept: as [`exit`], and also adopts the fd returned by an accept that
/// was already blocked when the tracer started (its enter was never seen), when the task is
/// traced by who it is (pid, comm, cgroup, network namespace).
#[inline(always)]
fn accept_exit(nr: u32, ret: i64) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    if let Some(inflight) = inflight_of(nr, tid) {
        finish(inflight, ret);
        let _ = INFLIGHT.remove(tid);
        return 0;
    }
    let cfg = config();
    let tgid = (pid_tgid >> 32) as u32;
    if ret >= 0 && !ports_only(&cfg) && task_matches(&cfg, tgid, &current_comm()) {
        // No record: the accept's arguments are unknown. Its connection is found through the
        // socket once the fd is used.
        fds::track(tgid, ret as i32, 0);
    }
    0
}

/// Whether the running thread has an in-flight record of syscall `nr`.
#[inline(always)]
fn pending(nr: u32) -> bool {
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: a value pointer from the lookup; only this thread uses its own entry.
    INFLIGHT
        .get_ptr(tid)
        .is_some_and(|inflight| unsafe { (*inflight).nr } == nr)
}

/// Every traced `syscalls:sys_exit_*` but the accepts'.
#[tracepoint]
pub fn sys_exit(ctx: TracePointContext) -> u32 {
    exit(ctx.nr(), ret(&ctx))
}

/// `syscalls:sys_exit_accept`/`sys_exit_accept4`.
#[tracepoint]
pub fn sys_exit_accept(ctx: TracePointContext) -> u32 {
    accept_exit(ctx.nr(), ret(&ctx))
}

#[inline(always)]
fn finish(inflight: &mut Inflight, ret: i64) {
    let record = &mut inflight.record;
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    record.duration_ns = unsafe { bpf_ktime_get_ns() }.saturating_sub(record.header.ts_ns);
    record.ret = ret;
    let tgid = record.header.task.pid;
    let key = FdKey {
        tgid,
        fd: record.header.fd,
    };
    match SyscallOp::from_u8(record.header.op) {
        Some(SyscallOp::Socket) => {
            if ret < 0 {
                emit(record);
                return;
            }
            record.header.fd = ret as i32;
            let key = FdKey {
                tgid,
                fd: ret as i32,
            };
            if config().by_port != 0 {
                let held = Held {
                    record: *record,
                    calls: 0,
                    _pad: 0,
                };
                count_if_refused(HELD_SOCKETS.insert(key, held, 0), Failure::FdsFull);
                // Its children may connect it: they are followed as a holder's are.
                fds::may_pass_on(tgid);
                return;
            }
            fds::track(tgid, ret as i32, 0);
        }
        Some(SyscallOp::Accept | SyscallOp::Accept4) => {
            if ret >= 0 {
                fds::track(tgid, ret as i32, 0);
                Sockaddr::read_user(inflight.user_addr).store(&mut record.tuple, End::Remote);
            }
        }
        // Whatever the outcome: a refused connect shows where it went.
        Some(SyscallOp::Bind) => {
            Sockaddr::read_user(inflight.user_addr).store(&mut record.tuple, End::Local);
        }
        Some(SyscallOp::Connect) => {
            Sockaddr::read_user(inflight.user_addr).store(&mut record.tuple, End::Remote);
        }
        Some(SyscallOp::Getsockopt) => {
            // SAFETY: bpf_probe_read_user checks the user address.
            let len: u32 =
                unsafe { bpf_probe_read_user(record.args[1] as *const u32) }.unwrap_or(0);
            record.args[1] = if ret == 0 {
                user_value(inflight.user_addr, len)
            } else {
                0
            };
        }
        // A duplicate of a held socket is not followed (it is not traced yet).
        Some(op) if ret >= 0 && inflight.held == 0 && op.duplicates(&record.args) => {
            // The new fd names the same socket.
            fds::track(tgid, ret as i32, record.header.sock);
        }
        _ => {}
    }
    if inflight.held != 0 {
        hold_call(key, record);
        return;
    }
    // Not for a close: its fd number may name another socket by now.
    if record.header.sock == 0
        && record.header.op != SyscallOp::Close as u8
        && let Some(sock) = FDS.get_ptr(key)
    {
        // SAFETY: a value pointer returned by the lookup just above.
        record.header.sock = unsafe { *sock };
    }
    emit(record);
}
