//! The usual request head, parsed in one pass of our own: `METHOD SP target SP HTTP/1.x`, then
//! `name: value` lines, each ending in CRLF or a bare LF, the whole head present. Each byte is
//! looked at once, many at a time ([`super::scan`]): the target is checked for visible ASCII
//! (and its `?` found) in the same loop that finds its end, and each field goes through the
//! framing rules as it is read.
//!
//! It accepts only what httparse accepts, and gives the same head for it: anything else
//! (empty lines before the request line, a target with other bytes, a head still arriving,
//! more fields than allowed, any rule broken) gives `None`, and [`super::parse_head_httparse`]
//! decides, with its errors in their order. A unit test compares the two over the fuzz corpus
//! and generated heads.

use super::scan::{is_token, scan, Stop};
use super::{
    check_field_lines, is_tchar, split_target, FieldRules, FieldsSaid, Limits, ParsedHead, Span, Target,
    Version,
};

/// The head at the start of `buf`, when it is complete, in the usual form, and within every
/// limit and rule; `None` otherwise (the caller then asks httparse).
pub(in crate::http) fn parse(buf: &[u8], limits: &Limits) -> Option<ParsedHead> {
    // The method: a token and one space (`GET ` at once).
    let method_end = if buf.starts_with(b"GET ") { 3 } else { buf.iter().position(|&b| !is_tchar(b))? };
    if method_end == 0 || buf[method_end] != b' ' {
        return None;
    }
    // The target: visible ASCII (httparse takes obs-text too, which `split_target` then
    // refuses: such a target goes the long way, to be refused there), and the first `?`.
    let target_start = method_end + 1;
    let mut query_at = usize::MAX;
    let mut i = scan(buf, target_start, Stop::TargetOrQuery);
    if buf.get(i) == Some(&b'?') {
        query_at = i;
        i = scan(buf, i + 1, Stop::NotVisible);
    }
    let target_end = i;
    if target_end == target_start || buf.get(i) != Some(&b' ') {
        return None;
    }
    // The version, and the line's end.
    let version = match buf.get(i + 1..i + 9)?.try_into().map(u64::from_le_bytes).ok()? {
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
        // The name: token bytes up to the colon. Its end is the first byte that is no
        // visible ASCII or is a colon; then each byte before it must be a token byte.
        let name_start = i;
        i = scan(buf, i, Stop::NameEnd);
        let name = &buf[name_start..i];
        if name.is_empty() || buf.get(i) != Some(&b':') || !is_token(buf, name_start, i) {
            return None;
        }
        i += 1;
        while matches!(buf.get(i), Some(b' ' | b'\t')) {
            i += 1;
        }
        let value_start = i;
        // The value: up to the first control byte other than HTAB, or DEL.
        loop {
            i = scan(buf, i, Stop::ValueEnd);
            match buf.get(i) {
                Some(b'\t') => i += 1,
                _ => break,
            }
        }
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
