//! `examples/axum.rs`, an axum app behind percore's whole command line, on this test
//! binary's runtime: its routes, tokio-bound calls (`tokio::time`, `tokio::net`), the
//! built-in routes, keep-alive and pipelining, and a graceful drain.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

/// The example binary (`cargo test` builds examples beside the test binaries).
fn example_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent().and_then(|deps| deps.parent()).expect("target dir").join("examples").join("axum")
}

/// The example on a free port with `workers` executors.
fn start(workers: &str) -> ServerProc {
    let mut cmd = Command::new(example_bin());
    cmd.args(["--port", "0", "--workers", workers, "--log-format", "json"]);
    ServerProc::spawn_command(cmd).expect("the axum example did not become ready")
}

#[test]
fn axum_routes_answer_as_specified() {
    let s = start("2");
    let r = s.request(&get("/plaintext"));
    assert_eq!((r.status, r.text().as_str()), (200, "Hello, World!"));
    assert_eq!(r.header("content-length"), Some("13"));
    let r = s.request(&get("/users/42"));
    assert_eq!((r.status, r.text().as_str()), (200, r#"{"id":"42"}"#));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let json = |body: &str, ct: &str| {
        format!(
            "POST /echo-json HTTP/1.1\r\nHost: x\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    let r = s.request(&json(r#"{"a":[1,2]}"#, "application/json"));
    assert_eq!((r.status, r.text().as_str()), (200, r#"{"a":[1,2]}"#));
    assert_eq!(s.request(&json(r#"{"a":"#, "application/json")).status, 400, "axum's answer to bad JSON");
    assert_eq!(s.request(&json("{}", "text/plain")).status, 415, "axum's answer to a wrong content type");
    let core = s.request(&get("/core")).text();
    let index: usize = core.split(' ').next().unwrap().parse().expect("executor index");
    assert!(index < 2, "{core}");
    for path in ["/health", "/ready", "/metrics"] {
        assert_eq!(s.request(&get(path)).status, 200, "built-in {path}");
    }
    assert_eq!(s.request(&get("/missing")).status, 404);
}

#[test]
fn tokio_timers_and_sockets_work_on_every_runtime() {
    let s = start("2");
    let t0 = Instant::now();
    let r = s.request(&get("/sleep?ms=150"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(t0.elapsed() >= Duration::from_millis(150), "slept only {:?}", t0.elapsed());

    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = upstream.local_addr().unwrap().port();
    let echo = std::thread::spawn(move || {
        let (stream, _) = upstream.accept().unwrap();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line).unwrap();
        (&stream).write_all(format!("pong {line}").as_bytes()).unwrap();
    });
    let r = s.request(&get(&format!("/outbound?port={port}")));
    assert_eq!((r.status, r.text().as_str()), (200, "pong ping\n"));
    echo.join().unwrap();
}

#[test]
fn axum_app_keeps_alive_and_pipelines() {
    let s = start("1");
    let mut c = s.client();
    c.send(&cat(&[&get("/plaintext"), &get("/users/7"), &get("/sleep?ms=10"), &get("/plaintext")]));
    let bodies: Vec<String> = (0..4).map(|_| c.response().text()).collect();
    assert_eq!(bodies, ["Hello, World!", r#"{"id":"7"}"#, "slept 10 ms\n", "Hello, World!"]);
    // A chunked request body streamed into axum's Json extractor.
    c.send(b"POST /echo-json HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\n\r\n");
    assert_eq!(c.response().text(), r#"{"a":1}"#);
}

#[test]
fn sigterm_drains_in_flight_axum_requests() {
    let mut s = start("1");
    let mut c = s.client();
    c.send(&get("/sleep?ms=800"));
    std::thread::sleep(Duration::from_millis(200));
    s.signal(libc::SIGTERM);
    let r = c.response();
    assert_eq!(r.status, 200, "the in-flight request finishes");
    let status = s.wait_exit(Duration::from_secs(10)).expect("exited after the drain");
    assert_eq!(status.code(), Some(0), "{}", s.logs().join("\n"));
}

#[test]
fn axum_requests_are_logged_counted_and_limited_like_native_ones() {
    let dir = TempDir::new("axum");
    let log = dir.join("access.log");
    let mut cmd = Command::new(example_bin());
    cmd.args(["--port", "0", "--workers", "1", "--log-format", "json", "--max-body-size", "64"]).args([
        "--access-log",
        log.to_str().unwrap(),
        "--access-log-format",
        "json",
    ]);
    let s = ServerProc::spawn_command(cmd).expect("the axum example did not become ready");
    let r = s.request(b"GET /users/5 HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.8\r\n\r\n");
    assert_eq!(r.status, 200);
    // --max-body-size holds for the app's body too: 413 before the app sees it.
    let big = format!("POST /echo-json HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{}", "x".repeat(100));
    assert_eq!(s.request(big.as_bytes()).status, 413);
    let metrics = s.request(&get("/metrics")).text();
    assert!(metrics.contains("percore_responses_total{class=\"2xx\"}"), "{metrics}");
    let mut lines = Vec::new();
    eventually(Duration::from_secs(5), || {
        lines = std::fs::read_to_string(&log).unwrap_or_default().lines().map(str::to_string).collect();
        lines.len() >= 2
    });
    let line = lines.iter().find(|l| l.contains("/users/5")).expect("the axum request in the access log");
    assert_eq!(json_field(line, "client").as_deref(), Some("203.0.113.8"), "{line}");
    assert!(line.contains("\"status\":200"), "{line}");
}
