//! Accepting a WebSocket from a handler: check the request, choose a subprotocol, and
//! answer with a `101` that carries the function to run on the WebSocket once the
//! connection driver has handed the connection over.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use bytes::Bytes;

use super::deflate::DeflateParams;
use super::handshake::{check, Handshake, HandshakeError};
use super::socket::WebSocket;
use super::WsConfig;
use crate::app::{Handler, Request, Response};

/// The function a `101` response carries: it runs on the WebSocket after the hand-over.
pub type RunSocket = Box<dyn FnOnce(WebSocket) -> Pin<Box<dyn Future<Output = ()>>>>;

/// What the connection driver needs to hand a connection over after a `101`.
pub struct Upgrade {
    /// The request's `Origin`, checked against `--ws-origins` before the `101` goes out.
    pub(crate) origin: Option<Bytes>,
    pub(crate) protocol: Option<String>,
    /// The permessage-deflate parameters the client's offers allow, if any; used only if
    /// `--ws-per-message-deflate` is on (see [`Upgrade::negotiate`]).
    pub(crate) deflate: Option<DeflateParams>,
    pub(crate) run: RunSocket,
}

impl std::fmt::Debug for Upgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upgrade")
            .field("origin", &self.origin)
            .field("protocol", &self.protocol)
            .field("deflate", &self.deflate)
            .finish()
    }
}

impl Upgrade {
    pub fn origin(&self) -> Option<&[u8]> {
        self.origin.as_deref()
    }

    /// Settle the extensions before the `101` goes out: with permessage-deflate on in
    /// `config` and an acceptable offer, name it in `response`; else the connection runs
    /// without it.
    pub(crate) fn negotiate(&mut self, response: &mut Response, config: &WsConfig) {
        if !config.per_message_deflate {
            self.deflate = None;
        }
        if let Some(params) = &self.deflate {
            response.insert_header("sec-websocket-extensions", params.response_header());
        }
    }
}

/// A checked upgrade request, to accept (or refuse) from any handler:
///
/// ```no_run
/// # use percore::{Request, Response};
/// async fn handler(req: Request) -> Response {
///     match percore::ws::Offer::from_request(&req) {
///         Ok(offer) => offer.accept(None, |ws| async move {
///             while let Some(message) = ws.recv().await { let _ = ws.send(message).await; }
///         }),
///         Err(refusal) => refusal.response(),
///     }
/// }
/// ```
#[derive(Debug)]
pub struct Offer(Handshake);

impl Offer {
    /// Check `req` as a WebSocket upgrade (RFC 6455 §4.2.1).
    pub fn from_request(req: &Request) -> Result<Offer, HandshakeError> {
        let fields: Vec<(&str, &[u8])> = req.headers().collect();
        check(req.method(), req.version(), req.head().framing(), &fields).map(Offer)
    }

    /// The subprotocols the client offered, in its order of preference.
    pub fn protocols(&self) -> &[String] {
        &self.0.protocols
    }

    /// Answer `101 Switching Protocols` and run `f` on the WebSocket. `protocol`, if given,
    /// must be one the client offered (else it is left out: a client must not be told of a
    /// protocol it did not ask for, RFC 6455 §4.2.2).
    pub fn accept<F, Fut>(self, protocol: Option<&str>, f: F) -> Response
    where
        F: FnOnce(WebSocket) -> Fut + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let protocol = protocol.filter(|p| self.0.protocols.iter().any(|o| o == p)).map(str::to_string);
        let mut response = Response::new(101)
            .with_header("upgrade", Bytes::from_static(b"websocket"))
            .with_header("sec-websocket-accept", self.0.accept);
        if let Some(p) = &protocol {
            response.insert_header("sec-websocket-protocol", p.clone());
        }
        let run: RunSocket = Box::new(move |ws| Box::pin(f(ws)));
        response.set_upgrade(Upgrade { origin: self.0.origin, protocol, deflate: self.0.deflate, run });
        response
    }
}

/// A WebSocket route: upgrades and runs `f(request, socket)`; anything else is refused with
/// the handshake's status (426 for a plain request). See [`crate::Router::ws`].
pub struct WsRoute<F> {
    f: Rc<F>,
    protocols: Vec<String>,
}

impl<F> WsRoute<F> {
    /// `protocols`: the subprotocols the route speaks, in the server's order of preference;
    /// the first of them the client offered is chosen.
    pub fn new(protocols: &[&str], f: F) -> WsRoute<F> {
        WsRoute { f: Rc::new(f), protocols: protocols.iter().map(|p| p.to_string()).collect() }
    }
}

impl<F, Fut> Handler for WsRoute<F>
where
    F: Fn(Request, WebSocket) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    async fn call(&self, req: Request) -> Response {
        let offer = match Offer::from_request(&req) {
            Ok(offer) => offer,
            Err(refusal) => return refusal.response(),
        };
        let chosen = self.protocols.iter().find(|p| offer.protocols().contains(p)).cloned();
        let f = self.f.clone();
        // The handler holds the request for the WebSocket's life: not the read buffer too.
        let mut req = req;
        req.unshare();
        offer.accept(chosen.as_deref(), move |ws| f(req, ws))
    }
}
