//! JSON Lines: one object per event; the schema is documented in README.md.

use std::io::{self, Write};

use std::net::IpAddr;

use tracer_common::{KernelFn, SyscallOp, tcp_state};

use super::errno_name;
use crate::correlate::{Conn, SegmentView};
use crate::events::{Event, Kind};

/// Reusable state of the JSON writer: the line buffer, and addresses already formatted
/// (a connection's addresses appear on every one of its lines).
#[derive(Default)]
pub struct Scratch {
    buf: Vec<u8>,
    addrs: rustc_hash::FxHashMap<IpAddr, Box<str>>,
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
        scratch.buf.clear();
        scratch.buf.push(b'{');
        if scratch.addrs.len() > 4096 {
            scratch.addrs.clear();
        }
        Self {
            buf: &mut scratch.buf,
            addrs: &mut scratch.addrs,
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

    fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        escape(self.buf, value);
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
}

/// Writes `s` as a JSON string.
fn escape(buf: &mut Vec<u8>, s: &str) {
    buf.push(b'"');
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
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

/// Writes `ev`, which belongs to `conn`, as one JSON line; `seg` is a packet event's segment
/// as that connection sees it. `scratch` is reused between calls.
pub fn write_event(
    out: &mut impl Write,
    scratch: &mut Scratch,
    ev: &Event,
    conn: &Conn,
    seg: Option<&SegmentView>,
) -> io::Result<()> {
    let local = conn.local.or(ev.local);
    let remote = conn.remote.or(ev.remote);
    let fam = if conn.family != 0 {
        conn.family
    } else {
        ev.family
    };
    let packet = matches!(ev.kind, Kind::Packet);
    let mut o = Obj::new(scratch);
    o.num("ts_ns", ev.ts_ns);
    o.str("layer", ev.layer());
    o.str("event", ev.name());
    o.str("hook", ev.hook_label());
    if packet {
        // A segment belongs to the connection's owner, not to a task.
        o.num("pid", conn.pid);
        o.num("tid", 0);
        o.str("comm", &conn.comm);
    } else {
        o.num("pid", ev.pid);
        o.num("tid", ev.tid);
        o.str("comm", &ev.comm);
    }
    o.num("conn", conn.id);
    o.opt_str("family", family(fam));
    o.addr("laddr", local.map(|e| e.addr));
    o.opt_num("lport", local.map(|e| e.port));
    o.addr("raddr", remote.map(|e| e.addr));
    o.opt_num("rport", remote.map(|e| e.port));
    match ev.kind {
        Kind::Syscall(op) | Kind::SyscallEnter(op) => {
            o.str("name", op.name());
            o.num("fd", ev.fd);
            o.num("ret", ev.ret);
            if ev.ret < 0 {
                if let Some(name) = errno_name(-ev.ret) {
                    o.str("errno", name);
                }
            } else if op.sends() || op.receives() {
                o.num("bytes", ev.ret);
            }
            o.num("duration_ns", ev.duration_ns);
            if matches!(op, SyscallOp::Accept | SyscallOp::Accept4)
                && let Some(peer) = &ev.remote
            {
                o.str("peer", &super::endpoint(peer));
            }
        }
        Kind::Kernel(func) => {
            if matches!(func, KernelFn::TcpSendmsg | KernelFn::TcpRecvmsg) {
                o.num("ret", ev.ret);
                if ev.ret >= 0 {
                    o.num("bytes", ev.ret);
                }
            }
            // The function's own arguments, where the hook sees them (fentry/kprobe tiers).
            if ev.hook.is_probe() {
                match func {
                    KernelFn::TcpConnect => o.num("isn", ev.arg),
                    KernelFn::TcpSendmsg => o.num("write_seq", ev.arg),
                    _ => {}
                }
            }
        }
        Kind::State { from, to } => {
            o.str("from", tcp_state::name(from));
            o.str("to", tcp_state::name(to));
            if ev.timewait {
                o.str("kernel_to", tcp_state::name(tcp_state::CLOSE));
            }
        }
        Kind::Packet => {
            if let (Some(captured), Some(view)) = (&ev.packet, seg) {
                o.str("dir", if view.out { "out" } else { "in" });
                match &captured.segment {
                    Ok(s) => {
                        o.str("flags", &s.tcp.flag_letters());
                        o.num("seq", s.tcp.seq);
                        o.num("ack", s.tcp.ack);
                        o.num("rel_seq", view.rel_seq);
                        o.opt_num("rel_ack", view.rel_ack);
                        o.num("win", view.window);
                        o.num("len", s.payload_len);
                        o.num("hdr_len", s.tcp.header_len);
                        o.num("checksum", s.tcp.checksum);
                        o.num("urgent", s.tcp.urgent);
                        o.key("options");
                        o.buf.push(b'[');
                        for (i, opt) in s.tcp.options.iter().enumerate() {
                            if i > 0 {
                                o.buf.push(b',');
                            }
                            escape(o.buf, &opt.to_string());
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
                    Err(e) => o.str("error", &e.to_string()),
                }
            }
        }
    }
    o.end();
    out.write_all(&scratch.buf)
}

/// Writes a `meta` line: `{"ts_ns":..,"layer":"meta","event":NAME, ...fields}`.
pub fn write_meta(
    out: &mut impl Write,
    ts_ns: u64,
    event: &str,
    fields: serde_json::Map<String, serde_json::Value>,
) -> io::Result<()> {
    let mut obj = serde_json::Map::new();
    obj.insert("ts_ns".into(), ts_ns.into());
    obj.insert("layer".into(), "meta".into());
    obj.insert("event".into(), event.into());
    obj.extend(fields);
    serde_json::to_writer(&mut *out, &obj)?;
    out.write_all(b"\n")
}
