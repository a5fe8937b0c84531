//! TLS: a [`Transport`](crate::io::Transport) that wraps the runtime's transport, so the
//! connection driver (and anything else that takes a transport over) sees plaintext and
//! never knows TLS exists.
//!
//! rustls is sans-IO: ciphertext read with the inner transport's owned buffers is fed to
//! it, plaintext comes out for the driver; the driver's writes are encrypted the same way.
//! Certificates live in a [`TlsConfig`] built once per (re)load and shared by every
//! executor; a SIGHUP builds a new one for the executors that replace the old ones, with
//! the same session-ticket keys so resumption keeps working across the reload and across
//! executors.

mod config;
mod stream;
mod subject;

pub use config::{CertReqs, TlsConfig, TlsError, TlsSettings, TlsVersion};
pub use stream::TlsStream;
pub use subject::subject_of;
