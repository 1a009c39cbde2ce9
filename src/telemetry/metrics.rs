//! The proxy's own metrics, served on `GET /metrics` (OpenMetrics text via prometheus-client,
//! which Prometheus scrapes natively).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The endpoint a request was routed to, as the request metrics label it: the router puts it
/// in the response's extensions for [`RequestMetrics`]. Both are `&'static str` from a fixed
/// set (configuration and the proxy's own paths), never the raw inbound path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointLabels {
    /// The route's name; empty for the proxy's own endpoints.
    pub route: &'static str,
    /// The path label.
    pub path: &'static str,
}

impl EndpointLabels {
    /// A request that matched nothing.
    pub const UNMATCHED: EndpointLabels = EndpointLabels {
        route: "",
        path: "unmatched",
    };
}

/// Labels of `amp_rw_proxy_requests_total`. `path` is one of the routes the proxy knows
/// (never the raw inbound path, so a scanner cannot blow up the series count).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Name of the route (see [`RouteLabels`]); empty for the proxy's own endpoints.
    pub route: &'static str,
    /// Path label.
    pub path: &'static str,
    /// HTTP status code sent to the client.
    pub code: u16,
}

/// Labels of `amp_rw_proxy_credential_refreshes_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefreshLabels {
    /// Route whose credentials these are.
    pub route: &'static str,
    /// `success` or `failure`.
    pub result: &'static str,
}

/// Labels of the retry and the rejection metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RetryLabels {
    /// Route.
    pub route: &'static str,
    /// Why: a retry reason of the write path's retry policy (`throttled`, `timeout`, ...), or
    /// why the upstream refused a write for good (`series_limit`, `label_length`, ...).
    pub reason: &'static str,
}

/// The `route` label: `default` for the route the flags describe, else the name given in the
/// routes file (a fixed set, from configuration).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Route name.
    pub route: &'static str,
}

/// One route's series of the metrics every forwarded request touches, looked up once at
/// startup so the request path does not search the families.
#[derive(Clone, Debug)]
pub struct RouteMetrics {
    /// Its series of [`Metrics::request_bytes`].
    pub request_bytes: Counter,
    /// Its series of [`Metrics::forwarded_bytes`].
    pub forwarded_bytes: Counter,
    /// Its series of [`Metrics::upstream_latency`].
    pub upstream_latency: Histogram,
}

/// A histogram family keyed by route.
pub type RouteHistogram = Family<RouteLabels, Histogram, fn() -> Histogram>;

fn upstream_latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Labels of `amp_rw_proxy_request_duration_seconds`: the endpoint, as in the request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DurationLabels {
    /// Route name.
    pub route: &'static str,
    /// Path label.
    pub path: &'static str,
}

/// Labels of `amp_rw_proxy_upstream_attempts_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    /// Route.
    pub route: &'static str,
    /// The upstream's status class (`2xx`, `4xx`, `5xx`, ...) or, without an answer,
    /// `connect_error`, `timeout` or `broken` (see the write path's `attempt_result`).
    pub result: &'static str,
}

/// Labels of `amp_rw_proxy_overload_rejections_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    /// `requests` or `bytes`.
    pub limit: &'static str,
}

/// Labels of the remote-write accounting counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PayloadLabels {
    /// Route.
    pub route: &'static str,
    /// Protocol version: `1.0` or `2.0`.
    pub version: &'static str,
    /// `forwarded` (the upstream answered 2xx) or `rejected` (refused by `--validate` or an
    /// impossible rewrite, never sent).
    pub outcome: &'static str,
}

/// Labels of `amp_rw_proxy_remote_write_uncounted_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    /// Route.
    pub route: &'static str,
    /// Protocol version: `1.0` or `2.0`.
    pub version: &'static str,
}

/// What remote-write requests carried, by version and outcome.
#[derive(Debug, Default)]
pub struct PayloadMetrics {
    /// Requests.
    pub requests: Family<PayloadLabels, Counter>,
    /// Series (`TimeSeries` messages).
    pub series: Family<PayloadLabels, Counter>,
    /// Float samples.
    pub samples: Family<PayloadLabels, Counter>,
    /// Native histogram samples.
    pub histograms: Family<PayloadLabels, Counter>,
    /// Exemplars.
    pub exemplars: Family<PayloadLabels, Counter>,
    /// Metadata entries.
    pub metadata: Family<PayloadLabels, Counter>,
    /// Requests forwarded without counts (validation off and the body could not be decoded).
    pub uncounted: Family<VersionLabels, Counter>,
}

impl PayloadMetrics {
    /// Adds one request's counts.
    pub fn record(
        &self,
        route: &'static str,
        version: &'static str,
        outcome: &'static str,
        counts: &crate::remote_write::Counts,
    ) {
        let l = PayloadLabels {
            route,
            version,
            outcome,
        };
        self.requests.get_or_create(&l).inc();
        self.series.get_or_create(&l).inc_by(counts.series);
        self.samples.get_or_create(&l).inc_by(counts.samples);
        self.histograms.get_or_create(&l).inc_by(counts.histograms);
        self.exemplars.get_or_create(&l).inc_by(counts.exemplars);
        self.metadata.get_or_create(&l).inc_by(counts.metadata);
    }

    fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("remote_write");
        for (name, help, family) in [
            (
                "requests",
                "Remote-write requests, by protocol version and outcome (forwarded = upstream answered 2xx; rejected = refused by the proxy, not sent)",
                &self.requests,
            ),
            (
                "series",
                "Series in remote-write requests, by protocol version and outcome",
                &self.series,
            ),
            (
                "samples",
                "Float samples in remote-write requests, by protocol version and outcome",
                &self.samples,
            ),
            (
                "histograms",
                "Native histogram samples in remote-write requests, by protocol version and outcome",
                &self.histograms,
            ),
            (
                "exemplars",
                "Exemplars in remote-write requests, by protocol version and outcome",
                &self.exemplars,
            ),
            (
                "metadata",
                "Metadata entries in remote-write requests, by protocol version and outcome",
                &self.metadata,
            ),
        ] {
            r.register(name, help, family.clone());
        }
        r.register(
            "uncounted_requests",
            "Requests forwarded without accounting: validation off and the body could not be decoded (or exceeded --max-decoded-size)",
            self.uncounted.clone(),
        );
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// All metrics, registered once at startup.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests answered, by route and status code.
    pub requests: Family<RequestLabels, Counter>,
    /// Request body bytes received on write routes, by route.
    pub request_bytes: Family<RouteLabels, Counter>,
    /// Body bytes sent upstream, by route.
    pub forwarded_bytes: Family<RouteLabels, Counter>,
    /// Time from sending upstream to having its whole (bounded) answer, by route.
    pub upstream_latency: RouteHistogram,
    /// Requests being handled right now.
    pub in_flight: Gauge,
    /// Credential fetches, by route and result.
    pub credential_refreshes: Family<RefreshLabels, Counter>,
    /// Unix time at which a route's current credentials expire (0 = none or no expiry).
    pub credentials_expiry: Family<RouteLabels, Gauge<f64, AtomicU64>>,
    /// Upstream attempts retried, by reason.
    pub upstream_retries: Family<RetryLabels, Counter>,
    /// Requests answered after the retry deadline with a retryable outcome, by reason.
    pub upstream_gave_up: Family<RetryLabels, Counter>,
    /// Writes the upstream refused for good (final 4xx), by reason.
    pub upstream_rejections: Family<RetryLabels, Counter>,
    /// Float and histogram samples in those writes (when the payload was counted), by reason.
    pub upstream_rejected_samples: Family<RetryLabels, Counter>,
    /// Requests refused by admission control, by limit.
    pub overload_rejections: Family<LimitLabels, Counter>,
    /// Remote-write accounting.
    pub payload: PayloadMetrics,
    /// Every upstream write attempt (retries included), by route and result.
    pub upstream_attempts: Family<AttemptLabels, Counter>,
    /// Whole-request time (body read, retries and backoff included) on routes' endpoints.
    pub request_duration: Family<DurationLabels, Histogram, fn() -> Histogram>,
    /// 1 while `/-/ready` would answer 200; set on each scrape of `/metrics`.
    pub ready: Gauge,
    /// `--shutdown-grace` minus `--drain-delay`: how long in-flight requests get once a
    /// shutdown closes the listener.
    pub drain_budget: Gauge<f64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric under the `amp_rw_proxy` prefix.
    pub fn new() -> Self {
        let mut root = Registry::default();
        let registry = root.sub_registry_with_prefix("amp_rw_proxy");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by route and status code",
            requests.clone(),
        );
        let request_bytes = Family::<RouteLabels, Counter>::default();
        registry.register(
            "request_bytes",
            "Request body bytes received on write routes",
            request_bytes.clone(),
        );
        let forwarded_bytes = Family::<RouteLabels, Counter>::default();
        registry.register(
            "forwarded_bytes",
            "Request body bytes sent upstream",
            forwarded_bytes.clone(),
        );
        let upstream_latency: RouteHistogram =
            Family::new_with_constructor(upstream_latency_histogram);
        registry.register(
            "upstream_request_duration_seconds",
            "Upstream exchange duration in seconds (send to full answer)",
            upstream_latency.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "in_flight_requests",
            "Requests being handled",
            in_flight.clone(),
        );
        let credential_refreshes = Family::<RefreshLabels, Counter>::default();
        registry.register(
            "credential_refreshes",
            "Credential fetches (AssumeRole or base chain), by result",
            credential_refreshes.clone(),
        );
        let credentials_expiry = Family::<RouteLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "credentials_expiry_timestamp_seconds",
            "Unix time at which the current signing credentials expire (0 if none or no expiry)",
            credentials_expiry.clone(),
        );
        let upstream_retries = Family::<RetryLabels, Counter>::default();
        registry.register(
            "upstream_retries",
            "Upstream attempts retried, by reason",
            upstream_retries.clone(),
        );
        let upstream_gave_up = Family::<RetryLabels, Counter>::default();
        registry.register(
            "upstream_retry_deadline_exceeded",
            "Requests answered after --retry-deadline with a retryable outcome, by reason",
            upstream_gave_up.clone(),
        );
        let upstream_rejections = Family::<RetryLabels, Counter>::default();
        registry.register(
            "upstream_rejected_requests",
            "Writes the upstream refused for good (final 4xx, not retried), by reason",
            upstream_rejections.clone(),
        );
        let upstream_rejected_samples = Family::<RetryLabels, Counter>::default();
        registry.register(
            "upstream_rejected_samples",
            "Float and histogram samples in writes the upstream refused for good, by reason",
            upstream_rejected_samples.clone(),
        );
        let overload_rejections = Family::<LimitLabels, Counter>::default();
        registry.register(
            "overload_rejections",
            "Requests refused with 503 by --max-in-flight-requests/--max-in-flight-bytes",
            overload_rejections.clone(),
        );
        let payload = PayloadMetrics::default();
        payload.register(registry);
        let upstream_attempts = Family::<AttemptLabels, Counter>::default();
        registry.register(
            "upstream_attempts",
            "Upstream write attempts (each retry counts), by status class or connect_error/timeout/broken",
            upstream_attempts.clone(),
        );
        let request_duration: Family<DurationLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(upstream_latency_histogram);
        registry.register(
            "request_duration_seconds",
            "Time from a request's arrival to its answer's headers, retries and backoff included, on the routes' write and query paths",
            request_duration.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "ready",
            "1 if /-/ready answers 200 (every route has valid credentials and no shutdown has begun), else 0",
            ready.clone(),
        );
        let drain_budget = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "drain_budget_seconds",
            "Time in-flight requests get after a shutdown closes the listener (--shutdown-grace minus --drain-delay)",
            drain_budget.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "Build information", build_info);
        // Unprefixed, as every Prometheus client names them.
        root.register_collector(Box::new(super::process::ProcessCollector::new()));
        Self {
            registry: root,
            requests,
            request_bytes,
            forwarded_bytes,
            upstream_latency,
            in_flight,
            credential_refreshes,
            credentials_expiry,
            upstream_retries,
            upstream_gave_up,
            upstream_rejections,
            upstream_rejected_samples,
            overload_rejections,
            payload,
            upstream_attempts,
            request_duration,
            ready,
            drain_budget,
        }
    }

    /// Encodes all metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// `route`'s series of the per-request metrics.
    pub fn for_route(&self, route: &'static str) -> RouteMetrics {
        let labels = RouteLabels { route };
        RouteMetrics {
            request_bytes: self.request_bytes.get_or_create(&labels).clone(),
            forwarded_bytes: self.forwarded_bytes.get_or_create(&labels).clone(),
            upstream_latency: self.upstream_latency.get_or_create(&labels).clone(),
        }
    }

    /// Records one credential fetch for `route`.
    pub fn record_refresh(&self, route: &'static str, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.credential_refreshes
            .get_or_create(&RefreshLabels { route, result })
            .inc();
    }
}

/// Tower layer counting requests by route and status, and tracking requests in flight.
#[derive(Clone, Debug)]
pub struct RequestMetricsLayer {
    metrics: std::sync::Arc<Metrics>,
}

impl RequestMetricsLayer {
    /// A layer recording into `metrics`.
    pub fn new(metrics: std::sync::Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> tower::Layer<S> for RequestMetricsLayer {
    type Service = RequestMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequestMetrics {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// See [`RequestMetricsLayer`]. The labels are read from the response's extensions, where the
/// router puts the [`EndpointLabels`] of the endpoint it matched.
#[derive(Clone, Debug)]
pub struct RequestMetrics<S> {
    inner: S,
    metrics: std::sync::Arc<Metrics>,
}

/// Decrements the in-flight gauge however the request ends (including a client hanging up).
struct InFlight(std::sync::Arc<Metrics>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

impl<S, Req, ResBody> tower::Service<Req> for RequestMetrics<S>
where
    S: tower::Service<Req, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        self.metrics.in_flight.inc();
        let guard = InFlight(self.metrics.clone());
        let started = std::time::Instant::now();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let result = fut.await;
            if let Ok(resp) = &result {
                let EndpointLabels { route, path } = resp
                    .extensions()
                    .get::<EndpointLabels>()
                    .copied()
                    .unwrap_or(EndpointLabels::UNMATCHED);
                guard
                    .0
                    .requests
                    .get_or_create(&RequestLabels {
                        route,
                        path,
                        code: resp.status().as_u16(),
                    })
                    .inc();
                // Only the routes' endpoints: scrapes and probes would only dilute it.
                if !route.is_empty() {
                    guard
                        .0
                        .request_duration
                        .get_or_create(&DurationLabels { route, path })
                        .observe(started.elapsed().as_secs_f64());
                }
            }
            drop(guard);
            result
        })
    }
}
