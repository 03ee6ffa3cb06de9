//! Segments captured twice on one host: leaving one network namespace and entering another
//! (two containers joined by a veth pair). Each end sees its own copy; the capture file keeps
//! the first.

use std::collections::VecDeque;

use rustc_hash::FxHashSet as HashSet;

use crate::decode::Captured;

/// How many segments that left through a real interface are remembered: far more than can be
/// in flight between two namespaces at once.
const REMEMBERED: usize = 8192;

/// Recent segments that left through an interface other than loopback.
#[derive(Default)]
pub(super) struct Copies {
    seen: HashSet<u64>,
    order: VecDeque<u64>,
}

impl Copies {
    /// Remembers a segment leaving this host.
    pub(super) fn left(&mut self, c: &Captured) {
        let Some(key) = key(c) else { return };
        if self.seen.insert(key) {
            self.order.push_back(key);
            if self.order.len() > REMEMBERED
                && let Some(old) = self.order.pop_front()
            {
                self.seen.remove(&old);
            }
        }
    }

    /// Whether an arriving segment is one this host sent: the second copy of it.
    pub(super) fn entered(&mut self, c: &Captured) -> bool {
        key(c).is_some_and(|key| self.seen.remove(&key))
    }
}

/// The segment's identity: its IP and TCP headers, without what a hop may change (IPv4 TTL
/// and header checksum, IPv6 hop limit).
fn key(c: &Captured) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let seg = c.segment.as_ref().ok()?;
    let headers = c.data.get(..seg.ip_header_len + seg.tcp.header_len)?;
    let mut h = rustc_hash::FxHasher::default();
    match headers[0] >> 4 {
        4 => {
            headers[..8].hash(&mut h);
            headers[9..10].hash(&mut h);
            headers[12..].hash(&mut h);
        }
        _ => {
            headers[..7].hash(&mut h);
            headers[8..].hash(&mut h);
        }
    }
    seg.payload_len.hash(&mut h);
    Some(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn captured(hex: &str, egress: bool, ifindex: u32) -> Captured {
        Captured::from_hex(hex, egress, ifindex)
    }

    /// One SYN as it left namespace A on veth-a (ifindex 5) and entered B on veth-b (4); TTL
    /// and checksum of the copy differ as a router would change them.
    #[test]
    fn the_copy_entering_another_namespace_is_recognised_once() {
        let out = "45000028 1c464000 4006a0b2 0a000001 0a000002 a0281f90 000003e8 00000000 5002faf0 00000000";
        let back = "45000028 1c464000 3f06a1b2 0a000001 0a000002 a0281f90 000003e8 00000000 5002faf0 00000000";
        let other = "45000028 1c474000 4006a0b1 0a000001 0a000002 a0281f90 000003e8 00000000 5002faf0 00000000";
        let mut copies = Copies::default();
        copies.left(&captured(out, true, 5));
        assert!(!copies.entered(&captured(other, false, 4)), "another IP id");
        assert!(copies.entered(&captured(back, false, 4)));
        assert!(!copies.entered(&captured(back, false, 4)), "only once");
    }
}
