//! The views of the event stream. Each implements [`View`] (like ripgrep's `Sink`): it gets
//! run-level notices ([`View::meta`]), every event already decoded, assigned to its
//! connections and in time order ([`View::event`]), and the end of the run ([`View::finish`]).
//! Views only format; they never change what they are shown.

pub mod banner;
pub mod json;
pub mod ladder;
pub mod output;
pub mod pcap;
pub mod plot;
pub mod prog_stats;
pub mod summary;
pub mod text;
pub mod timeline;

use std::io;

use crate::correlate::{Conn, SegmentView};
use crate::decode::Event;
use crate::hooks::HookStatus;
use crate::hooks::failures::Counts;
use tracer_common::failure::Failure;

/// Which part of a syscall a line shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The whole event on one line.
    Whole,
    /// A syscall's start, shown before the events it caused (human view only).
    Enter,
    /// A syscall's return, shown after the events it caused.
    Return,
}

/// One event as the views see it.
pub struct Line<'a> {
    /// The event as decoded.
    pub event: &'a Event,
    /// Which part of a syscall this is.
    pub part: Part,
    /// A state event whose `-> CLOSE` is read as the move into TIME_WAIT.
    pub timewait: bool,
    /// Its connections: one, or for a segment each traced end with the segment as that end
    /// sees it (none for a segment no traced end claims). Read with [`Line::ends`].
    pub ends: [Option<(&'a Conn, Option<&'a SegmentView>)>; 2],
}

impl<'a> Line<'a> {
    /// The event's connections, each with the segment as it saw it (segments only).
    pub fn ends(&self) -> impl Iterator<Item = (&'a Conn, Option<&'a SegmentView>)> + '_ {
        self.ends.iter().flatten().copied()
    }
}

/// A run-level notice.
pub enum Meta<'a> {
    /// Every hook is attached: how each one was.
    Ready {
        /// Each hook's status.
        hooks: &'a [HookStatus],
        /// Layers with no hook at all.
        missing_layers: &'a [&'static str],
        /// Layers turned off by the user.
        layers_off: &'a [crate::hooks::table::Layer],
    },
    /// Our programs gave up on something (most often: the ring buffer was full and records
    /// were lost) since the last such notice. Counts per `tracer_common::failure::Failure`.
    Dropped {
        /// Since the start.
        total: Counts,
        /// Since the last notice.
        new: Counts,
    },
    /// The kernel skipped runs of our programs since the last such notice (another BPF
    /// program held that CPU's guard): the events those runs would have made are missing.
    Skipped {
        /// Runs skipped since the start, per program.
        total: &'a [(String, u64)],
        /// Since the last notice, for the programs that had new ones.
        new: &'a [(String, u64)],
    },
}

/// The end of the run.
pub struct Finish<'a> {
    /// Connections still open and those finished recently, by id.
    pub conns: &'a [&'a Conn],
    /// Connections seen in all.
    pub total: u64,
    /// Events seen.
    pub events: u64,
    /// What our programs gave up on, per `tracer_common::failure::Failure` (records the
    /// ring buffer had no room for, full maps, failed reads).
    pub failures: Counts,
    /// Runs of our programs the kernel skipped (its recursion guard), per program: events
    /// never recorded.
    pub skipped: &'a [(String, u64)],
    /// Records and segments that could not be decoded.
    pub malformed: u64,
    /// Events counted but not shown: their connection had been forgotten first.
    pub unshown: u64,
    /// Finished connections not in `conns`: only the last
    /// [`crate::correlate::FINISHED_KEPT`] are kept.
    pub omitted: u64,
}

impl Finish<'_> {
    /// Records the kernel could not put in the ring buffer.
    pub fn dropped(&self) -> u64 {
        self.failures[Failure::RingFull as usize]
    }

    /// Program runs the kernel skipped, all programs together.
    pub fn skipped_runs(&self) -> u64 {
        self.skipped.iter().map(|(_, n)| n).sum()
    }
}

/// An output format.
pub trait View {
    /// A run-level notice.
    fn meta(&mut self, _meta: &Meta) -> io::Result<()> {
        Ok(())
    }

    /// One event.
    fn event(&mut self, line: &Line) -> io::Result<()>;

    /// The run is over.
    fn finish(&mut self, _end: &Finish) -> io::Result<()> {
        self.flush()
    }

    /// Pushes buffered output out (called after each batch).
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// What the view writes to, for messages: `stdout` unless it writes a file.
    fn target(&self) -> String {
        "stdout".into()
    }
}
