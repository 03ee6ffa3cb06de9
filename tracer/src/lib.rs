//! tracer: an eBPF socket tracer. The data flow, one module per step:
//!
//! `loader` (attach hooks) → ring buffer → [`events`] (decode) → [`correlate`] (connections)
//! → [`reorder`] (time order) → [`render`] (timeline, JSON, summary), wired by [`pipeline`]
//! and driven by [`app`].

pub mod app;
pub mod btf;
pub mod cli;
pub mod correlate;
pub mod demo;
pub mod echo;
pub mod events;
pub mod existing;
pub mod kernel_hooks;
pub mod loader;
pub mod packet;
pub mod pcap;
pub mod pipeline;
pub mod preflight;
pub mod render;
pub mod reorder;
pub mod tiers;
pub mod tracefs;
