//! Relaying a query's answer as it arrives, cut when the upstream falls silent.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};

use crate::http::response::BoxError;

/// The upstream's answer body, relayed frame by frame. Holds the request slot until the answer
/// is complete (or the client goes away). Fails the stream when the upstream stays silent for
/// `idle` while the proxy waits for it; time the client takes to read does not count.
pub(crate) struct Relay<B> {
    inner: B,
    idle: Duration,
    /// Armed when the inner body first says "pending" after a frame.
    timer: Pin<Box<Sleep>>,
    waiting: bool,
    label: &'static str,
    relayed: u64,
    _slot: OwnedSemaphorePermit,
}

impl<B> Relay<B> {
    pub(crate) fn new(
        inner: B,
        idle: Duration,
        slot: OwnedSemaphorePermit,
        label: &'static str,
    ) -> Self {
        Self {
            inner,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            waiting: false,
            label,
            relayed: 0,
            _slot: slot,
        }
    }
}

/// The upstream sent nothing for too long in the middle of an answer.
#[derive(Debug, thiserror::Error)]
#[error("upstream sent nothing for {0:?} in the middle of a query answer (--upstream-timeout)")]
pub struct IdleStream(Duration);

impl<B> Body for Relay<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.waiting = false;
                if let Some(data) = frame.data_ref() {
                    this.relayed += data.len() as u64;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                let e: BoxError = e.into();
                tracing::warn!(path = this.label, relayed_bytes = this.relayed, error = %e, "query answer broke off");
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                if !this.waiting {
                    this.waiting = true;
                    let deadline = Instant::now() + this.idle;
                    this.timer.as_mut().reset(deadline);
                }
                match this.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        tracing::warn!(
                            path = this.label,
                            relayed_bytes = this.relayed,
                            "query answer stalled; cut"
                        );
                        Poll::Ready(Some(Err(Box::new(IdleStream(this.idle)))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
