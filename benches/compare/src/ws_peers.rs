//! The WebSocket echo servers percore's `/ws` is compared with, each on one tokio
//! `current_thread` runtime (one executor, as `percore --workers 1`), started by the harness
//! with `compare serve-ws tungstenite|fastwebsockets --port P`.
//!
//! Each echo loop is the one its crate's own examples write: tokio-tungstenite forwards the
//! read half into the write half (feeding while messages are ready, flushing when none is),
//! fastwebsockets reads a frame and writes it back through its `FragmentCollector`.

use std::future::ready;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::net::{TcpListener, TcpStream};

/// Which peer to serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    Tungstenite,
    FastWebSockets,
}

impl Peer {
    pub fn parse(s: &str) -> Option<Peer> {
        match s {
            "tungstenite" => Some(Peer::Tungstenite),
            "fastwebsockets" => Some(Peer::FastWebSockets),
            _ => None,
        }
    }
}

/// `serve-ws tungstenite|fastwebsockets --port P`: serve until killed.
pub fn serve(args: &[String]) -> Result<(), String> {
    let peer = args.first().and_then(|s| Peer::parse(s)).ok_or("serve-ws: tungstenite or fastwebsockets")?;
    let port: u16 = args
        .iter()
        .position(|a| a == "--port")
        .and_then(|i| args.get(i + 1))
        .and_then(|p| p.parse().ok())
        .ok_or("serve-ws: --port P")?;
    crate::procfs::raise_nofile();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            match peer {
                Peer::Tungstenite => tokio::spawn(tungstenite_echo(stream)),
                Peer::FastWebSockets => tokio::spawn(fastwebsockets_conn(stream)),
            };
        }
    })
}

async fn tungstenite_echo(stream: TcpStream) {
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else { return };
    let (write, read) = ws.split();
    let _ = read.try_filter(|m| ready(m.is_text() || m.is_binary())).forward(write).await;
}

async fn fastwebsockets_conn(stream: TcpStream) {
    let io = hyper_util::rt::TokioIo::new(stream);
    let service = hyper::service::service_fn(fastwebsockets_upgrade);
    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).with_upgrades().await;
}

async fn fastwebsockets_upgrade(
    mut req: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, fastwebsockets::WebSocketError> {
    let (response, upgraded) = fastwebsockets::upgrade::upgrade(&mut req)?;
    tokio::spawn(async move {
        let Ok(ws) = upgraded.await else { return };
        let mut ws = fastwebsockets::FragmentCollector::new(ws);
        while let Ok(frame) = ws.read_frame().await {
            match frame.opcode {
                fastwebsockets::OpCode::Close => break,
                fastwebsockets::OpCode::Text | fastwebsockets::OpCode::Binary => {
                    if ws.write_frame(frame).await.is_err() {
                        break;
                    }
                }
                _ => {}
            }
        }
    });
    Ok(response)
}
