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

use std::any::Any;
use std::cell::RefCell;
use std::fmt::Display;
use std::future::Future;
use std::net::IpAddr;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

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
    /// What requests reuse: see [`convert::Reuse`].
    reuse: convert::Reuse,
}

impl<S> TowerHandler<S> {
    pub fn new(service: S, executor: &ExecutorInfo) -> TowerHandler<S> {
        TowerHandler {
            service: RefCell::new(service),
            executor: executor.index,
            reuse: convert::Reuse::new(),
        }
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
        let is_head = req.method() == "HEAD";
        let request = match convert::to_http(req, self.executor, &self.reuse) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "request not representable as an http::Request");
                return Call::Answered(Some(Response::status_text(400)));
            }
        };
        // The driver catches panics only inside the future it polls: one here (in
        // `poll_ready` or `call`) resumes in its first poll, and is a 500 like any other.
        let called = catch_unwind(AssertUnwindSafe(|| {
            let mut service = self.service.borrow_mut();
            // Usually ready at once (an axum `Router` always is): then called now, so the
            // service's future is the whole state, and the request is not moved through a
            // waiting one first. `poll_ready` is asked again with the task's waker if not.
            match service.poll_ready(&mut Context::from_waker(Waker::noop())) {
                Poll::Ready(Ok(())) => {
                    Call::Running { future: service.call(request), is_head, handler: self }
                }
                Poll::Ready(Err(e)) => Call::Answered(Some(service_failed(e))),
                Poll::Pending => Call::Waiting { handler: self, request: Some(request), is_head },
            }
        }));
        called.unwrap_or_else(|panic| Call::Panicked(Some(panic)))
    }
}

/// The future of one request through a [`TowerHandler`].
enum Call<'a, S: Service<http::Request<Body>>> {
    /// The service was not ready: wait for it, then call it.
    Waiting { handler: &'a TowerHandler<S>, request: Option<http::Request<Body>>, is_head: bool },
    /// The service's future; `is_head`: it answers a `HEAD`.
    Running { future: S::Future, is_head: bool, handler: &'a TowerHandler<S> },
    /// `poll_ready` or `call` panicked: resumed in the first poll.
    Panicked(Option<Box<dyn Any + Send>>),
    /// Answered without the service (a 400 or 500).
    Answered(Option<Response>),
}

impl<S, B> Future for Call<'_, S>
where
    S: Service<http::Request<Body>, Response = http::Response<B>>,
    S::Error: Display,
    B: http_body::Body<Data = Bytes> + 'static,
    B::Error: Display,
{
    type Output = Response;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response> {
        loop {
            // SAFETY: structural pinning of `Running`'s future only: it is never moved out
            // while pinned (the state is replaced in place with `Pin::set`, which drops it
            // there); `Call` has no `Drop` or `Unpin` impl of its own. The other variants'
            // fields are not pinned.
            let next = match unsafe { self.as_mut().get_unchecked_mut() } {
                Call::Running { future, is_head, handler } => {
                    return match unsafe { Pin::new_unchecked(future) }.poll(cx) {
                        Poll::Pending => Poll::Pending,
                        Poll::Ready(Ok(response)) => {
                            Poll::Ready(convert::from_http(response, *is_head, &handler.reuse))
                        }
                        Poll::Ready(Err(e)) => Poll::Ready(service_failed(e)),
                    };
                }
                Call::Waiting { handler, request, is_head } => {
                    let mut service = handler.service.borrow_mut();
                    match service.poll_ready(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(e)) => return Poll::Ready(service_failed(e)),
                        // Called with no await in between, so no other request of this
                        // executor can take the readiness this one waited for.
                        Poll::Ready(Ok(())) => Call::Running {
                            future: service.call(request.take().expect("called once")),
                            is_head: *is_head,
                            handler: *handler,
                        },
                    }
                }
                Call::Panicked(panic) => resume_unwind(panic.take().expect("polled after the panic")),
                Call::Answered(response) => {
                    return Poll::Ready(response.take().expect("polled after completion"));
                }
            };
            self.set(next);
        }
    }
}

/// The answer when the service fails.
fn service_failed(e: impl Display) -> Response {
    tracing::error!(error = %e, "service failed; answering 500");
    Response::status_text(500)
}
