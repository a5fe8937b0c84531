//! Criterion micro-benchmarks of percore's sans-IO codec, each beside bare httparse on the
//! same input where httparse does the same job:
//!
//! - `head/*`: one typical ~400-byte browser request head;
//! - `pipelined16/*`: a batch of 16 pipelined requests, every head parsed in a loop;
//! - `chunked/*`: a 16 KiB chunked request body (16 chunks of 1 KiB, one with an extension,
//!   and a trailer), decoded to the end;
//! - `response/*`: a `200 OK` head plus body encoded into a reused `BytesMut`.
//!
//! Run from the repository root with
//! `cargo bench --manifest-path benches/compare/Cargo.toml --bench codec` (about a minute).
//! Sample sizes are kept small on purpose; add `-- --sample-size 100` for tighter bounds.

use std::hint::black_box;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use percore::http::body::{BodyDecoder, Decoded};
use percore::http::response::{encode_head, BodyLength, ConnectionHeader};
use percore::http::{parse_head, Framing, Limits};

/// A typical browser request head (399 bytes; the same one as the root crate's `benches/codec.rs`).
const HEAD: &[u8] = b"GET /products/list?page=2&sort=price HTTP/1.1\r\n\
Host: shop.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Connection: keep-alive\r\n\
Cookie: session=0123456789abcdef; theme=dark\r\n\
Upgrade-Insecure-Requests: 1\r\n\r\n";

/// The request the TechEmpower plaintext test pipelines (what a load generator sends).
const PIPELINED_REQUEST: &[u8] = b"GET /plaintext HTTP/1.1\r\n\
Host: localhost\r\n\
Accept: text/plain,text/html;q=0.9,application/xhtml+xml;q=0.9,application/xml;q=0.8,*/*;q=0.7\r\n\
Connection: keep-alive\r\n\r\n";

const PIPELINE_DEPTH: usize = 16;
const DATE: &[u8] = b"Mon, 23 Nov 2026 08:02:31 GMT";
const BODY: &[u8] = b"Hello, World!";

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

fn httparse_head(buf: &[u8]) -> usize {
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!("httparse: {other:?}"),
    }
}

fn bench_head(c: &mut Criterion) {
    let limits = Limits::default();
    assert_eq!(parse_head(HEAD, &limits).unwrap().unwrap().len, HEAD.len());
    let mut g = c.benchmark_group("head");
    g.throughput(Throughput::Bytes(HEAD.len() as u64));
    g.bench_function("httparse", |b| b.iter(|| httparse_head(black_box(HEAD))));
    g.bench_function("percore_parse_head", |b| {
        b.iter(|| parse_head(black_box(HEAD), &limits).unwrap().unwrap())
    });
    g.finish();
}

fn bench_pipelined(c: &mut Criterion) {
    let limits = Limits::default();
    let batch: Vec<u8> = PIPELINED_REQUEST.repeat(PIPELINE_DEPTH);
    let mut g = c.benchmark_group("pipelined16");
    g.throughput(Throughput::Elements(PIPELINE_DEPTH as u64));
    g.bench_function("httparse", |b| {
        b.iter(|| {
            let buf = black_box(&batch[..]);
            let (mut at, mut n) = (0, 0);
            while at < buf.len() {
                at += httparse_head(&buf[at..]);
                n += 1;
            }
            assert_eq!(n, PIPELINE_DEPTH);
        })
    });
    g.bench_function("percore_parse_head", |b| {
        b.iter(|| {
            let buf = black_box(&batch[..]);
            let (mut at, mut n) = (0, 0);
            while at < buf.len() {
                let parsed = parse_head(&buf[at..], &limits).unwrap().unwrap();
                at += parsed.len;
                n += 1;
                black_box(&parsed);
            }
            assert_eq!(n, PIPELINE_DEPTH);
        })
    });
    g.finish();
}

/// 16 chunks of 1 KiB (the third with an extension), then a trailer.
fn chunked_body() -> (Vec<u8>, usize) {
    let mut body = Vec::new();
    let mut data = 0;
    for i in 0..16 {
        let chunk = vec![b'a' + i as u8; 1024];
        if i == 2 {
            body.extend_from_slice(b"400;name=value\r\n");
        } else {
            body.extend_from_slice(b"400\r\n");
        }
        body.extend_from_slice(&chunk);
        body.extend_from_slice(b"\r\n");
        data += chunk.len();
    }
    body.extend_from_slice(b"0\r\nx-checksum: 1234\r\n\r\n");
    (body, data)
}

/// percore: feed the whole body, advance by `consumed`, count the data bytes.
fn percore_chunked(input: &[u8]) -> usize {
    let mut decoder = BodyDecoder::new(Framing::Chunked, 16 * 1024 * 1024);
    let (mut at, mut data) = (0, 0);
    loop {
        match decoder.decode(&input[at..]).unwrap() {
            Decoded::Data { consumed, range } => {
                data += range.len();
                black_box(&input[at + range.start..at + range.end]);
                at += consumed;
            }
            Decoded::NeedMore { .. } => panic!("body incomplete"),
            Decoded::Done { consumed } => {
                at += consumed;
                assert_eq!(at, input.len());
                return data;
            }
        }
    }
}

/// Bare httparse: `parse_chunk_size` for each size line, then skip data and CRLF; the
/// trailer section is skipped to the empty line (httparse has no trailer parser).
fn httparse_chunked(input: &[u8]) -> usize {
    let (mut at, mut data) = (0, 0);
    loop {
        let (used, size) = match httparse::parse_chunk_size(&input[at..]).unwrap() {
            httparse::Status::Complete(x) => x,
            httparse::Status::Partial => panic!("partial"),
        };
        at += used;
        if size == 0 {
            let rest = &input[at..];
            let end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            if end == 0 {
                at += 2;
            } else {
                at += rest.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            }
            assert_eq!(at, input.len());
            return data;
        }
        let size = size as usize;
        black_box(&input[at..at + size]);
        data += size;
        at += size;
        assert_eq!(&input[at..at + 2], b"\r\n");
        at += 2;
    }
}

fn bench_chunked(c: &mut Criterion) {
    let (body, data) = chunked_body();
    assert_eq!(percore_chunked(&body), data);
    assert_eq!(httparse_chunked(&body), data);
    let mut g = c.benchmark_group("chunked");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("httparse_parse_chunk_size", |b| b.iter(|| httparse_chunked(black_box(&body))));
    g.bench_function("percore_body_decoder", |b| b.iter(|| percore_chunked(black_box(&body))));
    g.finish();
}

fn bench_response(c: &mut Criterion) {
    let headers: [(&str, &[u8]); 1] = [("content-type", b"text/plain")];
    let mut reference = BytesMut::new();
    encode_head(
        &mut reference,
        200,
        headers.iter().copied(),
        BodyLength::Known(BODY.len() as u64),
        ConnectionHeader::Omit,
        DATE,
    );
    reference.put_slice(BODY);
    let reference = reference.freeze();

    let mut g = c.benchmark_group("response");
    g.throughput(Throughput::Bytes(reference.len() as u64));
    // Not httparse (it does not encode): the floor, one copy of the finished bytes.
    g.bench_function("memcpy_prebuilt", |b| {
        let mut out = BytesMut::with_capacity(4096);
        b.iter(|| {
            out.clear();
            out.put_slice(black_box(&reference[..]));
            black_box(&out);
        })
    });
    g.bench_function("percore_encode_head", |b| {
        let mut out = BytesMut::with_capacity(4096);
        b.iter(|| {
            out.clear();
            encode_head(
                &mut out,
                black_box(200),
                headers.iter().copied(),
                BodyLength::Known(BODY.len() as u64),
                ConnectionHeader::Omit,
                black_box(DATE),
            );
            out.put_slice(black_box(BODY));
            black_box(&out);
        })
    });
    g.finish();
    let mut check = BytesMut::new();
    encode_head(
        &mut check,
        200,
        headers.iter().copied(),
        BodyLength::Known(13),
        ConnectionHeader::Omit,
        DATE,
    );
    check.put_slice(BODY);
    assert_eq!(check.freeze(), reference);
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_head, bench_pipelined, bench_chunked, bench_response
}
criterion_main!(benches);
