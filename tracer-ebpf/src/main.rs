//! tracer's eBPF programs, one module per layer of the journey:
//!
//! - [`syscalls`]: the system calls on traced sockets, enter and exit paired, from
//!   `syscalls:sys_enter_*`/`sys_exit_*` or fentry/fexit on the syscall functions ([`call`]);
//! - [`kernel`]: the kernel TCP functions, one file per function with its fentry/kprobe
//!   programs, plus the generic stand-ins (sock_ops, tracepoints naming a socket) that the
//!   loader points at whichever functions lack a better tier;
//! - [`state`]: TCP state transitions from `sock:inet_sock_set_state`;
//! - [`fds`] and [`received_fd`]: which fds are traced sockets, followed across `fork()` and
//!   into processes a socket is passed to;
//! - [`packets`]: the segments of traced connections (cgroup_skb), and [`timewait`] those a
//!   TIME_WAIT socket sends, which cgroup_skb cannot see (a raw tracepoint);
//!
//! Every program filters first ([`filter`], and the tracked-socket maps in [`maps`]) and only
//! then builds a record and hands it to [`emit`].
#![no_std]
// `atomic_xadd`: the BPF target's core has no `AtomicU64::fetch_add`, but LLVM lowers the
// intrinsic to the BPF atomic add instruction.
#![allow(internal_features)]
#![feature(core_intrinsics)]
#![no_main]

mod call;
mod context;
mod emit;
mod fds;
mod filter;
mod follow;
mod handoff;
mod kernel;
mod maps;
mod packets;
mod place;
mod received_fd;
mod sockaddr;
mod state;
mod syscalls;
mod timewait;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier proves programs cannot panic; this is never reached.
    loop {}
}
