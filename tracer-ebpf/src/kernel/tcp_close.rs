//! `tcp_close(sk, timeout)`: the application let go of the socket. No stand-in exists; the
//! `close()` syscall and the state change show it on the tracepoint tier.

use aya_ebpf::{
    macros::{fentry, kprobe},
    programs::{FEntryContext, ProbeContext},
};
use tracer_common::{KernelFn, Via};

use super::{record, traced};
use crate::emit::emit;

#[inline(always)]
fn close(sk: u64, via: Via) -> u32 {
    if let Some(owner) = traced(sk) {
        emit(&record(sk, &owner, KernelFn::TcpClose, via));
    }
    0
}

/// `fentry:tcp_close`
#[fentry(function = "tcp_close")]
pub fn fentry_tcp_close(ctx: FEntryContext) -> u32 {
    close(ctx.arg::<u64>(0), Via::Fentry)
}

/// `kprobe:tcp_close`
#[kprobe]
pub fn kprobe_tcp_close(ctx: ProbeContext) -> u32 {
    close(ctx.arg::<u64>(0).unwrap_or(0), Via::Kprobe)
}
