//! Driver tests over an in-memory transport: what is written, in how many writes, and when
//! the driver stops reading.

use std::sync::Arc;

use super::DriverConfig;
use crate::app::demo::demo_app;
use crate::state::ServerState;
use crate::testing::{run_connection, Transcript};

/// Run one connection over `script` with the demo app.
fn run(script: &[&[u8]]) -> Transcript {
    let state = Arc::new(ServerState::new(1));
    run_connection(
        script.iter().map(|s| s.to_vec()).collect(),
        DriverConfig::default(),
        demo_app(state, &crate::chat::Hub::new()),
    )
}

fn count(haystack: &[u8], needle: &str) -> usize {
    haystack.windows(needle.len()).filter(|w| *w == needle.as_bytes()).count()
}

#[test]
fn a_pipelined_batch_goes_out_in_one_write() {
    let batch = b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n".repeat(16);
    let log = run(&[&batch]);
    assert_eq!(log.writes.len(), 1, "16 responses, one write");
    assert_eq!(count(&log.writes[0], "HTTP/1.1 200 OK"), 16);
    assert_eq!(count(&log.writes[0], "Hello, World!"), 16);
}

#[test]
fn pipelined_responses_keep_request_order() {
    let mut batch = Vec::new();
    for word in ["one", "two", "three"] {
        batch.extend_from_slice(
            format!("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{word}", word.len())
                .as_bytes(),
        );
    }
    let log = run(&[&batch]);
    let out = String::from_utf8(log.writes.concat()).unwrap();
    let (a, b, c) = (
        out.find("\r\n\r\none").unwrap(),
        out.find("\r\n\r\ntwo").unwrap(),
        out.find("\r\n\r\nthree").unwrap(),
    );
    assert!(a < b && b < c, "{out}");
}

#[test]
fn nothing_after_an_error_is_answered() {
    let batch = b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n\
POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n\
GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n";
    let log = run(&[batch]);
    let out = log.writes.concat();
    assert_eq!(count(&out, "HTTP/1.1 200 OK"), 1, "{}", String::from_utf8_lossy(&out));
    assert_eq!(count(&out, "HTTP/1.1 400 Bad Request"), 1);
    assert_eq!(count(&out, "connection: close"), 1);
    assert!(log.shutdown, "graceful close sends FIN");
}

#[test]
fn connection_close_ends_the_pipeline() {
    let batch = b"GET /json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n";
    let log = run(&[batch]);
    let out = log.writes.concat();
    assert_eq!(count(&out, "HTTP/1.1 200 OK"), 1);
    assert_eq!(count(&out, "connection: close"), 1);
    assert!(log.shutdown);
}

#[test]
fn a_head_split_across_reads_is_assembled() {
    let log = run(&[b"GET /plain", b"text HTTP/1.1\r\nHo", b"st: x\r\n", b"\r\n"]);
    assert_eq!(count(&log.writes.concat(), "Hello, World!"), 1);
}

#[test]
fn expect_continue_is_sent_only_when_the_body_is_read() {
    // The echo handler reads the body: 100 Continue first, then the echo.
    let log =
        run(&[b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n", b"hi"]);
    let out = String::from_utf8(log.writes.concat()).unwrap();
    assert!(out.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK"), "{out}");
    // /plaintext never reads it: no 100, and the connection closes since the body is unread.
    let log =
        run(&[b"POST /plaintext HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"]);
    let out = String::from_utf8(log.writes.concat()).unwrap();
    assert!(!out.contains("100 Continue"), "{out}");
    assert!(out.starts_with("HTTP/1.1 405"), "{out}");
    assert!(out.contains("connection: close"), "{out}");
}

#[test]
fn chunked_request_bodies_stream_across_reads() {
    let log = run(&[
        b"PUT /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc",
        b"\r\n4;ext=1\r\ndefg\r\n0\r\n",
        b"Trailer: 1\r\n\r\n",
    ]);
    let out = String::from_utf8(log.writes.concat()).unwrap();
    assert!(out.contains("content-length: 7\r\n") && out.ends_with("abcdefg"), "{out}");
}

#[test]
fn head_requests_get_no_body() {
    let log = run(&[b"HEAD /plaintext HTTP/1.1\r\nHost: x\r\n\r\n"]);
    let out = String::from_utf8(log.writes.concat()).unwrap();
    assert!(out.contains("content-length: 13\r\n"), "{out}");
    assert!(out.ends_with("\r\n\r\n"), "{out}");
}

#[test]
fn streamed_responses_are_chunked_and_batched() {
    let log = run(&[b"GET /stream?chunks=4&size=3 HTTP/1.1\r\nHost: x\r\n\r\n"]);
    assert_eq!(log.writes.len(), 1);
    let out = String::from_utf8(log.writes.concat()).unwrap();
    assert!(out.contains("transfer-encoding: chunked\r\n"));
    assert!(out.ends_with("\r\n\r\n3\r\nxxx\r\n3\r\nxxx\r\n3\r\nxxx\r\n3\r\nxxx\r\n0\r\n\r\n"), "{out}");
}

#[test]
fn http10_streams_are_close_delimited() {
    let log = run(&[b"GET /stream?chunks=2&size=3 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"]);
    let out = String::from_utf8(log.writes.concat()).unwrap();
    assert!(!out.contains("transfer-encoding"), "{out}");
    assert!(out.contains("connection: close\r\n"), "{out}");
    assert!(out.ends_with("\r\n\r\nxxxxxx"), "{out}");
}

#[test]
fn a_long_keep_alive_connection_reads_into_the_same_small_buffer() {
    // Each request is split off the front of the read buffer; once it is answered the
    // buffer starts at the front of its allocation again, instead of creeping forward
    // until a read has to allocate a larger one that the connection then keeps.
    let req = b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n";
    let script: Vec<&[u8]> = vec![req; 500];
    let log = run(&script);
    assert_eq!(count(&log.output(), "HTTP/1.1 200 OK"), 500);
    assert_eq!(log.reads, 501, "one read per request, then EOF");
    let most = log.read_rooms.iter().max().copied();
    assert_eq!(most, Some(super::INITIAL_READ_BUF), "the read buffer never grew: {most:?}");
}

#[test]
fn pipelined_batches_larger_than_the_buffer_are_one_read_once_it_has_grown() {
    let req = format!("GET /plaintext HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n", "a".repeat(150));
    let batch = req.repeat(16);
    assert!(batch.len() > super::INITIAL_READ_BUF);
    let script: Vec<&[u8]> = vec![batch.as_bytes(); 20];
    let log = run(&script);
    assert_eq!(count(&log.output(), "HTTP/1.1 200 OK"), 16 * 20);
    // The first batch fills the initial buffer: one more read (and write) while it grows.
    assert!(log.reads <= 20 + 2, "{} reads for 20 batches", log.reads);
    assert!(log.writes.len() <= 20 + 1, "{} writes for 20 batches", log.writes.len());
    let idle = *log.read_rooms.last().expect("reads");
    assert!(idle <= 2 * batch.len().next_power_of_two(), "an idle read holds {idle} bytes");
}

#[test]
fn a_large_head_does_not_leave_an_idle_connection_a_large_buffer() {
    let big = format!("GET /plaintext HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n", "a".repeat(40_000));
    let small = b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n";
    let log = super::super::testing::run_connection(
        vec![big.clone().into_bytes(), small.to_vec()],
        DriverConfig {
            limits: crate::http::Limits { max_header_field: 64 * 1024, ..Default::default() },
            ..Default::default()
        },
        demo_app(Arc::new(ServerState::new(1)), &crate::chat::Hub::new()),
    );
    assert_eq!(count(&log.output(), "HTTP/1.1 200 OK"), 2);
    let idle = *log.read_rooms.last().expect("reads");
    assert!(idle <= 2 * super::MAX_READ_BUF, "an idle read holds {idle} bytes");
}

#[test]
fn connection_futures_stay_small_and_loosely_aligned() {
    // What an idle connection costs is mostly its task's future and the parked connection
    // with its readiness wait (`park`), the working state (`work`) being boxed and let go
    // when it goes idle. Timers held inline (monoio's sleep is 640 bytes, aligned to 128) or
    // async fns that keep copies of their arguments once made the whole of it 3.2 KB.
    use crate::app::Router;
    use crate::peer::Peer;
    use std::rc::Rc;

    fn check<T: crate::io::Transport, K: crate::io::Timer>(name: &str, idle_max: usize, busy_max: usize) {
        let make =
            |io: T, peer: Peer, ctx: Rc<super::ConnCtx<Router>>| super::serve::<T, K, Router>(io, peer, ctx);
        let (size, align) = layout_of_output(&make);
        assert!(size <= 64, "{name}: the connection future is {size} bytes (it holds boxes)");
        assert!(align <= 16, "{name}: the connection future is aligned to {align} bytes");
        let (parked, align) = layout_of_output1(&super::wait_parked::<T, Router>);
        assert!(
            size + parked <= idle_max,
            "{name}: an idle connection is {size} + {parked} bytes (at most {idle_max} expected)"
        );
        assert!(align <= 16, "{name}: the parked state is aligned to {align} bytes");
        let (size, align) = layout_of_output2(&super::work::<T, K, Router>);
        assert!(size <= busy_max, "{name}: the working state is {size} bytes (at most {busy_max} expected)");
        assert!(align <= 16, "{name}: the working state is aligned to {align} bytes");
    }
    // The future's type can only be named through the function that makes it.
    fn layout_of_output<A, B, C, R, F: Fn(A, B, C) -> R>(_: &F) -> (usize, usize) {
        (std::mem::size_of::<R>(), std::mem::align_of::<R>())
    }
    fn layout_of_output1<A, R, F: Fn(A) -> R>(_: &F) -> (usize, usize) {
        (std::mem::size_of::<R>(), std::mem::align_of::<R>())
    }
    // `work` returns its future boxed.
    fn layout_of_output2<A, B, R, F: Fn(A, B) -> std::pin::Pin<Box<R>>>(_: &F) -> (usize, usize) {
        (std::mem::size_of::<R>(), std::mem::align_of::<R>())
    }
    #[cfg(feature = "monoio")]
    check::<crate::runtime::monoio::MonoioStream, crate::runtime::monoio::Monoio>("monoio", 512, 2048);
    #[cfg(feature = "tokio")]
    check::<crate::runtime::tokio::TokioStream, crate::runtime::tokio::Tokio>("tokio", 512, 2048);
    #[cfg(feature = "glommio")]
    check::<crate::runtime::glommio::GlommioStream, crate::runtime::glommio::Glommio>("glommio", 512, 2048);
}

/// A handler that does its work in `call` (returning a ready future) and panics there gets
/// the same answer as one whose future panics: a 500 that closes the connection, the
/// request after it unanswered.
#[test]
fn a_panic_in_call_itself_is_a_500() {
    use crate::app::{Request, Response, Router};
    fn sync_panics(req: Request) -> std::future::Ready<Response> {
        assert!(req.path() != "/boom", "boom");
        std::future::ready(Response::new(204))
    }
    let log = crate::testing::run_connection(
        vec![b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\nGET /boom HTTP/1.1\r\nHost: x\r\n\r\nGET /ok HTTP/1.1\r\nHost: x\r\n\r\n"
            .to_vec()],
        DriverConfig::default(),
        Router::new().get("/ok", sync_panics).get("/boom", sync_panics),
    );
    let out = log.output();
    assert_eq!(count(&out, "HTTP/1.1 204"), 1, "{}", String::from_utf8_lossy(&out));
    assert_eq!(count(&out, "HTTP/1.1 500"), 1, "{}", String::from_utf8_lossy(&out));
    assert_eq!(count(&out, "connection: close"), 1);
}

/// A handler may hand its request body to another task and answer before that task's read
/// ends. The read gives its slot of `--limit-concurrency` back while it waits and takes it
/// again after; once the handler has returned there is no slot to give or take. Counting it
/// anyway took the executor's in-flight count below zero: an overflow panic in debug builds,
/// and in release a count of `usize::MAX`, so every later request on the executor got 503.
#[test]
fn a_body_read_that_outlives_its_handler_leaves_the_in_flight_count_alone() {
    use std::cell::RefCell;
    use std::future::Future;
    use std::rc::Rc;
    use std::task::{Context, Waker};

    use crate::app::{Request, RequestBody, Response, Router};
    use crate::coop::YieldNow;
    use crate::testing::{MemoryIo, NeverTimer};

    let handed: Rc<RefCell<Option<RequestBody>>> = Rc::default();
    let to_task = handed.clone();
    let handler = move |mut req: Request| {
        let to_task = to_task.clone();
        async move {
            *to_task.borrow_mut() = Some(req.take_body());
            // One yield, for the task to start its read (it waits: the client sends no body).
            YieldNow::Wake { yielded: false }.await;
            Response::new(202)
        }
    };
    let state = Arc::new(ServerState::new(1));
    let ctx = Rc::new(super::ConnCtx::new(
        DriverConfig::default(),
        Router::new().post("/up", handler).get("/", |_: Request| std::future::ready(Response::new(204))),
        state.executor(0),
        state,
        usize::MAX,
    ));
    let peer: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
    let (io, _) =
        MemoryIo::stalling(vec![b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n".to_vec()]);
    let mut conn = std::pin::pin!(super::serve::<MemoryIo, NeverTimer, Router>(io, peer.into(), ctx.clone()));
    let mut task = Box::pin(async {
        let mut body = loop {
            if let Some(body) = handed.borrow_mut().take() {
                break body;
            }
            YieldNow::Wake { yielded: false }.await;
        };
        body.chunk().await
    });
    let mut cx = Context::from_waker(Waker::noop());
    let mut conn_done = false;
    for _ in 0..8 {
        // The connection ends: its socket went with the task's read.
        conn_done = conn_done || conn.as_mut().poll(&mut cx).is_ready();
        assert!(task.as_mut().poll(&mut cx).is_pending(), "the client sent no body");
        assert!(ctx.in_flight() <= 1, "in flight: {}", ctx.in_flight());
    }
    assert!(conn_done);
    assert_eq!(ctx.in_flight(), 0, "the handler returned; the task's read holds no slot");
    drop(task);
    assert_eq!(ctx.in_flight(), 0, "nor does the read when it ends");

    // The executor still answers.
    let (io, log) = MemoryIo::new(vec![b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()]);
    crate::testing::block_on(
        super::serve::<MemoryIo, NeverTimer, Router>(io, peer.into(), ctx.clone()),
        1000,
    );
    let out = log.borrow().output();
    assert!(out.starts_with(b"HTTP/1.1 204"), "{}", String::from_utf8_lossy(&out));
}

/// A HEAD request's refusals have no body either (RFC 9110 9.3.2): the 503 of
/// `--limit-concurrency` and the 400 of a malformed chunked body.
#[test]
fn a_refused_head_request_gets_a_head_alone() {
    use std::rc::Rc;

    use crate::app::{Request, Response, Router};
    use crate::testing::{block_on, MemoryIo, NeverTimer};

    let serve = |max_in_flight: usize, request: &[u8]| {
        let state = Arc::new(ServerState::new(1));
        let app = Router::new().get("/a", |_: Request| std::future::ready(Response::text("A")));
        let ctx = Rc::new(super::ConnCtx::new(
            DriverConfig::default(),
            app,
            state.executor(0),
            state,
            max_in_flight,
        ));
        let (io, log) = MemoryIo::new(vec![request.to_vec()]);
        let peer: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
        block_on(super::serve::<MemoryIo, NeverTimer, Router>(io, peer.into(), ctx), 1000);
        let out = log.borrow().output();
        String::from_utf8(out).unwrap()
    };
    let refused = serve(0, b"HEAD /a HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(refused.starts_with("HTTP/1.1 503 "), "{refused}");
    assert!(refused.ends_with("\r\n\r\n"), "no body after the head: {refused:?}");
    let bad = serve(usize::MAX, b"HEAD /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
    assert!(bad.starts_with("HTTP/1.1 400 "), "{bad}");
    assert!(bad.ends_with("\r\n\r\n"), "no body after the head: {bad:?}");
}

/// A status that cannot end a request (an interim 1xx, a 101 without an upgrade, 600 and
/// up) is answered 500: a client takes a 1xx for an interim answer and the next response
/// for this one's (RFC 9110 15.2).
#[test]
fn a_status_that_cannot_be_final_is_answered_500() {
    use crate::app::{Request, Response, Router};
    let status = |req: Request| {
        let code = req.path()[1..].parse::<u16>().unwrap();
        std::future::ready(Response::new(code))
    };
    let app = Router::new().get("/103", status).get("/101", status).get("/700", status).get("/204", status);
    let requests = b"GET /103 HTTP/1.1\r\nHost: x\r\n\r\nGET /101 HTTP/1.1\r\nHost: x\r\n\r\n\
GET /700 HTTP/1.1\r\nHost: x\r\n\r\nGET /204 HTTP/1.1\r\nHost: x\r\n\r\n";
    let log = crate::testing::run_connection(vec![requests.to_vec()], DriverConfig::default(), app);
    let out = String::from_utf8(log.output()).unwrap();
    let statuses: Vec<&str> = out.match_indices("HTTP/1.1 ").map(|(i, _)| &out[i + 9..i + 12]).collect();
    assert_eq!(statuses, ["500", "500", "500", "204"], "{out}");
}
