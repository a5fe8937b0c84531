//! The WebSocket session driver: after the `101`, it takes over the connection's transport
//! and the bytes already read past the handshake, and runs the handler beside four small
//! loops in one future:
//!
//! - **read**: decode frames; messages go to the handler's inbox, pings are answered,
//!   a close is answered; a protocol error fails the connection with its close code.
//! - **write**: write what `send` and the other loops encoded, then end the connection: after
//!   a close frame, wait for the peer's (up to `close_timeout`), then FIN.
//! - **keepalive**: a ping every `ping_interval`; no pong within `ping_timeout` is 1011.
//! - **drain**: when the executor drains, tell the handler (`WebSocket::draining`), then close
//!   with 1001 (the server stops) or 1012 (it goes on: reload, recycling), so no client sees a
//!   reset without a close frame.
//!
//! The session ends once the connection is finished and the handler has returned.

use std::cell::RefCell;
use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::deflate::DeflateParams;
use super::frame::{self, code, Decoder, Event, OpCode};
use super::outbox::Batch;
use super::socket::{driver_wait, text, Message, Shared, State, WebSocket};
use super::{Upgrade, WsConfig};
use crate::coop::InlineWake;
use crate::idle_clock::IdleClock;
use crate::io::{
    catch_panic, first_of, timeout_boxed, Either, ReadHalf, Timer, TimerSlot, Transport, WriteHalf,
};
use crate::latch::Latch;
use crate::state::{ExecutorStats, ServerState};

/// Polls of a session in a row, while its parts keep waking one another, before it lets the
/// executor's other tasks run.
const INLINE_POLLS: usize = 16;
/// The room reads start with, and never go below. A read in flight owns its buffer
/// (io_uring), so this is what an idle WebSocket holds for reading.
const READ_MIN: usize = 2 * 1024;
/// The most room one read gets: a large message is read in pieces of this size.
const READ_MAX: usize = 64 * 1024;
/// The write buffer is kept between writes unless a large message grew it past this (an
/// idle WebSocket should not hold on to the memory of its largest message).
const KEEP_WRITE_BUF: usize = 16 * 1024;
/// A read that waited this long (by the executor's tick, see `read_more`) leaves the
/// WebSocket quiet: its next read waits for readiness first, without a buffer.
const QUIET: Duration = Duration::from_millis(250);

/// What the session needs from its executor.
pub struct SessionCtx<'a> {
    pub config: &'a WsConfig,
    /// Longest time one write may take (a peer that stops reading).
    pub write_timeout: Duration,
    /// Fired when the executor drains.
    pub drain: &'a Latch,
    /// Whether the whole server is stopping (1001) rather than replacing executors (1012).
    pub state: &'a ServerState,
    /// The executor's counters (`/metrics`).
    pub stats: &'a Arc<ExecutorStats>,
    /// The executor's coarse clock, for the keepalive's long waits.
    pub idle_clock: &'a IdleClock,
}

/// What a finished WebSocket's access log line needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionReport {
    /// Bytes read from the client after the handshake (frames as on the wire).
    pub bytes_in: u64,
    /// Bytes written to the client after the `101`.
    pub bytes_out: u64,
}

/// Run a WebSocket on `io` until it is closed and its handler has returned. `leftover`:
/// bytes read past the handshake, the start of the client's first frames.
///
/// A plain function that builds the session's parts and returns them as one future
/// (`Session`): an `async fn` would keep its arguments and every part beside the futures
/// they were moved into (the frame decoder alone is 256 bytes), for the WebSocket's whole
/// life, and idle WebSockets are mostly this future.
pub fn run<'a, T: Transport, K: Timer>(
    io: T,
    leftover: BytesMut,
    upgrade: Upgrade,
    ctx: SessionCtx<'a>,
) -> impl Future<Output = SessionReport> + 'a {
    ExecutorStats::add(&ctx.stats.ws.open, 1);
    // Counted down however the session ends (the future may be dropped when the executor
    // stops).
    let open = OpenGuard(ctx.stats);
    let (reader, writer) = io.split();
    let deflate = upgrade.deflate;
    let shared: Shared = Rc::new(RefCell::new(State::default()));
    {
        let mut s = shared.borrow_mut();
        s.deflater = deflate.as_ref().map(DeflateParams::deflater);
        s.stats = Some(ctx.stats.clone());
        s.received(leftover.len());
    }
    let socket = WebSocket::new(shared.clone(), upgrade.protocol);
    let handler = catch_panic((upgrade.run)(socket));
    let write = write_loop::<_, K>(writer, shared.clone(), ctx.config.close_timeout, ctx.write_timeout);
    // The side loops are dropped as soon as the connection is finished: the reader's read in
    // flight holds the socket open, and the handler may still be running.
    let decoder = match &deflate {
        Some(params) => Decoder::with_inflater(ctx.config.max_message, params.inflater()),
        None => Decoder::new(ctx.config.max_message),
    };
    let read = read_loop::<_, K>(reader, leftover, decoder, shared.clone(), ctx.config);
    let keepalive =
        keepalive(shared.clone(), ctx.idle_clock, ctx.config.ping_interval, ctx.config.ping_timeout);
    let drain = drain::<K>(shared.clone(), ctx.drain, ctx.state, ctx.config.close_timeout);
    let inline = Arc::new(InlineWake::default());
    Session {
        parts: Parts {
            handler,
            read: Some(read),
            write,
            keepalive: Some(keepalive),
            drain: Some(drain),
            shared,
            handler_done: false,
            connection_done: false,
        },
        waker: Waker::from(inline.clone()),
        inline,
        yielding: None,
        _open: open,
    }
}

/// Future returned by [`run`].
struct Session<'a, H, R, W, A, D> {
    parts: Parts<H, R, W, A, D>,
    /// The parts wake one another as they go (a message for the handler, a frame to write):
    /// such a wake polls them again in the same poll, not through the executor (see
    /// `InlineWake`).
    inline: Arc<InlineWake>,
    waker: Waker,
    /// A yield in progress after `INLINE_POLLS` polls in a row.
    yielding: Option<crate::coop::YieldNow>,
    _open: OpenGuard<'a>,
}

/// The handler and the read, write, keepalive and drain loops, polled together.
struct Parts<H, R, W, A, D> {
    handler: H,
    read: Option<R>,
    write: W,
    keepalive: Option<A>,
    drain: Option<D>,
    shared: Shared,
    handler_done: bool,
    connection_done: bool,
}

impl<H, R, W, A, D> Parts<H, R, W, A, D>
where
    H: Future<Output = Result<(), Box<dyn std::any::Any + Send>>>,
    R: Future<Output = ()>,
    W: Future<Output = ()>,
    A: Future<Output = ()>,
    D: Future<Output = ()>,
{
    /// Poll every part that is not done; true once the handler has returned and the
    /// connection is finished.
    fn step(self: Pin<&mut Self>, cx: &mut Context<'_>) -> bool {
        // SAFETY: structural pinning of the futures (`handler`, `read`, `write`, `keepalive`,
        // `drain`): none is moved out of the pinned struct (an `Option` is emptied through
        // `Pin::set`, which drops in place), and `Parts` has no Drop or Unpin impl.
        let this = unsafe { self.get_unchecked_mut() };
        if !this.handler_done {
            if let Poll::Ready(result) = unsafe { Pin::new_unchecked(&mut this.handler) }.poll(cx) {
                this.handler_done = true;
                let mut s = this.shared.borrow_mut();
                s.handler_gone = true;
                s.inbox.clear();
                match result {
                    // After a drain notice, the handler's return is its goodbye.
                    Ok(()) => {
                        let code = s.draining.unwrap_or(code::NORMAL);
                        s.close(code, "");
                    }
                    Err(_) => {
                        tracing::error!("WebSocket handler panicked; closing with 1011");
                        s.close(code::INTERNAL_ERROR, "");
                    }
                }
            }
        }
        if !this.connection_done {
            let (mut read, mut keepalive, mut drain) = unsafe {
                (
                    Pin::new_unchecked(&mut this.read),
                    Pin::new_unchecked(&mut this.keepalive),
                    Pin::new_unchecked(&mut this.drain),
                )
            };
            // The side loops first: what they queue is written in this same poll.
            poll_side(read.as_mut(), cx);
            poll_side(keepalive.as_mut(), cx);
            poll_side(drain.as_mut(), cx);
            this.connection_done = unsafe { Pin::new_unchecked(&mut this.write) }.poll(cx).is_ready();
            if this.connection_done {
                read.set(None);
                keepalive.set(None);
                drain.set(None);
            }
        }
        this.handler_done && this.connection_done
    }
}

impl<H, R, W, A, D> Future for Session<'_, H, R, W, A, D>
where
    H: Future<Output = Result<(), Box<dyn std::any::Any + Send>>>,
    R: Future<Output = ()>,
    W: Future<Output = ()>,
    A: Future<Output = ()>,
    D: Future<Output = ()>,
{
    type Output = SessionReport;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<SessionReport> {
        // SAFETY: `parts` is structurally pinned (never moved out; `Session` has no Drop or
        // Unpin impl of its own); the other fields are not pinned (a `YieldNow` is `Unpin`).
        let this = unsafe { self.get_unchecked_mut() };
        let mut parts = unsafe { Pin::new_unchecked(&mut this.parts) };
        if let Some(y) = this.yielding.as_mut() {
            if Pin::new(y).poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.yielding = None;
        }
        let mut inner = Context::from_waker(&this.waker);
        for _ in 0..INLINE_POLLS {
            this.inline.begin(cx.waker());
            if parts.as_mut().step(&mut inner) {
                this.inline.end();
                let s = parts.shared.borrow();
                return Poll::Ready(SessionReport { bytes_in: s.bytes_in, bytes_out: s.bytes_out });
            }
            if !this.inline.end() {
                return Poll::Pending;
            }
        }
        // Still busy: yield, so the executor's other tasks run first (and its timers, if they
        // are late: see `coop::yield_now`).
        let mut y = crate::coop::yield_now();
        if Pin::new(&mut y).poll(cx).is_pending() {
            this.yielding = Some(y);
        } else {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

/// Counts an open WebSocket down when dropped.
struct OpenGuard<'a>(&'a ExecutorStats);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        ExecutorStats::sub(&self.0.ws.open, 1);
    }
}

/// Poll a side loop until it ends, then drop it.
fn poll_side<F: Future<Output = ()>>(mut side: Pin<&mut Option<F>>, cx: &mut Context<'_>) {
    if let Some(fut) = side.as_mut().as_pin_mut() {
        if fut.poll(cx).is_ready() {
            side.set(None);
        }
    }
}

/// Decode the peer's frames until its close frame, its end of stream or a protocol error.
async fn read_loop<R: ReadHalf, K: Timer>(
    mut reader: R,
    mut rbuf: BytesMut,
    mut decoder: Decoder,
    shared: Shared,
    config: &WsConfig,
) {
    let shared = &shared;
    // Before a close frame goes out (the peer's answered, or ours for its error), the handler
    // takes the messages that came first and may still answer them: a close ends what it
    // may send.
    let taken = |s: &State| s.inbox.is_empty() || s.handler_gone || s.done;
    let mut size = READ_MIN;
    // A new WebSocket waits for its first frame as a quiet one does.
    let mut quiet = true;
    loop {
        loop {
            let event = match decoder.decode(&mut rbuf) {
                Ok(Some(event)) => event,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "WebSocket protocol error; failing the connection");
                    timeout_boxed::<K, _>(config.close_timeout, driver_wait(shared, taken)).await;
                    shared.borrow_mut().fail(e.close_code(), e.reason());
                    // Boxed: rare, and as large as the read it follows.
                    return Box::pin(discard(reader, rbuf, shared)).await;
                }
            };
            if matches!(event, Event::Text(_) | Event::Binary(_)) {
                shared.borrow().count(|ws| ExecutorStats::add(&ws.messages_in, 1));
            }
            let message = match event {
                Event::Text(bytes) => text(bytes),
                Event::Binary(bytes) => Message::Binary(bytes),
                Event::Ping(payload) => {
                    let mut s = shared.borrow_mut();
                    if !s.close_sent {
                        frame::encode(s.outbox.buf(), OpCode::Pong, &payload);
                        s.notify();
                    }
                    continue;
                }
                Event::Pong(_) => {
                    let mut s = shared.borrow_mut();
                    s.ping_outstanding = false;
                    s.notify();
                    continue;
                }
                Event::Close(close) => {
                    let code = close.as_ref().map(|c| c.code);
                    shared.borrow().count(|ws| ws.close_received(code));
                    // As for an error: the handler answers what came before the close first.
                    timeout_boxed::<K, _>(config.close_timeout, driver_wait(shared, taken)).await;
                    let mut s = shared.borrow_mut();
                    s.peer_closed = true;
                    if !s.close_sent && !s.done {
                        // Echo the peer's code (RFC 6455 §5.5.1); an empty close gets one.
                        match code {
                            Some(code) => frame::encode_close(s.outbox.buf(), code, ""),
                            None => frame::encode(s.outbox.buf(), OpCode::Close, b""),
                        }
                        s.close_sent = true;
                        s.count(|ws| ws.close_sent(code));
                    }
                    if !s.handler_gone {
                        s.inbox.push_back(Message::Close(close));
                    }
                    s.notify();
                    return;
                }
            };
            driver_wait(shared, |s| !s.inbox_full() || s.handler_gone || s.done).await;
            let mut s = shared.borrow_mut();
            if !s.handler_gone {
                s.inbox.push_back(message);
                s.notify();
            }
        }
        match read_more(&mut reader, &mut rbuf, &mut size, &mut quiet, shared).await {
            true => {}
            false => return gone(shared),
        }
    }
}

/// One read into `rbuf` (counted as received); false at end of stream or on an error.
///
/// `size` is the room reads get: doubled (up to `READ_MAX`) when a read fills all of it, as
/// a large message streams in, and halved (down to `READ_MIN`) when a read uses less than a
/// quarter, so that a WebSocket that goes quiet goes back to a small buffer.
///
/// `quiet`: the last read waited `QUIET` or longer. Most WebSockets are idle most of the
/// time, and a read in flight owns its buffer; so a quiet one, with no partial frame, lets
/// go of its buffer and waits for readiness before it reads (one more wait on the socket,
/// only after a long one), while a busy one reads at once. A busy one that falls quiet
/// keeps its buffer until its next frame, and lets go of it in every wait after.
async fn read_more<R: ReadHalf>(
    reader: &mut R,
    rbuf: &mut BytesMut,
    size: &mut usize,
    quiet: &mut bool,
    shared: &Shared,
) -> bool {
    if *quiet && rbuf.is_empty() {
        *rbuf = BytesMut::new();
        if reader.readable().await.is_err() {
            return false;
        }
    }
    if rbuf.is_empty() && rbuf.capacity() > 2 * *size {
        *rbuf = BytesMut::with_capacity(*size);
    } else if rbuf.capacity() - rbuf.len() < *size / 2 {
        rbuf.reserve(*size);
    }
    let room = rbuf.capacity() - rbuf.len();
    let began = crate::coop::last_tick();
    let (result, buf) = reader.read(mem::take(rbuf)).await;
    *rbuf = buf;
    *quiet = matches!((began, crate::coop::last_tick()), (Some(a), Some(b)) if b - a >= QUIET);
    match result {
        Ok(n) if n > 0 => {
            shared.borrow_mut().received(n);
            if n >= room && *size < READ_MAX {
                *size *= 2;
            } else if n < room / 4 && *size > READ_MIN {
                *size /= 2;
            }
            true
        }
        _ => false,
    }
}

/// The peer's side ended.
fn gone(shared: &Shared) {
    let mut s = shared.borrow_mut();
    s.peer_gone = true;
    s.notify();
}

/// After a protocol error: read and drop whatever the peer still sends until it closes, so
/// that unread bytes do not turn our close into a reset that could destroy the close frame.
async fn discard<R: ReadHalf>(mut reader: R, mut rbuf: BytesMut, shared: &Shared) {
    let mut size = READ_MIN;
    let mut quiet = false;
    loop {
        rbuf.clear();
        if !read_more(&mut reader, &mut rbuf, &mut size, &mut quiet, shared).await {
            return gone(shared);
        }
    }
}

/// Write queued frames; end the connection after the close frame.
async fn write_loop<W: WriteHalf, K: Timer>(
    mut writer: W,
    shared: Shared,
    close_timeout: Duration,
    write_timeout: Duration,
) {
    let shared = &shared;
    let mut spare = BytesMut::new();
    // The writes' timer, made with the first write and re-armed for each one after.
    let mut timer = TimerSlot::new::<K>();
    loop {
        driver_wait(shared, |s| !s.outbox.is_empty() || s.close_sent || s.peer_gone).await;
        let pending = {
            let mut s = shared.borrow_mut();
            if s.outbox.is_empty() {
                None
            } else {
                // Frames queued while this batch is written go into the spare buffer.
                let len = s.outbox.len();
                Some((len, s.outbox.take(mem::take(&mut spare))))
            }
        };
        if let Some((len, batch)) = pending {
            let written = match batch {
                Batch::Encoded(buf) => match timer.timeout(write_timeout, writer.write_all(buf)).await {
                    Some((Ok(()), mut buf)) => {
                        if buf.capacity() <= KEEP_WRITE_BUF {
                            buf.clear();
                            spare = buf;
                        }
                        true
                    }
                    _ => false,
                },
                Batch::Parts(parts) => {
                    // Boxed: only batches with a large message take this path, and an idle
                    // WebSocket's future should not hold room for it.
                    let write = Box::pin(writer.write_parts(parts));
                    matches!(timer.timeout(write_timeout, write).await, Some(Ok(())))
                }
            };
            if !written {
                return finish(shared);
            }
            let mut s = shared.borrow_mut();
            s.sent(len);
            s.notify(); // room for `send`
            continue;
        }
        let (close_sent, failing) = {
            let s = shared.borrow();
            (s.close_sent, s.failing)
        };
        if !close_sent {
            // The peer went away without a close frame; nothing can be said to it any more.
            return finish(shared);
        }
        // The close frame is written.
        if !failing {
            let answered = |s: &State| s.peer_closed || s.peer_gone || s.failing;
            timeout_boxed::<K, _>(close_timeout, driver_wait(shared, answered)).await;
        }
        let _ = timeout_boxed::<K, _>(write_timeout, writer.shutdown()).await;
        if !shared.borrow().peer_closed {
            // Give the reader the time to see the peer close its side too (it discards).
            timeout_boxed::<K, _>(close_timeout, driver_wait(shared, |s| s.peer_gone || s.peer_closed)).await;
        }
        return finish(shared);
    }
}

fn finish(shared: &Shared) {
    let mut s = shared.borrow_mut();
    s.done = true;
    s.outbox.clear();
    s.notify();
}

/// Ping the peer every `interval` (zero: never); fail with 1011 if a pong does not come back
/// within `wait`. Both waits are on the executor's coarse clock (exact to its 100 ms tick,
/// for waits of seconds): a runtime's sleep is much larger, and every idle WebSocket waits
/// here.
async fn keepalive(shared: Shared, clock: &IdleClock, interval: Duration, wait: Duration) {
    let shared = &shared;
    if interval.is_zero() {
        return;
    }
    let closing = |s: &State| s.close_sent || s.done;
    loop {
        let next = clock.until(Instant::now() + interval);
        if let Either::Right(()) = first_of(next, driver_wait(shared, closing)).await {
            return;
        }
        {
            let mut s = shared.borrow_mut();
            if closing(&s) {
                return;
            }
            frame::encode(s.outbox.buf(), OpCode::Ping, b"");
            s.ping_outstanding = true;
            s.notify();
        }
        let answered = |s: &State| !s.ping_outstanding || s.close_sent || s.done;
        let late = clock.until(Instant::now() + wait);
        if let Either::Right(()) = first_of(driver_wait(shared, answered), late).await {
            tracing::debug!("WebSocket ping unanswered; closing with 1011");
            shared.borrow_mut().fail(code::INTERNAL_ERROR, "ping timeout");
            return;
        }
    }
}

/// Close with 1001 when the server stops, 1012 when it goes on with other executors. A
/// handler awaiting `WebSocket::draining` is told first and may close by itself, within
/// `grace`.
async fn drain<K: Timer>(shared: Shared, latch: &Latch, state: &ServerState, grace: Duration) {
    let shared = &shared;
    let closing = |s: &State| s.close_sent || s.done;
    if let Either::Left(()) = first_of(latch.wait(), driver_wait(shared, closing)).await {
        let (code, reason) = match state.is_draining() {
            true => (code::GOING_AWAY, "server shutting down"),
            false => (code::SERVICE_RESTART, "server restarting"),
        };
        let watched = {
            let mut s = shared.borrow_mut();
            s.draining = Some(code);
            s.notify();
            s.drain_watched
        };
        if watched {
            timeout_boxed::<K, _>(grace, driver_wait(shared, closing)).await;
        }
        shared.borrow_mut().close(code, reason);
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
