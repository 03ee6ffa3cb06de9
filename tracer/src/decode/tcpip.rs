//! Decoding captured IPv4/IPv6 + TCP headers, field by field, as a textbook dissects them.
//! Truncated or malformed input is an error for that packet, never a panic.

use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use thiserror::Error;

/// Why a packet could not be decoded.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum PacketError {
    /// Fewer bytes than the header needs.
    #[error("truncated {what}: {have} bytes, need {need}")]
    Truncated {
        /// Which header.
        what: &'static str,
        /// Bytes available.
        have: usize,
        /// Bytes needed.
        need: usize,
    },
    /// A field holds an impossible value.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// Not TCP.
    #[error("not a TCP segment (IP protocol {0})")]
    NotTcp(u8),
    /// Not IPv4 or IPv6.
    #[error("IP version {0} is neither 4 nor 6")]
    Version(u8),
    /// An IPv4 fragment other than the first: it holds no TCP header.
    #[error("an IPv4 fragment at offset {0} bytes holds no TCP header (only the first does)")]
    Fragment(u32),
    /// Hex input with a non-hex character or an odd length.
    #[error("not hex: {0}")]
    Hex(String),
}

/// TCP header flags, in header bit order.
pub mod flags {
    /// FIN
    pub const FIN: u8 = 0x01;
    /// SYN
    pub const SYN: u8 = 0x02;
    /// RST
    pub const RST: u8 = 0x04;
    /// PSH
    pub const PSH: u8 = 0x08;
    /// ACK
    pub const ACK: u8 = 0x10;
    /// URG
    pub const URG: u8 = 0x20;
    /// ECE
    pub const ECE: u8 = 0x40;
    /// CWR
    pub const CWR: u8 = 0x80;
}

/// One TCP option.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TcpOption {
    /// End of option list (kind 0).
    Eol,
    /// No-operation (kind 1).
    Nop,
    /// Maximum segment size (kind 2).
    Mss(u16),
    /// Window scale shift (kind 3).
    WindowScale(u8),
    /// SACK permitted (kind 4).
    SackPermitted,
    /// SACK blocks (kind 5): (left, right) edges.
    Sack(Vec<(u32, u32)>),
    /// Timestamps (kind 8).
    Timestamps {
        /// TSval
        val: u32,
        /// TSecr
        ecr: u32,
    },
    /// Any other kind, raw.
    Unknown {
        /// The kind byte.
        kind: u8,
        /// The option's data.
        data: Vec<u8>,
    },
}

impl fmt::Display for TcpOption {
    /// tcpdump's spelling: `mss 1460`, `sackOK`, `TS val 1 ecr 0`, `wscale 7`, `nop`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Eol => f.write_str("eol"),
            Self::Nop => f.write_str("nop"),
            Self::Mss(v) => write!(f, "mss {v}"),
            Self::WindowScale(v) => write!(f, "wscale {v}"),
            Self::SackPermitted => f.write_str("sackOK"),
            Self::Sack(blocks) => {
                f.write_str("sack")?;
                for (l, r) in blocks {
                    write!(f, " {{{l}:{r}}}")?;
                }
                Ok(())
            }
            Self::Timestamps { val, ecr } => write!(f, "TS val {val} ecr {ecr}"),
            Self::Unknown { kind, data } => {
                write!(f, "opt-{kind}")?;
                if !data.is_empty() {
                    f.write_str(" 0x")?;
                    for b in data {
                        write!(f, "{b:02x}")?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// A decoded TCP header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpHeader {
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// Header length in bytes (data offset × 4).
    pub header_len: usize,
    /// Flags, see [`flags`].
    pub flags: u8,
    /// Window field as sent (unscaled).
    pub window: u16,
    /// Checksum as sent (on loopback only the pseudo-header part: the sum is offloaded).
    pub checksum: u16,
    /// Urgent pointer.
    pub urgent: u16,
    /// Options in order.
    pub options: TcpOptions,
}

impl TcpHeader {
    /// Decodes a TCP header from the start of `b`.
    pub fn decode(b: &[u8]) -> Result<Self, PacketError> {
        need(b, 20, "TCP header")?;
        let header_len = usize::from(b[12] >> 4) * 4;
        if header_len < 20 {
            return Err(PacketError::Malformed("TCP data offset below 5"));
        }
        need(b, header_len, "TCP options")?;
        Ok(Self {
            sport: be16(b, 0),
            dport: be16(b, 2),
            seq: be32(b, 4),
            ack: be32(b, 8),
            header_len,
            flags: b[13],
            window: be16(b, 14),
            checksum: be16(b, 16),
            urgent: be16(b, 18),
            options: TcpOptions::from_bytes(&b[20..header_len])?,
        })
    }

    /// Whether all of `mask` is set.
    pub fn has(&self, mask: u8) -> bool {
        self.flags & mask == mask
    }

    /// Flags as letters in a fixed order, e.g. `SA`, `FA`, `PA`, appended to `buf` (the JSON
    /// view writes them for every segment, without allocating).
    pub fn push_flag_letters(&self, buf: &mut Vec<u8>) {
        const LETTERS: [(u8, u8); 8] = [
            (flags::SYN, b'S'),
            (flags::FIN, b'F'),
            (flags::RST, b'R'),
            (flags::PSH, b'P'),
            (flags::ACK, b'A'),
            (flags::URG, b'U'),
            (flags::ECE, b'E'),
            (flags::CWR, b'C'),
        ];
        for (bit, letter) in LETTERS {
            if self.flags & bit != 0 {
                buf.push(letter);
            }
        }
    }

    /// Flags as tcpdump prints them: `S`, `S.`, `P.`, `F.`, `R`, with `.` for ACK.
    pub fn tcpdump_flags(&self) -> String {
        tcpdump_flags(self.flags)
    }

    /// The window-scale shift this segment announces, if any.
    pub fn window_scale(&self) -> Option<u8> {
        self.options.iter().find_map(|o| match o {
            TcpOption::WindowScale(s) => Some(s),
            _ => None,
        })
    }

    /// Options as tcpdump prints them: `mss 65495,sackOK,TS val 1 ecr 0,nop,wscale 7`.
    pub fn options_text(&self) -> String {
        self.options_text_relative(0)
    }

    /// The options as [`Self::options_text`], SACK edges made relative by subtracting `base`
    /// (the acknowledged side's initial sequence number, as for the ack field).
    pub fn options_text_relative(&self, base: u32) -> String {
        let mut s = String::new();
        self.write_options_relative(&mut s, base);
        s
    }

    /// [`Self::options_text_relative`], written to `out`.
    pub fn write_options_relative(&self, out: &mut String, base: u32) {
        use std::fmt::Write as _;
        for (i, o) in self.options.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = match o {
                TcpOption::Sack(blocks) => {
                    out.push_str("sack");
                    blocks.iter().try_for_each(|&(l, r)| {
                        write!(
                            out,
                            " {{{}:{}}}",
                            l.wrapping_sub(base),
                            r.wrapping_sub(base)
                        )
                    })
                }
                _ => write!(out, "{o}"),
            };
        }
    }
}

/// A TCP header's options, kept as the bytes they came in (at most 40): validated when the
/// header is decoded, decoded again each time they are read. Decoding a segment allocates
/// nothing for them, and most segments' options are never read (only the views that show
/// them do, once).
#[derive(Clone, PartialEq, Eq)]
pub struct TcpOptions {
    len: u8,
    bytes: [u8; MAX_OPTION_BYTES],
}

/// Room for options in a TCP header: data offset 15 words, less the 20-byte fixed part.
const MAX_OPTION_BYTES: usize = 40;

impl TcpOptions {
    /// The options in `b` (a header's bytes after its first 20), checked.
    pub fn from_bytes(b: &[u8]) -> Result<Self, PacketError> {
        if b.len() > MAX_OPTION_BYTES {
            return Err(PacketError::Malformed("TCP options longer than 40 bytes"));
        }
        let mut rest = b;
        while !rest.is_empty() {
            let (option, len) = next_option(rest)?;
            if option == TcpOption::Eol {
                break;
            }
            rest = &rest[len..];
        }
        let mut bytes = [0; MAX_OPTION_BYTES];
        bytes[..b.len()].copy_from_slice(b);
        Ok(Self {
            len: b.len() as u8,
            bytes,
        })
    }

    /// Whether the header has none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The options in order (an end-of-list option ends them).
    pub fn iter(&self) -> OptionsIter<'_> {
        OptionsIter {
            rest: &self.bytes[..usize::from(self.len)],
        }
    }
}

impl fmt::Debug for TcpOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for &'a TcpOptions {
    type Item = TcpOption;
    type IntoIter = OptionsIter<'a>;

    fn into_iter(self) -> OptionsIter<'a> {
        self.iter()
    }
}

/// The options of a [`TcpOptions`], decoded one by one.
pub struct OptionsIter<'a> {
    rest: &'a [u8],
}

impl Iterator for OptionsIter<'_> {
    type Item = TcpOption;

    fn next(&mut self) -> Option<TcpOption> {
        // Checked when the header was decoded: an error here cannot happen, and ends the list.
        let (option, len) = next_option(self.rest).ok()?;
        self.rest = if option == TcpOption::Eol {
            &[]
        } else {
            &self.rest[len..]
        };
        Some(option)
    }
}

/// TCP flags `flags` as tcpdump prints them: `S`, `S.`, `P.`, `F.`, `R`, with `.` for ACK.
pub fn tcpdump_flags(flags: u8) -> String {
    let mut s = String::new();
    push_tcpdump_flags(&mut s, flags);
    s
}

/// [`tcpdump_flags`], written to `out`.
pub fn push_tcpdump_flags(out: &mut String, flags: u8) {
    const LETTERS: [(u8, char); 8] = [
        (flags::SYN, 'S'),
        (flags::FIN, 'F'),
        (flags::PSH, 'P'),
        (flags::RST, 'R'),
        (flags::URG, 'U'),
        (flags::ECE, 'E'),
        (flags::CWR, 'W'),
        (flags::ACK, '.'),
    ];
    let start = out.len();
    out.extend(
        LETTERS
            .iter()
            .filter(|(bit, _)| flags & bit != 0)
            .map(|&(_, c)| c),
    );
    if out.len() == start {
        out.push_str("none");
    }
}

/// The option at the start of `b` (not empty) and how many bytes it takes.
fn next_option(b: &[u8]) -> Result<(TcpOption, usize), PacketError> {
    let Some(&kind) = b.first() else {
        return Err(PacketError::Malformed("TCP options end"));
    };
    match kind {
        0 => return Ok((TcpOption::Eol, 1)),
        1 => return Ok((TcpOption::Nop, 1)),
        _ => {}
    }
    let len = *b
        .get(1)
        .ok_or(PacketError::Malformed("TCP option without length"))? as usize;
    if len < 2 || len > b.len() {
        return Err(PacketError::Malformed("TCP option length"));
    }
    let data = &b[2..len];
    let bad = || PacketError::Malformed("TCP option size");
    let option = match kind {
        2 if len == 4 => TcpOption::Mss(be16(data, 0)),
        3 if len == 3 => TcpOption::WindowScale(data[0]),
        4 if len == 2 => TcpOption::SackPermitted,
        // One to four blocks of two edges (RFC 2018): 10, 18, 26 or 34 bytes.
        5 if len >= 10 && (len - 2).is_multiple_of(8) => TcpOption::Sack(
            data.chunks_exact(8)
                .map(|c| (be32(c, 0), be32(c, 4)))
                .collect(),
        ),
        8 if len == 10 => TcpOption::Timestamps {
            val: be32(data, 0),
            ecr: be32(data, 4),
        },
        2..=5 | 8 => return Err(bad()),
        _ => TcpOption::Unknown {
            kind,
            data: data.to_vec(),
        },
    };
    Ok((option, len))
}

/// A decoded IP packet carrying a TCP segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP header length in bytes (IPv6: with a hop-by-hop header when there is one).
    pub ip_header_len: usize,
    /// The packet's total length (IPv6: 40 + payload length), from the IP header unless
    /// [`Segment::length_from_skb`].
    pub ip_total_len: usize,
    /// TTL / hop limit.
    pub ttl: u8,
    /// The TCP header.
    pub tcp: TcpHeader,
    /// TCP payload length.
    pub payload_len: usize,
    /// The IP header's length field was 0, as in a GSO/TSO or BIG TCP super-segment before
    /// it is cut into segments: the lengths come from the kernel's packet length.
    pub length_from_skb: bool,
}

/// IPv6 next-header value of a hop-by-hop options header.
const IPV6_HOP_BY_HOP: u8 = 0;

impl Segment {
    /// Decodes an IPv4 or IPv6 packet that carries TCP, from its bytes alone.
    pub fn decode(b: &[u8]) -> Result<Self, PacketError> {
        Self::decode_inner(b, None)
    }

    /// Decodes a packet captured in the kernel, whose length there (`skb->len`) was
    /// `wire_len`. A super-segment the stack has not cut up yet carries 0 in its IP length
    /// field (IPv4 beyond 64 KiB, IPv6 BIG TCP): its length is `wire_len`.
    pub fn decode_captured(b: &[u8], wire_len: usize) -> Result<Self, PacketError> {
        Self::decode_inner(b, Some(wire_len))
    }

    fn decode_inner(b: &[u8], wire_len: Option<usize>) -> Result<Self, PacketError> {
        need(b, 1, "IP header")?;
        match b[0] >> 4 {
            4 => {
                need(b, 20, "IPv4 header")?;
                let ihl = usize::from(b[0] & 0x0f) * 4;
                if ihl < 20 {
                    return Err(PacketError::Malformed("IPv4 header length below 20"));
                }
                need(b, ihl, "IPv4 options")?;
                if b[9] != 6 {
                    return Err(PacketError::NotTcp(b[9]));
                }
                let fragment_offset = u32::from(be16(b, 6) & 0x1fff) * 8;
                if fragment_offset != 0 {
                    return Err(PacketError::Fragment(fragment_offset));
                }
                let (total, length_from_skb) = match (be16(b, 2), wire_len) {
                    (0, Some(wire)) => (wire, true),
                    (n, _) => (usize::from(n), false),
                };
                let tcp = TcpHeader::decode(&b[ihl..])?;
                let payload_len =
                    total
                        .checked_sub(ihl + tcp.header_len)
                        .ok_or(PacketError::Malformed(
                            "IPv4 total length shorter than headers",
                        ))?;
                Ok(Self {
                    src: IpAddr::V4(Ipv4Addr::new(b[12], b[13], b[14], b[15])),
                    dst: IpAddr::V4(Ipv4Addr::new(b[16], b[17], b[18], b[19])),
                    ip_header_len: ihl,
                    ip_total_len: total,
                    ttl: b[8],
                    tcp,
                    payload_len,
                    length_from_skb,
                })
            }
            6 => {
                need(b, 40, "IPv6 header")?;
                // TCP directly after the header, or after one hop-by-hop header (the jumbo
                // payload option of BIG TCP); other extension headers are not followed.
                let header_len = match b[6] {
                    6 => 40,
                    IPV6_HOP_BY_HOP => {
                        need(b, 42, "IPv6 hop-by-hop header")?;
                        if b[40] != 6 {
                            return Err(PacketError::NotTcp(b[40]));
                        }
                        40 + (usize::from(b[41]) + 1) * 8
                    }
                    next => return Err(PacketError::NotTcp(next)),
                };
                need(b, header_len, "IPv6 hop-by-hop header")?;
                let (total, length_from_skb) = match (be16(b, 4), wire_len) {
                    (0, Some(wire)) => (wire, true),
                    (n, _) => (40 + usize::from(n), false),
                };
                let addr = |at: usize| {
                    let mut a = [0u8; 16];
                    a.copy_from_slice(&b[at..at + 16]);
                    IpAddr::V6(Ipv6Addr::from(a))
                };
                let tcp = TcpHeader::decode(&b[header_len..])?;
                let payload_len = total.checked_sub(header_len + tcp.header_len).ok_or(
                    PacketError::Malformed("IPv6 payload length shorter than TCP header"),
                )?;
                Ok(Self {
                    src: addr(8),
                    dst: addr(24),
                    ip_header_len: header_len,
                    ip_total_len: total,
                    ttl: b[7],
                    tcp,
                    payload_len,
                    length_from_skb,
                })
            }
            v => Err(PacketError::Version(v)),
        }
    }
}

/// Parses hex, ignoring white space and `:`.
pub fn parse_hex(s: &str) -> Result<Vec<u8>, PacketError> {
    let digits: Vec<u8> = s
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b':')
        .collect();
    if !digits.len().is_multiple_of(2) {
        return Err(PacketError::Hex("odd number of digits".into()));
    }
    digits
        .chunks(2)
        .map(|p| {
            let text = std::str::from_utf8(p).unwrap_or("??");
            u8::from_str_radix(text, 16).map_err(|_| PacketError::Hex(format!("'{text}'")))
        })
        .collect()
}

/// What the bytes given to [`dissect`] start with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    /// An IP header when the first nibble is 4 or 6, else a TCP header: never one after the
    /// other failed.
    Auto,
    /// An IPv4 or IPv6 header.
    Ip,
    /// A bare TCP header.
    Tcp,
}

impl Layer {
    /// The layer `Auto` settles on for `bytes`.
    pub fn of(self, bytes: &[u8]) -> Layer {
        match self {
            Layer::Auto if matches!(bytes.first().map(|b| b >> 4), Some(4 | 6)) => Layer::Ip,
            Layer::Auto => Layer::Tcp,
            other => other,
        }
    }
}

/// `tracer decode HEX`: a TCP header (or an IP packet holding one) dissected field by field.
/// An error is about the layer the bytes were read as.
pub fn dissect(bytes: &[u8], layer: Layer) -> Result<String, PacketError> {
    let mut out = String::new();
    let tcp = if layer.of(bytes) == Layer::Ip {
        let seg = Segment::decode(bytes)?;
        let v = if seg.src.is_ipv4() { 4 } else { 6 };
        let _ = writeln!(out, "IPv{v} header ({} bytes)", seg.ip_header_len);
        let _ = writeln!(out, "  source address            {}", seg.src);
        let _ = writeln!(out, "  destination address       {}", seg.dst);
        let _ = writeln!(
            out,
            "  total length              {} bytes",
            seg.ip_total_len
        );
        let _ = writeln!(out, "  TTL / hop limit           {}", seg.ttl);
        let _ = writeln!(out, "  TCP payload               {} bytes", seg.payload_len);
        seg.tcp
    } else {
        TcpHeader::decode(bytes)?
    };
    let _ = writeln!(out, "TCP header ({} bytes)", tcp.header_len);
    let _ = writeln!(out, "  source port               {}", tcp.sport);
    let _ = writeln!(out, "  destination port          {}", tcp.dport);
    let _ = writeln!(
        out,
        "  sequence number           {} (0x{:08x})",
        tcp.seq, tcp.seq
    );
    let _ = writeln!(
        out,
        "  acknowledgement number    {} (0x{:08x})",
        tcp.ack, tcp.ack
    );
    let _ = writeln!(
        out,
        "  header length             {} bytes (data offset {})",
        tcp.header_len,
        tcp.header_len / 4
    );
    let names: Vec<&str> = [
        (flags::CWR, "CWR"),
        (flags::ECE, "ECE"),
        (flags::URG, "URG"),
        (flags::ACK, "ACK"),
        (flags::PSH, "PSH"),
        (flags::RST, "RST"),
        (flags::SYN, "SYN"),
        (flags::FIN, "FIN"),
    ]
    .iter()
    .filter(|(bit, _)| tcp.flags & bit != 0)
    .map(|(_, n)| *n)
    .collect();
    let _ = writeln!(
        out,
        "  flags                     0x{:02x} {}",
        tcp.flags,
        if names.is_empty() {
            "(none)".to_string()
        } else {
            names.join(", ")
        }
    );
    let _ = writeln!(out, "  window                    {}", tcp.window);
    let _ = writeln!(out, "  checksum                  0x{:04x}", tcp.checksum);
    let _ = writeln!(out, "  urgent pointer            {}", tcp.urgent);
    if tcp.options.is_empty() {
        let _ = writeln!(out, "  options                   none");
    } else {
        let _ = writeln!(out, "  options");
        for o in &tcp.options {
            let text = match o {
                TcpOption::Mss(v) => format!("MSS {v}"),
                TcpOption::WindowScale(v) => {
                    format!("window scale {v} (multiply by {})", 1u32 << v.min(14))
                }
                TcpOption::SackPermitted => "SACK permitted".into(),
                TcpOption::Nop => "NOP".into(),
                TcpOption::Eol => "EOL".into(),
                TcpOption::Timestamps { val, ecr } => format!("timestamps TSval {val} TSecr {ecr}"),
                TcpOption::Sack(_) | TcpOption::Unknown { .. } => o.to_string(),
            };
            let _ = writeln!(out, "    {text}");
        }
    }
    Ok(out)
}

fn need(b: &[u8], n: usize, what: &'static str) -> Result<(), PacketError> {
    if b.len() < n {
        Err(PacketError::Truncated {
            what,
            have: b.len(),
            need: n,
        })
    } else {
        Ok(())
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYN: &str = "c4621f90360a1d03000000008002faf04cc00000020405b40103030801010402";

    #[test]
    fn decodes_the_textbook_syn() {
        let tcp = TcpHeader::decode(&parse_hex(SYN).unwrap()).unwrap();
        assert_eq!(tcp.sport, 50274);
        assert_eq!(tcp.dport, 8080);
        assert_eq!(tcp.seq, 0x360a1d03);
        assert_eq!(tcp.ack, 0);
        assert_eq!(tcp.header_len, 32);
        assert_eq!(tcp.flags, flags::SYN);
        assert_eq!(tcp.window, 64240);
        assert_eq!(tcp.checksum, 0x4cc0);
        assert_eq!(tcp.urgent, 0);
        assert_eq!(
            tcp.options.iter().collect::<Vec<_>>(),
            [
                TcpOption::Mss(1460),
                TcpOption::Nop,
                TcpOption::WindowScale(8),
                TcpOption::Nop,
                TcpOption::Nop,
                TcpOption::SackPermitted
            ]
        );
        assert_eq!(tcp.tcpdump_flags(), "S");
        let mut letters = Vec::new();
        tcp.push_flag_letters(&mut letters);
        assert_eq!(letters, b"S");
        assert_eq!(tcp.options_text(), "mss 1460,nop,wscale 8,nop,nop,sackOK");
        let text = dissect(&parse_hex(SYN).unwrap(), Layer::Auto).unwrap();
        for line in [
            "source port               50274",
            "destination port          8080",
            "sequence number           906632451 (0x360a1d03)",
            "acknowledgement number    0 (0x00000000)",
            "header length             32 bytes",
            "flags                     0x02 SYN",
            "window                    64240",
            "checksum                  0x4cc0",
            "urgent pointer            0",
            "MSS 1460",
            "window scale 8",
            "SACK permitted",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert_eq!(text.matches("NOP").count(), 3);
    }

    #[test]
    fn decodes_an_ipv4_packet_around_it() {
        let tcp = parse_hex(SYN).unwrap();
        let mut ip = vec![
            0x45,
            0,
            0,
            (20 + tcp.len()) as u8,
            0,
            0,
            0x40,
            0,
            64,
            6,
            0,
            0,
            127,
            0,
            0,
            1,
            127,
            0,
            0,
            2,
        ];
        ip.extend_from_slice(&tcp);
        let seg = Segment::decode(&ip).unwrap();
        assert_eq!(seg.src, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(seg.dst, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(seg.payload_len, 0);
        assert_eq!(seg.tcp.dport, 8080);
        assert!(
            dissect(&ip, Layer::Auto)
                .unwrap()
                .starts_with("IPv4 header (20 bytes)")
        );
    }

    #[test]
    fn decodes_ipv6_sack_and_timestamps() {
        let mut tcp =
            parse_hex("1f90c462000000010000000280101000000000000101080a0000000100000002").unwrap();
        tcp[12] = 0x80; // 32-byte header
        let mut ip = vec![0x60, 0, 0, 0, 0, 37, 6, 64];
        ip.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        ip.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        ip.extend_from_slice(&tcp);
        ip.extend_from_slice(b"hello");
        let seg = Segment::decode(&ip).unwrap();
        assert_eq!(seg.payload_len, 5);
        assert_eq!(
            seg.tcp.options.iter().nth(2),
            Some(TcpOption::Timestamps { val: 1, ecr: 2 })
        );
        let sack: Vec<_> = TcpOptions::from_bytes(&[5, 10, 0, 0, 0, 1, 0, 0, 0, 9])
            .unwrap()
            .iter()
            .collect();
        assert_eq!(sack, [TcpOption::Sack(vec![(1, 9)])]);
        assert_eq!(sack[0].to_string(), "sack {1:9}");
        let unknown: Vec<_> = TcpOptions::from_bytes(&[30, 4, 0xab, 0xcd])
            .unwrap()
            .iter()
            .collect();
        assert_eq!(unknown[0].to_string(), "opt-30 0xabcd");
    }

    /// A super-segment as cgroup_skb saw it leave on lo (Linux 6.18, a 5 MB download):
    /// 95,284 bytes in the skb, IPv4 total length 0.
    #[test]
    fn a_gso_super_segment_takes_its_length_from_the_skb() {
        let ip = parse_hex(
            "45000000 ae864000 40068e6f 7f000001 7f000001 1fa3ec7c 651ca67c 5f7363da \
             80180040 722a0000 0101080a 4eef180b a944be55",
        )
        .unwrap();
        assert!(Segment::decode(&ip).is_err(), "alone, the header is short");
        let seg = Segment::decode_captured(&ip, 95_284).unwrap();
        assert!(seg.length_from_skb);
        assert_eq!(seg.ip_total_len, 95_284);
        assert_eq!(seg.payload_len, 95_284 - 20 - 32);
        assert_eq!((seg.tcp.sport, seg.tcp.dport), (8099, 60540));
        // A length the header states is kept, whatever the skb holds.
        let mut normal = ip.clone();
        normal[2..4].copy_from_slice(&1000u16.to_be_bytes());
        let seg = Segment::decode_captured(&normal, 1000).unwrap();
        assert!(!seg.length_from_skb);
        assert_eq!(seg.payload_len, 1000 - 52);
    }

    /// IPv6 BIG TCP: payload length 0 and a hop-by-hop header (the jumbo payload option)
    /// before TCP.
    #[test]
    fn an_ipv6_big_tcp_packet_with_a_jumbo_header_is_decoded() {
        let mut ip = vec![0x60, 0, 0, 0, 0, 0, 0, 64];
        ip.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        ip.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        // Hop-by-hop: next header TCP, length 0 (8 bytes), jumbo option (type 0xc2, 4 bytes).
        ip.extend_from_slice(&[6, 0, 0xc2, 4, 0x00, 0x02, 0x00, 0x00]);
        ip.extend_from_slice(&[
            0x1f, 0x90, 0xa0, 0x28, 0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x10, 0xff, 0xff, 0, 0, 0, 0,
        ]);
        let seg = Segment::decode_captured(&ip, 131_144).unwrap();
        assert_eq!(seg.ip_header_len, 48);
        assert_eq!(seg.payload_len, 131_144 - 48 - 20);
        assert_eq!(seg.tcp.sport, 8080);
        assert!(seg.tcp.has(flags::ACK));
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let syn = parse_hex(SYN).unwrap();
        for cut in 0..syn.len() {
            let _ = TcpHeader::decode(&syn[..cut]);
            let _ = Segment::decode(&syn[..cut]);
            let _ = dissect(&syn[..cut], Layer::Auto);
        }
        assert!(matches!(
            TcpHeader::decode(&syn[..10]),
            Err(PacketError::Truncated { .. })
        ));
        assert!(matches!(
            TcpHeader::decode(&syn[..24]),
            Err(PacketError::Truncated { .. })
        ));
        let mut bad = syn.clone();
        bad[12] = 0x30; // data offset 3
        assert_eq!(
            TcpHeader::decode(&bad),
            Err(PacketError::Malformed("TCP data offset below 5"))
        );
        let mut bad = syn.clone();
        bad[21] = 40; // MSS option claiming 40 bytes
        assert!(TcpHeader::decode(&bad).is_err());
        let mut bad = syn;
        bad[21] = 3; // MSS option of the wrong size
        assert!(TcpHeader::decode(&bad).is_err());
        assert!(parse_hex("abc").is_err());
        assert!(parse_hex("zz").is_err());
        // Every byte value in every position of a short buffer: no panic.
        for b0 in 0..=255u8 {
            let _ = Segment::decode(&[
                b0, 0x45, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ]);
        }
    }
}
