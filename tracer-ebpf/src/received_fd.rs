//! File descriptors that arrive ready-made: a socket passed over a unix socket with
//! `SCM_RIGHTS` (a master handing accepted connections to its workers) or taken with
//! `pidfd_getfd`. The kernel installs every such fd through one function — `__receive_fd` in
//! 5.10 and 6.1, `receive_fd` in 6.12 and 7.x — whose return value is the new fd number. When
//! the file is a traced socket's, the receiver's new fd is traced from then on, as if
//! `accept()` had returned it. From 7.3 `SCM_RIGHTS` installs through `scm_recv_one_fd`
//! instead (`receive_fd` still serves `pidfd_getfd`), which writes the new fd to the
//! receiver's control message: both are watched there. No tracepoint sees this: the tracepoint
//! tier does not follow passed fds.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::{fexit, kprobe, kretprobe, map},
    maps::LruHashMap,
    programs::{FExitContext, ProbeContext, RetProbeContext},
};
use tracer_common::offsets::{FILE_PRIVATE_DATA, SOCKET_FILE, SOCKET_SK};

use crate::{
    context::{guessed_field, kernel_field},
    fds, handoff,
    maps::SOCKS,
};

/// The traced socket behind `file` between kprobe and kretprobe, by thread.
#[map]
static RECEIVING: LruHashMap<u32, u64> = LruHashMap::with_max_entries(1024, 0);

/// For `scm_recv_one_fd`: the traced socket and where the new fd is written, by thread.
#[map]
static RECEIVING_SCM: LruHashMap<u32, [u64; 2]> = LruHashMap::with_max_entries(1024, 0);

/// The traced socket (`struct sock`) behind `file`, if `file` is a traced socket's.
#[inline(always)]
fn traced_sock(file: u64) -> Option<u64> {
    let socket: u64 = kernel_field(file, FILE_PRIVATE_DATA);
    // Any file may be passed, its private data anything: only a socket's file is its
    // socket's own.
    if socket == 0 || guessed_field::<u64>(socket, SOCKET_FILE) != Some(file) {
        return None;
    }
    let sk: u64 = kernel_field(socket, SOCKET_SK);
    SOCKS.get_ptr(sk).map(|_| sk)
}

/// `fd` (negative: an errno) now refers to traced socket `sk` in the current process.
#[inline(always)]
fn installed(sk: u64, fd: i32) {
    if fd >= 0 {
        fds::track((bpf_get_current_pid_tgid() >> 32) as u32, fd, sk);
    }
}

#[inline(always)]
fn received(file: u64, fd: i32) -> u32 {
    if let Some(sk) = traced_sock(file) {
        installed(sk, fd);
    }
    0
}

// One fexit program per signature, the return value right after the arguments (see
// `kernel::inet_csk_accept`).

/// `fexit:receive_fd(file, ufd, o_flags)` (6.12 on; `__receive_fd` from 5.14 to 6.1 at least).
#[fexit(function = "receive_fd")]
pub fn fexit_receive_fd(ctx: FExitContext) -> u32 {
    received(ctx.arg::<u64>(0), ctx.arg::<i32>(3))
}

/// `fexit:__receive_fd(fd, file, ufd, o_flags)` (before 5.14).
#[fexit(function = "__receive_fd")]
pub fn fexit_receive_fd_args4(ctx: FExitContext) -> u32 {
    received(ctx.arg::<u64>(1), ctx.arg::<i32>(4))
}

#[inline(always)]
fn entered(file: u64) -> u32 {
    if let Some(sk) = traced_sock(file) {
        handoff::keep(&RECEIVING, sk);
    }
    0
}

/// `kprobe:receive_fd(file, ufd, o_flags)`: remembers a traced socket for the kretprobe.
#[kprobe]
pub fn kprobe_receive_fd(ctx: ProbeContext) -> u32 {
    entered(ctx.arg::<u64>(0).unwrap_or(0))
}

/// `kprobe:__receive_fd(fd, file, ufd, o_flags)` (before 5.14).
#[kprobe]
pub fn kprobe_receive_fd_args4(ctx: ProbeContext) -> u32 {
    entered(ctx.arg::<u64>(1).unwrap_or(0))
}

/// `kretprobe:receive_fd`/`__receive_fd`: the new fd.
#[kretprobe]
pub fn kretprobe_receive_fd(ctx: RetProbeContext) -> u32 {
    let Some(sk) = handoff::take(&RECEIVING) else {
        return 0;
    };
    installed(sk, ctx.ret::<i32>());
    0
}

/// `scm_recv_one_fd` (7.3) returned `ret` after installing traced socket `sk`'s file: the new
/// fd is the one it wrote to the receiver's control message at `ufd`.
#[inline(always)]
fn scm_received(sk: u64, ufd: u64, ret: i32) {
    if ret < 0 {
        return;
    }
    // SAFETY: bpf_probe_read_user checks the user address.
    if let Ok(fd) = unsafe { bpf_probe_read_user(ufd as *const i32) } {
        installed(sk, fd);
    }
}

/// `fexit:scm_recv_one_fd(f, ufd, flags, notrunc)` (7.3)
#[fexit(function = "scm_recv_one_fd")]
pub fn fexit_scm_recv_one_fd(ctx: FExitContext) -> u32 {
    if let Some(sk) = traced_sock(ctx.arg::<u64>(0)) {
        scm_received(sk, ctx.arg::<u64>(1), ctx.arg::<i32>(4));
    }
    0
}

/// `kprobe:scm_recv_one_fd`: remembers a traced socket and `ufd` for the kretprobe.
#[kprobe]
pub fn kprobe_scm_recv_one_fd(ctx: ProbeContext) -> u32 {
    if let Some(sk) = traced_sock(ctx.arg::<u64>(0).unwrap_or(0)) {
        handoff::keep(&RECEIVING_SCM, [sk, ctx.arg::<u64>(1).unwrap_or(0)]);
    }
    0
}

/// `kretprobe:scm_recv_one_fd`
#[kretprobe]
pub fn kretprobe_scm_recv_one_fd(ctx: RetProbeContext) -> u32 {
    let Some([sk, ufd]) = handoff::take(&RECEIVING_SCM) else {
        return 0;
    };
    scm_received(sk, ufd, ctx.ret::<i32>());
    0
}
