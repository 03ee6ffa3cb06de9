//! Property tests of everything that reads bytes from outside: the TCP/IP decoder (captured
//! packets and `tracer decode`) and the ring-buffer record decoder. The reference for what a
//! header says is etherparse, written independently of this project: packets it builds must
//! decode to what it built, and whatever our decoder accepts, it must read the same way.
//! Run by `cargo test` (256 cases each; `PROPTEST_CASES=100000` for a long run). No root.

use std::net::IpAddr;

use etherparse::{
    Ipv4HeaderSlice, Ipv6HeaderSlice, Ipv6RawExtHeaderSlice, PacketBuilder, TcpHeaderSlice,
    TcpOptionElement,
};
use proptest::prelude::*;
use tracer::decode::tcpip::{Layer, Segment, TcpHeader, TcpOption, dissect};

/// Our options as etherparse names them, padding left out: what both must agree on.
fn ours_as_reference(options: &[TcpOption]) -> Vec<TcpOptionElement> {
    let mut out = Vec::new();
    for o in options {
        out.push(match o {
            TcpOption::Eol => break,
            TcpOption::Nop => continue,
            TcpOption::Mss(v) => TcpOptionElement::MaximumSegmentSize(*v),
            TcpOption::WindowScale(v) => TcpOptionElement::WindowScale(*v),
            TcpOption::SackPermitted => TcpOptionElement::SelectiveAcknowledgementPermitted,
            TcpOption::Sack(blocks) => {
                let mut more = [None; 3];
                for (slot, block) in more.iter_mut().zip(&blocks[1..]) {
                    *slot = Some(*block);
                }
                TcpOptionElement::SelectiveAcknowledgement(blocks[0], more)
            }
            TcpOption::Timestamps { val, ecr } => TcpOptionElement::Timestamp(*val, *ecr),
            // etherparse has no name for other kinds: agreement stops here.
            TcpOption::Unknown { .. } => break,
        });
    }
    out
}

/// etherparse's reading of the options in `tcp`, padding left out, up to the first kind it
/// does not know (or cannot read).
fn reference_options(tcp: &TcpHeaderSlice) -> Vec<TcpOptionElement> {
    tcp.options_iterator()
        .map_while(Result::ok)
        .filter(|o| *o != TcpOptionElement::Noop)
        .collect()
}

/// The TCP header's flags byte as etherparse reads it.
fn reference_flags(t: &TcpHeaderSlice) -> u8 {
    [
        t.fin(),
        t.syn(),
        t.rst(),
        t.psh(),
        t.ack(),
        t.urg(),
        t.ece(),
        t.cwr(),
    ]
    .iter()
    .enumerate()
    .map(|(bit, &set)| u8::from(set) << bit)
    .sum()
}

/// Checks that etherparse reads `bytes` (an IP packet our decoder accepted as `seg`) the
/// same way, header by header.
fn agrees_with_reference(bytes: &[u8], seg: &Segment) -> Result<(), TestCaseError> {
    let tcp_at = match seg.src {
        IpAddr::V4(_) => {
            let ip = Ipv4HeaderSlice::from_slice(bytes)
                .map_err(|e| TestCaseError::fail(format!("we accepted, etherparse: {e}")))?;
            prop_assert_eq!(IpAddr::V4(ip.source_addr()), seg.src);
            prop_assert_eq!(IpAddr::V4(ip.destination_addr()), seg.dst);
            prop_assert_eq!(ip.ttl(), seg.ttl);
            prop_assert_eq!(ip.protocol().0, 6);
            prop_assert_eq!(ip.fragments_offset().value(), 0);
            prop_assert_eq!(usize::from(ip.ihl()) * 4, seg.ip_header_len);
            prop_assert_eq!(usize::from(ip.total_len()), seg.ip_total_len);
            seg.ip_header_len
        }
        IpAddr::V6(_) => {
            let ip = Ipv6HeaderSlice::from_slice(bytes)
                .map_err(|e| TestCaseError::fail(format!("we accepted, etherparse: {e}")))?;
            prop_assert_eq!(IpAddr::V6(ip.source_addr()), seg.src);
            prop_assert_eq!(IpAddr::V6(ip.destination_addr()), seg.dst);
            prop_assert_eq!(ip.hop_limit(), seg.ttl);
            let mut at = 40;
            if ip.next_header().0 == 0 {
                let hbh = Ipv6RawExtHeaderSlice::from_slice(&bytes[40..])
                    .map_err(|e| TestCaseError::fail(format!("hop-by-hop: {e}")))?;
                prop_assert_eq!(hbh.next_header().0, 6);
                at += hbh.slice().len();
            } else {
                prop_assert_eq!(ip.next_header().0, 6);
            }
            prop_assert_eq!(at, seg.ip_header_len);
            prop_assert_eq!(40 + usize::from(ip.payload_length()), seg.ip_total_len);
            at
        }
    };
    let tcp = TcpHeaderSlice::from_slice(&bytes[tcp_at..])
        .map_err(|e| TestCaseError::fail(format!("we accepted TCP, etherparse: {e}")))?;
    prop_assert_eq!(tcp.source_port(), seg.tcp.sport);
    prop_assert_eq!(tcp.destination_port(), seg.tcp.dport);
    prop_assert_eq!(tcp.sequence_number(), seg.tcp.seq);
    prop_assert_eq!(tcp.acknowledgment_number(), seg.tcp.ack);
    prop_assert_eq!(usize::from(tcp.data_offset()) * 4, seg.tcp.header_len);
    prop_assert_eq!(reference_flags(&tcp), seg.tcp.flags);
    prop_assert_eq!(tcp.window_size(), seg.tcp.window);
    prop_assert_eq!(tcp.checksum(), seg.tcp.checksum);
    prop_assert_eq!(tcp.urgent_pointer(), seg.tcp.urgent);
    let ours = ours_as_reference(&seg.tcp.options.iter().collect::<Vec<_>>());
    let theirs = reference_options(&tcp);
    let n = ours.len().min(theirs.len());
    prop_assert_eq!(&ours[..n], &theirs[..n], "options");
    Ok(())
}

fn option() -> impl Strategy<Value = TcpOptionElement> {
    let block = || (any::<u32>(), any::<u32>());
    prop_oneof![
        Just(TcpOptionElement::Noop),
        any::<u16>().prop_map(TcpOptionElement::MaximumSegmentSize),
        any::<u8>().prop_map(TcpOptionElement::WindowScale),
        Just(TcpOptionElement::SelectiveAcknowledgementPermitted),
        (
            block(),
            proptest::option::of(block()),
            proptest::option::of(block())
        )
            .prop_map(|(first, second, third)| {
                // Blocks after the first are contiguous: no gap etherparse would skip.
                let more = match (second, third) {
                    (Some(b), t) => [Some(b), t, None],
                    (None, _) => [None, None, None],
                };
                TcpOptionElement::SelectiveAcknowledgement(first, more)
            }),
        (any::<u32>(), any::<u32>()).prop_map(|(v, e)| TcpOptionElement::Timestamp(v, e)),
    ]
}

/// A TCP/IP packet as etherparse builds it, and what it was built from.
#[derive(Clone, Debug)]
struct Built {
    bytes: Vec<u8>,
    src: IpAddr,
    dst: IpAddr,
    ttl: u8,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    urgent: u16,
    options: Vec<TcpOptionElement>,
    payload: usize,
}

prop_compose! {
    fn built()(
        v6 in any::<bool>(),
        src in any::<[u8; 16]>(),
        dst in any::<[u8; 16]>(),
        ttl in any::<u8>(),
        sport in any::<u16>(),
        dport in any::<u16>(),
        seq in any::<u32>(),
        ack in any::<u32>(),
        flags in any::<u8>(),
        window in any::<u16>(),
        urgent in any::<u16>(),
        options in proptest::collection::vec(option(), 0..5),
        payload in proptest::collection::vec(any::<u8>(), 0..300),
    ) -> Option<Built> {
        let (s, d): (IpAddr, IpAddr) = if v6 {
            (src.into(), dst.into())
        } else {
            let four = |a: [u8; 16]| IpAddr::from([a[0], a[1], a[2], a[3]]);
            (four(src), four(dst))
        };
        let ip = match (s, d) {
            (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s.octets(), d.octets(), ttl),
            (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), ttl),
            _ => unreachable!(),
        };
        let mut tcp = ip.tcp(sport, dport, seq, window);
        let has = |bit: u8| flags & bit != 0;
        if has(0x01) { tcp = tcp.fin(); }
        if has(0x02) { tcp = tcp.syn(); }
        if has(0x04) { tcp = tcp.rst(); }
        if has(0x08) { tcp = tcp.psh(); }
        if has(0x10) { tcp = tcp.ack(ack); }
        if has(0x20) { tcp = tcp.urg(urgent); }
        if has(0x40) { tcp = tcp.ece(); }
        if has(0x80) { tcp = tcp.cwr(); }
        // Options beyond TCP's 40 bytes: not a packet.
        let tcp = tcp.options(&options).ok()?;
        let mut bytes = Vec::new();
        tcp.write(&mut bytes, &payload).ok()?;
        Some(Built {
            bytes,
            src: s,
            dst: d,
            ttl,
            sport,
            dport,
            seq,
            ack: if has(0x10) { ack } else { 0 },
            flags,
            window,
            urgent: if has(0x20) { urgent } else { 0 },
            options,
            payload: payload.len(),
        })
    }
}

proptest! {
    /// Every packet etherparse builds decodes to exactly what it was built from.
    #[test]
    fn built_packets_decode_to_what_was_built(b in built()) {
        let Some(b) = b else { return Ok(()) };
        let seg = Segment::decode(&b.bytes)
            .map_err(|e| TestCaseError::fail(format!("{e}: {:02x?}", b.bytes)))?;
        prop_assert_eq!(seg.src, b.src);
        prop_assert_eq!(seg.dst, b.dst);
        prop_assert_eq!(seg.ttl, b.ttl);
        prop_assert_eq!(seg.tcp.sport, b.sport);
        prop_assert_eq!(seg.tcp.dport, b.dport);
        prop_assert_eq!(seg.tcp.seq, b.seq);
        prop_assert_eq!(seg.tcp.ack, b.ack);
        prop_assert_eq!(seg.tcp.flags, b.flags);
        prop_assert_eq!(seg.tcp.window, b.window);
        prop_assert_eq!(seg.tcp.urgent, b.urgent);
        prop_assert_eq!(seg.payload_len, b.payload);
        prop_assert_eq!(seg.ip_total_len, b.bytes.len());
        let expected: Vec<TcpOptionElement> = b
            .options
            .iter()
            .filter(|o| **o != TcpOptionElement::Noop)
            .cloned()
            .collect();
        prop_assert_eq!(ours_as_reference(&seg.tcp.options.iter().collect::<Vec<_>>()), expected);
        // What `tracer decode` prints for the same bytes, from the IP header or the TCP one.
        prop_assert!(dissect(&b.bytes, Layer::Auto).is_ok());
        prop_assert!(dissect(&b.bytes[seg.ip_header_len..], Layer::Tcp).is_ok());
        // A capture keeps the headers only: the lengths still come from the IP header.
        let headers = &b.bytes[..seg.ip_header_len + seg.tcp.header_len];
        let captured = Segment::decode_captured(headers, b.bytes.len())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(captured.payload_len, b.payload);
    }

    /// Bytes changed anywhere and cut anywhere: no panic, and whatever our decoder still
    /// accepts, etherparse reads the same way.
    #[test]
    fn damaged_packets_are_refused_or_read_like_the_reference(
        b in built(),
        changes in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        cut in any::<usize>(),
        wire in 0usize..200_000,
    ) {
        let Some(b) = b else { return Ok(()) };
        let mut bytes = b.bytes;
        for (at, value) in changes {
            let at = at % bytes.len();
            bytes[at] = value;
        }
        bytes.truncate(cut % (bytes.len() + 1));
        if let Ok(seg) = Segment::decode(&bytes) {
            agrees_with_reference(&bytes, &seg)?;
        }
        let _ = Segment::decode_captured(&bytes, wire);
        let _ = TcpHeader::decode(&bytes);
        for layer in [Layer::Auto, Layer::Ip, Layer::Tcp] {
            let _ = dissect(&bytes, layer);
        }
    }

    /// Bytes from nowhere: no panic from any decoder.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(seg) = Segment::decode(&bytes) {
            agrees_with_reference(&bytes, &seg)?;
        }
        let _ = Segment::decode_captured(&bytes, bytes.len());
        for layer in [Layer::Auto, Layer::Ip, Layer::Tcp] {
            let _ = dissect(&bytes, layer);
        }
    }

    /// Ring-buffer records of every kind and size, their fields random: an error or an event,
    /// never a panic.
    #[test]
    fn any_record_decodes_or_is_refused(
        kind in 0u8..8,
        mut bytes in prop_oneof![
            Just(size_of::<tracer_common::record::SyscallRecord>()),
            Just(size_of::<tracer_common::record::KernelRecord>()),
            Just(size_of::<tracer_common::record::StateRecord>()),
            Just(size_of::<tracer_common::record::PacketRecord>()),
            0usize..1024,
        ]
        .prop_flat_map(|len| proptest::collection::vec(any::<u8>(), len)),
    ) {
        if let Some(first) = bytes.first_mut() {
            *first = kind;
        }
        let _ = tracer::decode::decode(&bytes);
    }
}
