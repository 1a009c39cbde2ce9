//! SigV4 signing of outbound requests with the SDK's own signer (`aws-sigv4`).
//!
//! Service `aps`, the workspace's region, the body hash computed once while the body was read
//! (passed as a precomputed payload hash and sent as `x-amz-content-sha256`), the session token
//! included in the signature.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use http::Request;

/// SigV4 signing name of Amazon Managed Service for Prometheus.
pub const SERVICE: &str = "aps";

/// Signs requests for one region.
#[derive(Debug, Clone)]
pub struct Signer {
    region: String,
}

/// Signing failed (a header that is not valid text, or a signer error).
#[derive(Debug, thiserror::Error)]
#[error("failed to sign the request: {0}")]
pub struct SigningError(String);

impl Signer {
    /// A signer for `region`.
    pub fn new(region: impl Into<String>) -> Self {
        Self {
            region: region.into(),
        }
    }

    /// The region requests are signed for.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Adds `Authorization`, `X-Amz-Date`, `X-Amz-Content-SHA256` and (for temporary
    /// credentials) `X-Amz-Security-Token` to `req`. Every header already on `req` is signed
    /// except those aws-sigv4 leaves out on purpose (`User-Agent`, which intermediaries rewrite).
    pub fn sign<B>(
        &self,
        req: &mut Request<B>,
        credentials: &Credentials,
        payload_sha256_hex: &str,
        time: SystemTime,
    ) -> Result<(), SigningError> {
        let identity = credentials.clone().into();
        let mut settings = SigningSettings::default();
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(SERVICE)
            .time(time)
            .settings(settings)
            .build()
            .map_err(|e| SigningError(e.to_string()))?
            .into();
        let headers = req
            .headers()
            .iter()
            .map(|(k, v)| {
                v.to_str()
                    .map(|v| (k.as_str(), v))
                    .map_err(|_| SigningError(format!("header {k} is not valid text")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let uri = req.uri().to_string();
        let signable = SignableRequest::new(
            req.method().as_str(),
            uri,
            headers.into_iter(),
            SignableBody::Precomputed(payload_sha256_hex.to_string()),
        )
        .map_err(|e| SigningError(e.to_string()))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| SigningError(e.to_string()))?
            .into_parts();
        instructions.apply_to_request_http1x(req);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn signs_for_aps_in_region_with_token_and_body_hash() {
        let creds = Credentials::new(
            "ASIAEXAMPLE",
            "secret",
            Some("the-token".into()),
            None,
            "test",
        );
        let mut req = Request::post(
            "https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-1/api/v1/remote_write",
        )
        .header("host", "aps-workspaces.eu-west-1.amazonaws.com")
        .header("content-type", "application/x-protobuf")
        .header("user-agent", "Prometheus/2.42.0")
        .body(())
        .unwrap();
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000); // 2023-11-14T22:13:20Z
        Signer::new("eu-west-1")
            .sign(&mut req, &creds, &"ab".repeat(32), t)
            .unwrap();
        let h = req.headers();
        let auth = h["authorization"].to_str().unwrap();
        assert!(
            auth.starts_with(
                "AWS4-HMAC-SHA256 Credential=ASIAEXAMPLE/20231114/eu-west-1/aps/aws4_request"
            ),
            "{auth}"
        );
        let signed = auth
            .split("SignedHeaders=")
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap();
        assert_eq!(
            signed,
            "content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token"
        );
        assert_eq!(h["x-amz-date"], "20231114T221320Z");
        assert_eq!(h["x-amz-security-token"], "the-token");
        assert_eq!(h["x-amz-content-sha256"], "ab".repeat(32).as_str());
    }
}
