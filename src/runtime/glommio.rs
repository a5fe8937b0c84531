//! glommio: io_uring, the Seastar-style thread-per-core runtime. Each executor runs one
//! `LocalExecutor` on its (already pinned) thread, with its own SO_REUSEPORT listener.
//!
//! One difference from the monoio shim: glommio accepts with an io_uring accept operation
//! and offers no readiness wait, so an executor whose thread is blocked can hold the one
//! connection its pending accept took until it wakes. Routing still steers every later
//! connection away from it.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, RawFd};
use std::pin::Pin;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::{LocalExecutorBuilder, Placement};

use super::{shutdown, Listener, Runtime};
use crate::io::{Timer, Transport};

/// Memory glommio registers per executor for its own buffered file IO (percore uses none);
/// kept small because registered buffers count against RLIMIT_MEMLOCK.
pub const IO_MEMORY: usize = 512 * 1024;
/// Locked memory one glommio executor needs: its registered buffers and three rings.
pub const MEMLOCK_PER_EXECUTOR: u64 = IO_MEMORY as u64 + 3 * 256 * 1024;

/// The glommio runtime.
pub struct Glommio;

impl Timer for Glommio {
    fn sleep(duration: Duration) -> impl Future<Output = ()> {
        glommio::timer::sleep(duration)
    }
}

fn boxed_sleep(duration: Duration) -> Pin<Box<dyn Future<Output = ()>>> {
    Box::pin(glommio::timer::sleep(duration))
}

fn to_io<E: std::fmt::Display>(e: E) -> io::Error {
    io::Error::other(e.to_string())
}

/// Build (and drop) a glommio executor on a thread of its own, to learn whether glommio can
/// run here (io_uring allowed, enough locked memory).
pub fn probe() -> io::Result<()> {
    std::thread::spawn(|| {
        LocalExecutorBuilder::new(Placement::Unbound).io_memory(IO_MEMORY).make().map(drop).map_err(to_io)
    })
    .join()
    .unwrap_or_else(|_| Err(io::Error::other("the glommio probe panicked")))
}

impl Runtime for Glommio {
    const NAME: &'static str = "glommio";
    type Io = GlommioStream;
    type Listener = GlommioListener;

    fn block_on<F, Fut>(main: F) -> io::Result<Fut::Output>
    where
        F: FnOnce(&'static str) -> Fut,
        Fut: Future,
    {
        crate::time::install(boxed_sleep);
        // Unbound: the thread is already pinned by the server, inside the process's CPU set.
        let ex = LocalExecutorBuilder::new(Placement::Unbound).io_memory(IO_MEMORY).make().map_err(to_io)?;
        Ok(ex.run(main("io_uring")))
    }

    fn listener(listener: std::net::TcpListener) -> io::Result<GlommioListener> {
        listener.set_nonblocking(true)?;
        let fd = listener.into_raw_fd();
        // SAFETY: `fd` is a bound, listening socket whose ownership moves to glommio.
        let inner = unsafe { glommio::net::TcpListener::from_raw_fd(fd) };
        Ok(GlommioListener { inner, fd })
    }

    fn spawn<F: Future<Output = ()> + 'static>(task: F) {
        drop(glommio::spawn_local(task).detach());
    }
}

pub struct GlommioListener {
    inner: glommio::net::TcpListener,
    fd: RawFd,
}

impl Listener for GlommioListener {
    type Io = GlommioStream;

    async fn accept(&self) -> io::Result<(GlommioStream, SocketAddr)> {
        // io::Error::from keeps the errno (EMFILE must be recognised as such).
        let stream = self.inner.accept().await.map_err(io::Error::from)?;
        let peer = stream.peer_addr().map_err(to_io)?;
        stream.set_nodelay(true).map_err(to_io)?;
        Ok((GlommioStream(stream), peer))
    }

    fn fd(&self) -> RawFd {
        self.fd
    }

    fn adopt(stream: std::net::TcpStream) -> io::Result<GlommioStream> {
        stream.set_nodelay(true)?;
        // glommio drives sockets through io_uring; they stay blocking like its own.
        stream.set_nonblocking(false)?;
        // SAFETY: ownership of the connected socket moves to glommio.
        Ok(GlommioStream(unsafe { glommio::net::TcpStream::from_raw_fd(stream.into_raw_fd()) }))
    }
}

pub struct GlommioStream(glommio::net::TcpStream);

impl Transport for GlommioStream {
    async fn read(&mut self, mut buf: BytesMut) -> (io::Result<usize>, BytesMut) {
        // glommio reads into initialised memory: zero the spare room, read, trim.
        let filled = buf.len();
        buf.resize(buf.capacity(), 0);
        let result = self.0.read(&mut buf[filled..]).await;
        buf.truncate(filled + *result.as_ref().unwrap_or(&0));
        (result, buf)
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
