//! `tcp_connect(sk)`: the source port is chosen and the initial sequence number set; the SYN
//! is about to be built. Stand-in: sock_ops `TCP_CONNECT_CB` (see `sock_ops`).

use aya_ebpf::{
    macros::{fentry, kprobe},
    programs::{FEntryContext, ProbeContext},
};
use tracer_common::{KernelFn, Via, offsets::TP_WRITE_SEQ, record::FLAG_ISN};

use super::with_tuple;
use crate::{context::sk_field, emit::emit, packets::watch_port_pair};

#[inline(always)]
fn connect(sk: u64, via: Via) -> u32 {
    let Some(mut record) = with_tuple(sk, KernelFn::TcpConnect, via) else {
        return 0;
    };
    // write_seq is the ISN until the first byte is queued.
    record.isn = sk_field::<u32>(sk, TP_WRITE_SEQ);
    record.header.flags |= FLAG_ISN;
    watch_port_pair(record.tuple.lport, record.tuple.rport);
    emit(&record);
    0
}

/// `fentry:tcp_connect`
#[fentry(function = "tcp_connect")]
pub fn fentry_tcp_connect(ctx: FEntryContext) -> u32 {
    connect(ctx.arg::<u64>(0), Via::Fentry)
}

/// `kprobe:tcp_connect`
#[kprobe]
pub fn kprobe_tcp_connect(ctx: ProbeContext) -> u32 {
    connect(ctx.arg::<u64>(0).unwrap_or(0), Via::Kprobe)
}
