//! Configuration: the command line (every flag also an environment variable), its
//! validation, and the library-level [`ServerConfig`] it turns into. Defaults live here.

use std::time::Duration;

use clap::{Parser, ValueEnum};

pub mod file;

use crate::conn::DriverConfig;
use crate::cpus::parse_cpu_list;
use crate::http::proxy::{ForwardedHeaders, ForwardedRules, ProxyProtocol, TrustedProxies};
use crate::http::Limits;
use crate::observe::access_log::{Format as AccessLogFormat, Target as AccessLogTarget};
use crate::runtime::{IoBackend, RuntimeKind};
use crate::supervisor::SupervisorConfig;
use crate::tls::{CertReqs, TlsSettings, TlsVersion};
use crate::ws::WsConfig;

/// Everything a [`crate::Server`] needs. `ServerConfig::default()` matches the CLI defaults.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub host: String,
    /// 0 picks a free port (all executors share it).
    pub port: u16,
    /// `HOST:PORT` addresses to listen on; when empty, `host:port`. With TLS on, an
    /// `http:` prefix makes one address plain (and `https:` says TLS explicitly).
    /// `unix:PATH` is a Unix domain socket (plain HTTP); Unix sockets alone replace
    /// `host:port` too.
    pub bind: Vec<String>,
    /// The mode of the Unix socket files percore creates (`--uds-permissions`); `None`:
    /// as the umask leaves it.
    pub uds_permissions: Option<u32>,
    /// Serve TLS (`--certfile`, `--keyfile`, ...) on every address not marked `http:`.
    pub tls: Option<TlsSettings>,
    /// The runtime executors run.
    pub runtime: RuntimeKind,
    /// io_uring or epoll (for runtimes that offer both).
    pub io_backend: IoBackend,
    /// Executors to start; `None`: one per available core.
    pub workers: Option<usize>,
    /// Cores to run on; `None`: the process's CPU set.
    pub cpus: Option<Vec<usize>>,
    /// Pin each executor to its core.
    pub pin: bool,
    pub driver: DriverConfig,
    /// Requests in flight for the whole process, split across executors.
    pub limit_concurrency: Option<usize>,
    /// Open connections for the whole process, split across executors.
    pub max_connections: Option<usize>,
    pub backlog: u32,
    pub supervisor: SupervisorConfig,
    /// Speak systemd's notify protocol when `NOTIFY_SOCKET` is set.
    pub notify: bool,
    /// Serve on sockets passed by systemd (`LISTEN_FDS`) or by an upgrading percore
    /// instead of binding `host:port`, when there are any.
    pub inherit_sockets: bool,
    /// Where access log lines go.
    pub access_log: AccessLogTarget,
    pub access_log_format: AccessLogFormat,
    /// Most bytes of access log lines waiting for the writer; more are dropped and counted.
    pub access_log_buffer: usize,
    /// Serve `/metrics` on this port too, on its own thread (the main port has it as well,
    /// through the app).
    pub metrics_port: Option<u16>,
}

impl ServerConfig {
    /// The TCP addresses to listen on: every `bind` entry but `unix:` ones, or `host:port`
    /// when `bind` is empty (none when it names Unix sockets only).
    pub fn bind_addresses(&self) -> Result<Vec<std::net::SocketAddr>, crate::server::ServerError> {
        if self.bind.is_empty() {
            return Ok(vec![crate::listen::resolve(&self.host, self.port)?]);
        }
        self.tcp_binds().map(|b| crate::listen::resolve_bind(bind_scheme(b).1)).collect()
    }

    /// The Unix sockets to listen on (`--bind unix:PATH`).
    pub fn unix_paths(&self) -> Vec<std::path::PathBuf> {
        self.bind.iter().filter_map(|b| crate::uds::bind_path(b)).map(|p| p.to_path_buf()).collect()
    }

    /// The `bind` entries that are TCP addresses.
    fn tcp_binds(&self) -> impl Iterator<Item = &String> {
        self.bind.iter().filter(|b| crate::uds::bind_path(b).is_none())
    }

    /// Whether each address of `addrs` (the bound or inherited ones) serves TLS: as its
    /// `--bind` entry's `http:`/`https:` prefix says, else whenever TLS is configured.
    pub fn tls_addresses(
        &self,
        addrs: &[std::net::SocketAddr],
    ) -> Result<Vec<bool>, crate::server::ServerError> {
        let mut explicit = Vec::new();
        let tcp_binds = self.tcp_binds().count();
        for (i, b) in self.tcp_binds().enumerate() {
            if let (Some(tls), rest) = bind_scheme(b) {
                if tls && self.tls.is_none() {
                    return Err(crate::server::ServerError::Tls(format!(
                        "--bind {b}: an https: address needs --certfile and --keyfile"
                    )));
                }
                explicit.push((i, crate::listen::resolve_bind(rest)?, tls));
            }
        }
        Ok(addrs
            .iter()
            .enumerate()
            .map(|(i, addr)| {
                // By address (inherited sockets come in any order); a port 0 is only known
                // once bound, so such an entry goes by its position among the binds.
                let by_addr = explicit.iter().find(|(_, a, _)| a == addr);
                let by_position = (addrs.len() == tcp_binds)
                    .then(|| explicit.iter().find(|(j, a, _)| *j == i && a.port() == 0))
                    .flatten();
                by_addr.or(by_position).map_or(self.tls.is_some(), |(_, _, tls)| *tls)
            })
            .collect())
    }
}

/// Split a `--bind` entry's scheme prefix off: `http:` (plain, even with TLS configured)
/// or `https:` (TLS); `None` when there is none.
pub fn bind_scheme(bind: &str) -> (Option<bool>, &str) {
    if let Some(rest) = bind.strip_prefix("http:") {
        (Some(false), rest)
    } else if let Some(rest) = bind.strip_prefix("https:") {
        (Some(true), rest)
    } else {
        (None, bind)
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: "127.0.0.1".to_string(),
            port: 8000,
            bind: Vec::new(),
            uds_permissions: None,
            tls: None,
            runtime: RuntimeKind::default(),
            io_backend: IoBackend::Auto,
            workers: None,
            cpus: None,
            pin: true,
            driver: DriverConfig::default(),
            limit_concurrency: None,
            max_connections: None,
            backlog: 2048,
            supervisor: SupervisorConfig::default(),
            notify: true,
            inherit_sockets: true,
            access_log: AccessLogTarget::Off,
            access_log_format: AccessLogFormat::parse("combined").expect("built-in format"),
            access_log_buffer: crate::observe::access_log::DEFAULT_BUFFER,
            metrics_port: None,
        }
    }
}

/// The settings (file keys) a SIGHUP applies: the new executors take the request limits,
/// timeouts, proxy settings, capacity and supervisor settings; the log level and the access
/// log format change in place. Every other setting needs a restart, and a reload that
/// changes one names it in a warning. (A list of what is applied, so that a setting added
/// later is reported as needing a restart until its reload is wired up.)
pub const APPLIED_ON_RELOAD: [&str; 39] = [
    "log-level",
    "certfile",
    "keyfile",
    "ca-certs",
    "cert-reqs",
    "tls-min-version",
    "access-log-format",
    "max-body-size",
    "max-request-line",
    "max-header-size",
    "max-headers-size",
    "max-headers",
    "header-timeout",
    "keep-alive",
    "body-timeout",
    "body-min-rate",
    "write-timeout",
    "forwarded-allow-ips",
    "forwarded-headers",
    "forwarded-host",
    "proxy-protocol",
    "proxy-allow-from",
    "limit-concurrency",
    "limit-concurrency-exempt",
    "max-connections",
    "graceful-timeout",
    "drain-delay",
    "timeout",
    "stall-detect",
    "max-stuck",
    "max-requests",
    "max-requests-jitter",
    "ws-max-size",
    "ws-close-timeout",
    "ws-ping-interval",
    "ws-ping-timeout",
    "ws-origins",
    "ws-per-message-deflate",
    "sse-ping-interval",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// The command besides serving, listed under `percore --help`.
const COMMANDS_HELP: &str = "Commands:
  check-config [FLAGS]  Check the configuration (flags, environment, --config file) as the
                        server would at start, without serving, and print the effective one
                        (see `percore check-config --help`)";

/// `percore check-config --help`.
const CHECK_CONFIG_ABOUT: &str = "Check the configuration without serving: the flags, PERCORE_* \
environment variables and --config file are merged and validated as `percore` would at start \
(values, --cpus inside the CPU set, --workers, the runtime and IO backend, the addresses, the \
access log file), then the effective configuration is printed as TOML with where each value \
came from. A metrics port that is in use is a warning (the running server holds it). Exit status \
0 when the server would start with it, 2 when not. The listening port is not tried.";

impl Cli {
    /// The command line of `percore check-config`: the same flags, its own usage and help.
    pub fn check_config_command() -> clap::Command {
        use clap::CommandFactory;
        Cli::command()
            .bin_name("percore check-config")
            .about("Check the configuration without serving, and print the effective one")
            .long_about(CHECK_CONFIG_ABOUT)
            .after_help("")
    }
}

/// percore: a thread-per-core io_uring HTTP/1.1 server.
///
/// Durations take a unit (`500ms`, `10s`, `2m`) or are seconds; sizes take `KiB`/`MiB`/`GiB`
/// (or `k`/`m`/`g`) or are bytes.
#[derive(Debug, Parser)]
#[command(name = "percore", version, about, long_about = None, after_help = COMMANDS_HELP)]
pub struct Cli {
    /// A TOML file with a key for any flag below (`port = 8080`, `max-body-size = "1MiB"`).
    /// Flags and environment variables override it. Re-read on SIGHUP.
    #[arg(long, env = "PERCORE_CONFIG")]
    pub config: Option<std::path::PathBuf>,

    /// Address to listen on.
    #[arg(long, env = "PERCORE_HOST", default_value = "127.0.0.1")]
    pub host: String,

    /// Port to listen on (0: pick a free one).
    #[arg(short, long, env = "PERCORE_PORT", default_value_t = 8000)]
    pub port: u16,

    /// Address to listen on, as HOST:PORT (`0.0.0.0:8000`, `[::]:8000`) or `unix:PATH` (a
    /// Unix domain socket, plain HTTP, for a proxy on the same host); repeat it (or give a
    /// comma-separated list) for several. Replaces --host/--port when given. With
    /// --certfile every TCP address serves TLS, except one written `http:HOST:PORT`
    /// (plain); `https:HOST:PORT` says TLS explicitly.
    #[arg(short, long, env = "PERCORE_BIND", value_delimiter = ',')]
    pub bind: Vec<String>,

    /// Mode of the `--bind unix:` socket files, in octal (`660`: owner and group may
    /// connect). Default: as the umask leaves it.
    #[arg(long, env = "PERCORE_UDS_PERMISSIONS", value_parser = crate::uds::parse_mode)]
    pub uds_permissions: Option<u32>,

    /// Serve HTTPS with this PEM certificate chain (the server's certificate first, then
    /// intermediates, as certbot's fullchain.pem). Re-read on SIGHUP.
    #[arg(long, env = "PERCORE_CERTFILE", requires = "keyfile")]
    pub certfile: Option<std::path::PathBuf>,

    /// The PEM private key of --certfile: RSA, ECDSA or Ed25519, in PKCS#8, PKCS#1 or SEC1.
    /// Re-read on SIGHUP.
    #[arg(long, env = "PERCORE_KEYFILE", requires = "certfile")]
    pub keyfile: Option<std::path::PathBuf>,

    /// PEM file of the CAs that sign client certificates (mutual TLS; with --cert-reqs).
    #[arg(long, env = "PERCORE_CA_CERTS", requires = "certfile")]
    pub ca_certs: Option<std::path::PathBuf>,

    /// Client certificates: none (not asked for), optional (verified when sent) or required
    /// (no valid certificate, no connection) [default: none]
    #[arg(long, env = "PERCORE_CERT_REQS", requires = "certfile", value_parser = CertReqs::parse)]
    pub cert_reqs: Option<CertReqs>,

    /// Oldest TLS version accepted: 1.2 or 1.3 [default: 1.2]
    #[arg(long, env = "PERCORE_TLS_MIN_VERSION", requires = "certfile", value_parser = TlsVersion::parse)]
    pub tls_min_version: Option<TlsVersion>,

    /// Runtime of the executors: monoio (io_uring), glommio (io_uring) or tokio (epoll), the
    /// same thread-per-core design on each; or tokio-mt (epoll), for comparison: one
    /// multi-thread tokio runtime and one shared listener (without work stealing).
    #[arg(long, env = "PERCORE_RUNTIME", default_value = "monoio", value_parser = RuntimeKind::parse)]
    pub runtime: RuntimeKind,

    /// IO backend: auto (io_uring when a ring can be built, else epoll with a warning),
    /// uring (fail instead of falling back), or epoll.
    #[arg(long, env = "PERCORE_IO_BACKEND", default_value = "auto", value_parser = IoBackend::parse)]
    pub io_backend: IoBackend,

    /// Executors to run [default: the cores this process may use, within its cgroup quota].
    #[arg(short, long, env = "PERCORE_WORKERS")]
    pub workers: Option<usize>,

    /// Cores to run on, e.g. `0-3,6`; must lie inside the process's CPU set.
    #[arg(long, env = "PERCORE_CPUS", value_parser = parse_cpus)]
    pub cpus: Option<CpuList>,

    /// Do not pin executors to cores.
    #[arg(long, env = "PERCORE_NO_PIN")]
    pub no_pin: bool,

    #[arg(long, env = "PERCORE_LOG_LEVEL", value_enum, default_value = "info")]
    pub log_level: LogLevel,

    #[arg(long, env = "PERCORE_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Largest request body; larger gets 413.
    #[arg(long, env = "PERCORE_MAX_BODY_SIZE", default_value = "16MiB", value_parser = parse_size)]
    pub max_body_size: u64,

    /// Longest request line; longer gets 414.
    #[arg(long, env = "PERCORE_MAX_REQUEST_LINE", default_value = "8KiB", value_parser = parse_size)]
    pub max_request_line: u64,

    /// Longest single header field; longer gets 431.
    #[arg(long, env = "PERCORE_MAX_HEADER_SIZE", default_value = "8KiB", value_parser = parse_size)]
    pub max_header_size: u64,

    /// Largest header block; larger gets 431.
    #[arg(long, env = "PERCORE_MAX_HEADERS_SIZE", default_value = "64KiB", value_parser = parse_size)]
    pub max_headers_size: u64,

    /// Most header fields; more gets 431.
    #[arg(long, env = "PERCORE_MAX_HEADERS", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_headers: u32,

    /// Time for a whole request head to arrive (slowloris defence); late gets 408.
    #[arg(long, env = "PERCORE_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_positive_duration)]
    pub header_timeout: Duration,

    /// Idle time allowed between requests on a connection; 0 turns keep-alive off. Keep it
    /// above the load balancer's idle timeout (ALB: 60 s).
    #[arg(long, env = "PERCORE_KEEP_ALIVE", default_value = "75s", value_parser = parse_duration)]
    pub keep_alive: Duration,

    /// Longest gap between reads of a request body; late gets 408.
    #[arg(long, env = "PERCORE_BODY_TIMEOUT", default_value = "30s", value_parser = parse_positive_duration)]
    pub body_timeout: Duration,

    /// Slowest average a request body may arrive at, in bytes per second (0: no minimum): a
    /// body must be complete within --body-timeout plus one second per this many bytes
    /// received, else 408 (Apache's mod_reqtimeout MinRate).
    #[arg(long, env = "PERCORE_BODY_MIN_RATE", default_value_t = 500)]
    pub body_min_rate: u64,

    /// Longest time a write may wait for a client that stops reading.
    #[arg(long, env = "PERCORE_WRITE_TIMEOUT", default_value = "30s", value_parser = parse_positive_duration)]
    pub write_timeout: Duration,

    /// Requests in flight for the whole process (split across executors, at least 1 each);
    /// more get 503.
    #[arg(long, env = "PERCORE_LIMIT_CONCURRENCY", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit_concurrency: Option<u64>,

    /// Paths that --limit-concurrency never refuses, comma-separated (health checks must be
    /// answered while the server is saturated); empty for none.
    #[arg(long, env = "PERCORE_LIMIT_CONCURRENCY_EXEMPT", default_value = "/health,/ready", value_parser = parse_path_list)]
    pub limit_concurrency_exempt: PathList,

    /// Open connections for the whole process (split across executors, at least 1 each);
    /// more get 503.
    #[arg(long, env = "PERCORE_MAX_CONNECTIONS", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: Option<u64>,

    /// After a drain starts (SIGTERM) and the listeners close, how long in-flight requests
    /// get before the rest are cut.
    #[arg(long, env = "PERCORE_GRACEFUL_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub graceful_timeout: Duration,

    /// After SIGTERM, keep accepting this long (while /ready says 503) so a load balancer
    /// can deregister this target first.
    #[arg(long, env = "PERCORE_DRAIN_DELAY", default_value = "0s", value_parser = parse_duration)]
    pub drain_delay: Duration,

    /// Replace an executor whose thread has been blocked this long (gunicorn's --timeout).
    /// Requests that merely wait (an await on an upstream) never count.
    #[arg(long, env = "PERCORE_TIMEOUT", default_value = "30s", value_parser = parse_positive_duration)]
    pub timeout: Duration,

    /// Steer new connections away from an executor whose heartbeat is this late.
    #[arg(long, env = "PERCORE_STALL_DETECT", default_value = "1s", value_parser = parse_positive_duration)]
    pub stall_detect: Duration,

    /// Exit (non-zero) when more than this many executors are stuck past --timeout at once.
    #[arg(long, env = "PERCORE_MAX_STUCK", default_value_t = 1)]
    pub max_stuck: usize,

    /// Serve the debug routes /stall?ms=N (blocks the executor thread) and /crash (panics the
    /// executor outside any handler). Never in production.
    #[arg(long, env = "PERCORE_DEBUG_ROUTES")]
    pub debug_routes: bool,

    /// Recycle an executor after this many requests (0: never).
    #[arg(long, env = "PERCORE_MAX_REQUESTS", default_value_t = 0)]
    pub max_requests: u64,

    /// Add up to this many requests, at random per executor, to --max-requests.
    #[arg(long, env = "PERCORE_MAX_REQUESTS_JITTER", default_value_t = 0)]
    pub max_requests_jitter: u64,

    /// Access log: `-` (stdout), a file path, or `off`. Reopened on SIGUSR1 (logrotate).
    #[arg(long, env = "PERCORE_ACCESS_LOG", default_value = "off")]
    pub access_log: String,

    /// Access log format: `common`, `combined`, `json`, or a gunicorn --access-logformat
    /// string such as `%(h)s %(t)s "%(r)s" %(s)s %(b)s %(D)s`.
    #[arg(long, env = "PERCORE_ACCESS_LOG_FORMAT", default_value = "combined", value_parser = AccessLogFormat::parse)]
    pub access_log_format: AccessLogFormat,

    /// Most bytes of access log lines waiting to be written; when the output cannot keep up
    /// (a full disk, a pipe nobody reads), further lines are dropped and counted
    /// (percore_access_log_dropped_total) instead of growing memory or blocking executors.
    #[arg(long, env = "PERCORE_ACCESS_LOG_BUFFER", default_value = "16MiB", value_parser = parse_size)]
    pub access_log_buffer: u64,

    /// Also serve GET /metrics on this port, on a thread of its own (keep it off the public
    /// interface; the main port serves /metrics too).
    #[arg(long, env = "PERCORE_METRICS_PORT")]
    pub metrics_port: Option<u16>,

    /// Peers whose forwarding headers are believed: a comma-separated list of addresses
    /// and CIDRs, `unix` (peers on a `--bind unix:` socket, local processes, trusted by
    /// default as gunicorn does), or `*` (everyone).
    #[arg(long, env = "PERCORE_FORWARDED_ALLOW_IPS", default_value = "127.0.0.1,unix", value_parser = TrustedProxies::parse)]
    pub forwarded_allow_ips: TrustedProxies,

    /// Which forwarding headers a trusted peer's requests are read with: `x-forwarded`
    /// (X-Forwarded-For/-Proto, what nginx and the AWS ALB set) or `forwarded` (RFC 7239).
    /// The other family is ignored, never mixed in.
    #[arg(long, env = "PERCORE_FORWARDED_HEADERS", default_value = "x-forwarded", value_parser = ForwardedHeaders::parse)]
    pub forwarded_headers: ForwardedHeaders,

    /// Believe the host a trusted proxy names (X-Forwarded-Host, or `host=` in Forwarded).
    /// Off by default: the ALB does not set it, so behind an ALB it comes from the client.
    #[arg(long, env = "PERCORE_FORWARDED_HOST")]
    pub forwarded_host: bool,

    /// Require a PROXY protocol header (AWS NLB) on every connection: off, v1, v2 or auto.
    #[arg(long, env = "PERCORE_PROXY_PROTOCOL", default_value = "off", value_parser = ProxyProtocol::parse)]
    pub proxy_protocol: ProxyProtocol,

    /// Peers allowed to send a PROXY header (addresses and CIDRs, `unix`, or `*`); a connection from
    /// any other peer is closed unread and counted, so a client that bypasses the load
    /// balancer cannot claim an address.
    #[arg(long, env = "PERCORE_PROXY_ALLOW_FROM", default_value = "127.0.0.1,::1", value_parser = TrustedProxies::parse)]
    pub proxy_allow_from: TrustedProxies,

    /// Listen backlog of each executor's socket.
    #[arg(long, env = "PERCORE_BACKLOG", default_value_t = 2048, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub backlog: u32,

    /// Largest WebSocket message accepted; a larger one is closed with 1009 before it is
    /// buffered (uvicorn's default).
    #[arg(long, env = "PERCORE_WS_MAX_SIZE", default_value = "16MiB", value_parser = parse_size)]
    pub ws_max_size: u64,

    /// After sending a WebSocket close frame, how long to wait for the peer's before closing
    /// the connection anyway.
    #[arg(long, env = "PERCORE_WS_CLOSE_TIMEOUT", default_value = "10s", value_parser = parse_positive_duration)]
    pub ws_close_timeout: Duration,

    /// Time between keepalive pings on an idle or busy WebSocket; 0 sends none. Keep it under
    /// the proxy's idle timeout (ALB: 60 s, nginx proxy_read_timeout: 60 s).
    #[arg(long, env = "PERCORE_WS_PING_INTERVAL", default_value = "20s", value_parser = parse_duration)]
    pub ws_ping_interval: Duration,

    /// How long a keepalive ping may go unanswered before the WebSocket is closed with 1011.
    #[arg(long, env = "PERCORE_WS_PING_TIMEOUT", default_value = "20s", value_parser = parse_positive_duration)]
    pub ws_ping_timeout: Duration,

    /// Origins allowed to open a WebSocket, comma-separated (`https://app.example.com`);
    /// others get 403. Empty (the default): any. Requests without `Origin` are not from a
    /// browser and are always allowed.
    #[arg(long, env = "PERCORE_WS_ORIGINS", default_value = "", value_parser = parse_origin_list)]
    pub ws_origins: OriginList,

    /// Compress WebSocket messages with permessage-deflate (RFC 7692) when the client offers
    /// it (uvicorn's default): `true` or `false`.
    #[arg(long, env = "PERCORE_WS_PER_MESSAGE_DEFLATE", default_value_t = true, action = clap::ArgAction::Set)]
    pub ws_per_message_deflate: bool,

    /// On a Server-Sent Events stream, a `: ping` comment after this long without an event,
    /// so proxies and clients do not take the quiet connection for a dead one; 0 sends none.
    #[arg(long, env = "PERCORE_SSE_PING_INTERVAL", default_value = "15s", value_parser = parse_duration)]
    pub sse_ping_interval: Duration,
}

impl Cli {
    fn tls_settings(&self) -> Option<TlsSettings> {
        Some(TlsSettings {
            certfile: self.certfile.clone()?,
            keyfile: self.keyfile.clone()?,
            ca_certs: self.ca_certs.clone(),
            cert_reqs: self.cert_reqs.unwrap_or_default(),
            min_version: self.tls_min_version.unwrap_or_default(),
        })
    }

    pub fn server_config(&self) -> ServerConfig {
        let usize_of = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        ServerConfig {
            host: self.host.clone(),
            port: self.port,
            bind: self.bind.clone(),
            uds_permissions: self.uds_permissions,
            tls: self.tls_settings(),
            runtime: self.runtime,
            io_backend: self.io_backend,
            workers: self.workers,
            cpus: self.cpus.clone().map(|c| c.0),
            pin: !self.no_pin,
            driver: DriverConfig {
                limits: Limits {
                    max_request_line: usize_of(self.max_request_line),
                    max_header_field: usize_of(self.max_header_size),
                    max_header_block: usize_of(self.max_headers_size),
                    max_headers: self.max_headers as usize,
                    max_body: self.max_body_size,
                },
                header_timeout: self.header_timeout,
                keep_alive: self.keep_alive,
                body_timeout: self.body_timeout,
                body_min_rate: self.body_min_rate,
                limit_exempt_paths: self.limit_concurrency_exempt.0.clone(),
                write_timeout: self.write_timeout,
                trusted_proxies: self.forwarded_allow_ips.clone(),
                forwarded: ForwardedRules { family: self.forwarded_headers, host: self.forwarded_host },
                proxy_protocol: self.proxy_protocol,
                proxy_allow_from: self.proxy_allow_from.clone(),
                ws: WsConfig {
                    max_message: usize_of(self.ws_max_size),
                    close_timeout: self.ws_close_timeout,
                    ping_interval: self.ws_ping_interval,
                    ping_timeout: self.ws_ping_timeout,
                    origins: self.ws_origins.0.clone(),
                    per_message_deflate: self.ws_per_message_deflate,
                },
                sse_ping_interval: self.sse_ping_interval,
                ..DriverConfig::default()
            },
            limit_concurrency: self.limit_concurrency.map(usize_of),
            max_connections: self.max_connections.map(usize_of),
            backlog: self.backlog,
            supervisor: SupervisorConfig {
                graceful_timeout: self.graceful_timeout,
                drain_delay: self.drain_delay,
                timeout: self.timeout,
                stall_detect: self.stall_detect,
                max_stuck: self.max_stuck,
                max_requests: (self.max_requests > 0).then_some(self.max_requests),
                max_requests_jitter: self.max_requests_jitter,
            },
            notify: true,
            inherit_sockets: true,
            access_log: AccessLogTarget::parse(&self.access_log),
            access_log_format: self.access_log_format.clone(),
            access_log_buffer: usize_of(self.access_log_buffer),
            metrics_port: self.metrics_port,
        }
    }
}

/// A parsed `--cpus` list. (A newtype: clap would read `Option<Vec<usize>>` as a flag taking
/// several values.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

/// A comma-separated list of paths, each starting with `/`. (A newtype, as `CpuList`.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathList(pub Vec<String>);

fn parse_path_list(s: &str) -> Result<PathList, String> {
    let paths: Vec<String> =
        s.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_string).collect();
    match paths.iter().find(|p| !p.starts_with('/')) {
        Some(bad) => Err(format!("{bad:?} is not a path (paths start with /)")),
        None => Ok(PathList(paths)),
    }
}

/// `--ws-origins`: serialized origins (`scheme://host[:port]`), or `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginList(pub Vec<String>);

fn parse_origin_list(s: &str) -> Result<OriginList, String> {
    let origins: Vec<String> =
        s.split(',').map(str::trim).filter(|o| !o.is_empty()).map(str::to_string).collect();
    match origins.iter().find(|o| *o != "*" && !o.contains("://")) {
        Some(bad) => {
            Err(format!("{bad:?} is not an origin (scheme://host[:port], e.g. https://app.example.com)"))
        }
        None => Ok(OriginList(origins)),
    }
}

fn parse_cpus(s: &str) -> Result<CpuList, String> {
    parse_cpu_list(s).map(CpuList)
}

/// `500ms`, `10s`, `2m`, `1h`, or a number of seconds (`1.5`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num.parse().map_err(|_| format!("invalid duration {s:?} (e.g. 500ms, 10s, 2m)"))?;
    let seconds = match unit.trim() {
        "" | "s" | "sec" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("invalid duration unit in {s:?} (use ms, s, m or h)")),
    };
    if !seconds.is_finite() || !(0.0..=31_536_000.0).contains(&seconds) {
        return Err(format!("duration {s:?} out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err("must be greater than zero".to_string());
    }
    Ok(d)
}

/// `16MiB`, `8KiB`, `1g`, or a number of bytes. All units are powers of 1024.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: u64 = num.parse().map_err(|_| format!("invalid size {s:?} (e.g. 8KiB, 16MiB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("invalid size unit in {s:?} (use KiB, MiB or GiB)")),
    };
    let bytes = value.checked_mul(mult).ok_or_else(|| format!("size {s:?} too large"))?;
    if bytes == 0 {
        return Err("must be greater than zero".to_string());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_positive_duration("0").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("16MiB").unwrap(), 16 << 20);
        assert_eq!(parse_size("8k").unwrap(), 8192);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert!(parse_size("-1").is_err());
        assert!(parse_size("0").is_err());
        assert!(parse_size("1TiB").is_err());
    }

    #[test]
    fn tls_goes_to_every_address_but_those_written_http() {
        let a: std::net::SocketAddr = "127.0.0.1:8443".parse().unwrap();
        let b: std::net::SocketAddr = "127.0.0.1:9000".parse().unwrap();
        let mut cfg = ServerConfig {
            bind: vec!["127.0.0.1:8443".into(), "http:127.0.0.1:9000".into()],
            tls: Some(TlsSettings::new("c.pem", "k.pem")),
            ..ServerConfig::default()
        };
        assert_eq!(cfg.bind_addresses().unwrap(), vec![a, b]);
        assert_eq!(cfg.tls_addresses(&[a, b]).unwrap(), vec![true, false]);
        // Inherited sockets, in another order: matched by address.
        assert_eq!(cfg.tls_addresses(&[b, a]).unwrap(), vec![false, true]);
        cfg.tls = None;
        assert_eq!(cfg.tls_addresses(&[a, b]).unwrap(), vec![false, false]);
        cfg.bind = vec!["https:127.0.0.1:8443".into()];
        assert!(cfg.tls_addresses(&[a]).unwrap_err().to_string().contains("needs --certfile"));
        // A Unix socket is neither a TCP address nor counted among their positions.
        cfg.tls = Some(TlsSettings::new("c.pem", "k.pem"));
        cfg.bind = vec!["unix:/run/p.sock".into(), "127.0.0.1:0".into(), "http:127.0.0.1:0".into()];
        let (c, d): (std::net::SocketAddr, std::net::SocketAddr) =
            ("127.0.0.1:4001".parse().unwrap(), "127.0.0.1:4002".parse().unwrap());
        assert_eq!(cfg.bind_addresses().unwrap().len(), 2);
        assert_eq!(cfg.unix_paths(), vec![std::path::PathBuf::from("/run/p.sock")]);
        assert_eq!(cfg.tls_addresses(&[c, d]).unwrap(), vec![true, false]);
    }

    fn repo_file(name: &str) -> String {
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(name)).unwrap()
    }

    /// docs/flags.md's flags table must render as one table (a blank line would end it) with a row
    /// for every flag.
    #[test]
    fn readme_flags_table_is_one_table_with_every_flag() {
        use clap::CommandFactory;
        let readme = repo_file("docs/flags.md");
        let section = readme.split("# Flags\n").nth(1).expect("a Flags section");
        let start = section.find("| flag | env | default | meaning |").expect("the flags table");
        let rows: Vec<&str> = section[start..].lines().take_while(|l| l.starts_with('|')).collect();
        for arg in Cli::command().get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if matches!(long, "help" | "version") {
                continue;
            }
            let flag = format!("`--{long}`");
            assert!(
                rows.iter()
                    .any(|r| r.starts_with(&format!("| {flag}")) || r.contains(&format!(", {flag} |"))),
                "{flag} has no row in docs/flags.md's flags table"
            );
        }
    }

    #[test]
    fn example_config_lists_every_runtime() {
        let example = repo_file("deploy/percore.toml");
        for kind in [RuntimeKind::Monoio, RuntimeKind::Glommio, RuntimeKind::Tokio, RuntimeKind::TokioMt] {
            assert!(
                example.contains(&format!("\"{}\"", kind.name())),
                "deploy/percore.toml does not name runtime {}",
                kind.name()
            );
        }
    }

    #[test]
    fn cli_defaults_match_library_defaults() {
        let cli = Cli::try_parse_from(["percore"]).unwrap();
        let from_cli = cli.server_config();
        let lib = ServerConfig::default();
        assert_eq!(from_cli.port, lib.port);
        assert_eq!(from_cli.host, lib.host);
        assert_eq!(from_cli.backlog, lib.backlog);
        assert_eq!(from_cli.driver.limits.max_body, lib.driver.limits.max_body);
        assert_eq!(from_cli.driver.limits.max_headers, lib.driver.limits.max_headers);
        assert_eq!(from_cli.driver.limits.max_request_line, lib.driver.limits.max_request_line);
        assert_eq!(from_cli.driver.header_timeout, lib.driver.header_timeout);
        assert_eq!(from_cli.driver.keep_alive, lib.driver.keep_alive);
        assert_eq!(from_cli.driver.body_timeout, lib.driver.body_timeout);
        assert_eq!(from_cli.driver.body_min_rate, lib.driver.body_min_rate);
        assert_eq!(from_cli.driver.limit_exempt_paths, lib.driver.limit_exempt_paths);
        assert_eq!(from_cli.driver.forwarded, lib.driver.forwarded);
        assert_eq!(from_cli.driver.proxy_allow_from, lib.driver.proxy_allow_from);
        assert_eq!(from_cli.driver.write_timeout, lib.driver.write_timeout);
        assert_eq!(from_cli.driver.ws.max_message, lib.driver.ws.max_message);
        assert_eq!(from_cli.driver.ws.close_timeout, lib.driver.ws.close_timeout);
        assert_eq!(from_cli.driver.ws.ping_interval, lib.driver.ws.ping_interval);
        assert_eq!(from_cli.driver.ws.ping_timeout, lib.driver.ws.ping_timeout);
        assert_eq!(from_cli.driver.ws.origins, lib.driver.ws.origins);
        assert_eq!(from_cli.access_log_buffer, lib.access_log_buffer);
    }

    #[test]
    fn ws_origins_are_checked() {
        let cli =
            Cli::try_parse_from(["percore", "--ws-origins", "https://a.example, http://b.example:8080"])
                .unwrap();
        assert_eq!(cli.server_config().driver.ws.origins, ["https://a.example", "http://b.example:8080"]);
        assert!(Cli::try_parse_from(["percore", "--ws-origins", "a.example"]).is_err());
    }
}
