//! The human view: one block of lines per connection, each line one event with its time
//! relative to the run's first event (one clock for every connection, so that lines of two
//! connections compare), its layer, what happened and the hook it came from. When events of
//! several connections interleave, a header marks each switch.

use std::fmt::{self, Write as _};
use std::io::{self, Write};

use tracer_common::{KernelFn, SyscallOp, Via, ca_state, tcp_state};

use super::text::{
    Duration, FamilyName, MaybeEndpoint, Ret, bits_per_second, errno_name, shutdown_how,
    socket_type,
};
use super::{Line, Part, View};
use crate::correlate::{Conn, ConnId, Role, SegmentView};
use crate::decode::sockopt::{self, OptValue};
use crate::decode::{Congestion, Event, KernelCall, Kind, Syscall};
use crate::hooks::table;
use crate::system::hz::jiffies_to_us;

/// ANSI styles, or none.
#[derive(Clone, Copy)]
struct Style {
    on: bool,
}

impl Style {
    /// Writes `text` to `out`, in style `code` when styles are on.
    fn paint(self, out: &mut String, code: &str, text: impl fmt::Display) {
        let _ = if self.on {
            write!(out, "\x1b[{code}m{text}\x1b[0m")
        } else {
            write!(out, "{text}")
        };
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
    /// The lines being written, and the parts padded to a width: reused from event to event,
    /// as this runs once per event.
    lines: String,
    text: String,
    tail: String,
    at: String,
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
            lines: String::new(),
            text: String::new(),
            tail: String::new(),
            at: String::new(),
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
        let Self {
            lines,
            text,
            tail,
            at,
            style,
            ..
        } = self;
        lines.clear();
        if self.current != Some(conn.id) {
            self.current = Some(conn.id);
            style.paint(lines, "1", Header(conn));
            lines.push('\n');
        }
        let when = match part {
            Part::Return => ev.end_ns(),
            _ => ev.ts_ns,
        };
        let origin = *self.origin.get_or_insert(ev.ts_ns.min(conn.first_ns));
        let rel = when.saturating_sub(origin);
        let layer = ev.layer();
        let color = match layer {
            "syscall" => "36",
            "kernel" => "35",
            "packet" => "32",
            "congestion" => "31",
            _ => "33",
        };
        text.clear();
        tail.clear();
        match seg {
            Some(view) => packet(text, ev, view),
            None => describe(text, tail, ev, conn, part, timewait, self.syscalls),
        }
        at.clear();
        let _ = write!(
            at,
            "+{}.{:06}",
            rel / 1_000_000_000,
            (rel % 1_000_000_000) / 1_000
        );
        let _ = write!(lines, "  {:>10}  ", at.as_str());
        style.paint(lines, color, format_args!("{layer:<7}"));
        let _ = write!(lines, "  {:<52} ", text.as_str());
        if !tail.is_empty() {
            let _ = write!(lines, "{tail}  ");
        }
        match &ev.kind {
            Kind::Syscall(s) => match (
                ev.via,
                table::socket_iterator(s.op),
                table::syscall_function(s.op),
            ) {
                (Via::SocketIterators, Some(iterator), _) => {
                    style.paint(lines, "2", format_args!("via fentry:{}", iterator.function))
                }
                (Via::SyscallFunctions, _, Some(function)) => {
                    style.paint(lines, "2", format_args!("via fentry:{function}"))
                }
                _ => style.paint(
                    lines,
                    "2",
                    format_args!("via syscalls:sys_*_{}", s.op.tracepoint()),
                ),
            },
            _ => style.paint(lines, "2", format_args!("via {}", ev.hook)),
        }
        lines.push('\n');
        self.out.write_all(lines.as_bytes())
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
    Header(conn).to_string()
}

/// [`header`], written where it is formatted.
struct Header<'a>(&'a Conn);

impl fmt::Display for Header<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let conn = self.0;
        write!(f, "conn #{}  ", conn.id)?;
        if conn.pid == 0 {
            f.write_str("?")?;
        } else {
            write!(f, "{}[{}]", super::text::visible(&conn.comm), conn.pid)?;
        }
        write!(f, "  {}  ", conn.role.name())?;
        match conn.role {
            Role::Listener => write!(f, "{}", MaybeEndpoint(conn.local.as_ref()))?,
            _ if conn.local.is_none() && conn.remote.is_none() => f.write_str("(not connected)")?,
            _ => write!(
                f,
                "{} -> {}",
                MaybeEndpoint(conn.local.as_ref()),
                MaybeEndpoint(conn.remote.as_ref())
            )?,
        }
        write!(f, "{}", Place(conn))
    }
}

/// `  netns 4026532312  cgroup /system.slice/nginx.service`: where the owner runs, when not
/// where the tracer does.
pub fn place(conn: &Conn) -> String {
    Place(conn).to_string()
}

/// [`place`], written where it is formatted.
struct Place<'a>(&'a Conn);

impl fmt::Display for Place<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = &self.0.place {
            if let Some(netns) = p.netns {
                write!(f, "  netns {netns}")?;
            }
            if let Some(cgroup) = &p.cgroup {
                write!(f, "  cgroup {}", super::text::visible(cgroup))?;
            }
        }
        Ok(())
    }
}

/// A segment as tcpdump prints it, seen from one end: `out 41234 > 8080 [S] seq 0 win 65495
/// <mss 65495,sackOK,TS val 1 ecr 0,nop,wscale 7>, length 0`.
fn packet(s: &mut String, ev: &Event, view: &SegmentView) {
    let Some(captured) = ev.captured() else {
        s.push_str("packet");
        return;
    };
    let seg = match &captured.segment {
        Ok(seg) => seg,
        Err(e) => {
            let _ = write!(s, "undecodable segment: {e}");
            return;
        }
    };
    let tcp = &seg.tcp;
    let _ = write!(
        s,
        "{} {} > {} [",
        if view.out { "out" } else { "in " },
        tcp.sport,
        tcp.dport,
    );
    crate::decode::tcpip::push_tcpdump_flags(s, tcp.flags);
    let _ = write!(s, "] seq {}", view.rel_seq);
    if seg.payload_len > 0 {
        let _ = write!(s, ":{}", view.rel_seq.wrapping_add(seg.payload_len as u32));
    }
    if let Some(ack) = view.rel_ack {
        let _ = write!(s, " ack {ack}");
    }
    let _ = write!(s, " win {}", view.window);
    if !tcp.options.is_empty() {
        // SACK edges in the acknowledged side's numbering, like the ack.
        let base = view.rel_ack.map_or(0, |rel| tcp.ack.wrapping_sub(rel));
        s.push_str(" <");
        tcp.write_options_relative(s, base);
        s.push('>');
    }
    let _ = write!(s, ", length {}", seg.payload_len);
    if view.dup_ack > 0 {
        let _ = write!(s, " [dup ack #{}]", view.dup_ack);
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
        let _ = write!(
            s,
            " (gso {} x {})",
            seg.payload_len.div_ceil(usize::from(captured.gso_size)),
            captured.gso_size
        );
    }
}

/// The event's text into `text` and a right-hand note (duration) into `tail`; `syscalls`:
/// whether they are traced.
fn describe(
    text: &mut String,
    tail: &mut String,
    ev: &Event,
    conn: &Conn,
    part: Part,
    timewait: bool,
    syscalls: bool,
) {
    match &ev.kind {
        Kind::Congestion(c) => congestion(text, c, conn),
        Kind::Syscall(call) => syscall(text, tail, ev, call, part),
        Kind::Kernel(call) => kernel(text, ev, call, syscalls),
        Kind::State(change) => {
            let to = if timewait {
                tcp_state::TIME_WAIT
            } else {
                change.to
            };
            let _ = write!(
                text,
                "{} -> {}",
                tcp_state::name(change.from),
                tcp_state::name(to)
            );
            if timewait {
                text.push_str("  (kernel: -> CLOSE, timewait socket takes over)");
            }
        }
        Kind::Packet(_) => text.push_str("packet"),
    }
}

fn syscall(text: &mut String, tail: &mut String, ev: &Event, call: &Syscall, part: Part) {
    let op = call.op;
    let name = op.name();
    let ret_value = call.ret();
    if part == Part::Return {
        let _ = write!(text, "{name} = ");
    } else {
        call_text(text, ev, call);
        if part == Part::Enter {
            text.push_str(" ...");
            return;
        }
        text.push_str(" = ");
    }
    let _ = match op {
        _ if ret_value < 0 => write!(text, "{}", Ret(ret_value)),
        _ if op.sends(&call.args) || op.receives(&call.args) => {
            write!(text, "{ret_value} bytes")
        }
        _ if op.counts_messages() => write!(text, "{ret_value} messages"),
        SyscallOp::Fcntl if call.args[0] == 3 => write!(
            text,
            "{ret_value:#x} ({})",
            sockopt::open_flags(ret_value as u64)
        ),
        SyscallOp::Getsockopt => {
            let o = sockopt::decode(op, &call.args, ret_value);
            write!(text, "{ret_value}  [{}]", OptText(&o.value))
        }
        SyscallOp::Accept | SyscallOp::Accept4 => match ev.remote.as_ref() {
            Some(peer) => write!(text, "{ret_value}  from {peer}"),
            None => write!(text, "{ret_value}"),
        },
        _ => write!(text, "{ret_value}"),
    };
    // A late call's entry was made up at its return (the kernel skipped its entry program,
    // README "Hooks and tiers"): it has no duration to show.
    if call.exit.is_some_and(|e| e.late) {
        tail.push_str("late");
    } else {
        let _ = write!(tail, "{}", Duration(call.duration_ns()));
    }
}

/// The call as strace shows it: `connect(fd=3, 127.0.0.1:8080)`.
fn call_text(text: &mut String, ev: &Event, call: &Syscall) {
    let op = call.op;
    let name = op.name();
    let fd = ev.fd;
    let _ = match op {
        SyscallOp::Socket => write!(
            text,
            "socket({}, {})",
            FamilyName(ev.family),
            socket_type(call.args[0])
        ),
        SyscallOp::Bind => write!(text, "bind(fd={fd}, {})", MaybeEndpoint(ev.local.as_ref())),
        SyscallOp::Connect => write!(
            text,
            "connect(fd={fd}, {})",
            MaybeEndpoint(ev.remote.as_ref())
        ),
        SyscallOp::Listen => write!(text, "listen(fd={fd}, backlog={})", call.args[0]),
        SyscallOp::Shutdown => write!(text, "shutdown(fd={fd}, {})", shutdown_how(call.args[0])),
        SyscallOp::Accept | SyscallOp::Accept4 | SyscallOp::Close => {
            write!(text, "{name}(fd={fd})")
        }
        SyscallOp::Splice if op.sends(&call.args) => {
            write!(text, "{name}(pipe -> fd={fd}, {})", call.args[0])
        }
        SyscallOp::Splice => write!(text, "{name}(fd={fd} -> pipe, {})", call.args[0]),
        SyscallOp::Sendfile => write!(text, "{name}(fd={fd}, file, {})", call.args[0]),
        SyscallOp::Sendmmsg | SyscallOp::Recvmmsg => {
            write!(text, "{name}(fd={fd}, {} messages)", call.args[0])
        }
        SyscallOp::Dup => write!(text, "{name}(fd={fd})"),
        SyscallOp::Dup2 => write!(text, "{name}(fd={fd}, {})", call.args[0] as i32),
        SyscallOp::Dup3 => write!(
            text,
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
                4 => write!(
                    text,
                    "{name}(fd={fd}, {cmd}, {})",
                    sockopt::open_flags(call.args[1])
                ),
                c if sockopt::fcntl_has_arg(c) => {
                    write!(text, "{name}(fd={fd}, {cmd}, {})", call.args[1])
                }
                _ => write!(text, "{name}(fd={fd}, {cmd})"),
            }
        }
        SyscallOp::Setsockopt | SyscallOp::Getsockopt => {
            let o = sockopt::decode(op, &call.args, call.ret());
            match op {
                SyscallOp::Setsockopt => write!(
                    text,
                    "{name}(fd={fd}, {}, {}, {})",
                    o.level,
                    o.name,
                    OptText(&o.value)
                ),
                _ => write!(text, "{name}(fd={fd}, {}, {})", o.level, o.name),
            }
        }
        _ => write!(text, "{name}(fd={fd}, {})", call.args[0]),
    };
}

/// A socket option's value as strace shows it: `1`, `{l_onoff=1, l_linger=5}`, `"cubic"`;
/// `SO_ERROR`'s as its errno name (`0` for none).
struct OptText<'a>(&'a OptValue);

impl fmt::Display for OptText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            OptValue::Int(n) => write!(f, "{n}"),
            OptValue::Linger { onoff, linger } => {
                write!(f, "{{l_onoff={onoff}, l_linger={linger}}}")
            }
            OptValue::Name(name) => write!(f, "{name:?}"),
            OptValue::Error(0) => f.write_str("0"),
            OptValue::Error(e) => match errno_name(i64::from(*e)) {
                Some(name) => f.write_str(name),
                None => write!(f, "{e}"),
            },
            OptValue::None => f.write_str("..."),
        }
    }
}

/// `fast retransmit seq 14481:15929 (1448 B) in Recovery · cwnd 7 ssthresh 7 srtt 0.41 ms ...`
fn congestion(s: &mut String, c: &Congestion, conn: &Conn) {
    if let (false, Some((kind, seq, _))) = (c.has_numbers(), c.retransmit) {
        // `SYN-ACK retransmit  seq 0:1 (the handshake's last ACK has not come)`
        let rel = conn.isn[0].map_or(seq, |isn| seq.wrapping_sub(isn));
        let _ = write!(
            s,
            "{}  seq {rel}:{} (the handshake's last ACK has not come)",
            kind.name(),
            rel.wrapping_add(1)
        );
        return;
    }
    match c.retransmit {
        Some((kind, seq, end)) => {
            let rel = conn.isn[0].map_or(seq, |isn| seq.wrapping_sub(isn));
            let _ = write!(
                s,
                "{}  seq {rel}:{} ({} B) in {}",
                kind.name(),
                rel.wrapping_add(end.wrapping_sub(seq)),
                end.wrapping_sub(seq),
                ca_state::name(c.ca_state),
            );
            if let Some(err) = c.err {
                let _ = write!(s, ", not sent: {}", Ret(i64::from(err)));
            }
        }
        None if c.func == KernelFn::TcpSetCaState => {
            let _ = write!(s, "congestion state -> {}", ca_state::name(c.ca_state));
        }
        None if c.func == KernelFn::TcpRcvSpaceAdjust => {
            // `receive buffer 131072 -> 262144 B (65483 B read in the last RTT)`: autotuning
            // sizes it by that; a shrink is memory pressure (or SO_RCVBUF, shown before it).
            let _ = write!(
                s,
                "receive buffer {} -> {} B ({} B read in the last RTT)",
                c.rcvbuf_before.unwrap_or(0),
                c.rcvbuf,
                c.rcv_space
            );
            return;
        }
        None => {
            let _ = write!(s, "ACK in {}", ca_state::name(c.ca_state));
        }
    }
    let _ = write!(s, " · cwnd {}", c.cwnd);
    let _ = match c.ssthresh {
        Some(t) => write!(s, " ssthresh {t}"),
        None => write!(s, " ssthresh -"),
    };
    if let Some(srtt) = c.srtt_us {
        let _ = write!(
            s,
            " srtt {} rttvar {}",
            Ms(u64::from(srtt)),
            Ms(u64::from(c.rttvar_us))
        );
    }
    if let Some(rto) = jiffies_to_us(c.rto_jiffies) {
        let _ = write!(s, " rto {}", Ms(rto));
    }
    let _ = write!(s, " in flight {}", c.packets_out);
    if c.retrans_out > 0 {
        let _ = write!(s, " ({} resent)", c.retrans_out);
    }
    let _ = write!(s, " wnd {}/{}", c.snd_wnd, c.rcv_wnd);
    if let Some(rate) = c.delivery_rate {
        let _ = write!(s, " rate {}", bits_per_second(rate));
    }
}

/// Microseconds as milliseconds to two decimals: `0.41 ms`.
struct Ms(u64);

impl fmt::Display for Ms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02} ms", self.0 / 1000, (self.0 % 1000) / 10)
    }
}

fn kernel(s: &mut String, ev: &Event, call: &KernelCall, syscalls: bool) {
    let func = call.func;
    let name = func.name();
    let (local, remote) = (
        MaybeEndpoint(ev.local.as_ref()),
        MaybeEndpoint(ev.remote.as_ref()),
    );
    let _ = match (func, call.bytes, call.isn) {
        (_, Some(bytes), _) if bytes >= 0 && ev.fd < 0 && syscalls => write!(
            s,
            "{name}  {bytes} bytes (no traced syscall: io_uring or the kernel itself)"
        ),
        (_, Some(bytes), _) if bytes >= 0 => write!(s, "{name}  {bytes} bytes"),
        (_, Some(bytes), _) => write!(s, "{name}  {}", Ret(bytes)),
        (KernelFn::TcpConnect, _, Some(isn)) => {
            write!(s, "{name}  {local} -> {remote}  isn {isn}")
        }
        (KernelFn::TcpConnect, _, None) => write!(s, "{name}  {local} -> {remote}"),
        (KernelFn::InetCskAccept, _, _) => write!(s, "{name}  child {local} <- {remote} ready"),
        (KernelFn::TcpSetState, _, _) => write!(s, "{name}"),
        _ => write!(s, "{name}  {}", func.meaning()),
    };
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

    /// The timeline's line for one finished call `call`, seen `via`, on fd `fd` of pid 7.
    fn call_line(call: Syscall, via: Via, fd: i32) -> String {
        let name = call.op.name();
        let mut c = Correlator::new();
        let mut e = Event::blank(Kind::Syscall(call), via, 1_000);
        e.pid = 7;
        e.fd = fd;
        let mut id = 0;
        c.observe(e.clone(), &mut |x| id = x.ends.iter().next().unwrap().conn);
        let mut out = Vec::new();
        let mut t = Timeline::new(&mut out, false);
        t.line(&e, c.get(id).unwrap(), Part::Whole, None, false)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        text.lines()
            .find(|l| l.contains(&format!("{name}(")))
            .unwrap()
            .to_string()
    }

    /// A late call (its entry made up at the return) says so where the duration goes.
    #[test]
    fn a_late_call_shows_late_instead_of_a_duration() {
        let call = Syscall {
            op: SyscallOp::Write,
            args: [5, 0],
            exit: Some(Exit {
                ret: 5,
                duration_ns: 70,
                late: true,
            }),
        };
        let line = call_line(call, Via::SyscallFunctions, 3);
        assert!(line.contains("= 5 bytes"), "{line}");
        assert!(
            line.ends_with(" late  via fentry:__x64_sys_write"),
            "{line}"
        );
        assert!(!line.contains("ns ") && !line.contains("µs"), "{line}");
    }

    /// A call seen on the socket layer's read iterator names that function, not the
    /// syscall's.
    #[test]
    fn a_call_seen_on_a_socket_iterator_names_it() {
        let call = Syscall {
            op: SyscallOp::Readv,
            args: [2, 0],
            exit: Some(Exit {
                ret: 5,
                duration_ns: 900,
                late: false,
            }),
        };
        let line = call_line(call, Via::SocketIterators, 4);
        assert!(line.contains("= 5 bytes"), "{line}");
        assert!(line.ends_with("via fentry:sock_read_iter"), "{line}");
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
