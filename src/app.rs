//! Wiring: configuration + AWS SDK config → credential refresher + signing proxy service.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use aws_config::Region;
use aws_config::SdkConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_credential_types::provider::SharedCredentialsProvider;
use tokio::task::JoinHandle;
use tower::Layer;

use crate::auth::Authenticator;
use crate::config::{Config, RouteConfig};
use crate::credentials::{Clock, CredentialCache, CredentialRefresher, SystemClock};
use crate::metrics::{Metrics, RequestMetrics, RequestMetricsLayer};
use crate::proxy::{Limits, Proxy, RouteTarget, Shared};
use crate::signing::Signer;
use crate::upstream::UpstreamClient;

impl App {
    /// How [`crate::server::serve`] should run this app, from the configuration.
    pub fn serve_options(&self, config: &Config) -> crate::server::ServeOptions {
        crate::server::ServeOptions {
            header_timeout: config.client_header_timeout,
            drain_delay: config.drain_delay,
            grace: config.shutdown_grace,
            draining: self.draining.clone(),
            tls: self.tls.clone(),
            in_flight: self.metrics.in_flight.clone(),
        }
    }
}

/// The service stack handed to the server.
pub type Service = RequestMetrics<Proxy>;

/// A built proxy: the service and its background tasks (one credential refresher per route,
/// file reloaders).
pub struct App {
    /// The HTTP service (proxy wrapped in request metrics).
    pub service: Service,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// Set by the server when shutdown begins (readiness turns 503).
    pub draining: Arc<AtomicBool>,
    /// Inbound TLS, if configured.
    pub tls: Option<Arc<crate::tls::TlsConfig>>,
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
            let (provider, description) = credentials_provider(route, config, sdk).await?;
            let credentials = Arc::new(CredentialCache::new(clock.clone()));
            let refresher = CredentialRefresher::new(
                provider,
                credentials.clone(),
                metrics.clone(),
                description,
            )
            .for_route(route.name)
            .spawn();
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
            routes.push(RouteTarget {
                name: route.name,
                upstream: route.upstream.clone(),
                signer: Signer::new(route.region.clone(), &route.upstream.path),
                credentials,
                auth,
                query: route.query.clone(),
                metrics: metrics.for_route(route.name),
            });
            tasks.push(refresher);
        }
        let tls = match &config.tls {
            None => None,
            Some(files) => Some(Arc::new(
                crate::tls::TlsConfig::load(files).map_err(BuildError)?,
            )),
        };
        tasks.extend(tls.clone().map(crate::tls::TlsConfig::spawn_reloader));
        let client = UpstreamClient::new(&config.upstream_ca_certs)
            .map_err(|e| BuildError(e.to_string()))?;
        let proxy = Proxy::new(Shared {
            routes,
            paths,
            client,
            metrics: metrics.clone(),
            max_body_size: config.max_body_size,
            clock,
            upstream_timeout: config.upstream_timeout,
            retry_deadline: config.retry_deadline,
            throttle_status: config.throttle_status,
            draining: draining.clone(),
            auth: global_auth,
            remote_write: Arc::new(config.remote_write.clone()),
            query_prefixes,
            limits: Limits::new(
                config.max_in_flight_requests,
                config.max_in_flight_bytes,
                config.client_body_timeout,
                // One per runtime worker (`--worker-threads`, else one per CPU).
                config
                    .worker_threads
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
            ),
        });
        let service = RequestMetricsLayer::new(metrics.clone()).layer(proxy);
        Ok(App {
            service,
            metrics,
            draining,
            tls,
            tasks,
        })
    }
}

/// An authenticator (and its file reloader, added to `tasks`) if `inbound` asks for one.
fn authenticator(
    inbound: &Option<crate::config::InboundAuth>,
    tasks: &mut Vec<JoinHandle<()>>,
) -> Result<Option<Arc<Authenticator>>, BuildError> {
    let Some(inbound) = inbound else {
        return Ok(None);
    };
    let auth = Arc::new(Authenticator::new(inbound).map_err(BuildError)?);
    tasks.push(auth.clone().spawn_reloader());
    Ok(Some(auth))
}

/// The SDK configuration for a route's calls to STS: the SDK's region (where the proxy runs)
/// if one is set, else the route's workspace's — a regional STS endpoint, never the global one
/// by accident — and `--sts-endpoint` if given.
pub fn sts_config(route: &RouteConfig, config: &Config, sdk: &SdkConfig) -> SdkConfig {
    let sts_region = sdk
        .region()
        .cloned()
        .unwrap_or_else(|| Region::new(route.region.clone()));
    let mut sts_conf = sdk.to_builder().region(sts_region);
    if let Some(endpoint) = &config.sts_endpoint {
        sts_conf = sts_conf.endpoint_url(endpoint.clone());
    }
    sts_conf.build()
}

/// A route's credentials: the base chain, or AssumeRole on top of it; with a description for
/// logs.
pub async fn credentials_provider(
    route: &RouteConfig,
    config: &Config,
    sdk: &SdkConfig,
) -> Result<(SharedCredentialsProvider, String), BuildError> {
    let base = sdk.credentials_provider().ok_or_else(|| {
        BuildError(
            "no AWS credential provider configured (the default chain was not loaded)".into(),
        )
    })?;
    let Some(role) = &route.role else {
        return Ok((base, "base credentials (default chain)".to_string()));
    };
    let mut builder = AssumeRoleProvider::builder(role.arn.clone())
        .session_name(role.session_name.clone())
        .session_length(role.session_duration)
        .configure(&sts_config(route, config, sdk));
    if let Some(id) = &role.external_id {
        builder = builder.external_id(id.clone());
    }
    let provider = builder.build().await;
    Ok((
        SharedCredentialsProvider::new(provider),
        format!("role {}", role.arn),
    ))
}
