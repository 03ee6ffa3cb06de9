//! The ladder diagram: the segments between the two ends of a connection, numbered, with each
//! end's state beside every arrow, as TCP textbooks draw the handshake and the teardown.
//! Fits an 80-column terminal.

use std::io::{self, Write};

use tracer_common::tcp_state;

use super::text::maybe_endpoint;
use super::{Finish, Line, View};
use crate::correlate::{Conn, LadderRow, Role};

const ARROW: usize = 44;
const STATE: usize = 12;
/// How long after a segment left its receiver is taken to have processed it.
const RECEIPT_NS: u64 = 20_000;

/// The ladders at exit, for the human view.
pub struct Ladder<W: Write> {
    out: W,
}

impl<W: Write> Ladder<W> {
    /// Ladders written to `out` at the end of the run.
    pub fn new(out: W) -> Self {
        Self { out }
    }
}

impl<W: Write> View for Ladder<W> {
    fn event(&mut self, _line: &Line) -> io::Result<()> {
        Ok(())
    }

    fn finish(&mut self, end: &Finish) -> io::Result<()> {
        writeln!(self.out, "{}", all(end.conns))?;
        self.out.flush()
    }
}

/// Every connection's ladder; the two traced ends of a loopback connection share one.
pub fn all(conns: &[&Conn]) -> String {
    let mut out = String::new();
    let mut drawn = Vec::new();
    for conn in conns {
        if conn.ladder.is_empty() || drawn.contains(&conn.id) || conn.role == Role::Listener {
            continue;
        }
        let peer = conns.iter().find(|p| {
            p.id != conn.id && p.local.is_some() && p.local == conn.remote && p.remote == conn.local
        });
        // The active opener goes on the left, as in the textbook figure.
        let (left, right) = match peer {
            Some(p) if conn.role == Role::Server => (Some(*p), Some(*conn)),
            Some(p) => (Some(*conn), Some(*p)),
            None if conn.role == Role::Server => (None, Some(*conn)),
            None => (Some(*conn), None),
        };
        drawn.extend([left, right].into_iter().flatten().map(|c| c.id));
        out.push_str(&draw(left, right));
        out.push('\n');
    }
    out
}

fn title(conn: Option<&Conn>, fallback: Option<&Conn>) -> String {
    match conn {
        Some(c) => format!(
            "#{} {} {}",
            c.id,
            super::text::visible(&c.comm),
            maybe_endpoint(c.local.as_ref())
        ),
        None => format!(
            "peer {}",
            maybe_endpoint(fallback.and_then(|c| c.remote.as_ref()))
        ),
    }
}

/// An end's state at `ts`: blank for an untraced end, `?` where a traced end's is unknown.
fn state(conn: Option<&Conn>, ts: u64) -> &'static str {
    match conn {
        Some(c) => c.state_at(ts).map_or("?", tcp_state::name),
        None => "",
    }
}

/// One ladder: `left` sends rightwards. Either end may be untraced.
fn draw(left: Option<&Conn>, right: Option<&Conn>) -> String {
    // Rows as seen from the left end.
    let rows: Vec<LadderRow> = match (left, right) {
        (Some(l), _) if !l.ladder.is_empty() => l.ladder.clone(),
        (_, Some(r)) => r
            .ladder
            .iter()
            .map(|row| LadderRow {
                out: !row.out,
                ..row.clone()
            })
            .collect(),
        _ => Vec::new(),
    };
    let mut s = format!(
        "ladder  {}  <->  {}\n",
        title(left, right),
        title(right, left)
    );
    for (i, row) in rows.iter().enumerate() {
        // The sender's state when it sent, the receiver's once it has processed the segment:
        // shortly after (loopback delivers within microseconds), and before the next one.
        let next = rows
            .get(i + 1)
            .map(|n| n.ts_ns.saturating_sub(1))
            .unwrap_or(u64::MAX);
        let after = next.min(row.ts_ns + RECEIPT_NS);
        let (lstate, rstate) = if row.out {
            (state(left, row.ts_ns), state(right, after))
        } else {
            (state(left, after), state(right, row.ts_ns))
        };
        let mut label = format!("{} seq {}", row.flags, row.rel_seq);
        if row.len > 0 {
            label.push_str(&format!(":{}", row.rel_seq.wrapping_add(row.len as u32)));
        }
        if let Some(ack) = row.rel_ack {
            label.push_str(&format!(" ack {ack}"));
        }
        let label = format!(" {label} ");
        let fill = ARROW.saturating_sub(label.len() + 5);
        let arrow = if row.out {
            format!("|--{label}{}->|", "-".repeat(fill))
        } else {
            format!("|<-{}{label}--|", "-".repeat(fill))
        };
        s.push_str(&format!(
            "  {lstate:<STATE$} {:>3} {arrow} {rstate}\n",
            i + 1
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::correlate::Correlator;
    use crate::decode::{Captured, Event, Kind};
    use tracer_common::Via;

    fn packet_event(hex: &str, ts: u64) -> Event {
        Event::blank(
            Kind::Packet(Box::new(Captured::from_hex(hex, true, 1))),
            Via::CgroupSkbEgress,
            ts,
        )
    }

    #[test]
    fn draws_a_handshake_within_80_columns() {
        let mut c = Correlator::new();
        c.keep_ladder = true;
        // 127.0.0.1:50274 -> 127.0.0.2:8080 SYN seq 1000, then SYN-ACK seq 5000 ack 1001, ACK.
        let ip = "450000280000400040060000 7f000001 7f000002";
        let ip_back = "450000280000400040060000 7f000002 7f000001";
        let segments = [
            format!("{ip} c4621f90 000003e8 00000000 5002faf0 00000000"),
            format!("{ip_back} 1f90c462 00001388 000003e9 5012faf0 00000000"),
            format!("{ip} c4621f90 000003e9 00001389 5010faf0 00000000"),
        ];
        for (i, hex) in segments.iter().enumerate() {
            let mut got = Vec::new();
            c.observe(packet_event(hex, i as u64 + 1), &mut |x| got.push(x));
            c.flush(&mut |x| got.push(x));
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].ends.iter().count(), 1);
        }
        let text = all(&c.all());
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("ladder  #1"), "{text}");
        assert!(
            lines[1].contains("|-- S seq 0 ") && lines[1].ends_with("->| "),
            "{text}"
        );
        assert!(
            lines[2].contains("|<-") && lines[2].contains(" S. seq 0 ack 1 --|"),
            "{text}"
        );
        assert!(lines[3].contains(" . seq 1 ack 1 "), "{text}");
        assert!(lines.iter().all(|l| l.chars().count() <= 80), "{text}");
    }
}
