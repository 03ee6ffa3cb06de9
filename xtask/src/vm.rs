//! `cargo xtask vm-test`: the live echo test inside Debian's stock kernel under QEMU (TCG), once
//! per probe mode, so that tiers this machine's kernel forbids (kprobes, fentry) are exercised
//! on the kernels users run. Recipe: shared/platform.md.
//!
//! The guest is an initramfs holding busybox, the tracer, the echo demo, the `live` test binary
//! and every shared library they need, each at its host path (the test binary has the others'
//! paths compiled in). `/init` mounts what the tracer needs, runs the test per mode, prints
//! `VMTEST mode=<mode> rc=<code>` lines and powers off.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

/// Probe modes run in the guest, in order.
const MODES: [&str; 4] = ["auto", "tracepoint", "kprobe", "fentry"];
/// The tests run in the guest (filters for the `live` test binary; the pcap test needs tshark,
/// which the guest lacks).
const TESTS: &str = "echo_session_on_ipv4 echo_session_on_ipv6 refused_connection pid_filter";

fn sh(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ensure_packages() -> anyhow::Result<()> {
    let have = |bin: &str| Path::new(bin).exists();
    if have("/usr/bin/qemu-system-x86_64") && have("/bin/busybox") && have("/usr/bin/cpio") {
        return Ok(());
    }
    eprintln!("vm-test: installing qemu-system-x86, busybox-static, cpio");
    let install = || {
        Command::new("apt-get")
            .args([
                "install",
                "-y",
                "-qq",
                "qemu-system-x86",
                "busybox-static",
                "cpio",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        let _ = Command::new("apt-get").args(["update", "-qq"]).status();
        if !install() {
            bail!("apt-get install qemu-system-x86 busybox-static cpio failed");
        }
    }
    Ok(())
}

/// A Debian kernel package pinned by exact version and checksum, so that what vm-test boots
/// never depends on the state of the machine's apt lists.
struct PinnedKernel {
    package: &'static str,
    version: &'static str,
    sha256: &'static str,
}

/// The kernel vm-test boots: Debian 12's 6.1.192 (bookworm-security).
const KERNEL: PinnedKernel = PinnedKernel {
    package: "linux-image-6.1.0-56-amd64",
    version: "6.1.192-2",
    sha256: "a86e2049672f52354c4536a089203b6c82639420424d31c91cf31a181fd4d8f1",
};

/// apt options that use the repository's own sources list and keep lists and downloads in
/// `cache`, leaving the machine's /etc/apt and /var/lib/apt untouched.
fn private_apt(root: &Path, cache: &Path) -> anyhow::Result<Vec<String>> {
    let lists = cache.join("apt/lists");
    let archives = cache.join("apt/cache");
    fs::create_dir_all(lists.join("partial"))?;
    fs::create_dir_all(archives.join("archives/partial"))?;
    Ok(vec![
        format!(
            "-o=Dir::Etc::sourcelist={}",
            root.join("xtask/apt/sources.list").display()
        ),
        "-o=Dir::Etc::sourceparts=-".into(),
        format!("-o=Dir::State::Lists={}", lists.display()),
        format!("-o=Dir::Cache={}", archives.display()),
    ])
}

fn sha256(path: &Path) -> anyhow::Result<String> {
    let out = sh(Command::new("sha256sum").arg(path))?;
    Ok(out
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string())
}

/// The pinned kernel's image, downloaded and checked once into `cache`.
fn kernel(root: &Path, cache: &Path) -> anyhow::Result<PathBuf> {
    let k = &KERNEL;
    let dir = cache.join(format!("{}_{}", k.package, k.version));
    if !dir.join("boot").is_dir() {
        let deb = cache.join(format!("{}_{}_amd64.deb", k.package, k.version));
        if !deb.exists() || sha256(&deb)? != k.sha256 {
            eprintln!("vm-test: downloading {} {}", k.package, k.version);
            let apt = private_apt(root, cache)?;
            sh(Command::new("apt-get").args(&apt).args(["update", "-qq"]))?;
            let fetched = Command::new("apt-get")
                .args(&apt)
                .args(["download", &format!("{}={}", k.package, k.version)])
                .current_dir(cache)
                .output()
                .context("running apt-get download")?;
            if !fetched.status.success() {
                bail!(
                    "{} {} is no longer available from Debian's archive ({}); pin another \
                     build in xtask/src/vm.rs",
                    k.package,
                    k.version,
                    String::from_utf8_lossy(&fetched.stderr).trim()
                );
            }
            let got = fs::read_dir(cache)?
                .flatten()
                .map(|e| e.path())
                .find(|p| {
                    p.extension().is_some_and(|e| e == "deb")
                        && p.file_name().is_some_and(|n| {
                            n.to_string_lossy().starts_with(&format!("{}_", k.package))
                        })
                })
                .context("downloaded kernel package not found")?;
            if got != deb {
                fs::rename(&got, &deb)?;
            }
        }
        let sum = sha256(&deb)?;
        if sum != k.sha256 {
            let _ = fs::remove_file(&deb);
            bail!(
                "{} has sha256 {sum}, expected {}: refusing to boot it",
                deb.display(),
                k.sha256
            );
        }
        sh(Command::new("dpkg").arg("-x").arg(&deb).arg(&dir))?;
    }
    fs::read_dir(dir.join("boot"))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .context("no vmlinuz in the kernel package")
}

/// The `live` integration test binary, built.
fn live_test_binary(root: &Path) -> anyhow::Result<PathBuf> {
    let out = sh(Command::new(env!("CARGO"))
        .args([
            "test",
            "--release",
            "--package",
            "tracer",
            "--test",
            "live",
            "--no-run",
            "--message-format=json",
        ])
        .current_dir(root))?;
    out.lines()
        .filter(|l| l.contains("\"compiler-artifact\"") && l.contains("\"name\":\"live\""))
        .find_map(|l| {
            let at = l.find("\"executable\":\"")? + "\"executable\":\"".len();
            let end = l[at..].find('"')?;
            Some(PathBuf::from(&l[at..at + end]))
        })
        .context("cargo did not report the live test binary")
}

/// Copies `path` into `guest` at the same absolute path.
fn copy_in(guest: &Path, path: &Path) -> anyhow::Result<()> {
    let dst = guest.join(path.strip_prefix("/").unwrap_or(path));
    if let Some(parent) = dst.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::copy(path, &dst).with_context(|| format!("copying {}", path.display()))?;
    Ok(())
}

/// The shared libraries `ldd` lists for `bin`.
fn libraries(bin: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let out = sh(Command::new("ldd").arg(bin))?;
    Ok(out
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with('/'))
                .map(PathBuf::from)
        })
        .collect())
}

/// The tier the kernel functions must get in `mode` on Debian's kernel, which has both fentry
/// and kprobes: auto must pick the best.
fn expected_tier(mode: &str) -> &str {
    match mode {
        "auto" => "fentry",
        other => other,
    }
}

fn init_script(live: &Path, tracer: &Path) -> String {
    let mut s = String::from(
        "#!/bin/busybox sh\n\
         /bin/busybox mount -t proc proc /proc\n\
         /bin/busybox mount -t sysfs sys /sys\n\
         /bin/busybox mount -t devtmpfs dev /dev\n\
         /bin/busybox mount -t tracefs nodev /sys/kernel/tracing\n\
         /bin/busybox mount -t cgroup2 none /sys/fs/cgroup\n\
         /bin/busybox ip link set lo up\n\
         echo \"VMTEST kernel $(/bin/busybox uname -r)\"\n",
    );
    // The banner says which hook got which tier, and why the others failed, on this kernel.
    s.push_str(&format!(
        "{} --port 1 --duration 0.1 2>&1 >/dev/null\n",
        tracer.display()
    ));
    // A shell snippet to run in the guest first, for debugging (`VMTEST_EXTRA`).
    if let Ok(extra) = std::env::var("VMTEST_EXTRA") {
        s.push_str(&extra);
        s.push('\n');
    }
    for mode in MODES {
        s.push_str(&format!(
            "TRACER_PROBE_MODE={mode} TRACER_EXPECT_TIER={} {} --test-threads=1 {TESTS} 2>&1\n\
             echo \"VMTEST mode={mode} rc=$?\"\n",
            expected_tier(mode),
            live.display()
        ));
    }
    s.push_str("/bin/busybox poweroff -f\n");
    s
}

/// Builds the guest and boots it; fails unless every mode passed.
pub fn run(root: &Path) -> anyhow::Result<()> {
    ensure_packages()?;
    let vmlinuz = kernel(root, &root.join(".vm-cache"))?;
    let live = live_test_binary(root)?;
    let work = root.join("target/vm");
    let guest = work.join("root");
    let _ = fs::remove_dir_all(&guest);
    for dir in ["bin", "proc", "sys", "dev", "tmp", "etc"] {
        fs::create_dir_all(guest.join(dir))?;
    }
    fs::copy("/bin/busybox", guest.join("bin/busybox")).context("copying busybox")?;
    for applet in ["sh", "mount", "ip", "poweroff", "uname", "cat", "sleep"] {
        std::os::unix::fs::symlink("busybox", guest.join("bin").join(applet))?;
    }
    let release = root.join("target/release");
    let bins = [
        release.join("tracer"),
        release.join("echo-server"),
        release.join("echo-client"),
        live.clone(),
    ];
    for bin in &bins {
        copy_in(&guest, bin)?;
        for lib in libraries(bin)? {
            copy_in(&guest, &lib)?;
        }
    }
    let init = guest.join("init");
    fs::write(&init, init_script(&live, &release.join("tracer")))?;
    fs::set_permissions(&init, fs::Permissions::from_mode(0o755))?;
    let initrd = work.join("initrd.gz");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd '{}' && find . | cpio -o -H newc --quiet | gzip -1 > '{}'",
            guest.display(),
            initrd.display()
        ))
        .status()?;
    if !status.success() {
        bail!("building the initramfs failed");
    }
    eprintln!("vm-test: booting {} under QEMU (TCG)", vmlinuz.display());
    let out = Command::new("timeout")
        .arg("1800")
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
        .arg(&vmlinuz)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyS0 quiet panic=-1"])
        .stdin(Stdio::null())
        .output()
        .context("running qemu-system-x86_64")?;
    let console = String::from_utf8_lossy(&out.stdout);
    fs::write(work.join("console.log"), console.as_bytes())?;
    // The guest's own result lines, so that the run's totals count the tests run there too.
    for line in console
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("test "))
    {
        eprintln!("{line}");
    }
    let mut failed = Vec::new();
    for mode in MODES {
        let line = console
            .lines()
            .find(|l| l.contains(&format!("VMTEST mode={mode} ")))
            .map(str::trim);
        eprintln!(
            "vm-test: {}",
            line.unwrap_or(&format!(
                "mode={mode}: no result (see target/vm/console.log)"
            ))
        );
        if !line.is_some_and(|l| l.ends_with("rc=0")) {
            failed.push(mode);
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        bail!(
            "echo scenario failed in the guest for: {} (console: {})",
            failed.join(", "),
            work.join("console.log").display()
        )
    }
}
