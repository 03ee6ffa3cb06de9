//! tracer: an eBPF socket tracer. The data flow, one folder per stage:
//!
//! [`system`] (machine facts) → [`hooks`] (attach the programs) → ring buffer →
//! [`decode`] (typed events) → [`correlate`] (connections) → [`pipeline`] (enter/exit pairing,
//! time order) → [`render`] (timeline, JSON, summary, ladder, pcap), driven by [`app`] with the
//! options [`cli`] parsed, or by [`replay`] from a recording of a run. [`demo`] is the echo server and client the tracer shows by default.
//! A module imports only from stages before its own.

pub mod app;
pub mod cli;
pub mod correlate;
pub mod decode;
pub mod demo;
mod error_text;
pub mod hooks;
pub mod pipeline;
pub mod render;
pub mod replay;
pub mod system;
