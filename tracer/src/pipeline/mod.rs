//! What happens to each record after the ring buffer: decode → correlate → pair enters and
//! exits → reorder → every view. The pipeline knows views only through [`View`].

mod pairing;
pub mod recording;
mod reorder;
mod sinks;

use std::io;

use tracer_common::failure::{FAILURE_KINDS, Failure};

use crate::correlate::{Correlated, Correlator};
use crate::decode;
use crate::hooks::failures::Counts;
use crate::render::{Finish, Line, Meta, Part, View};
use crate::system::place::Places;
use pairing::Pairing;
use recording::{Frame, Recorder};
use reorder::Reorder;
pub use sinks::Failed;
use sinks::Sinks;

/// How long a record waits for earlier ones that were written after it.
pub const REORDER_WINDOW_NS: u64 = 30_000_000;

/// Events held back for parked segments at most (see `Pipeline::drain`): a few megabytes,
/// a tenth of a second at the rates this machine can trace.
const HELD_MAX: usize = 32_768;

struct Item {
    c: Correlated,
    part: Part,
}

/// Counts of what went through.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    /// Events shown, once per connection each belongs to (a syscall's enter and exit count
    /// once; a segment once per traced end): the JSON view's event lines.
    pub events: u64,
    /// Records that could not be decoded, and segments whose headers could not.
    pub malformed: u64,
    /// Events counted in `events` but not shown: their connection had been forgotten before
    /// their turn came (records read very late, under a backlog).
    pub unshown: u64,
}

/// The user-space half of the data flow.
pub struct Pipeline {
    /// The connection table.
    pub correlator: Correlator,
    pairing: Pairing,
    reorder: Reorder<Item>,
    sinks: Sinks,
    /// What went through so far.
    pub stats: Stats,
    ready: Vec<Correlated>,
    /// The newest record time read so far.
    read_until_ns: u64,
    /// Where connections' owners run.
    places: Places,
    /// `--record`: where the input goes too.
    recorder: Option<Recorder>,
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
            sinks: Sinks::new(views),
            stats: Stats::default(),
            ready: Vec::new(),
            read_until_ns: 0,
            places: Places::new(),
            recorder: None,
        }
    }

    /// A pipeline for a replay: where processes ran is what the recording says, never what
    /// this system's `/proc` says now.
    pub fn replaying(views: Vec<Box<dyn View>>, keep_ladder: bool) -> Self {
        let mut pipeline = Self::new(views, keep_ladder);
        pipeline.places = Places::offline();
        pipeline
    }

    /// Writes everything the pipeline is told to `recorder` from now on.
    pub fn record_to(&mut self, recorder: Recorder) {
        self.places.keep_resolved();
        self.recorder = Some(recorder);
    }

    /// Records `frame`; a recording that cannot be written stops, and the run ends saying its
    /// output is incomplete, as for any other output.
    pub fn record(&mut self, frame: &Frame) {
        self.write_recording(|recorder| recorder.frame(frame));
    }

    /// Runs `write` on the recorder, if there is one and it still writes; stops it on error.
    fn write_recording(&mut self, write: impl FnOnce(&mut Recorder) -> io::Result<()>) {
        let Some(recorder) = &mut self.recorder else {
            return;
        };
        if let Err(error) = write(recorder) {
            self.recording_failed(error);
        }
    }

    fn recording_failed(&mut self, error: io::Error) {
        if let Some(recorder) = self.recorder.take() {
            eprintln!(
                "tracer: cannot write {}: {error}; the recording stops here, the other outputs \
                 go on",
                recorder.target
            );
            self.sinks.failed.push(Failed {
                target: recorder.target,
                error,
            });
        }
    }

    /// Writes the places resolved since the last call to the recording.
    fn record_places(&mut self) {
        let Some(recorder) = &mut self.recorder else {
            return;
        };
        let result = self.places.take_resolved().map_or(Ok(()), |mut resolved| {
            resolved.try_for_each(|(pid, place)| recorder.frame(&Frame::Place(pid, place)))
        });
        if let Err(error) = result {
            self.recording_failed(error);
        }
    }

    /// A place the recorded run resolved (replay).
    pub fn replayed_place(&mut self, pid: u32, place: Option<crate::system::place::Place>) {
        self.places.replayed(pid, place);
    }

    /// A listener open before the start (found in `/proc`): see [`Correlator::adopt_listener`].
    pub fn adopt_listener(
        &mut self,
        pid: u32,
        comm: &str,
        fd: i32,
        local: crate::decode::Endpoint,
        now_ns: u64,
    ) {
        self.record(&Frame::Listener {
            pid,
            comm: comm.into(),
            fd,
            local,
            now_ns,
        });
        self.correlator.adopt_listener(pid, comm, fd, local, now_ns);
    }

    /// Losses the kernel counted since the last report (`Frame::Dropped`'s `new`): once the
    /// ring buffer lost records, connections whose end went with them may be ended when their
    /// socket is seen reused (`Correlator::records_lost`).
    pub fn lost(&mut self, new: &[u64; FAILURE_KINDS as usize]) {
        if new[Failure::RingFull as usize] > 0 {
            self.correlator.records_lost = true;
        }
    }

    /// The views that stopped writing during the run (a full disk): the output is incomplete.
    pub fn failed(&self) -> &[Failed] {
        &self.sinks.failed
    }

    /// The newest record time read so far: with records still waiting in the ring buffer,
    /// as far as the run's clock may be taken to have moved.
    pub fn read_until_ns(&self) -> u64 {
        self.read_until_ns
    }

    /// Takes one raw ring-buffer record.
    pub fn ingest(&mut self, bytes: &[u8]) {
        match decode::decode(bytes) {
            Ok(decode::Record::Event(ev)) => {
                self.read_until_ns = self.read_until_ns.max(ev.ts_ns);
                self.correlate(|correlator, out| correlator.observe(ev, out))
            }
            Ok(decode::Record::Place { pid, place }) => self.places.learn(pid, place),
            Err(_) => self.stats.malformed += 1,
        }
        // The places this record made the pipeline look up go first: a replay knows them
        // before it needs them.
        self.record_places();
        self.write_recording(|recorder| recorder.record(bytes));
    }

    /// Runs one correlator step and queues what it hands out for rendering.
    fn correlate(&mut self, step: impl FnOnce(&mut Correlator, &mut dyn FnMut(Correlated))) {
        let mut ready = std::mem::take(&mut self.ready);
        step(&mut self.correlator, &mut |c| ready.push(c));
        for c in ready.drain(..) {
            for end in c.ends.iter() {
                self.locate(end.conn);
            }
            let (key, part) = self.pairing.place(&c);
            if part != Part::Enter {
                // As the JSON view counts lines: once per connection the event belongs to.
                self.stats.events += c.ends.iter().count() as u64;
            }
            if c.event.captured().is_some_and(|p| p.segment.is_err()) {
                self.stats.malformed += 1;
            }
            self.reorder.push(key, Item { c, part });
        }
        self.ready = ready;
    }

    /// Looks up, once, where connection `id`'s owner runs (its network namespace and cgroup),
    /// while the owner most likely still runs.
    fn locate(&mut self, id: crate::correlate::ConnId) {
        if let Some(conn) = self.correlator.live_mut(id)
            && conn.place.is_none()
            && conn.pid != 0
        {
            conn.place = Some(self.places.of(conn.pid).unwrap_or_default());
        }
    }

    /// Writes a run-level notice to every view.
    pub fn meta(&mut self, meta: &Meta) -> io::Result<()> {
        self.sinks.each(|view| view.meta(meta))
    }

    /// Renders everything older than the reorder window (and than any segment still waiting
    /// for its connection).
    pub fn drain(&mut self, now_ns: u64) -> io::Result<()> {
        self.correlate(|correlator, out| correlator.expire(now_ns, out));
        let mut limit = now_ns.saturating_sub(REORDER_WINDOW_NS);
        if self.reorder.len() >= HELD_MAX {
            // A segment to a traced listener waits up to a second for its connection, and
            // everything after it waits with it: under a heavy load that loses records (the
            // ones that would have named its connection), a second of events — 300,000
            // items, 200 MB — was held. Past `HELD_MAX` the segments stop waiting.
            self.correlate(|correlator, out| correlator.release_parked_before(limit, out));
        }
        if let Some(parked) = self.correlator.oldest_parked_ns() {
            limit = limit.min(parked.saturating_sub(1));
        }
        self.render_until(limit)?;
        self.correlator.retire_before(limit);
        self.pairing.prune(now_ns, 10 * REORDER_WINDOW_NS);
        self.record_places();
        self.record(&Frame::Drain(now_ns));
        self.flush()
    }

    /// Renders everything still waiting, then lets every view finish.
    pub fn finish(&mut self, failures: Counts, skipped: &[(String, u64)]) -> io::Result<()> {
        self.correlate(|correlator, out| correlator.flush(out));
        self.render_until(u64::MAX)?;
        self.record_places();
        self.record(&Frame::Finish {
            failures,
            skipped: skipped.to_vec(),
        });
        self.write_recording(|recorder| recorder.flush());
        let conns = self.correlator.all();
        let finish = Finish {
            conns: &conns,
            total: self.correlator.total,
            events: self.stats.events,
            failures,
            skipped,
            malformed: self.stats.malformed,
            unshown: self.stats.unshown,
            omitted: self.correlator.evicted,
        };
        self.sinks.each(|view| view.finish(&finish))
    }

    /// Renders, in order, everything waiting whose sort key is at most `limit`.
    fn render_until(&mut self, limit: u64) -> io::Result<()> {
        while let Some(item) = self.reorder.pop(limit) {
            self.render(&item)?;
        }
        Ok(())
    }

    fn render(&mut self, item: &Item) -> io::Result<()> {
        if !self.pairing.show(&item.c, item.part) {
            return Ok(());
        }
        let mut ends = [None, None];
        for (slot, end) in ends.iter_mut().zip(item.c.ends.iter()) {
            *slot = self
                .correlator
                .get(end.conn)
                .map(|conn| (conn, end.segment.as_ref()));
            if slot.is_none() && item.part != Part::Enter {
                self.stats.unshown += 1;
            }
        }
        let line = Line {
            event: &item.c.event,
            part: item.part,
            timewait: item.c.timewait,
            ends,
        };
        self.sinks.each(|view| view.event(&line))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_recording(|recorder| recorder.flush());
        self.sinks.each(|view| view.flush())
    }
}
