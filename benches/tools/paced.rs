//! Many senders at a steady total rate, like a fleet of Prometheus servers: `--connections`
//! keep-alive HTTP/1.1 connections (TLS for an `https://` URL, trusting `--ca-file`), each
//! POSTing the body every `connections / rate` seconds, their phases spread evenly over that
//! interval (hey's rate limit starts every worker on the same tick, so 1,000 workers send in
//! bursts of 1,000). Prints one JSON line: requests, status codes, errors, p50/p99/max ms.
//!
//!   paced URL BODY_FILE --connections 1000 --rate 6500 --duration 10 [--ca-file ca.pem]
//!
//! Native and on one thread, so that at several thousand requests per second it takes a small
//! share of the machine it measures (the Python sender it replaces used about as much CPU per
//! request as the proxy, and its own event-loop delays were in every latency). Latency runs
//! from the moment a request is written to the end of its answer; the first round of every
//! connection (connects, TLS handshakes, the proxy's upstream connections opening) is not counted.
//! Used by benches/tls.py for the added-p99 figure.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until};

struct Args {
    url: http::Uri,
    body: Bytes,
    connections: usize,
    rate: f64,
    duration: Duration,
    ca_file: Option<String>,
}

fn parse_args() -> Args {
    let mut positional = Vec::new();
    let (mut connections, mut rate, mut duration, mut ca_file) = (1000, None, 10.0, None);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().unwrap_or_else(|| panic!("{name} needs a value"));
        match a.as_str() {
            "--connections" => connections = value(&a).parse().expect("--connections: a number"),
            "--rate" => rate = Some(value(&a).parse::<f64>().expect("--rate: requests/s")),
            "--duration" => duration = value(&a).parse().expect("--duration: seconds"),
            "--ca-file" => ca_file = Some(value(&a)),
            _ => positional.push(a),
        }
    }
    let [url, body] = <[String; 2]>::try_from(positional).unwrap_or_else(|_| {
        panic!("usage: paced URL BODY_FILE --rate R [--connections N] [--duration S] [--ca-file F]")
    });
    Args {
        url: url.parse().expect("URL"),
        body: std::fs::read(&body)
            .unwrap_or_else(|e| panic!("{body}: {e}"))
            .into(),
        connections,
        rate: rate.expect("--rate is required"),
        duration: Duration::from_secs_f64(duration),
        ca_file,
    }
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    codes: std::collections::BTreeMap<u16, u64>,
    socket_errors: u64,
    sent: u64,
}

/// An HTTP/1.1 client connection over `io`, its connection task spawned.
async fn http1<S>(io: S) -> hyper::Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(connection);
    Ok(send)
}

/// One sender: connect at its phase, then one request per interval until `end`.
async fn sender(
    i: usize,
    args: Arc<Args>,
    tls: Option<tokio_rustls::TlsConnector>,
    start: Instant,
    count_from: Instant,
    end: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let interval = Duration::from_secs_f64(args.connections as f64 / args.rate);
    let phase = interval.mul_f64(i as f64 / args.connections as f64);
    // Connects spread like the requests, so they do not all land at once.
    sleep_until(start - interval + phase).await;
    let host = args.url.host().expect("URL host").to_string();
    let port = args
        .url
        .port_u16()
        .unwrap_or(if tls.is_some() { 443 } else { 80 });
    let Ok(tcp) = TcpStream::connect((host.as_str(), port)).await else {
        tally.socket_errors += 1;
        return tally;
    };
    let _ = tcp.set_nodelay(true);
    let handshake = match tls {
        Some(tls) => {
            let name = ServerName::try_from(host.clone()).expect("server name");
            match tls.connect(name, tcp).await {
                Ok(s) => http1(s).await,
                Err(_) => {
                    tally.socket_errors += 1;
                    return tally;
                }
            }
        }
        None => http1(tcp).await,
    };
    let Ok(mut send) = handshake else {
        tally.socket_errors += 1;
        return tally;
    };
    let authority = args.url.authority().expect("URL authority").to_string();
    let mut n = 0u32;
    loop {
        let due = start + phase + interval * n;
        if due >= end {
            break;
        }
        n += 1;
        sleep_until(due).await;
        let req = http::Request::post(args.url.clone())
            .header(http::header::HOST, &authority)
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .header(http::header::CONTENT_ENCODING, "snappy")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .header(http::header::USER_AGENT, "Prometheus/2.42.0")
            .body(Full::new(args.body.clone()))
            .expect("request");
        tally.sent += 1;
        let t0 = Instant::now();
        let answer = async {
            let resp = send.send_request(req).await?;
            let status = resp.status().as_u16();
            resp.into_body().collect().await?;
            Ok::<_, hyper::Error>(status)
        };
        match answer.await {
            Ok(status) => {
                if t0 >= count_from {
                    tally.latencies_us.push(t0.elapsed().as_micros() as u32);
                    *tally.codes.entry(status).or_default() += 1;
                }
            }
            Err(_) => {
                tally.socket_errors += 1;
                break;
            }
        }
    }
    tally
}

fn main() {
    let args = Arc::new(parse_args());
    let tls = args.ca_file.as_ref().map(|path| {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(path).unwrap_or_else(|e| panic!("{path}: {e}")) {
            roots
                .add(cert.expect("PEM certificate"))
                .expect("CA certificate");
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let total = runtime.block_on(async {
        let interval = Duration::from_secs_f64(args.connections as f64 / args.rate);
        // Every sender connected before the first request; the first round is not counted.
        let start = Instant::now() + interval + Duration::from_millis(500);
        let count_from = start + interval;
        let end = count_from + args.duration;
        let tasks: Vec<_> = (0..args.connections)
            .map(|i| tokio::spawn(sender(i, args.clone(), tls.clone(), start, count_from, end)))
            .collect();
        let mut total = Tally::default();
        for t in tasks {
            let t = t.await.expect("sender task");
            total.latencies_us.extend(t.latencies_us);
            for (code, n) in t.codes {
                *total.codes.entry(code).or_default() += n;
            }
            total.socket_errors += t.socket_errors;
            total.sent += t.sent;
        }
        total
    });
    let mut lat = total.latencies_us;
    lat.sort_unstable();
    let pct = |q: f64| {
        lat.get(((q * lat.len() as f64) as usize).min(lat.len().saturating_sub(1)))
            .map(|us| format!("{:.3}", *us as f64 / 1000.0))
            .unwrap_or_else(|| "null".into())
    };
    let codes: Vec<String> = total
        .codes
        .iter()
        .map(|(c, n)| format!("\"{c}\": {n}"))
        .collect();
    println!(
        "{{\"requests\": {}, \"sent\": {}, \"codes\": {{{}}}, \"socket_errors\": {}, \"p50_ms\": {}, \"p99_ms\": {}, \"max_ms\": {}, \"rate\": {}, \"connections\": {}}}",
        lat.len(),
        total.sent,
        codes.join(", "),
        total.socket_errors,
        pct(0.5),
        pct(0.99),
        pct(1.0),
        args.rate,
        args.connections
    );
}
