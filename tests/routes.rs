//! The routes file (`--config`): several workspaces behind one proxy, each route with its own
//! role, ExternalId, credential cache, inbound authentication and metric labels.

use std::path::Path;
use std::time::Duration;

use http::{Request, StatusCode};
use http_body_util::Full;
use support::accounts::{REGION, WORKSPACE_PATH};
use support::amp::{AmpStandIn, Reply};
use support::client::{get, prometheus_post, send, write};
use support::proxy::ProxyUnderTest;
use support::sts::StsStandIn;
use support::wire::write_request;

const ROLE_A: &str = "arn:aws:iam::111111111111:role/team_a_writer";
const ROLE_B: &str = "arn:aws:iam::333333333333:role/team_b_writer";

/// A routes file for team-a (→ `amp_a`, ROLE_A with ExternalId ext-a) and team-b (→ `amp_b`,
/// ROLE_B with ext-b); `extra_a`/`extra_b` are appended to each route's table.
fn routes_file(dir: &Path, amp_a: &str, amp_b: &str, extra_a: &str, extra_b: &str) -> String {
    let text = format!(
        r#"# two teams, two workspaces
[[route]]
name = "team-a"
path = "/team-a/api/v1/write"
upstream_url = "{amp_a}"
region = "{REGION}"
role_arn = "{ROLE_A}"
external_id = "ext-a"
{extra_a}

[[route]]
name = "team-b"
path = "/team-b/api/v1/write"
upstream_url = "{amp_b}"
region = "{REGION}"
role_arn = "{ROLE_B}"
external_id = "ext-b"
session_name = "team-b-session"
{extra_b}
"#
    );
    let path = dir.join("routes.toml");
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

/// An STS stand-in whose two roles each demand their own ExternalId.
async fn sts_for_two_roles() -> StsStandIn {
    let sts = StsStandIn::start().await;
    {
        let mut b = sts.behaviour.lock().unwrap();
        b.external_id = None;
        b.role_external_ids = vec![
            (ROLE_A.to_string(), "ext-a".to_string()),
            (ROLE_B.to_string(), "ext-b".to_string()),
        ];
    }
    sts
}

async fn start(config: &str, sts: &StsStandIn, extra: &[&str]) -> ProxyUnderTest {
    let sts_url = sts.url();
    let mut args = vec!["--config", config, "--sts-endpoint", &sts_url];
    args.extend_from_slice(extra);
    ProxyUnderTest::start(&args).await
}

fn with_token(url: String, token: &str) -> Request<Full<bytes::Bytes>> {
    prometheus_post(&url)
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(write_request(3).1))
        .unwrap()
}

#[tokio::test]
async fn each_route_reaches_its_own_workspace_with_its_own_role() {
    let sts = sts_for_two_roles().await;
    let (amp_a, amp_b) = (AmpStandIn::start().await, AmpStandIn::start().await);
    let dir = tempfile::tempdir().unwrap();
    let config = routes_file(dir.path(), &amp_a.url(), &amp_b.url(), "", "");
    let proxy = start(&config, &sts, &["--accounting", "on"]).await;
    proxy.wait_ready(Duration::from_secs(10)).await;

    // One AssumeRole per route, each with its own ExternalId and session name.
    let mut assumed = sts.assumed();
    assumed.sort();
    assert_eq!(
        assumed,
        vec![
            (ROLE_A.to_string(), Some("ext-a".to_string())),
            (ROLE_B.to_string(), Some("ext-b".to_string())),
        ]
    );
    let names = sts.session_names.lock().unwrap().clone();
    assert!(names.contains(&"team-b-session".to_string()), "{names:?}");
    assert!(
        names.contains(&"amp-rw-proxy-test-host".to_string()),
        "team-a inherits the default session name: {names:?}"
    );

    for _ in 0..2 {
        let a = write(&proxy.url("/team-a/api/v1/write"), write_request(3).1).await;
        assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text());
    }
    let b = write(&proxy.url("/team-b/api/v1/write"), write_request(5).1).await;
    assert_eq!(b.status, StatusCode::NO_CONTENT, "{}", b.text());
    assert_eq!((amp_a.count(), amp_b.count()), (2, 1));
    for r in amp_a.received().iter().chain(amp_b.received().iter()) {
        assert!(r.verdict.is_ok(), "{:?}", r.verdict);
        assert_eq!(r.path, WORKSPACE_PATH);
    }

    // With a routes file, only its paths are remote-write paths; the 404 does not list them.
    let default = write(&proxy.url("/api/v1/write"), write_request(1).1).await;
    assert_eq!(default.status, StatusCode::NOT_FOUND);
    assert!(!default.text().contains("team-"), "{}", default.text());
    let upstream_path = write(&proxy.url(WORKSPACE_PATH), write_request(1).1).await;
    assert_eq!(upstream_path.status, StatusCode::NOT_FOUND);
    assert_eq!((amp_a.count(), amp_b.count()), (2, 1));

    let m = get(&proxy.url("/metrics")).await.text();
    for line in [
        r#"amp_rw_proxy_requests_total{route="team-a",path="/team-a/api/v1/write",code="204"} 2"#,
        r#"amp_rw_proxy_requests_total{route="team-b",path="/team-b/api/v1/write",code="204"} 1"#,
        r#"amp_rw_proxy_requests_total{route="",path="unmatched",code="404"} 2"#,
        r#"amp_rw_proxy_credential_refreshes_total{route="team-a",result="success"} 1"#,
        r#"amp_rw_proxy_credential_refreshes_total{route="team-b",result="success"} 1"#,
        r#"amp_rw_proxy_remote_write_samples_total{route="team-a",version="1.0",outcome="forwarded"} 6"#,
        r#"amp_rw_proxy_remote_write_samples_total{route="team-b",version="1.0",outcome="forwarded"} 5"#,
        r#"amp_rw_proxy_upstream_request_duration_seconds_count{route="team-b"} 1"#,
    ] {
        assert!(m.contains(line), "missing {line} in\n{m}");
    }
    assert!(m.contains(r#"amp_rw_proxy_credentials_expiry_timestamp_seconds{route="team-a"}"#));
    assert_eq!(sts.calls(), 2, "credentials cached per route");
}

#[tokio::test]
async fn a_route_with_a_broken_role_fails_alone_and_heals() {
    let sts = sts_for_two_roles().await;
    sts.behaviour
        .lock()
        .unwrap()
        .denied_roles
        .push(ROLE_B.to_string());
    let (amp_a, amp_b) = (AmpStandIn::start().await, AmpStandIn::start().await);
    let dir = tempfile::tempdir().unwrap();
    let config = routes_file(dir.path(), &amp_a.url(), &amp_b.url(), "", "");
    let proxy = start(&config, &sts, &[]).await;

    // Readiness names exactly the routes without credentials: wait until that is team-b alone.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let ready = loop {
        let r = get(&proxy.url("/-/ready")).await;
        let text = r.text();
        if text.contains("route team-b") && !text.contains("route team-a") {
            break r;
        }
        assert!(tokio::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(ready.text().contains("AccessDenied"), "{}", ready.text());

    let a = write(&proxy.url("/team-a/api/v1/write"), write_request(1).1).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text());
    let b = write(&proxy.url("/team-b/api/v1/write"), write_request(1).1).await;
    assert_eq!(
        b.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "retryable for the sender"
    );
    assert!(b.text().contains("AccessDenied"), "{}", b.text());
    assert_eq!(amp_b.count(), 0, "nothing unsigned or mis-signed reached B");

    // The trust policy is fixed: team-b heals without a restart, and the proxy turns ready.
    sts.behaviour.lock().unwrap().denied_roles.clear();
    proxy.wait_ready(Duration::from_secs(15)).await;
    let b = write(&proxy.url("/team-b/api/v1/write"), write_request(1).1).await;
    assert_eq!(b.status, StatusCode::NO_CONTENT, "{}", b.text());
    let m = get(&proxy.url("/metrics")).await.text();
    assert!(
        m.contains(r#"amp_rw_proxy_credential_refreshes_total{route="team-b",result="failure"}"#),
        "{m}"
    );
    assert!(
        !m.contains(r#"amp_rw_proxy_credential_refreshes_total{route="team-a",result="failure"}"#),
        "{m}"
    );
}

#[tokio::test]
async fn routes_have_their_own_inbound_auth_or_the_global_one() {
    let sts = sts_for_two_roles().await;
    let (amp_a, amp_b) = (AmpStandIn::start().await, AmpStandIn::start().await);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("team-a.token"), "token-of-team-a\n").unwrap();
    let global = dir.path().join("global.token");
    std::fs::write(&global, "the-global-token\n").unwrap();
    // team-a's token file is relative: it is found next to the routes file.
    let config = routes_file(
        dir.path(),
        &amp_a.url(),
        &amp_b.url(),
        "inbound_bearer_token_file = \"team-a.token\"",
        "",
    );
    let global = global.to_string_lossy().into_owned();
    let proxy = start(&config, &sts, &["--inbound-bearer-token-file", &global]).await;
    proxy.wait_ready(Duration::from_secs(10)).await;

    let a_url = || proxy.url("/team-a/api/v1/write");
    let b_url = || proxy.url("/team-b/api/v1/write");
    let cases = [
        (a_url(), "token-of-team-a", StatusCode::NO_CONTENT),
        (a_url(), "the-global-token", StatusCode::UNAUTHORIZED),
        (b_url(), "the-global-token", StatusCode::NO_CONTENT),
        (b_url(), "token-of-team-a", StatusCode::UNAUTHORIZED),
        // Unknown paths are behind the global authentication.
        (
            proxy.url("/elsewhere"),
            "token-of-team-a",
            StatusCode::UNAUTHORIZED,
        ),
        (
            proxy.url("/elsewhere"),
            "the-global-token",
            StatusCode::NOT_FOUND,
        ),
    ];
    for (url, token, want) in cases {
        let r = send(with_token(url.clone(), token)).await;
        assert_eq!(r.status, want, "{url} with {token}: {}", r.text());
        if want == StatusCode::UNAUTHORIZED {
            assert!(r.headers.contains_key("www-authenticate"));
        }
    }
    assert_eq!((amp_a.count(), amp_b.count()), (1, 1));
    // Readiness stays open (probes carry no token), without STS's reasons.
    assert_eq!(get(&proxy.url("/-/ready")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn with_the_read_path_each_route_answers_queries_under_its_own_prefix() {
    let sts = sts_for_two_roles().await;
    let (amp_a, amp_b) = (AmpStandIn::start().await, AmpStandIn::start().await);
    let json = Reply {
        status: 200,
        headers: vec![("content-type", "application/json")],
        body: r#"{"status":"success","data":[]}"#,
        delay: Duration::ZERO,
    };
    amp_a.set_reply(json.clone());
    amp_b.set_reply(json);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("team-a.token"), "token-of-team-a\n").unwrap();
    let config = routes_file(
        dir.path(),
        &amp_a.url(),
        &amp_b.url(),
        "inbound_bearer_token_file = \"team-a.token\"",
        "",
    );
    let proxy = start(&config, &sts, &["--enable-query"]).await;
    proxy.wait_ready(Duration::from_secs(10)).await;

    let query = |path: &str, token: Option<&str>| {
        let mut req = Request::get(proxy.url(path));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        send(req.body(Full::new(bytes::Bytes::new())).unwrap())
    };
    let a = query("/team-a/api/v1/query?query=up", Some("token-of-team-a")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let b = query("/team-b/api/v1/label/job/values", None).await;
    assert_eq!(b.status, StatusCode::OK, "{}", b.text());
    // Each went to its own workspace, signed for it.
    let (got_a, got_b) = (amp_a.received(), amp_b.received());
    assert_eq!((got_a.len(), got_b.len()), (1, 1));
    assert_eq!(got_a[0].path, "/workspaces/ws-0123abcd/api/v1/query");
    assert_eq!(got_a[0].query.as_deref(), Some("query=up"));
    assert_eq!(
        got_b[0].path,
        "/workspaces/ws-0123abcd/api/v1/label/job/values"
    );
    assert!(got_a[0].verdict.is_ok() && got_b[0].verdict.is_ok());

    // team-a's own authentication guards its queries; no prefix, no route.
    let refused = query("/team-a/api/v1/query?query=up", None).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    for path in [
        "/api/v1/query?query=up",
        "/team-c/api/v1/query?query=up",
        "/team-b/api/v1/admin/tsdb/snapshot",
    ] {
        let r = query(path, None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!((amp_a.count(), amp_b.count()), (1, 1));
    let m = get(&proxy.url("/metrics")).await.text();
    for line in [
        r#"amp_rw_proxy_requests_total{route="team-a",path="/api/v1/query",code="200"} 1"#,
        r#"amp_rw_proxy_requests_total{route="team-a",path="/api/v1/query",code="401"} 1"#,
        r#"amp_rw_proxy_requests_total{route="team-b",path="/api/v1/label/:name/values",code="200"} 1"#,
    ] {
        assert!(m.contains(line), "missing {line} in\n{m}");
    }
}
