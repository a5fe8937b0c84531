//! Inflating client messages (RFC 7692 §7.2.2), bounded while inflating: output never
//! grows past the message limit, whatever the ratio of the compressed bytes (a deflate bomb
//! is refused after at most `limit + 1` bytes of output, with flat memory).

use bytes::BytesMut;
use flate2::{Decompress, FlushDecompress, Status};

/// The most output one step of inflation produces before its size is checked.
const STEP: usize = 16 * 1024;
/// What the receiver appends to a message's payload before inflating its end (§7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Why a compressed message is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// The compressed bytes are not DEFLATE (RFC 1951).
    Corrupt,
    /// The message inflates past the limit.
    TooBig,
}

impl std::fmt::Display for InflateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            InflateError::Corrupt => "invalid compressed data",
            InflateError::TooBig => "message too big once inflated",
        })
    }
}

impl std::error::Error for InflateError {}

/// The inflater of one connection's compressed messages.
pub struct Inflater {
    /// Created at the first compressed message (32 KiB of window, and a WebSocket may never
    /// get one).
    state: Option<Decompress>,
    /// Start every message from an empty history (`client_no_context_takeover`).
    no_context_takeover: bool,
    /// The current message ended its DEFLATE stream with a final block (BFINAL).
    ended: bool,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater").field("no_context_takeover", &self.no_context_takeover).finish()
    }
}

impl Inflater {
    pub fn new(no_context_takeover: bool) -> Inflater {
        Inflater { state: None, no_context_takeover, ended: false }
    }

    /// Inflate `input`, the next compressed bytes of the current message, onto `out`;
    /// [`InflateError::TooBig`] as soon as `out` would hold more than `limit` bytes.
    pub fn feed(&mut self, input: &[u8], out: &mut BytesMut, limit: usize) -> Result<(), InflateError> {
        // A 15-bit window inflates whatever window the client compresses with.
        let state = self.state.get_or_insert_with(|| Decompress::new(false));
        if self.ended && !input.is_empty() {
            return Err(InflateError::Corrupt);
        }
        let mut input = input;
        loop {
            let start = out.len();
            // Room for what may still come (one byte more shows a message over the limit),
            // at most a step, and in proportion to the input: the room is zeroed first, and
            // a few bytes of input rarely make more than a few KiB.
            let room = limit
                .saturating_sub(start)
                .saturating_add(1)
                .min(STEP)
                .min(input.len().saturating_mul(8).max(512));
            out.resize(start + room, 0);
            let (in_before, out_before) = (state.total_in(), state.total_out());
            let status = state.decompress(input, &mut out[start..], FlushDecompress::Sync);
            let consumed = (state.total_in() - in_before) as usize;
            let produced = (state.total_out() - out_before) as usize;
            out.truncate(start + produced);
            let status = status.map_err(|_| InflateError::Corrupt)?;
            if out.len() > limit {
                return Err(InflateError::TooBig);
            }
            input = &input[consumed..];
            if status == Status::StreamEnd {
                // A block with BFINAL set ends the DEFLATE stream (§7.2.3.4 allows it); it
                // must end the message too.
                self.ended = true;
                return match input.is_empty() {
                    true => Ok(()),
                    false => Err(InflateError::Corrupt),
                };
            }
            // Done when the input is used up and the output had room to spare: nothing is
            // held back. No progress at all means the inflater needs more input.
            if (input.is_empty() && produced < room) || (consumed == 0 && produced == 0) {
                return Ok(());
            }
        }
    }

    /// The message's compressed bytes are all fed: inflate the tail §7.2.2 appends, and
    /// forget the history if the client does not use it (or ended the stream).
    pub fn finish(&mut self, out: &mut BytesMut, limit: usize) -> Result<(), InflateError> {
        // After a final block there is no flush to complete, and the next message starts a
        // new stream.
        let result = match self.ended {
            true => Ok(()),
            false => self.feed(&TAIL, out, limit),
        };
        if self.no_context_takeover || std::mem::take(&mut self.ended) {
            if let Some(state) = self.state.as_mut() {
                state.reset(false);
            }
        }
        result
    }
}

#[cfg(test)]
#[path = "inflate_tests.rs"]
mod tests;
