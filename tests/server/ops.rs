//! The production kit: access log, metrics, proxy awareness, configuration file and
//! precedence, several bind addresses.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::support::*;

fn temp(name: &str) -> TempDir {
    TempDir::new(&format!("ops-{name}"))
}

/// Lines of the access log once it holds at least `n` (it is flushed every 100 ms).
fn log_lines(path: &PathBuf, n: usize) -> Vec<String> {
    let mut lines = Vec::new();
    eventually(Duration::from_secs(5), || {
        lines = std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_string).collect();
        lines.len() >= n
    });
    lines
}

#[test]
fn access_log_json_lines_carry_the_request() {
    let dir = temp("json");
    let path = dir.join("access.log");
    let s = ServerProc::start(&["--access-log", path.to_str().unwrap(), "--access-log-format", "json"]);
    s.request(b"GET /plaintext?x=1 HTTP/1.1\r\nHost: h\r\nUser-Agent: ua/1\r\nX-Request-Id: rid-42\r\n\r\n");
    s.request(
        b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nX-Amzn-Trace-Id: Root=1-abc\r\n\r\nhello",
    );
    s.request(b"GET /nope HTTP/1.1\r\nHost: h\r\n\r\n");
    let lines = log_lines(&path, 3);
    assert_eq!(lines.len(), 3, "{lines:?}");
    let first = &lines[0];
    for want in [
        "\"method\":\"GET\"",
        "\"target\":\"/plaintext?x=1\"",
        "\"status\":200",
        "\"bytes\":13",
        "\"request_id\":\"rid-42\"",
        "\"user_agent\":\"ua/1\"",
        "\"client\":\"127.0.0.1\"",
        "\"executor\":0",
        "\"duration_us\":",
    ] {
        assert!(first.contains(want), "{want} missing from {first}");
    }
    assert!(lines[1].contains("\"amzn_trace_id\":\"Root=1-abc\""), "{}", lines[1]);
    assert!(lines[1].contains("\"bytes\":5"), "{}", lines[1]);
    let generated = json_field(&lines[1], "request_id").unwrap();
    assert_eq!(generated.len(), 16, "a request id is generated when none is sent");
    assert!(lines[2].contains("\"status\":404"), "{}", lines[2]);
}

#[test]
fn access_log_gunicorn_format_and_reopen_on_sigusr1() {
    let dir = temp("gunicorn");
    let path = dir.join("access.log");
    let mut s = ServerProc::start(&[
        "--access-log",
        path.to_str().unwrap(),
        "--access-log-format",
        r#"%(h)s "%(r)s" %(s)s %(b)s %(D)s %({x-custom}i)s %({content-type}o)s"#,
    ]);
    s.request(b"GET /json HTTP/1.1\r\nHost: h\r\nX-Custom: yes\r\n\r\n");
    let lines = log_lines(&path, 1);
    let parts: Vec<&str> = lines[0].split(' ').collect();
    assert_eq!(parts[0], "127.0.0.1");
    assert_eq!(parts[1..4].join(" "), "\"GET /json HTTP/1.1\"");
    assert_eq!(parts[4], "200");
    assert_eq!(parts[5], "27");
    assert!(parts[6].parse::<u64>().is_ok(), "duration in µs: {}", parts[6]);
    assert_eq!(parts[7], "yes");
    assert_eq!(parts[8], "application/json");

    // logrotate: move the file away, SIGUSR1, and the next line goes to a new file.
    let rotated = dir.join("access.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    s.signal(libc::SIGUSR1);
    assert!(s.wait_log("access log reopened", Duration::from_secs(5)), "{:?}", s.logs());
    s.request(b"GET /health HTTP/1.1\r\nHost: h\r\n\r\n");
    let fresh = log_lines(&path, 1);
    assert_eq!(fresh.len(), 1, "the reopened file gets the new line: {fresh:?}");
    assert!(fresh[0].contains("/health"));
    assert_eq!(std::fs::read_to_string(&rotated).unwrap().lines().count(), 1);
}

#[test]
fn a_bad_access_log_format_is_a_startup_error() {
    let mut cmd = Command::new(bin());
    cmd.args(["--port", "0", "--access-log", "-", "--access-log-format", "%(zz)s"]);
    let (status, stderr) = run_to_exit(cmd, Duration::from_secs(10));
    assert!(!status.expect("exits").success());
    assert!(stderr.contains("access log atom"), "{stderr}");
}

/// The value of the sample `name` (with its labels, as written) in a scrape.
fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("{name} missing from:\n{metrics}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn metrics_count_what_was_served() {
    let s = ServerProc::start(&["--workers", "1", "--metrics-port", "0"]);
    let mut c = s.client();
    for _ in 0..10 {
        c.send(b"GET /plaintext HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(c.response().status, 200);
    }
    c.send(b"GET /missing HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(c.response().status, 404);
    let bad = s.request(b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n");
    assert_eq!(bad.status, 400);

    let scrape = s.request(b"GET /metrics HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(scrape.status, 200);
    assert!(scrape.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    let m = scrape.text();
    assert_eq!(sample(&m, "percore_responses_total{class=\"2xx\"}"), 10.0, "{m}");
    assert_eq!(sample(&m, "percore_responses_total{class=\"4xx\"}"), 2.0);
    assert_eq!(sample(&m, "percore_parse_errors_total{kind=\"invalid_content_length\",status=\"400\"}"), 1.0);
    // 10 + 404 + the scrape itself (counted when its head arrived).
    assert_eq!(sample(&m, "percore_requests_total{executor=\"0\"}"), 12.0);
    assert_eq!(sample(&m, "percore_connections_accepted_total{executor=\"0\"}"), 3.0);
    assert_eq!(sample(&m, "percore_request_duration_seconds_count"), 12.0);
    assert_eq!(sample(&m, "percore_request_duration_seconds_bucket{le=\"+Inf\"}"), 12.0);
    assert_eq!(sample(&m, "percore_requests_in_flight{executor=\"0\"}"), 1.0, "the scrape itself");
    assert!(m.contains("percore_info{version=\""), "{m}");
    assert!(m.contains("driver=\"io_uring\"") || m.contains("driver=\"epoll\""), "{m}");

    // The same on the metrics port, served off the executors.
    let line =
        s.logs().into_iter().find(|l| l.contains("metrics on their own port")).expect("metrics port logged");
    let addr: std::net::SocketAddr = json_field(&line, "address").unwrap().parse().unwrap();
    let mut mc = Client::new(connect(addr));
    mc.send(b"GET /metrics HTTP/1.1\r\nHost: h\r\n\r\n");
    let r = mc.response();
    assert_eq!(r.status, 200);
    assert_eq!(sample(&r.text(), "percore_responses_total{class=\"2xx\"}"), 11.0, "the first scrape counts");
}

#[test]
fn metrics_survive_executor_recycling() {
    let s = ServerProc::start(&["--workers", "1", "--max-requests", "5"]);
    for _ in 0..12 {
        assert_eq!(s.request(b"GET /plaintext HTTP/1.1\r\nHost: h\r\n\r\n").status, 200);
    }
    assert!(s.wait_log("recycled after", Duration::from_secs(5)));
    // Counters of retired executors are kept, not lost with them.
    let ok = eventually(Duration::from_secs(5), || {
        let m = s.request(b"GET /metrics HTTP/1.1\r\nHost: h\r\n\r\n").text();
        sample(&m, "percore_responses_total{class=\"2xx\"}") >= 12.0
            && sample(&m, "percore_executor_restarts_total") >= 1.0
    });
    assert!(ok, "counters went backwards after recycling");
}

fn client_in_log(extra: &[&str], request: &[u8]) -> String {
    let dir = temp(&format!("fwd-{}", extra.join("-").replace(['/', '*', '.', ','], "_")));
    let path = dir.join("access.log");
    let mut args = vec!["--access-log", path.to_str().unwrap(), "--access-log-format", "%(h)s"];
    args.extend_from_slice(extra);
    let s = ServerProc::start(&args);
    assert_eq!(s.request(request).status, 200);
    log_lines(&path, 1)[0].clone()
}

#[test]
fn forwarded_headers_are_believed_only_from_allowed_peers() {
    let req = b"GET /plaintext HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n";
    // Default: 127.0.0.1 (the test client) is trusted.
    assert_eq!(client_in_log(&[], req), "203.0.113.9");
    assert_eq!(client_in_log(&["--forwarded-allow-ips", "10.0.0.0/8"], req), "127.0.0.1");
    assert_eq!(client_in_log(&["--forwarded-allow-ips", "*"], req), "203.0.113.9");
    // RFC 7239 only when that family is chosen, and a client cannot hide behind a forged
    // leftmost entry.
    let rfc = b"GET /plaintext HTTP/1.1\r\nHost: h\r\nForwarded: for=198.51.100.1;proto=https\r\n\r\n";
    assert_eq!(client_in_log(&["--forwarded-headers", "forwarded"], rfc), "198.51.100.1");
    assert_eq!(client_in_log(&[], rfc), "127.0.0.1");
    let chain = b"GET /plaintext HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 6.6.6.6, 203.0.113.9\r\n\r\n";
    assert_eq!(client_in_log(&[], chain), "203.0.113.9");
}

#[test]
fn proxy_protocol_v1_and_v2_are_accepted_and_malformed_ones_refused() {
    let dir = temp("proxy");
    let path = dir.join("access.log");
    let s = ServerProc::start(&[
        "--proxy-protocol",
        "auto",
        "--access-log",
        path.to_str().unwrap(),
        "--access-log-format",
        "%(h)s %(U)s",
    ]);
    let get = b"GET /plaintext HTTP/1.1\r\nHost: h\r\n\r\n";
    let r = s.request(&cat(&[b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 80\r\n", get]));
    assert_eq!(r.status, 200);
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    v2.extend_from_slice(&[0x21, 0x11, 0, 12, 192, 0, 2, 8, 10, 0, 0, 1, 0x9c, 0x41, 0, 80]);
    let r = s.request(&cat(&[&v2, b"GET /json HTTP/1.1\r\nHost: h\r\n\r\n"]));
    assert_eq!(r.status, 200);
    // LOCAL (an NLB health check): no address, the connection's own peer is kept.
    let local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";
    assert_eq!(s.request(&cat(&[local, b"GET /health HTTP/1.1\r\nHost: h\r\n\r\n"])).status, 200);
    let lines = log_lines(&path, 3);
    assert_eq!(lines, vec!["192.0.2.7 /plaintext", "192.0.2.8 /json", "127.0.0.1 /health"]);

    for bad in [
        &b"GET /plaintext HTTP/1.1\r\nHost: h\r\n\r\n"[..],
        b"PROXY TCP4 192.0.2.7 198.51.100.1 40000\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
        b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 80\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
        b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x04\x01\x02\x03\x04GET / HTTP/1.1\r\nHost: h\r\n\r\n",
    ] {
        let mut c = s.client();
        c.send(bad);
        assert!(
            c.try_response(false).is_none(),
            "no response to a bad PROXY header {:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

fn check_config(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = Command::new(bin());
    cmd.arg("check-config").args(args).env_remove("PERCORE_PORT");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn config_precedence_is_flags_env_file_defaults() {
    let dir = temp("precedence");
    let file = dir.join("percore.toml");
    std::fs::write(&file, "port = 1111\nkeep-alive = \"5s\"\nmax_headers = 50\n").unwrap();
    let f = file.to_str().unwrap();
    let (ok, out, _) = check_config(&["--config", f], &[]);
    assert!(ok);
    assert!(out.contains("port = 1111  # config file"), "{out}");
    assert!(out.contains("keep-alive = \"5s\"  # config file"), "{out}");
    assert!(out.contains("max-headers = 50  # config file"), "{out}");
    assert!(out.contains("backlog = 2048  # default"), "{out}");
    let (_, out, _) = check_config(&["--config", f], &[("PERCORE_PORT", "2222")]);
    assert!(out.contains("port = 2222  # environment"), "{out}");
    let (_, out, _) = check_config(&["--config", f, "--port", "3333"], &[("PERCORE_PORT", "2222")]);
    assert!(out.contains("port = 3333  # command line"), "{out}");

    // And the server really runs with the file's values.
    std::fs::write(&file, "max-body-size = \"8\"\n").unwrap();
    let s = ServerProc::start(&["--config", f]);
    let r = s.request(b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\n123456789");
    assert_eq!(r.status, 413);
}

#[test]
fn config_errors_name_the_key() {
    let dir = temp("errors");
    for (text, needle) in [
        ("prot = 80\n", "key `prot`: unknown key"),
        ("port = \"eighty\"\n", "key `port`"),
        ("keep-alive = \"forever\"\n", "key `keep-alive`"),
        ("no-pin = \"yes\"\n", "key `no-pin`"),
        ("port = = 1\n", "config file"),
    ] {
        let file = dir.join("bad.toml");
        std::fs::write(&file, text).unwrap();
        let (ok, _, err) = check_config(&["--config", file.to_str().unwrap()], &[]);
        assert!(!ok, "{text} must be refused");
        assert!(err.contains(needle), "{text}: {err}");
        let mut cmd = Command::new(bin());
        cmd.args(["--config", file.to_str().unwrap()]);
        let (status, stderr) = run_to_exit(cmd, Duration::from_secs(10));
        assert_eq!(status.and_then(|s| s.code()), Some(2), "{text}: {stderr}");
    }
}

#[test]
fn sighup_reloads_the_config_file() {
    let dir = temp("reload");
    let file = dir.join("percore.toml");
    std::fs::write(&file, "max-body-size = \"8\"\n").unwrap();
    let mut s = ServerProc::start(&["--config", file.to_str().unwrap()]);
    let post = b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\n123456789";
    assert_eq!(s.request(post).status, 413);
    std::fs::write(&file, "max-body-size = \"1KiB\"\n").unwrap();
    s.signal(libc::SIGHUP);
    assert!(s.wait_log("reload done", Duration::from_secs(10)));
    assert_eq!(s.request(post).status, 200, "the new limit applies after SIGHUP");
    // A broken file is refused and the running configuration stays.
    std::fs::write(&file, "max-body-size = \"lots\"\n").unwrap();
    s.signal(libc::SIGHUP);
    assert!(s.wait_log("reload refused", Duration::from_secs(10)));
    assert_eq!(s.request(post).status, 200);
}

#[test]
fn several_bind_addresses() {
    let port = free_port();
    let v4 = format!("127.0.0.1:{port}");
    let v6 = format!("[::1]:{port}");
    let Ok(s) = ServerProc::spawn(&["--bind", &v4, "--bind", &v6, "--workers", "2", "--log-format", "json"])
    else {
        eprintln!("skipped: cannot bind {v4} and {v6} (no IPv6 loopback?)");
        return;
    };
    for addr in [v4, v6] {
        let mut c = Client::new(connect(addr.parse().unwrap()));
        c.send(b"GET /plaintext HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(c.response().status, 200, "{addr}");
    }
    drop(s);
}

/// What a [`Piped`] server's stdout is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stdout {
    /// /dev/null.
    Null,
    /// A pipe whose read end is closed at once (writes fail with EPIPE).
    Closed,
    /// A pipe nobody reads (writes block once it is full).
    Unread,
}

/// A percore whose stdout/stderr are pipes treated badly; killed (by PID) when dropped.
struct Piped {
    child: std::process::Child,
    addr: std::net::SocketAddr,
    /// Held open, never read (for [`Stdout::Unread`]).
    _stdout: Option<std::process::ChildStdout>,
    /// stderr lines read, when it is kept open.
    logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Piped {
    /// Start percore with `args` and `env`; stderr is a pipe read up to the ready line and
    /// then closed (as `percore 2>&1 | head -1`, or a log collector that died, would), or
    /// read throughout when `keep_stderr`.
    fn start(args: &[&str], env: &[(&str, &str)], stdout: Stdout, keep_stderr: bool) -> Piped {
        use std::io::BufRead;
        use std::process::Stdio;
        let mut cmd = Command::new(bin());
        cmd.args(["--port", "0", "--workers", "1", "--log-format", "json"]).args(args);
        cmd.envs(env.iter().copied());
        let out = if stdout == Stdout::Null { Stdio::null() } else { Stdio::piped() };
        let mut child = with_runtime(&mut cmd)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn percore");
        let held = child.stdout.take().filter(|_| stdout == Stdout::Unread);
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = logs.clone();
        // The reader (and with it the pipe) ends after the ready line unless `keep_stderr`,
        // and anyway when the process dies.
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("percore ready") {
                    let _ = tx.send(json_field(&line, "address").expect("address"));
                    if !keep_stderr {
                        return;
                    }
                }
                sink.lock().unwrap().push(line);
            }
        });
        let Ok(addr) = rx.recv_timeout(Duration::from_secs(20)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("percore did not become ready");
        };
        // Let the reader thread return and close its end.
        std::thread::sleep(Duration::from_millis(100));
        Piped { child, addr: addr.parse().unwrap(), _stdout: held, logs }
    }

    /// How many stderr lines (read so far) contain `needle`.
    fn log_count(&self, needle: &str) -> usize {
        self.logs.lock().unwrap().iter().filter(|l| l.contains(needle)).count()
    }

    /// Resident memory, in KiB.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    fn signal(&mut self, sig: libc::c_int) {
        assert!(self.child.try_wait().unwrap().is_none(), "percore exited before signal {sig}");
        // SAFETY: kill(2) on our own child, not yet reaped (checked above).
        assert_eq!(unsafe { libc::kill(self.child.id() as libc::pid_t, sig) }, 0);
    }

    fn request(&self, raw: &[u8]) -> Response {
        let mut c = Client::new(connect(self.addr));
        c.send(raw);
        c.response()
    }

    /// SIGTERM, then the exit status (`None`: still running after 15 s).
    fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        self.signal(libc::SIGTERM);
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Piped {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_closed_stderr_pipe_does_not_end_the_server() {
    let mut s = Piped::start(&[], &[], Stdout::Null, false);
    // Every one of these logs lines that now meet EPIPE.
    s.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(s.child.try_wait().unwrap().is_none(), "percore died when its stderr reader went away");
    assert_eq!(s.request(b"GET /plaintext HTTP/1.1\r\nHost: h\r\n\r\n").status, 200);
    let status = s.terminate().expect("percore did not stop on SIGTERM");
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
}

#[test]
fn a_closed_access_log_pipe_drops_lines_and_the_server_goes_on() {
    let mut s = Piped::start(&["--access-log", "-"], &[], Stdout::Closed, true);
    let get = b"GET /plaintext HTTP/1.1\r\nHost: h\r\n\r\n";
    for _ in 0..3 {
        assert_eq!(s.request(get).status, 200);
        // Past an executor tick (100 ms), so each line is handed to the writer.
        std::thread::sleep(Duration::from_millis(250));
    }
    let m = s.request(b"GET /metrics HTTP/1.1\r\nHost: h\r\n\r\n").text();
    assert!(sample(&m, "percore_access_log_dropped_total") >= 3.0, "{m}");
    assert_eq!(s.log_count("cannot write the access log"), 1, "said once: {:?}", s.logs.lock().unwrap());
    let status = s.terminate().expect("percore did not stop on SIGTERM");
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
}

#[test]
fn an_unread_access_log_pipe_bounds_memory_and_counts_dropped_lines() {
    let _heavy = heavy();
    // Set through the environment, so that a percore without the setting still starts.
    let env = [("PERCORE_ACCESS_LOG_BUFFER", "1MiB")];
    let s = Piped::start(&["--access-log", "-"], &env, Stdout::Unread, true);
    let value = "v".repeat(8000);
    let one =
        format!("GET /plaintext HTTP/1.1\r\nHost: h\r\nUser-Agent: {value}\r\nReferer: {value}\r\n\r\n");
    let batch = one.repeat(50);
    let mut c = Client::new(connect(s.addr));
    let before = s.rss_kib();
    // 4000 lines of 16 KB each if the values were logged whole: 64 MB.
    for _ in 0..80 {
        c.send(batch.as_bytes());
        for _ in 0..50 {
            assert_eq!(c.response().status, 200);
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let grown = s.rss_kib().saturating_sub(before);
    assert!(grown < 24 * 1024, "RSS grew by {grown} KiB with a 1 MiB access log budget");
    let m = s.request(b"GET /metrics HTTP/1.1\r\nHost: h\r\n\r\n").text();
    let dropped = sample(&m, "percore_access_log_dropped_total");
    assert!(dropped >= 2000.0, "dropped {dropped} of 4000 lines");
    assert_eq!(s.log_count("access log output is not keeping up"), 1, "the warning is given once");
}

#[test]
fn a_slow_client_on_the_metrics_port_does_not_block_scrapes() {
    use std::io::{Read, Write};
    let s = ServerProc::start(&["--metrics-port", "0"]);
    assert!(s.wait_log("metrics on their own port", Duration::from_secs(5)));
    let line = s.logs().into_iter().find(|l| l.contains("metrics on their own port")).unwrap();
    let addr: std::net::SocketAddr = json_field(&line, "address").unwrap().parse().unwrap();

    // A client that trickles a request head, one byte a second, for up to 12 s.
    let started = std::time::Instant::now();
    let mut slow = connect(addr);
    let mut watch = slow.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        for b in b"GET /metrics HTTP".iter().take(12) {
            if slow.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    std::thread::sleep(Duration::from_millis(300));

    let asked = std::time::Instant::now();
    let mut scrape = Client::new(connect(addr));
    scrape.stream.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    scrape.send(b"GET /metrics HTTP/1.1\r\nHost: h\r\n\r\n");
    let r = scrape.response();
    assert_eq!(r.status, 200);
    assert!(asked.elapsed() < Duration::from_secs(2), "the scrape waited {:?}", asked.elapsed());

    // The trickling client is cut at the whole-request deadline (5 s), not kept while it
    // keeps sending.
    watch.set_read_timeout(Some(Duration::from_secs(9))).unwrap();
    let mut b = [0u8; 64];
    let ended = match watch.read(&mut b) {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(n) => panic!("unexpected answer to a partial head: {:?}", String::from_utf8_lossy(&b[..n])),
    };
    assert!(ended, "the trickling client was not cut");
    assert!(started.elapsed() < Duration::from_secs(8), "cut after {:?}", started.elapsed());
    trickle.join().unwrap();
}

#[test]
fn sighup_applies_log_level_and_access_log_format_and_names_what_needs_a_restart() {
    let dir = temp("reload-report");
    let file = dir.join("percore.toml");
    let log = dir.join("access.log");
    let common = format!("access-log = {:?}\nmax-body-size = \"8\"\n", log.to_str().unwrap());
    std::fs::write(
        &file,
        format!("{common}log-format = \"json\"\nlog-level = \"info\"\naccess-log-format = \"%(s)s\"\n"),
    )
    .unwrap();
    // No --log-format flag: the file's log-format is the one in force.
    let mut s = ServerProc::spawn(&["--config", file.to_str().unwrap(), "--port", "0", "--workers", "1"])
        .expect("server did not start");
    let bad = b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
    assert_eq!(s.request(bad).status, 400);
    assert_eq!(log_lines(&log, 1), vec!["400"]);

    let metrics_port = free_port();
    std::fs::write(
        &file,
        format!(
            "{common}log-format = \"text\"\nlog-level = \"debug\"\naccess-log-format = \"%(m)s %(U)s\"\n\
             metrics-port = {metrics_port}\nbacklog = 100\n"
        ),
    )
    .unwrap();
    s.signal(libc::SIGHUP);
    assert!(s.wait_log("reload done", Duration::from_secs(10)), "{:#?}", s.logs());

    let logs = s.logs();
    let warnings: Vec<&String> =
        logs.iter().filter(|l| l.contains("take effect only after a restart")).collect();
    assert_eq!(warnings.len(), 1, "one warning line: {logs:#?}");
    let named = json_field(warnings[0], "settings").unwrap();
    let mut named: Vec<&str> = named.split(", ").collect();
    named.sort_unstable();
    assert_eq!(named, vec!["backlog", "log-format", "metrics-port"], "{}", warnings[0]);

    // log-level took effect: the debug line for a refused request appears.
    assert_eq!(s.log_count("refusing request"), 0, "not logged at info");
    assert_eq!(s.request(bad).status, 400);
    assert!(s.wait_log("refusing request", Duration::from_secs(5)), "log-level debug not applied");
    // access-log-format took effect for the new executors.
    assert_eq!(s.request(b"GET /plaintext HTTP/1.1\r\nHost: h\r\n\r\n").status, 200);
    let lines = log_lines(&log, 3);
    assert_eq!(lines.last().map(String::as_str), Some("GET /plaintext"), "{lines:?}");
}

#[test]
fn check_config_refuses_what_the_server_refuses_and_is_listed_in_help() {
    let refused = [
        (vec!["--cpus", "99"], "--cpus"),
        (vec!["--workers", "0"], "--workers"),
        (vec!["--access-log", "/nonexistent-percore-dir/access.log"], "access log"),
    ];
    for (args, needle) in refused {
        let (ok, _, err) = check_config(&args, &[]);
        assert!(!ok, "check-config {args:?} must be refused like the server refuses it: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // A metrics port in use is a warning: the running server holds it during a reload.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (ok, out, err) = check_config(&["--metrics-port", &port], &[]);
    assert!(ok, "{err}");
    assert!(err.contains("warning") && err.contains("--metrics-port"), "{err}");
    assert!(out.contains(&format!("metrics-port = {port}  # command line")), "{out}");

    let help = Command::new(bin()).arg("--help").output().unwrap();
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("check-config"),
        "percore --help lists check-config"
    );
    let own = Command::new(bin()).args(["check-config", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&own.stdout);
    assert!(own.status.success());
    assert!(text.contains("Usage: percore check-config"), "{text}");
    assert!(text.contains("without serving"), "{text}");
}
