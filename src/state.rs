//! The small state shared between executors and whoever watches them (the supervisor,
//! `/ready`, later `/metrics`). Counters are written only by the executor that owns them,
//! with relaxed loads and stores on a cache line of their own, so the request path never
//! contends with another core.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// One executor's counters and heartbeat.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct ExecutorStats {
    /// Advanced by the executor's own timer task, so a blocked thread stops advancing it.
    pub heartbeat: AtomicU64,
    pub connections_accepted: AtomicU64,
    pub connections_open: AtomicU64,
    /// Connections refused with 503 because of `--max-connections`.
    pub connections_rejected: AtomicU64,
    pub requests: AtomicU64,
    /// Requests refused with a 4xx/5xx by the codec (malformed, limits, timeouts).
    pub parse_errors: AtomicU64,
    /// Handler panics turned into 500s.
    pub handler_panics: AtomicU64,
}

impl ExecutorStats {
    /// Add `n` to a counter owned by the calling executor. A plain load and store: only one
    /// thread writes, so no locked read-modify-write is needed.
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
    }

    #[inline]
    pub fn sub(counter: &AtomicU64, n: u64) {
        counter.store(counter.load(Relaxed).wrapping_sub(n), Relaxed);
    }
}

/// Flags and per-executor stats for one server.
#[derive(Debug)]
pub struct ServerState {
    draining: AtomicBool,
    stopping: AtomicBool,
    executors: Vec<Arc<ExecutorStats>>,
}

impl ServerState {
    pub fn new(executors: usize) -> ServerState {
        ServerState {
            draining: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            executors: (0..executors)
                .map(|_| Arc::new(ExecutorStats::default()))
                .collect(),
        }
    }

    /// Whether the server is draining (`/ready` answers 503).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Relaxed)
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Relaxed);
    }

    /// Whether executors should stop now.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Relaxed)
    }

    pub fn set_stopping(&self) {
        self.stopping.store(true, Relaxed);
    }

    pub fn executor(&self, index: usize) -> &Arc<ExecutorStats> {
        &self.executors[index]
    }

    pub fn executors(&self) -> &[Arc<ExecutorStats>] {
        &self.executors
    }

    /// A counter summed over all executors.
    pub fn total(&self, pick: impl Fn(&ExecutorStats) -> &AtomicU64) -> u64 {
        self.executors.iter().map(|e| pick(e).load(Relaxed)).sum()
    }
}
