//! The `Date` header value, formatted once a second rather than once per response.

use std::time::SystemTime;

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) kept per executor and refreshed by its
/// timer; responses copy the 29 bytes.
#[derive(Debug, Clone)]
pub struct DateCache {
    value: [u8; 29],
}

impl DateCache {
    pub fn new() -> DateCache {
        let mut cache = DateCache { value: [b' '; 29] };
        cache.refresh(SystemTime::now());
        cache
    }

    /// Format `now` into the cache.
    pub fn refresh(&mut self, now: SystemTime) {
        let s = httpdate::fmt_http_date(now);
        let bytes = s.as_bytes();
        if bytes.len() == self.value.len() {
            self.value.copy_from_slice(bytes);
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.value
    }
}

impl Default for DateCache {
    fn default() -> Self {
        DateCache::new()
    }
}
