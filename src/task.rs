//! Background tasks for application code, independent of the runtime an executor runs.
//!
//! Each executor installs its spawner when it starts serving; [`spawn_local`] runs a task on
//! the calling executor's thread, so application code never names a runtime. The task ends
//! when it completes or when the executor stops (after its drain, or at once), whichever
//! comes first: it never outlives the executor that runs it.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

/// A task as the executor's spawner takes it.
pub type LocalTask = Pin<Box<dyn Future<Output = ()>>>;

/// An executor's way to start a task on its own thread.
pub type Spawner = Rc<dyn Fn(LocalTask)>;

thread_local! {
    static SPAWNER: RefCell<Option<Spawner>> = const { RefCell::new(None) };
}

/// Why [`spawn_local`] could not start a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpawnError {
    /// The calling thread is not a serving percore executor.
    NoExecutor,
}

impl std::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SpawnError::NoExecutor => "not on a serving percore executor thread",
        })
    }
}

impl std::error::Error for SpawnError {}

/// Run `task` on the calling executor, next to its connections. A panic in the task stops
/// the executor (the supervisor starts a new one), as a panic in the executor's own tasks does.
pub fn spawn_local(task: impl Future<Output = ()> + 'static) -> Result<(), SpawnError> {
    let spawner = SPAWNER.with(|s| s.borrow().clone()).ok_or(SpawnError::NoExecutor)?;
    spawner(Box::pin(task));
    Ok(())
}

/// Called by the executor on its thread once it serves.
pub(crate) fn install(spawner: Spawner) {
    SPAWNER.with(|s| *s.borrow_mut() = Some(spawner));
}

/// Called by the executor when it finishes: the thread may serve another executor next.
pub(crate) fn uninstall() {
    SPAWNER.with(|s| s.borrow_mut().take());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn without_an_executor_nothing_is_spawned() {
        assert_eq!(spawn_local(async {}), Err(SpawnError::NoExecutor));
    }

    #[test]
    fn the_installed_spawner_gets_the_task_until_uninstalled() {
        let taken = Rc::new(Cell::new(0));
        let seen = taken.clone();
        install(Rc::new(move |_task| seen.set(seen.get() + 1)));
        assert_eq!(spawn_local(async {}), Ok(()));
        assert_eq!(taken.get(), 1);
        uninstall();
        assert_eq!(spawn_local(async {}), Err(SpawnError::NoExecutor));
        assert_eq!(taken.get(), 1);
    }
}
