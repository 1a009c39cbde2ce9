//! amp-rw-proxy: a Prometheus remote-write proxy for Amazon Managed Service for Prometheus
//! workspaces in another AWS account.
//!
//! Prometheus sends unsigned remote-write here; the proxy assumes the workspace account's role
//! ([`credentials`]), signs each request with SigV4 for service `aps` ([`signing`]), and
//! forwards the body byte-for-byte to the configured workspace ([`proxy`], [`upstream`]),
//! relaying the upstream's answer so the sender retries exactly what it should ([`error`]).
//!
//! Module map: [`config`] (flags and validation), [`app`] (wiring), [`server`] (accept loop and
//! drain), [`body`] (bounded, hashed body reading), [`metrics`], [`telemetry`] (logging).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod app;
pub mod auth;
pub mod body;
pub mod check;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod error;
pub mod metrics;
pub mod policies;
pub mod probe;
pub mod proxy;
pub mod query;
pub mod remote_write;
pub mod retry;
pub mod routes;
pub mod server;
pub mod signing;
pub mod telemetry;
pub mod tls;
pub mod upstream;

use aws_config::meta::region::RegionProviderChain;
use aws_config::{BehaviorVersion, Region, SdkConfig};

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
