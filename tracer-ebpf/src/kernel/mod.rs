//! The kernel layer: the TCP functions a traced socket reaches.
//!
//! One file per function holds the programs that watch the function itself (fentry/fexit,
//! kprobe/kretprobe) and any stand-in peculiar to it (`sock:sock_send_length` for
//! `tcp_sendmsg`). The generic stand-ins serve every function the loader's hook table points
//! them at: [`sock_ops`] (a sock_ops callback inside the function) and [`tracepoints`] (a
//! tracepoint that names the socket). The loader attaches one tier per function, never two.
//!
//! Only sockets already traced (in `SOCKS`) produce records. `struct sock` fields are read at
//! offsets the loader found in the running kernel's BTF (Rust eBPF has no CO-RE relocations).

mod ca_state;
mod congestion;
mod inet_csk_accept;
pub mod rcvbuf;
mod sock_ops;
mod tcp_close;
mod tcp_connect;
mod tcp_recvmsg;
mod tcp_sendmsg;
mod tracepoints;

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    programs::TracePointContext,
};
use tracer_common::{
    AF_INET, AF_INET6, KernelFn, SyscallOp, Via,
    failure::Failure,
    maps::{Owner, TALLY_SOCKS_ADDED},
    offsets::{
        SK_DADDR, SK_DPORT, SK_FAMILY, SK_NUM, SK_RCV_SADDR, SK_V6_DADDR, SK_V6_RCV_SADDR,
        SOCKLEN_FAMILY, SOCKLEN_PROTOCOL, SOCKLEN_RET, SOCKLEN_SK,
    },
    record::{FLAG_AT_SYSCALL_START, FLAG_BYTES, KernelRecord, Task, Tuple},
};

use crate::{
    context::{field, sk_field},
    emit::{count, emit, tally},
    filter::current_comm,
    maps::{INFLIGHT, SOCKS},
};

const IPPROTO_TCP: u16 = 6;

/// A kernel-layer record for traced socket `sk`, attributed to `owner`.
#[inline(always)]
fn record(sk: u64, owner: &Owner, func: KernelFn, via: Via) -> KernelRecord {
    let mut record = KernelRecord::new(func, via);
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    record.header.ts_ns = unsafe { bpf_ktime_get_ns() };
    record.header.sock = sk;
    record.header.task = *owner;
    record
}

/// The owner of `sk` if it is traced.
#[inline(always)]
fn traced(sk: u64) -> Option<Owner> {
    // SAFETY: a value pointer returned by the lookup, copied out at once.
    SOCKS.get_ptr(sk).map(|owner| unsafe { *owner })
}

/// The socket's 4-tuple, read at the BTF offsets (probe tiers).
#[inline(always)]
fn sock_tuple(sk: u64, tuple: &mut Tuple) {
    let family: u16 = sk_field(sk, SK_FAMILY);
    tuple.family = family;
    tuple.lport = sk_field(sk, SK_NUM);
    tuple.rport = u16::from_be(sk_field(sk, SK_DPORT));
    if family == AF_INET {
        tuple.laddr[..4].copy_from_slice(&sk_field::<[u8; 4]>(sk, SK_RCV_SADDR));
        tuple.raddr[..4].copy_from_slice(&sk_field::<[u8; 4]>(sk, SK_DADDR));
    } else if family == AF_INET6 {
        tuple.laddr = sk_field(sk, SK_V6_RCV_SADDR);
        tuple.raddr = sk_field(sk, SK_V6_DADDR);
    }
}

/// A record with the socket's 4-tuple for traced `sk`; `None` if `sk` is not traced.
#[inline(always)]
fn with_tuple(sk: u64, func: KernelFn, via: Via) -> Option<KernelRecord> {
    let owner = traced(sk)?;
    let mut record = record(sk, &owner, func, via);
    sock_tuple(sk, &mut record.tuple);
    Some(record)
}

/// The TCP socket and result of a `sock:sock_send_length`/`sock:sock_recv_length` record (the
/// two share one layout): the `tcp_sendmsg`/`tcp_recvmsg` stand-ins.
#[inline(always)]
fn sock_length(ctx: &TracePointContext) -> Option<(u64, i64)> {
    if field::<u16>(ctx, SOCKLEN_PROTOCOL) != IPPROTO_TCP {
        return None;
    }
    let family: u16 = field(ctx, SOCKLEN_FAMILY);
    if family != AF_INET && family != AF_INET6 {
        return None;
    }
    let sk: u64 = field(ctx, SOCKLEN_SK);
    Some((sk, i64::from(field::<i32>(ctx, SOCKLEN_RET))))
}

/// `tcp_sendmsg`/`tcp_recvmsg` (or their stand-ins) on `sk` moving `bytes` (negative: an
/// errno), in process context: names the task moving them, and ties its fd to the socket.
/// `fill` adds what the hook alone can see (the stream position on the probe tiers).
#[inline(always)]
fn moved(sk: u64, bytes: i64, func: KernelFn, via: Via, fill: impl FnOnce(&mut KernelRecord)) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    // Only a syscall that moves data can be the one this runs in: any other entry is one
    // whose exit the kernel skipped (its fd is not this socket's).
    let inflight = INFLIGHT.get_ptr(pid_tgid as u32).filter(|i| {
        // SAFETY: a value pointer returned by the lookup.
        SyscallOp::from_u8(unsafe { (**i).record.header.op }).is_some_and(SyscallOp::moves_data)
    });
    let (owner, adopted) = match traced(sk) {
        Some(owner) => (owner, false),
        // A socket open before the tracer started, used through a traced fd (found in /proc
        // at startup): the syscall in flight says so. Adopt it.
        None if inflight.is_some() => (Task::NONE, true),
        None => return,
    };
    // Bytes move in process context: the record names the task moving them.
    let current = Owner {
        pid: tgid,
        tid: pid_tgid as u32,
        comm: current_comm(),
    };
    if owner.pid == 0 {
        // The owner was guessed in softirq, or the socket just adopted; now we know it.
        match SOCKS.insert(sk, current, 0) {
            Ok(()) if adopted => tally(TALLY_SOCKS_ADDED),
            Ok(()) => {}
            Err(_) => count(Failure::SocketsFull),
        }
    }
    let mut record = record(sk, &current, func, via);
    record.header.flags |= FLAG_BYTES;
    record.bytes = bytes;
    fill(&mut record);
    if let Some(inflight) = inflight {
        // SAFETY: a value pointer returned by the lookup above.
        let (fd, start) = unsafe {
            (
                (*inflight).record.header.fd,
                (*inflight).record.header.ts_ns,
            )
        };
        record.header.fd = fd;
        if func == KernelFn::TcpSendmsg && via == Via::Tracepoint {
            // Its tracepoint fires when it returns, after the segments it sent: timed at
            // the start of its syscall, it reads before them.
            record.header.ts_ns = start + 1;
            record.header.flags |= FLAG_AT_SYSCALL_START;
        }
        if fd >= 0 {
            crate::fds::track(tgid, fd, sk);
        }
    }
    emit(&record);
    if func == KernelFn::TcpRecvmsg && bytes > 0 {
        rcvbuf::after_read(sk, &current, via);
    }
}
