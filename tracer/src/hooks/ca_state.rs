//! Congestion-state changes where the kernel has no `tcp:tcp_cong_state_set` tracepoint
//! (5.10): the programs of `tracer-ebpf/src/kernel/ca_state.rs` on the functions that decide
//! the state, on the best probe tier allowed, in place of the missing tracepoint.

use super::attach::Attacher;
use super::offsets::{CONGESTION_FIELDS, Offsets};
use super::status::HookStatus;
use super::table::CA_STATE_FALLBACK;
use super::tier::Tiers;

/// `status`, the congestion-state row's, if its tracepoint attached; otherwise the status of
/// the fallback probes (the tracepoint's absence among the reasons a better hook was not used).
pub fn fallback(
    at: &mut Attacher,
    tiers: &Tiers,
    offsets: &Offsets,
    status: HookStatus,
) -> HookStatus {
    if status.tier.is_some() || offsets.lacking(&CONGESTION_FIELDS).is_some() {
        return status;
    }
    let (name, layer) = (status.name, status.layer);
    // Why no probe tier attached: only reasons, as the row's own status gives its error.
    let mut tried = Vec::new();
    // Where a probe tier attaches, the tracepoint's absence is among the reasons it was not
    // the better hook.
    let attached = |tier, via, tried: Vec<String>| {
        let mut skipped = status.skipped.clone();
        skipped.extend(status.error.as_ref().map(|e| format!("tracepoint: {e}")));
        skipped.extend(tried);
        HookStatus::attached(name, layer, tier, via, skipped)
    };
    let functions = CA_STATE_FALLBACK.functions();
    match &tiers.fentry {
        Err(why) => tried.push(why.clone()),
        Ok(btf) => {
            let via: Result<Vec<String>, _> = CA_STATE_FALLBACK
                .fentry
                .iter()
                .map(|(function, probe)| at.fentry(probe, function, btf))
                .collect();
            match via {
                Ok(via) => return attached("fentry", via.join("+"), tried),
                Err(e) => tried.push(format!("fentry: {e}")),
            }
        }
    }
    match &tiers.kprobe {
        Err(why) => tried.push(why.clone()),
        Ok(()) => match at.kprobes(&CA_STATE_FALLBACK.kprobes, &functions) {
            Ok(via) => return attached("kprobe", via, tried),
            Err(e) => tried.push(format!("kprobe: {e}")),
        },
    }
    let mut skipped = status.skipped.clone();
    skipped.extend(tried);
    HookStatus { skipped, ..status }
}
