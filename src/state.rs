//! The small state shared between executors and the supervisor (and `/ready`, later
//! `/metrics`). Counters are written only by the executor that owns them, with relaxed loads
//! and stores on a cache line of their own, so the request path never contends with another
//! core; flags are written only by the supervisor.

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use crate::http::ParseError;
use crate::ws::stats::{WsStats, WsTotals};

/// Upper bounds (µs) of the request-duration histogram buckets; a last `+Inf` bucket is
/// implied (the count).
pub const DURATION_BUCKETS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000,
];

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
    /// Connections closed for their PROXY header: from a peer outside `--proxy-allow-from`,
    /// missing, malformed or late.
    pub proxy_refused: AtomicU64,
    /// TLS handshakes that failed (bad or no client certificate, protocol or cipher the
    /// server refuses, plain HTTP on the TLS port, a client gone mid-handshake).
    pub tls_handshake_failures: AtomicU64,
    /// Responses by status class: 1xx, 2xx, 3xx, 4xx, 5xx.
    pub status_classes: [AtomicU64; 5],
    /// Request durations (head received to response written), cumulative buckets.
    pub duration_buckets: [AtomicU64; DURATION_BUCKETS_US.len()],
    pub duration_sum_us: AtomicU64,
    pub duration_count: AtomicU64,
    /// Refused requests by kind, in `ParseError::ALL` order.
    pub parse_error_kinds: [AtomicU64; ParseError::ALL.len()],
    /// Requests inside a handler right now.
    pub in_flight: AtomicU64,
    /// WebSocket connections, messages, bytes and close codes.
    pub ws: WsStats,
    /// The executor slot this instance serves.
    pub slot: usize,
    /// Set by the supervisor: stop accepting, finish open connections, then exit.
    pub drain: AtomicBool,
    /// Set by the supervisor: exit now, dropping open connections.
    pub stop: AtomicBool,
    /// Set by the executor once it has stopped accepting because of `drain`.
    pub drain_seen: AtomicBool,
    /// Set by the executor once it serves (listener adopted, handler built).
    pub serving: AtomicBool,
    /// The executor thread's kernel thread id, for operators inspecting a stall.
    pub tid: AtomicU64,
    /// `--max-requests` with this instance's jitter (0: never recycled), set by the
    /// supervisor before the instance starts, so the executor knows when it is due.
    recycle_at: AtomicU64,
    /// Connections the supervisor accepted on a stalled executor's socket and hands to
    /// this one; `handoff_pending` says there is something to take (checked each tick).
    handoff: Mutex<Vec<TcpStream>>,
    handoff_pending: AtomicBool,
}

impl ExecutorStats {
    /// Counters for a new executor instance of `slot`.
    pub fn for_slot(slot: usize) -> ExecutorStats {
        ExecutorStats { slot, ..ExecutorStats::default() }
    }

    /// Count one answered request (by the executor that answered it).
    pub fn record_response(&self, status: u16, duration_us: u64) {
        if let Some(class) = (status / 100).checked_sub(1).filter(|c| *c < 5) {
            Self::add(&self.status_classes[class as usize], 1);
        }
        if let Some(b) = DURATION_BUCKETS_US.iter().position(|&le| duration_us <= le) {
            Self::add(&self.duration_buckets[b], 1);
        }
        Self::add(&self.duration_sum_us, duration_us);
        Self::add(&self.duration_count, 1);
    }

    pub fn record_parse_error(&self, e: ParseError) {
        Self::add(&self.parse_errors, 1);
        Self::add(&self.parse_error_kinds[e.index()], 1);
    }

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

    /// Recycle this instance once it has counted `at` requests (`None`: never).
    pub fn set_recycle_at(&self, at: Option<u64>) {
        self.recycle_at.store(at.unwrap_or(0), Relaxed);
    }

    /// The request count at which this instance is recycled, if any.
    pub fn recycle_at(&self) -> Option<u64> {
        Some(self.recycle_at.load(Relaxed)).filter(|&n| n > 0)
    }

    /// Whether this instance has served its `--max-requests` share.
    pub fn recycle_due(&self) -> bool {
        self.recycle_at().is_some_and(|n| Self::get(&self.requests) >= n)
    }

    pub fn drain_requested(&self) -> bool {
        self.drain.load(Relaxed)
    }

    pub fn stop_requested(&self) -> bool {
        self.stop.load(Relaxed)
    }
}

/// Counters of one executor slot summed over its instances, for `/metrics`: instances come
/// and go (restarts, recycling), and a counter must not go backwards when one goes.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    pub connections_accepted: u64,
    pub connections_open: u64,
    pub connections_rejected: u64,
    pub requests: u64,
    pub in_flight: u64,
    pub handler_panics: u64,
    pub proxy_refused: u64,
    pub tls_handshake_failures: u64,
    pub status_classes: [u64; 5],
    pub duration_buckets: [u64; DURATION_BUCKETS_US.len()],
    pub duration_sum_us: u64,
    pub duration_count: u64,
    pub parse_error_kinds: [u64; ParseError::ALL.len()],
    pub ws: WsTotals,
}

impl Totals {
    fn add(&mut self, s: &ExecutorStats, gauges: bool) {
        let g = |c: &AtomicU64| c.load(Relaxed);
        self.connections_accepted += g(&s.connections_accepted);
        self.connections_rejected += g(&s.connections_rejected);
        self.requests += g(&s.requests);
        self.handler_panics += g(&s.handler_panics);
        self.proxy_refused += g(&s.proxy_refused);
        self.tls_handshake_failures += g(&s.tls_handshake_failures);
        if gauges {
            self.connections_open += g(&s.connections_open);
            self.in_flight += g(&s.in_flight);
        }
        for (t, c) in self.status_classes.iter_mut().zip(&s.status_classes) {
            *t += g(c);
        }
        for (t, c) in self.duration_buckets.iter_mut().zip(&s.duration_buckets) {
            *t += g(c);
        }
        self.duration_sum_us += g(&s.duration_sum_us);
        self.duration_count += g(&s.duration_count);
        for (t, c) in self.parse_error_kinds.iter_mut().zip(&s.parse_error_kinds) {
            *t += g(c);
        }
        self.ws.add(&s.ws, gauges);
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
    /// Every executor instance whose thread may still run (current, retiring, stuck).
    live: Mutex<Vec<Arc<ExecutorStats>>>,
    /// Per slot, the counters of instances that are gone.
    retired: Mutex<Vec<Totals>>,
    restarts: AtomicU64,
    /// Access log lines dropped (queue full, output failing); written by the access log,
    /// which holds its own reference.
    access_log_dropped: Arc<AtomicU64>,
    stalls: AtomicU64,
    driver: OnceLock<&'static str>,
    runtime: OnceLock<&'static str>,
    /// Set (and signalled) when something needs the supervisor before its next tick: a
    /// command, or an executor that reached `--max-requests`.
    nudged: Mutex<bool>,
    nudge: Condvar,
}

impl ServerState {
    pub fn new(executors: usize) -> ServerState {
        ServerState {
            draining: AtomicBool::new(false),
            sockets_closing: AtomicBool::new(false),
            executors: Mutex::new((0..executors).map(|i| Arc::new(ExecutorStats::for_slot(i))).collect()),
            live: Mutex::new(Vec::new()),
            retired: Mutex::new(vec![Totals::default(); executors]),
            restarts: AtomicU64::new(0),
            access_log_dropped: Arc::new(AtomicU64::new(0)),
            stalls: AtomicU64::new(0),
            driver: OnceLock::new(),
            runtime: OnceLock::new(),
            nudged: Mutex::new(false),
            nudge: Condvar::new(),
        }
    }

    /// Wake the supervisor now instead of at its next tick.
    pub fn nudge_supervisor(&self) {
        *self.nudged.lock().unwrap() = true;
        self.nudge.notify_one();
    }

    /// Wait until nudged or until `timeout` has passed (by the supervisor).
    pub fn wait_for_nudge(&self, timeout: Duration) {
        let nudged = self.nudged.lock().unwrap();
        let (mut nudged, _) = self.nudge.wait_timeout_while(nudged, timeout, |n| !*n).unwrap();
        *nudged = false;
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
    /// The counter the access log counts its dropped lines in.
    pub fn access_log_dropped_counter(&self) -> Arc<AtomicU64> {
        self.access_log_dropped.clone()
    }

    /// Access log lines dropped so far.
    pub fn access_log_dropped(&self) -> u64 {
        self.access_log_dropped.load(Relaxed)
    }

    pub fn restarts(&self) -> u64 {
        self.restarts.load(Relaxed)
    }

    pub fn count_restart(&self) {
        self.restarts.fetch_add(1, Relaxed);
    }

    /// Executors found stalled (heartbeat late by `--stall-detect`).
    pub fn stalls(&self) -> u64 {
        self.stalls.load(Relaxed)
    }

    pub fn count_stall(&self) {
        self.stalls.fetch_add(1, Relaxed);
    }

    /// The IO driver executors run on (`io_uring`, `epoll`), once known.
    pub fn driver(&self) -> &'static str {
        self.driver.get().copied().unwrap_or("unknown")
    }

    pub fn set_driver(&self, driver: &'static str) {
        let _ = self.driver.set(driver);
    }

    /// The runtime executors run on (`monoio`, ...), once known.
    pub fn runtime(&self) -> &'static str {
        self.runtime.get().copied().unwrap_or("unknown")
    }

    pub fn set_runtime(&self, runtime: &'static str) {
        let _ = self.runtime.set(runtime);
    }

    /// A new executor instance exists (its counters now count).
    pub fn register(&self, stats: &Arc<ExecutorStats>) {
        self.live.lock().unwrap().push(stats.clone());
    }

    /// An executor instance's thread has ended: fold its counters into its slot's totals.
    pub fn retire(&self, stats: &Arc<ExecutorStats>) {
        let mut live = self.live.lock().unwrap();
        if let Some(i) = live.iter().position(|s| Arc::ptr_eq(s, stats)) {
            live.swap_remove(i);
            if let Some(t) = self.retired.lock().unwrap().get_mut(stats.slot) {
                t.add(stats, false);
            }
        }
    }

    /// Per slot: counters of every instance that ever served it, gauges of the live ones.
    pub fn totals(&self) -> Vec<Totals> {
        let live = self.live.lock().unwrap();
        let mut totals = self.retired.lock().unwrap().clone();
        for s in live.iter() {
            if let Some(t) = totals.get_mut(s.slot) {
                t.add(s, true);
            }
        }
        totals
    }
}
