//! Ring-buffer records. Every record starts with a [`RecordKind`] byte; user space reads that
//! byte and decodes the rest as the one struct that kind names.
//!
//! | kind            | struct            | written by                                      |
//! |-----------------|-------------------|-------------------------------------------------|
//! | `Syscall`       | [`SyscallRecord`] | `sys_exit` (enter and exit paired)               |
//! | `SyscallEnter`  | [`SyscallRecord`] | `sys_enter_*` (human view only: ret and duration are 0) |
//! | `Kernel`        | [`KernelRecord`]  | fentry/kprobe programs and their stand-ins       |
//! | `State`         | [`StateRecord`]   | `sock:inet_sock_set_state`                        |
//! | `Packet`        | [`PacketRecord`]  | cgroup_skb egress/ingress                         |
//! | `Congestion`    | [`CongestionRecord`] | `tcp:` raw tracepoints: retransmit, ACK samples, congestion state; `tcp_recvmsg`'s hooks: receive buffer resized |
//! | `Place`         | [`PlaceRecord`]   | `sys_enter_*`: where a traced process runs, when new or changed |

use crate::COMM_LEN;

/// The tag in the first byte of every record.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// A completed syscall: [`SyscallRecord`].
    Syscall = 1,
    /// A syscall that has started: [`SyscallRecord`] with no result yet.
    SyscallEnter = 2,
    /// A kernel function reached: [`KernelRecord`].
    Kernel = 3,
    /// A TCP state transition: [`StateRecord`].
    State = 4,
    /// A TCP segment: [`PacketRecord`].
    Packet = 5,
    /// What TCP did about loss and congestion, with its numbers: [`CongestionRecord`].
    Congestion = 6,
    /// Where a traced process runs: [`PlaceRecord`].
    Place = 7,
}

impl RecordKind {
    /// Decodes the first byte of a record.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Syscall,
            2 => Self::SyscallEnter,
            3 => Self::Kernel,
            4 => Self::State,
            5 => Self::Packet,
            6 => Self::Congestion,
            7 => Self::Place,
            _ => return None,
        })
    }
}

/// A task: the socket's owner, or the thread that made the syscall.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Task {
    /// Process (thread group) id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Command name, NUL-padded.
    pub comm: [u8; COMM_LEN],
}

impl Task {
    /// No task: pid 0, empty name.
    pub const NONE: Task = Task {
        pid: 0,
        tid: 0,
        comm: [0; COMM_LEN],
    };
}

/// A connection's ends as a record saw them; zeros where unknown.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuple {
    /// `AF_INET`, `AF_INET6`, or 0 when no end is known.
    pub family: u16,
    /// Local port, host order.
    pub lport: u16,
    /// Remote port, host order.
    pub rport: u16,
    /// Explicit padding.
    pub _pad: u16,
    /// Local address (IPv4 in the first 4 bytes).
    pub laddr: [u8; 16],
    /// Remote address (IPv4 in the first 4 bytes).
    pub raddr: [u8; 16],
}

impl Tuple {
    /// Nothing known.
    pub const EMPTY: Tuple = Tuple {
        family: 0,
        lport: 0,
        rport: 0,
        _pad: 0,
        laddr: [0; 16],
        raddr: [0; 16],
    };
}

/// `Header::flags`: the owner was not known; pid and comm are a guess or empty.
pub const FLAG_OWNER_GUESSED: u8 = 1;
/// `Header::flags` of a [`KernelRecord`]: `bytes` holds the function's byte count or errno.
pub const FLAG_BYTES: u8 = 2;
/// `Header::flags` of a [`KernelRecord`]: `isn` holds the initial sequence number.
pub const FLAG_ISN: u8 = 4;
/// `Header::flags` of a [`KernelRecord`]: `write_seq` holds the stream position.
pub const FLAG_WRITE_SEQ: u8 = 8;
/// `Header::flags` of a [`KernelRecord`]: `ts_ns` is the start of the syscall the function ran
/// in (just after it), not when the hook fired: a hook at the function's end (the
/// `sock_send_length` tracepoint) fires after the segments the function sent.
pub const FLAG_AT_SYSCALL_START: u8 = 16;
/// `Header::flags` of a [`SyscallRecord`]: made at the syscall's return, its enter program
/// having been skipped by the kernel (fentry tier, see `tracer-ebpf/src/call.rs`): no
/// duration, and the kernel functions it ran saw no syscall in flight (their bytes were
/// counted as no syscall's).
pub const FLAG_LATE: u8 = 32;

/// The start of every record but [`PacketRecord`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Header {
    /// [`RecordKind`] as a byte; always the first byte.
    pub kind: u8,
    /// [`crate::Via`] as a byte.
    pub via: u8,
    /// [`crate::SyscallOp`] for syscall records, [`crate::KernelFn`] for the others.
    pub op: u8,
    /// `FLAG_*` bits.
    pub flags: u8,
    /// The file descriptor the record concerns, -1 when none.
    pub fd: i32,
    /// `bpf_ktime_get_ns()` when it happened (syscalls: at enter).
    pub ts_ns: u64,
    /// The kernel socket, 0 when unknown. An identity only: never shown.
    pub sock: u64,
    /// Who: the socket's owner (not whatever task ran the softirq), or the syscall's thread.
    pub task: Task,
}

impl Header {
    /// A header of `kind`, op `op`, via `via`; everything else empty.
    pub const fn new(kind: RecordKind, via: crate::Via, op: u8) -> Self {
        Self {
            kind: kind as u8,
            via: via as u8,
            op,
            flags: 0,
            fd: -1,
            ts_ns: 0,
            sock: 0,
            task: Task::NONE,
        }
    }
}

/// A system call on a traced socket.
///
/// `args` are the syscall's own arguments the views show: `socket(type, protocol)`,
/// `listen(backlog)`, `shutdown(how)`, `accept4(flags)`, the byte count asked of a read or
/// write; for `bind`/`connect`, `args[1]` is the process that created the socket when a
/// forebear of the caller did (held until this call named a traced port); zero otherwise. `tuple` is the address argument: `bind`'s local end, `connect`'s
/// remote end, the peer `accept` returned, `socket`'s family.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SyscallRecord {
    /// Kind `Syscall` or `SyscallEnter`, op a [`crate::SyscallOp`].
    pub header: Header,
    /// Time from enter to exit.
    pub duration_ns: u64,
    /// Return value; a negative errno on failure.
    pub ret: i64,
    /// The arguments shown, see above.
    pub args: [u64; 2],
    /// The address argument, see above.
    pub tuple: Tuple,
}

impl SyscallRecord {
    /// An empty record for syscall `op`.
    pub const fn new(op: crate::SyscallOp) -> Self {
        Self {
            header: Header::new(RecordKind::Syscall, crate::Via::Syscalls, op as u8),
            duration_ns: 0,
            ret: 0,
            args: [0; 2],
            tuple: Tuple::EMPTY,
        }
    }
}

/// A kernel function reached by a traced socket. Which optional fields hold values is said by
/// `header.flags` (`FLAG_BYTES`, `FLAG_ISN`, `FLAG_WRITE_SEQ`): a hook fills what it can see.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct KernelRecord {
    /// Kind `Kernel`, op a [`crate::KernelFn`].
    pub header: Header,
    /// The socket's ends, when the hook read them.
    pub tuple: Tuple,
    /// `tcp_sendmsg`/`tcp_recvmsg`: bytes moved, or a negative errno.
    pub bytes: i64,
    /// `tcp_connect`: the initial sequence number of the SYN.
    pub isn: u32,
    /// `tcp_sendmsg`: the sequence number the first of these bytes gets (`tcp_sock.write_seq`).
    pub write_seq: u32,
}

impl KernelRecord {
    /// An empty record for `func` seen through `via`.
    pub const fn new(func: crate::KernelFn, via: crate::Via) -> Self {
        Self {
            header: Header::new(RecordKind::Kernel, via, func as u8),
            tuple: Tuple::EMPTY,
            bytes: 0,
            isn: 0,
            write_seq: 0,
        }
    }
}

/// A TCP state transition of a traced socket.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct StateRecord {
    /// Kind `State`, op [`crate::KernelFn::TcpSetState`].
    pub header: Header,
    /// The socket's ends as the tracepoint reports them.
    pub tuple: Tuple,
    /// State before ([`crate::tcp_state`]).
    pub old: u8,
    /// State after.
    pub new: u8,
    /// Explicit padding.
    pub _pad: [u8; 6],
}

/// TCP's view of a traced connection when it retransmitted, processed an ACK or changed its
/// congestion state: the numbers `ss -ti` shows, read from the socket at that moment.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CongestionRecord {
    /// Kind `Congestion`, op the [`crate::KernelFn`] whose hook fired.
    pub header: Header,
    /// `tcp_retransmit_skb`: the resent segment's first sequence number; otherwise `snd_una`.
    pub seq: u32,
    /// `tcp_retransmit_skb`: the sequence number after the segment; otherwise `snd_nxt`.
    pub end_seq: u32,
    /// Congestion window, in segments.
    pub cwnd: u32,
    /// Slow-start threshold, in segments (`0x7fffffff`: not set yet).
    pub ssthresh: u32,
    /// Smoothed RTT, microseconds shifted left by 3 (as the kernel keeps it).
    pub srtt_us8: u32,
    /// RTT mean deviation, microseconds shifted left by 2.
    pub mdev_us4: u32,
    /// Retransmission timeout, in jiffies.
    pub rto_jiffies: u32,
    /// Segments in flight (sent, not yet acknowledged).
    pub packets_out: u32,
    /// Retransmitted segments in flight.
    pub retrans_out: u32,
    /// Segments retransmitted over the connection's life.
    pub total_retrans: u32,
    /// The peer's receive window.
    pub snd_wnd: u32,
    /// The window this end advertises.
    pub rcv_wnd: u32,
    /// Current MSS.
    pub mss: u32,
    /// `tcp_retransmit_skb`: why the attempt failed (a negative errno; `-EBUSY`: the original
    /// is still queued on this host), 0 when it was sent.
    pub err: i32,
    /// Congestion state: the one in force (`tcp_set_ca_state`: the one entered).
    pub ca_state: u8,
    /// TCP state of the socket.
    pub sk_state: u8,
    /// Explicit padding.
    pub _pad: [u8; 2],
    /// The receive buffer's size, bytes (`sk_rcvbuf`; `ss -m` shows it as `rb`).
    pub rcvbuf: u32,
    /// The congestion-control algorithm, NUL-padded (`cubic`, `bbr`).
    pub ca_name: [u8; 16],
    /// `tcp_rcv_space_adjust`: the receive buffer's size before it changed; 0 otherwise.
    pub rcvbuf_before: u32,
    /// What the application read in the last RTT (`rcvq_space.space`; `ss -i`'s
    /// `rcv_space`), the measure autotuning sizes the receive buffer by.
    pub rcv_space: u32,
    /// Segments delivered in the last delivery-rate sample (`rate_delivered`).
    pub rate_delivered: u32,
    /// That sample's interval, microseconds (`rate_interval_us`); 0: no sample yet.
    pub rate_interval_us: u32,
}

impl CongestionRecord {
    /// An empty record for `func` seen through `via`.
    pub const fn new(func: crate::KernelFn, via: crate::Via) -> Self {
        Self {
            header: Header::new(RecordKind::Congestion, via, func as u8),
            seq: 0,
            end_seq: 0,
            cwnd: 0,
            ssthresh: 0,
            srtt_us8: 0,
            mdev_us4: 0,
            rto_jiffies: 0,
            packets_out: 0,
            retrans_out: 0,
            total_retrans: 0,
            snd_wnd: 0,
            rcv_wnd: 0,
            mss: 0,
            err: 0,
            ca_state: 0,
            sk_state: 0,
            _pad: [0; 2],
            rcvbuf: 0,
            ca_name: [0; 16],
            rcvbuf_before: 0,
            rcv_space: 0,
            rate_delivered: 0,
            rate_interval_us: 0,
        }
    }
}

/// Bytes of a packet a [`PacketRecord`] can hold: IP + TCP headers (at most 120) and payload.
pub const PACKET_CAP: usize = 256;

/// A captured TCP segment, from its IP header on.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PacketRecord {
    /// `RecordKind::Packet`; always the first byte.
    pub kind: u8,
    /// `Via::CgroupSkbEgress` (sent by this host) or `Via::CgroupSkbIngress`.
    pub via: u8,
    /// Bytes copied into `data`.
    pub caplen: u16,
    /// The packet's length as the kernel holds it (`skb->len`), headers included.
    pub len: u32,
    /// Interface index.
    pub ifindex: u32,
    /// Size of each segment this one will be cut into (or was built from), 0 when it is not a
    /// GSO/GRO super-segment (`skb_shinfo(skb)->gso_size`).
    pub gso_size: u16,
    /// How many such segments (`skb_shinfo(skb)->gso_segs`), 0 when unknown.
    pub gso_segs: u16,
    /// `bpf_ktime_get_ns()` when the segment passed the hook.
    pub ts_ns: u64,
    /// The packet from its IP header: headers always, payload up to the snap length.
    pub data: [u8; PACKET_CAP],
}

/// Where a traced process runs: its cgroup v2 id and network namespace, as the kernel saw
/// them when one of its threads started a traced syscall. Written the first time and again
/// whenever they changed (`setns`, a move to another cgroup, a pid reused), so that a process
/// gone before user space reads its records (a short-lived client) still says where it ran,
/// and no reading of `/proc` can name another process's place.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PlaceRecord {
    /// Kind `Place`; `task` is the process (and the thread that told it).
    pub header: Header,
    /// Where it runs.
    pub place: crate::maps::Place,
}

const _: () = assert!(core::mem::size_of::<Task>() == 24);
const _: () = assert!(core::mem::size_of::<Tuple>() == 40);
const _: () = assert!(core::mem::size_of::<Header>() == 48);
const _: () = assert!(core::mem::size_of::<SyscallRecord>() == 120);
const _: () = assert!(core::mem::size_of::<KernelRecord>() == 104);
const _: () = assert!(core::mem::size_of::<StateRecord>() == 96);
const _: () = assert!(core::mem::size_of::<CongestionRecord>() == 144);
const _: () = assert!(core::mem::size_of::<PacketRecord>() == 24 + PACKET_CAP);
const _: () = assert!(core::mem::size_of::<PlaceRecord>() == 64);
