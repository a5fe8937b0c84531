//! The opening handshake (RFC 6455 §4.2): checking the client's upgrade request and
//! answering `101 Switching Protocols`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use sha1::{Digest, Sha1};

use super::deflate::{negotiate, DeflateParams};
use crate::http::{Framing, Version};

/// The GUID every server appends to the client's key (RFC 6455 §1.3).
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Why an upgrade request is refused; each maps to a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
    /// No `Upgrade: websocket`, or no `upgrade` token in `Connection`: an ordinary request
    /// to a WebSocket resource (426, naming the protocol to upgrade to).
    NotUpgrade,
    /// An upgrade with another method than GET (405).
    NotGet,
    /// An upgrade over HTTP/1.0 (400).
    OldHttp,
    /// `Sec-WebSocket-Key` missing or not the base64 of 16 bytes (400).
    BadKey,
    /// `Sec-WebSocket-Version` missing or not 13 (426, naming 13).
    BadVersion,
    /// The upgrade request has a body (400): what follows the head belongs to the WebSocket.
    Body,
}

impl HandshakeError {
    pub fn status(self) -> u16 {
        match self {
            HandshakeError::NotUpgrade | HandshakeError::BadVersion => 426,
            HandshakeError::NotGet => 405,
            HandshakeError::OldHttp | HandshakeError::BadKey | HandshakeError::Body => 400,
        }
    }

    fn reason(self) -> &'static str {
        match self {
            HandshakeError::NotUpgrade => "this resource needs a WebSocket upgrade",
            HandshakeError::NotGet => "a WebSocket upgrade must be a GET",
            HandshakeError::OldHttp => "a WebSocket upgrade needs HTTP/1.1",
            HandshakeError::BadKey => "Sec-WebSocket-Key must be the base64 of 16 bytes",
            HandshakeError::BadVersion => "only Sec-WebSocket-Version 13 is supported",
            HandshakeError::Body => "a WebSocket upgrade request has no body",
        }
    }

    /// The response that refuses the upgrade.
    pub fn response(self) -> crate::Response {
        let status = self.status();
        let body = format!("{} {}: {}\n", status, crate::http::response::reason(status), self.reason());
        let response = crate::Response::new(status)
            .with_header("content-type", Bytes::from_static(b"text/plain; charset=utf-8"))
            .with_body(body);
        match self {
            HandshakeError::NotUpgrade => response.with_header("upgrade", Bytes::from_static(b"websocket")),
            HandshakeError::BadVersion => {
                response.with_header("sec-websocket-version", Bytes::from_static(b"13"))
            }
            HandshakeError::NotGet => response.with_header("allow", Bytes::from_static(b"GET")),
            _ => response,
        }
    }
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for HandshakeError {}

/// What a valid upgrade request carries that the answer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// The `Sec-WebSocket-Accept` value.
    pub accept: String,
    /// The subprotocols the client offered, in its order of preference.
    pub protocols: Vec<String>,
    /// The `Origin` header, for the server's allow-list.
    pub origin: Option<Bytes>,
    /// The parameters of the first acceptable permessage-deflate offer, if any (applied only
    /// when the server has it on).
    pub deflate: Option<DeflateParams>,
}

/// Check an upgrade request from its method, version, framing and header fields.
pub fn check(
    method: &str,
    version: Version,
    framing: Framing,
    headers: &[(&str, &[u8])],
) -> Result<Handshake, HandshakeError> {
    let all = |name: &'static str| {
        headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
    };
    let tokens = |name: &'static str| all(name).flat_map(|v| v.split(|&b| b == b',')).map(<[u8]>::trim_ascii);
    let upgrade = tokens("upgrade").any(|t| t.eq_ignore_ascii_case(b"websocket"));
    let connection = tokens("connection").any(|t| t.eq_ignore_ascii_case(b"upgrade"));
    if !upgrade || !connection {
        return Err(HandshakeError::NotUpgrade);
    }
    if method != "GET" {
        return Err(HandshakeError::NotGet);
    }
    if version != Version::Http11 {
        return Err(HandshakeError::OldHttp);
    }
    let mut keys = all("sec-websocket-key");
    let key = match (keys.next(), keys.next()) {
        (Some(key), None) => key.trim_ascii(),
        _ => return Err(HandshakeError::BadKey),
    };
    if !matches!(STANDARD.decode(key), Ok(raw) if raw.len() == 16) {
        return Err(HandshakeError::BadKey);
    }
    let mut versions = all("sec-websocket-version");
    if !matches!((versions.next(), versions.next()), (Some(v), None) if v.trim_ascii() == b"13") {
        return Err(HandshakeError::BadVersion);
    }
    if framing != Framing::None {
        return Err(HandshakeError::Body);
    }
    let protocols = tokens("sec-websocket-protocol")
        .filter(|t| !t.is_empty())
        .filter_map(|t| std::str::from_utf8(t).ok())
        .map(str::to_string)
        .collect();
    let origin = all("origin").next().map(Bytes::copy_from_slice);
    let deflate = negotiate(all("sec-websocket-extensions"));
    Ok(Handshake { accept: accept_key(key), protocols, origin, deflate })
}

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(ACCEPT_GUID);
    STANDARD.encode(sha.finalize())
}

/// Whether `origin` may open a WebSocket: any, when the allow-list is empty; else an exact
/// (ASCII case-insensitive) match of the serialized origin, e.g. `https://app.example.com`.
/// A request without `Origin` is not from a browser and is let through.
pub fn origin_allowed(origin: Option<&[u8]>, allowed: &[String]) -> bool {
    match origin {
        None => true,
        Some(_) if allowed.is_empty() => true,
        Some(origin) => {
            allowed.iter().any(|a| a == "*" || a.as_bytes().eq_ignore_ascii_case(origin.trim_ascii()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn run(
        method: &str,
        version: Version,
        framing: Framing,
        headers: &[(&str, &str)],
    ) -> Result<Handshake, HandshakeError> {
        let fields: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
        check(method, version, framing, &fields)
    }

    fn good(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut h = vec![
            ("Host", "x"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", KEY),
            ("Sec-WebSocket-Version", "13"),
        ];
        h.extend_from_slice(extra);
        h
    }

    #[test]
    fn rfc_sample_key() {
        // RFC 6455 §1.3.
        assert_eq!(accept_key(KEY.as_bytes()), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let ok = run("GET", Version::Http11, Framing::None, &good(&[])).unwrap();
        assert_eq!(ok.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert!(ok.protocols.is_empty());
        assert_eq!(ok.origin, None);
    }

    #[test]
    fn tokens_are_case_insensitive_and_in_lists() {
        let mut h = good(&[]);
        h[1] = ("upgrade", "WebSocket");
        h[2] = ("connection", "keep-alive, UPGRADE");
        assert!(run("GET", Version::Http11, Framing::None, &h).is_ok());
        h[2] = ("connection", "keep-alive");
        assert_eq!(run("GET", Version::Http11, Framing::None, &h), Err(HandshakeError::NotUpgrade));
    }

    #[test]
    fn refusals_and_their_statuses() {
        type Case<'a> = (&'a str, Version, Framing, Vec<(&'a str, &'a str)>, HandshakeError, u16);
        let cases: Vec<Case> = vec![
            ("GET", Version::Http11, Framing::None, vec![("Host", "x")], HandshakeError::NotUpgrade, 426),
            ("POST", Version::Http11, Framing::None, good(&[]), HandshakeError::NotGet, 405),
            ("GET", Version::Http10, Framing::None, good(&[]), HandshakeError::OldHttp, 400),
            ("GET", Version::Http11, Framing::Length(3), good(&[]), HandshakeError::Body, 400),
            ("GET", Version::Http11, Framing::Chunked, good(&[]), HandshakeError::Body, 400),
        ];
        for (method, version, framing, headers, want, status) in cases {
            assert_eq!(run(method, version, framing, &headers), Err(want));
            assert_eq!(want.status(), status);
        }
        for key in ["", "not base64!", "AAAA", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"] {
            let mut h = good(&[]);
            h[3] = ("Sec-WebSocket-Key", key);
            assert_eq!(
                run("GET", Version::Http11, Framing::None, &h),
                Err(HandshakeError::BadKey),
                "{key:?}"
            );
        }
        let mut h = good(&[]);
        h.remove(3);
        assert_eq!(run("GET", Version::Http11, Framing::None, &h), Err(HandshakeError::BadKey));
        for version in ["8", "", "13, 8"] {
            let mut h = good(&[]);
            h[4] = ("Sec-WebSocket-Version", version);
            assert_eq!(run("GET", Version::Http11, Framing::None, &h), Err(HandshakeError::BadVersion));
        }
        let refusal = HandshakeError::BadVersion.response();
        assert_eq!(refusal.status(), 426);
        assert_eq!(refusal.header("sec-websocket-version"), Some(&b"13"[..]));
        assert_eq!(HandshakeError::NotUpgrade.response().header("upgrade"), Some(&b"websocket"[..]));
    }

    #[test]
    fn protocols_and_origin() {
        let h = good(&[
            ("Sec-WebSocket-Protocol", "chat, superchat"),
            ("Sec-WebSocket-Protocol", "v2"),
            ("Origin", "https://app.example.com"),
        ]);
        let ok = run("GET", Version::Http11, Framing::None, &h).unwrap();
        assert_eq!(ok.protocols, ["chat", "superchat", "v2"]);
        assert_eq!(ok.origin.as_deref(), Some(&b"https://app.example.com"[..]));
    }

    #[test]
    fn origin_allow_list() {
        let list = vec!["https://app.example.com".to_string()];
        assert!(origin_allowed(Some(b"https://evil.example"), &[]));
        assert!(origin_allowed(None, &list));
        assert!(origin_allowed(Some(b"https://APP.example.com"), &list));
        assert!(!origin_allowed(Some(b"https://evil.example"), &list));
        assert!(!origin_allowed(Some(b"null"), &list));
    }
}
