//! The application side: the [`Handler`] trait, [`Request`]/[`Response`], a small [`Router`]
//! and the built-in demo routes. Nothing here knows about sockets or runtimes.

pub mod body;
pub mod builtin;
pub mod demo;
pub mod demo_chat;
pub mod fields;
pub mod handler;
pub mod request;
pub mod response;
mod route_future;
pub mod router;
pub mod sse;

pub use body::{BodyError, RequestBody};
pub use handler::{DynHandler, Handler};
pub use request::Request;
pub use response::{Frame, Response, ResponseBody};
pub use router::Router;
