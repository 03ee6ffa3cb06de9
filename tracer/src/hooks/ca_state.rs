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
    let mut skipped = status.skipped;
    if let Some(e) = &status.error {
        skipped.push(format!("tracepoint: {e}"));
    }
    let functions = CA_STATE_FALLBACK.functions();
    match &tiers.fentry {
        Err(why) => skipped.push(why.clone()),
        Ok(btf) => {
            let attached: Result<Vec<String>, _> = CA_STATE_FALLBACK
                .fentry
                .iter()
                .map(|(function, probe)| at.fentry(probe, function, btf))
                .collect();
            match attached {
                Ok(via) => {
                    return HookStatus::attached(name, layer, "fentry", via.join("+"), skipped);
                }
                Err(e) => skipped.push(format!("fentry: {e}")),
            }
        }
    }
    match &tiers.kprobe {
        Err(why) => skipped.push(why.clone()),
        Ok(()) => match at.kprobes(&CA_STATE_FALLBACK.kprobes, &functions) {
            Ok(via) => return HookStatus::attached(name, layer, "kprobe", via, skipped),
            Err(e) => skipped.push(format!("kprobe: {e}")),
        },
    }
    HookStatus { skipped, ..status }
}
