//! Where a process runs: its network namespace and cgroup, as the kernel reported them
//! (`PlaceRecord`s, told as a traced process starts a syscall) or else read from `/proc/PID`,
//! and kept only where they differ from the tracer's own — a container's connections say
//! which container they are in, a host's say nothing extra.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;

use super::cgroup;

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
    cgroups: cgroup::Paths,
    /// Replaying a recording: the system is not the one traced, and places are only what the
    /// recording says ([`Places::replayed`]).
    offline: bool,
    /// Recording: every place resolved, in order, until taken ([`Places::take_resolved`]).
    resolved: Option<Vec<(u32, Option<Place>)>>,
}

impl Places {
    /// Compared with the tracer's own namespace and cgroup.
    pub fn new() -> Self {
        let me = std::process::id();
        Self {
            own_netns: netns_of(me),
            own_cgroup: cgroup::of_pid(me),
            seen: HashMap::new(),
            cgroups: cgroup::Paths::new(cgroup::cgroup2_mount()),
            offline: false,
            resolved: None,
        }
    }

    /// For a replay: nothing is looked up, every place comes from [`Places::replayed`].
    pub fn offline() -> Self {
        Self {
            own_netns: None,
            own_cgroup: None,
            seen: HashMap::new(),
            cgroups: cgroup::Paths::new(None),
            offline: true,
            resolved: None,
        }
    }

    /// Keeps every place resolved from now on for [`Places::take_resolved`] (a recording).
    pub fn keep_resolved(&mut self) {
        self.resolved.get_or_insert_with(Vec::new);
    }

    /// The places resolved since the last call, in order.
    pub fn take_resolved(&mut self) -> Option<std::vec::Drain<'_, (u32, Option<Place>)>> {
        self.resolved
            .as_mut()
            .filter(|r| !r.is_empty())
            .map(|r| r.drain(..))
    }

    /// A place the recorded run resolved.
    pub fn replayed(&mut self, pid: u32, place: Option<Place>) {
        self.remember(pid, place);
    }

    /// What the kernel told of process `pid` (its cgroup id, its namespace or 0): taken over
    /// whatever was known of it. What it cannot tell (a namespace on a kernel without the
    /// offsets, a cgroup whose directory is gone) is read from `/proc`, if still there.
    pub fn learn(&mut self, pid: u32, told: tracer_common::maps::Place) {
        if self.offline {
            return;
        }
        let netns = match told.netns {
            0 => netns_of(pid),
            n => Some(u64::from(n)),
        };
        let cgroup = self
            .cgroups
            .of(told.cgroup_id)
            .or_else(|| cgroup::of_pid(pid));
        let place = self.relative(netns, cgroup);
        self.remember(pid, place);
    }

    /// Where process `pid` runs; `None` when it is gone (or was never readable).
    pub fn of(&mut self, pid: u32) -> Option<Place> {
        if let Some(known) = self.seen.get(&pid) {
            return known.clone();
        }
        if self.offline {
            return None;
        }
        let place = self.relative(netns_of(pid), cgroup::of_pid(pid));
        self.remember(pid, place.clone());
        place
    }

    /// A place as the views show it: each part only where it is not the tracer's.
    fn relative(&self, netns: Option<u64>, cgroup: Option<String>) -> Option<Place> {
        (netns.is_some() || cgroup.is_some()).then(|| Place {
            netns: netns.filter(|n| Some(*n) != self.own_netns),
            cgroup: cgroup.filter(|c| Some(c) != self.own_cgroup.as_ref()),
        })
    }

    fn remember(&mut self, pid: u32, place: Option<Place>) {
        if self.seen.len() >= CACHED {
            self.seen.clear();
        }
        if let Some(resolved) = &mut self.resolved {
            resolved.push((pid, place.clone()));
        }
        self.seen.insert(pid, place);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tracer_itself_is_nowhere_else() {
        let mut places = Places::new();
        let here = places.of(std::process::id()).expect("our own /proc entry");
        assert_eq!(here, Place::default());
    }

    #[test]
    fn what_the_kernel_told_outlives_the_process() {
        let mut places = Places::new();
        // No such process: only what the kernel told is there, relative to the tracer.
        let gone = u32::MAX - 1;
        places.learn(
            gone,
            tracer_common::maps::Place {
                cgroup_id: u64::MAX,
                netns: 4_000_000_123,
                _pad: 0,
            },
        );
        let place = places.of(gone).unwrap();
        assert_eq!(place.netns, Some(4_000_000_123));
        assert_eq!(place.cgroup, None, "no directory has that id");
        // The tracer's own namespace is not named.
        let own = places.own_netns.unwrap() as u32;
        places.learn(
            gone,
            tracer_common::maps::Place {
                cgroup_id: u64::MAX,
                netns: own,
                _pad: 0,
            },
        );
        assert_eq!(places.of(gone), Some(Place::default()));
    }
}
