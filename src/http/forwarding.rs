//! What the write and the read path both forward with, the same for every route.

use std::sync::Arc;
use std::time::Duration;

use super::admission::Limits;
use super::upstream::UpstreamClient;
use crate::aws::Clock;
use crate::telemetry::Metrics;

/// The pooled client, the clock requests are signed by, the time and size bounds and the
/// admission limits; shared by all connections.
pub struct Forwarding {
    /// Pooled upstream client, shared by all routes and both paths.
    pub client: UpstreamClient,
    /// Time for signing.
    pub clock: Arc<dyn Clock>,
    /// `--upstream-timeout`: the most one upstream attempt may take (for a query, the wait for
    /// the response headers and the longest silence of its body).
    pub upstream_timeout: Duration,
    /// `--max-body-size` (query forms are further bounded).
    pub max_body_size: u64,
    /// Admission limits.
    pub limits: Limits,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}
