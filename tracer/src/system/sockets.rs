//! TCP sockets that were open before the tracer started, found in /proc, so that their
//! syscalls and the connections their listeners accept are traced too.

use std::collections::HashMap;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A TCP socket held by a traced process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Existing {
    /// Owner process.
    pub pid: u32,
    /// Owner's command name.
    pub comm: String,
    /// The fd in the owner.
    pub fd: i32,
    /// Local address.
    pub laddr: IpAddr,
    /// Local port.
    pub lport: u16,
    /// Remote port (0 for a listener).
    pub rport: u16,
    /// Whether it is listening.
    pub listening: bool,
}

/// One row of `/proc/net/tcp{,6}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row {
    /// Local address.
    pub laddr: IpAddr,
    /// Local port.
    pub lport: u16,
    /// Remote port (0 for a listener).
    pub rport: u16,
    /// In state LISTEN.
    pub listening: bool,
}

/// Every TCP socket by inode, from `/proc/net/tcp{,6}` text.
pub fn parse_proc_net_tcp(text: &str, out: &mut HashMap<u64, Row>) {
    for line in text.lines().skip(1) {
        // sl local rem st tx:rx tr:tm retrnsmt uid timeout inode ...
        let mut cols = line.split_whitespace();
        let (Some(_), Some(local), Some(remote), Some(state)) =
            (cols.next(), cols.next(), cols.next(), cols.next())
        else {
            continue;
        };
        // No fd holds a socket without an inode (TIME_WAIT, a request): skipped before any
        // other parsing, as a host after a burst of connections has tens of thousands.
        let Some(inode) = cols.nth(5).and_then(|c| c.parse::<u64>().ok()) else {
            continue;
        };
        if inode == 0 {
            continue;
        }
        let port = |c: &str| {
            c.rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok())
        };
        let (Some(lport), Some(rport), Some(laddr)) = (
            port(local),
            port(remote),
            local.split(':').next().and_then(proc_addr),
        ) else {
            continue;
        };
        out.insert(
            inode,
            Row {
                laddr,
                lport,
                rport,
                listening: state == "0A",
            },
        );
    }
}

/// An address as /proc prints it: hex of the bytes in memory, 32-bit word by word in host
/// order.
fn proc_addr(hex: &str) -> Option<IpAddr> {
    let words: Vec<u32> = (0..hex.len() / 8)
        .map(|i| u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok())
        .collect::<Option<_>>()?;
    match words.as_slice() {
        [w] => Some(IpAddr::V4(Ipv4Addr::from(w.to_ne_bytes()))),
        [a, b, c, d] => {
            let mut bytes = [0u8; 16];
            for (i, w) in [a, b, c, d].into_iter().enumerate() {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
            }
            Some(IpAddr::V6(Ipv6Addr::from(bytes)))
        }
        _ => None,
    }
}

/// Every TCP socket of the network namespace `/proc/<proc_dir>` is in, by inode.
fn tcp_sockets_of(proc_dir: &str) -> HashMap<u64, Row> {
    let mut tcp = HashMap::new();
    for file in ["tcp", "tcp6"] {
        if let Ok(text) = fs::read_to_string(format!("{proc_dir}/net/{file}")) {
            parse_proc_net_tcp(&text, &mut tcp);
        }
    }
    tcp
}

/// The inode of `<proc_dir>/net/tcp`: procfs makes the entry once per network namespace, so
/// two processes show the same inode exactly when they share one.
fn tcp_entry_inode(proc_dir: &str) -> Option<u64> {
    use std::os::unix::fs::MetadataExt as _;
    fs::metadata(format!("{proc_dir}/net/tcp"))
        .ok()
        .map(|m| m.ino())
}

/// Whether something listens on TCP `port` (read from /proc, so no probe connection shows up
/// in a trace).
pub fn is_listening(port: u16) -> bool {
    is_listening_in("/proc/self", port)
}

/// Whether something listens on TCP `port` in the network namespace of `/proc/<pid>`
/// (`proc_dir`).
pub fn is_listening_in(proc_dir: &str, port: u16) -> bool {
    tcp_sockets_of(proc_dir)
        .values()
        .any(|row| row.listening && row.lport == port)
}

/// Which existing sockets [`scan`] keeps: a process by who it is, a socket by its ports.
pub trait Wanted {
    /// Whether process `pid`, named `comm`, is traced.
    fn task(&self, pid: u32, comm: &str) -> bool;
    /// Whether a socket of local port `lport` and remote port `rport` (0 for a listener) is.
    fn ports(&self, lport: u16, rport: u16) -> bool;
}

/// TCP sockets of processes that `wanted` keeps, in every network namespace (a container's
/// sockets are only in its own `/proc/<pid>/net/tcp`). A process's fds, the costly part
/// (a `readlink` each), are read only when the process is wanted and its namespace holds a
/// wanted socket: with `--port P` and nothing on P yet, none are.
pub fn scan(wanted: &impl Wanted) -> Vec<Existing> {
    // One table per namespace, read once, with whether any of its sockets is wanted.
    let mut by_netns: HashMap<String, (HashMap<u64, Row>, bool)> = HashMap::new();
    let own_netns = fs::read_link("/proc/self/ns/net")
        .map(|l| l.to_string_lossy().into_owned())
        .unwrap_or_default();
    let own_tcp_entry = tcp_entry_inode("/proc/self");
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
        // Only the newline /proc adds: a name may itself end in spaces.
        let comm = fs::read(entry.path().join("comm"))
            .map(|c| String::from_utf8_lossy(c.strip_suffix(b"\n").unwrap_or(&c)).into_owned())
            .unwrap_or_default();
        if !wanted.task(pid, &comm) {
            continue;
        }
        let (netns, own) = match fs::read_link(entry.path().join("ns/net")) {
            Ok(link) => {
                let link = link.to_string_lossy().into_owned();
                let own = link == own_netns;
                (link, own)
            }
            // A link the kernel does not let even root read (here: an init in another user
            // namespace). Its `net/tcp` entry tells namespaces apart as well: otherwise it
            // was read as a namespace of its own, from /proc/PID/net/tcp — a line per
            // TIME_WAIT socket, 250 ms of the startup after a burst of connections.
            Err(_) => {
                let inode = tcp_entry_inode(&format!("/proc/{pid}"));
                let own = inode.is_some() && inode == own_tcp_entry;
                (format!("net/tcp entry {inode:?}"), own)
            }
        };
        let (tcp, any) = by_netns.entry(netns).or_insert_with(|| {
            // The kernel's socket diagnostics when it answers (root); else /proc's table.
            let ns = format!("/proc/{pid}/ns/net");
            let tcp = super::sock_diag::tcp_sockets((!own).then_some(std::path::Path::new(&ns)))
                .unwrap_or_else(|_| tcp_sockets_of(&format!("/proc/{pid}")));
            let any = tcp.values().any(|r| wanted.ports(r.lport, r.rport));
            (tcp, any)
        });
        if !*any {
            continue;
        }
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
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
            let Some(&Row {
                laddr,
                lport,
                rport,
                listening,
            }) = tcp.get(&inode)
            else {
                continue;
            };
            let Some(fd) = fd.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if wanted.ports(lport, rport) {
                found.push(Existing {
                    pid,
                    comm: comm.clone(),
                    fd,
                    laddr,
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

    /// What the scan relies on where a namespace link cannot be read: the same `net/tcp`
    /// inode for processes of one network namespace, another for a process in a new one
    /// (made here with `unshare -n`, as root).
    #[test]
    fn the_tcp_entry_inode_tells_network_namespaces_apart() {
        use std::process::Command;
        let own = tcp_entry_inode("/proc/self").expect("our own net/tcp");
        let own_link = fs::read_link("/proc/self/ns/net").unwrap();
        let mut same = Command::new("sleep").arg("10").spawn().unwrap();
        let mut other = Command::new("unshare")
            .args(["-n", "sleep", "10"])
            .spawn()
            .unwrap();
        let other_dir = format!("/proc/{}", other.id());
        // unshare(1) leaves our namespace just before it runs sleep.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while fs::read_link(format!("{other_dir}/ns/net")).is_ok_and(|l| l == own_link) {
            assert!(
                std::time::Instant::now() < deadline,
                "unshare -n did not leave"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let same_inode = tcp_entry_inode(&format!("/proc/{}", same.id()));
        let other_inode = tcp_entry_inode(&other_dir);
        for child in [&mut same, &mut other] {
            let _ = child.kill();
            let _ = child.wait();
        }
        assert_eq!(same_inode, Some(own));
        assert!(
            other_inode.is_some_and(|i| i != own),
            "{other_inode:?} vs {own}"
        );
    }

    #[test]
    fn parses_listeners_and_connections() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:A0B2 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 20 4 30 10 -1";
        let mut out = HashMap::new();
        parse_proc_net_tcp(text, &mut out);
        assert_eq!(
            out[&4242],
            Row {
                laddr: Ipv4Addr::UNSPECIFIED.into(),
                lport: 8080,
                rport: 0,
                listening: true
            }
        );
        assert_eq!(out[&4343].laddr, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!((out[&4343].lport, out[&4343].rport), (0xA0B2, 8080));
        assert!(!out[&4343].listening);
    }

    #[test]
    fn parses_ipv6_and_mapped_addresses() {
        // As /proc/net/tcp6 shows [::1]:8080 and [::ffff:127.0.0.1]:8081 on x86.
        let text = "  sl  local_address remote_address st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 11 1 0 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12 1 0 100 0 0 10 0";
        let mut out = HashMap::new();
        parse_proc_net_tcp(text, &mut out);
        assert_eq!(out[&11].laddr, IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(
            out[&12].laddr,
            IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped())
        );
    }
}
