//! UTF-8 validation of a text message that arrives in pieces (fragments, or parts of one
//! frame as the socket delivers them).
//!
//! A message is refused at the first byte that cannot begin or continue valid UTF-8, not at
//! its end (RFC 6455 §8.1: fail fast), so a peer cannot make the server buffer a whole
//! message it will refuse anyway. A code point split across pieces is carried over (at most
//! three bytes).

/// The bytes of a text message are not UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

/// Incremental validator: feed every piece of a message in order, then `finish`.
#[derive(Debug, Default, Clone)]
pub struct Utf8Validator {
    /// The start of a code point that the last piece ended in the middle of.
    pending: [u8; 4],
    /// (A `u8`: every idle WebSocket's decoder keeps a validator.)
    pending_len: u8,
}

impl Utf8Validator {
    pub fn new() -> Utf8Validator {
        Utf8Validator::default()
    }

    /// Check the next piece of the message.
    pub fn feed(&mut self, mut piece: &[u8]) -> Result<(), InvalidUtf8> {
        if self.pending_len > 0 {
            // Complete the carried code point first, one byte at a time: at most three.
            while self.pending_len < 4 && !piece.is_empty() {
                self.pending[self.pending_len as usize] = piece[0];
                self.pending_len += 1;
                piece = &piece[1..];
                match std::str::from_utf8(&self.pending[..self.pending_len as usize]) {
                    Ok(_) => break,
                    Err(e) if e.error_len().is_some() => return Err(InvalidUtf8),
                    Err(_) => {}
                }
            }
            match std::str::from_utf8(&self.pending[..self.pending_len as usize]) {
                Ok(_) => self.pending_len = 0,
                // Still incomplete: the piece ran out.
                Err(e) if e.error_len().is_none() => return Ok(()),
                Err(_) => return Err(InvalidUtf8),
            }
        }
        // The bulk of every text message goes through here: simdutf8 checks it many bytes
        // at a time (SSE4.2 or AVX2, chosen at run time), with std's error positions.
        match simdutf8::compat::from_utf8(piece) {
            Ok(_) => Ok(()),
            // A valid prefix of a code point at the very end: keep it for the next piece.
            Err(e) if e.error_len().is_none() => {
                let tail = &piece[e.valid_up_to()..];
                self.pending[..tail.len()].copy_from_slice(tail);
                // At most three bytes: a code point's prefix.
                self.pending_len = tail.len() as u8;
                Ok(())
            }
            Err(_) => Err(InvalidUtf8),
        }
    }

    /// The message has ended: a code point left incomplete makes it invalid.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let complete = self.pending_len == 0;
        self.pending_len = 0;
        if complete {
            Ok(())
        } else {
            Err(InvalidUtf8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_pieces(bytes: &[u8], size: usize) -> Result<(), InvalidUtf8> {
        let mut v = Utf8Validator::new();
        for piece in bytes.chunks(size.max(1)) {
            v.feed(piece)?;
        }
        v.finish()
    }

    #[test]
    fn valid_text_in_any_split() {
        let text = "κόσμε a€𝄞 ok".as_bytes();
        for size in 1..=text.len() {
            assert_eq!(in_pieces(text, size), Ok(()), "split every {size} bytes");
        }
        assert_eq!(in_pieces(b"", 1), Ok(()));
    }

    #[test]
    fn invalid_bytes_fail_at_once() {
        // 0xF4 0x90 starts a code point above U+10FFFF: refused before the rest arrives.
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(b"ok\xF4"), Ok(()));
        assert_eq!(v.feed(b"\x90"), Err(InvalidUtf8));
        // A surrogate (ED A0 80) and an overlong form (C0 80) likewise.
        assert_eq!(Utf8Validator::new().feed(b"\xED\xA0"), Err(InvalidUtf8));
        assert_eq!(Utf8Validator::new().feed(b"\xC0"), Err(InvalidUtf8));
        assert_eq!(Utf8Validator::new().feed(b"a\xFFb"), Err(InvalidUtf8));
    }

    #[test]
    fn invalid_split_across_pieces() {
        let bad = b"\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5\xED\xA0\x80edited";
        for size in 1..bad.len() {
            assert_eq!(in_pieces(bad, size), Err(InvalidUtf8), "split every {size} bytes");
        }
    }

    #[test]
    fn truncated_code_point_fails_at_the_end() {
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(b"a\xF0\x9D"), Ok(()));
        assert_eq!(v.feed(b"\x84"), Ok(()));
        assert_eq!(v.finish(), Err(InvalidUtf8));
        // The validator starts over for the next message.
        assert_eq!(v.feed(b"fine"), Ok(()));
        assert_eq!(v.finish(), Ok(()));
    }
}
