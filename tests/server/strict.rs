//! What a hostile or sloppy client gets from the parts of a request after its head (chunk
//! extensions, trailers), from odd targets, and what HTTP/1.0 clients get back.

use std::io::Write;
use std::time::Duration;

use crate::support::*;

#[test]
fn http10_clients_never_get_transfer_encoding() {
    let s = ServerProc::start(&[]);
    let mut c = s.client();
    c.send(b"HEAD /stream?chunks=2&size=4 HTTP/1.0\r\n\r\n");
    let r = c.head_response();
    assert_eq!(r.status, 200);
    assert!(r.header("transfer-encoding").is_none(), "HEAD to HTTP/1.0 got {:?}", r.headers);
    let mut c = s.client();
    c.send(b"GET /stream?chunks=2&size=4 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let r = c.response();
    assert!(r.header("transfer-encoding").is_none(), "GET to HTTP/1.0 got {:?}", r.headers);
    assert_eq!(r.body, b"xxxxxxxx", "a close-delimited body");
}

#[test]
fn targets_with_userinfo_no_host_or_connect_without_authority_are_400() {
    let s = ServerProc::start(&[]);
    for bad in [
        &b"GET http://u:p@localhost/plaintext HTTP/1.1\r\nHost: localhost\r\n\r\n"[..],
        b"GET http://:8000/plaintext HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"GET http:///plaintext HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"CONNECT / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"CONNECT /plaintext HTTP/1.1\r\nHost: localhost\r\n\r\n",
    ] {
        assert_refused(&s, bad, 400);
    }
}

#[test]
fn chunk_extensions_count_against_the_body() {
    let s = ServerProc::start(&["--max-body-size", "1KiB"]);
    let mut c = s.client();
    c.send(b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
    let chunk = [b"1;".as_slice(), &[b'e'; 4090], b"\r\nx\r\n"].concat();
    // 1,000 such chunks would be 4 MB of extensions for a 1,000-byte body; the server must
    // refuse within the first few dozen KB. Writes may fail once it has closed.
    for _ in 0..40 {
        if c.stream.write_all(&chunk).is_err() {
            break;
        }
    }
    let r = c.response();
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.closes());
}

#[test]
fn trailers_are_held_to_the_header_limits_and_syntax() {
    let s = ServerProc::start(&["--max-headers", "4"]);
    let post = |trailers: &str| {
        format!("POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n{trailers}\r\n")
            .into_bytes()
    };
    let r = s.request(&post("A: 1\r\nB: 2\r\n"));
    assert_eq!((r.status, r.text().as_str()), (200, "abc"));
    let mut c = s.client();
    c.send(&post("A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n"));
    assert_eq!(c.response().status, 431, "more trailer fields than --max-headers");
    for bad in ["Bad Trailer: x\r\n", "NoColon\r\n", "A : 1\r\n", " folded: x\r\n"] {
        let mut c = s.client();
        c.send(&post(bad));
        let r = c.response();
        assert_eq!(r.status, 400, "trailer {bad:?}");
        assert!(c.expect_closed(Duration::from_secs(5)));
    }
    let mut c = s.client();
    c.send(&post(&format!("Long: {}\r\n", "v".repeat(9000))));
    assert_eq!(c.response().status, 431, "a trailer field longer than --max-header-size");
}
