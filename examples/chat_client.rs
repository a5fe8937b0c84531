//! A small client for the demo chat room (`GET /chat`): it joins, prints every message the
//! room carries, and sends each line typed on stdin as a message. Ctrl-D leaves.
//!
//! ```sh
//! cargo run --release -- --workers 4                  # the demo app, chat included
//! cargo run --example chat_client                     # ws://127.0.0.1:8000/chat
//! cargo run --example chat_client -- ws://127.0.0.1:9000/chat
//! ```
//!
//! std and `tungstenite` only: one thread reads stdin, the main one reads the socket (with a
//! short read timeout, so typed lines go out while no message comes).

use std::io::{BufRead, ErrorKind};
use std::net::TcpStream;
use std::sync::mpsc::{self, TryRecvError};
use std::time::Duration;

use tungstenite::{client, Error, Message};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args().nth(1).unwrap_or_else(|| "ws://127.0.0.1:8000/chat".to_string());
    let authority = url
        .strip_prefix("ws://")
        .and_then(|rest| rest.split('/').next())
        .ok_or("usage: chat_client [ws://HOST:PORT/chat] (plain ws:// only)")?;
    let stream = TcpStream::connect(authority)?;
    let (mut ws, _response) = client(url.as_str(), stream.try_clone()?)?;
    stream.set_read_timeout(Some(Duration::from_millis(100)))?;
    eprintln!("joined {url}; type a line to post it, Ctrl-D to leave");

    let (lines, typed) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });

    loop {
        match typed.try_recv() {
            Ok(line) => ws.send(Message::text(line))?,
            Err(TryRecvError::Disconnected) => {
                ws.close(None)?;
                await_close(&mut ws);
                return Ok(());
            }
            Err(TryRecvError::Empty) => {}
        }
        match ws.read() {
            Ok(Message::Text(text)) => println!("{text}"),
            Ok(Message::Close(frame)) => {
                eprintln!("the server closed the chat: {frame:?}");
                return Ok(());
            }
            Ok(_) => {}
            Err(Error::Io(e)) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// After our close: read until the server's close comes back (or the connection ends).
fn await_close(ws: &mut tungstenite::WebSocket<TcpStream>) {
    for _ in 0..50 {
        match ws.read() {
            Ok(Message::Text(text)) => println!("{text}"),
            Ok(_) => {}
            Err(Error::Io(e)) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}
