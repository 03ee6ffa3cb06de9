//! Putting events back in time order.
//!
//! Records reach user space in the order they were *finished*: a syscall's record is written
//! at its exit, after the kernel and state events it caused. Each event waits here for a short
//! window and leaves in order of its sort key.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// A time-ordered holding buffer. Most records arrive already in order: those go to a queue
/// (O(1)); only the ones that arrive late go through the heap.
pub struct Reorder<T> {
    heap: BinaryHeap<Reverse<Entry<T>>>,
    run: VecDeque<Entry<T>>,
    seq: u64,
    window_ns: u64,
}

struct Entry<T> {
    key: u64,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.key, self.seq) == (other.key, other.seq)
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Entry<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.key, self.seq).cmp(&(other.key, other.seq))
    }
}

impl<T> Reorder<T> {
    /// A buffer that holds each item until the clock is `window_ns` past its key.
    pub fn new(window_ns: u64) -> Self {
        Self {
            heap: BinaryHeap::new(),
            run: VecDeque::new(),
            seq: 0,
            window_ns,
        }
    }

    /// Adds `item` to leave at `key` (ties leave in insertion order).
    pub fn push(&mut self, key: u64, item: T) {
        self.seq += 1;
        let entry = Entry {
            key,
            seq: self.seq,
            item,
        };
        if self.run.back().is_none_or(|last| last.key <= key) {
            self.run.push_back(entry);
        } else {
            self.heap.push(Reverse(entry));
        }
    }

    /// The smaller of the two fronts, removed, if its key is at most `limit`.
    fn pop_at_most(&mut self, limit: u64) -> Option<T> {
        let run = self.run.front().map(|e| (e.key, e.seq));
        let heap = self.heap.peek().map(|Reverse(e)| (e.key, e.seq));
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
            self.run.pop_front().map(|e| e.item)
        } else {
            self.heap.pop().map(|Reverse(e)| e.item)
        }
    }

    /// Removes and returns, in order, every item whose key is older than `now_ns - window`.
    pub fn drain_ready(&mut self, now_ns: u64, mut out: impl FnMut(T)) {
        let limit = now_ns.saturating_sub(self.window_ns);
        while let Some(item) = self.pop_at_most(limit) {
            out(item);
        }
    }

    /// Removes and returns everything, in order.
    pub fn drain_all(&mut self, mut out: impl FnMut(T)) {
        while let Some(item) = self.pop_at_most(u64::MAX) {
            out(item);
        }
    }

    /// How many items are waiting.
    pub fn len(&self) -> usize {
        self.heap.len() + self.run.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty() && self.run.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_in_key_order_after_the_window() {
        let mut r = Reorder::new(10);
        r.push(30, "c");
        r.push(10, "a");
        r.push(20, "b");
        r.push(10, "a2");
        r.push(35, "d");
        let mut out = vec![];
        r.drain_ready(25, |x| out.push(x));
        assert_eq!(out, ["a", "a2"]);
        r.drain_ready(40, |x| out.push(x));
        assert_eq!(out, ["a", "a2", "b", "c"]);
        r.drain_all(|x| out.push(x));
        assert_eq!(out, ["a", "a2", "b", "c", "d"]);
        assert!(r.is_empty());
    }
}
