//! The per-connection summary printed at exit (what tcplife prints, plus the state path).

use serde_json::{Value, json};
use tracer_common::tcp_state;

use super::{duration, maybe_endpoint};
use crate::correlate::Conn;

/// The state path as `CLOSE > SYN_SENT > ESTABLISHED ...`.
pub fn state_path(conn: &Conn) -> String {
    conn.states
        .iter()
        .map(|&s| tcp_state::name(s))
        .collect::<Vec<_>>()
        .join(" > ")
}

/// A human table, one connection per row block.
pub fn table(conns: &[&Conn], events: u64, dropped: u64) -> String {
    let mut s = String::from("\nsummary\n");
    for c in conns {
        let who = if c.pid == 0 {
            "?".to_string()
        } else {
            format!("{}[{}]", c.comm, c.pid)
        };
        let ends = if c.role == crate::correlate::Role::Listener {
            maybe_endpoint(c.local.as_ref())
        } else {
            format!(
                "{} -> {}",
                maybe_endpoint(c.local.as_ref()),
                maybe_endpoint(c.remote.as_ref())
            )
        };
        s.push_str(&format!(
            "  conn #{:<3} {:<22} {:<8} {ends}\n",
            c.id,
            who,
            c.role.name()
        ));
        s.push_str(&format!(
            "             lasted {}, sent {} B, received {} B, handshake {}, retransmits {}, {}\n",
            duration(c.last_ns.saturating_sub(c.first_ns)),
            c.bytes_sent,
            c.bytes_received,
            c.handshake_ns.map(duration).unwrap_or_else(|| "-".into()),
            c.retransmits,
            c.outcome().unwrap_or("still open"),
        ));
        if !c.states.is_empty() {
            s.push_str(&format!("             states {}\n", state_path(c)));
        }
    }
    s.push_str(&format!(
        "  {} connection(s), {} event(s), {} dropped\n",
        conns.len(),
        events,
        dropped
    ));
    s
}

/// The same as JSON, for the `summary` meta event.
pub fn json(conns: &[&Conn]) -> Value {
    Value::Array(
        conns
            .iter()
            .map(|c| {
                json!({
                    "conn": c.id,
                    "pid": c.pid,
                    "comm": c.comm,
                    "role": c.role.name(),
                    "laddr": c.local.map(|e| e.addr.to_string()),
                    "lport": c.local.map(|e| e.port),
                    "raddr": c.remote.map(|e| e.addr.to_string()),
                    "rport": c.remote.map(|e| e.port),
                    "duration_ns": c.last_ns.saturating_sub(c.first_ns),
                    "bytes_sent": c.bytes_sent,
                    "bytes_received": c.bytes_received,
                    "handshake_ns": c.handshake_ns,
                    "retransmits": c.retransmits,
                    "states": c.states.iter().map(|&s| tcp_state::name(s)).collect::<Vec<_>>(),
                    "outcome": c.outcome().unwrap_or("open"),
                })
            })
            .collect(),
    )
}
