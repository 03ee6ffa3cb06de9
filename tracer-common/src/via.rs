//! How a record was produced. With the record's function this names its hook: `fentry` +
//! `tcp_sendmsg` is `fentry:tcp_sendmsg`; for stand-ins (tracepoints, sock_ops) the loader's hook
//! table knows which one it attached for that function.

/// The mechanism that produced a record.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Via {
    /// A syscall tracepoint pair (`syscalls:sys_enter_*` + `sys_exit_*`).
    Syscalls = 1,
    /// A tracepoint standing in for (or inside) the kernel function.
    Tracepoint = 2,
    /// A sock_ops callback standing in for the kernel function.
    SockOps = 3,
    /// fentry on the function itself.
    Fentry = 4,
    /// fexit on the function itself.
    Fexit = 5,
    /// kprobe on the function itself.
    Kprobe = 6,
    /// kretprobe on the function itself.
    Kretprobe = 7,
    /// `cgroup_skb/egress` on the cgroup2 root.
    CgroupSkbEgress = 8,
    /// `cgroup_skb/ingress` on the cgroup2 root.
    CgroupSkbIngress = 9,
    /// A raw tracepoint (`net:net_dev_queue`): segments leaving that no socket's cgroup_skb
    /// program sees (those a TIME_WAIT socket sends).
    RawTracepoint = 10,
    /// fentry + fexit on a syscall's function (`__x64_sys_*`).
    SyscallFunctions = 11,
    /// fentry + fexit on the socket layer's read and write iterators (`sock_read_iter`,
    /// `sock_write_iter`), for `read`, `write`, `readv` and `writev`.
    SocketIterators = 12,
}

impl Via {
    /// Every mechanism, in declaration order.
    pub const ALL: [Via; 12] = [
        Self::Syscalls,
        Self::Tracepoint,
        Self::SockOps,
        Self::Fentry,
        Self::Fexit,
        Self::Kprobe,
        Self::Kretprobe,
        Self::CgroupSkbEgress,
        Self::CgroupSkbIngress,
        Self::RawTracepoint,
        Self::SyscallFunctions,
        Self::SocketIterators,
    ];

    /// Decodes the raw byte written by the eBPF side.
    pub fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.get((v as usize).wrapping_sub(1)).copied()
    }

    /// The prefix of a hook label: `fentry`, `kretprobe`, `tracepoint`...
    pub fn name(self) -> &'static str {
        match self {
            Self::Syscalls | Self::Tracepoint => "tracepoint",
            Self::SockOps => "sock_ops",
            Self::Fentry | Self::SyscallFunctions | Self::SocketIterators => "fentry",
            Self::Fexit => "fexit",
            Self::Kprobe => "kprobe",
            Self::Kretprobe => "kretprobe",
            Self::CgroupSkbEgress | Self::CgroupSkbIngress => "cgroup_skb",
            Self::RawTracepoint => "raw_tracepoint",
        }
    }

    /// Whether the hook is on the function itself (fentry/fexit, kprobe/kretprobe), which sees
    /// its arguments and return value.
    pub fn is_probe(self) -> bool {
        matches!(
            self,
            Self::Fentry | Self::Fexit | Self::Kprobe | Self::Kretprobe
        )
    }
}
