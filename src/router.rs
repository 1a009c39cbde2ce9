//! Routes each request to the write path, the read path or the proxy's own endpoints
//! (`/metrics`, `/-/healthy`, `/-/ready`), after inbound authentication; turns every failure
//! into its response (through [`ProxyError::into_response`], the one map) and logs it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::Body;

use crate::config::{QueryTarget, paths};
use crate::http::auth::Authenticator;
use crate::http::{Failure, Forwarding, ProxyError, ResponseBody};
use crate::query::{self, QueryContext};
use crate::telemetry::metrics::EndpointLabels;
use crate::write::{self, Destination, WriteContext, WriteSettings};

/// Which endpoint a request hit; also the `route` and `path` labels of the request metrics (a
/// fixed set from configuration, so a scanner cannot create series).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
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
        /// The API path (without the route's prefix), or [`query::LABEL_VALUES`] for
        /// every label name.
        path: &'static str,
    },
    /// Anything else.
    Unmatched,
}

impl Endpoint {
    /// Label value for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::Write { path, .. } | Endpoint::Query { path, .. } => path,
            Endpoint::Metrics => paths::METRICS,
            Endpoint::Healthy => paths::HEALTHY,
            Endpoint::Ready => paths::READY,
            Endpoint::Unmatched => "unmatched",
        }
    }

    /// The `route` label: the route's name for writes, empty for the proxy's own endpoints.
    pub fn route_name(self) -> &'static str {
        match self {
            Endpoint::Write { name, .. } | Endpoint::Query { name, .. } => name,
            _ => "",
        }
    }

    /// Both labels of the request metrics, as the metrics layer reads them.
    pub fn labels(self) -> EndpointLabels {
        EndpointLabels {
            route: self.route_name(),
            path: self.label(),
        }
    }
}

/// One route at run time: where its writes go and how they are signed, who may use it, and its
/// query endpoint.
pub struct RouteState {
    /// Destination, signer, credentials and metric series of its writes.
    pub destination: Destination,
    /// Inbound authentication: the route's own, else the global one.
    pub auth: Option<Arc<Authenticator>>,
    /// `--enable-query`: the workspace's query endpoint.
    pub query: Option<QueryTarget>,
}

/// Everything the router needs, shared by all connections.
pub struct Shared {
    /// One per route; never empty.
    pub routes: Vec<RouteState>,
    /// Exact inbound path → index into `routes` and the path's metric label.
    pub paths: HashMap<String, (usize, &'static str)>,
    /// `--enable-query`: route query prefix (`""` for the flags' route) → index into `routes`.
    /// Empty when the read path is off (query paths are 404).
    pub query_prefixes: HashMap<String, usize>,
    /// Global inbound authentication: for routes without their own and for unknown paths
    /// (health checks and /metrics stay open).
    pub auth: Option<Arc<Authenticator>>,
    /// Retries and payload handling of writes.
    pub write: WriteSettings,
    /// Client, clock, bounds, admission limits and metrics, for both paths.
    pub forwarding: Forwarding,
    /// Set once shutdown has begun: unready, and HTTP/1 connections are closed after each
    /// response so senders reconnect to another instance.
    pub draining: Arc<AtomicBool>,
}

/// The proxy as a tower `Service`. Never fails: every outcome is a response.
#[derive(Clone)]
pub struct Router {
    shared: Arc<Shared>,
}

impl Router {
    /// Wraps the shared state.
    pub fn new(shared: Shared) -> Self {
        Self {
            shared: Arc::new(shared),
        }
    }

    /// `<route prefix>/api/v1/<query API path>`. The API part is the last `/api/v1/` on: no
    /// allowlisted query path contains another (label names have no `/`).
    fn query_route(&self, path: &str) -> Endpoint {
        let Some(at) = path.rfind(query::API_PREFIX) else {
            return Endpoint::Unmatched;
        };
        let (prefix, api) = path.split_at(at);
        match (self.shared.query_prefixes.get(prefix), query::route(api)) {
            (Some(&index), Some(label)) => Endpoint::Query {
                index,
                name: self.shared.routes[index].destination.name,
                path: label,
            },
            _ => Endpoint::Unmatched,
        }
    }

    fn route(&self, path: &str) -> Endpoint {
        if let Some(&(index, label)) = self.shared.paths.get(path) {
            return Endpoint::Write {
                index,
                name: self.shared.routes[index].destination.name,
                path: label,
            };
        }
        match path {
            paths::METRICS => Endpoint::Metrics,
            paths::HEALTHY => Endpoint::Healthy,
            paths::READY => Endpoint::Ready,
            p if !self.shared.query_prefixes.is_empty() => self.query_route(p),
            _ => Endpoint::Unmatched,
        }
    }
}

impl<B> tower::Service<Request<B>> for Router
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
        let endpoint = self.route(req.uri().path());
        let shared = self.shared.clone();
        let http1 = req.version() < http::Version::HTTP_2;
        Box::pin(async move {
            let mut resp = match handle(&shared, endpoint, req).await {
                Ok(resp) => resp,
                Err(failure) => {
                    log_failure(endpoint, &failure);
                    failure.error.into_response()
                }
            };
            resp.extensions_mut().insert(endpoint.labels());
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
    endpoint: Endpoint,
    req: Request<B>,
) -> Result<Response<ResponseBody>, Failure>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let auth = match endpoint {
        Endpoint::Write { index, .. } | Endpoint::Query { index, .. } => {
            shared.routes[index].auth.as_ref()
        }
        Endpoint::Unmatched => shared.auth.as_ref(),
        Endpoint::Metrics | Endpoint::Healthy | Endpoint::Ready => None,
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
    match endpoint {
        Endpoint::Write { index, .. } if method == Method::POST => {
            let ctx = WriteContext {
                destination: &shared.routes[index].destination,
                labels: endpoint.labels(),
                settings: &shared.write,
                forwarding: &shared.forwarding,
                draining: &shared.draining,
            };
            write::forward(&ctx, req).await
        }
        Endpoint::Query { index, path, .. } => {
            let route = &shared.routes[index];
            let Some(query) = &route.query else {
                return Err(ProxyError::NotFound("no query endpoint for this route".into()).into());
            };
            let ctx = QueryContext {
                target: query,
                signer: &route.destination.signer,
                credentials: &route.destination.credentials,
                forwarding: &shared.forwarding,
            };
            Ok(query::forward(&ctx, path, req).await?)
        }
        Endpoint::Write { .. } => Err(ProxyError::MethodNotAllowed {
            method,
            allow: "POST",
        }
        .into()),
        Endpoint::Metrics | Endpoint::Healthy | Endpoint::Ready if !read_only => {
            Err(ProxyError::MethodNotAllowed {
                method,
                allow: "GET, HEAD",
            }
            .into())
        }
        Endpoint::Metrics => {
            let metrics = &shared.forwarding.metrics;
            let ready =
                !shared.draining.load(Ordering::Relaxed) && unready_routes(shared).is_empty();
            metrics.ready.set(i64::from(ready));
            Ok(text(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                metrics.encode(),
            ))
        }
        Endpoint::Healthy => Ok(text(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            "OK\n".into(),
        )),
        Endpoint::Ready if shared.draining.load(Ordering::Relaxed) => Ok(text(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            "not ready: shutting down\n".into(),
        )),
        Endpoint::Ready => Ok(readiness(shared)),
        // The workspace path is accepted too, but not advertised: it names the workspace.
        // Several routes: their paths are not listed (they name the teams behind the proxy).
        Endpoint::Unmatched if shared.routes.len() > 1 => {
            Err(ProxyError::NotFound("the paths of the proxy's routes file".into()).into())
        }
        Endpoint::Unmatched => Err(ProxyError::NotFound(format!(
            "{} and {}",
            paths::WRITE_PATHS[0],
            paths::WRITE_PATHS[1]
        ))
        .into()),
    }
}

/// Ready once every route has valid credentials: a route without them can only answer 503, so
/// the instance stays out of rotation until all of its senders can be served.
fn readiness(shared: &Shared) -> Response<ResponseBody> {
    let missing = unready_routes(shared);
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

/// The routes without valid credentials, with why.
fn unready_routes(shared: &Shared) -> Vec<(&'static str, String)> {
    shared
        .routes
        .iter()
        .filter_map(|r| {
            let d = &r.destination;
            d.credentials.get().err().map(|e| (d.name, e.to_string()))
        })
        .collect()
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// One line per failed request. Scanners' 404/405s only at debug level.
fn log_failure(endpoint: Endpoint, failure: &Failure) {
    let err = &failure.error;
    let status = err.status().as_u16();
    let upstream_latency_ms = failure.upstream_latency.map(|d| d.as_millis() as u64);
    match err {
        ProxyError::NotFound(_) | ProxyError::MethodNotAllowed { .. } => {
            tracing::debug!(path = endpoint.label(), status, reason = %err, "request refused")
        }
        // Visible by default (a sender with the wrong token loses data), but not a warning.
        ProxyError::Unauthorized { .. } => {
            tracing::info!(route = endpoint.route_name(), path = endpoint.label(), status, reason = %err, "request refused")
        }
        _ => {
            tracing::warn!(route = endpoint.route_name(), path = endpoint.label(), status, reason = %err, upstream_latency_ms, "request failed")
        }
    }
}
