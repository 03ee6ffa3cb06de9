//! Loading the embedded object and attaching every hook of the table with the best tier this
//! kernel allows.

use aya::maps::{HashMap as BpfHashMap, MapData, RingBuf};
use aya::programs::{
    CgroupSkb, CgroupSkbAttachType, FEntry, FExit, Program, RawTracePoint, TracePoint,
};
use aya::{Ebpf, EbpfLoader};
use tracer_common::{
    COMM_LEN, KernelFn, SyscallOp,
    failure::Failure,
    maps::{FdKey, FilterConfig, Owner, SYSCALL_NRS},
};

use super::attach::{Attacher, Links, fill, map};
use super::error::{AttachError, LoadError, MapError};
use super::failures::{Counts, Failures};
use super::offsets::{NETNS_FIELDS, Offsets, SKB_FIELDS, TASK_FIELDS, TASK_NETNS_FIELDS};
use super::status::{HookStatus, missing_layers};
use super::table::{
    FOLLOW_PROGRAMS, KERNEL_HOOKS, KernelHook, Layer, PACKET_PROGRAMS, PROCESS_PROGRAMS, Probe,
    SOCKET_ITERATORS, SocketIterator, StandIn, TIMEWAIT_PROGRAM, enter_event, exit_event,
    shared_syscall_number, syscall_function, syscall_function_programs, syscall_programs,
};
use super::tier::{ProbeMode, SyscallMode, Tiers};
use super::{ca_state, received_fd};
use crate::system::preemption;
use crate::system::timings::Phases;
use crate::system::{blocked, cgroup, sockets, tracefs};

/// The compiled programs, embedded at build time.
pub(super) static PROGRAMS: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer"));

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
    /// Trace system calls.
    pub syscalls: bool,
    /// Payload bytes to keep per segment.
    pub snaplen: u16,
    /// Least time between two congestion samples of a connection whose congestion state did
    /// not change, in microseconds.
    pub sample_gap_us: u32,
    /// Which tier the kernel-function hooks use.
    pub probe_mode: ProbeMode,
    /// Which tier the syscall layer uses.
    pub syscall_mode: SyscallMode,
    /// Maps loaded with another number of entries than the object says (tests fill them).
    pub map_entries: Vec<(String, u32)>,
    /// Trace the processes that traced processes fork, from their start.
    pub follow: bool,
    /// Trace only tasks in this cgroup or below it.
    pub cgroup: Option<cgroup::Scope>,
    /// Trace only sockets (and tasks) of this network namespace (its inode number).
    pub netns: Option<u32>,
}

/// The loaded and attached programs. Dropping it detaches everything; [`Loaded::detach`] does
/// it faster.
pub struct Loaded {
    ebpf: Ebpf,
    tracepoint_links: Links,
    /// One entry per logical hook, in display order.
    pub hooks: Vec<HookStatus>,
    /// Every program the verifier rejected, with its whole log: `(program, log)`.
    pub rejected: Vec<(String, String)>,
    /// The TCP sockets traced processes held before the run (found in /proc).
    pub existing: Vec<sockets::Existing>,
    /// Layers the user turned off (`--no-syscalls`, `--no-packets`): never attached.
    pub layers_off: Vec<Layer>,
    failures: Failures,
}

impl Loaded {
    /// Takes the event ring buffer.
    pub fn ring_buffer(&mut self) -> Result<RingBuf<MapData>, LoadError> {
        let missing = || MapError {
            name: "EVENTS",
            reason: "missing from the object".into(),
        };
        let ring = self.ebpf.take_map("EVENTS").ok_or_else(missing)?;
        RingBuf::try_from(ring).map_err(|e| MapError::new("EVENTS", &e).into())
    }

    /// What our programs gave up on so far, per reason (`tracer_common::failure::Failure`).
    pub fn failures(&self) -> Counts {
        self.failures.counts()
    }

    /// Runs of each program the kernel skipped, for those that had any.
    pub fn skipped(&self) -> Vec<(String, u64)> {
        super::runs::skipped(&self.ebpf)
    }

    /// Runs and run time of each program that ran while the kernel's BPF statistics were on.
    pub fn prog_stats(&self) -> Vec<super::runs::ProgStat> {
        super::runs::stats(&self.ebpf)
    }

    /// Adds the cgroups created below `scope` since the start to the in-kernel filter; how
    /// many were new.
    pub fn refresh_cgroups(&mut self, scope: &cgroup::Scope) -> Result<usize, LoadError> {
        let mut map: BpfHashMap<_, u64, u8> = map(&mut self.ebpf, "CGROUPS")?;
        let mut added = 0;
        for id in scope.ids() {
            if map.get(&id, 0).is_err() {
                map.insert(id, 1, 0)
                    .map_err(|e| MapError::new("CGROUPS", &e))?;
                added += 1;
            }
        }
        Ok(added)
    }

    /// Layers with no hook attached at all.
    pub fn missing_layers(&self) -> Vec<&'static str> {
        missing_layers(&self.hooks)
    }

    /// Stops every program and returns `counted` — what they gave up on until the trace
    /// ended, read then with [`Self::failures`] — with the sockets `SOCKS` evicted added
    /// (which only a count taken while nothing runs can tell).
    pub fn stop(&mut self, counted: Counts) -> Counts {
        self.release_tracepoint_links();
        for (_, program) in self.ebpf.programs_mut() {
            unload(program);
        }
        let mut counts = counted;
        counts[Failure::SocketsFull as usize] += super::failures::evicted_sockets(&self.ebpf);
        counts
    }

    /// Detaches everything.
    pub fn detach(mut self) {
        self.release_tracepoint_links();
        drop(self.ebpf);
    }

    /// Releasing a tracepoint's perf event waits for an RCU grace period, so the ~35
    /// tracepoint links are released from several threads at once; sequentially that takes
    /// seconds on small VMs.
    fn release_tracepoint_links(&mut self) {
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
    }
}

/// Unloads `program`, detaching the links it keeps (the kinds this tracer loads).
fn unload(program: &mut Program) {
    let _ = match program {
        Program::KProbe(p) => p.unload(),
        Program::TracePoint(p) => p.unload(),
        Program::RawTracePoint(p) => p.unload(),
        Program::FEntry(p) => p.unload(),
        Program::FExit(p) => p.unload(),
        Program::SockOps(p) => p.unload(),
        Program::CgroupSkb(p) => p.unload(),
        _ => Ok(()),
    };
}

/// What the programs are told of `filter`; `netns_readable` when the offsets from a task to
/// its network namespace are known.
fn filter_config(filter: &Filter, netns_readable: bool, preemptible: bool) -> FilterConfig {
    let mut comm = [0u8; COMM_LEN];
    if let Some(c) = &filter.comm {
        let n = c.len().min(COMM_LEN - 1);
        comm[..n].copy_from_slice(&c.as_bytes()[..n]);
    }
    FilterConfig {
        by_port: u8::from(!filter.ports.is_empty()),
        by_pid: u8::from(!filter.pids.is_empty()),
        by_comm: u8::from(filter.comm.is_some()),
        emit_enter: u8::from(filter.emit_enter),
        self_tgid: std::process::id(),
        comm,
        capture: u8::from(filter.packets),
        follow: u8::from(filter.follow),
        snaplen: filter.snaplen,
        sample_gap_us: filter.sample_gap_us,
        by_cgroup: u8::from(filter.cgroup.is_some()),
        by_netns: u8::from(filter.netns.is_some()),
        netns_readable: u8::from(netns_readable),
        preemptible: u8::from(preemptible),
        netns: filter.netns.unwrap_or(0),
    }
}

/// Loads the programs with `filter` and attaches every hook it can.
pub fn load(filter: &Filter, phases: &mut Phases) -> Result<Loaded, LoadError> {
    let mut offsets = Offsets::tracepoints()?;
    phases.end("tracepoint formats (tracefs)");
    // Our BTF parse (for offsets) beside aya's (for fentry) and the tier probes: both read
    // all of the kernel's BTF, tens of milliseconds each. aya's loader reads it too, when it
    // is made (for nothing: see `.btf(None)` below); where fentry is not there to parse it for,
    // the loader is made beside ours instead of after it (two parses at once at most: each
    // raises the peak RSS).
    let (tiers, btf, early_loader) = std::thread::scope(|s| {
        let btf = s.spawn(crate::system::btf::Btf::from_sys_fs);
        let tiers = Tiers::probe(filter.probe_mode, filter.syscall_mode);
        let loader = (tiers.fentry.is_err() && tiers.syscall_fentry.is_err()).then(EbpfLoader::new);
        let btf = btf
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (tiers, btf, loader)
    });
    phases.end("probing tiers (fentry, kprobes), kernel BTF");
    // The congestion layer reads `tcp_sock` fields on every tier.
    offsets.add_kernel_fields(
        btf,
        tiers.any_probe(),
        filter.packets,
        filter.syscalls && tiers.syscall_fentry.is_ok(),
    );
    phases.end("kernel field offsets");
    if filter.netns.is_some()
        && let Some(why) = offsets.lacking(&NETNS_FIELDS)
    {
        return Err(LoadError::Netns(why));
    }
    // No kernel BTF for the loader: Rust programs carry no CO-RE relocations to resolve, and
    // parsing vmlinux BTF would cost ~100 ms of startup.
    // Only the syscall layer's fexits care whether a program can be preempted.
    let preemptible =
        filter.syscalls && tiers.syscall_fentry.is_ok() && preemption::probe().preemptible;
    let config = filter_config(
        filter,
        offsets.lacking(&TASK_NETNS_FIELDS).is_none(),
        preemptible,
    );
    let mut loader = early_loader.unwrap_or_else(EbpfLoader::new);
    loader
        .btf(None)
        .override_global("FILTER", &config, true)
        .override_global("OFFSETS", &offsets.values, true);
    for (name, entries) in &filter.map_entries {
        loader.map_max_entries(name, *entries);
    }
    let mut ebpf = loader.load(PROGRAMS)?;
    phases.end("reading the programs, creating the maps");
    if let Some((name, _)) = filter
        .map_entries
        .iter()
        .find(|(n, _)| ebpf.map(n).is_none())
    {
        return Err(MapError {
            name: "--map-entries",
            reason: format!("the programs have no map named {name}"),
        }
        .into());
    }
    fill(&mut ebpf, "PORTS", &filter.ports)?;
    fill(&mut ebpf, "PIDS", &filter.pids)?;
    if filter.syscalls {
        number_syscalls(&mut ebpf)?;
    }
    if let Some(scope) = &filter.cgroup {
        fill(&mut ebpf, "CGROUPS", &scope.ids())?;
    }
    let existing = adopt_existing(&mut ebpf, filter)?;
    phases.end("filter maps, sockets open before (/proc)");
    let backup = ExitBackup::choose(filter, preemptible, &existing);

    preload(&mut ebpf, filter, &tiers, &offsets, &backup);
    phases.end("verifying the programs (2 threads)");
    let mut at = Attacher::new(&mut ebpf, cgroup::cgroup2_mount());
    if filter.follow {
        follow(&mut at, &offsets)?;
    }
    // The state hook goes first: it is what decides which sockets are traced.
    let state_row = KERNEL_HOOKS
        .iter()
        .find(|h| h.layer == Layer::State)
        .ok_or(LoadError::Core(AttachError::NoStandIn("no state hook")))?;
    let state = attach_row(&mut at, &tiers, &offsets, state_row);
    if let Some(e) = state.error {
        return Err(LoadError::Core(e));
    }
    phases.end("attaching the state hook");
    let mut hooks = Vec::new();
    if filter.syscalls {
        hooks.push(syscalls(&mut at, &tiers, &offsets, &backup));
        hooks.push(received_fd::attach(&mut at, &tiers, &offsets));
        phases.end("attaching the syscall layer");
    }
    let mut state = Some(state);
    for row in &KERNEL_HOOKS {
        if row.layer == Layer::State {
            hooks.extend(state.take());
            if filter.packets {
                hooks.push(packets(&mut at, &offsets));
            }
        } else {
            let status = attach_row(&mut at, &tiers, &offsets, row);
            hooks.push(if row.func == KernelFn::TcpSetCaState {
                ca_state::fallback(&mut at, &tiers, &offsets, status)
            } else {
                status
            });
        }
    }
    phases.end("attaching the kernel, packet, congestion hooks");
    let tracepoint_links = std::mem::take(&mut at.links);
    let rejected = std::mem::take(&mut at.rejected);
    let failures = Failures::map(&ebpf)?;
    let layers_off = [
        (!filter.syscalls).then_some(Layer::Syscall),
        (!filter.packets).then_some(Layer::Packet),
    ]
    .into_iter()
    .flatten()
    .collect();
    Ok(Loaded {
        failures,
        ebpf,
        tracepoint_links,
        hooks,
        rejected,
        existing,
        layers_off,
    })
}

/// Fills `SYSCALL_OPS`, by which the shared enter program (`sys_enter_fd`) knows which syscall
/// it is in.
fn number_syscalls(ebpf: &mut Ebpf) -> Result<(), MapError> {
    const NAME: &str = "SYSCALL_OPS";
    let mut ops: aya::maps::Array<_, u8> = map(ebpf, NAME)?;
    for op in SyscallOp::ALL {
        let Some(nr) = shared_syscall_number(op) else {
            continue;
        };
        let nr = u32::try_from(nr)
            .ok()
            .filter(|nr| *nr < SYSCALL_NRS)
            .ok_or_else(|| MapError {
                name: NAME,
                reason: format!("{}'s number {nr} is beyond the table", op.name()),
            })?;
        ops.set(nr, op as u8, 0)
            .map_err(|e| MapError::new(NAME, &e))?;
    }
    Ok(())
}

/// The programs that add the children of traced processes to the filter, attached before
/// anything a child could do: without them a command's children would go untraced.
fn follow(at: &mut Attacher, offsets: &Offsets) -> Result<(), LoadError> {
    if let Some(why) = offsets.lacking(&TASK_FIELDS) {
        return Err(LoadError::Follow(why));
    }
    for (program, event) in FOLLOW_PROGRAMS {
        at.raw_tracepoint(program, event)
            .map_err(|e| LoadError::Follow(e.to_string()))?;
    }
    Ok(())
}

/// The fentry/fexit program among `probes` built for a function of `arity` parameters (as
/// this kernel's BTF declares it).
pub(super) fn fitting(probes: &[Probe], arity: Result<usize, String>) -> Result<&Probe, String> {
    if probes.iter().all(|p| p.args.is_none()) {
        return probes
            .first()
            .ok_or_else(|| "no program for it".to_string());
    }
    let arity = arity?;
    probes
        .iter()
        .find(|p| p.args.is_none_or(|n| usize::from(n) == arity))
        .ok_or_else(|| {
            format!("no fexit program for its {arity}-parameter signature on this kernel")
        })
}

/// Attaches one kernel function with the best tier allowed; reports how, and why the better
/// tiers were not used.
fn attach_row(at: &mut Attacher, tiers: &Tiers, offsets: &Offsets, row: &KernelHook) -> HookStatus {
    let name = row.func.name();
    let mut skipped = Vec::new();
    if row.has_probes() {
        let lacking = offsets.lacking(row.sock_fields);
        match (&tiers.fentry, row.fentry, &lacking) {
            (Err(why), _, _) => skipped.push(why.clone()),
            (Ok(_), _, Some(why)) => skipped.push(format!("fentry: {why}")),
            (Ok(_), [], None) => skipped.push("fentry: no program for it".into()),
            (Ok(btf), probes, None) => match fitting(probes, offsets.arity(row.func)) {
                Err(why) => skipped.push(format!("fentry: {why}")),
                Ok(probe) => match at.fentry(probe, name, btf) {
                    Ok(via) => {
                        return HookStatus::attached(name, row.layer, "fentry", via, skipped);
                    }
                    Err(e) => skipped.push(format!("fentry: {e}")),
                },
            },
        }
        match (&tiers.kprobe, &lacking) {
            (Err(why), _) => skipped.push(why.clone()),
            (Ok(()), Some(why)) => skipped.push(format!("kprobe: {why}")),
            (Ok(()), None) => match at.kprobes(row.kprobes, &[name]) {
                Ok(via) => return HookStatus::attached(name, row.layer, "kprobe", via, skipped),
                Err(e) => skipped.push(format!("kprobe: {e}")),
            },
        }
        if !tiers.mode.allows_stand_ins() {
            let error = AttachError::Forced {
                mode: tiers.mode.name(),
                why: skipped.join("; "),
            };
            return HookStatus::missing(name, row.layer, error, skipped);
        }
    }
    if !row.has_probes()
        && let Some(why) = offsets.lacking(row.sock_fields)
    {
        return HookStatus::missing(name, row.layer, AttachError::Lacking(why), skipped);
    }
    let result = match row.stand_in {
        StandIn::SockOps { callback, label } => {
            at.sock_ops(callback, row.func).map(|()| label.to_string())
        }
        StandIn::Tracepoint {
            program,
            category,
            name,
            since,
            ..
        } => at.tracepoint(program, category, name, since),
        StandIn::SockTracepoint { .. } => at.sock_tracepoint(row.func, &row.stand_in),
        StandIn::RawTracepoint {
            program,
            category,
            name,
            label,
            since,
        } => at
            .raw_tracepoint_of(program, category, name, since)
            .map(|()| label.to_string()),
        StandIn::None(why) => Err(AttachError::NoStandIn(why)),
    };
    match result {
        Ok(via) => HookStatus::attached(name, row.layer, "tracepoint", via, skipped),
        Err(e) => HookStatus::missing(name, row.layer, e, skipped),
    }
}

/// The syscall layer: per syscall, fentry and fexit on its function where the kernel allows
/// it, with the exit tracepoint's program as their backup; else its enter and exit
/// tracepoints' programs.
///
/// The backup: on 7.x the kernel skips a trampoline's program while the same program is
/// preempted on that CPU, and a skipped fexit would lose its call's record; the exit
/// tracepoint's program completes it (its skips come from another guard). It also sees the
/// return of an `accept()` blocked since before the start, which no fexit program sees (a
/// trampoline sees only the calls that enter the function after it is attached), and adopts
/// its fd. The cost: every syscall of every task takes the kernel's tracing path while a
/// `syscalls:` tracepoint has a program (README, Hooks and tiers).
fn syscalls(
    at: &mut Attacher,
    tiers: &Tiers,
    offsets: &Offsets,
    backup: &ExitBackup,
) -> HookStatus {
    let (mut on_functions, mut on_tracepoints) = (0, 0);
    let mut errors = Vec::new();
    let mut skipped = Vec::new();
    let mut accepts = Vec::new();
    if let Err(why) = &tiers.syscall_fentry {
        skipped.push(why.clone());
    }
    // `read`, `write`, `readv`, `writev` on the socket iterators where the kernel allows it
    // (their programs find the call in the task's registers: Linux 5.15), so that no other
    // file's reads and writes meet a program; on their syscall functions otherwise.
    let mut iterators: Vec<&SocketIterator> = Vec::new();
    // Asked of the version, not of the verifier: a program it rejects is a failure to
    // report (`--verifier-log`), not a probe.
    let task_regs = aya::util::KernelVersion::current()
        .is_ok_and(|v| v >= aya::util::KernelVersion::new(5, 15, 0));
    if !task_regs && tiers.syscall_fentry.is_ok() {
        skipped.push(
            "fentry: sock_read_iter/sock_write_iter: the kernel is older than 5.15 (no \
             bpf_task_pt_regs): read, write, readv, writev on their syscall functions"
                .into(),
        );
    }
    if let (Ok(btf), true) = (&tiers.syscall_fentry, task_regs) {
        for iterator in &SOCKET_ITERATORS {
            match at.fentry_pair(iterator.enter, iterator.exit, iterator.function, btf) {
                Ok(()) => iterators.push(iterator),
                Err(e) => skipped.push(format!("fentry: {}: {e}", iterator.function)),
            }
        }
    }
    for op in SyscallOp::ALL {
        if iterators.iter().any(|i| i.ops.contains(&op)) {
            on_functions += 1;
            if matches!(backup, ExitBackup::Every) {
                back_up(at, op, &mut errors);
            }
            continue;
        }
        if let (Ok(btf), Some(function)) = (&tiers.syscall_fentry, syscall_function(op)) {
            if let Some(why) = offsets.syscall_function_unusable(op) {
                skipped.push(format!("fentry: {}: {why}", op.name()));
                fallback(at, op, &mut on_tracepoints, &mut errors);
                continue;
            }
            let (entry, function_exit) = syscall_function_programs(op);
            match at.fentry_pair(&entry, &function_exit, &function, btf) {
                Ok(()) => {
                    on_functions += 1;
                    if matches!(backup, ExitBackup::Every) {
                        back_up(at, op, &mut errors);
                    } else if op.accepts() {
                        accepts.push(op);
                    }
                    continue;
                }
                Err(e) => skipped.push(format!("fentry: {}: {e}", op.name())),
            }
        }
        fallback(at, op, &mut on_tracepoints, &mut errors);
    }
    // After the fexits are attached: an accept entered since returns through them, one
    // blocked before is in /proc now.
    let accepts_backed = !accepts.is_empty() && backup.blocked_accept();
    if accepts_backed {
        for op in accepts {
            back_up(at, op, &mut errors);
        }
    }
    // A worker forked after the start uses the fds its master registered.
    for (program, event) in PROCESS_PROGRAMS {
        if let Err(e) = at.tracepoint(program, "sched", event, None) {
            errors.push(format!("{e} (fds inherited across fork are not followed)"));
        }
    }
    let all = SyscallOp::ALL.len();
    let prefix = super::table::SYSCALL_ABI.map_or("", |abi| abi.prefix);
    // What the banner says of them: `; read, readv, write, writev on sock_read_iter/...`.
    let iterators = if iterators.is_empty() {
        String::new()
    } else {
        let ops: Vec<&str> = iterators
            .iter()
            .flat_map(|i| i.ops.map(SyscallOp::name))
            .collect();
        let functions: Vec<&str> = iterators.iter().map(|i| i.function).collect();
        format!("; {} on {}", ops.join(", "), functions.join("/"))
    };
    let via = match (on_functions, on_tracepoints) {
        (0, 0) => None,
        (0, n) => Some(format!(
            "tracepoint:syscalls:sys_enter_*/sys_exit_* ({n}/{all} syscalls)"
        )),
        (n, 0) => Some(format!(
            "fentry/fexit:{prefix}*{} ({n}/{all} syscalls{iterators})",
            backup.via(accepts_backed)
        )),
        (n, m) => Some(format!(
            "fentry/fexit:{prefix}*{} ({n}/{all} syscalls{iterators}) + tracepoint:syscalls:sys_enter_*/sys_exit_* ({m}/{all})",
            backup.via(accepts_backed)
        )),
    };
    HookStatus {
        name: "syscalls",
        layer: Layer::Syscall,
        tier: via.is_some().then_some(if on_functions > 0 {
            "fentry"
        } else {
            "tracepoint"
        }),
        via,
        skipped,
        error: (!errors.is_empty()).then(|| AttachError::Load {
            program: "sys_enter_*".into(),
            reason: errors.join("; "),
        }),
    }
}

/// Which exit tracepoints back the syscall layer's fexits up. Any syscall tracepoint sends
/// every syscall of every task through the kernel's slow tracing path, so they are attached
/// only where a fexit can be missed.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ExitBackup {
    /// Every syscall's: the kernel preempts BPF programs, and skips a trampoline program on a
    /// CPU while a preempted run of it holds its guard there (7.x).
    Every,
    /// The accepts', if a thread of one of these processes (every process when `None`) is
    /// blocked in one at the start: its fd is adopted when it returns (a task filter), and no
    /// fexit sees the return of a call entered before its trampoline was attached.
    BlockedAccepts(Option<Vec<u32>>),
    /// None: no fexit is skipped, and no accept's return is adopted.
    Nothing,
}

impl ExitBackup {
    /// The backup `filter` needs on a kernel that may preempt BPF programs (`preemptible`) or
    /// not, given the sockets traced processes held before the start.
    fn choose(filter: &Filter, preemptible: bool, existing: &[sockets::Existing]) -> Self {
        let by_task = !filter.pids.is_empty()
            || filter.comm.is_some()
            || filter.cgroup.is_some()
            || filter.netns.is_some();
        if preemptible {
            Self::Every
        } else if !by_task {
            Self::Nothing
        } else if filter.netns.is_some() {
            // /proc/net/tcp lists the tracer's own namespace: look in every process.
            Self::BlockedAccepts(None)
        } else {
            let mut listeners: Vec<u32> = existing
                .iter()
                .filter(|s| s.listening)
                .map(|s| s.pid)
                .collect();
            listeners.sort_unstable();
            listeners.dedup();
            Self::BlockedAccepts(Some(listeners))
        }
    }

    /// Whether the accepts' exit tracepoints are needed now: a thread is blocked in one, or
    /// /proc could not say.
    fn blocked_accept(&self) -> bool {
        match self {
            Self::Every => true,
            Self::Nothing => false,
            Self::BlockedAccepts(pids) => {
                let accepts = [libc::SYS_accept, libc::SYS_accept4];
                blocked::any_thread_in(&accepts, pids.as_deref()).unwrap_or(true)
            }
        }
    }

    /// What the syscall layer's `via` adds for the exit tracepoints attached.
    fn via(&self, accepts_backed: bool) -> &'static str {
        match (self, accepts_backed) {
            (Self::Every, _) => " + tracepoint:syscalls:sys_exit_*",
            (_, true) => " + tracepoint:syscalls:sys_exit_accept*",
            (_, false) => "",
        }
    }
}

/// Attaches the exit tracepoint's program of syscall `op`, whose fexit it backs up.
fn back_up(at: &mut Attacher, op: SyscallOp, errors: &mut Vec<String>) {
    let (_, program) = syscall_programs(op);
    let exit = exit_event(op);
    if let Err(e) = at.tracepoint(program, "syscalls", &exit, None) {
        errors.push(format!("{e} (a skipped fexit loses its call)"));
    }
}

/// Attaches syscall `op`'s tracepoint programs, counting it in `attached` or its error in
/// `errors`.
fn fallback(at: &mut Attacher, op: SyscallOp, attached: &mut usize, errors: &mut Vec<String>) {
    let (enter_program, exit_program) = syscall_programs(op);
    let (enter, exit) = (enter_event(op), exit_event(op));
    let result = at
        .tracepoint(&enter_program, "syscalls", &enter, None)
        .and_then(|_| at.tracepoint(exit_program, "syscalls", &exit, None));
    match result {
        Ok(_) => *attached += 1,
        Err(e) => errors.push(e.to_string()),
    }
}

/// A program loaded ahead of its attachment.
enum Preload<'p> {
    /// A tracepoint's.
    Tracepoint(&'p mut TracePoint),
    /// A raw tracepoint's.
    Raw(&'p mut RawTracePoint),
    /// A cgroup_skb program.
    Skb(&'p mut CgroupSkb),
    /// An fentry program for the function named.
    Entry(&'p mut FEntry, String),
    /// An fexit program for the function named.
    Exit(&'p mut FExit, String),
}

/// Loads (verifies) on two threads, ahead of attaching them, the programs the hooks will
/// attach that do not depend on how another attachment went: the syscall layer's of the tier
/// [`syscalls`] will try first, the state program, the tracepoint stand-ins of kernel
/// functions no better tier can watch, and the packet layer's. The kernel's verifier is most
/// of the startup and checks each program on its own. A program that fails here is loaded
/// again, and its error reported, when it is attached.
fn preload(
    ebpf: &mut Ebpf,
    filter: &Filter,
    tiers: &Tiers,
    offsets: &Offsets,
    backup: &ExitBackup,
) {
    let btf = tiers.syscall_fentry.as_ref().ok();
    let mut functions = std::collections::HashMap::new();
    let mut names: Vec<String> = Vec::new();
    for op in SyscallOp::ALL.iter().copied().filter(|_| filter.syscalls) {
        match (btf, syscall_function(op)) {
            (Some(_), Some(function)) if offsets.syscall_function_unusable(op).is_none() => {
                let (enter, exit) = syscall_function_programs(op);
                functions.insert(enter.clone(), function.clone());
                functions.insert(exit.clone(), function);
                names.extend([enter, exit]);
                if *backup == ExitBackup::Every {
                    names.push(syscall_programs(op).1.to_string());
                }
            }
            _ => {
                let (enter, exit) = syscall_programs(op);
                names.extend([enter, exit.to_string()]);
            }
        }
    }
    if filter.syscalls {
        names.extend(PROCESS_PROGRAMS.iter().map(|(p, _)| p.to_string()));
    }
    // A row with probes uses its stand-in only when neither better tier is there (and the
    // mode allows it); one without, always (the state hook among them).
    let stand_ins = tiers.mode.allows_stand_ins() && tiers.fentry.is_err() && tiers.kprobe.is_err();
    for row in &KERNEL_HOOKS {
        let Some((program, category, event)) = row.stand_in.tracepoint_program() else {
            continue;
        };
        if (stand_ins || !row.has_probes())
            && offsets.lacking(row.sock_fields).is_none()
            && tracefs::exists(category, event)
        {
            names.push(program.to_string());
        }
    }
    if filter.packets {
        names.extend(PACKET_PROGRAMS.iter().map(|p| p.to_string()));
    }
    names.sort();
    names.dedup();
    let queue: std::sync::Mutex<Vec<Preload>> = std::sync::Mutex::new(
        ebpf.programs_mut()
            .filter(|(name, _)| names.binary_search_by(|n| n.as_str().cmp(name)).is_ok())
            .filter(|(_, p)| p.fd().is_err())
            .filter_map(|(name, p)| {
                let function = functions.get(name).cloned();
                match p {
                    Program::TracePoint(p) => Some(Preload::Tracepoint(p)),
                    Program::RawTracePoint(p) => Some(Preload::Raw(p)),
                    Program::CgroupSkb(p) => Some(Preload::Skb(p)),
                    Program::FEntry(p) => Some(Preload::Entry(p, function?)),
                    Program::FExit(p) => Some(Preload::Exit(p, function?)),
                    _ => None,
                }
            })
            .collect(),
    );
    let work = || {
        loop {
            let next = queue.lock().ok().and_then(|mut q| q.pop());
            let Some(program) = next else { break };
            let _ = match (program, btf) {
                (Preload::Tracepoint(p), _) => p.load(),
                (Preload::Raw(p), _) => p.load(),
                (Preload::Skb(p), _) => p.load(),
                (Preload::Entry(p, function), Some(btf)) => p.load(&function, btf),
                (Preload::Exit(p, function), Some(btf)) => p.load(&function, btf),
                _ => Ok(()),
            };
        }
    };
    std::thread::scope(|s| {
        s.spawn(work);
        work();
    });
}

/// The packet layer: cgroup_skb egress and ingress on the cgroup2 root, and the raw
/// tracepoint that sees what TIME_WAIT sockets send (when the kernel's BTF gave the `sk_buff`
/// offsets it reads).
fn packets(at: &mut Attacher, offsets: &Offsets) -> HookStatus {
    let [out, inward] = PACKET_PROGRAMS;
    let result = at
        .cgroup_skb(out, CgroupSkbAttachType::Egress)
        .and_then(|()| at.cgroup_skb(inward, CgroupSkbAttachType::Ingress));
    let (program, event) = TIMEWAIT_PROGRAM;
    let timewait = match offsets.lacking(&SKB_FIELDS) {
        Some(why) => format!("; TIME_WAIT segments not captured: {why}"),
        None => match at.raw_tracepoint(program, event) {
            Ok(()) => format!(" + raw_tracepoint:{event} (TIME_WAIT segments)"),
            Err(e) => format!("; TIME_WAIT segments not captured: {e}"),
        },
    };
    match result {
        Ok(()) => HookStatus::attached(
            "tcp_segments",
            Layer::Packet,
            "cgroup_skb",
            format!("cgroup_skb:egress+ingress on the cgroup2 root{timewait}"),
            Vec::new(),
        ),
        Err(e) => HookStatus::missing("tcp_segments", Layer::Packet, e, Vec::new()),
    }
}

/// The sockets and processes a [`Filter`] traces, as [`sockets::scan`] asks.
struct Traced<'a> {
    filter: &'a Filter,
    /// The tracer itself, never traced.
    me: u32,
}

impl sockets::Wanted for Traced<'_> {
    fn task(&self, pid: u32, comm: &str) -> bool {
        let f = self.filter;
        pid != self.me
            && (f.pids.is_empty() || f.pids.contains(&pid))
            && f.comm.as_deref().is_none_or(|c| c == comm)
            && f.cgroup.as_ref().is_none_or(|s| s.holds(pid))
            && f.netns
                .is_none_or(|n| crate::system::netns::of_pid(pid) == Some(n))
    }

    fn ports(&self, lport: u16, rport: u16) -> bool {
        let ports = &self.filter.ports;
        ports.is_empty() || ports.contains(&lport) || ports.contains(&rport)
    }
}

/// Marks the TCP sockets traced processes already hold as traced: their fds, and their
/// listeners' ports so that the connections they accept belong to them.
fn adopt_existing(ebpf: &mut Ebpf, filter: &Filter) -> Result<Vec<sockets::Existing>, LoadError> {
    let found = sockets::scan(&Traced {
        filter,
        me: std::process::id(),
    });
    let mut fds: BpfHashMap<_, FdKey, u64> = map(ebpf, "FDS")?;
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
    let mut holders: BpfHashMap<_, u32, u8> = map(ebpf, "HOLDERS")?;
    for s in &found {
        let _ = holders.insert(s.pid, 1, 0);
    }
    let mut listeners: BpfHashMap<_, u16, Owner> = map(ebpf, "LISTENERS")?;
    for s in found.iter().filter(|s| s.listening) {
        let mut comm = [0u8; COMM_LEN];
        let n = s.comm.len().min(COMM_LEN - 1);
        comm[..n].copy_from_slice(&s.comm.as_bytes()[..n]);
        let owner = Owner {
            pid: s.pid,
            tid: s.pid,
            comm,
        };
        let _ = listeners.insert(s.lport, owner, 0);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::table::{RECEIVED_FD, row};

    #[test]
    fn the_fexit_program_is_chosen_by_the_kernels_signature() {
        let accept = row(KernelFn::InetCskAccept).unwrap().fentry;
        assert_eq!(
            fitting(accept, Ok(2)).unwrap().program,
            "fexit_inet_csk_accept"
        );
        assert_eq!(
            fitting(accept, Ok(4)).unwrap().program,
            "fexit_inet_csk_accept_args4"
        );
        let recv = row(KernelFn::TcpRecvmsg).unwrap().fentry;
        assert_eq!(
            fitting(recv, Ok(6)).unwrap().program,
            "fexit_tcp_recvmsg_args6"
        );
        assert_eq!(fitting(recv, Ok(4)).unwrap().program, "fexit_tcp_recvmsg");
        let none = fitting(recv, Ok(3)).unwrap_err();
        assert!(none.contains("3-parameter"), "{none}");
        assert_eq!(
            fitting(recv, Err("kernel BTF: no function tcp_recvmsg".into())).unwrap_err(),
            "kernel BTF: no function tcp_recvmsg"
        );
        // The hand-over of a passed fd: 5.10's `__receive_fd` takes the fd to replace first.
        assert_eq!(
            fitting(&RECEIVED_FD.fentry, Ok(4)).unwrap().program,
            "fexit_receive_fd_args4"
        );
        let kprobes: Vec<&str> = RECEIVED_FD.kprobes(3).iter().map(|p| p.program).collect();
        assert_eq!(kprobes, ["kprobe_receive_fd", "kretprobe_receive_fd"]);
        // An fentry program reads only arguments: any signature will do.
        let connect = row(KernelFn::TcpConnect).unwrap().fentry;
        assert_eq!(
            fitting(connect, Err("x".into())).unwrap().program,
            "fentry_tcp_connect"
        );
    }
}
