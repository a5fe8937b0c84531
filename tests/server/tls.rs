//! HTTPS: the real binary with `--certfile`/`--keyfile`, reached by a rustls client (and
//! curl, when installed). Certificates are made for each test by rcgen: a CA, a server
//! certificate for `localhost`/127.0.0.1 and a client certificate for mutual TLS.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, PKCS_ED25519,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::support::*;

pub(crate) type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A CA and what it signed, as PEM files in a directory of the test's own.
pub(crate) struct Pki {
    /// Removed, with every file issued into it, when the `Pki` is dropped.
    pub(crate) dir: TempDir,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

/// A certificate and its key, as DER (for the client) and as PEM files (for the server).
pub(crate) struct Issued {
    pub(crate) der: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    pub(crate) cert_path: PathBuf,
    pub(crate) key_path: PathBuf,
}

impl Pki {
    pub(crate) fn new(name: &str) -> Pki {
        let dir = TempDir::new(&format!("tls-{name}"));
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "percore test CA");
        let ca = params.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        Pki { dir, ca, ca_key }
    }

    pub(crate) fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A server certificate for localhost and 127.0.0.1 with subject `CN=cn`.
    pub(crate) fn server(&self, file: &str, cn: &str, key: KeyPair) -> Issued {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(file, params, key)
    }

    /// A client certificate with subject `CN=cn,O=Example`.
    fn client(&self, file: &str, cn: &str) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        // (Not rcgen's default subject: the most general part first, as CAs issue them.)
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::OrganizationName, "Example");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(file, params, KeyPair::generate().unwrap())
    }

    fn issue(&self, file: &str, params: CertificateParams, key: KeyPair) -> Issued {
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        let cert_path = self.dir.join(format!("{file}.pem"));
        let key_path = self.dir.join(format!("{file}.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        let key_der = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        Issued { der: cert.der().clone(), key: key_der, cert_path, key_path }
    }
}

/// Whether the file at `path` comes to contain `needle` within 5 s.
fn file_shows(path: &Path, needle: &str) -> bool {
    eventually(Duration::from_secs(5), || std::fs::read_to_string(path).unwrap_or_default().contains(needle))
}

pub(crate) fn ps(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Start a TLS server with `cert` and `extra` flags.
pub(crate) fn server(cert: &Issued, extra: &[&str]) -> ServerProc {
    let mut args = vec!["--certfile", ps(&cert.cert_path), "--keyfile", ps(&cert.key_path)];
    args.extend_from_slice(extra);
    ServerProc::start(&args)
}

pub(crate) fn client_config(
    pki: &Pki,
    versions: &[&'static rustls::SupportedProtocolVersion],
    me: Option<&Issued>,
) -> ClientConfig {
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca.der().clone()).unwrap();
    let builder = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match me {
        None => builder.with_no_client_auth(),
        Some(me) => builder.with_client_auth_cert(vec![me.der.clone()], me.key.clone_key()).unwrap(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

/// A TLS connection to `addr`, handshake done (`Err`: the handshake failed).
pub(crate) fn try_connect_with(addr: SocketAddr, config: ClientConfig) -> Result<Tls, std::io::Error> {
    let conn = ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap()).unwrap();
    let mut tls = StreamOwned::new(conn, connect(addr));
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

pub(crate) fn tls_client(addr: SocketAddr, pki: &Pki) -> Client<Tls> {
    Client::new(
        try_connect_with(addr, client_config(pki, rustls::DEFAULT_VERSIONS, None)).expect("TLS handshake"),
    )
}

/// The certificate the server presented on a new connection.
pub(crate) fn presented(addr: SocketAddr, pki: &Pki) -> CertificateDer<'static> {
    let tls =
        try_connect_with(addr, client_config(pki, rustls::DEFAULT_VERSIONS, None)).expect("TLS handshake");
    tls.conn.peer_certificates().unwrap()[0].clone().into_owned()
}

/// Whether a request over `tls` gets no HTTP response (the server refused the handshake,
/// which a TLS 1.3 client learns only on its first read).
pub(crate) fn refused(tls: Result<Tls, std::io::Error>) -> bool {
    let Ok(mut tls) = tls else { return true };
    if tls.write_all(&get("/plaintext")).and_then(|()| tls.flush()).is_err() {
        return true;
    }
    let mut b = [0u8; 64];
    !matches!(tls.read(&mut b), Ok(n) if n > 0)
}

#[test]
fn keep_alive_pipelining_and_chunked_both_ways() {
    let pki = Pki::new("basics");
    let cert = pki.server("server", "localhost", KeyPair::generate().unwrap());
    let s = server(&cert, &[]);
    let mut c = tls_client(s.addr, &pki);
    assert_eq!(c.stream.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    // Keep-alive: two requests, one connection.
    for _ in 0..2 {
        c.send(&get("/plaintext"));
        let r = c.response();
        assert_eq!((r.status, r.text().as_str()), (200, "Hello, World!"));
        assert!(!r.closes());
    }
    // Pipelining: three requests in one write.
    c.send(&cat(&[&get("/plaintext"), &post_echo(b"abc"), &get("/plaintext")]));
    assert_eq!(c.response().text(), "Hello, World!");
    assert_eq!(c.response().body, b"abc");
    assert_eq!(c.response().text(), "Hello, World!");
    // A chunked request body, and a chunked response larger than one TLS record.
    c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    assert_eq!(c.response().body, b"hello world");
    c.send(&get("/stream?chunks=40&size=4096"));
    let r = c.response();
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.body.len(), 40 * 4096);
    // A large request body, streamed to the handler.
    let big = vec![b'x'; 300 * 1024];
    c.send(&post_echo(&big));
    assert_eq!(c.response().body.len(), big.len());
}

/// Whatever a client sends, its executor goes on serving others: a bounded check that a
/// fresh TLS client on the one executor still gets its answer.
fn still_serves(s: &ServerProc, pki: &Pki) {
    let mut c = tls_client(s.addr, pki);
    c.send(&get("/plaintext"));
    assert_eq!(c.response().status, 200, "the executor serves on");
}

/// Bytes after the client's close_notify are ignored (RFC 8446 6.1); they used to be offered
/// to rustls again and again, which took none, and the executor's thread spun.
#[test]
fn bytes_after_close_notify_are_ignored() {
    let pki = Pki::new("after-close-notify");
    let cert = pki.server("server", "localhost", KeyPair::generate().unwrap());
    let s = server(&cert, &[]);
    let mut tls = try_connect_with(s.addr, client_config(&pki, rustls::DEFAULT_VERSIONS, None)).unwrap();
    tls.conn.writer().write_all(&get("/plaintext")).unwrap();
    tls.conn.send_close_notify();
    let mut wire = Vec::new();
    while tls.conn.wants_write() {
        tls.conn.write_tls(&mut wire).unwrap();
    }
    // More than rustls takes in one read (4 KiB), in the same write.
    wire.extend_from_slice(&[0u8; 5000]);
    tls.sock.write_all(&wire).unwrap();
    let mut rest = Vec::new();
    let _ = tls.sock.read_to_end(&mut rest);
    still_serves(&s, &pki);
}

/// A ClientHello larger than rustls joins (64 KiB, with its record headers) is refused and
/// the connection closed; it used to leave rustls's buffer full for good, and the executor's
/// thread spun offering it more.
#[test]
fn an_oversized_client_hello_is_refused() {
    let pki = Pki::new("oversized-hello");
    let cert = pki.server("server", "localhost", KeyPair::generate().unwrap());
    let s = server(&cert, &[]);
    let mut hello = vec![1u8, 0x00, 0xff, 0xff];
    hello.resize(4 + 0xffff, 0);
    let mut wire = Vec::new();
    for record in hello.chunks(16 * 1024) {
        wire.extend_from_slice(&[0x16, 0x03, 0x01]);
        wire.extend_from_slice(&(record.len() as u16).to_be_bytes());
        wire.extend_from_slice(record);
    }
    let mut raw = s.connect();
    // The server may close before it has read it all: a reset here is an answer too.
    let _ = raw.write_all(&wire);
    let mut answer = Vec::new();
    let closed = raw.read_to_end(&mut answer);
    assert!(
        !matches!(&closed, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "no close within the read timeout"
    );
    still_serves(&s, &pki);
}

#[test]
fn the_scheme_is_https_and_plain_addresses_stay_plain() {
    let pki = Pki::new("scheme");
    let cert = pki.server("server", "localhost", KeyPair::generate().unwrap());
    let plain_port = free_port();
    let plain = format!("http:127.0.0.1:{plain_port}");
    let log = pki.dir.join("access.log");
    let s = server(
        &cert,
        &["--bind", "127.0.0.1:0", "--bind", &plain, "--access-log", ps(&log), "--access-log-format", "json"],
    );
    let mut c = tls_client(s.addr, &pki);
    c.send(&get("/plaintext"));
    assert_eq!(c.response().status, 200);
    // The plain address answers plain HTTP.
    let plain_addr: SocketAddr = format!("127.0.0.1:{plain_port}").parse().unwrap();
    let r = Client::new(connect(plain_addr)).tap_request(&get("/plaintext"));
    assert_eq!(r.status, 200);
    assert!(file_shows(&log, "\"scheme\":\"https\""));
    assert!(file_shows(&log, "\"scheme\":\"http\""));
}

trait TapRequest {
    fn tap_request(self, raw: &[u8]) -> Response;
}

impl<S: Read + Write> TapRequest for Client<S> {
    fn tap_request(mut self, raw: &[u8]) -> Response {
        self.send(raw);
        self.response()
    }
}

#[test]
fn plain_http_to_the_tls_port_gets_400_and_a_close() {
    let pki = Pki::new("plain");
    let cert = pki.server("server", "localhost", KeyPair::generate().unwrap());
    let s = server(&cert, &[]);
    let mut c = s.client();
    c.send(&get("/plaintext"));
    let r = c.response();
    assert_eq!(r.status, 400);
    assert!(r.text().contains("HTTPS"), "{}", r.text());
    assert!(r.closes());
    assert!(c.expect_closed(Duration::from_secs(5)));
    // Counted as a failed handshake, and TLS still works.
    let mut c = tls_client(s.addr, &pki);
    c.send(&get("/metrics"));
    let metrics = c.response().text();
    assert!(metrics.contains("percore_tls_handshake_failures_total 1"), "{metrics}");
    assert!(!s.logs().iter().any(|l| l.contains("\"ERROR\"") || l.contains("\"WARN\"")), "{:?}", s.logs());
}

#[test]
fn mutual_tls_accepts_a_signed_client_and_refuses_others() {
    let pki = Pki::new("mtls");
    let cert = pki.server("server", "localhost", KeyPair::generate().unwrap());
    let alice = pki.client("alice", "alice");
    let ca = pki.ca_path();
    let log = pki.dir.join("access.log");
    let s = server(
        &cert,
        &[
            "--ca-certs",
            ps(&ca),
            "--cert-reqs",
            "required",
            "--access-log",
            ps(&log),
            "--access-log-format",
            "json",
        ],
    );
    let tls = try_connect_with(s.addr, client_config(&pki, rustls::DEFAULT_VERSIONS, Some(&alice))).unwrap();
    let mut c = Client::new(tls);
    c.send(&get("/plaintext"));
    assert_eq!(c.response().status, 200);
    // The verified subject reaches the access log (and `Request::client_cert_subject`).
    assert!(
        file_shows(&log, "\"client_cert\":\"CN=alice,O=Example\""),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    // No certificate: refused in the handshake.
    assert!(refused(try_connect_with(s.addr, client_config(&pki, rustls::DEFAULT_VERSIONS, None))));
    // A certificate from another CA: refused too.
    let other = Pki::new("mtls-other");
    let mallory = other.client("mallory", "mallory");
    // (The client trusts the server's CA, but its own certificate is signed by another.)
    assert!(refused(try_connect_with(s.addr, client_config(&pki, rustls::DEFAULT_VERSIONS, Some(&mallory)))));

    let mut c = Client::new(
        try_connect_with(s.addr, client_config(&pki, rustls::DEFAULT_VERSIONS, Some(&alice))).unwrap(),
    );
    c.send(&get("/metrics"));
    let metrics = c.response().text();
    assert!(metrics.contains("percore_tls_handshake_failures_total 2"), "{metrics}");
}

#[test]
fn optional_client_certificates_serve_clients_without_one() {
    let pki = Pki::new("optional");
    let cert = pki.server("server", "localhost", KeyPair::generate().unwrap());
    let ca = pki.ca_path();
    let s = server(&cert, &["--ca-certs", ps(&ca), "--cert-reqs", "optional"]);
    let r = tls_client(s.addr, &pki).tap_request(&get("/plaintext"));
    assert_eq!(r.status, 200);
}

#[test]
fn tls_1_2_is_refused_when_the_minimum_is_1_3() {
    let pki = Pki::new("versions");
    let cert = pki.server("server", "localhost", KeyPair::generate().unwrap());
    let s = server(&cert, &["--tls-min-version", "1.3"]);
    assert!(refused(try_connect_with(s.addr, client_config(&pki, &[&rustls::version::TLS12], None))));
    let tls = try_connect_with(s.addr, client_config(&pki, &[&rustls::version::TLS13], None)).unwrap();
    assert_eq!(tls.conn.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
    // And the default minimum, 1.2, serves a 1.2 client (Ed25519 server key).
    let ed = pki.server("ed25519", "localhost", KeyPair::generate_for(&PKCS_ED25519).unwrap());
    let s12 = server(&ed, &[]);
    let tls = try_connect_with(s12.addr, client_config(&pki, &[&rustls::version::TLS12], None)).unwrap();
    assert_eq!(tls.conn.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
    assert_eq!(Client::new(tls).tap_request(&get("/plaintext")).status, 200);
}

#[test]
fn sighup_reloads_the_certificate_and_refuses_a_bad_pair() {
    let pki = Pki::new("reload");
    let first = pki.server("server", "first", KeyPair::generate().unwrap());
    let mut s = server(&first, &[]);
    assert_eq!(presented(s.addr, &pki), first.der);
    // A connection open across the reload keeps working.
    let mut open = tls_client(s.addr, &pki);
    open.send(&get("/plaintext"));
    assert_eq!(open.response().status, 200);

    // New files at the same paths; SIGHUP; new handshakes get the new certificate.
    let second = pki.server("second", "second", KeyPair::generate().unwrap());
    std::fs::copy(&second.cert_path, &first.cert_path).unwrap();
    std::fs::copy(&second.key_path, &first.key_path).unwrap();
    s.signal(libc::SIGHUP);
    assert!(s.wait_log("reload done", Duration::from_secs(15)), "{:?}", s.logs());
    assert_eq!(presented(s.addr, &pki), second.der);
    open.send(&get("/plaintext"));
    assert_eq!(open.response().status, 200);

    // A key that is not the certificate's: refused with one error line; the second serves on.
    let third = pki.server("third", "third", KeyPair::generate().unwrap());
    std::fs::copy(&third.cert_path, &first.cert_path).unwrap();
    s.signal(libc::SIGHUP);
    assert!(s.wait_log_count("reload done", 2, Duration::from_secs(15)), "{:?}", s.logs());
    assert_eq!(s.log_count("new TLS certificate refused"), 1, "{:?}", s.logs());
    assert_eq!(presented(s.addr, &pki), second.der);
    // An unreadable one too.
    std::fs::remove_file(&first.key_path).unwrap();
    s.signal(libc::SIGHUP);
    assert!(s.wait_log_count("reload done", 3, Duration::from_secs(15)), "{:?}", s.logs());
    assert_eq!(s.log_count("new TLS certificate refused"), 2, "{:?}", s.logs());
    let r = tls_client(s.addr, &pki).tap_request(&get("/plaintext"));
    assert_eq!(r.status, 200);
}

#[test]
fn check_config_validates_the_files() {
    let pki = Pki::new("check");
    let cert = pki.server("server", "localhost", KeyPair::generate().unwrap());
    let other = pki.server("other", "other", KeyPair::generate().unwrap());
    let run = |cert: &Path, key: &Path| {
        let mut cmd = Command::new(bin());
        cmd.args(["check-config", "--port", "0", "--certfile", ps(cert), "--keyfile", ps(key)]);
        run_to_exit(cmd, Duration::from_secs(20))
    };
    let (status, _) = run(&cert.cert_path, &cert.key_path);
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    let (status, err) = run(&cert.cert_path, &other.key_path);
    assert_eq!(status.and_then(|s| s.code()), Some(2), "{err}");
    assert!(err.contains("does not go with --certfile"), "{err}");
    let (status, err) = run(&cert.cert_path, &pki.dir.join("missing.key"));
    assert_eq!(status.and_then(|s| s.code()), Some(2), "{err}");
    assert!(err.contains("missing.key: cannot read"), "{err}");
}

/// RSA (PKCS#1) and EC (SEC1) keys as `openssl` writes them (skipped without openssl).
#[test]
fn pkcs1_and_sec1_keys_from_openssl() {
    if !on_path("openssl") {
        eprintln!("note: openssl not on PATH; skipping");
        return;
    }
    let pki = Pki::new("openssl");
    for (name, genkey) in [
        ("rsa", vec!["genrsa", "-traditional", "-out"]),
        ("ec", vec!["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out"]),
    ] {
        let key = pki.dir.join(format!("{name}.key"));
        let cert = pki.dir.join(format!("{name}.pem"));
        let ok = Command::new("openssl").args(&genkey).arg(&key).output().unwrap().status.success();
        assert!(ok, "openssl {genkey:?}");
        let ok = Command::new("openssl")
            .args(["req", "-new", "-x509", "-days", "1", "-subj", "/CN=localhost"])
            .args([
                "-addext",
                "subjectAltName=DNS:localhost",
                "-addext",
                "basicConstraints=critical,CA:FALSE",
                "-key",
            ])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .unwrap()
            .status
            .success();
        assert!(ok, "openssl req");
        let pem = std::fs::read_to_string(&key).unwrap();
        let wanted = if name == "rsa" { "BEGIN RSA PRIVATE KEY" } else { "BEGIN EC PRIVATE KEY" };
        assert!(pem.contains(wanted), "{pem}");
        let s = ServerProc::start(&["--certfile", ps(&cert), "--keyfile", ps(&key)]);
        let der = CertificateDer::from_pem_file(&cert).unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(der).unwrap();
        let config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let r = Client::new(try_connect_with(s.addr, config).expect(name)).tap_request(&get("/plaintext"));
        assert_eq!(r.status, 200, "{name}");
    }
}

/// `curl --cacert` (skipped without curl).
#[test]
fn curl_with_cacert() {
    if !on_path("curl") {
        eprintln!("note: curl not on PATH; skipping");
        return;
    }
    let pki = Pki::new("curl");
    let cert = pki.server("server", "localhost", KeyPair::generate().unwrap());
    let s = server(&cert, &[]);
    let url = format!("https://localhost:{}/echo", s.addr.port());
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert", ps(&pki.ca_path()), "--resolve"])
        .arg(format!("localhost:{}:127.0.0.1", s.addr.port()))
        .args(["--data-binary", "over tls", &url])
        .output()
        .unwrap();
    assert!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, b"over tls");
}

/// Session tickets are on, and a ticket from one executor resumes on another (one ticket
/// key set for all).
#[test]
fn sessions_resume_across_executors() {
    let pki = Pki::new("resume");
    let cert = pki.server("server", "localhost", KeyPair::generate().unwrap());
    let s = server(&cert, &["--workers", "2"]);
    let config = client_config(&pki, rustls::DEFAULT_VERSIONS, None);
    let mut kinds = Vec::new();
    for _ in 0..8 {
        let tls = try_connect_with(s.addr, config.clone()).expect("TLS handshake");
        kinds.push(tls.conn.handshake_kind());
        // A response read after the handshake brings the ticket along.
        assert_eq!(Client::new(tls).tap_request(&get("/plaintext")).status, 200);
    }
    assert_eq!(kinds[0], Some(rustls::HandshakeKind::Full));
    assert!(kinds[1..].iter().all(|k| *k == Some(rustls::HandshakeKind::Resumed)), "{kinds:?}");
}

#[test]
fn websockets_over_tls_echo_and_close_cleanly() {
    let pki = Pki::new("websocket");
    let cert = pki.server("server", "localhost", KeyPair::generate().unwrap());
    let s = server(&cert, &["--ws-ping-interval", "0"]);
    let tls =
        try_connect_with(s.addr, client_config(&pki, rustls::DEFAULT_VERSIONS, None)).expect("TLS handshake");
    let (mut ws, response) = tungstenite::client("wss://localhost/ws", tls).expect("WebSocket handshake");
    assert_eq!(response.status(), 101);
    let big: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
    ws.send(tungstenite::Message::text("over TLS")).unwrap();
    ws.send(tungstenite::Message::binary(big.clone())).unwrap();
    assert_eq!(ws.read().unwrap(), tungstenite::Message::text("over TLS"));
    assert_eq!(ws.read().unwrap(), tungstenite::Message::binary(big));
    ws.close(None).unwrap();
    loop {
        match ws.read() {
            Ok(tungstenite::Message::Close(_)) => {}
            Ok(other) => panic!("unexpected {other:?}"),
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("unclean close over TLS: {e}"),
        }
    }
}
