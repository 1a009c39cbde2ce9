//! Inbound authentication (bearer token file, basic auth) through the proxy.

use std::time::Duration;

use http::StatusCode;
use http_body_util::Full;
use support::accounts::REGION;
use support::amp::AmpStandIn;
use support::client::{Answer, get, prometheus_post, raw_exchange, send};
use support::pki::Pki;
use support::proxy::ProxyUnderTest;
use support::sts::StsStandIn;
use support::wire::write_request;

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
        m.contains(
            r#"amp_rw_proxy_requests_total{route="default",path="/api/v1/write",code="401"}"#
        ),
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

async fn https_write(
    client: &hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Full<bytes::Bytes>,
    >,
    proxy: &ProxyUnderTest,
) -> Result<(StatusCode, http::Version), String> {
    let (_, body) = write_request(1);
    let url = format!("https://localhost:{}/api/v1/write", proxy.addr.port());
    let req = prometheus_post(&url).body(Full::new(body)).unwrap();
    client
        .request(req)
        .await
        .map(|r| (r.status(), r.version()))
        .map_err(|e| format!("{e:?}"))
}

#[tokio::test]
async fn inbound_tls_with_client_certificates_and_rotation() {
    let sts = StsStandIn::start().await;
    let amp = AmpStandIn::start().await;
    let pki = Pki::new("first");
    let (cert, key) = pki.issue("server");
    let (client_cert, client_key) = pki.issue("client");
    let ca = pki.path("ca.pem");
    let proxy = ProxyUnderTest::start_with(
        &sts,
        &amp,
        &[
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-client-ca-file",
            &ca,
        ],
    )
    .await;
    // Plain HTTP to a TLS port gets no answer.
    let resp = raw_exchange(
        proxy.addr,
        b"GET /-/healthy HTTP/1.1\r\nhost: x\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert!(!resp.contains("200"), "{resp}");
    // mTLS: with a certificate the CA issued, HTTP/2 by ALPN; without one, no handshake.
    let trusted = pki.client(Some((&client_cert, &client_key)));
    let (status, version) = https_write(&trusted, &proxy).await.unwrap();
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(version, http::Version::HTTP_2);
    assert!(
        https_write(&pki.client(None), &proxy).await.is_err(),
        "no client certificate, no service"
    );
    let stranger = Pki::new("stranger");
    let (sc, sk) = stranger.issue("client");
    assert!(
        https_write(&pki.client(Some((&sc, &sk))), &proxy)
            .await
            .is_err(),
        "certificate from another CA"
    );

    // Rotation: a certificate from a new CA is served within seconds, no restart.
    let next = Pki::new("second");
    let (next_cert, next_key) = next.issue("server");
    std::fs::copy(&next_key, &key).unwrap();
    std::fs::copy(&next_cert, &cert).unwrap();
    let fresh = next.client(Some((&client_cert, &client_key)));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while https_write(&fresh, &proxy).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "new certificate never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(amp.received().len(), 2);
}

#[tokio::test]
async fn tls_configuration_errors_are_config_errors() {
    let pki = Pki::new("x");
    let (cert, _key) = pki.issue("server");
    let (_, other_key) = pki.issue("other");
    use clap::Parser;
    let env = amp_rw_proxy::config::Environment {
        aws_region: None,
        hostname: "h".into(),
        proxy: Default::default(),
    };
    for args in [
        vec!["--tls-cert-file", cert.as_str()],
        vec![
            "--tls-cert-file",
            cert.as_str(),
            "--tls-key-file",
            other_key.as_str(),
        ],
        vec![
            "--tls-cert-file",
            "/nonexistent.pem",
            "--tls-key-file",
            other_key.as_str(),
        ],
    ] {
        let mut all = vec![
            "amp-rw-proxy",
            "--upstream-url",
            "http://127.0.0.1:1/x",
            "--region",
            REGION,
        ];
        all.extend(&args);
        let cli = amp_rw_proxy::config::Cli::try_parse_from(all).unwrap();
        let errs = amp_rw_proxy::config::Config::from_cli(&cli, &env).unwrap_err();
        assert!(
            errs.0.iter().any(|e| e.contains("--tls")),
            "{args:?}: {errs}"
        );
    }
}
