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

pub use clock::{Clock, SystemClock};
pub use credentials::{CredentialCache, CredentialRefresher, CredentialsUnavailable};
pub use signing::Signer;

use crate::config::{Config, RouteConfig};

/// Loads the AWS SDK configuration the way every AWS tool does (environment, shared profile,
/// web identity/IRSA, EKS Pod Identity/ECS container credentials, IMDS). The region for the
/// SDK's own calls comes from the environment or profile, falling back to the workspace's
/// region (IMDS is not asked for a region: it would stall startup off EC2).
pub async fn load_aws_config(workspace_region: &str) -> SdkConfig {
    let region = RegionProviderChain::first_try(
        aws_config::environment::EnvironmentVariableRegionProvider::new(),
    )
    .or_else(aws_config::profile::ProfileFileRegionProvider::new())
    .or_else(Region::new(workspace_region.to_string()));
    aws_config::defaults(BehaviorVersion::latest())
        .region(region)
        .load()
        .await
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
