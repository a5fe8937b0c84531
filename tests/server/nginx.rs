//! nginx in front of percore's Unix socket, with the shipped deploy/nginx/percore.conf
//! (its `percore_unix` upstream): nginx runs as this test's own unprivileged process, with
//! every path in a temp dir, on a free 127.0.0.1 port. Skipped when no nginx is found (on
//! PATH, in /usr/sbin, or unpacked by deploy/check.sh into its cache).

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// An nginx binary: on PATH, /usr/sbin, or the one deploy/check.sh unpacked.
fn find_nginx() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut candidates: Vec<PathBuf> = std::env::split_paths(&path).map(|d| d.join("nginx")).collect();
    candidates.push("/usr/sbin/nginx".into());
    let cache = std::env::var_os("PERCORE_CHECK_CACHE").map(PathBuf::from).or_else(|| {
        let xdg = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from);
        xdg.or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
            .map(|c| c.join("percore-deploy-check"))
    });
    if let Some(cache) = cache {
        candidates.push(cache.join("nginx/root/usr/sbin/nginx"));
    }
    candidates.into_iter().find(|p| p.is_file())
}

/// nginx, killed (by PID) when dropped.
struct Nginx {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    /// Start `nginx` with deploy/nginx/percore.conf proxying to the Unix socket `socket`.
    fn start(nginx: &Path, dir: &Path, socket: &Path) -> Nginx {
        let port = free_port();
        let shipped =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/nginx/percore.conf"))
                .expect("deploy/nginx/percore.conf");
        // The shipped server block, on a test port and the Unix upstream. Each edit must
        // apply: if the file changes shape, this test says so instead of testing something else.
        let edits = [
            ("server unix:/run/percore.sock", format!("server unix:{}", socket.display())),
            ("listen 80 default_server;", format!("listen 127.0.0.1:{port} default_server;")),
            ("listen [::]:80 default_server;", String::new()),
            ("proxy_pass http://percore;", "proxy_pass http://percore_unix;".to_string()),
        ];
        let mut conf = shipped;
        for (from, to) in &edits {
            assert!(conf.contains(from), "deploy/nginx/percore.conf no longer contains {from:?}");
            conf = conf.replace(from, to);
        }
        std::fs::write(dir.join("percore.conf"), conf).unwrap();
        let d = dir.display();
        // master_process off: one process, this test's user (no switch to `nobody`).
        let main = format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
             include {d}/percore.conf;\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), main).unwrap();
        let child = Command::new(nginx)
            .arg("-p")
            .arg(format!("{d}/"))
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .args(["-e", "stderr"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut n = Nginx { child, addr, dir: dir.to_path_buf() };
        let start = Instant::now();
        while TcpStream::connect(addr).is_err() {
            if let Some(status) = n.child.try_wait().unwrap() {
                panic!("nginx exited ({status}) before listening:\n{}", n.error_log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "nginx not listening after 10 s:\n{}",
                n.error_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        n
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

/// The sum of a per-executor counter in percore's /metrics text.
fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn nginx_proxies_to_the_unix_socket() {
    let Some(nginx) = find_nginx() else {
        eprintln!("note: nginx not found (PATH, /usr/sbin, deploy/check.sh's cache); skipping");
        return;
    };
    let dir = TempDir::new("nginx");
    let socket = dir.join("percore.sock");
    let log = dir.join("access.log.percore");
    let bind = format!("unix:{}", socket.display());
    let s = ServerProc::start(&[
        "--bind",
        &bind,
        "--bind",
        "127.0.0.1:0",
        "--access-log",
        log.to_str().unwrap(),
        "--access-log-format",
        "json",
    ]);
    let n = Nginx::start(&nginx, &dir, &socket);

    // Keep-alive from the client to nginx, several requests on one connection.
    let mut c = Client::new(connect(n.addr));
    for _ in 0..5 {
        c.send(&get("/plaintext"));
        let r = c.response();
        assert_eq!((r.status, r.text().as_str()), (200, "Hello, World!"), "{}", n.error_log());
        assert!(!r.closes(), "{:?}", r.headers);
    }
    // A POST body larger than nginx's client_body_buffer_size (buffered to a temp file).
    let body: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    c.send(&post_echo(&body));
    let r = c.response();
    assert_eq!(r.status, 200, "{}", n.error_log());
    assert!(r.body == body, "echoed body differs ({} bytes back)", r.body.len());
    // A client that claims an address: nginx appends the real one ($proxy_add_x_forwarded_for).
    c.send(b"GET /plaintext HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n");
    assert_eq!(c.response().status, 200);

    // percore saw the client nginx saw (127.0.0.1, from X-Forwarded-For: the Unix peer is
    // trusted by default), not "unix:", with nginx's X-Forwarded-Proto.
    let lines: Vec<String> = {
        let mut lines = Vec::new();
        eventually(Duration::from_secs(5), || {
            lines = std::fs::read_to_string(&log).unwrap_or_default().lines().map(str::to_string).collect();
            lines.len() >= 7
        });
        lines
    };
    assert_eq!(lines.len(), 7, "{lines:?}");
    for line in &lines[..6] {
        assert_eq!(json_field(line, "client").as_deref(), Some("127.0.0.1"), "{line}");
        assert_eq!(json_field(line, "scheme").as_deref(), Some("http"), "{line}");
    }
    // "203.0.113.9, 127.0.0.1": 127.0.0.1 is a trusted hop, so the client is the one before.
    assert_eq!(json_field(&lines[6], "client").as_deref(), Some("203.0.113.9"), "{}", lines[6]);

    // nginx kept its upstream connection to percore: 7 requests, far fewer connections.
    let metrics = s.request(&get("/metrics")).text();
    let accepted = counter(&metrics, "percore_connections_accepted_total");
    // (1 for this /metrics request over TCP.)
    assert!(accepted <= 3, "nginx opened {accepted} connections for 7 requests (no upstream keepalive?)");
}
