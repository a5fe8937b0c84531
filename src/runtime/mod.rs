//! Runtime shims: the only place that names a runtime crate. Each one supplies a listener,
//! the owned-buffer [`Transport`], timers and task spawning; everything else is generic.

use std::future::Future;
use std::io;

use crate::app::Handler;
use crate::executor::{self, ExecutorConfig, ExecutorInfo};
use crate::io::{Timer, Transport};
use crate::peer::Peer;

#[cfg(any(feature = "monoio", feature = "glommio"))]
mod copy_now;
#[cfg(feature = "glommio")]
pub mod glommio;
#[cfg(feature = "monoio")]
pub mod monoio;
#[cfg(feature = "monoio")]
mod monoio_ready;
#[cfg(feature = "tokio")]
pub mod tokio;

#[cfg(not(any(feature = "monoio", feature = "tokio", feature = "glommio")))]
compile_error!("percore needs at least one runtime feature: monoio, tokio or glommio");

/// `--runtime`: which runtime the executors run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeKind {
    /// monoio: io_uring (or its epoll driver where io_uring is unavailable).
    Monoio,
    /// tokio: epoll, the same thread-per-core design.
    Tokio,
    /// tokio's ordinary deployment: one multi-thread runtime and one listener.
    TokioMt,
    /// glommio: io_uring, Seastar-style.
    Glommio,
}

impl RuntimeKind {
    /// Parse a `--runtime` value; runtimes not compiled in are an error naming the feature.
    pub fn parse(s: &str) -> Result<RuntimeKind, String> {
        match s {
            "monoio" if cfg!(feature = "monoio") => Ok(RuntimeKind::Monoio),
            "tokio" if cfg!(feature = "tokio") => Ok(RuntimeKind::Tokio),
            "tokio-mt" if cfg!(feature = "tokio") => Ok(RuntimeKind::TokioMt),
            "glommio" if cfg!(feature = "glommio") => Ok(RuntimeKind::Glommio),
            "monoio" | "glommio" => Err(format!("runtime {s} is not compiled in (cargo feature `{s}`)")),
            "tokio" | "tokio-mt" => Err(format!("runtime {s} is not compiled in (cargo feature `tokio`)")),
            _ => Err(format!("unknown runtime {s:?} (monoio, glommio, tokio or tokio-mt)")),
        }
    }

    /// Whether the executors share one listening socket per address (the ordinary
    /// multi-thread deployment) instead of one SO_REUSEPORT socket each.
    pub fn shares_listener(self) -> bool {
        self == RuntimeKind::TokioMt
    }

    /// The `--runtime` spelling (also in logs and `/metrics`).
    pub fn name(self) -> &'static str {
        match self {
            RuntimeKind::Monoio => "monoio",
            RuntimeKind::Tokio => "tokio",
            RuntimeKind::TokioMt => "tokio-mt",
            RuntimeKind::Glommio => "glommio",
        }
    }
}

impl Default for RuntimeKind {
    fn default() -> Self {
        if cfg!(feature = "monoio") {
            RuntimeKind::Monoio
        } else {
            RuntimeKind::Tokio
        }
    }
}

/// `--io-backend`: io_uring or epoll.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoBackend {
    /// io_uring when a ring can be built, else epoll with a warning that says why.
    #[default]
    Auto,
    /// io_uring or fail to start.
    Uring,
    Epoll,
}

impl IoBackend {
    pub fn parse(s: &str) -> Result<IoBackend, String> {
        match s {
            "auto" => Ok(IoBackend::Auto),
            "uring" | "io_uring" => Ok(IoBackend::Uring),
            "epoll" => Ok(IoBackend::Epoll),
            _ => Err(format!("unknown IO backend {s:?} (auto, uring or epoll)")),
        }
    }
}

/// Decide the IO driver once for every executor, before any starts: for io_uring, by
/// building a ring for real (an opcode probe can pass where io_uring_setup then fails with
/// EPERM from seccomp or ENOMEM from the memlock limit). Returns the runtime to run (glommio
/// without io_uring falls back to tokio, an epoll runtime) and the driver's name.
///
/// `cores` is each executor's core (`None`: unpinned).
pub fn prepare(
    kind: RuntimeKind,
    backend: IoBackend,
    cores: &[Option<usize>],
) -> Result<(RuntimeKind, &'static str), String> {
    let executors = cores.len();
    #[cfg(feature = "glommio")]
    if kind == RuntimeKind::Glommio {
        return prepare_glommio(backend, executors);
    }
    prepare_driver(kind, backend, cores).map(|driver| (kind, driver))
}

/// glommio is io_uring only: where it cannot run, `auto` (and `epoll`) move to tokio.
#[cfg(feature = "glommio")]
fn prepare_glommio(backend: IoBackend, executors: usize) -> Result<(RuntimeKind, &'static str), String> {
    let problem = if backend == IoBackend::Epoll {
        Some("--io-backend epoll asked for".to_string())
    } else {
        glommio_problem(executors)
    };
    match problem {
        None => Ok((RuntimeKind::Glommio, "io_uring")),
        Some(cause) if backend == IoBackend::Uring => Err(format!("--io-backend uring: {cause}")),
        #[cfg(feature = "tokio")]
        Some(cause) => {
            tracing::warn!("glommio cannot run here, running on tokio (epoll) instead: {cause}");
            Ok((RuntimeKind::Tokio, "epoll"))
        }
        #[cfg(not(feature = "tokio"))]
        Some(cause) => Err(format!("glommio cannot run here and tokio is not compiled in: {cause}")),
    }
}

/// Why glommio cannot serve `executors` executors here, if it cannot.
#[cfg(feature = "glommio")]
fn glommio_problem(executors: usize) -> Option<String> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit into a local struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } == 0 && lim.rlim_cur != libc::RLIM_INFINITY
    {
        let need = glommio::MEMLOCK_PER_EXECUTOR * executors as u64;
        if lim.rlim_cur < need {
            return Some(format!(
                "RLIMIT_MEMLOCK is {} KiB but {executors} glommio executors need about {} KiB of locked memory; \
                 raise it (systemd LimitMEMLOCK=infinity, docker --ulimit memlock=-1, ulimit -l unlimited)",
                lim.rlim_cur / 1024,
                need / 1024
            ));
        }
    }
    glommio::probe()
        .err()
        .map(|e| format!("cannot build a glommio executor: {e} (is io_uring blocked by seccomp?)"))
}

fn prepare_driver(
    kind: RuntimeKind,
    backend: IoBackend,
    cores: &[Option<usize>],
) -> Result<&'static str, String> {
    let executors = cores.len();
    match kind {
        #[cfg(feature = "monoio")]
        RuntimeKind::Monoio => monoio::prepare(backend, executors),
        #[cfg(feature = "tokio")]
        RuntimeKind::Tokio | RuntimeKind::TokioMt if backend == IoBackend::Uring => {
            Err(format!("--io-backend uring needs the monoio runtime ({} runs on epoll)", kind.name()))
        }
        #[cfg(feature = "tokio")]
        RuntimeKind::Tokio => Ok("epoll"),
        #[cfg(feature = "tokio")]
        RuntimeKind::TokioMt => {
            // One worker per executor (the size `--workers` asks for), on the executors' cores.
            let mut set: Vec<usize> = cores.iter().flatten().copied().collect();
            set.sort_unstable();
            set.dedup();
            tokio::prepare_shared(executors, set)
                .map_err(|e| format!("cannot build the tokio multi-thread runtime: {e}"))?;
            Ok("epoll")
        }
        #[allow(unreachable_patterns)]
        _ => Err(format!("runtime {} is not compiled in", kind.name())),
    }
}

/// Run an executor of `kind` on the current thread (see [`executor::run`]).
pub fn run_executor<H: Handler>(
    kind: RuntimeKind,
    cfg: ExecutorConfig,
    make_handler: &(dyn Fn(&ExecutorInfo) -> H + Send + Sync),
    started: impl FnOnce(Result<&'static str, String>) + Send,
) {
    match kind {
        #[cfg(feature = "monoio")]
        RuntimeKind::Monoio => executor::run::<monoio::Monoio, H>(cfg, make_handler, started),
        #[cfg(feature = "tokio")]
        RuntimeKind::Tokio => executor::run::<tokio::Tokio, H>(cfg, make_handler, started),
        #[cfg(feature = "tokio")]
        RuntimeKind::TokioMt => executor::run::<tokio::TokioMt, H>(cfg, make_handler, started),
        #[cfg(feature = "glommio")]
        RuntimeKind::Glommio => executor::run::<glommio::Glommio, H>(cfg, make_handler, started),
        #[allow(unreachable_patterns)]
        _ => started(Err(format!("runtime {} is not compiled in", kind.name()))),
    }
}

/// A connected socket as accept4(2) returns it, before a runtime adopts it: TCP or Unix.
pub trait Accepted: Sized {
    /// One non-blocking accept4(2) on the listening descriptor `fd`: `None` when its queue
    /// is empty.
    fn accept_now(fd: std::os::fd::RawFd) -> io::Result<Option<(Self, Peer)>>;
}

impl Accepted for std::net::TcpStream {
    fn accept_now(fd: std::os::fd::RawFd) -> io::Result<Option<(Self, Peer)>> {
        use std::os::fd::FromRawFd;
        // SAFETY: `fd` is an open listening descriptor owned elsewhere; ManuallyDrop keeps
        // this borrowed view from closing it.
        let listener = std::mem::ManuallyDrop::new(unsafe { std::net::TcpListener::from_raw_fd(fd) });
        match listener.accept() {
            Ok((stream, addr)) => Ok(Some((stream, Peer::Tcp(addr)))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Accepted for std::os::unix::net::UnixStream {
    fn accept_now(fd: std::os::fd::RawFd) -> io::Result<Option<(Self, Peer)>> {
        use std::os::fd::FromRawFd;
        // SAFETY: as for TCP above.
        let listener =
            std::mem::ManuallyDrop::new(unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) });
        match listener.accept() {
            Ok((stream, _unnamed)) => Ok(Some((stream, Peer::Unix))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// shutdown(2).
pub(crate) fn shutdown(fd: std::os::fd::RawFd, how: libc::c_int) -> io::Result<()> {
    // SAFETY: shutdown(2) touches no memory; a stale descriptor only makes it fail.
    if unsafe { libc::shutdown(fd, how) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// An error if the listening socket `fd` was shut down (`Listener::stop_listening`, by this
/// executor or another sharing it): it then polls as hung up for good, while a Unix socket's
/// accept(2) answers EAGAIN for good, so a wait for readiness never waits again. The accept
/// loop backs off on the error until the drain ends it.
pub(crate) fn not_shut_down(fd: std::os::fd::RawFd) -> io::Result<()> {
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: poll(2) on one pollfd on the stack, without waiting.
    let ready = unsafe { libc::poll(&mut pfd, 1, 0) };
    match ready == 1 && pfd.revents & libc::POLLHUP != 0 {
        true => Err(shut_down()),
        false => Ok(()),
    }
}

/// What an accept on a listening socket that was shut down answers.
pub(crate) fn shut_down() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the listening socket was shut down")
}

/// What an executor needs from its runtime. The runtime type is also the driver's [`Timer`].
pub trait Runtime: Timer + Sized {
    /// Shown in the startup log.
    const NAME: &'static str;
    /// Whether every executor accepts from one shared socket (tokio-mt) rather than a socket
    /// of its own slot: a draining executor then leaves the queue to the others.
    const SHARED_LISTENER: bool = false;
    type Io: Transport;
    type Listener: Listener<Io = Self::Io, Stream = std::net::TcpStream>;
    /// A Unix domain socket listener (`--bind unix:PATH`) and its connections.
    type UnixListener: Listener<Stream = std::os::unix::net::UnixStream>;

    /// Build a runtime on the current thread and run `main` on it to completion. `main` is
    /// told which IO driver the runtime got (e.g. `io_uring`, `epoll`).
    ///
    /// `main` and its output are `Send` because a runtime may run `main` on a thread of its
    /// own that it keeps for the next executor (glommio: see `glommio::pool`), while the
    /// calling thread waits; the future `main` returns is made, run and dropped there.
    fn block_on<F, Fut>(main: F) -> io::Result<Fut::Output>
    where
        F: FnOnce(&'static str) -> Fut + Send,
        Fut: Future,
        Fut::Output: Send;

    /// Adopt a bound, listening, non-blocking socket. Called inside `block_on`.
    fn listener(listener: std::net::TcpListener) -> io::Result<Self::Listener>;

    /// Adopt a listening Unix socket, shared by every executor. Called inside `block_on`.
    fn unix_listener(listener: std::os::unix::net::UnixListener) -> io::Result<Self::UnixListener>;

    /// Adopt a connection accepted elsewhere (handed over by the supervisor).
    fn adopt_stream(stream: std::net::TcpStream) -> io::Result<Self::Io> {
        Self::Listener::adopt(stream)
    }

    /// Run `task` on the current executor, detached.
    fn spawn<F: Future<Output = ()> + 'static>(task: F);
}

/// A listening socket (TCP or Unix).
pub trait Listener: 'static {
    type Io: Transport;
    /// What accept4(2) gives on this socket.
    type Stream: Accepted;
    /// The next connection (TCP with TCP_NODELAY set) and its peer.
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Io, Peer)>>;

    /// The listening descriptor.
    fn fd(&self) -> std::os::fd::RawFd;

    /// Take over a connection accepted with accept4(2) (non-blocking mode, TCP_NODELAY and
    /// registration as this runtime needs them).
    fn adopt(stream: Self::Stream) -> io::Result<Self::Io>;

    /// A connection already waiting in the queue, without waiting (`None`: queue empty).
    /// Used when draining, to serve what was queued before letting go of the socket.
    fn try_accept(&self) -> io::Result<Option<(Self::Io, Peer)>> {
        let Some((stream, peer)) = Self::Stream::accept_now(self.fd())? else {
            return Ok(None);
        };
        Ok(Some((Self::adopt(stream)?, peer)))
    }

    /// Stop listening now, for every handle on the socket (shutdown(2) on a listener
    /// unhashes it at once). Closing is not enough: other descriptors of the same socket
    /// would keep it listening, and an asynchronous close leaves a window in which the
    /// kernel completes handshakes nobody will accept.
    fn stop_listening(&self) {
        // Failing only leaves the socket to close with its last descriptor.
        let _ = shutdown(self.fd(), libc::SHUT_RDWR);
    }
}
