//! Small pieces of request-header knowledge both the write and the read path use.

use http::{HeaderMap, HeaderValue, header};

use super::error::ProxyError;

/// Appended to the sender's `User-Agent`.
pub const USER_AGENT_SUFFIX: &str = concat!("amp-rw-proxy/", env!("CARGO_PKG_VERSION"));

/// The `Content-Length` the client declared, if any; a malformed one is a 400.
pub fn declared_length(h: &HeaderMap) -> Result<Option<u64>, ProxyError> {
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

/// The sender's `User-Agent` with ours appended (ours alone if it sent none).
pub fn user_agent(inbound: &HeaderMap) -> HeaderValue {
    match inbound
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        Some(ua) if !ua.trim().is_empty() => {
            HeaderValue::from_str(&format!("{} {USER_AGENT_SUFFIX}", ua.trim()))
                .unwrap_or(HeaderValue::from_static(USER_AGENT_SUFFIX))
        }
        _ => HeaderValue::from_static(USER_AGENT_SUFFIX),
    }
}
