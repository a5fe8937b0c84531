//! Property tests of the codec: what a client encodes, `parse_head` and the body decoder
//! recover exactly; what the response encoder writes parses back to what was encoded; and
//! chunked bodies survive encoding and decoding in any split. Case counts are modest so the
//! whole file runs in a few seconds.

use bytes::BytesMut;
use percore::http::response::{
    encode_chunk, encode_chunk_size, encode_head, is_server_owned, reason, status_allows_body, BodyLength,
    ConnectionHeader, LAST_CHUNK,
};
use percore::http::{parse_head, BodyDecoder, Decoded, Framing, Limits, ParseError, Version};
use proptest::prelude::*;

const CASES: u32 = 256;
const DATE: &[u8] = b"Mon, 23 Nov 2026 07:00:00 GMT";

// --- helpers ------------------------------------------------------------------------------

/// Decode a body from `input` (which may hold more after it) fed in pieces of the given
/// sizes (cycled); the body and the input bytes it took.
fn decode(framing: Framing, input: &[u8], pieces: &[usize]) -> Result<(Vec<u8>, usize), ParseError> {
    let mut dec = BodyDecoder::new(framing, u64::MAX);
    let mut buf: Vec<u8> = Vec::new();
    let (mut fed, mut used, mut k) = (0, 0, 0);
    let mut out = Vec::new();
    loop {
        match dec.decode(&buf)? {
            Decoded::Data { consumed, range } => {
                out.extend_from_slice(&buf[range]);
                buf.drain(..consumed);
                used += consumed;
            }
            Decoded::NeedMore { consumed } => {
                buf.drain(..consumed);
                used += consumed;
                if fed == input.len() {
                    return Err(ParseError::IncompleteBody);
                }
                let n = pieces.get(k % pieces.len().max(1)).copied().unwrap_or(1).clamp(1, input.len() - fed);
                k += 1;
                buf.extend_from_slice(&input[fed..fed + n]);
                fed += n;
            }
            Decoded::Done { consumed } => return Ok((out, used + consumed)),
        }
    }
}

/// A header name in a random mix of cases.
fn cased(name: &str, mask: u32) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| if mask >> (i % 32) & 1 == 1 { c.to_ascii_uppercase() } else { c })
        .collect()
}

/// Chunked encoding written by hand, as varied clients write it: sizes in either hex case,
/// optional extensions, optional trailer fields.
fn encode_chunked_request(
    body: &[u8],
    sizes: &[usize],
    upper: bool,
    ext: bool,
    trailers: &[(String, String)],
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut k = 0;
    while pos < body.len() {
        let n = sizes.get(k % sizes.len().max(1)).copied().unwrap_or(1).clamp(1, body.len() - pos);
        k += 1;
        let size = if upper { format!("{n:X}") } else { format!("{n:x}") };
        out.extend_from_slice(size.as_bytes());
        if ext && k % 2 == 1 {
            out.extend_from_slice(b";name=\"v a\";flag");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&body[pos..pos + n]);
        out.extend_from_slice(b"\r\n");
        pos += n;
    }
    out.extend_from_slice(b"0\r\n");
    for (n, v) in trailers {
        out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

// --- strategies ----------------------------------------------------------------------------

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}"
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("GET".to_string()),
        Just("POST".to_string()),
        Just("PUT".to_string()),
        Just("DELETE".to_string()),
        Just("PATCH".to_string()),
        Just("OPTIONS".to_string()),
        // Any other token, but not one with a meaning for the target form.
        token().prop_filter("plain method", |m| m != "CONNECT"),
    ]
}

/// A header field the codec gives no meaning to.
fn plain_header() -> impl Strategy<Value = (String, String)> {
    let reserved = ["host", "content-length", "transfer-encoding", "connection", "expect"];
    (
        token()
            .prop_filter("no framing header", move |n| !reserved.iter().any(|r| n.eq_ignore_ascii_case(r))),
        // Visible ASCII with inner spaces; OWS at the ends is not part of a value.
        "[!-~]([ !-~]{0,30}[!-~])?|",
    )
}

#[derive(Debug, Clone)]
enum BodyKind {
    None,
    Length,
    Chunked { sizes: Vec<usize>, upper: bool, ext: bool, trailers: Vec<(String, String)> },
}

#[derive(Debug, Clone)]
struct Req {
    method: String,
    absolute: bool,
    path: String,
    query: Option<String>,
    http10: bool,
    close: bool,
    expect: bool,
    headers: Vec<(String, String)>,
    host_case: u32,
    body: Vec<u8>,
    kind: BodyKind,
    cl_case: u32,
}

fn request() -> impl Strategy<Value = Req> {
    let body_kind = prop_oneof![
        Just(BodyKind::None),
        Just(BodyKind::Length),
        (
            prop::collection::vec(1usize..300, 1..6),
            any::<bool>(),
            any::<bool>(),
            prop::collection::vec(plain_header(), 0..3)
        )
            .prop_map(|(sizes, upper, ext, trailers)| BodyKind::Chunked {
                sizes,
                upper,
                ext,
                trailers
            }),
    ];
    (
        (
            method(),
            any::<bool>(),
            "(/[A-Za-z0-9._~!$&'()*+,;=:@%-]{0,8}){1,4}",
            proptest::option::of("[A-Za-z0-9=&/?._~%+-]{0,20}"),
        ),
        (any::<bool>(), any::<bool>(), any::<bool>()),
        prop::collection::vec(plain_header(), 0..8),
        any::<u32>(),
        prop::collection::vec(any::<u8>(), 0..1500),
        body_kind,
        any::<u32>(),
    )
        .prop_map(
            |(
                (method, absolute, path, query),
                (http10, close, expect),
                headers,
                host_case,
                body,
                kind,
                cl_case,
            )| {
                // HTTP/1.0 has no chunked coding.
                let kind = match kind {
                    BodyKind::Chunked { .. } if http10 => BodyKind::Length,
                    k => k,
                };
                let body = if matches!(kind, BodyKind::None) { Vec::new() } else { body };
                Req {
                    method,
                    absolute,
                    path,
                    query,
                    http10,
                    close,
                    expect,
                    headers,
                    host_case,
                    body,
                    kind,
                    cl_case,
                }
            },
        )
}

impl Req {
    fn target(&self) -> String {
        let mut t =
            if self.absolute { format!("http://example.com{}", self.path) } else { self.path.clone() };
        if let Some(q) = &self.query {
            t.push('?');
            t.push_str(q);
        }
        t
    }

    fn encode(&self) -> Vec<u8> {
        let version = if self.http10 { "HTTP/1.0" } else { "HTTP/1.1" };
        let mut head = format!("{} {} {version}\r\n", self.method, self.target());
        let mut special: Vec<(String, String)> = Vec::new();
        if !self.http10 || self.host_case % 2 == 0 {
            special.push((cased("host", self.host_case), "example.com".into()));
        }
        if self.close {
            special.push(("Connection".into(), "close".into()));
        } else if self.http10 {
            special.push(("Connection".into(), "keep-alive".into()));
        }
        if self.expect {
            special.push(("Expect".into(), "100-continue".into()));
        }
        match &self.kind {
            BodyKind::None => {}
            BodyKind::Length => {
                special.push((cased("content-length", self.cl_case), self.body.len().to_string()))
            }
            BodyKind::Chunked { .. } => {
                special.push((cased("transfer-encoding", self.cl_case), "chunked".into()))
            }
        }
        // The fields with a meaning go anywhere among the plain ones (whose order stays).
        let mut fields: Vec<(String, String)> = self.headers.clone();
        for (i, f) in special.into_iter().enumerate() {
            let at = (self.cl_case as usize >> (4 * i)) % (fields.len() + 1);
            fields.insert(at, f);
        }
        for (n, v) in &fields {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        match &self.kind {
            BodyKind::None => {}
            BodyKind::Length => out.extend_from_slice(&self.body),
            BodyKind::Chunked { sizes, upper, ext, trailers } => {
                out.extend(encode_chunked_request(&self.body, sizes, *upper, *ext, trailers))
            }
        }
        out
    }

    fn framing(&self) -> Framing {
        match self.kind {
            BodyKind::None => Framing::None,
            BodyKind::Length if self.body.is_empty() => Framing::None,
            BodyKind::Length => Framing::Length(self.body.len() as u64),
            BodyKind::Chunked { .. } => Framing::Chunked,
        }
    }
}

// --- properties ----------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() })]

    /// A request encoded as a client would, followed by the next pipelined request, parses
    /// back to exactly what was encoded, and its body decodes (in random splits) to exactly
    /// the body, leaving the next request in place.
    #[test]
    fn requests_round_trip(req in request(), pieces in prop::collection::vec(1usize..64, 1..8)) {
        let wire = req.encode();
        let next = b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut input = wire.clone();
        input.extend_from_slice(next);

        let parsed = parse_head(&input, &Limits::default()).expect("valid request").expect("complete head");
        let len = parsed.len;
        let head = parsed.into_head(bytes::Bytes::copy_from_slice(&input[..len]));
        prop_assert_eq!(head.method(), req.method.as_str());
        prop_assert_eq!(head.target(), req.target());
        prop_assert_eq!(head.path(), req.path.as_str());
        prop_assert_eq!(head.query(), req.query.as_deref());
        prop_assert_eq!(head.version(), if req.http10 { Version::Http10 } else { Version::Http11 });
        prop_assert_eq!(head.framing(), req.framing());
        prop_assert_eq!(head.keep_alive(), !req.close);
        prop_assert_eq!(head.expect_continue(), req.expect && !req.http10);
        // Every plain header, in order, names as sent.
        let plain: Vec<(String, Vec<u8>)> = head
            .headers()
            .filter(|(n, _)| req.headers.iter().any(|(m, _)| m == n))
            .map(|(n, v)| (n.to_string(), v.to_vec()))
            .collect();
        let want: Vec<(String, Vec<u8>)> = req.headers.iter().map(|(n, v)| (n.clone(), v.as_bytes().to_vec())).collect();
        prop_assert_eq!(plain, want);
        for (n, v) in &req.headers {
            prop_assert_eq!(head.header(&n.to_ascii_uppercase()).is_some(), true, "lookup of {} = {}", n, v);
        }

        let rest = &input[len..];
        let (body, used) = decode(head.framing(), rest, &pieces).expect("body decodes");
        prop_assert_eq!(&body, &req.body);
        prop_assert_eq!(&rest[used..], &next[..], "the next request stays in the buffer");
    }

    /// What the response encoder writes parses back (httparse as the client) to the status,
    /// the handler's headers (framing headers from the handler dropped), the server's own
    /// framing and connection headers, and the body.
    #[test]
    fn responses_round_trip(
        status in prop_oneof![Just(200u16), Just(201), Just(204), Just(304), Just(400), Just(404), Just(418), Just(500), Just(503), 200u16..600],
        headers in prop::collection::vec(plain_header(), 0..8),
        sneaky in prop::collection::vec(prop_oneof![Just("Content-Length"), Just("transfer-encoding"), Just("Connection"), Just("Date"), Just("keep-alive")], 0..3),
        body in prop::collection::vec(any::<u8>(), 0..3000),
        chunked in any::<bool>(),
        conn in prop_oneof![
            Just(ConnectionHeader::Omit),
            Just(ConnectionHeader::KeepAlive),
            Just(ConnectionHeader::Close),
            Just(ConnectionHeader::Upgrade)
        ],
        pieces in prop::collection::vec(0usize..700, 1..6),
    ) {
        let allows = status_allows_body(status);
        let length = match (allows, chunked) {
            (false, _) => BodyLength::Forbidden,
            (true, true) => BodyLength::Chunked,
            (true, false) => BodyLength::Known(body.len() as u64),
        };
        let mut all: Vec<(String, String)> = headers.clone();
        for s in &sneaky {
            all.push((s.to_string(), "999".to_string()));
        }
        let mut out = BytesMut::new();
        encode_head(&mut out, status, all.iter().map(|(n, v)| (n.as_str(), v.as_bytes())), length, conn, DATE);
        let head_len = out.len();
        match length {
            BodyLength::Known(_) => out.extend_from_slice(&body),
            BodyLength::Chunked => {
                let mut pos = 0;
                let mut k = 0;
                while pos < body.len() {
                    // Sizes of 0 included: an empty chunk must write nothing.
                    let n = pieces[k % pieces.len()].min(body.len() - pos);
                    k += 1;
                    encode_chunk(&mut out, &body[pos..pos + n]);
                    pos += n;
                    if k > 10_000 { break; }
                }
                if pos < body.len() {
                    encode_chunk(&mut out, &body[pos..]);
                }
                out.extend_from_slice(LAST_CHUNK);
            }
            _ => {}
        }

        let mut slots = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut slots);
        let parsed = resp.parse(&out).expect("valid response head");
        prop_assert_eq!(parsed, httparse::Status::Complete(head_len));
        prop_assert_eq!(resp.version, Some(1));
        prop_assert_eq!(resp.code, Some(status));
        prop_assert_eq!(resp.reason, Some(reason(status)));
        let got: Vec<(String, Vec<u8>)> = resp.headers.iter().map(|h| (h.name.to_string(), h.value.to_vec())).collect();
        let named = |name: &str| got.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone()).collect::<Vec<_>>();
        prop_assert_eq!(named("date"), vec![DATE.to_vec()]);
        let plain: Vec<(String, Vec<u8>)> = got.iter().filter(|(n, _)| !is_server_owned(n)).cloned().collect();
        let want: Vec<(String, Vec<u8>)> = headers.iter().filter(|(n, _)| !is_server_owned(n)).map(|(n, v)| (n.clone(), v.as_bytes().to_vec())).collect();
        prop_assert_eq!(plain, want);
        let connection = named("connection");
        match conn {
            ConnectionHeader::Omit => prop_assert!(connection.is_empty()),
            ConnectionHeader::KeepAlive => prop_assert_eq!(connection, vec![b"keep-alive".to_vec()]),
            ConnectionHeader::Close => prop_assert_eq!(connection, vec![b"close".to_vec()]),
            ConnectionHeader::Upgrade => prop_assert_eq!(connection, vec![b"upgrade".to_vec()]),
        }
        let (cl, te) = (named("content-length"), named("transfer-encoding"));
        let rest = &out[head_len..];
        match length {
            BodyLength::Forbidden => {
                prop_assert!(cl.is_empty() && te.is_empty());
                prop_assert!(rest.is_empty());
            }
            BodyLength::Known(n) => {
                prop_assert_eq!(cl, vec![n.to_string().into_bytes()]);
                prop_assert!(te.is_empty());
                prop_assert_eq!(rest, &body[..]);
            }
            BodyLength::Chunked => {
                prop_assert_eq!(te, vec![b"chunked".to_vec()]);
                prop_assert!(cl.is_empty());
                let (decoded, used) = decode(Framing::Chunked, rest, &[rest.len()]).expect("chunked body decodes");
                prop_assert_eq!(decoded, body);
                prop_assert_eq!(used, rest.len());
            }
            BodyLength::CloseDelimited => unreachable!(),
        }
    }

    /// Chunked encoding by the response encoder, decoded by the request decoder in random
    /// splits, gives the body back and stops exactly at its end.
    #[test]
    fn chunked_round_trip(
        body in prop::collection::vec(any::<u8>(), 0..4096),
        sizes in prop::collection::vec(1usize..2048, 1..10),
        split_by_size_line in any::<bool>(),
        pieces in prop::collection::vec(1usize..100, 1..10),
    ) {
        let mut wire = BytesMut::new();
        let mut pos = 0;
        let mut k = 0;
        while pos < body.len() {
            let n = sizes[k % sizes.len()].min(body.len() - pos);
            k += 1;
            if split_by_size_line {
                // The streaming path: size line, data and CRLF written separately.
                encode_chunk_size(&mut wire, n);
                wire.extend_from_slice(&body[pos..pos + n]);
                wire.extend_from_slice(b"\r\n");
            } else {
                encode_chunk(&mut wire, &body[pos..pos + n]);
            }
            pos += n;
        }
        wire.extend_from_slice(LAST_CHUNK);
        let end = wire.len();
        wire.extend_from_slice(b"GET / HTTP/1.1\r\n");

        let (whole, used) = decode(Framing::Chunked, &wire, &[wire.len()]).expect("decodes in one piece");
        prop_assert_eq!(&whole, &body);
        prop_assert_eq!(used, end);
        let (split, used) = decode(Framing::Chunked, &wire, &pieces).expect("decodes in pieces");
        prop_assert_eq!(&split, &body);
        prop_assert_eq!(used, end);
        let (bytewise, used) = decode(Framing::Chunked, &wire, &[1]).expect("decodes byte by byte");
        prop_assert_eq!(&bytewise, &body);
        prop_assert_eq!(used, end);

        // Cut anywhere before the end, the body is incomplete, never an error or a short body.
        let cut = pieces[0] * 37 % end.max(1);
        prop_assert_eq!(decode(Framing::Chunked, &wire[..cut], &pieces), Err(ParseError::IncompleteBody));
    }

    /// Content-Length bodies: exactly n bytes, in any split, the rest left alone.
    #[test]
    fn content_length_round_trip(
        body in prop::collection::vec(any::<u8>(), 1..3000),
        trailing in prop::collection::vec(any::<u8>(), 0..50),
        pieces in prop::collection::vec(1usize..500, 1..6),
    ) {
        let mut wire = body.clone();
        wire.extend_from_slice(&trailing);
        let (got, used) = decode(Framing::Length(body.len() as u64), &wire, &pieces).expect("decodes");
        prop_assert_eq!(got, body.clone());
        prop_assert_eq!(used, body.len());
    }
}
