//! [`Config::from_cli`]: every section of the flags validated in turn, every mistake collected.

use std::net::SocketAddr;
use std::time::Duration;

use http::{StatusCode, Uri};
use rustls_pki_types::CertificateDer;

use super::inbound::{AuthKeys, inbound_auth_from};
use super::paths::WRITE_PATHS;
use super::targets::{QueryTarget, parse_upstream, partition_of, region_from_host};
use super::validate::{
    ErrorList, MAX_SESSION_DURATION, MIN_SESSION_DURATION, default_session_name, load_ca_file,
    non_empty, parse_duration, parse_external_labels, parse_size, validate_external_id,
    validate_region, validate_role_arn, validate_session_name,
};
use super::{
    Cli, Config, ConfigErrors, DEFAULT_ROUTE, Environment, InboundAuth, LimitPolicy, LogFormat,
    RoleConfig, RouteConfig, RoutePath, routes_file, tls_files,
};
use crate::remote_write::Settings;

impl Config {
    /// Validates everything in `cli`, collecting every error instead of stopping at the first.
    pub fn from_cli(cli: &Cli, env: &Environment) -> Result<Config, ConfigErrors> {
        let mut errors = ErrorList::default();
        let listen = errors.check(
            cli.listen
                .parse::<SocketAddr>()
                .map_err(|e| format!("--listen {:?}: {e} (expected IP:PORT)", cli.listen)),
        );
        let routes = routes(cli, env, &mut errors);
        let sts_endpoint = sts_endpoint(cli, &mut errors);
        let sts_region = sts_region(cli, routes.as_deref(), &mut errors);
        let egress = match super::egress::resolve(non_empty(&cli.egress_proxy), &env.proxy) {
            Ok(e) => Some(e),
            Err(problems) => {
                errors.0.extend(problems);
                None
            }
        };
        let max_body_size = max_body_size(cli, &mut errors);
        let upstream = upstream(cli, &mut errors);
        let process = process(cli, &mut errors);
        let admission = admission(cli, max_body_size, &mut errors);
        let inbound_auth = errors.check(inbound_auth(cli));
        let tls = errors.check(tls_files::from_flags(cli));
        let remote_write = payload(cli, &mut errors);
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
        let (upstream, process, admission) = (
            upstream.expect("validated"),
            process.expect("validated"),
            admission.expect("validated"),
        );
        Ok(Config {
            listen: listen.expect("validated"),
            routes: routes.expect("validated"),
            sts_endpoint,
            sts_region,
            sts_fips: cli.sts_fips,
            sts_dual_stack: cli.sts_dual_stack,
            egress: egress.expect("validated"),
            max_body_size: max_body_size.expect("validated"),
            upstream_timeout: upstream.timeout,
            upstream_ca_certs: upstream.ca_certs,
            upstream_http2: cli.upstream_http2,
            log_format: process.log_format,
            worker_threads: process.worker_threads,
            shutdown_grace: process.shutdown_grace,
            drain_delay: process.drain_delay,
            retry_deadline: upstream.retry_deadline,
            throttle_status: upstream.throttle_status,
            on_limit_exceeded: upstream.on_limit_exceeded,
            max_in_flight_requests: admission.max_in_flight_requests,
            max_in_flight_bytes: admission.max_in_flight_bytes,
            client_header_timeout: admission.client_header_timeout,
            client_body_timeout: admission.client_body_timeout,
            inbound_auth: inbound_auth.expect("validated"),
            tls: tls.expect("validated"),
            remote_write: remote_write.expect("validated"),
            enable_query: cli.enable_query,
        })
    }
}

/// The routes: the routes file's (`--config`), or the one the flags describe; with the session
/// settings every route inherits.
fn routes(cli: &Cli, env: &Environment, errors: &mut ErrorList) -> Option<Vec<RouteConfig>> {
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
        Some(name) => {
            errors.check(validate_session_name("--session-name", name).map(|_| name.to_string()))
        }
        None => Some(default_session_name(&env.hostname)),
    };
    let Some(file) = &cli.config else {
        return flags_route(cli, env, session_name, session_duration, errors);
    };
    for (flag, set) in [
        ("--upstream-url", cli.upstream_url.is_some()),
        ("--region", cli.region.is_some()),
        ("--role-arn", cli.role_arn.is_some()),
        ("--external-id", cli.external_id.is_some()),
    ] {
        if set {
            errors.check(Err::<(), _>(format!(
                "{flag} and --config exclude each other: with a routes file, set it on each route"
            )));
        }
    }
    let defaults = routes_file::RouteDefaults {
        session_name,
        session_duration,
        aws_region: env.aws_region.clone(),
    };
    routes_file::load(file, &defaults, &mut errors.0)
}

/// `--sts-endpoint`, an http(s) URL if given.
fn sts_endpoint(cli: &Cli, errors: &mut ErrorList) -> Option<String> {
    non_empty(&cli.sts_endpoint).and_then(|u| {
        errors.check(match u.parse::<Uri>() {
            Ok(uri)
                if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() =>
            {
                Ok(u.to_string())
            }
            _ => Err(format!("--sts-endpoint {u:?}: expected an http(s):// URL")),
        })
    })
}

/// `--sts-region`: a region name in the same partition as every route's workspace (STS of one
/// partition cannot issue credentials valid in another).
fn sts_region(cli: &Cli, routes: Option<&[RouteConfig]>, errors: &mut ErrorList) -> Option<String> {
    let region = non_empty(&cli.sts_region)?;
    errors.check(validate_region("--sts-region", region))?;
    for route in routes.unwrap_or_default() {
        let (theirs, ours) = (partition_of(&route.region), partition_of(region));
        if theirs != ours {
            errors.check(Err::<(), _>(format!(
                "--sts-region {region:?} is in the {ours} partition but the workspace's region \
                 {:?} is in {theirs}: credentials from one partition are not valid in another",
                route.region
            )));
            return None;
        }
    }
    Some(region.to_string())
}

/// `--max-body-size`: more than zero, less than 4 GiB (the memory budget counts in `u32`).
fn max_body_size(cli: &Cli, errors: &mut ErrorList) -> Option<u64> {
    let size = errors.check(parse_size("--max-body-size", &cli.max_body_size))?;
    let problem = match size {
        0 => "--max-body-size must be greater than zero",
        s if s > u64::from(u32::MAX) => "--max-body-size must be below 4GiB",
        _ => return Some(size),
    };
    errors.check(Err::<(), _>(problem.to_string()));
    None
}

/// How requests are sent upstream.
struct UpstreamSettings {
    timeout: Duration,
    ca_certs: Vec<CertificateDer<'static>>,
    retry_deadline: Duration,
    throttle_status: StatusCode,
    on_limit_exceeded: LimitPolicy,
}

fn upstream(cli: &Cli, errors: &mut ErrorList) -> Option<UpstreamSettings> {
    let timeout = errors.check(parse_duration("--upstream-timeout", &cli.upstream_timeout));
    if let Some(0) = timeout.map(|d| d.as_millis()) {
        errors.check(Err::<(), _>(
            "--upstream-timeout must be greater than zero".to_string(),
        ));
    }
    let ca_certs = match &cli.upstream_ca_file {
        None => Some(Vec::new()),
        Some(path) => errors.check(load_ca_file(path)),
    };
    let retry_deadline = errors.check(parse_duration("--retry-deadline", &cli.retry_deadline));
    if retry_deadline.is_some_and(|d| d.is_zero()) {
        errors.check(Err::<(), _>(
            "--retry-deadline must be greater than zero".to_string(),
        ));
    }
    let throttle_status = errors.check(match cli.throttle_status.trim() {
        "503" => Ok(StatusCode::SERVICE_UNAVAILABLE),
        "429" => Ok(StatusCode::TOO_MANY_REQUESTS),
        other => Err(format!("--throttle-status {other:?}: expected 429 or 503")),
    });
    let on_limit_exceeded = errors.check(match cli.on_limit_exceeded.trim() {
        "reject" => Ok(LimitPolicy::Reject),
        "retry" => Ok(LimitPolicy::Retry),
        other => Err(format!(
            "--on-limit-exceeded {other:?}: expected reject or retry"
        )),
    });
    Some(UpstreamSettings {
        timeout: timeout.filter(|d| d.as_millis() > 0)?,
        ca_certs: ca_certs?,
        retry_deadline: retry_deadline.filter(|d| !d.is_zero())?,
        throttle_status: throttle_status?,
        on_limit_exceeded: on_limit_exceeded?,
    })
}

/// The process: logs, runtime threads, shutdown.
struct ProcessSettings {
    log_format: LogFormat,
    worker_threads: Option<usize>,
    shutdown_grace: Duration,
    drain_delay: Duration,
}

fn process(cli: &Cli, errors: &mut ErrorList) -> Option<ProcessSettings> {
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
    let shutdown_grace = errors.check(parse_duration("--shutdown-grace", &cli.shutdown_grace));
    let drain_delay = errors.check(parse_duration("--drain-delay", &cli.drain_delay));
    if let (Some(delay), Some(grace)) = (drain_delay, shutdown_grace) {
        if delay >= grace {
            errors.check(Err::<(), _>(format!(
                "--drain-delay {:?} must be shorter than --shutdown-grace {:?}",
                cli.drain_delay, cli.shutdown_grace
            )));
            return None;
        }
    }
    Some(ProcessSettings {
        log_format: log_format?,
        worker_threads: worker_threads?,
        shutdown_grace: shutdown_grace?,
        drain_delay: drain_delay?,
    })
}

/// What the proxy admits at once, and how long clients may take.
struct AdmissionSettings {
    max_in_flight_requests: usize,
    max_in_flight_bytes: u64,
    client_header_timeout: Duration,
    client_body_timeout: Duration,
}

fn admission(
    cli: &Cli,
    max_body_size: Option<u64>,
    errors: &mut ErrorList,
) -> Option<AdmissionSettings> {
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
    let mut timeout = |flag: &str, value: &str| {
        let d = errors.check(parse_duration(flag, value))?;
        if d.is_zero() {
            errors.check(Err::<(), _>(format!("{flag} must be greater than zero")));
            return None;
        }
        Some(d)
    };
    let client_header_timeout = timeout("--client-header-timeout", &cli.client_header_timeout);
    let client_body_timeout = timeout("--client-body-timeout", &cli.client_body_timeout);
    Some(AdmissionSettings {
        max_in_flight_requests: max_in_flight_requests?,
        max_in_flight_bytes: max_in_flight_bytes?,
        client_header_timeout: client_header_timeout?,
        client_body_timeout: client_body_timeout?,
    })
}

/// Payload handling: `--validate`, `--max-decoded-size`, `--external-label`, `--accounting`.
fn payload(cli: &Cli, errors: &mut ErrorList) -> Option<Settings> {
    let max_decoded_size = errors.check(parse_size("--max-decoded-size", &cli.max_decoded_size));
    if let Some(0) = max_decoded_size {
        errors.check(Err::<(), _>(
            "--max-decoded-size must be greater than zero".to_string(),
        ));
    }
    let external_labels = parse_external_labels(&cli.external_labels, errors);
    let accounting = errors.check(match cli.accounting.trim() {
        "on" => Ok(true),
        "off" => Ok(false),
        other => Err(format!("--accounting {other:?}: expected on or off")),
    });
    Some(Settings {
        validate: cli.validate,
        max_decoded_size: max_decoded_size.filter(|&n| n > 0)?,
        external_labels: external_labels?,
        accounting: accounting?,
    })
}

/// The global inbound authentication flags.
fn inbound_auth(cli: &Cli) -> Result<Option<InboundAuth>, String> {
    inbound_auth_from(
        &AuthKeys::FLAGS,
        cli.inbound_bearer_token_file.as_deref(),
        non_empty(&cli.inbound_basic_auth_user),
        cli.inbound_basic_auth_password_file.as_deref(),
    )
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
        route.query = errors.check(QueryTarget::from_upstream(&route.upstream).map_err(|why| {
            let url = if from_file {
                "upstream_url"
            } else {
                "the --upstream-url"
            };
            format!("{whose}--enable-query: {url} {why}")
        }));
        if !from_file {
            // No prefix, and the workspace's own (`/workspaces/<id>`): a data source URL
            // written for aws-sigv4-proxy keeps working, as the upstream path does for writes.
            route.query_prefixes = std::iter::once(String::new())
                .chain(route.query.as_ref().map(|q| q.base_path().to_string()))
                .collect();
            continue;
        }
        let path = &route.paths[0].path;
        let Some(prefix) = WRITE_PATHS.iter().find_map(|end| path.strip_suffix(end)) else {
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

/// No `--region`, no `AWS_REGION`, and none in the host. A host that looks like an AMP
/// endpoint but is none of its forms is most likely mistyped: say which forms there are.
fn missing_region(host: &str) -> String {
    let looks_like_amp = host.split('.').any(|l| {
        l.eq_ignore_ascii_case("aps-workspaces") || l.eq_ignore_ascii_case("aps-workspaces-fips")
    });
    if looks_like_amp {
        format!(
            "--upstream-url host {host:?} is not an AMP endpoint name the region can be read from \
             (aps-workspaces[-fips].<region>.amazonaws.com, aps-workspaces[-fips].<region>.api.aws, \
             vpce-<id>.aps-workspaces.<region>.vpce.amazonaws.com, or .amazonaws.com.cn in China): \
             check the host, or set --region"
        )
    } else {
        "--region is required: it cannot be inferred from the upstream host and AWS_REGION is not set"
            .to_string()
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
                    let host = upstream.as_ref().and_then(|u| u.uri.host());
                    if let Some(host) = host {
                        errors.check(Err::<(), _>(missing_region(host)));
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
    let mut paths: Vec<RoutePath> = WRITE_PATHS
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
