//! The proxy with payload awareness on, in process against the local STS and AMP stand-ins:
//! what --validate refuses never reaches the workspace, external labels arrive in a body the
//! signature covers, 2.0 passes through byte for byte, and the accounting adds up.

use std::time::Duration;

use amp_rw_proxy::remote_write::proto::{v1, v2};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use prost::Message;
use support::amp::{AmpStandIn, Reply};
use support::client::{get, send, write};
use support::proxy::ProxyUnderTest;
use support::sts::StsStandIn;
use support::wire::write_request;

const READY: Duration = Duration::from_secs(10);
const V2_CONTENT_TYPE: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";

fn fixture(name: &str) -> Bytes {
    let path = format!("{}/tests/fixtures/{name}.bin", env!("CARGO_MANIFEST_DIR"));
    Bytes::from(std::fs::read(path).unwrap())
}

fn v2_post(url: &str, body: Bytes) -> Request<Full<Bytes>> {
    Request::post(url)
        .header("content-type", V2_CONTENT_TYPE)
        .header("content-encoding", "snappy")
        .header("user-agent", "Prometheus/3.5.0")
        .header("x-prometheus-remote-write-version", "2.0.0")
        .body(Full::new(body))
        .unwrap()
}

fn decompress(b: &[u8]) -> Vec<u8> {
    snap::raw::Decoder::new().decompress_vec(b).unwrap()
}

async fn metrics(proxy: &ProxyUnderTest) -> String {
    get(&proxy.url("/metrics")).await.text()
}

/// The value of one sample line of the /metrics text, 0 if absent.
fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn with_validate_a_corrupt_body_gets_400_and_is_never_forwarded() {
    let sts = StsStandIn::start().await;
    let amp = AmpStandIn::start().await;
    let proxy = ProxyUnderTest::start_with(&sts, &amp, &["--validate"]).await;
    proxy.wait_ready(READY).await;

    // Snappy framing intact, protobuf cut short: the last series runs past the end.
    let (raw, _) = write_request(20);
    let cut = snap::raw::Encoder::new()
        .compress_vec(&raw[..raw.len() - 3])
        .unwrap();
    let cases = [
        (
            Bytes::from_static(b"\x0a\xff\xff\xff definitely not snappy"),
            "invalid remote-write 1.0 request: body is not valid snappy",
        ),
        (
            Bytes::from(cut),
            "invalid remote-write 1.0 request: WriteRequest: length-delimited field runs past",
        ),
    ];
    for (body, reason) in cases {
        let a = write(&proxy.url("/api/v1/write"), body).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text());
        assert!(a.text().starts_with(reason), "{}", a.text());
        assert_eq!(a.text().lines().count(), 1, "one line: {}", a.text());
    }
    // Unsorted labels (2.0): a precise reason, nothing forwarded.
    let unsorted = v2::Request {
        symbols: vec![
            "".into(),
            "job".into(),
            "a".into(),
            "__name__".into(),
            "up".into(),
        ],
        timeseries: vec![v2::TimeSeries {
            labels_refs: vec![1, 2, 3, 4],
            samples: vec![v2::Sample {
                value: 1.0,
                timestamp: 1,
                start_timestamp: 0,
            }],
            ..Default::default()
        }],
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&unsorted.encode_to_vec())
        .unwrap();
    let a = send(v2_post(&proxy.url("/api/v1/write"), body.into())).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        a.text(),
        "invalid remote-write 2.0 request: timeseries[0]: labels not sorted: \"__name__\" after \"job\"\n"
    );
    assert_eq!(amp.count(), 0, "nothing invalid reached the workspace");

    // A valid batch still goes through, and the accounting tells both apart.
    let (_, good) = write_request(30);
    let a = write(&proxy.url("/api/v1/write"), good.clone()).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert_eq!(
        amp.received()[0].body,
        good,
        "valid bodies are forwarded untouched"
    );
    let m = metrics(&proxy).await;
    let series = |v: &str, o: &str| {
        metric(
            &m,
            &format!(
                "amp_rw_proxy_remote_write_series_total{{route=\"default\",version=\"{v}\",outcome=\"{o}\"}}"
            ),
        )
    };
    assert_eq!(series("1.0", "forwarded"), 30);
    assert_eq!(
        series("2.0", "rejected"),
        1,
        "the unsorted request held one series"
    );
    assert_eq!(
        metric(
            &m,
            "amp_rw_proxy_remote_write_requests_total{route=\"default\",version=\"1.0\",outcome=\"rejected\"}"
        ),
        2
    );
    assert_eq!(
        metric(
            &m,
            "amp_rw_proxy_remote_write_samples_total{route=\"default\",version=\"1.0\",outcome=\"forwarded\"}"
        ),
        30
    );
}

#[tokio::test]
async fn with_accounting_on_anything_is_forwarded_and_counted_when_decodable() {
    let sts = StsStandIn::start().await;
    let amp = AmpStandIn::start().await;
    let proxy = ProxyUnderTest::start_with(&sts, &amp, &["--accounting", "on"]).await;
    proxy.wait_ready(READY).await;
    let junk = Bytes::from_static(b"\x0a\xff\xff\xff not snappy");
    let a = write(&proxy.url("/api/v1/write"), junk.clone()).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "the workspace decides");
    let (_, good) = write_request(7);
    write(&proxy.url("/api/v1/write"), good).await;
    assert_eq!(amp.received()[0].body, junk);
    let m = metrics(&proxy).await;
    assert_eq!(
        metric(
            &m,
            "amp_rw_proxy_remote_write_uncounted_requests_total{route=\"default\",version=\"1.0\"}"
        ),
        1
    );
    assert_eq!(
        metric(
            &m,
            "amp_rw_proxy_remote_write_series_total{route=\"default\",version=\"1.0\",outcome=\"forwarded\"}"
        ),
        7
    );
}

#[tokio::test]
async fn by_default_bodies_pass_undecoded_unless_validation_needs_them() {
    let sts = StsStandIn::start().await;
    let amp = AmpStandIn::start().await;
    // The default is --accounting off.
    let proxy = ProxyUnderTest::start_with(&sts, &amp, &[]).await;
    proxy.wait_ready(READY).await;
    let (_, good) = write_request(7);
    let junk = Bytes::from_static(b"\x0a\xff\xff\xff not snappy");
    for body in [good.clone(), junk.clone()] {
        let a = write(&proxy.url("/api/v1/write"), body).await;
        assert_eq!(a.status, StatusCode::NO_CONTENT);
    }
    let got = amp.received();
    assert_eq!(
        (&got[0].body, &got[1].body),
        (&good, &junk),
        "byte for byte"
    );
    let m = metrics(&proxy).await;
    assert!(
        !m.contains("amp_rw_proxy_remote_write_series_total{")
            && !m.contains("amp_rw_proxy_remote_write_uncounted_requests_total{"),
        "nothing counted, nothing reported as uncountable:\n{m}"
    );

    // --validate still decodes (and so counts) what it checks.
    let proxy = ProxyUnderTest::start_with(&sts, &amp, &["--validate"]).await;
    proxy.wait_ready(READY).await;
    let a = write(&proxy.url("/api/v1/write"), junk).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let a = write(&proxy.url("/api/v1/write"), good).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let m = metrics(&proxy).await;
    assert_eq!(
        metric(
            &m,
            "amp_rw_proxy_remote_write_series_total{route=\"default\",version=\"1.0\",outcome=\"forwarded\"}"
        ),
        7
    );
}

#[tokio::test]
async fn unknown_proto_parameter_is_415_and_not_forwarded() {
    let sts = StsStandIn::start().await;
    let amp = AmpStandIn::start().await;
    let proxy = ProxyUnderTest::start_with(&sts, &amp, &[]).await;
    proxy.wait_ready(READY).await;
    let (_, body) = write_request(1);
    let req = Request::post(proxy.url("/api/v1/write"))
        .header(
            "content-type",
            "application/x-protobuf;proto=io.prometheus.write.v3.Request",
        )
        .header("content-encoding", "snappy")
        .body(Full::new(body))
        .unwrap();
    let a = send(req).await;
    assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(
        a.text().contains("io.prometheus.write.v3.Request"),
        "{}",
        a.text()
    );
    assert_eq!(amp.count(), 0);
}

#[tokio::test]
async fn external_labels_arrive_upstream_in_a_body_the_signature_covers() {
    let sts = StsStandIn::start().await;
    let amp = AmpStandIn::start().await;
    // The first attempt fails, so the rewritten body is also what a retry signs and sends.
    amp.set_script(vec![Reply {
        status: 500,
        ..Reply::default()
    }]);
    let proxy = ProxyUnderTest::start_with(
        &sts,
        &amp,
        &[
            "--external-label",
            "cluster=prod-eu",
            "--external-label",
            "instance=pinned",
        ],
    )
    .await;
    proxy.wait_ready(READY).await;

    let (raw, body) = write_request(25);
    let a = write(&proxy.url("/api/v1/write"), body.clone()).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text());
    let got = amp.received();
    assert_eq!(got.len(), 2, "one failed attempt, one retry");
    assert_eq!(got[0].body, got[1].body);
    let sent = v1::WriteRequest::decode(&raw[..]).unwrap();
    for r in &got {
        assert_eq!(
            r.verdict,
            Ok(()),
            "signature and body hash cover the new body"
        );
        assert_ne!(r.body, body);
        assert_eq!(r.headers["content-length"], r.body.len().to_string());
        let w = v1::WriteRequest::decode(&decompress(&r.body)[..]).unwrap();
        assert_eq!(w.timeseries.len(), 25);
        for (ts, orig) in w.timeseries.iter().zip(&sent.timeseries) {
            let labels: Vec<(&str, &str)> = ts
                .labels
                .iter()
                .map(|l| (l.name.as_str(), l.value.as_str()))
                .collect();
            assert_eq!(
                labels,
                [
                    ("__name__", "test_metric"),
                    ("cluster", "prod-eu"),
                    ("instance", "pinned"),
                ]
            );
            assert_eq!(ts.samples, orig.samples);
        }
    }

    // 2.0: through the symbols table; the workspace's *-Written headers come back as they are.
    amp.set_reply(Reply {
        status: 204,
        headers: vec![
            ("x-prometheus-remote-write-samples-written", "57"),
            ("x-prometheus-remote-write-histograms-written", "0"),
            ("x-prometheus-remote-write-exemplars-written", "0"),
        ],
        ..Reply::default()
    });
    let a = send(v2_post(
        &proxy.url("/api/v1/write"),
        fixture("v2-prometheus-3-0"),
    ))
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text());
    assert_eq!(a.headers["x-prometheus-remote-write-samples-written"], "57");
    let last = amp.received().pop().unwrap();
    assert_eq!(last.verdict, Ok(()));
    assert_eq!(last.headers["content-type"], V2_CONTENT_TYPE);
    let w = v2::Request::decode(&decompress(&last.body)[..]).unwrap();
    assert_eq!(w.timeseries.len(), 57);
    for ts in &w.timeseries {
        let labels: Vec<(&str, &str)> = ts
            .labels_refs
            .chunks(2)
            .map(|p| {
                (
                    w.symbols[p[0] as usize].as_str(),
                    w.symbols[p[1] as usize].as_str(),
                )
            })
            .collect();
        assert!(labels.contains(&("cluster", "prod-eu")), "{labels:?}");
        assert!(labels.contains(&("instance", "pinned")), "{labels:?}");
        assert!(
            labels.windows(2).all(|p| p[0].0 < p[1].0),
            "sorted: {labels:?}"
        );
    }
}

#[tokio::test]
async fn v2_passes_through_byte_for_byte_without_a_rewrite() {
    let sts = StsStandIn::start().await;
    let amp = AmpStandIn::start().await;
    amp.set_reply(Reply {
        status: 204,
        headers: vec![("x-prometheus-remote-write-samples-written", "57")],
        ..Reply::default()
    });
    // Validation on: the body is decoded and checked, but what is sent is what was received.
    let proxy = ProxyUnderTest::start_with(&sts, &amp, &["--validate"]).await;
    proxy.wait_ready(READY).await;
    let body = fixture("v2-prometheus-3-1");
    let a = send(v2_post(&proxy.url("/api/v1/write"), body.clone())).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text());
    assert_eq!(a.headers["x-prometheus-remote-write-samples-written"], "57");
    let r = &amp.received()[0];
    assert_eq!(r.body, body, "byte-identical");
    assert_eq!(r.verdict, Ok(()));
    assert_eq!(r.headers["content-type"], V2_CONTENT_TYPE);
    assert_eq!(r.headers["x-prometheus-remote-write-version"], "2.0.0");
    let m = metrics(&proxy).await;
    assert_eq!(
        metric(
            &m,
            "amp_rw_proxy_remote_write_series_total{route=\"default\",version=\"2.0\",outcome=\"forwarded\"}"
        ),
        57
    );
}
