//! Configuration, validated up front: the flags ([`flags::Cli`], each also an environment
//! variable `AMP_RW_PROXY_<FLAG>`) or a routes file ([`routes_file`]) become one [`Config`].
//! Values are taken as strings by clap and validated here, so that *all* mistakes are reported
//! in one go (clap alone stops at the first bad value) and the process exits with code 64
//! (`EX_USAGE`).
//!
//! This layer knows nothing of the request path: it owns the values the rest of the proxy is
//! built from, including the paths it answers on ([`paths`]).

pub mod egress;
pub mod flags;
mod from_cli;
pub mod inbound;
pub mod paths;
pub mod routes_file;
pub mod targets;
pub mod tls_files;
pub mod validate;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::time::Duration;

use rustls_pki_types::CertificateDer;

pub use egress::{Egress, ProxyEnvironment, ProxyUrl};
pub use flags::Cli;
pub use inbound::InboundAuth;
pub use targets::{QueryTarget, UpstreamTarget};
pub use tls_files::TlsFiles;

use crate::remote_write::Settings;
pub use crate::telemetry::LogFormat;

/// What the proxy does with an upstream "limit exceeded" that retrying cannot lift
/// (`--on-limit-exceeded`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitPolicy {
    /// Answer the sender 400 with the upstream's message: it drops the batch and goes on.
    Reject,
    /// Treat it as throttling: retried, then `--throttle-status`.
    Retry,
}

/// Exit code for configuration errors (`EX_USAGE` from sysexits.h).
pub const EXIT_CONFIG_ERROR: u8 = 64;

/// The validated configuration the proxy runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Where requests go and how they are signed: the one route the flags describe, or the
    /// routes of `--config`. Never empty.
    pub routes: Vec<RouteConfig>,
    /// STS endpoint override (`--sts-endpoint`).
    pub sts_endpoint: Option<String>,
    /// `--sts-region`: STS's region when it is not the default (see [`Cli::sts_region`]).
    pub sts_region: Option<String>,
    /// `--sts-fips`: STS's FIPS endpoint (also on with `AWS_USE_FIPS_ENDPOINT`).
    pub sts_fips: bool,
    /// `--sts-dual-stack`: STS's dual-stack endpoint (also on with
    /// `AWS_USE_DUALSTACK_ENDPOINT`).
    pub sts_dual_stack: bool,
    /// The forward proxy outbound connections go through, if any.
    pub egress: Egress,
    /// Largest accepted request body, bytes.
    pub max_body_size: u64,
    /// Deadline for one upstream exchange.
    pub upstream_timeout: Duration,
    /// Extra CA certificates for the upstream.
    pub upstream_ca_certs: Vec<CertificateDer<'static>>,
    /// Offer HTTP/2 to the upstream by ALPN (otherwise HTTP/1.1 only).
    pub upstream_http2: bool,
    /// Log format.
    pub log_format: LogFormat,
    /// Runtime worker threads; `None` = one per CPU.
    pub worker_threads: Option<usize>,
    /// Whole shutdown budget (drain delay included).
    pub shutdown_grace: Duration,
    /// Time between turning unready and no longer accepting connections.
    pub drain_delay: Duration,
    /// Total time spent retrying one request upstream.
    pub retry_deadline: Duration,
    /// Status for throttling that outlived the retries (429 or 503).
    pub throttle_status: http::StatusCode,
    /// `--on-limit-exceeded`.
    pub on_limit_exceeded: LimitPolicy,
    /// Concurrent requests admitted.
    pub max_in_flight_requests: usize,
    /// Request body bytes held at once.
    pub max_in_flight_bytes: u64,
    /// Header (and keep-alive idle) timeout.
    pub client_header_timeout: Duration,
    /// Body read timeout.
    pub client_body_timeout: Duration,
    /// Inbound authentication for every route without its own, if required.
    pub inbound_auth: Option<InboundAuth>,
    /// Inbound TLS, if enabled.
    pub tls: Option<TlsFiles>,
    /// Payload handling: validation, decoded-size limit, external labels.
    pub remote_write: Settings,
    /// `--enable-query`: every route also forwards the query API (see [`RouteConfig::query`]).
    pub enable_query: bool,
}

/// Name of the route the flags describe (the `route` label of metrics).
pub const DEFAULT_ROUTE: &str = "default";

/// One destination: the inbound paths it answers on, the workspace, and how to sign for it.
/// Each route has its own credential cache.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// The `route` label of metrics and the `route` field of log lines.
    pub name: &'static str,
    /// Inbound paths accepted for remote-write, each with its `path` metric label.
    pub paths: Vec<RoutePath>,
    /// Where signed requests go.
    pub upstream: UpstreamTarget,
    /// Region the requests are signed for.
    pub region: String,
    /// Role to assume; `None` signs with the base credentials.
    pub role: Option<RoleConfig>,
    /// This route's own inbound authentication; `None` means the global one (if any).
    pub inbound_auth: Option<InboundAuth>,
    /// `--enable-query`: the workspace's query endpoint; `None` when the read path is off.
    pub query: Option<QueryTarget>,
    /// `--enable-query`: the query API is served on each of these prefixes + `/api/v1/query`
    /// etc.
    pub query_prefixes: Vec<String>,
}

/// An inbound path and its `path` metric label. Labels are `&'static str` so that recording a
/// metric never allocates; routes-file names and paths are leaked once at startup for that.
#[derive(Debug, Clone)]
pub struct RoutePath {
    /// The exact inbound path.
    pub path: String,
    /// Its metric label.
    pub label: &'static str,
}

/// The role assumed in the workspace's account.
#[derive(Clone)]
pub struct RoleConfig {
    /// Role ARN.
    pub arn: String,
    /// ExternalId, if the trust policy requires one. Not a secret by AWS's definition, but
    /// kept out of logs all the same.
    pub external_id: Option<String>,
    /// RoleSessionName.
    pub session_name: String,
    /// Requested session lifetime.
    pub session_duration: Duration,
}

impl std::fmt::Debug for RoleConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleConfig")
            .field("arn", &self.arn)
            .field(
                "external_id",
                &self.external_id.as_ref().map(|_| "** set **"),
            )
            .field("session_name", &self.session_name)
            .field("session_duration", &self.session_duration)
            .finish()
    }
}
/// All configuration errors found, each one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "invalid configuration ({} error(s)):", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// What validation needs from the process environment, passed in so tests are hermetic.
pub struct Environment {
    /// `AWS_REGION` (or `AWS_DEFAULT_REGION`) if set.
    pub aws_region: Option<String>,
    /// This host's name, for the default session name.
    pub hostname: String,
    /// `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY` (either case).
    pub proxy: ProxyEnvironment,
}

impl Environment {
    /// Reads the real process environment.
    pub fn from_process() -> Self {
        let aws_region = ["AWS_REGION", "AWS_DEFAULT_REGION"]
            .iter()
            .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()));
        Self {
            aws_region,
            hostname: gethostname::gethostname().to_string_lossy().into_owned(),
            proxy: ProxyEnvironment::from_process(),
        }
    }
}
