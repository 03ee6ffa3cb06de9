//! Whether the running kernel preempts kernel code, and so may preempt a BPF program mid-run.
//!
//! A preempted program keeps its per-CPU recursion guard, and the kernel skips what that guard
//! covers on that CPU until it runs again: the same trampoline program (fentry/fexit), or every
//! perf-attached program (tracepoints, kprobes). On such kernels (all of 7.x, `preempt=full`
//! or `lazy`, PREEMPT_RT) the syscall layer keeps its backups (`hooks/load.rs::syscalls`);
//! elsewhere they would only tax every syscall of every process.

/// Whether kernel code is preemptible here, and where that was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preemption {
    /// Whether the kernel may preempt a running BPF program.
    pub preemptible: bool,
    /// The model (`voluntary`, `full`...) and the source it was read from, for the banner.
    pub why: String,
}

/// Reads the preemption model of the running kernel. When nothing says, the kernel is taken
/// to be preemptible: the backups cost speed, their absence would cost records.
pub fn probe() -> Preemption {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let release = read("/proc/sys/kernel/osrelease").unwrap_or_default();
    let version = read("/proc/sys/kernel/version").unwrap_or_default();
    let dynamic = version.contains("PREEMPT_DYNAMIC");
    if let Some(model) = read("/sys/kernel/debug/sched/preempt")
        .as_deref()
        .and_then(current_model)
    {
        return Preemption::of(model, "/sys/kernel/debug/sched/preempt");
    }
    if dynamic && let Some(model) = read("/proc/cmdline").as_deref().and_then(cmdline_model) {
        return Preemption::of(model, "the kernel command line");
    }
    let config = format!("/boot/config-{}", release.trim());
    if let Some(model) = read(&config).as_deref().and_then(config_model) {
        return Preemption::of(model, &config);
    }
    if major(&release).is_some_and(|m| m >= 7) {
        return Preemption {
            preemptible: true,
            why: "Linux 7.x (its models are lazy and full)".into(),
        };
    }
    if let Some(model) = version_model(&version) {
        return Preemption::of(model, "/proc/sys/kernel/version");
    }
    Preemption {
        preemptible: true,
        why: "preemption model unknown, taken as preemptible".into(),
    }
}

impl Preemption {
    fn of(model: &str, source: &str) -> Self {
        Self {
            preemptible: !matches!(model, "none" | "voluntary"),
            why: format!("preempt={model} ({source})"),
        }
    }
}

/// The model in parentheses in debugfs's `sched/preempt` (`none voluntary (full) lazy`).
fn current_model(text: &str) -> Option<&str> {
    let start = text.find('(')? + 1;
    let end = start + text[start..].find(')')?;
    Some(&text[start..end])
}

/// The model a `preempt=` boot parameter chose (PREEMPT_DYNAMIC kernels).
fn cmdline_model(cmdline: &str) -> Option<&str> {
    cmdline
        .split_whitespace()
        .find_map(|arg| arg.strip_prefix("preempt="))
        .filter(|m| matches!(*m, "none" | "voluntary" | "full" | "lazy"))
}

/// The model a kernel's build configuration chose (its boot default when dynamic).
fn config_model(config: &str) -> Option<&'static str> {
    const MODELS: [(&str, &str); 5] = [
        ("CONFIG_PREEMPT_RT=y", "rt"),
        ("CONFIG_PREEMPT_LAZY=y", "lazy"),
        ("CONFIG_PREEMPT=y", "full"),
        ("CONFIG_PREEMPT_VOLUNTARY=y", "voluntary"),
        ("CONFIG_PREEMPT_NONE=y", "none"),
    ];
    let set: Vec<&str> = config.lines().map(str::trim).collect();
    MODELS
        .iter()
        .find(|(line, _)| set.contains(line))
        .map(|(_, model)| *model)
}

/// The model `uname -v` names, when it names one outright: `PREEMPT_RT`, or `PREEMPT` alone
/// (full); none of them means none or voluntary. A dynamic kernel's says nothing of its mode.
fn version_model(version: &str) -> Option<&'static str> {
    let words: Vec<&str> = version.split_whitespace().collect();
    if words.contains(&"PREEMPT_RT") {
        Some("rt")
    } else if words.contains(&"PREEMPT_DYNAMIC") {
        None
    } else if words.contains(&"PREEMPT") {
        Some("full")
    } else {
        Some("voluntary")
    }
}

/// The major version of a kernel release (`6` of `6.1.0-56-amd64`).
fn major(release: &str) -> Option<u32> {
    release.trim().split('.').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_model_is_the_one_in_parentheses() {
        assert_eq!(current_model("none voluntary (full) lazy\n"), Some("full"));
        assert_eq!(current_model("(none) voluntary full\n"), Some("none"));
        assert_eq!(current_model("full\n"), None);
        let p = Preemption::of(current_model("none (voluntary) full").unwrap(), "x");
        assert!(!p.preemptible);
        assert_eq!(p.why, "preempt=voluntary (x)");
        assert!(Preemption::of("lazy", "x").preemptible);
    }

    #[test]
    fn a_boot_parameter_names_the_model() {
        assert_eq!(
            cmdline_model("BOOT_IMAGE=/vmlinuz root=/dev/vda preempt=full quiet"),
            Some("full")
        );
        assert_eq!(cmdline_model("root=/dev/vda quiet"), None);
        assert_eq!(cmdline_model("preempt=bogus"), None);
    }

    #[test]
    fn the_build_configuration_names_the_model() {
        let debian_6_1 = "CONFIG_PREEMPT_BUILD=y\n# CONFIG_PREEMPT_NONE is not set\n\
                          CONFIG_PREEMPT_VOLUNTARY=y\n# CONFIG_PREEMPT is not set\n\
                          CONFIG_PREEMPT_COUNT=y\nCONFIG_PREEMPTION=y\nCONFIG_PREEMPT_DYNAMIC=y\n";
        assert_eq!(config_model(debian_6_1), Some("voluntary"));
        let lazy = "CONFIG_PREEMPT_LAZY=y\nCONFIG_PREEMPT_DYNAMIC=y\n";
        assert_eq!(config_model(lazy), Some("lazy"));
        assert_eq!(config_model("CONFIG_PREEMPT=y\n"), Some("full"));
        assert_eq!(
            config_model("CONFIG_PREEMPT_RT=y\nCONFIG_PREEMPT=y\n"),
            Some("rt")
        );
        assert_eq!(config_model("CONFIG_HZ=250\n"), None);
    }

    #[test]
    fn uname_names_the_model_only_when_it_is_not_dynamic() {
        assert_eq!(
            version_model("#1 SMP PREEMPT_DYNAMIC Debian 6.1.153-1 (2025-09-20)"),
            None
        );
        assert_eq!(version_model("#1 SMP PREEMPT Tue Jan 1"), Some("full"));
        assert_eq!(version_model("#1 SMP PREEMPT_RT Tue Jan 1"), Some("rt"));
        assert_eq!(version_model("#1 SMP Debian 5.10.223-1"), Some("voluntary"));
        assert_eq!(major("7.2.13+deb14-amd64\n"), Some(7));
        assert_eq!(major("5.10.0-32-amd64"), Some(5));
    }
}
