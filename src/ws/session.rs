//! The WebSocket session driver: after the `101`, it takes over the connection's transport
//! and the bytes already read past the handshake, and runs the handler beside four small
//! loops:
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
//! Most WebSockets are quiet most of the time, and the four loops' futures take about 2 KB.
//! So a quiet one **parks**, as an idle HTTP connection does (`conn_parked.rs`): once its
//! read waits for readiness without a buffer, nothing is queued or being written, and the
//! drain has not begun, the loops are dropped (what lasts, the socket halves and the frame
//! decoder, is kept apart in `Kept`), and a small wait (`quiet`) watches what would give
//! them work: the socket turning readable, a frame queued by the handler (from any task), the
//! keepalive's next deadline, the drain. Then the loops are built again and go on.
//!
//! The session ends once the connection is finished and the handler has returned.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::marker::PhantomData;
use std::mem;
use std::num::NonZeroU64;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::frame::{self, code, Decoder, Event, OpCode};
use super::outbox::Batch;
use super::socket::{driver_wait, text, Message, Shared, State, WebSocket};
use super::{Upgrade, WsConfig};
use crate::coop::InlineWaker;
use crate::idle_clock::IdleClock;
use crate::io::{
    catch_panic, first_of, timeout_boxed, CatchPanic, Either, ReadHalf, Timer, TimerSlot, Transport,
    WriteHalf,
};
use crate::latch::Latch;
use crate::stamp::Stamp;
use crate::state::{ExecutorStats, ServerState};

/// Polls of a session in a row, while its parts keep waking one another, before it lets the
/// executor's other tasks run.
const INLINE_POLLS: usize = 16;
/// The room reads start with, and never go below.
const READ_MIN: u32 = 2 * 1024;
/// The most room one read gets: a large message is read in pieces of this size.
const READ_MAX: u32 = 64 * 1024;
/// The write buffer is kept between writes unless a large message grew it past this (an
/// idle WebSocket should not hold on to the memory of its largest message).
const KEEP_WRITE_BUF: usize = 16 * 1024;
/// A read that completes this long (by the executor's tick, see `read_more`) after the one
/// before leaves the WebSocket quiet: its next read waits for readiness first, without a
/// buffer, and the session may park meanwhile. In milliseconds (see `coop::last_tick_ms`).
const QUIET_MS: u32 = 250;
/// The deadline of a parked WebSocket's wait on the executor's clock when it has no
/// keepalive to wait for.
const NO_DEADLINE: Duration = Duration::from_secs(365 * 24 * 3600);

/// What the session needs from its executor (the connection driver's context has it all).
pub trait SessionEnv {
    fn ws_config(&self) -> &WsConfig;
    /// Longest time one write may take (a peer that stops reading).
    fn write_timeout(&self) -> Duration;
    /// Fired when the executor drains; the executor's idle clock wakes all its waiters then.
    fn drain(&self) -> &Latch;
    /// Whether the whole server is stopping (1001) rather than replacing executors (1012).
    fn server_state(&self) -> &ServerState;
    /// The executor's counters (`/metrics`).
    fn stats(&self) -> &Arc<ExecutorStats>;
    /// The executor's coarse clock, for the keepalive's long waits.
    fn idle_clock(&self) -> &IdleClock;
}

/// What a finished WebSocket's access log line needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionReport {
    /// Bytes read from the client after the handshake (frames as on the wire).
    pub bytes_in: u64,
    /// Bytes written to the client after the `101`.
    pub bytes_out: u64,
}

/// The user's handler, as the session polls it.
type Handler = CatchPanic<Pin<Box<dyn Future<Output = ()>>>>;

/// What outlasts the loops when a session parks: the loops borrow it while they run (the
/// borrow ends when they are dropped), and so does the quiet wait.
struct Kept<R, W> {
    read: RefCell<Reading<R>>,
    writer: RefCell<W>,
    keepalive_due: Due,
}

/// The keepalive's deadline: its next ping, or the pong it waits for
/// (`State::ping_outstanding`). Kept with what outlasts the loops, where a parked session's
/// wait watches it and a keepalive built again after the park finds it. As a `Stamp`'s
/// nanoseconds: 8 bytes where an `Option<Instant>` is 16, which in the shared state made
/// every WebSocket's a size class larger.
#[derive(Default)]
struct Due(Cell<Option<NonZeroU64>>);

impl Due {
    fn get(&self) -> Option<Instant> {
        self.0.get().map(|nanos| Stamp::from_nanos(nanos.get()).to_instant())
    }

    fn is_set(&self) -> bool {
        self.0.get().is_some()
    }

    /// Set it `after` from now; returns it.
    fn set_after(&self, after: Duration) -> Instant {
        let due = Stamp::now().after(after);
        self.0.set(NonZeroU64::new(due.nanos().max(1)));
        due.to_instant()
    }

    fn clear(&self) {
        self.0.set(None);
    }
}

/// The read side's lasting state.
struct Reading<R> {
    reader: R,
    /// Holds a message's fragments and the inflater's window between reads.
    decoder: Decoder,
    /// The room the next read gets (see `read_more`).
    size: u32,
    /// The executor's tick when the last read completed, `coop::last_tick_ms` (see
    /// `read_more`).
    last_read: u32,
}

/// Run a WebSocket on `io` until it is closed and its handler has returned. `leftover`:
/// bytes read past the handshake, the start of the client's first frames.
///
/// `ctx`: the session's executor, as one pointer (a struct of six references was 56 bytes,
/// in every idle WebSocket's session and quiet wait); owned rather than borrowed, so that the
/// connection's task holds the session alone; thin (the driver's own context type, not a
/// trait object) where it can be.
pub fn run<'a, T: Transport, K: Timer, E: SessionEnv + ?Sized + 'a>(
    io: T,
    leftover: BytesMut,
    upgrade: Upgrade,
    ctx: Rc<E>,
) -> impl Future<Output = SessionReport> + 'a {
    let (reader, writer) = io.split();
    let deflate = upgrade.deflate;
    let shared: Shared = Rc::new(RefCell::new(State::default()));
    {
        let mut s = shared.borrow_mut();
        s.deflater = deflate.as_ref().map(|params| Box::new(params.deflater()));
        s.stats = Some(ctx.stats().clone());
        s.received(leftover.len());
    }
    let socket = WebSocket::new(shared.clone(), upgrade.protocol);
    let handler = catch_panic((upgrade.run)(socket));
    let decoder = match &deflate {
        Some(params) => Decoder::with_inflater(ctx.ws_config().max_message, params.inflater()),
        None => Decoder::new(ctx.ws_config().max_message),
    };
    let reading = Reading { reader, decoder, size: READ_MIN, last_read: crate::coop::last_tick_ms() };
    let kept = Rc::new(Kept {
        read: RefCell::new(reading),
        writer: RefCell::new(writer),
        keepalive_due: Due::default(),
    });
    let mut driver = Driver::<'a, T::ReadHalf, T::WriteHalf, K, E> {
        handler: Some(handler),
        conn: None,
        shared,
        ctx,
        _timer: PhantomData,
    };
    // A new WebSocket waits for its first frame as a quiet one does.
    driver.conn = Some(driver.loops(kept, leftover, true));
    // Counted once the session exists (a handler that panics while making its future leaves
    // no session to count down), and counted down however it ends (see `Session`'s `Drop`).
    ExecutorStats::add(&driver.ctx.stats().ws.open, 1);
    Session { driver, waker: InlineWaker::new(), paused: None }
}

/// Future returned by [`run`]: its driver, polled with a waker of its own.
struct Session<'a, R, W, K, E: SessionEnv + ?Sized> {
    driver: Driver<'a, R, W, K, E>,
    /// The parts wake one another as they go (a message for the handler, a frame to write):
    /// such a wake polls them again in the same poll, not through the executor (see
    /// `InlineWake`).
    waker: InlineWaker,
    /// A pause in progress after `INLINE_POLLS` polls in a row, when the executor's timers
    /// are late (see `coop::pause_if_timers_late`).
    /// (Boxed twice, for a thin pointer: rare, and every session keeps the room.)
    paused: Option<Box<Pin<Box<dyn Future<Output = ()>>>>>,
}

/// Counts the open WebSocket down however the session ends (the future may be dropped when
/// the executor stops).
impl<R, W, K, E: SessionEnv + ?Sized> Drop for Session<'_, R, W, K, E> {
    fn drop(&mut self) {
        ExecutorStats::sub(&self.driver.ctx.stats().ws.open, 1);
    }
}

/// The handler, and the connection's loops or their quiet wait.
struct Driver<'a, R, W, K, E: ?Sized> {
    /// `None` once it has returned.
    handler: Option<Handler>,
    /// The read, write, keepalive and drain loops, boxed (about 2 KB); or while the
    /// connection is parked (`Part::quiet`), their quiet wait. Either holds what outlasts the
    /// loops (`Kept`: the socket's halves and the decoder). `None` once the connection is
    /// finished, so the socket closes then even if the handler goes on.
    conn: Option<Pin<Box<dyn Part<R, W> + 'a>>>,
    shared: Shared,
    ctx: Rc<E>,
    _timer: PhantomData<fn() -> K>,
}

/// The connection's side of a session: its loops, or while it is parked their quiet wait.
trait Part<R, W> {
    fn step(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Step>;
    /// What outlasts the loops, which this part shares.
    fn kept(&self) -> &Rc<Kept<R, W>>;
    /// Whether this is the quiet wait of a parked connection, not its loops.
    fn quiet(&self) -> bool;
}

/// What ended a poll of the connection's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The loops ended: the connection is finished.
    Finished,
    /// The quiet wait ended, the socket readable (or failed): read at once.
    Readable,
    /// The quiet wait ended for something else: a frame to write, the keepalive's deadline,
    /// the drain.
    Work,
}

impl<'a, R: ReadHalf, W: WriteHalf, K: Timer, E: SessionEnv + ?Sized + 'a> Driver<'a, R, W, K, E> {
    /// The connection's loops, to start or to go on after a park. `quiet`: the read waits for
    /// readiness before it reads.
    fn loops(&self, kept: Rc<Kept<R, W>>, rbuf: BytesMut, quiet: bool) -> Pin<Box<dyn Part<R, W> + 'a>> {
        let (shared, ctx) = (&self.shared, &self.ctx);
        let config = ctx.ws_config();
        Box::pin(Parts {
            read: Some(read_loop::<R, W, K, E>(kept.clone(), rbuf, quiet, shared.clone(), ctx.clone())),
            write: write_loop::<R, W, K>(
                kept.clone(),
                shared.clone(),
                config.close_timeout,
                ctx.write_timeout(),
            ),
            keepalive: Some(keepalive(kept.clone(), shared.clone(), ctx.clone())),
            drain: Some(drain::<K, E>(shared.clone(), ctx.clone())),
            kept,
        })
    }

    /// Poll the handler and the connection once; true when both are done.
    fn step(&mut self, cx: &mut Context<'_>) -> bool {
        if let Some(handler) = self.handler.as_mut() {
            if let Poll::Ready(result) = Pin::new(handler).poll(cx) {
                self.handler = None;
                let mut s = self.shared.borrow_mut();
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
        if let Some(wait) = self.conn.as_mut().filter(|part| part.quiet()) {
            if let Poll::Ready(woke) = wait.as_mut().step(cx) {
                let kept = wait.kept().clone();
                // The wait's borrow of the reader ends before the loops take it again.
                self.conn = None;
                self.conn = Some(self.loops(kept, BytesMut::new(), woke == Step::Work));
            }
        }
        if let Some(loops) = self.conn.as_mut().filter(|part| !part.quiet()) {
            if loops.as_mut().step(cx).is_ready() {
                self.conn = None;
            }
        }
        self.handler.is_none() && self.conn.is_none()
    }

    /// Park the connection if its loops have nothing to do (see the module's comment);
    /// true if it parked. Called only when a poll left nothing woken, so every loop is
    /// suspended where it last awaited.
    fn park(&mut self) -> bool {
        let loops = match &self.conn {
            Some(loops) if !loops.quiet() && !self.ctx.drain().is_fired() => loops,
            _ => return false,
        };
        {
            let s = self.shared.borrow();
            // The read waits for readiness (no read with a buffer in flight), the writer
            // waits for frames (none being written), the keepalive has a deadline to wait for.
            let keepalive_waits =
                loops.kept().keepalive_due.is_set() || self.ctx.ws_config().ping_interval.is_zero();
            if !(s.read_idle && s.write_idle && keepalive_waits && quiet_state(&s)) {
                return false;
            }
        }
        let kept = loops.kept().clone();
        self.conn = None;
        self.shared.borrow_mut().release_room();
        self.conn = Some(Box::pin(quiet(kept, self.shared.clone(), self.ctx.clone())));
        true
    }
}

impl<'a, R: ReadHalf, W: WriteHalf, K: Timer, E: SessionEnv + ?Sized + 'a> Future
    for Session<'a, R, W, K, E>
{
    type Output = SessionReport;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<SessionReport> {
        // Every field is Unpin: the futures it polls are boxed.
        let this = self.get_mut();
        if let Some(pause) = this.paused.as_mut() {
            if pause.as_mut().as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.paused = None;
        }
        let driver = &mut this.driver;
        let (mut inner, inline) = (Context::from_waker(this.waker.waker()), this.waker.inline());
        for _ in 0..INLINE_POLLS {
            inline.begin(cx.waker());
            if driver.step(&mut inner) {
                inline.end();
                let s = driver.shared.borrow();
                return Poll::Ready(SessionReport { bytes_in: s.bytes_in, bytes_out: s.bytes_out });
            }
            // Nothing woke meanwhile: every part waits. A parked connection's wait is polled
            // at once, so that it is registered with what it waits for.
            if !inline.end() && !driver.park() {
                return Poll::Pending;
            }
        }
        // Still busy: yield, so the executor's other tasks run first (and its timers, if they
        // are late: see `coop::yield_now`).
        match crate::coop::pause_if_timers_late() {
            Some(mut pause) => {
                if pause.as_mut().poll(cx).is_pending() {
                    this.paused = Some(Box::new(pause));
                } else {
                    cx.waker().wake_by_ref();
                }
            }
            None => cx.waker().wake_by_ref(),
        }
        Poll::Pending
    }
}

/// Nothing for the writer to do, and no close under way: the state a quiet connection is
/// in, and leaves when the handler (or anyone) queues a frame or a close begins.
fn quiet_state(s: &State) -> bool {
    s.outbox.is_empty()
        && !(s.close_sent || s.done || s.peer_gone || s.peer_closed || s.failing || s.draining.is_some())
}

/// A parked connection's wait: it ends when the socket turns readable, when the connection
/// has something to do (`quiet_state` no longer holds), at the keepalive's deadline, or when
/// the executor drains. It holds no buffer, and no loop.
fn quiet<'a, R: ReadHalf + 'a, W: 'a, E: SessionEnv + ?Sized + 'a>(
    kept: Rc<Kept<R, W>>,
    shared: Shared,
    ctx: Rc<E>,
) -> impl Part<R, W> + 'a {
    debug_assert!(kept.read.try_borrow_mut().is_ok(), "nothing else reads while the session is parked");
    // SAFETY: the reader lives in `kept`'s allocation, which the wait holds and drops only
    // after the readiness future that borrows the reader (see `QuietWait`). Nothing else
    // touches the reader meanwhile: a parked session's loops are dropped, and `Driver::step`
    // drops the wait before it builds them again. (The read loop's `RefCell` borrow would say
    // as much, but held here it would make every parked WebSocket's wait 16 bytes larger.)
    let reader: &'a mut R = unsafe { &mut (*kept.read.as_ptr()).reader };
    ExecutorStats::add(&ctx.stats().ws.quiet, 1);
    QuietWait { ready: reader.readable(), kept, shared, ctx, clock_slot: None }
}

/// `quiet`'s wait: a struct rather than an async block, which would keep its captures beside
/// the wait it moves them into; and one slot among the clock's and the latch's waiters
/// each, rather than the futures of a select. Every parked WebSocket holds one (152 bytes on
/// monoio; the async block it was, 248).
struct QuietWait<R, W, E: SessionEnv + ?Sized, F> {
    /// The socket's readiness. It borrows the reader in `kept`, so it comes first: fields
    /// are dropped in order.
    ready: F,
    kept: Rc<Kept<R, W>>,
    shared: Shared,
    ctx: Rc<E>,
    /// Its slot among the waiters of the executor's idle clock: for the keepalive's
    /// deadline, and for the drain, which wakes them all (`SessionEnv::drain`).
    clock_slot: Option<u32>,
}

impl<R, W, E: SessionEnv + ?Sized, F: Future<Output = std::io::Result<()>>> Part<R, W>
    for QuietWait<R, W, E, F>
{
    fn step(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Step> {
        // SAFETY: structural pinning of `ready` alone: it is never moved out of the pinned
        // struct, and the struct has no Unpin impl of its own (its Drop does not touch it).
        let this = unsafe { self.get_unchecked_mut() };
        if unsafe { Pin::new_unchecked(&mut this.ready) }.poll(cx).is_ready() {
            return Poll::Ready(Step::Readable);
        }
        let due = {
            let mut s = this.shared.borrow_mut();
            if !quiet_state(&s) {
                return Poll::Ready(Step::Work);
            }
            s.register(cx.waker());
            this.kept.keepalive_due.get()
        };
        if this.ctx.drain().is_fired() {
            return Poll::Ready(Step::Work);
        }
        // Without a keepalive, a wait as long as the executor's life: still on the clock, for
        // the drain's sake.
        let due = due.unwrap_or_else(|| Instant::now() + NO_DEADLINE);
        match this.ctx.idle_clock().poll_until(due, &mut this.clock_slot, cx) {
            Poll::Ready(()) => Poll::Ready(Step::Work),
            Poll::Pending => Poll::Pending,
        }
    }

    fn kept(&self) -> &Rc<Kept<R, W>> {
        &self.kept
    }

    fn quiet(&self) -> bool {
        true
    }
}

impl<R, W, E: SessionEnv + ?Sized, F> Drop for QuietWait<R, W, E, F> {
    fn drop(&mut self) {
        self.ctx.idle_clock().forget(&mut self.clock_slot);
        ExecutorStats::sub(&self.ctx.stats().ws.quiet, 1);
    }
}

/// The read, write, keepalive and drain loops, polled together.
struct Parts<R, W, Rd, Wr, A, D> {
    read: Option<Rd>,
    write: Wr,
    keepalive: Option<A>,
    drain: Option<D>,
    kept: Rc<Kept<R, W>>,
}

impl<R, W, Rd, Wr, A, D> Part<R, W> for Parts<R, W, Rd, Wr, A, D>
where
    Rd: Future<Output = ()>,
    Wr: Future<Output = ()>,
    A: Future<Output = ()>,
    D: Future<Output = ()>,
{
    fn step(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Step> {
        // SAFETY: structural pinning of every field: none is moved out of the pinned struct
        // (an `Option` is emptied through `Pin::set`, which drops in place), and `Parts` has
        // no Drop or Unpin impl.
        let this = unsafe { self.get_unchecked_mut() };
        let (read, keepalive, drain) = unsafe {
            (
                Pin::new_unchecked(&mut this.read),
                Pin::new_unchecked(&mut this.keepalive),
                Pin::new_unchecked(&mut this.drain),
            )
        };
        // The side loops first: what they queue is written in this same poll.
        poll_side(read, cx);
        poll_side(keepalive, cx);
        poll_side(drain, cx);
        unsafe { Pin::new_unchecked(&mut this.write) }.poll(cx).map(|()| Step::Finished)
    }

    fn kept(&self) -> &Rc<Kept<R, W>> {
        &self.kept
    }

    fn quiet(&self) -> bool {
        false
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

/// Sets a flag of the shared state for as long as it lives: a loop marks the await at which
/// it may be dropped for a park (`Session::park`), and the mark goes with the await.
struct Mark<'s> {
    shared: &'s Shared,
    flag: fn(&mut State) -> &mut bool,
}

impl<'s> Mark<'s> {
    fn set(shared: &'s Shared, flag: fn(&mut State) -> &mut bool) -> Mark<'s> {
        *flag(&mut shared.borrow_mut()) = true;
        Mark { shared, flag }
    }
}

impl Drop for Mark<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.shared.try_borrow_mut() {
            *(self.flag)(&mut s) = false;
        }
    }
}

/// Decode the peer's frames until its close frame, its end of stream or a protocol error.
///
/// `quiet`: wait for readiness before the first read (see `read_more`).
// The loop holds its borrow of `Kept` for its whole life: the borrow ends when it is
// dropped (for a park) or ends, and nothing else reads meanwhile.
#[allow(clippy::await_holding_refcell_ref)]
async fn read_loop<R: ReadHalf, W, K: Timer, E: SessionEnv + ?Sized>(
    kept: Rc<Kept<R, W>>,
    mut rbuf: BytesMut,
    mut quiet: bool,
    shared: Shared,
    ctx: Rc<E>,
) {
    let (shared, config) = (&shared, ctx.ws_config());
    let mut reading = kept.read.borrow_mut();
    let Reading { reader, decoder, size, last_read } = &mut *reading;
    // Before a close frame goes out (the peer's answered, or ours for its error), the handler
    // takes the messages that came first and may still answer them: a close ends what it
    // may send.
    let taken = |s: &State| s.inbox.is_empty() || s.handler_gone || s.done;
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
                    // An unsolicited pong (a heartbeat of the peer's, RFC 6455 5.5.3) changes
                    // nothing: the keepalive still waits on its deadline, which a parked
                    // session needs to see.
                    if mem::replace(&mut s.ping_outstanding, false) {
                        // The next ping is due an interval from now (set by the keepalive), not
                        // at the pong's deadline (a keepalive built after a park would take it so).
                        kept.keepalive_due.clear();
                        s.notify();
                    }
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
        if quiet && rbuf.is_empty() {
            // Quiet, with no partial frame: let go of the buffer and wait for readiness, the
            // await at which the session may park.
            rbuf = BytesMut::new();
            let ready = {
                let _idle = Mark::set(shared, |s| &mut s.read_idle);
                reader.readable().await
            };
            if ready.is_err() {
                return gone(shared);
            }
        }
        if !read_more(reader, &mut rbuf, size, last_read, &mut quiet, shared).await {
            return gone(shared);
        }
    }
}

/// One read into `rbuf` (counted as received); false at end of stream or on an error.
///
/// `size` is the room reads get: doubled (up to `READ_MAX`) when a read fills all of it, as
/// a large message streams in, and halved (down to `READ_MIN`) when a read uses less than a
/// quarter, so that a WebSocket that goes quiet goes back to a small buffer.
///
/// `quiet`: the bytes that a read into an empty buffer brought came `QUIET_MS` or longer after
/// the last such bytes (`last_read`); a read that goes on with a partial frame leaves it as
/// it is. Most WebSockets are idle most of the time, and a read in flight owns its buffer;
/// so a quiet one, with no partial frame, lets go of its buffer and waits for readiness
/// before it reads (one more wait on the socket, only after a long silence), while a busy
/// one reads at once. Measured between arrivals rather than by how long a read waited, so
/// that a quiet WebSocket whose peer answers a ping (read at once after the readiness)
/// stays quiet, however many reads the pong takes.
async fn read_more<R: ReadHalf>(
    reader: &mut R,
    rbuf: &mut BytesMut,
    size: &mut u32,
    last_read: &mut u32,
    quiet: &mut bool,
    shared: &Shared,
) -> bool {
    let arrival = rbuf.is_empty();
    let want = *size as usize;
    if rbuf.is_empty() && rbuf.capacity() > 2 * want {
        *rbuf = BytesMut::with_capacity(want);
    } else if rbuf.capacity() - rbuf.len() < want / 2 {
        rbuf.reserve(want);
    }
    let room = rbuf.capacity() - rbuf.len();
    let (result, buf) = reader.read(mem::take(rbuf)).await;
    *rbuf = buf;
    if arrival {
        let now = crate::coop::last_tick_ms();
        *quiet = *last_read != 0 && now != 0 && now.wrapping_sub(*last_read) >= QUIET_MS;
        *last_read = now;
    }
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
async fn discard<R: ReadHalf>(reader: &mut R, mut rbuf: BytesMut, shared: &Shared) {
    let mut size = READ_MIN;
    let (mut last_read, mut quiet) = (0, false);
    loop {
        rbuf.clear();
        if !read_more(reader, &mut rbuf, &mut size, &mut last_read, &mut quiet, shared).await {
            return gone(shared);
        }
    }
}

/// Write queued frames; end the connection after the close frame.
// As `read_loop`, for the writer.
#[allow(clippy::await_holding_refcell_ref)]
async fn write_loop<R, W: WriteHalf, K: Timer>(
    kept: Rc<Kept<R, W>>,
    shared: Shared,
    close_timeout: Duration,
    write_timeout: Duration,
) {
    let shared = &shared;
    let mut writer = kept.writer.borrow_mut();
    let writer = &mut *writer;
    let mut spare = BytesMut::new();
    // The writes' timer, made with the first write and re-armed for each one after.
    let mut timer = TimerSlot::new::<K>();
    loop {
        {
            // Nothing being written: the await at which the session may park.
            let _idle = Mark::set(shared, |s| &mut s.write_idle);
            driver_wait(shared, |s| !s.outbox.is_empty() || s.close_sent || s.peer_gone).await;
        }
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
/// here. The deadline of the wait under way is kept apart (`Kept::keepalive_due`), where a
/// parked session's wait watches it and a keepalive built again after the park finds it.
async fn keepalive<R, W, E: SessionEnv + ?Sized>(kept: Rc<Kept<R, W>>, shared: Shared, ctx: Rc<E>) {
    let (shared, due_at, clock) = (&shared, &kept.keepalive_due, ctx.idle_clock());
    let (interval, wait) = (ctx.ws_config().ping_interval, ctx.ws_config().ping_timeout);
    if interval.is_zero() {
        return;
    }
    let closing = |s: &State| s.close_sent || s.done;
    loop {
        let due = due_at.get().unwrap_or_else(|| due_at.set_after(interval));
        let pinged = shared.borrow().ping_outstanding;
        if !pinged {
            if let Either::Right(()) = first_of(clock.until(due), driver_wait(shared, closing)).await {
                return;
            }
            let mut s = shared.borrow_mut();
            if closing(&s) {
                return;
            }
            frame::encode(s.outbox.buf(), OpCode::Ping, b"");
            s.ping_outstanding = true;
            due_at.set_after(wait);
            s.notify();
            continue;
        }
        let answered = |s: &State| !s.ping_outstanding || closing(s);
        if let Either::Right(()) = first_of(driver_wait(shared, answered), clock.until(due)).await {
            tracing::debug!("WebSocket ping unanswered; closing with 1011");
            shared.borrow_mut().fail(code::INTERNAL_ERROR, "ping timeout");
            return;
        }
        // Closing with the ping still out: done here. (Going round again would find the
        // ping out and this wait ready at once, and never yield.)
        if closing(&shared.borrow()) {
            return;
        }
        // Answered: the next ping an interval from now.
        due_at.clear();
    }
}

/// Close with 1001 when the server stops, 1012 when it goes on with other executors. A
/// handler awaiting `WebSocket::draining` is told first and may close by itself, within
/// `grace`.
async fn drain<K: Timer, E: SessionEnv + ?Sized>(shared: Shared, ctx: Rc<E>) {
    let (shared, latch, state) = (&shared, ctx.drain(), ctx.server_state());
    let grace = ctx.ws_config().close_timeout;
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
