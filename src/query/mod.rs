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
//!   relayed from [`RELAYED_QUERY_HEADERS`]; the length is relayed when the upstream declared
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

pub mod canonical;
pub mod relay;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::Body;

pub use canonical::canonical_query;
use relay::Relay;

use crate::aws::{CredentialCache, Signer};
use crate::config::QueryTarget;
use crate::http::body::{BufferedBody, Layout, OutboundBody};
use crate::http::headers::{declared_length, user_agent};
use crate::http::{Forwarding, ProxyError, ResponseBody};

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
pub static RELAYED_QUERY_HEADERS: [HeaderName; 5] = [
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
    crate::remote_write::is_label_name(name).then_some(LABEL_VALUES)
}

/// What forwarding a query needs, borrowed from the proxy's state.
pub(crate) struct QueryContext<'a> {
    pub target: &'a QueryTarget,
    pub signer: &'a Signer,
    pub credentials: &'a CredentialCache,
    /// Client, clock, bounds and limits shared with the write path.
    pub forwarding: &'a Forwarding,
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
    let limit = MAX_FORM_BODY.min(ctx.forwarding.max_body_size);
    let declared = declared_length(&parts.headers)?;
    if is_post && declared > Some(limit) {
        return Err(ProxyError::PayloadTooLarge { limit });
    }
    // Fail fast, without reading the body, when there is nothing to sign with.
    ctx.credentials.get()?;
    let slot = ctx.forwarding.limits.take_slot(&ctx.forwarding.metrics)?;
    let (body, bytes_held) = if is_post {
        ctx.forwarding
            .limits
            .read_body(
                &ctx.forwarding.metrics,
                body,
                limit,
                declared,
                // The form is parsed to be canonicalised.
                Layout::Contiguous,
            )
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
            ctx.forwarding.clock.now(),
        )
        .map_err(|e| ProxyError::Signing(e.to_string()))?;
    let answer = ctx
        .forwarding
        .client
        .send_streaming(outbound, ctx.forwarding.upstream_timeout)
        .await?;
    drop(bytes_held);
    let (upstream, incoming) = answer.into_parts();
    log_answer(label, &upstream);
    let mut resp = Response::new(ResponseBody::streamed(Relay::new(
        incoming,
        ctx.forwarding.upstream_timeout,
        slot,
        label,
    )));
    *resp.status_mut() = upstream.status;
    let h = resp.headers_mut();
    for name in &RELAYED_QUERY_HEADERS {
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
    h.insert(header::USER_AGENT, user_agent(&inbound.headers));
    Ok(req)
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
}
