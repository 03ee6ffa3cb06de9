//! `tracer replay FILE`: a recording made with `--record` sent through the pipeline again and
//! rendered as any view. Nothing is loaded or traced; the recorded drain ticks stand in for
//! the event loop's clock, so the output is the live run's.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::app::{output_error, views};
use crate::cli::ViewArgs;
use crate::hooks::failures::Counts;
use crate::pipeline::Pipeline;
use crate::pipeline::recording::{Frame, Next, Replay};
use crate::render::Meta;

/// What a replay went through.
#[derive(Clone, Copy, Debug, Default)]
pub struct Replayed {
    /// Raw ring-buffer records.
    pub records: u64,
    /// The recording ended without the run's end (the tracer was killed).
    pub cut: bool,
}

/// Replays `file` into the views `args` asks for.
pub fn run(file: &Path, args: &ViewArgs) -> anyhow::Result<Replayed> {
    let mut replay = Replay::open(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let clock = Arc::new(AtomicU64::new(0));
    let now = Arc::clone(&clock);
    let views = views(
        &args.options(replay.header.no_syscalls),
        replay.header.realtime_offset_ns,
        Box::new(move || now.load(Ordering::Relaxed)),
    )?;
    let mut pipeline = Pipeline::replaying(views, args.ladder);
    pipeline.correlator.drop_strays = replay.header.drop_strays;
    let replayed = feed(&mut replay, &mut pipeline, &clock)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    if let Some(first) = pipeline.failed().first() {
        anyhow::bail!(
            "the output is incomplete: writing {} failed ({})",
            first.target,
            first.error
        );
    }
    Ok(replayed)
}

/// Sends every frame of `replay` through `pipeline`, then finishes it.
pub fn feed<R: Read>(
    replay: &mut Replay<R>,
    pipeline: &mut Pipeline,
    clock: &AtomicU64,
) -> anyhow::Result<Replayed> {
    let mut replayed = Replayed::default();
    let mut end: Option<(Counts, Vec<(String, u64)>)> = None;
    let cut = loop {
        let next = match replay.next_frame() {
            Ok(Some(next)) => next,
            Ok(None) => break end.is_none(),
            Err(e) => {
                // What was read is shown; the damage is told.
                eprintln!("tracer: the recording stops early: {e}");
                break true;
            }
        };
        match next {
            Next::Record(bytes) => {
                replayed.records += 1;
                pipeline.ingest(bytes);
            }
            Next::Frame(Frame::Record(bytes)) => pipeline.ingest(&bytes),
            Next::Frame(Frame::Drain(now)) => {
                clock.store(now, Ordering::Relaxed);
                pipeline.drain(now).map_err(output_error)?;
            }
            Next::Frame(Frame::Listener {
                pid,
                comm,
                fd,
                local,
                now_ns,
            }) => pipeline.adopt_listener(pid, &comm, fd, local, now_ns),
            Next::Frame(Frame::Place(pid, place)) => pipeline.replayed_place(pid, place),
            Next::Frame(Frame::Dropped { total, new }) => {
                pipeline.lost(&new);
                pipeline
                    .meta(&Meta::Dropped { total, new })
                    .map_err(output_error)?;
            }
            Next::Frame(Frame::Skipped { total, new }) => {
                pipeline
                    .meta(&Meta::Skipped {
                        total: &total,
                        new: &new,
                    })
                    .map_err(output_error)?;
            }
            Next::Frame(Frame::Finish { failures, skipped }) => end = Some((failures, skipped)),
        }
    };
    replayed.cut = cut;
    if cut {
        eprintln!(
            "tracer: the recording has no end (the run was killed or its disk filled): what it \
             holds is shown, the in-kernel failure counts are unknown"
        );
    }
    let (failures, skipped) = end.unwrap_or_default();
    pipeline.finish(failures, &skipped).map_err(output_error)?;
    Ok(replayed)
}
