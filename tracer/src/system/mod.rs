//! Facts about the machine, read before anything is loaded: privileges, the open-file limit,
//! the kernel's BTF and tracefs, which probe mechanisms the kernel offers, the cgroup2 mount, the TCP sockets
//! already open, and where a traced process runs.

pub mod blocked;
pub mod btf;
pub mod cgroup;
pub mod command;
pub mod features;
pub mod hz;
pub mod limits;
pub mod memory;
pub mod netns;
pub mod place;
pub mod preemption;
pub mod privileges;
pub mod sock_diag;
pub mod sockets;
pub mod timings;
pub mod tracefs;
