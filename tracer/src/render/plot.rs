//! `--plot FILE.svg`: per connection that sent data, two graphs against time, as Wireshark's
//! tcptrace (Stevens) graph and `ss -ti` would give them together: the time–sequence graph
//! (each data segment sent as a bar from its first to its last byte, retransmissions in red,
//! the ACKs that came back as a step line) and TCP's numbers (cwnd, ssthresh and segments in
//! flight, with srtt on its own scale). Written at the end of the run; the file is created at
//! the start, so that an unwritable path fails before anything is attached.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{Finish, Line, View};
use crate::correlate::{Conn, ConnId};
use crate::decode::Kind;

/// Connections drawn at most (those that sent the most data).
const MAX_CONNS: usize = 8;
/// Points kept per series; beyond, every other one is dropped (the shape stays).
const MAX_POINTS: usize = 20_000;
const WIDTH: f64 = 960.0;
const PANEL: f64 = 260.0;
const MARGIN: f64 = 60.0;

/// TCP's numbers at one moment.
#[derive(Clone, Copy)]
struct Sample {
    ts_ns: u64,
    cwnd: u32,
    ssthresh: Option<u32>,
    in_flight: u32,
    srtt_us: Option<u32>,
}

/// One connection's series.
#[derive(Default)]
struct Series {
    title: String,
    /// Data segments sent: (ns, first byte, after the last), and whether it was a
    /// retransmission (it ends at or before what was already sent).
    sent: Vec<(u64, u32, u32, bool)>,
    /// ACKs received: (ns, acknowledged up to).
    acks: Vec<(u64, u32)>,
    samples: Vec<Sample>,
    highest: u32,
    data_bytes: u64,
}

fn push_bounded<T>(v: &mut Vec<T>, item: T) {
    if v.len() >= MAX_POINTS {
        let mut i = 0;
        v.retain(|_| {
            i += 1;
            i % 2 == 0
        });
    }
    v.push(item);
}

/// Collects series while the run goes on; writes the SVG at the end.
pub struct Plot {
    out: Option<BufWriter<File>>,
    path: PathBuf,
    conns: BTreeMap<ConnId, Series>,
}

impl Plot {
    /// Creates `path` now (an error names it).
    pub fn create(path: &Path) -> io::Result<Self> {
        let file = File::create(path)?;
        Ok(Self {
            out: Some(BufWriter::new(file)),
            path: path.to_path_buf(),
            conns: BTreeMap::new(),
        })
    }

    fn series(&mut self, conn: &Conn) -> &mut Series {
        self.conns.entry(conn.id).or_insert_with(|| Series {
            title: super::timeline::header(conn),
            ..Series::default()
        })
    }
}

impl View for Plot {
    fn event(&mut self, line: &Line) -> io::Result<()> {
        let ev = line.event;
        for (conn, seg) in line.ends() {
            match (&ev.kind, seg) {
                (Kind::Packet(c), Some(view)) => {
                    let Ok(s) = &c.segment else { continue };
                    let series = self.series(conn);
                    if view.out && s.payload_len > 0 {
                        let end = view.rel_seq.wrapping_add(s.payload_len as u32);
                        let again = end <= series.highest;
                        series.highest = series.highest.max(end);
                        series.data_bytes += s.payload_len as u64;
                        push_bounded(&mut series.sent, (ev.ts_ns, view.rel_seq, end, again));
                    } else if !view.out
                        && let Some(ack) = view.rel_ack
                    {
                        push_bounded(&mut series.acks, (ev.ts_ns, ack));
                    }
                }
                (Kind::Congestion(c), _) if c.has_numbers() => {
                    let sample = Sample {
                        ts_ns: ev.ts_ns,
                        cwnd: c.cwnd,
                        ssthresh: c.ssthresh,
                        in_flight: c.packets_out,
                        srtt_us: c.srtt_us,
                    };
                    push_bounded(&mut self.series(conn).samples, sample);
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn finish(&mut self, _end: &Finish) -> io::Result<()> {
        let Some(mut out) = self.out.take() else {
            return Ok(());
        };
        let mut drawn: Vec<(&ConnId, &Series)> = self
            .conns
            .iter()
            .filter(|(_, s)| !s.sent.is_empty())
            .collect();
        drawn.sort_by_key(|(id, s)| (std::cmp::Reverse(s.data_bytes), **id));
        drawn.truncate(MAX_CONNS);
        drawn.sort_by_key(|(id, _)| **id);
        out.write_all(svg(&drawn).as_bytes())?;
        out.flush()
    }

    fn target(&self) -> String {
        self.path.display().to_string()
    }
}

/// The whole document.
fn svg(conns: &[(&ConnId, &Series)]) -> String {
    let block = 2.0 * PANEL + 3.0 * MARGIN;
    let height = (block * conns.len().max(1) as f64) + MARGIN;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    if conns.is_empty() {
        let _ = writeln!(
            s,
            r#"<text x="{MARGIN}" y="{MARGIN}">no connection sent data while traced</text>"#
        );
    }
    for (i, (id, series)) in conns.iter().enumerate() {
        let top = MARGIN + i as f64 * block;
        connection(&mut s, **id, series, top);
    }
    s.push_str("</svg>\n");
    s
}

/// Maps values onto a panel.
struct Axes {
    x0: f64,
    y0: f64,
    t0: u64,
    t1: u64,
    v1: f64,
}

impl Axes {
    fn x(&self, ts: u64) -> f64 {
        let span = (self.t1 - self.t0).max(1) as f64;
        self.x0 + (ts.saturating_sub(self.t0)) as f64 / span * (WIDTH - 2.0 * MARGIN)
    }

    fn y(&self, v: f64) -> f64 {
        self.y0 + PANEL - v / self.v1.max(1.0) * PANEL
    }

    fn frame(&self, s: &mut String, title: &str, unit: &str) {
        let (w, h) = (WIDTH - 2.0 * MARGIN, PANEL);
        let _ = writeln!(
            s,
            r##"<rect x="{}" y="{}" width="{w}" height="{h}" fill="none" stroke="#888"/>"##,
            self.x0, self.y0
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" font-weight="bold">{}</text>"#,
            self.x0,
            self.y0 - 8.0,
            escape(title)
        );
        let ms = (self.t1 - self.t0) as f64 / 1e6;
        for k in 0..=4 {
            let f = f64::from(k) / 4.0;
            let x = self.x0 + f * w;
            let _ = writeln!(
                s,
                r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{:.1} ms</text>"#,
                self.y0 + h + 16.0,
                f * ms
            );
            let y = self.y0 + h - f * h;
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{y:.1}" text-anchor="end">{:.0}</text>"#,
                self.x0 - 4.0,
                f * self.v1
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{unit}</text>"#,
            self.x0 - 4.0,
            self.y0 - 8.0
        );
    }
}

fn polyline(s: &mut String, id: &str, color: &str, dash: &str, points: &[(f64, f64)]) {
    if points.is_empty() {
        return;
    }
    let _ = write!(
        s,
        r#"<polyline id="{id}" class="series" fill="none" stroke="{color}" stroke-width="2" shape-rendering="crispEdges" stroke-dasharray="{dash}" points=""#
    );
    for (x, y) in points {
        let _ = write!(s, "{x:.1},{y:.1} ");
    }
    s.push_str("\"/>\n");
}

fn connection(s: &mut String, id: ConnId, series: &Series, top: f64) {
    let t0 = series
        .sent
        .first()
        .map(|p| p.0)
        .into_iter()
        .chain(series.samples.first().map(|p| p.ts_ns))
        .chain(series.acks.first().map(|p| p.0))
        .min()
        .unwrap_or(0);
    let t1 = series
        .sent
        .last()
        .map(|p| p.0)
        .into_iter()
        .chain(series.samples.last().map(|p| p.ts_ns))
        .chain(series.acks.last().map(|p| p.0))
        .max()
        .unwrap_or(t0 + 1)
        .max(t0 + 1);
    // Time–sequence graph.
    let seq = Axes {
        x0: MARGIN,
        y0: top,
        t0,
        t1,
        v1: f64::from(series.highest.max(1)),
    };
    let retransmits = series.sent.iter().filter(|p| p.3).count();
    seq.frame(
        s,
        &format!(
            "{}: time-sequence ({} data segments, {retransmits} sent again)",
            series.title,
            series.sent.len()
        ),
        "seq",
    );
    // Each segment a bar from its first to its last byte, at least a few pixels tall so that
    // one segment of a megabyte still shows; the ACK line over the segments sent, and the
    // retransmissions over both.
    let bars = |s: &mut String, class: &str, color: &str, again: bool, min: f64| {
        let width = if again { 3 } else { 1 };
        let _ = writeln!(
            s,
            r#"<g id="conn{id}-{class}" class="series" stroke="{color}" stroke-width="{width}" shape-rendering="crispEdges">"#
        );
        for &(ts, from, to, _) in series.sent.iter().filter(|p| p.3 == again) {
            let x = seq.x(ts);
            let (y1, y2) = (seq.y(f64::from(from)), seq.y(f64::from(to)));
            let y2 = y2.min(y1 - min);
            let _ = writeln!(
                s,
                r#"<line x1="{x:.1}" y1="{y1:.1}" x2="{x:.1}" y2="{y2:.1}"/>"#
            );
        }
        s.push_str("</g>\n");
    };
    bars(s, "sent", "#1f5fbf", false, 3.0);
    let mut acked = Vec::new();
    let mut last = None;
    for &(ts, ack) in &series.acks {
        let y = seq.y(f64::from(ack.min(series.highest)));
        if let Some(prev) = last {
            acked.push((seq.x(ts), prev));
        }
        acked.push((seq.x(ts), y));
        last = Some(y);
    }
    polyline(s, &format!("conn{id}-acked"), "#2ca02c", "none", &acked);
    bars(s, "retransmitted", "#d62728", true, 8.0);
    legend(
        s,
        top,
        &[
            ("#1f5fbf", "data sent"),
            ("#d62728", "sent again"),
            ("#2ca02c", "acknowledged"),
        ],
    );

    // TCP's numbers.
    let top2 = top + PANEL + 1.5 * MARGIN;
    let cwnd_max = series
        .samples
        .iter()
        .map(|p| {
            let top = p.cwnd.max(p.in_flight);
            top.max(p.ssthresh.unwrap_or(0).min(top * 2))
        })
        .max()
        .unwrap_or(1);
    let nums = Axes {
        x0: MARGIN,
        y0: top2,
        t0,
        t1,
        v1: f64::from(cwnd_max.max(1)),
    };
    nums.frame(
        s,
        "cwnd, ssthresh, in flight (segments); srtt (right scale)",
        "segs",
    );
    let step = |value: &dyn Fn(&Sample) -> Option<f64>, axes: &Axes| {
        let mut points = Vec::new();
        let mut last: Option<f64> = None;
        for p in &series.samples {
            let Some(v) = value(p) else { continue };
            let x = axes.x(p.ts_ns);
            if let Some(prev) = last {
                points.push((x, axes.y(prev)));
            }
            points.push((x, axes.y(v)));
            last = Some(v);
        }
        points
    };
    let cwnd = step(&|p| Some(f64::from(p.cwnd)), &nums);
    let ssthresh = step(&|p| p.ssthresh.map(|t| f64::from(t.min(cwnd_max))), &nums);
    let flight = step(&|p| Some(f64::from(p.in_flight)), &nums);
    polyline(s, &format!("conn{id}-cwnd"), "#1f5fbf", "none", &cwnd);
    polyline(
        s,
        &format!("conn{id}-ssthresh"),
        "#ff7f0e",
        "6,3",
        &ssthresh,
    );
    polyline(s, &format!("conn{id}-inflight"), "#7f7f7f", "2,2", &flight);
    let srtt_max = series
        .samples
        .iter()
        .filter_map(|p| p.srtt_us)
        .max()
        .unwrap_or(1);
    let rtt = Axes {
        v1: f64::from(srtt_max),
        ..nums
    };
    let srtt = step(&|p| p.srtt_us.map(f64::from), &rtt);
    polyline(s, &format!("conn{id}-srtt"), "#9467bd", "none", &srtt);
    let _ = writeln!(
        s,
        r##"<text x="{:.1}" y="{:.1}" fill="#9467bd">srtt max {:.2} ms</text>"##,
        WIDTH - MARGIN - 110.0,
        top2 - 8.0,
        f64::from(srtt_max) / 1000.0
    );
    legend(
        s,
        top2,
        &[
            ("#1f5fbf", "cwnd"),
            ("#ff7f0e", "ssthresh"),
            ("#7f7f7f", "in flight"),
            ("#9467bd", "srtt"),
        ],
    );
}

fn legend(s: &mut String, top: f64, items: &[(&str, &str)]) {
    for (i, (color, label)) in items.iter().enumerate() {
        let y = top + 16.0 + i as f64 * 15.0;
        let x = MARGIN + 8.0;
        let _ = writeln!(
            s,
            r#"<rect x="{x}" y="{:.1}" width="10" height="10" fill="{color}"/><text x="{:.1}" y="{:.1}">{label}</text>"#,
            y - 9.0,
            x + 14.0,
            y
        );
    }
}

/// Text for SVG: `&`, `<`, `>` and quotes escaped, control characters shown as `?`.
fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '"' => "&quot;".to_string(),
            c if c.is_control() => "?".to_string(),
            c => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_svg_with_both_graphs_and_escaped_titles() {
        let series = Series {
            title: "conn #1 <evil>&\u{1b}".into(),
            sent: vec![
                (0, 1, 1449, false),
                (10, 1449, 2897, false),
                (30, 1, 1449, true),
            ],
            acks: vec![(20, 1), (40, 2897)],
            samples: vec![
                Sample {
                    ts_ns: 5,
                    cwnd: 10,
                    ssthresh: None,
                    in_flight: 2,
                    srtt_us: Some(100),
                },
                Sample {
                    ts_ns: 35,
                    cwnd: 5,
                    ssthresh: Some(5),
                    in_flight: 1,
                    srtt_us: Some(150),
                },
            ],
            highest: 2897,
            data_bytes: 4344,
        };
        let doc = svg(&[(&1, &series)]);
        assert!(doc.starts_with("<svg") && doc.trim_end().ends_with("</svg>"));
        for id in [
            "sent",
            "retransmitted",
            "acked",
            "cwnd",
            "ssthresh",
            "inflight",
            "srtt",
        ] {
            assert!(doc.contains(&format!("id=\"conn1-{id}\"")), "{id} missing");
        }
        assert!(doc.contains("conn #1 &lt;evil&gt;&amp;?"));
        assert!(!doc.contains('\u{1b}'));
    }
}
