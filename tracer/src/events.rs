//! Decoding raw ring-buffer records into typed events.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use thiserror::Error;
use tracer_common::{
    AF_INET, AF_INET6, COMM_LEN, Event as RawEvent, FLAG_OWNER_GUESSED, Hook, KernelFn, Layer,
    PacketRecord, SyscallOp,
};

use crate::packet::{PacketError, Segment};

/// Why a record could not be decoded.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The record is not the size of [`RawEvent`].
    #[error("record of {0} bytes, expected {1}")]
    Length(usize, usize),
    /// A discriminant byte holds no known value.
    #[error("unknown {what} {value}")]
    Unknown {
        /// Which field.
        what: &'static str,
        /// Its raw value.
        value: u8,
    },
}

/// What happened, per layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A completed syscall (enter and exit paired).
    Syscall(SyscallOp),
    /// A syscall that has started and not yet returned.
    SyscallEnter(SyscallOp),
    /// A kernel function was reached.
    Kernel(KernelFn),
    /// A TCP state transition.
    State {
        /// State before.
        from: u8,
        /// State after.
        to: u8,
    },
    /// A TCP segment on the wire (details in [`Event::packet`]).
    Packet,
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
    /// The packet's full length from the IP header.
    pub len: u32,
    /// The captured bytes (headers, plus payload up to the snap length).
    pub data: Vec<u8>,
}

/// One end of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// The address.
    pub addr: IpAddr,
    /// The port.
    pub port: u16,
}

/// A decoded record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Kernel monotonic clock at the start, in nanoseconds.
    pub ts_ns: u64,
    /// Time from syscall enter to exit.
    pub duration_ns: u64,
    /// Kernel socket identity (never shown).
    pub sock: u64,
    /// What happened.
    pub kind: Kind,
    /// The hook that produced it.
    pub hook: Hook,
    /// Owner's process id (0 if unknown).
    pub pid: u32,
    /// Owner's thread id.
    pub tid: u32,
    /// Owner's command name.
    pub comm: String,
    /// File descriptor, -1 when none.
    pub fd: i32,
    /// Return value (syscalls), byte count (kernel send/recv), else 0.
    pub ret: i64,
    /// Syscall specific argument (socket type, backlog, shutdown how, requested length).
    pub arg: u64,
    /// Second syscall specific argument (socket protocol).
    pub arg2: u64,
    /// `AF_INET`, `AF_INET6` or 0.
    pub family: u16,
    /// Local end, when the record carries one.
    pub local: Option<Endpoint>,
    /// Remote end, when the record carries one.
    pub remote: Option<Endpoint>,
    /// The owner was not known when the record was made.
    pub owner_guessed: bool,
    /// A state event whose `to` was rewritten from CLOSE to TIME_WAIT by the correlator.
    pub timewait: bool,
    /// The segment, for packet events.
    pub packet: Option<Box<Captured>>,
}

impl Event {
    /// Decodes one ring-buffer record: an event or a captured packet, told apart by size.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let size = std::mem::size_of::<RawEvent>();
        if bytes.len() == std::mem::size_of::<PacketRecord>() {
            // SAFETY: as below, for PacketRecord.
            let raw: PacketRecord = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
            return Ok(Self::from_packet(&raw));
        }
        if bytes.len() != size {
            return Err(DecodeError::Length(bytes.len(), size));
        }
        // SAFETY: the length is checked above, RawEvent is plain data valid for any bytes,
        // and read_unaligned makes no alignment assumption.
        let raw: RawEvent = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        Self::from_raw(&raw)
    }

    /// Converts a raw record.
    pub fn from_raw(raw: &RawEvent) -> Result<Self, DecodeError> {
        let unknown = |what, value| DecodeError::Unknown { what, value };
        let layer = Layer::from_u8(raw.layer).ok_or(unknown("layer", raw.layer))?;
        let hook = Hook::from_u8(raw.hook).ok_or(unknown("hook", raw.hook))?;
        let syscall = || SyscallOp::from_u8(raw.op).ok_or(unknown("syscall", raw.op));
        let kind = match layer {
            Layer::Syscall => Kind::Syscall(syscall()?),
            Layer::SyscallEnter => Kind::SyscallEnter(syscall()?),
            Layer::Kernel => {
                Kind::Kernel(KernelFn::from_u8(raw.op).ok_or(unknown("kernel function", raw.op))?)
            }
            Layer::State => Kind::State {
                from: raw.arg as u8,
                to: raw.arg2 as u8,
            },
        };
        let family = raw.family as u16;
        let endpoint = |addr: &[u8; 16], port: u16| {
            let addr = ip(family, addr)?;
            (port != 0 || !addr.is_unspecified()).then_some(Endpoint { addr, port })
        };
        Ok(Self {
            ts_ns: raw.ts_ns,
            duration_ns: raw.duration_ns,
            sock: raw.sock,
            kind,
            hook,
            pid: raw.pid,
            tid: raw.tid,
            comm: comm(&raw.comm),
            fd: raw.fd,
            ret: raw.ret,
            arg: raw.arg,
            arg2: raw.arg2,
            family,
            local: endpoint(&raw.laddr, raw.lport),
            remote: endpoint(&raw.raddr, raw.rport),
            owner_guessed: raw.flags & FLAG_OWNER_GUESSED != 0,
            timewait: false,
            packet: None,
        })
    }

    /// Converts a raw packet record.
    pub fn from_packet(raw: &PacketRecord) -> Self {
        let caplen = usize::from(raw.caplen).min(raw.data.len());
        let data = raw.data[..caplen].to_vec();
        let segment = Segment::decode(&data);
        let (family, local, remote) = match &segment {
            Ok(s) => (
                if s.src.is_ipv4() { AF_INET } else { AF_INET6 },
                Some(Endpoint {
                    addr: s.src,
                    port: s.tcp.sport,
                }),
                Some(Endpoint {
                    addr: s.dst,
                    port: s.tcp.dport,
                }),
            ),
            Err(_) => (0, None, None),
        };
        let hook = if raw.egress != 0 {
            Hook::CgroupSkbEgress
        } else {
            Hook::CgroupSkbIngress
        };
        Self {
            family,
            local,
            remote,
            packet: Some(Box::new(Captured {
                segment,
                egress: raw.egress != 0,
                ifindex: raw.ifindex,
                len: raw.len,
                data,
            })),
            ..Self::blank(Kind::Packet, hook, raw.ts_ns)
        }
    }

    /// The layer name used in every output: `syscall`, `kernel`, `state` or `packet`.
    pub fn layer(&self) -> &'static str {
        match self.kind {
            Kind::Syscall(_) | Kind::SyscallEnter(_) => "syscall",
            Kind::Kernel(_) => "kernel",
            Kind::State { .. } => "state",
            Kind::Packet => "packet",
        }
    }

    /// The event name: the syscall or kernel function.
    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::Syscall(op) | Kind::SyscallEnter(op) => op.name(),
            Kind::Kernel(f) => f.name(),
            Kind::State { .. } => KernelFn::TcpSetState.name(),
            Kind::Packet => "tcp_segment",
        }
    }

    /// A blank event of `kind` at `ts_ns`: no task, no fd, no ends.
    pub fn blank(kind: Kind, hook: Hook, ts_ns: u64) -> Self {
        Self {
            ts_ns,
            duration_ns: 0,
            sock: 0,
            kind,
            hook,
            pid: 0,
            tid: 0,
            comm: String::new(),
            fd: -1,
            ret: 0,
            arg: 0,
            arg2: 0,
            family: AF_INET,
            local: None,
            remote: None,
            owner_guessed: false,
            timewait: false,
            packet: None,
        }
    }

    /// The hook that produced the event, as users name it (`fentry:tcp_sendmsg`,
    /// `tracepoint:sock:inet_sock_set_state`...).
    pub fn hook_label(&self) -> &'static str {
        match self.kind {
            Kind::Kernel(func) => self.hook.label_for(func),
            _ => self.hook.label(),
        }
    }

    /// When the event ended (syscalls) or happened.
    pub fn end_ns(&self) -> u64 {
        self.ts_ns + self.duration_ns
    }
}

fn ip(family: u16, raw: &[u8; 16]) -> Option<IpAddr> {
    match family {
        AF_INET => Some(IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))),
        AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(*raw))),
        _ => None,
    }
}

fn comm(raw: &[u8; COMM_LEN]) -> String {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracer_common::tcp_state;

    fn raw_state() -> RawEvent {
        let mut raw = RawEvent::zeroed();
        raw.layer = Layer::State as u8;
        raw.op = KernelFn::TcpSetState as u8;
        raw.hook = Hook::TpInetSockSetState as u8;
        raw.arg = tcp_state::SYN_SENT as u64;
        raw.arg2 = tcp_state::ESTABLISHED as u64;
        raw.family = AF_INET as u8;
        raw.laddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        raw.raddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        raw.lport = 41234;
        raw.rport = 8080;
        raw.comm[..11].copy_from_slice(b"echo-client");
        raw
    }

    fn bytes(raw: &RawEvent) -> Vec<u8> {
        // SAFETY: RawEvent is plain data; viewing it as bytes is sound.
        unsafe {
            std::slice::from_raw_parts((raw as *const RawEvent).cast::<u8>(), size_of::<RawEvent>())
        }
        .to_vec()
    }

    #[test]
    fn decodes_a_state_record() {
        let ev = Event::decode(&bytes(&raw_state())).unwrap();
        assert_eq!(
            ev.kind,
            Kind::State {
                from: tcp_state::SYN_SENT,
                to: tcp_state::ESTABLISHED
            }
        );
        assert_eq!(ev.layer(), "state");
        assert_eq!(ev.name(), "tcp_set_state");
        assert_eq!(ev.comm, "echo-client");
        let local = ev.local.unwrap();
        assert_eq!(local.addr, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(local.port, 41234);
        assert_eq!(ev.remote.unwrap().port, 8080);
    }

    #[test]
    fn decodes_ipv6_addresses() {
        let mut raw = raw_state();
        raw.family = AF_INET6 as u8;
        raw.laddr = Ipv6Addr::LOCALHOST.octets();
        let ev = Event::decode(&bytes(&raw)).unwrap();
        assert_eq!(ev.local.unwrap().addr, IpAddr::V6(Ipv6Addr::LOCALHOST));
    }

    #[test]
    fn rejects_short_and_unknown_records() {
        let b = bytes(&raw_state());
        assert_eq!(
            Event::decode(&b[..10]),
            Err(DecodeError::Length(10, size_of::<RawEvent>()))
        );
        let mut raw = raw_state();
        raw.layer = 99;
        assert!(matches!(
            Event::decode(&bytes(&raw)),
            Err(DecodeError::Unknown { what: "layer", .. })
        ));
        let mut raw = raw_state();
        raw.layer = Layer::Syscall as u8;
        raw.op = 200;
        assert!(Event::decode(&bytes(&raw)).is_err());
    }

    #[test]
    fn missing_endpoints_are_none() {
        let mut raw = raw_state();
        raw.family = 0;
        let ev = Event::decode(&bytes(&raw)).unwrap();
        assert_eq!(ev.local, None);
        assert_eq!(ev.remote, None);
    }
}
