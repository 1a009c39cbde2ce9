//! Local peers for the in-process integration tests: an STS stand-in (canned AssumeRole XML,
//! counting calls, enforcing ExternalId), an AMP stand-in (decodes the body, checks the SigV4
//! signature, body hash and session token, answers as told; plain or TLS with HTTP/2 by ALPN),
//! and helpers to start the proxy and talk to it. Everything binds 127.0.0.1:0.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use amp_rw_proxy::app::App;
use amp_rw_proxy::config::{Cli, Config, Environment};
use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use bytes::Bytes;
use clap::Parser;
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};

pub const BASE_ACCESS_KEY: &str = "AKIABASEB0000000000";
pub const BASE_SECRET: &str = "base-secret-DO-NOT-LOG-5b8f1e";
pub const ASSUMED_ACCESS_KEY: &str = "ASIAASSUMEDA00000000";
pub const ASSUMED_SECRET: &str = "assumed-secret-DO-NOT-LOG-9c2d4a";
pub const ASSUMED_TOKEN: &str = "assumed-session-token-DO-NOT-LOG-77e1f0";
pub const ROLE_ARN: &str = "arn:aws:iam::111111111111:role/account_a_role";
pub const EXTERNAL_ID: &str = "ext-id-42";
pub const REGION: &str = "us-east-1";
pub const WORKSPACE_PATH: &str = "/workspaces/ws-0123abcd/api/v1/remote_write";

// ---------------------------------------------------------------------------------------------
// Remote-write bodies

pub fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn len_field(field: u32, bytes: &[u8], out: &mut Vec<u8>) {
    varint(((field << 3) | 2) as u64, out);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// A remote-write 1.0 `WriteRequest` with `series` series of one sample each (timestamped now,
/// so a real receiver accepts it), protobuf-encoded by hand (prompb field numbers), then snappy
/// block-compressed as Prometheus sends it.
pub fn write_request(series: usize) -> (Vec<u8>, Bytes) {
    let now_ms = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut req = Vec::new();
    for i in 0..series {
        let mut ts = Vec::new();
        for (k, v) in [
            ("__name__", "test_metric".to_string()),
            ("instance", format!("host-{i}")),
        ] {
            let mut label = Vec::new();
            len_field(1, k.as_bytes(), &mut label);
            len_field(2, v.as_bytes(), &mut label);
            len_field(1, &label, &mut ts);
        }
        let mut sample = Vec::new();
        sample.push(0x09); // field 1, fixed64 (double)
        sample.extend_from_slice(&(i as f64).to_le_bytes());
        sample.push(0x10); // field 2, varint
        varint(now_ms, &mut sample);
        len_field(2, &sample, &mut ts);
        len_field(1, &ts, &mut req);
    }
    let compressed = snap::raw::Encoder::new()
        .compress_vec(&req)
        .expect("snappy");
    (req, Bytes::from(compressed))
}

// ---------------------------------------------------------------------------------------------
// STS stand-in

/// How the STS stand-in behaves; change it while the test runs.
pub struct StsBehaviour {
    /// Lifetime of issued credentials.
    pub lifetime: Duration,
    /// Refuse every AssumeRole with AccessDenied (trust policy missing).
    pub deny: bool,
    /// ExternalId the "trust policy" requires.
    pub external_id: Option<String>,
    /// Answer every call with 503 ServiceUnavailable (an STS outage).
    pub outage: bool,
    /// Per-role ExternalIds, overriding `external_id` for those roles.
    pub role_external_ids: Vec<(String, String)>,
    /// Roles whose AssumeRole is refused with AccessDenied.
    pub denied_roles: Vec<String>,
}

/// (RoleArn, ExternalId) of one AssumeRole call.
pub type Assumed = (String, Option<String>);

pub struct StsStandIn {
    pub addr: SocketAddr,
    pub calls: Arc<AtomicUsize>,
    pub behaviour: Arc<Mutex<StsBehaviour>>,
    /// Session names seen, in order.
    pub session_names: Arc<Mutex<Vec<String>>>,
    /// (RoleArn, ExternalId) of every AssumeRole, in order.
    pub assumed: Arc<Mutex<Vec<Assumed>>>,
}

impl StsStandIn {
    pub async fn start() -> Self {
        let behaviour = Arc::new(Mutex::new(StsBehaviour {
            lifetime: Duration::from_secs(3600),
            deny: false,
            external_id: Some(EXTERNAL_ID.to_string()),
            outage: false,
            role_external_ids: Vec::new(),
            denied_roles: Vec::new(),
        }));
        let calls = Arc::new(AtomicUsize::new(0));
        let session_names = Arc::new(Mutex::new(Vec::new()));
        let assumed = Arc::new(Mutex::new(Vec::new()));
        let (b, c, s, a) = (
            behaviour.clone(),
            calls.clone(),
            session_names.clone(),
            assumed.clone(),
        );
        let addr = serve_plain(move |req| {
            let (b, c, s, a) = (b.clone(), c.clone(), s.clone(), a.clone());
            async move { sts_handle(req, &b, &c, &s, &a).await }
        })
        .await;
        Self {
            addr,
            calls,
            behaviour,
            session_names,
            assumed,
        }
    }

    /// Every (RoleArn, ExternalId) asked for so far.
    pub fn assumed(&self) -> Vec<Assumed> {
        self.assumed.lock().unwrap().clone()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn set_deny(&self, deny: bool) {
        self.behaviour.lock().unwrap().deny = deny;
    }

    pub fn set_outage(&self, outage: bool) {
        self.behaviour.lock().unwrap().outage = outage;
    }

    pub fn set_lifetime(&self, lifetime: Duration) {
        self.behaviour.lock().unwrap().lifetime = lifetime;
    }
}

async fn sts_handle(
    req: Request<Incoming>,
    behaviour: &Mutex<StsBehaviour>,
    calls: &AtomicUsize,
    session_names: &Mutex<Vec<String>>,
    assumed: &Mutex<Vec<Assumed>>,
) -> Response<Full<Bytes>> {
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if get("Action").as_deref() == Some("GetCallerIdentity") {
        let arn = if auth.contains(&format!("Credential={BASE_ACCESS_KEY}/")) {
            "arn:aws:iam::222222222222:user/account_b"
        } else if auth.contains(&format!("Credential={ASSUMED_ACCESS_KEY}/")) {
            "arn:aws:sts::111111111111:assumed-role/account_a_role/session"
        } else {
            return sts_error(
                403,
                "InvalidClientTokenId",
                "The security token included in the request is invalid",
            );
        };
        let account = arn.split(':').nth(4).unwrap();
        return xml_response(
            200,
            format!(
                r#"<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult><Arn>{arn}</Arn><UserId>AIDEXAMPLE</UserId><Account>{account}</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>r-2</RequestId></ResponseMetadata></GetCallerIdentityResponse>"#
            ),
        );
    }
    if get("Action").as_deref() != Some("AssumeRole") {
        return sts_error(
            400,
            "InvalidAction",
            "only AssumeRole and GetCallerIdentity are implemented",
        );
    }
    calls.fetch_add(1, Ordering::SeqCst);
    if let Some(name) = get("RoleSessionName") {
        session_names.lock().unwrap().push(name);
    }
    let role = get("RoleArn").unwrap_or_default();
    assumed
        .lock()
        .unwrap()
        .push((role.clone(), get("ExternalId")));
    // The caller must sign with Account B's base credentials.
    if !auth.contains(&format!("Credential={BASE_ACCESS_KEY}/")) {
        return sts_error(
            403,
            "InvalidClientTokenId",
            "request not signed with the base credentials",
        );
    }
    let (lifetime, deny, want_ext, outage) = {
        let b = behaviour.lock().unwrap();
        let ext = b
            .role_external_ids
            .iter()
            .find(|(r, _)| *r == role)
            .map(|(_, e)| e.clone())
            .or_else(|| b.external_id.clone());
        (
            b.lifetime,
            b.deny || b.denied_roles.contains(&role),
            ext,
            b.outage,
        )
    };
    if outage {
        return sts_error(503, "ServiceUnavailable", "Service is unavailable");
    }
    if deny {
        return sts_error(
            403,
            "AccessDenied",
            "User: arn:aws:iam::222222222222:user/account_b is not authorized to perform: sts:AssumeRole",
        );
    }
    if want_ext.is_some() && get("ExternalId") != want_ext {
        return sts_error(
            403,
            "AccessDenied",
            "ExternalId does not match the trust policy condition",
        );
    }
    let expiration = humantime::format_rfc3339_seconds(SystemTime::now() + lifetime);
    let xml = format!(
        r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <AssumedRoleUser>
      <AssumedRoleId>AROA3XFRBF535PLBIFPI4:s3-access-example</AssumedRoleId>
      <Arn>arn:aws:sts::111111111111:assumed-role/account_a_role/session</Arn>
    </AssumedRoleUser>
    <Credentials>
      <SecretAccessKey>{ASSUMED_SECRET}</SecretAccessKey>
      <SessionToken>{ASSUMED_TOKEN}</SessionToken>
      <Expiration>{expiration}</Expiration>
      <AccessKeyId>{ASSUMED_ACCESS_KEY}</AccessKeyId>
    </Credentials>
  </AssumeRoleResult>
  <ResponseMetadata><RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ResponseMetadata>
</AssumeRoleResponse>"#
    );
    xml_response(200, xml)
}

fn sts_error(status: u16, code: &str, message: &str) -> Response<Full<Bytes>> {
    xml_response(
        status,
        format!(
            r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>r-1</RequestId></ErrorResponse>"#
        ),
    )
}

fn xml_response(status: u16, xml: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "text/xml")
        .body(Full::new(Bytes::from(xml)))
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// AMP stand-in

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
    let h = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
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

// ---------------------------------------------------------------------------------------------
// Servers

async fn serve_plain<F, Fut, RB>(handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<RB>> + Send + 'static,
    RB: http_body::Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let fut = handler(req);
                    async move { Ok::<_, Infallible>(fut.await) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

async fn serve_tls<F, Fut, RB>(handler: F, alpn: &[&[u8]]) -> (SocketAddr, String)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<RB>> + Send + 'static,
    RB: http_body::Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    let ca =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let cert_der = ca.cert.der().clone();
    let key = rustls_pki_types::PrivateKeyDer::try_from(ca.signing_key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert_der], key)
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handler = handler.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let svc = service_fn(move |req| {
                    let fut = handler(req);
                    async move { Ok::<_, Infallible>(fut.await) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, ca.cert.pem())
}

// ---------------------------------------------------------------------------------------------
// The proxy, in-process

pub struct ProxyUnderTest {
    pub addr: SocketAddr,
    pub app: Arc<App>,
    shutdown: Option<oneshot::Sender<()>>,
    pub served: tokio::task::JoinHandle<amp_rw_proxy::http::server::Drain>,
}

impl ProxyUnderTest {
    /// Starts the proxy with `args` (flags as on the command line) and base credentials
    /// standing in for Account B's, as the default chain would find them.
    pub async fn start(args: &[&str]) -> Self {
        let mut all = vec!["amp-rw-proxy", "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let cli = Cli::try_parse_from(all).expect("flags parse");
        let env = Environment {
            aws_region: None,
            hostname: "test-host".into(),
        };
        let config = Config::from_cli(&cli, &env).expect("valid config");
        let base = Credentials::new(BASE_ACCESS_KEY, BASE_SECRET, None, None, "test-base");
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .credentials_provider(SharedCredentialsProvider::new(base))
            .load()
            .await;
        let app = Arc::new(App::build(&config, &sdk).await.expect("app builds"));
        let listener = TcpListener::bind(config.listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        let serving = app.clone();
        let served = tokio::spawn(async move {
            serving
                .serve(listener, async {
                    let _ = rx.await;
                })
                .await
        });
        Self {
            addr,
            app,
            shutdown: Some(tx),
            served,
        }
    }

    /// Standard flags for a proxy assuming the role via `sts` and forwarding to `amp`.
    pub async fn start_with(sts: &StsStandIn, amp: &AmpStandIn, extra: &[&str]) -> Self {
        Self::start_to(sts, &amp.url(), extra).await
    }

    /// A port nothing listens on: an upstream that refuses connections.
    pub async fn closed_upstream_url() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        format!("http://{addr}{WORKSPACE_PATH}")
    }

    /// Standard flags for a proxy assuming the role via `sts` and forwarding to `upstream_url`.
    pub async fn start_to(sts: &StsStandIn, upstream_url: &str, extra: &[&str]) -> Self {
        let sts_url = sts.url();
        let mut args = vec![
            "--upstream-url",
            upstream_url,
            "--region",
            REGION,
            "--role-arn",
            ROLE_ARN,
            "--external-id",
            EXTERNAL_ID,
            "--sts-endpoint",
            &sts_url,
        ];
        args.extend_from_slice(extra);
        Self::start(&args).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Waits for `/-/ready` to answer 200 (the readiness signal), up to `limit`.
    pub async fn wait_ready(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let r = get(&self.url("/-/ready")).await;
            if r.status == StatusCode::OK {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not ready after {limit:?}: {}",
                r.text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Client helpers

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub fn client() -> hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
> {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http()
}

pub async fn send(req: Request<Full<Bytes>>) -> Answer {
    let resp = client().request(req).await.expect("proxy answers");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub async fn get(url: &str) -> Answer {
    send(Request::get(url).body(Full::new(Bytes::new())).unwrap()).await
}

/// A remote-write POST as Prometheus 2.42 sends it.
pub fn prometheus_post(url: &str) -> http::request::Builder {
    Request::post(url)
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "snappy")
        .header("user-agent", "Prometheus/2.42.0+ds")
        .header("x-prometheus-remote-write-version", "0.1.0")
}

pub async fn write(url: &str, body: Bytes) -> Answer {
    send(prometheus_post(url).body(Full::new(body)).unwrap()).await
}

/// Sends raw bytes on a fresh connection and returns everything read until the server closes
/// or `limit` passes — for requests a well-behaved client library will not produce.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8], limit: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => {
                out.extend_from_slice(&buf[..n]);
                // A complete short response (headers + declared body) is enough.
                if response_complete(&out) {
                    break;
                }
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn response_complete(buf: &[u8]) -> bool {
    let text = String::from_utf8_lossy(buf);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let len = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_string())
        })
        .and_then(|v| v.parse::<usize>().ok());
    len.is_some_and(|l| body.len() >= l)
}

// ---------------------------------------------------------------------------------------------
// A throwaway PKI for inbound TLS tests

/// A CA and certificates it issued, as PEM files in a temporary directory.
pub struct Pki {
    pub dir: tempfile::TempDir,
    ca_params: rcgen::CertificateParams,
    ca_key: rcgen::KeyPair,
}

impl Pki {
    pub fn new(name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} test CA"));
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        Self {
            dir,
            ca_params,
            ca_key,
        }
    }

    pub fn path(&self, file: &str) -> String {
        self.dir.path().join(file).to_str().unwrap().to_string()
    }

    /// Issues `<name>.pem` + `<name>-key.pem` for `localhost`/127.0.0.1.
    pub fn issue(&self, name: &str) -> (String, String) {
        let params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let issuer = rcgen::Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        let (cert_path, key_path) = (
            self.path(&format!("{name}.pem")),
            self.path(&format!("{name}-key.pem")),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    /// An HTTPS client trusting this CA, presenting `client` (cert, key) if given.
    pub fn client(
        &self,
        client: Option<(&str, &str)>,
    ) -> hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Full<Bytes>,
    > {
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pki_types::CertificateDer::pem_file_iter(self.path("ca.pem")).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match client {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let certs = rustls_pki_types::CertificateDer::pem_file_iter(cert)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                let key = rustls_pki_types::PrivateKeyDer::from_pem_file(key).unwrap();
                builder.with_client_auth_cert(certs, key).unwrap()
            }
        };
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only()
            .enable_http1()
            .enable_http2()
            .build();
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(https)
    }
}
