//! Whether this process may load and attach the programs, with a message that says what to do.

use std::fs;

use thiserror::Error;

/// Something the machine or the user lacks.
#[derive(Debug, Error)]
pub enum PreflightError {
    /// Not root and without the capabilities eBPF tracing needs.
    #[error(
        "tracer needs root, or CAP_BPF + CAP_PERFMON + CAP_NET_ADMIN: run it with sudo (cargo xtask run does)"
    )]
    Privileges,
}

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

/// Fails unless this process may load and attach the programs.
pub fn check_privileges() -> Result<(), PreflightError> {
    let caps = effective_caps();
    let has = |cap: u32| caps & (1 << cap) != 0;
    let bpf = has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON));
    if bpf && (has(CAP_NET_ADMIN) || has(CAP_SYS_ADMIN)) {
        Ok(())
    } else {
        Err(PreflightError::Privileges)
    }
}
