//! Every metric name the alerting rules and the Grafana dashboard select
//! (`deploy/monitoring/metric-names.txt`, which `deploy/monitoring/generate.py` extracts from
//! both and CI keeps up to date) is on a running proxy's `/metrics` once real traffic —
//! failures included — has gone through it: renaming a metric breaks this test, not a team's
//! alerts. Also the label values the rules select on (`result="5xx"`, `reason="throttled"`,
//! write paths ending in `/write`, ...), which a rename would silently break just the same.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use support::accounts::{EXTERNAL_ID, REGION, ROLE_ARN};
use support::amp::{AmpStandIn, Reply};
use support::client::{get, write};
use support::proxy::ProxyUnderTest;
use support::sts::StsStandIn;
use support::wire::write_request;

const DENIED_ROLE: &str = "arn:aws:iam::111111111111:role/not_trusting_b";

/// The names the rules and the dashboard use.
fn used_names() -> BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/monitoring/metric-names.txt");
    let text = std::fs::read_to_string(&path).expect("deploy/monitoring/metric-names.txt");
    let names: BTreeSet<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    assert!(names.len() > 10, "suspiciously few names in {path:?}");
    names
}

/// Sample names (not just `# TYPE` lines: a family without series is no use to a rule).
fn sample_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l[..l.find(['{', ' ']).unwrap_or(l.len())].to_string())
        .collect()
}

async fn scrape(proxy: &ProxyUnderTest) -> String {
    let answer = get(&proxy.url("/metrics")).await;
    assert_eq!(answer.status, StatusCode::OK);
    answer.text()
}

/// Scrapes until `line` (a sample with its labels, value excluded) shows up: the proxy's own
/// signal that the background work it counts (a credential fetch) has happened.
async fn scrape_until(proxy: &ProxyUnderTest, line: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = scrape(proxy).await;
        if text.lines().any(|l| l.starts_with(line)) {
            return text;
        }
        assert!(Instant::now() < deadline, "no {line} in:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn routes_file(dir: &Path, amp: &str) -> String {
    let text = format!(
        r#"[[route]]
name = "good"
path = "/good/api/v1/write"
upstream_url = "{amp}"
region = "{REGION}"
role_arn = "{ROLE_ARN}"
external_id = "{EXTERNAL_ID}"

[[route]]
name = "denied"
path = "/denied/api/v1/remote_write"
upstream_url = "{amp}"
region = "{REGION}"
role_arn = "{DENIED_ROLE}"
"#
    );
    let path = dir.join("routes.toml");
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_rules_and_dashboard_use_is_exposed_after_real_traffic() {
    let sts = StsStandIn::start().await;
    sts.behaviour
        .lock()
        .unwrap()
        .denied_roles
        .push(DENIED_ROLE.to_string());
    let amp = AmpStandIn::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = routes_file(dir.path(), &amp.url());
    let sts_url = sts.url();
    // One route works, one is refused by STS (a missing trust policy); accounting on so the
    // sample counters exist; one request at a time so a second one is shed; a short retry
    // deadline so throttling outlives it quickly.
    let proxy = ProxyUnderTest::start(&[
        "--config",
        &config,
        "--sts-endpoint",
        &sts_url,
        "--accounting",
        "on",
        "--max-in-flight-requests",
        "1",
        "--retry-deadline",
        "2s",
    ])
    .await;
    scrape_until(
        &proxy,
        r#"amp_rw_proxy_credentials_expiry_timestamp_seconds{route="good"}"#,
    )
    .await;
    scrape_until(
        &proxy,
        r#"amp_rw_proxy_credential_refreshes_total{route="denied",result="failure"}"#,
    )
    .await;
    let good = proxy.url("/good/api/v1/write");
    let body = write_request(5).1;

    // Success, and a body accounting cannot decode (forwarded uncounted).
    assert_eq!(
        write(&good, body.clone()).await.status,
        StatusCode::NO_CONTENT
    );
    let garbage = Bytes::from_static(b"not a snappy body");
    assert_eq!(write(&good, garbage).await.status, StatusCode::NO_CONTENT);
    // A 500, retried, then accepted.
    amp.set_script(vec![
        Reply {
            status: 500,
            body: "InternalServerError",
            ..Reply::default()
        },
        Reply::default(),
    ]);
    assert_eq!(
        write(&good, body.clone()).await.status,
        StatusCode::NO_CONTENT
    );
    // Throttling past --retry-deadline: given up on, 503 to the sender.
    amp.set_reply(Reply {
        status: 429,
        body: "ThrottlingException: Rate exceeded",
        ..Reply::default()
    });
    assert_eq!(
        write(&good, body.clone()).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    amp.set_reply(Reply::default());
    // A final 400 (the sender drops the batch).
    amp.set_script(vec![Reply {
        status: 400,
        body: "out of order sample",
        ..Reply::default()
    }]);
    assert_eq!(
        write(&good, body.clone()).await.status,
        StatusCode::BAD_REQUEST
    );
    // The route STS refuses: 503.
    let denied = proxy.url("/denied/api/v1/remote_write");
    assert_eq!(
        write(&denied, body.clone()).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // Shedding: one slow request holds the only slot, the next is refused.
    amp.set_script(vec![Reply {
        delay: Duration::from_millis(500),
        ..Reply::default()
    }]);
    let before = amp.count();
    let slow = {
        let (url, body) = (good.clone(), body.clone());
        tokio::spawn(async move { write(&url, body).await.status })
    };
    while amp.count() == before {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        write(&good, body.clone()).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(slow.await.unwrap(), StatusCode::NO_CONTENT);

    // A second proxy whose workspace refuses connections.
    let unreachable = ProxyUnderTest::start_to(
        &sts,
        &ProxyUnderTest::closed_upstream_url().await,
        &["--retry-deadline", "1s"],
    )
    .await;
    unreachable.wait_ready(Duration::from_secs(20)).await;
    assert_eq!(
        write(&unreachable.url("/api/v1/write"), body.clone())
            .await
            .status,
        StatusCode::BAD_GATEWAY
    );

    let main = scrape(&proxy).await;
    let other = scrape(&unreachable).await;
    let exposed: BTreeSet<String> = sample_names(&main)
        .union(&sample_names(&other))
        .cloned()
        .collect();
    let missing: Vec<String> = used_names()
        .into_iter()
        .filter(|n| !exposed.contains(n))
        .collect();
    assert!(
        missing.is_empty(),
        "metrics used by deploy/monitoring (rules or dashboard) but not on /metrics: {missing:?}\n\
         (renamed? update the rules, the dashboard code, then run deploy/monitoring/generate.py)\n{main}"
    );

    // The label values the rules select on.
    let has = |text: &str, needle: &str| text.lines().any(|l| l.contains(needle));
    for needle in [
        r#"amp_rw_proxy_upstream_attempts_total{route="good",result="2xx"}"#,
        r#"amp_rw_proxy_upstream_attempts_total{route="good",result="5xx"}"#,
        r#"amp_rw_proxy_upstream_attempts_total{route="good",result="4xx"}"#,
        r#"amp_rw_proxy_upstream_retries_total{route="good",reason="server_error"}"#,
        r#"amp_rw_proxy_upstream_retries_total{route="good",reason="throttled"}"#,
        r#"amp_rw_proxy_upstream_retry_deadline_exceeded_total{route="good",reason="throttled"}"#,
        r#"amp_rw_proxy_requests_total{route="good",path="/good/api/v1/write",code="400"}"#,
        r#"amp_rw_proxy_requests_total{route="denied",path="/denied/api/v1/remote_write",code="503"}"#,
        r#"amp_rw_proxy_request_duration_seconds_bucket{le="+Inf",route="good",path="/good/api/v1/write"}"#,
        r#"amp_rw_proxy_remote_write_samples_total{route="good",version="1.0",outcome="forwarded"}"#,
        r#"amp_rw_proxy_credential_refreshes_total{route="good",result="success"}"#,
        r#"amp_rw_proxy_overload_rejections_total{limit="requests"}"#,
    ] {
        assert!(has(&main, needle), "no {needle} in:\n{main}");
    }
    assert!(
        has(
            &other,
            r#"amp_rw_proxy_upstream_attempts_total{route="default",result="connect_error"}"#
        ),
        "{other}"
    );
    // The gauges the not-ready and drain alerts compare: a route without credentials makes the
    // instance unready; the drain budget is --shutdown-grace 25s minus --drain-delay 5s.
    assert!(main.lines().any(|l| l == "amp_rw_proxy_ready 0"), "{main}");
    assert!(
        other.lines().any(|l| l == "amp_rw_proxy_ready 1"),
        "{other}"
    );
    assert!(
        main.lines()
            .any(|l| l == "amp_rw_proxy_drain_budget_seconds 20.0"),
        "{main}"
    );
}
