//! The hand-over and the session over an in-memory transport: what the client sent with its
//! handshake is the WebSocket's, and every close is a close frame before FIN.

use std::sync::Arc;

use crate::app::demo::demo_app;
use crate::conn::DriverConfig;
use crate::state::ServerState;
use crate::testing::run_connection;

const HANDSHAKE: &[u8] = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

fn masked(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [9u8, 8, 7, 6];
    let mut out = vec![b0, 0x80 | payload.len() as u8];
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// The server's bytes after its `101` head.
fn after_head(output: &[u8]) -> &[u8] {
    let head = std::str::from_utf8(&output[..output.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4])
        .unwrap();
    assert!(head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "{head}");
    assert!(head.contains("\r\nconnection: upgrade\r\n"), "{head}");
    assert!(head.contains("\r\nupgrade: websocket\r\n"), "{head}");
    assert!(head.contains("\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), "{head}");
    assert!(!head.contains("content-length"), "{head}");
    &output[head.len()..]
}

fn serve(reads: Vec<Vec<u8>>) -> crate::testing::Transcript {
    run_connection(
        reads,
        DriverConfig::default(),
        demo_app(Arc::new(ServerState::new(1)), &crate::chat::Hub::new()),
    )
}

#[test]
fn frames_sent_with_the_handshake_are_not_lost() {
    let first = [HANDSHAKE, &masked(0x81, b"one"), &masked(0x82, b"\x00two")].concat();
    let log = serve(vec![first, masked(0x88, b"\x03\xe8")]);
    let frames = after_head(&log.output()).to_vec();
    assert_eq!(frames, [&b"\x81\x03one"[..], b"\x82\x04\x00two", b"\x88\x02\x03\xe8"].concat());
    assert!(log.shutdown, "FIN after the closing handshake");
}

#[test]
fn a_protocol_error_answers_earlier_messages_then_closes_1002() {
    let unmasked = [0x81u8, 0x01, b'x'];
    let log = serve(vec![[HANDSHAKE, &masked(0x81, b"ok"), &unmasked].concat()]);
    let frames = after_head(&log.output()).to_vec();
    let mut want = b"\x81\x02ok\x88".to_vec();
    want.push((2 + "unmasked client frame".len()) as u8);
    want.extend_from_slice(&1002u16.to_be_bytes());
    want.extend_from_slice(b"unmasked client frame");
    assert_eq!(frames, want);
    assert!(log.shutdown);
}

#[test]
fn a_vanished_peer_ends_the_session_without_frames() {
    let log = serve(vec![HANDSHAKE.to_vec()]);
    assert!(after_head(&log.output()).is_empty());
}

#[test]
fn the_handler_closes_with_its_own_code() {
    use crate::app::{Request, Router};
    use crate::ws::{Message, SendError, WebSocket};
    let app = Router::new().ws("/ws", |_req: Request, ws: WebSocket| async move {
        ws.send(Message::text("hi")).await.unwrap();
        assert_eq!(ws.close(1005, "reserved"), Err(SendError::BadCloseCode(1005)));
        assert_eq!(ws.close(4000, "done"), Ok(()));
        assert_eq!(ws.close(4001, "twice"), Err(SendError::Closed));
        assert_eq!(ws.send(Message::text("late")).await, Err(SendError::Closed));
        // The peer's answer to the close still comes out of recv.
        assert_eq!(ws.recv().await, Some(Message::Close(None)));
        assert_eq!(ws.recv().await, None);
    });
    let log = run_connection(vec![HANDSHAKE.to_vec(), masked(0x88, b"")], DriverConfig::default(), app);
    assert_eq!(after_head(&log.output()), &b"\x81\x02hi\x88\x06\x0f\xa0done"[..]);
    assert!(log.shutdown);
}

#[test]
fn a_large_message_does_not_leave_a_quiet_websocket_a_large_buffer() {
    let big = vec![5u8; 200_000];
    let mut head = vec![0x82, 0x80 | 127];
    head.extend_from_slice(&(big.len() as u64).to_be_bytes());
    head.extend_from_slice(&[0; 4]); // a zero mask leaves the payload as it is
    let mut reads = vec![HANDSHAKE.to_vec(), [head, big].concat()];
    reads.extend((0..8).map(|i| masked(0x81, format!("small {i}").as_bytes())));
    reads.push(masked(0x88, b"\x03\xe8"));
    let log = serve(reads);
    let rooms = &log.read_rooms;
    assert!(rooms.iter().any(|&r| r >= 32 * 1024), "a large message is read in large pieces: {rooms:?}");
    let idle = *rooms.last().unwrap();
    assert!(idle <= 4 * 1024, "the quiet WebSocket reads with {idle} bytes of room: {rooms:?}");
    // Every message was echoed before the close was answered.
    let out = log.output();
    let frames = after_head(&out);
    assert!(
        frames.ends_with(b"\x81\x07small 7\x88\x02\x03\xe8"),
        "{:?} (rooms {rooms:?})",
        &frames[frames.len().saturating_sub(40)..]
    );
}

#[test]
fn session_futures_stay_small_and_loosely_aligned() {
    // An idle WebSocket's memory is mostly the session future and, while it is parked, its
    // quiet wait. The session's loops (about 2 KB) are boxed and dropped while it is quiet;
    // before that, the session held them inline: 2,376 bytes (release, monoio), and 5,888
    // aligned to 128 when runtime sleeps were held inline in the side loops' rare states.
    fn check<T: crate::io::Transport, K: crate::io::Timer>(name: &str) -> (usize, usize) {
        let make = |io: T,
                    left: bytes::BytesMut,
                    up: crate::ws::Upgrade,
                    ctx: std::rc::Rc<dyn super::SessionEnv>| {
            super::run::<T, K, _>(io, left, up, ctx)
        };
        let (session, align) = layout4(&make);
        assert!(align <= 16, "{name}: the session future is aligned to {align} bytes");
        type Kept<T> =
            super::Kept<<T as crate::io::Transport>::ReadHalf, <T as crate::io::Transport>::WriteHalf>;
        let wait =
            |kept: std::rc::Rc<Kept<T>>, shared: super::Shared, ctx: std::rc::Rc<dyn super::SessionEnv>| {
                super::quiet(kept, shared, ctx)
            };
        let (quiet, align) = layout_of_output(&wait);
        assert!(align <= 16, "{name}: the quiet wait is aligned to {align} bytes");
        let kept = std::mem::size_of::<Kept<T>>();
        println!("{name}: session {session} bytes, quiet wait {quiet}, kept {kept}");
        // 80 bytes on every runtime, built here with a trait object for its executor's context
        // (the server's own is a thin pointer: 72). 176 before its executor became one
        // pointer, its yield a pause only when the timers are late (and that pause boxed
        // twice, for a thin pointer), the handler's and the connection's sides options,
        // `Kept` held by them alone, and its waker one pointer.
        assert!(session <= 80, "{name}: the session future is {session} bytes (at most 80 expected)");
        // monoio: 56 bytes, with a trait object (48 in the server; its readiness wait is 16, from
        // the executor's epoll instance: see `runtime::monoio_ready`); tokio 208, glommio 96.
        // An async block before, which kept its captures twice: 248 on monoio.
        assert!(quiet <= 224, "{name}: the quiet wait is {quiet} bytes (at most 224 expected)");
        if name == "monoio" {
            assert!(quiet <= 64, "monoio: the quiet wait is {quiet} bytes (at most 64 expected)");
        }
        // 144 bytes on every runtime, with the keepalive's deadline (176 without it, before the
        // read size, the last read's tick, the decoder's mask position and UTF-8 carry were
        // narrowed).
        assert!(kept <= 144, "{name}: what a parked session keeps is {kept} bytes (at most 144 expected)");
        // The state shared with the handler: 168 bytes, so that its `Rc<RefCell<_>>` is 192, a
        // size class of jemalloc's (it was 208, in the class of 224).
        let state = std::mem::size_of::<crate::ws::socket::State>();
        assert!(state <= 168, "the shared state is {state} bytes (at most 168 expected)");
        (session, quiet)
    }
    // The futures' types can only be named through the functions that make them.
    fn layout_of_output<A, B, C, R, F: Fn(A, B, C) -> R>(_: &F) -> (usize, usize) {
        (std::mem::size_of::<R>(), std::mem::align_of::<R>())
    }
    // `run` takes a fourth argument: curry it.
    fn layout4<A, B, C, D, R, F: Fn(A, B, C, D) -> R>(_: &F) -> (usize, usize) {
        (std::mem::size_of::<R>(), std::mem::align_of::<R>())
    }
    #[cfg(feature = "monoio")]
    check::<crate::runtime::monoio::MonoioStream, crate::runtime::monoio::Monoio>("monoio");
    #[cfg(feature = "tokio")]
    check::<crate::runtime::tokio::TokioStream, crate::runtime::tokio::Tokio>("tokio");
    #[cfg(feature = "glommio")]
    check::<crate::runtime::glommio::GlommioStream, crate::runtime::glommio::Glommio>("glommio");
}
