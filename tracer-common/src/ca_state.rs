//! TCP congestion states as the kernel numbers them (`enum tcp_ca_state`).

/// `TCP_CA_Open`: nothing lost, nothing doubtful.
pub const OPEN: u8 = 0;
/// `TCP_CA_Disorder`: duplicate ACKs or SACKs seen, nothing marked lost yet.
pub const DISORDER: u8 = 1;
/// `TCP_CA_CWR`: the window was reduced (ECN, or a local queue full).
pub const CWR: u8 = 2;
/// `TCP_CA_Recovery`: fast retransmit, recovering what dup ACKs/SACKs said was lost.
pub const RECOVERY: u8 = 3;
/// `TCP_CA_Loss`: a retransmission timeout fired; everything in flight is presumed lost.
pub const LOSS: u8 = 4;

/// The kernel's name without the `TCP_CA_` prefix.
pub fn name(state: u8) -> &'static str {
    match state {
        OPEN => "Open",
        DISORDER => "Disorder",
        CWR => "CWR",
        RECOVERY => "Recovery",
        LOSS => "Loss",
        _ => "?",
    }
}
