//! The read path end to end: series written through the proxy into a real Prometheus 2.42
//! receiver, then queried through the proxy (`--enable-query`), every request's signature
//! judged by botocore in the AMP stand-in. Each answer must equal the receiver's own answer to
//! the very same request (same method, query string and form body) asked directly.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::Value;
use support::client::{Answer, prometheus_post, send};
use support::harness::{Moto, Peers, Prometheus, Proxy, Role, StandIn};
use support::wire::{len_field, varint};

use crate::EXTERNAL_ID;

/// Labels (sorted by name) and samples as (milliseconds, value).
type Series<'a> = (Vec<(&'a str, &'a str)>, Vec<(i64, f64)>);

/// A remote-write 1.0 request holding `series`, snappy-compressed.
fn write_request(series: &[Series<'_>]) -> Bytes {
    let mut req = Vec::new();
    for (labels, samples) in series {
        let mut ts = Vec::new();
        for (k, v) in labels {
            let mut label = Vec::new();
            len_field(1, k.as_bytes(), &mut label);
            len_field(2, v.as_bytes(), &mut label);
            len_field(1, &label, &mut ts);
        }
        for (t, v) in samples {
            let mut sample = Vec::new();
            sample.push(0x09);
            sample.extend_from_slice(&v.to_le_bytes());
            sample.push(0x10);
            varint(*t as u64, &mut sample);
            len_field(2, &sample, &mut ts);
        }
        len_field(1, &ts, &mut req);
    }
    Bytes::from(snap::raw::Encoder::new().compress_vec(&req).unwrap())
}

async fn ask(url: &str, post_form: Option<&str>, gzip: bool) -> Answer {
    let req = match post_form {
        None => Request::get(url),
        Some(_) => Request::post(url).header("content-type", "application/x-www-form-urlencoded"),
    };
    let req = if gzip {
        req.header("accept-encoding", "gzip")
    } else {
        req
    };
    let body = Bytes::from(post_form.unwrap_or_default().to_string());
    send(req.body(Full::new(body)).unwrap()).await
}

fn json(a: &Answer) -> Value {
    serde_json::from_slice(&a.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", a.text()))
}

/// moto → proxy with `--enable-query` → botocore stand-in (verifying with a wrong secret when
/// `tampered`) → a Prometheus receiver; the proxy ready.
async fn query_chain(peers: &Peers, tampered: bool) -> (Moto, Prometheus, StandIn, Proxy) {
    let moto = Moto::start(peers, EXTERNAL_ID);
    let receiver = Prometheus::start(&peers.prometheus, Role::Receiver { rw2: false });
    receiver.wait_ready().await;
    let standin = StandIn::start(peers, &moto, &receiver, 0, tampered);
    let proxy = Proxy::start_with(
        &moto,
        &standin,
        EXTERNAL_ID,
        "127.0.0.1:0",
        &["--enable-query"],
    );
    proxy.wait_ready().await;
    (moto, receiver, standin, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_style_queries_through_the_proxy_equal_the_receivers_own_answers() {
    let peers = Peers::find();
    let (_moto, receiver, standin, proxy) = query_chain(&peers, false).await;

    // Data, written through the proxy itself: label values with the characters that need care.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let times: Vec<i64> = (0..=8).map(|k| (now - 120 + 15 * k) * 1000).collect();
    let series = |labels: Vec<(&'static str, &'static str)>, base: f64| {
        let samples = times
            .iter()
            .enumerate()
            .map(|(i, t)| (*t, base + i as f64))
            .collect::<Vec<_>>();
        (labels, samples)
    };
    let body = write_request(&[
        series(
            vec![
                ("__name__", "query_e2e_metric"),
                ("job", "e2e"),
                ("path", "/a b+c"),
                ("text", "été \"quoted\" =~ {x} & more"),
            ],
            0.0,
        ),
        series(
            vec![
                ("__name__", "query_e2e_metric"),
                ("job", "other"),
                ("path", "/"),
                ("text", "plain"),
            ],
            10.0,
        ),
        series(vec![("__name__", "up_e2e"), ("job", "e2e")], 1.0),
    ]);
    let w = send(
        prometheus_post(&proxy.url("/api/v1/write"))
            .body(Full::new(body))
            .unwrap(),
    )
    .await;
    assert!(w.status.is_success(), "write: {} {}", w.status, w.text());

    let (start, end, at) = (now - 180, now + 60, now);
    // (path, query string) as Grafana, promtool and hand-written clients send them: `+` for
    // spaces or %20, `{}` and `[]` raw or escaped, repeated match[], empty values.
    let cases: Vec<(&str, String)> = vec![
        (
            "/api/v1/query",
            format!("query=sum+by+(job)+(query_e2e_metric)&time={at}"),
        ),
        (
            "/api/v1/query",
            format!(
                "query=query_e2e_metric%7Btext%3D~%22%C3%A9t%C3%A9.*%22%7D%20%2B%201&time={at}"
            ),
        ),
        (
            "/api/v1/query",
            format!(
                "query=query_e2e_metric{{path=%22/a%20b%2Bc%22,text!=%22%22}}&time={at}&timeout="
            ),
        ),
        (
            "/api/v1/query",
            format!("query=count_over_time(query_e2e_metric[5m])&time={at}"),
        ),
        (
            "/api/v1/query_range",
            format!("query=query_e2e_metric+%2B+1&start={start}&end={end}&step=15"),
        ),
        (
            "/api/v1/query_range",
            format!("start={start}&step=30s&end={end}&query=rate(query_e2e_metric%5B1m%5D)"),
        ),
        (
            "/api/v1/series",
            format!(
                "match[]=query_e2e_metric{{job=%22e2e%22}}&match[]=up_e2e&start={start}&end={end}"
            ),
        ),
        (
            "/api/v1/series",
            "match%5B%5D=%7B__name__%3D~%22query_e2e.%2B%22%2Ctext%3D~%22.*quoted.*%22%7D&start=&end="
                .to_string(),
        ),
        ("/api/v1/labels", String::new()),
        ("/api/v1/labels", format!("match[]=up_e2e&start={start}&end={end}")),
        ("/api/v1/label/__name__/values", String::new()),
        ("/api/v1/label/text/values", "match[]=query_e2e_metric".to_string()),
        ("/api/v1/label/path/values", format!("start={start}&end={end}")),
        ("/api/v1/metadata", "limit=10&metric=".to_string()),
        (
            "/api/v1/query_exemplars",
            format!("query=query_e2e_metric&start={start}&end={end}"),
        ),
        ("/api/v1/status/buildinfo", String::new()),
    ];
    let mut compared = 0;
    for (path, raw) in &cases {
        let with_query = |base: String| {
            if raw.is_empty() {
                base
            } else {
                format!("{base}?{raw}")
            }
        };
        // GET with the query string; POST with it as the form body.
        let direct_get = ask(&with_query(receiver.url(path)), None, false).await;
        assert_eq!(
            direct_get.status,
            StatusCode::OK,
            "{path}?{raw} asked directly: {}",
            direct_get.text()
        );
        assert_eq!(json(&direct_get)["status"], "success", "{path}?{raw}");
        let via_get = ask(&with_query(proxy.url(path)), None, false).await;
        assert_eq!(
            via_get.status,
            direct_get.status,
            "GET {path}?{raw}: {}",
            via_get.text()
        );
        assert_eq!(json(&via_get), json(&direct_get), "GET {path}?{raw}");

        let direct_post = ask(&receiver.url(path), Some(raw), false).await;
        let via_post = ask(&proxy.url(path), Some(raw), false).await;
        assert_eq!(
            via_post.status,
            direct_post.status,
            "POST {path} {raw}: {}",
            via_post.text()
        );
        assert_eq!(via_post.body, direct_post.body, "POST {path} {raw}");
        compared += 2;
    }

    // The data is there and came back intact through the proxy.
    let q = format!(
        "query=query_e2e_metric%7Btext%3D%22%C3%A9t%C3%A9%20%5C%22quoted%5C%22%20%3D~%20%7Bx%7D%20%26%20more%22%7D&time={at}"
    );
    let a = json(&ask(&proxy.url(&format!("/api/v1/query?{q}")), None, false).await);
    let result = a["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 1, "{a}");
    assert_eq!(result[0]["metric"]["path"], "/a b+c");
    assert_eq!(result[0]["value"][1], "8");

    // A form body with raw UTF-8, as a browser might post it.
    let form = format!("query=count(query_e2e_metric{{text=~\"été.*\"}})&time={at}");
    let direct = ask(&receiver.url("/api/v1/query"), Some(&form), false).await;
    let via = ask(&proxy.url("/api/v1/query"), Some(&form), false).await;
    assert_eq!(via.status, StatusCode::OK, "{}", via.text());
    assert_eq!(via.body, direct.body);
    assert_eq!(json(&via)["data"]["result"][0]["value"][1], "1");

    // Grafana asks for gzip: the compressed bytes pass through untouched.
    let range =
        format!("/api/v1/query_range?query=query_e2e_metric&start={start}&end={end}&step=1");
    let direct = ask(&receiver.url(&range), None, true).await;
    let via = ask(&proxy.url(&range), None, true).await;
    assert_eq!(direct.headers["content-encoding"], "gzip");
    assert_eq!(via.headers["content-encoding"], "gzip");
    assert_eq!(via.status, StatusCode::OK);
    assert_eq!(
        via.body, direct.body,
        "gzip bytes relayed as the receiver sent them"
    );
    assert_eq!(&via.body[..2], b"\x1f\x8b");

    // Every request reached the receiver through botocore's signature check; none refused.
    let stats = standin.stats().await;
    assert_eq!(stats["rejected"], 0, "{stats}");
    assert_eq!(stats["queries"], compared + 3, "{stats}");

    // promtool, a real Prometheus API client (it POSTs forms and falls back to GET), pointed at
    // the proxy as if it were Prometheus.
    let promtool = peers.prometheus.with_file_name("promtool");
    let server = proxy.url("");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&promtool)
            .arg("query")
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", promtool.display()));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "promtool query {args:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let at_s = at.to_string();
    let instant = run(&[
        "instant",
        "--time",
        &at_s,
        &server,
        r#"query_e2e_metric{job="e2e"}"#,
    ]);
    assert!(instant.contains(r#"path="/a b+c""#), "{instant}");
    assert!(instant.contains("=> 8 @"), "{instant}");
    let range = run(&[
        "range",
        "--start",
        &start.to_string(),
        "--end",
        &end.to_string(),
        "--step",
        "15s",
        &server,
        "sum(query_e2e_metric) + 1",
    ]);
    assert!(range.contains("=>"), "{range}");
    let series = run(&[
        "series",
        "--match",
        r#"query_e2e_metric{text=~".*quoted.*"}"#,
        "--match",
        "up_e2e",
        &server,
    ]);
    assert_eq!(
        series.lines().filter(|l| l.contains("__name__")).count(),
        2,
        "{series}"
    );
    let labels = run(&["labels", &server, "text"]);
    assert!(labels.contains("plain"), "{labels}");
    assert_eq!(standin.stats().await["rejected"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_query_signature_is_refused_by_botocore() {
    let peers = Peers::find();
    // The stand-in verifies with a different secret: every signature must fail.
    let (_moto, _receiver, standin, proxy) = query_chain(&peers, true).await;
    let a = ask(&proxy.url("/api/v1/query?query=up"), None, false).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text());
    assert!(a.text().contains("SignatureDoesNotMatch"), "{}", a.text());
    let stats = standin.stats().await;
    assert_eq!(stats["rejected"], 1, "{stats}");
}
