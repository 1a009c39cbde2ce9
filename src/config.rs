//! Command line and environment configuration, validated up front.
//!
//! Every flag is also an environment variable `AMP_RW_PROXY_<FLAG>`. Values are taken as
//! strings by clap and validated here, so that *all* mistakes are reported in one go
//! (clap alone stops at the first bad value) and the process exits with code 64 (`EX_USAGE`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use http::{HeaderValue, Uri};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// Exit code for configuration errors (`EX_USAGE` from sysexits.h).
pub const EXIT_CONFIG_ERROR: u8 = 64;

/// STS accepts session durations from 15 minutes to 12 hours (the role's own maximum may be lower).
pub(crate) const MIN_SESSION_DURATION: Duration = Duration::from_secs(15 * 60);
pub(crate) const MAX_SESSION_DURATION: Duration = Duration::from_secs(12 * 60 * 60);
/// STS `RoleSessionName`: 2 to 64 characters of `[\w+=,.@-]`.
const SESSION_NAME_MAX: usize = 64;
const SESSION_NAME_MIN: usize = 2;
const SESSION_NAME_PREFIX: &str = "amp-rw-proxy-";

/// Prometheus remote-write proxy for Amazon Managed Service for Prometheus (AMP).
///
/// Accepts unsigned remote-write from Prometheus, assumes a (cross-account) IAM role, signs each
/// request with SigV4 (service `aps`) and forwards it unchanged to the workspace. Every flag can
/// also be set through the environment variable shown.
#[derive(Debug, Parser, Clone)]
#[command(name = "amp-rw-proxy", version, about, long_about = None)]
pub struct Cli {
    /// Routes file (TOML): several workspaces, each with its own inbound path, upstream URL,
    /// region, role, ExternalId, session name and inbound authentication (see the README).
    /// Excludes --upstream-url, --region, --role-arn and --external-id; the other flags apply
    /// to every route (--session-name and --session-duration as defaults).
    #[arg(long, env = "AMP_RW_PROXY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address to accept remote-write, /metrics and health checks on.
    #[arg(long, env = "AMP_RW_PROXY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,

    /// Remote-write URL of the AMP workspace, as the console shows it:
    /// https://aps-workspaces.<region>.amazonaws.com/workspaces/<id>/api/v1/remote_write
    /// (VPC endpoint and FIPS host names work; plain http:// only for local testing). Required
    /// unless --config is given.
    #[arg(long, env = "AMP_RW_PROXY_UPSTREAM_URL")]
    pub upstream_url: Option<String>,

    /// Region to sign for. Default: taken from an aps-workspaces[-fips].<region>.amazonaws.com
    /// upstream host, else from AWS_REGION.
    #[arg(long, env = "AMP_RW_PROXY_REGION")]
    pub region: Option<String>,

    /// ARN of the role to assume in the workspace's account (e.g.
    /// arn:aws:iam::111111111111:role/account_a_role). Without it requests are signed with the
    /// base credentials of the default AWS credential chain.
    #[arg(long, env = "AMP_RW_PROXY_ROLE_ARN")]
    pub role_arn: Option<String>,

    /// ExternalId required by the role's trust policy (sts:ExternalId condition).
    #[arg(long, env = "AMP_RW_PROXY_EXTERNAL_ID", hide_env_values = true)]
    pub external_id: Option<String>,

    /// RoleSessionName for AssumeRole; shows in Account A's CloudTrail. Default:
    /// amp-rw-proxy-<hostname>, sanitised to [A-Za-z0-9_+=,.@-] and at most 64 characters.
    #[arg(long, env = "AMP_RW_PROXY_SESSION_NAME")]
    pub session_name: Option<String>,

    /// Lifetime of the assumed-role session, 15m to 12h (the role's MaxSessionDuration applies).
    #[arg(long, env = "AMP_RW_PROXY_SESSION_DURATION", default_value = "1h")]
    pub session_duration: String,

    /// STS endpoint override, e.g. a VPC endpoint. AWS_ENDPOINT_URL_STS is honoured too.
    #[arg(long, env = "AMP_RW_PROXY_STS_ENDPOINT")]
    pub sts_endpoint: Option<String>,

    /// Largest request body accepted (bytes; suffixes KiB, MiB, GiB, KB, MB, GB). Larger → 413.
    #[arg(long, env = "AMP_RW_PROXY_MAX_BODY_SIZE", default_value = "32MiB")]
    pub max_body_size: String,

    /// Time allowed for one upstream exchange (connect, send, response). Exceeded → 504.
    #[arg(long, env = "AMP_RW_PROXY_UPSTREAM_TIMEOUT", default_value = "30s")]
    pub upstream_timeout: String,

    /// PEM file with extra CA certificates trusted for the upstream, in addition to the
    /// system and Mozilla (webpki) roots.
    #[arg(long, env = "AMP_RW_PROXY_UPSTREAM_CA_FILE")]
    pub upstream_ca_file: Option<PathBuf>,

    /// Log format: text or json. Verbosity via RUST_LOG (default info).
    #[arg(long, env = "AMP_RW_PROXY_LOG_FORMAT", default_value = "text")]
    pub log_format: String,

    /// Worker threads for the async runtime. Default: one per CPU.
    #[arg(long, env = "AMP_RW_PROXY_WORKER_THREADS")]
    pub worker_threads: Option<String>,

    /// On SIGTERM/SIGINT, the whole shutdown budget: the drain delay plus the time in-flight
    /// requests may take to finish. Keep it below the orchestrator's kill timeout (30s in
    /// Kubernetes by default).
    #[arg(long, env = "AMP_RW_PROXY_SHUTDOWN_GRACE", default_value = "25s")]
    pub shutdown_grace: String,

    /// On SIGTERM/SIGINT, /-/ready turns 503 at once but new connections are still accepted
    /// for this long, so a load balancer or Kubernetes endpoint update can take the proxy out
    /// of rotation first. Counts against --shutdown-grace.
    #[arg(long, env = "AMP_RW_PROXY_DRAIN_DELAY", default_value = "5s")]
    pub drain_delay: String,

    /// Total time the proxy spends retrying one request upstream (connect errors, timeouts,
    /// 5xx except 501, 408, 429, throttling) before answering the sender with the last
    /// retryable status. Keep it well under Prometheus's remote_timeout (30s).
    #[arg(long, env = "AMP_RW_PROXY_RETRY_DEADLINE", default_value = "20s")]
    pub retry_deadline: String,

    /// Status sent when the upstream is still throttling (429) after our retries: 503 (with
    /// Retry-After) makes a default Prometheus retry, which drops batches on 429 unless
    /// retry_on_http_429 is set; 429 relays the upstream's answer unchanged.
    #[arg(long, env = "AMP_RW_PROXY_THROTTLE_STATUS", default_value = "503")]
    pub throttle_status: String,

    /// Requests handled at once; beyond this new requests get 503 + Retry-After at once,
    /// without their body being read.
    #[arg(
        long,
        env = "AMP_RW_PROXY_MAX_IN_FLIGHT_REQUESTS",
        default_value = "256"
    )]
    pub max_in_flight_requests: String,

    /// Request body bytes held at once (the proxy's memory bound); beyond this requests get
    /// 503 + Retry-After. Must be at least --max-body-size.
    #[arg(
        long,
        env = "AMP_RW_PROXY_MAX_IN_FLIGHT_BYTES",
        default_value = "64MiB"
    )]
    pub max_in_flight_bytes: String,

    /// Time a client has to send a request's headers, counted from when the proxy starts
    /// waiting for them — on a kept-alive connection that includes the idle time between
    /// requests, so this is also the keep-alive idle timeout.
    #[arg(
        long,
        env = "AMP_RW_PROXY_CLIENT_HEADER_TIMEOUT",
        default_value = "30s"
    )]
    pub client_header_timeout: String,

    /// Time a client has to send a request's whole body. Exceeded → 503 (retryable).
    #[arg(long, env = "AMP_RW_PROXY_CLIENT_BODY_TIMEOUT", default_value = "30s")]
    pub client_body_timeout: String,

    /// Require `Authorization: Bearer <token>` from senders, the token read from this file
    /// (re-read within seconds when it changes, e.g. a rotated Kubernetes Secret). Prometheus:
    /// `authorization: {credentials_file: ...}`. Health and /metrics stay open.
    #[arg(long, env = "AMP_RW_PROXY_INBOUND_BEARER_TOKEN_FILE")]
    pub inbound_bearer_token_file: Option<PathBuf>,

    /// Require HTTP basic auth from senders with this user name (with
    /// --inbound-basic-auth-password-file). Prometheus: `basic_auth: {username, password_file}`.
    #[arg(long, env = "AMP_RW_PROXY_INBOUND_BASIC_AUTH_USER")]
    pub inbound_basic_auth_user: Option<String>,

    /// File holding the basic-auth password (re-read within seconds when it changes).
    #[arg(long, env = "AMP_RW_PROXY_INBOUND_BASIC_AUTH_PASSWORD_FILE")]
    pub inbound_basic_auth_password_file: Option<PathBuf>,

    /// Serve HTTPS with this PEM certificate chain (with --tls-key-file). Re-read when it changes.
    #[arg(long, env = "AMP_RW_PROXY_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,

    /// PEM private key of --tls-cert-file. Re-read when it changes.
    #[arg(long, env = "AMP_RW_PROXY_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,

    /// Require client certificates signed by this PEM CA bundle (mutual TLS).
    #[arg(long, env = "AMP_RW_PROXY_TLS_CLIENT_CA_FILE")]
    pub tls_client_ca_file: Option<PathBuf>,
    /// Decode and check every request before forwarding it; refuse with 400 (and forward
    /// nothing) a body that is not valid snappy, not a valid protobuf message, decodes to more
    /// than --max-decoded-size, has unsorted or duplicate label names or an empty metric name,
    /// or (remote-write 2.0) has symbols[0] != "" or a symbol reference out of range.
    /// [default: off]
    #[arg(long, env = "AMP_RW_PROXY_VALIDATE")]
    pub validate: bool,

    /// Largest size a request body may decompress to (checked from snappy's declared length,
    /// before allocating). Over it: 400 with --validate or --external-label; otherwise the
    /// request is forwarded uncounted.
    #[arg(long, env = "AMP_RW_PROXY_MAX_DECODED_SIZE", default_value = "32MiB")]
    pub max_decoded_size: String,

    /// Label added to (or overriding the same label of) every series, as NAME=VALUE;
    /// repeatable. The body is re-encoded and re-compressed, and the signature covers the new
    /// body. In the environment variable, separate labels with commas.
    #[arg(
        long = "external-label",
        env = "AMP_RW_PROXY_EXTERNAL_LABELS",
        value_name = "NAME=VALUE",
        value_delimiter = ','
    )]
    pub external_labels: Vec<String>,

    /// Count series, samples, histograms, exemplars and metadata of every request for the
    /// amp_rw_proxy_remote_write_* metrics: on or off. On, every body is snappy-decoded, which
    /// costs as much CPU again as forwarding it (see the README's performance section); off,
    /// bodies are forwarded undecoded unless --validate or --external-label needs them (and
    /// those count what they decode).
    #[arg(long, env = "AMP_RW_PROXY_ACCOUNTING", default_value = "off")]
    pub accounting: String,

    // --- Read path (issue #9) ---
    /// Also forward the Prometheus query API (GET and form POST on /api/v1/query,
    /// /api/v1/query_range, /api/v1/series, /api/v1/labels, /api/v1/label/<name>/values,
    /// /api/v1/metadata, /api/v1/query_exemplars and /api/v1/status/buildinfo) to the workspace's
    /// query endpoint, signed like writes, so Grafana can use the proxy as a Prometheus data
    /// source. The role needs aps:QueryMetrics, aps:GetSeries, aps:GetLabels and
    /// aps:GetMetricMetadata (`policies --include-query`). [default: off]
    #[arg(long, env = "AMP_RW_PROXY_ENABLE_QUERY")]
    pub enable_query: bool,
}

/// Output format of the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors in containers.
    Json,
}

/// The validated configuration the proxy runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Where requests go and how they are signed: the one route the flags describe, or the
    /// routes of `--config`. Never empty.
    pub routes: Vec<RouteConfig>,
    /// STS endpoint override.
    pub sts_endpoint: Option<String>,
    /// Largest accepted request body, bytes.
    pub max_body_size: u64,
    /// Deadline for one upstream exchange.
    pub upstream_timeout: Duration,
    /// Extra CA certificates for the upstream.
    pub upstream_ca_certs: Vec<CertificateDer<'static>>,
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
    pub tls: Option<crate::tls::TlsFiles>,
    /// Payload handling: validation, decoded-size limit, external labels.
    pub remote_write: crate::remote_write::Settings,
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
    pub query: Option<crate::query::QueryTarget>,
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

/// How senders must authenticate to the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundAuth {
    /// `Authorization: Bearer <contents of the file>`.
    Bearer {
        /// The token file.
        token_file: PathBuf,
    },
    /// `Authorization: Basic base64(user:password)`.
    Basic {
        /// The user name.
        user: String,
        /// The password file.
        password_file: PathBuf,
    },
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

/// The upstream remote-write endpoint, fixed at startup. The proxy never derives the
/// destination from the inbound request, so it cannot be used as an open proxy.
#[derive(Debug, Clone)]
pub struct UpstreamTarget {
    /// Full URI, normalised (default port removed so the signed `host` matches what is sent).
    pub uri: Uri,
    /// Value of the `Host` header sent and signed.
    pub host_header: HeaderValue,
    /// The URI's path, also accepted as an inbound path (drop-in for aws-sigv4-proxy users).
    pub path: String,
    /// `true` for `http://` (testing only).
    pub plaintext: bool,
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
        }
    }
}

impl Config {
    /// Validates everything in `cli`, collecting every error instead of stopping at the first.
    pub fn from_cli(cli: &Cli, env: &Environment) -> Result<Config, ConfigErrors> {
        let mut errors = ErrorList::default();

        let listen = errors.check(
            cli.listen
                .parse::<SocketAddr>()
                .map_err(|e| format!("--listen {:?}: {e} (expected IP:PORT)", cli.listen)),
        );
        let session_duration =
            errors.check(parse_duration("--session-duration", &cli.session_duration));
        if let Some(d) = session_duration {
            if !(MIN_SESSION_DURATION..=MAX_SESSION_DURATION).contains(&d) {
                errors.check(Err::<(), _>(format!(
                    "--session-duration {:?}: must be between 15m and 12h",
                    cli.session_duration
                )));
            }
        }
        let session_name = match non_empty(&cli.session_name) {
            Some(name) => errors
                .check(validate_session_name("--session-name", name).map(|_| name.to_string())),
            None => Some(default_session_name(&env.hostname)),
        };
        let routes = match &cli.config {
            Some(file) => {
                for (flag, set) in [
                    ("--upstream-url", cli.upstream_url.is_some()),
                    ("--region", cli.region.is_some()),
                    ("--role-arn", cli.role_arn.is_some()),
                    ("--external-id", cli.external_id.is_some()),
                ] {
                    if set {
                        errors.check(Err::<(), _>(format!(
                            "{flag} and --config exclude each other: with a routes file, set it \
                             on each route"
                        )));
                    }
                }
                let defaults = crate::routes::RouteDefaults {
                    session_name: session_name.clone(),
                    session_duration,
                    aws_region: env.aws_region.clone(),
                };
                crate::routes::load(file, &defaults, &mut errors.0)
            }
            None => flags_route(
                cli,
                env,
                session_name.clone(),
                session_duration,
                &mut errors,
            ),
        };
        let sts_endpoint = non_empty(&cli.sts_endpoint).and_then(|u| {
            errors.check(match u.parse::<Uri>() {
                Ok(uri)
                    if matches!(uri.scheme_str(), Some("http" | "https"))
                        && uri.host().is_some() =>
                {
                    Ok(u.to_string())
                }
                _ => Err(format!("--sts-endpoint {u:?}: expected an http(s):// URL")),
            })
        });
        let max_body_size = errors.check(parse_size("--max-body-size", &cli.max_body_size));
        let upstream_timeout =
            errors.check(parse_duration("--upstream-timeout", &cli.upstream_timeout));
        let shutdown_grace = errors.check(parse_duration("--shutdown-grace", &cli.shutdown_grace));
        let upstream_ca_certs = match &cli.upstream_ca_file {
            None => Some(Vec::new()),
            Some(path) => errors.check(load_ca_file(path)),
        };
        let log_format = errors.check(match cli.log_format.as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("--log-format {other:?}: expected text or json")),
        });
        let worker_threads = match non_empty(&cli.worker_threads) {
            None => Some(None),
            Some(n) => errors.check(match n.parse::<usize>() {
                Ok(n) if (1..=1024).contains(&n) => Ok(Some(n)),
                _ => Err(format!(
                    "--worker-threads {n:?}: expected a number from 1 to 1024"
                )),
            }),
        };
        let drain_delay = errors.check(parse_duration("--drain-delay", &cli.drain_delay));
        if let (Some(delay), Some(grace)) = (drain_delay, shutdown_grace) {
            if delay >= grace {
                errors.check(Err::<(), _>(format!(
                    "--drain-delay {:?} must be shorter than --shutdown-grace {:?}",
                    cli.drain_delay, cli.shutdown_grace
                )));
            }
        }
        let retry_deadline = errors.check(parse_duration("--retry-deadline", &cli.retry_deadline));
        let throttle_status = errors.check(match cli.throttle_status.trim() {
            "503" => Ok(http::StatusCode::SERVICE_UNAVAILABLE),
            "429" => Ok(http::StatusCode::TOO_MANY_REQUESTS),
            other => Err(format!("--throttle-status {other:?}: expected 429 or 503")),
        });
        let max_in_flight_requests =
            errors.check(match cli.max_in_flight_requests.trim().parse::<usize>() {
                Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
                _ => Err(format!(
                    "--max-in-flight-requests {:?}: expected a number from 1 to 1000000",
                    cli.max_in_flight_requests
                )),
            });
        let max_in_flight_bytes = errors.check(parse_size(
            "--max-in-flight-bytes",
            &cli.max_in_flight_bytes,
        ));
        if let (Some(bytes), Some(body)) = (max_in_flight_bytes, max_body_size) {
            if bytes < body {
                errors.check(Err::<(), _>(format!(
                    "--max-in-flight-bytes {:?} is smaller than --max-body-size {:?}: \
                     a largest-size request could never be admitted",
                    cli.max_in_flight_bytes, cli.max_body_size
                )));
            }
        }
        if let Some(body) = max_body_size {
            if body > u64::from(u32::MAX) {
                errors.check(Err::<(), _>(
                    "--max-body-size must be below 4GiB".to_string(),
                ));
            }
        }
        let client_header_timeout = errors.check(parse_duration(
            "--client-header-timeout",
            &cli.client_header_timeout,
        ));
        let client_body_timeout = errors.check(parse_duration(
            "--client-body-timeout",
            &cli.client_body_timeout,
        ));
        for (flag, value) in [
            ("--retry-deadline", retry_deadline),
            ("--client-header-timeout", client_header_timeout),
            ("--client-body-timeout", client_body_timeout),
        ] {
            if value.is_some_and(|d| d.is_zero()) {
                errors.check(Err::<(), _>(format!("{flag} must be greater than zero")));
            }
        }
        if let Some(0) = upstream_timeout.map(|d| d.as_millis()) {
            errors.check(Err::<(), _>(
                "--upstream-timeout must be greater than zero".to_string(),
            ));
        }
        if let Some(0) = max_body_size {
            errors.check(Err::<(), _>(
                "--max-body-size must be greater than zero".to_string(),
            ));
        }

        let inbound_auth = errors.check(inbound_auth(cli));
        let tls = errors.check(match (&cli.tls_cert_file, &cli.tls_key_file, &cli.tls_client_ca_file) {
            (None, None, None) => Ok(None),
            (Some(cert), Some(key), client_ca) => {
                let files = crate::tls::TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    client_ca: client_ca.clone(),
                };
                crate::tls::build(&files).map(|_| Some(files))
            }
            _ => Err("--tls-cert-file and --tls-key-file go together (and --tls-client-ca-file needs both)".to_string()),
        });
        let max_decoded_size =
            errors.check(parse_size("--max-decoded-size", &cli.max_decoded_size));
        if let Some(0) = max_decoded_size {
            errors.check(Err::<(), _>(
                "--max-decoded-size must be greater than zero".to_string(),
            ));
        }
        let external_labels = parse_external_labels(&cli.external_labels, &mut errors);
        let accounting = errors.check(match cli.accounting.trim() {
            "on" => Ok(true),
            "off" => Ok(false),
            other => Err(format!("--accounting {other:?}: expected on or off")),
        });
        let routes = match routes {
            Some(mut routes) if cli.enable_query => {
                add_query_endpoints(&mut routes, cli.config.is_some(), &mut errors);
                Some(routes)
            }
            other => other,
        };

        if !errors.0.is_empty() {
            return Err(ConfigErrors(errors.0));
        }
        // Every value below is `Some`: each `None` pushed an error above.
        Ok(Config {
            listen: listen.expect("validated"),
            routes: routes.expect("validated"),
            sts_endpoint,
            max_body_size: max_body_size.expect("validated"),
            upstream_timeout: upstream_timeout.expect("validated"),
            upstream_ca_certs: upstream_ca_certs.expect("validated"),
            log_format: log_format.expect("validated"),
            worker_threads: worker_threads.expect("validated"),
            shutdown_grace: shutdown_grace.expect("validated"),
            drain_delay: drain_delay.expect("validated"),
            retry_deadline: retry_deadline.expect("validated"),
            throttle_status: throttle_status.expect("validated"),
            max_in_flight_requests: max_in_flight_requests.expect("validated"),
            max_in_flight_bytes: max_in_flight_bytes.expect("validated"),
            client_header_timeout: client_header_timeout.expect("validated"),
            client_body_timeout: client_body_timeout.expect("validated"),
            inbound_auth: inbound_auth.expect("validated"),
            tls: tls.expect("validated"),
            remote_write: crate::remote_write::Settings {
                validate: cli.validate,
                max_decoded_size: max_decoded_size.expect("validated"),
                external_labels: external_labels.expect("validated"),
                accounting: accounting.expect("validated"),
            },
            enable_query: cli.enable_query,
        })
    }
}

/// `--enable-query`: each route's query endpoint is its workspace's, derived from its
/// remote-write URL, and its query paths are `<prefix>/api/v1/...` — no prefix for the flags'
/// route; a routes-file route's path without its `/api/v1/write` (or `/remote_write`) ending.
fn add_query_endpoints(routes: &mut [RouteConfig], from_file: bool, errors: &mut ErrorList) {
    let mut prefixes: Vec<(String, &'static str)> = Vec::new();
    for route in routes.iter_mut() {
        let whose = if from_file {
            format!("route {:?}: ", route.name)
        } else {
            String::new()
        };
        route.query = errors.check(
            crate::query::QueryTarget::from_upstream(&route.upstream).map_err(|why| {
                let url = if from_file {
                    "upstream_url"
                } else {
                    "the --upstream-url"
                };
                format!("{whose}--enable-query: {url} {why}")
            }),
        );
        if !from_file {
            // No prefix, and the workspace's own (`/workspaces/<id>`): a data source URL
            // written for aws-sigv4-proxy keeps working, as the upstream path does for writes.
            route.query_prefixes = std::iter::once(String::new())
                .chain(route.query.as_ref().map(|q| q.base_path().to_string()))
                .collect();
            continue;
        }
        let path = &route.paths[0].path;
        let Some(prefix) = ["/api/v1/write", "/api/v1/remote_write"]
            .iter()
            .find_map(|end| path.strip_suffix(end))
        else {
            errors.check(Err::<(), _>(format!(
                "{whose}--enable-query needs a path ending in /api/v1/write (or \
                 /api/v1/remote_write), the query paths being the same prefix + /api/v1/query etc.; \
                 {path:?} does not"
            )));
            continue;
        };
        if let Some((_, other)) = prefixes.iter().find(|(p, _)| p == prefix) {
            errors.check(Err::<(), _>(format!(
                "{whose}--enable-query: its query paths {prefix}/api/v1/... would be route \
                 {other:?}'s too"
            )));
        }
        prefixes.push((prefix.to_string(), route.name));
        route.query_prefixes = vec![prefix.to_string()];
    }
}

/// The single route the flags describe: the workspace of `--upstream-url`, answered on the
/// standard write paths and on the upstream's own path.
fn flags_route(
    cli: &Cli,
    env: &Environment,
    session_name: Option<String>,
    session_duration: Option<Duration>,
    errors: &mut ErrorList,
) -> Option<Vec<RouteConfig>> {
    let upstream = errors.check(match non_empty(&cli.upstream_url) {
            None => Err("--upstream-url (or --config) is required (the workspace's remote-write URL, \
                 e.g. https://aps-workspaces.us-east-1.amazonaws.com/workspaces/ws-.../api/v1/remote_write)"
                .to_string()),
            Some(url) => parse_upstream("--upstream-url", url),
        });
    let region = match non_empty(&cli.region) {
        Some(r) => errors.check(validate_region("--region", r).map(|_| r.to_string())),
        None => {
            let inferred = upstream
                .as_ref()
                .and_then(|u| u.uri.host())
                .and_then(region_from_host);
            match inferred.or_else(|| env.aws_region.clone()) {
                Some(r) => Some(r),
                None => {
                    // Only worth a separate message when the URL itself was fine.
                    if upstream.is_some() {
                        errors.check(Err::<(), _>(
                            "--region is required: it cannot be inferred from the upstream host \
                                 and AWS_REGION is not set"
                                .to_string(),
                        ));
                    }
                    None
                }
            }
        }
    };
    let role_arn =
        non_empty(&cli.role_arn).and_then(|arn| errors.check(validate_role_arn("--role-arn", arn)));
    let external_id = non_empty(&cli.external_id).map(str::to_string);
    if let Some(id) = &external_id {
        errors.check(validate_external_id("--external-id", id));
        if cli.role_arn.is_none() {
            errors.check(Err::<(), _>(
                    "--external-id is set but --role-arn is not: an ExternalId only applies to AssumeRole"
                        .to_string(),
                ));
        }
    }
    let upstream = upstream?;
    let role = match role_arn {
        Some(arn) => Some(RoleConfig {
            arn,
            external_id,
            session_name: session_name?,
            session_duration: session_duration?,
        }),
        None => None,
    };
    let mut paths: Vec<RoutePath> = crate::proxy::WRITE_PATHS
        .iter()
        .map(|p| RoutePath {
            path: p.to_string(),
            label: p,
        })
        .collect();
    if !paths.iter().any(|p| p.path == upstream.path) {
        paths.push(RoutePath {
            path: upstream.path.clone(),
            label: "upstream_path",
        });
    }
    Some(vec![RouteConfig {
        name: DEFAULT_ROUTE,
        paths,
        region: region?,
        upstream,
        role,
        inbound_auth: None,
        query: None,
        query_prefixes: Vec::new(),
    }])
}

fn inbound_auth(cli: &Cli) -> Result<Option<InboundAuth>, String> {
    inbound_auth_from(
        &AuthKeys::FLAGS,
        cli.inbound_bearer_token_file.as_deref(),
        non_empty(&cli.inbound_basic_auth_user),
        cli.inbound_basic_auth_password_file.as_deref(),
    )
}

/// How the inbound-auth settings are called where they were given (flags or a routes file),
/// so messages name what the user wrote.
pub(crate) struct AuthKeys {
    pub bearer: &'static str,
    pub user: &'static str,
    pub password: &'static str,
    /// Prefix of every message (e.g. `routes.toml:12: `).
    pub at: String,
}

impl AuthKeys {
    const FLAGS: AuthKeys = AuthKeys {
        bearer: "--inbound-bearer-token-file",
        user: "--inbound-basic-auth-user",
        password: "--inbound-basic-auth-password-file",
        at: String::new(),
    };
}

/// Validates one inbound-auth setting: bearer token file, or basic-auth user and password
/// file; each file must be readable now.
pub(crate) fn inbound_auth_from(
    keys: &AuthKeys,
    bearer: Option<&std::path::Path>,
    user: Option<&str>,
    password: Option<&std::path::Path>,
) -> Result<Option<InboundAuth>, String> {
    let AuthKeys {
        bearer: bearer_key,
        user: user_key,
        password: password_key,
        at,
    } = keys;
    match (bearer, user, password) {
        (None, None, None) => Ok(None),
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(format!(
            "{at}{bearer_key} and {user_key}/{password_key} are exclusive: choose one"
        )),
        (Some(file), None, None) => {
            crate::auth::read_secret_file(file)
                .map_err(|e| format!("{at}{bearer_key} {}: {e}", file.display()))?;
            Ok(Some(InboundAuth::Bearer {
                token_file: file.to_path_buf(),
            }))
        }
        (None, Some(user), Some(file)) => {
            if user.contains(':') {
                return Err(format!("{at}{user_key} must not contain ':'"));
            }
            crate::auth::read_secret_file(file)
                .map_err(|e| format!("{at}{password_key} {}: {e}", file.display()))?;
            Ok(Some(InboundAuth::Basic {
                user: user.to_string(),
                password_file: file.to_path_buf(),
            }))
        }
        _ => Err(format!("{at}{user_key} and {password_key} go together")),
    }
}

/// Collects errors while validation carries on.
#[derive(Default)]
struct ErrorList(Vec<String>);

impl ErrorList {
    fn check<T>(&mut self, r: Result<T, String>) -> Option<T> {
        r.map_err(|e| self.0.push(e)).ok()
    }
}

/// `NAME=VALUE` pairs from `--external-label` (blank entries, e.g. from a trailing comma in
/// the environment variable, are ignored); every problem is added to `errors`.
fn parse_external_labels(
    raw: &[String],
    errors: &mut ErrorList,
) -> Option<crate::remote_write::ExternalLabels> {
    let mut pairs = Vec::new();
    let mut ok = true;
    for entry in raw.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        match entry.split_once('=') {
            Some((name, value)) => pairs.push((name.trim().to_string(), value.to_string())),
            None => {
                ok = false;
                errors.check(Err::<(), _>(format!(
                    "--external-label {entry:?}: expected NAME=VALUE"
                )));
            }
        }
    }
    match crate::remote_write::ExternalLabels::new(pairs) {
        Ok(labels) if ok => Some(labels),
        Ok(_) => None,
        Err(problems) => {
            for p in problems {
                errors.check(Err::<(), _>(p));
            }
            None
        }
    }
}

fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

pub(crate) fn parse_upstream(what: &str, url: &str) -> Result<UpstreamTarget, String> {
    let err = |why: &str| format!("{what} {url:?}: {why}");
    let uri: Uri = url.parse().map_err(|e| err(&format!("not a URL ({e})")))?;
    let plaintext = match uri.scheme_str() {
        Some("https") => false,
        Some("http") => true,
        _ => {
            return Err(err(
                "scheme must be https:// (or http:// for local testing)",
            ));
        }
    };
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| err("missing host"))?;
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(err("credentials in the URL are not supported"));
    }
    if uri.query().is_some() {
        return Err(err("a query string is not expected in a remote-write URL"));
    }
    let default_port = if plaintext { 80 } else { 443 };
    // Drop an explicit default port: the signed `host` must equal the `Host` hyper sends.
    let authority = match uri.port_u16() {
        Some(p) if p != default_port => format!("{host}:{p}"),
        _ => host.to_string(),
    };
    let path = match uri.path() {
        "" => "/".to_string(),
        p => p.to_string(),
    };
    let normalised: Uri = format!(
        "{}://{authority}{path}",
        uri.scheme_str().unwrap_or("https")
    )
    .parse()
    .map_err(|e| err(&format!("not a URL ({e})")))?;
    Ok(UpstreamTarget {
        host_header: HeaderValue::from_str(&authority).map_err(|_| err("invalid host"))?,
        uri: normalised,
        path,
        plaintext,
    })
}

/// Region of an AMP endpoint host: `aps-workspaces.<region>.amazonaws.com`,
/// `aps-workspaces-fips.<region>.amazonaws.com`, VPC endpoint names such as
/// `vpce-0abc.aps-workspaces.<region>.vpce.amazonaws.com`, and the `.amazonaws.com.cn` partition.
pub fn region_from_host(host: &str) -> Option<String> {
    let labels: Vec<&str> = host.split('.').collect();
    let i = labels.iter().position(|l| {
        l.eq_ignore_ascii_case("aps-workspaces") || l.eq_ignore_ascii_case("aps-workspaces-fips")
    })?;
    let region = labels.get(i + 1)?;
    let rest = &labels[i + 2..];
    let is_aws = rest.first().is_some_and(|l| *l == "amazonaws")
        || (rest.first().is_some_and(|l| *l == "vpce")
            && rest.get(1).is_some_and(|l| *l == "amazonaws"));
    (is_aws && validate_region("region", region).is_ok()).then(|| region.to_ascii_lowercase())
}

pub(crate) fn validate_region(what: &str, region: &str) -> Result<(), String> {
    // e.g. us-east-1, eu-central-2, us-gov-west-1, cn-north-1, ap-southeast-5
    let parts: Vec<&str> = region.split('-').collect();
    let ok = parts.len() >= 3
        && parts
            .last()
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} {region:?}: not an AWS region name (e.g. us-east-1)"
        ))
    }
}

pub(crate) fn validate_role_arn(what: &str, arn: &str) -> Result<String, String> {
    // arn:<partition>:iam::<12-digit account>:role/<path/name>
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5]
            .strip_prefix("role/")
            .is_some_and(|n| !n.is_empty());
    if ok {
        Ok(arn.to_string())
    } else {
        Err(format!(
            "{what} {arn:?}: expected arn:aws:iam::<12-digit account id>:role/<name>"
        ))
    }
}

pub(crate) fn validate_external_id(what: &str, id: &str) -> Result<(), String> {
    // STS: 2-1224 characters of [\w+=,.@:/-].
    let ok = (2..=1224).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@:/-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what}: must be 2 to 1224 characters of A-Z a-z 0-9 _ + = , . @ : / -"
        ))
    }
}

fn is_session_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)
}

pub(crate) fn validate_session_name(what: &str, name: &str) -> Result<(), String> {
    if (SESSION_NAME_MIN..=SESSION_NAME_MAX).contains(&name.len())
        && name.chars().all(is_session_name_char)
    {
        Ok(())
    } else {
        Err(format!(
            "{what} {name:?}: must be 2 to 64 characters of A-Z a-z 0-9 _ + = , . @ -"
        ))
    }
}

/// `amp-rw-proxy-<hostname>`, sanitised for STS. Long names keep their *end*: in Kubernetes
/// the distinguishing part of a pod name (ReplicaSet hash, ordinal) is the suffix.
pub fn default_session_name(hostname: &str) -> String {
    let clean: String = hostname
        .chars()
        .map(|c| if is_session_name_char(c) { c } else { '-' })
        .collect();
    let room = SESSION_NAME_MAX - SESSION_NAME_PREFIX.len();
    let tail = if clean.len() > room {
        &clean[clean.len() - room..]
    } else {
        &clean[..]
    };
    let tail = if tail.is_empty() { "unknown" } else { tail };
    format!("{SESSION_NAME_PREFIX}{tail}")
}

pub(crate) fn parse_duration(flag: &str, value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value.trim())
        .map_err(|e| format!("{flag} {value:?}: {e} (expected e.g. 30s, 15m, 1h)"))
}

/// Parses `32MiB`, `512KiB`, `10MB`, `1048576`.
pub fn parse_size(flag: &str, value: &str) -> Result<u64, String> {
    let v = value.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "Ki" => 1 << 10,
        "MiB" | "Mi" => 1 << 20,
        "GiB" | "Gi" => 1 << 30,
        "KB" | "kB" | "K" | "k" => 1_000,
        "MB" | "M" => 1_000_000,
        "GB" | "G" => 1_000_000_000,
        _ => {
            return Err(format!(
                "{flag} {value:?}: unknown unit (use B, KiB, MiB, GiB, KB, MB, GB)"
            ));
        }
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("{flag} {value:?}: expected a size such as 32MiB"))
}

fn load_ca_file(path: &PathBuf) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("--upstream-ca-file {}: {e}", path.display()))?
        .collect();
    match certs {
        Ok(c) if !c.is_empty() => {
            // Check now that each is usable as a trust anchor, so a bad file is a config error
            // (exit 64, reported with the others) rather than a failure after startup.
            let mut store = rustls::RootCertStore::empty();
            for (i, cert) in c.iter().enumerate() {
                store.add(cert.clone()).map_err(|e| {
                    format!(
                        "--upstream-ca-file {}: certificate #{}: {e}",
                        path.display(),
                        i + 1
                    )
                })?;
            }
            Ok(c)
        }
        Ok(_) => Err(format!(
            "--upstream-ca-file {}: no PEM certificates found",
            path.display()
        )),
        Err(e) => Err(format!("--upstream-ca-file {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Environment {
        Environment {
            aws_region: None,
            hostname: "host-1".into(),
        }
    }

    fn cli(args: &[&str]) -> Cli {
        let mut all = vec!["amp-rw-proxy"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).expect("clap parses")
    }

    const URL: &str =
        "https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-1/api/v1/remote_write";

    #[test]
    fn enable_query_derives_the_workspace_query_endpoint() {
        let off = Config::from_cli(&cli(&["--upstream-url", URL]), &env()).unwrap();
        assert!(off.routes[0].query.is_none());
        let on =
            Config::from_cli(&cli(&["--upstream-url", URL, "--enable-query"]), &env()).unwrap();
        assert_eq!(
            on.routes[0].query.as_ref().unwrap().base_path(),
            "/workspaces/ws-1"
        );
        assert_eq!(on.routes[0].query_prefixes, ["", "/workspaces/ws-1"]);
        let odd = "https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-1/api/v1/write";
        let err =
            Config::from_cli(&cli(&["--upstream-url", odd, "--enable-query"]), &env()).unwrap_err();
        assert_eq!(err.0.len(), 1, "{err}");
        assert!(err.0[0].contains("--enable-query"), "{err}");
        // Without --enable-query that URL is fine.
        assert!(Config::from_cli(&cli(&["--upstream-url", odd]), &env()).is_ok());
    }

    #[test]
    fn region_is_inferred_from_amp_hosts() {
        let cases = [
            ("aps-workspaces.us-east-1.amazonaws.com", Some("us-east-1")),
            (
                "aps-workspaces-fips.us-gov-west-1.amazonaws.com",
                Some("us-gov-west-1"),
            ),
            (
                "vpce-0abc-xyz.aps-workspaces.eu-central-1.vpce.amazonaws.com",
                Some("eu-central-1"),
            ),
            (
                "aps-workspaces.cn-north-1.amazonaws.com.cn",
                Some("cn-north-1"),
            ),
            ("aps-workspaces.evil.example.com", None),
            ("aps-workspaces.us-east-1.example.com", None),
            ("127.0.0.1", None),
            ("example.com", None),
        ];
        for (host, want) in cases {
            assert_eq!(region_from_host(host).as_deref(), want, "{host}");
        }
    }

    #[test]
    fn minimal_config_uses_documented_defaults() {
        let c = Config::from_cli(&cli(&["--upstream-url", URL]), &env()).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.routes[0].region, "eu-west-1");
        assert!(c.routes[0].role.is_none());
        assert_eq!(c.max_body_size, 32 << 20);
        assert_eq!(c.upstream_timeout, Duration::from_secs(30));
        assert_eq!(c.shutdown_grace, Duration::from_secs(25));
        assert_eq!(c.drain_delay, Duration::from_secs(5));
        assert_eq!(c.retry_deadline, Duration::from_secs(20));
        assert_eq!(c.throttle_status, http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(c.max_in_flight_requests, 256);
        assert_eq!(c.max_in_flight_bytes, 64 << 20);
        assert_eq!(c.client_header_timeout, Duration::from_secs(30));
        assert_eq!(c.client_body_timeout, Duration::from_secs(30));
        assert_eq!(
            c.routes[0].upstream.path,
            "/workspaces/ws-1/api/v1/remote_write"
        );
        assert_eq!(
            c.routes[0].upstream.host_header,
            "aps-workspaces.eu-west-1.amazonaws.com"
        );
    }

    #[test]
    fn role_defaults() {
        let c = Config::from_cli(
            &cli(&[
                "--upstream-url",
                URL,
                "--role-arn",
                "arn:aws:iam::111111111111:role/account_a_role",
            ]),
            &env(),
        )
        .unwrap();
        let role = c.routes[0].role.clone().unwrap();
        assert_eq!(role.session_name, "amp-rw-proxy-host-1");
        assert_eq!(role.session_duration, Duration::from_secs(3600));
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let errs = Config::from_cli(
            &cli(&[
                "--listen",
                "nonsense",
                "--session-duration",
                "5m",
                "--role-arn",
                "arn:aws:s3:::bucket",
                "--max-body-size",
                "12 parsecs",
                "--log-format",
                "xml",
                "--session-name",
                "has space",
            ]),
            &env(),
        )
        .unwrap_err();
        let all = errs.0.join("\n");
        for flag in [
            "--listen",
            "--upstream-url",
            "--session-duration",
            "--role-arn",
            "--max-body-size",
            "--log-format",
            "--session-name",
        ] {
            assert!(all.contains(flag), "no error for {flag} in:\n{all}");
        }
    }

    #[test]
    fn region_falls_back_to_aws_region_then_errors() {
        let local = ["--upstream-url", "http://127.0.0.1:9000/api/v1/write"];
        let e = Environment {
            aws_region: Some("ap-south-1".into()),
            hostname: "h".into(),
        };
        assert_eq!(
            Config::from_cli(&cli(&local), &e).unwrap().routes[0].region,
            "ap-south-1"
        );
        let errs = Config::from_cli(&cli(&local), &env()).unwrap_err();
        assert!(errs.0[0].contains("--region"), "{errs}");
        // An explicit flag beats the host.
        let c = Config::from_cli(
            &cli(&["--upstream-url", URL, "--region", "us-west-2"]),
            &env(),
        )
        .unwrap();
        assert_eq!(c.routes[0].region, "us-west-2");
    }

    #[test]
    fn upstream_url_is_normalised_and_checked() {
        let ok = parse_upstream("--upstream-url", "https://h.example:443/p").unwrap();
        assert_eq!(ok.host_header, "h.example");
        assert_eq!(ok.uri.to_string(), "https://h.example/p");
        let port = parse_upstream("--upstream-url", "http://127.0.0.1:9000").unwrap();
        assert_eq!(port.host_header, "127.0.0.1:9000");
        assert_eq!(port.path, "/");
        assert!(port.plaintext);
        for bad in [
            "ftp://h/p",
            "/just/a/path",
            "https://user:pw@h/p",
            "https://h/p?x=1",
            "not a url",
        ] {
            assert!(
                parse_upstream("--upstream-url", bad).is_err(),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn session_names_fit_sts_rules() {
        assert_eq!(
            default_session_name("node.local"),
            "amp-rw-proxy-node.local"
        );
        assert_eq!(
            default_session_name("we ird/name"),
            "amp-rw-proxy-we-ird-name"
        );
        let pod = "prometheus-kube-prometheus-stack-prometheus-shard-with-a-very-long-name-0";
        let name = default_session_name(pod);
        assert_eq!(name.len(), 64);
        assert!(name.starts_with("amp-rw-proxy-"));
        assert!(
            name.ends_with("-long-name-0"),
            "keeps the distinguishing suffix: {name}"
        );
        assert!(validate_session_name("--session-name", &name).is_ok());
        assert_eq!(default_session_name(""), "amp-rw-proxy-unknown");
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("f", "32MiB"), Ok(32 << 20));
        assert_eq!(parse_size("f", "512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("f", "10MB"), Ok(10_000_000));
        assert_eq!(parse_size("f", "1048576"), Ok(1_048_576));
        assert!(parse_size("f", "MiB").is_err());
        assert!(parse_size("f", "99999999999GiB").is_err());
    }

    #[test]
    fn a_broken_ca_file_is_a_config_error() {
        let dir = std::env::temp_dir().join(format!("amp-rw-proxy-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let broken = dir.join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no pem here").unwrap();
        for (file, why) in [
            (&broken, "certificate #1"),
            (&empty, "no PEM certificates"),
            (&dir.join("missing.pem"), ""),
        ] {
            let args = [
                "--upstream-url",
                URL,
                "--upstream-ca-file",
                file.to_str().unwrap(),
            ];
            let errs = Config::from_cli(&cli(&args), &env()).unwrap_err();
            assert!(
                errs.0[0].contains("--upstream-ca-file") && errs.0[0].contains(why),
                "{errs}"
            );
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn resilience_settings_are_checked_together() {
        let errs = Config::from_cli(
            &cli(&[
                "--upstream-url",
                URL,
                "--throttle-status",
                "500",
                "--max-in-flight-bytes",
                "1MiB",
                "--drain-delay",
                "30s",
                "--retry-deadline",
                "0s",
                "--max-in-flight-requests",
                "0",
            ]),
            &env(),
        )
        .unwrap_err();
        let all = errs.0.join("\n");
        for flag in [
            "--throttle-status",
            "--max-in-flight-bytes",
            "--drain-delay",
            "--retry-deadline",
            "--max-in-flight-requests",
        ] {
            assert!(all.contains(flag), "no error for {flag} in:\n{all}");
        }
    }

    #[test]
    fn inbound_auth_flags_are_checked() {
        let dir =
            std::env::temp_dir().join(format!("amp-rw-proxy-cfg-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let token = dir.join("token");
        std::fs::write(&token, "t0ken").unwrap();
        let empty = dir.join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let t = token.to_str().unwrap();
        let ok = Config::from_cli(
            &cli(&["--upstream-url", URL, "--inbound-bearer-token-file", t]),
            &env(),
        )
        .unwrap();
        assert_eq!(
            ok.inbound_auth,
            Some(InboundAuth::Bearer {
                token_file: token.clone()
            })
        );
        let cases: Vec<Vec<&str>> = vec![
            vec!["--inbound-bearer-token-file", empty.to_str().unwrap()],
            vec!["--inbound-bearer-token-file", "/nonexistent/token"],
            vec![
                "--inbound-bearer-token-file",
                t,
                "--inbound-basic-auth-user",
                "u",
            ],
            vec!["--inbound-basic-auth-user", "u"],
            vec![
                "--inbound-basic-auth-user",
                "a:b",
                "--inbound-basic-auth-password-file",
                t,
            ],
        ];
        for extra in cases {
            let mut args = vec!["--upstream-url", URL];
            args.extend(&extra);
            let errs = Config::from_cli(&cli(&args), &env()).unwrap_err();
            assert!(
                errs.0.iter().any(|e| e.contains("--inbound")),
                "{extra:?}: {errs}"
            );
            assert!(!errs.to_string().contains("t0ken"), "secret in the error");
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn remote_write_defaults_are_off_and_32mib() {
        let c = Config::from_cli(&cli(&["--upstream-url", URL]), &env()).unwrap();
        assert!(!c.remote_write.validate);
        assert_eq!(c.remote_write.max_decoded_size, 32 << 20);
        assert!(c.remote_write.external_labels.is_empty());
        assert!(!c.remote_write.accounting, "--accounting defaults to off");
        assert!(c.remote_write.is_blind());
        let on = Config::from_cli(&cli(&["--upstream-url", URL, "--accounting", "on"]), &env());
        assert!(on.unwrap().remote_write.accounting);
        let bad = Config::from_cli(
            &cli(&["--upstream-url", URL, "--accounting", "yes"]),
            &env(),
        );
        assert!(bad.unwrap_err().0[0].contains("--accounting \"yes\": expected on or off"));
        let c = Config::from_cli(
            &cli(&[
                "--upstream-url",
                URL,
                "--validate",
                "--max-decoded-size",
                "1MiB",
                "--external-label",
                "region=eu",
                "--external-label",
                "cluster=a",
            ]),
            &env(),
        )
        .unwrap();
        assert!(c.remote_write.validate);
        assert_eq!(c.remote_write.max_decoded_size, 1 << 20);
        let labels: Vec<_> = c.remote_write.external_labels.pairs().collect();
        assert_eq!(
            labels,
            [("cluster", "a"), ("region", "eu")],
            "sorted by name"
        );
    }

    #[test]
    fn bad_external_labels_are_all_reported_with_the_other_errors() {
        let errs = Config::from_cli(
            &cli(&[
                "--upstream-url",
                URL,
                "--external-label",
                "__name__=x",
                "--external-label",
                "1bad=x",
                "--external-label",
                "novalue",
                "--external-label",
                "dup=a",
                "--external-label",
                "dup=b",
                "--external-label",
                "empty=",
                "--max-decoded-size",
                "lots",
                "--listen",
                "nope",
            ]),
            &env(),
        )
        .unwrap_err();
        let all = errs.0.join("\n");
        for needle in [
            "__name__=x: __name__ cannot be set",
            "\"1bad\": invalid label name",
            "\"novalue\": expected NAME=VALUE",
            "dup: given more than once",
            "empty=: empty value",
            "--max-decoded-size",
            "--listen",
        ] {
            assert!(all.contains(needle), "no {needle:?} in:\n{all}");
        }
        // A reserved-looking name other than __name__ is fine (e.g. Cortex's __replica__).
        assert!(
            Config::from_cli(
                &cli(&["--upstream-url", URL, "--external-label", "__replica__=r1"]),
                &env()
            )
            .is_ok()
        );
    }

    #[test]
    fn external_labels_come_comma_separated_from_the_environment() {
        // clap reads the variable itself; parse with an explicit env via try_parse_from is not
        // possible, so check the delimiter on the command line, which shares the parser.
        let c = Config::from_cli(
            &cli(&["--upstream-url", URL, "--external-label", "b=2,a=1,"]),
            &env(),
        )
        .unwrap();
        let labels: Vec<_> = c.remote_write.external_labels.pairs().collect();
        assert_eq!(labels, [("a", "1"), ("b", "2")]);
    }

    #[test]
    fn external_id_needs_a_role() {
        let errs = Config::from_cli(
            &cli(&["--upstream-url", URL, "--external-id", "abc"]),
            &env(),
        )
        .unwrap_err();
        assert!(errs.0.iter().any(|e| e.contains("--external-id")), "{errs}");
    }

    #[test]
    fn external_id_is_not_in_debug_output() {
        let c = Config::from_cli(
            &cli(&[
                "--upstream-url",
                URL,
                "--role-arn",
                "arn:aws:iam::111111111111:role/r",
                "--external-id",
                "very-private-id",
            ]),
            &env(),
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("very-private-id"));
    }

    #[test]
    fn the_flags_describe_one_route_on_the_standard_paths_and_the_upstream_path() {
        let c = Config::from_cli(&cli(&["--upstream-url", URL]), &env()).unwrap();
        assert_eq!(c.routes.len(), 1);
        let r = &c.routes[0];
        assert_eq!(r.name, DEFAULT_ROUTE);
        let paths: Vec<(&str, &str)> = r.paths.iter().map(|p| (p.path.as_str(), p.label)).collect();
        assert_eq!(
            paths,
            [
                ("/api/v1/write", "/api/v1/write"),
                ("/api/v1/remote_write", "/api/v1/remote_write"),
                ("/workspaces/ws-1/api/v1/remote_write", "upstream_path"),
            ]
        );
        // An upstream path equal to a standard one is not listed twice.
        let local = Config::from_cli(
            &cli(&[
                "--upstream-url",
                "http://127.0.0.1:9/api/v1/write",
                "--region",
                "us-east-1",
            ]),
            &env(),
        )
        .unwrap();
        assert_eq!(local.routes[0].paths.len(), 2);
    }

    #[test]
    fn a_routes_file_excludes_the_route_flags_and_its_errors_join_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("routes.toml");
        std::fs::write(
            &file,
            "[[route]]\nname = \"a\"\npath = \"/a\"\nupstream_url = \"https://x\"\nrole_arn = \"nope\"\n",
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let errs = Config::from_cli(
            &cli(&[
                "--config",
                f,
                "--upstream-url",
                URL,
                "--role-arn",
                "x",
                "--log-format",
                "xml",
            ]),
            &env(),
        )
        .unwrap_err();
        let all = errs.0.join("\n");
        assert!(
            all.contains("--upstream-url and --config exclude each other"),
            "{all}"
        );
        assert!(
            all.contains("--role-arn and --config exclude each other"),
            "{all}"
        );
        assert!(all.contains("--log-format"), "{all}");
        assert!(
            all.contains(&format!("{f}:5:12: role_arn \"nope\"")),
            "{all}"
        );
        assert!(
            all.contains(&format!("{f}:4:16: region is required")),
            "{all}"
        );
        assert_eq!(errs.0.len(), 5, "{all}");

        let missing =
            Config::from_cli(&cli(&["--config", "/nonexistent/routes.toml"]), &env()).unwrap_err();
        assert!(
            missing.0[0].starts_with("--config /nonexistent/routes.toml: "),
            "{missing}"
        );
    }

    #[test]
    fn with_the_read_path_routes_file_paths_give_distinct_query_prefixes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("routes.toml");
        let route = |name: &str, path: &str| {
            format!("[[route]]\nname = \"{name}\"\npath = \"{path}\"\nupstream_url = \"{URL}\"\n")
        };
        let write = |routes: &[(&str, &str)]| {
            let text: String = routes.iter().map(|(n, p)| route(n, p)).collect();
            std::fs::write(&file, text).unwrap();
        };
        let f = file.to_str().unwrap();
        write(&[
            ("a", "/a/api/v1/write"),
            ("b", "/b/api/v1/remote_write"),
            ("c", "/api/v1/write"),
        ]);
        let c = Config::from_cli(&cli(&["--config", f, "--enable-query"]), &env()).unwrap();
        let prefixes: Vec<&[String]> = c.routes.iter().map(|r| &r.query_prefixes[..]).collect();
        assert_eq!(prefixes, [["/a"], ["/b"], [""]]);
        assert!(c.routes.iter().all(|r| r.query.is_some()));

        write(&[
            ("a", "/a/api/v1/write"),
            ("b", "/a/api/v1/remote_write"),
            ("c", "/c/ingest"),
        ]);
        let errs = Config::from_cli(&cli(&["--config", f, "--enable-query"]), &env()).unwrap_err();
        let all = errs.0.join("\n");
        assert!(all.contains("route \"b\": --enable-query: its query paths /a/api/v1/... would be route \"a\"'s too"), "{all}");
        assert!(
            all.contains("route \"c\": --enable-query needs a path ending in /api/v1/write"),
            "{all}"
        );
        assert_eq!(errs.0.len(), 2, "{all}");
        // Without the read path these paths are fine.
        assert!(Config::from_cli(&cli(&["--config", f]), &env()).is_ok());
    }
}
