//! Where the cgroup v2 hierarchy is mounted: sock_ops and cgroup_skb programs attach to its
//! root. Found in `/proc/self/mountinfo`, never assumed (these machines mount cgroup v1 at
//! `/sys/fs/cgroup` and v2 at `/sys/fs/cgroup/unified`). Also the cgroup `--cgroup` names:
//! its directory, its id and its descendants' (a cgroup v2 id is its directory's inode number,
//! what `bpf_get_current_cgroup_id` returns), and which processes are in it.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

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
        let inside = dir.strip_prefix(mount).map_err(|_| not())?;
        Ok(Scope {
            path: format!("/{}", inside.display()).replace("//", "/"),
            dir,
        })
    }

    /// The ids of the cgroup and of every cgroup below it, now.
    pub fn ids(&self) -> Vec<u64> {
        let mut ids = Vec::new();
        let mut stack = vec![self.dir.clone()];
        while let Some(dir) = stack.pop() {
            if let Ok(meta) = fs::metadata(&dir) {
                ids.push(meta.ino());
            }
            for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(entry.path());
                }
            }
        }
        ids
    }

    /// Whether process `pid` is in the cgroup or below it.
    pub fn holds(&self, pid: u32) -> bool {
        fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .ok()
            .and_then(|text| v2_path(&text).map(|p| within(&p, &self.path)))
            .unwrap_or(false)
    }
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
