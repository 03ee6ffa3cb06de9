//! Which probe mechanisms this kernel offers, each answer with the reason when it is no.

use std::path::Path;

/// Whether fentry/fexit programs can load here; the error names what is missing.
pub fn fentry_available() -> Result<(), String> {
    if !Path::new(super::btf::VMLINUX).exists() {
        return Err(format!(
            "fentry is not available: no kernel BTF at {} (CONFIG_DEBUG_INFO_BTF off)",
            super::btf::VMLINUX
        ));
    }
    match aya::sys::is_program_supported(aya::programs::ProgramType::Tracing) {
        Ok(true) => Ok(()),
        Ok(false) => Err(
            "fentry is not available: this kernel refuses BPF_PROG_TYPE_TRACING programs (fentry/fexit)"
                .into(),
        ),
        Err(e) => Err(format!(
            "fentry is not available: this kernel refuses BPF_PROG_TYPE_TRACING (fentry/fexit) programs ({})",
            crate::error_text::chain(&e)
        )),
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
