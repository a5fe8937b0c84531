//! Compressing server messages (RFC 7692 §7.2.1): DEFLATE with a sync flush at the end of
//! each message, whose final `00 00 ff ff` is taken off.

use flate2::{Compress, Compression, FlushCompress};

/// The deflater of one connection's messages.
pub struct Deflater {
    /// Created at the first message sent: zlib's state is a few hundred KiB with a 15-bit
    /// window, and many WebSockets only ever receive.
    state: Option<Compress>,
    window_bits: u8,
    /// Start every message from an empty history (`server_no_context_takeover`).
    no_context_takeover: bool,
    /// The compressed bytes of the last message, kept for the next one.
    out: Vec<u8>,
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater")
            .field("window_bits", &self.window_bits)
            .field("no_context_takeover", &self.no_context_takeover)
            .finish()
    }
}

/// The compressed bytes kept between messages; a larger buffer is let go.
const KEEP_OUT: usize = 16 * 1024;

impl Deflater {
    /// `window_bits`: 9 to 15 (the negotiation never agrees to 8).
    pub fn new(window_bits: u8, no_context_takeover: bool) -> Deflater {
        assert!((9..=15).contains(&window_bits), "window bits {window_bits} outside 9..=15");
        Deflater { state: None, window_bits, no_context_takeover, out: Vec::new() }
    }

    /// Compress one whole message's payload; the result is the payload of its frame (sent
    /// with RSV1 set).
    pub fn compress(&mut self, payload: &[u8]) -> &[u8] {
        // Level 1: the server's CPU matters more than the last few percent of the ratio.
        let window = self.window_bits;
        let state = self
            .state
            .get_or_insert_with(|| Compress::new_with_window_bits(Compression::fast(), false, window));
        if self.out.capacity() > KEEP_OUT {
            self.out = Vec::new();
        }
        self.out.clear();
        let mut input = payload;
        loop {
            if self.out.capacity() - self.out.len() < 64 {
                self.out.reserve(input.len() / 2 + 256);
            }
            let before = state.total_in();
            state
                .compress_vec(input, &mut self.out, FlushCompress::Sync)
                .expect("deflating into memory with a sync flush cannot fail");
            input = &input[(state.total_in() - before) as usize..];
            // The flush is complete once all input is taken and the output was not filled.
            if input.is_empty() && self.out.len() < self.out.capacity() {
                break;
            }
        }
        if self.out.is_empty() {
            // An empty message right after a flush: zlib has nothing to emit. An empty
            // stored block, less the tail, is the one byte 0x00 (RFC 7692 §7.2.3.6).
            self.out.push(0x00);
        } else {
            debug_assert!(
                self.out.ends_with(&[0x00, 0x00, 0xff, 0xff]),
                "a sync flush ends with an empty stored block"
            );
            self.out.truncate(self.out.len() - 4);
        }
        if self.no_context_takeover {
            state.reset();
        }
        &self.out
    }
}

#[cfg(test)]
#[path = "compress_tests.rs"]
mod tests;
