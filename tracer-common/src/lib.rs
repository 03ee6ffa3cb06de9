//! What the eBPF programs (`tracer-ebpf`) and the loader (`tracer`) must agree on, byte for
//! byte: the records in the ring buffer, the values in the maps, and the small enums they carry.
//!
//! - [`record`]: every ring-buffer record starts with a [`record::RecordKind`] tag; the payload
//!   after it is typed per kind, no field changes meaning with the hook that filled it.
//! - [`syscall`], [`kernel_fn`], [`via`], [`tcp_state`]: what a record's small numbers mean.
//! - [`failure`]: why a program gave up on something, counted per reason.
//! - [`maps`]: keys and values of the maps the loader fills and the programs read.
//! - [`offsets`]: indexes into the offsets array the loader resolves at startup (tracefs formats,
//!   kernel BTF), because Rust eBPF has no CO-RE relocations.
//!
//! Everything is `#[repr(C)]` with explicit padding; size asserts catch a field added on one
//! side only.
#![no_std]

pub mod ca_state;
pub mod failure;
pub mod kernel_fn;
pub mod maps;
pub mod offsets;
pub mod record;
pub mod syscall;
pub mod tcp_state;
pub mod via;

pub use kernel_fn::KernelFn;
pub use syscall::SyscallOp;
pub use via::Via;

/// Length of a task's `comm`, as in the kernel's `TASK_COMM_LEN`.
pub const COMM_LEN: usize = 16;

/// `AF_INET`.
pub const AF_INET: u16 = 2;
/// `AF_INET6`.
pub const AF_INET6: u16 = 10;

#[cfg(feature = "user")]
mod user {
    // SAFETY: all of these are plain `#[repr(C)]` data with explicit padding and no pointers,
    // valid for any bit pattern.
    unsafe impl aya::Pod for super::maps::FdKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::maps::Owner {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::maps::FilterConfig {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::maps::PortPair {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::maps::TracepointFn {}
}
