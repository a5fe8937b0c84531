//! WebSockets in an axum app on percore: `percore::tower::WebSocketUpgrade` is an axum
//! extractor, and the socket is percore's own (its limits, pings, drain with 1001/1012,
//! permessage-deflate and metrics), run on the executor that took the request.
//!
//! ```sh
//! cargo run --release --example axum_ws -- --port 8000
//! websocat ws://127.0.0.1:8000/echo          # what you type comes back
//! ```

use axum::routing::get;
use axum::Router;
use percore::tower::WebSocketUpgrade;
use percore::ws::Message;

/// Echo every message; name the subprotocol `echo` if the client offers it.
async fn echo(ws: WebSocketUpgrade) -> axum::response::Response {
    ws.protocols_preferred(&["echo"]).on_upgrade(|socket| async move {
        while let Some(message) = socket.recv().await {
            // Text comes back as text, binary as binary; a close ends the loop.
            if matches!(message, Message::Close(_)) || socket.send(message).await.is_err() {
                break;
            }
        }
    })
}

fn app() -> Router {
    Router::new()
        .route("/echo", get(echo))
        .route("/", get(|| async { "GET /echo with a WebSocket client\n" }))
}

fn main() -> std::process::ExitCode {
    percore::cli::run_service(|_exec| app())
}
