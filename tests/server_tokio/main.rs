//! The whole integration suite of `tests/server` again, with every server on the tokio
//! runtime: the same codec, driver, handlers and supervisor must behave the same on epoll.

/// The runtime every server in this test binary runs.
pub const RUNTIME: &str = "tokio";

#[path = "../server/axum_app.rs"]
mod axum_app;
#[path = "../server/backend.rs"]
mod backend;
#[path = "../server/basics.rs"]
mod basics;
#[path = "../server/chaos.rs"]
mod chaos;
#[path = "../server/chat.rs"]
mod chat;
#[path = "../server/chunked.rs"]
mod chunked;
#[path = "../server/cli.rs"]
mod cli;
#[path = "../server/concurrency.rs"]
mod concurrency;
#[path = "../server/curl.rs"]
mod curl;
#[path = "../server/expect.rs"]
mod expect;
#[path = "../server/framing.rs"]
mod framing;
#[path = "../server/handover.rs"]
mod handover;
#[path = "../server/idle.rs"]
mod idle;
#[path = "../server/keepalive.rs"]
mod keepalive;
#[path = "../server/limits.rs"]
mod limits;
#[path = "../server/nginx.rs"]
mod nginx;
#[path = "../server/ops.rs"]
mod ops;
#[path = "../server/pipelining.rs"]
mod pipelining;
#[path = "../server/resources.rs"]
mod resources;
#[path = "../server/routes.rs"]
mod routes;
#[path = "../server/sse.rs"]
mod sse;
#[path = "../server/strict.rs"]
mod strict;
#[path = "../server/supervisor.rs"]
mod supervisor;
#[allow(dead_code)]
#[path = "../server/support.rs"]
mod support;
#[path = "../server/timeouts.rs"]
mod timeouts;
#[path = "../server/tls.rs"]
mod tls;
#[path = "../server/tls_ops.rs"]
mod tls_ops;
#[path = "../server/trust.rs"]
mod trust;
#[path = "../server/uds.rs"]
mod uds;
#[path = "../server/websocket.rs"]
mod websocket;
#[path = "../server/websocket_deflate.rs"]
mod websocket_deflate;
#[path = "../server/websocket_observe.rs"]
mod websocket_observe;
