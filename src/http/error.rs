//! Everything that can be wrong with a request on the wire, each mapped to the status the
//! server answers with. Every one of these ends the connection: once framing is in doubt,
//! nothing after it can safely be read as a request (RFC 9112 §11).

use std::fmt;

/// A request the codec refuses. `status()` is what the client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// The method is not a token (RFC 9110 §9.1).
    InvalidMethod,
    /// The request target is not origin-, absolute-, authority- or asterisk-form.
    InvalidTarget,
    /// The request line or a header line is not well formed (bad line ending, stray bytes).
    MalformedHead,
    /// A header name has an invalid byte, including whitespace before the colon (RFC 9112 §5.1)
    /// and obs-fold continuation lines (RFC 9112 §5.2).
    InvalidHeaderName,
    /// A header value holds a control byte (NUL, bare CR, DEL, ...).
    InvalidHeaderValue,
    /// `HTTP/x.y` that this server does not speak (HTTP/2 preface included).
    UnsupportedVersion,
    /// The request line is longer than the configured limit.
    RequestLineTooLong,
    /// One header field is longer than the configured limit.
    HeaderFieldTooLarge,
    /// The whole header block is larger than the configured limit.
    HeadersTooLarge,
    /// More header fields than the configured limit.
    TooManyHeaders,
    /// HTTP/1.1 request without a Host header (RFC 9112 §3.2).
    MissingHost,
    /// More than one Host header.
    DuplicateHost,
    /// A Host value that is not `uri-host [ ":" port ]` (RFC 9112 §3.2, RFC 3986 §3.2.2).
    InvalidHost,
    /// Both Content-Length and Transfer-Encoding (RFC 9112 §6.3 rule 3: a smuggling vector).
    ContentLengthWithTransferEncoding,
    /// A Content-Length that is not plain digits, overflows, or disagrees with another one.
    InvalidContentLength,
    /// A Transfer-Encoding whose final coding is not `chunked`, or that names `chunked` twice.
    InvalidTransferEncoding,
    /// A transfer coding this server does not implement (RFC 9112 §6.1: 501).
    UnsupportedTransferCoding,
    /// Transfer-Encoding in an HTTP/1.0 request: framing is faulty by definition (RFC 9112 §6.1).
    TransferEncodingInHttp10,
    /// An `Expect` other than `100-continue` (RFC 9110 §10.1.1).
    UnsupportedExpectation,
    /// A malformed chunked body: size not hex, overflow, missing CRLF, bad trailer.
    InvalidChunk,
    /// The body is larger than the configured limit.
    BodyTooLarge,
    /// A chunked body with far more framing (chunk extensions, size lines) than data.
    TooMuchFraming,
    /// The connection ended in the middle of a body.
    IncompleteBody,
    /// The request head did not arrive within the header timeout.
    HeadTimeout,
    /// The client stopped sending its body for longer than the body timeout.
    BodyTimeout,
}

impl ParseError {
    /// Every kind, in `index()` order (for per-kind counters).
    pub const ALL: [ParseError; 25] = [
        ParseError::InvalidMethod,
        ParseError::InvalidTarget,
        ParseError::MalformedHead,
        ParseError::InvalidHeaderName,
        ParseError::InvalidHeaderValue,
        ParseError::UnsupportedVersion,
        ParseError::RequestLineTooLong,
        ParseError::HeaderFieldTooLarge,
        ParseError::HeadersTooLarge,
        ParseError::TooManyHeaders,
        ParseError::MissingHost,
        ParseError::DuplicateHost,
        ParseError::InvalidHost,
        ParseError::ContentLengthWithTransferEncoding,
        ParseError::InvalidContentLength,
        ParseError::InvalidTransferEncoding,
        ParseError::UnsupportedTransferCoding,
        ParseError::TransferEncodingInHttp10,
        ParseError::UnsupportedExpectation,
        ParseError::InvalidChunk,
        ParseError::BodyTooLarge,
        ParseError::TooMuchFraming,
        ParseError::IncompleteBody,
        ParseError::HeadTimeout,
        ParseError::BodyTimeout,
    ];

    /// This kind's position in [`ParseError::ALL`].
    pub fn index(self) -> usize {
        Self::ALL.iter().position(|k| *k == self).unwrap_or(0)
    }

    /// The response status for this error.
    pub fn status(self) -> u16 {
        use ParseError::*;
        match self {
            UnsupportedVersion => 505,
            RequestLineTooLong => 414,
            HeaderFieldTooLarge | HeadersTooLarge | TooManyHeaders => 431,
            UnsupportedTransferCoding => 501,
            UnsupportedExpectation => 417,
            BodyTooLarge | TooMuchFraming => 413,
            HeadTimeout | BodyTimeout => 408,
            InvalidMethod
            | InvalidTarget
            | MalformedHead
            | InvalidHeaderName
            | InvalidHeaderValue
            | MissingHost
            | DuplicateHost
            | InvalidHost
            | ContentLengthWithTransferEncoding
            | InvalidContentLength
            | InvalidTransferEncoding
            | TransferEncodingInHttp10
            | InvalidChunk
            | IncompleteBody => 400,
        }
    }

    /// A short machine-friendly name, used in logs (and metrics later).
    pub fn kind(self) -> &'static str {
        use ParseError::*;
        match self {
            InvalidMethod => "invalid_method",
            InvalidTarget => "invalid_target",
            MalformedHead => "malformed_head",
            InvalidHeaderName => "invalid_header_name",
            InvalidHeaderValue => "invalid_header_value",
            UnsupportedVersion => "unsupported_version",
            RequestLineTooLong => "request_line_too_long",
            HeaderFieldTooLarge => "header_field_too_large",
            HeadersTooLarge => "headers_too_large",
            TooManyHeaders => "too_many_headers",
            MissingHost => "missing_host",
            DuplicateHost => "duplicate_host",
            InvalidHost => "invalid_host",
            ContentLengthWithTransferEncoding => "content_length_with_transfer_encoding",
            InvalidContentLength => "invalid_content_length",
            InvalidTransferEncoding => "invalid_transfer_encoding",
            UnsupportedTransferCoding => "unsupported_transfer_coding",
            TransferEncodingInHttp10 => "transfer_encoding_in_http10",
            UnsupportedExpectation => "unsupported_expectation",
            InvalidChunk => "invalid_chunk",
            BodyTooLarge => "body_too_large",
            TooMuchFraming => "too_much_framing",
            IncompleteBody => "incomplete_body",
            HeadTimeout => "head_timeout",
            BodyTimeout => "body_timeout",
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ParseError::*;
        let msg = match self {
            InvalidMethod => "invalid method token",
            InvalidTarget => "invalid request target",
            MalformedHead => "malformed request head",
            InvalidHeaderName => "invalid header field name (whitespace before colon or obs-fold)",
            InvalidHeaderValue => "control character in header field value",
            UnsupportedVersion => "HTTP version not supported",
            RequestLineTooLong => "request line too long",
            HeaderFieldTooLarge => "header field too large",
            HeadersTooLarge => "header block too large",
            TooManyHeaders => "too many header fields",
            MissingHost => "HTTP/1.1 request without Host header",
            DuplicateHost => "more than one Host header",
            InvalidHost => "Host is not host[:port]",
            ContentLengthWithTransferEncoding => "both Content-Length and Transfer-Encoding",
            InvalidContentLength => "invalid Content-Length",
            InvalidTransferEncoding => "Transfer-Encoding must end with a single chunked",
            UnsupportedTransferCoding => "transfer coding not implemented",
            TransferEncodingInHttp10 => "Transfer-Encoding in an HTTP/1.0 request",
            UnsupportedExpectation => "unsupported expectation",
            InvalidChunk => "malformed chunked body",
            BodyTooLarge => "request body too large",
            TooMuchFraming => "chunk extensions and size lines far larger than the data they frame",
            IncompleteBody => "connection closed before the body was complete",
            HeadTimeout => "request head not received in time",
            BodyTimeout => "request body not received in time",
        };
        f.write_str(msg)
    }
}

impl std::error::Error for ParseError {}
