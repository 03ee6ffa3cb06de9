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
    AF_INET, Event, FLAG_OWNER_GUESSED, FdKey, Hook, KernelFn, Layer, OFF_STATE_DADDR,
    OFF_STATE_DADDR6, OFF_STATE_DPORT, OFF_STATE_FAMILY, OFF_STATE_NEW, OFF_STATE_OLD,
    OFF_STATE_PROTOCOL, OFF_STATE_SADDR, OFF_STATE_SADDR6, OFF_STATE_SKADDR, OFF_STATE_SPORT,
    Owner, SyscallOp, tcp_state,
};

use crate::{
    context::field,
    emit::emit,
    filter::{config, current_comm, ports_match, ports_only, task_matches},
    maps::{FDS, INFLIGHT, LISTENERS, SOCKS},
    packets::watch_port_pair,
};

const IPPROTO_TCP: u16 = 6;

/// `tracepoint:sock:inet_sock_set_state`
#[tracepoint]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    if field::<u16>(&ctx, OFF_STATE_PROTOCOL) != IPPROTO_TCP {
        return 0;
    }
    let sk: u64 = field(&ctx, OFF_STATE_SKADDR);
    let old = field::<i32>(&ctx, OFF_STATE_OLD) as u8;
    let new = field::<i32>(&ctx, OFF_STATE_NEW) as u8;
    let sport: u16 = field(&ctx, OFF_STATE_SPORT);
    let dport: u16 = field(&ctx, OFF_STATE_DPORT);
    let pid_tgid = bpf_get_current_pid_tgid();

    let mut event = Event::zeroed();
    let owner = match SOCKS.get_ptr(sk) {
        // SAFETY: a value pointer returned by the lookup just above.
        Some(owner) => unsafe { *owner },
        None => match adopt(sk, old, new, sport, dport, pid_tgid) {
            Some((owner, guessed)) => {
                if guessed {
                    event.flags |= FLAG_OWNER_GUESSED;
                }
                owner
            }
            None => return 0,
        },
    };

    if owner.tgid == (pid_tgid >> 32) as u32
        && let Some(inflight) = INFLIGHT.get_ptr(pid_tgid as u32)
    {
        // The owner is inside a syscall that makes this very transition (connect, listen,
        // close...): this is where its fd learns which kernel socket it names.
        // SAFETY: a value pointer returned by the lookup just above.
        let (fd, op) = unsafe { ((*inflight).event.fd, (*inflight).event.op) };
        if fd >= 0 && syscall_makes(op, old, new) {
            event.fd = fd;
            let _ = FDS.insert(
                FdKey {
                    tgid: owner.tgid,
                    fd,
                },
                sk,
                0,
            );
        }
    }
    if sport != 0 && dport != 0 {
        watch_port_pair(sport, dport);
    }
    if new == tcp_state::LISTEN {
        let _ = LISTENERS.insert(sport, owner, 0);
    } else if old == tcp_state::LISTEN && new == tcp_state::CLOSE {
        let _ = LISTENERS.remove(sport);
    }

    event.ts_ns = unsafe { bpf_ktime_get_ns() };
    event.sock = sk;
    event.layer = Layer::State as u8;
    event.op = KernelFn::TcpSetState as u8;
    event.hook = Hook::TpInetSockSetState as u8;
    event.arg = old as u64;
    event.arg2 = new as u64;
    event.lport = sport;
    event.rport = dport;
    let family: u16 = field(&ctx, OFF_STATE_FAMILY);
    event.family = family as u8;
    if family == AF_INET {
        let s: [u8; 4] = field(&ctx, OFF_STATE_SADDR);
        let d: [u8; 4] = field(&ctx, OFF_STATE_DADDR);
        event.laddr[..4].copy_from_slice(&s);
        event.raddr[..4].copy_from_slice(&d);
    } else {
        event.laddr = field(&ctx, OFF_STATE_SADDR6);
        event.raddr = field(&ctx, OFF_STATE_DADDR6);
    }
    event.pid = owner.tgid;
    event.tid = owner.tid;
    event.comm = owner.comm;
    emit(&event);
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
    if !ports_match(&cfg, sport, dport) {
        return None;
    }
    let (owner, guessed) = if new == tcp_state::SYN_RECV {
        // A child socket, created in softirq from its listener.
        match LISTENERS.get_ptr(sport) {
            // SAFETY: a value pointer returned by the lookup just above.
            Some(listener) => (unsafe { *listener }, false),
            None if ports_only(&cfg) => (unknown_owner(), true),
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
                tgid,
                tid: pid_tgid as u32,
                comm,
            },
            false,
        )
    } else if ports_only(&cfg) {
        // A connection open before the tracer started.
        (unknown_owner(), true)
    } else {
        return None;
    };
    let _ = SOCKS.insert(sk, owner, 0);
    Some((owner, guessed))
}

#[inline(always)]
fn unknown_owner() -> Owner {
    Owner {
        tgid: 0,
        tid: 0,
        comm: [0; 16],
    }
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
