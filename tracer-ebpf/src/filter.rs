//! The in-kernel filter: which tasks and ports are traced. Set by the loader before load.

use aya_ebpf::{
    Global,
    helpers::{bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_task},
};
use tracer_common::{
    COMM_LEN,
    maps::FilterConfig,
    offsets::{NET_NS, NS_INUM, NSPROXY_NET_NS, SK_NET, TASK_NSPROXY},
};

use crate::{
    context::{kernel_field, offset},
    maps::{CGROUPS, PIDS, PORTS},
};

/// Filter switches; read-only after load, so the verifier prunes the disabled branches.
#[unsafe(no_mangle)]
static FILTER: Global<FilterConfig> = Global::new(FilterConfig {
    by_port: 0,
    by_pid: 0,
    by_comm: 0,
    emit_enter: 0,
    self_tgid: 0,
    comm: [0; COMM_LEN],
    capture: 0,
    follow: 0,
    snaplen: 0,
    sample_gap_us: 0,
    by_cgroup: 0,
    by_netns: 0,
    netns_readable: 0,
    preemptible: 0,
    netns: 0,
});

/// The filter configuration.
#[inline(always)]
pub fn config() -> FilterConfig {
    FILTER.load()
}

/// Whether the task `tgid` (running as `comm`, the current task) passes the pid, comm and
/// cgroup filters.
#[inline(always)]
pub fn task_matches(cfg: &FilterConfig, tgid: u32, comm: &[u8; COMM_LEN]) -> bool {
    if tgid == cfg.self_tgid {
        return false;
    }
    if cfg.by_pid != 0 && PIDS.get_ptr(tgid).is_none() {
        return false;
    }
    if cfg.by_comm != 0 && *comm != cfg.comm {
        return false;
    }
    // SAFETY: bpf_get_current_cgroup_id has no preconditions (the cgroup v2 id of the current
    // task; callers run in the task's context, as for its tgid).
    if cfg.by_cgroup != 0
        && CGROUPS
            .get_ptr(unsafe { bpf_get_current_cgroup_id() })
            .is_none()
    {
        return false;
    }
    if cfg.by_netns != 0 && current_netns() != cfg.netns {
        return false;
    }
    true
}

/// The inode number of network namespace `net` (a `struct net *`); 0 if unreadable.
#[inline(always)]
fn net_inum(net: u64) -> u32 {
    if net == 0 {
        return 0;
    }
    kernel_field(net + offset(NET_NS) as u64, NS_INUM)
}

/// The network namespace of the current task (0 while it exits: its nsproxy is gone).
#[inline(always)]
pub fn current_netns() -> u32 {
    // SAFETY: bpf_get_current_task has no preconditions; the pointer is only read through
    // bpf_probe_read_kernel.
    let task = unsafe { bpf_get_current_task() };
    let nsproxy: u64 = kernel_field(task, TASK_NSPROXY);
    if nsproxy == 0 {
        return 0;
    }
    net_inum(kernel_field(nsproxy, NSPROXY_NET_NS))
}

/// Whether socket `sk` lives in the traced network namespace (always, without `--netns`).
#[inline(always)]
pub fn netns_matches(cfg: &FilterConfig, sk: u64) -> bool {
    cfg.by_netns == 0 || net_inum(kernel_field(sk, SK_NET)) == cfg.netns
}

/// Whether a socket with these ports passes the port filter (either end may match).
#[inline(always)]
pub fn ports_match(cfg: &FilterConfig, lport: u16, rport: u16) -> bool {
    cfg.by_port == 0 || PORTS.get_ptr(lport).is_some() || PORTS.get_ptr(rport).is_some()
}

/// Whether only the port filter is active, so that a socket can be traced without knowing its
/// owner (a connection already open when the tracer started).
#[inline(always)]
pub fn ports_only(cfg: &FilterConfig) -> bool {
    cfg.by_pid == 0 && cfg.by_comm == 0 && cfg.by_cgroup == 0 && cfg.by_netns == 0
}

/// The running task's comm, or zeros.
#[inline(always)]
pub fn current_comm() -> [u8; COMM_LEN] {
    bpf_get_current_comm().unwrap_or([0; COMM_LEN])
}
