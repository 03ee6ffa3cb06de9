//! Reading fields at the offsets the loader resolved (tracefs formats, kernel BTF).

use aya_ebpf::{Global, programs::TracePointContext};
use tracer_common::{failure::Failure, offsets::OFFSETS_LEN};

use crate::emit::count;

/// Field offsets, indexed by `tracer_common::offsets::*`.
#[unsafe(no_mangle)]
static OFFSETS: Global<[u32; OFFSETS_LEN]> = Global::new([0; OFFSETS_LEN]);

/// The offset at index `index` (one of `tracer_common::offsets::*`).
#[inline(always)]
pub fn offset(index: usize) -> usize {
    let offsets = OFFSETS.load();
    // `index` is always a constant; the mask keeps the verifier's bounds check trivial.
    offsets[index % OFFSETS_LEN] as usize
}

/// Reads the tracepoint field at offsets index `index`; zero if unreadable.
#[inline(always)]
pub fn field<T: Default>(ctx: &TracePointContext, index: usize) -> T {
    at(ctx, offset(index))
}

/// Reads a `T` at byte `offset` of the tracepoint record; zero (counted) if unreadable.
#[inline(always)]
pub fn at<T: Default>(ctx: &TracePointContext, offset: usize) -> T {
    // SAFETY: bpf_probe_read_kernel of the tracepoint record; a bad offset reads garbage or
    // fails, never faults.
    unsafe { ctx.read_at::<T>(offset) }.unwrap_or_else(|_| {
        count(Failure::ReadFailed);
        T::default()
    })
}

/// Reads a `T` at `sk` plus the offset at index `index` (one of the `SK_*`/`TP_*` indexes,
/// from the kernel's BTF); zero if unreadable.
#[inline(always)]
pub fn sk_field<T: Default>(sk: u64, index: usize) -> T {
    kernel_field(sk, index)
}

/// Reads a `T` at kernel address `base` plus the offset at index `index` (from the kernel's
/// BTF); zero if unreadable (counted unless `base` is null: no object, nothing to read).
#[inline(always)]
pub fn kernel_field<T: Default>(base: u64, index: usize) -> T {
    // Not `guessed_field(..).unwrap_or_else(..)`: the same read, but the code it compiles to
    // made 6.18's verifier give up on `sock_recv_length` (a million instructions processed).
    // SAFETY: bpf_probe_read_kernel checks the address; a bad one reads nothing.
    unsafe { aya_ebpf::helpers::bpf_probe_read_kernel((base as usize + offset(index)) as *const T) }
        .unwrap_or_else(|_| {
            if base != 0 {
                count(Failure::ReadFailed);
            }
            T::default()
        })
}

/// Reads a `T` at kernel address `base` plus the offset at index `index`, where `base` may not
/// point at the struct assumed (a guess being checked): `None` if unreadable, not counted.
#[inline(always)]
pub fn guessed_field<T>(base: u64, index: usize) -> Option<T> {
    // SAFETY: bpf_probe_read_kernel checks the address; a bad one reads nothing.
    unsafe { aya_ebpf::helpers::bpf_probe_read_kernel((base as usize + offset(index)) as *const T) }
        .ok()
}
