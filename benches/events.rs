//! Requests lost across process events, measured with the release binary under load:
//! SIGTERM (drain), SIGHUP (reload), `--max-requests` recycling, SIGUSR2 (binary upgrade),
//! and the worst latency of a new connection while an executor is stalled.
//!
//! ```sh
//! cargo build --release && cargo bench --bench events
//! ```
//!
//! Every client request is classified: **ok** (a complete response), **refused** (the
//! connection was refused: never accepted, as during the last moments of a drain), or
//! **lost** (sent, then the connection ended or was reset before a complete response).
//! The goal is zero lost in every row. Only 127.0.0.1 is used, every loop is bounded in
//! time, and only the server processes started here are signalled or killed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

const CLIENTS: usize = 8;

struct Server {
    child: Child,
    addr: SocketAddr,
    lines: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let bin = std::env::var("PERCORE_BIN").unwrap_or_else(|_| "target/release/percore".to_string());
        let mut child = Command::new(&bin)
            .args(["--port", "0", "--log-format", "json"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin} ({e}); run `cargo build --release` first"));
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = lines.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("percore ready") {
                    let _ = tx.send(line.clone());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let ready = rx.recv_timeout(Duration::from_secs(20)).expect("server ready");
        let addr = field(&ready, "address").parse().unwrap();
        Server { child, addr, lines }
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on the child started above.
        unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
    }

    fn log_contains(&self, needle: &str) -> bool {
        self.lines.lock().unwrap().iter().any(|l| l.contains(needle))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn field(line: &str, key: &str) -> String {
    let pat = format!("\"{key}\":\"");
    let start = line.find(&pat).expect(key) + pat.len();
    line[start..start + line[start..].find('"').unwrap()].to_string()
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    refused: AtomicU64,
    lost: AtomicU64,
}

/// Keep-alive clients sending `GET /plaintext` until `stop`.
fn load(addr: SocketAddr, stop: Arc<AtomicBool>, counts: Arc<Counts>) -> Vec<thread::JoinHandle<()>> {
    (0..CLIENTS)
        .map(|_| {
            let (stop, counts) = (stop.clone(), counts.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
                        counts.refused.fetch_add(1, Ordering::Relaxed);
                        thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    while !stop.load(Ordering::Relaxed) {
                        if s.write_all(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n").is_err() {
                            counts.lost.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        match response(&mut s) {
                            Some(close) => {
                                counts.ok.fetch_add(1, Ordering::Relaxed);
                                if close {
                                    break;
                                }
                            }
                            None => {
                                counts.lost.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                        }
                    }
                }
            })
        })
        .collect()
}

fn response(s: &mut TcpStream) -> Option<bool> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.ends_with(b"Hello, World!") {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    Some(String::from_utf8_lossy(&buf).contains("connection: close"))
}

/// Run `event` under load for `secs` seconds in all; returns (ok, refused, lost).
fn under_load(server: &Server, secs: f64, event: impl FnOnce(&Server)) -> (u64, u64, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let threads = load(server.addr, stop.clone(), counts.clone());
    thread::sleep(Duration::from_secs_f64(secs / 2.0));
    event(server);
    thread::sleep(Duration::from_secs_f64(secs / 2.0));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    (
        counts.ok.load(Ordering::Relaxed),
        counts.refused.load(Ordering::Relaxed),
        counts.lost.load(Ordering::Relaxed),
    )
}

fn row(name: &str, (ok, refused, lost): (u64, u64, u64), note: &str) {
    println!("| {name} | {ok} | {refused} | **{lost}** | {note} |");
}

fn main() {
    println!("| event | requests ok | connections refused (never accepted) | requests lost | note |");
    println!("|---|---|---|---|---|");

    let s = Server::start(&["--workers", "2"]);
    let r = under_load(&s, 3.0, |s| s.signal(libc::SIGTERM));
    row(
        "SIGTERM (drain)",
        r,
        if s.log_contains("drain complete") { "drained cleanly" } else { "NOT drained" },
    );

    let s = Server::start(&["--workers", "2"]);
    let r = under_load(&s, 3.0, |s| s.signal(libc::SIGHUP));
    row(
        "SIGHUP (reload)",
        r,
        if s.log_contains("reload done") { "both executors replaced" } else { "no reload?" },
    );

    let s = Server::start(&["--workers", "2", "--max-requests", "5000", "--max-requests-jitter", "500"]);
    let r = under_load(&s, 4.0, |_| {});
    let recycled = s.lines.lock().unwrap().iter().filter(|l| l.contains("recycled after")).count();
    row("--max-requests 5000 recycling", r, &format!("{recycled} recycles"));

    let s = Server::start(&["--workers", "2"]);
    let r = under_load(&s, 4.0, |s| s.signal(libc::SIGUSR2));
    let successor =
        s.lines.lock().unwrap().iter().find(|l| l.contains("the new process serves")).and_then(|l| {
            l.split("\"pid\":").nth(1).and_then(|p| p.split([',', '}']).next()).map(str::to_string)
        });
    row(
        "SIGUSR2 (binary upgrade)",
        r,
        if successor.is_some() { "new process took over" } else { "upgrade failed" },
    );
    if let Some(pid) = successor.and_then(|p| p.parse::<i32>().ok()) {
        // SAFETY: the successor our server started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }

    // A stalled executor: new connections while one executor is blocked for 3 s.
    let s = Server::start(&["--workers", "2", "--debug-routes"]);
    let mut staller = TcpStream::connect(s.addr).unwrap();
    staller.write_all(b"GET /stall?ms=3000 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let start = Instant::now();
    let mut worst = Duration::ZERO;
    let mut n = 0;
    while start.elapsed() < Duration::from_millis(2800) {
        let t = Instant::now();
        let mut c = TcpStream::connect(s.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let _ = response(&mut c);
        worst = worst.max(t.elapsed());
        n += 1;
        thread::sleep(Duration::from_millis(20));
    }
    println!();
    println!(
        "Stall: {n} new connections while one of 2 executors was blocked for 3 s (--stall-detect 1s): \
         worst connect-to-response latency {:.0} ms",
        worst.as_secs_f64() * 1000.0
    );
}
