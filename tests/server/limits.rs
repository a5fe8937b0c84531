//! Size limits on the request line, header fields, header block, field count and body, and
//! the flags that change them.

use std::time::Duration;

use crate::support::*;

/// `GET /plaintext?pad=...` whose request line (without CRLF) is `len` bytes long.
fn get_with_line_len(len: usize) -> Vec<u8> {
    let fixed = "GET /plaintext?pad= HTTP/1.1".len();
    format!("GET /plaintext?pad={} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(len - fixed)).into_bytes()
}

/// `GET /plaintext` with `count` extra fields `X-Fn: <value_len bytes>`.
fn get_with_fields(count: usize, value_len: usize) -> Vec<u8> {
    let mut raw = b"GET /plaintext HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..count {
        raw.extend(format!("X-F{i}: {}\r\n", "v".repeat(value_len)).into_bytes());
    }
    raw.extend_from_slice(b"\r\n");
    raw
}

fn write_in_background(c: &Client, raw: Vec<u8>) -> std::thread::JoinHandle<()> {
    // The server may answer and close before taking everything: ignore write errors.
    let mut w = c.stream.try_clone().unwrap();
    std::thread::spawn(move || {
        let _ = std::io::Write::write_all(&mut w, &raw);
    })
}

#[test]
fn request_line_within_8kib_is_fine() {
    let s = ServerProc::start(&[]);
    let r = s.request(&get_with_line_len(8000));
    assert_eq!(r.status, 200, "8000-byte request line");
}

#[test]
fn request_line_over_8kib_is_414() {
    let s = ServerProc::start(&[]);
    assert_refused(&s, &get_with_line_len(9000), 414);
}

#[test]
fn endless_request_line_is_414() {
    // No line end at all: the server must not wait for one forever.
    let s = ServerProc::start(&[]);
    let mut c = s.client();
    let raw = format!("GET /{}", "a".repeat(20_000)).into_bytes();
    let w = write_in_background(&c, raw);
    let r = c.response();
    w.join().unwrap();
    assert_eq!(r.status, 414, "request line without end over the limit");
    assert!(r.closes());
}

#[test]
fn header_field_within_8kib_is_fine() {
    let s = ServerProc::start(&[]);
    let r = s.request(&get_with_fields(1, 8000));
    assert_eq!(r.status, 200, "one 8000-byte header field");
}

#[test]
fn header_field_over_8kib_is_431() {
    let s = ServerProc::start(&[]);
    assert_refused(&s, &get_with_fields(1, 9000), 431);
}

#[test]
fn header_block_within_64kib_is_fine() {
    let s = ServerProc::start(&[]);
    let r = s.request(&get_with_fields(40, 1200));
    assert_eq!(r.status, 200, "40 fields of 1200 bytes (48 KB)");
}

#[test]
fn header_block_over_64kib_is_431() {
    let s = ServerProc::start(&[]);
    let mut c = s.client();
    let w = write_in_background(&c, cat(&[&get_with_fields(60, 1200), &get("/plaintext")]));
    let r = c.response();
    w.join().unwrap();
    assert_eq!(r.status, 431, "60 fields of 1200 bytes (72 KB)");
    assert!(r.closes(), "headers {:?}", r.headers);
    assert!(c.expect_closed(Duration::from_secs(5)));
}

#[test]
fn one_hundred_fields_are_fine() {
    let s = ServerProc::start(&[]);
    let r = s.request(&get_with_fields(99, 10)); // + Host = 100
    assert_eq!(r.status, 200, "100 header fields");
}

#[test]
fn more_than_100_fields_is_431() {
    let s = ServerProc::start(&[]);
    assert_refused(&s, &get_with_fields(100, 10), 431); // + Host = 101
}

#[test]
fn body_over_max_body_size_is_413_without_reading_it() {
    let s = ServerProc::start(&["--max-body-size", "1KiB"]);
    let mut c = s.client();
    // Only the head: the answer must not wait for the body.
    c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 413, "Content-Length 2000 over --max-body-size 1KiB");
    assert!(r.closes(), "headers {:?}", r.headers);
    assert!(c.expect_closed(Duration::from_secs(5)));
}

#[test]
fn body_at_max_body_size_is_fine() {
    let s = ServerProc::start(&["--max-body-size", "1KiB"]);
    let body = vec![b'q'; 1024];
    let r = s.request(&post_echo(&body));
    assert_eq!(r.status, 200, "body of exactly --max-body-size");
    assert_eq!(r.body.len(), 1024);
}

#[test]
fn chunked_body_over_max_body_size_is_413() {
    let s = ServerProc::start(&["--max-body-size", "1KiB"]);
    let raw = chunked_echo_of_2_kib();
    assert_refused(&s, &raw, 413);
}

#[test]
fn chunked_body_over_max_body_size_streamed_is_413() {
    let s = ServerProc::start(&["--max-body-size", "1KiB"]);
    let mut c = s.client();
    c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(50));
        let mut piece = b"200\r\n".to_vec();
        piece.extend(vec![b'c'; 0x200]);
        piece.extend_from_slice(b"\r\n");
        if std::io::Write::write_all(&mut c.stream, &piece).is_err() {
            break; // the server answered and closed already
        }
    }
    let r = c.response();
    assert_eq!(r.status, 413, "streamed chunked body over 1KiB: {:?}", r.text());
    assert!(r.closes(), "headers {:?}", r.headers);
}

#[test]
fn lowered_max_request_line() {
    let s = ServerProc::start(&["--max-request-line", "1KiB"]);
    assert_eq!(s.request(&get_with_line_len(900)).status, 200, "900-byte line under 1KiB");
    assert_refused(&s, &get_with_line_len(1500), 414);
}

#[test]
fn lowered_max_header_size() {
    let s = ServerProc::start(&["--max-header-size", "1KiB"]);
    assert_eq!(s.request(&get_with_fields(1, 900)).status, 200, "900-byte field under 1KiB");
    assert_refused(&s, &get_with_fields(1, 1500), 431);
}

#[test]
fn lowered_max_headers_size() {
    let s = ServerProc::start(&["--max-headers-size", "4KiB"]);
    assert_eq!(s.request(&get_with_fields(3, 1000)).status, 200, "3 KB block under 4KiB");
    assert_refused(&s, &get_with_fields(5, 1000), 431);
}

#[test]
fn lowered_max_headers() {
    let s = ServerProc::start(&["--max-headers", "10"]);
    assert_eq!(s.request(&get_with_fields(9, 5)).status, 200, "10 fields with --max-headers 10");
    assert_refused(&s, &get_with_fields(10, 5), 431);
}

#[test]
fn raised_max_headers() {
    let s = ServerProc::start(&["--max-headers", "300"]);
    assert_eq!(s.request(&get_with_fields(250, 5)).status, 200, "251 fields with --max-headers 300");
}
