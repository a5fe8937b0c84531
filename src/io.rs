//! The owned-buffer IO interface the connection driver is written against.
//!
//! It follows io_uring's model: a buffer is handed to the operation and handed back when it
//! completes, so the same interface fits completion-based runtimes (monoio, glommio) and
//! readiness-based ones (tokio) alike. Runtime shims implement it; nothing else does IO.

use std::any::Any;
use std::future::Future;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::stamp::Stamp;

/// One accepted connection.
pub trait Transport: 'static {
    /// The read side, once split.
    type ReadHalf: ReadHalf;
    /// The write side, once split.
    type WriteHalf: WriteHalf;

    /// Split into a read side and a write side that can each have an operation in flight at
    /// the same time: a WebSocket reads its peer's frames while it writes its own. (The HTTP
    /// driver never needs both at once, and a read in flight on a completion-based runtime
    /// cannot be cancelled without losing bytes, so one `&mut` transport cannot serve both.)
    fn split(self) -> (Self::ReadHalf, Self::WriteHalf);

    /// Read into the spare capacity of `buf`, after its current contents. Returns the number
    /// of bytes added (0 at end of stream) and the buffer.
    fn read(&mut self, buf: BytesMut) -> impl Future<Output = (io::Result<usize>, BytesMut)>;

    /// As [`read`](Transport::read), unless `stop` finishes while nothing has arrived: the
    /// read is then called off without losing a byte (a completion-based runtime cancels it
    /// and takes back whatever the kernel had already read into the buffer), and `None` comes
    /// back with the buffer. `stop` is only polled while the read waits. `None` may also come
    /// at once from a transport that cannot wait this way now, or (TLS) when what arrived
    /// does not decrypt to anything yet; it never waits without `stop` bounding it.
    ///
    /// An idle connection lets go of its buffers this way and waits on [`readable`]
    /// instead, while a busy one pays nothing for it.
    ///
    /// [`readable`]: Transport::readable
    fn read_unless<S: Future>(
        &mut self,
        buf: BytesMut,
        stop: S,
    ) -> impl Future<Output = (Option<io::Result<usize>>, BytesMut)>;

    /// Wait, holding no buffer, until a read would not wait: bytes, the end of the stream or
    /// an error (a TLS transport that already holds decrypted or undecrypted bytes is ready
    /// at once). It may also end early, when a read then waits as usual. Dropping it loses
    /// nothing.
    fn readable(&mut self) -> impl Future<Output = io::Result<()>>;

    /// Write all of `buf`, then hand it back (its contents unchanged, for the caller to clear).
    fn write_all(&mut self, buf: BytesMut) -> impl Future<Output = (io::Result<()>, BytesMut)>;

    /// Write all of `buf`; for large bodies that are not worth copying into the write buffer.
    fn write_bytes(&mut self, buf: Bytes) -> impl Future<Output = io::Result<()>>;

    /// Send FIN (shutdown the write side) while still reading.
    fn shutdown_write(&mut self) -> io::Result<()>;

    /// Whether the bytes travel encrypted (TLS): the request's own scheme is then `https`.
    fn is_secure(&self) -> bool {
        false
    }

    /// The subject of the client certificate the TLS handshake verified (mutual TLS), once
    /// the handshake is done.
    fn client_subject(&self) -> Option<std::sync::Arc<str>> {
        None
    }
}

/// The read side of a split [`Transport`].
pub trait ReadHalf: 'static {
    /// As [`Transport::read`].
    fn read(&mut self, buf: BytesMut) -> impl Future<Output = (io::Result<usize>, BytesMut)>;

    /// As [`Transport::readable`]: wait, holding no buffer, until a read would find bytes
    /// (or the end of the stream); dropped before it completes, it has taken nothing.
    fn readable(&mut self) -> impl Future<Output = io::Result<()>>;
}

/// The write side of a split [`Transport`].
pub trait WriteHalf: 'static {
    /// As [`Transport::write_all`].
    fn write_all(&mut self, buf: BytesMut) -> impl Future<Output = (io::Result<()>, BytesMut)>;

    /// Write all of `parts`, in order (a WebSocket's frames with the shared payloads of
    /// large messages between them). The default copies them into one buffer; a runtime
    /// that can write them where they are (a vectored write) does that instead.
    fn write_parts(&mut self, parts: Vec<Bytes>) -> impl Future<Output = io::Result<()>> {
        let mut buf = BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
        for part in &parts {
            buf.extend_from_slice(part);
        }
        async move { self.write_all(buf).await.0 }
    }

    /// As [`Transport::shutdown_write`], once what the transport still holds for the peer
    /// is written (a TLS `close_notify`): FIN.
    fn shutdown(&mut self) -> impl Future<Output = io::Result<()>>;
}

/// What is still to be written of `parts` once their first `sent` bytes are: the rest of the
/// part that was cut, then the parts after it (for [`WriteHalf::write_parts`]' vectored
/// writes, which may each take less than all).
pub fn unsent(parts: &[Bytes], mut sent: usize) -> impl Iterator<Item = &[u8]> {
    parts.iter().filter_map(move |part| {
        if sent >= part.len() {
            sent -= part.len();
            return None;
        }
        let rest = &part[sent..];
        sent = 0;
        Some(rest)
    })
}

/// The runtime's timer.
pub trait Timer: 'static {
    /// The runtime's sleep (what a [`TimerSlot`] keeps and re-arms for each wait).
    type Sleep: Future<Output = ()> + 'static;

    /// A sleep of `duration`, which [`rearm`](Timer::rearm) can set again.
    fn sleep(duration: Duration) -> Self::Sleep;

    /// Set `sleep` to end at `deadline`. The default builds a new one in place; a runtime
    /// whose sleep can be reset does that instead (no new timer entry, and no copy of a
    /// sleep that is 640 bytes on monoio).
    fn rearm(mut sleep: Pin<&mut Self::Sleep>, deadline: Instant) {
        sleep.set(Self::sleep(deadline.saturating_duration_since(Instant::now())));
    }
}

/// Run `fut` for at most `duration`; `None` if the time ran out first (`fut` is dropped).
pub fn timeout<K: Timer, F: Future>(duration: Duration, fut: F) -> Timeout<F, impl Future<Output = ()>> {
    Timeout(first_of(fut, K::sleep(duration)))
}

/// The runtime's sleep on the heap. For waits that are rare or long, in futures that many
/// idle connections hold: monoio's sleep is 640 bytes aligned to 128, and a future that holds
/// one inline, in any of its states, takes that size and alignment all its life.
pub fn sleep_boxed<K: Timer>(duration: Duration) -> Pin<Box<dyn Future<Output = ()>>> {
    Box::pin(K::sleep(duration))
}

/// As [`timeout`], with the sleep on the heap (see [`sleep_boxed`]).
pub fn timeout_boxed<K: Timer, F: Future>(
    duration: Duration,
    fut: F,
) -> Timeout<F, Pin<Box<dyn Future<Output = ()>>>> {
    Timeout(first_of(fut, sleep_boxed::<K>(duration)))
}

// The combinators below are written as plain structs rather than `async fn`s: an `async fn`
// keeps its arguments and the locals they are moved into side by side, so every level of
// nesting would store the wrapped future (a read in flight, a handler) twice. Connection
// futures are made of these, and an idle connection's memory is mostly its future.

/// Future returned by [`timeout`]: the future raced against the sleep.
pub struct Timeout<F, S>(FirstOf<F, S>);

impl<F: Future, S: Future<Output = ()>> Future for Timeout<F, S> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: structural pinning of the only field; `Timeout` has no Drop or Unpin impl.
        let race = unsafe { self.map_unchecked_mut(|t| &mut t.0) };
        race.poll(cx).map(|first| match first {
            Either::Left(v) => Some(v),
            Either::Right(()) => None,
        })
    }
}

/// One timer for a connection's waits, allocated with its first wait and re-armed for each
/// wait after (a connection waits on one thing at a time); [`release`](TimerSlot::release)
/// lets it go while the connection is idle.
///
/// A runtime's sleep can be large (monoio's is 640 bytes, aligned to 128), and every future
/// that holds one inline grows by it and takes its alignment, padding each level of the
/// driver's nested futures. Kept behind one pointer, it costs a connection its own size
/// once. A wait that ends first leaves the sleep set, and the next wait's deadline, if it is
/// later, is only written down: the sleep goes off early, once, and is set again then (see
/// `Slot::arm`); only an earlier deadline resets it in place ([`Timer::rearm`]). A sleep
/// left set can only wake its task once, for nothing. Building a new sleep for each wait and
/// dropping it after cost a keep-alive request about 1,000 instructions more on monoio.
pub struct TimerSlot {
    slot: Option<Pin<Box<dyn Rearm>>>,
    make: fn() -> Pin<Box<dyn Rearm>>,
}

trait Rearm {
    fn arm(self: Pin<&mut Self>, duration: Duration);
    fn disarm(self: Pin<&mut Self>);
    fn poll_expired(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()>;
}

struct Slot<K: Timer> {
    sleep: Option<K::Sleep>,
    at: Deadlines,
}

/// A slot's bookkeeping beside its sleep (not pinned).
struct Deadlines {
    /// Whether a wait is using the sleep (its deadline counts).
    armed: bool,
    /// When the wait in progress (or the last one) ends. Stamps, not `Instant`s: two waits
    /// are armed per keep-alive request, and `Instant`'s arithmetic (seconds and nanoseconds
    /// apart, with carries and checks) cost each about 30 instructions more.
    deadline: Stamp,
    /// When the sleep goes off: at or before `deadline` while a wait is armed.
    goes_off: Stamp,
}

impl<K: Timer> Slot<K> {
    /// The sleep, pinned, and the bookkeeping beside it.
    fn parts(self: Pin<&mut Self>) -> (Pin<&mut Option<K::Sleep>>, &mut Deadlines) {
        // SAFETY: structural pinning of `sleep` (only replaced through `Pin::set`, which drops
        // the old value in place; `Slot` has no Drop impl); `at` is not pinned.
        let this = unsafe { self.get_unchecked_mut() };
        (unsafe { Pin::new_unchecked(&mut this.sleep) }, &mut this.at)
    }
}

impl<K: Timer> Rearm for Slot<K> {
    /// A later deadline than the sleep's, while it has yet to go off, is only written down:
    /// the sleep goes off early and is set again then (`poll_expired`). A keep-alive
    /// connection's waits alternate between a short one (the read's idle grace) and a long
    /// one (a write's timeout); moving the runtime's timer entry for each (as a reset does
    /// for an earlier deadline) cost about 300 instructions per request on monoio, and now
    /// happens about once per grace period instead.
    fn arm(self: Pin<&mut Self>, duration: Duration) {
        let now = Stamp::now();
        let deadline = now.after(duration);
        let (mut slot, at) = self.parts();
        at.armed = true;
        at.deadline = deadline;
        let lazy = now < at.goes_off && at.goes_off <= deadline;
        match slot.as_mut().as_pin_mut() {
            Some(_) if lazy => return,
            Some(sleep) => K::rearm(sleep, deadline.to_instant()),
            None => slot.set(Some(K::sleep(duration))),
        }
        at.goes_off = deadline;
    }

    fn disarm(self: Pin<&mut Self>) {
        // The sleep stays set (see `TimerSlot`).
        self.parts().1.armed = false;
    }

    fn poll_expired(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let (mut slot, at) = self.parts();
        if !at.armed {
            return Poll::Pending;
        }
        while let Some(mut sleep) = slot.as_mut().as_pin_mut() {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if Stamp::now() >= at.deadline {
                return Poll::Ready(());
            }
            // Gone off early (see `arm`): set for the wait's own deadline, and polled again
            // so that it wakes this task then.
            K::rearm(sleep, at.deadline.to_instant());
            at.goes_off = at.deadline;
        }
        Poll::Pending
    }
}

impl TimerSlot {
    /// A slot for the runtime `K`'s sleeps; nothing is allocated before the first wait.
    pub fn new<K: Timer>() -> TimerSlot {
        TimerSlot { slot: None, make: new_slot::<K> }
    }

    /// Run `fut` for at most `duration`, as [`timeout`] does, on this slot's timer.
    pub fn timeout<F: Future>(&mut self, duration: Duration, fut: F) -> SlotTimeout<'_, F> {
        let make = self.make;
        let slot = self.slot.get_or_insert_with(make);
        slot.as_mut().arm(duration);
        SlotTimeout { fut, slot }
    }

    /// Let go of the timer's memory (an idle connection waits on the executor's coarse
    /// [`IdleClock`](crate::idle_clock::IdleClock) instead); the next wait allocates it again.
    pub fn release(&mut self) {
        self.slot = None;
    }
}

fn new_slot<K: Timer>() -> Pin<Box<dyn Rearm>> {
    let now = Stamp::now();
    Box::pin(Slot::<K> { sleep: None, at: Deadlines { armed: false, deadline: now, goes_off: now } })
}

/// Future returned by [`TimerSlot::timeout`]; disarms the timer when it is done or dropped.
pub struct SlotTimeout<'a, F> {
    fut: F,
    slot: &'a mut Pin<Box<dyn Rearm>>,
}

impl<F: Future> Future for SlotTimeout<'_, F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: structural pinning of `fut`, as in `FirstOf`; `slot` is a reference (its
        // sleep is pinned in its own box). The Drop impl below moves nothing out of `fut`.
        let this = unsafe { self.get_unchecked_mut() };
        if let Poll::Ready(v) = unsafe { Pin::new_unchecked(&mut this.fut) }.poll(cx) {
            return Poll::Ready(Some(v));
        }
        if this.slot.as_mut().poll_expired(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}

impl<F> Drop for SlotTimeout<'_, F> {
    fn drop(&mut self) {
        self.slot.as_mut().disarm();
    }
}

/// Which of two futures finished first.
pub enum Either<A, B> {
    Left(A),
    Right(B),
}

/// Whichever of two futures finishes first (the other is dropped).
pub fn first_of<A: Future, B: Future>(a: A, b: B) -> FirstOf<A, B> {
    FirstOf { a, b }
}

/// Future returned by [`first_of`].
pub struct FirstOf<A, B> {
    a: A,
    b: B,
}

impl<A: Future, B: Future> Future for FirstOf<A, B> {
    type Output = Either<A::Output, B::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: structural pinning: neither field is moved out of the pinned struct, and it
        // has no Drop impl nor an Unpin impl of its own.
        let this = unsafe { self.get_unchecked_mut() };
        let (a, b) = unsafe { (Pin::new_unchecked(&mut this.a), Pin::new_unchecked(&mut this.b)) };
        if let Poll::Ready(v) = a.poll(cx) {
            return Poll::Ready(Either::Left(v));
        }
        if let Poll::Ready(v) = b.poll(cx) {
            return Poll::Ready(Either::Right(v));
        }
        Poll::Pending
    }
}

/// Poll `fut`, turning a panic inside it into an error.
pub fn catch_panic<F: Future>(fut: F) -> CatchPanic<F> {
    CatchPanic { fut }
}

/// Future returned by [`catch_panic`].
pub struct CatchPanic<F> {
    fut: F,
}

impl<F: Future> Future for CatchPanic<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: structural pinning, as in `FirstOf`.
        let fut = unsafe { self.map_unchecked_mut(|s| &mut s.fut) };
        match catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

/// Poll `fut`; a panic inside it ends it with `fallback()` instead, the panic kept in
/// `panic`. The output is `fut`'s own, not a `Result` around it: a large output (a
/// response) is then not moved once more into and out of the `Result` on its way.
pub fn catch_panic_or<'a, F: Future>(
    fut: F,
    panic: &'a mut Option<Box<dyn Any + Send>>,
    fallback: fn() -> F::Output,
) -> CatchPanicOr<'a, F> {
    CatchPanicOr { fut, panic, fallback }
}

/// Future returned by [`catch_panic_or`].
pub struct CatchPanicOr<'a, F: Future> {
    fut: F,
    panic: &'a mut Option<Box<dyn Any + Send>>,
    fallback: fn() -> F::Output,
}

impl<F: Future> Future for CatchPanicOr<'_, F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: structural pinning of `fut`, as in `FirstOf`; the other fields are not
        // pinned, and not moved out of either.
        let this = unsafe { self.get_unchecked_mut() };
        let fut = unsafe { Pin::new_unchecked(&mut this.fut) };
        match catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(polled) => polled,
            Err(panic) => {
                *this.panic = Some(panic);
                Poll::Ready((this.fallback)())
            }
        }
    }
}

#[cfg(all(test, feature = "tokio"))]
mod tests {
    use super::*;
    use crate::runtime::tokio::Tokio;

    #[test]
    fn a_timer_slot_keeps_later_deadlines_and_meets_earlier_ones() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async {
            let mut slot = TimerSlot::new::<Tokio>();
            // A wait that ends at once leaves the sleep set to go off in 50 ms.
            assert_eq!(slot.timeout(Duration::from_millis(50), async { 1 }).await, Some(1));
            // A longer wait after it is only written down, and not ended when that goes off.
            let long =
                slot.timeout(Duration::from_secs(1), tokio::time::sleep(Duration::from_millis(300))).await;
            assert!(long.is_some(), "a 1 s wait ended when an earlier wait's sleep went off");
            // The sleep is now set for the end of that 1 s wait; a 5 s wait after it is only
            // written down, and a 30 ms one after that is met although it is earlier.
            assert!(slot.timeout(Duration::from_secs(5), async {}).await.is_some());
            let started = Instant::now();
            let short = slot.timeout(Duration::from_millis(30), std::future::pending::<()>()).await;
            assert!(short.is_none());
            let took = started.elapsed();
            assert!(took >= Duration::from_millis(30), "ended after {took:?}");
            assert!(
                took < Duration::from_millis(500),
                "a 30 ms wait took {took:?}: the sleep kept a later deadline"
            );
        });
    }
}
