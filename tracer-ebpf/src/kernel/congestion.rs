//! What TCP does about loss and congestion on a traced connection, from the `tcp:`
//! tracepoints every tier has: a retransmission (`tcp_retransmit_skb`, with the segment resent),
//! a congestion-state change (`tcp_cong_state_set`, 6.3+), and a sample of the numbers when an
//! ACK arrives (`tcp_probe`), rate-limited per connection.
//!
//! Each record carries the socket's numbers at that moment, read at offsets from the kernel's
//! BTF: cwnd, ssthresh, RTT, RTO, what is in flight, both windows, and the algorithm's name.
//! Why a retransmission happened is told by the congestion state it happened in; user space
//! names it.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use tracer_common::{
    KernelFn, Via,
    maps::{Owner, Sampled},
    offsets::{
        CA_OPS_NAME, CONG_STATE, ICSK_CA_OPS, ICSK_CA_STATE_BYTE, ICSK_CA_STATE_SHIFT, ICSK_RTO,
        RETRANS_ERR, RETRANS_SKBADDR, RETRANS_STATE, SK_STATE, SKB_CB, TP_MDEV_US, TP_MSS_CACHE,
        TP_PACKETS_OUT, TP_RCV_WND, TP_RETRANS_OUT, TP_SND_CWND, TP_SND_NXT, TP_SND_SSTHRESH,
        TP_SND_UNA, TP_SND_WND, TP_SRTT_US, TP_TOTAL_RETRANS,
    },
    record::CongestionRecord,
};

use super::tracepoints::sock_of as tracepoint_sock;
use crate::{
    context::{field, kernel_field, offset, sk_field},
    emit::{count_if_refused, emit},
    filter::config,
    maps::SAMPLED,
};
use aya_ebpf::helpers::bpf_ktime_get_ns;
use tracer_common::failure::Failure;

/// The congestion state in force, from its bit field.
#[inline(always)]
fn ca_state(sk: u64) -> u8 {
    let byte: u8 = sk_field(sk, ICSK_CA_STATE_BYTE);
    // Five bits wide since 5.x (six before); every state fits in the low three.
    (byte >> (offset(ICSK_CA_STATE_SHIFT) & 7)) & 7
}

/// A record of `func` for traced `sk` with the socket's numbers now.
#[inline(always)]
fn snapshot(sk: u64, owner: &Owner, func: KernelFn) -> CongestionRecord {
    let mut r = CongestionRecord::new(func, Via::Tracepoint);
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
    let ops: u64 = sk_field(sk, ICSK_CA_OPS);
    r.ca_name = kernel_field(ops, CA_OPS_NAME);
    r
}

/// `tracepoint:tcp:tcp_retransmit_skb`: the segment resent, and the state it was resent in.
#[tracepoint]
pub fn tcp_retransmit_skb(ctx: TracePointContext) -> u32 {
    let Some((sk, owner, _)) = tracepoint_sock(&ctx, KernelFn::TcpRetransmitSkb) else {
        return 0;
    };
    let mut r = snapshot(sk, &owner, KernelFn::TcpRetransmitSkb);
    let skb: u64 = field(&ctx, RETRANS_SKBADDR);
    // `struct tcp_skb_cb` starts with the segment's `seq` and `end_seq`.
    let cb: [u32; 2] = kernel_field(skb, SKB_CB);
    r.seq = cb[0];
    r.end_seq = cb[1];
    r.sk_state = field::<i32>(&ctx, RETRANS_STATE) as u8;
    if offset(RETRANS_ERR) != 0 {
        r.err = field(&ctx, RETRANS_ERR);
    }
    emit(&r);
    0
}

/// `tracepoint:tcp:tcp_cong_state_set`: the congestion state about to be entered.
#[tracepoint]
pub fn tcp_cong_state_set(ctx: TracePointContext) -> u32 {
    let Some((sk, owner, _)) = tracepoint_sock(&ctx, KernelFn::TcpSetCaState) else {
        return 0;
    };
    let mut r = snapshot(sk, &owner, KernelFn::TcpSetCaState);
    r.ca_state = field(&ctx, CONG_STATE);
    emit(&r);
    0
}

/// `tracepoint:tcp:tcp_probe`: a segment arrived on an established connection. A sample is
/// taken when the congestion state or ssthresh changed, or cwnd changed and the connection's
/// last sample is at least `sample_gap_us` old.
#[tracepoint]
pub fn tcp_probe(ctx: TracePointContext) -> u32 {
    let Some((sk, owner, _)) = tracepoint_sock(&ctx, KernelFn::TcpRcvEstablished) else {
        return 0;
    };
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let cwnd: u32 = sk_field(sk, TP_SND_CWND);
    let ssthresh: u32 = sk_field(sk, TP_SND_SSTHRESH);
    let state = ca_state(sk);
    // SAFETY: a value pointer returned by the lookup, copied out at once.
    if let Some(last) = SAMPLED.get_ptr(sk).map(|p| unsafe { *p }) {
        let gap = u64::from(config().sample_gap_us) * 1000;
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
