//! Integration tests: the real `percore` binary on 127.0.0.1, driven over raw TCP (and curl
//! where installed). Every read has a timeout, so a hang fails instead of blocking CI.

/// The runtime every server in this test binary runs (see `tests/server_tokio`).
pub const RUNTIME: &str = "monoio";

#[allow(dead_code)]
mod support;

mod axum_app;
mod backend;
mod basics;
mod chaos;
mod chat;
mod chunked;
mod cli;
mod concurrency;
mod curl;
mod expect;
mod framing;
mod handover;
mod idle;
mod keepalive;
mod limits;
mod nginx;
mod ops;
mod pipelining;
mod resources;
mod routes;
mod sse;
mod strict;
mod supervisor;
mod timeouts;
mod tls;
mod tls_ops;
mod trust;
mod uds;
mod websocket;
mod websocket_deflate;
mod websocket_observe;
