//! The per-connection summary printed at exit (what tcplife prints, plus the state path).

use std::io::{self, Write};

use tracer_common::{failure::Failure, tcp_state};

use super::text::{bits_per_second, duration, maybe_endpoint};
use super::{Finish, Line, View};
use crate::correlate::CongestionStats;
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
pub fn table(end: &Finish) -> String {
    let conns = end.conns;
    let mut s = String::from("\nsummary\n");
    for c in conns {
        let who = if c.pid == 0 {
            "?".to_string()
        } else {
            format!("{}[{}]", super::text::visible(&c.comm), c.pid)
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
            "  conn #{:<3} {:<22} {:<8} {ends}{}\n",
            c.id,
            who,
            c.role.name(),
            super::timeline::place(c)
        ));
        s.push_str(&format!(
            "             lasted {}, sent {} B, received {} B, handshake {}, retransmits {}, {}\n",
            duration(c.last_ns.saturating_sub(c.first_ns)),
            c.bytes_sent,
            c.bytes_received,
            c.handshake_ns.map(duration).unwrap_or_else(|| "-".into()),
            c.retransmits(),
            c.outcome().unwrap_or("still open"),
        ));
        if !c.states.is_empty() {
            s.push_str(&format!("             states {}\n", state_path(c)));
        }
        if let Some(line) = congestion_line(&c.congestion) {
            s.push_str(&format!("             {line}\n"));
        }
    }
    s.push_str(&format!(
        "  {} connection(s), {} event(s), {} dropped",
        end.total,
        end.events,
        end.dropped()
    ));
    if end.omitted > 0 {
        s.push_str(&format!(
            " ({} older finished connection(s) not listed: the summary keeps the last {})",
            end.omitted,
            crate::correlate::FINISHED_KEPT
        ));
    }
    let skipped = end.skipped_runs();
    if skipped > 0 {
        s.push_str(&format!(", {skipped} program run(s) skipped by the kernel"));
    }
    if end.malformed > 0 {
        s.push_str(&format!(", {} malformed record(s)", end.malformed));
    }
    if end.unshown > 0 {
        s.push_str(&format!(
            ", {} event(s) not shown (read after their connection was forgotten)",
            end.unshown
        ));
    }
    for (reason, &n) in Failure::ALL.iter().zip(&end.failures).skip(1) {
        if n > 0 {
            s.push_str(&format!(", {n} {}", reason.what()));
        }
    }
    s.push('\n');
    s
}

/// The summary table at exit, for the human view.
pub struct Summary<W: Write> {
    out: W,
}

impl<W: Write> Summary<W> {
    /// A summary written to `out` at the end of the run.
    pub fn new(out: W) -> Self {
        Self { out }
    }
}

impl<W: Write> View for Summary<W> {
    fn event(&mut self, _line: &Line) -> io::Result<()> {
        Ok(())
    }

    fn finish(&mut self, end: &Finish) -> io::Result<()> {
        writeln!(self.out, "{}", table(end))?;
        self.out.flush()
    }
}

/// `tcp: bbr, 2 retransmits (fast 1, tail-loss probe 1), 1472 B resent, srtt 0.04/0.11/0.30 ms
/// (min/avg/max), cwnd max 156, 0.03 ms recovering, delivery rate max 3.12 Gbit/s, receive
/// buffer 131072 B, up to 2741288 B (2 resize(s))`
fn congestion_line(c: &CongestionStats) -> Option<String> {
    if c.is_empty() {
        return None;
    }
    let ms = |us: u64| format!("{}.{:02}", us / 1000, (us % 1000) / 10);
    let mut s = format!("tcp: {}", c.algorithm.as_deref().unwrap_or("?"));
    let total = c.total_retransmits();
    if total > 0 {
        let kinds: Vec<String> = c
            .retransmits
            .iter()
            .map(|(kind, n)| format!("{} {n}", kind.name()))
            .collect();
        s.push_str(&format!(
            ", {total} retransmit(s) ({}), {} B resent",
            kinds.join(", "),
            c.bytes_retransmitted
        ));
    }
    if let (Some(min), Some(avg), Some(max)) = (c.srtt_min_us, c.srtt_avg_us(), c.srtt_max_us) {
        s.push_str(&format!(
            ", srtt {}/{}/{} ms (min/avg/max)",
            ms(u64::from(min)),
            ms(avg),
            ms(u64::from(max))
        ));
    }
    s.push_str(&format!(", cwnd max {}", c.cwnd_max));
    if c.recovering_ns > 0 {
        s.push_str(&format!(", {} recovering", duration(c.recovering_ns)));
    }
    if let Some(rate) = c.delivery_rate_max {
        s.push_str(&format!(", delivery rate max {}", bits_per_second(rate)));
    }
    if let (Some(first), Some(max)) = (c.rcvbuf_first, c.rcvbuf_max) {
        s.push_str(&format!(
            ", receive buffer {first} B, up to {max} B ({} resize(s))",
            c.rcvbuf_resizes
        ));
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_how_many_connections_it_leaves_out() {
        let end = Finish {
            conns: &[],
            total: 331_792,
            events: 9,
            failures: [0; tracer_common::failure::FAILURE_KINDS as usize],
            skipped: &[],
            malformed: 2,
            unshown: 0,
            omitted: 330_768,
        };
        let text = table(&end);
        assert!(
            text.contains("331792 connection(s), 9 event(s), 0 dropped (330768 older finished connection(s) not listed: the summary keeps the last 1024), 2 malformed record(s)"),
            "{text}"
        );
    }
}
