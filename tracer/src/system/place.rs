//! Where a process runs: its network namespace and cgroup, read from `/proc/PID`, and kept
//! only where they differ from the tracer's own — a container's connections say which
//! container they are in, a host's say nothing extra.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;

/// A process's network namespace (the inode number `ip netns identify`, `lsns` and
/// `/proc/PID/ns/net` show) and cgroup v2 path, each only where it is not the tracer's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Place {
    /// The network namespace, when not the tracer's.
    pub netns: Option<u64>,
    /// The cgroup v2 path (as `/proc/PID/cgroup` spells it), when not the tracer's.
    pub cgroup: Option<String>,
}

/// Processes looked up at most before the cache starts again.
const CACHED: usize = 4096;

/// Looks processes up, once each.
pub struct Places {
    own_netns: Option<u64>,
    own_cgroup: Option<String>,
    seen: HashMap<u32, Option<Place>>,
}

impl Places {
    /// Compared with the tracer's own namespace and cgroup.
    pub fn new() -> Self {
        let me = std::process::id();
        Self {
            own_netns: netns_of(me),
            own_cgroup: cgroup_of(me),
            seen: HashMap::new(),
        }
    }

    /// Where process `pid` runs; `None` when it is gone (or was never readable).
    pub fn of(&mut self, pid: u32) -> Option<Place> {
        if let Some(known) = self.seen.get(&pid) {
            return known.clone();
        }
        if self.seen.len() >= CACHED {
            self.seen.clear();
        }
        let netns = netns_of(pid);
        let cgroup = cgroup_of(pid);
        let place = (netns.is_some() || cgroup.is_some()).then(|| Place {
            netns: netns.filter(|n| Some(*n) != self.own_netns),
            cgroup: cgroup.filter(|c| Some(c) != self.own_cgroup.as_ref()),
        });
        self.seen.insert(pid, place.clone());
        place
    }
}

impl Default for Places {
    fn default() -> Self {
        Self::new()
    }
}

/// The inode number of `pid`'s network namespace.
fn netns_of(pid: u32) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/ns/net"))
        .ok()
        .map(|m| m.ino())
}

/// `pid`'s cgroup v2 path: the `0::PATH` line of `/proc/PID/cgroup`.
fn cgroup_of(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    parse_cgroup(&text)
}

/// The cgroup v2 path in the text of a `/proc/PID/cgroup` file.
fn parse_cgroup(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_v2_line_names_the_cgroup() {
        let text = "12:cpu,cpuacct:/user.slice\n0::/user.slice/user-0.slice/session-4.scope\n";
        assert_eq!(
            parse_cgroup(text).as_deref(),
            Some("/user.slice/user-0.slice/session-4.scope")
        );
        assert_eq!(parse_cgroup("12:cpu:/\n"), None);
    }

    #[test]
    fn the_tracer_itself_is_nowhere_else() {
        let mut places = Places::new();
        let here = places.of(std::process::id()).expect("our own /proc entry");
        assert_eq!(here, Place::default());
    }
}
