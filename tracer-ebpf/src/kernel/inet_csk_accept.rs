//! `inet_csk_accept`: returns the connection `accept()` hands out. Stand-in: sock_ops
//! `PASSIVE_ESTABLISHED_CB`, when that child socket becomes ready (see `sock_ops`).

use aya_ebpf::{
    macros::{fexit, kretprobe},
    programs::{FExitContext, RetProbeContext},
};
use tracer_common::{KernelFn, Via};

use super::with_tuple;
use crate::emit::emit;

#[inline(always)]
fn accepted(sk: u64, via: Via) -> u32 {
    if sk == 0 {
        return 0;
    }
    if let Some(record) = with_tuple(sk, KernelFn::InetCskAccept, via) {
        emit(&record);
    }
    0
}

/// `fexit:inet_csk_accept`: its return value moved between arguments in 6.10; the helper
/// `bpf_get_func_ret` finds it wherever it is.
#[fexit(function = "inet_csk_accept")]
pub fn fexit_inet_csk_accept(ctx: FExitContext) -> u32 {
    accepted(ctx.ret::<u64>().unwrap_or(0), Via::Fexit)
}

/// `kretprobe:inet_csk_accept`
#[kretprobe]
pub fn kretprobe_inet_csk_accept(ctx: RetProbeContext) -> u32 {
    accepted(ctx.ret::<u64>(), Via::Kretprobe)
}
