//! WebSocket counters of one executor, for `/metrics`: open WebSockets, messages and bytes
//! each way, close codes sent and received. Written only by the executor that owns them (as
//! every counter of [`crate::state::ExecutorStats`]); summed per slot at scrape time.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::state::ExecutorStats;

/// The close-code labels: the codes RFC 6455 and the IANA registry define one by one, the
/// application ranges as a whole (a label per code would let clients grow the metric without
/// bound), a close frame without a code, and anything else.
pub const CLOSE_CODE_LABELS: [&str; 20] = [
    "1000", "1001", "1002", "1003", "1004", "1005", "1006", "1007", "1008", "1009", "1010", "1011", "1012",
    "1013", "1014", "1015", "3xxx", "4xxx", "none", "other",
];

/// The index in [`CLOSE_CODE_LABELS`] of a close frame's code (`None`: no code).
pub fn close_code_index(code: Option<u16>) -> usize {
    match code {
        Some(c @ 1000..=1015) => usize::from(c - 1000),
        Some(3000..=3999) => 16,
        Some(4000..=4999) => 17,
        None => 18,
        Some(_) => 19,
    }
}

/// One executor instance's WebSocket counters.
#[derive(Debug, Default)]
pub struct WsStats {
    /// WebSockets open now (handed over after their `101`, not yet finished).
    pub open: AtomicU64,
    /// Of those, the ones parked while quiet (holding no read buffer and none of the
    /// session's loops: see `session.rs`).
    pub quiet: AtomicU64,
    /// Text and binary messages received (whole, after reassembly and inflation).
    pub messages_in: AtomicU64,
    /// Text and binary messages sent.
    pub messages_out: AtomicU64,
    /// Bytes read from WebSocket connections after their handshake (frames as on the wire).
    pub bytes_in: AtomicU64,
    /// Bytes written to WebSocket connections (frames as on the wire).
    pub bytes_out: AtomicU64,
    /// Close frames sent, by [`close_code_index`].
    pub closes_sent: [AtomicU64; CLOSE_CODE_LABELS.len()],
    /// Close frames received, by [`close_code_index`].
    pub closes_received: [AtomicU64; CLOSE_CODE_LABELS.len()],
}

impl WsStats {
    pub fn close_sent(&self, code: Option<u16>) {
        ExecutorStats::add(&self.closes_sent[close_code_index(code)], 1);
    }

    pub fn close_received(&self, code: Option<u16>) {
        ExecutorStats::add(&self.closes_received[close_code_index(code)], 1);
    }
}

/// [`WsStats`] summed over the instances of one executor slot.
#[derive(Debug, Clone, Default)]
pub struct WsTotals {
    pub open: u64,
    pub quiet: u64,
    pub messages_in: u64,
    pub messages_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub closes_sent: [u64; CLOSE_CODE_LABELS.len()],
    pub closes_received: [u64; CLOSE_CODE_LABELS.len()],
}

impl WsTotals {
    /// Add an instance's counters; its gauge only while it is live.
    pub fn add(&mut self, s: &WsStats, gauges: bool) {
        let g = |c: &AtomicU64| c.load(Relaxed);
        if gauges {
            self.open += g(&s.open);
            self.quiet += g(&s.quiet);
        }
        self.messages_in += g(&s.messages_in);
        self.messages_out += g(&s.messages_out);
        self.bytes_in += g(&s.bytes_in);
        self.bytes_out += g(&s.bytes_out);
        for (t, c) in self.closes_sent.iter_mut().zip(&s.closes_sent) {
            *t += g(c);
        }
        for (t, c) in self.closes_received.iter_mut().zip(&s.closes_received) {
            *t += g(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_map_to_their_labels() {
        assert_eq!(CLOSE_CODE_LABELS[close_code_index(Some(1000))], "1000");
        assert_eq!(CLOSE_CODE_LABELS[close_code_index(Some(1009))], "1009");
        assert_eq!(CLOSE_CODE_LABELS[close_code_index(Some(1015))], "1015");
        assert_eq!(CLOSE_CODE_LABELS[close_code_index(Some(3001))], "3xxx");
        assert_eq!(CLOSE_CODE_LABELS[close_code_index(Some(4999))], "4xxx");
        assert_eq!(CLOSE_CODE_LABELS[close_code_index(None)], "none");
        assert_eq!(CLOSE_CODE_LABELS[close_code_index(Some(2000))], "other");
        assert_eq!(CLOSE_CODE_LABELS[close_code_index(Some(999))], "other");
    }
}
