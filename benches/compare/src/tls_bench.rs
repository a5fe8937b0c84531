//! `compare tls`: HTTPS side by side, one run, the same certificate (ECDSA P-256, made by
//! rcgen) for every server, each pinned to the same server cores:
//!
//! - keep-alive `/plaintext` over TLS (wrk, `https://`): requests/s, server CPU-seconds per
//!   million requests, p99;
//! - new TLS connections per second, full handshakes and resumed ones (TLS 1.3 session
//!   tickets), from a rustls client in this process: each connection does its handshake,
//!   one `GET /plaintext` with `Connection: close`, and reads to the end. Server CPU per
//!   handshake in milliseconds.
//!
//! Servers: percore (monoio and tokio), hyper 1.x over tokio-rustls on a tokio multi-thread
//! runtime (`hyper-mt-rustls`, the reference), nginx (OpenSSL) when installed.
//!
//! ```sh
//! cargo build --release
//! cargo run --release --manifest-path benches/compare/Cargo.toml -- tls --server-cpus 0 --client-cpus 1
//! ```
//!
//! The handshake client checks nothing about the certificate (a verifier that accepts any):
//! what is measured is the server's work, and the client's core should not be the limit.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, HandshakeKind, SignatureScheme, StreamOwned,
};

use crate::procfs;
use crate::wrk::WrkRun;

struct Options {
    server_cpus: Vec<usize>,
    client_cpus: Vec<usize>,
    duration_s: f64,
    rounds: usize,
    connections: usize,
    handshake_clients: usize,
    percore: PathBuf,
    out: PathBuf,
}

const HELP: &str = "compare tls [--server-cpus 0] [--client-cpus 1] [--duration 5] [--rounds 3] \
                    [--connections 64] [--handshake-clients 32] [--percore target/release/percore] [--out DIR]";

fn parse(args: &[String]) -> Result<Options, String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut o = Options {
        server_cpus: vec![0],
        client_cpus: vec![1],
        duration_s: 5.0,
        rounds: 3,
        connections: 64,
        handshake_clients: 32,
        percore: root.join("target/release/percore"),
        out: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results"),
    };
    let cpus = |v: &str| -> Result<Vec<usize>, String> {
        v.split(',').map(|c| c.trim().parse().map_err(|_| format!("bad cpu list {v:?}"))).collect()
    };
    let mut i = 0;
    while i < args.len() {
        let v = args.get(i + 1).ok_or_else(|| format!("{} needs a value; {HELP}", args[i]))?;
        match args[i].as_str() {
            "--server-cpus" => o.server_cpus = cpus(v)?,
            "--client-cpus" => o.client_cpus = cpus(v)?,
            "--duration" => o.duration_s = v.parse().map_err(|_| "bad --duration".to_string())?,
            "--rounds" => o.rounds = v.parse().map_err(|_| "bad --rounds".to_string())?,
            "--connections" => o.connections = v.parse().map_err(|_| "bad --connections".to_string())?,
            "--handshake-clients" => {
                o.handshake_clients = v.parse().map_err(|_| "bad --handshake-clients".to_string())?
            }
            "--percore" => o.percore = PathBuf::from(v),
            "--out" => o.out = PathBuf::from(v),
            other => return Err(format!("unknown option {other}; {HELP}")),
        }
        i += 2;
    }
    Ok(o)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    PercoreMonoio,
    PercoreTokio,
    HyperMtRustls,
    Nginx,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::PercoreMonoio => "percore-monoio",
            Kind::PercoreTokio => "percore-tokio",
            Kind::HyperMtRustls => "hyper-mt-rustls",
            Kind::Nginx => "nginx",
        }
    }
}

struct Server {
    kind: Kind,
    child: Child,
    port: u16,
}

impl Server {
    fn pids(&self) -> Vec<u32> {
        procfs::tree(self.child.id())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pids = self.pids();
        // percore: SIGQUIT stops at once (SIGTERM would drain); nginx and hyper: SIGTERM.
        let percore = matches!(self.kind, Kind::PercoreMonoio | Kind::PercoreTokio);
        procfs::send_signal(self.child.id(), if percore { libc::SIGQUIT } else { libc::SIGTERM });
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && !matches!(self.child.try_wait(), Ok(Some(_))) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for p in pids.into_iter().skip(1) {
            if Path::new(&format!("/proc/{p}")).exists() {
                procfs::send_signal(p, libc::SIGKILL);
            }
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(18443)
}

fn start(kind: Kind, o: &Options, me: &Path, dir: &Path, cert: &Path, key: &Path) -> Result<Server, String> {
    let list = procfs::cpu_list(&o.server_cpus);
    let n = o.server_cpus.len().to_string();
    let port = free_port();
    let log = std::fs::File::create(dir.join(format!("{}.log", kind.name()))).map_err(|e| e.to_string())?;
    let mut cmd = Command::new("taskset");
    cmd.arg("-c").arg(&list);
    match kind {
        Kind::PercoreMonoio | Kind::PercoreTokio => {
            let runtime = if kind == Kind::PercoreMonoio { "monoio" } else { "tokio" };
            cmd.arg(&o.percore)
                .args(["--runtime", runtime, "--io-backend", "auto", "--workers", &n, "--cpus", &list])
                .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--log-level", "warn"])
                .arg("--certfile")
                .arg(cert)
                .arg("--keyfile")
                .arg(key);
        }
        Kind::HyperMtRustls => {
            cmd.arg(me).args(["serve-hyper-tls", "--threads", &n, "--port", &port.to_string(), "--cert"]);
            cmd.arg(cert).arg("--key").arg(key);
        }
        Kind::Nginx => {
            let nginx = crate::servers::find_nginx().ok_or("nginx not installed")?;
            crate::servers::nginx_command(
                &mut cmd,
                &nginx,
                &dir.join("nginx"),
                o.server_cpus.len(),
                port,
                Some((cert, key)),
            )?;
        }
    }
    cmd.stdin(Stdio::null()).stdout(log.try_clone().map_err(|e| e.to_string())?).stderr(log);
    let child = cmd.spawn().map_err(|e| format!("start {}: {e}", kind.name()))?;
    let mut server = Server { kind, child, port };
    let config = client_config(false);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            return Err(format!("{} exited at start ({status}); see {}", kind.name(), dir.display()));
        }
        if one_connection(server.addr(), &config).is_ok() {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("{} not answering HTTPS after 15 s; see {}", kind.name(), dir.display()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(server)
}

impl Server {
    fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }
}

/// Accepts any certificate and signature: the client's work is kept to the key exchange.
#[derive(Debug)]
struct TrustAnything(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for TrustAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn client_config(resume: bool) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(TrustAnything(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = if resume {
        rustls::client::Resumption::in_memory_sessions(64)
    } else {
        rustls::client::Resumption::disabled()
    };
    Arc::new(config)
}

/// One new connection: handshake, `GET /plaintext` with `Connection: close`, read to the end.
fn one_connection(addr: SocketAddr, config: &Arc<ClientConfig>) -> Result<Option<HandshakeKind>, String> {
    let sock =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| format!("connect: {e}"))?;
    sock.set_nodelay(true).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").expect("name");
    let conn = ClientConnection::new(config.clone(), name).map_err(|e| e.to_string())?;
    let mut tls = StreamOwned::new(conn, sock);
    tls.write_all(b"GET /plaintext HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut got = Vec::with_capacity(512);
    let mut buf = [0u8; 4096];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            // Closed without close_notify after the response: fine.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    if !got.starts_with(b"HTTP/1.1 200") || !got.ends_with(b"Hello, World!") {
        return Err(format!("bad response: {:?}", String::from_utf8_lossy(&got)));
    }
    Ok(tls.conn.handshake_kind())
}

struct Handshakes {
    per_s: f64,
    cpu_ms: f64,
    full: u64,
    resumed: u64,
    errors: u64,
}

fn handshakes(server: &Server, o: &Options, resume: bool) -> Handshakes {
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    let addr = server.addr();
    let threads: Vec<_> = (0..o.handshake_clients)
        .map(|_| {
            let (stop, counts, cpus) = (stop.clone(), counts.clone(), o.client_cpus.clone());
            // Each client its own session store: one ticket per client, as browsers keep.
            let config = client_config(resume);
            std::thread::spawn(move || {
                procfs::pin_self(&cpus);
                while !stop.load(Ordering::Relaxed) {
                    let slot = match one_connection(addr, &config) {
                        Ok(Some(HandshakeKind::Resumed)) => 1,
                        Ok(_) => 0,
                        Err(_) => 2,
                    };
                    counts[slot].fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // A warm-up second (every client's first, full, handshake), then the measured window.
    std::thread::sleep(Duration::from_secs(1));
    let before: Vec<u64> = counts.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    let cpu0 = procfs::cpu_seconds(&server.pids());
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(o.duration_s));
    let cpu = procfs::cpu_seconds(&server.pids()) - cpu0;
    let secs = t0.elapsed().as_secs_f64();
    let after: Vec<u64> = counts.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        let _ = t.join();
    }
    let (full, resumed, errors) = (after[0] - before[0], after[1] - before[1], after[2] - before[2]);
    let done = (full + resumed).max(1);
    Handshakes { per_s: done as f64 / secs, cpu_ms: cpu * 1000.0 / done as f64, full, resumed, errors }
}

struct KeepAlive {
    rps: f64,
    cpu_per_mreq: f64,
    p99_us: f64,
    errors: u64,
}

fn keep_alive(server: &Server, o: &Options, wrk: &Path) -> Result<KeepAlive, String> {
    let client = procfs::cpu_list(&o.client_cpus);
    let run = WrkRun {
        wrk,
        client_cpus: &client,
        threads: o.client_cpus.len(),
        connections: o.connections,
        duration_s: o.duration_s,
        script: None,
        url: format!("https://127.0.0.1:{}/plaintext", server.port),
        stop_when: None,
    };
    let cpu0 = procfs::cpu_seconds(&server.pids());
    let r = run.run()?;
    let cpu = procfs::cpu_seconds(&server.pids()) - cpu0;
    Ok(KeepAlive {
        rps: r.rps,
        cpu_per_mreq: cpu * 1e6 / (r.requests.max(1) as f64),
        p99_us: r.p99_us,
        errors: r.socket_errors + r.non_2xx,
    })
}

#[derive(Default)]
struct Row {
    ka_rps: Vec<f64>,
    ka_cpu: Vec<f64>,
    ka_p99: Vec<f64>,
    full_s: Vec<f64>,
    full_cpu: Vec<f64>,
    res_s: Vec<f64>,
    res_cpu: Vec<f64>,
    resumed_share: Vec<f64>,
    errors: u64,
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

/// `compare tls ...`
pub fn run(args: &[String]) -> Result<(), String> {
    let o = parse(args)?;
    if !o.percore.is_file() {
        return Err(format!("{} not found (cargo build --release first, or --percore)", o.percore.display()));
    }
    let wrk = crate::servers::find_in_path("wrk").ok_or("wrk not installed (Debian: apt-get install wrk)")?;
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    procfs::raise_nofile();
    let dir = std::env::temp_dir().join(format!("percore-compare-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).map_err(|e| e.to_string())?;
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).map_err(|e| e.to_string())?;
    std::fs::write(&key_path, key.serialize_pem()).map_err(|e| e.to_string())?;

    let mut kinds = vec![Kind::PercoreMonoio, Kind::PercoreTokio, Kind::HyperMtRustls];
    if crate::servers::find_nginx().is_some() {
        kinds.push(Kind::Nginx);
    } else {
        eprintln!("compare tls: nginx not installed; compared without it");
    }
    let mut rows: Vec<Row> = kinds.iter().map(|_| Row::default()).collect();
    for round in 0..o.rounds {
        for (i, &kind) in kinds.iter().enumerate() {
            let server = start(kind, &o, &me, &dir, &cert_path, &key_path)?;
            let ka = keep_alive(&server, &o, &wrk)?;
            let full = handshakes(&server, &o, false);
            let res = handshakes(&server, &o, true);
            eprintln!(
                "round {round} {:<16} keep-alive {:>9.0} req/s {:>6.2} CPU-s/Mreq p99 {:>7.0} us | full {:>7.0}/s {:>5.3} ms | resumed {:>7.0}/s {:>5.3} ms ({} of {} resumed) | errors {}",
                kind.name(),
                ka.rps,
                ka.cpu_per_mreq,
                ka.p99_us,
                full.per_s,
                full.cpu_ms,
                res.per_s,
                res.cpu_ms,
                res.resumed,
                res.resumed + res.full,
                ka.errors + full.errors + res.errors
            );
            let r = &mut rows[i];
            r.ka_rps.push(ka.rps);
            r.ka_cpu.push(ka.cpu_per_mreq);
            r.ka_p99.push(ka.p99_us);
            r.full_s.push(full.per_s);
            r.full_cpu.push(full.cpu_ms);
            r.res_s.push(res.per_s);
            r.res_cpu.push(res.cpu_ms);
            r.resumed_share.push(res.resumed as f64 / (res.resumed + res.full).max(1) as f64);
            r.errors += ka.errors + full.errors + res.errors;
            drop(server);
        }
    }
    let report = report(&o, &kinds, &rows);
    print!("{report}");
    std::fs::create_dir_all(&o.out).map_err(|e| e.to_string())?;
    let file = o.out.join(format!("tls-{}core.md", o.server_cpus.len()));
    std::fs::write(&file, &report).map_err(|e| e.to_string())?;
    eprintln!("compare tls: wrote {}", file.display());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn report(o: &Options, kinds: &[Kind], rows: &[Row]) -> String {
    let reference = kinds.iter().position(|&k| k == Kind::HyperMtRustls).unwrap_or(0);
    let nginx = kinds.iter().position(|&k| k == Kind::Nginx);
    let ratio = |v: f64, base: f64| if base > 0.0 { format!("{:.2}×", v / base) } else { "-".into() };
    let mut s = format!(
        "# HTTPS side by side ({} server core(s): {}; client cores {}; {} round(s) of {} s; medians)\n\n\
         {} · kernel {} · one self-signed ECDSA P-256 certificate for all · wrk -c{} for keep-alive; \
         {} rustls client threads for new connections (`Connection: close`, no certificate checks)\n\n",
        o.server_cpus.len(),
        procfs::cpu_list(&o.server_cpus),
        procfs::cpu_list(&o.client_cpus),
        o.rounds,
        o.duration_s,
        procfs::model_name(),
        procfs::kernel(),
        o.connections,
        o.handshake_clients
    );
    s.push_str("| server | keep-alive req/s | CPU-s per M req | p99 | full handshakes/s | CPU ms per full | resumed/s | CPU ms per resumed | resumed | errors |\n");
    s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (k, r) in kinds.iter().zip(rows) {
        s.push_str(&format!(
            "| {} | {:.0} | {:.2} | {:.0} µs | {:.0} | {:.3} | {:.0} | {:.3} | {:.0}% | {} |\n",
            k.name(),
            median(&r.ka_rps),
            median(&r.ka_cpu),
            median(&r.ka_p99),
            median(&r.full_s),
            median(&r.full_cpu),
            median(&r.res_s),
            median(&r.res_cpu),
            median(&r.resumed_share) * 100.0,
            r.errors
        ));
    }
    let mut bases = vec![("hyper-mt-rustls", reference)];
    if let Some(n) = nginx {
        bases.push(("nginx", n));
    }
    for (name, b) in bases {
        s.push_str(&format!(
            "\nRatios to {name} (CPU: lower is better; rates: higher is better):\n\n\
             | server | keep-alive CPU/req | keep-alive p99 | full handshakes/s | CPU per full | resumed/s | CPU per resumed |\n\
             |---|---:|---:|---:|---:|---:|---:|\n"
        ));
        let base = &rows[b];
        for (k, r) in kinds.iter().zip(rows) {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                k.name(),
                ratio(median(&r.ka_cpu), median(&base.ka_cpu)),
                ratio(median(&r.ka_p99), median(&base.ka_p99)),
                ratio(median(&r.full_s), median(&base.full_s)),
                ratio(median(&r.full_cpu), median(&base.full_cpu)),
                ratio(median(&r.res_s), median(&base.res_s)),
                ratio(median(&r.res_cpu), median(&base.res_cpu)),
            ));
        }
    }
    s
}
