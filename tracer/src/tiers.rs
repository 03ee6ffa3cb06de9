//! The three ways a kernel function can be watched, best first, and whether this kernel
//! offers each: fentry/fexit (BPF trampolines), kprobe/kretprobe, and the tracepoint (or
//! sock_ops) stand-ins.

use std::path::Path;

use clap::ValueEnum;

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

/// Whether fentry/fexit programs can load here; the error names what is missing.
pub fn fentry_available() -> Result<(), String> {
    if !Path::new(crate::btf::VMLINUX).exists() {
        return Err(format!(
            "fentry is not available: no kernel BTF at {} (CONFIG_DEBUG_INFO_BTF off)",
            crate::btf::VMLINUX
        ));
    }
    match aya::sys::is_program_supported(aya::programs::ProgramType::Tracing) {
        Ok(true) => Ok(()),
        Ok(false) => Err(
            "fentry is not available: this kernel refuses BPF_PROG_TYPE_TRACING programs (fentry/fexit)"
                .into(),
        ),
        Err(e) => {
            let mut why = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                why = format!("{why}: {s}");
                source = s.source();
            }
            Err(format!(
                "fentry is not available: this kernel refuses BPF_PROG_TYPE_TRACING (fentry/fexit) programs ({why})"
            ))
        }
    }
}

/// Whether kprobes can attach here; the error names what is missing.
pub fn kprobe_available() -> Result<(), String> {
    let pmu = "/sys/bus/event_source/devices/kprobe";
    if Path::new(pmu).exists() {
        Ok(())
    } else {
        Err(format!(
            "kprobes are not available: {pmu} is missing (CONFIG_KPROBES off)"
        ))
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
