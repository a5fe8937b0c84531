//! The demo chat room across executors: `GET /chat` (WebSocket), `GET /chat/events` (SSE)
//! and `POST /chat`. Clients are aimed at an executor by asking the debug route `/executor`
//! on a keep-alive connection and then upgrading that same connection.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;

use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{client, Message, WebSocket};

use crate::support::*;

/// A keep-alive connection served by executor `index`.
fn on_executor(s: &ServerProc, index: usize) -> Client {
    for _ in 0..200 {
        let mut c = s.client();
        c.send(&get("/executor"));
        if c.response().text().trim() == index.to_string() {
            assert!(c.pending().is_empty());
            return c;
        }
    }
    panic!("no connection landed on executor {index} in 200 tries");
}

/// A chat WebSocket on executor `index`, subscribed (it has seen its own `hello`).
fn chat_on(s: &ServerProc, index: usize) -> WebSocket<TcpStream> {
    let c = on_executor(s, index);
    let (mut ws, response) = client(format!("ws://{}/chat", s.addr), c.stream).expect("chat handshake");
    assert_eq!(response.status(), 101);
    let hello = format!("hello from a client of executor {index}");
    ws.send(Message::text(hello.clone())).unwrap();
    read_until(&mut ws, &hello);
    ws
}

/// Read text messages until `text`; the ones before it.
fn read_until(ws: &mut WebSocket<TcpStream>, text: &str) -> Vec<String> {
    let mut before = Vec::new();
    loop {
        match ws.read().expect("a chat message (a timeout means it never came)") {
            Message::Text(t) if t == text => return before,
            Message::Text(t) => before.push(t.to_string()),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected text, got {other:?}"),
        }
    }
}

/// An event stream on `/chat/events`, read chunk by chunk.
struct Events(BufReader<TcpStream>);

impl Events {
    fn open(mut c: Client) -> Events {
        c.send(&get("/chat/events"));
        let mut reader = BufReader::new(c.stream);
        let status = line(&mut reader);
        assert!(status.starts_with("HTTP/1.1 200 "), "{status}");
        let mut head = Vec::new();
        loop {
            let l = line(&mut reader);
            if l.is_empty() {
                break;
            }
            head.push(l.to_ascii_lowercase());
        }
        assert!(head.contains(&"content-type: text/event-stream".to_string()), "{head:?}");
        Events(reader)
    }

    /// The next event, whole (one chunk each); `None` at the end of the stream.
    fn next(&mut self) -> Option<String> {
        let size = usize::from_str_radix(&line(&mut self.0), 16).expect("chunk size");
        if size == 0 {
            return None;
        }
        let mut data = vec![0; size + 2];
        self.0.read_exact(&mut data).unwrap();
        data.truncate(size);
        Some(String::from_utf8(data).unwrap())
    }
}

fn line(r: &mut BufReader<TcpStream>) -> String {
    let mut l = String::new();
    r.read_line(&mut l).expect("a line (a timeout means the server held it)");
    assert!(l.ends_with("\r\n"), "closed mid-line: {l:?}");
    l.truncate(l.len() - 2);
    l
}

fn post(s: &ServerProc, body: &[u8]) -> Response {
    let mut c = s.client();
    c.send(&cat(&[
        format!("POST /chat HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes(),
        body,
    ]));
    c.response()
}

#[test]
fn chat_messages_reach_clients_on_every_executor_the_sender_included() {
    let s = ServerProc::start(&["--workers", "2", "--debug-routes"]);
    let mut zero = chat_on(&s, 0);
    let mut one = chat_on(&s, 1);
    // `one` joined after `zero`: its hello crossed from executor 1 to executor 0.
    read_until(&mut zero, "hello from a client of executor 1");
    zero.send(Message::text("from executor 0")).unwrap();
    read_until(&mut one, "from executor 0");
    read_until(&mut zero, "from executor 0");
    one.send(Message::text("from executor 1")).unwrap();
    assert!(read_until(&mut zero, "from executor 1").is_empty());
    assert!(read_until(&mut one, "from executor 1").is_empty());
}

#[test]
fn chat_events_carry_websocket_and_posted_messages() {
    let s = ServerProc::start(&["--workers", "2", "--debug-routes"]);
    let mut events = Events::open(on_executor(&s, 0));
    let mut ws = chat_on(&s, 1);
    assert_eq!(events.next().as_deref(), Some("data: hello from a client of executor 1\n\n"));
    ws.send(Message::text("two\nlines")).unwrap();
    assert_eq!(events.next().as_deref(), Some("data: two\ndata: lines\n\n"));
    let r = post(&s, "posted ✓".as_bytes());
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(events.next().as_deref(), Some("data: posted ✓\n\n"));
    assert!(read_until(&mut ws, "posted ✓").iter().all(|m| m == "two\nlines"));
}

#[test]
fn chat_refuses_a_post_that_is_not_utf8_and_a_binary_message() {
    let s = ServerProc::start(&["--debug-routes"]);
    let mut ws = chat_on(&s, 0);
    let r = post(&s, b"caf\xe9");
    assert_eq!(r.status, 400, "{}", r.text());
    ws.send(Message::text("still here")).unwrap();
    assert!(read_until(&mut ws, "still here").is_empty(), "the refused post was not posted");
    ws.send(Message::binary(vec![1, 2, 3])).unwrap();
    match ws.read() {
        Ok(Message::Close(Some(f))) => assert_eq!(f.code, CloseCode::Unsupported),
        other => panic!("expected a 1003 close, got {other:?}"),
    }
}

#[test]
fn a_chat_subscriber_that_never_reads_is_dropped_without_stalling_the_room() {
    let _heavy = heavy();
    let s = ServerProc::start(&["--debug-routes"]);
    // A subscriber that never reads.
    let mut slow = chat_on(&s, 0);
    let mut fast = chat_on(&s, 0);
    // 800 posts of 16 KiB: more than the slow one's socket buffers (a few MiB on loopback),
    // its 64 KiB of unsent frames and its queue of 256 posts hold. The fast one gets each
    // before it sends the next.
    let body = "x".repeat(16 * 1024 - 8);
    const POSTS: usize = 800;
    for i in 0..POSTS {
        let text = format!("{i:07} {body}");
        fast.send(Message::text(text.clone())).unwrap();
        assert!(read_until(&mut fast, &text).is_empty(), "post {i} out of order");
    }
    // The slow one now reads: what was on its way, then a 1008 close.
    let mut got = 0;
    let code = loop {
        match slow.read() {
            Ok(Message::Text(_)) => got += 1,
            Ok(Message::Close(frame)) => break frame.map(|f| f.code),
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            other => panic!("expected messages and a close, got {other:?}"),
        }
    };
    assert_eq!(code, Some(CloseCode::Policy), "dropped with 1008 after {got} messages");
    assert!(got < POSTS, "dropped before the end: {got} of {POSTS}");
    // The room goes on for the others.
    fast.send(Message::text("after")).unwrap();
    read_until(&mut fast, "after");
}

#[test]
fn a_chat_client_that_sends_a_burst_before_reading_gets_all_of_it_back() {
    let s = ServerProc::start(&["--debug-routes"]);
    let mut ws = chat_on(&s, 0);
    // Far more than a subscriber's queue of 256 posts: the server sends out before it reads on,
    // so the sender is slowed down, never dropped.
    for i in 0..5000 {
        ws.write(Message::text(format!("burst {i}"))).unwrap();
    }
    ws.flush().unwrap();
    for i in 0..5000 {
        match ws.read() {
            Ok(Message::Text(t)) => assert_eq!(t, format!("burst {i}")),
            other => panic!("message {i}: expected text, got {other:?}"),
        }
    }
}

#[test]
fn sigterm_closes_chat_sockets_with_1001() {
    let mut s = ServerProc::start(&["--debug-routes"]);
    let mut ws = chat_on(&s, 0);
    s.signal(libc::SIGTERM);
    match ws.read() {
        Ok(Message::Close(Some(f))) => assert_eq!(f.code, CloseCode::Away),
        other => panic!("expected a 1001 close, got {other:?}"),
    }
}
