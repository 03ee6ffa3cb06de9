//! Kernel functions (and their stand-ins) that produce `kernel` and `state` records. Adding one
//! means a variant here, its programs in `tracer-ebpf/src/kernel/`, and a row in the loader's
//! hook table (`tracer/src/hooks/table.rs`).

/// A kernel TCP function the tracer watches.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelFn {
    /// `tcp_connect`: the SYN is about to be built.
    TcpConnect = 1,
    /// `inet_csk_accept`: the connection a listener hands to `accept`.
    InetCskAccept = 2,
    /// `tcp_sendmsg`: bytes copied into the send queue.
    TcpSendmsg = 3,
    /// `tcp_recvmsg`: bytes copied out of the receive queue.
    TcpRecvmsg = 4,
    /// `tcp_set_state`: a state transition (a `state` record).
    TcpSetState = 5,
    /// `tcp_close`: the application closed the socket.
    TcpClose = 6,
    /// A RST arrived (`tcp_reset`).
    TcpReceiveReset = 7,
    /// A RST was sent (`tcp_send_active_reset`/`tcp_v4_send_reset`).
    TcpSendReset = 8,
    /// The socket's memory is released (`tcp_v4_destroy_sock`).
    TcpDestroySock = 9,
    /// A segment is retransmitted (`tcp_retransmit_skb`): a `congestion` record.
    TcpRetransmitSkb = 10,
    /// An ACK (or any segment) arrived on an established connection (`tcp_rcv_established`):
    /// a rate-limited `congestion` sample of cwnd, ssthresh, RTT and windows.
    TcpRcvEstablished = 11,
    /// The congestion state changes (`tcp_set_ca_state`): a `congestion` record.
    TcpSetCaState = 12,
    /// A listener sent its SYN-ACK again: the handshake's last ACK did not come
    /// (`tcp_rtx_synack`). A `kernel` record with the connection's 4-tuple: no socket exists
    /// for it yet, only the listener's request.
    TcpRetransmitSynack = 13,
    /// The receive buffer was resized (`tcp_rcv_space_adjust`, run by `tcp_recvmsg`: receive
    /// autotuning). A `congestion` record with the size before and after, noticed by the
    /// `tcp_recvmsg` hook when the read that resized it returns.
    TcpRcvSpaceAdjust = 14,
}

impl KernelFn {
    /// Every function, in declaration order.
    pub const ALL: [KernelFn; 14] = [
        Self::TcpConnect,
        Self::InetCskAccept,
        Self::TcpSendmsg,
        Self::TcpRecvmsg,
        Self::TcpSetState,
        Self::TcpClose,
        Self::TcpReceiveReset,
        Self::TcpSendReset,
        Self::TcpDestroySock,
        Self::TcpRetransmitSkb,
        Self::TcpRcvEstablished,
        Self::TcpSetCaState,
        Self::TcpRetransmitSynack,
        Self::TcpRcvSpaceAdjust,
    ];

    /// Decodes the raw byte written by the eBPF side.
    pub fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.get((v as usize).wrapping_sub(1)).copied()
    }

    /// The kernel function's name, as users know it.
    pub fn name(self) -> &'static str {
        match self {
            Self::TcpConnect => "tcp_connect",
            Self::InetCskAccept => "inet_csk_accept",
            Self::TcpSendmsg => "tcp_sendmsg",
            Self::TcpRecvmsg => "tcp_recvmsg",
            Self::TcpSetState => "tcp_set_state",
            Self::TcpClose => "tcp_close",
            Self::TcpReceiveReset => "tcp_reset",
            Self::TcpSendReset => "tcp_send_reset",
            Self::TcpDestroySock => "tcp_destroy_sock",
            Self::TcpRetransmitSkb => "tcp_retransmit_skb",
            Self::TcpRcvEstablished => "tcp_rcv_established",
            Self::TcpSetCaState => "tcp_set_ca_state",
            Self::TcpRetransmitSynack => "tcp_retransmit_synack",
            Self::TcpRcvSpaceAdjust => "tcp_rcv_space_adjust",
        }
    }

    /// What reaching the function means, in a few words, for the timeline.
    pub fn meaning(self) -> &'static str {
        match self {
            Self::TcpConnect => "the SYN is being built",
            Self::InetCskAccept => "a connection is handed to accept",
            Self::TcpSendmsg => "bytes copied into the send queue",
            Self::TcpRecvmsg => "bytes copied out of the receive queue",
            Self::TcpSetState => "state change",
            Self::TcpClose => "the application closed the socket",
            Self::TcpReceiveReset => "RST received",
            Self::TcpSendReset => "RST sent",
            Self::TcpDestroySock => "socket freed",
            Self::TcpRetransmitSkb => "segment retransmitted",
            Self::TcpRcvEstablished => "ACK processed",
            Self::TcpSetCaState => "congestion state change",
            Self::TcpRetransmitSynack => "SYN-ACK retransmitted",
            Self::TcpRcvSpaceAdjust => "receive buffer resized",
        }
    }
}
