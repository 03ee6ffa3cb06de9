//! Keys and values of the maps shared by the programs and the loader.

use crate::COMM_LEN;
use crate::record::SyscallRecord;

/// Most `--port` values the in-kernel filter holds (the size of the `PORTS` map).
pub const MAX_PORTS: u32 = 64;

/// Most `--pid` values the in-kernel filter holds.
pub const MAX_PIDS: u32 = 64;

/// The size of the `CGROUPS` map: the `--cgroup` directory and its descendants.
pub const MAX_CGROUPS: u32 = 4096;

/// The size of the `PIDS` map: the `--pid` values and, when children are followed, every
/// live descendant of a traced process.
pub const PIDS_CAPACITY: u32 = 16384;

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
pub type Owner = crate::record::Task;

/// A syscall on a traced socket between its enter and exit, keyed by thread id.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Inflight {
    /// The record being built; completed and emitted at exit.
    pub record: SyscallRecord,
    /// User pointer to read at exit (the address of an accept, bind or connect; getsockopt's
    /// value), 0 if none.
    pub user_addr: u64,
    /// Non-zero when the fd is a held socket (see [`Held`]): the record is held too.
    pub held: u32,
    /// The syscall's number, as its enter tracepoint gives it: only an exit with the same
    /// number completes the record. (An entry whose exit the kernel skipped is stale: it must
    /// not take the next traced syscall's result.)
    pub nr: u32,
}

/// Calls on a held socket kept before its `bind`/`connect` (socket options, `fcntl`): curl
/// makes 7, nginx 2.
pub const MAX_HELD_CALLS: u32 = 12;

/// Entries of the `SYSCALL_OPS` map: syscall numbers below this name an op (every
/// architecture's socket calls are below 512).
pub const SYSCALL_NRS: u32 = 512;

/// A new socket's `socket()` record, held with a port filter until a `bind`/`connect`
/// decides whether the socket is traced, and how many calls on it are held meanwhile (in the
/// `HELD_CALLS` map, slots `0..calls`, at most [`MAX_HELD_CALLS`]).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Held {
    /// The `socket()` record.
    pub record: SyscallRecord,
    /// Calls held so far.
    pub calls: u32,
    /// Explicit padding.
    pub _pad: u32,
}

/// Key of one call held on a held socket.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HeldCallKey {
    /// The socket's process and fd.
    pub fd: FdKey,
    /// Its position among the calls held, from 0.
    pub slot: u32,
    /// Explicit padding.
    pub _pad: u32,
}

impl HeldCallKey {
    /// The call held in `slot` on held socket `fd`.
    pub const fn new(fd: FdKey, slot: u32) -> Self {
        Self { fd, slot, _pad: 0 }
    }
}

/// Key of the map of traced connections' port pairs, used to filter packets by pid or comm.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortPair {
    /// Local port of the traced end.
    pub local: u16,
    /// Remote port.
    pub remote: u16,
}

/// Where a tracepoint standing in for a kernel function keeps the socket: the value of the
/// `TRACEPOINT_FNS` map, keyed by the [`crate::KernelFn`] it stands for.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TracepointFn {
    /// The [`crate::KernelFn`] it stands for.
    pub func: u8,
    /// Non-zero when the socket is gone after it (`tcp_destroy_sock`): forget it.
    pub forget: u8,
    /// Byte offset of the socket pointer in the tracepoint's record (`skaddr`).
    pub sk_offset: u16,
}

/// The last congestion sample taken of a socket (the `SAMPLED` map's value).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sampled {
    /// When, `bpf_ktime_get_ns()`.
    pub ts_ns: u64,
    /// Congestion window then.
    pub cwnd: u32,
    /// Slow-start threshold then.
    pub ssthresh: u32,
    /// Congestion state then.
    pub ca_state: u8,
    /// Explicit padding.
    pub _pad: [u8; 7],
}

/// Filter switches handed to the programs as one read-only global.
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
    /// Non-zero to add every process a traced process forks to `PIDS` (and remove it when it
    /// exits).
    pub follow: u8,
    /// Payload bytes to copy after the TCP header (0: headers only).
    pub snaplen: u16,
    /// Least time between two congestion samples of one connection whose congestion state
    /// and ssthresh did not change, in microseconds.
    pub sample_gap_us: u32,
    /// Non-zero when `CGROUPS` holds the cgroup v2 ids whose tasks are traced.
    pub by_cgroup: u8,
    /// Non-zero to trace only sockets (and tasks) of the network namespace `netns`.
    pub by_netns: u8,
    /// Non-zero when the task-to-namespace fields' offsets are known, so that a
    /// `PlaceRecord` can carry the network namespace.
    pub netns_readable: u8,
    /// Non-zero when the kernel may preempt a BPF program mid-run, so that the kernel can
    /// skip a syscall's fentry program (its per-CPU guard still held by a preempted run): the
    /// fexit then makes the call's record up from the registers (`FLAG_LATE`).
    pub preemptible: u8,
    /// The network namespace's inode number (`ls -L -i /proc/PID/ns/net`), with `by_netns`.
    pub netns: u32,
}

/// Where a process runs, as the kernel sees it: the value of `PLACES` (by tgid) and the body
/// of a `PlaceRecord`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place {
    /// The cgroup v2 id (`bpf_get_current_cgroup_id()`): its directory's inode number.
    pub cgroup_id: u64,
    /// The network namespace's inode number; 0 where this kernel's BTF cannot place it.
    pub netns: u32,
    /// Explicit padding.
    pub _pad: u32,
}

/// How many sock_ops callbacks `SOCK_OPS_FUNCS` can map (indexed by `BPF_SOCK_OPS_*_CB`).
pub const SOCK_OPS_SLOTS: u32 = 32;

const _: () = assert!(core::mem::size_of::<FdKey>() == 8);
const _: () = assert!(core::mem::size_of::<Inflight>() == 136);
const _: () = assert!(core::mem::size_of::<Held>() == 128);
const _: () = assert!(core::mem::size_of::<HeldCallKey>() == 16);
const _: () = assert!(core::mem::size_of::<FilterConfig>() == 40);
const _: () = assert!(core::mem::size_of::<PortPair>() == 4);
const _: () = assert!(core::mem::size_of::<TracepointFn>() == 4);
const _: () = assert!(core::mem::size_of::<Sampled>() == 24);

/// `TALLIES` index: sockets added to `SOCKS`. An LRU map evicts without telling; at the end,
/// sockets added − removed − still there = evicted (counted as `sockets_map_full`).
pub const TALLY_SOCKS_ADDED: u32 = 0;
/// `TALLIES` index: sockets removed from `SOCKS` when the kernel destroyed them.
pub const TALLY_SOCKS_REMOVED: u32 = 1;
/// Length of the `TALLIES` array.
pub const TALLIES_LEN: u32 = 2;
