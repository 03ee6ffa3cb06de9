//! How each hook was attached, for the banner and the `ready` event.

use super::{error::AttachError, table::Layer};

/// How one logical hook was attached.
#[derive(Debug)]
pub struct HookStatus {
    /// The kernel function or layer it stands for (`tcp_connect`, `syscalls`...).
    pub name: &'static str,
    /// Its layer.
    pub layer: Layer,
    /// The tier that attached: `fentry`, `kprobe`, `tracepoint` or `cgroup_skb`; `None` if none
    /// did.
    pub tier: Option<&'static str>,
    /// What exactly attached (`tracepoint:sock:sock_send_length`).
    pub via: Option<String>,
    /// Why each better tier was not used.
    pub skipped: Vec<String>,
    /// Why the hook is missing, when `tier` is `None`.
    pub error: Option<AttachError>,
}

impl HookStatus {
    /// A hook attached by `tier` through `via`.
    pub fn attached(
        name: &'static str,
        layer: Layer,
        tier: &'static str,
        via: String,
        skipped: Vec<String>,
    ) -> Self {
        Self {
            name,
            layer,
            tier: Some(tier),
            via: Some(via),
            skipped,
            error: None,
        }
    }

    /// A hook that could not be attached.
    pub fn missing(
        name: &'static str,
        layer: Layer,
        error: AttachError,
        skipped: Vec<String>,
    ) -> Self {
        Self {
            name,
            layer,
            tier: None,
            via: None,
            skipped,
            error: Some(error),
        }
    }
}

/// Layers with no hook attached at all, among those `hooks` covers.
pub fn missing_layers(hooks: &[HookStatus]) -> Vec<&'static str> {
    let mut missing = Vec::new();
    for layer in [Layer::Syscall, Layer::Kernel, Layer::State, Layer::Packet] {
        let of_layer: Vec<&HookStatus> = hooks.iter().filter(|h| h.layer == layer).collect();
        if !of_layer.is_empty() && of_layer.iter().all(|h| h.tier.is_none()) {
            missing.push(layer.name());
        }
    }
    missing
}
