//! How our programs ran, from the kernel's account of each (`BPF_OBJ_GET_INFO_BY_FD`).
//!
//! Runs the kernel skipped: a BPF program is not run when another BPF program
//! is already running on the same CPU in a way the kernel's recursion guard forbids (a per-CPU
//! counter for kprobes and perf-attached tracepoints, a per-program one for fentry/fexit); on
//! kernels where BPF programs are preemptible, one task's preempted program can make another
//! task's event on that CPU go unrecorded. The kernel counts each skip in the program's
//! `recursion_misses` (5.12+), which is how the tracer reports them instead of losing them
//! silently.
//!
//! Runs and run time (`--prog-stats`): the kernel counts them while its BPF statistics are
//! enabled (`BPF_ENABLE_STATS`, 5.8+, on as long as the fd it returns is open, or the
//! `kernel.bpf_stats_enabled` sysctl), for each program: what a traced application pays in its
//! own threads, program by program.

use std::os::fd::{AsFd as _, AsRawFd as _};

use aya::Ebpf;
use aya_obj::generated::{bpf_attr, bpf_cmd, bpf_prog_info};

/// The kernel's account of the program behind `fd`, and how many bytes of it the kernel
/// wrote (an older kernel fills a shorter struct).
fn info(fd: std::os::fd::BorrowedFd<'_>) -> Option<(bpf_prog_info, usize)> {
    // SAFETY: both are plain C structs for which all-zero bytes are a valid value.
    let mut info: bpf_prog_info = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    attr.info.bpf_fd = fd.as_raw_fd() as u32;
    attr.info.info_len = std::mem::size_of::<bpf_prog_info>() as u32;
    attr.info.info = &mut info as *mut bpf_prog_info as u64;
    // SAFETY: BPF_OBJ_GET_INFO_BY_FD writes at most `info_len` bytes into `info`, which lives
    // until the call returns; `attr` is a valid, fully initialised bpf_attr.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            bpf_cmd::BPF_OBJ_GET_INFO_BY_FD as libc::c_int,
            &mut attr as *mut bpf_attr,
            std::mem::size_of::<bpf_attr>(),
        )
    };
    // SAFETY: reading back the field the kernel set in the union we passed.
    let written = unsafe { attr.info.info_len } as usize;
    (rc == 0).then_some((info, written))
}

/// `recursion_misses` of the program behind `fd`; `None` where the kernel does not say.
fn recursion_misses(fd: std::os::fd::BorrowedFd<'_>) -> Option<u64> {
    let (info, written) = info(fd)?;
    let end = std::mem::offset_of!(bpf_prog_info, recursion_misses) + 8;
    (written >= end).then_some(info.recursion_misses)
}

/// One program's runs while the kernel's BPF statistics were on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgStat {
    /// The program's name in the object.
    pub program: String,
    /// Times it ran.
    pub runs: u64,
    /// Time it ran, in all, in nanoseconds.
    pub run_ns: u64,
}

impl ProgStat {
    /// Average time of one run, in nanoseconds (0 if it never ran).
    pub fn average_ns(&self) -> u64 {
        self.run_ns.checked_div(self.runs).unwrap_or(0)
    }
}

/// Runs and run time of every loaded program of `ebpf` that ran, most time first.
pub fn stats(ebpf: &Ebpf) -> Vec<ProgStat> {
    let mut stats: Vec<ProgStat> = ebpf
        .programs()
        .filter_map(|(name, prog)| {
            let (info, _) = info(prog.fd().ok()?.as_fd())?;
            (info.run_cnt > 0).then(|| ProgStat {
                program: name.to_string(),
                runs: info.run_cnt,
                run_ns: info.run_time_ns,
            })
        })
        .collect();
    stats.sort_by(|a, b| b.run_ns.cmp(&a.run_ns).then(a.program.cmp(&b.program)));
    stats
}

/// Turns the kernel's BPF statistics on for as long as the returned fd is open; `Ok(None)`
/// when they already are on (the sysctl), and why not where they cannot be.
pub fn enable_stats() -> Result<Option<std::os::fd::OwnedFd>, String> {
    if std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").is_ok_and(|v| v.trim() == "1")
    {
        return Ok(None);
    }
    aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .map(Some)
        .map_err(|e| {
            format!(
                "--prog-stats: the kernel's BPF statistics cannot be turned on (BPF_ENABLE_STATS \
                 needs Linux 5.8; or: sysctl kernel.bpf_stats_enabled=1): {e}"
            )
        })
}

/// Skipped runs per loaded program of `ebpf`, for the programs that had any.
pub fn skipped(ebpf: &Ebpf) -> Vec<(String, u64)> {
    ebpf.programs()
        .filter_map(|(name, prog)| {
            let fd = prog.fd().ok()?;
            let misses = recursion_misses(fd.as_fd())?;
            (misses > 0).then(|| (name.to_string(), misses))
        })
        .collect()
}

/// The runs skipped since `before` (an earlier [`skipped`]), per program, for the programs
/// that had new ones.
pub fn skipped_since(now: &[(String, u64)], before: &[(String, u64)]) -> Vec<(String, u64)> {
    now.iter()
        .filter_map(|(program, n)| {
            let was = before
                .iter()
                .find(|(p, _)| p == program)
                .map_or(0, |(_, n)| *n);
            (*n > was).then(|| (program.clone(), n - was))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(list: &[(&str, u64)]) -> Vec<(String, u64)> {
        list.iter().map(|(p, n)| (p.to_string(), *n)).collect()
    }

    #[test]
    fn skipped_since_keeps_only_programs_with_new_skips() {
        let before = runs(&[("sys_exit", 2), ("sys_enter_write", 1)]);
        let now = runs(&[
            ("sys_exit", 5),
            ("sys_enter_write", 1),
            ("sys_enter_read", 3),
        ]);
        assert_eq!(
            skipped_since(&now, &before),
            runs(&[("sys_exit", 3), ("sys_enter_read", 3)])
        );
        assert!(skipped_since(&now, &now).is_empty());
        assert_eq!(skipped_since(&now, &[]), now);
    }
}
