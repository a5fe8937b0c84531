#!/usr/bin/env python3
"""Write the seed corpus of the fuzz targets from the codec's test vectors.

Every smuggling vector of src/http/tests.rs and tests/server/framing.rs, the valid requests
of those tests, and requests for each route of the fuzz app (fuzz/src/checks.rs, FuzzApp);
for ws_inflate, compressed messages (RFC 7692's examples, deflate bombs, broken DEFLATE).
Files are named `seed-<name>`; inputs a fuzzing run adds keep libFuzzer's hash names.
Re-running rewrites the seeds only:  python3 fuzz/make_seeds.py
"""

import os
import zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def post(extra, body, path="/echo"):
    return f"POST {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n{body}".encode()


GET = b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n"

# Request streams: seeds of head, driver and differential.
REQUESTS = {
    # --- src/http/tests.rs: smuggling_vectors_are_refused
    "cl-then-te": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    "te-then-cl": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
    "cl-plus": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n",
    "cl-negative": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    "cl-hex": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x10\r\n\r\n",
    "cl-inner-space": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5 5\r\n\r\n",
    "cl-overflow": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    "cl-u64-overflow": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551616\r\n\r\n",
    "cl-two-differing": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
    "cl-list-differing": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\n",
    "cl-empty": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: \r\n\r\n",
    "cl-decimal": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1.0\r\n\r\n",
    "te-gzip": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
    "te-chunked-gzip": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
    "te-chunked-twice": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
    "te-chunked-two-fields": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
    "te-empty": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \r\n\r\n",
    "te-xchunked": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n",
    "te-foo-chunked": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: foo, chunked\r\n\r\n",
    "te-gzip-chunked": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    "te-in-http10": b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
    "obs-fold-space": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
    "obs-fold-tab": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n\tb\r\n\r\n",
    "space-before-colon": b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
    "tab-before-colon-te": b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding\t: chunked\r\n\r\n",
    "nul-in-value": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "del-in-value": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x7fb\r\n\r\n",
    "bare-cr-in-value": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n",
    "missing-host": b"GET / HTTP/1.1\r\n\r\n",
    "two-hosts": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "two-hosts-http10": b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n",
    "bad-method-paren": b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad-method-ctl": b"G\x01T / HTTP/1.1\r\nHost: x\r\n\r\n",
    "http-1-2": b"GET / HTTP/1.2\r\nHost: x\r\n\r\n",
    "http-2-0": b"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
    "http-3": b"GET / HTTP/3\r\nHost: x\r\n\r\n",
    "h2-preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "lowercase-version": b"GET / http/1.1\r\nHost: x\r\n\r\n",
    "version-trailing": b"GET / HTTP/1.1 x\r\nHost: x\r\n\r\n",
    "space-in-target": b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",
    "double-space": b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
    "asterisk-get": b"GET * HTTP/1.1\r\nHost: x\r\n\r\n",
    "target-no-slash": b"GET foo HTTP/1.1\r\nHost: x\r\n\r\n",
    "target-ftp": b"GET ftp://x/ HTTP/1.1\r\nHost: x\r\n\r\n",
    "target-utf8": b"GET /\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n",
    "expect-other": b"GET / HTTP/1.1\r\nHost: x\r\nExpect: something\r\n\r\n",
    "absolute-empty-authority": b"GET http:// HTTP/1.1\r\nHost: x\r\n\r\n",
    # --- tests/server/framing.rs (with their bodies, and a request behind them)
    "srv-cl-te": post("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n") + GET,
    "srv-te-cl": post("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", "0\r\n\r\n") + GET,
    "srv-cl-plus": post("Content-Length: +5\r\n", "hello") + GET,
    "srv-cl-hex": post("Content-Length: 0x10\r\n", "0123456789abcdef") + GET,
    "srv-cl-identical": post("Content-Length: 5\r\nContent-Length: 5\r\n", "hello") + GET,
    "srv-cl-list-identical": post("Content-Length: 5, 5\r\n", "hello") + GET,
    "srv-te-unknown": post("Transfer-Encoding: foo\r\n", "hello") + GET,
    "srv-te-http10": b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + GET,
    "srv-cl-space-colon": post("Content-Length : 5\r\n", "hello") + GET,
    "srv-no-colon": b"GET /plaintext HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n",
    "srv-chunk-not-hex": post("Transfer-Encoding: chunked\r\n", "zz\r\nhello\r\n0\r\n\r\n") + GET,
    "srv-chunk-overflow": post("Transfer-Encoding: chunked\r\n", "ffffffffffffffffff\r\nhello\r\n0\r\n\r\n") + GET,
    "srv-chunk-sign": post("Transfer-Encoding: chunked\r\n", "+5\r\nhello\r\n0\r\n\r\n") + GET,
    "srv-chunk-no-crlf": post("Transfer-Encoding: chunked\r\n", "5\r\nhelloXX0\r\n\r\n") + GET,
    "srv-chunk-bare-lf": post("Transfer-Encoding: chunked\r\n", "5\nhello\r\n0\r\n\r\n") + GET,
    "srv-chunk-error-later": post("Transfer-Encoding: chunked\r\n", "3\r\nabc\r\nzz\r\n") + GET,
    "srv-missing-version": b"GET /plaintext\r\nHost: x\r\n\r\n",
    "srv-expect-417": post("Expect: something-else\r\nContent-Length: 5\r\n", "hello"),
    "srv-413": b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n",
    # --- valid requests (src/http/tests.rs, src/conn_tests.rs)
    "simple-get": b"GET /a/b?x=1&y HTTP/1.1\r\nHost: example\r\nUser-Agent: t\r\n\r\n",
    "leading-empty-line": b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "leading-bare-lf": b"\n\nGET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n",
    "bare-lf-lines": b"GET /plaintext HTTP/1.1\nHost: x\n\n",
    "close": b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "close-list": b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Close\r\n\r\n",
    "http10": b"GET /plaintext HTTP/1.0\r\n\r\n",
    "http10-keep-alive": b"GET /plaintext HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\nGET /plaintext HTTP/1.0\r\n\r\n",
    "te-chunked-capital": b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n",
    "absolute-form": b"GET http://example.com/p/q?z=1 HTTP/1.1\r\nHost: example.com\r\n\r\n",
    "absolute-no-path": b"GET HTTP://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n",
    "absolute-query-only": b"GET https://example.com?x HTTP/1.1\r\nHost: example.com\r\n\r\n",
    "options-asterisk": b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
    "connect": b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    "expect-continue": b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\nabc",
    "expect-continue-no-body": b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
    "expect-http10": b"POST /echo HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
    "expect-unread": b"POST /plaintext HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
    "pipeline": GET * 4,
    "pipeline-echo": b"".join(
        f"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {len(w)}\r\n\r\n{w}".encode() for w in ["one", "two", "three"]
    ),
    "pipeline-error-middle": GET
    + b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
    + GET,
    "close-ends-pipeline": b"GET /plaintext HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" + GET,
    "chunked-ext-trailers": b"PUT /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nTrailer: 1\r\n\r\n"
    + GET,
    "head-plaintext": b"HEAD /plaintext HTTP/1.1\r\nHost: x\r\n\r\n" + GET,
    "body-unread": post("Content-Length: 5\r\n", "hello", path="/plaintext") + GET,
    "body-incomplete": post("Content-Length: 10\r\n", "hello"),
    "chunked-incomplete": post("Transfer-Encoding: chunked\r\n", "5\r\nhel"),
    # --- the fuzz app's routes
    "stream": b"GET /stream?n=2&size=3 HTTP/1.1\r\nHost: x\r\n\r\n" + GET,
    "stream-big-chunk": b"GET /stream?n=2&size=20000 HTTP/1.1\r\nHost: x\r\n\r\n" + GET,
    "stream-http10": b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" + GET,
    "stream-head": b"HEAD /stream HTTP/1.1\r\nHost: x\r\n\r\n" + GET,
    "big": b"GET /big HTTP/1.1\r\nHost: x\r\n\r\nHEAD /big HTTP/1.1\r\nHost: x\r\n\r\n" + GET,
    "handler-close": b"GET /close HTTP/1.1\r\nHost: x\r\n\r\n" + GET,
    "no-content": b"GET /nocontent HTTP/1.1\r\nHost: x\r\n\r\nGET /notmodified HTTP/1.1\r\nHost: x\r\n\r\n" + GET,
    "not-found-405-options": b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\nDELETE /echo HTTP/1.1\r\nHost: x\r\n\r\nOPTIONS /echo HTTP/1.1\r\nHost: x\r\n\r\n",
    # --- limits (the small limit set of checks.rs: line 64, field 64, block 256, 4 fields, body 32)
    "line-at-small-limit": b"GET /plaintext?pad=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\nHost: x\r\n\r\n",
    "field-at-small-limit": b"GET /plaintext HTTP/1.1\r\nHost: x\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n",
    "five-fields": b"GET /plaintext HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n",
    "body-over-small-limit": post("Content-Length: 33\r\n", "a" * 33) + GET,
    "chunked-over-small-limit": post("Transfer-Encoding: chunked\r\n", "21\r\n" + "a" * 33 + "\r\n0\r\n\r\n") + GET,
}

# Chunked bodies: seeds of the chunked target (src/http/tests.rs).
CHUNKED = {
    "every-split": b"5;ext=1;other=\"q\"\r\nhello\r\n6\r\n world\r\n0\r\nTrailer-A: x\r\nB: y\r\n\r\nNEXT",
    "simple": b"5\r\nhello\r\n0\r\n\r\n",
    "two-chunks": b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n",
    "bws-ext": b"5 ;x\r\nhello\r\n0\r\n\r\n",
    "leading-zeros": b"000000000000005\r\nhello\r\n0\r\n\r\n",
    "over-limit-size": b"fffffffffffffff\r\n",
    "uppercase-hex": b"A\r\n0123456789\r\n0\r\n\r\n",
    "not-hex": b"zz\r\nhello\r\n0\r\n\r\n",
    "empty-line": b"\r\n",
    "negative": b"-5\r\nhello\r\n0\r\n\r\n",
    "0x-prefix": b"0x5\r\nhello\r\n0\r\n\r\n",
    "overflow": b"ffffffffffffffffff\r\n",
    "data-no-crlf": b"5\r\nhelloXX0\r\n\r\n",
    "data-bare-lf": b"5\r\nhello\n0\r\n\r\n",
    "size-bare-lf": b"5\nhello\r\n0\r\n\r\n",
    "size-cr-cr": b"5\r\rhello\r\n0\r\n\r\n",
    "size-space-junk": b"5 x\r\nhello\r\n0\r\n\r\n",
    "ext-nul": b"5;a\x00b\r\nhello\r\n0\r\n\r\n",
    "trailer-bare-lf": b"0\r\nBad Trailer\n\r\n",
    "trailer-obs-fold": b"0\r\n trailer: obs-fold\r\n\r\n",
    "last-bare-lf": b"0\r\n\n",
    "sign": b"+5\r\nhello\r\n0\r\n\r\n",
    "error-later": b"3\r\nabc\r\nzz\r\n",
    "incomplete": b"5\r\nhel",
    "32-bytes": b"20\r\n" + b"c" * 32 + b"\r\n0\r\n\r\n",
    "33-bytes": b"21\r\n" + b"c" * 33 + b"\r\n0\r\n\r\n",
}


def v2(cmd, fam, body):
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x20 | cmd, fam]) + len(body).to_bytes(2, "big") + body


V2_BODY = bytes([10, 0, 0, 1, 10, 0, 0, 2, 0x1F, 0x90, 0, 80]) + bytes([0x04, 0, 2, 0xAB, 0xCD])

# PROXY protocol headers (src/http/proxy.rs tests) and forwarding headers: seeds of proxy;
# the ones followed by a request also seed driver and differential.
PROXY = {
    "v1-tcp4": b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n" + GET,
    "v1-tcp6": b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n" + GET,
    "v1-unknown": b"PROXY UNKNOWN\r\n" + GET,
    "v1-partial": b"PROXY TCP4 1.2.3.4",
    "v1-bare-lf": b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n" + GET,
    "v1-port-leading-zero": b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n" + GET,
    "v1-port-overflow": b"PROXY TCP4 1.2.3.4 5.6.7.8 70000 2\r\n" + GET,
    "v1-v6-in-tcp4": b"PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n" + GET,
    "v1-double-space": b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n" + GET,
    "v1-tcp5": b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n" + GET,
    "v1-too-long": b"PROXY TCP4 " + b"1" * 120 + b"\r\n",
    "v2-tcp4-tlv": v2(1, 0x11, V2_BODY) + GET,
    "v2-local": v2(0, 0x00, b"") + GET,
    "v2-tcp6": v2(1, 0x21, bytes(range(36))) + GET,
    "v2-unix": v2(1, 0x31, bytes(216)) + GET,
    "v2-partial": v2(1, 0x11, V2_BODY)[:20],
    "v2-bad-tlv": v2(1, 0x11, V2_BODY + bytes([0x04, 0, 9])) + GET,
    "v2-short-address": v2(1, 0x11, V2_BODY[:8]) + GET,
    "v2-bad-command": v2(2, 0x11, V2_BODY) + GET,
    "v2-wrong-version": v2(1, 0x11, V2_BODY)[:12] + b"\x11" + v2(1, 0x11, V2_BODY)[13:] + GET,
    "v2-too-long": v2(1, 0x11, bytes(12))[:14] + (5000).to_bytes(2, "big"),
    "forwarded-headers": b"X-Forwarded-For: 6.6.6.6, 203.0.113.7, 10.0.0.5\nX-Forwarded-Proto: https\n"
    b"Forwarded: for=\"[2001:db8::7]:443\";proto=https, for=10.0.0.9\nX-Forwarded-Host: example.com\n"
    b"X-Forwarded-For: _hidden\nX-Forwarded-Proto: gopher\n",
}


def deflate_message(data, window=15, level=9):
    """A message compressed as a permessage-deflate client does: raw DEFLATE, a sync flush,
    the final 00 00 ff ff taken off (RFC 7692 §7.2.1)."""
    c = zlib.compressobj(level, zlib.DEFLATED, -window)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


# Seeds of ws_inflate: a control byte (bits 0-1: limit 64 B, 4 KiB, 1 MiB; bit 2: no context
# takeover; bits 3-7: the deflater's window), then a compressed message.
LIMIT_64, LIMIT_4K, LIMIT_1M, NO_CONTEXT = 0, 1, 2, 4
TEXT = "permessage-deflate, κόσμε. ".encode() * 40
WS_INFLATE = {
    # RFC 7692 §7.2.3: "Hello" compressed, as a stored block, with BFINAL set, empty.
    "rfc-hello": bytes([LIMIT_64, 0xF2, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00]),
    "rfc-stored": bytes([LIMIT_64, 0x00, 0x05, 0x00, 0xFA, 0xFF]) + b"Hello" + b"\x00",
    "rfc-bfinal": bytes([LIMIT_64 | NO_CONTEXT, 0xF3, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00]),
    "rfc-empty": bytes([LIMIT_64, 0x00]),
    "text": bytes([LIMIT_4K]) + deflate_message(TEXT),
    "text-window-9": bytes([LIMIT_4K | (0 << 3)]) + deflate_message(TEXT, window=9),
    "text-over-64": bytes([LIMIT_64 | (6 << 3)]) + deflate_message(TEXT),
    "binary": bytes([LIMIT_1M | NO_CONTEXT | (3 << 3)]) + deflate_message(bytes(range(256)) * 64, level=1),
    # Deflate bombs: 16 MiB of zeros against 1 MiB, 1 MiB against 64 bytes.
    "bomb-16m": bytes([LIMIT_1M]) + deflate_message(bytes(16 << 20)),
    "bomb-1m-small-limit": bytes([LIMIT_64]) + deflate_message(bytes(1 << 20)),
    # Not DEFLATE: a reserved block type; bytes after a final block; a cut stored block.
    "reserved-btype": bytes([LIMIT_4K, 0xFF, 0xFF, 0xFF]),
    "after-bfinal": bytes([LIMIT_64, 0xF3, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00, 0x00, 0x01]),
    "cut-stored": bytes([LIMIT_64, 0x00, 0x05, 0x00, 0xFA, 0xFF, 0x48]),
    "stored-bad-nlen": bytes([LIMIT_64, 0x00, 0x05, 0x00, 0x00, 0x00]) + b"Hello",
}


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def main():
    for target in ["head", "driver", "differential"]:
        for name, data in REQUESTS.items():
            write(target, name, data)
    for name, data in CHUNKED.items():
        write("chunked", name, data)
    for name, data in WS_INFLATE.items():
        write("ws_inflate", name, data)
    for name, data in PROXY.items():
        write("proxy", name, data)
        if data.startswith(b"PROXY") or data.startswith(b"\r\n\r\n"):
            for target in ["driver", "differential"]:
                write(target, "proxy-" + name, data)


if __name__ == "__main__":
    main()
