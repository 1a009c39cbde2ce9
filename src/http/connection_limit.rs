//! How many upstream connections each destination host gets: at most so many open, and a new
//! one only while a request waits for it.
//!
//! hyper-util's pool races a new connection against the next idle one, and when the idle one
//! wins it still finishes the new connection and pools it. Over HTTP/1.1 that snowballs
//! whenever requests arrive faster than TLS handshakes complete: each request that finds no
//! idle connection starts one more handshake, and every one of them ends up pooled.
//! - In `benches/tls.py`, 1,000 saturating senders left 4,478 TLS connections to the sink for
//!   1,000 writes in flight at most. So each connection takes a slot of its host for its whole
//!   life, from before the TCP connect to its close (the connector,
//!   [`super::egress::EgressConnector`], keeps it in the stream). With every slot taken, a
//!   request waits for a pooled connection to come free (within `--upstream-timeout`).
//! - 1,000 senders at a steady 6,500 writes/s, about 7 in flight at a time, still opened 2,048
//!   connections (every slot) in their first second, while the first handshakes ran. So
//!   [`OnDemand`] lets at most [`MAX_CONNECTING_PER_HOST`] connects run at once, each only
//!   while fewer are running than requests wait for a connection; a connect that is no longer
//!   wanted when its turn comes is dropped instead of pooled. The same senders then open 60
//!   to 130.
//!
//! A request counts as waiting ([`Host::waiting`], held by its [`super::body::OutboundBody`])
//! until hyper first polls its body, which happens once it has a connection.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use http::Uri;
use http::uri::Authority;
use tokio::sync::{Notify, Semaphore};
use tower::Service;

/// TLS handshakes run at once to one host. A handshake costs both ends CPU (the server's
/// signature above all) and the first connection to open usually serves the waiting requests
/// sooner than more handshakes would finish; once open, a connection carries thousands of
/// writes a second. 1,000 connections still open in well under a second on loopback.
pub const MAX_CONNECTING_PER_HOST: usize = 8;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The connection slots and the demand of each destination `host:port`.
#[derive(Clone, Debug)]
pub struct HostSlots {
    per_host: usize,
    hosts: Arc<Mutex<HashMap<Authority, Arc<Host>>>>,
}

impl HostSlots {
    /// `per_host` connection slots for each destination (at least 1).
    pub fn new(per_host: usize) -> Self {
        Self {
            per_host: per_host.clamp(1, Semaphore::MAX_PERMITS),
            hosts: Arc::default(),
        }
    }

    /// `dst`'s host and port (its authority: a request and the connector see the same one).
    /// Called for every request: a look-up without allocating once the host is known.
    pub fn host(&self, dst: &Uri) -> Arc<Host> {
        let unknown = Authority::from_static("unknown");
        let authority = dst.authority().unwrap_or(&unknown);
        // Routes are configured up front, so the map holds one entry per workspace host.
        let mut hosts = lock(&self.hosts);
        if let Some(host) = hosts.get(authority) {
            return host.clone();
        }
        let host = Arc::new(Host {
            slots: Arc::new(Semaphore::new(self.per_host)),
            demand: Mutex::default(),
            changed: Notify::new(),
        });
        hosts.insert(authority.clone(), host.clone());
        host
    }

    /// The connection slots of `dst`'s host; a connection holds one of them while it is open.
    pub fn for_host(&self, dst: &Uri) -> Arc<Semaphore> {
        self.host(dst).slots.clone()
    }
}

/// One destination: its connection slots, and how many requests wait for a connection and how
/// many connects run for them.
#[derive(Debug)]
pub struct Host {
    slots: Arc<Semaphore>,
    demand: Mutex<Demand>,
    /// Woken when a connect ends (one waiting connect may start) and when no request waits any
    /// more (every waiting connect gives up).
    changed: Notify,
}

#[derive(Debug, Default)]
struct Demand {
    waiting: usize,
    connecting: usize,
}

impl Host {
    /// Counts a request as waiting for a connection until the guard is dropped.
    pub fn waiting(self: Arc<Self>) -> Waiting {
        lock(&self.demand).waiting += 1;
        Waiting(self)
    }

    /// Waits until a new connection is wanted and may start: `Err` once no request waits.
    async fn admit(self: &Arc<Self>) -> Result<Admitted, NotWanted> {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before the check, so a change between the check and the wait wakes it.
            changed.as_mut().enable();
            {
                let mut demand = lock(&self.demand);
                if demand.waiting == 0 {
                    return Err(NotWanted);
                }
                if demand.connecting < demand.waiting.min(MAX_CONNECTING_PER_HOST) {
                    demand.connecting += 1;
                    return Ok(Admitted(self.clone()));
                }
            }
            changed.await;
        }
    }
}

/// A request waiting for a connection (see [`Host::waiting`]).
#[derive(Debug)]
pub struct Waiting(Arc<Host>);

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut demand = lock(&self.0.demand);
        demand.waiting -= 1;
        if demand.waiting == 0 {
            drop(demand);
            self.0.changed.notify_waiters();
        }
    }
}

/// A connect that runs (see [`Host::admit`]).
struct Admitted(Arc<Host>);

impl Drop for Admitted {
    fn drop(&mut self) {
        lock(&self.0.demand).connecting -= 1;
        self.0.changed.notify_one();
    }
}

/// A connect whose request was served by another connection before its turn came. Only
/// hyper-util's background task for it sees this (and logs it at trace level): the request
/// itself has its connection.
#[derive(Debug, thiserror::Error)]
#[error("connection no longer needed: no request waits for one")]
pub struct NotWanted;

/// A connector that connects only as [`Host::admit`] allows, with `inner` (TCP and TLS).
#[derive(Clone, Debug)]
pub struct OnDemand<C> {
    inner: C,
    hosts: HostSlots,
}

impl<C> OnDemand<C> {
    /// `inner`'s connections, opened for the demand that `hosts` counts.
    pub fn new(inner: C, hosts: HostSlots) -> Self {
        Self { inner, hosts }
    }
}

impl<C> Service<Uri> for OnDemand<C>
where
    C: Service<Uri> + Clone + Send + 'static,
    C::Future: Send,
    C::Error: Into<BoxError>,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let host = self.hosts.host(&dst);
        // The ready service answers this call; a clone takes its place for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            // Held until the connection is up, handshake included.
            let _admitted = host.admit().await?;
            inner.call(dst).await.map_err(Into::into)
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A connector whose connects last until the test lets them finish.
    #[derive(Clone)]
    struct Gate(Arc<Semaphore>, Arc<Mutex<usize>>);

    impl Service<Uri> for Gate {
        type Response = ();
        type Error = BoxError;
        type Future = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: Uri) -> Self::Future {
            let (gate, started) = (self.0.clone(), self.1.clone());
            Box::pin(async move {
                *lock(&started) += 1;
                gate.acquire().await?.forget();
                Ok(())
            })
        }
    }

    fn uri() -> Uri {
        "https://aps-workspaces.us-east-1.amazonaws.com/"
            .parse()
            .unwrap()
    }

    async fn settle() {
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn connects_only_while_requests_wait_and_a_few_at_a_time() {
        let hosts = HostSlots::new(100);
        let gate = Gate(Arc::new(Semaphore::new(0)), Arc::default());
        let mut connector = OnDemand::new(gate.clone(), hosts.clone());

        // Nobody waits: a connect is not wanted (hyper-util's leftover background connect).
        assert!(connector.call(uri()).await.is_err());
        assert_eq!(*lock(&gate.1), 0);

        // 20 requests wait and each starts a connect: only MAX_CONNECTING_PER_HOST run.
        let waiting: Vec<_> = (0..20).map(|_| hosts.host(&uri()).waiting()).collect();
        let connects: Vec<_> = (0..20)
            .map(|_| tokio::spawn(connector.call(uri())))
            .collect();
        settle().await;
        assert_eq!(*lock(&gate.1), MAX_CONNECTING_PER_HOST);

        // One finishes: the next one starts.
        gate.0.add_permits(1);
        settle().await;
        assert_eq!(*lock(&gate.1), MAX_CONNECTING_PER_HOST + 1);

        // Every request is served (by connections that came free): the connects not yet
        // started give up instead of opening connections nobody waits for.
        drop(waiting);
        gate.0.add_permits(MAX_CONNECTING_PER_HOST);
        let mut opened = 0;
        for c in connects {
            let done = tokio::time::timeout(Duration::from_secs(5), c).await;
            if done.expect("every connect ends").unwrap().is_ok() {
                opened += 1;
            }
        }
        assert_eq!(opened, MAX_CONNECTING_PER_HOST + 1);
        assert_eq!(*lock(&gate.1), MAX_CONNECTING_PER_HOST + 1);
    }

    #[tokio::test]
    async fn no_more_connects_than_requests_waiting() {
        let hosts = HostSlots::new(100);
        let gate = Gate(Arc::new(Semaphore::new(0)), Arc::default());
        let mut connector = OnDemand::new(gate.clone(), hosts.clone());
        let one = hosts.host(&uri()).waiting();
        let connects: Vec<_> = (0..3)
            .map(|_| tokio::spawn(connector.call(uri())))
            .collect();
        settle().await;
        assert_eq!(*lock(&gate.1), 1, "one waiting request, one connect");
        // Another host has demand of its own.
        let other: Uri = "https://aps-workspaces.eu-west-1.amazonaws.com/"
            .parse()
            .unwrap();
        let _other_waiting = hosts.host(&other).waiting();
        let other_connect = tokio::spawn(connector.call(other));
        settle().await;
        assert_eq!(*lock(&gate.1), 2);
        // The request is served by a connection that came free: the two connects held back
        // give up, the one running finishes.
        drop(one);
        gate.0.add_permits(2);
        other_connect.await.unwrap().unwrap();
        let results: Vec<bool> = futures_results(connects).await;
        assert_eq!(results.iter().filter(|ok| **ok).count(), 1);
        assert_eq!(*lock(&gate.1), 2);
    }

    async fn futures_results(
        handles: Vec<tokio::task::JoinHandle<Result<(), BoxError>>>,
    ) -> Vec<bool> {
        let mut out = Vec::new();
        for h in handles {
            let r = tokio::time::timeout(Duration::from_secs(5), h).await;
            out.push(r.expect("connect ends").unwrap().is_ok());
        }
        out
    }
}
