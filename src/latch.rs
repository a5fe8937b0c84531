//! A one-shot broadcast for one executor thread: fired once, it wakes every waiter, and
//! waiters that arrive later see it fired. Used to tell idle connections and the accept
//! loop that the executor is draining or stopping, without polling.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use crate::idle_clock::slot_index;

/// A single-threaded one-shot latch.
#[derive(Default)]
pub struct Latch {
    fired: Cell<bool>,
    /// Registered wakers; a slot is freed when its waiter is dropped, so the list stays as
    /// long as the number of current waiters, not of all waits ever made.
    waiters: RefCell<Vec<Option<Waker>>>,
    free: RefCell<Vec<usize>>,
}

impl Latch {
    pub fn new() -> Latch {
        Latch::default()
    }

    pub fn is_fired(&self) -> bool {
        self.fired.get()
    }

    /// Fire the latch and wake every waiter (once; later calls do nothing).
    pub fn fire(&self) {
        if self.fired.replace(true) {
            return;
        }
        let wakers: Vec<Waker> = self.waiters.borrow_mut().drain(..).flatten().collect();
        self.free.borrow_mut().clear();
        for w in wakers {
            w.wake();
        }
    }

    /// A future that completes once the latch has fired.
    pub fn wait(&self) -> Wait<'_> {
        Wait { latch: self, slot: None }
    }

    /// `Wait`'s poll, for a waiter that keeps its own slot (`None` to start with) instead
    /// of a reference to the latch; it must `forget` the slot when it stops waiting.
    #[inline]
    pub fn poll_wait(&self, slot: &mut Option<u32>, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_fired() {
            *slot = None;
            return Poll::Ready(());
        }
        // Polled again by the same task (a connection's task polls its stop latch each time
        // it runs, twice per keep-alive request): nothing to change, and inlined, since it
        // is nearly every poll.
        if let Some(i) = slot.map(|i| i as usize) {
            if self
                .waiters
                .borrow()
                .get(i)
                .is_some_and(|w| w.as_ref().is_some_and(|w| w.will_wake(cx.waker())))
            {
                return Poll::Pending;
            }
        }
        self.register(slot, cx.waker());
        Poll::Pending
    }

    /// Register `waker` in `slot` (a new slot for a new waiter).
    #[cold]
    #[inline(never)]
    fn register(&self, slot: &mut Option<u32>, waker: &Waker) {
        let mut waiters = self.waiters.borrow_mut();
        match *slot {
            Some(i) => waiters[i as usize] = Some(waker.clone()),
            None => {
                let i = match self.free.borrow_mut().pop() {
                    Some(i) => {
                        waiters[i] = Some(waker.clone());
                        i
                    }
                    None => {
                        waiters.push(Some(waker.clone()));
                        waiters.len() - 1
                    }
                };
                *slot = Some(slot_index(i));
            }
        }
    }

    /// Give back the slot of a waiter that stops waiting.
    pub fn forget(&self, slot: &mut Option<u32>) {
        if let Some(i) = slot.take().map(|i| i as usize) {
            if !self.is_fired() {
                if let Some(w) = self.waiters.borrow_mut().get_mut(i) {
                    *w = None;
                }
                self.free.borrow_mut().push(i);
            }
        }
    }
}

/// Future returned by [`Latch::wait`].
pub struct Wait<'a> {
    latch: &'a Latch,
    slot: Option<u32>,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        this.latch.poll_wait(&mut this.slot, cx)
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        self.latch.forget(&mut self.slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::pin;

    #[test]
    fn wakes_waiters_and_reuses_slots() {
        let latch = Latch::new();
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..100 {
            let mut w = pin!(latch.wait());
            assert!(w.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(latch.waiters.borrow().len(), 1, "dropped waiters free their slot");
        let mut w = pin!(latch.wait());
        assert!(w.as_mut().poll(&mut cx).is_pending());
        latch.fire();
        assert!(w.as_mut().poll(&mut cx).is_ready());
        assert!(pin!(latch.wait()).poll(&mut cx).is_ready());
    }
}
