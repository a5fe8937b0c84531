//! Request heads: httparse finds the fields in place, then the RFC 9112 framing rules decide
//! how the body is delimited, or refuse the request. The result keeps only offsets into the
//! read buffer, so nothing is copied unless a handler asks to own a value.

use std::mem::MaybeUninit;
use std::ops::Range;

use bytes::Bytes;

use super::error::ParseError;
use super::is_tchar;

pub(in crate::http) mod one_pass;
mod scan;

/// Limits applied while a head is parsed. Each one is a command-line flag.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest request line (method, target, version) in bytes; longer -> 414.
    pub max_request_line: usize,
    /// Longest single header field line in bytes; longer -> 431.
    pub max_header_field: usize,
    /// Largest header block (all field lines) in bytes; larger -> 431.
    pub max_header_block: usize,
    /// Most header fields; more -> 431.
    pub max_headers: usize,
    /// Largest request body in bytes; larger -> 413.
    pub max_body: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_line: 8 * 1024,
            max_header_field: 8 * 1024,
            max_header_block: 64 * 1024,
            max_headers: 100,
            max_body: 16 * 1024 * 1024,
        }
    }
}

/// Header arrays up to this size live on the stack; larger limits use the heap.
const STACK_HEADERS: usize = 128;

/// The protocol version of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// How the request body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// Exactly this many bytes (never 0: that is `None`).
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
}

type Span = Range<u32>;

/// A complete, validated request head, as offsets into the bytes it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedHead {
    /// Bytes the head occupies at the start of the buffer (including the empty line).
    pub len: usize,
    pub version: Version,
    pub framing: Framing,
    /// Whether the connection may carry another request after this one.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request.
    pub expect_continue: bool,
    /// `TE: trailers`: the client accepts trailer fields in a chunked response.
    pub accepts_trailers: bool,
    /// A forwarding field is present (`Forwarded`, `X-Forwarded-*`): only then is there
    /// anything for a trusted proxy's rules to read.
    pub forwarding: bool,
    method: Span,
    target: Span,
    path: Span,
    query: Option<Span>,
    /// The authority of an absolute-form or authority-form (CONNECT) target.
    authority: Option<Span>,
    /// The field lines, from the first to the empty line that ends the head (excluded).
    /// Read again line by line when a handler asks for a field: kept as one span rather
    /// than a list of spans, so a request allocates nothing for its fields.
    fields: Span,
    /// How many field lines there are.
    field_count: u32,
}

impl ParsedHead {
    /// Attach the head's own bytes (the first `len` bytes of the parsed buffer).
    pub fn into_head(self, bytes: Bytes) -> RequestHead {
        debug_assert_eq!(bytes.len(), self.len);
        RequestHead { bytes, parsed: self }
    }
}

/// A request head that owns its bytes (a cheap slice of the connection's read buffer).
#[derive(Debug, Clone)]
pub struct RequestHead {
    bytes: Bytes,
    parsed: ParsedHead,
}

impl RequestHead {
    /// Give the head an allocation of its own. Parsed in place, it shares the connection's
    /// read buffer (a few KiB): a head kept for long (a WebSocket handler's request, for
    /// the WebSocket's life) would keep all of that.
    pub fn unshare(&mut self) {
        self.bytes = Bytes::copy_from_slice(&self.bytes);
    }

    fn str_at(&self, span: &Span) -> &str {
        // SAFETY: every span that reaches here was checked to be ASCII during parsing
        // (method and header names are tokens, the target is checked explicitly).
        unsafe { std::str::from_utf8_unchecked(&self.bytes[span.start as usize..span.end as usize]) }
    }

    /// The method, e.g. `GET`.
    pub fn method(&self) -> &str {
        self.str_at(&self.parsed.method)
    }

    /// The request target as sent (origin-, absolute-, authority- or asterisk-form).
    pub fn target(&self) -> &str {
        self.str_at(&self.parsed.target)
    }

    /// The path: `/a/b` for `/a/b?x=1` and for `http://host/a/b?x=1`; `*` for asterisk-form.
    pub fn path(&self) -> &str {
        match self.str_at(&self.parsed.path) {
            "" => "/", // absolute-form with an empty path (`http://host?x`)
            p => p,
        }
    }

    /// The query string without its `?`, if any.
    pub fn query(&self) -> Option<&str> {
        self.parsed.query.as_ref().map(|q| self.str_at(q))
    }

    /// The authority (`host[:port]`) of an absolute-form target (`http://host/a`) or of a
    /// CONNECT target; `None` for origin-form (`/a`), where `Host` names it.
    pub fn authority(&self) -> Option<&str> {
        self.parsed.authority.as_ref().map(|a| self.str_at(a))
    }

    /// `part` (a value borrowed from this head) as shared bytes, without a copy.
    pub fn bytes_of(&self, part: &[u8]) -> Bytes {
        self.bytes.slice_ref(part)
    }

    pub fn version(&self) -> Version {
        self.parsed.version
    }

    pub fn framing(&self) -> Framing {
        self.parsed.framing
    }

    pub fn keep_alive(&self) -> bool {
        self.parsed.keep_alive
    }

    pub fn expect_continue(&self) -> bool {
        self.parsed.expect_continue
    }

    /// How many header fields the head has.
    pub fn header_count(&self) -> usize {
        self.parsed.field_count as usize
    }

    /// All header fields in order, names as sent.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        FieldLines { rest: &self.bytes[self.parsed.fields.start as usize..self.parsed.fields.end as usize] }
    }

    /// Whether the client accepts trailer fields in a chunked response (`TE: trailers`).
    pub fn accepts_trailers(&self) -> bool {
        self.parsed.accepts_trailers
    }

    /// Whether the head has a forwarding field (`Forwarded` or `X-Forwarded-*`).
    pub fn has_forwarding_fields(&self) -> bool {
        self.parsed.forwarding
    }

    /// The first value of a header, matched case-insensitively.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v)
    }
}

/// Parse a request head from the start of `buf`.
///
/// `Ok(None)` means the head is not complete yet (and is still within the limits);
/// the caller reads more and calls again with the longer buffer.
///
/// A complete head in the usual form is parsed in one pass of our own ([`one_pass`]); any
/// other (still arriving, unusual, or refused) goes to [`parse_head_httparse`], which gives
/// the same result for every head the first accepts and decides everything else.
#[inline]
pub fn parse_head(buf: &[u8], limits: &Limits) -> Result<Option<ParsedHead>, ParseError> {
    match one_pass::parse(buf, limits) {
        Some(head) => Ok(Some(head)),
        None => parse_head_httparse(buf, limits),
    }
}

/// [`parse_head`] with httparse finding the request line and the fields: every head, every
/// error and its precedence.
#[inline(never)]
pub(in crate::http) fn parse_head_httparse(
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<ParsedHead>, ParseError> {
    let max = limits.max_headers.max(1);
    let mut stack: [MaybeUninit<httparse::Header<'_>>; STACK_HEADERS] =
        [const { MaybeUninit::uninit() }; STACK_HEADERS];
    let mut heap: Vec<MaybeUninit<httparse::Header<'_>>> = Vec::new();
    let slots: &mut [MaybeUninit<httparse::Header<'_>>] = if max <= STACK_HEADERS {
        &mut stack[..max]
    } else {
        heap.resize_with(max, MaybeUninit::uninit);
        &mut heap[..]
    };
    let mut req = httparse::Request::new(&mut []);
    let status = httparse::ParserConfig::default().parse_request_with_uninit_headers(&mut req, buf, slots);
    let len = match status {
        Ok(httparse::Status::Complete(len)) => len,
        // The request line is measured first: a line over its limit is refused as such,
        // whatever else is wrong with the head or still missing.
        Ok(httparse::Status::Partial) => {
            let line = RequestLine::find(buf, limits)?;
            check_partial(buf, line.start, line.len, line.complete, limits)?;
            return Ok(None);
        }
        Err(e) => {
            let line = RequestLine::find(buf, limits)?;
            return Err(map_httparse_error(e, &buf[line.start..]));
        }
    };

    let base = buf.as_ptr() as usize;
    let method_str = req.method.unwrap_or("");
    let target_str = req.path.unwrap_or("");
    // A complete head's request line is exactly `method SP target SP HTTP/1.x` and its line
    // ending (httparse allows no other spacing), after any empty lines (RFC 9112 §2.2), which
    // count towards the line's limit as they do while it is arriving.
    let line_end = target_str.as_ptr() as usize - base + target_str.len() + " HTTP/1.x".len();
    debug_assert!(buf[line_end] == b'\r' || buf[line_end] == b'\n');
    if line_end > limits.max_request_line {
        return Err(ParseError::RequestLineTooLong);
    }
    let fields_start = line_end + 1 + usize::from(buf[line_end] == b'\r');

    let span = |s: &[u8]| -> Span {
        let from = s.as_ptr() as usize - base;
        from as u32..(from + s.len()) as u32
    };

    let version = match req.version {
        Some(0) => Version::Http10,
        _ => Version::Http11,
    };
    let method = span(method_str.as_bytes());
    let target = span(target_str.as_bytes());

    // Header block size: everything after the request line.
    let block = &buf[fields_start..len];
    if block.len() > limits.max_header_block {
        return Err(ParseError::HeadersTooLarge);
    }
    check_field_lines(block, limits)?;

    let Target { path, query, authority } = split_target(method_str, target_str.as_bytes(), target.start)?;

    let mut rules = FieldRules::new(version);
    for h in req.headers.iter() {
        rules.add(h.name.as_bytes(), h.value)?;
    }
    let FieldsSaid { framing, keep_alive, expect_continue, accepts_trailers, forwarding } =
        rules.finish(limits)?;

    Ok(Some(ParsedHead {
        len,
        version,
        framing,
        keep_alive,
        expect_continue,
        accepts_trailers,
        forwarding,
        method,
        target,
        path,
        query,
        authority,
        // Without the empty line that ends the head (CRLF or a bare LF).
        fields: fields_start as u32..(len - 1 - usize::from(buf[len - 2] == b'\r')).max(fields_start) as u32,
        field_count: req.headers.len() as u32,
    }))
}

/// The framing rules over a head's fields, one field at a time (RFC 9112 §6.3, §3.2, §9.6;
/// RFC 9110 §10.1.1): each field is checked as it comes, and `finish` decides the framing.
/// Both parsers of a head ([`parse_head`]'s own and httparse's) apply exactly these.
struct FieldRules {
    version: Version,
    hosts: u32,
    content_length: Option<u64>,
    te: TransferCodings,
    saw_te: bool,
    conn_close: bool,
    conn_keep_alive: bool,
    expect_continue: bool,
    /// An `Expect` other than `100-continue` (417), answered only once the head is
    /// otherwise sound: a missing `Host` or a broken framing is the 400 it must get.
    unsupported_expect: bool,
    accepts_trailers: bool,
    forwarding: bool,
}

/// What a head's fields say, once every rule passed.
struct FieldsSaid {
    framing: Framing,
    keep_alive: bool,
    expect_continue: bool,
    accepts_trailers: bool,
    forwarding: bool,
}

impl FieldRules {
    fn new(version: Version) -> FieldRules {
        FieldRules {
            version,
            hosts: 0,
            content_length: None,
            te: TransferCodings::default(),
            saw_te: false,
            conn_close: false,
            conn_keep_alive: false,
            expect_continue: false,
            unsupported_expect: false,
            accepts_trailers: false,
            forwarding: false,
        }
    }

    /// One field: `value` without the whitespace around it, as httparse gives it.
    #[inline]
    fn add(&mut self, name: &[u8], value: &[u8]) -> Result<(), ParseError> {
        match name.len() {
            4 if token_is(name, b"host") => {
                self.hosts += 1;
                // `uri-host [ ":" port ]` (RFC 9112 §3.2), or empty when the target has no
                // authority; anything else (a path, userinfo, spaces, a bad port) is refused.
                let value = trim_ows(value);
                if !value.is_empty() && check_authority(value, false).is_err() {
                    return Err(ParseError::InvalidHost);
                }
            }
            2 if token_is(name, b"te") => {
                self.accepts_trailers |= value.split(|&b| b == b',').any(|coding| {
                    let name = coding.split(|&b| b == b';').next().unwrap_or(coding);
                    trim_ows(name).eq_ignore_ascii_case(b"trailers")
                });
            }
            6 if token_is(name, b"expect") => {
                let v = trim_ows(value);
                if v.eq_ignore_ascii_case(b"100-continue") {
                    self.expect_continue = true;
                } else if !v.is_empty() && self.version == Version::Http11 {
                    self.unsupported_expect = true;
                }
            }
            10 if token_is(name, b"connection") => {
                for token in value.split(|&b| b == b',').map(trim_ows) {
                    if token.eq_ignore_ascii_case(b"close") {
                        self.conn_close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        self.conn_keep_alive = true;
                    }
                }
            }
            14 if token_is(name, b"content-length") => {
                let n = parse_content_length(value)?;
                match self.content_length {
                    Some(prev) if prev != n => return Err(ParseError::InvalidContentLength),
                    _ => self.content_length = Some(n),
                }
            }
            17 if token_is(name, b"transfer-encoding") => {
                self.saw_te = true;
                self.te.add(value)?;
            }
            // None of the names above is `Forwarded` or `X-Forwarded-*`, so only the others
            // are looked at for those.
            _ => self.forwarding |= is_forwarding_name(name),
        }
        Ok(())
    }

    /// The rules over all the fields together: one `Host`, and how the body is delimited.
    fn finish(self, limits: &Limits) -> Result<FieldsSaid, ParseError> {
        let version = self.version;
        if version == Version::Http11 && self.hosts == 0 {
            return Err(ParseError::MissingHost);
        }
        if self.hosts > 1 {
            return Err(ParseError::DuplicateHost);
        }
        let framing = if self.saw_te {
            if version == Version::Http10 {
                return Err(ParseError::TransferEncodingInHttp10);
            }
            if self.content_length.is_some() {
                return Err(ParseError::ContentLengthWithTransferEncoding);
            }
            self.te.finish()?;
            Framing::Chunked
        } else {
            match self.content_length {
                Some(0) | None => Framing::None,
                Some(n) if n > limits.max_body => return Err(ParseError::BodyTooLarge),
                Some(n) => Framing::Length(n),
            }
        };
        let keep_alive = match version {
            Version::Http11 => !self.conn_close,
            Version::Http10 => self.conn_keep_alive && !self.conn_close,
        };
        if self.unsupported_expect {
            return Err(ParseError::UnsupportedExpectation);
        }
        Ok(FieldsSaid {
            framing,
            keep_alive,
            expect_continue: self.expect_continue && version == Version::Http11,
            accepts_trailers: self.accepts_trailers,
            forwarding: self.forwarding,
        })
    }
}

/// The request line of a head that was refused (too large, malformed further on, late), for
/// the access log: a head with that line and no fields, when the line is complete and well
/// formed (`METHOD SP target SP HTTP/1.x`) within `max_request_line`; `None` otherwise.
pub fn refused_request_line(buf: &[u8], limits: &Limits) -> Option<RequestHead> {
    let start = buf.iter().position(|&b| b != b'\r' && b != b'\n')?;
    let rest = &buf[start..];
    let end = rest.iter().take(limits.max_request_line + 2).position(|&b| b == b'\n')?;
    let line = rest[..end].strip_suffix(b"\r")?;
    let mut parts = line.split(|&b| b == b' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    let version = match version {
        b"HTTP/1.1" => Version::Http11,
        b"HTTP/1.0" => Version::Http10,
        _ => return None,
    };
    let target_ok = !target.is_empty() && target.iter().all(|&b| b.is_ascii_graphic());
    if parts.next().is_some() || method.is_empty() || !method.iter().all(|&b| is_tchar(b)) || !target_ok {
        return None;
    }
    let len = start + end + 1;
    let at = |part: &[u8]| -> Span {
        let from = (part.as_ptr() as usize - buf.as_ptr() as usize) as u32;
        from..from + part.len() as u32
    };
    let target_span = at(target);
    let method_str = std::str::from_utf8(method).ok()?;
    // A target whose form is wrong still shows as sent; its path is then all of it.
    let Target { path, query, authority } = split_target(method_str, target, target_span.start)
        .unwrap_or(Target { path: target_span.clone(), query: None, authority: None });
    let parsed = ParsedHead {
        len,
        version,
        framing: Framing::None,
        keep_alive: false,
        expect_continue: false,
        accepts_trailers: false,
        forwarding: false,
        method: at(method),
        target: target_span,
        path,
        query,
        authority,
        fields: len as u32..len as u32,
        field_count: 0,
    };
    Some(parsed.into_head(Bytes::copy_from_slice(&buf[..len])))
}

/// What is known of a head that is still arriving, so that a client sending it a few bytes
/// per read does not make the server parse it from its start on every read (a 64 KiB head
/// one byte at a time would cost 64 Ki full parses).
///
/// A full parse can only have a new answer when a line was completed since the last one (the
/// head may now be complete, or a finished line may break a rule), or when the line still
/// arriving has grown past the smallest line limit. Otherwise the bytes that arrived are
/// scanned once, and only they.
#[derive(Debug, Clone, Default)]
pub struct HeadProgress {
    /// Bytes of the buffer already scanned.
    scanned: usize,
    /// Where the line still arriving starts.
    line_start: usize,
    /// Whether the request line is complete (the line arriving is a header field).
    past_request_line: bool,
}

impl HeadProgress {
    /// Whether `parse_head(buf)` must run now; `buf` is the previous buffer plus what was read
    /// since (a head being read, nothing consumed from its front).
    pub fn needs_parse(&mut self, buf: &[u8], limits: &Limits) -> bool {
        let from = self.scanned.min(buf.len());
        self.scanned = buf.len();
        if let Some(nl) = buf[from..].iter().rposition(|&b| b == b'\n') {
            self.line_start = from + nl + 1;
            // Empty lines before the request line do not end it (RFC 9112 §2.2).
            self.past_request_line =
                self.past_request_line || buf[..self.line_start].iter().any(|&b| b != b'\r' && b != b'\n');
            return true;
        }
        // Within every limit so far: nothing a parse could refuse or finish yet.
        // Before the request line is done, empty lines before it count towards its limit.
        let (line, line_limit) = if self.past_request_line {
            (buf.len() - self.line_start, limits.max_header_field)
        } else {
            (buf.len(), limits.max_request_line)
        };
        line > line_limit || buf.len() > limits.max_request_line.saturating_add(limits.max_header_block)
    }
}

/// Where the request line of a head that httparse did not accept (yet) is, once checked
/// against `max_request_line`.
struct RequestLine {
    /// Where it starts, after any empty lines.
    start: usize,
    /// Its bytes up to the LF that ends it, or to the end of the buffer.
    len: usize,
    /// Whether its LF has arrived.
    complete: bool,
}

impl RequestLine {
    fn find(buf: &[u8], limits: &Limits) -> Result<RequestLine, ParseError> {
        let start = buf.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(buf.len());
        let line_end = memchr_nl(&buf[start..]);
        let len = line_end.unwrap_or(buf.len() - start);
        // The same measure whether the line is complete or still arriving: its bytes without
        // the CR (or LF) that ends it, so the result never depends on where a read ended.
        if start + line_length(&buf[start..start + len]) > limits.max_request_line {
            return Err(ParseError::RequestLineTooLong);
        }
        Ok(RequestLine { start, len, complete: line_end.is_some() })
    }
}

/// The field lines of a head that [`parse_head`] accepted, read again. httparse allows each
/// only as `name ":" OWS value OWS` and a CRLF or LF (no whitespace before the colon, no
/// obsolete line folding), and gives the value without the whitespace around it; so does this.
struct FieldLines<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for FieldLines<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let end = memchr_nl(self.rest).unwrap_or(self.rest.len());
        let line = &self.rest[..end];
        self.rest = &self.rest[(end + 1).min(self.rest.len())..];
        let colon = line.iter().position(|&b| b == b':').unwrap_or(line.len());
        // SAFETY: httparse accepted the name as a token: ASCII.
        let name = unsafe { std::str::from_utf8_unchecked(&line[..colon]) };
        let value = line.get(colon + 1..).unwrap_or_default();
        let value = value.strip_suffix(b"\r").unwrap_or(value);
        Some((name, trim_ows(value)))
    }
}

/// A head that is still arriving must already respect the limits, or a client could make the
/// server buffer without bound.
fn check_partial(
    buf: &[u8],
    start: usize,
    request_line_len: usize,
    line_complete: bool,
    limits: &Limits,
) -> Result<(), ParseError> {
    if !line_complete {
        return Ok(()); // measured against max_request_line above
    }
    let block = &buf[start + request_line_len + 1..];
    if block.len() > limits.max_header_block {
        return Err(ParseError::HeadersTooLarge);
    }
    check_field_lines(block, limits)
}

/// Every field line, complete or still arriving, measured the one way: its raw bytes
/// (name, colon, whitespace, value) without the line ending.
fn check_field_lines(block: &[u8], limits: &Limits) -> Result<(), ParseError> {
    // No line can be longer than the whole block: the usual small head needs no scan.
    if block.len() <= limits.max_header_field {
        return Ok(());
    }
    if block.split(|&b| b == b'\n').any(|line| line_length(line) > limits.max_header_field) {
        return Err(ParseError::HeaderFieldTooLarge);
    }
    Ok(())
}

/// Whether `name`, a token, is `lower` (lowercase letters and `-`) in any case: a token byte
/// with its case bit set equals a letter only if it is that letter in either case, and
/// equals `-` only if it is `-` (CR, the other byte that would, is no token byte).
/// Names of 4 to 16 bytes (every name the rules look for but `te`) are compared a word at a
/// time: two words, or two halves, that overlap in the middle.
#[inline]
fn token_is(name: &[u8], lower: &[u8]) -> bool {
    debug_assert!(lower.iter().all(|&b| b.is_ascii_lowercase() || b == b'-'));
    let n = name.len();
    if n != lower.len() {
        return false;
    }
    let u64_at = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("eight bytes"));
    let u32_at = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().expect("four bytes"));
    match n {
        8..=16 => {
            const CASE: u64 = 0x2020_2020_2020_2020;
            u64_at(name, 0) | CASE == u64_at(lower, 0) && u64_at(name, n - 8) | CASE == u64_at(lower, n - 8)
        }
        4..=7 => {
            const CASE: u32 = 0x2020_2020;
            u32_at(name, 0) | CASE == u32_at(lower, 0) && u32_at(name, n - 4) | CASE == u32_at(lower, n - 4)
        }
        _ => name.iter().zip(lower).all(|(&n, &l)| n | 0x20 == l),
    }
}

/// `Forwarded` or `X-Forwarded-*`, in any case.
fn is_forwarding_name(name: &[u8]) -> bool {
    const PREFIX: &[u8] = b"x-forwarded-";
    token_is(name, b"forwarded") || (name.len() > PREFIX.len() && token_is(&name[..PREFIX.len()], PREFIX))
}

/// A line's length without a CR that ends it (the LF is not part of `line`).
fn line_length(line: &[u8]) -> usize {
    line.len() - usize::from(line.last() == Some(&b'\r'))
}

fn map_httparse_error(e: httparse::Error, line: &[u8]) -> ParseError {
    match e {
        httparse::Error::HeaderName => ParseError::InvalidHeaderName,
        httparse::Error::HeaderValue => ParseError::InvalidHeaderValue,
        httparse::Error::TooManyHeaders => ParseError::TooManyHeaders,
        httparse::Error::Version => version_error(line),
        httparse::Error::Token => token_error(line),
        _ => ParseError::MalformedHead,
    }
}

/// httparse reports `Token` for a bad method and for a bad target; tell them apart.
fn token_error(line: &[u8]) -> ParseError {
    let method_end = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    let method_ok = method_end > 0 && line[..method_end].iter().all(|&b| is_tchar(b));
    if method_ok {
        ParseError::InvalidTarget
    } else {
        ParseError::InvalidMethod
    }
}

/// A well-formed `HTTP/<digit>...` version this server does not speak gets 505 (this covers
/// the HTTP/2 preface `PRI * HTTP/2.0`); anything else in that place is a malformed request.
fn version_error(line: &[u8]) -> ParseError {
    let end = line.iter().position(|&b| b == b'\r' || b == b'\n').unwrap_or(line.len());
    let mut parts = line[..end].split(|&b| b == b' ');
    let (_, _, version, rest) = (parts.next(), parts.next(), parts.next(), parts.next());
    match (version, rest) {
        (Some(v), None) if v.len() >= 6 && v.starts_with(b"HTTP/") && v[5].is_ascii_digit() => {
            ParseError::UnsupportedVersion
        }
        _ => ParseError::MalformedHead,
    }
}

fn memchr_nl(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|&b| b == b'\n')
}

/// Trim optional whitespace (SP / HTAB) from both ends.
fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|&b| b != b' ' && b != b'\t').unwrap_or(v.len());
    let end = v.iter().rposition(|&b| b != b' ' && b != b'\t').map_or(start, |i| i + 1);
    &v[start..end]
}

/// `Content-Length = 1*DIGIT`; a list of identical values (`5, 5`) is accepted as one value
/// (RFC 9112 §6.3 rule 5), anything else — signs, hex, spaces inside, overflow — is refused.
fn parse_content_length(value: &[u8]) -> Result<u64, ParseError> {
    let mut result: Option<u64> = None;
    for item in value.split(|&b| b == b',') {
        let item = trim_ows(item);
        if item.is_empty() || item.len() > 19 || !item.iter().all(u8::is_ascii_digit) {
            return Err(ParseError::InvalidContentLength);
        }
        let n = item
            .iter()
            .try_fold(0u64, |acc, &d| acc.checked_mul(10)?.checked_add(u64::from(d - b'0')))
            .ok_or(ParseError::InvalidContentLength)?;
        match result {
            Some(prev) if prev != n => return Err(ParseError::InvalidContentLength),
            _ => result = Some(n),
        }
    }
    result.ok_or(ParseError::InvalidContentLength)
}

/// The codings named by all Transfer-Encoding fields, in order.
#[derive(Default)]
struct TransferCodings {
    count: u32,
    chunked: u32,
    last_is_chunked: bool,
    unknown: bool,
}

impl TransferCodings {
    fn add(&mut self, value: &[u8]) -> Result<(), ParseError> {
        for coding in value.split(|&b| b == b',').map(trim_ows) {
            if coding.is_empty() {
                return Err(ParseError::InvalidTransferEncoding);
            }
            self.count += 1;
            self.last_is_chunked = coding.eq_ignore_ascii_case(b"chunked");
            if self.last_is_chunked {
                self.chunked += 1;
            } else if !KNOWN_CODINGS.iter().any(|k| coding.eq_ignore_ascii_case(k)) {
                self.unknown = true;
            }
        }
        Ok(())
    }

    /// Only a single, final `chunked` is a body this server can delimit.
    fn finish(&self) -> Result<(), ParseError> {
        if self.count == 0 {
            return Err(ParseError::InvalidTransferEncoding);
        }
        if self.unknown {
            return Err(ParseError::UnsupportedTransferCoding);
        }
        if !self.last_is_chunked || self.chunked > 1 {
            return Err(ParseError::InvalidTransferEncoding);
        }
        if self.count > 1 {
            // e.g. `gzip, chunked`: valid HTTP, but no transfer decompression here.
            return Err(ParseError::UnsupportedTransferCoding);
        }
        Ok(())
    }
}

const KNOWN_CODINGS: [&[u8]; 5] = [b"gzip", b"x-gzip", b"deflate", b"compress", b"x-compress"];

/// Where the parts of a request target are.
struct Target {
    path: Span,
    query: Option<Span>,
    authority: Option<Span>,
}

/// Work out path, query and authority from the target and check its form (RFC 9112 §3.2).
fn split_target(method: &str, target: &[u8], offset: u32) -> Result<Target, ParseError> {
    if target.is_empty() || !target.is_ascii() {
        return Err(ParseError::InvalidTarget);
    }
    let at = |from: usize, to: usize| -> Span { offset + from as u32..offset + to as u32 };
    if method == "CONNECT" {
        // authority-form only (RFC 9112 §3.2.3): `host:port`, nothing else.
        check_authority(target, true)?;
        let all = at(0, target.len());
        return Ok(Target { path: all.clone(), query: None, authority: Some(all) });
    }
    let (path_start, authority) = if target[0] == b'/' {
        (0, None)
    } else if target == b"*" {
        if method != "OPTIONS" {
            return Err(ParseError::InvalidTarget);
        }
        return Ok(Target { path: at(0, 1), query: None, authority: None });
    } else {
        // absolute-form: scheme "://" authority [path-abempty] ["?" query]
        let scheme_end = target.windows(3).position(|w| w == b"://").ok_or(ParseError::InvalidTarget)?;
        let scheme = &target[..scheme_end];
        if !(scheme.eq_ignore_ascii_case(b"http") || scheme.eq_ignore_ascii_case(b"https")) {
            return Err(ParseError::InvalidTarget);
        }
        let authority_start = scheme_end + 3;
        let rest = &target[authority_start..];
        let authority_len = rest.iter().position(|&b| b == b'/' || b == b'?').unwrap_or(rest.len());
        check_authority(&rest[..authority_len], false)?;
        (authority_start + authority_len, Some(at(authority_start, authority_start + authority_len)))
    };
    let rest = &target[path_start..];
    let (path, query) = match rest.iter().position(|&b| b == b'?') {
        Some(q) => (at(path_start, path_start + q), Some(at(path_start + q + 1, target.len()))),
        None => (at(path_start, target.len()), None),
    };
    Ok(Target { path, query, authority })
}

/// The bytes a reg-name or IPv4 host may hold (unreserved, pct-encoded's `%`, sub-delims),
/// by value: one load per byte of every request's `Host`.
static HOST_CHAR: [bool; 256] = super::byte_table(b"-._~%!$&'()*+,;=");

/// An authority as a target may carry it: `host[:port]` with a non-empty host and no
/// userinfo (RFC 9110 §4.2.4: `http://user:pass@host/` is refused), the port all digits
/// and, for CONNECT, present.
// Inlined: every request's `Host` is checked here (the IP literal's part is a call of its own).
#[inline]
fn check_authority(authority: &[u8], port_required: bool) -> Result<(), ParseError> {
    let (host, port) = if let Some(inner) = authority.strip_prefix(b"[") {
        split_ip_literal(inner)?
    } else {
        // A reg-name or IPv4 host, and a port after a colon, in one look at each byte (every
        // request's `Host` comes this way): the name ends at its first byte that is not a
        // host byte, which must be the colon or the end.
        let name_len = authority.iter().position(|&b| !HOST_CHAR[b as usize]).unwrap_or(authority.len());
        match &authority[name_len..] {
            [] => (authority, None),
            [b':', port @ ..] => (&authority[..name_len], Some(port)),
            _ => return Err(ParseError::InvalidTarget),
        }
    };
    let host_ok = !host.is_empty();
    let port_ok = match port {
        None => !port_required,
        Some(p) => p.len() <= 5 && p.iter().all(u8::is_ascii_digit) && !(port_required && p.is_empty()),
    };
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(ParseError::InvalidTarget)
    }
}

/// An IPv6 address in brackets (`inner`: what follows the `[`), and what follows it: its
/// address and its port, if any.
#[inline(never)]
fn split_ip_literal(inner: &[u8]) -> Result<(&[u8], Option<&[u8]>), ParseError> {
    let close = inner.iter().position(|&b| b == b']').ok_or(ParseError::InvalidTarget)?;
    let literal = std::str::from_utf8(&inner[..close]).map_err(|_| ParseError::InvalidTarget)?;
    literal.parse::<std::net::Ipv6Addr>().map_err(|_| ParseError::InvalidTarget)?;
    match &inner[close + 1..] {
        [] => Ok((&inner[..close], None)),
        [b':', port @ ..] => Ok((&inner[..close], Some(port))),
        _ => Err(ParseError::InvalidTarget),
    }
}

#[cfg(test)]
mod tests {
    use super::token_is;

    /// `check_authority` says what the three-pass form it replaced says (the host up to the
    /// first colon, then each of its bytes a host byte, then the port), for every value up to
    /// six bytes long over an alphabet of host bytes, digits and the bytes that matter (`:`,
    /// brackets, `@`, `/`, space, `%`), with and without a required port.
    #[test]
    fn check_authority_agrees_with_its_three_pass_form() {
        use super::{check_authority, ParseError, HOST_CHAR};
        fn three_pass(authority: &[u8], port_required: bool) -> bool {
            let (host, port) = match authority.iter().position(|&b| b == b':') {
                Some(colon) => (&authority[..colon], Some(&authority[colon + 1..])),
                None => (authority, None),
            };
            let host_ok = !host.is_empty() && host.iter().all(|&b| HOST_CHAR[b as usize]);
            let port_ok = match port {
                None => !port_required,
                Some(p) => {
                    p.len() <= 5 && p.iter().all(u8::is_ascii_digit) && !(port_required && p.is_empty())
                }
            };
            host_ok && port_ok
        }
        const ALPHABET: &[u8] = b"a1.:[]@/ %-";
        let mut value = Vec::new();
        let mut checked = 0;
        for len in 0..=6u32 {
            for mut n in 0..(ALPHABET.len() as u64).pow(len) {
                value.clear();
                for _ in 0..len {
                    value.push(ALPHABET[(n % ALPHABET.len() as u64) as usize]);
                    n /= ALPHABET.len() as u64;
                }
                if value.first() == Some(&b'[') {
                    continue; // IP literals: the same code as before
                }
                for required in [false, true] {
                    let now = check_authority(&value, required);
                    assert!(matches!(now, Ok(()) | Err(ParseError::InvalidTarget)));
                    assert_eq!(
                        now.is_ok(),
                        three_pass(&value, required),
                        "{:?}",
                        String::from_utf8_lossy(&value)
                    );
                }
                checked += 1;
            }
        }
        assert!(checked > 1_000_000);
        assert!(
            check_authority(b"127.0.0.1:18970", false).is_ok()
                && check_authority(b"example.com", false).is_ok()
        );
        assert!(
            check_authority(b"example.com:123456", false).is_err()
                && check_authority(b"a:1:2", false).is_err()
        );
    }

    /// The word-at-a-time comparison gives what comparing byte by byte gives, for every name
    /// the rules look for against itself in any case, with any one byte changed, and longer
    /// or shorter.
    #[test]
    fn token_is_compares_as_byte_by_byte() {
        let bytewise = |name: &[u8], lower: &[u8]| {
            name.len() == lower.len() && name.iter().zip(lower).all(|(&n, &l)| n | 0x20 == l)
        };
        let names: [&[u8]; 8] = [
            b"te",
            b"host",
            b"expect",
            b"forwarded",
            b"connection",
            b"x-forwarded-",
            b"content-length",
            b"transfer-encoding",
        ];
        for lower in names {
            let upper = lower.to_ascii_uppercase();
            assert!(token_is(lower, lower) && token_is(&upper, lower));
            for at in 0..lower.len() {
                for b in [b'!', b'a', b'Z', b'-', b'0', b'~', b'^', b'_'] {
                    let mut name = lower.to_vec();
                    name[at] = b;
                    assert_eq!(token_is(&name, lower), bytewise(&name, lower), "{name:?} vs {lower:?}");
                }
            }
            assert!(!token_is(&lower[1..], lower));
            assert!(!token_is(&[lower, b"s"].concat(), lower));
        }
    }
}
