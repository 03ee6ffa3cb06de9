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
    match load_tracing_program() {
        TracingProbe::Known => Ok(()),
        TracingProbe::Unknown => Err(
            "fentry is not available: this kernel refuses BPF_PROG_TYPE_TRACING programs (fentry/fexit)"
                .into(),
        ),
        TracingProbe::Refused(e) => Err(format!(
            "fentry is not available: this kernel refuses BPF_PROG_TYPE_TRACING (fentry/fexit) programs (`bpf_prog_load` failed: {e})"
        )),
    }
}

/// What the kernel said to a tracing program naming no function.
enum TracingProbe {
    /// It got as far as asking which function: the kernel has fentry.
    Known,
    /// It rejected the program type itself.
    Unknown,
    /// It refused to load it (EPERM: a lockdown or a security module).
    Refused(std::io::Error),
}

/// Loads a two-instruction fentry program with no function named (`attach_btf_id` 0). A kernel
/// that has fentry fails it for want of a function ("Tracing programs must provide btf_id"),
/// which answers the question without reading the kernel's BTF (tens of milliseconds) for a
/// function's id, as aya's probe does.
fn load_tracing_program() -> TracingProbe {
    use aya_obj::generated::{bpf_attach_type, bpf_attr, bpf_cmd, bpf_prog_type};

    // r0 = 0; exit.
    let insns: [u64; 2] = [0xb7, 0x95];
    let license = c"GPL";
    // Room for the whole verifier log: 7.x fails a load whose log was cut short with ENOSPC
    // instead of its own error.
    let mut log = [0u8; 1024];
    // SAFETY: a plain C union for which all-zero bytes are a valid value (and what the kernel
    // expects in every field not set).
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    // SAFETY: writing the fields of BPF_PROG_LOAD's member of the zeroed union.
    let load = unsafe { &mut attr.__bindgen_anon_3 };
    load.prog_type = bpf_prog_type::BPF_PROG_TYPE_TRACING as u32;
    load.expected_attach_type = bpf_attach_type::BPF_TRACE_FENTRY as u32;
    load.insn_cnt = insns.len() as u32;
    load.insns = insns.as_ptr() as u64;
    load.license = license.as_ptr() as u64;
    load.log_level = 1;
    load.log_size = log.len() as u32;
    load.log_buf = log.as_mut_ptr() as u64;
    // SAFETY: the kernel reads `insns` and `license` and writes at most `log_size` bytes into
    // `log`, all of which outlive the call; `attr` is a fully initialised bpf_attr.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            bpf_cmd::BPF_PROG_LOAD as libc::c_int,
            &mut attr as *mut bpf_attr,
            std::mem::size_of::<bpf_attr>(),
        )
    };
    if rc >= 0 {
        // SAFETY: the kernel just gave us this fd; closing it unloads the program.
        unsafe { libc::close(rc as libc::c_int) };
        return TracingProbe::Known;
    }
    let error = std::io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EINVAL | libc::ENOSPC)
            if log.starts_with(b"Tracing programs must provide btf_id") =>
        {
            TracingProbe::Known
        }
        Some(libc::EINVAL | libc::E2BIG) => TracingProbe::Unknown,
        _ => TracingProbe::Refused(error),
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
