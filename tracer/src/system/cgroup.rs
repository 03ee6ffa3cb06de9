//! Where the cgroup v2 hierarchy is mounted: sock_ops and cgroup_skb programs attach to its
//! root. Found in `/proc/self/mountinfo`, never assumed (these machines mount cgroup v1 at
//! `/sys/fs/cgroup` and v2 at `/sys/fs/cgroup/unified`). Also the cgroup `--cgroup` names:
//! its directory, its id and its descendants' (a cgroup v2 id is its directory's inode number,
//! what `bpf_get_current_cgroup_id` returns), and which processes are in it.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Why `--cgroup` names no cgroup.
#[derive(Debug, thiserror::Error)]
pub enum ScopeError {
    /// No cgroup v2 hierarchy is mounted.
    #[error("--cgroup needs the cgroup v2 hierarchy, and none is mounted")]
    NoHierarchy,
    /// The path is not a directory of the cgroup v2 hierarchy.
    #[error("--cgroup {0}: not a cgroup v2 directory under {1}")]
    NotACgroup(String, String),
}

/// The cgroup `--cgroup` names.
#[derive(Clone, Debug)]
pub struct Scope {
    /// Its directory.
    pub dir: PathBuf,
    /// Its path inside the hierarchy, as `/proc/PID/cgroup` spells it (`/` for the root).
    pub path: String,
}

impl Scope {
    /// `arg` as a directory of the hierarchy mounted at `mount`: an absolute path under it, or a
    /// path relative to it (`system.slice/docker-ID.scope`, as `/proc/PID/cgroup` shows).
    pub fn resolve(arg: &Path, mount: &str) -> Result<Self, ScopeError> {
        let not = || ScopeError::NotACgroup(arg.display().to_string(), mount.to_string());
        let candidates = [
            arg.to_path_buf(),
            Path::new(mount).join(arg.strip_prefix("/").unwrap_or(arg)),
        ];
        let dir = candidates
            .iter()
            .filter(|c| c.join("cgroup.procs").is_file())
            .find_map(|c| fs::canonicalize(c).ok())
            .ok_or_else(not)?;
        Ok(Scope {
            path: inside(&dir, mount).ok_or_else(not)?,
            dir,
        })
    }

    /// The ids of the cgroup and of every cgroup below it, now.
    pub fn ids(&self) -> Vec<u64> {
        walk(&self.dir).into_iter().map(|(id, _)| id).collect()
    }

    /// Whether process `pid` is in the cgroup or below it.
    pub fn holds(&self, pid: u32) -> bool {
        of_pid(pid).is_some_and(|p| within(&p, &self.path))
    }
}

/// The id and directory of cgroup `dir` and of every cgroup below it, now.
fn walk(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry.path());
            }
        }
        if let Ok(meta) = fs::metadata(&dir) {
            found.push((meta.ino(), dir));
        }
    }
    found
}

/// Cgroup v2 paths by id (what the kernel reports of a process), from a walk of the hierarchy
/// made when an id is not known yet, at most every [`Paths::REWALK`].
#[derive(Default)]
pub struct Paths {
    mount: Option<String>,
    by_id: HashMap<u64, String>,
    walked: Option<Instant>,
}

impl Paths {
    /// Least time between two walks: a cgroup made and removed within it may go unnamed.
    const REWALK: Duration = Duration::from_millis(200);

    /// Paths of the hierarchy mounted at `mount` (none without one).
    pub fn new(mount: Option<String>) -> Self {
        Self {
            mount,
            ..Self::default()
        }
    }

    /// The path of cgroup `id`, as `/proc/PID/cgroup` spells it; `None` if no directory of the
    /// hierarchy has that id (any more).
    pub fn of(&mut self, id: u64) -> Option<String> {
        if let Some(path) = self.by_id.get(&id) {
            return Some(path.clone());
        }
        let mount = self.mount.as_deref()?;
        if self.walked.is_some_and(|t| t.elapsed() < Self::REWALK) {
            return None;
        }
        self.walked = Some(Instant::now());
        self.by_id = walk(Path::new(mount))
            .into_iter()
            .filter_map(|(id, dir)| Some((id, inside(&dir, mount)?)))
            .collect();
        self.by_id.get(&id).cloned()
    }
}

/// Directory `dir` of the hierarchy mounted at `mount` as `/proc/PID/cgroup` spells it.
fn inside(dir: &Path, mount: &str) -> Option<String> {
    let rel = dir.strip_prefix(mount).ok()?;
    Some(format!("/{}", rel.display()).replace("//", "/"))
}

/// Process `pid`'s cgroup v2 path, from `/proc/PID/cgroup`; `None` once it is gone.
pub fn of_pid(pid: u32) -> Option<String> {
    v2_path(&fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?)
}

/// The cgroup v2 path in `/proc/PID/cgroup` text (its `0::` line).
fn v2_path(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
}

/// Whether cgroup path `path` is `scope` or below it.
fn within(path: &str, scope: &str) -> bool {
    scope == "/"
        || path == scope
        || path
            .strip_prefix(scope)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The first mount point of the cgroup v2 hierarchy, from `/proc/self/mountinfo`.
pub fn cgroup2_mount() -> Option<String> {
    let text = fs::read_to_string("/proc/self/mountinfo").ok()?;
    parse_cgroup2_mount(&text)
}

/// Finds the cgroup2 mount point in mountinfo text.
pub fn parse_cgroup2_mount(mountinfo: &str) -> Option<String> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let fstype = right.split_whitespace().next()?;
        (fstype == "cgroup2").then(|| left.split_whitespace().nth(4).map(str::to_string))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_are_within_a_scope_by_whole_path_components() {
        let text = "12:cpu:/x\n0::/system.slice/docker-abc.scope/init\n";
        let path = v2_path(text).unwrap();
        assert_eq!(path, "/system.slice/docker-abc.scope/init");
        assert!(within(&path, "/system.slice/docker-abc.scope"));
        assert!(within(&path, "/"));
        assert!(!within(&path, "/system.slice/docker-ab"));
        assert!(!within("/a", "/a/b"));
    }

    #[test]
    fn a_scope_is_a_cgroup_directory_with_its_descendants() {
        let Some(mount) = cgroup2_mount() else {
            return; // no cgroup v2 here: nothing to resolve
        };
        let root = Scope::resolve(Path::new(&mount), &mount).unwrap();
        assert_eq!(root.path, "/");
        assert!(!root.ids().is_empty());
        assert!(root.holds(std::process::id()));
        assert!(Scope::resolve(Path::new("/etc"), &mount).is_err());
    }

    #[test]
    fn a_cgroup_id_names_the_path_proc_shows() {
        let Some(mount) = cgroup2_mount() else {
            return; // no cgroup v2 here
        };
        let ours = of_pid(std::process::id()).unwrap();
        let id = fs::metadata(format!("{mount}{ours}")).unwrap().ino();
        let mut paths = Paths::new(Some(mount.clone()));
        assert_eq!(paths.of(id), Some(ours));
        let root = fs::metadata(&mount).unwrap().ino();
        assert_eq!(paths.of(root).as_deref(), Some("/"));
        assert_eq!(paths.of(u64::MAX), None);
        assert_eq!(Paths::new(None).of(id), None);
    }

    #[test]
    fn finds_cgroup2_among_v1_mounts() {
        let text = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu";
        assert_eq!(
            parse_cgroup2_mount(text).as_deref(),
            Some("/sys/fs/cgroup/unified")
        );
        assert_eq!(
            parse_cgroup2_mount("1 2 0:1 / / rw - ext4 /dev/vda rw"),
            None
        );
    }
}
