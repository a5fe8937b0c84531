//! The sans-IO HTTP/1.1 codec: request heads, body framing and response encoding over byte
//! buffers. Nothing here knows about sockets or runtimes, so all of it is unit-tested and
//! fuzzable on its own.

pub mod body;
pub mod date;
pub mod error;
pub mod proxy;
pub mod request;
pub mod response;

pub use body::{BodyDecoder, Decoded};
pub use date::DateCache;
pub use error::ParseError;
pub use request::{
    parse_head, refused_request_line, Framing, HeadProgress, Limits, ParsedHead, RequestHead, Version,
};

/// `tchar` from RFC 9110 §5.6.2: the bytes a token (method, field name) may hold.
#[inline]
pub(crate) fn is_tchar(b: u8) -> bool {
    TCHAR[b as usize]
}

/// Which bytes are `tchar`, by value: one load per byte instead of a search of the symbols.
static TCHAR: [bool; 256] = TCHAR_TABLE;
const TCHAR_TABLE: [bool; 256] = byte_table(b"!#$%&'*+-.^_`|~");

/// Whether `name` is a token (a valid field name), in a `const` context too.
pub(crate) const fn is_token(name: &[u8]) -> bool {
    let mut i = 0;
    while i < name.len() {
        if !TCHAR_TABLE[name[i] as usize] {
            return false;
        }
        i += 1;
    }
    !name.is_empty()
}

/// Whether `value` may be sent as a field value: no CR, LF or NUL, which would let it end
/// the field (or the head) early. In a `const` context too.
pub(crate) const fn is_field_value(value: &[u8]) -> bool {
    let mut i = 0;
    while i < value.len() {
        if matches!(value[i], b'\r' | b'\n' | 0) {
            return false;
        }
        i += 1;
    }
    true
}

/// A table of the bytes that are ASCII letters or digits or one of `symbols`.
pub(crate) const fn byte_table(symbols: &[u8]) -> [bool; 256] {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = (i as u8).is_ascii_alphanumeric();
        i += 1;
    }
    let mut j = 0;
    while j < symbols.len() {
        table[symbols[j] as usize] = true;
        j += 1;
    }
    table
}

#[cfg(test)]
mod tests;
