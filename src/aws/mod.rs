//! AWS: the SDK's credential chain and AssumeRole set-up ([`load_aws_config`],
//! [`credentials_provider`]), the credential cache and its refresher ([`credentials`]), SigV4
//! signing for `aps` ([`signing`]) and the clock both use ([`clock`]).

pub mod clock;
pub mod credentials;
pub mod explain;
pub mod signing;

use aws_config::meta::region::RegionProviderChain;
use aws_config::sts::AssumeRoleProvider;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::{ConnectorBuilder, tls};
use aws_smithy_runtime_api::client::http::SharedHttpClient;

pub use clock::{Clock, SystemClock};
pub use credentials::{CredentialCache, CredentialRefresher, CredentialsUnavailable};
pub use signing::Signer;

use crate::config::targets::partition_of;
use crate::config::{Config, Egress, RouteConfig};

/// Loads the AWS SDK configuration the way every AWS tool does (environment, shared profile,
/// web identity/IRSA, EKS Pod Identity/ECS container credentials, IMDS). The region for the
/// SDK's own calls comes from the environment or profile, falling back to the workspace's
/// region (IMDS is not asked for a region: it would stall startup off EC2). The SDK's HTTP
/// client — STS and the credential chain — goes through `egress` (see [`sdk_http_client`]).
pub async fn load_aws_config(workspace_region: &str, egress: &Egress) -> SdkConfig {
    let region = RegionProviderChain::first_try(
        aws_config::environment::EnvironmentVariableRegionProvider::new(),
    )
    .or_else(aws_config::profile::ProfileFileRegionProvider::new())
    .or_else(Region::new(workspace_region.to_string()));
    aws_config::defaults(BehaviorVersion::latest())
        .region(region)
        .http_client(sdk_http_client(egress, false))
        .load()
        .await
}

/// The SDK's own HTTPS client (rustls with aws-lc, as its default) with the proxy settings the
/// workspace client has, rather than the SDK re-reading the environment on its own: one
/// resolution of `--egress-proxy`/`HTTPS_PROXY`/`NO_PROXY` for both, and the
/// instance-metadata and container-credential addresses always direct.
///
/// The SDK's proxy settings take one proxy for all schemes or one for a single scheme, not two
/// different ones; when `HTTPS_PROXY` and `HTTP_PROXY` differ, the SDK gets the one for the
/// scheme its STS endpoint uses (`plain_http`: an `http://` `--sts-endpoint`, local testing).
pub fn sdk_http_client(egress: &Egress, plain_http: bool) -> SharedHttpClient {
    let proxy = sdk_proxy_config(egress, plain_http);
    aws_smithy_http_client::Builder::new().build_with_connector_fn(move |settings, components| {
        let mut conn = ConnectorBuilder::default().tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ));
        conn.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            conn.set_sleep_impl(components.sleep_impl());
        }
        conn.set_proxy_config(Some(proxy.clone()));
        conn.build()
    })
}

fn sdk_proxy_config(egress: &Egress, plain_http: bool) -> ProxyConfig {
    let built = match (&egress.https, &egress.http) {
        (None, None) => return ProxyConfig::disabled(),
        (Some(s), Some(h)) if s == h => ProxyConfig::all(s.with_credentials()),
        (_, Some(h)) if plain_http => ProxyConfig::http(h.with_credentials()),
        (Some(s), _) => ProxyConfig::https(s.with_credentials()),
        (None, Some(h)) => ProxyConfig::http(h.with_credentials()),
    };
    match built {
        Ok(p) => p.no_proxy(&egress.no_proxy),
        // Validated in the configuration layer already; should the SDK still refuse the URL,
        // STS goes direct and the log says so (the error would repeat the URL's password).
        Err(_) => {
            tracing::warn!("the AWS SDK refused the egress proxy URL; STS is called directly");
            ProxyConfig::disabled()
        }
    }
}

/// STS's region for a route: `--sts-region`; else the SDK's region (where the proxy runs:
/// `AWS_REGION` or the profile) when it is in the workspace's partition; else the workspace's
/// own region. Never the global endpoint by accident, never another partition's STS.
pub fn sts_region(route: &RouteConfig, config: &Config, sdk: &SdkConfig) -> Region {
    if let Some(r) = &config.sts_region {
        return Region::new(r.clone());
    }
    match sdk.region() {
        Some(r) if partition_of(r.as_ref()) == partition_of(&route.region) => r.clone(),
        _ => Region::new(route.region.clone()),
    }
}

/// The SDK configuration for a route's calls to STS: its region ([`sts_region`]), FIPS and
/// dual-stack if asked for by flag or by the SDK's own `AWS_USE_FIPS_ENDPOINT` /
/// `AWS_USE_DUALSTACK_ENDPOINT`, and `--sts-endpoint` if given.
pub fn sts_config(route: &RouteConfig, config: &Config, sdk: &SdkConfig) -> SdkConfig {
    let mut sts_conf = sdk
        .to_builder()
        .region(sts_region(route, config, sdk))
        .use_fips(config.sts_fips || sdk.use_fips().unwrap_or(false))
        .use_dual_stack(config.sts_dual_stack || sdk.use_dual_stack().unwrap_or(false));
    if let Some(endpoint) = &config.sts_endpoint {
        sts_conf = sts_conf.endpoint_url(endpoint.clone());
        if endpoint.starts_with("http://") && config.egress.https != config.egress.http {
            sts_conf = sts_conf.http_client(sdk_http_client(&config.egress, true));
        }
    }
    sts_conf.build()
}

/// The STS endpoint a route's AssumeRole calls go to, as the SDK resolves it from
/// [`sts_config`] (or the override: `--sts-endpoint`, `AWS_ENDPOINT_URL_STS`,
/// `AWS_ENDPOINT_URL`), for the startup log.
pub async fn sts_endpoint(route: &RouteConfig, config: &Config, sdk: &SdkConfig) -> String {
    use aws_sdk_sts::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
    let conf = sts_config(route, config, sdk);
    let overridden = config.sts_endpoint.clone().or_else(|| {
        ["AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL"]
            .iter()
            .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
    });
    let params = Params::builder()
        .set_region(conf.region().map(|r| r.to_string()))
        .use_fips(conf.use_fips().unwrap_or(false))
        .use_dual_stack(conf.use_dual_stack().unwrap_or(false))
        .set_endpoint(overridden)
        .use_global_endpoint(false)
        .build();
    let resolved = match params {
        Ok(params) => DefaultResolver::new()
            .resolve_endpoint(&params)
            .await
            .map(|e| e.url().to_string())
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    resolved.unwrap_or_else(|e| format!("(not resolvable: {e})"))
}

/// A route's credentials: the base chain, or AssumeRole on top of it; with a description for
/// logs.
pub async fn credentials_provider(
    route: &RouteConfig,
    config: &Config,
    sdk: &SdkConfig,
) -> Result<(SharedCredentialsProvider, String), NoCredentialProvider> {
    let base = sdk.credentials_provider().ok_or(NoCredentialProvider)?;
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

/// The SDK configuration has no credential provider (the default chain was not loaded).
#[derive(Debug, thiserror::Error)]
#[error("no AWS credential provider configured (the default chain was not loaded)")]
pub struct NoCredentialProvider;
