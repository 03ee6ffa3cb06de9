//! tracer's eBPF programs, one module per layer of the journey:
//!
//! - [`syscalls`]: `syscalls:sys_enter_*`/`sys_exit_*` on traced sockets, enter and exit paired;
//! - [`kernel_fns`]: the kernel TCP functions (`tcp_connect`, `inet_csk_accept`, `tcp_sendmsg`,
//!   `tcp_recvmsg`, resets, destruction) through their sock_ops/tracepoint stand-ins;
//! - [`state`]: TCP state transitions from `sock:inet_sock_set_state`.
//!
//! Every program filters first (the [`filter`] module and the tracked-socket maps in [`maps`])
//! and only then builds a record and hands it to [`emit`].
#![no_std]
#![no_main]

mod context;
mod emit;
mod filter;
mod kernel_fns;
mod kernel_probes;
mod maps;
mod packets;
mod sockaddr;
mod state;
mod syscalls;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier proves programs cannot panic; this is never reached.
    loop {}
}
