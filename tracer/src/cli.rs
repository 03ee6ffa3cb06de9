//! Command-line parsing and validation, all in one place.

use std::collections::BTreeSet;
use std::path::Path;

use clap::{Parser, ValueEnum};

use crate::demo::Demo;
use crate::demo::loss::Impairment;
use crate::hooks::{ProbeMode, SyscallMode};

/// When to colour the human view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// On a terminal, unless NO_COLOR is set.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// Trace how a TCP connection's socket calls travel through the kernel: syscalls, kernel TCP
/// functions and state transitions, one timeline per connection.
#[derive(Debug, Parser)]
#[command(name = "tracer", version, about, long_about = None, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// Trace connections with this local or remote port (repeatable).
    #[arg(short, long = "port", value_name = "PORT", value_parser = parse_port)]
    pub ports: Vec<u16>,

    /// Trace sockets of this process (repeatable).
    #[arg(long = "pid", value_name = "PID", value_parser = parse_pid)]
    pub pids: Vec<u32>,

    /// Trace sockets of processes in this cgroup v2 or below it (a directory of the cgroup2
    /// mount, absolute or relative to it: a container's, a systemd unit's).
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<std::path::PathBuf>,

    /// Trace sockets of this network namespace only: /run/netns/NAME (`ip netns`),
    /// /proc/PID/ns/net, or a pid.
    #[arg(long, value_name = "PATH|PID")]
    pub netns: Option<String>,

    /// With --pid: also trace the processes they fork from now on, and theirs.
    #[arg(long, requires = "pids")]
    pub follow_children: bool,

    /// Write the trace (timeline or JSON, ladder, summary) to FILE instead of stdout (with a
    /// command: instead of stderr).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,

    /// Run CMD (after `--`) once every hook is attached, trace it and every process it starts,
    /// stop when it exits, and exit with its status. Under sudo it runs as the invoking user.
    /// The trace goes to stderr (or -o FILE), leaving CMD's output alone.
    #[arg(last = true, value_name = "CMD", conflicts_with = "demo")]
    pub run: Vec<std::ffi::OsString>,

    /// Trace sockets of processes with this command name (as in /proc/PID/comm).
    #[arg(long, value_name = "NAME", value_parser = parse_comm)]
    pub comm: Option<String>,

    /// Print JSON Lines (one object per event) instead of the timeline.
    #[arg(long)]
    pub json: bool,

    /// Exit after this many seconds.
    #[arg(long, value_name = "SECS", value_parser = parse_duration)]
    pub duration: Option<f64>,

    /// Also start the echo server and a scripted echo client on the (first) port, 8080 if none;
    /// `--demo loss`: the same and a bulk transfer (next port) through a lossy path between two
    /// private network namespaces.
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "echo", value_name = "DEMO")]
    pub demo: Option<Demo>,

    /// Loss lab: drop these data segments (numbered from 1 as they reach the client, resent
    /// ones included), each once. Default with `--demo loss`: 2,300.
    #[arg(long, value_name = "N,N...", value_delimiter = ',', value_parser = parse_segment, requires = "demo")]
    pub drop: Vec<u32>,

    /// Loss lab: drop this percentage of data segments at random (0.01 to 50).
    #[arg(long, value_name = "PERCENT", value_parser = parse_percent, requires = "demo")]
    pub loss: Option<f64>,

    /// Loss lab: limit the server's sending rate (`tc` units: 20mbit, 500kbit).
    #[arg(long, value_name = "RATE", value_parser = parse_rate, requires = "demo")]
    pub rate: Option<String>,

    /// Colour the timeline.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,

    /// Do not print the per-connection summary at exit.
    #[arg(long)]
    pub no_summary: bool,

    /// Do not capture packets (syscall, kernel and state layers only).
    #[arg(long)]
    pub no_packets: bool,

    /// Do not trace system calls (kernel, state, packet and congestion layers only). The
    /// syscall layer's tracepoints make every syscall of every process on the host take the
    /// kernel's tracing path, sockets or not: this takes that cost away.
    #[arg(long)]
    pub no_syscalls: bool,

    /// Write the captured segments to FILE as pcap (Wireshark and tshark read it).
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<std::path::PathBuf>,

    /// Also record the run's raw input to FILE: `tracer replay FILE` renders it again later, as
    /// any view (a bug report, a trace taken on one host and read on another).
    #[arg(long, value_name = "FILE")]
    pub record: Option<std::path::PathBuf>,

    /// At exit, draw FILE.svg: per connection that sent data, its time-sequence graph (with
    /// retransmissions) and its cwnd, ssthresh, in-flight and srtt over time.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<std::path::PathBuf>,

    /// Also capture payload bytes (up to --snaplen); by default only headers are copied.
    #[arg(long)]
    pub payload: bool,

    /// Payload bytes kept per segment with --payload (at most 128).
    #[arg(long, value_name = "BYTES", default_value_t = 64, value_parser = clap::value_parser!(u16).range(0..=128))]
    pub snaplen: u16,

    /// Which tier the kernel-function hooks use: the best available (auto), or one forced.
    #[arg(long, value_enum, default_value_t = ProbeMode::Auto)]
    pub probe_mode: ProbeMode,

    /// Which tier the syscall layer uses: fentry/fexit on each syscall's function where the
    /// kernel allows it (auto), or the syscalls: tracepoints.
    #[arg(long, value_enum, default_value_t = SyscallMode::Auto)]
    pub syscall_mode: SyscallMode,

    /// Least time between two congestion samples (cwnd, ssthresh, RTT, windows) of one
    /// connection, in milliseconds; a change of congestion state or ssthresh is always sampled.
    /// 0 samples at every arriving segment.
    #[arg(long, value_name = "MS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=3_600_000))]
    pub sample_ms: u32,

    /// Print a ladder diagram of each connection's segments at exit.
    #[arg(long)]
    pub ladder: bool,

    /// Print the kernel verifier's whole log for every program it rejected (for bug reports).
    #[arg(long)]
    pub verifier_log: bool,

    /// At exit, each eBPF program's runs and average run time, as the kernel counted them (its
    /// BPF statistics, turned on for the run: Linux 5.8+), on stderr. What a traced
    /// application pays in its own threads, program by program; costs a clock read per run.
    #[arg(long)]
    pub prog_stats: bool,

    /// Before `ready`, how long each startup phase took (tracefs formats, tier probes, BTF,
    /// the verifier, the /proc scan, attaching), on stderr.
    #[arg(long)]
    pub timings: bool,

    /// For tests: load map NAME with N entries instead of its usual size, to make it fill.
    #[arg(long, value_name = "NAME=N", hide = true, value_parser = map_entries)]
    pub map_entries: Vec<(String, u32)>,

    /// A subcommand instead of tracing (`decode`, `replay`).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Parses `NAME=N` (N at least 1) for `--map-entries`.
fn map_entries(s: &str) -> Result<(String, u32), String> {
    let (name, n) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=N, got {s:?}"))?;
    let n: u32 = n
        .parse()
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| format!("expected a number of entries of at least 1, got {n:?}"))?;
    Ok((name.to_string(), n))
}

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Dissect a TCP header (or an IPv4/IPv6 packet holding one) given as hex.
    Decode {
        /// The bytes start with an IPv4/IPv6 header (default: when the first nibble is 4 or 6).
        #[arg(long, conflicts_with = "tcp")]
        ip: bool,
        /// The bytes are a bare TCP header (default: when the first nibble is not 4 or 6).
        #[arg(long)]
        tcp: bool,
        /// The bytes in hex (spaces and colons are ignored).
        #[arg(required = true)]
        hex: Vec<String>,
    },
    /// Render a recording made with `--record FILE` again, as any view; nothing is traced, no
    /// privileges are needed.
    Replay {
        /// The recording.
        file: std::path::PathBuf,
        /// How to show it.
        #[command(flatten)]
        views: ViewArgs,
    },
}

/// The views of a replay: the same flags as a live run's.
#[derive(Debug, clap::Args)]
pub struct ViewArgs {
    /// Print JSON Lines (one object per event) instead of the timeline.
    #[arg(long)]
    pub json: bool,
    /// Print a ladder diagram of each connection's segments at the end.
    #[arg(long)]
    pub ladder: bool,
    /// Do not print the per-connection summary at the end.
    #[arg(long)]
    pub no_summary: bool,
    /// Write the captured segments to FILE as pcap.
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<std::path::PathBuf>,
    /// Draw FILE.svg (see the live run's --plot).
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<std::path::PathBuf>,
    /// Write the trace to FILE instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
    /// Colour the timeline.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

/// What the views are asked to show and where, from a live run's flags or a replay's.
#[derive(Debug)]
pub struct ViewOptions<'a> {
    /// JSON Lines instead of the timeline.
    pub json: bool,
    /// Ladder diagrams.
    pub ladder: bool,
    /// No summary.
    pub no_summary: bool,
    /// The syscall layer was off.
    pub no_syscalls: bool,
    /// The pcap file.
    pub pcap: Option<&'a Path>,
    /// The plot file.
    pub plot: Option<&'a Path>,
    /// The output file.
    pub output: Option<&'a Path>,
    /// A command runs: it keeps stdout for itself.
    pub command_runs: bool,
    /// Colour.
    pub color: ColorChoice,
}

impl ViewArgs {
    /// The views of a replay of a run whose syscall layer was off or not.
    pub fn options(&self, no_syscalls: bool) -> ViewOptions<'_> {
        ViewOptions {
            json: self.json,
            ladder: self.ladder,
            no_summary: self.no_summary,
            no_syscalls,
            pcap: self.pcap.as_deref(),
            plot: self.plot.as_deref(),
            output: self.output.as_deref(),
            command_runs: false,
            color: self.color,
        }
    }
}

/// A usage error found after parsing.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    /// `--pid` names no running process.
    #[error("no process with pid {0} (--pid)")]
    NoSuchPid(u32),
    /// More values than the in-kernel filter holds.
    #[error("at most {limit} {flag} values are supported, {given} given")]
    TooMany {
        /// The flag: `--port` or `--pid`.
        flag: &'static str,
        /// How many the kernel-side map holds.
        limit: u32,
        /// How many were given.
        given: usize,
    },
}

impl Cli {
    /// Checks what clap cannot: that the filters fit the kernel's maps, and that every
    /// `--pid` exists now.
    pub fn validate(&self) -> Result<(), UsageError> {
        // A value given twice is one map entry.
        let ports = self.ports.iter().collect::<BTreeSet<_>>().len();
        let pids = self.pids.iter().collect::<BTreeSet<_>>().len();
        for (flag, limit, given) in [
            ("--port", tracer_common::maps::MAX_PORTS, ports),
            ("--pid", tracer_common::maps::MAX_PIDS, pids),
        ] {
            if given > limit as usize {
                return Err(UsageError::TooMany { flag, limit, given });
            }
        }
        for &pid in &self.pids {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                return Err(UsageError::NoSuchPid(pid));
            }
        }
        Ok(())
    }

    /// The views this run's flags ask for.
    pub fn view_options(&self) -> ViewOptions<'_> {
        ViewOptions {
            json: self.json,
            ladder: self.ladder,
            no_summary: self.no_summary,
            no_syscalls: self.no_syscalls,
            pcap: self.pcap.as_deref(),
            plot: self.plot.as_deref(),
            output: self.output.as_deref(),
            command_runs: !self.run.is_empty(),
            color: self.color,
        }
    }

    /// Payload bytes to capture per segment (0 unless --payload).
    pub fn payload_snaplen(&self) -> u16 {
        if self.payload { self.snaplen } else { 0 }
    }

    /// The port the demo runs on.
    pub fn demo_port(&self) -> u16 {
        self.ports.first().copied().unwrap_or(8080)
    }

    /// The ports the demo uses: the echo demo's, and the bulk transfer's after it in the lab.
    pub fn demo_ports(&self) -> Vec<u16> {
        let port = self.demo_port();
        match self.demo {
            Some(Demo::Loss) => vec![port, port.saturating_add(1)],
            _ => vec![port],
        }
    }

    /// The loss lab's impairment: as asked, or one segment of each connection dropped.
    pub fn impairment(&self) -> Impairment {
        let asked = !self.drop.is_empty() || self.loss.is_some() || self.rate.is_some();
        Impairment {
            drop: if asked {
                self.drop.clone()
            } else {
                vec![2, 300]
            },
            loss_percent: self.loss,
            rate: self.rate.clone(),
        }
    }
}

fn parse_segment(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(n @ 1..=1_000_000) => Ok(n),
        _ => Err("segments are numbered from 1 (at most 1000000)".into()),
    }
}

fn parse_percent(s: &str) -> Result<f64, String> {
    match s.trim_end_matches('%').parse::<f64>() {
        Ok(p) if (0.01..=50.0).contains(&p) => Ok(p),
        _ => Err("a loss rate is a percentage from 0.01 to 50".into()),
    }
}

fn parse_rate(s: &str) -> Result<String, String> {
    let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &s[digits.len()..];
    let number_ok = digits.parse::<f64>().is_ok_and(|v| v > 0.0);
    if number_ok && ["bit", "kbit", "mbit", "gbit"].contains(&unit) {
        Ok(s.to_string())
    } else {
        Err("a rate is a number and a unit: bit, kbit, mbit or gbit (e.g. 20mbit)".into())
    }
}

fn parse_port(s: &str) -> Result<u16, String> {
    // Digits only: `+80` is not a port someone meant to type.
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err("ports are numbers from 1 to 65535".into());
    }
    match s.parse::<u32>() {
        Ok(p @ 1..=65535) => Ok(p as u16),
        Ok(_) => Err("ports are numbers from 1 to 65535".into()),
        Err(_) => Err("ports are numbers from 1 to 65535".into()),
    }
}

fn parse_pid(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err("a pid is a positive number".into()),
    }
}

fn parse_comm(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 15 {
        return Err("a command name has 1 to 15 bytes (the kernel keeps 15)".into());
    }
    Ok(s.to_string())
}

/// The longest `--duration`: about 31 years; beyond it the timer's arithmetic would overflow
/// (leave the flag out to trace until Ctrl-C).
const MAX_DURATION_SECS: f64 = 1e9;

fn parse_duration(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(d) if d > 0.0 && d <= MAX_DURATION_SECS => Ok(d),
        _ => Err(format!(
            "a duration is a number of seconds above 0 and at most {MAX_DURATION_SECS:e} (leave \
             it out to trace until Ctrl-C)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("tracer").chain(args.iter().copied()))
    }

    #[test]
    fn accepts_repeated_filters() {
        let cli = parse(&[
            "--port", "8080", "-p", "443", "--pid", "1", "--comm", "curl",
        ])
        .unwrap();
        assert_eq!(cli.ports, [8080, 443]);
        assert_eq!(cli.pids, [1]);
        assert_eq!(cli.comm.as_deref(), Some("curl"));
        assert!(cli.validate().is_ok());
    }

    #[test]
    fn rejects_bad_ports_and_pids() {
        for bad in ["0", "65536", "abc", "-1", "+80", " 80"] {
            assert!(parse(&["--port", bad]).is_err(), "{bad}");
        }
        assert!(parse(&["--pid", "0"]).is_err());
        assert!(parse(&["--comm", "a-name-longer-than-15"]).is_err());
        for bad in [
            "-3",
            "0",
            "nan",
            "inf",
            "1e20",
            "1e308",
            "18446744073709551616",
        ] {
            assert!(parse(&["--duration", bad]).is_err(), "{bad}");
        }
        assert!(parse(&["--duration", "1e9"]).is_ok());
        let cli = parse(&["--pid", "4000000"]).unwrap();
        assert!(matches!(
            cli.validate(),
            Err(UsageError::NoSuchPid(4000000))
        ));
    }

    #[test]
    fn demo_port_defaults_to_8080() {
        assert_eq!(parse(&["--demo"]).unwrap().demo_port(), 8080);
        assert_eq!(parse(&["--demo", "-p", "9000"]).unwrap().demo_port(), 9000);
    }
}
