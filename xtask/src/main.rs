//! `cargo xtask`: build, run, test. Every command first makes sure the eBPF toolchain is here.

mod bench;
mod bootstrap;
mod conformance;
mod soak;
mod vm;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Build, run and test tracer")]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what building the eBPF programs needs (nightly rust-src, bpf-linker).
    Bootstrap,
    /// Build tracer, echo-server and echo-client into target/release.
    Build,
    /// Build, then run tracer as root with the given arguments.
    Run {
        /// Arguments for tracer, after `--`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build, check formatting and lints, run every test (as root: they load eBPF) and a short
    /// soak, then the live tests again on Debian's kernel under QEMU in every probe tier.
    Test,
    /// Run the conformance suite (as root): curl, Python's http.server and nginx traced while
    /// tcpdump captures the same traffic, over loopback and across two network namespaces.
    Conformance,
    /// Run the live tests inside Debian's stock kernels under QEMU, in every probe mode: the
    /// whole pinned matrix by default.
    VmTest {
        /// A kernel of the matrix (5.10, 6.1.172, 6.1.192, 6.12, 6.12-cloud, 7.2, 7.3-rc) or
        /// any Debian kernel package file (.deb); repeatable. Default: the whole matrix.
        #[arg(long = "kernel", value_name = "NAME|FILE.deb")]
        kernels: Vec<String>,
        /// Probe modes to run (auto, tracepoint, kprobe, fentry); repeatable. Default: all.
        #[arg(long = "mode", value_name = "MODE")]
        modes: Vec<String>,
        /// Runs per mode; any failing run fails (default 1, 3 on 7.x).
        #[arg(long)]
        repeat: Option<usize>,
        /// VMs booted at once (default: 2, or 1 on a one-core machine).
        #[arg(long)]
        jobs: Option<usize>,
    },
    /// Abuse the tracer while traffic flows (churn, ping-pong, kills mid-connection, resets,
    /// refused and half-closed connections), restarting it; check it ends cleanly, counts
    /// every event line and drop, keeps its memory flat and leaves nothing in the kernel.
    Soak {
        /// How long, in minutes.
        #[arg(long, default_value_t = 5.0)]
        minutes: f64,
        /// Tracer runs one after another while the traffic goes on.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Accept records lost to a full ring buffer (still counted and told).
        #[arg(long)]
        allow_drops: bool,
        /// Keep each run's recording (`tracer --record`) here as `run-N.rec`, to replay
        /// (`tracer replay`) what a failed check saw.
        #[arg(long, value_name = "DIR")]
        record: Option<std::path::PathBuf>,
    },
    /// Measure overhead, capacity, startup and memory against bpftrace; rewrite BENCHMARKS.md.
    Bench {
        /// A quicker version: 3 runs of 2 s.
        #[arg(long)]
        quick: bool,
        /// Leave out the tiers' comparison in Debian's kernel under QEMU (10-30 minutes).
        #[arg(long)]
        no_guest: bool,
        /// The matrix kernel the tiers' comparison boots (`cargo xtask vm-test`'s names):
        /// 7.2 measures a kernel that preempts BPF programs.
        #[arg(long, value_name = "NAME", default_value = bench::GUEST_KERNEL)]
        guest_kernel: String,
    },
    /// Inside the bench's guest: measure and print the markdown (run by `bench`'s initramfs).
    #[command(hide = true)]
    BenchGuest {
        #[arg(long)]
        quick: bool,
    },
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let root = workspace_root();
    match args.command {
        Cmd::Bootstrap => bootstrap::ensure(&root),
        Cmd::Build => build(&root),
        Cmd::Run { args } => {
            build(&root)?;
            let loss_demo = args.windows(2).any(|w| w[0] == "--demo" && w[1] == "loss")
                || args.iter().any(|a| a == "--demo=loss");
            if loss_demo {
                conformance::install_programs(conformance::LAB_PROGRAMS, "--demo loss")?;
            }
            let tracer = root.join("target/release/tracer");
            let mut cmd = if is_root() {
                Command::new(&tracer)
            } else {
                let mut c = Command::new("sudo");
                c.arg("-E").arg(&tracer);
                c
            };
            let status = cmd.args(&args).status().context("starting tracer")?;
            if !status.success() {
                std::process::exit(status.code().unwrap_or(1));
            }
            Ok(())
        }
        Cmd::VmTest {
            kernels,
            modes,
            repeat,
            jobs,
        } => {
            let opts = vm::Options {
                kernels: vm::absolute(kernels),
                modes,
                repeat,
                jobs: jobs.unwrap_or_else(default_jobs),
            };
            build(&root)?;
            vm::run(&root, &opts)
        }
        Cmd::Bench {
            quick,
            no_guest,
            guest_kernel,
        } => {
            if !vm::in_matrix(&guest_kernel) {
                bail!("--guest-kernel {guest_kernel}: not a kernel of the vm-test matrix");
            }
            build(&root)?;
            if !is_root() {
                bail!("the benchmarks load eBPF programs: run `sudo -E cargo xtask bench`");
            }
            bench::run(&root, quick, (!no_guest).then_some(guest_kernel.as_str()))
        }
        Cmd::BenchGuest { quick } => bench::in_guest(&root, quick),
        Cmd::Soak {
            minutes,
            runs,
            allow_drops,
            record,
        } => {
            build(&root)?;
            if !is_root() {
                bail!("the soak loads eBPF programs: run `sudo -E cargo xtask soak`");
            }
            if !(minutes > 0.0 && minutes <= 24.0 * 60.0) || runs == 0 {
                bail!("--minutes must be above 0 and at most a day, --runs at least 1");
            }
            soak::run(
                &root,
                &soak::Options {
                    secs: minutes * 60.0,
                    runs,
                    allow_drops,
                    record,
                },
            )
        }
        Cmd::Conformance => {
            build(&root)?;
            if !is_root() {
                bail!(
                    "the conformance suite loads eBPF programs: run `sudo -E cargo xtask conformance`"
                );
            }
            conformance::run(&root)
        }
        Cmd::Test => {
            build(&root)?;
            cargo(&root, &["fmt", "--all", "--", "--check"])?;
            cargo(
                &root,
                &[
                    "clippy",
                    "--release",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ],
            )?;
            if !is_root() {
                bail!("the tests load eBPF programs: run `sudo -E cargo xtask test`");
            }
            // The conformance suite is one of the test binaries: what it drives comes first.
            conformance::install()?;
            // One test at a time, as in the guests: each starts its own tracer, and with two
            // at once a record one test expected went missing on this 6.18 host (a prefork
            // worker's accept4) — the kernel skips a tracepoint program while another holds
            // the CPU's guard, which preemptible tracepoint programs make likely (7.x, see
            // `vm::kernels`).
            cargo(&root, &["test", "--release", "--", "--test-threads=1"])?;
            // A short soak: the long one is `cargo xtask soak`, which also requires zero
            // drops. Here drops must be counted and told exactly, as the hardening issue asks
            // of CI's short version, but may happen: whether 2,400 connections/s fit through
            // depends on how long this shared machine stalls the consumer (a third of the
            // 40-second runs on 2026-12-05 dropped 20k-340k records, their reruns none), and
            // speed is judged by benchmarks, not by timed assertions in tests.
            soak::run(
                &root,
                &soak::Options {
                    secs: 40.0,
                    runs: 2,
                    allow_drops: true,
                    record: None,
                },
            )?;
            // The same live tests on every kernel of the matrix, in every probe mode, but the
            // canary: its result cannot fail the run, and under emulation its three runs per
            // mode cost a quarter of CI's 90 minutes. `cargo xtask vm-test` boots it.
            let opts = vm::Options {
                kernels: vm::gating_kernels(),
                modes: Vec::new(),
                repeat: None,
                jobs: default_jobs(),
            };
            vm::run(&root, &opts)
        }
    }
}

fn build(root: &Path) -> anyhow::Result<()> {
    bootstrap::ensure(root)?;
    cargo(
        root,
        &["build", "--release", "--package", "tracer", "--bins"],
    )
}

fn cargo(root: &Path, args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new(env!("CARGO"))
        .args(args)
        .current_dir(root)
        .env("PATH", bootstrap::path_with_cargo_bin())
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Two VMs at a time on two or more cores: each TCG guest keeps one core busy.
fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(2))
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}
