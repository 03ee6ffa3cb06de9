//! What a kprobe hands to its kretprobe: a kretprobe sees only the return value, so the
//! entry keeps what it read (the socket, a pointer) in an LRU map by thread id, and the return
//! takes it back out. A thread is in one call of a function at a time; an entry whose return
//! was never seen is evicted, not leaked.

use aya_ebpf::{helpers::bpf_get_current_pid_tgid, maps::LruHashMap};
use tracer_common::failure::Failure;

use crate::emit::count_if_refused;

/// Keeps `value` for the running thread's return probe (a refused insert is counted).
#[inline(always)]
pub fn keep<V>(map: &LruHashMap<u32, V>, value: V) {
    let tid = bpf_get_current_pid_tgid() as u32;
    count_if_refused(map.insert(tid, value, 0), Failure::InflightFull);
}

/// Takes what the running thread's entry probe kept, if anything.
#[inline(always)]
pub fn take<V: Copy>(map: &LruHashMap<u32, V>) -> Option<V> {
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: a value pointer from the lookup, read at once, before the entry is removed.
    let value = unsafe { *map.get_ptr(tid)? };
    let _ = map.remove(tid);
    Some(value)
}
