//! The library API: `Server::start` with a custom `Router` in this process. Covers what the
//! demo binary cannot: a panicking handler, a handler streaming its request body, the
//! router's 404/405/HEAD/OPTIONS answers, and `ServerHandle::stop`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use percore::{ExecutorInfo, Request, Response, Router, Server, ServerConfig, ServerHandle};

fn start() -> ServerHandle {
    let mut cfg = ServerConfig { port: 0, workers: Some(1), ..ServerConfig::default() };
    cfg.driver.header_timeout = Duration::from_secs(5);
    Server::new(cfg).start(|_exec: &ExecutorInfo| app()).expect("server start")
}

async fn panics(_req: Request) -> Response {
    panic!("boom (this panic is expected by the test)")
}

async fn ok(_req: Request) -> Response {
    Response::text("ok")
}

/// Reads the body chunk by chunk; answers with the chunk count and the body.
async fn chunks(mut req: Request) -> Response {
    let mut n = 0;
    let mut body = Vec::new();
    while let Some(chunk) = req.body_mut().chunk().await {
        match chunk {
            Ok(c) => {
                n += 1;
                body.extend_from_slice(&c);
            }
            Err(e) => return Response::status_text(e.status()),
        }
    }
    let mut out = format!("{n}:").into_bytes();
    out.extend_from_slice(&body);
    Response::text(out)
}

fn app() -> Router {
    Router::new()
        .get("/panic", panics)
        .post("/panic", panics)
        .get("/ok", ok)
        .post("/chunks", chunks)
        .put("/thing", ok)
        .delete("/thing", ok)
}

// --- a minimal client --------------------------------------------------------------------

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    fn closes(&self) -> bool {
        self.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_nodelay(true).unwrap();
        Conn { s, buf: Vec::new() }
    }

    fn send(&mut self, raw: &[u8]) {
        self.s.write_all(raw).unwrap();
    }

    fn fill(&mut self) -> bool {
        let mut b = [0u8; 8192];
        match self.s.read(&mut b) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&b[..n]);
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => false,
            Err(e) => panic!("read: {e} (timeout means the server hung)"),
        }
    }

    /// One response (Content-Length bodies only; `head`: no body).
    fn response(&mut self, head: bool) -> Resp {
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            assert!(self.fill(), "connection closed before a response");
        };
        let text = String::from_utf8(self.buf[..end].to_vec()).unwrap();
        self.buf.drain(..end + 4);
        let mut lines = text.split("\r\n");
        let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.trim().to_string(), v.trim().to_string())
            })
            .collect();
        let mut r = Resp { status, headers, body: Vec::new() };
        assert!(r.header("transfer-encoding").is_none(), "test client reads Content-Length bodies only");
        let len: usize = if head || status < 200 || status == 204 || status == 304 {
            0
        } else {
            r.header("content-length").map_or(0, |v| v.parse().unwrap())
        };
        while self.buf.len() < len {
            assert!(self.fill(), "connection closed inside a body");
        }
        r.body = self.buf.drain(..len).collect();
        r
    }

    fn expect_closed(&mut self) -> bool {
        assert!(self.buf.is_empty(), "unexpected bytes: {:?}", String::from_utf8_lossy(&self.buf));
        self.s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = [0u8; 64];
        match self.s.read(&mut b) {
            Ok(0) => true,
            Ok(n) => panic!("unexpected bytes: {:?}", String::from_utf8_lossy(&b[..n])),
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes()
}

// --- tests -------------------------------------------------------------------------------

#[test]
fn panicking_handler_gets_500_and_close_and_server_goes_on() {
    let server = start();
    let mut c = Conn::open(server.local_addr().expect("a TCP address"));
    c.send(&get("/panic"));
    let r = c.response(false);
    assert_eq!(r.status, 500, "a panicking handler must produce 500");
    assert!(r.closes(), "500 after a panic must say connection: close; headers {:?}", r.headers);
    assert!(c.expect_closed(), "connection must close after a handler panic");

    // The executor survived: the same (single) worker still serves, repeatedly.
    for i in 0..3 {
        let mut c = Conn::open(server.local_addr().expect("a TCP address"));
        c.send(&get("/ok"));
        let r = c.response(false);
        assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]), "request {i} after the panic");
        c.send(&get("/panic"));
        assert_eq!(c.response(false).status, 500, "second panic {i}");
    }
    server.stop();
}

#[test]
fn panic_with_unread_body_and_pipelined_request() {
    let server = start();
    let mut c = Conn::open(server.local_addr().expect("a TCP address"));
    c.send(b"POST /panic HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /ok HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = c.response(false);
    assert_eq!(r.status, 500);
    assert!(r.closes());
    assert!(c.expect_closed(), "the request pipelined after a panic is not answered");
    server.stop();
}

#[test]
fn router_404_405_head_options() {
    let server = start();
    let mut c = Conn::open(server.local_addr().expect("a TCP address"));

    c.send(&get("/missing"));
    assert_eq!(c.response(false).status, 404, "unknown path");

    c.send(b"POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    let r = c.response(false);
    assert_eq!(r.status, 405, "POST on a GET route");
    let allow = r.header("allow").expect("405 needs Allow").to_string();
    assert!(allow.contains("GET") && allow.contains("HEAD"), "Allow {allow:?}");

    c.send(&get("/thing"));
    let r = c.response(false);
    assert_eq!(r.status, 405, "GET on a PUT/DELETE route");
    let allow = r.header("allow").expect("405 needs Allow").to_string();
    assert!(allow.contains("PUT") && allow.contains("DELETE"), "Allow {allow:?}");
    assert!(
        !allow.split(',').any(|m| m.trim() == "GET" || m.trim() == "HEAD"),
        "Allow {allow:?} must not offer GET/HEAD"
    );

    c.send(b"HEAD /ok HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = c.response(true);
    assert_eq!(r.status, 200, "HEAD on a GET route");
    assert_eq!(r.header("content-length"), Some("2"), "HEAD has the GET's content-length");

    c.send(b"OPTIONS /thing HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = c.response(false);
    assert!((200..300).contains(&r.status), "OPTIONS on a route: {}", r.status);
    let allow = r.header("allow").expect("OPTIONS answer should carry Allow").to_string();
    assert!(allow.contains("PUT") && allow.contains("DELETE"), "Allow {allow:?}");

    c.send(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = c.response(false);
    assert!((200..300).contains(&r.status), "OPTIONS *: {}", r.status);

    // After all that, the connection (and the body-less HEAD) left it in sync.
    c.send(&get("/ok"));
    assert_eq!(c.response(false).body, b"ok");
    server.stop();
}

#[test]
fn handler_streams_request_body_chunk_by_chunk() {
    let server = start();
    let mut c = Conn::open(server.local_addr().expect("a TCP address"));
    c.send(b"POST /chunks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    for piece in ["first-", "second-", "third"] {
        std::thread::sleep(Duration::from_millis(100));
        c.send(format!("{:x}\r\n{piece}\r\n", piece.len()).as_bytes());
    }
    std::thread::sleep(Duration::from_millis(100));
    c.send(b"0\r\n\r\n");
    let r = c.response(false);
    assert_eq!(r.status, 200);
    let text = String::from_utf8(r.body).unwrap();
    let (n, body) = text.split_once(':').unwrap();
    assert_eq!(body, "first-second-third", "streamed body content");
    let n: usize = n.parse().unwrap();
    assert!(
        n >= 3,
        "body written in 3 separate pieces 100 ms apart should arrive as at least 3 chunks, got {n}"
    );

    // Content-Length body arriving in pieces.
    c.send(b"POST /chunks HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234");
    std::thread::sleep(Duration::from_millis(100));
    c.send(b"56789");
    let r = c.response(false);
    let text = String::from_utf8(r.body).unwrap();
    assert!(text.ends_with(":0123456789"), "Content-Length body streamed: {text:?}");
    server.stop();
}

fn refuses_connections(addr: SocketAddr) -> bool {
    (0..40).any(|_| {
        if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
        false
    })
}

#[test]
fn stop_releases_the_port() {
    let server = start();
    let addr = server.local_addr().expect("a TCP address");
    let mut c = Conn::open(addr);
    c.send(b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(c.response(false).status, 200);
    assert!(c.expect_closed());
    drop(c);
    std::thread::sleep(Duration::from_millis(200)); // the server's lingering read sees EOF
    server.stop();
    assert!(
        refuses_connections(addr),
        "connections still accepted on {addr} after stop() (no connection open)"
    );
}

#[test]
fn stop_with_an_open_connection_releases_the_port_and_drops_it() {
    let server = start();
    let addr = server.local_addr().expect("a TCP address");
    let mut c = Conn::open(addr);
    c.send(&get("/ok"));
    assert_eq!(c.response(false).status, 200);
    // `c` is an idle keep-alive connection while the server stops.
    server.stop();
    assert!(refuses_connections(addr), "connections still accepted on {addr} after stop() (a keep-alive connection was open when stop() was called)");
    assert!(c.expect_closed(), "the open connection was not dropped by stop()");
}

#[test]
fn tokio_mt_serves_a_handler_that_is_not_send() {
    use std::cell::Cell;
    use std::rc::Rc;
    let mut cfg = ServerConfig { port: 0, workers: Some(2), ..ServerConfig::default() };
    cfg.runtime = percore::RuntimeKind::TokioMt;
    // Per-executor state without locks: an Rc<Cell> counter, not Send.
    let server = Server::new(cfg)
        .start(|exec: &ExecutorInfo| {
            let count = Rc::new(Cell::new(0u64));
            let index = exec.index;
            move |_req: Request| {
                let count = count.clone();
                async move {
                    count.set(count.get() + 1);
                    percore::time::sleep(Duration::from_millis(1)).await;
                    Response::text(format!("{index}:{}", count.get()))
                }
            }
        })
        .expect("tokio-mt server start");
    assert_eq!(server.state().runtime(), "tokio-mt");
    let mut c = Conn::open(server.local_addr().expect("a TCP address"));
    let mut last = 0u64;
    for _ in 0..5 {
        c.send(&get("/"));
        let r = c.response(false);
        assert_eq!(r.status, 200);
        let body = String::from_utf8(r.body).unwrap();
        let (_, n) = body.split_once(':').expect("executor:count");
        let n: u64 = n.parse().unwrap();
        assert!(n > last, "one connection stays on one executor, whose counter only grows: {body}");
        last = n;
    }
    server.stop();
}

/// Answers `host scheme client` as the request sees them.
async fn whoami(req: Request) -> Response {
    Response::text(format!("{} {} {}", req.host().unwrap_or("-"), req.scheme(), req.client_addr()))
}

fn start_whoami(forwarded_host: bool) -> ServerHandle {
    let mut cfg = ServerConfig { port: 0, workers: Some(1), ..ServerConfig::default() };
    cfg.driver.forwarded.host = forwarded_host;
    Server::new(cfg).start(|_exec: &ExecutorInfo| Router::new().get("/who", whoami)).expect("server start")
}

fn who(server: &ServerHandle, raw: &[u8]) -> String {
    let mut c = Conn::open(server.local_addr().expect("a TCP address"));
    c.send(raw);
    let r = c.response(false);
    assert_eq!(r.status, 200);
    String::from_utf8(r.body).unwrap()
}

#[test]
fn host_is_the_absolute_target_authority_and_a_forwarded_host_only_when_configured() {
    let server = start_whoami(false);
    let xfh = b"GET /who HTTP/1.1\r\nHost: app.example\r\nX-Forwarded-Host: evil.example\r\n\
                X-Forwarded-For: 203.0.113.4\r\nX-Forwarded-Proto: https\r\n\r\n";
    assert_eq!(who(&server, xfh), "app.example https 203.0.113.4");
    // The authority of an absolute-form target wins over Host (RFC 9112 §3.2.2).
    let absolute = b"GET http://target.example:8080/who HTTP/1.1\r\nHost: app.example\r\n\r\n";
    assert_eq!(who(&server, absolute), "target.example:8080 http 127.0.0.1");
    server.stop();

    let server = start_whoami(true);
    assert_eq!(who(&server, xfh), "evil.example https 203.0.113.4");
    server.stop();
}

// --- WebSockets: the drain notice ---------------------------------------------------------

/// Echoes until the executor drains, then says goodbye and closes with the server's code.
async fn ws_goodbye(_req: Request, ws: percore::ws::WebSocket) {
    loop {
        match percore::io::first_of(ws.recv(), ws.draining()).await {
            percore::io::Either::Left(Some(percore::ws::Message::Close(_)) | None) => return,
            percore::io::Either::Left(Some(message)) => {
                if ws.send(message).await.is_err() {
                    return;
                }
            }
            percore::io::Either::Right(code) => {
                let _ = ws.send(percore::ws::Message::text("goodbye")).await;
                let _ = ws.close(code.unwrap_or(1000), "see you");
                return;
            }
        }
    }
}

#[test]
fn a_websocket_handler_hears_the_drain_and_says_goodbye() {
    let cfg = ServerConfig { port: 0, workers: Some(1), ..ServerConfig::default() };
    let server = Server::new(cfg)
        .start(|_exec: &ExecutorInfo| Router::new().ws("/ws", ws_goodbye))
        .expect("server start");
    let stream = TcpStream::connect(server.local_addr().expect("a TCP address")).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (mut ws, _) =
        tungstenite::client(format!("ws://{}/ws", server.local_addr().expect("a TCP address")), stream)
            .unwrap();
    ws.send(tungstenite::Message::text("hi")).unwrap();
    assert_eq!(ws.read().unwrap(), tungstenite::Message::text("hi"));
    server.send(percore::Command::Drain);
    assert_eq!(ws.read().unwrap(), tungstenite::Message::text("goodbye"));
    match ws.read().unwrap() {
        tungstenite::Message::Close(Some(frame)) => {
            assert_eq!(u16::from(frame.code), 1001, "the server is stopping");
            assert_eq!(&*frame.reason, "see you");
        }
        other => panic!("expected the handler's close, got {other:?}"),
    }
    assert!(matches!(ws.read(), Err(tungstenite::Error::ConnectionClosed)));
    assert_eq!(server.join().unwrap(), percore::Shutdown::Drained);
}

// --- nothing outlives a replaced executor -----------------------------------------------

/// Counts its drops: a stand-in for everything an executor's handler holds.
struct DropCounter(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Every replaced executor lets go of its handler (and so of everything its tasks held):
/// a task left pending when its runtime ends is never dropped, which leaked memory per
/// reload on monoio and an eventfd per executor on glommio.
#[test]
fn replaced_executors_drop_their_handlers() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    for kind in [percore::RuntimeKind::Monoio, percore::RuntimeKind::Tokio, percore::RuntimeKind::Glommio] {
        let drops = Arc::new(AtomicUsize::new(0));
        let cfg = ServerConfig { port: 0, workers: Some(2), runtime: kind, ..ServerConfig::default() };
        let counted = drops.clone();
        let handle = Server::new(cfg)
            .start(move |_exec: &ExecutorInfo| {
                let token = DropCounter(counted.clone());
                app().get("/token", move |_req: Request| {
                    let _held = &token;
                    async { Response::text("ok") }
                })
            })
            .expect("server start");
        for _ in 0..3 {
            handle.send(percore::Command::Reload(None));
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while drops.load(Ordering::SeqCst) < 6 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let dropped = drops.load(Ordering::SeqCst);
        handle.stop();
        assert_eq!(dropped, 6, "{kind:?}: handlers dropped after 3 reloads of 2 executors");
    }
}

#[test]
fn a_server_on_a_unix_socket_only_has_no_tcp_address() {
    let dir = std::env::temp_dir().join(format!("percore-library-unix-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.sock");
    let cfg = ServerConfig {
        bind: vec![format!("unix:{}", path.display())],
        workers: Some(1),
        ..ServerConfig::default()
    };
    let server = Server::new(cfg).start(|_exec: &ExecutorInfo| app()).expect("server start");
    assert_eq!(server.local_addr(), None, "no TCP address to report");
    assert!(server.local_addrs().is_empty());
    assert_eq!(server.unix_paths(), std::slice::from_ref(&path));
    let mut s = std::os::unix::net::UnixStream::connect(&path).expect("connect to the Unix socket");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
