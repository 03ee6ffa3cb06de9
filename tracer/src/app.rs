//! The tracer run: preflight, load, banner, event loop, summary. A closed stdout (`tracer |
//! head`) ends the run like Ctrl-C: everything is detached and the exit code is 0. With a
//! command (`tracer -- CMD`), the run is the command's: it starts once everything is attached,
//! the run ends when it exits, and its exit status is the tracer's.

use std::io::{self, BufWriter};
use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;
use tokio::signal::unix::{SignalKind, signal};
use tracer_common::failure::{FAILURE_KINDS, Failure};

use crate::cli::{Cli, ColorChoice, ViewOptions};
use crate::demo;
use crate::hooks::failures::Counts;
use crate::hooks::{self, Filter};
use crate::pipeline::Pipeline;
use crate::pipeline::recording::{Frame, Header, Recorder};
use crate::render::{
    Meta, View, banner,
    json::Json,
    ladder::Ladder,
    output::{Named, Output},
    pcap::Pcap,
    plot::Plot,
    summary::Summary,
    timeline::Timeline,
};
use crate::system::command::{self, Running};
use crate::system::{privileges, tracefs};

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

/// Runs the tracer until Ctrl-C, SIGTERM, `--duration`, the end of `--demo` or of the
/// command, or a closed stdout. Returns the exit code: 0, or the command's.
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    // First of all: a SIGINT or SIGTERM that arrives while the programs load (seconds on a
    // busy machine) is kept and ends the run once tracing starts, cleanly. Without a handler
    // yet, a process started with SIGINT ignored (a script's background job) would lose it.
    let stop = Stop {
        interrupt: signal(SignalKind::interrupt())?,
        terminate: signal(SignalKind::terminate())?,
    };
    let mut phases = crate::system::timings::Phases::start();
    privileges::check_privileges()?;
    crate::system::limits::ensure_fd_room()?;
    hooks::tier::check_forced(cli.probe_mode).map_err(|e| anyhow::anyhow!(e))?;
    phases.end("privileges, fd limit, forced tier");
    let mut filter = Filter {
        ports: {
            // The demo's ports are traced whatever else is.
            let mut ports = cli.ports.clone();
            if cli.demo.is_some() {
                ports.extend(cli.demo_ports());
                ports.sort_unstable();
                ports.dedup();
            }
            ports
        },
        pids: cli.pids.clone(),
        comm: cli.comm.clone(),
        emit_enter: !cli.json,
        packets: !cli.no_packets,
        syscalls: !cli.no_syscalls,
        snaplen: cli.payload_snaplen(),
        sample_gap_us: cli.sample_ms.saturating_mul(1000),
        probe_mode: cli.probe_mode,
        syscall_mode: cli.syscall_mode,
        map_entries: cli.map_entries.clone(),
        follow: cli.follow_children,
        cgroup: match &cli.cgroup {
            Some(path) => {
                let mount = crate::system::cgroup::cgroup2_mount()
                    .ok_or(crate::system::cgroup::ScopeError::NoHierarchy)?;
                Some(crate::system::cgroup::Scope::resolve(path, &mount)?)
            }
            None => None,
        },
        netns: cli
            .netns
            .as_deref()
            .map(crate::system::netns::resolve)
            .transpose()?,
    };
    let realtime_offset_ns = realtime_offset_ns();
    let views = views(
        &cli.view_options(),
        realtime_offset_ns,
        Box::new(monotonic_ns),
    )?;
    let recorder = cli
        .record
        .as_deref()
        .map(|path| {
            let header = Header {
                realtime_offset_ns,
                drop_strays: filter.netns.is_some() || filter.cgroup.is_some(),
                no_syscalls: cli.no_syscalls,
            };
            Recorder::create(path, header)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
        })
        .transpose()?;
    phases.end("filters, outputs");
    // Only once every argument and output file is known good: a bad one changes nothing.
    match tracefs::ensure_mounted()? {
        tracefs::Mounted::Already => {}
        tracefs::Mounted::Private => eprintln!(
            "tracer: mounted tracefs at {} in the tracer's own mount namespace (the host's \
             mounts are left as they were)",
            tracefs::TRACEFS
        ),
        tracefs::Mounted::Host => eprintln!(
            "tracer: mounted tracefs at {} (it stays mounted: a private mount namespace was \
             refused)",
            tracefs::TRACEFS
        ),
    }
    // The command is forked now, held until everything is attached: its pid is in the filter
    // from the start, and the kernel adds each process it starts.
    let held = match cli.run.as_slice() {
        [] => None,
        argv => {
            let user = command::invoking_user()?;
            let held = command::spawn_held(argv, user.as_ref())?;
            filter.pids.push(held.pid());
            filter.follow = true;
            Some((held, user))
        }
    };
    // On before anything is attached, so that every run is counted; off when the fd closes.
    let _stats_on = if cli.prog_stats {
        hooks::runs::enable_stats().map_err(|e| anyhow::anyhow!(e))?
    } else {
        None
    };
    phases.end("tracefs, command held");
    let mut loaded = hooks::load(&filter, &mut phases)?;
    crate::system::memory::release_startup_memory();
    let missing = loaded.missing_layers();
    let mut what = match &held {
        Some((held, user)) => format!(
            "{} (pid {}{}) and every process it starts",
            crate::render::text::visible(&cli.run[0].to_string_lossy()),
            held.pid(),
            user.as_ref()
                .map(|u| format!(", as uid {}", u.uid))
                .unwrap_or_default()
        ),
        None => what(&filter),
    };
    for layer in &loaded.layers_off {
        what.push_str(&format!(
            " ({} layer off: {})",
            layer.name(),
            layer.off_flag().unwrap_or_default()
        ));
    }
    if cli.timings {
        let _ = phases.write(&mut io::stderr().lock());
    }
    banner::write(&mut io::stderr().lock(), &what, &loaded.hooks, &missing);
    if cli.verifier_log {
        for (program, log) in &loaded.rejected {
            eprintln!("tracer: verifier log of {program}:\n{}", log.trim_end());
        }
    }
    let mut pipeline = Pipeline::new(views, cli.ladder);
    pipeline.correlator.drop_strays = filter.netns.is_some() || filter.cgroup.is_some();
    if let Some(recorder) = recorder {
        pipeline.record_to(recorder);
    }
    let now = monotonic_ns();
    for s in loaded.existing.iter().filter(|s| s.listening) {
        let local = crate::correlate::endpoint(s.laddr, s.lport);
        pipeline.adopt_listener(s.pid, &s.comm, s.fd, local, now);
    }
    let scope = filter.cgroup.clone();
    let result = trace(
        &cli,
        &mut loaded,
        &mut pipeline,
        &missing,
        stop,
        held,
        scope,
    )
    .await;
    // Read from the programs before they are unloaded.
    let skipped = loaded.skipped();
    let prog_stats = cli.prog_stats.then(|| loaded.prog_stats());
    let counted = result
        .as_ref()
        .map_or_else(|_| loaded.failures(), |end| end.failures);
    let failures = loaded.stop(counted);
    let finished = result.and_then(|end| {
        pipeline.finish(failures, &skipped).map_err(output_error)?;
        Ok(end)
    });
    for (reason, n) in Failure::ALL.iter().zip(failures) {
        if n > 0 {
            eprintln!("tracer: {n} {}", reason.what());
        }
    }
    for (program, n) in &skipped {
        eprintln!(
            "tracer: the kernel skipped {n} run(s) of {program} (another BPF program was running \
             on that CPU): events may be missing"
        );
    }
    if let Some(stats) = &prog_stats {
        let _ = crate::render::prog_stats::write(&mut io::stderr().lock(), stats);
    }
    loaded.detach();
    if let (Ok(_), [first, ..]) = (&finished, pipeline.failed()) {
        anyhow::bail!(
            "the output is incomplete: writing {} failed ({}); the other outputs are complete",
            first.target,
            first.error
        );
    }
    match finished {
        Ok(End {
            demo: Some(Err(e)), ..
        }) => anyhow::bail!(e),
        Ok(end) => Ok(end.command.unwrap_or(0)),
        // `tracer | head`: the reader has what it wanted.
        Err(e) if is_broken_pipe(&e) => Ok(0),
        Err(e) => Err(e),
    }
}

/// Tells the program runs the kernel skipped since `told`, if any: a `skipped` event in JSON, a
/// line per program on stderr otherwise (and a frame in the recording).
fn tell_skips(
    cli: &Cli,
    loaded: &hooks::Loaded,
    pipeline: &mut Pipeline,
    told: &mut Vec<(String, u64)>,
) -> anyhow::Result<()> {
    let total = loaded.skipped();
    let new = hooks::runs::skipped_since(&total, told);
    if new.is_empty() {
        return Ok(());
    }
    pipeline.record(&Frame::Skipped {
        total: total.clone(),
        new: new.clone(),
    });
    if cli.json {
        pipeline
            .meta(&Meta::Skipped {
                total: &total,
                new: &new,
            })
            .map_err(output_error)?;
    } else {
        for (program, n) in &new {
            let all = total
                .iter()
                .find(|(p, _)| p == program)
                .map_or(*n, |(_, n)| *n);
            eprintln!(
                "tracer: the kernel skipped {n} run(s) of {program} ({all} so far; another BPF \
                 program held that CPU): events may be missing"
            );
        }
    }
    *told = total;
    Ok(())
}

/// How the event loop ended, besides an error.
#[derive(Default)]
struct End {
    /// The demo's result, when it ran to its end.
    demo: Option<Result<(), String>>,
    /// The command's exit code, when it ran to its end.
    command: Option<u8>,
    /// What the programs had given up on when the trace ended, before the last records were
    /// read: what the ring buffer refuses after that (while the programs are detached, which
    /// takes a while) was written after the end and belongs to no trace.
    failures: Counts,
}

/// The signals that end a run, listened to from the start.
struct Stop {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

/// Whether `e` is a closed reader (`tracer | head`): a normal end, not an error.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.root_cause()
        .downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
}

/// A view could not write.
pub(crate) fn output_error(e: io::Error) -> anyhow::Error {
    anyhow::Error::new(e).context("writing the output failed")
}

/// The views `opts` asks for, in the order they write at the end. `realtime_offset_ns` dates
/// the kernel's timestamps (pcap); `clock` dates the JSON view's notices.
pub fn views(
    opts: &ViewOptions,
    realtime_offset_ns: i128,
    clock: Box<dyn Fn() -> u64>,
) -> anyhow::Result<Vec<Box<dyn View>>> {
    // A command keeps stdout for its own output.
    let target = match opts.output {
        Some(path) => Output::create(path)?,
        None if opts.command_runs => Output::Stderr(io::stderr()),
        None => Output::stdout(),
    };
    let color = match opts.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => target.is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let handle = || -> anyhow::Result<Output> {
        target
            .handle()
            .map_err(|e| anyhow::anyhow!("cannot write the output: {e}"))
    };
    let out = || handle().map(|h| BufWriter::with_capacity(1 << 16, h));
    let named = match (opts.output, opts.command_runs) {
        (Some(path), _) => Some(path.display().to_string()),
        (None, true) => Some("stderr".to_string()),
        (None, false) => None,
    };
    let mut views: Vec<Box<dyn View>> = Vec::new();
    if opts.json {
        let mut json = Json::new(out()?, clock);
        json.conns = !opts.no_summary;
        json.ladders = opts.ladder;
        views.push(Box::new(json));
    } else {
        let mut timeline = Timeline::new(out()?, color);
        timeline.syscalls = !opts.no_syscalls;
        views.push(Box::new(timeline));
        if opts.ladder {
            views.push(Box::new(Ladder::new(handle()?)));
        }
        if !opts.no_summary {
            views.push(Box::new(Summary::new(handle()?)));
        }
    }
    if let Some(target) = named {
        views = views
            .into_iter()
            .map(|v| Box::new(Named::new(v, target.clone())) as Box<dyn View>)
            .collect();
    }
    if let Some(path) = opts.pcap {
        let pcap = Pcap::create(path, realtime_offset_ns)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        views.push(Box::new(pcap));
    }
    if let Some(path) = opts.plot {
        let plot = Plot::create(path)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        views.push(Box::new(plot));
    }
    Ok(views)
}

/// The event loop. Returns the demo's result when the demo ran.
async fn trace(
    cli: &Cli,
    loaded: &mut hooks::Loaded,
    pipeline: &mut Pipeline,
    missing: &[&'static str],
    mut stop: Stop,
    held: Option<(command::Held, Option<command::Credentials>)>,
    scope: Option<crate::system::cgroup::Scope>,
) -> anyhow::Result<End> {
    pipeline
        .meta(&Meta::Ready {
            hooks: &loaded.hooks,
            missing_layers: missing,
            layers_off: &loaded.layers_off,
        })
        .map_err(output_error)?;
    let ring = loaded.ring_buffer()?;
    // SAFETY: the ring buffer owns its map fd, which stays open and unchanged until `ring`
    // (and with it the AsyncFd) is dropped.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("cannot watch the ring buffer: {e}"))?;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let deadline = cli.duration.map(Duration::from_secs_f64);
    let until = tokio::time::sleep(deadline.unwrap_or(Duration::from_secs(u32::MAX as u64)));
    tokio::pin!(until);
    let (demo_tx, mut demo_rx) = tokio::sync::oneshot::channel();
    if let Some(which) = cli.demo {
        let port = cli.demo_port();
        let impairment = cli.impairment();
        tokio::spawn(async move {
            let result = match which {
                demo::Demo::Echo => demo::run(port).await,
                demo::Demo::Loss => demo::loss::run_lab(port, &impairment).await,
            };
            let _ = demo_tx.send(result);
        });
    }
    // Everything is attached: the command may run.
    let command: Option<Running> = held.map(|(held, _)| held.release()).transpose()?;
    let mut exited = match command {
        Some(running) => tokio::task::spawn_blocking(move || running.wait()),
        None => tokio::task::spawn(std::future::pending()),
    };
    let mut end = End::default();
    let mut interrupts = 0;
    let mut reported = [0u64; FAILURE_KINDS as usize];
    // Cgroups created below --cgroup's after the start join the filter within a second.
    let mut cgroups_seen = std::time::Instant::now();
    let mut last_drop_notice = std::time::Instant::now() - Duration::from_secs(1);
    // Program runs the kernel skipped, as last told; asked once a second (a syscall per
    // program).
    let mut skips_told: Vec<(String, u64)> = Vec::new();
    let mut skips_seen = std::time::Instant::now();
    loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                collect(guard.get_inner_mut(), pipeline);
                guard.clear_ready();
            }
            _ = tick.tick() => {
                // Records are written without wakeups (see tracer-ebpf emit.rs): collect here.
                // Time moves on as far as the records read: all of them when the ring was
                // emptied; when it was not (a backlog), only as far as the newest one read, so
                // that nothing waiting for a record still in the ring is given up early.
                let now = if collect(ring.get_mut(), pipeline) {
                    monotonic_ns()
                } else {
                    pipeline.read_until_ns()
                };
                pipeline.drain(now).map_err(output_error)?;
                if let Some(scope) = &scope
                    && cgroups_seen.elapsed() >= Duration::from_secs(1)
                {
                    loaded.refresh_cgroups(scope)?;
                    cgroups_seen = std::time::Instant::now();
                }
                if skips_seen.elapsed() >= Duration::from_secs(1) {
                    tell_skips(cli, loaded, pipeline, &mut skips_told)?;
                    skips_seen = std::time::Instant::now();
                }
                // Losses are told as they happen, at most once a second.
                let total = loaded.failures();
                if total != reported && last_drop_notice.elapsed() >= Duration::from_secs(1) {
                    let new: [u64; FAILURE_KINDS as usize] =
                        std::array::from_fn(|i| total[i] - reported[i]);
                    pipeline.record(&Frame::Dropped { total, new });
                    pipeline.lost(&new);
                    if cli.json {
                        pipeline
                            .meta(&Meta::Dropped { total, new })
                            .map_err(output_error)?;
                    } else {
                        for ((reason, n), all) in Failure::ALL.iter().zip(new).zip(total) {
                            if n > 0 {
                                eprintln!("tracer: {n} {} ({all} so far)", reason.what());
                            }
                        }
                    }
                    reported = total;
                    last_drop_notice = std::time::Instant::now();
                }
            }
            // With a command, Ctrl-C reached it too (one process group): the run ends when it
            // exits. A second one ends the run now, leaving it running.
            _ = stop.interrupt.recv() => {
                interrupts += 1;
                if command.is_none() || interrupts > 1 {
                    break;
                }
                eprintln!("tracer: waiting for the command to exit (Ctrl-C again to stop tracing now)");
            }
            // A SIGTERM meant for the run is passed on to the command, whose end ends it.
            _ = stop.terminate.recv() => {
                interrupts += 1;
                match command {
                    Some(running) if interrupts == 1 => running.signal(libc::SIGTERM),
                    _ => break,
                }
            }
            _ = &mut until => break,
            result = &mut demo_rx, if cli.demo.is_some() && end.demo.is_none() => {
                end.demo = Some(result.unwrap_or(Err("demo task ended".into())));
                // Let the last state changes and records arrive; collected below.
                tokio::time::sleep(Duration::from_millis(200)).await;
                break;
            }
            code = &mut exited, if command.is_some() && end.command.is_none() => {
                end.command = Some(code.unwrap_or(1));
                tokio::time::sleep(Duration::from_millis(200)).await;
                break;
            }
        }
    }
    end.failures = loaded.failures();
    // What the ring buffer holds now (under load the programs keep writing: a ring's worth).
    for _ in 0..RING_WORTH {
        if collect(ring.get_mut(), pipeline) {
            break;
        }
    }
    Ok(end)
}

/// Records read from the ring buffer at most before the event loop looks at its clock,
/// signals and outputs again: a backlog must not keep it from rendering, releasing what
/// waits, or stopping.
const COLLECT_MAX: usize = 16384;
/// Calls of [`collect`] that read a full ring buffer's worth of the smallest records.
const RING_WORTH: usize = 16;

/// Hands the records waiting in the ring buffer to the pipeline, at most [`COLLECT_MAX`];
/// whether it emptied the ring.
fn collect(ring: &mut RingBuf<MapData>, pipeline: &mut Pipeline) -> bool {
    for _ in 0..COLLECT_MAX {
        match ring.next() {
            Some(item) => pipeline.ingest(&item),
            None => return true,
        }
    }
    false
}

/// What the filter traces, in words.
fn what(filter: &Filter) -> String {
    let mut what = Vec::new();
    if !filter.ports.is_empty() {
        what.push(format!("port {}", join(&filter.ports)));
    }
    if !filter.pids.is_empty() {
        what.push(format!("pid {}", join(&filter.pids)));
    }
    if let Some(c) = &filter.comm {
        what.push(format!("comm {}", crate::render::text::visible(c)));
    }
    if let Some(netns) = filter.netns {
        what.push(format!("netns {netns}"));
    }
    if let Some(scope) = &filter.cgroup {
        what.push(format!(
            "cgroup {}",
            crate::render::text::visible(&scope.path)
        ));
    }
    if what.is_empty() {
        "all TCP".to_string()
    } else {
        what.join(", ")
    }
}

fn join<T: ToString>(v: &[T]) -> String {
    v.iter().map(T::to_string).collect::<Vec<_>>().join(",")
}
