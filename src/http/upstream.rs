//! The pooled HTTPS client to the workspace, and relaying its answer.
//!
//! rustls (aws-lc-rs provider) with the system roots, Mozilla's roots and `--upstream-ca-file`;
//! HTTP/1.1, or with `--upstream-http2` HTTP/2 where ALPN agrees; idle connections pooled
//! across requests.
//!
//! HTTP/1.1 is the default because it is the cheaper of the two per request: over TLS, h2
//! cost 14–22 % more CPU per request (HPACK, flow control, a second task per connection)
//! in `benches/tls.py`. h2 multiplexes the requests in flight over one connection instead of
//! opening one each, which leaves fewer idle connections after a burst; with connections opened
//! only for requests that wait (`connection_limit.rs`), 1,000 paced senders held the same
//! memory over both.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::CertificateDer;

use super::body::OutboundBody;
use super::connection_limit::{HostSlots, OnDemand};
use super::egress::{EgressConnector, EgressRules, find_egress_error};
use super::error::{ProxyError, error_chain};
use super::response::ResponseBody;

/// At most this much of an upstream's response body is relayed (error messages are short;
/// remote-write success bodies are empty). The rest is dropped.
pub const MAX_RELAYED_BODY: usize = 64 * 1024;
/// TCP connect timeout (the TLS handshake counts against `--upstream-timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle pooled connections are closed after this long; AMP's load balancers close at ~60s+.
/// The number of idle connections is not capped: a cap below the writes in flight closes and
/// reopens TLS connections under steady load (benches/tls.py, 1,000 senders over HTTP/1.1 with
/// 256 idle at most: 121 µs per request against 81 µs, p99 579 ms against 175 ms).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(50);

/// Upstream response headers relayed to a remote-write sender (the read path relays its own
/// list). Everything else is dropped.
pub static RELAYED_WRITE_HEADERS: [HeaderName; 5] = [
    header::RETRY_AFTER,
    header::CONTENT_TYPE,
    HeaderName::from_static("x-prometheus-remote-write-samples-written"),
    HeaderName::from_static("x-prometheus-remote-write-histograms-written"),
    HeaderName::from_static("x-prometheus-remote-write-exemplars-written"),
];

/// What came back from upstream, already bounded.
#[derive(Debug)]
pub struct UpstreamAnswer {
    /// The upstream's status.
    pub status: StatusCode,
    /// Relayed headers only.
    pub headers: HeaderMap,
    /// At most [`MAX_RELAYED_BODY`] bytes of the upstream's body.
    pub body: Bytes,
    /// Time from sending to the complete (bounded) answer.
    pub latency: Duration,
    /// The AWS error type (`x-amzn-ErrorType`, e.g. `ThrottlingException`), if given; used to
    /// classify the answer, not relayed.
    pub error_type: Option<String>,
}

impl UpstreamAnswer {
    /// The answer as a response to the sender: status, relayed headers and body unchanged.
    pub fn into_response(self) -> Response<ResponseBody> {
        let mut resp = Response::new(ResponseBody::full(self.body));
        *resp.status_mut() = self.status;
        *resp.headers_mut() = self.headers;
        resp
    }
}

/// Pooled client to the upstream.
#[derive(Clone, Debug)]
pub struct UpstreamClient {
    client: Client<OnDemand<HttpsConnector<EgressConnector>>, OutboundBody>,
    /// The egress proxy's rules, if one is configured (see [`super::egress`]).
    egress: Option<EgressRules>,
    /// Connection slots and demand per workspace host (see [`super::connection_limit`]).
    hosts: HostSlots,
}

/// Failure to set up TLS.
#[derive(Debug, thiserror::Error)]
#[error("TLS setup failed: {0}")]
pub struct TlsSetupError(String);

impl UpstreamClient {
    /// A client trusting the usual roots plus `extra_roots`, going out through the egress
    /// proxy if `egress` has one, HTTP/2 offered if `http2`, with at most
    /// `max_connections_per_host` connections open to one workspace host (the proxy's
    /// `--max-in-flight-requests`: more could never be busy at once).
    pub fn new(
        extra_roots: &[CertificateDer<'static>],
        egress: &crate::config::Egress,
        http2: bool,
        max_connections_per_host: usize,
    ) -> Result<Self, TlsSetupError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        // Missing system roots are normal in a scratch image; the webpki roots cover AWS.
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        for cert in extra_roots {
            roots.add(cert.clone()).map_err(|e| {
                TlsSetupError(format!("--upstream-ca-file certificate rejected: {e}"))
            })?;
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsSetupError(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_keepalive(Some(Duration::from_secs(30)));
        let egress = EgressRules::new(egress);
        let hosts = HostSlots::new(max_connections_per_host);
        let http = EgressConnector::new(http, egress.clone(), hosts.clone());
        let https = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1();
        let https = if http2 {
            https.enable_http2().wrap_connector(http)
        } else {
            https.wrap_connector(http)
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .build(OnDemand::new(https, hosts.clone()));
        Ok(Self {
            client,
            egress,
            hosts,
        })
    }

    /// The signed request as it goes on the wire.
    ///
    /// `Host` was set for signing; it is removed here because the client writes the host
    /// itself from the URI, which is the same value (default port dropped, see
    /// `config::targets`): as `Host` over HTTP/1.1 and as `:authority` over HTTP/2. A `Host`
    /// header beside `:authority` is refused by strict HTTP/2 servers (nginx answers 400).
    ///
    /// A plain-`http://` request forwarded by the egress proxy also carries the proxy's
    /// credentials (a tunnel sends them in its `CONNECT`, unseen by the workspace).
    ///
    /// From here until hyper starts sending its body, the request counts as one waiting for a
    /// connection to its host: only such requests open new ones.
    fn on_the_wire(&self, mut req: Request<OutboundBody>) -> Request<OutboundBody> {
        req.headers_mut().remove(header::HOST);
        let waiting = self.hosts.host(req.uri()).waiting();
        req.body_mut().waiting_for_connection(waiting);
        if let Some(auth) = self
            .egress
            .as_ref()
            .and_then(|e| e.forward_authorization(req.uri()))
        {
            req.headers_mut().insert(header::PROXY_AUTHORIZATION, auth);
        }
        req
    }

    /// Sends `req` and reads the bounded answer, all within `timeout`.
    pub async fn send(
        &self,
        req: Request<OutboundBody>,
        timeout: Duration,
    ) -> Result<UpstreamAnswer, ProxyError> {
        let started = Instant::now();
        let exchange = async {
            let resp = self
                .client
                .request(self.on_the_wire(req))
                .await
                .map_err(classify)?;
            let (parts, body) = resp.into_parts();
            let body = read_bounded(body).await?;
            Ok::<_, ProxyError>((parts, body))
        };
        let (parts, body) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| ProxyError::UpstreamTimeout(timeout))??;
        let mut headers = HeaderMap::new();
        for name in &RELAYED_WRITE_HEADERS {
            for v in parts.headers.get_all(name) {
                headers.append(name.clone(), v.clone());
            }
        }
        let error_type = parts
            .headers
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            // "ThrottlingException:http://internal.amazon.com/coral/..." — the type is the first part.
            .map(|v| v.split(':').next().unwrap_or(v).trim().to_string());
        Ok(UpstreamAnswer {
            status: parts.status,
            headers,
            body,
            latency: started.elapsed(),
            error_type,
        })
    }
}

impl UpstreamClient {
    /// Sends `req` and returns the answer as soon as its headers arrive (within `timeout`); the
    /// body is left to the caller to stream.
    pub async fn send_streaming(
        &self,
        req: Request<OutboundBody>,
        timeout: Duration,
    ) -> Result<Response<hyper::body::Incoming>, ProxyError> {
        tokio::time::timeout(timeout, self.client.request(self.on_the_wire(req)))
            .await
            .map_err(|_| ProxyError::UpstreamTimeout(timeout))?
            .map_err(classify)
    }
}

/// Reads at most [`MAX_RELAYED_BODY`] bytes; a longer body is cut (and its connection not reused).
async fn read_bounded(mut body: hyper::body::Incoming) -> Result<Bytes, ProxyError> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ProxyError::Upstream(format!("reading response body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            let room = MAX_RELAYED_BODY - buf.len();
            buf.extend_from_slice(&data[..data.len().min(room)]);
            if buf.len() == MAX_RELAYED_BODY {
                break;
            }
        }
    }
    Ok(buf.freeze())
}

fn classify(e: hyper_util::client::legacy::Error) -> ProxyError {
    if let Some(egress) = find_egress_error(&e) {
        tracing::debug!(error = %error_chain(&e), "egress proxy failure");
        return ProxyError::EgressProxy(egress.to_string());
    }
    let detail = error_chain(&e);
    if e.is_connect() {
        ProxyError::UpstreamConnect(detail)
    } else {
        ProxyError::Upstream(detail)
    }
}
