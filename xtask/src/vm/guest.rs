//! The guest: an initramfs holding busybox, the tracer, the echo demo and the loss lab's bulk
//! transfer, the `live` and `loss_lab` test binaries, the host's iproute2 and nftables tools,
//! and every shared library they need, each at its host path (the test binaries have the
//! others' paths compiled in). `/init` loads the kernel modules appended for its kernel
//! ([`super::modules`]), reads its plan from the kernel command line
//! (`vmtest.modes=auto,kprobe vmtest.repeat=3 vmtest.retry=1`), runs the tests per mode and repeat between
//! `VMTEST begin`/`VMTEST end` lines, and powers off. One initramfs serves every kernel.
//!
//! A test binary that fails is run once more after a `VMTEST retry` line: a test that fails
//! and then passes is reported as flaky, with what it said the first time (these guests run
//! under emulation on shared 2-core machines); one that fails twice fails the run. Kernels
//! whose failures cannot fail the run (`vmtest.retry=0`: known and canary kernels) skip the
//! second attempt.

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
    "a_socket_passed_to_another_process",
    "socket_reads_and_writes_are_seen_and_file_io_runs_no_program",
];

/// Tests run in each forced mode: the journey of a connection, both families, a refusal, and
/// a server traced by pid that was listening before the tracer started.
pub const CORE_TESTS: &[&str] = &[
    "echo_session_on_ipv4",
    "echo_session_on_ipv6",
    "refused_connection",
    "pid_filter",
    "a_socket_passed_to_another_process",
];

/// Another test binary the guest runs after `live`: its tests, the modes it runs in, and
/// environment it needs.
pub struct Suite {
    /// The integration test binary (`tracer/tests/<binary>.rs`).
    pub binary: &'static str,
    /// The tests it runs (libtest filters).
    pub tests: &'static [&'static str],
    /// The probe modes whose runs include it.
    pub modes: &'static [&'static str],
    /// `NAME=VALUE` words put before the command.
    pub env: &'static str,
}

/// The suites besides `live`.
pub const SUITES: &[Suite] = &[
    // `tracer -- CMD` following a process tree in the kernel (its fork tracepoints), and
    // `--pid --follow-children`.
    Suite {
        binary: "command",
        tests: &[
            "a_command_and_its_grandchildren_are_traced_and_its_status_is_returned",
            "a_command_that_cannot_run_exits_as_a_shell_would",
            "a_pid_with_follow_children_traces_what_it_starts_later",
        ],
        modes: &["auto"],
        env: "",
    },
    // `--cgroup`: the current task's cgroup id checked in every program.
    Suite {
        binary: "cgroup",
        tests: &["only_the_named_cgroup_and_its_descendants_are_traced"],
        modes: &["auto"],
        env: "",
    },
    // `--netns`: the socket's and the task's namespace read at BTF offsets.
    Suite {
        binary: "netns",
        tests: &["only_the_named_network_namespace_is_traced"],
        modes: &["auto"],
        env: "",
    },
    // The loss lab (two namespaces, a veth pair, nftables drops) with the kernel's counters and
    // `ss` as oracles, and `--demo loss` end to end (its plot checked in the SVG; no browser).
    Suite {
        binary: "loss_lab",
        tests: &[
            "retransmissions_agree_with_the_kernels_counters",
            "resent_syn_acks_agree_with_the_kernels_counters",
            "congestion_numbers_agree_with_ss",
            "the_loss_demo_shows_a_probe_and_a_fast_retransmit",
        ],
        modes: &["auto", "kprobe"],
        env: "TRACER_NO_BROWSER=1",
    },
    // Receive autotuning against `ss -m`. With the segments captured a one-CPU guest's kprobe
    // mode dropped records, resizes among them (6.1.172); the test leaves the segments out
    // and says when records were dropped.
    Suite {
        binary: "loss_lab",
        tests: &["receive_buffer_autotuning_agrees_with_ss_and_the_sysctl"],
        modes: &["auto", "kprobe"],
        env: "",
    },
];

/// Host tools the lab runs, put in the guest's `/bin` (in place of busybox's `ip`).
const LAB_TOOLS: &[&str] = &[
    "/usr/sbin/ip",
    "/usr/sbin/nft",
    "/usr/bin/ss",
    "/usr/bin/nstat",
];

/// The tier every kernel function must get in `mode` on Debian's kernels, which have both
/// fentry and kprobes: auto must pick the best.
fn expected_tier(mode: &str) -> &str {
    match mode {
        "auto" => "fentry",
        other => other,
    }
}

/// The integration test binaries the guest runs: `live`, then one per suite.
struct TestBinaries {
    live: PathBuf,
    suites: Vec<PathBuf>,
}

/// The `live` and the suites' integration test binaries, built.
fn test_binaries(root: &Path) -> anyhow::Result<TestBinaries> {
    let mut cargo = Command::new(env!("CARGO"));
    cargo.args(["test", "--release", "--package", "tracer", "--test", "live"]);
    for suite in SUITES {
        cargo.args(["--test", suite.binary]);
    }
    let out = sh(cargo
        .args(["--no-run", "--message-format=json"])
        .current_dir(root))?;
    let binary = |name: &str| {
        out.lines()
            .filter(|l| {
                l.contains("\"compiler-artifact\"") && l.contains(&format!("\"name\":\"{name}\""))
            })
            .find_map(|l| {
                let at = l.find("\"executable\":\"")? + "\"executable\":\"".len();
                let end = l[at..].find('"')?;
                Some(PathBuf::from(&l[at..at + end]))
            })
            .with_context(|| format!("cargo did not report the {name} test binary"))
    };
    Ok(TestBinaries {
        live: binary("live")?,
        suites: SUITES
            .iter()
            .map(|s| binary(s.binary))
            .collect::<anyhow::Result<_>>()?,
    })
}

/// Copies `path` into `guest` at the same absolute path.
pub(crate) fn copy_in(guest: &Path, path: &Path) -> anyhow::Result<()> {
    let dst = guest.join(path.strip_prefix("/").unwrap_or(path));
    if let Some(parent) = dst.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::copy(path, &dst).with_context(|| format!("copying {}", path.display()))?;
    Ok(())
}

/// The shared libraries `ldd` lists for `bin`.
pub(crate) fn libraries(bin: &Path) -> anyhow::Result<Vec<PathBuf>> {
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

fn init_script(tests: &TestBinaries, tracer: &Path) -> String {
    let mut s = String::from(
        "#!/bin/busybox sh\n\
         export PATH=/bin\n\
         /bin/busybox mount -t proc proc /proc\n\
         /bin/busybox mount -t sysfs sys /sys\n\
         /bin/busybox mount -t devtmpfs dev /dev\n\
         /bin/busybox mount -t tracefs nodev /sys/kernel/tracing\n\
         /bin/busybox mount -t debugfs nodev /sys/kernel/debug\n\
         /bin/busybox mount -t cgroup2 none /sys/fs/cgroup\n\
         /bin/busybox mount -t tmpfs none /run\n\
         /bin/busybox ip link set lo up\n\
         echo \"VMTEST kernel $(uname -r)\"\n\
         MODES=auto; REPEAT=1; RETRY=1\n\
         for arg in $(cat /proc/cmdline); do\n\
         \x20 case $arg in\n\
         \x20   vmtest.modes=*) MODES=$(echo ${arg#vmtest.modes=} | tr , ' ') ;;\n\
         \x20   vmtest.repeat=*) REPEAT=${arg#vmtest.repeat=} ;;\n\
         \x20   vmtest.retry=*) RETRY=${arg#vmtest.retry=} ;;\n\
         \x20 esac\n\
         done\n",
    );
    // The modules appended for this kernel, dependencies first.
    s.push_str(&format!(
        "for m in $(cat /{dir}/order 2>/dev/null); do\n\
         \x20 /bin/busybox insmod /{dir}/$m.ko || echo \"VMTEST insmod $m failed\"\n\
         done\n",
        dir = super::modules::GUEST_DIR
    ));
    // A shell snippet to run in the guest first, for debugging (`VMTEST_EXTRA`).
    if let Ok(extra) = std::env::var("VMTEST_EXTRA") {
        s.push_str(&extra);
        s.push('\n');
    }
    let tracer = tracer.display();
    let live = tests.live.display();
    // Each suite in the modes it runs in, in the first run of a mode (repeats, 3 on 7.x, are
    // for the live tests: the loss lab three times over would not fit CI's time under
    // emulation); a failure twice in a row fails the run.
    let suites: String = SUITES
        .iter()
        .zip(&tests.suites)
        .map(|(suite, path)| {
            format!(
                "\x20   [ \"$run\" = 1 ] && case \" {modes} \" in *\" $mode \"*) {cmd} || {{ [ \"$RETRY\" = 1 ] && echo VMTEST retry && {cmd}; }} || rc=1 ;; esac\n",
                modes = suite.modes.join(" "),
                cmd = format!(
                    "TRACER_PROBE_MODE=$mode {env} {path} --test-threads=1 {tests} 2>&1",
                    env = suite.env,
                    path = path.display(),
                    tests = suite.tests.join(" "),
                ),
            )
        })
        .collect();
    s.push_str(&format!(
        "for mode in $MODES; do\n\
         \x20 case $mode in auto) EXPECT={auto}; TESTS=\"{auto_tests}\" ;; *) EXPECT=$mode; TESTS=\"{core_tests}\" ;; esac\n\
         \x20 # The banner (stderr, to the console log) and the ready line (for the report) of this\n\
         \x20 # mode, from one run: under emulation a tracer's start and stop take 15-25 s.\n\
         \x20 {tracer} --json --probe-mode $mode --port 1 --duration 0.1 2>&1 >/tmp/ready.json\n\
         \x20 READY=$(head -n 1 /tmp/ready.json)\n\
         \x20 echo \"VMTEST tiers mode=$mode $READY\"\n\
         \x20 # A forced mode whose hooks got exactly what auto's got (its ready line but for its\n\
         \x20 # first field, the time) loads and attaches the same programs the same way: auto's\n\
         \x20 # runs, a superset of the tests, already ran them.\n\
         \x20 if [ $mode = auto ]; then AUTO=${{READY#*,}}\n\
         \x20 elif [ -n \"$AUTO\" ] && [ \"${{READY#*,}}\" = \"$AUTO\" ]; then echo \"VMTEST same mode=$mode as=auto\"; continue; fi\n\
         \x20 for run in $(seq 1 $REPEAT); do\n\
         \x20   echo \"VMTEST begin mode=$mode run=$run\"\n\
         \x20   rc=0\n\
         \x20   {live_cmd} || {{ [ \"$RETRY\" = 1 ] && echo VMTEST retry && {live_cmd}; }} || rc=1\n\
         {suites}\
         \x20   echo \"VMTEST end mode=$mode run=$run rc=$rc\"\n\
         \x20 done\n\
         done\n\
         /bin/busybox poweroff -f\n",
        live_cmd = format!(
            "TRACER_PROBE_MODE=$mode TRACER_EXPECT_TIER=$EXPECT {live} --test-threads=1 $TESTS 2>&1"
        ),
        auto = expected_tier("auto"),
        auto_tests = AUTO_TESTS.join(" "),
        core_tests = CORE_TESTS.join(" "),
    ));
    s
}

/// Builds the initramfs into `work/initrd.gz`.
pub fn build(root: &Path, work: &Path) -> anyhow::Result<PathBuf> {
    let tests = test_binaries(root)?;
    let guest = work.join("root");
    let _ = fs::remove_dir_all(&guest);
    for dir in ["bin", "proc", "sys", "dev", "tmp", "etc", "run", "var"] {
        fs::create_dir_all(guest.join(dir))?;
    }
    // iproute2 keeps named network namespaces in /var/run/netns.
    std::os::unix::fs::symlink("../run", guest.join("var/run"))?;
    fs::copy("/bin/busybox", guest.join("bin/busybox")).context("copying busybox")?;
    let applets = [
        "sh", "mount", "poweroff", "uname", "cat", "sleep", "head", "tr", "seq", "echo", "insmod",
        "sysctl", "id",
    ];
    for applet in applets {
        std::os::unix::fs::symlink("busybox", guest.join("bin").join(applet))?;
    }
    let release = root.join("target/release");
    let bins = [
        release.join("tracer"),
        release.join("echo-server"),
        release.join("echo-client"),
        release.join("bulk"),
        tests.live.clone(),
    ];
    for bin in bins.iter().chain(&tests.suites) {
        copy_in(&guest, bin)?;
        for lib in libraries(bin)? {
            copy_in(&guest, &lib)?;
        }
    }
    for tool in LAB_TOOLS.iter().map(Path::new) {
        let name = tool.file_name().context("a tool's file name")?;
        fs::copy(tool, guest.join("bin").join(name)).with_context(|| {
            format!(
                "copying {} (vm-test installs iproute2 and nftables)",
                tool.display()
            )
        })?;
        for lib in libraries(tool)? {
            copy_in(&guest, &lib)?;
        }
    }
    let init = guest.join("init");
    fs::write(&init, init_script(&tests, &release.join("tracer")))?;
    fs::set_permissions(&init, fs::Permissions::from_mode(0o755))?;
    let initrd = work.join("initrd.gz");
    pack(&guest, &initrd)?;
    Ok(initrd)
}

/// Packs the tree at `root` into `initrd`, a gzipped newc cpio archive.
pub(crate) fn pack(root: &Path, initrd: &Path) -> anyhow::Result<()> {
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd '{}' && find . | cpio -o -H newc --quiet | gzip -1 > '{}'",
            root.display(),
            initrd.display()
        ))
        .status()?;
    if !status.success() {
        bail!(
            "packing {} into {} failed",
            root.display(),
            initrd.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `#[test]` functions of `tracer/tests/<file>`.
    fn tests_in(file: &str) -> Vec<String> {
        let source = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../tracer/tests")
                .join(file),
        )
        .unwrap();
        source
            .split("#[test]\nfn ")
            .skip(1)
            .filter_map(|rest| rest.split('(').next())
            .map(str::to_string)
            .collect()
    }

    /// A renamed test must not silently drop out of the guest: every filter names at least one
    /// `#[test]` of its binary.
    #[test]
    fn every_guest_filter_matches_a_test() {
        for (file, filters) in [("live.rs".to_string(), [AUTO_TESTS, CORE_TESTS].concat())]
            .into_iter()
            .chain(
                SUITES
                    .iter()
                    .map(|s| (format!("{}.rs", s.binary), s.tests.to_vec())),
            )
        {
            let tests = tests_in(&file);
            assert!(tests.len() >= filters.len().min(3), "{tests:?}");
            for filter in filters {
                assert!(
                    tests.iter().any(|t| t.contains(filter)),
                    "{filter} matches no test in tracer/tests/{file}"
                );
            }
        }
    }
}
