//! The independent side of the conformance suite: what tcpdump captured, read by tshark, and
//! how it is compared with what the tracer reported.
//!
//! Segments are compared in a form both captures share whatever the interface did with
//! super-segments: control segments (SYN, FIN, RST, or no payload) one by one, exactly, at the
//! sequence number where they end; data
//! as the byte ranges each sender sent under each acknowledgement number, merged. A GSO
//! super-segment the tracer saw before segmentation and the pieces tcpdump saw after it then
//! compare equal, and a missing, extra or changed byte does not.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// One TCP segment: its ends, flags without PSH, raw seq/ack, payload length.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Seg {
    pub src: String,
    pub dst: String,
    pub flags: String,
    pub seq: u32,
    pub ack: u32,
    pub len: u32,
}

impl Seg {
    fn is_control(&self) -> bool {
        self.len == 0 || self.flags.contains(['S', 'F', 'R'])
    }
}

impl std::fmt::Display for Seg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} > {} [{}] seq {} ack {} len {}",
            self.src, self.dst, self.flags, self.seq, self.ack, self.len
        )
    }
}

/// Flag letters as the tracer's JSON spells them, PSH left out (segmentation moves it).
fn letters(syn: bool, fin: bool, rst: bool, ack: bool) -> String {
    let mut s = String::new();
    for (on, c) in [(fin, 'F'), (syn, 'S'), (rst, 'R'), (ack, 'A')] {
        if on {
            s.push(c);
        }
    }
    s
}

/// Every TCP segment of a capture file, as tshark reads it.
pub fn read_pcap(path: &Path) -> Vec<Seg> {
    let out = Command::new("tshark")
        .args(["-r"])
        .arg(path)
        .args([
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "ip.src",
            "-e",
            "ipv6.src",
            "-e",
            "tcp.srcport",
            "-e",
            "ip.dst",
            "-e",
            "ipv6.dst",
            "-e",
            "tcp.dstport",
            "-e",
            "tcp.flags",
            "-e",
            "tcp.seq_raw",
            "-e",
            "tcp.ack_raw",
            "-e",
            "tcp.len",
        ])
        .output()
        .expect("tshark is installed (cargo xtask conformance installs it)");
    assert!(
        out.status.success(),
        "tshark could not read {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split('|').collect();
            let addr = |v4: &str, v6: &str| {
                if v4.is_empty() {
                    v6.to_string()
                } else {
                    v4.to_string()
                }
            };
            let flags = u16::from_str_radix(f[6].trim_start_matches("0x"), 16).unwrap();
            Seg {
                src: format!("{}:{}", addr(f[0], f[1]), f[2]),
                dst: format!("{}:{}", addr(f[3], f[4]), f[5]),
                flags: letters(
                    flags & 2 != 0,
                    flags & 1 != 0,
                    flags & 4 != 0,
                    flags & 16 != 0,
                ),
                seq: f[7].parse().unwrap(),
                ack: if flags & 16 != 0 {
                    f[8].parse().unwrap()
                } else {
                    0
                },
                len: f[9].parse().unwrap(),
            }
        })
        .collect()
}

/// The segments the tracer's JSON shows in direction `dir` ("out": as their sender saw them
/// leave; "in": as their receiver saw them arrive).
pub fn json_segments(events: &[Value], dir: &str) -> Vec<Seg> {
    events
        .iter()
        .filter(|e| e["event"] == "tcp_segment" && e["dir"] == dir)
        .map(|e| {
            let end = |a: &str, p: &str| {
                let addr = e[a].as_str().unwrap();
                let addr = addr.strip_prefix("::ffff:").unwrap_or(addr);
                format!("{addr}:{}", e[p])
            };
            let (src, dst) = if dir == "out" {
                (end("laddr", "lport"), end("raddr", "rport"))
            } else {
                (end("raddr", "rport"), end("laddr", "lport"))
            };
            let f = e["flags"].as_str().unwrap();
            Seg {
                src,
                dst,
                flags: letters(
                    f.contains('S'),
                    f.contains('F'),
                    f.contains('R'),
                    f.contains('A'),
                ),
                seq: e["seq"].as_u64().unwrap() as u32,
                ack: if f.contains('A') {
                    e["ack"].as_u64().unwrap() as u32
                } else {
                    0
                },
                len: e["len"].as_u64().unwrap() as u32,
            }
        })
        .collect()
}

/// A capture in comparable form: control segments, and data as merged byte ranges per
/// (sender, receiver, ack).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Shape {
    pub control: Vec<Seg>,
    pub data: BTreeMap<(String, String, u32), Vec<(u64, u64)>>,
}

/// Puts `segs` in comparable form. Sequence numbers are unwrapped per sender from its first
/// segment, so ranges merge across a wrap.
pub fn shape(segs: &[Seg]) -> Shape {
    let mut s = Shape::default();
    let mut base: BTreeMap<String, u32> = BTreeMap::new();
    for seg in segs {
        if seg.is_control() {
            // A FIN comes after the payload: where it sits is the segment's end, whichever
            // piece of a super-segment carries it.
            s.control.push(Seg {
                seq: seg.seq.wrapping_add(seg.len),
                len: 0,
                ..seg.clone()
            });
        }
        if seg.len > 0 {
            let b = *base.entry(seg.src.clone()).or_insert(seg.seq);
            let start = u64::from(seg.seq.wrapping_sub(b));
            s.data
                .entry((seg.src.clone(), seg.dst.clone(), seg.ack))
                .or_default()
                .push((start, start + u64::from(seg.len)));
        }
    }
    s.control.sort();
    for ranges in s.data.values_mut() {
        ranges.sort();
        let mut merged: Vec<(u64, u64)> = Vec::new();
        for &(a, b) in ranges.iter() {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        *ranges = merged;
    }
    s
}

/// Every difference between what tcpdump saw (`expected`) and what the tracer reported
/// (`got`), one line each: `missing` / `extra` with the segment.
pub fn differences(expected: &[Seg], got: &[Seg]) -> Vec<String> {
    let (e, g) = (shape(expected), shape(got));
    let mut out = Vec::new();
    let mut rest = g.control.clone();
    for seg in &e.control {
        match rest.iter().position(|x| x == seg) {
            Some(i) => {
                rest.remove(i);
            }
            None => out.push(format!("missing  {seg}")),
        }
    }
    out.extend(rest.iter().map(|seg| format!("extra    {seg}")));
    for (key, ranges) in &e.data {
        let ours = g.data.get(key).cloned().unwrap_or_default();
        if &ours != ranges {
            out.push(format!(
                "data {} > {} ack {}: tcpdump {:?}, tracer {:?}",
                key.0, key.1, key.2, ranges, ours
            ));
        }
    }
    for key in g.data.keys().filter(|k| !e.data.contains_key(*k)) {
        out.push(format!(
            "data {} > {} ack {}: tracer only {:?}",
            key.0, key.1, key.2, g.data[key]
        ));
    }
    out
}

/// The distinct payload bytes tcpdump saw from port `src_port` to `dst_port`: a segment sent
/// twice (a retransmission, a loss probe) counts once, as the receiving application reads it.
pub fn payload_bytes(segs: &[Seg], src_port: u16, dst_port: u16) -> u64 {
    let way: Vec<Seg> = segs
        .iter()
        .filter(|s| {
            s.src.ends_with(&format!(":{src_port}")) && s.dst.ends_with(&format!(":{dst_port}"))
        })
        .map(|s| Seg {
            ack: 0,
            ..s.clone()
        })
        .collect();
    shape(&way)
        .data
        .values()
        .flatten()
        .map(|(a, b)| b - a)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(flags: &str, seq: u32, len: u32) -> Seg {
        Seg {
            src: "a:1".into(),
            dst: "b:2".into(),
            flags: flags.into(),
            seq,
            ack: 7,
            len,
        }
    }

    #[test]
    fn a_super_segment_equals_its_pieces_and_a_lost_byte_does_not() {
        let pieces = [seg("S", 99, 0), seg("A", 100, 10), seg("A", 110, 10)];
        let whole = [seg("S", 99, 0), seg("A", 100, 20)];
        assert!(differences(&pieces, &whole).is_empty());
        let short = [seg("S", 99, 0), seg("A", 100, 19)];
        assert_eq!(differences(&pieces, &short).len(), 1);
        let no_syn = [seg("A", 100, 20)];
        assert_eq!(
            differences(&pieces, &no_syn),
            vec!["missing  a:1 > b:2 [S] seq 99 ack 7 len 0"]
        );
    }
}

/// The syscalls `tracer` traces, as strace's `-e trace=` names them.
pub const TRACED_SYSCALLS: &str = "socket,bind,listen,accept,accept4,connect,read,write,readv,\
writev,sendto,recvfrom,sendmsg,recvmsg,shutdown,close,sendfile,splice,sendmmsg,recvmmsg,dup,dup2,\
dup3,fcntl,setsockopt,getsockopt";

/// A syscall as both sides name it: its name, its fd, and what it returned — a number, or
/// the errno's name when it failed.
pub type Call = (String, i64, String);

/// One line of `strace -f -ttt -T -o FILE`, joined when another thread split it.
struct StraceLine {
    tid: String,
    /// When the call returned (seconds since the epoch).
    returned: f64,
    name: String,
    args: String,
    ret: Option<String>,
}

/// Reads `strace -f -ttt -T` output into whole calls, in the order they returned.
fn strace_lines(text: &str) -> Vec<StraceLine> {
    use std::collections::HashMap;
    let mut pending: HashMap<String, (String, String)> = HashMap::new();
    let mut lines = Vec::new();
    for line in text.lines() {
        // strace pads a short pid to a column: `630   1795731234.770203 accept4(...`.
        let Some((tid, rest)) = line.trim().split_once(char::is_whitespace) else {
            continue;
        };
        let Some((ts, rest)) = rest.trim_start().split_once(char::is_whitespace) else {
            continue;
        };
        let Ok(ts) = ts.parse::<f64>() else { continue };
        let rest = rest.trim_start();
        let (whole, entered_here) = if let Some(start) = rest.strip_suffix("<unfinished ...>") {
            let (name, args) = start.split_once('(').unwrap_or((start, ""));
            pending.insert(tid.to_string(), (name.to_string(), args.to_string()));
            continue;
        } else if let Some(resumed) = rest.strip_prefix("<... ") {
            let Some((name, tail)) = resumed.split_once(" resumed>") else {
                continue;
            };
            let (_, args) = pending.remove(tid).unwrap_or_default();
            (format!("{name}({args}{tail}"), false)
        } else {
            (rest.to_string(), true)
        };
        let Some((name, args)) = whole.split_once('(') else {
            continue;
        };
        // strace pads the result to a column: `shutdown(4, SHUT_WR)      = 0 <0.000010>`.
        let Some((call, result)) = whole.rsplit_once(" = ") else {
            continue;
        };
        if !call.trim_end().ends_with(')') {
            continue;
        }
        let mut r = result.split_whitespace();
        let ret = match r.next() {
            Some("-1") => r.next().map(str::to_string),
            Some(n) if n.parse::<i64>().is_ok() => Some(n.to_string()),
            _ => None,
        };
        // A whole line is stamped when the call entered, a resumed one when it returned.
        let took = result
            .rsplit_once('<')
            .and_then(|(_, t)| t.trim_end_matches('>').parse::<f64>().ok())
            .unwrap_or(0.0);
        lines.push(StraceLine {
            tid: tid.to_string(),
            returned: if entered_here { ts + took } else { ts },
            name: name.to_string(),
            args: args.to_string(),
            ret,
        });
    }
    lines
}

/// Every call strace logged (`strace -f -ttt -T -o FILE`) that returned after `since` on a
/// listening socket — from its `socket()` to its close — or on one an `accept` returned.
/// fds are followed per file table: a thread (`CLONE_FILES`) shares its creator's, a forked
/// child gets a copy, so nginx's master and worker each close their own listener.
pub fn strace_socket_calls(text: &str, since: f64) -> Vec<Call> {
    use std::collections::HashMap;
    /// One socket from the call that made it to the last close of its fd.
    #[derive(Default)]
    struct Socket {
        wanted: bool,
        /// (position in the log, when it returned, the call)
        calls: Vec<(usize, f64, Call)>,
    }
    let mut sockets: Vec<Socket> = Vec::new();
    let mut table_of: HashMap<String, usize> = HashMap::new();
    // Each file table: fd → socket.
    let mut tables: Vec<HashMap<i64, usize>> = Vec::new();
    for (at, l) in strace_lines(text).into_iter().enumerate() {
        let Some(ret) = l.ret else { continue };
        // `fcntl(F_GETFL)` returns flags, which strace writes in hex.
        let ret = match ret.strip_prefix("0x") {
            Some(hex) => i64::from_str_radix(hex, 16).map_or(ret.clone(), |n| n.to_string()),
            None => ret,
        };
        let t = *table_of.entry(l.tid.clone()).or_insert_with(|| {
            tables.push(HashMap::new());
            tables.len() - 1
        });
        if matches!(l.name.as_str(), "clone" | "clone3" | "fork" | "vfork") {
            if ret.parse::<i64>().is_ok_and(|child| child > 0) {
                let copy = if l.args.contains("CLONE_FILES") {
                    t
                } else {
                    tables.push(tables[t].clone());
                    tables.len() - 1
                };
                table_of.insert(ret, copy);
            }
            continue;
        }
        let new_fd = ret.parse::<i64>().ok().filter(|&fd| fd >= 0);
        if l.name == "socket" {
            if let Some(fd) = new_fd {
                sockets.push(Socket::default());
                tables[t].insert(fd, sockets.len() - 1);
                let call = (l.name, fd, ret);
                sockets
                    .last_mut()
                    .unwrap()
                    .calls
                    .push((at, l.returned, call));
            }
            continue;
        }
        let Ok(fd) = l
            .args
            .split([',', ')'])
            .next()
            .unwrap_or("")
            .trim()
            .parse::<i64>()
        else {
            continue;
        };
        let Some(&socket) = tables[t].get(&fd) else {
            continue;
        };
        match l.name.as_str() {
            "listen" if ret == "0" => sockets[socket].wanted = true,
            "accept" | "accept4" => {
                if let Some(new) = new_fd {
                    sockets.push(Socket {
                        wanted: true,
                        calls: Vec::new(),
                    });
                    tables[t].insert(new, sockets.len() - 1);
                }
            }
            "close" => {
                tables[t].remove(&fd);
            }
            // A second fd for the same socket.
            "dup" | "dup2" | "dup3" => {
                if let Some(new) = new_fd {
                    tables[t].insert(new, socket);
                }
            }
            "fcntl" if l.args.contains("F_DUPFD") => {
                if let Some(new) = new_fd {
                    tables[t].insert(new, socket);
                }
            }
            _ => {}
        }
        sockets[socket]
            .calls
            .push((at, l.returned, (l.name, fd, ret)));
    }
    let mut calls: Vec<(usize, f64, Call)> = sockets
        .into_iter()
        .filter(|s| s.wanted)
        .flat_map(|s| s.calls)
        .filter(|(_, returned, _)| *returned > since)
        .collect();
    calls.sort_by_key(|c| c.0);
    calls.into_iter().map(|(_, _, call)| call).collect()
}

#[test]
fn strace_lines_are_read_whole_and_followed_per_file_table() {
    let log = "9     0.5 socket(AF_INET, SOCK_STREAM, IPPROTO_IP) = 5 <0.000001>
9 0.6 close(5) = 0 <0.000001>
9 0.9 socket(AF_INET, SOCK_STREAM, IPPROTO_IP) = 3 <0.000001>
9 1.0 listen(3, 128) = 0 <0.000001>
9 1.6 socket(AF_INET, SOCK_STREAM, IPPROTO_IP) = 7 <0.000001>
9 1.7 connect(7, {sa_family=AF_INET}, 16) = 0 <0.000001>
9 1.0 clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|SIGCHLD) = 10 <0.000100>
10 2.0 accept4(3, {sa_family=AF_INET}, [16], SOCK_CLOEXEC) = 4 <0.000010>
10 2.0 read(4, 0xc0000ca000, 4096)       = -1 EAGAIN (Resource temporarily unavailable) <0.000005>
10 2.0 clone3({flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_THREAD}, 88) = 11 <0.000010>
11 2.1 close(4)                          = 0 <0.000001>
12 2.1 recvfrom(4,  <unfinished ...>
10 2.2 close(9)                          = 0 <0.000001>
12 2.3 <... recvfrom resumed>\"GET /\"..., 8192, 0, NULL, NULL) = 78 <0.2>
10 2.5 close(3) = 0 <0.000001>
9 2.6 close(3) = 0 <0.000001>";
    let calls: Vec<String> = strace_socket_calls(log, 1.5)
        .iter()
        .map(|c| format!("{} {} {}", c.0, c.1, c.2))
        .collect();
    assert_eq!(
        calls,
        [
            "accept4 3 4",
            "read 4 EAGAIN",
            "close 4 0",
            "close 3 0",
            "close 3 0"
        ],
        "the listen is too early; fd 4 closed by thread 11 closes it for 10 too; \
         tid 12 is a table of its own; the forked child and its parent close their own copy; \
         sockets that never listen (5, 7) are not the server's"
    );
}

/// `(syscall, fd, return value or errno)` of every completed syscall the tracer showed for
/// the processes `pids`.
pub fn traced_calls(events: &[Value], pids: &[u32]) -> Vec<Call> {
    events
        .iter()
        .filter(|e| e["layer"] == "syscall" && pids.iter().any(|&p| e["pid"] == p))
        .map(|e| {
            let ret = e["ret"].as_i64().unwrap();
            (
                e["name"].as_str().unwrap().to_string(),
                e["fd"].as_i64().unwrap(),
                if ret < 0 {
                    e["errno"].as_str().unwrap_or("?").to_string()
                } else {
                    ret.to_string()
                },
            )
        })
        .collect()
}

/// The TCP state path of the end at `end` (`addr:port`) as RFC 793 derives it from the
/// segments it sent and received, in capture order; `client` ends start in CLOSE, accepted
/// ones in LISTEN. Names as the tracer prints them; TIME_WAIT where the end closed first.
pub fn state_path(segs: &[Seg], end: &str, client: bool) -> Vec<String> {
    let mut state = if client { "CLOSE" } else { "LISTEN" };
    let mut path = vec![state.to_string()];
    let mut our_fin_acked_at = None;
    let mine = || segs.iter().filter(|s| s.src == end || s.dst == end);
    // FINs that crossed: this end's FIN does not acknowledge the peer's, so it left before the
    // peer's arrived — whatever order a capture elsewhere (the other end's veth) saw them in.
    let our_fin = mine().find(|s| s.src == end && s.flags.contains('F'));
    let their_fin = mine().find(|s| s.dst == end && s.flags.contains('F'));
    let crossed = match (our_fin, their_fin) {
        (Some(ours), Some(theirs)) => {
            ours.ack != theirs.seq.wrapping_add(theirs.len).wrapping_add(1)
        }
        _ => false,
    };
    for seg in mine() {
        let out = seg.src == end;
        let (syn, fin, rst, ack) = (
            seg.flags.contains('S'),
            seg.flags.contains('F'),
            seg.flags.contains('R'),
            seg.flags.contains('A'),
        );
        if out && fin {
            our_fin_acked_at = Some(seg.seq.wrapping_add(seg.len).wrapping_add(1));
        }
        let acks_our_fin = !out && ack && our_fin_acked_at == Some(seg.ack);
        let next: &[&'static str] = if rst && !matches!(state, "CLOSE" | "TIME_WAIT") {
            &["CLOSE"]
        } else {
            match state {
                "CLOSE" if out && syn => &["SYN_SENT"],
                "LISTEN" if !out && syn => &["SYN_RECV"],
                "SYN_SENT" if !out && syn && ack => &["ESTABLISHED"],
                "SYN_RECV" if !out && ack && !syn => &["ESTABLISHED"],
                "ESTABLISHED" if out && fin => &["FIN_WAIT1"],
                "ESTABLISHED" if !out && fin && crossed => &["FIN_WAIT1", "CLOSING"],
                "ESTABLISHED" if !out && fin => &["CLOSE_WAIT"],
                "CLOSE_WAIT" if out && fin => &["LAST_ACK"],
                "LAST_ACK" if acks_our_fin => &["CLOSE"],
                "FIN_WAIT1" if acks_our_fin && fin => &["FIN_WAIT2", "TIME_WAIT"],
                "FIN_WAIT1" if acks_our_fin => &["FIN_WAIT2"],
                "FIN_WAIT1" if !out && fin => &["CLOSING"],
                "FIN_WAIT2" if !out && fin => &["TIME_WAIT"],
                "CLOSING" if acks_our_fin => &["TIME_WAIT"],
                _ => &[],
            }
        };
        for &n in next {
            state = n;
            path.push(n.to_string());
        }
    }
    path
}

/// A control segment (no payload) for the state-path tests.
#[cfg(test)]
fn control(src: &str, dst: &str, flags: &str, seq: u32, ack: u32) -> Seg {
    Seg {
        src: src.into(),
        dst: dst.into(),
        flags: flags.into(),
        seq,
        ack,
        len: 0,
    }
}

/// A capture on the server's side sees the server's FIN before the client's, but the client's
/// FIN does not acknowledge the server's: it was sent first, and the client closed
/// simultaneously (FIN_WAIT1, CLOSING), as its kernel reports.
#[test]
fn fins_that_crossed_are_a_simultaneous_close_wherever_captured() {
    let (c, v) = ("c:1", "s:2");
    let segs = [
        control(c, v, "S", 10, 0),
        control(v, c, "SA", 50, 11),
        control(c, v, "A", 11, 51),
        control(v, c, "FA", 51, 11),
        control(c, v, "FA", 11, 51),
        control(v, c, "A", 52, 12),
        control(c, v, "A", 12, 52),
    ];
    let both = [
        "CLOSE",
        "SYN_SENT",
        "ESTABLISHED",
        "FIN_WAIT1",
        "CLOSING",
        "TIME_WAIT",
    ];
    assert_eq!(state_path(&segs, c, true), both);
    assert_eq!(state_path(&segs, v, false)[3..], both[3..]);
}

#[test]
fn derives_both_ends_of_a_textbook_close() {
    let (c, v) = ("c:1", "s:2");
    let segs = [
        control(c, v, "S", 10, 0),
        control(v, c, "SA", 50, 11),
        control(c, v, "A", 11, 51),
        control(v, c, "FA", 51, 11),
        control(c, v, "A", 11, 52),
        control(c, v, "FA", 11, 52),
        control(v, c, "A", 52, 12),
    ];
    assert_eq!(
        state_path(&segs, c, true),
        [
            "CLOSE",
            "SYN_SENT",
            "ESTABLISHED",
            "CLOSE_WAIT",
            "LAST_ACK",
            "CLOSE"
        ]
    );
    assert_eq!(
        state_path(&segs, v, false),
        [
            "LISTEN",
            "SYN_RECV",
            "ESTABLISHED",
            "FIN_WAIT1",
            "FIN_WAIT2",
            "TIME_WAIT"
        ]
    );
}
