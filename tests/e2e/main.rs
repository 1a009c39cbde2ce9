//! End-to-end suite against software nobody on this project wrote:
//! Prometheus (sender) → amp-rw-proxy → AMP stand-in (botocore SigV4 check) → Prometheus
//! (receiver), with the cross-account credentials issued by moto's STS.
//!
//! Needs the peers from `tests/peers/install.sh`; fails (never skips) without them.

mod errors;
mod limits;
mod query;

use std::time::Duration;

use http_body_util::Full;
use support::client::{get, prometheus_post, send};
use support::harness::{
    Moto, Peers, Prometheus, Proxy, Role, StandIn, eventually, metric_sum, unix_now,
};
use support::pki::Pki;
use support::wire::write_request;

const EXTERNAL_ID: &str = "e2e-external-id";
const ARRIVAL: Duration = Duration::from_secs(90);

/// The whole chain, healthy.
struct Chain {
    moto: Moto,
    receiver: Prometheus,
    standin: StandIn,
    proxy: Proxy,
    sender: Prometheus,
}

async fn chain(
    peers: &Peers,
    prometheus: &std::path::Path,
    proxy_external_id: &str,
    rw2: bool,
) -> Chain {
    chain_with(peers, prometheus, proxy_external_id, rw2, &[]).await
}

/// [`chain`] with extra proxy flags.
async fn chain_with(
    peers: &Peers,
    prometheus: &std::path::Path,
    proxy_external_id: &str,
    rw2: bool,
    proxy_flags: &[&str],
) -> Chain {
    let moto = Moto::start(peers, EXTERNAL_ID);
    let receiver = Prometheus::start(prometheus, Role::Receiver { rw2 });
    receiver.wait_ready().await;
    let standin = StandIn::start(peers, &moto, &receiver, 0, false);
    let proxy = Proxy::start_with(
        &moto,
        &standin,
        proxy_external_id,
        "127.0.0.1:0",
        proxy_flags,
    );
    let url = proxy.url("/api/v1/write");
    let sender = Prometheus::start(
        prometheus,
        Role::Sender {
            url: &url,
            extra_targets: &[proxy.addr],
            rw2,
        },
    );
    sender.wait_ready().await;
    Chain {
        moto,
        receiver,
        standin,
        proxy,
        sender,
    }
}

/// Waits until the receiver holds series of both scrape jobs (the sender's own and the proxy's
/// /metrics, which thus travel through the proxy itself).
async fn wait_for_series(receiver: &Prometheus) {
    eventually("the sender's series in the receiver", ARRIVAL, || async {
        let sender = receiver.query(r#"up{job="sender"}"#, None).await;
        let proxy = receiver.query("amp_rw_proxy_build_info", None).await;
        (!sender.is_empty() && !proxy.is_empty()).then_some(())
    })
    .await;
}

/// Waits until the receiver holds, for the window ending at `at`, exactly as many samples of
/// the sender's `up` series as the sender itself has — nothing lost. Returns the count.
async fn wait_until_nothing_lost(
    sender: &Prometheus,
    receiver: &Prometheus,
    at: f64,
    window_secs: u64,
) -> f64 {
    let q = format!(r#"count_over_time(up{{job="sender"}}[{window_secs}s])"#);
    let want = sender.query(&q, Some(at)).await;
    assert_eq!(want.len(), 1, "sender has its own up series");
    let want = want[0].1;
    assert!(want >= 3.0, "the window holds several scrapes ({want})");
    eventually(
        &format!("{want} samples of up{{job=\"sender\"}} in the receiver"),
        ARRIVAL,
        || async {
            let got = receiver.query(&q, Some(at)).await;
            (got.first().map(|g| g.1) == Some(want)).then_some(want)
        },
    )
    .await
}

async fn assert_sender_lost_nothing(sender: &Prometheus) {
    for counter in [
        "prometheus_remote_storage_samples_failed_total",
        "prometheus_remote_storage_samples_dropped_total",
    ] {
        assert_eq!(sender.own_metric(counter).await, 0.0, "{counter}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_remote_write_1_from_prometheus_2() {
    let peers = Peers::find();
    let c = chain(&peers, &peers.prometheus, EXTERNAL_ID, false).await;
    c.proxy.wait_ready().await;
    wait_for_series(&c.receiver).await;
    let start = unix_now();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let at = unix_now() - 1.0;
    wait_until_nothing_lost(&c.sender, &c.receiver, at, (at - start + 30.0) as u64).await;

    let stats = c.standin.stats().await;
    assert_eq!(
        stats["rejected"], 0,
        "stand-in rejected: {}",
        stats["reasons"]
    );
    assert!(stats["accepted"].as_u64().unwrap() >= 3);
    assert_eq!(
        c.moto.assumed_roles().await.len(),
        1,
        "exactly one AssumeRole for the run"
    );
    assert!(
        c.sender
            .own_metric("prometheus_remote_storage_samples_total")
            .await
            > 0.0
    );
    assert_sender_lost_nothing(&c.sender).await;

    // Header hygiene: a request carrying its own credentials and a foreign Host still goes to
    // the configured upstream only, signed only by the proxy.
    let (_, body) = write_request(3);
    let req = prometheus_post(&c.proxy.url("/api/v1/write"))
        .header("host", "evil.example")
        .header("authorization", "AWS4-HMAC-SHA256 Credential=AKIAEVILEVILEVILEVIL/20200101/us-east-1/aps/aws4_request, SignedHeaders=host, Signature=00")
        .header("x-amz-security-token", "forged-token")
        .header("x-amz-date", "20200101T000000Z")
        .body(Full::new(body))
        .unwrap();
    let answer = send(req).await;
    assert_eq!(answer.status, 204, "{}", answer.text());
    let stats = c.standin.stats().await;
    assert_eq!(stats["rejected"], 0, "{}", stats["reasons"]);
    let last = &stats["last_headers"];
    let minted = c.moto.assumed_roles().await;
    let (key, token) = &minted[0];
    assert!(
        last["authorization"]
            .as_str()
            .unwrap()
            .contains(&format!("Credential={key}/"))
    );
    assert_eq!(last["x-amz-security-token"].as_str(), Some(token.as_str()));
    assert_eq!(
        last["host"].as_str().unwrap(),
        format!("127.0.0.1:{}", c.standin.port)
    );
    let hygiene = c
        .receiver
        .query(r#"test_metric{instance="host-2"}"#, None)
        .await;
    assert_eq!(hygiene.len(), 1, "the hand-made request landed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_external_id_loses_nothing_once_fixed() {
    let peers = Peers::find();
    let mut c = chain(&peers, &peers.prometheus, "not-the-external-id", false).await;
    let start = unix_now();
    // STS (moto) refuses: the proxy stays up, not ready, and says why.
    let ready = eventually("/-/ready to report AccessDenied", ARRIVAL, || async {
        let r = get(&c.proxy.url("/-/ready")).await;
        r.text().contains("AccessDenied").then_some(r)
    })
    .await;
    assert_eq!(ready.status, 503);
    assert_eq!(get(&c.proxy.url("/-/healthy")).await.status, 200);
    // The sender's batches get 5xx and are retried, not dropped.
    eventually("the sender to retry", ARRIVAL, || async {
        (c.sender
            .own_metric("prometheus_remote_storage_samples_retried_total")
            .await
            > 0.0)
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_sender_lost_nothing(&c.sender).await;
    assert!(c.moto.assumed_roles().await.is_empty());
    assert_eq!(
        c.standin.stats().await["accepted"],
        0,
        "nothing reached the workspace"
    );

    // Restart with the right ExternalId on the same address; every retried sample arrives.
    let fixed_at = unix_now();
    let listen = c.proxy.addr.to_string();
    assert!(c.proxy.proc.terminate().success());
    c.proxy = Proxy::start(&c.moto, &c.standin, EXTERNAL_ID, &listen);
    c.proxy.wait_ready().await;
    let n = wait_until_nothing_lost(
        &c.sender,
        &c.receiver,
        fixed_at,
        (fixed_at - start + 30.0) as u64,
    )
    .await;
    assert!(n >= 3.0);
    assert_sender_lost_nothing(&c.sender).await;
    assert_eq!(c.standin.stats().await["rejected"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_signatures_are_refused_and_reach_the_sender_as_403() {
    let peers = Peers::find();
    let mut c = chain(&peers, &peers.prometheus, EXTERNAL_ID, false).await;
    c.proxy.wait_ready().await;
    wait_for_series(&c.receiver).await;
    // The workspace now checks with a different secret for the same key.
    let port = c.standin.port;
    c.standin.proc.terminate();
    c.standin = StandIn::start(&peers, &c.moto, &c.receiver, port, true);
    eventually(
        "the sender to count non-retryable failures",
        ARRIVAL,
        || async {
            (c.sender
                .own_metric("prometheus_remote_storage_samples_failed_total")
                .await
                > 0.0)
                .then_some(())
        },
    )
    .await;
    let stats = c.standin.stats().await;
    assert!(stats["rejected"].as_u64().unwrap() > 0);
    assert_eq!(stats["accepted"], 0);
    // The upstream's reason is in the proxy's log, and the sender saw a 403, not a 5xx.
    let line = c
        .proxy
        .proc
        .wait_for_log("upstream rejected request", Duration::from_secs(10));
    assert!(
        line.contains("status=403") && line.contains("SignatureDoesNotMatch"),
        "{line}"
    );
    let metrics = get(&c.proxy.url("/metrics")).await.text();
    assert!(metrics.contains(
        r#"amp_rw_proxy_requests_total{route="default",path="/api/v1/write",code="403"}"#
    ));
    assert!(
        c.sender.proc.log().contains("403"),
        "sender log mentions the 403"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_remote_write_2_from_prometheus_3() {
    let peers = Peers::find();
    let c = chain(&peers, &peers.prometheus3, EXTERNAL_ID, true).await;
    c.proxy.wait_ready().await;
    wait_for_series(&c.receiver).await;
    let start = unix_now();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let at = unix_now() - 1.0;
    wait_until_nothing_lost(&c.sender, &c.receiver, at, (at - start + 30.0) as u64).await;
    let stats = c.standin.stats().await;
    assert_eq!(stats["rejected"], 0, "{}", stats["reasons"]);
    let content_type = stats["last_headers"]["content-type"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        content_type,
        "application/x-protobuf;proto=io.prometheus.write.v2.Request"
    );
    assert_eq!(c.moto.assumed_roles().await.len(), 1);
    assert_sender_lost_nothing(&c.sender).await;

    // The receiver's *-Written headers come back through the proxy: replay a real v2 batch —
    // the newest, so the sender is stopped first (a batch arriving after it was fetched would
    // make the replay out of order, which the receiver refuses).
    let mut c = c;
    assert!(c.sender.proc.terminate().success());
    let body = get(&format!("http://127.0.0.1:{}/-/last-body", c.standin.port))
        .await
        .body;
    let req = http::Request::post(c.proxy.url("/api/v1/write"))
        .header("content-type", content_type)
        .header("content-encoding", "snappy")
        .header("x-prometheus-remote-write-version", "2.0.0")
        .body(Full::new(body))
        .unwrap();
    let answer = send(req).await;
    assert!(
        answer.status.is_success(),
        "{} {}",
        answer.status,
        answer.text()
    );
    let written = answer
        .headers
        .get("x-prometheus-remote-write-samples-written");
    assert!(
        written.is_some_and(|v| v.to_str().unwrap().parse::<u64>().unwrap() > 0),
        "{:?}",
        answer.headers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_against_moto_and_the_botocore_verifier_and_explains_a_wrong_external_id() {
    let peers = Peers::find();
    let moto = Moto::start(&peers, EXTERNAL_ID);
    let receiver = Prometheus::start(&peers.prometheus, Role::Receiver { rw2: false });
    receiver.wait_ready().await;
    let standin = StandIn::start(&peers, &moto, &receiver, 0, false);
    let (code, out) = tokio::task::block_in_place(|| Proxy::check(&moto, &standin, EXTERNAL_ID));
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(out.matches('✓').count(), 4, "{out}");
    assert!(
        out.contains("arn:aws:iam::222222222222:user/account_b"),
        "{out}"
    );
    assert!(out.contains("assumed-role/account_a_role"), "{out}");
    let stats = standin.stats().await;
    assert_eq!(
        stats["rejected"], 0,
        "botocore accepted the signature: {}",
        stats["reasons"]
    );
    assert_eq!(stats["accepted"], 1);

    let (code, out) =
        tokio::task::block_in_place(|| Proxy::check(&moto, &standin, "wrong-external-id"));
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("✗ assume role") && out.contains("AccessDenied"),
        "{out}"
    );
    assert!(
        out.contains("ExternalId") && out.contains("(b) Account A"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_reaches_the_proxy_over_mutual_tls_with_a_bearer_token() {
    let peers = Peers::find();
    let moto = Moto::start(&peers, EXTERNAL_ID);
    let receiver = Prometheus::start(&peers.prometheus, Role::Receiver { rw2: false });
    receiver.wait_ready().await;
    let standin = StandIn::start(&peers, &moto, &receiver, 0, false);
    let pki = Pki::new("e2e");
    let (cert, key) = pki.issue("proxy");
    let (client_cert, client_key) = pki.issue("prometheus");
    let token = pki.path("token");
    std::fs::write(&token, "e2e-inbound-token\n").unwrap();
    let ca = pki.path("ca.pem");
    let proxy = Proxy::start_with(
        &moto,
        &standin,
        EXTERNAL_ID,
        "127.0.0.1:0",
        &[
            "--inbound-bearer-token-file",
            &token,
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-client-ca-file",
            &ca,
        ],
    );
    let url = format!("https://localhost:{}/api/v1/write", proxy.addr.port());
    let yaml = format!(
        "authorization:\n  credentials_file: {token}\n\
         tls_config:\n  ca_file: {ca}\n  cert_file: {client_cert}\n  key_file: {client_key}"
    );
    let sender = Prometheus::start(
        &peers.prometheus,
        Role::SenderWith {
            url: &url,
            extra_targets: &[],
            remote_write_yaml: &yaml,
        },
    );
    sender.wait_ready().await;
    eventually(
        "the sender's series in the receiver",
        Duration::from_secs(90),
        || async { (!receiver.query(r#"up{job="sender"}"#, None).await.is_empty()).then_some(()) },
    )
    .await;
    assert_sender_lost_nothing(&sender).await;
    // The token did not travel upstream: the stand-in saw only SigV4, and accepted it.
    let stats = standin.stats().await;
    assert!(
        stats["last_headers"]["authorization"]
            .as_str()
            .unwrap()
            .starts_with("AWS4-HMAC-SHA256")
    );
    assert_eq!(stats["rejected"], 0);
    assert!(
        !proxy.proc.log().contains("request refused"),
        "{}",
        proxy.proc.log()
    );
}
/// `--external-label cluster=e2e`: every series the receiver stores carries `cluster="e2e"`,
/// and the independent SigV4 check accepts the rewritten bodies. 1.0 from Prometheus 2.42, 2.0
/// (through the symbols table) from Prometheus 3.x, the latter also with `--validate` on.
async fn external_label_reaches_the_receiver(rw2: bool) {
    let peers = Peers::find();
    let (prometheus, flags, version) = if rw2 {
        (
            &peers.prometheus3,
            &["--external-label", "cluster=e2e", "--validate"][..],
            "2.0",
        )
    } else {
        (
            &peers.prometheus,
            &["--external-label", "cluster=e2e"][..],
            "1.0",
        )
    };
    let c = chain_with(&peers, prometheus, EXTERNAL_ID, rw2, flags).await;
    c.proxy.wait_ready().await;
    let labelled = eventually("up{cluster=\"e2e\"} in the receiver", ARRIVAL, || async {
        let got = c
            .receiver
            .query(r#"up{job="sender",cluster="e2e"}"#, None)
            .await;
        (!got.is_empty()).then_some(got)
    })
    .await;
    assert_eq!(labelled[0].0["cluster"], "e2e");
    let unlabelled = c
        .receiver
        .query(r#"count({__name__=~".+",cluster!="e2e"})"#, None)
        .await;
    assert!(
        unlabelled.is_empty(),
        "series without cluster=\"e2e\": {unlabelled:?}"
    );
    let stats = c.standin.stats().await;
    assert_eq!(stats["rejected"], 0, "{}", stats["reasons"]);
    assert_sender_lost_nothing(&c.sender).await;
    let metrics = get(&c.proxy.url("/metrics")).await.text();
    let forwarded = format!(
        "amp_rw_proxy_remote_write_series_total{{route=\"default\",version=\"{version}\",outcome=\"forwarded\"}}"
    );
    assert!(
        metric_sum(&metrics, &forwarded) > 0.0,
        "{forwarded} in:\n{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_label_on_remote_write_1_from_prometheus_2() {
    external_label_reaches_the_receiver(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_label_on_remote_write_2_from_prometheus_3() {
    external_label_reaches_the_receiver(true).await;
}

/// One proxy, two teams (`--config` routes file): each team's Prometheus authenticates its own
/// way — `basic_auth` for team-a, `authorization` (bearer) for team-b — on its own path; each
/// route assumes the role with its own credential cache (two AssumeRoles at moto), and both
/// teams' samples arrive, independently verified by botocore.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_teams_share_one_proxy_through_a_routes_file_with_basic_and_bearer_auth() {
    let peers = Peers::find();
    let moto = Moto::start(&peers, EXTERNAL_ID);
    let receiver = Prometheus::start(&peers.prometheus, Role::Receiver { rw2: false });
    receiver.wait_ready().await;
    let standin = StandIn::start(&peers, &moto, &receiver, 0, false);
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    };
    let password = file("team-a.password", "team-a-password\n");
    let token = file("team-b.token", "team-b-token\n");
    let route = |name: &str, session: &str, auth: &str| {
        format!(
            "[[route]]\nname = \"{name}\"\npath = \"/{name}/api/v1/write\"\n\
             upstream_url = \"{}\"\nregion = \"us-east-1\"\nrole_arn = \"{}\"\n\
             external_id = \"{EXTERNAL_ID}\"\nsession_name = \"{session}\"\n{auth}\n\n",
            standin.url(),
            moto.role_arn
        )
    };
    let routes = file(
        "routes.toml",
        &format!(
            "{}{}",
            route(
                "team-a",
                "team-a-writer",
                "inbound_basic_auth_user = \"team-a\"\ninbound_basic_auth_password_file = \"team-a.password\""
            ),
            route(
                "team-b",
                "team-b-writer",
                "inbound_bearer_token_file = \"team-b.token\""
            ),
        ),
    );
    let proxy = Proxy::spawn(
        (&moto.access_key_id, &moto.secret_access_key),
        &[("AMP_RW_PROXY_DRAIN_DELAY", "100ms")],
        &[
            "--listen",
            "127.0.0.1:0",
            "--config",
            &routes,
            "--sts-endpoint",
            &moto.url,
        ],
    );
    proxy.wait_ready().await;
    let url_a = proxy.url("/team-a/api/v1/write");
    let url_b = proxy.url("/team-b/api/v1/write");
    let basic = format!("basic_auth:\n  username: team-a\n  password_file: {password}");
    let bearer = format!("authorization:\n  credentials_file: {token}");
    let senders = [
        Prometheus::start(
            &peers.prometheus,
            Role::SenderWith {
                url: &url_a,
                extra_targets: &[],
                remote_write_yaml: &basic,
            },
        ),
        Prometheus::start(
            &peers.prometheus,
            Role::SenderWith {
                url: &url_b,
                extra_targets: &[],
                remote_write_yaml: &bearer,
            },
        ),
    ];
    for sender in &senders {
        sender.wait_ready().await;
    }
    for sender in &senders {
        let instance = sender.addr.to_string();
        eventually(
            &format!("up{{instance=\"{instance}\"}} in the receiver"),
            ARRIVAL,
            || async {
                let q = format!(r#"up{{job="sender",instance="{instance}"}}"#);
                (!receiver.query(&q, None).await.is_empty()).then_some(())
            },
        )
        .await;
        assert_sender_lost_nothing(sender).await;
    }
    // One AssumeRole per route, and every request the stand-in saw was correctly signed.
    assert_eq!(moto.assumed_roles().await.len(), 2);
    assert_eq!(standin.stats().await["rejected"], 0);
    let metrics = get(&proxy.url("/metrics")).await.text();
    for route in ["team-a", "team-b"] {
        let ok = format!(
            r#"amp_rw_proxy_requests_total{{route="{route}",path="/{route}/api/v1/write",code="204"}}"#
        );
        assert!(metrics.contains(&ok), "no 204s for {route}:\n{metrics}");
    }
    assert!(!metrics.contains(r#"code="401""#), "{metrics}");
}
