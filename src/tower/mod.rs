//! Serve `tower::Service`s on the `http` crate's types — an axum `Router`, a hyper-style
//! service, tower-http layers — with everything the server does for native handlers: limits,
//! timeouts, pipelining, keep-alive, drain, reload and recycling, panics as 500s, the access
//! log, metrics, forwarded headers and the PROXY protocol. The connection driver does not
//! change for it: [`TowerHandler`] is an ordinary [`Handler`].
//!
//! ```no_run
//! use percore::{Server, ServerConfig};
//!
//! let app = axum::Router::new().route("/", axum::routing::get(|| async { "hi" }));
//! Server::new(ServerConfig::default()).run(percore::tower::per_executor(move |_exec| app.clone())).unwrap();
//! ```

mod body;
mod convert;
mod ws;

use std::cell::RefCell;
use std::fmt::Display;
use std::future::{poll_fn, Future};
use std::net::IpAddr;
use std::task::Poll;

use bytes::Bytes;
use tower_service::Service;

pub use body::Body;
pub use ws::{refusal as websocket_refusal, WebSocketRejection, WebSocketUpgrade};

use crate::app::{Handler, Request, Response};
use crate::executor::ExecutorInfo;

/// What percore knows of a request beyond its head, in its extensions as one value (one
/// insertion per request): `Extension<percore::tower::RequestInfo>` in axum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    /// The peer: a TCP address (or the source a PROXY header gave), or a Unix socket.
    pub peer: crate::Peer,
    /// The client as trusted proxies describe it (`--forwarded-allow-ips`,
    /// `--forwarded-headers`); the peer's address otherwise (127.0.0.1 for a Unix peer).
    pub client: IpAddr,
    /// `http` or `https` (TLS, or a trusted proxy that says so).
    pub scheme: &'static str,
    /// The host a trusted proxy says the client asked for, only with `--forwarded-host`
    /// (otherwise the request's URI and `Host` header say it).
    pub forwarded_host: Option<String>,
    /// The index of the executor serving the request.
    pub executor: usize,
}

/// A tower service as a percore [`Handler`]: one per executor, built by the factory given to
/// [`per_executor`], so per-core state needs no lock.
pub struct TowerHandler<S> {
    service: RefCell<S>,
    executor: usize,
}

impl<S> TowerHandler<S> {
    pub fn new(service: S, executor: &ExecutorInfo) -> TowerHandler<S> {
        TowerHandler { service: RefCell::new(service), executor: executor.index }
    }
}

/// A handler factory for [`crate::Server::run`] from a service factory: `make` runs once per
/// executor (clone an axum `Router` there, or build per-core state).
pub fn per_executor<S, F>(make: F) -> impl Fn(&ExecutorInfo) -> TowerHandler<S> + Send + Sync + 'static
where
    F: Fn(&ExecutorInfo) -> S + Send + Sync + 'static,
{
    move |exec: &ExecutorInfo| TowerHandler::new(make(exec), exec)
}

impl<S, B> Handler for TowerHandler<S>
where
    S: Service<http::Request<Body>, Response = http::Response<B>> + 'static,
    S::Error: Display,
    B: http_body::Body<Data = Bytes> + 'static,
    B::Error: Display,
{
    fn call(&self, req: Request) -> impl Future<Output = Response> {
        let request = convert::to_http(req, self.executor);
        async move {
            let request = match request {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(error = %e, "request not representable as an http::Request");
                    return Response::status_text(400);
                }
            };
            // Honour `poll_ready`, then call with no await in between, so no other request of
            // this executor can take the readiness this one waited for.
            let mut request = Some(request);
            let called = poll_fn(|cx| {
                let mut service = self.service.borrow_mut();
                match service.poll_ready(cx) {
                    Poll::Ready(Ok(())) => {
                        Poll::Ready(Ok(service.call(request.take().expect("called once"))))
                    }
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    Poll::Pending => Poll::Pending,
                }
            })
            .await;
            let outcome = match called {
                Ok(future) => future.await,
                Err(e) => Err(e),
            };
            match outcome {
                Ok(response) => convert::from_http(response),
                Err(e) => {
                    tracing::error!(error = %e, "service failed; answering 500");
                    Response::status_text(500)
                }
            }
        }
    }
}
