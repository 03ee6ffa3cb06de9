//! The tracer run: preflight, load, banner, event loop, summary.

use std::io::{self, BufWriter, IsTerminal, Write};
use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use serde_json::{Map, Value, json};
use tokio::io::unix::AsyncFd;
use tokio::signal::unix::{SignalKind, signal};

use crate::cli::{Cli, ColorChoice};
use crate::loader::{self, Filter, HookStatus, Loaded};
use crate::pcap::PcapWriter;
use crate::pipeline::{Pipeline, View};
use crate::render::{json as json_view, ladder, summary, timeline::Timeline};
use crate::{demo, preflight, tiers, tracefs};

/// The kernel's monotonic clock, the one `bpf_ktime_get_ns` reads.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Wall-clock time minus the monotonic clock, to date kernel timestamps.
fn realtime_offset_ns() -> i128 {
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0);
    wall - i128::from(monotonic_ns())
}

/// Runs the tracer until Ctrl-C, SIGTERM, `--duration` or the end of `--demo`.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    preflight::check_privileges()?;
    tiers::check_forced(cli.probe_mode).map_err(|e| anyhow::anyhow!(e))?;
    if tracefs::ensure_mounted()? {
        eprintln!("tracer: mounted tracefs at {}", tracefs::TRACEFS);
    }
    let filter = Filter {
        ports: if cli.demo && cli.ports.is_empty() {
            vec![cli.demo_port()]
        } else {
            cli.ports.clone()
        },
        pids: cli.pids.clone(),
        comm: cli.comm.clone(),
        emit_enter: !cli.json,
        packets: !cli.no_packets,
        snaplen: cli.payload_snaplen(),
        probe_mode: cli.probe_mode,
    };
    let mut loaded = loader::load(&filter)?;
    banner(&filter, &loaded);

    let color = match cli.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let stdout = io::stdout();
    let view = if cli.json {
        View::Json(BufWriter::with_capacity(1 << 16, stdout))
    } else {
        View::Timeline(Timeline::new(
            BufWriter::with_capacity(1 << 16, stdout),
            color,
        ))
    };
    let mut pipeline = Pipeline::new(view);
    pipeline.correlator.keep_ladder = cli.ladder;
    if let Some(path) = &cli.pcap {
        let pcap = PcapWriter::create(path, realtime_offset_ns())
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        pipeline.set_pcap(pcap);
    }
    if let View::Json(out) = pipeline.view() {
        json_view::write_meta(out, monotonic_ns(), "ready", ready_fields(&loaded))?;
        out.flush()?;
    }

    let ring = loaded.ring_buffer()?;
    // SAFETY: the ring buffer owns its map fd, which stays open and unchanged until `ring`
    // (and with it the AsyncFd) is dropped.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("cannot watch the ring buffer: {e}"))?;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let deadline = cli.duration.map(Duration::from_secs_f64);
    let until = tokio::time::sleep(deadline.unwrap_or(Duration::from_secs(u32::MAX as u64)));
    tokio::pin!(until);
    let (demo_tx, mut demo_rx) = tokio::sync::oneshot::channel();
    if cli.demo {
        let port = cli.demo_port();
        tokio::spawn(async move {
            let _ = demo_tx.send(demo::run(port).await);
        });
    }
    let mut reported_drops = 0;
    let mut demo_result = None;
    loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                collect(guard.get_inner_mut(), &mut pipeline);
                guard.clear_ready();
            }
            _ = tick.tick() => {
                // Records are written without wakeups (see tracer-ebpf emit.rs): collect here.
                collect(ring.get_mut(), &mut pipeline);
                pipeline.drain(monotonic_ns())?;
                let dropped = loaded.dropped();
                if dropped > reported_drops && !cli.json {
                    eprintln!("tracer: {} event(s) dropped: the ring buffer was full", dropped - reported_drops);
                    reported_drops = dropped;
                }
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = &mut until => break,
            result = &mut demo_rx, if cli.demo && demo_result.is_none() => {
                demo_result = Some(result.unwrap_or(Err("demo task ended".into())));
                // Let the last state changes and records arrive; collected below.
                tokio::time::sleep(Duration::from_millis(200)).await;
                break;
            }
        }
    }
    // Anything still in the ring buffer.
    collect(ring.get_mut(), &mut pipeline);
    pipeline.drain_all()?;
    let dropped = loaded.dropped();
    let pcap_packets = pipeline.pcap().map(|p| p.packets);
    let ladders = cli.ladder.then(|| ladder::all(&pipeline.correlator));
    let conns = pipeline.correlator.all();
    let (events, malformed) = (pipeline.events, pipeline.malformed);
    let total = pipeline.correlator.total;
    let summary_json = (cli.json).then(|| summary::json(&conns));
    let summary_text =
        (!cli.json && !cli.no_summary).then(|| summary::table(&conns, events, dropped));
    match pipeline.view() {
        View::Json(out) => {
            let mut fields = Map::new();
            fields.insert("connections".into(), total.into());
            fields.insert("events".into(), events.into());
            fields.insert("dropped".into(), dropped.into());
            fields.insert("malformed".into(), malformed.into());
            if !cli.no_summary {
                fields.insert("conns".into(), summary_json.unwrap_or(Value::Null));
            }
            if let Some(text) = ladders {
                fields.insert("ladders".into(), text.into());
            }
            json_view::write_meta(out, monotonic_ns(), "summary", fields)?;
            out.flush()?;
        }
        View::Timeline(t) => {
            if let Some(text) = ladders {
                t.text(&text)?;
            }
            if let Some(text) = summary_text {
                t.text(&text)?;
            }
            t.flush()?;
        }
    }
    if let (Some(path), Some(n)) = (&cli.pcap, pcap_packets) {
        eprintln!("tracer: wrote {n} segment(s) to {}", path.display());
    }
    if dropped > 0 {
        eprintln!("tracer: {dropped} event(s) were dropped because the ring buffer was full");
    }
    loaded.detach();
    if let Some(Err(e)) = demo_result {
        anyhow::bail!(e);
    }
    Ok(())
}

/// Hands every record waiting in the ring buffer to the pipeline.
fn collect<W: Write>(ring: &mut RingBuf<MapData>, pipeline: &mut Pipeline<W>) {
    while let Some(item) = ring.next() {
        pipeline.ingest(&item);
    }
}

fn ready_fields(loaded: &Loaded) -> Map<String, Value> {
    let hooks: Vec<Value> = loaded
        .hooks
        .iter()
        .map(|h| {
            json!({
                "hook": h.name,
                "layer": h.layer,
                "tier": h.tier,
                "via": h.via,
                "skipped": h.skipped,
                "error": h.error,
            })
        })
        .collect();
    let mut m = Map::new();
    m.insert("hooks".into(), Value::Array(hooks));
    m.insert("missing_layers".into(), json!(loaded.missing_layers()));
    m
}

fn banner(filter: &Filter, loaded: &Loaded) {
    let mut what = Vec::new();
    if !filter.ports.is_empty() {
        what.push(format!("port {}", join(&filter.ports)));
    }
    if !filter.pids.is_empty() {
        what.push(format!("pid {}", join(&filter.pids)));
    }
    if let Some(c) = &filter.comm {
        what.push(format!("comm {c}"));
    }
    let what = if what.is_empty() {
        "all TCP".to_string()
    } else {
        what.join(", ")
    };
    let mut err = io::stderr().lock();
    let _ = writeln!(err, "tracer: tracing {what}; hooks:");
    for h in &loaded.hooks {
        let _ = writeln!(err, "{}", hook_line(h));
    }
    if let Some(h) = loaded.hooks.iter().find(|h| !h.skipped.is_empty()) {
        let _ = writeln!(err, "  better tiers not used: {}", h.skipped.join("; "));
    }
    for layer in loaded.missing_layers() {
        let _ = writeln!(err, "  layer {layer}: MISSING, no hook attached");
    }
    let _ = writeln!(err, "tracer: ready (Ctrl-C to stop)");
}

fn hook_line(h: &HookStatus) -> String {
    match (&h.tier, &h.via) {
        (Some(tier), Some(via)) => format!("  {:<8} {:<19} {:<11} {via}", h.layer, h.name, tier),
        _ => format!(
            "  {:<8} {:<19} {:<11} {}",
            h.layer,
            h.name,
            "MISSING",
            h.error.as_deref().unwrap_or("not attached")
        ),
    }
}

fn join<T: ToString>(v: &[T]) -> String {
    v.iter().map(T::to_string).collect::<Vec<_>>().join(",")
}
