//! What a connection's congestion records add up to: retransmissions by kind, bytes resent,
//! RTT and cwnd extremes, time spent recovering, and the last numbers seen.

use std::collections::BTreeMap;

use tracer_common::ca_state;

use crate::decode::{Congestion, RetransmitKind};

/// A connection's congestion history, summed.
#[derive(Clone, Debug, Default)]
pub struct CongestionStats {
    /// Retransmissions per kind.
    pub retransmits: BTreeMap<RetransmitKind, u32>,
    /// Bytes sent again.
    pub bytes_retransmitted: u64,
    /// Smallest smoothed RTT seen, microseconds.
    pub srtt_min_us: Option<u32>,
    /// Largest smoothed RTT seen, microseconds.
    pub srtt_max_us: Option<u32>,
    srtt_sum_us: u64,
    srtt_samples: u64,
    /// Largest congestion window seen.
    pub cwnd_max: u32,
    /// Time spent in the Recovery and Loss states, nanoseconds.
    pub recovering_ns: u64,
    recovering_since: Option<u64>,
    /// Congestion-state changes seen.
    pub state_changes: u32,
    /// The congestion-control algorithm.
    pub algorithm: Option<crate::decode::Algorithm>,
    /// Times the receive buffer was resized.
    pub rcvbuf_resizes: u32,
    /// The receive buffer's size before its first resize.
    pub rcvbuf_first: Option<u32>,
    /// The largest receive buffer seen, bytes.
    pub rcvbuf_max: Option<u32>,
    /// The highest delivery rate sampled, bytes per second.
    pub delivery_rate_max: Option<u64>,
    /// The last record's numbers, and when.
    pub last: Option<(u64, Box<Congestion>)>,
}

impl CongestionStats {
    /// Adds a record seen at `ts_ns`.
    pub fn add(&mut self, ts_ns: u64, c: &Congestion) {
        if let Some(kind) = c.resent() {
            *self.retransmits.entry(kind).or_default() += 1;
            self.bytes_retransmitted += u64::from(c.retransmitted_bytes());
        }
        if !c.has_numbers() {
            return;
        }
        if let Some(srtt) = c.srtt_us {
            self.srtt_min_us = Some(self.srtt_min_us.map_or(srtt, |m| m.min(srtt)));
            self.srtt_max_us = Some(self.srtt_max_us.map_or(srtt, |m| m.max(srtt)));
            self.srtt_sum_us += u64::from(srtt);
            self.srtt_samples += 1;
        }
        self.cwnd_max = self.cwnd_max.max(c.cwnd);
        if let Some(before) = c.rcvbuf_before {
            self.rcvbuf_resizes += 1;
            self.rcvbuf_first.get_or_insert(before);
        }
        if c.rcvbuf > 0 {
            self.rcvbuf_max = self.rcvbuf_max.max(Some(c.rcvbuf));
        }
        self.delivery_rate_max = self.delivery_rate_max.max(c.delivery_rate);
        if !c.algorithm.is_empty() {
            self.algorithm.get_or_insert(c.algorithm);
        }
        let recovering = matches!(c.ca_state, ca_state::RECOVERY | ca_state::LOSS);
        if c.func == tracer_common::KernelFn::TcpSetCaState {
            self.state_changes += 1;
        }
        match (recovering, self.recovering_since) {
            (true, None) => self.recovering_since = Some(ts_ns),
            (false, Some(since)) => {
                self.recovering_ns += ts_ns.saturating_sub(since);
                self.recovering_since = None;
            }
            _ => {}
        }
        // The box of the last record is reused: this runs for every congestion event.
        match &mut self.last {
            Some((at, last)) => {
                *at = ts_ns;
                **last = c.clone();
            }
            None => self.last = Some((ts_ns, Box::new(c.clone()))),
        }
    }

    /// Retransmissions of every kind.
    pub fn total_retransmits(&self) -> u32 {
        self.retransmits.values().sum()
    }

    /// Mean smoothed RTT, microseconds.
    pub fn srtt_avg_us(&self) -> Option<u64> {
        self.srtt_sum_us.checked_div(self.srtt_samples)
    }

    /// Whether any record was seen.
    pub fn is_empty(&self) -> bool {
        self.last.is_none() && self.retransmits.is_empty()
    }

    /// Folds in the history of the same connection seen earlier under another identity.
    pub fn merge(&mut self, old: CongestionStats) {
        for (k, n) in old.retransmits {
            *self.retransmits.entry(k).or_default() += n;
        }
        self.bytes_retransmitted += old.bytes_retransmitted;
        self.srtt_min_us = match (self.srtt_min_us, old.srtt_min_us) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.srtt_max_us = self.srtt_max_us.max(old.srtt_max_us);
        self.srtt_sum_us += old.srtt_sum_us;
        self.srtt_samples += old.srtt_samples;
        self.cwnd_max = self.cwnd_max.max(old.cwnd_max);
        self.recovering_ns += old.recovering_ns;
        self.state_changes += old.state_changes;
        self.rcvbuf_resizes += old.rcvbuf_resizes;
        self.rcvbuf_first = old.rcvbuf_first.or(self.rcvbuf_first);
        self.rcvbuf_max = self.rcvbuf_max.max(old.rcvbuf_max);
        self.delivery_rate_max = self.delivery_rate_max.max(old.delivery_rate_max);
        if self.algorithm.is_none() {
            self.algorithm = old.algorithm;
        }
        if self.last.is_none() {
            self.last = old.last;
        }
    }
}
