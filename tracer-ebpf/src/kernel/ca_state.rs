//! Congestion-state changes where the kernel has no `tcp:tcp_cong_state_set` tracepoint (5.10):
//! the state is set by an inline function, so the functions that decide it are watched
//! instead — `tcp_fastretrans_alert` (every ACK while the state is not Open, and the dubious
//! ones in Open: Disorder, Recovery, and back to Open), `tcp_enter_loss` (the RTO) and
//! `tcp_enter_cwr` (ECN, local congestion) — and when one returns the state in force is
//! compared with the last one seen. Two changes inside one call (Open → Disorder → Recovery)
//! are seen as one; a change made elsewhere is seen at the next of these calls.

use aya_ebpf::{
    macros::{fexit, kprobe, kretprobe, map},
    maps::LruHashMap,
    programs::{FExitContext, ProbeContext, RetProbeContext},
};
use tracer_common::{KernelFn, Via, failure::Failure};

use super::{
    congestion::{ca_state, snapshot},
    traced,
};
use crate::{
    emit::{count_if_refused, emit},
    handoff,
};

/// `TCP_CA_Open`: every connection starts in it.
const OPEN: u8 = 0;

/// The congestion state last seen of each traced socket not in Open.
#[map]
static CA_STATE: LruHashMap<u64, u8> = LruHashMap::with_max_entries(4096, 0);

/// The socket between kprobe and kretprobe, by thread.
#[map]
static DECIDING: LruHashMap<u32, u64> = LruHashMap::with_max_entries(1024, 0);

/// A function that may have changed `sk`'s congestion state returned (hook `via`): a record
/// if the state differs from the last seen.
#[inline(always)]
fn decided(sk: u64, via: Via) -> u32 {
    let Some(owner) = traced(sk) else {
        return 0;
    };
    let now = ca_state(sk);
    // SAFETY: a value pointer returned by the lookup, copied out at once.
    let before = CA_STATE.get_ptr(sk).map_or(OPEN, |s| unsafe { *s });
    if now == before {
        return 0;
    }
    let mut r = snapshot(sk, &owner, KernelFn::TcpSetCaState);
    r.header.via = via as u8;
    r.ca_state = now;
    emit(&r);
    if now == OPEN {
        let _ = CA_STATE.remove(sk);
    } else {
        count_if_refused(CA_STATE.insert(sk, now, 0), Failure::SocketsFull);
    }
    0
}

/// The socket is gone.
#[inline(always)]
pub fn forget(sk: u64) {
    let _ = CA_STATE.remove(sk);
}

/// `fexit:tcp_fastretrans_alert(sk, ...)`
#[fexit(function = "tcp_fastretrans_alert")]
pub fn fexit_tcp_fastretrans_alert(ctx: FExitContext) -> u32 {
    decided(ctx.arg::<u64>(0), Via::Fexit)
}

/// `fexit:tcp_enter_loss(sk)`
#[fexit(function = "tcp_enter_loss")]
pub fn fexit_tcp_enter_loss(ctx: FExitContext) -> u32 {
    decided(ctx.arg::<u64>(0), Via::Fexit)
}

/// `fexit:tcp_enter_cwr(sk)`
#[fexit(function = "tcp_enter_cwr")]
pub fn fexit_tcp_enter_cwr(ctx: FExitContext) -> u32 {
    decided(ctx.arg::<u64>(0), Via::Fexit)
}

/// `kprobe:` each of those functions: remembers a traced socket for the kretprobe (none of
/// them calls another).
#[kprobe]
pub fn kprobe_ca_state(ctx: ProbeContext) -> u32 {
    let sk = ctx.arg::<u64>(0).unwrap_or(0);
    if traced(sk).is_some() {
        handoff::keep(&DECIDING, sk);
    }
    0
}

/// `kretprobe:` each of those functions.
#[kretprobe]
pub fn kretprobe_ca_state(_ctx: RetProbeContext) -> u32 {
    let Some(sk) = handoff::take(&DECIDING) else {
        return 0;
    };
    decided(sk, Via::Kretprobe)
}
