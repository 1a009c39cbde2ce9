//! Admission control: what the proxy holds at once. A request beyond the limits hears 503 +
//! `Retry-After` at once and its body is never read, so overload cannot exhaust memory.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body::Body;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::body::{BodyError, BufferedBody, Layout};
use super::error::ProxyError;
use crate::telemetry::Metrics;
use crate::telemetry::metrics::LimitLabels;

/// Admission control: what the proxy holds at once.
pub struct Limits {
    /// One permit per request being handled (`--max-in-flight-requests`).
    pub request_slots: Arc<Semaphore>,
    /// One permit per body byte held (`--max-in-flight-bytes`).
    pub byte_budget: Arc<Semaphore>,
    /// `--client-body-timeout`.
    pub client_body_timeout: Duration,
    /// Bodies decoded on the blocking pool at once (one per runtime worker).
    pub large_decodes: Semaphore,
}

impl Limits {
    /// A request slot, held until the returned permit is dropped; none free → 503 at once.
    pub(crate) fn take_slot(&self, metrics: &Metrics) -> Result<OwnedSemaphorePermit, ProxyError> {
        self.request_slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| overloaded(metrics, "requests"))
    }

    /// Reads `body` (at most `limit` bytes, within `--client-body-timeout`) against the memory
    /// budget: a declared length is taken from the budget before a byte is read, a body without
    /// one chunk by chunk as it arrives. Over the budget → 503 without reading (further). The
    /// body is kept as `layout` says. The bytes count against the budget until the returned permit is dropped.
    pub(crate) async fn read_body<B>(
        &self,
        metrics: &Metrics,
        body: B,
        limit: u64,
        declared: Option<u64>,
        layout: Layout,
    ) -> Result<(BufferedBody, Option<OwnedSemaphorePermit>), ProxyError>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        let mut held = match declared {
            Some(len) => Some(
                self.byte_budget
                    .clone()
                    .try_acquire_many_owned(len as u32)
                    .map_err(|_| overloaded(metrics, "bytes"))?,
            ),
            None => None,
        };
        let admit = |n: usize| -> bool {
            if declared.is_some() {
                return true;
            }
            match self.byte_budget.clone().try_acquire_many_owned(n as u32) {
                Ok(more) => {
                    match held.as_mut() {
                        Some(h) => h.merge(more),
                        None => held = Some(more),
                    }
                    true
                }
                Err(_) => false,
            }
        };
        let read = BufferedBody::read(body, limit, layout, admit);
        let body = tokio::time::timeout(self.client_body_timeout, read)
            .await
            .map_err(|_| ProxyError::ClientBodyTimeout(self.client_body_timeout))?
            .map_err(|e| match e {
                BodyError::TooLarge { limit } => ProxyError::PayloadTooLarge { limit },
                BodyError::Read(why) => ProxyError::ClientAborted(why),
                BodyError::OverBudget => overloaded(metrics, "bytes"),
            })?;
        Ok((body, held))
    }

    /// Limits of `requests` concurrent requests holding at most `bytes` of bodies, with
    /// `decoders` large bodies decoded at once.
    pub fn new(
        requests: usize,
        bytes: u64,
        client_body_timeout: Duration,
        decoders: usize,
    ) -> Self {
        let bytes = usize::try_from(bytes)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        Self {
            request_slots: Arc::new(Semaphore::new(requests)),
            byte_budget: Arc::new(Semaphore::new(bytes)),
            client_body_timeout,
            large_decodes: Semaphore::new(decoders.max(1)),
        }
    }
}

/// Refused by admission control (503 + `Retry-After`), counted by limit.
fn overloaded(metrics: &Metrics, limit: &'static str) -> ProxyError {
    metrics
        .overload_rejections
        .get_or_create(&LimitLabels { limit })
        .inc();
    ProxyError::Overloaded { limit }
}
