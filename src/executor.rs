//! One executor: a runtime on its own (pinned) thread with its own listener, accepting and
//! serving its own connections. Nothing here is shared with other executors but the
//! read-mostly [`ServerState`] flags and this executor's own counters.

use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::app::Handler;
use crate::conn::{self, ConnCtx, DriverConfig};
use crate::runtime::{Listener, Runtime};
use crate::state::{ExecutorStats, ServerState};

/// How often the executor's timer task runs: heartbeat, date refresh, stop check.
pub const TICK: Duration = Duration::from_millis(100);
/// Pause before accepting again when the process is out of file descriptors.
const FD_EXHAUSTED_BACKOFF: Duration = Duration::from_millis(100);
/// Connections being refused with 503 at once; beyond it, refusals are plain closes.
const MAX_REFUSING: usize = 1024;

/// What a handler factory learns about the executor it builds a handler for.
#[derive(Debug, Clone)]
pub struct ExecutorInfo {
    /// 0-based executor number.
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
    pub listener: std::net::TcpListener,
    pub address: SocketAddr,
    pub driver: DriverConfig,
    /// This executor's share of `--limit-concurrency`.
    pub max_in_flight: usize,
    /// This executor's share of `--max-connections`.
    pub max_connections: usize,
    pub state: Arc<ServerState>,
}

/// Run an executor on the current thread until the server stops. `started` is called once
/// the listener is adopted (with the IO driver's name) or setting up failed.
pub fn run<R: Runtime, H: Handler>(
    cfg: ExecutorConfig,
    make_handler: &(dyn Fn(&ExecutorInfo) -> H + Send + Sync),
    started: impl FnOnce(Result<&'static str, String>),
) {
    // Reported exactly once: from inside the runtime, or below if no runtime could be built.
    let started = Cell::new(Some(started));
    let report = |r: Result<&'static str, String>| {
        if let Some(f) = started.take() {
            f(r)
        }
    };
    let index = cfg.index;
    let result = R::block_on(|driver| async move {
        let listener = match R::listener(cfg.listener) {
            Ok(l) => l,
            Err(e) => return report(Err(format!("cannot adopt listener: {e}"))),
        };
        let stats = cfg.state.executor(cfg.index).clone();
        let ctx = Rc::new(ConnCtx::new(
            cfg.driver,
            make_handler(&ExecutorInfo {
                index: cfg.index,
                core: cfg.core,
                state: cfg.state.clone(),
            }),
            stats,
            cfg.state.clone(),
            cfg.max_in_flight,
        ));
        tracing::info!(
            executor = cfg.index,
            core = %cfg.core.map_or_else(|| "unpinned".to_string(), |c| c.to_string()),
            address = %cfg.address,
            runtime = R::NAME,
            driver,
            "executor started"
        );
        report(Ok(driver));
        race(
            accept_loop::<R, H>(listener, ctx.clone(), cfg.max_connections),
            ticker::<R, H>(ctx),
        )
        .await;
    });
    if let Err(e) = result {
        tracing::error!(executor = index, error = %e, "cannot start runtime");
        report(Err(format!("cannot start runtime: {e}")));
    }
}

/// Accept connections and spawn a driver task for each.
async fn accept_loop<R: Runtime, H: Handler>(
    listener: R::Listener,
    ctx: Rc<ConnCtx<H>>,
    max_connections: usize,
) {
    let open = Rc::new(Cell::new(0usize));
    let refusing = Rc::new(Cell::new(0usize));
    let mut fd_exhausted = false;
    loop {
        match listener.accept().await {
            Ok((io, peer)) => {
                fd_exhausted = false;
                ExecutorStats::add(&ctx.stats.connections_accepted, 1);
                if open.get() >= max_connections {
                    ExecutorStats::add(&ctx.stats.connections_rejected, 1);
                    if refusing.get() < MAX_REFUSING {
                        let slot = Counted::new(refusing.clone(), None);
                        let ctx = ctx.clone();
                        R::spawn(async move {
                            conn::refuse::<R::Io, R, H>(io, peer, ctx).await;
                            drop(slot);
                        });
                    }
                    continue;
                }
                let slot = Counted::new(open.clone(), Some(ctx.stats.clone()));
                let ctx = ctx.clone();
                R::spawn(async move {
                    conn::serve::<R::Io, R, H>(io, peer, ctx).await;
                    drop(slot);
                });
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)) => {
                if !fd_exhausted {
                    tracing::warn!(
                        error = %e,
                        open = open.get(),
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
/// refreshes the cached `date` each second, and ends the executor when asked to stop.
async fn ticker<R: Runtime, H>(ctx: Rc<ConnCtx<H>>) {
    let mut second = 0u64;
    loop {
        ExecutorStats::add(&ctx.stats.heartbeat, 1);
        let now = SystemTime::now();
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if secs != second {
            second = secs;
            ctx.date.borrow_mut().refresh(now);
        }
        if ctx.state.is_stopping() {
            return;
        }
        R::sleep(TICK).await;
    }
}

/// Counts something for as long as it lives (open connections, refusals in progress).
struct Counted {
    count: Rc<Cell<usize>>,
    stats: Option<Arc<ExecutorStats>>,
}

impl Counted {
    fn new(count: Rc<Cell<usize>>, stats: Option<Arc<ExecutorStats>>) -> Counted {
        count.set(count.get() + 1);
        if let Some(s) = &stats {
            ExecutorStats::add(&s.connections_open, 1);
        }
        Counted { count, stats }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.count.set(self.count.get() - 1);
        if let Some(s) = &self.stats {
            ExecutorStats::sub(&s.connections_open, 1);
        }
    }
}

/// Run both futures until the first finishes.
async fn race<A: Future<Output = ()>, B: Future<Output = ()>>(a: A, b: B) {
    let mut a = pin!(a);
    let mut b = pin!(b);
    poll_fn(|cx| {
        if a.as_mut().poll(cx).is_ready() || b.as_mut().poll(cx).is_ready() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await
}
