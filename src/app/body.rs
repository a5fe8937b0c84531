//! Request bodies as handlers see them: already here (the common small case) or streamed
//! from the connection as the handler asks for it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use bytes::{Bytes, BytesMut};

use crate::http::ParseError;

/// Why a body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// The body broke the protocol or a server limit (malformed chunk, too large, timeout,
    /// connection closed early). The server answers the request with the matching status
    /// itself, whatever the handler returns.
    Protocol(ParseError),
    /// The body is larger than the limit the handler gave to [`RequestBody::collect`].
    LimitExceeded { limit: usize },
    /// The body can no longer be read: its request has already been answered.
    Gone,
}

impl BodyError {
    /// The status a handler would naturally answer with.
    pub fn status(self) -> u16 {
        match self {
            BodyError::Protocol(e) => e.status(),
            BodyError::LimitExceeded { .. } => 413,
            BodyError::Gone => 500,
        }
    }
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::Protocol(e) => write!(f, "{e}"),
            BodyError::LimitExceeded { limit } => write!(f, "body larger than {limit} bytes"),
            BodyError::Gone => f.write_str("body no longer readable"),
        }
    }
}

impl std::error::Error for BodyError {}

/// The future returned by [`BodySource::next_chunk`].
pub type ChunkFuture<'a> = Pin<Box<dyn Future<Output = Option<Result<Bytes, BodyError>>> + 'a>>;

/// Where a streamed body comes from; the connection driver implements it.
pub trait BodySource {
    /// The next piece of the body, `None` at its end.
    fn next_chunk(&mut self) -> ChunkFuture<'_>;
}

enum Inner {
    Empty,
    Full(Bytes),
    Stream(Box<dyn BodySource>),
}

/// A request body. Reading it is what makes the server answer `Expect: 100-continue`.
pub struct RequestBody {
    inner: Inner,
}

impl RequestBody {
    pub fn empty() -> RequestBody {
        RequestBody { inner: Inner::Empty }
    }

    pub fn full(bytes: Bytes) -> RequestBody {
        if bytes.is_empty() {
            return RequestBody::empty();
        }
        RequestBody { inner: Inner::Full(bytes) }
    }

    pub fn stream(source: Box<dyn BodySource>) -> RequestBody {
        RequestBody { inner: Inner::Stream(source) }
    }

    /// Whether the body is known to be empty without reading.
    pub fn is_empty(&self) -> bool {
        matches!(self.inner, Inner::Empty)
    }

    /// The next chunk of the body, or `None` at its end.
    pub async fn chunk(&mut self) -> Option<Result<Bytes, BodyError>> {
        match &mut self.inner {
            Inner::Empty => None,
            Inner::Full(_) => match std::mem::replace(&mut self.inner, Inner::Empty) {
                Inner::Full(b) => Some(Ok(b)),
                _ => unreachable!(),
            },
            Inner::Stream(s) => s.next_chunk().await,
        }
    }

    /// Read the whole body, refusing more than `limit` bytes.
    pub async fn collect(&mut self, limit: usize) -> Result<Bytes, BodyError> {
        if let Inner::Full(b) = &self.inner {
            if b.len() > limit {
                return Err(BodyError::LimitExceeded { limit });
            }
        }
        let first = match self.chunk().await {
            None => return Ok(Bytes::new()),
            Some(r) => r?,
        };
        if first.len() > limit {
            return Err(BodyError::LimitExceeded { limit });
        }
        let mut acc: Option<BytesMut> = None;
        while let Some(next) = self.chunk().await {
            let next = next?;
            let buf = acc.get_or_insert_with(|| BytesMut::from(&first[..]));
            if buf.len() + next.len() > limit {
                return Err(BodyError::LimitExceeded { limit });
            }
            buf.extend_from_slice(&next);
        }
        Ok(acc.map_or(first, BytesMut::freeze))
    }
}

impl fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Inner::Empty => f.write_str("RequestBody::Empty"),
            Inner::Full(b) => write!(f, "RequestBody::Full({} bytes)", b.len()),
            Inner::Stream(_) => f.write_str("RequestBody::Stream"),
        }
    }
}
