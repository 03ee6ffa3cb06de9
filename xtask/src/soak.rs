//! `cargo xtask soak`: the tracer under sustained abuse while traffic flows — connection churn
//! (≈2,400 connections/s here), ping-pong, processes SIGKILLed mid-connection, RST storms,
//! refused connects, half-closed connections — and restarted several times without the
//! traffic pausing. Each tracer run must end cleanly (no panic), its summary must count
//! exactly the event lines it printed and every drop it told as it happened, its memory must
//! stay flat after warming up, and once the last run ends every BPF program, map and link it
//! made must be gone. Prints what it measured; fails on any violation.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// Connections a second the churn makes: the ≈2,400 at which the tracer once dropped
/// 880,876 events in five minutes (issue #11), now a rate it must keep up with.
const CHURN_RATE: u32 = 2_400;

/// What to run.
pub struct Options {
    /// The whole soak, in seconds.
    pub secs: f64,
    /// Tracer runs, one after the other, while the traffic goes on.
    pub runs: usize,
    /// Accept records lost to a full ring buffer (they must still be counted and told).
    pub allow_drops: bool,
    /// Where each run's recording is kept, if anywhere.
    pub record: Option<std::path::PathBuf>,
}

/// The ports the traffic uses, all traced.
struct Ports {
    churn: u16,
    pingpong: u16,
    killed: u16,
    storm: u16,
    refused: u16,
}

/// Runs the soak; `root` is the workspace.
pub fn run(root: &Path, opts: &Options) -> anyhow::Result<()> {
    let bin = root.join("target/release");
    let ports = Ports {
        churn: free_port()?,
        pingpong: free_port()?,
        killed: free_port()?,
        storm: free_port()?,
        refused: free_port()?,
    };
    if let Some(dir) = &opts.record {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let before = KernelObjects::now();
    println!(
        "soak: {:.0} s, {} tracer run(s), traffic on ports {}, {}, {}, {}, {}",
        opts.secs, opts.runs, ports.churn, ports.pingpong, ports.killed, ports.storm, ports.refused
    );
    let stop = Arc::new(AtomicBool::new(false));
    let faults = Arc::new(Faults::default());
    // The traffic outlives every tracer run, and a second attempt of each, by a margin at both
    // ends (a tracer's start and stop take 3 s here); it is stopped when the runs are done.
    let traffic_secs = 2.0 * (opts.secs + 5.0 * opts.runs as f64) + 6.0;
    let loadgen = bin.join("tracer-loadgen");
    let mut churn = Command::new(&loadgen)
        .args([
            "churn",
            "--port",
            &ports.churn.to_string(),
            "--clients",
            "4",
        ])
        // The rate the hardening issue measured its drops at, paced so that every run sees it.
        .args(["--rate", &CHURN_RATE.to_string()])
        .args(["--secs", &traffic_secs.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .context("starting tracer-loadgen (cargo xtask build makes it)")?;
    let mut pingpong = Command::new(&loadgen)
        .args([
            "pingpong",
            "--port",
            &ports.pingpong.to_string(),
            "--conns",
            "2",
        ])
        // Paced: ping-pong flat out measures capacity (cargo xtask bench), not endurance.
        .args(["--rate", "500"])
        .args(["--secs", &traffic_secs.to_string()])
        .stdout(Stdio::null())
        .spawn()?;
    let fault_thread = {
        let (stop, faults) = (stop.clone(), faults.clone());
        let (killed, storm, refused) = (ports.killed, ports.storm, ports.refused);
        let loadgen = loadgen.clone();
        std::thread::spawn(move || inject_faults(&loadgen, killed, storm, refused, &stop, &faults))
    };
    std::thread::sleep(Duration::from_secs(2));
    let port_args: Vec<String> = [
        ports.churn,
        ports.pingpong,
        ports.killed,
        ports.storm,
        ports.refused,
    ]
    .iter()
    .flat_map(|p| ["--port".to_string(), p.to_string()])
    .collect();
    let per_run = Duration::from_secs_f64(opts.secs / opts.runs as f64);
    let mut problems = Vec::new();
    let mut reports = Vec::new();
    let mut flaky = Vec::new();
    for i in 1..=opts.runs {
        let record = opts
            .record
            .as_ref()
            .map(|dir| dir.join(format!("run-{i}.rec")));
        let attempt = || one_run(&bin.join("tracer"), &port_args, per_run, record.as_deref());
        match attempt() {
            Ok(first) => {
                let said = first.problems(opts.allow_drops);
                // Records lost and nothing else wrong: the consumer fell behind, which a
                // stall of this shared 2-core machine can cause as well as a slow tracer.
                // As in vm-test, such a run is run once more, and a loss twice fails.
                let report = if !said.is_empty() && first.only_losses(opts.allow_drops) {
                    match attempt() {
                        Ok(second) if second.problems(opts.allow_drops).is_empty() => {
                            flaky.push(format!(
                                "run {i}: {} (flaky: none when run again)",
                                said.join(", ")
                            ));
                            second
                        }
                        Ok(second) => {
                            problems.extend(said.iter().map(|p| format!("run {i}: {p}")));
                            problems.extend(
                                second
                                    .problems(opts.allow_drops)
                                    .into_iter()
                                    .map(|p| format!("run {i}, run again: {p}")),
                            );
                            second
                        }
                        Err(e) => {
                            problems.push(format!("run {i}, run again: {e:#}"));
                            first
                        }
                    }
                } else {
                    problems.extend(said.into_iter().map(|p| format!("run {i}: {p}")));
                    first
                };
                reports.push(report);
            }
            Err(e) => problems.push(format!("run {i}: {e:#}")),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = fault_thread.join();
    for child in [&mut churn, &mut pingpong] {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let _ = child.wait();
    }
    for (i, r) in reports.iter().enumerate() {
        println!(
            "soak: run {}: {} event line(s) ({} not shown), {} connection(s), dropped {}, other failures {}, \
             RSS {} KiB after warm-up, {} KiB at the end (max {} KiB)",
            i + 1,
            r.lines,
            r.unshown,
            r.connections,
            r.dropped,
            r.other_failures,
            r.rss_warm_kib,
            r.rss_end_kib,
            r.rss_max_kib
        );
    }
    for f in &flaky {
        println!("soak: {f}");
    }
    println!(
        "soak: faults injected: {} process(es) killed mid-connection, {} reset(s), {} refused \
         connect(s), {} half-closed connection(s)",
        faults.killed.load(Ordering::Relaxed),
        faults.resets.load(Ordering::Relaxed),
        faults.refused.load(Ordering::Relaxed),
        faults.half_closed.load(Ordering::Relaxed)
    );
    // The kernel frees programs and maps after an RCU grace period: give it a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    let leaked = loop {
        let leaked = KernelObjects::now().minus(&before);
        if leaked.is_empty() || Instant::now() > deadline {
            break leaked;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if !leaked.is_empty() {
        problems.push(format!("left in the kernel after the last run: {leaked}"));
    }
    if !problems.is_empty() {
        bail!("soak failed:\n  {}", problems.join("\n  "));
    }
    println!("soak: passed");
    Ok(())
}

/// The most memory a saturated run (one that dropped records) may use.
const SATURATED_RSS_KIB: u64 = 256 * 1024;

/// What one tracer run did.
#[derive(Default)]
struct Report {
    /// Non-meta lines printed.
    lines: u64,
    /// The summary's `events`.
    events: u64,
    /// The summary's `unshown`: counted, not printed.
    unshown: u64,
    connections: u64,
    dropped: u64,
    /// Every other failure reason, summed.
    other_failures: u64,
    /// The highest `dropped` a meta notice told during the run.
    told_dropped: u64,
    exit_ok: bool,
    panicked: bool,
    rss_warm_kib: u64,
    rss_end_kib: u64,
    rss_max_kib: u64,
}

impl Report {
    /// Whether every problem of this run is records lost: dropped, or counted and not shown.
    fn only_losses(&self, allow_drops: bool) -> bool {
        self.problems(allow_drops).len() == self.losses(allow_drops).len()
    }

    /// Records lost, when the run must lose none.
    fn losses(&self, allow_drops: bool) -> Vec<String> {
        let mut p = Vec::new();
        if self.unshown > 0 && !allow_drops {
            p.push(format!("{} event(s) not shown", self.unshown));
        }
        if self.dropped > 0 && !allow_drops {
            p.push(format!("{} record(s) dropped (target: none)", self.dropped));
        }
        p
    }

    /// Everything wrong with the run, losses included.
    fn problems(&self, allow_drops: bool) -> Vec<String> {
        let mut p = self.losses(allow_drops);
        if !self.exit_ok {
            p.push("the tracer did not exit with status 0".to_string());
        }
        if self.panicked {
            p.push("the tracer panicked".to_string());
        }
        if self.events != self.lines + self.unshown {
            p.push(format!(
                "the summary counts {} events ({} not shown), {} event lines were printed",
                self.events, self.unshown, self.lines
            ));
        }
        if self.told_dropped > self.dropped {
            p.push(format!(
                "a notice told {} dropped, the summary {}",
                self.told_dropped, self.dropped
            ));
        }
        if self.other_failures > 0 {
            p.push(format!(
                "{} in-kernel failure(s) other than drops",
                self.other_failures
            ));
        }
        if self.dropped == 0 {
            // Flat after warming up: a quarter more, or 8 MiB, whichever is larger.
            let bound = (self.rss_warm_kib * 5 / 4).max(self.rss_warm_kib + 8 * 1024);
            if self.rss_end_kib > bound {
                p.push(format!(
                    "RSS grew from {} KiB after warm-up to {} KiB",
                    self.rss_warm_kib, self.rss_end_kib
                ));
            }
        } else if self.rss_max_kib > SATURATED_RSS_KIB {
            // Saturated (records dropped): what waits grows with the backlog; bounded, not flat.
            p.push(format!(
                "RSS reached {} KiB while saturated (bound {} KiB)",
                self.rss_max_kib, SATURATED_RSS_KIB
            ));
        }
        p
    }
}

/// Runs the tracer for `length` while the traffic flows, then stops it with SIGINT.
fn one_run(
    tracer: &Path,
    port_args: &[String],
    length: Duration,
    record: Option<&Path>,
) -> anyhow::Result<Report> {
    let mut child = Command::new(tracer)
        .arg("--json")
        .args(port_args)
        .args(record.map(|file| format!("--record={}", file.display())))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting tracer")?;
    let stdout = child.stdout.take().context("tracer stdout")?;
    let stderr = child.stderr.take().context("tracer stderr")?;
    let reader = std::thread::spawn(move || count_lines(stdout));
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = BufReader::new(stderr).read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let mut rss = Vec::new();
    while started.elapsed() < length {
        std::thread::sleep(Duration::from_millis(500));
        if let Some(kib) = rss_kib(child.id()) {
            rss.push((started.elapsed(), kib));
        }
    }
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait()?;
    let counted = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader panicked"))??;
    let stderr = errors.join().unwrap_or_default();
    let summary = counted.summary.context("no summary line")?;
    let num = |key: &str| summary[key].as_u64().unwrap_or(0);
    let failures = &summary["failures"];
    let other_failures = failures
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, _)| *k != "ring_full")
                .filter_map(|(_, v)| v.as_u64())
                .sum()
        })
        .unwrap_or(0);
    // Warm: the most it used in the middle third of the run (a backlog under saturation
    // takes a few seconds to reach its plateau); the end must not be far above it.
    let warm = rss
        .iter()
        .filter(|(t, _)| *t >= length / 3 && *t <= length * 2 / 3)
        .map(|&(_, kib)| kib)
        .max()
        .unwrap_or(0);
    Ok(Report {
        lines: counted.lines,
        events: num("events"),
        unshown: num("unshown"),
        connections: num("connections"),
        dropped: num("dropped"),
        other_failures,
        told_dropped: counted.told_dropped,
        exit_ok: status.success(),
        panicked: stderr.contains("panicked"),
        rss_warm_kib: warm,
        rss_end_kib: rss.last().map_or(0, |&(_, kib)| kib),
        rss_max_kib: rss.iter().map(|&(_, kib)| kib).max().unwrap_or(0),
    })
}

/// What the reader saw of the tracer's output.
struct Counted {
    lines: u64,
    told_dropped: u64,
    summary: Option<serde_json::Value>,
}

/// Counts the event lines (all but `meta`) and keeps what the meta lines say.
fn count_lines(stdout: impl Read) -> anyhow::Result<Counted> {
    let mut reader = BufReader::with_capacity(1 << 20, stdout);
    let mut line = Vec::new();
    let mut counted = Counted {
        lines: 0,
        told_dropped: 0,
        summary: None,
    };
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(counted);
        }
        // `{"ts_ns":N,"layer":"meta",...`: the layer is within the first 64 bytes.
        let head = &line[..line.len().min(64)];
        if !head.windows(6).any(|w| w == b"\"meta\"") {
            counted.lines += 1;
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(&line)?;
        match v["event"].as_str() {
            Some("dropped") => {
                counted.told_dropped = counted.told_dropped.max(v["dropped"].as_u64().unwrap_or(0));
            }
            Some("summary") => counted.summary = Some(v),
            _ => {}
        }
    }
}

/// What the fault thread did.
#[derive(Default)]
struct Faults {
    killed: AtomicU64,
    resets: AtomicU64,
    refused: AtomicU64,
    half_closed: AtomicU64,
}

/// Until `stop`: a ping-pong process SIGKILLed mid-connection on `killed`, bursts of
/// connections reset (SO_LINGER 0) and half-closed on `storm`, and connects refused on
/// `refused` (nothing listens there).
fn inject_faults(
    loadgen: &Path,
    killed: u16,
    storm: u16,
    refused: u16,
    stop: &AtomicBool,
    faults: &Faults,
) {
    let listener = match TcpListener::bind(("127.0.0.1", storm)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("soak: cannot listen on {storm}: {e}");
            return;
        }
    };
    let server: JoinHandle<()> = std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = stream;
                let mut buf = [0u8; 64];
                while matches!(s.read(&mut buf), Ok(n) if n > 0) {
                    let _ = s.write_all(&buf);
                }
            });
        }
    });
    let mut half_open: Vec<TcpStream> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        if let Ok(mut victim) = Command::new(loadgen)
            .args([
                "pingpong",
                "--port",
                &killed.to_string(),
                "--conns",
                "2",
                "--secs",
                "30",
                "--rate",
                "500",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            std::thread::sleep(Duration::from_millis(300));
            let _ = victim.kill();
            let _ = victim.wait();
            faults.killed.fetch_add(1, Ordering::Relaxed);
        }
        for _ in 0..20 {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", storm)) {
                let _ = s.write_all(&[1u8; 64]);
                // Closed right away: RST.
                if reset_on_close(&s) {
                    faults.resets.fetch_add(1, Ordering::Relaxed);
                }
            }
            if TcpStream::connect(("127.0.0.1", refused)).is_err() {
                faults.refused.fetch_add(1, Ordering::Relaxed);
            }
        }
        // Half-closed: our side said FIN and waits; the server's side stays open a while.
        for _ in 0..5 {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", storm))
                && s.shutdown(Shutdown::Write).is_ok()
            {
                half_open.push(s);
                faults.half_closed.fetch_add(1, Ordering::Relaxed);
            }
        }
        if half_open.len() > 50 {
            half_open.drain(..25);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(half_open);
    drop(server);
}

/// Makes closing `s` send RST instead of FIN (SO_LINGER with a zero timeout).
fn reset_on_close(s: &TcpStream) -> bool {
    use std::os::fd::AsRawFd as _;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we own, with a correctly sized linger struct.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        ) == 0
    }
}

/// The resident set of process `pid`, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

/// The ids of every BPF program, map and link in the kernel.
struct KernelObjects {
    progs: BTreeSet<u32>,
    maps: BTreeSet<u32>,
    links: BTreeSet<u32>,
}

impl KernelObjects {
    fn now() -> Self {
        /// `BPF_PROG_GET_NEXT_ID`, `BPF_MAP_GET_NEXT_ID`, `BPF_LINK_GET_NEXT_ID`.
        const PROGS: libc::c_long = 11;
        const MAPS: libc::c_long = 12;
        const LINKS: libc::c_long = 31;
        Self {
            progs: ids(PROGS),
            maps: ids(MAPS),
            links: ids(LINKS),
        }
    }

    /// What is here now and was not in `before`.
    fn minus(&self, before: &Self) -> String {
        let mut out = Vec::new();
        for (what, now, then) in [
            ("program", &self.progs, &before.progs),
            ("map", &self.maps, &before.maps),
            ("link", &self.links, &before.links),
        ] {
            let new: Vec<String> = now.difference(then).map(u32::to_string).collect();
            if !new.is_empty() {
                out.push(format!("{what} id(s) {}", new.join(", ")));
            }
        }
        out.join("; ")
    }
}

/// Walks the kernel's ids with a `BPF_*_GET_NEXT_ID` command.
fn ids(cmd: libc::c_long) -> BTreeSet<u32> {
    // The union bpf_attr's first members for these commands: start_id, next_id, open_flags.
    #[repr(C)]
    #[derive(Default)]
    struct Attr {
        start_id: u32,
        next_id: u32,
        open_flags: u32,
    }
    let mut out = BTreeSet::new();
    let mut attr = Attr::default();
    loop {
        // SAFETY: bpf(2) with a GET_NEXT_ID command reads start_id and writes next_id in
        // `attr`, which is as large as the size passed.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd,
                &mut attr as *mut Attr,
                size_of::<Attr>() as libc::c_uint,
            )
        };
        if r != 0 {
            return out;
        }
        out.insert(attr.next_id);
        attr.start_id = attr.next_id;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean() -> Report {
        Report {
            lines: 10,
            events: 10,
            exit_ok: true,
            rss_warm_kib: 40_000,
            rss_end_kib: 40_000,
            rss_max_kib: 40_000,
            ..Report::default()
        }
    }

    #[test]
    fn only_a_run_that_lost_records_and_nothing_else_is_run_again() {
        assert!(clean().problems(false).is_empty());
        let lost = Report {
            dropped: 5,
            told_dropped: 5,
            ..clean()
        };
        assert_eq!(lost.problems(false).len(), 1);
        assert!(lost.only_losses(false));
        let lost_and_panicked = Report {
            panicked: true,
            ..lost
        };
        assert!(!lost_and_panicked.only_losses(false));
        let grew = Report {
            rss_end_kib: 90_000,
            ..clean()
        };
        assert!(!grew.only_losses(false));
    }
}
