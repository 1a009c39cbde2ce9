//! Sending one write upstream: each attempt built fresh and freshly signed, retried with
//! backoff while the policy ([`super::retry`]) says so and the deadline allows.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use http::{HeaderMap, Response};

use super::context::WriteContext;
use super::outbound::build_outbound;
use super::retry::{self, GiveUp, Rejection, RetryReason, Verdict};
use crate::http::body::BufferedBody;
use crate::http::upstream::UpstreamAnswer;
use crate::http::{ProxyError, ResponseBody};
use crate::telemetry::metrics::{AttemptLabels, RetryLabels};
use crate::telemetry::one_line_snippet;

/// Shortest time worth starting an upstream attempt with (capped at a quarter of the deadline).
const MIN_ATTEMPT_TIME: Duration = Duration::from_secs(1);

/// At most one "upstream rejected request" warning per route and reason this often; the
/// metrics count every one.
pub const REJECTION_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The answer for the sender, and why the upstream refused the write if it did for good.
pub struct Sent {
    /// What the sender hears.
    pub response: Response<ResponseBody>,
    /// A final 4xx's reason.
    pub rejected: Option<Rejection>,
}

/// Sends `body` upstream, retrying what [`retry::classify`] calls retryable with backoff, each
/// attempt freshly signed, until `--retry-deadline` would be passed; then answers with the last
/// outcome (throttling as `--throttle-status`).
pub async fn with_retries(
    ctx: &WriteContext<'_>,
    inbound: &HeaderMap,
    body: &BufferedBody,
    deadline: Instant,
) -> Result<Sent, ProxyError> {
    // An attempt needs some time to be worth making: a last attempt with milliseconds left
    // would only turn a meaningful answer (429 + Retry-After) into a timeout.
    let min_attempt = MIN_ATTEMPT_TIME.min(ctx.settings.retry_deadline / 4);
    let target = ctx.destination;
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        let credentials = target.credentials.get()?;
        let mut outbound = build_outbound(&target.upstream, inbound, body);
        target
            .signer
            .sign(
                &mut outbound,
                &credentials,
                body.sha256_hex(),
                ctx.forwarding.clock.now(),
            )
            .map_err(|e| ProxyError::Signing(e.to_string()))?;
        let attempt_timeout = ctx
            .forwarding
            .upstream_timeout
            .min(deadline.saturating_duration_since(Instant::now()));
        let outcome = ctx.forwarding.client.send(outbound, attempt_timeout).await;
        target.metrics.forwarded_bytes.inc_by(body.len());
        ctx.forwarding
            .metrics
            .upstream_attempts
            .get_or_create(&AttemptLabels {
                route: target.name,
                result: attempt_result(&outcome),
            })
            .inc();
        if let Ok(answer) = &outcome {
            target
                .metrics
                .upstream_latency
                .observe(answer.latency.as_secs_f64());
        }
        let verdict = retry::classify(
            &outcome,
            ctx.forwarding.clock.now(),
            ctx.settings.on_limit_exceeded,
        );
        let (reason, not_before) = match verdict {
            Verdict::Final => return finish(ctx, outcome, attempt),
            Verdict::Retry { reason, not_before } => (reason, not_before),
        };
        if reason == RetryReason::ExpiredCredentials {
            target.credentials.request_refresh();
        }
        let wait = retry::backoff(attempt, fastrand::f64(), not_before);
        // Shutting down: no more attempts; the sender retries (elsewhere) from its WAL.
        if Instant::now() + wait + min_attempt >= deadline || ctx.draining.load(Ordering::Relaxed) {
            return give_up(ctx, outcome, reason, wait, attempt);
        }
        ctx.forwarding
            .metrics
            .upstream_retries
            .get_or_create(&RetryLabels {
                route: target.name,
                reason: reason.label(),
            })
            .inc();
        tracing::debug!(
            route = target.name,
            path = ctx.labels.path,
            attempt,
            reason = reason.label(),
            wait_ms = wait.as_millis() as u64,
            "retrying upstream"
        );
        tokio::time::sleep(wait).await;
    }
}

/// The `result` label of one attempt: the upstream's status class, or why there was no answer.
fn attempt_result(outcome: &Result<UpstreamAnswer, ProxyError>) -> &'static str {
    match outcome {
        Ok(answer) => match answer.status.as_u16() / 100 {
            1 => "1xx",
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            _ => "5xx",
        },
        Err(ProxyError::UpstreamConnect(_) | ProxyError::EgressProxy(_)) => "connect_error",
        Err(ProxyError::UpstreamTimeout(_)) => "timeout",
        Err(_) => "broken",
    }
}

/// A final outcome: the upstream's answer relayed (a lasting-limit 429 as 400), or our error.
fn finish(
    ctx: &WriteContext<'_>,
    outcome: Result<UpstreamAnswer, ProxyError>,
    attempts: u32,
) -> Result<Sent, ProxyError> {
    let labels = ctx.labels;
    let answer = outcome?;
    let rejected = retry::rejection(answer.status, &answer.body, ctx.settings.on_limit_exceeded);
    if answer.status.is_success() {
        tracing::debug!(
            route = labels.route,
            path = labels.path,
            status = answer.status.as_u16(),
            attempts,
            "forwarded"
        );
    } else {
        let reason = rejected.map_or("server_error", Rejection::label);
        let key = (ctx.destination.name, reason);
        if let Some(held_back) = ctx.settings.rejection_log.admit(key, Instant::now()) {
            tracing::warn!(
                route = labels.route,
                path = labels.path,
                status = answer.status.as_u16(),
                reason,
                upstream_message = %one_line_snippet(&answer.body),
                upstream_latency_ms = answer.latency.as_millis() as u64,
                attempts,
                similar_not_logged = held_back,
                "upstream rejected request"
            );
        }
    }
    let relayed =
        retry::relayed_status(answer.status, &answer.body, ctx.settings.on_limit_exceeded);
    let mut response = answer.into_response();
    *response.status_mut() = relayed;
    Ok(Sent { response, rejected })
}

/// The retry deadline is reached with a retryable outcome: hand the sender something it will
/// retry from its WAL, as [`retry::give_up`] decides.
fn give_up(
    ctx: &WriteContext<'_>,
    outcome: Result<UpstreamAnswer, ProxyError>,
    reason: RetryReason,
    wait: Duration,
    attempts: u32,
) -> Result<Sent, ProxyError> {
    ctx.forwarding
        .metrics
        .upstream_gave_up
        .get_or_create(&RetryLabels {
            route: ctx.destination.name,
            reason: reason.label(),
        })
        .inc();
    let answer = match outcome {
        Ok(answer) => answer,
        // Our own errors keep their 502/504.
        Err(_) => return finish(ctx, outcome, attempts),
    };
    match retry::give_up(reason, answer.status, ctx.settings.throttle_status) {
        GiveUp::Relay => finish(ctx, Ok(answer), attempts),
        GiveUp::Busy(status) => Err(ProxyError::Throttled {
            status,
            retry_after_secs: retry::retry_after_secs(wait),
            detail: format!(
                "upstream {} after {attempts} attempts: {}",
                answer.status.as_u16(),
                one_line_snippet(&answer.body)
            ),
        }),
        GiveUp::CredentialsExpired => Err(ProxyError::CredentialsUnavailable(format!(
            "upstream rejected our security token as expired: {}",
            one_line_snippet(&answer.body)
        ))),
    }
}
