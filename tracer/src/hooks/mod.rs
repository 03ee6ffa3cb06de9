//! Hooks: which programs watch what, and attaching them. [`table`] declares every hook once;
//! [`tier`] says what this kernel and `--probe-mode` allow; [`offsets`] resolves the field
//! offsets the programs read; [`attach`] holds one primitive per mechanism; [`load`] walks the
//! table; [`status`] reports what attached and why better tiers were not used.

pub mod attach;
pub mod error;
pub mod failures;
pub mod load;
pub mod misses;
mod object;
pub mod offsets;
pub mod status;
pub mod table;
pub mod tier;

pub use load::{Filter, Loaded, load};
pub use status::HookStatus;
pub use tier::ProbeMode;
