//! Cooperative scheduling for loops that may never wait.
//!
//! An executor runs its tasks one at a time on one thread; a task that never returns
//! `Pending` keeps every other task of its executor from running. The timer task is one of
//! them, and it drives the heartbeat: a long response body whose chunks are always ready,
//! written to a socket that always has room (glommio writes with a plain `send(2)` first),
//! would look like a stalled executor to the supervisor and keep the executor's other
//! connections waiting. A [`Budget`] counts the work done since the loop last waited, and
//! [`yield_now`] hands the thread back once when it is spent. Runtime-neutral: the task
//! wakes itself and returns `Pending` once, which every runtime treats as "run me again
//! after the others" (but see [`pause_if_timers_late`] for monoio's timers).

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};
use std::time::{Duration, Instant};

use atomic_waker::AtomicWaker;

/// Items a loop may handle in a row without waiting before it yields.
const ITEMS: u32 = 64;
/// Bytes a loop may move in a row without waiting before it yields.
const BYTES: usize = 1024 * 1024;

/// Work done since the loop last waited (a counter: no clock, no syscall).
#[derive(Debug, Default)]
pub struct Budget {
    items: u32,
    bytes: usize,
}

impl Budget {
    pub fn new() -> Budget {
        Budget::default()
    }

    /// Count one item of `bytes`; true when the budget is spent and the loop should
    /// [`yield_now`] (the budget starts over).
    #[inline]
    pub fn spend(&mut self, bytes: usize) -> bool {
        self.items += 1;
        self.bytes += bytes;
        if self.items >= ITEMS || self.bytes >= BYTES {
            self.reset();
            return true;
        }
        false
    }

    /// The loop waited (its task returned `Pending`): the budget starts over.
    #[inline]
    pub fn reset(&mut self) {
        self.items = 0;
        self.bytes = 0;
    }
}

/// The executor's timer task is this late (it runs every `executor::TICK`) when its timers are
/// taken to be starved.
const TIMERS_LATE: Duration = Duration::from_millis(300);
/// How long a yield waits on a timer while the timers are starved.
const STARVED_PAUSE: Duration = Duration::from_millis(1);

thread_local! {
    /// When this thread's executor last ran its timer task.
    static LAST_TICK: Cell<Option<Instant>> = const { Cell::new(None) };
    /// The same, as `last_tick_ms` gives it.
    static LAST_TICK_MS: Cell<u32> = const { Cell::new(0) };
}

/// Called by the executor's timer task each time it runs.
pub fn ticked() {
    LAST_TICK.with(|t| t.set(Some(Instant::now())));
    // Wrapping: only differences of these are used. Never 0, which stands for none.
    LAST_TICK_MS.with(|t| t.set((crate::stamp::Stamp::now().millis() as u32).max(1)));
}

/// [`last_tick`] in milliseconds on `CLOCK_MONOTONIC`, wrapping every 49 days; 0 while the
/// executor keeps no time. Four bytes, where an `Option<Instant>` is sixteen: every idle
/// WebSocket keeps when it last read.
pub fn last_tick_ms() -> u32 {
    LAST_TICK_MS.with(Cell::get)
}

/// When this thread's executor last ran its timer task: a clock that costs no system call,
/// exact to `executor::TICK` (100 ms) while the executor keeps time.
pub fn last_tick() -> Option<Instant> {
    LAST_TICK.with(Cell::get)
}

/// A short timer to wait on instead of waking at once, when this thread's executor has not
/// run its timer task for a while.
///
/// A task that wakes itself is put back in the executor's queue, and monoio runs its timers
/// (the heartbeat, the drain flags, every timeout) only once that queue is empty. Tasks whose
/// reads and writes complete without waiting (a fast peer, a socket with room), yielding now
/// and then, can keep the queue from ever emptying. Waiting on a timer instead takes them out
/// of the queue until monoio next runs its timers, which it then does as soon as they are all
/// out. Only when the timers are late: otherwise a yield costs no more than a wake.
pub(crate) fn pause_if_timers_late() -> Option<Pin<Box<dyn Future<Output = ()>>>> {
    let late = LAST_TICK.with(|t| t.get().is_some_and(|last| last.elapsed() > TIMERS_LATE));
    if late {
        crate::time::try_sleep(STARVED_PAUSE)
    } else {
        None
    }
}

/// Let the executor's other tasks run once, then go on (after its timers, if they are late:
/// see [`pause_if_timers_late`]).
pub fn yield_now() -> YieldNow {
    match pause_if_timers_late() {
        Some(sleep) => YieldNow::Pause(sleep),
        None => YieldNow::Wake { yielded: false },
    }
}

/// Future returned by [`yield_now`]: `Pending` once (after waking itself), then `Ready`; or a
/// short wait on a timer.
#[must_use = "a yield does nothing unless awaited"]
pub enum YieldNow {
    Wake { yielded: bool },
    Pause(Pin<Box<dyn Future<Output = ()>>>),
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &mut *self {
            YieldNow::Wake { yielded: true } => Poll::Ready(()),
            YieldNow::Wake { yielded } => {
                *yielded = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            YieldNow::Pause(sleep) => sleep.as_mut().poll(cx),
        }
    }
}

/// The waker of a task that polls several futures of its own (a WebSocket session: the
/// handler, its reader, writer and timers). One of them often wakes another while the task is
/// being polled (the reader hands the handler a message); with the task's own waker that puts
/// the task back in its executor's queue, and monoio parks (and so runs its timers: the
/// heartbeat, the drain flags, every timeout) only when that queue is empty. Under a steady
/// load of such tasks the queue never empties and the timers never fire.
///
/// With this waker, a wake during the task's poll only marks it to be polled again at once
/// ([`InlineWake::end`] says so); a wake at any other time (another task, another thread)
/// wakes the task as usual.
#[derive(Debug, Default)]
pub struct InlineWake {
    polling: AtomicBool,
    rewoken: AtomicBool,
    task: AtomicWaker,
}

impl InlineWake {
    /// A poll of the task begins; `task`: its waker for wakes from outside.
    pub fn begin(&self, task: &Waker) {
        self.task.register(task);
        self.rewoken.store(false, Ordering::SeqCst);
        self.polling.store(true, Ordering::SeqCst);
    }

    /// The poll ended without finishing: true when something woke it meanwhile, so the
    /// caller polls again now instead of through the executor's queue.
    pub fn end(&self) -> bool {
        self.polling.store(false, Ordering::SeqCst);
        self.rewoken.swap(false, Ordering::SeqCst)
    }
}

impl InlineWake {
    fn wake(&self) {
        // Marked first, then checked: a wake that races with `end` is seen by one or the
        // other (or both, which only costs one extra poll).
        self.rewoken.store(true, Ordering::SeqCst);
        if !self.polling.load(Ordering::SeqCst) {
            self.task.wake();
        }
    }
}

/// An [`InlineWake`] (shared, as an `Arc`) and the waker made from it, in one waker's room:
/// the waker's data pointer is the `InlineWake`, through a vtable of this module's own (the
/// standard `Waker::from(Arc<_>)` does not say where its data points). Every WebSocket
/// session holds one.
pub struct InlineWaker(Waker);

impl InlineWaker {
    pub fn new() -> InlineWaker {
        let data = Arc::into_raw(Arc::new(InlineWake::default())).cast::<()>();
        // SAFETY: `data` is an `Arc<InlineWake>`'s pointer, owned by the new waker; the
        // vtable's functions treat it as one (see `inline_vtable`).
        InlineWaker(unsafe { Waker::from_raw(RawWaker::new(data, &INLINE_VTABLE)) })
    }

    pub fn waker(&self) -> &Waker {
        &self.0
    }

    pub fn inline(&self) -> &InlineWake {
        // SAFETY: made by `new`, the waker's data is a live `Arc<InlineWake>` it owns.
        unsafe { &*self.0.data().cast::<InlineWake>() }
    }
}

impl Default for InlineWaker {
    fn default() -> InlineWaker {
        InlineWaker::new()
    }
}

// The vtable of `InlineWaker`'s wakers; every function gets a pointer made by
// `Arc::into_raw` on an `Arc<InlineWake>` and owned by the waker it belongs to (an
// `InlineWake` is atomics only: the wakers may go to other threads).
static INLINE_VTABLE: RawWakerVTable =
    RawWakerVTable::new(inline_clone, inline_wake, inline_wake_by_ref, inline_drop);

unsafe fn inline_clone(data: *const ()) -> RawWaker {
    // SAFETY: see INLINE_VTABLE; the clone owns one more count.
    unsafe { Arc::increment_strong_count(data.cast::<InlineWake>()) };
    RawWaker::new(data, &INLINE_VTABLE)
}

unsafe fn inline_wake(data: *const ()) {
    // SAFETY: see INLINE_VTABLE; waking consumes the waker, and so its count.
    let inline = unsafe { Arc::from_raw(data.cast::<InlineWake>()) };
    inline.wake();
}

unsafe fn inline_wake_by_ref(data: *const ()) {
    // SAFETY: see INLINE_VTABLE; borrowed for the call.
    unsafe { &*data.cast::<InlineWake>() }.wake();
}

unsafe fn inline_drop(data: *const ()) {
    // SAFETY: see INLINE_VTABLE; the waker's count goes with it.
    drop(unsafe { Arc::from_raw(data.cast::<InlineWake>()) });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn yield_now_is_pending_once_and_wakes_itself() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut y = std::pin::pin!(yield_now());
        assert!(y.as_mut().poll(&mut cx).is_pending());
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "woken, so the executor polls it again");
        assert!(y.as_mut().poll(&mut cx).is_ready());
    }

    #[test]
    fn a_yield_waits_on_a_timer_only_while_the_timers_are_late() {
        crate::time::install(|d| Box::pin(async move { std::thread::sleep(d) }));
        LAST_TICK.with(|t| t.set(None));
        assert!(pause_if_timers_late().is_none(), "no timer task on this thread");
        ticked();
        assert!(matches!(yield_now(), YieldNow::Wake { .. }), "it just ran");
        LAST_TICK.with(|t| t.set(Instant::now().checked_sub(TIMERS_LATE * 2)));
        assert!(matches!(yield_now(), YieldNow::Pause(_)), "late: wait on a timer");
    }

    #[test]
    fn the_budget_is_spent_by_items_or_by_bytes_and_starts_over() {
        let mut b = Budget::new();
        assert!(!(1..ITEMS).any(|_| b.spend(1)));
        assert!(b.spend(1), "the 64th item in a row");
        assert!(!b.spend(1), "a new budget");
        assert!(b.spend(BYTES), "a megabyte in a row");
        b.spend(10);
        b.reset();
        assert!(!(1..ITEMS).any(|_| b.spend(1)), "a wait starts it over");
    }

    #[test]
    fn a_wake_during_the_poll_asks_for_another_poll_and_one_after_it_wakes_the_task() {
        let task = Arc::new(Count(AtomicUsize::new(0)));
        let task_waker = Waker::from(task.clone());
        let inline_waker = InlineWaker::new();
        let (inline, waker) = (inline_waker.inline(), inline_waker.waker().clone());
        inline.begin(&task_waker);
        assert!(!inline.end(), "nothing woke it");
        inline.begin(&task_waker);
        waker.wake_by_ref();
        assert_eq!(task.0.load(Ordering::SeqCst), 0, "not through the executor");
        assert!(inline.end(), "polled again at once");
        assert!(!inline.end(), "once");
        waker.wake_by_ref();
        assert_eq!(task.0.load(Ordering::SeqCst), 1, "outside a poll: the task is woken");
        // A clone sent to another thread wakes the task from there (registered again by the
        // next poll: a wake takes the task's waker), and its count goes.
        inline.begin(&task_waker);
        assert!(!inline.end());
        let clone = waker.clone();
        std::thread::spawn(move || clone.wake()).join().unwrap();
        assert_eq!(task.0.load(Ordering::SeqCst), 2, "woken from another thread");
        // Registered once more, the task's waker is let go of with the last of the wakers:
        // the `InlineWake` is freed, not leaked.
        inline.begin(&task_waker);
        assert!(!inline.end());
        assert_eq!(Arc::strong_count(&task), 3, "the task, its waker, the registered clone");
        drop(waker);
        drop(inline_waker);
        assert_eq!(Arc::strong_count(&task), 2, "the registered clone went with the InlineWake");
    }
}
