//! The response a handler returns: a status, headers and a full or streamed body.

use std::borrow::Cow;
use std::fmt;
use std::mem;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_core::Stream;

pub use super::fields::Fields;

/// A stream of body chunks, sent with chunked transfer coding.
pub type BodyStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>>>>;

/// One piece of a framed response body: data, or the trailer fields that end it.
#[derive(Debug, Clone)]
pub enum Frame {
    Data(Bytes),
    /// Sent as chunked trailers when the client said `TE: trailers`, otherwise dropped.
    /// Framing fields (`content-length`, `transfer-encoding`, ...) are always dropped.
    Trailers(Vec<(Cow<'static, str>, Bytes)>),
}

/// A stream of [`Frame`]s.
pub type FrameStream = Pin<Box<dyn Stream<Item = std::io::Result<Frame>>>>;

/// A response body.
pub enum ResponseBody {
    Empty,
    Full(Bytes),
    /// Sent chunk by chunk as the stream yields; an error ends the connection mid-body.
    Stream(BodyStream),
    /// Frames as they come: with `length`, sent with `Content-Length` (a stream that yields
    /// more or less than that ends the connection, so a client never takes a short body for
    /// a whole one); without, chunked, its trailers included.
    Frames {
        frames: FrameStream,
        length: Option<u64>,
    },
}

/// A header field checked when it is made: made in a `const`, at compile time, so a handler
/// that adds it to every response ([`Response::with_static_header`]) pays for no checks.
///
/// ```
/// use percore::app::response::StaticHeader;
/// const TEXT: StaticHeader = StaticHeader::new("content-type", b"text/plain");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct StaticHeader {
    name: &'static str,
    value: &'static [u8],
}

impl StaticHeader {
    /// # Panics
    /// As [`Response::with_header`] does, if `name` is not a token or `value` holds CR, LF or
    /// NUL; in a `const`, that is a compile error.
    pub const fn new(name: &'static str, value: &'static [u8]) -> StaticHeader {
        assert!(crate::http::is_token(name.as_bytes()), "invalid header name");
        assert!(crate::http::is_field_value(value), "invalid header value");
        StaticHeader { name, value }
    }
}

/// An HTTP response. The server adds `date`, the framing headers and `connection` itself.
pub struct Response {
    status: u16,
    headers: Fields,
    body: ResponseBody,
    /// For a `101` accepting a WebSocket: what to run once the connection is handed over.
    /// Boxed: rare, and every response is moved from the handler to the driver.
    upgrade: Option<Box<crate::ws::Upgrade>>,
    /// A `text/event-stream` made by [`Response::sse`]: each chunk is one whole event, so the
    /// driver may end the body between any two (on drain) and sends keepalive comments while
    /// the stream waits. Not inferred from the content type: a stream built by hand may split
    /// an event across chunks.
    event_stream: bool,
}

impl Response {
    /// An empty response with `status`, a three-digit code (panics otherwise). A request's
    /// final answer must be 200–599 (a 101 only from a WebSocket upgrade): the server answers
    /// 500, with an error in the log, in place of any other.
    // The builder's steps are inlined into one another (`always`: each takes and gives back
    // the 120-byte response by value, and a step left as a call costs a copy either way).
    #[inline(always)]
    pub fn new(status: u16) -> Response {
        assert!((100..1000).contains(&status), "invalid status code {status}");
        Response {
            status,
            headers: Fields::default(),
            body: ResponseBody::Empty,
            upgrade: None,
            event_stream: false,
        }
    }

    /// 200 with a `text/plain` body.
    pub fn text(body: impl Into<Bytes>) -> Response {
        Response::new(200).with_known_header("content-type", b"text/plain; charset=utf-8").with_body(body)
    }

    /// 200 with an `application/json` body (already serialized).
    pub fn json(body: impl Into<Bytes>) -> Response {
        Response::new(200).with_known_header("content-type", b"application/json").with_body(body)
    }

    /// A plain-text response whose body is the status and its reason, e.g. `404 Not Found`.
    pub fn status_text(status: u16) -> Response {
        let body = format!("{} {}\n", status, crate::http::response::reason(status));
        Response::new(status).with_known_header("content-type", b"text/plain; charset=utf-8").with_body(body)
    }

    /// 200 with a chunked body from `stream`.
    pub fn stream(stream: impl Stream<Item = std::io::Result<Bytes>> + 'static) -> Response {
        Response::new(200).with_stream(stream)
    }

    /// 200 with a Server-Sent Events body: `text/event-stream`, `cache-control: no-cache` (a
    /// cache must not replay old events) and `x-accel-buffering: no` (nginx would otherwise
    /// hold events in its proxy buffer). Each event is written as soon as the stream yields it;
    /// while it waits, a `: ping` comment goes out every `--sse-ping-interval`. When the
    /// executor drains (SIGTERM, reload, recycling), the body ends between two events with
    /// the chunked terminator, and the client's `EventSource` reconnects, sending
    /// `Last-Event-ID` ([`crate::Request::last_event_id`]) to another executor or process.
    pub fn sse(events: impl Stream<Item = crate::app::sse::Event> + 'static) -> Response {
        Response::event_stream(Encoded(Box::pin(events)))
    }

    /// [`Response::sse`] for events encoded beforehand: each item must be the bytes of one
    /// whole event as [`Event::encode`](crate::app::sse::Event::encode) makes them, so the
    /// same event can be encoded once and sent on many streams.
    pub fn sse_encoded(events: impl Stream<Item = Bytes> + 'static) -> Response {
        Response::event_stream(Preencoded(Box::pin(events)))
    }

    /// The event-stream response around chunks that are whole events each.
    fn event_stream(chunks: impl Stream<Item = std::io::Result<Bytes>> + 'static) -> Response {
        let mut r = Response::new(200)
            .with_header("content-type", Bytes::from_static(b"text/event-stream"))
            .with_header("cache-control", Bytes::from_static(b"no-cache"))
            .with_header("x-accel-buffering", Bytes::from_static(b"no"))
            .with_stream(chunks);
        r.event_stream = true;
        r
    }

    /// Mark a streamed body as an event stream, one whole event per chunk (for the tower
    /// adapter, whose `text/event-stream` bodies, axum's `Sse` among them, yield one event per
    /// data frame): the driver then sends pings while it waits and ends it between events on
    /// drain.
    pub(crate) fn into_event_stream(mut self) -> Response {
        self.event_stream =
            matches!(self.body, ResponseBody::Stream(_) | ResponseBody::Frames { length: None, .. });
        self
    }

    /// Whether the body is an event stream made by [`Response::sse`]; for the connection driver.
    pub(crate) fn is_event_stream(&self) -> bool {
        self.event_stream
    }

    /// Add a header.
    ///
    /// # Panics
    /// If `name` is not a token or `value` holds CR, LF or NUL: such a header would let a
    /// client-controlled value split the response. In a handler the panic becomes a 500.
    #[inline]
    pub fn with_header(mut self, name: impl Into<Cow<'static, str>>, value: impl Into<Bytes>) -> Response {
        self.insert_header(name, value);
        self
    }

    /// Add a header in place; see [`Response::with_header`].
    #[inline]
    pub fn insert_header(&mut self, name: impl Into<Cow<'static, str>>, value: impl Into<Bytes>) {
        let name = name.into();
        let value = value.into();
        if !crate::http::is_token(name.as_bytes()) {
            invalid_name(&name);
        }
        if !crate::http::is_field_value(&value) {
            invalid_value(&name);
        }
        self.headers.push((name, value));
    }

    /// Add a header checked when it was made (see [`StaticHeader`]).
    #[inline(always)]
    pub fn with_static_header(mut self, header: StaticHeader) -> Response {
        self.headers.push((Cow::Borrowed(header.name), Bytes::from_static(header.value)));
        self
    }

    /// Add a header this crate spells itself: a constant, valid name and value, so the
    /// checks of [`Response::insert_header`] would only repeat on every response what the
    /// unit test `known_headers_are_valid` checks once.
    #[inline(always)]
    fn with_known_header(mut self, name: &'static str, value: &'static [u8]) -> Response {
        debug_assert!(name.bytes().all(crate::http::is_tchar) && !value.iter().any(|&b| b < b' '));
        self.headers.push((Cow::Borrowed(name), Bytes::from_static(value)));
        self
    }

    /// Add a header the caller has already checked as [`Response::insert_header`] would (the
    /// tower adapter: the `http` crate's `HeaderName` is always a lowercase token and its
    /// `HeaderValue` never holds CR, LF or NUL), so the checks do not run twice.
    #[cfg(feature = "tower")]
    #[inline]
    pub(crate) fn push_checked_header(&mut self, name: Cow<'static, str>, value: Bytes) {
        debug_assert!(!name.is_empty() && name.bytes().all(crate::http::is_tchar));
        debug_assert!(!value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0));
        self.headers.push((name, value));
    }

    #[inline(always)]
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Response {
        // The body it replaces is most often the empty one `new` made: told so inline,
        // rather than by a call to drop it.
        let old = mem::replace(&mut self.body, ResponseBody::Full(body.into()));
        if matches!(old, ResponseBody::Empty) {
            mem::forget(old);
        }
        self.event_stream = false;
        self
    }

    pub fn with_stream(mut self, stream: impl Stream<Item = std::io::Result<Bytes>> + 'static) -> Response {
        self.body = ResponseBody::Stream(Box::pin(stream));
        self.event_stream = false;
        self
    }

    /// A body of [`Frame`]s, with its exact length when known (then sent with
    /// `Content-Length`; otherwise chunked, trailers included).
    pub fn with_frames(
        mut self,
        frames: impl Stream<Item = std::io::Result<Frame>> + 'static,
        length: Option<u64>,
    ) -> Response {
        self.body = ResponseBody::Frames { frames: Box::pin(frames), length };
        self.event_stream = false;
        self
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    /// Change the status; as in [`Response::new`], a three-digit code. (The server answers
    /// 500 in place of a final status outside 200–599: see `Response::new`.)
    pub fn set_status(&mut self, status: u16) {
        assert!((100..1000).contains(&status), "invalid status code {status}");
        self.status = status;
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v)
    }

    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        self.headers.iter()
    }

    pub fn body(&self) -> &ResponseBody {
        &self.body
    }

    /// Make this response hand the connection over to a WebSocket (see [`crate::ws::Offer`]).
    pub(crate) fn set_upgrade(&mut self, upgrade: crate::ws::Upgrade) {
        self.upgrade = Some(Box::new(upgrade));
    }

    /// The WebSocket this response accepts, if it does; for the connection driver.
    pub(crate) fn take_upgrade(&mut self) -> Option<crate::ws::Upgrade> {
        self.upgrade.take().map(|u| *u)
    }

    /// Split into status, headers and body, for the connection driver.
    /// The fields and the body where they are, the fields to take (the driver encodes a
    /// buffered response from here instead of moving it apart first).
    #[inline]
    pub(crate) fn parts_mut(&mut self) -> (&mut Fields, &ResponseBody) {
        (&mut self.headers, &self.body)
    }

    pub fn into_parts(self) -> (u16, Fields, ResponseBody) {
        (self.status, self.headers, self.body)
    }

    /// Whether the handler asked to close the connection (`connection: close`).
    pub fn wants_close(&self) -> bool {
        self.headers.any(|n, v| {
            n.eq_ignore_ascii_case("connection")
                && v.split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
        })
    }
}

/// The panics of [`Response::insert_header`], out of line so that the checks inline cheaply.
#[cold]
#[inline(never)]
fn invalid_name(name: &str) -> ! {
    panic!("invalid header name {name:?}")
}

#[cold]
#[inline(never)]
fn invalid_value(name: &str) -> ! {
    panic!("invalid header value for {name}")
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body = match &self.body {
            ResponseBody::Empty => "empty".to_string(),
            ResponseBody::Full(b) => format!("{} bytes", b.len()),
            ResponseBody::Stream(_) => "stream".to_string(),
            ResponseBody::Frames { length: Some(n), .. } => format!("{n} bytes in frames"),
            ResponseBody::Frames { length: None, .. } => "frames".to_string(),
        };
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &body)
            .field("upgrade", &self.upgrade)
            .field("event_stream", &self.event_stream)
            .finish()
    }
}

/// Events as body chunks, one whole event each.
struct Encoded(Pin<Box<dyn Stream<Item = crate::app::sse::Event>>>);

impl Stream for Encoded {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.as_mut().poll_next(cx).map(|e| e.map(|e| Ok(e.encode())))
    }
}

/// Events encoded beforehand, as body chunks.
struct Preencoded(Pin<Box<dyn Stream<Item = Bytes>>>);

impl Stream for Preencoded {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.as_mut().poll_next(cx).map(|e| e.map(Ok))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small enough to move without a call to `memcpy` (see [`Fields`]).
    #[test]
    fn a_response_is_at_most_128_bytes() {
        assert!(std::mem::size_of::<Response>() <= 128, "{} bytes", std::mem::size_of::<Response>());
    }

    /// The headers the constructors add unchecked pass the checks of `insert_header`.
    #[test]
    fn known_headers_are_valid() {
        for r in [Response::text("a"), Response::json("{}"), Response::status_text(404)] {
            let mut checked = Response::new(200);
            for (name, value) in r.headers() {
                checked.insert_header(name.to_owned(), Bytes::copy_from_slice(value));
            }
            assert_eq!(checked.headers().count(), 1);
        }
    }

    /// A static header is checked as `insert_header` checks: the same names and values are
    /// refused (here at run time, where the panic can be caught; in a `const`, it would not
    /// compile).
    #[test]
    fn static_headers_are_checked() {
        let made = |name: &'static str, value: &'static [u8]| {
            std::panic::catch_unwind(|| StaticHeader::new(name, value)).is_ok()
        };
        assert!(made("content-type", b"text/plain"));
        assert!(made("x", b""));
        for (name, value) in [("", &b"v"[..]), ("a b", b"v"), ("a:", b"v"), ("a", b"v\r\nx: y"), ("a", b"\0")]
        {
            assert!(!made(name, value), "{name:?}: {value:?}");
            let inserted = std::panic::catch_unwind(|| Response::new(200).with_header(name, value));
            assert!(inserted.is_err(), "{name:?}: {value:?}");
        }
        let r = Response::new(200).with_static_header(StaticHeader::new("content-type", b"text/plain"));
        assert_eq!(r.header("Content-Type"), Some(&b"text/plain"[..]));
    }
}
