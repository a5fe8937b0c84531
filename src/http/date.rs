//! The `Date` header value, formatted once a second rather than once per response.

use std::time::SystemTime;

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) kept per executor and refreshed by its
/// timer; responses copy the 29 bytes. It is kept inside the start of the usual response
/// head, `HTTP/1.1 200 OK`, `date: ` and the date, so that a `200` copies its first two
/// lines at once.
#[derive(Debug, Clone)]
pub struct DateCache {
    ok_start: [u8; OK_START_LEN],
}

/// The start of a `200` response head, up to where the date goes.
const OK_LINE: &[u8; 23] = b"HTTP/1.1 200 OK\r\ndate: ";
/// The length of an IMF-fixdate.
const DATE_LEN: usize = 29;
/// `HTTP/1.1 200 OK`, the `date` field and the line endings of both.
pub const OK_START_LEN: usize = OK_LINE.len() + DATE_LEN + 2;

impl DateCache {
    pub fn new() -> DateCache {
        let mut ok_start = [b' '; OK_START_LEN];
        ok_start[..OK_LINE.len()].copy_from_slice(OK_LINE);
        ok_start[OK_START_LEN - 2..].copy_from_slice(b"\r\n");
        let mut cache = DateCache { ok_start };
        cache.refresh(SystemTime::now());
        cache
    }

    /// Format `now` into the cache.
    pub fn refresh(&mut self, now: SystemTime) {
        let s = httpdate::fmt_http_date(now);
        let bytes = s.as_bytes();
        if bytes.len() == DATE_LEN {
            self.ok_start[OK_LINE.len()..OK_LINE.len() + DATE_LEN].copy_from_slice(bytes);
        }
    }

    /// The date: 29 bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.ok_start[OK_LINE.len()..OK_LINE.len() + DATE_LEN]
    }

    /// `HTTP/1.1 200 OK`, then `date: ` with the date, each line with its CRLF.
    pub fn ok_start(&self) -> &[u8; OK_START_LEN] {
        &self.ok_start
    }
}

impl Default for DateCache {
    fn default() -> Self {
        DateCache::new()
    }
}
