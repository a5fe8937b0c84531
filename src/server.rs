//! Starting a server: plan the cores, bind one listener per executor slot, start the
//! executors under a supervisor thread, and hand back a handle to drain, reload or stop it.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crate::app::Handler;
use crate::config::ServerConfig;
use crate::cpus;
use crate::executor::{ExecutorConfig, ExecutorInfo};
use crate::listen;
use crate::observe::access_log::AccessLog;
use crate::observe::metrics;
use crate::runtime;
use crate::state::ServerState;
use crate::supervisor::notify::Notifier;
use crate::supervisor::{Command, Shutdown, SlotTemplate, SpawnFn, StartReport, Supervisor};
use crate::tls::TlsConfig;
use crate::uds::UnixSockets;

/// Why a server could not start or ended abnormally.
#[derive(Debug)]
pub enum ServerError {
    /// The host name did not resolve.
    Resolve { host: String, source: io::Error },
    /// The address could not be bound (in use, not local, no permission).
    Bind { addr: SocketAddr, source: io::Error },
    /// The Unix socket could not be bound (`--bind unix:PATH`).
    BindUnix { path: std::path::PathBuf, source: crate::uds::UdsError },
    /// The CPU settings cannot be met.
    Cpus(String),
    /// An executor could not be started.
    Executor { index: usize, reason: String },
    /// Executors kept dying: `restarts` restarts within a minute.
    CrashLoop { restarts: usize },
    /// Too many executors are stuck (blocked past `--timeout`).
    Stuck { executors: usize },
    /// The supervisor thread itself failed.
    Supervisor(String),
    /// Sockets passed to this process (socket activation, upgrade) are unusable.
    Inherit(String),
    /// The access log cannot be opened.
    AccessLog(String),
    /// The runtime or IO backend asked for cannot run here.
    Runtime(String),
    /// The TLS certificate, key or client CAs cannot be used.
    Tls(String),
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::Resolve { host, source } => write!(f, "cannot resolve host {host:?}: {source}"),
            ServerError::Bind { addr, source } if source.kind() == io::ErrorKind::AddrInUse => write!(
                f,
                "cannot listen on {addr}: address already in use (is another server running on this port?)"
            ),
            ServerError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            ServerError::BindUnix { path, source } => {
                write!(f, "cannot listen on Unix socket {}: {source}", path.display())
            }
            ServerError::Cpus(msg) => f.write_str(msg),
            ServerError::Executor { index, reason } => {
                write!(f, "executor {index} failed to start: {reason}")
            }
            ServerError::CrashLoop { restarts } => {
                write!(f, "executors crashed {restarts} times within a minute; giving up")
            }
            ServerError::Supervisor(msg) => write!(f, "supervisor failed: {msg}"),
            ServerError::Inherit(msg) => write!(f, "cannot use the inherited sockets: {msg}"),
            ServerError::AccessLog(msg) => write!(f, "cannot open the access log: {msg}"),
            ServerError::Runtime(msg) | ServerError::Tls(msg) => f.write_str(msg),
            ServerError::Stuck { executors } => {
                write!(f, "{executors} executors are stuck past --timeout; giving up")
            }
        }
    }
}

impl std::error::Error for ServerError {}

/// A percore server: configuration in, executors out.
///
/// ```no_run
/// use percore::{ExecutorInfo, Request, Response, Server, ServerConfig};
///
/// let mut config = ServerConfig::default();
/// config.port = 8080;
/// Server::new(config)
///     .run(|_executor: &ExecutorInfo| |_req: Request| async { Response::text("hello") })
///     .unwrap();
/// ```
pub struct Server {
    config: ServerConfig,
}

impl Server {
    pub fn new(config: ServerConfig) -> Server {
        Server { config }
    }

    /// Check, without serving, what [`Server::start`] would refuse before it binds: the
    /// cores (`--cpus`, `--workers`), the runtime and IO backend, the addresses, the access
    /// log's file. The listening port is not tried (a running server holds it while its
    /// configuration is checked for a reload); a metrics port that is taken is a warning.
    /// Returns the warnings.
    pub fn check(&self) -> Result<Vec<String>, ServerError> {
        let cfg = &self.config;
        let plan = plan_cores(cfg)?;
        let mut warnings = plan.warnings.clone();
        runtime::prepare(cfg.runtime, cfg.io_backend, &plan.cores).map_err(ServerError::Runtime)?;
        cfg.bind_addresses()?;
        cfg.tls_addresses(&[])?;
        if let Some(tls) = &cfg.tls {
            TlsConfig::load(tls).map_err(|e| ServerError::Tls(e.to_string()))?;
        }
        crate::observe::access_log::check_target(&cfg.access_log)
            .map_err(|e| ServerError::AccessLog(e.to_string()))?;
        if let Some(port) = cfg.metrics_port.filter(|p| *p != 0) {
            let addr = listen::resolve(&cfg.host, port)?;
            if let Err(e) = TcpListener::bind(addr) {
                warnings.push(format!(
                    "--metrics-port {port}: cannot bind {addr} now ({e}); fine if this percore is running, \
                     else the server will not start"
                ));
            }
        }
        Ok(warnings)
    }

    /// Start serving and block until the server ends (it ends only through a
    /// [`ServerHandle`] command or an error, so this suits servers stopped by their process).
    pub fn run<H, F>(self, make_handler: F) -> Result<Shutdown, ServerError>
    where
        H: Handler,
        F: Fn(&ExecutorInfo) -> H + Send + Sync + 'static,
    {
        self.start(make_handler)?.join()
    }

    /// Start serving in the background. `make_handler` is called once on each executor's
    /// thread (and again for each replacement executor), so each executor has a handler of
    /// its own (and per-core state without locks).
    pub fn start<H, F>(self, make_handler: F) -> Result<ServerHandle, ServerError>
    where
        H: Handler,
        F: Fn(&ExecutorInfo) -> H + Send + Sync + 'static,
    {
        let cfg = self.config;
        let plan = plan_cores(&cfg)?;
        for warning in &plan.warnings {
            tracing::warn!("{warning}");
        }
        let workers = plan.cores.len();
        let (kind, planned_driver) =
            runtime::prepare(cfg.runtime, cfg.io_backend, &plan.cores).map_err(ServerError::Runtime)?;
        let (listeners, addrs, steerable, owned, unix) = listeners(&cfg, workers, kind.shares_listener())?;
        if cfg.uds_permissions.is_some() && unix.files.is_empty() {
            tracing::warn!(
                "--uds-permissions has no effect: percore binds no Unix socket (--bind unix:PATH)"
            );
        }
        let unix_paths = unix.paths.clone();
        let tls = match &cfg.tls {
            Some(settings) => Some(TlsConfig::load(settings).map_err(|e| ServerError::Tls(e.to_string()))?),
            None => None,
        };
        let secure = cfg.tls_addresses(&addrs)?;
        let tls: Vec<Option<Arc<TlsConfig>>> = secure.iter().map(|&s| tls.clone().filter(|_| s)).collect();
        let state = Arc::new(ServerState::new(workers));
        state.set_runtime(kind.name());
        state.set_driver(planned_driver);

        for (flag, limit) in
            [("--limit-concurrency", cfg.limit_concurrency), ("--max-connections", cfg.max_connections)]
        {
            if limit.is_some_and(|n| n < workers) {
                // Each executor admits at least one: the process admits `workers`.
                tracing::warn!(
                    flag,
                    limit,
                    workers,
                    "the limit is below the executors' count; each still admits one"
                );
            }
        }
        let mut templates: Vec<SlotTemplate> = plan
            .cores
            .iter()
            .enumerate()
            .map(|(index, &core)| SlotTemplate {
                index,
                core,
                addresses: addrs.clone(),
                tls: tls.clone(),
                driver: cfg.driver.clone(),
                max_in_flight: share(cfg.limit_concurrency, workers, index),
                max_connections: share(cfg.max_connections, workers, index),
            })
            .collect();
        let make_handler: Arc<dyn Fn(&ExecutorInfo) -> H + Send + Sync> = Arc::new(make_handler);
        let spawn: Arc<SpawnFn> = Arc::new(move |exec: ExecutorConfig, report: Sender<StartReport>| {
            let make_handler = make_handler.clone();
            let (index, core) = (exec.index, exec.core);
            thread::Builder::new().name(format!("percore-{index}")).spawn(move || {
                if let Some(core) = core {
                    if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                        tracing::warn!(executor = index, core, "cannot pin executor to its core");
                    }
                }
                runtime::run_executor(kind, exec, &*make_handler, |r| {
                    let _ = report.send(r);
                });
            })
        });

        let mut cfg = cfg;
        cfg.driver.access_log = AccessLog::start(
            &cfg.access_log,
            cfg.access_log_format.clone(),
            cfg.access_log_buffer,
            state.access_log_dropped_counter(),
        )
        .map_err(|e| ServerError::AccessLog(e.to_string()))?;
        for t in &mut templates {
            t.driver.access_log = cfg.driver.access_log.clone();
        }
        let metrics = match cfg.metrics_port {
            None => None,
            Some(port) => {
                let addr = listen::resolve(&cfg.host, port)?;
                // SO_REUSEPORT so that the new process of a binary upgrade can bind it too.
                let listener = listen::reuseport_listener(addr, 128, false)
                    .map_err(|source| ServerError::Bind { addr, source })?;
                listener.set_nonblocking(false).map_err(|source| ServerError::Bind { addr, source })?;
                let bound = listener.local_addr().map_err(|source| ServerError::Bind { addr, source })?;
                metrics::serve_on(listener, state.clone())
                    .map_err(|e| ServerError::Supervisor(e.to_string()))?;
                tracing::info!(address = %bound, "metrics on their own port: GET /metrics");
                Some(bound)
            }
        };
        let notifier = if cfg.notify { Notifier::from_env() } else { Notifier::disabled() };
        let (supervisor, driver) = Supervisor::start(
            templates,
            listeners,
            spawn,
            state.clone(),
            cfg.clone(),
            notifier,
            steerable,
            owned,
            unix,
        )?;
        let https: Vec<SocketAddr> =
            addrs.iter().zip(&secure).filter(|(_, s)| **s).map(|(a, _)| *a).collect();
        let address = match (addrs.first(), unix_paths.first()) {
            (Some(a), _) => a.to_string(),
            (None, Some(p)) => format!("unix:{}", p.display()),
            (None, None) => String::new(),
        };
        tracing::info!(%address, addresses = ?addrs, unix = ?unix_paths, https = ?https, workers, runtime = kind.name(), driver, "percore ready");
        let (commands, rx) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("percore-supervisor".into())
            .spawn(move || supervisor.run(rx))
            .map_err(|e| ServerError::Supervisor(e.to_string()))?;
        let access_log = cfg.driver.access_log.clone();
        Ok(ServerHandle {
            addrs,
            unix_paths,
            state,
            commands,
            thread: Some(thread),
            driver,
            access_log,
            metrics,
        })
    }
}

/// The executors' cores, from `--workers`, `--cpus`, the CPU set and the cgroup quota.
fn plan_cores(cfg: &ServerConfig) -> Result<cpus::CpuPlan, ServerError> {
    cpus::plan(cfg.workers, cfg.cpus.as_deref(), cfg.pin, &cpus::allowed_cpus(), cpus::cgroup_cpu_limit())
        .map_err(ServerError::Cpus)
}

/// One listening socket per executor slot: inherited (socket activation, upgrade) or bound
/// here. Also says whether they form a reuseport group with one socket per slot. With
/// `shared`, one socket per address is bound and every slot gets a handle on it.
///
/// Also says whether the sockets are percore's own (bound here, or handed down by an
/// upgrade of a percore that bound them) rather than the service manager's. The Unix
/// sockets come apart: one each, shared by every slot.
#[allow(clippy::type_complexity)]
fn listeners(
    cfg: &ServerConfig,
    workers: usize,
    shared: bool,
) -> Result<(Vec<Vec<TcpListener>>, Vec<SocketAddr>, bool, bool, UnixSockets), ServerError> {
    let inherited = if cfg.inherit_sockets { listen::inherited() } else { Ok(None) };
    let io_err = |source: io::Error| ServerError::Inherit(source.to_string());
    let Some(listen::Inherited { listeners: sockets, unix, names, owned }) = inherited.map_err(io_err)?
    else {
        // One reuseport group per address, one socket per slot in each (or one in all).
        let mut groups = Vec::new();
        let targets = cfg.bind_addresses()?;
        for &target in &targets {
            // An IPv6 address next to an IPv4 one on the same port serves IPv6 only.
            let v6_only = targets.iter().any(|t| t.is_ipv4() && t.port() == target.port());
            let sockets = if shared { 1 } else { workers };
            let (group, addr) = listen::bind_group(target, sockets, cfg.backlog, v6_only)?;
            groups.push((addr, group));
        }
        let addrs: Vec<SocketAddr> = groups.iter().map(|(a, _)| *a).collect();
        let unix = UnixSockets::bind(&cfg.unix_paths(), cfg.backlog, cfg.uds_permissions)
            .map_err(|(path, source)| ServerError::BindUnix { path, source })?;
        let slots =
            hand_out(&groups, workers).map_err(|source| ServerError::Bind { addr: addrs[0], source })?;
        return Ok((slots, addrs, !shared, true, unix));
    };
    let unix = UnixSockets::inherited(unix, owned);
    // Group the sockets by address (an upgrade passes one per slot and address; systemd
    // may pass one shared socket per address); each slot takes one of each group.
    let mut groups: Vec<(SocketAddr, Vec<TcpListener>)> = Vec::new();
    for s in sockets {
        let addr = s.local_addr().map_err(io_err)?;
        match groups.iter_mut().find(|(a, _)| *a == addr) {
            // Several descriptors of one socket (a tokio-mt parent shares one between its
            // executors) are one socket: a group of distinct sockets can be steered.
            Some((_, g)) if g.iter().any(|o| listen::same_socket(o, &s)) => {}
            Some((_, g)) => g.push(s),
            None => groups.push((addr, vec![s])),
        }
    }
    let addrs: Vec<SocketAddr> = groups.iter().map(|(a, _)| *a).collect();
    tracing::info!(
        sockets = groups.iter().map(|(_, g)| g.len()).sum::<usize>(),
        names = ?names,
        addresses = ?addrs,
        unix = ?unix.paths,
        "serving on inherited sockets (not binding --host/--port/--bind)"
    );
    let steerable = groups.iter().all(|(_, g)| g.len() == workers && g.iter().all(listen::is_reuseport));
    Ok((hand_out(&groups, workers).map_err(io_err)?, addrs, steerable, owned, unix))
}

/// Each slot's handles: one on a socket of every address's group, slot `i` taking socket
/// `i` (modulo the group's size).
fn hand_out(groups: &[(SocketAddr, Vec<TcpListener>)], workers: usize) -> io::Result<Vec<Vec<TcpListener>>> {
    (0..workers).map(|i| groups.iter().map(|(_, g)| g[i % g.len()].try_clone()).collect()).collect()
}

/// Executor `index`'s share of a process-wide limit (`usize::MAX` when unlimited); the
/// remainder goes to the first executors so the shares add up to the limit.
pub(crate) fn share(limit: Option<usize>, workers: usize, index: usize) -> usize {
    match limit {
        None => usize::MAX,
        Some(n) => (n / workers + usize::from(index < n % workers)).max(1),
    }
}

/// A running server. Dropping it stops the server at once.
pub struct ServerHandle {
    addrs: Vec<SocketAddr>,
    unix_paths: Vec<std::path::PathBuf>,
    state: Arc<ServerState>,
    commands: Sender<Command>,
    thread: Option<JoinHandle<Result<Shutdown, ServerError>>>,
    driver: &'static str,
    access_log: Option<AccessLog>,
    metrics: Option<SocketAddr>,
}

impl ServerHandle {
    /// The (first) TCP address the executors listen on, with the real port when 0 was
    /// asked for; `None` when the server listens on Unix sockets only (see
    /// [`ServerHandle::unix_paths`]).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.addrs.first().copied()
    }

    /// The Unix sockets the executors listen on (`--bind unix:PATH`, or inherited ones).
    pub fn unix_paths(&self) -> &[std::path::PathBuf] {
        &self.unix_paths
    }

    /// Every address the executors listen on (`--bind` may give several).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    pub fn state(&self) -> &Arc<ServerState> {
        &self.state
    }

    /// The IO driver the executors run on (`io_uring` or `epoll`).
    pub fn driver(&self) -> &'static str {
        self.driver
    }

    /// Reopen the access log file (after logrotate moved it; SIGUSR1).
    pub fn reopen_logs(&self) {
        if let Some(log) = &self.access_log {
            log.reopen();
        }
    }

    /// Where `--metrics-port` serves, if set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics
    }

    /// Ask the supervisor to do something; see [`Command`].
    pub fn send(&self, command: Command) {
        let _ = self.commands.send(command);
        self.state.nudge_supervisor();
    }

    /// Whether the server has ended (then [`ServerHandle::join`] returns at once).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Wait for the server to end.
    pub fn join(mut self) -> Result<Shutdown, ServerError> {
        self.join_inner()
    }

    fn join_inner(&mut self) -> Result<Shutdown, ServerError> {
        match self.thread.take() {
            None => Ok(Shutdown::Stopped),
            Some(t) => t.join().map_err(|_| ServerError::Supervisor("panicked".into()))?,
        }
    }

    /// Drain gracefully (as on SIGTERM) and wait for the end.
    pub fn drain(self) -> Result<Shutdown, ServerError> {
        self.send(Command::Drain);
        self.join()
    }

    /// Stop now: close every connection and wait for the executors.
    pub fn stop(self) {
        self.send(Command::StopNow);
        let _ = self.join();
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.commands.send(Command::StopNow);
            self.state.nudge_supervisor();
            let _ = self.join_inner();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::share;

    #[test]
    fn shares_add_up() {
        assert_eq!((0..3).map(|i| share(Some(10), 3, i)).sum::<usize>(), 10);
        assert_eq!(share(Some(1), 4, 3), 1, "every executor may serve at least one");
        assert_eq!(share(None, 2, 0), usize::MAX);
    }
}
