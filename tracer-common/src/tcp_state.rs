//! TCP states as the kernel numbers them (`include/net/tcp_states.h`).

/// `TCP_ESTABLISHED`
pub const ESTABLISHED: u8 = 1;
/// `TCP_SYN_SENT`
pub const SYN_SENT: u8 = 2;
/// `TCP_SYN_RECV`
pub const SYN_RECV: u8 = 3;
/// `TCP_FIN_WAIT1`
pub const FIN_WAIT1: u8 = 4;
/// `TCP_FIN_WAIT2`
pub const FIN_WAIT2: u8 = 5;
/// `TCP_TIME_WAIT`
pub const TIME_WAIT: u8 = 6;
/// `TCP_CLOSE`
pub const CLOSE: u8 = 7;
/// `TCP_CLOSE_WAIT`
pub const CLOSE_WAIT: u8 = 8;
/// `TCP_LAST_ACK`
pub const LAST_ACK: u8 = 9;
/// `TCP_LISTEN`
pub const LISTEN: u8 = 10;
/// `TCP_CLOSING`
pub const CLOSING: u8 = 11;
/// `TCP_NEW_SYN_RECV`
pub const NEW_SYN_RECV: u8 = 12;

/// The Linux name without the `TCP_` prefix.
pub fn name(state: u8) -> &'static str {
    match state {
        ESTABLISHED => "ESTABLISHED",
        SYN_SENT => "SYN_SENT",
        SYN_RECV => "SYN_RECV",
        FIN_WAIT1 => "FIN_WAIT1",
        FIN_WAIT2 => "FIN_WAIT2",
        TIME_WAIT => "TIME_WAIT",
        CLOSE => "CLOSE",
        CLOSE_WAIT => "CLOSE_WAIT",
        LAST_ACK => "LAST_ACK",
        LISTEN => "LISTEN",
        CLOSING => "CLOSING",
        NEW_SYN_RECV => "NEW_SYN_RECV",
        _ => "UNKNOWN",
    }
}
