//! Signing credentials: fetched once in the background, cached, refreshed ahead of expiry.
//!
//! aws-config's `AssumeRoleProvider` (and the default chain) do not cache: every call is a
//! fetch, an STS round trip for AssumeRole. Here a single background task owns all fetching:
//! requests only ever *read* the cached value (lock-free, via `ArcSwap`), so neither
//! concurrency nor load can change how often STS is called — one call per credential lifetime.
//!
//! Refresh happens at least [`REFRESH_LEAD`] before expiry plus up to [`REFRESH_JITTER`] more,
//! so a fleet of proxies started together does not call STS in lockstep. A failed fetch keeps
//! the still-valid credentials in use and retries with capped, jittered exponential backoff;
//! when STS refuses at startup (wrong ExternalId, missing trust) the proxy stays up, not ready,
//! and heals itself once the IAM policy is fixed.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_smithy_types::error::display::DisplayErrorContext;
use tokio::task::JoinHandle;

use super::clock::Clock;
use crate::telemetry::Metrics;
use crate::telemetry::metrics::RouteLabels;

/// Minimum time before expiry at which credentials are refreshed.
pub const REFRESH_LEAD: Duration = Duration::from_secs(5 * 60);
/// Extra, random lead added on top of [`REFRESH_LEAD`] (0 to this much).
pub const REFRESH_JITTER: Duration = Duration::from_secs(5 * 60);
/// Credentials without an expiry (static keys) are re-read this often, so a rotated profile
/// file is picked up.
pub const STATIC_REFRESH_INTERVAL: Duration = Duration::from_secs(60 * 60);
/// Credentials closer than this to expiry are not used for signing: the request must still be
/// valid when AWS receives it.
pub const SIGNING_MARGIN: Duration = Duration::from_secs(15);
/// First retry delay after a failed fetch; doubles up to [`MAX_BACKOFF`].
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Longest delay between retries of a failed fetch.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// One fetch (including the SDK's own retries) may take this long before it counts as failed.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// Shortest delay between two successful fetches, whatever the expiry says.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(5);
/// Longest the refresher sleeps without looking at the wall clock. Tokio's timers follow a
/// monotonic clock that stands still while a host is suspended or a VM paused, but credentials
/// expire by the wall clock: after such a pause the refresher notices within this time.
const WALL_CLOCK_CHECK: Duration = Duration::from_secs(10);
/// Forced refreshes ([`CredentialCache::request_refresh`]) are at least this far apart, so an
/// upstream that keeps rejecting our token cannot make us hammer STS.
pub const MIN_FORCED_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// Why there are no usable credentials; shown to senders in the 503 body.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct CredentialsUnavailable(pub Arc<str>);

/// The cache read by every request.
#[derive(Debug)]
pub struct CredentialCache {
    current: ArcSwapOption<Credentials>,
    last_error: ArcSwapOption<String>,
    clock: Arc<dyn Clock>,
    refresh_wanted: tokio::sync::Notify,
}

impl CredentialCache {
    /// An empty cache.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            current: ArcSwapOption::empty(),
            last_error: ArcSwapOption::empty(),
            clock,
            refresh_wanted: tokio::sync::Notify::new(),
        }
    }

    /// Credentials valid for at least [`SIGNING_MARGIN`], or why there are none.
    pub fn get(&self) -> Result<Arc<Credentials>, CredentialsUnavailable> {
        let now = self.clock.now();
        match self.current.load_full() {
            Some(c) if is_usable(&c, now) => Ok(c),
            held => {
                let last = self.last_error.load();
                let reason = match (held, last.as_deref()) {
                    (_, Some(err)) => format!("no valid AWS credentials: {err}"),
                    (Some(_), None) => "AWS credentials expired and not yet renewed".to_string(),
                    (None, None) => "AWS credentials not yet available".to_string(),
                };
                Err(CredentialsUnavailable(reason.into()))
            }
        }
    }

    /// `true` while usable credentials are held (drives `/-/ready`).
    pub fn is_ready(&self) -> bool {
        self.get().is_ok()
    }

    /// Asks the refresher to fetch new credentials now, e.g. because the upstream said the
    /// security token expired although our clock disagrees. At most one fetch per
    /// [`MIN_FORCED_REFRESH_INTERVAL`] results, however often this is called.
    pub fn request_refresh(&self) {
        self.refresh_wanted.notify_one();
    }

    fn store(&self, creds: Credentials) {
        self.current.store(Some(Arc::new(creds)));
        self.last_error.store(None);
    }

    fn record_failure(&self, reason: String) {
        self.last_error.store(Some(Arc::new(reason)));
    }
}

fn is_usable(c: &Credentials, now: SystemTime) -> bool {
    match c.expiry() {
        None => true,
        Some(exp) => exp
            .duration_since(now)
            .is_ok_and(|left| left > SIGNING_MARGIN),
    }
}

/// When to fetch again after a successful fetch: `REFRESH_LEAD + jitter * REFRESH_JITTER`
/// before `expiry`. If the credentials live shorter than that lead, halfway to the moment they
/// stop being usable for signing (expiry minus [`SIGNING_MARGIN`]), so there is time to retry.
/// `jitter` is in `[0, 1)`.
pub fn refresh_delay(now: SystemTime, expiry: Option<SystemTime>, jitter: f64) -> Duration {
    let Some(expiry) = expiry else {
        return STATIC_REFRESH_INTERVAL;
    };
    let left = expiry.duration_since(now).unwrap_or(Duration::ZERO);
    let lead = REFRESH_LEAD + REFRESH_JITTER.mul_f64(jitter.clamp(0.0, 1.0));
    let delay = if left > lead {
        left - lead
    } else {
        left.saturating_sub(SIGNING_MARGIN) / 2
    };
    delay.max(MIN_REFRESH_INTERVAL)
}

/// Delay before retry number `attempt` (0-based) after failed fetches: exponential from
/// [`INITIAL_BACKOFF`], capped at [`MAX_BACKOFF`], scaled by `0.5 + jitter / 2` ("equal jitter").
pub fn retry_delay(attempt: u32, jitter: f64) -> Duration {
    let base = INITIAL_BACKOFF
        .saturating_mul(1u32 << attempt.min(16))
        .min(MAX_BACKOFF);
    base.mul_f64(0.5 + jitter.clamp(0.0, 1.0) / 2.0)
}

/// Owns the provider and the background task that keeps the cache filled.
pub struct CredentialRefresher {
    provider: SharedCredentialsProvider,
    cache: Arc<CredentialCache>,
    metrics: Arc<Metrics>,
    /// What is being fetched, for logs: the role ARN or "base credentials".
    description: String,
    /// The route these credentials sign for (metrics label and log field).
    route: &'static str,
}

impl CredentialRefresher {
    /// A refresher that fills `cache` from `provider` for `route` (its metrics label and log
    /// field).
    pub fn new(
        route: &'static str,
        provider: SharedCredentialsProvider,
        cache: Arc<CredentialCache>,
        metrics: Arc<Metrics>,
        description: impl Into<String>,
    ) -> Self {
        Self {
            provider,
            cache,
            metrics,
            description: description.into(),
            route,
        }
    }

    /// Starts fetching now and keeps refreshing until the task is aborted.
    pub fn spawn(self) -> JoinHandle<()> {
        tokio::spawn(self.run())
    }

    async fn run(self) {
        let mut failures: u32 = 0;
        loop {
            let fetched_at = self.cache.clock.now();
            match self.fetch_once().await {
                Ok(expiry) => {
                    failures = 0;
                    let wait = refresh_delay(self.cache.clock.now(), expiry, fastrand::f64());
                    self.sleep_wall_clock(wait, Some(fetched_at)).await;
                }
                Err(()) => {
                    let wait = retry_delay(failures, fastrand::f64());
                    failures = failures.saturating_add(1);
                    // During backoff, forced-refresh requests are ignored: we are already trying.
                    self.sleep_wall_clock(wait, None).await;
                }
            }
        }
    }

    /// Sleeps until `wait` has passed on the wall clock (see [`WALL_CLOCK_CHECK`]). With
    /// `forced_after = Some(last fetch)`, a [`CredentialCache::request_refresh`] ends the sleep
    /// early once [`MIN_FORCED_REFRESH_INTERVAL`] has passed since that fetch.
    async fn sleep_wall_clock(&self, wait: Duration, forced_after: Option<SystemTime>) {
        let clock = &self.cache.clock;
        let until = clock.now() + wait;
        loop {
            let left = match until.duration_since(clock.now()) {
                Ok(left) if !left.is_zero() => left,
                _ => return,
            };
            let nap = tokio::time::sleep(left.min(WALL_CLOCK_CHECK));
            match forced_after {
                None => nap.await,
                Some(fetched_at) => tokio::select! {
                    () = nap => {}
                    () = self.cache.refresh_wanted.notified() => {
                        let since = clock.now().duration_since(fetched_at).unwrap_or_default();
                        if since >= MIN_FORCED_REFRESH_INTERVAL {
                            tracing::info!(
                                route = self.route,
                        credentials = %self.description,
                                "refreshing credentials early: the upstream reported them expired"
                            );
                            return;
                        }
                    }
                },
            }
        }
    }

    async fn fetch_once(&self) -> Result<Option<SystemTime>, ()> {
        let fetched =
            tokio::time::timeout(FETCH_TIMEOUT, self.provider.provide_credentials()).await;
        let result = match fetched {
            Ok(Ok(creds)) => Ok(creds),
            Ok(Err(e)) => {
                // The whole nested chain, raw responses included, for whoever asks for it.
                tracing::debug!(route = self.route, error = %DisplayErrorContext(&e), "credential fetch failed: full error");
                Err(super::explain::credentials_error(&e))
            }
            Err(_) => Err(format!(
                "credential fetch timed out after {}s",
                FETCH_TIMEOUT.as_secs()
            )),
        };
        self.metrics.record_refresh(self.route, result.is_ok());
        match result {
            Ok(creds) => {
                let expiry = creds.expiry();
                let expiry_unix = expiry
                    .and_then(|e| e.duration_since(UNIX_EPOCH).ok())
                    .map_or(0.0, |d| d.as_secs_f64());
                self.metrics
                    .credentials_expiry
                    .get_or_create(&RouteLabels { route: self.route })
                    .set(expiry_unix);
                match expiry {
                    Some(e) => tracing::info!(
                        route = self.route,
                        credentials = %self.description,
                        expires_at = %humantime::format_rfc3339_seconds(e),
                        "obtained AWS credentials"
                    ),
                    None => {
                        tracing::info!(route = self.route,
                        credentials = %self.description, "obtained AWS credentials (no expiry)")
                    }
                }
                // `Credentials`' Debug/Display redact the secret and token; only metadata is logged.
                self.cache.store(creds);
                Ok(expiry)
            }
            Err(reason) => {
                let still_valid = self.cache.get().is_ok();
                tracing::warn!(
                    route = self.route,
                        credentials = %self.description,
                    still_serving = still_valid,
                    error = %reason,
                    "failed to obtain AWS credentials; will retry"
                );
                self.cache.record_failure(reason);
                Err(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::SystemClock;
    use aws_credential_types::provider::future;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Wall-clock time that follows tokio's (pausable) clock.
    #[derive(Debug)]
    struct TokioClock {
        start_wall: SystemTime,
        start: tokio::time::Instant,
    }

    impl Clock for TokioClock {
        fn now(&self) -> SystemTime {
            self.start_wall + self.start.elapsed()
        }
    }

    /// Issues credentials with a fixed lifetime, counting calls; can be told to fail.
    #[derive(Debug)]
    struct CountingProvider {
        clock: Arc<TokioClock>,
        lifetime: Duration,
        calls: AtomicUsize,
        fail: std::sync::atomic::AtomicBool,
    }

    impl ProvideCredentials for CountingProvider {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if self.fail.load(Ordering::SeqCst) {
                return future::ProvideCredentials::ready(Err(
                    aws_credential_types::provider::error::CredentialsError::provider_error(
                        "AccessDenied: not trusted",
                    ),
                ));
            }
            future::ProvideCredentials::ready(Ok(Credentials::new(
                format!("AKID{n}"),
                "secret",
                Some("token".into()),
                Some(self.clock.now() + self.lifetime),
                "test",
            )))
        }
    }

    fn setup(lifetime: Duration) -> (Arc<CountingProvider>, Arc<CredentialCache>, JoinHandle<()>) {
        let clock = Arc::new(TokioClock {
            start_wall: SystemTime::now(),
            start: tokio::time::Instant::now(),
        });
        let provider = Arc::new(CountingProvider {
            clock: clock.clone(),
            lifetime,
            calls: AtomicUsize::new(0),
            fail: false.into(),
        });
        let cache = Arc::new(CredentialCache::new(clock));
        let task = CredentialRefresher::new(
            "default",
            SharedCredentialsProvider::new(ArcProvider(provider.clone())),
            cache.clone(),
            Arc::new(Metrics::new()),
            "test role",
        )
        .spawn();
        (provider, cache, task)
    }

    #[derive(Debug)]
    struct ArcProvider(Arc<CountingProvider>);
    impl ProvideCredentials for ArcProvider {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            self.0.provide_credentials()
        }
    }

    /// Lets the spawned refresher run until it sleeps again.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn refreshes_ahead_of_expiry_and_never_lapses() {
        let (provider, cache, _task) = setup(Duration::from_secs(60 * 60));
        settle().await;
        assert_eq!(
            provider.calls.load(Ordering::SeqCst),
            1,
            "fetched at startup"
        );
        let first = cache.get().unwrap();
        // Nothing happens before the earliest refresh point (expiry - 10 min).
        tokio::time::advance(Duration::from_secs(49 * 60)).await;
        settle().await;
        assert_eq!(provider.calls.load(Ordering::SeqCst), 1);
        // By expiry - 5 min the refresh has happened, and the cache holds the new credentials.
        tokio::time::advance(Duration::from_secs(6 * 60)).await;
        settle().await;
        assert_eq!(provider.calls.load(Ordering::SeqCst), 2);
        let second = cache.get().unwrap();
        assert_ne!(first.access_key_id(), second.access_key_id());
        assert!(second.expiry().unwrap() > first.expiry().unwrap());
        // Over a day, one fetch per lifetime (every 50 to 55 minutes), credentials always usable.
        for _ in 0..(24 * 60) {
            tokio::time::advance(Duration::from_secs(60)).await;
            settle().await;
            assert!(cache.is_ready());
        }
        let calls = provider.calls.load(Ordering::SeqCst);
        // 24h55m elapsed in all: 1 + 1495/55 ..= 1 + 1495/50.
        assert!(
            (28..=30).contains(&calls),
            "{calls} fetches in 24h55m with 1h credentials"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn failed_refresh_keeps_serving_then_retries_with_backoff() {
        let (provider, cache, _task) = setup(Duration::from_secs(15 * 60));
        settle().await;
        assert!(cache.is_ready());
        provider.fail.store(true, Ordering::SeqCst);
        // Past the refresh point the fetch fails, yet the old credentials still serve.
        tokio::time::advance(Duration::from_secs(10 * 60 + 1)).await;
        settle().await;
        let after_first_failure = provider.calls.load(Ordering::SeqCst);
        assert!(after_first_failure >= 2);
        assert!(cache.is_ready(), "still-valid credentials keep serving");
        // Retries back off (1s, 2s, 4s, ... capped at 60s), not a hot loop.
        for _ in 0..60 {
            tokio::time::advance(Duration::from_secs(1)).await;
            settle().await;
        }
        let retries = provider.calls.load(Ordering::SeqCst) - after_first_failure;
        assert!((3..=9).contains(&retries), "{retries} retries in 60s");
        // Once expired: not ready, and the reason names STS's error.
        tokio::time::advance(Duration::from_secs(5 * 60)).await;
        settle().await;
        let err = cache.get().unwrap_err();
        assert!(err.0.contains("AccessDenied"), "{err}");
        // The IAM fix lands: the next retry heals it without a restart.
        provider.fail.store(false, Ordering::SeqCst);
        for _ in 0..MAX_BACKOFF.as_secs() {
            tokio::time::advance(Duration::from_secs(1)).await;
            settle().await;
        }
        assert!(cache.is_ready());
    }

    #[tokio::test(start_paused = true)]
    async fn upstream_reported_expiry_forces_a_rate_limited_refresh() {
        let (provider, cache, _task) = setup(Duration::from_secs(60 * 60));
        settle().await;
        assert_eq!(provider.calls.load(Ordering::SeqCst), 1);
        // Too soon after the last fetch: ignored, however often asked.
        tokio::time::advance(Duration::from_secs(10)).await;
        for _ in 0..100 {
            cache.request_refresh();
            settle().await;
        }
        assert_eq!(provider.calls.load(Ordering::SeqCst), 1);
        // Later, one request means one fetch, long before the scheduled refresh.
        tokio::time::advance(MIN_FORCED_REFRESH_INTERVAL).await;
        cache.request_refresh();
        settle().await;
        assert_eq!(provider.calls.load(Ordering::SeqCst), 2);
        assert!(cache.is_ready());
    }

    #[test]
    fn refresh_delay_table() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let min = |m: u64| Duration::from_secs(m * 60);
        let cases = [
            // (lifetime left, jitter, expected delay)
            (Some(min(60)), 0.0, min(55)),
            (Some(min(60)), 0.5, Duration::from_secs(52 * 60 + 30)),
            (Some(min(60)), 0.999_999, min(50)),
            (Some(min(15)), 0.0, min(10)),
            (Some(min(8)), 0.0, min(3)),
            // Shorter than the lead: halfway to expiry minus the signing margin.
            (Some(min(4)), 0.0, Duration::from_millis(112_500)),
            (
                Some(Duration::from_secs(30)),
                0.0,
                Duration::from_millis(7_500),
            ),
            (Some(Duration::ZERO), 0.0, MIN_REFRESH_INTERVAL), // never a hot loop
            (None, 0.3, STATIC_REFRESH_INTERVAL),
        ];
        for (left, jitter, want) in cases {
            let got = refresh_delay(now, left.map(|l| now + l), jitter);
            let diff = got.abs_diff(want);
            assert!(
                diff < Duration::from_secs(1),
                "left {left:?} jitter {jitter}: {got:?} != {want:?}"
            );
        }
        // Always at least REFRESH_LEAD ahead of expiry when the lifetime allows it.
        for j in [0.0, 0.25, 0.5, 0.75, 0.99] {
            let d = refresh_delay(now, Some(now + min(60)), j);
            assert!(min(60) - d >= REFRESH_LEAD);
        }
    }

    #[test]
    fn retry_delay_table() {
        let s = Duration::from_secs;
        assert_eq!(retry_delay(0, 1.0), s(1));
        assert_eq!(retry_delay(1, 1.0), s(2));
        assert_eq!(retry_delay(3, 1.0), s(8));
        assert_eq!(retry_delay(6, 1.0), s(60));
        assert_eq!(retry_delay(40, 1.0), s(60));
        assert_eq!(retry_delay(3, 0.0), s(4));
    }

    #[test]
    fn expired_or_nearly_expired_credentials_are_not_used() {
        let clock = Arc::new(SystemClock);
        let cache = CredentialCache::new(clock);
        assert!(cache.get().unwrap_err().0.contains("not yet available"));
        let now = SystemTime::now();
        cache.store(Credentials::new(
            "a",
            "s",
            None,
            Some(now + Duration::from_secs(5)),
            "t",
        ));
        assert!(cache.get().unwrap_err().0.contains("expired"));
        cache.store(Credentials::new(
            "a",
            "s",
            None,
            Some(now + Duration::from_secs(600)),
            "t",
        ));
        assert!(cache.is_ready());
        cache.store(Credentials::new("a", "s", None, None, "t"));
        assert!(cache.is_ready());
    }
}
