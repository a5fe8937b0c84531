//! Requests and responses between percore's types and the `http` crate's.

use std::borrow::Cow;
use std::fmt::Display;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use futures_core::Stream;
use http::header::{HeaderName, HeaderValue};

use super::ws::PendingUpgrade;
use super::{Body, RequestInfo};
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

/// The request as an `http::Request`: header values share the head's bytes (no copy), the
/// body is streamed from the connection.
pub fn to_http(mut req: Request, executor: usize) -> Result<http::Request<Body>, ConvertError> {
    let method = http::Method::from_bytes(req.method().as_bytes()).map_err(|_| ConvertError::Method)?;
    // The target shares the head's bytes too.
    let uri = http::Uri::from_maybe_shared(req.head().bytes_of(req.target().as_bytes()))
        .map_err(|_| ConvertError::Target)?;
    let version = match req.version() {
        Version::Http10 => http::Version::HTTP_10,
        Version::Http11 => http::Version::HTTP_11,
    };
    let mut headers = http::HeaderMap::with_capacity(req.head().header_count());
    for (name, value) in req.head().headers() {
        let header = HeaderName::from_bytes(name.as_bytes())
            .ok()
            .zip(HeaderValue::from_maybe_shared(req.head().bytes_of(value)).ok());
        let Some((name, value)) = header else {
            return Err(ConvertError::Header(name.to_string()));
        };
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
    request.extensions_mut().insert(info);
    // axum's type exists for TCP peers only.
    #[cfg(feature = "axum")]
    if let Some(addr) = peer.socket_addr() {
        request.extensions_mut().insert(axum::extract::ConnectInfo(addr));
    }
    Ok(request)
}

/// The service's response as percore's: an exact `size_hint` becomes `Content-Length`,
/// anything else is sent chunked as its frames come, trailers included.
pub fn from_http<B>(response: http::Response<B>) -> Response
where
    B: http_body::Body<Data = Bytes> + 'static,
    B::Error: Display,
{
    let (parts, body) = response.into_parts();
    let event_stream = is_event_stream(&parts.headers);
    let mut out = Response::new(parts.status.as_u16());
    for (name, value) in &parts.headers {
        // `http` checked both: a token name, a value without CR, LF or NUL.
        out.insert_header(header_name(name), Bytes::copy_from_slice(value.as_bytes()));
    }
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
        return out;
    }
    let mut body = Box::pin(body);
    // The usual response (a string, JSON, bytes) is whole at once: take it now, and it goes
    // out as a plain Content-Length body, the driver's fast path, without a stream.
    let mut first = None;
    if let Some(n) = length.filter(|n| *n <= WHOLE_BODY_MAX) {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        if let Poll::Ready(frame) = body.as_mut().poll_frame(&mut cx) {
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
    let out = out.with_frames(HttpFrames { first, body }, length);
    if event_stream {
        out.into_event_stream()
    } else {
        out
    }
}

/// Whether the response is a `text/event-stream`. Such bodies are treated as one event per data
/// frame (axum's `Sse` and the SSE crates for tower yield each event as one frame), so they get
/// percore's keepalive comments (`--sse-ping-interval`) and end between two events when the
/// executor drains, as [`Response::sse`] bodies do.
fn is_event_stream(headers: &http::HeaderMap) -> bool {
    headers.get(http::header::CONTENT_TYPE).is_some_and(|v| {
        let media = v.as_bytes().split(|&b| b == b';').next().unwrap_or_default();
        media.trim_ascii().eq_ignore_ascii_case(b"text/event-stream")
    })
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

/// An `http_body::Body` as a stream of percore frames (`first`: one already taken from it).
struct HttpFrames<B> {
    first: Option<Option<std::io::Result<Frame>>>,
    body: Pin<Box<B>>,
}

impl<B> Stream for HttpFrames<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Display,
{
    type Item = std::io::Result<Frame>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(first);
        }
        self.body.as_mut().poll_frame(cx).map(convert_frame)
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
