//! The state layer: `sock:inet_sock_set_state`, the tracepoint inside `tcp_set_state`.
//!
//! This is also where sockets become traced. Tracepoints cannot tell softirq from process
//! context here (their common fields are not filled for BPF), so ownership follows the
//! transitions only a task's own syscall makes: CLOSE → SYN_SENT (connect) and CLOSE → LISTEN
//! (listen) belong to the running task; a child entering SYN_RECV belongs to its listener's
//! owner; anything else to whoever owned the socket before.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::tracepoint,
    programs::TracePointContext,
};
use tracer_common::{
    AF_INET, KernelFn, SyscallOp, Via,
    failure::Failure,
    maps::{Owner, TALLY_SOCKS_ADDED},
    offsets::{
        STATE_DADDR, STATE_DADDR6, STATE_DPORT, STATE_FAMILY, STATE_NEW, STATE_OLD, STATE_PROTOCOL,
        STATE_SADDR, STATE_SADDR6, STATE_SKADDR, STATE_SPORT,
    },
    record::{FLAG_OWNER_GUESSED, Header, RecordKind, StateRecord, Task, Tuple},
    tcp_state,
};

use crate::{
    context::field,
    emit::{count, count_if_refused, emit, tally},
    filter::{config, current_comm, netns_matches, ports_match, ports_only, task_matches},
    maps::{INFLIGHT, LISTENERS, SOCKS, STATE_SCRATCH},
    packets::watch_port_pair,
};

const IPPROTO_TCP: u16 = 6;

/// `tracepoint:sock:inet_sock_set_state`
#[tracepoint]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    if field::<u16>(&ctx, STATE_PROTOCOL) != IPPROTO_TCP {
        return 0;
    }
    let sk: u64 = field(&ctx, STATE_SKADDR);
    let old = field::<i32>(&ctx, STATE_OLD) as u8;
    let new = field::<i32>(&ctx, STATE_NEW) as u8;
    let sport: u16 = field(&ctx, STATE_SPORT);
    let dport: u16 = field(&ctx, STATE_DPORT);
    let pid_tgid = bpf_get_current_pid_tgid();

    let Some(record) = STATE_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: this CPU's slot, which no other run uses meanwhile (see STATE_SCRATCH).
    let record = unsafe { &mut *record };
    *record = StateRecord {
        header: Header::new(
            RecordKind::State,
            Via::Tracepoint,
            KernelFn::TcpSetState as u8,
        ),
        tuple: Tuple::EMPTY,
        old,
        new,
        _pad: [0; 6],
    };
    let owner = match SOCKS.get_ptr(sk) {
        // SAFETY: a value pointer returned by the lookup just above.
        Some(owner) => unsafe { *owner },
        None => match adopt(sk, old, new, sport, dport, pid_tgid) {
            Some((owner, guessed)) => {
                if guessed {
                    record.header.flags |= FLAG_OWNER_GUESSED;
                }
                owner
            }
            None => return 0,
        },
    };

    if owner.pid == (pid_tgid >> 32) as u32
        && let Some(inflight) = INFLIGHT.get_ptr(pid_tgid as u32)
    {
        // The owner is inside a syscall that makes this very transition (connect, listen,
        // close...): this is where its fd learns which kernel socket it names.
        // SAFETY: a value pointer returned by the lookup just above.
        let (fd, op) = unsafe { ((*inflight).record.header.fd, (*inflight).record.header.op) };
        if fd >= 0 && syscall_makes(op, old, new) {
            record.header.fd = fd;
            // Not a close's fd: it was forgotten at the close's start and is not this
            // socket's any more (another thread may have it already).
            if op != SyscallOp::Close as u8 {
                crate::fds::track(owner.pid, fd, sk);
            }
        }
    }
    if sport != 0 && dport != 0 {
        watch_port_pair(sport, dport);
    }
    if new == tcp_state::ESTABLISHED {
        crate::kernel::rcvbuf::established(sk);
    }
    if new == tcp_state::LISTEN {
        count_if_refused(LISTENERS.insert(sport, owner, 0), Failure::SocketsFull);
    } else if old == tcp_state::LISTEN && new == tcp_state::CLOSE {
        let _ = LISTENERS.remove(sport);
    }

    let h = &mut record.header;
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    h.ts_ns = unsafe { bpf_ktime_get_ns() };
    h.sock = sk;
    h.task = owner;
    let t = &mut record.tuple;
    t.lport = sport;
    t.rport = dport;
    let family: u16 = field(&ctx, STATE_FAMILY);
    t.family = family;
    if family == AF_INET {
        let s: [u8; 4] = field(&ctx, STATE_SADDR);
        let d: [u8; 4] = field(&ctx, STATE_DADDR);
        t.laddr[..4].copy_from_slice(&s);
        t.raddr[..4].copy_from_slice(&d);
    } else {
        t.laddr = field(&ctx, STATE_SADDR6);
        t.raddr = field(&ctx, STATE_DADDR6);
    }
    emit(record);
    0
}

/// Decides whether a socket seen for the first time is to be traced, and who owns it.
/// Returns the owner and whether it is a guess.
#[inline(always)]
fn adopt(
    sk: u64,
    old: u8,
    new: u8,
    sport: u16,
    dport: u16,
    pid_tgid: u64,
) -> Option<(Owner, bool)> {
    let cfg = config();
    // The socket's own namespace: a child (created in softirq) is checked too, and two
    // listeners on one port in two namespaces share a LISTENERS entry.
    if !ports_match(&cfg, sport, dport) || !netns_matches(&cfg, sk) {
        return None;
    }
    let (owner, guessed) = if new == tcp_state::SYN_RECV {
        // A child socket, created in softirq from its listener.
        match LISTENERS.get_ptr(sport) {
            // SAFETY: a value pointer returned by the lookup just above.
            Some(listener) => (unsafe { *listener }, false),
            None if ports_only(&cfg) => (Task::NONE, true),
            None => return None,
        }
    } else if old == tcp_state::CLOSE && (new == tcp_state::SYN_SENT || new == tcp_state::LISTEN) {
        let comm = current_comm();
        let tgid = (pid_tgid >> 32) as u32;
        if !task_matches(&cfg, tgid, &comm) {
            return None;
        }
        (
            Owner {
                pid: tgid,
                tid: pid_tgid as u32,
                comm,
            },
            false,
        )
    } else if ports_only(&cfg) {
        // A connection open before the tracer started.
        (Task::NONE, true)
    } else {
        return None;
    };
    match SOCKS.insert(sk, owner, 0) {
        Ok(()) => tally(TALLY_SOCKS_ADDED),
        Err(_) => count(Failure::SocketsFull),
    }
    Some((owner, guessed))
}

/// Whether syscall `op` itself performs the transition `old` → `new` on its own socket (as
/// opposed to softirq work on another socket that happens to run inside the syscall).
#[inline(always)]
fn syscall_makes(op: u8, old: u8, new: u8) -> bool {
    use tcp_state::*;
    if op == SyscallOp::Connect as u8 {
        old == CLOSE && new == SYN_SENT
    } else if op == SyscallOp::Listen as u8 {
        old == CLOSE && new == LISTEN
    } else if op == SyscallOp::Close as u8 || op == SyscallOp::Shutdown as u8 {
        new == FIN_WAIT1
            || new == LAST_ACK
            || (new == CLOSE
                && (old == LISTEN || old == SYN_SENT || old == ESTABLISHED || old == CLOSE_WAIT))
    } else {
        false
    }
}
