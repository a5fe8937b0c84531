//! What a handler holds: a [`WebSocket`] to receive and send messages, and the state it
//! shares with the session driver that does the IO (`session.rs`).
//!
//! The handle does no IO itself and names no runtime: `recv` takes messages the driver
//! decoded, `send` encodes a frame into the driver's outgoing buffer. Everything lives on
//! the executor's thread, so the shared state is a `RefCell` and wakers, not a lock.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::future::Future;
use std::mem;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};

use super::deflate::Deflater;
use super::frame::{self, CloseFrame, OpCode};
use super::outbox::Outbox;
use super::stats::WsStats;
use crate::state::ExecutorStats;

/// Messages the driver holds for a handler that has not asked for them yet; past this the
/// driver stops reading, so a slow handler slows its peer down (TCP backpressure) instead
/// of growing a queue.
const INBOX_MAX: usize = 16;
/// `send` waits while this much is still to be written (a peer that reads slowly holds
/// its sender back; one that stops reading is cut off by `--write-timeout`).
const OUTBOX_HIGH_WATER: usize = 64 * 1024;

/// UTF-8 text in shared bytes: a text message is handed over without a copy.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Utf8Bytes(Bytes);

impl Utf8Bytes {
    /// Bytes the frame decoder checked as UTF-8.
    pub(crate) fn checked(bytes: Bytes) -> Utf8Bytes {
        debug_assert!(std::str::from_utf8(&bytes).is_ok());
        Utf8Bytes(bytes)
    }

    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor takes a `str`/`String` or bytes the decoder validated.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl std::ops::Deref for Utf8Bytes {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

impl From<String> for Utf8Bytes {
    fn from(s: String) -> Utf8Bytes {
        Utf8Bytes(Bytes::from(s))
    }
}

impl From<&'static str> for Utf8Bytes {
    fn from(s: &'static str) -> Utf8Bytes {
        Utf8Bytes(Bytes::from_static(s.as_bytes()))
    }
}

/// A WebSocket message. Pings and pongs are the server's business and never show up here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Text(Utf8Bytes),
    Binary(Bytes),
    /// The peer's close frame (its code and reason, if it gave them). The server has
    /// already answered it; `recv` returns `None` after it.
    Close(Option<CloseFrame>),
}

impl Message {
    pub fn text(text: impl Into<Utf8Bytes>) -> Message {
        Message::Text(text.into())
    }

    pub fn binary(data: impl Into<Bytes>) -> Message {
        Message::Binary(data.into())
    }
}

/// A text or binary message encoded once as a whole server frame, for sending the same
/// message to many WebSockets ([`WebSocket::send_prepared`]): each send shares the frame's
/// bytes (or copies them, when small) instead of framing the message again. The frame is
/// never compressed, which every connection accepts (RFC 7692 §6: an uncompressed message
/// has RSV1 clear).
#[derive(Clone, PartialEq, Eq)]
pub struct PreparedMessage(Bytes);

impl PreparedMessage {
    /// A text message.
    pub fn text(text: &str) -> PreparedMessage {
        PreparedMessage::encode(OpCode::Text, text.as_bytes())
    }

    /// A binary message.
    pub fn binary(data: &[u8]) -> PreparedMessage {
        PreparedMessage::encode(OpCode::Binary, data)
    }

    fn encode(opcode: OpCode, payload: &[u8]) -> PreparedMessage {
        let mut out = BytesMut::new();
        frame::encode(&mut out, opcode, payload);
        PreparedMessage(out.freeze())
    }

    /// The frame's wire bytes.
    pub fn frame(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for PreparedMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedMessage").field("frame_len", &self.0.len()).finish()
    }
}

/// Why a message could not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The closing handshake has begun (or the connection is gone): nothing more goes out.
    Closed,
    /// A close message is sent with [`WebSocket::close`], not `send`.
    CloseMessage,
    /// A close code an endpoint may not send (RFC 6455 §7.4: 1004–1006, 1015, and codes
    /// outside 1000–4999 that are not registered).
    BadCloseCode(u16),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SendError::Closed => "the WebSocket is closing or closed",
            SendError::CloseMessage => "use WebSocket::close to send a close frame",
            SendError::BadCloseCode(_) => "a close code that may not be sent",
        })
    }
}

impl std::error::Error for SendError {}

/// The state one WebSocket's handler and driver share.
#[derive(Default)]
pub(crate) struct State {
    /// Messages decoded and not yet taken by the handler.
    pub inbox: VecDeque<Message>,
    /// Frames waiting for the driver to write them.
    pub outbox: Outbox,
    /// A close frame is queued or written: nothing may follow it.
    pub close_sent: bool,
    /// The close frame was sent because the peer broke the protocol (or stopped answering):
    /// the driver sends FIN right after it rather than waiting for the peer's close.
    pub failing: bool,
    /// The peer's close frame arrived: it will send nothing more.
    pub peer_closed: bool,
    /// The peer's side of the connection ended (end of stream or error).
    pub peer_gone: bool,
    /// The connection is finished: nothing more can be written.
    pub done: bool,
    /// The handler has returned: messages are no longer kept for it.
    pub handler_gone: bool,
    /// A keepalive ping went out and its pong has not come back.
    pub ping_outstanding: bool,
    /// The executor is draining: the code the server closes with (1001 or 1012).
    pub draining: Option<u16>,
    /// The driver's read waits for readiness, holding no buffer (the session may park).
    pub read_idle: bool,
    /// The driver's writer waits for frames, writing none (the session may park).
    pub write_idle: bool,
    /// The handler awaits [`WebSocket::draining`]: it gets time for its own goodbye.
    pub drain_watched: bool,
    /// Set when permessage-deflate was negotiated: every data message goes out compressed.
    /// Boxed: most WebSockets have none, and every idle one keeps this state.
    pub deflater: Option<Box<Deflater>>,
    /// The executor's counters (`/metrics`); none in unit tests.
    pub stats: Option<Arc<ExecutorStats>>,
    /// Bytes read from and written to the connection since the hand-over (access log).
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Everything waiting for a change: the handler's `recv`s and `send`s (clones of one
    /// WebSocket may wait in several tasks), and the driver.
    wakers: Wakers,
}

/// The wakers of a WebSocket's waiters. Most WebSockets have one, the session's own waker
/// (its handler is polled with it too): kept inline, where a list would hold an allocation
/// in every idle WebSocket; more go to a list.
#[derive(Default)]
enum Wakers {
    #[default]
    None,
    One(Waker),
    Many(Vec<Waker>),
}

impl Wakers {
    fn register(&mut self, waker: &Waker) {
        match self {
            Wakers::None => *self = Wakers::One(waker.clone()),
            Wakers::One(first) if first.will_wake(waker) => {}
            Wakers::One(first) => {
                let first = mem::replace(first, Waker::noop().clone());
                *self = Wakers::Many(vec![first, waker.clone()]);
            }
            Wakers::Many(list) => {
                if !list.iter().any(|w| w.will_wake(waker)) {
                    list.push(waker.clone());
                }
            }
        }
    }

    /// Wake every waiter, and forget them (a list keeps its room).
    fn wake_all(&mut self) {
        match self {
            Wakers::None => {}
            Wakers::One(_) => {
                if let Wakers::One(waker) = mem::take(self) {
                    waker.wake();
                }
            }
            Wakers::Many(list) => list.drain(..).for_each(Waker::wake),
        }
    }
}

impl State {
    /// Wake every waiter: something they may wait for changed.
    pub fn notify(&mut self) {
        self.wakers.wake_all();
    }

    /// Be woken by the next `notify`.
    pub(crate) fn register(&mut self, waker: &Waker) {
        self.wakers.register(waker);
    }

    /// Queue a text or binary message, compressed when permessage-deflate was negotiated.
    pub fn queue_message(&mut self, opcode: OpCode, payload: Bytes) {
        match self.deflater.as_mut() {
            Some(deflater) => {
                frame::encode_compressed(self.outbox.buf(), opcode, deflater.compress(&payload))
            }
            None => self.outbox.push_frame(opcode, payload),
        }
        self.count(|ws| ExecutorStats::add(&ws.messages_out, 1));
    }

    /// Queue a close frame, if none is queued yet.
    pub fn close(&mut self, code: u16, reason: &str) {
        if !self.close_sent && !self.done {
            frame::encode_close(self.outbox.buf(), code, reason);
            self.close_sent = true;
            self.count(|ws| ws.close_sent(Some(code)));
        }
        self.notify();
    }

    /// Update the executor's WebSocket counters, if there are any.
    pub fn count(&self, f: impl FnOnce(&WsStats)) {
        if let Some(stats) = &self.stats {
            f(&stats.ws);
        }
    }

    /// Count `n` bytes read from the connection.
    pub fn received(&mut self, n: usize) {
        self.bytes_in += n as u64;
        self.count(|ws| ExecutorStats::add(&ws.bytes_in, n as u64));
    }

    /// Count `n` bytes written to the connection.
    pub fn sent(&mut self, n: usize) {
        self.bytes_out += n as u64;
        self.count(|ws| ExecutorStats::add(&ws.bytes_out, n as u64));
    }

    /// Fail the connection (RFC 6455 §7.1.7): a close frame with `code`, then FIN.
    pub fn fail(&mut self, code: u16, reason: &str) {
        self.close(code, reason);
        self.failing = true;
    }

    /// Let go of the room an empty inbox and outbox keep: a WebSocket that goes quiet
    /// should not hold the memory of its last burst (the next one allocates again).
    pub fn release_room(&mut self) {
        if self.inbox.is_empty() {
            self.inbox = VecDeque::new();
        }
        self.outbox.release();
    }

    pub fn inbox_full(&self) -> bool {
        self.inbox.len() >= INBOX_MAX
    }
}

pub(crate) type Shared = Rc<RefCell<State>>;

/// Wait, in the driver, until `ready` holds.
pub(crate) async fn driver_wait(shared: &Shared, ready: impl Fn(&State) -> bool) {
    poll_fn(|cx| {
        let mut s = shared.borrow_mut();
        if ready(&s) {
            return Poll::Ready(());
        }
        s.register(cx.waker());
        Poll::Pending
    })
    .await
}

/// One WebSocket connection, as its handler sees it. Clones share the connection, so a
/// handler may receive in one task and send from another (on the same executor).
#[derive(Clone)]
pub struct WebSocket {
    shared: Shared,
    /// Boxed rather than a `String`: every handler future holds its `WebSocket`, and most
    /// WebSockets are idle.
    protocol: Option<Box<str>>,
}

impl WebSocket {
    pub(crate) fn new(shared: Shared, protocol: Option<String>) -> WebSocket {
        WebSocket { shared, protocol: protocol.map(String::into_boxed_str) }
    }

    /// The subprotocol the handler chose in the handshake, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The next message; `None` once the connection is closed (after the peer's
    /// [`Message::Close`], if it sent one).
    pub async fn recv(&self) -> Option<Message> {
        poll_fn(|cx| {
            let mut s = self.shared.borrow_mut();
            if let Some(message) = s.inbox.pop_front() {
                s.notify(); // room in the inbox: the driver may read again
                return Poll::Ready(Some(message));
            }
            // After an error or an unanswered ping the server reads nothing more either.
            if s.peer_closed || s.peer_gone || s.failing || s.done {
                return Poll::Ready(None);
            }
            s.register(cx.waker());
            Poll::Pending
        })
        .await
    }

    /// Send a text or binary message, waiting while too much is still unwritten.
    ///
    /// (A plain function returning a small future: an echo handler spends its idle time
    /// holding room for this future, and the `async fn` it was kept the message twice over.)
    pub fn send(&self, message: Message) -> impl Future<Output = Result<(), SendError>> + '_ {
        let mut frame = match message {
            Message::Text(text) => Ok(Some((OpCode::Text, text.into_bytes()))),
            Message::Binary(data) => Ok(Some((OpCode::Binary, data))),
            Message::Close(_) => Err(SendError::CloseMessage),
        };
        poll_fn(move |cx| {
            let frame = match &mut frame {
                Ok(frame) => frame,
                Err(e) => return Poll::Ready(Err(*e)),
            };
            self.poll_enqueue(cx, |s| {
                let (opcode, payload) = frame.take().expect("a message is queued once");
                s.queue_message(opcode, payload)
            })
        })
    }

    /// Send a message framed beforehand, waiting (as [`send`](Self::send)) while too much
    /// is still unwritten.
    pub async fn send_prepared(&self, message: &PreparedMessage) -> Result<(), SendError> {
        poll_fn(|cx| {
            self.poll_enqueue(cx, |s| {
                s.outbox.push_encoded(&message.0);
                s.count(|ws| ExecutorStats::add(&ws.messages_out, 1));
            })
        })
        .await
    }

    /// Queue a frame with `put` if the socket may take more (fewer than `OUTBOX_HIGH_WATER`
    /// bytes unwritten), and wake the writer; otherwise wait for room.
    fn poll_enqueue(
        &self,
        cx: &mut Context<'_>,
        put: impl FnOnce(&mut State),
    ) -> Poll<Result<(), SendError>> {
        let mut s = self.shared.borrow_mut();
        if s.close_sent || s.done {
            return Poll::Ready(Err(SendError::Closed));
        }
        if s.outbox.len() >= OUTBOX_HIGH_WATER {
            s.register(cx.waker());
            return Poll::Pending;
        }
        put(&mut s);
        s.notify();
        Poll::Ready(Ok(()))
    }

    /// Resolves when this WebSocket's executor drains (SIGTERM/SIGINT, SIGHUP reload,
    /// `--max-requests` recycling, SIGUSR2 upgrade), with the code the server is about to
    /// close with: 1001 when the server stops, 1012 when it goes on. A handler that awaits
    /// this gets up to `--ws-close-timeout` to send its goodbye and [`close`](Self::close)
    /// (or return) before the server closes with that code itself. `None` if the connection
    /// closed first.
    pub async fn draining(&self) -> Option<u16> {
        poll_fn(|cx| {
            let mut s = self.shared.borrow_mut();
            s.drain_watched = true;
            if let Some(code) = s.draining {
                return Poll::Ready(Some(code));
            }
            if s.done {
                return Poll::Ready(None);
            }
            s.register(cx.waker());
            Poll::Pending
        })
        .await
    }

    /// Start the closing handshake with `code` and `reason` (cut to the 123 bytes a close
    /// frame has room for); the server waits for the peer's close (up to
    /// `--ws-close-timeout`) and closes the connection. Messages the peer sent before its
    /// close still come out of `recv`.
    pub fn close(&self, code: u16, reason: &str) -> Result<(), SendError> {
        if !frame::close_code_valid(code) {
            return Err(SendError::BadCloseCode(code));
        }
        let mut s = self.shared.borrow_mut();
        if s.close_sent || s.done {
            return Err(SendError::Closed);
        }
        s.close(code, reason);
        Ok(())
    }
}

/// A decoded data message for the inbox.
pub(crate) fn text(bytes: Bytes) -> Message {
    Message::Text(Utf8Bytes::checked(bytes))
}
