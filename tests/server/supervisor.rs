//! The supervisor, seen from outside: signals (graceful drain, stop now, reload), executor
//! recycling, crash restarts and the crash-loop limit, stalled and stuck executors, and
//! systemd's notify protocol.
//!
//! Several tests run a continuous load ([`Load`]) while the supervisor replaces or drains
//! executors, and count every request the clients lose.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::support::*;

// ----------------------------------------------------------------------------------------
// A tolerant client: never panics, reports what happened.

/// One response as read by [`read_response`].
#[derive(Debug)]
pub(crate) struct Resp {
    pub(crate) status: u16,
    pub(crate) close: bool,
    pub(crate) body: Vec<u8>,
}

/// Read one Content-Length-framed response from `s` (`buf` keeps bytes between calls).
/// `Err` says why no full response came: EOF, reset, timeout, or a malformed response.
/// Over TCP, TLS or a Unix socket: anything that reads.
pub(crate) fn read_response<S: Read>(s: &mut S, buf: &mut Vec<u8>) -> Result<Resp, String> {
    let mut chunk = [0u8; 8192];
    let mut fill = |s: &mut S, buf: &mut Vec<u8>, what: &str| -> Result<(), String> {
        match s.read(&mut chunk) {
            Ok(0) if buf.is_empty() => Err(format!("EOF before any response byte ({what})")),
            Ok(0) => Err(format!("EOF inside a response ({what}; {} bytes so far)", buf.len())),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) => Err(format!("read failed ({what}; {} bytes so far): {:?} {e}", buf.len(), e.kind())),
        }
    };
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > 64 * 1024 {
            return Err("malformed: head longer than 64 KiB".into());
        }
        fill(s, buf, "head")?;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    if parts.next() != Some("HTTP/1.1") {
        return Err(format!("malformed status line {status_line:?}"));
    }
    let Some(status) = parts.next().and_then(|c| c.parse::<u16>().ok()) else {
        return Err(format!("malformed status line {status_line:?}"));
    };
    let mut len = None;
    let mut close = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("malformed header line {line:?}"));
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            match value.parse::<usize>() {
                Ok(n) => len = Some(n),
                Err(_) => return Err(format!("malformed content-length {value:?}")),
            }
        } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            close = true;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(format!(
                "unexpected transfer-encoding {value:?} (this client reads Content-Length only)"
            ));
        }
    }
    let Some(len) = len else {
        return Err(format!("malformed: no content-length in {head:?}"));
    };
    let start = head_end + 4;
    while buf.len() < start + len {
        fill(s, buf, "body")?;
    }
    let body = buf[start..start + len].to_vec();
    buf.drain(..start + len);
    Ok(Resp { status, close, body })
}

/// Connect with a bounded wait and set socket timeouts.
pub(crate) fn dial(addr: SocketAddr, connect: Duration, io: Duration) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, connect)?;
    s.set_read_timeout(Some(io))?;
    s.set_write_timeout(Some(io))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// `GET path` with `Connection: close` on a fresh connection; the response, or why none.
pub(crate) fn fetch(addr: SocketAddr, path: &str, limit: Duration) -> Result<Resp, String> {
    let mut s = dial(addr, limit, limit).map_err(|e| format!("connect failed: {:?} {e}", e.kind()))?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).map_err(|e| format!("write failed: {e}"))?;
    read_response(&mut s, &mut Vec::new())
}

/// `fetch` that must answer 200 within `limit`.
#[track_caller]
pub(crate) fn assert_serves(addr: SocketAddr, path: &str, limit: Duration, context: &str) {
    match fetch(addr, path, limit) {
        Ok(r) => assert_eq!(r.status, 200, "{context}: GET {path} answered {} {:?}", r.status, r.body),
        Err(e) => panic!("{context}: GET {path} got no response: {e}"),
    }
}

// ----------------------------------------------------------------------------------------
// Continuous load.

/// What the load clients saw.
#[derive(Default)]
struct Counters {
    /// Full responses read.
    ok: AtomicU64,
    /// Full responses whose status was not 200 (also counted in `ok`).
    not_200: AtomicU64,
    /// Full responses that carried `connection: close` (the client then reconnects).
    closes: AtomicU64,
    /// Clients that have had at least one connection ended by `connection: close`.
    clients_moved: AtomicU64,
    /// Connect failed with ECONNREFUSED.
    refused: AtomicU64,
    /// Connect failed otherwise (timed out: a SYN the closing listener ignored).
    connect_failed: AtomicU64,
    /// Request written (or being written) but no full response: EOF, reset, timeout,
    /// malformed.
    lost: AtomicU64,
    /// The first few losses, described.
    lost_detail: Mutex<Vec<String>>,
    /// When the load started (loss times are relative to it).
    started: Option<Instant>,
}

struct Tally {
    ok: u64,
    not_200: u64,
    closes: u64,
    clients_moved: u64,
    refused: u64,
    connect_failed: u64,
    lost: u64,
    lost_detail: Vec<String>,
}

/// A few client threads, each looping keep-alive `GET /plaintext` on its own connection
/// and reconnecting when the server answers `connection: close`.
struct Load {
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters { started: Some(Instant::now()), ..Counters::default() });
        let threads = (0..clients)
            .map(|_| {
                let (stop, counters) = (stop.clone(), counters.clone());
                thread::spawn(move || load_client(addr, &stop, &counters))
            })
            .collect();
        Load { stop, counters, threads }
    }

    /// Time since the load started, to relate losses to events.
    fn since_start(&self) -> Duration {
        self.counters.started.expect("set by start").elapsed()
    }

    /// Clients so far whose connection was ended by a `connection: close` response.
    fn clients_moved(&self) -> u64 {
        self.counters.clients_moved.load(Ordering::Relaxed)
    }

    fn ok(&self) -> u64 {
        self.counters.ok.load(Ordering::Relaxed)
    }

    /// Wait (up to `limit`) until `n` more responses than now have been read.
    #[track_caller]
    fn expect_progress(&self, n: u64, limit: Duration, context: &str) {
        let base = self.ok();
        assert!(
            eventually(limit, || self.ok() >= base + n),
            "{context}: the load got only {} responses in {limit:?} (wanted {n})",
            self.ok() - base
        );
    }

    /// Stop the clients (each finishes its current request) and count.
    fn finish(self) -> Tally {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().expect("load client panicked");
        }
        let c = &self.counters;
        Tally {
            ok: c.ok.load(Ordering::SeqCst),
            not_200: c.not_200.load(Ordering::SeqCst),
            closes: c.closes.load(Ordering::SeqCst),
            clients_moved: c.clients_moved.load(Ordering::SeqCst),
            refused: c.refused.load(Ordering::SeqCst),
            connect_failed: c.connect_failed.load(Ordering::SeqCst),
            lost: c.lost.load(Ordering::SeqCst),
            lost_detail: c.lost_detail.lock().unwrap().clone(),
        }
    }
}

impl std::fmt::Debug for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ok {} (with connection: close {}, to {} clients), not 200 {}, refused {}, connect failed {}, LOST {}",
            self.ok, self.closes, self.clients_moved, self.not_200, self.refused, self.connect_failed, self.lost
        )?;
        for d in &self.lost_detail {
            write!(f, "\n  lost {d}")?;
        }
        Ok(())
    }
}

impl Tally {
    /// "No request lost": every request written got a full response, and some did.
    #[track_caller]
    fn assert_none_lost(&self, context: &str) {
        assert!(self.ok > 0, "{context}: no request succeeded at all: {self:?}");
        assert!(self.lost == 0, "{context}: requests lost: {self:?}");
        assert!(self.not_200 == 0, "{context}: GET /plaintext answered other than 200: {self:?}");
    }
}

fn load_client(addr: SocketAddr, stop: &AtomicBool, c: &Counters) {
    const REQ: &[u8] = b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n";
    let started = c.started.expect("set by Load::start");
    let lose = |why: String| {
        let why = format!("at {} ms: {why}", started.elapsed().as_millis());
        c.lost.fetch_add(1, Ordering::SeqCst);
        let mut d = c.lost_detail.lock().unwrap();
        if d.len() < 10 {
            d.push(why);
        }
    };
    let mut moved = false;
    while !stop.load(Ordering::SeqCst) {
        let mut s = match dial(addr, Duration::from_secs(1), Duration::from_secs(5)) {
            Ok(s) => s,
            Err(e) => {
                if e.kind() == ErrorKind::ConnectionRefused {
                    c.refused.fetch_add(1, Ordering::Relaxed);
                } else {
                    c.connect_failed.fetch_add(1, Ordering::Relaxed);
                }
                thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        let mut buf = Vec::new();
        let mut nth = 0;
        let mut last_response = Instant::now();
        while !stop.load(Ordering::SeqCst) {
            nth += 1;
            let gap = last_response.elapsed();
            if let Err(e) = s.write_all(REQ) {
                lose(format!("request {nth} on its connection: write failed: {:?} {e}", e.kind()));
                break;
            }
            let written = Instant::now();
            let result = read_response(&mut s, &mut buf);
            last_response = Instant::now();
            match result {
                Ok(r) => {
                    c.ok.fetch_add(1, Ordering::Relaxed);
                    if r.status != 200 || r.body != b"Hello, World!" {
                        c.not_200.fetch_add(1, Ordering::Relaxed);
                    }
                    if r.close {
                        c.closes.fetch_add(1, Ordering::Relaxed);
                        if !moved {
                            moved = true;
                            c.clients_moved.fetch_add(1, Ordering::Relaxed);
                        }
                        break;
                    }
                }
                Err(why) => {
                    lose(format!(
                        "request {nth} on its connection, written {} us after the previous response: {why} \
                         {} us after the write",
                        gap.as_micros(),
                        written.elapsed().as_micros()
                    ));
                    break;
                }
            }
        }
    }
}

// ----------------------------------------------------------------------------------------
// Helpers for exits and logs.

/// The exit status within `limit`, or fail (the process is killed when `s` drops).
#[track_caller]
pub(crate) fn expect_exit(s: &mut ServerProc, limit: Duration, context: &str) -> ExitStatus {
    match s.wait_exit(limit) {
        Some(st) => st,
        None => panic!("{context}: the server did not exit within {limit:?}; logs:\n{}", s.logs().join("\n")),
    }
}

#[track_caller]
pub(crate) fn assert_log(s: &ServerProc, needle: &str, limit: Duration, context: &str) {
    assert!(
        s.wait_log(needle, limit),
        "{context}: no log line containing {needle:?} within {limit:?}; logs:\n{}",
        s.logs().join("\n")
    );
}

/// A client with `path` sent and (probably) in its handler.
pub(crate) fn in_flight(s: &ServerProc, path: &str) -> Client {
    let mut c = s.client();
    c.send(&get(path));
    thread::sleep(Duration::from_millis(300));
    c
}

// ----------------------------------------------------------------------------------------
// 1-6: graceful drain and stopping.

#[test]
fn sigterm_under_load_loses_nothing_and_exits_zero() {
    let _turn = heavy();
    let mut s = ServerProc::start(&["--workers", "2", "--graceful-timeout", "2s"]);
    let load = Load::start(s.addr, 4);
    load.expect_progress(100, Duration::from_secs(3), "before SIGTERM");
    thread::sleep(Duration::from_millis(500));
    eprintln!("SIGTERM at {} ms into the load", load.since_start().as_millis());
    s.signal(libc::SIGTERM);
    let t0 = Instant::now();
    let status = expect_exit(&mut s, Duration::from_secs(5), "after SIGTERM under load");
    let took = t0.elapsed();
    // Keep knocking a moment after the exit: those attempts must be refused, not lost.
    thread::sleep(Duration::from_millis(200));
    let tally = load.finish();
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after a clean drain ({took:?}); logs:\n{}",
        s.logs().join("\n")
    );
    assert_log(&s, "drain complete", Duration::ZERO, "after SIGTERM under load");
    tally.assert_none_lost("SIGTERM under load");
    // Each client's keep-alive connection was ended by a response saying so.
    assert!(
        tally.clients_moved == 4,
        "draining keep-alive connections must end with connection: close; {} of 4 did: {tally:?}",
        tally.clients_moved
    );
    eprintln!("sigterm under load: exited in {took:?}; {tally:?}");
}

#[test]
fn sigterm_lets_an_in_flight_request_finish() {
    let _turn = heavy();
    let mut s = ServerProc::start(&["--workers", "2", "--graceful-timeout", "5s"]);
    let mut c = in_flight(&s, "/delay?ms=2000");
    c.stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.signal(libc::SIGTERM);
    let t0 = Instant::now();
    let r = c.response();
    assert_eq!(r.status, 200, "the /delay in flight at SIGTERM completes: {:?}", r.text());
    assert_eq!(r.text(), "waited 2000 ms\n");
    assert!(r.closes(), "the last response of a draining connection says connection: close; {:?}", r.headers);
    let answered = t0.elapsed();
    assert!(c.expect_closed(Duration::from_secs(2)), "the connection closes after the last response");
    let closed = t0.elapsed();
    drop(c); // the server lingers after its FIN until the client closes too
    let status = expect_exit(&mut s, Duration::from_secs(3), "after the in-flight request finished");
    eprintln!("in-flight: answered {answered:?}, closed {closed:?}, exited {:?} after SIGTERM", t0.elapsed());
    assert_eq!(status.code(), Some(0), "exit status; logs:\n{}", s.logs().join("\n"));
    assert!(
        t0.elapsed() >= Duration::from_millis(1500),
        "the drain waited for the request ({:?})",
        t0.elapsed()
    );
}

#[test]
fn ready_turns_503_during_the_drain_delay_while_still_serving() {
    let mut s = ServerProc::start(&["--workers", "2", "--drain-delay", "2s", "--graceful-timeout", "2s"]);
    let r = fetch(s.addr, "/ready", Duration::from_secs(2)).expect("/ready before SIGTERM");
    assert_eq!(r.status, 200, "/ready before SIGTERM");
    s.signal(libc::SIGTERM);
    let t0 = Instant::now();
    // "At once": within a few supervisor ticks.
    let mut last = None;
    let turned = eventually(Duration::from_millis(500), || {
        last = Some(fetch(s.addr, "/ready", Duration::from_millis(500)).map(|r| r.status));
        matches!(last, Some(Ok(503)))
    });
    assert!(turned, "/ready on a new connection after SIGTERM: {last:?} (wanted 503 within 500 ms)");
    // Still inside the 2 s drain delay: the listener is open and requests are served.
    for i in 0..3 {
        assert_serves(
            s.addr,
            "/plaintext",
            Duration::from_millis(500),
            &format!("during the drain delay ({i})"),
        );
        let r = fetch(s.addr, "/ready", Duration::from_millis(500)).expect("/ready during the drain delay");
        assert_eq!(r.status, 503, "/ready during the drain delay ({i})");
        assert_eq!(r.body, br#"{"status":"draining"}"#);
    }
    assert!(
        t0.elapsed() < Duration::from_millis(1800),
        "checks ran inside the drain delay ({:?})",
        t0.elapsed()
    );
    assert!(s.exited().is_none(), "the process must still run during --drain-delay");
    let status = expect_exit(&mut s, Duration::from_secs(5), "after the drain delay");
    assert!(
        t0.elapsed() >= Duration::from_millis(1900),
        "exited before the 2 s drain delay ({:?})",
        t0.elapsed()
    );
    assert_eq!(status.code(), Some(0), "exit status; logs:\n{}", s.logs().join("\n"));
}

#[test]
fn idle_keep_alive_connection_closes_soon_after_sigterm() {
    let _turn = heavy();
    let mut s = ServerProc::start(&["--workers", "1", "--drain-delay", "0s", "--graceful-timeout", "5s"]);
    let mut c = s.client();
    c.send(&get("/plaintext"));
    let r = c.response();
    assert_eq!(r.status, 200);
    assert!(!r.closes(), "keep-alive before the drain; {:?}", r.headers);
    assert!(
        !c.expect_closed(Duration::from_millis(300)),
        "an idle keep-alive connection stays open before SIGTERM"
    );
    s.signal(libc::SIGTERM);
    let t0 = Instant::now();
    assert!(
        c.expect_closed(Duration::from_millis(1500)),
        "the idle keep-alive connection was not closed within 1.5 s of SIGTERM; logs:\n{}",
        s.logs().join("\n")
    );
    eprintln!("idle keep-alive closed {:?} after SIGTERM", t0.elapsed());
    drop(c); // the server lingers after its FIN until the client closes too
    let status = expect_exit(&mut s, Duration::from_secs(3), "after the idle connection closed");
    assert_eq!(status.code(), Some(0), "exit status; logs:\n{}", s.logs().join("\n"));
}

#[test]
fn graceful_timeout_cuts_the_drain_and_exits_nonzero() {
    let mut s = ServerProc::start(&["--workers", "1", "--graceful-timeout", "1s"]);
    let mut c = in_flight(&s, "/delay?ms=5000");
    s.signal(libc::SIGTERM);
    let t0 = Instant::now();
    let status =
        expect_exit(&mut s, Duration::from_secs(3), "--graceful-timeout 1s with a 5 s request in flight");
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(900), "exited before the graceful timeout ({took:?})");
    assert!(!status.success(), "a drain cut short must exit non-zero, got {status:?}");
    assert_log(&s, "drain timed out", Duration::ZERO, "--graceful-timeout 1s");
    // The cut request got no (full) response.
    c.stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let got = read_response(&mut c.stream, &mut Vec::new());
    assert!(got.is_err(), "the request cut by the graceful timeout cannot have completed: {got:?}");
}

#[test]
fn second_sigterm_stops_at_once() {
    let mut s = ServerProc::start(&["--workers", "1", "--graceful-timeout", "30s"]);
    let _c = in_flight(&s, "/delay?ms=5000");
    s.signal(libc::SIGTERM);
    thread::sleep(Duration::from_millis(400));
    assert!(s.exited().is_none(), "the first SIGTERM drains (a 5 s request is in flight)");
    assert_log(&s, "listeners closed", Duration::from_secs(1), "first SIGTERM");
    s.signal(libc::SIGTERM);
    let t0 = Instant::now();
    let status = expect_exit(&mut s, Duration::from_secs(2), "second SIGTERM during a drain");
    eprintln!("second SIGTERM: exited in {:?} with {status:?}", t0.elapsed());
}

#[test]
fn sigquit_stops_at_once() {
    let mut s = ServerProc::start(&["--workers", "1", "--graceful-timeout", "30s"]);
    let _c = in_flight(&s, "/delay?ms=5000");
    s.signal(libc::SIGQUIT);
    let t0 = Instant::now();
    let status = expect_exit(&mut s, Duration::from_secs(2), "SIGQUIT with a request in flight");
    eprintln!("SIGQUIT: exited in {:?} with {status:?}", t0.elapsed());
}

// ----------------------------------------------------------------------------------------
// 7-8: replacing executors under load.

#[test]
fn sighup_reloads_under_load_losing_nothing() {
    let _turn = heavy();
    let mut s = ServerProc::start(&["--workers", "2", "--graceful-timeout", "2s"]);
    let load = Load::start(s.addr, 4);
    load.expect_progress(100, Duration::from_secs(3), "before SIGHUP");
    thread::sleep(Duration::from_millis(500));
    eprintln!("SIGHUP at {} ms into the load", load.since_start().as_millis());
    s.signal(libc::SIGHUP);
    assert_log(&s, "reload done", Duration::from_secs(5), "SIGHUP");
    load.expect_progress(100, Duration::from_secs(3), "after the reload");
    // Every client connection was on a replaced executor: each must be ended by a response
    // saying so (the client then reconnects to a new executor), well within the retired
    // executors' graceful timeout (2 s; past it they would be cut, and requests lost).
    let all_moved = eventually(Duration::from_millis(1500), || load.clients_moved() == 4);
    thread::sleep(Duration::from_millis(300));
    let tally = load.finish();
    tally.assert_none_lost("SIGHUP under load");
    assert!(
        all_moved,
        "every client's connection on a retired executor must end with connection: close; {} of 4 did: {tally:?}",
        tally.clients_moved
    );
    assert!(s.log_count("executor replaced") >= 2, "both executors replaced; logs:\n{}", s.logs().join("\n"));
    assert!(s.exited().is_none(), "still running after the reload");
    for i in 0..3 {
        assert_serves(s.addr, "/plaintext", Duration::from_secs(2), &format!("after the reload ({i})"));
    }
    eprintln!("sighup under load: {tally:?}");
}

#[test]
fn max_requests_recycles_under_load_losing_nothing() {
    let _turn = heavy();
    let s = ServerProc::start(&["--workers", "2", "--max-requests", "300", "--max-requests-jitter", "50"]);
    let load = Load::start(s.addr, 4);
    thread::sleep(Duration::from_secs(3));
    let tally = load.finish();
    assert!(tally.ok > 700, "too little load to recycle ({tally:?})");
    tally.assert_none_lost("--max-requests 300 under load");
    let recycled = s.log_count("recycled after");
    assert!(
        recycled >= 1,
        "no executor recycled after {} requests; logs:\n{}",
        tally.ok,
        s.logs().join("\n")
    );
    for i in 0..3 {
        assert_serves(s.addr, "/plaintext", Duration::from_secs(2), &format!("after recycling ({i})"));
    }
    eprintln!("max-requests: {recycled} recycles; {tally:?}");
}

// ----------------------------------------------------------------------------------------
// 9: crashes.

/// Ask the executor that takes this connection to crash; the response may or may not come.
pub(crate) fn crash(addr: SocketAddr) {
    let _ = fetch(addr, "/crash", Duration::from_secs(2));
}

#[test]
fn crashed_executor_is_restarted() {
    let _turn = heavy();
    let mut s = ServerProc::start(&["--workers", "2", "--debug-routes"]);
    crash(s.addr);
    assert_log(&s, "executor died", Duration::from_secs(5), "after /crash");
    assert_log(&s, "executor restarted", Duration::from_secs(5), "after /crash");
    for i in 0..10 {
        assert_serves(s.addr, "/plaintext", Duration::from_secs(2), &format!("after the restart ({i})"));
    }
    assert!(s.exited().is_none(), "one crash does not end the process");
}

#[test]
fn crash_loop_ends_the_process_nonzero() {
    let _turn = heavy();
    let mut s = ServerProc::start(&["--workers", "1", "--debug-routes"]);
    for n in 1..=4 {
        crash(s.addr);
        assert!(
            s.wait_log_count("executor restarted", n, Duration::from_secs(5)),
            "restart {n} did not happen within 2 s; logs:\n{}",
            s.logs().join("\n")
        );
        assert_serves(s.addr, "/plaintext", Duration::from_secs(2), &format!("after restart {n}"));
    }
    crash(s.addr);
    let status = expect_exit(&mut s, Duration::from_secs(3), "the fifth crash within a minute");
    assert!(!status.success(), "a crash loop must exit non-zero, got {status:?}");
    assert_log(&s, "keep dying", Duration::ZERO, "crash loop");
    assert_eq!(s.log_count("executor restarted"), 4, "four restarts, then the process gives up");
}

// ----------------------------------------------------------------------------------------
// 10-11: stalled and stuck executors.

#[test]
fn stalled_executor_does_not_delay_new_connections() {
    let _turn = heavy();
    let s = ServerProc::start(&[
        "--workers",
        "2",
        "--debug-routes",
        "--stall-detect",
        "500ms",
        "--timeout",
        "30s",
    ]);
    assert_serves(s.addr, "/plaintext", Duration::from_secs(2), "before the stall");
    let mut staller = s.client();
    staller.stream.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
    staller.send(&get("/stall?ms=4000"));
    let stall_start = Instant::now();
    // Let the executor read the request and block first: a connection that arrives before
    // that can be accepted in the same event-loop turn as the stalling request, and then
    // belongs to the blocked thread until it wakes (no server can move it).
    thread::sleep(Duration::from_millis(200));
    // A new connection every 50 ms for 3 s, each measured from connect to full response.
    let probes: Vec<_> = (0..60)
        .map(|i| {
            let addr = s.addr;
            let h = thread::spawn(move || {
                let t = Instant::now();
                let r = fetch(addr, "/plaintext", Duration::from_secs(3));
                (r.map(|r| r.status), t.elapsed())
            });
            thread::sleep(Duration::from_millis(50));
            (i, h)
        })
        .collect();
    let last_probe_at = stall_start.elapsed();
    let limit = Duration::from_millis(1000); // --stall-detect + 0.5 s
    let mut slow = Vec::new();
    let mut worst = Duration::ZERO;
    for (i, h) in probes {
        let (r, took) = h.join().unwrap();
        worst = worst.max(took);
        if !matches!(r, Ok(200)) || took > limit {
            slow.push(format!("probe {i} (sent ~{} ms into the stall): {r:?} in {took:?}", 200 + i * 50));
        }
    }
    assert!(
        slow.is_empty(),
        "connections delayed or failed by a stalled executor (limit {limit:?}):\n{}",
        slow.join("\n")
    );
    assert!(
        last_probe_at < Duration::from_millis(3900),
        "the probes outlasted the 4 s stall ({last_probe_at:?}; the machine is too slow): the test proves nothing"
    );
    assert_log(&s, "executor stalled", Duration::ZERO, "a 4 s /stall with --stall-detect 500ms");
    let r = staller.response();
    assert_eq!(r.status, 200, "the stalling request itself completes");
    for i in 0..5 {
        assert_serves(s.addr, "/plaintext", Duration::from_secs(2), &format!("after the stall ended ({i})"));
    }
    eprintln!("stall: worst probe {worst:?}");
}

/// A response body whose chunks are always ready, read by a fast client, never makes the
/// connection wait; the driver still yields to the executor's other tasks now and then, so
/// the timer task beats (no stall is seen) and other connections of that executor are served.
#[test]
fn a_body_stream_that_never_waits_does_not_stall_its_executor() {
    // Tiny chunks: the server spends long on each byte, so the reader keeps the socket
    // buffer empty and no write ever has to wait.
    streams_that_never_wait_leave_the_executor_serving(1, 1);
}

#[test]
fn several_fast_streams_at_once_do_not_stall_their_executor() {
    // Large chunks to fast readers: on monoio most writes complete at once, without the ring,
    // so no task waits and only the yields' timer pause lets monoio run its timers.
    streams_that_never_wait_leave_the_executor_serving(3, 16_000);
}

/// `streams` connections each stream `/stream` bodies of `size`-byte chunks to a reader
/// that keeps up; meanwhile the (only) executor answers other connections, and its
/// heartbeat is never late enough to be reported as stalled.
fn streams_that_never_wait_leave_the_executor_serving(streams: usize, size: usize) {
    let _turn = heavy();
    let s = ServerProc::start(&["--workers", "1", "--stall-detect", "1s", "--timeout", "30s"]);
    let reading = Arc::new(AtomicBool::new(true));
    let readers: Vec<_> = (0..streams)
        .map(|_| {
            let mut streaming = s.client();
            // Pipelined, so one body follows another.
            streaming.send(&get(&format!("/stream?chunks=1000000&size={size}")).repeat(20));
            let reading = reading.clone();
            thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 20];
                let mut total = 0usize;
                while reading.load(Ordering::Relaxed) {
                    match streaming.stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => total += n,
                    }
                }
                total
            })
        })
        .collect();
    let started = Instant::now();
    let mut answered = 0;
    while started.elapsed() < Duration::from_secs(2) {
        let r = fetch(s.addr, "/plaintext", Duration::from_secs(5));
        assert!(matches!(&r, Ok(r) if r.status == 200), "not served during the stream: {r:?}");
        answered += 1;
        thread::sleep(Duration::from_millis(100));
    }
    reading.store(false, Ordering::Relaxed);
    let streamed: Vec<usize> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    assert!(
        streamed.iter().all(|&n| n > 1 << 20),
        "a body did not flow ({streamed:?} bytes): the test proves nothing"
    );
    assert_eq!(s.log_count("executor stalled"), 0, "logs:\n{}", s.logs().join("\n"));
    eprintln!("never-pending streams: {streamed:?} bytes, {answered} requests answered meanwhile");
}

#[test]
fn stuck_executor_is_replaced_and_the_server_keeps_serving() {
    let _turn = heavy();
    let mut s = ServerProc::start(&[
        "--workers",
        "2",
        "--debug-routes",
        "--stall-detect",
        "300ms",
        "--timeout",
        "1s",
        "--max-stuck",
        "1",
    ]);
    let mut staller = s.client();
    staller.send(&get("/stall?ms=4000"));
    assert_log(&s, "stuck past --timeout", Duration::from_secs(3), "a 4 s /stall with --timeout 1s");
    for i in 0..5 {
        assert_serves(
            s.addr,
            "/plaintext",
            Duration::from_secs(2),
            &format!("with one executor stuck ({i})"),
        );
    }
    assert!(s.exited().is_none(), "one stuck executor is within --max-stuck 1");
    drop(staller);
}

#[test]
fn stuck_executor_beyond_max_stuck_ends_the_process_nonzero() {
    let _turn = heavy();
    let mut s = ServerProc::start(&[
        "--workers",
        "2",
        "--debug-routes",
        "--stall-detect",
        "300ms",
        "--timeout",
        "1s",
        "--max-stuck",
        "0",
    ]);
    let _staller = in_flight(&s, "/stall?ms=4000");
    let status = expect_exit(&mut s, Duration::from_secs(3), "a stuck executor with --max-stuck 0");
    assert!(!status.success(), "too many stuck executors must exit non-zero, got {status:?}");
    assert_log(&s, "stuck past --timeout", Duration::ZERO, "--max-stuck 0");
}

// ----------------------------------------------------------------------------------------
// 12: systemd notify protocol.

fn unique_name(tag: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("percore-test-{tag}-{}-{nanos}", std::process::id())
}

/// Receive datagrams until one satisfies `want` (or `limit` passes); the messages seen.
fn recv_until(
    sock: &UnixDatagram,
    limit: Duration,
    want: impl Fn(&str) -> bool,
) -> (Option<String>, Vec<String>) {
    let start = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    // Past the deadline, still take what is already queued (this thread may have been
    // descheduled for a while on a loaded machine).
    loop {
        sock.set_read_timeout(Some(limit.saturating_sub(start.elapsed()).max(Duration::from_millis(1))))
            .unwrap();
        match sock.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                if want(&msg) {
                    return (Some(msg), seen);
                }
                seen.push(msg);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => panic!("recv on the notify socket: {e}"),
        }
    }
    (None, seen)
}

fn has_line(msg: &str, line: &str) -> bool {
    msg.lines().any(|l| l == line)
}

fn notify_server(notify_socket: &str, watchdog_usec: Option<&str>) -> ServerProc {
    let mut cmd = Command::new(bin());
    cmd.args(["--port", "0", "--workers", "1", "--log-format", "json"])
        .env("NOTIFY_SOCKET", notify_socket)
        .env_remove("WATCHDOG_PID")
        .env_remove("WATCHDOG_USEC");
    if let Some(us) = watchdog_usec {
        cmd.env("WATCHDOG_USEC", us);
    }
    ServerProc::spawn_command(cmd).expect("server with NOTIFY_SOCKET did not start")
}

fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the local struct.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

#[test]
fn sd_notify_ready_watchdog_reloading_stopping() {
    let _turn = heavy();
    let path = std::env::temp_dir().join(format!("{}.sock", unique_name("notify")));
    let _ = std::fs::remove_file(&path);
    let sock = UnixDatagram::bind(&path).expect("bind the notify socket");
    struct Unlink(std::path::PathBuf);
    impl Drop for Unlink {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _unlink = Unlink(path.clone());
    let mut s = notify_server(path.to_str().unwrap(), Some("400000"));

    // READY=1 is the first message, with MAINPID.
    let (first, _) = recv_until(&sock, Duration::from_secs(2), |_| true);
    let first = first.expect("no notification at all within 2 s of start");
    assert!(has_line(&first, "READY=1"), "the first notification must be READY=1: {first:?}");
    assert!(has_line(&first, &format!("MAINPID={}", s.pid())), "READY=1 carries MAINPID: {first:?}");

    // WATCHDOG=1 at half of WATCHDOG_USEC (200 ms): at least one within 1 s, and more.
    let t0 = Instant::now();
    let (ping, seen) = recv_until(&sock, Duration::from_secs(1), |m| has_line(m, "WATCHDOG=1"));
    assert!(
        ping.is_some(),
        "no WATCHDOG=1 within 1 s with WATCHDOG_USEC=400000; saw {seen:?}; logs:\n{}",
        s.logs().join("\n")
    );
    let (ping2, seen) = recv_until(&sock, Duration::from_secs(1), |m| has_line(m, "WATCHDOG=1"));
    assert!(
        ping2.is_some(),
        "only one WATCHDOG=1 ({:?}); saw {seen:?}; logs:\n{}",
        t0.elapsed(),
        s.logs().join("\n")
    );

    // SIGHUP: RELOADING=1 with MONOTONIC_USEC, then READY=1.
    let before = monotonic_usec();
    s.signal(libc::SIGHUP);
    let (reloading, seen) = recv_until(&sock, Duration::from_secs(3), |m| has_line(m, "RELOADING=1"));
    let reloading = reloading.unwrap_or_else(|| {
        panic!("no RELOADING=1 after SIGHUP; saw {seen:?}; logs:\n{}", s.logs().join("\n"))
    });
    let usec: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("RELOADING=1 without MONOTONIC_USEC=: {reloading:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("MONOTONIC_USEC is not a number: {reloading:?}"));
    let after = monotonic_usec();
    assert!(
        before <= usec && usec <= after,
        "MONOTONIC_USEC={usec} not between {before} and {after} (CLOCK_MONOTONIC)"
    );
    let (ready, seen) = recv_until(&sock, Duration::from_secs(5), |m| has_line(m, "READY=1"));
    assert!(ready.is_some(), "no READY=1 after RELOADING=1; saw {seen:?}; logs:\n{}", s.logs().join("\n"));
    assert!(
        !seen.iter().any(|m| has_line(m, "STOPPING=1")),
        "a reload must not say STOPPING=1; saw {seen:?}"
    );

    // SIGTERM: STOPPING=1, then a clean exit.
    s.signal(libc::SIGTERM);
    let (stopping, seen) = recv_until(&sock, Duration::from_secs(2), |m| has_line(m, "STOPPING=1"));
    assert!(stopping.is_some(), "no STOPPING=1 after SIGTERM; saw {seen:?}; logs:\n{}", s.logs().join("\n"));
    let status = expect_exit(&mut s, Duration::from_secs(5), "SIGTERM with NOTIFY_SOCKET");
    assert_eq!(status.code(), Some(0), "exit status; logs:\n{}", s.logs().join("\n"));
}

#[test]
fn sd_notify_abstract_socket() {
    let _turn = heavy();
    use std::os::linux::net::SocketAddrExt;
    let name = unique_name("abstract");
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let sock = UnixDatagram::bind_addr(&addr).expect("bind the abstract notify socket");
    let mut s = notify_server(&format!("@{name}"), None);
    let (ready, seen) = recv_until(&sock, Duration::from_secs(2), |m| has_line(m, "READY=1"));
    assert!(
        ready.is_some(),
        "no READY=1 on the abstract socket @{name}; saw {seen:?}; logs:\n{}",
        s.logs().join("\n")
    );
    // No WATCHDOG_USEC: no watchdog pings.
    s.signal(libc::SIGTERM);
    let (stopping, seen) = recv_until(&sock, Duration::from_secs(2), |m| has_line(m, "STOPPING=1"));
    assert!(
        stopping.is_some(),
        "no STOPPING=1 on the abstract socket; saw {seen:?}; logs:\n{}",
        s.logs().join("\n")
    );
    assert!(!seen.iter().any(|m| has_line(m, "WATCHDOG=1")), "WATCHDOG=1 without WATCHDOG_USEC: {seen:?}");
    let status = expect_exit(&mut s, Duration::from_secs(5), "SIGTERM with an abstract NOTIFY_SOCKET");
    assert_eq!(status.code(), Some(0), "exit status; logs:\n{}", s.logs().join("\n"));
}
