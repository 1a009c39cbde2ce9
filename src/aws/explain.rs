//! Failures of the credential chain and of STS as one line a person can act on.
//!
//! The SDK's errors nest four or five deep, and their `Debug` form (which
//! `DisplayErrorContext` appends) carries raw responses and type names. What an operator needs
//! is which step failed, why, and what to change; the full chain goes to the debug log. Every
//! text here is bounded by [`MAX_EXPLANATION`] and free of `Debug` formatting: it is built
//! from the errors' own `Display` messages and the AWS error code and message.
//!
//! The default chain tries, in order: environment, profile, web identity (IRSA), container
//! (ECS, EKS Pod Identity) and instance metadata (IMDS). When every provider says "not
//! configured" the SDK hands back each one's reason, and all are shown. When one provider
//! fails outright the chain stops there and returns only that error: the providers before it
//! necessarily had nothing, and are named as such.

use std::error::Error;

use aws_config::imds::client::error::ImdsError;
use aws_config::meta::ProviderChainError;
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_sts::error::{ConnectorError, ProvideErrorMetadata, SdkError};
use aws_sdk_sts::operation::assume_role::AssumeRoleError;
use aws_sdk_sts::operation::assume_role_with_web_identity::AssumeRoleWithWebIdentityError;

use crate::telemetry::one_line;

/// Longest explanation, in characters; longer ones are cut with `…`.
pub const MAX_EXPLANATION: usize = 480;

/// What to do when the base chain found nothing.
const BASE_FIX: &str = "give the proxy Account B's credentials (AWS_ACCESS_KEY_ID + \
    AWS_SECRET_ACCESS_KEY, AWS_PROFILE, an IRSA or Pod Identity service account, an instance role)";

/// The providers of the SDK's default chain, in the order it tries them, as it names them.
const CHAIN: [&str; 5] = [
    "Environment",
    "Profile",
    "WebIdentityToken",
    "EcsContainer",
    "Ec2InstanceMetadata",
];

/// One line for a failed credential fetch: the base chain's failure (which providers were
/// tried and why each gave nothing) or STS's answer to AssumeRole (its error code and
/// message), each with what fixes it.
pub fn credentials_error(err: &CredentialsError) -> String {
    let links = chain(err);
    // AssumeRole signs its STS call with the base credentials: a chain failure shows up
    // nested inside the AssumeRole provider's error.
    if let Some(base) = links
        .iter()
        .skip(1)
        .find_map(|e| e.downcast_ref::<CredentialsError>())
    {
        return base_chain_error(base);
    }
    if let Some(sts) = links
        .iter()
        .find_map(|e| e.downcast_ref::<SdkError<AssumeRoleError>>())
    {
        return sts_error("sts:AssumeRole", sts, assume_role_fix);
    }
    if is_base_chain(&links) {
        return base_chain_error(err);
    }
    bounded(&messages(&links))
}

/// One line for a failed STS call (`operation` as IAM names it, e.g. `sts:GetCallerIdentity`):
/// unreachable, timed out, or refused with AWS's code and message.
pub fn sts_call_error<E>(operation: &str, err: &SdkError<E>) -> String
where
    E: ProvideErrorMetadata + Error + 'static,
{
    sts_error(operation, err, base_credentials_fix)
}

/// An explanation without its `— fix: …` part, for reports that print their own fix.
pub fn without_fix(explanation: &str) -> &str {
    explanation
        .split_once(FIX_SEPARATOR)
        .map_or(explanation, |(what, _)| what)
}

/// Between what failed and what fixes it.
const FIX_SEPARATOR: &str = " — fix: ";

/// Whether an STS call failed before any answer came (DNS, connect, TLS, timeout).
pub fn is_unreachable<E>(err: &SdkError<E>) -> bool {
    matches!(
        err,
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_)
    )
}

fn sts_error<E>(operation: &str, err: &SdkError<E>, fix: fn(&str) -> &'static str) -> String
where
    E: ProvideErrorMetadata + Error + 'static,
{
    let text = match err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            // Some STS look-alikes (moto, VPC endpoint proxies) answer in a shape the SDK does
            // not parse; their XML still carries the code and message.
            let raw = service.raw().body().bytes().map(String::from_utf8_lossy);
            let from_raw = |tag: &str| raw.as_deref().and_then(|body| xml_text(body, tag));
            let code = e
                .code()
                .map(str::to_string)
                .or_else(|| from_raw("Code"))
                .unwrap_or_else(|| format!("HTTP {}", service.raw().status().as_u16()));
            let message = e
                .message()
                .map(str::to_string)
                .or_else(|| from_raw("Message"))
                .unwrap_or_else(|| "(no message)".to_string());
            format!(
                "STS refused {operation}: {code}: {message} — fix: {}",
                fix(&code)
            )
        }
        SdkError::DispatchFailure(dispatch) => {
            // A credential failure while signing the call arrives as a dispatch failure.
            if let Some(base) = chain(err)
                .iter()
                .find_map(|e| e.downcast_ref::<CredentialsError>())
            {
                return base_chain_error(base);
            }
            let why = dispatch
                .as_connector_error()
                .map_or_else(|| innermost(err), connector_reason);
            if mentions(&chain(err), "tunnel error") {
                format!(
                    "STS unreachable for {operation} through the egress proxy: {why} — fix: \
                     check that the proxy in --egress-proxy / HTTPS_PROXY runs and lets \
                     CONNECT through to STS, or list STS's host in NO_PROXY"
                )
            } else {
                format!("STS unreachable for {operation}: {why} — fix: {STS_PATH_FIX}")
            }
        }
        SdkError::TimeoutError(_) => {
            format!("STS did not answer {operation} in time — fix: {STS_PATH_FIX}")
        }
        SdkError::ResponseError(response) => format!(
            "STS answered {operation} with something unreadable (HTTP {}) — fix: check that \
             --sts-endpoint points at STS",
            response.raw().status().as_u16()
        ),
        _ => format!("{operation} failed: {}", innermost(err)),
    };
    bounded(&text)
}

const STS_PATH_FIX: &str = "check the network path to STS (DNS, egress proxy, security groups) \
    and --sts-endpoint / AWS_ENDPOINT_URL_STS";

fn assume_role_fix(code: &str) -> &'static str {
    match code {
        "AccessDenied" => {
            "Account A's trust policy must name Account B's identity (and its sts:ExternalId \
             condition match --external-id), and B's permission policy must allow \
             sts:AssumeRole on the role (`amp-rw-proxy policies` prints all three)"
        }
        other => base_credentials_fix(other),
    }
}

fn base_credentials_fix(code: &str) -> &'static str {
    match code {
        "SignatureDoesNotMatch" => {
            "Account B's secret access key is wrong: check AWS_SECRET_ACCESS_KEY or the profile"
        }
        "InvalidClientTokenId" | "UnrecognizedClientException" => {
            "Account B's access key ID is unknown (deleted or mistyped): check AWS_ACCESS_KEY_ID \
             or the profile"
        }
        "ExpiredToken" | "ExpiredTokenException" | "RequestExpired" => {
            "Account B's session credentials have expired: renew them (or check the clock)"
        }
        "RegionDisabledException" => {
            "STS is not activated in this region for Account B: activate it in IAM, or use \
             another region's STS endpoint"
        }
        "Throttling" | "ThrottlingException" => "none needed: the proxy retries with backoff",
        "AccessDenied" => "B's permission policy must allow this STS action",
        _ => "see AWS's message; `amp-rw-proxy check` walks every step",
    }
}

/// The base chain's failure: every provider's reason, or the one that failed outright.
fn base_chain_error(err: &CredentialsError) -> String {
    let links = chain(err);
    if let Some(tried) = links
        .iter()
        .find_map(|e| e.downcast_ref::<ProviderChainError<CredentialsError>>())
    {
        let reasons: Vec<String> = tried
            .attempts()
            .iter()
            .map(|a| format!("{}: {}", provider_label(a.name()), not_loaded_reason(a)))
            .collect();
        return bounded(&format!(
            "no AWS credentials for Account B ({}) — fix: {BASE_FIX}",
            reasons.join("; ")
        ));
    }
    let (failed, why, fix) = hard_failure(&links);
    let before: Vec<&str> = CHAIN
        .iter()
        .take_while(|p| **p != failed)
        .map(|p| provider_label(p))
        .collect();
    let before = if before.is_empty() {
        String::new()
    } else {
        format!(" ({} had none)", before.join(", "))
    };
    bounded(&format!(
        "AWS credentials for Account B: {} failed: {why}{before} — fix: {fix}",
        provider_label(failed)
    ))
}

/// Which provider failed outright, why, and the fix. IMDS and web identity are told by their
/// error types; the others by what the environment configures (the chain stops at the first
/// configured provider).
fn hard_failure(links: &[&(dyn Error + 'static)]) -> (&'static str, String, &'static str) {
    if let Some(imds) = links.iter().find_map(|e| e.downcast_ref::<ImdsError>()) {
        let why = match imds {
            ImdsError::FailedToLoadToken(_) if mentions(links, "forbidden") => {
                "the token request was forbidden (HTTP 403): IMDS is disabled or blocked here"
                    .to_string()
            }
            ImdsError::ErrorResponse(r) => {
                format!("it answered HTTP {}", r.response().status().as_u16())
            }
            _ => innermost_of(links),
        };
        return (
            "Ec2InstanceMetadata",
            why,
            "attach an instance role, or (in a container) raise the IMDS hop limit to 2; \
             off EC2, give credentials another way and set AWS_EC2_METADATA_DISABLED=true",
        );
    }
    if let Some(sts) = links
        .iter()
        .find_map(|e| e.downcast_ref::<SdkError<AssumeRoleWithWebIdentityError>>())
    {
        return (
            "WebIdentityToken",
            sts_error("sts:AssumeRoleWithWebIdentity", sts, |_| "").replace(" — fix: ", ""),
            "check the service account's eks.amazonaws.com/role-arn annotation and the role's \
             trust policy for the cluster's OIDC provider",
        );
    }
    let set = |v: &str| std::env::var_os(v).is_some_and(|s| !s.is_empty());
    let failed = if set("AWS_ACCESS_KEY_ID") {
        "Environment"
    } else if set("AWS_WEB_IDENTITY_TOKEN_FILE") {
        "WebIdentityToken"
    } else if set("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        || set("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
    {
        "EcsContainer"
    } else {
        "Profile"
    };
    let fix = match failed {
        "Environment" => "set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither",
        "WebIdentityToken" => {
            "check that AWS_WEB_IDENTITY_TOKEN_FILE is mounted and AWS_ROLE_ARN names a role \
             trusting the cluster's OIDC provider"
        }
        "EcsContainer" => {
            "check the container credentials endpoint (ECS task role, EKS Pod Identity agent)"
        }
        _ => "check AWS_PROFILE and the profile's entries in ~/.aws/config and ~/.aws/credentials",
    };
    (failed, innermost_of(links), fix)
}

/// Why a provider that was not configured gave nothing, in the terms a user sets.
fn not_loaded_reason(attempt: &aws_config::meta::ProviderAttempt<CredentialsError>) -> String {
    let inner = chain(attempt.error());
    match attempt.name() {
        "Environment" => "AWS_ACCESS_KEY_ID not set".to_string(),
        "WebIdentityToken" if mentions(&inner, "AWS_ROLE_ARN") => "AWS_ROLE_ARN not set".into(),
        "WebIdentityToken" => "AWS_WEB_IDENTITY_TOKEN_FILE not set".to_string(),
        "EcsContainer" => "AWS_CONTAINER_CREDENTIALS_*_URI not set".to_string(),
        "Profile" if mentions(&inner, "not enabled") || mentions(&inner, "No profiles") => {
            "no profile files".to_string()
        }
        "Ec2InstanceMetadata" if mentions(&inner, "disabled by") => {
            "disabled by AWS_EC2_METADATA_DISABLED".to_string()
        }
        "Ec2InstanceMetadata" if mentions(&inner, "404") => {
            "no instance role (IMDS answered 404)".to_string()
        }
        "Ec2InstanceMetadata" => {
            let why = inner
                .iter()
                .find_map(|e| e.downcast_ref::<ConnectorError>())
                .map_or_else(|| innermost_of(&inner), connector_reason);
            format!("unreachable ({why})")
        }
        _ => innermost_of(&inner),
    }
}

/// The names of the default chain's providers as a user knows them.
fn provider_label(name: &str) -> &str {
    match name {
        "Environment" => "env",
        "Profile" => "profile",
        "WebIdentityToken" => "IRSA web identity",
        "EcsContainer" => "ECS/Pod Identity",
        "Ec2InstanceMetadata" => "IMDS",
        other => other,
    }
}

fn connector_reason(e: &ConnectorError) -> String {
    if e.is_timeout() {
        return "timed out".to_string();
    }
    innermost(e)
}

/// Whether the chain consists of the default chain's own errors (no STS call in it).
fn is_base_chain(links: &[&(dyn Error + 'static)]) -> bool {
    links
        .iter()
        .any(|e| e.is::<ProviderChainError<CredentialsError>>() || e.is::<ImdsError>())
        || !links.iter().any(|e| {
            e.is::<SdkError<AssumeRoleError>>()
                || e.is::<SdkError<AssumeRoleWithWebIdentityError>>()
        })
}

/// The text of the first `<tag>…</tag>` in an XML body.
fn xml_text(body: &str, tag: &str) -> Option<String> {
    let start = body.find(&format!("<{tag}>"))? + tag.len() + 2;
    let len = body[start..].find(&format!("</{tag}>"))?;
    Some(one_line(&body[start..start + len])).filter(|t| !t.is_empty())
}

fn chain<'a>(err: &'a (dyn Error + 'static)) -> Vec<&'a (dyn Error + 'static)> {
    let mut links = vec![err];
    let mut next = err.source();
    while let Some(e) = next {
        links.push(e);
        next = e.source();
    }
    links
}

fn mentions(links: &[&(dyn Error + 'static)], needle: &str) -> bool {
    links.iter().any(|e| e.to_string().contains(needle))
}

/// The deepest error's message: the most specific one ("Connection refused (os error 111)").
fn innermost(err: &(dyn Error + 'static)) -> String {
    innermost_of(&chain(err))
}

fn innermost_of(links: &[&(dyn Error + 'static)]) -> String {
    links
        .last()
        .map(|e| one_line(&e.to_string()))
        .unwrap_or_default()
}

/// Every level's own message, each once (outer messages often repeat inner ones).
fn messages(links: &[&(dyn Error + 'static)]) -> String {
    let mut parts: Vec<String> = Vec::new();
    for e in links {
        let m = one_line(&e.to_string());
        if !m.is_empty() && !parts.iter().any(|p| p.contains(&m)) {
            parts.push(m);
        }
    }
    parts.join(": ")
}

/// Cuts `text` to [`MAX_EXPLANATION`] characters.
fn bounded(text: &str) -> String {
    let text = one_line(text);
    if text.chars().count() <= MAX_EXPLANATION {
        return text;
    }
    let mut cut: String = text.chars().take(MAX_EXPLANATION - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_provider_error_reads_as_one_bounded_line_without_debug_dumps() {
        let long = "x".repeat(2000);
        let err = CredentialsError::provider_error(std::io::Error::other(format!(
            "line one\nline two {long}"
        )));
        let text = credentials_error(&err);
        assert!(!text.contains('\n'), "{text}");
        assert!(text.chars().count() <= MAX_EXPLANATION, "{}", text.len());
        assert!(
            text.starts_with("AWS credentials for Account B: "),
            "{text}"
        );
        assert!(!text.contains("ProviderError {"), "{text}");
    }

    #[test]
    fn short_texts_are_kept_whole() {
        assert_eq!(bounded("a\n b"), "a b");
        let cut = bounded(&"é".repeat(MAX_EXPLANATION + 5));
        assert_eq!(cut.chars().count(), MAX_EXPLANATION);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn code_and_message_are_read_from_an_sts_error_body() {
        let body = "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>\
                    <Message>User: x is not authorized</Message></Error></ErrorResponse>";
        assert_eq!(xml_text(body, "Code").as_deref(), Some("AccessDenied"));
        assert_eq!(
            xml_text(body, "Message").as_deref(),
            Some("User: x is not authorized")
        );
        assert_eq!(xml_text(body, "RequestId"), None);
    }

    #[test]
    fn fixes_follow_the_aws_error_code() {
        assert!(assume_role_fix("AccessDenied").contains("--external-id"));
        assert!(assume_role_fix("SignatureDoesNotMatch").contains("AWS_SECRET_ACCESS_KEY"));
        assert!(base_credentials_fix("InvalidClientTokenId").contains("AWS_ACCESS_KEY_ID"));
    }
}
