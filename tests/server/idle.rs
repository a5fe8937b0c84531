//! Idle keep-alive connections: after a short grace (250 ms) between requests the server
//! calls its read off and waits for readability holding no buffer. Whatever the client
//! sends around or after that moment must be answered as before, over TCP, TLS and Unix
//! sockets; the keep-alive timeout and the drain still close such a connection.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::{Duration, Instant};

use rcgen::KeyPair;

use crate::supervisor::expect_exit;
use crate::support::*;
use crate::tls::{server, tls_client, Pki};

/// Well past the server's idle grace: the connection waits for readability by now.
const PAST_GRACE: Duration = Duration::from_millis(600);

#[test]
fn requests_after_the_idle_grace_are_answered() {
    let s = ServerProc::start(&["--workers", "1"]);
    let mut c = s.client();
    for i in 0..3 {
        c.send(&get("/plaintext"));
        let r = c.response();
        assert_eq!((r.status, r.text().as_str()), (200, "Hello, World!"), "request {i}");
        thread::sleep(PAST_GRACE);
    }
    // Pipelined requests, and a body, sent to a connection that has gone idle.
    c.send(&cat(&[&get("/plaintext"), &post_echo(b"after idle"), &get("/health")]));
    assert_eq!(c.response().text(), "Hello, World!");
    assert_eq!(c.response().body, b"after idle");
    assert_eq!(c.response().status, 200);
    thread::sleep(PAST_GRACE);
    // A head split across two writes, the first after the grace.
    c.send(b"GET /plaintext HTTP/1.1\r\n");
    thread::sleep(Duration::from_millis(100));
    c.send(b"Host: x\r\n\r\n");
    assert_eq!(c.response().text(), "Hello, World!");
}

#[test]
fn requests_sent_as_the_read_is_called_off_are_never_lost() {
    let s = ServerProc::start(&["--workers", "1"]);
    let mut c = s.client();
    c.send(&get("/plaintext"));
    assert_eq!(c.response().status, 200);
    // Gaps around the 250 ms grace: some requests land just before the read is called off,
    // some while it is being called off, some just after. Each follows a wait past the
    // grace, after which the server reads the way that can be called off (a connection
    // whose waits are short reads the plain way, and that way is raced here too).
    for gap_ms in (200..=300).step_by(10) {
        thread::sleep(PAST_GRACE);
        c.send(&get("/plaintext"));
        assert_eq!(c.response().status, 200, "before a {gap_ms} ms gap");
        thread::sleep(Duration::from_millis(gap_ms));
        c.send(&cat(&[&get("/plaintext"), &post_echo(b"x")]));
        let r = c.response();
        assert_eq!((r.status, r.text().as_str()), (200, "Hello, World!"), "after a {gap_ms} ms gap");
        assert_eq!(c.response().body, b"x", "second request after a {gap_ms} ms gap");
    }
}

#[test]
fn idle_tls_connection_is_answered_after_the_grace() {
    let pki = Pki::new("idle");
    let cert = pki.server("server", "localhost", KeyPair::generate().unwrap());
    let s = server(&cert, &["--workers", "1"]);
    let mut c = tls_client(s.addr, &pki);
    for i in 0..2 {
        c.send(&get("/plaintext"));
        assert_eq!(c.response().text(), "Hello, World!", "request {i}");
        thread::sleep(PAST_GRACE);
    }
    c.send(&cat(&[&get("/plaintext"), &post_echo(b"tls after idle")]));
    assert_eq!(c.response().text(), "Hello, World!");
    assert_eq!(c.response().body, b"tls after idle");
    for gap_ms in (220..=280).step_by(10) {
        thread::sleep(Duration::from_millis(gap_ms));
        c.send(&get("/plaintext"));
        assert_eq!(c.response().text(), "Hello, World!", "after a {gap_ms} ms gap");
    }
    // A request whose TLS record arrives in two parts, the rest after the grace: the first
    // part at once (the read that can be called off gets it) or after the grace (the read
    // after the readiness wait gets it). The server waits for the rest and answers.
    for first_after in [Duration::ZERO, PAST_GRACE] {
        thread::sleep(first_after);
        c.stream.conn.writer().write_all(&get("/plaintext")).unwrap();
        let mut record = Vec::new();
        while c.stream.conn.wants_write() {
            c.stream.conn.write_tls(&mut record).unwrap();
        }
        let half = record.len() / 2;
        c.stream.sock.write_all(&record[..half]).unwrap();
        thread::sleep(PAST_GRACE);
        c.stream.sock.write_all(&record[half..]).unwrap();
        assert_eq!(c.response().text(), "Hello, World!", "a split record, first part after {first_after:?}");
    }
}

#[test]
fn idle_unix_socket_connection_is_answered_after_the_grace() {
    let dir = TempDir::new("idle");
    let path = dir.join("s.sock");
    let bind = format!("unix:{}", path.display());
    let _s = ServerProc::start(&["--workers", "1", "--bind", "127.0.0.1:0", "--bind", &bind]);
    let stream = UnixStream::connect(&path).expect("connect to the Unix socket");
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut c = Client::new(stream);
    for i in 0..2 {
        c.send(&get("/plaintext"));
        assert_eq!(c.response().text(), "Hello, World!", "request {i}");
        thread::sleep(PAST_GRACE);
    }
    c.send(&cat(&[&get("/plaintext"), &get("/plaintext")]));
    assert_eq!(c.response().text(), "Hello, World!");
    assert_eq!(c.response().text(), "Hello, World!");
}

#[test]
fn keep_alive_timeout_closes_a_connection_waiting_idle() {
    let s = ServerProc::start(&["--workers", "1", "--keep-alive", "2s"]);
    let mut c = s.client();
    c.send(&get("/plaintext"));
    assert_eq!(c.response().status, 200);
    let start = Instant::now();
    assert!(
        c.expect_closed(Duration::from_secs(5)),
        "idle connection not closed within 5 s (--keep-alive 2s)"
    );
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(1800), "idle connection closed after only {took:?}");
}

#[test]
fn drain_closes_a_connection_waiting_idle_and_answers_one_that_wakes() {
    let _turn = heavy();
    let mut s = ServerProc::start(&["--workers", "1", "--drain-delay", "0s", "--graceful-timeout", "5s"]);
    let mut idle = s.client();
    let mut wakes = s.client();
    for c in [&mut idle, &mut wakes] {
        c.send(&get("/plaintext"));
        assert_eq!(c.response().status, 200);
    }
    thread::sleep(PAST_GRACE);
    s.signal(libc::SIGTERM);
    // A request within the drain's grace is still answered, with `connection: close`.
    thread::sleep(Duration::from_millis(200));
    wakes.send(&get("/plaintext"));
    let r = wakes.response();
    assert_eq!(r.status, 200);
    assert!(r.closes(), "a response during the drain closes; headers {:?}", r.headers);
    assert!(
        idle.expect_closed(Duration::from_millis(1500)),
        "the idle connection was not closed within 1.5 s of SIGTERM; logs:\n{}",
        s.logs().join("\n")
    );
    drop((idle, wakes));
    let status = expect_exit(&mut s, Duration::from_secs(3), "after the idle connections closed");
    assert_eq!(status.code(), Some(0), "exit status; logs:\n{}", s.logs().join("\n"));
}

#[test]
fn part_of_a_tls_record_then_silence_is_closed_within_the_limits() {
    let pki = Pki::new("idle-part");
    let cert = pki.server("server", "localhost", KeyPair::generate().unwrap());
    let s = server(&cert, &["--workers", "1", "--keep-alive", "2s", "--header-timeout", "1s"]);
    let mut c = tls_client(s.addr, &pki);
    c.send(&get("/plaintext"));
    assert_eq!(c.response().text(), "Hello, World!");
    // Half a record, at once and never the rest: the server must not wait for it forever.
    c.stream.conn.writer().write_all(&get("/plaintext")).unwrap();
    let mut record = Vec::new();
    while c.stream.conn.wants_write() {
        c.stream.conn.write_tls(&mut record).unwrap();
    }
    c.stream.sock.write_all(&record[..record.len() / 2]).unwrap();
    c.stream.sock.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    let start = Instant::now();
    let mut b = [0u8; 4096];
    loop {
        match std::io::Read::read(&mut c.stream.sock, &mut b) {
            // A close_notify or an alert may come before the FIN.
            Ok(n) if n > 0 => continue,
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("still open {:?} after half a record ({e})", start.elapsed()),
        }
    }
}
