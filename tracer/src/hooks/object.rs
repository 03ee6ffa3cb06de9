//! Checks the hook table against the embedded object, without loading anything (no root):
//! every program the table names exists, with the type the table expects.

#[cfg(test)]
mod tests {
    use aya_obj::{Object, ProgramSection};
    use tracer_common::{SyscallOp, Via};

    use crate::hooks::load::PROGRAMS;
    use crate::hooks::table::{
        CA_STATE_FALLBACK, KERNEL_HOOKS, PACKET_PROGRAMS, PROCESS_PROGRAMS, RECEIVED_FD,
        TIMEWAIT_PROGRAM, syscall_function_programs, syscall_programs,
    };

    fn matches(section: &ProgramSection, via: Via) -> bool {
        matches!(
            (section, via),
            (ProgramSection::FEntry { .. }, Via::Fentry)
                | (ProgramSection::FExit { .. }, Via::Fexit)
                | (ProgramSection::KProbe, Via::Kprobe)
                | (ProgramSection::KRetProbe, Via::Kretprobe)
                | (ProgramSection::TracePoint, Via::Tracepoint)
                | (ProgramSection::SockOps, Via::SockOps)
                | (ProgramSection::CgroupSkb { .. }, Via::CgroupSkbEgress)
                | (ProgramSection::RawTracePoint, Via::RawTracepoint)
        )
    }

    #[test]
    fn every_program_the_table_names_is_in_the_object() {
        let object = Object::parse(PROGRAMS).expect("the embedded object parses");
        let check = |name: &str, via: Via| {
            let program = object
                .programs
                .get(name)
                .unwrap_or_else(|| panic!("program {name} is not in the object"));
            assert!(
                matches(&program.section, via),
                "{name} is {:?}, the table expects {via:?}",
                program.section
            );
        };
        for row in &KERNEL_HOOKS {
            for (name, via) in row.programs() {
                check(name, via);
            }
        }
        for op in SyscallOp::ALL {
            let (enter, exit) = syscall_programs(op);
            check(&enter, Via::Tracepoint);
            check(exit, Via::Tracepoint);
            let (enter, exit) = syscall_function_programs(op);
            check(&enter, Via::Fentry);
            check(&exit, Via::Fexit);
        }
        for (name, _) in PROCESS_PROGRAMS {
            check(name, Via::Tracepoint);
        }
        let fallback = CA_STATE_FALLBACK.fentry.iter().map(|(_, p)| p);
        for p in RECEIVED_FD
            .fentry
            .iter()
            .chain(&RECEIVED_FD.kprobes)
            .chain(&RECEIVED_FD.scm_fentry)
            .chain(&RECEIVED_FD.scm_kprobes)
            .chain(fallback)
            .chain(&CA_STATE_FALLBACK.kprobes)
        {
            check(p.program, p.via);
        }
        for name in PACKET_PROGRAMS {
            check(name, Via::CgroupSkbEgress);
        }
        check(TIMEWAIT_PROGRAM.0, Via::RawTracepoint);
    }
}
