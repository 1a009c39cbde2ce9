//! What a person reads when the credential chain or STS fails, on real failures: no
//! credentials anywhere (IMDS unreachable, IMDS forbidden), STS unreachable, and moto's STS
//! refusing a wrong ExternalId and a wrong secret. Every place that shows it — `/-/ready`, the
//! 503 a sender gets, the log and `check` — says in one bounded line what failed and what fixes
//! it, with no `Debug` dump of the SDK's error.

use std::time::Duration;

use support::client::{get, write};
use support::harness::{Moto, Peers, Proxy, eventually, free_port, run_check};
use support::wire::write_request;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::EXTERNAL_ID;

/// Pieces of the SDK errors' `Debug` form: none may reach a user.
const DEBUG_DUMP: [&str; 8] = [
    "ProviderError(",
    "DispatchFailure(",
    "ConnectorError {",
    "{ source",
    "raw: Response",
    "SdkBody",
    "ErrorMetadata {",
    "Some(",
];

/// Longest line we show for a failure (the explanation is cut at 480 characters; the
/// readiness and 503 texts add a short prefix).
const LONGEST: usize = 600;

fn assert_readable(place: &str, text: &str) {
    let line = text.trim_end_matches('\n');
    assert!(!line.contains('\n'), "{place}: more than one line:\n{text}");
    assert!(
        line.chars().count() <= LONGEST,
        "{place}: {} characters: {line}",
        line.chars().count()
    );
    for dump in DEBUG_DUMP {
        assert!(!line.contains(dump), "{place}: `{dump}` in: {line}");
    }
    assert!(line.contains(" — fix: "), "{place}: no fix in: {line}");
}

/// The proxy's flags for a role in moto's account A, an upstream nobody needs to reach.
fn serving_flags(sts: &str, role_arn: &str, external_id: &str) -> Vec<String> {
    let upstream = format!(
        "http://127.0.0.1:{}/workspaces/ws-errors/api/v1/remote_write",
        free_port()
    );
    [
        "--upstream-url",
        &upstream,
        "--region",
        "us-east-1",
        "--role-arn",
        role_arn,
        "--external-id",
        external_id,
        "--sts-endpoint",
        sts,
    ]
    .map(String::from)
    .to_vec()
}

/// Runs the proxy and `check` with the same credentials, environment and flags, waits until
/// readiness carries `needle`, and checks every place the failure shows. Returns the
/// readiness text.
async fn failure_reads_well(
    keys: Option<(&str, &str)>,
    env: &[(&str, &str)],
    flags: &[String],
    needle: &str,
) -> String {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut serve = vec!["--listen", "127.0.0.1:0"];
    serve.extend_from_slice(&flags);
    let proxy = Proxy::spawn_with(keys, env, &serve);
    let ready = eventually(
        &format!("/-/ready to say {needle:?}"),
        Duration::from_secs(30),
        || async {
            let r = get(&proxy.url("/-/ready")).await;
            assert_eq!(r.status, 503, "{}", r.text());
            r.text().contains(needle).then(|| r.text())
        },
    )
    .await;
    assert_readable("/-/ready", &ready);

    let (_, body) = write_request(2);
    let answer = write(&proxy.url("/api/v1/write"), body).await;
    assert_eq!(answer.status, 503, "our failure: the sender retries");
    assert!(answer.text().contains(needle), "{}", answer.text());
    assert_readable("503 body", &answer.text());

    let logs = proxy.proc.log();
    let warning = logs
        .lines()
        .find(|l| l.contains("failed to obtain AWS credentials"))
        .unwrap_or_else(|| panic!("no warning logged:\n{logs}"));
    assert!(warning.contains(needle), "{warning}");
    for dump in DEBUG_DUMP {
        assert!(!logs.contains(dump), "log has `{dump}`:\n{logs}");
    }

    let (code, report) = tokio::task::block_in_place(|| run_check(keys, env, &flags));
    assert_eq!(code, Some(1), "{report}");
    let failed = report
        .lines()
        .find(|l| l.starts_with('✗'))
        .unwrap_or_else(|| panic!("no failed step:\n{report}"));
    assert!(failed.contains(needle), "{report}");
    for dump in DEBUG_DUMP {
        assert!(!report.contains(dump), "check prints `{dump}`:\n{report}");
    }
    ready
}

/// A loopback "instance metadata service" that forbids everything, as IMDS does when it is
/// switched off for the instance.
async fn forbidding_imds() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let reply = "HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n";
                    if stream.write_all(reply.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_credentials_and_an_unreachable_sts_read_as_one_line_with_a_fix() {
    let closed = format!("http://127.0.0.1:{}", free_port());
    let flags = serving_flags(
        &closed,
        "arn:aws:iam::111111111111:role/account_a_role",
        "ext-id",
    );

    // Nothing anywhere, and IMDS does not answer: every provider is named with its reason.
    let imds_down = [
        ("AWS_EC2_METADATA_DISABLED", "false"),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", closed.as_str()),
    ];
    let text = failure_reads_well(None, &imds_down, &flags, "IMDS: unreachable").await;
    for provider in [
        "env: AWS_ACCESS_KEY_ID not set",
        "profile: ",
        "IRSA web identity: AWS_WEB_IDENTITY_TOKEN_FILE not set",
        "ECS/Pod Identity: AWS_CONTAINER_CREDENTIALS_*_URI not set",
        "Connection refused",
    ] {
        assert!(text.contains(provider), "{provider:?} in {text}");
    }

    // IMDS answers 403: the chain stops there; the providers before it are named.
    let imds = forbidding_imds().await;
    let imds_forbidden = [
        ("AWS_EC2_METADATA_DISABLED", "false"),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.as_str()),
    ];
    let text = failure_reads_well(None, &imds_forbidden, &flags, "IMDS failed").await;
    assert!(text.contains("forbidden (HTTP 403)"), "{text}");
    assert!(text.contains("env, profile, IRSA web identity, ECS/Pod Identity had none"));

    // Base credentials exist, STS cannot be reached.
    let text = failure_reads_well(
        Some(("AKIDEXAMPLE", "secret")),
        &[],
        &flags,
        "STS unreachable",
    )
    .await;
    assert!(text.contains("Connection refused"), "{text}");
    assert!(text.contains("--sts-endpoint"), "{text}");

    // STS through an egress proxy that is down (the proxy is a closed loopback port: nothing
    // leaves the machine).
    let mut through_proxy = serving_flags(
        "https://sts.us-east-1.amazonaws.com",
        "arn:aws:iam::111111111111:role/account_a_role",
        "ext-id",
    );
    through_proxy.extend(["--egress-proxy".to_string(), closed.clone()]);
    let keys = Some(("AKIDEXAMPLE", "secret"));
    let text = failure_reads_well(keys, &[], &through_proxy, "through the egress proxy").await;
    assert!(text.contains("--egress-proxy / HTTPS_PROXY"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_refusals_quote_aws_code_and_message_and_say_what_to_change() {
    let peers = Peers::find();
    let moto = Moto::start(&peers, EXTERNAL_ID);
    let keys = (moto.access_key_id.as_str(), moto.secret_access_key.as_str());

    let wrong_id = serving_flags(&moto.url, &moto.role_arn, "not-the-external-id");
    let text = failure_reads_well(Some(keys), &[], &wrong_id, "AccessDenied").await;
    assert!(
        text.contains("STS refused sts:AssumeRole: AccessDenied: "),
        "{text}"
    );
    assert!(text.contains("--external-id"), "{text}");

    let flags = serving_flags(&moto.url, &moto.role_arn, EXTERNAL_ID);
    let wrong_secret = (keys.0, "not-the-secret-access-key");
    let text = failure_reads_well(Some(wrong_secret), &[], &flags, "SignatureDoesNotMatch").await;
    assert!(text.contains("AWS_SECRET_ACCESS_KEY"), "{text}");
    assert!(
        !text.contains("not-the-secret-access-key"),
        "the secret itself is never shown"
    );
}
