//! Finding where a run of bytes ends in a request head, many bytes at a time: the one-pass
//! parser's inner loops. Sixteen bytes at a time with SSE2 on x86-64 (part of the base
//! instruction set, so no detection at run time), eight at a time in a `u64` elsewhere and for
//! buffers shorter than sixteen bytes. A unit test checks that both find the same byte as a
//! plain loop over each byte.

/// What ends the run [`scan`] looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    /// A request target's bytes are visible ASCII; this stops at any other byte, and at `?`.
    TargetOrQuery,
    /// Any byte that is not visible ASCII (the query, after the `?`).
    NotVisible,
    /// Any byte that is not visible ASCII, and the colon that ends a field name.
    NameEnd,
    /// The control bytes (HTAB included, which the caller steps over) and DEL: a field
    /// value's bytes are the others, obs-text too.
    ValueEnd,
}

impl Stop {
    /// Whether `b` ends the run: what the faster forms below compute for many bytes at once.
    #[cfg(test)]
    fn stops_at(self, b: u8) -> bool {
        let not_visible = !(b'!'..=b'~').contains(&b);
        match self {
            Stop::TargetOrQuery => not_visible || b == b'?',
            Stop::NotVisible => not_visible,
            Stop::NameEnd => not_visible || b == b':',
            Stop::ValueEnd => b < b' ' || b == 0x7f,
        }
    }
}

/// Where the first byte at or after `at` that `stop` ends on is; `buf.len()` when the buffer
/// ends first.
#[inline(always)]
pub(super) fn scan(buf: &[u8], at: usize, stop: Stop) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        sse2::scan(buf, at, stop)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        word::scan(buf, at, stop)
    }
}

/// Whether every byte of `buf[start..end]` is a token byte (`tchar`, RFC 9110 §5.6.2): a
/// field name's. Letters, digits and `-` (what names are made of) sixteen at a time; any other
/// byte sends the rest to the table, one byte at a time.
#[inline(always)]
pub(super) fn is_token(buf: &[u8], start: usize, end: usize) -> bool {
    debug_assert!(start <= end && end <= buf.len(), "{start}..{end} of {}", buf.len());
    #[cfg(target_arch = "x86_64")]
    {
        sse2::is_token(buf, start, end)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        by_table(&buf[start..end])
    }
}

/// [`is_token`] one byte at a time.
#[inline]
fn by_table(bytes: &[u8]) -> bool {
    bytes.iter().fold(true, |all, &b| all & crate::http::is_tchar(b))
}

#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::{
        __m128i, _mm_and_si128, _mm_cmpeq_epi8, _mm_cmpgt_epi8, _mm_cmplt_epi8, _mm_loadu_si128,
        _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };

    use super::Stop;

    /// One bit for each of the sixteen bytes of `v` (the lowest for the first byte), set
    /// where `stop` ends the run.
    #[inline(always)]
    fn flags(v: __m128i, stop: Stop) -> u32 {
        // SAFETY: SSE2 is part of x86-64: these need no feature beyond the target's own.
        unsafe {
            let splat = |b: u8| _mm_set1_epi8(b as i8);
            // Signed, bytes from 0x80 up are below `!` too: so this is "not `!` to `~`" once
            // DEL is added.
            let not_visible = || _mm_or_si128(_mm_cmplt_epi8(v, splat(b'!')), _mm_cmpeq_epi8(v, splat(0x7f)));
            let flagged = match stop {
                Stop::TargetOrQuery => _mm_or_si128(not_visible(), _mm_cmpeq_epi8(v, splat(b'?'))),
                Stop::NotVisible => not_visible(),
                Stop::NameEnd => _mm_or_si128(not_visible(), _mm_cmpeq_epi8(v, splat(b':'))),
                // Unsigned `b <= 0x1f`: the smaller of `b` and 0x1f is `b`.
                Stop::ValueEnd => _mm_or_si128(
                    _mm_cmpeq_epi8(_mm_min_epu8(v, splat(0x1f)), v),
                    _mm_cmpeq_epi8(v, splat(0x7f)),
                ),
            };
            _mm_movemask_epi8(flagged) as u32
        }
    }

    /// One bit for each of the sixteen bytes of `v`, set where it is a letter, a digit or `-`.
    #[inline(always)]
    fn name_bytes(v: __m128i) -> u32 {
        // SAFETY: SSE2 is part of x86-64, as above.
        unsafe {
            let splat = |b: u8| _mm_set1_epi8(b as i8);
            // Signed compares: bytes from 0x80 up are below every bound, so in no range.
            let within = |x: __m128i, lo: u8, hi: u8| {
                _mm_and_si128(_mm_cmpgt_epi8(x, splat(lo - 1)), _mm_cmplt_epi8(x, splat(hi + 1)))
            };
            // With the case bit set, a letter is a lowercase letter (and no other byte is).
            let letter = within(_mm_or_si128(v, splat(0x20)), b'a', b'z');
            let digit = within(v, b'0', b'9');
            let dash = _mm_cmpeq_epi8(v, splat(b'-'));
            _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(letter, digit), dash)) as u32
        }
    }

    #[inline(always)]
    pub(super) fn is_token(buf: &[u8], mut at: usize, end: usize) -> bool {
        if end - at <= 4 {
            // `Host`: four loads from the table cost less.
            return super::by_table(&buf[at..end]);
        }
        while at < end {
            if at + 16 > buf.len() {
                return super::by_table(&buf[at..end]);
            }
            // SAFETY: in bounds, just checked.
            let common = name_bytes(unsafe { load(buf, at) });
            let want = if end - at >= 16 { 0xffff } else { (1 << (end - at)) - 1 };
            if common & want != want {
                return super::by_table(&buf[at..end]);
            }
            at += 16;
        }
        true
    }

    /// The sixteen bytes at `from`.
    ///
    /// # Safety
    /// `from + 16 <= buf.len()`.
    #[inline(always)]
    unsafe fn load(buf: &[u8], from: usize) -> __m128i {
        // SAFETY: the caller's bound; an unaligned load.
        unsafe { _mm_loadu_si128(buf.as_ptr().add(from).cast()) }
    }

    #[inline(always)]
    pub(super) fn scan(buf: &[u8], mut at: usize, stop: Stop) -> usize {
        let len = buf.len();
        if len < 16 {
            return super::word::scan(buf, at, stop);
        }
        while at + 16 <= len {
            // SAFETY: in bounds, just checked.
            let found = flags(unsafe { load(buf, at) }, stop);
            if found != 0 {
                return at + found.trailing_zeros() as usize;
            }
            at += 16;
        }
        if at >= len {
            return len;
        }
        // Fewer than sixteen left: the last sixteen of the buffer, less the bytes before
        // `at`, and every byte past the end counted as a stop.
        // SAFETY: `len >= 16`.
        let found = flags(unsafe { load(buf, len - 16) }, stop) >> (at + 16 - len);
        at + (found | (!0 << (len - at))).trailing_zeros() as usize
    }
}

/// The same eight bytes at a time in a `u64`, for other targets and short buffers.
mod word {
    use super::Stop;

    /// Eight bytes of a word that are each `0x80`: the high bit of every byte.
    const HIGH: u64 = 0x8080_8080_8080_8080;

    /// `b` in every byte of a word.
    const fn every_byte(b: u8) -> u64 {
        0x0101_0101_0101_0101 * b as u64
    }

    // The masks below flag bytes of a little-endian word by setting their high bit. A borrow
    // or carry can flag a byte wrongly, but only above a byte rightly flagged: the lowest
    // flag is always right, and so is the lowest of several masks OR'ed together, which is
    // all `scan` reads.

    /// Flags the bytes below `n` (`n` at most 0x80).
    #[inline(always)]
    fn below(w: u64, n: u8) -> u64 {
        w.wrapping_sub(every_byte(n)) & !w & HIGH
    }

    /// Flags the bytes equal to `b`.
    #[inline(always)]
    fn equal(w: u64, b: u8) -> u64 {
        below(w ^ every_byte(b), 1)
    }

    /// Flags DEL and the bytes above it (a carry out of 0xff lands on a byte above one
    /// flagged).
    #[inline(always)]
    fn del_or_high(w: u64) -> u64 {
        (w.wrapping_add(every_byte(1)) | w) & HIGH
    }

    #[inline(always)]
    fn flags(w: u64, stop: Stop) -> u64 {
        let not_visible = || below(w, b'!') | del_or_high(w);
        match stop {
            Stop::TargetOrQuery => not_visible() | equal(w, b'?'),
            Stop::NotVisible => not_visible(),
            Stop::NameEnd => not_visible() | equal(w, b':'),
            Stop::ValueEnd => below(w, b' ') | equal(w, 0x7f),
        }
    }

    /// The eight bytes at `at` as a little-endian word, with zeros (which every `Stop` stops
    /// at) for those past the end of `buf`: the last eight bytes of the buffer, shifted, when
    /// fewer are left.
    #[inline(always)]
    fn word_at(buf: &[u8], at: usize) -> u64 {
        let read = |at: usize| u64::from_le_bytes(buf[at..at + 8].try_into().expect("eight bytes"));
        if at + 8 <= buf.len() {
            read(at)
        } else if at < buf.len() && buf.len() >= 8 {
            read(buf.len() - 8) >> (8 * (at + 8 - buf.len()))
        } else {
            let mut word = [0; 8];
            let rest = buf.get(at..).unwrap_or_default();
            word[..rest.len()].copy_from_slice(rest);
            u64::from_le_bytes(word)
        }
    }

    #[inline(always)]
    pub(super) fn scan(buf: &[u8], mut at: usize, stop: Stop) -> usize {
        loop {
            let found = flags(word_at(buf, at), stop);
            if found != 0 {
                return (at + found.trailing_zeros() as usize / 8).min(buf.len());
            }
            at += 8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every form finds the byte that a plain loop finds, for each kind of stop, from every
    /// start: over buffers of every length up to 40 made of a run of one byte with one other
    /// byte (each byte that matters to a stop) placed anywhere, and with every byte value
    /// placed anywhere in buffers of the lengths around a word's and a vector's.
    #[test]
    fn finds_what_a_byte_by_byte_loop_finds() {
        let stops = [Stop::TargetOrQuery, Stop::NotVisible, Stop::NameEnd, Stop::ValueEnd];
        let plain = |buf: &[u8], at: usize, stop: Stop| {
            buf[at..].iter().position(|&b| stop.stops_at(b)).map_or(buf.len(), |i| at + i)
        };
        let check = |buf: &[u8]| {
            for &stop in &stops {
                for at in 0..=buf.len() {
                    let want = plain(buf, at, stop);
                    assert_eq!(word::scan(buf, at, stop), want, "word {stop:?} {buf:?} from {at}");
                    assert_eq!(scan(buf, at, stop), want, "{stop:?} {buf:?} from {at}");
                }
            }
        };
        let matter = [0, b'\t', 0x1f, b' ', b'!', b':', b'?', b'a', b'~', 0x7f, 0x80, 0xff];
        for fill in [b'a', b' ', 0x80] {
            for len in 0..=40usize {
                check(&vec![fill; len]);
                for odd_at in 0..len {
                    let odds: Vec<u8> = if [1, 8, 9, 16, 17, 33].contains(&len) {
                        (0..=255).collect()
                    } else {
                        matter.to_vec()
                    };
                    for odd in odds {
                        let mut buf = vec![fill; len];
                        buf[odd_at] = odd;
                        check(&buf);
                    }
                }
            }
        }
    }

    /// A name is a token exactly when the table says every byte of it is one: for every byte
    /// value anywhere in names of every length up to 40 (letters around it, or `_`), and
    /// wherever the name sits in its buffer.
    #[test]
    fn tells_tokens_as_the_table_does() {
        for fill in [b'a', b'Z', b'_'] {
            for len in 0..=40usize {
                for odd_at in 0..len.max(1) {
                    for odd in 0..=255u8 {
                        let mut name = vec![fill; len];
                        if let Some(b) = name.get_mut(odd_at) {
                            *b = odd;
                        }
                        let want = by_table(&name);
                        for (before, after) in [(0, 0), (3, 0), (0, 20), (5, 30)] {
                            let mut buf = vec![b'x'; before];
                            buf.extend_from_slice(&name);
                            buf.extend(std::iter::repeat_n(b':', after));
                            assert_eq!(is_token(&buf, before, before + len), want, "{name:?} in {buf:?}");
                        }
                    }
                }
            }
        }
    }
}
