//! Memory with many idle keep-alive connections: open them, make one request on each (so
//! every connection is accepted and has been served once), leave them idle, read the RSS.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const REQUEST: &[u8] = b"GET /plaintext HTTP/1.1\r\nHost: localhost\r\n\r\n";

/// Read one response to `GET /plaintext` (13-byte body) off a keep-alive connection.
fn read_response(s: &mut TcpStream) -> std::io::Result<()> {
    let mut buf = [0u8; 1024];
    let mut have = 0;
    loop {
        let n = s.read(&mut buf[have..])?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        have += n;
        let text = &buf[..have];
        if let Some(end) = text.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&text[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                .unwrap_or(0);
            if have >= end + 4 + len {
                return Ok(());
            }
        }
        if have == buf.len() {
            return Err(std::io::Error::other("response too long"));
        }
    }
}

pub struct Idle {
    pub conns: Vec<TcpStream>,
    pub failed: usize,
    pub seconds: f64,
}

/// Open `count` connections in batches of 500 (connect all, write all, read all).
pub fn open(port: u16, count: usize) -> Idle {
    let start = Instant::now();
    let mut conns = Vec::with_capacity(count);
    let mut failed = 0;
    while conns.len() + failed < count {
        let batch = (count - conns.len() - failed).min(500);
        let mut fresh = Vec::with_capacity(batch);
        for _ in 0..batch {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => fresh.push(s),
                Err(_) => failed += 1,
            }
        }
        let mut written = Vec::with_capacity(fresh.len());
        for mut s in fresh {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            match s.write_all(REQUEST) {
                Ok(()) => written.push(s),
                Err(_) => failed += 1,
            }
        }
        for mut s in written {
            match read_response(&mut s) {
                Ok(()) => conns.push(s),
                Err(_) => failed += 1,
            }
        }
    }
    Idle { conns, failed, seconds: start.elapsed().as_secs_f64() }
}

/// Are the connections still open (one more request on a sample of them)?
pub fn still_open(idle: &mut Idle, sample: usize) -> usize {
    let step = (idle.conns.len() / sample.max(1)).max(1);
    let mut ok = 0;
    for s in idle.conns.iter_mut().step_by(step).take(sample) {
        if s.write_all(REQUEST).is_ok() && read_response(s).is_ok() {
            ok += 1;
        }
    }
    ok
}
