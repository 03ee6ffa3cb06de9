//! Segments seen from each traced end: relative sequence numbers, scaled windows, and the
//! rows the ladder draws.

use super::ConnId;

/// One segment as the ladder draws it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LadderRow {
    /// When it passed the hook.
    pub ts_ns: u64,
    /// Sent by this end.
    pub out: bool,
    /// The TCP flags (see [`LadderRow::flags_text`]); text only when a ladder is drawn.
    pub flags: u8,
    /// Relative sequence number.
    pub rel_seq: u32,
    /// Relative acknowledgement number, when ACK is set.
    pub rel_ack: Option<u32>,
    /// Payload length.
    pub len: usize,
}

impl LadderRow {
    /// The flags as tcpdump prints them (`S.`, `P.`...).
    pub fn flags_text(&self) -> String {
        crate::decode::tcpip::tcpdump_flags(self.flags)
    }
}

/// A segment seen from one end of a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentView {
    /// The connection.
    pub conn: ConnId,
    /// Sent by that end (`out`) or received (`in`).
    pub out: bool,
    /// Sequence number relative to the sender's initial one.
    pub rel_seq: u32,
    /// Acknowledgement number relative to the receiver's initial one, when ACK is set.
    pub rel_ack: Option<u32>,
    /// The window in bytes: scaled once both ends announced window scaling.
    pub window: u32,
    /// A duplicate ACK (RFC 5681: no data, no SYN/FIN, the same ack and window as its
    /// sender's previous acknowledgment): which one in a row, from 1; 0 when it is not one. Three in a row is the classic
    /// signal of a lost segment.
    pub dup_ack: u32,
    /// The sender advertises a zero window: the receiver's buffer is full, and the other end
    /// must stop sending.
    pub zero_window: bool,
    /// The sender advertises a window again after a zero one: the other end may send.
    pub window_opened: bool,
    /// The sender's data reaches the right edge of the window the receiver last advertised
    /// (Wireshark's "window full"): it may send no more until the receiver reads.
    pub window_full: bool,
}

/// Segments kept per connection for the ladder.
pub const LADDER_ROWS: usize = 400;
