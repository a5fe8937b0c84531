//! The built-in demo application that `percore` serves by default. Every route is an
//! ordinary handler on an ordinary [`Router`].

use std::future::{ready, Future, Ready};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;

use super::builtin::builtin_routes;
use super::demo_chat::chat_routes;
use super::request::Request;
use super::response::{Response, StaticHeader};
use super::router::Router;
use crate::chat::Hub;
use crate::state::ServerState;

/// Longest `/delay` accepted, so a typo cannot park a connection for days.
const MAX_DELAY_MS: u64 = 600_000;
/// Bounds for `/stream`.
const MAX_STREAM_CHUNKS: usize = 1_000_000;
const MAX_STREAM_CHUNK_SIZE: usize = 1024 * 1024;

/// The demo app as the `percore` binary serves it: the built-in routes (`/health`,
/// `/ready`, `/metrics`) and the demo routes, the chat on `chat`.
pub fn demo_app(state: Arc<ServerState>, chat: &Hub) -> Router {
    demo_routes(builtin_routes(state), chat)
}

/// Add the demo routes to `router`: `/plaintext`, `/json`, `/echo`, `/delay`, `/stream`,
/// the Server-Sent Events counter `/events`, the WebSocket echo `/ws`, and the chat room
/// `/chat` and `/chat/events` ([`chat_routes`]) on this executor's side of `chat`. Call it
/// once per executor, with the same hub.
pub fn demo_routes(router: Router, chat: &Hub) -> Router {
    chat_routes(router, chat.room())
        .get("/plaintext", plaintext)
        .get("/json", json)
        .post("/echo", echo)
        .put("/echo", echo)
        .get("/delay", delay)
        .get("/stream", stream)
        .get("/events", events)
        // The request is dropped before the WebSocket starts: the echo needs nothing of it,
        // and its future would hold it for the WebSocket's life.
        .ws("/ws", |_req: Request, ws| ws_echo(ws))
}

/// Bounds for `/events`.
const MAX_EVENTS: u64 = 1_000_000;

/// `GET /events?count=N&ms=M`: Server-Sent Events `counter` events with ids and data 1 to
/// `count` (default 10), one every `ms` milliseconds (default 1000), the first at once. A
/// client that reconnects with `Last-Event-ID: k` gets the events after `k`, so an
/// `EventSource` that lost its connection (a drain, a network blip) misses none.
async fn events(req: Request) -> Response {
    let count = match req.query_param("count").map(str::parse::<u64>) {
        None => 10,
        Some(Ok(n)) if n <= MAX_EVENTS => n,
        _ => return bad_request("count must be an integer from 0 to 1000000"),
    };
    let ms = match req.query_param("ms").map(str::parse::<u64>) {
        None => 1000,
        Some(Ok(ms)) if ms <= MAX_DELAY_MS => ms,
        _ => return bad_request("ms must be an integer from 0 to 600000"),
    };
    let after = match req.last_event_id().map(str::parse::<u64>) {
        None => 0,
        Some(Ok(id)) => id,
        Some(Err(_)) => return bad_request("Last-Event-ID must be an integer"),
    };
    Response::sse(Counter {
        next: after.saturating_add(1),
        last: count,
        every: Duration::from_millis(ms),
        wait: None,
    })
}

/// The events of `/events`: `next` to `last`, `every` apart.
struct Counter {
    next: u64,
    last: u64,
    every: Duration,
    /// The timer before the next event; `None` when it is due now.
    wait: Option<Pin<Box<dyn std::future::Future<Output = ()>>>>,
}

impl Stream for Counter {
    type Item = super::sse::Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.next > self.last {
            return Poll::Ready(None);
        }
        if let Some(wait) = self.wait.as_mut() {
            if wait.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        let n = self.next;
        self.next += 1;
        self.wait = Some(crate::time::sleep(self.every));
        Poll::Ready(Some(super::sse::Event::new().event("counter").id(n.to_string()).data(n.to_string())))
    }
}

/// `GET /ws`: every text or binary message comes back as it came, until the client closes.
///
/// (Not an `async fn`, which would keep `ws` twice, as its argument and as the local it is
/// moved into; and `let ... else` rather than `while let`, whose scrutinee would keep a slot
/// for the message beside the `send` it is moved into. Every idle echo WebSocket holds this
/// future: 168 bytes as an `async fn` with `while let`, 80 now.)
#[allow(clippy::manual_async_fn)]
fn ws_echo(ws: crate::ws::WebSocket) -> impl Future<Output = ()> {
    async move {
        loop {
            let Some(message) = ws.recv().await else { return };
            if matches!(message, crate::ws::Message::Close(_)) || ws.send(message).await.is_err() {
                return;
            }
        }
    }
}

/// `text/plain` without a charset, as the TechEmpower plaintext test has it; checked once,
/// at compile time.
const TEXT_PLAIN: StaticHeader = StaticHeader::new("content-type", b"text/plain");

/// Not an `async fn`: a handler with nothing to wait for answers in `call` and returns a
/// ready future, so the request is dropped there rather than moved into the future first
/// (the router keeps the future's memory, which is then only as large as the response).
fn plaintext(_req: Request) -> Ready<Response> {
    ready(Response::new(200).with_static_header(TEXT_PLAIN).with_body(Bytes::from_static(b"Hello, World!")))
}

fn json(_req: Request) -> Ready<Response> {
    ready(Response::json(Bytes::from_static(br#"{"message":"Hello, World!"}"#)))
}

/// The body back, with the request's content type. The server's `--max-body-size` bounds it.
async fn echo(mut req: Request) -> Response {
    let content_type = req
        .header("content-type")
        .map(Bytes::copy_from_slice)
        .unwrap_or_else(|| Bytes::from_static(b"application/octet-stream"));
    match req.body_mut().collect(usize::MAX).await {
        Ok(body) => Response::new(200).with_header("content-type", content_type).with_body(body),
        Err(e) => Response::status_text(e.status()),
    }
}

/// Waits `ms` milliseconds on the executor's timer (never blocking its thread).
async fn delay(req: Request) -> Response {
    let ms = match req.query_param("ms").map(str::parse::<u64>) {
        None => 0,
        Some(Ok(ms)) if ms <= MAX_DELAY_MS => ms,
        _ => return bad_request("ms must be an integer from 0 to 600000"),
    };
    crate::time::sleep(Duration::from_millis(ms)).await;
    Response::text(format!("waited {ms} ms\n"))
}

thread_local! {
    /// The bytes `/stream` sends, made once per executor and shared by its responses, so a
    /// client that asks for large chunks and never reads holds only what the server itself
    /// buffers for it (see docs/security.md, the per-connection worst case), not a copy of its own.
    static STREAM_CHUNK: Bytes = Bytes::from(vec![b'x'; MAX_STREAM_CHUNK_SIZE]);
}

/// `chunks` chunks of `size` bytes each, chunked.
async fn stream(req: Request) -> Response {
    let chunks = match req.query_param("chunks").map(str::parse::<usize>) {
        None => 10,
        Some(Ok(n)) if n <= MAX_STREAM_CHUNKS => n,
        _ => return bad_request("chunks must be an integer from 0 to 1000000"),
    };
    let size = match req.query_param("size").map(str::parse::<usize>) {
        None => 1024,
        Some(Ok(n)) if (1..=MAX_STREAM_CHUNK_SIZE).contains(&n) => n,
        _ => return bad_request("size must be an integer from 1 to 1048576"),
    };
    let chunk = STREAM_CHUNK.with(|c| c.slice(..size));
    Response::stream(Repeat { left: chunks, chunk })
        .with_header("content-type", Bytes::from_static(b"application/octet-stream"))
}

/// Add the `--debug-routes`: `GET /stall?ms=N` blocks the executor's thread for N ms (as a
/// handler doing blocking work would), `GET /crash` makes the executor panic outside any
/// handler, `GET /executor` names the executor slot (`executor`) that serves the connection,
/// so a test can aim a request at one executor. They exist to exercise the supervisor and
/// must never face real clients.
pub fn with_debug_routes(router: Router, executor: usize) -> Router {
    router
        .get("/stall", stall)
        .get("/crash", crash)
        .get("/executor", move |_req: Request| async move { Response::text(format!("{executor}\n")) })
}

async fn stall(req: Request) -> Response {
    let ms = match req.query_param("ms").map(str::parse::<u64>) {
        None => 1000,
        Some(Ok(ms)) if ms <= MAX_DELAY_MS => ms,
        _ => return bad_request("ms must be an integer from 0 to 600000"),
    };
    std::thread::sleep(Duration::from_millis(ms));
    Response::text(format!("blocked the executor for {ms} ms\n"))
}

async fn crash(_req: Request) -> Response {
    crate::executor::crash_current_executor();
    Response::text("this executor will crash on its next tick\n")
}

fn bad_request(msg: &'static str) -> Response {
    let mut r = Response::text(format!("{msg}\n"));
    r.set_status(400);
    r
}

/// The same chunk `left` more times.
struct Repeat {
    left: usize,
    chunk: Bytes,
}

impl Stream for Repeat {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        self.left -= 1;
        Poll::Ready(Some(Ok(self.chunk.clone())))
    }
}
