//! Executor lifecycles through the library API: what every replaced executor leaves behind
//! (descriptors must stay flat across reloads, on every runtime). Its own test binary: descriptor counts are process-wide, so no other test may open
//! sockets meanwhile (the tests here take turns, see [`one_at_a_time`]).

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use percore::{Command, ExecutorInfo, Router, RuntimeKind, Server, ServerConfig};

/// The thread-per-core runtimes, each of which replaces executors on a reload.
const RUNTIMES: [RuntimeKind; 3] = [RuntimeKind::Monoio, RuntimeKind::Tokio, RuntimeKind::Glommio];

/// Tests in this binary run one after the other.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd").count()
}

fn config(kind: RuntimeKind) -> ServerConfig {
    ServerConfig { port: 0, workers: Some(2), runtime: kind, ..ServerConfig::default() }
}

// --- descriptors across reloads ----------------------------------------------------------

/// Descriptors the process may gain over a run of reloads once warmed up (room for a
/// runtime's spare executor, not for one descriptor per replaced executor).
const FD_SLACK: usize = 12;
const RELOADS: u64 = 20;

/// Send `n` reloads and wait until every one of them replaced both executors.
fn reload(handle: &percore::ServerHandle, n: u64) {
    let target = handle.state().restarts() + 2 * n;
    for _ in 0..n {
        handle.send(Command::Reload(None));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while handle.state().restarts() < target {
        assert!(Instant::now() < deadline, "reloads did not finish in time");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Every replaced executor must give back its descriptors: percore replaces executors on
/// every SIGHUP, recycle and stall, so one descriptor per replacement ends in EMFILE.
/// (glommio 0.9 leaks the eventfd of every executor it ever dropped; percore reuses its
/// executors instead.)
#[test]
fn reloads_keep_descriptors_flat() {
    let _turn = one_at_a_time();
    for kind in RUNTIMES {
        let handle = Server::new(config(kind)).start(|_exec: &ExecutorInfo| Router::new()).expect("start");
        // Warm-up: whatever a runtime keeps for later replacements exists from here on.
        reload(&handle, 3);
        std::thread::sleep(Duration::from_millis(500));
        let before = open_descriptors();
        reload(&handle, RELOADS);
        // The last replaced executors finish draining shortly after.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut after = open_descriptors();
        while after > before + FD_SLACK && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            after = open_descriptors();
        }
        handle.stop();
        assert!(
            after <= before + FD_SLACK,
            "{kind:?}: {before} descriptors before {RELOADS} reloads, {after} after"
        );
        eprintln!("{kind:?}: {before} -> {after} descriptors over {RELOADS} reloads");
    }
}
