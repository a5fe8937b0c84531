//! WebSockets on `/ws` (the demo echo): the handshake and its refusals, echo, fragments,
//! ping/pong, close codes, the size limit, keepalive, drain, and `--limit-concurrency`.
//! `tungstenite` is the independent client; frames it will not send are written raw.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{client, Message, WebSocket};

use crate::support::*;

const HANDSHAKE: &[u8] = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

pub(crate) fn open(s: &ServerProc) -> WebSocket<TcpStream> {
    let url = format!("ws://{}/ws", s.addr);
    let (ws, response) = client(url, s.connect()).expect("WebSocket handshake");
    assert_eq!(response.status(), 101);
    ws
}

/// A masked client frame.
pub(crate) fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut out = vec![b0];
    match payload.len() {
        n if n <= 125 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// A raw WebSocket: the handshake written (with `extra` in the same write), the 101 read.
pub(crate) fn raw(s: &ServerProc, extra: &[u8]) -> TcpStream {
    let mut stream = s.connect();
    stream.write_all(&cat(&[HANDSHAKE, extra])).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut b).unwrap(), 1, "101 cut short: {:?}", String::from_utf8_lossy(&head));
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(head.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), "{head}");
    stream
}

/// One server frame: (FIN/opcode byte, payload). Server frames are never masked.
pub(crate) fn read_frame(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).expect("a frame");
    assert_eq!(head[1] & 0x80, 0, "server frames are unmasked");
    let len = match head[1] & 0x7F {
        126 => {
            let mut b = [0u8; 2];
            stream.read_exact(&mut b).unwrap();
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            stream.read_exact(&mut b).unwrap();
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0; len];
    stream.read_exact(&mut payload).unwrap();
    (head[0], payload)
}

/// Read frames up to the server's close and answer it, as a client does; its code. The
/// server must then end the connection.
pub(crate) fn close_code(stream: &mut TcpStream) -> u16 {
    loop {
        let (b0, payload) = read_frame(stream);
        if b0 == 0x88 {
            let _ = stream.write_all(&frame(0x88, &payload[..2]));
            let mut rest = [0u8; 16];
            assert!(matches!(stream.read(&mut rest), Ok(0) | Err(_)), "nothing may follow a close frame");
            return u16::from_be_bytes([payload[0], payload[1]]);
        }
    }
}

#[test]
fn many_large_and_small_messages_in_flight_come_back_whole_and_in_order() {
    // Large payloads go out where they were read (shared between encoded frames), small ones
    // are copied: sent 16 at a time without reading, the echoes must still match in order.
    let s = ServerProc::start(&[]);
    let mut ws = open(&s);
    let message = |i: usize| -> Message {
        let size = [16 * 1024, 5, 8 * 1024, 100_000, 8 * 1024 - 1][i % 5];
        match i % 2 {
            0 => Message::binary((0..size).map(|b| (b + i) as u8).collect::<Vec<u8>>()),
            _ => Message::text("é".repeat(size / 2) + &i.to_string()),
        }
    };
    for batch in 0..8 {
        for i in batch * 16..(batch + 1) * 16 {
            ws.send(message(i)).unwrap();
        }
        for i in batch * 16..(batch + 1) * 16 {
            assert_eq!(ws.read().unwrap(), message(i), "message {i}");
        }
    }
}

#[test]
fn echoes_text_and_binary() {
    let s = ServerProc::start(&[]);
    let mut ws = open(&s);
    ws.send(Message::text("hello κόσμε")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("hello κόσμε"));
    let big: Vec<u8> = (0..1_000_000u32).map(|i| i as u8).collect();
    ws.send(Message::binary(big.clone())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::binary(big));
    ws.send(Message::text("")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text(""));
    ws.close(None).unwrap();
    loop {
        match ws.read() {
            Ok(Message::Close(frame)) => assert_eq!(frame.map(|f| f.code), None),
            Ok(other) => panic!("unexpected {other:?}"),
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("unclean close: {e}"),
        }
    }
}

#[test]
fn client_close_code_is_echoed() {
    let s = ServerProc::start(&[]);
    let mut ws = open(&s);
    ws.close(Some(tungstenite::protocol::CloseFrame {
        code: CloseCode::Library(4000),
        reason: "bye".into(),
    }))
    .unwrap();
    match ws.read() {
        Ok(Message::Close(Some(frame))) => assert_eq!(frame.code, CloseCode::Library(4000)),
        other => panic!("expected the close echoed, got {other:?}"),
    }
}

#[test]
fn bytes_right_after_the_handshake_belong_to_the_websocket() {
    let s = ServerProc::start(&[]);
    let mut stream = raw(&s, &frame(0x81, b"early"));
    assert_eq!(read_frame(&mut stream), (0x81, b"early".to_vec()));
}

#[test]
fn fragments_with_a_ping_between_them() {
    let s = ServerProc::start(&[]);
    let wire = cat(&[&frame(0x01, "κό".as_bytes()), &frame(0x89, b"p"), &frame(0x80, "σμε".as_bytes())]);
    let mut stream = raw(&s, &wire);
    assert_eq!(read_frame(&mut stream), (0x8A, b"p".to_vec()), "the ping is answered at once");
    assert_eq!(read_frame(&mut stream), (0x81, "κόσμε".as_bytes().to_vec()));
}

#[test]
fn ping_gets_its_pong() {
    let s = ServerProc::start(&[]);
    let mut ws = open(&s);
    ws.send(Message::Ping(b"are you there".to_vec())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::Pong(b"are you there".to_vec()));
}

#[test]
fn protocol_errors_close_with_their_codes() {
    let s = ServerProc::start(&["--ws-max-size", "1KiB"]);
    let unmasked = [0x81u8, 0x01, b'x'];
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("unmasked frame", unmasked.to_vec(), 1002),
        ("reserved bit", frame(0xC1, b"x"), 1002),
        ("unknown opcode", frame(0x83, b""), 1002),
        ("continuation without a start", frame(0x80, b"x"), 1002),
        ("fragmented ping", frame(0x09, b""), 1002),
        ("bad close code", frame(0x88, &1005u16.to_be_bytes()), 1002),
        ("invalid UTF-8", frame(0x81, b"\xFF"), 1007),
        ("invalid UTF-8 in a first fragment", frame(0x01, b"ok\xED\xA0\x80"), 1007),
        ("over --ws-max-size", frame(0x82, &[0; 1025]), 1009),
        (
            "over --ws-max-size across fragments",
            [frame(0x02, &[0; 1000]), frame(0x80, &[0; 25])].concat(),
            1009,
        ),
    ];
    for (what, wire, code) in cases {
        let mut stream = raw(&s, &wire);
        assert_eq!(close_code(&mut stream), code, "{what}");
    }
    // Exactly the limit is fine.
    let mut stream = raw(&s, &frame(0x82, &[7; 1024]));
    assert_eq!(read_frame(&mut stream), (0x82, vec![7; 1024]));
}

#[test]
fn bad_handshakes_are_refused() {
    let s = ServerProc::start(&["--ws-origins", "https://good.example"]);
    let without_upgrade = s.request(&get("/ws"));
    assert_eq!(without_upgrade.status, 426);
    assert_eq!(without_upgrade.header("upgrade"), Some("websocket"));

    let swap = |from: &str, to: &str| String::from_utf8(HANDSHAKE.to_vec()).unwrap().replace(from, to);
    let bad_key = swap("dGhlIHNhbXBsZSBub25jZQ==", "dG9vIHNob3J0");
    assert_eq!(s.request(bad_key.as_bytes()).status, 400);
    let no_key = swap("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "");
    assert_eq!(s.request(no_key.as_bytes()).status, 400);
    let old = s.request(swap("Version: 13", "Version: 8").as_bytes());
    assert_eq!(old.status, 426);
    assert_eq!(old.header("sec-websocket-version"), Some("13"));
    let body = swap("\r\n\r\n", "\r\nContent-Length: 2\r\n\r\nhi");
    assert_eq!(s.request(body.as_bytes()).status, 400);
    let evil = swap("\r\n\r\n", "\r\nOrigin: https://evil.example\r\n\r\n");
    assert_eq!(s.request(evil.as_bytes()).status, 403);
    // The allowed origin, and a request without Origin (not a browser), get their WebSocket.
    let good = swap("\r\n\r\n", "\r\nOrigin: https://good.example\r\n\r\n");
    let mut c = s.client();
    c.send(good.as_bytes());
    assert_eq!(c.head_response().status, 101);
    raw(&s, b"");
}

#[test]
fn unanswered_pings_close_with_1011() {
    let s = ServerProc::start(&["--ws-ping-interval", "200ms", "--ws-ping-timeout", "300ms"]);
    let mut stream = raw(&s, b"");
    assert_eq!(read_frame(&mut stream).0, 0x89, "a keepalive ping");
    assert_eq!(close_code(&mut stream), 1011);
}

/// A close that begins while a keepalive ping is still unanswered (here the peer's own
/// Close; a protocol error, the handler's close or a drain do the same) ends the keepalive.
/// It used to wait for the pong again and again without ever yielding: the executor's thread
/// spun, and every connection on it stopped.
#[test]
fn a_close_while_a_ping_is_unanswered_is_answered_and_the_executor_serves_on() {
    let s = ServerProc::start(&["--ws-ping-interval", "100ms", "--ws-ping-timeout", "10s"]);
    let mut stream = raw(&s, b"");
    assert_eq!(read_frame(&mut stream).0, 0x89, "a keepalive ping, left unanswered");
    stream.write_all(&frame(0x88, &1000u16.to_be_bytes())).unwrap();
    assert_eq!(read_frame(&mut stream), (0x88, 1000u16.to_be_bytes().to_vec()), "the close is echoed");
    let mut rest = Vec::new();
    assert!(stream.read_to_end(&mut rest).is_ok(), "then FIN");
    // The one executor still serves.
    assert_eq!(s.request(&get("/plaintext")).status, 200);
    let mut ws = open(&s);
    ws.send(Message::text("still served")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("still served"));
}

#[test]
fn answered_pings_keep_the_connection() {
    let s = ServerProc::start(&["--ws-ping-interval", "100ms", "--ws-ping-timeout", "300ms"]);
    let mut ws = open(&s);
    // tungstenite answers pings while it reads; an echo a second later shows the connection
    // survived several ping intervals.
    ws.get_mut().set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    while std::time::Instant::now() < deadline {
        match ws.read() {
            Ok(Message::Ping(_)) => {}
            Ok(other) => panic!("unexpected {other:?}"),
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("connection lost: {e}"),
        }
    }
    ws.get_mut().set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    ws.send(Message::text("still here")).unwrap();
    loop {
        match ws.read().unwrap() {
            Message::Ping(_) => {}
            m => break assert_eq!(m, Message::text("still here")),
        }
    }
}

#[test]
fn sigterm_closes_websockets_with_1001() {
    let mut s = ServerProc::start(&[]);
    let mut stream = raw(&s, b"");
    s.signal(libc::SIGTERM);
    assert_eq!(close_code(&mut stream), 1001);
    assert!(s.wait_exit(Duration::from_secs(10)).is_some(), "the server exits once the WebSocket closed");
}

#[test]
fn websockets_hold_no_concurrency_slot() {
    let s = ServerProc::start(&["--limit-concurrency", "1"]);
    let mut first = open(&s);
    let mut second = open(&s);
    assert_eq!(s.request(&get("/plaintext")).status, 200, "open WebSockets are not requests in flight");
    first.send(Message::text("1")).unwrap();
    second.send(Message::text("2")).unwrap();
    assert_eq!(first.read().unwrap(), Message::text("1"));
    assert_eq!(second.read().unwrap(), Message::text("2"));
}

#[test]
fn recycling_an_executor_closes_its_websockets_with_1012() {
    // --max-requests counts the upgrade: the executor is replaced while the server goes on.
    let s = ServerProc::start(&["--max-requests", "1"]);
    let mut stream = raw(&s, b"");
    assert_eq!(close_code(&mut stream), 1012);
    assert_eq!(s.request(&get("/plaintext")).status, 200, "the server goes on");
}

#[test]
fn websockets_count_as_open_connections() {
    let s = ServerProc::start(&["--max-connections", "1"]);
    let mut ws = open(&s);
    assert_eq!(s.request(&get("/plaintext")).status, 503, "the WebSocket holds the one connection");
    ws.send(Message::text("still served")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("still served"));
}

#[test]
fn a_peer_that_stops_reading_is_cut_off_after_the_write_timeout() {
    let s = ServerProc::start(&["--write-timeout", "1s"]);
    let mut stream = raw(&s, b"");
    stream.set_write_timeout(Some(Duration::from_secs(15))).unwrap();
    let message = frame(0x82, &vec![0u8; 1 << 20]);
    let started = std::time::Instant::now();
    // The echoes fill both socket buffers, the server's send waits, it stops reading, and
    // this client's writes stall too, until the server gives up on its write and closes.
    let error = (0..512).find_map(|_| stream.write_all(&message).err());
    let error = error.expect("the server never stopped taking 512 MiB from a client that does not read");
    assert!(
        !matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
        "the client's write stalled instead of the server closing: {error}"
    );
    assert!(started.elapsed() < Duration::from_secs(12), "closed only after {:?}", started.elapsed());
}

/// Clients that keep their WebSockets busy (8 messages in flight each, answered as soon as
/// echoed) until the server closes them; returns the close codes, `None` for a connection
/// still open at `deadline`.
fn busy_clients(
    s: &ServerProc,
    conns: usize,
    deadline: std::time::Instant,
) -> Vec<std::thread::JoinHandle<Vec<Option<u16>>>> {
    let batch: Vec<u8> = (0..8).flat_map(|_| frame(0x81, b"keep the executor busy")).collect();
    (0..4)
        .map(|_| {
            let streams: Vec<TcpStream> = (0..conns / 4).map(|_| raw(s, b"")).collect();
            let batch = batch.clone();
            std::thread::spawn(move || {
                let mut codes = vec![None; streams.len()];
                let mut streams = streams;
                for st in &mut streams {
                    st.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                }
                while codes.iter().any(Option::is_none) && std::time::Instant::now() < deadline {
                    for (i, st) in streams.iter_mut().enumerate() {
                        if codes[i].is_none() && st.write_all(&batch).is_err() {
                            codes[i] = Some(0);
                        }
                    }
                    for (i, st) in streams.iter_mut().enumerate() {
                        let mut echoed = 0;
                        while codes[i].is_none() && echoed < 8 {
                            let mut head = [0u8; 2];
                            if st.read_exact(&mut head).is_err() {
                                codes[i] = Some(0);
                                break;
                            }
                            let mut payload = vec![0; (head[1] & 0x7f) as usize];
                            if st.read_exact(&mut payload).is_err() {
                                codes[i] = Some(0);
                                break;
                            }
                            match head[0] {
                                0x88 => codes[i] = Some(u16::from_be_bytes([payload[0], payload[1]])),
                                0x81 => echoed += 1,
                                _ => {}
                            }
                        }
                    }
                }
                codes
            })
        })
        .collect()
}

/// The executor's timer task (heartbeat, drain flags, every timeout) runs while its
/// WebSockets keep it busy: SIGTERM under a steady load closes them with 1001 soon, and the
/// supervisor never takes the busy executor for a stalled one. (On monoio, timers run only
/// when the executor's queue empties, which sessions waking themselves once kept from
/// happening.)
#[test]
fn sigterm_under_a_steady_websocket_load_closes_with_1001_soon() {
    let mut s = ServerProc::start(&["--stall-detect", "1s"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(25);
    let clients = busy_clients(&s, 64, deadline);
    std::thread::sleep(Duration::from_secs(3));
    let term = std::time::Instant::now();
    s.signal(libc::SIGTERM);
    let codes: Vec<Option<u16>> = clients.into_iter().flat_map(|c| c.join().unwrap()).collect();
    let took = term.elapsed();
    assert!(codes.iter().all(|c| *c == Some(1001)), "every busy WebSocket closed with 1001: {codes:?}");
    assert!(took < Duration::from_secs(10), "the drain began {took:?} after SIGTERM");
    assert!(s.wait_exit(Duration::from_secs(10)).is_some());
    let logs = s.logs().join("\n");
    assert!(!logs.contains("executor stalled"), "a busy executor taken for a stalled one:\n{logs}");
}
