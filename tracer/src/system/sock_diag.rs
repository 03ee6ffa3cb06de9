//! A network namespace's TCP sockets from the kernel's socket-diagnostics netlink interface
//! (`NETLINK_SOCK_DIAG`, what `ss` reads), asked in the kernel for the states a process can
//! hold an fd on: a host just after a burst of connections has tens of thousands of TIME_WAIT
//! sockets, which `/proc/net/tcp` writes out line by line (most of the tracer's /proc scan
//! at startup) and which no fd holds.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use super::sockets::Row;

const NETLINK_SOCK_DIAG: libc::c_int = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const TCP_LISTEN: u8 = 10;
/// Every TCP state but SYN_RECV (3), TIME_WAIT (6) and NEW_SYN_RECV (12): the sockets an fd
/// may hold (bit n is state n).
const STATES: u32 = 0x0fff & !(1 << 3) & !(1 << 6) & !(1 << 12);
/// `struct nlmsghdr`.
const HEADER: usize = 16;
/// `struct inet_diag_msg`: family, state, timer, retrans, the 48-byte `inet_diag_sockid`,
/// expires, rqueue, wqueue, uid, inode.
const DIAG_MSG: usize = 72;

/// The TCP sockets (IPv4 and IPv6) of the network namespace `netns` (a `/proc/PID/ns/net`
/// path), or of the tracer's own when `None`, by inode.
pub fn tcp_sockets(netns: Option<&Path>) -> io::Result<HashMap<u64, Row>> {
    let socket = match netns {
        None => open()?,
        Some(path) => open_in(path)?,
    };
    let mut rows = HashMap::new();
    for family in [libc::AF_INET, libc::AF_INET6] {
        dump(&socket, family as u8, &mut rows)?;
    }
    Ok(rows)
}

fn open() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments; the fd is owned from here on.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A diagnostics socket in another network namespace: made by a thread that enters it (a
/// netlink socket answers for the namespace it was made in, whichever thread reads it).
/// Needs CAP_SYS_ADMIN; without it, the caller falls back to `/proc/PID/net/tcp`.
fn open_in(netns: &Path) -> io::Result<OwnedFd> {
    let ns = File::open(netns)?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns(2) on an fd we hold; it changes this short-lived thread only.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            open()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the namespace thread panicked")))
    })
}

/// Asks for every socket of `family` in [`STATES`] and adds them to `rows`.
fn dump(socket: &OwnedFd, family: u8, rows: &mut HashMap<u64, Row>) -> io::Result<()> {
    let mut request = [0u8; HEADER + 56];
    request[0..4].copy_from_slice(&((HEADER + 56) as u32).to_ne_bytes());
    request[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    request[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    // inet_diag_req_v2: family, protocol, ext, pad, states, then a zero socket id (any).
    request[HEADER] = family;
    request[HEADER + 1] = libc::IPPROTO_TCP as u8;
    request[HEADER + 4..HEADER + 8].copy_from_slice(&STATES.to_ne_bytes());
    // SAFETY: send(2) of a buffer we own, its length given.
    let sent = unsafe {
        libc::send(
            socket.as_raw_fd(),
            request.as_ptr().cast(),
            request.len(),
            0,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: recv(2) into a buffer we own, its length given.
        let n = unsafe { libc::recv(socket.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Ok(());
        }
        if parse(&buf[..n as usize], rows)? {
            return Ok(());
        }
    }
}

/// Adds the sockets of one datagram of answers to `rows`; whether the dump is over.
fn parse(mut b: &[u8], rows: &mut HashMap<u64, Row>) -> io::Result<bool> {
    while b.len() >= HEADER {
        let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let kind = u16::from_ne_bytes([b[4], b[5]]);
        if len < HEADER || len > b.len() {
            return Err(io::Error::other("a malformed sock_diag answer"));
        }
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let code = b
                    .get(HEADER..HEADER + 4)
                    .map_or(0, |c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]));
                return Err(io::Error::from_raw_os_error(-code));
            }
            _ => {
                if let Some((inode, row)) = b.get(HEADER..len).and_then(row) {
                    rows.insert(inode, row);
                }
            }
        }
        b = &b[len.next_multiple_of(4).min(b.len())..];
    }
    Ok(false)
}

/// One `inet_diag_msg` as a row, with its inode; `None` when no fd can hold it (inode 0).
fn row(m: &[u8]) -> Option<(u64, Row)> {
    if m.len() < DIAG_MSG {
        return None;
    }
    let inode = u64::from(u32::from_ne_bytes(m[68..72].try_into().ok()?));
    if inode == 0 {
        return None;
    }
    // inet_diag_sockid: sport, dport (network order), src[16], dst[16], if, cookie.
    let id = &m[4..52];
    let lport = u16::from_be_bytes([id[0], id[1]]);
    let rport = u16::from_be_bytes([id[2], id[3]]);
    let src: [u8; 16] = id[4..20].try_into().ok()?;
    let laddr = match m[0] as i32 {
        libc::AF_INET => IpAddr::V4(Ipv4Addr::new(src[0], src[1], src[2], src[3])),
        libc::AF_INET6 => IpAddr::V6(Ipv6Addr::from(src)),
        _ => return None,
    };
    Some((
        inode,
        Row {
            laddr,
            lport,
            rport,
            listening: m[1] == TCP_LISTEN,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's answer agrees with `/proc/net/tcp` on every socket an fd holds: a
    /// listener and both ends of a connection made here, IPv4 and IPv6.
    #[test]
    fn the_kernel_answers_as_proc_net_tcp_does() {
        let v4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(v4.local_addr().unwrap()).unwrap();
        let (server, _) = v4.accept().unwrap();
        let v6 = std::net::TcpListener::bind("[::1]:0").ok();
        let ours = tcp_sockets(None).expect("sock_diag");
        let mut proc = HashMap::new();
        for file in ["tcp", "tcp6"] {
            if let Ok(text) = std::fs::read_to_string(format!("/proc/self/net/{file}")) {
                super::super::sockets::parse_proc_net_tcp(&text, &mut proc);
            }
        }
        let port = |a: std::net::SocketAddr| a.port();
        let wanted = [
            Some((port(v4.local_addr().unwrap()), 0, true)),
            Some((
                port(client.local_addr().unwrap()),
                port(client.peer_addr().unwrap()),
                false,
            )),
            Some((
                port(server.local_addr().unwrap()),
                port(server.peer_addr().unwrap()),
                false,
            )),
            v6.as_ref()
                .map(|l| (port(l.local_addr().unwrap()), 0, true)),
        ];
        for (lport, rport, listening) in wanted.into_iter().flatten() {
            let find = |rows: &HashMap<u64, Row>| {
                rows.iter()
                    .find(|(_, r)| r.lport == lport && r.rport == rport && r.listening == listening)
                    .map(|(inode, r)| (*inode, *r))
            };
            let got = find(&ours);
            assert!(got.is_some(), "port {lport} missing from sock_diag");
            assert_eq!(got, find(&proc), "port {lport}");
        }
    }

    #[test]
    fn malformed_answers_are_errors_not_panics() {
        let mut rows = HashMap::new();
        assert!(parse(&[0u8; 8], &mut rows).is_ok_and(|done| !done));
        let mut bad = [0u8; HEADER];
        bad[0] = 200;
        assert!(parse(&bad, &mut rows).is_err());
        let mut done = [0u8; HEADER];
        done[0] = HEADER as u8;
        done[4..6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
        assert!(parse(&done, &mut rows).unwrap());
        let mut error = [0u8; HEADER + 4];
        error[0] = (HEADER + 4) as u8;
        error[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        error[HEADER..].copy_from_slice(&(-libc::EPERM).to_ne_bytes());
        let e = parse(&error, &mut rows).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM));
        for n in 0..DIAG_MSG {
            assert!(row(&vec![0xff; n]).is_none());
        }
    }
}
