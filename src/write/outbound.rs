//! The outbound request, built fresh for every attempt from an allowlist of the inbound
//! headers; the destination comes from configuration only.

use http::{HeaderMap, HeaderValue, Method, Request, header};

use crate::config::UpstreamTarget;
use crate::http::body::{BufferedBody, OutboundBody};
use crate::http::headers::user_agent;

/// Copied upstream (and signed) when the sender gives it.
pub(crate) const REMOTE_WRITE_VERSION: header::HeaderName =
    header::HeaderName::from_static("x-prometheus-remote-write-version");
pub(crate) const PROTOBUF: &str = "application/x-protobuf";
pub(crate) const SNAPPY: &str = "snappy";

/// The outbound request, built fresh: only allowlisted inbound headers are carried over;
/// `Authorization`, `Cookie`, `Host`, hop-by-hop and `X-Amz-*` headers never are. The
/// destination comes from configuration only.
pub fn build_outbound(
    target: &UpstreamTarget,
    inbound: &HeaderMap,
    body: &BufferedBody,
) -> Request<OutboundBody> {
    let mut req = Request::new(body.to_outbound());
    *req.method_mut() = Method::POST;
    *req.uri_mut() = target.uri.clone();
    let h = req.headers_mut();
    h.insert(header::HOST, target.host_header.clone());
    let content_type = inbound
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or(HeaderValue::from_static(PROTOBUF));
    h.insert(header::CONTENT_TYPE, content_type);
    // Remote-write bodies are always snappy; say so even if the sender did not.
    h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(SNAPPY));
    if let Some(v) = inbound.get(&REMOTE_WRITE_VERSION) {
        h.insert(REMOTE_WRITE_VERSION, v.clone());
    }
    h.insert(header::USER_AGENT, user_agent(inbound));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    req
}
