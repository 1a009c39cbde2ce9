//! Request bodies: read once with a size bound, hashed as they arrive, and forwarded (and, for
//! retries, forwarded again) as the chunks they arrived in, without copies.
//!
//! A body the proxy will decode (payload accounting, `--validate`, external labels) must be
//! contiguous: it is then gathered as it arrives, into a buffer of its declared length, since
//! copying each chunk right after hashing it, while it is still in cache, is cheaper than a
//! second pass over the body later. A body that is only forwarded keeps its chunks: gathering
//! it would be a copy of every byte for nothing (about 4 % of the CPU of a 1 MB request).

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use aws_lc_rs::digest;
use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

use super::connection_limit::Waiting;

/// How a received body is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// In one buffer (gathered as it arrives when it comes in several chunks): for bodies
    /// that will be decoded.
    Contiguous,
    /// In the chunks it arrived in: for bodies that are only forwarded.
    AsReceived,
}

/// A fully received request body.
#[derive(Clone, Debug)]
pub struct BufferedBody {
    chunks: Vec<Bytes>,
    len: u64,
    sha256_hex: String,
}

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// More than the limit arrived.
    #[error("request body exceeds {limit} bytes")]
    TooLarge {
        /// The configured limit.
        limit: u64,
    },
    /// The client's stream broke off or was malformed.
    #[error("failed to read request body: {0}")]
    Read(String),
    /// The memory budget refused a chunk.
    #[error("over the in-flight bytes budget")]
    OverBudget,
}

impl BufferedBody {
    /// Reads `body` to the end, refusing (and stopping reading) as soon as more than `limit`
    /// bytes have arrived, or when `admit` (asked with each chunk's size before it is kept)
    /// says no. The SHA-256 that SigV4 needs is computed on the way in; `layout` says whether
    /// the chunks are gathered into one buffer.
    pub async fn read<B, F>(
        mut body: B,
        limit: u64,
        layout: Layout,
        mut admit: F,
    ) -> Result<Self, BodyError>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
        F: FnMut(usize) -> bool,
    {
        // The declared length (hyper's exact size hint for a Content-Length body), bounded by
        // the limit: the gathering buffer's size when the body comes in several chunks.
        let expected = body.size_hint().exact().unwrap_or(0).min(limit);
        let mut gathered = Gathered::Nothing;
        let mut kept = Vec::new();
        let mut len: u64 = 0;
        let mut hash = digest::Context::new(&digest::SHA256);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
            // Trailers are not part of remote-write; ignore them.
            if let Ok(data) = frame.into_data() {
                len += data.len() as u64;
                if len > limit {
                    return Err(BodyError::TooLarge { limit });
                }
                if !admit(data.len()) {
                    return Err(BodyError::OverBudget);
                }
                if !data.is_empty() {
                    hash.update(&data);
                    match layout {
                        Layout::Contiguous => gathered = gathered.add(data, expected),
                        Layout::AsReceived => kept.push(data),
                    }
                }
            }
        }
        let chunks = match gathered {
            Gathered::Nothing => kept,
            Gathered::One(chunk) => vec![chunk],
            Gathered::Many(buf) => vec![buf.freeze()],
        };
        Ok(Self {
            chunks,
            len,
            sha256_hex: crate::aws::signing::sha256_hex(&hash.finish()),
        })
    }

    /// A body built by the proxy itself (a rewritten request), hashed for signing.
    pub fn from_bytes(bytes: Bytes) -> Self {
        let sha256_hex = crate::aws::signing::sha256_hex(&digest::digest(&digest::SHA256, &bytes));
        let len = bytes.len() as u64;
        let chunks = if bytes.is_empty() {
            Vec::new()
        } else {
            vec![bytes]
        };
        Self {
            chunks,
            len,
            sha256_hex,
        }
    }

    /// Body length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// `true` for an empty body.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Lower-case hex SHA-256 of the body, as SigV4 wants it.
    pub fn sha256_hex(&self) -> &str {
        &self.sha256_hex
    }

    /// The body as received, for sending. Cheap: clones reference-counted chunks, so the same
    /// body can be sent again (for a retry) without copying.
    pub fn to_outbound(&self) -> OutboundBody {
        OutboundBody {
            chunks: self.chunks.iter().cloned().collect(),
            remaining: self.len,
            waiting: None,
        }
    }

    /// The whole body as one contiguous buffer: the body itself when it is kept in one
    /// buffer, otherwise a copy (a body read [`Layout::AsReceived`] in several chunks).
    pub fn to_bytes(&self) -> Bytes {
        match self.chunks.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => {
                let mut whole = BytesMut::with_capacity(usize::try_from(self.len).unwrap_or(0));
                for chunk in many {
                    whole.extend_from_slice(chunk);
                }
                whole.freeze()
            }
        }
    }
}

/// A body being received: nothing yet, its first chunk as it came, or (from the second chunk
/// on) everything so far in one buffer.
enum Gathered {
    Nothing,
    One(Bytes),
    Many(BytesMut),
}

impl Gathered {
    fn add(self, chunk: Bytes, expected: u64) -> Self {
        match self {
            Gathered::Nothing => Gathered::One(chunk),
            Gathered::One(first) => {
                let so_far = first.len() + chunk.len();
                let capacity = usize::try_from(expected).unwrap_or(0).max(so_far);
                let mut buf = BytesMut::with_capacity(capacity);
                buf.extend_from_slice(&first);
                buf.extend_from_slice(&chunk);
                Gathered::Many(buf)
            }
            Gathered::Many(mut buf) => {
                buf.extend_from_slice(&chunk);
                Gathered::Many(buf)
            }
        }
    }
}

/// An outbound request body: the received chunks, with an exact size so hyper sends
/// `Content-Length` rather than chunked encoding.
#[derive(Debug, Default)]
pub struct OutboundBody {
    chunks: VecDeque<Bytes>,
    remaining: u64,
    /// The request's count among those waiting for an upstream connection, until hyper first
    /// polls the body: it does so once the request has a connection.
    waiting: Option<Waiting>,
}

impl OutboundBody {
    /// Counts the request as waiting for a connection (see [`super::connection_limit`]) until
    /// the body is first polled or dropped.
    pub fn waiting_for_connection(&mut self, waiting: Waiting) {
        self.waiting = Some(waiting);
    }
}

impl Body for OutboundBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.waiting = None;
        match self.chunks.pop_front() {
            Some(chunk) => {
                self.remaining -= chunk.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    /// sha256("hello world")
    const HELLO_WORLD_SHA256: &str =
        "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";

    /// "hello world" in three chunks, and a body that yields them (an OutboundBody is itself a
    /// multi-chunk body: it stands for the "received" stream).
    fn hello_world_in_chunks() -> ([Bytes; 3], OutboundBody) {
        let parts = [
            Bytes::from_static(b"hello "),
            Bytes::from_static(b"wor"),
            Bytes::from_static(b"ld"),
        ];
        let received = OutboundBody {
            chunks: parts.to_vec().into(),
            remaining: 11,
            waiting: None,
        };
        (parts, received)
    }

    #[tokio::test]
    async fn hashes_and_gathers_chunks_into_one_buffer() {
        let (_, received) = hello_world_in_chunks();
        let body = BufferedBody::read(received, 100, Layout::Contiguous, |_| true)
            .await
            .unwrap();
        assert_eq!(body.len(), 11);
        assert_eq!(body.sha256_hex(), HELLO_WORLD_SHA256);
        let whole = body.to_bytes();
        assert_eq!(whole, Bytes::from_static(b"hello world"));
        // Gathered once, into a buffer of the declared size: no further copies.
        assert_eq!(body.to_bytes().as_ptr(), whole.as_ptr());
        let mut out = body.to_outbound();
        assert_eq!(out.size_hint().exact(), Some(11));
        let only = out.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(
            only.as_ptr(),
            whole.as_ptr(),
            "the gathered buffer is forwarded"
        );
        assert!(out.frame().await.is_none());
    }

    #[tokio::test]
    async fn a_body_in_one_chunk_is_forwarded_without_copying() {
        let chunk = Bytes::from(vec![7u8; 1000]);
        let ptr = chunk.as_ptr();
        let body = BufferedBody::read(Full::new(chunk), 1000, Layout::Contiguous, |_| true)
            .await
            .unwrap();
        assert_eq!(body.to_bytes().as_ptr(), ptr);
        let mut out = body.to_outbound();
        let only = out.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(only.as_ptr(), ptr, "the received chunk itself is forwarded");
    }

    #[tokio::test]
    async fn a_body_only_forwarded_keeps_its_chunks() {
        let (parts, received) = hello_world_in_chunks();
        let body = BufferedBody::read(received, 100, Layout::AsReceived, |_| true)
            .await
            .unwrap();
        assert_eq!(body.sha256_hex(), HELLO_WORLD_SHA256);
        let mut out = body.to_outbound();
        assert_eq!(out.size_hint().exact(), Some(11));
        for part in &parts {
            let sent = out.frame().await.unwrap().unwrap().into_data().unwrap();
            assert_eq!(
                sent.as_ptr(),
                part.as_ptr(),
                "each received chunk is forwarded"
            );
        }
        assert!(out.frame().await.is_none());
        // Decoding it on the failure path still sees the whole body.
        assert_eq!(body.to_bytes(), Bytes::from_static(b"hello world"));
    }

    /// Chunks without a declared length (chunked transfer encoding).
    struct Undeclared(VecDeque<Bytes>);

    impl Body for Undeclared {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(|c| Ok(Frame::data(c))))
        }
    }

    #[tokio::test]
    async fn a_body_without_declared_length_is_gathered_too() {
        let parts = [&b"ab"[..], b"cd", b"", b"e"].map(Bytes::from_static);
        let received = Undeclared(parts.to_vec().into());
        assert_eq!(received.size_hint().exact(), None);
        let body = BufferedBody::read(received, 100, Layout::Contiguous, |_| true)
            .await
            .unwrap();
        assert_eq!(body.to_bytes(), Bytes::from_static(b"abcde"));
        assert_eq!(body.to_outbound().size_hint().exact(), Some(5));
    }

    #[tokio::test]
    async fn stops_at_the_limit() {
        let err = BufferedBody::read(
            Full::new(Bytes::from(vec![0u8; 101])),
            100,
            Layout::AsReceived,
            |_| true,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, BodyError::TooLarge { limit: 100 }));
        let ok = BufferedBody::read(
            Full::new(Bytes::from(vec![0u8; 100])),
            100,
            Layout::AsReceived,
            |_| true,
        )
        .await
        .unwrap();
        assert_eq!(ok.len(), 100);
    }

    #[tokio::test]
    async fn empty_body_hash() {
        let b = BufferedBody::read(Full::new(Bytes::new()), 10, Layout::AsReceived, |_| true)
            .await
            .unwrap();
        assert!(b.is_empty());
        assert_eq!(
            b.sha256_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(b.to_outbound().is_end_stream());
    }
}
