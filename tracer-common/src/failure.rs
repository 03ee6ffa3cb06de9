//! Why an eBPF program gave up on something: the index of each counter in the `FAILURES`
//! array, which user space reads and reports. Nothing is lost without being counted here.

/// One reason a program gave up.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The ring buffer had no room: a record was lost.
    RingFull = 0,
    /// A socket could not be remembered (sockets, listeners, port pairs): its later events
    /// may be missing or unattributed.
    SocketsFull = 1,
    /// A traced fd or a process holding one could not be remembered: its syscalls may be
    /// missing.
    FdsFull = 2,
    /// A syscall could not be remembered between its start and its end: it is not shown.
    InflightFull = 3,
    /// A kernel or tracepoint field could not be read: a record carries zero there.
    ReadFailed = 4,
    /// A child of a traced process could not be followed: its sockets are not traced.
    PidsFull = 5,
    /// A call on a socket not yet bound or connected (with a port filter) could not be held
    /// until its `bind`/`connect` (more than `maps::MAX_HELD_CALLS` of them, or evicted from the map of
    /// held calls meanwhile). It is not shown.
    HeldFull = 6,
}

/// How many reasons there are: the length of the `FAILURES` array.
pub const FAILURE_KINDS: u32 = 7;

impl Failure {
    /// Every reason, by index.
    pub const ALL: [Failure; FAILURE_KINDS as usize] = [
        Self::RingFull,
        Self::SocketsFull,
        Self::FdsFull,
        Self::InflightFull,
        Self::ReadFailed,
        Self::PidsFull,
        Self::HeldFull,
    ];

    /// The JSON key for this count.
    pub fn key(self) -> &'static str {
        match self {
            Self::RingFull => "ring_full",
            Self::SocketsFull => "sockets_map_full",
            Self::FdsFull => "fds_map_full",
            Self::InflightFull => "syscalls_map_full",
            Self::ReadFailed => "read_failed",
            Self::PidsFull => "pids_map_full",
            Self::HeldFull => "held_calls_full",
        }
    }

    /// What was lost, for people: "N <what>".
    pub fn what(self) -> &'static str {
        match self {
            Self::RingFull => "event(s) dropped: the ring buffer was full",
            Self::SocketsFull => "socket(s) not remembered: a socket map was full",
            Self::FdsFull => "fd(s) or process(es) not remembered: an fd map was full",
            Self::InflightFull => "syscall(s) not shown: the in-flight syscall map was full",
            Self::ReadFailed => "kernel field read(s) failed (zero recorded instead)",
            Self::PidsFull => "child process(es) not followed: the process map was full",
            Self::HeldFull => {
                "call(s) before bind/connect not shown: more than 12 on one socket, or the \
                 held-calls map was full"
            }
        }
    }
}

// `Failure::HeldFull::what` spells the bound out.
const _: () = assert!(crate::maps::MAX_HELD_CALLS == 12);
