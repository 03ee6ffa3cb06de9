//! `cargo xtask conformance`: the tracer against third-party programs (curl, Python's
//! http.server, nginx, redis, a Go echo pair), compared with tcpdump and tshark on the same traffic
//! (`tracer/tests/conformance.rs`); and the loss lab against tshark and the kernel's counters
//! (`tracer/tests/loss_lab.rs`). Installs the programs it drives from Debian's packages.

use std::path::Path;
use std::process::Command;

use anyhow::bail;

/// Commands the suite runs, and the Debian package of each.
const PROGRAMS: &[(&str, &str)] = &[
    ("tcpdump", "tcpdump"),
    ("tshark", "tshark"),
    ("nginx", "nginx-light"),
    ("curl", "curl"),
    ("python3", "python3"),
    ("ss", "iproute2"),
    ("strace", "strace"),
    ("go", "golang-go"),
    ("redis-server", "redis-server"),
    ("redis-benchmark", "redis-tools"),
    ("nft", "nftables"),
    ("chromium", "chromium"),
];

/// Installs whatever of [`PROGRAMS`] is missing.
pub fn install() -> anyhow::Result<()> {
    install_programs(PROGRAMS, "the conformance suite")
}

/// What `tracer --demo loss` runs to build its lab.
pub const LAB_PROGRAMS: &[(&str, &str)] =
    &[("ip", "iproute2"), ("tc", "iproute2"), ("nft", "nftables")];

/// Installs the Debian package of each command of `programs` not on the path, for `purpose`.
pub fn install_programs(programs: &[(&str, &str)], purpose: &str) -> anyhow::Result<()> {
    let mut missing: Vec<&str> = programs
        .iter()
        .filter(|(cmd, _)| !on_path(cmd))
        .map(|&(_, package)| package)
        .collect();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing {} for {purpose}", missing.join(" "));
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-qq"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    let updated = || {
        Command::new("apt-get")
            .args(["update", "-qq"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !(install() || (updated() && install())) {
        bail!(
            "{purpose} needs {}: `apt-get install {}` failed",
            missing.join(", "),
            missing.join(" ")
        );
    }
    Ok(())
}

/// Runs the suite (after [`install`]).
pub fn run(root: &Path) -> anyhow::Result<()> {
    install()?;
    crate::cargo(
        root,
        &[
            "test",
            "--release",
            "--test",
            "conformance",
            "--test",
            "loss_lab",
        ],
    )
}

fn on_path(cmd: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| dir.join(cmd).is_file())
            || Path::new("/usr/sbin").join(cmd).is_file()
    })
}
