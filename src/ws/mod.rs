//! WebSockets (RFC 6455): the frame codec, the opening handshake and the session that takes
//! a connection over after its `101 Switching Protocols`.
//!
//! `frame` and `utf8` are sans-IO like `http/`; the session is written once over the IO
//! traits of [`crate::io`]. The HTTP connection driver only hands a connection over.

pub mod frame;
pub mod utf8;
