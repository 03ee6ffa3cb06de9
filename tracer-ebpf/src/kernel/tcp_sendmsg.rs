//! `tcp_sendmsg(sk, msg, size)`: the application's bytes are copied into the send queue.
//! Stand-in: `sock:sock_send_length` (6.3+), at the end of `sock_sendmsg`.

use aya_ebpf::{
    macros::{fentry, kprobe, tracepoint},
    programs::{FEntryContext, ProbeContext, TracePointContext},
};
use tracer_common::{KernelFn, Via, offsets::TP_WRITE_SEQ, record::FLAG_WRITE_SEQ};

use super::{moved, sock_length};
use crate::context::sk_field;

/// On the probe tiers: where these bytes start in the stream.
#[inline(always)]
fn sendmsg(sk: u64, size: u64, via: Via) -> u32 {
    moved(sk, size as i64, KernelFn::TcpSendmsg, via, |record| {
        record.write_seq = sk_field::<u32>(sk, TP_WRITE_SEQ);
        record.header.flags |= FLAG_WRITE_SEQ;
    });
    0
}

/// `fentry:tcp_sendmsg`
#[fentry(function = "tcp_sendmsg")]
pub fn fentry_tcp_sendmsg(ctx: FEntryContext) -> u32 {
    sendmsg(ctx.arg::<u64>(0), ctx.arg::<u64>(2), Via::Fentry)
}

/// `kprobe:tcp_sendmsg`
#[kprobe]
pub fn kprobe_tcp_sendmsg(ctx: ProbeContext) -> u32 {
    sendmsg(
        ctx.arg::<u64>(0).unwrap_or(0),
        ctx.arg::<u64>(2).unwrap_or(0),
        Via::Kprobe,
    )
}

/// `tracepoint:sock:sock_send_length`
#[tracepoint]
pub fn sock_send_length(ctx: TracePointContext) -> u32 {
    if let Some((sk, ret)) = sock_length(&ctx) {
        moved(sk, ret, KernelFn::TcpSendmsg, Via::Tracepoint, |_| {});
    }
    0
}
