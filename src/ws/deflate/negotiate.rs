//! Negotiating permessage-deflate (RFC 7692 §5 and §7.1) from the client's
//! `Sec-WebSocket-Extensions` offers, sans-IO.
//!
//! Every offer of `permessage-deflate` is read in the client's order; an offer that breaks
//! the header syntax of RFC 6455 §9.1, names a parameter RFC 7692 does not define for an
//! offer, repeats a parameter or gives one an invalid value is declined (§7: "a server MUST
//! decline"), and so is one the server cannot honour: `server_max_window_bits=8`, since the
//! deflater (zlib-rs) compresses with windows of 9 to 15 bits only and the server does not
//! claim a window it cannot keep to. The first offer left is accepted.

use super::DeflateParams;

/// The extension's name in the header.
pub const NAME: &str = "permessage-deflate";

/// One permessage-deflate offer, checked (RFC 7692 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeflateOffer {
    /// `server_no_context_takeover`: the server must start every message from an empty
    /// history.
    pub server_no_context_takeover: bool,
    /// `client_no_context_takeover`: the client will not use context takeover.
    pub client_no_context_takeover: bool,
    /// `server_max_window_bits=N`: the server must compress with a window of at most 2^N.
    pub server_max_window_bits: Option<u8>,
    /// `client_max_window_bits`, with its value when it has one: the client can be told
    /// to use a smaller window (the server never does: it inflates with any window).
    pub client_max_window_bits: Option<Option<u8>>,
}

/// Why an offer is declined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OfferError {
    /// Not `token *( ";" token [ "=" ( token | quoted-string ) ] )`.
    Syntax,
    /// A parameter RFC 7692 does not define for an offer.
    UnknownParameter(String),
    /// The same parameter twice.
    Duplicate(String),
    /// A value that is missing, present where none is allowed, or not 8 to 15.
    BadValue(String),
}

impl std::fmt::Display for OfferError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OfferError::Syntax => f.write_str("malformed extension offer"),
            OfferError::UnknownParameter(p) => write!(f, "unknown permessage-deflate parameter {p:?}"),
            OfferError::Duplicate(p) => write!(f, "permessage-deflate parameter {p:?} given twice"),
            OfferError::BadValue(p) => write!(f, "invalid value for permessage-deflate parameter {p:?}"),
        }
    }
}

impl std::error::Error for OfferError {}

/// The parameters agreed for the first acceptable permessage-deflate offer among the
/// `Sec-WebSocket-Extensions` header values (all of them, in order), or `None`.
pub fn negotiate<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Option<DeflateParams> {
    values.into_iter().flat_map(|v| split_quoted(v, b',')).find_map(|ext| match parse_offer(ext) {
        Some(Ok(offer)) => accept(&offer),
        Some(Err(e)) => {
            tracing::debug!(error = %e, "permessage-deflate offer declined");
            None
        }
        None => None,
    })
}

/// The agreed parameters for `offer`, or `None` if the server cannot honour it.
pub fn accept(offer: &DeflateOffer) -> Option<DeflateParams> {
    let window = match offer.server_max_window_bits {
        // zlib-rs cannot deflate with a 256-byte window (nor can zlib).
        Some(8) => return None,
        Some(bits) => bits,
        None => 15,
    };
    Some(DeflateParams {
        server_no_context_takeover: offer.server_no_context_takeover,
        client_no_context_takeover: offer.client_no_context_takeover,
        server_max_window_bits: window,
        echo_server_max_window_bits: offer.server_max_window_bits.is_some(),
    })
}

/// Parse one element of the extension list: `None` if it is another extension, else the
/// checked permessage-deflate offer.
pub fn parse_offer(element: &[u8]) -> Option<Result<DeflateOffer, OfferError>> {
    let mut parts = split_quoted(element, b';').into_iter();
    let name = parts.next().unwrap_or_default().trim_ascii();
    if !name.eq_ignore_ascii_case(NAME.as_bytes()) {
        return None;
    }
    let mut offer = DeflateOffer::default();
    for param in parts {
        if let Err(e) = apply_param(&mut offer, param) {
            return Some(Err(e));
        }
    }
    Some(Ok(offer))
}

fn apply_param(offer: &mut DeflateOffer, param: &[u8]) -> Result<(), OfferError> {
    let (name, value) = match param.iter().position(|&b| b == b'=') {
        Some(eq) => (param[..eq].trim_ascii(), Some(unquote(param[eq + 1..].trim_ascii())?)),
        None => (param.trim_ascii(), None),
    };
    if !is_token(name) {
        return Err(OfferError::Syntax);
    }
    let name_str = String::from_utf8_lossy(name).to_ascii_lowercase();
    let bad = || OfferError::BadValue(name_str.clone());
    let dup = || OfferError::Duplicate(name_str.clone());
    match name_str.as_str() {
        "server_no_context_takeover" | "client_no_context_takeover" => {
            if value.is_some() {
                return Err(bad());
            }
            let flag = match name_str.as_str() {
                "server_no_context_takeover" => &mut offer.server_no_context_takeover,
                _ => &mut offer.client_no_context_takeover,
            };
            if std::mem::replace(flag, true) {
                return Err(dup());
            }
        }
        "server_max_window_bits" => {
            let bits = value.as_deref().and_then(window_bits).ok_or_else(bad)?;
            if offer.server_max_window_bits.replace(bits).is_some() {
                return Err(dup());
            }
        }
        "client_max_window_bits" => {
            let bits = match value.as_deref() {
                None => None,
                Some(v) => Some(window_bits(v).ok_or_else(bad)?),
            };
            if offer.client_max_window_bits.replace(bits).is_some() {
                return Err(dup());
            }
        }
        _ => return Err(OfferError::UnknownParameter(name_str)),
    }
    Ok(())
}

/// A window size: 8 to 15, in decimal without leading zeros (RFC 7692 §7.1.2).
fn window_bits(value: &[u8]) -> Option<u8> {
    match value {
        [d @ b'8'..=b'9'] => Some(d - b'0'),
        [b'1', d @ b'0'..=b'5'] => Some(10 + d - b'0'),
        _ => None,
    }
}

/// A parameter value: a token, or a quoted-string whose content, unescaped, is a token
/// (RFC 6455 §9.1).
fn unquote(value: &[u8]) -> Result<Vec<u8>, OfferError> {
    let out = match value {
        [b'"', inner @ .., b'"'] => {
            let mut out = Vec::with_capacity(inner.len());
            let mut bytes = inner.iter();
            while let Some(&b) = bytes.next() {
                match b {
                    b'\\' => out.push(*bytes.next().ok_or(OfferError::Syntax)?),
                    b'"' => return Err(OfferError::Syntax),
                    _ => out.push(b),
                }
            }
            out
        }
        _ => value.to_vec(),
    };
    if is_token(&out) {
        Ok(out)
    } else {
        Err(OfferError::Syntax)
    }
}

/// An HTTP token (RFC 9110 §5.6.2).
fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Split `s` at `sep` outside quoted strings (a `,` or `;` inside quotes is part of the
/// value). Empty list elements (`a,,b`) are dropped, as list syntax allows; an empty
/// parameter (`a;;b`) is kept, for the offer to be declined.
fn split_quoted(s: &[u8], sep: u8) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, &b) in s.iter().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            _ if b == sep && !quoted => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    if sep == b',' {
        parts.retain(|p| !p.trim_ascii().is_empty());
    }
    parts
}

#[cfg(test)]
#[path = "negotiate_tests.rs"]
mod tests;
