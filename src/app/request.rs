//! The request a handler receives.

use std::net::SocketAddr;

use crate::http::{RequestHead, Version};

use super::body::RequestBody;

/// One HTTP request: its head (parsed in place from the connection's read buffer), the peer
/// address and the body.
#[derive(Debug)]
pub struct Request {
    head: RequestHead,
    peer: SocketAddr,
    body: RequestBody,
}

impl Request {
    pub fn new(head: RequestHead, peer: SocketAddr, body: RequestBody) -> Request {
        Request { head, peer, body }
    }

    pub fn method(&self) -> &str {
        self.head.method()
    }

    /// The path, without the query (`/a` for `/a?b=1` and for `http://host/a?b=1`).
    pub fn path(&self) -> &str {
        self.head.path()
    }

    /// The query string without `?`.
    pub fn query(&self) -> Option<&str> {
        self.head.query()
    }

    /// The raw value of the first query parameter called `name` (no percent-decoding).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query()?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then_some(v)
        })
    }

    /// The request target exactly as sent.
    pub fn target(&self) -> &str {
        self.head.target()
    }

    pub fn version(&self) -> Version {
        self.head.version()
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.head.header(name)
    }

    /// All header fields in order.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        self.head.headers()
    }

    /// The TCP peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    pub fn head(&self) -> &RequestHead {
        &self.head
    }

    pub fn body_mut(&mut self) -> &mut RequestBody {
        &mut self.body
    }

    /// Take the body out, leaving an empty one.
    pub fn take_body(&mut self) -> RequestBody {
        std::mem::replace(&mut self.body, RequestBody::empty())
    }
}
