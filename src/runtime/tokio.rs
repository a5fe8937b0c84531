//! tokio: the same thread-per-core design on epoll. Each executor runs a current-thread
//! runtime with a `LocalSet` (handlers need not be `Send`), pinned, with its own
//! SO_REUSEPORT listener, exactly like the io_uring executors: the difference users measure
//! is the IO model, not the architecture.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{shutdown, Listener, Runtime};
use crate::io::{Timer, Transport};

/// The tokio runtime, one current-thread runtime per executor.
pub struct Tokio;

impl Timer for Tokio {
    fn sleep(duration: Duration) -> impl Future<Output = ()> {
        tokio::time::sleep(duration)
    }
}

fn boxed_sleep(duration: Duration) -> Pin<Box<dyn Future<Output = ()>>> {
    Box::pin(tokio::time::sleep(duration))
}

impl Runtime for Tokio {
    const NAME: &'static str = "tokio";
    type Io = TokioStream;
    type Listener = TokioListener;

    fn block_on<F, Fut>(main: F) -> io::Result<Fut::Output>
    where
        F: FnOnce(&'static str) -> Fut,
        Fut: Future,
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

    fn spawn<F: Future<Output = ()> + 'static>(task: F) {
        drop(tokio::task::spawn_local(task));
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

    async fn accept(&self) -> io::Result<(TokioStream, SocketAddr)> {
        let (stream, peer) = self.inner.accept().await?;
        stream.set_nodelay(true)?;
        Ok((TokioStream(stream), peer))
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

pub struct TokioStream(tokio::net::TcpStream);

impl Transport for TokioStream {
    async fn read(&mut self, mut buf: BytesMut) -> (io::Result<usize>, BytesMut) {
        // Readiness-based: a dropped read loses nothing, the bytes stay in the socket.
        let result = self.0.read_buf(&mut buf).await;
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
