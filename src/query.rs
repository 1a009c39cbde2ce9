//! The read path (`--enable-query`): the Prometheus HTTP API's query endpoints, forwarded to the
//! workspace's query endpoint and SigV4-signed, so Grafana, `promtool` or any Prometheus API
//! client can query the workspace without AWS plugins.
//!
//! - Only the allowlisted paths ([`route`]); `<name>` in `/api/v1/label/<name>/values` must be a
//!   plain label name (Prometheus's `U__` escaping of UTF-8 names included), taken from the raw
//!   path, so nothing can escape the workspace. The destination is the configured workspace.
//! - `GET`, or `POST` with a form body (`application/x-www-form-urlencoded`, at most
//!   [`MAX_FORM_BODY`] or `--max-body-size` if smaller); the form body is forwarded byte for byte
//!   and its SHA-256 signed.
//! - The query string is decoded with form semantics (`+` is a space) and re-encoded in SigV4's
//!   canonical form (every byte but `A-Z a-z 0-9 - _ . ~` percent-encoded, `a` becomes `a=`), in
//!   the client's order: what is signed is exactly what is sent, whichever way the client
//!   encoded it.
//! - Outbound headers are built fresh: `Accept`, `Accept-Encoding` (so gzip passes through
//!   untouched), `Content-Type` for forms and `User-Agent` with our suffix. Response headers are
//!   relayed from [`RELAYED_RESPONSE_HEADERS`]; the length is relayed when the upstream declared
//!   one (the body's size hint), otherwise the answer is chunked.
//! - Not retried: queries can be expensive, and the client (Grafana) retries or the user does.
//! - The response headers must arrive within `--upstream-timeout`. The body is then streamed as
//!   it arrives, without an overall deadline (a large answer may take long to read at the
//!   client's pace), but cut when the upstream sends nothing for `--upstream-timeout` while the
//!   proxy waits for it ([`Relay`]). A cut stream aborts the response, so the client sees a
//!   truncated answer, never a silently shortened one.
//! - A query takes a request slot (`--max-in-flight-requests`) until its answer has been
//!   relayed completely, and its form body counts against `--max-in-flight-bytes`.
//! - Logged: the route label and the status, never the query text.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};

use crate::body::{BufferedBody, OutboundBody};
use crate::config::UpstreamTarget;
use crate::credentials::{Clock, CredentialCache};
use crate::error::{BoxError, ProxyError, ResponseBody};
use crate::metrics::Metrics;
use crate::proxy::Limits;
use crate::signing::Signer;
use crate::upstream::UpstreamClient;

/// Path suffix of a workspace's remote-write URL; what precedes it is the workspace's base.
pub const REMOTE_WRITE_SUFFIX: &str = "/api/v1/remote_write";
/// Every query path starts with this; a route's query prefix comes before it.
pub const API_PREFIX: &str = "/api/v1/";
/// Largest accepted form body (or `--max-body-size` if smaller). Grafana's longest forms (many
/// `match[]` selectors) are a few kilobytes.
pub const MAX_FORM_BODY: u64 = 1 << 20;
/// Methods the query paths accept.
pub const ALLOW: &str = "GET, POST";
/// Metric label of `/api/v1/label/<name>/values`, one for every name.
pub const LABEL_VALUES: &str = "/api/v1/label/:name/values";
const LABEL_PREFIX: &str = "/api/v1/label/";
const LABEL_SUFFIX: &str = "/values";
const FORM: &str = "application/x-www-form-urlencoded";

/// The fixed query paths (besides [`LABEL_VALUES`]); each is its own metric label.
pub const PATHS: [&str; 7] = [
    "/api/v1/query",
    "/api/v1/query_range",
    "/api/v1/series",
    "/api/v1/labels",
    "/api/v1/metadata",
    "/api/v1/query_exemplars",
    "/api/v1/status/buildinfo",
];

/// Upstream response headers relayed to the client. `Content-Length` follows from the body's
/// size hint; hop-by-hop headers, cookies and AWS's own headers never pass.
pub static RELAYED_RESPONSE_HEADERS: [HeaderName; 5] = [
    header::CONTENT_TYPE,
    header::CONTENT_ENCODING,
    header::VARY,
    header::CACHE_CONTROL,
    header::RETRY_AFTER,
];

/// The metric label of a query path, or `None` for any other path (404). `path` is the raw
/// (still percent-encoded) path of the request.
pub fn route(path: &str) -> Option<&'static str> {
    if let Some(p) = PATHS.iter().find(|p| **p == path) {
        return Some(p);
    }
    let name = path
        .strip_prefix(LABEL_PREFIX)?
        .strip_suffix(LABEL_SUFFIX)?;
    is_label_name(name).then_some(LABEL_VALUES)
}

/// A legacy Prometheus label name, `[a-zA-Z_][a-zA-Z0-9_]*`. Prometheus's escaping of UTF-8
/// names for this path (`U__` followed by `_` for `__` and `_<hex>_` for other characters) stays
/// within that alphabet, so it is accepted too. No `/`, `.` or `%` can pass.
pub fn is_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Where queries go: the workspace's base URL, derived from its remote-write URL.
#[derive(Debug, Clone)]
pub struct QueryTarget {
    /// `scheme://authority`, as in the upstream URL.
    origin: String,
    /// `Host` header sent and signed.
    host_header: HeaderValue,
    /// `/workspaces/<id>`: the upstream path without [`REMOTE_WRITE_SUFFIX`].
    base_path: String,
}

impl QueryTarget {
    /// The query endpoint of the workspace whose remote-write endpoint is `upstream`; its path
    /// must end in `/api/v1/remote_write`.
    pub fn from_upstream(upstream: &UpstreamTarget) -> Result<Self, String> {
        let base = upstream
            .path
            .strip_suffix(REMOTE_WRITE_SUFFIX)
            .filter(|_| upstream.uri.query().is_none())
            .ok_or_else(|| {
                format!(
                    "path {:?} does not end in {REMOTE_WRITE_SUFFIX}, so the workspace's query \
                     endpoint cannot be derived from it",
                    upstream.path
                )
            })?;
        let origin = format!(
            "{}://{}",
            upstream.uri.scheme_str().unwrap_or("https"),
            upstream
                .uri
                .authority()
                .map(|a| a.as_str())
                .unwrap_or_default()
        );
        Ok(Self {
            origin,
            host_header: upstream.host_header.clone(),
            base_path: base.to_string(),
        })
    }

    /// The workspace's base path (`/workspaces/<id>`).
    pub fn base_path(&self) -> &str {
        &self.base_path
    }
}

/// What forwarding a query needs, borrowed from the proxy's state.
pub(crate) struct QueryContext<'a> {
    pub target: &'a QueryTarget,
    pub client: &'a UpstreamClient,
    pub signer: &'a Signer,
    pub credentials: &'a CredentialCache,
    pub clock: &'a dyn Clock,
    /// `--upstream-timeout`: for the response headers, and the longest silence of the body.
    pub upstream_timeout: Duration,
    /// `--max-body-size`; forms are further bounded by [`MAX_FORM_BODY`].
    pub max_body_size: u64,
    pub limits: &'a Limits,
    pub metrics: &'a Metrics,
}

/// Forwards one query request (its path already matched by [`route`], giving `label`) and
/// relays the answer as a stream.
pub(crate) async fn forward<B>(
    ctx: &QueryContext<'_>,
    label: &'static str,
    req: Request<B>,
) -> Result<Response<ResponseBody>, ProxyError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let (parts, body) = req.into_parts();
    let is_post = match parts.method {
        Method::GET => false,
        Method::POST => true,
        method => {
            return Err(ProxyError::MethodNotAllowed {
                method,
                allow: ALLOW,
            });
        }
    };
    let query =
        canonical_query(parts.uri.query().unwrap_or_default()).map_err(ProxyError::BadRequest)?;
    if is_post {
        check_form_headers(&parts.headers)?;
    }
    let limit = MAX_FORM_BODY.min(ctx.max_body_size);
    let declared = declared_length(&parts.headers)?;
    if is_post && declared > Some(limit) {
        return Err(ProxyError::PayloadTooLarge { limit });
    }
    // Fail fast, without reading the body, when there is nothing to sign with.
    ctx.credentials.get()?;
    let slot = ctx.limits.take_slot(ctx.metrics)?;
    let (body, bytes_held) = if is_post {
        ctx.limits
            .read_body(ctx.metrics, body, limit, declared)
            .await?
    } else {
        // A GET's body, if any, is not forwarded (Prometheus ignores it too).
        (BufferedBody::from_bytes(Bytes::new()), None)
    };

    let credentials = ctx.credentials.get()?;
    let mut outbound = build_outbound(ctx.target, &parts, &query, &body, is_post)?;
    ctx.signer
        .sign_reference(
            &mut outbound,
            &credentials,
            body.sha256_hex(),
            ctx.clock.now(),
        )
        .map_err(|e| ProxyError::Signing(e.to_string()))?;
    let answer = ctx
        .client
        .send_streaming(outbound, ctx.upstream_timeout)
        .await?;
    drop(bytes_held);
    let (upstream, incoming) = answer.into_parts();
    log_answer(label, &upstream);
    let mut resp = Response::new(ResponseBody::streamed(Relay::new(
        incoming,
        ctx.upstream_timeout,
        slot,
        label,
    )));
    *resp.status_mut() = upstream.status;
    let h = resp.headers_mut();
    for name in &RELAYED_RESPONSE_HEADERS {
        for v in upstream.headers.get_all(name) {
            h.append(name.clone(), v.clone());
        }
    }
    Ok(resp)
}

fn log_answer(label: &'static str, upstream: &http::response::Parts) {
    let status = upstream.status.as_u16();
    // The AWS error type (e.g. AccessDeniedException: the role lacks aps:QueryMetrics) is safe to
    // log; the body may quote the query, so it is not logged.
    let error_type = upstream
        .headers
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(':').next().unwrap_or(v).trim().to_string());
    match upstream.status {
        s if s.is_success() => tracing::debug!(path = label, status, "query forwarded"),
        // A query Prometheus cannot parse or run: the user's business.
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => {
            tracing::info!(path = label, status, "upstream refused query")
        }
        _ => tracing::warn!(path = label, status, error_type, "upstream rejected query"),
    }
}

/// A form `POST` must say it is a form (the body is forwarded as is, so nothing else may
/// apply to it).
fn check_form_headers(h: &HeaderMap) -> Result<(), ProxyError> {
    let mut types = h.get_all(header::CONTENT_TYPE).iter();
    let ok = match (types.next(), types.next()) {
        (Some(ct), None) => ct.to_str().is_ok_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|media| media.trim().eq_ignore_ascii_case(FORM))
        }),
        _ => false,
    };
    if !ok {
        return Err(ProxyError::UnsupportedMediaType(format!(
            "query POST bodies must be one {FORM} body"
        )));
    }
    for enc in h.get_all(header::CONTENT_ENCODING) {
        if !enc
            .to_str()
            .is_ok_and(|v| v.trim().eq_ignore_ascii_case("identity"))
        {
            return Err(ProxyError::UnsupportedMediaType(
                "query POST bodies must not be compressed".into(),
            ));
        }
    }
    Ok(())
}

fn declared_length(h: &HeaderMap) -> Result<Option<u64>, ProxyError> {
    match h.get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Some)
            .ok_or_else(|| ProxyError::BadRequest("invalid Content-Length".into())),
    }
}

/// The outbound request, built fresh from the allowlist (see the module docs).
fn build_outbound(
    target: &QueryTarget,
    inbound: &http::request::Parts,
    query: &str,
    body: &BufferedBody,
    is_post: bool,
) -> Result<Request<OutboundBody>, ProxyError> {
    // The API part of the path, without the route's prefix (as the router split it).
    let path = inbound.uri.path();
    let api = &path[path.rfind(API_PREFIX).unwrap_or(0)..];
    let mut uri = String::with_capacity(
        target.origin.len() + target.base_path.len() + api.len() + query.len() + 1,
    );
    uri.push_str(&target.origin);
    uri.push_str(&target.base_path);
    uri.push_str(api);
    if !query.is_empty() {
        uri.push('?');
        uri.push_str(query);
    }
    let uri: http::Uri = uri
        .parse()
        .map_err(|e| ProxyError::BadRequest(format!("cannot build the upstream URL: {e}")))?;
    let mut req = Request::new(body.to_outbound());
    *req.uri_mut() = uri;
    *req.method_mut() = if is_post { Method::POST } else { Method::GET };
    let h = req.headers_mut();
    h.insert(header::HOST, target.host_header.clone());
    for name in [header::ACCEPT, header::ACCEPT_ENCODING] {
        // Repeated headers are joined, as HTTP allows for these lists (and SigV4 signs them so).
        let values: Vec<&str> = inbound
            .headers
            .get_all(&name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect();
        if !values.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&values.join(", ")) {
                h.insert(name, v);
            }
        }
    }
    if is_post {
        if let Some(ct) = inbound.headers.get(header::CONTENT_TYPE) {
            h.insert(header::CONTENT_TYPE, ct.clone());
        }
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    h.insert(
        header::USER_AGENT,
        crate::proxy::user_agent(&inbound.headers),
    );
    Ok(req)
}

/// The query string re-encoded canonically (see the module docs): pairs split on `&`, empty
/// pairs dropped, `+` and `%XX` decoded, the result required to be UTF-8, then every byte but
/// the unreserved ones percent-encoded (upper-case hex), and `=` always written. The client's
/// order is kept (SigV4 sorts for the signature; Prometheus reads the first of a repeated
/// `query`, so sorting could change the answer).
pub fn canonical_query(raw: &str) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len() + raw.len() / 4);
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !out.is_empty() {
            out.push('&');
        }
        encode_into(&decode(name)?, &mut out);
        out.push('=');
        encode_into(&decode(value)?, &mut out);
    }
    Ok(out)
}

/// Form decoding: `+` is a space, `%XX` a byte. A `%` not followed by two hex digits is refused:
/// Prometheus (Go's `net/url`) refuses it, while `form_urlencoded` and aws-sigv4 would read it
/// as a literal `%` — rather than pick a reading, the client hears 400.
fn decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() && hex(b[i + 1]).is_some() && hex(b[i + 2]).is_some() => {
                out.push((hex(b[i + 1]).unwrap_or(0) << 4) | hex(b[i + 2]).unwrap_or(0));
                i += 2;
            }
            b'%' => return Err("malformed percent-escape in the query string".to_string()),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| "the query string is not UTF-8 once decoded".to_string())
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

fn encode_into(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
}

/// The upstream's answer body, relayed frame by frame. Holds the request slot until the answer
/// is complete (or the client goes away). Fails the stream when the upstream stays silent for
/// `idle` while the proxy waits for it; time the client takes to read does not count.
pub(crate) struct Relay<B> {
    inner: B,
    idle: Duration,
    /// Armed when the inner body first says "pending" after a frame.
    timer: Pin<Box<Sleep>>,
    waiting: bool,
    label: &'static str,
    relayed: u64,
    _slot: OwnedSemaphorePermit,
}

impl<B> Relay<B> {
    pub(crate) fn new(
        inner: B,
        idle: Duration,
        slot: OwnedSemaphorePermit,
        label: &'static str,
    ) -> Self {
        Self {
            inner,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            waiting: false,
            label,
            relayed: 0,
            _slot: slot,
        }
    }
}

/// The upstream sent nothing for too long in the middle of an answer.
#[derive(Debug, thiserror::Error)]
#[error("upstream sent nothing for {0:?} in the middle of a query answer (--upstream-timeout)")]
pub struct IdleStream(Duration);

impl<B> Body for Relay<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.waiting = false;
                if let Some(data) = frame.data_ref() {
                    this.relayed += data.len() as u64;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                let e: BoxError = e.into();
                tracing::warn!(path = this.label, relayed_bytes = this.relayed, error = %e, "query answer broke off");
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                if !this.waiting {
                    this.waiting = true;
                    let deadline = Instant::now() + this.idle;
                    this.timer.as_mut().reset(deadline);
                }
                match this.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        tracing::warn!(
                            path = this.label,
                            relayed_bytes = this.relayed,
                            "query answer stalled; cut"
                        );
                        Poll::Ready(Some(Err(Box::new(IdleStream(this.idle)))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_allowlisted_paths_route() {
        for p in PATHS {
            assert_eq!(route(p), Some(p));
        }
        for (path, want) in [
            ("/api/v1/label/__name__/values", Some(LABEL_VALUES)),
            ("/api/v1/label/job/values", Some(LABEL_VALUES)),
            ("/api/v1/label/U__http_2e_method/values", Some(LABEL_VALUES)),
            ("/api/v1/label/_/values", Some(LABEL_VALUES)),
            ("/api/v1/label//values", None),
            ("/api/v1/label/../values", None),
            ("/api/v1/label/a/../../values", None),
            ("/api/v1/label/a/b/values", None),
            ("/api/v1/label/%2e%2e/values", None),
            ("/api/v1/label/a%2Fb/values", None),
            ("/api/v1/label/9a/values", None),
            ("/api/v1/label/a-b/values", None),
            ("/api/v1/label/a.b/values", None),
            ("/api/v1/label/job/values/", None),
            ("/api/v1/label/job", None),
            ("/api/v1/label/values", None),
            ("/api/v1/query/", None),
            ("/api/v1/query/../write", None),
            ("//api/v1/query", None),
            ("/api/v1/Query", None),
            ("/api/v1/query_range/x", None),
            ("/api/v1/admin/tsdb/delete_series", None),
            ("/api/v1/rules", None),
            ("/api/v1/targets", None),
            ("/api/v1/status/config", None),
            ("/api/v1/status/flags", None),
            ("/api/v1/write", None),
            ("/api/v1/remote_write", None),
            ("/api/v1/read", None),
            ("/federate", None),
        ] {
            assert_eq!(route(path), want, "{path}");
        }
    }

    #[test]
    fn canonical_query_table() {
        for (raw, want) in [
            ("", ""),
            ("query=up", "query=up"),
            ("query=up+1", "query=up%201"),
            ("query=up%201", "query=up%201"),
            ("query=up%2B1", "query=up%2B1"),
            ("query=a%2bb", "query=a%2Bb"),
            ("a=&b", "a=&b="),
            ("a", "a="),
            ("&&a=1&&", "a=1"),
            (
                "match%5B%5D=up&match[]=process_start_time_seconds%7Bjob%3D%22x%22%7D",
                "match%5B%5D=up&match%5B%5D=process_start_time_seconds%7Bjob%3D%22x%22%7D",
            ),
            ("q=%7Bjob=~\"a|b\"%7D", "q=%7Bjob%3D~%22a%7Cb%22%7D"),
            ("q=%E2%82%AC", "q=%E2%82%AC"),
            ("q=€", "q=%E2%82%AC"),
            ("q=a=b=c", "q=a%3Db%3Dc"),
            ("q=100%25", "q=100%25"),
            ("q=~-._", "q=~-._"),
            ("b=2&a=1&b=1", "b=2&a=1&b=1"),
        ] {
            assert_eq!(canonical_query(raw).as_deref(), Ok(want), "{raw}");
            // Canonical is a fixed point.
            assert_eq!(canonical_query(want).as_deref(), Ok(want), "{want}");
        }
        for bad in ["q=%FF", "q=%C3", "q=100%", "q=%zz", "q=%4", "%=1"] {
            assert!(canonical_query(bad).is_err(), "{bad}");
        }
    }

    /// aws-sigv4 reads the raw query the client sent and our re-encoding of it as the same
    /// pairs: the signature over what we send is the signature over what the client meant.
    #[test]
    fn aws_sigv4_signs_the_raw_and_the_canonical_query_alike() {
        use aws_credential_types::Credentials;
        let signer = Signer::new("us-east-1", "/workspaces/ws-1/api/v1/remote_write");
        let creds = Credentials::new("AKID", "secret", Some("token".into()), None, "t");
        let time = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let sign = |query: &str| {
            let mut req = Request::get(format!(
                "https://aps-workspaces.us-east-1.amazonaws.com/workspaces/ws-1/api/v1/series?{query}"
            ))
            .header("host", "aps-workspaces.us-east-1.amazonaws.com")
            .body(())
            .unwrap();
            signer
                .sign_reference(&mut req, &creds, EMPTY_SHA256, time)
                .unwrap();
            req.headers()["authorization"].clone()
        };
        let mut distinct = std::collections::HashSet::new();
        for raw in [
            "query=up",
            "query=up+1",
            "query=up%2B1",
            "query=sum(rate(x%7Bjob%3D~%22a%7Cb%22%7D%5B5m%5D))",
            "query=sum+by+(job)+(rate(x{job=~%22a|b%22}[5m]))",
            "match[]=up&match[]=process_start_time_seconds{job=%22x%22}&start=1&end=2",
            "match%5B%5D=b&match%5B%5D=a",
            "match[]=a&match[]=b",
            "a=&b",
            "a",
            "q=%E2%82%AC%20%C3%A9",
            "q=a=b",
            "q=100%25",
            "z=1&a=2&m=3",
            "q=~-._*'()!",
        ] {
            let canonical = canonical_query(raw).unwrap();
            assert_eq!(sign(raw), sign(&canonical), "{raw} vs {canonical}");
            distinct.insert(sign(&canonical));
        }
        // Not vacuous: different queries sign differently (a few above are the same pairs).
        assert!(distinct.len() >= 12, "{}", distinct.len());
    }

    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn workspace_base_from_the_remote_write_url() {
        let up = |url: &str| {
            let uri: http::Uri = url.parse().unwrap();
            UpstreamTarget {
                host_header: HeaderValue::from_str(uri.authority().unwrap().as_str()).unwrap(),
                path: uri.path().to_string(),
                plaintext: uri.scheme_str() == Some("http"),
                uri,
            }
        };
        let t = QueryTarget::from_upstream(&up(
            "https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-1/api/v1/remote_write",
        ))
        .unwrap();
        assert_eq!(t.base_path(), "/workspaces/ws-1");
        assert_eq!(t.origin, "https://aps-workspaces.eu-west-1.amazonaws.com");
        let t =
            QueryTarget::from_upstream(&up("http://127.0.0.1:9/w/api/v1/remote_write")).unwrap();
        assert_eq!(t.origin, "http://127.0.0.1:9");
        assert_eq!(t.base_path(), "/w");
        assert!(QueryTarget::from_upstream(&up("https://example.com/api/v1/write")).is_err());
    }
}
