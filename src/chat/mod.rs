//! A chat room across executors, the thread-per-core way (the demo app's `/chat`).
//!
//! Each executor keeps its own subscribers in its own [`Room`]; nothing about a subscriber
//! is shared between threads. A post is framed once ([`Post`]: the WebSocket frame and the
//! Server-Sent Event, built once and shared), handed to the local subscribers directly and
//! to every other executor through that executor's bounded, lock-free inbox. The receiving
//! executor is woken through the inbox's waker and fans the post out to its subscribers.
//!
//! Nobody waits for anybody: a subscriber whose queue is full is dropped (its WebSocket
//! closed with 1008, its event stream ended), and an executor whose inbox is full (it is
//! stalled) drops its subscribers, who missed a post, instead of the sender waiting.
//!
//! The module names no runtime: the inbox pump runs as a task of the executor through
//! [`crate::task::spawn_local`].

mod hub;
mod post;
pub(crate) mod room;

pub use hub::{Hub, Limits};
pub use post::Post;
pub use room::{Events, Room, Subscription};

#[cfg(test)]
mod tests;
