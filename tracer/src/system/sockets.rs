//! TCP sockets that were open before the tracer started, found in /proc, so that their
//! syscalls and the connections their listeners accept are traced too.

use std::collections::HashMap;
use std::fs;

/// A TCP socket held by a traced process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Existing {
    /// Owner process.
    pub pid: u32,
    /// Owner's command name.
    pub comm: String,
    /// The fd in the owner.
    pub fd: i32,
    /// Local port.
    pub lport: u16,
    /// Remote port (0 for a listener).
    pub rport: u16,
    /// Whether it is listening.
    pub listening: bool,
}

/// `(local port, remote port, listening)` of every TCP socket by inode, from
/// `/proc/net/tcp{,6}` text.
pub fn parse_proc_net_tcp(text: &str, out: &mut HashMap<u64, (u16, u16, bool)>) {
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 10 {
            continue;
        }
        let port = |c: &str| {
            c.rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok())
        };
        let (Some(l), Some(r), Ok(inode)) = (port(cols[1]), port(cols[2]), cols[9].parse::<u64>())
        else {
            continue;
        };
        if inode != 0 {
            out.insert(inode, (l, r, cols[3] == "0A"));
        }
    }
}

/// Every TCP socket of this host by inode, from `/proc/net/tcp{,6}`.
fn tcp_sockets() -> HashMap<u64, (u16, u16, bool)> {
    let mut tcp = HashMap::new();
    for path in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = fs::read_to_string(path) {
            parse_proc_net_tcp(&text, &mut tcp);
        }
    }
    tcp
}

/// Whether something listens on TCP `port` (read from /proc, so no probe connection shows up
/// in a trace).
pub fn is_listening(port: u16) -> bool {
    tcp_sockets()
        .values()
        .any(|&(lport, _, listening)| listening && lport == port)
}

/// TCP sockets of processes that pass `wanted(pid, comm, lport, rport)`.
pub fn scan(wanted: impl Fn(u32, &str, u16, u16) -> bool) -> Vec<Existing> {
    let tcp = tcp_sockets();
    let mut found = Vec::new();
    let Ok(procs) = fs::read_dir("/proc") else {
        return found;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        // Only the newline /proc adds: a name may itself end in spaces.
        let comm = fs::read(entry.path().join("comm"))
            .map(|c| String::from_utf8_lossy(c.strip_suffix(b"\n").unwrap_or(&c)).into_owned())
            .unwrap_or_default();
        for fd in fds.flatten() {
            let Ok(target) = fs::read_link(fd.path()) else {
                continue;
            };
            let target = target.to_string_lossy();
            let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            let Some(&(lport, rport, listening)) = tcp.get(&inode) else {
                continue;
            };
            let Some(fd) = fd.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if wanted(pid, &comm, lport, rport) {
                found.push(Existing {
                    pid,
                    comm: comm.clone(),
                    fd,
                    lport,
                    rport,
                    listening,
                });
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listeners_and_connections() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:A0B2 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 20 4 30 10 -1";
        let mut out = HashMap::new();
        parse_proc_net_tcp(text, &mut out);
        assert_eq!(out[&4242], (8080, 0, true));
        assert_eq!(out[&4343], (0xA0B2, 8080, false));
    }
}
