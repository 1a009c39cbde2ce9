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

/// Region of an AMP endpoint host, `None` for any other host. Accepted forms (case-insensitive,
/// a trailing dot allowed):
///
/// | form | example |
/// |---|---|
/// | standard, FIPS | `aps-workspaces[-fips].<region>.amazonaws.com` |
/// | dual-stack (IPv4 and IPv6), FIPS | `aps-workspaces[-fips].<region>.api.aws` |
/// | VPC endpoint (regional or zonal) | `vpce-<id>[-<az>].aps-workspaces.<region>.vpce.amazonaws.com` |
/// | China | `aps-workspaces.<region>.amazonaws.com.cn`, `….api.amazonwebservices.com.cn`, `vpce-….vpce.amazonaws.com.cn` |
/// | GovCloud | the standard and FIPS names with `us-gov-west-1`, `us-gov-east-1` |
pub fn region_from_host(host: &str) -> Option<String> {
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let labels: Vec<&str> = host.split('.').collect();
    let i = labels
        .iter()
        .position(|l| *l == "aps-workspaces" || *l == "aps-workspaces-fips")?;
    let region = *labels.get(i + 1)?;
    let (before, after) = (&labels[..i], &labels[i + 2..]);
    let vpce = match before {
        [] => false,
        // A VPC endpoint's own name (`vpce-<id>` or zonal `vpce-<id>-<az>`), never FIPS.
        [name] if name.starts_with("vpce-") && labels[i] == "aps-workspaces" => true,
        _ => return None,
    };
    let domain_ok = if vpce {
        matches!(
            after,
            ["vpce", "amazonaws", "com"] | ["vpce", "amazonaws", "com", "cn"]
        )
    } else {
        matches!(
            after,
            ["amazonaws", "com"]
                | ["api", "aws"]
                | ["amazonaws", "com", "cn"]
                | ["api", "amazonwebservices", "com", "cn"]
        )
    };
    // The domain must belong to the region's partition (China's names only for cn-*).
    let china = after.last() == Some(&"cn");
    let ok = domain_ok
        && validate_region("region", region).is_ok()
        && (partition_of(region) == "aws-cn") == china;
    ok.then(|| region.to_string())
}

/// The AWS partition of a region name: `aws-cn` (China), `aws-us-gov` (GovCloud), the isolated
/// `aws-iso*` partitions, else `aws`.
pub fn partition_of(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else if region.starts_with("us-isob-") {
        "aws-iso-b"
    } else if region.starts_with("us-iso-") {
        "aws-iso"
    } else if region.starts_with("eu-isoe-") {
        "aws-iso-e"
    } else if region.starts_with("us-isof-") {
        "aws-iso-f"
    } else {
        "aws"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every endpoint form AMP documents, and look-alikes that must not count as one.
    #[test]
    fn every_amp_endpoint_form_gives_its_region() {
        let table = [
            ("aps-workspaces.us-east-1.amazonaws.com", Some("us-east-1")),
            (
                "aps-workspaces-fips.us-east-1.amazonaws.com",
                Some("us-east-1"),
            ),
            ("APS-WORKSPACES.EU-WEST-1.AMAZONAWS.COM.", Some("eu-west-1")),
            // Dual-stack.
            ("aps-workspaces.us-west-2.api.aws", Some("us-west-2")),
            ("aps-workspaces-fips.us-east-2.api.aws", Some("us-east-2")),
            // VPC endpoints: regional and zonal names.
            (
                "vpce-0123456789abcdef0-abcdefgh.aps-workspaces.eu-central-1.vpce.amazonaws.com",
                Some("eu-central-1"),
            ),
            (
                "vpce-0123456789abcdef0-abcdefgh-eu-central-1a.aps-workspaces.eu-central-1.vpce.amazonaws.com",
                Some("eu-central-1"),
            ),
            // China.
            (
                "aps-workspaces.cn-north-1.amazonaws.com.cn",
                Some("cn-north-1"),
            ),
            (
                "aps-workspaces.cn-northwest-1.api.amazonwebservices.com.cn",
                Some("cn-northwest-1"),
            ),
            (
                "vpce-0abc-xyz.aps-workspaces.cn-north-1.vpce.amazonaws.com.cn",
                Some("cn-north-1"),
            ),
            // GovCloud.
            (
                "aps-workspaces.us-gov-west-1.amazonaws.com",
                Some("us-gov-west-1"),
            ),
            (
                "aps-workspaces-fips.us-gov-east-1.amazonaws.com",
                Some("us-gov-east-1"),
            ),
            // Not AMP endpoints.
            ("aps-workspaces.us-east-1.amazonaws.com.evil.example", None),
            ("evil.aps-workspaces.us-east-1.amazonaws.com", None),
            (
                "vpce-1.aps-workspaces-fips.us-east-1.vpce.amazonaws.com",
                None,
            ),
            ("vpce-1.aps-workspaces.us-east-1.amazonaws.com", None),
            ("aps-workspaces.us-east-1.vpce.amazonaws.com", None),
            ("aps-workspaces.cn-north-1.amazonaws.com", None),
            ("aps-workspaces.us-east-1.amazonaws.com.cn", None),
            ("aps-workspaces.us-east-1.aws", None),
            ("aps-workspaces.evil.example.com", None),
            ("aps-workspaces.us-east-1.example.com", None),
            ("aps-workspaces", None),
            ("127.0.0.1", None),
            ("example.com", None),
        ];
        for (host, want) in table {
            assert_eq!(region_from_host(host).as_deref(), want, "{host}");
        }
    }

    #[test]
    fn partitions() {
        for (region, partition) in [
            ("us-east-1", "aws"),
            ("ap-southeast-5", "aws"),
            ("cn-north-1", "aws-cn"),
            ("us-gov-west-1", "aws-us-gov"),
            ("us-iso-east-1", "aws-iso"),
            ("us-isob-east-1", "aws-iso-b"),
            ("eu-isoe-west-1", "aws-iso-e"),
        ] {
            assert_eq!(partition_of(region), partition, "{region}");
        }
    }
}
