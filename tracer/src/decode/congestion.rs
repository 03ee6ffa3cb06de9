//! Congestion records decoded: TCP's numbers at a retransmission, a congestion-state change or
//! an ACK, and why a segment was sent again.

use std::fmt;

use tracer_common::{KernelFn, ca_state, record::CongestionRecord, tcp_state};

/// Why a segment was sent again, told by the state the connection was in when it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RetransmitKind {
    /// The handshake's SYN, unanswered (its timer fired).
    Syn,
    /// A listener's SYN-ACK, its handshake's last ACK not come (its timer fired, or the
    /// client's SYN came again).
    SynAck,
    /// The retransmission timer fired: everything in flight is presumed lost (`Loss` state).
    Timeout,
    /// Duplicate ACKs or SACKs showed a hole (`Recovery` state).
    Fast,
    /// The tail-loss probe: the last segment sent again when no ACK came for ~2 RTT, to
    /// provoke the ACK that starts fast recovery without waiting for the timeout.
    LossProbe,
}

impl RetransmitKind {
    /// Every kind, in the order the summary lists them.
    pub const ALL: [RetransmitKind; 5] = [
        Self::Syn,
        Self::SynAck,
        Self::Timeout,
        Self::Fast,
        Self::LossProbe,
    ];

    /// The kind of a retransmission made in TCP state `sk_state` and congestion state
    /// `ca_state`. A tail-loss probe is sent only in the Open or CWR states (the kernel's
    /// `tcp_schedule_loss_probe`); fast retransmits happen in Recovery; the timeout moves the
    /// connection to Loss before it resends.
    pub fn classify(sk_state: u8, ca: u8) -> Self {
        match (sk_state, ca) {
            (tcp_state::SYN_SENT, _) => Self::Syn,
            (_, ca_state::LOSS) => Self::Timeout,
            (_, ca_state::RECOVERY) => Self::Fast,
            _ => Self::LossProbe,
        }
    }

    /// The name in JSON.
    pub fn key(self) -> &'static str {
        match self {
            Self::Syn => "syn",
            Self::SynAck => "syn_ack",
            Self::Timeout => "timeout",
            Self::Fast => "fast",
            Self::LossProbe => "loss_probe",
        }
    }

    /// The name in the timeline and summary.
    pub fn name(self) -> &'static str {
        match self {
            Self::Syn => "SYN retransmit",
            Self::SynAck => "SYN-ACK retransmit",
            Self::Timeout => "timeout retransmit (RTO)",
            Self::Fast => "fast retransmit",
            Self::LossProbe => "tail-loss probe",
        }
    }
}

/// TCP's numbers for a connection at one moment, and what moment it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Congestion {
    /// Which hook: `tcp_retransmit_skb`, `tcp_set_ca_state` or `tcp_rcv_established`.
    pub func: KernelFn,
    /// A retransmission: its kind and the segment resent (`seq`, `end_seq`, absolute).
    pub retransmit: Option<(RetransmitKind, u32, u32)>,
    /// A retransmission attempt that failed, and why (negative errno; `-EBUSY`: the original
    /// was still queued on this host). Not counted as a retransmission: nothing was sent.
    pub err: Option<i32>,
    /// Congestion state (for `tcp_set_ca_state`: the one entered).
    pub ca_state: u8,
    /// TCP state.
    pub sk_state: u8,
    /// Congestion window, segments.
    pub cwnd: u32,
    /// Slow-start threshold, segments; `None` while unset (infinite).
    pub ssthresh: Option<u32>,
    /// Smoothed RTT, microseconds; `None` before the first sample.
    pub srtt_us: Option<u32>,
    /// RTT variation, microseconds.
    pub rttvar_us: u32,
    /// Retransmission timeout, in jiffies (see [`crate::system::hz`]).
    pub rto_jiffies: u32,
    /// Segments in flight.
    pub packets_out: u32,
    /// Retransmitted segments in flight.
    pub retrans_out: u32,
    /// Segments retransmitted over the connection's life.
    pub total_retrans: u32,
    /// Oldest unacknowledged and next sequence numbers (absolute).
    pub snd_una: u32,
    /// Next sequence number to send.
    pub snd_nxt: u32,
    /// The peer's window.
    pub snd_wnd: u32,
    /// The window this end advertises.
    pub rcv_wnd: u32,
    /// Current MSS.
    pub mss: u32,
    /// Congestion-control algorithm.
    pub algorithm: Algorithm,
    /// The receive buffer's size, bytes (`sk_rcvbuf`, `ss -m`'s `rb`).
    pub rcvbuf: u32,
    /// `tcp_rcv_space_adjust`: the receive buffer's size before it was resized.
    pub rcvbuf_before: Option<u32>,
    /// What the application read in the last RTT, bytes (`ss -i`'s `rcv_space`).
    pub rcv_space: u32,
    /// The last delivery-rate sample, bytes per second, as `ss -i` computes its
    /// `delivery_rate` (segments delivered × MSS ÷ interval); `None` before the first.
    pub delivery_rate: Option<u64>,
}

/// A congestion-control algorithm's name (`cubic`, `bbr`...), kept inline: every congestion
/// event carries one.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Algorithm {
    len: u8,
    bytes: [u8; 16],
}

impl Algorithm {
    /// The name in the kernel's `icsk_ca_ops->name` bytes (up to its NUL), keeping only the
    /// characters a module name has (ASCII letters, digits, `_`).
    pub fn from_kernel(raw: &[u8]) -> Self {
        let mut name = Self::default();
        for &b in raw.iter().take(16).take_while(|&&b| b != 0) {
            if b.is_ascii_alphanumeric() || b == b'_' {
                name.bytes[usize::from(name.len)] = b;
                name.len += 1;
            }
        }
        name
    }
}

impl std::ops::Deref for Algorithm {
    type Target = str;

    fn deref(&self) -> &str {
        // Only ASCII is ever copied in.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl fmt::Debug for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl PartialEq<&str> for Algorithm {
    fn eq(&self, other: &&str) -> bool {
        &**self == *other
    }
}

/// Bytes per second from a delivery-rate sample: `delivered` segments of `mss` bytes in
/// `interval_us`, computed as the kernel does for `tcp_info` (`tcp_compute_delivery_rate`).
pub fn delivery_rate(delivered: u32, mss: u32, interval_us: u32) -> Option<u64> {
    (delivered > 0 && interval_us > 0).then(|| {
        let rate = u128::from(delivered) * u128::from(mss) * 1_000_000 / u128::from(interval_us);
        u64::try_from(rate).unwrap_or(u64::MAX)
    })
}

/// `snd_ssthresh` before the first reduction (`TCP_INFINITE_SSTHRESH`).
const INFINITE_SSTHRESH: u32 = 0x7fff_ffff;

impl Congestion {
    /// The typed form of a raw record for `func`.
    pub fn from_record(r: &CongestionRecord, func: KernelFn) -> Self {
        let retransmit = (func == KernelFn::TcpRetransmitSkb).then(|| {
            (
                RetransmitKind::classify(r.sk_state, r.ca_state),
                r.seq,
                r.end_seq,
            )
        });
        let (snd_una, snd_nxt) = if retransmit.is_some() {
            (0, 0)
        } else {
            (r.seq, r.end_seq)
        };
        Self {
            func,
            retransmit,
            err: (r.err < 0).then_some(r.err),
            ca_state: r.ca_state,
            sk_state: r.sk_state,
            cwnd: r.cwnd,
            ssthresh: (r.ssthresh < INFINITE_SSTHRESH).then_some(r.ssthresh),
            srtt_us: (r.srtt_us8 > 0).then_some(r.srtt_us8 >> 3),
            rttvar_us: r.mdev_us4 >> 2,
            rto_jiffies: r.rto_jiffies,
            packets_out: r.packets_out,
            retrans_out: r.retrans_out,
            total_retrans: r.total_retrans,
            snd_una,
            snd_nxt,
            snd_wnd: r.snd_wnd,
            rcv_wnd: r.rcv_wnd,
            mss: r.mss,
            algorithm: Algorithm::from_kernel(&r.ca_name),
            rcvbuf: r.rcvbuf,
            rcvbuf_before: (func == KernelFn::TcpRcvSpaceAdjust).then_some(r.rcvbuf_before),
            rcv_space: r.rcv_space,
            delivery_rate: delivery_rate(r.rate_delivered, r.mss, r.rate_interval_us),
        }
    }

    /// A listener's SYN-ACK with initial sequence number `isn` sent again. Only the listener's
    /// request exists then, not yet a socket: none of a connection's numbers (see
    /// [`Congestion::has_numbers`]).
    pub fn syn_ack(isn: u32) -> Self {
        Self {
            func: KernelFn::TcpRetransmitSynack,
            retransmit: Some((RetransmitKind::SynAck, isn, isn.wrapping_add(1))),
            err: None,
            ca_state: ca_state::OPEN,
            sk_state: tcp_state::SYN_RECV,
            cwnd: 0,
            ssthresh: None,
            srtt_us: None,
            rttvar_us: 0,
            rto_jiffies: 0,
            packets_out: 0,
            retrans_out: 0,
            total_retrans: 0,
            snd_una: 0,
            snd_nxt: 0,
            snd_wnd: 0,
            rcv_wnd: 0,
            mss: 0,
            algorithm: Algorithm::default(),
            rcvbuf: 0,
            rcvbuf_before: None,
            rcv_space: 0,
            delivery_rate: None,
        }
    }

    /// Whether the record carries a socket's numbers (cwnd, RTT, windows...): all but a
    /// SYN-ACK retransmission.
    pub fn has_numbers(&self) -> bool {
        self.func != KernelFn::TcpRetransmitSynack
    }

    /// A segment was sent again (not a failed attempt): its kind.
    pub fn resent(&self) -> Option<RetransmitKind> {
        self.retransmit
            .filter(|_| self.err.is_none())
            .map(|(kind, _, _)| kind)
    }

    /// Bytes of the resent segment; none for a SYN or SYN-ACK, whose one sequence number is
    /// no byte (as the kernel's `bytes_retrans` counts).
    pub fn retransmitted_bytes(&self) -> u32 {
        match self.retransmit {
            Some((RetransmitKind::Syn | RetransmitKind::SynAck, _, _)) | None => 0,
            Some((_, seq, end)) => end.wrapping_sub(seq),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retransmissions_are_named_by_the_state_they_happen_in() {
        use RetransmitKind::*;
        let est = tcp_state::ESTABLISHED;
        assert_eq!(
            RetransmitKind::classify(tcp_state::SYN_SENT, ca_state::LOSS),
            Syn
        );
        assert_eq!(RetransmitKind::classify(est, ca_state::LOSS), Timeout);
        assert_eq!(RetransmitKind::classify(est, ca_state::RECOVERY), Fast);
        assert_eq!(RetransmitKind::classify(est, ca_state::OPEN), LossProbe);
        assert_eq!(RetransmitKind::classify(est, ca_state::CWR), LossProbe);
    }

    #[test]
    fn a_record_decodes_to_its_numbers() {
        let mut r = CongestionRecord::new(
            KernelFn::TcpRetransmitSkb,
            tracer_common::Via::RawTracepoint,
        );
        r.seq = 1000;
        r.end_seq = 2448;
        r.sk_state = tcp_state::ESTABLISHED;
        r.ca_state = ca_state::RECOVERY;
        r.ssthresh = INFINITE_SSTHRESH;
        r.srtt_us8 = 800;
        r.mdev_us4 = 400;
        r.ca_name[..5].copy_from_slice(b"cubic");
        let c = Congestion::from_record(&r, KernelFn::TcpRetransmitSkb);
        assert_eq!(c.retransmit, Some((RetransmitKind::Fast, 1000, 2448)));
        assert_eq!(c.retransmitted_bytes(), 1448);
        assert_eq!((c.ssthresh, c.srtt_us, c.rttvar_us), (None, Some(100), 100));
        assert_eq!(c.algorithm, "cubic");
        assert_eq!((c.rcvbuf_before, c.delivery_rate), (None, None));
    }

    #[test]
    fn a_resized_receive_buffer_says_its_size_before_and_a_rate_is_bytes_per_second() {
        let mut r = CongestionRecord::new(KernelFn::TcpRcvSpaceAdjust, tracer_common::Via::Fexit);
        r.rcvbuf_before = 131_072;
        r.rcvbuf = 262_144;
        r.mss = 1448;
        r.rate_delivered = 10;
        r.rate_interval_us = 1000;
        let c = Congestion::from_record(&r, KernelFn::TcpRcvSpaceAdjust);
        assert_eq!((c.rcvbuf_before, c.rcvbuf), (Some(131_072), 262_144));
        // 10 segments of 1448 bytes in a millisecond.
        assert_eq!(c.delivery_rate, Some(14_480_000));
        assert_eq!(delivery_rate(10, 1448, 0), None);
        assert_eq!(delivery_rate(u32::MAX, u32::MAX, 1), Some(u64::MAX));
    }
}
