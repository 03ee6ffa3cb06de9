//! Which file descriptors of which processes are traced sockets, and their inheritance across
//! `fork()`: a server whose master opens the listener and whose forked workers accept on it
//! (nginx, Apache, gunicorn) uses fd numbers its own pid never registered.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::tracepoint,
    programs::TracePointContext,
};
use tracer_common::{failure::Failure, maps::FdKey, offsets};

use crate::{
    context::field,
    emit::count_if_refused,
    maps::{CLOSED_FDS, Closed, FDS, FORKED, Forked, HELD_SOCKETS, HOLDERS},
};

/// How many generations an fd is followed up: nginx's daemon opens its listeners, forks the
/// master, which forks the workers.
const GENERATIONS: usize = 3;

/// Marks `fd` of process `tgid` as a traced socket (`sock`: the kernel socket, 0 if unknown).
#[inline(always)]
pub fn track(tgid: u32, fd: i32, sock: u64) {
    count_if_refused(FDS.insert(FdKey { tgid, fd }, sock, 0), Failure::FdsFull);
    may_pass_on(tgid);
}

/// Process `tgid` holds a socket its children may inherit: the children it forks are noted.
#[inline(always)]
pub fn may_pass_on(tgid: u32) {
    count_if_refused(HOLDERS.insert(tgid, 1, 0), Failure::FdsFull);
}

/// The kernel socket behind `fd` of process `tgid` (0 if not known yet), if the fd is traced
/// — registered for this process, or inherited from a forebear that registered it, held it
/// when it forked this line of descent, and had not closed it before.
#[inline(always)]
pub fn traced(tgid: u32, fd: i32) -> Option<u64> {
    if let Some(sock) = FDS.get_ptr(FdKey { tgid, fd }) {
        // SAFETY: a value pointer returned by the lookup just above.
        return Some(unsafe { *sock });
    }
    let mut holder = tgid;
    for _ in 0..GENERATIONS {
        // SAFETY: a value pointer returned by the lookup.
        let link = unsafe { *FORKED.get_ptr(holder)? };
        let key = FdKey {
            tgid: link.parent,
            fd,
        };
        if let Some(sock) = FDS.get_ptr(key) {
            // SAFETY: as above.
            let sock = unsafe { *sock };
            track(tgid, fd, sock);
            return Some(sock);
        }
        if let Some(closed) = CLOSED_FDS.get_ptr(key) {
            // SAFETY: as above.
            let closed = unsafe { *closed };
            // Closed after this line forked: the copy inherited is open. Before: the fd number
            // names something else here.
            if closed.at_ns <= link.at_ns {
                return None;
            }
            track(tgid, fd, closed.sock);
            return Some(closed.sock);
        }
        holder = link.parent;
    }
    None
}

/// Where the held `socket()` behind `fd` of process `tgid` is kept: under the process's own
/// key, or under a forebear's that created the socket, forked this line of descent and still
/// holds it (a socket made before a fork and connected in the child, with a port filter that
/// decides only at the connect).
#[inline(always)]
pub fn held(tgid: u32, fd: i32) -> Option<FdKey> {
    let own = FdKey { tgid, fd };
    if HELD_SOCKETS.get_ptr(own).is_some() {
        return Some(own);
    }
    let mut holder = tgid;
    for _ in 0..GENERATIONS {
        // SAFETY: a value pointer returned by the lookup.
        let parent = unsafe { (*FORKED.get_ptr(holder)?).parent };
        let key = FdKey { tgid: parent, fd };
        if HELD_SOCKETS.get_ptr(key).is_some() {
            return Some(key);
        }
        holder = parent;
    }
    None
}

/// `fd` of process `tgid` was closed: no longer traced there, but still in the children it
/// forked before (see [`CLOSED_FDS`]).
#[inline(always)]
pub fn closed(tgid: u32, fd: i32) {
    let key = FdKey { tgid, fd };
    if let Some(sock) = FDS.get_ptr(key) {
        let closed = Closed {
            // SAFETY: a value pointer returned by the lookup just above.
            sock: unsafe { *sock },
            // SAFETY: a helper without arguments.
            at_ns: unsafe { bpf_ktime_get_ns() },
        };
        let _ = CLOSED_FDS.insert(key, closed, 0);
        let _ = FDS.remove(key);
    }
}

/// `sched:sched_process_fork`: the child of a process holding traced fds holds them too.
/// (Also runs for new threads; their entries are never looked up and age out.)
#[tracepoint]
pub fn sched_process_fork(ctx: TracePointContext) -> u32 {
    let parent = (bpf_get_current_pid_tgid() >> 32) as u32;
    if HOLDERS.get_ptr(parent).is_none() {
        return 0;
    }
    let child: u32 = field(&ctx, offsets::FORK_CHILD_PID);
    if child != 0 && child != parent {
        let link = Forked {
            parent,
            _pad: 0,
            // SAFETY: a helper without arguments.
            at_ns: unsafe { bpf_ktime_get_ns() },
        };
        count_if_refused(FORKED.insert(child, link, 0), Failure::FdsFull);
        count_if_refused(HOLDERS.insert(child, 1, 0), Failure::FdsFull);
    }
    0
}

/// `sched:sched_process_exec`: a new program does not inherit its parent's traced fd numbers
/// (most are close-on-exec, and the numbers get reused by its own files).
#[tracepoint]
pub fn sched_process_exec(_ctx: TracePointContext) -> u32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let _ = FORKED.remove(tgid);
    0
}
