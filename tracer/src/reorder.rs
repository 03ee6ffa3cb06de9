//! Putting events back in time order.
//!
//! Records reach user space in the order they were *finished*: a syscall's record is written
//! at its exit, after the kernel and state events it caused. Each event waits here for a short
//! window and leaves in order of its sort key.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A time-ordered holding buffer.
pub struct Reorder<T> {
    heap: BinaryHeap<Reverse<Entry<T>>>,
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
            seq: 0,
            window_ns,
        }
    }

    /// Adds `item` to leave at `key` (ties leave in insertion order).
    pub fn push(&mut self, key: u64, item: T) {
        self.seq += 1;
        self.heap.push(Reverse(Entry {
            key,
            seq: self.seq,
            item,
        }));
    }

    /// Removes and returns, in order, every item whose key is older than `now_ns - window`.
    pub fn drain_ready(&mut self, now_ns: u64, mut out: impl FnMut(T)) {
        let limit = now_ns.saturating_sub(self.window_ns);
        while self.heap.peek().is_some_and(|Reverse(e)| e.key <= limit) {
            if let Some(Reverse(e)) = self.heap.pop() {
                out(e.item);
            }
        }
    }

    /// Removes and returns everything, in order.
    pub fn drain_all(&mut self, mut out: impl FnMut(T)) {
        while let Some(Reverse(e)) = self.heap.pop() {
            out(e.item);
        }
    }

    /// How many items are waiting.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
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
        let mut out = vec![];
        r.drain_ready(25, |x| out.push(x));
        assert_eq!(out, ["a", "a2"]);
        r.drain_ready(40, |x| out.push(x));
        assert_eq!(out, ["a", "a2", "b", "c"]);
        assert!(r.is_empty());
    }
}
