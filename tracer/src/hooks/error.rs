//! What can go wrong at the attach/load boundary, typed (like aya's `ProgramError` and
//! `EbpfError`); [`AttachError`]'s `Display` is the one line users read.

use thiserror::Error;

/// A map of the object that could not be used: missing or of the wrong type (a build
/// mismatch), or it refused an update.
#[derive(Debug, Error)]
#[error("eBPF map {name}: {reason}")]
pub struct MapError {
    /// The map.
    pub name: &'static str,
    /// Why, in one line.
    pub reason: String,
}

impl MapError {
    /// An error of map `name` for `e`.
    pub fn new(name: &'static str, e: &dyn std::error::Error) -> Self {
        Self {
            name,
            reason: crate::error_text::chain(e),
        }
    }
}

/// Why one program could not be loaded or attached.
#[derive(Debug, Error)]
pub enum AttachError {
    /// The embedded object has no program of that name (a build mismatch).
    #[error("program {0} missing from the object")]
    MissingProgram(String),
    /// The program is of another type than the table says (a build mismatch).
    #[error("{program}: {source}")]
    WrongType {
        /// The program.
        program: String,
        /// aya's reason.
        source: aya::programs::ProgramError,
    },
    /// The kernel's verifier rejected the program: `reason` is its last line, `log` the whole.
    #[error("{program} failed to load: verifier: {reason}")]
    Verifier {
        /// The program.
        program: String,
        /// The verifier's reason (the last line of its log).
        reason: String,
        /// The whole verifier log, for `-v` and bug reports.
        log: String,
    },
    /// Loading failed for another reason.
    #[error("{program} failed to load: {reason}")]
    Load {
        /// The program.
        program: String,
        /// Why, in one line.
        reason: String,
    },
    /// Attaching failed.
    #[error("{target}: {reason}")]
    Attach {
        /// What it was attached to: `tracepoint sock:sock_send_length`, `sock_ops on /sys/...`.
        target: String,
        /// Why, in one line.
        reason: String,
    },
    /// A tracepoint this kernel does not have.
    #[error("tracepoint {name} is not available on this kernel{}", since.map(|v| format!(" (added in Linux {v})")).unwrap_or_default())]
    NoTracepoint {
        /// `category:name`.
        name: String,
        /// The kernel version that introduced it, when known.
        since: Option<&'static str>,
    },
    /// No cgroup2 hierarchy to attach sock_ops or cgroup_skb programs to.
    #[error("no cgroup2 mount found in /proc/self/mountinfo")]
    NoCgroup2,
    /// Opening the cgroup directory failed.
    #[error("{path}: {source}")]
    Cgroup {
        /// The cgroup2 mount point.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// A map the stand-in needs could not be filled.
    #[error(transparent)]
    Map(#[from] MapError),
    /// The function has no stand-in; why.
    #[error("{0}")]
    NoStandIn(&'static str),
    /// The kernel lacks a field its program reads; which, and why.
    #[error("{0}")]
    Lacking(String),
    /// A forced tier could not attach it.
    #[error("--probe-mode {mode} could not attach it: {why}")]
    Forced {
        /// The forced mode.
        mode: &'static str,
        /// Why each tier failed.
        why: String,
    },
}

impl AttachError {
    /// A load failure of `program`, with aya's verifier log split out when there is one.
    pub fn load(program: &str, e: aya::programs::ProgramError) -> Self {
        let text = crate::error_text::chain(&e);
        let full = e.to_string();
        match full.split_once("Verifier output:") {
            Some((_, log)) => Self::Verifier {
                program: program.to_string(),
                reason: log
                    .lines()
                    .map(str::trim)
                    .take_while(|l| !l.starts_with("verification time"))
                    .filter(|l| !l.is_empty())
                    .last()
                    .unwrap_or("")
                    .to_string(),
                log: log.to_string(),
            },
            None => Self::Load {
                program: program.to_string(),
                reason: text,
            },
        }
    }

    /// An attach failure on `target`.
    pub fn attach(target: impl Into<String>, e: &dyn std::error::Error) -> Self {
        Self::Attach {
            target: target.into(),
            reason: crate::error_text::chain(e),
        }
    }
}

/// Why loading failed as a whole.
#[derive(Debug, Error)]
pub enum LoadError {
    /// The object could not be loaded into the kernel.
    #[error("loading the eBPF programs failed: {}", crate::error_text::chain(.0))]
    Load(#[from] aya::EbpfError),
    /// A map could not be used.
    #[error(transparent)]
    Map(#[from] MapError),
    /// The state layer, which decides which sockets are traced, could not be attached.
    #[error("the state hook could not be attached: {0}")]
    Core(AttachError),
    /// A tracepoint's format could not be read.
    #[error(transparent)]
    Tracefs(#[from] crate::system::tracefs::TracefsError),
    /// `--netns` needs kernel fields this kernel's BTF does not place.
    #[error("cannot filter by network namespace: {0}")]
    Netns(String),
    /// Children of traced processes were to be followed and cannot be.
    #[error("cannot follow the traced processes' children: {0}")]
    Follow(String),
}
