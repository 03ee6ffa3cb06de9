//! Putting events back in time order.
//!
//! Records reach user space in the order they were *finished*: a syscall's record is written
//! at its exit, after the kernel and state events it caused. Each event waits here for a short
//! window and leaves in order of its sort key.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// A time-ordered holding buffer; the caller decides up to which key items may leave. Most records arrive already in order: those go to a queue
/// (O(1)); only the ones that arrive late go through the heap.
pub struct Reorder<T> {
    heap: BinaryHeap<Reverse<Entry<T>>>,
    run: VecDeque<Entry<T>>,
    seq: u64,
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
    /// An empty buffer.
    pub fn new() -> Self {
        Self {
            heap: BinaryHeap::new(),
            run: VecDeque::new(),
            seq: 0,
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

    /// The item with the smallest key, removed, if that key is at most `limit`.
    pub fn pop(&mut self, limit: u64) -> Option<T> {
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
}
