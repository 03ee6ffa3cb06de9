//! The syscall layer: `syscalls:sys_enter_*` stash a record per thread when the fd is a traced
//! socket (one map lookup otherwise); the shared `sys_exit` program completes and emits it.
//!
//! With a port filter, `socket()` cannot know yet whether the socket will be traced, so its
//! record waits in `HELD_SOCKETS` until `bind()`/`connect()` names a matching port; it is then
//! emitted at that syscall's enter, so it still comes first. Socket options, `fcntl` and
//! `dup*` on the socket meanwhile wait with it (`HELD_CALLS`, up to
//! `tracer_common::maps::MAX_HELD_CALLS` per socket) and follow it out.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user},
    macros::tracepoint,
    programs::TracePointContext,
};
use tracer_common::{
    AF_INET, AF_INET6, SyscallOp,
    failure::Failure,
    maps::{FdKey, Held, HeldCallKey, Inflight, MAX_HELD_CALLS},
    record::{RecordKind, SyscallRecord},
    syscall::{SPLICE_TO_SOCKET, sockopt},
};

use crate::{
    context::{at, syscall_arg},
    emit::{count, count_if_refused, emit},
    fds,
    filter::{config, current_comm, ports_match, ports_only, task_matches},
    maps::{FDS, HELD_CALLS, HELD_SOCKETS, INFLIGHT},
    place,
    sockaddr::{self, End},
};

const SOCK_STREAM: u64 = 1;
const SOCK_TYPE_MASK: u64 = 0xf;
const IPPROTO_TCP: u64 = 6;

/// The syscall number in a `syscalls:` enter or exit record (`__syscall_nr`, at byte 8 in
/// every one, before the arguments or the return value).
#[inline(always)]
fn syscall_nr(ctx: &TracePointContext) -> u32 {
    at(ctx, 8)
}

/// A fresh in-flight record for the running thread, in the syscall whose enter is `ctx`.
#[inline(always)]
fn begin(ctx: &TracePointContext, op: SyscallOp, fd: i32, sock: u64) -> Inflight {
    let pid_tgid = bpf_get_current_pid_tgid();
    let mut record = SyscallRecord::new(op);
    let h = &mut record.header;
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
        nr: syscall_nr(ctx),
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

/// Enter of a syscall whose first argument is the fd: traced only if the fd is. `arg` is the
/// index of the argument the views show, if any.
#[inline(always)]
fn fd_enter(ctx: &TracePointContext, op: SyscallOp, arg: Option<usize>) -> u32 {
    fd_args(ctx, op, false, |inflight| {
        if let Some(n) = arg {
            inflight.record.args[0] = syscall_arg(ctx, n);
        }
        if op.accepts() {
            inflight.user_addr = syscall_arg(ctx, 1);
        }
    })
}

macro_rules! fd_syscall {
    ($name:ident, $op:expr, $arg:expr) => {
        #[doc = concat!("`syscalls:", stringify!($name), "`")]
        #[tracepoint]
        pub fn $name(ctx: TracePointContext) -> u32 {
            fd_enter(&ctx, $op, $arg)
        }
    };
}

fd_syscall!(sys_enter_listen, SyscallOp::Listen, Some(1));
fd_syscall!(sys_enter_accept, SyscallOp::Accept, None);
fd_syscall!(sys_enter_accept4, SyscallOp::Accept4, Some(3));
fd_syscall!(sys_enter_read, SyscallOp::Read, Some(2));
fd_syscall!(sys_enter_write, SyscallOp::Write, Some(2));
fd_syscall!(sys_enter_readv, SyscallOp::Readv, Some(2));
fd_syscall!(sys_enter_writev, SyscallOp::Writev, Some(2));
fd_syscall!(sys_enter_sendto, SyscallOp::Sendto, Some(2));
fd_syscall!(sys_enter_recvfrom, SyscallOp::Recvfrom, Some(2));
fd_syscall!(sys_enter_sendmsg, SyscallOp::Sendmsg, Some(2));
fd_syscall!(sys_enter_recvmsg, SyscallOp::Recvmsg, Some(2));
fd_syscall!(sys_enter_shutdown, SyscallOp::Shutdown, Some(1));
fd_syscall!(sys_enter_sendfile64, SyscallOp::Sendfile, Some(3));
fd_syscall!(sys_enter_sendmmsg, SyscallOp::Sendmmsg, Some(2));
fd_syscall!(sys_enter_recvmmsg, SyscallOp::Recvmmsg, Some(2));

/// `syscalls:sys_enter_dup`: `dup(oldfd)`.
#[tracepoint]
pub fn sys_enter_dup(ctx: TracePointContext) -> u32 {
    fd_args(&ctx, SyscallOp::Dup, true, |_| {})
}

/// `syscalls:sys_enter_dup2`: `dup2(oldfd, newfd)`.
#[tracepoint]
pub fn sys_enter_dup2(ctx: TracePointContext) -> u32 {
    fd_args(&ctx, SyscallOp::Dup2, true, |inflight| {
        inflight.record.args[0] = syscall_arg(&ctx, 1);
    })
}

/// `syscalls:sys_enter_dup3`: `dup3(oldfd, newfd, flags)`.
#[tracepoint]
pub fn sys_enter_dup3(ctx: TracePointContext) -> u32 {
    fd_args(&ctx, SyscallOp::Dup3, true, |inflight| {
        inflight.record.args = [syscall_arg(&ctx, 1), syscall_arg(&ctx, 2)];
    })
}

/// `syscalls:sys_enter_fcntl`: `fcntl(fd, cmd, arg)`.
#[tracepoint]
pub fn sys_enter_fcntl(ctx: TracePointContext) -> u32 {
    fd_args(&ctx, SyscallOp::Fcntl, true, |inflight| {
        inflight.record.args = [syscall_arg(&ctx, 1), syscall_arg(&ctx, 2)];
    })
}

/// `syscalls:sys_enter_setsockopt`: `setsockopt(fd, level, optname, optval, optlen)`; the
/// value set is read now.
#[tracepoint]
pub fn sys_enter_setsockopt(ctx: TracePointContext) -> u32 {
    fd_args(&ctx, SyscallOp::Setsockopt, true, |inflight| {
        let level = syscall_arg(&ctx, 1) as u32;
        let name = syscall_arg(&ctx, 2) as u32;
        let len = syscall_arg(&ctx, 4) as u32;
        inflight.record.args = [sockopt(level, name), user_value(syscall_arg(&ctx, 3), len)];
    })
}

/// `syscalls:sys_enter_getsockopt`: `getsockopt(fd, level, optname, optval, optlen)`; the
/// value is read at return ([`finish`]), the pointers kept till then.
#[tracepoint]
pub fn sys_enter_getsockopt(ctx: TracePointContext) -> u32 {
    fd_args(&ctx, SyscallOp::Getsockopt, true, |inflight| {
        let level = syscall_arg(&ctx, 1) as u32;
        let name = syscall_arg(&ctx, 2) as u32;
        inflight.record.args = [sockopt(level, name), syscall_arg(&ctx, 4)];
        inflight.user_addr = syscall_arg(&ctx, 3);
    })
}

/// Enter of a syscall whose first argument is the fd and whose other arguments `fill` records:
/// traced if the fd is, or, when `may_be_held`, held if the fd is a held socket (a port filter
/// has not decided yet).
#[inline(always)]
fn fd_args(
    ctx: &TracePointContext,
    op: SyscallOp,
    may_be_held: bool,
    fill: impl FnOnce(&mut Inflight),
) -> u32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let fd = syscall_arg(ctx, 0) as i32;
    let (sock, held) = match fds::traced(tgid, fd) {
        Some(sock) => (sock, false),
        None if may_be_held
            && config().by_port != 0
            && HELD_SOCKETS.get_ptr(FdKey { tgid, fd }).is_some() =>
        {
            (0, true)
        }
        None => return 0,
    };
    let mut inflight = begin(ctx, op, fd, sock);
    inflight.held = u32::from(held);
    fill(&mut inflight);
    stash(&inflight);
    0
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

/// `syscalls:sys_enter_splice`: `splice(fd_in, off_in, fd_out, off_out, len, flags)` with a
/// traced socket at either end; `args` hold the length and which end the socket is.
#[tracepoint]
pub fn sys_enter_splice(ctx: TracePointContext) -> u32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let out = syscall_arg(&ctx, 2) as i32;
    let (fd, sock, to_socket) = match fds::traced(tgid, out) {
        Some(sock) => (out, sock, SPLICE_TO_SOCKET),
        None => {
            let fd = syscall_arg(&ctx, 0) as i32;
            let Some(sock) = fds::traced(tgid, fd) else {
                return 0;
            };
            (fd, sock, 0)
        }
    };
    let mut inflight = begin(&ctx, SyscallOp::Splice, fd, sock);
    inflight.record.args = [syscall_arg(&ctx, 4), to_socket];
    stash(&inflight);
    0
}

/// `syscalls:sys_enter_close`: records the close, and forgets the fd — traced or a held
/// `socket()` — at once, so a reused fd number inherits neither.
#[tracepoint]
pub fn sys_enter_close(ctx: TracePointContext) -> u32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let fd = syscall_arg(&ctx, 0) as i32;
    if config().by_port != 0 {
        let _ = HELD_SOCKETS.remove(FdKey { tgid, fd });
    }
    fd_enter(&ctx, SyscallOp::Close, None);
    // Forgotten now, not at the return: close() frees the number before it returns (a
    // lingering close, seconds before), and another thread's accept() or socket() may get it
    // and track it first; forgetting it at the return would untrack that new socket.
    fds::closed(tgid, fd);
    0
}

/// `syscalls:sys_enter_socket`: TCP sockets of traced tasks.
#[tracepoint]
pub fn sys_enter_socket(ctx: TracePointContext) -> u32 {
    let family = syscall_arg(&ctx, 0);
    let ty = syscall_arg(&ctx, 1);
    let protocol = syscall_arg(&ctx, 2);
    if family != AF_INET as u64 && family != AF_INET6 as u64 {
        return 0;
    }
    if ty & SOCK_TYPE_MASK != SOCK_STREAM || (protocol != 0 && protocol != IPPROTO_TCP) {
        return 0;
    }
    let cfg = config();
    let mut inflight = begin(&ctx, SyscallOp::Socket, -1, 0);
    let task = &inflight.record.header.task;
    if !task_matches(&cfg, task.pid, &task.comm) {
        return 0;
    }
    inflight.record.tuple.family = family as u16;
    inflight.record.args = [ty, protocol];
    stash(&inflight);
    0
}

/// Enter of `bind`/`connect`: traced if the fd is, or if it is a held socket and the address
/// names a traced port.
#[inline(always)]
fn addr_enter(ctx: &TracePointContext, op: SyscallOp) -> u32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let fd = syscall_arg(ctx, 0) as i32;
    let sock = fds::traced(tgid, fd);
    let held = if sock.is_none() {
        match fds::held(tgid, fd) {
            Some(key) => key,
            None => return 0,
        }
    } else {
        FdKey { tgid, fd }
    };
    let mut inflight = begin(ctx, op, fd, sock.unwrap_or(0));
    let end = if op == SyscallOp::Bind {
        End::Local
    } else {
        End::Remote
    };
    let port =
        sockaddr::read_user(syscall_arg(ctx, 1), &mut inflight.record.tuple, end).unwrap_or(0);
    if sock.is_none() {
        let cfg = config();
        let matched = if end == End::Local {
            ports_match(&cfg, port, 0)
        } else {
            ports_match(&cfg, 0, port)
        };
        if !matched {
            return 0;
        }
        // Traced from now on: the held socket() record goes out first, before anything this
        // syscall causes — its creator's, when a forebear created it.
        if let Some(record) = HELD_SOCKETS.get_ptr(held) {
            // SAFETY: a value pointer returned by the lookup just above.
            release(held, unsafe { &*record });
        }
        let _ = HELD_SOCKETS.remove(held);
        if held.tgid != tgid {
            fds::track(held.tgid, fd, 0);
            // Tells user space whose socket() this fd is (see SyscallRecord's args).
            inflight.record.args[1] = u64::from(held.tgid);
        }
        fds::track(tgid, fd, 0);
    }
    stash(&inflight);
    0
}

/// `syscalls:sys_enter_bind`
#[tracepoint]
pub fn sys_enter_bind(ctx: TracePointContext) -> u32 {
    addr_enter(&ctx, SyscallOp::Bind)
}

/// `syscalls:sys_enter_connect`
#[tracepoint]
pub fn sys_enter_connect(ctx: TracePointContext) -> u32 {
    addr_enter(&ctx, SyscallOp::Connect)
}

/// The thread's in-flight record if it is this exit's syscall's; a stale one (its exit was
/// skipped by the kernel, which counts that) is dropped.
#[inline(always)]
fn inflight_of(ctx: &TracePointContext, tid: u32) -> Option<&'static mut Inflight> {
    let inflight = INFLIGHT.get_ptr_mut(tid)?;
    // SAFETY: a value pointer from the lookup above; only this thread uses its own entry.
    let inflight = unsafe { &mut *inflight };
    if inflight.nr != syscall_nr(ctx) {
        let _ = INFLIGHT.remove(tid);
        return None;
    }
    Some(inflight)
}

/// Every traced `syscalls:sys_exit_*`: completes the thread's in-flight record, if any.
#[tracepoint]
pub fn sys_exit(ctx: TracePointContext) -> u32 {
    let tid = bpf_get_current_pid_tgid() as u32;
    let Some(inflight) = inflight_of(&ctx, tid) else {
        return 0;
    };
    finish(inflight, syscall_arg(&ctx, 0) as i64);
    let _ = INFLIGHT.remove(tid);
    0
}

/// `syscalls:sys_exit_accept`/`sys_exit_accept4`: as [`sys_exit`], and also adopts the fd
/// returned by an accept that was already blocked when the tracer started (its enter was never
/// seen), when the task is traced by who it is (pid, comm, cgroup, network namespace).
#[tracepoint]
pub fn sys_exit_accept(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    let ret = syscall_arg(&ctx, 0) as i64;
    if let Some(inflight) = inflight_of(&ctx, tid) {
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
                let _ = sockaddr::read_user(inflight.user_addr, &mut record.tuple, End::Remote);
            }
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
