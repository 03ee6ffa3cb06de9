//! decode → correlate → reorder → render: what happens to each record after the ring buffer.

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::fs::File;
use std::io::{self, BufWriter, Write};

use crate::correlate::{ConnId, Correlator};
use crate::events::{Event, Kind};
use crate::pcap::PcapWriter;
use crate::render::json;
use crate::render::timeline::{Part, Timeline};
use crate::reorder::Reorder;

/// How long a record waits for earlier ones that were written after it.
pub const REORDER_WINDOW_NS: u64 = 30_000_000;

/// The selected view.
pub enum View<W: Write> {
    /// The human timeline.
    Timeline(Timeline<BufWriter<W>>),
    /// JSON Lines.
    Json(BufWriter<W>),
}

struct Item {
    ev: Event,
    conn: ConnId,
    part: Part,
}

/// The user-space half of the data flow.
pub struct Pipeline<W: Write> {
    /// The connection table.
    pub correlator: Correlator,
    view: View<W>,
    reorder: Reorder<Box<Item>>,
    /// Enter lines waiting in `reorder`; `true` once their exit made them redundant.
    pending_enters: HashMap<(u32, u64), bool>,
    printed_enters: HashSet<(u32, u64)>,
    /// Latest non-syscall event time per connection.
    last_inner: HashMap<ConnId, u64>,
    /// Records decoded.
    pub events: u64,
    /// Records that failed to decode.
    pub malformed: u64,
    pcap: Option<PcapWriter<BufWriter<File>>>,
    scratch: json::Scratch,
}

impl<W: Write> Pipeline<W> {
    /// A pipeline rendering into `view`.
    pub fn new(view: View<W>) -> Self {
        Self {
            correlator: Correlator::new(),
            view,
            reorder: Reorder::new(REORDER_WINDOW_NS),
            pending_enters: HashMap::default(),
            printed_enters: HashSet::default(),
            last_inner: HashMap::default(),
            events: 0,
            malformed: 0,
            pcap: None,
            scratch: json::Scratch::default(),
        }
    }

    /// Takes one raw ring-buffer record.
    pub fn ingest(&mut self, bytes: &[u8]) {
        match Event::decode(bytes) {
            Ok(ev) => self.push(ev),
            Err(_) => self.malformed += 1,
        }
    }

    /// Takes one decoded event.
    pub fn push(&mut self, mut ev: Event) {
        if ev.kind == Kind::Packet {
            // Segments are matched to connections when rendered: by then the state events
            // that name a new connection's ends (which can follow its SYN) have arrived.
            self.events += 1;
            self.reorder.push(
                ev.ts_ns,
                Box::new(Item {
                    ev,
                    conn: 0,
                    part: Part::Whole,
                }),
            );
            return;
        }
        let conn = self.correlator.observe(&mut ev);
        let key = (ev.tid, ev.ts_ns);
        match ev.kind {
            Kind::SyscallEnter(_) => {
                self.pending_enters.insert(key, false);
                self.reorder.push(
                    ev.ts_ns,
                    Box::new(Item {
                        ev,
                        conn,
                        part: Part::Enter,
                    }),
                );
            }
            Kind::Syscall(_) => {
                self.events += 1;
                let inner = self.last_inner.get(&conn).is_some_and(|&t| t > ev.ts_ns);
                let (at, part) = match self.pending_enters.get_mut(&key) {
                    Some(cancelled) if !inner => {
                        *cancelled = true;
                        (ev.ts_ns, Part::Whole)
                    }
                    Some(_) => (ev.end_ns(), Part::Return),
                    None if self.printed_enters.remove(&key) => (ev.end_ns(), Part::Return),
                    None => (ev.ts_ns, Part::Whole),
                };
                self.reorder.push(at, Box::new(Item { ev, conn, part }));
            }
            _ => {
                self.events += 1;
                let t = self.last_inner.entry(conn).or_default();
                *t = (*t).max(ev.ts_ns);
                self.reorder.push(
                    ev.ts_ns,
                    Box::new(Item {
                        ev,
                        conn,
                        part: Part::Whole,
                    }),
                );
            }
        }
    }

    /// Renders everything older than the reorder window.
    pub fn drain(&mut self, now_ns: u64) -> io::Result<()> {
        let mut ready = Vec::new();
        self.reorder.drain_ready(now_ns, |item| ready.push(item));
        for item in ready {
            self.render(*item)?;
        }
        self.correlator.expire(now_ns);
        if self.last_inner.len() > 4096 {
            self.last_inner
                .retain(|_, t| now_ns.saturating_sub(*t) < 10 * REORDER_WINDOW_NS);
        }
        self.flush()
    }

    /// Renders everything still waiting.
    pub fn drain_all(&mut self) -> io::Result<()> {
        let mut ready = Vec::new();
        self.reorder.drain_all(|item| ready.push(item));
        for item in ready {
            self.render(*item)?;
        }
        self.flush()
    }

    fn render_packet(&mut self, ev: &Event) -> io::Result<()> {
        let Some(captured) = &ev.packet else {
            return Ok(());
        };
        if let Some(pcap) = &mut self.pcap {
            pcap.write(ev.ts_ns, &captured.data, captured.len)?;
        }
        let Ok(seg) = &captured.segment else {
            self.malformed += 1;
            return Ok(());
        };
        for view in self.correlator.segment(ev, seg) {
            let Some(conn) = self.correlator.get(view.conn) else {
                continue;
            };
            match &mut self.view {
                View::Timeline(t) => t.line(ev, conn, Part::Whole, Some(&view))?,
                View::Json(out) => {
                    json::write_event(out, &mut self.scratch, ev, conn, Some(&view))?
                }
            }
        }
        Ok(())
    }

    /// Writes segments to `pcap` from now on.
    pub fn set_pcap(&mut self, pcap: PcapWriter<BufWriter<File>>) {
        self.pcap = Some(pcap);
    }

    /// The pcap writer, if any.
    pub fn pcap(&mut self) -> Option<&mut PcapWriter<BufWriter<File>>> {
        self.pcap.as_mut()
    }

    fn render(&mut self, item: Item) -> io::Result<()> {
        if item.ev.kind == Kind::Packet {
            return self.render_packet(&item.ev);
        }
        if item.part == Part::Enter {
            let key = (item.ev.tid, item.ev.ts_ns);
            if self.pending_enters.remove(&key) == Some(true) {
                return Ok(());
            }
            self.printed_enters.insert(key);
        }
        let Some(conn) = self.correlator.get(item.conn) else {
            return Ok(());
        };
        match &mut self.view {
            View::Timeline(t) => t.line(&item.ev, conn, item.part, None),
            View::Json(out) => json::write_event(out, &mut self.scratch, &item.ev, conn, None),
        }
    }

    /// The view, for meta lines and the summary.
    pub fn view(&mut self) -> &mut View<W> {
        &mut self.view
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Some(pcap) = &mut self.pcap {
            pcap.flush()?;
        }
        match &mut self.view {
            View::Timeline(t) => t.flush(),
            View::Json(out) => out.flush(),
        }
    }
}
