//! The WebSocket frame codec (RFC 6455 §5), sans-IO: bytes in, messages and control frames
//! out; frames out into a buffer. No runtime types, no sockets, so it can be fuzzed alone.
//!
//! The decoder works on a data frame's payload as it arrives rather than waiting for the
//! whole frame: a text message is checked for UTF-8 piece by piece and refused at its first
//! bad byte, and a message over the size limit is refused from the length in its header,
//! before any of its payload is buffered. Control frames (at most 125 bytes) are decoded
//! whole and handed out at once, also between the fragments of a message.
//!
//! With permessage-deflate negotiated (RFC 7692), a text or binary frame with RSV1 set
//! starts a compressed message: its payload is inflated as it arrives, the inflated size
//! checked against the limit at every step, so a deflate bomb is refused with flat memory.
//! RSV1 on a control frame or a continuation is a protocol error (§6.1).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::deflate::{InflateError, Inflater};
use super::utf8::Utf8Validator;

/// Close codes the server sends (RFC 6455 §7.4.1).
pub mod code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL_ERROR: u16 = 1011;
    pub const SERVICE_RESTART: u16 = 1012;
}

/// Frame opcodes (RFC 6455 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    Continuation = 0x0,
    Text = 0x1,
    Binary = 0x2,
    Close = 0x8,
    Ping = 0x9,
    Pong = 0xA,
}

impl OpCode {
    fn from_bits(bits: u8) -> Option<OpCode> {
        Some(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// Why the peer's bytes end the connection; each maps to the close code the server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// A client frame without a mask (§5.1).
    Unmasked,
    /// RSV bits set that no negotiated extension defines (§5.2).
    ReservedBits,
    /// RSV1 (compressed) on a control frame (RFC 7692 §6.1).
    CompressedControl,
    /// RSV1 on a continuation frame: only a message's first frame carries it (§6.1).
    CompressedContinuation,
    /// A compressed message that is not DEFLATE.
    BadCompression,
    /// An opcode RFC 6455 reserves.
    UnknownOpcode(u8),
    /// A control frame with FIN clear (§5.5).
    FragmentedControl,
    /// A control frame with more than 125 bytes of payload (§5.5).
    ControlTooLong,
    /// A continuation frame with no message to continue.
    UnexpectedContinuation,
    /// A text or binary frame while a fragmented message is still open.
    InterleavedMessage,
    /// A 64-bit payload length with its most significant bit set (§5.2).
    LengthTopBit,
    /// A close frame whose payload is one byte (a code needs two).
    ClosePayloadTooShort,
    /// A close code that may not be sent (§7.4).
    BadCloseCode(u16),
    /// A text message, or a close reason, that is not UTF-8 (§8.1).
    InvalidUtf8,
    /// A message larger than the limit.
    TooBig,
}

impl FrameError {
    /// The code of the close frame that answers this error.
    pub fn close_code(self) -> u16 {
        match self {
            FrameError::InvalidUtf8 => code::INVALID_PAYLOAD,
            FrameError::TooBig => code::TOO_BIG,
            _ => code::PROTOCOL_ERROR,
        }
    }

    /// A short reason for the close frame and the log.
    pub fn reason(self) -> &'static str {
        match self {
            FrameError::Unmasked => "unmasked client frame",
            FrameError::ReservedBits => "reserved bits set",
            FrameError::CompressedControl => "compressed control frame",
            FrameError::CompressedContinuation => "RSV1 on a continuation frame",
            FrameError::BadCompression => "invalid compressed data",
            FrameError::UnknownOpcode(_) => "unknown opcode",
            FrameError::FragmentedControl => "fragmented control frame",
            FrameError::ControlTooLong => "control frame over 125 bytes",
            FrameError::UnexpectedContinuation => "continuation without a message",
            FrameError::InterleavedMessage => "new message inside a fragmented one",
            FrameError::LengthTopBit => "payload length with the top bit set",
            FrameError::ClosePayloadTooShort => "close payload of one byte",
            FrameError::BadCloseCode(_) => "invalid close code",
            FrameError::InvalidUtf8 => "invalid UTF-8",
            FrameError::TooBig => "message too big",
        }
    }
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::UnknownOpcode(op) => write!(f, "unknown opcode {op:#x}"),
            FrameError::BadCloseCode(c) => write!(f, "invalid close code {c}"),
            other => f.write_str(other.reason()),
        }
    }
}

impl std::error::Error for FrameError {}

/// Whether a peer may send `code` in a close frame (RFC 6455 §7.4.1 and the IANA registry:
/// 1004–1006 and 1015 are never sent, 1016–2999 are unassigned).
pub fn close_code_valid(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// A close frame's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    pub code: u16,
    /// UTF-8, checked.
    pub reason: Bytes,
}

/// What the decoder hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A complete text message; its bytes are UTF-8 (checked).
    Text(Bytes),
    Binary(Bytes),
    Ping(Bytes),
    Pong(Bytes),
    /// A close frame, with its code and reason when it has them.
    Close(Option<CloseFrame>),
}

/// The data frame whose payload is being read.
#[derive(Debug)]
struct Payload {
    fin: bool,
    remaining: u64,
    mask: [u8; 4],
    /// The position in the mask of the next byte: bytes of this frame unmasked so far,
    /// modulo 4 (a `u8`: every idle WebSocket keeps its decoder).
    done: u8,
}

/// The message being assembled from data frames.
#[derive(Debug)]
struct Partial {
    text: bool,
    /// RSV1 was set on its first frame: `data` holds what its payload inflated to.
    compressed: bool,
    /// Payload bytes received on the wire (compressed or not).
    wire: u64,
    data: BytesMut,
    utf8: Utf8Validator,
}

/// Decodes client frames (masked, as RFC 6455 requires of clients) into [`Event`]s.
#[derive(Debug)]
pub struct Decoder {
    max_message: u64,
    frame: Option<Payload>,
    message: Option<Partial>,
    /// Set when permessage-deflate was negotiated: RSV1 marks a compressed message. Boxed:
    /// most WebSockets have none, and an idle one keeps its decoder.
    inflater: Option<Box<Inflater>>,
}

impl Decoder {
    /// A decoder refusing messages over `max_message` bytes with [`FrameError::TooBig`].
    pub fn new(max_message: usize) -> Decoder {
        Decoder { max_message: max_message as u64, frame: None, message: None, inflater: None }
    }

    /// A decoder for a connection with permessage-deflate: compressed messages are inflated
    /// with `inflater`, and refused with [`FrameError::TooBig`] once they inflate past
    /// `max_message` bytes. Their compressed payload may take up to twice `max_message` on
    /// the wire (it is inflated as it arrives, never held).
    pub fn with_inflater(max_message: usize, inflater: Inflater) -> Decoder {
        Decoder { inflater: Some(Box::new(inflater)), ..Decoder::new(max_message) }
    }

    /// The most compressed payload one message may have on the wire.
    fn max_compressed(&self) -> u64 {
        self.max_message.saturating_mul(2)
    }

    /// Decode from the front of `buf`, consuming what was used. `Ok(None)`: more bytes are
    /// needed (everything usable was consumed). After an error the connection is done: the
    /// decoder's state is no longer meaningful.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Event>, FrameError> {
        loop {
            if let Some(frame) = self.frame.as_mut() {
                let take = frame.remaining.min(buf.len() as u64) as usize;
                if take == 0 && frame.remaining > 0 {
                    return Ok(None);
                }
                let mut chunk = buf.split_to(take);
                unmask(&mut chunk, frame.mask, frame.done as usize);
                frame.done = ((frame.done as usize + take) % 4) as u8;
                frame.remaining -= take as u64;
                let (fin, frame_done) = (frame.fin, frame.remaining == 0);
                let message = self.message.as_mut().expect("a data frame belongs to a message");
                message.wire += take as u64;
                if message.compressed {
                    let inflater = self.inflater.as_mut().expect("RSV1 is accepted only with an inflater");
                    let limit = usize::try_from(self.max_message).unwrap_or(usize::MAX);
                    let start = message.data.len();
                    let inflated = inflater.feed(&chunk, &mut message.data, limit).and_then(|()| {
                        match fin && frame_done {
                            true => inflater.finish(&mut message.data, limit),
                            false => Ok(()),
                        }
                    });
                    inflated.map_err(|e| match e {
                        InflateError::TooBig => FrameError::TooBig,
                        InflateError::Corrupt => FrameError::BadCompression,
                    })?;
                    if message.text {
                        message.utf8.feed(&message.data[start..]).map_err(|_| FrameError::InvalidUtf8)?;
                    }
                } else {
                    if message.text {
                        message.utf8.feed(&chunk).map_err(|_| FrameError::InvalidUtf8)?;
                    }
                    if message.data.is_empty() {
                        message.data = chunk;
                    } else {
                        message.data.extend_from_slice(&chunk);
                    }
                }
                if !frame_done {
                    return Ok(None);
                }
                self.frame = None;
                if fin {
                    let mut message = self.message.take().expect("checked above");
                    if message.text {
                        message.utf8.finish().map_err(|_| FrameError::InvalidUtf8)?;
                        return Ok(Some(Event::Text(message.data.freeze())));
                    }
                    return Ok(Some(Event::Binary(message.data.freeze())));
                }
                continue;
            }

            let Some(head) = parse_head(buf, self.inflater.is_some())? else { return Ok(None) };
            if head.opcode.is_control() {
                if (buf.len() as u64) < head.len as u64 + head.payload {
                    return Ok(None);
                }
                buf.advance(head.len);
                let mut payload = buf.split_to(head.payload as usize);
                unmask(&mut payload, head.mask, 0);
                let payload = payload.freeze();
                return Ok(Some(match head.opcode {
                    OpCode::Ping => Event::Ping(payload),
                    OpCode::Pong => Event::Pong(payload),
                    _ => Event::Close(parse_close(payload)?),
                }));
            }
            // A compressed message is bounded by its inflated size as it inflates; its wire
            // size only by the looser `max_compressed`.
            let (held, limit) = match (&self.message, head.opcode) {
                (None, OpCode::Continuation) => return Err(FrameError::UnexpectedContinuation),
                (Some(_), OpCode::Text | OpCode::Binary) => return Err(FrameError::InterleavedMessage),
                (Some(_), _) if head.compressed => return Err(FrameError::CompressedContinuation),
                (Some(m), _) if m.compressed => (m.wire, self.max_compressed()),
                (Some(m), _) => (m.data.len() as u64, self.max_message),
                (None, _) if head.compressed => (0, self.max_compressed()),
                (None, _) => (0, self.max_message),
            };
            if head.payload > limit - held {
                return Err(FrameError::TooBig);
            }
            buf.advance(head.len);
            if self.message.is_none() {
                self.message = Some(Partial {
                    text: head.opcode == OpCode::Text,
                    compressed: head.compressed,
                    wire: 0,
                    data: BytesMut::new(),
                    utf8: Utf8Validator::new(),
                });
            }
            self.frame = Some(Payload { fin: head.fin, remaining: head.payload, mask: head.mask, done: 0 });
        }
    }
}

/// A frame head, checked.
struct Head {
    fin: bool,
    /// RSV1, with permessage-deflate: the message is compressed.
    compressed: bool,
    opcode: OpCode,
    mask: [u8; 4],
    payload: u64,
    /// Bytes of the head itself.
    len: usize,
}

/// Parse and check the head at the front of `buf` (`None`: incomplete). The first two bytes
/// are checked as soon as they arrive. `deflate`: permessage-deflate was negotiated, so
/// RSV1 may be set (on the first frame of a data message only).
fn parse_head(buf: &[u8], deflate: bool) -> Result<Option<Head>, FrameError> {
    let [b0, b1, ..] = *buf else { return Ok(None) };
    let rsv1 = b0 & 0x40 != 0;
    if b0 & 0x30 != 0 || (rsv1 && !deflate) {
        return Err(FrameError::ReservedBits);
    }
    let fin = b0 & 0x80 != 0;
    let opcode = OpCode::from_bits(b0 & 0x0F).ok_or(FrameError::UnknownOpcode(b0 & 0x0F))?;
    if rsv1 && opcode.is_control() {
        return Err(FrameError::CompressedControl);
    }
    let short = u64::from(b1 & 0x7F);
    if opcode.is_control() {
        if !fin {
            return Err(FrameError::FragmentedControl);
        }
        if short > 125 {
            return Err(FrameError::ControlTooLong);
        }
    }
    if b1 & 0x80 == 0 {
        return Err(FrameError::Unmasked);
    }
    let (payload, at) = match short {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let n = u64::from_be_bytes(b.try_into().expect("eight bytes"));
                if n >> 63 != 0 {
                    return Err(FrameError::LengthTopBit);
                }
                (n, 10)
            }
            None => return Ok(None),
        },
        n => (n, 2),
    };
    let Some(mask) = buf.get(at..at + 4) else { return Ok(None) };
    let mask = mask.try_into().expect("four bytes");
    Ok(Some(Head { fin, compressed: rsv1, opcode, mask, payload, len: at + 4 }))
}

fn parse_close(payload: Bytes) -> Result<Option<CloseFrame>, FrameError> {
    match payload.len() {
        0 => Ok(None),
        1 => Err(FrameError::ClosePayloadTooShort),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !close_code_valid(code) {
                return Err(FrameError::BadCloseCode(code));
            }
            let reason = payload.slice(2..);
            std::str::from_utf8(&reason).map_err(|_| FrameError::InvalidUtf8)?;
            Ok(Some(CloseFrame { code, reason }))
        }
    }
}

/// XOR `data` with `mask`, `offset` bytes into the frame's payload.
fn unmask(data: &mut [u8], mask: [u8; 4], offset: usize) {
    let mut key = [0u8; 8];
    for (i, k) in key.iter_mut().enumerate() {
        *k = mask[(offset + i) % 4];
    }
    let word = u64::from_ne_bytes(key);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let v = u64::from_ne_bytes((&*chunk).try_into().expect("eight bytes")) ^ word;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    // The tail starts at a multiple of 8 from `offset`, so at the same mask position.
    for (b, k) in chunks.into_remainder().iter_mut().zip(key) {
        *b ^= k;
    }
}

/// Append one unfragmented server frame (FIN set, no mask, RFC 6455 §5.1) to `dst`: head
/// and payload together, so they go out in one write.
pub fn encode(dst: &mut BytesMut, opcode: OpCode, payload: &[u8]) {
    encode_frame(dst, opcode, payload, false);
}

/// Append one unfragmented data frame whose payload is a compressed message (RSV1 set,
/// RFC 7692 §6).
pub fn encode_compressed(dst: &mut BytesMut, opcode: OpCode, payload: &[u8]) {
    debug_assert!(!opcode.is_control(), "control frames are never compressed");
    encode_frame(dst, opcode, payload, true);
}

fn encode_frame(dst: &mut BytesMut, opcode: OpCode, payload: &[u8], rsv1: bool) {
    dst.reserve(10 + payload.len());
    put_head(dst, opcode, payload.len(), rsv1);
    dst.put_slice(payload);
}

/// Append the head of an unfragmented, uncompressed server frame whose payload of `len` bytes
/// the caller sends right after it.
pub fn encode_head(dst: &mut BytesMut, opcode: OpCode, len: usize) {
    dst.reserve(10);
    put_head(dst, opcode, len, false);
}

fn put_head(dst: &mut BytesMut, opcode: OpCode, len: usize, rsv1: bool) {
    dst.put_u8(0x80 | if rsv1 { 0x40 } else { 0 } | opcode as u8);
    match len {
        n if n <= 125 => dst.put_u8(n as u8),
        n if n <= 0xFFFF => {
            dst.put_u8(126);
            dst.put_u16(n as u16);
        }
        n => {
            dst.put_u8(127);
            dst.put_u64(n as u64);
        }
    }
}

/// Append a close frame with `code` and `reason` (cut at a character boundary to fit the
/// 125 bytes of a control frame).
pub fn encode_close(dst: &mut BytesMut, code: u16, reason: &str) {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = [0u8; 125];
    payload[..2].copy_from_slice(&code.to_be_bytes());
    payload[2..2 + end].copy_from_slice(&reason.as_bytes()[..end]);
    encode(dst, OpCode::Close, &payload[..2 + end]);
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
