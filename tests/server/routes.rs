//! The demo application's routes, 404/405, HEAD, OPTIONS and request-target forms.

use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn health_and_ready() {
    let s = ServerProc::start(&[]);
    let r = s.request(&get("/health"));
    assert_eq!(r.status, 200, "GET /health");
    assert_eq!(r.text(), r#"{"status":"healthy"}"#);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let r = s.request(&get("/ready"));
    assert_eq!(r.status, 200, "GET /ready on a server that is not draining");
}

#[test]
fn echo_post_and_put_keep_content_type() {
    let s = ServerProc::start(&[]);
    let r = s.request(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-test\r\nContent-Length: 11\r\n\r\nhello world");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello world");
    assert_eq!(
        r.header("content-type"),
        Some("application/x-test"),
        "echo must return the request's content type"
    );
    let r =
        s.request(b"PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: 3\r\n\r\na,b");
    assert_eq!(r.status, 200, "PUT /echo");
    assert_eq!(r.text(), "a,b");
    assert_eq!(r.header("content-type"), Some("text/csv"));
}

#[test]
fn echo_empty_and_binary_bodies() {
    let s = ServerProc::start(&[]);
    let r = s.request(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(r.status, 200, "empty echo");
    assert!(r.body.is_empty(), "empty echo body: {:?}", r.text());
    let body: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let r = s.request(&post_echo(&body));
    assert_eq!(r.status, 200);
    assert!(r.body == body, "100 kB binary echo differs (got {} bytes)", r.body.len());
}

#[test]
fn unknown_path_is_404() {
    let s = ServerProc::start(&[]);
    let r = s.request(&get("/nope"));
    assert_eq!(r.status, 404);
    let r = s.request(b"POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi");
    assert_eq!(r.status, 404, "POST to an unknown path");
}

#[test]
fn wrong_method_is_405_with_allow() {
    let s = ServerProc::start(&[]);
    let r = s.request(b"DELETE /plaintext HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 405, "DELETE /plaintext");
    let allow = r.header("allow").expect("405 must carry Allow").to_ascii_uppercase();
    assert!(allow.contains("GET"), "Allow {allow:?} must list GET");
    assert!(allow.contains("HEAD"), "Allow {allow:?} must list HEAD for a GET route");
    assert!(!allow.contains("DELETE"), "Allow {allow:?} must not list DELETE");

    let r = s.request(&get("/echo"));
    assert_eq!(r.status, 405, "GET /echo");
    let allow = r.header("allow").expect("405 must carry Allow").to_ascii_uppercase();
    assert!(allow.contains("POST") && allow.contains("PUT"), "Allow {allow:?} must list POST and PUT");
    assert!(!allow.split(',').any(|m| m.trim() == "GET"), "Allow {allow:?} must not list GET");
}

#[test]
fn head_has_get_headers_and_no_body() {
    let s = ServerProc::start(&[]);
    let g = s.request(&get("/plaintext"));
    let mut c = s.client();
    c.send(b"HEAD /plaintext HTTP/1.1\r\nHost: x\r\n\r\n");
    let h = c.head_response();
    assert_eq!(h.status, 200, "HEAD /plaintext");
    assert_eq!(h.header("content-type"), g.header("content-type"), "HEAD content-type like GET");
    assert_eq!(h.header("content-length"), Some("13"), "HEAD content-length like GET");
    // If a body had been sent, it would be parsed as the next status line here.
    c.send(&get("/json"));
    let r = c.response();
    assert_eq!(r.status, 200, "request after HEAD on the same connection");
    assert_eq!(r.text(), r#"{"message":"Hello, World!"}"#, "HEAD must not send a body");
}

#[test]
fn head_on_streamed_route_has_no_body() {
    let s = ServerProc::start(&[]);
    let mut c = s.client();
    c.send(b"HEAD /stream?chunks=3&size=10 HTTP/1.1\r\nHost: x\r\n\r\n");
    let h = c.head_response();
    assert_eq!(h.status, 200);
    c.send(&get("/plaintext"));
    let r = c.response();
    assert_eq!(r.text(), "Hello, World!", "HEAD /stream must not send chunks");
}

#[test]
fn options_asterisk_is_2xx() {
    let s = ServerProc::start(&[]);
    let mut c = s.client();
    c.send(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = c.response();
    assert!((200..300).contains(&r.status), "OPTIONS * got {}", r.status);
    c.send(&get("/plaintext"));
    assert_eq!(c.response().text(), "Hello, World!", "connection still usable after OPTIONS *");
}

#[test]
fn absolute_form_target() {
    let s = ServerProc::start(&[]);
    let r = s.request(b"GET http://localhost/plaintext HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(r.status, 200, "absolute-form GET");
    assert_eq!(r.text(), "Hello, World!");
}

#[test]
fn query_string_does_not_change_route() {
    let s = ServerProc::start(&[]);
    let r = s.request(&get("/plaintext?a=1&b=2"));
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "Hello, World!");
}

#[test]
fn delay_waits_without_blocking_the_worker() {
    let s = ServerProc::start(&["--workers", "1"]);
    let start = Instant::now();
    let mut slow = s.client();
    slow.send(&get("/delay?ms=1500"));
    std::thread::sleep(Duration::from_millis(100)); // let the delay request reach its handler
    let t = Instant::now();
    let r = s.request(&get("/plaintext"));
    let fast = t.elapsed();
    assert_eq!(r.text(), "Hello, World!");
    assert!(
        fast < Duration::from_millis(1000),
        "/plaintext took {fast:?} while a /delay was in flight: the delay blocks the worker thread"
    );
    let r = slow.response();
    let waited = start.elapsed();
    assert_eq!(r.status, 200, "/delay status");
    assert!(waited >= Duration::from_millis(1450), "/delay?ms=1500 answered after only {waited:?}");
    assert!(waited < Duration::from_millis(4000), "/delay?ms=1500 took {waited:?}");
}

#[test]
fn stream_sends_n_chunks_of_b_bytes() {
    let s = ServerProc::start(&[]);
    let r = s.request(&get("/stream?chunks=7&size=100"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"), "/stream must be chunked");
    assert!(r.header("content-length").is_none(), "chunked response must not carry content-length");
    assert_eq!(r.body.len(), 700, "decoded /stream body length");
}
