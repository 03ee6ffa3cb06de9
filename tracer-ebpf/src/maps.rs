//! The maps shared by all programs.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use tracer_common::{
    failure::FAILURE_KINDS,
    maps::{
        FdKey, Held, HeldCallKey, Inflight, MAX_CGROUPS, MAX_PORTS, Owner, PIDS_CAPACITY, Place,
        PortPair, SOCK_OPS_SLOTS, SYSCALL_NRS, Sampled, TALLIES_LEN, TracepointFn,
    },
    record::{StateRecord, SyscallRecord},
};

/// Size of [`EVENTS`]: 4 MiB, ~25 ms of the busiest loopback traffic; user space is woken
/// when it is a quarter full. Larger rings cost twice their size in the consumer's RSS (the
/// data pages are mapped twice).
pub const RING_BYTES: u32 = 4 << 20;

/// Every record goes through this one ring buffer, in time order per CPU.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);

/// `BPF_F_MMAPABLE` (5.5+): user space maps the array and reads it as memory.
const MMAPABLE: u32 = 1 << 10;

/// What the programs gave up on, one counter per `tracer_common::failure::Failure`, added to
/// atomically. User space reads it through a memory mapping, never with a map-lookup
/// syscall: such a syscall holds the kernel's per-CPU `bpf_prog_active` guard, and on kernels
/// where it can be preempted there (7.x) every kprobe and tracepoint program of a traced task
/// scheduled on that CPU meanwhile is skipped. Polled every 10 ms, that lost syscall records
/// on 7.2.
#[map]
pub static FAILURES: Array<u64> = Array::with_max_entries(FAILURE_KINDS, MMAPABLE);

/// Counts that are not failures (`tracer_common::maps::TALLY_*`), added to atomically and read
/// once the programs are unloaded: what entered and left `SOCKS`, to count its evictions.
#[map]
pub static TALLIES: Array<u64> = Array::with_max_entries(TALLIES_LEN, 0);

/// The `SyscallOp` (as its `u8`; 0: none) of each syscall number, filled by the loader: the
/// enter program shared by the syscalls of one shape (`sys_enter_fd`) is told by it which
/// call it is in.
#[map]
pub static SYSCALL_OPS: Array<u8> = Array::with_max_entries(SYSCALL_NRS, 0);

/// Ports to trace (local or remote), when filtering by port.
#[map]
pub static PORTS: HashMap<u16, u8> = HashMap::with_max_entries(MAX_PORTS, 0);

/// Cgroup v2 ids whose tasks are traced, when filtering by cgroup (the loader keeps the
/// subtree's new cgroups added).
#[map]
pub static CGROUPS: HashMap<u64, u8> = HashMap::with_max_entries(MAX_CGROUPS, 0);

/// Processes to trace, when filtering by pid.
#[map]
pub static PIDS: HashMap<u32, u8> = HashMap::with_max_entries(PIDS_CAPACITY, 0);

/// Traced kernel sockets and their owners. LRU so that sockets whose destruction was missed
/// (created before the tracer started) cannot fill it.
#[map]
pub static SOCKS: LruHashMap<u64, Owner> = LruHashMap::with_max_entries(65536, 0);

/// Traced file descriptors and the kernel socket behind each (0 until it is seen).
#[map]
pub static FDS: LruHashMap<FdKey, u64> = LruHashMap::with_max_entries(65536, 0);

/// Processes that hold (or held) a traced fd: their children inherit them.
#[map]
pub static HOLDERS: LruHashMap<u32, u8> = LruHashMap::with_max_entries(16384, 0);

/// A child of a holder: the process it was forked from, and when.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Forked {
    /// The parent's tgid.
    pub parent: u32,
    pub _pad: u32,
    /// `bpf_ktime_get_ns` at the fork.
    pub at_ns: u64,
}

/// Children of [`HOLDERS`] and the process they were forked from, until they exec.
#[map]
pub static FORKED: LruHashMap<u32, Forked> = LruHashMap::with_max_entries(16384, 0);

/// A traced fd its process closed: the socket it named, and when it was closed.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Closed {
    /// The kernel socket (0 if it was never seen).
    pub sock: u64,
    /// `bpf_ktime_get_ns` at the close.
    pub at_ns: u64,
}

/// Traced fds their process closed, kept for the children it forked before: a prefork master
/// closes its listener once its workers are forked, often before they accept on their copies.
#[map]
pub static CLOSED_FDS: LruHashMap<FdKey, Closed> = LruHashMap::with_max_entries(16384, 0);

/// `socket()` records held back until a port filter decides (at bind or connect) whether the
/// socket is traced, with the count of calls held on each.
#[map]
pub static HELD_SOCKETS: LruHashMap<FdKey, Held> = LruHashMap::with_max_entries(4096, 0);

/// Calls on held sockets (socket options, `fcntl`) held with them, by slot. A socket is held
/// for the microseconds between `socket()` and its `bind`/`connect`: few are at once. One
/// evicted before its release is counted (`held_calls_full`).
#[map]
pub static HELD_CALLS: LruHashMap<HeldCallKey, SyscallRecord> =
    LruHashMap::with_max_entries(4096, 0);

/// Syscalls on traced sockets between enter and exit, by thread id.
#[map]
pub static INFLIGHT: LruHashMap<u32, Inflight> = LruHashMap::with_max_entries(16384, 0);

/// Where each traced process was last told to run (`place::tell`), by tgid. LRU: an
/// evicted process is told again at its next traced syscall.
#[map]
pub static PLACES: LruHashMap<u32, Place> = LruHashMap::with_max_entries(16384, 0);

/// Traced listening ports and their owners: a child socket in SYN_RECV belongs to them.
#[map]
pub static LISTENERS: HashMap<u16, Owner> = HashMap::with_max_entries(1024, 0);

/// Port pairs of traced connections, so that packets can be filtered by pid or comm.
#[map]
pub static PORT_PAIRS: LruHashMap<PortPair, u8> = LruHashMap::with_max_entries(65536, 0);

/// Which kernel function each sock_ops callback stands in for, indexed by the callback
/// (`BPF_SOCK_OPS_*_CB`); 0 where none. Filled by the loader from its hook table, so that a
/// function watched by fentry or kprobe is never doubled by its stand-in.
#[map]
pub static SOCK_OPS_FNS: Array<u32> = Array::with_max_entries(SOCK_OPS_SLOTS, 0);

/// Where each socket-naming tracepoint keeps the socket, by the kernel function it stands for.
/// Filled by the loader from its hook table and the tracepoints' tracefs formats.
#[map]
pub static TRACEPOINT_FNS: HashMap<u32, TracepointFn> = HashMap::with_max_entries(64, 0);

/// The last congestion sample of each traced socket: when, and the values whose change
/// makes the next one due at once.
#[map]
pub static SAMPLED: LruHashMap<u64, Sampled> = LruHashMap::with_max_entries(16384, 0);

/// Where the state program builds its record: map memory, whose contents the verifier does
/// not follow, instead of the stack, whose every variant it does (a record on the stack made
/// it check the program's paths once per variant: 46k instructions, 28k now). One slot per
/// CPU is enough: the program is perf-attached, so it runs pinned to its CPU under the
/// kernel's per-CPU `bpf_prog_active` guard, and no other run of it starts on that CPU until
/// this one ends — even when this one is preempted (7.x), the kernel then skips the others.
/// Only this program uses it.
#[map]
pub static STATE_SCRATCH: PerCpuArray<StateRecord> = PerCpuArray::with_max_entries(1, 0);
