//! The startup banner on stderr: what is traced, and which tier each hook got and why.

use std::io::Write;

use crate::hooks::HookStatus;

/// Writes the banner for a run tracing `what` with `hooks` attached.
pub fn write(err: &mut impl Write, what: &str, hooks: &[HookStatus], missing_layers: &[&str]) {
    let _ = writeln!(err, "tracer: tracing {what}; hooks:");
    for h in hooks {
        let _ = writeln!(err, "{}", hook_line(h));
    }
    if let Some(h) = hooks.iter().find(|h| !h.skipped.is_empty()) {
        let _ = writeln!(err, "  better tiers not used: {}", h.skipped.join("; "));
    }
    for layer in missing_layers {
        let _ = writeln!(err, "  layer {layer}: MISSING, no hook attached");
    }
    let _ = writeln!(err, "tracer: ready (Ctrl-C to stop)");
}

fn hook_line(h: &HookStatus) -> String {
    let layer = h.layer.name();
    match (&h.tier, &h.via) {
        (Some(tier), Some(via)) => format!("  {layer:<10} {:<19} {tier:<11} {via}", h.name),
        _ => format!(
            "  {layer:<10} {:<19} {:<11} {}",
            h.name,
            "MISSING",
            h.error
                .as_ref()
                .map_or_else(|| "not attached".to_string(), ToString::to_string)
        ),
    }
}
