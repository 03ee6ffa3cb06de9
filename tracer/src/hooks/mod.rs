//! Hooks: which programs watch what, and attaching them. [`table`] declares every hook once;
//! [`tier`] says what this kernel and `--probe-mode` allow; [`offsets`] resolves the field
//! offsets the programs read; [`attach`] holds one primitive per mechanism; [`load`] walks the
//! table; [`status`] reports what attached and why better tiers were not used. Hooks outside
//! the table's one-function-per-row model: [`received_fd`] (a socket passed to another process)
//! and [`ca_state`] (congestion-state changes where the kernel has no tracepoint for them).

pub mod attach;
mod ca_state;
pub mod error;
pub mod failures;
pub mod load;
mod object;
pub mod offsets;
mod received_fd;
pub mod runs;
pub mod status;
pub mod table;
pub mod tier;

pub use load::{Filter, Loaded, load};
pub use status::HookStatus;
pub use tier::{ProbeMode, SyscallMode};
