//! Attach primitives: one function per mechanism, each loading its program once and
//! returning a typed error. Tracepoint links are kept so that detaching can be done in
//! parallel.

use std::fs::File;

use aya::Ebpf;
use aya::maps::{Array, HashMap as BpfHashMap};
use aya::programs::trace_point::TracePointLinkId;
use aya::programs::{
    CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, FEntry, FExit, KProbe, RawTracePoint,
    SockOps, TracePoint,
};
use tracer_common::{KernelFn, Via, maps::TracepointFn};

use super::error::{AttachError, MapError};
use super::table::{Probe, SOCK_OPS_PROGRAM, StandIn};
use crate::system::tracefs::{self, Format};

/// Tracepoint links by program, kept to detach them in parallel.
pub type Links = Vec<(String, TracePointLinkId)>;

/// Attaches programs of one loaded object.
pub struct Attacher<'a> {
    ebpf: &'a mut Ebpf,
    /// Every tracepoint link made.
    pub links: Links,
    cgroup: Option<String>,
    /// Every program the verifier rejected, with its whole log: `(program, log)`.
    pub rejected: Vec<(String, String)>,
}

/// Keeps the verifier's log of a rejected program in `rejected`, for `--verifier-log`.
fn kept(rejected: &mut Vec<(String, String)>, e: AttachError) -> AttachError {
    if let AttachError::Verifier { program, log, .. } = &e {
        rejected.push((program.clone(), log.clone()));
    }
    e
}

fn program<'p, T>(ebpf: &'p mut Ebpf, name: &str) -> Result<&'p mut T, AttachError>
where
    &'p mut T: TryFrom<&'p mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or_else(|| AttachError::MissingProgram(name.to_string()))?
        .try_into()
        .map_err(|source| AttachError::WrongType {
            program: name.to_string(),
            source,
        })
}

/// Map `name` of `ebpf` as a `T` (`HashMap`, `Array`, `RingBuf`...).
pub fn map<'m, T>(ebpf: &'m mut Ebpf, name: &'static str) -> Result<T, MapError>
where
    T: TryFrom<&'m mut aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.map_mut(name).ok_or_else(|| MapError {
        name,
        reason: "missing from the object".into(),
    })?;
    T::try_from(map).map_err(|e| MapError::new(name, &e))
}

/// The cgroup2 root `path` opened for attaching, or why it cannot be.
fn cgroup_root(path: Option<&str>) -> Result<(&str, File), AttachError> {
    let path = path.ok_or(AttachError::NoCgroup2)?;
    let file = File::open(path).map_err(|source| AttachError::Cgroup {
        path: path.to_string(),
        source,
    })?;
    Ok((path, file))
}

impl<'a> Attacher<'a> {
    /// An attacher for `ebpf`; cgroup programs go on the cgroup2 root `cgroup`.
    pub fn new(ebpf: &'a mut Ebpf, cgroup: Option<String>) -> Self {
        Self {
            ebpf,
            links: Links::new(),
            cgroup,
            rejected: Vec::new(),
        }
    }

    /// The object being attached.
    pub fn ebpf(&mut self) -> &mut Ebpf {
        self.ebpf
    }

    /// Attaches tracepoint program `name` (loading it first if needed) to `category:event`.
    pub fn tracepoint(
        &mut self,
        name: &str,
        category: &str,
        event: &str,
        since: Option<&'static str>,
    ) -> Result<String, AttachError> {
        if !tracefs::exists(category, event) {
            return Err(AttachError::NoTracepoint {
                name: format!("{category}:{event}"),
                since,
            });
        }
        let prog: &mut TracePoint = program(self.ebpf, name)?;
        if prog.fd().is_err() {
            prog.load()
                .map_err(|e| kept(&mut self.rejected, AttachError::load(name, e)))?;
        }
        let id = prog
            .attach(category, event)
            .map_err(|e| AttachError::attach(format!("tracepoint {category}:{event}"), &e))?;
        self.links.push((name.to_string(), id));
        Ok(format!("tracepoint:{category}:{event}"))
    }

    /// Attaches socket-tracepoint program `name` to `category:event`, standing in for `func`:
    /// where the socket is in its record goes into `TRACEPOINT_FNS` first.
    pub fn sock_tracepoint(
        &mut self,
        func: KernelFn,
        stand_in: &StandIn,
    ) -> Result<String, AttachError> {
        let &StandIn::SockTracepoint {
            program: name,
            category,
            name: event,
            sk_field,
            forget,
            since,
            ..
        } = stand_in
        else {
            return Err(AttachError::NoStandIn("not a socket tracepoint"));
        };
        let no_tracepoint = || AttachError::NoTracepoint {
            name: format!("{category}:{event}"),
            since,
        };
        let format = Format::read(category, event).map_err(|_| no_tracepoint())?;
        let sk_offset = format.offset(sk_field).map_err(|_| no_tracepoint())?;
        let map_error = |e: &dyn std::error::Error| AttachError::attach("map TRACEPOINT_FNS", e);
        let map = self
            .ebpf
            .map_mut("TRACEPOINT_FNS")
            .ok_or_else(|| AttachError::MissingProgram("map TRACEPOINT_FNS".into()))?;
        let mut fns =
            BpfHashMap::<_, u32, TracepointFn>::try_from(map).map_err(|e| map_error(&e))?;
        let spec = TracepointFn {
            func: func as u8,
            forget: u8::from(forget),
            sk_offset: sk_offset as u16,
        };
        fns.insert(func as u32, spec, 0)
            .map_err(|e| MapError::new("TRACEPOINT_FNS", &e))?;
        self.tracepoint(name, category, event, None)
    }

    /// Attaches the generic sock_ops program (once) and points `callback` at `func`.
    pub fn sock_ops(&mut self, callback: u32, func: KernelFn) -> Result<(), AttachError> {
        let prog: &mut SockOps = program(self.ebpf, SOCK_OPS_PROGRAM)?;
        if prog.fd().is_err() {
            prog.load()
                .map_err(|e| kept(&mut self.rejected, AttachError::load(SOCK_OPS_PROGRAM, e)))?;
            let (path, file) = cgroup_root(self.cgroup.as_deref())?;
            prog.attach(&file, CgroupAttachMode::Single)
                .map_err(|e| AttachError::attach(format!("sock_ops on {path}"), &e))?;
        }
        let mut fns: Array<_, u32> = map(self.ebpf, "SOCK_OPS_FNS")?;
        fns.set(callback, func as u32, 0)
            .map_err(|e| MapError::new("SOCK_OPS_FNS", &e).into())
    }

    /// Attaches cgroup_skb program `name` on the cgroup2 root.
    pub fn cgroup_skb(&mut self, name: &str, ty: CgroupSkbAttachType) -> Result<(), AttachError> {
        let (path, file) = cgroup_root(self.cgroup.as_deref())?;
        let prog: &mut CgroupSkb = program(self.ebpf, name)?;
        if prog.fd().is_err() {
            prog.load()
                .map_err(|e| kept(&mut self.rejected, AttachError::load(name, e)))?;
        }
        prog.attach(&file, ty, CgroupAttachMode::Single)
            .map_err(|e| AttachError::attach(format!("cgroup_skb on {path}"), &e))?;
        Ok(())
    }

    /// Attaches raw tracepoint program `name` to `event`.
    pub fn raw_tracepoint(&mut self, name: &str, event: &str) -> Result<(), AttachError> {
        let prog: &mut RawTracePoint = program(self.ebpf, name)?;
        if prog.fd().is_err() {
            prog.load()
                .map_err(|e| kept(&mut self.rejected, AttachError::load(name, e)))?;
        }
        // The program keeps its link: it is detached when the programs are dropped.
        prog.attach(event)
            .map_err(|e| AttachError::attach(format!("raw tracepoint {event}"), &e))?;
        Ok(())
    }

    /// Attaches raw tracepoint program `name` to `event` of `category`, which the kernel added
    /// in version `since`: its absence is told as such.
    pub fn raw_tracepoint_of(
        &mut self,
        name: &str,
        category: &str,
        event: &str,
        since: Option<&'static str>,
    ) -> Result<(), AttachError> {
        if !tracefs::exists(category, event) {
            return Err(AttachError::NoTracepoint {
                name: format!("{category}:{event}"),
                since,
            });
        }
        self.raw_tracepoint(name, event)
    }

    /// Attaches fentry/fexit `probe` to kernel function `function`.
    pub fn fentry(
        &mut self,
        probe: &Probe,
        function: &str,
        btf: &aya::Btf,
    ) -> Result<String, AttachError> {
        let name = probe.program;
        let attach =
            |e: &dyn std::error::Error| AttachError::attach(format!("{name} on {function}"), e);
        if probe.via == Via::Fexit {
            let prog: &mut FExit = program(self.ebpf, name)?;
            prog.load(function, btf)
                .map_err(|e| kept(&mut self.rejected, AttachError::load(name, e)))?;
            prog.attach().map_err(|e| attach(&e))?;
        } else {
            let prog: &mut FEntry = program(self.ebpf, name)?;
            prog.load(function, btf)
                .map_err(|e| kept(&mut self.rejected, AttachError::load(name, e)))?;
            prog.attach().map_err(|e| attach(&e))?;
        }
        Ok(format!("{}:{function}", probe.via.name()))
    }

    /// Attaches fentry program `enter` and fexit program `exit` to kernel function
    /// `function`, both or neither: they pair their records, and an exit whose enter is
    /// another tier's would take that tier's in-flight record.
    pub fn fentry_pair(
        &mut self,
        enter: &str,
        exit: &str,
        function: &str,
        btf: &aya::Btf,
    ) -> Result<(), AttachError> {
        let attach = |name: &str, e: &dyn std::error::Error| {
            AttachError::attach(format!("{name} on {function}"), e)
        };
        let prog: &mut FExit = program(self.ebpf, exit)?;
        if prog.fd().is_err() {
            prog.load(function, btf)
                .map_err(|e| kept(&mut self.rejected, AttachError::load(exit, e)))?;
        }
        let prog: &mut FEntry = program(self.ebpf, enter)?;
        if prog.fd().is_err() {
            prog.load(function, btf)
                .map_err(|e| kept(&mut self.rejected, AttachError::load(enter, e)))?;
        }
        // The exit first: until the enter is attached it finds nothing to complete.
        let prog: &mut FExit = program(self.ebpf, exit)?;
        prog.attach().map_err(|e| attach(exit, &e))?;
        let prog: &mut FEntry = program(self.ebpf, enter)?;
        if let Err(e) = prog.attach() {
            let error = attach(enter, &e);
            let prog: &mut FExit = program(self.ebpf, exit)?;
            let _ = prog.unload();
            return Err(error);
        }
        Ok(())
    }

    /// Attaches every kprobe/kretprobe of `probes` to each kernel function of `functions`.
    pub fn kprobes(&mut self, probes: &[Probe], functions: &[&str]) -> Result<String, AttachError> {
        let mut via = Vec::new();
        for probe in probes {
            let name = probe.program;
            let prog: &mut KProbe = program(self.ebpf, name)?;
            prog.load()
                .map_err(|e| kept(&mut self.rejected, AttachError::load(name, e)))?;
            for function in functions {
                prog.attach(*function, 0)
                    .map_err(|e| AttachError::attach(format!("{name} on {function}"), &e))?;
                via.push(format!("{}:{function}", probe.via.name()));
            }
        }
        Ok(via.join("+"))
    }
}

/// Fills hash map `name` with `keys` (value 1).
pub fn fill<K: aya::Pod + Copy>(
    ebpf: &mut Ebpf,
    name: &'static str,
    keys: &[K],
) -> Result<(), MapError> {
    let mut map: BpfHashMap<_, K, u8> = map(ebpf, name)?;
    for key in keys {
        map.insert(key, 1, 0).map_err(|e| MapError::new(name, &e))?;
    }
    Ok(())
}
