//! One executor: a runtime on its own (pinned) thread with its own listener, accepting and
//! serving its own connections. It shares nothing with other executors but the read-mostly
//! [`ServerState`] and its own [`ExecutorStats`], whose flags the supervisor sets.
//!
//! Life cycle: serve until the supervisor asks to **drain** (stop accepting, take what is
//! already queued, let keep-alive connections finish their current request, then exit once
//! no connection is open) or to **stop** (close every connection now and exit).

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::app::Handler;
use crate::conn::{self, ConnCtx, DriverConfig};
use crate::io::{first_of, Transport};
use crate::peer::Peer;
use crate::runtime::{Listener, Runtime};
use crate::state::{ExecutorStats, ServerState};
use crate::tls::{TlsConfig, TlsStream};

/// How often the executor's timer task runs: heartbeat, date refresh, flag checks.
pub const TICK: Duration = Duration::from_millis(100);
/// The timer task's period once the executor has served its `--max-requests` share, so
/// that it stops accepting soon after the supervisor asks it to drain.
const SPENT_TICK: Duration = Duration::from_millis(5);
/// Pause before accepting again when the process is out of file descriptors.
const FD_EXHAUSTED_BACKOFF: Duration = Duration::from_millis(100);
/// Connections being refused with 503 at once; beyond it, refusals are plain closes.
const MAX_REFUSING: usize = 1024;
/// At shutdown, how long an executor keeps accepting after its socket started ignoring new
/// SYNs, so handshakes already under way (a round trip or a SYN-ACK retransmit) complete.
const LISTEN_SETTLE: Duration = Duration::from_millis(300);
/// While draining, how often the executor checks whether its connections are done.
const DRAIN_POLL: Duration = Duration::from_millis(20);
/// On stop, how long connection tasks get to close their sockets before the thread exits.
const STOP_GRACE: Duration = Duration::from_millis(200);

thread_local! {
    static CRASH_REQUESTED: Cell<bool> = const { Cell::new(false) };
}

/// Make the calling executor's thread panic outside any handler on its next tick, as a real
/// bug in the executor would. For the `--debug-routes` crash route, to exercise the
/// supervisor's restart.
pub fn crash_current_executor() {
    CRASH_REQUESTED.with(|c| c.set(true));
}

/// What a handler factory learns about the executor it builds a handler for.
#[derive(Debug, Clone)]
pub struct ExecutorInfo {
    /// 0-based executor slot.
    pub index: usize,
    /// The core it is pinned to (`None`: unpinned).
    pub core: Option<usize>,
    /// The server's shared state (draining flag, counters).
    pub state: Arc<ServerState>,
}

/// Everything one executor is started with.
pub struct ExecutorConfig {
    pub index: usize,
    /// The core it is pinned to, if pinned (for the log; pinning happens before `run`).
    pub core: Option<usize>,
    /// This executor's handles on its slot's listening sockets (one per bound address).
    pub listeners: Vec<std::net::TcpListener>,
    pub addresses: Vec<SocketAddr>,
    /// Handles on the Unix sockets (`--bind unix:PATH`): one socket each, shared by every
    /// executor (AF_UNIX has no SO_REUSEPORT), served plain.
    pub unix_listeners: Vec<std::os::unix::net::UnixListener>,
    /// Per address (as `listeners`): the TLS configuration it serves with (`None`: plain).
    pub tls: Vec<Option<Arc<TlsConfig>>>,
    pub driver: DriverConfig,
    /// This executor's share of `--limit-concurrency`.
    pub max_in_flight: usize,
    /// This executor's share of `--max-connections`.
    pub max_connections: usize,
    pub state: Arc<ServerState>,
    /// This instance's counters and flags.
    pub stats: Arc<ExecutorStats>,
}

/// Run an executor on the current thread until it has drained or is stopped. `started` is
/// called once: with the IO driver's name once serving, or with why it could not start.
pub fn run<R: Runtime, H: Handler>(
    cfg: ExecutorConfig,
    make_handler: &(dyn Fn(&ExecutorInfo) -> H + Send + Sync),
    started: impl FnOnce(Result<&'static str, String>) + Send,
) {
    // Reported exactly once: from inside the runtime, or below if no runtime could be built.
    // (A mutex, not a cell: the runtime may run the executor on a thread of its own.)
    let started = std::sync::Mutex::new(Some(started));
    let report = |r: Result<&'static str, String>| {
        let once = started.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(f) = once {
            f(r)
        }
    };
    let index = cfg.index;
    let result = R::block_on(|driver| async move {
        let listeners = match cfg.listeners.into_iter().map(R::listener).collect::<std::io::Result<Vec<_>>>()
        {
            Ok(l) => l,
            Err(e) => {
                report(Err(format!("cannot adopt listener: {e}")));
                return None;
            }
        };
        let unix_listeners =
            match cfg.unix_listeners.into_iter().map(R::unix_listener).collect::<std::io::Result<Vec<_>>>() {
                Ok(l) => l,
                Err(e) => {
                    report(Err(format!("cannot adopt Unix listener: {e}")));
                    return None;
                }
            };
        let info = ExecutorInfo { index: cfg.index, core: cfg.core, state: cfg.state.clone() };
        let ctx = Rc::new(ConnCtx::new(
            cfg.driver,
            make_handler(&info),
            cfg.stats.clone(),
            cfg.state.clone(),
            cfg.max_in_flight,
        ));
        tracing::info!(
            executor = cfg.index,
            core = %cfg.core.map_or_else(|| "unpinned".to_string(), |c| c.to_string()),
            address = %cfg.addresses.first().map_or_else(String::new, |a| a.to_string()),
            runtime = R::NAME,
            driver,
            "executor started"
        );
        // SAFETY: gettid(2) has no preconditions.
        let tid = unsafe { libc::gettid() };
        cfg.stats.tid.store(tid as u64, std::sync::atomic::Ordering::Relaxed);
        cfg.stats.serving.store(true, std::sync::atomic::Ordering::Relaxed);
        report(Ok(driver));
        // Tasks the app starts (`crate::task::spawn_local`) run like the executor's own: a
        // panic stops the executor, and they end when it stops. Weak: the spawner must not
        // keep the handler (inside `ctx`) alive.
        let spawning = Rc::downgrade(&ctx);
        crate::task::install(Rc::new(move |task| {
            if let Some(ctx) = spawning.upgrade() {
                let stop = ctx.clone();
                spawn_guarded::<R, H>(ctx, async move {
                    first_of(task, stop.stop.wait()).await;
                });
            }
        }));

        let admission = Rc::new(Admission {
            ctx: ctx.clone(),
            refusing: Rc::default(),
            max_connections: cfg.max_connections,
            accepting: Cell::new(listeners.len() + unix_listeners.len()),
        });
        let ticking = admission.clone();
        let security = Security { addresses: cfg.addresses.clone(), tls: cfg.tls.clone() };
        spawn_guarded::<R, H>(ctx.clone(), async move {
            let stop = ticking.ctx.clone();
            first_of(ticker::<R, H>(ticking, security), stop.stop.wait()).await;
        });
        let listening = Rc::new(Cell::new(listeners.len() + unix_listeners.len()));
        for (i, listener) in listeners.into_iter().enumerate() {
            let (admission, listening) = (admission.clone(), listening.clone());
            let tls = cfg.tls.get(i).cloned().flatten();
            spawn_guarded::<R, H>(admission.ctx.clone(), async move {
                let stop = admission.ctx.clone();
                let admit = |io, peer| admission.admit::<R>(io, peer, tls.as_ref());
                let family = if R::SHARED_LISTENER { Family::SharedTcp } else { Family::Tcp };
                first_of(listen::<R, _, H>(&listener, &admission, admit, family), stop.stop.wait()).await;
                drop(listener);
                listening.set(listening.get() - 1);
            });
        }
        for listener in unix_listeners {
            let (admission, listening) = (admission.clone(), listening.clone());
            spawn_guarded::<R, H>(admission.ctx.clone(), async move {
                let stop = admission.ctx.clone();
                let admit = |io, peer| admission.admit_io::<R, _>(io, peer);
                first_of(listen::<R, _, H>(&listener, &admission, admit, Family::Unix), stop.stop.wait())
                    .await;
                drop(listener);
                listening.set(listening.get() - 1);
            });
        }
        let serve = async {
            ctx.drain.wait().await;
            while listening.get() > 0 || ctx.open.get() > 0 {
                R::sleep(DRAIN_POLL).await;
            }
        };
        first_of(serve, ctx.stop.wait()).await;
        if ctx.stop.is_fired() {
            // Connection tasks end when the stop latch fires; give them a moment to close
            // their sockets before the runtime goes away.
            let deadline = std::time::Instant::now() + STOP_GRACE;
            while ctx.open.get() > 0 && std::time::Instant::now() < deadline {
                R::sleep(Duration::from_millis(5)).await;
            }
        }
        // Every task still pending (the ticker, refusals in progress) ends now: a task that
        // outlives its runtime is never dropped, and holds what it refers to for the life of
        // the process (its handler state on monoio; on glommio also the executor's eventfd,
        // through the task header), one leak per replaced executor.
        ctx.stop.fire();
        // One more turn of the driver so those tasks finish and the last closes are submitted.
        R::sleep(Duration::from_millis(1)).await;
        crate::task::uninstall();
        tracing::debug!(executor = cfg.index, "executor finished");
        // Taken where the tasks ran: the thread that runs the runtime may outlive this
        // executor and serve the next one (glommio's pool).
        TASK_PANIC.with(|p| p.borrow_mut().take())
    });
    let panic = match result {
        Ok(panic) => panic,
        Err(e) => {
            tracing::error!(executor = index, error = %e, "cannot start runtime");
            report(Err(format!("cannot start runtime: {e}")));
            None
        }
    };
    // A task panicked outside any handler: the executor stopped cleanly, and now its thread
    // ends with that panic, for the supervisor to start a new one (the same on every runtime:
    // tokio and glommio would otherwise contain the panic and run on without the task).
    if let Some(panic) = panic {
        std::panic::resume_unwind(panic);
    }
}

thread_local! {
    static TASK_PANIC: std::cell::RefCell<Option<Box<dyn std::any::Any + Send>>> =
        const { std::cell::RefCell::new(None) };
}

/// Spawn an executor task whose panic stops the executor (see the end of [`run`]).
fn spawn_guarded<R: Runtime, H: Handler>(
    ctx: Rc<ConnCtx<H>>,
    task: impl std::future::Future<Output = ()> + 'static,
) {
    // Boxed once here, so the wrapper holds a pointer instead of another copy of the task's
    // (large) state: this is what an idle connection costs in memory.
    let task = Box::pin(task);
    R::spawn(async move {
        if let Err(panic) = crate::io::catch_panic(task).await {
            TASK_PANIC.with(|p| {
                p.borrow_mut().get_or_insert(panic);
            });
            ctx.fire_drain();
            ctx.stop.fire();
        }
    });
}

/// Admits accepted connections: spawns a driver task for each, or refuses it when the
/// executor is at `--max-connections`.
struct Admission<H> {
    ctx: Rc<ConnCtx<H>>,
    refusing: Rc<Cell<usize>>,
    max_connections: usize,
    /// Listeners still in their accept loop. When a drain has taken the last one out, the
    /// executor tells the supervisor (`drain_seen`): from then on it accepts nothing, so a
    /// replacement's "new connections go to the new executor" holds.
    accepting: Cell<usize>,
}

impl<H> Admission<H> {
    /// One listener left its accept loop for good.
    fn stopped_accepting(&self) {
        self.accepting.set(self.accepting.get() - 1);
        self.report_drain_seen();
    }

    /// Tell the supervisor the drain it asked for is under way, once no accept loop is left.
    fn report_drain_seen(&self) {
        if self.accepting.get() == 0 && self.ctx.stats.drain_requested() {
            self.ctx.stats.drain_seen.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl<H: Handler> Admission<H> {
    /// Serve `io`, over TLS when the address it came in on has a TLS configuration.
    fn admit<R: Runtime>(&self, io: R::Io, peer: Peer, tls: Option<&Arc<TlsConfig>>) {
        match tls {
            None => self.admit_io::<R, R::Io>(io, peer),
            Some(tls) => match TlsStream::new(io, tls, peer, self.ctx.stats.clone()) {
                Ok(io) => self.admit_io::<R, TlsStream<R::Io>>(io, peer),
                Err(e) => tracing::debug!(peer = %peer, error = %e, "cannot start a TLS connection"),
            },
        }
    }

    fn admit_io<R: Runtime, T: Transport>(&self, io: T, peer: Peer) {
        let ctx = self.ctx.clone();
        ExecutorStats::add(&ctx.stats.connections_accepted, 1);
        if self.ctx.open.get() >= self.max_connections {
            ExecutorStats::add(&ctx.stats.connections_rejected, 1);
            if self.refusing.get() < MAX_REFUSING {
                let slot = Counted::new(self.refusing.clone());
                spawn_guarded::<R, H>(ctx.clone(), async move {
                    let stop = ctx.clone();
                    first_of(conn::refuse::<T, R, H>(io, peer, ctx), stop.stop.wait()).await;
                    drop(slot);
                });
            }
            return;
        }
        let serve = conn::serve::<T, R, H>(io, peer, ctx.clone());
        spawn_guarded::<R, H>(ctx.clone(), UntilStopped::new(serve, ctx));
    }
}

/// What kind of socket a listener is, for what it does when the executor drains.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    /// A TCP socket of this executor's slot.
    Tcp,
    /// A TCP socket every executor accepts from (tokio-mt).
    SharedTcp,
    /// A Unix socket every executor accepts from.
    Unix,
}

/// One listener's life: accept until the executor drains; then serve what is already queued
/// on the socket and let go of it. Once it has, it counts as no longer accepting (see
/// `Admission::accepting`).
async fn listen<R: Runtime, L: Listener, H: Handler>(
    listener: &L,
    admission: &Admission<H>,
    admit: impl Fn(L::Io, Peer),
    family: Family,
) {
    let ctx = &admission.ctx;
    first_of(accept_loop::<R, L, H>(listener, admission, &admit), ctx.drain.wait()).await;
    if !stopping(ctx) {
        let_go::<R, L, H>(listener, admission, admit, family).await;
    }
    admission.stopped_accepting();
}

/// Whether the executor is told to stop (and so to take nothing more off its sockets): the
/// supervisor's flag, seen before the executor's own ticker turns it into the stop latch.
fn stopping<H>(ctx: &ConnCtx<H>) -> bool {
    ctx.stop.is_fired() || ctx.stats.stop_requested()
}

/// After the drain: serve what is queued where the socket's queue is this executor's to
/// serve, and stop listening when the whole server goes away.
async fn let_go<R: Runtime, L: Listener, H: Handler>(
    listener: &L,
    admission: &Admission<H>,
    admit: impl Fn(L::Io, Peer),
    family: Family,
) {
    let ctx = &admission.ctx;
    if ctx.state.sockets_closing() && family == Family::Unix {
        // Server shutdown. A Unix socket that is shut down refuses new connections at once
        // and still hands out the ones queued: stop listening first (for every executor,
        // as they share it), then serve the queue, so nothing queued is ever reset.
        listener.stop_listening();
        while let Ok(Some((io, peer))) = listener.try_accept() {
            admit(io, peer);
        }
        return;
    }
    if ctx.state.sockets_closing() {
        // Server shutdown: the socket now ignores new SYNs; keep accepting while the
        // handshakes already under way complete.
        first_of(accept_loop::<R, L, H>(listener, admission, &admit), R::sleep(LISTEN_SETTLE)).await;
    }
    // Serve what is queued, unless the socket is shared and stays open: then the other
    // executors (or the replacement) take it, with keep-alive.
    if ctx.state.sockets_closing() || family == Family::Tcp {
        while let Ok(Some((io, peer))) = listener.try_accept() {
            admit(io, peer);
        }
    }
    if ctx.state.sockets_closing() {
        // The whole server is going away: stop listening right after the queue ran dry. (A
        // recycled executor only lets go: its replacement keeps the socket.)
        listener.stop_listening();
    }
}

/// Accept connections until the future is dropped (drain or stop).
async fn accept_loop<R: Runtime, L: Listener, H: Handler>(
    listener: &L,
    admission: &Admission<H>,
    admit: &impl Fn(L::Io, Peer),
) {
    let mut fd_exhausted = false;
    // A queue that never runs dry (monoio's and glommio's accepts complete at once while
    // one is queued) must not keep the executor from its connections and its heartbeat.
    let mut budget = crate::coop::Budget::new();
    loop {
        if budget.spend(0) {
            crate::coop::yield_now().await;
        }
        if stopping(&admission.ctx) {
            // Until the stop latch fires (the next tick) and drops this loop.
            return std::future::pending().await;
        }
        match listener.accept().await {
            Ok((io, peer)) => {
                fd_exhausted = false;
                admit(io, peer);
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)) => {
                if !fd_exhausted {
                    tracing::warn!(
                        error = %e,
                        open = admission.ctx.open.get(),
                        "out of file descriptors; pausing accept (raise LimitNOFILE / ulimit -n)"
                    );
                    fd_exhausted = true;
                }
                R::sleep(FD_EXHAUSTED_BACKOFF).await;
            }
            Err(e) => {
                // ECONNABORTED and friends: the peer gave up before accept; nothing to do.
                tracing::debug!(error = %e, "accept failed");
                if !matches!(
                    e.raw_os_error(),
                    Some(libc::ECONNABORTED) | Some(libc::EINTR) | Some(libc::EAGAIN)
                ) {
                    R::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
}

/// The executor's own timer: advances the heartbeat (so a blocked thread visibly stops),
/// refreshes the cached `date` each second, and turns the supervisor's flags into the local
/// drain and stop latches.
async fn ticker<R: Runtime, H: Handler>(admission: Rc<Admission<H>>, security: Security) {
    let ctx = &admission.ctx;
    let mut second = 0u64;
    loop {
        // Reset as it fires: the thread may go on to run another executor (glommio's pool).
        if CRASH_REQUESTED.with(|c| c.replace(false)) {
            panic!("executor crash requested (debug route)");
        }
        for stream in ctx.stats.take_handoffs() {
            let tls = stream.local_addr().ok().and_then(|local| security.tls_for(local));
            match stream.peer_addr().and_then(|peer| Ok((R::adopt_stream(stream)?, peer))) {
                Ok((io, peer)) => admission.admit::<R>(io, Peer::Tcp(peer), tls.as_ref()),
                Err(e) => tracing::debug!(error = %e, "cannot adopt a handed-off connection"),
            }
        }
        ExecutorStats::add(&ctx.stats.heartbeat, 1);
        crate::coop::ticked();
        ctx.idle_clock.tick(std::time::Instant::now());
        let now = SystemTime::now();
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if secs != second {
            second = secs;
            ctx.date.borrow_mut().refresh(now);
        }
        if let Some(log) = &ctx.access_log {
            log.flush();
        }
        if ctx.stats.drain_requested() {
            ctx.fire_drain();
            // The listeners leave their accept loops when they next run and report it then;
            // this covers an executor with none.
            admission.report_drain_seen();
        }
        if ctx.stats.stop_requested() {
            ctx.fire_drain();
            ctx.stop.fire();
        }
        if ctx.spent.is_fired() {
            // The supervisor is starting the replacement now: see its drain request soon.
            R::sleep(SPENT_TICK).await;
        } else {
            first_of(R::sleep(TICK), ctx.spent.wait()).await;
        }
    }
}

/// Which of the executor's addresses serve TLS, for connections handed over by the
/// supervisor (known by the local address they came in on).
struct Security {
    addresses: Vec<SocketAddr>,
    tls: Vec<Option<Arc<TlsConfig>>>,
}

impl Security {
    fn tls_for(&self, local: SocketAddr) -> Option<Arc<TlsConfig>> {
        let i = self
            .addresses
            .iter()
            .position(|a| a.port() == local.port() && (a.ip() == local.ip() || a.ip().is_unspecified()))?;
        self.tls.get(i).cloned().flatten()
    }
}

/// Counts something for as long as it lives (refusals in progress).
struct Counted {
    count: Rc<Cell<usize>>,
}

/// A connection's task: its driver, until it ends or the executor stops, counted among the
/// open connections (`ctx.open`, `/metrics`) while it lives. (A struct rather than an async
/// block, which would hold the driver twice: as what it captured, and in the `first_of` it
/// moved it into. Every idle connection holds one.)
struct UntilStopped<F, H> {
    task: F,
    ctx: Rc<ConnCtx<H>>,
    /// Its slot among the waiters of `ctx.stop`.
    waiting: Option<u32>,
}

impl<F, H> UntilStopped<F, H> {
    fn new(task: F, ctx: Rc<ConnCtx<H>>) -> Self {
        ctx.open.set(ctx.open.get() + 1);
        ExecutorStats::add(&ctx.stats.connections_open, 1);
        UntilStopped { task, ctx, waiting: None }
    }
}

impl<F: std::future::Future<Output = ()>, H> std::future::Future for UntilStopped<F, H> {
    type Output = ();

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        // SAFETY: structural pinning of `task` alone: it is never moved out of the pinned
        // struct, and the struct has no Unpin impl of its own (its Drop does not touch it).
        let this = unsafe { self.get_unchecked_mut() };
        let task = unsafe { std::pin::Pin::new_unchecked(&mut this.task) };
        if task.poll(cx).is_ready() {
            return std::task::Poll::Ready(());
        }
        this.ctx.stop.poll_wait(&mut this.waiting, cx)
    }
}

impl<F, H> Drop for UntilStopped<F, H> {
    fn drop(&mut self) {
        self.ctx.stop.forget(&mut self.waiting);
        self.ctx.open.set(self.ctx.open.get() - 1);
        ExecutorStats::sub(&self.ctx.stats.connections_open, 1);
    }
}

impl Counted {
    fn new(count: Rc<Cell<usize>>) -> Counted {
        count.set(count.get() + 1);
        Counted { count }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.count.set(self.count.get() - 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{Request, Response};
    use crate::runtime::RuntimeKind;
    use std::net::{TcpListener, TcpStream};

    /// An executor told to stop (a stuck one abandoned when it wakes, one that started too
    /// late) takes nothing off the socket it shares with its replacement: it used to accept
    /// everything queued, in the same poll as its drain, and close it all as it stopped.
    #[test]
    fn a_stopped_executor_leaves_the_shared_queue_alone() {
        let kinds = [
            #[cfg(feature = "monoio")]
            RuntimeKind::Monoio,
            #[cfg(feature = "tokio")]
            RuntimeKind::Tokio,
        ];
        for kind in kinds {
            let shared = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = shared.local_addr().unwrap();
            let queued: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(addr).unwrap()).collect();
            let stats = Arc::new(ExecutorStats::for_slot(0));
            stats.request_stop();
            let cfg = ExecutorConfig {
                index: 0,
                core: None,
                listeners: vec![shared.try_clone().unwrap()],
                addresses: vec![addr],
                unix_listeners: Vec::new(),
                tls: vec![None],
                driver: DriverConfig::default(),
                max_in_flight: usize::MAX,
                max_connections: usize::MAX,
                state: Arc::new(ServerState::new(1)),
                stats: stats.clone(),
            };
            let (done, ended) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let app = |_: &ExecutorInfo| |_: Request| async { Response::text("x") };
                crate::runtime::run_executor(kind, cfg, &app, |_| {});
                let _ = done.send(());
            });
            ended.recv_timeout(Duration::from_secs(10)).expect("the stopped executor ends");
            shared.set_nonblocking(true).unwrap();
            let left = std::iter::from_fn(|| shared.accept().ok()).count();
            assert_eq!(left, queued.len(), "{kind:?}: every queued connection is left to the replacement");
        }
    }
}
