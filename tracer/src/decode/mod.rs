//! Decoding: raw ring-buffer records into typed [`Event`]s (and the places of processes), one
//! match on the record's kind tag; and the TCP/IP headers of captured segments ([`tcpip`]).

mod congestion;
mod event;
mod pooled;
pub mod sockopt;
pub mod tcpip;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use thiserror::Error;
use tracer_common::{
    AF_INET, AF_INET6, KernelFn, SyscallOp, Via,
    maps::Place,
    record::{
        CongestionRecord, FLAG_AT_SYSCALL_START, FLAG_BYTES, FLAG_ISN, FLAG_LATE,
        FLAG_OWNER_GUESSED, FLAG_WRITE_SEQ, Header, KernelRecord, PacketRecord, PlaceRecord,
        RecordKind, StateRecord, SyscallRecord, Tuple,
    },
};

pub use congestion::{Algorithm, Congestion, RetransmitKind};
pub use event::{
    Captured, CapturedBytes, Comm, Endpoint, Event, Exit, KernelCall, Kind, StateChange, Syscall,
};
pub use pooled::Pooled;
use tcpip::Segment;

/// Why a record could not be decoded.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The record is not the size its kind tag says.
    #[error("{kind} record of {len} bytes, expected {expected}")]
    Length {
        /// The kind.
        kind: &'static str,
        /// Bytes received.
        len: usize,
        /// Bytes expected.
        expected: usize,
    },
    /// A discriminant byte holds no known value.
    #[error("unknown {what} {value}")]
    Unknown {
        /// Which field.
        what: &'static str,
        /// Its raw value.
        value: u8,
    },
}

/// Reads a `T` from `bytes`, which must be exactly its size.
fn read<T: Copy>(bytes: &[u8], kind: &'static str) -> Result<T, DecodeError> {
    if bytes.len() != size_of::<T>() {
        return Err(DecodeError::Length {
            kind,
            len: bytes.len(),
            expected: size_of::<T>(),
        });
    }
    // SAFETY: the length is checked above; every `T` used here is a `#[repr(C)]` record of
    // plain integers valid for any bit pattern; read_unaligned makes no alignment assumption.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) })
}

/// One ring-buffer record, decoded.
#[derive(Debug, PartialEq)]
pub enum Record {
    /// Something that happened on a socket.
    Event(Event),
    /// Where process `pid` runs, as the kernel saw it when the process started a traced
    /// syscall: what it said before this record no longer holds.
    Place {
        /// The process.
        pid: u32,
        /// Its cgroup id and network namespace.
        place: Place,
    },
}

/// Decodes one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
    let tag = bytes.first().copied().unwrap_or(0);
    let kind = RecordKind::from_u8(tag).ok_or(DecodeError::Unknown {
        what: "record kind",
        value: tag,
    })?;
    let event = match kind {
        RecordKind::Syscall | RecordKind::SyscallEnter => {
            syscall(&read::<SyscallRecord>(bytes, "syscall")?, kind)
        }
        RecordKind::Kernel => kernel(&read::<KernelRecord>(bytes, "kernel")?),
        RecordKind::State => state(&read::<StateRecord>(bytes, "state")?),
        RecordKind::Packet => packet(&read::<PacketRecord>(bytes, "packet")?),
        RecordKind::Congestion => congestion(&read::<CongestionRecord>(bytes, "congestion")?),
        RecordKind::Place => {
            let raw = read::<PlaceRecord>(bytes, "place")?;
            return Ok(Record::Place {
                pid: raw.header.task.pid,
                place: raw.place,
            });
        }
    };
    event.map(Record::Event)
}

fn unknown(what: &'static str, value: u8) -> DecodeError {
    DecodeError::Unknown { what, value }
}

/// The common part of every record but packets.
fn from_header(h: &Header, func: Option<KernelFn>, kind: Kind) -> Result<Event, DecodeError> {
    let via = Via::from_u8(h.via).ok_or(unknown("hook", h.via))?;
    Ok(Event {
        ts_ns: h.ts_ns,
        hook: crate::hooks::table::label(func, via),
        via,
        kind,
        pid: h.task.pid,
        tid: h.task.tid,
        comm: Comm::from_kernel(&h.task.comm),
        owner_guessed: h.flags & FLAG_OWNER_GUESSED != 0,
        sock: h.sock,
        fd: h.fd,
        family: 0,
        local: None,
        remote: None,
    })
}

fn with_tuple(mut ev: Event, t: &Tuple) -> Event {
    let family = t.family;
    let endpoint = |addr: &[u8; 16], port: u16| {
        let addr = ip(family, addr)?;
        (port != 0 || !addr.is_unspecified()).then_some(Endpoint { addr, port })
    };
    ev.family = family;
    ev.local = endpoint(&t.laddr, t.lport);
    ev.remote = endpoint(&t.raddr, t.rport);
    ev
}

fn syscall(r: &SyscallRecord, kind: RecordKind) -> Result<Event, DecodeError> {
    let op = SyscallOp::from_u8(r.header.op).ok_or(unknown("syscall", r.header.op))?;
    let exit = (kind == RecordKind::Syscall).then_some(Exit {
        ret: r.ret,
        duration_ns: r.duration_ns,
        late: r.header.flags & FLAG_LATE != 0,
    });
    let call = Syscall {
        op,
        args: r.args,
        exit,
    };
    Ok(with_tuple(
        from_header(&r.header, None, Kind::Syscall(call))?,
        &r.tuple,
    ))
}

fn kernel(r: &KernelRecord) -> Result<Event, DecodeError> {
    let func = KernelFn::from_u8(r.header.op).ok_or(unknown("kernel function", r.header.op))?;
    let flags = r.header.flags;
    if func == KernelFn::TcpRetransmitSynack {
        // A retransmission, told with the others; its ends name the connection.
        let kind = Kind::Congestion(Pooled::new(Congestion::syn_ack(r.isn)));
        return Ok(with_tuple(
            from_header(&r.header, Some(func), kind)?,
            &r.tuple,
        ));
    }
    let call = KernelCall {
        func,
        bytes: (flags & FLAG_BYTES != 0).then_some(r.bytes),
        isn: (flags & FLAG_ISN != 0).then_some(r.isn),
        write_seq: (flags & FLAG_WRITE_SEQ != 0).then_some(r.write_seq),
        at_syscall_start: flags & FLAG_AT_SYSCALL_START != 0,
    };
    Ok(with_tuple(
        from_header(&r.header, Some(func), Kind::Kernel(call))?,
        &r.tuple,
    ))
}

fn congestion(r: &CongestionRecord) -> Result<Event, DecodeError> {
    let func = KernelFn::from_u8(r.header.op).ok_or(unknown("kernel function", r.header.op))?;
    let kind = Kind::Congestion(Pooled::new(Congestion::from_record(r, func)));
    from_header(&r.header, Some(func), kind)
}

fn state(r: &StateRecord) -> Result<Event, DecodeError> {
    let change = StateChange {
        from: r.old,
        to: r.new,
    };
    Ok(with_tuple(
        from_header(&r.header, Some(KernelFn::TcpSetState), Kind::State(change))?,
        &r.tuple,
    ))
}

fn packet(raw: &PacketRecord) -> Result<Event, DecodeError> {
    let via = Via::from_u8(raw.via).ok_or(unknown("hook", raw.via))?;
    let caplen = usize::from(raw.caplen).min(raw.data.len());
    let data = CapturedBytes::new(&raw.data[..caplen]);
    let segment = Segment::decode_captured(&data, raw.len as usize);
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
    let captured = Captured {
        segment,
        egress: via != Via::CgroupSkbIngress,
        ifindex: raw.ifindex,
        len: raw.len,
        gso_size: raw.gso_size,
        gso_segs: raw.gso_segs,
        repeat: false,
        data,
    };
    Ok(Event {
        family,
        local,
        remote,
        ..Event::blank(Kind::Packet(Pooled::new(captured)), via, raw.ts_ns)
    })
}

fn ip(family: u16, raw: &[u8; 16]) -> Option<IpAddr> {
    match family {
        AF_INET => Some(IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))),
        AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(*raw))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracer_common::{record::Task, tcp_state};

    fn raw_state() -> StateRecord {
        let mut task = Task::NONE;
        task.comm[..11].copy_from_slice(b"echo-client");
        let mut tuple = Tuple::EMPTY;
        tuple.family = AF_INET;
        tuple.laddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        tuple.raddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        tuple.lport = 41234;
        tuple.rport = 8080;
        StateRecord {
            header: Header {
                task,
                ..Header::new(
                    RecordKind::State,
                    Via::Tracepoint,
                    KernelFn::TcpSetState as u8,
                )
            },
            tuple,
            old: tcp_state::SYN_SENT,
            new: tcp_state::ESTABLISHED,
            _pad: [0; 6],
        }
    }

    fn bytes<T>(raw: &T) -> Vec<u8> {
        // SAFETY: the records are plain data; viewing one as bytes is sound.
        unsafe { std::slice::from_raw_parts((raw as *const T).cast::<u8>(), size_of::<T>()) }
            .to_vec()
    }

    /// The event record `bytes` holds.
    fn event(bytes: &[u8]) -> Event {
        match decode(bytes) {
            Ok(Record::Event(ev)) => ev,
            other => panic!("not an event: {other:?}"),
        }
    }

    #[test]
    fn decodes_where_a_process_runs() {
        let mut raw = PlaceRecord {
            header: Header::new(RecordKind::Place, Via::Syscalls, 0),
            place: Place {
                cgroup_id: 4242,
                netns: 4026531840,
                _pad: 0,
            },
        };
        raw.header.task.pid = 77;
        assert_eq!(
            decode(&bytes(&raw)),
            Ok(Record::Place {
                pid: 77,
                place: raw.place
            })
        );
        assert!(decode(&bytes(&raw)[..40]).is_err());
    }

    #[test]
    fn decodes_a_state_record() {
        let ev = event(&bytes(&raw_state()));
        assert_eq!(
            ev.kind,
            Kind::State(StateChange {
                from: tcp_state::SYN_SENT,
                to: tcp_state::ESTABLISHED
            })
        );
        assert_eq!(ev.layer(), "state");
        assert_eq!(ev.name(), "tcp_set_state");
        assert_eq!(ev.hook.to_string(), "tracepoint:sock:inet_sock_set_state");
        assert_eq!(ev.comm, "echo-client");
        let local = ev.local.unwrap();
        assert_eq!(local.addr, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(local.port, 41234);
        assert_eq!(ev.remote.unwrap().port, 8080);
    }

    #[test]
    fn decodes_ipv6_addresses() {
        let mut raw = raw_state();
        raw.tuple.family = AF_INET6;
        raw.tuple.laddr = Ipv6Addr::LOCALHOST.octets();
        let ev = event(&bytes(&raw));
        assert_eq!(ev.local.unwrap().addr, IpAddr::V6(Ipv6Addr::LOCALHOST));
    }

    #[test]
    fn kernel_fields_are_present_only_when_flagged() {
        let mut raw = KernelRecord::new(KernelFn::TcpSendmsg, Via::Fentry);
        raw.bytes = 5;
        raw.write_seq = 77;
        raw.isn = 9;
        raw.header.flags = FLAG_BYTES | FLAG_WRITE_SEQ;
        let ev = event(&bytes(&raw));
        let Kind::Kernel(call) = ev.kind else {
            panic!("{ev:?}")
        };
        assert_eq!(
            (call.bytes, call.write_seq, call.isn),
            (Some(5), Some(77), None)
        );
        assert!(!call.at_syscall_start);
        assert_eq!(ev.hook.to_string(), "fentry:tcp_sendmsg");
    }

    #[test]
    fn rejects_short_and_unknown_records() {
        let b = bytes(&raw_state());
        assert_eq!(
            decode(&b[..10]),
            Err(DecodeError::Length {
                kind: "state",
                len: 10,
                expected: size_of::<StateRecord>()
            })
        );
        let mut b2 = b.clone();
        b2[0] = 99;
        assert!(matches!(
            decode(&b2),
            Err(DecodeError::Unknown {
                what: "record kind",
                ..
            })
        ));
        let mut raw = SyscallRecord::new(SyscallOp::Read);
        raw.header.op = 200;
        assert!(decode(&bytes(&raw)).is_err());
        assert!(decode(&[]).is_err());
    }

    #[test]
    fn missing_endpoints_are_none() {
        let mut raw = raw_state();
        raw.tuple.family = 0;
        let ev = event(&bytes(&raw));
        assert_eq!(ev.local, None);
        assert_eq!(ev.remote, None);
    }
}
