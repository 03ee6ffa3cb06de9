//! What happens to each record after the ring buffer: decode → correlate → pair enters and
//! exits → reorder → every view. The pipeline knows views only through [`View`].

mod pairing;
mod reorder;

use std::io;

use crate::correlate::{Correlated, Correlator};
use crate::decode;
use crate::render::{Finish, Line, Meta, Part, View};
use pairing::Pairing;
use reorder::Reorder;

/// How long a record waits for earlier ones that were written after it.
pub const REORDER_WINDOW_NS: u64 = 30_000_000;

struct Item {
    c: Correlated,
    part: Part,
}

/// Counts of what went through.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    /// Events decoded (a syscall's enter and exit count once; a segment once).
    pub events: u64,
    /// Records that could not be decoded, and segments whose headers could not.
    pub malformed: u64,
}

/// The user-space half of the data flow.
pub struct Pipeline {
    /// The connection table.
    pub correlator: Correlator,
    pairing: Pairing,
    reorder: Reorder<Box<Item>>,
    views: Vec<Box<dyn View>>,
    /// What went through so far.
    pub stats: Stats,
    ready: Vec<Correlated>,
}

impl Pipeline {
    /// A pipeline rendering into `views`, in order.
    pub fn new(views: Vec<Box<dyn View>>, keep_ladder: bool) -> Self {
        let mut correlator = Correlator::new();
        correlator.keep_ladder = keep_ladder;
        Self {
            correlator,
            pairing: Pairing::default(),
            reorder: Reorder::new(),
            views,
            stats: Stats::default(),
            ready: Vec::new(),
        }
    }

    /// Takes one raw ring-buffer record.
    pub fn ingest(&mut self, bytes: &[u8]) {
        match decode::decode(bytes) {
            Ok(ev) => {
                let mut ready = std::mem::take(&mut self.ready);
                self.correlator.observe(ev, &mut |c| ready.push(c));
                self.enqueue(&mut ready);
                self.ready = ready;
            }
            Err(_) => self.stats.malformed += 1,
        }
    }

    fn enqueue(&mut self, ready: &mut Vec<Correlated>) {
        for c in ready.drain(..) {
            let (key, part) = self.pairing.place(&c);
            if part != Part::Enter {
                self.stats.events += 1;
            }
            if c.event.captured().is_some_and(|p| p.segment.is_err()) {
                self.stats.malformed += 1;
            }
            self.reorder.push(key, Box::new(Item { c, part }));
        }
    }

    /// Writes a run-level notice to every view.
    pub fn meta(&mut self, meta: &Meta) -> io::Result<()> {
        for view in &mut self.views {
            view.meta(meta)?;
        }
        Ok(())
    }

    /// Renders everything older than the reorder window (and than any segment still waiting
    /// for its connection).
    pub fn drain(&mut self, now_ns: u64) -> io::Result<()> {
        let mut ready = std::mem::take(&mut self.ready);
        self.correlator.expire(now_ns, &mut |c| ready.push(c));
        self.enqueue(&mut ready);
        self.ready = ready;
        let mut limit = now_ns.saturating_sub(REORDER_WINDOW_NS);
        if let Some(parked) = self.correlator.oldest_parked_ns() {
            limit = limit.min(parked.saturating_sub(1));
        }
        let mut out = Vec::new();
        self.reorder.drain_until(limit, |item| out.push(item));
        for item in out {
            self.render(&item)?;
        }
        self.pairing.prune(now_ns, 10 * REORDER_WINDOW_NS);
        self.flush()
    }

    /// Renders everything still waiting, then lets every view finish.
    pub fn finish(&mut self, dropped: u64) -> io::Result<()> {
        let mut ready = std::mem::take(&mut self.ready);
        self.correlator.flush(&mut |c| ready.push(c));
        self.enqueue(&mut ready);
        let mut out = Vec::new();
        self.reorder.drain_until(u64::MAX, |item| out.push(item));
        for item in out {
            self.render(&item)?;
        }
        let conns = self.correlator.all();
        let finish = Finish {
            conns: &conns,
            total: self.correlator.total,
            events: self.stats.events,
            dropped,
            malformed: self.stats.malformed,
        };
        for view in &mut self.views {
            view.finish(&finish)?;
        }
        Ok(())
    }

    fn render(&mut self, item: &Item) -> io::Result<()> {
        if !self.pairing.show(&item.c, item.part) {
            return Ok(());
        }
        let ends: Vec<_> = item
            .c
            .ends
            .iter()
            .filter_map(|e| Some((self.correlator.get(e.conn)?, e.segment.as_ref())))
            .collect();
        let line = Line {
            event: &item.c.event,
            part: item.part,
            timewait: item.c.timewait,
            ends: &ends,
        };
        for view in &mut self.views {
            view.event(&line)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        for view in &mut self.views {
            view.flush()?;
        }
        Ok(())
    }
}
