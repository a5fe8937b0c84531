//! Descriptors and memory across executor replacements: many SIGHUP reloads, then
//! `--max-requests` recycling under a keep-alive load, on every runtime. Both must stay
//! flat: a leak per replaced executor ends, given time, in EMFILE or the OOM killer.
//!
//! ```sh
//! cargo build --release && cargo bench --bench leaks
//! # fewer rounds, one runtime, the debug build:
//! PERCORE_BIN=target/debug/percore LEAK_HUPS=60 LEAK_RUNTIMES=monoio cargo bench --bench leaks
//! ```
//!
//! Each row: descriptors and RSS after a warm-up, then at the end. The run fails (exit 1)
//! when descriptors grew, or RSS grew by more than `LEAK_RSS_KIB` (default 1024) after the
//! warm-up. Only 127.0.0.1 is used, every loop is bounded in time, and only the server
//! processes started here are signalled or killed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    addr: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(runtime: &str, args: &[&str]) -> Server {
        let bin = std::env::var("PERCORE_BIN").unwrap_or_else(|_| "target/release/percore".to_string());
        let mut child = Command::new(&bin)
            .args(["--port", "0", "--workers", "2", "--log-format", "json", "--runtime", runtime])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin} ({e}); run `cargo build --release` first"));
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut server = Server { child, addr: "127.0.0.1:0".parse().unwrap(), lines };
        let ready = server.wait_line("percore ready", 1, Duration::from_secs(20)).expect("server ready");
        server.addr = field(&ready, "address").parse().unwrap();
        server
    }

    /// The `n`th log line containing `needle`, waiting up to `limit`.
    fn wait_line(&self, needle: &str, n: usize, limit: Duration) -> Option<String> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(l) = self.lines.lock().unwrap().iter().filter(|l| l.contains(needle)).nth(n - 1) {
                return Some(l.clone());
            }
            thread::sleep(Duration::from_millis(10));
        }
        None
    }

    fn count(&self, needle: &str) -> usize {
        self.lines.lock().unwrap().iter().filter(|l| l.contains(needle)).count()
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on the child started above.
        unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
    }

    /// Open descriptors and resident memory (KiB), from /proc.
    fn usage(&self) -> (usize, u64) {
        let pid = self.child.id();
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let rss = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        (fds, rss)
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

/// One measured run: usage after the warm-up and at the end, and executors replaced.
struct Row {
    what: String,
    warm: (usize, u64),
    end: (usize, u64),
    replaced: usize,
}

impl Row {
    fn grew(&self, rss_kib: u64) -> bool {
        self.end.0 > self.warm.0 || self.end.1 > self.warm.1 + rss_kib
    }
}

/// `hups` reloads, one after the other (each waits for the one before to finish).
fn reloads(runtime: &str, hups: usize) -> Row {
    let s = Server::start(runtime, &[]);
    let warm_up = hups / 5;
    let mut warm = s.usage();
    for n in 1..=hups {
        s.signal(libc::SIGHUP);
        if s.wait_line("reload done", n, Duration::from_secs(10)).is_none() {
            panic!("{runtime}: reload {n} did not finish");
        }
        if n == warm_up {
            warm = s.usage();
        }
    }
    thread::sleep(Duration::from_millis(500));
    Row {
        what: format!("{runtime}: {hups} SIGHUPs"),
        warm,
        end: s.usage(),
        replaced: s.count("executor replaced"),
    }
}

/// `--max-requests 50` under 4 keep-alive clients for `secs` seconds.
fn recycling(runtime: &str, secs: u64) -> Row {
    let s = Server::start(runtime, &["--max-requests", "50"]);
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, addr) = (stop.clone(), ok.clone(), s.addr);
            thread::spawn(move || client(addr, &stop, &ok))
        })
        .collect();
    thread::sleep(Duration::from_secs(secs / 5));
    let warm = s.usage();
    thread::sleep(Duration::from_secs(secs - secs / 5));
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        let _ = c.join();
    }
    thread::sleep(Duration::from_millis(500));
    Row {
        what: format!("{runtime}: --max-requests 50, {secs} s, {} requests", ok.load(Ordering::SeqCst)),
        warm,
        end: s.usage(),
        replaced: s.count("executor replaced"),
    }
}

/// Keep-alive `GET /plaintext` until `stop`, reconnecting when the server closes.
fn client(addr: SocketAddr, stop: &AtomicBool, ok: &AtomicU64) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
            thread::sleep(Duration::from_millis(5));
            continue;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut buf = [0u8; 1024];
        while !stop.load(Ordering::Relaxed) {
            if s.write_all(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n").is_err() {
                break;
            }
            match s.read(&mut buf) {
                Ok(n) if n > 0 => {
                    ok.fetch_add(1, Ordering::Relaxed);
                    if String::from_utf8_lossy(&buf[..n]).contains("connection: close") {
                        break;
                    }
                }
                _ => break,
            }
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    let hups: usize = env("LEAK_HUPS", "150").parse().expect("LEAK_HUPS");
    let secs: u64 = env("LEAK_SECS", "12").parse().expect("LEAK_SECS");
    let rss_kib: u64 = env("LEAK_RSS_KIB", "1024").parse().expect("LEAK_RSS_KIB");
    let runtimes = env("LEAK_RUNTIMES", "monoio tokio tokio-mt glommio");
    println!("| run | executors replaced | fds after warm-up → end | RSS KiB after warm-up → end |");
    println!("|---|---:|---|---|");
    let mut failed = false;
    for runtime in runtimes.split_whitespace() {
        for row in [reloads(runtime, hups), recycling(runtime, secs)] {
            let flag = if row.grew(rss_kib) { " **grew**" } else { "" };
            failed |= row.grew(rss_kib);
            println!(
                "| {} | {} | {} → {} | {} → {}{flag} |",
                row.what, row.replaced, row.warm.0, row.end.0, row.warm.1, row.end.1
            );
        }
    }
    if failed {
        std::process::exit(1);
    }
}
