//! A small exact-path router: method + path to handler, with the 404/405/OPTIONS answers a
//! client expects.

use bytes::Bytes;

use std::future::Future;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::handler::Handler;
use super::request::Request;
use super::response::Response;
use super::route_future::{Pooled, RequestSlot, RouteFuture, RouteHandler};

struct Route {
    path: String,
    methods: Vec<(String, Box<dyn RouteHandler>)>,
    /// Where `GET` is in `methods`: most requests are GETs, found without comparing names.
    get: Option<usize>,
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

    #[inline(always)]
    fn find(&self, method: &str) -> Option<&dyn RouteHandler> {
        let lookup = |m: &str| self.methods.iter().find(|(k, _)| k == m).map(|(_, h)| h.as_ref());
        let get = || self.get.map(|i| self.methods[i].1.as_ref());
        match method {
            "GET" => get(),
            // HEAD is GET without the body (RFC 9110 §9.3.2); the encoder drops the body.
            "HEAD" => lookup("HEAD").or_else(get),
            _ => lookup(method),
        }
    }

    /// Add (or replace) the handler of `method`.
    fn set(&mut self, method: String, handler: Box<dyn RouteHandler>) {
        self.methods.retain(|(m, _)| *m != method);
        self.methods.push((method, handler));
        self.get = self.methods.iter().position(|(m, _)| m == "GET");
    }
}

/// Whether `a` and `b` hold the same bytes. Paths of 8 to 16 bytes (most routes) are
/// compared as two words that overlap in the middle, not by a call to `memcmp`: a route is
/// looked up on every request.
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if (8..=16).contains(&n) {
        let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("eight bytes"));
        return word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8);
    }
    a == b
}

/// Paths this long or longer share the last bucket of [`Router`]'s index by length (a route
/// on a long path does not make the index that long).
const LONG_PATH: usize = 64;

/// Routes requests by exact path, then by method.
///
/// - unknown path: 404
/// - known path, other method: 405 with `Allow`
/// - `OPTIONS` on a known path, or `OPTIONS *`: 204 with `Allow`
/// - `HEAD` on a path with `GET`: the GET handler, body dropped
#[derive(Default)]
pub struct Router {
    routes: Vec<Route>,
    /// The indices into `routes` of the paths of each length (`by_len[n]`: the paths `n`
    /// bytes long; the last holds every path of [`LONG_PATH`] bytes or more), so a lookup
    /// compares the bytes of one path or two, not of every route.
    by_len: Vec<Vec<usize>>,
}

impl Router {
    pub fn new() -> Router {
        Router::default()
    }

    /// Route `method` on `path` to `handler`.
    pub fn route(mut self, method: &str, path: &str, handler: impl Handler) -> Router {
        let method = method.to_ascii_uppercase();
        let boxed: Box<dyn RouteHandler> = Box::new(Pooled::new(handler));
        match self.routes.iter().position(|r| r.path == path) {
            Some(i) => self.routes[i].set(method, boxed),
            None => {
                let bucket = path.len().min(LONG_PATH);
                if self.by_len.len() <= bucket {
                    self.by_len.resize_with(bucket + 1, Vec::new);
                }
                self.by_len[bucket].push(self.routes.len());
                let mut route = Route { path: path.to_string(), methods: Vec::new(), get: None };
                route.set(method, boxed);
                self.routes.push(route);
            }
        }
        self
    }

    /// The route for exactly `path`: one lookup by length, then the bytes of the
    /// paths of that length (usually one).
    #[inline(always)]
    fn find_route(&self, path: &str) -> Option<&Route> {
        let same_length = self.by_len.get(path.len().min(LONG_PATH))?;
        same_length.iter().map(|&i| &self.routes[i]).find(|r| same_bytes(r.path.as_bytes(), path.as_bytes()))
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
    #[inline]
    pub fn serves(&self, path: &str) -> bool {
        self.find_route(path).is_some()
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
    /// machine of the router's own first. Inlined into the caller, so that the request is
    /// lent to the handler from where the caller has it, not from a copy of it.
    #[inline(always)]
    fn dispatch(&self, req: RequestSlot<'_>) -> Dispatch<'_> {
        // `*` (OPTIONS only: the codec refuses it with any other method) is the router's.
        if let Some(route) = self.find_route(req.path()).filter(|_| req.path() != "*") {
            if let Some(handler) = route.find(req.method()) {
                return Dispatch::Handler(handler.start(req));
            }
        }
        Dispatch::Answer(Some(self.answer(&req)))
    }

    /// The router's own answer to a request no handler takes: 204 with `Allow` to `OPTIONS`,
    /// 404 for an unknown path, 405 with `Allow` for a method the path has no handler for.
    #[cold]
    #[inline(never)]
    fn answer(&self, req: &Request) -> Response {
        if req.path() == "*" {
            // Only OPTIONS reaches here: the codec refuses `*` with any other method.
            return Response::new(204).with_header("allow", self.all_methods());
        }
        let Some(route) = self.find_route(req.path()) else {
            return Response::status_text(404);
        };
        if req.method() == "OPTIONS" {
            Response::new(204).with_header("allow", route.allow())
        } else {
            Response::status_text(405).with_header("allow", Bytes::from(route.allow()))
        }
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
    #[inline(always)]
    fn call(&self, req: Request) -> impl Future<Output = Response> {
        let mut req = ManuallyDrop::new(req);
        // SAFETY: `req` is not used after this: the slot owns it.
        self.dispatch(unsafe { RequestSlot::new(&mut req) })
    }

    #[inline(always)]
    unsafe fn call_in_place(&self, req: *mut Request) -> impl Future<Output = Response> {
        // SAFETY: the caller's contract: a live request, now the slot's (`ManuallyDrop` has
        // the layout of what it holds).
        self.dispatch(unsafe { RequestSlot::new(&mut *req.cast::<ManuallyDrop<Request>>()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path_of(router: &Router, path: &str) -> Option<String> {
        router.find_route(path).map(|r| r.path.clone())
    }

    /// `same_bytes` agrees with `==` at every length, around the word boundaries most of all.
    #[test]
    fn compares_bytes_as_equality_does() {
        for n in 0..40usize {
            let a: Vec<u8> = (0..n as u8).map(|i| b'a' + i % 26).collect();
            assert!(same_bytes(&a, &a.clone()));
            for at in 0..n {
                let mut b = a.clone();
                b[at] ^= 0x20;
                assert!(!same_bytes(&a, &b), "{n} {at}");
            }
            if n > 0 {
                assert!(!same_bytes(&a, &a[..n - 1]));
            }
        }
    }

    /// The index by length finds each path exactly: paths of one length side by side, paths
    /// past `LONG_PATH` sharing the last bucket, and near misses of every kind not found.
    #[test]
    fn finds_each_path_by_its_length_and_bytes() {
        let long_a = format!("/{}", "a".repeat(LONG_PATH + 5));
        let long_b = format!("/{}", "b".repeat(LONG_PATH + 9));
        let mut router = Router::new();
        for path in ["/", "/json", "/echo", "/plaintext", long_a.as_str(), long_b.as_str()] {
            router = router.get(path, |_req: Request| async { Response::new(204) });
        }
        for path in ["/", "/json", "/echo", "/plaintext", long_a.as_str(), long_b.as_str()] {
            assert_eq!(path_of(&router, path).as_deref(), Some(path));
            assert!(router.serves(path));
        }
        for miss in
            ["", "/jso", "/jsonx", "/JSON", "/plaintexT", &long_a[..long_a.len() - 1], &format!("{long_b}b")]
        {
            assert_eq!(path_of(&router, miss), None, "{miss}");
        }
        // A second method on a path is the same route.
        let router = router.post("/json", |_req: Request| async { Response::new(201) });
        assert_eq!(router.routes.len(), 6);
        assert!(router.routes[1].find("POST").is_some() && router.routes[1].find("HEAD").is_some());
    }
}
