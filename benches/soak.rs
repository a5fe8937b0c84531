//! Soak harness: the release binary under steady, well-behaved load, first alone and then
//! beside hostile clients, watching errors, tail latency and the server's memory.
//!
//! ```sh
//! cargo build --release                                   # the server under test
//! cargo bench --bench soak -- --minutes 10                # 3 min baseline + 7 min hostile
//! cargo bench --bench soak -- --secs 60 --idle 10000      # a short run
//! ```
//!
//! Options (all optional):
//!
//! | option | default | meaning |
//! |---|---|---|
//! | `--minutes M` / `--secs S` | 1 min | whole run; 30 % baseline (no hostile clients), 70 % hostile |
//! | `--idle N` | 10000 | idle keep-alive connections held open during the hostile phase |
//! | `--clients C` | 4 | well-behaved client threads, one keep-alive connection each |
//! | `--rate R` | 250 | requests per second per well-behaved client (paced) |
//! | `--slowloris N` | 256 | connections trickling a head one byte a second |
//! | `--non-readers N` | 16 | connections asking for a huge `/stream` and never reading |
//! | `--churn R` | 20 | half-closing clients and garbage-sending clients started per second (each) |
//! | `--workers W` | the server's default | passed to the server |
//! | `--bin PATH` | `target/release/percore` | the server binary (or `PERCORE_BIN`) |
//! | `--server-arg ARG` | | one more argument for the server (repeatable) |
//!
//! Everything runs on 127.0.0.1 against a server this harness starts on a free port; every
//! loop is bounded by the run's deadline; at the end the harness stops that server (by its
//! own child PID) and prints a report. The open-files limit is raised to its hard limit.

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

// --- options ------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Opts {
    total: Duration,
    idle: usize,
    clients: usize,
    rate: u32,
    slowloris: usize,
    non_readers: usize,
    churn: u32,
    workers: Option<String>,
    bin: String,
    server_args: Vec<String>,
}

fn parse_opts() -> Opts {
    let mut o = Opts {
        total: Duration::from_secs(60),
        idle: 10_000,
        clients: 4,
        rate: 250,
        slowloris: 256,
        non_readers: 16,
        churn: 20,
        workers: None,
        bin: std::env::var("PERCORE_BIN")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/percore").to_string()),
        server_args: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| args.next().unwrap_or_else(|| die(&format!("{name} needs a value")));
        let num = |s: String, name: &str| {
            s.parse::<f64>().unwrap_or_else(|_| die(&format!("{name}: not a number: {s}")))
        };
        match a.as_str() {
            "--minutes" => o.total = Duration::from_secs_f64(num(val("--minutes"), "--minutes") * 60.0),
            "--secs" => o.total = Duration::from_secs_f64(num(val("--secs"), "--secs")),
            "--idle" => o.idle = num(val("--idle"), "--idle") as usize,
            "--clients" => o.clients = (num(val("--clients"), "--clients") as usize).max(1),
            "--rate" => o.rate = (num(val("--rate"), "--rate") as u32).max(1),
            "--slowloris" => o.slowloris = num(val("--slowloris"), "--slowloris") as usize,
            "--non-readers" => o.non_readers = num(val("--non-readers"), "--non-readers") as usize,
            "--churn" => o.churn = num(val("--churn"), "--churn") as u32,
            "--workers" => o.workers = Some(val("--workers")),
            "--bin" => o.bin = val("--bin"),
            "--server-arg" => o.server_args.push(val("--server-arg")),
            // `cargo bench` passes --bench to every bench binary.
            "--bench" => {}
            "-h" | "--help" => {
                println!("see the header of benches/soak.rs for the options");
                std::process::exit(0);
            }
            other => die(&format!("unknown option {other} (see benches/soak.rs)")),
        }
    }
    if o.total < Duration::from_secs(10) {
        die("a run needs at least 10 s");
    }
    o
}

fn die(msg: &str) -> ! {
    eprintln!("soak: {msg}");
    std::process::exit(2)
}

/// Raise the soft open-files limit to the hard limit; returns the limit in force.
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    lim.rlim_cur
}

// --- the server -----------------------------------------------------------------------------

struct Server {
    child: Child,
    addr: SocketAddr,
    log_problems: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(o: &Opts) -> Server {
        if !std::path::Path::new(&o.bin).is_file() {
            die(&format!("no server binary at {}: run `cargo build --release` first (or pass --bin)", o.bin));
        }
        let mut cmd = Command::new(&o.bin);
        cmd.args(["--host", "127.0.0.1", "--port", "0", "--log-format", "json"]);
        if let Some(w) = &o.workers {
            cmd.args(["--workers", w]);
        }
        cmd.args(&o.server_args);
        let mut child = cmd
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| die(&format!("start {}: {e}", o.bin)));
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let problems = Arc::new(Mutex::new(Vec::new()));
        let sink = problems.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("percore ready") {
                    let _ = tx.send(line.clone());
                }
                if line.contains("\"WARN\"") || line.contains("\"ERROR\"") {
                    sink.lock().unwrap().push(line);
                }
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                die("the server did not say ready within 20 s");
            }
        };
        let addr = json_field(&line, "address").unwrap_or_else(|| die(&format!("no address in {line}")));
        Server { child, addr: addr.parse().expect("address"), log_problems: problems }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM to our own child, then wait; SIGKILL (by the same handle) if it lingers.
    fn stop(mut self) -> String {
        if let Ok(Some(st)) = self.child.try_wait() {
            return format!("had already exited: {st}");
        }
        // SAFETY: kill(2) on our own child, which has not been reaped (checked above).
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(40) {
            if let Ok(Some(st)) = self.child.try_wait() {
                return format!("exited after SIGTERM in {:.1} s: {st}", start.elapsed().as_secs_f64());
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        "did not exit within 40 s of SIGTERM; killed".to_string()
    }
}

fn json_field(line: &str, key: &str) -> Option<String> {
    let pat = format!("\"{key}\":\"");
    let start = line.find(&pat)? + pat.len();
    let end = line[start..].find('"')? + start;
    Some(line[start..end].to_string())
}

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Samples the server's RSS every 100 ms, keeps the peak, and a sample every `every`.
struct RssWatch {
    peak: Arc<AtomicU64>,
    timeline: Arc<Mutex<Vec<(Duration, u64)>>>,
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<()>>,
}

impl RssWatch {
    fn start(pid: u32, every: Duration) -> RssWatch {
        let peak = Arc::new(AtomicU64::new(rss_kib(pid).unwrap_or(0)));
        let timeline = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, t, s) = (peak.clone(), timeline.clone(), stop.clone());
        let handle = thread::spawn(move || {
            let start = Instant::now();
            let mut next = start;
            while !s.load(Relaxed) {
                if let Some(kib) = rss_kib(pid) {
                    p.fetch_max(kib, Relaxed);
                    if Instant::now() >= next {
                        t.lock().unwrap().push((start.elapsed(), kib));
                        next += every;
                    }
                }
                thread::sleep(Duration::from_millis(100));
            }
        });
        RssWatch { peak, timeline, stop, handle: Some(handle) }
    }

    fn finish(mut self) -> (u64, Vec<(Duration, u64)>) {
        self.stop.store(true, Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        let timeline = self.timeline.lock().unwrap().clone();
        (self.peak.load(Relaxed), timeline)
    }
}

// --- a small HTTP/1.1 client ------------------------------------------------------------------

fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.set_nodelay(true)?;
    Ok(s)
}

struct Resp {
    status: u16,
    body: Vec<u8>,
    close: bool,
}

fn io_err(msg: impl Into<String>) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, msg.into())
}

/// Read one response (Content-Length or chunked; close-delimited is not expected here).
fn read_response(r: &mut BufReader<TcpStream>) -> io::Result<Resp> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(io::Error::new(ErrorKind::UnexpectedEof, "closed before a response"));
    }
    let status: u16 = line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io_err(format!("bad status line {line:?}")))?;
    let (mut len, mut chunked, mut close) = (None, false, false);
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(io::Error::new(ErrorKind::UnexpectedEof, "closed inside a head"));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (n, v) = l.split_once(':').ok_or_else(|| io_err(format!("bad header {l:?}")))?;
        let v = v.trim();
        if n.eq_ignore_ascii_case("content-length") {
            len = Some(v.parse::<usize>().map_err(|_| io_err("bad content-length"))?);
        } else if n.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.eq_ignore_ascii_case("chunked");
        } else if n.eq_ignore_ascii_case("connection") {
            close = v.eq_ignore_ascii_case("close");
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim_end(), 16)
                .map_err(|_| io_err(format!("chunk size {line:?}")))?;
            let mut data = vec![0; size + 2];
            r.read_exact(&mut data)?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&data[..size]);
        }
    } else if let Some(n) = len {
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    } else if status != 204 && status != 304 && status >= 200 {
        r.read_to_end(&mut body)?;
    }
    Ok(Resp { status, body, close })
}

// --- well-behaved load ----------------------------------------------------------------------

#[derive(Default)]
struct LoadResult {
    latencies_us: Vec<u32>,
    errors: Vec<String>,
    served: u64,
    /// Requests over 100 ms: (seconds into the phase, milliseconds).
    slow: Vec<(f64, f64)>,
}

/// One paced keep-alive client: a mix of /plaintext, /echo with a body and /stream, each
/// answer checked. Latency is from the write of the request to the last byte of the response.
/// Checks a response body.
type Check = Box<dyn Fn(&[u8]) -> bool>;

fn well_behaved(addr: SocketAddr, rate: u32, until: Instant, seed: u64) -> LoadResult {
    let mut res = LoadResult::default();
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let mut conn: Option<(TcpStream, BufReader<TcpStream>)> = None;
    let mut rng = seed | 1;
    let start = Instant::now();
    let mut i: u64 = 0;
    while Instant::now() < until {
        let due = start + interval * (i as u32);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait.min(until.saturating_duration_since(Instant::now())));
        }
        if Instant::now() >= until {
            break;
        }
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let (req, want): (Vec<u8>, Check) = match i % 4 {
            0 | 1 => (
                b"GET /plaintext HTTP/1.1\r\nHost: soak\r\n\r\n".to_vec(),
                Box::new(|b: &[u8]| b == b"Hello, World!"),
            ),
            2 => {
                let n = 1 + (rng % 8192) as usize;
                let body: Vec<u8> = (0..n).map(|k| b'a' + ((k as u64 + rng) % 26) as u8).collect();
                let mut req = format!(
                    "POST /echo HTTP/1.1\r\nHost: soak\r\nContent-Type: text/plain\r\nContent-Length: {n}\r\n\r\n"
                )
                .into_bytes();
                req.extend_from_slice(&body);
                (req, Box::new(move |b: &[u8]| b == &body[..]))
            }
            _ => (
                b"GET /stream?chunks=8&size=1024 HTTP/1.1\r\nHost: soak\r\n\r\n".to_vec(),
                Box::new(|b: &[u8]| b.len() == 8192 && b.iter().all(|&c| c == b'x')),
            ),
        };
        i += 1;
        if conn.is_none() {
            match connect(addr, Duration::from_secs(5)) {
                Ok(s) => {
                    let r = BufReader::new(s.try_clone().expect("clone socket"));
                    conn = Some((s, r));
                }
                Err(e) => {
                    res.errors.push(format!("connect: {e}"));
                    continue;
                }
            }
        }
        let (w, r) = conn.as_mut().unwrap();
        let t0 = Instant::now();
        let outcome = w.write_all(&req).and_then(|_| read_response(r));
        let took = t0.elapsed();
        match outcome {
            Ok(resp) if resp.status == 200 && want(&resp.body) => {
                res.served += 1;
                if took > Duration::from_millis(100) {
                    res.slow.push(((t0 - start).as_secs_f64(), took.as_secs_f64() * 1000.0));
                }
                res.latencies_us.push(took.as_micros().min(u128::from(u32::MAX)) as u32);
                if resp.close {
                    conn = None;
                }
            }
            Ok(resp) => {
                res.errors.push(format!(
                    "status {} with {} body bytes (request {})",
                    resp.status,
                    resp.body.len(),
                    i - 1
                ));
                conn = None;
            }
            Err(e) => {
                res.errors.push(format!("request {}: {e}", i - 1));
                conn = None;
            }
        }
    }
    res
}

fn run_load(o: &Opts, addr: SocketAddr, dur: Duration) -> LoadResult {
    let until = Instant::now() + dur;
    let handles: Vec<_> = (0..o.clients)
        .map(|k| {
            let rate = o.rate;
            thread::spawn(move || well_behaved(addr, rate, until, 0x9e37_79b9_7f4a_7c15 ^ k as u64))
        })
        .collect();
    let mut all = LoadResult::default();
    for h in handles {
        let r = h.join().expect("client thread");
        all.latencies_us.extend(r.latencies_us);
        all.errors.extend(r.errors);
        all.served += r.served;
        all.slow.extend(r.slow);
    }
    all.latencies_us.sort_unstable();
    all.slow.sort_by(|a, b| a.0.total_cmp(&b.0));
    all
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

// --- hostile clients ------------------------------------------------------------------------

#[derive(Default)]
struct HostileStats {
    slowloris_opened: AtomicU64,
    slowloris_cut: AtomicU64,
    non_reader_cycles: AtomicU64,
    half_close_ok: AtomicU64,
    half_close_bad: AtomicU64,
    garbage_sent: AtomicU64,
    garbage_4xx: AtomicU64,
    garbage_other: AtomicU64,
    garbage_silent: AtomicU64,
    idle_open: AtomicU64,
    idle_reopened: AtomicU64,
    idle_failed: AtomicU64,
}

/// Slowloris: connections that send a head one byte a second and never finish it. When the
/// server cuts one (header timeout), it is replaced.
fn slowloris(addr: SocketAddr, n: usize, until: Instant, st: Arc<HostileStats>) {
    let open = || -> Option<TcpStream> {
        let mut s = connect(addr, Duration::from_secs(2)).ok()?;
        s.write_all(b"GET /plaintext HTTP/1.1\r\nHost: soak\r\nX-Slow: ").ok()?;
        s.set_nonblocking(true).ok()?;
        st.slowloris_opened.fetch_add(1, Relaxed);
        Some(s)
    };
    let mut conns: Vec<Option<TcpStream>> = (0..n).map(|_| open()).collect();
    let mut buf = [0u8; 4096];
    while Instant::now() < until {
        for c in conns.iter_mut() {
            let cut = match c {
                None => true,
                Some(s) => {
                    let answered =
                        !matches!(s.read(&mut buf), Err(ref e) if e.kind() == ErrorKind::WouldBlock);
                    answered || s.write(b"a").is_err()
                }
            };
            if cut {
                if c.is_some() {
                    st.slowloris_cut.fetch_add(1, Relaxed);
                }
                *c = if Instant::now() < until { open() } else { None };
            }
        }
        thread::sleep(Duration::from_secs(1).min(until.saturating_duration_since(Instant::now())));
    }
}

/// Clients that ask for a huge stream and never read it; each is replaced every 40 s, past
/// the server's 30 s write timeout.
fn non_readers(addr: SocketAddr, n: usize, until: Instant, st: Arc<HostileStats>) {
    let open = || -> Option<TcpStream> {
        let mut s = connect(addr, Duration::from_secs(2)).ok()?;
        s.write_all(b"GET /stream?chunks=100000&size=65536 HTTP/1.1\r\nHost: soak\r\n\r\n").ok()?;
        Some(s)
    };
    while Instant::now() < until {
        let conns: Vec<_> = (0..n).filter_map(|_| open()).collect();
        st.non_reader_cycles.fetch_add(1, Relaxed);
        let hold = Instant::now() + Duration::from_secs(40);
        while Instant::now() < hold.min(until) {
            thread::sleep(Duration::from_millis(200));
        }
        drop(conns);
    }
}

/// Clients that send a request, half-close, and read to EOF: exactly one 200 is owed.
fn half_closers(addr: SocketAddr, rate: u32, until: Instant, st: Arc<HostileStats>) {
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    while Instant::now() < until {
        let t = Instant::now();
        let ok = (|| -> io::Result<bool> {
            let mut s = connect(addr, Duration::from_secs(5))?;
            s.write_all(b"GET /plaintext HTTP/1.1\r\nHost: soak\r\n\r\n")?;
            s.shutdown(Shutdown::Write)?;
            let mut r = BufReader::new(s);
            let resp = read_response(&mut r)?;
            let mut rest = Vec::new();
            r.read_to_end(&mut rest)?;
            Ok(resp.status == 200 && resp.body == b"Hello, World!" && rest.is_empty())
        })();
        match ok {
            Ok(true) => st.half_close_ok.fetch_add(1, Relaxed),
            _ => st.half_close_bad.fetch_add(1, Relaxed),
        };
        if let Some(w) = interval.checked_sub(t.elapsed()) {
            thread::sleep(w);
        }
    }
}

/// Clients that send random bytes (sometimes after a valid request line), half-close, and
/// read whatever comes back.
fn garbage(addr: SocketAddr, rate: u32, until: Instant, st: Arc<HostileStats>) {
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let mut rng: u64 = 0x2545_f491_4f6c_dd1d;
    while Instant::now() < until {
        let t = Instant::now();
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let len = 1 + (next() % 2048) as usize;
        let mut bytes: Vec<u8> =
            if next() % 2 == 0 { b"POST /echo HTTP/1.1\r\n".to_vec() } else { Vec::new() };
        bytes.extend((0..len).map(|_| next() as u8));
        let status = (|| -> io::Result<Option<u16>> {
            let mut s = connect(addr, Duration::from_secs(5))?;
            let _ = s.write_all(&bytes);
            let _ = s.shutdown(Shutdown::Write);
            let mut got = Vec::new();
            let _ = s.read_to_end(&mut got);
            Ok(got.get(9..12).and_then(|d| std::str::from_utf8(d).ok()).and_then(|d| d.parse().ok()))
        })();
        st.garbage_sent.fetch_add(1, Relaxed);
        match status {
            Ok(Some(s)) if (400..500).contains(&s) || s == 501 || s == 505 => {
                st.garbage_4xx.fetch_add(1, Relaxed)
            }
            Ok(None) => st.garbage_silent.fetch_add(1, Relaxed),
            _ => st.garbage_other.fetch_add(1, Relaxed),
        };
        if let Some(w) = interval.checked_sub(t.elapsed()) {
            thread::sleep(w);
        }
    }
}

/// Open `n` idle keep-alive connections (each after one request, so they wait under
/// `--keep-alive`, not the header timeout).
fn open_idle(addr: SocketAddr, n: usize, st: &HostileStats) -> Vec<Option<TcpStream>> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(open_one_idle(addr, st));
    }
    v
}

fn open_one_idle(addr: SocketAddr, st: &HostileStats) -> Option<TcpStream> {
    let r = (|| -> io::Result<TcpStream> {
        let mut s = connect(addr, Duration::from_secs(5))?;
        s.write_all(b"GET /plaintext HTTP/1.1\r\nHost: soak\r\n\r\n")?;
        let mut r = BufReader::new(s.try_clone()?);
        let resp = read_response(&mut r)?;
        if resp.status != 200 || !r.buffer().is_empty() {
            return Err(io_err("bad idle response"));
        }
        s.set_nonblocking(true)?;
        Ok(s)
    })();
    match r {
        Ok(s) => {
            st.idle_open.fetch_add(1, Relaxed);
            Some(s)
        }
        Err(_) => {
            st.idle_failed.fetch_add(1, Relaxed);
            None
        }
    }
}

/// Every 5 s, replace the idle connections the server closed (keep-alive timeout).
fn keep_idle(addr: SocketAddr, mut conns: Vec<Option<TcpStream>>, until: Instant, st: Arc<HostileStats>) {
    let mut buf = [0u8; 64];
    while Instant::now() < until {
        let next_round = Instant::now() + Duration::from_secs(5);
        while Instant::now() < next_round.min(until) {
            thread::sleep(Duration::from_millis(100));
        }
        for c in conns.iter_mut() {
            if Instant::now() >= until {
                break;
            }
            let closed = match c {
                None => true,
                Some(s) => !matches!(s.read(&mut buf), Err(ref e) if e.kind() == ErrorKind::WouldBlock),
            };
            if closed {
                if c.take().is_some() {
                    st.idle_open.fetch_sub(1, Relaxed);
                }
                *c = open_one_idle(addr, &st);
                st.idle_reopened.fetch_add(1, Relaxed);
            }
        }
    }
    let n = conns.iter().filter(|c| c.is_some()).count() as u64;
    st.idle_open.fetch_sub(n, Relaxed);
}

// --- the run --------------------------------------------------------------------------------

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn describe(name: &str, r: &LoadResult, secs: f64) {
    println!(
        "| {name} | {} | {:.0} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
        r.served,
        r.served as f64 / secs,
        r.errors.len(),
        pct(&r.latencies_us, 0.50),
        pct(&r.latencies_us, 0.99),
        pct(&r.latencies_us, 0.999),
        r.latencies_us.last().map_or(f64::NAN, |&m| f64::from(m) / 1000.0),
    );
}

fn main() {
    let o = parse_opts();
    let nofile = raise_nofile();
    let needed = (o.idle + o.slowloris + o.non_readers + o.clients + 256) as u64;
    let mut o = o;
    if needed > nofile {
        let fit = nofile.saturating_sub((o.slowloris + o.non_readers + o.clients + 256) as u64) as usize;
        eprintln!("soak: open-files limit {nofile}: --idle lowered from {} to {fit}", o.idle);
        o.idle = fit;
    }
    let baseline = o.total.mul_f64(0.3);
    let hostile = o.total - baseline;

    let server = Server::start(&o);
    let pid = server.pid();
    let addr = server.addr;
    eprintln!("soak: server pid {pid} on {addr}; baseline {baseline:?}, hostile {hostile:?}");
    thread::sleep(Duration::from_millis(500));
    let rss_start = rss_kib(pid).unwrap_or(0);
    let watch = RssWatch::start(pid, (o.total / 12).max(Duration::from_secs(5)));

    // Phase 1: the well-behaved load alone.
    eprintln!("soak: phase 1, well-behaved load only");
    let base = run_load(&o, addr, baseline);
    let rss_after_baseline = rss_kib(pid).unwrap_or(0);

    // Phase 2: idle connections first (to measure them), then everything at once.
    eprintln!("soak: phase 2, opening {} idle connections", o.idle);
    let st = Arc::new(HostileStats::default());
    let t = Instant::now();
    let idle = open_idle(addr, o.idle, &st);
    let idle_open_time = t.elapsed();
    thread::sleep(Duration::from_secs(1));
    let idle_count = st.idle_open.load(Relaxed);
    let rss_idle = rss_kib(pid).unwrap_or(0);
    eprintln!("soak: {idle_count} idle connections open in {idle_open_time:.1?}; hostile clients start");

    let until = Instant::now() + hostile;
    let mut hostiles = Vec::new();
    {
        let st = st.clone();
        hostiles.push(thread::spawn(move || keep_idle(addr, idle, until, st)));
    }
    if o.slowloris > 0 {
        let (st, n) = (st.clone(), o.slowloris);
        hostiles.push(thread::spawn(move || slowloris(addr, n, until, st)));
    }
    if o.non_readers > 0 {
        let (st, n) = (st.clone(), o.non_readers);
        hostiles.push(thread::spawn(move || non_readers(addr, n, until, st)));
    }
    if o.churn > 0 {
        let (st1, st2, r) = (st.clone(), st.clone(), o.churn);
        hostiles.push(thread::spawn(move || half_closers(addr, r, until, st1)));
        hostiles.push(thread::spawn(move || garbage(addr, r, until, st2)));
    }
    let under = run_load(&o, addr, hostile);
    for h in hostiles {
        let _ = h.join();
    }
    eprintln!("soak: hostile clients gone; settling 5 s");
    thread::sleep(Duration::from_secs(5));
    let rss_end = rss_kib(pid).unwrap_or(0);
    let (rss_peak, timeline) = watch.finish();
    let rss_peak = rss_peak.max(rss_end);
    let problems = server.log_problems.lock().unwrap().clone();
    let stopped = server.stop();

    // --- report
    println!();
    println!(
        "## percore soak: {:.0} s ({:.0} s baseline + {:.0} s hostile)",
        o.total.as_secs_f64(),
        baseline.as_secs_f64(),
        hostile.as_secs_f64()
    );
    println!();
    println!(
        "well-behaved: {} clients × {} req/s, keep-alive, mix 50 % GET /plaintext, 25 % POST /echo (1 B–8 KiB, checked), 25 % GET /stream (8 × 1 KiB chunked, checked)",
        o.clients, o.rate
    );
    println!();
    println!("| phase | served | req/s | errors | p50 ms | p99 ms | p99.9 ms | max ms |");
    println!("|---|---|---|---|---|---|---|---|");
    describe("baseline", &base, baseline.as_secs_f64());
    describe("with hostile clients", &under, hostile.as_secs_f64());
    println!();
    let g = |a: &AtomicU64| a.load(Relaxed);
    println!("hostile clients (phase 2):");
    println!("- idle keep-alive connections: {idle_count} opened in {idle_open_time:.1?} ({} failed), {} replaced after the server's keep-alive close", g(&st.idle_failed), g(&st.idle_reopened));
    println!(
        "- slowloris: {} connections opened, {} cut by the server",
        g(&st.slowloris_opened),
        g(&st.slowloris_cut)
    );
    println!(
        "- non-readers of /stream?chunks=100000&size=65536: {} × {} connections",
        g(&st.non_reader_cycles),
        o.non_readers
    );
    println!("- half-close: {} answered correctly, {} not", g(&st.half_close_ok), g(&st.half_close_bad));
    println!(
        "- garbage: {} sent; {} refused with 4xx/501/505, {} closed without a response, {} other",
        g(&st.garbage_sent),
        g(&st.garbage_4xx),
        g(&st.garbage_silent),
        g(&st.garbage_other)
    );
    println!();
    println!("server RSS (VmRSS):");
    println!("- at start: {}", mib(rss_start));
    println!("- after the baseline phase: {}", mib(rss_after_baseline));
    println!(
        "- with {idle_count} idle connections open: {} (+{:.1} KiB per connection)",
        mib(rss_idle),
        (rss_idle as f64 - rss_after_baseline as f64) / idle_count.max(1) as f64
    );
    println!("- peak: {}", mib(rss_peak));
    println!("- at the end (clients gone, 5 s later): {}", mib(rss_end));
    let line: Vec<String> =
        timeline.iter().map(|(t, k)| format!("{:.0}s {:.0}", t.as_secs_f64(), *k as f64 / 1024.0)).collect();
    println!(
        "- over time (s since start, MiB; hostile phase from {:.0}s): {}",
        baseline.as_secs_f64(),
        line.join(", ")
    );
    println!();
    println!("server warnings/errors logged: {}; server {stopped}", problems.len());
    for p in problems.iter().take(5) {
        println!("  {p}");
    }
    for (name, r) in [("baseline", &base), ("with hostile clients", &under)] {
        if !r.slow.is_empty() {
            let list: Vec<String> =
                r.slow.iter().take(12).map(|(t, ms)| format!("{ms:.0} ms at {t:.1}s")).collect();
            println!("requests over 100 ms, {name}: {} ({})", r.slow.len(), list.join(", "));
        }
    }
    let mut errs = base.errors.clone();
    errs.extend(under.errors.iter().cloned());
    if !errs.is_empty() {
        println!();
        println!("well-behaved errors (first 10):");
        for e in errs.iter().take(10) {
            println!("  {e}");
        }
    }
}
