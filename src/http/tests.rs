//! Codec unit tests: every smuggling vector and limit from the contract, body decoding in
//! arbitrary splits, and response encoding.

use super::body::{decode_buffered, BodyDecoder, Decoded};
use super::error::ParseError::{self, *};
use super::request::{parse_head, Framing, Limits, Version};
use super::response::{encode_chunk, encode_head, BodyLength, ConnectionHeader};
use bytes::{Bytes, BytesMut};

fn parse(raw: &[u8]) -> Result<Option<super::ParsedHead>, ParseError> {
    parse_head(raw, &Limits::default())
}

fn err(raw: &[u8]) -> ParseError {
    match parse(raw) {
        Err(e) => e,
        Ok(other) => panic!("expected an error for {:?}, got {other:?}", String::from_utf8_lossy(raw)),
    }
}

fn ok(raw: &[u8]) -> super::RequestHead {
    let parsed = parse(raw).expect("valid").expect("complete");
    let len = parsed.len;
    parsed.into_head(Bytes::copy_from_slice(&raw[..len]))
}

#[test]
fn simple_get() {
    let h = ok(b"GET /a/b?x=1&y HTTP/1.1\r\nHost: example\r\nUser-Agent: t\r\n\r\n");
    assert_eq!(h.method(), "GET");
    assert_eq!(h.path(), "/a/b");
    assert_eq!(h.query(), Some("x=1&y"));
    assert_eq!(h.version(), Version::Http11);
    assert_eq!(h.framing(), Framing::None);
    assert!(h.keep_alive());
    assert_eq!(h.header("user-agent"), Some(&b"t"[..]));
    assert_eq!(h.headers().count(), 2);
}

#[test]
fn partial_heads_need_more() {
    let full = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    for i in 0..full.len() {
        assert_eq!(parse(&full[..i]).unwrap().map(|p| p.len), None, "prefix {i}");
    }
    assert_eq!(parse(full).unwrap().unwrap().len, full.len());
}

#[test]
fn leading_empty_lines_are_ignored() {
    let h = ok(b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(h.path(), "/");
}

#[test]
fn keep_alive_rules() {
    assert!(!ok(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").keep_alive());
    assert!(!ok(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Close\r\n\r\n").keep_alive());
    assert!(!ok(b"GET / HTTP/1.0\r\n\r\n").keep_alive());
    assert!(ok(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive());
    assert_eq!(ok(b"GET / HTTP/1.0\r\n\r\n").version(), Version::Http10);
}

#[test]
fn framing_rules() {
    assert_eq!(ok(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n").framing(), Framing::Length(5));
    assert_eq!(ok(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").framing(), Framing::None);
    assert_eq!(
        ok(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n").framing(),
        Framing::Length(5)
    );
    assert_eq!(
        ok(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n").framing(),
        Framing::Length(5)
    );
    assert_eq!(
        ok(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n").framing(),
        Framing::Chunked
    );
    assert_eq!(
        ok(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n").framing(),
        Framing::Chunked
    );
}

#[test]
fn smuggling_vectors_are_refused() {
    let cases: &[(&[u8], ParseError)] = &[
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            ContentLengthWithTransferEncoding,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            ContentLengthWithTransferEncoding,
        ),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n", InvalidContentLength),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", InvalidContentLength),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x10\r\n\r\n", InvalidContentLength),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5 5\r\n\r\n", InvalidContentLength),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            InvalidContentLength,
        ),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551616\r\n\r\n", InvalidContentLength),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            InvalidContentLength,
        ),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\n", InvalidContentLength),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: \r\n\r\n", InvalidContentLength),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1.0\r\n\r\n", InvalidContentLength),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", InvalidTransferEncoding),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", InvalidTransferEncoding),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            InvalidTransferEncoding,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            InvalidTransferEncoding,
        ),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \r\n\r\n", InvalidTransferEncoding),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n", UnsupportedTransferCoding),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: foo, chunked\r\n\r\n", UnsupportedTransferCoding),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            UnsupportedTransferCoding,
        ),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", TransferEncodingInHttp10),
        // obs-fold
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", InvalidHeaderName),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n\tb\r\n\r\n", InvalidHeaderName),
        // whitespace between name and colon
        (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", InvalidHeaderName),
        (b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding\t: chunked\r\n\r\n", InvalidHeaderName),
        // control bytes in values
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", InvalidHeaderValue),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x7fb\r\n\r\n", InvalidHeaderValue),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", InvalidHeaderValue),
        (b"GET / HTTP/1.1\r\n\r\n", MissingHost),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", DuplicateHost),
        (b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", DuplicateHost),
        (b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n", InvalidMethod),
        (b"G\x01T / HTTP/1.1\r\nHost: x\r\n\r\n", InvalidMethod),
        (b"GET / HTTP/1.2\r\nHost: x\r\n\r\n", UnsupportedVersion),
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", UnsupportedVersion),
        (b"GET / HTTP/3\r\nHost: x\r\n\r\n", UnsupportedVersion),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", UnsupportedVersion),
        (b"GET / http/1.1\r\nHost: x\r\n\r\n", MalformedHead),
        (b"GET / HTTP/1.1 x\r\nHost: x\r\n\r\n", MalformedHead),
        (b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", MalformedHead),
        (b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", InvalidTarget),
        (b"GET * HTTP/1.1\r\nHost: x\r\n\r\n", InvalidTarget),
        (b"GET foo HTTP/1.1\r\nHost: x\r\n\r\n", InvalidTarget),
        (b"GET ftp://x/ HTTP/1.1\r\nHost: x\r\n\r\n", InvalidTarget),
        (b"GET /\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n", InvalidTarget),
        (b"GET / HTTP/1.1\r\nHost: x\r\nExpect: something\r\n\r\n", UnsupportedExpectation),
        // A head that is not sound otherwise gets its 400, whatever it expects.
        (b"GET / HTTP/1.1\r\nExpect: something\r\n\r\n", MissingHost),
        (b"POST / HTTP/1.1\r\nExpect: x\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", InvalidContentLength),
        (b"POST / HTTP/1.1\r\nHost: x\r\nExpect: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", ContentLengthWithTransferEncoding),
    ];
    for (raw, want) in cases {
        assert_eq!(err(raw), *want, "for {:?}", String::from_utf8_lossy(raw));
    }
}

#[test]
fn error_statuses() {
    assert_eq!(UnsupportedVersion.status(), 505);
    assert_eq!(UnsupportedTransferCoding.status(), 501);
    assert_eq!(RequestLineTooLong.status(), 414);
    assert_eq!(HeaderFieldTooLarge.status(), 431);
    assert_eq!(TooManyHeaders.status(), 431);
    assert_eq!(HeadersTooLarge.status(), 431);
    assert_eq!(BodyTooLarge.status(), 413);
    assert_eq!(HeadTimeout.status(), 408);
    assert_eq!(ContentLengthWithTransferEncoding.status(), 400);
    assert_eq!(UnsupportedExpectation.status(), 417);
}

#[test]
fn target_forms() {
    let h = ok(b"GET http://example.com/p/q?z=1 HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_eq!((h.path(), h.query()), ("/p/q", Some("z=1")));
    let h = ok(b"GET HTTP://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_eq!(h.path(), "/");
    let h = ok(b"GET https://example.com?x HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_eq!((h.path(), h.query()), ("/", Some("x")));
    let h = ok(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(h.path(), "*");
    let h = ok(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
    assert_eq!(h.path(), "example.com:443");
    assert_eq!(h.authority(), Some("example.com:443"));
    assert_eq!(err(b"GET http:// HTTP/1.1\r\nHost: x\r\n\r\n"), InvalidTarget);
}

#[test]
fn absolute_form_authority_is_checked_and_kept() {
    let h = ok(b"GET http://app.example:8080/p HTTP/1.1\r\nHost: other\r\n\r\n");
    assert_eq!(h.authority(), Some("app.example:8080"));
    let h = ok(b"GET http://[2001:db8::1]:80/p HTTP/1.1\r\nHost: other\r\n\r\n");
    assert_eq!(h.authority(), Some("[2001:db8::1]:80"));
    assert_eq!(ok(b"GET /p HTTP/1.1\r\nHost: h\r\n\r\n").authority(), None);
    // RFC 9110 §4.2.4: no userinfo; RFC 9112 §3.2.2: a host must be there.
    for bad in [
        &b"GET http://u:p@host/ HTTP/1.1\r\nHost: host\r\n\r\n"[..],
        b"GET http://u@host/ HTTP/1.1\r\nHost: host\r\n\r\n",
        b"GET http://:8080/ HTTP/1.1\r\nHost: host\r\n\r\n",
        b"GET http:///p HTTP/1.1\r\nHost: host\r\n\r\n",
        b"GET http://host:80x/ HTTP/1.1\r\nHost: host\r\n\r\n",
        b"GET http://[nothex]/ HTTP/1.1\r\nHost: host\r\n\r\n",
        b"GET http://ho\"st/ HTTP/1.1\r\nHost: host\r\n\r\n",
    ] {
        assert_eq!(err(bad), InvalidTarget, "{:?}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn host_must_be_a_host_and_optional_port() {
    for good in ["example.com", "example.com:8080", "127.0.0.1", "[::1]:80", "xn--bcher-kva.example", ""] {
        let raw = format!("GET / HTTP/1.1\r\nHost: {good}\r\n\r\n");
        ok(raw.as_bytes());
    }
    for bad in
        ["exa mple.com", "example.com/path", "user@example.com", "example.com:80x", "[::1", ":80", "a:1:2"]
    {
        let raw = format!("GET / HTTP/1.1\r\nHost: {bad}\r\n\r\n");
        assert_eq!(err(raw.as_bytes()), InvalidHost, "Host: {bad}");
    }
}

#[test]
fn connect_needs_authority_form() {
    for bad in [
        &b"CONNECT / HTTP/1.1\r\nHost: h\r\n\r\n"[..],
        b"CONNECT /x:443 HTTP/1.1\r\nHost: h\r\n\r\n",
        b"CONNECT example.com HTTP/1.1\r\nHost: h\r\n\r\n",
        b"CONNECT :443 HTTP/1.1\r\nHost: h\r\n\r\n",
        b"CONNECT http://example.com:443 HTTP/1.1\r\nHost: h\r\n\r\n",
        b"CONNECT u@example.com:443 HTTP/1.1\r\nHost: h\r\n\r\n",
    ] {
        assert_eq!(err(bad), InvalidTarget, "{:?}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn a_streamed_body_to_http10_is_never_chunked() {
    // The driver picks the length; the encoder must then write no framing header at all.
    let mut out = BytesMut::new();
    encode_head(&mut out, 200, std::iter::empty(), BodyLength::CloseDelimited, ConnectionHeader::Close, b"d");
    let text = String::from_utf8(out.to_vec()).unwrap().to_ascii_lowercase();
    assert!(!text.contains("transfer-encoding") && !text.contains("content-length"), "{text}");
}

#[test]
fn expect_continue() {
    assert!(ok(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n")
        .expect_continue());
    // HTTP/1.0 clients cannot mean it (RFC 9110 §10.1.1): ignored.
    assert!(!ok(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n").expect_continue());
}

#[test]
fn limits() {
    let limits = Limits::default();
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9000));
    assert_eq!(err(long_target.as_bytes()), RequestLineTooLong);
    // Detected before the line ends, so a client cannot make us buffer without bound.
    let endless = format!("GET /{}", "a".repeat(9000));
    assert_eq!(err(endless.as_bytes()), RequestLineTooLong);
    let just_fits = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(8000));
    assert!(parse(just_fits.as_bytes()).unwrap().is_some());

    let big_field = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "b".repeat(8300));
    assert_eq!(err(big_field.as_bytes()), HeaderFieldTooLarge);
    let big_partial = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}", "b".repeat(8300));
    assert_eq!(err(big_partial.as_bytes()), HeaderFieldTooLarge);

    let mut many = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..100 {
        many.push_str(&format!("X-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert_eq!(err(many.as_bytes()), TooManyHeaders);

    let mut block = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..60 {
        block.push_str(&format!("X-{i}: {}\r\n", "v".repeat(1200)));
    }
    block.push_str("\r\n");
    assert_eq!(err(block.as_bytes()), HeadersTooLarge);

    let too_big = format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", limits.max_body + 1);
    assert_eq!(err(too_big.as_bytes()), BodyTooLarge);
    let fits = format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", limits.max_body);
    assert!(parse(fits.as_bytes()).unwrap().is_some());

    let small = Limits { max_headers: 2, ..Limits::default() };
    assert!(parse_head(b"GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n\r\n", &small).unwrap().is_some());
    assert_eq!(
        parse_head(b"GET / HTTP/1.1\r\nHost: x\r\nA: b\r\nC: d\r\n\r\n", &small).unwrap_err(),
        TooManyHeaders
    );
    let many_allowed = Limits { max_headers: 300, ..Limits::default() };
    assert!(parse_head(many.as_bytes(), &many_allowed).unwrap().is_some());
}

/// Decode `input` fed in pieces of `step` bytes, as a connection would see it.
fn decode_split(
    framing: Framing,
    input: &[u8],
    step: usize,
    max_body: u64,
) -> Result<(Vec<u8>, usize), ParseError> {
    let mut dec = BodyDecoder::new(framing, max_body);
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut used_total = 0;
    let mut out = Vec::new();
    loop {
        match dec.decode(&buf)? {
            Decoded::Data { consumed, range } => {
                out.extend_from_slice(&buf[range]);
                let _ = buf.split_to(consumed);
                used_total += consumed;
            }
            Decoded::NeedMore { consumed } => {
                let _ = buf.split_to(consumed);
                used_total += consumed;
                if fed == input.len() {
                    return Err(IncompleteBody);
                }
                let n = step.min(input.len() - fed);
                buf.extend_from_slice(&input[fed..fed + n]);
                fed += n;
            }
            Decoded::Done { consumed } => return Ok((out, used_total + consumed)),
        }
    }
}

#[test]
fn chunked_bodies_in_every_split() {
    let body = b"5;ext=1;other=\"q\"\r\nhello\r\n6\r\n world\r\n0\r\nTrailer-A: x\r\nB: y\r\n\r\nNEXT";
    let end = body.len() - 4;
    for step in 1..body.len() {
        let (data, used) = decode_split(Framing::Chunked, body, step, 1 << 20).unwrap();
        assert_eq!(data, b"hello world", "step {step}");
        assert_eq!(used, end, "step {step}: the next request must stay in the buffer");
    }
    let (data, used) = decode_buffered(&BodyDecoder::new(Framing::Chunked, 1 << 20), body).unwrap().unwrap();
    assert_eq!((data.as_slice(), used), (&b"hello world"[..], end));
    assert_eq!(decode_buffered(&BodyDecoder::new(Framing::Chunked, 1 << 20), &body[..10]).unwrap(), None);
}

#[test]
fn content_length_bodies() {
    let (data, used) = decode_split(Framing::Length(5), b"helloGET", 2, 100).unwrap();
    assert_eq!((data.as_slice(), used), (&b"hello"[..], 5));
}

#[test]
fn trailer_fields_are_checked_like_header_fields() {
    let limits = Limits { max_header_field: 20, max_headers: 2, max_header_block: 36, ..Limits::default() };
    let decode = |raw: &[u8]| {
        let mut dec = BodyDecoder::with_limits(Framing::Chunked, &limits);
        let mut pos = 0;
        loop {
            match dec.decode(&raw[pos..])? {
                Decoded::Data { consumed, .. } | Decoded::NeedMore { consumed } if consumed > 0 => {
                    pos += consumed
                }
                Decoded::Done { .. } => return Ok(()),
                _ => panic!("incomplete: {:?}", String::from_utf8_lossy(raw)),
            }
        }
    };
    assert_eq!(decode(b"0\r\nA: 1\r\nB: 2\r\n\r\n"), Ok(()));
    let cases: &[(&[u8], ParseError)] = &[
        (b"0\r\nBad Trailer: x\r\n\r\n", InvalidHeaderName),
        (b"0\r\n trailer: obs-fold\r\n\r\n", InvalidHeaderName),
        (b"0\r\nNoColon\r\n\r\n", InvalidHeaderName),
        (b"0\r\nA : 1\r\n\r\n", InvalidHeaderName),
        (b"0\r\nA: x\x01y\r\n\r\n", InvalidHeaderValue),
        (b"0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", TooManyHeaders),
        (b"0\r\nLong: 0123456789abcdef\r\n\r\n", HeaderFieldTooLarge),
        (b"0\r\nA: 0123456789abcd\r\nB: 0123456789abcd\r\n\r\n", HeadersTooLarge),
    ];
    for (raw, want) in cases {
        assert_eq!(decode(raw), Err(*want), "for {:?}", String::from_utf8_lossy(raw));
    }
}

#[test]
fn chunk_extensions_are_bounded_by_the_data_they_frame() {
    // 1,000 one-byte chunks, each with a 4,090-byte extension: refused long before the end.
    let mut raw = Vec::new();
    for _ in 0..1000 {
        raw.extend_from_slice(b"1;");
        raw.extend(std::iter::repeat_n(b'e', 4090));
        raw.extend_from_slice(b"\r\nx\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let mut dec = BodyDecoder::new(Framing::Chunked, 1024);
    let mut pos = 0;
    let err = loop {
        match dec.decode(&raw[pos..]) {
            Ok(Decoded::Data { consumed, .. }) | Ok(Decoded::NeedMore { consumed }) => pos += consumed,
            Ok(Decoded::Done { .. }) => panic!("accepted {} bytes of extensions", raw.len()),
            Err(e) => break e,
        }
    };
    assert_eq!(err, TooMuchFraming);
    assert_eq!(err.status(), 413);
    assert!(pos < 32 * 1024, "read {pos} bytes of framing before refusing");
    // Ordinary small chunks with short extensions, and many tiny chunks, are fine.
    let mut ok_raw = Vec::new();
    for _ in 0..5000 {
        ok_raw.extend_from_slice(b"1;n=v\r\nx\r\n");
    }
    ok_raw.extend_from_slice(b"0\r\n\r\n");
    let (data, _) = decode_buffered(&BodyDecoder::new(Framing::Chunked, 1 << 20), &ok_raw).unwrap().unwrap();
    assert_eq!(data.len(), 5000);
}

#[test]
fn malformed_chunks_are_refused() {
    let cases: &[&[u8]] = &[
        b"zz\r\nhello\r\n0\r\n\r\n",
        b"\r\n",
        b"-5\r\nhello\r\n0\r\n\r\n",
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b"ffffffffffffffffff\r\n",
        b"5\r\nhelloXX0\r\n\r\n",
        b"5\r\nhello\n0\r\n\r\n",
        b"5\nhello\r\n0\r\n\r\n",
        b"5\r\rhello\r\n0\r\n\r\n",
        b"5 x\r\nhello\r\n0\r\n\r\n",
        b"5;a\x00b\r\nhello\r\n0\r\n\r\n",
        b"0\r\nTrailer: x\n\r\n",
        b"0\r\n\n",
    ];
    for raw in cases {
        let r = decode_split(Framing::Chunked, raw, raw.len(), 1 << 20);
        assert_eq!(r, Err(InvalidChunk), "for {:?}", String::from_utf8_lossy(raw));
    }
    // BWS before an extension is allowed.
    assert_eq!(decode_split(Framing::Chunked, b"5 ;x\r\nhello\r\n0\r\n\r\n", 3, 100).unwrap().0, b"hello");
    // 16 hex digits is the most a u64 holds; the size still has to fit the body limit.
    assert_eq!(
        decode_split(Framing::Chunked, b"000000000000005\r\nhello\r\n0\r\n\r\n", 4, 100).unwrap().0,
        b"hello"
    );
}

#[test]
fn chunked_body_limit() {
    assert_eq!(
        decode_split(Framing::Chunked, b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n", 64, 9),
        Err(BodyTooLarge)
    );
    assert_eq!(decode_split(Framing::Chunked, b"fffffffffffffff\r\n", 64, 1 << 20), Err(BodyTooLarge));
    assert!(decode_split(Framing::Chunked, b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n", 64, 10).is_ok());
}

#[test]
fn encodes_responses() {
    let mut out = BytesMut::new();
    let date = b"Mon, 23 Nov 2026 07:00:00 GMT";
    let headers = [("content-type", &b"text/plain"[..]), ("Content-Length", &b"999"[..])];
    encode_head(&mut out, 200, headers.into_iter(), BodyLength::Known(5), ConnectionHeader::Close, date);
    let text = String::from_utf8(out.to_vec()).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(text.contains("content-type: text/plain\r\n"));
    assert!(!text.contains("999"), "handler framing headers are dropped");
    assert!(text.contains("content-length: 5\r\n"));
    assert!(text.contains("connection: close\r\n"));
    assert!(text.ends_with("\r\n\r\n"));

    let mut out = BytesMut::new();
    encode_head(&mut out, 204, std::iter::empty(), BodyLength::Forbidden, ConnectionHeader::Omit, date);
    let text = String::from_utf8(out.to_vec()).unwrap();
    assert!(!text.contains("content-length") && !text.contains("transfer-encoding"));

    let mut out = BytesMut::new();
    encode_chunk(&mut out, b"hello world, this is 31 bytes!!");
    encode_chunk(&mut out, b"");
    assert_eq!(&out[..], b"1f\r\nhello world, this is 31 bytes!!\r\n");
}

/// Feed `raw` one byte per "read"; returns how many full parses ran and the final answer.
/// Whenever `HeadProgress` skips a parse, a parse would have said "incomplete".
fn feed_byte_by_byte(
    raw: &[u8],
    limits: &Limits,
    verify: bool,
) -> (usize, Result<Option<usize>, ParseError>) {
    let mut progress = super::HeadProgress::default();
    let mut parses = 0;
    for end in 1..=raw.len() {
        let buf = &raw[..end];
        if progress.needs_parse(buf, limits) {
            parses += 1;
            match parse_head(buf, limits) {
                Ok(None) => {}
                other => return (parses, other.map(|h| h.map(|h| h.len))),
            }
        } else if verify {
            assert_eq!(parse_head(buf, limits).map(|h| h.is_some()), Ok(false), "skipped a parse at {end}");
        }
    }
    (parses, Ok(None))
}

#[test]
fn a_head_arriving_byte_by_byte_is_parsed_once_per_line() {
    let limits = Limits::default();
    let mut raw = b"GET /p HTTP/1.1\r\nHost: h\r\n".to_vec();
    for i in 0..60 {
        raw.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "v".repeat(1000)).as_bytes());
    }
    raw.extend_from_slice(b"\r\n");
    let (parses, result) = feed_byte_by_byte(&raw, &limits, false);
    assert_eq!(result, Ok(Some(raw.len())));
    assert!(parses <= 64, "{parses} parses for a {}-byte head of 63 lines", raw.len());
    // Limits still bite while a line is arriving, whichever line it is.
    let long_line = [b"GET /".as_slice(), &[b'a'; 9000]].concat();
    assert_eq!(feed_byte_by_byte(&long_line, &limits, false).1, Err(RequestLineTooLong));
    let long_field = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; 9000]].concat();
    assert_eq!(feed_byte_by_byte(&long_field, &limits, false).1, Err(HeaderFieldTooLarge));
    let tight = Limits { max_request_line: 64, max_header_field: 16 * 1024, ..Limits::default() };
    let (_, r) = feed_byte_by_byte(&[b"\r\n\r\nGET /".as_slice(), &[b'a'; 100]].concat(), &tight, true);
    assert_eq!(r, Err(RequestLineTooLong));
    // A skipped parse never hides an answer: every prefix of a small head, checked.
    let small = b"\r\nPOST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nA: b\r\n\r\n";
    let small_limits = Limits { max_request_line: 20, max_header_field: 12, ..Limits::default() };
    assert_eq!(feed_byte_by_byte(small, &small_limits, true).1, Err(HeaderFieldTooLarge));
    assert_eq!(feed_byte_by_byte(small, &limits, true).1, Ok(Some(small.len())));
}

#[test]
fn a_refused_head_still_has_its_request_line_for_the_log() {
    let limits = Limits::default();
    let h = super::refused_request_line(b"POST /up?x=1 HTTP/1.1\r\nContent-Length: 99999999999\r\n", &limits)
        .expect("line");
    assert_eq!((h.method(), h.target(), h.path(), h.query()), ("POST", "/up?x=1", "/up", Some("x=1")));
    assert_eq!(h.version(), Version::Http11);
    assert_eq!(h.headers().count(), 0);
    assert!(super::refused_request_line(b"GET /partial", &limits).is_none());
    assert!(super::refused_request_line(b"G\x01T / HTTP/1.1\r\n", &limits).is_none());
    assert!(super::refused_request_line(b"GET / HTTP/2.0\r\n", &limits).is_none());
    assert!(super::refused_request_line(b"GET /a b HTTP/1.1\r\n", &limits).is_none());
}

#[test]
fn te_trailers_is_read_with_the_head() {
    assert!(ok(b"GET / HTTP/1.1\r\nHost: h\r\nTE: trailers\r\n\r\n").accepts_trailers());
    assert!(ok(b"GET / HTTP/1.1\r\nHost: h\r\nte: gzip, Trailers;q=1\r\n\r\n").accepts_trailers());
    assert!(!ok(b"GET / HTTP/1.1\r\nHost: h\r\nTE: gzip\r\n\r\n").accepts_trailers());
    assert!(!ok(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").accepts_trailers());
}

#[test]
fn forwarding_fields_are_noted() {
    assert!(ok(b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n").has_forwarding_fields());
    assert!(ok(b"GET / HTTP/1.1\r\nHost: h\r\nx-forwarded-proto: https\r\n\r\n").has_forwarding_fields());
    assert!(ok(b"GET / HTTP/1.1\r\nHost: h\r\nFORWARDED: for=1.2.3.4\r\n\r\n").has_forwarding_fields());
    assert!(!ok(b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded: x\r\nForwarded-For: y\r\n\r\n")
        .has_forwarding_fields());
}

#[test]
fn server_owned_names_in_any_case() {
    use crate::http::response::is_server_owned;
    for name in ["Content-Length", "transfer-encoding", "CONNECTION", "Date", "keep-alive"] {
        assert!(is_server_owned(name), "{name}");
    }
    for name in ["content-type", "dates", "connections", "x", ""] {
        assert!(!is_server_owned(name), "{name}");
    }
}

#[test]
fn the_tchar_table_is_rfc_9110s_tchar() {
    for b in 0..=255u8 {
        let tchar = b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        assert_eq!(super::is_tchar(b), tchar, "byte {b}");
    }
}

/// The fields a head gives, read again from its bytes, are the ones httparse found, in
/// order, with the same values (whitespace around a value, bare LF line endings, empty
/// values, colons and tabs inside values), and their count is `header_count`.
#[test]
fn fields_read_again_match_httparse() {
    let mut heads: Vec<Vec<u8>> = [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"GET / HTTP/1.0\r\n\r\n",
        b"GET / HTTP/1.0\n\n",
        b"GET / HTTP/1.1\nHost: x\n\n",
        b"\r\n\nGET / HTTP/1.1\r\nHost:x\r\nA:\r\nB: \t \r\nC:\tv \t\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a:80\r\nX-Y: a: b ,\tc\r\nZ: \xff\xfe v\r\n\n",
        b"POST /p?q HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nA: 1\nB: 2\r\n\r\nabc",
    ]
    .iter()
    .map(|h| h.to_vec())
    .collect();
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/head");
    for entry in std::fs::read_dir(&corpus).expect("the head corpus") {
        heads.push(std::fs::read(entry.expect("entry").path()).expect("a corpus file"));
    }
    let mut compared = 0;
    for raw in &heads {
        let Ok(Some(parsed)) = parse(raw) else { continue };
        let len = parsed.len;
        let head = parsed.into_head(Bytes::copy_from_slice(&raw[..len]));
        let mut slots = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut slots);
        assert!(req.parse(raw).expect("httparse accepts it").is_complete());
        let expected: Vec<(&str, &[u8])> = req.headers.iter().map(|h| (h.name, h.value)).collect();
        let got: Vec<(&str, &[u8])> = head.headers().collect();
        assert_eq!(got, expected, "fields of {:?}", String::from_utf8_lossy(raw));
        assert_eq!(head.header_count(), expected.len());
        compared += 1;
    }
    assert!(compared > 7, "only {compared} heads compared");
}

/// The request line's limit holds the same whether the head is complete, still arriving, or
/// malformed further on; empty lines before it count towards it.
#[test]
fn request_line_limit_on_every_path() {
    let limits = Limits { max_request_line: 16, ..Limits::default() };
    let fits = b"GET /12 HTTP/1.1\r\nHost: x\r\n\r\n"; // 16 bytes before the CR
    assert!(parse_head(fits, &limits).unwrap().is_some());
    let long = b"GET /123 HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(parse_head(long, &limits).unwrap_err(), RequestLineTooLong);
    assert_eq!(parse_head(&long[..20], &limits).unwrap_err(), RequestLineTooLong);
    assert_eq!(
        parse_head(b"GET /123 HTTP/1.1\r\nHo st: x\r\n\r\n", &limits).unwrap_err(),
        RequestLineTooLong
    );
    assert_eq!(
        parse_head(b"\r\nGET /12 HTTP/1.1\r\nHost: x\r\n\r\n", &limits).unwrap_err(),
        RequestLineTooLong
    );
    assert!(parse_head(b"GET /12 HTTP/1.1\nHost: x\n\n", &limits).unwrap().is_some());
}

/// The end of a head (framing field, connection field, empty line) is put together apart
/// from the rest: every combination, the longest content length included, comes out whole
/// and in order, also into a buffer with no spare room.
#[test]
fn encodes_every_head_ending() {
    let date = b"Mon, 23 Nov 2026 07:00:00 GMT";
    let lengths = [
        (BodyLength::Known(0), "content-length: 0\r\n"),
        (BodyLength::Known(13), "content-length: 13\r\n"),
        (BodyLength::Known(u64::MAX), "content-length: 18446744073709551615\r\n"),
        (BodyLength::Chunked, "transfer-encoding: chunked\r\n"),
        (BodyLength::Forbidden, ""),
        (BodyLength::CloseDelimited, ""),
    ];
    let connections = [
        (ConnectionHeader::Omit, ""),
        (ConnectionHeader::KeepAlive, "connection: keep-alive\r\n"),
        (ConnectionHeader::Close, "connection: close\r\n"),
        (ConnectionHeader::Upgrade, "connection: upgrade\r\n"),
    ];
    for (length, framing) in lengths {
        for (connection, conn) in connections {
            for status in [200, 404] {
                let mut out = BytesMut::new();
                encode_head(&mut out, status, [("a", &b"b"[..])].into_iter(), length, connection, date);
                let line = if status == 200 { "HTTP/1.1 200 OK" } else { "HTTP/1.1 404 Not Found" };
                let want =
                    format!("{line}\r\ndate: Mon, 23 Nov 2026 07:00:00 GMT\r\na: b\r\n{framing}{conn}\r\n");
                assert_eq!(String::from_utf8(out.to_vec()).unwrap(), want);
            }
        }
    }
}

/// The one-pass parser of the usual head gives exactly what httparse's path gives for every
/// head it accepts (and it accepts the usual ones): over the fuzz corpus and hand-made heads,
/// each with every prefix and every byte replaced by one of the bytes that matter to the
/// grammar, under the default limits and under tight ones.
#[test]
fn one_pass_agrees_with_httparse() {
    use super::request::{one_pass, parse_head_httparse};
    let mut heads: Vec<Vec<u8>> = [
        &b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"GET /a/b?x=1&y?z HTTP/1.1\r\nHost: example:80\r\nUser-Agent: t\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
        b"GET / HTTP/1.0\nConnection: keep-alive\n\n",
        b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nA: 1\nB: \t2 \t\r\n\r\nabc",
        b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTE: trailers\r\n\r\n",
        b"PUT /p HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n",
        b"GET http://a.example:8080/p?q HTTP/1.1\r\nHost: a.example\r\n\r\n",
        b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: [::1]:80\r\nX-Forwarded-For: 1.2.3.4\r\nZ: \xff v\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nA:\r\nB: \r\nConnection: close\r\n\r\n",
        b"GET /a-rather-long/path/of/many/words?and=a&query=string&too HTTP/1.1\r\n\
          Host: www.example.com:8080\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101\r\n\
          Accept: text/html,application/xhtml+xml;q=0.9,*/*;q=0.8\r\n\r\n",
    ]
    .iter()
    .map(|h| h.to_vec())
    .collect();
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/head");
    for entry in std::fs::read_dir(&corpus).expect("the head corpus") {
        heads.push(std::fs::read(entry.expect("entry").path()).expect("a corpus file"));
    }
    let limit_sets = [
        Limits::default(),
        Limits {
            max_request_line: 20,
            max_header_field: 12,
            max_header_block: 40,
            max_headers: 2,
            max_body: 5,
        },
    ];
    let (mut accepted, mut compared) = (0, 0);
    let mut check = |raw: &[u8]| {
        for limits in &limit_sets {
            compared += 1;
            if let Some(head) = one_pass::parse(raw, limits) {
                accepted += 1;
                assert_eq!(
                    parse_head_httparse(raw, limits),
                    Ok(Some(head)),
                    "{:?} under {limits:?}",
                    String::from_utf8_lossy(raw)
                );
            }
        }
    };
    for raw in &heads {
        let raw = &raw[..raw.len().min(512)];
        for end in 0..=raw.len() {
            check(&raw[..end]);
        }
        let mut mutated = raw.to_vec();
        for at in 0..raw.len() {
            for b in
                [b' ', b'\t', b'\r', b'\n', 0, 0x1f, b'!', b'~', 0x7f, 0x80, 0xff, b':', b'?', b'/', b'A']
            {
                mutated[at] = b;
                check(&mutated);
            }
            mutated[at] = raw[at];
        }
    }
    assert!(accepted > compared / 20, "the one-pass parser took only {accepted} of {compared} heads");
}

/// A head encoded with the date cache (a `200`'s first two lines in one copy) is the head
/// `encode_head` makes with the same date, for every status kind, length and connection.
#[test]
fn encodes_the_same_head_with_the_date_cache() {
    use super::response::encode_head_dated;
    let cache = super::DateCache::new();
    assert_eq!(cache.as_bytes().len(), 29);
    for status in [200, 204, 404, 101, 503] {
        for length in
            [BodyLength::Known(0), BodyLength::Known(123_456), BodyLength::Chunked, BodyLength::Forbidden]
        {
            for connection in [ConnectionHeader::Omit, ConnectionHeader::Close, ConnectionHeader::KeepAlive] {
                let fields =
                    [("content-type", &b"text/plain"[..]), ("x-a-longer-name-than-16", b"v"), ("ab", b"")];
                let (mut plain, mut cached) = (BytesMut::new(), BytesMut::new());
                encode_head(&mut plain, status, fields.into_iter(), length, connection, cache.as_bytes());
                encode_head_dated(&mut cached, status, fields.into_iter(), length, connection, &cache);
                assert_eq!(cached, plain);
            }
        }
    }
}

/// The framing fields are found in any case, and only by their exact names: a byte that
/// differs only in its case bit from a letter of the name is that letter in the other case,
/// and `_` or other token bytes in place of `-` make another name.
#[test]
fn field_names_match_in_any_case_and_only_exactly() {
    let head = |fields: &str| format!("POST / HTTP/1.1\r\n{fields}\r\n\r\n").into_bytes();
    assert_eq!(ok(&head("hOsT: x\r\ncOnTeNt-LeNgTh: 5")).framing(), Framing::Length(5));
    assert_eq!(ok(&head("HOST: x\r\nTRANSFER-ENCODING: CHUNKED")).framing(), Framing::Chunked);
    assert_eq!(ok(&head("Host: x\r\nContent_Length: 5")).framing(), Framing::None);
    assert_eq!(ok(&head("Host: x\r\nContent-Lengtj: 5")).framing(), Framing::None);
    assert_eq!(ok(&head("Host: x\r\nTransfer~Encoding: chunked")).framing(), Framing::None);
    assert_eq!(err(&head("Hosu: x")), MissingHost);
    assert_eq!(err(&head("Host: x\r\nhost: y")), DuplicateHost);
    assert!(!ok(&head("Host: x\r\nConnection: CLOSE")).keep_alive());
    assert!(ok(&head("Host: x\r\nConnectioN: keep-alive")).keep_alive());
    assert_eq!(err(&head("Host: x\r\nEXPECT: nothing")), UnsupportedExpectation);
    assert!(ok(&head("Host: x\r\nx-FORWARDED-for: 1.2.3.4")).has_forwarding_fields());
    assert!(!ok(&head("Host: x\r\nx_forwarded-for: 1.2.3.4")).has_forwarding_fields());
}
