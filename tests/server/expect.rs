//! `Expect: 100-continue`.

use std::time::Duration;

use crate::support::*;

#[test]
fn continue_then_echo() {
    let s = ServerProc::start(&[]);
    let mut c = s.client();
    c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    let interim = c.response();
    assert_eq!(interim.status, 100, "expected 100 Continue before sending the body");
    c.send(b"hello");
    let r = c.response();
    assert_eq!(r.status, 200, "final response after 100 Continue");
    assert_eq!(r.text(), "hello");
    // And the connection goes on.
    c.send(&get("/plaintext"));
    assert_eq!(c.response().text(), "Hello, World!");
}

#[test]
fn continue_with_chunked_body() {
    let s = ServerProc::start(&[]);
    let mut c = s.client();
    c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!(c.response().status, 100, "100 Continue for a chunked body");
    c.send(b"3\r\nabc\r\n0\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "abc");
}

#[test]
fn no_continue_when_handler_ignores_body() {
    let s = ServerProc::start(&[]);
    let mut c = s.client();
    c.send(b"GET /plaintext HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    let r = c.response();
    assert_ne!(r.status, 100, "no 100 Continue when the handler never reads the body");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "Hello, World!");
}

#[test]
fn too_large_with_expect_is_413_without_continue() {
    let s = ServerProc::start(&["--max-body-size", "1KiB"]);
    let mut c = s.client();
    c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 413, "over --max-body-size with Expect: no 100, straight 413");
    assert!(r.closes(), "413 must close; headers {:?}", r.headers);
    assert!(c.expect_closed(Duration::from_secs(5)), "connection closed after 413");
}
