//! Server-Sent Events (`Response::sse`, the demo route `/events`): headers, each event written
//! as it is produced, keepalive comments, `Last-Event-ID`, and a drain that ends the stream
//! between two events with the chunked terminator.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::*;

/// A raw client that reads an event stream chunk by chunk, noting when each chunk arrived.
struct SseClient {
    reader: BufReader<TcpStream>,
}

/// One chunk of the body, or the end of the chunked body.
#[derive(Debug, PartialEq)]
enum Chunk {
    Data(String, Instant),
    End,
}

impl SseClient {
    /// Send `GET path` with `extra` header lines; the status and headers (lower-cased names).
    fn open(s: &ServerProc, path: &str, extra: &str) -> (SseClient, u16, Vec<(String, String)>) {
        let mut stream = s.connect();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n").unwrap();
        let mut c = SseClient { reader: BufReader::new(stream) };
        let status_line = c.line();
        let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status line");
        let mut headers = Vec::new();
        loop {
            let line = c.line();
            if line.is_empty() {
                break;
            }
            let (n, v) = line.split_once(':').expect("header line");
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        (c, status, headers)
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read (a timeout means the server held an event)");
        assert!(line.ends_with("\r\n"), "connection closed mid-line: {line:?}");
        line.truncate(line.len() - 2);
        line
    }

    fn chunk(&mut self) -> Chunk {
        let size = usize::from_str_radix(&self.line(), 16).expect("chunk size");
        let at = Instant::now();
        if size == 0 {
            assert_eq!(self.line(), "", "the last chunk ends with an empty line (no trailers)");
            return Chunk::End;
        }
        let mut data = vec![0; size + 2];
        self.reader.read_exact(&mut data).expect("a whole chunk");
        assert!(data.ends_with(b"\r\n"), "chunk not followed by CRLF");
        data.truncate(size);
        Chunk::Data(String::from_utf8(data).expect("UTF-8 event"), at)
    }

    /// Whether the server closed the connection (EOF) within the read timeout.
    fn closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.reader.read(&mut byte), Ok(0))
    }
}

fn counter(n: u64) -> String {
    format!("id: {n}\nevent: counter\ndata: {n}\n\n")
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

#[test]
fn sse_headers_and_events_arrive_one_by_one() {
    let s = ServerProc::start(&[]);
    let sent = Instant::now();
    let (mut c, status, headers) = SseClient::open(&s, "/events?count=3&ms=400", "");
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), Some("text/event-stream"));
    assert_eq!(header(&headers, "cache-control"), Some("no-cache"));
    assert_eq!(header(&headers, "x-accel-buffering"), Some("no"));
    assert_eq!(header(&headers, "transfer-encoding"), Some("chunked"));
    let mut times = Vec::new();
    for n in 1..=3 {
        match c.chunk() {
            Chunk::Data(event, at) => {
                assert_eq!(event, counter(n), "event {n} is one whole chunk (no ping at the default 15 s)");
                times.push(at.duration_since(sent));
            }
            Chunk::End => panic!("stream ended after {} events", n - 1),
        }
    }
    assert_eq!(c.chunk(), Chunk::End);
    // The first event is produced at once and must not wait for the second.
    assert!(times[0] < Duration::from_millis(300), "first event held back: {times:?}");
    for w in times.windows(2) {
        assert!(
            w[1] - w[0] >= Duration::from_millis(300),
            "events batched instead of written as produced: {times:?}"
        );
    }
    // A finished event stream leaves the connection open for the next request.
    c.reader.get_mut().write_all(&get("/plaintext")).unwrap();
    assert!(c.line().starts_with("HTTP/1.1 200"), "keep-alive after the event stream");
}

#[test]
fn sse_ping_comments_while_no_event_comes() {
    let s = ServerProc::start(&["--sse-ping-interval", "100ms"]);
    let (mut c, status, _) = SseClient::open(&s, "/events?count=2&ms=550", "");
    assert_eq!(status, 200);
    let mut chunks = Vec::new();
    while let Chunk::Data(data, _) = c.chunk() {
        chunks.push(data);
    }
    assert_eq!(chunks.first(), Some(&counter(1)), "{chunks:?}");
    assert_eq!(chunks.last(), Some(&counter(2)), "{chunks:?}");
    let pings = &chunks[1..chunks.len() - 1];
    assert!(pings.len() >= 3, "expected a ping every 100 ms in the 550 ms gap: {chunks:?}");
    assert!(pings.iter().all(|p| p == ": ping\n\n"), "{chunks:?}");
}

#[test]
fn sse_resumes_after_last_event_id() {
    let s = ServerProc::start(&[]);
    let (mut c, status, _) = SseClient::open(&s, "/events?count=5&ms=0", "Last-Event-ID: 3\r\n");
    assert_eq!(status, 200);
    assert!(matches!(c.chunk(), Chunk::Data(e, _) if e == counter(4)));
    assert!(matches!(c.chunk(), Chunk::Data(e, _) if e == counter(5)));
    assert_eq!(c.chunk(), Chunk::End);
    let (_, status, _) = SseClient::open(&s, "/events", "Last-Event-ID: x\r\n");
    assert_eq!(status, 400, "a Last-Event-ID the demo did not send");
}

/// SIGTERM while the stream waits, and while it writes as fast as the client reads (a stream
/// that never waits): either way, whole events, then `0\r\n\r\n`, then the close.
#[test]
fn sse_sigterm_ends_the_stream_between_events() {
    for (path, label) in [("/events?count=1000&ms=200", "waiting"), ("/events?count=1000000&ms=0", "busy")] {
        let mut s = ServerProc::start(&[]);
        let (mut c, status, _) = SseClient::open(&s, path, "");
        assert_eq!(status, 200);
        for n in 1..=2 {
            assert!(matches!(c.chunk(), Chunk::Data(e, _) if e == counter(n)), "{label}: event {n}");
        }
        s.signal(libc::SIGTERM);
        let mut n = 3;
        while let Chunk::Data(e, _) = c.chunk() {
            assert_eq!(e, counter(n), "{label}: after SIGTERM, only whole events in order");
            n += 1;
            assert!(n < 1_000_000, "{label}: the drain never ended the stream");
        }
        assert!(c.closed(), "{label}: connection closed after the drained stream");
        let status = s.wait_exit(Duration::from_secs(10)).expect("percore did not stop on SIGTERM");
        assert!(status.success(), "{label}: exit {status:?}");
    }
}

/// A SIGHUP reload drains the old executor while the server goes on: the stream ends between
/// events, and the client, reconnecting with the last id it saw, misses no event.
#[test]
fn sse_reload_ends_the_stream_and_the_client_resumes_after_its_last_event() {
    let mut s = ServerProc::start(&[]);
    let (mut c, status, _) = SseClient::open(&s, "/events?count=1000&ms=100", "");
    assert_eq!(status, 200);
    assert!(matches!(c.chunk(), Chunk::Data(e, _) if e == counter(1)));
    s.signal(libc::SIGHUP);
    let mut last = 1;
    while let Chunk::Data(e, _) = c.chunk() {
        assert_eq!(e, counter(last + 1), "only whole events in order until the drain");
        last += 1;
        assert!(last < 1000, "the reload never ended the stream");
    }
    assert!(c.closed(), "connection closed after the drained stream");
    assert!(s.wait_log("reload done", Duration::from_secs(10)), "reload did not finish");
    let (mut c, status, _) =
        SseClient::open(&s, "/events?count=1000&ms=100", &format!("Last-Event-ID: {last}\r\n"));
    assert_eq!(status, 200, "the new executor serves the reconnect");
    assert!(matches!(c.chunk(), Chunk::Data(e, _) if e == counter(last + 1)), "resumed after event {last}");
}
