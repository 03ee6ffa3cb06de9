//! What TCP does about loss and congestion on a traced connection, from the `tcp:`
//! tracepoints every tier has: a retransmission (`tcp_retransmit_skb`, with the segment resent;
//! `tcp_retransmit_synack`, a listener's SYN-ACK), a congestion-state change
//! (`tcp_cong_state_set`, 6.3+), and a sample of the numbers when an ACK arrives
//! (`tcp_probe`), rate-limited per connection.
//!
//! They are attached as raw tracepoints: their arguments are the socket itself, and the kernel
//! guards each raw tracepoint program on its own. A perf-attached tracepoint program is
//! skipped whenever any other such program runs on that CPU, and these fire in softirq, which
//! interrupts the syscall layer's programs: `tcp_probe` lost samples that way.
//!
//! Each record carries the socket's numbers at that moment, read at offsets from the kernel's
//! BTF: cwnd, ssthresh, RTT, RTO, what is in flight, both windows, and the algorithm's name.
//! Why a retransmission happened is told by the congestion state it happened in; user space
//! names it.

use aya_ebpf::{helpers::bpf_ktime_get_ns, macros::raw_tracepoint, programs::RawTracePointContext};
use tracer_common::{
    KernelFn, Via,
    failure::Failure,
    maps::{Owner, Sampled},
    offsets::{
        CA_OPS_NAME, ICSK_CA_OPS, ICSK_CA_STATE_BYTE, ICSK_CA_STATE_SHIFT, ICSK_RTO, REQ_SNT_ISN,
        RETRANS_HAS_ERR, SK_RCVBUF, SK_STATE, SKB_CB, TP_MDEV_US, TP_MSS_CACHE, TP_PACKETS_OUT,
        TP_RATE_DELIVERED, TP_RATE_INTERVAL_US, TP_RCV_WND, TP_RCVQ_SPACE, TP_RETRANS_OUT,
        TP_SND_CWND, TP_SND_NXT, TP_SND_SSTHRESH, TP_SND_UNA, TP_SND_WND, TP_SRTT_US,
        TP_TOTAL_RETRANS,
    },
    record::{CongestionRecord, FLAG_ISN, FLAG_OWNER_GUESSED, KernelRecord, Task},
};

use super::{sock_tuple, traced};
use crate::{
    context::{kernel_field, offset, sk_field},
    emit::{count_if_refused, emit},
    filter::{config, netns_matches, ports_match, ports_only},
    maps::SAMPLED,
};

/// The traced socket in a `tcp:` raw tracepoint's first argument, and its owner.
#[inline(always)]
fn traced_sock(ctx: &RawTracePointContext) -> Option<(u64, Owner)> {
    let sk: u64 = ctx.arg(0);
    if sk == 0 {
        return None;
    }
    Some((sk, traced(sk)?))
}

/// The congestion state in force, from its bit field.
#[inline(always)]
pub(super) fn ca_state(sk: u64) -> u8 {
    let byte: u8 = sk_field(sk, ICSK_CA_STATE_BYTE);
    // Five bits wide since 5.x (six before); every state fits in the low three.
    (byte >> (offset(ICSK_CA_STATE_SHIFT) & 7)) & 7
}

/// A record of `func` for traced `sk` with the socket's numbers now.
#[inline(always)]
pub(super) fn snapshot(sk: u64, owner: &Owner, func: KernelFn) -> CongestionRecord {
    let mut r = CongestionRecord::new(func, Via::RawTracepoint);
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    r.header.ts_ns = unsafe { bpf_ktime_get_ns() };
    r.header.sock = sk;
    r.header.task = *owner;
    r.seq = sk_field(sk, TP_SND_UNA);
    r.end_seq = sk_field(sk, TP_SND_NXT);
    r.cwnd = sk_field(sk, TP_SND_CWND);
    r.ssthresh = sk_field(sk, TP_SND_SSTHRESH);
    r.srtt_us8 = sk_field(sk, TP_SRTT_US);
    r.mdev_us4 = sk_field(sk, TP_MDEV_US);
    r.rto_jiffies = sk_field(sk, ICSK_RTO);
    r.packets_out = sk_field(sk, TP_PACKETS_OUT);
    r.retrans_out = sk_field(sk, TP_RETRANS_OUT);
    r.total_retrans = sk_field(sk, TP_TOTAL_RETRANS);
    r.snd_wnd = sk_field(sk, TP_SND_WND);
    r.rcv_wnd = sk_field(sk, TP_RCV_WND);
    r.mss = sk_field(sk, TP_MSS_CACHE);
    r.ca_state = ca_state(sk);
    r.sk_state = sk_field(sk, SK_STATE);
    r.rcvbuf = sk_field(sk, SK_RCVBUF);
    r.rcv_space = sk_field(sk, TP_RCVQ_SPACE);
    r.rate_delivered = sk_field(sk, TP_RATE_DELIVERED);
    r.rate_interval_us = sk_field(sk, TP_RATE_INTERVAL_US);
    let ops: u64 = sk_field(sk, ICSK_CA_OPS);
    r.ca_name = kernel_field(ops, CA_OPS_NAME);
    r
}

/// `raw_tracepoint:tcp_retransmit_skb(sk, skb[, err])`: the segment resent, the state it was
/// resent in, and (6.x) whether it could be sent.
#[raw_tracepoint(tracepoint = "tcp_retransmit_skb")]
pub fn tcp_retransmit_skb(ctx: RawTracePointContext) -> i32 {
    let Some((sk, owner)) = traced_sock(&ctx) else {
        return 0;
    };
    let mut r = snapshot(sk, &owner, KernelFn::TcpRetransmitSkb);
    let skb: u64 = ctx.arg(1);
    // `struct tcp_skb_cb` starts with the segment's `seq` and `end_seq`.
    let cb: [u32; 2] = kernel_field(skb, SKB_CB);
    r.seq = cb[0];
    r.end_seq = cb[1];
    if offset(RETRANS_HAS_ERR) != 0 {
        r.err = ctx.arg::<u64>(2) as i32;
    }
    emit(&r);
    0
}

/// `raw_tracepoint:tcp_retransmit_synack(sk, req)`: a listener (`sk`; the child itself under
/// TCP Fast Open) sent its SYN-ACK again. The request `req` starts with a `sock_common`, so
/// the socket offsets give the connection's 4-tuple; the correlator hands the record to the
/// child socket the completed handshake creates. A listener older than the tracer is not
/// traced: then the port filter alone decides, as for any connection older than the tracer.
#[raw_tracepoint(tracepoint = "tcp_retransmit_synack")]
pub fn tcp_retransmit_synack(ctx: RawTracePointContext) -> i32 {
    let sk: u64 = ctx.arg(0);
    let req: u64 = ctx.arg(1);
    if sk == 0 || req == 0 {
        return 0;
    }
    let mut r = KernelRecord::new(KernelFn::TcpRetransmitSynack, Via::RawTracepoint);
    sock_tuple(req, &mut r.tuple);
    r.header.task = match traced(sk) {
        Some(owner) => owner,
        None => {
            let cfg = config();
            if !ports_only(&cfg) || !ports_match(&cfg, r.tuple.lport, r.tuple.rport) {
                return 0;
            }
            r.header.flags |= FLAG_OWNER_GUESSED;
            Task::NONE
        }
    };
    if !netns_matches(&config(), req) {
        return 0;
    }
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    r.header.ts_ns = unsafe { bpf_ktime_get_ns() };
    r.isn = kernel_field(req, REQ_SNT_ISN);
    r.header.flags |= FLAG_ISN;
    emit(&r);
    0
}

/// `raw_tracepoint:tcp_cong_state_set(sk, ca_state)`: the congestion state about to be
/// entered.
#[raw_tracepoint(tracepoint = "tcp_cong_state_set")]
pub fn tcp_cong_state_set(ctx: RawTracePointContext) -> i32 {
    let Some((sk, owner)) = traced_sock(&ctx) else {
        return 0;
    };
    let mut r = snapshot(sk, &owner, KernelFn::TcpSetCaState);
    r.ca_state = ctx.arg::<u64>(1) as u8;
    emit(&r);
    0
}

/// `raw_tracepoint:tcp_probe(sk, skb)`: a segment arrived on an established connection. A
/// sample is taken when the congestion state or ssthresh changed, or cwnd changed and the
/// connection's last sample is at least `sample_gap_us` old; with a gap of 0, at every
/// segment (RTT and windows change without cwnd: a user comparing with `ss -ti` wants them).
#[raw_tracepoint(tracepoint = "tcp_probe")]
pub fn tcp_probe(ctx: RawTracePointContext) -> i32 {
    let Some((sk, owner)) = traced_sock(&ctx) else {
        return 0;
    };
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let cwnd: u32 = sk_field(sk, TP_SND_CWND);
    let ssthresh: u32 = sk_field(sk, TP_SND_SSTHRESH);
    let state = ca_state(sk);
    let gap = u64::from(config().sample_gap_us) * 1000;
    // SAFETY: a value pointer returned by the lookup, copied out at once.
    if let Some(last) = SAMPLED
        .get_ptr(sk)
        .map(|p| unsafe { *p })
        .filter(|_| gap > 0)
    {
        let changed = last.ca_state != state || last.ssthresh != ssthresh;
        if !changed && (last.cwnd == cwnd || now.wrapping_sub(last.ts_ns) < gap) {
            return 0;
        }
    }
    let mark = Sampled {
        ts_ns: now,
        cwnd,
        ssthresh,
        ca_state: state,
        _pad: [0; 7],
    };
    count_if_refused(SAMPLED.insert(sk, mark, 0), Failure::SocketsFull);
    let mut r = snapshot(sk, &owner, KernelFn::TcpRcvEstablished);
    r.header.ts_ns = now;
    emit(&r);
    0
}
