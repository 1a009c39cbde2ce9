//! Accept loop and graceful drain.
//!
//! HTTP/1.1 and HTTP/2 (prior knowledge) on one port. On shutdown: readiness turns 503 at once,
//! connections are still accepted for the drain delay, then the listener closes, connections
//! finish the request they are on (keep-alive connections are told to close), and the drain is
//! cut off when the grace period ends.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use super::response::ResponseBody;
use super::tls::TlsConfig;

/// The most an HTTP/1 connection reads at once, and so the read buffer it keeps between
/// requests (hyper grows it to fit the reads, up to about 400 KiB by default, and keeps it
/// while the connection is open). With 1,000 senders of 200 KB bodies connected
/// (`benches/tls.py`'s paced senders) that held 258 MiB against 98 MiB with this limit, for
/// 2 % more CPU per 200 KB request and 5 % per 1 MB one (16 KiB would cost 11 % and 26 %).
/// It also bounds a request's headers: a larger head is refused with 431.
const MAX_READ_BUFFER: usize = 64 * 1024;

/// How a server shuts down and treats slow clients.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Time to send request headers (also the keep-alive idle timeout, see the flag's docs).
    pub header_timeout: Duration,
    /// Between the shutdown signal and closing the listener: readiness is already 503.
    pub drain_delay: Duration,
    /// Whole shutdown budget, drain delay included.
    pub grace: Duration,
    /// Set when shutdown starts; the proxy reports unready and closes kept-alive connections.
    pub draining: Arc<AtomicBool>,
    /// Serve HTTPS with this (reloadable) configuration.
    pub tls: Option<Arc<TlsConfig>>,
    /// Requests being handled (the drain waits for zero).
    pub in_flight: prometheus_client::metrics::gauge::Gauge,
}

/// How the drain ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Drain {
    /// Every connection finished within the grace period.
    Complete,
    /// The grace period ran out with connections still open.
    TimedOut,
}

/// Serves `service` on `listener` until `shutdown` resolves, then drains: unready at once,
/// still accepting for the drain delay (so the endpoint can be removed from load balancing
/// first), then no new connections and in-flight requests finish within the rest of the grace.
pub async fn serve<S>(
    listener: TcpListener,
    service: S,
    shutdown: impl Future<Output = ()>,
    options: ServeOptions,
) -> Drain
where
    S: tower::Service<Request<Incoming>, Response = Response<ResponseBody>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout)
        .keep_alive(true)
        .max_buf_size(MAX_READ_BUFFER);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(options.header_timeout))
        .keep_alive_timeout(Duration::from_secs(20));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    let drain_timer = tokio::time::sleep(Duration::MAX);
    tokio::pin!(drain_timer);
    let mut draining = false;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: back off briefly rather than spin.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                spawn_connection(&builder, &graceful, &options, stream, peer, service.clone());
            }
            () = &mut shutdown, if !draining => {
                draining = true;
                options.draining.store(true, Ordering::SeqCst);
                tracing::info!(
                    drain_delay_secs = options.drain_delay.as_secs_f64(),
                    "shutting down: reporting unready, still accepting during the drain delay"
                );
                drain_timer.as_mut().reset(tokio::time::Instant::now() + options.drain_delay);
            }
            () = &mut drain_timer, if draining => break,
        }
    }
    // Connections the kernel completed but we never accepted would be reset when the listener
    // closes; take what is already queued and serve it (one request each: draining). The wait
    // below gives them time to deliver their request before anything is shut.
    loop {
        tokio::select! {
            biased;
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    spawn_connection(&builder, &graceful, &options, stream, peer, service.clone())
                }
                Err(_) => break,
            },
            () = tokio::task::yield_now() => break,
        }
    }
    drop(listener);
    let left = options.grace.saturating_sub(options.drain_delay);
    tracing::info!(
        grace_secs = left.as_secs_f64(),
        "no longer accepting connections; draining in-flight requests"
    );
    let deadline = tokio::time::Instant::now() + left;
    // Telling connections to shut down cancels those that have not read a request yet, so
    // first let just-accepted connections reach the service, then wait for every request in
    // flight to be answered; only then close what is left (idle keep-alive connections).
    tokio::time::sleep(SETTLE.min(left)).await;
    while options.in_flight.get() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    match tokio::time::timeout_at(deadline, graceful.shutdown()).await {
        Ok(()) => Drain::Complete,
        Err(_) => Drain::TimedOut,
    }
}

/// Time after closing the listener for already-accepted connections to deliver their request.
const SETTLE: Duration = Duration::from_millis(200);

fn spawn_connection<S>(
    builder: &auto::Builder<TokioExecutor>,
    graceful: &GracefulShutdown,
    options: &ServeOptions,
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    service: S,
) where
    S: tower::Service<Request<Incoming>, Response = Response<ResponseBody>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let _ = stream.set_nodelay(true);
    let builder = builder.clone();
    let watcher = graceful.watcher();
    let service = TowerToHyperService::new(service);
    let tls = options
        .tls
        .as_ref()
        .map(|t| (t.current(), options.header_timeout));
    let options_header_timeout = options.header_timeout;
    tokio::spawn(async move {
        let result = match tls {
            None => {
                // The protocol is decided here, within the header timeout: hyper's own timeout
                // only starts once it knows the protocol, so a client sending nothing (or one
                // byte) would otherwise hold the connection forever.
                let Some(protocol) = sniff(&stream, options_header_timeout).await else {
                    tracing::debug!(%peer, "no request started within the header timeout; closing");
                    return;
                };
                let builder = match protocol {
                    Protocol::Http1 => builder.http1_only(),
                    Protocol::Http2 => builder.http2_only(),
                };
                let conn = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .into_owned();
                watcher.watch(conn).await
            }
            Some((config, handshake_timeout)) => {
                // The handshake runs here, not in the accept loop, and is bounded like headers.
                let accept = tokio_rustls::TlsAcceptor::from(config).accept(stream);
                let tls_stream = match tokio::time::timeout(handshake_timeout, accept).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
                // ALPN already chose the protocol.
                let builder = if tls_stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                    builder.http2_only()
                } else {
                    builder.http1_only()
                };
                let conn = builder
                    .serve_connection(TokioIo::new(tls_stream), service)
                    .into_owned();
                watcher.watch(conn).await
            }
        };
        if let Err(e) = result {
            tracing::debug!(%peer, error = %e, "connection ended with error");
        }
    });
}

enum Protocol {
    Http1,
    Http2,
}

/// Peeks (without consuming) until the first bytes tell HTTP/1 from a complete HTTP/2 preface;
/// `None` on EOF or when nothing decisive arrives within `timeout`.
async fn sniff(stream: &tokio::net::TcpStream, timeout: Duration) -> Option<Protocol> {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = [0u8; 24];
    loop {
        let n = tokio::time::timeout_at(deadline, stream.peek(&mut buf))
            .await
            .ok()?
            .ok()?;
        let seen = &buf[..n];
        if seen.is_empty() {
            return None;
        }
        if !PREFACE.starts_with(seen) {
            return Some(Protocol::Http1);
        }
        if n == PREFACE.len() {
            return Some(Protocol::Http2);
        }
        // A prefix of the HTTP/2 preface: wait for more (peek returns at once while those
        // bytes sit there, hence the pause).
        tokio::time::sleep(Duration::from_millis(10)).await;
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
    }
}

/// Resolves on SIGTERM or SIGINT. The handlers are registered when this is *called*, not
/// when first polled, so call it first thing: a signal that arrives while the proxy is still
/// starting then leads to a clean exit instead of the default (fatal) disposition.
/// Must be called inside the tokio runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => tokio::select! {
                    _ = term.recv() => tracing::info!("received SIGTERM"),
                    _ = int.recv() => tracing::info!("received SIGINT"),
                },
                _ => {
                    tracing::warn!("cannot install signal handlers; stop with SIGKILL");
                    std::future::pending::<()>().await
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("received Ctrl-C");
    }
}
