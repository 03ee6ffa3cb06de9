//! The kernel matrix: Debian kernel packages pinned by exact version and sha256, fetched through
//! a private apt configuration (never the machine's `/etc/apt`), checked, cached and unpacked;
//! and any other Debian kernel package given as a file.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use super::sh;

/// One Debian package pinned by exact version and checksum, so that what vm-test boots never
/// depends on the state of the machine's apt lists.
pub struct Deb {
    /// The package.
    pub package: &'static str,
    /// Its exact version.
    pub version: &'static str,
    /// The suite it comes from (one of `xtask/apt/sources.list`).
    pub suite: &'static str,
    /// Its path in the suite's archive, the fallback when apt's lists no longer name it.
    pub pool: &'static str,
    /// sha256 of the `.deb`, as Debian's signed `Packages` index gives it.
    pub sha256: &'static str,
}

/// A Debian kernel pinned in the matrix.
pub struct Pinned {
    /// The name `--kernel` takes and the report shows.
    pub name: &'static str,
    /// The package holding the image (`linux-image-*` up to Debian 13, `linux-binary-*` from
    /// Debian 14 on) and, up to Debian 13, its modules.
    pub image: Deb,
    /// The package holding the modules when the image's does not (Debian 14's
    /// `linux-modules-*`): the loss lab's veth, nftables and qdiscs are modules.
    pub modules: Option<Deb>,
    /// A kernel reported but never failing the run (release candidates).
    pub canary: bool,
    /// Why this kernel's failures are known and do not fail the run, when they are: the
    /// table still shows them, with this reason.
    pub known: Option<&'static str>,
}

/// The matrix `cargo xtask vm-test` runs by default, oldest first.
pub const MATRIX: &[Pinned] = &[
    Pinned {
        name: "5.10",
        image: Deb {
            package: "linux-image-5.10.0-32-amd64",
            version: "5.10.223-1",
            suite: "bullseye",
            pool: "debian/pool/main/l/linux-signed-amd64/linux-image-5.10.0-32-amd64_5.10.223-1_amd64.deb",
            sha256: "86a6792f3a03ab15a643f385830cdaa921f15e3e9c8bf63aa55a9243c62fc797",
        },
        modules: None,
        canary: false,
        known: None,
    },
    Pinned {
        name: "6.1.172",
        image: Deb {
            package: "linux-image-6.1.0-48-amd64",
            version: "6.1.172-1",
            suite: "bookworm-security",
            pool: "debian-security/pool/updates/main/l/linux-signed-amd64/linux-image-6.1.0-48-amd64_6.1.172-1_amd64.deb",
            sha256: "22007ac243a5de6d53cbc5b43040b1389fa10860c4952a43d2786e09798cf1f8",
        },
        modules: None,
        canary: false,
        known: None,
    },
    Pinned {
        name: "6.1.192",
        image: Deb {
            package: "linux-image-6.1.0-56-amd64",
            version: "6.1.192-2",
            suite: "bookworm-security",
            pool: "debian-security/pool/updates/main/l/linux-signed-amd64/linux-image-6.1.0-56-amd64_6.1.192-2_amd64.deb",
            sha256: "a86e2049672f52354c4536a089203b6c82639420424d31c91cf31a181fd4d8f1",
        },
        modules: None,
        canary: false,
        known: None,
    },
    Pinned {
        name: "6.12",
        image: Deb {
            package: "linux-image-6.12.117+deb13-amd64",
            version: "6.12.117-1",
            suite: "trixie",
            pool: "debian/pool/main/l/linux-signed-amd64/linux-image-6.12.117+deb13-amd64_6.12.117-1_amd64.deb",
            sha256: "ca712d36790184f6ac125ce2b20ea4e2202ae6bb7817b7de268f1f0115ccda73",
        },
        modules: None,
        canary: false,
        known: None,
    },
    Pinned {
        // Not 6.12.95-1~bpo12+1 (bookworm-backports): under QEMU TCG that build double-faults
        // in SLUB's per-CPU fast path, also while booting, before any of our code runs.
        name: "6.12-cloud",
        image: Deb {
            package: "linux-image-6.12.117+deb12-cloud-amd64",
            version: "6.12.117-1~deb12u1",
            suite: "bookworm-security",
            pool: "debian-security/pool/updates/main/l/linux-signed-amd64/linux-image-6.12.117+deb12-cloud-amd64_6.12.117-1~deb12u1_amd64.deb",
            sha256: "5195b288dec79e2981d6b84457f38b7ce7310a2d702930ec7d07209c7f78ce37",
        },
        modules: None,
        canary: false,
        known: None,
    },
    Pinned {
        name: "7.2",
        image: Deb {
            package: "linux-binary-7.2.13+deb14-amd64",
            version: "7.2.13-1",
            suite: "sid",
            pool: "debian/pool/main/l/linux-signed-amd64/linux-binary-7.2.13+deb14-amd64_7.2.13-1_amd64.deb",
            sha256: "fb8cd0ade4ef82d9dde1dcf183d4bf4033db1b549b0acc9973855ad9cc48c4f5",
        },
        modules: Some(Deb {
            package: "linux-modules-7.2.13+deb14-amd64",
            version: "7.2.13-1",
            suite: "sid",
            pool: "debian/pool/main/l/linux/linux-modules-7.2.13+deb14-amd64_7.2.13-1_amd64.deb",
            sha256: "a37a3d200915c4cf524e90c81bbb2a8b683d292cd00873e89c23b2ef32b1bf11",
        }),
        canary: false,
        known: None,
    },
    Pinned {
        name: "7.3-rc",
        image: Deb {
            package: "linux-binary-7.3-amd64",
            version: "7.3~rc7-1~exp1",
            suite: "experimental",
            pool: "debian/pool/main/l/linux-signed-amd64/linux-binary-7.3-amd64_7.3~rc7-1~exp1_amd64.deb",
            sha256: "a427422f7d200f39f253882e0703a04b6a48b92dbfa46d00f1257151ee0da05c",
        },
        modules: Some(Deb {
            package: "linux-modules-7.3-amd64",
            version: "7.3~rc7-1~exp1",
            suite: "experimental",
            pool: "debian/pool/main/l/linux/linux-modules-7.3-amd64_7.3~rc7-1~exp1_amd64.deb",
            sha256: "3c3cb040797c989838f1f0d1667b5a1246ec6d0eee45c944e04de06db140dd00",
        }),
        canary: true,
        known: None,
    },
];

/// The pinned kernel called `name`.
pub fn pinned(name: &str) -> Option<&'static Pinned> {
    MATRIX.iter().find(|k| k.name == name)
}

/// What one VM boots.
pub struct Kernel {
    /// The name the report shows.
    pub name: String,
    /// The unpacked kernel image.
    pub vmlinuz: PathBuf,
    /// Its modules (`lib/modules/<abi>`), when the package holds them.
    pub modules: Option<PathBuf>,
}

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

/// Downloads `k` into `deb`: apt with the private lists first, the archive's pool path if
/// apt's lists no longer name that version (a pool keeps a file a while after its suite moved
/// on). The caller checks the checksum.
fn download(root: &Path, cache: &Path, k: &Deb, deb: &Path) -> anyhow::Result<()> {
    eprintln!(
        "vm-test: downloading {} {} ({})",
        k.package, k.version, k.suite
    );
    let apt = private_apt(root, cache)?;
    let lists_fresh = cache.join("apt/lists").read_dir()?.flatten().count() > 1;
    if !lists_fresh {
        sh(Command::new("apt-get").args(&apt).args(["update", "-qq"]))?;
    }
    let staging = cache.join(format!("download-{}", k.package));
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging)?;
    let by_apt = Command::new("apt-get")
        .args(&apt)
        .args(["download", &format!("{}={}", k.package, k.version)])
        .current_dir(&staging)
        .output()
        .context("running apt-get download")?;
    let got = fs::read_dir(&staging)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"));
    if let (true, Some(got)) = (by_apt.status.success(), got) {
        fs::rename(got, deb)?;
        let _ = fs::remove_dir_all(&staging);
        return Ok(());
    }
    let _ = fs::remove_dir_all(&staging);
    let url = format!("http://deb.debian.org/{}", k.pool);
    let by_pool = Command::new("curl")
        .args(["-fsSL", "--retry", "2", "-o"])
        .arg(deb)
        .arg(&url)
        .output()
        .context("running curl")?;
    if by_pool.status.success() {
        return Ok(());
    }
    let _ = fs::remove_file(deb);
    bail!(
        "{} {} is no longer available from Debian's archive (apt: {}; {url}: {}); pin another \
         build in xtask/src/vm/kernels.rs",
        k.package,
        k.version,
        String::from_utf8_lossy(&by_apt.stderr)
            .lines()
            .last()
            .unwrap_or("failed")
            .trim(),
        String::from_utf8_lossy(&by_pool.stderr).trim()
    )
}

/// The pinned kernel `k`, downloaded, checked and unpacked once into `cache`.
pub fn fetch(root: &Path, cache: &Path, k: &Pinned) -> anyhow::Result<Kernel> {
    let unpacked = fetch_deb(root, cache, &k.image)?;
    let modules = match &k.modules {
        Some(package) => modules(&fetch_deb(root, cache, package)?),
        None => modules(&unpacked),
    };
    Ok(Kernel {
        name: k.name.to_string(),
        vmlinuz: image(&unpacked)?,
        modules,
    })
}

/// Pinned package `k`, downloaded, checked and unpacked once into `cache`: its directory.
fn fetch_deb(root: &Path, cache: &Path, k: &Deb) -> anyhow::Result<PathBuf> {
    fs::create_dir_all(cache)?;
    let dir = cache.join(format!("{}_{}", k.package, k.version));
    if !dir.is_dir() {
        let deb = cache.join(format!("{}_{}_amd64.deb", k.package, k.version));
        if !deb.exists() || sha256(&deb)? != k.sha256 {
            download(root, cache, k, &deb)?;
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
        unpack(&deb, &dir)?;
    }
    Ok(dir)
}

/// Any Debian kernel package given as a file: an image (`linux-image-*`, kernel in `boot/`) or
/// a binary package (`linux-binary-*`, Debian 14 on, kernel in `usr/lib/modules/<abi>/`).
pub fn from_deb(cache: &Path, deb: &Path) -> anyhow::Result<Kernel> {
    let stem = deb
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .context("a kernel package file name")?;
    let dir = cache.join(format!("deb-{stem}"));
    let _ = fs::remove_dir_all(&dir);
    unpack(deb, &dir)?;
    let vmlinuz = image(&dir).with_context(|| {
        format!(
            "{}: no kernel image inside; from Debian 14 on, linux-image-<abi> is a \
             metapackage and the image is in linux-binary-<abi>",
            deb.display()
        )
    })?;
    Ok(Kernel {
        name: stem.split('_').next().unwrap_or(&stem).to_string(),
        vmlinuz,
        modules: modules(&dir),
    })
}

fn unpack(deb: &Path, dir: &Path) -> anyhow::Result<()> {
    let partial = dir.with_extension("partial");
    let _ = fs::remove_dir_all(&partial);
    sh(Command::new("dpkg").arg("-x").arg(deb).arg(&partial))
        .with_context(|| format!("unpacking {}", deb.display()))?;
    fs::rename(&partial, dir)?;
    Ok(())
}

/// The kernel image in an unpacked package: `boot/vmlinuz-*`, or
/// `usr/lib/modules/<abi>/vmlinuz` (also under `lib/`).
fn image(dir: &Path) -> anyhow::Result<PathBuf> {
    let in_boot = fs::read_dir(dir.join("boot"))
        .into_iter()
        .flatten()
        .flatten();
    let boot = in_boot.map(|e| e.path()).find(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
    });
    if let Some(found) = boot {
        return Ok(found);
    }
    ["usr/lib/modules", "lib/modules"]
        .iter()
        .flat_map(|m| fs::read_dir(dir.join(m)).into_iter().flatten().flatten())
        .map(|abi| abi.path().join("vmlinuz"))
        .find(|p| p.is_file())
        .context("no vmlinuz in the kernel package")
}

/// The modules directory of an unpacked package, `(usr/)lib/modules/<abi>`, when it holds a
/// `kernel/` tree (Debian 14's `linux-binary-*` ships them in another package).
fn modules(dir: &Path) -> Option<PathBuf> {
    ["usr/lib/modules", "lib/modules"]
        .iter()
        .flat_map(|m| fs::read_dir(dir.join(m)).into_iter().flatten().flatten())
        .map(|abi| abi.path())
        .find(|p| p.join("kernel").is_dir())
}
