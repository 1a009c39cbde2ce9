//! The egress proxy (issue #18, item 1) and the STS endpoint the proxy reports (item 2), with
//! the real binary and a real forward proxy, Debian's tinyproxy, on loopback: the TLS
//! workspace reached through a CONNECT tunnel, STS through the same proxy, NO_PROXY bypasses,
//! the proxy down or refusing → 503 with a reason a person can act on, and proxy passwords
//! never in the logs.
//!
//! Note: the proxy's own bypass list is empty here — neither hyper-util's matcher nor the SDK
//! skips loopback by default, so 127.0.0.1/localhost destinations really take the proxy path
//! unless a test lists them in NO_PROXY.

use std::process::Command;
use std::time::Duration;

use http::StatusCode;
use support::accounts::{
    ASSUMED_SECRET, ASSUMED_TOKEN, BASE_ACCESS_KEY, BASE_SECRET, EXTERNAL_ID, REGION, ROLE_ARN,
};
use support::amp::AmpStandIn;
use support::binary::{Running, spawn};
use support::client::{get, write};
use support::forward_proxy::{Tinyproxy, TinyproxyOptions};
use support::harness::free_port;
use support::sts::StsStandIn;
use support::wire::write_request;

const PROXY_USER: &str = "egress";
const PROXY_PASSWORD: &str = "proxy-pw-DO-NOT-LOG-4e7a9b";

/// The binary with a hermetic environment: Account B's keys in the environment, no profile,
/// no instance metadata, no proxy variables but `extra_env`'s.
fn command(extra_env: &[(&str, &str)]) -> Command {
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
        .env("AMP_RW_PROXY_LISTEN", "127.0.0.1:0")
        .env("AMP_RW_PROXY_DRAIN_DELAY", "100ms");
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd
}

/// The flags for a route to the (TLS) workspace stand-in via AssumeRole at the STS stand-in.
fn route_env<'a>(sts: &'a str, amp: &'a str, ca: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![
        ("AMP_RW_PROXY_UPSTREAM_URL", amp),
        ("AMP_RW_PROXY_UPSTREAM_CA_FILE", ca),
        ("AMP_RW_PROXY_REGION", REGION),
        ("AMP_RW_PROXY_ROLE_ARN", ROLE_ARN),
        ("AMP_RW_PROXY_EXTERNAL_ID", EXTERNAL_ID),
        ("AMP_RW_PROXY_STS_ENDPOINT", sts),
    ]
}

async fn wait_ready(r: &Running) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while get(&r.url("/-/ready")).await.status != StatusCode::OK {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never ready:\n{}",
            r.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ca_file(amp: &AmpStandIn) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), amp.tls_ca_pem.as_ref().unwrap()).unwrap();
    f
}

/// `--egress-proxy` with credentials: AssumeRole goes to STS through the proxy (plain HTTP,
/// forwarded), the write goes to the TLS workspace through a CONNECT tunnel, signed as
/// without a proxy; the proxy's log shows both; no log line holds the proxy password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_workspace_through_connect_and_sts_through_the_proxy() {
    let tp = Tinyproxy::start(TinyproxyOptions {
        basic_auth: Some((PROXY_USER, PROXY_PASSWORD)),
        ..Default::default()
    });
    let sts = StsStandIn::start().await;
    let amp = AmpStandIn::start_tls().await;
    let ca = ca_file(&amp);
    let (sts_url, amp_url) = (sts.url(), amp.url());
    let proxy_url = tp.url_with(PROXY_USER, PROXY_PASSWORD);
    let mut env = route_env(&sts_url, &amp_url, ca.path().to_str().unwrap());
    env.push(("AMP_RW_PROXY_EGRESS_PROXY", &proxy_url));
    // At trace level too, the password must not show.
    env.push(("RUST_LOG", "trace"));
    let mut proxy = spawn(command(&env));
    wait_ready(&proxy).await;

    let answer = write(&proxy.url("/api/v1/write"), write_request(3).1).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "{}", proxy.logs());
    let received = amp.received();
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].verdict,
        Ok(()),
        "signature checks out through the tunnel"
    );
    assert!(
        !received[0].headers.contains_key("proxy-authorization"),
        "the workspace never sees the proxy's credentials"
    );
    assert!(sts.calls() >= 1);

    let amp_port = amp.addr.port();
    let requests = tp.requests();
    assert!(
        requests
            .iter()
            .any(|r| r == &format!("CONNECT localhost:{amp_port} HTTP/1.1")),
        "tinyproxy tunnelled to the workspace: {requests:?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with(&format!("POST {sts_url}")) && r.ends_with("HTTP/1.1")),
        "tinyproxy forwarded AssumeRole: {requests:?}"
    );

    let status = proxy.terminate();
    assert!(status.success());
    let logs = proxy.logs();
    let shown = format!("http://{PROXY_USER}:***@127.0.0.1:{}", tp.port);
    assert!(
        logs.lines()
            .any(|l| l.contains("STS endpoint for AssumeRole")
                && l.contains(&format!("sts_endpoint={sts_url}"))
                && l.contains(&format!("via={shown}"))),
        "the STS endpoint and the way to it are logged:\n{logs}"
    );
    assert!(
        logs.lines()
            .any(|l| l.contains("egress proxy") && l.contains("from=--egress-proxy")),
        "{logs}"
    );
    assert!(
        logs.lines()
            .any(|l| l.contains("serving route") && l.contains(&format!("via={shown}"))),
        "{logs}"
    );
    let basic = "ZWdyZXNzOnByb3h5LXB3LURPLU5PVC1MT0ctNGU3YTli"; // base64("egress:proxy-pw-…")
    for secret in [
        PROXY_PASSWORD,
        basic,
        BASE_SECRET,
        ASSUMED_SECRET,
        ASSUMED_TOKEN,
    ] {
        assert!(!logs.contains(secret), "{secret} leaked into the logs");
    }
}

/// The environment's variables, in lower case here: `NO_PROXY` lists the workspace's host, so
/// the write goes direct while STS (another host) still takes `http_proxy`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_proxy_bypasses_the_proxy_for_the_hosts_it_names() {
    let tp = Tinyproxy::start(TinyproxyOptions::default());
    let sts = StsStandIn::start().await;
    let amp = AmpStandIn::start_tls().await;
    let ca = ca_file(&amp);
    let (sts_url, amp_url, tp_url) = (sts.url(), amp.url(), tp.url());
    let mut env = route_env(&sts_url, &amp_url, ca.path().to_str().unwrap());
    env.extend([
        ("https_proxy", tp_url.as_str()),
        ("http_proxy", tp_url.as_str()),
        ("no_proxy", ".example.com,localhost"),
    ]);
    let proxy = spawn(command(&env));
    wait_ready(&proxy).await;
    let answer = write(&proxy.url("/api/v1/write"), write_request(1).1).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "{}", proxy.logs());
    assert_eq!(amp.count(), 1);
    let requests = tp.requests();
    assert!(
        !requests.iter().any(|r| r.starts_with("CONNECT")),
        "the workspace was reached directly: {requests:?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with(&format!("POST {sts_url}"))),
        "STS still went through http_proxy: {requests:?}"
    );
    let logs = proxy.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("serving route") && l.contains("via=direct")),
        "{logs}"
    );
    assert!(
        logs.lines()
            .any(|l| l.contains("egress proxy") && l.contains("from=https_proxy, http_proxy")),
        "{logs}"
    );

    // `*` bypasses everything: nothing reaches the proxy at all.
    let tp2 = Tinyproxy::start(TinyproxyOptions::default());
    let sts2 = StsStandIn::start().await;
    let (sts2_url, tp2_url) = (sts2.url(), tp2.url());
    let mut env = route_env(&sts2_url, &amp_url, ca.path().to_str().unwrap());
    env.extend([
        ("HTTPS_PROXY", tp2_url.as_str()),
        ("HTTP_PROXY", tp2_url.as_str()),
        ("NO_PROXY", "*"),
    ]);
    let proxy = spawn(command(&env));
    wait_ready(&proxy).await;
    let answer = write(&proxy.url("/api/v1/write"), write_request(1).1).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "{}", proxy.logs());
    assert_eq!(tp2.requests(), Vec::<String>::new());
    assert!(
        proxy
            .logs()
            .contains("egress proxy not used: NO_PROXY=* bypasses it for every host"),
        "{}",
        proxy.logs()
    );
}

/// STS is reached directly (NO_PROXY), the workspace through a proxy that is down, refuses
/// our credentials, or refuses the tunnel: each a 503 (the sender retries) whose body says in
/// one line what failed and what to check — never the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_down_or_refusing_is_a_503_with_a_clear_reason() {
    let sts = StsStandIn::start().await;
    let amp = AmpStandIn::start_tls().await;
    let ca = ca_file(&amp);
    let (sts_url, amp_url) = (sts.url(), amp.url());
    let tp = Tinyproxy::start(TinyproxyOptions {
        basic_auth: Some((PROXY_USER, PROXY_PASSWORD)),
        ..Default::default()
    });
    // Only port 443 may be tunnelled to; the stand-in listens elsewhere.
    let strict = Tinyproxy::start(TinyproxyOptions {
        connect_ports: &[443],
        ..Default::default()
    });
    let down = format!(
        "http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{}",
        free_port()
    );
    // tinyproxy answers a CONNECT without credentials with 407, with wrong ones with 401.
    let wrong = tp.url_with(PROXY_USER, "not-the-password");
    let cases = [
        (
            down.clone(),
            "cannot reach the egress proxy http://egress:***@127.0.0.1:",
        ),
        (tp.url(), "refused our credentials (407"),
        (wrong, "would not open a tunnel to localhost:"),
        (strict.url(), "would not open a tunnel to localhost:"),
    ];
    for (proxy_url, reason) in cases {
        let mut env = route_env(&sts_url, &amp_url, ca.path().to_str().unwrap());
        env.extend([
            ("AMP_RW_PROXY_EGRESS_PROXY", proxy_url.as_str()),
            ("NO_PROXY", "127.0.0.1"),
        ]);
        let proxy = spawn(command(&env));
        wait_ready(&proxy).await;
        let answer = write(&proxy.url("/api/v1/write"), write_request(1).1).await;
        let body = answer.text();
        eprintln!("503 body: {body}");
        assert_eq!(
            answer.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{body}\n{}",
            proxy.logs()
        );
        assert!(body.contains(reason), "{reason:?} not in {body:?}");
        assert_eq!(body.trim_end().lines().count(), 1, "{body:?}");
        assert!(
            !body.contains("{ ") && !body.contains("Error {"),
            "no Debug dump: {body}"
        );
        assert!(!body.contains(PROXY_PASSWORD) && !proxy.logs().contains(PROXY_PASSWORD));
    }
    assert_eq!(amp.count(), 0, "nothing reached the workspace");
    assert!(
        strict
            .requests()
            .iter()
            .any(|r| r.starts_with("CONNECT localhost:")),
        "{:?}",
        strict.requests()
    );
}

/// Bad proxy URLs, session names and STS settings are configuration errors, all reported at
/// once (exit 64), and the proxy password is not repeated in them.
#[test]
fn bad_egress_and_sts_settings_are_all_reported_at_once() {
    let out = command(&[
        (
            "HTTPS_PROXY",
            "https://egress:proxy-pw-DO-NOT-LOG-4e7a9b@proxy.corp:3128",
        ),
        ("HTTP_PROXY", "socks5://proxy.corp:1080"),
    ])
    .args([
        "--upstream-url",
        "https://aps-workspaces.us-west-2.api.aws/workspaces/ws-1/api/v1/remote_write",
        "--role-arn",
        ROLE_ARN,
        "--session-name",
        "has spaces/and slashes",
    ])
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "HTTPS_PROXY \"https://egress:***@proxy.corp:3128\": only http://",
        "HTTP_PROXY \"socks5://proxy.corp:1080\": only http://",
        "--session-name \"has spaces/and slashes\": must be 2 to 64 characters",
    ] {
        assert!(err.contains(needle), "{needle:?} missing from:\n{err}");
    }
    assert!(!err.contains(PROXY_PASSWORD), "{err}");
    assert_eq!(
        err.matches("\n  - ").count(),
        3,
        "exactly these three errors: {err}"
    );
    assert!(
        !err.contains("--region is required") && !err.contains("not an AMP endpoint"),
        "region from the dual-stack host: {err}"
    );
}

/// The startup log names the STS endpoint AssumeRole uses: the regional endpoint of the
/// workspace's partition by default, FIPS and dual-stack by flag or by the SDK's variables,
/// `--sts-region`. No STS call leaves loopback: the egress proxy is a closed loopback port.
#[test]
fn the_startup_log_names_the_sts_endpoint() {
    let closed = format!("http://127.0.0.1:{}", free_port());
    let us = "https://aps-workspaces.us-east-1.amazonaws.com/workspaces/ws-1/api/v1/remote_write";
    let cn =
        "https://aps-workspaces.cn-north-1.amazonaws.com.cn/workspaces/ws-1/api/v1/remote_write";
    let gov = "https://aps-workspaces-fips.us-gov-west-1.amazonaws.com/workspaces/ws-1/api/v1/remote_write";
    let cn_role = "arn:aws-cn:iam::111111111111:role/account_a_role";
    let gov_role = "arn:aws-us-gov:iam::111111111111:role/account_a_role";
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a str);
    let cases: &[Case] = &[
        (
            &[],
            &["--upstream-url", us, "--role-arn", ROLE_ARN],
            "https://sts.us-east-1.amazonaws.com",
        ),
        // Where the proxy runs (AWS_REGION) wins within the partition...
        (
            &[("AWS_REGION", "eu-west-1")],
            &["--upstream-url", us, "--role-arn", ROLE_ARN],
            "https://sts.eu-west-1.amazonaws.com",
        ),
        // ...never across partitions.
        (
            &[("AWS_REGION", "us-east-1")],
            &["--upstream-url", cn, "--role-arn", cn_role],
            "https://sts.cn-north-1.amazonaws.com.cn",
        ),
        (
            &[],
            &["--upstream-url", gov, "--role-arn", gov_role, "--sts-fips"],
            "https://sts.us-gov-west-1.amazonaws.com",
        ),
        (
            &[],
            &["--upstream-url", us, "--role-arn", ROLE_ARN, "--sts-fips"],
            "https://sts-fips.us-east-1.amazonaws.com",
        ),
        (
            &[("AWS_USE_FIPS_ENDPOINT", "true")],
            &["--upstream-url", us, "--role-arn", ROLE_ARN],
            "https://sts-fips.us-east-1.amazonaws.com",
        ),
        (
            &[],
            &[
                "--upstream-url",
                us,
                "--role-arn",
                ROLE_ARN,
                "--sts-dual-stack",
            ],
            "https://sts.us-east-1.api.aws",
        ),
        (
            &[],
            &[
                "--upstream-url",
                us,
                "--role-arn",
                ROLE_ARN,
                "--sts-region",
                "ap-southeast-2",
            ],
            "https://sts.ap-southeast-2.amazonaws.com",
        ),
        (
            &[],
            &[
                "--upstream-url",
                us,
                "--role-arn",
                ROLE_ARN,
                "--sts-endpoint",
                "https://vpce-0abc.sts.us-east-1.vpce.amazonaws.com",
            ],
            "https://vpce-0abc.sts.us-east-1.vpce.amazonaws.com",
        ),
    ];
    for (env, args, want) in cases {
        let mut env = env.to_vec();
        env.push(("AMP_RW_PROXY_EGRESS_PROXY", closed.as_str()));
        let mut cmd = command(&env);
        cmd.args(*args);
        let mut proxy = spawn(cmd);
        proxy.terminate();
        let logs = proxy.logs();
        let line = logs
            .lines()
            .find(|l| l.contains("STS endpoint for AssumeRole"))
            .unwrap_or_else(|| panic!("no STS endpoint line:\n{logs}"));
        assert!(
            line.contains(&format!("sts_endpoint={want} ")),
            "{args:?} {env:?}: want {want} in {line}"
        );
        assert!(line.contains(&format!("via={closed}")), "{line}");
        eprintln!("{line}");
    }
}

/// The same through real peers: moto's STS issues the credentials through the proxy
/// (AssumeRole forwarded), the botocore stand-in judges the signature of the write that went
/// through it, and a real Prometheus receiver stores the samples.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_sts_and_the_botocore_verifier_through_the_proxy() {
    use support::harness::{Moto, Peers, Prometheus, Proxy, Role, StandIn};
    let peers = Peers::find();
    let tp = Tinyproxy::start(TinyproxyOptions {
        basic_auth: Some((PROXY_USER, PROXY_PASSWORD)),
        ..Default::default()
    });
    let moto = Moto::start(&peers, "egress-external-id");
    let receiver = Prometheus::start(&peers.prometheus, Role::Receiver { rw2: false });
    receiver.wait_ready().await;
    let standin = StandIn::start(&peers, &moto, &receiver, 0, false);
    let proxy_url = tp.url_with(PROXY_USER, PROXY_PASSWORD);
    let proxy = Proxy::start_with(
        &moto,
        &standin,
        "egress-external-id",
        "127.0.0.1:0",
        &["--egress-proxy", &proxy_url],
    );
    proxy.wait_ready().await;
    let answer = write(&proxy.url("/api/v1/write"), write_request(2).1).await;
    assert!(
        answer.status.is_success(),
        "{} {}\n{}",
        answer.status,
        answer.text(),
        proxy.proc.log()
    );
    let stats = standin.stats().await;
    assert_eq!(stats["rejected"], 0, "{stats}");
    assert!(stats["accepted"].as_u64().unwrap() >= 1, "{stats}");
    assert!(
        !moto.assumed_roles().await.is_empty(),
        "moto issued the credentials"
    );
    let requests = tp.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with(&format!("POST {}/ ", moto.url))),
        "AssumeRole went through the proxy: {requests:?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with(&format!("POST {} ", standin.url()))),
        "the write went through the proxy: {requests:?}"
    );
    assert!(!proxy.proc.log().contains(PROXY_PASSWORD));
}
