//! The guest: an initramfs holding busybox, the tracer, the echo demo, the `live` test binary
//! and every shared library they need, each at its host path (the test binary has the others'
//! paths compiled in). `/init` reads its plan from the kernel command line
//! (`vmtest.modes=auto,kprobe vmtest.repeat=3`), runs the tests per mode and repeat between
//! `VMTEST begin`/`VMTEST end` lines, and powers off. One initramfs serves every kernel.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use super::sh;

/// Tests of the `live` binary run in auto mode on every kernel: the whole suite except what
/// needs tshark (absent from the guest) and what is about this host's kernel.
pub const AUTO_TESTS: &[&str] = &[
    "echo_session_on_ipv4",
    "echo_session_on_ipv6",
    "refused_connection",
    "pid_filter",
    "comm_filter",
    "other_ports_produce_no_events",
    "echo_session_packets_are_the_textbook_exchange",
    "every_program_passes_the_verifier",
];

/// Tests run in each forced mode: the journey of a connection, both families, a refusal, and
/// a server traced by pid that was listening before the tracer started.
pub const CORE_TESTS: &[&str] = &[
    "echo_session_on_ipv4",
    "echo_session_on_ipv6",
    "refused_connection",
    "pid_filter",
];

/// The tier every kernel function must get in `mode` on Debian's kernels, which have both
/// fentry and kprobes: auto must pick the best.
fn expected_tier(mode: &str) -> &str {
    match mode {
        "auto" => "fentry",
        other => other,
    }
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

fn init_script(live: &Path, tracer: &Path) -> String {
    let mut s = String::from(
        "#!/bin/busybox sh\n\
         export PATH=/bin\n\
         /bin/busybox mount -t proc proc /proc\n\
         /bin/busybox mount -t sysfs sys /sys\n\
         /bin/busybox mount -t devtmpfs dev /dev\n\
         /bin/busybox mount -t tracefs nodev /sys/kernel/tracing\n\
         /bin/busybox mount -t cgroup2 none /sys/fs/cgroup\n\
         /bin/busybox ip link set lo up\n\
         echo \"VMTEST kernel $(uname -r)\"\n\
         MODES=auto; REPEAT=1\n\
         for arg in $(cat /proc/cmdline); do\n\
         \x20 case $arg in\n\
         \x20   vmtest.modes=*) MODES=$(echo ${arg#vmtest.modes=} | tr , ' ') ;;\n\
         \x20   vmtest.repeat=*) REPEAT=${arg#vmtest.repeat=} ;;\n\
         \x20 esac\n\
         done\n",
    );
    // A shell snippet to run in the guest first, for debugging (`VMTEST_EXTRA`).
    if let Ok(extra) = std::env::var("VMTEST_EXTRA") {
        s.push_str(&extra);
        s.push('\n');
    }
    let tracer = tracer.display();
    let live = live.display();
    s.push_str(&format!(
        "for mode in $MODES; do\n\
         \x20 case $mode in auto) EXPECT={auto}; TESTS=\"{auto_tests}\" ;; *) EXPECT=$mode; TESTS=\"{core_tests}\" ;; esac\n\
         \x20 # The banner (to the console log) and the ready line (for the report) of this mode.\n\
         \x20 {tracer} --probe-mode $mode --port 1 --duration 0.1 2>&1 >/dev/null\n\
         \x20 echo \"VMTEST tiers mode=$mode $({tracer} --json --probe-mode $mode --port 1 --duration 0.1 2>/dev/null | head -n 1)\"\n\
         \x20 for run in $(seq 1 $REPEAT); do\n\
         \x20   echo \"VMTEST begin mode=$mode run=$run\"\n\
         \x20   TRACER_PROBE_MODE=$mode TRACER_EXPECT_TIER=$EXPECT {live} --test-threads=1 $TESTS 2>&1\n\
         \x20   echo \"VMTEST end mode=$mode run=$run rc=$?\"\n\
         \x20 done\n\
         done\n\
         /bin/busybox poweroff -f\n",
        auto = expected_tier("auto"),
        auto_tests = AUTO_TESTS.join(" "),
        core_tests = CORE_TESTS.join(" "),
    ));
    s
}

/// Builds the initramfs into `work/initrd.gz`.
pub fn build(root: &Path, work: &Path) -> anyhow::Result<PathBuf> {
    let live = live_test_binary(root)?;
    let guest = work.join("root");
    let _ = fs::remove_dir_all(&guest);
    for dir in ["bin", "proc", "sys", "dev", "tmp", "etc"] {
        fs::create_dir_all(guest.join(dir))?;
    }
    fs::copy("/bin/busybox", guest.join("bin/busybox")).context("copying busybox")?;
    let applets = [
        "sh", "mount", "ip", "poweroff", "uname", "cat", "sleep", "head", "tr", "seq", "echo",
    ];
    for applet in applets {
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
    Ok(initrd)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A renamed test must not silently drop out of the guest: every filter names at least one
    /// `#[test]` of `tracer/tests/live.rs`.
    #[test]
    fn every_guest_filter_matches_a_live_test() {
        let live = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tracer/tests/live.rs"),
        )
        .unwrap();
        let tests: Vec<&str> = live
            .split("#[test]\nfn ")
            .skip(1)
            .filter_map(|rest| rest.split('(').next())
            .collect();
        assert!(tests.len() > 5, "{tests:?}");
        for filter in AUTO_TESTS.iter().chain(CORE_TESTS) {
            assert!(
                tests.iter().any(|t| t.contains(filter)),
                "{filter} matches no test in tracer/tests/live.rs"
            );
        }
    }
}
