//! Decoded events: what happened, typed per kind, with the hook that saw it.

use std::net::IpAddr;

use tracer_common::{KernelFn, SyscallOp, Via};

use super::tcpip::{PacketError, Segment};
use crate::hooks::table::HookLabel;

/// One end of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// The address.
    pub addr: IpAddr,
    /// The port.
    pub port: u16,
}

impl std::fmt::Display for Endpoint {
    /// `127.0.0.1:8080`, `[::1]:8080`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.addr {
            IpAddr::V4(a) => write!(f, "{a}:{}", self.port),
            IpAddr::V6(a) => write!(f, "[{a}]:{}", self.port),
        }
    }
}

/// A syscall's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit {
    /// Return value; a negative errno on failure.
    pub ret: i64,
    /// Time from enter to exit.
    pub duration_ns: u64,
    /// Made at the return: the enter was not seen (its program was skipped by the kernel);
    /// no duration.
    pub late: bool,
}

/// A system call on a traced socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Syscall {
    /// Which.
    pub op: SyscallOp,
    /// The arguments shown (see `tracer_common::record::SyscallRecord`).
    pub args: [u64; 2],
    /// Its result; `None` for a syscall that has started and not yet returned.
    pub exit: Option<Exit>,
}

impl Syscall {
    /// The return value (0 while in flight).
    pub fn ret(&self) -> i64 {
        self.exit.map_or(0, |e| e.ret)
    }

    /// Time from enter to exit (0 while in flight).
    pub fn duration_ns(&self) -> u64 {
        self.exit.map_or(0, |e| e.duration_ns)
    }
}

/// A kernel function reached, with what its hook could see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelCall {
    /// Which function.
    pub func: KernelFn,
    /// `tcp_sendmsg`/`tcp_recvmsg`: bytes moved, or a negative errno.
    pub bytes: Option<i64>,
    /// `tcp_connect` on the probe tiers: the SYN's initial sequence number.
    pub isn: Option<u32>,
    /// `tcp_sendmsg` on the probe tiers: the stream position of the first byte.
    pub write_seq: Option<u32>,
    /// The event's time is its syscall's start, not when the hook fired (a hook at the
    /// function's end, which fired after the segments the function sent).
    pub at_syscall_start: bool,
}

/// A TCP state transition, as the kernel reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateChange {
    /// State before.
    pub from: u8,
    /// State after.
    pub to: u8,
}

/// A captured segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Captured {
    /// The decoded headers, or why they could not be decoded.
    pub segment: Result<Segment, PacketError>,
    /// Sent by this host (egress) or received (ingress).
    pub egress: bool,
    /// Interface index.
    pub ifindex: u32,
    /// The packet's length as the kernel held it.
    pub len: u32,
    /// Segment size of a GSO/GRO super-segment, 0 for a plain segment.
    pub gso_size: u16,
    /// How many segments a super-segment stands for, 0 when unknown.
    pub gso_segs: u16,
    /// This host captured the same segment leaving another of its network namespaces (a
    /// veth pair): this copy is the receiver's view, the capture file has the first.
    pub repeat: bool,
    /// The captured bytes (headers, plus payload up to the snap length).
    pub data: CapturedBytes,
}

/// A captured segment's bytes, held inline (at most what the kernel side copies): decoding a
/// segment allocates nothing for them.
#[derive(Clone, PartialEq, Eq)]
pub struct CapturedBytes {
    len: u16,
    bytes: [u8; tracer_common::record::PACKET_CAP],
}

impl CapturedBytes {
    /// The first [`tracer_common::record::PACKET_CAP`] bytes of `b`.
    pub fn new(b: &[u8]) -> Self {
        let len = b.len().min(tracer_common::record::PACKET_CAP);
        let mut bytes = [0; tracer_common::record::PACKET_CAP];
        bytes[..len].copy_from_slice(&b[..len]);
        Self {
            len: len as u16,
            bytes,
        }
    }
}

impl std::ops::Deref for CapturedBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for CapturedBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

#[cfg(test)]
impl Captured {
    /// A segment from its hex dump, as a test's recorded capture: not a super-segment, its
    /// length the bytes given.
    pub(crate) fn from_hex(hex: &str, egress: bool, ifindex: u32) -> Self {
        let data = super::tcpip::parse_hex(hex).unwrap();
        Self {
            segment: super::tcpip::Segment::decode(&data),
            egress,
            ifindex,
            len: data.len() as u32,
            gso_size: 0,
            gso_segs: 0,
            repeat: false,
            data: CapturedBytes::new(&data),
        }
    }
}

/// What happened, per kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A syscall, completed or in flight.
    Syscall(Syscall),
    /// A kernel function was reached.
    Kernel(KernelCall),
    /// A TCP state transition.
    State(StateChange),
    /// A TCP segment on the wire.
    Packet(super::Pooled<Captured>),
    /// What TCP did about loss and congestion, with its numbers.
    Congestion(super::Pooled<super::Congestion>),
}

/// A command name, kept inline: every event carries one, and a `String` each was a
/// measurable share of the consumer's time in the allocator. Holds the kernel's 15 bytes read
/// as UTF-8, invalid bytes replaced (3 bytes each).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Comm {
    bytes: [u8; Self::CAPACITY],
    len: u8,
}

impl Comm {
    const CAPACITY: usize = 48;

    /// The name read from the kernel's NUL-padded `comm`.
    pub fn from_kernel(raw: &[u8]) -> Self {
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        Self::from(String::from_utf8_lossy(&raw[..end]).as_ref())
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        // Only whole UTF-8 characters are ever copied in (see `From<&str>`).
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl Default for Comm {
    fn default() -> Self {
        Self {
            bytes: [0; Self::CAPACITY],
            len: 0,
        }
    }
}

impl From<&str> for Comm {
    /// Keeps as many whole characters as fit.
    fn from(s: &str) -> Self {
        let mut end = s.len().min(Self::CAPACITY);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let mut c = Self::default();
        c.bytes[..end].copy_from_slice(&s.as_bytes()[..end]);
        c.len = end as u8;
        c
    }
}

impl std::ops::Deref for Comm {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for Comm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for Comm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for Comm {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Comm {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A decoded record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Kernel monotonic clock when it happened (syscalls: at enter), in nanoseconds.
    pub ts_ns: u64,
    /// The hook that produced it.
    pub hook: HookLabel,
    /// The mechanism behind the hook.
    pub via: Via,
    /// What happened.
    pub kind: Kind,
    /// Owner's process id (0 if unknown).
    pub pid: u32,
    /// Owner's thread id.
    pub tid: u32,
    /// Owner's command name.
    pub comm: Comm,
    /// The owner was not known when the record was made.
    pub owner_guessed: bool,
    /// Kernel socket identity (never shown).
    pub sock: u64,
    /// File descriptor, -1 when none.
    pub fd: i32,
    /// `AF_INET`, `AF_INET6` or 0.
    pub family: u16,
    /// Local end, when the record carries one.
    pub local: Option<Endpoint>,
    /// Remote end, when the record carries one.
    pub remote: Option<Endpoint>,
}

impl Event {
    /// A blank event of `kind` at `ts_ns`: no task, no fd, no ends.
    pub fn blank(kind: Kind, via: Via, ts_ns: u64) -> Self {
        let func = match &kind {
            Kind::Kernel(k) => Some(k.func),
            Kind::State(_) => Some(KernelFn::TcpSetState),
            Kind::Congestion(c) => Some(c.func),
            _ => None,
        };
        Self {
            ts_ns,
            hook: crate::hooks::table::label(func, via),
            via,
            kind,
            pid: 0,
            tid: 0,
            comm: Comm::default(),
            owner_guessed: false,
            sock: 0,
            fd: -1,
            family: tracer_common::AF_INET,
            local: None,
            remote: None,
        }
    }

    /// The layer name used in every output: `syscall`, `kernel`, `state`, `packet` or
    /// `congestion`.
    pub fn layer(&self) -> &'static str {
        match self.kind {
            Kind::Syscall(_) => "syscall",
            Kind::Kernel(_) => "kernel",
            Kind::State(_) => "state",
            Kind::Packet(_) => "packet",
            Kind::Congestion(_) => "congestion",
        }
    }

    /// The event name: the syscall or kernel function.
    pub fn name(&self) -> &'static str {
        match &self.kind {
            Kind::Syscall(s) => s.op.name(),
            Kind::Kernel(k) => k.func.name(),
            Kind::State(_) => KernelFn::TcpSetState.name(),
            Kind::Packet(_) => "tcp_segment",
            Kind::Congestion(c) => c.func.name(),
        }
    }

    /// The syscall, if this is one.
    pub fn syscall(&self) -> Option<&Syscall> {
        match &self.kind {
            Kind::Syscall(s) => Some(s),
            _ => None,
        }
    }

    /// The segment, if this is a packet.
    pub fn captured(&self) -> Option<&Captured> {
        match &self.kind {
            Kind::Packet(c) => Some(c),
            _ => None,
        }
    }

    /// When the event ended (syscalls) or happened.
    pub fn end_ns(&self) -> u64 {
        self.ts_ns + self.syscall().map_or(0, Syscall::duration_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_comm_is_the_kernel_name_up_to_its_nul_with_bad_bytes_replaced() {
        assert_eq!(Comm::from_kernel(b"nginx\0\0\0\0\0\0\0\0\0\0\0"), "nginx");
        assert_eq!(Comm::from_kernel(b"fifteen-bytes-x\0").len(), 15);
        // 15 invalid bytes: 15 replacement characters, 45 bytes, all kept.
        let bad = Comm::from_kernel(&[0xff; 16][..15]);
        assert_eq!(bad.chars().filter(|&c| c == '\u{fffd}').count(), 15);
        // Longer input keeps whole characters only.
        let long = "é".repeat(30);
        assert_eq!(Comm::from(long.as_str()).as_str(), "é".repeat(24));
        assert_eq!(Comm::default(), "");
    }
}
