//! The same axum `Router` served two ways, for the "bring your own app" comparison:
//!
//! - `axum-serve`: `axum::serve` on a tokio multi-thread runtime (`worker_threads` = cores),
//!   what an axum service runs on today;
//! - `percore-axum-*`: percore's whole command line with that router (`cli::run_service`),
//!   one pinned executor per core, on tokio or monoio.
//!
//! Routes: `/plaintext` and `/json` answer what percore's native demo answers (the JSON
//! serialized with serde per request), `/users/{id}` a path parameter as JSON.

use std::net::SocketAddr;

use axum::extract::Path;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

#[derive(Serialize)]
struct Message {
    message: &'static str,
}

#[derive(Serialize)]
struct User {
    id: String,
}

pub fn router() -> Router {
    Router::new()
        .route(
            "/plaintext",
            get(|| async { ([(CONTENT_TYPE, "text/plain")], "Hello, World!").into_response() }),
        )
        .route("/json", get(|| async { Json(Message { message: "Hello, World!" }) }))
        .route("/users/{id}", get(|Path(id): Path<String>| async move { Json(User { id }) }))
}

/// `axum::serve` with `threads` tokio workers on `port` (pinning is taskset's job).
pub fn serve_axum(threads: usize, port: u16) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| e.to_string())?;
        axum::serve(listener, router()).await.map_err(|e| e.to_string())
    })
}
