//! Response encoding into a reused write buffer. The server owns the framing headers
//! (Content-Length, Transfer-Encoding, Connection, Date) so a handler can never produce a
//! response whose framing disagrees with its body.

use bytes::{BufMut, BytesMut};

use super::date::{DateCache, OK_START_LEN};

/// How the body of an encoded response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLength {
    /// No body and no framing headers (1xx, 204, 304).
    Forbidden,
    /// `Content-Length: n`.
    Known(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// No framing header: the body ends when the connection closes (HTTP/1.0 streaming).
    CloseDelimited,
}

/// What the `Connection` header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionHeader {
    /// Nothing: HTTP/1.1 keep-alive is the default.
    Omit,
    /// `Connection: keep-alive`, for HTTP/1.0 clients that asked for it.
    KeepAlive,
    /// `Connection: close`: this is the last response on the connection.
    Close,
    /// `Connection: upgrade`: a `101` switching to another protocol.
    Upgrade,
}

/// Whether a status may carry a body at all (RFC 9110 §15: 1xx, 204, 304 never do).
pub fn status_allows_body(status: u16) -> bool {
    !(100..200).contains(&status) && status != 204 && status != 304
}

/// Header names the server writes itself; the same names from a handler are dropped.
pub fn is_server_owned(name: &str) -> bool {
    // By length first: most names (`content-type`, ...) match none, and are told so at once.
    let owned: &[&str] = match name.len() {
        4 => &["date"],
        10 => &["connection", "keep-alive"],
        14 => &["content-length"],
        17 => &["transfer-encoding"],
        _ => return false,
    };
    owned.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// Append a status line and headers to `out`.
pub fn encode_head<'a>(
    out: &mut BytesMut,
    status: u16,
    headers: impl Iterator<Item = (&'a str, &'a [u8])>,
    length: BodyLength,
    connection: ConnectionHeader,
    date: &[u8],
) {
    out.reserve(128 + date.len());
    if status == 200 {
        // The usual status line in one copy.
        out.put_slice(b"HTTP/1.1 200 OK\r\ndate: ");
    } else {
        put_status_line(out, status);
    }
    match <&[u8; DATE_LEN]>::try_from(date) {
        // An IMF-fixdate, as the date cache keeps it: a copy of constant size, inlined.
        Ok(fixed) => out.put_slice(fixed),
        Err(_) => out.put_slice(date),
    }
    out.put_slice(b"\r\n");
    encode_fields_and_end(out, headers, length, connection);
}

/// [`encode_head`] with the date from the executor's cache: a `200`'s status line and date
/// field are one copy of constant size.
#[inline]
pub fn encode_head_dated<'a>(
    out: &mut BytesMut,
    status: u16,
    headers: impl Iterator<Item = (&'a str, &'a [u8])>,
    length: BodyLength,
    connection: ConnectionHeader,
    date: &DateCache,
) {
    out.reserve(128 + OK_START_LEN);
    if status == 200 {
        out.put_slice(date.ok_start());
    } else {
        put_status_line(out, status);
        match <&[u8; DATE_LEN]>::try_from(date.as_bytes()) {
            Ok(fixed) => out.put_slice(fixed),
            Err(_) => out.put_slice(date.as_bytes()),
        }
        out.put_slice(b"\r\n");
    }
    encode_fields_and_end(out, headers, length, connection);
}

/// `HTTP/1.1 <status> <reason>` and `date: ` (the date itself is the caller's).
fn put_status_line(out: &mut BytesMut, status: u16) {
    out.put_slice(b"HTTP/1.1 ");
    write_decimal(out, u64::from(status));
    out.put_u8(b' ');
    out.put_slice(reason(status).as_bytes());
    out.put_slice(b"\r\ndate: ");
}

/// The handler's fields (less those the server owns), the framing field, the connection
/// field and the empty line.
#[inline]
fn encode_fields_and_end<'a>(
    out: &mut BytesMut,
    headers: impl Iterator<Item = (&'a str, &'a [u8])>,
    length: BodyLength,
    connection: ConnectionHeader,
) {
    for (name, value) in headers {
        if is_server_owned(name) {
            continue;
        }
        put_field(out, name.as_bytes(), value);
    }
    // The framing field, the connection field and the empty line, in one copy.
    let mut tail = Tail { buf: [0; TAIL_MAX], len: 0 };
    match length {
        BodyLength::Known(n) => {
            tail.push(b"content-length: ");
            tail.push_decimal(n);
            tail.push(b"\r\n");
        }
        BodyLength::Chunked => tail.push(b"transfer-encoding: chunked\r\n"),
        BodyLength::Forbidden | BodyLength::CloseDelimited => {}
    }
    match connection {
        ConnectionHeader::Omit => {}
        ConnectionHeader::KeepAlive => tail.push(b"connection: keep-alive\r\n"),
        ConnectionHeader::Close => tail.push(b"connection: close\r\n"),
        ConnectionHeader::Upgrade => tail.push(b"connection: upgrade\r\n"),
    }
    tail.push(b"\r\n");
    out.reserve(TAIL_MAX);
    let spare = out.spare_capacity_mut();
    // SAFETY: `reserve` made room for all `TAIL_MAX` bytes (a copy of constant size, which
    // compiles to a few moves), and only the `tail.len` of them that were written are
    // claimed as initialized.
    unsafe {
        std::ptr::copy_nonoverlapping(tail.buf.as_ptr(), spare.as_mut_ptr().cast::<u8>(), TAIL_MAX);
        out.set_len(out.len() + tail.len);
    }
}

/// Append `name: value` and its line ending, with one check for room.
#[inline]
fn put_field(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    let len = name.len() + value.len() + 4;
    out.reserve(len);
    let at = out.spare_capacity_mut().as_mut_ptr().cast::<u8>();
    // SAFETY: `reserve` made room for `len` bytes after the buffer's contents; all of them
    // are written before they are claimed as initialized.
    unsafe {
        copy_short(name, at);
        let colon = at.add(name.len());
        colon.cast::<[u8; 2]>().write_unaligned(*b": ");
        copy_short(value, colon.add(2));
        colon.add(2 + value.len()).cast::<[u8; 2]>().write_unaligned(*b"\r\n");
        out.set_len(out.len() + len);
    }
}

/// Copy `src` to `dst`. Field names and values are mostly 4 to 16 bytes: those are copied
/// with two loads and two stores (that overlap when shorter than 16 or 8), not a call to
/// `memcpy`.
///
/// # Safety
/// `dst` is valid for `src.len()` bytes of writes and does not overlap `src`.
#[inline(always)]
unsafe fn copy_short(src: &[u8], dst: *mut u8) {
    let (len, from) = (src.len(), src.as_ptr());
    if (8..=16).contains(&len) {
        let (a, b) = (from.cast::<u64>().read_unaligned(), from.add(len - 8).cast::<u64>().read_unaligned());
        dst.cast::<u64>().write_unaligned(a);
        dst.add(len - 8).cast::<u64>().write_unaligned(b);
    } else if (4..8).contains(&len) {
        let (a, b) = (from.cast::<u32>().read_unaligned(), from.add(len - 4).cast::<u32>().read_unaligned());
        dst.cast::<u32>().write_unaligned(a);
        dst.add(len - 4).cast::<u32>().write_unaligned(b);
    } else {
        std::ptr::copy_nonoverlapping(from, dst, len);
    }
}

/// The length of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
const DATE_LEN: usize = 29;

/// The longest end of a head: `content-length: ` with 20 digits, `connection: keep-alive`
/// (the longest connection field) and three line endings.
const TAIL_MAX: usize = 16 + 20 + 2 + 24 + 2;

/// The end of a head, put together on the stack.
struct Tail {
    buf: [u8; TAIL_MAX],
    len: usize,
}

impl Tail {
    #[inline]
    fn push(&mut self, bytes: &[u8]) {
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    /// `n` in decimal, in place: its digits counted (by comparison), then written from the
    /// last, two at a time.
    #[inline]
    fn push_decimal(&mut self, mut n: u64) {
        let count = 1 + POWERS_OF_TEN.iter().take_while(|&&p| n >= p).count();
        let mut end = self.len + count;
        self.len = end;
        while n >= 100 {
            let pair = (n % 100) as usize * 2;
            n /= 100;
            end -= 2;
            self.buf[end..end + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
        }
        if n >= 10 {
            let pair = n as usize * 2;
            self.buf[end - 2..end].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
        } else {
            self.buf[end - 1] = b'0' + n as u8;
        }
    }
}

/// 10 to 10^19: a `u64` has one digit more than the number of these it is at least.
const POWERS_OF_TEN: [u64; 19] = {
    let mut powers = [10u64; 19];
    let mut i = 1;
    while i < 19 {
        powers[i] = powers[i - 1] * 10;
        i += 1;
    }
    powers
};

/// `00` to `99`, two bytes each.
const DIGIT_PAIRS: [u8; 200] = {
    let mut pairs = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        pairs[2 * i] = b'0' + (i / 10) as u8;
        pairs[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    pairs
};

/// Append one chunk (`size CRLF data CRLF`); empty data writes nothing, since an empty chunk
/// would end the body.
pub fn encode_chunk(out: &mut BytesMut, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    out.reserve(data.len() + 20);
    encode_chunk_size(out, data.len());
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

/// Append a chunk-size line; the caller sends `len` data bytes and a CRLF after it.
pub fn encode_chunk_size(out: &mut BytesMut, len: usize) {
    write_hex(out, len as u64);
    out.put_slice(b"\r\n");
}

/// The last chunk and the empty trailer section.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Append the last chunk with trailer fields. Fields the server owns (framing) and fields
/// that are not a token name with a value free of CR, LF and NUL are left out.
pub fn encode_last_chunk_with_trailers<'a>(
    out: &mut BytesMut,
    trailers: impl Iterator<Item = (&'a str, &'a [u8])>,
) {
    out.put_slice(b"0\r\n");
    for (name, value) in trailers {
        let name_ok = !name.is_empty() && name.bytes().all(super::is_tchar) && !is_server_owned(name);
        if name_ok && !value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
            out.put_slice(name.as_bytes());
            out.put_slice(b": ");
            out.put_slice(value);
            out.put_slice(b"\r\n");
        }
    }
    out.put_slice(b"\r\n");
}

/// The interim response sent when a handler starts reading a body the client is holding back.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

fn write_decimal(out: &mut BytesMut, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&buf[i..]);
}

fn write_hex(out: &mut BytesMut, mut n: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 16];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = HEX[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&buf[i..]);
}

/// The reason phrase for a status code (informational only; clients ignore it).
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}
