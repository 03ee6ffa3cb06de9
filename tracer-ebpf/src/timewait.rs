//! Segments a TIME_WAIT socket sends: the last ACK of the end that closed first (and its
//! answer to a retransmitted FIN). The kernel sends them through a per-namespace control
//! socket on behalf of an `inet_timewait_sock`, which is not a full socket, so cgroup_skb never
//! runs for them. A raw tracepoint on `net:net_dev_queue` (every packet queued to a device)
//! keeps exactly those: the packet's socket is in TIME_WAIT.

use core::ffi::c_void;

use aya_ebpf::{
    helpers::{
        bpf_ktime_get_ns, bpf_probe_read_kernel, generated::bpf_probe_read_kernel as read_into,
    },
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use tracer_common::{
    Via, offsets,
    record::{PACKET_CAP, PacketRecord, RecordKind},
    tcp_state,
};

use crate::{
    context::kernel_field,
    emit::{count_drop, wakeup_flags},
    filter::config,
    maps::EVENTS,
    packets::wanted,
};

const IPPROTO_TCP: u8 = 6;

/// `raw_tracepoint:net_dev_queue`
#[raw_tracepoint(tracepoint = "net_dev_queue")]
pub fn timewait_segments(ctx: RawTracePointContext) -> i32 {
    let _ = capture(&ctx);
    0
}

/// A `T` at kernel address `at`.
#[inline(always)]
fn read<T>(at: u64) -> Option<T> {
    // SAFETY: bpf_probe_read_kernel checks the address; a bad one fails.
    unsafe { bpf_probe_read_kernel(at as *const T) }.ok()
}

#[inline(always)]
fn capture(ctx: &RawTracePointContext) -> Option<()> {
    let cfg = config();
    if cfg.capture == 0 {
        return None;
    }
    let skb: u64 = ctx.arg(0);
    let sk: u64 = kernel_field(skb, offsets::SKB_SK);
    if sk == 0 || kernel_field::<u8>(sk, offsets::SK_STATE) != tcp_state::TIME_WAIT {
        return None;
    }
    let head: u64 = kernel_field(skb, offsets::SKB_HEAD);
    let ip = head + u64::from(kernel_field::<u16>(skb, offsets::SKB_NETWORK_HEADER));
    let first: u8 = read(ip)?;
    let (tcp_off, total) = match first >> 4 {
        4 => {
            if read::<u8>(ip + 9)? != IPPROTO_TCP {
                return None;
            }
            (
                u64::from(first & 0x0f) * 4,
                u32::from(u16::from_be(read(ip + 2)?)),
            )
        }
        6 => {
            if read::<u8>(ip + 6)? != IPPROTO_TCP {
                return None;
            }
            (40, 40 + u32::from(u16::from_be(read(ip + 4)?)))
        }
        _ => return None,
    };
    let sport = u16::from_be(read(ip + tcp_off)?);
    let dport = u16::from_be(read(ip + tcp_off + 2)?);
    if !wanted(&cfg, sport, dport) {
        return None;
    }
    let doff = u64::from(read::<u8>(ip + tcp_off + 12)? >> 4) * 4;
    let want = tcp_off + doff + u64::from(cfg.snaplen);
    let dev: u64 = kernel_field(skb, offsets::SKB_DEV);
    let Some(mut record) = EVENTS.reserve::<PacketRecord>(0) else {
        count_drop();
        return None;
    };
    let rec = record.as_mut_ptr();
    // SAFETY: `rec` points at the reserved, exclusively owned record.
    unsafe {
        (*rec).kind = RecordKind::Packet as u8;
        (*rec).via = Via::RawTracepoint as u8;
        (*rec).ts_ns = bpf_ktime_get_ns();
        (*rec).len = total;
        (*rec).ifindex = kernel_field::<u32>(dev, offsets::NETDEV_IFINDEX);
        (*rec).gso_size = 0;
        (*rec).gso_segs = 0;
        let n = (want as u32).min(total).min(PACKET_CAP as u32);
        let mut copied = 0;
        if n > 0 {
            // The mask gives the verifier the bounds [1, PACKET_CAP] it needs.
            let n = ((n - 1) & (PACKET_CAP as u32 - 1)) + 1;
            let dst = core::ptr::addr_of_mut!((*rec).data).cast::<c_void>();
            if read_into(dst, n, ip as *const c_void) == 0 {
                copied = n;
            }
        }
        (*rec).caplen = copied as u16;
    }
    record.submit(wakeup_flags());
    Some(())
}
