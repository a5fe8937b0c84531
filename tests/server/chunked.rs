//! Chunked request bodies (extensions, trailers, split arrival) and chunked responses.

use std::time::Duration;

use crate::support::*;

fn chunked_echo_head() -> &'static [u8] {
    b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
}

#[test]
fn chunked_body_with_extensions_and_trailers() {
    let s = ServerProc::start(&[]);
    let body: &[u8] = b"5;name=value\r\nhello\r\n6;a=\"b c\";flag\r\n world\r\nA\r\n0123456789\r\n0;last=1\r\nX-Trailer: yes\r\nX-Other: 2\r\n\r\n";
    let mut c = s.client();
    c.send(&cat(&[chunked_echo_head(), body]));
    let r = c.response();
    assert_eq!(r.status, 200, "chunked echo: {:?}", r.text());
    assert_eq!(r.text(), "hello world0123456789", "decoded chunked body");
    assert_eq!(r.header("content-type"), Some("text/plain"));
    // The trailers were consumed: the connection is at the next request.
    c.send(&get("/plaintext"));
    assert_eq!(c.response().text(), "Hello, World!", "request after a chunked body with trailers");
}

#[test]
fn chunked_body_uppercase_hex_and_empty() {
    let s = ServerProc::start(&[]);
    let r = s.request(&cat(&[chunked_echo_head(), b"0\r\n\r\n"]));
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty(), "empty chunked body echoed as {:?}", r.text());
    let data = "z".repeat(0x1F);
    let r = s.request(&cat(&[chunked_echo_head(), format!("1F\r\n{data}\r\n0\r\n\r\n").as_bytes()]));
    assert_eq!(r.status, 200, "uppercase hex chunk size");
    assert_eq!(r.text(), data);
}

#[test]
fn chunked_body_arriving_in_pieces() {
    let s = ServerProc::start(&[]);
    let mut c = s.client();
    c.send(chunked_echo_head());
    let pieces: [&[u8]; 8] = [
        b"4\r",
        b"\nwiki\r\n",
        b"5;ext",
        b"\r\npedia\r",
        b"\n",
        b"E\r\n in\r\n\r\nchunks.",
        b"\r\n0\r\nTrailer: t\r\n",
        b"\r\n",
    ];
    for p in pieces {
        std::thread::sleep(Duration::from_millis(30));
        c.send(p);
    }
    let r = c.response();
    assert_eq!(r.status, 200, "chunked body in pieces: {:?}", r.text());
    assert_eq!(r.text(), "wikipedia in\r\n\r\nchunks.");
    c.send(&get("/plaintext"));
    assert_eq!(c.response().text(), "Hello, World!");
}

#[test]
fn large_chunked_body_round_trips() {
    let s = ServerProc::start(&[]);
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut raw = chunked_echo_head().to_vec();
    for piece in data.chunks(65_000) {
        raw.extend(format!("{:x}\r\n", piece.len()).into_bytes());
        raw.extend_from_slice(piece);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let mut c = s.client();
    let writer = {
        let mut w = c.stream.try_clone().unwrap();
        std::thread::spawn(move || std::io::Write::write_all(&mut w, &raw).unwrap())
    };
    let r = c.response();
    writer.join().unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body == data, "2 MB chunked echo differs (got {} bytes)", r.body.len());
}

#[test]
fn stream_response_decodes_to_n_times_b() {
    let s = ServerProc::start(&[]);
    for (n, b) in [(1, 1), (3, 10), (100, 1000), (64, 65536)] {
        let r = s.request(&get(&format!("/stream?chunks={n}&size={b}")));
        assert_eq!(r.status, 200, "/stream?chunks={n}&size={b}");
        assert_eq!(r.header("transfer-encoding"), Some("chunked"));
        assert_eq!(r.body.len(), n * b, "/stream?chunks={n}&size={b} decoded length");
        assert!(r.body.iter().all(|&x| x == b'x'), "/stream body content");
    }
}

#[test]
fn stream_with_zero_chunks_is_empty() {
    let s = ServerProc::start(&[]);
    let mut c = s.client();
    c.send(&get("/stream?chunks=0&size=10"));
    let r = c.response();
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    c.send(&get("/plaintext"));
    assert_eq!(c.response().text(), "Hello, World!", "connection usable after an empty stream");
}

#[test]
fn stream_bad_parameters_are_400() {
    let s = ServerProc::start(&[]);
    assert_eq!(s.request(&get("/stream?chunks=abc")).status, 400);
    assert_eq!(s.request(&get("/stream?size=0")).status, 400);
    assert_eq!(s.request(&get("/delay?ms=-1")).status, 400);
}
