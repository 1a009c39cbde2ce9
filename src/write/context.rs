//! What the write path works with: a route's destination, the settings every write shares, and
//! the borrowed view of both that one request is forwarded with.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use http::StatusCode;

use crate::aws::{CredentialCache, Signer};
use crate::config::{LimitPolicy, UpstreamTarget};
use crate::http::Forwarding;
use crate::remote_write;
use crate::telemetry::LogThrottle;
use crate::telemetry::metrics::{EndpointLabels, RouteMetrics};

/// One route's write destination and signing state.
pub struct Destination {
    /// The route's name (metrics label `route`, log field).
    pub name: &'static str,
    /// Fixed destination.
    pub upstream: UpstreamTarget,
    /// SigV4 signer for the destination's region and path.
    pub signer: Signer,
    /// This route's own cached credentials.
    pub credentials: Arc<CredentialCache>,
    /// This route's series of the per-route metrics, looked up once.
    pub metrics: RouteMetrics,
}

/// How writes are retried and what is done with their payloads; the same for every route.
pub struct WriteSettings {
    /// `--retry-deadline`: the most all attempts together may take.
    pub retry_deadline: Duration,
    /// `--throttle-status`.
    pub throttle_status: StatusCode,
    /// `--on-limit-exceeded`.
    pub on_limit_exceeded: LimitPolicy,
    /// Holds back repeats of the "upstream rejected request" warning (per route and reason):
    /// not a setting, but shared by every write like one.
    pub rejection_log: LogThrottle,
    /// Accounting, `--validate`, `--max-decoded-size`, `--external-label`.
    pub payload: Arc<remote_write::Settings>,
}

/// What forwarding one write needs, borrowed from the router's state.
pub struct WriteContext<'a> {
    /// The route being written to.
    pub destination: &'a Destination,
    /// The endpoint's metric labels, also the log fields.
    pub labels: EndpointLabels,
    /// Retries and payload handling.
    pub settings: &'a WriteSettings,
    /// Client, clock, bounds and limits shared with the read path.
    pub forwarding: &'a Forwarding,
    /// Set once shutdown has begun: no further attempts.
    pub draining: &'a AtomicBool,
}
