//! The servers under test: how each is started on the server cores, checked, and stopped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::procfs;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Floor,
    PercoreMonoio,
    PercoreTokio,
    PercoreTokioMt,
    PercoreGlommio,
    HyperMt,
    HyperTpc,
    MayMinihttp,
    Nginx,
    AxumServe,
    PercoreAxumTokio,
    PercoreAxumMonoio,
}

impl Kind {
    /// The servers a plain run compares (the axum ones are asked for by name).
    pub const ALL: [Kind; 9] = [
        Kind::Floor,
        Kind::PercoreMonoio,
        Kind::PercoreTokio,
        Kind::PercoreTokioMt,
        Kind::PercoreGlommio,
        Kind::HyperMt,
        Kind::HyperTpc,
        Kind::MayMinihttp,
        Kind::Nginx,
    ];
    /// The axum comparison: the same `Router` on `axum::serve` and on percore.
    pub const AXUM: [Kind; 3] = [Kind::AxumServe, Kind::PercoreAxumTokio, Kind::PercoreAxumMonoio];

    pub fn is_percore(self) -> bool {
        matches!(
            self,
            Kind::PercoreMonoio
                | Kind::PercoreTokio
                | Kind::PercoreTokioMt
                | Kind::PercoreGlommio
                | Kind::PercoreAxumTokio
                | Kind::PercoreAxumMonoio
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Floor => "floor",
            Kind::PercoreMonoio => "percore-monoio",
            Kind::PercoreTokio => "percore-tokio",
            Kind::PercoreTokioMt => "percore-tokio-mt",
            Kind::PercoreGlommio => "percore-glommio",
            Kind::HyperMt => "hyper-mt",
            Kind::HyperTpc => "hyper-tpc",
            Kind::MayMinihttp => "may-minihttp",
            Kind::Nginx => "nginx",
            Kind::AxumServe => "axum-serve",
            Kind::PercoreAxumTokio => "percore-axum-tokio",
            Kind::PercoreAxumMonoio => "percore-axum-monoio",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Kind::Floor => "the floor: the cheapest monoio (io_uring) responder wrk accepts: counts request ends, writes canned answers (no parsing, date, limits or timeouts)",
            Kind::PercoreMonoio => "percore `--runtime monoio` (io_uring), one pinned executor per core",
            Kind::PercoreTokio => "percore `--runtime tokio` (epoll), one pinned executor per core",
            Kind::PercoreTokioMt => "percore `--runtime tokio-mt` (epoll): one multi-thread tokio runtime and one listener shared by the executors",
            Kind::PercoreGlommio => "percore `--runtime glommio` (io_uring), one pinned executor per core",
            Kind::HyperMt => "hyper 1.x on a tokio multi-thread runtime (`worker_threads` = cores), one listener: the reference",
            Kind::HyperTpc => "hyper 1.x thread-per-core: a tokio `current_thread` runtime per core, pinned, own `SO_REUSEPORT` listener",
            Kind::MayMinihttp => "may-minihttp 0.1 (the TechEmpower Rust entry's server) on `may` coroutines: N pinned worker threads with work stealing, one listener",
            Kind::Nginx => "nginx `return 200` (worker_processes = cores, `reuseport`, access log off)",
            Kind::AxumServe => "an axum 0.8 `Router` on `axum::serve`, tokio multi-thread runtime (`worker_threads` = cores)",
            Kind::PercoreAxumTokio => "the same axum `Router` on percore (`cli::run_service`), `--runtime tokio`",
            Kind::PercoreAxumMonoio => "the same axum `Router` on percore (`cli::run_service`), `--runtime monoio`",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().chain(Kind::AXUM).find(|k| k.name() == s)
    }
}

/// Where the programs are.
pub struct Programs {
    pub percore: PathBuf,
    /// This executable (it serves hyper with `serve-hyper`).
    pub me: PathBuf,
    pub nginx: Option<PathBuf>,
}

pub struct Server {
    pub kind: Kind,
    pub port: u16,
    pub child: Child,
    pub pid: u32,
    /// Extra facts for the report (percore's IO driver, thread count).
    pub note: String,
    pub log: PathBuf,
    _tmp: Option<PathBuf>,
}

impl Server {
    pub fn start(
        kind: Kind,
        progs: &Programs,
        cpus: &[usize],
        port: u16,
        workdir: &Path,
    ) -> Result<Server, String> {
        let list = procfs::cpu_list(cpus);
        let n = cpus.len().to_string();
        let log = workdir.join(format!("{}.log", kind.name()));
        let logf = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let mut cmd = Command::new("taskset");
        cmd.arg("-c").arg(&list);
        let mut tmp = None;
        match kind {
            Kind::PercoreMonoio | Kind::PercoreTokio | Kind::PercoreTokioMt | Kind::PercoreGlommio => {
                let runtime = match kind {
                    Kind::PercoreMonoio => "monoio",
                    Kind::PercoreTokio => "tokio",
                    Kind::PercoreTokioMt => "tokio-mt",
                    _ => "glommio",
                };
                cmd.arg(&progs.percore)
                    .args(["--runtime", runtime, "--io-backend", "auto", "--workers", &n, "--cpus", &list])
                    .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--log-level", "warn"]);
            }
            Kind::PercoreAxumTokio | Kind::PercoreAxumMonoio => {
                let runtime = if kind == Kind::PercoreAxumTokio { "tokio" } else { "monoio" };
                cmd.arg(&progs.me)
                    .arg("serve-percore-axum")
                    .args(["--runtime", runtime, "--io-backend", "auto", "--workers", &n, "--cpus", &list])
                    .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--log-level", "warn"]);
            }
            Kind::Floor => {
                cmd.arg(&progs.me).args(["serve-floor", "--threads", &n, "--port", &port.to_string()]);
            }
            Kind::MayMinihttp => {
                cmd.arg(&progs.me).args(["serve-may-minihttp", "--threads", &n, "--port", &port.to_string()]);
            }
            Kind::AxumServe => {
                cmd.arg(&progs.me).args(["serve-axum", "--threads", &n, "--port", &port.to_string()]);
            }
            Kind::HyperMt | Kind::HyperTpc => {
                let mode = if kind == Kind::HyperMt { "mt" } else { "tpc" };
                cmd.arg(&progs.me).args([
                    "serve-hyper",
                    "--mode",
                    mode,
                    "--threads",
                    &n,
                    "--cpus",
                    &list,
                    "--port",
                    &port.to_string(),
                ]);
            }
            Kind::Nginx => {
                let nginx = progs.nginx.as_ref().ok_or("nginx not installed")?;
                let prefix = workdir.join("nginx");
                nginx_command(&mut cmd, nginx, &prefix, cpus.len(), port, None)?;
                tmp = Some(prefix);
            }
        }
        cmd.stdin(Stdio::null()).stdout(logf.try_clone().map_err(|e| e.to_string())?).stderr(logf);
        let child = cmd.spawn().map_err(|e| format!("start {}: {e}", kind.name()))?;
        let pid = child.id();
        let mut server = Server { kind, port, child, pid, note: String::new(), log, _tmp: tmp };
        server.wait_ready()?;
        if kind.is_percore() {
            if let Ok(m) = get(port, "/metrics") {
                if let Some(line) = m.lines().find(|l| l.starts_with("percore_info")) {
                    server.note = line.to_owned();
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
        let threads: usize = procfs::tree(pid).iter().map(|&p| procfs::threads(p)).sum();
        let procs = procfs::tree(pid).len();
        server.note = format!(
            "{}{}{procs} process(es), {threads} threads",
            server.note,
            if server.note.is_empty() { "" } else { "; " }
        );
        Ok(server)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                return Err(format!("{} exited ({status}) at start:\n{log}", self.kind.name()));
            }
            if let Ok(resp) = get(self.port, "/plaintext") {
                if resp.starts_with("HTTP/1.1 200") && resp.ends_with("Hello, World!") {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                return Err(format!("{} not ready after 15 s:\n{log}", self.kind.name()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's process and its children.
    pub fn pids(&self) -> Vec<u32> {
        procfs::tree(self.pid)
    }

    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pids = self.pids();
        // percore: QUIT stops at once; nginx: TERM is its fast stop; hyper: TERM ends it.
        let sig = if self.kind.is_percore() { libc::SIGQUIT } else { libc::SIGTERM };
        procfs::send_signal(self.pid, sig);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // nginx workers that outlived their master (they should not).
        for p in pids.into_iter().skip(1) {
            if std::path::Path::new(&format!("/proc/{p}")).exists() {
                procfs::send_signal(p, libc::SIGKILL);
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Write nginx's configuration under `prefix` (its logs and temp files go there too) and
/// add the program and its arguments to `cmd`. `tls`: the certificate and key to serve
/// HTTPS with (TLS 1.2 and 1.3, stateless tickets, as percore resumes).
pub fn nginx_command(
    cmd: &mut Command,
    nginx: &Path,
    prefix: &Path,
    workers: usize,
    port: u16,
    tls: Option<(&Path, &Path)>,
) -> Result<(), String> {
    std::fs::create_dir_all(prefix.join("logs")).map_err(|e| e.to_string())?;
    let conf = prefix.join("nginx.conf");
    std::fs::write(&conf, nginx_conf(prefix, workers, port, tls)).map_err(|e| e.to_string())?;
    cmd.arg(nginx).arg("-p").arg(prefix).arg("-c").arg(&conf).arg("-e").arg(prefix.join("logs/error.log"));
    Ok(())
}

fn nginx_conf(prefix: &Path, workers: usize, port: u16, tls: Option<(&Path, &Path)>) -> String {
    let p = prefix.display();
    let user = if unsafe { libc::geteuid() } == 0 { "user root root;\n" } else { "" };
    let (ssl, ssl_settings) = match tls {
        None => ("", String::new()),
        Some((cert, key)) => (
            " ssl",
            format!(
                "
        ssl_certificate {};
        ssl_certificate_key {};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_tickets on;",
                cert.display(),
                key.display()
            ),
        ),
    };
    format!(
        r#"# written by benches/compare
{user}daemon off;
master_process on;
worker_processes {workers};
worker_rlimit_nofile 20000;
pid {p}/nginx.pid;
error_log {p}/logs/error.log warn;
events {{
    worker_connections 20000;
}}
http {{
    access_log off;
    server_tokens off;
    keepalive_requests 100000000;
    keepalive_timeout 75s;
    client_body_temp_path {p}/client_body;
    proxy_temp_path {p}/proxy;
    fastcgi_temp_path {p}/fastcgi;
    uwsgi_temp_path {p}/uwsgi;
    scgi_temp_path {p}/scgi;
    server {{
        listen 127.0.0.1:{port}{ssl} reuseport backlog=2048;{ssl_settings}
        location = /plaintext {{
            default_type text/plain;
            return 200 "Hello, World!";
        }}
        location = /json {{
            default_type application/json;
            return 200 '{{"message":"Hello, World!"}}';
        }}
    }}
}}
"#
    )
}

/// One GET on a fresh connection; the whole response as text.
pub fn get(port: u16, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes())?;
    // Until the server closes, or the body its content-length announces is whole (the
    // floor ignores `Connection: close`: it parses nothing).
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:").and_then(|v| v.trim().parse::<usize>().ok()));
            if length.is_some_and(|len| buf.len() >= end + 4 + len) {
                break;
            }
        }
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Is the port free on 127.0.0.1 (nobody listening, bindable)?
pub fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// nginx, when installed.
pub fn find_nginx() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/local/sbin", "/usr/local/nginx/sbin"].map(PathBuf::from));
    // A package unpacked without installing it: `dpkg -x nginx_*.deb benches/compare/target/nginx`.
    dirs.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/nginx/usr/sbin"));
    // The one deploy/check.sh unpacks into its cache.
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cache/percore-deploy-check/nginx/root/usr/sbin"));
    }
    dirs.into_iter().map(|d| d.join("nginx")).find(|p| p.is_file())
}

pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    dirs.extend(["/usr/bin", "/usr/sbin", "/usr/local/bin"].map(PathBuf::from));
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_conf_serves_tls_only_when_given_a_certificate() {
        let prefix = Path::new("/tmp/x");
        let plain = nginx_conf(prefix, 1, 8080, None);
        assert!(plain.contains("listen 127.0.0.1:8080 reuseport backlog=2048;\n"), "{plain}");
        assert!(!plain.contains("ssl"), "{plain}");
        let tls = nginx_conf(prefix, 1, 8443, Some((Path::new("/c.pem"), Path::new("/k.pem"))));
        for line in [
            "listen 127.0.0.1:8443 ssl reuseport backlog=2048;\n",
            "ssl_certificate /c.pem;\n",
            "ssl_certificate_key /k.pem;\n",
            "ssl_protocols TLSv1.2 TLSv1.3;\n",
            "ssl_session_tickets on;\n",
        ] {
            assert!(tls.contains(line), "{line} in {tls}");
        }
    }

    #[test]
    fn every_server_is_found_by_its_name() {
        for k in Kind::ALL.into_iter().chain(Kind::AXUM) {
            assert_eq!(Kind::parse(k.name()), Some(k));
        }
        assert_eq!(Kind::parse("may-minihttp"), Some(Kind::MayMinihttp));
        assert!(Kind::ALL.contains(&Kind::MayMinihttp), "may-minihttp is in a plain run");
    }
}
