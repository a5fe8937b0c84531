//! The access log: one line per answered request, in Apache common/combined, JSON, or a
//! gunicorn `--access-logformat` string, so migrating users keep their log parsers.
//!
//! Writing never blocks an executor: each executor appends lines to its own buffer, which
//! it hands to a writer thread when the buffer fills or on its next tick (100 ms). The
//! writer thread reopens the file on request (SIGUSR1, for logrotate).

use std::cell::{Cell, RefCell};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::http::RequestHead;

/// A buffer is handed to the writer once it holds this much.
const FLUSH_AT: usize = 64 * 1024;

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
const ATOMS: &str = "hlutrmUqHsBbfaTMDLp";

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
    /// The client (the peer, or what a trusted proxy said).
    pub client: IpAddr,
    pub scheme: &'a str,
    /// `None` for requests refused before a head was parsed.
    pub head: Option<&'a RequestHead>,
    pub status: u16,
    /// Body bytes sent.
    pub bytes: u64,
    pub duration: Duration,
    pub executor: usize,
    pub request_id: &'a str,
    pub response_headers: &'a [(&'a str, &'a [u8])],
}

impl Entry<'_> {
    fn request_header(&self, name: &str) -> Option<&[u8]> {
        self.head.and_then(|h| h.header(name))
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
    let dash = |v: Option<&[u8]>| v.filter(|v| !v.is_empty()).map_or(b"-".to_vec(), sanitize);
    let text: Vec<u8> = match a {
        "h" => e.client.to_string().into_bytes(),
        "l" | "u" => b"-".to_vec(),
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
            dash(e.response_headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v))
        }
        _ if a.ends_with("}e") => dash(std::env::var(&a[1..a.len() - 2]).ok().as_deref().map(str::as_bytes)),
        _ => b"-".to_vec(),
    };
    out.extend_from_slice(&text);
}

fn json_line(e: &Entry<'_>, out: &mut Vec<u8>) {
    let head = e.head;
    let mut fields: Vec<(&str, String)> = vec![
        ("time", json_str(&rfc3339(e.time))),
        ("client", json_str(&e.client.to_string())),
        ("scheme", json_str(e.scheme)),
        ("method", json_opt(head.map(|h| h.method().as_bytes()))),
        ("target", json_opt(head.map(|h| h.target().as_bytes()))),
        ("version", json_opt(head.map(|h| h.version().as_str().as_bytes()))),
        ("status", e.status.to_string()),
        ("bytes", e.bytes.to_string()),
        ("duration_us", e.duration.as_micros().to_string()),
        ("executor", e.executor.to_string()),
        ("request_id", json_str(e.request_id)),
        ("user_agent", json_opt(e.request_header("user-agent"))),
        ("referer", json_opt(e.request_header("referer"))),
    ];
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

fn json_opt(v: Option<&[u8]>) -> String {
    match v {
        Some(v) => json_str(&String::from_utf8_lossy(v)),
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

/// The shared end of the access log: a format and the channel to the writer thread.
#[derive(Clone)]
pub struct AccessLog {
    format: Arc<Format>,
    tx: Sender<Message>,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog").field("format", &self.format).finish()
    }
}

impl AccessLog {
    /// Start the writer thread (opening the file now, so a bad path fails at start).
    pub fn start(target: &Target, format: Format) -> io::Result<Option<AccessLog>> {
        let sink = match target {
            Target::Off => return Ok(None),
            Target::Stdout => Sink::Stdout,
            Target::File(path) => Sink::File(path.clone(), open(path)?),
        };
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new().name("percore-access-log".into()).spawn(move || write_loop(sink, rx))?;
        Ok(Some(AccessLog { format: Arc::new(format), tx }))
    }

    /// Reopen the file (after logrotate moved it).
    pub fn reopen(&self) {
        let _ = self.tx.send(Message::Reopen);
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
            let full = std::mem::take(&mut *buf);
            let _ = self.shared.tx.send(Message::Lines(full));
        }
    }

    /// Hand over whatever is buffered (called on each executor tick and at exit).
    pub fn flush(&self) {
        let mut buf = self.buf.borrow_mut();
        if !buf.is_empty() {
            let full = std::mem::take(&mut *buf);
            let _ = self.shared.tx.send(Message::Lines(full));
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

fn open(path: &PathBuf) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn write_loop(mut sink: Sink, rx: Receiver<Message>) {
    for msg in rx {
        match msg {
            Message::Lines(lines) => {
                let result = match &mut sink {
                    Sink::Stdout => io::stdout().lock().write_all(&lines),
                    Sink::File(_, f) => f.write_all(&lines),
                };
                if let Err(e) = result {
                    tracing::warn!(error = %e, "cannot write the access log");
                }
            }
            Message::Reopen => {
                if let Sink::File(path, file) = &mut sink {
                    match open(path) {
                        Ok(f) => {
                            *file = f;
                            tracing::info!(path = %path.display(), "access log reopened");
                        }
                        Err(e) => {
                            tracing::error!(error = %e, path = %path.display(), "cannot reopen the access log")
                        }
                    }
                }
            }
        }
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
            client: "10.0.0.1".parse().unwrap(),
            scheme: "http",
            head: Some(&h),
            status: 200,
            bytes: 13,
            duration: Duration::from_micros(1234),
            executor: 1,
            request_id: "abc",
            response_headers: &[("content-type", b"text/plain")],
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
        assert!(Format::parse("%(zz)s").is_err());
        assert!(Format::parse("%(h").is_err());
    }
}
