//! The packet layer: TCP segments of traced connections, from cgroup_skb on the cgroup2 root.
//!
//! Egress sees every segment this host sends; ingress skips loopback, whose segments were
//! already seen leaving, so each segment is captured once. Headers are always copied, payload
//! only up to the configured snap length (0 by default).

use core::ffi::c_void;

use aya_ebpf::{
    helpers::{bpf_ktime_get_ns, generated::bpf_skb_load_bytes},
    macros::cgroup_skb,
    programs::SkBuffContext,
};
use tracer_common::{
    Via,
    failure::Failure,
    maps::{FilterConfig, PortPair},
    record::{PACKET_CAP, PacketRecord, RecordKind},
};

const _: () = assert!(PACKET_CAP.is_power_of_two());

use crate::{
    emit::{count_drop, count_if_refused, wakeup_flags},
    filter::config,
    maps::{EVENTS, LISTENERS, PORT_PAIRS, PORTS},
};

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const IPPROTO_TCP: u8 = 6;
const IPV6_HOP_BY_HOP: u8 = 0;
const LOOPBACK_IFINDEX: u32 = 1;
/// cgroup_skb verdict: let the packet through (we only watch).
const PASS: i32 = 1;

/// `cgroup_skb/egress`
#[cgroup_skb(egress)]
pub fn packets_out(ctx: SkBuffContext) -> i32 {
    capture(&ctx, Via::CgroupSkbEgress);
    PASS
}

/// `cgroup_skb/ingress`
#[cgroup_skb(ingress)]
pub fn packets_in(ctx: SkBuffContext) -> i32 {
    // SAFETY: reading a field of the program's own context.
    if unsafe { (*ctx.skb.skb).ifindex } != LOOPBACK_IFINDEX {
        capture(&ctx, Via::CgroupSkbIngress);
    }
    PASS
}

/// Lets the packet filter pass segments between these ports: a traced connection's ends,
/// recorded as soon as both ports are known (for `--pid`/`--comm`, which ports cannot name).
#[inline(always)]
pub fn watch_port_pair(local: u16, remote: u16) {
    count_if_refused(
        PORT_PAIRS.insert(PortPair { local, remote }, 1, 0),
        Failure::SocketsFull,
    );
}

/// Whether a segment between these ports belongs to what is traced.
#[inline(always)]
pub fn wanted(cfg: &FilterConfig, sport: u16, dport: u16) -> bool {
    if cfg.by_port != 0 {
        return PORTS.get_ptr(sport).is_some() || PORTS.get_ptr(dport).is_some();
    }
    // Filters that name tasks or namespaces, not ports: the traced sockets' ports.
    if cfg.by_pid != 0 || cfg.by_comm != 0 || cfg.by_cgroup != 0 || cfg.by_netns != 0 {
        return PORT_PAIRS
            .get_ptr(PortPair {
                local: sport,
                remote: dport,
            })
            .is_some()
            || PORT_PAIRS
                .get_ptr(PortPair {
                    local: dport,
                    remote: sport,
                })
                .is_some()
            || LISTENERS.get_ptr(sport).is_some()
            || LISTENERS.get_ptr(dport).is_some();
    }
    true
}

#[inline(always)]
fn capture(ctx: &SkBuffContext, via: Via) -> Option<()> {
    let cfg = config();
    if cfg.capture == 0 {
        return None;
    }
    // SAFETY: reading a field of the program's own context.
    let proto = u16::from_be(unsafe { (*ctx.skb.skb).protocol } as u16);
    let first: u8 = ctx.load(0).ok()?;
    let tcp_off = match proto {
        ETH_P_IP if first >> 4 == 4 => {
            if ctx.load::<u8>(9).ok()? != IPPROTO_TCP {
                return None;
            }
            usize::from(first & 0x0f) * 4
        }
        ETH_P_IPV6 if first >> 4 == 6 => match ctx.load::<u8>(6).ok()? {
            IPPROTO_TCP => 40,
            // The jumbo payload option BIG TCP puts before TCP (Linux 5.19 up to 6.x): one
            // hop-by-hop header of 8 bytes.
            IPV6_HOP_BY_HOP
                if ctx.load::<u8>(40).ok()? == IPPROTO_TCP && ctx.load::<u8>(41).ok()? == 0 =>
            {
                48
            }
            _ => return None,
        },
        _ => return None,
    };
    if tcp_off < 20 || tcp_off > 60 {
        return None;
    }
    let sport = u16::from_be(ctx.load::<u16>(tcp_off).ok()?);
    let dport = u16::from_be(ctx.load::<u16>(tcp_off + 2).ok()?);
    if !wanted(&cfg, sport, dport) {
        return None;
    }
    let doff = usize::from(ctx.load::<u8>(tcp_off + 12).ok()? >> 4) * 4;
    let want = tcp_off + doff + usize::from(cfg.snaplen);
    let Some(mut record) = EVENTS.reserve::<PacketRecord>(0) else {
        count_drop();
        return None;
    };
    let rec = record.as_mut_ptr();
    // SAFETY: `rec` points at the reserved, exclusively owned record.
    unsafe {
        (*rec).kind = RecordKind::Packet as u8;
        (*rec).via = via as u8;
        (*rec).ts_ns = bpf_ktime_get_ns();
        (*rec).len = ctx.len();
        (*rec).ifindex = (*ctx.skb.skb).ifindex;
        // Both fit: the kernel keeps them as u16 in skb_shared_info.
        (*rec).gso_size = (*ctx.skb.skb).gso_size as u16;
        (*rec).gso_segs = (*ctx.skb.skb).gso_segs as u16;
        let n = (want as u32).min(ctx.len()).min(PACKET_CAP as u32);
        let mut copied = 0;
        if n > 0 {
            // The mask gives the verifier the bounds [1, PACKET_CAP] it needs; for n in that
            // range it changes nothing.
            let n = ((n - 1) & (PACKET_CAP as u32 - 1)) + 1;
            let dst = core::ptr::addr_of_mut!((*rec).data).cast::<c_void>();
            if bpf_skb_load_bytes(ctx.skb.skb.cast(), 0, dst, n) == 0 {
                copied = n;
            }
        }
        (*rec).caplen = copied as u16;
    }
    record.submit(wakeup_flags());
    Some(())
}
