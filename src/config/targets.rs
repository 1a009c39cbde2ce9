//! Where requests go: the workspace's remote-write endpoint ([`UpstreamTarget`]) and its query
//! endpoint ([`QueryTarget`]), both fixed at startup from configuration: the proxy never takes a
//! destination from a request.

use http::{HeaderValue, Uri};

use super::validate::validate_region;

/// The upstream remote-write endpoint, fixed at startup. The proxy never derives the
/// destination from the inbound request, so it cannot be used as an open proxy.
#[derive(Debug, Clone)]
pub struct UpstreamTarget {
    /// Full URI, normalised (default port removed so the signed `host` matches what is sent).
    pub uri: Uri,
    /// Value of the `Host` header sent and signed.
    pub host_header: HeaderValue,
    /// The URI's path, also accepted as an inbound path (drop-in for aws-sigv4-proxy users).
    pub path: String,
    /// `true` for `http://` (testing only).
    pub plaintext: bool,
}
/// Path suffix of a workspace's remote-write URL; what precedes it is the workspace's base.
pub const REMOTE_WRITE_SUFFIX: &str = "/api/v1/remote_write";

/// Where queries go: the workspace's base URL, derived from its remote-write URL.
#[derive(Debug, Clone)]
pub struct QueryTarget {
    /// `scheme://authority`, as in the upstream URL.
    pub origin: String,
    /// `Host` header sent and signed.
    pub host_header: HeaderValue,
    /// `/workspaces/<id>`: the upstream path without [`REMOTE_WRITE_SUFFIX`].
    pub base_path: String,
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

pub(crate) fn parse_upstream(what: &str, url: &str) -> Result<UpstreamTarget, String> {
    let err = |why: &str| format!("{what} {url:?}: {why}");
    let uri: Uri = url.parse().map_err(|e| err(&format!("not a URL ({e})")))?;
    let plaintext = match uri.scheme_str() {
        Some("https") => false,
        Some("http") => true,
        _ => {
            return Err(err(
                "scheme must be https:// (or http:// for local testing)",
            ));
        }
    };
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| err("missing host"))?;
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(err("credentials in the URL are not supported"));
    }
    if uri.query().is_some() {
        return Err(err("a query string is not expected in a remote-write URL"));
    }
    let default_port = if plaintext { 80 } else { 443 };
    // Drop an explicit default port: the signed `host` must equal the `Host` hyper sends.
    let authority = match uri.port_u16() {
        Some(p) if p != default_port => format!("{host}:{p}"),
        _ => host.to_string(),
    };
    let path = match uri.path() {
        "" => "/".to_string(),
        p => p.to_string(),
    };
    let normalised: Uri = format!(
        "{}://{authority}{path}",
        uri.scheme_str().unwrap_or("https")
    )
    .parse()
    .map_err(|e| err(&format!("not a URL ({e})")))?;
    Ok(UpstreamTarget {
        host_header: HeaderValue::from_str(&authority).map_err(|_| err("invalid host"))?,
        uri: normalised,
        path,
        plaintext,
    })
}

/// Region of an AMP endpoint host: `aps-workspaces.<region>.amazonaws.com`,
/// `aps-workspaces-fips.<region>.amazonaws.com`, VPC endpoint names such as
/// `vpce-0abc.aps-workspaces.<region>.vpce.amazonaws.com`, and the `.amazonaws.com.cn` partition.
pub fn region_from_host(host: &str) -> Option<String> {
    let labels: Vec<&str> = host.split('.').collect();
    let i = labels.iter().position(|l| {
        l.eq_ignore_ascii_case("aps-workspaces") || l.eq_ignore_ascii_case("aps-workspaces-fips")
    })?;
    let region = labels.get(i + 1)?;
    let rest = &labels[i + 2..];
    let is_aws = rest.first().is_some_and(|l| *l == "amazonaws")
        || (rest.first().is_some_and(|l| *l == "vpce")
            && rest.get(1).is_some_and(|l| *l == "amazonaws"));
    (is_aws && validate_region("region", region).is_ok()).then(|| region.to_ascii_lowercase())
}
