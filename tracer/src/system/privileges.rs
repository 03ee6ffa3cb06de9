//! Whether this process may load and attach the programs, with a message that says what to do.
//!
//! The capabilities a run needs on a kernel with CAP_BPF (5.8+), and why:
//! - `CAP_BPF`: load programs and create maps;
//! - `CAP_PERFMON`: attach tracepoints, kprobes and fentry programs (perf events);
//! - `CAP_NET_ADMIN`: attach sock_ops and cgroup_skb programs to the cgroup2 root;
//! - `CAP_DAC_READ_SEARCH`: read tracefs (`/sys/kernel/tracing` is mode 0700) for event ids
//!   and field offsets.
//!
//! Optional: `CAP_SYS_ADMIN` to mount tracefs where it is missing (and it stands in for
//! `CAP_BPF` and `CAP_PERFMON` on older kernels); `CAP_SYS_PTRACE` to find the sockets other
//! users' processes opened before the start.

use std::fs;

use thiserror::Error;

/// Something the machine or the user lacks.
#[derive(Debug, Error)]
pub enum PreflightError {
    /// Not root and without the capabilities eBPF tracing needs.
    #[error(
        "tracer needs root, or CAP_BPF + CAP_PERFMON + CAP_NET_ADMIN + CAP_DAC_READ_SEARCH \
         (missing: {missing}): run it with sudo (cargo xtask run does)"
    )]
    Privileges {
        /// The capabilities this process lacks, comma-separated.
        missing: String,
    },
}

const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// The effective capability set of this process, from `/proc/self/status`.
fn effective_caps() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// The capabilities a run needs that `caps` lacks, by name. CAP_SYS_ADMIN stands in for
/// CAP_BPF and CAP_PERFMON, as the kernel lets it.
pub fn missing(caps: u64) -> Vec<&'static str> {
    let has = |cap: u32| caps & (1 << cap) != 0;
    let admin = has(CAP_SYS_ADMIN);
    [
        (CAP_BPF, "CAP_BPF", admin),
        (CAP_PERFMON, "CAP_PERFMON", admin),
        (CAP_NET_ADMIN, "CAP_NET_ADMIN", false),
        (CAP_DAC_READ_SEARCH, "CAP_DAC_READ_SEARCH", false),
    ]
    .into_iter()
    .filter(|&(cap, _, covered)| !has(cap) && !covered)
    .map(|(_, name, _)| name)
    .collect()
}

/// Fails unless this process may load and attach the programs, naming what it lacks.
pub fn check_privileges() -> Result<(), PreflightError> {
    let missing = missing(effective_caps());
    if missing.is_empty() {
        Ok(())
    } else {
        Err(PreflightError::Privileges {
            missing: missing.join(", "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_exactly_what_is_missing() {
        let bit = |c: u32| 1u64 << c;
        assert!(missing(u64::MAX).is_empty());
        let four = bit(CAP_BPF) | bit(CAP_PERFMON) | bit(CAP_NET_ADMIN) | bit(CAP_DAC_READ_SEARCH);
        assert!(missing(four).is_empty());
        assert_eq!(
            missing(four & !bit(CAP_DAC_READ_SEARCH)),
            ["CAP_DAC_READ_SEARCH"]
        );
        let admin = bit(CAP_SYS_ADMIN) | bit(CAP_NET_ADMIN) | bit(CAP_DAC_READ_SEARCH);
        assert!(
            missing(admin).is_empty(),
            "CAP_SYS_ADMIN covers BPF and PERFMON"
        );
        assert_eq!(missing(0).len(), 4);
    }
}
