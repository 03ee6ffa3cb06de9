//! JSON Lines: one object per event; the schema is documented in README.md.

use std::io::{self, Write};

use serde::Serialize;
use tracer_common::{KernelFn, tcp_state};

use super::errno_name;
use crate::correlate::{Conn, SegmentView};
use crate::events::{Endpoint, Event, Kind};

#[derive(Serialize)]
struct Line<'a> {
    ts_ns: u64,
    layer: &'static str,
    event: &'static str,
    hook: &'static str,
    pid: u32,
    tid: u32,
    comm: &'a str,
    conn: u64,
    family: Option<&'static str>,
    laddr: Option<String>,
    lport: Option<u16>,
    raddr: Option<String>,
    rport: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fd: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ret: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    errno: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kernel_to: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dir: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    flags: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ack: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rel_seq: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rel_ack: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    win: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    len: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hdr_len: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    checksum: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    urgent: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    options: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn family(f: u16) -> Option<&'static str> {
    match f {
        tracer_common::AF_INET => Some("ipv4"),
        tracer_common::AF_INET6 => Some("ipv6"),
        _ => None,
    }
}

/// Writes `ev`, which belongs to `conn`, as one JSON line; `seg` is a packet event's segment
/// as that connection sees it.
pub fn write_event(
    out: &mut impl Write,
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
    let mut line = Line {
        ts_ns: ev.ts_ns,
        layer: ev.layer(),
        event: ev.name(),
        hook: ev.hook.label(),
        pid: ev.pid,
        tid: ev.tid,
        comm: &ev.comm,
        conn: conn.id,
        family: family(fam),
        laddr: local.map(|e| e.addr.to_string()),
        lport: local.map(|e| e.port),
        raddr: remote.map(|e| e.addr.to_string()),
        rport: remote.map(|e| e.port),
        name: None,
        fd: None,
        ret: None,
        errno: None,
        bytes: None,
        duration_ns: None,
        peer: None,
        from: None,
        to: None,
        kernel_to: None,
        dir: None,
        flags: None,
        seq: None,
        ack: None,
        rel_seq: None,
        rel_ack: None,
        win: None,
        len: None,
        hdr_len: None,
        checksum: None,
        urgent: None,
        options: None,
        payload: None,
        error: None,
    };
    match ev.kind {
        Kind::Syscall(op) | Kind::SyscallEnter(op) => {
            line.name = Some(op.name());
            line.fd = Some(ev.fd);
            line.ret = Some(ev.ret);
            line.duration_ns = Some(ev.duration_ns);
            if ev.ret < 0 {
                line.errno = errno_name(-ev.ret);
            } else if op.sends() || op.receives() {
                line.bytes = Some(ev.ret as u64);
            }
            if matches!(
                op,
                tracer_common::SyscallOp::Accept | tracer_common::SyscallOp::Accept4
            ) {
                line.peer = ev.remote.as_ref().map(endpoint_text);
            }
        }
        Kind::Kernel(func) => {
            if matches!(func, KernelFn::TcpSendmsg | KernelFn::TcpRecvmsg) {
                line.ret = Some(ev.ret);
                if ev.ret >= 0 {
                    line.bytes = Some(ev.ret as u64);
                }
            }
        }
        Kind::State { from, to } => {
            line.from = Some(tcp_state::name(from));
            line.to = Some(tcp_state::name(to));
            if ev.timewait {
                line.kernel_to = Some(tcp_state::name(tcp_state::CLOSE));
            }
        }
        Kind::Packet => {
            if let (Some(captured), Some(view)) = (&ev.packet, seg) {
                line.pid = conn.pid;
                line.tid = 0;
                line.comm = &conn.comm;
                line.dir = Some(if view.out { "out" } else { "in" });
                match &captured.segment {
                    Ok(s) => {
                        line.flags = Some(s.tcp.flag_letters());
                        line.seq = Some(s.tcp.seq);
                        line.ack = Some(s.tcp.ack);
                        line.rel_seq = Some(view.rel_seq);
                        line.rel_ack = view.rel_ack;
                        line.win = Some(view.window);
                        line.len = Some(s.payload_len);
                        line.hdr_len = Some(s.tcp.header_len);
                        line.checksum = Some(s.tcp.checksum);
                        line.urgent = Some(s.tcp.urgent);
                        line.options =
                            Some(s.tcp.options.iter().map(ToString::to_string).collect());
                        let headers = s.ip_header_len + s.tcp.header_len;
                        if captured.data.len() > headers {
                            line.payload = Some(
                                captured.data[headers..]
                                    .iter()
                                    .map(|b| format!("{b:02x}"))
                                    .collect(),
                            );
                        }
                    }
                    Err(e) => line.error = Some(e.to_string()),
                }
            }
        }
    }
    serde_json::to_writer(&mut *out, &line)?;
    out.write_all(b"\n")
}

fn endpoint_text(ep: &Endpoint) -> String {
    super::endpoint(ep)
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
