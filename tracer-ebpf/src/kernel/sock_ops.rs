//! The sock_ops stand-in: one program on the cgroup2 root whose callbacks run inside kernel
//! functions (`TCP_CONNECT_CB` inside `tcp_connect`, `PASSIVE_ESTABLISHED_CB` when the child
//! `inet_csk_accept` will return is ready). Which callback stands in for which function comes
//! from the loader's hook table, through `SOCK_OPS_FNS`.

use aya_ebpf::{macros::sock_ops, programs::SockOpsContext};
use tracer_common::{AF_INET, AF_INET6, KernelFn, Via, maps::SOCK_OPS_SLOTS};

use super::{record, traced};
use crate::{emit::emit, maps::SOCK_OPS_FNS, packets::watch_port_pair};

/// sock_ops on the cgroup2 root.
#[sock_ops]
pub fn kernel_fn_sock_ops(ctx: SockOpsContext) -> u32 {
    let op = ctx.op();
    if op >= SOCK_OPS_SLOTS {
        return 1;
    }
    // SAFETY: a value pointer into an array map, read once.
    let func = SOCK_OPS_FNS.get_ptr(op).map(|v| unsafe { *v }).unwrap_or(0);
    let Some(func) = KernelFn::from_u8(func as u8) else {
        return 1;
    };
    // SAFETY: `ctx.ops` is the program's context; `sk` is only used as an identity.
    let sk = unsafe { (*ctx.ops).__bindgen_anon_2.sk } as u64;
    let Some(owner) = traced(sk) else {
        return 1;
    };
    let mut record = record(sk, &owner, func, Via::SockOps);
    let t = &mut record.tuple;
    let family = ctx.family() as u16;
    t.family = family;
    t.lport = ctx.local_port() as u16;
    t.rport = u16::from_be((ctx.remote_port() >> 16) as u16);
    if family == AF_INET {
        t.laddr[..4].copy_from_slice(&ctx.local_ip4().to_ne_bytes());
        t.raddr[..4].copy_from_slice(&ctx.remote_ip4().to_ne_bytes());
    } else if family == AF_INET6 {
        // The context only allows 4-byte loads here: volatile reads stop LLVM from merging
        // neighbouring words into one 8-byte load the verifier would reject.
        for i in 0..4 {
            // SAFETY: in-bounds reads of the program's own context.
            let (l, r) = unsafe {
                (
                    core::ptr::read_volatile(&(*ctx.ops).local_ip6[i]),
                    core::ptr::read_volatile(&(*ctx.ops).remote_ip6[i]),
                )
            };
            t.laddr[i * 4..i * 4 + 4].copy_from_slice(&l.to_ne_bytes());
            t.raddr[i * 4..i * 4 + 4].copy_from_slice(&r.to_ne_bytes());
        }
    }
    if t.lport != 0 && t.rport != 0 {
        // In tcp_connect the SYN is about to leave: its port pair must already pass the
        // packet filter.
        watch_port_pair(t.lport, t.rport);
    }
    emit(&record);
    1
}
