//! glommio: io_uring, the Seastar-style thread-per-core runtime. Each executor runs on one
//! `LocalExecutor`, with its own SO_REUSEPORT listener. The `LocalExecutor`s are pooled and
//! reused from one executor to the next (see [`pool`]): glommio 0.9 leaks a descriptor for
//! every one it drops.
//!
//! glommio's own accept is an io_uring accept operation: the kernel would take a connection
//! off the queue for an executor whose thread may be blocked, and a cancelled accept could
//! strand the connection it took. It offers no readiness wait on a listener either, so each
//! listener gets a small watcher thread (see [`AcceptWatch`]) that waits for the listener
//! to become readable with epoll and says so over a socket pair, which glommio can wait on;
//! the executor then accepts with accept4(2) itself, like the other runtimes. A blocked
//! executor therefore leaves its queue to the supervisor to hand over.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};

use super::{shutdown, Listener, Runtime};
use crate::io::{first_of, Either, ReadHalf, Timer, Transport, WriteHalf};
use crate::peer::Peer;

mod pool;

/// Memory glommio registers per executor for its own buffered file IO (percore uses none);
/// kept small because registered buffers count against RLIMIT_MEMLOCK.
pub const IO_MEMORY: usize = 512 * 1024;
/// Locked memory one glommio executor needs: its registered buffers and three rings.
pub const MEMLOCK_PER_EXECUTOR: u64 = IO_MEMORY as u64 + 3 * 256 * 1024;

/// The glommio runtime.
pub struct Glommio;

impl Timer for Glommio {
    // Re-armed by building a new one (the default): glommio's timers are small, behind an
    // `Rc`, so there is no large copy to save.
    type Sleep = GlommioSleep;

    fn sleep(duration: Duration) -> GlommioSleep {
        GlommioSleep(glommio::timer::Timer::new(duration))
    }
}

/// glommio's timer as a sleep (it ends with the time it fired at).
pub struct GlommioSleep(glommio::timer::Timer);

impl Future for GlommioSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(drop)
    }
}

fn boxed_sleep(duration: Duration) -> Pin<Box<dyn Future<Output = ()>>> {
    Box::pin(glommio::timer::sleep(duration))
}

fn to_io<E: std::fmt::Display>(e: E) -> io::Error {
    io::Error::other(e.to_string())
}

/// Learn whether glommio can run here (io_uring allowed, enough locked memory) by running
/// nothing on a pooled executor: the one built for it serves the first executor after.
pub fn probe() -> io::Result<()> {
    pool::run(|_ex| ())
}

/// Build the glommio executor a pool worker keeps for its whole life.
fn make_executor() -> io::Result<LocalExecutor> {
    // Unbound: each job runs with the affinity of the thread that handed it over.
    LocalExecutorBuilder::new(Placement::Unbound).io_memory(IO_MEMORY).make().map_err(to_io)
}

impl Runtime for Glommio {
    const NAME: &'static str = "glommio";
    type Io = GlommioStream;
    type Listener = GlommioListener;
    type UnixListener = GlommioListener<std::os::unix::net::UnixListener>;

    fn block_on<F, Fut>(main: F) -> io::Result<Fut::Output>
    where
        F: FnOnce(&'static str) -> Fut + Send,
        Fut: Future,
        Fut::Output: Send,
    {
        // Not an executor of its own: glommio never frees one (see `pool`). The worker's
        // thread gets what this thread would have: its timer and the tokio context.
        pool::run(|ex| {
            crate::time::install(boxed_sleep);
            #[cfg(feature = "tokio")]
            let _tokio = super::tokio::enter_outbound_context()?;
            Ok(ex.run(main("io_uring")))
        })?
    }

    fn listener(listener: std::net::TcpListener) -> io::Result<GlommioListener> {
        listener.set_nonblocking(true)?;
        GlommioListener::watching(listener)
    }

    fn unix_listener(
        listener: std::os::unix::net::UnixListener,
    ) -> io::Result<GlommioListener<std::os::unix::net::UnixListener>> {
        listener.set_nonblocking(true)?;
        GlommioListener::watching(listener)
    }

    fn spawn<F: Future<Output = ()> + 'static>(task: F) {
        // Counted while it exists, so the pool knows the executor is clean before reuse.
        let live = pool::LiveTask::new();
        drop(
            glommio::spawn_local(async move {
                let _live = live;
                task.await
            })
            .detach(),
        );
    }
}

impl<L: AsRawFd> GlommioListener<L> {
    /// Watch `listener` for readiness on a thread of its own (see [`AcceptWatch`]).
    fn watching(listener: L) -> io::Result<GlommioListener<L>> {
        let watch = match AcceptWatch::start(listener.as_raw_fd()) {
            Ok((watch, wake)) => Some((watch, RefCell::new(wake))),
            Err(e) => {
                // Out of descriptors or threads: an executor must still start (a crashed one
                // is being replaced), so it polls its queue instead of failing.
                tracing::warn!(error = %e, "cannot start the accept watcher; polling the listener instead");
                None
            }
        };
        Ok(GlommioListener { watch, socket: listener })
    }
}

/// How often a listener without a watcher looks at its queue.
const ACCEPT_POLL: Duration = Duration::from_millis(5);

/// A listening socket (TCP, or the Unix socket every executor shares).
pub struct GlommioListener<L = std::net::TcpListener> {
    /// Declared first so it is dropped first: the watcher thread is stopped (and its end of
    /// the pair closed) while the socket it watches is still open. `None`: polling instead.
    /// The reader is readable when the watcher saw the listener readable (a byte a wake-up).
    watch: Option<(AcceptWatch, RefCell<glommio::net::UnixStream>)>,
    socket: L,
}

/// What differs between a TCP and a Unix listener: how an accepted socket becomes glommio's.
pub trait GlommioFamily: AsRawFd + 'static {
    type Stream: crate::runtime::Accepted + IntoRawFd;
    type Glommio: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin + FromRawFd + 'static;
    /// Socket options the connection needs before glommio takes it.
    fn prepare(stream: &Self::Stream) -> io::Result<()>;
}

impl GlommioFamily for std::net::TcpListener {
    type Stream = std::net::TcpStream;
    type Glommio = glommio::net::TcpStream;
    fn prepare(stream: &std::net::TcpStream) -> io::Result<()> {
        stream.set_nodelay(true)?;
        // glommio drives sockets through io_uring; they stay blocking like its own.
        stream.set_nonblocking(false)
    }
}

impl GlommioFamily for std::os::unix::net::UnixListener {
    type Stream = std::os::unix::net::UnixStream;
    type Glommio = glommio::net::UnixStream;
    fn prepare(stream: &std::os::unix::net::UnixStream) -> io::Result<()> {
        stream.set_nonblocking(false)
    }
}

impl<L: GlommioFamily> Listener for GlommioListener<L> {
    type Io = GlommioStream<L::Glommio>;
    type Stream = L::Stream;

    // The wake-up reader's borrow is held across its read: one accept loop per listener runs
    // at a time (a second would get an error, not a panic).
    #[allow(clippy::await_holding_refcell_ref)]
    async fn accept(&self) -> io::Result<(Self::Io, Peer)> {
        let mut woken = false;
        loop {
            if let Some(pair) = self.try_accept()? {
                return Ok(pair);
            }
            // Readable with nothing to accept: shut down? (See `not_shut_down`.)
            if woken {
                super::not_shut_down(self.fd())?;
            }
            woken = true;
            let Some((watch, wake)) = &self.watch else {
                glommio::timer::sleep(ACCEPT_POLL).await;
                continue;
            };
            // Queue empty: ask the watcher for the next readiness, then wait for its word.
            // (Armed after the empty accept: a connection that came in between is reported
            // at once, epoll being level-triggered.)
            watch.arm(self.socket.as_raw_fd())?;
            let mut bytes = [0u8; 64];
            // One accept loop per listener at a time, so the borrow is never contended; a
            // wake-up lost to a dropped read only costs one more empty accept.
            let mut wake = wake.try_borrow_mut().map_err(|_| io::Error::other("concurrent accept"))?;
            if wake.read(&mut bytes).await? == 0 {
                return Err(io::Error::other("the accept watcher stopped"));
            }
        }
    }

    fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    fn adopt(stream: L::Stream) -> io::Result<Self::Io> {
        L::prepare(&stream)?;
        let fd = stream.into_raw_fd();
        // SAFETY: ownership of the connected socket moves to glommio.
        Ok(GlommioStream(unsafe { L::Glommio::from_raw_fd(fd) }, fd, None))
    }
}

/// A thread that waits (epoll, one-shot) for a listener to become readable and then writes a
/// byte to a socket pair whose other end the executor reads through glommio.
struct AcceptWatch {
    epoll: OwnedFd,
    /// eventfd that tells the thread to end.
    stop: OwnedFd,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// epoll user data of the stop eventfd (the listener's is 0).
const STOP_TOKEN: u64 = 1;

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// epoll_ctl(2) for `fd` in the set `epoll`, with `events` and user data `token`.
fn epoll_ctl(epoll: RawFd, op: libc::c_int, fd: RawFd, events: libc::c_int, token: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events: events as u32, u64: token };
    // SAFETY: epoll_ctl with a valid event struct.
    cvt(unsafe { libc::epoll_ctl(epoll, op, fd, &mut ev) }).map(drop)
}

impl AcceptWatch {
    /// Start watching `listener` (disarmed until [`AcceptWatch::arm`]); returns the watch
    /// and the executor's end of the wake-up pair.
    fn start(listener: RawFd) -> io::Result<(AcceptWatch, glommio::net::UnixStream)> {
        // SAFETY: plain syscalls creating new descriptors, owned right away.
        let epoll = unsafe { OwnedFd::from_raw_fd(cvt(libc::epoll_create1(libc::EPOLL_CLOEXEC))?) };
        // SAFETY: as above.
        let stop =
            unsafe { OwnedFd::from_raw_fd(cvt(libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK))?) };
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        theirs.set_nonblocking(true)?;
        let epfd = epoll.as_raw_fd();
        // Registered disarmed (one-shot with no events) until the first arm.
        epoll_ctl(epfd, libc::EPOLL_CTL_ADD, listener, libc::EPOLLONESHOT, 0)?;
        epoll_ctl(epfd, libc::EPOLL_CTL_ADD, stop.as_raw_fd(), libc::EPOLLIN, STOP_TOKEN)?;
        let thread = std::thread::Builder::new().name("percore-accept-watch".into()).spawn(move || {
            let mut events = [libc::epoll_event { events: 0, u64: 0 }; 2];
            loop {
                // SAFETY: epoll_wait into a local array of the length given.
                let n = unsafe { libc::epoll_wait(epfd, events.as_mut_ptr(), events.len() as i32, -1) };
                if n < 0 {
                    if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                        continue;
                    }
                    return;
                }
                for ev in &events[..n as usize] {
                    if ev.u64 == STOP_TOKEN {
                        return;
                    }
                    // A full pair already holds a wake-up: nothing is lost by failing. No
                    // SIGPIPE should the executor's end be gone.
                    // SAFETY: send(2) of one byte from a local.
                    let _ = unsafe {
                        libc::send(theirs.as_raw_fd(), [1u8].as_ptr().cast(), 1, libc::MSG_NOSIGNAL)
                    };
                }
            }
        })?;
        // SAFETY: `ours` is a connected socket whose ownership moves to glommio.
        let wake = unsafe { glommio::net::UnixStream::from_raw_fd(ours.into_raw_fd()) };
        Ok((AcceptWatch { epoll, stop, thread: Some(thread) }, wake))
    }

    /// Report the listener's next readiness (once).
    fn arm(&self, listener: RawFd) -> io::Result<()> {
        epoll_ctl(
            self.epoll.as_raw_fd(),
            libc::EPOLL_CTL_MOD,
            listener,
            libc::EPOLLIN | libc::EPOLLONESHOT,
            0,
        )
    }
}

impl Drop for AcceptWatch {
    fn drop(&mut self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: write of 8 bytes to our eventfd.
        let _ = unsafe { libc::write(self.stop.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A connection: TCP, or a Unix socket's; and its descriptor (glommio's UnixStream does
/// not show it), owned by the stream.
///
/// The third field is a byte that `readable` took from the socket to learn that it was
/// readable (glommio has no readiness wait on a stream), handed out by the next read: a
/// `readable` is always followed by a read before anything else, a split included.
pub struct GlommioStream<S = glommio::net::TcpStream>(S, RawFd, Option<u8>);

impl<S> Transport for GlommioStream<S>
where
    S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin + 'static,
{
    type ReadHalf = GlommioRead<S>;
    type WriteHalf = GlommioWrite<S>;

    fn split(self) -> (GlommioRead<S>, GlommioWrite<S>) {
        let fd = self.1;
        // glommio keeps separate read and write sources, so one half's operation in flight
        // does not disturb the other's; the lock is only ever taken for one poll.
        let (read, write) = futures_lite::io::split(self.0);
        (GlommioRead(read, self.2), GlommioWrite(write, fd))
    }

    async fn read(&mut self, buf: BytesMut) -> (io::Result<usize>, BytesMut) {
        read_stashed(&mut self.0, &mut self.2, buf).await
    }

    async fn read_unless<St: Future>(
        &mut self,
        mut buf: BytesMut,
        stop: St,
    ) -> (Option<io::Result<usize>>, BytesMut) {
        if let Some(byte) = self.2.take() {
            buf.extend_from_slice(&[byte]);
            return (Some(Ok(1)), buf);
        }
        // glommio's stream read receives synchronously once its readiness poll fires: a
        // read that has not completed has taken nothing, and dropping it calls it off.
        let filled = buf.len();
        buf.resize(buf.capacity(), 0);
        let result = match first_of(self.0.read(&mut buf[filled..]), stop).await {
            Either::Left(result) => Some(result),
            Either::Right(_) => None,
        };
        let read = result.as_ref().and_then(|r| r.as_ref().ok()).copied().unwrap_or(0);
        buf.truncate(filled + read);
        (result, buf)
    }

    fn readable(&mut self) -> impl Future<Output = io::Result<()>> {
        wait_readable(&mut self.0, &mut self.2)
    }

    async fn write_all(&mut self, buf: BytesMut) -> (io::Result<()>, BytesMut) {
        let result = self.0.write_all(&buf).await;
        (result, buf)
    }

    async fn write_bytes(&mut self, buf: Bytes) -> io::Result<()> {
        self.0.write_all(&buf).await
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        shutdown(self.1, libc::SHUT_WR)
    }
}

/// The read half, and the byte a readiness wait took (as on the whole stream).
pub struct GlommioRead<S = glommio::net::TcpStream>(futures_lite::io::ReadHalf<S>, Option<u8>);

impl<S: futures_lite::AsyncRead + Unpin + 'static> ReadHalf for GlommioRead<S> {
    async fn read(&mut self, buf: BytesMut) -> (io::Result<usize>, BytesMut) {
        read_stashed(&mut self.0, &mut self.1, buf).await
    }

    fn readable(&mut self) -> impl Future<Output = io::Result<()>> {
        wait_readable(&mut self.0, &mut self.1)
    }
}

/// A read into the spare room of `buf` (a stream's or its read half's), handing out first
/// the byte a readiness wait took (`wait_readable`); the rest follows with the next read.
async fn read_stashed<R: futures_lite::AsyncRead + Unpin>(
    reader: &mut R,
    stashed: &mut Option<u8>,
    mut buf: BytesMut,
) -> (io::Result<usize>, BytesMut) {
    if let Some(byte) = stashed.take() {
        buf.extend_from_slice(&[byte]);
        return (Ok(1), buf);
    }
    // glommio reads into initialised memory: zero the spare room, read, trim.
    let filled = buf.len();
    buf.resize(buf.capacity(), 0);
    let result = reader.read(&mut buf[filled..]).await;
    buf.truncate(filled + *result.as_ref().unwrap_or(&0));
    (result, buf)
}

/// glommio's wait for readability: a one-byte read, kept in `stashed` for the next read
/// (`read_stashed`). Its wait is glommio's readiness poll, with no buffer of glommio's own
/// (a `MSG_PEEK` receive allocates one), and dropped before it completes it has taken nothing.
async fn wait_readable<R: futures_lite::AsyncRead + Unpin>(
    reader: &mut R,
    stashed: &mut Option<u8>,
) -> io::Result<()> {
    if stashed.is_some() {
        return Ok(());
    }
    let mut byte = [0u8; 1];
    if reader.read(&mut byte).await? == 1 {
        *stashed = Some(byte[0]);
    }
    Ok(())
}

/// The write half, and the socket's descriptor for `shutdown`.
pub struct GlommioWrite<S = glommio::net::TcpStream>(futures_lite::io::WriteHalf<S>, RawFd);

impl<S: futures_lite::AsyncWrite + Unpin + 'static> WriteHalf for GlommioWrite<S> {
    async fn write_all(&mut self, buf: BytesMut) -> (io::Result<()>, BytesMut) {
        let result = self.0.write_all(&buf).await;
        (result, buf)
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        shutdown(self.1, libc::SHUT_WR)
    }
}
