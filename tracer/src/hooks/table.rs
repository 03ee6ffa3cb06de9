//! The hook table: every kernel function the tracer watches, declared once — its programs per
//! tier, its stand-in, the `struct sock` fields its programs read, and the layer its records
//! belong to. The loader ([`super::load`]) walks this table; labels of events come from it; a
//! unit test checks every program it names against the embedded object.
//!
//! Adding a function with three tiers: a [`KernelFn`] variant in
//! `tracer-common/src/kernel_fn.rs`, its fentry/kprobe programs in
//! `tracer-ebpf/src/kernel/<function>.rs`, a row here, and its test. A stand-in that is a
//! sock_ops callback needs no eBPF code of its own; a tracepoint naming the socket needs one
//! line in `tracer-ebpf/src/kernel/tracepoints.rs`.

use std::fmt;

use tracer_common::{KernelFn, SyscallOp, Via};

use super::offsets::{CONGESTION_FIELDS, SYNACK_FIELDS, SockField, TUPLE};

/// Which layer a hook's records belong to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    /// System calls.
    Syscall,
    /// Kernel functions.
    Kernel,
    /// TCP state transitions.
    State,
    /// Segments on the wire.
    Packet,
    /// What TCP does about loss and congestion, and its numbers.
    Congestion,
}

impl Layer {
    /// The name used in every output.
    pub fn name(self) -> &'static str {
        match self {
            Self::Syscall => "syscall",
            Self::Kernel => "kernel",
            Self::State => "state",
            Self::Packet => "packet",
            Self::Congestion => "congestion",
        }
    }

    /// The flag that turns the layer off, for the layers that have one.
    pub fn off_flag(self) -> Option<&'static str> {
        match self {
            Self::Syscall => Some("--no-syscalls"),
            Self::Packet => Some("--no-packets"),
            Self::Kernel | Self::State | Self::Congestion => None,
        }
    }
}

/// A program on the function itself.
#[derive(Clone, Copy, Debug)]
pub struct Probe {
    /// The program's name in the object.
    pub program: &'static str,
    /// Its kind: [`Via::Fentry`], [`Via::Fexit`], [`Via::Kprobe`] or [`Via::Kretprobe`].
    pub via: Via,
    /// The number of parameters of the function it was built for: an fexit program reads the
    /// return value from its context right after them, at a constant offset (the only kind the
    /// verifier allows; the helper that finds it anywhere needs 5.17), and a program may read
    /// an argument whose position changed. `None`: any signature.
    pub args: Option<u8>,
}

/// The tracepoint-tier stand-in of a kernel function.
#[derive(Clone, Copy, Debug)]
pub enum StandIn {
    /// A sock_ops callback inside the function, served by the generic sock_ops program.
    SockOps {
        /// `BPF_SOCK_OPS_*_CB`.
        callback: u32,
        /// The hook label: `sock_ops:tcp_connect_cb`.
        label: &'static str,
    },
    /// A tracepoint with a program of its own.
    Tracepoint {
        /// The program's name in the object.
        program: &'static str,
        /// Tracepoint category.
        category: &'static str,
        /// Tracepoint name.
        name: &'static str,
        /// The hook label: `tracepoint:category:name`.
        label: &'static str,
        /// The kernel version that added it, for the message where it is missing.
        since: Option<&'static str>,
    },
    /// A tracepoint whose record names the socket, served by a one-line program sharing the
    /// body in `tracer-ebpf/src/kernel/tracepoints.rs`.
    SockTracepoint {
        /// The program's name in the object.
        program: &'static str,
        /// Tracepoint category.
        category: &'static str,
        /// Tracepoint name.
        name: &'static str,
        /// The hook label: `tracepoint:category:name`.
        label: &'static str,
        /// The field holding the socket pointer.
        sk_field: &'static str,
        /// The socket is gone after it: forget it.
        forget: bool,
        /// The kernel version that added it (with a socket field), for the message where it
        /// is missing.
        since: Option<&'static str>,
    },
    /// A raw tracepoint whose first argument is the socket, with a program of its own.
    RawTracepoint {
        /// The program's name in the object.
        program: &'static str,
        /// The category its tracefs event is listed under.
        category: &'static str,
        /// The tracepoint's name.
        name: &'static str,
        /// The hook label: `raw_tracepoint:name`.
        label: &'static str,
        /// The kernel version that added it, for the message where it is missing.
        since: Option<&'static str>,
    },
    /// Nothing stands in for it; why.
    None(&'static str),
}

impl StandIn {
    /// Its program and the tracefs event it attaches to, for a tracepoint of either kind.
    pub fn tracepoint_program(&self) -> Option<(&'static str, &'static str, &'static str)> {
        match *self {
            Self::Tracepoint {
                program,
                category,
                name,
                ..
            }
            | Self::SockTracepoint {
                program,
                category,
                name,
                ..
            }
            | Self::RawTracepoint {
                program,
                category,
                name,
                ..
            } => Some((program, category, name)),
            Self::SockOps { .. } | Self::None(_) => None,
        }
    }

    /// The hook label of records it produces.
    pub fn label(&self) -> &'static str {
        match self {
            Self::SockOps { label, .. }
            | Self::Tracepoint { label, .. }
            | Self::SockTracepoint { label, .. }
            | Self::RawTracepoint { label, .. } => label,
            Self::None(_) => "none",
        }
    }
}

/// How one kernel function is watched.
#[derive(Clone, Copy, Debug)]
pub struct KernelHook {
    /// The function.
    pub func: KernelFn,
    /// The layer of its records.
    pub layer: Layer,
    /// The fentry or fexit program; for an fexit program on a function whose signature
    /// changed across kernels, one per signature (the loader picks by the BTF's).
    pub fentry: &'static [Probe],
    /// The kprobe/kretprobe programs, attached together.
    pub kprobes: &'static [Probe],
    /// The tracepoint-tier stand-in.
    pub stand_in: StandIn,
    /// The `struct sock` fields its probe programs read (offsets from kernel BTF).
    pub sock_fields: &'static [SockField],
}

impl KernelHook {
    /// Whether the function itself can be probed; rows without probes use their stand-in in
    /// every mode.
    pub fn has_probes(&self) -> bool {
        !self.fentry.is_empty() || !self.kprobes.is_empty()
    }

    /// Every program name the row uses (for the object check).
    pub fn programs(&self) -> impl Iterator<Item = (&'static str, Via)> + '_ {
        let stand_in = match self.stand_in {
            StandIn::SockOps { .. } => Some((SOCK_OPS_PROGRAM, Via::SockOps)),
            StandIn::Tracepoint { program, .. } => Some((program, Via::Tracepoint)),
            StandIn::SockTracepoint { program, .. } => Some((program, Via::Tracepoint)),
            StandIn::RawTracepoint { program, .. } => Some((program, Via::RawTracepoint)),
            StandIn::None(_) => None,
        };
        self.fentry
            .iter()
            .chain(self.kprobes)
            .map(|p| (p.program, p.via))
            .chain(stand_in)
    }
}

/// The generic sock_ops program (`tracer-ebpf/src/kernel/sock_ops.rs`).
pub const SOCK_OPS_PROGRAM: &str = "kernel_fn_sock_ops";

const fn fentry(program: &'static str) -> Probe {
    Probe {
        program,
        via: Via::Fentry,
        args: None,
    }
}

/// An fexit program built for a function of `args` parameters.
const fn fexit(program: &'static str, args: u8) -> Probe {
    Probe {
        program,
        via: Via::Fexit,
        args: Some(args),
    }
}

const fn kprobe(program: &'static str) -> Probe {
    Probe {
        program,
        via: Via::Kprobe,
        args: None,
    }
}

/// An fexit program that reads only arguments (any signature).
const fn fexit_any(program: &'static str) -> Probe {
    Probe {
        program,
        via: Via::Fexit,
        args: None,
    }
}

/// A kprobe program built for a function of `args` parameters.
const fn kprobe_for(program: &'static str, args: u8) -> Probe {
    Probe {
        program,
        via: Via::Kprobe,
        args: Some(args),
    }
}

const fn kretprobe(program: &'static str) -> Probe {
    Probe {
        program,
        via: Via::Kretprobe,
        args: None,
    }
}

/// A tracepoint stand-in with its own program, labelled from its category and name.
macro_rules! tracepoint {
    ($program:literal, $category:literal, $name:literal, $since:expr) => {
        StandIn::Tracepoint {
            program: $program,
            category: $category,
            name: $name,
            label: concat!("tracepoint:", $category, ":", $name),
            since: $since,
        }
    };
}

/// A `tcp:` raw tracepoint whose first argument is the socket; its program has its name.
macro_rules! raw_tracepoint {
    ($name:literal, $since:expr) => {
        StandIn::RawTracepoint {
            program: $name,
            category: "tcp",
            name: $name,
            label: concat!("raw_tracepoint:", $name),
            since: $since,
        }
    };
}

/// A tracepoint naming the socket; its program has the tracepoint's name.
macro_rules! sock_tracepoint {
    ($category:literal, $name:literal, forget: $forget:expr) => {
        StandIn::SockTracepoint {
            program: $name,
            category: $category,
            name: $name,
            label: concat!("tracepoint:", $category, ":", $name),
            sk_field: "skaddr",
            forget: $forget,
            since: None,
        }
    };
}

/// `BPF_SOCK_OPS_TCP_CONNECT_CB`
const TCP_CONNECT_CB: u32 = 3;
/// `BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB`
const PASSIVE_ESTABLISHED_CB: u32 = 5;

/// The kernel functions, in display order.
pub const KERNEL_HOOKS: [KernelHook; 13] = [
    KernelHook {
        func: KernelFn::TcpConnect,
        layer: Layer::Kernel,
        fentry: &[fentry("fentry_tcp_connect")],
        kprobes: &[kprobe("kprobe_tcp_connect")],
        stand_in: StandIn::SockOps {
            callback: TCP_CONNECT_CB,
            label: "sock_ops:tcp_connect_cb",
        },
        // The 4-tuple, and write_seq (the ISN until the first byte is queued).
        sock_fields: &SockField::ALL,
    },
    KernelHook {
        func: KernelFn::InetCskAccept,
        layer: Layer::Kernel,
        // `(sk, arg)` from 6.10 on, `(sk, flags, err, kern)` before.
        fentry: &[
            fexit("fexit_inet_csk_accept", 2),
            fexit("fexit_inet_csk_accept_args4", 4),
        ],
        kprobes: &[kretprobe("kretprobe_inet_csk_accept")],
        stand_in: StandIn::SockOps {
            callback: PASSIVE_ESTABLISHED_CB,
            label: "sock_ops:passive_established_cb",
        },
        sock_fields: &TUPLE,
    },
    KernelHook {
        func: KernelFn::TcpSendmsg,
        layer: Layer::Kernel,
        fentry: &[fentry("fentry_tcp_sendmsg")],
        kprobes: &[kprobe("kprobe_tcp_sendmsg")],
        stand_in: tracepoint!("sock_send_length", "sock", "sock_send_length", Some("6.3")),
        sock_fields: &[SockField::WriteSeq],
    },
    KernelHook {
        func: KernelFn::TcpRecvmsg,
        layer: Layer::Kernel,
        // `(sk, msg, len, flags)` in 7.x, `addr_len` after `flags` before, and `nonblock`
        // before `flags` until 5.19.
        fentry: &[
            fexit("fexit_tcp_recvmsg", 4),
            fexit("fexit_tcp_recvmsg_args5", 5),
            fexit("fexit_tcp_recvmsg_args6", 6),
        ],
        kprobes: &[
            kprobe("kprobe_tcp_recvmsg"),
            kretprobe("kretprobe_tcp_recvmsg"),
        ],
        stand_in: tracepoint!("sock_recv_length", "sock", "sock_recv_length", Some("6.3")),
        sock_fields: &[],
    },
    KernelHook {
        func: KernelFn::TcpClose,
        layer: Layer::Kernel,
        fentry: &[fentry("fentry_tcp_close")],
        kprobes: &[kprobe("kprobe_tcp_close")],
        stand_in: StandIn::None(
            "no tracepoint stands in for it; the close() syscall and the state change show it",
        ),
        sock_fields: &[],
    },
    // The state layer stays on the tracepoint in every mode: it fires inside tcp_set_state
    // and also for inet_sk_set_state (a child's SYN_RECV), which a probe on tcp_set_state
    // would miss.
    KernelHook {
        func: KernelFn::TcpSetState,
        layer: Layer::State,
        fentry: &[],
        kprobes: &[],
        stand_in: tracepoint!("inet_sock_set_state", "sock", "inet_sock_set_state", None),
        sock_fields: &[],
    },
    KernelHook {
        func: KernelFn::TcpReceiveReset,
        layer: Layer::Kernel,
        fentry: &[],
        kprobes: &[],
        stand_in: sock_tracepoint!("tcp", "tcp_receive_reset", forget: false),
        sock_fields: &[],
    },
    KernelHook {
        func: KernelFn::TcpSendReset,
        layer: Layer::Kernel,
        fentry: &[],
        kprobes: &[],
        stand_in: sock_tracepoint!("tcp", "tcp_send_reset", forget: false),
        sock_fields: &[],
    },
    KernelHook {
        func: KernelFn::TcpDestroySock,
        layer: Layer::Kernel,
        fentry: &[],
        kprobes: &[],
        stand_in: sock_tracepoint!("tcp", "tcp_destroy_sock", forget: true),
        sock_fields: &[],
    },
    // The congestion layer: tracepoints on every tier, each record with the socket's numbers
    // (`tracer-ebpf/src/kernel/congestion.rs`).
    KernelHook {
        func: KernelFn::TcpRetransmitSkb,
        layer: Layer::Congestion,
        fentry: &[],
        kprobes: &[],
        stand_in: raw_tracepoint!("tcp_retransmit_skb", None),
        sock_fields: &CONGESTION_FIELDS,
    },
    KernelHook {
        func: KernelFn::TcpSetCaState,
        layer: Layer::Congestion,
        fentry: &[],
        kprobes: &[],
        stand_in: raw_tracepoint!("tcp_cong_state_set", Some("after 5.10")),
        sock_fields: &CONGESTION_FIELDS,
    },
    KernelHook {
        func: KernelFn::TcpRcvEstablished,
        layer: Layer::Congestion,
        fentry: &[],
        kprobes: &[],
        stand_in: raw_tracepoint!("tcp_probe", None),
        sock_fields: &CONGESTION_FIELDS,
    },
    KernelHook {
        func: KernelFn::TcpRetransmitSynack,
        layer: Layer::Congestion,
        fentry: &[],
        kprobes: &[],
        stand_in: raw_tracepoint!("tcp_retransmit_synack", None),
        sock_fields: &SYNACK_FIELDS,
    },
];

/// The function whose hook notices what `func` did: a resized receive buffer is noticed by
/// `tcp_recvmsg`'s hook when the read that resized it returns (see
/// `tracer-ebpf/src/kernel/rcvbuf.rs`); every other function by its own.
pub fn noticed_by(func: KernelFn) -> KernelFn {
    match func {
        KernelFn::TcpRcvSpaceAdjust => KernelFn::TcpRecvmsg,
        func => func,
    }
}

/// The row of `func` (every function noticed by its own hook has one: a unit test checks it).
pub fn row(func: KernelFn) -> Option<&'static KernelHook> {
    KERNEL_HOOKS.iter().find(|h| h.func == func)
}

/// The syscall layer's tracepoint programs for `op`: its enter program (its own, or the one
/// it shares with the calls of its shape) and the shared exit program.
pub fn syscall_programs(op: SyscallOp) -> (String, &'static str) {
    let exit = if op.accepts() {
        "sys_exit_accept"
    } else {
        "sys_exit"
    };
    let enter = match op.shared_enter() {
        Some(shared) => shared.to_string(),
        None => enter_event(op),
    };
    (enter, exit)
}

/// The number of syscall `op` on the architecture the tracer was built for, for each call
/// whose enter program is shared ([`SyscallOp::shared_enter`]): the shared program finds
/// its call by it. `None` for the others.
pub fn shared_syscall_number(op: SyscallOp) -> Option<libc::c_long> {
    let nr = match op {
        SyscallOp::Listen => libc::SYS_listen,
        SyscallOp::Accept => libc::SYS_accept,
        SyscallOp::Accept4 => libc::SYS_accept4,
        SyscallOp::Read => libc::SYS_read,
        SyscallOp::Write => libc::SYS_write,
        SyscallOp::Readv => libc::SYS_readv,
        SyscallOp::Writev => libc::SYS_writev,
        SyscallOp::Sendto => libc::SYS_sendto,
        SyscallOp::Recvfrom => libc::SYS_recvfrom,
        SyscallOp::Sendmsg => libc::SYS_sendmsg,
        SyscallOp::Recvmsg => libc::SYS_recvmsg,
        SyscallOp::Shutdown => libc::SYS_shutdown,
        SyscallOp::Sendfile => libc::SYS_sendfile,
        SyscallOp::Sendmmsg => libc::SYS_sendmmsg,
        SyscallOp::Recvmmsg => libc::SYS_recvmmsg,
        _ => return None,
    };
    Some(nr)
}

/// The enter tracepoint of syscall `op` in the `syscalls` group (`sys_enter_accept4`).
pub fn enter_event(op: SyscallOp) -> String {
    format!("sys_enter_{}", op.tracepoint())
}

/// The exit tracepoint of syscall `op` in the `syscalls` group (`sys_exit_accept4`).
pub fn exit_event(op: SyscallOp) -> String {
    format!("sys_exit_{}", op.tracepoint())
}

/// The fentry tier's programs for `op`, on its syscall function: `(fentry, fexit)`.
pub fn syscall_function_programs(op: SyscallOp) -> (String, String) {
    let name = op.tracepoint();
    (format!("fentry_sys_{name}"), format!("fexit_sys_{name}"))
}

/// The socket layer's read and write iterators, with their fentry and fexit programs: only a
/// socket's `read`, `write`, `readv` and `writev` reach them, so the fentry tier watches those
/// four calls there instead of on their syscall functions, which every process's every
/// read and write goes through.
pub const SOCKET_ITERATORS: [SocketIterator; 2] = [
    SocketIterator {
        function: "sock_read_iter",
        enter: "fentry_sock_read_iter",
        exit: "fexit_sock_read_iter",
        ops: [SyscallOp::Read, SyscallOp::Readv],
    },
    SocketIterator {
        function: "sock_write_iter",
        enter: "fentry_sock_write_iter",
        exit: "fexit_sock_write_iter",
        ops: [SyscallOp::Write, SyscallOp::Writev],
    },
];

/// One of [`SOCKET_ITERATORS`].
#[derive(Clone, Copy, Debug)]
pub struct SocketIterator {
    /// The kernel function.
    pub function: &'static str,
    /// Its fentry program.
    pub enter: &'static str,
    /// Its fexit program.
    pub exit: &'static str,
    /// The syscalls it shows.
    pub ops: [SyscallOp; 2],
}

/// The socket iterator that shows syscall `op`, if one does.
pub fn socket_iterator(op: SyscallOp) -> Option<&'static SocketIterator> {
    SOCKET_ITERATORS.iter().find(|i| i.ops.contains(&op))
}

/// How the architecture the tracer was built for enters a syscall: the prefix of its syscall
/// functions, each given the user's `struct pt_regs`, and where in that struct the syscall's
/// six arguments are.
#[derive(Clone, Copy, Debug)]
pub struct SyscallAbi {
    /// `__x64_sys_`: `read(2)` is `__x64_sys_read`.
    pub prefix: &'static str,
    /// Byte offsets of arguments 0 to 5 in `struct pt_regs`.
    pub args: [u32; 6],
    /// Byte offset of the syscall's number in `struct pt_regs`.
    pub nr: u32,
}

/// This architecture's [`SyscallAbi`]; `None` leaves the syscall layer on its tracepoints.
pub const SYSCALL_ABI: Option<SyscallAbi> = if cfg!(target_arch = "x86_64") {
    // di, si, dx, r10, r8, r9.
    Some(SyscallAbi {
        prefix: "__x64_sys_",
        args: [112, 104, 96, 56, 72, 64],
        // orig_ax.
        nr: 120,
    })
} else if cfg!(target_arch = "aarch64") {
    // regs[0] to regs[5].
    Some(SyscallAbi {
        prefix: "__arm64_sys_",
        args: [0, 8, 16, 24, 32, 40],
        // syscallno, after regs[31], sp, pc, pstate and orig_x0.
        nr: 280,
    })
} else {
    None
};

/// The kernel function `op`'s syscall enters through on this architecture.
pub fn syscall_function(op: SyscallOp) -> Option<String> {
    SYSCALL_ABI.map(|abi| format!("{}{}", abi.prefix, op.tracepoint()))
}

/// Programs that follow traced fds into forked children: `(program, sched event)`.
pub const PROCESS_PROGRAMS: [(&str, &str); 2] = [
    ("sched_process_fork", "sched_process_fork"),
    ("sched_process_exec", "sched_process_exec"),
];

/// Programs that trace the fd a traced socket gets in a process it is passed to
/// (`SCM_RIGHTS`, `pidfd_getfd`), on the kernel function that installs it
/// (`tracer-ebpf/src/received_fd.rs`): fexit, one per signature, or kprobe and kretprobe.
pub const RECEIVED_FD: ReceivedFd = ReceivedFd {
    fentry: [
        fexit("fexit_receive_fd", 3),
        fexit("fexit_receive_fd_args4", 4),
    ],
    kprobes: [
        kprobe_for("kprobe_receive_fd", 3),
        kprobe_for("kprobe_receive_fd_args4", 4),
        kretprobe("kretprobe_receive_fd"),
    ],
    scm_fentry: [fexit("fexit_scm_recv_one_fd", 4)],
    scm_kprobes: [
        kprobe("kprobe_scm_recv_one_fd"),
        kretprobe("kretprobe_scm_recv_one_fd"),
    ],
};

/// The programs of [`RECEIVED_FD`].
pub struct ReceivedFd {
    /// fexit programs, one per signature.
    pub fentry: [Probe; 2],
    /// kprobes, one per signature, and the kretprobe.
    pub kprobes: [Probe; 3],
    /// The fexit program on `scm_recv_one_fd`, which `SCM_RIGHTS` installs through from 7.3.
    pub scm_fentry: [Probe; 1],
    /// The kprobe and kretprobe on `scm_recv_one_fd`.
    pub scm_kprobes: [Probe; 2],
}

impl ReceivedFd {
    /// The kprobe/kretprobe programs for a function of `arity` parameters.
    pub fn kprobes(&self, arity: usize) -> Vec<Probe> {
        self.kprobes
            .iter()
            .filter(|p| p.args.is_none_or(|n| usize::from(n) == arity))
            .copied()
            .collect()
    }
}

/// Congestion-state changes where the kernel has no `tcp:tcp_cong_state_set` tracepoint
/// (5.10; `tcp_set_ca_state` is inline there): the state in force is compared with the last
/// seen when a function that decides it returns (`tracer-ebpf/src/kernel/ca_state.rs`).
pub const CA_STATE_FALLBACK: CaStateFallback = CaStateFallback {
    fentry: [
        (
            "tcp_fastretrans_alert",
            fexit_any("fexit_tcp_fastretrans_alert"),
        ),
        ("tcp_enter_loss", fexit_any("fexit_tcp_enter_loss")),
        ("tcp_enter_cwr", fexit_any("fexit_tcp_enter_cwr")),
    ],
    kprobes: [kprobe("kprobe_ca_state"), kretprobe("kretprobe_ca_state")],
};

/// The programs of [`CA_STATE_FALLBACK`].
pub struct CaStateFallback {
    /// Each deciding function and its fexit program.
    pub fentry: [(&'static str, Probe); 3],
    /// One kprobe and one kretprobe, attached to every deciding function.
    pub kprobes: [Probe; 2],
}

impl CaStateFallback {
    /// The deciding functions.
    pub fn functions(&self) -> [&'static str; 3] {
        self.fentry.map(|(function, _)| function)
    }

    /// The hook label of records its programs of kind `via` produce.
    pub fn label(via: Via) -> &'static str {
        match via {
            Via::Kretprobe => "kretprobe:tcp_fastretrans_alert/tcp_enter_loss/tcp_enter_cwr",
            _ => "fexit:tcp_fastretrans_alert/tcp_enter_loss/tcp_enter_cwr",
        }
    }
}

/// Programs that add the processes traced processes fork to the filter, and take them out
/// when they exit: `(program, raw tracepoint)`.
pub const FOLLOW_PROGRAMS: [(&str, &str); 2] = [
    ("follow_fork", "sched_process_fork"),
    ("follow_exit", "sched_process_exit"),
];

/// The program that captures what TIME_WAIT sockets send, and its raw tracepoint.
pub const TIMEWAIT_PROGRAM: (&str, &str) = ("timewait_segments", "net_dev_queue");

/// The packet layer's programs: egress, then ingress.
pub const PACKET_PROGRAMS: [&str; 2] = ["packets_out", "packets_in"];

/// The hook that produced an event, as users name it: `fentry:tcp_sendmsg`,
/// `tracepoint:sock:inet_sock_set_state`, `cgroup_skb:egress`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookLabel {
    /// A label known as a whole.
    Fixed(&'static str),
    /// A probe on the function itself: `<via>:<function>`.
    Probe(Via, KernelFn),
}

impl fmt::Display for HookLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fixed(label) => f.write_str(label),
            Self::Probe(via, func) => write!(f, "{}:{}", via.name(), func.name()),
        }
    }
}

/// The label of a record of `func` (if it names one) produced through `via`.
pub fn label(func: Option<KernelFn>, via: Via) -> HookLabel {
    match (via, func.map(noticed_by)) {
        (Via::Syscalls, _) => HookLabel::Fixed("tracepoint:syscalls"),
        // The same label: a syscall is one, whichever function showed it.
        (Via::SyscallFunctions | Via::SocketIterators, _) => HookLabel::Fixed("fentry:syscalls"),
        (Via::CgroupSkbEgress, _) => HookLabel::Fixed("cgroup_skb:egress"),
        (Via::CgroupSkbIngress, _) => HookLabel::Fixed("cgroup_skb:ingress"),
        (Via::RawTracepoint, None) => HookLabel::Fixed("raw_tracepoint:net_dev_queue"),
        (via, Some(KernelFn::TcpSetCaState)) if via.is_probe() => {
            HookLabel::Fixed(CaStateFallback::label(via))
        }
        (via, Some(func)) if via.is_probe() => HookLabel::Probe(via, func),
        (via, func) => HookLabel::Fixed(
            func.and_then(row)
                .map_or(via.name(), |row| row.stand_in.label()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every call whose enter program is shared has a number the program can find it by, each
    /// its own and inside the table; and the one argument the shared program reads is 1 to 3.
    #[test]
    fn the_shared_enter_program_finds_each_of_its_calls_by_number() {
        let mut seen = std::collections::HashSet::new();
        for op in SyscallOp::ALL {
            let nr = shared_syscall_number(op);
            assert_eq!(op.shared_enter().is_some(), nr.is_some(), "{}", op.name());
            if let Some(nr) = nr {
                assert!((0..i64::from(tracer_common::maps::SYSCALL_NRS)).contains(&nr));
                assert!(seen.insert(nr), "{} shares its number", op.name());
                assert!(op.shown_arg().is_none_or(|n| (1..=3).contains(&n)));
            }
        }
        // The kernel's own numbers, from an independent table (the C library's headers).
        assert_eq!(shared_syscall_number(SyscallOp::Read), Some(libc::SYS_read));
        assert_eq!(syscall_programs(SyscallOp::Sendfile).0, "sys_enter_fd");
        assert_eq!(syscall_programs(SyscallOp::Connect).0, "sys_enter_connect");
        assert_eq!(enter_event(SyscallOp::Sendfile), "sys_enter_sendfile64");
    }

    /// The syscall ABI's register offsets are where the running kernel's BTF puts those
    /// members of `struct pt_regs` (x86-64: di, si, dx, r10, r8, r9, orig_ax).
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_syscall_registers_are_where_the_kernels_btf_says() {
        let btf = crate::system::btf::Btf::from_sys_fs().expect("this kernel's BTF");
        let abi = SYSCALL_ABI.expect("x86-64 has a syscall ABI");
        let at = |member: &str| btf.member_offset("pt_regs", member).unwrap();
        let args: Vec<u32> = ["di", "si", "dx", "r10", "r8", "r9"].map(at).to_vec();
        assert_eq!(args, abi.args);
        assert_eq!(at("orig_ax"), abi.nr);
    }

    #[test]
    fn every_function_has_one_row_and_labels_name_the_hook() {
        for func in KernelFn::ALL.into_iter().filter(|&f| noticed_by(f) == f) {
            assert_eq!(
                KERNEL_HOOKS.iter().filter(|h| h.func == func).count(),
                1,
                "{func:?}"
            );
        }
        assert_eq!(
            label(Some(KernelFn::TcpSendmsg), Via::Fentry).to_string(),
            "fentry:tcp_sendmsg"
        );
        assert_eq!(
            label(Some(KernelFn::TcpSendmsg), Via::Tracepoint).to_string(),
            "tracepoint:sock:sock_send_length"
        );
        assert_eq!(
            label(Some(KernelFn::TcpConnect), Via::SockOps).to_string(),
            "sock_ops:tcp_connect_cb"
        );
        assert_eq!(
            label(Some(KernelFn::TcpDestroySock), Via::Tracepoint).to_string(),
            "tracepoint:tcp:tcp_destroy_sock"
        );
        // A resized receive buffer is noticed by tcp_recvmsg's hook, and says so.
        assert_eq!(
            label(Some(KernelFn::TcpRcvSpaceAdjust), Via::Fexit).to_string(),
            "fexit:tcp_recvmsg"
        );
        assert_eq!(
            label(Some(KernelFn::TcpRcvSpaceAdjust), Via::Tracepoint).to_string(),
            "tracepoint:sock:sock_recv_length"
        );
        // Without its tracepoint, a congestion-state change is noticed after the functions
        // that decide it.
        assert_eq!(
            label(Some(KernelFn::TcpSetCaState), Via::RawTracepoint).to_string(),
            "raw_tracepoint:tcp_cong_state_set"
        );
        assert_eq!(
            label(Some(KernelFn::TcpSetCaState), Via::Fexit).to_string(),
            "fexit:tcp_fastretrans_alert/tcp_enter_loss/tcp_enter_cwr"
        );
    }
}
