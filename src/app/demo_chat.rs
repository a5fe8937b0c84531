//! The demo app's chat room across executors: `GET /chat` (WebSocket), `GET /chat/events`
//! (Server-Sent Events) and `POST /chat`. The room itself is [`crate::chat`]; these are its
//! three doors.

use bytes::Bytes;

use super::request::Request;
use super::response::Response;
use super::router::Router;
use crate::chat::Room;
use crate::io::{first_of, Either};
use crate::ws::{Message, WebSocket};

/// Close code for a chat socket that fell behind (RFC 6455 §7.4.1: 1008, policy violation).
const TOO_SLOW: u16 = 1008;
/// Close code for a binary message: the room carries text (1003, unsupported data).
const NOT_TEXT: u16 = 1003;

/// Add the chat routes on `room` (this executor's side of the app's chat hub):
///
/// - `GET /chat`: a WebSocket; each text message it sends goes to every subscriber on every
///   executor, itself included, and it receives every message posted. One that falls behind
///   is closed with 1008.
/// - `GET /chat/events`: the same messages as Server-Sent Events, one `message` event each
///   (the data is the text); the stream ends if it falls behind.
/// - `POST /chat`: the body (UTF-8, up to `--max-body-size`) is posted as one message: 202.
pub fn chat_routes(router: Router, room: Room) -> Router {
    let (socket_room, events_room) = (room.clone(), room.clone());
    router
        .ws("/chat", move |_req: Request, ws: WebSocket| chat_socket(socket_room.clone(), ws))
        .get("/chat/events", move |_req: Request| {
            let room = events_room.clone();
            async move { Response::sse_encoded(room.subscribe().into_events()) }
        })
        .post("/chat", move |req: Request| post_message(room.clone(), req))
}

/// One chat WebSocket: what it sends is posted, what is posted is sent to it.
async fn chat_socket(room: Room, ws: WebSocket) {
    let subscription = room.subscribe();
    loop {
        // What waits to go out first: a client that sends fast and reads what it sent is
        // slowed down (its messages wait unread, then TCP pushes back), not dropped for lag.
        match first_of(subscription.next(), ws.recv()).await {
            Either::Left(Some(post)) => {
                if ws.send_prepared(post.frame()).await.is_err() {
                    return;
                }
            }
            Either::Left(None) => {
                let _ = ws.close(TOO_SLOW, "too slow for the chat room");
                return;
            }
            Either::Right(Some(Message::Text(text))) => {
                room.publish(&text);
            }
            Either::Right(Some(Message::Binary(_))) => {
                let _ = ws.close(NOT_TEXT, "chat messages are text");
                return;
            }
            Either::Right(Some(Message::Close(_)) | None) => return,
        }
    }
}

/// `POST /chat`: the body as one message.
async fn post_message(room: Room, mut req: Request) -> Response {
    let body = match req.body_mut().collect(usize::MAX).await {
        Ok(body) => body,
        Err(e) => return Response::status_text(e.status()),
    };
    match std::str::from_utf8(&body) {
        Ok(text) => {
            room.publish(text);
            Response::status_text(202)
        }
        Err(_) => Response::status_text(400)
            .with_body(Bytes::from_static(b"400 Bad Request: a chat message must be UTF-8 text\n")),
    }
}
