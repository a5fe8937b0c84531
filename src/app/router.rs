//! A small exact-path router: method + path to handler, with the 404/405/OPTIONS answers a
//! client expects.

use bytes::Bytes;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::handler::Handler;
use super::request::Request;
use super::response::Response;
use super::route_future::{Pooled, RouteFuture, RouteHandler};

struct Route {
    path: String,
    methods: Vec<(String, Box<dyn RouteHandler>)>,
}

impl Route {
    fn allow(&self) -> String {
        let mut names: Vec<&str> = self.methods.iter().map(|(m, _)| m.as_str()).collect();
        if names.contains(&"GET") && !names.contains(&"HEAD") {
            names.push("HEAD");
        }
        if !names.contains(&"OPTIONS") {
            names.push("OPTIONS");
        }
        names.join(", ")
    }

    fn find(&self, method: &str) -> Option<&dyn RouteHandler> {
        let lookup = |m: &str| self.methods.iter().find(|(k, _)| k == m).map(|(_, h)| h.as_ref());
        // HEAD is GET without the body (RFC 9110 §9.3.2); the encoder drops the body.
        lookup(method).or_else(|| if method == "HEAD" { lookup("GET") } else { None })
    }
}

/// Routes requests by exact path, then by method.
///
/// - unknown path: 404
/// - known path, other method: 405 with `Allow`
/// - `OPTIONS` on a known path, or `OPTIONS *`: 204 with `Allow`
/// - `HEAD` on a path with `GET`: the GET handler, body dropped
#[derive(Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    pub fn new() -> Router {
        Router::default()
    }

    /// Route `method` on `path` to `handler`.
    pub fn route(mut self, method: &str, path: &str, handler: impl Handler) -> Router {
        let method = method.to_ascii_uppercase();
        let boxed: Box<dyn RouteHandler> = Box::new(Pooled::new(handler));
        match self.routes.iter_mut().find(|r| r.path == path) {
            Some(route) => {
                route.methods.retain(|(m, _)| *m != method);
                route.methods.push((method, boxed));
            }
            None => self.routes.push(Route { path: path.to_string(), methods: vec![(method, boxed)] }),
        }
        self
    }

    pub fn get(self, path: &str, handler: impl Handler) -> Router {
        self.route("GET", path, handler)
    }

    pub fn post(self, path: &str, handler: impl Handler) -> Router {
        self.route("POST", path, handler)
    }

    pub fn put(self, path: &str, handler: impl Handler) -> Router {
        self.route("PUT", path, handler)
    }

    pub fn delete(self, path: &str, handler: impl Handler) -> Router {
        self.route("DELETE", path, handler)
    }

    /// A WebSocket route: a GET that upgrades runs `f(request, socket)` on the connection;
    /// any other request to `path` gets the handshake's refusal (426 without an upgrade).
    /// For subprotocols, route a [`crate::ws::WsRoute`] with `get`.
    pub fn ws<F, Fut>(self, path: &str, f: F) -> Router
    where
        F: Fn(Request, crate::ws::WebSocket) -> Fut + 'static,
        Fut: std::future::Future<Output = ()> + 'static,
    {
        self.get(path, crate::ws::WsRoute::new(&[], f))
    }

    /// Whether a route exists for `path` (with any method).
    pub fn serves(&self, path: &str) -> bool {
        self.routes.iter().any(|r| r.path == path)
    }

    fn all_methods(&self) -> String {
        let mut names: Vec<String> = Vec::new();
        for route in &self.routes {
            for m in route.allow().split(", ") {
                if !names.iter().any(|n| n == m) {
                    names.push(m.to_string());
                }
            }
        }
        names.join(", ")
    }
}

impl Router {
    /// The route's handler started on `req`, or the router's own answer. Not an `async fn`:
    /// the request moves straight into the handler's future instead of through a state
    /// machine of the router's own first.
    #[inline]
    fn dispatch(&self, req: Request) -> Dispatch<'_> {
        if req.path() == "*" {
            // Only OPTIONS reaches here: the codec refuses `*` with any other method.
            return Dispatch::Answer(Some(Response::new(204).with_header("allow", self.all_methods())));
        }
        let Some(route) = self.routes.iter().find(|r| r.path == req.path()) else {
            return Dispatch::Answer(Some(Response::status_text(404)));
        };
        if let Some(handler) = route.find(req.method()) {
            return Dispatch::Handler(handler.start(req));
        }
        Dispatch::Answer(Some(if req.method() == "OPTIONS" {
            Response::new(204).with_header("allow", route.allow())
        } else {
            Response::status_text(405).with_header("allow", Bytes::from(route.allow()))
        }))
    }
}

/// The future of [`Router::call`]: a handler's, or an answer of the router's own.
enum Dispatch<'a> {
    Answer(Option<Response>),
    Handler(RouteFuture<'a>),
}

impl Future for Dispatch<'_> {
    type Output = Response;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response> {
        match self.get_mut() {
            Dispatch::Answer(answer) => Poll::Ready(answer.take().expect("Dispatch polled after completion")),
            Dispatch::Handler(fut) => Pin::new(fut).poll(cx),
        }
    }
}

impl Handler for Router {
    #[inline]
    fn call(&self, req: Request) -> impl Future<Output = Response> {
        self.dispatch(req)
    }
}
