//! The AMP stand-in: keeps every request as it arrived, checks its SigV4 signature, body
//! hash and session token (`verify_signature`), and answers as told — plain, or TLS with HTTP/2
//! by ALPN.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, Version};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::sync::Notify;

use crate::accounts::{ASSUMED_ACCESS_KEY, ASSUMED_SECRET, ASSUMED_TOKEN, REGION, WORKSPACE_PATH};
use crate::serve::{serve_plain, serve_tls};

/// What the AMP stand-in answers.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, &'static str)>,
    pub body: &'static str,
    /// Wait this long before answering.
    pub delay: Duration,
}

impl Default for Reply {
    fn default() -> Self {
        Self {
            status: 204,
            headers: vec![],
            body: "",
            delay: Duration::ZERO,
        }
    }
}

/// Error type of streamed stand-in answers.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A response body the stand-in produces on demand (see [`AmpStandIn::set_streamer`]).
pub type StreamedBody = UnsyncBoxBody<Bytes, BoxError>;
/// Makes the body of each answer while set.
pub type Streamer = Arc<dyn Fn() -> StreamedBody + Send + Sync>;

/// One request as the stand-in saw it.
#[derive(Clone, Debug)]
pub struct Received {
    pub version: Version,
    pub method: http::Method,
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    pub headers: HeaderMap,
    /// The host the request was sent to: `Host` over HTTP/1.1, `:authority` over HTTP/2.
    pub authority: Option<String>,
    pub body: Bytes,
    /// `Ok` if signature, body hash, token, scope and date all check out.
    pub verdict: Result<(), String>,
}

pub struct AmpStandIn {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
    pub reply: Arc<Mutex<Reply>>,
    /// Replies used first, one per request, before falling back to `reply`.
    pub script: Arc<Mutex<std::collections::VecDeque<Reply>>>,
    /// Notified whenever a request has arrived (before the reply is sent).
    pub arrived: Arc<Notify>,
    pub tls_ca_pem: Option<String>,
    /// While set, verified requests are answered with `reply`'s status and headers and this
    /// body (instead of `reply.body`).
    pub streamer: Arc<Mutex<Option<Streamer>>>,
}

impl AmpStandIn {
    pub async fn start() -> Self {
        Self::start_inner(None).await
    }

    /// TLS with a fresh self-signed CA for `localhost`/127.0.0.1, offering h2 and http/1.1.
    pub async fn start_tls() -> Self {
        Self::start_inner(Some(&[b"h2", b"http/1.1"])).await
    }

    /// TLS offering only http/1.1 by ALPN (an HTTP/1.1-only load balancer).
    pub async fn start_tls_http1_only() -> Self {
        Self::start_inner(Some(&[b"http/1.1"])).await
    }

    async fn start_inner(alpn: Option<&[&[u8]]>) -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let reply = Arc::new(Mutex::new(Reply::default()));
        let script = Arc::new(Mutex::new(std::collections::VecDeque::new()));
        let arrived = Arc::new(Notify::new());
        let streamer: Arc<Mutex<Option<Streamer>>> = Arc::new(Mutex::new(None));
        let (r, p, sc, a, st) = (
            received.clone(),
            reply.clone(),
            script.clone(),
            arrived.clone(),
            streamer.clone(),
        );
        let handler = move |req| {
            let (r, p, sc, a, st) = (r.clone(), p.clone(), sc.clone(), a.clone(), st.clone());
            async move { amp_handle(req, &r, &p, &sc, &a, &st).await }
        };
        let (addr, tls_ca_pem) = match alpn {
            Some(alpn) => {
                let (addr, ca) = serve_tls(handler, alpn).await;
                (addr, Some(ca))
            }
            None => (serve_plain(handler).await, None),
        };
        Self {
            addr,
            received,
            reply,
            script,
            arrived,
            tls_ca_pem,
            streamer,
        }
    }

    /// Answers verified requests with bodies made by `make` (status and headers from `reply`).
    pub fn set_streamer(&self, make: impl Fn() -> StreamedBody + Send + Sync + 'static) {
        *self.streamer.lock().unwrap() = Some(Arc::new(make));
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls_ca_pem.is_some() {
            "https"
        } else {
            "http"
        };
        let host = if self.tls_ca_pem.is_some() {
            format!("localhost:{}", self.addr.port())
        } else {
            self.addr.to_string()
        };
        format!("{scheme}://{host}{WORKSPACE_PATH}")
    }

    pub fn set_reply(&self, reply: Reply) {
        *self.reply.lock().unwrap() = reply;
    }

    /// The next requests get these replies, in order; then `reply` again.
    pub fn set_script(&self, replies: Vec<Reply>) {
        *self.script.lock().unwrap() = replies.into();
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }
}

async fn amp_handle(
    req: Request<Incoming>,
    received: &Mutex<Vec<Received>>,
    reply: &Mutex<Reply>,
    script: &Mutex<std::collections::VecDeque<Reply>>,
    arrived: &Notify,
    streamer: &Mutex<Option<Streamer>>,
) -> Response<StreamedBody> {
    let full = |b: Bytes| Full::new(b).map_err(|never| match never {}).boxed_unsync();
    let (parts, body) = req.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let verdict = verify_signature(&parts, &body);
    received.lock().unwrap().push(Received {
        version: parts.version,
        method: parts.method.clone(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: parts.headers.clone(),
        authority: parts.uri.authority().map(|a| a.to_string()).or_else(|| {
            let host = parts.headers.get(http::header::HOST)?;
            host.to_str().ok().map(str::to_string)
        }),
        body,
        verdict: verdict.clone(),
    });
    arrived.notify_waiters();
    if let Err(why) = verdict {
        return Response::builder()
            .status(403)
            .body(full(Bytes::from(why)))
            .unwrap();
    }
    let scripted = script.lock().unwrap().pop_front();
    let reply = scripted.unwrap_or_else(|| reply.lock().unwrap().clone());
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut resp = Response::builder().status(reply.status);
    for (k, v) in &reply.headers {
        resp = resp.header(*k, *v);
    }
    let make = streamer.lock().unwrap().clone();
    match make {
        Some(make) => resp.body(make()).unwrap(),
        None => resp
            .body(full(Bytes::from_static(reply.body.as_bytes())))
            .unwrap(),
    }
}

/// Recomputes the SigV4 signature over exactly the request's `SignedHeaders` with the assumed
/// role's secret and checks scope, date skew, session token and body hash.
pub fn verify_signature(parts: &http::request::Parts, body: &[u8]) -> Result<(), String> {
    use aws_sigv4::http_request::{
        PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign,
    };
    // Over HTTP/2 the host is `:authority` (the URI's authority here); a `Host` header beside
    // it is refused by strict servers (nginx answers 400), so it must not be sent.
    if parts.version == http::Version::HTTP_2 && parts.headers.contains_key(http::header::HOST) {
        return Err("HTTP/2 request carries a Host header beside :authority".into());
    }
    let h = |name: &str| {
        let value = parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        match name {
            "host" => value.or_else(|| parts.uri.authority().map(|a| a.to_string())),
            _ => value,
        }
    };
    let auth = h("authorization").ok_or("missing Authorization")?;
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 Credential=")
        .ok_or("not SigV4")?;
    let (scope, rest) = rest
        .split_once(", SignedHeaders=")
        .ok_or("no SignedHeaders")?;
    let (signed_headers, _sig) = rest.split_once(", Signature=").ok_or("no Signature")?;
    let scope: Vec<&str> = scope.split('/').collect();
    if scope.len() != 5 || scope[0] != ASSUMED_ACCESS_KEY || scope[2] != REGION || scope[3] != "aps"
    {
        return Err(format!("wrong credential scope {scope:?}"));
    }
    if h("x-amz-security-token").as_deref() != Some(ASSUMED_TOKEN) {
        return Err("session token is not the one STS issued".into());
    }
    let body_hash = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body));
    if h("x-amz-content-sha256").as_deref() != Some(body_hash.as_str()) {
        return Err("x-amz-content-sha256 does not match the body".into());
    }
    let date = h("x-amz-date").ok_or("missing x-amz-date")?;
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &date[0..4],
        &date[4..6],
        &date[6..8],
        &date[9..11],
        &date[11..13],
        &date[13..15]
    );
    let time = humantime::parse_rfc3339(&rfc3339).map_err(|e| format!("bad x-amz-date: {e}"))?;
    let skew = SystemTime::now()
        .duration_since(time)
        .unwrap_or_else(|e| e.duration());
    if skew > Duration::from_secs(300) {
        return Err(format!("x-amz-date skewed by {skew:?}"));
    }
    // Re-sign a copy holding only the signed headers the signer does not add itself.
    let regenerated = [
        "authorization",
        "x-amz-date",
        "x-amz-security-token",
        "x-amz-content-sha256",
    ];
    let mut headers = Vec::new();
    for name in signed_headers.split(';') {
        let value = h(name).ok_or_else(|| format!("signed header {name} missing"))?;
        if !regenerated.contains(&name) {
            headers.push((name.to_string(), value));
        }
    }
    let host = h("host").ok_or("missing host")?;
    // With the query string as received: aws-sigv4 canonicalises it (form-decoded, re-encoded,
    // sorted) the way AWS does.
    let uri = format!(
        "http://{host}{}",
        parts
            .uri
            .path_and_query()
            .map_or(parts.uri.path(), |pq| pq.as_str())
    );
    let creds = Credentials::new(
        ASSUMED_ACCESS_KEY,
        ASSUMED_SECRET,
        Some(ASSUMED_TOKEN.into()),
        None,
        "verifier",
    );
    let identity = creds.into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    settings.excluded_headers = None;
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name("aps")
        .time(time)
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let signable = SignableRequest::new(
        parts.method.as_str(),
        uri,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Precomputed(body_hash),
    )
    .map_err(|e| e.to_string())?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| e.to_string())?
        .into_parts();
    let mut check = Request::new(());
    instructions.apply_to_request_http1x(&mut check);
    let expected = check.headers()["authorization"]
        .to_str()
        .unwrap()
        .to_string();
    if expected != auth {
        return Err(format!(
            "signature mismatch: expected {expected}, got {auth}"
        ));
    }
    Ok(())
}
