//! `cargo xtask vm-test`: the live tests inside Debian's stock kernels under QEMU (TCG), in
//! every probe mode, so that tiers this machine's kernel forbids (kprobes, fentry) and the
//! verifiers of older and newer kernels are exercised on the kernels users run. Recipe:
//! shared/platform.md.
//!
//! [`kernels`] pins and fetches the matrix, [`guest`] builds the one initramfs every kernel
//! boots, [`report`] reads the consoles and prints the table.

pub(crate) mod guest;
mod kernels;
mod modules;
mod report;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use anyhow::{Context as _, bail};

/// Probe modes, in the order they run.
pub const MODES: [&str; 4] = ["auto", "tracepoint", "kprobe", "fentry"];

/// Runs of each mode on kernels whose BPF programs are preemptible (7.x): the corruption
/// seen there was intermittent, so one clean run proves little.
const REPEAT_ON_7X: usize = 3;

/// What to boot and run.
pub struct Options {
    /// Names from the matrix or paths of `.deb` files; empty means the whole matrix.
    pub kernels: Vec<String>,
    /// Probe modes; empty means all of [`MODES`].
    pub modes: Vec<String>,
    /// Runs per mode (at least [`REPEAT_ON_7X`] on 7.x when not given).
    pub repeat: Option<usize>,
    /// VMs booted at once.
    pub jobs: usize,
}

/// The image of matrix kernel `name`, fetched into the cache and checked (as vm-test does).
pub fn kernel_image(root: &Path, name: &str) -> anyhow::Result<PathBuf> {
    ensure_packages()?;
    let pinned = kernels::pinned(name).with_context(|| format!("{name} is not in the matrix"))?;
    Ok(kernels::fetch(root, &root.join(".vm-cache"), pinned)?.vmlinuz)
}

/// Whether `name` is a kernel of the matrix.
pub fn in_matrix(name: &str) -> bool {
    kernels::pinned(name).is_some()
}

/// The kernels of the matrix whose failures fail the run: all but the canaries.
pub fn gating_kernels() -> Vec<String> {
    kernels::MATRIX
        .iter()
        .filter(|k| !k.canary)
        .map(|k| k.name.to_string())
        .collect()
}

pub(crate) fn sh(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What the host needs: QEMU, the guest's shell, the archive tools, and the loss lab's tools
/// copied into the guest (iproute2, nftables) with xz for Debian's compressed modules.
const PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "busybox-static",
    "cpio",
    "curl",
    "iproute2",
    "nftables",
    "xz-utils",
];

fn ensure_packages() -> anyhow::Result<()> {
    let have = |bin: &str| Path::new(bin).exists();
    if have("/usr/bin/qemu-system-x86_64")
        && have("/bin/busybox")
        && have("/usr/bin/cpio")
        && have("/usr/bin/curl")
        && have("/usr/sbin/ip")
        && have("/usr/bin/nstat")
        && have("/usr/sbin/nft")
        && have("/usr/bin/xz")
    {
        return Ok(());
    }
    eprintln!("vm-test: installing {}", PACKAGES.join(" "));
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-qq"])
            .args(PACKAGES)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        let _ = Command::new("apt-get").args(["update", "-qq"]).status();
        if !install() {
            bail!("apt-get install {} failed", PACKAGES.join(" "));
        }
    }
    Ok(())
}

/// One kernel to boot, with its plan.
struct Job {
    name: String,
    canary: bool,
    known: Option<&'static str>,
    kernel: Result<kernels::Kernel, String>,
    repeat: usize,
}

/// A guest console's `test result:` lines, each as the run counts it: a result followed by a
/// `VMTEST retry` (its binary failed and ran again) is marked `retried`, so that only the
/// second attempt's line starts with `test result:`.
fn counted_results(console: &str) -> Vec<String> {
    let lines: Vec<&str> = console.lines().map(str::trim).collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if !line.starts_with("test result:") {
            continue;
        }
        let retried = lines[i + 1..]
            .iter()
            .find(|l| l.starts_with("VMTEST") || l.starts_with("test result:"))
            .is_some_and(|l| l.starts_with("VMTEST retry"));
        out.push(if retried {
            format!("retried {line}")
        } else {
            line.to_string()
        });
    }
    out
}

/// What a kernel's guest did, in one line printed as it ends: a run cut short by CI's time
/// limit still says which tests failed where.
fn done_line(o: &report::Outcome, modes: &[String], repeat: usize) -> String {
    if o.passed(modes, repeat) {
        let same: Vec<String> = o
            .same
            .iter()
            .map(|(m, like)| format!("{m} = {like}"))
            .collect();
        return if same.is_empty() {
            "pass".into()
        } else {
            format!("pass ({})", same.join(", "))
        };
    }
    // Each mode as the table's cell says it, with the failures listed under the table.
    let mut what: Vec<String> = modes
        .iter()
        .filter(|m| !o.same.contains_key(*m))
        .filter_map(|m| {
            let (text, failures) = report::cell(o, m, repeat);
            (!text.starts_with("pass") || !failures.is_empty()).then(|| {
                format!("{m}: {text} {}", failures.join(", "))
                    .trim_end()
                    .to_string()
            })
        })
        .collect();
    what.extend(o.crash.iter().map(|c| format!("crashed: {c}")));
    format!("FAIL ({})", what.join("; "))
}

/// Boots `vmlinuz` with `initrd`, running `modes` `repeat` times; the console goes to `log`.
/// Without `retry`, a failing test binary is not run again (kernels whose failures cannot
/// fail the run: a retry would only double their time).
fn boot(
    vmlinuz: &Path,
    initrd: &Path,
    modes: &[String],
    repeat: usize,
    retry: bool,
    log: &Path,
) -> anyhow::Result<report::Outcome> {
    // Generous, for a guest that hangs: under TCG, with another guest beside it, auto's run
    // (every suite) took up to 10 minutes on 7.2, a forced mode's (the core tests) 1-4.
    let per_run: usize = modes
        .iter()
        .map(|m| if m == "auto" { 900 } else { 300 })
        .sum();
    let limit = 300 + per_run * repeat;
    let out = Command::new("timeout")
        .arg(limit.to_string())
        .arg("qemu-system-x86_64")
        .args([
            "-accel",
            "tcg",
            "-cpu",
            "max",
            "-m",
            "1024",
            "-nographic",
            "-no-reboot",
        ])
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(format!(
            "console=ttyS0 quiet loglevel=5 panic=-1 vmtest.modes={} vmtest.repeat={repeat} \
             vmtest.retry={} {}",
            modes.join(","),
            u8::from(retry),
            // More of the kernel's command line, for debugging (`VMTEST_APPEND`).
            std::env::var("VMTEST_APPEND").unwrap_or_default()
        ))
        .stdin(Stdio::null())
        .output()
        .context("running qemu-system-x86_64")?;
    let console = String::from_utf8_lossy(&out.stdout);
    fs::write(log, console.as_bytes())?;
    let mut outcome = report::parse(&console);
    if out.status.code() == Some(124) && outcome.crash.is_none() {
        outcome.crash = Some(format!("timed out after {limit} s"));
    }
    Ok(outcome)
}

/// Builds the guest, boots every kernel asked for (`jobs` at a time) and prints the table;
/// fails unless every mode passed every run on every kernel but the canaries.
pub fn run(root: &Path, opts: &Options) -> anyhow::Result<()> {
    ensure_packages()?;
    let cache = root.join(".vm-cache");
    let modes: Vec<String> = if opts.modes.is_empty() {
        MODES.iter().map(|m| m.to_string()).collect()
    } else {
        for m in &opts.modes {
            if !MODES.contains(&m.as_str()) {
                bail!("unknown probe mode {m:?}: one of {}", MODES.join(", "));
            }
        }
        opts.modes.clone()
    };
    let names: Vec<String> = if opts.kernels.is_empty() {
        kernels::MATRIX.iter().map(|k| k.name.to_string()).collect()
    } else {
        opts.kernels.clone()
    };
    let mut jobs = Vec::new();
    for name in &names {
        let (kernel, canary, known) = if let Some(k) = kernels::pinned(name) {
            (kernels::fetch(root, &cache, k), k.canary, k.known)
        } else if name.ends_with(".deb") {
            (kernels::from_deb(&cache, Path::new(name)), false, None)
        } else {
            bail!(
                "unknown kernel {name:?}: one of {} or a Debian kernel package (.deb)",
                kernels::MATRIX
                    .iter()
                    .map(|k| k.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        };
        let seven = kernel
            .as_ref()
            .is_ok_and(|k| k.name.starts_with('7') || k.vmlinuz.to_string_lossy().contains("-7."));
        let repeat = opts.repeat.unwrap_or(if seven { REPEAT_ON_7X } else { 1 });
        if let Err(e) = &kernel {
            eprintln!("vm-test: {name}: {e:#}");
        }
        jobs.push(Job {
            name: kernel.as_ref().map_or(name.clone(), |k| k.name.clone()),
            canary,
            known,
            kernel: kernel.map_err(|e| format!("{e:#}")),
            repeat,
        });
    }
    let work = root.join("target/vm");
    fs::create_dir_all(&work)?;
    let initrd = guest::build(root, &work)?;

    // Longest first (workers pop from the end), so that two workers finish together.
    let mut order: Vec<usize> = (0..jobs.len()).rev().collect();
    order.sort_by_key(|&i| jobs[i].repeat);
    let queue = Mutex::new(order);
    let results: Mutex<Vec<Option<Result<report::Outcome, String>>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..opts.jobs.max(1) {
            scope.spawn(|| {
                loop {
                    let Some(i) = queue.lock().unwrap().pop() else {
                        break;
                    };
                    let job = &jobs[i];
                    let started = std::time::Instant::now();
                    let result = match &job.kernel {
                        Err(e) => Err(e.clone()),
                        Ok(k) => {
                            let log = work.join(format!("console-{}.log", job.name));
                            eprintln!(
                                "vm-test: booting {} ({}) under QEMU (TCG), {} run(s) per mode",
                                job.name,
                                k.vmlinuz.display(),
                                job.repeat
                            );
                            // Without the lab's modules the lab's tests fail in the guest
                            // and say so (no veth): the kernel is still booted.
                            let initrd = match &k.modules {
                                Some(dir) => modules::initrd_with_lab(
                                    &initrd, dir, &k.vmlinuz, &work, &job.name,
                                ),
                                None => Ok(initrd.clone()),
                            };
                            initrd
                                .and_then(|initrd| {
                                    let retry = !job.canary && job.known.is_none();
                                    boot(&k.vmlinuz, &initrd, &modes, job.repeat, retry, &log)
                                })
                                .map_err(|e| format!("{e:#}"))
                        }
                    };
                    if let Ok(o) = &result {
                        eprintln!(
                            "vm-test: {} done in {:.1} min: {}",
                            job.name,
                            started.elapsed().as_secs_f64() / 60.0,
                            done_line(o, &modes, job.repeat)
                        );
                    }
                    results.lock().unwrap()[i] = Some(result);
                }
            });
        }
    });
    let results: Vec<Result<report::Outcome, String>> = results
        .into_inner()
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err("not run".into())))
        .collect();

    // The guests' own result lines, so that the run's totals count the tests run there too.
    // Those of a kernel that cannot fail the run are marked so that they do not count.
    for (job, result) in jobs.iter().zip(&results) {
        if result.is_ok() {
            let log = work.join(format!("console-{}.log", job.name));
            let console = fs::read_to_string(&log).unwrap_or_default();
            for line in counted_results(&console) {
                let mark = match (job.canary, job.known) {
                    (true, _) => "canary ",
                    (false, Some(_)) => "known ",
                    (false, None) => "",
                };
                eprintln!("{mark}{line}");
            }
        }
    }
    let rows: Vec<report::Row> = jobs
        .iter()
        .zip(&results)
        .map(|(job, result)| report::Row {
            kernel: &job.name,
            canary: job.canary,
            known: job.known,
            modes: &modes,
            repeat: job.repeat,
            outcome: result.as_ref().map_err(Clone::clone),
        })
        .collect();
    eprintln!("\n{}", report::table(&rows));
    let failed: Vec<&str> = jobs
        .iter()
        .zip(&results)
        .filter(|(job, result)| {
            !job.canary
                && job.known.is_none()
                && !result.as_ref().is_ok_and(|o| o.passed(&modes, job.repeat))
        })
        .map(|(job, _)| job.name.as_str())
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        bail!(
            "vm-test failed on: {} (consoles: {}/console-<kernel>.log)",
            failed.join(", "),
            work.display()
        )
    }
}

/// Paths for `--kernel` values that name files, made absolute (the VM runs from the root).
pub fn absolute(kernels: Vec<String>) -> Vec<String> {
    kernels
        .into_iter()
        .map(|k| {
            if k.ends_with(".deb") {
                std::path::absolute(PathBuf::from(&k))
                    .map(|p| p.display().to_string())
                    .unwrap_or(k)
            } else {
                k
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_line_names_what_failed_where_as_the_table_does() {
        let o = report::parse(
            "VMTEST begin mode=auto run=1\ntest a ... ok\ntest b ... FAILED\n\
             VMTEST end mode=auto run=1 rc=1\nVMTEST same mode=fentry as=auto\n\
             VMTEST begin mode=kprobe run=1\n",
        );
        let modes = ["auto", "kprobe", "fentry"].map(String::from);
        assert_eq!(
            done_line(&o, &modes, 1),
            "FAIL (auto: FAIL b; kprobe: FAIL (guest died mid-run))"
        );
    }

    #[test]
    fn a_result_followed_by_a_retry_is_not_counted() {
        let console = "test result: ok. 3 passed; 0 failed\n\
                       test result: FAILED. 1 passed; 1 failed\n\
                       VMTEST retry\n\
                       test result: ok. 2 passed; 0 failed\n\
                       VMTEST end mode=auto run=1 rc=0\n";
        assert_eq!(
            counted_results(console),
            [
                "test result: ok. 3 passed; 0 failed",
                "retried test result: FAILED. 1 passed; 1 failed",
                "test result: ok. 2 passed; 0 failed",
            ]
        );
    }
}
