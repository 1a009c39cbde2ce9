//! Retries, throttling, load shedding, slow clients, drain and STS outages — in process,
//! against the local STS and AMP stand-ins.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use support::amp::{AmpStandIn, Reply};
use support::client::{get, raw_exchange, write};
use support::proxy::ProxyUnderTest;
use support::sts::StsStandIn;
use support::wire::write_request;

const READY: Duration = Duration::from_secs(10);

fn reply(status: u16) -> Reply {
    Reply {
        status,
        ..Reply::default()
    }
}

async fn metrics(proxy: &ProxyUnderTest) -> String {
    get(&proxy.url("/metrics")).await.text()
}

#[tokio::test]
async fn retryable_failures_are_retried_freshly_signed_until_they_succeed() {
    let sts = StsStandIn::start().await;
    let amp = AmpStandIn::start().await;
    amp.set_script(vec![
        reply(500),
        reply(502),
        Reply {
            status: 429,
            headers: vec![("retry-after", "0")],
            ..Reply::default()
        },
        Reply {
            status: 400,
            body: r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#,
            ..Reply::default()
        },
        reply(408),
        Reply {
            status: 403,
            body: "The security token included in the request is expired",
            ..Reply::default()
        },
    ]);
    let proxy = ProxyUnderTest::start_with(&sts, &amp, &[]).await;
    proxy.wait_ready(READY).await;
    let (_, body) = write_request(5);
    let a = write(&proxy.url("/api/v1/write"), body.clone()).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text());
    let got = amp.received();
    assert_eq!(got.len(), 7, "six failures, then success");
    assert!(
        got.iter().all(|r| r.verdict.is_ok() && r.body == body),
        "every attempt signed, same body"
    );
    // Backoffs add up to well over a second: attempts carry different x-amz-date values, so
    // each was signed afresh (a reused signature would repeat the first date).
    let dates: std::collections::BTreeSet<_> = got
        .iter()
        .map(|r| r.headers["x-amz-date"].clone())
        .collect();
    assert!(dates.len() > 1, "{dates:?}");
    let m = metrics(&proxy).await;
    for line in [
        r#"amp_rw_proxy_upstream_retries_total{route="default",reason="server_error"} 2"#,
        r#"amp_rw_proxy_upstream_retries_total{route="default",reason="throttled"} 2"#,
        r#"amp_rw_proxy_upstream_retries_total{route="default",reason="timeout"} 1"#,
        r#"amp_rw_proxy_upstream_retries_total{route="default",reason="expired_credentials"} 1"#,
    ] {
        assert!(m.contains(line), "missing {line} in\n{m}");
    }
}

#[tokio::test]
async fn other_4xx_and_501_are_final_at_once() {
    let sts = StsStandIn::start().await;
    let amp = AmpStandIn::start().await;
    let proxy = ProxyUnderTest::start_with(&sts, &amp, &[]).await;
    proxy.wait_ready(READY).await;
    let (_, body) = write_request(1);
    for status in [400u16, 401, 403, 404, 413, 501] {
        let before = amp.count();
        amp.set_reply(Reply {
            status,
            body: "no",
            ..Reply::default()
        });
        let a = write(&proxy.url("/api/v1/write"), body.clone()).await;
        assert_eq!(a.status.as_u16(), status);
        assert_eq!(amp.count(), before + 1, "{status} was not retried");
    }
}

#[tokio::test]
async fn an_outage_is_retried_until_the_deadline_then_answered_retryably() {
    let sts = StsStandIn::start().await;
    let amp = AmpStandIn::start().await;
    amp.set_reply(reply(503));
    let proxy = ProxyUnderTest::start_with(&sts, &amp, &["--retry-deadline", "1500ms"]).await;
    proxy.wait_ready(READY).await;
    let (_, body) = write_request(1);
    let started = Instant::now();
    let a = write(&proxy.url("/api/v1/write"), body.clone()).await;
    let took = started.elapsed();
    assert_eq!(
        a.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "the last retryable status"
    );
    assert!(
        took < Duration::from_secs(5),
        "bounded by the deadline: {took:?}"
    );
    assert!(amp.count() >= 3, "{} attempts in 1.5 s", amp.count());
    let m = metrics(&proxy).await;
    assert!(m.contains(
        r#"amp_rw_proxy_upstream_retry_deadline_exceeded_total{route="default",reason="server_error"} 1"#
    ));

    // Nothing listening: connect errors are retried too, then 502.
    let url = ProxyUnderTest::closed_upstream_url().await;
    let proxy = ProxyUnderTest::start_to(&sts, &url, &["--retry-deadline", "1s"]).await;
    proxy.wait_ready(READY).await;
    let a = write(&proxy.url("/api/v1/write"), body).await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY);
    assert!(
        metrics(&proxy)
            .await
            .contains(r#"amp_rw_proxy_upstream_retries_total{route="default",reason="connect"}"#)
    );
}

#[tokio::test]
async fn throttling_that_outlives_the_retries_reaches_the_sender_as_503_with_retry_after() {
    let sts = StsStandIn::start().await;
    let amp = AmpStandIn::start().await;
    amp.set_reply(Reply {
        status: 429,
        headers: vec![("retry-after", "1")],
        body: "ThrottlingException: Rate exceeded",
        ..Reply::default()
    });
    let proxy = ProxyUnderTest::start_with(&sts, &amp, &["--retry-deadline", "2500ms"]).await;
    proxy.wait_ready(READY).await;
    let (_, body) = write_request(1);
    let a = write(&proxy.url("/api/v1/write"), body.clone()).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.text());
    assert_eq!(a.headers["retry-after"], "1");
    assert!(
        a.text().contains("throttling") && a.text().contains("429"),
        "{}",
        a.text()
    );
    let attempts = amp.count();
    assert!(
        (2..=3).contains(&attempts),
        "Retry-After: 1 paces the attempts: {attempts}"
    );

    // A Retry-After beyond the deadline ends retrying at once, and is passed on.
    amp.set_reply(Reply {
        status: 429,
        headers: vec![("retry-after", "60")],
        ..Reply::default()
    });
    let before = amp.count();
    let a = write(&proxy.url("/api/v1/write"), body.clone()).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.headers["retry-after"], "60");
    assert_eq!(amp.count(), before + 1);

    // --throttle-status 429 relays the upstream's 429 as it is.
    let proxy = ProxyUnderTest::start_with(
        &sts,
        &amp,
        &["--retry-deadline", "500ms", "--throttle-status", "429"],
    )
    .await;
    proxy.wait_ready(READY).await;
    let a = write(&proxy.url("/api/v1/write"), body).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(a.headers["retry-after"], "60");
}

#[tokio::test]
async fn over_the_in_flight_limits_requests_get_503_at_once() {
    let sts = StsStandIn::start().await;
    let amp = AmpStandIn::start().await;
    amp.set_reply(Reply {
        delay: Duration::from_secs(3),
        ..Reply::default()
    });
    let proxy = ProxyUnderTest::start_with(&sts, &amp, &["--max-in-flight-requests", "2"]).await;
    proxy.wait_ready(READY).await;
    let (_, body) = write_request(1);
    let url = proxy.url("/api/v1/write");
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let (url, body) = (url.clone(), body.clone());
            tokio::spawn(async move { write(&url, body).await.status })
        })
        .collect();
    while amp.count() < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    let a = write(&url, body.clone()).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.headers["retry-after"], "1");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "answered at once"
    );
    assert!(a.text().contains("overloaded"));
    for t in slow {
        assert_eq!(
            t.await.unwrap(),
            StatusCode::NO_CONTENT,
            "admitted requests complete"
        );
    }
    assert_eq!(
        write(&url, body).await.status,
        StatusCode::NO_CONTENT,
        "capacity is back"
    );
    assert!(
        metrics(&proxy)
            .await
            .contains(r#"amp_rw_proxy_overload_rejections_total{limit="requests"} 1"#)
    );

    // The byte budget: two 600-byte bodies do not fit in 1 KiB; chunked bodies are counted too.
    let proxy = ProxyUnderTest::start_with(
        &sts,
        &amp,
        &["--max-in-flight-bytes", "1KiB", "--max-body-size", "1KiB"],
    )
    .await;
    proxy.wait_ready(READY).await;
    let big = Bytes::from(vec![7u8; 600]);
    let url = proxy.url("/api/v1/write");
    let first = {
        let (url, big) = (url.clone(), big.clone());
        tokio::spawn(async move { write(&url, big).await.status })
    };
    let before = amp.count();
    while amp.count() == before {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        write(&url, big.clone()).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let mut chunked =
        b"POST /api/v1/write HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n258\r\n"
            .to_vec();
    chunked.extend_from_slice(&[b'a'; 600]);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let resp = raw_exchange(proxy.addr, &chunked, Duration::from_secs(5)).await;
    assert!(resp.starts_with("HTTP/1.1 503"), "{resp}");
    assert_eq!(first.await.unwrap(), StatusCode::NO_CONTENT);
    assert!(
        metrics(&proxy)
            .await
            .contains(r#"amp_rw_proxy_overload_rejections_total{limit="bytes"} 2"#)
    );
}

#[tokio::test]
async fn a_client_that_stalls_mid_body_gets_503_and_the_proxy_moves_on() {
    let sts = StsStandIn::start().await;
    let amp = AmpStandIn::start().await;
    let proxy = ProxyUnderTest::start_with(&sts, &amp, &["--client-body-timeout", "300ms"]).await;
    proxy.wait_ready(READY).await;
    let started = Instant::now();
    let stalled =
        b"POST /api/v1/write HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\nonly a little";
    let resp = raw_exchange(proxy.addr, stalled, Duration::from_secs(5)).await;
    assert!(resp.starts_with("HTTP/1.1 503"), "{resp}");
    assert!(resp.contains("--client-body-timeout"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "not the 30 s default"
    );
    assert_eq!(amp.count(), 0, "nothing half-received is forwarded");
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let sts = StsStandIn::start().await;
    let amp = AmpStandIn::start().await;
    let proxy = ProxyUnderTest::start_with(&sts, &amp, &["--client-header-timeout", "300ms"]).await;
    let started = Instant::now();
    let resp = raw_exchange(
        proxy.addr,
        b"POST /api/v1/write HTTP/1.1\r\nhost: x\r\n",
        Duration::from_secs(5),
    )
    .await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "closed after the header timeout, not {took:?}"
    );
    assert!(!resp.contains("204"), "{resp}");
    // Nothing at all, or one byte that could start either HTTP/1 or the HTTP/2 preface, or an
    // HTTP/2 preface that never completes: closed within the timeout too.
    for opening in [&b""[..], b"P", b"PRI * HTTP/2.0\r\n"] {
        let started = Instant::now();
        let resp = raw_exchange(proxy.addr, opening, Duration::from_secs(10)).await;
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(5),
            "{opening:?} held the connection {took:?}"
        );
        assert!(!resp.contains("200"), "{resp}");
    }
    assert_eq!(get(&proxy.url("/-/healthy")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn drain_turns_unready_at_once_keeps_accepting_briefly_then_refuses() {
    let sts = StsStandIn::start().await;
    let amp = AmpStandIn::start().await;
    let mut proxy = ProxyUnderTest::start_with(
        &sts,
        &amp,
        &["--drain-delay", "3s", "--shutdown-grace", "10s"],
    )
    .await;
    proxy.wait_ready(READY).await;
    let (_, body) = write_request(1);
    let signalled = Instant::now();
    proxy.shutdown();
    // Unready at once (poll only until the flag flips: it is set by the serving task).
    let ready = loop {
        let r = get(&proxy.url("/-/ready")).await;
        if r.status != StatusCode::OK || signalled.elapsed() > Duration::from_millis(500) {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(ready.text().contains("shutting down"));
    // Still accepting during the drain delay; HTTP/1 connections are closed after the answer.
    let a = write(&proxy.url("/api/v1/write"), body).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert_eq!(a.headers["connection"], "close");
    assert!(
        signalled.elapsed() < Duration::from_secs(3),
        "answered within the drain delay"
    );
    let drain = (&mut proxy.served).await.unwrap();
    assert_eq!(drain, amp_rw_proxy::http::server::Drain::Complete);
    assert!(
        signalled.elapsed() >= Duration::from_secs(3),
        "listener open for the drain delay"
    );
    assert!(tokio::net::TcpStream::connect(proxy.addr).await.is_err());
}

#[tokio::test]
async fn sts_outage_while_credentials_are_valid_fails_no_request() {
    let sts = StsStandIn::start().await;
    // 40 s credentials: refresh after (40 - 15) / 2 = 12.5 s, usable until 25 s.
    sts.set_lifetime(Duration::from_secs(40));
    let amp = AmpStandIn::start().await;
    let proxy = ProxyUnderTest::start_with(&sts, &amp, &[]).await;
    proxy.wait_ready(READY).await;
    let started = Instant::now();
    let (_, body) = write_request(2);
    let url = proxy.url("/api/v1/write");
    // STS goes down before the refresh is due and stays down across several attempts.
    sts.set_outage(true);
    let mut requests = 0;
    while sts.calls() < 4 {
        assert!(
            started.elapsed() < Duration::from_secs(24),
            "refresh attempts never came"
        );
        let a = write(&url, body.clone()).await;
        assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text());
        requests += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        started.elapsed() > Duration::from_secs(12),
        "no STS call before the refresh was due"
    );
    sts.set_outage(false);
    let refreshes_before = sts.calls();
    while sts.calls() == refreshes_before
        || get(&proxy.url("/-/ready")).await.status != StatusCode::OK
    {
        assert!(
            started.elapsed() < Duration::from_secs(25),
            "not renewed before expiry"
        );
        let a = write(&url, body.clone()).await;
        assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text());
        requests += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(requests > 50);
    let m = metrics(&proxy).await;
    assert!(
        m.contains(r#"amp_rw_proxy_credential_refreshes_total{route="default",result="failure"}"#),
        "{m}"
    );
}

#[tokio::test]
async fn retryable_4xx_that_outlive_the_deadline_become_statuses_senders_retry() {
    let sts = StsStandIn::start().await;
    let amp = AmpStandIn::start().await;
    // An upstream 408 would be dropped by Prometheus as a 4xx: 503 instead.
    amp.set_reply(reply(408));
    let proxy = ProxyUnderTest::start_with(&sts, &amp, &["--retry-deadline", "1s"]).await;
    proxy.wait_ready(READY).await;
    let (_, body) = write_request(1);
    let a = write(&proxy.url("/api/v1/write"), body.clone()).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.text());
    assert!(a.headers.contains_key("retry-after"));
    // Throttling reported in a 400 body, with --throttle-status 429: 429 for retry_on_http_429.
    amp.set_reply(Reply {
        status: 400,
        body: r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#,
        ..Reply::default()
    });
    let proxy = ProxyUnderTest::start_with(
        &sts,
        &amp,
        &["--retry-deadline", "1s", "--throttle-status", "429"],
    )
    .await;
    proxy.wait_ready(READY).await;
    let a = write(&proxy.url("/api/v1/write"), body.clone()).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.text());
    // A 400 that merely quotes the word stays a final 400, answered at once.
    amp.set_reply(Reply {
        status: 400,
        body: r#"out of order sample for series {error="ThrottlingException"}"#,
        ..Reply::default()
    });
    let before = amp.count();
    let a = write(&proxy.url("/api/v1/write"), body).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(amp.count(), before + 1);
}

#[tokio::test]
async fn an_absurd_retry_after_does_not_break_the_proxy() {
    let sts = StsStandIn::start().await;
    let amp = AmpStandIn::start().await;
    amp.set_reply(Reply {
        status: 429,
        headers: vec![("retry-after", "18446744073709551615")],
        ..Reply::default()
    });
    let proxy = ProxyUnderTest::start_with(&sts, &amp, &[]).await;
    proxy.wait_ready(READY).await;
    let (_, body) = write_request(1);
    let a = write(&proxy.url("/api/v1/write"), body).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.headers["retry-after"], "3600", "capped");
}
