//! Wiring: the validated configuration and the AWS SDK configuration become one running proxy —
//! a credential cache and refresher per route, the router behind the request-metrics layer, file
//! reloaders — and [`App::serve`] runs it on a listener until shutdown, then drains.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use aws_config::SdkConfig;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower::Layer;

use crate::aws::{Clock, CredentialCache, CredentialRefresher, Signer, SystemClock};
use crate::config::{Config, InboundAuth, RouteConfig};
use crate::http::Forwarding;
use crate::http::admission::Limits;
use crate::http::auth::Authenticator;
use crate::http::egress::EgressRules;
use crate::http::server::{self, Drain, ServeOptions};
use crate::http::tls::TlsConfig;
use crate::http::upstream::UpstreamClient;
use crate::router::{RouteState, Router, Shared};
use crate::telemetry::metrics::{RequestMetrics, RequestMetricsLayer};
use crate::telemetry::{LogThrottle, Metrics};
use crate::write::send::REJECTION_LOG_INTERVAL;
use crate::write::{Destination, WriteSettings};

/// The service stack handed to the server.
pub type Service = RequestMetrics<Router>;

/// A built proxy: the service and its background tasks (one credential refresher per route,
/// file reloaders).
pub struct App {
    /// The HTTP service (router wrapped in request metrics).
    pub service: Service,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// Set by the server when shutdown begins (readiness turns 503).
    pub draining: Arc<AtomicBool>,
    /// Inbound TLS, if configured.
    pub tls: Option<Arc<TlsConfig>>,
    /// How the server treats slow clients and drains, from the configuration.
    serve_options: ServeOptions,
    /// Stopped when the app is dropped.
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for App {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Building failed (TLS setup, or no credential provider at all).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(String);

impl App {
    /// Builds the proxy. `sdk` supplies the base credentials (the default chain in production),
    /// the HTTP client for STS and the region for STS calls. Credentials are fetched in the
    /// background starting now; the proxy is ready once they arrive.
    pub async fn build(config: &Config, sdk: &SdkConfig) -> Result<App, BuildError> {
        Self::build_with_clock(config, sdk, Arc::new(SystemClock)).await
    }

    /// [`App::build`] with a custom clock (tests).
    pub async fn build_with_clock(
        config: &Config,
        sdk: &SdkConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<App, BuildError> {
        let metrics = Arc::new(Metrics::new());
        let draining = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        let global_auth = authenticator(&config.inbound_auth, &mut tasks)?;
        let mut routes = Vec::with_capacity(config.routes.len());
        let mut paths = HashMap::new();
        let mut query_prefixes = HashMap::new();
        for route in &config.routes {
            let (provider, description) = crate::aws::credentials_provider(route, config, sdk)
                .await
                .map_err(|e| BuildError(e.to_string()))?;
            if route.role.is_some() {
                log_sts_endpoint(route, config, sdk).await;
            }
            let credentials = Arc::new(CredentialCache::new(clock.clone()));
            tasks.push(
                CredentialRefresher::new(
                    route.name,
                    provider,
                    credentials.clone(),
                    metrics.clone(),
                    description,
                )
                .spawn(),
            );
            let auth = match &route.inbound_auth {
                Some(_) => authenticator(&route.inbound_auth, &mut tasks)?,
                None => global_auth.clone(),
            };
            for p in &route.paths {
                paths
                    .entry(p.path.clone())
                    .or_insert((routes.len(), p.label));
            }
            if route.query.is_some() {
                for prefix in &route.query_prefixes {
                    query_prefixes.insert(prefix.clone(), routes.len());
                }
            }
            routes.push(RouteState {
                destination: Destination {
                    name: route.name,
                    upstream: route.upstream.clone(),
                    signer: Signer::new(route.region.clone(), &route.upstream.path),
                    credentials,
                    metrics: metrics.for_route(route.name),
                },
                auth,
                query: route.query.clone(),
            });
        }
        let tls = match &config.tls {
            None => None,
            Some(files) => Some(Arc::new(TlsConfig::load(files).map_err(BuildError)?)),
        };
        tasks.extend(tls.clone().map(TlsConfig::spawn_reloader));
        let client = UpstreamClient::new(
            &config.upstream_ca_certs,
            &config.egress,
            config.upstream_http2,
            config.max_in_flight_requests,
        )
        .map_err(|e| BuildError(e.to_string()))?;
        let router = Router::new(Shared {
            routes,
            paths,
            query_prefixes,
            auth: global_auth,
            write: WriteSettings {
                retry_deadline: config.retry_deadline,
                throttle_status: config.throttle_status,
                on_limit_exceeded: config.on_limit_exceeded,
                rejection_log: LogThrottle::new(REJECTION_LOG_INTERVAL),
                payload: Arc::new(config.remote_write.clone()),
            },
            forwarding: Forwarding {
                client,
                clock,
                upstream_timeout: config.upstream_timeout,
                max_body_size: config.max_body_size,
                limits: Limits::new(
                    config.max_in_flight_requests,
                    config.max_in_flight_bytes,
                    config.client_body_timeout,
                    // One per runtime worker (`--worker-threads`, else one per CPU).
                    config.worker_threads.unwrap_or_else(|| {
                        std::thread::available_parallelism().map_or(2, |n| n.get())
                    }),
                ),
                metrics: metrics.clone(),
            },
            draining: draining.clone(),
        });
        let service = RequestMetricsLayer::new(metrics.clone()).layer(router);
        metrics.drain_budget.set(
            config
                .shutdown_grace
                .saturating_sub(config.drain_delay)
                .as_secs_f64(),
        );
        let serve_options = ServeOptions {
            header_timeout: config.client_header_timeout,
            drain_delay: config.drain_delay,
            grace: config.shutdown_grace,
            draining: draining.clone(),
            tls: tls.clone(),
            in_flight: metrics.in_flight.clone(),
        };
        Ok(App {
            service,
            metrics,
            draining,
            tls,
            serve_options,
            tasks,
        })
    }

    /// Serves on `listener` until `shutdown` resolves, then drains (see
    /// [`crate::http::server::serve`]).
    pub async fn serve(&self, listener: TcpListener, shutdown: impl Future<Output = ()>) -> Drain {
        server::serve(
            listener,
            self.service.clone(),
            shutdown,
            self.serve_options.clone(),
        )
        .await
    }
}

/// An authenticator (and its file reloader, added to `tasks`) if `inbound` asks for one.
fn authenticator(
    inbound: &Option<InboundAuth>,
    tasks: &mut Vec<JoinHandle<()>>,
) -> Result<Option<Arc<Authenticator>>, BuildError> {
    let Some(inbound) = inbound else {
        return Ok(None);
    };
    let auth = Arc::new(Authenticator::new(inbound).map_err(BuildError)?);
    tasks.push(auth.clone().spawn_reloader());
    Ok(Some(auth))
}

/// The async runtime `--worker-threads` asks for. One worker thread: the single-threaded
/// scheduler, without work-stealing machinery or cross-thread wake-ups (measurably cheaper per
/// request, see benches/).
pub fn runtime(worker_threads: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = match worker_threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    builder.enable_all().build()
}

/// Where a route's AssumeRole calls go: the endpoint as the SDK resolves it, its region, and
/// the egress proxy (if any) on the way.
async fn log_sts_endpoint(route: &RouteConfig, config: &Config, sdk: &SdkConfig) {
    let endpoint = crate::aws::sts_endpoint(route, config, sdk).await;
    let rules = EgressRules::new(&config.egress);
    let via = endpoint
        .parse::<http::Uri>()
        .ok()
        .and_then(|uri| rules.as_ref()?.shown_proxy_for(&uri))
        .unwrap_or_else(|| "direct".to_string());
    tracing::info!(
        route = route.name,
        sts_endpoint = %endpoint,
        sts_region = %crate::aws::sts_region(route, config, sdk),
        via = %via,
        "STS endpoint for AssumeRole"
    );
}

/// What the proxy serves, at startup: the egress proxy (if any), one line per route (with how
/// it reaches its workspace) and one for the listener.
pub fn log_startup(config: &Config, listen: SocketAddr) {
    let egress = &config.egress;
    if egress.is_active() {
        let shown = |p: &Option<crate::config::ProxyUrl>| {
            p.as_ref().map_or("none".to_string(), |p| p.to_string())
        };
        tracing::info!(
            from = %egress.source,
            https = %shown(&egress.https),
            http = %shown(&egress.http),
            no_proxy = %egress.no_proxy,
            "egress proxy"
        );
    } else if !egress.source.is_empty() {
        tracing::info!(from = %egress.source, "egress proxy not used: NO_PROXY=* bypasses it for every host");
    }
    let rules = EgressRules::new(egress);
    for route in &config.routes {
        if route.upstream.plaintext {
            tracing::warn!(
                route = route.name,
                "upstream is plain http://: requests and signatures travel unencrypted (testing only)"
            );
        }
        tracing::info!(
            route = route.name,
            paths = %route.paths.iter().map(|p| p.path.as_str()).collect::<Vec<_>>().join(" "),
            upstream_host = %route.upstream.host_header.to_str().unwrap_or("?"),
            upstream_path = %route.upstream.path,
            region = %route.region,
            role_arn = route.role.as_ref().map_or("none (base credentials)", |r| r.arn.as_str()),
            inbound_auth = route.inbound_auth.is_some() || config.inbound_auth.is_some(),
            via = %rules
                .as_ref()
                .and_then(|r| r.shown_proxy_for(&route.upstream.uri))
                .unwrap_or_else(|| "direct".to_string()),
            "serving route"
        );
    }
    tracing::info!(
        %listen,
        routes = config.routes.len(),
        tls = config.tls.is_some(),
        version = env!("CARGO_PKG_VERSION"),
        "amp-rw-proxy listening"
    );
}
