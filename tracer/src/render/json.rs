//! JSON Lines: one object per line, every line written by the one writer here; the schema is
//! documented in README.md.

use std::io::{self, Write};
use std::net::IpAddr;

use tracer_common::{SyscallOp, ca_state, failure::Failure, tcp_state};

use crate::decode::sockopt::{self, OptValue};
use crate::hooks::failures::Counts;

use super::text::errno_name;
use super::{Finish, Line, Meta, View};
use crate::correlate::{CongestionStats, Conn, ConnId, SegmentView};
use crate::decode::{Congestion, Endpoint, Event, Kind, RetransmitKind};
use crate::hooks::table::HookLabel;
use crate::system::hz::jiffies_to_us;

/// Reusable state of the JSON writer: the line buffer, addresses already formatted, and each
/// connection's ends as last written (they are the same on every one of its lines).
#[derive(Default)]
pub struct Scratch {
    buf: Vec<u8>,
    addrs: rustc_hash::FxHashMap<IpAddr, Box<str>>,
    ends: rustc_hash::FxHashMap<ConnId, EndsText>,
}

/// Connections whose ends' text is kept at most before the cache starts again.
const ENDS_KEPT: usize = 4096;

/// Bytes of an ends text kept inline: two IPv4 ends take about 110, two long IPv6 ends
/// about 190; a longer text (an owner in another cgroup, its path) is written each time.
const ENDS_BYTES: usize = 192;

/// What [`ends`] wrote for a connection, and from what: written again when any of it changed.
struct EndsText {
    from: EndsFrom,
    len: u8,
    bytes: [u8; ENDS_BYTES],
}

/// The values a connection's ends text is made of.
#[derive(Clone, Copy, PartialEq, Eq)]
struct EndsFrom {
    local: Option<Endpoint>,
    remote: Option<Endpoint>,
    family: u16,
    placed: bool,
}

/// Builds one JSON object in a reusable buffer, without intermediate allocations: this runs
/// once per event on the hot path.
struct Obj<'a> {
    buf: &'a mut Vec<u8>,
    addrs: &'a mut rustc_hash::FxHashMap<IpAddr, Box<str>>,
    first: bool,
}

impl<'a> Obj<'a> {
    fn new(scratch: &'a mut Scratch) -> Self {
        Self::of(&mut scratch.buf, &mut scratch.addrs)
    }

    /// An object starting `buf` afresh, addresses' text cached in `addrs`.
    fn of(buf: &'a mut Vec<u8>, addrs: &'a mut rustc_hash::FxHashMap<IpAddr, Box<str>>) -> Self {
        buf.clear();
        buf.push(b'{');
        if addrs.len() > 4096 {
            addrs.clear();
        }
        Self {
            buf,
            addrs,
            first: true,
        }
    }

    fn key(&mut self, key: &str) {
        if !self.first {
            self.buf.push(b',');
        }
        self.first = false;
        self.buf.push(b'"');
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }

    /// An array of objects under `key`, one per item.
    fn objects<T>(
        &mut self,
        key: &str,
        items: impl IntoIterator<Item = T>,
        mut f: impl FnMut(&mut Obj, T),
    ) {
        self.key(key);
        self.buf.push(b'[');
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            self.buf.push(b'{');
            let mut inner = Obj {
                buf: &mut *self.buf,
                addrs: &mut *self.addrs,
                first: true,
            };
            f(&mut inner, item);
            self.buf.push(b'}');
        }
        self.buf.push(b']');
    }

    /// An object of counts under `key`: each failure reason's key and count.
    fn failures(&mut self, key: &str, counts: &Counts) {
        self.object(key, |o| {
            for (reason, n) in Failure::ALL.iter().zip(counts) {
                o.num(reason.key(), *n);
            }
        });
    }

    /// An object under `key`, its members written by `f`.
    fn object(&mut self, key: &str, f: impl FnOnce(&mut Obj)) {
        self.key(key);
        self.buf.push(b'{');
        let mut inner = Obj {
            buf: &mut *self.buf,
            addrs: &mut *self.addrs,
            first: true,
        };
        f(&mut inner);
        self.buf.push(b'}');
    }

    /// An array of strings under `key`.
    fn strs<'s>(&mut self, key: &str, items: impl IntoIterator<Item = &'s str>) {
        self.key(key);
        self.buf.push(b'[');
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            escape(self.buf, item);
        }
        self.buf.push(b']');
    }

    /// `value` formatted with `Display`, as a string.
    fn display(&mut self, key: &str, value: impl std::fmt::Display) {
        self.key(key);
        display_string(self.buf, value);
    }

    fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        escape(self.buf, value);
    }

    /// A string of our own vocabulary (a layer, an event or state name...): never needs
    /// escaping, so it is not scanned — this runs several times per event.
    fn word(&mut self, key: &str, value: &'static str) {
        debug_assert!(!value.bytes().any(needs_escape), "{value:?}");
        self.key(key);
        self.buf.push(b'"');
        self.buf.extend_from_slice(value.as_bytes());
        self.buf.push(b'"');
    }

    fn opt_word(&mut self, key: &str, value: Option<&'static str>) {
        match value {
            Some(v) => self.word(key, v),
            None => self.null(key),
        }
    }

    fn opt_str(&mut self, key: &str, value: Option<&str>) {
        match value {
            Some(v) => self.str(key, v),
            None => self.null(key),
        }
    }

    fn num(&mut self, key: &str, value: impl itoa::Integer) {
        self.key(key);
        self.buf
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    fn opt_num(&mut self, key: &str, value: Option<impl itoa::Integer>) {
        match value {
            Some(v) => self.num(key, v),
            None => self.null(key),
        }
    }

    fn bool(&mut self, key: &str, value: bool) {
        self.key(key);
        self.buf
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    fn null(&mut self, key: &str) {
        self.key(key);
        self.buf.extend_from_slice(b"null");
    }

    fn addr(&mut self, key: &str, addr: Option<IpAddr>) {
        self.key(key);
        match addr {
            Some(a) => {
                let text = self.addrs.entry(a).or_insert_with(|| a.to_string().into());
                self.buf.push(b'"');
                self.buf.extend_from_slice(text.as_bytes());
                self.buf.push(b'"');
            }
            None => self.buf.extend_from_slice(b"null"),
        }
    }

    fn end(self) {
        self.buf.extend_from_slice(b"}\n");
    }

    /// Starts a `meta` line: `{"ts_ns":..,"layer":"meta","event":NAME`.
    fn meta(scratch: &'a mut Scratch, ts_ns: u64, event: &str) -> Self {
        let mut o = Self::new(scratch);
        o.num("ts_ns", ts_ns);
        o.str("layer", "meta");
        o.str("event", event);
        o
    }
}

/// Writes `value`, formatted with `Display`, as a JSON string: straight into `buf`, escaped
/// afterwards only if it needs it.
fn display_string(buf: &mut Vec<u8>, value: impl std::fmt::Display) {
    buf.push(b'"');
    let start = buf.len();
    let _ = write!(buf, "{value}");
    if buf[start..].iter().any(|&b| needs_escape(b)) {
        let text = String::from_utf8_lossy(&buf[start..]).into_owned();
        buf.truncate(start - 1);
        escape(buf, &text);
    } else {
        buf.push(b'"');
    }
}

/// Whether byte `b` of UTF-8 text must be escaped in a JSON string.
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Writes `s` as a JSON string.
fn escape(buf: &mut Vec<u8>, s: &str) {
    buf.push(b'"');
    if !s.bytes().any(needs_escape) {
        buf.extend_from_slice(s.as_bytes());
        buf.push(b'"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' => buf.extend_from_slice(b"\\\""),
            '\\' => buf.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(buf, "\\u{:04x}", c as u32);
            }
            c => {
                let mut tmp = [0u8; 4];
                buf.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
            }
        }
    }
    buf.push(b'"');
}

fn family(f: u16) -> Option<&'static str> {
    match f {
        tracer_common::AF_INET => Some("ipv4"),
        tracer_common::AF_INET6 => Some("ipv6"),
        _ => None,
    }
}

/// The JSON Lines view.
pub struct Json<W: Write> {
    out: W,
    scratch: Scratch,
    /// Put each connection in the summary line.
    pub conns: bool,
    /// Put the ladder diagrams in the summary line.
    pub ladders: bool,
    now: Box<dyn Fn() -> u64>,
}

impl<W: Write> Json<W> {
    /// A view writing to `out`; `now` dates the meta lines.
    pub fn new(out: W, now: Box<dyn Fn() -> u64>) -> Self {
        Self {
            out,
            scratch: Scratch::default(),
            conns: true,
            ladders: false,
            now,
        }
    }
}

impl<W: Write> View for Json<W> {
    fn meta(&mut self, meta: &Meta) -> io::Result<()> {
        match meta {
            Meta::Dropped { total, new } => {
                let mut o = Obj::meta(&mut self.scratch, (self.now)(), "dropped");
                o.num("dropped", total[Failure::RingFull as usize]);
                o.num("new", new[Failure::RingFull as usize]);
                o.failures("failures", total);
                o.failures("new_failures", new);
                o.end();
            }
            Meta::Skipped { total, new } => {
                let mut o = Obj::meta(&mut self.scratch, (self.now)(), "skipped");
                o.num("skipped", total.iter().map(|(_, n)| n).sum::<u64>());
                o.num("new", new.iter().map(|(_, n)| n).sum::<u64>());
                for (key, list) in [("skipped_by", total), ("new_by", new)] {
                    o.objects(key, list.iter(), |o, (program, n)| {
                        o.str("program", program);
                        o.num("runs", *n);
                    });
                }
                o.end();
            }
            Meta::Ready {
                hooks,
                missing_layers,
                layers_off,
            } => {
                let mut o = Obj::meta(&mut self.scratch, (self.now)(), "ready");
                o.objects("hooks", hooks.iter(), |o, h| {
                    o.str("hook", h.name);
                    o.str("layer", h.layer.name());
                    o.opt_str("tier", h.tier);
                    o.opt_str("via", h.via.as_deref());
                    o.strs("skipped", h.skipped.iter().map(String::as_str));
                    match &h.error {
                        Some(e) => o.display("error", e),
                        None => o.null("error"),
                    }
                });
                o.strs("missing_layers", missing_layers.iter().copied());
                o.strs("layers_off", layers_off.iter().map(|l| l.name()));
                o.end();
            }
        }
        self.out.write_all(&self.scratch.buf)?;
        self.out.flush()
    }

    fn event(&mut self, line: &Line) -> io::Result<()> {
        for (conn, seg) in line.ends() {
            write_event(&mut self.scratch, line.event, conn, seg, line.timewait);
            self.out.write_all(&self.scratch.buf)?;
        }
        Ok(())
    }

    fn finish(&mut self, end: &Finish) -> io::Result<()> {
        let ladders = self.ladders.then(|| super::ladder::all(end.conns));
        let mut o = Obj::meta(&mut self.scratch, (self.now)(), "summary");
        o.num("connections", end.total);
        o.num("events", end.events);
        o.num("dropped", end.dropped());
        o.failures("failures", &end.failures);
        o.num("skipped", end.skipped_runs());
        o.objects("skipped_by", end.skipped.iter(), |o, (program, n)| {
            o.str("program", program);
            o.num("runs", *n);
        });
        o.num("malformed", end.malformed);
        o.num("unshown", end.unshown);
        if self.conns {
            o.objects("conns", end.conns.iter(), |o, c| summary_conn(o, c));
            o.num("conns_omitted", end.omitted);
        }
        if let Some(text) = &ladders {
            o.str("ladders", text);
        }
        o.end();
        self.out.write_all(&self.scratch.buf)?;
        self.out.flush()
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// `netns` and `cgroup` of the connection's owner, each only where not the tracer's.
fn place(o: &mut Obj, place: Option<&crate::system::place::Place>) {
    if let Some(p) = place {
        if let Some(netns) = p.netns {
            o.num("netns", netns);
        }
        if let Some(cgroup) = &p.cgroup {
            o.str("cgroup", cgroup);
        }
    }
}

/// `conn`, `family`, the addresses and ports, and where the owner runs: copied from what was
/// written for the connection's last line when made of the same values, written (and kept)
/// otherwise. Never the first member.
fn ends(
    o: &mut Obj,
    cache: &mut rustc_hash::FxHashMap<ConnId, EndsText>,
    conn: &Conn,
    from: EndsFrom,
) {
    if let Some(kept) = cache.get(&conn.id)
        && kept.from == from
    {
        o.buf
            .extend_from_slice(&kept.bytes[..usize::from(kept.len)]);
        return;
    }
    let start = o.buf.len();
    o.num("conn", conn.id);
    o.opt_word("family", family(from.family));
    o.addr("laddr", from.local.map(|e| e.addr));
    o.opt_num("lport", from.local.map(|e| e.port));
    o.addr("raddr", from.remote.map(|e| e.addr));
    o.opt_num("rport", from.remote.map(|e| e.port));
    place(o, conn.place.as_ref());
    let text = &o.buf[start..];
    if text.len() <= ENDS_BYTES {
        if cache.len() >= ENDS_KEPT {
            cache.clear();
        }
        let mut bytes = [0; ENDS_BYTES];
        bytes[..text.len()].copy_from_slice(text);
        cache.insert(
            conn.id,
            EndsText {
                from,
                len: text.len() as u8,
                bytes,
            },
        );
    }
}

/// One connection of the summary line.
fn summary_conn(o: &mut Obj, c: &Conn) {
    o.num("conn", c.id);
    o.num("pid", c.pid);
    o.str("comm", &c.comm);
    o.str("role", c.role.name());
    o.addr("laddr", c.local.map(|e| e.addr));
    o.opt_num("lport", c.local.map(|e| e.port));
    o.addr("raddr", c.remote.map(|e| e.addr));
    o.opt_num("rport", c.remote.map(|e| e.port));
    place(o, c.place.as_ref());
    o.num("duration_ns", c.last_ns.saturating_sub(c.first_ns));
    o.num("bytes_sent", c.bytes_sent);
    o.num("bytes_received", c.bytes_received);
    o.opt_num("handshake_ns", c.handshake_ns);
    o.num("retransmits", c.retransmits());
    if c.congestion.is_empty() {
        o.null("congestion");
    } else {
        o.object("congestion", |o| summary_congestion(o, &c.congestion));
    }
    o.strs("states", c.states.iter().map(|&s| tcp_state::name(s)));
    o.str("outcome", c.outcome().unwrap_or("open"));
}

/// What a syscall's own arguments say, where the timeline shows more than its fd: the new fd
/// a duplication asks for, `fcntl`'s command, a socket option and its value.
fn syscall_args(o: &mut Obj, call: &crate::decode::Syscall, ret: i64) {
    match call.op {
        SyscallOp::Dup2 | SyscallOp::Dup3 => o.num("newfd", call.args[0] as i32),
        SyscallOp::Fcntl => {
            o.str("cmd", &sockopt::fcntl_command(call.args[0]));
            match call.args[0] {
                4 => o.str("flags", &sockopt::open_flags(call.args[1])),
                3 if ret >= 0 => o.str("flags", &sockopt::open_flags(ret as u64)),
                c if sockopt::fcntl_has_arg(c) => o.num("arg", call.args[1]),
                _ => {}
            }
        }
        SyscallOp::Setsockopt | SyscallOp::Getsockopt => {
            let opt = sockopt::decode(call.op, &call.args, ret);
            o.str("level", &opt.level);
            o.str("option", &opt.name);
            match opt.value {
                OptValue::Int(n) => o.num("value", n),
                OptValue::Linger { onoff, linger } => o.object("value", |o| {
                    o.num("l_onoff", onoff);
                    o.num("l_linger", linger);
                }),
                OptValue::Name(name) => o.str("value", &name),
                OptValue::Error(e) => {
                    o.num("value", e);
                    o.opt_str("value_errno", errno_name(i64::from(e)));
                }
                OptValue::None => {}
            }
        }
        _ => {}
    }
}

/// A connection's congestion history in the summary.
fn summary_congestion(o: &mut Obj, s: &CongestionStats) {
    o.opt_str("algorithm", s.algorithm.as_deref());
    o.object("retransmits", |o| {
        for kind in RetransmitKind::ALL {
            o.num(kind.key(), s.retransmits.get(&kind).copied().unwrap_or(0));
        }
    });
    o.num("bytes_retransmitted", s.bytes_retransmitted);
    o.opt_num("srtt_min_us", s.srtt_min_us);
    o.opt_num("srtt_avg_us", s.srtt_avg_us());
    o.opt_num("srtt_max_us", s.srtt_max_us);
    o.num("cwnd_max", s.cwnd_max);
    o.num("recovery_ns", s.recovering_ns);
    o.num("state_changes", s.state_changes);
    o.num("rcvbuf_resizes", s.rcvbuf_resizes);
    o.opt_num("rcvbuf_first", s.rcvbuf_first);
    o.opt_num("rcvbuf_max", s.rcvbuf_max);
    o.opt_num("delivery_rate_max", s.delivery_rate_max);
    if let Some((ts, last)) = &s.last {
        o.object("last", |o| {
            o.num("ts_ns", *ts);
            congestion_numbers(o, last);
        });
    }
}

/// The numbers every congestion record carries.
fn congestion_numbers(o: &mut Obj, c: &Congestion) {
    o.word("ca_state", ca_state::name(c.ca_state));
    o.word("state", tcp_state::name(c.sk_state));
    o.num("cwnd", c.cwnd);
    o.opt_num("ssthresh", c.ssthresh);
    o.opt_num("srtt_us", c.srtt_us);
    o.num("rttvar_us", c.rttvar_us);
    o.opt_num("rto_us", jiffies_to_us(c.rto_jiffies));
    o.num("packets_out", c.packets_out);
    o.num("retrans_out", c.retrans_out);
    o.num("total_retrans", c.total_retrans);
    o.num("snd_wnd", c.snd_wnd);
    o.num("rcv_wnd", c.rcv_wnd);
    o.num("mss", c.mss);
    o.str("algorithm", &c.algorithm);
    o.num("rcvbuf", c.rcvbuf);
    o.opt_num("rcvbuf_before", c.rcvbuf_before);
    o.num("rcv_space", c.rcv_space);
    o.opt_num("delivery_rate", c.delivery_rate);
}

/// Writes `ev`, which belongs to `conn`, as one JSON line into `scratch`; `seg` is a packet
/// event's segment as that connection sees it.
fn write_event(
    scratch: &mut Scratch,
    ev: &Event,
    conn: &Conn,
    seg: Option<&SegmentView>,
    timewait: bool,
) {
    let local = conn.local.or(ev.local);
    let remote = conn.remote.or(ev.remote);
    let fam = if conn.family != 0 {
        conn.family
    } else {
        ev.family
    };
    let Scratch {
        buf,
        addrs,
        ends: cached_ends,
    } = scratch;
    let mut o = Obj::of(buf, addrs);
    o.num("ts_ns", ev.ts_ns);
    o.word("layer", ev.layer());
    o.word("event", ev.name());
    match ev.hook {
        HookLabel::Fixed(label) => o.word("hook", label),
        probe => o.display("hook", probe),
    }
    if ev.captured().is_some() {
        // A segment belongs to the connection's owner, not to a task: no thread.
        o.num("pid", conn.pid);
        o.null("tid");
        o.str("comm", &conn.comm);
    } else {
        o.num("pid", ev.pid);
        o.num("tid", ev.tid);
        o.str("comm", &ev.comm);
    }
    let from = EndsFrom {
        local,
        remote,
        family: fam,
        placed: conn.place.is_some(),
    };
    ends(&mut o, cached_ends, conn, from);
    match &ev.kind {
        Kind::Syscall(call) => {
            let ret = call.ret();
            o.word("name", call.op.name());
            o.num("fd", ev.fd);
            o.num("ret", ret);
            if ret < 0 {
                if let Some(name) = errno_name(-ret) {
                    o.word("errno", name);
                }
            } else if call.op.sends(&call.args) || call.op.receives(&call.args) {
                o.num("bytes", ret);
            } else if call.op.counts_messages() {
                o.num("messages", ret);
            }
            syscall_args(&mut o, call, ret);
            if call.op == SyscallOp::Splice {
                o.word(
                    "dir",
                    if call.op.sends(&call.args) {
                        "out"
                    } else {
                        "in"
                    },
                );
            }
            o.num("duration_ns", call.duration_ns());
            if call.exit.is_some_and(|e| e.late) {
                o.bool("late", true);
            }
            if call.op.accepts()
                && let Some(peer) = &ev.remote
            {
                o.display("peer", peer);
            }
        }
        Kind::Kernel(call) => {
            if let Some(bytes) = call.bytes {
                o.num("ret", bytes);
                if bytes >= 0 {
                    o.num("bytes", bytes);
                }
            }
            // The function's own arguments, where the hook sees them (fentry/kprobe tiers).
            if let Some(isn) = call.isn {
                o.num("isn", isn);
            }
            if let Some(write_seq) = call.write_seq {
                o.num("write_seq", write_seq);
            }
            if call.at_syscall_start {
                o.word("ts_is", "syscall_start");
            }
        }
        Kind::State(change) => {
            o.word("from", tcp_state::name(change.from));
            if timewait {
                o.word("to", tcp_state::name(tcp_state::TIME_WAIT));
                o.word("kernel_to", tcp_state::name(change.to));
            } else {
                o.word("to", tcp_state::name(change.to));
            }
        }
        Kind::Congestion(c) => {
            if let Some((kind, seq, end)) = c.retransmit {
                o.word("retransmit", kind.key());
                o.num("seq", seq);
                o.num("end_seq", end);
                o.opt_num("rel_seq", conn.isn[0].map(|isn| seq.wrapping_sub(isn)));
                o.num("len", end.wrapping_sub(seq));
                if let Some(err) = c.err {
                    o.num("err", err);
                    o.opt_word("errno", errno_name(-i64::from(err)));
                }
            } else {
                o.num("snd_una", c.snd_una);
                o.num("snd_nxt", c.snd_nxt);
            }
            if c.has_numbers() {
                congestion_numbers(&mut o, c);
            }
        }
        Kind::Packet(captured) => {
            if let Some(view) = seg {
                o.word("dir", if view.out { "out" } else { "in" });
                match &captured.segment {
                    Ok(s) => {
                        o.key("flags");
                        o.buf.push(b'"');
                        s.tcp.push_flag_letters(o.buf);
                        o.buf.push(b'"');
                        o.num("seq", s.tcp.seq);
                        o.num("ack", s.tcp.ack);
                        o.num("rel_seq", view.rel_seq);
                        o.opt_num("rel_ack", view.rel_ack);
                        o.num("win", view.window);
                        if view.dup_ack > 0 {
                            o.num("dup_ack", view.dup_ack);
                        }
                        if view.zero_window {
                            o.bool("zero_window", true);
                        }
                        if view.window_opened {
                            o.bool("window_opened", true);
                        }
                        if view.window_full {
                            o.bool("window_full", true);
                        }
                        o.num("len", s.payload_len);
                        if captured.gso_size > 0 {
                            o.num("gso_size", captured.gso_size);
                            o.num("gso_segs", captured.gso_segs);
                        }
                        o.num("hdr_len", s.tcp.header_len);
                        o.num("checksum", s.tcp.checksum);
                        o.num("urgent", s.tcp.urgent);
                        o.key("options");
                        o.buf.push(b'[');
                        for (i, opt) in s.tcp.options.iter().enumerate() {
                            if i > 0 {
                                o.buf.push(b',');
                            }
                            display_string(o.buf, opt);
                        }
                        o.buf.push(b']');
                        let headers = s.ip_header_len + s.tcp.header_len;
                        if captured.data.len() > headers {
                            o.key("payload");
                            o.buf.push(b'"');
                            for b in &captured.data[headers..] {
                                let _ = write!(o.buf, "{b:02x}");
                            }
                            o.buf.push(b'"');
                        }
                    }
                    Err(e) => o.display("error", e),
                }
            }
        }
    }
    o.end();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ends of a connection are written from the connection as it is at each line: a
    /// copy of the last line's text only while nothing it was made of changed.
    #[test]
    fn a_connection_s_ends_follow_its_changes_across_lines() {
        use crate::correlate::Role;
        use crate::decode::StateChange;
        use std::net::Ipv4Addr;
        let ep = |port| Endpoint {
            addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port,
        };
        let state = Event::blank(
            Kind::State(StateChange { from: 7, to: 2 }),
            tracer_common::Via::Tracepoint,
            5,
        );
        let mut conn = Conn::new_for_test(3, Role::Client);
        let mut scratch = Scratch::default();
        let line = |scratch: &mut Scratch, conn: &Conn| {
            write_event(scratch, &state, conn, None, false);
            let v: serde_json::Value = serde_json::from_slice(&scratch.buf).unwrap();
            v
        };
        let v = line(&mut scratch, &conn);
        assert_eq!(v["conn"], 3);
        assert!(v["lport"].is_null() && v["raddr"].is_null(), "{v}");
        conn.family = tracer_common::AF_INET;
        conn.local = Some(ep(40000));
        conn.remote = Some(ep(8080));
        for _ in 0..2 {
            let v = line(&mut scratch, &conn);
            assert_eq!(v["family"], "ipv4");
            assert_eq!(v["laddr"], "127.0.0.1");
            assert_eq!(v["lport"], 40000);
            assert_eq!(v["rport"], 8080);
        }
        conn.place = Some(crate::system::place::Place {
            netns: Some(4026531999),
            cgroup: Some("/system.slice/redis.service".into()),
        });
        let v = line(&mut scratch, &conn);
        assert_eq!(v["netns"], 4026531999u64);
        assert_eq!(v["cgroup"], "/system.slice/redis.service");
        assert_eq!(v["rport"], 8080);
        let mut other = Conn::new_for_test(4, Role::Server);
        other.local = Some(ep(8080));
        let v = line(&mut scratch, &other);
        assert_eq!(v["conn"], 4);
        assert_eq!(v["lport"], 8080);
        assert!(v["netns"].is_null() && v["rport"].is_null(), "{v}");
    }

    #[test]
    fn nested_meta_lines_are_valid_json() {
        let mut scratch = Scratch::default();
        let mut o = Obj::meta(&mut scratch, 7, "ready");
        o.objects("hooks", ["a\"b", "c"], |o, name| {
            o.str("hook", name);
            o.strs("skipped", ["x\ny"]);
            o.null("error");
        });
        o.strs("missing_layers", []);
        o.end();
        let text = String::from_utf8(scratch.buf.clone()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["event"], "ready");
        assert_eq!(v["hooks"][0]["hook"], "a\"b");
        assert_eq!(v["hooks"][1]["skipped"][0], "x\ny");
        assert_eq!(v["missing_layers"].as_array().unwrap().len(), 0);
        assert!(text.starts_with("{\"ts_ns\":7,\"layer\":\"meta\",\"event\":\"ready\","));
    }

    #[test]
    fn a_skip_notice_gives_the_totals_and_what_is_new_per_program() {
        let mut out = Vec::new();
        let mut json = Json::new(&mut out, Box::new(|| 9));
        let total = [
            ("sys_exit".to_string(), 5),
            ("sys_enter_write".to_string(), 2),
        ];
        let new = [("sys_exit".to_string(), 3)];
        json.meta(&Meta::Skipped {
            total: &total,
            new: &new,
        })
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["event"], "skipped");
        assert_eq!(v["skipped"], 7);
        assert_eq!(v["new"], 3);
        assert_eq!(v["skipped_by"][1]["program"], "sys_enter_write");
        assert_eq!(v["skipped_by"][1]["runs"], 2);
        assert_eq!(v["new_by"].as_array().unwrap().len(), 1);
        assert_eq!(v["new_by"][0]["runs"], 3);
    }
}
