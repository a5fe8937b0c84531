//! glommio executors kept for reuse, one per worker thread.
//!
//! glommio 0.9 never frees the eventfd of a `LocalExecutor` that has run, even one that ran
//! nothing (task headers hold an `Arc<SleepNotifier>` that outlives it: DataDog/glommio#448).
//! percore replaces executors on every reload, every `--max-requests` recycle and every
//! stall, so one executor per lifecycle meant one descriptor per replacement, until EMFILE.
//! Instead, each percore executor borrows a worker: a thread that built one `LocalExecutor`
//! and runs one job after another on it. The caller hands its job over and blocks until it
//! ends (so to the supervisor, the caller's thread still is the executor's thread: it ends
//! when the executor ends, with its panic if it panicked). A stuck job keeps its worker out
//! of the pool until it ends; idle workers beyond the busy ones plus [`SPARE`] exit.
//!
//! A worker is reused only when its job left nothing behind: no panic out of the executor
//! (its state is then unknown) and no task spawned through `Glommio::spawn` still alive (the
//! executor ends all of its tasks; one left over would run in the next executor).

use std::any::Any;
use std::cell::Cell;
use std::ffi::CString;
use std::io;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use glommio::LocalExecutor;

/// Idle workers kept beyond the number of busy ones: a replacement starts before the
/// executor it replaces has ended, so each busy worker may need a second one for a moment.
const SPARE: usize = 2;
/// How long leftover tasks get to end after a job before its worker is given up.
const SETTLE: Duration = Duration::from_millis(50);
/// The name of an idle worker thread (a busy one takes its caller's, e.g. `percore-0`).
const IDLE_NAME: &str = "percore-glommio";

type Panic = Box<dyn Any + Send>;
/// A job as a worker sees it: run on its executor; says whether the executor may be reused.
type Job = Box<dyn FnOnce(&LocalExecutor) -> bool + Send>;

/// A worker thread waiting for jobs.
struct Worker {
    jobs: Sender<Job>,
}

struct Pool {
    idle: Vec<Worker>,
    /// Workers running a job (stuck ones included).
    busy: usize,
}

static POOL: Mutex<Pool> = Mutex::new(Pool { idle: Vec::new(), busy: 0 });

fn pool() -> std::sync::MutexGuard<'static, Pool> {
    POOL.lock().unwrap_or_else(PoisonError::into_inner)
}

thread_local! {
    /// Tasks spawned on this thread's executor that have not been dropped yet.
    static LIVE_TASKS: Cell<usize> = const { Cell::new(0) };
}

/// Held by a spawned task for as long as it exists (completed or cancelled, it is dropped).
pub struct LiveTask(());

impl LiveTask {
    pub fn new() -> LiveTask {
        LIVE_TASKS.with(|n| n.set(n.get() + 1));
        LiveTask(())
    }
}

impl Drop for LiveTask {
    fn drop(&mut self) {
        LIVE_TASKS.with(|n| n.set(n.get() - 1));
    }
}

/// Run `job` on a pooled glommio executor as if on this thread (its CPU affinity and name),
/// blocking until it has ended; a panic in it resumes here.
pub fn run<T: Send>(job: impl FnOnce(&LocalExecutor) -> T + Send) -> io::Result<T> {
    let (done, result) = mpsc::sync_channel(1);
    let errand = Errand { job, affinity: Affinity::of_current_thread(), name: thread_name(), done };
    let job: Box<dyn FnOnce(&LocalExecutor) -> bool + Send + '_> = Box::new(move |ex| errand.run(ex));
    // SAFETY: only the lifetime is erased, as `std::thread::scope` does. What `job` borrows
    // from this stack outlives every use of it: this function returns only after `result`
    // has a value or is closed. The worker sends the value once `job` has run, and `job`
    // (consumed by its call) owns nothing borrowed after that; should the job be dropped
    // unrun instead, the `Errand` drops its job before the sender (field order), so the
    // channel closes only once nothing borrowed is left on the worker.
    let job: Job =
        unsafe { std::mem::transmute::<Box<dyn FnOnce(&LocalExecutor) -> bool + Send + '_>, Job>(job) };
    if let Err(mpsc::SendError(job)) = take_worker()?.jobs.send(job) {
        drop(job);
        pool().busy -= 1;
    }
    match result.recv() {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(panic)) => resume_unwind(panic),
        Err(_) => Err(io::Error::other("the glommio worker ended without running the executor")),
    }
}

/// A job with what it needs to run as its caller would. Fields drop in order: `done` last.
struct Errand<F, T> {
    job: F,
    affinity: Affinity,
    name: Option<CString>,
    done: SyncSender<Result<T, Panic>>,
}

impl<F: FnOnce(&LocalExecutor) -> T, T> Errand<F, T> {
    /// Run on the worker's thread; whether the executor is clean for the next job.
    fn run(self, ex: &LocalExecutor) -> bool {
        let Errand { job, affinity, name, done } = self;
        affinity.apply();
        set_thread_name(name.as_deref());
        let outcome = catch_unwind(AssertUnwindSafe(|| job(ex)));
        let reusable = outcome.is_ok() && settled(ex);
        set_thread_name(CString::new(IDLE_NAME).ok().as_deref());
        // The caller may return (and free what the job borrowed) from here on.
        let _ = done.send(outcome);
        reusable
    }
}

/// Whether every task spawned on `ex` has ended, giving those that are about to a moment.
fn settled(ex: &LocalExecutor) -> bool {
    let live = || LIVE_TASKS.with(Cell::get);
    if live() > 0 {
        let deadline = Instant::now() + SETTLE;
        ex.run(async {
            while live() > 0 && Instant::now() < deadline {
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
        });
    }
    if live() > 0 {
        tracing::warn!(tasks = live(), "tasks outlived their glommio executor; not reusing it");
        return false;
    }
    true
}

/// An idle worker, or a new one when there is none; counted busy.
fn take_worker() -> io::Result<Worker> {
    {
        let mut pool = pool();
        if let Some(worker) = pool.idle.pop() {
            pool.busy += 1;
            return Ok(worker);
        }
    }
    let worker = start_worker()?;
    pool().busy += 1;
    Ok(worker)
}

/// Start a worker thread with its executor (reporting whether the executor could be built).
fn start_worker() -> io::Result<Worker> {
    let (jobs, inbox) = mpsc::channel::<Job>();
    let (ready, built) = mpsc::sync_channel(1);
    let me = jobs.clone();
    std::thread::Builder::new().name(IDLE_NAME.into()).spawn(move || {
        let ex = match super::make_executor() {
            Ok(ex) => ex,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        serve(&ex, &inbox, &me);
    })?;
    built.recv().unwrap_or_else(|_| Err(io::Error::other("the glommio worker thread died")))?;
    Ok(Worker { jobs })
}

/// A worker's life: run jobs until one leaves its executor unfit, or the pool has enough.
fn serve(ex: &LocalExecutor, inbox: &Receiver<Job>, me: &Sender<Job>) {
    while let Ok(job) = inbox.recv() {
        let reusable = job(ex);
        if !give_back(reusable.then(|| Worker { jobs: me.clone() })) {
            return;
        }
    }
}

/// A job ended: its worker, if reusable, goes back to the pool unless enough are idle.
/// Whether it was taken back.
fn give_back(worker: Option<Worker>) -> bool {
    let mut pool = pool();
    pool.busy -= 1;
    match worker {
        Some(worker) if pool.idle.len() < pool.busy + SPARE => {
            pool.idle.push(worker);
            true
        }
        _ => false,
    }
}

/// A thread's CPU affinity mask.
#[derive(Clone, Copy)]
struct Affinity(Option<libc::cpu_set_t>);

impl Affinity {
    fn of_current_thread() -> Affinity {
        // SAFETY: a zeroed cpu_set_t is a valid empty set for sched_getaffinity to fill.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: sched_getaffinity writes at most the size given into `set`.
        let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
        Affinity((rc == 0).then_some(set))
    }

    /// Give the calling thread this mask (the executor's core, where it is pinned).
    fn apply(&self) {
        let Some(set) = &self.0 else { return };
        // SAFETY: sched_setaffinity only reads the set.
        if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) } != 0 {
            tracing::warn!(error = %io::Error::last_os_error(), "cannot give a glommio worker its executor's cores");
        }
    }
}

fn thread_name() -> Option<CString> {
    std::thread::current().name().and_then(|n| CString::new(n).ok())
}

/// Name the calling thread as `top -H` and the kernel show it (15 bytes at most).
fn set_thread_name(name: Option<&std::ffi::CStr>) {
    let Some(name) = name else { return };
    let mut bytes = name.to_bytes().to_vec();
    bytes.truncate(15);
    if let Ok(short) = CString::new(bytes) {
        // SAFETY: a NUL-terminated name of at most 16 bytes for the calling thread.
        unsafe { libc::pthread_setname_np(libc::pthread_self(), short.as_ptr()) };
    }
}
