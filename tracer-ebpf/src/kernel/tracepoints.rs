//! The tracepoint stand-in for functions whose tracepoint names only the socket
//! (`tcp:tcp_receive_reset`, `tcp:tcp_send_reset`, `tcp:tcp_destroy_sock`,
//! ...): one line per tracepoint below, all sharing one body.
//! `TRACEPOINT_FNS`, filled from the loader's hook table, says where the socket is in each
//! record and whether the socket is gone after it. (One program cannot serve several
//! tracepoints: for BPF the kernel overwrites the record's common fields, event id included.)

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use tracer_common::{KernelFn, Via, maps::TALLY_SOCKS_REMOVED};

use super::{record, traced};
use crate::{
    context::at,
    emit::{emit, tally},
    maps::{SOCKS, TRACEPOINT_FNS},
};

/// A tracepoint standing in for `func` fired: a record if its socket is traced.
#[inline(always)]
fn sock_tracepoint(ctx: &TracePointContext, func: KernelFn) -> u32 {
    let Some((sk, owner, forget)) = sock_of(ctx, func) else {
        return 0;
    };
    emit(&record(sk, &owner, func, Via::Tracepoint));
    if forget {
        if SOCKS.remove(sk).is_ok() {
            tally(TALLY_SOCKS_REMOVED);
        }
        super::rcvbuf::forget(sk);
        super::ca_state::forget(sk);
    }
    0
}

/// The traced socket a tracepoint standing in for `func` names, its owner, and whether it is
/// gone after it; `None` if the socket is not traced.
#[inline(always)]
fn sock_of(
    ctx: &TracePointContext,
    func: KernelFn,
) -> Option<(u64, tracer_common::maps::Owner, bool)> {
    // SAFETY: a value pointer returned by the lookup, copied out at once.
    let spec = TRACEPOINT_FNS.get_ptr(func as u32).map(|s| unsafe { *s })?;
    let sk: u64 = at(ctx, usize::from(spec.sk_offset));
    if sk == 0 {
        return None;
    }
    let owner = traced(sk)?;
    Some((sk, owner, spec.forget != 0))
}

macro_rules! sock_tracepoint {
    ($name:ident, $func:expr) => {
        #[doc = concat!("`tracepoint:tcp:", stringify!($name), "`")]
        #[tracepoint]
        pub fn $name(ctx: TracePointContext) -> u32 {
            sock_tracepoint(&ctx, $func)
        }
    };
}

sock_tracepoint!(tcp_receive_reset, KernelFn::TcpReceiveReset);
sock_tracepoint!(tcp_send_reset, KernelFn::TcpSendReset);
sock_tracepoint!(tcp_destroy_sock, KernelFn::TcpDestroySock);
