//! SigV4 signing of outbound requests: service `aps`, the workspace's region, the body hash
//! computed once while the body was read (sent as `x-amz-content-sha256`), the session token
//! included in the signature.
//!
//! Two engines produce the same signature:
//! - the reference, the SDK's own signer (`aws_sigv4::http_request::sign`), general but costly
//!   per request (it builds and formats the canonical request through several allocations and
//!   derives the signing key with four HMACs every time — in profiles, as much CPU as hashing a
//!   16 KB body);
//! - the fast path used for every request when the upstream path is plain (unreserved characters
//!   and `/` only, no dot segments — every AMP URL): one canonical-request buffer, aws-lc-rs for
//!   SHA-256/HMAC, and the signing key cached, since it depends only on the secret, the date,
//!   the region and the service.
//!
//! The fast path is checked against the reference in the tests below over many requests (token
//! or not, header sets, whitespace, times across day/month/year boundaries), and independently by
//! botocore in the end-to-end suite.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use aws_credential_types::Credentials;
use aws_lc_rs::{digest, hmac};
use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use http::{HeaderName, HeaderValue, Request, header};

/// SigV4 signing name of Amazon Managed Service for Prometheus.
pub const SERVICE: &str = "aps";

/// Headers never signed, as aws-sigv4 leaves them out by default: the signature goes into
/// `authorization`, intermediaries rewrite `user-agent`, and the others are hop-by-hop/tracing.
const UNSIGNED: [&str; 4] = [
    "authorization",
    "user-agent",
    "x-amzn-trace-id",
    "transfer-encoding",
];
/// Headers the signer itself adds; a copy already on the request is replaced.
const ADDED: [&str; 3] = ["x-amz-content-sha256", "x-amz-date", "x-amz-security-token"];
// The same names as `HeaderName`s built at compile time: inserting by `&str` would parse and
// validate the name on every request.
static X_AMZ_CONTENT_SHA256: HeaderName = HeaderName::from_static("x-amz-content-sha256");
static X_AMZ_DATE: HeaderName = HeaderName::from_static("x-amz-date");
static X_AMZ_SECURITY_TOKEN: HeaderName = HeaderName::from_static("x-amz-security-token");

/// Signs requests for one region.
#[derive(Debug)]
pub struct Signer {
    region: String,
    /// The canonical URI when the fast path applies (see the module docs).
    fast_path: Option<String>,
    key_cache: ArcSwapOption<CachedKey>,
}

#[derive(Debug)]
struct CachedKey {
    /// The credentials the key was derived from (kept alive, compared by pointer).
    credentials: Arc<Credentials>,
    /// `YYYYMMDD`
    date: [u8; 8],
    key: hmac::Key,
    /// The session token as a (sensitive) header value, validated once per credentials rather
    /// than per request: STS tokens are about a kilobyte.
    token: Option<HeaderValue>,
}

/// Signing failed (a header that is not valid text, or a signer error).
#[derive(Debug, thiserror::Error)]
#[error("failed to sign the request: {0}")]
pub struct SigningError(String);

impl Signer {
    /// A signer for `region`, for requests to `path` (the upstream URL's path).
    pub fn new(region: impl Into<String>, path: &str) -> Self {
        Self {
            region: region.into(),
            fast_path: is_plain_path(path).then(|| path.to_string()),
            key_cache: ArcSwapOption::empty(),
        }
    }

    /// The region requests are signed for.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// `true` when requests to this signer's path take the fast path.
    pub fn is_fast(&self) -> bool {
        self.fast_path.is_some()
    }

    /// Adds `Authorization`, `X-Amz-Date`, `X-Amz-Content-SHA256` and (for temporary
    /// credentials) `X-Amz-Security-Token` to `req`. Every header already on `req` is signed
    /// except [`UNSIGNED`] ones.
    pub fn sign<B>(
        &self,
        req: &mut Request<B>,
        credentials: &Arc<Credentials>,
        payload_sha256_hex: &str,
        time: SystemTime,
    ) -> Result<(), SigningError> {
        match &self.fast_path {
            Some(path) if req.uri().path() == path && req.uri().query().is_none() => {
                self.sign_fast(req, credentials, payload_sha256_hex, time)
            }
            _ => self.sign_reference(req, credentials, payload_sha256_hex, time),
        }
    }

    /// The SDK's signer, for any request.
    pub fn sign_reference<B>(
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
            .filter(|(k, _)| !ADDED.contains(&k.as_str()))
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
        for name in ADDED {
            req.headers_mut().remove(name);
        }
        instructions.apply_to_request_http1x(req);
        Ok(())
    }

    fn sign_fast<B>(
        &self,
        req: &mut Request<B>,
        credentials: &Arc<Credentials>,
        payload_sha256_hex: &str,
        time: SystemTime,
    ) -> Result<(), SigningError> {
        let amz_date = amz_date(time);
        let amz_date = amz_date.as_str();
        let date = &amz_date[..8];
        let token = credentials.session_token();

        // Canonical headers: lower-case names (http's are already), values trimmed, sorted.
        let mut headers: Vec<(&str, Cow<'_, str>)> = Vec::with_capacity(req.headers().len() + 3);
        for (name, value) in req.headers() {
            let name = name.as_str();
            if UNSIGNED.contains(&name) || ADDED.contains(&name) {
                continue;
            }
            let value = value
                .to_str()
                .map_err(|_| SigningError(format!("header {name} is not valid text")))?;
            headers.push((name, trim_all(value)));
        }
        headers.push(("x-amz-content-sha256", Cow::Borrowed(payload_sha256_hex)));
        headers.push(("x-amz-date", Cow::Borrowed(amz_date)));
        if let Some(token) = token {
            headers.push(("x-amz-security-token", Cow::Borrowed(token)));
        }
        // Stable sort keeps repeated headers in request order, as SigV4 wants for joining.
        headers.sort_by(|a, b| a.0.cmp(b.0));

        let path = self.fast_path.as_deref().unwrap_or("/");
        let mut canonical = String::with_capacity(512 + payload_sha256_hex.len());
        let mut signed = String::with_capacity(160);
        canonical.push_str(req.method().as_str());
        canonical.push('\n');
        canonical.push_str(path);
        canonical.push_str("\n\n");
        let mut i = 0;
        while i < headers.len() {
            let name = headers[i].0;
            canonical.push_str(name);
            canonical.push(':');
            canonical.push_str(&headers[i].1);
            i += 1;
            while i < headers.len() && headers[i].0 == name {
                canonical.push(',');
                canonical.push_str(&headers[i].1);
                i += 1;
            }
            canonical.push('\n');
            if !signed.is_empty() {
                signed.push(';');
            }
            signed.push_str(name);
        }
        canonical.push('\n');
        canonical.push_str(&signed);
        canonical.push('\n');
        canonical.push_str(payload_sha256_hex);

        let canonical_hash = digest::digest(&digest::SHA256, canonical.as_bytes());
        // Reuse the buffer for the string to sign.
        let mut to_sign = canonical;
        to_sign.clear();
        to_sign.push_str("AWS4-HMAC-SHA256\n");
        to_sign.push_str(amz_date);
        to_sign.push('\n');
        let scope_start = to_sign.len();
        let _ = write!(to_sign, "{date}/{}/{SERVICE}/aws4_request", self.region);
        let scope_end = to_sign.len();
        to_sign.push('\n');
        push_hex(&mut to_sign, canonical_hash.as_ref());

        let key = self.signing_key(credentials, date)?;
        let signature = hmac::sign(&key.key, to_sign.as_bytes());
        let mut authorization = String::with_capacity(256);
        authorization.push_str("AWS4-HMAC-SHA256 Credential=");
        authorization.push_str(credentials.access_key_id());
        authorization.push('/');
        authorization.push_str(&to_sign[scope_start..scope_end]);
        authorization.push_str(", SignedHeaders=");
        authorization.push_str(&signed);
        authorization.push_str(", Signature=");
        push_hex(&mut authorization, signature.as_ref());

        let h = req.headers_mut();
        h.insert(X_AMZ_DATE.clone(), header_value(amz_date)?);
        h.insert(
            X_AMZ_CONTENT_SHA256.clone(),
            header_value(payload_sha256_hex)?,
        );
        match &key.token {
            Some(token) => {
                h.insert(X_AMZ_SECURITY_TOKEN.clone(), token.clone());
            }
            None => {
                h.remove(&X_AMZ_SECURITY_TOKEN);
            }
        }
        let mut auth = header_value(&authorization)?;
        auth.set_sensitive(true);
        h.insert(header::AUTHORIZATION, auth);
        Ok(())
    }

    /// The signing key (and token header) for `credentials` on `date`, derived once per
    /// credentials and day.
    fn signing_key(
        &self,
        credentials: &Arc<Credentials>,
        date: &str,
    ) -> Result<Arc<CachedKey>, SigningError> {
        if let Some(cached) = self.key_cache.load_full() {
            if Arc::ptr_eq(&cached.credentials, credentials) && cached.date == date.as_bytes() {
                return Ok(cached);
            }
        }
        let token = match credentials.session_token() {
            Some(token) => {
                let mut v = header_value(token)?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        let mut secret = Vec::with_capacity(4 + credentials.secret_access_key().len());
        secret.extend_from_slice(b"AWS4");
        secret.extend_from_slice(credentials.secret_access_key().as_bytes());
        let mut key = hmac::Key::new(hmac::HMAC_SHA256, &secret);
        for part in [date, self.region.as_str(), SERVICE, "aws4_request"] {
            let tag = hmac::sign(&key, part.as_bytes());
            key = hmac::Key::new(hmac::HMAC_SHA256, tag.as_ref());
        }
        let mut date_bytes = [0u8; 8];
        date_bytes.copy_from_slice(date.as_bytes());
        let cached = Arc::new(CachedKey {
            credentials: credentials.clone(),
            date: date_bytes,
            key,
            token,
        });
        self.key_cache.store(Some(cached.clone()));
        Ok(cached)
    }
}

/// Paths the fast path can sign as they are: SigV4's canonical URI (normalised, each byte
/// outside the unreserved set percent-encoded) equals the path itself.
fn is_plain_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.contains("//")
        && path
            .split('/')
            .all(|segment| segment != "." && segment != "..")
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~/".contains(&b))
}

/// SigV4's Trimall: spaces (only spaces) trimmed at both ends, runs of spaces collapsed.
fn trim_all(value: &str) -> Cow<'_, str> {
    let value = value.trim_matches(' ');
    if !value.contains("  ") {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len());
    let mut previous_space = false;
    for c in value.chars() {
        if c == ' ' && previous_space {
            continue;
        }
        previous_space = c == ' ';
        out.push(c);
    }
    Cow::Owned(out)
}

fn header_value(s: &str) -> Result<HeaderValue, SigningError> {
    HeaderValue::from_str(s).map_err(|e| SigningError(e.to_string()))
}

/// A SHA-256 digest as lower-case hex, as SigV4 writes hashes.
pub(crate) fn sha256_hex(digest: &digest::Digest) -> String {
    let mut out = String::with_capacity(64);
    push_hex(&mut out, digest.as_ref());
    out
}

/// Appends `bytes` as lower-case hex, 32 bytes (a SHA-256 digest or signature) at a time
/// through a stack buffer rather than a `push` per character.
fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 64];
    for chunk in bytes.chunks(32) {
        for (i, b) in chunk.iter().enumerate() {
            buf[2 * i] = HEX[(b >> 4) as usize];
            buf[2 * i + 1] = HEX[(b & 0xf) as usize];
        }
        out.push_str(std::str::from_utf8(&buf[..2 * chunk.len()]).expect("hex digits are ASCII"));
    }
}

/// `YYYYMMDDTHHMMSSZ` in UTC, written without `format!` (it runs on every request).
fn amz_date(time: SystemTime) -> AmzDate {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    let mut out = [0u8; 16];
    let mut put = |at: usize, width: usize, mut value: u64| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    // Years past 9999 do not fit SigV4's format; a clock that far off fails to sign upstream.
    put(0, 4, y.clamp(0, 9999) as u64);
    put(4, 2, u64::from(m));
    put(6, 2, u64::from(d));
    put(9, 2, rem / 3600);
    put(11, 2, rem % 3600 / 60);
    put(13, 2, rem % 60);
    out[8] = b'T';
    out[15] = b'Z';
    AmzDate(out)
}

/// A formatted `X-Amz-Date` (ASCII digits, `T` and `Z`).
struct AmzDate([u8; 16]);

impl AmzDate {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("digits, T and Z are ASCII")
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const URL: &str =
        "https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-1/api/v1/remote_write";
    const PATH: &str = "/workspaces/ws-1/api/v1/remote_write";

    fn request(extra: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::post(URL)
            .header("host", "aps-workspaces.eu-west-1.amazonaws.com")
            .header("content-type", "application/x-protobuf")
            .header("content-encoding", "snappy")
            .header("content-length", "12345")
            .header("user-agent", "Prometheus/2.42.0 amp-rw-proxy/0.1.0");
        for (k, v) in extra {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn signs_for_aps_in_region_with_token_and_body_hash() {
        let creds = Arc::new(Credentials::new(
            "ASIAEXAMPLE",
            "secret",
            Some("the-token".into()),
            None,
            "test",
        ));
        let mut req = request(&[]);
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000); // 2023-11-14T22:13:20Z
        let signer = Signer::new("eu-west-1", PATH);
        assert!(signer.is_fast());
        signer.sign(&mut req, &creds, &"ab".repeat(32), t).unwrap();
        let h = req.headers();
        let auth = h["authorization"].to_str().unwrap();
        assert!(
            auth.starts_with(
                "AWS4-HMAC-SHA256 Credential=ASIAEXAMPLE/20231114/eu-west-1/aps/aws4_request, "
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
            "content-encoding;content-length;content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token"
        );
        assert_eq!(h["x-amz-date"], "20231114T221320Z");
        assert_eq!(h["x-amz-security-token"], "the-token");
        assert_eq!(h["x-amz-content-sha256"], "ab".repeat(32).as_str());
        assert!(h["authorization"].is_sensitive() && h["x-amz-security-token"].is_sensitive());
    }

    /// The fast path and the SDK's signer agree, request for request.
    #[test]
    fn fast_path_matches_the_sdk_signer() {
        let with_token = Arc::new(Credentials::new(
            "ASIAEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            Some("FwoGZXIvYXdzE//token+with/slashes==".into()),
            None,
            "test",
        ));
        let without_token = Arc::new(Credentials::new(
            "AKIDEXAMPLE",
            "s3cr3t",
            None,
            None,
            "test",
        ));
        let extras: Vec<Vec<(&str, &str)>> = vec![
            vec![],
            vec![("x-prometheus-remote-write-version", "0.1.0")],
            vec![(
                "content-type",
                "application/x-protobuf;proto=io.prometheus.write.v2.Request",
            )],
            vec![("x-custom", "  padded   value  with   runs ")],
            vec![("x-repeated", "one"), ("x-repeated", "two")],
            vec![
                ("x-amz-date", "19700101T000000Z"),
                ("authorization", "forged"),
            ],
            vec![("x-amzn-trace-id", "Root=1-abc"), ("x-empty", "")],
        ];
        let times = [
            0u64,
            951_782_400,   // 2000-02-29 leap day
            1_700_000_000, // 2023-11-14
            1_704_067_199, // 2023-12-31T23:59:59 — year boundary
            1_704_067_200,
            4_102_444_800, // 2100-01-01
        ];
        let mut checked = 0;
        for region in ["eu-west-1", "us-gov-west-1"] {
            let signer = Signer::new(region, PATH);
            for creds in [&with_token, &without_token] {
                for extra in &extras {
                    for t in times {
                        let time = UNIX_EPOCH + Duration::from_secs(t);
                        let hash = hex::encode(digest::digest(&digest::SHA256, &t.to_le_bytes()));
                        let mut fast = request(extra);
                        let mut reference = request(extra);
                        signer.sign(&mut fast, creds, &hash, time).unwrap();
                        signer
                            .sign_reference(&mut reference, creds, &hash, time)
                            .unwrap();
                        for h in [
                            "authorization",
                            "x-amz-date",
                            "x-amz-content-sha256",
                            "x-amz-security-token",
                        ] {
                            assert_eq!(
                                fast.headers().get(h),
                                reference.headers().get(h),
                                "{h} for {extra:?} at {t} in {region}"
                            );
                        }
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 2 * 2 * 7 * 6);
    }

    #[test]
    fn the_signing_key_is_cached_per_credentials_and_day() {
        let signer = Signer::new("us-east-1", PATH);
        let a = Arc::new(Credentials::new("AK", "one", None, None, "t"));
        let b = Arc::new(Credentials::new("AK", "two", None, None, "t"));
        let key = |c: &Arc<Credentials>, day: &str| signer.signing_key(c, day).unwrap();
        let k1 = key(&a, "20240101");
        assert!(Arc::ptr_eq(&k1, &key(&a, "20240101")));
        assert!(!Arc::ptr_eq(&k1, &key(&a, "20240102")));
        assert!(!Arc::ptr_eq(&key(&a, "20240102"), &key(&b, "20240102")));
    }

    #[test]
    fn the_session_token_follows_the_credentials() {
        let signer = Signer::new("us-east-1", PATH);
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let token_sent = |credentials: Credentials| {
            let mut req = Request::post(URL).body(()).unwrap();
            signer
                .sign(&mut req, &Arc::new(credentials), &"0".repeat(64), now)
                .unwrap();
            let token = req.headers().get("x-amz-security-token").cloned();
            assert!(token.as_ref().is_none_or(|t| t.is_sensitive()));
            token.map(|t| t.to_str().unwrap().to_string())
        };
        let with = |token: &str| Credentials::new("AK", "s", Some(token.into()), None, "t");
        assert_eq!(token_sent(with("one")).as_deref(), Some("one"));
        // Same day, new credentials (a refresh): the new token, not the cached one.
        assert_eq!(token_sent(with("two")).as_deref(), Some("two"));
        assert_eq!(
            token_sent(Credentials::new("AK", "s", None, None, "t")),
            None
        );
    }

    #[test]
    fn unusual_paths_use_the_sdk_signer() {
        for path in ["/a b", "/a/../b", "/a//b", "/%41", "relative", "/a/./b"] {
            assert!(!is_plain_path(path), "{path}");
        }
        assert!(is_plain_path(
            "/workspaces/ws-0a1b-2c3d/api/v1/remote_write"
        ));
        assert!(is_plain_path("/"));
    }

    #[test]
    fn dates_format_like_sigv4() {
        let cases = [
            (0, "19700101T000000Z"),
            (951_782_400, "20000229T000000Z"),
            (1_700_000_000, "20231114T221320Z"),
            (1_704_067_199, "20231231T235959Z"),
            (4_102_444_800, "21000101T000000Z"),
        ];
        for (secs, want) in cases {
            assert_eq!(
                amz_date(UNIX_EPOCH + Duration::from_secs(secs)).as_str(),
                want
            );
        }
    }

    #[test]
    fn trim_all_matches_sigv4() {
        assert_eq!(trim_all("  a  b   c "), "a b c");
        assert_eq!(trim_all("plain"), "plain");
        assert_eq!(trim_all("\ttab\t"), "\ttab\t");
    }
}
