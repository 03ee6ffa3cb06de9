//! Kernel modules a guest loads at boot (the loss lab's veth pair, nftables and qdiscs are
//! modules in Debian's kernels): taken from the kernel's own package with what they depend on
//! (read from each module's `.modinfo`), decompressed (busybox's `insmod` reads plain `.ko`),
//! and packed into a second cpio archive appended to the common initramfs — the kernel
//! unpacks concatenated archives in order.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

/// Where the guest finds the modules, and the file listing them in load order.
pub const GUEST_DIR: &str = "lib/modules/vmtest";

/// What the loss lab needs: a veth pair, nftables with `numgen` and counters, `tbf` for
/// `--rate`, and `tcp_diag` for `ss -i` (without it ss falls back to /proc/net/tcp, which has
/// no TCP info). A name missing from the package is built in. `crc32c_generic` first: nf_tables
/// needs libcrc32c, whose init asks the crypto API for a `crc32c` implementation (a soft
/// dependency `.modinfo` does not list as `depends`; the kernel would `modprobe` it, and the
/// guest has no modprobe).
pub const LAB: &[&str] = &[
    "crc32c_generic",
    "veth",
    "nf_tables",
    "nft_numgen",
    "nft_counter",
    "sch_tbf",
    "tcp_diag",
];

/// A module's name as the kernel spells it: file name without `.ko*`, dashes as underscores.
fn module_name(file: &str) -> Option<String> {
    let at = file.find(".ko")?;
    let rest = &file[at + 3..];
    if !(rest.is_empty() || [".xz", ".zst", ".gz"].contains(&rest)) {
        return None;
    }
    Some(file[..at].replace('-', "_"))
}

/// Every module file under `dir`, by name.
fn index(dir: &Path, into: &mut BTreeMap<String, PathBuf>) -> anyhow::Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            index(&path, into)?;
        } else if let Some(name) = path
            .file_name()
            .and_then(|f| module_name(&f.to_string_lossy()))
        {
            into.insert(name, path);
        }
    }
    Ok(())
}

/// A module file's bytes, decompressed.
fn read_module(path: &Path) -> anyhow::Result<Vec<u8>> {
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".xz") {
        "xz"
    } else if name.ends_with(".zst") {
        "zstd"
    } else if name.ends_with(".gz") {
        "gzip"
    } else {
        return fs::read(path).with_context(|| format!("reading {name}"));
    };
    let out = Command::new(tool)
        .arg("-dc")
        .arg(path)
        .output()
        .with_context(|| format!("running {tool} to decompress {name}"))?;
    if !out.status.success() {
        bail!("{tool} -dc {name} failed");
    }
    Ok(out.stdout)
}

/// The `depends=` entry of a module's `.modinfo` section: NUL-separated `key=value` strings.
fn depends(module: &[u8]) -> Vec<String> {
    const KEY: &[u8] = b"\0depends=";
    let Some(at) = module.windows(KEY.len()).position(|w| w == KEY) else {
        return Vec::new();
    };
    let value = &module[at + KEY.len()..];
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end])
        .split(',')
        .filter(|d| !d.is_empty())
        .map(|d| d.replace('-', "_"))
        .collect()
}

/// `wanted` and their dependencies, dependencies first, with their decompressed bytes.
fn resolve(
    modules: &BTreeMap<String, PathBuf>,
    wanted: &[&str],
) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    fn visit(
        name: &str,
        modules: &BTreeMap<String, PathBuf>,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<(String, Vec<u8>)>,
    ) -> anyhow::Result<()> {
        let Some(path) = modules.get(name) else {
            return Ok(()); // built in
        };
        if !seen.insert(name.to_string()) {
            return Ok(());
        }
        let bytes = read_module(path)?;
        for dep in depends(&bytes) {
            visit(&dep, modules, seen, order)?;
        }
        order.push((name.to_string(), bytes));
        Ok(())
    }
    let mut seen = BTreeSet::new();
    let mut order = Vec::new();
    for name in wanted {
        visit(name, modules, &mut seen, &mut order)?;
    }
    Ok(order)
}

/// `initrd` followed by an archive of the lab's modules from `modules_dir` and the kernel's
/// build configuration (`/boot/config-<release>`, next to `vmlinuz`, where a Debian system has
/// it: the tracer reads CONFIG_HZ there to convert the RTO), written to
/// `work/initrd-<kernel>.gz`.
pub fn initrd_with_lab(
    initrd: &Path,
    modules_dir: &Path,
    vmlinuz: &Path,
    work: &Path,
    kernel: &str,
) -> anyhow::Result<PathBuf> {
    let mut found = BTreeMap::new();
    index(&modules_dir.join("kernel"), &mut found)?;
    let order = resolve(&found, LAB)?;
    let root = work.join(format!("modules-{kernel}"));
    let _ = fs::remove_dir_all(&root);
    let dir = root.join(GUEST_DIR);
    fs::create_dir_all(&dir)?;
    let mut list = String::new();
    for (name, bytes) in &order {
        fs::write(dir.join(format!("{name}.ko")), bytes)?;
        list.push_str(name);
        list.push('\n');
    }
    fs::write(dir.join("order"), list)?;
    let configs = vmlinuz
        .parent()
        .map(|boot| fs::read_dir(boot).into_iter().flatten().flatten())
        .into_iter()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("config-"))
        });
    for config in configs {
        fs::create_dir_all(root.join("boot"))?;
        fs::copy(
            &config,
            root.join("boot")
                .join(config.file_name().unwrap_or_default()),
        )?;
    }
    let archive = work.join(format!("modules-{kernel}.cpio.gz"));
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd '{}' && find . | cpio -o -H newc --quiet | gzip -1 > '{}'",
            root.display(),
            archive.display()
        ))
        .status()?;
    if !status.success() {
        bail!("packing the modules of {kernel} failed");
    }
    let combined = work.join(format!("initrd-{kernel}.gz"));
    let mut bytes = fs::read(initrd)?;
    bytes.extend(fs::read(&archive)?);
    fs::write(&combined, bytes)?;
    Ok(combined)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_drop_the_suffix_and_use_underscores() {
        assert_eq!(module_name("veth.ko").as_deref(), Some("veth"));
        assert_eq!(
            module_name("nft-numgen.ko.xz").as_deref(),
            Some("nft_numgen")
        );
        assert_eq!(module_name("sch_tbf.ko.zst").as_deref(), Some("sch_tbf"));
        assert_eq!(module_name("modules.order"), None);
        assert_eq!(module_name("x.kobj"), None);
    }

    #[test]
    fn depends_reads_the_modinfo_entry() {
        let modinfo = b"\x7fELF...\0license=GPL\0depends=nfnetlink,libcrc32c\0retpoline=Y\0";
        assert_eq!(depends(modinfo), ["nfnetlink", "libcrc32c"]);
        assert!(depends(b"\0license=GPL\0depends=\0name=veth\0").is_empty());
        assert!(depends(b"no modinfo here").is_empty());
    }
}
