//! Enter/exit pairing for the human view: a syscall during which other events of its
//! connection happened is shown twice — where it starts (`connect(...) ...`) and where it
//! returns (`connect = 0`) — with those events between; any other syscall is one line at its
//! start. Decides where each syscall sorts and which of its records are shown.

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use crate::correlate::{ConnId, Correlated};
use crate::decode::Kind;
use crate::render::Part;

/// The pairing state.
#[derive(Default)]
pub struct Pairing {
    /// Enter lines waiting to be shown; `true` once their exit made them redundant.
    pending_enters: HashMap<(u32, u64), bool>,
    /// Enter lines already shown, whose exit must then be a `Return` line.
    shown_enters: HashSet<(u32, u64)>,
    /// Latest non-syscall event time per connection.
    last_inner: HashMap<ConnId, u64>,
}

impl Pairing {
    /// Where `c` sorts and which part of it it is.
    pub fn place(&mut self, c: &Correlated) -> (u64, Part) {
        let ev = &c.event;
        let conn = c.ends.iter().next().map_or(0, |e| e.conn);
        let key = (ev.tid, ev.ts_ns);
        match &ev.kind {
            Kind::Syscall(s) if s.exit.is_none() => {
                self.pending_enters.insert(key, false);
                (ev.ts_ns, Part::Enter)
            }
            Kind::Syscall(_) => {
                let inner = self.last_inner.get(&conn).is_some_and(|&t| t > ev.ts_ns);
                match self.pending_enters.get_mut(&key) {
                    Some(redundant) if !inner => {
                        *redundant = true;
                        (ev.ts_ns, Part::Whole)
                    }
                    Some(_) => (ev.end_ns(), Part::Return),
                    None if self.shown_enters.remove(&key) => (ev.end_ns(), Part::Return),
                    None => (ev.ts_ns, Part::Whole),
                }
            }
            _ => {
                for end in c.ends.iter() {
                    let t = self.last_inner.entry(end.conn).or_default();
                    *t = (*t).max(ev.ts_ns);
                }
                (ev.ts_ns, Part::Whole)
            }
        }
    }

    /// Whether an item leaving the reorder buffer is to be shown (an enter line is not once
    /// its exit made it redundant).
    pub fn show(&mut self, c: &Correlated, part: Part) -> bool {
        if part != Part::Enter {
            return true;
        }
        let key = (c.event.tid, c.event.ts_ns);
        if self.pending_enters.remove(&key) == Some(true) {
            return false;
        }
        self.shown_enters.insert(key);
        true
    }

    /// Forgets connections quiet for longer than `keep_ns` (bounded memory under churn).
    pub fn prune(&mut self, now_ns: u64, keep_ns: u64) {
        if self.last_inner.len() > 4096 {
            self.last_inner
                .retain(|_, t| now_ns.saturating_sub(*t) < keep_ns);
        }
    }
}
