//! The human view: one block of lines per connection, each line one event with its time
//! relative to the run's first event (one clock for every connection, so that lines of two
//! connections compare), its layer, what happened and the hook it came from. When events of
//! several connections interleave, a header marks each switch.

use std::io::{self, Write};

use tracer_common::{KernelFn, SyscallOp, Via, ca_state, tcp_state};

use super::text::{
    bits_per_second, duration, endpoint, errno_name, family_name, maybe_endpoint, shutdown_how,
    socket_type, syscall_ret,
};
use super::{Line, Part, View};
use crate::correlate::{Conn, ConnId, Role, SegmentView};
use crate::decode::sockopt::{self, OptValue};
use crate::decode::{Congestion, Event, KernelCall, Kind, Syscall};
use crate::system::hz::jiffies_to_us;

/// ANSI styles, or none.
#[derive(Clone, Copy)]
struct Style {
    on: bool,
}

impl Style {
    fn paint(self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

/// Writes the timeline.
pub struct Timeline<W: Write> {
    out: W,
    style: Style,
    current: Option<ConnId>,
    /// When the first event shown happened: time zero.
    origin: Option<u64>,
    /// Whether system calls are traced: bytes the kernel moved with no syscall around them
    /// are then worth a word.
    pub syscalls: bool,
}

impl<W: Write> Timeline<W> {
    /// A timeline writing to `out`, coloured when `color`.
    pub fn new(out: W, color: bool) -> Self {
        Self {
            out,
            style: Style { on: color },
            current: None,
            origin: None,
            syscalls: true,
        }
    }

    /// Writes one event (or one part of a syscall) of connection `conn`; `seg` is a packet
    /// event's segment as that connection sees it.
    pub fn line(
        &mut self,
        ev: &Event,
        conn: &Conn,
        part: Part,
        seg: Option<&SegmentView>,
        timewait: bool,
    ) -> io::Result<()> {
        if self.current != Some(conn.id) {
            self.current = Some(conn.id);
            writeln!(self.out, "{}", self.style.paint("1", &header(conn)))?;
        }
        let at = match part {
            Part::Return => ev.end_ns(),
            _ => ev.ts_ns,
        };
        let origin = *self.origin.get_or_insert(ev.ts_ns.min(conn.first_ns));
        let rel = at.saturating_sub(origin);
        let layer = ev.layer();
        let color = match layer {
            "syscall" => "36",
            "kernel" => "35",
            "packet" => "32",
            "congestion" => "31",
            _ => "33",
        };
        let (text, tail) = match seg {
            Some(view) => (packet(ev, view), String::new()),
            None => describe(ev, conn, part, timewait, self.syscalls),
        };
        let hook = match &ev.kind {
            Kind::Syscall(s) => match crate::hooks::table::syscall_function(s.op) {
                Some(function) if ev.via == Via::SyscallFunctions => format!("fentry:{function}"),
                _ => format!("syscalls:sys_*_{}", s.op.tracepoint()),
            },
            _ => ev.hook.to_string(),
        };
        let tail = if tail.is_empty() {
            String::new()
        } else {
            format!("{tail}  ")
        };
        writeln!(
            self.out,
            "  {:>10}  {}  {:<52} {}{}",
            format!(
                "+{}.{:06}",
                rel / 1_000_000_000,
                (rel % 1_000_000_000) / 1_000
            ),
            self.style.paint(color, &format!("{layer:<7}")),
            text,
            tail,
            self.style.paint("2", &format!("via {hook}")),
        )
    }
}

impl<W: Write> View for Timeline<W> {
    fn event(&mut self, line: &Line) -> io::Result<()> {
        for (conn, seg) in line.ends() {
            self.line(line.event, conn, line.part, seg, line.timewait)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// `conn #2  echo-client[4211]  client  127.0.0.1:41234 -> 127.0.0.1:8080`
pub fn header(conn: &Conn) -> String {
    let who = if conn.pid == 0 {
        "?".to_string()
    } else {
        format!("{}[{}]", super::text::visible(&conn.comm), conn.pid)
    };
    let ends = match conn.role {
        Role::Listener => maybe_endpoint(conn.local.as_ref()),
        _ if conn.local.is_none() && conn.remote.is_none() => "(not connected)".into(),
        _ => format!(
            "{} -> {}",
            maybe_endpoint(conn.local.as_ref()),
            maybe_endpoint(conn.remote.as_ref())
        ),
    };
    format!(
        "conn #{}  {who}  {}  {ends}{}",
        conn.id,
        conn.role.name(),
        place(conn)
    )
}

/// `  netns 4026532312  cgroup /system.slice/nginx.service`: where the owner runs, when not
/// where the tracer does.
pub fn place(conn: &Conn) -> String {
    let mut s = String::new();
    if let Some(p) = &conn.place {
        if let Some(netns) = p.netns {
            s.push_str(&format!("  netns {netns}"));
        }
        if let Some(cgroup) = &p.cgroup {
            s.push_str(&format!("  cgroup {}", super::text::visible(cgroup)));
        }
    }
    s
}

/// A segment as tcpdump prints it, seen from one end: `out 41234 > 8080 [S] seq 0 win 65495
/// <mss 65495,sackOK,TS val 1 ecr 0,nop,wscale 7>, length 0`.
pub fn packet(ev: &Event, view: &SegmentView) -> String {
    let Some(captured) = ev.captured() else {
        return "packet".into();
    };
    let seg = match &captured.segment {
        Ok(seg) => seg,
        Err(e) => return format!("undecodable segment: {e}"),
    };
    let tcp = &seg.tcp;
    let mut s = format!(
        "{} {} > {} [{}] seq {}",
        if view.out { "out" } else { "in " },
        tcp.sport,
        tcp.dport,
        tcp.tcpdump_flags(),
        view.rel_seq
    );
    if seg.payload_len > 0 {
        s.push_str(&format!(
            ":{}",
            view.rel_seq.wrapping_add(seg.payload_len as u32)
        ));
    }
    if let Some(ack) = view.rel_ack {
        s.push_str(&format!(" ack {ack}"));
    }
    s.push_str(&format!(" win {}", view.window));
    if !tcp.options.is_empty() {
        // SACK edges in the acknowledged side's numbering, like the ack.
        let base = view.rel_ack.map_or(0, |rel| tcp.ack.wrapping_sub(rel));
        s.push_str(&format!(" <{}>", tcp.options_text_relative(base)));
    }
    s.push_str(&format!(", length {}", seg.payload_len));
    if view.dup_ack > 0 {
        s.push_str(&format!(" [dup ack #{}]", view.dup_ack));
    }
    if view.zero_window {
        s.push_str(" [zero window]");
    }
    if view.window_opened {
        s.push_str(" [window opened]");
    }
    if view.window_full {
        s.push_str(" [window full]");
    }
    if captured.gso_size > 0 && seg.payload_len > usize::from(captured.gso_size) {
        // One super-segment: the wire carries it as gso_segs segments of gso_size bytes.
        s.push_str(&format!(
            " (gso {} x {})",
            seg.payload_len.div_ceil(usize::from(captured.gso_size)),
            captured.gso_size
        ));
    }
    s
}

/// The event's text and a right-hand note (duration); `syscalls`: whether they are traced.
fn describe(
    ev: &Event,
    conn: &Conn,
    part: Part,
    timewait: bool,
    syscalls: bool,
) -> (String, String) {
    match &ev.kind {
        Kind::Congestion(c) => (congestion(c, conn), String::new()),
        Kind::Syscall(call) => syscall(ev, call, part),
        Kind::Kernel(call) => (kernel(ev, call, syscalls), String::new()),
        Kind::State(change) => {
            let to = if timewait {
                tcp_state::TIME_WAIT
            } else {
                change.to
            };
            let mut s = format!(
                "{} -> {}",
                tcp_state::name(change.from),
                tcp_state::name(to)
            );
            if timewait {
                s.push_str("  (kernel: -> CLOSE, timewait socket takes over)");
            }
            (s, String::new())
        }
        Kind::Packet(_) => ("packet".into(), String::new()),
    }
}

fn syscall(ev: &Event, call: &Syscall, part: Part) -> (String, String) {
    let op = call.op;
    let name = op.name();
    let ret_value = call.ret();
    let fd = ev.fd;
    let call_text = match op {
        SyscallOp::Socket => format!(
            "socket({}, {})",
            family_name(ev.family),
            socket_type(call.args[0])
        ),
        SyscallOp::Bind => format!("bind(fd={fd}, {})", maybe_endpoint(ev.local.as_ref())),
        SyscallOp::Connect => format!("connect(fd={fd}, {})", maybe_endpoint(ev.remote.as_ref())),
        SyscallOp::Listen => format!("listen(fd={fd}, backlog={})", call.args[0]),
        SyscallOp::Shutdown => format!("shutdown(fd={fd}, {})", shutdown_how(call.args[0])),
        SyscallOp::Accept | SyscallOp::Accept4 | SyscallOp::Close => format!("{name}(fd={fd})"),
        SyscallOp::Splice if op.sends(&call.args) => {
            format!("{name}(pipe -> fd={fd}, {})", call.args[0])
        }
        SyscallOp::Splice => format!("{name}(fd={fd} -> pipe, {})", call.args[0]),
        SyscallOp::Sendfile => format!("{name}(fd={fd}, file, {})", call.args[0]),
        SyscallOp::Sendmmsg | SyscallOp::Recvmmsg => {
            format!("{name}(fd={fd}, {} messages)", call.args[0])
        }
        SyscallOp::Dup => format!("{name}(fd={fd})"),
        SyscallOp::Dup2 => format!("{name}(fd={fd}, {})", call.args[0] as i32),
        SyscallOp::Dup3 => format!(
            "{name}(fd={fd}, {}, {})",
            call.args[0] as i32,
            if call.args[1] & libc::O_CLOEXEC as u64 != 0 {
                "O_CLOEXEC"
            } else {
                "0"
            }
        ),
        SyscallOp::Fcntl => {
            let cmd = sockopt::fcntl_command(call.args[0]);
            match call.args[0] {
                4 => format!(
                    "{name}(fd={fd}, {cmd}, {})",
                    sockopt::open_flags(call.args[1])
                ),
                c if sockopt::fcntl_has_arg(c) => {
                    format!("{name}(fd={fd}, {cmd}, {})", call.args[1])
                }
                _ => format!("{name}(fd={fd}, {cmd})"),
            }
        }
        SyscallOp::Setsockopt | SyscallOp::Getsockopt => {
            let o = sockopt::decode(op, &call.args, ret_value);
            match op {
                SyscallOp::Setsockopt => format!(
                    "{name}(fd={fd}, {}, {}, {})",
                    o.level,
                    o.name,
                    opt_value(&o.value)
                ),
                _ => format!("{name}(fd={fd}, {}, {})", o.level, o.name),
            }
        }
        _ => format!("{name}(fd={fd}, {})", call.args[0]),
    };
    let text = call_text;
    let ret = match op {
        _ if ret_value < 0 => syscall_ret(ret_value),
        _ if op.sends(&call.args) || op.receives(&call.args) => format!("{ret_value} bytes"),
        _ if op.counts_messages() => format!("{ret_value} messages"),
        SyscallOp::Fcntl if call.args[0] == 3 => {
            format!("{ret_value:#x} ({})", sockopt::open_flags(ret_value as u64))
        }
        SyscallOp::Getsockopt => {
            let o = sockopt::decode(op, &call.args, ret_value);
            format!("{ret_value}  [{}]", opt_value(&o.value))
        }
        SyscallOp::Accept | SyscallOp::Accept4 => match ev.remote.as_ref() {
            Some(peer) => format!("{ret_value}  from {}", endpoint(peer)),
            None => ret_value.to_string(),
        },
        _ => ret_value.to_string(),
    };
    // A late call's entry was made up at its return (the kernel skipped its entry program,
    // README "Hooks and tiers"): it has no duration to show.
    let took = if call.exit.is_some_and(|e| e.late) {
        "late".to_string()
    } else {
        duration(call.duration_ns())
    };
    match part {
        Part::Enter => (format!("{text} ..."), String::new()),
        Part::Return => (format!("{name} = {ret}"), took),
        Part::Whole => (format!("{text} = {ret}"), took),
    }
}

/// A socket option's value as strace shows it: `1`, `{l_onoff=1, l_linger=5}`, `"cubic"`;
/// `SO_ERROR`'s as its errno name (`0` for none).
fn opt_value(v: &OptValue) -> String {
    match v {
        OptValue::Int(n) => n.to_string(),
        OptValue::Linger { onoff, linger } => format!("{{l_onoff={onoff}, l_linger={linger}}}"),
        OptValue::Name(name) => format!("{name:?}"),
        OptValue::Error(0) => "0".into(),
        OptValue::Error(e) => {
            errno_name(i64::from(*e)).map_or_else(|| e.to_string(), str::to_string)
        }
        OptValue::None => "...".into(),
    }
}

/// `fast retransmit seq 14481:15929 (1448 B) in Recovery · cwnd 7 ssthresh 7 srtt 0.41 ms ...`
fn congestion(c: &Congestion, conn: &Conn) -> String {
    if let (false, Some((kind, seq, _))) = (c.has_numbers(), c.retransmit) {
        // `SYN-ACK retransmit  seq 0:1 (the handshake's last ACK has not come)`
        let rel = conn.isn[0].map_or(seq, |isn| seq.wrapping_sub(isn));
        return format!(
            "{}  seq {rel}:{} (the handshake's last ACK has not come)",
            kind.name(),
            rel.wrapping_add(1)
        );
    }
    let head = match c.retransmit {
        Some((kind, seq, end)) => {
            let rel = conn.isn[0].map_or(seq, |isn| seq.wrapping_sub(isn));
            let mut s = format!(
                "{}  seq {rel}:{} ({} B) in {}",
                kind.name(),
                rel.wrapping_add(end.wrapping_sub(seq)),
                end.wrapping_sub(seq),
                ca_state::name(c.ca_state),
            );
            if let Some(err) = c.err {
                s.push_str(&format!(", not sent: {}", syscall_ret(i64::from(err))));
            }
            s
        }
        None if c.func == KernelFn::TcpSetCaState => {
            format!("congestion state -> {}", ca_state::name(c.ca_state))
        }
        None if c.func == KernelFn::TcpRcvSpaceAdjust => {
            // `receive buffer 131072 -> 262144 B (65483 B read in the last RTT)`: autotuning
            // sizes it by that; a shrink is memory pressure (or SO_RCVBUF, shown before it).
            return format!(
                "receive buffer {} -> {} B ({} B read in the last RTT)",
                c.rcvbuf_before.unwrap_or(0),
                c.rcvbuf,
                c.rcv_space
            );
        }
        None => format!("ACK in {}", ca_state::name(c.ca_state)),
    };
    let ms = |us: u64| format!("{}.{:02} ms", us / 1000, (us % 1000) / 10);
    let mut s = format!("{head} · cwnd {}", c.cwnd);
    match c.ssthresh {
        Some(t) => s.push_str(&format!(" ssthresh {t}")),
        None => s.push_str(" ssthresh -"),
    }
    if let Some(srtt) = c.srtt_us {
        s.push_str(&format!(
            " srtt {} rttvar {}",
            ms(u64::from(srtt)),
            ms(u64::from(c.rttvar_us))
        ));
    }
    if let Some(rto) = jiffies_to_us(c.rto_jiffies) {
        s.push_str(&format!(" rto {}", ms(rto)));
    }
    s.push_str(&format!(" in flight {}", c.packets_out));
    if c.retrans_out > 0 {
        s.push_str(&format!(" ({} resent)", c.retrans_out));
    }
    s.push_str(&format!(" wnd {}/{}", c.snd_wnd, c.rcv_wnd));
    if let Some(rate) = c.delivery_rate {
        s.push_str(&format!(" rate {}", bits_per_second(rate)));
    }
    s
}

fn kernel(ev: &Event, call: &KernelCall, syscalls: bool) -> String {
    let func = call.func;
    let name = func.name();
    match (func, call.bytes, call.isn) {
        (_, Some(bytes), _) if bytes >= 0 && ev.fd < 0 && syscalls => {
            format!("{name}  {bytes} bytes (no traced syscall: io_uring or the kernel itself)")
        }
        (_, Some(bytes), _) if bytes >= 0 => format!("{name}  {bytes} bytes"),
        (_, Some(bytes), _) => format!("{name}  {}", syscall_ret(bytes)),
        (KernelFn::TcpConnect, _, Some(isn)) => format!(
            "{name}  {} -> {}  isn {isn}",
            maybe_endpoint(ev.local.as_ref()),
            maybe_endpoint(ev.remote.as_ref()),
        ),
        (KernelFn::TcpConnect, _, None) => format!(
            "{name}  {} -> {}",
            maybe_endpoint(ev.local.as_ref()),
            maybe_endpoint(ev.remote.as_ref())
        ),
        (KernelFn::InetCskAccept, _, _) => format!(
            "{name}  child {} <- {} ready",
            maybe_endpoint(ev.local.as_ref()),
            maybe_endpoint(ev.remote.as_ref())
        ),
        (KernelFn::TcpSetState, _, _) => name.to_string(),
        _ => format!("{name}  {}", func.meaning()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::correlate::Correlator;
    use crate::decode::Exit;
    use tracer_common::Via;

    #[test]
    fn renders_header_and_a_paired_syscall() {
        let mut c = Correlator::new();
        let call = Syscall {
            op: SyscallOp::Connect,
            args: [0; 2],
            exit: Some(Exit {
                ret: -111,
                duration_ns: 24_000,
                late: false,
            }),
        };
        let mut connect = Event::blank(Kind::Syscall(call), Via::Syscalls, 1_000);
        connect.pid = 4211;
        connect.tid = 4211;
        connect.comm = "echo-client".into();
        connect.fd = 3;
        connect.remote = Some(crate::correlate::endpoint(
            "127.0.0.1".parse().unwrap(),
            8080,
        ));
        let mut id = 0;
        c.observe(connect.clone(), &mut |x| {
            id = x.ends.iter().next().unwrap().conn
        });
        let mut out = Vec::new();
        let mut t = Timeline::new(&mut out, false);
        t.line(&connect, c.get(id).unwrap(), Part::Whole, None, false)
            .unwrap();
        t.line(&connect, c.get(id).unwrap(), Part::Return, None, false)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "conn #1  echo-client[4211]  client  ? -> 127.0.0.1:8080"
        );
        assert!(
            lines[1].starts_with(
                "   +0.000000  syscall  connect(fd=3, 127.0.0.1:8080) = -1 ECONNREFUSED"
            ),
            "{}",
            lines[1]
        );
        assert!(
            lines[1].ends_with("24 µs  via syscalls:sys_*_connect"),
            "{}",
            lines[1]
        );
        assert!(
            lines[2].starts_with("   +0.000024  syscall  connect = -1 ECONNREFUSED"),
            "{}",
            lines[2]
        );
    }

    /// A late call (its entry made up at the return) says so where the duration goes.
    #[test]
    fn a_late_call_shows_late_instead_of_a_duration() {
        let mut c = Correlator::new();
        let call = Syscall {
            op: SyscallOp::Write,
            args: [5, 0],
            exit: Some(Exit {
                ret: 5,
                duration_ns: 70,
                late: true,
            }),
        };
        let mut e = Event::blank(Kind::Syscall(call), Via::SyscallFunctions, 1_000);
        e.pid = 7;
        e.fd = 3;
        let mut id = 0;
        c.observe(e.clone(), &mut |x| id = x.ends.iter().next().unwrap().conn);
        let mut out = Vec::new();
        let mut t = Timeline::new(&mut out, false);
        t.line(&e, c.get(id).unwrap(), Part::Whole, None, false)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        let line = text.lines().find(|l| l.contains("write(")).unwrap();
        assert!(line.contains("= 5 bytes"), "{line}");
        assert!(
            line.ends_with(" late  via fentry:__x64_sys_write"),
            "{line}"
        );
        assert!(!line.contains("ns ") && !line.contains("µs"), "{line}");
    }

    /// Two connections whose events interleave: their lines read on one clock, so the
    /// server's read comes after the client's write in time as on screen.
    #[test]
    fn every_connection_reads_the_same_clock() {
        let mut c = Correlator::new();
        let write = |fd: i32, ts: u64, pid: u32| {
            let call = Syscall {
                op: SyscallOp::Write,
                args: [5, 0],
                exit: Some(Exit {
                    ret: 5,
                    duration_ns: 1_000,
                    late: false,
                }),
            };
            let mut e = Event::blank(Kind::Syscall(call), Via::Syscalls, ts);
            e.pid = pid;
            e.fd = fd;
            e
        };
        let a = write(3, 1_000_000, 1);
        let b = write(4, 1_500_000, 2);
        let mut ids = Vec::new();
        for e in [&a, &b] {
            c.observe(e.clone(), &mut |x| {
                ids.push(x.ends.iter().next().unwrap().conn)
            });
        }
        let mut out = Vec::new();
        let mut t = Timeline::new(&mut out, false);
        t.line(&a, c.get(ids[0]).unwrap(), Part::Whole, None, false)
            .unwrap();
        t.line(&b, c.get(ids[1]).unwrap(), Part::Whole, None, false)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        let times: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("   +"))
            .map(|l| l.split_whitespace().next().unwrap())
            .collect();
        assert_eq!(times, ["+0.000000", "+0.000500"], "{text}");
    }

    #[test]
    fn sack_edges_are_relative_like_the_ack() {
        use crate::decode::tcpip::{TcpHeader, TcpOptions};
        let mut tcp = TcpHeader::decode(&[
            0x1f, 0x90, 0xa0, 0x28, 0, 0, 0, 1, 0, 0, 0x10, 0x00, 0x50, 0x10, 0xff, 0xff, 0, 0, 0,
            0,
        ])
        .unwrap();
        // One SACK block, 5096:6096.
        tcp.options = TcpOptions::from_bytes(&[5, 10, 0, 0, 0x13, 0xe8, 0, 0, 0x17, 0xd0]).unwrap();
        // ack 4096 is relative 1001: the peer's ISN is 3095.
        assert_eq!(tcp.options_text_relative(4096 - 1001), "sack {2001:3001}");
    }
}
