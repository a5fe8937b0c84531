//! Many connections at once, `--limit-concurrency` and `--max-connections`.

use std::thread;
use std::time::{Duration, Instant};

use crate::support::*;

fn thousand_connections(server: &ServerProc) {
    const N: usize = 1000;
    let start = Instant::now();
    let mut clients: Vec<Client> = (0..N).map(|_| server.client()).collect();
    for c in clients.iter_mut() {
        c.send(&get("/plaintext"));
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let r = c.response();
        assert_eq!(r.status, 200, "connection {i} of {N}");
        assert_eq!(r.text(), "Hello, World!", "connection {i} of {N}");
    }
    // All still open and usable.
    for c in clients.iter_mut().step_by(50) {
        c.send(&get("/json"));
        assert_eq!(c.response().status, 200);
    }
    assert!(start.elapsed() < Duration::from_secs(20), "1000 connections took {:?}", start.elapsed());
}

#[test]
fn thousand_concurrent_connections_one_worker() {
    let _turn = heavy();
    let s = ServerProc::start(&["--workers", "1"]);
    thousand_connections(&s);
}

#[test]
fn thousand_concurrent_connections_default_workers() {
    let _turn = heavy();
    // No --workers: one executor per available core.
    let s = ServerProc::spawn(&["--port", "0", "--log-format", "json"])
        .expect("server with default workers did not start");
    thousand_connections(&s);
}

#[test]
fn limit_concurrency_refuses_with_503() {
    let s = ServerProc::start(&["--workers", "1", "--limit-concurrency", "1"]);
    let mut slow = s.client();
    slow.send(&get("/delay?ms=1500"));
    thread::sleep(Duration::from_millis(300)); // the delay is now in its handler
    let mut c = s.client();
    c.send(&get("/plaintext"));
    let r = c.response();
    assert_eq!(r.status, 503, "second request while one is in flight with --limit-concurrency 1");
    assert!(r.closes(), "503 must say connection: close; headers {:?}", r.headers);
    assert!(c.expect_closed(Duration::from_secs(5)), "connection closed after 503");
    let r = slow.response();
    assert_eq!(r.status, 200, "the in-flight /delay completes");
    // Once it is done, requests are served again.
    let r = s.request(&get("/plaintext"));
    assert_eq!(r.status, 200, "after the in-flight request finished");
}

#[test]
fn limit_concurrency_ignores_idle_connections() {
    let s = ServerProc::start(&["--workers", "1", "--limit-concurrency", "1"]);
    let mut idle: Vec<Client> = (0..5).map(|_| s.client()).collect();
    for c in idle.iter_mut() {
        c.send(&get("/plaintext"));
        assert_eq!(c.response().status, 200);
    }
    // Five idle keep-alive connections (plus five fresh never-used ones) hold no slot.
    let _fresh: Vec<Client> = (0..5).map(|_| s.client()).collect();
    thread::sleep(Duration::from_millis(100));
    let r = s.request(&get("/plaintext"));
    assert_eq!(r.status, 200, "idle connections must not count against --limit-concurrency");
    for (i, c) in idle.iter_mut().enumerate() {
        c.send(&get("/json"));
        assert_eq!(c.response().status, 200, "idle connection {i} reused");
    }
}

#[test]
fn max_connections_refuses_with_503() {
    let s = ServerProc::start(&["--workers", "1", "--max-connections", "2"]);
    let mut a = s.client();
    let mut b = s.client();
    for c in [&mut a, &mut b] {
        c.send(&get("/plaintext"));
        assert_eq!(c.response().status, 200);
    }
    let mut third = s.client();
    let r = third.response(); // answered without sending anything
    assert_eq!(r.status, 503, "third connection over --max-connections 2");
    assert!(r.closes(), "headers {:?}", r.headers);
    assert!(third.expect_closed(Duration::from_secs(5)), "third connection closed");
    // The first two still work; once one closes, a new connection is accepted.
    a.send(&get("/plaintext"));
    assert_eq!(a.response().status, 200);
    drop(b);
    let ok = eventually(Duration::from_secs(3), || {
        let mut c = s.client();
        c.send(&get("/plaintext"));
        c.response().status == 200
    });
    assert!(ok, "a slot frees up when a connection closes");
}

#[test]
fn trickling_uploads_take_no_concurrency_slot() {
    let s = ServerProc::start(&["--workers", "1", "--limit-concurrency", "2"]);
    // Two uploads that send a byte now and then: their handlers wait on the client.
    let mut slow: Vec<Client> = (0..2).map(|_| s.client()).collect();
    for c in slow.iter_mut() {
        c.send(b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nx");
    }
    for round in 0..3 {
        thread::sleep(Duration::from_millis(400));
        for c in slow.iter_mut() {
            c.send(b"x");
        }
        for path in ["/plaintext", "/health", "/ready"] {
            let r = s.request(&get(path));
            assert_eq!(r.status, 200, "{path} while two uploads trickle (round {round})");
        }
    }
}

#[test]
fn health_and_ready_are_answered_while_saturated() {
    let s = ServerProc::start(&["--workers", "1", "--limit-concurrency", "1"]);
    let mut busy = s.client();
    busy.send(&get("/delay?ms=1500"));
    thread::sleep(Duration::from_millis(300));
    assert_eq!(s.request(&get("/plaintext")).status, 503, "the one slot is taken");
    assert_eq!(s.request(&get("/health")).status, 200);
    assert_eq!(s.request(&get("/ready")).status, 200);
    assert_eq!(busy.response().status, 200);
}

#[test]
fn a_body_below_the_minimum_rate_times_out() {
    let s = ServerProc::start(&["--workers", "1", "--body-timeout", "1s", "--body-min-rate", "100"]);
    let mut c = s.client();
    c.send(b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n");
    let t0 = Instant::now();
    // A byte every 300 ms: each gap is well within --body-timeout, the rate far below 100/s.
    let mut closed = false;
    while t0.elapsed() < Duration::from_secs(5) {
        thread::sleep(Duration::from_millis(300));
        if std::io::Write::write_all(&mut c.stream, b"x").is_err() {
            closed = true;
            break;
        }
        c.stream.set_nonblocking(true).unwrap();
        let mut probe = [0u8; 1];
        let answered = matches!(c.stream.peek(&mut probe), Ok(n) if n > 0);
        c.stream.set_nonblocking(false).unwrap();
        if answered {
            break;
        }
    }
    assert!(t0.elapsed() < Duration::from_secs(4), "still reading a 3 B/s body after {:?}", t0.elapsed());
    if !closed {
        assert_eq!(c.response().status, 408);
    }
}
