//! Starting and stopping a server: plan the cores, bind one listener per executor, start
//! each executor on its own (pinned) thread, and wait until all of them serve.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::app::Handler;
use crate::config::ServerConfig;
use crate::cpus;
use crate::executor::{self, ExecutorConfig, ExecutorInfo};
use crate::listen;
use crate::runtime::monoio::Monoio;
use crate::state::ServerState;

/// How long executors get to report that they serve.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a server could not start or stopped abnormally.
#[derive(Debug)]
pub enum ServerError {
    /// The host name did not resolve.
    Resolve { host: String, source: io::Error },
    /// The address could not be bound (in use, not local, no permission).
    Bind { addr: SocketAddr, source: io::Error },
    /// The CPU settings cannot be met.
    Cpus(String),
    /// An executor thread could not be started or failed to start serving.
    Executor { index: usize, reason: String },
    /// An executor stopped while the server was running.
    ExecutorExited { index: usize, reason: String },
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::Resolve { host, source } => {
                write!(f, "cannot resolve host {host:?}: {source}")
            }
            ServerError::Bind { addr, source } if source.kind() == io::ErrorKind::AddrInUse => {
                write!(f, "cannot listen on {addr}: address already in use (is another server running on this port?)")
            }
            ServerError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            ServerError::Cpus(msg) => f.write_str(msg),
            ServerError::Executor { index, reason } => {
                write!(f, "executor {index} failed to start: {reason}")
            }
            ServerError::ExecutorExited { index, reason } => {
                write!(f, "executor {index} stopped: {reason}")
            }
        }
    }
}

impl std::error::Error for ServerError {}

/// A percore server: configuration in, executors out.
///
/// ```no_run
/// use percore::{Request, Response, Server, ServerConfig};
///
/// let mut config = ServerConfig::default();
/// config.port = 8080;
/// Server::new(config)
///     .run(|_executor| |_req: Request| async { Response::text("hello") })
///     .unwrap();
/// ```
pub struct Server {
    config: ServerConfig,
}

impl Server {
    pub fn new(config: ServerConfig) -> Server {
        Server { config }
    }

    /// Start serving and block until the server stops (or an executor fails).
    pub fn run<H, F>(self, make_handler: F) -> Result<(), ServerError>
    where
        H: Handler,
        F: Fn(&ExecutorInfo) -> H + Send + Sync + 'static,
    {
        self.start(make_handler)?.wait()
    }

    /// Start serving in the background. `make_handler` is called once on each executor's
    /// thread, so each executor has a handler of its own (and per-core state without locks).
    pub fn start<H, F>(self, make_handler: F) -> Result<ServerHandle, ServerError>
    where
        H: Handler,
        F: Fn(&ExecutorInfo) -> H + Send + Sync + 'static,
    {
        let cfg = self.config;
        let plan = cpus::plan(
            cfg.workers,
            cfg.cpus.as_deref(),
            cfg.pin,
            &cpus::allowed_cpus(),
            cpus::cgroup_cpu_limit(),
        )
        .map_err(ServerError::Cpus)?;
        for warning in &plan.warnings {
            tracing::warn!("{warning}");
        }
        let workers = plan.cores.len();
        let addr = listen::resolve(&cfg.host, cfg.port)?;
        let (listeners, addr) = listen::bind_group(addr, workers, cfg.backlog)?;
        let state = Arc::new(ServerState::new(workers));
        let make_handler: Arc<dyn Fn(&ExecutorInfo) -> H + Send + Sync> = Arc::new(make_handler);
        let (ready_tx, ready_rx) = mpsc::channel::<(usize, Result<&'static str, String>)>();

        let mut threads = Vec::with_capacity(workers);
        for (index, (listener, core)) in listeners
            .into_iter()
            .zip(plan.cores.iter().copied())
            .enumerate()
        {
            let exec_cfg = ExecutorConfig {
                index,
                core,
                listener,
                address: addr,
                driver: cfg.driver.clone(),
                max_in_flight: share(cfg.limit_concurrency, workers, index),
                max_connections: share(cfg.max_connections, workers, index),
                state: state.clone(),
            };
            let make_handler = make_handler.clone();
            let ready_tx = ready_tx.clone();
            let spawned = thread::Builder::new()
                .name(format!("percore-{index}"))
                .spawn(move || {
                    if let Some(core) = core {
                        if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                            tracing::warn!(
                                executor = index,
                                core,
                                "cannot pin executor to its core"
                            );
                        }
                    }
                    executor::run::<Monoio, H>(exec_cfg, &*make_handler, |r| {
                        let _ = ready_tx.send((index, r));
                    });
                });
            match spawned {
                Ok(handle) => threads.push(handle),
                Err(e) => {
                    state.set_stopping();
                    return Err(ServerError::Executor {
                        index,
                        reason: e.to_string(),
                    });
                }
            }
        }
        drop(ready_tx);

        let mut handle = ServerHandle {
            addr,
            state,
            threads,
            driver: "",
        };
        for _ in 0..workers {
            match ready_rx.recv_timeout(START_TIMEOUT) {
                Ok((_, Ok(driver))) => handle.driver = driver,
                Ok((index, Err(reason))) => {
                    handle.stop();
                    return Err(ServerError::Executor { index, reason });
                }
                Err(_) => {
                    handle.stop();
                    return Err(ServerError::Executor {
                        index: 0,
                        reason: "did not start in time".into(),
                    });
                }
            }
        }
        tracing::info!(address = %addr, workers, runtime = "monoio", driver = handle.driver, "percore ready");
        Ok(handle)
    }
}

/// Executor `index`'s share of a process-wide limit (`usize::MAX` when unlimited); the
/// remainder goes to the first executors so the shares add up to the limit.
fn share(limit: Option<usize>, workers: usize, index: usize) -> usize {
    match limit {
        None => usize::MAX,
        Some(n) => (n / workers + usize::from(index < n % workers)).max(1),
    }
}

/// A running server.
pub struct ServerHandle {
    addr: SocketAddr,
    state: Arc<ServerState>,
    threads: Vec<JoinHandle<()>>,
    driver: &'static str,
}

impl ServerHandle {
    /// The address the executors listen on (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> &Arc<ServerState> {
        &self.state
    }

    /// The IO driver the executors run on (`io_uring` or `epoll`).
    pub fn driver(&self) -> &'static str {
        self.driver
    }

    /// Stop all executors (open connections are dropped) and wait for their threads.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        self.state.set_stopping();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }

    /// Block until the server stops. An executor that ends on its own is an error: the
    /// others are stopped and the error says which one and why.
    pub fn wait(mut self) -> Result<(), ServerError> {
        loop {
            if let Some(i) = self.threads.iter().position(JoinHandle::is_finished) {
                let stopping = self.state.is_stopping();
                let result = self.threads.remove(i).join();
                if stopping {
                    self.stop_inner();
                    return Ok(());
                }
                let reason = match result {
                    Ok(()) => "exited".to_string(),
                    Err(panic) => panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .map_or_else(|| "panicked".to_string(), |m| format!("panicked: {m}")),
                };
                self.stop_inner();
                return Err(ServerError::ExecutorExited { index: i, reason });
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

#[cfg(test)]
mod tests {
    use super::share;

    #[test]
    fn shares_add_up() {
        assert_eq!((0..3).map(|i| share(Some(10), 3, i)).sum::<usize>(), 10);
        assert_eq!(
            share(Some(1), 4, 3),
            1,
            "every executor may serve at least one"
        );
        assert_eq!(share(None, 2, 0), usize::MAX);
    }
}
