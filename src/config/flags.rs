//! The command line as clap parses it: every serving flag, each also an environment variable
//! `AMP_RW_PROXY_<FLAG>`. Values stay strings here; [`crate::config::Config::from_cli`]
//! validates them all at once.

use std::path::PathBuf;

use clap::Parser;

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

    /// Region to sign for. Default: taken from the upstream host when it is an AMP endpoint
    /// (aps-workspaces[-fips].<region>.amazonaws.com, the dual-stack .api.aws, a VPC endpoint
    /// name, .amazonaws.com.cn, GovCloud), else from AWS_REGION.
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

    /// STS endpoint override, e.g. an STS VPC endpoint
    /// (https://vpce-<id>.sts.<region>.vpce.amazonaws.com). AWS_ENDPOINT_URL_STS is honoured
    /// too. Overrides --sts-region, --sts-fips and --sts-dual-stack for the endpoint (the region
    /// is still the one signed for). [default: the regional endpoint, see --sts-region]
    #[arg(long, env = "AMP_RW_PROXY_STS_ENDPOINT")]
    pub sts_endpoint: Option<String>,

    /// Region whose regional STS endpoint AssumeRole goes to (sts.<region>.amazonaws.com, or
    /// .amazonaws.com.cn in China), independent of the workspace's region. [default: the
    /// region of the environment or profile (AWS_REGION) if it is in the workspace's partition,
    /// else the workspace's region]
    #[arg(long, env = "AMP_RW_PROXY_STS_REGION")]
    pub sts_region: Option<String>,

    /// Call STS on its FIPS endpoint (sts-fips.<region>.amazonaws.com); AWS_USE_FIPS_ENDPOINT=true
    /// does the same. [default: off]
    #[arg(long, env = "AMP_RW_PROXY_STS_FIPS")]
    pub sts_fips: bool,

    /// Call STS on its dual-stack (IPv4 and IPv6) endpoint (sts.<region>.api.aws);
    /// AWS_USE_DUALSTACK_ENDPOINT=true does the same. [default: off]
    #[arg(long, env = "AMP_RW_PROXY_STS_DUAL_STACK")]
    pub sts_dual_stack: bool,

    /// Forward proxy for every outbound connection, to the workspace and to STS alike, as
    /// http://[user:password@]host:port (port default 80): https:// destinations go through a
    /// CONNECT tunnel (TLS end to end), http:// ones are forwarded to it. Overrides
    /// HTTPS_PROXY, HTTP_PROXY and ALL_PROXY (read in upper or lower case when this is not
    /// set); NO_PROXY applies either way. The password is never logged. [default: none, or
    /// the environment's proxy variables]
    #[arg(
        long,
        env = "AMP_RW_PROXY_EGRESS_PROXY",
        value_name = "URL",
        hide_env_values = true
    )]
    pub egress_proxy: Option<String>,

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

    /// Also offer HTTP/2 to the workspace (by ALPN); without it the proxy speaks HTTP/1.1 to
    /// the workspace, one pooled connection per request in flight. HTTP/2 multiplexes every
    /// request over one connection, which leaves fewer idle connections after a burst, but
    /// costs 14–22 % more CPU per request, and 1,000 paced senders held the same memory over
    /// both (README, "TLS upstream and growth"). [default: off]
    #[arg(long, env = "AMP_RW_PROXY_UPSTREAM_HTTP2")]
    pub upstream_http2: bool,

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

    /// What to do when the workspace refuses a write for a limit that retrying cannot lift
    /// (active series per workspace or metric, labels per series, label length; AMP answers
    /// 400, older versions 429 with "limit ... exceeded"): `reject` answers the sender 400 with
    /// AMP's message, so it drops that batch and goes on with newer samples; `retry` treats it
    /// as throttling (retried, then --throttle-status), so the sender keeps retrying the same
    /// batch and waits until the quota is raised. Rate limits (ingestion rate, "Rate
    /// exceeded") are always retried.
    #[arg(
        long,
        env = "AMP_RW_PROXY_ON_LIMIT_EXCEEDED",
        default_value = "reject",
        value_name = "reject|retry"
    )]
    pub on_limit_exceeded: String,

    /// Requests handled at once; beyond this new requests get 503 + Retry-After at once,
    /// without their body being read. Also the most connections open to one workspace host
    /// (more could never be busy at once).
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
