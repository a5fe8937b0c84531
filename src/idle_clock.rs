//! A coarse clock for the long waits of idle connections, one per executor, advanced by the
//! executor's periodic tick (`executor::TICK`, 100 ms).
//!
//! A runtime's own sleep is large (monoio's is 640 bytes, aligned to 128) and an idle
//! keep-alive connection would hold one for its whole wait. Here a waiting connection holds
//! a slot index, and the executor a deadline and a waker per waiter; a deadline is seen at
//! the first tick after it, which is precise enough for keep-alive and drain limits that
//! are counted in seconds.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

/// The waiters of one executor.
pub struct IdleClock {
    /// Deadlines are kept as nanoseconds since this instant: 8 bytes where an `Instant` is
    /// 16, in the slot of every idle connection and WebSocket.
    epoch: Instant,
    /// One entry per waiter; a slot is freed when its waiter is dropped, so the list is as
    /// long as the most waiters there were at once.
    waiters: RefCell<Vec<Option<Waiter>>>,
    free: RefCell<Vec<u32>>,
}

struct Waiter {
    /// Nanoseconds since `epoch`.
    deadline: u64,
    waker: Waker,
}

impl Default for IdleClock {
    fn default() -> IdleClock {
        IdleClock { epoch: Instant::now(), waiters: RefCell::default(), free: RefCell::default() }
    }
}

impl IdleClock {
    pub fn new() -> IdleClock {
        IdleClock::default()
    }

    /// `t` as kept in a waiter's slot (an instant before the epoch is the epoch).
    fn since_epoch(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// A future that completes at the first tick at or after `deadline`.
    pub fn until(&self, deadline: Instant) -> Until<'_> {
        Until { clock: self, deadline, slot: None }
    }

    /// Wake every waiter whose deadline is not after `now`.
    pub fn tick(&self, now: Instant) {
        let now = self.since_epoch(now);
        let mut due = Vec::new();
        for waiter in self.waiters.borrow().iter().flatten() {
            if waiter.deadline <= now {
                due.push(waiter.waker.clone());
            }
        }
        // Woken outside the borrow: a waker may run code that registers another waiter.
        for waker in due {
            waker.wake();
        }
    }

    /// Wake every waiter, due or not (the executor drains: see `ConnCtx::fire_drain`).
    pub fn wake_all(&self) {
        let wakers: Vec<Waker> = self.waiters.borrow().iter().flatten().map(|w| w.waker.clone()).collect();
        wakers.into_iter().for_each(Waker::wake);
    }

    /// `Until`'s poll, for a waiter that keeps its own slot (`None` to start with) instead
    /// of a reference to the clock; it must `forget` the slot when it stops waiting. The
    /// deadline may change from one poll to the next.
    pub fn poll_until(&self, deadline: Instant, slot: &mut Option<u32>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= deadline {
            self.forget(slot);
            return Poll::Ready(());
        }
        let deadline = self.since_epoch(deadline);
        match *slot {
            Some(i) => {
                let mut waiters = self.waiters.borrow_mut();
                match &mut waiters[i as usize] {
                    // The same task again: only the deadline may have moved.
                    Some(w) if w.waker.will_wake(cx.waker()) => w.deadline = deadline,
                    other => *other = Some(Waiter { deadline, waker: cx.waker().clone() }),
                }
            }
            None => {
                let waiter = Waiter { deadline, waker: cx.waker().clone() };
                *slot = Some(take_slot(&mut self.waiters.borrow_mut(), &mut self.free.borrow_mut(), waiter));
            }
        }
        Poll::Pending
    }

    /// Give back the slot of a waiter that stops waiting.
    pub fn forget(&self, slot: &mut Option<u32>) {
        if let Some(i) = slot.take() {
            free_slot(&mut self.waiters.borrow_mut(), &mut self.free.borrow_mut(), i);
        }
    }

    /// How many waiters there are now.
    pub fn waiting(&self) -> usize {
        self.waiters.borrow().len() - self.free.borrow().len()
    }
}

/// A waiter's slot index as it keeps it: a `u32` (an `Option<u32>` is half the size of an
/// `Option<usize>`, in every parked connection and WebSocket); a single executor's waiters
/// are far fewer than 2^32.
pub(crate) fn slot_index(i: usize) -> u32 {
    u32::try_from(i).expect("fewer than 2^32 waiters")
}

/// Put `item` in the first free slot of `slots` (listed in `free`), or in a new one at the
/// end; its index.
pub(crate) fn take_slot<T>(slots: &mut Vec<Option<T>>, free: &mut Vec<u32>, item: T) -> u32 {
    match free.pop() {
        Some(i) => {
            slots[i as usize] = Some(item);
            i
        }
        None => {
            slots.push(Some(item));
            slot_index(slots.len() - 1)
        }
    }
}

/// Empty slot `i` of `slots`: listed in `free`, or, the last one, taken off the end with the
/// free slots before it, so that the list shrinks back after a burst and what scans it (a
/// tick, a wake) does not go over slots no one uses.
pub(crate) fn free_slot<T>(slots: &mut Vec<Option<T>>, free: &mut Vec<u32>, i: u32) {
    slots[i as usize] = None;
    if i as usize + 1 < slots.len() {
        free.push(i);
        return;
    }
    while slots.last().is_some_and(Option::is_none) {
        slots.pop();
    }
    let len = slots.len();
    free.retain(|&f| (f as usize) < len);
}

/// Future returned by [`IdleClock::until`].
pub struct Until<'a> {
    clock: &'a IdleClock,
    deadline: Instant,
    slot: Option<u32>,
}

impl Future for Until<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        this.clock.poll_until(this.deadline, &mut this.slot, cx)
    }
}

impl Drop for Until<'_> {
    fn drop(&mut self) {
        self.clock.forget(&mut self.slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;
    use std::time::Duration;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_tick_wakes_only_the_waiters_that_are_due_and_dropped_waiters_free_their_slots() {
        let clock = IdleClock::new();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let now = Instant::now();
        let mut soon = Box::pin(clock.until(now + Duration::from_millis(20)));
        let mut later = Box::pin(clock.until(now + Duration::from_secs(3600)));
        assert!(soon.as_mut().poll(&mut cx).is_pending());
        assert!(later.as_mut().poll(&mut cx).is_pending());
        assert_eq!(clock.waiting(), 2);
        clock.tick(now);
        assert_eq!(count.0.load(Ordering::Relaxed), 0, "nothing is due yet");
        std::thread::sleep(Duration::from_millis(30));
        clock.tick(Instant::now());
        assert_eq!(count.0.load(Ordering::Relaxed), 1, "only the due waiter is woken");
        assert!(soon.as_mut().poll(&mut cx).is_ready());
        assert_eq!(clock.waiting(), 1);
        drop(soon);
        assert!(later.as_mut().poll(&mut cx).is_pending());
        assert_eq!(clock.waiting(), 1);
        // The last waiter leaves: the list is empty again.
        drop(later);
        assert_eq!((clock.waiting(), clock.waiters.borrow().len()), (0, 0));
    }
}
