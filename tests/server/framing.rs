//! Strict request framing: every ambiguous or malformed request is refused with the right
//! status and `connection: close`, the connection closes, and nothing sent after the bad
//! request is answered (request smuggling defences, RFC 9112 §6.3 and §11).

use crate::support::*;

/// A POST /echo head with `extra` header lines (each ending in CRLF), then `body`.
fn post(extra: &str, body: &str) -> Vec<u8> {
    format!("POST /echo HTTP/1.1\r\nHost: x\r\n{extra}\r\n{body}").into_bytes()
}

fn refused(bad: &[u8], status: u16) {
    let s = ServerProc::start(&[]);
    assert_refused(&s, bad, status);
}

// --- Content-Length / Transfer-Encoding -------------------------------------------------

#[test]
fn content_length_with_transfer_encoding() {
    refused(&post("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"), 400);
}

#[test]
fn transfer_encoding_with_content_length_after() {
    refused(&post("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", "0\r\n\r\n"), 400);
}

#[test]
fn content_length_plus_sign() {
    refused(&post("Content-Length: +5\r\n", "hello"), 400);
}

#[test]
fn content_length_negative() {
    refused(&post("Content-Length: -1\r\n", ""), 400);
}

#[test]
fn content_length_hex() {
    refused(&post("Content-Length: 0x10\r\n", "0123456789abcdef"), 400);
}

#[test]
fn content_length_with_inner_space() {
    refused(&post("Content-Length: 5 5\r\n", "hello"), 400);
}

#[test]
fn content_length_overflow() {
    refused(&post("Content-Length: 99999999999999999999999\r\n", "hello"), 400);
}

#[test]
fn content_length_empty() {
    refused(&post("Content-Length: \r\n", ""), 400);
}

#[test]
fn two_differing_content_lengths() {
    refused(&post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"), 400);
}

#[test]
fn content_length_list_with_differing_values() {
    refused(&post("Content-Length: 5, 6\r\n", "hello!"), 400);
}

#[test]
fn identical_content_lengths_are_accepted() {
    // RFC 9112 §6.3: a list of identical values may be treated as one.
    let s = ServerProc::start(&[]);
    let r = s.request(&post("Content-Length: 5\r\nContent-Length: 5\r\n", "hello"));
    assert_eq!(r.status, 200, "two identical Content-Length headers");
    assert_eq!(r.text(), "hello");
}

#[test]
fn transfer_encoding_gzip_only() {
    refused(&post("Transfer-Encoding: gzip\r\n", "hello"), 400);
}

#[test]
fn transfer_encoding_chunked_then_gzip() {
    refused(&post("Transfer-Encoding: chunked, gzip\r\n", "0\r\n\r\n"), 400);
}

#[test]
fn transfer_encoding_unknown_then_chunked_is_501() {
    refused(&post("Transfer-Encoding: foo, chunked\r\n", "0\r\n\r\n"), 501);
}

#[test]
fn transfer_encoding_unknown_is_501() {
    refused(&post("Transfer-Encoding: foo\r\n", "hello"), 501);
}

#[test]
fn transfer_encoding_chunked_twice() {
    refused(&post("Transfer-Encoding: chunked, chunked\r\n", "0\r\n\r\n"), 400);
}

#[test]
fn transfer_encoding_chunked_twice_in_two_fields() {
    refused(&post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"), 400);
}

#[test]
fn transfer_encoding_in_http10() {
    refused(b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400);
}

// --- Header syntax ------------------------------------------------------------------------

#[test]
fn obs_fold_is_refused() {
    refused(b"GET /plaintext HTTP/1.1\r\nHost: x\r\nX-Long: part one\r\n part two\r\n\r\n", 400);
}

#[test]
fn obs_fold_with_tab_is_refused() {
    refused(b"GET /plaintext HTTP/1.1\r\nHost: x\r\nX-Long: part one\r\n\tpart two\r\n\r\n", 400);
}

#[test]
fn whitespace_before_colon() {
    refused(b"GET /plaintext HTTP/1.1\r\nHost : x\r\n\r\n", 400);
}

#[test]
fn whitespace_before_colon_on_content_length() {
    refused(&post("Content-Length : 5\r\n", "hello"), 400);
}

#[test]
fn nul_in_header_value() {
    refused(b"GET /plaintext HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n", 400);
}

#[test]
fn bare_cr_in_header_value() {
    refused(b"GET /plaintext HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", 400);
}

#[test]
fn del_in_header_value() {
    refused(b"GET /plaintext HTTP/1.1\r\nHost: x\r\nX-A: a\x7fb\r\n\r\n", 400);
}

#[test]
fn header_without_colon() {
    refused(b"GET /plaintext HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n", 400);
}

// --- Chunked body syntax ----------------------------------------------------------------

#[test]
fn chunk_size_not_hex() {
    refused(&post("Transfer-Encoding: chunked\r\n", "zz\r\nhello\r\n0\r\n\r\n"), 400);
}

#[test]
fn chunk_size_overflow() {
    refused(&post("Transfer-Encoding: chunked\r\n", "ffffffffffffffffff\r\nhello\r\n0\r\n\r\n"), 400);
}

#[test]
fn chunk_size_with_sign() {
    refused(&post("Transfer-Encoding: chunked\r\n", "+5\r\nhello\r\n0\r\n\r\n"), 400);
}

#[test]
fn chunk_data_not_followed_by_crlf() {
    refused(&post("Transfer-Encoding: chunked\r\n", "5\r\nhelloXX0\r\n\r\n"), 400);
}

#[test]
fn chunk_size_line_with_bare_lf() {
    refused(&post("Transfer-Encoding: chunked\r\n", "5\nhello\r\n0\r\n\r\n"), 400);
}

#[test]
fn chunked_body_error_arriving_later() {
    // The bad chunk comes after the head, in a later write (the streamed-body path).
    let s = ServerProc::start(&[]);
    let mut c = s.client();
    c.send(&post("Transfer-Encoding: chunked\r\n", ""));
    std::thread::sleep(std::time::Duration::from_millis(100));
    c.send(&cat(&[b"3\r\nabc\r\nzz\r\n", &get("/plaintext")]));
    let r = c.response();
    assert_eq!(r.status, 400, "bad chunk size in a streamed body: {:?}", r.text());
    assert!(r.closes(), "headers {:?}", r.headers);
    assert!(c.expect_closed(std::time::Duration::from_secs(5)));
}

// --- Request line and Host ----------------------------------------------------------------

#[test]
fn http11_without_host() {
    refused(b"GET /plaintext HTTP/1.1\r\n\r\n", 400);
}

#[test]
fn two_host_headers() {
    refused(b"GET /plaintext HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
}

#[test]
fn invalid_method_token() {
    refused(b"G(T /plaintext HTTP/1.1\r\nHost: x\r\n\r\n", 400);
}

#[test]
fn lowercase_http_version_is_refused() {
    refused(b"GET /plaintext http/1.1\r\nHost: x\r\n\r\n", 400);
}

#[test]
fn missing_version() {
    refused(b"GET /plaintext\r\nHost: x\r\n\r\n", 400);
}

#[test]
fn http_1_2_is_505() {
    refused(b"GET / HTTP/1.2\r\nHost: x\r\n\r\n", 505);
}

#[test]
fn http_2_0_is_505() {
    refused(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505);
}

#[test]
fn http2_preface_is_505() {
    refused(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505);
}

#[test]
fn asterisk_with_get_is_refused() {
    refused(b"GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400);
}

#[test]
fn unsupported_expectation_is_417() {
    refused(&post("Expect: something-else\r\nContent-Length: 5\r\n", "hello"), 417);
}
