//! `amp-rw-proxy check`: walks the chain the proxy depends on, with the same flags as serving,
//! and says which link is broken and how to fix it:
//!
//! 1. base credentials found (and by which provider), `sts:GetCallerIdentity` as Account B;
//! 2. `sts:AssumeRole` into Account A's role (on AccessDenied: B's permission policy or A's trust
//!    policy / ExternalId — with the documents that would fix each);
//! 3. `sts:GetCallerIdentity` as the assumed role;
//! 4. a signed, empty remote-write request to the workspace (403: A's permission policy;
//!    404: wrong workspace or region).
//!
//! Exit code 0 only when every step passes.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_smithy_types::error::display::DisplayErrorContext;
use bytes::Bytes;
use http::HeaderMap;

use super::policies::{Policies, PoliciesArgs};
use crate::aws::{Signer, credentials_provider, explain, sts_config};
use crate::config::{Cli, Config, EXIT_CONFIG_ERROR, Environment, RouteConfig};
use crate::http::body::BufferedBody;
use crate::http::upstream::UpstreamClient;
use crate::telemetry::one_line;
use crate::write::outbound::build_outbound;

/// One step's outcome.
#[derive(Debug)]
pub struct Step {
    /// Passed?
    pub ok: bool,
    /// What was checked.
    pub title: String,
    /// What was found.
    pub detail: String,
    /// How to fix it (failed steps).
    pub fix: Option<String>,
}

impl Step {
    fn pass(title: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            ok: true,
            title: title.into(),
            detail: detail.into(),
            fix: None,
        }
    }

    fn fail(title: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            ok: false,
            title: title.into(),
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    /// `✓ title: detail`, or `✗ title: detail` followed by the indented fix.
    pub fn render(&self) -> String {
        let mut out = format!(
            "{} {}: {}\n",
            if self.ok { "✓" } else { "✗" },
            self.title,
            self.detail
        );
        if let Some(fix) = &self.fix {
            for line in fix.lines() {
                let _ = writeln!(out, "    {line}");
            }
        }
        out
    }
}

/// Runs the steps in order, stopping at the first failure (later steps depend on it).
/// Checks one route.
pub async fn run(route: &RouteConfig, config: &Config, sdk: &SdkConfig) -> Vec<Step> {
    let mut steps = Vec::new();
    let sts_conf = sts_config(route, config, sdk);

    // 1. Base credentials, and who they are.
    let Some(base) = sdk.credentials_provider() else {
        steps.push(Step::fail(
            "base credentials",
            "no credential provider",
            "load the default AWS config",
        ));
        return steps;
    };
    let base_creds = match base.provide_credentials().await {
        Ok(c) => c,
        Err(e) => {
            steps.push(Step::fail(
                "base credentials (Account B)",
                explain::credentials_error(&e),
                "The default AWS credential chain found nothing usable. Provide Account B's credentials:\n\
                 environment (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), a profile (AWS_PROFILE),\n\
                 IRSA (AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE), EKS Pod Identity, ECS, or EC2 instance metadata.",
            ));
            return steps;
        }
    };
    let caller = match caller_identity(
        &sts_conf,
        SharedCredentialsProvider::new(base_creds.clone()),
    )
    .await
    {
        Ok(arn) => {
            steps.push(Step::pass(
                "base credentials (Account B)",
                format!(
                    "{}, sts:GetCallerIdentity says {arn}",
                    provider_of(&base_creds)
                ),
            ));
            arn
        }
        Err(e) if e.unreachable => {
            steps.push(Step::fail(
                "base credentials (Account B)",
                format!("{} found credentials, but {}", provider_of(&base_creds), e.text),
                "Check --sts-endpoint (or AWS_ENDPOINT_URL_STS), DNS, proxies and the network path to STS.",
            ));
            return steps;
        }
        Err(e) => {
            steps.push(Step::fail(
                "base credentials (Account B)",
                format!("{} found credentials, but {}", provider_of(&base_creds), e.text),
                "The credentials are invalid or expired (wrong secret, deleted access key, stale session token).",
            ));
            return steps;
        }
    };

    // 2. AssumeRole, and 3. who we are then.
    let signing_creds = match &route.role {
        None => {
            steps.push(Step::pass(
                "assume role",
                "no --role-arn: requests are signed with the base credentials",
            ));
            base_creds
        }
        Some(role) => {
            let provider = match credentials_provider(route, config, sdk).await {
                Ok((p, _)) => p,
                Err(e) => {
                    steps.push(Step::fail("assume role", e.to_string(), "see the error"));
                    return steps;
                }
            };
            match provider.provide_credentials().await {
                Ok(c) => {
                    steps.push(Step::pass(
                        "assume role (Account A)",
                        format!("sts:AssumeRole into {} succeeded", role.arn),
                    ));
                    match caller_identity(&sts_conf, SharedCredentialsProvider::new(c.clone()))
                        .await
                    {
                        Ok(arn) => steps.push(Step::pass(
                            "assumed identity",
                            format!("sts:GetCallerIdentity says {arn}"),
                        )),
                        Err(e) => {
                            steps.push(Step::fail("assumed identity", e.text, "STS issued credentials it then rejects; retry, or check the STS endpoint."));
                            return steps;
                        }
                    }
                    c
                }
                Err(e) => {
                    tracing::debug!(error = %DisplayErrorContext(&e), "AssumeRole failed: full error");
                    let explained = explain::credentials_error(&e);
                    // check prints its own, longer fix below the line.
                    let error = explain::without_fix(&explained).to_string();
                    let fix = assume_role_fix(route, &caller, &error);
                    steps.push(Step::fail("assume role (Account A)", error, fix));
                    return steps;
                }
            }
        }
    };

    // 4. A signed, empty remote-write request.
    steps.push(remote_write_step(route, config, signing_creds, &caller).await);
    steps
}

/// A failed `sts:GetCallerIdentity`: the explanation, and whether STS was reached at all.
struct CallFailure {
    text: String,
    unreachable: bool,
}

async fn caller_identity(
    conf: &SdkConfig,
    creds: SharedCredentialsProvider,
) -> Result<String, CallFailure> {
    let conf = conf.to_builder().credentials_provider(creds).build();
    let client = aws_sdk_sts::Client::new(&conf);
    match client.get_caller_identity().send().await {
        Ok(out) => Ok(out.arn().unwrap_or("(no ARN)").to_string()),
        Err(e) => {
            tracing::debug!(error = %DisplayErrorContext(&e), "GetCallerIdentity failed: full error");
            Err(CallFailure {
                text: explain::sts_call_error("sts:GetCallerIdentity", &e),
                unreachable: explain::is_unreachable(&e),
            })
        }
    }
}

/// Which provider of the default chain produced `creds`. `Credentials` keeps the provider's
/// name but exposes it only through `Debug` (which redacts the secret).
fn provider_of(creds: &Credentials) -> String {
    let debug = format!("{creds:?}");
    debug
        .split("provider_name: \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .map_or_else(
            || "the default credential chain".to_string(),
            |p| format!("provider {p}"),
        )
}

/// What an AssumeRole failure means, and how to fix it. Only AccessDenied is about the IAM
/// documents; the other refusals have other causes and are named as such.
fn assume_role_fix(route: &RouteConfig, caller_arn: &str, error: &str) -> String {
    let role = route.role.as_ref().expect("only called with a role");
    let mut fix = String::new();
    if error.contains("AccessDenied") {
        let _ = writeln!(
            fix,
            "STS refused. Cross-account AssumeRole needs BOTH of these; one of them is missing or wrong:"
        );
        let _ = writeln!(
            fix,
            "  (a) Account B: {caller_arn} must be allowed sts:AssumeRole on {}",
            role.arn
        );
        let _ = writeln!(
            fix,
            "  (b) Account A: the trust policy of {} must name {caller_arn}'s role",
            role.arn
        );
        match &role.external_id {
            Some(_) => {
                let _ = writeln!(
                    fix,
                    "      and require exactly the ExternalId given with --external-id."
                );
            }
            None => {
                let _ = writeln!(
                    fix,
                    "      (if it has an sts:ExternalId condition, pass --external-id)."
                );
            }
        }
        if let Some(policies) = policies_for(route, caller_arn) {
            let _ = write!(
                fix,
                "The documents that make it work:\n{}",
                policies.to_text()
            );
        }
    } else if error.contains("DurationSeconds") || error.contains("MaxSessionDuration") {
        let _ = writeln!(
            fix,
            "--session-duration ({:?}) exceeds the role's MaxSessionDuration: lower it, or raise the role's maximum.",
            role.session_duration
        );
    } else if error.contains("InvalidClientTokenId") || error.contains("SignatureDoesNotMatch") {
        let _ = writeln!(
            fix,
            "STS does not accept Account B's base credentials (wrong key or secret)."
        );
    } else if error.contains("RegionDisabled") {
        let _ = writeln!(
            fix,
            "STS is not activated in this region for Account A: activate it (IAM > Account settings) or use another STS region/endpoint."
        );
    } else if error.starts_with("STS unreachable") || error.starts_with("STS did not answer") {
        let _ = writeln!(
            fix,
            "STS could not be reached: check --sts-endpoint (or AWS_ENDPOINT_URL_STS) and the network path to STS."
        );
    } else {
        let _ = writeln!(
            fix,
            "STS refused for a reason other than permissions; see the error above."
        );
    }
    fix
}

/// The `policies` documents for this configuration, when the ARNs can be derived.
fn policies_for(route: &RouteConfig, caller_arn: &str) -> Option<Policies> {
    let role = route.role.as_ref()?;
    let account_a = role.arn.split(':').nth(4)?;
    let role_name = role.arn.rsplit('/').next()?;
    let partition = role.arn.split(':').nth(1)?;
    let workspace = route
        .upstream
        .path
        .strip_prefix("/workspaces/")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("ws-YOUR-WORKSPACE");
    Policies::from_args(&PoliciesArgs {
        source_role_arn: role_arn_of(caller_arn),
        workspace_arn: format!(
            "arn:{partition}:aps:{}:{account_a}:workspace/{workspace}",
            route.region
        ),
        external_id: role.external_id.clone(),
        role_name: role_name.to_string(),
        format: "text".into(),
        include_query: route.query.is_some(),
    })
    .ok()
}

/// `arn:aws:sts::ACCOUNT:assumed-role/NAME/SESSION` → `arn:aws:iam::ACCOUNT:role/NAME`; other
/// ARNs unchanged.
fn role_arn_of(caller_arn: &str) -> String {
    let parts: Vec<&str> = caller_arn.splitn(6, ':').collect();
    if parts.len() == 6 && parts[2] == "sts" {
        if let Some(name) = parts[5]
            .strip_prefix("assumed-role/")
            .and_then(|r| r.split('/').next())
        {
            return format!("arn:{}:iam::{}:role/{name}", parts[1], parts[4]);
        }
    }
    caller_arn.to_string()
}

async fn remote_write_step(
    route: &RouteConfig,
    config: &Config,
    creds: Credentials,
    caller_arn: &str,
) -> Step {
    let title = "signed remote-write to the workspace";
    let client = match UpstreamClient::new(
        &config.upstream_ca_certs,
        &config.egress,
        config.upstream_http2,
        config.max_in_flight_requests,
    ) {
        Ok(c) => c,
        Err(e) => return Step::fail(title, e.to_string(), "check --upstream-ca-file"),
    };
    // An empty WriteRequest, snappy-compressed: a valid request that writes nothing.
    let body = BufferedBody::from_bytes(Bytes::from_static(&[0]));
    let mut req = build_outbound(&route.upstream, &HeaderMap::new(), &body);
    let signer = Signer::new(route.region.clone(), &route.upstream.path);
    if let Err(e) = signer.sign(
        &mut req,
        &Arc::new(creds),
        body.sha256_hex(),
        SystemTime::now(),
    ) {
        return Step::fail(title, e.to_string(), "internal error");
    }
    let url = route.upstream.uri.to_string();
    match client.send(req, config.upstream_timeout).await {
        Ok(answer) if answer.status.is_success() => {
            Step::pass(title, format!("{url} answered {}", answer.status.as_u16()))
        }
        Ok(answer) => {
            let body = one_line(&String::from_utf8_lossy(&answer.body));
            let detail = format!("{url} answered {}: {body}", answer.status.as_u16());
            let fix = match answer.status.as_u16() {
                403 if body.contains("ignature") || body.contains("scoped") => format!(
                    "The workspace rejects the signature: check --region ({}) is the workspace's region.",
                    route.region
                ),
                403 => {
                    let mut fix = "The role is not allowed aps:RemoteWrite on this workspace: fix Account A's permission policy.\n".to_string();
                    if let Some(p) = policies_for(route, caller_arn) {
                        let _ = write!(
                            fix,
                            "It should be:\n{}",
                            serde_json::to_string_pretty(&p.account_a_permission_policy)
                                .unwrap_or_default()
                        );
                    }
                    fix
                }
                404 => format!(
                    "No such workspace: check the workspace ID in --upstream-url and the region ({}).",
                    route.region
                ),
                _ => "Unexpected answer; see the body above.".to_string(),
            };
            Step::fail(title, detail, fix)
        }
        Err(e) => Step::fail(
            title,
            format!("{url}: {e}"),
            "Check --upstream-url, DNS/VPC endpoint reachability and TLS (--upstream-ca-file).",
        ),
    }
}

/// The SDK's words for "never got an answer".
/// `amp-rw-proxy check`: validates the flags like serving does, runs every route's steps and
/// prints them; exit code 0 only when all passed.
pub fn main(cli: &Cli) -> ExitCode {
    let config = match Config::from_cli(cli, &Environment::from_process()) {
        Ok(config) => config,
        Err(errors) => {
            eprint!("amp-rw-proxy check: {errors}");
            return ExitCode::from(EXIT_CONFIG_ERROR);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("amp-rw-proxy check: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let sdk = runtime.block_on(crate::aws::load_aws_config(
        &config.routes[0].region,
        &config.egress,
    ));
    let mut out = std::io::stdout().lock();
    let mut all_passed = true;
    for route in &config.routes {
        if config.routes.len() > 1 {
            let _ = writeln!(out, "route {}:", route.name);
        }
        let steps = runtime.block_on(run(route, &config, &sdk));
        for step in &steps {
            let _ = write!(out, "{}", step.render());
        }
        // Four steps with a role, three without: all must be there and passed.
        let expected = if route.role.is_some() { 4 } else { 3 };
        all_passed &= steps.len() == expected && steps.iter().all(|s| s.ok);
    }
    if all_passed {
        let _ = writeln!(out, "all checks passed");
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assumed_role_arns_map_to_their_role() {
        assert_eq!(
            role_arn_of("arn:aws:sts::222222222222:assumed-role/account_b_role/i-0abc"),
            "arn:aws:iam::222222222222:role/account_b_role"
        );
        assert_eq!(
            role_arn_of("arn:aws:iam::222222222222:user/bob"),
            "arn:aws:iam::222222222222:user/bob"
        );
    }

    #[test]
    fn the_provider_name_is_read_without_the_secret() {
        let c = Credentials::new("AKID", "very-secret", None, None, "Environment");
        assert_eq!(provider_of(&c), "provider Environment");
    }

    #[test]
    fn steps_render_with_marks_and_indented_fixes() {
        let s = Step::fail("t", "d", "line one\nline two").render();
        assert_eq!(s, "✗ t: d\n    line one\n    line two\n");
        assert_eq!(Step::pass("t", "d").render(), "✓ t: d\n");
    }
}
