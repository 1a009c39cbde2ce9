//! AMP's lasting limits with a real Prometheus sender (prometheus/prometheus#8474): an
//! active-series limit answered 429 must not make the sender retry the same batch forever,
//! blocking every newer sample. Under the default `--on-limit-exceeded reject` the sender hears
//! 400, drops the batch and goes on; under `retry` it keeps retrying, as it would without us.

use std::time::{Duration, Instant};

use support::accounts::{BASE_ACCESS_KEY, BASE_SECRET, EXTERNAL_ID, ROLE_ARN};
use support::amp::{AmpStandIn, Reply};
use support::client::get;
use support::harness::{Peers, Prometheus, Proxy, Role, eventually, metric_sum};
use support::sts::StsStandIn;

/// AMP's answer for the per-workspace active-series quota (its troubleshooting guide).
const SERIES_LIMIT: &str = "user=111111111111_ws-e2e: per-user series limit (local limit: 0 \
                            global limit: 3000000 actual local limit: 500000) exceeded";

const LIMIT: Duration = Duration::from_secs(60);

/// The proxy with the stand-ins' accounts: AssumeRole at `sts`, writes to `amp`.
fn proxy_to(sts: &StsStandIn, amp: &AmpStandIn, extra: &[&str]) -> Proxy {
    let (url, sts_url) = (amp.url(), sts.url());
    let mut args = vec![
        "--role-arn",
        ROLE_ARN,
        "--external-id",
        EXTERNAL_ID,
        "--sts-endpoint",
        &sts_url,
        "--listen",
        "127.0.0.1:0",
        "--upstream-url",
        &url,
        "--region",
        "us-east-1",
        "--retry-deadline",
        "1s",
    ];
    args.extend_from_slice(extra);
    Proxy::spawn((BASE_ACCESS_KEY, BASE_SECRET), &[], &args)
}

/// A Prometheus writing through `proxy`, once both are ready.
async fn sender_through(peers: &Peers, proxy: &Proxy) -> Prometheus {
    proxy.wait_ready().await;
    let write_url = proxy.url("/api/v1/write");
    let sender = Prometheus::start(
        &peers.prometheus,
        Role::Sender {
            url: &write_url,
            extra_targets: &[],
            rw2: false,
        },
    );
    sender.wait_ready().await;
    sender
}

async fn proxy_metric(proxy: &Proxy, name: &str) -> f64 {
    metric_sum(&get(&proxy.url("/metrics")).await.text(), name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_series_limit_makes_prometheus_drop_the_batch_and_go_on_not_retry_forever() {
    let peers = Peers::find();
    let sts = StsStandIn::start().await;
    let amp = AmpStandIn::start().await;
    amp.set_reply(Reply {
        status: 429,
        body: SERIES_LIMIT,
        ..Reply::default()
    });

    // Default: reject. The sender hears 400 and counts the samples as failed, never retried.
    let proxy = proxy_to(&sts, &amp, &[]);
    let sender = sender_through(&peers, &proxy).await;
    let started = Instant::now();
    eventually("the sender to drop refused samples", LIMIT, || async {
        let failed = sender
            .own_metric("prometheus_remote_storage_samples_failed_total")
            .await;
        (failed > 0.0).then_some(())
    })
    .await;
    // Let a few more batches be refused: each is dropped, none is retried.
    eventually("three refused writes", LIMIT, || async {
        let n = proxy_metric(&proxy, "amp_rw_proxy_upstream_rejected_requests_total").await;
        (n >= 3.0).then_some(())
    })
    .await;
    assert_eq!(
        sender
            .own_metric("prometheus_remote_storage_samples_retried_total")
            .await,
        0.0,
        "the sender never retried a refused batch"
    );
    let metrics = get(&proxy.url("/metrics")).await.text();
    let rejected = metric_sum(&metrics, "amp_rw_proxy_upstream_rejected_requests_total");
    let attempts = amp.count() as f64;
    assert!(
        metrics.contains(
            r#"amp_rw_proxy_upstream_rejected_requests_total{route="default",reason="series_limit"}"#
        ),
        "{metrics}"
    );
    assert!(metric_sum(&metrics, "amp_rw_proxy_upstream_rejected_samples_total") > 0.0);
    // Counted once answered: a write or two may be on their way meanwhile.
    assert!(
        attempts >= rejected && attempts <= rejected + 2.0,
        "one upstream attempt per refused write, the proxy did not retry either: {attempts} \
         attempts, {rejected} rejections"
    );
    // The upstream's message is logged, but not once per request.
    let logs = proxy.proc.log();
    let warnings = logs
        .lines()
        .filter(|l| l.contains("upstream rejected request") && l.contains("per-user series limit"))
        .count();
    let windows = started.elapsed().as_secs() / 10 + 2;
    assert!(
        warnings >= 1 && (warnings as u64) <= windows,
        "{warnings} warnings for {rejected} rejections in {:?}",
        started.elapsed()
    );

    // The quota is raised: newer samples flow at once, nothing was queued behind the limit.
    amp.set_reply(Reply::default());
    let before = amp.count();
    eventually("newer samples to arrive", LIMIT, || async {
        let metrics = get(&proxy.url("/metrics")).await.text();
        let acknowledged = metrics
            .lines()
            .any(|l| l.starts_with("amp_rw_proxy_requests_total{") && l.contains("code=\"204\""));
        (amp.count() > before && acknowledged).then_some(())
    })
    .await;
    drop(sender);

    // `--on-limit-exceeded retry`: the same answer is throttling; the sender retries it.
    amp.set_reply(Reply {
        status: 429,
        body: SERIES_LIMIT,
        ..Reply::default()
    });
    let retrying = proxy_to(&sts, &amp, &["--on-limit-exceeded", "retry"]);
    let sender = sender_through(&peers, &retrying).await;
    eventually("the sender to retry", LIMIT, || async {
        let retried = sender
            .own_metric("prometheus_remote_storage_samples_retried_total")
            .await;
        (retried > 0.0).then_some(())
    })
    .await;
    assert_eq!(
        sender
            .own_metric("prometheus_remote_storage_samples_failed_total")
            .await,
        0.0,
        "nothing dropped: the sender holds the batch and retries"
    );
    assert_eq!(
        proxy_metric(&retrying, "amp_rw_proxy_upstream_rejected_requests_total").await,
        0.0
    );
}
