//! Trust boundaries: which forwarding headers are believed, from which peers, and that a
//! PROXY header counts only from the load balancer (`--proxy-allow-from`).

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use crate::support::*;

/// A server with a JSON access log; its log path, in a directory removed with the server.
fn logged_server(name: &str, extra: &[&str]) -> (ServerProc, Log) {
    let dir = TempDir::new(&format!("trust-{name}"));
    let path = dir.join("access.log");
    let mut args = vec!["--access-log", path.to_str().unwrap(), "--access-log-format", "json"];
    args.extend_from_slice(extra);
    (ServerProc::start(&args), Log { path, _dir: dir })
}

/// An access log's path; its directory goes when this is dropped.
struct Log {
    path: PathBuf,
    _dir: TempDir,
}

impl std::ops::Deref for Log {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.path
    }
}

/// The JSON access log lines once there are `n`.
fn json_lines(path: &PathBuf, n: usize) -> Vec<String> {
    let mut lines = Vec::new();
    eventually(Duration::from_secs(5), || {
        lines = std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_string).collect();
        lines.len() >= n
    });
    assert!(lines.len() >= n, "expected {n} access log lines, got {lines:?}");
    lines
}

/// `client scheme` of an access log line.
fn client_scheme(line: &str) -> String {
    format!("{} {}", json_field(line, "client").unwrap(), json_field(line, "scheme").unwrap())
}

/// A connection from `source` (any 127/8 address) to the server.
fn connect_from(source: &str, to: SocketAddr) -> Client {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let from: SocketAddr = format!("{source}:0").parse().unwrap();
    socket.bind(&from.into()).unwrap();
    socket.connect_timeout(&to.into(), Duration::from_secs(5)).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    Client::new(stream)
}

#[test]
fn a_client_forwarded_header_never_overrides_the_proxy_x_forwarded_headers() {
    let (s, log) = logged_server("mix", &[]);
    // What nginx or the ALB passes on for a client that wrote its own `Forwarded`.
    let spoof = b"GET /plaintext HTTP/1.1\r\nHost: h\r\nForwarded: for=6.6.6.6;proto=https\r\n\
                  X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: http\r\n\r\n";
    assert_eq!(s.request(spoof).status, 200);
    // A `Forwarded` without `for=` must not hide the real X-Forwarded-For either.
    let junk =
        b"GET /plaintext HTTP/1.1\r\nHost: h\r\nForwarded: foo=bar\r\nX-Forwarded-For: 203.0.113.8\r\n\r\n";
    assert_eq!(s.request(junk).status, 200);
    let lines = json_lines(&log, 2);
    assert_eq!(client_scheme(&lines[0]), "203.0.113.7 http");
    assert_eq!(client_scheme(&lines[1]), "203.0.113.8 http");
}

#[test]
fn the_rfc7239_family_is_read_only_when_chosen_and_then_alone() {
    let (s, log) = logged_server("rfc", &["--forwarded-headers", "forwarded"]);
    let rfc = b"GET /plaintext HTTP/1.1\r\nHost: h\r\nForwarded: for=198.51.100.1;proto=https\r\n\r\n";
    assert_eq!(s.request(rfc).status, 200);
    let xff =
        b"GET /plaintext HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\n\r\n";
    assert_eq!(s.request(xff).status, 200);
    let lines = json_lines(&log, 2);
    assert_eq!(client_scheme(&lines[0]), "198.51.100.1 https");
    assert_eq!(client_scheme(&lines[1]), "127.0.0.1 http");
}

#[test]
fn a_proxy_header_counts_only_from_allowed_peers() {
    let (s, log) =
        logged_server("proxy-allow", &["--proxy-protocol", "v1", "--forwarded-allow-ips", "127.0.0.1"]);
    let hdr = b"PROXY TCP4 127.0.0.1 127.0.0.1 40000 80\r\n";
    let req = b"GET /plaintext HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 9.9.9.9\r\n\r\n";
    // From 127.0.0.2 (not in the default --proxy-allow-from): closed without a response, so
    // it can neither claim 127.0.0.1 nor get its X-Forwarded-For believed.
    let mut c = connect_from("127.0.0.2", s.addr);
    c.send(&cat(&[hdr, req]));
    assert!(
        c.try_response(false).is_none(),
        "a PROXY header from a peer outside --proxy-allow-from was served"
    );
    // From 127.0.0.1 (allowed) it is served, and the trusted source's header believed.
    let mut c = connect_from("127.0.0.1", s.addr);
    c.send(&cat(&[hdr, req]));
    assert_eq!(c.response().status, 200);
    assert_eq!(client_scheme(&json_lines(&log, 1)[0]), "9.9.9.9 http");
    // Without a PROXY header at all: refused as before.
    let mut c = s.client();
    c.send(b"GET /metrics HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(c.try_response(false).is_none(), "a connection without a PROXY header was served");
}

#[test]
fn an_allowed_load_balancer_vouches_only_for_the_source_it_names() {
    let (s, log) = logged_server("proxy-nlb", &["--proxy-protocol", "v1", "--proxy-allow-from", "127.0.0.2"]);
    // The NLB (127.0.0.2) says the client is 198.51.100.7; that client's own
    // X-Forwarded-For is not believed (198.51.100.7 is no trusted proxy).
    let mut c = connect_from("127.0.0.2", s.addr);
    c.send(b"PROXY TCP4 198.51.100.7 127.0.0.1 40000 80\r\nGET /plaintext HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 9.9.9.9\r\n\r\n");
    assert_eq!(c.response().status, 200);
    assert_eq!(client_scheme(&json_lines(&log, 1)[0]), "198.51.100.7 http");
    // 127.0.0.1 is not an allowed PROXY sender any more.
    let mut c = connect_from("127.0.0.1", s.addr);
    c.send(b"PROXY TCP4 198.51.100.7 127.0.0.1 40000 80\r\nGET /plaintext HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(c.try_response(false).is_none());
    let mut c = connect_from("127.0.0.2", s.addr);
    c.send(b"PROXY UNKNOWN\r\nGET /metrics HTTP/1.1\r\nHost: h\r\n\r\n");
    let m = c.response().text();
    let refused = m
        .lines()
        .find_map(|l| l.strip_prefix("percore_proxy_protocol_refused_total "))
        .expect("percore_proxy_protocol_refused_total in /metrics");
    assert_eq!(refused.trim(), "1", "{m}");
}

#[test]
fn a_refused_request_never_logs_an_earlier_forwarded_client() {
    let (s, log) = logged_server("stale", &["--limit-concurrency", "1", "--max-body-size", "10"]);
    let mut c = s.client();
    c.send(b"GET /plaintext HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 203.0.113.5\r\n\r\n");
    assert_eq!(c.response().status, 200);
    // The same connection, no forwarding headers: a 413 from the codec.
    c.send(b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n");
    assert_eq!(c.response().status, 413);
    let mut c = s.client();
    c.send(b"GET /plaintext HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 203.0.113.6\r\n\r\n");
    assert_eq!(c.response().status, 200);
    // The only concurrency slot taken: the same connection's next request gets a 503.
    let mut busy = s.client();
    busy.send(b"GET /delay?ms=1500 HTTP/1.1\r\nHost: h\r\n\r\n");
    std::thread::sleep(Duration::from_millis(300));
    c.send(b"GET /plaintext HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(c.response().status, 503);
    assert_eq!(busy.response().status, 200);
    let lines = json_lines(&log, 5);
    let refused: Vec<&String> = lines.iter().filter(|l| !l.contains("\"status\":200")).collect();
    assert_eq!(refused.len(), 2, "{lines:?}");
    for line in refused {
        assert_eq!(json_field(line, "client").unwrap(), "127.0.0.1", "{line}");
    }
}

#[test]
fn a_request_refused_after_its_request_line_is_logged_with_method_and_target() {
    let (s, log) = logged_server("refused-line", &["--max-body-size", "10"]);
    let mut c = s.client();
    c.send(b"POST /echo?big=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n");
    assert_eq!(c.response().status, 413);
    let line = json_lines(&log, 1).remove(0);
    assert_eq!(json_field(&line, "method").as_deref(), Some("POST"), "{line}");
    assert_eq!(json_field(&line, "target").as_deref(), Some("/echo?big=1"), "{line}");
    assert!(line.contains("\"status\":413"), "{line}");
}
