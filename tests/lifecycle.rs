//! Executor lifecycles through the library API: what every replaced executor leaves behind
//! (descriptors must stay flat across reloads, on every runtime), and how far past
//! `--max-requests` an executor goes under a keep-alive load before its replacement takes
//! over. Its own test binary: descriptor counts are process-wide, so no other test may open
//! sockets meanwhile (the tests here take turns, see [`one_at_a_time`]).

use std::cell::Cell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use percore::{Command, ExecutorInfo, Request, Response, Router, RuntimeKind, Server, ServerConfig};

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

// --- how far past --max-requests -------------------------------------------------------

const MAX_REQUESTS: u64 = 50;
const CLIENTS: usize = 4;
const LOAD: Duration = Duration::from_millis(1500);

/// Counts the requests one executor instance's handler served; reports the count when the
/// executor lets go of its handler (it ends).
struct Served {
    count: Cell<u64>,
    report: Arc<Mutex<Vec<u64>>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.report.lock().unwrap().push(self.count.get());
    }
}

/// Keep-alive requests until `stop`, reconnecting whenever the server closes; panics on a
/// request lost (a connection that ends without the response it was owed).
fn client(addr: SocketAddr, stop: &AtomicBool) {
    let mut buf = [0u8; 1024];
    while !stop.load(Ordering::Relaxed) {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        while !stop.load(Ordering::Relaxed) {
            s.write_all(b"GET /n HTTP/1.1\r\nHost: x\r\n\r\n").expect("send a request");
            let n = s.read(&mut buf).expect("read a response");
            let response = String::from_utf8_lossy(&buf[..n]);
            assert!(response.starts_with("HTTP/1.1 200"), "lost a request: {response:?}");
            if response.contains("connection: close") {
                break;
            }
        }
    }
}

/// gunicorn's `max_requests`: an executor leaves after about N requests, finishing what is
/// in flight. Under a keep-alive load it used to serve on until its replacement was started
/// on a supervisor tick and it noticed the drain on one of its own (~1,700 with N = 50).
#[test]
fn recycled_executors_stop_near_max_requests() {
    let _turn = one_at_a_time();
    for kind in RUNTIMES {
        let mut cfg = config(kind);
        cfg.supervisor.max_requests = Some(MAX_REQUESTS);
        cfg.supervisor.max_requests_jitter = 0;
        let report = Arc::new(Mutex::new(Vec::new()));
        let sink = report.clone();
        let handle = Server::new(cfg)
            .start(move |_exec: &ExecutorInfo| {
                let served = Rc::new(Served { count: Cell::new(0), report: sink.clone() });
                Router::new().get("/n", move |_req: Request| {
                    served.count.set(served.count.get() + 1);
                    async { Response::text("ok") }
                })
            })
            .expect("start");
        let addr = handle.local_addr().expect("a TCP address");
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || client(addr, &stop))
            })
            .collect();
        std::thread::sleep(LOAD);
        stop.store(true, Ordering::Relaxed);
        let lost = clients.into_iter().map(std::thread::JoinHandle::join).filter(Result::is_err).count();
        handle.stop();
        let counts = report.lock().unwrap().clone();
        let most = counts.iter().copied().max().unwrap_or(0);
        eprintln!("{kind:?}: {} executor instances, the busiest served {most}", counts.len());
        assert_eq!(lost, 0, "{kind:?}: a client lost a request");
        assert!(counts.len() >= 6, "{kind:?}: too little recycling to judge ({counts:?})");
        // The busiest instance serves 80-145 on this 2-core machine (requests already on
        // their way when the count is reached, and those of connections accepted before the
        // replacement listens); one run of the whole suite saw 152. The bug this guards
        // against served about 1,700.
        assert!(
            most < 4 * MAX_REQUESTS,
            "{kind:?}: an executor served {most} with max_requests {MAX_REQUESTS}"
        );
    }
}
