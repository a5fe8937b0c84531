//! The owned-buffer IO interface the connection driver is written against.
//!
//! It follows io_uring's model: a buffer is handed to the operation and handed back when it
//! completes, so the same interface fits completion-based runtimes (monoio, glommio) and
//! readiness-based ones (tokio) alike. Runtime shims implement it; nothing else does IO.

use std::any::Any;
use std::future::{poll_fn, Future};
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

/// One accepted connection.
pub trait Transport: 'static {
    /// Read into the spare capacity of `buf`, after its current contents. Returns the number
    /// of bytes added (0 at end of stream) and the buffer.
    fn read(&mut self, buf: BytesMut) -> impl Future<Output = (io::Result<usize>, BytesMut)>;

    /// Write all of `buf`, then hand it back (its contents unchanged, for the caller to clear).
    fn write_all(&mut self, buf: BytesMut) -> impl Future<Output = (io::Result<()>, BytesMut)>;

    /// Write all of `buf`; for large bodies that are not worth copying into the write buffer.
    fn write_bytes(&mut self, buf: Bytes) -> impl Future<Output = io::Result<()>>;

    /// Send FIN (shutdown the write side) while still reading.
    fn shutdown_write(&mut self) -> io::Result<()>;
}

/// The runtime's timer.
pub trait Timer: 'static {
    fn sleep(duration: Duration) -> impl Future<Output = ()>;
}

/// Run `fut` for at most `duration`; `None` if the time ran out first (`fut` is dropped).
pub async fn timeout<K: Timer, F: Future>(duration: Duration, fut: F) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let mut sleep = pin!(K::sleep(duration));
    poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

/// Which of two futures finished first.
pub enum Either<A, B> {
    Left(A),
    Right(B),
}

/// Whichever of two futures finishes first (the other is dropped).
pub async fn first_of<A: Future, B: Future>(a: A, b: B) -> Either<A::Output, B::Output> {
    let mut a = pin!(a);
    let mut b = pin!(b);
    poll_fn(|cx| {
        if let Poll::Ready(v) = a.as_mut().poll(cx) {
            return Poll::Ready(Either::Left(v));
        }
        if let Poll::Ready(v) = b.as_mut().poll(cx) {
            return Poll::Ready(Either::Right(v));
        }
        Poll::Pending
    })
    .await
}

/// Poll `fut`, turning a panic inside it into an error.
pub async fn catch_panic<F: Future>(fut: F) -> Result<F::Output, Box<dyn Any + Send>> {
    let mut fut = pin!(fut);
    poll_fn(|cx| match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
        Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
        Ok(Poll::Pending) => Poll::Pending,
        Err(panic) => Poll::Ready(Err(panic)),
    })
    .await
}
