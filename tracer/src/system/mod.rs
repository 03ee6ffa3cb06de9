//! Facts about the machine, read before anything is loaded: privileges, the open-file limit,
//! the kernel's BTF and tracefs, which probe mechanisms the kernel offers, the cgroup2 mount, and the TCP sockets
//! already open.

pub mod btf;
pub mod cgroup;
pub mod command;
pub mod features;
pub mod hz;
pub mod limits;
pub mod netns;
pub mod privileges;
pub mod sockets;
pub mod tracefs;
