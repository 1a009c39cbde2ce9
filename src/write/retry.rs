//! Whether an upstream outcome is worth another attempt: a pure function, table-tested.
//!
//! Retried: connection failures, timeouts and broken exchanges (nothing, or nothing we can
//! tell, was written — remote-write is safe to resend: a sample already stored is stored again
//! as the same value), 5xx except 501 (Not Implemented never changes), 408, 429, and AWS
//! throttling reported in a body (`ThrottlingException`, `Rate exceeded`) whatever its status.
//! An expired security token (our credentials, not the request) is retried after the
//! credentials are refreshed. Every other 4xx is final: the request can never succeed.
//! `Retry-After` (seconds or an HTTP date) sets the least wait before the next attempt.
//!
//! A "limit exceeded" that retrying cannot lift — AMP's active-series limits, answered 429 by
//! older versions — is final under `--on-limit-exceeded reject` and relayed as 400: a sender
//! retrying it would block every newer sample behind it (prometheus/prometheus#8474).
//! Final 4xx answers are sorted into a [`Rejection`] for the metrics and the log.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode, header};

use crate::config::LimitPolicy;
use crate::http::ProxyError;
use crate::http::upstream::UpstreamAnswer;

/// First backoff; doubles per attempt up to [`MAX_BACKOFF`].
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(200);
/// Largest backoff between attempts (a `Retry-After` may ask for more).
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Why an outcome is retried; also the `reason` label of the retry metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryReason {
    /// Could not connect (DNS, TCP, TLS).
    Connect,
    /// No answer within the attempt's time, or the upstream's own 408.
    Timeout,
    /// The connection broke during the exchange.
    Broken,
    /// 5xx other than 501.
    ServerError,
    /// 429, or an AWS throttling error in the body.
    Throttled,
    /// The upstream says our security token expired: refresh credentials, then retry.
    ExpiredCredentials,
}

impl RetryReason {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            RetryReason::Connect => "connect",
            RetryReason::Timeout => "timeout",
            RetryReason::Broken => "broken",
            RetryReason::ServerError => "server_error",
            RetryReason::Throttled => "throttled",
            RetryReason::ExpiredCredentials => "expired_credentials",
        }
    }
}

/// The decision for one outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Answer the sender with this outcome.
    Final,
    /// Try again, not before `not_before` if the upstream said so.
    Retry {
        /// Why.
        reason: RetryReason,
        /// The upstream's `Retry-After`, as a wait from `now`.
        not_before: Option<Duration>,
    },
}

/// Classifies one attempt's outcome. `now` turns an HTTP-date `Retry-After` into a wait;
/// `limits` is `--on-limit-exceeded`.
pub fn classify(
    outcome: &Result<UpstreamAnswer, ProxyError>,
    now: SystemTime,
    limits: LimitPolicy,
) -> Verdict {
    let answer = match outcome {
        Ok(answer) => answer,
        Err(ProxyError::UpstreamConnect(_)) => return retry(RetryReason::Connect, None),
        Err(ProxyError::UpstreamTimeout(_)) => return retry(RetryReason::Timeout, None),
        Err(ProxyError::Upstream(_)) => return retry(RetryReason::Broken, None),
        Err(_) => return Verdict::Final,
    };
    classify_status(
        answer.status,
        &answer.headers,
        answer.error_type.as_deref(),
        &answer.body,
        now,
        limits,
    )
}

/// [`classify`] for an answer's parts.
pub fn classify_status(
    status: StatusCode,
    headers: &HeaderMap,
    error_type: Option<&str>,
    body: &[u8],
    now: SystemTime,
    limits: LimitPolicy,
) -> Verdict {
    let not_before = retry_after(headers, now);
    if status.is_success() || status.is_informational() {
        return Verdict::Final;
    }
    let kind = aws_error_kind(error_type, body);
    if limits == LimitPolicy::Reject
        && status.is_client_error()
        && kind != Some(AwsError::Throttling)
        && is_lasting_limit(body)
    {
        return Verdict::Final;
    }
    if kind == Some(AwsError::Throttling) || status == StatusCode::TOO_MANY_REQUESTS {
        return retry(RetryReason::Throttled, not_before);
    }
    if status.is_client_error() && kind == Some(AwsError::ExpiredToken) {
        return retry(RetryReason::ExpiredCredentials, not_before);
    }
    match status {
        StatusCode::REQUEST_TIMEOUT => retry(RetryReason::Timeout, not_before),
        StatusCode::NOT_IMPLEMENTED => Verdict::Final,
        s if s.is_server_error() => retry(RetryReason::ServerError, not_before),
        _ => Verdict::Final,
    }
}

fn retry(reason: RetryReason, not_before: Option<Duration>) -> Verdict {
    Verdict::Retry { reason, not_before }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AwsError {
    Throttling,
    ExpiredToken,
}

/// What AWS says went wrong — from the error *type* only (`x-amzn-ErrorType`, a JSON `__type`,
/// or the message the body starts with), never from text anywhere in the body: a 400 quoting a
/// rejected series that happens to contain "ThrottlingException" is still a final 400.
fn aws_error_kind(error_type: Option<&str>, body: &[u8]) -> Option<AwsError> {
    let text = String::from_utf8_lossy(&body[..body.len().min(1024)]);
    let json_type = text
        .split_once("\"__type\"")
        .and_then(|(_, rest)| rest.trim_start().strip_prefix(':'))
        .and_then(|rest| rest.trim_start().strip_prefix('"'))
        .and_then(|rest| rest.split('"').next())
        // "com.amazonaws...#ThrottlingException" → the part after '#'.
        .map(|t| t.rsplit('#').next().unwrap_or(t).to_string());
    let leading = text.trim_start();
    let of_type = |t: &str| match t {
        "ThrottlingException" | "Throttling" | "TooManyRequestsException" => {
            Some(AwsError::Throttling)
        }
        "ExpiredTokenException" | "ExpiredToken" => Some(AwsError::ExpiredToken),
        _ => None,
    };
    error_type
        .and_then(of_type)
        .or_else(|| json_type.as_deref().and_then(of_type))
        .or_else(|| {
            if leading.starts_with("ThrottlingException") || leading.starts_with("Rate exceeded") {
                Some(AwsError::Throttling)
            } else if leading.starts_with("ExpiredToken")
                || leading.starts_with("The security token included in the request is expired")
            {
                Some(AwsError::ExpiredToken)
            } else {
                None
            }
        })
}

/// Why the upstream refused a write for good; the `reason` label of the rejection metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Active series per workspace or per metric over the quota.
    SeriesLimit,
    /// More labels on a series than allowed.
    LabelsPerSeries,
    /// A label name or value longer than allowed.
    LabelLength,
    /// Out of order, duplicate, too old or too far in the future.
    SampleTimestamp,
    /// Any other limit the upstream says was exceeded.
    OtherLimit,
    /// 401/403: signature, permissions.
    Denied,
    /// 404: no such workspace or path.
    NotFound,
    /// 413: body too large.
    TooLarge,
    /// Any other 4xx.
    Other,
}

impl Rejection {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            Rejection::SeriesLimit => "series_limit",
            Rejection::LabelsPerSeries => "labels_per_series",
            Rejection::LabelLength => "label_length",
            Rejection::SampleTimestamp => "sample_timestamp",
            Rejection::OtherLimit => "other_limit",
            Rejection::Denied => "denied",
            Rejection::NotFound => "not_found",
            Rejection::TooLarge => "too_large",
            Rejection::Other => "other",
        }
    }
}

/// Why a 4xx answer refused the write for good, from its status and the start of its message;
/// `None` for anything else, and for what the sender retries: 408, and 429 unless it is a
/// lasting limit under `--on-limit-exceeded reject` (then relayed as 400).
pub fn rejection(status: StatusCode, body: &[u8], limits: LimitPolicy) -> Option<Rejection> {
    let retried_by_sender = status == StatusCode::REQUEST_TIMEOUT
        || (status == StatusCode::TOO_MANY_REQUESTS
            && relayed_status(status, body, limits) == status);
    if !status.is_client_error() || retried_by_sender {
        return None;
    }
    let text = lowercase_start(body);
    let has = |needle: &str| text.contains(needle);
    let reason = if has("series limit") || has("series_limit") || has("active series") {
        Rejection::SeriesLimit
    } else if has("too many labels") || has("number of labels") || has("labels per series") {
        Rejection::LabelsPerSeries
    } else if has("label name too long")
        || has("label value too long")
        || has("labels too long")
        || has("exceeds the maximum length")
    {
        Rejection::LabelLength
    } else if has("out of order")
        || has("out-of-order")
        || has("duplicate sample")
        || has("too old")
        || has("too far in the future")
        || has("out of bounds")
    {
        Rejection::SampleTimestamp
    } else if is_lasting_limit(body) {
        Rejection::OtherLimit
    } else {
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Rejection::Denied,
            StatusCode::NOT_FOUND => Rejection::NotFound,
            StatusCode::PAYLOAD_TOO_LARGE => Rejection::TooLarge,
            _ => Rejection::Other,
        }
    };
    Some(reason)
}

/// The status an answer is relayed with: a 429 for a lasting limit under
/// `--on-limit-exceeded reject` becomes 400, because senders retry 429s (throttling, and
/// everything under `retry`, keeps its status).
pub fn relayed_status(upstream: StatusCode, body: &[u8], limits: LimitPolicy) -> StatusCode {
    if upstream == StatusCode::TOO_MANY_REQUESTS
        && limits == LimitPolicy::Reject
        && is_lasting_limit(body)
    {
        StatusCode::BAD_REQUEST
    } else {
        upstream
    }
}

/// "… limit … exceeded" that is not a rate limit: waiting does not lift it (AMP:
/// "per-user series limit (…) exceeded"; rate limits read "ingestion rate limit (…) exceeded"
/// and "Rate exceeded").
fn is_lasting_limit(body: &[u8]) -> bool {
    let text = lowercase_start(body);
    let rate = text.contains("rate limit") || text.contains("rate exceeded");
    !rate && text.contains("limit") && text.contains("exceeded")
}

fn lowercase_start(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(1024)]).to_lowercase()
}

/// Longest `Retry-After` honoured; larger values (or absurd ones) are capped.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// `Retry-After` as a wait from `now`: delay-seconds or an HTTP date (a date in the past is 0).
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let date = httpdate::parse_http_date(value).ok()?;
            date.duration_since(now).unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// Wait before attempt `attempt + 1` (`attempt` counts from 1): exponential from
/// [`INITIAL_BACKOFF`], capped at [`MAX_BACKOFF`], scaled by `0.5 + jitter / 2`; never shorter
/// than what the upstream asked for.
pub fn backoff(attempt: u32, jitter: f64, not_before: Option<Duration>) -> Duration {
    let exp = INITIAL_BACKOFF
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    let jittered = exp.mul_f64(0.5 + jitter.clamp(0.0, 1.0) / 2.0);
    jittered.max(not_before.unwrap_or(Duration::ZERO))
}

/// What the sender hears when the retry deadline is reached and the last outcome, an answer of
/// the upstream's, was still retryable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// The upstream's answer, relayed as it is.
    Relay,
    /// This status with `Retry-After`: something the sender retries from its WAL.
    Busy(StatusCode),
    /// Our credentials were rejected as expired: 503 as for missing credentials.
    CredentialsExpired,
}

/// The give-up decision. Throttling, whatever status carried it, becomes `--throttle-status`
/// (503 for a default Prometheus, 429 for senders with `retry_on_http_429`; an upstream answer
/// already of that status is relayed as it is); an upstream 408 is retryable, but Prometheus
/// drops every 4xx, so it becomes 503; an expired token is our failure, 503. Other retryable
/// answers (5xx) are relayed: the sender retries them too.
pub fn give_up(reason: RetryReason, upstream: StatusCode, throttle_status: StatusCode) -> GiveUp {
    match reason {
        RetryReason::Throttled if upstream == throttle_status => GiveUp::Relay,
        RetryReason::Throttled => GiveUp::Busy(throttle_status),
        RetryReason::Timeout => GiveUp::Busy(StatusCode::SERVICE_UNAVAILABLE),
        RetryReason::ExpiredCredentials => GiveUp::CredentialsExpired,
        RetryReason::Connect | RetryReason::Broken | RetryReason::ServerError => GiveUp::Relay,
    }
}

/// `Retry-After` for a given-up request: the wait the next attempt would have had, in whole
/// seconds, at least one.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::HeaderValue;

    fn answer(
        status: u16,
        retry_after: Option<&str>,
        body: &str,
    ) -> Result<UpstreamAnswer, ProxyError> {
        let mut headers = HeaderMap::new();
        if let Some(v) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_str(v).unwrap());
        }
        Ok(UpstreamAnswer {
            status: StatusCode::from_u16(status).unwrap(),
            headers,
            body: Bytes::from(body.to_string()),
            latency: Duration::ZERO,
            error_type: None,
        })
    }

    #[test]
    fn classification_table() {
        use RetryReason::*;
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let s = Duration::from_secs;
        let in_ten_seconds = httpdate::fmt_http_date(now + s(10));
        let cases: Vec<(Result<UpstreamAnswer, ProxyError>, Verdict)> = vec![
            (answer(200, None, ""), Verdict::Final),
            (answer(204, None, ""), Verdict::Final),
            (answer(400, None, "out of order sample"), Verdict::Final),
            (answer(401, None, ""), Verdict::Final),
            (
                answer(
                    403,
                    None,
                    "User is not authorized to perform aps:RemoteWrite",
                ),
                Verdict::Final,
            ),
            (answer(404, None, "workspace not found"), Verdict::Final),
            (answer(413, None, ""), Verdict::Final),
            (answer(501, None, ""), Verdict::Final),
            (answer(408, None, ""), retry(Timeout, None)),
            (answer(429, None, ""), retry(Throttled, None)),
            (answer(429, Some("7"), ""), retry(Throttled, Some(s(7)))),
            (
                answer(429, Some(&in_ten_seconds), ""),
                retry(Throttled, Some(s(10))),
            ),
            (
                answer(429, Some("Wed, 21 Oct 2015 07:28:00 GMT"), ""),
                retry(Throttled, Some(Duration::ZERO)),
            ),
            (answer(429, Some("soon"), ""), retry(Throttled, None)),
            (
                answer(400, None, r#"{"__type":"ThrottlingException"}"#),
                retry(Throttled, None),
            ),
            (answer(400, None, "Rate exceeded"), retry(Throttled, None)),
            (
                answer(403, None, "ExpiredTokenException: token expired"),
                retry(ExpiredCredentials, None),
            ),
            (
                answer(
                    403,
                    None,
                    "The security token included in the request is expired",
                ),
                retry(ExpiredCredentials, None),
            ),
            // A final 400 quoting a series that mentions throttling stays final.
            (
                answer(
                    400,
                    None,
                    r#"out of order sample for series {error_code="ThrottlingException"}"#,
                ),
                Verdict::Final,
            ),
            (
                answer(
                    400,
                    None,
                    "series x: The security token included in the request is expired",
                ),
                Verdict::Final,
            ),
            (
                answer(
                    400,
                    None,
                    r#"{"__type":"com.amazonaws.aps#ThrottlingException","message":"x"}"#,
                ),
                retry(Throttled, None),
            ),
            (
                answer(429, Some("18446744073709551615"), ""),
                retry(Throttled, Some(MAX_RETRY_AFTER)),
            ),
            (answer(500, None, ""), retry(ServerError, None)),
            (answer(502, None, ""), retry(ServerError, None)),
            (answer(503, Some("30"), ""), retry(ServerError, Some(s(30)))),
            (answer(504, None, ""), retry(ServerError, None)),
            (
                Err(ProxyError::UpstreamConnect("refused".into())),
                retry(Connect, None),
            ),
            (Err(ProxyError::UpstreamTimeout(s(1))), retry(Timeout, None)),
            (
                Err(ProxyError::Upstream("reset".into())),
                retry(Broken, None),
            ),
            (Err(ProxyError::Signing("x".into())), Verdict::Final),
        ];
        for (outcome, want) in cases {
            for policy in [LimitPolicy::Reject, LimitPolicy::Retry] {
                let got = classify(&outcome, now, policy);
                let shown = outcome
                    .as_ref()
                    .map(|a| a.status)
                    .map_err(|e| e.to_string());
                assert_eq!(got, want, "{shown:?} under {policy:?}");
            }
        }
    }

    /// AMP's answers (its troubleshooting guide and Cortex's messages): rate limits are
    /// retried whatever `--on-limit-exceeded` says; lasting limits are final under `reject`.
    #[test]
    fn amp_limits_table() {
        use RetryReason::*;
        let now = SystemTime::UNIX_EPOCH;
        let series = "user=111111111111_ws-1: per-user series limit (local limit: 0 global \
                      limit: 3000000 actual local limit: 500000) exceeded";
        let per_metric = "per-metric series limit of 200000 exceeded for metric up";
        let rate = "ingestion rate limit (6666.666666666667) exceeded while adding 499 samples \
                    and 0 metadata";
        let cases: Vec<(u16, &str, Verdict, Verdict)> = vec![
            // (status, body, under reject, under retry)
            (429, series, Verdict::Final, retry(Throttled, None)),
            (429, per_metric, Verdict::Final, retry(Throttled, None)),
            (429, rate, retry(Throttled, None), retry(Throttled, None)),
            (
                429,
                r#"{"message":"Rate exceeded"}"#,
                retry(Throttled, None),
                retry(Throttled, None),
            ),
            (
                400,
                r#"{"__type":"ThrottlingException","message":"limit exceeded"}"#,
                retry(Throttled, None),
                retry(Throttled, None),
            ),
            (400, series, Verdict::Final, Verdict::Final),
            (
                400,
                "series has too many labels (actual: 35, limit: 30)",
                Verdict::Final,
                Verdict::Final,
            ),
            (
                503,
                series,
                retry(ServerError, None),
                retry(ServerError, None),
            ),
        ];
        for (status, body, reject, retried) in cases {
            let a = answer(status, None, body);
            assert_eq!(
                classify(&a, now, LimitPolicy::Reject),
                reject,
                "{status} {body}"
            );
            assert_eq!(
                classify(&a, now, LimitPolicy::Retry),
                retried,
                "{status} {body}"
            );
        }
    }

    #[test]
    fn rejections_are_sorted_by_reason() {
        use Rejection::*;
        let code = |c: u16| StatusCode::from_u16(c).unwrap();
        let cases: &[(u16, &str, Option<Rejection>)] = &[
            (204, "", None),
            (500, "per-user series limit exceeded", None),
            (
                429,
                "ingestion rate limit (6666) exceeded while adding 499 samples",
                None,
            ),
            (429, r#"{"message":"Rate exceeded"}"#, None),
            (408, "", None),
            (
                429,
                "per-user series limit (global limit: 3000000) exceeded",
                Some(SeriesLimit),
            ),
            (
                400,
                "series has too many labels (actual: 35, limit: 30)",
                Some(LabelsPerSeries),
            ),
            (
                400,
                "label name too long: \"aaaa\" metric \"up\"",
                Some(LabelLength),
            ),
            (400, "label value too long", Some(LabelLength)),
            (
                400,
                "err: out of order sample. timestamp=…",
                Some(SampleTimestamp),
            ),
            (400, "duplicate sample for timestamp", Some(SampleTimestamp)),
            (400, "sample timestamp too old", Some(SampleTimestamp)),
            (400, "exemplars limit of 100 exceeded", Some(OtherLimit)),
            (
                403,
                "User is not authorized to perform aps:RemoteWrite",
                Some(Denied),
            ),
            (401, "", Some(Denied)),
            (404, "workspace not found", Some(NotFound)),
            (413, "", Some(TooLarge)),
            (400, "snappy: corrupt input", Some(Other)),
        ];
        for (status, body, want) in cases {
            let got = rejection(code(*status), body.as_bytes(), LimitPolicy::Reject);
            assert_eq!(got, *want, "{status} {body}");
            if *status == 429 {
                let got = rejection(code(*status), body.as_bytes(), LimitPolicy::Retry);
                assert_eq!(
                    got, None,
                    "under retry a 429 is the sender's to retry: {body}"
                );
            }
        }
    }

    #[test]
    fn a_lasting_limit_429_is_relayed_as_400_and_everything_else_as_it_is() {
        use LimitPolicy::*;
        let limit = b"per-user series limit (global limit: 3000000) exceeded";
        let rate = br#"{"message":"ThrottlingException: Rate exceeded"}"#;
        let too_many = StatusCode::TOO_MANY_REQUESTS;
        assert_eq!(
            relayed_status(too_many, limit, Reject),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(relayed_status(too_many, limit, Retry), too_many);
        assert_eq!(
            relayed_status(too_many, rate, Reject),
            too_many,
            "throttling keeps 429"
        );
        for s in [200, 204, 400, 403, 404, 413, 500, 502, 503] {
            let s = StatusCode::from_u16(s).unwrap();
            assert_eq!(relayed_status(s, limit, Reject), s);
        }
    }

    #[test]
    fn backoff_grows_caps_and_respects_retry_after() {
        let ms = Duration::from_millis;
        assert_eq!(backoff(1, 1.0, None), ms(200));
        assert_eq!(backoff(2, 1.0, None), ms(400));
        assert_eq!(backoff(3, 1.0, None), ms(800));
        assert_eq!(backoff(10, 1.0, None), MAX_BACKOFF);
        assert_eq!(backoff(1, 0.0, None), ms(100));
        assert_eq!(backoff(1, 1.0, Some(ms(3000))), ms(3000));
        assert_eq!(backoff(6, 1.0, Some(ms(1))), MAX_BACKOFF);
    }

    #[test]
    fn giving_up_answers_what_the_sender_retries() {
        use RetryReason::*;
        const S503: StatusCode = StatusCode::SERVICE_UNAVAILABLE;
        const S429: StatusCode = StatusCode::TOO_MANY_REQUESTS;
        let table = [
            // (reason, upstream status, --throttle-status, decision)
            (Throttled, S429, S503, GiveUp::Busy(S503)),
            (Throttled, S429, S429, GiveUp::Relay),
            (Throttled, S503, S503, GiveUp::Relay),
            (Throttled, StatusCode::BAD_REQUEST, S429, GiveUp::Busy(S429)),
            (
                Timeout,
                StatusCode::REQUEST_TIMEOUT,
                S429,
                GiveUp::Busy(S503),
            ),
            (
                ExpiredCredentials,
                StatusCode::FORBIDDEN,
                S503,
                GiveUp::CredentialsExpired,
            ),
            (ServerError, StatusCode::BAD_GATEWAY, S503, GiveUp::Relay),
            (
                ServerError,
                StatusCode::INTERNAL_SERVER_ERROR,
                S429,
                GiveUp::Relay,
            ),
        ];
        for (reason, upstream, throttle, want) in table {
            assert_eq!(
                give_up(reason, upstream, throttle),
                want,
                "{reason:?} {upstream}"
            );
        }
        assert_eq!(retry_after_secs(Duration::from_millis(200)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(2100)), 3);
    }
}
