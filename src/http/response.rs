//! The body of every response the proxy sends.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use http_body_util::combinators::UnsyncBoxBody;

/// Error of a streamed response body (the upstream's stream broke off or stalled).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Body type of every response the proxy produces: a complete buffer (everything the proxy
/// says itself, and remote-write answers, already bounded), or a stream relayed as it arrives
/// (query answers, which can be large). An error in a stream makes the server abort the
/// response, so the client sees a truncated answer, never a silently shortened one.
#[derive(Debug)]
pub struct ResponseBody(Kind);

enum Kind {
    Full(Full<Bytes>),
    Streamed(UnsyncBoxBody<Bytes, BoxError>),
}

impl std::fmt::Debug for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Kind::Full(b) => b.fmt(f),
            Kind::Streamed(_) => f.write_str("Streamed"),
        }
    }
}

impl ResponseBody {
    /// A complete body.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        Self(Kind::Full(Full::new(bytes.into())))
    }

    /// A body relayed as `body` produces it.
    pub fn streamed<B>(body: B) -> Self
    where
        B: Body<Data = Bytes, Error = BoxError> + Send + 'static,
    {
        Self(Kind::Streamed(UnsyncBoxBody::new(body)))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().0 {
            Kind::Full(b) => Pin::new(b).poll_frame(cx).map_err(|never| match never {}),
            Kind::Streamed(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::Full(b) => b.is_end_stream(),
            Kind::Streamed(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Kind::Full(b) => b.size_hint(),
            Kind::Streamed(b) => b.size_hint(),
        }
    }
}
