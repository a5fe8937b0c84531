//! The routes every percore server answers beside its app, as the `percore` binary does:
//! `/health`, `/ready` (503 while draining) and `/metrics`. Load balancers, systemd health
//! checks, Kubernetes probes and Prometheus find them on a user's own binary too.

use std::sync::Arc;

use bytes::Bytes;

use std::future::Future;

use super::handler::{Handler, OneOf};
use super::request::Request;
use super::response::Response;
use super::router::Router;
use crate::state::ServerState;

/// `/health`, `/ready` and `/metrics` on a [`Router`].
pub fn builtin_routes(state: Arc<ServerState>) -> Router {
    Router::new().get("/metrics", crate::observe::metrics::handler(state.clone())).get("/health", health).get(
        "/ready",
        move |_req: Request| {
            let draining = state.is_draining();
            async move { ready(draining) }
        },
    )
}

async fn health(_req: Request) -> Response {
    Response::json(Bytes::from_static(br#"{"status":"healthy"}"#))
}

fn ready(draining: bool) -> Response {
    if draining {
        let mut r = Response::json(Bytes::from_static(br#"{"status":"draining"}"#));
        r.set_status(503);
        r
    } else {
        Response::json(Bytes::from_static(br#"{"status":"ready"}"#))
    }
}

/// An app with the built-in routes in front: a request for one of their paths goes to them,
/// every other request to the app.
pub struct WithBuiltins<H> {
    builtins: Router,
    app: H,
}

impl<H> WithBuiltins<H> {
    pub fn new(builtins: Router, app: H) -> WithBuiltins<H> {
        WithBuiltins { builtins, app }
    }
}

impl<H: Handler> Handler for WithBuiltins<H> {
    /// Not an `async fn`: the request moves straight into the chosen handler's future, and
    /// this adds no state machine of its own around it. Inlined into the caller, as the
    /// router's own call is, so that the request is lent to the handler from where the
    /// caller has it.
    #[inline(always)]
    fn call(&self, req: Request) -> impl Future<Output = Response> {
        if self.builtins.serves(req.path()) {
            OneOf::First(self.builtins.call(req))
        } else {
            OneOf::Second(self.app.call(req))
        }
    }

    #[inline(always)]
    unsafe fn call_in_place(&self, req: *mut Request) -> impl Future<Output = Response> {
        // SAFETY: `req` is live (the caller's contract) and passed on whole to one handler.
        unsafe {
            if self.builtins.serves((*req).path()) {
                OneOf::First(self.builtins.call_in_place(req))
            } else {
                OneOf::Second(self.app.call_in_place(req))
            }
        }
    }
}
