//! The one place where failures become HTTP responses.
//!
//! The rule: a sender must retry whatever *we* failed at (credentials, STS, connecting,
//! timeouts) so those are 5xx; 4xx only for requests that can never succeed however often they
//! are retried. Prometheus drops a batch on 4xx and retries on 5xx, so this table decides
//! whether samples are kept.

use std::time::Duration;

use http::{HeaderValue, Response, StatusCode, header};

use super::response::ResponseBody;
use crate::aws::CredentialsUnavailable;

/// Seconds senders are asked to wait before retrying while credentials are unavailable.
pub const CREDENTIALS_RETRY_AFTER_SECS: u64 = 5;
/// Seconds senders are asked to wait when the proxy sheds load.
pub const OVERLOAD_RETRY_AFTER_SECS: u64 = 1;

/// Everything that can go wrong handling a request.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Inbound authentication required and missing or wrong.
    #[error("authentication required")]
    Unauthorized {
        /// `WWW-Authenticate` challenge.
        challenge: &'static str,
    },
    /// Unknown path.
    #[error("not found: remote-write is accepted on {0}")]
    NotFound(String),
    /// Known path, wrong method.
    #[error("method {method} not allowed; use {allow}")]
    MethodNotAllowed {
        /// The method used.
        method: http::Method,
        /// Allowed methods, for the `Allow` header.
        allow: &'static str,
    },
    /// Body larger than `--max-body-size`.
    #[error("request body larger than the limit of {limit} bytes (--max-body-size)")]
    PayloadTooLarge {
        /// The limit.
        limit: u64,
    },
    /// Wrong `Content-Type` or `Content-Encoding`.
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    /// The remote-write payload is invalid (`--validate`), or cannot be decoded for a
    /// rewrite (`--external-label`). The reason already says which protocol version.
    #[error("{0}")]
    InvalidPayload(String),
    /// The request itself is broken (e.g. a malformed header).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The client stopped sending mid-body. It will not see the answer, but it is logged.
    #[error("client aborted the request body: {0}")]
    ClientAborted(String),
    /// No valid credentials (STS refused, or not fetched yet).
    #[error("{0}")]
    CredentialsUnavailable(String),
    /// Signing failed.
    #[error("{0}")]
    Signing(String),
    /// A bug or a panic of ours (e.g. the payload-processing task died): 500, so the sender
    /// retries.
    #[error("internal error: {0}")]
    Internal(String),
    /// Could not connect (DNS, TCP, TLS) to the upstream.
    #[error("cannot reach upstream: {0}")]
    UpstreamConnect(String),
    /// The egress proxy is down, refused the tunnel or our credentials: 503, so the sender
    /// retries (the proxy is ours to fix, not the request).
    #[error("{0}")]
    EgressProxy(String),
    /// Connected, but the exchange failed.
    #[error("upstream exchange failed: {0}")]
    Upstream(String),
    /// No complete answer within the attempt's time (`--upstream-timeout`, or what was left
    /// of `--retry-deadline`).
    #[error("upstream did not answer within {0:?} (--upstream-timeout / --retry-deadline)")]
    UpstreamTimeout(Duration),
    /// The upstream kept throttling (or timing out with 408) past `--retry-deadline`; answered
    /// as `--throttle-status` (throttling) or 503 (408), with `Retry-After`.
    #[error("upstream is throttling or busy: {detail}")]
    Throttled {
        /// 503 (default) or 429.
        status: StatusCode,
        /// Sent as `Retry-After`.
        retry_after_secs: u64,
        /// The upstream's status and message.
        detail: String,
    },
    /// Over `--max-in-flight-requests` or `--max-in-flight-bytes`.
    #[error("proxy overloaded: too many in-flight {limit}; retry later")]
    Overloaded {
        /// `requests` or `bytes`.
        limit: &'static str,
    },
    /// The client did not send its whole body within `--client-body-timeout`.
    #[error("request body not received within {0:?} (--client-body-timeout)")]
    ClientBodyTimeout(Duration),
}

/// No usable credentials: 503, with the refresher's reason.
impl From<CredentialsUnavailable> for ProxyError {
    fn from(e: CredentialsUnavailable) -> Self {
        ProxyError::CredentialsUnavailable(e.to_string())
    }
}

impl ProxyError {
    /// The status code sent for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ProxyError::NotFound(_) => StatusCode::NOT_FOUND,
            ProxyError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            // Resending the same bytes can never succeed: 400, so the sender drops the batch.
            ProxyError::BadRequest(_)
            | ProxyError::ClientAborted(_)
            | ProxyError::InvalidPayload(_) => StatusCode::BAD_REQUEST,
            ProxyError::CredentialsUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Signing(_) | ProxyError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::UpstreamConnect(_) | ProxyError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Throttled { status, .. } => *status,
            // Not the sender's fault, and worth retrying: 503, never a 4xx the sender drops.
            ProxyError::Overloaded { .. } | ProxyError::ClientBodyTimeout(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::EgressProxy(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The response: status, a one-line plain-text reason, and `Retry-After`/`Allow` where due.
    pub fn into_response(self) -> Response<ResponseBody> {
        let status = self.status();
        let mut reason = self.to_string().replace(['\r', '\n'], " ");
        reason.push('\n');
        let mut resp = Response::new(ResponseBody::full(reason));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        match &self {
            ProxyError::CredentialsUnavailable(_) => {
                h.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(CREDENTIALS_RETRY_AFTER_SECS),
                );
            }
            ProxyError::Throttled {
                retry_after_secs, ..
            } => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            ProxyError::Overloaded { .. } | ProxyError::ClientBodyTimeout(_) => {
                h.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(OVERLOAD_RETRY_AFTER_SECS),
                );
            }
            ProxyError::MethodNotAllowed { allow, .. } => {
                h.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            ProxyError::Unauthorized { challenge } => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(challenge),
                );
            }
            _ => {}
        }
        resp
    }
}

/// A failed request as the router logs it: the error, and how long the upstream took if it was
/// involved.
#[derive(Debug)]
pub struct Failure {
    /// What went wrong (and so the response).
    pub error: ProxyError,
    /// Time spent on the upstream, when it was asked.
    pub upstream_latency: Option<Duration>,
}

impl From<ProxyError> for Failure {
    fn from(error: ProxyError) -> Self {
        Self {
            error,
            upstream_latency: None,
        }
    }
}

/// "outer: inner: root" — hyper's top-level messages alone are too vague to act on.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let msg = s.to_string();
        if !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_failures_are_retryable_and_only_hopeless_requests_are_4xx() {
        let d = Duration::from_secs(1);
        let table: Vec<(ProxyError, u16)> = vec![
            (ProxyError::NotFound("/api/v1/write".into()), 404),
            (
                ProxyError::Unauthorized {
                    challenge: "Bearer",
                },
                401,
            ),
            (
                ProxyError::MethodNotAllowed {
                    method: http::Method::GET,
                    allow: "POST",
                },
                405,
            ),
            (ProxyError::PayloadTooLarge { limit: 1 }, 413),
            (ProxyError::UnsupportedMediaType("x".into()), 415),
            (ProxyError::BadRequest("x".into()), 400),
            (ProxyError::InvalidPayload("x".into()), 400),
            (
                ProxyError::CredentialsUnavailable("AccessDenied".into()),
                503,
            ),
            (ProxyError::Signing("x".into()), 500),
            (ProxyError::Internal("x".into()), 500),
            (ProxyError::UpstreamConnect("refused".into()), 502),
            (ProxyError::Upstream("reset".into()), 502),
            (
                ProxyError::EgressProxy("cannot reach the egress proxy".into()),
                503,
            ),
            (ProxyError::UpstreamTimeout(d), 504),
            (
                ProxyError::Throttled {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    retry_after_secs: 3,
                    detail: "x".into(),
                },
                503,
            ),
            (
                ProxyError::Throttled {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    retry_after_secs: 3,
                    detail: "x".into(),
                },
                429,
            ),
            (ProxyError::Overloaded { limit: "bytes" }, 503),
            (ProxyError::ClientBodyTimeout(d), 503),
        ];
        for (err, code) in table {
            let name = format!("{err:?}");
            let resp = err.into_response();
            assert_eq!(resp.status().as_u16(), code, "{name}");
            assert_eq!(
                resp.headers()[header::CONTENT_TYPE],
                "text/plain; charset=utf-8"
            );
        }
    }

    #[test]
    fn credential_failures_ask_for_a_retry_later() {
        let resp = ProxyError::CredentialsUnavailable("x".into()).into_response();
        assert_eq!(resp.headers()[header::RETRY_AFTER], "5");
        let resp = ProxyError::Overloaded { limit: "requests" }.into_response();
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        let throttled = ProxyError::Throttled {
            status: StatusCode::SERVICE_UNAVAILABLE,
            retry_after_secs: 9,
            detail: "x".into(),
        };
        assert_eq!(
            throttled.into_response().headers()[header::RETRY_AFTER],
            "9"
        );
        let resp = ProxyError::MethodNotAllowed {
            method: http::Method::GET,
            allow: "POST",
        }
        .into_response();
        assert_eq!(resp.headers()[header::ALLOW], "POST");
    }

    #[test]
    fn reason_is_one_line() {
        use http_body_util::BodyExt;
        let resp = ProxyError::Upstream("a\nb\r\nc".into()).into_response();
        let body = futures_executor(resp.into_body().collect()).unwrap();
        assert_eq!(body.to_bytes(), "upstream exchange failed: a b  c\n");
    }

    fn futures_executor<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }
}
