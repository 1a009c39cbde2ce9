//! The workspace client's way out through the egress proxy ([`crate::config::Egress`]):
//! [`EgressConnector`] decides per destination, with hyper-util's proxy [`Matcher`] (curl's
//! `NO_PROXY` rules), whether to connect directly, through a `CONNECT` tunnel (hyper-util's
//! [`Tunnel`]; `https://` destinations, TLS end to end inside it) or to the proxy itself with
//! the request forwarded in absolute form (`http://` destinations). TLS is layered on top by
//! hyper-rustls exactly as without a proxy, so SNI, ALPN (h2) and certificate checks are the
//! workspace's.
//!
//! Its failures are [`EgressError`]s, one line each naming the proxy (password hidden) and what
//! to check, so that a proxy that is down, refuses the tunnel or wants other credentials is
//! told apart from the workspace being unreachable.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Uri};
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::proxy::matcher::{Intercept, Matcher};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tower::Service;

use super::connection_limit::HostSlots;
use super::error::error_chain;
use crate::config::Egress;

/// The proxy decision for a destination, from the configuration's [`Egress`].
#[derive(Clone)]
pub struct EgressRules {
    matcher: Arc<Matcher>,
    egress: Arc<Egress>,
}

impl std::fmt::Debug for EgressRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `Egress` prints proxy URLs with the password hidden.
        f.debug_tuple("EgressRules").field(&self.egress).finish()
    }
}

impl EgressRules {
    /// The rules of `egress`; `None` when nothing goes through a proxy.
    pub fn new(egress: &Egress) -> Option<Self> {
        if !egress.is_active() {
            return None;
        }
        let mut b = Matcher::builder().no(egress.no_proxy.clone());
        if let Some(p) = &egress.https {
            b = b.https(p.with_credentials());
        }
        if let Some(p) = &egress.http {
            b = b.http(p.with_credentials());
        }
        Some(Self {
            matcher: Arc::new(b.build()),
            egress: Arc::new(egress.clone()),
        })
    }

    /// The proxy `dst` goes through, if any.
    pub fn intercept(&self, dst: &Uri) -> Option<Intercept> {
        self.matcher.intercept(dst)
    }

    /// The proxy `dst` goes through as shown in logs (`http://user:***@host:port`), or
    /// `None` for a direct connection.
    pub fn shown_proxy_for(&self, dst: &Uri) -> Option<String> {
        self.intercept(dst)?;
        let p = if dst.scheme_str() == Some("http") {
            self.egress.http.as_ref()
        } else {
            self.egress.https.as_ref()
        };
        p.map(|p| p.to_string())
    }

    /// `Proxy-Authorization` for a plain-`http://` request forwarded to the proxy (a tunnel
    /// carries it in its `CONNECT` instead, and the workspace never sees it).
    pub fn forward_authorization(&self, dst: &Uri) -> Option<HeaderValue> {
        if dst.scheme_str() != Some("http") {
            return None;
        }
        self.intercept(dst)?.basic_auth().cloned()
    }
}

/// Why the way out through the proxy failed; each one readable line.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    /// No TCP connection to the proxy.
    #[error(
        "cannot reach the egress proxy {proxy}: {detail} (is it running, and is \
         --egress-proxy / HTTPS_PROXY right?)"
    )]
    ProxyUnreachable {
        /// The proxy, password hidden.
        proxy: String,
        /// The connect error.
        detail: String,
    },
    /// The proxy answered 407.
    #[error(
        "the egress proxy {proxy} refused our credentials (407 Proxy Authentication \
         Required): set user:password@ in --egress-proxy / HTTPS_PROXY"
    )]
    ProxyAuth {
        /// The proxy, password hidden.
        proxy: String,
    },
    /// The proxy answered the `CONNECT` with an error, or closed it.
    #[error(
        "the egress proxy {proxy} would not open a tunnel to {target} ({detail}): check the \
         proxy credentials in --egress-proxy / HTTPS_PROXY, that the proxy allows CONNECT to \
         that host and port and can reach it, or list the host in NO_PROXY"
    )]
    TunnelRefused {
        /// The proxy, password hidden.
        proxy: String,
        /// `host:port` asked for.
        target: String,
        /// What hyper-util reported.
        detail: String,
    },
}

/// A connector for the workspace client: direct, tunnelled or forwarded, as [`EgressRules`]
/// decide for each destination.
#[derive(Clone, Debug)]
pub struct EgressConnector {
    http: HttpConnector,
    rules: Option<EgressRules>,
    slots: HostSlots,
}

impl EgressConnector {
    /// Connections made with `http`, through the proxy when `rules` say so, each holding one
    /// of its destination's `slots` while it is open.
    pub fn new(http: HttpConnector, rules: Option<EgressRules>, slots: HostSlots) -> Self {
        Self { http, rules, slots }
    }
}

type Connecting = Pin<Box<dyn Future<Output = Result<EgressStream, BoxError>> + Send>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Service<Uri> for EgressConnector {
    type Response = EgressStream;
    type Error = BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let slots = self.slots.for_host(&dst);
        // Futures are lazy: the connect starts only once the slot is held.
        let connect = self.connect(dst);
        Box::pin(async move {
            let slot = slots.acquire_owned().await.map_err(Box::new)?;
            let mut stream = connect.await?;
            stream._slot = Some(slot);
            Ok(stream)
        })
    }
}

impl EgressConnector {
    fn connect(&mut self, dst: Uri) -> Connecting {
        let via = self.rules.as_ref().and_then(|r| {
            let intercept = r.intercept(&dst)?;
            Some((intercept, r.shown_proxy_for(&dst).unwrap_or_default()))
        });
        let mut http = self.http.clone();
        let Some((intercept, proxy)) = via else {
            return Box::pin(async move {
                let io = http.call(dst).await?;
                Ok(EgressStream {
                    io,
                    forwarded: false,
                    _slot: None,
                })
            });
        };
        if dst.scheme_str() == Some("http") {
            // Plain HTTP: connect to the proxy; `forwarded` makes hyper send the request
            // target in absolute form, which is what a forward proxy routes by.
            return Box::pin(async move {
                let io = http.call(intercept.uri().clone()).await.map_err(|e| {
                    EgressError::ProxyUnreachable {
                        proxy,
                        detail: error_chain(&e),
                    }
                })?;
                Ok(EgressStream {
                    io,
                    forwarded: true,
                    _slot: None,
                })
            });
        }
        let mut tunnel = Tunnel::new(intercept.uri().clone(), http);
        if let Some(auth) = intercept.basic_auth() {
            tunnel = tunnel.with_auth(auth.clone());
        }
        let target = format!(
            "{}:{}",
            dst.host().unwrap_or_default(),
            dst.port_u16().unwrap_or(443)
        );
        Box::pin(async move {
            let io = tunnel
                .call(dst)
                .await
                .map_err(|e| tunnel_error(&e, proxy, target))?;
            Ok(EgressStream {
                io,
                forwarded: false,
                _slot: None,
            })
        })
    }
}

/// hyper-util's tunnel error type is not public; its messages are "tunnel error: " and "failed
/// to create underlying connection", "proxy authorization required" (a 407), "unsuccessful"
/// (any other status), …
fn tunnel_error(
    e: &(dyn std::error::Error + 'static),
    proxy: String,
    target: String,
) -> EgressError {
    let top = e.to_string();
    let what = top.strip_prefix("tunnel error: ").unwrap_or(&top);
    if what.contains("underlying connection") {
        let detail = e.source().map(error_chain).unwrap_or_else(|| top.clone());
        return EgressError::ProxyUnreachable { proxy, detail };
    }
    if what.contains("authorization required") {
        return EgressError::ProxyAuth { proxy };
    }
    let detail = match what {
        "unsuccessful" => "it answered the CONNECT with an error status".to_string(),
        "unexpected end of file" => "it closed the connection during the CONNECT".to_string(),
        _ => error_chain(e),
    };
    EgressError::TunnelRefused {
        proxy,
        target,
        detail,
    }
}

/// A connection made by [`EgressConnector`]: a TCP stream to the destination, to the tunnel's
/// far end or to the proxy (`forwarded`), holding its destination's slot until it is dropped.
#[derive(Debug)]
pub struct EgressStream {
    io: TokioIo<TcpStream>,
    forwarded: bool,
    _slot: Option<OwnedSemaphorePermit>,
}

impl Connection for EgressStream {
    fn connected(&self) -> Connected {
        self.io.connected().proxy(self.forwarded)
    }
}

impl Read for EgressStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl Write for EgressStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The first [`EgressError`] in an error's chain (the client wraps the connector's error).
pub fn find_egress_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a EgressError> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(found) = err.downcast_ref::<EgressError>() {
            return Some(found);
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::egress::{ProxyEnvironment, resolve};
    use std::time::Duration;

    fn rules(flag: &str, no_proxy: Option<&str>) -> EgressRules {
        let env = ProxyEnvironment {
            no_proxy: no_proxy.map(str::to_string),
            ..Default::default()
        };
        EgressRules::new(&resolve(Some(flag), &env).unwrap()).unwrap()
    }

    /// NO_PROXY as curl reads it, applied by the matcher that routes requests.
    #[test]
    fn no_proxy_hosts_suffixes_addresses_and_star() {
        let r = rules(
            "http://u:pw@proxy:3128",
            Some("example.com, .corp.net,10.1.0.0/16,192.0.2.7"),
        );
        for (url, proxied) in [
            ("https://aps-workspaces.us-east-1.amazonaws.com/", true),
            ("https://example.com/", false),
            ("https://sub.example.com/", false),
            ("https://notexample.com/", true),
            ("https://corp.net/", false),
            ("https://a.b.corp.net/", false),
            ("https://10.1.2.3/", false),
            ("https://10.2.0.1/", true),
            ("http://192.0.2.7:9000/", false),
            ("http://169.254.169.254/latest/api/token", false),
            ("http://169.254.170.23/v1/credentials", false),
            ("http://127.0.0.1:9000/", true),
        ] {
            let uri: Uri = url.parse().unwrap();
            assert_eq!(r.intercept(&uri).is_some(), proxied, "{url}");
        }
        // `*`: nothing is proxied, host names and addresses alike (curl's meaning).
        let env = ProxyEnvironment {
            no_proxy: Some("*".into()),
            ..Default::default()
        };
        let star = resolve(Some("http://proxy:3128"), &env).unwrap();
        assert!(EgressRules::new(&star).is_none());
    }

    #[test]
    fn credentials_go_only_in_proxy_headers_and_never_in_logs() {
        let r = rules("http://alice:hunter2@proxy:3128", None);
        let https: Uri = "https://aps-workspaces.us-east-1.amazonaws.com/"
            .parse()
            .unwrap();
        let http: Uri = "http://127.0.0.1:9000/".parse().unwrap();
        assert_eq!(
            r.forward_authorization(&https),
            None,
            "tunnels carry it in CONNECT"
        );
        let auth = r.forward_authorization(&http).unwrap();
        assert_eq!(auth, "Basic YWxpY2U6aHVudGVyMg==");
        assert!(auth.is_sensitive());
        assert_eq!(
            r.shown_proxy_for(&https).unwrap(),
            "http://alice:***@proxy:3128"
        );
        assert!(!format!("{r:?}").contains("hunter2"), "{r:?}");
        let e = tunnel_error(
            &io::Error::other("tunnel error: unsuccessful"),
            r.shown_proxy_for(&https).unwrap(),
            "aps-workspaces.us-east-1.amazonaws.com:443".into(),
        );
        assert!(!e.to_string().contains("hunter2"));
        assert!(
            e.to_string()
                .contains("answered the CONNECT with an error status"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_connection_beyond_the_limit_waits_for_one_to_close() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri = |l: &tokio::net::TcpListener| -> Uri {
            format!("http://{}/", l.local_addr().unwrap())
                .parse()
                .unwrap()
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        let mut limited = EgressConnector::new(http, None, HostSlots::new(2));
        let first = limited.call(uri(&listener)).await.unwrap();
        let _second = limited.call(uri(&listener)).await.unwrap();
        let mut third = limited.call(uri(&listener));
        let waited = tokio::time::timeout(Duration::from_millis(200), &mut third).await;
        assert!(waited.is_err(), "a third connection to the same host waits");
        // Another host has slots of its own.
        limited.call(uri(&other)).await.unwrap();
        drop(first);
        let third = tokio::time::timeout(Duration::from_secs(5), third).await;
        assert!(matches!(third, Ok(Ok(_))), "it connects once one is closed");
    }
}
