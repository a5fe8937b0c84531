//! The request a handler receives.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;

use crate::http::{RequestHead, Version};
use crate::peer::Peer;

use super::body::RequestBody;

/// One HTTP request: its head (parsed in place from the connection's read buffer), the peer
/// address and the body.
#[derive(Debug)]
pub struct Request {
    head: RequestHead,
    peer: Peer,
    /// `None`: a Unix-socket peer that no trusted proxy header named.
    client: Option<IpAddr>,
    scheme: &'static str,
    /// The host a trusted proxy says the client asked for (`--forwarded-host`).
    forwarded_host: Option<Bytes>,
    /// The verified client certificate's subject (mutual TLS).
    client_cert_subject: Option<Arc<str>>,
    body: RequestBody,
}

impl Request {
    pub fn new(head: RequestHead, peer: impl Into<Peer>, body: RequestBody) -> Request {
        let peer = peer.into();
        Request {
            head,
            client: peer.ip(),
            peer,
            scheme: "http",
            forwarded_host: None,
            client_cert_subject: None,
            body,
        }
    }

    /// A request with everything the connection driver knows, built in place (the driver's
    /// path; the builder methods would move the request once each).
    #[inline]
    pub(crate) fn with_all(
        head: RequestHead,
        peer: Peer,
        body: RequestBody,
        client: Option<IpAddr>,
        scheme: &'static str,
        forwarded_host: Option<Bytes>,
        client_cert_subject: Option<Arc<str>>,
    ) -> Request {
        Request { head, peer, client, scheme, forwarded_host, client_cert_subject, body }
    }

    /// Set what the connection driver learned from a trusted proxy: the client's address,
    /// the scheme it used, and (with `--forwarded-host`) the host it asked for.
    /// `client` is `None` for a Unix-socket peer that no trusted header named.
    pub fn with_client(
        mut self,
        client: Option<IpAddr>,
        scheme: &'static str,
        forwarded_host: Option<Bytes>,
    ) -> Request {
        self.client = client;
        self.scheme = scheme;
        self.forwarded_host = forwarded_host;
        self
    }

    /// Set the subject of the client certificate the TLS handshake verified.
    pub fn with_client_cert_subject(mut self, subject: Option<Arc<str>>) -> Request {
        self.client_cert_subject = subject;
        self
    }

    /// The subject of the client's certificate, verified against `--ca-certs` in the TLS
    /// handshake (mutual TLS), as RFC 4514 text, most specific part first:
    /// `CN=alice,O=Example`. `None` over plain HTTP or when the client sent none.
    pub fn client_cert_subject(&self) -> Option<&str> {
        self.client_cert_subject.as_deref()
    }

    /// The client's address: the peer's, unless the peer is a trusted proxy
    /// (`--forwarded-allow-ips`) that says otherwise in the header family that
    /// `--forwarded-headers` names (`X-Forwarded-For` by default, or `Forwarded: for=`).
    ///
    /// A peer on a Unix socket has no address: unless a trusted header names the client,
    /// this is `127.0.0.1`, since only a process on this host can connect to the socket
    /// (the access log shows such a client as `unix:`; [`Request::client_ip`] tells them apart).
    pub fn client_addr(&self) -> IpAddr {
        self.client.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// The client's address as [`Request::client_addr`] has it, but `None` for a
    /// Unix-socket peer that no trusted proxy header named.
    pub fn client_ip(&self) -> Option<IpAddr> {
        self.client
    }

    /// `http` or `https`: `https` over TLS, or when a trusted proxy says so
    /// (`X-Forwarded-Proto`, or `Forwarded: proto=` with `--forwarded-headers forwarded`).
    pub fn scheme(&self) -> &'static str {
        self.scheme
    }

    /// The host the client asked for: what a trusted proxy says when `--forwarded-host` is
    /// on, else the authority of an absolute-form target (RFC 9112 §3.2.2: it wins over
    /// `Host`), else the `Host` header.
    pub fn host(&self) -> Option<&str> {
        self.forwarded_host
            .as_deref()
            .or_else(|| self.head.authority().map(str::as_bytes))
            .or_else(|| self.header("host"))
            .and_then(|h| std::str::from_utf8(h).ok())
            .map(str::trim)
    }

    /// The host a trusted proxy named, when `--forwarded-host` believes it.
    pub fn forwarded_host(&self) -> Option<&[u8]> {
        self.forwarded_host.as_deref()
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

    /// The `Last-Event-ID` a reconnecting `EventSource` sends: the id of the last Server-Sent
    /// Event it received ([`crate::app::sse::Event::id`]), so the handler can resume after it.
    /// `None` when absent or not UTF-8; surrounding whitespace is removed.
    pub fn last_event_id(&self) -> Option<&str> {
        std::str::from_utf8(self.header("last-event-id")?).ok().map(str::trim)
    }

    /// All header fields in order.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        self.head.headers()
    }

    /// The peer: a TCP address (or the source a PROXY protocol header gave), or a process
    /// on this host connected over a Unix socket.
    pub fn peer(&self) -> Peer {
        self.peer
    }

    /// The TCP peer's address (or the source a PROXY protocol header gave); `None` when the
    /// peer came over a Unix socket.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer.socket_addr()
    }

    /// As [`RequestHead::unshare`], for all the request holds of its head (a WebSocket
    /// route does this before its handler gets the request for the WebSocket's life).
    pub(crate) fn unshare(&mut self) {
        self.head.unshare();
        if let Some(host) = &mut self.forwarded_host {
            *host = Bytes::copy_from_slice(host);
        }
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
