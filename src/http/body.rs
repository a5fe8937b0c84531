//! Request body framing: Content-Length and chunked decoders over plain byte slices.
//!
//! A decoder is fed whatever bytes have arrived and says how many it consumed and which of
//! them are body data, so the caller can hand out those bytes without copying and keep the
//! rest (the next pipelined request) in place.

use std::ops::Range;

use super::error::ParseError;
use super::is_tchar;
use super::request::Framing;

/// Longest chunk-size line (size, extensions) accepted, and longest trailer section.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

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
    /// A decoder for `framing`, refusing bodies over `max_body` bytes.
    pub fn new(framing: Framing, max_body: u64) -> BodyDecoder {
        match framing {
            Framing::None => BodyDecoder::Length { remaining: 0 },
            Framing::Length(n) => BodyDecoder::Length { remaining: n },
            Framing::Chunked => BodyDecoder::Chunked(ChunkedDecoder::new(max_body)),
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
    /// Inside a trailer field line.
    Trailer,
    /// Saw CR in a trailer line; LF must follow. `empty` if the line was empty (end of body).
    TrailerLf {
        empty: bool,
    },
    Done,
}

/// Chunked transfer coding decoder (RFC 9112 §7.1), strict about line endings: every line
/// must end in CRLF, sizes are bare hex without sign or prefix, and extensions and trailers
/// are skipped within fixed bounds.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    size: u64,
    line_len: usize,
    trailer_len: usize,
    total: u64,
    max_body: u64,
}

impl ChunkedDecoder {
    pub fn new(max_body: u64) -> ChunkedDecoder {
        ChunkedDecoder {
            state: State::Size { digits: 0 },
            size: 0,
            line_len: 0,
            trailer_len: 0,
            total: 0,
            max_body,
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
                        _ if is_tchar(b) => State::Trailer,
                        _ => return Err(ParseError::InvalidChunk),
                    };
                    self.bump_trailer()?;
                }
                State::Trailer => {
                    match b {
                        b'\r' => self.state = State::TrailerLf { empty: false },
                        b'\t' | b' '..=b'~' | 0x80..=0xff => {}
                        _ => return Err(ParseError::InvalidChunk),
                    }
                    self.bump_trailer()?;
                }
                State::TrailerLf { empty } => {
                    if b != b'\n' {
                        return Err(ParseError::InvalidChunk);
                    }
                    if empty {
                        self.state = State::Done;
                        return Ok(Decoded::Done { consumed: i + 1 });
                    }
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
        if self.line_len > MAX_CHUNK_LINE {
            return Err(ParseError::InvalidChunk);
        }
        Ok(())
    }

    fn bump_trailer(&mut self) -> Result<(), ParseError> {
        self.trailer_len += 1;
        if self.trailer_len > MAX_TRAILERS {
            return Err(ParseError::HeadersTooLarge);
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
