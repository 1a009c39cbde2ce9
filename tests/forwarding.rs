//! In-process integration tests of the forwarding core against local STS and AMP stand-ins.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Version};
use http_body_util::Full;
use support::accounts::{ASSUMED_TOKEN, REGION, ROLE_ARN, WORKSPACE_PATH};
use support::amp::{AmpStandIn, Reply, verify_signature};
use support::client::{get, prometheus_post, raw_exchange, send, write};
use support::proxy::ProxyUnderTest;
use support::sts::StsStandIn;
use support::wire::write_request;

const READY: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_batch_lands_signed_with_the_assumed_role_and_byte_for_byte() {
    let sts = StsStandIn::start().await;
    let amp = AmpStandIn::start().await;
    let proxy = ProxyUnderTest::start_with(&sts, &amp, &[]).await;
    proxy.wait_ready(READY).await;

    let (raw, body) = write_request(50);
    let req = prometheus_post(&proxy.url("/api/v1/write"))
        // None of these may reach the workspace.
        .header("authorization", "Bearer inbound-secret")
        .header("cookie", "session=abc")
        .header("x-amz-date", "19700101T000000Z")
        .header("x-amz-security-token", "forged")
        .header("x-forwarded-for", "10.0.0.1")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .header("te", "trailers")
        .body(Full::new(body.clone()))
        .unwrap();
    let answer = send(req).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "{}", answer.text());

    let got = amp.received();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.verdict, Ok(()), "signature verification");
    assert_eq!(r.path, WORKSPACE_PATH);
    assert_eq!(r.body, body, "body forwarded byte for byte");
    let decoded = snap::raw::Decoder::new().decompress_vec(&r.body).unwrap();
    assert_eq!(decoded, raw, "upstream decodes the sender's WriteRequest");
    let h = |n: &str| r.headers.get(n).map(|v| v.to_str().unwrap().to_string());
    assert_eq!(h("content-type").as_deref(), Some("application/x-protobuf"));
    assert_eq!(h("content-encoding").as_deref(), Some("snappy"));
    assert_eq!(
        h("x-prometheus-remote-write-version").as_deref(),
        Some("0.1.0")
    );
    assert_eq!(
        h("user-agent").unwrap(),
        format!(
            "Prometheus/2.42.0+ds amp-rw-proxy/{}",
            env!("CARGO_PKG_VERSION")
        )
    );
    assert_eq!(h("content-length").unwrap(), body.len().to_string());
    assert_eq!(h("host").unwrap(), amp.addr.to_string());
    assert_eq!(h("x-amz-security-token").as_deref(), Some(ASSUMED_TOKEN));
    assert!(
        h("authorization")
            .unwrap()
            .starts_with("AWS4-HMAC-SHA256 Credential=ASIAASSUMEDA")
    );
    for never in ["cookie", "x-forwarded-for", "proxy-authorization", "te"] {
        assert!(h(never).is_none(), "{never} was forwarded");
    }
    assert_eq!(sts.calls(), 1);
    assert_eq!(
        sts.session_names.lock().unwrap().as_slice(),
        ["amp-rw-proxy-test-host"]
    );
}

#[tokio::test]
async fn all_three_paths_accept_remote_write() {
    let sts = StsStandIn::start().await;
    let amp = AmpStandIn::start().await;
    let proxy = ProxyUnderTest::start_with(&sts, &amp, &[]).await;
    proxy.wait_ready(READY).await;
    let (_, body) = write_request(1);
    for path in ["/api/v1/write", "/api/v1/remote_write", WORKSPACE_PATH] {
        let a = write(&proxy.url(path), body.clone()).await;
        assert_eq!(a.status, StatusCode::NO_CONTENT, "{path}: {}", a.text());
    }
    assert!(
        amp.received()
            .iter()
            .all(|r| r.path == WORKSPACE_PATH && r.verdict.is_ok())
    );
}

#[tokio::test]
async fn two_hundred_concurrent_requests_cause_one_assume_role() {
    let sts = StsStandIn::start().await;
    let amp = AmpStandIn::start().await;
    let proxy = ProxyUnderTest::start_with(&sts, &amp, &[]).await;
    proxy.wait_ready(READY).await;
    let (_, body) = write_request(20);
    let url = proxy.url("/api/v1/write");
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let (url, body) = (url.clone(), body.clone());
            tokio::spawn(async move { write(&url, body).await.status })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::NO_CONTENT);
    }
    assert_eq!(amp.count(), 200);
    assert!(amp.received().iter().all(|r| r.verdict.is_ok()));
    assert_eq!(
        sts.calls(),
        1,
        "load must not change the number of STS calls"
    );
}

#[tokio::test]
async fn sts_refusal_is_503_never_4xx_and_heals_without_restart() {
    let sts = StsStandIn::start().await;
    sts.set_deny(true);
    let amp = AmpStandIn::start().await;
    let proxy = ProxyUnderTest::start_with(&sts, &amp, &[]).await;
    // Wait until STS has refused at least once (the refresher's first attempt).
    while sts.calls() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let healthy = get(&proxy.url("/-/healthy")).await;
    assert_eq!(healthy.status, StatusCode::OK, "process is up");
    let (_, body) = write_request(3);
    // The refusal reason surfaces in readiness and in the sender's error, as a 503.
    let deadline = tokio::time::Instant::now() + READY;
    let ready = loop {
        let r = get(&proxy.url("/-/ready")).await;
        if r.text().contains("AccessDenied") || tokio::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(ready.text().contains("AccessDenied"), "{}", ready.text());
    let a = write(&proxy.url("/api/v1/write"), body.clone()).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.headers["retry-after"], "5");
    assert!(a.text().contains("AccessDenied"), "{}", a.text());
    assert!(a.text().ends_with('\n') && a.text().lines().count() == 1);
    assert_eq!(amp.count(), 0, "nothing unsigned went upstream");

    // The trust policy is fixed: the backoff retry picks it up, no restart.
    sts.set_deny(false);
    proxy.wait_ready(Duration::from_secs(20)).await;
    let a = write(&proxy.url("/api/v1/write"), body).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn wrong_external_id_is_refused_by_sts_and_answered_503() {
    let sts = StsStandIn::start().await;
    let amp = AmpStandIn::start().await;
    let (url, sts_url) = (amp.url(), sts.url());
    let proxy = ProxyUnderTest::start(&[
        "--upstream-url",
        &url,
        "--region",
        REGION,
        "--role-arn",
        ROLE_ARN,
        "--external-id",
        "wrong-id",
        "--sts-endpoint",
        &sts_url,
    ])
    .await;
    // Readiness carries STS's reason once the first attempt has been refused.
    let deadline = tokio::time::Instant::now() + READY;
    loop {
        let r = get(&proxy.url("/-/ready")).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
        if r.text().contains("ExternalId does not match") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{}", r.text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, body) = write_request(1);
    let a = write(&proxy.url("/api/v1/write"), body).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.text());
    assert!(a.text().contains("AccessDenied"), "{}", a.text());
    assert_eq!(amp.count(), 0);
}

#[tokio::test]
async fn load_never_changes_the_number_of_sts_calls() {
    let sts = StsStandIn::start().await;
    // Short-lived credentials: the refresh comes after 7.5 s, (30 s - 15 s margin) / 2.
    sts.set_lifetime(Duration::from_secs(30));
    let amp = AmpStandIn::start().await;
    let proxy = ProxyUnderTest::start_with(&sts, &amp, &[]).await;
    let (_, body) = write_request(20);
    let url = proxy.url("/api/v1/write");
    let burst = |n: usize| {
        let (url, body) = (url.clone(), body.clone());
        async move {
            let tasks: Vec<_> = (0..n)
                .map(|_| {
                    let (url, body) = (url.clone(), body.clone());
                    tokio::spawn(async move { write(&url, body).await.status })
                })
                .collect();
            let mut codes = Vec::new();
            for t in tasks {
                codes.push(t.await.unwrap().as_u16());
            }
            codes
        }
    };
    // Cold start: 200 at once while credentials are being fetched. Each is answered (204 once
    // credentials are there, 503 before), and STS sees one call.
    let cold = burst(200).await;
    assert!(cold.iter().all(|c| *c == 204 || *c == 503), "{cold:?}");
    proxy.wait_ready(READY).await;
    assert_eq!(sts.calls(), 1);
    // Across the refresh boundary under steady concurrent load: never unready, never a failed
    // request, and exactly one more STS call.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut requests = 0;
    while sts.calls() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no refresh within 20 s"
        );
        let codes = burst(20).await;
        assert!(codes.iter().all(|c| *c == 204), "{codes:?}");
        requests += codes.len();
        assert_eq!(get(&proxy.url("/-/ready")).await.status, StatusCode::OK);
    }
    for _ in 0..5 {
        assert!(burst(20).await.iter().all(|c| *c == 204));
    }
    assert!(requests > 100, "{requests} requests around the refresh");
    assert_eq!(
        sts.calls(),
        2,
        "one STS call per credential lifetime, whatever the load"
    );
    assert!(amp.received().iter().all(|r| r.verdict.is_ok()));
}

#[tokio::test]
async fn upstream_answers_are_relayed_unchanged() {
    let sts = StsStandIn::start().await;
    let amp = AmpStandIn::start().await;
    // Retryable answers are retried first (see the retry tests); with a short deadline and
    // throttling relayed as 429, what the sender finally sees is the upstream's own answer.
    let proxy = ProxyUnderTest::start_with(
        &sts,
        &amp,
        &["--retry-deadline", "300ms", "--throttle-status", "429"],
    )
    .await;
    proxy.wait_ready(READY).await;
    let (_, body) = write_request(2);
    let table: Vec<Reply> = vec![
        Reply {
            status: 200,
            headers: vec![
                ("x-prometheus-remote-write-samples-written", "2"),
                ("x-prometheus-remote-write-histograms-written", "0"),
                ("x-prometheus-remote-write-exemplars-written", "0"),
            ],
            ..Reply::default()
        },
        Reply {
            status: 204,
            ..Reply::default()
        },
        Reply {
            status: 400,
            headers: vec![("content-type", "text/plain")],
            body: "out of order sample\n",
            ..Reply::default()
        },
        Reply {
            status: 413,
            body: "batch too large",
            ..Reply::default()
        },
        Reply {
            status: 429,
            headers: vec![("retry-after", "7"), ("content-type", "application/json")],
            body: r#"{"message":"ThrottlingException: Rate exceeded"}"#,
            ..Reply::default()
        },
        Reply {
            status: 500,
            body: "internal error",
            ..Reply::default()
        },
        Reply {
            status: 503,
            headers: vec![("retry-after", "30")],
            body: "unavailable",
            ..Reply::default()
        },
    ];
    for reply in table {
        amp.set_reply(Reply {
            headers: [
                reply.headers.clone(),
                vec![("x-amzn-requestid", "abc"), ("set-cookie", "a=b")],
            ]
            .concat(),
            ..reply.clone()
        });
        let a = write(&proxy.url("/api/v1/write"), body.clone()).await;
        assert_eq!(a.status.as_u16(), reply.status);
        assert_eq!(a.text(), reply.body, "status {}", reply.status);
        for (k, v) in &reply.headers {
            assert_eq!(
                a.headers.get(*k).map(|v| v.to_str().unwrap()),
                Some(*v),
                "{k} on {}",
                reply.status
            );
        }
        assert!(
            a.headers.get("set-cookie").is_none() && a.headers.get("x-amzn-requestid").is_none()
        );
    }
}

#[tokio::test]
async fn our_own_failures_are_5xx() {
    let sts = StsStandIn::start().await;
    let (_, body) = write_request(1);

    // Nothing listens upstream: 502.
    let url = ProxyUnderTest::closed_upstream_url().await;
    let proxy = ProxyUnderTest::start_to(&sts, &url, &["--retry-deadline", "500ms"]).await;
    proxy.wait_ready(READY).await;
    let a = write(&proxy.url("/api/v1/write"), body.clone()).await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY, "{}", a.text());
    assert!(a.text().contains("cannot reach upstream"), "{}", a.text());

    // Upstream hangs past --upstream-timeout: 504.
    let amp = AmpStandIn::start().await;
    amp.set_reply(Reply {
        delay: Duration::from_secs(5),
        ..Reply::default()
    });
    let proxy = ProxyUnderTest::start_with(
        &sts,
        &amp,
        &["--upstream-timeout", "300ms", "--retry-deadline", "500ms"],
    )
    .await;
    proxy.wait_ready(READY).await;
    let a = write(&proxy.url("/api/v1/write"), body).await;
    assert_eq!(a.status, StatusCode::GATEWAY_TIMEOUT, "{}", a.text());
    assert!(a.text().contains("--upstream-timeout"));
}

/// Over TLS the proxy speaks HTTP/1.1 to the workspace even when it offers h2 (the cheaper of
/// the two per request); `--upstream-http2` lets ALPN choose h2, with the host sent only as
/// `:authority` (a `Host` header beside it is refused by strict servers such as nginx).
#[tokio::test]
async fn tls_upstream_speaks_http1_unless_http2_is_asked_for() {
    let sts = StsStandIn::start().await;
    let amp = AmpStandIn::start_tls().await;
    let dir = std::env::temp_dir().join(format!("amp-rw-proxy-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, amp.tls_ca_pem.as_ref().unwrap()).unwrap();
    let (_, body) = write_request(5);
    let authority = format!("localhost:{}", amp.addr.port());

    let proxy =
        ProxyUnderTest::start_with(&sts, &amp, &["--upstream-ca-file", ca.to_str().unwrap()]).await;
    proxy.wait_ready(READY).await;
    let a = write(&proxy.url("/api/v1/write"), body.clone()).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text());
    let got = amp.received();
    assert_eq!(got[0].version, Version::HTTP_11, "h1 by default");
    assert!(got[0].verdict.is_ok(), "{:?}", got[0].verdict);
    // `host` as signed and sent: the URL's authority.
    assert_eq!(got[0].headers["host"], authority.as_str());

    let proxy_h2 = ProxyUnderTest::start_with(
        &sts,
        &amp,
        &[
            "--upstream-ca-file",
            ca.to_str().unwrap(),
            "--upstream-http2",
        ],
    )
    .await;
    proxy_h2.wait_ready(READY).await;
    for _ in 0..2 {
        let a = write(&proxy_h2.url("/api/v1/write"), body.clone()).await;
        assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text());
    }
    let got = amp.received();
    assert_eq!(got.len(), 3);
    for r in &got[1..] {
        assert_eq!(r.version, Version::HTTP_2, "ALPN chose h2");
        // The stand-in refuses a `Host` header beside `:authority`, so a verified request
        // carried the host only as `:authority`, the value that was signed.
        assert!(r.verdict.is_ok(), "{:?}", r.verdict);
        assert!(!r.headers.contains_key("host"));
        assert_eq!(r.authority.as_deref(), Some(authority.as_str()));
    }

    // An HTTP/1.1-only TLS upstream: ALPN falls back, --upstream-http2 or not.
    let h1 = AmpStandIn::start_tls_http1_only().await;
    std::fs::write(&ca, h1.tls_ca_pem.as_ref().unwrap()).unwrap();
    let proxy_h1 = ProxyUnderTest::start_with(
        &sts,
        &h1,
        &[
            "--upstream-ca-file",
            ca.to_str().unwrap(),
            "--upstream-http2",
        ],
    )
    .await;
    proxy_h1.wait_ready(READY).await;
    let a = write(&proxy_h1.url("/api/v1/write"), body.clone()).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text());
    assert_eq!(h1.received()[0].version, Version::HTTP_11);
    assert!(h1.received()[0].verdict.is_ok());

    // Without the CA the certificate is not trusted: 502, and nothing was sent.
    let untrusted = ProxyUnderTest::start_with(&sts, &amp, &["--retry-deadline", "300ms"]).await;
    untrusted.wait_ready(READY).await;
    let a = write(&untrusted.url("/api/v1/write"), body).await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY);
    assert!(
        a.text().to_lowercase().contains("certificate"),
        "{}",
        a.text()
    );
    assert_eq!(amp.count(), 3);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_the_proxy_stays_up() {
    let sts = StsStandIn::start().await;
    let amp = AmpStandIn::start().await;
    let proxy = ProxyUnderTest::start_with(&sts, &amp, &["--max-body-size", "1KiB"]).await;
    proxy.wait_ready(READY).await;
    let url = proxy.url("/api/v1/write");
    let small = Bytes::from_static(b"\x00\x01");

    let a = get(&proxy.url("/nope")).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(a.text().contains("/api/v1/write"));
    let a = get(&url).await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(a.headers["allow"], "POST");
    let a = send(
        Request::delete(proxy.url("/metrics"))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);

    for (name, value) in [
        ("content-encoding", "gzip"),
        ("content-type", "application/json"),
    ] {
        let req = Request::post(&url)
            .header(name, value)
            .body(Full::new(small.clone()))
            .unwrap();
        let a = send(req).await;
        assert_eq!(
            a.status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{name}: {value}"
        );
        assert!(a.text().contains(value), "{}", a.text());
    }
    // A missing Content-Type is remote-write 1.0.
    let a = send(Request::post(&url).body(Full::new(small.clone())).unwrap()).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let last = amp.received().pop().unwrap();
    assert_eq!(last.headers["content-type"], "application/x-protobuf");
    assert_eq!(last.headers["content-encoding"], "snappy");

    // Declared too large: refused before the body is sent (none is sent here at all).
    let head = format!(
        "POST /api/v1/write HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-protobuf\r\ncontent-length: {}\r\n\r\n",
        1u64 << 40
    );
    let resp = raw_exchange(proxy.addr, head.as_bytes(), Duration::from_secs(5)).await;
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    assert!(resp.contains("--max-body-size"));
    // Chunked, no length: stopped as soon as it passes the limit.
    let mut chunked =
        b"POST /api/v1/write HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        chunked.extend_from_slice(b"200\r\n");
        chunked.extend_from_slice(&[b'a'; 512]);
        chunked.extend_from_slice(b"\r\n");
    }
    let resp = raw_exchange(proxy.addr, &chunked, Duration::from_secs(5)).await;
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    // Garbage on the wire: hyper answers 400 and the proxy carries on.
    let resp = raw_exchange(proxy.addr, b"NONSENSE\r\n\r\n", Duration::from_secs(5)).await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");

    let before = amp.count();
    let (_, body) = write_request(1);
    assert_eq!(write(&url, body).await.status, StatusCode::NO_CONTENT);
    assert_eq!(amp.count(), before + 1, "still serving");
}

#[tokio::test]
async fn the_upstream_never_depends_on_the_inbound_host() {
    let sts = StsStandIn::start().await;
    let amp = AmpStandIn::start().await;
    let proxy = ProxyUnderTest::start_with(&sts, &amp, &[]).await;
    proxy.wait_ready(READY).await;
    let (_, body) = write_request(1);
    // Origin form with a foreign Host, and absolute form naming another server.
    for target in ["/api/v1/write", "http://169.254.169.254/api/v1/write"] {
        let mut req = format!(
            "POST {target} HTTP/1.1\r\nhost: evil.example:8443\r\ncontent-type: application/x-protobuf\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(&body);
        let resp = raw_exchange(proxy.addr, &req, Duration::from_secs(5)).await;
        assert!(resp.starts_with("HTTP/1.1 204"), "{target}: {resp}");
        let last = amp.received().pop().unwrap();
        assert_eq!(last.headers["host"], amp.addr.to_string().as_str());
        assert_eq!(last.path, WORKSPACE_PATH);
        assert!(last.verdict.is_ok());
    }
}

#[tokio::test]
async fn metrics_and_health_endpoints() {
    let sts = StsStandIn::start().await;
    let amp = AmpStandIn::start().await;
    let proxy = ProxyUnderTest::start_with(&sts, &amp, &[]).await;
    assert_eq!(get(&proxy.url("/-/healthy")).await.status, StatusCode::OK);
    proxy.wait_ready(READY).await;
    let (_, body) = write_request(4);
    assert_eq!(
        write(&proxy.url("/api/v1/write"), body.clone())
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    amp.set_reply(Reply {
        status: 400,
        ..Reply::default()
    });
    assert_eq!(
        write(&proxy.url("/api/v1/remote_write"), body.clone())
            .await
            .status
            .as_u16(),
        400
    );
    let _ = get(&proxy.url("/scanner/probe")).await;

    let m = get(&proxy.url("/metrics")).await;
    assert_eq!(m.status, StatusCode::OK);
    assert!(
        m.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = m.text();
    let n = body.len();
    for line in [
        r#"amp_rw_proxy_requests_total{route="default",path="/api/v1/write",code="204"} 1"#
            .to_string(),
        r#"amp_rw_proxy_requests_total{route="default",path="/api/v1/remote_write",code="400"} 1"#
            .to_string(),
        r#"amp_rw_proxy_requests_total{route="",path="unmatched",code="404"} 1"#.to_string(),
        format!(
            "amp_rw_proxy_request_bytes_total{{route=\"default\"}} {}",
            2 * n
        ),
        format!(
            "amp_rw_proxy_forwarded_bytes_total{{route=\"default\"}} {}",
            2 * n
        ),
        r#"amp_rw_proxy_upstream_request_duration_seconds_count{route="default"} 2"#.to_string(),
        r#"amp_rw_proxy_credential_refreshes_total{route="default",result="success"} 1"#
            .to_string(),
        format!(
            r#"amp_rw_proxy_build_info{{version="{}"}} 1"#,
            env!("CARGO_PKG_VERSION")
        ),
        // Only the /metrics request itself is in flight.
        "amp_rw_proxy_in_flight_requests 1".to_string(),
    ] {
        assert!(text.contains(&line), "missing {line} in\n{text}");
    }
    let expiry: f64 = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("amp_rw_proxy_credentials_expiry_timestamp_seconds{route=\"default\"} ")
        })
        .expect("expiry gauge")
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        expiry > now + 3000.0 && expiry < now + 3700.0,
        "expiry {expiry} vs now {now}"
    );
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests() {
    let sts = StsStandIn::start().await;
    let amp = AmpStandIn::start().await;
    amp.set_reply(Reply {
        delay: Duration::from_millis(500),
        ..Reply::default()
    });
    let mut proxy = ProxyUnderTest::start_with(&sts, &amp, &["--drain-delay", "100ms"]).await;
    proxy.wait_ready(READY).await;
    let (_, body) = write_request(1);
    let url = proxy.url("/api/v1/write");
    let arrived = amp.arrived.notified();
    let in_flight = tokio::spawn(async move { write(&url, body).await.status });
    arrived.await;
    proxy.shutdown();
    assert_eq!(
        in_flight.await.unwrap(),
        StatusCode::NO_CONTENT,
        "in-flight request completed"
    );
    let drain = (&mut proxy.served).await.unwrap();
    assert_eq!(drain, amp_rw_proxy::http::server::Drain::Complete);
    assert!(
        tokio::net::TcpStream::connect(proxy.addr).await.is_err(),
        "listener closed"
    );
}

#[tokio::test]
async fn the_stand_in_verifier_catches_tampering() {
    // Guards the guard: a verifier that accepts everything would make the tests above vacuous.
    let sts = StsStandIn::start().await;
    let amp = AmpStandIn::start().await;
    let proxy = ProxyUnderTest::start_with(&sts, &amp, &[]).await;
    proxy.wait_ready(READY).await;
    let (_, body) = write_request(3);
    assert_eq!(
        write(&proxy.url("/api/v1/write"), body).await.status,
        StatusCode::NO_CONTENT
    );
    let r = amp.received().pop().unwrap();
    let parts = |headers: http::HeaderMap| {
        let mut req = Request::post(format!("http://x{WORKSPACE_PATH}"))
            .body(())
            .unwrap();
        *req.headers_mut() = headers;
        req.into_parts().0
    };
    assert_eq!(verify_signature(&parts(r.headers.clone()), &r.body), Ok(()));
    assert!(verify_signature(&parts(r.headers.clone()), b"other body").is_err());
    let mut h = r.headers.clone();
    h.insert("content-type", "application/json".parse().unwrap());
    assert!(
        verify_signature(&parts(h), &r.body)
            .unwrap_err()
            .contains("signature mismatch")
    );
    let mut h = r.headers.clone();
    h.insert("x-amz-security-token", "other".parse().unwrap());
    assert!(verify_signature(&parts(h), &r.body).is_err());
}
