//! Header, keep-alive, body and write timeouts (all set small).

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn partial_head_gets_408_then_close() {
    let s = ServerProc::start(&["--header-timeout", "1s"]);
    let mut c = s.client();
    let start = Instant::now();
    c.send(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n");
    let r = c.response();
    let took = start.elapsed();
    assert_eq!(r.status, 408, "partial head after --header-timeout 1s");
    assert!(r.closes(), "408 must say connection: close; headers {:?}", r.headers);
    assert!(took >= Duration::from_millis(900), "408 came after only {took:?}");
    assert!(took < Duration::from_secs(4), "408 came after {took:?}");
    assert!(c.expect_closed(Duration::from_secs(5)), "connection closes after 408");
}

#[test]
fn silent_connection_is_closed_at_header_timeout() {
    let s = ServerProc::start(&["--header-timeout", "1s"]);
    let mut c = s.client();
    let start = Instant::now();
    // Either a 408 or a plain close is fine; staying open is not.
    c.stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let r = c.try_response(false);
    let took = start.elapsed();
    if let Some(r) = r {
        assert_eq!(r.status, 408, "only a 408 may be sent to a silent connection");
        assert!(c.expect_closed(Duration::from_secs(3)));
    }
    assert!(took >= Duration::from_millis(900), "closed after only {took:?}");
    assert!(took < Duration::from_secs(4), "silent connection closed after {took:?}");
}

#[test]
fn slowloris_is_cut_off_at_header_timeout() {
    let s = ServerProc::start(&["--header-timeout", "1s"]);
    let mut c = s.client();
    let mut w = c.stream.try_clone().unwrap();
    let start = Instant::now();
    let trickle = thread::spawn(move || {
        // One byte every 200 ms, for at most 3 s; the head never completes in time.
        let head = b"GET /plaintext HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        for b in head.iter().take(15) {
            if w.write_all(&[*b]).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(200));
        }
    });
    c.stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let r = c.try_response(false);
    let took = start.elapsed();
    trickle.join().unwrap();
    if let Some(r) = r {
        assert_eq!(r.status, 408, "slowloris client");
    }
    assert!(
        took < Duration::from_millis(2500),
        "slowloris trickling 1 byte / 200 ms was cut off only after {took:?} (--header-timeout 1s)"
    );
    assert!(took >= Duration::from_millis(900), "cut off after only {took:?}");
}

#[test]
fn idle_keep_alive_connection_is_closed() {
    let s = ServerProc::start(&["--keep-alive", "1s"]);
    let mut c = s.client();
    c.send(&get("/plaintext"));
    let r = c.response();
    assert_eq!(r.status, 200);
    let start = Instant::now();
    assert!(
        c.expect_closed(Duration::from_secs(4)),
        "idle connection not closed within 4 s (--keep-alive 1s)"
    );
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(800), "idle connection closed after only {took:?}");
}

#[test]
fn keep_alive_timer_restarts_per_request() {
    let s = ServerProc::start(&["--keep-alive", "1s"]);
    let mut c = s.client();
    for i in 0..3 {
        c.send(&get("/plaintext"));
        assert_eq!(c.response().status, 200, "request {i}");
        thread::sleep(Duration::from_millis(600));
    }
}

#[test]
fn slow_body_gets_408() {
    let s = ServerProc::start(&["--body-timeout", "1s"]);
    let mut c = s.client();
    let start = Instant::now();
    c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789");
    let r = c.response();
    let took = start.elapsed();
    assert_eq!(r.status, 408, "body stalled after 10 of 100 bytes: {:?}", r.text());
    assert!(r.closes(), "408 must close; headers {:?}", r.headers);
    assert!(took < Duration::from_secs(4), "408 after {took:?}");
    assert!(c.expect_closed(Duration::from_secs(5)));
}

#[test]
fn slow_chunked_body_gets_408() {
    let s = ServerProc::start(&["--body-timeout", "1s"]);
    let mut c = s.client();
    c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel");
    let r = c.response();
    assert_eq!(r.status, 408, "chunked body stalled mid-chunk: {:?}", r.text());
    assert!(r.closes());
}

#[test]
fn client_that_never_reads_is_dropped_and_others_are_served() {
    let s = ServerProc::start(&["--workers", "1", "--write-timeout", "1s"]);
    let mut stuck = s.client();
    // ~6.5 GB: far more than socket buffers hold.
    stuck.send(&get("/stream?chunks=100000&size=65536"));
    thread::sleep(Duration::from_millis(300));

    // While the stuck client's write is pending, the single worker still serves others.
    let t = Instant::now();
    let r = s.request(&get("/plaintext"));
    assert_eq!(r.text(), "Hello, World!");
    assert!(
        t.elapsed() < Duration::from_millis(800),
        "/plaintext took {:?} while another client was stuck",
        t.elapsed()
    );

    // After the write timeout, the server gives up on the stuck connection: what is already
    // in flight drains, then EOF/reset — far short of the 6.5 GB asked for.
    thread::sleep(Duration::from_millis(2000));
    let (bytes, ended) = stuck.drain(512 << 20, Duration::from_secs(8));
    assert!(ended, "the stuck connection was not closed after --write-timeout 1s (read {bytes} bytes and it kept coming)");

    // And the server is healthy afterwards.
    let r = s.request(&get("/plaintext"));
    assert_eq!(r.text(), "Hello, World!");
}
