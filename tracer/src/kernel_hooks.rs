//! The kernel-function hooks (`tcp_connect`, `inet_csk_accept`, `tcp_sendmsg`, `tcp_recvmsg`,
//! `tcp_close`): what can watch each one, and the choice of tier per function at startup —
//! fentry/fexit, else kprobe/kretprobe, else the tracepoint or sock_ops stand-in — with the
//! reason every better tier was not used.

use aya::Ebpf;
use tracer_common::{
    OFF_SK_DADDR, OFF_SK_DPORT, OFF_SK_FAMILY, OFF_SK_NUM, OFF_SK_RCV_SADDR, OFF_SK_V6_DADDR,
    OFF_SK_V6_RCV_SADDR, OFF_TP_WRITE_SEQ, OFFSETS_LEN,
};

use crate::loader::{HookStatus, Links, attach_sock_ops, attach_tracepoint, kernel_hook, one_line};
use crate::tiers::ProbeMode;

/// How one kernel function can be watched, best tier first.
pub struct KernelFnSpec {
    /// The function (and hook name).
    pub name: &'static str,
    /// The fentry/fexit program, and whether it is fexit.
    pub fentry: (&'static str, bool),
    /// The kprobe programs, each with whether it is a kretprobe.
    pub kprobes: &'static [(&'static str, bool)],
    /// The tracepoint-tier stand-in.
    pub stand_in: StandIn,
}

/// The tracepoint-tier stand-in of a kernel function.
pub enum StandIn {
    /// The sock_ops program, with the callback bit it must enable.
    SockOps(u32, &'static str),
    /// A tracepoint program: (program, category, name).
    Tracepoint(&'static str, &'static str, &'static str),
    /// None exists; why.
    Missing(&'static str),
}

/// The kernel functions, in display order.
pub const KERNEL_FNS: [KernelFnSpec; 5] = [
    KernelFnSpec {
        name: "tcp_connect",
        fentry: ("fentry_tcp_connect", false),
        kprobes: &[("kprobe_tcp_connect", false)],
        stand_in: StandIn::SockOps(1, "sock_ops:tcp_connect_cb"),
    },
    KernelFnSpec {
        name: "inet_csk_accept",
        fentry: ("fexit_inet_csk_accept", true),
        kprobes: &[("kretprobe_inet_csk_accept", true)],
        stand_in: StandIn::SockOps(2, "sock_ops:passive_established_cb"),
    },
    KernelFnSpec {
        name: "tcp_sendmsg",
        fentry: ("fentry_tcp_sendmsg", false),
        kprobes: &[("kprobe_tcp_sendmsg", false)],
        stand_in: StandIn::Tracepoint("sock_send_length", "sock", "sock_send_length"),
    },
    KernelFnSpec {
        name: "tcp_recvmsg",
        fentry: ("fexit_tcp_recvmsg", true),
        kprobes: &[
            ("kprobe_tcp_recvmsg", false),
            ("kretprobe_tcp_recvmsg", true),
        ],
        stand_in: StandIn::Tracepoint("sock_recv_length", "sock", "sock_recv_length"),
    },
    KernelFnSpec {
        name: "tcp_close",
        fentry: ("fentry_tcp_close", false),
        kprobes: &[("kprobe_tcp_close", false)],
        stand_in: StandIn::Missing(
            "no tracepoint stands in for it; the close() syscall and the state change show it",
        ),
    },
];

/// What this kernel offers for the kernel-function hooks, found once before loading.
pub struct Tiers {
    mode: ProbeMode,
    /// The kernel's BTF for fentry, or why fentry is not used.
    fentry: Result<aya::Btf, String>,
    /// Why kprobes are not used, if they are not.
    kprobe: Result<(), String>,
}

impl Tiers {
    /// What `mode` allows on this kernel.
    pub fn probe(mode: ProbeMode) -> Self {
        let not_tried =
            |tier: &str| format!("{tier}: not tried (--probe-mode {})", mode_name(mode));
        let fentry = match mode {
            ProbeMode::Auto | ProbeMode::Fentry => {
                crate::tiers::fentry_available().and_then(|()| {
                    aya::Btf::from_sys_fs().map_err(|e| format!("fentry: kernel BTF: {e}"))
                })
            }
            _ => Err(not_tried("fentry")),
        };
        let kprobe = match mode {
            ProbeMode::Auto | ProbeMode::Kprobe => crate::tiers::kprobe_available(),
            _ => Err(not_tried("kprobe")),
        };
        Self {
            mode,
            fentry,
            kprobe,
        }
    }

    /// Fills the `struct sock` offsets the fentry/kprobe programs read, from the running
    /// kernel's BTF. Without them, neither tier is used.
    pub fn add_sock_offsets(&mut self, offsets: &mut [u32; OFFSETS_LEN]) {
        if self.fentry.is_err() && self.kprobe.is_err() {
            return;
        }
        let found = (|| -> Result<(), String> {
            let btf = crate::btf::Btf::from_sys_fs().map_err(|e| e.to_string())?;
            for (i, st, field) in [
                (OFF_SK_FAMILY, "sock_common", "skc_family"),
                (OFF_SK_NUM, "sock_common", "skc_num"),
                (OFF_SK_DPORT, "sock_common", "skc_dport"),
                (OFF_SK_RCV_SADDR, "sock_common", "skc_rcv_saddr"),
                (OFF_SK_DADDR, "sock_common", "skc_daddr"),
                (OFF_SK_V6_RCV_SADDR, "sock_common", "skc_v6_rcv_saddr"),
                (OFF_SK_V6_DADDR, "sock_common", "skc_v6_daddr"),
                (OFF_TP_WRITE_SEQ, "tcp_sock", "write_seq"),
            ] {
                offsets[i] = btf.member_offset(st, field).map_err(|e| e.to_string())?;
            }
            Ok(())
        })();
        if let Err(e) = found {
            let why = format!("kernel BTF lacks what the programs read: {e}");
            self.fentry = Err(format!("fentry: {why}"));
            self.kprobe = Err(format!("kprobe: {why}"));
        }
    }

    /// Attaches `spec` with the best tier allowed; reports how.
    pub fn attach(
        &self,
        ebpf: &mut Ebpf,
        links: &mut Links,
        spec: &KernelFnSpec,
        cgroup: Option<&str>,
        sock_ops_funcs: &mut u32,
    ) -> HookStatus {
        let mut skipped = Vec::new();
        let done = |tier: &'static str, via: String, skipped: Vec<String>| HookStatus {
            name: spec.name,
            layer: "kernel",
            tier: Some(tier),
            via: Some(via),
            skipped,
            error: None,
        };
        match &self.fentry {
            Ok(btf) => match attach_fentry(ebpf, spec.fentry.0, spec.fentry.1, spec.name, btf) {
                Ok(via) => return done("fentry", via, skipped),
                Err(e) => skipped.push(format!("fentry: {e}")),
            },
            Err(why) => skipped.push(why.clone()),
        }
        match &self.kprobe {
            Ok(()) => match attach_kprobes(ebpf, spec.kprobes, spec.name) {
                Ok(via) => return done("kprobe", via, skipped),
                Err(e) => skipped.push(format!("kprobe: {e}")),
            },
            Err(why) => skipped.push(why.clone()),
        }
        let result = match self.mode {
            ProbeMode::Auto | ProbeMode::Tracepoint => match &spec.stand_in {
                StandIn::SockOps(bit, via) => attach_sock_ops(ebpf, cgroup).map(|()| {
                    *sock_ops_funcs |= bit;
                    via.to_string()
                }),
                StandIn::Tracepoint(program, category, name) => {
                    attach_tracepoint(ebpf, links, program, category, name)
                }
                StandIn::Missing(why) => Err(why.to_string()),
            },
            forced => Err(format!(
                "--probe-mode {} could not attach it: {}",
                mode_name(forced),
                skipped.join("; ")
            )),
        };
        kernel_hook(spec.name, result, &skipped)
    }
}

fn mode_name(mode: ProbeMode) -> &'static str {
    match mode {
        ProbeMode::Auto => "auto",
        ProbeMode::Fentry => "fentry",
        ProbeMode::Kprobe => "kprobe",
        ProbeMode::Tracepoint => "tracepoint",
    }
}

fn attach_fentry(
    ebpf: &mut Ebpf,
    program: &str,
    fexit: bool,
    function: &str,
    btf: &aya::Btf,
) -> Result<String, String> {
    let prog = ebpf
        .program_mut(program)
        .ok_or_else(|| format!("program {program} missing from the object"))?;
    if fexit {
        let prog: &mut aya::programs::FExit =
            prog.try_into().map_err(|e| format!("{program}: {e}"))?;
        prog.load(function, btf)
            .map_err(|e| format!("load: {}", one_line(e)))?;
        prog.attach()
            .map_err(|e| format!("attach: {}", one_line(e)))?;
        Ok(format!("fexit:{function}"))
    } else {
        let prog: &mut aya::programs::FEntry =
            prog.try_into().map_err(|e| format!("{program}: {e}"))?;
        prog.load(function, btf)
            .map_err(|e| format!("load: {}", one_line(e)))?;
        prog.attach()
            .map_err(|e| format!("attach: {}", one_line(e)))?;
        Ok(format!("fentry:{function}"))
    }
}

fn attach_kprobes(
    ebpf: &mut Ebpf,
    programs: &[(&str, bool)],
    function: &str,
) -> Result<String, String> {
    let mut via = Vec::new();
    for (program, ret) in programs {
        let prog: &mut aya::programs::KProbe = ebpf
            .program_mut(program)
            .ok_or_else(|| format!("program {program} missing from the object"))?
            .try_into()
            .map_err(|e| format!("{program}: {e}"))?;
        prog.load().map_err(|e| format!("load: {}", one_line(e)))?;
        prog.attach(function, 0)
            .map_err(|e| format!("attach: {}", one_line(e)))?;
        via.push(format!(
            "{}:{function}",
            if *ret { "kretprobe" } else { "kprobe" }
        ));
    }
    Ok(via.join("+"))
}
