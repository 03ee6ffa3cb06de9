//! Loading the eBPF object, attaching each hook with the best tier this kernel allows, and
//! reporting what attached and why better tiers were not used.

use std::fs::File;

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::trace_point::TracePointLinkId;
use aya::programs::{CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, SockOps, TracePoint};
use aya::{Ebpf, EbpfLoader};
use thiserror::Error;
use tracer_common::{
    COMM_LEN, FdKey, FilterConfig, OFF_DESTROY_SKADDR, OFF_RETRANS_SKADDR, OFF_SENDRST_SKADDR,
    OFF_SOCKLEN_FAMILY, OFF_SOCKLEN_PROTOCOL, OFF_SOCKLEN_RET, OFF_SOCKLEN_SK, OFF_STATE_DADDR,
    OFF_STATE_DADDR6, OFF_STATE_DPORT, OFF_STATE_FAMILY, OFF_STATE_NEW, OFF_STATE_OLD,
    OFF_STATE_PROTOCOL, OFF_STATE_SADDR, OFF_STATE_SADDR6, OFF_STATE_SKADDR, OFF_STATE_SPORT,
    OFF_TCPSK_SKADDR, OFFSETS_LEN, Owner, SyscallOp,
};

use crate::kernel_hooks::{KERNEL_FNS, Tiers};
use crate::tiers::ProbeMode;
use crate::tracefs::{Format, TracefsError};
use crate::{existing, preflight};

/// Tracepoint links by program, kept to detach them in parallel.
pub(crate) type Links = Vec<(String, TracePointLinkId)>;

/// The compiled programs, embedded at build time.
static PROGRAMS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer"));

/// Why loading failed as a whole.
#[derive(Debug, Error)]
pub enum LoadError {
    /// The object could not be loaded into the kernel.
    #[error("loading the eBPF programs failed: {0}")]
    Load(#[from] aya::EbpfError),
    /// A map is missing or of the wrong type (a build mismatch).
    #[error("eBPF map {0}: {1}")]
    Map(&'static str, String),
    /// The state layer, which every view needs, could not be attached.
    #[error("the state hook could not be attached: {0}")]
    Core(String),
    /// A tracepoint's format could not be read.
    #[error(transparent)]
    Tracefs(#[from] TracefsError),
}

/// What the user asked to trace.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Ports (local or remote).
    pub ports: Vec<u16>,
    /// Process ids.
    pub pids: Vec<u32>,
    /// Command name.
    pub comm: Option<String>,
    /// Emit syscall-enter records (for the human view).
    pub emit_enter: bool,
    /// Capture the traced connections' segments.
    pub packets: bool,
    /// Payload bytes to keep per segment.
    pub snaplen: u16,
    /// Which tier the kernel-function hooks use.
    pub probe_mode: ProbeMode,
}

/// How one logical hook was attached.
#[derive(Clone, Debug)]
pub struct HookStatus {
    /// The kernel function or layer it stands for (`tcp_connect`, `syscalls`...).
    pub name: &'static str,
    /// Its layer: `syscall`, `kernel` or `state`.
    pub layer: &'static str,
    /// The tier that attached: `fentry`, `kprobe` or `tracepoint`; `None` if none did.
    pub tier: Option<&'static str>,
    /// What exactly attached (`tracepoint:sock:sock_send_length`).
    pub via: Option<String>,
    /// Why each better tier was not used.
    pub skipped: Vec<String>,
    /// Why the hook is missing, when `tier` is `None`.
    pub error: Option<String>,
}

/// The loaded and attached programs. Dropping it detaches everything; [`Loaded::detach`] does
/// it faster.
pub struct Loaded {
    ebpf: Ebpf,
    tracepoint_links: Links,
    /// One entry per logical hook, in display order.
    pub hooks: Vec<HookStatus>,
}

impl Loaded {
    /// Takes the event ring buffer.
    pub fn ring_buffer(&mut self) -> Result<RingBuf<MapData>, LoadError> {
        let map = self
            .ebpf
            .take_map("EVENTS")
            .ok_or_else(|| LoadError::Map("EVENTS", "missing".into()))?;
        RingBuf::try_from(map).map_err(|e| LoadError::Map("EVENTS", e.to_string()))
    }

    /// Records the kernel could not put in the ring buffer, summed over CPUs.
    pub fn dropped(&self) -> u64 {
        self.ebpf
            .map("DROPS")
            .and_then(|m| PerCpuArray::<_, u64>::try_from(m).ok())
            .and_then(|a| a.get(&0, 0).ok())
            .map(|v| v.iter().sum())
            .unwrap_or(0)
    }

    /// Detaches everything. Releasing a tracepoint's perf event waits for an RCU grace period,
    /// so the ~35 tracepoint links are released from several threads at once; sequentially
    /// that takes seconds on small VMs.
    pub fn detach(mut self) {
        let mut links = Vec::new();
        for (program, id) in std::mem::take(&mut self.tracepoint_links) {
            let prog: Option<&mut TracePoint> = self
                .ebpf
                .program_mut(&program)
                .and_then(|p| p.try_into().ok());
            if let Some(link) = prog.and_then(|p| p.take_link(id).ok()) {
                links.push(link);
            }
        }
        let per_thread = links.len().div_ceil(8).max(1);
        std::thread::scope(|s| {
            while !links.is_empty() {
                let chunk: Vec<_> = links.drain(..per_thread.min(links.len())).collect();
                s.spawn(move || drop(chunk));
            }
        });
        drop(self.ebpf);
    }

    /// Layers with no hook attached at all.
    pub fn missing_layers(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        let mut layers = vec!["syscall", "kernel", "state"];
        if self.hooks.iter().any(|h| h.layer == "packet") {
            layers.push("packet");
        }
        for layer in layers {
            if !self
                .hooks
                .iter()
                .any(|h| h.layer == layer && h.tier.is_some())
            {
                missing.push(layer);
            }
        }
        missing
    }
}

/// Loads the programs with `filter` and attaches every hook it can.
pub fn load(filter: &Filter) -> Result<Loaded, LoadError> {
    let mut offsets = offsets()?;
    let mut tiers = Tiers::probe(filter.probe_mode);
    tiers.add_sock_offsets(&mut offsets);
    let mut comm = [0u8; COMM_LEN];
    if let Some(c) = &filter.comm {
        let n = c.len().min(COMM_LEN - 1);
        comm[..n].copy_from_slice(&c.as_bytes()[..n]);
    }
    let config = FilterConfig {
        by_port: u8::from(!filter.ports.is_empty()),
        by_pid: u8::from(!filter.pids.is_empty()),
        by_comm: u8::from(filter.comm.is_some()),
        emit_enter: u8::from(filter.emit_enter),
        self_tgid: std::process::id(),
        comm,
        capture: u8::from(filter.packets),
        _pad: 0,
        snaplen: filter.snaplen,
    };
    // No kernel BTF for the loader: Rust programs carry no CO-RE relocations to resolve, and
    // parsing vmlinux BTF would cost ~100 ms of startup.
    let mut ebpf = EbpfLoader::new()
        .btf(None)
        .override_global("FILTER", &config, true)
        .override_global("OFFSETS", &offsets, true)
        .load(PROGRAMS)?;
    fill(&mut ebpf, "PORTS", &filter.ports)?;
    fill(&mut ebpf, "PIDS", &filter.pids)?;
    adopt_existing(&mut ebpf, filter)?;

    let mut hooks = Vec::new();
    let mut links = Links::new();
    // The state hook goes first: it is what decides which sockets are traced.
    let state = attach_tracepoint(
        &mut ebpf,
        &mut links,
        "inet_sock_set_state",
        "sock",
        "inet_sock_set_state",
    );
    if let Err(e) = &state {
        return Err(LoadError::Core(e.clone()));
    }
    hooks.push(syscalls(&mut ebpf, &mut links));
    let cgroup = preflight::cgroup2_mount();
    let mut sock_ops_funcs = 0u32;
    for spec in &KERNEL_FNS {
        let status = tiers.attach(
            &mut ebpf,
            &mut links,
            spec,
            cgroup.as_deref(),
            &mut sock_ops_funcs,
        );
        hooks.push(status);
    }
    if sock_ops_funcs != 0 {
        let map = ebpf
            .map_mut("SOCK_OPS_FUNCS")
            .ok_or_else(|| LoadError::Map("SOCK_OPS_FUNCS", "missing".into()))?;
        let mut funcs = aya::maps::Array::<_, u32>::try_from(map)
            .map_err(|e| LoadError::Map("SOCK_OPS_FUNCS", e.to_string()))?;
        funcs
            .set(0, sock_ops_funcs, 0)
            .map_err(|e| LoadError::Map("SOCK_OPS_FUNCS", e.to_string()))?;
    }
    // The state layer stays on the tracepoint in every mode: it fires inside tcp_set_state
    // and also for inet_sk_set_state (a child's SYN_RECV), which a probe on tcp_set_state
    // would miss.
    let mut state_hook = kernel_hook("tcp_set_state", state, &[]);
    state_hook.layer = "state";
    hooks.push(state_hook);
    if filter.packets {
        hooks.push(packets(&mut ebpf, cgroup.as_deref()));
    }
    for (name, program, tracepoint) in [
        ("tcp_reset", "tcp_receive_reset", "tcp_receive_reset"),
        ("tcp_send_reset", "tcp_send_reset", "tcp_send_reset"),
        ("tcp_destroy_sock", "tcp_destroy_sock", "tcp_destroy_sock"),
        (
            "tcp_retransmit_skb",
            "tcp_retransmit_skb",
            "tcp_retransmit_skb",
        ),
    ] {
        hooks.push(kernel_hook(
            name,
            attach_tracepoint(&mut ebpf, &mut links, program, "tcp", tracepoint),
            &[],
        ));
    }
    Ok(Loaded {
        ebpf,
        tracepoint_links: links,
        hooks,
    })
}

/// Marks the TCP sockets traced processes already hold as traced: their fds, and their
/// listeners' ports so that the connections they accept belong to them.
fn adopt_existing(ebpf: &mut Ebpf, filter: &Filter) -> Result<(), LoadError> {
    let me = std::process::id();
    let found = existing::scan(|pid, comm, lport, rport| {
        pid != me
            && (filter.pids.is_empty() || filter.pids.contains(&pid))
            && filter.comm.as_deref().is_none_or(|c| c == comm)
            && (filter.ports.is_empty()
                || filter.ports.contains(&lport)
                || filter.ports.contains(&rport))
    });
    let map = |name| LoadError::Map(name, "missing".into());
    let mut fds =
        BpfHashMap::<_, FdKey, u64>::try_from(ebpf.map_mut("FDS").ok_or_else(|| map("FDS"))?)
            .map_err(|e| LoadError::Map("FDS", e.to_string()))?;
    for s in &found {
        let _ = fds.insert(
            FdKey {
                tgid: s.pid,
                fd: s.fd,
            },
            0,
            0,
        );
    }
    let mut listeners = BpfHashMap::<_, u16, Owner>::try_from(
        ebpf.map_mut("LISTENERS").ok_or_else(|| map("LISTENERS"))?,
    )
    .map_err(|e| LoadError::Map("LISTENERS", e.to_string()))?;
    for s in found.iter().filter(|s| s.listening) {
        let mut comm = [0u8; COMM_LEN];
        let n = s.comm.len().min(COMM_LEN - 1);
        comm[..n].copy_from_slice(&s.comm.as_bytes()[..n]);
        let owner = Owner {
            tgid: s.pid,
            tid: s.pid,
            comm,
        };
        let _ = listeners.insert(s.lport, owner, 0);
    }
    Ok(())
}

fn fill<K: aya::Pod + Copy>(
    ebpf: &mut Ebpf,
    name: &'static str,
    keys: &[K],
) -> Result<(), LoadError> {
    let map = ebpf
        .map_mut(name)
        .ok_or_else(|| LoadError::Map(name, "missing".into()))?;
    let mut map =
        BpfHashMap::<_, K, u8>::try_from(map).map_err(|e| LoadError::Map(name, e.to_string()))?;
    for key in keys {
        map.insert(key, 1, 0)
            .map_err(|e| LoadError::Map(name, e.to_string()))?;
    }
    Ok(())
}

/// Field offsets of every tracepoint the programs read, from tracefs.
fn offsets() -> Result<[u32; OFFSETS_LEN], LoadError> {
    let mut o = [0u32; OFFSETS_LEN];
    let state = Format::read("sock", "inet_sock_set_state")?;
    for (i, f) in [
        (OFF_STATE_SKADDR, "skaddr"),
        (OFF_STATE_OLD, "oldstate"),
        (OFF_STATE_NEW, "newstate"),
        (OFF_STATE_SPORT, "sport"),
        (OFF_STATE_DPORT, "dport"),
        (OFF_STATE_FAMILY, "family"),
        (OFF_STATE_PROTOCOL, "protocol"),
        (OFF_STATE_SADDR, "saddr"),
        (OFF_STATE_DADDR, "daddr"),
        (OFF_STATE_SADDR6, "saddr_v6"),
        (OFF_STATE_DADDR6, "daddr_v6"),
    ] {
        o[i] = state.offset(f)?;
    }
    // Optional tracepoints: a missing one leaves its offsets at 0 and its hook unattached.
    if let Ok(f) = Format::read("sock", "sock_send_length") {
        for (i, name) in [
            (OFF_SOCKLEN_SK, "sk"),
            (OFF_SOCKLEN_FAMILY, "family"),
            (OFF_SOCKLEN_PROTOCOL, "protocol"),
            (OFF_SOCKLEN_RET, "ret"),
        ] {
            o[i] = f.offset(name).unwrap_or(0);
        }
    }
    for (i, tp, field) in [
        (OFF_TCPSK_SKADDR, "tcp_receive_reset", "skaddr"),
        (OFF_SENDRST_SKADDR, "tcp_send_reset", "skaddr"),
        (OFF_RETRANS_SKADDR, "tcp_retransmit_skb", "skaddr"),
        (OFF_DESTROY_SKADDR, "tcp_destroy_sock", "skaddr"),
    ] {
        if let Ok(f) = Format::read("tcp", tp) {
            o[i] = f.offset(field).unwrap_or(0);
        }
    }
    Ok(o)
}

/// An error as one line: a verifier log is cut down to the verifier's reason.
pub(crate) fn one_line(e: impl std::error::Error) -> String {
    let text = e.to_string();
    let Some((head, log)) = text.split_once("Verifier output:") else {
        let mut line = text.lines().next().unwrap_or_default().to_string();
        let mut source = e.source();
        while let Some(s) = source {
            line = format!("{line}: {s}");
            source = s.source();
        }
        return line;
    };
    let reason = log
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("verification time"))
        .filter(|l| !l.is_empty())
        .last()
        .unwrap_or("");
    format!("{} verifier: {reason}", head.trim_end_matches(['.', ' ']))
}

pub(crate) fn attach_tracepoint(
    ebpf: &mut Ebpf,
    links: &mut Links,
    program: &str,
    category: &str,
    name: &str,
) -> Result<String, String> {
    let prog: &mut TracePoint = ebpf
        .program_mut(program)
        .ok_or_else(|| format!("program {program} missing from the object"))?
        .try_into()
        .map_err(|e| format!("{program}: {e}"))?;
    if prog.fd().is_err() {
        prog.load()
            .map_err(|e| format!("{program} failed to load: {}", one_line(e)))?;
    }
    let id = prog
        .attach(category, name)
        .map_err(|e| format!("tracepoint {category}:{name}: {}", one_line(e)))?;
    links.push((program.to_string(), id));
    Ok(format!("tracepoint:{category}:{name}"))
}

pub(crate) fn attach_sock_ops(ebpf: &mut Ebpf, cgroup: Option<&str>) -> Result<(), String> {
    let cgroup = cgroup.ok_or("no cgroup2 mount found in /proc/self/mountinfo")?;
    let prog: &mut SockOps = ebpf
        .program_mut("tcp_fn_sock_ops")
        .ok_or("program tcp_fn_sock_ops missing from the object")?
        .try_into()
        .map_err(|e| format!("tcp_fn_sock_ops: {e}"))?;
    if prog.fd().is_ok() {
        // Loaded and attached for the other function it stands in for.
        return Ok(());
    }
    prog.load()
        .map_err(|e| format!("sock_ops failed to load: {}", one_line(e)))?;
    let file = File::open(cgroup).map_err(|e| format!("{cgroup}: {e}"))?;
    prog.attach(&file, CgroupAttachMode::Single)
        .map_err(|e| format!("sock_ops on {cgroup}: {}", one_line(e)))?;
    Ok(())
}

/// The packet layer: cgroup_skb egress and ingress on the cgroup2 root.
fn packets(ebpf: &mut Ebpf, cgroup: Option<&str>) -> HookStatus {
    let attach = |ebpf: &mut Ebpf, program: &str, ty: CgroupSkbAttachType| -> Result<(), String> {
        let cgroup = cgroup.ok_or("no cgroup2 mount found in /proc/self/mountinfo")?;
        let prog: &mut CgroupSkb = ebpf
            .program_mut(program)
            .ok_or_else(|| format!("program {program} missing from the object"))?
            .try_into()
            .map_err(|e| format!("{program}: {e}"))?;
        prog.load()
            .map_err(|e| format!("{program} failed to load: {}", one_line(e)))?;
        let file = File::open(cgroup).map_err(|e| format!("{cgroup}: {e}"))?;
        prog.attach(&file, ty, CgroupAttachMode::Single)
            .map_err(|e| format!("cgroup_skb on {cgroup}: {}", one_line(e)))?;
        Ok(())
    };
    let result = attach(ebpf, "packets_out", CgroupSkbAttachType::Egress)
        .and_then(|()| attach(ebpf, "packets_in", CgroupSkbAttachType::Ingress));
    let (via, error) = match result {
        Ok(()) => (
            Some("cgroup_skb:egress+ingress on the cgroup2 root".to_string()),
            None,
        ),
        Err(e) => (None, Some(e)),
    };
    HookStatus {
        name: "tcp_segments",
        layer: "packet",
        tier: via.as_ref().map(|_| "cgroup_skb"),
        via,
        skipped: Vec::new(),
        error,
    }
}

/// The syscall layer: one enter program per syscall, one shared exit program.
fn syscalls(ebpf: &mut Ebpf, links: &mut Links) -> HookStatus {
    let mut attached = 0;
    let mut errors = Vec::new();
    for op in SyscallOp::ALL {
        let name = op.name();
        let enter = format!("sys_enter_{name}");
        let exit = format!("sys_exit_{name}");
        let exit_program = match op {
            SyscallOp::Accept | SyscallOp::Accept4 => "sys_exit_accept",
            _ => "sys_exit",
        };
        let result = attach_tracepoint(ebpf, links, &enter, "syscalls", &enter)
            .and_then(|_| attach_tracepoint(ebpf, links, exit_program, "syscalls", &exit));
        match result {
            Ok(_) => attached += 1,
            Err(e) => errors.push(e),
        }
    }
    let all = SyscallOp::ALL.len();
    HookStatus {
        name: "syscalls",
        layer: "syscall",
        tier: (attached > 0).then_some("tracepoint"),
        via: (attached > 0).then(|| {
            format!("tracepoint:syscalls:sys_enter_*/sys_exit_* ({attached}/{all} syscalls)")
        }),
        skipped: Vec::new(),
        error: (!errors.is_empty()).then(|| errors.join("; ")),
    }
}

/// A hook on the tracepoint tier (tracepoint or sock_ops), with the reasons better tiers were
/// not used.
pub(crate) fn kernel_hook(
    name: &'static str,
    result: Result<String, String>,
    skipped: &[String],
) -> HookStatus {
    let (via, error) = match result {
        Ok(via) => (Some(via), None),
        Err(e) => (None, Some(e)),
    };
    HookStatus {
        name,
        layer: "kernel",
        tier: via.as_ref().map(|_| "tracepoint"),
        via,
        skipped: skipped.to_vec(),
        error,
    }
}
