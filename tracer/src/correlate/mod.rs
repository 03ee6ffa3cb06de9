//! Correlation: which connection each event belongs to, and what that tells about the
//! connection. Every event passes here once, before reordering — segments included — so the
//! connection table changes on this side of the pipeline only.
//!
//! A connection is found by whichever identity an event carries: the kernel socket (state and
//! kernel events, syscalls once their fd was tied to one), the `(pid, fd)` pair (syscalls), or
//! for `accept` the 4-tuple of the child socket it returns. A segment belongs to each traced end
//! whose 4-tuple it carries. Each connection gets a small id in order of first sight; kernel
//! socket addresses never leave this module.

mod congestion;
mod conn;
mod copies;
mod segments;

use std::collections::VecDeque;
use std::net::IpAddr;

use rustc_hash::FxHashMap as HashMap;
use tracer_common::{KernelFn, SyscallOp, tcp_state};

pub use congestion::CongestionStats;
pub use conn::{Conn, ConnId, Role};
pub use segments::{LADDER_ROWS, LadderRow, SegmentView};

use crate::decode::tcpip::Segment;
use crate::decode::{Endpoint, Event, Kind, StateChange};
use copies::Copies;

/// One traced end an event belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct End {
    /// The connection.
    pub conn: ConnId,
    /// For a segment: how that end sees it.
    pub segment: Option<SegmentView>,
}

/// The connections an event belongs to: one, or for a segment each traced end that saw it
/// (none when no traced end claims it or it could not be decoded). Held inline: this is made
/// for every event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ends([Option<End>; 2]);

impl Ends {
    /// Just `end`.
    pub fn one(end: End) -> Self {
        Self([Some(end), None])
    }

    /// Adds `end` (a segment has at most two traced ends: its sender and its receiver).
    fn push(&mut self, end: End) {
        if let Some(slot) = self.0.iter_mut().find(|slot| slot.is_none()) {
            *slot = Some(end);
        }
    }

    /// The ends, in order.
    pub fn iter(&self) -> impl Iterator<Item = &End> {
        self.0.iter().flatten()
    }
}

/// An event with the connections it belongs to.
#[derive(Clone, Debug)]
pub struct Correlated {
    /// The event as decoded.
    pub event: Event,
    /// Its connections.
    pub ends: Ends,
    /// A state event the kernel reported as `-> CLOSE` that is really the move into TIME_WAIT
    /// (see `Correlator::timewait`).
    pub timewait: bool,
}

/// A segment waiting for a traced end that is about to be known (the accepted child of a
/// traced listener is named only once the handshake's last ACK arrives).
struct Parked {
    deadline_ns: u64,
    event: Event,
}

/// How long a segment to or from a traced listener's port waits for its accepted child.
const PARK_LISTENER_NS: u64 = 1_000_000_000;
/// How long any other unclaimed segment waits for a connection that names its ends.
const PARK_OTHER_NS: u64 = 30_000_000;
/// Segments parked at most; beyond that the oldest is released at once.
const PARKED_MAX: usize = 4096;
/// Handshakes whose SYN's arrival is remembered at most.
const SYN_ARRIVALS_MAX: usize = 16384;

/// The connection table.
#[derive(Default)]
pub struct Correlator {
    by_ends: HashMap<(Endpoint, Endpoint), ConnId>,
    /// Keep segments for the ladder diagram.
    pub keep_ladder: bool,
    /// Whether records were lost in the kernel (the ring buffer was full): only then is a
    /// connection taken to have ended unseen (`end_unseen`). Without losses, a socket address
    /// that seems reused by a live connection says a record was attributed wrongly (2 in
    /// 11,759 connections of a recording made before the fd-reuse fixes; 0 in 121,602 after),
    /// not that its end was lost.
    pub records_lost: bool,
    /// Drop segments no traced end claims instead of giving them a connection of their own:
    /// with `--netns`/`--cgroup` they belong to what is not traced (the packet filter lets
    /// through every segment to a traced listener's port, whatever namespace it is in).
    pub drop_strays: bool,
    /// Segments dropped so.
    pub strays: u64,
    conns: HashMap<ConnId, Conn>,
    by_sock: HashMap<u64, ConnId>,
    by_fd: HashMap<(u32, i32), ConnId>,
    /// Fd numbers given to a new socket before the old one's close was seen: each earlier
    /// holder, oldest first, with when the next one got the number. close() gives the number
    /// back as it starts, and the record of a close entered before that time is the old
    /// connection's (see `moved_from`); under churn the number can move twice before the
    /// first close's record comes.
    moved_fds: HashMap<(u32, i32), Vec<(ConnId, u64)>>,
    by_tuple: HashMap<(u16, Endpoint), ConnId>,
    alias: HashMap<ConnId, ConnId>,
    /// Retired connections whose names may still be in `by_ends` and `by_tuple`: lookups there
    /// skip ids no longer live, and the names go in one pass once there are enough of them.
    /// A pass per tick was O(names) each time, and under churn the names are those of every
    /// connection in TIME_WAIT (a minute's worth): most of the consumer's time.
    unnamed: rustc_hash::FxHashSet<ConnId>,
    retiring: VecDeque<(u64, ConnId)>,
    /// Connections a resent SYN-ACK made, by when their handshake must have completed: one
    /// still half-open then never will (the listener gave up), and is finished — a SYN flood
    /// does not grow the table for ever.
    half_open: VecDeque<(u64, ConnId)>,
    finished: VecDeque<Conn>,
    parked: VecDeque<Parked>,
    /// Parked segments from each sender to each receiver: how many, and the earliest
    /// deadline among them. A packet asks whether an earlier one of its connection waits,
    /// once per packet.
    parked_ends: HashMap<(Endpoint, Endpoint), (u32, u64)>,
    /// When each client's SYN to a traced listener arrived, by (client, server) end: the
    /// server's handshake starts then, though its socket is made only when the last ACK
    /// arrives (and its SYN may have been shown before that, parked no longer).
    syn_arrivals: HashMap<(Endpoint, Endpoint), u64>,
    /// Local ports of the live traced listeners, kept current whenever a listener changes.
    listening: rustc_hash::FxHashSet<u16>,
    /// Ends named for the first time since parked segments were last looked at: only a
    /// segment between such ends can be released before its deadline.
    named: Vec<(Endpoint, Endpoint)>,
    /// A listener changed since parked segments were last looked at: any may be released.
    rescan: bool,
    copies: Copies,
    next_id: ConnId,
    /// Connections seen in all.
    pub total: u64,
    /// Finished connections no longer kept for the summary (beyond [`FINISHED_KEPT`]).
    pub evicted: u64,
}

/// Fd numbers remembered as moved to a new socket at most (see `Correlator::moved_fds`).
const MOVED_FDS_MAX: usize = 4096;
/// Earlier holders remembered per fd number at most.
const MOVES_KEPT: usize = 4;

/// Retired connections whose names are kept at least until this many (see
/// `Correlator::unnamed`).
const UNNAME_AT: usize = 256;

/// `lo`'s interface index: segments on it are captured once, leaving.
const LOOPBACK_IFINDEX: u32 = 1;

/// How many finished connections are kept for the exit summary: it lists them, and says how
/// many older ones it leaves out.
pub const FINISHED_KEPT: usize = 1024;

impl Correlator {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Assigns `ev` to its connections, updating what is known about them, and hands the
    /// result to `out` — later for a segment whose traced end is not known yet, together with
    /// the events that make it known.
    pub fn observe(&mut self, ev: Event, out: &mut dyn FnMut(Correlated)) {
        if matches!(ev.kind, Kind::Packet(_)) {
            self.segment(ev, out);
            return;
        }
        if synack_resent(&ev) {
            self.synack_resent(ev, out);
            self.release_parked(0, out);
            return;
        }
        let id = self.find(&ev);
        let timewait = self.timewait(id, &ev);
        self.update(id, &ev, timewait);
        if let Some(call) = ev.syscall()
            && call.exit.is_some()
            && call.ret() >= 0
            && call.op.duplicates(&call.args)
        {
            // A second fd for the socket: its syscalls land on the same connection.
            self.bind_fd(ev.pid, call.ret() as i32, id, ev.end_ns());
        }
        self.forget_if_freed(id, &ev);
        if self
            .conns
            .get(&id)
            .is_some_and(|c| c.role == Role::Listener)
        {
            self.refresh_listening();
        }
        out(Correlated {
            event: ev,
            ends: Ends::one(End {
                conn: id,
                segment: None,
            }),
            timewait,
        });
        // What this event named may complete parked segments (deadline 0: none expires here).
        self.release_parked(0, out);
    }

    /// Releases parked segments whose deadline passed by `now_ns`.
    pub fn expire(&mut self, now_ns: u64, out: &mut dyn FnMut(Correlated)) {
        self.release_parked(now_ns, out);
    }

    /// Releases the parked segments seen before `ts_ns`, whatever their deadline: the
    /// caller holds every later event back while they wait (`oldest_parked_ns`), and can hold
    /// only so many.
    pub fn release_parked_before(&mut self, ts_ns: u64, out: &mut dyn FnMut(Correlated)) {
        self.release_where(out, |_, p| p.event.ts_ns < ts_ns);
    }

    /// Releases every parked segment.
    pub fn flush(&mut self, out: &mut dyn FnMut(Correlated)) {
        self.release_parked(u64::MAX, out);
    }

    /// The time of the oldest parked segment: nothing later may be rendered before it.
    pub fn oldest_parked_ns(&self) -> Option<u64> {
        self.parked.iter().map(|p| p.event.ts_ns).min()
    }

    /// The connection `id` (following merges), live or recently finished.
    pub fn get(&self, id: ConnId) -> Option<&Conn> {
        let id = self.resolve(id);
        self.conns
            .get(&id)
            .or_else(|| self.finished.iter().rev().find(|c| c.id == id))
    }

    /// The live connection `id` (following merges), to add what only the pipeline can learn.
    pub fn live_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        let id = self.resolve(id);
        self.conns.get_mut(&id)
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

    /// Retires the connections finished long enough before `rendered_ns` — the time up to
    /// which every event has been rendered — keeping a bounded history for the summary:
    /// memory stays flat under churn, and no event waiting to be rendered loses its
    /// connection (a history that moved on under churn would not hold it any more).
    pub fn retire_before(&mut self, rendered_ns: u64) {
        while let Some(&(deadline, id)) = self.half_open.front() {
            if deadline > rendered_ns {
                break;
            }
            self.half_open.pop_front();
            if let Some(conn) = self.conns.get_mut(&id).filter(|c| c.half_open()) {
                conn.closed = true;
                conn.retiring = true;
                // Its last event was long before: it leaves with the next retirement.
                self.retiring.push_front((rendered_ns, id));
            }
        }
        let mut gone = rustc_hash::FxHashSet::default();
        let mut listener_gone = false;
        while let Some(&(deadline, id)) = self.retiring.front() {
            if deadline > rendered_ns {
                break;
            }
            self.retiring.pop_front();
            if let Some(conn) = self.conns.remove(&id) {
                if conn.sk.is_some_and(|sk| self.by_sock.get(&sk) == Some(&id)) {
                    self.by_sock.remove(&conn.sk.unwrap_or_default());
                }
                listener_gone |= conn.role == Role::Listener;
                gone.insert(id);
                if self.finished.len() == FINISHED_KEPT {
                    self.finished.pop_front();
                    self.evicted += 1;
                }
                self.finished.push_back(conn);
            }
        }
        // Merges are few: their index is cleaned at once.
        if !gone.is_empty() && !self.alias.is_empty() {
            self.alias.retain(|_, v| !gone.contains(v));
        }
        // The names, in one pass once the retired outnumber a quarter of them: amortized
        // O(1) per connection.
        self.unnamed.extend(gone);
        if self.unnamed.len() >= UNNAME_AT.max((self.by_ends.len() + self.by_tuple.len()) / 4) {
            let gone = std::mem::take(&mut self.unnamed);
            self.by_tuple.retain(|_, v| !gone.contains(v));
            self.by_ends.retain(|_, v| !gone.contains(v));
        }
        if listener_gone {
            self.refresh_listening();
        }
    }

    /// Recomputes [`Correlator::listening`] after a listener changed.
    fn refresh_listening(&mut self) {
        let now: rustc_hash::FxHashSet<u16> = self
            .conns
            .values()
            .filter(|c| c.role == Role::Listener && !c.is_closed())
            .filter_map(|c| c.local.map(|l| l.port))
            .collect();
        if now != self.listening {
            self.listening = now;
            self.rescan = true;
        }
    }

    /// Names the connection `id` by its ends `key`; notes when that is news.
    fn name_ends(&mut self, key: (Endpoint, Endpoint), id: ConnId) {
        if self.by_ends.insert(key, id) != Some(id) {
            self.named.push(key);
        }
    }

    /// Whether a live traced listener has local port `port`: a segment to or from it belongs to
    /// an accepted child that may not be known yet.
    fn listening_on(&self, port: u16) -> bool {
        self.listening.contains(&port)
    }

    /// The traced ends of the segment from `src` to `dst`, each with whether it sent it.
    fn ends_of(&self, src: Endpoint, dst: Endpoint) -> (Option<ConnId>, Option<ConnId>) {
        (
            self.named_live(&(canonical(src), canonical(dst))),
            self.named_live(&(canonical(dst), canonical(src))),
        )
    }

    /// Whether an end of the segment from `src` to `dst` is on a traced listener's port and
    /// no connection names it yet: the listener's accepted child will.
    fn awaits_child(&self, src: Endpoint, dst: Endpoint) -> bool {
        let (sender, receiver) = self.ends_of(src, dst);
        (sender.is_none() && self.listening_on(src.port))
            || (receiver.is_none() && self.listening_on(dst.port))
    }

    /// Whether no traced end claims the segment from `src` to `dst`.
    fn unclaimed(&self, src: Endpoint, dst: Endpoint) -> bool {
        self.ends_of(src, dst) == (None, None)
    }

    fn segment(&mut self, mut ev: Event, out: &mut dyn FnMut(Correlated)) {
        if let Kind::Packet(c) = &mut ev.kind {
            if c.egress && c.ifindex != LOOPBACK_IFINDEX {
                self.copies.left(c);
            } else if !c.egress {
                c.repeat = self.copies.entered(c);
            }
        }
        let Some((src, dst)) = seg_ends(&ev) else {
            // Undecodable: no connection claims it (the capture file still gets it).
            out(Correlated {
                event: ev,
                ends: Ends::default(),
                timewait: false,
            });
            return;
        };
        if let Some(Ok(seg)) = ev.captured().map(|c| &c.segment)
            && seg.tcp.has(crate::decode::tcpip::flags::SYN)
            && !seg.tcp.has(crate::decode::tcpip::flags::ACK)
            && self.listening_on(dst.port)
        {
            self.syn_arrived(canonical(src), canonical(dst), ev.ts_ns);
            // A new connection on the 4-tuple of one the server end finished (TIME_WAIT,
            // reused on loopback): the ends are the next child's from now on.
            let key = (canonical(dst), canonical(src));
            if let Some(&old) = self.by_ends.get(&key)
                && self.live(self.resolve(old)).is_none_or(|c| c.closed)
            {
                self.by_ends.remove(&key);
            }
        }
        // A handshake segment on a traced listener's port that no connection names yet: the
        // accepted child will, once the handshake's last ACK is in.
        let handshake = ev
            .captured()
            .and_then(|c| c.segment.as_ref().ok())
            .is_some_and(|seg| seg.tcp.has(crate::decode::tcpip::flags::SYN))
            || self.parked_ends.contains_key(&(src, dst))
            || self.parked_ends.contains_key(&(dst, src));
        let pending = handshake && self.awaits_child(src, dst);
        if pending || self.unclaimed(src, dst) {
            let wait = if pending {
                PARK_LISTENER_NS
            } else {
                PARK_OTHER_NS
            };
            // Behind an earlier segment of its connection, a segment waits no longer than it:
            // a connection older than the tracer, to a traced listener, would otherwise keep
            // each of its segments a full second, one behind the other, for ever.
            let earlier = [(src, dst), (dst, src)]
                .iter()
                .filter_map(|k| self.parked_ends.get(k).map(|&(_, d)| d))
                .min();
            let deadline_ns = ev
                .ts_ns
                .saturating_add(wait)
                .min(earlier.unwrap_or(u64::MAX));
            let entry = self.parked_ends.entry((src, dst)).or_insert((0, u64::MAX));
            entry.0 += 1;
            entry.1 = entry.1.min(deadline_ns);
            self.parked.push_back(Parked {
                deadline_ns,
                event: ev,
            });
            if self.parked.len() > PARKED_MAX
                && let Some(p) = self.parked.pop_front()
            {
                self.unpark(&p.event);
                self.attribute(p.event, out);
            }
            return;
        }
        self.attribute(ev, out);
    }

    /// Notes the first SYN from `client` to `server`; forgets those of handshakes long over.
    fn syn_arrived(&mut self, client: Endpoint, server: Endpoint, ts_ns: u64) {
        if self.syn_arrivals.len() >= SYN_ARRIVALS_MAX {
            // A handshake's SYN-ACK is retried for about a minute at most.
            self.syn_arrivals
                .retain(|_, &mut t| ts_ns.saturating_sub(t) < 120_000_000_000);
            if self.syn_arrivals.len() >= SYN_ARRIVALS_MAX {
                self.syn_arrivals.clear();
            }
        }
        self.syn_arrivals.entry((client, server)).or_insert(ts_ns);
    }

    /// Releases parked segments whose ends are now all known, or whose deadline is before
    /// `now_ns`, in the order they arrived.
    fn release_parked(&mut self, now_ns: u64, out: &mut dyn FnMut(Correlated)) {
        let named = std::mem::take(&mut self.named);
        if self.parked.is_empty() {
            self.rescan = false;
            return;
        }
        // Between deadlines, look only when a parked segment's ends were just named: under
        // churn every new connection names ends, and thousands of segments may be parked.
        let waiting = |(a, b): &(Endpoint, Endpoint)| {
            self.parked_ends.contains_key(&(*a, *b)) || self.parked_ends.contains_key(&(*b, *a))
        };
        if now_ns == 0 && !self.rescan && !named.iter().any(waiting) {
            return;
        }
        self.rescan = false;
        self.release_where(out, |c, p| {
            p.deadline_ns <= now_ns
                || seg_ends(&p.event)
                    .is_some_and(|(src, dst)| !c.awaits_child(src, dst) && !c.unclaimed(src, dst))
        });
    }

    /// Releases the parked segments `ready` picks, in the order they arrived: each goes to
    /// whatever claims it now, else to a connection of its own.
    fn release_where(
        &mut self,
        out: &mut dyn FnMut(Correlated),
        ready: impl Fn(&Self, &Parked) -> bool,
    ) {
        let mut i = 0;
        while i < self.parked.len() {
            if ready(self, &self.parked[i])
                && let Some(p) = self.parked.remove(i)
            {
                self.unpark(&p.event);
                self.attribute(p.event, out);
            } else {
                i += 1;
            }
        }
    }

    /// Forgets that `ev` is parked.
    fn unpark(&mut self, ev: &Event) {
        if let Some(ends) = seg_ends(ev)
            && let Some((n, _)) = self.parked_ends.get_mut(&ends)
        {
            *n -= 1;
            if *n == 0 {
                self.parked_ends.remove(&ends);
            }
        }
    }

    /// Hands a segment to every traced end it names; a segment no connection claims gets a
    /// connection of its own.
    fn attribute(&mut self, ev: Event, out: &mut dyn FnMut(Correlated)) {
        let Some((src, dst)) = seg_ends(&ev) else {
            return;
        };
        let (mut sender, mut receiver) = self.ends_of(src, dst);
        // Each end sees the copy it had: the sender the one leaving, the receiver the one
        // arriving — a segment lost on the way (a veth pair between two of this host's
        // namespaces, in the loss lab) is never shown as received. Two exceptions take the copy
        // leaving for both ends: loopback, captured once (ingress skips it), and a receiver in
        // TIME_WAIT, whose arriving segments reach a mini-socket cgroup_skb never runs for.
        let (to_sender, to_receiver) = match ev.captured() {
            Some(c) if c.egress && c.ifindex == LOOPBACK_IFINDEX => (true, true),
            Some(c) if c.egress => (true, receiver.is_some_and(|id| self.in_time_wait(id))),
            Some(_) => (false, true),
            None => (true, true),
        };
        if sender.is_none() && receiver.is_none() && self.drop_strays {
            self.strays += 1;
            return;
        }
        if sender.is_none() && receiver.is_none() {
            // Nobody traced claims it: a connection of its own, for the end this copy shows.
            let (local, remote) = if to_sender { (src, dst) } else { (dst, src) };
            let id = self.create(&ev);
            if let Some(conn) = self.conns.get_mut(&id) {
                conn.local = Some(local);
                conn.remote = Some(remote);
                conn.family = ev.family;
            }
            self.name_ends((canonical(local), canonical(remote)), id);
            if to_sender {
                sender = Some(id);
            } else {
                receiver = Some(id);
            }
        }
        sender = sender.filter(|_| to_sender);
        receiver = receiver.filter(|_| to_receiver);
        let keep = self.keep_ladder;
        let mut ends = Ends::default();
        if let Some(Ok(seg)) = ev.captured().map(|c| &c.segment) {
            for (id, sent) in [(sender, true), (receiver, false)] {
                if let Some(conn) = id.and_then(|id| self.conns.get_mut(&id)) {
                    let view = conn.see_segment(seg, sent, ev.ts_ns, keep);
                    ends.push(End {
                        conn: conn.id,
                        segment: Some(view),
                    });
                }
            }
        }
        out(Correlated {
            event: ev,
            ends,
            timewait: false,
        });
    }

    /// A listener's SYN-ACK sent again goes to the server's end of its connection. Until the
    /// handshake completes no socket exists, only the listener's request: the first one makes
    /// the connection, by its ends (which the segments parked for the child then find) and by
    /// its 4-tuple (which the child's first state change then finds). Not parked: a handshake
    /// may wait a minute for its last ACK, and nothing later could be shown meanwhile.
    fn synack_resent(&mut self, ev: Event, out: &mut dyn FnMut(Correlated)) {
        let (Some(local), Some(remote)) = (ev.local, ev.remote) else {
            return;
        };
        let known = self
            .ends_of(local, remote)
            .0
            .filter(|&id| self.live(id).is_some());
        // Never a stray: only a traced listener's requests are reported.
        let id = match known {
            Some(id) => id,
            None => {
                let id = self.create(&ev);
                if let Some(conn) = self.conns.get_mut(&id) {
                    conn.role = Role::Server;
                }
                self.half_open
                    .push_back((ev.ts_ns.saturating_add(HALF_OPEN_NS), id));
                id
            }
        };
        // Names the ends and the 4-tuple of a new connection.
        self.update(id, &ev, false);
        out(Correlated {
            event: ev,
            ends: Ends::one(End {
                conn: id,
                segment: None,
            }),
            timewait: false,
        });
    }

    fn create(&mut self, ev: &Event) -> ConnId {
        self.create_at(ev.ts_ns)
    }

    fn create_at(&mut self, ts_ns: u64) -> ConnId {
        self.next_id += 1;
        self.total += 1;
        let id = self.next_id;
        self.conns.insert(id, Conn::new(id, ts_ns));
        id
    }

    fn live(&self, id: ConnId) -> Option<&Conn> {
        self.conns.get(&id)
    }

    /// The connection `id` names after merges, if it is still live: an index entry naming a
    /// retired one is stale.
    fn resolve_live(&self, id: ConnId) -> Option<ConnId> {
        let id = self.resolve(id);
        self.conns.contains_key(&id).then_some(id)
    }

    /// The live connection named by ends `key` (a retired one's name may linger, see
    /// `Correlator::unnamed`).
    fn named_live(&self, key: &(Endpoint, Endpoint)) -> Option<ConnId> {
        self.resolve_live(*self.by_ends.get(key)?)
    }

    /// The live connection with local port and remote end `key` (as `named_live`).
    fn tuple_live(&self, key: &(u16, Endpoint)) -> Option<ConnId> {
        self.by_tuple
            .get(key)
            .copied()
            .filter(|id| self.conns.contains_key(id))
    }

    /// Whether connection `id` is in TIME_WAIT.
    fn in_time_wait(&self, id: ConnId) -> bool {
        self.live(id)
            .is_some_and(|c| c.states.last() == Some(&tcp_state::TIME_WAIT))
    }

    fn find(&mut self, ev: &Event) -> ConnId {
        let opening = matches!(
            ev.kind,
            Kind::State(StateChange { from, to }) if (from == tcp_state::CLOSE
                && (to == tcp_state::SYN_SENT || to == tcp_state::LISTEN))
                || to == tcp_state::SYN_RECV
        );
        let syscall = ev.syscall().copied();
        if syscall.is_some_and(|s| s.op == SyscallOp::Socket) {
            let id = self.create(ev);
            if ev.fd >= 0 {
                self.bind_fd(ev.pid, ev.fd, id, ev.end_ns());
            }
            return id;
        }
        if syscall.is_some_and(|s| s.op.accepts() && s.exit.is_some() && s.ret() >= 0) {
            return self.accepted(ev);
        }
        if syscall.is_some_and(|s| s.op == SyscallOp::Close)
            && let Some(old) = self.moved_from(ev)
        {
            return old;
        }
        // Index entries naming a retired connection are stale: one of them must not swallow a
        // new connection into one that is gone (its events would never be shown).
        let by_sock = (ev.sock != 0)
            .then(|| self.by_sock.get(&ev.sock).copied())
            .flatten()
            .and_then(|id| self.resolve_live(id))
            .filter(|&id| {
                // A socket address reused by a new connection starts a new life.
                !(opening && self.live(id).is_some_and(|c| !c.states.is_empty()))
            });
        let own_fd = (ev.fd >= 0)
            .then(|| self.by_fd.get(&(ev.pid, ev.fd)).copied())
            .flatten()
            .and_then(|id| self.resolve_live(id));
        if opening {
            self.end_unseen(ev, own_fd);
        }
        // A bind or connect on a socket a forebear created (before a fork): its fd there.
        let creator = syscall
            .filter(|s| matches!(s.op, SyscallOp::Bind | SyscallOp::Connect))
            .map(|s| s.args[1] as u32)
            .filter(|&pid| pid != 0 && pid != ev.pid);
        let made = creator
            .and_then(|pid| self.by_fd.get(&(pid, ev.fd)).copied())
            .and_then(|id| self.resolve_live(id));
        let by_fd = match (own_fd, made) {
            // The child's end was seen first (its state changes come before the connect's
            // record): the socket() that began it is the same connection.
            (Some(a), Some(b)) if a != b && self.live(b).is_some_and(|c| c.states.is_empty()) => {
                Some(self.join(a, b))
            }
            (own, made) => own.or(made),
        };
        let by_tuple = || -> Option<ConnId> {
            let local = ev.local?;
            let remote = ev.remote?;
            self.tuple_live(&(local.port, canonical(remote)))
        };
        let id = match (by_fd, by_sock) {
            // The fd's connection had this very socket, freed since, and its memory now holds
            // another connection's (a syscall written at its exit, after a new connection on
            // the same 4-tuple began): the fd says whose the event is.
            (Some(a), Some(b)) if a != b && self.live(a).is_some_and(|c| c.sk == Some(ev.sock)) => {
                return a;
            }
            // The fd number names another socket by now: close() gives the number back before
            // it returns (a lingering one seconds before), and an accept() in another thread
            // took it. The record's socket says whose it is; the fd stays the new one's.
            (Some(a), Some(b))
                if a != b
                    && self
                        .live(a)
                        .is_some_and(|c| c.sk.is_some_and(|sk| sk != ev.sock)) =>
            {
                return b;
            }
            // The socket's connection held the fd number before `a` got it, and is still
            // closing: a state change its close caused names the number it closed.
            (Some(a), Some(b)) if a != b && self.held_before(ev, b) => return b,
            (Some(a), Some(b)) if a != b => {
                // Seen first through two identities; from now on they are one connection. The
                // older keeps its id: events already printed under it (a handshake seen
                // before the fd of an accept that was blocked when tracing began) stay with
                // the rest of their connection.
                self.join(a, b)
            }
            (Some(a), _) => a,
            (None, Some(b)) => b,
            (None, None) => {
                let known = self.adopted_listener(ev).or_else(|| {
                    by_tuple().filter(|&id| self.live(id).is_some_and(|c| c.sk.is_none()))
                });
                known.unwrap_or_else(|| self.create(ev))
            }
        };
        if ev.sock != 0 {
            self.by_sock.insert(ev.sock, id);
            if let Some(conn) = self.conns.get_mut(&id) {
                conn.sk = Some(ev.sock);
            }
        }
        if ev.fd >= 0 && own_fd.is_none() && !syscall.is_some_and(|s| s.op == SyscallOp::Close) {
            self.bind_fd(ev.pid, ev.fd, id, ev.end_ns());
        }
        id
    }

    /// Whether connection `id` held `ev`'s fd number before it moved to a new socket.
    fn held_before(&self, ev: &Event, id: ConnId) -> bool {
        self.moved_fds
            .get(&(ev.pid, ev.fd))
            .is_some_and(|moves| moves.iter().any(|&(old, _)| self.resolve(old) == id))
    }

    /// The earlier holder of `ev`'s fd number whose close `ev` is: the one that held the
    /// number when the close entered and, when both are known, had the socket it closed.
    fn moved_from(&mut self, ev: &Event) -> Option<ConnId> {
        let key = (ev.pid, ev.fd);
        let moves = self.moved_fds.get(&key)?;
        let closed_here = |&(old, until): &(ConnId, u64)| {
            ev.ts_ns < until
                && self
                    .live(self.resolve(old))
                    .is_some_and(|c| ev.sock == 0 || c.sk.is_none_or(|sk| sk == ev.sock))
        };
        let i = moves.iter().position(closed_here)?;
        let moves = self.moved_fds.get_mut(&key)?;
        let (old, _) = moves.remove(i);
        if moves.is_empty() {
            self.moved_fds.remove(&key);
        }
        Some(self.resolve(old))
    }

    /// A new connection begins on the socket address of connection `old`, which never
    /// closed as far as the records say: the kernel freed `old`'s socket, so its end (close,
    /// CLOSE, destroy) was in records the ring buffer dropped. `old` ends here, marked so,
    /// and retires like any other: a table that kept every connection whose end was lost
    /// would grow for as long as drops go on. Not when the event's own fd names `old` (a
    /// socket connecting again is the same connection), nor for a closed one (a socket
    /// reconnecting after a failed connect is one too), nor when the address is only an old
    /// one of `old`'s (a connection merged from two identities keeps both in the index).
    fn end_unseen(&mut self, ev: &Event, own_fd: Option<ConnId>) {
        if !self.records_lost || ev.sock == 0 {
            return;
        }
        let Some(old) = self.by_sock.get(&ev.sock).map(|&id| self.resolve(id)) else {
            return;
        };
        if own_fd == Some(old) {
            return;
        }
        let Some(conn) = self
            .conns
            .get_mut(&old)
            .filter(|c| !c.closed && !c.states.is_empty() && c.sk == Some(ev.sock))
        else {
            return;
        };
        conn.closed = true;
        conn.end_lost = true;
        // Its fds were closed unseen: their numbers may name anything now.
        conn.fds = 0;
        if !conn.retiring {
            conn.retiring = true;
            self.retiring
                .push_back((ev.ts_ns.max(conn.last_ns) + RETIRE_AFTER_NS, old));
        }
        self.by_sock.remove(&ev.sock);
    }

    /// Once the kernel frees a socket (tcp_destroy_sock), the next one allocated — in any
    /// process, often within microseconds under churn — may have its address: that address no
    /// longer names this connection.
    fn forget_if_freed(&mut self, id: ConnId, ev: &Event) {
        let freed = matches!(&ev.kind, Kind::Kernel(k) if k.func == KernelFn::TcpDestroySock);
        if freed && ev.sock != 0 && self.by_sock.get(&ev.sock).map(|&i| self.resolve(i)) == Some(id)
        {
            self.by_sock.remove(&ev.sock);
        }
    }

    /// The listener found in /proc at start that a LISTEN → CLOSE change is about: it was
    /// known by its fd and address only, and the change names its socket and address.
    fn adopted_listener(&self, ev: &Event) -> Option<ConnId> {
        // Only the listener's own end: a child's first change also leaves LISTEN (for SYN_RECV).
        let closing = matches!(ev.kind, Kind::State(StateChange { from, to })
            if from == tcp_state::LISTEN && to == tcp_state::CLOSE);
        if !closing {
            return None;
        }
        let local = canonical(ev.local?);
        self.conns
            .values()
            .find(|c| {
                c.role == Role::Listener
                    && c.sk.is_none()
                    && !c.is_closed()
                    && c.local.map(canonical) == Some(local)
            })
            .map(|c| c.id)
    }

    /// Makes `a` and `b` one connection under the older id (events already shown under it
    /// stay with it); returns that id.
    fn join(&mut self, a: ConnId, b: ConnId) -> ConnId {
        let (keep, gone) = (a.min(b), a.max(b));
        self.merge(keep, gone);
        keep
    }

    /// Folds connection `b` into `a`, which keeps its id.
    fn merge(&mut self, a: ConnId, b: ConnId) {
        self.alias.insert(b, a);
        let Some(mut old) = self.conns.remove(&b) else {
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
                conn.state_log = old.state_log;
            }
            // A late call's bytes counted in one and its kernel function's, loose, in the other.
            let mut twice = [0u64; 2];
            for (d, twice) in twice.iter_mut().enumerate() {
                *twice = overlap(&mut conn.loose[d], &mut old.late[d])
                    + overlap(&mut old.loose[d], &mut conn.late[d]);
                if conn.loose[d].1 == 0 {
                    conn.loose[d] = old.loose[d];
                }
                if conn.late[d].1 == 0 {
                    conn.late[d] = old.late[d];
                }
            }
            conn.bytes_sent += old.bytes_sent.saturating_sub(twice[0]);
            conn.bytes_received += old.bytes_received.saturating_sub(twice[1]);
            // The handshake began at the earlier start and ended where either saw it end.
            let end = |start: Option<u64>, took: Option<u64>| Some(start? + took?);
            let ended = end(conn.handshake_start_ns, conn.handshake_ns)
                .or(end(old.handshake_start_ns, old.handshake_ns));
            let start = match (conn.handshake_start_ns, old.handshake_start_ns) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            conn.handshake_start_ns = start;
            conn.handshake_ns = ended.zip(start).map(|(e, s)| e.saturating_sub(s));
            conn.reset_received |= old.reset_received;
            conn.reset_sent |= old.reset_sent;
            conn.congestion.merge(old.congestion);
            conn.events += old.events;
            conn.closed |= old.closed;
            conn.end_lost |= old.end_lost;
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
            (Some(local), Some(remote)) => self.tuple_live(&(local.port, canonical(remote))),
            _ => None,
        };
        let id = match child {
            Some(id) => id,
            None => {
                let id = self.create(ev);
                if let (Some(local), Some(remote)) = (local, ev.remote) {
                    self.by_tuple.insert((local.port, canonical(remote)), id);
                }
                if let Some(conn) = self.conns.get_mut(&id) {
                    conn.local = local;
                    conn.remote = ev.remote;
                }
                id
            }
        };
        let ret = ev.syscall().map_or(-1, |s| s.ret());
        self.bind_fd(ev.pid, ret as i32, id, ev.end_ns());
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.role = Role::Server;
            if conn.remote.is_none() {
                conn.remote = ev.remote;
            }
        }
        id
    }

    /// A listener that was open before the run started (found in /proc): its accepts and
    /// its close belong to it, and it is shown with its address and `LISTEN`.
    pub fn adopt_listener(&mut self, pid: u32, comm: &str, fd: i32, local: Endpoint, now_ns: u64) {
        let id = self.create_at(now_ns);
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.pid = pid;
            conn.comm = comm.into();
            conn.family = if local.addr.is_ipv4() {
                tracer_common::AF_INET
            } else {
                tracer_common::AF_INET6
            };
            conn.local = Some(local);
            conn.role = Role::Listener;
            conn.states.push(tcp_state::LISTEN);
        }
        self.bind_fd(pid, fd, id, 0);
        self.refresh_listening();
    }

    /// Fd `fd` of `pid` names connection `id` from `at_ns` (when the syscall that made it
    /// returned).
    fn bind_fd(&mut self, pid: u32, fd: i32, id: ConnId, at_ns: u64) {
        if let Some(old) = self.by_fd.insert((pid, fd), id)
            && let Some(conn) = self.conns.get_mut(&old)
        {
            conn.fds = conn.fds.saturating_sub(1);
            if old != id {
                // Lost closes would leave these behind: bounded.
                if self.moved_fds.len() >= MOVED_FDS_MAX {
                    self.moved_fds.clear();
                }
                let moves = self.moved_fds.entry((pid, fd)).or_default();
                if moves.len() == MOVES_KEPT {
                    moves.remove(0);
                }
                moves.push((old, at_ns));
            }
        }
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.fds += 1;
        }
    }

    /// The kernel reports a socket that enters TIME_WAIT as FIN_WAIT2 (or CLOSING) → CLOSE,
    /// because `tcp_time_wait()` hands the connection to a separate timewait socket and closes
    /// the full one. Without a RST, that transition is the move into TIME_WAIT: read it so.
    fn timewait(&self, id: ConnId, ev: &Event) -> bool {
        matches!(ev.kind, Kind::State(StateChange { from, to })
            if to == tcp_state::CLOSE
                && (from == tcp_state::FIN_WAIT2 || from == tcp_state::CLOSING))
            && !self
                .live(id)
                .is_some_and(|c| c.reset_received || c.reset_sent)
    }

    fn update(&mut self, id: ConnId, ev: &Event, timewait: bool) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        // A server's end, its handshake not over: it began with the client's SYN. (6.1 names
        // a child's peer only after its SYN_RECV: the ends may come from a later event.)
        let naming_server = match &ev.kind {
            Kind::State(change) => change.to == tcp_state::SYN_RECV,
            Kind::Congestion(c) => !c.has_numbers(),
            _ => false,
        };
        if (naming_server || conn.role == Role::Server)
            && conn.handshake_ns.is_none()
            && let (Some(local), Some(remote)) = (ev.local, ev.remote)
            && remote.port != 0
            && let Some(ts) = self
                .syn_arrivals
                .remove(&(canonical(remote), canonical(local)))
        {
            conn.handshake_from(ts);
        }
        conn.events += 1;
        conn.last_ns = conn.last_ns.max(ev.end_ns());
        conn.first_ns = conn.first_ns.min(ev.ts_ns);
        // Who made the connection: the first syscall on it says (a prefork worker accepts
        // on a listener its master opened, and the kernel side names the master); until one
        // does, the kernel side's owner.
        let from_syscall = matches!(ev.kind, Kind::Syscall(_));
        if ev.pid != 0
            && !conn.owner_by_syscall
            && (from_syscall || conn.pid == 0 || !ev.owner_guessed)
        {
            conn.pid = ev.pid;
            conn.comm = ev.comm;
            conn.owner_by_syscall = from_syscall;
        }
        if ev.family != 0 {
            conn.family = ev.family;
        }
        match &ev.kind {
            &Kind::State(StateChange { from, to }) => {
                let to = if timewait { tcp_state::TIME_WAIT } else { to };
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
                        conn.handshake_from(ev.ts_ns);
                        if let (Some(local), Some(remote)) = (ev.local, ev.remote) {
                            self.by_tuple.insert((local.port, canonical(remote)), id);
                        }
                    }
                    tcp_state::LISTEN => conn.role = Role::Listener,
                    tcp_state::ESTABLISHED => {
                        if let Some(start) = conn.handshake_start_ns {
                            conn.handshake_ns
                                .get_or_insert(ev.ts_ns.saturating_sub(start));
                        }
                    }
                    tcp_state::CLOSE | tcp_state::TIME_WAIT => conn.closed = true,
                    _ => {}
                }
            }
            Kind::Kernel(call) => {
                if ev.local.is_some() {
                    set_endpoints(conn, ev);
                }
                // Bytes no traced syscall carried (io_uring, a kernel socket user, a syscall
                // this tracer does not follow): counted where TCP saw them.
                let unaccounted = call.bytes.filter(|&b| b > 0 && ev.fd < 0).unwrap_or(0) as u64;
                let mut loose = |direction: usize| {
                    let loose = &mut conn.loose[direction];
                    if loose.0 != ev.tid {
                        *loose = (ev.tid, 0);
                    }
                    loose.1 += unaccounted;
                    unaccounted
                };
                match call.func {
                    KernelFn::TcpSendmsg => conn.bytes_sent += loose(0),
                    KernelFn::TcpRecvmsg => conn.bytes_received += loose(1),
                    KernelFn::TcpReceiveReset => conn.reset_received = true,
                    KernelFn::TcpSendReset => conn.reset_sent = true,
                    _ => {}
                }
            }
            Kind::Congestion(c) => {
                if !c.has_numbers() {
                    set_endpoints(conn, ev);
                }
                conn.congestion.add(ev.ts_ns, c);
            }
            Kind::Syscall(call) if call.exit.is_some() => {
                let op = call.op;
                let ret = call.ret();
                match op {
                    SyscallOp::Connect => {
                        if conn.remote.is_none() {
                            conn.remote = ev.remote;
                        }
                        if conn.role == Role::Unknown {
                            conn.role = Role::Client;
                        }
                        if ret < 0 && ret != -(libc::EINPROGRESS as i64) {
                            conn.connect_error = Some(ret);
                        }
                    }
                    SyscallOp::Bind if conn.local.is_none() => conn.local = ev.local,
                    SyscallOp::Listen => conn.role = Role::Listener,
                    _ => {}
                }
                if ret > 0 {
                    let late = call.exit.is_some_and(|e| e.late);
                    // What the kernel layer already counted of a late call's bytes.
                    let mut counted = |direction: usize| -> u64 {
                        let loose = &mut conn.loose[direction];
                        if !late || loose.0 != ev.tid {
                            return 0;
                        }
                        let counted = loose.1.min(ret as u64);
                        loose.1 -= counted;
                        counted
                    };
                    let direction = if op.sends(&call.args) {
                        Some(0)
                    } else if op.receives(&call.args) {
                        Some(1)
                    } else {
                        None
                    };
                    if let Some(d) = direction {
                        let own = ret as u64 - counted(d);
                        if late && own > 0 {
                            let mine = &mut conn.late[d];
                            if mine.0 != ev.tid {
                                *mine = (ev.tid, 0);
                            }
                            mine.1 += own;
                        }
                        if d == 0 {
                            conn.bytes_sent += own;
                        } else {
                            conn.bytes_received += own;
                        }
                    }
                }
                if op == SyscallOp::Close && ret == 0 {
                    // Only if the fd still names this connection (see `find`).
                    if self.by_fd.get(&(ev.pid, ev.fd)) == Some(&id) {
                        self.by_fd.remove(&(ev.pid, ev.fd));
                        conn.fds = conn.fds.saturating_sub(1);
                    }
                    if conn.fds == 0 && conn.states.is_empty() {
                        // Closed without ever connecting or listening.
                        conn.closed = true;
                    }
                }
            }
            Kind::Syscall(_) | Kind::Packet(_) => {}
        }
        let mut half_open = None;
        if let (Some(l), Some(r)) = (conn.local, conn.remote)
            && l.port != 0
            && r.port != 0
            && !l.addr.is_unspecified()
        {
            let key = (canonical(l), canonical(r));
            let before = self.by_ends.insert(key, id);
            if before != Some(id) {
                self.named.push(key);
            }
            if conn.role == Role::Server {
                // Some kernels (6.1) report a child's SYN_RECV before its peer address is
                // set: it becomes joinable by accept() once any event names both ends.
                self.by_tuple.insert((l.port, canonical(r)), id);
                half_open = before.map(|other| (key, other));
            }
        }
        if conn.closed && conn.fds == 0 && !conn.retiring {
            conn.retiring = true;
            self.retiring
                .push_back((conn.last_ns + RETIRE_AFTER_NS, id));
        }
        if let Some((key, other)) = half_open {
            self.join_half_open(key, id, other);
        }
    }

    /// A server's end `id` was named by `key`, which already named `other`: if that is the
    /// connection a resent SYN-ACK made before the accepted socket existed (on kernels whose
    /// child names its peer only after its SYN_RECV, the child could not find it by its
    /// 4-tuple), the two are one.
    fn join_half_open(&mut self, key: (Endpoint, Endpoint), id: ConnId, other: ConnId) {
        let other = self.resolve(other);
        let made_by_synack = self.live(other).is_some_and(Conn::half_open);
        if other == id || !made_by_synack {
            return;
        }
        let keep = self.join(id, other);
        self.by_ends.insert(key, keep);
    }
}

/// How long a finished connection stays in the live table, for late events and rendering.
const RETIRE_AFTER_NS: u64 = 300_000_000;
/// How long a listener resends its SYN-ACK at most: 1 + 2 + ... + 32 s with Linux's default
/// five retries (`tcp_synack_retries`), then the 64 s the last one waits; past that a
/// half-open connection is over.
const HALF_OPEN_NS: u64 = 130_000_000_000;

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

/// The key an endpoint is found by: an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a
/// dual-stack socket reports for an IPv4 peer) is the IPv4 address its segments carry.
fn canonical(e: Endpoint) -> Endpoint {
    match e.addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => Endpoint {
                addr: IpAddr::V4(v4),
                port: e.port,
            },
            None => e,
        },
        IpAddr::V4(_) => e,
    }
}

/// Whether `ev` is a listener's SYN-ACK sent again: it names its connection by its ends, and
/// the connection's socket does not exist until the handshake completes.
fn synack_resent(ev: &Event) -> bool {
    matches!(&ev.kind, Kind::Congestion(c) if !c.has_numbers())
}

/// The sender's and receiver's ends of a decoded segment.
fn seg_ends(ev: &Event) -> Option<(Endpoint, Endpoint)> {
    let seg: &Segment = ev.captured()?.segment.as_ref().ok()?;
    Some((
        Endpoint {
            addr: seg.src,
            port: seg.tcp.sport,
        },
        Endpoint {
            addr: seg.dst,
            port: seg.tcp.dport,
        },
    ))
}

/// Bytes one thread's late syscalls counted (`late`) that its kernel functions also counted
/// as no syscall's (`loose`): taken out of both, and how many.
fn overlap(loose: &mut (u32, u64), late: &mut (u32, u64)) -> u64 {
    if loose.0 != late.0 {
        return 0;
    }
    let twice = loose.1.min(late.1);
    loose.1 -= twice;
    late.1 -= twice;
    twice
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Exit, RetransmitKind, Syscall};
    use std::net::Ipv4Addr;
    use tracer_common::Via;

    /// Observes `e`, returning its connection and whether it was read as TIME_WAIT.
    fn observe(c: &mut Correlator, e: &Event) -> (ConnId, bool) {
        let mut got = Vec::new();
        c.observe(e.clone(), &mut |x| got.push(x));
        let x = got.pop().expect("one result");
        (x.ends.iter().next().unwrap().conn, x.timewait)
    }

    fn call(op: SyscallOp, ret: i64) -> Kind {
        Kind::Syscall(Syscall {
            op,
            args: [0; 2],
            exit: Some(Exit {
                ret,
                duration_ns: 0,
                late: false,
            }),
        })
    }

    fn ev(kind: Kind, sock: u64, fd: i32, ts: u64) -> Event {
        let mut e = Event::blank(kind, Via::Tracepoint, ts);
        e.sock = sock;
        e.fd = fd;
        e.pid = 42;
        e.tid = 42;
        e.comm = "client".into();
        e
    }

    /// A listener on port 8080 of every address starting (CLOSE -> LISTEN).
    fn listening_on_8080() -> Event {
        let mut listen = state(tcp_state::CLOSE, tcp_state::LISTEN, 1, 1);
        listen.local = Some(endpoint(Ipv4Addr::UNSPECIFIED.into(), 8080));
        listen.remote = None;
        listen
    }

    /// A listener at `server` sending its SYN-ACK to `client` again at `ts`.
    fn resent_syn_ack(server: Endpoint, client: Endpoint, ts: u64) -> Event {
        let mut e = ev(
            Kind::Congestion(crate::decode::Pooled::new(
                crate::decode::Congestion::syn_ack(7000),
            )),
            0,
            -1,
            ts,
        );
        e.local = Some(server);
        e.remote = Some(client);
        e
    }

    fn state(from: u8, to: u8, sock: u64, ts: u64) -> Event {
        let mut e = ev(Kind::State(StateChange { from, to }), sock, -1, ts);
        e.local = Some(endpoint(Ipv4Addr::LOCALHOST.into(), 41000));
        e.remote = Some(endpoint(Ipv4Addr::LOCALHOST.into(), 8080));
        e
    }

    /// A `tcp_destroy_sock` record: the kernel freed the socket.
    fn destroyed() -> Kind {
        Kind::Kernel(crate::decode::KernelCall {
            func: KernelFn::TcpDestroySock,
            bytes: None,
            isn: None,
            write_seq: None,
            at_syscall_start: false,
        })
    }

    /// socket() returning fd 4 at `ts`, then a connect on it naming socket `sock`: one
    /// connection, whose id is returned.
    fn opened(c: &mut Correlator, sock: u64, ts: u64) -> ConnId {
        let (id, _) = observe(c, &ev(call(SyscallOp::Socket, 4), 0, 4, ts));
        assert_eq!(
            observe(c, &ev(call(SyscallOp::Connect, 0), sock, 4, ts + 1)).0,
            id
        );
        id
    }

    #[test]
    fn fd_and_socket_identities_meet_in_one_connection() {
        let mut c = Correlator::new();
        let (a, _) = observe(&mut c, &ev(call(SyscallOp::Socket, 3), 0, 3, 1));
        let mut syn = state(tcp_state::CLOSE, tcp_state::SYN_SENT, 0xabc, 2);
        syn.fd = 3;
        assert_eq!(observe(&mut c, &syn).0, a);
        let est = state(tcp_state::SYN_SENT, tcp_state::ESTABLISHED, 0xabc, 5);
        assert_eq!(observe(&mut c, &est).0, a);
        assert_eq!(
            observe(&mut c, &ev(call(SyscallOp::Write, 5), 0, 3, 6)).0,
            a
        );
        let conn = c.get(a).unwrap();
        assert_eq!(conn.role, Role::Client);
        assert_eq!(conn.bytes_sent, 5);
        assert_eq!(conn.handshake_ns, Some(3));
        assert_eq!(conn.local.unwrap().port, 41000);
        assert_eq!(c.total, 1);
    }

    #[test]
    fn the_process_whose_syscall_named_a_connection_owns_it() {
        let mut c = Correlator::new();
        // A prefork server: the kernel side names the master (its listener's owner) for the
        // accepted child; the worker's read is the first syscall on it.
        let master = |mut e: Event| {
            e.pid = 7;
            e.comm = "master".into();
            e
        };
        let (a, _) = observe(
            &mut c,
            &master(state(tcp_state::LISTEN, tcp_state::SYN_RECV, 0xabc, 1)),
        );
        assert_eq!(c.get(a).unwrap().pid, 7);
        let mut read = ev(call(SyscallOp::Recvfrom, 3), 0xabc, 4, 3);
        read.pid = 9;
        read.comm = "worker".into();
        observe(&mut c, &read);
        // The kernel side keeps naming the master; the worker stays the owner.
        observe(
            &mut c,
            &master(state(
                tcp_state::ESTABLISHED,
                tcp_state::FIN_WAIT1,
                0xabc,
                5,
            )),
        );
        let conn = c.get(a).unwrap();
        assert_eq!((conn.pid, conn.comm.as_str()), (9, "worker"));
    }

    #[test]
    fn an_fd_seen_after_its_handshake_joins_the_older_connection() {
        let mut c = Correlator::new();
        // A server traced by pid: its accept was blocked before tracing began, so the child
        // is known by its socket first, and its fd only from the first read.
        let (a, _) = observe(
            &mut c,
            &state(tcp_state::LISTEN, tcp_state::SYN_RECV, 0xabc, 1),
        );
        let est = state(tcp_state::SYN_RECV, tcp_state::ESTABLISHED, 0xabc, 2);
        assert_eq!(observe(&mut c, &est).0, a);
        let (b, _) = observe(&mut c, &ev(call(SyscallOp::Recvfrom, 6), 0, 4, 5));
        assert_ne!(a, b, "an fd nothing names yet");
        // The kernel names both: one connection, the older.
        let read = ev(call(SyscallOp::Recvfrom, 0), 0xabc, 4, 8);
        assert_eq!(observe(&mut c, &read).0, a);
        let wait = state(tcp_state::ESTABLISHED, tcp_state::CLOSE_WAIT, 0xabc, 9);
        assert_eq!(observe(&mut c, &wait).0, a);
        let conn = c.get(a).unwrap();
        assert_eq!(conn.bytes_received, 6);
        assert_eq!(conn.states.len(), 4);
        assert_eq!(c.total, 1);
    }

    /// Bytes TCP moved for a syscall the tracer saw are counted once, from the syscall; bytes
    /// with no traced syscall around them (io_uring) are counted from TCP.
    #[test]
    fn bytes_without_a_traced_syscall_are_counted_from_tcp() {
        use crate::decode::KernelCall;
        let mut c = Correlator::new();
        let (id, _) = observe(
            &mut c,
            &state(tcp_state::SYN_SENT, tcp_state::ESTABLISHED, 7, 1),
        );
        let sent = |fd: i32, ts: u64| {
            let call = KernelCall {
                func: KernelFn::TcpSendmsg,
                bytes: Some(100),
                isn: None,
                write_seq: None,
                at_syscall_start: false,
            };
            ev(Kind::Kernel(call), 7, fd, ts)
        };
        observe(&mut c, &ev(call(SyscallOp::Write, 100), 7, 3, 2));
        observe(&mut c, &sent(3, 3));
        assert_eq!(
            c.get(id).unwrap().bytes_sent,
            100,
            "the write's bytes, once"
        );
        observe(&mut c, &sent(-1, 4));
        assert_eq!(
            c.get(id).unwrap().bytes_sent,
            200,
            "plus what no syscall carried"
        );
    }

    /// A syscall whose enter program the kernel skipped is recorded at its return (late):
    /// its kernel function saw no syscall in flight and counted its bytes already.
    #[test]
    fn a_late_syscalls_bytes_are_not_counted_twice() {
        use crate::decode::KernelCall;
        let mut c = Correlator::new();
        let (id, _) = observe(
            &mut c,
            &state(tcp_state::SYN_SENT, tcp_state::ESTABLISHED, 7, 1),
        );
        let received = |bytes: i64, ts: u64| {
            let call = KernelCall {
                func: KernelFn::TcpRecvmsg,
                bytes: Some(bytes),
                isn: None,
                write_seq: None,
                at_syscall_start: false,
            };
            ev(Kind::Kernel(call), 7, -1, ts)
        };
        let late = |ret: i64, ts: u64| {
            let mut e = ev(call(SyscallOp::Recvfrom, ret), 7, 3, ts);
            if let Kind::Syscall(Syscall {
                exit: Some(exit), ..
            }) = &mut e.kind
            {
                exit.late = true;
            }
            e
        };
        observe(&mut c, &received(21, 2));
        observe(&mut c, &late(21, 3));
        assert_eq!(c.get(id).unwrap().bytes_received, 21, "once");
        // A late call whose kernel function was not seen counts its own bytes.
        observe(&mut c, &late(6, 4));
        assert_eq!(c.get(id).unwrap().bytes_received, 27);
        // Another thread's loose bytes are not this late call's.
        observe(&mut c, &received(10, 5));
        let mut other = late(5, 6);
        other.tid = 43;
        observe(&mut c, &other);
        assert_eq!(c.get(id).unwrap().bytes_received, 42);

        // The late call on an fd not yet known to name the socket (an accept adopted at its
        // return): counted in a connection of its own, then joined with the socket's, whose
        // kernel function counted the same bytes.
        let mut c = Correlator::new();
        let (a, _) = observe(
            &mut c,
            &state(tcp_state::SYN_RECV, tcp_state::ESTABLISHED, 0xabc, 1),
        );
        let mut kernel = received(6, 2);
        kernel.sock = 0xabc;
        observe(&mut c, &kernel);
        let mut by_fd = late(6, 3);
        by_fd.sock = 0;
        by_fd.fd = 4;
        let (b, _) = observe(&mut c, &by_fd);
        assert_ne!(a, b, "an fd nothing names yet");
        let naming_both = ev(call(SyscallOp::Recvfrom, 0), 0xabc, 4, 4);
        assert_eq!(observe(&mut c, &naming_both).0, a);
        assert_eq!(c.get(a).unwrap().bytes_received, 6, "once, after the join");
    }

    #[test]
    fn fin_wait2_to_close_is_time_wait_unless_reset() {
        let mut c = Correlator::new();
        let e = state(tcp_state::FIN_WAIT2, tcp_state::CLOSE, 7, 1);
        let (id, timewait) = observe(&mut c, &e);
        assert!(timewait);
        assert_eq!(
            c.get(id).unwrap().states.last(),
            Some(&tcp_state::TIME_WAIT)
        );
        assert_eq!(c.get(id).unwrap().outcome(), Some("closed (TIME_WAIT)"));

        let mut c = Correlator::new();
        let rst = Kind::Kernel(crate::decode::KernelCall {
            func: KernelFn::TcpReceiveReset,
            bytes: None,
            isn: None,
            write_seq: None,
            at_syscall_start: false,
        });
        observe(&mut c, &ev(rst, 9, -1, 1));
        let e = state(tcp_state::FIN_WAIT2, tcp_state::CLOSE, 9, 2);
        let (id, timewait) = observe(&mut c, &e);
        assert!(!timewait);
        assert_eq!(c.get(id).unwrap().outcome(), Some("reset by peer"));
    }

    /// Past [`FINISHED_KEPT`] finished connections, the oldest leave the summary and are
    /// counted, never dropped silently.
    #[test]
    fn finished_connections_beyond_the_kept_ones_are_counted() {
        let mut c = Correlator::new();
        let n = FINISHED_KEPT as u64 + 5;
        for sock in 1..=n {
            observe(
                &mut c,
                &state(tcp_state::CLOSE, tcp_state::SYN_SENT, sock, sock),
            );
            observe(
                &mut c,
                &state(tcp_state::SYN_SENT, tcp_state::CLOSE, sock, sock),
            );
        }
        c.expire(u64::MAX, &mut |_| {});
        c.retire_before(u64::MAX);
        assert_eq!(c.total, n);
        assert_eq!(c.all().len(), FINISHED_KEPT);
        assert_eq!(c.evicted, 5);
    }

    /// A close that returns after its fd number went to a new socket (accepted by another
    /// thread meanwhile) is the old socket's; the number stays the new one's.
    #[test]
    fn a_late_close_of_a_reused_fd_number_is_the_old_sockets() {
        let mut c = Correlator::new();
        let old = opened(&mut c, 0x100, 10);
        // Another thread's socket() got fd 4 while the close was still on its way.
        let new = opened(&mut c, 0x200, 20);
        assert_ne!(old, new);
        // The close's record comes at its exit, with the socket it closed.
        let close = ev(call(SyscallOp::Close, 0), 0x100, 4, 30);
        assert_eq!(observe(&mut c, &close).0, old);
        let read = ev(call(SyscallOp::Recvfrom, 16), 0x200, 4, 31);
        assert_eq!(observe(&mut c, &read).0, new);
        assert_eq!(c.by_fd.get(&(42, 4)), Some(&new));
    }

    /// Under churn a close can return after its fd number went to a second socket, that one
    /// closed, and a third took the number: the late record is still the first socket's —
    /// even once that socket was freed and the third holds the number.
    #[test]
    fn a_late_close_is_the_old_sockets_after_its_number_moved_twice() {
        let mut c = Correlator::new();
        let first = opened(&mut c, 0x100, 10);
        // Its close entered at 30; the socket was freed meanwhile.
        let destroy = destroyed();
        assert_eq!(observe(&mut c, &ev(destroy, 0x100, -1, 32)).0, first);
        let second = opened(&mut c, 0x200, 40);
        let close = |sock: u64, ts: u64| ev(call(SyscallOp::Close, 0), sock, 4, ts);
        assert_eq!(observe(&mut c, &close(0x200, 50)).0, second);
        let third = opened(&mut c, 0x300, 60);
        assert_eq!(observe(&mut c, &close(0x100, 30)).0, first);
        assert_eq!(c.by_fd.get(&(42, 4)), Some(&third));
        let read = ev(call(SyscallOp::Recvfrom, 16), 0x300, 4, 70);
        assert_eq!(observe(&mut c, &read).0, third);
        assert_eq!(c.live(third).and_then(|t| t.sk), Some(0x300));

        // The second close late too: both records come after the third socket's open.
        let mut c = Correlator::new();
        let first = opened(&mut c, 0x100, 10);
        let second = opened(&mut c, 0x200, 40);
        let third = opened(&mut c, 0x300, 60);
        assert_eq!(observe(&mut c, &close(0x200, 50)).0, second);
        assert_eq!(observe(&mut c, &close(0x100, 30)).0, first);
        assert_eq!(c.by_fd.get(&(42, 4)), Some(&third));

        // A state change the first close caused, named with its fd after the number moved
        // (and before the new socket's connect named its socket): still the first's.
        let mut c = Correlator::new();
        let first = opened(&mut c, 0x100, 10);
        let (second, _) = observe(&mut c, &ev(call(SyscallOp::Socket, 4), 0, 4, 20));
        let mut fin = state(tcp_state::ESTABLISHED, tcp_state::FIN_WAIT1, 0x100, 22);
        fin.fd = 4;
        assert_eq!(observe(&mut c, &fin).0, first);
        let connect = ev(call(SyscallOp::Connect, 0), 0x200, 4, 21);
        assert_eq!(observe(&mut c, &connect).0, second);
        assert_eq!(observe(&mut c, &close(0x100, 19)).0, first);
        assert_ne!(c.resolve(second), first, "not merged");
    }

    /// An index entry naming a retired connection does not swallow a new connection on the
    /// same socket address or fd: the new one is live, so its events are shown.
    #[test]
    fn a_stale_index_entry_does_not_swallow_a_new_connection() {
        let mut c = Correlator::new();
        let (gone, _) = observe(&mut c, &ev(call(SyscallOp::Socket, 4), 0, 4, 1));
        observe(&mut c, &ev(call(SyscallOp::Close, 0), 0, 4, 2));
        c.retire_before(u64::MAX);
        assert!(c.live(gone).is_none(), "retired");
        c.by_sock.insert(0x500, gone);
        c.by_fd.insert((42, 5), gone);
        let (new, _) = observe(&mut c, &ev(call(SyscallOp::Socket, 5), 0, 5, 10));
        let connect = ev(call(SyscallOp::Connect, 0), 0x500, 5, 11);
        assert_eq!(observe(&mut c, &connect).0, new);
        assert_ne!(new, gone);
        assert!(c.get(new).is_some_and(|n| n.id == new), "shown");
    }

    /// A connection whose end records were lost ends when a new one begins on its socket,
    /// and retires: the table does not grow with every lost end. A socket connecting again
    /// after a failed connect stays one connection.
    #[test]
    fn a_connection_whose_end_was_lost_ends_when_its_socket_is_reused() {
        let syn = |sock: u64, ts: u64| state(tcp_state::CLOSE, tcp_state::SYN_SENT, sock, ts);
        let est = state(tcp_state::SYN_SENT, tcp_state::ESTABLISHED, 0x100, 11);
        let mut next = syn(0x100, 1_000);
        next.local = Some(endpoint(Ipv4Addr::LOCALHOST.into(), 41001));
        // No record lost: nothing is taken to have ended.
        let mut c = Correlator::new();
        let (old, _) = observe(&mut c, &syn(0x100, 10));
        observe(&mut c, &est);
        observe(&mut c, &next);
        assert_eq!(c.get(old).unwrap().outcome(), None);

        let mut c = Correlator::new();
        c.records_lost = true;
        let (old, _) = observe(&mut c, &syn(0x100, 10));
        assert_eq!(observe(&mut c, &est).0, old);
        // Its FIN_WAIT1..CLOSE and destroy were dropped; the kernel gave its memory to a new
        // socket.
        let (new, _) = observe(&mut c, &next);
        assert_ne!(new, old);
        let ended = c.get(old).unwrap();
        assert_eq!(ended.outcome(), Some("ended unseen (records lost)"));
        assert_eq!(c.get(new).unwrap().outcome(), None);
        c.retire_before(u64::MAX / 2);
        assert!(c.live(old).is_none(), "retired");
        assert!(c.live(new).is_some());

        // Refused, then connecting again on the same socket and fd: the same connection.
        let mut c = Correlator::new();
        c.records_lost = true;
        let (first, _) = observe(&mut c, &ev(call(SyscallOp::Socket, 5), 0, 5, 1));
        let mut syn = syn(0x300, 2);
        syn.fd = 5;
        assert_eq!(observe(&mut c, &syn).0, first);
        let mut again = state(tcp_state::CLOSE, tcp_state::SYN_SENT, 0x300, 3);
        again.fd = 5;
        assert_eq!(observe(&mut c, &again).0, first);
        assert_eq!(c.get(first).unwrap().outcome(), None);
    }

    /// A retired connection's name is no longer anyone's, though it may linger in the index
    /// until enough others retired (then they all go in one pass).
    #[test]
    fn retired_connections_names_claim_nothing_and_are_purged_in_bulk() {
        let closed = |c: &mut Correlator, sock: u64, port: u16| {
            for (from, to) in [
                (tcp_state::CLOSE, tcp_state::SYN_SENT),
                (tcp_state::SYN_SENT, tcp_state::CLOSE),
            ] {
                let mut e = state(from, to, sock, sock);
                e.local = Some(endpoint(Ipv4Addr::LOCALHOST.into(), port));
                observe(c, &e);
            }
        };
        let server = endpoint(Ipv4Addr::LOCALHOST.into(), 8080);
        let mut c = Correlator::new();
        for i in 0..3u16 {
            closed(&mut c, u64::from(i) + 1, 41000 + i);
        }
        c.expire(u64::MAX, &mut |_| {});
        c.retire_before(u64::MAX);
        let client = endpoint(Ipv4Addr::LOCALHOST.into(), 41001);
        assert!(c.by_ends.values().count() > 0, "a few names linger");
        assert_eq!(c.ends_of(client, server), (None, None));
        assert!(c.unclaimed(client, server));

        let n = (UNNAME_AT as u64) * 2;
        for i in 0..n {
            closed(&mut c, 100 + i, 42000 + i as u16);
        }
        c.expire(u64::MAX, &mut |_| {});
        c.retire_before(u64::MAX);
        assert!(c.by_ends.is_empty() && c.by_tuple.is_empty());
        assert!(c.unnamed.is_empty());
    }

    /// A connection first seen late in its life (open before the tracer) has no known state
    /// before its first change; one seen from its start has CLOSE there.
    #[test]
    fn a_state_before_the_first_change_is_known_only_from_the_start() {
        let mut c = Correlator::new();
        let (old, _) = observe(
            &mut c,
            &state(tcp_state::ESTABLISHED, tcp_state::CLOSE_WAIT, 1, 100),
        );
        let conn = c.get(old).unwrap();
        assert_eq!(conn.state_at(50), None, "unknown, not the later CLOSE_WAIT");
        assert_eq!(conn.state_at(100), Some(tcp_state::CLOSE_WAIT));
        let (new, _) = observe(
            &mut c,
            &state(tcp_state::CLOSE, tcp_state::SYN_SENT, 2, 100),
        );
        assert_eq!(c.get(new).unwrap().state_at(50), Some(tcp_state::CLOSE));
    }

    #[test]
    fn a_reused_socket_address_starts_a_new_connection() {
        let mut c = Correlator::new();
        let first = observe(&mut c, &state(tcp_state::CLOSE, tcp_state::SYN_SENT, 5, 1)).0;
        observe(&mut c, &state(tcp_state::SYN_SENT, tcp_state::CLOSE, 5, 2));
        let again = observe(&mut c, &state(tcp_state::CLOSE, tcp_state::SYN_SENT, 5, 3)).0;
        assert_ne!(again, first);
    }

    /// On loopback the kernel reuses a TIME_WAIT 4-tuple for the client's next connection
    /// (`tcp_tw_reuse` 2, the default) and may give the new child socket the freed one's
    /// address: two prefork workers, each reading through an fd adopted without an accept
    /// record, must still own two connections.
    #[test]
    fn a_reused_four_tuple_on_a_reused_socket_is_a_new_connection() {
        let mut c = Correlator::new();
        let destroy = destroyed;
        let mut ids = Vec::new();
        for (worker, base) in [(101u32, 10u64), (102, 100)] {
            let (first, _) = observe(
                &mut c,
                &state(tcp_state::LISTEN, tcp_state::SYN_RECV, 5, base),
            );
            observe(
                &mut c,
                &state(tcp_state::SYN_RECV, tcp_state::ESTABLISHED, 5, base + 1),
            );
            let mut read = ev(call(SyscallOp::Recvfrom, 6), 5, 4, base + 2);
            read.pid = worker;
            read.tid = worker;
            read.local = Some(endpoint(Ipv4Addr::LOCALHOST.into(), 41000));
            read.remote = Some(endpoint(Ipv4Addr::LOCALHOST.into(), 8080));
            assert_eq!(observe(&mut c, &read).0, first);
            let mut close = ev(call(SyscallOp::Close, 0), 5, 4, base + 3);
            close.pid = worker;
            close.tid = worker;
            assert_eq!(observe(&mut c, &close).0, first);
            for (from, to, ts) in [
                (tcp_state::ESTABLISHED, tcp_state::FIN_WAIT1, base + 4),
                (tcp_state::FIN_WAIT1, tcp_state::FIN_WAIT2, base + 5),
                (tcp_state::FIN_WAIT2, tcp_state::CLOSE, base + 6),
            ] {
                observe(&mut c, &state(from, to, 5, ts));
            }
            assert_eq!(observe(&mut c, &ev(destroy(), 5, -1, base + 7)).0, first);
            ids.push((first, worker));
        }
        assert_ne!(ids[0].0, ids[1].0, "two connections");
        for (id, worker) in ids {
            assert_eq!(c.get(id).unwrap().pid, worker);
            assert_eq!(c.get(id).unwrap().bytes_received, 6);
        }
    }

    /// A socket made before a fork and connected by the child: the connect names the process
    /// that made it, and lands on the connection its `socket()` began.
    #[test]
    fn a_connect_on_a_socket_a_forebear_made_joins_its_socket_call() {
        let mut c = Correlator::new();
        let on = |pid: u32, mut e: Event| {
            e.pid = pid;
            e.tid = pid;
            e
        };
        let made = observe(&mut c, &on(10, ev(call(SyscallOp::Socket, 3), 0, 3, 1))).0;
        // The child's state change is read before its connect's record (written at the exit).
        let mut syn_sent = on(11, state(tcp_state::CLOSE, tcp_state::SYN_SENT, 7, 2));
        syn_sent.fd = 3;
        observe(&mut c, &syn_sent);
        let mut connect = on(11, ev(call(SyscallOp::Connect, 0), 0, 3, 2));
        if let Kind::Syscall(s) = &mut connect.kind {
            s.args[1] = 10;
        }
        let joined = observe(&mut c, &connect).0;
        assert_eq!(joined, made);
        let send = on(11, ev(call(SyscallOp::Sendto, 5), 0, 3, 3));
        assert_eq!(observe(&mut c, &send).0, made);
        // The parent's own fd 3 is still the socket's too.
        let close = on(10, ev(call(SyscallOp::Close, 0), 0, 3, 4));
        assert_eq!(observe(&mut c, &close).0, made);
        assert_eq!(c.get(made).unwrap().bytes_sent, 5);
    }

    /// As above, with the order a prefork server's records arrive in (seen with `tracer
    /// record`): the first worker's `close` is written at its exit, after its socket was freed
    /// and reallocated to the next connection on the same 4-tuple, whose handshake is already
    /// in. The close names its fd's connection and the address the next one now has: it is the
    /// first connection's, and the two stay apart.
    #[test]
    fn a_late_close_of_a_freed_socket_stays_with_its_own_connection() {
        let mut c = Correlator::new();
        let destroy = ev(destroyed(), 5, -1, 0);
        let on = |worker: u32, mut e: Event| {
            e.pid = worker;
            e.tid = worker;
            e
        };
        let mut at = |e: &Event, ts: u64| {
            let mut e = e.clone();
            e.ts_ns = ts;
            observe(&mut c, &e).0
        };
        let first = at(&state(tcp_state::LISTEN, tcp_state::SYN_RECV, 5, 0), 10);
        at(
            &state(tcp_state::SYN_RECV, tcp_state::ESTABLISHED, 5, 0),
            11,
        );
        assert_eq!(
            at(&on(101, ev(call(SyscallOp::Recvfrom, 6), 5, 4, 0)), 12),
            first
        );
        at(
            &state(tcp_state::ESTABLISHED, tcp_state::FIN_WAIT1, 5, 0),
            14,
        );
        at(&state(tcp_state::FIN_WAIT1, tcp_state::FIN_WAIT2, 5, 0), 15);
        at(&state(tcp_state::FIN_WAIT2, tcp_state::CLOSE, 5, 0), 16);
        assert_eq!(at(&destroy, 17), first);
        let second = at(&state(tcp_state::LISTEN, tcp_state::SYN_RECV, 5, 0), 20);
        assert_ne!(second, first);
        at(
            &state(tcp_state::SYN_RECV, tcp_state::ESTABLISHED, 5, 0),
            21,
        );
        // The first worker's close, begun at 13, read now.
        assert_eq!(
            at(&on(101, ev(call(SyscallOp::Close, 0), 5, 4, 0)), 13),
            first
        );
        assert_eq!(
            at(&on(102, ev(call(SyscallOp::Recvfrom, 10), 5, 4, 0)), 22),
            second
        );
        assert_ne!(c.resolve(second), first, "not merged");
        assert_eq!(c.get(first).unwrap().bytes_received, 6);
        assert_eq!(c.get(second).unwrap().bytes_received, 10);
        assert_eq!(c.get(second).unwrap().pid, 102);
    }

    /// A socket freed (tcp_destroy_sock) may be reallocated at once for a new connection in
    /// another process: the new one's events must not fold it into the finished one.
    #[test]
    fn a_freed_socket_reallocated_to_a_new_client_is_a_new_connection() {
        let mut c = Correlator::new();
        let mut old = state(tcp_state::LISTEN, tcp_state::SYN_RECV, 5, 1);
        old.pid = 7;
        let server = observe(&mut c, &old).0;
        for (from, to, ts) in [
            (tcp_state::SYN_RECV, tcp_state::ESTABLISHED, 2),
            (tcp_state::ESTABLISHED, tcp_state::CLOSE_WAIT, 3),
            (tcp_state::CLOSE_WAIT, tcp_state::LAST_ACK, 4),
            (tcp_state::LAST_ACK, tcp_state::CLOSE, 5),
        ] {
            observe(&mut c, &state(from, to, 5, ts));
        }
        let destroy = destroyed();
        assert_eq!(observe(&mut c, &ev(destroy, 5, -1, 6)).0, server);
        // The same address, a new client socket.
        let (client, _) = observe(&mut c, &ev(call(SyscallOp::Socket, 3), 0, 3, 7));
        assert_ne!(client, server);
        let connect = ev(call(SyscallOp::Connect, -115), 5, 3, 8);
        assert_eq!(
            observe(&mut c, &connect).0,
            client,
            "not the freed socket's"
        );
        let syn = state(tcp_state::CLOSE, tcp_state::SYN_SENT, 5, 8);
        assert_eq!(observe(&mut c, &syn).0, client);
        assert_eq!(
            c.get(server).unwrap().states.last(),
            Some(&tcp_state::CLOSE)
        );
        assert_eq!(c.total, 2);
    }

    /// A listener older than the tracer is known by its fd and address; when it closes, the
    /// kernel's LISTEN → CLOSE names only its socket and address: the same connection.
    #[test]
    fn an_adopted_listener_is_closed_by_its_own_state_change() {
        let mut c = Correlator::new();
        let addr = endpoint(Ipv4Addr::LOCALHOST.into(), 8080);
        c.adopt_listener(42, "server", 6, addr, 1);
        let other = endpoint(std::net::Ipv6Addr::LOCALHOST.into(), 8080);
        c.adopt_listener(42, "server", 7, other, 1);
        let mut child = state(tcp_state::LISTEN, tcp_state::SYN_RECV, 8, 2);
        child.local = Some(addr);
        let (listener, _) = observe(&mut c, &ev(call(SyscallOp::Close, 0), 0, 6, 2));
        assert_ne!(
            observe(&mut c, &child).0,
            listener,
            "a child is not its listener"
        );
        let mut gone = state(tcp_state::LISTEN, tcp_state::CLOSE, 9, 3);
        gone.local = Some(addr);
        gone.remote = None;
        assert_eq!(observe(&mut c, &gone).0, listener);
        let conn = c.get(listener).unwrap();
        assert_eq!(conn.states, [tcp_state::LISTEN, tcp_state::CLOSE]);
        assert!(conn.is_closed());
        assert_eq!(c.total, 3, "no connection of its own for the change");
    }

    #[test]
    fn accept_joins_the_child_by_its_tuple() {
        let mut c = Correlator::new();
        let mut listen = state(tcp_state::CLOSE, tcp_state::LISTEN, 1, 1);
        listen.fd = 3;
        listen.local = Some(endpoint(Ipv4Addr::UNSPECIFIED.into(), 8080));
        listen.remote = None;
        let listener = observe(&mut c, &listen).0;
        let mut child = state(tcp_state::LISTEN, tcp_state::SYN_RECV, 2, 2);
        child.local = Some(endpoint(Ipv4Addr::LOCALHOST.into(), 8080));
        child.remote = Some(endpoint(Ipv4Addr::LOCALHOST.into(), 41000));
        let server = observe(&mut c, &child).0;
        assert_ne!(server, listener);
        let mut accept = ev(call(SyscallOp::Accept4, 4), 0, 3, 3);
        accept.remote = Some(endpoint(Ipv4Addr::LOCALHOST.into(), 41000));
        assert_eq!(observe(&mut c, &accept).0, server);
        assert_eq!(
            observe(&mut c, &ev(call(SyscallOp::Read, 0), 0, 4, 4)).0,
            server
        );
    }

    /// A SYN from 127.0.0.1:41000 to 127.0.0.1:8080, as captured on lo.
    const SYN_41000_TO_8080: &str =
        "450000280000400040060000 7f000001 7f000001 a0281f90 000003e8 00000000 5002faf0 00000000";

    /// A captured segment from its hex dump.
    fn packet(hex: &str, ts: u64) -> Event {
        use crate::decode::Captured;
        Event::blank(
            Kind::Packet(crate::decode::Pooled::new(Captured::from_hex(hex, true, 1))),
            Via::CgroupSkbEgress,
            ts,
        )
    }

    /// A dual-stack server (listening on `[::]`) names its IPv4 peer `::ffff:127.0.0.1`; the
    /// segments carry 127.0.0.1: each segment still reaches the server's connection.
    #[test]
    fn a_dual_stack_server_gets_the_ipv4_segments_of_its_connection() {
        use std::net::Ipv6Addr;
        let mapped = IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped());
        let mut c = Correlator::new();
        let mut listen = state(tcp_state::CLOSE, tcp_state::LISTEN, 1, 1);
        listen.family = tracer_common::AF_INET6;
        listen.local = Some(endpoint(Ipv6Addr::UNSPECIFIED.into(), 8080));
        listen.remote = None;
        observe(&mut c, &listen);
        let client = observe(&mut c, &state(tcp_state::CLOSE, tcp_state::SYN_SENT, 2, 2)).0;
        let mut child = state(tcp_state::LISTEN, tcp_state::SYN_RECV, 3, 4);
        child.family = tracer_common::AF_INET6;
        child.local = Some(endpoint(mapped, 8080));
        child.remote = Some(endpoint(mapped, 41000));
        let server = observe(&mut c, &child).0;
        let mut up = state(tcp_state::SYN_RECV, tcp_state::ESTABLISHED, 3, 5);
        up.family = tracer_common::AF_INET6;
        up.local = child.local;
        up.remote = child.remote;
        observe(&mut c, &up);
        // 127.0.0.1:41000 -> 127.0.0.1:8080 ACK, as captured on lo.
        let ack = packet(
            "450000280000400040060000 7f000001 7f000001 a0281f90 000003e9 00000001 5010faf0 00000000",
            6,
        );
        let mut got = Vec::new();
        c.observe(ack, &mut |x| got.push(x));
        let conns: Vec<ConnId> = got[0].ends.iter().map(|e| e.conn).collect();
        assert_eq!(conns, vec![client, server]);
        assert_eq!(c.all().len(), 3, "no phantom connection: {:?}", c.all());
    }

    /// A segment the server's accepted child will claim waits for it: the SYN reaches both
    /// ends' timelines, though the child is named only after the handshake.
    #[test]
    fn a_syn_to_a_traced_listener_waits_for_the_accepted_child() {
        let mut c = Correlator::new();
        observe(&mut c, &listening_on_8080());
        let client = observe(&mut c, &state(tcp_state::CLOSE, tcp_state::SYN_SENT, 2, 2)).0;
        // 127.0.0.1:41000 -> 127.0.0.1:8080 SYN.
        let hex = SYN_41000_TO_8080;
        let syn = packet(hex, 3);
        let mut got = Vec::new();
        c.observe(syn, &mut |x| got.push(x));
        assert!(got.is_empty(), "parked until the child is known");
        let mut child = state(tcp_state::LISTEN, tcp_state::SYN_RECV, 3, 4);
        child.local = Some(endpoint(Ipv4Addr::LOCALHOST.into(), 8080));
        child.remote = Some(endpoint(Ipv4Addr::LOCALHOST.into(), 41000));
        c.observe(child, &mut |x| got.push(x));
        let seg = got.iter().find(|x| x.event.layer() == "packet").unwrap();
        let conns: Vec<ConnId> = seg.ends.iter().map(|e| e.conn).collect();
        assert_eq!(conns.len(), 2, "both ends: {conns:?}");
        assert!(conns.contains(&client));
        assert_eq!(c.oldest_parked_ns(), None);
    }

    /// A parked segment leaves before its deadline when the caller cannot hold events back
    /// any longer: it goes to the end that claims it (here the client), and nothing stays
    /// parked; a later one is not released.
    #[test]
    fn parked_segments_before_a_time_are_released_on_demand() {
        let mut c = Correlator::new();
        observe(&mut c, &listening_on_8080());
        let client = observe(&mut c, &state(tcp_state::CLOSE, tcp_state::SYN_SENT, 2, 2)).0;
        let hex = SYN_41000_TO_8080;
        let mut got = Vec::new();
        c.observe(packet(hex, 3), &mut |x| got.push(x));
        c.observe(packet(hex, 50), &mut |x| got.push(x));
        assert!(got.is_empty(), "parked until the child is known");
        assert_eq!(c.oldest_parked_ns(), Some(3));
        c.release_parked_before(10, &mut |x| got.push(x));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].event.ts_ns, 3);
        let conns: Vec<ConnId> = got[0].ends.iter().map(|e| e.conn).collect();
        assert_eq!(conns, vec![client]);
        assert_eq!(c.oldest_parked_ns(), Some(50));
    }

    /// A SYN reaching a traced listener on the 4-tuple of a connection its server end holds in
    /// TIME_WAIT (loopback, `tcp_tw_reuse`) starts the next connection: it waits for that
    /// one's child, and never lands on the finished one.
    #[test]
    fn a_syn_on_a_four_tuple_in_time_wait_waits_for_the_new_child() {
        let mut c = Correlator::new();
        observe(&mut c, &listening_on_8080());
        let server_end = |from, to, sock, ts| {
            let mut e = state(from, to, sock, ts);
            e.local = Some(endpoint(Ipv4Addr::LOCALHOST.into(), 8080));
            e.remote = Some(endpoint(Ipv4Addr::LOCALHOST.into(), 41000));
            e
        };
        let old = observe(
            &mut c,
            &server_end(tcp_state::LISTEN, tcp_state::SYN_RECV, 3, 2),
        )
        .0;
        for (from, to, ts) in [
            (tcp_state::SYN_RECV, tcp_state::ESTABLISHED, 3),
            (tcp_state::ESTABLISHED, tcp_state::FIN_WAIT1, 4),
            (tcp_state::FIN_WAIT1, tcp_state::FIN_WAIT2, 5),
            (tcp_state::FIN_WAIT2, tcp_state::CLOSE, 6),
        ] {
            observe(&mut c, &server_end(from, to, 3, ts));
        }
        // 127.0.0.1:41000 -> 127.0.0.1:8080 SYN.
        let hex = SYN_41000_TO_8080;
        let mut got = Vec::new();
        c.observe(packet(hex, 7), &mut |x| got.push(x));
        assert!(got.is_empty(), "parked until the new child is known");
        c.observe(
            server_end(tcp_state::LISTEN, tcp_state::SYN_RECV, 3, 8),
            &mut |x| got.push(x),
        );
        let new = got
            .iter()
            .find(|x| x.event.layer() == "state")
            .and_then(|x| x.ends.iter().next())
            .unwrap()
            .conn;
        assert_ne!(new, old);
        let seg = got.iter().find(|x| x.event.layer() == "packet").unwrap();
        let conns: Vec<ConnId> = seg.ends.iter().map(|e| e.conn).collect();
        assert_eq!(conns, [new]);
    }

    /// A listener's SYN-ACK sent again names no socket: it makes the server's end of its
    /// connection at once, which the segments parked for the accepted child and the child's
    /// own state changes then join; never the client's end.
    #[test]
    fn a_resent_syn_ack_belongs_to_the_accepted_child() {
        let mut c = Correlator::new();
        observe(&mut c, &listening_on_8080());
        let client = observe(&mut c, &state(tcp_state::CLOSE, tcp_state::SYN_SENT, 2, 2)).0;
        // 127.0.0.1:41000 -> 127.0.0.1:8080 SYN: parked for the child.
        let hex = SYN_41000_TO_8080;
        let mut got = Vec::new();
        c.observe(packet(hex, 3), &mut |x| got.push(x));
        assert!(got.is_empty());
        let server_end = endpoint(Ipv4Addr::LOCALHOST.into(), 8080);
        let client_end = endpoint(Ipv4Addr::LOCALHOST.into(), 41000);
        let mut resent = resent_syn_ack(server_end, client_end, 4);
        c.observe(resent.clone(), &mut |x| got.push(x));
        let again = got
            .iter()
            .find(|x| x.event.layer() == "congestion")
            .unwrap();
        let server = again.ends.iter().next().unwrap().conn;
        assert_ne!(server, client);
        let syn = got
            .iter()
            .find(|x| x.event.layer() == "packet")
            .expect("the SYN released");
        let conns: Vec<ConnId> = syn.ends.iter().map(|e| e.conn).collect();
        assert!(
            conns.contains(&server) && conns.contains(&client),
            "{conns:?}"
        );
        assert_eq!(c.oldest_parked_ns(), None);

        // The second one, and the child, join it.
        resent.ts_ns = 5;
        assert_eq!(observe(&mut c, &resent).0, server);
        let mut child = state(tcp_state::LISTEN, tcp_state::SYN_RECV, 3, 6);
        child.local = Some(server_end);
        child.remote = Some(client_end);
        assert_eq!(observe(&mut c, &child).0, server);
        let conn = c.get(server).unwrap();
        assert_eq!(conn.role, Role::Server);
        assert_eq!(
            conn.congestion.retransmits.get(&RetransmitKind::SynAck),
            Some(&2)
        );
        assert_eq!(conn.congestion.bytes_retransmitted, 0);
        assert!(
            conn.congestion.last.is_none(),
            "a request has no numbers to show"
        );
        assert_eq!(c.get(client).unwrap().retransmits(), 0);
        assert_eq!(c.all().len(), 3, "{:?}", c.all());
    }

    /// A server's handshake lasts from its client's SYN to the last ACK, though its socket is
    /// made only at the last ACK.
    #[test]
    fn a_servers_handshake_starts_with_the_syn() {
        let mut c = Correlator::new();
        observe(&mut c, &listening_on_8080());
        // 127.0.0.1:41000 -> 127.0.0.1:8080 SYN, no client traced: it waits for the child.
        let hex = SYN_41000_TO_8080;
        c.observe(packet(hex, 3), &mut |_| {});
        let mut child = state(tcp_state::LISTEN, tcp_state::SYN_RECV, 3, 1000);
        child.local = Some(endpoint(Ipv4Addr::LOCALHOST.into(), 8080));
        child.remote = Some(endpoint(Ipv4Addr::LOCALHOST.into(), 41000));
        let server = observe(&mut c, &child).0;
        let mut up = child.clone();
        up.kind = Kind::State(StateChange {
            from: tcp_state::SYN_RECV,
            to: tcp_state::ESTABLISHED,
        });
        up.ts_ns = 1010;
        observe(&mut c, &up);
        assert_eq!(c.get(server).unwrap().handshake_ns, Some(1007));
    }

    /// On kernels whose child names its peer only after its SYN_RECV (5.10, 6.1), the
    /// connection a resent SYN-ACK made and the accepted socket meet once an event names both
    /// ends.
    #[test]
    fn a_child_naming_its_peer_late_joins_the_connection_its_syn_ack_made() {
        let mut c = Correlator::new();
        observe(&mut c, &listening_on_8080());
        let server_end = endpoint(Ipv4Addr::LOCALHOST.into(), 8080);
        let client_end = endpoint(Ipv4Addr::LOCALHOST.into(), 41000);
        let resent = resent_syn_ack(server_end, client_end, 1000);
        let made = observe(&mut c, &resent).0;
        let mut child = state(tcp_state::LISTEN, tcp_state::SYN_RECV, 3, 3000);
        child.local = Some(server_end);
        child.remote = Some(endpoint(Ipv4Addr::UNSPECIFIED.into(), 0));
        observe(&mut c, &child);
        let mut up = state(tcp_state::SYN_RECV, tcp_state::ESTABLISHED, 3, 3010);
        up.local = Some(server_end);
        up.remote = Some(client_end);
        observe(&mut c, &up);
        let servers: Vec<&Conn> = c
            .all()
            .into_iter()
            .filter(|c| c.role == Role::Server)
            .collect();
        assert_eq!(servers.len(), 1, "{servers:?}");
        assert_eq!(servers[0].id, made);
        assert_eq!(servers[0].retransmits(), 1);
        assert_eq!(servers[0].states.last(), Some(&tcp_state::ESTABLISHED));
        let later = observe(&mut c, &up).0;
        assert_eq!(c.resolve(later), made);
    }

    /// A handshake whose last ACK never comes (a SYN flood, a client gone) ends when its
    /// listener gives up: the connection its resent SYN-ACKs made is finished then, and leaves
    /// the table; one whose handshake completed stays.
    #[test]
    fn a_half_open_connection_ends_when_its_listener_gives_up() {
        let mut c = Correlator::new();
        let server_end = endpoint(Ipv4Addr::LOCALHOST.into(), 8080);
        let resent = |port: u16, ts: u64| {
            resent_syn_ack(server_end, endpoint(Ipv4Addr::LOCALHOST.into(), port), ts)
        };
        let never = observe(&mut c, &resent(41000, 1_000_000_000)).0;
        let done = observe(&mut c, &resent(41001, 1_000_000_000)).0;
        let mut child = state(tcp_state::LISTEN, tcp_state::SYN_RECV, 3, 2_000_000_000);
        child.local = Some(server_end);
        child.remote = Some(endpoint(Ipv4Addr::LOCALHOST.into(), 41001));
        assert_eq!(observe(&mut c, &child).0, done);
        c.retire_before(100_000_000_000);
        assert_eq!(
            c.get(never).unwrap().outcome(),
            None,
            "the listener still tries"
        );
        c.retire_before(200_000_000_000);
        let gone = c.get(never).unwrap();
        assert_eq!(gone.outcome(), Some("handshake never completed"));
        assert!(c.live(never).is_none(), "retired");
        assert!(c.live(done).is_some());
    }
}
