//! `tracer-replay-bench FILE`: the consumer measured on its own — a recording made with
//! `tracer --record` read into memory and sent through decode → correlate → render (the JSON
//! view, or the timeline and summary) into a sink, on one thread, as often as asked. Prints one
//! JSON line: records, seconds, records/s, and the heap allocations made (counted by this
//! binary's allocator), per record and in the steady state (the last pass, when every pass
//! replays the same input).

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{self, BufWriter};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tracer::pipeline::Pipeline;
use tracer::pipeline::recording::Replay;
use tracer::render::{View, json::Json, summary::Summary, timeline::Timeline};

/// The system allocator, counting.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static ALLOCATED_BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        ALLOCATED_BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: the caller's layout, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: a pointer System allocated with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        ALLOCATED_BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// What a pass measured.
struct Pass {
    records: u64,
    secs: f64,
    allocations: u64,
}

fn pass(input: &[u8], view: &str) -> Result<Pass, String> {
    let mut replay = Replay::new(input).map_err(|e| e.to_string())?;
    let sink = || BufWriter::with_capacity(1 << 16, io::sink());
    let views: Vec<Box<dyn View>> = match view {
        "json" => vec![Box::new(Json::new(sink(), Box::new(|| 0)))],
        "timeline" => vec![
            Box::new(Timeline::new(sink(), false)),
            Box::new(Summary::new(sink())),
        ],
        other => return Err(format!("unknown view {other:?}: json or timeline")),
    };
    let mut pipeline = Pipeline::replaying(views, false);
    pipeline.correlator.drop_strays = replay.header.drop_strays;
    let clock = AtomicU64::new(0);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let started = Instant::now();
    let replayed =
        tracer::replay::feed(&mut replay, &mut pipeline, &clock).map_err(|e| e.to_string())?;
    Ok(Pass {
        records: replayed.records,
        secs: started.elapsed().as_secs_f64(),
        allocations: ALLOCATIONS.load(Ordering::Relaxed) - before,
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(file), view, passes) = (
        args.first(),
        args.get(1).map_or("json", String::as_str),
        args.get(2).and_then(|n| n.parse::<u32>().ok()).unwrap_or(3),
    ) else {
        eprintln!("usage: tracer-replay-bench FILE [json|timeline] [PASSES]");
        return ExitCode::from(2);
    };
    let input = match std::fs::read(file) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("error: {file}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut best: Option<Pass> = None;
    let mut last_allocations = 0;
    for _ in 0..passes.max(1) {
        match pass(&input, view) {
            Ok(p) => {
                last_allocations = p.allocations;
                if best.as_ref().is_none_or(|b| p.secs < b.secs) {
                    best = Some(p);
                }
            }
            Err(e) => {
                eprintln!("error: {file}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let Some(best) = best else {
        return ExitCode::FAILURE;
    };
    println!(
        "{{\"view\":\"{view}\",\"records\":{},\"secs\":{:.6},\"records_per_s\":{:.0},\
         \"allocations\":{},\"allocations_per_record\":{:.3},\"bytes\":{}}}",
        best.records,
        best.secs,
        best.records as f64 / best.secs.max(1e-9),
        last_allocations,
        last_allocations as f64 / best.records.max(1) as f64,
        input.len()
    );
    ExitCode::SUCCESS
}
