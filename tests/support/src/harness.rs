//! Starting and talking to the third-party peers of the end-to-end suite: moto (STS), the
//! botocore-based AMP stand-in, Prometheus receivers and senders, and the proxy binary.
//!
//! Peers are found through `AMP_E2E_PROMETHEUS`, `AMP_E2E_PROMETHEUS3` and `AMP_E2E_PYTHON`, or
//! the `target/peers/env` file `tests/peers/install.sh` writes. A missing peer fails the test
//! with the command that installs it — never a silent skip.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::accounts::WORKSPACE_PATH;
use crate::client::{client, get};

const STARTUP: Duration = Duration::from_secs(60);

/// The repository's root (this crate lives in `tests/support`).
pub fn repo_root() -> PathBuf {
    let support = Path::new(env!("CARGO_MANIFEST_DIR"));
    support.ancestors().nth(2).unwrap().to_path_buf()
}

/// The proxy binary Cargo built for the running test (it builds a package's binaries before its
/// integration tests): `CARGO_BIN_EXE_amp-rw-proxy` if Cargo set it when running the test, else
/// `amp-rw-proxy` in the directory above the test executable's `deps/`, where Cargo puts it.
fn proxy_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("CARGO_BIN_EXE_amp-rw-proxy") {
        return path.into();
    }
    let mut dir = std::env::current_exe().expect("the test executable's path");
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let binary = dir.join(format!("amp-rw-proxy{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.is_file(),
        "no proxy binary at {} (run the tests with cargo test)",
        binary.display()
    );
    binary
}

/// Paths of the peer programs.
pub struct Peers {
    pub prometheus: PathBuf,
    pub prometheus3: PathBuf,
    pub python: PathBuf,
}

impl Peers {
    pub fn find() -> Self {
        let file: HashMap<String, String> =
            std::fs::read_to_string(repo_root().join("target/peers/env"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| {
                    l.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                })
                .collect();
        let lookup = |key: &str| {
            let path = std::env::var(key)
                .ok()
                .or_else(|| file.get(key).cloned())
                .map(PathBuf::from);
            match path {
                Some(p) if p.is_file() => p,
                _ => panic!(
                    "end-to-end peer {key} not found. Install the peers with `bash tests/peers/install.sh` \
                     (Debian prometheus, Prometheus 3.x from sid, a venv with moto and botocore), \
                     or set {key}."
                ),
            }
        };
        Self {
            prometheus: lookup("AMP_E2E_PROMETHEUS"),
            prometheus3: lookup("AMP_E2E_PROMETHEUS3"),
            python: lookup("AMP_E2E_PYTHON"),
        }
    }
}

/// A child process whose stdout and stderr are collected; killed when dropped.
pub struct Proc {
    pub name: &'static str,
    child: Child,
    log: Arc<Mutex<String>>,
    stdout_lines: mpsc::Receiver<String>,
}

impl Proc {
    pub fn spawn(name: &'static str, mut cmd: Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, stdout_lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let (log1, log2) = (log.clone(), log.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                log1.lock().unwrap().push_str(&format!("{line}\n"));
                let _ = tx.send(line);
            }
        });
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                log2.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        Self {
            name,
            child,
            log,
            stdout_lines,
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Exit status if the process has ended.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// The first stdout line that parses as JSON (peers announce their port this way).
    pub fn announcement(&self) -> Value {
        let deadline = Instant::now() + STARTUP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout_lines.recv_timeout(left) {
                Ok(line) => {
                    if let Ok(v) = serde_json::from_str::<Value>(&line) {
                        return v;
                    }
                }
                Err(_) => panic!("{} announced nothing; log:\n{}", self.name, self.log()),
            }
        }
    }

    /// Waits until a log line contains `needle`; returns that line.
    pub fn wait_for_log(&self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(line) = self.log().lines().find(|l| l.contains(needle)) {
                return line.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "{}: no log line with {needle:?}; log:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then wait (SIGKILL after 30 s).
    pub fn terminate(&mut self) -> ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return self.child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("----- {} log -----\n{}", self.name, self.log());
        }
    }
}

/// A loopback port nobody listens on right now, for peers that cannot report a port they bound
/// themselves (Prometheus). Bound and released at once; the race with other processes is
/// negligible on a test machine.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

// ---------------------------------------------------------------------------------------------
// moto

pub struct Moto {
    /// Kept so moto lives as long as this value.
    _proc: Proc,
    pub url: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub role_arn: String,
}

impl Moto {
    pub fn start(peers: &Peers, external_id: &str) -> Self {
        let mut cmd = Command::new(&peers.python);
        cmd.arg(repo_root().join("tests/peers/moto_sts.py"))
            .args(["--external-id", external_id]);
        let proc = Proc::spawn("moto", cmd);
        let a = proc.announcement();
        let s = |k: &str| a[k].as_str().unwrap().to_string();
        Self {
            url: s("url"),
            access_key_id: s("access_key_id"),
            secret_access_key: s("secret_access_key"),
            role_arn: s("role_arn"),
            _proc: proc,
        }
    }

    /// Temporary credentials moto minted by AssumeRole: (access key, session token).
    pub async fn assumed_roles(&self) -> Vec<(String, String)> {
        let data = get(&format!("{}/moto-api/data.json", self.url)).await;
        let v: Value = serde_json::from_slice(&data.body).unwrap();
        v["sts"]["AssumedRole"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|r| {
                (
                    r["access_key_id"].as_str().unwrap().to_string(),
                    r["session_token"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Prometheus

pub struct Prometheus {
    pub proc: Proc,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

pub enum Role<'a> {
    /// Remote-write receiver; `rw2` also accepts io.prometheus.write.v2.Request.
    Receiver { rw2: bool },
    /// Scrapes itself and `extra_targets` every second, remote-writes to `url`.
    Sender {
        url: &'a str,
        extra_targets: &'a [SocketAddr],
        rw2: bool,
    },
    /// As `Sender` (RW 1.0), with these YAML lines added to its `remote_write` entry (e.g.
    /// `authorization:` / `basic_auth:` / `tls_config:`), each indented by four spaces.
    SenderWith {
        url: &'a str,
        extra_targets: &'a [SocketAddr],
        remote_write_yaml: &'a str,
    },
    /// Scrapes `targets` as job `amp-rw-proxy` every second and evaluates `rule_file` every
    /// second (the monitoring rules against a real proxy); sends nothing.
    Monitor {
        targets: &'a [SocketAddr],
        rule_file: &'a Path,
    },
}

impl Prometheus {
    pub fn start(binary: &Path, role: Role<'_>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let config = match &role {
            Role::Receiver { .. } => "global:\n  scrape_interval: 15s\n".to_string(),
            Role::Monitor { targets, rule_file } => {
                let targets: Vec<String> = targets.iter().map(|a| format!("'{a}'")).collect();
                format!(
                    "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                     rule_files: ['{}']\n\
                     scrape_configs:\n  - job_name: amp-rw-proxy\n    static_configs: [{{targets: [{}]}}]\n",
                    rule_file.display(),
                    targets.join(", ")
                )
            }
            Role::Sender { .. } | Role::SenderWith { .. } => {
                let (url, extra_targets, rw2, more) = match &role {
                    Role::Sender {
                        url,
                        extra_targets,
                        rw2,
                    } => (*url, *extra_targets, *rw2, ""),
                    Role::SenderWith {
                        url,
                        extra_targets,
                        remote_write_yaml,
                    } => (*url, *extra_targets, false, *remote_write_yaml),
                    Role::Receiver { .. } | Role::Monitor { .. } => unreachable!(),
                };
                let extra: Vec<String> = extra_targets.iter().map(|a| format!("'{a}'")).collect();
                let mut message = if rw2 {
                    "\n    protobuf_message: io.prometheus.write.v2.Request".to_string()
                } else {
                    String::new()
                };
                for line in more.lines() {
                    message.push_str("\n    ");
                    message.push_str(line);
                }
                format!(
                    "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                     scrape_configs:\n  - job_name: sender\n    static_configs: [{{targets: ['{addr}']}}]\n  \
                     - job_name: amp-rw-proxy\n    static_configs: [{{targets: [{}]}}]\n\
                     remote_write:\n  - url: {url}{message}\n    queue_config:\n      batch_send_deadline: 1s\n      \
                     min_backoff: 50ms\n      max_backoff: 1s\n",
                    extra.join(", ")
                )
            }
        };
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let mut cmd = Command::new(binary);
        cmd.arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--log.level=info");
        let name = match role {
            Role::Receiver { rw2 } => {
                cmd.arg("--web.enable-remote-write-receiver");
                if rw2 {
                    cmd.arg(
                        "--web.remote-write-receiver.accepted-protobuf-messages=io.prometheus.write.v2.Request",
                    );
                }
                "prometheus-receiver"
            }
            Role::Sender { .. } | Role::SenderWith { .. } => "prometheus-sender",
            Role::Monitor { .. } => "prometheus-monitor",
        };
        let proc = Proc::spawn(name, cmd);
        Self {
            proc,
            addr,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + STARTUP;
        loop {
            if let Ok(Ok(a)) =
                tokio::time::timeout(Duration::from_secs(2), try_get(&self.url("/-/ready"))).await
            {
                if a == 200 {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} never ready:\n{}",
                self.proc.name,
                self.proc.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Instant query; `(labels, value)` per series.
    pub async fn query(
        &self,
        promql: &str,
        at: Option<f64>,
    ) -> Vec<(HashMap<String, String>, f64)> {
        let mut url = format!(
            "{}?query={}",
            self.url("/api/v1/query"),
            percent_encode(promql)
        );
        if let Some(t) = at {
            url.push_str(&format!("&time={t:.3}"));
        }
        let a = get(&url).await;
        let v: Value =
            serde_json::from_slice(&a.body).unwrap_or_else(|_| panic!("bad answer {}", a.text()));
        assert_eq!(v["status"], "success", "{promql}: {}", a.text());
        v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let labels = r["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect();
                let value = r["value"][1].as_str().unwrap().parse().unwrap();
                (labels, value)
            })
            .collect()
    }

    /// Samples per series of `selector` over the `window_secs` before `at` (a range-vector
    /// query: raw samples, metric names kept). Keyed by the series' sorted label set.
    pub async fn samples_per_series(
        &self,
        selector: &str,
        window_secs: u64,
        at: f64,
    ) -> HashMap<String, usize> {
        let q = format!("{selector}[{window_secs}s]");
        let url = format!(
            "{}?query={}&time={at:.3}",
            self.url("/api/v1/query"),
            percent_encode(&q)
        );
        let a = get(&url).await;
        let v: Value =
            serde_json::from_slice(&a.body).unwrap_or_else(|_| panic!("bad answer {}", a.text()));
        assert_eq!(v["status"], "success", "{q}: {}", a.text());
        v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let mut labels: Vec<String> = r["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap()))
                    .collect();
                labels.sort();
                (labels.join(","), r["values"].as_array().map_or(0, Vec::len))
            })
            .collect()
    }

    /// A GET of this Prometheus's HTTP API (`path` with its query string), as JSON.
    pub async fn api(&self, path: &str) -> Value {
        let a = get(&self.url(path)).await;
        serde_json::from_slice(&a.body).unwrap_or_else(|_| panic!("bad answer {}", a.text()))
    }

    /// Sum over all series of `name` in this Prometheus's own /metrics.
    pub async fn own_metric(&self, name: &str) -> f64 {
        metric_sum(&get(&self.url("/metrics")).await.text(), name)
    }
}

async fn try_get(url: &str) -> Result<u16, String> {
    let req = http::Request::get(url)
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    client()
        .request(req)
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}

/// Sum of the samples of `name` (any labels) in Prometheus/OpenMetrics text.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// AMP stand-in

pub struct StandIn {
    pub proc: Proc,
    pub port: u16,
}

impl StandIn {
    pub fn start(
        peers: &Peers,
        moto: &Moto,
        receiver: &Prometheus,
        port: u16,
        wrong_secret: bool,
    ) -> Self {
        let mut cmd = Command::new(&peers.python);
        cmd.arg(repo_root().join("tests/peers/amp_standin.py"))
            .args([
                "--moto",
                &moto.url,
                "--receiver",
                &receiver.url(""),
                "--port",
                &port.to_string(),
            ]);
        if wrong_secret {
            cmd.arg("--wrong-secret");
        }
        let proc = Proc::spawn("amp-standin", cmd);
        let port = proc.announcement()["port"].as_u64().unwrap() as u16;
        Self { proc, port }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}{}", self.port, WORKSPACE_PATH)
    }

    pub async fn stats(&self) -> Value {
        let a = get(&format!("http://127.0.0.1:{}/-/stats", self.port)).await;
        serde_json::from_slice(&a.body).unwrap()
    }
}

// ---------------------------------------------------------------------------------------------
// The proxy binary

pub struct Proxy {
    pub proc: Proc,
    pub addr: SocketAddr,
}

impl Proxy {
    /// Runs the real binary with B's base credentials in the environment (the SDK default chain)
    /// and `listen` (`127.0.0.1:0` for a fresh port).
    pub fn start(moto: &Moto, standin: &StandIn, external_id: &str, listen: &str) -> Self {
        Self::start_with(moto, standin, external_id, listen, &[])
    }

    /// [`Proxy::start`] with extra flags.
    pub fn start_with(
        moto: &Moto,
        standin: &StandIn,
        external_id: &str,
        listen: &str,
        extra: &[&str],
    ) -> Self {
        let url = standin.url();
        let mut args = vec![
            "--listen",
            listen,
            "--upstream-url",
            &url,
            "--region",
            "us-east-1",
            "--role-arn",
            &moto.role_arn,
            "--external-id",
            external_id,
            "--sts-endpoint",
            &moto.url,
        ];
        args.extend_from_slice(extra);
        Self::spawn(
            (&moto.access_key_id, &moto.secret_access_key),
            &[("AMP_RW_PROXY_DRAIN_DELAY", "100ms")],
            &args,
        )
    }

    /// Runs `amp-rw-proxy check` with the serving flags [`Proxy::start`] would use; returns the
    /// exit code and the report.
    pub fn check(moto: &Moto, standin: &StandIn, external_id: &str) -> (Option<i32>, String) {
        let url = standin.url();
        let out = hermetic_binary(Some((&moto.access_key_id, &moto.secret_access_key)))
            .args(["check", "--upstream-url", &url, "--region", "us-east-1"])
            .args([
                "--role-arn",
                &moto.role_arn,
                "--external-id",
                external_id,
                "--sts-endpoint",
                &moto.url,
            ])
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    }

    /// Runs the binary with static base credentials from the environment (no STS), the given
    /// extra environment and flags.
    pub fn spawn(keys: (&str, &str), env: &[(&str, &str)], args: &[&str]) -> Self {
        Self::spawn_with(Some(keys), env, args)
    }

    /// [`Proxy::spawn`] with `keys` as the only base credentials, or with none at all.
    pub fn spawn_with(keys: Option<(&str, &str)>, env: &[(&str, &str)], args: &[&str]) -> Self {
        let mut cmd = hermetic_binary(keys);
        cmd.env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.args(args);
        let proc = Proc::spawn("amp-rw-proxy", cmd);
        let line = proc.wait_for_log("amp-rw-proxy listening", STARTUP);
        let addr = line
            .split("listen=")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line}"));
        Self { proc, addr }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + STARTUP;
        while get(&self.url("/-/ready")).await.status != 200 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "proxy never ready:\n{}",
                self.proc.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The proxy binary with a hermetic environment: the only AWS credentials are `keys` in the
/// environment (the SDK's default chain), no profile files, no instance metadata.
fn hermetic_binary(keys: Option<(&str, &str)>) -> Command {
    let home = tempfile::tempdir().unwrap().keep();
    std::fs::write(home.join("config"), "").unwrap();
    std::fs::write(home.join("credentials"), "").unwrap();
    let mut cmd = Command::new(proxy_binary());
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("AWS_CONFIG_FILE", home.join("config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true");
    if let Some((id, secret)) = keys {
        cmd.env("AWS_ACCESS_KEY_ID", id)
            .env("AWS_SECRET_ACCESS_KEY", secret);
    }
    cmd
}

/// Runs `amp-rw-proxy check` with `keys` (or no base credentials), extra environment and
/// flags; returns the exit code and the report (stdout and stderr).
pub fn run_check(
    keys: Option<(&str, &str)>,
    env: &[(&str, &str)],
    args: &[&str],
) -> (Option<i32>, String) {
    let mut cmd = hermetic_binary(keys);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.arg("check").args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// Polls `check` every 250 ms until it returns `Some`, failing after `limit` with `what`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
