//! percore: a thread-per-core HTTP/1.1 application server.
//!
//! One executor per core, each a single-threaded io_uring runtime pinned to its core with
//! its own SO_REUSEPORT listener, so executors share nothing on the request path. The
//! HTTP codec ([`http`]) is sans-IO; the connection driver ([`conn`]) is written once over
//! an owned-buffer IO trait ([`io`]); runtime shims ([`runtime`]) are the only code that
//! names a runtime crate.
//!
//! ```no_run
//! use percore::{Request, Response, Router, Server, ServerConfig};
//!
//! Server::new(ServerConfig::default())
//!     .run(|_executor| Router::new().get("/", |_req: Request| async { Response::text("hi") }))
//!     .unwrap();
//! ```

pub mod app;
pub mod chat;
pub mod cli;
pub mod config;
pub mod conn;
pub mod coop;
pub mod cpus;
pub mod executor;
pub mod http;
pub mod idle_clock;
pub mod io;
pub mod latch;
pub mod listen;
pub mod observe;
pub mod peer;
pub mod runtime;
pub mod server;
pub mod stamp;
pub mod state;
pub mod supervisor;
pub mod task;
pub mod testing;
pub mod time;
pub mod tls;
#[cfg(feature = "tower")]
pub mod tower;
pub mod uds;
pub mod ws;

pub use app::{BodyError, Handler, Request, RequestBody, Response, ResponseBody, Router};
pub use config::ServerConfig;
pub use executor::ExecutorInfo;
pub use peer::Peer;
pub use runtime::{IoBackend, RuntimeKind};
pub use server::{Server, ServerError, ServerHandle};
pub use state::ServerState;
pub use supervisor::{Command, Shutdown};
