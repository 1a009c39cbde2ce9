//! The request handler: routes, checks, builds the outbound request, signs and forwards.
//!
//! Remote-write 1.0/2.0 spec: <https://prometheus.io/docs/specs/prw/remote_write_spec/> and
//! <https://prometheus.io/docs/specs/prw/remote_write_spec_2_0/>.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::Body;

use crate::auth::Authenticator;
use crate::body::{BodyError, BufferedBody, OutboundBody};
use crate::config::UpstreamTarget;
use crate::credentials::{Clock, CredentialCache};
use crate::error::{ProxyError, ResponseBody};
use crate::metrics::Metrics;
use crate::metrics::{LimitLabels, RetryLabels, RouteMetrics};
use crate::remote_write::{self, Counts, Outcome, Protocol};
use crate::retry::{self, RetryReason, Verdict};
use crate::signing::Signer;
use crate::upstream::{UpstreamAnswer, UpstreamClient};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Paths remote-write is accepted on, besides the upstream URL's own path.
pub const WRITE_PATHS: [&str; 2] = ["/api/v1/write", "/api/v1/remote_write"];
/// Shortest time worth starting an upstream attempt with (capped at a quarter of the deadline).
const MIN_ATTEMPT_TIME: Duration = Duration::from_secs(1);
/// Appended to the sender's `User-Agent`.
pub const USER_AGENT_SUFFIX: &str = concat!("amp-rw-proxy/", env!("CARGO_PKG_VERSION"));

const REMOTE_WRITE_VERSION: header::HeaderName =
    header::HeaderName::from_static("x-prometheus-remote-write-version");
const PROTOBUF: &str = "application/x-protobuf";
const SNAPPY: &str = "snappy";

/// Which route a request hit; also the `route` and `path` labels of the request metrics (a
/// fixed set from configuration, so a scanner cannot create series).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A remote-write path of one of [`Shared::routes`].
    Write {
        /// Index into [`Shared::routes`].
        index: usize,
        /// The route's name.
        name: &'static str,
        /// The path label: the path, or `upstream_path`.
        path: &'static str,
    },
    /// `/metrics`
    Metrics,
    /// `/-/healthy`
    Healthy,
    /// `/-/ready`
    Ready,
    /// A query API path (`--enable-query`) under one of [`Shared::routes`]' query prefix.
    Query {
        /// Index into [`Shared::routes`].
        index: usize,
        /// The route's name.
        name: &'static str,
        /// The API path (without the route's prefix), or [`crate::query::LABEL_VALUES`] for
        /// every label name.
        path: &'static str,
    },
    /// Anything else.
    Unmatched,
}

impl Route {
    /// Label value for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Route::Write { path, .. } | Route::Query { path, .. } => path,
            Route::Metrics => "/metrics",
            Route::Healthy => "/-/healthy",
            Route::Ready => "/-/ready",
            Route::Unmatched => "unmatched",
        }
    }

    /// The `route` label: the route's name for writes, empty for the proxy's own endpoints.
    pub fn route_name(self) -> &'static str {
        match self {
            Route::Write { name, .. } | Route::Query { name, .. } => name,
            _ => "",
        }
    }
}

/// One route's destination and signing state.
pub struct RouteTarget {
    /// Name (metrics label `route`, log field).
    pub name: &'static str,
    /// Fixed destination.
    pub upstream: UpstreamTarget,
    /// SigV4 signer for the destination's region and path.
    pub signer: Signer,
    /// This route's own cached credentials.
    pub credentials: Arc<CredentialCache>,
    /// Inbound authentication: the route's own, else the global one.
    pub auth: Option<Arc<Authenticator>>,
    /// `--enable-query`: the workspace's query endpoint.
    pub query: Option<crate::query::QueryTarget>,
    /// This route's series of the per-route metrics, looked up once.
    pub metrics: RouteMetrics,
}

/// Everything the handler needs, shared by all connections.
pub struct Shared {
    /// Destinations, one per route; never empty.
    pub routes: Vec<RouteTarget>,
    /// Exact inbound path → index into `routes` and the path's metric label.
    pub paths: HashMap<String, (usize, &'static str)>,
    /// Pooled upstream client, shared by all routes.
    pub client: UpstreamClient,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// `--max-body-size`.
    pub max_body_size: u64,
    /// Time for signing.
    pub clock: Arc<dyn Clock>,
    /// `--upstream-timeout`: the most one attempt may take.
    pub upstream_timeout: Duration,
    /// `--retry-deadline`: the most all attempts together may take.
    pub retry_deadline: Duration,
    /// `--throttle-status`.
    pub throttle_status: StatusCode,
    /// Admission limits.
    pub limits: Limits,
    /// Set once shutdown has begun: unready, and HTTP/1 connections are closed after each
    /// response so senders reconnect to another instance.
    pub draining: Arc<AtomicBool>,
    /// Global inbound authentication: for routes without their own and for unknown paths
    /// (health checks and /metrics stay open).
    pub auth: Option<Arc<Authenticator>>,
    /// Accounting, `--validate`, `--max-decoded-size`, `--external-label`.
    pub remote_write: Arc<remote_write::Settings>,
    /// `--enable-query`: route query prefix (`""` for the flags' route) → index into `routes`.
    /// Empty when the read path is off (query paths are 404).
    pub query_prefixes: HashMap<String, usize>,
}

/// Bodies larger than this are decoded on the blocking pool rather than on a runtime worker,
/// so a 32 MiB batch does not stall other connections.
const INLINE_DECODE_LIMIT: u64 = 512 << 10;

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
    /// bytes count against the budget until the returned permit is dropped.
    pub(crate) async fn read_body<B>(
        &self,
        metrics: &Metrics,
        body: B,
        limit: u64,
        declared: Option<u64>,
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
        let read = BufferedBody::read(body, limit, admit);
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

/// The proxy as a tower `Service`. Never fails: every outcome is a response.
#[derive(Clone)]
pub struct Proxy {
    shared: Arc<Shared>,
}

impl Proxy {
    /// Wraps the shared state.
    pub fn new(shared: Shared) -> Self {
        Self {
            shared: Arc::new(shared),
        }
    }

    /// `<route prefix>/api/v1/<query API path>`. The API part is the last `/api/v1/` on: no
    /// allowlisted query path contains another (label names have no `/`).
    fn query_route(&self, path: &str) -> Route {
        let Some(at) = path.rfind(crate::query::API_PREFIX) else {
            return Route::Unmatched;
        };
        let (prefix, api) = path.split_at(at);
        match (
            self.shared.query_prefixes.get(prefix),
            crate::query::route(api),
        ) {
            (Some(&index), Some(label)) => Route::Query {
                index,
                name: self.shared.routes[index].name,
                path: label,
            },
            _ => Route::Unmatched,
        }
    }

    fn route(&self, path: &str) -> Route {
        if let Some(&(index, label)) = self.shared.paths.get(path) {
            return Route::Write {
                index,
                name: self.shared.routes[index].name,
                path: label,
            };
        }
        match path {
            "/metrics" => Route::Metrics,
            "/-/healthy" => Route::Healthy,
            "/-/ready" => Route::Ready,
            p if !self.shared.query_prefixes.is_empty() => self.query_route(p),
            _ => Route::Unmatched,
        }
    }
}

impl<B> tower::Service<Request<B>> for Proxy
where
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: std::fmt::Display,
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let route = self.route(req.uri().path());
        let shared = self.shared.clone();
        let http1 = req.version() < http::Version::HTTP_2;
        Box::pin(async move {
            let mut resp = match handle(&shared, route, req).await {
                Ok(resp) => resp,
                Err(failure) => {
                    log_failure(route, &failure);
                    failure.error.into_response()
                }
            };
            resp.extensions_mut().insert(route);
            if http1 && shared.draining.load(Ordering::Relaxed) {
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok(resp)
        })
    }
}

async fn handle<B>(
    shared: &Shared,
    route: Route,
    req: Request<B>,
) -> Result<Response<ResponseBody>, Failure>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let auth = match route {
        Route::Write { index, .. } | Route::Query { index, .. } => {
            shared.routes[index].auth.as_ref()
        }
        Route::Unmatched => shared.auth.as_ref(),
        Route::Metrics | Route::Healthy | Route::Ready => None,
    };
    if let Some(auth) = auth {
        if !auth.is_authorized(req.headers()) {
            return Err(ProxyError::Unauthorized {
                challenge: auth.challenge(),
            }
            .into());
        }
    }
    let method = req.method().clone();
    let read_only = method == Method::GET || method == Method::HEAD;
    match route {
        Route::Write { index, .. } if method == Method::POST => {
            forward(shared, &shared.routes[index], route, req).await
        }
        Route::Query { index, path, .. } => {
            let target = &shared.routes[index];
            let Some(query) = &target.query else {
                return Err(ProxyError::NotFound("no query endpoint for this route".into()).into());
            };
            let ctx = crate::query::QueryContext {
                target: query,
                client: &shared.client,
                signer: &target.signer,
                credentials: &target.credentials,
                clock: shared.clock.as_ref(),
                upstream_timeout: shared.upstream_timeout,
                max_body_size: shared.max_body_size,
                limits: &shared.limits,
                metrics: &shared.metrics,
            };
            Ok(crate::query::forward(&ctx, path, req).await?)
        }
        Route::Write { .. } => Err(ProxyError::MethodNotAllowed {
            method,
            allow: "POST",
        }
        .into()),
        Route::Metrics | Route::Healthy | Route::Ready if !read_only => {
            Err(ProxyError::MethodNotAllowed {
                method,
                allow: "GET, HEAD",
            }
            .into())
        }
        Route::Metrics => Ok(text(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            shared.metrics.encode(),
        )),
        Route::Healthy => Ok(text(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            "OK\n".into(),
        )),
        Route::Ready if shared.draining.load(Ordering::Relaxed) => Ok(text(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            "not ready: shutting down\n".into(),
        )),
        Route::Ready => Ok(readiness(shared)),
        // The workspace path is accepted too, but not advertised: it names the workspace.
        // Several routes: their paths are not listed (they name the teams behind the proxy).
        Route::Unmatched if shared.routes.len() > 1 => {
            Err(ProxyError::NotFound("the paths of the proxy's routes file".into()).into())
        }
        Route::Unmatched => {
            Err(ProxyError::NotFound(format!("{} and {}", WRITE_PATHS[0], WRITE_PATHS[1])).into())
        }
    }
}

/// Ready once every route has valid credentials: a route without them can only answer 503, so
/// the instance stays out of rotation until all of its senders can be served.
fn readiness(shared: &Shared) -> Response<ResponseBody> {
    let missing: Vec<(&str, String)> = shared
        .routes
        .iter()
        .filter_map(|r| r.credentials.get().err().map(|e| (r.name, e.to_string())))
        .collect();
    if missing.is_empty() {
        return text(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            "ready\n".into(),
        );
    }
    // With inbound authentication on, this open endpoint does not repeat STS's reason (it
    // names roles and accounts); the log and authenticated writes carry it.
    let hide = shared.auth.is_some() || shared.routes.iter().any(|r| r.auth.is_some());
    let single = shared.routes.len() == 1;
    let body = match (hide, single) {
        (true, true) => "not ready: no valid AWS credentials (see the proxy's log)\n".to_string(),
        (true, false) => format!(
            "not ready: no valid AWS credentials for route(s) {} (see the proxy's log)\n",
            missing
                .iter()
                .map(|(name, _)| *name)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        (false, true) => format!("not ready: {}\n", missing[0].1),
        (false, false) => missing
            .iter()
            .map(|(name, why)| format!("not ready: route {name}: {why}\n"))
            .collect(),
    };
    text(
        StatusCode::SERVICE_UNAVAILABLE,
        "text/plain; charset=utf-8",
        body,
    )
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

async fn forward<B>(
    shared: &Shared,
    target: &RouteTarget,
    route: Route,
    req: Request<B>,
) -> Result<Response<ResponseBody>, Failure>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    // The retry deadline counts from the request's arrival: the sender's own timeout (30 s
    // remote_timeout in Prometheus) includes the time it spent sending the body.
    let deadline = Instant::now() + shared.retry_deadline;
    let (parts, body) = req.into_parts();
    let protocol = check_request_headers(&parts.headers)?;
    let declared = declared_length(&parts.headers)?;
    if declared > Some(shared.max_body_size) {
        // Refuse before reading a byte of it.
        return Err(ProxyError::PayloadTooLarge {
            limit: shared.max_body_size,
        }
        .into());
    }
    // Fail fast, without reading the body, when there is nothing to sign with.
    target.credentials.get().map_err(ProxyError::from)?;
    // Admission: a request slot, and the body's bytes against the memory budget. Over either
    // limit the sender hears 503 at once and the body is never read.
    let _slot = shared.limits.take_slot(&shared.metrics)?;
    let (body, _bytes_held) = shared
        .limits
        .read_body(&shared.metrics, body, shared.max_body_size, declared)
        .await?;
    target.metrics.request_bytes.inc_by(body.len());
    let (body, counts) = understand(shared, target.name, protocol, body).await?;
    let started = Instant::now();
    let resp = send_with_retries(shared, target, route, &parts.headers, &body, deadline)
        .await
        .map_err(|error| Failure {
            error,
            upstream_latency: Some(started.elapsed()),
        })?;
    let payload = &shared.metrics.payload;
    match counts {
        Some(c) if resp.status().is_success() => {
            payload.record(target.name, protocol.label(), "forwarded", &c)
        }
        // `--accounting off`: nothing was meant to be counted.
        None if !shared.remote_write.accounting => {}
        None => {
            payload
                .uncounted
                .get_or_create(&crate::metrics::VersionLabels {
                    route: target.name,
                    version: protocol.label(),
                })
                .inc();
        }
        Some(_) => {}
    }
    Ok(resp)
}

/// Counts, validates and rewrites the payload as configured. Returns the body to send — the
/// received one, untouched and uncopied, unless external labels were added — and its counts.
async fn understand(
    shared: &Shared,
    route_name: &'static str,
    protocol: Protocol,
    body: BufferedBody,
) -> Result<(BufferedBody, Option<Counts>), ProxyError> {
    if shared.remote_write.is_blind() {
        return Ok((body, None));
    }
    let settings = shared.remote_write.clone();
    let received = body.to_bytes();
    let result = if body.len() <= INLINE_DECODE_LIMIT {
        remote_write::process(protocol, &received, &settings)
    } else {
        // As many large decodes at once as there are workers: each holds a decode buffer of
        // megabytes on a blocking-pool thread, and the allocator keeps what a thread once used,
        // so unbounded concurrency would ratchet the steady RSS up with every burst.
        let _decoding = shared
            .limits
            .large_decodes
            .acquire()
            .await
            .map_err(|e| ProxyError::Internal(format!("payload processing failed: {e}")))?;
        tokio::task::spawn_blocking(move || remote_write::process(protocol, &received, &settings))
            .await
            .map_err(|e| ProxyError::Internal(format!("payload processing failed: {e}")))?
    };
    match result {
        Ok(Outcome::PassThrough { counts }) => Ok((body, counts)),
        // A new body: hashed afresh, so every (re)signed attempt covers what is sent.
        Ok(Outcome::Rewritten { body, counts }) => {
            Ok((BufferedBody::from_bytes(body), Some(counts)))
        }
        Err(rejection) => {
            let payload = &shared.metrics.payload;
            payload.record(
                route_name,
                protocol.label(),
                "rejected",
                &rejection.counts.unwrap_or_default(),
            );
            Err(ProxyError::InvalidPayload(rejection.reason))
        }
    }
}

/// Sends `body` upstream, retrying what [`retry::classify`] calls retryable with backoff, each
/// attempt freshly signed, until [`Shared::retry_deadline`] would be passed; then answers with
/// the last outcome (throttling as `--throttle-status`).
async fn send_with_retries(
    shared: &Shared,
    target: &RouteTarget,
    route: Route,
    inbound: &HeaderMap,
    body: &BufferedBody,
    deadline: Instant,
) -> Result<Response<ResponseBody>, ProxyError> {
    // An attempt needs some time to be worth making: a last attempt with milliseconds left
    // would only turn a meaningful answer (429 + Retry-After) into a timeout.
    let min_attempt = MIN_ATTEMPT_TIME.min(shared.retry_deadline / 4);
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        let credentials = target.credentials.get()?;
        let mut outbound = build_outbound(&target.upstream, inbound, body);
        target
            .signer
            .sign(
                &mut outbound,
                &credentials,
                body.sha256_hex(),
                shared.clock.now(),
            )
            .map_err(|e| ProxyError::Signing(e.to_string()))?;
        let attempt_timeout = shared
            .upstream_timeout
            .min(deadline.saturating_duration_since(Instant::now()));
        let outcome = shared.client.send(outbound, attempt_timeout).await;
        target.metrics.forwarded_bytes.inc_by(body.len());
        if let Ok(answer) = &outcome {
            target
                .metrics
                .upstream_latency
                .observe(answer.latency.as_secs_f64());
        }
        let (reason, not_before) = match retry::classify(&outcome, shared.clock.now()) {
            Verdict::Final => return finish(route, outcome, attempt),
            Verdict::Retry { reason, not_before } => (reason, not_before),
        };
        if reason == RetryReason::ExpiredCredentials {
            target.credentials.request_refresh();
        }
        let wait = retry::backoff(attempt, fastrand::f64(), not_before);
        // Shutting down: no more attempts; the sender retries (elsewhere) from its WAL.
        if Instant::now() + wait + min_attempt >= deadline
            || shared.draining.load(Ordering::Relaxed)
        {
            return give_up(shared, target.name, route, outcome, reason, wait, attempt);
        }
        shared
            .metrics
            .upstream_retries
            .get_or_create(&RetryLabels {
                route: target.name,
                reason: reason.label(),
            })
            .inc();
        tracing::debug!(
            route = target.name,
            path = route.label(),
            attempt,
            reason = reason.label(),
            wait_ms = wait.as_millis() as u64,
            "retrying upstream"
        );
        tokio::time::sleep(wait).await;
    }
}

/// A final outcome: the upstream's answer relayed, or our error.
fn finish(
    route: Route,
    outcome: Result<UpstreamAnswer, ProxyError>,
    attempts: u32,
) -> Result<Response<ResponseBody>, ProxyError> {
    let answer = outcome?;
    if answer.status.is_success() {
        tracing::debug!(
            route = route.route_name(),
            path = route.label(),
            status = answer.status.as_u16(),
            attempts,
            "forwarded"
        );
    } else {
        tracing::warn!(
            route = route.route_name(),
            path = route.label(),
            status = answer.status.as_u16(),
            reason = %one_line_snippet(&answer.body),
            upstream_latency_ms = answer.latency.as_millis() as u64,
            attempts,
            "upstream rejected request"
        );
    }
    Ok(answer.into_response())
}

/// The retry deadline is reached with a retryable outcome: hand the sender something it will
/// retry from its WAL. Throttling becomes `--throttle-status` with `Retry-After`; an expired
/// token (our credentials) becomes 503; other upstream answers are relayed; our own errors keep
/// their 502/504.
fn give_up(
    shared: &Shared,
    route_name: &'static str,
    route: Route,
    outcome: Result<UpstreamAnswer, ProxyError>,
    reason: RetryReason,
    wait: Duration,
    attempts: u32,
) -> Result<Response<ResponseBody>, ProxyError> {
    shared
        .metrics
        .upstream_gave_up
        .get_or_create(&RetryLabels {
            route: route_name,
            reason: reason.label(),
        })
        .inc();
    let retry_after_secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    match (reason, outcome) {
        // With --throttle-status 429 an upstream 429 is relayed as it is.
        (RetryReason::Throttled, Ok(answer)) if answer.status == shared.throttle_status => {
            finish(route, Ok(answer), attempts)
        }
        // Throttling, whatever status carried it, becomes --throttle-status: 503 for a default
        // Prometheus, 429 for senders with retry_on_http_429.
        (RetryReason::Throttled, Ok(answer)) => Err(ProxyError::Throttled {
            status: shared.throttle_status,
            retry_after_secs,
            detail: format!(
                "upstream {} after {attempts} attempts: {}",
                answer.status.as_u16(),
                one_line_snippet(&answer.body)
            ),
        }),
        // An upstream 408 is retryable, but Prometheus drops every 4xx: answer 503.
        (RetryReason::Timeout, Ok(answer)) => Err(ProxyError::Throttled {
            status: StatusCode::SERVICE_UNAVAILABLE,
            retry_after_secs,
            detail: format!(
                "upstream {} after {attempts} attempts: {}",
                answer.status.as_u16(),
                one_line_snippet(&answer.body)
            ),
        }),
        (RetryReason::ExpiredCredentials, Ok(answer)) => {
            Err(ProxyError::CredentialsUnavailable(format!(
                "upstream rejected our security token as expired: {}",
                one_line_snippet(&answer.body)
            )))
        }
        (_, outcome) => finish(route, outcome, attempts),
    }
}

/// Refused by admission control (503 + `Retry-After`), counted by limit.
pub(crate) fn overloaded(metrics: &Metrics, limit: &'static str) -> ProxyError {
    metrics
        .overload_rejections
        .get_or_create(&LimitLabels { limit })
        .inc();
    ProxyError::Overloaded { limit }
}

/// `Content-Encoding` must be snappy when present; `Content-Type` must be protobuf when
/// present, and its `proto=` parameter (if any) names the protocol: `prometheus.WriteRequest`
/// (1.0) or `io.prometheus.write.v2.Request` (2.0); any other message is 415. A missing
/// `Content-Type`, or one without `proto=`, means remote-write 1.0, as the reference receiver
/// treats it. Every value of a repeated header is checked, so a second,
/// contradicting header cannot slip past. `X-Prometheus-Remote-Write-Version` is copied upstream
/// and signed, so it must be text: otherwise the request could never be signed (400, not a
/// 5xx the sender would retry forever).
fn check_request_headers(h: &HeaderMap) -> Result<Protocol, ProxyError> {
    for enc in h.get_all(header::CONTENT_ENCODING) {
        let ok = enc.to_str().is_ok_and(|v| {
            v.split(',')
                .all(|coding| coding.trim().eq_ignore_ascii_case(SNAPPY))
        });
        if !ok {
            return Err(ProxyError::UnsupportedMediaType(format!(
                "Content-Encoding {:?}; remote-write bodies must be snappy",
                String::from_utf8_lossy(enc.as_bytes())
            )));
        }
    }
    let mut protocol = Protocol::V1;
    let mut types = h.get_all(header::CONTENT_TYPE).iter();
    if let Some(ct) = types.next() {
        if types.next().is_some() {
            return Err(ProxyError::UnsupportedMediaType(
                "more than one Content-Type header".into(),
            ));
        }
        let (media, params) = match ct.to_str() {
            Ok(v) => v.split_once(';').unwrap_or((v, "")),
            Err(_) => ("", ""),
        };
        if !media.trim().eq_ignore_ascii_case(PROTOBUF) {
            return Err(ProxyError::UnsupportedMediaType(format!(
                "Content-Type {:?}; remote-write bodies must be application/x-protobuf",
                String::from_utf8_lossy(ct.as_bytes())
            )));
        }
        protocol = Protocol::from_media_params(params).map_err(|other| {
            ProxyError::UnsupportedMediaType(format!(
                "proto={other:?}; supported: prometheus.WriteRequest (remote-write 1.0) and \
                 io.prometheus.write.v2.Request (2.0)"
            ))
        })?;
    }
    let mut versions = h.get_all(&REMOTE_WRITE_VERSION).iter();
    if let Some(v) = versions.next() {
        if v.to_str().is_err() || versions.next().is_some() {
            return Err(ProxyError::BadRequest(
                "X-Prometheus-Remote-Write-Version must be a single plain-text value".into(),
            ));
        }
    }
    Ok(protocol)
}

fn declared_length(h: &HeaderMap) -> Result<Option<u64>, ProxyError> {
    match h.get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Some)
            .ok_or_else(|| ProxyError::BadRequest("invalid Content-Length".into())),
    }
}

/// The outbound request, built fresh: only allowlisted inbound headers are carried over;
/// `Authorization`, `Cookie`, `Host`, hop-by-hop and `X-Amz-*` headers never are. The
/// destination comes from configuration only.
pub(crate) fn build_outbound(
    target: &UpstreamTarget,
    inbound: &HeaderMap,
    body: &BufferedBody,
) -> Request<OutboundBody> {
    let mut req = Request::new(body.to_outbound());
    *req.method_mut() = Method::POST;
    *req.uri_mut() = target.uri.clone();
    let h = req.headers_mut();
    h.insert(header::HOST, target.host_header.clone());
    let content_type = inbound
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or(HeaderValue::from_static(PROTOBUF));
    h.insert(header::CONTENT_TYPE, content_type);
    // Remote-write bodies are always snappy; say so even if the sender did not.
    h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(SNAPPY));
    if let Some(v) = inbound.get(&REMOTE_WRITE_VERSION) {
        h.insert(REMOTE_WRITE_VERSION, v.clone());
    }
    h.insert(header::USER_AGENT, user_agent(inbound));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    req
}

/// The sender's `User-Agent` with ours appended (ours alone if it sent none).
pub(crate) fn user_agent(inbound: &HeaderMap) -> HeaderValue {
    match inbound
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        Some(ua) if !ua.trim().is_empty() => {
            HeaderValue::from_str(&format!("{} {USER_AGENT_SUFFIX}", ua.trim()))
                .unwrap_or(HeaderValue::from_static(USER_AGENT_SUFFIX))
        }
        _ => HeaderValue::from_static(USER_AGENT_SUFFIX),
    }
}

/// A failed request: the error, and how long the upstream took if it was involved.
#[derive(Debug)]
struct Failure {
    error: ProxyError,
    upstream_latency: Option<Duration>,
}

impl From<ProxyError> for Failure {
    fn from(error: ProxyError) -> Self {
        Self {
            error,
            upstream_latency: None,
        }
    }
}

/// One line per failed request. Scanners' 404/405s only at debug level.
fn log_failure(route: Route, failure: &Failure) {
    let err = &failure.error;
    let status = err.status().as_u16();
    let upstream_latency_ms = failure.upstream_latency.map(|d| d.as_millis() as u64);
    match err {
        ProxyError::NotFound(_) | ProxyError::MethodNotAllowed { .. } => {
            tracing::debug!(path = route.label(), status, reason = %err, "request refused")
        }
        // Visible by default (a sender with the wrong token loses data), but not a warning.
        ProxyError::Unauthorized { .. } => {
            tracing::info!(route = route.route_name(), path = route.label(), status, reason = %err, "request refused")
        }
        _ => {
            tracing::warn!(route = route.route_name(), path = route.label(), status, reason = %err, upstream_latency_ms, "request failed")
        }
    }
}

fn one_line_snippet(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(&body[..body.len().min(256)]);
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                k.parse::<header::HeaderName>().unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn media_type_table() {
        const V1: Option<Protocol> = Some(Protocol::V1);
        const V2: Option<Protocol> = Some(Protocol::V2);
        // `None`: refused with 415 (or 400 for the version header).
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<Protocol>);
        let cases: &[Case] = &[
            (&[], V1),
            (&[("content-type", "application/x-protobuf")], V1),
            (
                &[(
                    "content-type",
                    "application/x-protobuf;proto=io.prometheus.write.v2.Request",
                )],
                V2,
            ),
            (
                &[(
                    "content-type",
                    "application/x-protobuf; charset=utf-8; PROTO=\"io.prometheus.write.v2.Request\"",
                )],
                V2,
            ),
            (
                &[(
                    "content-type",
                    "Application/X-Protobuf ; proto=prometheus.WriteRequest",
                )],
                V1,
            ),
            (
                &[(
                    "content-type",
                    "application/x-protobuf;proto=io.prometheus.write.v3.Request",
                )],
                None,
            ),
            (
                &[(
                    "content-type",
                    "application/x-protobuf;proto=opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest",
                )],
                None,
            ),
            (&[("content-type", "application/x-protobuf;proto=")], None),
            (&[("content-encoding", "snappy")], V1),
            (&[("content-encoding", "gzip")], None),
            (&[("content-type", "application/json")], None),
            (&[("content-type", "text/plain")], None),
            (&[("content-encoding", "")], None),
            (
                &[("content-encoding", "snappy"), ("content-encoding", "gzip")],
                None,
            ),
            (&[("content-encoding", "snappy, gzip")], None),
            (
                &[
                    ("content-type", "application/x-protobuf"),
                    ("content-type", "application/json"),
                ],
                None,
            ),
            (&[("x-prometheus-remote-write-version", "0.1.0")], V1),
            (
                &[
                    ("x-prometheus-remote-write-version", "0.1.0"),
                    ("x-prometheus-remote-write-version", "2.0.0"),
                ],
                None,
            ),
        ];
        for (h, want) in cases {
            let got = check_request_headers(&headers(h));
            assert_eq!(got.as_ref().ok().copied(), *want, "{h:?}");
            if let Err(e) = got {
                let media = h.iter().any(|(k, _)| k.starts_with("content-"));
                let status = if media { 415 } else { 400 };
                assert_eq!(e.status().as_u16(), status, "{h:?}: {e}");
            }
        }
        let mut non_text = HeaderMap::new();
        non_text.insert(
            "x-prometheus-remote-write-version",
            HeaderValue::from_bytes(b"0.1\xff").unwrap(),
        );
        let err = check_request_headers(&non_text).unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }
}
