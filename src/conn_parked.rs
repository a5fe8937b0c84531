//! An idle connection: what a keep-alive connection holds while it waits for its client.
//!
//! A connection's working state (its buffers, its timer, the states of the driver's
//! `async fn`s: reading a head, calling the handler, writing) is about 1.8 KB, and most
//! connections of a real server are idle most of the time. So a busy connection lives on
//! the heap, boxed by `serve`, and one that has been idle for `IDLE_GRACE` gives all of it
//! back and waits here, in a few hundred bytes: the socket, who the peer is, and a
//! readiness wait that holds no buffer. When the socket becomes readable (or the wait ends),
//! `serve` builds the working state again and goes on where it stopped.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::{ConnCtx, IdleWait, ReadOutcome, DRAIN_IDLE_GRACE};
use crate::io::Transport;
use crate::peer::Peer;

/// What a connection keeps across an idle wait.
pub(super) struct Parked<T, H> {
    pub(super) io: T,
    pub(super) ctx: Rc<ConnCtx<H>>,
    pub(super) peer: Peer,
    /// Whether the peer is in `--forwarded-allow-ips` (decided once, after any PROXY header).
    pub(super) peer_trusted: bool,
    /// The size the connection reads with between requests (see `Conn::read_size`).
    pub(super) read_size: usize,
    /// How long it may still idle, and how a drain shortens that.
    pub(super) idle: Idle,
}

/// The rest of an idle wait, as the connection's last read (called off after
/// `IDLE_GRACE`) left it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Idle {
    /// Time left of the keep-alive wait (already cut to `DRAIN_IDLE_GRACE` if `drained`).
    pub(super) left: Duration,
    /// The drain fired before or during the read.
    pub(super) drained: bool,
    /// The drain cuts this wait short (an idle wait between requests, the drain not yet fired).
    pub(super) watch_drain: bool,
}

impl<T: Transport, H> Parked<T, H> {
    /// A connection that has not been served yet.
    pub(super) fn new(io: T, peer: Peer, ctx: Rc<ConnCtx<H>>, read_size: usize) -> Self {
        Parked {
            io,
            ctx,
            peer,
            peer_trusted: false,
            read_size,
            idle: Idle { left: Duration::ZERO, drained: false, watch_drain: false },
        }
    }

    /// Wait, holding no buffer, until the socket is readable or the idle time is up.
    ///
    /// The long wait is on the executor's coarse clock rather than on a timer of its own,
    /// and a readiness wait can be dropped without losing anything (unlike a read, whose
    /// buffer the kernel may already have filled). A drain cuts the wait down to at most
    /// `DRAIN_IDLE_GRACE`, as it does a read between requests.
    pub(super) fn wait(&mut self) -> ParkedWait<'_, impl Future<Output = io::Result<()>> + '_, H> {
        let Parked { io, ctx, idle, .. } = self;
        ParkedWait {
            ready: io.readable(),
            ctx,
            deadline: Instant::now() + idle.left,
            drained: idle.drained,
            watch_drain: idle.watch_drain && !idle.drained,
            clock_slot: None,
        }
    }
}

/// Future returned by `Parked::wait`. A struct rather than an async fn, which kept a slot for
/// each wait it combined (a clock wait twice over) and was 60% larger: an idle connection is
/// mostly this and `Parked`.
pub(super) struct ParkedWait<'a, R, H> {
    ready: R,
    ctx: &'a ConnCtx<H>,
    deadline: Instant,
    drained: bool,
    /// The drain, when it fires, cuts the deadline down to `DRAIN_IDLE_GRACE` from then.
    watch_drain: bool,
    /// Its slot among the waiters of the executor's idle clock, which the drain wakes too
    /// (`ConnCtx::fire_drain`).
    clock_slot: Option<u32>,
}

impl<R: Future<Output = io::Result<()>>, H> Future for ParkedWait<'_, R, H> {
    type Output = IdleWait;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<IdleWait> {
        // SAFETY: structural pinning of `ready` alone: it is never moved out of the pinned
        // struct, and the struct has no Unpin impl of its own (its Drop does not touch it).
        let this = unsafe { self.get_unchecked_mut() };
        let ready = unsafe { Pin::new_unchecked(&mut this.ready) };
        match ready.poll(cx) {
            Poll::Ready(Ok(())) => {
                let drained = this.drained || (this.watch_drain && this.ctx.drain.is_fired());
                let mut left = this.deadline.saturating_duration_since(Instant::now());
                if drained {
                    left = left.min(DRAIN_IDLE_GRACE);
                }
                // Something to read (or the peer closed): the read that follows finds it at
                // once; a readiness that was only a hint waits out what is left.
                return Poll::Ready(IdleWait::Readable { left: left.max(Duration::from_millis(1)), drained });
            }
            Poll::Ready(Err(_)) => return Poll::Ready(IdleWait::Done(ReadOutcome::Failed)),
            Poll::Pending => {}
        }
        if this.watch_drain && this.ctx.drain.is_fired() {
            this.watch_drain = false;
            this.drained = true;
            this.deadline = this.deadline.min(Instant::now() + DRAIN_IDLE_GRACE);
        }
        match this.ctx.idle_clock.poll_until(this.deadline, &mut this.clock_slot, cx) {
            Poll::Ready(()) => Poll::Ready(IdleWait::Done(ReadOutcome::TimedOut)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<R, H> Drop for ParkedWait<'_, R, H> {
    fn drop(&mut self) {
        self.ctx.idle_clock.forget(&mut self.clock_slot);
    }
}
