//! WebSocket echo: percore's `/ws` against tokio-tungstenite and fastwebsockets, one server
//! core, side by side in one run.
//!
//! ```sh
//! cargo build --release
//! cargo run --release --manifest-path benches/compare/Cargo.toml -- ws
//! ```
//!
//! Every server runs alone on the server core (taskset); the load generator below runs on
//! another core, one tokio `current_thread` runtime, and keeps `--batch` masked messages in
//! flight per connection (it writes a batch, reads the batch's echoes, repeats), so it costs
//! less per message than the servers and the server core is the one that saturates (the
//! report gives its busy share: near 100 % means the server, not the client, was the limit).
//! The figure is messages echoed per server CPU-second (utime + stime of the server process
//! from /proc/PID/stat over the measured window), median of the rounds, with the spread.
//! Servers are interleaved within each round.
//!
//! Then the memory of idle WebSockets: `--idle N` connections complete their handshake and
//! stay open; the server's RSS growth divided by N.

use std::cell::Cell;
use std::io::{Read, Write};
use std::net::TcpStream as StdTcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::procfs;

const HANDSHAKE: &[u8] =
    b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// The servers compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Server {
    PercoreMonoio,
    PercoreTokio,
    Tungstenite,
    FastWebSockets,
}

impl Server {
    const ALL: [Server; 4] =
        [Server::PercoreMonoio, Server::PercoreTokio, Server::Tungstenite, Server::FastWebSockets];

    fn name(self) -> &'static str {
        match self {
            Server::PercoreMonoio => "percore-monoio",
            Server::PercoreTokio => "percore-tokio",
            Server::Tungstenite => "tokio-tungstenite",
            Server::FastWebSockets => "fastwebsockets",
        }
    }

    fn parse(s: &str) -> Option<Server> {
        Server::ALL.into_iter().find(|k| k.name() == s)
    }
}

struct Options {
    servers: Vec<Server>,
    sizes: Vec<usize>,
    conns: Vec<usize>,
    batch: usize,
    rounds: usize,
    seconds: f64,
    idle: usize,
    percore: PathBuf,
    server_cpu: usize,
    client_cpu: usize,
    port: u16,
    out: PathBuf,
}

const USAGE: &str = "compare ws [--servers LIST] [--sizes 20,16384] [--conns 100,500] [--batch 8]
           [--rounds 3] [--seconds 4] [--idle 10000] [--percore-bin PATH]
           [--server-cpu N] [--client-cpu N] [--port P] [--out DIR]";

fn parse(args: &[String]) -> Result<Options, String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cpus = procfs::allowed_cpus();
    let mut o = Options {
        servers: Server::ALL.to_vec(),
        sizes: vec![20, 16384],
        conns: vec![100, 500],
        batch: 8,
        rounds: 3,
        seconds: 4.0,
        idle: 10_000,
        percore: root.join("target/release/percore"),
        server_cpu: cpus.first().copied().unwrap_or(0),
        client_cpu: cpus.get(1).copied().unwrap_or(0),
        port: 18700,
        out: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results"),
    };
    let list = |v: &str| -> Result<Vec<usize>, String> {
        v.split(',').map(|x| x.trim().parse::<usize>().map_err(|e| format!("{x}: {e}"))).collect()
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{a} needs a value\n{USAGE}"));
        match a.as_str() {
            "--servers" => {
                o.servers = value()?
                    .split(',')
                    .map(|s| Server::parse(s.trim()).ok_or(format!("unknown server {s}")))
                    .collect::<Result<_, _>>()?
            }
            "--sizes" => o.sizes = list(&value()?)?,
            "--conns" => o.conns = list(&value()?)?,
            "--batch" => o.batch = value()?.parse().map_err(|e| format!("--batch: {e}"))?,
            "--rounds" => o.rounds = value()?.parse().map_err(|e| format!("--rounds: {e}"))?,
            "--seconds" => o.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--idle" => o.idle = value()?.parse().map_err(|e| format!("--idle: {e}"))?,
            "--percore-bin" => o.percore = PathBuf::from(value()?),
            "--server-cpu" => o.server_cpu = value()?.parse().map_err(|e| format!("--server-cpu: {e}"))?,
            "--client-cpu" => o.client_cpu = value()?.parse().map_err(|e| format!("--client-cpu: {e}"))?,
            "--port" => o.port = value()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--out" => o.out = PathBuf::from(value()?),
            "--help" | "-h" => return Err(USAGE.into()),
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        }
    }
    if o.batch == 0 || o.rounds == 0 {
        return Err("--batch and --rounds must be at least 1".into());
    }
    Ok(o)
}

/// A server under test, pinned to the server core.
struct Running {
    child: Child,
    pid: u32,
    port: u16,
}

impl Running {
    fn start(server: Server, o: &Options, port: u16, me: &Path) -> Result<Running, String> {
        let mut cmd = Command::new("taskset");
        cmd.arg("-c").arg(o.server_cpu.to_string());
        match server {
            Server::PercoreMonoio | Server::PercoreTokio => {
                let runtime = if server == Server::PercoreMonoio { "monoio" } else { "tokio" };
                cmd.arg(&o.percore)
                    .args(["--runtime", runtime, "--workers", "1", "--cpus", &o.server_cpu.to_string()])
                    .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--log-level", "warn"])
                    .args(["--max-connections", &(o.idle + 1000).to_string()]);
            }
            Server::Tungstenite => {
                cmd.arg(me).args(["serve-ws", "tungstenite", "--port", &port.to_string()]);
            }
            Server::FastWebSockets => {
                cmd.arg(me).args(["serve-ws", "fastwebsockets", "--port", &port.to_string()]);
            }
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("{}: {e}", server.name()))?;
        let pid = child.id();
        let mut running = Running { child, pid, port };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = running.child.try_wait() {
                return Err(format!("{} exited at start ({status})", server.name()));
            }
            if let Ok(mut s) = StdTcpStream::connect(("127.0.0.1", port)) {
                if handshake_blocking(&mut s).is_ok() {
                    return Ok(running);
                }
            }
            if Instant::now() > deadline {
                return Err(format!("{} did not accept a WebSocket within 15 s", server.name()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server process (taskset execs it, so the pid is the server's).
    fn pids(&self) -> Vec<u32> {
        procfs::tree(self.pid)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // percore: SIGQUIT stops at once; the tokio peers end on SIGKILL as well as anything.
        procfs::send_signal(self.pid, libc::SIGQUIT);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Our handshake and the server's `101` to it, on a blocking socket.
fn handshake_blocking(s: &mut StdTcpStream) -> std::io::Result<()> {
    s.write_all(HANDSHAKE)?;
    read_101(s)
}

/// Read the server's `101` to a handshake already written.
fn read_101(s: &mut StdTcpStream) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    // Byte by byte: nothing after the head may be consumed (there is nothing yet anyway).
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 || head.len() > 4096 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    if head.starts_with(b"HTTP/1.1 101") {
        Ok(())
    } else {
        Err(std::io::Error::other(String::from_utf8_lossy(&head).into_owned()))
    }
}

/// `batch` masked text messages of `size` bytes, back to back: what each connection writes
/// in one go.
fn client_frames(size: usize, batch: usize) -> Vec<u8> {
    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    let payload: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
    let mut one = vec![0x81u8];
    match size {
        0..=125 => one.push(0x80 | size as u8),
        126..=65535 => {
            one.push(0x80 | 126);
            one.extend_from_slice(&(size as u16).to_be_bytes());
        }
        _ => {
            one.push(0x80 | 127);
            one.extend_from_slice(&(size as u64).to_be_bytes());
        }
    }
    one.extend_from_slice(&MASK);
    one.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    one.repeat(batch)
}

/// Counts whole server messages in a byte stream (server frames are unmasked).
#[derive(Default)]
struct MessageCounter {
    head: Vec<u8>,
    skip: u64,
    fin: bool,
    opcode: u8,
}

impl MessageCounter {
    /// Feed bytes; returns how many data messages ended in them.
    fn feed(&mut self, mut bytes: &[u8]) -> usize {
        let mut ended = 0;
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = (self.skip as usize).min(bytes.len());
                self.skip -= n as u64;
                bytes = &bytes[n..];
                if self.skip == 0 && self.fin && self.opcode < 8 {
                    ended += 1;
                }
                continue;
            }
            self.head.push(bytes[0]);
            bytes = &bytes[1..];
            let Some((len, fin, opcode)) = parse_head(&self.head) else { continue };
            self.head.clear();
            self.fin = fin;
            self.opcode = opcode;
            self.skip = len;
            if len == 0 && fin && opcode < 8 {
                ended += 1;
            }
        }
        ended
    }
}

/// A whole unmasked frame head: (payload length, FIN, opcode).
fn parse_head(h: &[u8]) -> Option<(u64, bool, u8)> {
    if h.len() < 2 {
        return None;
    }
    let (fin, opcode) = (h[0] & 0x80 != 0, h[0] & 0x0f);
    match h[1] & 0x7f {
        126 if h.len() == 4 => Some((u16::from_be_bytes([h[2], h[3]]) as u64, fin, opcode)),
        127 if h.len() == 10 => Some((u64::from_be_bytes(h[2..10].try_into().ok()?), fin, opcode)),
        126 | 127 => None,
        n => Some((n as u64, fin, opcode)),
    }
}

/// One loaded connection: write a batch, read its echoes, until `stop`.
async fn echo_loop(
    port: u16,
    frames: Rc<Vec<u8>>,
    batch: usize,
    done: Rc<Cell<u64>>,
    stop: Rc<Cell<bool>>,
) -> Result<(), String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    s.write_all(HANDSHAKE).await.map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut head = Vec::new();
    let mut counter = MessageCounter::default();
    // The 101, and anything after it already counted.
    let mut carried = 0;
    loop {
        let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed during the handshake".into());
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            if !head.starts_with(b"HTTP/1.1 101") {
                return Err(String::from_utf8_lossy(&head).into_owned());
            }
            carried += counter.feed(&head[end + 4..]);
            break;
        }
    }
    while !stop.get() {
        s.write_all(&frames).await.map_err(|e| e.to_string())?;
        let mut got = carried;
        while got < batch {
            let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("closed by the server".into());
            }
            got += counter.feed(&buf[..n]);
        }
        carried = got - batch;
        done.set(done.get() + batch as u64);
    }
    Ok(())
}

struct Sample {
    messages: u64,
    cpu_s: f64,
    wall_s: f64,
    failed: usize,
}

/// Load `port` with `conns` connections for a warm-up second and then `seconds`, on this
/// (client-pinned) thread; the server's CPU time is read at both ends of the measured window.
fn load(o: &Options, pids: &[u32], port: u16, size: usize, conns: usize) -> Result<Sample, String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let local = tokio::task::LocalSet::new();
    let frames = Rc::new(client_frames(size, o.batch));
    let done = Rc::new(Cell::new(0u64));
    let stop = Rc::new(Cell::new(false));
    let failed = Rc::new(Cell::new(0usize));
    let seconds = o.seconds;
    let batch = o.batch;
    local.block_on(&rt, async {
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let (frames, done, stop, failed) = (frames.clone(), done.clone(), stop.clone(), failed.clone());
            tasks.push(tokio::task::spawn_local(async move {
                if let Err(e) = echo_loop(port, frames, batch, done, stop).await {
                    if failed.get() == 0 {
                        eprintln!("   a connection failed: {e}");
                    }
                    failed.set(failed.get() + 1);
                }
            }));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (m0, c0, t0) = (done.get(), procfs::cpu_seconds(pids), Instant::now());
        tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
        let (m1, c1, wall) = (done.get(), procfs::cpu_seconds(pids), t0.elapsed().as_secs_f64());
        stop.set(true);
        for t in tasks {
            t.abort();
        }
        Ok(Sample { messages: m1 - m0, cpu_s: c1 - c0, wall_s: wall, failed: failed.get() })
    })
}

/// Open `count` WebSockets (handshake done) and keep them; the server's RSS growth per
/// connection in KiB.
fn idle_kib(pids: &[u32], port: u16, count: usize) -> Result<(f64, usize), String> {
    let before = procfs::rss_kib(pids);
    let mut open = Vec::with_capacity(count);
    let mut failed = 0;
    while open.len() + failed < count {
        let batch = (count - open.len() - failed).min(500);
        let mut fresh = Vec::with_capacity(batch);
        for _ in 0..batch {
            match StdTcpStream::connect(("127.0.0.1", port)) {
                Ok(mut s) => match s.write_all(HANDSHAKE) {
                    Ok(()) => fresh.push(s),
                    Err(_) => failed += 1,
                },
                Err(_) => failed += 1,
            }
        }
        for mut s in fresh {
            match read_101(&mut s) {
                Ok(()) => open.push(s),
                Err(_) => failed += 1,
            }
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    let after = procfs::rss_kib(pids);
    let per = after.saturating_sub(before) as f64 / open.len().max(1) as f64;
    Ok((per, failed))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// `compare ws ...`: run the comparison and write `results/ws-1core.md`.
pub fn run(args: &[String]) -> Result<(), String> {
    let o = parse(args)?;
    if !o.percore.is_file() {
        return Err(format!(
            "{} missing: run `cargo build --release` at the root first",
            o.percore.display()
        ));
    }
    if o.server_cpu == o.client_cpu {
        eprintln!("warning: the server and the load share CPU {}", o.server_cpu);
    }
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let nofile = procfs::raise_nofile() as usize;
    if nofile < o.idle + 100 {
        return Err(format!("open-files limit {nofile} is below --idle {}", o.idle));
    }
    // The load runs on this thread, on the client core.
    procfs::pin_self(&[o.client_cpu]);
    // (server, size, conns) -> per-round (messages per CPU-second, server busy share)
    let mut cells: Vec<((Server, usize, usize), Vec<(f64, f64)>)> = Vec::new();
    let mut port = o.port;
    for round in 1..=o.rounds {
        for &size in &o.sizes {
            for &conns in &o.conns {
                for &server in &o.servers {
                    port += 1;
                    let running = Running::start(server, &o, port, &me)?;
                    let s = load(&o, &running.pids(), running.port, size, conns)?;
                    drop(running);
                    let per_cpu = s.messages as f64 / s.cpu_s.max(1e-9);
                    let busy = s.cpu_s / s.wall_s;
                    eprintln!(
                        "round {round} {:>18} {size:>6} B {conns:>4} conns: {:>9.0} msg/s, {:>9.0} msg per CPU-s, server busy {:>3.0} %{}",
                        server.name(),
                        s.messages as f64 / s.wall_s,
                        per_cpu,
                        busy * 100.0,
                        if s.failed > 0 { format!(", {} connections failed", s.failed) } else { String::new() }
                    );
                    let key = (server, size, conns);
                    match cells.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, v)) => v.push((per_cpu, busy)),
                        None => cells.push((key, vec![(per_cpu, busy)])),
                    }
                }
            }
        }
    }
    let mut idle = Vec::new();
    if o.idle > 0 {
        for &server in &o.servers {
            port += 1;
            let running = Running::start(server, &o, port, &me)?;
            let (kib, failed) = idle_kib(&running.pids(), running.port, o.idle)?;
            eprintln!("idle {:>18}: {kib:.2} KiB per WebSocket ({failed} failed)", server.name());
            idle.push((server, kib, failed));
        }
    }
    let md = report(&o, &cells, &idle);
    std::fs::create_dir_all(&o.out).map_err(|e| e.to_string())?;
    let path = o.out.join("ws-1core.md");
    std::fs::write(&path, &md).map_err(|e| format!("{}: {e}", path.display()))?;
    println!("{md}");
    eprintln!("== wrote {}", path.display());
    Ok(())
}

fn report(
    o: &Options,
    cells: &[((Server, usize, usize), Vec<(f64, f64)>)],
    idle: &[(Server, f64, usize)],
) -> String {
    let mut md = String::new();
    md.push_str("# WebSocket echo, one server core\n\n");
    md.push_str(&format!(
        "Command: `compare ws{}`; {} rounds of {} s (after 1 s of warm-up), servers interleaved; server on CPU {}, \
         load on CPU {} ({} text messages in flight per connection). CPU: {}; kernel {}; load average at the end {}.\n\n",
        if o.servers.len() == Server::ALL.len() { String::new() } else { " --servers ...".into() },
        o.rounds,
        o.seconds,
        o.server_cpu,
        o.client_cpu,
        o.batch,
        procfs::model_name(),
        procfs::kernel(),
        procfs::loadavg()
    ));
    md.push_str("Messages echoed per server CPU-second: median (min–max), ratio to percore-monoio, server core busy.\n\n");
    md.push_str("| message | connections | server | msg per CPU-s | spread | ratio | busy |\n|---|---:|---|---:|---|---:|---:|\n");
    for &size in &o.sizes {
        for &conns in &o.conns {
            let base = cells
                .iter()
                .find(|(k, _)| *k == (Server::PercoreMonoio, size, conns))
                .map(|(_, v)| median(&mut v.iter().map(|x| x.0).collect::<Vec<_>>()));
            for &server in &o.servers {
                let Some((_, v)) = cells.iter().find(|(k, _)| *k == (server, size, conns)) else { continue };
                let mut per: Vec<f64> = v.iter().map(|x| x.0).collect();
                let mut busy: Vec<f64> = v.iter().map(|x| x.1).collect();
                let m = median(&mut per);
                let (lo, hi) = (per[0], per[per.len() - 1]);
                let ratio = base.map_or("–".to_string(), |b| format!("{:.2}", m / b));
                md.push_str(&format!(
                    "| {size} B | {conns} | {} | {m:.0} | {lo:.0}–{hi:.0} | {ratio} | {:.0} % |\n",
                    server.name(),
                    median(&mut busy) * 100.0
                ));
            }
        }
    }
    if !idle.is_empty() {
        md.push_str(&format!(
            "\nServer RSS growth per idle WebSocket ({} connections, handshake done):\n\n",
            o.idle
        ));
        md.push_str("| server | KiB per WebSocket | failed |\n|---|---:|---:|\n");
        for (server, kib, failed) in idle {
            md.push_str(&format!("| {} | {kib:.2} | {failed} |\n", server.name()));
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_messages_split_anywhere() {
        // Two server frames: a 3-byte text and a 300-byte binary.
        let mut wire = vec![0x81, 3, b'a', b'b', b'c', 0x82, 126, 1, 44];
        wire.extend(std::iter::repeat(7).take(300));
        for cut in 0..wire.len() {
            let mut c = MessageCounter::default();
            assert_eq!(c.feed(&wire[..cut]) + c.feed(&wire[cut..]), 2, "cut at {cut}");
        }
    }

    #[test]
    fn client_frames_are_masked_and_sized() {
        let f = client_frames(20, 2);
        assert_eq!(f.len(), 2 * (2 + 4 + 20));
        assert_eq!(&f[..2], &[0x81, 0x80 | 20]);
        let f = client_frames(16384, 1);
        assert_eq!(&f[..4], &[0x81, 0x80 | 126, 0x40, 0x00]);
    }
}
