//! WebSockets from tower services: [`WebSocketUpgrade`] checks an upgrade request and answers
//! it with a `101` whose extensions carry the function to run on the socket; the adapter
//! hands that to the connection driver, as [`crate::ws::Offer::accept`] does for native
//! handlers. The socket is percore's own [`WebSocket`] (the same session, limits, pings,
//! drain and metrics), run on the executor that served the request.
//!
//! In axum it is an extractor; a plain tower service calls
//! [`WebSocketUpgrade::from_request_parts`] and answers a refusal with [`refusal`]:
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use percore::tower::WebSocketUpgrade;
//!
//! let app: Router = Router::new().route(
//!     "/ws",
//!     get(|ws: WebSocketUpgrade| async move {
//!         ws.on_upgrade(|socket| async move {
//!             while let Some(message) = socket.recv().await {
//!                 let _ = socket.send(message).await;
//!             }
//!         })
//!     }),
//! );
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use axum_core::body::Body;
use bytes::Bytes;

use crate::app::Response;
use crate::http::{Framing, Version};
use crate::ws::handshake::{check, Handshake, HandshakeError};
use crate::ws::{Upgrade, WebSocket};

/// A checked WebSocket upgrade request, to answer with [`WebSocketUpgrade::on_upgrade`].
#[derive(Debug)]
pub struct WebSocketUpgrade {
    handshake: Handshake,
    protocol: Option<String>,
}

/// The function to run on the socket, sendable so the `101` can carry it in its extensions
/// (which must be `Send + Sync`); the future it makes runs on the executor, so it need not be.
type RunLater = Box<dyn FnOnce(WebSocket) -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// The checked handshake, the chosen subprotocol and the function to run on the socket.
type Accepted = (Handshake, Option<String>, RunLater);

/// What a `101` from [`WebSocketUpgrade::on_upgrade`] carries, taken by the adapter.
#[derive(Clone)]
pub(crate) struct PendingUpgrade(Arc<Mutex<Option<Accepted>>>);

impl WebSocketUpgrade {
    /// Check the request's head as a WebSocket upgrade (RFC 6455 §4.2.1).
    pub fn from_request_parts(parts: &http::request::Parts) -> Result<WebSocketUpgrade, HandshakeError> {
        let version = match parts.version {
            http::Version::HTTP_11 => Version::Http11,
            _ => Version::Http10,
        };
        // The codec already settled the framing; the check only needs to know there is a body.
        let framing = if parts.headers.contains_key(http::header::TRANSFER_ENCODING) {
            Framing::Chunked
        } else {
            match parts.headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()) {
                Some(n) => Framing::Length(n.trim().parse().unwrap_or(u64::MAX)),
                None => Framing::None,
            }
        };
        let fields: Vec<(&str, &[u8])> =
            parts.headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())).collect();
        let handshake = check(parts.method.as_str(), version, framing, &fields)?;
        Ok(WebSocketUpgrade { handshake, protocol: None })
    }

    /// The subprotocols the client offered, in its order of preference.
    pub fn protocols(&self) -> &[String] {
        &self.handshake.protocols
    }

    /// Choose the first of `protocols` (the server's order of preference) that the client
    /// offered; none if it offered none of them (a client must not be told of a protocol it
    /// did not ask for, RFC 6455 §4.2.2).
    pub fn protocols_preferred(mut self, protocols: &[&str]) -> WebSocketUpgrade {
        self.protocol = protocols
            .iter()
            .find(|p| self.handshake.protocols.iter().any(|o| o == *p))
            .map(|p| p.to_string());
        self
    }

    /// Answer `101 Switching Protocols`; once it is written, `f` runs on the WebSocket on
    /// this executor. The response is axum's (an `http::Response` of an empty
    /// `axum_core::body::Body`, which any tower service may return too).
    pub fn on_upgrade<F, Fut>(self, f: F) -> http::Response<Body>
    where
        F: FnOnce(WebSocket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let mut response = http::Response::new(Body::empty());
        *response.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(http::header::UPGRADE, http::HeaderValue::from_static("websocket"));
        headers.insert(http::header::CONNECTION, http::HeaderValue::from_static("upgrade"));
        if let Ok(accept) = http::HeaderValue::from_str(&self.handshake.accept) {
            headers.insert(http::header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        if let Some(p) = self.protocol.as_deref().and_then(|p| http::HeaderValue::from_str(p).ok()) {
            headers.insert(http::header::SEC_WEBSOCKET_PROTOCOL, p);
        }
        let run: RunLater = Box::new(move |ws| Box::pin(f(ws)));
        response.extensions_mut().insert(PendingUpgrade(Arc::new(Mutex::new(Some((
            self.handshake,
            self.protocol,
            run,
        ))))));
        response
    }
}

impl PendingUpgrade {
    /// Attach the upgrade to percore's response (a `101`), for the driver's hand-over.
    pub(crate) fn attach(&self, out: &mut Response) -> bool {
        let Some((handshake, protocol, run)) = self.0.lock().ok().and_then(|mut slot| slot.take()) else {
            return false;
        };
        out.set_upgrade(Upgrade { origin: handshake.origin, protocol, deflate: handshake.deflate, run });
        true
    }
}

/// A refused upgrade as the service's response: the handshake's status (426 for a plain
/// request, naming `websocket`; 405 for another method; 400 for a bad key), with a short
/// text body.
pub fn refusal(error: HandshakeError) -> http::Response<Body> {
    let refused = error.response();
    let mut response = http::Response::new(Body::from(match refused.body() {
        crate::app::ResponseBody::Full(bytes) => bytes.clone(),
        _ => Bytes::new(),
    }));
    *response.status_mut() =
        http::StatusCode::from_u16(refused.status()).unwrap_or(http::StatusCode::BAD_REQUEST);
    for (name, value) in refused.headers() {
        if let (Ok(name), Ok(value)) =
            (http::HeaderName::from_bytes(name.as_bytes()), http::HeaderValue::from_bytes(value))
        {
            response.headers_mut().append(name, value);
        }
    }
    response
}

mod axum_extractor {
    use super::{refusal, WebSocketUpgrade};
    use crate::ws::HandshakeError;

    /// The upgrade refused, as axum's rejection: the same answer as [`super::refusal`].
    #[derive(Debug)]
    pub struct WebSocketRejection(pub HandshakeError);

    impl axum_core::response::IntoResponse for WebSocketRejection {
        fn into_response(self) -> axum_core::response::Response {
            refusal(self.0)
        }
    }

    impl<S: Send + Sync> axum_core::extract::FromRequestParts<S> for WebSocketUpgrade {
        type Rejection = WebSocketRejection;

        async fn from_request_parts(
            parts: &mut http::request::Parts,
            _state: &S,
        ) -> Result<Self, Self::Rejection> {
            WebSocketUpgrade::from_request_parts(parts).map_err(WebSocketRejection)
        }
    }
}

pub use axum_extractor::WebSocketRejection;
