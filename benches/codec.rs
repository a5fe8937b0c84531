//! Codec micro-benchmark: parse a typical browser request head, with bare httparse on the
//! same input as the baseline. Run with `cargo bench --bench codec`.
//!
//! Plain `std::time` so that it builds without extra dependencies; the criterion suite
//! and the end-to-end comparison harness are separate work.

use std::hint::black_box;
use std::time::Instant;

use percore::http::{parse_head, Limits};

const HEAD: &[u8] = b"GET /products/list?page=2&sort=price HTTP/1.1\r\n\
Host: shop.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Connection: keep-alive\r\n\
Cookie: session=0123456789abcdef; theme=dark\r\n\
Upgrade-Insecure-Requests: 1\r\n\r\n";

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

fn main() {
    let limits = Limits::default();
    let iters = 1_000_000;
    println!("request head: {} bytes", HEAD.len());
    let base = time("httparse (baseline)", iters, || {
        let mut headers = [httparse::EMPTY_HEADER; 100];
        let mut req = httparse::Request::new(&mut headers);
        black_box(req.parse(black_box(HEAD)).unwrap());
    });
    let ours = time("percore parse_head", iters, || {
        black_box(parse_head(black_box(HEAD), &limits).unwrap());
    });
    println!("percore / httparse: {:.2}x", ours / base);
}
