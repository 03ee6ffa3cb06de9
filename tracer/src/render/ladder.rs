//! The ladder diagram: the segments between the two ends of a connection, numbered, with each
//! end's state beside every arrow, as TCP textbooks draw the handshake and the teardown.
//! Fits an 80-column terminal.

use std::io::{self, Write};

use tracer_common::tcp_state;

use super::text::maybe_endpoint;
use super::{Finish, Line, View};
use crate::correlate::{Conn, LADDER_ROWS, LadderRow, Role};
use crate::decode::tcpip::flags;

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

/// Every segment either traced end sent, seen from the left, in time order, each with
/// whether the other end received it. Each copy the peer received is matched with the latest
/// copy sent before it (same flags, numbers and length: a retransmission repeats them); a copy
/// nothing matched never arrived — lost on the way — unless the peer's ladder was already
/// full then.
fn both_ends(l: &Conn, r: &Conn) -> Vec<(LadderRow, bool)> {
    let same = |a: &LadderRow, b: &LadderRow| {
        a.flags == b.flags && a.rel_seq == b.rel_seq && a.rel_ack == b.rel_ack && a.len == b.len
    };
    let mut rows = Vec::new();
    for (from, to, flip) in [(l, r, false), (r, l, true)] {
        let sent: Vec<&LadderRow> = from.ladder.iter().filter(|row| row.out).collect();
        let mut arrived = vec![false; sent.len()];
        for got in to.ladder.iter().filter(|row| !row.out) {
            let latest = (0..sent.len())
                .filter(|&i| !arrived[i] && sent[i].ts_ns <= got.ts_ns && same(sent[i], got))
                .max_by_key(|&i| sent[i].ts_ns);
            if let Some(i) = latest {
                arrived[i] = true;
            }
        }
        let full_after = if to.ladder.len() >= LADDER_ROWS {
            to.ladder.last().map_or(0, |row| row.ts_ns)
        } else {
            u64::MAX
        };
        for (row, arrived) in sent.into_iter().zip(arrived) {
            let row = LadderRow {
                out: !flip,
                ..row.clone()
            };
            let arrived = arrived || row.ts_ns > full_after;
            rows.push((row, arrived));
        }
    }
    rows.sort_by_key(|(row, _)| row.ts_ns);
    rows
}

/// One ladder: `left` sends rightwards. Either end may be untraced; with both traced, a
/// segment one sent and the other never received is drawn lost: `-- P. seq 1:9 ----X`.
fn draw(left: Option<&Conn>, right: Option<&Conn>) -> String {
    // Rows as seen from the left end, and whether each arrived.
    let rows: Vec<(LadderRow, bool)> = match (left, right) {
        (Some(l), Some(r)) if !l.ladder.is_empty() && !r.ladder.is_empty() => both_ends(l, r),
        (Some(l), _) if !l.ladder.is_empty() => {
            l.ladder.iter().map(|row| (row.clone(), true)).collect()
        }
        (_, Some(r)) => r
            .ladder
            .iter()
            .map(|row| {
                let row = LadderRow {
                    out: !row.out,
                    ..row.clone()
                };
                (row, true)
            })
            .collect(),
        _ => Vec::new(),
    };
    let mut s = format!(
        "ladder  {}  <->  {}\n",
        title(left, right),
        title(right, left)
    );
    let mut resent = false;
    for (i, (row, arrived)) in rows.iter().enumerate() {
        // The sender's state when it sent, the receiver's once it has processed the segment:
        // shortly after (loopback delivers within microseconds), and before the next one.
        let next = rows
            .get(i + 1)
            .map(|(n, _)| n.ts_ns.saturating_sub(1))
            .unwrap_or(u64::MAX);
        let after = next.min(row.ts_ns + RECEIPT_NS);
        let (lstate, rstate) = if row.out {
            (state(left, row.ts_ns), state(right, after))
        } else {
            (state(left, after), state(right, row.ts_ns))
        };
        let mut label = format!("{} seq {}", row.flags_text(), row.rel_seq);
        if row.len > 0 {
            label.push_str(&format!(":{}", row.rel_seq.wrapping_add(row.len as u32)));
        }
        if let Some(ack) = row.rel_ack {
            label.push_str(&format!(" ack {ack}"));
        }
        let label = format!(" {label} ");
        let fill = ARROW.saturating_sub(label.len() + 5);
        let arrow = match (row.out, arrived) {
            (true, true) => format!("|--{label}{}->|", "-".repeat(fill)),
            (false, true) => format!("|<-{}{label}--|", "-".repeat(fill)),
            // Lost on the way: the arrow stops short of the receiver.
            (true, false) => format!("|--{label}{}X  |", "-".repeat(fill.saturating_sub(2))),
            (false, false) => format!("|  X{}{label}--|", "-".repeat(fill.saturating_sub(2))),
        };
        // A data segment (or SYN/FIN) its sender had already sent: a retransmission.
        let again = (row.len > 0 || row.flags & (flags::SYN | flags::FIN) != 0)
            && rows[..i].iter().any(|(r, _)| {
                r.out == row.out
                    && r.rel_seq == row.rel_seq
                    && r.flags == row.flags
                    && r.len == row.len
            });
        let mark = if again { "*" } else { " " };
        resent |= again;
        s.push_str(&format!(
            "  {lstate:<STATE$} {:>3}{mark}{arrow} {rstate}\n",
            i + 1
        ));
    }
    if rows.iter().any(|(_, arrived)| !arrived) {
        s.push_str("  X: lost on the way (sent, never received)\n");
    }
    if resent {
        s.push_str("  *: sent again (a retransmission)\n");
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
            Kind::Packet(crate::decode::Pooled::new(Captured::from_hex(hex, true, 1))),
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

    /// Both ends traced on two namespaces of this host: the second data segment left the
    /// server and never reached the client; its retransmission did.
    #[test]
    fn a_segment_one_end_sent_and_the_other_never_received_is_drawn_lost() {
        let row = |ts: u64, out: bool, seq: u32| LadderRow {
            ts_ns: ts,
            out,
            flags: flags::PSH | flags::ACK,
            rel_seq: seq,
            rel_ack: Some(1),
            len: 10,
        };
        let mut client = Conn::new_for_test(1, Role::Client);
        let mut server = Conn::new_for_test(2, Role::Server);
        server.ladder = vec![row(10, true, 1), row(20, true, 11), row(30, true, 11)];
        client.ladder = vec![row(11, false, 1), row(31, false, 11)];
        let text = draw(Some(&client), Some(&server));
        let lines: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines[3].starts_with("  X: lost") && lines[4].starts_with("  *: sent again"));
        assert!(
            lines[0].contains("|<-") && lines[0].contains("seq 1:11"),
            "{text}"
        );
        assert!(
            lines[1].contains("|  X") && lines[1].contains("seq 11:21"),
            "{text}"
        );
        assert!(
            lines[2].contains("|<-") && lines[2].contains("seq 11:21"),
            "{text}"
        );
        assert!(lines[2].contains("  3*|"), "{text}");
        assert!(lines.iter().all(|l| l.chars().count() <= 80), "{text}");
    }
}
