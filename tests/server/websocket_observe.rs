//! What a WebSocket leaves in `/metrics` (open WebSockets per executor, messages and bytes
//! each way, close codes sent and received) and in the access log (the `101`'s line,
//! written at the close with the session's duration and bytes each way).

use std::path::PathBuf;
use std::time::Duration;

use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::Message;

use crate::support::*;
use crate::websocket::{close_code, frame, open, raw};

/// The value of the sample `name` (with its labels, as written) in a scrape of `s`.
fn sample(s: &ServerProc, name: &str) -> f64 {
    let metrics = s.request(b"GET /metrics HTTP/1.1\r\nHost: h\r\n\r\n").text();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("{name} missing from:\n{metrics}"))
        .trim()
        .parse()
        .unwrap()
}

/// Close `ws` with 1000 and read until the server has closed too.
fn close_normally(ws: &mut tungstenite::WebSocket<std::net::TcpStream>) {
    ws.close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() })).unwrap();
    loop {
        match ws.read() {
            Ok(Message::Close(_)) => {}
            Ok(other) => panic!("unexpected {other:?}"),
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("unclean close: {e}"),
        }
    }
}

#[test]
fn metrics_count_websockets_messages_bytes_and_close_codes() {
    let s = ServerProc::start(&["--workers", "1"]);
    let mut ws = open(&s);
    ws.send(Message::text("a")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("a"));
    ws.send(Message::binary(vec![1, 2, 3])).unwrap();
    assert_eq!(ws.read().unwrap(), Message::binary(vec![1, 2, 3]));
    assert_eq!(sample(&s, "percore_websockets_open{executor=\"0\"}"), 1.0);
    assert_eq!(sample(&s, "percore_websocket_messages_received_total{executor=\"0\"}"), 2.0);
    assert_eq!(sample(&s, "percore_websocket_messages_sent_total{executor=\"0\"}"), 2.0);
    // Client frames: 2 head + 4 mask + payload; server frames: 2 head + payload.
    assert_eq!(sample(&s, "percore_websocket_received_bytes_total{executor=\"0\"}"), (7 + 9) as f64);
    assert_eq!(sample(&s, "percore_websocket_sent_bytes_total{executor=\"0\"}"), (3 + 5) as f64);

    close_normally(&mut ws);
    let closed =
        eventually(Duration::from_secs(5), || sample(&s, "percore_websockets_open{executor=\"0\"}") == 0.0);
    assert!(closed, "the WebSocket is still counted open");
    assert_eq!(sample(&s, "percore_websocket_closes_total{direction=\"received\",code=\"1000\"}"), 1.0);
    assert_eq!(sample(&s, "percore_websocket_closes_total{direction=\"sent\",code=\"1000\"}"), 1.0);

    // A protocol error: the server's 1002 is counted as sent.
    let mut stream = raw(&s, &frame(0x80, b"x"));
    assert_eq!(close_code(&mut stream), 1002);
    assert!(eventually(Duration::from_secs(5), || {
        sample(&s, "percore_websocket_closes_total{direction=\"sent\",code=\"1002\"}") == 1.0
    }));
    assert_eq!(sample(&s, "percore_websocket_closes_total{direction=\"received\",code=\"4xxx\"}"), 0.0);
}

fn temp(name: &str) -> TempDir {
    TempDir::new(&format!("wsobs-{name}"))
}

/// The number value of `"key":123` in a JSON log line.
fn json_number(line: &str, key: &str) -> Option<u64> {
    let pat = format!("\"{key}\":");
    let start = line.find(&pat)? + pat.len();
    let digits: String = line[start..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn read_log(path: &PathBuf) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_string).collect()
}

#[test]
fn the_upgrade_is_logged_at_close_with_duration_and_bytes() {
    let dir = temp("log");
    let path = dir.join("access.log");
    let s = ServerProc::start(&[
        "--workers",
        "1",
        "--access-log",
        path.to_str().unwrap(),
        "--access-log-format",
        "json",
    ]);
    let mut ws = open(&s);
    ws.send(Message::text("hello")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("hello"));
    // A request logged after the upgrade shows the log is flushed; the 101 is not in it yet.
    assert_eq!(s.request(b"GET /plaintext HTTP/1.1\r\nHost: h\r\n\r\n").status, 200);
    assert!(eventually(Duration::from_secs(5), || read_log(&path).iter().any(|l| l.contains("/plaintext"))));
    assert!(!read_log(&path).iter().any(|l| l.contains("\"status\":101")), "{:?}", read_log(&path));
    std::thread::sleep(Duration::from_millis(300));
    close_normally(&mut ws);

    let mut line = None;
    eventually(Duration::from_secs(5), || {
        line = read_log(&path).into_iter().find(|l| l.contains("\"status\":101"));
        line.is_some()
    });
    let line = line.expect("the 101's line, once the WebSocket closed");
    assert!(line.contains("\"target\":\"/ws\""), "{line}");
    // Sent: "hello" (2 + 5) and the close echo (2 + 2); received: "hello" (2 + 4 + 5) and
    // the close (2 + 4 + 2).
    assert_eq!(json_number(&line, "bytes"), Some(11), "{line}");
    assert_eq!(json_number(&line, "bytes_in"), Some(19), "{line}");
    let duration_us = json_number(&line, "duration_us").unwrap();
    assert!(duration_us >= 300_000, "the duration covers the session: {line}");
}

#[test]
fn a_quiet_websocket_parks_and_wakes_for_its_peer_its_keepalive_and_other_tasks() {
    let s = ServerProc::start(&["--workers", "1", "--ws-ping-interval", "1s", "--ws-ping-timeout", "10s"]);
    let quiet = || sample(&s, "percore_websockets_quiet{executor=\"0\"}");
    let mut ws = open(&s);
    ws.get_ref().set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(eventually(Duration::from_secs(5), || quiet() == 1.0), "a WebSocket that says nothing parks");

    // Its peer speaks: it wakes and echoes, several messages in a row.
    for text in ["a", "b", "c"] {
        ws.send(Message::text(text)).unwrap();
        assert_eq!(ws.read().unwrap(), Message::text(text));
    }
    // The keepalive pings from the parked state too, and the pongs (sent by tungstenite as it
    // reads) keep the connection open.
    for _ in 0..3 {
        assert!(matches!(ws.read().unwrap(), Message::Ping(_)), "a keepalive ping");
        ws.flush().unwrap();
        assert!(eventually(Duration::from_secs(5), || quiet() == 1.0), "parked again after the pong");
    }

    // Another task's message (the chat room's) reaches a parked WebSocket.
    let (mut chat, _) =
        tungstenite::client(format!("ws://{}/chat", s.addr), s.connect()).expect("chat handshake");
    chat.get_ref().set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(eventually(Duration::from_secs(5), || quiet() == 2.0), "the chat WebSocket parks too");
    let mut c = s.client();
    c.send(b"POST /chat HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nposted");
    assert_eq!(c.response().status, 202);
    loop {
        match chat.read().unwrap() {
            Message::Text(t) if t.as_str() == "posted" => break,
            Message::Ping(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }

    // Both close (one with a close frame, one by vanishing), and the gauge goes back to zero.
    ws.close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() })).unwrap();
    loop {
        match ws.read() {
            Ok(Message::Close(_) | Message::Ping(_)) => {}
            Ok(other) => panic!("unexpected {other:?}"),
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("unclean close: {e}"),
        }
    }
    assert!(eventually(Duration::from_secs(5), || quiet() == 1.0));
    drop(chat);
    assert!(
        eventually(Duration::from_secs(5), || quiet() == 0.0),
        "a vanished peer's WebSocket is not left parked"
    );
}
