//! tower services through `percore::tower`, in this process (`Server::start`): what the
//! adapter itself decides — response framing from `size_hint`, trailers, broken bodies,
//! service errors, panics, the request body's size hint and `100 Continue`, the extensions.

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body as AxumBody;
use axum::extract::{Extension, Request as AxumRequest};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use percore::tower::{per_executor, RequestInfo};
use percore::{RuntimeKind, Server, ServerConfig, ServerHandle};

/// A body of one data frame and then trailers (size unknown: sent chunked).
struct WithTrailers(Option<Bytes>, bool);

impl http_body::Body for WithTrailers {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(data) = self.0.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if !self.1 {
            self.1 = true;
            let mut t = http::HeaderMap::new();
            t.insert("x-checksum", http::HeaderValue::from_static("abc"));
            t.insert("content-length", http::HeaderValue::from_static("99"));
            return Poll::Ready(Some(Ok(Frame::trailers(t))));
        }
        Poll::Ready(None)
    }
}

/// Claims `claimed` bytes but yields `actual`.
struct WrongLength {
    claimed: u64,
    actual: Option<Bytes>,
}

impl http_body::Body for WrongLength {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.actual.take().map(|d| Ok(Frame::data(d))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.claimed)
    }
}

fn app() -> Router {
    Router::new()
        .route("/full", get(|| async { "exactly this" }))
        .route(
            "/stream",
            get(|| async {
                let chunks = futures_lite_stream(vec!["one ", "two ", "three"]);
                AxumBody::from_stream(chunks)
            }),
        )
        .route(
            "/trailers",
            get(|| async { AxumBody::new(WithTrailers(Some(Bytes::from_static(b"data")), false)) }),
        )
        .route(
            "/short",
            get(|| async {
                AxumBody::new(WrongLength { claimed: 10, actual: Some(Bytes::from_static(b"abc")) })
            }),
        )
        .route(
            "/broken",
            get(|| async {
                let items: Vec<Result<Bytes, std::io::Error>> = vec![
                    Ok(Bytes::from_static(b"partial")),
                    Err(std::io::Error::other("upstream went away")),
                ];
                AxumBody::from_stream(IterStream(items.into_iter()))
            }),
        )
        .route("/panic", get(panics))
        .route(
            "/hint",
            post(|req: AxumRequest| async move {
                let exact = req.body().size_hint().exact();
                let body = axum::body::to_bytes(req.into_body(), 1 << 20).await.unwrap();
                format!("{exact:?} {}", body.len())
            }),
        )
        .route(
            "/who",
            get(|Extension(info): Extension<RequestInfo>| async move {
                format!(
                    "{} {} {} {}",
                    info.peer.ip().expect("a TCP peer"),
                    info.client,
                    info.scheme,
                    info.executor
                )
            }),
        )
}

async fn panics() -> &'static str {
    panic!("boom (expected by the test)")
}

/// A stream over an iterator (no extra crate for the test).
struct IterStream<I>(I);

impl<I: Iterator + Unpin> futures_core::Stream for IterStream<I> {
    type Item = I::Item;
    fn poll_next(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<I::Item>> {
        Poll::Ready(self.0.next())
    }
}

fn futures_lite_stream(
    parts: Vec<&'static str>,
) -> IterStream<std::vec::IntoIter<Result<Bytes, Infallible>>> {
    IterStream(
        parts.into_iter().map(|p| Ok(Bytes::from_static(p.as_bytes()))).collect::<Vec<_>>().into_iter(),
    )
}

fn start(runtime: RuntimeKind) -> ServerHandle {
    let cfg = ServerConfig { port: 0, workers: Some(1), runtime, ..ServerConfig::default() };
    Server::new(cfg).start(per_executor(|_exec| app())).expect("server start")
}

/// Send `raw` on a new connection and read until the server closes or `limit` passes.
fn exchange(addr: SocketAddr, raw: &[u8]) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(raw).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn get_close(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n").into_bytes()
}

fn check_runtime(runtime: RuntimeKind) {
    let server = start(runtime);
    let addr = server.local_addr().expect("a TCP address");
    let r = exchange(addr, &get_close("/full", ""));
    assert!(r.contains("content-length: 12\r\n") && r.ends_with("exactly this"), "{runtime:?}: {r}");

    // HEAD: axum answers with an empty body (and the GET's `content-length` when it knows
    // it); the head is the GET's, and no body follows.
    let head = |path: &str| format!("HEAD {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let r = exchange(addr, head("/full").as_bytes());
    assert!(r.contains("content-length: 12\r\n") && r.ends_with("\r\n\r\n"), "{runtime:?}: {r}");
    let r = exchange(addr, head("/stream").as_bytes());
    assert!(r.contains("transfer-encoding: chunked\r\n") && r.ends_with("\r\n\r\n"), "{runtime:?}: {r}");
    assert!(!r.contains("content-length") && !r.contains("\r\n0\r\n"), "{runtime:?}: {r}");

    let r = exchange(addr, &get_close("/stream", ""));
    assert!(r.contains("transfer-encoding: chunked\r\n"), "{r}");
    assert!(r.ends_with("4\r\none \r\n4\r\ntwo \r\n5\r\nthree\r\n0\r\n\r\n"), "{r}");

    // Trailers only for a client that said TE: trailers; framing fields never.
    let r = exchange(addr, &get_close("/trailers", "TE: trailers\r\n"));
    assert!(r.ends_with("4\r\ndata\r\n0\r\nx-checksum: abc\r\n\r\n"), "{r}");
    let r = exchange(addr, &get_close("/trailers", ""));
    assert!(r.ends_with("4\r\ndata\r\n0\r\n\r\n"), "{r}");

    // A body shorter than its length, or one that fails: cut, never complete-looking.
    let r = exchange(addr, &get_close("/short", ""));
    assert!(r.contains("content-length: 10\r\n") && r.ends_with("abc"), "{r}");
    let r = exchange(addr, &get_close("/broken", ""));
    assert!(r.contains("partial") && !r.ends_with("0\r\n\r\n"), "{r}");

    let r = exchange(addr, &get_close("/panic", ""));
    assert!(r.starts_with("HTTP/1.1 500"), "{r}");

    // The request body: exact size hint for Content-Length, none for chunked; 100 Continue.
    let r = exchange(
        addr,
        b"POST /hint HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello",
    );
    assert!(r.ends_with("Some(5) 5"), "{r}");
    let r = exchange(
        addr,
        b"POST /hint HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    );
    assert!(r.ends_with("None 3"), "{r}");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"POST /hint HTTP/1.1\r\nHost: x\r\nConnection: close\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 25];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"abc").unwrap();
    let mut rest = String::new();
    let _ = s.read_to_string(&mut rest);
    assert!(rest.ends_with("Some(3) 3"), "{rest}");

    // Extensions: the peer, the client as a trusted proxy (127.0.0.1) says, the executor.
    let r =
        exchange(addr, &get_close("/who", "X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\n"));
    assert!(r.ends_with("127.0.0.1 203.0.113.9 https 0"), "{r}");
    server.stop();
}

#[test]
fn tower_services_on_monoio() {
    check_runtime(RuntimeKind::Monoio);
}

#[test]
fn tower_services_on_tokio() {
    check_runtime(RuntimeKind::Tokio);
}

#[test]
fn tower_services_on_glommio() {
    check_runtime(RuntimeKind::Glommio);
}

/// A hand-written service: not ready until its `poll_ready` was asked three times (waking
/// itself each time), a panic in `call` itself for `/panic-in-call`, and response headers of
/// every kind for the others (`/headers`: the request's fields, as the service got them).
struct Moody {
    not_ready_for: u32,
    polls: u32,
}

impl tower_service::Service<http::Request<percore::tower::Body>> for Moody {
    type Response = http::Response<String>;
    type Error = String;
    type Future = std::future::Ready<Result<http::Response<String>, String>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), String>> {
        self.polls += 1;
        if self.not_ready_for > 0 {
            self.not_ready_for -= 1;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<percore::tower::Body>) -> Self::Future {
        let polls = std::mem::take(&mut self.polls);
        if req.uri().path() == "/slow" {
            self.not_ready_for = 3;
        }
        let response = match req.uri().path() {
            "/panic-in-call" => panic!("boom in call (expected by the test)"),
            "/close" => http::Response::builder().header("connection", "close").body("bye".to_string()),
            "/headers" => {
                let fields: Vec<String> =
                    req.headers().iter().map(|(n, v)| format!("{n}={}", v.to_str().unwrap())).collect();
                http::Response::builder().body(fields.join(","))
            }
            _ => http::Response::builder()
                .header("content-type", "application/json")
                .header("x-trace", "abc\t123")
                .header("content-length", "999")
                .header("transfer-encoding", "chunked")
                .header("set-cookie", "a=1")
                .header("set-cookie", "b=2")
                .body(format!("{polls}")),
        };
        std::future::ready(Ok(response.unwrap()))
    }
}

/// The paths the adapter takes besides an axum `Router`: a service not ready at once is
/// called once it is; a panic in `call` (not in its future) is a 500 and the executor goes
/// on; the service's framing fields give way to the body's; its other fields are sent as
/// given; `Connection: close` from it closes the connection.
#[test]
fn a_service_not_ready_at_once_and_one_that_panics_in_call() {
    for runtime in [RuntimeKind::Monoio, RuntimeKind::Tokio, RuntimeKind::Glommio] {
        let cfg = ServerConfig { port: 0, workers: Some(1), runtime, ..ServerConfig::default() };
        let server = Server::new(cfg)
            .start(per_executor(|_exec| Moody { not_ready_for: 0, polls: 0 }))
            .expect("server start");
        let addr = server.local_addr().expect("a TCP address");
        // Ready at once: one poll (the one before the call).
        let r = exchange(addr, &get_close("/", ""));
        assert!(r.starts_with("HTTP/1.1 200") && r.ends_with("\r\n\r\n1"), "{runtime:?}: {r}");
        assert!(r.contains("content-length: 1\r\n") && !r.contains("999") && !r.contains("chunked"), "{r}");
        for field in ["content-type: application/json\r\n", "x-trace: abc\t123\r\n", "set-cookie: a=1\r\n"] {
            assert!(r.contains(field), "{runtime:?}: {field:?} in {r}");
        }
        assert!(r.contains("set-cookie: b=2\r\n"), "{r}");
        // After `/slow`, the next request waits for three more polls, then is answered.
        assert!(exchange(addr, &get_close("/slow", "")).ends_with("\r\n\r\n1"), "{runtime:?}");
        let r = exchange(addr, &get_close("/", ""));
        assert!(r.starts_with("HTTP/1.1 200") && r.ends_with("\r\n\r\n4"), "{runtime:?}: {r}");
        let r = exchange(addr, &get_close("/panic-in-call", ""));
        assert!(r.starts_with("HTTP/1.1 500"), "{runtime:?}: {r}");
        // A request's header map is the previous response's, emptied: on one connection,
        // after a response with six fields, the next request has its own two and no more.
        let r = exchange(
            addr,
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /headers HTTP/1.1\r\nHost: y\r\nConnection: close\r\n\r\n",
        );
        assert!(r.contains("set-cookie: b=2\r\n"), "{runtime:?}: {r}");
        assert!(r.ends_with("\r\n\r\nhost=y,connection=close"), "{runtime:?}: {r}");
        // Keep-alive asked for, but the service said close.
        let r = exchange(addr, b"GET /close HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(r.contains("connection: close\r\n") && r.ends_with("bye"), "{runtime:?}: {r}");
        assert!(
            exchange(addr, &get_close("/", "")).starts_with("HTTP/1.1 200"),
            "{runtime:?}: still serving"
        );
        server.stop();
    }
}

/// With the `axum` feature, `ConnectInfo<SocketAddr>` is there beside percore's
/// `RequestInfo` and axum's own extensions (matched path, path parameters, original URI).
#[cfg(feature = "axum")]
#[test]
fn axum_extractors_of_extensions_all_find_theirs() {
    use axum::extract::{ConnectInfo, MatchedPath, OriginalUri, Path};
    let app = || {
        Router::new().route(
            "/users/{id}",
            get(
                |ConnectInfo(addr): ConnectInfo<SocketAddr>,
                 Extension(info): Extension<RequestInfo>,
                 matched: MatchedPath,
                 OriginalUri(uri): OriginalUri,
                 Path(id): Path<String>| async move {
                    assert_eq!(Some(addr), info.peer.socket_addr());
                    format!("{} {} {} {id}", addr.ip(), matched.as_str(), uri)
                },
            ),
        )
    };
    let cfg = ServerConfig { port: 0, workers: Some(1), ..ServerConfig::default() };
    let server = Server::new(cfg).start(per_executor(move |_exec| app())).expect("server start");
    let r = exchange(server.local_addr().expect("a TCP address"), &get_close("/users/7?x=1", ""));
    assert!(r.ends_with("127.0.0.1 /users/{id} /users/7?x=1 7"), "{r}");
    server.stop();
}

#[test]
fn a_service_error_is_a_500() {
    #[derive(Clone)]
    struct Failing;
    impl tower_service::Service<http::Request<percore::tower::Body>> for Failing {
        type Response = http::Response<String>;
        type Error = String;
        type Future = std::future::Ready<Result<http::Response<String>, String>>;
        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), String>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _req: http::Request<percore::tower::Body>) -> Self::Future {
            std::future::ready(Err("database unavailable".to_string()))
        }
    }
    let cfg = ServerConfig { port: 0, workers: Some(1), ..ServerConfig::default() };
    let server = Server::new(cfg).start(per_executor(|_exec| Failing)).expect("server start");
    let r = exchange(server.local_addr().expect("a TCP address"), &get_close("/", ""));
    assert!(r.starts_with("HTTP/1.1 500"), "{r}");
    server.stop();
}

/// One event, then nothing more for as long as the connection lasts.
struct OneEventThenQuiet(Option<Bytes>);

impl http_body::Body for OneEventThenQuiet {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.0.take() {
            Some(event) => Poll::Ready(Some(Ok(Frame::data(event)))),
            None => Poll::Pending,
        }
    }
}

/// A tower `text/event-stream` body (as axum's `Sse` makes) is an event stream to the driver:
/// keepalive comments while it waits, and the end between events when the server drains.
#[test]
fn a_tower_event_stream_gets_pings_and_ends_on_drain() {
    let events = || {
        Router::new().route(
            "/events",
            get(|| async {
                http::Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(AxumBody::new(OneEventThenQuiet(Some(Bytes::from_static(b"data: one\n\n")))))
                    .unwrap()
            }),
        )
    };
    for runtime in [RuntimeKind::Monoio, RuntimeKind::Tokio, RuntimeKind::Glommio] {
        let mut cfg = ServerConfig { port: 0, workers: Some(1), runtime, ..ServerConfig::default() };
        cfg.driver.sse_ping_interval = Duration::from_millis(150);
        let server = Server::new(cfg).start(per_executor(move |_exec| events())).expect("server start");
        let mut s =
            TcpStream::connect_timeout(&server.local_addr().expect("a TCP address"), Duration::from_secs(5))
                .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains(": ping") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => panic!("{runtime:?}: no ping: {}", String::from_utf8_lossy(&seen)),
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        let text = String::from_utf8_lossy(&seen).into_owned();
        assert!(
            text.contains("transfer-encoding: chunked") && text.contains("data: one\n\n"),
            "{runtime:?}: {text}"
        );
        // The drain ends the stream with the chunked terminator, then closes.
        let drained = std::thread::spawn(move || server.drain());
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
                Err(e) => panic!("{runtime:?}: {e}: {}", String::from_utf8_lossy(&seen)),
            }
        }
        let text = String::from_utf8_lossy(&seen).into_owned();
        assert!(text.ends_with("0\r\n\r\n"), "{runtime:?}: {text}");
        drained.join().unwrap().expect("drained");
    }
}

/// An axum route taking percore's WebSocket upgrade as an extractor.
fn ws_app() -> Router {
    use percore::tower::WebSocketUpgrade;
    Router::new()
        .route(
            "/ws",
            get(|ws: WebSocketUpgrade| async move {
                ws.protocols_preferred(&["chat"]).on_upgrade(|socket| async move {
                    while let Some(message) = socket.recv().await {
                        if socket.send(message).await.is_err() {
                            break;
                        }
                    }
                })
            }),
        )
        // A 101 that no `on_upgrade` made: nothing could run on the connection after it.
        .route(
            "/fake-101",
            get(|| async { http::Response::builder().status(101).body(AxumBody::empty()).unwrap() }),
        )
}

/// Read from `s` until `want` bytes came (or the server closed).
fn read_n(s: &mut TcpStream, want: usize) -> Vec<u8> {
    let mut out = vec![0u8; want];
    let mut got = 0;
    while got < want {
        match s.read(&mut out[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    out.truncate(got);
    out
}

/// A masked client frame (RFC 6455 §5.3) of up to 125 bytes.
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut f = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

#[test]
fn an_axum_route_accepts_websockets_with_percores_extractor() {
    for runtime in [RuntimeKind::Monoio, RuntimeKind::Tokio, RuntimeKind::Glommio] {
        let cfg = ServerConfig { port: 0, workers: Some(1), runtime, ..ServerConfig::default() };
        let server = Server::new(cfg).start(per_executor(|_exec| ws_app())).expect("server start");
        let addr = server.local_addr().expect("a TCP address");

        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
              Sec-WebSocket-Protocol: other, chat\r\n\r\n",
        )
        .unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let byte = read_n(&mut s, 1);
            assert_eq!(byte.len(), 1, "{runtime:?}: closed in the head: {}", String::from_utf8_lossy(&head));
            head.extend_from_slice(&byte);
        }
        let head = String::from_utf8_lossy(&head).to_lowercase();
        assert!(head.starts_with("http/1.1 101 "), "{runtime:?}: {head}");
        assert!(
            head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n"),
            "{runtime:?}: {head}"
        );
        assert!(head.contains("sec-websocket-protocol: chat\r\n"), "{runtime:?}: {head}");
        assert_eq!(head.matches("connection:").count(), 1, "{runtime:?}: {head}");

        // Echoed by percore's session: an unmasked text frame.
        s.write_all(&client_frame(0x1, b"hello")).unwrap();
        assert_eq!(read_n(&mut s, 7), b"\x81\x05hello", "{runtime:?}");
        // A close is answered with the same code, then the server closes.
        s.write_all(&client_frame(0x8, &1000u16.to_be_bytes())).unwrap();
        assert_eq!(read_n(&mut s, 4), b"\x88\x02\x03\xe8", "{runtime:?}");
        assert!(read_n(&mut s, 1).is_empty(), "{runtime:?}: closed after the close handshake");

        // Not an upgrade: the handshake's refusal, as for a native route.
        let r = exchange(addr, &get_close("/ws", ""));
        assert!(r.starts_with("HTTP/1.1 426"), "{runtime:?}: {r}");
        assert!(r.to_lowercase().contains("upgrade: websocket\r\n"), "{runtime:?}: {r}");
        let r = exchange(
            addr,
            b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close, Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n",
        );
        assert!(r.starts_with("HTTP/1.1 400"), "{runtime:?}: {r}");

        let r = exchange(addr, &get_close("/fake-101", ""));
        assert!(r.starts_with("HTTP/1.1 500"), "{runtime:?}: {r}");
        server.stop();
    }
}
