//! Inbound authentication (bearer token file, basic auth) through the proxy.

mod common;

use std::time::Duration;

use common::*;
use http::StatusCode;
use http_body_util::Full;

const READY: Duration = Duration::from_secs(10);

fn secret_file(name: &str, contents: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("amp-rw-proxy-inbound-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

async fn write_with(proxy: &ProxyUnderTest, authorization: Option<&str>) -> Answer {
    let (_, body) = write_request(1);
    let mut req = prometheus_post(&proxy.url("/api/v1/write"));
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    send(req.body(Full::new(body)).unwrap()).await
}

#[tokio::test]
async fn a_bearer_token_from_a_file_guards_writes_and_rotates_without_restart() {
    let sts = StsStandIn::start().await;
    let amp = AmpStandIn::start().await;
    let token = secret_file("token", "first-token\n");
    let proxy = ProxyUnderTest::start_with(
        &sts,
        &amp,
        &["--inbound-bearer-token-file", token.to_str().unwrap()],
    )
    .await;
    proxy.wait_ready(READY).await;

    let missing = write_with(&proxy, None).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        missing.headers["www-authenticate"],
        r#"Bearer realm="amp-rw-proxy""#
    );
    assert_eq!(
        write_with(&proxy, Some("Bearer wrong")).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        write_with(&proxy, Some("Bearer first-token")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        amp.count(),
        1,
        "only the authenticated request went upstream"
    );
    // Unknown paths are behind authentication too; health checks and /metrics are not.
    assert_eq!(
        get(&proxy.url("/elsewhere")).await.status,
        StatusCode::UNAUTHORIZED
    );
    for open in ["/-/healthy", "/-/ready", "/metrics"] {
        assert_eq!(get(&proxy.url(open)).await.status, StatusCode::OK, "{open}");
    }
    // The inbound Authorization header is never forwarded.
    assert!(
        amp.received()[0].headers["authorization"]
            .to_str()
            .unwrap()
            .starts_with("AWS4-HMAC-SHA256")
    );

    // Rotation: the new token works within seconds, the old one stops working.
    std::fs::write(&token, "second-token").unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while write_with(&proxy, Some("Bearer second-token")).await.status != StatusCode::NO_CONTENT {
        assert!(
            tokio::time::Instant::now() < deadline,
            "rotated token never accepted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        write_with(&proxy, Some("Bearer first-token")).await.status,
        StatusCode::UNAUTHORIZED
    );
    let m = get(&proxy.url("/metrics")).await.text();
    assert!(
        m.contains(r#"amp_rw_proxy_requests_total{path="/api/v1/write",code="401"}"#),
        "{m}"
    );
}

#[tokio::test]
async fn basic_auth_guards_writes() {
    let sts = StsStandIn::start().await;
    let amp = AmpStandIn::start().await;
    let password = secret_file("password", "correct horse");
    let proxy = ProxyUnderTest::start_with(
        &sts,
        &amp,
        &[
            "--inbound-basic-auth-user",
            "prometheus",
            "--inbound-basic-auth-password-file",
            password.to_str().unwrap(),
        ],
    )
    .await;
    proxy.wait_ready(READY).await;
    let good = aws_smithy_types::base64::encode("prometheus:correct horse");
    let bad = aws_smithy_types::base64::encode("prometheus:battery staple");
    let a = write_with(&proxy, None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(
        a.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    assert_eq!(
        write_with(&proxy, Some(&format!("Basic {bad}")))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        write_with(&proxy, Some(&format!("Basic {good}")))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
}
