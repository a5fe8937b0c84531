//! permessage-deflate (RFC 7692), sans-IO: the negotiation of its parameters from the
//! client's offers (`negotiate`), the bounded inflater of client messages (`inflate`) and the
//! deflater of server messages (`compress`). The frame codec (`frame.rs`) calls them for
//! frames with RSV1 set; nothing here names a runtime or a socket.

pub mod compress;
pub mod inflate;
pub mod negotiate;

pub use compress::Deflater;
pub use inflate::{InflateError, Inflater};
pub use negotiate::{negotiate, DeflateOffer};

/// The parameters agreed for one connection (RFC 7692 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server starts every message it compresses from an empty history.
    pub server_no_context_takeover: bool,
    /// The client does not use context takeover: the inflater starts every message afresh.
    pub client_no_context_takeover: bool,
    /// The window the server compresses with, 9 to 15 bits.
    pub server_max_window_bits: u8,
    /// Whether the client asked for `server_max_window_bits`: only then does the response
    /// name it.
    pub echo_server_max_window_bits: bool,
}

impl DeflateParams {
    /// The `Sec-WebSocket-Extensions` value of the `101` that accepts these parameters.
    /// `client_max_window_bits` is never named: the server inflates with a 15-bit window,
    /// which reads whatever window the client uses (RFC 7692 §7.1.2.2 lets it leave it out).
    pub fn response_header(&self) -> String {
        let mut value = String::from(negotiate::NAME);
        if self.server_no_context_takeover {
            value.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            value.push_str("; client_no_context_takeover");
        }
        if self.echo_server_max_window_bits {
            value.push_str(&format!("; server_max_window_bits={}", self.server_max_window_bits));
        }
        value
    }

    /// The inflater of this connection's client messages.
    pub fn inflater(&self) -> Inflater {
        Inflater::new(self.client_no_context_takeover)
    }

    /// The deflater of this connection's server messages.
    pub fn deflater(&self) -> Deflater {
        Deflater::new(self.server_max_window_bits, self.server_no_context_takeover)
    }
}
