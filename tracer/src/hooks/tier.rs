//! The three ways a kernel function can be watched, best first — fentry/fexit (BPF
//! trampolines), kprobe/kretprobe, and the tracepoint (or sock_ops) stand-ins — and what this
//! kernel and the user's `--probe-mode` allow of them; and the syscall layer's two tiers
//! (fentry/fexit on the syscall functions, or the `syscalls:` tracepoints).

use clap::ValueEnum;

use crate::system::features::{fentry_available, kprobe_available};

/// Which tier to use for the kernel-function hooks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ProbeMode {
    /// The best tier the kernel allows, per hook.
    #[default]
    Auto,
    /// fentry/fexit only.
    Fentry,
    /// kprobe/kretprobe only.
    Kprobe,
    /// Tracepoints and sock_ops stand-ins only.
    Tracepoint,
}

impl ProbeMode {
    /// The name as `--probe-mode` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Fentry => "fentry",
            Self::Kprobe => "kprobe",
            Self::Tracepoint => "tracepoint",
        }
    }

    /// Whether the stand-ins may be used.
    pub fn allows_stand_ins(self) -> bool {
        matches!(self, Self::Auto | Self::Tracepoint)
    }
}

/// Which tier the syscall layer uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum SyscallMode {
    /// fentry/fexit on each syscall's function where the kernel allows it, the `syscalls:`
    /// tracepoints elsewhere.
    #[default]
    Auto,
    /// The `syscalls:` tracepoints only.
    Tracepoint,
}

impl SyscallMode {
    /// The name as `--syscall-mode` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Tracepoint => "tracepoint",
        }
    }
}

/// Checks a forced tier before anything is loaded: `Err` is the one line to print.
pub fn check_forced(mode: ProbeMode) -> Result<(), String> {
    match mode {
        ProbeMode::Auto | ProbeMode::Tracepoint => Ok(()),
        ProbeMode::Fentry => fentry_available(),
        ProbeMode::Kprobe => kprobe_available(),
    }
}

/// What this run may use for the kernel-function hooks, found once before loading: each
/// probe tier, or why not.
pub struct Tiers {
    /// The user's choice.
    pub mode: ProbeMode,
    /// The kernel's BTF for fentry, or why fentry is not used.
    pub fentry: Result<aya::Btf, String>,
    /// Why kprobes are not used, if they are not.
    pub kprobe: Result<(), String>,
    /// The kernel's BTF for the syscall layer's fentry tier, or why it is not used. Not tied
    /// to `--probe-mode`, which is about kernel functions: a syscall's programs are the same
    /// two in every mode, and fentry's are the ones 7.x kernels do not skip.
    pub syscall_fentry: Result<aya::Btf, String>,
}

impl Tiers {
    /// What `mode` and `syscalls` allow on this kernel; the kernel's BTF is read at most once.
    pub fn probe(mode: ProbeMode, syscalls: SyscallMode) -> Self {
        let not_tried = |tier: &str| format!("{tier}: not tried (--probe-mode {})", mode.name());
        let wants_btf =
            matches!(mode, ProbeMode::Auto | ProbeMode::Fentry) || syscalls == SyscallMode::Auto;
        let btf = if wants_btf {
            fentry_available().and_then(|()| {
                aya::Btf::from_sys_fs().map_err(|e| format!("fentry: kernel BTF: {e}"))
            })
        } else {
            Err(String::new())
        };
        let fentry = match mode {
            ProbeMode::Auto | ProbeMode::Fentry => btf.clone(),
            _ => Err(not_tried("fentry")),
        };
        let syscall_fentry = match syscalls {
            SyscallMode::Auto => btf,
            SyscallMode::Tracepoint => {
                Err("fentry: not tried (--syscall-mode tracepoint)".to_string())
            }
        };
        let kprobe = match mode {
            ProbeMode::Auto | ProbeMode::Kprobe => kprobe_available(),
            _ => Err(not_tried("kprobe")),
        };
        Self {
            mode,
            fentry,
            kprobe,
            syscall_fentry,
        }
    }

    /// Whether either probe tier may be tried.
    pub fn any_probe(&self) -> bool {
        self.fentry.is_ok() || self.kprobe.is_ok()
    }
}
