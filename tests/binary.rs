//! The real binary as a user runs it: configuration through flags and `AMP_RW_PROXY_*`
//! variables, base credentials from the AWS SDK's default chain (environment variables here),
//! logs, signals and exit codes.

use std::process::Command;
use std::time::Duration;

use http::{Request, StatusCode};
use http_body_util::Full;
use support::accounts::{
    ASSUMED_SECRET, ASSUMED_TOKEN, BASE_ACCESS_KEY, BASE_SECRET, EXTERNAL_ID, REGION, ROLE_ARN,
    WORKSPACE_PATH,
};
use support::amp::{AmpStandIn, Reply};
use support::binary::{Running, spawn};
use support::client::{get, prometheus_post, send, write};
use support::sts::StsStandIn;
use support::wire::write_request;

const BASE_TOKEN: &str = "base-session-token-DO-NOT-LOG-31aa02";
const INBOUND_BEARER: &str = "inbound-bearer-DO-NOT-LOG-0f0f0f";

/// A command with a hermetic environment: the only AWS credentials are Account B's base keys in
/// environment variables, no profile files, no instance metadata.
fn command(extra_env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_amp-rw-proxy"));
    let home = std::env::temp_dir().join(format!("amp-rw-proxy-test-home-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join("config"), "").unwrap();
    std::fs::write(home.join("credentials"), "").unwrap();
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("AWS_ACCESS_KEY_ID", BASE_ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", BASE_SECRET)
        .env("AWS_SESSION_TOKEN", BASE_TOKEN)
        .env("AWS_CONFIG_FILE", home.join("config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_BACKTRACE", "1");
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd
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

fn proxy_env<'a>(sts: &'a str, amp: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![
        ("AMP_RW_PROXY_LISTEN", "127.0.0.1:0"),
        ("AMP_RW_PROXY_UPSTREAM_URL", amp),
        ("AMP_RW_PROXY_REGION", REGION),
        ("AMP_RW_PROXY_ROLE_ARN", ROLE_ARN),
        ("AMP_RW_PROXY_EXTERNAL_ID", EXTERNAL_ID),
        ("AMP_RW_PROXY_STS_ENDPOINT", sts),
        // Shutdown is tested for what it finishes, not for how long it stays open.
        ("AMP_RW_PROXY_DRAIN_DELAY", "100ms"),
    ]
}

#[test]
fn config_errors_are_all_reported_with_exit_code_64_and_no_panic() {
    let out = command(&[("AMP_RW_PROXY_SESSION_DURATION", "20h")])
        .args([
            "--listen",
            "not-an-address",
            "--role-arn",
            "role",
            "--log-format",
            "xml",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    for flag in [
        "--listen",
        "--upstream-url",
        "--role-arn",
        "--log-format",
        "--session-duration",
    ] {
        assert!(err.contains(flag), "{flag} missing from:\n{err}");
    }
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );

    let out = command(&[]).arg("--no-such-flag").output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let out = command(&[]).arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for documented in [
        "AMP_RW_PROXY_UPSTREAM_URL",
        "[default: 127.0.0.1:8080]",
        "[default: 32MiB]",
        "[default: 1h]",
    ] {
        assert!(help.contains(documented), "--help lacks {documented}");
    }
}

async fn secrets_stay_out_of_logs(format: &str) {
    let sts = StsStandIn::start().await;
    let amp = AmpStandIn::start().await;
    let (sts_url, amp_url) = (sts.url(), amp.url());
    let token_file = std::env::temp_dir().join(format!(
        "amp-rw-proxy-token-{}-{format}",
        std::process::id()
    ));
    std::fs::write(&token_file, INBOUND_BEARER).unwrap();
    let token_path = token_file.to_str().unwrap().to_string();
    let mut env = proxy_env(&sts_url, &amp_url);
    env.push(("RUST_LOG", "trace"));
    env.push(("AMP_RW_PROXY_LOG_FORMAT", format));
    // Inbound authentication on, so the bearer token is actually checked (and must not leak).
    env.push(("AMP_RW_PROXY_INBOUND_BEARER_TOKEN_FILE", &token_path));
    // Start with STS refusing, so the error path of the credential fetch is logged too.
    sts.set_deny(true);
    let mut proxy = spawn(command(&env));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !proxy.logs().contains("failed to obtain AWS credentials") {
        assert!(tokio::time::Instant::now() < deadline, "{}", proxy.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sts.set_deny(false);
    wait_ready(&proxy).await;

    let (_, body) = write_request(10);
    let req = prometheus_post(&proxy.url("/api/v1/write"))
        .header("authorization", format!("Bearer {INBOUND_BEARER}"))
        .body(Full::new(body.clone()))
        .unwrap();
    assert_eq!(
        send(req).await.status,
        StatusCode::NO_CONTENT,
        "authenticated write"
    );
    // A wrong token is refused (and logged, without the token).
    let wrong = prometheus_post(&proxy.url("/api/v1/write"))
        .header("authorization", "Bearer not-the-token")
        .body(Full::new(body.clone()))
        .unwrap();
    assert_eq!(send(wrong).await.status, StatusCode::UNAUTHORIZED);
    // A failing exchange too: error paths log more.
    amp.set_reply(Reply {
        status: 403,
        body: "The security token included in the request is invalid",
        ..Reply::default()
    });
    let failing = prometheus_post(&proxy.url("/api/v1/write"))
        .header("authorization", format!("Bearer {INBOUND_BEARER}"))
        .body(Full::new(body))
        .unwrap();
    assert_eq!(send(failing).await.status, StatusCode::FORBIDDEN);
    let status = proxy.terminate();
    assert!(status.success(), "exit {status:?}");

    let logs = proxy.logs();
    assert!(
        logs.contains("TRACE") || logs.contains("\"level\":\"TRACE\""),
        "trace logging was on:\n{logs}"
    );
    assert!(logs.contains("obtained AWS credentials"));
    assert!(logs.contains("AccessDenied"), "STS's reason is logged");
    assert!(logs.contains("upstream rejected request") && logs.contains("403"));
    let signature = amp.received()[0].headers["authorization"]
        .to_str()
        .unwrap()
        .split("Signature=")
        .nth(1)
        .unwrap()
        .to_string();
    for secret in [
        BASE_SECRET,
        BASE_TOKEN,
        ASSUMED_SECRET,
        ASSUMED_TOKEN,
        INBOUND_BEARER,
        &signature,
        EXTERNAL_ID,
    ] {
        assert!(
            !logs.contains(secret),
            "secret {secret:?} found in {format} logs"
        );
    }
    if format == "json" {
        for line in logs.lines() {
            assert!(line.starts_with('{'), "non-JSON log line: {line}");
        }
    }
}

#[tokio::test]
async fn secrets_never_reach_text_logs_at_trace_level() {
    secrets_stay_out_of_logs("text").await;
}

#[tokio::test]
async fn secrets_never_reach_json_logs_at_trace_level() {
    secrets_stay_out_of_logs("json").await;
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_and_exits_0() {
    let sts = StsStandIn::start().await;
    let amp = AmpStandIn::start().await;
    amp.set_reply(Reply {
        delay: Duration::from_millis(800),
        ..Reply::default()
    });
    let (sts_url, amp_url) = (sts.url(), amp.url());
    let mut proxy = spawn(command(&proxy_env(&sts_url, &amp_url)));
    wait_ready(&proxy).await;
    let (_, body) = write_request(1);
    let url = proxy.url("/api/v1/write");
    let arrived = amp.arrived.notified();
    let in_flight = tokio::spawn(async move { write(&url, body).await.status });
    arrived.await;
    let pid = proxy.child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert_eq!(
        in_flight.await.unwrap(),
        StatusCode::NO_CONTENT,
        "answered during drain"
    );
    let status = tokio::task::spawn_blocking(move || {
        let s = proxy.child.wait().unwrap();
        (s, proxy.logs())
    })
    .await
    .unwrap();
    assert_eq!(status.0.code(), Some(0), "{}", status.1);
    assert!(status.1.contains("received SIGTERM"));
}

#[tokio::test]
async fn startup_line_names_upstream_region_and_role_without_secrets() {
    let sts = StsStandIn::start().await;
    let amp = AmpStandIn::start().await;
    let (sts_url, amp_url) = (sts.url(), amp.url());
    // Also the single-threaded runtime `--worker-threads 1` selects.
    let mut env = proxy_env(&sts_url, &amp_url);
    env.push(("AMP_RW_PROXY_WORKER_THREADS", "1"));
    let mut proxy = spawn(command(&env));
    wait_ready(&proxy).await;
    let logs = proxy.logs();
    let line = logs.lines().find(|l| l.contains("serving route")).unwrap();
    for part in [
        amp.addr.to_string().as_str(),
        REGION,
        ROLE_ARN,
        WORKSPACE_PATH,
    ] {
        assert!(line.contains(part), "{part} not in startup line: {line}");
    }
    assert!(
        logs.contains("plain http://"),
        "warns about an unencrypted upstream"
    );
    // The request path needs no credentials flags: `--upstream-url` etc. came from the env.
    let a = send(
        Request::post(proxy.url("/api/v1/write"))
            .body(Full::new(write_request(1).1))
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert!(proxy.terminate().success());
}

#[tokio::test]
async fn the_sdks_aws_endpoint_url_sts_is_honoured() {
    let sts = StsStandIn::start().await;
    let amp = AmpStandIn::start().await;
    let (sts_url, amp_url) = (sts.url(), amp.url());
    let mut env: Vec<_> = proxy_env(&sts_url, &amp_url)
        .into_iter()
        .filter(|(k, _)| *k != "AMP_RW_PROXY_STS_ENDPOINT")
        .collect();
    env.push(("AWS_ENDPOINT_URL_STS", &sts_url));
    let mut proxy = spawn(command(&env));
    wait_ready(&proxy).await;
    assert_eq!(sts.calls(), 1);
    assert!(proxy.terminate().success());
}

#[test]
fn policies_prints_the_three_documents_ready_for_aws_iam() {
    let args = [
        "policies",
        "--source-role-arn",
        "arn:aws:iam::222222222222:role/account_b_role",
        "--workspace-arn",
        "arn:aws:aps:us-east-1:111111111111:workspace/ws-EXAMPLE",
        "--external-id",
        "EXAMPLE-ID",
    ];
    let out = command(&[])
        .args(args)
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(
        v["account_a_trust_policy"]["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"],
        "EXAMPLE-ID"
    );
    assert_eq!(
        v["account_b_permission_policy"]["Statement"][0]["Resource"],
        "arn:aws:iam::111111111111:role/account_a_role"
    );
    let text = command(&[]).args(args).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("aws iam put-role-policy --role-name account_b_role"),
        "{text}"
    );

    let bad = command(&[])
        .args([
            "policies",
            "--source-role-arn",
            "nope",
            "--workspace-arn",
            "nope",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(64));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("--source-role-arn") && err.contains("--workspace-arn"),
        "{err}"
    );
    let help = command(&[]).arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("policies"));
}

/// `amp-rw-proxy check` with the serving configuration from the environment.
async fn run_check(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let out = command(&pairs).arg("check").output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn check_walks_the_chain_and_names_the_broken_link() {
    let sts = StsStandIn::start().await;
    let amp = AmpStandIn::start().await;
    let (sts_url, amp_url) = (sts.url(), amp.url());
    let env = proxy_env(&sts_url, &amp_url);

    // Everything in order: four ticks, exit 0, and the empty write was signed correctly.
    let (code, out) = run_check(&env).await;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(out.matches('✓').count(), 4, "{out}");
    assert!(
        out.contains("provider Environment")
            && out.contains("arn:aws:iam::222222222222:user/account_b"),
        "{out}"
    );
    assert!(out.contains("assumed-role/account_a_role"), "{out}");
    assert!(amp.received().last().unwrap().verdict.is_ok());

    // STS refuses: both possible causes, with the documents that fix each.
    sts.set_deny(true);
    let (code, out) = run_check(&env).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("✗ assume role"), "{out}");
    assert!(
        out.contains("(a) Account B") && out.contains("(b) Account A"),
        "{out}"
    );
    assert!(
        out.contains("\"sts:ExternalId\"")
            && out.contains("aws iam put-user-policy --user-name account_b"),
        "{out}"
    );
    sts.set_deny(false);

    // The workspace refuses: 403 is A's permission policy, 404 a wrong workspace or region.
    amp.set_reply(Reply {
        status: 403,
        body: "User is not authorized to perform: aps:RemoteWrite",
        ..Reply::default()
    });
    let (code, out) = run_check(&env).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("✗ signed remote-write")
            && out.contains("aps:RemoteWrite")
            && out.contains("permission policy"),
        "{out}"
    );
    assert!(
        out.contains("\"Action\": \"aps:RemoteWrite\""),
        "the permission policy is printed: {out}"
    );
    amp.set_reply(Reply {
        status: 404,
        body: "workspace not found",
        ..Reply::default()
    });
    let (_, out) = run_check(&env).await;
    assert!(
        out.contains("No such workspace") && out.contains("us-east-1"),
        "{out}"
    );

    // No credentials at all: the first step fails and says where credentials come from.
    let no_keys: Vec<(&str, &str)> = env
        .iter()
        .copied()
        .chain([
            ("AWS_ACCESS_KEY_ID", ""),
            ("AWS_SECRET_ACCESS_KEY", ""),
            ("AWS_SESSION_TOKEN", ""),
        ])
        .collect();
    let (code, out) = run_check(&no_keys).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("✗ base credentials") && out.contains("IRSA"),
        "{out}"
    );
    for secret in [BASE_SECRET, BASE_TOKEN, ASSUMED_SECRET, ASSUMED_TOKEN] {
        assert!(!out.contains(secret));
    }
}

#[test]
fn remote_write_settings_come_from_the_environment_and_are_documented() {
    // Comma-separated in the environment; every bad entry reported with exit 64.
    let out = command(&[
        (
            "AMP_RW_PROXY_EXTERNAL_LABELS",
            "cluster=a,__name__=x,no-equals",
        ),
        ("AMP_RW_PROXY_MAX_DECODED_SIZE", "huge"),
    ])
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "--external-label __name__=x: __name__ cannot be set",
        "--external-label \"no-equals\": expected NAME=VALUE",
        "--max-decoded-size \"huge\"",
    ] {
        assert!(err.contains(needle), "{needle} missing from:\n{err}");
    }
    let out = command(&[]).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for documented in [
        "--validate",
        "AMP_RW_PROXY_VALIDATE",
        "[default: off]",
        "--max-decoded-size",
        "AMP_RW_PROXY_MAX_DECODED_SIZE",
        "--external-label <NAME=VALUE>",
        "AMP_RW_PROXY_EXTERNAL_LABELS",
    ] {
        assert!(
            help.contains(documented),
            "--help lacks {documented}:\n{help}"
        );
    }
}

#[tokio::test]
async fn a_routes_file_is_checked_route_by_route_and_its_mistakes_are_reported_by_line() {
    let sts = StsStandIn::start().await;
    let amp = AmpStandIn::start().await;
    let (sts_url, amp_url) = (sts.url(), amp.url());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.toml");
    let route = |name: &str, external_id: &str| {
        format!(
            "[[route]]\nname = \"{name}\"\npath = \"/{name}/api/v1/write\"\nupstream_url = \"{amp_url}\"\n\
             region = \"{REGION}\"\nrole_arn = \"{ROLE_ARN}\"\nexternal_id = \"{external_id}\"\n\n"
        )
    };
    std::fs::write(
        &file,
        format!(
            "{}{}",
            route("team-a", EXTERNAL_ID),
            route("team-b", "not-the-id")
        ),
    )
    .unwrap();
    let file = file.to_string_lossy().into_owned();
    let env = [
        ("AMP_RW_PROXY_CONFIG", file.as_str()),
        ("AMP_RW_PROXY_STS_ENDPOINT", sts_url.as_str()),
    ];
    // team-a passes all four steps; team-b's ExternalId is wrong, so the whole check fails.
    let (code, out) = run_check(&env).await;
    assert_eq!(code, Some(1), "{out}");
    let (a, b) = out
        .split_once("route team-b:")
        .expect("a section per route");
    assert!(a.contains("route team-a:"), "{out}");
    assert_eq!(a.matches('✓').count(), 4, "{out}");
    assert!(b.contains('✗') && b.contains("ExternalId"), "{out}");
    assert!(!out.contains("all checks passed"), "{out}");

    // A mistake in the file: exit 64, with the file, line and column of each.
    std::fs::write(
        &file,
        format!("{}colour = \"blue\"\n", route("team-a", EXTERNAL_ID)),
    )
    .unwrap();
    let out = command(&env).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{file}:9:1: unknown field `colour`")),
        "{err}"
    );
}
