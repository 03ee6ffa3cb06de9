//! Records shared by the eBPF programs (`tracer-ebpf`) and the loader (`tracer`).
//!
//! Everything here is `#[repr(C)]` with explicit padding so both sides agree byte for byte;
//! the size asserts at the bottom catch a field added on one side only.
#![no_std]

/// Length of a task's `comm`, as in the kernel's `TASK_COMM_LEN`.
pub const COMM_LEN: usize = 16;

/// `AF_INET`.
pub const AF_INET: u16 = 2;
/// `AF_INET6`.
pub const AF_INET6: u16 = 10;

/// Which layer of the journey a record belongs to.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    /// A system call on a traced socket, enter and exit paired.
    Syscall = 1,
    /// A kernel TCP function reached by the socket.
    Kernel = 2,
    /// A TCP state transition.
    State = 3,
    /// The start of a syscall that is still in flight (human view only).
    SyscallEnter = 4,
}

impl Layer {
    /// Decodes the raw byte written by the eBPF side.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Syscall,
            2 => Self::Kernel,
            3 => Self::State,
            4 => Self::SyscallEnter,
            _ => return None,
        })
    }
}

/// The system calls the tracer pairs into events.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyscallOp {
    /// `socket(2)`.
    Socket = 1,
    /// `bind(2)`.
    Bind = 2,
    /// `listen(2)`.
    Listen = 3,
    /// `accept(2)`.
    Accept = 4,
    /// `accept4(2)`.
    Accept4 = 5,
    /// `connect(2)`.
    Connect = 6,
    /// `read(2)`.
    Read = 7,
    /// `write(2)`.
    Write = 8,
    /// `readv(2)`.
    Readv = 9,
    /// `writev(2)`.
    Writev = 10,
    /// `sendto(2)` (also `send(3)`).
    Sendto = 11,
    /// `recvfrom(2)` (also `recv(3)`).
    Recvfrom = 12,
    /// `sendmsg(2)`.
    Sendmsg = 13,
    /// `recvmsg(2)`.
    Recvmsg = 14,
    /// `shutdown(2)`.
    Shutdown = 15,
    /// `close(2)`.
    Close = 16,
}

impl SyscallOp {
    /// Every operation, in declaration order.
    pub const ALL: [SyscallOp; 16] = [
        Self::Socket,
        Self::Bind,
        Self::Listen,
        Self::Accept,
        Self::Accept4,
        Self::Connect,
        Self::Read,
        Self::Write,
        Self::Readv,
        Self::Writev,
        Self::Sendto,
        Self::Recvfrom,
        Self::Sendmsg,
        Self::Recvmsg,
        Self::Shutdown,
        Self::Close,
    ];

    /// Decodes the raw byte written by the eBPF side.
    pub fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.get((v as usize).wrapping_sub(1)).copied()
    }

    /// The syscall's name, as in `syscalls:sys_enter_<name>`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Socket => "socket",
            Self::Bind => "bind",
            Self::Listen => "listen",
            Self::Accept => "accept",
            Self::Accept4 => "accept4",
            Self::Connect => "connect",
            Self::Read => "read",
            Self::Write => "write",
            Self::Readv => "readv",
            Self::Writev => "writev",
            Self::Sendto => "sendto",
            Self::Recvfrom => "recvfrom",
            Self::Sendmsg => "sendmsg",
            Self::Recvmsg => "recvmsg",
            Self::Shutdown => "shutdown",
            Self::Close => "close",
        }
    }

    /// Whether a successful return value counts bytes sent by the application.
    pub fn sends(self) -> bool {
        matches!(
            self,
            Self::Write | Self::Writev | Self::Sendto | Self::Sendmsg
        )
    }

    /// Whether a successful return value counts bytes received by the application.
    pub fn receives(self) -> bool {
        matches!(
            self,
            Self::Read | Self::Readv | Self::Recvfrom | Self::Recvmsg
        )
    }
}

/// Kernel functions (and their stand-ins) that produce `kernel`/`state` records.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelFn {
    /// `tcp_connect`: the SYN is about to be built.
    TcpConnect = 1,
    /// `inet_csk_accept`: the connection a listener hands to `accept`.
    InetCskAccept = 2,
    /// `tcp_sendmsg`: bytes copied into the send queue.
    TcpSendmsg = 3,
    /// `tcp_recvmsg`: bytes copied out of the receive queue.
    TcpRecvmsg = 4,
    /// `tcp_set_state`: a state transition (a `state` record).
    TcpSetState = 5,
    /// `tcp_close`: the application closed the socket.
    TcpClose = 6,
    /// A RST arrived (`tcp_reset`).
    TcpReceiveReset = 7,
    /// A RST was sent (`tcp_send_active_reset`/`tcp_v4_send_reset`).
    TcpSendReset = 8,
    /// The socket's memory is released (`tcp_v4_destroy_sock`).
    TcpDestroySock = 9,
    /// A segment is retransmitted (`tcp_retransmit_skb`).
    TcpRetransmitSkb = 10,
}

impl KernelFn {
    /// Every function, in declaration order.
    pub const ALL: [KernelFn; 10] = [
        Self::TcpConnect,
        Self::InetCskAccept,
        Self::TcpSendmsg,
        Self::TcpRecvmsg,
        Self::TcpSetState,
        Self::TcpClose,
        Self::TcpReceiveReset,
        Self::TcpSendReset,
        Self::TcpDestroySock,
        Self::TcpRetransmitSkb,
    ];

    /// Decodes the raw byte written by the eBPF side.
    pub fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.get((v as usize).wrapping_sub(1)).copied()
    }

    /// The kernel function's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::TcpConnect => "tcp_connect",
            Self::InetCskAccept => "inet_csk_accept",
            Self::TcpSendmsg => "tcp_sendmsg",
            Self::TcpRecvmsg => "tcp_recvmsg",
            Self::TcpSetState => "tcp_set_state",
            Self::TcpClose => "tcp_close",
            Self::TcpReceiveReset => "tcp_reset",
            Self::TcpSendReset => "tcp_send_reset",
            Self::TcpDestroySock => "tcp_destroy_sock",
            Self::TcpRetransmitSkb => "tcp_retransmit_skb",
        }
    }
}

/// The mechanism that produced a record; the `hook` field of every event.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// `tracepoint:syscalls:sys_enter_*` + `sys_exit_*`.
    SyscallTracepoints = 1,
    /// `sock_ops` `BPF_SOCK_OPS_TCP_CONNECT_CB` (called from inside `tcp_connect`).
    SockOpsTcpConnect = 2,
    /// `sock_ops` `BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB` (the socket `inet_csk_accept` returns).
    SockOpsPassiveEstablished = 3,
    /// `tracepoint:sock:sock_send_length` (end of `sock_sendmsg`).
    TpSockSendLength = 4,
    /// `tracepoint:sock:sock_recv_length` (end of `sock_recvmsg`).
    TpSockRecvLength = 5,
    /// `tracepoint:sock:inet_sock_set_state`.
    TpInetSockSetState = 6,
    /// `tracepoint:tcp:tcp_receive_reset`.
    TpTcpReceiveReset = 7,
    /// `tracepoint:tcp:tcp_send_reset`.
    TpTcpSendReset = 8,
    /// `tracepoint:tcp:tcp_destroy_sock`.
    TpTcpDestroySock = 9,
    /// `tracepoint:tcp:tcp_retransmit_skb`.
    TpTcpRetransmitSkb = 10,
    /// `cgroup_skb/egress` on the cgroup2 root.
    CgroupSkbEgress = 11,
    /// `cgroup_skb/ingress` on the cgroup2 root.
    CgroupSkbIngress = 12,
    /// fentry on the function named by the record's `op`.
    Fentry = 13,
    /// fexit on the function named by the record's `op`.
    Fexit = 14,
    /// kprobe on the function named by the record's `op`.
    Kprobe = 15,
    /// kretprobe on the function named by the record's `op`.
    Kretprobe = 16,
}

impl Hook {
    /// Every hook, in declaration order.
    pub const ALL: [Hook; 16] = [
        Self::SyscallTracepoints,
        Self::SockOpsTcpConnect,
        Self::SockOpsPassiveEstablished,
        Self::TpSockSendLength,
        Self::TpSockRecvLength,
        Self::TpInetSockSetState,
        Self::TpTcpReceiveReset,
        Self::TpTcpSendReset,
        Self::TpTcpDestroySock,
        Self::TpTcpRetransmitSkb,
        Self::CgroupSkbEgress,
        Self::CgroupSkbIngress,
        Self::Fentry,
        Self::Fexit,
        Self::Kprobe,
        Self::Kretprobe,
    ];

    /// Decodes the raw byte written by the eBPF side.
    pub fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.get((v as usize).wrapping_sub(1)).copied()
    }

    /// The hook as users name it: `tier:detail`.
    pub fn label(self) -> &'static str {
        match self {
            Self::SyscallTracepoints => "tracepoint:syscalls",
            Self::SockOpsTcpConnect => "sock_ops:tcp_connect_cb",
            Self::SockOpsPassiveEstablished => "sock_ops:passive_established_cb",
            Self::TpSockSendLength => "tracepoint:sock:sock_send_length",
            Self::TpSockRecvLength => "tracepoint:sock:sock_recv_length",
            Self::TpInetSockSetState => "tracepoint:sock:inet_sock_set_state",
            Self::TpTcpReceiveReset => "tracepoint:tcp:tcp_receive_reset",
            Self::TpTcpSendReset => "tracepoint:tcp:tcp_send_reset",
            Self::TpTcpDestroySock => "tracepoint:tcp:tcp_destroy_sock",
            Self::TpTcpRetransmitSkb => "tracepoint:tcp:tcp_retransmit_skb",
            Self::CgroupSkbEgress => "cgroup_skb:egress",
            Self::CgroupSkbIngress => "cgroup_skb:ingress",
            Self::Fentry => "fentry",
            Self::Fexit => "fexit",
            Self::Kprobe => "kprobe",
            Self::Kretprobe => "kretprobe",
        }
    }

    /// Whether this is the fentry/fexit or kprobe/kretprobe tier, which sees the function's own
    /// arguments and return value.
    pub fn is_probe(self) -> bool {
        matches!(
            self,
            Self::Fentry | Self::Fexit | Self::Kprobe | Self::Kretprobe
        )
    }

    /// The hook of a record for kernel function `func`: `fentry:tcp_sendmsg`, or [`Self::label`]
    /// for hooks that name their function already.
    pub fn label_for(self, func: KernelFn) -> &'static str {
        use KernelFn::*;
        match (self, func) {
            (Self::Fentry, TcpConnect) => "fentry:tcp_connect",
            (Self::Fentry, TcpSendmsg) => "fentry:tcp_sendmsg",
            (Self::Fentry, TcpClose) => "fentry:tcp_close",
            (Self::Fexit, InetCskAccept) => "fexit:inet_csk_accept",
            (Self::Fexit, TcpRecvmsg) => "fexit:tcp_recvmsg",
            (Self::Kprobe, TcpConnect) => "kprobe:tcp_connect",
            (Self::Kprobe, TcpSendmsg) => "kprobe:tcp_sendmsg",
            (Self::Kprobe, TcpClose) => "kprobe:tcp_close",
            (Self::Kretprobe, InetCskAccept) => "kretprobe:inet_csk_accept",
            (Self::Kretprobe, TcpRecvmsg) => "kretprobe:tcp_recvmsg",
            _ => self.label(),
        }
    }
}

/// One record in the ring buffer. Field meaning depends on `layer`:
///
/// | field   | syscall                          | kernel                 | state        |
/// |---------|----------------------------------|------------------------|--------------|
/// | `op`    | [`SyscallOp`]                    | [`KernelFn`]           | `TcpSetState`|
/// | `fd`    | the fd argument                  | -1                     | -1           |
/// | `ret`   | return value (negative errno)    | bytes / 0              | 0            |
/// | `arg`   | socket type, backlog, how, ...   | function specific      | old state    |
/// | `arg2`  | socket protocol                  | function specific      | new state    |
/// | tuple   | address argument (connect, bind, accept's peer) | socket's 4-tuple | socket's 4-tuple |
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Event {
    /// `bpf_ktime_get_ns()` at the start (syscalls: at enter).
    pub ts_ns: u64,
    /// Syscalls: time from enter to exit. Zero otherwise.
    pub duration_ns: u64,
    /// The kernel socket this record belongs to, 0 when unknown. An identity only: never shown.
    pub sock: u64,
    /// Layer-specific value, see the table above.
    pub ret: i64,
    /// Layer-specific value, see the table above.
    pub arg: u64,
    /// Layer-specific value, see the table above.
    pub arg2: u64,
    /// Process (thread group) id of the socket's owner.
    pub pid: u32,
    /// Thread id of the socket's owner.
    pub tid: u32,
    /// The file descriptor, -1 when not a syscall.
    pub fd: i32,
    /// Local port (host order), 0 when unknown.
    pub lport: u16,
    /// Remote port (host order), 0 when unknown.
    pub rport: u16,
    /// [`Layer`] as a byte.
    pub layer: u8,
    /// [`SyscallOp`] or [`KernelFn`] as a byte.
    pub op: u8,
    /// [`Hook`] as a byte.
    pub hook: u8,
    /// Address family of the tuple: `AF_INET`, `AF_INET6` or 0 (unknown).
    pub family: u8,
    /// Bit flags, see `FLAG_*`.
    pub flags: u8,
    /// Explicit padding.
    pub _pad: [u8; 3],
    /// Local address (IPv4 in the first 4 bytes).
    pub laddr: [u8; 16],
    /// Remote address (IPv4 in the first 4 bytes).
    pub raddr: [u8; 16],
    /// `comm` of the socket's owner.
    pub comm: [u8; COMM_LEN],
}

/// `Event::flags`: the owner was not known; pid/comm are those of the running task.
pub const FLAG_OWNER_GUESSED: u8 = 1;

impl Event {
    /// An all-zero record.
    pub const fn zeroed() -> Self {
        Self {
            ts_ns: 0,
            duration_ns: 0,
            sock: 0,
            ret: 0,
            arg: 0,
            arg2: 0,
            pid: 0,
            tid: 0,
            fd: -1,
            lport: 0,
            rport: 0,
            layer: 0,
            op: 0,
            hook: 0,
            family: 0,
            flags: 0,
            _pad: [0; 3],
            laddr: [0; 16],
            raddr: [0; 16],
            comm: [0; COMM_LEN],
        }
    }
}

/// Key of the `(tgid, fd)` → socket map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FdKey {
    /// Process id.
    pub tgid: u32,
    /// File descriptor.
    pub fd: i32,
}

/// The process that owns a traced socket, remembered at connect/listen/accept time so that
/// records produced in softirq context are attributed to it, not to whoever was on the CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Owner {
    /// Process id.
    pub tgid: u32,
    /// Thread id.
    pub tid: u32,
    /// Command name.
    pub comm: [u8; COMM_LEN],
}

/// A syscall on a traced socket between its enter and exit, keyed by thread id.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Inflight {
    /// The record being built; completed and emitted at exit.
    pub event: Event,
    /// User pointer to read at exit (accept's peer address), 0 if none.
    pub user_addr: u64,
}

/// Byte offsets of the tracepoint fields the programs read, taken from each event's `format`
/// file at startup (see `tracer::tracefs`). Index with the `OFF_*` constants.
pub const OFFSETS_LEN: usize = 32;

/// `inet_sock_set_state.skaddr`
pub const OFF_STATE_SKADDR: usize = 0;
/// `inet_sock_set_state.oldstate`
pub const OFF_STATE_OLD: usize = 1;
/// `inet_sock_set_state.newstate`
pub const OFF_STATE_NEW: usize = 2;
/// `inet_sock_set_state.sport`
pub const OFF_STATE_SPORT: usize = 3;
/// `inet_sock_set_state.dport`
pub const OFF_STATE_DPORT: usize = 4;
/// `inet_sock_set_state.family`
pub const OFF_STATE_FAMILY: usize = 5;
/// `inet_sock_set_state.protocol`
pub const OFF_STATE_PROTOCOL: usize = 6;
/// `inet_sock_set_state.saddr`
pub const OFF_STATE_SADDR: usize = 7;
/// `inet_sock_set_state.daddr`
pub const OFF_STATE_DADDR: usize = 8;
/// `inet_sock_set_state.saddr_v6`
pub const OFF_STATE_SADDR6: usize = 9;
/// `inet_sock_set_state.daddr_v6`
pub const OFF_STATE_DADDR6: usize = 10;
/// `sock_send_length.sk` (same layout as `sock_recv_length`)
pub const OFF_SOCKLEN_SK: usize = 11;
/// `sock_send_length.family`
pub const OFF_SOCKLEN_FAMILY: usize = 12;
/// `sock_send_length.protocol`
pub const OFF_SOCKLEN_PROTOCOL: usize = 13;
/// `sock_send_length.ret`
pub const OFF_SOCKLEN_RET: usize = 14;
/// `tcp_receive_reset.skaddr` (same layout as `tcp_destroy_sock`)
pub const OFF_TCPSK_SKADDR: usize = 15;
/// `tcp_send_reset.skaddr`
pub const OFF_SENDRST_SKADDR: usize = 16;
/// `tcp_retransmit_skb.skaddr`
pub const OFF_RETRANS_SKADDR: usize = 17;
/// `tcp_destroy_sock.skaddr`
pub const OFF_DESTROY_SKADDR: usize = 18;
/// `sock_common.skc_family` (from kernel BTF; fentry/kprobe tiers)
pub const OFF_SK_FAMILY: usize = 19;
/// `sock_common.skc_num`: local port, host order
pub const OFF_SK_NUM: usize = 20;
/// `sock_common.skc_dport`: remote port, network order
pub const OFF_SK_DPORT: usize = 21;
/// `sock_common.skc_rcv_saddr`
pub const OFF_SK_RCV_SADDR: usize = 22;
/// `sock_common.skc_daddr`
pub const OFF_SK_DADDR: usize = 23;
/// `sock_common.skc_v6_rcv_saddr`
pub const OFF_SK_V6_RCV_SADDR: usize = 24;
/// `sock_common.skc_v6_daddr`
pub const OFF_SK_V6_DADDR: usize = 25;
/// `tcp_sock.write_seq`: the next sequence number the application's bytes will get
pub const OFF_TP_WRITE_SEQ: usize = 26;

/// Filter switches handed to the programs as one map value.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FilterConfig {
    /// Non-zero when `PORTS` holds the ports to trace.
    pub by_port: u8,
    /// Non-zero when `PIDS` holds the processes to trace.
    pub by_pid: u8,
    /// Non-zero when `comm` must equal the task's comm.
    pub by_comm: u8,
    /// Non-zero to emit `SyscallEnter` records (the human view wants them; JSON does not).
    pub emit_enter: u8,
    /// The tracer's own pid, never traced.
    pub self_tgid: u32,
    /// The comm to match, NUL-padded.
    pub comm: [u8; COMM_LEN],
    /// Non-zero to capture the TCP segments of traced connections.
    pub capture: u8,
    /// Explicit padding.
    pub _pad: u8,
    /// Payload bytes to copy after the TCP header (0: headers only).
    pub snaplen: u16,
}

/// Bytes of a packet a [`PacketRecord`] can hold: IP + TCP headers (at most 120) and payload.
pub const PACKET_CAP: usize = 256;

/// A captured TCP segment, starting at its IP header. Told apart from [`Event`] by its size.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PacketRecord {
    /// `bpf_ktime_get_ns()` when the segment passed the hook.
    pub ts_ns: u64,
    /// The whole packet's length from the IP header.
    pub len: u32,
    /// Interface index.
    pub ifindex: u32,
    /// Bytes copied into `data`.
    pub caplen: u16,
    /// 1: egress (sent by this host), 0: ingress.
    pub egress: u8,
    /// Explicit padding.
    pub _pad: [u8; 5],
    /// The packet from its IP header: headers always, payload up to the snap length.
    pub data: [u8; PACKET_CAP],
}

/// TCP states as the kernel numbers them (`include/net/tcp_states.h`).
pub mod tcp_state {
    /// `TCP_ESTABLISHED`
    pub const ESTABLISHED: u8 = 1;
    /// `TCP_SYN_SENT`
    pub const SYN_SENT: u8 = 2;
    /// `TCP_SYN_RECV`
    pub const SYN_RECV: u8 = 3;
    /// `TCP_FIN_WAIT1`
    pub const FIN_WAIT1: u8 = 4;
    /// `TCP_FIN_WAIT2`
    pub const FIN_WAIT2: u8 = 5;
    /// `TCP_TIME_WAIT`
    pub const TIME_WAIT: u8 = 6;
    /// `TCP_CLOSE`
    pub const CLOSE: u8 = 7;
    /// `TCP_CLOSE_WAIT`
    pub const CLOSE_WAIT: u8 = 8;
    /// `TCP_LAST_ACK`
    pub const LAST_ACK: u8 = 9;
    /// `TCP_LISTEN`
    pub const LISTEN: u8 = 10;
    /// `TCP_CLOSING`
    pub const CLOSING: u8 = 11;
    /// `TCP_NEW_SYN_RECV`
    pub const NEW_SYN_RECV: u8 = 12;

    /// The Linux name without the `TCP_` prefix.
    pub fn name(state: u8) -> &'static str {
        match state {
            ESTABLISHED => "ESTABLISHED",
            SYN_SENT => "SYN_SENT",
            SYN_RECV => "SYN_RECV",
            FIN_WAIT1 => "FIN_WAIT1",
            FIN_WAIT2 => "FIN_WAIT2",
            TIME_WAIT => "TIME_WAIT",
            CLOSE => "CLOSE",
            CLOSE_WAIT => "CLOSE_WAIT",
            LAST_ACK => "LAST_ACK",
            LISTEN => "LISTEN",
            CLOSING => "CLOSING",
            NEW_SYN_RECV => "NEW_SYN_RECV",
            _ => "UNKNOWN",
        }
    }
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: all of these are plain `#[repr(C)]` data with explicit padding and no pointers.
    unsafe impl aya::Pod for super::Event {}
    unsafe impl aya::Pod for super::FdKey {}
    unsafe impl aya::Pod for super::Owner {}
    unsafe impl aya::Pod for super::Inflight {}
    unsafe impl aya::Pod for super::FilterConfig {}
    unsafe impl aya::Pod for super::PacketRecord {}
    unsafe impl aya::Pod for super::PortPair {}
}

const _: () = assert!(core::mem::size_of::<Event>() == 120);
const _: () = assert!(core::mem::size_of::<Inflight>() == 128);
const _: () = assert!(core::mem::size_of::<FdKey>() == 8);
const _: () = assert!(core::mem::size_of::<Owner>() == 24);
const _: () = assert!(core::mem::size_of::<FilterConfig>() == 28);
const _: () = assert!(core::mem::size_of::<PacketRecord>() == 24 + PACKET_CAP);
const _: () = assert!(core::mem::size_of::<PortPair>() == 4);

/// Key of the map of traced connections' port pairs, used to filter packets by pid or comm.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortPair {
    /// Local port of the traced end.
    pub local: u16,
    /// Remote port.
    pub remote: u16,
}
