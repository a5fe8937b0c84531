//! WebSockets (RFC 6455): the frame codec, the opening handshake and the session that takes
//! a connection over after its `101 Switching Protocols`.
//!
//! `frame`, `utf8` and `handshake` are sans-IO like `http/`; the session is written once over
//! the IO traits of [`crate::io`]. The HTTP connection driver only hands a connection over.

pub mod accept;
pub mod deflate;
pub mod frame;
pub mod handshake;
pub mod outbox;
pub mod session;
pub mod socket;
pub mod stats;
pub mod utf8;

use std::time::Duration;

pub use accept::{Offer, Upgrade, WsRoute};
pub use frame::CloseFrame;
pub use handshake::HandshakeError;
pub use socket::{Message, PreparedMessage, SendError, Utf8Bytes, WebSocket};

/// WebSocket settings, shared by every connection of a server.
#[derive(Debug, Clone)]
pub struct WsConfig {
    /// Largest message accepted (`--ws-max-size`); a larger one is closed with 1009.
    pub max_message: usize,
    /// How long to wait for the peer's close frame after sending ours (`--ws-close-timeout`).
    pub close_timeout: Duration,
    /// Time between keepalive pings (`--ws-ping-interval`; zero: none).
    pub ping_interval: Duration,
    /// How long a ping may go unanswered before the connection is closed with 1011.
    pub ping_timeout: Duration,
    /// Origins allowed to open a WebSocket (`--ws-origins`; empty: any).
    pub origins: Vec<String>,
    /// Whether permessage-deflate is negotiated when a client offers it
    /// (`--ws-per-message-deflate`).
    pub per_message_deflate: bool,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            max_message: 16 * 1024 * 1024,
            close_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(20),
            ping_timeout: Duration::from_secs(20),
            origins: Vec::new(),
            per_message_deflate: true,
        }
    }
}
