//! `cargo xtask bench`: tracer's overhead on traced applications, its event capacity, startup
//! and memory, side by side with bpftrace (Debian's package) in the same run. Prints a table
//! and rewrites BENCHMARKS.md. Figures are medians with min and max; comparisons are ratios
//! taken in the same run, since absolute numbers drift on shared machines.

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

mod tiers;

pub use tiers::KERNEL as GUEST_KERNEL;

pub use tiers::in_guest;

/// How long and how often each measurement runs.
struct Plan {
    runs: usize,
    secs: f64,
}

/// A traced-or-not configuration of the workloads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Config {
    Untraced,
    /// tracer in its best tier, its filter matching the workload.
    TracerMatching,
    /// tracer in its best tier, its filter matching nothing of the workload.
    TracerNotMatching,
    /// tracer forced to the tracepoint tier in every layer, matching (a guest whose kernel
    /// has fentry).
    TracepointMatching,
    /// tracer forced to the tracepoint tier, matching nothing.
    TracepointNotMatching,
    /// tracer without its syscall layer, matching nothing.
    NoSyscallsNotMatching,
    Bpftrace,
}

impl Config {
    /// The workloads' configurations on this host.
    const HOST: [Config; 4] = [
        Self::Untraced,
        Self::TracerMatching,
        Self::TracerNotMatching,
        Self::Bpftrace,
    ];

    /// The bystander's configurations on this host.
    const HOST_BYSTANDER: [Config; 4] = [
        Self::Untraced,
        Self::TracerNotMatching,
        Self::NoSyscallsNotMatching,
        Self::Bpftrace,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Untraced => "untraced",
            Self::TracerMatching => "tracer --port P --json",
            Self::TracerNotMatching => "tracer --port OTHER --json",
            Self::TracepointMatching => {
                "tracer --probe-mode tracepoint --syscall-mode tracepoint --port P --json"
            }
            Self::TracepointNotMatching => {
                "tracer --probe-mode tracepoint --syscall-mode tracepoint --port OTHER --json"
            }
            Self::NoSyscallsNotMatching => "tracer --port OTHER --json --no-syscalls",
            Self::Bpftrace => "bpftrace bench/peer.bt",
        }
    }

    /// Whether its filter matches the workload's port.
    fn matches(self) -> bool {
        matches!(
            self,
            Self::TracerMatching | Self::TracepointMatching | Self::Bpftrace
        )
    }

    /// tracer's arguments for a workload on `port` (a free port for "OTHER"); `None` for the
    /// configurations that run no tracer.
    fn tracer_args(self, port: u16) -> anyhow::Result<Option<Vec<String>>> {
        // Both layers' tiers: `--probe-mode` is the kernel functions', the syscall layer's is
        // its own.
        const TRACEPOINTS: &[&str] =
            &["--probe-mode", "tracepoint", "--syscall-mode", "tracepoint"];
        let (matching, extra): (bool, &[&str]) = match self {
            Self::Untraced | Self::Bpftrace => return Ok(None),
            Self::TracerMatching => (true, &[]),
            Self::TracerNotMatching => (false, &[]),
            Self::TracepointMatching => (true, TRACEPOINTS),
            Self::TracepointNotMatching => (false, TRACEPOINTS),
            Self::NoSyscallsNotMatching => (false, &["--no-syscalls"]),
        };
        let port = if matching { port } else { free_port()? };
        let mut args = vec!["--port".to_string(), port.to_string(), "--json".into()];
        args.extend(extra.iter().map(|a| a.to_string()));
        Ok(Some(args))
    }
}

/// Median, min, max.
#[derive(Clone, Copy, Default)]
struct Stat {
    median: f64,
    min: f64,
    max: f64,
}

fn stat(mut v: Vec<f64>) -> Stat {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return Stat::default();
    }
    Stat {
        median: v[v.len() / 2],
        min: v[0],
        max: v[v.len() - 1],
    }
}

/// A tracer or bpftrace process writing to a file, stopped with SIGINT.
struct Traced {
    child: Child,
    output: PathBuf,
    /// The tracer's stderr after its `ready` line, read to its end.
    stderr: Option<std::thread::JoinHandle<Vec<String>>>,
    /// The tracer's stderr before its `ready` line.
    startup: Vec<String>,
}

impl Traced {
    fn stop(self) -> anyhow::Result<String> {
        Ok(self.stop_with_stderr()?.0)
    }

    /// Stops it; what it wrote to its output file and, for tracer, to stderr after `ready`.
    fn stop_with_stderr(mut self) -> anyhow::Result<(String, Vec<String>)> {
        // SAFETY: kill(2) on our own child.
        unsafe { libc_kill(self.child.id() as i32, 2) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                eprintln!("bench: a traced run ignored SIGINT for 30 s; killing it");
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let text = fs::read_to_string(&self.output).unwrap_or_default();
        let _ = fs::remove_file(&self.output);
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        Ok((text, stderr))
    }

    fn vm_hwm_kib(&self) -> Option<u64> {
        status_field(self.child.id(), "VmHWM:")
    }

    fn vm_rss_kib(&self) -> Option<u64> {
        status_field(self.child.id(), "VmRSS:")
    }

    fn map_bytes(&self) -> u64 {
        map_memlock(self.child.id())
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

fn status_field(pid: u32, field: &str) -> Option<u64> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Kernel memory charged to the process's eBPF maps (`memlock` of each map fd).
fn map_memlock(pid: u32) -> u64 {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return 0;
    };
    dir.flatten()
        .filter_map(|e| fs::read_to_string(e.path()).ok())
        .filter(|t| t.contains("map_type:"))
        .filter_map(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("memlock:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum()
}

/// Perf event fds process `pid` holds.
fn perf_events(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| {
        dir.flatten()
            .filter(|e| {
                fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().contains("perf_event"))
            })
            .count()
    })
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

struct Bench {
    root: PathBuf,
    plan: Plan,
}

impl Bench {
    /// A bench of the workspace at `root`: 3 runs of 2 s each when `quick`, else 5 of 5 s.
    fn new(root: &Path, quick: bool) -> Self {
        let plan = if quick {
            Plan { runs: 3, secs: 2.0 }
        } else {
            Plan { runs: 5, secs: 5.0 }
        };
        Self {
            root: root.to_path_buf(),
            plan,
        }
    }

    fn bin(&self, name: &str) -> PathBuf {
        self.root.join("target/release").join(name)
    }

    /// Starts tracer with `args` (stdout to a file) and waits for it to be ready; returns the
    /// process and the time from exec to ready.
    fn start_tracer(&self, args: &[String]) -> anyhow::Result<(Traced, Duration)> {
        self.start_tracer_on(args, None)
    }

    /// [`Self::start_tracer`], its threads kept to `cpu` when one is given.
    fn start_tracer_on(
        &self,
        args: &[String],
        cpu: Option<usize>,
    ) -> anyhow::Result<(Traced, Duration)> {
        let output = std::env::temp_dir().join(format!("tracer-bench-{}.jsonl", free_port()?));
        let started = Instant::now();
        let mut child = self
            .pinned(&self.bin("tracer"), cpu)
            .args(args)
            .stdout(fs::File::create(&output)?)
            .stderr(Stdio::piped())
            .spawn()
            .context("starting tracer")?;
        let stderr = child.stderr.take().context("tracer stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let mut ready = None;
        let mut startup = Vec::new();
        for line in lines.by_ref() {
            let line = line?;
            if line.starts_with("tracer: ready") {
                ready = Some(started.elapsed());
                break;
            }
            startup.push(line);
        }
        let Some(ready) = ready else {
            bail!("tracer exited before it was ready");
        };
        let stderr = std::thread::spawn(move || lines.map_while(Result::ok).collect());
        Ok((
            Traced {
                child,
                output,
                stderr: Some(stderr),
                startup,
            },
            ready,
        ))
    }

    /// Starts bpftrace on the peer script for `port`; returns it and the time from exec to
    /// its "Attaching N probes" line.
    fn start_bpftrace(&self, port: u16) -> anyhow::Result<(Traced, Duration)> {
        let script_text =
            fs::read_to_string(self.root.join("bench/peer.bt"))?.replace("PORT", &port.to_string());
        let script = std::env::temp_dir().join(format!("tracer-bench-peer-{port}.bt"));
        fs::write(&script, script_text)?;
        let output = std::env::temp_dir().join(format!("tracer-bench-bpftrace-{port}.txt"));
        let _ = fs::remove_file(&output);
        let started = Instant::now();
        let child = Command::new("bpftrace")
            .arg("-o")
            .arg(&output)
            .arg(&script)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting bpftrace")?;
        let traced = Traced {
            child,
            output,
            stderr: None,
            startup: Vec::new(),
        };
        // "Attaching N probes..." comes before the attaching, which takes seconds under
        // emulation: wait for its perf events, one per probe and one per CPU for its output.
        let deadline = started + Duration::from_secs(120);
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let pid = traced.child.id();
        loop {
            let probes = fs::read_to_string(&traced.output).ok().and_then(|t| {
                t.split_once("Attaching ")?
                    .1
                    .split_once(' ')?
                    .0
                    .parse::<usize>()
                    .ok()
            });
            if probes.is_some_and(|n| perf_events(pid) >= n + cpus) {
                break;
            }
            if Instant::now() > deadline {
                bail!("bpftrace did not attach its probes within 120 s");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok((traced, started.elapsed()))
    }

    /// Starts `config` for a workload on `port`; tracer gets `extra` arguments too.
    fn start(&self, config: Config, port: u16, extra: &[&str]) -> anyhow::Result<Option<Traced>> {
        if config == Config::Bpftrace {
            return Ok(Some(self.start_bpftrace(port)?.0));
        }
        let Some(mut args) = config.tracer_args(port)? else {
            return Ok(None);
        };
        args.extend(extra.iter().map(|a| a.to_string()));
        Ok(Some(self.start_tracer(&args)?.0))
    }

    /// A command for `program`, run on `cpu` only (through `taskset`) when one is given.
    fn pinned(&self, program: &Path, cpu: Option<usize>) -> Command {
        match cpu {
            Some(cpu) => {
                let mut cmd = Command::new("taskset");
                cmd.arg("-c").arg(cpu.to_string()).arg(program);
                cmd
            }
            None => Command::new(program),
        }
    }

    fn loadgen(&self, mode: &str, port: u16, extra: &[&str]) -> anyhow::Result<f64> {
        self.loadgen_on(mode, port, extra, None)
    }

    /// [`Self::loadgen`], its threads kept to `cpu` when one is given.
    fn loadgen_on(
        &self,
        mode: &str,
        port: u16,
        extra: &[&str],
        cpu: Option<usize>,
    ) -> anyhow::Result<f64> {
        let out = self
            .pinned(&self.bin("tracer-loadgen"), cpu)
            .args([
                mode,
                "--port",
                &port.to_string(),
                "--secs",
                &self.plan.secs.to_string(),
            ])
            .args(extra)
            .output()
            .context("running tracer-loadgen")?;
        if !out.status.success() {
            bail!(
                "tracer-loadgen failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let text = String::from_utf8_lossy(&out.stdout);
        text.split('=')
            .nth(1)
            .and_then(|v| v.trim().parse().ok())
            .context("tracer-loadgen printed no rate")
    }

    /// One workload in every configuration, interleaved run by run so drift hits all alike.
    fn workload(
        &mut self,
        mode: &str,
        extra: &[&str],
        configs: &[Config],
    ) -> anyhow::Result<Vec<(Config, Stat)>> {
        let mut samples: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
        for run in 0..self.plan.runs {
            for (i, &config) in configs.iter().enumerate() {
                let port = free_port()?;
                let traced = self.start(config, port, &[])?;
                let rate = self.loadgen(mode, port, extra)?;
                if let Some(t) = traced {
                    let shown = t.stop()?.lines().count();
                    // A tracer or bpftrace that traced nothing of a matching workload would
                    // make its row the untraced one's.
                    if config.matches() && shown < 10 {
                        bail!("{} wrote {shown} lines while {mode} ran", config.label());
                    }
                }
                eprintln!(
                    "bench: {mode} run {} {}: {rate:.0}/s",
                    run + 1,
                    config.label()
                );
                samples[i].push(rate);
            }
        }
        Ok(configs
            .iter()
            .copied()
            .zip(samples.into_iter().map(stat))
            .collect())
    }

    /// Events delivered end to end at rising load. Where the machine has two cores, the
    /// tracer runs on one and the load generator on the other, so that a level's drops can be
    /// laid to the side that ran out of CPU: each side's CPU time over the run is measured
    /// (the tracer's from `/proc/PID/stat`, the load generator's with `getrusage`; our eBPF
    /// programs run in the load generator's threads and count in its time).
    fn capacity(&mut self) -> anyhow::Result<Vec<Capacity>> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (tracer_cpu, loadgen_cpu) = if cores >= 2 {
            (Some(1), Some(0))
        } else {
            (None, None)
        };
        let mut rows = Vec::new();
        for conns in [1usize, 2, 4, 8] {
            let port = free_port()?;
            let (traced, _) = self.start_tracer_on(
                &["--port".into(), port.to_string(), "--json".into()],
                tracer_cpu,
            )?;
            let tracer_before = process_cpu_s(traced.child.id());
            let loadgen_before = children_cpu_s();
            let started = Instant::now();
            self.loadgen_on(
                "pingpong",
                port,
                &["--conns", &conns.to_string()],
                loadgen_cpu,
            )?;
            let secs = started.elapsed().as_secs_f64();
            let tracer_cores = (process_cpu_s(traced.child.id()) - tracer_before) / secs;
            let loadgen_cores = (children_cpu_s() - loadgen_before) / secs;
            let text = traced.stop()?;
            let summary = text.lines().last().unwrap_or_default();
            let events = json_number(summary, "\"events\":").unwrap_or(0);
            let dropped = json_number(summary, "\"dropped\":").unwrap_or(0);
            let rate = events as f64 / secs;
            eprintln!(
                "bench: capacity {conns} conns: {rate:.0} events/s, {dropped} dropped, \
                 tracer {tracer_cores:.2} cores, load generator {loadgen_cores:.2} cores"
            );
            rows.push(Capacity {
                conns,
                rate,
                dropped,
                tracer_cores,
                loadgen_cores,
                pinned: tracer_cpu.is_some(),
            });
        }
        Ok(rows)
    }

    /// The consumer on its own: a churn run recorded (`--record`), then replayed from memory
    /// through decode → correlate → render into a sink by `tracer-replay-bench`, pinned to one
    /// core, for the JSON view and for the timeline.
    fn consumer(&mut self) -> anyhow::Result<Vec<Consumer>> {
        let port = free_port()?;
        let recording = std::env::temp_dir().join(format!("tracer-bench-{port}.rec"));
        let (traced, _) = self.start_tracer(&[
            "--port".into(),
            port.to_string(),
            "--json".into(),
            "--record".into(),
            recording.display().to_string(),
        ])?;
        self.loadgen("churn", port, &["--clients", "4"])?;
        traced.stop()?;
        let mut rows = Vec::new();
        for view in ["json", "timeline"] {
            let out = Command::new("taskset")
                .args(["-c", "1"])
                .arg(self.bin("tracer-replay-bench"))
                .arg(&recording)
                .args([view, "3"])
                .output()
                .context("running tracer-replay-bench")?;
            if !out.status.success() {
                bail!(
                    "tracer-replay-bench failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let line = String::from_utf8_lossy(&out.stdout).to_string();
            let number = |key: &str| -> f64 {
                line.split(&format!("\"{key}\":"))
                    .nth(1)
                    .and_then(|r| r.split([',', '}']).next())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0.0)
            };
            let row = Consumer {
                view,
                records: number("records") as u64,
                per_s: number("records_per_s"),
                allocations_per_record: number("allocations_per_record"),
                bytes: number("bytes") as u64,
            };
            eprintln!(
                "bench: consumer {view}: {:.0} records/s, {:.2} allocations per record",
                row.per_s, row.allocations_per_record
            );
            rows.push(row);
        }
        let _ = fs::remove_file(&recording);
        Ok(rows)
    }

    /// Exec to ready, tracer's and bpftrace's; and tracer's phases (`--timings`), each the
    /// median over the runs, in the order they ran.
    fn startup(&mut self) -> anyhow::Result<(Stat, Stat, Phases)> {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        let mut phases: Vec<(String, Vec<f64>)> = Vec::new();
        for _ in 0..self.plan.runs {
            let port = free_port()?;
            let (t, ready) = self.start_tracer(&[
                "--port".into(),
                port.to_string(),
                "--json".into(),
                "--timings".into(),
            ])?;
            for line in &t.startup {
                // "  name ...   12.3 ms"
                let Some(rest) = line.strip_prefix("  ") else {
                    continue;
                };
                let Some((name, ms)) = rest.trim_end_matches(" ms").rsplit_once(' ') else {
                    continue;
                };
                let (name, Ok(ms)) = (name.trim().to_string(), ms.trim().parse::<f64>()) else {
                    continue;
                };
                match phases.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, v)) => v.push(ms),
                    None => phases.push((name, vec![ms])),
                }
            }
            t.stop()?;
            ours.push(ready.as_secs_f64() * 1e3);
            // bpftrace prints "Attaching N probes..." before it attaches: time it to its first
            // event instead, made by connecting to a listener on the watched port.
            let listener = TcpListener::bind(("127.0.0.1", port))?;
            let started = Instant::now();
            let (b, _) = self.start_bpftrace(port)?;
            let deadline = started + Duration::from_secs(60);
            loop {
                let _ = std::net::TcpStream::connect(("127.0.0.1", port));
                if fs::read_to_string(&b.output).is_ok_and(|t| t.contains("\"layer\":\"state\"")) {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("bpftrace produced no event within 60 s");
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            theirs.push(started.elapsed().as_secs_f64() * 1e3);
            b.stop()?;
            drop(listener);
        }
        let phases = phases
            .into_iter()
            .map(|(name, v)| (name, stat(v).median))
            .collect();
        Ok((stat(ours), stat(theirs), phases))
    }

    /// The tax on a process that never touches a socket: `dd` copying `bytes` one byte at a
    /// time (a read and a write per byte) beside each of `configs`. Per configuration: its
    /// label, dd's wall time and its CPU time (user + system), seconds.
    fn bystander(
        &mut self,
        configs: &[Config],
        bytes: u64,
    ) -> anyhow::Result<Vec<(&'static str, Stat, Stat)>> {
        let mut wall = vec![Vec::new(); configs.len()];
        let mut cpu = vec![Vec::new(); configs.len()];
        for run in 0..self.plan.runs {
            for (i, &config) in configs.iter().enumerate() {
                // A port nothing uses: every tracer's filter matches nothing of dd's.
                let traced = self.start(config, free_port()?, &[])?;
                let (w, c) = dd_bytes(bytes)?;
                if let Some(t) = traced {
                    t.stop()?;
                }
                eprintln!(
                    "bench: bystander run {} {}: {w:.2} s, cpu {c:.2} s",
                    run + 1,
                    config.label()
                );
                wall[i].push(w);
                cpu[i].push(c);
            }
        }
        Ok(configs
            .iter()
            .map(|c| c.label())
            .zip(wall.into_iter().map(stat).zip(cpu.into_iter().map(stat)))
            .map(|(label, (w, c))| (label, w, c))
            .collect())
    }

    /// What ping-pong's round trips cost the load generator's own threads, untraced and traced
    /// by tracer with each filter, and (traced) what each of our programs took of it, as the
    /// kernel counted it (`--prog-stats`). One run of each: the statistics are sums.
    fn costs(&mut self, configs: &[Config]) -> anyhow::Result<Vec<Cost>> {
        let mut costs = Vec::new();
        for &config in configs {
            let port = free_port()?;
            let traced = self.start(config, port, &["--prog-stats"])?;
            let cpu_before = children_cpu_s();
            let started = Instant::now();
            let rate = self.loadgen("pingpong", port, &[])?;
            let round_trips = rate * started.elapsed().as_secs_f64().min(self.plan.secs);
            let cpu_s = children_cpu_s() - cpu_before;
            let programs = match traced {
                Some(t) => prog_stats(&t.stop_with_stderr()?.1),
                None => Vec::new(),
            };
            eprintln!(
                "bench: costs {}: {:.1} µs of CPU per round trip",
                config.label(),
                cpu_s * 1e6 / round_trips.max(1.0)
            );
            costs.push(Cost {
                label: config.label(),
                round_trips,
                cpu_s,
                programs,
            });
        }
        Ok(costs)
    }

    /// The tracer's memory: resident when ready, at the end of a churn run and at its peak,
    /// and what its maps hold in the kernel.
    fn memory(&mut self) -> anyhow::Result<Memory> {
        let port = free_port()?;
        let (traced, _) =
            self.start_tracer(&["--port".into(), port.to_string(), "--json".into()])?;
        let ready_kib = traced.vm_rss_kib().unwrap_or(0);
        self.loadgen("churn", port, &["--clients", "4"])?;
        let memory = Memory {
            ready_kib,
            churn_kib: traced.vm_rss_kib().unwrap_or(0),
            hwm_kib: traced.vm_hwm_kib().unwrap_or(0),
            map_bytes: traced.map_bytes(),
        };
        traced.stop()?;
        Ok(memory)
    }
}

/// A workload's rates in each configuration, as ratios to the untraced (first) row, and
/// tracer's overhead against bpftrace's.
fn write_rates(md: &mut String, title: &str, unit: &str, rows: &[(Config, Stat)]) {
    let base = rows[0].1.median;
    let _ = writeln!(md, "## {title}\n");
    let _ = writeln!(
        md,
        "| configuration | {unit} (median) | min | max | ratio to untraced | overhead |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for (config, s) in rows.iter() {
        let ratio = s.median / base;
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.0} | {:.0} | {:.3} | {:.1} % |",
            config.label(),
            s.median,
            s.min,
            s.max,
            ratio,
            (1.0 - ratio) * 100.0
        );
    }
    let over = |c: Config| {
        rows.iter()
            .find(|r| r.0 == c)
            .map(|r| 1.0 - r.1.median / base)
    };
    let (Some(ours), Some(theirs)) = (over(Config::TracerMatching), over(Config::Bpftrace)) else {
        return;
    };
    let comparison = if theirs > 0.0 {
        format!("tracer's is {:.2}× bpftrace's", ours / theirs)
    } else {
        "bpftrace's is within the noise here, so no ratio".to_string()
    };
    let _ = writeln!(
        md,
        "\nOverhead, tracer vs bpftrace: {:.1} % vs {:.1} % ({comparison}; target ≤ {:.2}×).\n",
        ours * 100.0,
        theirs * 100.0,
        1.0 / 1.2
    );
}

/// The bystander's table: dd's times beside each configuration, and its slowdown against
/// the untraced (first) row.
fn write_bystander(md: &mut String, rows: &[(&str, Stat, Stat)]) {
    let _ = writeln!(
        md,
        "| configuration | dd wall s (median) | min | max | dd CPU s (median) | slowdown |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    let base = rows.first().map_or(1.0, |r| r.1.median.max(1e-9));
    for (label, wall, cpu) in rows {
        let _ = writeln!(
            md,
            "| {label} | {:.2} | {:.2} | {:.2} | {:.2} | {:+.1} % |",
            wall.median,
            wall.min,
            wall.max,
            cpu.median,
            (wall.median / base - 1.0) * 100.0
        );
    }
    let _ = writeln!(md);
}

/// The cost tables: the workload's CPU per round trip in each configuration, and, for each
/// filter, what each of our programs took of it.
fn write_costs(md: &mut String, costs: &[Cost], secs: f64) {
    let per_trip = |c: &Cost| c.cpu_s * 1e6 / c.round_trips.max(1.0);
    let base = costs.first().map_or(0.0, per_trip);
    let _ = writeln!(
        md,
        "## What a round trip costs the traced application (ping-pong, CPU time)\n\n\
         Throughput on loopback follows wakeup latency more than work done; the CPU time of the \
         load generator's own process (user + system, `getrusage`) per round trip is what it \
         pays, and our programs run in its threads: their time is the kernel's own count \
         (`tracer --prog-stats`, one run of {secs} s each, beside the throughput runs above).\n"
    );
    let _ = writeln!(
        md,
        "| configuration | round trips | CPU µs per round trip | vs untraced | our programs, µs per round trip | their share of its CPU |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for c in costs {
        let ebpf_ns: u64 = c.programs.iter().map(|p| p.2).sum();
        let (ebpf_us, share) = if c.programs.is_empty() {
            ("-".to_string(), "-".to_string())
        } else {
            (
                format!("{:.2}", ebpf_ns as f64 / 1e3 / c.round_trips.max(1.0)),
                format!("{:.1} %", ebpf_ns as f64 / 1e9 / c.cpu_s.max(1e-9) * 100.0),
            )
        };
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.1} | {:+.1} µs | {ebpf_us} | {share} |",
            c.label,
            c.round_trips,
            per_trip(c),
            per_trip(c) - base,
        );
    }
    for c in costs.iter().filter(|c| !c.programs.is_empty()) {
        let _ = writeln!(md, "\nPrograms, `{}` (most time first):\n", c.label);
        let _ = writeln!(
            md,
            "| program | runs per round trip | avg ns | ns per round trip | share of the workload's CPU |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|");
        for (program, runs, run_ns) in &c.programs {
            let _ = writeln!(
                md,
                "| {program} | {:.2} | {} | {:.0} | {:.2} % |",
                *runs as f64 / c.round_trips.max(1.0),
                run_ns.checked_div(*runs).unwrap_or(0),
                *run_ns as f64 / c.round_trips.max(1.0),
                *run_ns as f64 / 1e9 / c.cpu_s.max(1e-9) * 100.0
            );
        }
    }
    let _ = writeln!(md);
}

/// One configuration's cost per ping-pong round trip.
struct Cost {
    label: &'static str,
    /// Round trips made (rate × seconds).
    round_trips: f64,
    /// CPU time (user + system) of the load generator's process, seconds.
    cpu_s: f64,
    /// `(program, runs, run time ns)` of each of our programs that ran.
    programs: Vec<(String, u64, u64)>,
}

/// CPU time (user + system) of this process's waited-for children so far, in seconds.
/// Startup phases by name, each a median in milliseconds.
type Phases = Vec<(String, f64)>;

/// One view's consumer benchmark.
struct Consumer {
    view: &'static str,
    records: u64,
    per_s: f64,
    allocations_per_record: f64,
    bytes: u64,
}

/// What [`Bench::memory`] measured.
struct Memory {
    /// Resident when ready.
    ready_kib: u64,
    /// Resident at the end of the churn run.
    churn_kib: u64,
    /// Peak resident (VmHWM): the startup's, or the churn's if higher.
    hwm_kib: u64,
    /// Kernel memory charged to the maps.
    map_bytes: u64,
}

/// One level of the capacity run.
struct Capacity {
    conns: usize,
    /// Events delivered per second of load.
    rate: f64,
    /// Events the kernel side could not write into the ring.
    dropped: u64,
    /// The tracer's CPU time over the run, in cores.
    tracer_cores: f64,
    /// The load generator's CPU time (our eBPF programs included), in cores.
    loadgen_cores: f64,
    /// Whether each side had a core of its own.
    pinned: bool,
}

impl Capacity {
    /// Which side ran out of CPU, if one did: a side using ≥ 90 % of its core.
    fn starved(&self) -> &'static str {
        const FULL: f64 = 0.9;
        match (self.tracer_cores >= FULL, self.loadgen_cores >= FULL) {
            (true, true) => "both",
            (true, false) => "tracer",
            (false, true) => "load generator",
            (false, false) => "neither",
        }
    }
}

/// User + system CPU seconds of process `pid` (all its threads), from `/proc/PID/stat`.
fn process_cpu_s(pid: u32) -> f64 {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name, which may hold spaces, end at its last ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    ticks as f64 / hz as f64
}

fn children_cpu_s() -> f64 {
    // SAFETY: an all-zero rusage is a valid value; getrusage fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// The rows of tracer's `--prog-stats` table in its stderr: `(program, runs, run time ns)`,
/// the total line left out.
fn prog_stats(stderr: &[String]) -> Vec<(String, u64, u64)> {
    stderr
        .iter()
        .skip_while(|l| !l.contains("--prog-stats"))
        .skip(2)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (runs, avg_ns): (u64, u64) = (f.get(1)?.parse().ok()?, f.get(2)?.parse().ok()?);
            (f[0] != "all").then(|| (f[0].to_string(), runs, runs * avg_ns))
        })
        .collect()
}

/// Bytes the bystander's `dd` copies, one per read and write.
const BYSTANDER_BYTES: u64 = 1_000_000;

/// Runs `dd if=/dev/zero of=/dev/null bs=1 count=N`: its wall time and CPU time (user +
/// system, from `wait4`), seconds.
fn dd_bytes(count: u64) -> anyhow::Result<(f64, f64)> {
    let started = Instant::now();
    let child = Command::new("dd")
        .args(["if=/dev/zero", "of=/dev/null", "bs=1"])
        .arg(format!("count={count}"))
        .stderr(Stdio::null())
        .spawn()
        .context("starting dd")?;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child, with pointers to live locals; `child` is not waited on
    // again (dropping a Child neither waits nor kills).
    let rc = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let wall = started.elapsed().as_secs_f64();
    if rc < 0 || status != 0 {
        bail!("dd failed (wait4 {rc}, status {status})");
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok((wall, secs(usage.ru_utime) + secs(usage.ru_stime)))
}

fn json_number(line: &str, key: &str) -> Option<u64> {
    let at = line.find(key)? + key.len();
    line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}

fn ensure_bpftrace() -> anyhow::Result<()> {
    // bpftrace finds tracepoints in tracefs, which a fresh machine may not have mounted (tracer
    // mounts it only in its own mount namespace).
    if !Path::new("/sys/kernel/tracing/events").exists() {
        let mounted = Command::new("mount")
            .args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"])
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            bail!("tracefs is not mounted and mounting it at /sys/kernel/tracing failed");
        }
        eprintln!("bench: mounted tracefs at /sys/kernel/tracing for bpftrace");
    }
    if Command::new("bpftrace")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Ok(());
    }
    eprintln!("bench: installing bpftrace (Debian package)");
    let ok = Command::new("apt-get")
        .args(["install", "-y", "-qq", "bpftrace"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .is_ok_and(|s| s.success())
        || (Command::new("apt-get")
            .args(["update", "-qq"])
            .status()
            .is_ok_and(|s| s.success())
            && Command::new("apt-get")
                .args(["install", "-y", "-qq", "bpftrace"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .is_ok_and(|s| s.success()));
    if !ok {
        bail!("bpftrace is missing and `apt-get install bpftrace` failed");
    }
    Ok(())
}

fn command_output(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Runs every measurement, the guest's too unless `guest` is false, prints the tables and
/// rewrites BENCHMARKS.md above its hand-written notes.
pub fn run(root: &Path, quick: bool, guest: Option<&str>) -> anyhow::Result<()> {
    ensure_bpftrace()?;
    let mut bench = Bench::new(root, quick);
    let pingpong = bench.workload("pingpong", &[], &Config::HOST)?;
    let costs = bench.costs(&Config::HOST[..3])?;
    let churn = bench.workload("churn", &["--clients", "4"], &Config::HOST)?;
    let capacity = bench.capacity()?;
    let consumer = bench.consumer()?;
    let (start_ours, start_bpftrace, start_phases) = bench.startup()?;
    let memory = bench.memory()?;
    let bystander = bench.bystander(&Config::HOST_BYSTANDER, BYSTANDER_BYTES)?;
    let tiers = if let Some(kernel) = guest {
        tiers::run(root, quick, kernel).unwrap_or_else(|e| {
            eprintln!("bench: the guest's measurements failed: {e:#}");
            format!(
                "## The same on a kernel with fentry\n\nNot measured in this run: {}\n\n",
                format!("{e:#}").lines().next().unwrap_or_default()
            )
        })
    } else {
        "## The same on a kernel with fentry\n\nNot measured in this run (`--no-guest`).\n\n"
            .to_string()
    };

    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Written by `cargo xtask bench{}` on {}. Machine: {} cores, kernel {}, tier used: tracepoint \
         (kprobes and fentry are unavailable on this kernel). Peer: {}. Each figure is the median \
         of {} runs of {} s, with min and max; ratios are taken against the untraced median of the \
         same run. Workloads come from `tracer-loadgen` on loopback (64-byte messages; both ends \
         in one process, so both are traced).\n",
        if quick { " --quick" } else { "" },
        command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        command_output("uname", &["-r"]),
        command_output("bpftrace", &["--version"]),
        bench.plan.runs,
        bench.plan.secs,
    );
    for (title, unit, rows) in [
        (
            "Ping-pong: one connection, request/response",
            "round trips/s",
            &pingpong,
        ),
        (
            "Connection churn: 4 clients, connect/send/receive/close",
            "connections/s",
            &churn,
        ),
    ] {
        write_rates(&mut md, title, unit, rows);
    }
    write_costs(&mut md, &costs, bench.plan.secs);
    let _ = writeln!(
        md,
        "## Capacity: events delivered end to end (kernel → ring buffer → decode → JSON to a file)\n"
    );
    let pinned = capacity.first().is_some_and(|r| r.pinned);
    let _ = writeln!(
        md,
        "{}\n",
        if pinned {
            "Pinned with `taskset`: tracer on CPU 1, the load generator on CPU 0, so neither \
             takes the other's core. CPU is each side's user + system time over the run, in \
             cores (1.00 = its core was busy all the time); our eBPF programs run in the load \
             generator's threads and count in its time."
        } else {
            "One core only: tracer and the load generator share it (not pinned)."
        }
    );
    let _ = writeln!(
        md,
        "| ping-pong connections | events/s | dropped | tracer CPU | load generator CPU | out of CPU |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for r in &capacity {
        let _ = writeln!(
            md,
            "| {} | {:.0} | {} | {:.2} | {:.2} | {} |",
            r.conns,
            r.rate,
            r.dropped,
            r.tracer_cores,
            r.loadgen_cores,
            r.starved()
        );
    }
    let best = capacity
        .iter()
        .filter(|r| r.dropped == 0)
        .map(|r| r.rate)
        .fold(0.0, f64::max);
    let first_drop = capacity.iter().find(|r| r.dropped > 0);
    let _ = writeln!(
        md,
        "\nHighest rate delivered with zero drops: {best:.0} events/s (target ≥ 1,000,000). {} \
         Drops are read from the kernel-side counter.\n",
        match first_drop {
            Some(r) => format!(
                "Drops start at {} connections: {:.0} events/s delivered, {} dropped; out of \
                 CPU there: {}.",
                r.conns,
                r.rate,
                r.dropped,
                r.starved()
            ),
            None => format!(
                "No level dropped anything; at the highest, out of CPU: {}.",
                capacity.last().map_or("neither", Capacity::starved)
            ),
        }
    );
    let _ = writeln!(
        md,
        "## The consumer alone: decode → correlate → render, one core\n\n\
         A churn run (4 clients, {} s, `--port P --json`) recorded with `--record` ({:.1} MB, {} \
         records), replayed from memory by `tracer-replay-bench` pinned to one core into a \
         sink; best of 3 passes. Allocations are counted by the bench binary's allocator over \
         the last pass (every pass replays the same input: connections are created, kept and \
         retired as in the run).\n",
        bench.plan.secs,
        consumer.first().map_or(0.0, |c| c.bytes as f64 / 1e6),
        consumer.first().map_or(0, |c| c.records)
    );
    let _ = writeln!(md, "| view | records/s | allocations per record |");
    let _ = writeln!(md, "|---|---|---|");
    for c in &consumer {
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.2} |",
            c.view, c.per_s, c.allocations_per_record
        );
    }
    let _ = writeln!(
        md,
        "\nTargets: ≥ 2,000,000 records/s for JSON on one core, no allocation per event in \
         the steady state.\n"
    );
    let _ = writeln!(md, "## Startup: exec to all hooks attached\n");
    let _ = writeln!(md, "| tool | median ms | min | max |");
    let _ = writeln!(md, "|---|---|---|---|");
    let _ = writeln!(
        md,
        "| tracer (to `tracer: ready`) | {:.1} | {:.1} | {:.1} |",
        start_ours.median, start_ours.min, start_ours.max
    );
    let _ = writeln!(
        md,
        "| bpftrace (to its first event) | {:.1} | {:.1} | {:.1} |",
        start_bpftrace.median, start_bpftrace.min, start_bpftrace.max
    );
    let _ = writeln!(
        md,
        "\ntracer starts {:.1}× faster (target ≥ 10×, ≤ 100 ms).\n",
        start_bpftrace.median / start_ours.median.max(0.001)
    );
    let _ = writeln!(
        md,
        "Where tracer's start goes (`--timings`, median of the runs; the rest of exec to ready is \
         the process's own start and the banner):\n"
    );
    let _ = writeln!(md, "| phase | ms |");
    let _ = writeln!(md, "|---|---|");
    for (name, ms) in &start_phases {
        let _ = writeln!(md, "| {name} | {ms:.1} |");
    }
    let _ = writeln!(md);
    let _ = writeln!(
        md,
        "## The tax on everything else: a process that never touches a socket\n\n\
         `dd if=/dev/zero of=/dev/null bs=1 count={BYSTANDER_BYTES}` (a read and a write per \
         byte) beside each configuration, filters matching nothing of it. The syscall layer's \
         tracepoints put every syscall of every process through the kernel's tracing path; \
         `--no-syscalls` takes them away.\n"
    );
    write_bystander(&mut md, &bystander);
    let _ = writeln!(md, "## Memory during churn\n");
    let _ = writeln!(md, "| what | value |");
    let _ = writeln!(md, "|---|---|");
    for (what, kib) in [
        ("tracer RSS when ready", memory.ready_kib),
        ("tracer RSS at the end of the churn", memory.churn_kib),
        ("tracer peak RSS (VmHWM)", memory.hwm_kib),
        (
            "kernel memory of its maps (memlock)",
            memory.map_bytes / 1024,
        ),
    ] {
        let _ = writeln!(md, "| {what} | {:.1} MiB |", kib as f64 / 1024.0);
    }
    let _ = writeln!(md);
    md.push_str(&tiers);
    let _ = writeln!(md, "## Commands\n");
    let _ = writeln!(md, "    cargo xtask bench            # full: 5 runs × 5 s");
    let _ = writeln!(md, "    cargo xtask bench --quick    # 3 runs × 2 s");
    let _ = writeln!(
        md,
        "    cargo xtask bench --no-guest # without the guest's tiers (Debian {} under QEMU)",
        tiers::KERNEL
    );
    let _ = writeln!(
        md,
        "    cargo xtask bench --guest-kernel 7.2 # the guest on another kernel of vm-test's matrix"
    );
    let _ = writeln!(
        md,
        "    target/release/tracer-loadgen pingpong --port P --secs S [--conns N]"
    );
    let _ = writeln!(
        md,
        "    target/release/tracer-loadgen churn --port P --secs S --clients 4"
    );
    let _ = writeln!(md, "    target/release/tracer --port P --json > FILE");
    let _ = writeln!(
        md,
        "    bpftrace -o FILE bench/peer.bt   # PORT replaced by P"
    );
    print!("{md}");
    // Keep the hand-written analysis below the generated part.
    let path = root.join("BENCHMARKS.md");
    let notes = fs::read_to_string(&path)
        .ok()
        .and_then(|t| t.split_once("<!-- notes -->").map(|(_, n)| n.to_string()))
        .unwrap_or_else(|| "\n".into());
    fs::write(&path, format!("{md}\n<!-- notes -->{notes}"))?;
    eprintln!("bench: wrote {}", path.display());
    Ok(())
}
