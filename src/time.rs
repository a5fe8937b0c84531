//! Timers for handlers, independent of the runtime an executor runs.
//!
//! Each executor registers its runtime's sleep when it starts; a handler calls
//! [`sleep`] and gets that runtime's timer, so application code never names a runtime.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A runtime's sleep, boxed so it can be stored per thread.
pub type SleepFn = fn(Duration) -> Pin<Box<dyn Future<Output = ()>>>;

thread_local! {
    static SLEEP: Cell<Option<SleepFn>> = const { Cell::new(None) };
}

/// Called by the runtime shim on each executor thread before anything is served.
pub fn install(sleep: SleepFn) {
    SLEEP.with(|s| s.set(Some(sleep)));
}

/// Wait `duration` without blocking the executor thread.
///
/// # Panics
/// Outside a percore executor thread.
pub fn sleep(duration: Duration) -> Pin<Box<dyn Future<Output = ()>>> {
    let f = SLEEP.with(Cell::get).expect("percore::time::sleep called outside a percore executor thread");
    f(duration)
}

/// [`sleep`], or `None` outside a percore executor thread.
pub(crate) fn try_sleep(duration: Duration) -> Option<Pin<Box<dyn Future<Output = ()>>>> {
    SLEEP.with(Cell::get).map(|f| f(duration))
}
