//! [`Body`]: a request body as an `http_body::Body`, for tower services.

use std::future::Future;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::thread::{self, ThreadId};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use crate::app::{BodyError, RequestBody};

type ChunkRead = Pin<Box<dyn Future<Output = (RequestBody, Option<Result<Bytes, BodyError>>)>>>;

/// Where a body's reading stands. A chunk is read by a future that owns the body and hands
/// it back with the chunk, so no future has to borrow from the `Body` that polls it.
enum State {
    Idle(RequestBody),
    Reading(ChunkRead),
    Done,
}

/// The request body a tower service receives: streamed from the connection as the service
/// polls it, bounded by `--max-body-size`, `100 Continue` sent when it is first polled, and
/// an exact `size_hint` when the client sent `Content-Length`.
///
/// It is `Send`, as axum requires, although what it reads from lives on its executor's
/// thread: it may be moved, but only polled (and dropped) on that thread. Polled elsewhere it
/// yields [`BodyError::Gone`]; dropped elsewhere, it leaks what it held rather than touch it.
pub struct Body {
    state: OnExecutor<State>,
    /// Bytes still to come, when the length is known.
    remaining: Option<u64>,
}

impl Body {
    /// A body for `body`; `length`: its `Content-Length`, if it has one.
    pub fn new(body: RequestBody, length: Option<u64>) -> Body {
        let remaining = if body.is_empty() { Some(0) } else { length };
        Body { state: OnExecutor::new(State::Idle(body)), remaining }
    }

    /// An empty body.
    pub fn empty() -> Body {
        Body::new(RequestBody::empty(), Some(0))
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body").field("remaining", &self.remaining).finish()
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let Some(state) = this.state.get_mut() else {
            return Poll::Ready(Some(Err(BodyError::Gone)));
        };
        loop {
            match std::mem::replace(state, State::Done) {
                State::Done => return Poll::Ready(None),
                State::Idle(body) if body.is_empty() => return Poll::Ready(None),
                State::Idle(mut body) => {
                    *state = State::Reading(Box::pin(async move {
                        let chunk = body.chunk().await;
                        (body, chunk)
                    }));
                }
                State::Reading(mut read) => match read.as_mut().poll(cx) {
                    Poll::Pending => {
                        *state = State::Reading(read);
                        return Poll::Pending;
                    }
                    Poll::Ready((body, Some(Ok(data)))) => {
                        *state = State::Idle(body);
                        if let Some(left) = this.remaining.as_mut() {
                            *left = left.saturating_sub(data.len() as u64);
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Poll::Ready((_, None)) => {
                        this.remaining = Some(0);
                        return Poll::Ready(None);
                    }
                    Poll::Ready((_, Some(Err(e)))) => return Poll::Ready(Some(Err(e))),
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == Some(0)
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

/// A value that may be moved to another thread but is only ever used (and dropped) on the
/// thread that made it.
struct OnExecutor<T> {
    thread: ThreadId,
    value: ManuallyDrop<T>,
}

// SAFETY: the value is reached only through `get_mut`, which hands it out on the thread
// that created it, and it is dropped only there (elsewhere it is leaked, never touched). So
// a `!Send` value (an `Rc` of the connection) is never used from two threads.
unsafe impl<T> Send for OnExecutor<T> {}

thread_local! {
    /// This thread's id, without `thread::current()`'s reference count on every request.
    static THIS_THREAD: ThreadId = thread::current().id();
}

fn this_thread() -> ThreadId {
    THIS_THREAD.with(|id| *id)
}

impl<T> OnExecutor<T> {
    fn new(value: T) -> Self {
        OnExecutor { thread: this_thread(), value: ManuallyDrop::new(value) }
    }

    fn get_mut(&mut self) -> Option<&mut T> {
        (this_thread() == self.thread).then_some(&mut *self.value)
    }
}

impl<T> Drop for OnExecutor<T> {
    fn drop(&mut self) {
        if this_thread() == self.thread {
            // SAFETY: dropped once, here, on its own thread.
            unsafe { ManuallyDrop::drop(&mut self.value) }
        } else {
            tracing::error!("a request body was dropped off its executor's thread; leaking it");
        }
    }
}
