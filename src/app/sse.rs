//! Server-Sent Events: the `text/event-stream` wire format (WHATWG HTML, "Server-sent
//! events"), sans-IO. An [`Event`] encodes to the bytes of one whole event, which the
//! connection driver sends as one chunk: the driver ends an event stream only between
//! chunks (on drain), so a client never sees half an event.
//!
//! [`crate::Response::sse`] turns a stream of events into a response; the driver adds the
//! keepalive comment (`--sse-ping-interval`) while the stream waits.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

/// The comment the driver sends when no event came for `--sse-ping-interval`: proxies (nginx
/// `proxy_read_timeout`, an ALB's idle timeout) close a connection that stays silent, and a
/// comment keeps it open without the client's `EventSource` seeing an event.
pub const PING: &[u8] = b": ping\n\n";

/// One server-sent event.
///
/// ```
/// use percore::app::sse::Event;
/// let e = Event::new().event("tick").id("7").data("line one\nline two");
/// assert_eq!(&e.encode()[..], b"id: 7\nevent: tick\ndata: line one\ndata: line two\n\n");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    id: Option<String>,
    event: Option<String>,
    retry: Option<Duration>,
    data: Option<String>,
    comment: Option<String>,
}

impl Event {
    /// An empty event; add fields with the builder methods.
    pub fn new() -> Event {
        Event::default()
    }

    /// The data. A multi-line text (LF, CRLF or CR) is sent as one `data:` line per line,
    /// which the client joins back with LF.
    pub fn data(mut self, data: impl Into<String>) -> Event {
        self.data = Some(data.into());
        self
    }

    /// The event's type (`event:`); without one the client dispatches a `message` event.
    ///
    /// # Panics
    /// If `event` holds CR or LF: the field is one line, and a line break would let the text
    /// that follows become a field of its own (an injected `data:` or `id:`).
    pub fn event(mut self, event: impl Into<String>) -> Event {
        let event = event.into();
        assert!(!event.contains(['\r', '\n']), "SSE event type holds a line break: {event:?}");
        self.event = Some(event);
        self
    }

    /// The event's id (`id:`): the client's `EventSource` sends the last one it received back
    /// as `Last-Event-ID` when it reconnects ([`crate::Request::last_event_id`]).
    ///
    /// # Panics
    /// If `id` holds CR, LF (see [`Event::event`]) or NUL (clients ignore such an id).
    pub fn id(mut self, id: impl Into<String>) -> Event {
        let id = id.into();
        assert!(!id.contains(['\r', '\n', '\0']), "SSE event id holds a line break or NUL: {id:?}");
        self.id = Some(id);
        self
    }

    /// How long the client waits before reconnecting after the stream ends (`retry:`, in
    /// milliseconds).
    pub fn retry(mut self, retry: Duration) -> Event {
        self.retry = Some(retry);
        self
    }

    /// A comment (`: text`), ignored by clients; multi-line text becomes one comment line
    /// per line.
    pub fn comment(mut self, comment: impl Into<String>) -> Event {
        self.comment = Some(comment.into());
        self
    }

    /// The wire bytes of this event, blank line included.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.encoded_len_hint());
        if let Some(comment) = &self.comment {
            for line in lines(comment) {
                put_field(&mut out, "", line);
            }
        }
        if let Some(id) = &self.id {
            put_field(&mut out, "id", id);
        }
        if let Some(event) = &self.event {
            put_field(&mut out, "event", event);
        }
        if let Some(retry) = self.retry {
            put_field(&mut out, "retry", &retry.as_millis().to_string());
        }
        if let Some(data) = &self.data {
            for line in lines(data) {
                put_field(&mut out, "data", line);
            }
        }
        out.put_u8(b'\n');
        out.freeze()
    }

    fn encoded_len_hint(&self) -> usize {
        let len = |s: &Option<String>| s.as_ref().map_or(0, |s| s.len() + 8);
        len(&self.id) + len(&self.event) + len(&self.data) + len(&self.comment) + 24
    }
}

/// `text` split at LF, CRLF and CR, the line ends the event-stream format knows. An empty
/// text is one empty line (an event with empty data is still an event).
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let s = rest?;
        match s.find(['\r', '\n']) {
            None => {
                rest = None;
                Some(s)
            }
            Some(i) => {
                let skip = if s[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&s[i + skip..]);
                Some(&s[..i])
            }
        }
    })
}

/// `name: value\n`. The space after the colon is always written: a client strips exactly
/// one, so a value that starts with a space keeps it.
fn put_field(out: &mut BytesMut, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.put_u8(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(e: Event) -> String {
        String::from_utf8(e.encode().to_vec()).unwrap()
    }

    #[test]
    fn data_lines_split_on_every_line_end() {
        assert_eq!(enc(Event::new().data("a")), "data: a\n\n");
        assert_eq!(enc(Event::new().data("a\nb\r\nc\rd")), "data: a\ndata: b\ndata: c\ndata: d\n\n");
        assert_eq!(enc(Event::new().data("a\n")), "data: a\ndata: \n\n");
        assert_eq!(enc(Event::new().data("")), "data: \n\n");
        assert_eq!(enc(Event::new().data(" lead")), "data:  lead\n\n");
    }

    #[test]
    fn fields_in_order() {
        let e = Event::new()
            .data("x")
            .retry(Duration::from_millis(2500))
            .event("tick")
            .id("42")
            .comment("hi\nthere");
        assert_eq!(enc(e), ": hi\n: there\nid: 42\nevent: tick\nretry: 2500\ndata: x\n\n");
    }

    #[test]
    fn empty_event_is_one_blank_line() {
        assert_eq!(enc(Event::new()), "\n");
    }

    #[test]
    #[should_panic(expected = "line break")]
    fn id_with_newline_is_refused() {
        let _ = Event::new().id("1\ndata: injected");
    }

    #[test]
    #[should_panic(expected = "line break")]
    fn id_with_nul_is_refused() {
        let _ = Event::new().id("1\0");
    }

    #[test]
    #[should_panic(expected = "line break")]
    fn event_with_carriage_return_is_refused() {
        let _ = Event::new().event("a\rb");
    }

    #[test]
    fn ping_is_a_comment() {
        assert_eq!(PING, &Event::new().comment("ping").encode()[..]);
    }
}
