//! Installs the eBPF toolchain when missing; a no-op when it is there.
//!
//! - the nightly toolchain's `rust-src` (for `-Z build-std=core`);
//! - `bpf-linker` 0.13, linked against the nightly's own libLLVM so that the LLVM versions of
//!   rustc and the linker always match.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

const BPF_LINKER_VERSION: &str = "0.13.0";

/// `PATH` with `~/.cargo/bin` in front, where `cargo install` puts bpf-linker.
pub fn path_with_cargo_bin() -> String {
    let mut path = std::env::var("PATH").unwrap_or_default();
    if let Some(home) = cargo_home() {
        let bin = home.join("bin");
        path = format!("{}:{path}", bin.display());
    }
    path
}

fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
}

/// Makes sure everything the eBPF build needs is installed.
pub fn ensure(root: &Path) -> anyhow::Result<()> {
    let sysroot = nightly_sysroot()?;
    ensure_rust_src(&sysroot)?;
    ensure_bpf_linker(root, &sysroot)
}

fn nightly_sysroot() -> anyhow::Result<PathBuf> {
    let out = Command::new("rustc")
        .args(["+nightly", "--print", "sysroot"])
        .output()
        .context("running rustc +nightly")?;
    if !out.status.success() {
        bail!(
            "no nightly Rust toolchain: the eBPF programs need one (`rustup toolchain install nightly`)"
        );
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn ensure_rust_src(sysroot: &Path) -> anyhow::Result<()> {
    if sysroot.join("lib/rustlib/src/rust/library/core").is_dir() {
        return Ok(());
    }
    eprintln!("xtask: installing rust-src for the nightly toolchain");
    let status = Command::new("rustup")
        .args(["component", "add", "rust-src", "--toolchain", "nightly"])
        .status()
        .context("running rustup")?;
    if !status.success() {
        bail!("`rustup component add rust-src --toolchain nightly` failed");
    }
    Ok(())
}

fn ensure_bpf_linker(root: &Path, sysroot: &Path) -> anyhow::Result<()> {
    // bpf-linker finds libLLVM only through the toolchain's library path (rustup sets it when
    // rustc runs the linker), so ask it for its version the same way.
    let installed = Command::new("bpf-linker")
        .arg("--version")
        .env("PATH", path_with_cargo_bin())
        .env("LD_LIBRARY_PATH", sysroot.join("lib"))
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    if installed
        .as_deref()
        .is_some_and(|v| v.contains(BPF_LINKER_VERSION))
    {
        return Ok(());
    }
    // The nightly ships libLLVM as lib/libLLVM.so.<version>-rust-<rustc version>; bpf-linker's
    // build looks for lib/libLLVM.so under LLVM_PREFIX.
    let lib = sysroot.join("lib");
    let libllvm = std::fs::read_dir(&lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("libLLVM.so."))
        .with_context(|| format!("no libLLVM.so.* in {}", lib.display()))?;
    let major = libllvm
        .trim_start_matches("libLLVM.so.")
        .split('.')
        .next()
        .unwrap_or_default()
        .to_string();
    let prefix = root.join("target/llvm-prefix");
    std::fs::create_dir_all(prefix.join("lib"))?;
    let link = prefix.join("lib/libLLVM.so");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(lib.join(&libllvm), &link)
        .with_context(|| format!("linking {}", link.display()))?;
    eprintln!(
        "xtask: installing bpf-linker {BPF_LINKER_VERSION} against {libllvm} (takes a few minutes)"
    );
    let status = Command::new("cargo")
        .args([
            "+nightly",
            "install",
            "--force",
            "bpf-linker",
            "--locked",
            "--version",
            BPF_LINKER_VERSION,
            "--no-default-features",
            "--features",
            &format!("llvm-{major}"),
        ])
        .env("LLVM_PREFIX", &prefix)
        .status()
        .context("running cargo install bpf-linker")?;
    if !status.success() {
        bail!("installing bpf-linker {BPF_LINKER_VERSION} failed");
    }
    Ok(())
}
