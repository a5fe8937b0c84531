//! The usual request head, parsed in one pass of our own: `METHOD SP target SP HTTP/1.x`, then
//! `name: value` lines, each ending in CRLF or a bare LF, the whole head present. Each byte is
//! looked at once: the target is checked for visible ASCII (and its `?` found) in the same
//! loop that finds its end, and each field goes through the framing rules as it is read.
//!
//! It accepts only what httparse accepts, and gives the same head for it: anything else
//! (empty lines before the request line, a target with other bytes, a head still arriving,
//! more fields than allowed, any rule broken) gives `None`, and [`super::parse_head_httparse`]
//! decides, with its errors in their order. A unit test compares the two over the fuzz corpus
//! and generated heads.

use super::{
    check_field_lines, is_tchar, split_target, FieldRules, FieldsSaid, Limits, ParsedHead, Span, Target,
    Version,
};

/// The bytes of a request target taken here: visible ASCII. httparse takes obs-text too,
/// which `split_target` then refuses; such a target goes the long way, to be refused there.
static TARGET_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = b'!';
    while b <= b'~' {
        table[b as usize] = true;
        b += 1;
    }
    table
};

/// The bytes httparse allows in a field value: HTAB, SP to `~`, and obs-text (not DEL, not
/// the other controls).
static VALUE_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    table[b'\t' as usize] = true;
    let mut b = b' ';
    while b <= b'~' {
        table[b as usize] = true;
        b += 1;
    }
    let mut b = 0x80usize;
    while b <= 0xff {
        table[b] = true;
        b += 1;
    }
    table
};

/// Eight bytes of a word that are each `0x80`: the high bit of every byte.
const HIGH: u64 = 0x8080_8080_8080_8080;
/// `b` in every byte of a word.
const fn every_byte(b: u8) -> u64 {
    0x0101_0101_0101_0101 * b as u64
}

/// Whether any byte of `w` is below `n` (`n` at most 0x80), counting only bytes below 0x80.
#[inline]
fn any_below(w: u64, n: u8) -> bool {
    w.wrapping_sub(every_byte(n)) & !w & HIGH != 0
}

/// Whether any byte of `w` is `b`.
#[inline]
fn any_equal(w: u64, b: u8) -> bool {
    let x = w ^ every_byte(b);
    x.wrapping_sub(every_byte(1)) & !x & HIGH != 0
}

/// Whether every byte of `w` is visible ASCII (`!` to `~`): none below `!`, and none that
/// is DEL or above (adding 1 sets the high bit of DEL; the others have it already).
#[inline]
fn visible(w: u64) -> bool {
    !any_below(w, b'!') && (w.wrapping_add(every_byte(1)) | w) & HIGH == 0
}

/// The eight bytes at `at`, if there are eight.
#[inline]
fn word_at(buf: &[u8], at: usize) -> Option<u64> {
    buf.get(at..at + 8).map(|w| u64::from_le_bytes(w.try_into().expect("eight bytes")))
}

/// Where the run of bytes that `keep` accepts, starting at `at`, ends. Eight bytes at a time
/// while none of them is in doubt (`plain` says a word is all kept bytes), then one at a time.
#[inline(always)]
fn run_end(buf: &[u8], mut at: usize, plain: impl Fn(u64) -> bool, keep: impl Fn(u8) -> bool) -> usize {
    while let Some(w) = word_at(buf, at) {
        if !plain(w) {
            break;
        }
        at += 8;
    }
    at + buf[at..].iter().position(|&b| !keep(b)).unwrap_or(buf.len() - at)
}

/// The head at the start of `buf`, when it is complete, in the usual form, and within every
/// limit and rule; `None` otherwise (the caller then asks httparse).
pub(in crate::http) fn parse(buf: &[u8], limits: &Limits) -> Option<ParsedHead> {
    // The method: a token and one space (`GET ` at once).
    let method_end = if buf.starts_with(b"GET ") { 3 } else { buf.iter().position(|&b| !is_tchar(b))? };
    if method_end == 0 || buf[method_end] != b' ' {
        return None;
    }
    // The target: visible ASCII, eight bytes at a time while they hold no byte outside it
    // and no `?` (the first `?` is looked for only in the word that has one).
    let target_start = method_end + 1;
    let plain_target = |w: u64| visible(w) && !any_equal(w, b'?');
    let mut query_at = usize::MAX;
    let mut i = run_end(buf, target_start, plain_target, |b| TARGET_BYTE[b as usize] && b != b'?');
    if buf.get(i) == Some(&b'?') {
        query_at = i;
        i = run_end(buf, i + 1, visible, |b| TARGET_BYTE[b as usize]);
    }
    let target_end = i;
    if target_end == target_start || buf.get(i) != Some(&b' ') {
        return None;
    }
    // The version, and the line's end.
    let version = match word_at(buf, i + 1)? {
        v if v == u64::from_le_bytes(*b"HTTP/1.1") => Version::Http11,
        v if v == u64::from_le_bytes(*b"HTTP/1.0") => Version::Http10,
        _ => return None,
    };
    let line_end = i + 9;
    if line_end > limits.max_request_line {
        return None;
    }
    let fields_start = match buf.get(line_end..line_end + 2)? {
        [b'\r', b'\n'] => line_end + 2,
        [b'\n', _] => line_end + 1,
        _ => return None,
    };

    // The fields, each through the rules as it is read.
    let max_fields = limits.max_headers.max(1);
    let mut field_count = 0usize;
    let mut rules = FieldRules::new(version);
    let mut i = fields_start;
    let len = loop {
        match *buf.get(i)? {
            b'\r' if buf.get(i + 1) == Some(&b'\n') => break i + 2,
            b'\n' => break i + 1,
            _ => {}
        }
        let name_start = i;
        i += buf[i..].iter().position(|&b| !is_tchar(b))?;
        if i == name_start || *buf.get(i)? != b':' {
            return None;
        }
        let name = &buf[name_start..i];
        i += 1;
        while matches!(buf.get(i), Some(b' ' | b'\t')) {
            i += 1;
        }
        let value_start = i;
        // Eight bytes at a time while they hold no control byte (HTAB included) and no DEL.
        i = run_end(buf, i, |w| !any_below(w, b' ') && !any_equal(w, 0x7f), |b| VALUE_BYTE[b as usize]);
        let mut value_end = i;
        i += match *buf.get(i)? {
            b'\n' => 1,
            b'\r' if buf.get(i + 1) == Some(&b'\n') => 2,
            _ => return None,
        };
        while value_end > value_start && matches!(buf[value_end - 1], b' ' | b'\t') {
            value_end -= 1;
        }
        field_count += 1;
        if field_count > max_fields {
            return None;
        }
        rules.add(name, &buf[value_start..value_end]).ok()?;
    };

    if len - fields_start > limits.max_header_block {
        return None;
    }
    check_field_lines(&buf[fields_start..len], limits).ok()?;
    let method = &buf[..method_end];
    let target = &buf[target_start..target_end];
    let Target { path, query, authority } = if target[0] == b'/' && method != b"CONNECT" {
        // origin-form: the path, and the query after the first `?`.
        let at = |from: usize, to: usize| -> Span { from as u32..to as u32 };
        match query_at {
            usize::MAX => Target { path: at(target_start, target_end), query: None, authority: None },
            q => Target { path: at(target_start, q), query: Some(at(q + 1, target_end)), authority: None },
        }
    } else {
        // SAFETY: a token: ASCII.
        let method = unsafe { std::str::from_utf8_unchecked(method) };
        split_target(method, target, target_start as u32).ok()?
    };
    let FieldsSaid { framing, keep_alive, expect_continue, accepts_trailers, forwarding } =
        rules.finish(limits).ok()?;
    Some(ParsedHead {
        len,
        version,
        framing,
        keep_alive,
        expect_continue,
        accepts_trailers,
        forwarding,
        method: 0..method_end as u32,
        target: target_start as u32..target_end as u32,
        path,
        query,
        authority,
        // Without the empty line that ends the head (CRLF or a bare LF).
        fields: fields_start as u32..(len - 1 - usize::from(buf[len - 2] == b'\r')).max(fields_start) as u32,
        field_count: field_count as u32,
    })
}
