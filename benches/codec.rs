//! Codec micro-benchmark: parse a typical browser request head and the smallest usual one
//! (what the pipelined benchmarks send), with bare httparse on the same input as the
//! baseline. Run with `cargo bench --bench codec`.
//!
//! `cargo bench --bench codec -- ONLY ITERS` runs one case only (`httparse-browser`,
//! `percore-browser`, `httparse-small` or `percore-small`) ITERS times, untimed: for
//! `valgrind --tool=callgrind`, whose instruction counts divided by ITERS are the cost of
//! one parse, repeatable on a noisy machine.
//!
//! Plain `std::time` so that it builds without extra dependencies; the criterion suite
//! and the end-to-end comparison harness are separate work.

use std::hint::black_box;
use std::time::Instant;

use percore::http::{parse_head, Limits};

const BROWSER: &[u8] = b"GET /products/list?page=2&sort=price HTTP/1.1\r\n\
Host: shop.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Connection: keep-alive\r\n\
Cookie: session=0123456789abcdef; theme=dark\r\n\
Upgrade-Insecure-Requests: 1\r\n\r\n";

/// What `benches/callgrind` and wrk's pipelined script send, followed (as in a pipelined
/// read) by the next request.
const SMALL: &[u8] = b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\nGET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n";

fn time(name: &str, iters: u32, mut f: impl FnMut()) -> f64 {
    for _ in 0..iters / 10 {
        f();
    }
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    let ns = start.elapsed().as_nanos() as f64 / f64::from(iters);
    println!("{name:<28} {ns:>8.1} ns/iter");
    ns
}

fn httparse_once(head: &[u8]) {
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let mut req = httparse::Request::new(&mut headers);
    black_box(req.parse(black_box(head)).unwrap());
}

fn percore_once(head: &[u8], limits: &Limits) {
    black_box(parse_head(black_box(head), limits).unwrap());
}

fn main() {
    let limits = Limits::default();
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    if let [only, iters] = &args[..] {
        let iters: u32 = iters.parse().expect("ITERS: a number");
        let (parser, head) = only.split_once('-').expect("ONLY: PARSER-HEAD");
        let head = if head == "small" { SMALL } else { BROWSER };
        for _ in 0..iters {
            match parser {
                "httparse" => httparse_once(head),
                _ => percore_once(head, &limits),
            }
        }
        return;
    }
    let iters = 1_000_000;
    for (name, head) in [("browser", BROWSER), ("small", SMALL)] {
        println!("{name} request head: {} bytes", head.len());
        let base = time("httparse (baseline)", iters, || httparse_once(head));
        let ours = time("percore parse_head", iters, || percore_once(head, &limits));
        println!("percore / httparse: {:.2}x", ours / base);
    }
}
