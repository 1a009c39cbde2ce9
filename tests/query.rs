//! The read path (`--enable-query`) in-process: routing and the path allowlist, methods, inbound
//! auth, signatures of GETs and form POSTs (checked by the AMP stand-in with aws-sigv4), header
//! hygiene both ways, gzip passed through, our own failures, and a 50 MB answer streamed
//! through with bounded buffering. Plus the real binary's memory while streaming.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use support::accounts::{
    ASSUMED_TOKEN, BASE_ACCESS_KEY, BASE_SECRET, EXTERNAL_ID, REGION, ROLE_ARN,
};
use support::amp::{AmpStandIn, BoxError, Reply};
use support::binary::{Running, spawn};
use support::client::{client, get, send};
use support::proxy::ProxyUnderTest;
use support::sts::StsStandIn;
use tokio::sync::Semaphore;

const BASE: &str = "/workspaces/ws-0123abcd";
const JSON: &str = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;

fn json_reply() -> Reply {
    Reply {
        status: 200,
        headers: vec![("content-type", "application/json")],
        body: JSON,
        delay: Duration::ZERO,
    }
}

async fn setup(extra: &[&str]) -> (StsStandIn, AmpStandIn, ProxyUnderTest) {
    let sts = StsStandIn::start().await;
    let amp = AmpStandIn::start().await;
    amp.set_reply(json_reply());
    let mut flags = vec!["--enable-query"];
    flags.extend_from_slice(extra);
    let proxy = ProxyUnderTest::start_with(&sts, &amp, &flags).await;
    proxy.wait_ready(Duration::from_secs(10)).await;
    (sts, amp, proxy)
}

fn get_req(url: &str) -> http::request::Builder {
    Request::get(url)
}

fn form_post(url: &str) -> http::request::Builder {
    Request::post(url).header("content-type", "application/x-www-form-urlencoded")
}

fn empty() -> Full<Bytes> {
    Full::new(Bytes::new())
}

#[tokio::test]
async fn query_paths_are_404_unless_enabled() {
    let sts = StsStandIn::start().await;
    let amp = AmpStandIn::start().await;
    let proxy = ProxyUnderTest::start_with(&sts, &amp, &[]).await;
    proxy.wait_ready(Duration::from_secs(10)).await;
    for path in [
        "/api/v1/query?query=up",
        "/api/v1/query_range",
        "/api/v1/series",
        "/api/v1/labels",
        "/api/v1/label/job/values",
        "/api/v1/metadata",
        "/api/v1/query_exemplars",
        "/api/v1/status/buildinfo",
    ] {
        let a = get(&proxy.url(path)).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(amp.count(), 0);
}

#[tokio::test]
async fn only_the_allowlisted_paths_are_forwarded() {
    let (_sts, amp, proxy) = setup(&[]).await;
    for path in [
        "/api/v1/admin/tsdb/delete_series?match[]=up",
        "/api/v1/admin/tsdb/snapshot",
        "/api/v1/rules",
        "/api/v1/alerts",
        "/api/v1/targets",
        "/api/v1/status/config",
        "/api/v1/status/flags",
        "/api/v1/read",
        "/api/v1/query/",
        "/api/v1/query/../admin/tsdb/snapshot",
        "/api/v1/label/../../admin/tsdb/snapshot/values",
        "/api/v1/label/..%2F..%2Fadmin/values",
        "/api/v1/label/%2e%2e/values",
        "/api/v1/label/a%2Fb/values",
        "/api/v1/label/a/b/values",
        "/api/v1/label//values",
        "/api/v1/label/job/values/",
        "/api/v1/label/1job/values",
        "//api/v1/query",
        "/api/v1//query",
        "/API/V1/QUERY",
        "/workspaces/ws-other/api/v1/query",
        "/workspaces/ws-0123abcd/api/v1/admin/tsdb/snapshot",
        "/workspaces/ws-0123abcd/api/v1/query/../../../ws-other/api/v1/query",
        "/federate",
    ] {
        let a = get(&proxy.url(path)).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}: {}", a.text());
    }
    assert_eq!(amp.count(), 0, "nothing reached the upstream");

    // The allowlisted ones all arrive under the workspace, signed.
    let paths = [
        "/api/v1/query",
        "/api/v1/query_range",
        "/api/v1/series",
        "/api/v1/labels",
        "/api/v1/label/job/values",
        "/api/v1/label/__name__/values",
        "/api/v1/label/U__http_2e_method/values",
        "/api/v1/metadata",
        "/api/v1/query_exemplars",
        "/api/v1/status/buildinfo",
    ];
    for path in paths {
        let a = get(&proxy.url(path)).await;
        assert_eq!(a.status, StatusCode::OK, "{path}: {}", a.text());
        assert_eq!(a.text(), JSON);
    }
    let got = amp.received();
    assert_eq!(got.len(), paths.len());
    for (r, path) in got.iter().zip(paths) {
        assert_eq!(r.path, format!("{BASE}{path}"));
        assert_eq!(r.method, http::Method::GET);
        assert_eq!(r.verdict, Ok(()), "{path}");
    }

    // One metric label for every label name.
    let metrics = get(&proxy.url("/metrics")).await.text();
    let line = metrics
        .lines()
        .find(|l| l.contains(r#"path="/api/v1/label/:name/values""#) && l.contains("code=\"200\""))
        .unwrap_or_else(|| panic!("no label-values series in\n{metrics}"));
    assert!(line.ends_with(" 3"), "{line}");
    assert!(!metrics.contains("U__http"), "names never become labels");

    // The workspace's own prefix works too: a data source URL written for aws-sigv4-proxy.
    let a = get(&proxy.url(&format!("{BASE}/api/v1/labels"))).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let last = amp.received().pop().unwrap();
    assert_eq!(last.path, format!("{BASE}/api/v1/labels"));
    assert_eq!(last.verdict, Ok(()));
}

#[tokio::test]
async fn wrong_methods_are_405_and_forms_must_be_forms() {
    let (_sts, amp, proxy) = setup(&[]).await;
    for method in ["PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"] {
        let req = Request::builder()
            .method(method)
            .uri(proxy.url("/api/v1/query?query=up"))
            .body(empty())
            .unwrap();
        let a = send(req).await;
        assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(a.headers["allow"], "GET, POST");
    }
    for ct in [
        None,
        Some("application/json"),
        Some("multipart/form-data; boundary=x"),
    ] {
        let mut req = Request::post(proxy.url("/api/v1/query"));
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        let a = send(req.body(Full::new(Bytes::from("query=up"))).unwrap()).await;
        assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct:?}");
    }
    let gz = form_post(&proxy.url("/api/v1/query"))
        .header("content-encoding", "gzip")
        .body(Full::new(Bytes::from("query=up")))
        .unwrap();
    assert_eq!(send(gz).await.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Forms are bounded (1 MiB, or --max-body-size if smaller).
    let big = format!("query={}", "a".repeat(1 << 20));
    let a = send(
        form_post(&proxy.url("/api/v1/query"))
            .body(Full::new(Bytes::from(big)))
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    // A bad query string encoding is the client's fault.
    for bad in ["query=%FF", "query=100%", "query=%zz"] {
        let a = get(&proxy.url(&format!("/api/v1/query?{bad}"))).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    assert_eq!(amp.count(), 0);
}

#[tokio::test]
async fn inbound_auth_applies_to_queries() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "grafana-token-0123\n").unwrap();
    let token = token.to_str().unwrap();
    let (_sts, amp, proxy) = setup(&["--inbound-bearer-token-file", token]).await;
    for (auth, want) in [
        (None, StatusCode::UNAUTHORIZED),
        (Some("Bearer wrong"), StatusCode::UNAUTHORIZED),
        (Some("Bearer grafana-token-0123"), StatusCode::OK),
    ] {
        for post in [false, true] {
            let mut req = if post {
                form_post(&proxy.url("/api/v1/query"))
            } else {
                get_req(&proxy.url("/api/v1/query?query=up"))
            };
            if let Some(auth) = auth {
                req = req.header("authorization", auth);
            }
            let body = if post { "query=up" } else { "" };
            let a = send(req.body(Full::new(Bytes::from(body))).unwrap()).await;
            assert_eq!(a.status, want, "{auth:?} post={post}");
        }
        // Unknown paths answer 401 too, before saying what exists.
        let mut req = get_req(&proxy.url("/api/v1/admin/tsdb/snapshot"));
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        let a = send(req.body(empty()).unwrap()).await;
        let want_unknown = if want == StatusCode::OK {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::UNAUTHORIZED
        };
        assert_eq!(a.status, want_unknown);
    }
    let got = amp.received();
    assert_eq!(got.len(), 2);
    for r in got {
        assert_eq!(r.verdict, Ok(()));
        let auth = r.headers["authorization"].to_str().unwrap();
        assert!(auth.starts_with("AWS4-HMAC-SHA256 "), "{auth}");
        assert!(!format!("{:?}", r.headers).contains("grafana-token"));
    }
}

/// Query strings as clients write them, and what the workspace must receive: the same pairs,
/// canonically encoded, in the client's order, signed.
#[tokio::test]
async fn tricky_query_strings_arrive_canonical_and_signed() {
    let (_sts, amp, proxy) = setup(&[]).await;
    let cases = [
        ("query=up", "query=up"),
        (
            "query=sum+by+(job)+(up)",
            "query=sum%20by%20%28job%29%20%28up%29",
        ),
        ("query=up%20%2B%201", "query=up%20%2B%201"),
        ("query=1+%2B+1", "query=1%20%2B%201"),
        (
            "query=rate(http_requests_total%7Bjob%3D~%22api%7Cweb%22,code!=%22200%22%7D%5B5m%5D)",
            "query=rate%28http_requests_total%7Bjob%3D~%22api%7Cweb%22%2Ccode%21%3D%22200%22%7D%5B5m%5D%29",
        ),
        (
            "match[]=up&match[]=process_start_time_seconds{job=%22x%22}&start=1700000000&end=1700000600",
            "match%5B%5D=up&match%5B%5D=process_start_time_seconds%7Bjob%3D%22x%22%7D&start=1700000000&end=1700000600",
        ),
        (
            "query=x{name=%22%C3%A9t%C3%A9%20%E2%82%AC%22}",
            "query=x%7Bname%3D%22%C3%A9t%C3%A9%20%E2%82%AC%22%7D",
        ),
        ("query=up&time=&timeout", "query=up&time=&timeout="),
        ("z=1&a=2&m=3", "z=1&a=2&m=3"),
        ("query=up&&", "query=up"),
        ("query=100%25&x=%7e", "query=100%25&x=~"),
        ("", ""),
    ];
    for (raw, _) in cases {
        let url = if raw.is_empty() {
            proxy.url("/api/v1/series")
        } else {
            proxy.url(&format!("/api/v1/series?{raw}"))
        };
        let a = get(&url).await;
        assert_eq!(a.status, StatusCode::OK, "{raw}: {}", a.text());
    }
    let got = amp.received();
    assert_eq!(got.len(), cases.len());
    for (r, (raw, want)) in got.iter().zip(cases) {
        assert_eq!(r.verdict, Ok(()), "{raw}");
        let want = (!want.is_empty()).then(|| want.to_string());
        assert_eq!(r.query, want, "{raw}");
        assert_eq!(r.body.len(), 0);
        assert!(r.headers.get("content-length").is_none_or(|v| v == "0"));
    }
}

#[tokio::test]
async fn form_posts_are_signed_over_their_body() {
    let (_sts, amp, proxy) = setup(&[]).await;
    let forms = [
        "query=sum+by+(job)+(rate(up%7Bjob%3D~%22a%7Cb%22%7D%5B5m%5D))&start=1700000000&end=1700003600&step=15",
        "match%5B%5D=up&match%5B%5D=%7B__name__%3D~%22x.%2B%22%7D&start=1&end=2",
        "query=%E2%82%AC&time=",
        "",
    ];
    for form in forms {
        // Grafana sends some parameters in the URL too; both are forwarded and signed.
        let a = send(
            form_post(&proxy.url("/api/v1/query_range?a=1+2"))
                .header("user-agent", "Grafana/10.4.1")
                .body(Full::new(Bytes::from(form)))
                .unwrap(),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{form}: {}", a.text());
    }
    let got = amp.received();
    assert_eq!(got.len(), forms.len());
    for (r, form) in got.iter().zip(forms) {
        assert_eq!(r.verdict, Ok(()), "{form}");
        assert_eq!(r.method, http::Method::POST);
        assert_eq!(r.path, format!("{BASE}/api/v1/query_range"));
        assert_eq!(r.query.as_deref(), Some("a=1%202"));
        assert_eq!(r.body, form.as_bytes(), "forwarded byte for byte");
        assert_eq!(
            r.headers["content-type"],
            "application/x-www-form-urlencoded"
        );
        assert_eq!(r.headers["content-length"], form.len().to_string());
        let ua = r.headers["user-agent"].to_str().unwrap();
        assert!(ua.starts_with("Grafana/10.4.1 amp-rw-proxy/"), "{ua}");
    }
}

#[tokio::test]
async fn headers_are_allowlisted_both_ways_and_gzip_passes_untouched() {
    let (_sts, amp, proxy) = setup(&[]).await;
    // A gzip member holding JSON (bytes as they would come from upstream; the proxy must not
    // look inside).
    const GZIP: &str =
        "\u{1f}\u{8b}\u{8}\0\0\0\0\0\0\u{3}not really deflate, and it must not matter";
    amp.set_reply(Reply {
        status: 200,
        headers: vec![
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
            ("vary", "Accept-Encoding"),
            ("cache-control", "no-store"),
            ("set-cookie", "session=upstream-cookie"),
            ("x-amzn-requestid", "req-1"),
            ("x-amzn-errortype", "Nope"),
            ("server", "amp"),
            ("x-custom", "1"),
            ("access-control-allow-origin", "*"),
            ("strict-transport-security", "max-age=1"),
        ],
        body: GZIP,
        delay: Duration::ZERO,
    });
    let a = send(
        get_req(&proxy.url("/api/v1/query?query=up"))
            .header("accept", "application/json")
            .header("accept-encoding", "gzip")
            .header("user-agent", "Grafana/10.4.1")
            .header("cookie", "grafana_session=abc")
            .header("authorization", "Bearer not-ours")
            .header("x-amz-security-token", "client-token")
            .header("x-amz-date", "20000101T000000Z")
            .header("x-forwarded-for", "10.0.0.1")
            .header("x-grafana-org-id", "1")
            .header("x-scope-orgid", "tenant")
            .header("te", "trailers")
            .header("connection", "keep-alive")
            .header("forwarded", "for=1.2.3.4")
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, GZIP.as_bytes(), "gzip relayed byte for byte");
    assert_eq!(a.headers["content-encoding"], "gzip");
    assert_eq!(a.headers["content-type"], "application/json");
    assert_eq!(a.headers["vary"], "Accept-Encoding");
    assert_eq!(a.headers["cache-control"], "no-store");
    assert_eq!(a.headers["content-length"], GZIP.len().to_string());
    for name in [
        "set-cookie",
        "x-amzn-requestid",
        "x-amzn-errortype",
        "server",
        "x-custom",
        "access-control-allow-origin",
        "strict-transport-security",
    ] {
        assert!(a.headers.get(name).is_none(), "{name} relayed");
    }

    let r = &amp.received()[0];
    assert_eq!(r.verdict, Ok(()));
    let mut names: Vec<&str> = r.headers.keys().map(|k| k.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "accept",
            "accept-encoding",
            "authorization",
            "host",
            "user-agent",
            "x-amz-content-sha256",
            "x-amz-date",
            "x-amz-security-token",
        ]
    );
    assert_eq!(r.headers["accept-encoding"], "gzip");
    assert_eq!(r.headers["accept"], "application/json");
    assert_eq!(r.headers["x-amz-security-token"], ASSUMED_TOKEN);
    assert_ne!(r.headers["x-amz-date"], "20000101T000000Z");
}

#[tokio::test]
async fn upstream_refusals_are_relayed_with_their_bodies() {
    let (_sts, amp, proxy) = setup(&[]).await;
    const BAD: &str = r#"{"status":"error","errorType":"bad_data","error":"1:3: parse error"}"#;
    const DENIED: &str = r#"{"message":"User is not authorized to perform: aps:QueryMetrics"}"#;
    amp.set_script(vec![
        Reply {
            status: 400,
            headers: vec![("content-type", "application/json")],
            body: BAD,
            delay: Duration::ZERO,
        },
        Reply {
            status: 403,
            headers: vec![
                ("content-type", "application/json"),
                ("x-amzn-errortype", "AccessDeniedException"),
            ],
            body: DENIED,
            delay: Duration::ZERO,
        },
        Reply {
            status: 429,
            headers: vec![("retry-after", "3")],
            body: "slow down",
            delay: Duration::ZERO,
        },
    ]);
    let a = get(&proxy.url("/api/v1/query?query=up%7B")).await;
    assert_eq!(
        (a.status, a.text().as_str()),
        (StatusCode::BAD_REQUEST, BAD)
    );
    let a = get(&proxy.url("/api/v1/query?query=up")).await;
    assert_eq!(
        (a.status, a.text().as_str()),
        (StatusCode::FORBIDDEN, DENIED)
    );
    let a = get(&proxy.url("/api/v1/query?query=up")).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(a.headers["retry-after"], "3");
    // Not retried: each query reached the upstream once.
    assert_eq!(amp.count(), 3);
}

#[tokio::test]
async fn our_own_failures_are_5xx() {
    // Nothing listens upstream: 502, not retried.
    let sts = StsStandIn::start().await;
    let closed = ProxyUnderTest::closed_upstream_url().await;
    let proxy = ProxyUnderTest::start_to(&sts, &closed, &["--enable-query"]).await;
    proxy.wait_ready(Duration::from_secs(10)).await;
    let a = get(&proxy.url("/api/v1/query?query=up")).await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY, "{}", a.text());

    // Headers later than --upstream-timeout: 504.
    let (_sts, amp, proxy) = setup(&["--upstream-timeout", "1s"]).await;
    amp.set_reply(Reply {
        delay: Duration::from_secs(3),
        ..json_reply()
    });
    let started = tokio::time::Instant::now();
    let a = get(&proxy.url("/api/v1/query?query=up")).await;
    assert_eq!(a.status, StatusCode::GATEWAY_TIMEOUT, "{}", a.text());
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(amp.count(), 1, "not retried");

    // No credentials (STS refuses): 503 with Retry-After, nothing sent.
    let sts = StsStandIn::start().await;
    sts.set_deny(true);
    let amp = AmpStandIn::start().await;
    let proxy = ProxyUnderTest::start_with(&sts, &amp, &["--enable-query"]).await;
    let a = get(&proxy.url("/api/v1/query?query=up")).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.text());
    assert!(a.headers.contains_key("retry-after"));
    assert_eq!(amp.count(), 0);
}

// ---------------------------------------------------------------------------------------------
// Streaming

const CHUNK: usize = 64 << 10;
const FIFTY_MB: u64 = 50 << 20;

/// A body the upstream produces only as fast as it is read: `total` bytes in 64 KiB chunks.
/// After `gate_after` bytes it waits for the gate (a permit), so a proxy that read the whole
/// answer before relaying it would wait forever. `produced` counts what was handed out.
struct Producer {
    total: u64,
    produced: Arc<AtomicU64>,
    gate_after: u64,
    gate: Option<Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
}

impl Body for Producer {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let done = self.produced.load(Ordering::SeqCst);
        if done >= self.total {
            return Poll::Ready(None);
        }
        if done >= self.gate_after {
            if let Some(gate) = self.gate.as_mut() {
                match gate.as_mut().poll(cx) {
                    Poll::Ready(()) => self.gate = None,
                    Poll::Pending => return Poll::Pending,
                }
            }
        }
        let n = (self.total - done).min(CHUNK as u64);
        self.produced.fetch_add(n, Ordering::SeqCst);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'x'; n as usize])))))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.total - self.produced.load(Ordering::SeqCst))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_megabytes_stream_through_without_being_buffered() {
    let (_sts, amp, proxy) = setup(&[]).await;
    let produced = Arc::new(AtomicU64::new(0));
    // Opened by the client once it has the first bytes.
    let gate = Arc::new(Semaphore::new(0));
    let (p, g) = (produced.clone(), gate.clone());
    amp.set_streamer(move || {
        let g = g.clone();
        Producer {
            total: FIFTY_MB,
            produced: p.clone(),
            gate_after: 8 << 20,
            gate: Some(Box::pin(async move {
                let _ = g.acquire().await.unwrap();
            })),
        }
        .boxed_unsync()
    });
    let resp = tokio::time::timeout(
        Duration::from_secs(20),
        client().request(
            get_req(&proxy.url("/api/v1/query_range?query=up&start=0&end=1&step=1"))
                .body(empty())
                .unwrap(),
        ),
    )
    .await
    .expect("headers arrive")
    .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-length"], FIFTY_MB.to_string());
    let mut body = resp.into_body();
    let mut received: u64 = 0;
    let mut max_ahead: u64 = 0;
    loop {
        // The first bytes must arrive while the upstream is still held at its gate.
        let frame = tokio::time::timeout(Duration::from_secs(20), body.frame())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "stalled after {received} bytes, {} produced: the proxy buffers the answer",
                    produced.load(Ordering::SeqCst)
                )
            });
        let Some(frame) = frame else { break };
        if let Ok(data) = frame.unwrap().into_data() {
            assert!(data.iter().all(|b| *b == b'x'));
            if received == 0 {
                assert!(
                    produced.load(Ordering::SeqCst) < FIFTY_MB,
                    "first bytes only after the whole answer was produced"
                );
                gate.add_permits(1);
            }
            received += data.len() as u64;
            let ahead = produced.load(Ordering::SeqCst) - received;
            max_ahead = max_ahead.max(ahead);
        }
    }
    assert_eq!(received, FIFTY_MB);
    // Kernel socket buffers on two loopback hops (about 20 MiB here) and hyper's queues; the
    // proxy's own memory is measured in the binary test below.
    assert!(max_ahead < 40 << 20, "{max_ahead} bytes in flight at most");
    eprintln!(
        "at most {} KiB between upstream and client",
        max_ahead >> 10
    );
}

/// A body that sends one chunk, then nothing, forever.
struct Staller {
    sent: bool,
}

impl Body for Staller {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.sent {
            return Poll::Pending;
        }
        self.sent = true;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"{\"status\":")))))
    }
}

#[tokio::test]
async fn a_stalled_answer_is_cut_and_its_request_slot_freed() {
    let (_sts, amp, proxy) =
        setup(&["--upstream-timeout", "1s", "--max-in-flight-requests", "1"]).await;
    amp.set_streamer(|| Staller { sent: false }.boxed_unsync());
    let resp = client()
        .request(
            get_req(&proxy.url("/api/v1/query?query=up"))
                .body(empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], b"{\"status\":");

    // While the answer is open it holds the only request slot.
    let a = get(&proxy.url("/api/v1/labels")).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.text());

    // The stall is cut after --upstream-timeout of silence: the client sees an error, not an
    // end of body that would pass for a complete answer.
    let started = tokio::time::Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .expect("cut within the idle timeout");
    assert!(
        matches!(end, Some(Err(_))),
        "the client must see a broken body, got {end:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(500));

    // And the slot is free again.
    amp.streamer.lock().unwrap().take();
    let a = get(&proxy.url("/api/v1/labels")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
}

// ---------------------------------------------------------------------------------------------
// The real binary's memory while streaming

/// `VmHWM` (peak resident set) and `VmRSS` of `pid`, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// The binary with B's base keys in a hermetic environment, as `tests/binary.rs` runs it.
fn spawn_binary(sts: &str, amp: &str, extra: &[&str]) -> Running {
    use std::process::Command;
    let home = tempfile::tempdir().unwrap().keep();
    std::fs::write(home.join("config"), "").unwrap();
    std::fs::write(home.join("credentials"), "").unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_amp-rw-proxy"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("AWS_ACCESS_KEY_ID", BASE_ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", BASE_SECRET)
        .env("AWS_CONFIG_FILE", home.join("config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "debug")
        .args([
            "--listen",
            "127.0.0.1:0",
            "--upstream-url",
            amp,
            "--region",
            REGION,
        ])
        .args(["--role-arn", ROLE_ARN, "--external-id", EXTERNAL_ID])
        .args(["--sts-endpoint", sts, "--enable-query"])
        .args(extra);
    spawn(cmd)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_streams_fifty_megabytes_in_bounded_memory_and_logs_no_query_text() {
    let sts = StsStandIn::start().await;
    let amp = AmpStandIn::start().await;
    amp.set_reply(json_reply());
    let bin = spawn_binary(&sts.url(), &amp.url(), &[]);
    let url = |p: &str| format!("http://{}{p}", bin.addr);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while get(&url("/-/ready")).await.status != StatusCode::OK {
        assert!(tokio::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Warm up (connection pool, signing) with a small answer, then take the baseline.
    const SECRET_QUERY: &str = "secret_metric_name_7f3a";
    let a = get(&url(&format!("/api/v1/query?query={SECRET_QUERY}"))).await;
    assert_eq!(a.status, StatusCode::OK);
    let (baseline_hwm, baseline_rss) = memory_kib(bin.child.id());

    let produced = Arc::new(AtomicU64::new(0));
    let p = produced.clone();
    amp.set_streamer(move || {
        p.store(0, Ordering::SeqCst);
        Producer {
            total: FIFTY_MB,
            produced: p.clone(),
            gate_after: u64::MAX,
            gate: None,
        }
        .boxed_unsync()
    });
    let resp = client()
        .request(
            get_req(&url(&format!(
                "/api/v1/query_range?query={SECRET_QUERY}&step=1"
            )))
            .body(empty())
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut received: u64 = 0;
    while let Some(frame) = body.frame().await {
        received += frame.unwrap().into_data().map_or(0, |d| d.len() as u64);
    }
    assert_eq!(received, FIFTY_MB);
    let (hwm, rss) = memory_kib(bin.child.id());
    eprintln!(
        "proxy memory: before the 50 MB answer VmHWM {baseline_hwm} KiB (VmRSS {baseline_rss} KiB), \
         after VmHWM {hwm} KiB (VmRSS {rss} KiB): peak grew by {} KiB",
        hwm.saturating_sub(baseline_hwm)
    );
    // A proxy holding the answer would grow by 50 MB at least.
    assert!(
        hwm.saturating_sub(baseline_hwm) < 16 << 10,
        "peak RSS grew from {baseline_hwm} to {hwm} KiB"
    );
    // Path and status are logged; the query text is not (even at debug level).
    let logs = bin.logs.lock().unwrap().clone();
    assert!(logs.contains("/api/v1/query_range"), "{logs}");
    assert!(
        !logs.contains(SECRET_QUERY),
        "query text in the logs:\n{logs}"
    );
}

/// With `--upstream-http2` and a workspace that speaks HTTP/2 (ALPN): GETs and forms are
/// signed, and a large answer streams over h2 too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_over_http2_to_a_tls_upstream() {
    let sts = StsStandIn::start().await;
    let amp = AmpStandIn::start_tls().await;
    amp.set_reply(json_reply());
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, amp.tls_ca_pem.as_ref().unwrap()).unwrap();
    let proxy = ProxyUnderTest::start_with(
        &sts,
        &amp,
        &[
            "--enable-query",
            "--upstream-ca-file",
            ca.to_str().unwrap(),
            "--upstream-http2",
        ],
    )
    .await;
    proxy.wait_ready(Duration::from_secs(10)).await;
    let a = get(&proxy.url("/api/v1/series?match[]=up&match[]=%7Bjob%3D%22x%22%7D")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let a = send(
        form_post(&proxy.url("/api/v1/query"))
            .body(Full::new(Bytes::from("query=up+%2B+1")))
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let got = amp.received();
    assert_eq!(got.len(), 2);
    for r in &got {
        assert_eq!(r.version, http::Version::HTTP_2, "ALPN chose h2");
        assert_eq!(r.verdict, Ok(()));
    }
    assert_eq!(
        got[0].query.as_deref(),
        Some("match%5B%5D=up&match%5B%5D=%7Bjob%3D%22x%22%7D")
    );
    assert_eq!(got[1].body, "query=up+%2B+1");

    let produced = Arc::new(AtomicU64::new(0));
    let p = produced.clone();
    amp.set_streamer(move || {
        p.store(0, Ordering::SeqCst);
        Producer {
            total: 8 << 20,
            produced: p.clone(),
            gate_after: u64::MAX,
            gate: None,
        }
        .boxed_unsync()
    });
    let a = get(&proxy.url("/api/v1/query_range?query=up")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body.len(), 8 << 20);
}
