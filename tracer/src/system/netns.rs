//! The network namespace `--netns` names: a path to a namespace file (`/run/netns/NAME`, as
//! `ip netns add` makes, or `/proc/PID/ns/net`) or a pid. Its identity is the namespace file's
//! inode number, what the kernel calls `ns.inum` and the programs compare.

use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Why `--netns` names no network namespace.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The file cannot be opened.
    #[error("--netns {0}: {1}")]
    Open(String, std::io::Error),
    /// The file is not a network namespace.
    #[error(
        "--netns {0}: not a network namespace (give /run/netns/NAME, /proc/PID/ns/net or a pid)"
    )]
    NotNetns(String),
}

/// `ioctl(NS_GET_NSTYPE)`: the namespace type of an nsfs file (Linux 4.11).
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// The file `arg` names: a pid's namespace, or the path itself.
fn file_of(arg: &str) -> PathBuf {
    if !arg.is_empty() && arg.bytes().all(|b| b.is_ascii_digit()) {
        PathBuf::from(format!("/proc/{arg}/ns/net"))
    } else {
        PathBuf::from(arg)
    }
}

/// The inode number of the network namespace `arg` names.
pub fn resolve(arg: &str) -> Result<u32, NetnsError> {
    let path = file_of(arg);
    let file = std::fs::File::open(&path).map_err(|e| NetnsError::Open(arg.to_string(), e))?;
    // SAFETY: NS_GET_NSTYPE takes no argument and only reads the fd we own.
    let kind = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE) };
    if kind != libc::CLONE_NEWNET {
        return Err(NetnsError::NotNetns(arg.to_string()));
    }
    let ino = file
        .metadata()
        .map_err(|e| NetnsError::Open(arg.to_string(), e))?
        .ino();
    u32::try_from(ino).map_err(|_| NetnsError::NotNetns(arg.to_string()))
}

/// The network namespace of process `pid`, if it can be read.
pub fn of_pid(pid: u32) -> Option<u32> {
    std::fs::metadata(Path::new(&format!("/proc/{pid}/ns/net")))
        .ok()
        .and_then(|m| u32::try_from(m.ino()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_or_a_path_names_a_namespace_and_other_files_do_not() {
        let mine = resolve("/proc/self/ns/net").unwrap();
        assert_eq!(resolve(&std::process::id().to_string()).unwrap(), mine);
        assert_eq!(of_pid(std::process::id()), Some(mine));
        assert!(matches!(
            resolve("/proc/self/ns/mnt"),
            Err(NetnsError::NotNetns(_))
        ));
        assert!(matches!(
            resolve("/etc/passwd"),
            Err(NetnsError::NotNetns(_))
        ));
        assert!(matches!(
            resolve("/no/such/file"),
            Err(NetnsError::Open(..))
        ));
    }
}
