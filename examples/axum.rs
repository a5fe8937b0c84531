//! An axum app on percore, with the `percore` binary's whole command line (flags, env vars,
//! config file, `check-config`, signals, logging, `/health`, `/ready`, `/metrics`):
//!
//! ```sh
//! cargo run --release --example axum -- --port 8000 --workers 2 --runtime tokio
//! curl localhost:8000/users/42
//! ```
//!
//! The `Router` is built once per executor (per core): the `Arc` state is shared by all of
//! them, the `Cell` counter is each core's own, with no lock.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use percore::tower::RequestInfo;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tower_http::timeout::TimeoutLayer;

/// Shared by every executor.
#[derive(Clone, Default)]
struct AppState {
    requests: Arc<AtomicU64>,
}

#[derive(Deserialize)]
struct SleepParams {
    ms: u64,
}

#[derive(Deserialize)]
struct OutboundParams {
    port: u16,
}

fn app() -> Router {
    // This core's own counter. axum wants `Send` handlers, so it is a thread-local rather than
    // a `Cell` in the router: each executor is one thread, so it needs no lock either way.
    thread_local! {
        static SERVED_HERE: Rc<Cell<u64>> = Rc::new(Cell::new(0));
    }
    let state = AppState::default();
    Router::new()
        .route("/plaintext", get(|| async { "Hello, World!" }))
        .route(
            "/users/{id}",
            get(|Path(id): Path<String>| async move { Json(serde_json::json!({ "id": id })) }),
        )
        .route("/echo-json", post(|Json(body): Json<serde_json::Value>| async move { Json(body) }))
        .route("/sleep", get(sleep))
        .route("/outbound", get(outbound))
        .route(
            "/core",
            get(|Extension(info): Extension<RequestInfo>, State(state): State<AppState>| async move {
                let index = info.executor;
                let here = SERVED_HERE.with(|c| {
                    c.set(c.get() + 1);
                    c.get()
                });
                let total = state.requests.fetch_add(1, Ordering::Relaxed) + 1;
                format!("{index} {here} {total}")
            }),
        )
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, Duration::from_secs(10)))
        .with_state(state)
}

/// 200 after `tokio::time::sleep` (on monoio and glommio, through percore's tokio context).
async fn sleep(Query(p): Query<SleepParams>) -> impl IntoResponse {
    tokio::time::sleep(Duration::from_millis(p.ms.min(60_000))).await;
    format!("slept {} ms\n", p.ms)
}

/// Connect to 127.0.0.1:port with tokio, send `ping`, answer with the first line back.
async fn outbound(Query(p): Query<OutboundParams>) -> Result<String, (StatusCode, String)> {
    let fail = |e: std::io::Error| (StatusCode::BAD_GATEWAY, format!("outbound: {e}\n"));
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", p.port)).await.map_err(fail)?;
    stream.write_all(b"ping\n").await.map_err(fail)?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).await.map_err(fail)?;
    Ok(line)
}

fn main() -> std::process::ExitCode {
    percore::cli::run_service(|_exec| app())
}
