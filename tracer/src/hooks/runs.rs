//! Runs of our programs the kernel skipped. A BPF program is not run when another BPF program
//! is already running on the same CPU in a way the kernel's recursion guard forbids (a per-CPU
//! counter for kprobes and perf-attached tracepoints, a per-program one for fentry/fexit); on
//! kernels where BPF programs are preemptible, one task's preempted program can make another
//! task's event on that CPU go unrecorded. The kernel counts each skip in the program's
//! `recursion_misses` (5.12+), which is how the tracer reports them instead of losing them
//! silently.

use std::os::fd::{AsFd as _, AsRawFd as _};

use aya::Ebpf;
use aya_obj::generated::{bpf_attr, bpf_cmd, bpf_prog_info};

/// `recursion_misses` of the program behind `fd`; `None` where the kernel does not say.
fn recursion_misses(fd: std::os::fd::BorrowedFd<'_>) -> Option<u64> {
    // SAFETY: both are plain C structs for which all-zero bytes are a valid value.
    let mut info: bpf_prog_info = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    attr.info.bpf_fd = fd.as_raw_fd() as u32;
    attr.info.info_len = std::mem::size_of::<bpf_prog_info>() as u32;
    attr.info.info = &mut info as *mut bpf_prog_info as u64;
    // SAFETY: BPF_OBJ_GET_INFO_BY_FD writes at most `info_len` bytes into `info`, which lives
    // until the call returns; `attr` is a valid, fully initialised bpf_attr.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            bpf_cmd::BPF_OBJ_GET_INFO_BY_FD as libc::c_int,
            &mut attr as *mut bpf_attr,
            std::mem::size_of::<bpf_attr>(),
        )
    };
    // An older kernel fills a shorter struct: `info_len` says how much it wrote.
    // SAFETY: reading back the field the kernel set in the union we passed.
    let written = unsafe { attr.info.info_len } as usize;
    let end = std::mem::offset_of!(bpf_prog_info, recursion_misses) + 8;
    (rc == 0 && written >= end).then_some(info.recursion_misses)
}

/// Skipped runs per loaded program of `ebpf`, for the programs that had any.
pub fn skipped(ebpf: &Ebpf) -> Vec<(String, u64)> {
    ebpf.programs()
        .filter_map(|(name, prog)| {
            let fd = prog.fd().ok()?;
            let misses = recursion_misses(fd.as_fd())?;
            (misses > 0).then(|| (name.to_string(), misses))
        })
        .collect()
}
