//! What is known about one connection: its owner, ends, role, states, bytes and outcome.

use tracer_common::tcp_state;

use super::segments::{LADDER_ROWS, LadderRow, SegmentView};
use crate::decode::tcpip::{Segment, flags};
use crate::decode::{Comm, Endpoint};

/// A connection's id, as shown to users (`conn #3`).
pub type ConnId = u64;

/// What a socket is used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Not known yet (a socket with no connect/listen/accept seen).
    Unknown,
    /// The active opener (connect).
    Client,
    /// A connection accepted by a listener.
    Server,
    /// A listening socket.
    Listener,
}

impl Role {
    /// Lower-case name for output.
    pub fn name(self) -> &'static str {
        match self {
            Self::Unknown => "socket",
            Self::Client => "client",
            Self::Server => "server",
            Self::Listener => "listener",
        }
    }
}

/// Everything known about one connection.
#[derive(Clone, Debug)]
pub struct Conn {
    /// Its id.
    pub id: ConnId,
    /// Owner process id (0 while unknown): the process whose syscall first named the
    /// connection (it connected or accepted it), else the socket's owner as the kernel side
    /// recorded it (for an accepted socket, its listener's: a guess a prefork worker's
    /// `accept` corrects).
    pub pid: u32,
    /// Whether `pid` comes from a syscall: then it stays.
    pub owner_by_syscall: bool,
    /// Owner command name.
    pub comm: Comm,
    /// The owner's network namespace and cgroup where not the tracer's; `None` until looked
    /// up (by the pipeline, from `/proc`, once the owner is known).
    pub place: Option<crate::system::place::Place>,
    /// `AF_INET`/`AF_INET6`, 0 while unknown.
    pub family: u16,
    /// Local end.
    pub local: Option<Endpoint>,
    /// Remote end.
    pub remote: Option<Endpoint>,
    /// What the socket is for.
    pub role: Role,
    /// First event's timestamp.
    pub first_ns: u64,
    /// Last event's end.
    pub last_ns: u64,
    /// Every state the socket went through, in order, starting with the first `from`.
    pub states: Vec<u8>,
    /// Bytes the application sent (syscall return values).
    pub bytes_sent: u64,
    /// Bytes the application received.
    pub bytes_received: u64,
    /// Bytes counted from the kernel layer as no syscall's, sent and received: the thread
    /// that moved them and how many since. A late syscall record of that thread (its enter
    /// was skipped, so its kernel functions saw no syscall) carried them: not counted twice.
    pub loose: [(u32, u64); 2],
    /// Bytes of late syscall records counted in full (no loose bytes of their thread here),
    /// by thread, sent and received: their kernel functions' may be in a connection this one
    /// is later joined with, where they were loose.
    pub late: [(u32, u64); 2],
    /// When the handshake started (SYN_SENT or SYN_RECV entered).
    pub handshake_start_ns: Option<u64>,
    /// Handshake duration, once ESTABLISHED.
    pub handshake_ns: Option<u64>,
    /// A RST arrived.
    pub reset_received: bool,
    /// A RST was sent.
    pub reset_sent: bool,
    /// What the congestion layer saw: retransmissions by kind, RTT, cwnd, recovery.
    pub congestion: super::congestion::CongestionStats,
    /// The last `connect` error, as a negative errno.
    pub connect_error: Option<i64>,
    /// Events seen.
    pub events: u64,
    /// Segments seen.
    pub packets: u64,
    /// Initial sequence numbers of this end and of the peer (from the SYNs, else the first
    /// segment seen), the base of relative numbers.
    pub isn: [Option<u32>; 2],
    /// Window-scale shifts announced in the SYNs by this end and by the peer.
    pub wscale: [Option<u8>; 2],
    /// Whether the SYN of this end and of the peer was seen (their window scaling is known).
    saw_syn: [bool; 2],
    /// The right edge of the window this end and the peer last advertised (ack + window in
    /// bytes): a segment reaching the peer's fills its window.
    right_edge: [Option<u32>; 2],
    /// The last pure ACK of this end and of the peer (ack, raw window), and how many times in a
    /// row it was repeated.
    last_ack: [Option<(u32, u16, u32)>; 2],
    /// Whether the last window this end and the peer advertised was zero.
    window_closed: [bool; 2],
    /// State changes with their times, for the ladder.
    pub state_log: Vec<(u64, u8)>,
    /// Segments, for the ladder (kept only when asked for, bounded).
    pub ladder: Vec<LadderRow>,
    pub(super) closed: bool,
    /// Ended without its end being seen (the records that said so were dropped): a new
    /// connection began on its socket.
    pub(super) end_lost: bool,
    pub(super) retiring: bool,
    pub(super) sk: Option<u64>,
    pub(super) fds: u32,
}

impl Conn {
    pub(super) fn new(id: ConnId, first_ns: u64) -> Self {
        Self {
            id,
            pid: 0,
            owner_by_syscall: false,
            comm: Comm::default(),
            place: None,
            family: 0,
            local: None,
            remote: None,
            role: Role::Unknown,
            first_ns,
            last_ns: first_ns,
            states: Vec::new(),
            bytes_sent: 0,
            bytes_received: 0,
            loose: [(0, 0); 2],
            late: [(0, 0); 2],
            handshake_start_ns: None,
            handshake_ns: None,
            reset_received: false,
            reset_sent: false,
            congestion: Default::default(),
            connect_error: None,
            events: 0,
            packets: 0,
            isn: [None, None],
            wscale: [None, None],
            saw_syn: [false, false],
            right_edge: [None, None],
            last_ack: [None, None],
            window_closed: [false, false],
            state_log: Vec::new(),
            ladder: Vec::new(),
            closed: false,
            end_lost: false,
            retiring: false,
            sk: None,
            fds: 0,
        }
    }

    /// A connection with only an id and a role, for other modules' tests.
    #[cfg(test)]
    pub fn new_for_test(id: ConnId, role: Role) -> Self {
        Self {
            role,
            ..Self::new(id, 0)
        }
    }

    /// Segments retransmitted (sent again, every kind).
    pub fn retransmits(&self) -> u32 {
        self.congestion.total_retransmits()
    }

    /// A server's end known only from its listener's resent SYN-ACKs: the handshake's last
    /// ACK has not come, and no socket exists for it.
    pub fn half_open(&self) -> bool {
        self.role == Role::Server && self.sk.is_none() && self.states.is_empty() && self.fds == 0
    }

    /// How the connection ended, or `None` while it is open.
    pub fn outcome(&self) -> Option<&'static str> {
        if !self.closed {
            return None;
        }
        let last = self.states.last().copied();
        Some(if self.end_lost {
            "ended unseen (records lost)"
        } else if self.connect_error == Some(-libc::ECONNREFUSED as i64) {
            "refused"
        } else if self.reset_received {
            "reset by peer"
        } else if self.reset_sent {
            "reset"
        } else if last == Some(tcp_state::TIME_WAIT) {
            "closed (TIME_WAIT)"
        } else if self.half_open() {
            "handshake never completed"
        } else if self.role == Role::Listener {
            "listener closed"
        } else {
            "closed"
        })
    }

    /// The handshake began at `ts_ns`, or earlier if already known so.
    pub(super) fn handshake_from(&mut self, ts_ns: u64) {
        self.handshake_start_ns = Some(self.handshake_start_ns.map_or(ts_ns, |s| s.min(ts_ns)));
    }

    pub(super) fn see_segment(
        &mut self,
        seg: &Segment,
        out: bool,
        ts: u64,
        keep: bool,
    ) -> SegmentView {
        let tcp = &seg.tcp;
        let (me, peer) = if out { (0, 1) } else { (1, 0) };
        self.packets += 1;
        self.last_ns = self.last_ns.max(ts);
        if tcp.has(flags::SYN) {
            self.isn[me] = Some(tcp.seq);
            self.wscale[me] = tcp.window_scale();
            self.saw_syn[me] = true;
        }
        // Mid-stream: number from the first segment seen, as if its SYN had come just before.
        let base = *self.isn[me].get_or_insert(tcp.seq.wrapping_sub(1));
        let rel_ack = tcp
            .has(flags::ACK)
            .then(|| self.isn[peer].map(|isn| tcp.ack.wrapping_sub(isn)))
            .flatten();
        let window = match (self.wscale[me], self.wscale[peer]) {
            (Some(shift), Some(_)) if !tcp.has(flags::SYN) => {
                u32::from(tcp.window) << shift.min(14)
            }
            _ => u32::from(tcp.window),
        };
        let pure_ack = tcp.has(flags::ACK)
            && seg.payload_len == 0
            && !tcp.has(flags::SYN)
            && !tcp.has(flags::FIN)
            && !tcp.has(flags::RST);
        let dup_ack = if pure_ack {
            let repeats = match self.last_ack[me] {
                Some((ack, win, n)) if ack == tcp.ack && win == tcp.window => n + 1,
                _ => 0,
            };
            self.last_ack[me] = Some((tcp.ack, tcp.window, repeats));
            repeats
        } else {
            if tcp.has(flags::ACK) {
                self.last_ack[me] = Some((tcp.ack, tcp.window, 0));
            }
            0
        };
        // Wireshark's "window full": data (no SYN, FIN or RST) ending exactly at the right
        // edge of the window the peer last advertised, its scaling known from its SYN.
        let window_full = seg.payload_len > 0
            && !tcp.has(flags::SYN)
            && !tcp.has(flags::FIN)
            && !tcp.has(flags::RST)
            && self.saw_syn[peer]
            && self.right_edge[peer] == Some(tcp.seq.wrapping_add(seg.payload_len as u32));
        if tcp.has(flags::ACK) {
            self.right_edge[me] = Some(tcp.ack.wrapping_add(window));
        }
        let zero_window = tcp.window == 0 && !tcp.has(flags::RST) && !tcp.has(flags::SYN);
        let window_opened = !tcp.has(flags::RST) && self.window_closed[me] && tcp.window > 0;
        if !tcp.has(flags::RST) {
            self.window_closed[me] = zero_window;
        }
        let view = SegmentView {
            conn: self.id,
            out,
            rel_seq: tcp.seq.wrapping_sub(base),
            rel_ack,
            window,
            dup_ack,
            zero_window,
            window_opened,
            window_full,
        };
        if keep && self.ladder.len() < LADDER_ROWS {
            self.ladder.push(LadderRow {
                ts_ns: ts,
                out,
                flags: tcp.flags,
                rel_seq: view.rel_seq,
                rel_ack,
                len: seg.payload_len,
            });
        }
        view
    }

    /// This end's state at `ts`, if known. Before the first change seen, only a state every
    /// socket starts in (CLOSE, or LISTEN for an accepted child) is assumed; a socket first
    /// seen later in its life (open before the tracer) is in an unknown state there.
    pub fn state_at(&self, ts: u64) -> Option<u8> {
        let mut state = self
            .state_log
            .first()
            .map(|&(_, s)| s)
            .filter(|&s| s == tcp_state::CLOSE || s == tcp_state::LISTEN);
        for &(t, s) in &self.state_log {
            if t <= ts {
                state = Some(s);
            }
        }
        state
    }

    /// Whether the socket reached CLOSE or TIME_WAIT.
    pub fn is_closed(&self) -> bool {
        self.closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::tcpip::parse_hex;

    /// An IPv4 segment 10.0.0.2:8080 -> 10.0.0.1:41000 with `flags`, ack 1000, `window` and
    /// `payload` bytes.
    fn segment(flags: u8, window: u16, payload: usize) -> Segment {
        segment_at(flags, 0x64, 0x3e8, window, payload)
    }

    fn segment_at(flags: u8, seq: u32, ack: u32, window: u16, payload: usize) -> Segment {
        let total = 40 + payload;
        let hex = format!(
            "4500{total:04x} 00004000 40060000 0a000002 0a000001 \
             1f90a028 {seq:08x} {ack:08x} 50{flags:02x}{window:04x} 00000000{}",
            "00".repeat(payload)
        );
        Segment::decode(&parse_hex(&hex).unwrap()).unwrap()
    }

    #[test]
    fn data_reaching_the_peers_advertised_edge_fills_its_window() {
        let mut conn = Conn::new_for_test(1, Role::Client);
        // Unknown scaling (no SYN of the peer seen): never flagged, as Wireshark does.
        conn.see_segment(&segment_at(0x10, 5000, 1000, 100, 0), false, 1, false);
        let out = |seq, len| segment_at(0x18, seq, 5000, 500, len);
        assert!(
            !conn
                .see_segment(&out(1000, 100), true, 2, false)
                .window_full
        );
        // The peer's SYN-ACK, then its ACK advertising 100 bytes from 1000.
        conn.see_segment(&segment_at(0x12, 4999, 1000, 100, 0), false, 3, false);
        conn.see_segment(&segment_at(0x10, 5000, 1000, 100, 0), false, 4, false);
        assert!(!conn.see_segment(&out(1000, 50), true, 5, false).window_full);
        assert!(conn.see_segment(&out(1050, 50), true, 6, false).window_full);
        // A FIN never fills a window; the peer's own data is judged against our edge.
        assert!(
            !conn
                .see_segment(&segment_at(0x19, 1050, 5000, 500, 50), true, 7, false)
                .window_full
        );
        assert!(
            !conn
                .see_segment(&segment_at(0x18, 5000, 1100, 100, 10), false, 8, false)
                .window_full
        );
    }

    #[test]
    fn repeated_pure_acks_are_counted_and_a_zero_window_is_flagged() {
        let mut conn = Conn::new_for_test(1, Role::Client);
        let ack = segment(0x10, 500, 0);
        let seen: Vec<u32> = (0..4)
            .map(|i| conn.see_segment(&ack, false, i, false).dup_ack)
            .collect();
        assert_eq!(seen, [0, 1, 2, 3]);
        // Data is no duplicate, and starts a new run (RFC 5681: an ACK is a duplicate of the
        // last acknowledgment received, data-carrying or not); a new window ends a run.
        assert_eq!(
            conn.see_segment(&segment(0x18, 500, 10), false, 5, false)
                .dup_ack,
            0
        );
        assert_eq!(conn.see_segment(&ack, false, 6, false).dup_ack, 1);
        assert_eq!(
            conn.see_segment(&segment(0x10, 400, 0), false, 7, false)
                .dup_ack,
            0
        );
        // This end's own ACKs are counted apart from the peer's.
        assert_eq!(conn.see_segment(&ack, true, 8, false).dup_ack, 0);
        let full = conn.see_segment(&segment(0x10, 0, 0), false, 9, false);
        assert!(full.zero_window);
        assert!(!conn.see_segment(&ack, false, 10, false).zero_window);
    }
}
