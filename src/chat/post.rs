//! One chat message, framed once for every kind of subscriber.

use bytes::Bytes;

use crate::app::sse::Event;
use crate::ws::PreparedMessage;

/// A chat message with its wire forms, built once when it is posted and shared (behind an
/// `Arc`) by every subscriber on every executor.
#[derive(Debug)]
pub struct Post {
    text: Box<str>,
    /// The WebSocket text frame.
    frame: PreparedMessage,
    /// The Server-Sent Event: a `message` event whose data is the text.
    event: Bytes,
}

impl Post {
    /// Frame `text` for WebSockets and event streams.
    pub fn new(text: &str) -> Post {
        Post {
            text: text.into(),
            frame: PreparedMessage::text(text),
            event: Event::new().data(text).encode(),
        }
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The WebSocket text frame.
    pub fn frame(&self) -> &PreparedMessage {
        &self.frame
    }

    /// The encoded `message` event (`data:` lines and the blank line), shared.
    pub fn event(&self) -> Bytes {
        self.event.clone()
    }
}
