//! The checking logic of the fuzz targets, shared by the libFuzzer targets (`fuzz/fuzz_targets/`)
//! and by `tests/fuzz_corpus.rs`, which runs it over the committed corpus on stable Rust.
//!
//! It needs only `percore`, `bytes` and `futures-core` (dependencies of `percore` itself), so
//! the test can include this file with `#[path]` and nothing about libFuzzer reaches the main
//! crate. Every `check_*` function panics when an invariant does not hold; a panic is what
//! libFuzzer reports as a crash.
//!
//! Inputs are raw bytes as a client would send them (no control prefix), so corpus files are
//! readable HTTP. What varies besides the bytes (limits, read splits) is derived from a hash
//! of the input, so every failure reproduces from the input file alone.

#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use percore::conn::DriverConfig;
use percore::http::body::decode_buffered;
use percore::http::proxy::{
    forwarded, parse_proxy_header, ForwardedHeaders, ForwardedRules, ProxyHeader, ProxyProtocol,
    TrustedProxies,
};
use percore::http::{parse_head, BodyDecoder, Decoded, Framing, Limits, ParseError, Version};
use percore::testing::{run_connection, Transcript};
use percore::{Handler, Request, RequestBody, Response, ResponseBody, Router};

// --- deterministic variation ----------------------------------------------------------------

/// FNV-1a: a stable hash of the input, the seed for everything the input does not spell out.
pub fn hash(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// xorshift64*: small, deterministic, good enough to pick split points.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `1..=max`.
    pub fn size(&mut self, max: usize) -> usize {
        1 + (self.next() % max.max(1) as u64) as usize
    }
}

/// `data` cut into pieces of random sizes (mostly small, sometimes large), in order.
pub fn random_split(data: &[u8], seed: u64) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let max = if rng.next() % 4 == 0 { 4096 } else { 16 };
        let n = rng.size(max).min(data.len() - pos);
        out.push(data[pos..pos + n].to_vec());
        pos += n;
    }
    out
}

/// The limits the targets try: the defaults, and small ones that short inputs can cross.
pub fn limit_sets() -> [Limits; 2] {
    [Limits::default(), small_limits()]
}

pub fn small_limits() -> Limits {
    Limits { max_request_line: 64, max_header_field: 64, max_header_block: 256, max_headers: 4, max_body: 32 }
}

/// The statuses a refused request may get (see `ParseError::status`).
pub const ERROR_STATUSES: [u16; 8] = [400, 408, 413, 414, 417, 431, 501, 505];

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn show(data: &[u8]) -> String {
    let mut s = String::new();
    for &b in data.iter().take(600) {
        match b {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    if data.len() > 600 {
        s.push_str(&format!("... ({} bytes)", data.len()));
    }
    s
}

// --- allocation accounting ------------------------------------------------------------------

/// A global allocator that counts the live bytes of each thread, so a check can see how
/// much memory one call needed at its peak. Register it in the binary that runs the checks:
/// `#[global_allocator] static A: checks::CountingAlloc = checks::CountingAlloc;`
/// (without it, [`peak_during`] reports 0 and the memory checks pass trivially).
pub struct CountingAlloc;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn account(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| {
            if now > peak.get() {
                peak.set(now);
            }
        });
    });
}

// SAFETY: every call is forwarded to the system allocator unchanged; the counters are
// const-initialised thread locals without destructors, so touching them never allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            account(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            account(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        account(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            // Count the new block before the old one goes: a copy holds both for a moment.
            account(new_size as isize);
            account(-(layout.size() as isize));
        }
        p
    }
}

/// Run `f` and return its result with the most bytes this thread had allocated at once
/// during it, above what it had when `f` started.
pub fn peak_during<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let r = f();
    let peak = PEAK.with(Cell::get);
    (r, (peak - base).max(0) as usize)
}

// --- (a) request heads ----------------------------------------------------------------------

/// A parsed head, owned, for comparing results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadSummary {
    pub len: usize,
    pub version: Version,
    pub framing: Framing,
    pub keep_alive: bool,
    pub expect_continue: bool,
    pub method: Vec<u8>,
    pub target: Vec<u8>,
    pub path: Vec<u8>,
    pub query: Option<Vec<u8>>,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
}

pub type HeadResult = Result<Option<HeadSummary>, ParseError>;

/// `parse_head` on `buf`, summarised (and the summary checked).
pub fn parse_summary(buf: &[u8], limits: &Limits) -> HeadResult {
    let parsed = match parse_head(buf, limits)? {
        None => return Ok(None),
        Some(p) => p,
    };
    let len = parsed.len;
    assert!(len > 0 && len <= buf.len(), "head length {len} outside the {}-byte buffer", buf.len());
    let head = parsed.into_head(Bytes::copy_from_slice(&buf[..len]));
    // The accessors build &str with from_utf8_unchecked on the claim that every span is
    // ASCII: check the claim on the raw bytes.
    let bytes = |s: &str| s.as_bytes().to_vec();
    let summary = HeadSummary {
        len,
        version: head.version(),
        framing: head.framing(),
        keep_alive: head.keep_alive(),
        expect_continue: head.expect_continue(),
        method: bytes(head.method()),
        target: bytes(head.target()),
        path: bytes(head.path()),
        query: head.query().map(bytes),
        headers: head.headers().map(|(n, v)| (n.as_bytes().to_vec(), v.to_vec())).collect(),
    };
    for (what, s) in [("method", &summary.method), ("target", &summary.target), ("path", &summary.path)] {
        assert!(s.is_ascii(), "{what} is not ASCII: {}", show(s));
    }
    if let Some(q) = &summary.query {
        assert!(q.is_ascii(), "query is not ASCII: {}", show(q));
    }
    assert!(
        !summary.method.is_empty() && summary.method.iter().all(|&b| is_tchar(b)),
        "method {}",
        show(&summary.method)
    );
    for (n, v) in &summary.headers {
        assert!(!n.is_empty() && n.iter().all(|&b| is_tchar(b)), "header name {}", show(n));
        assert!(!v.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0), "header value {}", show(v));
    }
    Ok(Some(summary))
}

/// Bytes an incomplete head may occupy before the parser must refuse it: the request line
/// and its line end, the header block, and (RFC 9112 §2.2) empty lines before the request
/// line, which this check allows up to `max_request_line` bytes of.
pub fn partial_head_bound(limits: &Limits) -> usize {
    limits.max_request_line + 2 + limits.max_header_block + limits.max_request_line
}

/// Target (a): `parse_head` and the framing decision on arbitrary bytes, under each limit set.
pub fn check_head(data: &[u8]) {
    for limits in limit_sets() {
        check_head_with(data, &limits);
    }
}

pub fn check_head_with(data: &[u8], limits: &Limits) {
    match parse_summary(data, limits) {
        Ok(None) => {
            let bound = partial_head_bound(limits);
            assert!(
                data.len() <= bound,
                "an incomplete head of {} bytes is still accepted (Ok(None)); limits {limits:?} allow at most {bound}: \
                 the connection buffers without bound until the header timeout. Input: {}",
                data.len(),
                show(data)
            );
        }
        Err(e) => {
            assert!(ERROR_STATUSES.contains(&e.status()), "{e:?} has status {}", e.status());
            assert!(
                !matches!(
                    e,
                    ParseError::InvalidChunk
                        | ParseError::IncompleteBody
                        | ParseError::HeadTimeout
                        | ParseError::BodyTimeout
                ),
                "a head cannot fail with {e:?}"
            );
        }
        Ok(Some(h)) => {
            assert!(data[..h.len].ends_with(b"\n"), "a head must end with its empty line");
            // The result depends on the head's bytes only, not on what follows it.
            assert_eq!(
                parse_summary(&data[..h.len], limits),
                Ok(Some(h.clone())),
                "head alone parses differently"
            );
            assert!(
                h.headers.len() <= limits.max_headers.max(1),
                "{} fields over max_headers",
                h.headers.len()
            );
            for (n, v) in &h.headers {
                assert!(
                    n.len() + 2 + v.len() <= limits.max_header_field,
                    "field {} over max_header_field",
                    show(n)
                );
            }
            let count = |name: &str| {
                h.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).count()
            };
            let hosts = count("host");
            assert!(hosts <= 1, "{hosts} Host fields accepted");
            if h.version == Version::Http11 {
                assert_eq!(hosts, 1, "HTTP/1.1 without Host accepted");
            }
            let te = count("transfer-encoding");
            let cl = count("content-length");
            match h.framing {
                Framing::None => assert_eq!(te, 0, "Transfer-Encoding without chunked framing"),
                Framing::Length(n) => {
                    assert!(
                        n > 0 && n <= limits.max_body,
                        "Content-Length {n} accepted with max_body {}",
                        limits.max_body
                    );
                    assert!(te == 0 && cl >= 1);
                }
                Framing::Chunked => {
                    assert!(te >= 1 && cl == 0, "chunked with Content-Length");
                    assert_eq!(h.version, Version::Http11, "chunked framing on HTTP/1.0");
                }
            }
            if h.version == Version::Http10 && count("connection") == 0 {
                assert!(!h.keep_alive, "HTTP/1.0 without Connection is keep-alive");
            }
            if h.expect_continue {
                assert_eq!(h.version, Version::Http11);
            }
            if h.path == b"*" && h.target == b"*" {
                assert_eq!(h.method, b"OPTIONS", "asterisk-form with another method");
            }
        }
    }
}

/// Whether the differential checks also demand the same *kind* of refusal (status and
/// message) from a split read as from one read. Off by default: see [`check_head_prefixes`].
/// Set `PERCORE_FUZZ_STRICT=1` to turn it on.
pub fn strict_errors() -> bool {
    static STRICT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *STRICT.get_or_init(|| std::env::var_os("PERCORE_FUZZ_STRICT").is_some_and(|v| v != "0"))
}

/// First half of target (d): a head read in any number of pieces must parse as it does in
/// one read. The connection driver calls `parse_head` on every longer prefix and acts on
/// the first answer that is not `Ok(None)`; that answer must be the one-read result.
///
/// Always: a head accepted in one read is accepted, identically, whatever the split, and a
/// head refused in one read is refused whatever the split. Only with
/// [`strict_errors`]: the refusal is the same error. (Today it is not always: a prefix
/// can meet one error first while the whole head meets another one, e.g. a bad method on
/// an over-long request line is 400 in pieces and 414 in one read.)
pub fn check_head_prefixes(data: &[u8]) {
    for limits in limit_sets() {
        let whole = parse_summary(data, &limits);
        let mut first = None;
        for i in 1..=data.len() {
            match parse_summary(&data[..i], &limits) {
                Ok(None) => continue,
                r => {
                    first = Some((i, r));
                    break;
                }
            }
        }
        match first {
            None => assert_eq!(whole, Ok(None), "every prefix incomplete, but the whole input is not"),
            Some((_, Err(_))) if whole.is_err() && !strict_errors() => {}
            Some((i, r)) => assert_eq!(
                r,
                whole,
                "read split after byte {i} of {} gives a different result than one read; limits {limits:?}; input {}",
                data.len(),
                show(data)
            ),
        }
    }
}

// --- (b) chunked bodies ---------------------------------------------------------------------

/// How a body decode ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyEnd {
    /// Complete after this many input bytes.
    Done(usize),
    /// The input ended first.
    Incomplete,
    Error(ParseError),
}

/// Decode `input` with `framing`, fed in the given piece sizes (as reads would deliver it),
/// checking what each `decode` call returns. Returns the body data and how it ended.
pub fn decode_in_pieces(
    framing: Framing,
    max_body: u64,
    input: &[u8],
    pieces: &[usize],
) -> (Vec<u8>, BodyEnd) {
    let mut dec = BodyDecoder::new(framing, max_body);
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut next_piece = 0;
    let mut used = 0;
    let mut out = Vec::new();
    let mut calls = 0usize;
    loop {
        calls += 1;
        assert!(calls <= 4 * input.len() + 16, "decoder makes no progress");
        let r = dec.decode(&buf);
        match r {
            Ok(Decoded::Data { consumed, range }) => {
                assert!(!range.is_empty(), "empty data range");
                assert!(
                    range.end <= consumed && consumed <= buf.len(),
                    "data {range:?} consumed {consumed} of {}",
                    buf.len()
                );
                out.extend_from_slice(&buf[range]);
                buf.drain(..consumed);
                used += consumed;
                assert!(out.len() as u64 <= max_body, "{} body bytes with max_body {max_body}", out.len());
            }
            Ok(Decoded::NeedMore { consumed }) => {
                assert!(consumed <= buf.len());
                assert!(!dec.is_done(), "NeedMore from a finished decoder");
                buf.drain(..consumed);
                used += consumed;
                if fed == input.len() {
                    return (out, BodyEnd::Incomplete);
                }
                let n = pieces.get(next_piece).copied().unwrap_or(1).clamp(1, input.len() - fed);
                next_piece += 1;
                buf.extend_from_slice(&input[fed..fed + n]);
                fed += n;
            }
            Ok(Decoded::Done { consumed }) => {
                assert!(consumed <= buf.len());
                assert!(dec.is_done(), "Done but is_done() is false");
                // A finished decoder stays finished and takes nothing more.
                assert_eq!(dec.decode(&buf[consumed..]), Ok(Decoded::Done { consumed: 0 }));
                return (out, BodyEnd::Done(used + consumed));
            }
            Err(e) => {
                assert!(
                    matches!(
                        e,
                        ParseError::InvalidChunk
                            | ParseError::BodyTooLarge
                            | ParseError::TooMuchFraming
                            | ParseError::HeadersTooLarge
                            | ParseError::HeaderFieldTooLarge
                            | ParseError::TooManyHeaders
                            | ParseError::InvalidHeaderName
                            | ParseError::InvalidHeaderValue
                    ),
                    "unexpected body error {e:?}"
                );
                return (out, BodyEnd::Error(e));
            }
        }
    }
}

/// Target (b): the chunked decoder on arbitrary bytes must give the same data and the same
/// end (consumed count or error) however the bytes are split, and agree with
/// `decode_buffered`, which the driver uses when a whole body arrived with its head.
pub fn check_chunked(data: &[u8]) {
    let seed = hash(data);
    for max_body in [1 << 20, 16] {
        let one = decode_in_pieces(Framing::Chunked, max_body, data, &[data.len()]);
        let bytewise = decode_in_pieces(Framing::Chunked, max_body, data, &[]);
        let mut rng = Rng::new(seed ^ max_body);
        let pieces: Vec<usize> = (0..data.len())
            .map(|_| {
                let max = if rng.next() % 3 == 0 { 64 } else { 5 };
                rng.size(max)
            })
            .collect();
        let random = decode_in_pieces(Framing::Chunked, max_body, data, &pieces);
        // Data delivered before an error may differ in how far it got; the end may not.
        assert_eq!(one.1, bytewise.1, "one read vs byte by byte, max_body {max_body}: {}", show(data));
        assert_eq!(one.1, random.1, "one read vs {pieces:?}, max_body {max_body}: {}", show(data));
        if let BodyEnd::Done(_) = one.1 {
            assert_eq!(one.0, bytewise.0, "data differs byte by byte");
            assert_eq!(one.0, random.0, "data differs in pieces");
        }
        let buffered = decode_buffered(&BodyDecoder::new(Framing::Chunked, max_body), data);
        match (&one.1, buffered) {
            (BodyEnd::Done(n), Ok(Some((body, used)))) => {
                assert_eq!((&one.0, *n), (&body, used), "decode_buffered disagrees");
            }
            (BodyEnd::Incomplete, Ok(None)) => {}
            (BodyEnd::Error(e), Err(b)) => assert_eq!(*e, b),
            (mine, theirs) => {
                panic!("decode_buffered gives {theirs:?}, streaming gives {mine:?}: {}", show(data))
            }
        }
    }
    // Content-Length framing, with a length taken from the input.
    let n = u64::from(data.first().copied().unwrap_or(0));
    if n > 0 {
        let (body, end) = decode_in_pieces(Framing::Length(n), 1 << 20, data, &[3]);
        if data.len() as u64 >= n {
            assert_eq!((&body[..], end), (&data[..n as usize], BodyEnd::Done(n as usize)));
        } else {
            assert_eq!((&body[..], end), (data, BodyEnd::Incomplete));
        }
    }
}

// --- PROXY protocol and forwarding headers ---------------------------------------------------

/// Longest PROXY header: v2's 16-byte preamble and at most 4096 bytes after it (v1 lines are
/// at most 107 bytes).
pub const PROXY_MAX: usize = 16 + 4096;

/// Whether `data` could start with a PROXY header (either signature, or a prefix of one).
pub fn looks_like_proxy(data: &[u8]) -> bool {
    const V2: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
    let n = data.len().min(5);
    n > 0 && (data[..n] == b"PROXY"[..n] || data[..n] == V2[..n])
}

/// Extra target: `parse_proxy_header` in each mode, and `forwarded` over the input read as
/// header lines. No panic; a header is within its bounds and parses the same without what
/// follows it; an incomplete one never holds more than `PROXY_MAX` bytes; every prefix says
/// "incomplete" until the point the whole input decides, then the same.
pub fn check_proxy(data: &[u8]) {
    assert_eq!(parse_proxy_header(data, ProxyProtocol::Off), Ok(Some(ProxyHeader { source: None, len: 0 })));
    for mode in [ProxyProtocol::V1, ProxyProtocol::V2, ProxyProtocol::Auto] {
        let whole = parse_proxy_header(data, mode);
        match whole {
            Ok(Some(h)) => {
                assert!(
                    h.len > 0 && h.len <= data.len() && h.len <= PROXY_MAX,
                    "{mode:?}: header length {}",
                    h.len
                );
                assert_eq!(
                    parse_proxy_header(&data[..h.len], mode),
                    whole,
                    "{mode:?}: depends on what follows"
                );
                if mode == ProxyProtocol::V1 {
                    assert!(data.starts_with(b"PROXY ") && data[..h.len].ends_with(b"\r\n"));
                }
            }
            Ok(None) => assert!(data.len() < PROXY_MAX, "{mode:?}: {} bytes still incomplete", data.len()),
            Err(_) => {}
        }
        let first =
            (1..=data.len()).map(|i| (i, parse_proxy_header(&data[..i], mode))).find(|(_, r)| *r != Ok(None));
        match first {
            None => assert_eq!(whole, Ok(None), "{mode:?}: every prefix incomplete, the whole input not"),
            Some((_, Err(_))) if whole.is_err() && !strict_errors() => {}
            Some((i, r)) => {
                assert_eq!(r, whole, "{mode:?}: split after byte {i} differs from one read: {}", show(data))
            }
        }
    }
    // Forwarding headers: the input as `name: value` lines.
    let fields: Vec<(&str, &[u8])> = data
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            let name = std::str::from_utf8(&line[..colon]).ok()?;
            Some((name, line[colon + 1..].trim_ascii()))
        })
        .collect();
    for trusted in ["127.0.0.1,10.0.0.0/8,::1", "*"] {
        let trusted = TrustedProxies::parse(trusted).expect("literal");
        for family in [ForwardedHeaders::XForwarded, ForwardedHeaders::Forwarded] {
            for host in [false, true] {
                let f = forwarded(fields.iter().copied(), &trusted, ForwardedRules { family, host });
                if let Some(proto) = f.proto {
                    assert!(proto == "http" || proto == "https", "proto {proto:?}");
                }
                assert!(host || f.host.is_none(), "a forwarded host believed without --forwarded-host");
            }
        }
    }
}

// --- (c) the connection driver --------------------------------------------------------------

/// One request that reached the application.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub version: Version,
    /// The body the response to this call must carry, when it is known.
    pub expected_body: Option<Vec<u8>>,
}

/// The application the driver checks run: no timers, every route bounded in what it sends.
/// It records each call. With `drain_bodies`, it reads every request body before routing
/// (so the answer never depends on whether a body arrived with its head).
pub struct FuzzApp {
    router: Router,
    log: Rc<RefCell<Vec<Call>>>,
    drain_bodies: bool,
}

/// Bytes a single response of [`FuzzApp`] can have at most (head included).
pub const MAX_RESPONSE: usize = 48 * 1024;
const BIG_BODY: usize = 20_000;

impl FuzzApp {
    pub fn new(drain_bodies: bool) -> (FuzzApp, Rc<RefCell<Vec<Call>>>) {
        let log = Rc::new(RefCell::new(Vec::new()));
        let router = Router::new()
            .get("/plaintext", |_req: Request| async { Response::text("Hello, World!") })
            .post("/echo", echo)
            .put("/echo", echo)
            .get(
                "/stream",
                |req: Request| async move { Response::stream(Chunks(stream_chunks(req.query()))) },
            )
            .get("/big", |_req: Request| async { Response::text(vec![b'b'; BIG_BODY]) })
            .get("/close", |_req: Request| async { Response::text("bye").with_header("connection", "close") })
            .get("/nocontent", |_req: Request| async { Response::new(204) })
            .get("/notmodified", |_req: Request| async {
                Response::new(304).with_header("content-length", "5").with_header("etag", "\"x\"")
            });
        (FuzzApp { router, log: log.clone(), drain_bodies }, log)
    }
}

async fn echo(mut req: Request) -> Response {
    match req.body_mut().collect(usize::MAX).await {
        Ok(body) => {
            Response::new(200).with_header("content-type", "application/octet-stream").with_body(body)
        }
        Err(e) => Response::status_text(e.status()),
    }
}

/// `/stream?n=N&size=S`: an empty chunk (which must not end the body), then N chunks of S
/// bytes; S ≤ 20000 (over 16 KiB: the driver's large-chunk path), N ≤ 8 and N × S ≤ 40000.
fn stream_chunks(query: Option<&str>) -> Vec<Bytes> {
    let param = |name: &str, default: usize, max: usize| {
        query
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')))
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(default)
            .min(max)
    };
    let size = param("size", 5, BIG_BODY).max(1);
    let n = param("n", 3, 8).min(2 * BIG_BODY / size);
    let mut chunks = vec![Bytes::new()];
    chunks.extend((0..n).map(|i| Bytes::from(vec![b'a' + i as u8; size])));
    chunks
}

struct Chunks(Vec<Bytes>);

impl Stream for Chunks {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.0.is_empty() {
            return Poll::Ready(None);
        }
        Poll::Ready(Some(Ok(self.0.remove(0))))
    }
}

impl Handler for FuzzApp {
    async fn call(&self, mut req: Request) -> Response {
        let mut call = Call {
            method: req.method().to_string(),
            path: req.path().to_string(),
            version: req.version(),
            expected_body: None,
        };
        if self.drain_bodies {
            match req.take_body().collect(usize::MAX).await {
                Ok(body) => req = Request::new(req.head().clone(), req.peer(), RequestBody::full(body)),
                Err(e) => {
                    self.log.borrow_mut().push(call);
                    return Response::status_text(e.status());
                }
            }
        }
        let query = req.query().map(str::to_string);
        let response = self.router.call(req).await;
        call.expected_body = match response.body() {
            ResponseBody::Empty => Some(Vec::new()),
            ResponseBody::Full(b) => Some(b.to_vec()),
            // Only /stream streams: what it sends follows from the query.
            ResponseBody::Stream(_) => Some(stream_chunks(query.as_deref()).concat()),
            // The demo app sends no framed bodies (tower services do).
            ResponseBody::Frames { .. } => None,
        };
        self.log.borrow_mut().push(call);
        response
    }
}

/// A driver configuration for the checks: no timeout can fire during a run.
pub fn driver_config(limits: Limits, keep_alive: bool) -> DriverConfig {
    let long = Duration::from_secs(3600);
    DriverConfig {
        limits,
        header_timeout: long,
        keep_alive: if keep_alive { long } else { Duration::ZERO },
        body_timeout: long,
        write_timeout: long,
        linger: Duration::from_secs(60),
        ..DriverConfig::default()
    }
}

/// One response parsed back from the driver's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedResponse {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// `connection: close`.
    pub close: bool,
    /// Bytes of output it took.
    pub len: usize,
}

impl ParsedResponse {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| &v[..])
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parse one response head at the start of `out`: status, headers, head length.
/// Header fields of a parsed response: name, value.
type Fields = Vec<(String, Vec<u8>)>;

fn parse_response_head(out: &[u8]) -> Result<(u16, Fields, usize), String> {
    let end = find(out, b"\r\n\r\n").ok_or("response head without its empty line")? + 4;
    // Status line and field lines, each with its CRLF; the empty line is left out.
    let text = &out[..end - 2];
    let mut lines = text.strip_suffix(b"\n").unwrap_or(text).split(|&b| b == b'\n');
    let status_line = lines.next().unwrap_or_default();
    let status_line = status_line.strip_suffix(b"\r").ok_or("status line without CRLF")?;
    let rest = status_line
        .strip_prefix(b"HTTP/1.1 ")
        .ok_or_else(|| format!("bad status line {}", show(status_line)))?;
    if rest.len() < 5 || !rest[..3].iter().all(u8::is_ascii_digit) || rest[3] != b' ' {
        return Err(format!("bad status line {}", show(status_line)));
    }
    let status = std::str::from_utf8(&rest[..3]).unwrap().parse::<u16>().unwrap();
    if !(100..=599).contains(&status) || !rest[4..].iter().all(|&b| b == b' ' || b.is_ascii_graphic()) {
        return Err(format!("bad status line {}", show(status_line)));
    }
    let mut headers = Vec::new();
    for line in lines {
        let line = line.strip_suffix(b"\r").ok_or("header line without CRLF")?;
        let colon =
            line.iter().position(|&b| b == b':').ok_or_else(|| format!("header line {}", show(line)))?;
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(format!("bad header name {}", show(name)));
        }
        let value = value.strip_prefix(b" ").ok_or("no space after colon")?;
        if value.iter().any(|&b| b == b'\r' || b == 0 || b == 0x7f) {
            return Err(format!("bad header value {}", show(value)));
        }
        headers.push((String::from_utf8(name.to_vec()).unwrap(), value.to_vec()));
    }
    Ok((status, headers, end))
}

/// Parse a chunked body (as this server writes it: hex size, CRLF, data, CRLF, `0` CRLF CRLF).
fn parse_chunked_body(out: &[u8]) -> Result<(Vec<u8>, usize), String> {
    let mut pos = 0;
    let mut body = Vec::new();
    loop {
        let line_end = find(&out[pos..], b"\r\n").ok_or("chunk size line without CRLF")? + pos;
        let size_hex = &out[pos..line_end];
        if size_hex.is_empty() || size_hex.len() > 16 || !size_hex.iter().all(u8::is_ascii_hexdigit) {
            return Err(format!("bad chunk size {}", show(size_hex)));
        }
        let size =
            usize::from_str_radix(std::str::from_utf8(size_hex).unwrap(), 16).map_err(|e| e.to_string())?;
        pos = line_end + 2;
        if size == 0 {
            if out.get(pos..pos + 2) != Some(b"\r\n") {
                return Err("last chunk not followed by CRLF".into());
            }
            return Ok((body, pos + 2));
        }
        let data = out.get(pos..pos + size).ok_or("chunk data cut short")?;
        body.extend_from_slice(data);
        pos += size;
        if out.get(pos..pos + 2) != Some(b"\r\n") {
            return Err("chunk data not followed by CRLF".into());
        }
        pos += 2;
    }
}

/// Parse the whole output of a connection as HTTP/1.1 responses, matching final responses
/// to the application's calls in order (a final response beyond them is a refusal by the
/// driver). Returns the responses, interim ones included.
pub fn parse_responses(out: &[u8], calls: &[Call]) -> Result<Vec<ParsedResponse>, String> {
    let mut pos = 0;
    let mut finals = 0;
    let mut responses = Vec::new();
    while pos < out.len() {
        if let Some(last) = responses.last() {
            let last: &ParsedResponse = last;
            if last.close {
                return Err(format!("{} bytes after a response with connection: close", out.len() - pos));
            }
        }
        let (status, headers, head_len) = parse_response_head(&out[pos..])?;
        let mut r = ParsedResponse { status, headers, body: Vec::new(), close: false, len: head_len };
        if status == 100 {
            if &out[pos..pos + head_len] != b"HTTP/1.1 100 Continue\r\n\r\n" {
                return Err("malformed 100 Continue".into());
            }
            pos += head_len;
            responses.push(r);
            continue;
        }
        if (101..200).contains(&status) {
            return Err(format!("unexpected interim status {status}"));
        }
        let call = calls.get(finals);
        finals += 1;
        let count = |name: &str| r.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).count();
        if count("date") != 1 {
            return Err("a response needs exactly one date header".into());
        }
        for owned in ["content-length", "transfer-encoding", "connection", "keep-alive"] {
            if count(owned) > 1 {
                return Err(format!("{owned} written twice"));
            }
        }
        match r.header("connection") {
            None => {}
            Some(b"close") => r.close = true,
            Some(b"keep-alive") if call.map(|c| c.version) == Some(Version::Http10) => {}
            Some(b"keep-alive") => {
                return Err("connection: keep-alive on a response to an HTTP/1.1 request".into())
            }
            Some(v) => return Err(format!("connection: {}", show(v))),
        }
        if let Some(c) = call {
            if c.version == Version::Http10 && !r.close && r.header("connection").is_none() {
                return Err("keep-alive response to HTTP/1.0 without connection: keep-alive".into());
            }
        }
        let cl = r.header("content-length").map(|v| v.to_vec());
        let chunked = match r.header("transfer-encoding") {
            None => false,
            Some(b"chunked") => true,
            Some(v) => return Err(format!("transfer-encoding: {}", show(v))),
        };
        if cl.is_some() && chunked {
            return Err("content-length and transfer-encoding together".into());
        }
        let forbidden = status == 204 || status == 304;
        if forbidden && (cl.is_some() || chunked) {
            return Err(format!("{status} with framing headers"));
        }
        let is_head = call.is_some_and(|c| c.method == "HEAD");
        let body_start = pos + head_len;
        let rest = &out[body_start..];
        let body_len = if forbidden || is_head {
            0
        } else if let Some(cl) = cl {
            let n: usize = std::str::from_utf8(&cl)
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("content-length: {}", show(&cl)))?;
            if rest.len() < n {
                return Err(format!("body cut short: {} of {n} bytes", rest.len()));
            }
            r.body = rest[..n].to_vec();
            n
        } else if chunked {
            let (body, used) = parse_chunked_body(rest)?;
            r.body = body;
            used
        } else {
            // Close-delimited: only for HTTP/1.0, only last.
            if !r.close {
                return Err("a body without framing on a connection that stays open".into());
            }
            if call.map(|c| c.version) != Some(Version::Http10) {
                return Err("close-delimited body for an HTTP/1.1 request".into());
            }
            r.body = rest.to_vec();
            rest.len()
        };
        r.len = head_len + body_len;
        pos += r.len;
        responses.push(r);
    }
    Ok(responses)
}

/// What one driver run gave, for comparing runs.
#[derive(Debug, Clone)]
pub struct DriverRun {
    pub transcript: Transcript,
    pub calls: Vec<Call>,
    pub peak_alloc: usize,
}

/// Run the real driver over `reads` with [`FuzzApp`].
pub fn drive(reads: Vec<Vec<u8>>, config: DriverConfig, drain_bodies: bool) -> DriverRun {
    let ((transcript, calls), peak_alloc) = peak_during(|| {
        let (app, log) = FuzzApp::new(drain_bodies);
        let transcript = run_connection(reads, config, app);
        let calls = log.borrow().clone();
        (transcript, calls)
    });
    DriverRun { transcript, calls, peak_alloc }
}

/// Most bytes a connection of the driver may have allocated at once, the output it wrote
/// and the recorded calls aside: its read buffer (which must stay within the head limits
/// plus one read), a body (up to `max_body`, held twice while it is echoed), and a fixed
/// allowance for the rest (write buffer, futures, the router, the test transport).
pub fn memory_bound(limits: &Limits, input_len: usize, output_len: usize) -> usize {
    let head = limits.max_request_line + limits.max_header_block + 4;
    let body = limits.max_body.min(1 << 30) as usize;
    let _ = input_len;
    64 * 1024 + 4 * head + 4 * body + 3 * output_len
}

/// Check the invariants of one driver run on `input`.
pub fn check_run(input: &[u8], config: &DriverConfig, run: &DriverRun) {
    let out = run.transcript.output();
    let calls = &run.calls;
    let context = || format!("input {}\noutput {}", show(input), show(&out));
    let responses =
        parse_responses(&out, calls).unwrap_or_else(|e| panic!("malformed output: {e}\n{}", context()));
    let finals: Vec<&ParsedResponse> = responses.iter().filter(|r| r.status >= 200).collect();
    let interims = responses.len() - finals.len();
    // Every call answered, in order; at most one more (a refusal), and it comes last.
    assert!(
        finals.len() >= calls.len(),
        "{} calls but {} responses\n{}",
        calls.len(),
        finals.len(),
        context()
    );
    assert!(
        finals.len() <= calls.len() + 1,
        "{} responses for {} calls\n{}",
        finals.len(),
        calls.len(),
        context()
    );
    assert!(interims <= calls.len(), "{interims} interim responses for {} calls\n{}", calls.len(), context());
    if finals.len() == calls.len() + 1 {
        let r = finals[finals.len() - 1];
        assert!(
            ERROR_STATUSES.contains(&r.status),
            "a response without a request: {}\n{}",
            r.status,
            context()
        );
        assert!(r.close, "a refusal ({}) without connection: close\n{}", r.status, context());
        assert!(r.body.starts_with(r.status.to_string().as_bytes()), "refusal body {}", show(&r.body));
    }
    for (r, call) in finals.iter().zip(calls.iter()) {
        if ERROR_STATUSES.contains(&r.status)
            && r.close
            && r.header("content-type") == Some(b"text/plain; charset=utf-8")
        {
            continue; // a broken body answered by the driver instead of the handler
        }
        if let (Some(want), false) =
            (&call.expected_body, call.method == "HEAD" || r.status == 204 || r.status == 304)
        {
            assert_eq!(&r.body, want, "response body for {} {}\n{}", call.method, call.path, context());
        }
    }
    // A close is the last response; FIN follows it.
    if let Some(last) = finals.last() {
        assert_eq!(
            last.close,
            run.transcript.shutdown,
            "last response close={} but FIN={}\n{}",
            last.close,
            run.transcript.shutdown,
            context()
        );
        if config.keep_alive.is_zero() {
            assert!(last.close, "keep-alive off, yet the last response keeps the connection");
        }
    }
    // Bounded output: a request is at least 14 bytes (`G / HTTP/1.0\n\n`), and each
    // response of the app is at most MAX_RESPONSE.
    assert!(calls.len() <= input.len() / 14 + 1, "{} calls from {} bytes", calls.len(), input.len());
    for r in &responses {
        assert!(r.len <= MAX_RESPONSE, "a {}-byte response", r.len);
    }
    let bound = memory_bound(&config.limits, input.len(), out.len());
    assert!(
        run.peak_alloc <= bound,
        "the connection allocated {} bytes at its peak (bound {bound}) for a {}-byte input\n{}",
        run.peak_alloc,
        input.len(),
        context()
    );
}

/// The configurations target (c) runs each input under: (limits, keep-alive, drain bodies).
fn driver_variants() -> [(Limits, bool, bool); 3] {
    [(Limits::default(), true, false), (small_limits(), true, true), (Limits::default(), false, true)]
}

/// Target (c): the whole driver over arbitrary bytes in arbitrary reads. An input that
/// starts like a PROXY header also runs with `--proxy-protocol auto`.
pub fn check_driver(data: &[u8]) {
    let seed = hash(data);
    for (i, (limits, keep_alive, drain)) in driver_variants().into_iter().enumerate() {
        let config = driver_config(limits, keep_alive);
        let reads =
            if i == 0 { vec![data.to_vec()] } else { random_split(data, seed.rotate_left(i as u32 * 8)) };
        let run = drive(reads, config.clone(), drain);
        check_run(data, &config, &run);
    }
    if looks_like_proxy(data) {
        let config =
            DriverConfig { proxy_protocol: ProxyProtocol::Auto, ..driver_config(small_limits(), true) };
        let run = drive(random_split(data, seed ^ 0x5050), config.clone(), false);
        check_run(data, &config, &run);
    }
}

/// The final responses of a run, comparable across runs: interim `100 Continue` responses
/// left out (whether one is owed depends on whether body bytes came with the head, a matter
/// of read boundaries) and the `date` header dropped (the clock may tick between runs).
fn comparable(input: &[u8], run: &DriverRun) -> Vec<ParsedResponse> {
    let out = run.transcript.output();
    let mut responses = parse_responses(&out, &run.calls)
        .unwrap_or_else(|e| panic!("malformed output: {e}\ninput {}\noutput {}", show(input), show(&out)));
    responses.retain(|r| r.status >= 200);
    for r in &mut responses {
        r.headers.retain(|(n, _)| !n.eq_ignore_ascii_case("date"));
        r.len = 0;
    }
    responses
}

fn describe_responses(rs: &[ParsedResponse]) -> String {
    rs.iter()
        .map(|r| {
            format!("{} ({} body bytes{})", r.status, r.body.len(), if r.close { ", close" } else { "" })
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Second half of target (d): the driver must answer the same whether the input comes in
/// one read, in random pieces, or a byte at a time: the same responses, byte for byte
/// (`date` and interim responses aside), and the same close. As in
/// [`check_head_prefixes`], a last response that refuses the request in both runs may be a
/// different refusal unless [`strict_errors`] is set.
pub fn check_driver_splits(data: &[u8]) {
    let seed = hash(data);
    let mut configs: Vec<DriverConfig> = limit_sets().into_iter().map(|l| driver_config(l, true)).collect();
    if looks_like_proxy(data) {
        configs.push(DriverConfig {
            proxy_protocol: ProxyProtocol::Auto,
            ..driver_config(Limits::default(), true)
        });
    }
    for config in configs {
        let one = drive(vec![data.to_vec()], config.clone(), true);
        let want = comparable(data, &one);
        let mut variants = vec![("random pieces", random_split(data, seed))];
        if data.len() <= 2048 {
            variants.push(("byte by byte", data.iter().map(|&b| vec![b]).collect()));
        }
        for (what, reads) in variants {
            let sizes: Vec<usize> = reads.iter().map(Vec::len).collect();
            let run = drive(reads, config.clone(), true);
            let got = comparable(data, &run);
            let refusal = |r: &ParsedResponse| ERROR_STATUSES.contains(&r.status) && r.close;
            let same = got == want
                || (!strict_errors()
                    && got.len() == want.len()
                    && !got.is_empty()
                    && got[..got.len() - 1] == want[..want.len() - 1]
                    && refusal(&got[got.len() - 1])
                    && refusal(&want[want.len() - 1]));
            assert!(
                same && run.transcript.shutdown == one.transcript.shutdown,
                "{what} gives different responses than one read; limits {:?}\ninput {}\none read: {} (FIN {})\n{what}: {} (FIN {})\npieces {sizes:?}\none read: {}\n{what}: {}",
                config.limits,
                show(data),
                describe_responses(&want),
                one.transcript.shutdown,
                describe_responses(&got),
                run.transcript.shutdown,
                show(&one.transcript.output()),
                show(&run.transcript.output()),
            );
        }
    }
}

/// Target (d): both differential checks.
pub fn check_differential(data: &[u8]) {
    check_head_prefixes(data);
    check_driver_splits(data);
}

// --- WebSocket frames ------------------------------------------------------------------------

/// How a WebSocket decoding run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsEnd {
    /// Everything was consumed; more bytes would be needed for anything further.
    NeedMore,
    Error(percore::ws::frame::FrameError),
}

/// Feed `input` to a frame decoder (limit `max`) in pieces of the given sizes (1 after
/// they run out); every event and how it ended.
pub fn ws_decode_in_pieces(
    input: &[u8],
    max: usize,
    pieces: &[usize],
) -> (Vec<percore::ws::frame::Event>, WsEnd) {
    use percore::ws::frame::{Decoder, Event};
    let mut decoder = Decoder::new(max);
    let mut buf = bytes::BytesMut::new();
    let (mut fed, mut next_piece, mut events) = (0, 0, Vec::new());
    loop {
        match decoder.decode(&mut buf) {
            Ok(Some(event)) => {
                match &event {
                    Event::Text(t) => {
                        assert!(std::str::from_utf8(t).is_ok(), "a text message that is not UTF-8");
                        assert!(t.len() <= max, "a {}-byte message over the limit {max}", t.len());
                    }
                    Event::Binary(b) => {
                        assert!(b.len() <= max, "a {}-byte message over the limit {max}", b.len())
                    }
                    Event::Ping(p) | Event::Pong(p) => {
                        assert!(p.len() <= 125, "a {}-byte control frame", p.len())
                    }
                    Event::Close(Some(c)) => {
                        assert!(percore::ws::frame::close_code_valid(c.code), "close code {}", c.code);
                        assert!(std::str::from_utf8(&c.reason).is_ok(), "a close reason that is not UTF-8");
                    }
                    Event::Close(None) => {}
                }
                events.push(event);
            }
            Ok(None) => {
                if fed == input.len() {
                    return (events, WsEnd::NeedMore);
                }
                let n = pieces.get(next_piece).copied().unwrap_or(1).clamp(1, input.len() - fed);
                next_piece += 1;
                buf.extend_from_slice(&input[fed..fed + n]);
                fed += n;
            }
            Err(e) => return (events, WsEnd::Error(e)),
        }
    }
}

/// Target: the WebSocket frame decoder on arbitrary bytes gives the same messages, control
/// frames and end (the same error, or a need for more) however the bytes are split; what it
/// hands out obeys the protocol (UTF-8 text, messages within the limit, control frames of at
/// most 125 bytes, valid close codes); and it never holds much more than it was given, so a
/// frame head announcing a huge length costs nothing.
pub fn check_ws_frame(data: &[u8]) {
    let seed = hash(data);
    for max in [1 << 20, 64] {
        let (one, peak) = peak_during(|| ws_decode_in_pieces(data, max, &[data.len()]));
        assert!(peak <= 4 * data.len() + 4096, "{peak} bytes held for {} bytes of input", data.len());
        let bytewise = ws_decode_in_pieces(data, max, &[]);
        let mut rng = Rng::new(seed ^ max as u64);
        let pieces: Vec<usize> = (0..data.len())
            .map(|_| {
                let most = if rng.next() % 3 == 0 { 64 } else { 7 };
                rng.size(most)
            })
            .collect();
        let random = ws_decode_in_pieces(data, max, &pieces);
        assert_eq!(one, bytewise, "one read vs byte by byte, max {max}: {}", show(data));
        assert_eq!(one, random, "one read vs {pieces:?}, max {max}: {}", show(data));
    }
}

// --- ws_inflate: permessage-deflate ---------------------------------------------------------

/// Inflate `input` as one compressed message, fed in `pieces` (then byte by byte), with
/// `limit`: the message, or why it was refused. Output never exceeds the limit.
pub fn ws_inflate_in_pieces(
    input: &[u8],
    limit: usize,
    pieces: &[usize],
    no_context: bool,
) -> Result<Vec<u8>, percore::ws::deflate::InflateError> {
    let mut inflater = percore::ws::deflate::Inflater::new(no_context);
    let mut out = bytes::BytesMut::new();
    let (mut at, mut next) = (0, 0);
    while at < input.len() {
        let n = pieces.get(next).copied().unwrap_or(1).clamp(1, input.len() - at);
        next += 1;
        let fed = inflater.feed(&input[at..at + n], &mut out, limit);
        assert!(out.len() <= limit + 1, "{} bytes inflated with a limit of {limit}", out.len());
        fed?;
        assert!(out.len() <= limit, "{} bytes inflated with a limit of {limit}", out.len());
        at += n;
    }
    inflater.finish(&mut out, limit)?;
    assert!(out.len() <= limit, "{} bytes inflated with a limit of {limit}", out.len());
    Ok(out.to_vec())
}

/// The inflater of permessage-deflate (`ws/deflate/`). The first byte picks the limit
/// (64 B, 4 KiB, 1 MiB), context takeover and a window for the deflater; the rest is:
/// (a) a compressed message: inflated in one piece, byte by byte and in random pieces, with
/// the same result (message or error kind), never more output than the limit, and memory
/// held within a small multiple of the limit whatever the ratio (a deflate bomb costs
/// nothing); (b) a message: compressed by the server's deflater (twice, so the second may
/// refer back to the first) and inflated again, byte for byte, refused if one byte over.
pub fn check_ws_inflate(data: &[u8]) {
    let Some((&control, input)) = data.split_first() else { return };
    let limit = [64, 4096, 1 << 20][usize::from(control & 3) % 3];
    let no_context = control & 4 != 0;
    let window = 9 + (control >> 3) % 7;

    let (one, peak) = peak_during(|| ws_inflate_in_pieces(input, limit, &[input.len()], no_context));
    // The inflater's state (a 32 KiB window and its tables) and an output buffer that grows
    // by doubling up to the limit (the old and the new buffer both held while it moves):
    // a multiple of the limit, never of what the input would inflate to.
    let bound = 3 * limit + 256 * 1024;
    assert!(peak <= bound, "{peak} bytes held inflating {} bytes with a limit of {limit}", input.len());
    let bytewise = ws_inflate_in_pieces(input, limit, &[], no_context);
    assert_eq!(one, bytewise, "one piece vs byte by byte, limit {limit}: {}", show(data));
    let mut rng = Rng::new(hash(data));
    let pieces: Vec<usize> = (0..input.len()).map(|_| rng.size(300)).collect();
    let random = ws_inflate_in_pieces(input, limit, &pieces, no_context);
    assert_eq!(one, random, "one piece vs {pieces:?}, limit {limit}: {}", show(data));

    let mut deflater = percore::ws::deflate::Deflater::new(window, no_context);
    let mut inflater = percore::ws::deflate::Inflater::new(no_context);
    for _ in 0..2 {
        let z = deflater.compress(input).to_vec();
        let mut out = bytes::BytesMut::new();
        inflater.feed(&z, &mut out, input.len()).expect("the deflater's output inflates");
        inflater.finish(&mut out, input.len()).expect("the deflater's output inflates");
        assert_eq!(&out[..], input, "round trip, window {window}, no context {no_context}");
    }
    if !input.is_empty() {
        let z = percore::ws::deflate::Deflater::new(window, true).compress(input).to_vec();
        let over = ws_inflate_in_pieces(&z, input.len() - 1, &[z.len()], true);
        assert_eq!(over, Err(percore::ws::deflate::InflateError::TooBig), "one byte over the limit");
    }
}

/// The checks by target name, for running a corpus directory.
pub fn check_for(target: &str) -> Option<fn(&[u8])> {
    Some(match target {
        "head" => check_head,
        "chunked" => check_chunked,
        "driver" => check_driver,
        "differential" => check_differential,
        "proxy" => check_proxy,
        "ws_frame" => check_ws_frame,
        "ws_inflate" => check_ws_inflate,
        _ => return None,
    })
}
