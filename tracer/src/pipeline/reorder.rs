//! Putting events back in time order.
//!
//! Records reach user space in the order they were *finished*: a syscall's record is written
//! at its exit, after the kernel and state events it caused. Each event waits here for a short
//! window and leaves in order of its sort key.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// A time-ordered holding buffer; the caller decides up to which key items may leave. Most
/// records arrive already in order: those go to a queue (O(1)); only the ones that arrive late
/// go through the heap. The heap orders small keys and the late items wait in a slab: an item
/// is hundreds of bytes (a segment's bytes are inline), and a heap of items moved each one
/// log n times per push and per pop — a fifth of the consumer's time went to those copies.
pub struct Reorder<T> {
    heap: BinaryHeap<Reverse<(u64, u64, u32)>>,
    late: Vec<Option<T>>,
    free: Vec<u32>,
    run: VecDeque<Entry<T>>,
    seq: u64,
}

struct Entry<T> {
    key: u64,
    seq: u64,
    item: T,
}

impl<T> Reorder<T> {
    /// An empty buffer.
    pub fn new() -> Self {
        Self {
            heap: BinaryHeap::new(),
            late: Vec::new(),
            free: Vec::new(),
            run: VecDeque::new(),
            seq: 0,
        }
    }

    /// How many items wait.
    pub fn len(&self) -> usize {
        self.run.len() + self.heap.len()
    }

    /// Adds `item` to leave at `key` (ties leave in insertion order).
    pub fn push(&mut self, key: u64, item: T) {
        self.seq += 1;
        let seq = self.seq;
        if self.run.back().is_none_or(|last| last.key <= key) {
            self.run.push_back(Entry { key, seq, item });
            return;
        }
        let slot = match self.free.pop() {
            Some(slot) => {
                self.late[slot as usize] = Some(item);
                slot
            }
            None => {
                self.late.push(Some(item));
                (self.late.len() - 1) as u32
            }
        };
        self.heap.push(Reverse((key, seq, slot)));
    }

    /// The item with the smallest key, removed, if that key is at most `limit`.
    pub fn pop(&mut self, limit: u64) -> Option<T> {
        let run = self.run.front().map(|e| (e.key, e.seq));
        let heap = self.heap.peek().map(|&Reverse((key, seq, _))| (key, seq));
        let take_run = match (run, heap) {
            (Some(r), Some(h)) => r < h,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return None,
        };
        let key = if take_run { run?.0 } else { heap?.0 };
        if key > limit {
            return None;
        }
        if take_run {
            return self.run.pop_front().map(|e| e.item);
        }
        let Reverse((_, _, slot)) = self.heap.pop()?;
        self.free.push(slot);
        self.late[slot as usize].take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_in_key_order_up_to_the_limit() {
        let mut r = Reorder::new();
        r.push(30, "c");
        r.push(10, "a");
        r.push(20, "b");
        r.push(10, "a2");
        r.push(35, "d");
        let mut out = vec![];
        let mut drain = |r: &mut Reorder<_>, limit| {
            while let Some(x) = r.pop(limit) {
                out.push(x);
            }
            out.clone()
        };
        assert_eq!(drain(&mut r, 15), ["a", "a2"]);
        assert_eq!(drain(&mut r, 30), ["a", "a2", "b", "c"]);
        assert_eq!(drain(&mut r, u64::MAX), ["a", "a2", "b", "c", "d"]);
        assert!(r.heap.is_empty() && r.run.is_empty());
    }

    #[test]
    fn many_late_items_leave_in_key_then_arrival_order_and_reuse_their_slots() {
        // A deterministic shuffle: keys out of order, with ties.
        let keys: Vec<u64> = (0..2000u64).map(|i| (i * 7919) % 613).collect();
        let mut r = Reorder::new();
        let mut expected: Vec<(u64, usize)> = Vec::new();
        for (i, &k) in keys.iter().enumerate() {
            r.push(k, (k, i));
            expected.push((k, i));
        }
        expected.sort();
        let mut out = Vec::new();
        while let Some(x) = r.pop(300) {
            out.push(x);
        }
        let cut = expected.partition_point(|&(k, _)| k <= 300);
        assert_eq!(out, expected[..cut]);
        let slots = r.late.len();
        // Freed slots are taken again before the slab grows.
        for (i, &k) in keys.iter().enumerate().take(cut) {
            r.push(k, (k, 10_000 + i));
        }
        assert_eq!(r.late.len(), slots);
        let mut rest = Vec::new();
        while let Some(x) = r.pop(u64::MAX) {
            rest.push(x);
        }
        assert_eq!(rest.len(), keys.len());
        assert!(rest.windows(2).all(|w| w[0].0 <= w[1].0));
    }
}
