//! monoio: io_uring on Linux, with monoio's epoll driver when a ring cannot be built.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::pin::Pin;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder};

use super::{Listener, Runtime};
use crate::io::{Timer, Transport};

/// The monoio runtime.
pub struct Monoio;

impl Timer for Monoio {
    fn sleep(duration: Duration) -> impl Future<Output = ()> {
        monoio::time::sleep(duration)
    }
}

fn boxed_sleep(duration: Duration) -> Pin<Box<dyn Future<Output = ()>>> {
    Box::pin(monoio::time::sleep(duration))
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

    fn block_on<F, Fut>(main: F) -> io::Result<Fut::Output>
    where
        F: FnOnce(&'static str) -> Fut,
        Fut: Future,
    {
        crate::time::install(boxed_sleep);
        match RuntimeBuilder::<IoUringDriver>::new().enable_timer().build() {
            Ok(mut rt) => {
                NONBLOCKING_STREAMS.with(|n| n.set(false));
                Ok(rt.block_on(main("io_uring")))
            }
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "cannot create an io_uring ring (blocked by seccomp, disabled by \
                     kernel.io_uring_disabled, or RLIMIT_MEMLOCK too low); using epoll instead"
                );
                let mut rt = RuntimeBuilder::<LegacyDriver>::new().enable_timer().build()?;
                NONBLOCKING_STREAMS.with(|n| n.set(true));
                Ok(rt.block_on(main("epoll")))
            }
        }
    }

    fn listener(listener: std::net::TcpListener) -> io::Result<MonoioListener> {
        listener.set_nonblocking(true)?;
        let fd = listener.as_raw_fd();
        let inner = monoio::net::TcpListener::from_std(listener)?;
        Ok(MonoioListener { inner, fd })
    }

    fn adopt_stream(stream: std::net::TcpStream) -> io::Result<MonoioStream> {
        stream.set_nonblocking(NONBLOCKING_STREAMS.with(Cell::get))?;
        // Responses are written whole; Nagle would only delay them.
        stream.set_nodelay(true)?;
        Ok(MonoioStream(monoio::net::TcpStream::from_std(stream)?))
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

    async fn accept(&self) -> io::Result<(MonoioStream, SocketAddr)> {
        loop {
            match self.try_accept()? {
                Some(accepted) => return Ok(accepted),
                None => self.inner.readable(false).await?,
            }
        }
    }

    fn stop_listening(&self) {
        // SAFETY: shutdown(2) on the listening descriptor this listener owns.
        unsafe { libc::shutdown(self.fd, libc::SHUT_RDWR) };
    }

    fn try_accept(&self) -> io::Result<Option<(MonoioStream, SocketAddr)>> {
        let Some((stream, peer)) = accept_now(self.fd)? else {
            return Ok(None);
        };
        Ok(Some((Monoio::adopt_stream(stream)?, peer)))
    }
}

/// One non-blocking accept4(2) on a listening descriptor: `None` when its queue is empty.
pub(crate) fn accept_now(fd: RawFd) -> io::Result<Option<(std::net::TcpStream, SocketAddr)>> {
    // SAFETY: `fd` is an open listening descriptor owned elsewhere; ManuallyDrop keeps this
    // borrowed view from closing it.
    let listener = std::mem::ManuallyDrop::new(unsafe { std::net::TcpListener::from_raw_fd(fd) });
    match listener.accept() {
        Ok(pair) => Ok(Some(pair)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

pub struct MonoioStream(monoio::net::TcpStream);

impl Transport for MonoioStream {
    async fn read(&mut self, buf: BytesMut) -> (io::Result<usize>, BytesMut) {
        let filled = buf.len();
        let (result, slice) = self.0.read(buf.slice_mut(filled..)).await;
        (result, slice.into_inner())
    }

    async fn write_all(&mut self, buf: BytesMut) -> (io::Result<()>, BytesMut) {
        let (result, buf) = self.0.write_all(buf).await;
        (result.map(drop), buf)
    }

    async fn write_bytes(&mut self, buf: Bytes) -> io::Result<()> {
        self.0.write_all(buf).await.0.map(drop)
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        // SAFETY: shutdown(2) on a descriptor this stream owns; no memory is involved.
        let rc = unsafe { libc::shutdown(self.0.as_raw_fd(), libc::SHUT_WR) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}
