//! Requests and responses between percore's types and the `http` crate's.

use std::any::Any;
use std::borrow::Cow;
use std::cell::Cell;
use std::fmt::Display;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use futures_core::Stream;
use http::header::{HeaderName, HeaderValue};

use super::ws::PendingUpgrade;
use super::{Body, RequestInfo};
use crate::app::response::ResponseBody;
use crate::app::{Frame, Request, Response};
use crate::http::{Framing, Version};

/// Why a request could not become an `http::Request` (nothing the codec lets through should
/// hit this; a 400 if it does).
#[derive(Debug)]
pub enum ConvertError {
    Method,
    Target,
    Header(String),
}

impl Display for ConvertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConvertError::Method => f.write_str("method"),
            ConvertError::Target => f.write_str("request target"),
            ConvertError::Header(name) => write!(f, "header {name}"),
        }
    }
}

/// What an executor's [`super::TowerHandler`] keeps from one request to the next, so that
/// each request does not allocate it again.
pub struct Reuse {
    /// An empty map with room for the usual entries, cloned for each request (see
    /// [`extensions_with_room`]).
    extensions: http::Extensions,
    /// The last response's header map, emptied: the next request's fields go into it, as
    /// hyper does with its connection's, instead of a new map being allocated for every
    /// request and the response's freed (two allocations and two frees, and the map's
    /// growth). `None` while a request holds it, or when none was kept.
    headers: Cell<Option<http::HeaderMap>>,
}

/// A response header map with room for more fields than this is not kept for reuse: one
/// large response must not keep its memory for the executor's life.
const KEPT_HEADERS_MAX: usize = 64;

impl Reuse {
    pub fn new() -> Reuse {
        Reuse { extensions: extensions_with_room(), headers: Cell::new(None) }
    }

    /// An empty header map with room for `fields`.
    fn headers(&self, fields: usize) -> http::HeaderMap {
        let mut headers = self.headers.take().unwrap_or_default();
        debug_assert!(headers.is_empty());
        headers.reserve(fields);
        headers
    }

    /// Keep `headers` (a response's, already read) for the next request, emptied: its fields
    /// are dropped now, only the allocation stays.
    fn keep(&self, mut headers: http::HeaderMap) {
        if headers.capacity() <= KEPT_HEADERS_MAX {
            headers.clear();
            self.headers.set(Some(headers));
        }
    }
}

/// The request as an `http::Request`: header values share the head's bytes (no copy), the
/// body is streamed from the connection; the header map and extensions come from `reuse`.
#[inline]
pub fn to_http(
    mut req: Request,
    executor: usize,
    reuse: &Reuse,
) -> Result<http::Request<Body>, ConvertError> {
    let method = http::Method::from_bytes(req.method().as_bytes()).map_err(|_| ConvertError::Method)?;
    // The target shares the head's bytes too.
    let uri = http::Uri::from_maybe_shared(req.head().bytes_of(req.target().as_bytes()))
        .map_err(|_| ConvertError::Target)?;
    let version = match req.version() {
        Version::Http10 => http::Version::HTTP_10,
        Version::Http11 => http::Version::HTTP_11,
    };
    let mut headers = reuse.headers(req.head().header_count());
    for (name, value) in req.head().headers() {
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            return Err(ConvertError::Header(name.to_string()));
        };
        // SAFETY: not a memory-safety contract: `HeaderValue` asks for bytes it accepts (a
        // tab, 0x20-0x7e, 0x80-0xff), and those are the only bytes the codec lets into a
        // field value (httparse's value table is the same set; obsolete line folding is
        // refused), so checking them again would only repeat it. hyper does the same.
        let value = unsafe { HeaderValue::from_maybe_shared_unchecked(req.head().bytes_of(value)) };
        headers.append(name, value);
    }
    let length = match req.head().framing() {
        Framing::None => Some(0),
        Framing::Length(n) => Some(n),
        Framing::Chunked => None,
    };
    let info = RequestInfo {
        peer: req.peer(),
        client: req.client_addr(),
        scheme: req.scheme(),
        forwarded_host: req.forwarded_host().and_then(|h| std::str::from_utf8(h).ok()).map(str::to_string),
        executor,
    };
    #[cfg(feature = "axum")]
    let peer = info.peer;
    let body = Body::new(req.take_body(), length);
    let mut request = http::Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = headers;
    let ext = request.extensions_mut();
    *ext = reuse.extensions.clone();
    ext.insert(info);
    // axum's type exists for TCP peers only.
    #[cfg(feature = "axum")]
    if let Some(addr) = peer.socket_addr() {
        ext.insert(axum::extract::ConnectInfo(addr));
    }
    Ok(request)
}

/// An empty `Extensions` whose map has room for seven entries: cloned for each request, so
/// that percore's own entries ([`RequestInfo`], axum's `ConnectInfo`) and axum's
/// (`OriginalUri`, `MatchedPath`, the path parameters) go in without the map growing on the
/// fourth insert (a second allocation, a rehash and a free on every request). The clone of
/// an empty map allocates what the first insert into a new one would.
pub fn extensions_with_room() -> http::Extensions {
    #[derive(Clone)]
    struct Room<const N: usize>;
    let mut extensions = http::Extensions::new();
    extensions.insert(Room::<0>);
    extensions.insert(Room::<1>);
    extensions.insert(Room::<2>);
    extensions.insert(Room::<3>);
    // Cleared, the map keeps its buckets (eight: room for seven).
    extensions.clear();
    extensions
}

/// The service's response as percore's: an exact `size_hint` becomes `Content-Length`,
/// anything else is sent chunked as its frames come, trailers included. `is_head`: the
/// response answers a `HEAD`, whose empty body says nothing of the length. The response's
/// header map goes back to `reuse` for the next request.
pub fn from_http<B>(response: http::Response<B>, is_head: bool, reuse: &Reuse) -> Response
where
    B: http_body::Body<Data = Bytes> + 'static,
    B::Error: Display,
{
    let (parts, body) = response.into_parts();
    let mut out = Response::new(parts.status.as_u16());
    let mut event_stream = false;
    let mut declared_length = None;
    for (name, value) in &parts.headers {
        if name == http::header::CONTENT_TYPE {
            event_stream = is_event_stream(value);
        } else if name == http::header::CONTENT_LENGTH {
            // The framing is the server's, from the body (axum sets `content-length` on every
            // response): not copied, only read for a HEAD. (`connection` is kept:
            // `Connection: close` from the service closes the connection.)
            if is_head {
                declared_length =
                    std::str::from_utf8(value.as_bytes()).ok().and_then(|v| v.parse::<u64>().ok());
            }
            continue;
        } else if name == http::header::TRANSFER_ENCODING {
            continue;
        }
        out.push_checked_header(header_name(name), header_value(value));
    }
    reuse.keep(parts.headers);
    if parts.status == http::StatusCode::SWITCHING_PROTOCOLS {
        // Only `WebSocketUpgrade::on_upgrade` can say what runs on the connection after it.
        let attached = parts.extensions.get::<PendingUpgrade>().is_some_and(|up| up.attach(&mut out));
        if !attached {
            tracing::error!("a 101 from the service without percore::tower::WebSocketUpgrade; answering 500");
            return Response::status_text(500);
        }
        return out;
    }
    let length = body.size_hint().exact();
    if length == Some(0) && body.is_end_stream() {
        // axum answers a HEAD with an empty body and, when the GET's length is known, its
        // `content-length`. The head must be the one the GET would get (RFC 9110 §9.3.2):
        // that length, or chunked when it is not known. The driver sends no body for HEAD.
        return match declared_length {
            _ if !is_head => out,
            Some(0) => out,
            length => out.with_frames(NoFrames, length),
        };
    }
    // An axum body (every axum response's) is a box already, and `Unpin`: polled where it
    // is, without a second box around it. Any other body is pinned in a box of its own.
    let out = match downcast::<B, axum_core::body::Body>(body) {
        Ok(body) => with_body(out, body, length),
        Err(body) => with_body(out, Box::pin(body), length),
    };
    if event_stream && !matches!(out.body(), ResponseBody::Full(_)) {
        out.into_event_stream()
    } else {
        out
    }
}

/// `body` as `out`'s body. The usual response body (a string, JSON, bytes) is whole at
/// once: taken now, it goes out as a plain `Content-Length` body, the driver's fast path,
/// without a stream.
fn with_body<U>(out: Response, mut body: U, length: Option<u64>) -> Response
where
    U: http_body::Body<Data = Bytes> + Unpin + 'static,
    U::Error: Display,
{
    let mut first = None;
    if let Some(n) = length.filter(|n| *n <= WHOLE_BODY_MAX) {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        if let Poll::Ready(frame) = Pin::new(&mut body).poll_frame(&mut cx) {
            match frame {
                Some(Ok(frame)) if frame.is_data() => {
                    let mut data = frame.into_data().unwrap_or_default();
                    let data = data.copy_to_bytes(data.remaining());
                    if data.len() as u64 == n && body.is_end_stream() {
                        return out.with_body(data);
                    }
                    first = Some(Some(Ok(Frame::Data(data))));
                }
                // Anything else is sent as it came, first.
                other => first = Some(convert_frame(other)),
            }
        }
    }
    out.with_frames(HttpFrames { first, body }, length)
}

/// `value` as a `T` when it is one (its type is known when this is compiled, so the check
/// costs nothing at run time), or back as it was.
fn downcast<B: 'static, T: 'static>(value: B) -> Result<T, B> {
    let mut slot = Some(value);
    match (&mut slot as &mut dyn Any).downcast_mut::<Option<T>>() {
        Some(as_t) => Ok(as_t.take().expect("just filled")),
        None => Err(slot.expect("not taken")),
    }
}

/// Whether a `Content-Type` is `text/event-stream`. Such bodies are treated as one event per
/// data frame (axum's `Sse` and the SSE crates for tower yield each event as one frame), so
/// they get percore's keepalive comments (`--sse-ping-interval`) and end between two events
/// when the executor drains, as [`Response::sse`] bodies do.
fn is_event_stream(content_type: &HeaderValue) -> bool {
    let media = content_type.as_bytes().split(|&b| b == b';').next().unwrap_or_default();
    media.trim_ascii().eq_ignore_ascii_case(b"text/event-stream")
}

/// Bodies up to this size are taken whole when they are ready at once; larger ones stream.
const WHOLE_BODY_MAX: u64 = 1 << 20;

/// The name of a response header: the usual ones without an allocation.
fn header_name(name: &HeaderName) -> Cow<'static, str> {
    use http::header;
    const COMMON: [(HeaderName, &str); 12] = [
        (header::CONTENT_TYPE, "content-type"),
        (header::CACHE_CONTROL, "cache-control"),
        (header::CONTENT_ENCODING, "content-encoding"),
        (header::ETAG, "etag"),
        (header::LAST_MODIFIED, "last-modified"),
        (header::LOCATION, "location"),
        (header::SET_COOKIE, "set-cookie"),
        (header::VARY, "vary"),
        (header::ALLOW, "allow"),
        (header::ACCESS_CONTROL_ALLOW_ORIGIN, "access-control-allow-origin"),
        (header::X_CONTENT_TYPE_OPTIONS, "x-content-type-options"),
        (header::SERVER, "server"),
    ];
    match COMMON.iter().find(|(known, _)| known == name) {
        Some((_, s)) => Cow::Borrowed(s),
        None => Cow::Owned(name.as_str().to_owned()),
    }
}

/// The value of a response header as `Bytes`: the usual `Content-Type`s without an
/// allocation (`http` gives no way to share a `HeaderValue`'s own bytes), others copied.
fn header_value(value: &HeaderValue) -> Bytes {
    const COMMON: [&str; 6] = [
        "text/plain; charset=utf-8",
        "application/json",
        "text/plain",
        "text/html; charset=utf-8",
        "application/octet-stream",
        "text/event-stream",
    ];
    let bytes = value.as_bytes();
    match COMMON.iter().find(|known| known.as_bytes() == bytes) {
        Some(known) => Bytes::from_static(known.as_bytes()),
        None => Bytes::copy_from_slice(bytes),
    }
}

/// The body of a `HEAD` response: never polled (the driver sends no body for HEAD), there
/// only to carry the length of the body a GET would get.
struct NoFrames;

impl Stream for NoFrames {
    type Item = std::io::Result<Frame>;

    fn poll_next(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(None)
    }
}

/// An `http_body::Body` as a stream of percore frames (`first`: one already taken from it).
/// `U` is `Unpin`: an axum body as it is, any other body in a pinned box.
struct HttpFrames<U> {
    first: Option<Option<std::io::Result<Frame>>>,
    body: U,
}

impl<U> Stream for HttpFrames<U>
where
    U: http_body::Body<Data = Bytes> + Unpin,
    U::Error: Display,
{
    type Item = std::io::Result<Frame>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(first) = this.first.take() {
            return Poll::Ready(first);
        }
        Pin::new(&mut this.body).poll_frame(cx).map(convert_frame)
    }
}

/// One frame of an `http_body::Body` as percore's.
fn convert_frame<E: Display>(
    frame: Option<Result<http_body::Frame<Bytes>, E>>,
) -> Option<std::io::Result<Frame>> {
    let frame = match frame? {
        Err(e) => return Some(Err(std::io::Error::other(e.to_string()))),
        Ok(frame) => frame,
    };
    let frame = match frame.into_data() {
        Ok(mut data) => Frame::Data(data.copy_to_bytes(data.remaining())),
        Err(frame) => match frame.into_trailers() {
            Ok(trailers) => Frame::Trailers(
                trailers
                    .iter()
                    .map(|(n, v)| (header_name(n), Bytes::copy_from_slice(v.as_bytes())))
                    .collect(),
            ),
            // A frame kind this server does not know: nothing to send.
            Err(_) => Frame::Data(Bytes::new()),
        },
    };
    Some(Ok(frame))
}
