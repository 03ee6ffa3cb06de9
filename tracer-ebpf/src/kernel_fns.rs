//! The kernel layer on kernels without fentry/kprobes: each TCP function is observed through
//! the stand-in closest to it.
//!
//! | function          | stand-in                                             |
//! |-------------------|------------------------------------------------------|
//! | `tcp_connect`     | sock_ops `TCP_CONNECT_CB`, called inside `tcp_connect` |
//! | `inet_csk_accept` | sock_ops `PASSIVE_ESTABLISHED_CB`: the child socket is ready for `inet_csk_accept` |
//! | `tcp_sendmsg`     | `sock:sock_send_length`, at the end of `sock_sendmsg` |
//! | `tcp_recvmsg`     | `sock:sock_recv_length`, at the end of `sock_recvmsg` |
//! | `tcp_reset`       | `tcp:tcp_receive_reset`                               |
//! | `tcp_send_reset`  | `tcp:tcp_send_reset`                                  |
//! | `tcp_destroy_sock`| `tcp:tcp_destroy_sock`                                |
//! | `tcp_retransmit_skb` | `tcp:tcp_retransmit_skb`                           |
//!
//! Only sockets already traced (in `SOCKS`) produce records.

use aya_ebpf::{
    bindings::{BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB, BPF_SOCK_OPS_TCP_CONNECT_CB},
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::{sock_ops, tracepoint},
    programs::{SockOpsContext, TracePointContext},
};
use tracer_common::{
    AF_INET, AF_INET6, Event, FdKey, Hook, KernelFn, Layer, OFF_DESTROY_SKADDR, OFF_RETRANS_SKADDR,
    OFF_SENDRST_SKADDR, OFF_SOCKLEN_FAMILY, OFF_SOCKLEN_PROTOCOL, OFF_SOCKLEN_RET, OFF_SOCKLEN_SK,
    OFF_TCPSK_SKADDR, OFF_TP_WRITE_SEQ, Owner,
};

use crate::{
    context::{field, sk_field},
    emit::emit,
    filter::current_comm,
    maps::{FDS, INFLIGHT, SOCK_OPS_FUNCS, SOCKS},
    packets::watch_port_pair,
};

const IPPROTO_TCP: u16 = 6;

/// A kernel-layer record for traced socket `sk`, attributed to its owner.
#[inline(always)]
pub fn record(sk: u64, owner: &Owner, func: KernelFn, hook: Hook) -> Event {
    let mut event = Event::zeroed();
    event.ts_ns = unsafe { bpf_ktime_get_ns() };
    event.sock = sk;
    event.layer = Layer::Kernel as u8;
    event.op = func as u8;
    event.hook = hook as u8;
    event.pid = owner.tgid;
    event.tid = owner.tid;
    event.comm = owner.comm;
    event
}

/// The owner of `sk` if it is traced.
#[inline(always)]
pub fn traced(sk: u64) -> Option<Owner> {
    // SAFETY: a value pointer returned by the lookup, copied out at once.
    SOCKS.get_ptr(sk).map(|owner| unsafe { *owner })
}

/// sock_ops on the cgroup2 root: `tcp_connect` and the passive side's `inet_csk_accept`.
#[sock_ops]
pub fn tcp_fn_sock_ops(ctx: SockOpsContext) -> u32 {
    let op = ctx.op();
    let (func, hook, bit) = if op == BPF_SOCK_OPS_TCP_CONNECT_CB {
        (KernelFn::TcpConnect, Hook::SockOpsTcpConnect, 1)
    } else if op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB {
        (KernelFn::InetCskAccept, Hook::SockOpsPassiveEstablished, 2)
    } else {
        return 1;
    };
    // SAFETY: a value pointer into an array map, read once.
    let wanted = SOCK_OPS_FUNCS
        .get_ptr(0)
        .map(|v| unsafe { *v })
        .unwrap_or(0);
    if wanted & bit == 0 {
        return 1;
    }
    // SAFETY: `ctx.ops` is the program's context; `sk` is only used as an identity.
    let sk = unsafe { (*ctx.ops).__bindgen_anon_2.sk } as u64;
    let Some(owner) = traced(sk) else {
        return 1;
    };
    let mut event = record(sk, &owner, func, hook);
    let family = ctx.family() as u16;
    event.family = family as u8;
    event.lport = ctx.local_port() as u16;
    event.rport = u16::from_be((ctx.remote_port() >> 16) as u16);
    if family == AF_INET {
        event.laddr[..4].copy_from_slice(&ctx.local_ip4().to_ne_bytes());
        event.raddr[..4].copy_from_slice(&ctx.remote_ip4().to_ne_bytes());
    } else if family == AF_INET6 {
        // The context only allows 4-byte loads here: volatile reads stop LLVM from merging
        // neighbouring words into one 8-byte load the verifier would reject.
        for i in 0..4 {
            // SAFETY: in-bounds reads of the program's own context.
            let (l, r) = unsafe {
                (
                    core::ptr::read_volatile(&(*ctx.ops).local_ip6[i]),
                    core::ptr::read_volatile(&(*ctx.ops).remote_ip6[i]),
                )
            };
            event.laddr[i * 4..i * 4 + 4].copy_from_slice(&l.to_ne_bytes());
            event.raddr[i * 4..i * 4 + 4].copy_from_slice(&r.to_ne_bytes());
        }
    }
    if func == KernelFn::TcpConnect {
        // The SYN is about to leave: its port pair must already pass the packet filter.
        watch_port_pair(event.lport, event.rport);
    }
    emit(&event);
    1
}

/// `sock_send_length`/`sock_recv_length`: bytes moved through a traced TCP socket.
#[inline(always)]
fn sock_length(ctx: &TracePointContext, func: KernelFn, hook: Hook) -> u32 {
    if field::<u16>(ctx, OFF_SOCKLEN_PROTOCOL) != IPPROTO_TCP {
        return 0;
    }
    let family: u16 = field(ctx, OFF_SOCKLEN_FAMILY);
    if family != AF_INET && family != AF_INET6 {
        return 0;
    }
    let sk: u64 = field(ctx, OFF_SOCKLEN_SK);
    let ret = field::<i32>(ctx, OFF_SOCKLEN_RET);
    moved(sk, i64::from(ret), func, hook)
}

/// `tcp_sendmsg`/`tcp_recvmsg` (or their stand-ins) on `sk` moving `bytes` (negative: an
/// errno), in process context: name the task moving them, and tie its fd to the socket.
#[inline(always)]
pub fn moved(sk: u64, bytes: i64, func: KernelFn, hook: Hook) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    let inflight = INFLIGHT.get_ptr(pid_tgid as u32);
    let mut owner = match traced(sk) {
        Some(owner) => owner,
        // A socket open before the tracer started, used through a traced fd (found in /proc
        // at startup): the syscall in flight says so. Adopt it.
        None if inflight.is_some() => Owner {
            tgid: 0,
            tid: 0,
            comm: [0; 16],
        },
        None => return 0,
    };
    let comm = current_comm();
    if owner.tgid == 0 {
        // The owner was guessed in softirq, or the socket just adopted; now we know it.
        owner = Owner {
            tgid,
            tid: pid_tgid as u32,
            comm,
        };
        let _ = SOCKS.insert(sk, owner, 0);
    }
    let mut event = record(sk, &owner, func, hook);
    event.pid = tgid;
    event.tid = pid_tgid as u32;
    event.comm = comm;
    event.ret = bytes;
    if func == KernelFn::TcpSendmsg && hook.is_probe() {
        // Where these bytes start in the stream (offsets exist on the probe tiers only).
        event.arg = u64::from(sk_field::<u32>(sk, OFF_TP_WRITE_SEQ));
    }
    if let Some(inflight) = inflight {
        // SAFETY: a value pointer returned by the lookup above.
        let fd = unsafe { (*inflight).event.fd };
        event.fd = fd;
        if fd >= 0 {
            let _ = FDS.insert(FdKey { tgid, fd }, sk, 0);
        }
    }
    emit(&event);
    0
}

/// `tracepoint:sock:sock_send_length`, the `tcp_sendmsg` stand-in.
#[tracepoint]
pub fn sock_send_length(ctx: TracePointContext) -> u32 {
    sock_length(&ctx, KernelFn::TcpSendmsg, Hook::TpSockSendLength)
}

/// `tracepoint:sock:sock_recv_length`, the `tcp_recvmsg` stand-in.
#[tracepoint]
pub fn sock_recv_length(ctx: TracePointContext) -> u32 {
    sock_length(&ctx, KernelFn::TcpRecvmsg, Hook::TpSockRecvLength)
}

/// A tracepoint naming a socket at field `off`: a record if the socket is traced.
#[inline(always)]
fn sock_tracepoint(ctx: &TracePointContext, off: usize, func: KernelFn, hook: Hook) -> u32 {
    let sk: u64 = field(ctx, off);
    if sk == 0 {
        return 0;
    }
    let Some(owner) = traced(sk) else {
        return 0;
    };
    let event = record(sk, &owner, func, hook);
    emit(&event);
    if func == KernelFn::TcpDestroySock {
        let _ = SOCKS.remove(sk);
    }
    0
}

/// `tracepoint:tcp:tcp_receive_reset`
#[tracepoint]
pub fn tcp_receive_reset(ctx: TracePointContext) -> u32 {
    sock_tracepoint(
        &ctx,
        OFF_TCPSK_SKADDR,
        KernelFn::TcpReceiveReset,
        Hook::TpTcpReceiveReset,
    )
}

/// `tracepoint:tcp:tcp_send_reset`
#[tracepoint]
pub fn tcp_send_reset(ctx: TracePointContext) -> u32 {
    sock_tracepoint(
        &ctx,
        OFF_SENDRST_SKADDR,
        KernelFn::TcpSendReset,
        Hook::TpTcpSendReset,
    )
}

/// `tracepoint:tcp:tcp_destroy_sock`: also forgets the socket.
#[tracepoint]
pub fn tcp_destroy_sock(ctx: TracePointContext) -> u32 {
    sock_tracepoint(
        &ctx,
        OFF_DESTROY_SKADDR,
        KernelFn::TcpDestroySock,
        Hook::TpTcpDestroySock,
    )
}

/// `tracepoint:tcp:tcp_retransmit_skb`
#[tracepoint]
pub fn tcp_retransmit_skb(ctx: TracePointContext) -> u32 {
    sock_tracepoint(
        &ctx,
        OFF_RETRANS_SKADDR,
        KernelFn::TcpRetransmitSkb,
        Hook::TpTcpRetransmitSkb,
    )
}
