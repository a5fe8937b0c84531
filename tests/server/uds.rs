//! Unix domain sockets (`--bind unix:PATH`): served beside TCP by every executor, the socket
//! file's life (stale file replaced, live one refused, mode applied, removed at exit), trust
//! of Unix-socket peers, and no request lost over the socket across SIGHUP, recycling,
//! socket activation and the SIGUSR2 upgrade.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::support::*;

/// A fresh directory for this test's socket; the socket's path in it.
fn socket_path(name: &str) -> (TempDir, PathBuf) {
    let dir = TempDir::new(&format!("uds-{name}"));
    let path = dir.join("s.sock");
    (dir, path)
}

/// A server on 127.0.0.1 (port 0) and on the Unix socket `path`.
fn start(path: &Path, extra: &[&str]) -> ServerProc {
    let bind = format!("unix:{}", path.display());
    let mut args = vec!["--bind", "127.0.0.1:0", "--bind", &bind];
    args.extend_from_slice(extra);
    ServerProc::start(&args)
}

fn unix_client(path: &Path) -> Client<UnixStream> {
    let s = UnixStream::connect(path).expect("connect to the Unix socket");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    Client::new(s)
}

const HELLO: &[u8] = b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n";

#[test]
fn serves_over_a_unix_socket_beside_tcp() {
    let (_dir, path) = socket_path("serve");
    let server = start(&path, &["--workers", "2"]);
    let mut c = unix_client(&path);
    // Keep-alive: several requests on one connection.
    for _ in 0..3 {
        c.send(HELLO);
        let r = c.response();
        assert_eq!((r.status, r.text()), (200, "Hello, World!".to_string()));
    }
    // Pipelining: two requests in one write, two responses in order.
    c.send(&cat(&[&get("/plaintext"), &get("/health")]));
    assert_eq!(c.response().text(), "Hello, World!");
    assert_eq!(c.response().status, 200);
    // Many connections at once: every executor accepts from the one socket.
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let path = path.clone();
            thread::spawn(move || {
                let mut c = unix_client(&path);
                c.send(HELLO);
                c.response().status
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 200);
    }
    // TCP still serves.
    assert_eq!(server.request(HELLO).status, 200);
    assert!(server.logs().iter().any(|l| l.contains("percore ready") && l.contains(path.to_str().unwrap())));
}

#[test]
fn curl_reaches_the_demo_app_over_the_socket() {
    if !on_path("curl") {
        eprintln!("curl not installed; skipping");
        return;
    }
    let (_dir, path) = socket_path("curl");
    let _server = start(&path, &[]);
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "--unix-socket",
            path.to_str().unwrap(),
            "http://localhost/plaintext",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Hello, World!");
}

#[test]
fn socket_file_stale_replaced_live_refused_mode_applied_removed_at_exit() {
    let (_dir, path) = socket_path("file");
    // A socket file left by a server that died: nothing listens on it.
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let mut server = start(&path, &["--uds-permissions", "600"]);
    assert!(server.logs().iter().any(|l| l.contains("replaced a stale Unix socket file")));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "--uds-permissions applied");
    assert_eq!(unix_client(&path).request_status(), 200);

    // A second server on the same live socket is refused, and leaves the socket alone.
    let bind = format!("unix:{}", path.display());
    let (status, stderr) = run_to_exit(
        {
            let mut cmd = Command::new(bin());
            cmd.args(["--bind", &bind, "--workers", "1"]);
            with_runtime(&mut cmd);
            cmd
        },
        Duration::from_secs(20),
    );
    assert!(!status.expect("the second server exits").success());
    assert!(stderr.contains("another process listens on it"), "{stderr}");
    assert_eq!(unix_client(&path).request_status(), 200, "the first server still serves");

    server.signal(libc::SIGTERM);
    assert!(server.wait_exit(Duration::from_secs(15)).expect("exits").success());
    assert!(!path.exists(), "the socket file is removed at exit");
}

#[test]
fn a_file_that_is_not_a_socket_is_never_replaced() {
    let (_dir, path) = socket_path("regular");
    std::fs::write(&path, "precious").unwrap();
    let bind = format!("unix:{}", path.display());
    let mut cmd = Command::new(bin());
    cmd.args(["--bind", &bind, "--workers", "1"]);
    with_runtime(&mut cmd);
    let (status, stderr) = run_to_exit(cmd, Duration::from_secs(20));
    assert!(!status.expect("exits").success());
    assert!(stderr.contains("not a socket"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
}

#[test]
fn forwarded_headers_are_trusted_from_unix_peers_by_default() {
    let (dir, path) = socket_path("trust");
    let log = dir.join("access.log");
    let forwarded = b"GET /plaintext HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\n\r\n";
    {
        let _server = start(&path, &["--access-log", log.to_str().unwrap(), "--access-log-format", "json"]);
        let mut c = unix_client(&path);
        c.send(forwarded);
        assert_eq!(c.response().status, 200);
        c.send(HELLO);
        assert_eq!(c.response().status, 200);
        let lines = log_lines(&log, 2);
        assert_eq!(json_field(&lines[0], "client").as_deref(), Some("203.0.113.7"), "{lines:?}");
        assert_eq!(json_field(&lines[0], "scheme").as_deref(), Some("https"));
        assert_eq!(json_field(&lines[1], "client").as_deref(), Some("unix:"), "no header: the peer is unix:");
    }
    // Without `unix` in --forwarded-allow-ips the headers are a client's own words. (The
    // killed server's socket may outlive it a moment: io_uring releases it asynchronously.)
    assert!(eventually(Duration::from_secs(5), || UnixStream::connect(&path).is_err()));
    let _ = std::fs::remove_file(&log);
    let _server = start(
        &path,
        &[
            "--access-log",
            log.to_str().unwrap(),
            "--access-log-format",
            "json",
            "--forwarded-allow-ips",
            "127.0.0.1",
        ],
    );
    let mut c = unix_client(&path);
    c.send(forwarded);
    assert_eq!(c.response().status, 200);
    let lines = log_lines(&log, 1);
    assert_eq!(json_field(&lines[0], "client").as_deref(), Some("unix:"), "{lines:?}");
    assert_eq!(json_field(&lines[0], "scheme").as_deref(), Some("http"));
}

fn log_lines(path: &Path, n: usize) -> Vec<String> {
    let mut lines = Vec::new();
    eventually(Duration::from_secs(5), || {
        lines = std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_string).collect();
        lines.len() >= n
    });
    assert!(lines.len() >= n, "expected {n} access log lines, got {lines:?}");
    lines
}

trait RequestStatus {
    fn request_status(self) -> u16;
}

impl RequestStatus for Client<UnixStream> {
    fn request_status(mut self) -> u16 {
        self.send(HELLO);
        self.response().status
    }
}

/// Keep-alive clients on the Unix socket; counts requests answered, connections refused
/// and requests lost (sent, then EOF or an error before a complete response).
struct UnixLoad {
    stop: Arc<AtomicBool>,
    counts: Arc<[AtomicU64; 3]>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl UnixLoad {
    fn start(path: &Path, clients: usize) -> UnixLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let counts: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
        let threads = (0..clients)
            .map(|_| {
                let (stop, counts, path) = (stop.clone(), counts.clone(), path.to_path_buf());
                thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(mut s) = UnixStream::connect(&path) else {
                            counts[1].fetch_add(1, Ordering::Relaxed);
                            thread::sleep(Duration::from_millis(10));
                            continue;
                        };
                        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                        while !stop.load(Ordering::Relaxed) {
                            if s.write_all(HELLO).is_err() {
                                counts[2].fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            match read_hello(&mut s) {
                                Some(close) => {
                                    counts[0].fetch_add(1, Ordering::Relaxed);
                                    if close {
                                        break;
                                    }
                                }
                                None => {
                                    counts[2].fetch_add(1, Ordering::Relaxed);
                                    break;
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        UnixLoad { stop, counts, threads }
    }

    fn ok(&self) -> u64 {
        self.counts[0].load(Ordering::Relaxed)
    }

    /// (ok, refused, lost)
    fn finish(self) -> (u64, u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let c = |i: usize| self.counts[i].load(Ordering::Relaxed);
        (c(0), c(1), c(2))
    }
}

/// One `/plaintext` response; `Some(closes)` if complete.
fn read_hello(s: &mut UnixStream) -> Option<bool> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.ends_with(b"Hello, World!") {
        match s.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(String::from_utf8_lossy(&buf).contains("connection: close"))
}

fn assert_none_lost((ok, refused, lost): (u64, u64, u64), what: &str) {
    eprintln!("{what}: ok {ok} refused {refused} lost {lost}");
    assert_eq!((lost, refused), (0, 0), "{what}: requests lost or connections refused (ok {ok})");
    assert!(ok > 50, "{what}: the load ran ({ok})");
}

#[test]
fn sighup_and_recycling_lose_nothing_over_the_socket() {
    let _turn = heavy();
    let (_dir, path) = socket_path("reload");
    let mut server =
        start(&path, &["--workers", "2", "--max-requests", "200", "--max-requests-jitter", "20"]);
    let load = UnixLoad::start(&path, 3);
    assert!(eventually(Duration::from_secs(10), || load.ok() > 100), "load started");
    server.signal(libc::SIGHUP);
    assert!(server.wait_log("reload done", Duration::from_secs(10)), "{:?}", server.logs());
    let before = load.ok();
    assert!(eventually(Duration::from_secs(10), || load.ok() > before + 600), "served through recycles");
    assert_none_lost(load.finish(), "SIGHUP and --max-requests over a Unix socket");
    assert!(server.logs().iter().any(|l| l.contains("recycled after")), "executors were recycled");
}

#[test]
fn socket_activation_with_a_unix_socket() {
    let (_dir, path) = socket_path("activation");
    // The test plays systemd: it binds the socket and passes it as descriptor 3.
    let listener = UnixListener::bind(&path).unwrap();
    let fd = listener.as_raw_fd();
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "LISTEN_PID=$$ LISTEN_FDS=2 LISTEN_FDNAMES=http:uds exec \"$@\"", "sh", bin()]).args([
        "--workers",
        "2",
        "--log-format",
        "json",
    ]);
    // A TCP socket beside it (descriptor 4), so the ready line names a TCP address.
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_fd = tcp.as_raw_fd();
    // SAFETY: dup2 and fcntl are async-signal-safe. Each source is parked above the targets
    // first (close-on-exec), so moving one into place cannot clobber the other.
    unsafe {
        cmd.pre_exec(move || {
            let a = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10);
            let b = libc::fcntl(tcp_fd, libc::F_DUPFD_CLOEXEC, 10);
            if a < 0 || b < 0 || libc::dup2(a, 3) < 0 || libc::dup2(b, 4) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut server = ServerProc::spawn_command(cmd).expect("socket-activated server starts");
    for _ in 0..5 {
        assert_eq!(unix_client(&path).request_status(), 200);
    }
    // The socket is the service manager's: percore neither removes the file nor closes it.
    server.signal(libc::SIGTERM);
    assert!(server.wait_exit(Duration::from_secs(15)).expect("exits").success());
    assert!(path.exists(), "the service manager's socket file stays");
    let _queued = UnixStream::connect(&path).expect("still listening after the drain");
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_ok(), "the connection waits for the next start");
}

#[test]
fn sigusr2_upgrade_hands_over_the_unix_socket_losing_nothing() {
    let _turn = heavy();
    let (_dir, path) = socket_path("upgrade");
    let mut server = start(&path, &["--workers", "2"]);
    let load = UnixLoad::start(&path, 3);
    assert!(eventually(Duration::from_secs(10), || load.ok() > 100), "load started");
    server.signal(libc::SIGUSR2);
    assert!(
        server.wait_log("upgrade: the new process serves", Duration::from_secs(20)),
        "{:?}",
        server.logs()
    );
    let line = server.logs().into_iter().find(|l| l.contains("the new process serves")).unwrap();
    let pid: i32 =
        line.split("\"pid\":").nth(1).and_then(|r| r.split([',', '}']).next()).unwrap().parse().unwrap();
    let status = server.wait_exit(Duration::from_secs(15));
    let before = load.ok();
    let progressed = eventually(Duration::from_secs(10), || load.ok() > before + 100);
    let after = unix_client(&path).request_status();
    let file_kept = path.exists();
    let counts = load.finish();
    // The successor is ours to stop (our server started it): it drains and exits on SIGTERM.
    stop_successor(pid, Duration::from_secs(15), &|| server.logs());
    assert!(status.expect("old process exits").success());
    assert!(file_kept, "the old process leaves the socket file to the new one");
    assert!(progressed, "the new process serves the load");
    assert_eq!(after, 200);
    assert_none_lost(counts, "SIGUSR2 upgrade over a Unix socket");
}
