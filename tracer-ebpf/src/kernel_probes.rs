//! The kernel layer on kernels with BPF trampolines or kprobes: the TCP functions themselves,
//! with their arguments and return values. The loader attaches one tier per function (fentry,
//! else kprobe, else the stand-ins in `kernel_fns`), never two.
//!
//! `struct sock` fields are read at offsets the loader found in the running kernel's BTF (Rust
//! eBPF has no CO-RE relocations).

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{fentry, fexit, kprobe, kretprobe, map},
    maps::LruHashMap,
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext},
};
use tracer_common::{
    AF_INET, AF_INET6, Event, Hook, KernelFn, OFF_SK_DADDR, OFF_SK_DPORT, OFF_SK_FAMILY,
    OFF_SK_NUM, OFF_SK_RCV_SADDR, OFF_SK_V6_DADDR, OFF_SK_V6_RCV_SADDR, OFF_TP_WRITE_SEQ, Owner,
};

use crate::{
    context::sk_field,
    emit::emit,
    kernel_fns::{moved, record, traced},
    maps::INFLIGHT,
    packets::watch_port_pair,
};

/// `tcp_recvmsg`'s socket between kprobe and kretprobe, by thread.
#[map]
static RECV_SOCK: LruHashMap<u32, u64> = LruHashMap::with_max_entries(16384, 0);

/// A kernel record for traced `sk` with its 4-tuple read from the socket.
#[inline(always)]
fn sock_record(sk: u64, owner: &Owner, func: KernelFn, hook: Hook) -> Event {
    let mut event = record(sk, owner, func, hook);
    let family: u16 = sk_field(sk, OFF_SK_FAMILY);
    event.family = family as u8;
    event.lport = sk_field(sk, OFF_SK_NUM);
    event.rport = u16::from_be(sk_field(sk, OFF_SK_DPORT));
    if family == AF_INET {
        event.laddr[..4].copy_from_slice(&sk_field::<[u8; 4]>(sk, OFF_SK_RCV_SADDR));
        event.raddr[..4].copy_from_slice(&sk_field::<[u8; 4]>(sk, OFF_SK_DADDR));
    } else if family == AF_INET6 {
        event.laddr = sk_field(sk, OFF_SK_V6_RCV_SADDR);
        event.raddr = sk_field(sk, OFF_SK_V6_DADDR);
    }
    event
}

/// `tcp_connect(sk)`: the source port is chosen and the initial sequence number set.
#[inline(always)]
fn connect(sk: u64, hook: Hook) -> u32 {
    let Some(owner) = traced(sk) else {
        return 0;
    };
    let mut event = sock_record(sk, &owner, KernelFn::TcpConnect, hook);
    event.arg = u64::from(sk_field::<u32>(sk, OFF_TP_WRITE_SEQ));
    watch_port_pair(event.lport, event.rport);
    emit(&event);
    0
}

/// `inet_csk_accept` returned `sk`, the connection `accept()` hands out.
#[inline(always)]
fn accepted(sk: u64, hook: Hook) -> u32 {
    if sk == 0 {
        return 0;
    }
    let Some(owner) = traced(sk) else {
        return 0;
    };
    emit(&sock_record(sk, &owner, KernelFn::InetCskAccept, hook));
    0
}

/// `tcp_close(sk, timeout)`: the application let go of the socket.
#[inline(always)]
fn close(sk: u64, hook: Hook) -> u32 {
    let Some(owner) = traced(sk) else {
        return 0;
    };
    emit(&record(sk, &owner, KernelFn::TcpClose, hook));
    0
}

/// `fentry:tcp_connect`
#[fentry(function = "tcp_connect")]
pub fn fentry_tcp_connect(ctx: FEntryContext) -> u32 {
    connect(ctx.arg::<u64>(0), Hook::Fentry)
}

/// `fexit:inet_csk_accept`: its return value moved between arguments in 6.10; the helper
/// `bpf_get_func_ret` finds it wherever it is.
#[fexit(function = "inet_csk_accept")]
pub fn fexit_inet_csk_accept(ctx: FExitContext) -> u32 {
    accepted(ctx.ret::<u64>().unwrap_or(0), Hook::Fexit)
}

/// `fentry:tcp_sendmsg(sk, msg, size)`
#[fentry(function = "tcp_sendmsg")]
pub fn fentry_tcp_sendmsg(ctx: FEntryContext) -> u32 {
    moved(
        ctx.arg::<u64>(0),
        ctx.arg::<u64>(2) as i64,
        KernelFn::TcpSendmsg,
        Hook::Fentry,
    )
}

/// `fexit:tcp_recvmsg`: bytes copied to the application.
#[fexit(function = "tcp_recvmsg")]
pub fn fexit_tcp_recvmsg(ctx: FExitContext) -> u32 {
    let ret = ctx.ret::<i32>().unwrap_or(0);
    moved(
        ctx.arg::<u64>(0),
        i64::from(ret),
        KernelFn::TcpRecvmsg,
        Hook::Fexit,
    )
}

/// `fentry:tcp_close`
#[fentry(function = "tcp_close")]
pub fn fentry_tcp_close(ctx: FEntryContext) -> u32 {
    close(ctx.arg::<u64>(0), Hook::Fentry)
}

/// `kprobe:tcp_connect`
#[kprobe]
pub fn kprobe_tcp_connect(ctx: ProbeContext) -> u32 {
    connect(ctx.arg::<u64>(0).unwrap_or(0), Hook::Kprobe)
}

/// `kretprobe:inet_csk_accept`
#[kretprobe]
pub fn kretprobe_inet_csk_accept(ctx: RetProbeContext) -> u32 {
    accepted(ctx.ret::<u64>(), Hook::Kretprobe)
}

/// `kprobe:tcp_sendmsg`
#[kprobe]
pub fn kprobe_tcp_sendmsg(ctx: ProbeContext) -> u32 {
    moved(
        ctx.arg::<u64>(0).unwrap_or(0),
        ctx.arg::<u64>(2).unwrap_or(0) as i64,
        KernelFn::TcpSendmsg,
        Hook::Kprobe,
    )
}

/// `kprobe:tcp_recvmsg`: remembers the socket for the kretprobe.
#[kprobe]
pub fn kprobe_tcp_recvmsg(ctx: ProbeContext) -> u32 {
    let sk = ctx.arg::<u64>(0).unwrap_or(0);
    if traced(sk).is_some()
        || INFLIGHT
            .get_ptr(bpf_get_current_pid_tgid() as u32)
            .is_some()
    {
        let _ = RECV_SOCK.insert(bpf_get_current_pid_tgid() as u32, sk, 0);
    }
    0
}

/// `kretprobe:tcp_recvmsg`
#[kretprobe]
pub fn kretprobe_tcp_recvmsg(ctx: RetProbeContext) -> u32 {
    let tid = bpf_get_current_pid_tgid() as u32;
    let Some(sk) = RECV_SOCK.get_ptr(tid) else {
        return 0;
    };
    // SAFETY: a value pointer returned by the lookup just above.
    let sk = unsafe { *sk };
    let _ = RECV_SOCK.remove(tid);
    moved(
        sk,
        i64::from(ctx.ret::<i32>()),
        KernelFn::TcpRecvmsg,
        Hook::Kretprobe,
    )
}

/// `kprobe:tcp_close`
#[kprobe]
pub fn kprobe_tcp_close(ctx: ProbeContext) -> u32 {
    close(ctx.arg::<u64>(0).unwrap_or(0), Hook::Kprobe)
}
