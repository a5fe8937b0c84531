//! tokio, in two shapes:
//!
//! - [`Tokio`]: the same thread-per-core design on epoll. Each executor runs a
//!   current-thread runtime with a `LocalSet` (handlers need not be `Send`), pinned, with its
//!   own SO_REUSEPORT listener, exactly like the io_uring executors: the difference users
//!   measure is the IO model, not the architecture.
//! - [`TokioMt`]: the shape of the ordinary tokio deployment, for comparison: one
//!   multi-thread runtime for the whole process (one epoll instance and one timer wheel,
//!   driven by its worker pool) and one listening socket that every executor accepts from.
//!   Not work stealing: handlers are not `Send`, so a connection stays on the executor
//!   thread that accepted it (in a `LocalSet` entered into the shared runtime), and its
//!   socket events arrive through the shared runtime's workers, one hop more than a task
//!   woken where the event was read. Every executor's IO and timers depend on those
//!   workers: a handler that blocks them (e.g. blocking work in `tokio::spawn`) stalls all
//!   executors.

use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{shutdown, Listener, Runtime};
use crate::io::{first_of, Either, ReadHalf, Timer, Transport, WriteHalf};
use crate::peer::Peer;

/// The tokio runtime, one current-thread runtime per executor.
pub struct Tokio;

impl Timer for Tokio {
    type Sleep = tokio::time::Sleep;

    fn sleep(duration: Duration) -> tokio::time::Sleep {
        tokio::time::sleep(duration)
    }

    fn rearm(sleep: Pin<&mut tokio::time::Sleep>, deadline: std::time::Instant) {
        sleep.reset(deadline.into());
    }
}

fn boxed_sleep(duration: Duration) -> Pin<Box<dyn Future<Output = ()>>> {
    Box::pin(tokio::time::sleep(duration))
}

impl Runtime for Tokio {
    const NAME: &'static str = "tokio";
    type Io = TokioStream;
    type Listener = TokioListener;
    type UnixListener = TokioUnixListener;

    fn block_on<F, Fut>(main: F) -> io::Result<Fut::Output>
    where
        F: FnOnce(&'static str) -> Fut + Send,
        Fut: Future,
        Fut::Output: Send,
    {
        crate::time::install(boxed_sleep);
        let rt = tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build()?;
        let local = tokio::task::LocalSet::new();
        Ok(local.block_on(&rt, main("epoll")))
    }

    fn listener(listener: std::net::TcpListener) -> io::Result<TokioListener> {
        listener.set_nonblocking(true)?;
        let fd = listener.as_raw_fd();
        Ok(TokioListener { inner: tokio::net::TcpListener::from_std(listener)?, fd })
    }

    fn unix_listener(listener: std::os::unix::net::UnixListener) -> io::Result<TokioUnixListener> {
        listener.set_nonblocking(true)?;
        let fd = listener.as_raw_fd();
        // SAFETY: the listener is owned by the AsyncFd, so its descriptor stays open and the
        // same for the AsyncFd's whole life.
        let inner = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(listener, tokio::io::Interest::READABLE)
        }
        .map_err(io::Error::from)?;
        Ok(TokioUnixListener { inner, fd })
    }

    fn spawn<F: Future<Output = ()> + 'static>(task: F) {
        drop(tokio::task::spawn_local(task));
    }
}

/// The shape of the ordinary tokio deployment (without work stealing): every executor's
/// tasks run on the executor's own thread, while the process-wide multi-thread runtime's
/// workers drive the sockets and timers.
pub struct TokioMt;

/// The one multi-thread runtime of the process (built by [`prepare_shared`]).
static SHARED: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

/// Build the process-wide multi-thread runtime with `workers` worker threads, confined to
/// `cores` (empty: wherever the process may run), once: a later server in the same process
/// (tests, embedders) shares the first one's.
pub fn prepare_shared(workers: usize, cores: Vec<usize>) -> io::Result<&'static tokio::runtime::Runtime> {
    if let Some(rt) = SHARED.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .thread_name("percore-tokio-mt")
        // Workers move freely between the executors' cores, as an ordinary tokio server's
        // do between the process's CPUs.
        .on_thread_start(move || {
            if !cores.is_empty() {
                crate::cpus::confine_current_thread(&cores);
            }
        })
        .enable_io()
        .enable_time()
        .build()?;
    // Lost race: another server built it first; this one is dropped unused.
    Ok(SHARED.get_or_init(|| rt))
}

impl Timer for TokioMt {
    type Sleep = tokio::time::Sleep;

    fn sleep(duration: Duration) -> tokio::time::Sleep {
        tokio::time::sleep(duration)
    }

    fn rearm(sleep: Pin<&mut tokio::time::Sleep>, deadline: std::time::Instant) {
        sleep.reset(deadline.into());
    }
}

impl Runtime for TokioMt {
    const NAME: &'static str = "tokio-mt";
    const SHARED_LISTENER: bool = true;
    type Io = TokioStream;
    type Listener = TokioListener;
    type UnixListener = TokioUnixListener;

    fn block_on<F, Fut>(main: F) -> io::Result<Fut::Output>
    where
        F: FnOnce(&'static str) -> Fut + Send,
        Fut: Future,
        Fut::Output: Send,
    {
        let workers = std::thread::available_parallelism().map_or(1, usize::from);
        let rt = prepare_shared(workers, Vec::new())?;
        crate::time::install(boxed_sleep);
        let local = tokio::task::LocalSet::new();
        Ok(rt.handle().block_on(local.run_until(main("epoll"))))
    }

    fn listener(listener: std::net::TcpListener) -> io::Result<TokioListener> {
        Tokio::listener(listener)
    }

    fn unix_listener(listener: std::os::unix::net::UnixListener) -> io::Result<TokioUnixListener> {
        Tokio::unix_listener(listener)
    }

    fn spawn<F: Future<Output = ()> + 'static>(task: F) {
        Tokio::spawn(task)
    }
}

/// A listening socket; tokio waits for readiness and accepts in user space, so a blocked
/// executor never takes a connection it cannot serve.
pub struct TokioListener {
    inner: tokio::net::TcpListener,
    fd: RawFd,
}

impl Listener for TokioListener {
    type Io = TokioStream;
    type Stream = std::net::TcpStream;

    async fn accept(&self) -> io::Result<(TokioStream, Peer)> {
        let (stream, peer) = self.inner.accept().await?;
        stream.set_nodelay(true)?;
        Ok((TokioStream(stream), Peer::Tcp(peer)))
    }

    fn fd(&self) -> RawFd {
        self.fd
    }

    fn adopt(stream: std::net::TcpStream) -> io::Result<TokioStream> {
        stream.set_nonblocking(true)?;
        // Responses are written whole; Nagle would only delay them.
        stream.set_nodelay(true)?;
        Ok(TokioStream(tokio::net::TcpStream::from_std(stream)?))
    }
}

/// The Unix socket every executor accepts from (readiness, then accept in user space).
///
/// Not `tokio::net::UnixListener`: the executor that stops first shuts the shared socket
/// down for all (`Listener::stop_listening`), after which accept(2) answers EAGAIN for ever
/// while epoll reports the socket read-closed, a readiness tokio never clears. Its
/// `accept` retries inside one poll until accept(2) succeeds, so an executor still waiting
/// there would spin and never see its own drain (a server that never exits on SIGTERM).
/// Here a read-closed socket with nothing to accept is an error, and the accept loop backs
/// off until the drain ends it.
pub struct TokioUnixListener {
    inner: tokio::io::unix::AsyncFd<std::os::unix::net::UnixListener>,
    fd: RawFd,
}

impl Listener for TokioUnixListener {
    type Io = TokioStream<tokio::net::UnixStream>;
    type Stream = std::os::unix::net::UnixStream;

    async fn accept(&self) -> io::Result<(Self::Io, Peer)> {
        loop {
            let mut ready = self.inner.readable().await?;
            // (Read before `try_io`, which forgets the event when it clears it.)
            let shut_down = ready.ready().is_read_closed();
            match ready.try_io(|listener| listener.get_ref().accept()) {
                Ok(accepted) => {
                    let (stream, _unnamed) = accepted?;
                    return Ok((Self::adopt(stream)?, Peer::Unix));
                }
                Err(_would_block) if shut_down => {
                    return Err(super::shut_down());
                }
                // Readiness cleared; wait for the next connection.
                Err(_would_block) => {}
            }
        }
    }

    fn fd(&self) -> RawFd {
        self.fd
    }

    fn adopt(stream: std::os::unix::net::UnixStream) -> io::Result<Self::Io> {
        stream.set_nonblocking(true)?;
        Ok(TokioStream(tokio::net::UnixStream::from_std(stream)?))
    }
}

/// A connection: TCP, or a Unix socket's.
pub struct TokioStream<S = tokio::net::TcpStream>(S);

impl<S> Transport for TokioStream<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + AsRawFd + TokioSplit + 'static,
{
    type ReadHalf = TokioRead<S>;
    type WriteHalf = TokioWrite<S>;

    fn split(self) -> (TokioRead<S>, TokioWrite<S>) {
        let fd = self.0.as_raw_fd();
        let (read, write) = self.0.into_halves();
        (TokioRead(read), TokioWrite(write, fd))
    }

    async fn read(&mut self, mut buf: BytesMut) -> (io::Result<usize>, BytesMut) {
        // Readiness-based: a dropped read loses nothing, the bytes stay in the socket.
        let result = self.0.read_buf(&mut buf).await;
        (result, buf)
    }

    async fn read_unless<St: Future>(
        &mut self,
        mut buf: BytesMut,
        stop: St,
    ) -> (Option<io::Result<usize>>, BytesMut) {
        // A read that has not completed has taken nothing from the socket: dropping it is
        // calling it off.
        let result = match first_of(self.0.read_buf(&mut buf), stop).await {
            Either::Left(result) => Some(result),
            Either::Right(_) => None,
        };
        (result, buf)
    }

    fn readable(&mut self) -> impl Future<Output = io::Result<()>> {
        self.0.read_ready()
    }

    async fn write_all(&mut self, buf: BytesMut) -> (io::Result<()>, BytesMut) {
        let result = self.0.write_all(&buf).await;
        (result, buf)
    }

    async fn write_bytes(&mut self, buf: Bytes) -> io::Result<()> {
        self.0.write_all(&buf).await
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        shutdown(self.0.as_raw_fd(), libc::SHUT_WR)
    }
}

/// The owned halves of a tokio stream (TCP and Unix sockets each have their own types), and
/// its readiness wait.
pub trait TokioSplit: Sized {
    type Read: tokio::io::AsyncRead + Unpin + 'static;
    type Write: tokio::io::AsyncWrite + Unpin + 'static;
    fn into_halves(self) -> (Self::Read, Self::Write);
    /// Wait until a read would find bytes, the end of the stream or an error.
    fn read_ready(&self) -> impl Future<Output = io::Result<()>>;
    /// The same for the read half.
    fn half_ready(read: &Self::Read) -> impl Future<Output = io::Result<()>>;
}

/// The body of `read_ready` for a tokio socket type (TCP and Unix streams have the same
/// inherent methods, and no trait in common for them).
///
/// tokio's `readable` completes on readiness it has cached, which only a read that finds
/// nothing clears: after a read that took everything there was, it completes at once. A
/// caller that waits for readiness so as not to hold a buffer meanwhile (a parked connection,
/// a quiet WebSocket) would then read with a buffer and wait holding it. So the readiness is
/// checked with a one-byte `MSG_PEEK`, which clears it when there is nothing (`try_io`).
macro_rules! peeked_ready {
    ($stream:expr) => {{
        let stream = $stream;
        async move {
            loop {
                stream.readable().await?;
                match stream.try_io(tokio::io::Interest::READABLE, || peek(stream.as_raw_fd())) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    // Bytes, the end of the stream, or an error the read will report.
                    _ => return Ok(()),
                }
            }
        }
    }};
}

/// One byte peeked without waiting: `WouldBlock` when there is none yet.
fn peek(fd: RawFd) -> io::Result<()> {
    let mut byte = 0u8;
    // SAFETY: a one-byte receive into a local, with flags that neither wait nor consume.
    let n = unsafe { libc::recv(fd, (&mut byte as *mut u8).cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl TokioSplit for tokio::net::TcpStream {
    type Read = tokio::net::tcp::OwnedReadHalf;
    type Write = tokio::net::tcp::OwnedWriteHalf;
    fn into_halves(self) -> (Self::Read, Self::Write) {
        self.into_split()
    }
    fn read_ready(&self) -> impl Future<Output = io::Result<()>> {
        peeked_ready!(self)
    }
    fn half_ready(read: &Self::Read) -> impl Future<Output = io::Result<()>> {
        peeked_ready!(read.as_ref())
    }
}

impl TokioSplit for tokio::net::UnixStream {
    type Read = tokio::net::unix::OwnedReadHalf;
    type Write = tokio::net::unix::OwnedWriteHalf;
    fn into_halves(self) -> (Self::Read, Self::Write) {
        self.into_split()
    }
    fn read_ready(&self) -> impl Future<Output = io::Result<()>> {
        peeked_ready!(self)
    }
    fn half_ready(read: &Self::Read) -> impl Future<Output = io::Result<()>> {
        peeked_ready!(read.as_ref())
    }
}

pub struct TokioRead<S: TokioSplit = tokio::net::TcpStream>(S::Read);

impl<S: TokioSplit + 'static> ReadHalf for TokioRead<S> {
    async fn read(&mut self, mut buf: BytesMut) -> (io::Result<usize>, BytesMut) {
        let result = self.0.read_buf(&mut buf).await;
        (result, buf)
    }

    fn readable(&mut self) -> impl Future<Output = io::Result<()>> {
        S::half_ready(&self.0)
    }
}

/// The write half, and the socket's descriptor for `shutdown`.
pub struct TokioWrite<S: TokioSplit = tokio::net::TcpStream>(S::Write, RawFd);

impl<S: TokioSplit + 'static> WriteHalf for TokioWrite<S> {
    async fn write_all(&mut self, buf: BytesMut) -> (io::Result<()>, BytesMut) {
        let result = self.0.write_all(&buf).await;
        (result, buf)
    }

    /// Where they are, with vectored writes.
    async fn write_parts(&mut self, parts: Vec<Bytes>) -> io::Result<()> {
        let total: usize = parts.iter().map(Bytes::len).sum();
        let mut sent = 0;
        while sent < total {
            let mut slices = [io::IoSlice::new(&[]); 64];
            let mut count = 0;
            for (slot, rest) in slices.iter_mut().zip(crate::io::unsent(&parts, sent)) {
                *slot = io::IoSlice::new(rest);
                count += 1;
            }
            match self.0.write_vectored(&slices[..count]).await? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => sent += n,
            }
        }
        Ok(())
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        shutdown(self.1, libc::SHUT_WR)
    }
}

/// The tokio runtime that executors of the other runtimes (monoio, glommio) enter, so that a
/// handler's tokio-bound calls (`tokio::time::sleep`, `tokio::net`, a reqwest or sqlx
/// client, tower-http's timeouts) work there instead of panicking on every request. Its one
/// worker thread drives those timers and sockets and wakes the executor's task when they are
/// ready: a cross-thread wake-up per event, which is the cost of running tokio-bound code on
/// an io_uring executor (`--runtime tokio` has none). `tokio::task::spawn_local` still needs
/// `--runtime tokio`.
static OUTBOUND: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

/// Enter the outbound tokio runtime on this thread for as long as the guard lives (built on
/// first use).
pub fn enter_outbound_context() -> io::Result<tokio::runtime::EnterGuard<'static>> {
    let rt = match OUTBOUND.get() {
        Some(rt) => rt,
        None => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("percore-tokio-io")
                .enable_io()
                .enable_time()
                .build()?;
            // Lost race: another executor built it first; this one is dropped unused.
            OUTBOUND.get_or_init(|| rt)
        }
    };
    Ok(rt.enter())
}
