//! `/metrics` in the Prometheus text format (version 0.0.4). Counters are kept per executor
//! by their owners and summed here, at scrape time, so the request path never shares a
//! counter between cores.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::app::{Request, Response};
use crate::http::ParseError;
use crate::state::{ServerState, Totals, DURATION_BUCKETS_US};
use crate::ws::stats::CLOSE_CODE_LABELS;

/// The media type Prometheus scrapes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Render every metric of `state`.
pub fn render(state: &ServerState) -> String {
    let slots = state.totals();
    let mut sum = Totals::default();
    for t in &slots {
        sum.connections_accepted += t.connections_accepted;
        sum.connections_open += t.connections_open;
        sum.connections_rejected += t.connections_rejected;
        sum.requests += t.requests;
        sum.in_flight += t.in_flight;
        sum.handler_panics += t.handler_panics;
        sum.proxy_refused += t.proxy_refused;
        sum.tls_handshake_failures += t.tls_handshake_failures;
        sum.duration_sum_us += t.duration_sum_us;
        sum.duration_count += t.duration_count;
        for i in 0..5 {
            sum.status_classes[i] += t.status_classes[i];
        }
        for (s, v) in sum.duration_buckets.iter_mut().zip(&t.duration_buckets) {
            *s += v;
        }
        for (s, v) in sum.parse_error_kinds.iter_mut().zip(&t.parse_error_kinds) {
            *s += v;
        }
        for (s, v) in sum.ws.closes_sent.iter_mut().zip(&t.ws.closes_sent) {
            *s += v;
        }
        for (s, v) in sum.ws.closes_received.iter_mut().zip(&t.ws.closes_received) {
            *s += v;
        }
    }
    let mut w = String::with_capacity(4096);

    let per_executor = |w: &mut String, name: &str, kind: &str, help: &str, pick: &dyn Fn(&Totals) -> u64| {
        let _ = writeln!(w, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (i, t) in slots.iter().enumerate() {
            let _ = writeln!(w, "{name}{{executor=\"{i}\"}} {}", pick(t));
        }
    };
    per_executor(&mut w, "percore_requests_total", "counter", "Requests received (heads parsed).", &|t| {
        t.requests
    });
    per_executor(
        &mut w,
        "percore_connections_accepted_total",
        "counter",
        "Connections accepted, per executor (the SO_REUSEPORT spread).",
        &|t| t.connections_accepted,
    );
    per_executor(&mut w, "percore_connections_open", "gauge", "Connections open now.", &|t| {
        t.connections_open
    });
    per_executor(&mut w, "percore_requests_in_flight", "gauge", "Requests inside a handler now.", &|t| {
        t.in_flight
    });
    per_executor(
        &mut w,
        "percore_connections_rejected_total",
        "counter",
        "Connections answered 503 and closed because of --max-connections.",
        &|t| t.connections_rejected,
    );

    per_executor(&mut w, "percore_websockets_open", "gauge", "WebSockets open now.", &|t| t.ws.open);
    per_executor(
        &mut w,
        "percore_websockets_quiet",
        "gauge",
        "Open WebSockets parked while quiet (no read buffer, no loops held).",
        &|t| t.ws.quiet,
    );
    per_executor(
        &mut w,
        "percore_websocket_messages_received_total",
        "counter",
        "WebSocket text and binary messages received.",
        &|t| t.ws.messages_in,
    );
    per_executor(
        &mut w,
        "percore_websocket_messages_sent_total",
        "counter",
        "WebSocket text and binary messages sent.",
        &|t| t.ws.messages_out,
    );
    per_executor(
        &mut w,
        "percore_websocket_received_bytes_total",
        "counter",
        "Bytes read from WebSockets after their handshake (frames as on the wire, compressed or not).",
        &|t| t.ws.bytes_in,
    );
    per_executor(
        &mut w,
        "percore_websocket_sent_bytes_total",
        "counter",
        "Bytes written to WebSockets (frames as on the wire, compressed or not).",
        &|t| t.ws.bytes_out,
    );
    let _ = writeln!(
        w,
        "# HELP percore_websocket_closes_total WebSocket close frames by direction and code \
         (3xxx, 4xxx: application codes; none: a close frame without a code).\n\
         # TYPE percore_websocket_closes_total counter"
    );
    for (direction, counts) in [("sent", &sum.ws.closes_sent), ("received", &sum.ws.closes_received)] {
        for (code, n) in CLOSE_CODE_LABELS.iter().zip(counts.iter()) {
            let _ = writeln!(
                w,
                "percore_websocket_closes_total{{direction=\"{direction}\",code=\"{code}\"}} {n}"
            );
        }
    }

    let _ = writeln!(
        w,
        "# HELP percore_responses_total Responses by status class.\n# TYPE percore_responses_total counter"
    );
    for (i, n) in sum.status_classes.iter().enumerate() {
        let _ = writeln!(w, "percore_responses_total{{class=\"{}xx\"}} {n}", i + 1);
    }

    let _ = writeln!(
        w,
        "# HELP percore_request_duration_seconds Time from a complete request head to the end of its response.\n\
         # TYPE percore_request_duration_seconds histogram"
    );
    let mut cumulative = 0;
    for (le, n) in DURATION_BUCKETS_US.iter().zip(&sum.duration_buckets) {
        cumulative += n;
        let _ = writeln!(
            w,
            "percore_request_duration_seconds_bucket{{le=\"{}\"}} {cumulative}",
            *le as f64 / 1e6
        );
    }
    let _ = writeln!(w, "percore_request_duration_seconds_bucket{{le=\"+Inf\"}} {}", sum.duration_count);
    let _ = writeln!(w, "percore_request_duration_seconds_sum {}", sum.duration_sum_us as f64 / 1e6);
    let _ = writeln!(w, "percore_request_duration_seconds_count {}", sum.duration_count);

    let _ = writeln!(
        w,
        "# HELP percore_parse_errors_total Requests refused by the HTTP codec, by kind.\n\
         # TYPE percore_parse_errors_total counter"
    );
    for (kind, n) in ParseError::ALL.iter().zip(&sum.parse_error_kinds) {
        let _ = writeln!(
            w,
            "percore_parse_errors_total{{kind=\"{}\",status=\"{}\"}} {n}",
            kind.kind(),
            kind.status()
        );
    }
    let simple = |w: &mut String, name: &str, kind: &str, help: &str, v: u64| {
        let _ = writeln!(w, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
    };
    simple(
        &mut w,
        "percore_handler_panics_total",
        "counter",
        "Handler panics answered with 500.",
        sum.handler_panics,
    );
    simple(
        &mut w,
        "percore_proxy_protocol_refused_total",
        "counter",
        "Connections closed for their PROXY header (peer not in --proxy-allow-from, missing, malformed, late).",
        sum.proxy_refused,
    );
    simple(
        &mut w,
        "percore_tls_handshake_failures_total",
        "counter",
        "TLS handshakes that failed (refused client certificate, protocol or cipher; plain HTTP on the TLS port; client gone).",
        sum.tls_handshake_failures,
    );
    simple(
        &mut w,
        "percore_executor_restarts_total",
        "counter",
        "Executors started to replace others (crash, stall, recycling, reload).",
        state.restarts(),
    );
    simple(&mut w, "percore_executor_stalls_total", "counter", "Executors found stalled.", state.stalls());
    simple(
        &mut w,
        "percore_access_log_dropped_total",
        "counter",
        "Access log lines dropped because its queue was full or its output failed.",
        state.access_log_dropped(),
    );
    simple(&mut w, "percore_executors", "gauge", "Executor slots.", slots.len() as u64);
    simple(&mut w, "percore_draining", "gauge", "1 while draining.", u64::from(state.is_draining()));
    let _ = writeln!(
        w,
        "# HELP percore_info Build and runtime.\n# TYPE percore_info gauge\n\
         percore_info{{version=\"{}\",runtime=\"{}\",driver=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        state.runtime(),
        state.driver()
    );
    w
}

/// A handler serving [`render`], to mount on the main port (the demo app has it at
/// `/metrics`).
pub fn handler(state: Arc<ServerState>) -> impl Fn(Request) -> std::future::Ready<Response> + 'static {
    move |_req: Request| {
        std::future::ready(
            Response::new(200)
                .with_header("content-type", Bytes::from_static(CONTENT_TYPE.as_bytes()))
                .with_body(render(&state)),
        )
    }
}

/// Scrapes answered at once on `--metrics-port`; a connection beyond them is closed at once.
const MAX_SCRAPES: usize = 16;
/// The whole time a scrape connection gets to send its request head (not per read: a client
/// trickling a byte at a time is cut here too).
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// The longest a response write may wait on a client that does not read.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// The most of a request head read; the request line is all that matters.
const MAX_HEAD: usize = 4096;

/// Serve `GET /metrics` on a port of its own (`--metrics-port`): scrapes never touch an
/// executor, and the port can be kept off the public interface.
///
/// Each connection gets a thread of its own (at most [`MAX_SCRAPES`] at once) and a
/// whole-request deadline, so one slow or stuck client cannot hold up every scrape.
pub fn serve_on(
    listener: TcpListener,
    state: Arc<ServerState>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("percore-metrics".into()).spawn(move || {
        let active = Arc::new(AtomicUsize::new(0));
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            if active.fetch_add(1, Relaxed) >= MAX_SCRAPES {
                active.fetch_sub(1, Relaxed);
                continue; // dropped: closed
            }
            let (state, done) = (state.clone(), active.clone());
            let spawned = std::thread::Builder::new().name("percore-scrape".into()).spawn(move || {
                answer(stream, &state);
                done.fetch_sub(1, Relaxed);
            });
            if spawned.is_err() {
                active.fetch_sub(1, Relaxed);
            }
        }
    })
}

/// Read one request head (within [`REQUEST_DEADLINE`]) and answer it; close.
fn answer(mut stream: TcpStream, state: &ServerState) {
    let Some(head) = read_head(&mut stream, Instant::now() + REQUEST_DEADLINE) else { return };
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let (status, body) = if line.starts_with(b"GET /metrics ") || line.starts_with(b"GET /metrics?") {
        ("200 OK", render(state))
    } else {
        ("404 Not Found", "404 Not Found\n".to_string())
    };
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {CONTENT_TYPE}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let _ = stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(body.as_bytes()));
}

/// The request head (up to [`MAX_HEAD`] bytes), or `None` if the client closed or the
/// deadline passed first.
fn read_head(stream: &mut TcpStream, deadline: Instant) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; MAX_HEAD];
    let mut len = 0;
    while len < buf.len() && !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
        let left = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())?;
        stream.set_read_timeout(Some(left)).ok()?;
        match stream.read(&mut buf[len..]) {
            Ok(0) | Err(_) => return None,
            Ok(n) => len += n,
        }
    }
    buf.truncate(len);
    Some(buf)
}
