//! Following a traced socket into a process it is passed to (`SCM_RIGHTS`, `pidfd_getfd`):
//! the programs of `tracer-ebpf/src/received_fd.rs` on the kernel function that installs a
//! received fd, chosen by its name and signature on this kernel.

use super::attach::Attacher;
use super::error::AttachError;
use super::load::fitting;
use super::offsets::{Offsets, RECEIVED_FD_FIELDS};
use super::status::HookStatus;
use super::table::{Layer, RECEIVED_FD};
use super::tier::Tiers;

/// The hook's name in every output, whatever the kernel calls the function (`via` names it).
const NAME: &str = "receive_fd";

/// The programs that trace a traced socket's fd in a process it is passed to, on the best
/// probe tier allowed. No tracepoint sees an fd installed: on the tracepoint tier, passed
/// sockets are not followed (their kernel layer still is: it names the socket, not an fd).
pub fn attach(at: &mut Attacher, tiers: &Tiers, offsets: &Offsets) -> HookStatus {
    let missing = |error, skipped| HookStatus::missing(NAME, Layer::Syscall, error, skipped);
    let no_stand_in = AttachError::NoStandIn(
        "no tracepoint sees an fd passed to another process (SCM_RIGHTS): its calls there are \
         not traced",
    );
    if !tiers.any_probe() {
        let skipped = [&tiers.fentry.as_ref().err(), &tiers.kprobe.as_ref().err()]
            .into_iter()
            .flatten()
            .map(|why| why.to_string())
            .collect();
        return missing(no_stand_in, skipped);
    }
    let (function, arity) = match &offsets.receive_fd {
        Ok(found) => *found,
        Err(why) => return missing(AttachError::Lacking(why.clone()), Vec::new()),
    };
    if let Some(why) = offsets.lacking(&RECEIVED_FD_FIELDS) {
        return missing(AttachError::Lacking(why), Vec::new());
    }
    let mut skipped = Vec::new();
    match &tiers.fentry {
        Err(why) => skipped.push(why.clone()),
        Ok(btf) => match fitting(&RECEIVED_FD.fentry, Ok(arity)) {
            Err(why) => skipped.push(format!("fentry: {why}")),
            Ok(probe) => match at.fentry(probe, function, btf) {
                Ok(via) => {
                    return HookStatus::attached(NAME, Layer::Syscall, "fentry", via, skipped);
                }
                Err(e) => skipped.push(format!("fentry: {e}")),
            },
        },
    }
    match &tiers.kprobe {
        Err(why) => skipped.push(why.clone()),
        Ok(()) => match at.kprobes(&RECEIVED_FD.kprobes(arity), &[function]) {
            Ok(via) => {
                return HookStatus::attached(NAME, Layer::Syscall, "kprobe", via, skipped);
            }
            Err(e) => skipped.push(format!("kprobe: {e}")),
        },
    }
    missing(no_stand_in, skipped)
}
