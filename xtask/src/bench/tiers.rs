//! The same numbers on a kernel with fentry. This machine's kernel allows the tracepoint tier
//! only, so the comparison between tiers — fentry against the tracepoint stand-ins, beside
//! bpftrace — runs inside Debian's stock kernel under QEMU: the host boots it with an
//! initramfs holding this very xtask binary, the tracer, the load generator and bpftrace (with
//! every library each needs), and the guest runs [`in_guest`], which measures with the same
//! code as the host's bench and prints its markdown between two marker lines on the console.
//! Under emulation absolute times mean little; the ratios between the tiers, taken in the same
//! run, do.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

use super::{Bench, Config, write_bystander, write_costs, write_rates};
use crate::vm;

/// The matrix kernel booted unless `--guest-kernel` says another: Debian 13's, whose BPF has
/// fentry (auto picks it there) and does not preempt BPF programs.
pub const KERNEL: &str = "6.12";

/// Bytes the bystander's `dd` copies in the guest: a fifth of the host's, as emulation is
/// about five times slower at syscalls.
const GUEST_DD_BYTES: u64 = 200_000;

/// Lines around the guest's markdown on its console.
const BEGIN: &str = "VMBENCH begin";
const END: &str = "VMBENCH end";

/// Runs in the guest (`xtask bench-guest`): measures, and prints the markdown between
/// [`BEGIN`] and [`END`].
pub fn in_guest(root: &Path, quick: bool) -> anyhow::Result<()> {
    let mut bench = Bench::new(root, quick);
    let bpftrace = Command::new("bpftrace")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let with_peer = |configs: &[Config]| -> Vec<Config> {
        let mut v = configs.to_vec();
        if bpftrace {
            v.push(Config::Bpftrace);
        }
        v
    };
    let pingpong = bench.workload(
        "pingpong",
        &[],
        &with_peer(&[
            Config::Untraced,
            Config::TracerMatching,
            Config::TracepointMatching,
            Config::TracerNotMatching,
            Config::TracepointNotMatching,
        ]),
    )?;
    let costs = bench.costs(&[
        Config::Untraced,
        Config::TracerMatching,
        Config::TracepointMatching,
        Config::TracerNotMatching,
        Config::TracepointNotMatching,
    ])?;
    let bystander = bench.bystander(
        &with_peer(&[
            Config::Untraced,
            Config::TracerNotMatching,
            Config::TracepointNotMatching,
            Config::NoSyscallsNotMatching,
        ]),
        GUEST_DD_BYTES,
    )?;

    let mut md = String::new();
    if !bpftrace {
        let _ = writeln!(md, "bpftrace did not run in the guest: no peer rows.\n");
    }
    write_rates(
        &mut md,
        "Ping-pong: one connection, request/response",
        "round trips/s",
        &pingpong,
    );
    write_costs(&mut md, &costs, bench.plan.secs);
    let _ = writeln!(
        md,
        "## The tax on everything else\n\n`dd if=/dev/zero of=/dev/null bs=1 \
         count={GUEST_DD_BYTES}` beside each configuration, filters matching nothing of it. On \
         the fentry tier the syscall layer is trampolines on the syscalls' own functions, \
         but for `read`, `write`, `readv`, `writev`, watched on the socket layer's \
         `sock_read_iter`/`sock_write_iter`, which dd's reads and writes never reach; on the \
         tracepoint tier, the `syscalls:` tracepoints, which put every syscall of every \
         process through the kernel's tracing path. The guest has one vCPU: the tracer's own \
         time comes out of dd's wall time, and dd's CPU time is the column to read.\n"
    );
    write_bystander(&mut md, &bystander);
    println!("{BEGIN}\n{md}{END}");
    Ok(())
}

/// Boots matrix kernel `kernel` with the bench's initramfs and returns the guest's section
/// for BENCHMARKS.md.
pub fn run(root: &Path, quick: bool, kernel: &str) -> anyhow::Result<String> {
    let vmlinuz = vm::kernel_image(root, kernel)?;
    let work = root.join("target/vm-bench");
    fs::create_dir_all(&work)?;
    let initrd = initramfs(root, &work, quick)?;
    let log = work.join("console.log");
    // One vCPU, as vm-test's guests: with two, TCG once let a vCPU run code another was
    // patching (a static key flipped as bpftrace attached) and the guest died of an `int3`
    // oops. A guest that dies is booted once more.
    let mut attempt = 1;
    let (section, console) = loop {
        eprintln!(
            "bench: booting Debian {kernel} under QEMU (TCG, one vCPU) for the tiers' numbers; \
             its console: {}",
            log.display()
        );
        let status = Command::new("timeout")
            .arg(if quick { "3600" } else { "9000" })
            .arg("qemu-system-x86_64")
            .args(["-accel", "tcg", "-cpu", "max", "-m", "3072"])
            .args(["-nographic", "-no-reboot"])
            .arg("-kernel")
            .arg(&vmlinuz)
            .arg("-initrd")
            .arg(&initrd)
            .args(["-append", "console=ttyS0 quiet loglevel=5 panic=-1"])
            .stdin(Stdio::null())
            .stdout(fs::File::create(&log)?)
            .status()
            .context("running qemu-system-x86_64")?;
        let console = fs::read_to_string(&log)?.replace('\r', "");
        if let Some(section) = section(&console) {
            break (section, console);
        }
        let tail: Vec<&str> = console.lines().rev().take(15).collect();
        let ending = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
        if attempt == 2 {
            bail!(
                "the guest printed no results twice (qemu: {status}); its console ended \
                 with:\n{ending}"
            );
        }
        eprintln!(
            "bench: the guest printed no results (qemu: {status}); once more. Its console \
             ended with:\n{ending}"
        );
        attempt += 1;
    };
    let kernel = console
        .lines()
        .find_map(|l| l.strip_prefix("VMBENCH kernel "))
        .unwrap_or(kernel);
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## The same on a kernel with fentry: Debian {kernel} under QEMU\n\n\
         This machine's kernel has the tracepoint tier only. Here the same measurements ran \
         inside Debian's stock kernel under QEMU's emulation (TCG, one vCPU, no KVM on these \
         machines), where `tracer` picks the fentry tier by itself and `--probe-mode \
         tracepoint --syscall-mode tracepoint` forces the tier this host uses. Emulation makes \
         every instruction slow and some far slower than others (a trampoline, a syscall's \
         entry), so absolute times mean little and even ratios to untraced are not the host's; \
         the comparison between the tiers, and with bpftrace, in the same run is what this \
         section is for.\n"
    );
    // The guest's sections are subsections here.
    for line in section.lines() {
        match line.strip_prefix("## ") {
            Some(title) => {
                let _ = writeln!(md, "### {title}");
            }
            None => {
                let _ = writeln!(md, "{line}");
            }
        }
    }
    Ok(md)
}

/// The guest's markdown: the lines between [`BEGIN`] and [`END`].
fn section(console: &str) -> Option<String> {
    let (_, rest) = console.split_once(&format!("{BEGIN}\n"))?;
    let (md, _) = rest.split_once(&format!("\n{END}"))?;
    Some(format!("{md}\n"))
}

/// Builds the bench's initramfs into `work/initrd.gz`: busybox, this xtask binary, the
/// tracer, the load generator, the peer script and bpftrace, each with its libraries at
/// their host paths.
fn initramfs(root: &Path, work: &Path, quick: bool) -> anyhow::Result<PathBuf> {
    let guest = work.join("root");
    let _ = fs::remove_dir_all(&guest);
    for dir in ["bin", "proc", "sys", "dev", "tmp", "run"] {
        fs::create_dir_all(guest.join(dir))?;
    }
    fs::copy("/bin/busybox", guest.join("bin/busybox")).context("copying busybox")?;
    for applet in [
        "sh", "mount", "poweroff", "uname", "cat", "echo", "ip", "dd", "date", "sleep",
    ] {
        std::os::unix::fs::symlink("busybox", guest.join("bin").join(applet))?;
    }
    let xtask = std::env::current_exe().context("this xtask binary's path")?;
    let release = root.join("target/release");
    let bpftrace = PathBuf::from("/usr/bin/bpftrace");
    let mut bins = vec![
        xtask.clone(),
        release.join("tracer"),
        release.join("tracer-loadgen"),
    ];
    if bpftrace.exists() {
        bins.push(bpftrace);
    }
    for bin in &bins {
        vm::guest::copy_in(&guest, bin)?;
        for lib in vm::guest::libraries(bin)? {
            vm::guest::copy_in(&guest, &lib)?;
        }
    }
    vm::guest::copy_in(&guest, &root.join("bench/peer.bt"))?;
    let init = guest.join("init");
    fs::write(&init, init_script(&xtask, quick))?;
    fs::set_permissions(&init, fs::Permissions::from_mode(0o755))?;
    let initrd = work.join("initrd.gz");
    vm::guest::pack(&guest, &initrd)?;
    Ok(initrd)
}

/// The guest's `/init`: mounts what the tracer and bpftrace read, runs the measurements,
/// powers off.
fn init_script(xtask: &Path, quick: bool) -> String {
    format!(
        "#!/bin/busybox sh\n\
         export PATH=/bin:/usr/bin:/usr/sbin\n\
         mount -t proc proc /proc\n\
         mount -t sysfs sys /sys\n\
         mount -t devtmpfs dev /dev\n\
         mount -t tracefs nodev /sys/kernel/tracing\n\
         mount -t debugfs nodev /sys/kernel/debug\n\
         mount -t cgroup2 none /sys/fs/cgroup\n\
         mount -t tmpfs none /run\n\
         ip link set lo up\n\
         echo \"VMBENCH kernel $(uname -r)\"\n\
         {xtask} bench-guest{quick}\n\
         echo \"VMBENCH rc=$?\"\n\
         poweroff -f\n",
        xtask = xtask.display(),
        quick = if quick { " --quick" } else { "" },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_is_what_lies_between_the_markers() {
        let console = "boot noise\nVMBENCH kernel 6.12.0\nbench: run 1\nVMBENCH begin\n## A\n\n| a |\nVMBENCH end\nVMBENCH rc=0\n";
        assert_eq!(section(console).as_deref(), Some("## A\n\n| a |\n"));
        assert_eq!(section("VMBENCH begin\n## A\n"), None);
    }
}
