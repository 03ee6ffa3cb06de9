//! `tcp_recvmsg(sk, msg, len, ...)`: bytes copied out of the receive queue, its return value.
//! Stand-in: `sock:sock_recv_length` (6.3+), at the end of `sock_recvmsg`.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{fexit, kprobe, kretprobe, map, tracepoint},
    maps::LruHashMap,
    programs::{FExitContext, ProbeContext, RetProbeContext, TracePointContext},
};
use tracer_common::{KernelFn, Via};

use super::{moved, sock_length, traced};
use crate::{handoff, maps::INFLIGHT};

/// `tcp_recvmsg`'s socket between kprobe and kretprobe, by thread.
#[map]
static RECV_SOCK: LruHashMap<u32, u64> = LruHashMap::with_max_entries(16384, 0);

#[inline(always)]
fn received(sk: u64, ret: i32) -> u32 {
    moved(sk, i64::from(ret), KernelFn::TcpRecvmsg, Via::Fexit, |_| {});
    0
}

// The return value follows the arguments in an fexit context, at a constant offset: one
// program per signature (see `inet_csk_accept`).

/// `fexit:tcp_recvmsg(sk, msg, len, flags)` (7.0 on: `addr_len` gone).
#[fexit(function = "tcp_recvmsg")]
pub fn fexit_tcp_recvmsg(ctx: FExitContext) -> u32 {
    received(ctx.arg::<u64>(0), ctx.arg::<i32>(4))
}

/// `fexit:tcp_recvmsg(sk, msg, len, flags, addr_len)` (5.19 to 6.x).
#[fexit(function = "tcp_recvmsg")]
pub fn fexit_tcp_recvmsg_args5(ctx: FExitContext) -> u32 {
    received(ctx.arg::<u64>(0), ctx.arg::<i32>(5))
}

/// `fexit:tcp_recvmsg(sk, msg, len, nonblock, flags, addr_len)` (before 5.19).
#[fexit(function = "tcp_recvmsg")]
pub fn fexit_tcp_recvmsg_args6(ctx: FExitContext) -> u32 {
    received(ctx.arg::<u64>(0), ctx.arg::<i32>(6))
}

/// `kprobe:tcp_recvmsg`: remembers the socket for the kretprobe.
#[kprobe]
pub fn kprobe_tcp_recvmsg(ctx: ProbeContext) -> u32 {
    let sk = ctx.arg::<u64>(0).unwrap_or(0);
    let tid = bpf_get_current_pid_tgid() as u32;
    if traced(sk).is_some() || INFLIGHT.get_ptr(tid).is_some() {
        handoff::keep(&RECV_SOCK, sk);
    }
    0
}

/// `kretprobe:tcp_recvmsg`
#[kretprobe]
pub fn kretprobe_tcp_recvmsg(ctx: RetProbeContext) -> u32 {
    let Some(sk) = handoff::take(&RECV_SOCK) else {
        return 0;
    };
    moved(
        sk,
        i64::from(ctx.ret::<i32>()),
        KernelFn::TcpRecvmsg,
        Via::Kretprobe,
        |_| {},
    );
    0
}

/// `tracepoint:sock:sock_recv_length`
#[tracepoint]
pub fn sock_recv_length(ctx: TracePointContext) -> u32 {
    if let Some((sk, ret)) = sock_length(&ctx) {
        moved(sk, ret, KernelFn::TcpRecvmsg, Via::Tracepoint, |_| {});
    }
    0
}
