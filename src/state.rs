//! The small state shared between executors and the supervisor (and `/ready`, later
//! `/metrics`). Counters are written only by the executor that owns them, with relaxed loads
//! and stores on a cache line of their own, so the request path never contends with another
//! core; flags are written only by the supervisor.

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// One executor instance's counters, heartbeat and control flags.
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
    /// Set by the supervisor: stop accepting, finish open connections, then exit.
    pub drain: AtomicBool,
    /// Set by the supervisor: exit now, dropping open connections.
    pub stop: AtomicBool,
    /// Set by the executor once it serves (listener adopted, handler built).
    pub serving: AtomicBool,
    /// The executor thread's kernel thread id, for operators inspecting a stall.
    pub tid: AtomicU64,
    /// Connections the supervisor accepted on a stalled executor's socket and hands to
    /// this one; `handoff_pending` says there is something to take (checked each tick).
    handoff: Mutex<Vec<TcpStream>>,
    handoff_pending: AtomicBool,
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

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }

    pub fn request_drain(&self) {
        self.drain.store(true, Relaxed);
    }

    pub fn request_stop(&self) {
        self.stop.store(true, Relaxed);
    }

    /// Give this executor a connection to serve (from the supervisor).
    pub fn hand_off(&self, stream: TcpStream) {
        self.handoff.lock().unwrap().push(stream);
        self.handoff_pending.store(true, Relaxed);
    }

    /// Connections handed to this executor since the last call (by the executor).
    pub fn take_handoffs(&self) -> Vec<TcpStream> {
        if !self.handoff_pending.swap(false, Relaxed) {
            return Vec::new();
        }
        std::mem::take(&mut *self.handoff.lock().unwrap())
    }

    pub fn drain_requested(&self) -> bool {
        self.drain.load(Relaxed)
    }

    pub fn stop_requested(&self) -> bool {
        self.stop.load(Relaxed)
    }
}

/// Flags and the current executor instance of each slot, for one server.
#[derive(Debug)]
pub struct ServerState {
    draining: AtomicBool,
    sockets_closing: AtomicBool,
    /// Only the supervisor replaces entries (on restart, recycle, reload); readers take a
    /// snapshot. Executors hold their own `Arc` and never touch this lock.
    executors: Mutex<Vec<Arc<ExecutorStats>>>,
    restarts: AtomicU64,
}

impl ServerState {
    pub fn new(executors: usize) -> ServerState {
        ServerState {
            draining: AtomicBool::new(false),
            sockets_closing: AtomicBool::new(false),
            executors: Mutex::new((0..executors).map(|_| Arc::new(ExecutorStats::default())).collect()),
            restarts: AtomicU64::new(0),
        }
    }

    /// Whether the server is draining (`/ready` answers 503).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Relaxed)
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Relaxed);
    }

    /// Whether the listening sockets are going away for good (final shutdown), as opposed
    /// to executors being replaced on sockets that stay (recycling, reload, upgrade).
    pub fn sockets_closing(&self) -> bool {
        self.sockets_closing.load(Relaxed)
    }

    pub fn set_sockets_closing(&self) {
        self.sockets_closing.store(true, Relaxed);
    }

    /// The current instance of executor slot `index`.
    pub fn executor(&self, index: usize) -> Arc<ExecutorStats> {
        self.executors.lock().unwrap()[index].clone()
    }

    /// Put a new instance in slot `index` (the supervisor replacing an executor).
    pub fn replace_executor(&self, index: usize, stats: Arc<ExecutorStats>) {
        self.executors.lock().unwrap()[index] = stats;
    }

    /// A snapshot of the current instances.
    pub fn executors(&self) -> Vec<Arc<ExecutorStats>> {
        self.executors.lock().unwrap().clone()
    }

    /// A counter summed over the current instances.
    pub fn total(&self, pick: impl Fn(&ExecutorStats) -> &AtomicU64) -> u64 {
        self.executors.lock().unwrap().iter().map(|e| pick(e).load(Relaxed)).sum()
    }

    /// Executors started to replace others (crashes, stalls, recycling, reloads).
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Relaxed)
    }

    pub fn count_restart(&self) {
        self.restarts.fetch_add(1, Relaxed);
    }
}
