//! Grouping events into connections.
//!
//! A connection is found by whichever identity an event carries: the kernel socket (state and
//! kernel events, syscalls once their fd was tied to one), the `(pid, fd)` pair (syscalls), or
//! for `accept` the 4-tuple of the child socket it returns. Each connection gets a small id in
//! order of first sight; kernel socket addresses never leave this module.

use std::collections::VecDeque;

use rustc_hash::FxHashMap as HashMap;
use std::net::IpAddr;

use tracer_common::{KernelFn, SyscallOp, tcp_state};

use crate::events::{Endpoint, Event, Kind};
use crate::packet::{Segment, flags};

/// A connection's id, as shown to users (`conn #3`).
pub type ConnId = u64;

/// What a socket is used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Not known yet (a socket with no connect/listen/accept seen).
    Unknown,
    /// The active opener (connect).
    Client,
    /// A connection accepted by a listener.
    Server,
    /// A listening socket.
    Listener,
}

impl Role {
    /// Lower-case name for output.
    pub fn name(self) -> &'static str {
        match self {
            Self::Unknown => "socket",
            Self::Client => "client",
            Self::Server => "server",
            Self::Listener => "listener",
        }
    }
}

/// Everything known about one connection.
#[derive(Clone, Debug)]
pub struct Conn {
    /// Its id.
    pub id: ConnId,
    /// Owner process id (0 while unknown).
    pub pid: u32,
    /// Owner command name.
    pub comm: String,
    /// `AF_INET`/`AF_INET6`, 0 while unknown.
    pub family: u16,
    /// Local end.
    pub local: Option<Endpoint>,
    /// Remote end.
    pub remote: Option<Endpoint>,
    /// What the socket is for.
    pub role: Role,
    /// First event's timestamp.
    pub first_ns: u64,
    /// Last event's end.
    pub last_ns: u64,
    /// Every state the socket went through, in order, starting with the first `from`.
    pub states: Vec<u8>,
    /// Bytes the application sent (syscall return values).
    pub bytes_sent: u64,
    /// Bytes the application received.
    pub bytes_received: u64,
    /// When the handshake started (SYN_SENT or SYN_RECV entered).
    pub handshake_start_ns: Option<u64>,
    /// Handshake duration, once ESTABLISHED.
    pub handshake_ns: Option<u64>,
    /// A RST arrived.
    pub reset_received: bool,
    /// A RST was sent.
    pub reset_sent: bool,
    /// Retransmitted segments.
    pub retransmits: u32,
    /// The last `connect` error, as a negative errno.
    pub connect_error: Option<i64>,
    /// Events seen.
    pub events: u64,
    /// Segments seen.
    pub packets: u64,
    /// Initial sequence numbers of this end and of the peer (from the SYNs, else the first
    /// segment seen), the base of relative numbers.
    pub isn: [Option<u32>; 2],
    /// Window-scale shifts announced in the SYNs by this end and by the peer.
    pub wscale: [Option<u8>; 2],
    /// State changes with their times, for the ladder.
    pub state_log: Vec<(u64, u8)>,
    /// Segments, for the ladder (kept only when asked for, bounded).
    pub ladder: Vec<LadderRow>,
    closed: bool,
    retiring: bool,
    sk: Option<u64>,
    fds: u32,
}

impl Conn {
    fn new(id: ConnId, ev: &Event) -> Self {
        Self {
            id,
            pid: 0,
            comm: String::new(),
            family: 0,
            local: None,
            remote: None,
            role: Role::Unknown,
            first_ns: ev.ts_ns,
            last_ns: ev.ts_ns,
            states: Vec::new(),
            bytes_sent: 0,
            bytes_received: 0,
            handshake_start_ns: None,
            handshake_ns: None,
            reset_received: false,
            reset_sent: false,
            retransmits: 0,
            connect_error: None,
            events: 0,
            packets: 0,
            isn: [None, None],
            wscale: [None, None],
            state_log: Vec::new(),
            ladder: Vec::new(),
            closed: false,
            retiring: false,
            sk: None,
            fds: 0,
        }
    }

    /// How the connection ended, or `None` while it is open.
    pub fn outcome(&self) -> Option<&'static str> {
        if !self.closed {
            return None;
        }
        let last = self.states.last().copied();
        Some(if self.connect_error == Some(-libc::ECONNREFUSED as i64) {
            "refused"
        } else if self.reset_received {
            "reset by peer"
        } else if self.reset_sent {
            "reset"
        } else if last == Some(tcp_state::TIME_WAIT) {
            "closed (TIME_WAIT)"
        } else if self.role == Role::Listener {
            "listener closed"
        } else {
            "closed"
        })
    }

    fn see_segment(
        &mut self,
        id: ConnId,
        seg: &Segment,
        out: bool,
        ts: u64,
        keep: bool,
    ) -> SegmentView {
        let tcp = &seg.tcp;
        let (me, peer) = if out { (0, 1) } else { (1, 0) };
        self.packets += 1;
        self.last_ns = self.last_ns.max(ts);
        if tcp.has(flags::SYN) {
            self.isn[me] = Some(tcp.seq);
            self.wscale[me] = tcp.window_scale();
        }
        // Mid-stream: number from the first segment seen, as if its SYN had come just before.
        let base = *self.isn[me].get_or_insert(tcp.seq.wrapping_sub(1));
        let rel_ack = tcp
            .has(flags::ACK)
            .then(|| self.isn[peer].map(|isn| tcp.ack.wrapping_sub(isn)))
            .flatten();
        let window = match (self.wscale[me], self.wscale[peer]) {
            (Some(shift), Some(_)) if !tcp.has(flags::SYN) => {
                u32::from(tcp.window) << shift.min(14)
            }
            _ => u32::from(tcp.window),
        };
        let view = SegmentView {
            conn: id,
            out,
            rel_seq: tcp.seq.wrapping_sub(base),
            rel_ack,
            window,
        };
        if keep && self.ladder.len() < LADDER_ROWS {
            self.ladder.push(LadderRow {
                ts_ns: ts,
                out,
                flags: tcp.tcpdump_flags(),
                rel_seq: view.rel_seq,
                rel_ack,
                len: seg.payload_len,
            });
        }
        view
    }

    /// This end's state at `ts` (the first known state before any change).
    pub fn state_at(&self, ts: u64) -> Option<u8> {
        let mut state = self.state_log.first().map(|&(_, s)| s);
        for &(t, s) in &self.state_log {
            if t <= ts {
                state = Some(s);
            }
        }
        state
    }

    /// Whether the socket reached CLOSE or TIME_WAIT.
    pub fn is_closed(&self) -> bool {
        self.closed
    }
}

/// One segment as the ladder draws it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LadderRow {
    /// When it passed the hook.
    pub ts_ns: u64,
    /// Sent by this end.
    pub out: bool,
    /// tcpdump-style flags.
    pub flags: String,
    /// Relative sequence number.
    pub rel_seq: u32,
    /// Relative acknowledgement number, when ACK is set.
    pub rel_ack: Option<u32>,
    /// Payload length.
    pub len: usize,
}

/// A segment seen from one end of a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentView {
    /// The connection.
    pub conn: ConnId,
    /// Sent by that end (`out`) or received (`in`).
    pub out: bool,
    /// Sequence number relative to the sender's initial one.
    pub rel_seq: u32,
    /// Acknowledgement number relative to the receiver's initial one, when ACK is set.
    pub rel_ack: Option<u32>,
    /// The window in bytes: scaled once both ends announced window scaling.
    pub window: u32,
}

/// Segments kept per connection for the ladder.
const LADDER_ROWS: usize = 400;

/// The connection table.
#[derive(Default)]
pub struct Correlator {
    by_ends: HashMap<(Endpoint, Endpoint), ConnId>,
    /// Keep segments for the ladder diagram.
    pub keep_ladder: bool,
    conns: HashMap<ConnId, Conn>,
    by_sock: HashMap<u64, ConnId>,
    by_fd: HashMap<(u32, i32), ConnId>,
    by_tuple: HashMap<(u16, Endpoint), ConnId>,
    alias: HashMap<ConnId, ConnId>,
    retiring: VecDeque<(u64, ConnId)>,
    finished: VecDeque<Conn>,
    next_id: ConnId,
    /// Connections seen in all.
    pub total: u64,
}

/// How many finished connections are kept for the exit summary.
const FINISHED_KEPT: usize = 1024;

impl Correlator {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Assigns `ev` to a connection, updating what is known about it. May rewrite a state
    /// event's `to` from CLOSE to TIME_WAIT (see [`Self::timewait`]). Returns the connection.
    pub fn observe(&mut self, ev: &mut Event) -> ConnId {
        let id = self.find(ev);
        self.timewait(id, ev);
        self.update(id, ev);
        id
    }

    /// The connection `id` (following merges), live or recently finished.
    pub fn get(&self, id: ConnId) -> Option<&Conn> {
        let id = self.resolve(id);
        self.conns
            .get(&id)
            .or_else(|| self.finished.iter().rev().find(|c| c.id == id))
    }

    /// Connections still open and those finished recently, by id.
    pub fn all(&self) -> Vec<&Conn> {
        let mut all: Vec<&Conn> = self.conns.values().chain(self.finished.iter()).collect();
        all.sort_by_key(|c| c.id);
        all
    }

    /// Follows merges to the surviving id.
    pub fn resolve(&self, mut id: ConnId) -> ConnId {
        while let Some(&next) = self.alias.get(&id) {
            id = next;
        }
        id
    }

    /// Drops finished connections whose last event is older than `before_ns`, keeping a
    /// bounded history for the summary. Keeps memory flat under connection churn.
    pub fn expire(&mut self, before_ns: u64) {
        while let Some(&(deadline, id)) = self.retiring.front() {
            if deadline > before_ns {
                break;
            }
            self.retiring.pop_front();
            if let Some(conn) = self.conns.remove(&id) {
                if conn.sk.is_some_and(|sk| self.by_sock.get(&sk) == Some(&id)) {
                    self.by_sock.remove(&conn.sk.unwrap_or_default());
                }
                self.by_tuple.retain(|_, v| *v != id);
                self.by_ends.retain(|_, v| *v != id);
                self.alias.retain(|_, v| *v != id);
                if self.finished.len() == FINISHED_KEPT {
                    self.finished.pop_front();
                }
                self.finished.push_back(conn);
            }
        }
    }

    /// The traced ends a segment belongs to (both ends on loopback), each with the segment
    /// seen from that end. A segment no known connection claims gets a connection of its own.
    pub fn segment(&mut self, ev: &Event, seg: &Segment) -> Vec<SegmentView> {
        let src = Endpoint {
            addr: seg.src,
            port: seg.tcp.sport,
        };
        let dst = Endpoint {
            addr: seg.dst,
            port: seg.tcp.dport,
        };
        let mut ends: Vec<(ConnId, bool)> = Vec::with_capacity(2);
        if let Some(&id) = self.by_ends.get(&(src, dst)) {
            ends.push((self.resolve(id), true));
        }
        if let Some(&id) = self.by_ends.get(&(dst, src)) {
            ends.push((self.resolve(id), false));
        }
        if ends.is_empty() {
            let id = self.create(ev);
            if let Some(conn) = self.conns.get_mut(&id) {
                conn.local = Some(src);
                conn.remote = Some(dst);
                conn.family = ev.family;
            }
            self.by_ends.insert((src, dst), id);
            ends.push((id, true));
        }
        let keep = self.keep_ladder;
        ends.into_iter()
            .filter_map(|(id, out)| {
                let conn = self.conns.get_mut(&id)?;
                Some(conn.see_segment(id, seg, out, ev.ts_ns, keep))
            })
            .collect()
    }

    fn create(&mut self, ev: &Event) -> ConnId {
        self.next_id += 1;
        self.total += 1;
        let id = self.next_id;
        self.conns.insert(id, Conn::new(id, ev));
        id
    }

    fn live(&self, id: ConnId) -> Option<&Conn> {
        self.conns.get(&id)
    }

    fn find(&mut self, ev: &Event) -> ConnId {
        let opening = matches!(
            ev.kind,
            Kind::State { from, to } if (from == tcp_state::CLOSE
                && (to == tcp_state::SYN_SENT || to == tcp_state::LISTEN))
                || to == tcp_state::SYN_RECV
        );
        if let Kind::Syscall(SyscallOp::Socket) = ev.kind {
            let id = self.create(ev);
            if ev.fd >= 0 {
                self.bind_fd(ev.pid, ev.fd, id);
            }
            return id;
        }
        if let Kind::Syscall(SyscallOp::Accept | SyscallOp::Accept4) = ev.kind
            && ev.ret >= 0
        {
            return self.accepted(ev);
        }
        let by_sock = (ev.sock != 0)
            .then(|| self.by_sock.get(&ev.sock).copied())
            .flatten()
            .map(|id| self.resolve(id))
            .filter(|&id| {
                // A socket address reused by a new connection starts a new life.
                !(opening && self.live(id).is_some_and(|c| !c.states.is_empty()))
            });
        let by_fd = (ev.fd >= 0)
            .then(|| self.by_fd.get(&(ev.pid, ev.fd)).copied())
            .flatten()
            .map(|id| self.resolve(id));
        let by_tuple = || -> Option<ConnId> {
            let local = ev.local?;
            let remote = ev.remote?;
            self.by_tuple.get(&(local.port, remote)).copied()
        };
        let id = match (by_fd, by_sock) {
            (Some(a), Some(b)) if a != b => {
                // Seen first through two identities; from now on they are one connection.
                self.merge(a, b);
                a
            }
            (Some(a), _) => a,
            (None, Some(b)) => b,
            (None, None) => {
                match by_tuple().filter(|&id| self.live(id).is_some_and(|c| c.sk.is_none())) {
                    Some(id) => id,
                    None => self.create(ev),
                }
            }
        };
        if ev.sock != 0 {
            self.by_sock.insert(ev.sock, id);
            if let Some(conn) = self.conns.get_mut(&id) {
                conn.sk = Some(ev.sock);
            }
        }
        if ev.fd >= 0 && by_fd.is_none() && !matches!(ev.kind, Kind::Syscall(SyscallOp::Close)) {
            self.bind_fd(ev.pid, ev.fd, id);
        }
        id
    }

    /// Folds connection `b` into `a`, which keeps its id.
    fn merge(&mut self, a: ConnId, b: ConnId) {
        self.alias.insert(b, a);
        let Some(old) = self.conns.remove(&b) else {
            return;
        };
        self.total -= 1;
        for v in self
            .by_sock
            .values_mut()
            .chain(self.by_fd.values_mut())
            .chain(self.by_tuple.values_mut())
        {
            if *v == b {
                *v = a;
            }
        }
        if let Some(conn) = self.conns.get_mut(&a) {
            conn.first_ns = conn.first_ns.min(old.first_ns);
            conn.last_ns = conn.last_ns.max(old.last_ns);
            conn.local = conn.local.or(old.local);
            conn.remote = conn.remote.or(old.remote);
            if conn.role == Role::Unknown {
                conn.role = old.role;
            }
            if conn.states.is_empty() {
                conn.states = old.states;
            }
            conn.bytes_sent += old.bytes_sent;
            conn.bytes_received += old.bytes_received;
            conn.handshake_start_ns = conn.handshake_start_ns.or(old.handshake_start_ns);
            conn.handshake_ns = conn.handshake_ns.or(old.handshake_ns);
            conn.reset_received |= old.reset_received;
            conn.reset_sent |= old.reset_sent;
            conn.retransmits += old.retransmits;
            conn.events += old.events;
            conn.closed |= old.closed;
            conn.sk = conn.sk.or(old.sk);
            conn.fds += old.fds;
        }
    }

    /// `accept` returned a new fd: it belongs to the child socket with the listener's port and
    /// the peer's address.
    fn accepted(&mut self, ev: &Event) -> ConnId {
        let listener = self
            .by_fd
            .get(&(ev.pid, ev.fd))
            .copied()
            .and_then(|id| self.live(self.resolve(id)));
        let local = listener.and_then(|l| l.local);
        let child = match (local, ev.remote) {
            (Some(local), Some(remote)) => self.by_tuple.get(&(local.port, remote)).copied(),
            _ => None,
        };
        let id = match child {
            Some(id) => id,
            None => {
                let id = self.create(ev);
                if let (Some(local), Some(remote)) = (local, ev.remote) {
                    self.by_tuple.insert((local.port, remote), id);
                }
                if let Some(conn) = self.conns.get_mut(&id) {
                    conn.local = local;
                    conn.remote = ev.remote;
                }
                id
            }
        };
        self.bind_fd(ev.pid, ev.ret as i32, id);
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.role = Role::Server;
            if conn.remote.is_none() {
                conn.remote = ev.remote;
            }
        }
        id
    }

    fn bind_fd(&mut self, pid: u32, fd: i32, id: ConnId) {
        if let Some(old) = self.by_fd.insert((pid, fd), id)
            && let Some(conn) = self.conns.get_mut(&old)
        {
            conn.fds = conn.fds.saturating_sub(1);
        }
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.fds += 1;
        }
    }

    /// The kernel reports a socket that enters TIME_WAIT as FIN_WAIT2 (or CLOSING) → CLOSE,
    /// because `tcp_time_wait()` hands the connection to a separate timewait socket and closes
    /// the full one. Without a RST, that transition is the move into TIME_WAIT: show it so.
    fn timewait(&self, id: ConnId, ev: &mut Event) {
        if let Kind::State { from, to } = &mut ev.kind
            && *to == tcp_state::CLOSE
            && (*from == tcp_state::FIN_WAIT2 || *from == tcp_state::CLOSING)
            && !self
                .live(id)
                .is_some_and(|c| c.reset_received || c.reset_sent)
        {
            *to = tcp_state::TIME_WAIT;
            ev.timewait = true;
        }
    }

    fn update(&mut self, id: ConnId, ev: &Event) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.events += 1;
        conn.last_ns = conn.last_ns.max(ev.end_ns());
        conn.first_ns = conn.first_ns.min(ev.ts_ns);
        if ev.pid != 0 && (conn.pid == 0 || !ev.owner_guessed) {
            conn.pid = ev.pid;
            conn.comm.clone_from(&ev.comm);
        }
        if ev.family != 0 {
            conn.family = ev.family;
        }
        match ev.kind {
            Kind::State { from, to } => {
                set_endpoints(conn, ev);
                if conn.states.is_empty() {
                    conn.states.push(from);
                    conn.state_log.push((ev.ts_ns, from));
                }
                conn.states.push(to);
                conn.state_log.push((ev.ts_ns, to));
                match to {
                    tcp_state::SYN_SENT => {
                        conn.role = Role::Client;
                        conn.handshake_start_ns = Some(ev.ts_ns);
                    }
                    tcp_state::SYN_RECV => {
                        conn.role = Role::Server;
                        conn.handshake_start_ns = Some(ev.ts_ns);
                        if let (Some(local), Some(remote)) = (ev.local, ev.remote) {
                            self.by_tuple.insert((local.port, remote), id);
                        }
                    }
                    tcp_state::LISTEN => conn.role = Role::Listener,
                    tcp_state::ESTABLISHED => {
                        if let Some(start) = conn.handshake_start_ns {
                            conn.handshake_ns.get_or_insert(ev.ts_ns - start);
                        }
                    }
                    tcp_state::CLOSE | tcp_state::TIME_WAIT => conn.closed = true,
                    _ => {}
                }
            }
            Kind::Kernel(func) => {
                if ev.local.is_some() {
                    set_endpoints(conn, ev);
                }
                match func {
                    KernelFn::TcpReceiveReset => conn.reset_received = true,
                    KernelFn::TcpSendReset => conn.reset_sent = true,
                    KernelFn::TcpRetransmitSkb => conn.retransmits += 1,
                    _ => {}
                }
            }
            Kind::Syscall(op) => {
                match op {
                    SyscallOp::Connect => {
                        if conn.remote.is_none() {
                            conn.remote = ev.remote;
                        }
                        if conn.role == Role::Unknown {
                            conn.role = Role::Client;
                        }
                        if ev.ret < 0 && ev.ret != -(libc::EINPROGRESS as i64) {
                            conn.connect_error = Some(ev.ret);
                        }
                    }
                    SyscallOp::Bind if conn.local.is_none() => conn.local = ev.local,
                    SyscallOp::Listen => conn.role = Role::Listener,
                    _ => {}
                }
                if ev.ret > 0 {
                    if op.sends() {
                        conn.bytes_sent += ev.ret as u64;
                    } else if op.receives() {
                        conn.bytes_received += ev.ret as u64;
                    }
                }
                if op == SyscallOp::Close && ev.ret == 0 {
                    if self.by_fd.remove(&(ev.pid, ev.fd)).is_some() {
                        conn.fds = conn.fds.saturating_sub(1);
                    }
                    if conn.fds == 0 && conn.states.is_empty() {
                        // Closed without ever connecting or listening.
                        conn.closed = true;
                    }
                }
            }
            Kind::SyscallEnter(_) | Kind::Packet => {}
        }
        if let (Some(l), Some(r)) = (conn.local, conn.remote)
            && l.port != 0
            && r.port != 0
            && !l.addr.is_unspecified()
        {
            self.by_ends.insert((l, r), id);
            if conn.role == Role::Server {
                // Some kernels (6.1) report a child's SYN_RECV before its peer address is
                // set: it becomes joinable by accept() once any event names both ends.
                self.by_tuple.insert((l.port, r), id);
            }
        }
        if conn.closed && conn.fds == 0 && !conn.retiring {
            conn.retiring = true;
            self.retiring
                .push_back((conn.last_ns + RETIRE_AFTER_NS, id));
        }
    }
}

/// How long a finished connection stays in the live table, for late events and rendering.
const RETIRE_AFTER_NS: u64 = 300_000_000;

fn set_endpoints(conn: &mut Conn, ev: &Event) {
    if let Some(local) = ev.local
        && (local.port != 0 || conn.local.is_none())
    {
        conn.local = Some(merge_endpoint(conn.local, local));
    }
    if let Some(remote) = ev.remote
        && (remote.port != 0 || conn.remote.is_none())
    {
        conn.remote = Some(merge_endpoint(conn.remote, remote));
    }
}

/// Keeps a known address when the new endpoint has none (e.g. a listener's wildcard).
fn merge_endpoint(old: Option<Endpoint>, new: Endpoint) -> Endpoint {
    match old {
        Some(old) if new.addr.is_unspecified() && !old.addr.is_unspecified() => Endpoint {
            addr: old.addr,
            port: new.port,
        },
        _ => new,
    }
}

/// Used by tests and renderers: an endpoint from parts.
pub fn endpoint(addr: IpAddr, port: u16) -> Endpoint {
    Endpoint { addr, port }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use tracer_common::Hook;

    fn ev(kind: Kind, sock: u64, fd: i32, ts: u64) -> Event {
        let mut e = Event::blank(kind, Hook::TpInetSockSetState, ts);
        e.sock = sock;
        e.fd = fd;
        e.pid = 42;
        e.tid = 42;
        e.comm = "client".into();
        e
    }

    fn state(from: u8, to: u8, sock: u64, ts: u64) -> Event {
        let mut e = ev(Kind::State { from, to }, sock, -1, ts);
        e.local = Some(endpoint(Ipv4Addr::LOCALHOST.into(), 41000));
        e.remote = Some(endpoint(Ipv4Addr::LOCALHOST.into(), 8080));
        e
    }

    #[test]
    fn fd_and_socket_identities_meet_in_one_connection() {
        let mut c = Correlator::new();
        let mut socket = ev(Kind::Syscall(SyscallOp::Socket), 0, 3, 1);
        let a = c.observe(&mut socket);
        let mut syn = state(tcp_state::CLOSE, tcp_state::SYN_SENT, 0xabc, 2);
        syn.fd = 3;
        assert_eq!(c.observe(&mut syn), a);
        let mut est = state(tcp_state::SYN_SENT, tcp_state::ESTABLISHED, 0xabc, 5);
        assert_eq!(c.observe(&mut est), a);
        let mut write = ev(Kind::Syscall(SyscallOp::Write), 0, 3, 6);
        write.ret = 5;
        assert_eq!(c.observe(&mut write), a);
        let conn = c.get(a).unwrap();
        assert_eq!(conn.role, Role::Client);
        assert_eq!(conn.bytes_sent, 5);
        assert_eq!(conn.handshake_ns, Some(3));
        assert_eq!(conn.local.unwrap().port, 41000);
        assert_eq!(c.total, 1);
    }

    #[test]
    fn fin_wait2_to_close_is_time_wait_unless_reset() {
        let mut c = Correlator::new();
        let mut e = state(tcp_state::FIN_WAIT2, tcp_state::CLOSE, 7, 1);
        let id = c.observe(&mut e);
        assert_eq!(
            e.kind,
            Kind::State {
                from: tcp_state::FIN_WAIT2,
                to: tcp_state::TIME_WAIT
            }
        );
        assert!(e.timewait);
        assert_eq!(c.get(id).unwrap().outcome(), Some("closed (TIME_WAIT)"));

        let mut c = Correlator::new();
        let mut rst = ev(Kind::Kernel(KernelFn::TcpReceiveReset), 9, -1, 1);
        c.observe(&mut rst);
        let mut e = state(tcp_state::FIN_WAIT2, tcp_state::CLOSE, 9, 2);
        let id = c.observe(&mut e);
        assert_eq!(
            e.kind,
            Kind::State {
                from: tcp_state::FIN_WAIT2,
                to: tcp_state::CLOSE
            }
        );
        assert_eq!(c.get(id).unwrap().outcome(), Some("reset by peer"));
    }

    #[test]
    fn a_reused_socket_address_starts_a_new_connection() {
        let mut c = Correlator::new();
        let mut a = state(tcp_state::CLOSE, tcp_state::SYN_SENT, 5, 1);
        let first = c.observe(&mut a);
        let mut b = state(tcp_state::SYN_SENT, tcp_state::CLOSE, 5, 2);
        c.observe(&mut b);
        let mut again = state(tcp_state::CLOSE, tcp_state::SYN_SENT, 5, 3);
        assert_ne!(c.observe(&mut again), first);
    }

    #[test]
    fn accept_joins_the_child_by_its_tuple() {
        let mut c = Correlator::new();
        let mut listen = ev(
            Kind::State {
                from: tcp_state::CLOSE,
                to: tcp_state::LISTEN,
            },
            1,
            3,
            1,
        );
        listen.local = Some(endpoint(Ipv4Addr::UNSPECIFIED.into(), 8080));
        let listener = c.observe(&mut listen);
        let mut child = ev(
            Kind::State {
                from: tcp_state::LISTEN,
                to: tcp_state::SYN_RECV,
            },
            2,
            -1,
            2,
        );
        child.local = Some(endpoint(Ipv4Addr::LOCALHOST.into(), 8080));
        child.remote = Some(endpoint(Ipv4Addr::LOCALHOST.into(), 41000));
        let server = c.observe(&mut child);
        assert_ne!(server, listener);
        let mut accept = ev(Kind::Syscall(SyscallOp::Accept4), 0, 3, 3);
        accept.ret = 4;
        accept.remote = Some(endpoint(Ipv4Addr::LOCALHOST.into(), 41000));
        assert_eq!(c.observe(&mut accept), server);
        let mut read = ev(Kind::Syscall(SyscallOp::Read), 0, 4, 4);
        assert_eq!(c.observe(&mut read), server);
    }
}
