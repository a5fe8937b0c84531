//! The supervisor: one lightweight thread that owns the listening sockets and watches the
//! executors through their [`ExecutorStats`] (heartbeats, counters), never through the
//! request path. It replaces executors that die, recycles them after `--max-requests`,
//! rolls them over on reload, and runs the graceful drain.
//!
//! Replacement is always "new first": the new executor shares the slot's listening socket
//! (a duplicate descriptor of the same socket, so the same accept queue) and reports that
//! it serves before the old one is told to drain. No connection is refused or reset.

pub mod notify;
pub mod signals;
mod stall;
pub mod steer;
pub mod upgrade;

use std::collections::VecDeque;
use std::io;
use std::net::TcpListener;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::ServerConfig;
use crate::conn::DriverConfig;
use crate::executor::{ExecutorConfig, TICK};
use crate::server::{share, ServerError};
use crate::state::{ExecutorStats, ServerState};
use crate::tls::TlsConfig;
use crate::uds::UnixSockets;
use notify::Notifier;

/// How long a new executor gets to report that it serves.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Restarts of dead executors allowed within `CRASH_WINDOW` before the process gives up
/// (and exits non-zero for the service manager to restart it).
const CRASH_LIMIT: usize = 5;
const CRASH_WINDOW: Duration = Duration::from_secs(60);
/// After asking executors to stop, how long to wait for their threads before leaving them.
const STOP_JOIN_WAIT: Duration = Duration::from_secs(1);
/// First and longest wait before retrying to start an executor that could not start.
const RESTART_BACKOFF_MIN: Duration = Duration::from_millis(100);
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often `STATUS=` is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(2);

/// Process-level settings (the gunicorn-master side).
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// After the listeners close, how long in-flight requests get to finish.
    pub graceful_timeout: Duration,
    /// How long to keep accepting after a drain starts (`/ready` already says 503), so a
    /// load balancer can deregister the target first.
    pub drain_delay: Duration,
    /// An executor whose heartbeat has not moved for this long is replaced (its thread is
    /// abandoned; gunicorn's `--timeout`).
    pub timeout: Duration,
    /// An executor whose heartbeat is this late gets no new connections until it recovers.
    pub stall_detect: Duration,
    /// More abandoned (stuck) executor threads than this at once ends the process with an
    /// error, for the service manager to restart it.
    pub max_stuck: usize,
    /// Recycle an executor after this many requests (plus jitter).
    pub max_requests: Option<u64>,
    /// Up to this many extra requests, chosen at random per executor, so executors do not
    /// all recycle at once.
    pub max_requests_jitter: u64,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig {
            graceful_timeout: Duration::from_secs(30),
            drain_delay: Duration::ZERO,
            timeout: Duration::from_secs(30),
            stall_detect: Duration::from_secs(1),
            max_stuck: 1,
            max_requests: None,
            max_requests_jitter: 0,
        }
    }
}

/// What the supervisor is asked to do.
#[derive(Debug, Clone)]
pub enum Command {
    /// Graceful drain, then exit (SIGTERM, SIGINT).
    Drain,
    /// Close everything and exit now (SIGQUIT, a second SIGTERM).
    StopNow,
    /// Replace every executor, one at a time, new first (SIGHUP), with a new configuration
    /// if one is given. Settings that need new sockets or threads (addresses, workers,
    /// cores, backlog, runtime, the access log's output and budget, the metrics port) keep
    /// their value until a restart; saying so is the caller's job (the binary names them in
    /// one warning, from the configuration file's keys).
    Reload(Option<Box<ServerConfig>>),
    /// Start the executable again on the same sockets, then drain this process (SIGUSR2).
    Upgrade,
}

/// How the server ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// Every connection finished within the graceful timeout.
    Drained,
    /// The graceful timeout ran out; `cut` connections were closed with work left.
    DrainTimedOut { cut: u64 },
    /// Stopped at once.
    Stopped,
    /// A new process took over the sockets (binary upgrade) and this one drained.
    Upgraded,
}

/// The report an executor thread sends once: its IO driver, or why it could not start.
pub type StartReport = Result<&'static str, String>;

/// Starts an executor thread (type-erased over the handler type).
pub type SpawnFn = dyn Fn(ExecutorConfig, Sender<StartReport>) -> io::Result<JoinHandle<()>> + Send + Sync;

/// What every executor of a slot is started with, but its listener handle and stats.
pub struct SlotTemplate {
    pub index: usize,
    pub core: Option<usize>,
    pub addresses: Vec<std::net::SocketAddr>,
    /// Per address: the TLS configuration it serves with (`None`: plain HTTP).
    pub tls: Vec<Option<Arc<TlsConfig>>>,
    pub driver: DriverConfig,
    pub max_in_flight: usize,
    pub max_connections: usize,
}

/// One running executor thread.
struct Instance {
    stats: Arc<ExecutorStats>,
    thread: JoinHandle<()>,
}

/// One executor slot: its socket (owned here for the life of the server) and current
/// executor.
struct Slot {
    template: SlotTemplate,
    /// One socket per bound address; empty once closed (drain, upgrade).
    listeners: Vec<TcpListener>,
    current: Option<Instance>,
    /// The current executor's heartbeat as last seen, and when it last moved.
    beat: u64,
    beat_at: Instant,
    /// New connections are steered away from this slot (its heartbeat is late, or it has
    /// no executor).
    stalled: bool,
    /// Set while the slot has no executor (it died and a new one could not start yet).
    restart: Option<Restart>,
}

/// When to try again to start an executor in an empty slot, and the wait after that.
#[derive(Debug, Clone, Copy)]
struct Restart {
    at: Instant,
    backoff: Duration,
}

/// An executor on its way out (recycled, reloaded): draining until `deadline`.
struct Retiring {
    instance: Instance,
    deadline: Instant,
    stop_sent: bool,
}

pub struct Supervisor {
    slots: Vec<Slot>,
    retiring: Vec<Retiring>,
    spawn: Arc<SpawnFn>,
    state: Arc<ServerState>,
    config: SupervisorConfig,
    notifier: Notifier,
    crashes: VecDeque<Instant>,
    rng: u64,
    last_status: Instant,
    last_watchdog: Instant,
    /// When the heartbeats were last looked at (to notice the supervisor oversleeping).
    last_look: Instant,
    /// Executors given up on while stuck: their threads still exist until they wake.
    abandoned: Vec<Instance>,
    /// Round-robin position for handing off connections rescued from a stalled slot.
    handoff_next: usize,
    /// Whether the slot sockets form a reuseport group of their own, one socket per slot
    /// (so steering and rescue apply); not for one shared, socket-activated socket.
    steerable: bool,
    /// Whether the sockets are percore's own to close at shutdown (not the service
    /// manager's, as with socket activation).
    sockets_owned: bool,
    /// The configuration in force (for comparing a reloaded one).
    server_config: ServerConfig,
    /// The Unix sockets every executor accepts from (closed, and their files removed, with
    /// the server; kept open across an upgrade).
    unix: UnixSockets,
}

impl Supervisor {
    /// Start one executor per slot (each reporting that it serves) and return the supervisor
    /// that owns them.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        templates: Vec<SlotTemplate>,
        listeners: Vec<Vec<TcpListener>>,
        spawn: Arc<SpawnFn>,
        state: Arc<ServerState>,
        server_config: ServerConfig,
        notifier: Notifier,
        steerable: bool,
        sockets_owned: bool,
        unix: UnixSockets,
    ) -> Result<(Supervisor, &'static str), ServerError> {
        let config = server_config.supervisor.clone();
        let now = Instant::now();
        let count = templates.len();
        let mut sup = Supervisor {
            slots: templates
                .into_iter()
                .zip(listeners)
                .map(|(template, listener)| Slot {
                    template,
                    listeners: listener,
                    current: None,
                    beat: 0,
                    beat_at: now,
                    stalled: false,
                    restart: None,
                })
                .collect(),
            retiring: Vec::new(),
            spawn,
            state,
            config,
            notifier,
            crashes: VecDeque::new(),
            rng: seed(),
            last_status: now,
            last_watchdog: now,
            last_look: now,
            abandoned: Vec::new(),
            handoff_next: 0,
            steerable,
            sockets_owned,
            server_config,
            unix,
        };
        let mut driver = "";
        for i in 0..count {
            match sup.spawn_instance(i) {
                Ok((instance, d)) => {
                    driver = d;
                    sup.install(i, instance);
                }
                Err(reason) => {
                    sup.stop_all();
                    return Err(ServerError::Executor { index: i, reason });
                }
            }
        }
        // Whoever owns the sockets owns their steering: inherited sockets (an upgrade) may
        // still carry the program of the process before, steering away from an executor
        // of its that was stalled. Every executor here is fresh, so this detaches it.
        sup.steer();
        Ok((sup, driver))
    }

    /// Supervise until the server ends; commands arrive on `commands`.
    pub fn run(mut self, commands: Receiver<Command>) -> Result<Shutdown, ServerError> {
        self.notifier.send(&format!("READY=1\nSTATUS={}\nMAINPID={}", self.status(), std::process::id()));
        upgrade::report_ready();
        loop {
            match self.next_command(&commands) {
                Ok(Command::Drain) => return Ok(self.drain(&commands)),
                Ok(Command::Upgrade) => {
                    if let Some(pid) = self.start_successor() {
                        return Ok(self.hand_over(&commands, pid));
                    }
                    // The sockets stay ours: so does their steering, which the new process
                    // may have reset before it failed.
                    self.steer();
                }
                Ok(Command::StopNow) | Err(RecvTimeoutError::Disconnected) => {
                    self.notifier.send("STOPPING=1");
                    self.stop_all();
                    return Ok(Shutdown::Stopped);
                }
                Ok(Command::Reload(config)) => self.reload(config.map(|c| *c)),
                Err(RecvTimeoutError::Timeout) => {}
            }
            self.reap()?;
            self.recycle();
            self.retire()?;
            if let Err(e) = self.watch_stalls() {
                return Err(self.leave_drained(&commands, e));
            }
            self.ping();
        }
    }

    /// The next command, waiting at most a tick; a nudge (an executor that served its
    /// `--max-requests`) ends the wait early, so a replacement starts at once.
    fn next_command(&self, commands: &Receiver<Command>) -> Result<Command, RecvTimeoutError> {
        match commands.try_recv() {
            Err(TryRecvError::Empty) => self.state.wait_for_nudge(TICK),
            other => return other.map_err(|_| RecvTimeoutError::Disconnected),
        }
        commands.try_recv().map_err(|e| match e {
            TryRecvError::Empty => RecvTimeoutError::Timeout,
            TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
        })
    }

    /// Start an executor for slot `i` and wait until it serves.
    fn spawn_instance(&mut self, i: usize) -> Result<(Instance, &'static str), String> {
        let recycle_at = self.recycle_threshold();
        let slot = &self.slots[i];
        if slot.listeners.is_empty() && self.unix.listeners.is_empty() {
            return Err("the slot's listeners are closed".to_string());
        }
        let listeners = slot
            .listeners
            .iter()
            .map(TcpListener::try_clone)
            .collect::<io::Result<Vec<_>>>()
            .map_err(|e| format!("cannot duplicate listener: {e}"))?;
        let unix_listeners = self
            .unix
            .listeners
            .iter()
            .map(std::os::unix::net::UnixListener::try_clone)
            .collect::<io::Result<Vec<_>>>()
            .map_err(|e| format!("cannot duplicate Unix listener: {e}"))?;
        let stats = Arc::new(ExecutorStats::for_slot(i));
        stats.set_recycle_at(recycle_at);
        let t = &slot.template;
        let cfg = ExecutorConfig {
            index: t.index,
            core: t.core,
            listeners,
            unix_listeners,
            addresses: t.addresses.clone(),
            tls: t.tls.clone(),
            driver: t.driver.clone(),
            max_in_flight: t.max_in_flight,
            max_connections: t.max_connections,
            state: self.state.clone(),
            stats: stats.clone(),
        };
        let (tx, rx) = mpsc::channel();
        let thread = (self.spawn)(cfg, tx).map_err(|e| format!("cannot start thread: {e}"))?;
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(driver)) => {
                self.state.register(&stats);
                self.state.set_driver(driver);
                Ok((Instance { stats, thread }, driver))
            }
            Ok(Err(reason)) => Err(reason),
            Err(_) => {
                stats.request_stop();
                Err("did not start in time".to_string())
            }
        }
    }

    fn install(&mut self, i: usize, instance: Instance) {
        self.state.replace_executor(i, instance.stats.clone());
        let slot = &mut self.slots[i];
        slot.beat = ExecutorStats::get(&instance.stats.heartbeat);
        slot.beat_at = Instant::now();
        slot.current = Some(instance);
        // Filled, whoever filled it (a reload may fill a slot waiting to restart): a restart
        // still due would start a second executor over this one, orphaned, never drained.
        slot.restart = None;
        if std::mem::take(&mut slot.stalled) {
            self.steer();
        }
    }

    /// Replace slot `i`'s executor, new first: the old one drains only once the new one
    /// serves. On failure the old one stays.
    fn replace(&mut self, i: usize, why: &str) -> bool {
        match self.spawn_instance(i) {
            Ok((instance, _)) => {
                self.state.count_restart();
                if let Some(old) = self.slots[i].current.take() {
                    old.stats.request_drain();
                    // Until the old executor notices (its next tick) and its listeners leave
                    // their accept loops, it may still accept; "replaced" should mean new
                    // connections go to the new one. A busy executor can take longer than a
                    // tick; one that takes longer than --stall-detect is stalled, and waiting
                    // on it would only hold up the rest of a reload.
                    let until = Instant::now() + self.config.stall_detect.max(2 * TICK);
                    while !old.stats.drain_seen.load(std::sync::atomic::Ordering::Relaxed)
                        && !old.thread.is_finished()
                        && Instant::now() < until
                    {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    self.retiring.push(Retiring {
                        instance: old,
                        deadline: Instant::now() + self.config.graceful_timeout,
                        stop_sent: false,
                    });
                }
                self.install(i, instance);
                tracing::info!(executor = i, reason = why, "executor replaced");
                true
            }
            Err(reason) => {
                tracing::error!(
                    executor = i,
                    reason,
                    "cannot start a replacement executor; keeping the old one"
                );
                false
            }
        }
    }

    /// SIGHUP: every executor replaced, one at a time.
    fn reload(&mut self, config: Option<ServerConfig>) {
        tracing::info!("reload: replacing executors one at a time");
        self.notifier.send(&format!("RELOADING=1\nMONOTONIC_USEC={}", notify::monotonic_usec()));
        if let Some(new) = config {
            self.apply(new);
        }
        self.reload_tls();
        let mut replaced = 0;
        for i in 0..self.slots.len() {
            if self.replace(i, "reload") {
                replaced += 1;
            }
            // Each replacement may take a while (a start, then the old one's drain seen):
            // the watchdog still hears from a supervisor that is working.
            self.ping();
        }
        tracing::info!(replaced, total = self.slots.len(), "reload done");
        self.notifier.send(&format!("READY=1\nSTATUS={}", self.status()));
    }

    /// Read the TLS certificate and key again for the executors started from now on (open
    /// connections keep the ones they shook hands with). A file that cannot be read or a
    /// key that does not match is refused with one error line, and the certificate in
    /// force keeps serving: a typo must not become an outage.
    fn reload_tls(&mut self) {
        let current = self.slots.iter().flat_map(|s| s.template.tls.iter().flatten()).next().cloned();
        let new = match (&self.server_config.tls, current) {
            (None, None) => return,
            (Some(_), None) => {
                tracing::warn!("reload: TLS was not on at start; serving TLS needs a restart");
                return;
            }
            (None, Some(_)) => {
                tracing::warn!(
                    "reload: turning TLS off needs a restart; the certificate in force keeps serving"
                );
                return;
            }
            (Some(settings), Some(current)) => match current.reload(settings) {
                Ok(new) => new,
                Err(e) => {
                    tracing::error!(error = %e, "reload: new TLS certificate refused; the old one keeps serving");
                    return;
                }
            },
        };
        tracing::info!(certfile = %new.settings().certfile.display(), "reload: TLS certificate and key read");
        for slot in &mut self.slots {
            for tls in slot.template.tls.iter_mut().flatten() {
                *tls = new.clone();
            }
        }
    }

    /// Take a new configuration for the executors started from now on. Settings tied to the
    /// sockets or threads (address, workers, cores, backlog, the access log's output, the
    /// metrics port) keep their value until restart; the caller says which ones changed
    /// (the binary names them in one warning, from the configuration file's keys).
    fn apply(&mut self, new: ServerConfig) {
        let old = &self.server_config;
        let fixed = [
            ("host", old.host != new.host),
            ("port", old.port != new.port),
            ("bind", old.bind != new.bind),
            ("workers", old.workers != new.workers),
            ("cpus", old.cpus != new.cpus),
            ("no-pin", old.pin != new.pin),
            ("backlog", old.backlog != new.backlog),
            ("runtime", old.runtime != new.runtime),
            ("io-backend", old.io_backend != new.io_backend),
            ("access-log", old.access_log != new.access_log),
            ("access-log-buffer", old.access_log_buffer != new.access_log_buffer),
            ("metrics-port", old.metrics_port != new.metrics_port),
        ];
        let kept: Vec<&str> = fixed.iter().filter(|(_, changed)| *changed).map(|(name, _)| *name).collect();
        if !kept.is_empty() {
            tracing::debug!(settings = kept.join(", "), "kept until restart");
        }
        let workers = self.slots.len();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            // The access log writer belongs to the process and stays (reopen it with SIGUSR1);
            // the new executors write the new format.
            let access_log = slot
                .template
                .driver
                .access_log
                .as_ref()
                .map(|log| log.with_format(new.access_log_format.clone()));
            slot.template.driver = DriverConfig { access_log, ..new.driver.clone() };
            slot.template.max_in_flight = share(new.limit_concurrency, workers, i);
            slot.template.max_connections = share(new.max_connections, workers, i);
        }
        self.config = new.supervisor.clone();
        self.server_config = ServerConfig {
            host: old.host.clone(),
            bind: old.bind.clone(),
            cpus: old.cpus.clone(),
            runtime: old.runtime,
            io_backend: old.io_backend,
            access_log: old.access_log.clone(),
            access_log_buffer: old.access_log_buffer,
            metrics_port: old.metrics_port,
            ..new
        };
        tracing::info!("new configuration applied");
    }

    /// Executors that ended on their own are restarted; too many deaths in a short time
    /// end the server with an error instead. A slot whose new executor cannot start (out of
    /// descriptors, say) stays empty and is retried with backoff while the others serve.
    fn reap(&mut self) -> Result<(), ServerError> {
        for i in 0..self.slots.len() {
            let finished = self.slots[i].current.as_ref().is_some_and(|c| c.thread.is_finished());
            if finished {
                let dead = self.slots[i].current.take().expect("checked above");
                self.state.retire(&dead.stats);
                let reason = join_reason(dead.thread);
                tracing::error!(executor = i, reason, "executor died; starting a new one");
                self.count_death()?;
                self.slots[i].restart = Some(Restart { at: Instant::now(), backoff: RESTART_BACKOFF_MIN });
            }
            self.restart_due(i);
        }
        Ok(())
    }

    /// Count a death towards the crash-loop limit; past it, stop everything and fail.
    fn count_death(&mut self) -> Result<(), ServerError> {
        let now = Instant::now();
        self.crashes.push_back(now);
        while self.crashes.front().is_some_and(|t| now.duration_since(*t) > CRASH_WINDOW) {
            self.crashes.pop_front();
        }
        if self.crashes.len() >= CRASH_LIMIT {
            tracing::error!(
                restarts = self.crashes.len(),
                window_s = CRASH_WINDOW.as_secs(),
                "executors keep dying; giving up so the service manager can restart the process"
            );
            self.stop_all();
            return Err(ServerError::CrashLoop { restarts: self.crashes.len() });
        }
        Ok(())
    }

    /// Start slot `i`'s executor again if the slot is empty and its retry is due. While it
    /// is empty, new connections are steered to the other slots (and any queued on its
    /// socket handed to them).
    fn restart_due(&mut self, i: usize) {
        let Some(restart) = self.slots[i].restart else { return };
        if Instant::now() < restart.at {
            return;
        }
        match self.spawn_instance(i) {
            Ok((instance, _)) => {
                self.state.count_restart();
                self.install(i, instance);
                tracing::info!(executor = i, "executor restarted");
            }
            Err(reason) => {
                let backoff = (restart.backoff * 2).min(RESTART_BACKOFF_MAX);
                tracing::error!(
                    executor = i,
                    reason,
                    missing = what_is_missing(&reason),
                    retry_in_ms = restart.backoff.as_millis() as u64,
                    "cannot start a new executor; the other executors serve meanwhile"
                );
                self.slots[i].restart = Some(Restart { at: Instant::now() + restart.backoff, backoff });
                if !std::mem::replace(&mut self.slots[i].stalled, true) {
                    self.steer();
                }
            }
        }
    }

    /// `--max-requests`: replace every executor that served its share (each new first).
    fn recycle(&mut self) {
        for i in 0..self.slots.len() {
            let served = self.slots[i].current.as_ref().and_then(|c| {
                let served = ExecutorStats::get(&c.stats.requests);
                c.stats.recycle_due().then_some(served)
            });
            if let Some(served) = served {
                self.replace(i, &format!("recycled after {served} requests"));
            }
        }
    }

    /// Forget retired executors that finished; stop those past their graceful timeout. One
    /// that died rather than finished its drain (it may have crashed just before it was
    /// told to leave) is a death like any other.
    fn retire(&mut self) -> Result<(), ServerError> {
        let now = Instant::now();
        let mut deaths = Vec::new();
        let mut kept = Vec::with_capacity(self.retiring.len());
        for r in self.retiring.drain(..) {
            if r.instance.thread.is_finished() {
                self.state.retire(&r.instance.stats);
                let slot = r.instance.stats.slot;
                if let Err(reason) = r.instance.thread.join().map_err(panic_reason) {
                    deaths.push((slot, reason));
                }
                continue;
            }
            let mut r = r;
            if now >= r.deadline && !r.stop_sent {
                tracing::warn!(
                    open = ExecutorStats::get(&r.instance.stats.connections_open),
                    "retired executor did not drain in time; closing its connections"
                );
                r.instance.stats.request_stop();
                r.stop_sent = true;
            }
            kept.push(r);
        }
        self.retiring = kept;
        for (slot, reason) in deaths {
            tracing::error!(executor = slot, reason, "executor died while being replaced");
            self.count_death()?;
        }
        Ok(())
    }

    /// Note which heartbeats moved since the last look. Time in which the supervisor itself
    /// did not run (the whole process frozen by SIGSTOP, a cgroup freezer, docker pause, a
    /// debugger or a VM migration, or starved of CPU) is not held against an executor: its
    /// heartbeat could not move either, so a still heartbeat's baseline moves on by that
    /// much. A real stall is seen as fast as ever, the supervisor then running on time.
    fn tick_heartbeats(&mut self) {
        let now = Instant::now();
        let unseen = self.unwatched(now);
        let mut excused = 0;
        for slot in &mut self.slots {
            if let Some(c) = &slot.current {
                let beat = ExecutorStats::get(&c.stats.heartbeat);
                if beat != slot.beat {
                    slot.beat = beat;
                    slot.beat_at = now;
                } else if !unseen.is_zero() {
                    slot.beat_at = (slot.beat_at + unseen).min(now);
                    excused += 1;
                }
            }
        }
        if excused > 0 {
            tracing::warn!(
                paused_ms = unseen.as_millis() as u64,
                executors = excused,
                "the supervisor did not run for a while (process frozen or starved of CPU); \
                 not counting that time against the executors' heartbeats"
            );
        }
    }

    /// How long, up to `now`, the supervisor did not watch beyond its usual tick (zero
    /// unless that is long enough to matter for stall detection).
    fn unwatched(&mut self, now: Instant) -> Duration {
        let gap = now.duration_since(std::mem::replace(&mut self.last_look, now)).saturating_sub(TICK);
        if gap < (self.config.stall_detect / 2).max(2 * TICK) {
            return Duration::ZERO;
        }
        gap
    }

    /// Whether every executor's heartbeat moved within `within`.
    fn all_fresh(&self, within: Duration) -> bool {
        let now = Instant::now();
        self.slots.iter().all(|s| now.duration_since(s.beat_at) <= within)
    }

    /// `WATCHDOG=1` at half the watchdog interval, only while every executor is alive, and
    /// `STATUS=` now and then.
    fn ping(&mut self) {
        let now = Instant::now();
        if let Some(interval) = self.notifier.watchdog() {
            // "Fresh" means within --timeout: a stalled executor is replaced by then, so the
            // pings stop only if the supervisor cannot keep executors alive.
            if now.duration_since(self.last_watchdog) >= interval / 2 && self.all_fresh(self.config.timeout) {
                self.notifier.send("WATCHDOG=1");
                self.last_watchdog = now;
            }
        }
        if self.notifier.is_enabled() && now.duration_since(self.last_status) >= STATUS_EVERY {
            self.notifier.send(&format!("STATUS={}", self.status()));
            self.last_status = now;
        }
    }

    fn status(&self) -> String {
        let open = self.state.total(|s| &s.connections_open);
        let requests = self.state.total(|s| &s.requests);
        let draining = if self.state.is_draining() { "draining; " } else { "" };
        format!(
            "{draining}{} executors, {open} connections open, {requests} requests served by current executors",
            self.slots.iter().filter(|s| s.current.is_some()).count()
        )
    }

    /// SIGUSR2: start the new executable on our sockets; its pid once it serves.
    fn start_successor(&mut self) -> Option<u32> {
        use std::os::fd::AsRawFd;
        let tcp = self.slots.iter().flat_map(|s| &s.listeners).map(AsRawFd::as_raw_fd);
        let listeners: Vec<std::os::fd::RawFd> =
            tcp.chain(self.unix.listeners.iter().map(AsRawFd::as_raw_fd)).collect();
        tracing::info!(sockets = listeners.len(), "upgrade: starting the new executable");
        match upgrade::start_successor(&listeners, self.sockets_owned, START_TIMEOUT) {
            Ok(child) => {
                tracing::info!(pid = child.id(), "upgrade: the new process serves; draining this one");
                Some(child.id())
            }
            Err(e) => {
                tracing::error!(error = %e, "upgrade failed; this process keeps serving");
                None
            }
        }
    }

    /// After an upgrade: every executor drains while the sockets stay open for the new
    /// process; this one exits once its connections are done (or at the graceful timeout).
    fn hand_over(&mut self, commands: &Receiver<Command>, successor: u32) -> Shutdown {
        // The new process is the service now (systemd needs NotifyAccess=all to hear it);
        // the Unix socket files are its to remove.
        self.notifier.send(&format!("MAINPID={successor}"));
        // From now on the service's status and watchdog are the new process's: a STATUS=
        // from here would overwrite its own, and a WATCHDOG=1 would keep a hung successor
        // looking alive (with NotifyAccess=all systemd takes both from any process).
        self.notifier = Notifier::disabled();
        self.unix.keep_files();
        self.drain_executors();
        match self.wait_drained(commands, Instant::now()) {
            Shutdown::Drained => Shutdown::Upgraded,
            other => other,
        }
    }

    /// Ask every executor (current and retiring) to drain, and let go of our handles on the
    /// sockets (which close with the executors' unless another process holds them).
    fn drain_executors(&mut self) {
        for slot in &mut self.slots {
            if let Some(c) = &slot.current {
                c.stats.request_drain();
            }
            slot.listeners.clear();
        }
        self.unix.listeners.clear();
        for r in &self.retiring {
            r.instance.stats.request_drain();
        }
    }

    /// Graceful drain: `/ready` turns 503 now; after the drain delay the executors stop
    /// accepting (taking what is already queued) and the sockets close; keep-alive
    /// connections end after their current request; at the graceful timeout whatever is
    /// left is closed.
    fn drain(&mut self, commands: &Receiver<Command>) -> Shutdown {
        let started = Instant::now();
        self.state.set_draining();
        self.notifier.send(&format!("STOPPING=1\nSTATUS={}", self.status()));
        tracing::info!(
            drain_delay_ms = self.config.drain_delay.as_millis() as u64,
            graceful_timeout_s = self.config.graceful_timeout.as_secs_f64(),
            "draining: /ready now answers 503"
        );
        while started.elapsed() < self.config.drain_delay {
            let left = self.config.drain_delay.saturating_sub(started.elapsed()).min(TICK);
            if stop_now(commands.recv_timeout(left)) {
                self.stop_all();
                return Shutdown::Stopped;
            }
            self.ping();
        }

        // Close our own listeners without resetting anyone: first the sockets ignore new SYNs
        // (handshakes under way still complete), then each executor, after a settle time,
        // accepts what is queued and stops listening. Sockets from socket activation are the
        // service manager's: it keeps them listening (queued connections wait for the next
        // start), so they are only let go of.
        if self.sockets_owned {
            self.state.set_sockets_closing();
            for slot in &self.slots {
                for l in &slot.listeners {
                    if let Err(e) = crate::listen::ignore_new_connections(l) {
                        tracing::warn!(error = %e, "cannot filter new connections; some may be reset at close");
                    }
                }
            }
        }
        self.drain_executors();
        // The executors shut the Unix sockets down (new connections are refused from then
        // on); the file goes now, so a new server can bind the path at once.
        if self.sockets_owned {
            self.unix.remove_files();
        }
        tracing::info!("listeners closed; waiting for open connections to finish");
        self.wait_drained(commands, started)
    }

    /// Leave with `error` in good order: the executors that still serve are drained first
    /// (their in-flight requests finish within the graceful timeout), instead of being
    /// reset when the process exits.
    fn leave_drained(&mut self, commands: &Receiver<Command>, error: ServerError) -> ServerError {
        tracing::error!(error = %error, "leaving: draining the executors that still serve first");
        self.drain(commands);
        error
    }

    /// Wait until every executor has drained; at the graceful timeout, cut what is left.
    fn wait_drained(&mut self, commands: &Receiver<Command>, started: Instant) -> Shutdown {
        let deadline = Instant::now() + self.config.graceful_timeout;
        loop {
            let alive = self.live_instances();
            if alive.is_empty() {
                self.join_all();
                tracing::info!(
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "drain complete: all connections finished"
                );
                return Shutdown::Drained;
            }
            if Instant::now() >= deadline {
                let cut: u64 = alive.iter().map(|s| ExecutorStats::get(&s.connections_open)).sum();
                tracing::warn!(cut, "drain timed out: closing the connections still open");
                self.stop_all();
                return Shutdown::DrainTimedOut { cut };
            }
            if stop_now(commands.recv_timeout(TICK)) {
                tracing::warn!("second stop request: stopping now");
                self.stop_all();
                return Shutdown::Stopped;
            }
            self.tick_heartbeats();
            self.ping();
        }
    }

    /// Stats of every executor thread still running.
    fn live_instances(&self) -> Vec<Arc<ExecutorStats>> {
        self.slots
            .iter()
            .filter_map(|s| s.current.as_ref())
            .chain(self.retiring.iter().map(|r| &r.instance))
            .filter(|i| !i.thread.is_finished())
            .map(|i| i.stats.clone())
            .collect()
    }

    /// Ask every executor to stop now, and wait (briefly) for their threads.
    fn stop_all(&mut self) {
        for s in self.live_instances() {
            s.request_stop();
        }
        for slot in &mut self.slots {
            slot.listeners.clear();
        }
        self.unix.listeners.clear();
        let deadline = Instant::now() + STOP_JOIN_WAIT;
        while !self.live_instances().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.join_all();
    }

    /// Join the threads that finished; leave any that are stuck (a thread cannot be killed).
    fn join_all(&mut self) {
        let mut instances: Vec<Instance> = self.slots.iter_mut().filter_map(|s| s.current.take()).collect();
        instances.extend(self.retiring.drain(..).map(|r| r.instance));
        for i in instances {
            if i.thread.is_finished() {
                self.state.retire(&i.stats);
                let _ = i.thread.join();
            } else {
                tracing::warn!("an executor thread did not stop (blocked?); leaving it behind");
            }
        }
    }

    fn recycle_threshold(&mut self) -> Option<u64> {
        let base = self.config.max_requests?;
        let jitter = match self.config.max_requests_jitter {
            0 => 0,
            j => self.next_random() % (j + 1),
        };
        Some(base + jitter)
    }

    /// xorshift64*: plenty for spreading recycle points.
    fn next_random(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// While draining (after SIGTERM, or after handing the sockets to a successor): whether a
/// command ends the drain at once. Only a request to stop now does (a second SIGTERM, or
/// SIGQUIT), or the handle going away. A graceful stop request is the drain already under
/// way: after an upgrade it is the first SIGTERM the old process gets, and cutting its
/// in-flight requests then would lose them (gunicorn's USR2 + TERM drains too). Reloads
/// and upgrades make no sense on executors that are leaving; they are ignored, with a word.
fn stop_now(cmd: Result<Command, RecvTimeoutError>) -> bool {
    match cmd {
        Ok(Command::StopNow) | Err(RecvTimeoutError::Disconnected) => true,
        Ok(Command::Drain) => {
            tracing::info!("already draining; send SIGTERM again (or SIGQUIT) to stop at once");
            false
        }
        Ok(Command::Reload(_)) => {
            tracing::info!("reload ignored while draining");
            false
        }
        Ok(Command::Upgrade) => {
            tracing::info!("upgrade ignored while draining");
            false
        }
        Err(RecvTimeoutError::Timeout) => false,
    }
}

fn seed() -> u64 {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    (nanos ^ (u64::from(std::process::id()) << 32)) | 1
}

/// Why a finished executor thread ended.
fn join_reason(thread: JoinHandle<()>) -> String {
    match thread.join() {
        Ok(()) => "exited".to_string(),
        Err(panic) => panic_reason(panic),
    }
}

/// A thread's panic payload, as words.
fn panic_reason(panic: Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| format!("panicked: {s}"))
        .or_else(|| panic.downcast_ref::<String>().map(|s| format!("panicked: {s}")))
        .unwrap_or_else(|| "panicked".to_string())
}

/// What an executor that cannot start lacks, in operator's terms, judged from the error.
fn what_is_missing(reason: &str) -> &'static str {
    if reason.contains("Too many open files")
        || reason.contains("os error 24")
        || reason.contains("os error 23")
    {
        "file descriptors: the process is at RLIMIT_NOFILE (raise LimitNOFILE= / ulimit -n, or lower \
         --max-connections); retrying as connections close"
    } else if reason.contains("Cannot allocate memory") || reason.contains("os error 12") {
        "memory (or locked memory for io_uring: RLIMIT_MEMLOCK)"
    } else if reason.contains("Resource temporarily unavailable") || reason.contains("os error 11") {
        "threads or processes (RLIMIT_NPROC, TasksMax=)"
    } else {
        "unknown (see the reason)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    /// A stand-in executor thread: reports that it serves, beats, and leaves when asked to
    /// drain or stop. Enough for the supervisor's bookkeeping, without a runtime.
    fn fake_spawn() -> Arc<SpawnFn> {
        Arc::new(|cfg: ExecutorConfig, report: Sender<StartReport>| {
            std::thread::Builder::new().name("fake-executor".into()).spawn(move || {
                let stats = cfg.stats;
                let _ = report.send(Ok("fake"));
                while !stats.drain_requested() && !stats.stop_requested() {
                    ExecutorStats::add(&stats.heartbeat, 1);
                    std::thread::sleep(Duration::from_millis(5));
                }
                stats.drain_seen.store(true, Relaxed);
            })
        })
    }

    /// A supervisor of `workers` fake executors on loopback sockets.
    fn supervisor(workers: usize, mut config: ServerConfig) -> Supervisor {
        let addr = "127.0.0.1:0".parse().unwrap();
        let (group, addr) = crate::listen::bind_group(addr, workers, 16, false).unwrap();
        let templates = (0..workers)
            .map(|index| SlotTemplate {
                index,
                core: None,
                addresses: vec![addr],
                tls: Vec::new(),
                driver: DriverConfig::default(),
                max_in_flight: usize::MAX,
                max_connections: usize::MAX,
            })
            .collect();
        let listeners = group.into_iter().map(|l| vec![l]).collect();
        config.workers = Some(workers);
        let state = Arc::new(ServerState::new(workers));
        let (sup, _) = Supervisor::start(
            templates,
            listeners,
            fake_spawn(),
            state,
            config,
            Notifier::disabled(),
            true,
            true,
            UnixSockets::default(),
        )
        .unwrap();
        sup
    }

    /// A reload that fills a slot waiting to restart (its executor died and could not be
    /// started again) cancels that restart: it used to start a second executor over the
    /// reload's, which was then known to no one (never drained, reloaded or stopped).
    #[test]
    fn a_reload_into_a_slot_waiting_to_restart_cancels_the_restart() {
        let mut sup = supervisor(2, ServerConfig::default());
        let fake = sup.spawn.clone();
        sup.spawn = Arc::new(|_cfg: ExecutorConfig, report: Sender<StartReport>| {
            std::thread::Builder::new().spawn(move || {
                let _ = report.send(Err("out of descriptors".into()));
            })
        });
        let dead = sup.slots[0].current.as_ref().unwrap().stats.clone();
        dead.request_stop();
        while !sup.slots[0].current.as_ref().unwrap().thread.is_finished() {
            std::thread::sleep(Duration::from_millis(1));
        }
        sup.reap().unwrap();
        assert!(sup.slots[0].current.is_none() && sup.slots[0].restart.is_some(), "empty, retrying");
        sup.spawn = fake;
        sup.reload(None);
        let filled = sup.slots[0].current.as_ref().expect("the reload filled it").stats.clone();
        assert!(sup.slots[0].restart.is_none(), "no restart left to start another");
        // The retry it had was due by now.
        std::thread::sleep(RESTART_BACKOFF_MIN * 3);
        sup.reap().unwrap();
        assert!(Arc::ptr_eq(&sup.slots[0].current.as_ref().unwrap().stats, &filled), "still the reload's");
        sup.stop_all();
    }

    /// Every executor past `--max-requests` is recycled in the same tick: under heavy load
    /// one recycle per tick let executors serve many times their share.
    #[test]
    fn recycles_every_due_executor_at_once() {
        let mut config = ServerConfig::default();
        config.supervisor.max_requests = Some(10);
        let mut sup = supervisor(3, config);
        for slot in &sup.slots {
            let stats = &slot.current.as_ref().unwrap().stats;
            stats.requests.store(50, Relaxed);
        }
        sup.recycle();
        assert_eq!(sup.state.restarts(), 3, "all three executors past their share replaced in one tick");
        sup.stop_all();
    }
}
