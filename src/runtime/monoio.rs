//! monoio: io_uring on Linux, with monoio's epoll driver when a ring cannot be built.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use monoio::buf::{IoBuf, IoBufMut, SliceMut};
use monoio::io::{
    AsyncReadRent, AsyncWriteRent, CancelableAsyncReadRent, Canceller, OwnedReadHalf, OwnedWriteHalf,
    Splitable,
};
use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder};

use super::copy_now::{self, Streak};
use super::{shutdown, IoBackend, Listener, Runtime};
use crate::io::{ReadHalf, Timer, Transport, WriteHalf};
use crate::peer::Peer;

/// The monoio runtime.
pub struct Monoio;

impl Timer for Monoio {
    type Sleep = monoio::time::Sleep;

    fn sleep(duration: Duration) -> monoio::time::Sleep {
        monoio::time::sleep(duration)
    }

    fn rearm(sleep: Pin<&mut monoio::time::Sleep>, deadline: std::time::Instant) {
        sleep.reset(deadline.into());
    }
}

fn boxed_sleep(duration: Duration) -> Pin<Box<dyn Future<Output = ()>>> {
    Box::pin(monoio::time::sleep(duration))
}

/// Whether executors build io_uring rings (decided once, by `prepare`).
static USE_URING: AtomicBool = AtomicBool::new(true);

/// Ring memory charged to RLIMIT_MEMLOCK on kernels before 5.12, per executor (a
/// 1024-entry ring: SQEs, CQEs and ring headers, rounded up).
const RING_MEMLOCK_BYTES: u64 = 256 * 1024;

/// Choose io_uring or epoll for every executor; see `runtime::prepare`.
pub fn prepare(backend: IoBackend, executors: usize) -> Result<&'static str, String> {
    let uring = match backend {
        IoBackend::Epoll => false,
        IoBackend::Uring | IoBackend::Auto => match uring_problem(executors) {
            None => true,
            Some(cause) if backend == IoBackend::Uring => return Err(format!("--io-backend uring: {cause}")),
            Some(cause) => {
                tracing::warn!("io_uring unavailable, running on epoll instead: {cause}");
                false
            }
        },
    };
    USE_URING.store(uring, Ordering::Relaxed);
    Ok(if uring { "io_uring" } else { "epoll" })
}

/// An executor's io_uring runtime, set up with `COOP_TASKRUN` where the kernel has it
/// (5.19+).
///
/// By default a completion that the kernel finishes outside the executor thread (a socket
/// became readable and the read ran in its wake-up) is handed to that thread by
/// interrupting it, as a signal would. With `COOP_TASKRUN` it is handed over when the thread
/// next enters the kernel, which monoio does on every turn of its loop, so no completion
/// waits longer than it did; the interruptions cost about a third of the CPU per keep-alive
/// request and per new connection (docs/benchmarks.md, "Fifth round"). `DEFER_TASKRUN`
/// saves more but leaves completions until the thread waits for them, and monoio's guard
/// against a task that is always ready (it submits every few rounds without waiting) would
/// then bring none in: other connections' reads would wait behind such a task.
fn uring_runtime() -> io::Result<monoio::Runtime<monoio::time::TimeDriver<IoUringDriver>>> {
    let mut coop = io_uring::IoUring::builder();
    coop.setup_coop_taskrun();
    match RuntimeBuilder::<IoUringDriver>::new().uring_builder(coop).enable_timer().build() {
        // EINVAL: a kernel before 5.19, which does not know the flag.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            tracing::debug!("io_uring without COOP_TASKRUN (kernel before 5.19)");
            RuntimeBuilder::<IoUringDriver>::new().enable_timer().build()
        }
        built => built,
    }
}

/// Why io_uring cannot serve `executors` executors here, if it cannot: build a ring for real
/// and check the memlock limit that older kernels charge rings to.
fn uring_problem(executors: usize) -> Option<String> {
    // On a thread of its own: the ring's teardown completes through task work aimed at the
    // thread that built it, which would interrupt that thread's blocking calls (a caller's
    // socket read with a timeout fails with EINTR).
    let built = std::thread::spawn(|| uring_runtime().map(drop))
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the io_uring probe panicked")));
    if let Err(e) = built {
        return Some(explain(&e));
    }
    if kernel_before(5, 12) {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit into a local struct.
        if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } == 0
            && lim.rlim_cur != libc::RLIM_INFINITY
        {
            let need = RING_MEMLOCK_BYTES * executors as u64;
            if lim.rlim_cur < need {
                return Some(format!(
                    "RLIMIT_MEMLOCK is {} KiB but {executors} io_uring rings need about {} KiB on this kernel \
                     (before 5.12); raise it (systemd LimitMEMLOCK=infinity, docker --ulimit memlock=-1, \
                     ulimit -l unlimited)",
                    lim.rlim_cur / 1024,
                    need / 1024
                ));
            }
        }
    }
    None
}

/// A cause and a fix for a failed io_uring_setup.
fn explain(e: &io::Error) -> String {
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").unwrap_or_default();
    match (e.raw_os_error(), disabled.trim()) {
        (Some(libc::EPERM | libc::EACCES), "2") => {
            "io_uring is switched off by sysctl kernel.io_uring_disabled=2 (set it to 0)".to_string()
        }
        (Some(libc::EPERM | libc::EACCES), "1") => "sysctl kernel.io_uring_disabled=1 allows io_uring only to \
            privileged processes and kernel.io_uring_group (set it to 0, or add the service's group)"
            .to_string(),
        (Some(libc::EPERM | libc::EACCES), _) => "io_uring_setup was refused (EPERM): a seccomp profile blocks it, \
            as the default Docker, containerd and Kubernetes RuntimeDefault profiles do; allow io_uring_setup, \
            io_uring_enter and io_uring_register in the profile (or run Unconfined) to use io_uring"
            .to_string(),
        (Some(libc::ENOSYS), _) => "this kernel has no io_uring (it needs Linux 5.11+ built with CONFIG_IO_URING)".to_string(),
        (Some(libc::ENOMEM), _) => "not enough locked memory for an io_uring ring: raise RLIMIT_MEMLOCK \
            (systemd LimitMEMLOCK=infinity, docker --ulimit memlock=-1)"
            .to_string(),
        _ => format!("io_uring_setup failed: {e}"),
    }
}

/// Whether the running kernel is older than `major.minor`.
fn kernel_before(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.trim().split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    let (ma, mi) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (ma, mi) < (major, minor)
}

thread_local! {
    /// Whether accepted sockets must be non-blocking: yes for the epoll driver; no for
    /// io_uring, which answers EAGAIN for O_NONBLOCK sockets instead of waiting.
    static NONBLOCKING_STREAMS: Cell<bool> = const { Cell::new(false) };
}

impl Runtime for Monoio {
    const NAME: &'static str = "monoio";
    type Io = MonoioStream;
    type Listener = MonoioListener;
    type UnixListener = MonoioUnixListener;

    fn block_on<F, Fut>(main: F) -> io::Result<Fut::Output>
    where
        F: FnOnce(&'static str) -> Fut + Send,
        Fut: Future,
        Fut::Output: Send,
    {
        crate::time::install(boxed_sleep);
        #[cfg(feature = "tokio")]
        let _tokio = super::tokio::enter_outbound_context()?;
        // The driver was decided once for all executors (see `prepare`).
        if USE_URING.load(Ordering::Relaxed) {
            let mut rt = uring_runtime()?;
            NONBLOCKING_STREAMS.with(|n| n.set(false));
            Ok(rt.block_on(main("io_uring")))
        } else {
            let mut rt = RuntimeBuilder::<LegacyDriver>::new().enable_timer().build()?;
            NONBLOCKING_STREAMS.with(|n| n.set(true));
            Ok(rt.block_on(main("epoll")))
        }
    }

    fn listener(listener: std::net::TcpListener) -> io::Result<MonoioListener> {
        listener.set_nonblocking(true)?;
        let fd = listener.as_raw_fd();
        let inner = monoio::net::TcpListener::from_std(listener)?;
        Ok(MonoioListener { inner, fd })
    }

    fn unix_listener(listener: std::os::unix::net::UnixListener) -> io::Result<MonoioUnixListener> {
        listener.set_nonblocking(true)?;
        let fd = listener.as_raw_fd();
        let inner = monoio::net::UnixListener::from_std(listener)?;
        Ok(MonoioUnixListener { inner, fd })
    }

    fn spawn<F: Future<Output = ()> + 'static>(task: F) {
        drop(monoio::spawn(task));
    }
}

/// A listener that waits for readiness and then accepts in user space.
///
/// An io_uring accept op takes a connection off the queue inside the kernel even while this
/// executor's thread is blocked, stranding it there. Waiting for readiness and calling
/// accept4(2) ourselves means a blocked executor takes nothing, so connections queued on
/// its socket can still be served by another executor.
pub struct MonoioListener {
    inner: monoio::net::TcpListener,
    fd: RawFd,
}

impl Listener for MonoioListener {
    type Io = MonoioStream;
    type Stream = std::net::TcpStream;

    async fn accept(&self) -> io::Result<(MonoioStream, Peer)> {
        accept_on_readiness(self, || self.inner.readable(false)).await
    }

    fn fd(&self) -> RawFd {
        self.fd
    }

    fn adopt(stream: std::net::TcpStream) -> io::Result<MonoioStream> {
        stream.set_nonblocking(NONBLOCKING_STREAMS.with(Cell::get))?;
        // Responses are written whole; Nagle would only delay them.
        stream.set_nodelay(true)?;
        Ok(MonoioStream::new(monoio::net::TcpStream::from_std(stream)?))
    }
}

/// Accept with `accept4` in user space, waiting on `readable` while nothing is queued, so a
/// connection is only taken by an executor that is running.
///
/// A socket that was readable and still has nothing to accept may have been shut down (the
/// first executor to stop shuts a shared Unix socket for all): it stays readable, and on the
/// epoll driver, whose readiness wait completes at once, this loop would spin inside one
/// poll and never see its own drain. That is an error, and the accept loop backs off.
async fn accept_on_readiness<L, F>(listener: &L, readable: impl Fn() -> F) -> io::Result<(L::Io, Peer)>
where
    L: Listener,
    F: Future<Output = io::Result<()>>,
{
    let mut woken = false;
    loop {
        match listener.try_accept()? {
            Some(accepted) => return Ok(accepted),
            None => {
                if woken {
                    super::not_shut_down(listener.fd())?;
                }
                readable().await?;
                woken = true;
            }
        }
    }
}

/// The Unix socket every executor accepts from, on readiness as [`MonoioListener`] does.
pub struct MonoioUnixListener {
    inner: monoio::net::UnixListener,
    fd: RawFd,
}

impl Listener for MonoioUnixListener {
    type Io = MonoioStream<monoio::net::UnixStream>;
    type Stream = std::os::unix::net::UnixStream;

    async fn accept(&self) -> io::Result<(Self::Io, Peer)> {
        accept_on_readiness(self, || self.inner.readable(false)).await
    }

    fn fd(&self) -> RawFd {
        self.fd
    }

    fn adopt(stream: std::os::unix::net::UnixStream) -> io::Result<Self::Io> {
        stream.set_nonblocking(NONBLOCKING_STREAMS.with(Cell::get))?;
        Ok(MonoioStream::new(monoio::net::UnixStream::from_std(stream)?))
    }
}

/// A connection: TCP, or a Unix socket's.
pub struct MonoioStream<S = monoio::net::TcpStream> {
    socket: S,
    /// The streaks of large reads and of large writes done at once (see `copy_now`).
    read_streak: Streak,
    write_streak: Streak,
    /// What calls off a read that `read_unless` was told to stop; made for the first such
    /// read and let go once it has called one off (an idle connection holds none).
    canceller: Option<Canceller>,
}

impl<S> MonoioStream<S> {
    fn new(socket: S) -> Self {
        MonoioStream {
            socket,
            read_streak: Streak::default(),
            write_streak: Streak::default(),
            canceller: None,
        }
    }
}

/// A monoio socket's wait for readability: an io_uring `POLL_ADD`, or on the epoll driver
/// its readiness (confirmed with `poll(2)`, so that a stale readiness does not end it).
pub trait MonoioReadable {
    fn readable(&self) -> impl Future<Output = io::Result<()>>;
}

/// The same for writability.
pub trait MonoioWritable {
    fn writable(&self) -> impl Future<Output = io::Result<()>>;
}

impl MonoioReadable for monoio::net::TcpStream {
    fn readable(&self) -> impl Future<Output = io::Result<()>> {
        monoio::net::TcpStream::readable(self, false)
    }
}

impl MonoioWritable for monoio::net::TcpStream {
    fn writable(&self) -> impl Future<Output = io::Result<()>> {
        monoio::net::TcpStream::writable(self, false)
    }
}

impl MonoioReadable for monoio::net::UnixStream {
    fn readable(&self) -> impl Future<Output = io::Result<()>> {
        monoio::net::UnixStream::readable(self, false)
    }
}

impl MonoioWritable for monoio::net::UnixStream {
    fn writable(&self) -> impl Future<Output = io::Result<()>> {
        monoio::net::UnixStream::writable(self, false)
    }
}

// SAFETY (both halves): monoio's halves share the socket through an `UnsafeCell` on one
// thread, each half taking a reference to it for its own operations (monoio's own `read` and
// `write` on the halves do the same); a readiness wait only reads the descriptor.
impl<S: MonoioReadable> MonoioReadable for OwnedReadHalf<S> {
    fn readable(&self) -> impl Future<Output = io::Result<()>> {
        unsafe { &*self.0.get() }.readable()
    }
}

impl<S: MonoioWritable + AsyncWriteRent> MonoioWritable for OwnedWriteHalf<S> {
    fn writable(&self) -> impl Future<Output = io::Result<()>> {
        unsafe { &*self.0.get() }.writable()
    }
}

impl<S> Transport for MonoioStream<S>
where
    S: AsyncReadRent
        + CancelableAsyncReadRent
        + AsyncWriteRent
        + MonoioReadable
        + MonoioWritable
        + AsRawFd
        + monoio::io::Split
        + 'static,
{
    type ReadHalf = MonoioRead<S>;
    type WriteHalf = MonoioWrite<S>;

    fn split(self) -> (MonoioRead<S>, MonoioWrite<S>) {
        let fd = self.socket.as_raw_fd();
        let (read, write) = self.socket.into_split();
        (MonoioRead(read, fd, self.read_streak), MonoioWrite(write, fd, self.write_streak))
    }

    async fn read(&mut self, buf: BytesMut) -> (io::Result<usize>, BytesMut) {
        let fd = self.socket.as_raw_fd();
        read_into(&mut self.socket, fd, &mut self.read_streak, buf).await
    }

    fn read_unless<St: Future>(
        &mut self,
        buf: BytesMut,
        stop: St,
    ) -> impl Future<Output = (Option<io::Result<usize>>, BytesMut)> {
        let filled = buf.len();
        let handle = self.canceller.get_or_insert_with(Canceller::new).handle();
        CallOff {
            read: self.socket.cancelable_read(buf.slice_mut(filled..), handle),
            stop,
            canceller: &mut self.canceller,
            called_off: false,
        }
    }

    fn readable(&mut self) -> impl Future<Output = io::Result<()>> {
        self.socket.readable()
    }

    async fn write_all(&mut self, buf: BytesMut) -> (io::Result<()>, BytesMut) {
        let fd = self.socket.as_raw_fd();
        write_all_from(&mut self.socket, fd, &mut self.write_streak, buf).await
    }

    async fn write_bytes(&mut self, buf: Bytes) -> io::Result<()> {
        let fd = self.socket.as_raw_fd();
        write_all_from(&mut self.socket, fd, &mut self.write_streak, buf).await.0
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        shutdown(self.socket.as_raw_fd(), libc::SHUT_WR)
    }
}

/// Future returned by `read_unless`: the read, called off once `stop` finishes. A plain
/// struct rather than an async fn, which would keep `stop` and the buffer twice in every
/// idle connection's future (as an argument, and in the local it is moved into).
struct CallOff<'a, R, S> {
    read: R,
    stop: S,
    canceller: &'a mut Option<Canceller>,
    called_off: bool,
}

impl<R, S> Future for CallOff<'_, R, S>
where
    R: Future<Output = monoio::BufResult<usize, SliceMut<BytesMut>>>,
    S: Future,
{
    type Output = (Option<io::Result<usize>>, BytesMut);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: structural pinning of `read` and `stop`: neither is moved out of the pinned
        // struct, which has no Drop impl nor an Unpin impl of its own.
        let this = unsafe { self.get_unchecked_mut() };
        if let Poll::Ready((result, slice)) = unsafe { Pin::new_unchecked(&mut this.read) }.poll(cx) {
            let buf = slice.into_inner();
            return Poll::Ready(match result {
                Err(e) if this.called_off && e.raw_os_error() == Some(libc::ECANCELED) => (None, buf),
                result => (Some(result), buf),
            });
        }
        if !this.called_off && unsafe { Pin::new_unchecked(&mut this.stop) }.poll(cx).is_ready() {
            this.called_off = true;
            // An io_uring AsyncCancel: the read completes with ECANCELED, or with the bytes
            // it had already read, and its buffer comes back either way (the epoll driver
            // has read nothing yet and answers ECANCELED at once).
            if let Some(canceller) = this.canceller.take() {
                drop(canceller.cancel());
            }
        }
        Poll::Pending
    }
}

/// The read half, and the socket's descriptor (for reads done at once, see `copy_now`).
pub struct MonoioRead<S = monoio::net::TcpStream>(OwnedReadHalf<S>, RawFd, Streak);

impl<S: AsyncReadRent + MonoioReadable + 'static> ReadHalf for MonoioRead<S> {
    async fn read(&mut self, buf: BytesMut) -> (io::Result<usize>, BytesMut) {
        read_into(&mut self.0, self.1, &mut self.2, buf).await
    }

    /// From the executor's epoll instance rather than an io_uring `POLL_ADD`: this is the
    /// wait of a quiet WebSocket, which may last for hours (see `monoio_ready`).
    fn readable(&mut self) -> impl Future<Output = io::Result<()>> {
        super::monoio_ready::readable(self.1)
    }
}

/// Read into the spare room of `buf`. A large room (see `copy_now`) is filled at once when
/// the socket has bytes, and otherwise once the ring says it has (a readiness wait), so that
/// the copy happens as this task runs; a small one is read through the ring.
async fn read_into<R: AsyncReadRent + MonoioReadable>(
    reader: &mut R,
    fd: RawFd,
    streak: &mut Streak,
    mut buf: BytesMut,
) -> (io::Result<usize>, BytesMut) {
    if buf.capacity() - buf.len() >= copy_now::RECV_NOW_MIN && streak.allow() {
        loop {
            if let Some(result) = copy_now::recv_now(fd, &mut buf) {
                return (result, buf);
            }
            // A wait on the ring, as a read through it would be (see `Streak`).
            streak.used_ring();
            if let Err(e) = reader.readable().await {
                return (Err(e), buf);
            }
        }
    }
    let filled = buf.len();
    // Pinned where it is made: awaited by value, the ring's operation was copied into this
    // future's state first (a `memcpy` per read).
    let (result, slice) = pin!(reader.read(buf.slice_mut(filled..))).await;
    (result, slice.into_inner())
}

/// Write all of `buf`. A large one (see `copy_now`) goes out at once as far as the socket
/// takes it, and the rest as the socket has room (readiness waits), so that every copy happens
/// as this task runs; a small one is written through the ring.
async fn write_all_from<W: AsyncWriteRent + MonoioWritable, B: IoBuf + std::ops::Deref<Target = [u8]>>(
    writer: &mut W,
    fd: RawFd,
    streak: &mut Streak,
    buf: B,
) -> (io::Result<()>, B) {
    if buf.len() >= copy_now::SEND_NOW_MIN && streak.allow() {
        let mut sent = 0;
        loop {
            match copy_now::send_now(fd, &buf[sent..]) {
                Ok(n) => sent += n,
                Err(e) => return (Err(e), buf),
            }
            if sent == buf.len() {
                return (Ok(()), buf);
            }
            // A wait on the ring, as a write through it would be (see `Streak`).
            streak.used_ring();
            if let Err(e) = writer.writable().await {
                return (Err(e), buf);
            }
        }
    }
    // Through the ring: one write usually takes it all. (monoio's `write_all` runs this loop
    // one future further down, and that future was copied once more on each flush.)
    let len = buf.len();
    let mut buf = buf;
    let mut written = 0;
    while written < len {
        let (result, slice) = pin!(writer.write(buf.slice(written..len))).await;
        buf = slice.into_inner();
        match result {
            Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), buf),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (Err(e), buf),
        }
    }
    (Ok(()), buf)
}

/// The write half, and the socket's descriptor for `shutdown` (the half does not expose it).
pub struct MonoioWrite<S: AsyncWriteRent = monoio::net::TcpStream>(OwnedWriteHalf<S>, RawFd, Streak);

impl<S: AsyncWriteRent + MonoioWritable + 'static> WriteHalf for MonoioWrite<S> {
    async fn write_all(&mut self, buf: BytesMut) -> (io::Result<()>, BytesMut) {
        write_all_from(&mut self.0, self.1, &mut self.2, buf).await
    }

    /// Where they are, with `sendmsg` (see `copy_now`): at once as far as the socket takes
    /// them, the rest as it has room.
    async fn write_parts(&mut self, parts: Vec<Bytes>) -> io::Result<()> {
        let total: usize = parts.iter().map(Bytes::len).sum();
        if !self.2.allow() {
            // A wait on the ring now and then (see `Streak`).
            self.0.writable().await?;
        }
        let mut sent = 0;
        loop {
            sent += copy_now::send_parts_now(self.1, &parts, sent)?;
            if sent >= total {
                return Ok(());
            }
            self.2.used_ring();
            self.0.writable().await?;
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        shutdown(self.1, libc::SHUT_WR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{first_of, Either};
    use std::time::Duration;

    /// On the epoll driver, a wait to accept on a Unix socket that another executor shuts
    /// down ends with an error, and the runtime's timers still run: it used to spin inside
    /// one poll for good (readable at once, EAGAIN at once), so the executor never drained.
    #[test]
    fn accepting_on_a_unix_socket_shut_down_meanwhile_ends_on_epoll() {
        let path = std::env::temp_dir().join(format!("percore-monoio-accept-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let std_listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let fd = std_listener.as_raw_fd();
        let (done, ended) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut rt = RuntimeBuilder::<LegacyDriver>::new().enable_timer().build().unwrap();
            NONBLOCKING_STREAMS.with(|n| n.set(true));
            let outcome = rt.block_on(async move {
                let listener = Monoio::unix_listener(std_listener).unwrap();
                monoio::spawn(async move {
                    monoio::time::sleep(Duration::from_millis(20)).await;
                    super::super::shutdown(fd, libc::SHUT_RDWR).unwrap();
                });
                let accept = std::pin::pin!(listener.accept());
                match first_of(accept, monoio::time::sleep(Duration::from_secs(2))).await {
                    Either::Left(accepted) => accepted.map(|_| ()).map_err(|e| e.kind()),
                    Either::Right(()) => Ok(()),
                }
            });
            let _ = done.send(outcome);
        });
        let outcome = ended.recv_timeout(Duration::from_secs(5)).expect("the runtime keeps running");
        assert_eq!(outcome, Err(io::ErrorKind::NotConnected));
        let _ = std::fs::remove_file(&path);
    }
}
