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

// An fexit program reads the return value right after the arguments, at a constant offset
// (`bpf_get_func_ret`, which finds it anywhere, needs 5.17), so there is one program per
// signature and the loader picks the one matching the kernel's BTF.

/// `fexit:inet_csk_accept(sk, arg)` (6.10 on).
#[fexit(function = "inet_csk_accept")]
pub fn fexit_inet_csk_accept(ctx: FExitContext) -> u32 {
    accepted(ctx.arg::<u64>(2), Via::Fexit)
}

/// `fexit:inet_csk_accept(sk, flags, err, kern)` (before 6.10).
#[fexit(function = "inet_csk_accept")]
pub fn fexit_inet_csk_accept_args4(ctx: FExitContext) -> u32 {
    accepted(ctx.arg::<u64>(4), Via::Fexit)
}

/// `kretprobe:inet_csk_accept`
#[kretprobe]
pub fn kretprobe_inet_csk_accept(ctx: RetProbeContext) -> u32 {
    accepted(ctx.ret::<u64>(), Via::Kretprobe)
}
