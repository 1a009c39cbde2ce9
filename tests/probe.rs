//! `amp-rw-proxy probe`, the health probe of the shell-less image, as the image's HEALTHCHECK
//! runs it: the real binary against a real serving proxy (the same binary, listening on
//! 0.0.0.0 as in a container, configured only through `AMP_RW_PROXY_LISTEN`), against a closed
//! port, and against a server that never answers.

use std::net::SocketAddr;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::accounts::{BASE_ACCESS_KEY, BASE_SECRET, EXTERNAL_ID, REGION, ROLE_ARN};
use support::amp::AmpStandIn;
use support::binary::{Running, spawn};
use support::sts::StsStandIn;

fn binary() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_amp-rw-proxy"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd
}

/// Runs `amp-rw-proxy probe ARGS` with `AMP_RW_PROXY_LISTEN` set as the image sets it.
fn probe(listen: &str, args: &[&str]) -> Output {
    binary()
        .env("AMP_RW_PROXY_LISTEN", listen)
        .arg("probe")
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit code 1 and exactly one line on stderr containing `want`, nothing on stdout.
fn assert_fails_with(o: &Output, want: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line, got: {err:?}");
    assert!(err.starts_with("amp-rw-proxy probe: "), "{err}");
    assert!(err.contains(want), "{want:?} not in {err:?}");
    assert!(stdout(o).is_empty(), "{}", stdout(o));
}

/// The proxy serving on 0.0.0.0 (as in the image) with base keys in the environment; returns
/// once it logs its port.
fn serve(sts: &str, amp: &str) -> Running {
    let mut cmd = binary();
    cmd.env("AWS_ACCESS_KEY_ID", BASE_ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", BASE_SECRET)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AMP_RW_PROXY_LISTEN", "0.0.0.0:0")
        .env("AMP_RW_PROXY_UPSTREAM_URL", amp)
        .env("AMP_RW_PROXY_REGION", REGION)
        .env("AMP_RW_PROXY_ROLE_ARN", ROLE_ARN)
        .env("AMP_RW_PROXY_EXTERNAL_ID", EXTERNAL_ID)
        .env("AMP_RW_PROXY_STS_ENDPOINT", sts)
        .env("AMP_RW_PROXY_DRAIN_DELAY", "3s");
    spawn(cmd)
}

/// Runs the probe until it exits `want` (the probe is the readiness signal here), up to 20 s.
fn probe_until(listen: &str, args: &[&str], want: i32, server: &Running) -> Output {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let o = probe(listen, args);
        if o.status.code() == Some(want) {
            return o;
        }
        assert!(
            Instant::now() < deadline,
            "probe {args:?} never exited {want}: {}\n{}",
            stderr(&o),
            server.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn probe_follows_a_real_proxy_through_not_ready_ready_and_draining() {
    let sts = StsStandIn::start().await;
    sts.set_deny(true);
    let amp = AmpStandIn::start().await;
    let server = serve(&sts.url(), &amp.url());
    let listen = format!("0.0.0.0:{}", server.addr.port());
    let loopback = format!("http://127.0.0.1:{}", server.addr.port());

    // Alive but not ready while STS refuses: liveness passes, readiness fails with the reason.
    let o = probe(&listen, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("{loopback}/-/healthy: 200 OK\n"));
    let o = tokio::task::block_in_place(|| {
        probe_until(&listen, &["--ready", "--timeout", "5s"], 1, &server)
    });
    assert_fails_with(
        &o,
        &format!("{loopback}/-/ready: 503 Service Unavailable: "),
    );
    assert!(
        !stderr(&o).contains(BASE_SECRET),
        "no secret in the probe's line"
    );

    // STS accepts: the probe turns 0 once credentials are held.
    sts.set_deny(false);
    let o = tokio::task::block_in_place(|| probe_until(&listen, &["--ready"], 0, &server));
    assert_eq!(stdout(&o), format!("{loopback}/-/ready: 200 OK\n"));
    // --url names any path on the proxy.
    let o = probe("unused", &["--url", &format!("{loopback}/metrics")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("{loopback}/metrics: 200 OK\n"));
    let o = probe("unused", &["--url", &format!("{loopback}/no-such-path")]);
    assert_fails_with(&o, "/no-such-path: 404 Not Found");

    // SIGTERM: readiness fails at once (the drain delay), liveness still passes.
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let o = tokio::task::block_in_place(|| probe_until(&listen, &["--ready"], 1, &server));
    assert_fails_with(&o, "503 Service Unavailable: not ready: shutting down");
    let o = probe(&listen, &[]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "alive while draining: {}",
        stderr(&o)
    );
}

#[test]
fn probe_of_a_closed_port_fails_at_once_with_one_line() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let started = Instant::now();
    let o = probe(&format!("0.0.0.0:{port}"), &["--ready"]);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_fails_with(
        &o,
        &format!("http://127.0.0.1:{port}/-/ready: cannot connect to 127.0.0.1:{port}: "),
    );
    assert!(stderr(&o).contains("refused"), "{}", stderr(&o));
}

#[test]
fn probe_of_a_server_that_never_answers_gives_up_after_its_timeout() {
    // Accepts connections (the kernel's backlog) but never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let started = Instant::now();
    let o = probe(&addr.to_string(), &["--timeout", "300ms"]);
    let took = started.elapsed();
    assert_fails_with(
        &o,
        &format!("http://{addr}/-/healthy: no answer within 300ms"),
    );
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "{took:?}"
    );
    drop(listener);
}

#[test]
fn probe_argument_mistakes_are_one_line_and_exit_1_or_64() {
    let o = probe("not-an-address", &[]);
    assert_fails_with(&o, "--listen \"not-an-address\"");
    let o = probe("127.0.0.1:9", &["--url", "https://127.0.0.1:9/-/ready"]);
    assert_fails_with(&o, "only http://");
    // A flag the probe does not have is a usage error, as everywhere in the binary.
    let o = probe("127.0.0.1:9", &["--no-such-flag"]);
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
}
