//! At most so many upstream connections per destination host.
//!
//! hyper-util's pool races a new connection against the next idle one, and when the idle one
//! wins it still finishes the new connection and pools it. Over HTTP/1.1 with hundreds of
//! writes in flight that snowballs: in `benches/tls.py`, 1,000 senders left 4,478 TLS
//! connections to the sink, about 140 MiB of buffers, for 1,000 writes in flight at most. Each
//! connection therefore takes a permit for its whole life, from before the TCP connect to its
//! close; with all permits taken, a request waits for a pooled connection to come free (within
//! `--upstream-timeout`) instead of opening one more.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Wraps a connector so that at most `per_host` connections to one `host:port` are open.
#[derive(Clone, Debug)]
pub struct ConnectionLimit<C> {
    inner: C,
    per_host: usize,
    hosts: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
}

impl<C> ConnectionLimit<C> {
    /// `inner`'s connections, at most `per_host` open to each destination (at least 1).
    pub fn new(inner: C, per_host: usize) -> Self {
        Self {
            inner,
            per_host: per_host.clamp(1, Semaphore::MAX_PERMITS),
            hosts: Arc::default(),
        }
    }

    fn slots_for(&self, dst: &Uri) -> Arc<Semaphore> {
        let key = format!(
            "{}:{}",
            dst.host().unwrap_or_default(),
            dst.port_u16().unwrap_or(0)
        );
        // Routes are configured up front, so the map holds one entry per workspace host.
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        hosts
            .entry(key)
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_host)))
            .clone()
    }
}

impl<C> Service<Uri> for ConnectionLimit<C>
where
    C: Service<Uri> + Clone + Send + 'static,
    C::Future: Send,
    C::Error: Into<BoxError>,
{
    type Response = Limited<C::Response>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let slots = self.slots_for(&dst);
        // The connector that was polled ready makes this connection (tower's contract).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let permit = slots.acquire_owned().await.map_err(Box::new)?;
            let io = inner.call(dst).await.map_err(Into::into)?;
            Ok(Limited {
                io,
                _permit: permit,
            })
        })
    }
}

/// A connection holding its permit until it is dropped.
#[derive(Debug)]
pub struct Limited<S> {
    io: S,
    _permit: OwnedSemaphorePermit,
}

impl<S: Connection> Connection for Limited<S> {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}

impl<S: Read + Unpin> Read for Limited<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: Write + Unpin> Write for Limited<S> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_util::client::legacy::connect::HttpConnector;
    use std::time::Duration;

    #[tokio::test]
    async fn a_connection_beyond_the_limit_waits_for_one_to_close() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri = |l: &tokio::net::TcpListener| -> Uri {
            format!("http://{}/", l.local_addr().unwrap())
                .parse()
                .unwrap()
        };
        let mut limited = ConnectionLimit::new(HttpConnector::new(), 2);
        let first = limited.call(uri(&listener)).await.unwrap();
        let _second = limited.call(uri(&listener)).await.unwrap();
        let mut third = limited.call(uri(&listener));
        let waited = tokio::time::timeout(Duration::from_millis(200), &mut third).await;
        assert!(waited.is_err(), "a third connection to the same host waits");
        // Another host has permits of its own.
        limited.call(uri(&other)).await.unwrap();
        drop(first);
        let third = tokio::time::timeout(Duration::from_secs(5), third).await;
        assert!(matches!(third, Ok(Ok(_))), "it connects once one is closed");
    }
}
