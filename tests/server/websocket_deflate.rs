//! permessage-deflate (RFC 7692) on `/ws` (the demo echo): negotiation in the `101`,
//! compressed messages both ways, the size limit applied while inflating (a deflate bomb),
//! RSV1 where it may not be, and `--ws-per-message-deflate false`. tungstenite 0.24 has no
//! permessage-deflate, so frames are written raw and compressed with flate2 here.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

use crate::support::*;
use crate::websocket::{close_code, frame, read_frame};

const FIN: u8 = 0x80;
const RSV1: u8 = 0x40;

/// Open `/ws` offering `extensions` (none if empty); the stream and the `101`'s head.
fn open_offering(s: &ServerProc, extensions: &[&str], extra: &[u8]) -> (TcpStream, String) {
    let mut request = String::from(
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
    );
    for e in extensions {
        request.push_str(&format!("Sec-WebSocket-Extensions: {e}\r\n"));
    }
    request.push_str("\r\n");
    let mut stream = s.connect();
    stream.write_all(&cat(&[request.as_bytes(), extra])).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut b).unwrap(), 1, "101 cut short: {:?}", String::from_utf8_lossy(&head));
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    (stream, head)
}

/// The `sec-websocket-extensions` value of a `101`, if it has one.
fn extensions(head: &str) -> Option<&str> {
    head.lines().find_map(|l| l.strip_prefix("sec-websocket-extensions: "))
}

/// A client's compressor: raw DEFLATE, a sync flush per message, the tail taken off.
struct Deflater(Compress);

impl Deflater {
    fn new() -> Deflater {
        Deflater(Compress::new(Compression::best(), false))
    }

    fn message(&mut self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() / 2 + 64);
        let start = self.0.total_in();
        loop {
            let taken = (self.0.total_in() - start) as usize;
            self.0.compress_vec(&data[taken..], &mut out, FlushCompress::Sync).unwrap();
            if self.0.total_in() - start == data.len() as u64 && out.len() < out.capacity() {
                break;
            }
            out.reserve(out.capacity());
        }
        assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
        out.truncate(out.len() - 4);
        out
    }
}

/// A client's inflater of the server's messages (context kept between them).
struct Inflater(Decompress);

impl Inflater {
    fn new() -> Inflater {
        Inflater(Decompress::new(false))
    }

    fn message(&mut self, payload: &[u8]) -> Vec<u8> {
        let input = [payload, &[0, 0, 0xff, 0xff]].concat();
        let mut out = Vec::with_capacity(64 * 1024);
        let start = self.0.total_in();
        loop {
            let taken = (self.0.total_in() - start) as usize;
            self.0.decompress_vec(&input[taken..], &mut out, FlushDecompress::Sync).unwrap();
            if self.0.total_in() - start == input.len() as u64 && out.len() < out.capacity() {
                return out;
            }
            out.reserve(out.capacity());
        }
    }
}

#[test]
fn negotiation_answers_the_first_acceptable_offer() {
    let s = ServerProc::start(&[]);
    let cases: [(&[&str], Option<&str>); 6] = [
        (&["permessage-deflate"], Some("permessage-deflate")),
        (
            &["permessage-deflate; client_max_window_bits; server_max_window_bits=10"],
            Some("permessage-deflate; server_max_window_bits=10"),
        ),
        (
            &["permessage-deflate; server_no_context_takeover; client_no_context_takeover"],
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
        ),
        // A window the server cannot compress with, and an unknown parameter, are declined;
        // the next offer is taken.
        (
            &[
                "permessage-deflate; server_max_window_bits=8, permessage-deflate; x=1",
                "permessage-deflate; server_max_window_bits=12",
            ],
            Some("permessage-deflate; server_max_window_bits=12"),
        ),
        (&["permessage-deflate; server_max_window_bits=8"], None),
        (&["x-webkit-deflate-frame"], None),
    ];
    for (offers, want) in cases {
        let (_stream, head) = open_offering(&s, offers, b"");
        assert_eq!(extensions(&head), want, "{offers:?}: {head}");
    }
}

#[test]
fn compressed_messages_are_echoed_compressed() {
    let s = ServerProc::start(&[]);
    let (mut stream, head) = open_offering(&s, &["permessage-deflate; client_max_window_bits"], b"");
    assert_eq!(extensions(&head), Some("permessage-deflate"));
    let (mut deflate, mut inflate) = (Deflater::new(), Inflater::new());
    let text = "hello κόσμε, hello κόσμε, hello κόσμε".repeat(20);
    for _ in 0..3 {
        // The same message again: context takeover both ways.
        stream.write_all(&frame(FIN | RSV1 | 1, &deflate.message(text.as_bytes()))).unwrap();
        let (b0, payload) = read_frame(&mut stream);
        assert_eq!(b0, FIN | RSV1 | 1, "a compressed text frame");
        assert!(payload.len() < text.len() / 4, "{} compressed bytes for {}", payload.len(), text.len());
        assert_eq!(inflate.message(&payload), text.as_bytes());
    }
    // Fragmented (RSV1 on the first frame only), a ping between the fragments.
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 7) as u8).collect();
    let z = deflate.message(&big);
    let (a, b) = z.split_at(z.len() / 2);
    stream.write_all(&[frame(RSV1 | 2, a), frame(FIN | 9, b"p"), frame(FIN, b)].concat()).unwrap();
    assert_eq!(read_frame(&mut stream), (FIN | 0xA, b"p".to_vec()));
    let (b0, payload) = read_frame(&mut stream);
    assert_eq!(b0, FIN | RSV1 | 2);
    assert_eq!(inflate.message(&payload), big);
    // An uncompressed message is fine too; the echo goes out compressed.
    stream.write_all(&frame(FIN | 1, b"plain")).unwrap();
    let (b0, payload) = read_frame(&mut stream);
    assert_eq!(b0, FIN | RSV1 | 1);
    assert_eq!(inflate.message(&payload), b"plain");
    // Control frames are never compressed.
    stream.write_all(&frame(FIN | 8, &1000u16.to_be_bytes())).unwrap();
    assert_eq!(read_frame(&mut stream), (FIN | 8, 1000u16.to_be_bytes().to_vec()));
}

/// The server's peak resident memory (VmHWM), in KiB.
fn peak_rss_kib(s: &ServerProc) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.pid())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_deflate_bomb_is_closed_with_1009_in_flat_memory() {
    let s = ServerProc::start(&["--ws-max-size", "1MiB", "--workers", "1"]);
    let (mut warm, _) = open_offering(&s, &["permessage-deflate"], b"");
    warm.write_all(&frame(FIN | RSV1 | 2, &Deflater::new().message(&[1; 1000]))).unwrap();
    read_frame(&mut warm);
    let before = peak_rss_kib(&s);
    // 256 MiB of zeros in about 256 KiB on the wire.
    let bomb = Deflater::new().message(&vec![0u8; 256 << 20]);
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());
    let (mut stream, _) = open_offering(&s, &["permessage-deflate"], b"");
    stream.write_all(&frame(FIN | RSV1 | 2, &bomb)).unwrap();
    assert_eq!(close_code(&mut stream), 1009);
    // Inflating stops at the limit: the server never held the 256 MiB.
    let grown = peak_rss_kib(&s).saturating_sub(before);
    assert!(grown < 32 * 1024, "peak memory grew by {grown} KiB");
    // A message that inflates to exactly the limit is fine.
    let (mut stream, _) = open_offering(&s, &["permessage-deflate"], b"");
    stream.write_all(&frame(FIN | RSV1 | 2, &Deflater::new().message(&vec![0u8; 1 << 20]))).unwrap();
    let (b0, payload) = read_frame(&mut stream);
    assert_eq!(b0, FIN | RSV1 | 2);
    assert_eq!(Inflater::new().message(&payload), vec![0u8; 1 << 20]);
}

#[test]
fn rsv1_where_it_may_not_be_is_1002() {
    let s = ServerProc::start(&[]);
    let hello = Deflater::new().message(b"Hello");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("compressed ping", frame(FIN | RSV1 | 9, b"")),
        ("compressed close", frame(FIN | RSV1 | 8, &1000u16.to_be_bytes())),
        ("RSV1 on a continuation", [frame(RSV1 | 1, &hello[..2]), frame(FIN | RSV1, &hello[2..])].concat()),
        ("RSV2", frame(FIN | 0x20 | 1, b"x")),
        ("not DEFLATE", frame(FIN | RSV1 | 2, &[0xff, 0xff, 0xff])),
    ];
    for (what, wire) in cases {
        let (mut stream, _) = open_offering(&s, &["permessage-deflate"], &wire);
        assert_eq!(close_code(&mut stream), 1002, "{what}");
    }
}

#[test]
fn flag_off_means_no_negotiation() {
    let s = ServerProc::start(&["--ws-per-message-deflate", "false"]);
    let (mut stream, head) = open_offering(&s, &["permessage-deflate"], b"");
    assert_eq!(extensions(&head), None, "{head}");
    // Without the extension RSV1 is a reserved bit.
    stream.write_all(&frame(FIN | RSV1 | 1, &Deflater::new().message(b"Hello"))).unwrap();
    assert_eq!(close_code(&mut stream), 1002);
    // Messages go out uncompressed.
    let (mut stream, _) = open_offering(&s, &["permessage-deflate"], &frame(FIN | 1, b"plain"));
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(read_frame(&mut stream), (FIN | 1, b"plain".to_vec()));
}
