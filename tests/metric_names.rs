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
use support::harness::{Peers, Prometheus, Role, repo_root};
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
    // A lasting limit, answered 429 by older AMP: a final 400 (the sender drops the batch).
    amp.set_script(vec![Reply {
        status: 429,
        body: "user=1_ws: per-user series limit (local limit: 0 global limit: 10) exceeded",
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
        r#"amp_rw_proxy_upstream_rejected_samples_total{route="good",reason="series_limit"}"#,
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

/// The rule file loaded into real Prometheus servers (2.42 and 3.5) that scrape a real proxy
/// under traffic: the exposition is scraped without error by both, every rule evaluates with
/// health "ok", and each recording rule produces series, with the labels the alerts join on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_proxy_and_evaluates_every_rule() {
    let peers = Peers::find();
    let rule_file = repo_root().join("deploy/monitoring/rules/amp-rw-proxy.rules.yml");
    let sts = StsStandIn::start().await;
    let amp = AmpStandIn::start().await;
    let proxy = ProxyUnderTest::start_with(&sts, &amp, &["--accounting", "on"]).await;
    proxy.wait_ready(Duration::from_secs(20)).await;
    // Traffic while the servers scrape: a write every 100 ms, one in five answered 500 (and
    // retried); bounded, it stops by itself after 60 s.
    let url = proxy.url("/api/v1/write");
    let traffic = {
        let amp_script = amp.script.clone();
        tokio::spawn(async move {
            for i in 0..600 {
                if i % 5 == 0 {
                    amp_script.lock().unwrap().push_back(Reply {
                        status: 500,
                        ..Reply::default()
                    });
                }
                write(&url, write_request(3).1).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let recorded: Vec<String> = {
        let text = std::fs::read_to_string(&rule_file).unwrap();
        text.lines()
            .filter_map(|l| l.trim().strip_prefix("- record: "))
            .map(String::from)
            .collect()
    };
    assert!(recorded.len() >= 8, "{recorded:?}");
    for binary in [&peers.prometheus, &peers.prometheus3] {
        let prom = Prometheus::start(
            binary,
            Role::Monitor {
                targets: &[proxy.addr],
                rule_file: &rule_file,
            },
        );
        prom.wait_ready().await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let targets = prom.api("/api/v1/targets").await;
            let target = &targets["data"]["activeTargets"][0];
            let rules = prom.api("/api/v1/rules").await;
            let all: Vec<&serde_json::Value> = rules["data"]["groups"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|g| g["rules"].as_array().unwrap())
                .collect();
            let broken: Vec<String> = all
                .iter()
                .filter(|r| r["health"] == "err")
                .map(|r| format!("{}: {}", r["name"], r["lastError"]))
                .collect();
            assert!(broken.is_empty(), "{binary:?}: rules failing: {broken:?}");
            // Not yet discovered (null) or not yet scraped ("unknown") is waited for; a failed
            // scrape ("down": the exposition did not parse, say) fails at once.
            assert!(
                target["health"] != "down",
                "{binary:?} cannot scrape the proxy: {target}"
            );
            let mut empty = Vec::new();
            for name in &recorded {
                let series = prom.query(name, None).await;
                if !series
                    .iter()
                    .any(|(labels, v)| v.is_finite() && labels["job"] == "amp-rw-proxy")
                {
                    empty.push(name.clone());
                }
            }
            let healthy = all.iter().all(|r| r["health"] == "ok");
            if target["health"] == "up" && healthy && empty.is_empty() {
                // Every rule of the file, as its `- alert:` and `- record:` lines count them.
                let rules = std::fs::read_to_string(&rule_file).unwrap();
                let defined = rules
                    .lines()
                    .filter(|l| {
                        let l = l.trim_start();
                        l.starts_with("- alert:") || l.starts_with("- record:")
                    })
                    .count();
                assert_eq!(all.len(), defined, "{binary:?}: rules loaded");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{binary:?}: after 30 s, target {}, recording rules without a finite series: {empty:?}\n{}",
                target["health"],
                prom.proc.log()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // The failure ratio of this traffic: 1 in 5 attempts is a 500 (each retried once).
        let ratio = prom
            .query("amp_rw_proxy:upstream_failure_ratio:rate5m", None)
            .await;
        assert!(
            ratio.iter().all(|(_, v)| *v > 0.0 && *v < 0.5),
            "{binary:?}: {ratio:?}"
        );
        // Over 5 % of attempts fail, so AmpRwProxyUpstreamErrors goes pending (firing needs its
        // `for: 10m`) on the real series, and no other alert does.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let pending: BTreeSet<String> = prom
                .query("ALERTS", None)
                .await
                .into_iter()
                .map(|(labels, _)| format!("{} {}", labels["alertname"], labels["alertstate"]))
                .collect();
            if !pending.is_empty() {
                assert_eq!(
                    pending,
                    BTreeSet::from(["AmpRwProxyUpstreamErrors pending".to_string()]),
                    "{binary:?}"
                );
                break;
            }
            assert!(Instant::now() < deadline, "{binary:?}: no alert pending");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    traffic.abort();
}
