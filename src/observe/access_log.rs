//! The access log: one line per answered request, in Apache common/combined, JSON, or a
//! gunicorn `--access-logformat` string, so migrating users keep their log parsers.
//!
//! Writing never blocks an executor: each executor appends lines to its own buffer, which
//! it hands to a writer thread when the buffer fills or on its next tick (100 ms). The
//! writer thread reopens the file on request (SIGUSR1, for logrotate).
//!
//! Memory stays bounded whatever happens to the output: what was handed over and not yet
//! written is capped by a byte budget (`--access-log-buffer`); past it, and when the output
//! fails (a closed pipe), lines are dropped and counted (`percore_access_log_dropped_total`)
//! instead of blocking executors or queueing without end. Header values are cut at
//! [`MAX_VALUE`] bytes, so a client cannot make one line large either.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::http::RequestHead;

/// A buffer is handed to the writer once it holds this much.
const FLUSH_AT: usize = 64 * 1024;

/// Longest header value (and request id) written to a line; longer ones are cut and end in
/// `...`. Eight KiB `User-Agent`s and `Referer`s otherwise make each line 16 KiB.
pub const MAX_VALUE: usize = 1024;

/// The default `--access-log-buffer`: lines handed to the writer and not yet written.
pub const DEFAULT_BUFFER: usize = 16 << 20;

/// Where the log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Off,
    Stdout,
    File(PathBuf),
}

impl Target {
    /// `-` (stdout), `off`, or a path.
    pub fn parse(s: &str) -> Target {
        match s {
            "-" => Target::Stdout,
            "off" | "" => Target::Off,
            path => Target::File(PathBuf::from(path)),
        }
    }
}

/// One element of a format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Literal(String),
    /// A gunicorn atom: `h`, `t`, `r`, `s`, ... or `{name}i` / `{name}o` / `{name}e`.
    Atom(String),
}

/// How lines look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    Json,
    Pieces(Vec<Piece>),
}

/// gunicorn's default, which is Apache's combined format.
const COMBINED: &str = r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#;
const COMMON: &str = r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s"#;
const ATOMS: &str = "hlutrmUqHsBbIfaTMDLp";

impl Format {
    /// `common`, `combined`, `json`, or a gunicorn format string such as
    /// `%(h)s %(t)s "%(r)s" %(s)s %(b)s %(D)s %({x-request-id}i)s`.
    pub fn parse(s: &str) -> Result<Format, String> {
        match s {
            "json" => return Ok(Format::Json),
            "common" => return Format::parse(COMMON),
            "combined" => return Format::parse(COMBINED),
            _ => {}
        }
        let mut pieces = Vec::new();
        let mut rest = s;
        while let Some(at) = rest.find("%(") {
            if at > 0 {
                pieces.push(Piece::Literal(rest[..at].to_string()));
            }
            let after = &rest[at + 2..];
            let end =
                after.find(")s").ok_or_else(|| format!("unterminated atom in access log format {s:?}"))?;
            let atom = &after[..end];
            let valid = (atom.len() == 1 && ATOMS.contains(atom))
                || (atom.starts_with('{')
                    && atom.len() > 3
                    && matches!(&atom[atom.len() - 2..], "}i" | "}o" | "}e"));
            if !valid {
                return Err(format!("unknown access log atom %({atom})s"));
            }
            pieces.push(Piece::Atom(atom.to_string()));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Literal(rest.to_string()));
        }
        if pieces.is_empty() {
            return Err("empty access log format (use common, combined, json or a gunicorn format)".into());
        }
        Ok(Format::Pieces(pieces))
    }
}

/// What is known about one answered request.
pub struct Entry<'a> {
    pub time: SystemTime,
    /// The client (the peer, or what a trusted proxy said); `None` for a peer on a Unix
    /// socket that no trusted header named, logged as `unix:`.
    pub client: Option<IpAddr>,
    pub scheme: &'a str,
    /// `None` for requests refused before a head was parsed.
    pub head: Option<&'a RequestHead>,
    pub status: u16,
    /// Body bytes sent (for a WebSocket, logged at its close: the bytes of its frames).
    pub bytes: u64,
    /// Bytes received, where they are counted: a WebSocket's frames (`%(I)s`, `bytes_in`).
    pub bytes_in: Option<u64>,
    pub duration: Duration,
    pub executor: usize,
    pub request_id: &'a str,
    pub response_headers: &'a [(&'a str, &'a [u8])],
    /// The verified client certificate's subject (mutual TLS): `%(u)s`, the remote user,
    /// as Apache's mod_ssl logs it with `SSLUserName SSL_CLIENT_S_DN`.
    pub client_cert: Option<&'a str>,
}

impl Entry<'_> {
    /// `%(h)s`: the client's address, or `unix:` for a Unix-socket peer.
    fn client(&self) -> String {
        self.client.map_or_else(|| crate::peer::Peer::Unix.to_string(), |ip| ip.to_string())
    }

    /// A request header's value, cut at [`MAX_VALUE`].
    fn request_header(&self, name: &str) -> Option<Cow<'_, [u8]>> {
        self.head.and_then(|h| h.header(name)).map(clip)
    }

    fn request_line(&self) -> String {
        match self.head {
            Some(h) => format!("{} {} {}", h.method(), h.target(), h.version().as_str()),
            None => "-".to_string(),
        }
    }
}

/// Append `entry` as one line to `out`.
pub fn format_line(format: &Format, entry: &Entry<'_>, out: &mut Vec<u8>) {
    match format {
        Format::Json => json_line(entry, out),
        Format::Pieces(pieces) => {
            for piece in pieces {
                match piece {
                    Piece::Literal(s) => out.extend_from_slice(s.as_bytes()),
                    Piece::Atom(a) => atom(a, entry, out),
                }
            }
        }
    }
    out.push(b'\n');
}

fn atom(a: &str, e: &Entry<'_>, out: &mut Vec<u8>) {
    let head = e.head;
    let dash = |v: Option<Cow<'_, [u8]>>| v.filter(|v| !v.is_empty()).map_or(b"-".to_vec(), |v| sanitize(&v));
    let text: Vec<u8> = match a {
        "h" => e.client().into_bytes(),
        "l" => b"-".to_vec(),
        "u" => dash(e.client_cert.map(|s| clip(s.as_bytes()))),
        "t" => format!("[{}]", clf_time(e.time)).into_bytes(),
        "r" => sanitize(e.request_line().as_bytes()),
        "m" => head.map_or("-", |h| h.method()).as_bytes().to_vec(),
        "U" => sanitize(head.map_or("-", |h| h.path()).as_bytes()),
        "q" => sanitize(head.and_then(|h| h.query()).unwrap_or("").as_bytes()),
        "H" => head.map_or("-", |h| h.version().as_str()).as_bytes().to_vec(),
        "s" => e.status.to_string().into_bytes(),
        "B" => e.bytes.to_string().into_bytes(),
        "b" if e.bytes == 0 => b"-".to_vec(),
        "b" => e.bytes.to_string().into_bytes(),
        "I" => e.bytes_in.map_or(b"-".to_vec(), |n| n.to_string().into_bytes()),
        "f" => dash(e.request_header("referer")),
        "a" => dash(e.request_header("user-agent")),
        "T" => e.duration.as_secs().to_string().into_bytes(),
        "M" => e.duration.as_millis().to_string().into_bytes(),
        "D" => e.duration.as_micros().to_string().into_bytes(),
        "L" => format!("{:.6}", e.duration.as_secs_f64()).into_bytes(),
        "p" => format!("<{}>", std::process::id()).into_bytes(),
        _ if a.ends_with("}i") => dash(e.request_header(&a[1..a.len() - 2])),
        _ if a.ends_with("}o") => {
            let name = &a[1..a.len() - 2];
            dash(e.response_headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| clip(v)))
        }
        _ if a.ends_with("}e") => {
            dash(std::env::var(&a[1..a.len() - 2]).ok().as_deref().map(|v| clip(v.as_bytes())))
        }
        _ => b"-".to_vec(),
    };
    out.extend_from_slice(&text);
}

fn json_line(e: &Entry<'_>, out: &mut Vec<u8>) {
    let head = e.head;
    let mut fields: Vec<(&str, String)> = vec![
        ("time", json_str(&rfc3339(e.time))),
        ("client", json_str(&e.client())),
        ("scheme", json_str(e.scheme)),
        ("method", json_opt(head.map(|h| h.method().as_bytes()))),
        ("target", json_opt(head.map(|h| h.target().as_bytes()))),
        ("version", json_opt(head.map(|h| h.version().as_str().as_bytes()))),
        ("status", e.status.to_string()),
        ("bytes", e.bytes.to_string()),
        ("duration_us", e.duration.as_micros().to_string()),
        ("executor", e.executor.to_string()),
        ("request_id", json_opt(Some(clip(e.request_id.as_bytes())))),
        ("user_agent", json_opt(e.request_header("user-agent"))),
        ("referer", json_opt(e.request_header("referer"))),
    ];
    if let Some(n) = e.bytes_in {
        fields.push(("bytes_in", n.to_string()));
    }
    if let Some(subject) = e.client_cert {
        fields.push(("client_cert", json_opt(Some(clip(subject.as_bytes())))));
    }
    if let Some(trace) = e.request_header("x-amzn-trace-id") {
        fields.push(("amzn_trace_id", json_opt(Some(trace))));
    }
    out.push(b'{');
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(format!("\"{k}\":{v}").as_bytes());
    }
    out.push(b'}');
}

fn json_opt(v: Option<impl AsRef<[u8]>>) -> String {
    match v {
        Some(v) => json_str(&String::from_utf8_lossy(v.as_ref())),
        None => "null".to_string(),
    }
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `v`, or its first [`MAX_VALUE`] bytes followed by `...` when it is longer.
fn clip(v: &[u8]) -> Cow<'_, [u8]> {
    if v.len() <= MAX_VALUE {
        return Cow::Borrowed(v);
    }
    let mut cut = Vec::with_capacity(MAX_VALUE + 3);
    cut.extend_from_slice(&v[..MAX_VALUE]);
    cut.extend_from_slice(b"...");
    Cow::Owned(cut)
}

/// Bytes from the client, made safe for a text log line: quotes, backslashes and
/// non-printable bytes are escaped, so a header cannot forge a second line or a field.
fn sanitize(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    for &b in v {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x20..=0x7e => out.push(b),
            _ => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
        }
    }
    out
}

/// Civil date from days since 1970-01-01 (proleptic Gregorian).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn split(time: SystemTime) -> (i64, u32, u32, u64, u64, u64, u32) {
    let d = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil((secs / 86_400) as i64);
    let rem = secs % 86_400;
    (y, m, day, rem / 3600, rem % 3600 / 60, rem % 60, d.subsec_millis())
}

/// `10/Oct/2000:13:55:36 +0000` (UTC).
fn clf_time(time: SystemTime) -> String {
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let (y, m, d, hh, mm, ss, _) = split(time);
    format!("{d:02}/{}/{y}:{hh:02}:{mm:02}:{ss:02} +0000", MONTHS[(m - 1) as usize])
}

/// `2000-10-10T13:55:36.123Z`.
fn rfc3339(time: SystemTime) -> String {
    let (y, m, d, hh, mm, ss, ms) = split(time);
    format!("{y}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{ms:03}Z")
}

enum Message {
    Lines(Vec<u8>),
    Reopen,
}

/// The bound between the executors and the writer thread.
///
/// Touched once per handed-over buffer (64 KiB or a 100 ms tick), never per request, so
/// the shared atomics stay off the request path.
#[derive(Debug)]
struct Queue {
    /// Bytes handed to the writer and not yet written.
    bytes: AtomicUsize,
    /// Most bytes `bytes` may reach (`--access-log-buffer`).
    budget: usize,
    /// Lines dropped (queue full, or the output failing); `/metrics` reads it.
    dropped: Arc<AtomicU64>,
    /// Whether the "queue full" warning was given (it is given once).
    warned_full: AtomicBool,
}

impl Queue {
    /// Take room for `len` bytes; false when that would pass the budget.
    fn reserve(&self, len: usize) -> bool {
        let before = self.bytes.fetch_add(len, Relaxed);
        if before + len <= self.budget {
            return true;
        }
        self.bytes.fetch_sub(len, Relaxed);
        false
    }

    /// `len` bytes left the queue (written, or dropped by the writer).
    fn release(&self, len: usize) {
        self.bytes.fetch_sub(len, Relaxed);
    }

    /// Count the lines of `lines` as dropped.
    fn drop_lines(&self, lines: &[u8]) {
        let n = lines.iter().filter(|&&b| b == b'\n').count() as u64;
        self.dropped.fetch_add(n, Relaxed);
    }

    /// The queue is full: drop `lines`, and say so the first time.
    fn overflow(&self, lines: &[u8]) {
        self.drop_lines(lines);
        if !self.warned_full.swap(true, Relaxed) {
            tracing::warn!(
                budget_bytes = self.budget,
                "access log output is not keeping up: lines are dropped while its queue is full \
                 (counted in percore_access_log_dropped_total; this is said once)"
            );
        }
    }
}

/// The shared end of the access log: a format and the channel to the writer thread.
#[derive(Clone)]
pub struct AccessLog {
    format: Arc<Format>,
    tx: Sender<Message>,
    queue: Arc<Queue>,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog").field("format", &self.format).field("queue", &self.queue).finish()
    }
}

impl AccessLog {
    /// Start the writer thread (opening the file now, so a bad path fails at start). At most
    /// `budget` bytes wait for the writer; lines beyond it are dropped and counted in
    /// `dropped`.
    pub fn start(
        target: &Target,
        format: Format,
        budget: usize,
        dropped: Arc<AtomicU64>,
    ) -> io::Result<Option<AccessLog>> {
        let sink = match target {
            Target::Off => return Ok(None),
            Target::Stdout => Sink::Stdout,
            Target::File(path) => Sink::File(path.clone(), open(path)?),
        };
        let queue = Arc::new(Queue {
            bytes: AtomicUsize::new(0),
            budget,
            dropped,
            warned_full: AtomicBool::new(false),
        });
        let (tx, rx) = mpsc::channel();
        let writer = queue.clone();
        std::thread::Builder::new()
            .name("percore-access-log".into())
            .spawn(move || write_loop(sink, rx, &writer))?;
        Ok(Some(AccessLog { format: Arc::new(format), tx, queue }))
    }

    /// The same log (writer, queue) with another format, for executors started from now on
    /// (a SIGHUP that changed `access-log-format`).
    pub fn with_format(&self, format: Format) -> AccessLog {
        AccessLog { format: Arc::new(format), ..self.clone() }
    }

    /// Reopen the file (after logrotate moved it).
    pub fn reopen(&self) {
        let _ = self.tx.send(Message::Reopen);
    }

    /// Hand `lines` to the writer, or drop them when the queue is full.
    fn hand_over(&self, lines: Vec<u8>) {
        if !self.queue.reserve(lines.len()) {
            self.queue.overflow(&lines);
            return;
        }
        let len = lines.len();
        if let Err(mpsc::SendError(Message::Lines(lost))) = self.tx.send(Message::Lines(lines)) {
            // The writer thread is gone (it cannot start lines after a panic): count them.
            self.queue.release(len);
            self.queue.drop_lines(&lost);
        }
    }

    /// This executor's buffer.
    pub fn local(&self, executor: usize) -> LocalAccessLog {
        let seed = SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
            ^ ((executor as u64 + 1) << 48);
        LocalAccessLog {
            shared: self.clone(),
            executor,
            buf: RefCell::new(Vec::new()),
            ids: Cell::new(seed | 1),
        }
    }
}

/// One executor's side of the access log: a buffer only its thread touches.
pub struct LocalAccessLog {
    shared: AccessLog,
    executor: usize,
    buf: RefCell<Vec<u8>>,
    ids: Cell<u64>,
}

impl LocalAccessLog {
    pub fn executor(&self) -> usize {
        self.executor
    }

    /// A new request id (16 hex digits), for requests that came without `X-Request-Id`.
    pub fn new_request_id(&self) -> String {
        let mut x = self.ids.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.ids.set(x);
        format!("{x:016x}")
    }

    /// Append one entry; hands the buffer over once it is large.
    pub fn log(&self, entry: &Entry<'_>) {
        let mut buf = self.buf.borrow_mut();
        format_line(&self.shared.format, entry, &mut buf);
        if buf.len() >= FLUSH_AT {
            self.shared.hand_over(std::mem::take(&mut *buf));
        }
    }

    /// Hand over whatever is buffered (called on each executor tick and at exit).
    pub fn flush(&self) {
        let mut buf = self.buf.borrow_mut();
        if !buf.is_empty() {
            self.shared.hand_over(std::mem::take(&mut *buf));
        }
    }
}

impl Drop for LocalAccessLog {
    fn drop(&mut self) {
        self.flush();
    }
}

enum Sink {
    Stdout,
    File(PathBuf, File),
}

impl Sink {
    fn write(&mut self, lines: &[u8]) -> io::Result<()> {
        match self {
            Sink::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(lines).and_then(|()| out.flush())
            }
            Sink::File(_, f) => f.write_all(lines),
        }
    }
}

/// Whether the server could open `target` (for `percore check-config`), without creating or
/// changing anything: an existing file must open for appending, a new one needs a writable
/// directory.
pub fn check_target(target: &Target) -> io::Result<()> {
    let Target::File(path) = target else { return Ok(()) };
    if path.exists() {
        return OpenOptions::new().append(true).open(path).map(drop).map_err(|e| in_path(path, e));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    let meta = std::fs::metadata(dir).map_err(|e| in_path(dir, e))?;
    if !meta.is_dir() {
        return Err(in_path(dir, io::Error::new(io::ErrorKind::NotADirectory, "not a directory")));
    }
    writable(dir).map_err(|e| in_path(dir, e))
}

/// `e`, naming `path`.
fn in_path(path: &std::path::Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// access(2): whether this process may create files in `dir`.
fn writable(dir: &std::path::Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    // SAFETY: access(2) with a valid NUL-terminated path.
    match unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

fn open(path: &PathBuf) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// The writer thread: write what arrives; a failed write drops its lines (counted) and is
/// logged once until writing works again, so a reader that went away (EPIPE) or a full disk
/// neither ends the server nor floods its log.
fn write_loop(mut sink: Sink, rx: Receiver<Message>, queue: &Queue) {
    let mut failing = false;
    for msg in rx {
        match msg {
            Message::Lines(lines) => {
                let result = sink.write(&lines);
                queue.release(lines.len());
                match result {
                    Ok(()) if failing => {
                        failing = false;
                        tracing::info!("access log writes work again");
                    }
                    Ok(()) => {}
                    Err(e) => {
                        queue.drop_lines(&lines);
                        if !failing {
                            failing = true;
                            tracing::warn!(
                                error = %e,
                                "cannot write the access log; dropping its lines until writes work again \
                                 (counted in percore_access_log_dropped_total)"
                            );
                        }
                    }
                }
            }
            Message::Reopen => reopen(&mut sink),
        }
    }
}

/// SIGUSR1: open the file's path again (logrotate moved the old one away).
fn reopen(sink: &mut Sink) {
    let Sink::File(path, file) = sink else { return };
    match open(path) {
        Ok(f) => {
            *file = f;
            tracing::info!(path = %path.display(), "access log reopened");
        }
        Err(e) => tracing::error!(error = %e, path = %path.display(), "cannot reopen the access log"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{parse_head, Limits};
    use bytes::Bytes;

    fn head(raw: &[u8]) -> RequestHead {
        let p = parse_head(raw, &Limits::default()).unwrap().unwrap();
        let len = p.len;
        p.into_head(Bytes::copy_from_slice(&raw[..len]))
    }

    fn line(format: &str, entry: &Entry<'_>) -> String {
        let mut out = Vec::new();
        format_line(&Format::parse(format).unwrap(), entry, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn formats() {
        let h =
            head(b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nUser-Agent: curl/8 \"q\"\r\nX-Request-Id: abc\r\n\r\n");
        let e = Entry {
            time: UNIX_EPOCH + Duration::from_secs(971_186_136),
            client: Some("10.0.0.1".parse().unwrap()),
            scheme: "http",
            head: Some(&h),
            status: 200,
            bytes: 13,
            bytes_in: None,
            duration: Duration::from_micros(1234),
            executor: 1,
            request_id: "abc",
            response_headers: &[("content-type", b"text/plain")],
            client_cert: None,
        };
        assert_eq!(
            line("combined", &e),
            "10.0.0.1 - - [10/Oct/2000:13:55:36 +0000] \"GET /a?b=1 HTTP/1.1\" 200 13 \"-\" \"curl/8 \\\"q\\\"\"\n"
        );
        assert_eq!(
            line("%(h)s %(s)s %(D)s %({x-request-id}i)s %({content-type}o)s %(m)s %(U)s %(q)s", &e),
            "10.0.0.1 200 1234 abc text/plain GET /a b=1\n"
        );
        let json = line("json", &e);
        assert!(json.starts_with("{\"time\":\"2000-10-10T13:55:36.000Z\",\"client\":\"10.0.0.1\""), "{json}");
        assert!(json.contains("\"duration_us\":1234") && json.contains("\"request_id\":\"abc\""), "{json}");
        let mtls = Entry { client_cert: Some("CN=alice,O=Example"), ..e };
        assert_eq!(line("%(u)s %(s)s", &mtls), "CN=alice,O=Example 200\n");
        assert!(line("json", &mtls).contains("\"client_cert\":\"CN=alice,O=Example\""));
        let unix = Entry { client: None, ..mtls };
        assert_eq!(line("%(h)s %(s)s", &unix), "unix: 200\n");
        assert!(line("json", &unix).contains("\"client\":\"unix:\""));
        assert_eq!(line("%(b)s %(I)s", &unix), "13 -\n");
        assert!(!line("json", &unix).contains("bytes_in"));
        // A WebSocket's line, written at its close: bytes each way.
        let ws = Entry { status: 101, bytes: 300, bytes_in: Some(120), ..unix };
        assert_eq!(line("%(s)s %(b)s %(I)s", &ws), "101 300 120\n");
        assert!(
            line("json", &ws).contains("\"bytes\":300,") && line("json", &ws).contains("\"bytes_in\":120")
        );
        assert!(Format::parse("%(zz)s").is_err());
        assert!(Format::parse("%(h").is_err());
    }

    /// The file's text once `done` says so (the writer thread writes it), within 5 s.
    fn read_when(path: &PathBuf, done: impl Fn(&str) -> bool) -> String {
        let start = std::time::Instant::now();
        loop {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if done(&text) || start.elapsed() > Duration::from_secs(5) {
                return text;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn entry(head: &RequestHead) -> Entry<'_> {
        Entry {
            time: UNIX_EPOCH,
            client: Some("10.0.0.1".parse().unwrap()),
            scheme: "http",
            head: Some(head),
            status: 200,
            bytes: 1,
            bytes_in: None,
            duration: Duration::ZERO,
            executor: 0,
            request_id: "r",
            response_headers: &[],
            client_cert: None,
        }
    }

    #[test]
    fn long_header_values_are_cut() {
        let long = "u".repeat(4 * 1024);
        let raw = format!("GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: {long}\r\nReferer: {long}\r\n\r\n");
        let h = head(raw.as_bytes());
        let e = entry(&h);
        let cut = format!("{}...", "u".repeat(MAX_VALUE));
        let combined = line("combined", &e);
        assert!(combined.len() < 3 * MAX_VALUE, "{} bytes", combined.len());
        assert!(combined.ends_with(&format!("\"{cut}\" \"{cut}\"\n")), "{combined}");
        let json = line("json", &e);
        assert!(json.contains(&format!("\"user_agent\":\"{cut}\"")), "{json}");
        assert!(json.len() < 3 * MAX_VALUE, "{} bytes", json.len());
        let short = head(b"GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: ua\r\n\r\n");
        assert!(line("%(a)s", &entry(&short)) == "ua\n");
    }

    #[test]
    fn a_full_queue_drops_and_counts_lines() {
        let path = std::env::temp_dir().join(format!("percore-al-{}-full.log", std::process::id()));
        let dropped = Arc::new(AtomicU64::new(0));
        // Room for about one line.
        let log = AccessLog::start(
            &Target::File(path.clone()),
            Format::parse("%(s)s %(U)s").unwrap(),
            12,
            dropped.clone(),
        )
        .unwrap()
        .unwrap();
        let h = head(b"GET /abcdef HTTP/1.1\r\nHost: x\r\n\r\n");
        let local = log.local(0);
        local.log(&entry(&h));
        local.log(&entry(&h));
        local.flush();
        assert_eq!(dropped.load(Relaxed), 2, "a buffer over the budget is dropped whole");
        local.log(&entry(&h));
        local.flush();
        let written = read_when(&path, |text| !text.is_empty());
        assert_eq!(written, "200 /abcdef\n");
        assert_eq!(dropped.load(Relaxed), 2);
        std::fs::remove_file(path).unwrap();
    }
}
