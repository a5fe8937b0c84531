//! Request body framing: Content-Length and chunked decoders over plain byte slices.
//!
//! A decoder is fed whatever bytes have arrived and says how many it consumed and which of
//! them are body data, so the caller can hand out those bytes without copying and keep the
//! rest (the next pipelined request) in place.

use std::ops::Range;

use super::error::ParseError;
use super::is_tchar;
use super::request::{Framing, Limits};

/// Longest chunk-size line (size, extensions) accepted.
const MAX_CHUNK_LINE: usize = 4096;
/// Framing bytes (chunk-size lines with their extensions, and CRLFs) a chunked body may
/// carry beyond an allowance of 16 bytes plus twice the data of each chunk. Extensions mean
/// nothing to this server; without a bound, a client could make it read gigabytes of them
/// for a tiny body (CVE-2023-39326 in Go, CVE-2024-22019 in Node, which bound them alike).
const MAX_FRAMING_EXCESS: u64 = 16 * 1024;

/// What one call to [`BodyDecoder::decode`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// `input[range]` is body data; `consumed` bytes (up to `range.end`) are used up.
    Data { consumed: usize, range: Range<usize> },
    /// `consumed` framing bytes were used up and more input is needed.
    NeedMore { consumed: usize },
    /// The body is complete after `consumed` bytes.
    Done { consumed: usize },
}

/// Decodes one request body, whichever its framing.
#[derive(Debug, Clone)]
pub enum BodyDecoder {
    Length { remaining: u64 },
    Chunked(ChunkedDecoder),
}

impl BodyDecoder {
    /// A decoder for `framing`, refusing bodies over `max_body` bytes; trailers are held to
    /// the default header limits.
    pub fn new(framing: Framing, max_body: u64) -> BodyDecoder {
        BodyDecoder::with_limits(framing, &Limits { max_body, ..Limits::default() })
    }

    /// A decoder for `framing` under `limits`: the body to `max_body`, trailer fields to the
    /// same limits as header fields.
    pub fn with_limits(framing: Framing, limits: &Limits) -> BodyDecoder {
        match framing {
            Framing::None => BodyDecoder::Length { remaining: 0 },
            Framing::Length(n) => BodyDecoder::Length { remaining: n },
            Framing::Chunked => BodyDecoder::Chunked(ChunkedDecoder::with_limits(limits)),
        }
    }

    /// Decode from `input`, the bytes received and not yet consumed.
    pub fn decode(&mut self, input: &[u8]) -> Result<Decoded, ParseError> {
        match self {
            BodyDecoder::Length { remaining } => {
                if *remaining == 0 {
                    return Ok(Decoded::Done { consumed: 0 });
                }
                if input.is_empty() {
                    return Ok(Decoded::NeedMore { consumed: 0 });
                }
                let n = (*remaining).min(input.len() as u64) as usize;
                *remaining -= n as u64;
                Ok(Decoded::Data { consumed: n, range: 0..n })
            }
            BodyDecoder::Chunked(c) => c.decode(input),
        }
    }

    /// Whether the whole body has been decoded.
    pub fn is_done(&self) -> bool {
        match self {
            BodyDecoder::Length { remaining } => *remaining == 0,
            BodyDecoder::Chunked(c) => c.state == State::Done,
        }
    }

    /// Body bytes still expected, when known (Content-Length).
    pub fn remaining_hint(&self) -> Option<u64> {
        match self {
            BodyDecoder::Length { remaining } => Some(*remaining),
            BodyDecoder::Chunked(_) => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size; `digits` seen so far.
    Size {
        digits: u8,
    },
    /// Whitespace after the size; only `;` or CR may follow (BWS before an extension).
    SizeWs,
    /// Inside chunk extensions, up to CR.
    Extension,
    /// Saw CR after the size line; LF must follow.
    SizeLf,
    /// Inside chunk data.
    Data {
        remaining: u64,
    },
    /// After data, CR then LF must follow.
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// Inside a trailer field's name, up to its colon.
    TrailerName,
    /// Inside a trailer field's value, up to CR.
    TrailerValue,
    /// Saw CR in a trailer line; LF must follow. `empty` if the line was empty (end of body).
    TrailerLf {
        empty: bool,
    },
    Done,
}

/// Chunked transfer coding decoder (RFC 9112 §7.1), strict about line endings: every line
/// must end in CRLF, sizes are bare hex without sign or prefix, extensions are skipped within
/// a bound on framing bytes per data byte, and trailer fields are checked like header fields
/// (syntax, and the same limits) before they are skipped.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    size: u64,
    /// Bytes of the current chunk-size or trailer line.
    line_len: u32,
    /// Bytes of the trailer section so far, and its fields.
    trailer_len: u32,
    trailer_fields: u32,
    /// Framing bytes beyond the allowance (see `MAX_FRAMING_EXCESS`).
    excess: u64,
    total: u64,
    max_body: u64,
    max_field: u32,
    max_fields: u32,
    max_block: u32,
}

impl ChunkedDecoder {
    /// A decoder for bodies up to `max_body` bytes, trailers held to the default limits.
    pub fn new(max_body: u64) -> ChunkedDecoder {
        ChunkedDecoder::with_limits(&Limits { max_body, ..Limits::default() })
    }

    /// A decoder for bodies up to `limits.max_body`, trailer fields held to the header limits.
    pub fn with_limits(limits: &Limits) -> ChunkedDecoder {
        let clamp = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        ChunkedDecoder {
            state: State::Size { digits: 0 },
            size: 0,
            line_len: 0,
            trailer_len: 0,
            trailer_fields: 0,
            excess: 0,
            total: 0,
            max_body: limits.max_body,
            max_field: clamp(limits.max_header_field),
            max_fields: clamp(limits.max_headers),
            max_block: clamp(limits.max_header_block),
        }
    }

    /// Decode from `input`. Framing bytes are consumed one state at a time; a data range is
    /// returned as soon as any data byte is available.
    pub fn decode(&mut self, input: &[u8]) -> Result<Decoded, ParseError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Size { digits } => {
                    if let Some(d) = hex_value(b) {
                        // 16 hex digits fill a u64; more would overflow (leading zeros too:
                        // no sane client sends them, and refusing keeps the bound simple).
                        if digits >= 16 {
                            return Err(ParseError::InvalidChunk);
                        }
                        self.size = (self.size << 4) | u64::from(d);
                        self.state = State::Size { digits: digits + 1 };
                    } else if digits == 0 {
                        return Err(ParseError::InvalidChunk);
                    } else {
                        self.state = match b {
                            b'\r' => State::SizeLf,
                            b';' => State::Extension,
                            b' ' | b'\t' => State::SizeWs,
                            _ => return Err(ParseError::InvalidChunk),
                        };
                    }
                    self.bump_line()?;
                }
                State::SizeWs => {
                    self.state = match b {
                        b' ' | b'\t' => State::SizeWs,
                        b';' => State::Extension,
                        _ => return Err(ParseError::InvalidChunk),
                    };
                    self.bump_line()?;
                }
                State::Extension => {
                    match b {
                        b'\r' => self.state = State::SizeLf,
                        b'\t' | b' '..=b'~' | 0x80..=0xff => {}
                        _ => return Err(ParseError::InvalidChunk),
                    }
                    self.bump_line()?;
                }
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(ParseError::InvalidChunk);
                    }
                    self.count_framing()?;
                    self.line_len = 0;
                    if self.size == 0 {
                        self.state = State::TrailerStart;
                    } else {
                        self.total = self
                            .total
                            .checked_add(self.size)
                            .filter(|t| *t <= self.max_body)
                            .ok_or(ParseError::BodyTooLarge)?;
                        self.state = State::Data { remaining: self.size };
                    }
                    self.size = 0;
                }
                State::Data { remaining } => {
                    let n = remaining.min((input.len() - i) as u64) as usize;
                    let left = remaining - n as u64;
                    self.state = if left == 0 { State::DataCr } else { State::Data { remaining: left } };
                    return Ok(Decoded::Data { consumed: i + n, range: i..i + n });
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(ParseError::InvalidChunk);
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(ParseError::InvalidChunk);
                    }
                    self.state = State::Size { digits: 0 };
                }
                State::TrailerStart => {
                    self.state = match b {
                        b'\r' => State::TrailerLf { empty: true },
                        // A trailer field starts with a token character; whitespace here
                        // would be obs-fold, and a bare LF is a missing CR.
                        _ if is_tchar(b) => {
                            self.trailer_fields += 1;
                            if self.trailer_fields > self.max_fields {
                                return Err(ParseError::TooManyHeaders);
                            }
                            State::TrailerName
                        }
                        b' ' | b'\t' => return Err(ParseError::InvalidHeaderName),
                        _ => return Err(ParseError::InvalidChunk),
                    };
                    self.bump_trailer(b)?;
                }
                State::TrailerName => {
                    match b {
                        b':' => self.state = State::TrailerValue,
                        _ if is_tchar(b) => {}
                        // Whitespace before the colon included (RFC 9112 §5.1).
                        _ => return Err(ParseError::InvalidHeaderName),
                    }
                    self.bump_trailer(b)?;
                }
                State::TrailerValue => {
                    match b {
                        b'\r' => self.state = State::TrailerLf { empty: false },
                        b'\t' | b' '..=b'~' | 0x80..=0xff => {}
                        // A line ending without CR: framing, not a bad value.
                        b'\n' => return Err(ParseError::InvalidChunk),
                        _ => return Err(ParseError::InvalidHeaderValue),
                    }
                    self.bump_trailer(b)?;
                }
                State::TrailerLf { empty } => {
                    if b != b'\n' {
                        return Err(ParseError::InvalidChunk);
                    }
                    if empty {
                        self.state = State::Done;
                        return Ok(Decoded::Done { consumed: i + 1 });
                    }
                    self.line_len = 0;
                    self.state = State::TrailerStart;
                }
                State::Done => return Ok(Decoded::Done { consumed: i }),
            }
            i += 1;
        }
        if self.state == State::Done {
            return Ok(Decoded::Done { consumed: i });
        }
        Ok(Decoded::NeedMore { consumed: i })
    }

    fn bump_line(&mut self) -> Result<(), ParseError> {
        self.line_len += 1;
        if self.line_len as usize > MAX_CHUNK_LINE {
            return Err(ParseError::InvalidChunk);
        }
        Ok(())
    }

    /// Count a finished chunk-size line (and the CRLF after its data) against the framing
    /// allowance: 16 bytes plus twice the chunk's size for free, the rest piles up.
    fn count_framing(&mut self) -> Result<(), ParseError> {
        let line = u64::from(self.line_len) + 1 + if self.size > 0 { 2 } else { 0 };
        let allowance = self.size.saturating_mul(2).saturating_add(16);
        self.excess = (self.excess + line).saturating_sub(allowance);
        if self.excess > MAX_FRAMING_EXCESS {
            return Err(ParseError::TooMuchFraming);
        }
        Ok(())
    }

    /// Count one byte of a trailer line (the CR that ends it excluded from the line, as for
    /// header fields) against the header limits.
    fn bump_trailer(&mut self, b: u8) -> Result<(), ParseError> {
        self.trailer_len += 1;
        if self.trailer_len > self.max_block {
            return Err(ParseError::HeadersTooLarge);
        }
        if b != b'\r' {
            self.line_len += 1;
            if self.line_len > self.max_field {
                return Err(ParseError::HeaderFieldTooLarge);
            }
        }
        Ok(())
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decode a whole body held in `input`; `Ok(None)` if `input` ends before the body does.
/// Returns the body bytes and how many input bytes it took. Used to skip the streaming path
/// when a client sent its (small) body together with its head.
pub fn decode_buffered(decoder: &BodyDecoder, input: &[u8]) -> Result<Option<(Vec<u8>, usize)>, ParseError> {
    let mut decoder = decoder.clone();
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        match decoder.decode(&input[pos..])? {
            Decoded::Data { consumed, range } => {
                out.extend_from_slice(&input[pos + range.start..pos + range.end]);
                pos += consumed;
            }
            Decoded::NeedMore { .. } => return Ok(None),
            Decoded::Done { consumed } => return Ok(Some((out, pos + consumed))),
        }
    }
}
