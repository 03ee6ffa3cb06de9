//! What is known about one connection: its owner, ends, role, states, bytes and outcome.

use tracer_common::tcp_state;

use super::segments::{LADDER_ROWS, LadderRow, SegmentView};
use crate::decode::Endpoint;
use crate::decode::tcpip::{Segment, flags};

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
    /// Owner process id (0 while unknown).
    pub pid: u32,
    /// Owner command name.
    pub comm: String,
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
    /// When the handshake started (SYN_SENT or SYN_RECV entered).
    pub handshake_start_ns: Option<u64>,
    /// Handshake duration, once ESTABLISHED.
    pub handshake_ns: Option<u64>,
    /// A RST arrived.
    pub reset_received: bool,
    /// A RST was sent.
    pub reset_sent: bool,
    /// Retransmitted segments.
    pub retransmits: u32,
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
    /// State changes with their times, for the ladder.
    pub state_log: Vec<(u64, u8)>,
    /// Segments, for the ladder (kept only when asked for, bounded).
    pub ladder: Vec<LadderRow>,
    pub(super) closed: bool,
    pub(super) retiring: bool,
    pub(super) sk: Option<u64>,
    pub(super) fds: u32,
}

impl Conn {
    pub(super) fn new(id: ConnId, first_ns: u64) -> Self {
        Self {
            id,
            pid: 0,
            comm: String::new(),
            family: 0,
            local: None,
            remote: None,
            role: Role::Unknown,
            first_ns,
            last_ns: first_ns,
            states: Vec::new(),
            bytes_sent: 0,
            bytes_received: 0,
            handshake_start_ns: None,
            handshake_ns: None,
            reset_received: false,
            reset_sent: false,
            retransmits: 0,
            congestion: Default::default(),
            connect_error: None,
            events: 0,
            packets: 0,
            isn: [None, None],
            wscale: [None, None],
            state_log: Vec::new(),
            ladder: Vec::new(),
            closed: false,
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

    /// How the connection ended, or `None` while it is open.
    pub fn outcome(&self) -> Option<&'static str> {
        if !self.closed {
            return None;
        }
        let last = self.states.last().copied();
        Some(if self.connect_error == Some(-libc::ECONNREFUSED as i64) {
            "refused"
        } else if self.reset_received {
            "reset by peer"
        } else if self.reset_sent {
            "reset"
        } else if last == Some(tcp_state::TIME_WAIT) {
            "closed (TIME_WAIT)"
        } else if self.role == Role::Listener {
            "listener closed"
        } else {
            "closed"
        })
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
        let view = SegmentView {
            conn: self.id,
            out,
            rel_seq: tcp.seq.wrapping_sub(base),
            rel_ack,
            window,
        };
        if keep && self.ladder.len() < LADDER_ROWS {
            self.ladder.push(LadderRow {
                ts_ns: ts,
                out,
                flags: tcp.tcpdump_flags(),
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
