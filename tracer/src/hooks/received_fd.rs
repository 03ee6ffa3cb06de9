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

/// The function `SCM_RIGHTS` installs a received fd through from 7.3.
const SCM_RECV_ONE_FD: &str = "scm_recv_one_fd";

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
    let Some((tier, via)) = attach_main(at, tiers, function, arity, &mut skipped) else {
        return missing(no_stand_in, skipped);
    };
    let via = match offsets.scm_recv_one_fd {
        None => via,
        Some(scm_arity) => match attach_scm(at, &tier, scm_arity) {
            Ok(scm) => format!("{via}+{scm}"),
            Err(why) => {
                skipped.push(format!(
                    "{SCM_RECV_ONE_FD}: {why} (sockets passed with SCM_RIGHTS are not followed)"
                ));
                via
            }
        },
    };
    let name = match tier {
        Tier::Fentry(_) => "fentry",
        Tier::Kprobe => "kprobe",
    };
    HookStatus::attached(NAME, Layer::Syscall, name, via, skipped)
}

/// The tier the hook got.
enum Tier<'a> {
    /// fentry/fexit, with the kernel's BTF.
    Fentry(&'a aya::Btf),
    /// kprobe/kretprobe.
    Kprobe,
}

/// Attaches the programs on `function` (of `arity` parameters) at the best tier allowed: the
/// tier and the `via` text, or `None` with why each tier failed among `skipped`.
fn attach_main<'a>(
    at: &mut Attacher,
    tiers: &'a Tiers,
    function: &str,
    arity: usize,
    skipped: &mut Vec<String>,
) -> Option<(Tier<'a>, String)> {
    match &tiers.fentry {
        Err(why) => skipped.push(why.clone()),
        Ok(btf) => {
            let attached = fitting(&RECEIVED_FD.fentry, Ok(arity))
                .map_err(|why| format!("fentry: {why}"))
                .and_then(|probe| {
                    at.fentry(probe, function, btf)
                        .map_err(|e| format!("fentry: {e}"))
                });
            match attached {
                Ok(via) => return Some((Tier::Fentry(btf), via)),
                Err(why) => skipped.push(why),
            }
        }
    }
    match &tiers.kprobe {
        Err(why) => skipped.push(why.clone()),
        Ok(()) => match at.kprobes(&RECEIVED_FD.kprobes(arity), &[function]) {
            Ok(via) => return Some((Tier::Kprobe, via)),
            Err(e) => skipped.push(format!("kprobe: {e}")),
        },
    }
    None
}

/// Where `SCM_RIGHTS` installs through `scm_recv_one_fd` (7.3, of `arity` parameters), its
/// programs too, at the tier the main hook got: their `via`, or why not.
fn attach_scm(at: &mut Attacher, tier: &Tier, arity: usize) -> Result<String, String> {
    match tier {
        Tier::Fentry(btf) => {
            let probe = fitting(&RECEIVED_FD.scm_fentry, Ok(arity))?;
            at.fentry(probe, SCM_RECV_ONE_FD, btf)
                .map_err(|e| e.to_string())
        }
        Tier::Kprobe => at
            .kprobes(&RECEIVED_FD.scm_kprobes, &[SCM_RECV_ONE_FD])
            .map_err(|e| e.to_string()),
    }
}
