//! Runtime shims: the only place that names a runtime crate. Each one supplies a listener,
//! the owned-buffer [`Transport`], timers and task spawning; everything else is generic.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use crate::io::{Timer, Transport};

pub mod monoio;

/// What an executor needs from its runtime. The runtime type is also the driver's [`Timer`].
pub trait Runtime: Timer + Sized {
    /// Shown in the startup log.
    const NAME: &'static str;
    type Io: Transport;
    type Listener: Listener<Io = Self::Io>;

    /// Build a runtime on the current thread and run `main` on it to completion. `main` is
    /// told which IO driver the runtime got (e.g. `io_uring`, `epoll`).
    fn block_on<F, Fut>(main: F) -> io::Result<Fut::Output>
    where
        F: FnOnce(&'static str) -> Fut,
        Fut: Future;

    /// Adopt a bound, listening, non-blocking socket. Called inside `block_on`.
    fn listener(listener: std::net::TcpListener) -> io::Result<Self::Listener>;

    /// Adopt a connection accepted elsewhere (handed over by the supervisor).
    fn adopt_stream(stream: std::net::TcpStream) -> io::Result<Self::Io>;

    /// Run `task` on the current executor, detached.
    fn spawn<F: Future<Output = ()> + 'static>(task: F);
}

/// A listening socket.
pub trait Listener: 'static {
    type Io;
    /// The next connection (with TCP_NODELAY set) and its peer address.
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Io, SocketAddr)>>;

    /// A connection already waiting in the queue, without waiting (`None`: queue empty).
    /// Used when draining, to serve what was queued before letting go of the socket.
    fn try_accept(&self) -> io::Result<Option<(Self::Io, SocketAddr)>>;

    /// Stop listening now, for every handle on the socket (shutdown(2) on a listener
    /// unhashes it at once). Closing is not enough: other descriptors of the same socket
    /// would keep it listening, and an asynchronous close leaves a window in which the
    /// kernel completes handshakes nobody will accept.
    fn stop_listening(&self);
}
