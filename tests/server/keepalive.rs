//! Persistent connections: HTTP/1.1 default keep-alive, `Connection: close`, HTTP/1.0, and
//! `--keep-alive 0`.

use std::time::Duration;

use crate::support::*;

#[test]
fn http11_keeps_alive_by_default() {
    let s = ServerProc::start(&[]);
    let mut c = s.client();
    for i in 0..5 {
        c.send(&get("/plaintext"));
        let r = c.response();
        assert_eq!(r.status, 200, "request {i} on one connection");
        assert!(!r.closes(), "HTTP/1.1 response {i} must not say connection: close");
    }
}

#[test]
fn connection_close_is_honoured() {
    let s = ServerProc::start(&[]);
    let mut c = s.client();
    c.send(b"GET /plaintext HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let r = c.response();
    assert_eq!(r.text(), "Hello, World!");
    assert!(r.closes(), "response to Connection: close must say connection: close; headers {:?}", r.headers);
    assert!(c.expect_closed(Duration::from_secs(3)), "server must close after Connection: close");
}

#[test]
fn connection_close_token_in_a_list() {
    let s = ServerProc::start(&[]);
    let mut c = s.client();
    c.send(b"GET /plaintext HTTP/1.1\r\nHost: x\r\nConnection: foo, Close\r\n\r\n");
    let r = c.response();
    assert!(r.closes(), "`Connection: foo, Close` must close; headers {:?}", r.headers);
    assert!(c.expect_closed(Duration::from_secs(3)));
}

#[test]
fn http10_closes_by_default() {
    let s = ServerProc::start(&[]);
    let mut c = s.client();
    c.send(b"GET /plaintext HTTP/1.0\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 200, "HTTP/1.0 without Host is fine");
    assert_eq!(r.text(), "Hello, World!");
    assert!(
        !r.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("keep-alive")),
        "HTTP/1.0 default must not claim keep-alive"
    );
    assert!(c.expect_closed(Duration::from_secs(3)), "HTTP/1.0 without keep-alive must be closed");
}

#[test]
fn http10_keep_alive_on_request() {
    let s = ServerProc::start(&[]);
    let mut c = s.client();
    for i in 0..3 {
        c.send(b"GET /plaintext HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let r = c.response();
        assert_eq!(r.text(), "Hello, World!", "HTTP/1.0 keep-alive request {i}");
        assert_eq!(
            r.header("connection").map(str::to_ascii_lowercase).as_deref(),
            Some("keep-alive"),
            "HTTP/1.0 keep-alive response {i} must say connection: keep-alive"
        );
    }
    c.send(b"GET /plaintext HTTP/1.0\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 200);
    assert!(c.expect_closed(Duration::from_secs(3)), "last HTTP/1.0 request without keep-alive closes");
}

#[test]
fn http10_streamed_response_is_close_delimited() {
    let s = ServerProc::start(&[]);
    let mut c = s.client();
    c.send(b"GET /stream?chunks=4&size=25 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 200);
    assert!(r.header("transfer-encoding").is_none(), "no chunked coding for an HTTP/1.0 client");
    assert_eq!(r.body.len(), 100, "close-delimited body of 4 x 25 bytes");
}

#[test]
fn keep_alive_zero_disables_keep_alive() {
    let s = ServerProc::start(&["--keep-alive", "0"]);
    let mut c = s.client();
    c.send(&get("/plaintext"));
    let r = c.response();
    assert_eq!(r.text(), "Hello, World!");
    assert!(r.closes(), "--keep-alive 0: response must say connection: close; headers {:?}", r.headers);
    assert!(c.expect_closed(Duration::from_secs(3)), "--keep-alive 0: connection must close");
}
