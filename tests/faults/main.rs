//! Fault runs: a real Prometheus sender writes through the proxy to a real receiver, with a fault
//! stand-in between proxy and receiver. Proves that nothing the sender gave us is lost unless
//! the upstream declared it invalid — through 500s, an outage, a 429 storm and hangs; that
//! SIGTERM under load answers every accepted request; and that 10× overload keeps memory bounded.
//!
//! One test running the scenarios in sequence (they would fight over the two CPUs otherwise),
//! printing a summary table that is also written to `target/fault-runs.md`.
//! `AMP_FAULTS_QUICK=1` shortens every phase sixfold for local iteration.
//! (The STS-outage scenario runs in process, in `tests/resilience.rs`.)

mod fault;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fault::{FaultStandIn, Mode};
use http_body_util::Full;
use support::accounts::{BASE_ACCESS_KEY, BASE_SECRET, EXTERNAL_ID, ROLE_ARN};
use support::client::{client, get, prometheus_post};
use support::harness::{
    Peers, Prometheus, Proxy, Role, eventually, metric_sum, repo_root, unix_now,
};
use support::sts::StsStandIn;

const DUMMY_KEYS: (&str, &str) = ("AKIAFAULTRUNS0000000", "fault-runs-secret");

struct Row {
    scenario: String,
    requests: u64,
    sent: u64,
    received: u64,
    lost: i64,
    note: String,
}

fn scale(d: Duration) -> Duration {
    if std::env::var_os("AMP_FAULTS_QUICK").is_some() {
        d / 6
    } else {
        d
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_runs() {
    let peers = Peers::find();
    let mut rows = Vec::new();
    rows.push(upstream_faults(&peers).await);
    rows.push(sts_outage(&peers).await);
    rows.push(sigterm_under_load().await);
    rows.push(overload(&peers).await);

    let mut table = String::from(
        "| scenario | requests | samples sent | samples received | lost | notes |\n|---|---:|---:|---:|---:|---|\n",
    );
    for r in &rows {
        table.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            r.scenario, r.requests, r.sent, r.received, r.lost, r.note
        ));
    }
    println!("\n{table}");
    let out = repo_root().join("target/fault-runs.md");
    std::fs::write(&out, &table).unwrap();
    for r in &rows {
        assert_eq!(r.lost, 0, "{} lost samples", r.scenario);
    }
}

/// 60 s of intermittent 500s, a 30 s outage (connections refused and cut), a 30 s 429 storm and
/// 10 s of hanging: afterwards the receiver holds every sample the sender scraped in the window.
async fn upstream_faults(peers: &Peers) -> Row {
    let receiver = Prometheus::start(&peers.prometheus, Role::Receiver { rw2: false });
    receiver.wait_ready().await;
    let faults = FaultStandIn::start(receiver.url("")).await;
    let proxy = Proxy::spawn(
        DUMMY_KEYS,
        &[],
        &[
            "--listen",
            "127.0.0.1:0",
            "--upstream-url",
            &faults.url(),
            "--region",
            "us-east-1",
            "--upstream-timeout",
            "5s",
        ],
    );
    proxy.wait_ready().await;
    let url = proxy.url("/api/v1/write");
    let sender = Prometheus::start(
        &peers.prometheus,
        Role::Sender {
            url: &url,
            extra_targets: &[proxy.addr],
            rw2: false,
        },
    );
    sender.wait_ready().await;
    eventually(
        "first samples in the receiver",
        Duration::from_secs(90),
        || async { (!receiver.query(r#"up{job="sender"}"#, None).await.is_empty()).then_some(()) },
    )
    .await;

    let t0 = unix_now();
    for (mode, d) in [
        (Mode::Intermittent500(0.5), Duration::from_secs(60)),
        (Mode::Refuse, Duration::from_secs(30)),
        (Mode::Storm429, Duration::from_secs(30)),
        (Mode::Hang, Duration::from_secs(10)),
    ] {
        faults.set(mode);
        tokio::time::sleep(scale(d)).await;
    }
    faults.set(Mode::Pass);
    let t_end = unix_now();
    let window = (t_end - t0).ceil() as u64 + 2;
    let selector = r#"{job=~"sender|amp-rw-proxy"}"#;
    let want = sender.samples_per_series(selector, window, t_end).await;
    let sent: usize = want.values().sum();
    assert!(sent > 1000, "the sender scraped {sent} samples");
    // Catch-up: the sender replays its backlog from the WAL.
    let got = eventually(
        "the receiver to catch up",
        Duration::from_secs(180),
        || async {
            let got = receiver.samples_per_series(selector, window, t_end).await;
            (got == want).then_some(got)
        },
    )
    .await;
    let received: usize = got.values().sum();
    let proxy_metrics = get(&proxy.url("/metrics")).await.text();
    let requests = metric_sum(&proxy_metrics, "amp_rw_proxy_requests_total") as u64;
    for counter in [
        "prometheus_remote_storage_samples_failed_total",
        "prometheus_remote_storage_samples_dropped_total",
    ] {
        assert_eq!(sender.own_metric(counter).await, 0.0, "{counter}");
    }
    assert!(faults.failed.load(Ordering::Relaxed) > 0);
    let retries = metric_sum(&proxy_metrics, "amp_rw_proxy_upstream_retries_total");
    Row {
        scenario: format!(
            "500s {}s, outage {}s, 429 storm {}s, hang {}s",
            scale(Duration::from_secs(60)).as_secs(),
            scale(Duration::from_secs(30)).as_secs(),
            scale(Duration::from_secs(30)).as_secs(),
            scale(Duration::from_secs(10)).as_secs()
        ),
        requests,
        sent: sent as u64,
        received: received as u64,
        lost: sent as i64 - received as i64,
        note: format!(
            "{} series compared one by one; {} upstream failures injected; {retries} proxy retries; sender failed/dropped 0",
            want.len(),
            faults.failed.load(Ordering::Relaxed)
        ),
    }
}

/// STS down for longer than one refresh attempt while the credentials are still valid: not a
/// single request fails. Credentials here live 40 s (refresh due after 12.5 s, usable for 25 s),
/// from the in-process STS stand-in, since STS itself issues at least 15 minutes.
async fn sts_outage(peers: &Peers) -> Row {
    let sts = StsStandIn::start().await;
    sts.set_lifetime(Duration::from_secs(40));
    let receiver = Prometheus::start(&peers.prometheus, Role::Receiver { rw2: false });
    receiver.wait_ready().await;
    let upstream = receiver.url("/api/v1/write");
    let sts_url = sts.url();
    let proxy = Proxy::spawn(
        (BASE_ACCESS_KEY, BASE_SECRET),
        &[],
        &[
            "--listen",
            "127.0.0.1:0",
            "--upstream-url",
            &upstream,
            "--region",
            "us-east-1",
            "--role-arn",
            ROLE_ARN,
            "--external-id",
            EXTERNAL_ID,
            "--sts-endpoint",
            &sts_url,
        ],
    );
    proxy.wait_ready().await;
    let fetched_at = Instant::now();
    let url = proxy.url("/api/v1/write");
    let sender = Prometheus::start(
        &peers.prometheus,
        Role::Sender {
            url: &url,
            extra_targets: &[proxy.addr],
            rw2: false,
        },
    );
    sender.wait_ready().await;
    let t0 = unix_now();
    // Down from well before the refresh is due until several attempts have failed.
    sts.set_outage(true);
    let metrics = || async { get(&proxy.url("/metrics")).await.text() };
    // Two of the proxy's refresh attempts (each with the SDK's own retries) must fail.
    eventually(
        "two failed refresh attempts during the outage",
        Duration::from_secs(30),
        || async {
            let m = metrics().await;
            (metric_sum(
                &m,
                "amp_rw_proxy_credential_refreshes_total{route=\"default\",result=\"failure\"}",
            ) >= 2.0)
                .then_some(())
        },
    )
    .await;
    let down_for = fetched_at.elapsed();
    sts.set_outage(false);
    eventually(
        "a successful refresh after the outage",
        Duration::from_secs(30),
        || async {
            let m = metrics().await;
            (m.contains(r#"credential_refreshes_total{route="default",result="success"} 2"#))
                .then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let t_end = unix_now();
    let window = (t_end - t0).ceil() as u64 + 2;
    let selector = r#"{job=~"sender|amp-rw-proxy"}"#;
    let want = sender.samples_per_series(selector, window, t_end).await;
    let sent: usize = want.values().sum();
    let got = eventually(
        "the receiver to hold every sample",
        Duration::from_secs(60),
        || async {
            let got = receiver.samples_per_series(selector, window, t_end).await;
            (got == want).then_some(got)
        },
    )
    .await;
    let received: usize = got.values().sum();
    let m = metrics().await;
    let failures: Vec<&str> = m
        .lines()
        .filter(|l| l.starts_with("amp_rw_proxy_requests_total{") && l.contains("write"))
        .filter(|l| !l.contains(r#"code="204""#) && !l.contains(r#"code="200""#))
        .collect();
    assert!(
        failures.is_empty(),
        "failed requests during the STS outage: {failures:?}"
    );
    assert!(m.contains(r#"credential_refreshes_total{route="default",result="failure"}"#));
    for counter in [
        "prometheus_remote_storage_samples_failed_total",
        "prometheus_remote_storage_samples_retried_total",
        "prometheus_remote_storage_samples_dropped_total",
    ] {
        assert_eq!(sender.own_metric(counter).await, 0.0, "{counter}");
    }
    let requests = metric_sum(&m, "amp_rw_proxy_requests_total") as u64;
    Row {
        scenario: "STS down across a credential refresh".into(),
        requests,
        sent: sent as u64,
        received: received as u64,
        lost: sent as i64 - received as i64,
        note: format!(
            "STS refused {} calls (2 refresh attempts) until {:.0}s into a 40s credential lifetime; 0 failed, 0 retried requests",
            sts.calls().saturating_sub(2),
            down_for.as_secs_f64()
        ),
    }
}

#[derive(Default)]
struct Outcomes {
    answered: HashMap<u16, u64>,
    refused: u64,
    /// Requests sent before the signal or early in the drain delay that got no answer: must
    /// stay empty.
    broken_before_signal: Vec<String>,
    /// Requests sent after the signal on a connection the kernel queued just as the listener
    /// closed (an inherent race; a sender retries them like a refused connection).
    reset_after_signal: u64,
}

/// SIGTERM during a steady load of 1 MB batches: every request the proxy accepted is answered
/// (no connection reset), new connections are refused after the drain delay, exit 0 in time.
async fn sigterm_under_load() -> Row {
    let sink = FaultStandIn::start("http://127.0.0.1:9".into()).await;
    sink.set(Mode::Sink(Duration::from_millis(100)));
    let mut proxy = Proxy::spawn(
        DUMMY_KEYS,
        &[],
        &[
            "--listen",
            "127.0.0.1:0",
            "--upstream-url",
            &sink.url(),
            "--region",
            "us-east-1",
            "--drain-delay",
            "1s",
            "--shutdown-grace",
            "10s",
        ],
    );
    proxy.wait_ready().await;
    let body = Bytes::from((0..1 << 20).map(|_| fastrand::u8(..)).collect::<Vec<u8>>());
    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let client = client();
    let url = proxy.url("/api/v1/write");
    // Set to the signal's time; requests sent before it, or in the first half of the drain delay
    // (the listener is still open then), must all be answered.
    let signal_sent: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (client, url, body, outcomes, signal_sent) = (
            client.clone(),
            url.clone(),
            body.clone(),
            outcomes.clone(),
            signal_sent.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let req = prometheus_post(&url).body(Full::new(body.clone())).unwrap();
                let sent_after_signal = signal_sent
                    .lock()
                    .unwrap()
                    .is_some_and(|at| at.elapsed() > Duration::from_millis(500));
                match client.request(req).await {
                    Ok(resp) => {
                        let code = resp.status().as_u16();
                        let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
                        *outcomes.lock().unwrap().answered.entry(code).or_default() += 1;
                    }
                    Err(e) if e.is_connect() => {
                        outcomes.lock().unwrap().refused += 1;
                        return;
                    }
                    Err(e) => {
                        let mut o = outcomes.lock().unwrap();
                        if sent_after_signal {
                            o.reset_after_signal += 1;
                        } else {
                            o.broken_before_signal.push(format!("{e:?}"));
                        }
                        return;
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let signalled = Instant::now();
    *signal_sent.lock().unwrap() = Some(signalled);
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &proxy.proc.pid().to_string()])
        .status();
    for t in tasks {
        t.await.unwrap();
    }
    let status = loop {
        if let Some(s) = proxy.proc.try_wait() {
            break s;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(15),
            "no exit within the grace period"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = signalled.elapsed();
    let o = outcomes.lock().unwrap();
    assert!(
        o.broken_before_signal.is_empty(),
        "requests sent before the signal (or early in the drain delay) without an answer: {:?}",
        o.broken_before_signal
    );
    assert_eq!(status.code(), Some(0));
    assert!(took < Duration::from_secs(10), "exit after {took:?}");
    let ok = o.answered.get(&204).copied().unwrap_or(0);
    let total: u64 = o.answered.values().sum();
    assert_eq!(
        ok, total,
        "every accepted request answered 204: {:?}",
        o.answered
    );
    assert!(ok > 20);
    Row {
        scenario: "SIGTERM under 16×1 MB load".into(),
        requests: total,
        sent: 0,
        received: 0,
        lost: 0,
        note: format!(
            "{ok} answered 204, none unanswered that were sent before the signal or in the first half of the drain delay; {} refused and {} reset at the listener's close; exit 0 after {:.1}s",
            o.refused,
            o.reset_after_signal,
            took.as_secs_f64()
        ),
    }
}

use support::wire::{len_field as field, varint};

/// Encoded samples of the overload bodies, made once: 10 blocks of 8000 samples with random
/// values (so snappy cannot shrink them) at timestamps just before the run.
struct SampleBlocks {
    blocks: Vec<Vec<u8>>,
    per_block: usize,
}

impl SampleBlocks {
    fn new() -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let per_block = 8000;
        let blocks = (0..10)
            .map(|_| {
                let mut out = Vec::new();
                for i in 0..per_block as u64 {
                    let mut sample = vec![0x09];
                    sample.extend_from_slice(&fastrand::f64().to_le_bytes());
                    sample.push(0x10);
                    varint(now - 10_000 + i, &mut sample);
                    field(2, &sample, &mut out);
                }
                out
            })
            .collect();
        Self { blocks, per_block }
    }

    /// A ~1 MB remote-write body: 10 series unique to request `id` carrying the sample blocks,
    /// plus a marker series `overload_marker{req="<id>"}`. Returns the body and its sample count.
    fn body(&self, id: u64, now_ms: u64) -> (Bytes, usize) {
        let mut req = Vec::new();
        let labels = |name: &str, out: &mut Vec<u8>| {
            for (k, v) in [("__name__", name.to_string()), ("req", id.to_string())] {
                let mut label = Vec::new();
                field(1, k.as_bytes(), &mut label);
                field(1 + 1, v.as_bytes(), &mut label);
                field(1, &label, out);
            }
        };
        for (s, block) in self.blocks.iter().enumerate() {
            let mut ts = Vec::new();
            labels(&format!("overload_series_{s}"), &mut ts);
            ts.extend_from_slice(block);
            field(1, &ts, &mut req);
        }
        let mut marker = Vec::new();
        labels("overload_marker", &mut marker);
        let mut sample = vec![0x09];
        sample.extend_from_slice(&1f64.to_le_bytes());
        sample.push(0x10);
        varint(now_ms, &mut sample);
        field(2, &sample, &mut marker);
        field(1, &marker, &mut req);
        let samples = self.blocks.len() * self.per_block + 1;
        (
            Bytes::from(snap::raw::Encoder::new().compress_vec(&req).unwrap()),
            samples,
        )
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// RSS bound for the overload run: the in-flight byte budget (8 MiB) plus the process's own
/// baseline and per-connection buffers, with room for the debug build.
const OVERLOAD_RSS_BOUND_MIB: u64 = 64;

/// 40 senders of 1 MB bodies against a proxy admitting 4 at a time (10× overload): excess gets
/// 503 at once, RSS stays bounded, and every request that got 2xx is in the receiver.
async fn overload(peers: &Peers) -> Row {
    let receiver = Prometheus::start(&peers.prometheus, Role::Receiver { rw2: false });
    receiver.wait_ready().await;
    let upstream = FaultStandIn::start(receiver.url("")).await;
    upstream.set(Mode::SlowPass(Duration::from_millis(300)));
    let proxy = Proxy::spawn(
        DUMMY_KEYS,
        &[],
        &[
            "--listen",
            "127.0.0.1:0",
            "--upstream-url",
            &upstream.url(),
            "--region",
            "us-east-1",
            "--max-in-flight-requests",
            "4",
            "--max-in-flight-bytes",
            "8MiB",
            "--max-body-size",
            "2MiB",
        ],
    );
    proxy.wait_ready().await;
    let pid = proxy.proc.pid();
    let baseline_kib = rss_kib(pid);
    let next_id = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(Mutex::new(BTreeSet::new()));
    let codes = Arc::new(Mutex::new(HashMap::<u16, u64>::new()));
    let samples_accepted = Arc::new(AtomicU64::new(0));
    let client = client();
    let url = proxy.url("/api/v1/write");
    let run_for = scale(Duration::from_secs(12));
    let blocks = Arc::new(SampleBlocks::new());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let (client, url, next_id, accepted, codes, samples_accepted, blocks) = (
            client.clone(),
            url.clone(),
            next_id.clone(),
            accepted.clone(),
            codes.clone(),
            samples_accepted.clone(),
            blocks.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while started.elapsed() < run_for {
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                let now_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as u64;
                let (body, samples) = blocks.body(id, now_ms);
                assert!(
                    (800_000..1_600_000).contains(&body.len()),
                    "{} byte body",
                    body.len()
                );
                let req = prometheus_post(&url).body(Full::new(body)).unwrap();
                let Ok(resp) = client.request(req).await else {
                    continue;
                };
                let code = resp.status().as_u16();
                let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
                *codes.lock().unwrap().entry(code).or_default() += 1;
                if (200..300).contains(&code) {
                    accepted.lock().unwrap().insert(id);
                    samples_accepted.fetch_add(samples as u64, Ordering::Relaxed);
                } else {
                    // A sender backs off on 503 (Retry-After: 1); a short pause keeps 10× pressure.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    let mut peak_kib = 0;
    while started.elapsed() < run_for {
        peak_kib = peak_kib.max(rss_kib(pid));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    peak_kib = peak_kib.max(rss_kib(pid));
    let codes = codes.lock().unwrap().clone();
    let accepted = accepted.lock().unwrap().clone();
    assert!(
        codes.get(&503).copied().unwrap_or(0) > 0,
        "excess got 503: {codes:?}"
    );
    assert!(
        codes.keys().all(|c| *c == 204 || *c == 503 || *c == 200),
        "{codes:?}"
    );
    assert!(!accepted.is_empty());
    assert!(
        peak_kib < OVERLOAD_RSS_BOUND_MIB * 1024,
        "peak RSS {peak_kib} KiB over the {OVERLOAD_RSS_BOUND_MIB} MiB bound"
    );
    let markers = receiver.query("overload_marker", None).await;
    let stored: BTreeSet<u64> = markers
        .iter()
        .map(|(l, _)| l["req"].parse().unwrap())
        .collect();
    let missing: Vec<_> = accepted.difference(&stored).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not stored: {missing:?}"
    );
    // Only acknowledged requests' samples can be there; count them all, raw.
    let received: usize = receiver
        .samples_per_series(r#"{__name__=~"overload_.*"}"#, 600, unix_now())
        .await
        .values()
        .sum();
    let sent = samples_accepted.load(Ordering::Relaxed);
    let total: u64 = codes.values().sum();
    Row {
        scenario: format!("10× overload, 1 MB bodies, {}s", run_for.as_secs()),
        requests: total,
        sent,
        received: received as u64,
        lost: sent as i64 - received as i64,
        note: format!(
            "{} × 2xx, {} × 503; peak RSS {:.1} MiB (baseline {:.1} MiB, bound {OVERLOAD_RSS_BOUND_MIB} MiB)",
            accepted.len(),
            codes.get(&503).copied().unwrap_or(0),
            peak_kib as f64 / 1024.0,
            baseline_kib as f64 / 1024.0
        ),
    }
}
