//! Test support: start the real `percore` binary on a free loopback port, and a small
//! raw-socket HTTP/1.1 client that reads responses exactly as they are framed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long any single socket read in a test may block.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `percore` process, killed (by PID) when dropped.
pub struct ServerProc {
    child: Child,
    pub addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    /// Set once the server's stderr reached EOF (every log line is in `logs`).
    logs_done: Arc<AtomicBool>,
}

impl ServerProc {
    /// Start with `--port 0 --workers 1 --log-format json` plus `args`; a default is left
    /// out when `args` gives the same flag (clap refuses a flag given twice).
    pub fn start(args: &[&str]) -> ServerProc {
        let mut all: Vec<&str> = Vec::new();
        for pair in [["--port", "0"], ["--workers", "1"], ["--log-format", "json"]] {
            if !args.contains(&pair[0]) {
                all.extend_from_slice(&pair);
            }
        }
        all.extend_from_slice(args);
        Self::spawn(&all).expect("server did not become ready")
    }

    /// Start with exactly `args`; `Err` with the logs if it never says ready.
    pub fn spawn(args: &[&str]) -> Result<ServerProc, String> {
        let mut cmd = Command::new(bin());
        cmd.args(args);
        Self::spawn_command(cmd)
    }

    /// Start a prepared command (e.g. with extra environment, or under `taskset`) that
    /// runs percore; `Err` with the logs if it never says ready. Its stderr is captured.
    pub fn spawn_command(mut cmd: Command) -> Result<ServerProc, String> {
        let mut child = with_runtime(&mut cmd)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn percore");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = logs.clone();
        let logs_done = Arc::new(AtomicBool::new(false));
        let done = logs_done.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("percore ready") {
                    let _ = tx.send(line.clone());
                }
                sink.lock().unwrap().push(line);
            }
            done.store(true, Ordering::SeqCst);
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => {
                let addr = json_field(&line, "address").expect("address in ready line");
                Ok(ServerProc { child, addr: addr.parse().unwrap(), logs, logs_done })
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(logs.lock().unwrap().join("\n"))
            }
        }
    }

    pub fn connect(&self) -> TcpStream {
        connect(self.addr)
    }

    /// A raw client on a fresh connection.
    pub fn client(&self) -> Client {
        Client::new(self.connect())
    }

    /// One request on a fresh connection; the response.
    pub fn request(&self, raw: &[u8]) -> Response {
        let mut c = Client::new(self.connect());
        c.send(raw);
        c.response()
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send `sig` (e.g. `libc::SIGTERM`) to this server's process, by PID. Panics if the
    /// process has already exited (and been reaped), so a reused PID is never signalled.
    #[track_caller]
    pub fn signal(&mut self, sig: libc::c_int) {
        if let Some(exited) = self.child.try_wait().expect("try_wait") {
            let logs_done = self.logs_done.clone();
            eventually(Duration::from_secs(2), || logs_done.load(Ordering::SeqCst));
            panic!(
                "cannot send signal {sig}: the server already exited ({exited}); logs:\n{}",
                self.logs().join("\n")
            );
        }
        // SAFETY: kill(2) on our own child, which has not been reaped (checked above).
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({}, {sig}): {}", self.child.id(), std::io::Error::last_os_error());
    }

    /// The exit status if the process has exited, without waiting.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Wait up to `limit` for the process to exit by itself; `None` if it is still running
    /// (it is left running; dropping the `ServerProc` kills it). Once it exited, also waits
    /// (briefly) until all of its log lines have been collected.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        let status = loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                break st;
            }
            if start.elapsed() >= limit {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        };
        let logs_done = self.logs_done.clone();
        eventually(Duration::from_secs(2), || logs_done.load(Ordering::SeqCst));
        Some(status)
    }

    /// How many log lines so far contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.logs.lock().unwrap().iter().filter(|l| l.contains(needle)).count()
    }

    /// Wait up to `limit` until at least `n` log lines contain `needle`.
    pub fn wait_log_count(&self, needle: &str, n: usize, limit: Duration) -> bool {
        eventually(limit, || self.log_count(needle) >= n)
    }

    /// Wait up to `limit` until a log line contains `needle`.
    pub fn wait_log(&self, needle: &str, limit: Duration) -> bool {
        self.wait_log_count(needle, 1, limit)
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The string value of `"key":"value"` in a JSON log line.
pub fn json_field(line: &str, key: &str) -> Option<String> {
    let pat = format!("\"{key}\":\"");
    let start = line.find(&pat)? + pat.len();
    let end = line[start..].find('"')? + start;
    Some(line[start..end].to_string())
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn closes(&self) -> bool {
        self.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// A raw client over one connection, with its own read buffer so pipelined responses can be
/// read one by one. Over TCP, or over anything that reads and writes (a TLS stream).
pub struct Client<S = TcpStream> {
    pub stream: S,
    buf: Vec<u8>,
}

impl<S: Read + Write> Client<S> {
    pub fn new(stream: S) -> Client<S> {
        Client { stream, buf: Vec::new() }
    }

    /// Bytes received but not yet parsed into a response.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    pub fn send(&mut self, raw: &[u8]) {
        self.stream.write_all(raw).expect("write request");
    }

    fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                n
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
            Err(e) => panic!("read failed (timeout means the server hung): {e}"),
        }
    }

    fn line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return Some(line);
            }
            if self.fill() == 0 {
                return None;
            }
        }
    }

    fn exact(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill() > 0, "connection closed inside a body");
        }
        self.buf.drain(..n).collect()
    }

    /// The next response (final or interim); panics if the connection closes first.
    pub fn response(&mut self) -> Response {
        self.try_response(false).expect("connection closed before a response")
    }

    /// The next response to a HEAD request (no body whatever the headers say).
    pub fn head_response(&mut self) -> Response {
        self.try_response(true).expect("connection closed before a response")
    }

    /// The next response, or `None` if the connection ends cleanly before one starts.
    pub fn try_response(&mut self, head: bool) -> Option<Response> {
        let status_line = self.line()?;
        let mut parts = status_line.splitn(3, ' ');
        assert_eq!(parts.next(), Some("HTTP/1.1"), "status line {status_line:?}");
        let status: u16 = parts.next().and_then(|s| s.parse().ok()).expect("status code");
        let mut headers = Vec::new();
        loop {
            let line = self.line().expect("connection closed inside a head");
            if line.is_empty() {
                break;
            }
            let (n, v) = line.split_once(':').expect("header line");
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
        let mut resp = Response { status, headers, body: Vec::new() };
        if head || status < 200 || status == 204 || status == 304 {
            return Some(resp);
        }
        if resp.header("transfer-encoding").is_some() {
            loop {
                let size_line = self.line().expect("chunk size line");
                let size =
                    usize::from_str_radix(size_line.split(';').next().unwrap().trim(), 16).expect("hex size");
                if size == 0 {
                    while !self.line().expect("trailer").is_empty() {}
                    break;
                }
                let mut data = self.exact(size + 2);
                assert_eq!(&data[size..], b"\r\n", "chunk data not followed by CRLF");
                data.truncate(size);
                resp.body.extend_from_slice(&data);
            }
        } else if let Some(len) = resp.header("content-length") {
            let len: usize = len.parse().expect("content-length");
            resp.body = self.exact(len);
        } else {
            while self.fill() > 0 {}
            resp.body = std::mem::take(&mut self.buf);
        }
        Some(resp)
    }
}

impl Client<TcpStream> {
    /// True if the server closes the connection (EOF or reset) within `within`, with no
    /// further bytes; panics if bytes arrive instead.
    pub fn expect_closed(&mut self, within: Duration) -> bool {
        assert!(
            self.buf.is_empty(),
            "unexpected bytes after response: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        self.stream.set_read_timeout(Some(within)).unwrap();
        let mut b = [0u8; 1024];
        let r = match self.stream.read(&mut b) {
            Ok(0) => true,
            Ok(n) => panic!("unexpected bytes after response: {:?}", String::from_utf8_lossy(&b[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => true,
            Err(_) => false,
        };
        self.stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        r
    }

    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

/// Wait until `cond` holds or `limit` passes.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// The percore binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_percore")
}

/// `POST /echo` with a chunked body of four 512-byte chunks (2 KiB): over a 1 KiB
/// `--max-body-size` only once it is streamed.
pub fn chunked_echo_of_2_kib() -> Vec<u8> {
    let mut raw = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..4 {
        raw.extend_from_slice(b"200\r\n");
        raw.extend(vec![b'c'; 0x200]);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    raw
}

/// `GET path` over HTTP/1.1 with a Host header.
pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes()
}

/// `POST /echo` with a Content-Length body.
pub fn post_echo(body: &[u8]) -> Vec<u8> {
    let mut raw =
        format!("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    raw.extend_from_slice(body);
    raw
}

/// Concatenate request pieces into one buffer (to send them in one write).
pub fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Send `bad` followed by a valid `GET /plaintext` in the same write, and check that the
/// server answers exactly once, with `status` and `connection: close`, then closes without
/// answering the request after the bad one. Returns the response.
#[track_caller]
pub fn assert_refused(server: &ServerProc, bad: &[u8], status: u16) -> Response {
    let mut c = server.client();
    c.send(&cat(&[bad, &get("/plaintext")]));
    let r = c.response();
    assert_eq!(r.status, status, "status for {:?} (body {:?})", String::from_utf8_lossy(bad), r.text());
    assert!(
        r.closes(),
        "response to {:?} must carry connection: close; headers {:?}",
        String::from_utf8_lossy(bad),
        r.headers
    );
    assert!(
        c.expect_closed(Duration::from_secs(5)),
        "connection must close after refusing {:?}",
        String::from_utf8_lossy(bad)
    );
    r
}

/// Run a command that is expected to exit by itself within `limit` (it is killed if not).
/// Returns its exit status (`None` if it had to be killed) and its stderr.
pub fn run_to_exit(mut cmd: Command, limit: Duration) -> (Option<std::process::ExitStatus>, String) {
    let mut child = with_runtime(&mut cmd)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stderr = child.stderr.take().unwrap();
    let reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break Some(st);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    (status, reader.join().unwrap_or_default())
}

/// The CPUs this (test) process may run on, from `/proc/self/status`.
pub fn allowed_cpus() -> Vec<usize> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let Some(list) = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")) else {
        return Vec::new();
    };
    let mut cpus = Vec::new();
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(a.parse::<usize>().unwrap()..=b.parse::<usize>().unwrap()),
            None => cpus.push(part.parse().unwrap()),
        }
    }
    cpus
}

/// Whether `prog` is an executable on PATH.
pub fn on_path(prog: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(prog).is_file()))
}

/// A directory of the test's own under the system's temporary directory, made empty, and
/// removed with whatever the test left in it when dropped (the test passing or panicking), so
/// that runs leave nothing behind. Derefs to its path.
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    /// `percore-TAG-RUNTIME-PID`: distinct across the runtimes' test binaries and runs.
    pub fn new(tag: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("percore-{tag}-{}-{}", crate::RUNTIME, std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port that was free a moment ago (bound on port 0, then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl Client {
    /// Read and discard until EOF/reset, at most `max_bytes` or `limit` time. Returns the
    /// bytes read and whether the connection ended.
    pub fn drain(&mut self, max_bytes: usize, limit: Duration) -> (usize, bool) {
        let start = Instant::now();
        let mut total = std::mem::take(&mut self.buf).len();
        let mut chunk = vec![0u8; 256 * 1024];
        self.stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        let ended = loop {
            if total > max_bytes || start.elapsed() > limit {
                break false;
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => break true,
                Ok(n) => total += n,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
                Err(e)
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) => panic!("read failed: {e}"),
            }
        };
        self.stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        (total, ended)
    }
}

/// Run the server under test on this test binary's runtime (`crate::RUNTIME`): every
/// integration test runs once per runtime, from `tests/server` (monoio) and
/// `tests/server_tokio` (tokio), `tests/server_tokio_mt` and `tests/server_glommio`. An explicit `--runtime` or `PERCORE_RUNTIME` still wins.
pub fn with_runtime(cmd: &mut Command) -> &mut Command {
    let explicit =
        cmd.get_args().any(|a| a == "--runtime") || cmd.get_envs().any(|(k, _)| k == "PERCORE_RUNTIME");
    if !explicit {
        cmd.env("PERCORE_RUNTIME", crate::RUNTIME);
    }
    cmd
}

static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Tests that load the machine (clients hammering a server) or measure timing take turns
/// through this lock, so that on a 2-core machine a latency bound is not broken by a
/// neighbouring test's load.
pub fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether the process `pid` (not necessarily our child: the successor of a SIGUSR2 upgrade
/// is the old server's) has exited within `limit`: gone from /proc, or a zombie.
pub fn pid_exits_within(pid: i32, limit: Duration) -> bool {
    eventually(limit, || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // "pid (comm) S ...": the state follows the last ')'.
        stat.rsplit_once(')').is_none_or(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
    })
}

/// The successor of a SIGUSR2 upgrade must drain and exit on SIGTERM like any percore:
/// signal it by PID and wait up to `limit`; SIGKILL it (and fail) if it does not.
#[track_caller]
pub fn stop_successor(pid: i32, limit: Duration, logs: &dyn Fn() -> Vec<String>) {
    // SAFETY: kill(2) on the successor our server started, by its PID (just reported).
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let exited = pid_exits_within(pid, limit);
    if !exited {
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    assert!(
        exited,
        "the upgraded process {pid} did not exit within {limit:?} of SIGTERM; logs:\n{}",
        logs().join("\n")
    );
}
