//! HTTPS under operations: the request limits and timeouts hold over TLS (a slow or silent
//! handshake included), the old protocol versions are refused (checked with `openssl
//! s_client` when installed), and a certificate reload under continuous load fails no
//! request while new handshakes get the new certificate.

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rcgen::KeyPair;
use rustls::pki_types::CertificateDer;
use rustls::ClientConfig;

use crate::supervisor::read_response;
use crate::support::*;
use crate::tls::{client_config, presented, ps, server, tls_client, try_connect_with, Issued, Pki, Tls};

/// Whether the server ends the TLS connection (close_notify, EOF or reset) within
/// `within` without sending any more plaintext.
fn tls_closes(c: &mut Client<Tls>, within: Duration) -> bool {
    assert!(c.pending().is_empty(), "unexpected bytes: {:?}", String::from_utf8_lossy(c.pending()));
    c.stream.sock.set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 1024];
    match c.stream.read(&mut b) {
        Ok(0) => true,
        Ok(n) => panic!("unexpected bytes: {:?}", String::from_utf8_lossy(&b[..n])),
        // Closed without close_notify, or reset: closed all the same.
        Err(e) if matches!(e.kind(), ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset) => true,
        Err(_) => false,
    }
}

/// A raw TCP connection that sends nothing: how long until the server closes it (`None`:
/// still open after `limit`), and how many bytes it sent meanwhile.
fn time_to_close(s: &mut std::net::TcpStream, limit: Duration) -> (Option<Duration>, usize) {
    let start = Instant::now();
    let mut got = 0;
    let mut b = [0u8; 1024];
    loop {
        let left = limit.saturating_sub(start.elapsed());
        if left.is_zero() {
            return (None, got);
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut b) {
            Ok(0) => return (Some(start.elapsed()), got),
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (Some(start.elapsed()), got),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// The bytes of a real ClientHello for `localhost`, as a TLS client sends them first.
fn client_hello(pki: &Pki) -> Vec<u8> {
    let config = client_config(pki, rustls::DEFAULT_VERSIONS, None);
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).unwrap();
    }
    assert_eq!(hello[0], 0x16, "a handshake record");
    hello
}

fn new_server(name: &str, extra: &[&str]) -> (Pki, Issued, ServerProc) {
    let pki = Pki::new(name);
    let cert = pki.server("server", "localhost", KeyPair::generate().unwrap());
    let s = server(&cert, extra);
    (pki, cert, s)
}

#[test]
fn oversize_header_is_431_and_oversize_body_413_over_tls() {
    let (pki, _cert, s) = new_server("limits", &["--max-body-size", "1KiB"]);
    // One header field over --max-header-size (8 KiB).
    let mut c = tls_client(s.addr, &pki);
    c.send(format!("GET /plaintext HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(9000)).as_bytes());
    let r = c.response();
    assert_eq!(r.status, 431, "{}", r.text());
    assert!(r.closes(), "{:?}", r.headers);
    assert!(tls_closes(&mut c, Duration::from_secs(5)), "closes after 431");
    // A Content-Length over --max-body-size: refused from the head, body unread.
    let mut c = tls_client(s.addr, &pki);
    c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.closes(), "{:?}", r.headers);
    assert!(tls_closes(&mut c, Duration::from_secs(5)), "closes after 413");
    // A chunked body that grows past it while streamed.
    let mut c = tls_client(s.addr, &pki);
    let raw = chunked_echo_of_2_kib();
    c.send(&raw);
    assert_eq!(c.response().status, 413);
    // Exactly the limit is served.
    let resp = tls_client(s.addr, &pki).tap(&post_echo(&[b'q'; 1024]));
    assert_eq!((resp.status, resp.body.len()), (200, 1024));
}

#[test]
fn idle_keep_alive_tls_connection_is_closed() {
    let (pki, _cert, s) = new_server("idle", &["--keep-alive", "1s"]);
    let mut c = tls_client(s.addr, &pki);
    c.send(&get("/plaintext"));
    assert_eq!(c.response().status, 200);
    let start = Instant::now();
    assert!(tls_closes(&mut c, Duration::from_secs(4)), "idle TLS connection still open after 4 s");
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(900), "closed after only {took:?} (--keep-alive 1s)");
}

#[test]
fn silent_tls_client_is_closed_at_header_timeout() {
    let (_pki, _cert, s) = new_server("silent", &["--header-timeout", "1s"]);
    // Connects and sends nothing: no ClientHello ever comes.
    let mut raw = s.connect();
    let (took, bytes) = time_to_close(&mut raw, Duration::from_secs(5));
    let took = took.expect("a silent connection to the TLS port is still open after 5 s");
    assert!(took >= Duration::from_millis(900), "closed after only {took:?}");
    assert!(took < Duration::from_secs(4), "closed after {took:?} (--header-timeout 1s)");
    assert_eq!(bytes, 0, "nothing is owed to a client that said nothing");
}

#[test]
fn half_a_client_hello_is_closed_at_header_timeout() {
    let (pki, _cert, s) = new_server("slowhello", &["--header-timeout", "1s"]);
    let hello = client_hello(&pki);
    // Half the ClientHello at once: the server waits for the rest, but not for ever.
    let mut raw = s.connect();
    raw.write_all(&hello[..hello.len() / 2]).unwrap();
    let (took, _) = time_to_close(&mut raw, Duration::from_secs(5));
    let took = took.expect("a half ClientHello is still open after 5 s");
    assert!(took >= Duration::from_millis(900), "closed after only {took:?}");
    assert!(took < Duration::from_secs(4), "closed after {took:?} (--header-timeout 1s)");

    // The other half trickled one byte every 100 ms: each byte is progress, but the
    // deadline is the connection's, not the byte's.
    let mut raw = s.connect();
    let mut w = raw.try_clone().unwrap();
    let rest = hello[hello.len() / 2..].to_vec();
    raw.write_all(&hello[..hello.len() / 2]).unwrap();
    let trickle = thread::spawn(move || {
        for b in rest.iter().take(40) {
            if w.write_all(&[*b]).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
    });
    let (took, _) = time_to_close(&mut raw, Duration::from_secs(6));
    trickle.join().unwrap();
    let took = took.expect("a trickled ClientHello is still open after 6 s");
    assert!(took < Duration::from_millis(2500), "trickled ClientHello cut off only after {took:?}");

    // And the server still serves.
    let r = tls_client(s.addr, &pki).tap(&get("/plaintext"));
    assert_eq!(r.status, 200);
}

/// `openssl s_client` with `args` against `addr`; (exit success, stdout + stderr).
fn s_client(addr: SocketAddr, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &addr.to_string(), "-servername", "localhost"]).args(args);
    let out = cmd.stdin(std::process::Stdio::null()).output().expect("run openssl s_client");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn tls_1_0_and_1_1_are_refused_by_the_server() {
    if !on_path("openssl") {
        eprintln!("note: openssl not on PATH; skipping (TLS 1.0/1.1 refusal not checked)");
        return;
    }
    let (_pki, _cert, s) = new_server("old", &[]);
    // SECLEVEL=0: this OpenSSL's own policy refuses to speak TLS 1.0/1.1 at all; lowered,
    // the ClientHello goes out, and only the server can refuse it.
    let lowered = "DEFAULT@SECLEVEL=0";
    // The control: the same client, for TLS 1.2, is served.
    let (ok, out) = s_client(s.addr, &["-tls1_2", "-cipher", lowered]);
    assert!(ok && out.contains("TLSv1.2"), "openssl s_client -tls1_2 must succeed:\n{out}");
    for flag in ["-tls1", "-tls1_1"] {
        let (ok, out) = s_client(s.addr, &[flag, "-cipher", lowered]);
        assert!(!ok, "openssl s_client {flag} must fail:\n{out}");
        // The server's alert (rustls sends handshake_failure, 40, for a hello it cannot
        // serve), not a client that never tried.
        assert!(
            out.contains("alert handshake failure") || out.contains("alert protocol version"),
            "openssl s_client {flag}: no alert from the server:\n{out}"
        );
        assert!(!out.contains("no protocols available"), "this openssl did not offer {flag}:\n{out}");
    }
}

// ----------------------------------------------------------------------------------------
// Certificate reload under load.

/// What the load saw.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    /// The first few failures, described.
    detail: Mutex<Vec<String>>,
    /// Handshakes that presented each certificate (index in the `certs` given to the load).
    saw: [AtomicU64; 2],
}

impl Tally {
    fn fail(&self, why: String) {
        self.failed.fetch_add(1, Ordering::SeqCst);
        let mut d = self.detail.lock().unwrap();
        if d.len() < 10 {
            d.push(why);
        }
    }
}

struct TlsLoad {
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
    threads: Vec<JoinHandle<()>>,
}

impl TlsLoad {
    /// `keep_alive` clients reuse their connection (a new one after `connection: close`),
    /// `fresh` clients make a new connection, with a full handshake, for every request.
    fn start(
        addr: SocketAddr,
        config: ClientConfig,
        certs: [CertificateDer<'static>; 2],
        keep_alive: usize,
        fresh: usize,
    ) -> TlsLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Tally::default());
        let certs = Arc::new(certs);
        let threads = (0..keep_alive + fresh)
            .map(|i| {
                let (stop, tally, certs, config) =
                    (stop.clone(), tally.clone(), certs.clone(), config.clone());
                let reuse = i < keep_alive;
                thread::spawn(move || load_client(addr, config, &certs, reuse, &stop, &tally))
            })
            .collect();
        TlsLoad { stop, tally, threads }
    }

    fn ok(&self) -> u64 {
        self.tally.ok.load(Ordering::SeqCst)
    }

    #[track_caller]
    fn expect_progress(&self, n: u64, context: &str) {
        let base = self.ok();
        assert!(
            eventually(Duration::from_secs(10), || self.ok() >= base + n),
            "{context}: the load made only {} requests in 10 s",
            self.ok() - base
        );
    }

    fn finish(self) -> Arc<Tally> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().expect("load client panicked");
        }
        self.tally
    }
}

fn load_client(
    addr: SocketAddr,
    config: ClientConfig,
    certs: &[CertificateDer<'static>; 2],
    reuse: bool,
    stop: &AtomicBool,
    tally: &Tally,
) {
    // Every new connection's handshake is full: no resumption, so each one shows the
    // certificate in force.
    let mut config = config;
    config.resumption = rustls::client::Resumption::disabled();
    let config = Arc::new(config);
    let request: &[u8] = if reuse {
        b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n"
    } else {
        b"GET /plaintext HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    };
    while !stop.load(Ordering::SeqCst) {
        let mut tls = match try_connect_with(addr, (*config).clone()) {
            Ok(tls) => tls,
            Err(e) => {
                tally.fail(format!("handshake failed: {e}"));
                continue;
            }
        };
        let presented = &tls.conn.peer_certificates().expect("a certificate")[0];
        match certs.iter().position(|c| c == presented) {
            Some(i) => _ = tally.saw[i].fetch_add(1, Ordering::SeqCst),
            None => tally.fail("an unknown certificate was presented".into()),
        }
        let mut buf = Vec::new();
        loop {
            if let Err(e) = tls.write_all(request).and_then(|()| tls.flush()) {
                tally.fail(format!("write failed: {e}"));
                break;
            }
            let closed = match read_response(&mut tls, &mut buf) {
                Ok(r) if r.status == 200 => {
                    tally.ok.fetch_add(1, Ordering::SeqCst);
                    r.close
                }
                Ok(r) => {
                    tally.fail(format!("status {}", r.status));
                    r.close
                }
                Err(e) => {
                    tally.fail(e);
                    true
                }
            };
            // A connection on a retiring executor ends with `connection: close`; the
            // client moves to a new one, as any HTTP client does.
            if closed || !reuse || stop.load(Ordering::SeqCst) {
                break;
            }
        }
    }
}

#[test]
fn certificate_reload_under_load_fails_no_request() {
    let _turn = heavy();
    let pki = Pki::new("reload-load");
    let first = pki.server("first", "first", KeyPair::generate().unwrap());
    let second = pki.server("second", "second", KeyPair::generate().unwrap());
    // The server reads its certificate from these paths; the test swaps their contents.
    let live_cert = pki.dir.join("live.pem");
    let live_key = pki.dir.join("live.key");
    let install = |which: &Issued| {
        // Written aside and renamed in, as certbot swaps its symlinks: never half a file.
        std::fs::copy(&which.cert_path, pki.dir.join("next.pem")).unwrap();
        std::fs::copy(&which.key_path, pki.dir.join("next.key")).unwrap();
        std::fs::rename(pki.dir.join("next.pem"), &live_cert).unwrap();
        std::fs::rename(pki.dir.join("next.key"), &live_key).unwrap();
    };
    install(&first);
    let mut s = ServerProc::start(&[
        "--certfile",
        ps(&live_cert),
        "--keyfile",
        ps(&live_key),
        "--workers",
        "2",
        "--graceful-timeout",
        "5s",
    ]);
    let config = client_config(&pki, rustls::DEFAULT_VERSIONS, None);
    let load = TlsLoad::start(s.addr, config, [first.der.clone(), second.der.clone()], 2, 2);
    load.expect_progress(50, "before the first reload");
    for (round, next) in [&second, &first, &second].into_iter().enumerate() {
        install(next);
        s.signal(libc::SIGHUP);
        assert!(
            s.wait_log_count("reload done", round + 1, Duration::from_secs(20)),
            "reload {round} did not finish: {:?}",
            s.logs()
        );
        assert_eq!(
            presented(s.addr, &pki),
            next.der,
            "reload {round}: a new handshake gets the new certificate"
        );
        load.expect_progress(50, &format!("after reload {round}"));
    }
    let tally = load.finish();
    let (ok, failed) = (tally.ok.load(Ordering::SeqCst), tally.failed.load(Ordering::SeqCst));
    let saw = [tally.saw[0].load(Ordering::SeqCst), tally.saw[1].load(Ordering::SeqCst)];
    eprintln!("certificate reload under load: ok {ok}, failed {failed}, handshakes per certificate {saw:?}");
    assert_eq!(failed, 0, "requests failed across the reloads: {:?}", tally.detail.lock().unwrap());
    assert!(ok >= 200, "the load ran: {ok}");
    assert!(saw[0] > 0 && saw[1] > 0, "the load's handshakes saw both certificates: {saw:?}");
    assert_eq!(s.log_count("new TLS certificate refused"), 0, "{:?}", s.logs());
}

trait Tap {
    fn tap(self, raw: &[u8]) -> Response;
}

impl<S: Read + Write> Tap for Client<S> {
    fn tap(mut self, raw: &[u8]) -> Response {
        self.send(raw);
        self.response()
    }
}

/// `certfile` and `keyfile` from `--config` (each needs the other: read together).
#[test]
fn tls_from_the_config_file() {
    let pki = Pki::new("config-file");
    let cert = pki.server("server", "localhost", KeyPair::generate().unwrap());
    let file = pki.dir.join("percore.toml");
    std::fs::write(
        &file,
        format!(
            "certfile = \"{}\"\nkeyfile = \"{}\"\ntls-min-version = \"1.2\"\n",
            cert.cert_path.display(),
            cert.key_path.display()
        ),
    )
    .unwrap();
    let s = ServerProc::start(&["--config", ps(&file)]);
    assert_eq!(presented(s.addr, &pki), cert.der);
    assert_eq!(tls_client(s.addr, &pki).tap(&get("/plaintext")).status, 200);
}
