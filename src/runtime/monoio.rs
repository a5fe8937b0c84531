//! monoio: io_uring on Linux, with monoio's epoll driver when a ring cannot be built.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
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
        match RuntimeBuilder::<IoUringDriver>::new()
            .enable_timer()
            .build()
        {
            Ok(mut rt) => Ok(rt.block_on(main("io_uring"))),
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "cannot create an io_uring ring (blocked by seccomp, disabled by \
                     kernel.io_uring_disabled, or RLIMIT_MEMLOCK too low); using epoll instead"
                );
                let mut rt = RuntimeBuilder::<LegacyDriver>::new()
                    .enable_timer()
                    .build()?;
                Ok(rt.block_on(main("epoll")))
            }
        }
    }

    fn listener(listener: std::net::TcpListener) -> io::Result<MonoioListener> {
        monoio::net::TcpListener::from_std(listener).map(MonoioListener)
    }

    fn spawn<F: Future<Output = ()> + 'static>(task: F) {
        drop(monoio::spawn(task));
    }
}

pub struct MonoioListener(monoio::net::TcpListener);

impl Listener for MonoioListener {
    type Io = MonoioStream;

    async fn accept(&self) -> io::Result<(MonoioStream, SocketAddr)> {
        let (stream, peer) = self.0.accept().await?;
        // Responses are written whole; Nagle would only delay them.
        stream.set_nodelay(true)?;
        Ok((MonoioStream(stream), peer))
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
