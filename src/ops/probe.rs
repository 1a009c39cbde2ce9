//! `amp-rw-proxy probe [--ready]`: a health probe that needs nothing but the binary, for images
//! without a shell or curl (the Dockerfile's `HEALTHCHECK`, a compose `healthcheck`, an `exec`
//! probe).
//!
//! It sends one `GET /-/healthy` (or `/-/ready` with `--ready`) to the serving address, which it
//! takes from `AMP_RW_PROXY_LISTEN` like the server does (an unspecified address such as
//! `0.0.0.0` is probed on loopback), and exits 0 on a 200 answer within the timeout, 1 otherwise
//! with one line on stderr that says what happened. Plain HTTP only: with inbound TLS
//! (`AMP_RW_PROXY_TLS_CERT_FILE`) it says so instead of failing obscurely.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use crate::config::paths;
use crate::telemetry::one_line;

/// The answer body is read up to this many bytes, for the failure line.
const MAX_BODY: usize = 4096;
/// The failure line quotes at most this many characters of the answer.
const MAX_QUOTED: usize = 160;

/// Arguments of `amp-rw-proxy probe`.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// Probe readiness (`/-/ready`: 200 only while valid credentials are held) instead of
    /// liveness (`/-/healthy`).
    #[arg(long)]
    pub ready: bool,
    /// The proxy's serving address, IP:PORT; an unspecified address (0.0.0.0, [::]) is probed on
    /// loopback (127.0.0.1, [::1]).
    #[arg(long, env = "AMP_RW_PROXY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Probe this http:// URL instead of the serving address's /-/healthy or /-/ready.
    #[arg(long, value_name = "URL", conflicts_with = "ready")]
    pub url: Option<String>,
    /// Give up after this long (connecting, sending and reading the answer in all).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// What to probe: the TCP address to connect to, the Host header and the path.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    addr: SocketAddr,
    authority: String,
    path: String,
}

impl Target {
    fn url(&self) -> String {
        format!("http://{}{}", self.authority, self.path)
    }
}

fn target(args: &ProbeArgs) -> Result<Target, String> {
    if let Some(url) = &args.url {
        return target_of_url(url);
    }
    let mut addr: SocketAddr = args
        .listen
        .trim()
        .parse()
        .map_err(|e| format!("--listen {:?}: {e} (expected IP:PORT)", args.listen))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    let path = if args.ready {
        paths::READY
    } else {
        paths::HEALTHY
    };
    Ok(Target {
        addr,
        authority: addr.to_string(),
        path: path.to_string(),
    })
}

fn target_of_url(url: &str) -> Result<Target, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("--url {url:?}: {e} (expected http://IP:PORT/PATH)"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "--url {url:?}: only http:// is supported (the probe speaks plain HTTP)"
        ));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("--url {url:?}: no host"))?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let ip: IpAddr = host.parse().map_err(|_| {
        format!("--url {url:?}: the host must be an IP address (the probe does not resolve names)")
    })?;
    let port = authority.port_u16().unwrap_or(80);
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    Ok(Target {
        addr: SocketAddr::new(ip, port),
        authority: authority.as_str().to_string(),
        path,
    })
}

/// The answer's status and the start of its body.
struct Answer {
    status: http::StatusCode,
    body: String,
}

async fn get(target: &Target) -> Result<Answer, String> {
    let stream = tokio::net::TcpStream::connect(target.addr)
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", target.addr))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake with {}: {e}", target.addr))?;
    tokio::spawn(conn);
    let request = http::Request::get(target.path.as_str())
        .header(http::header::HOST, target.authority.as_str())
        .header(
            http::header::USER_AGENT,
            concat!("amp-rw-proxy-probe/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("no answer: {e}"))?;
    let status = response.status();
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while bytes.len() < MAX_BODY {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    bytes.extend_from_slice(data);
                }
            }
            // A body cut short still leaves the status to judge by.
            Some(Err(_)) | None => break,
        }
    }
    Ok(Answer {
        status,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

/// The body on one line, shortened: what the failure line quotes.
fn quoted(body: &str) -> String {
    let flat = one_line(body);
    if flat.chars().count() > MAX_QUOTED {
        let cut: String = flat.chars().take(MAX_QUOTED).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

fn probe(args: &ProbeArgs) -> Result<String, String> {
    if args.url.is_none() && std::env::var_os("AMP_RW_PROXY_TLS_CERT_FILE").is_some() {
        return Err(
            "AMP_RW_PROXY_TLS_CERT_FILE is set, so the proxy serves HTTPS; the probe speaks plain HTTP only"
                .to_string(),
        );
    }
    let target = target(args)?;
    let url = target.url();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let answer = runtime
        .block_on(async { tokio::time::timeout(args.timeout, get(&target)).await })
        .map_err(|_| {
            format!(
                "{url}: no answer within {}",
                humantime::format_duration(args.timeout)
            )
        })?
        .map_err(|e| format!("{url}: {e}"))?;
    let status = answer.status;
    if status == http::StatusCode::OK {
        Ok(format!("{url}: {status}"))
    } else {
        let body = quoted(&answer.body);
        Err(if body.is_empty() {
            format!("{url}: {status}")
        } else {
            format!("{url}: {status}: {body}")
        })
    }
}

/// Runs the probe: exit code 0 and one line on stdout when the answer is 200, exit code 1 and
/// one line on stderr otherwise.
pub fn run(args: &ProbeArgs) -> ExitCode {
    match probe(args) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(line) => {
            eprintln!("amp-rw-proxy probe: {line}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(listen: &str, ready: bool, url: Option<&str>) -> ProbeArgs {
        ProbeArgs {
            ready,
            listen: listen.to_string(),
            url: url.map(str::to_string),
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn an_unspecified_listen_address_is_probed_on_loopback() {
        let t = target(&args("0.0.0.0:8080", false, None)).unwrap();
        assert_eq!(t.url(), "http://127.0.0.1:8080/-/healthy");
        let t = target(&args("[::]:9000", true, None)).unwrap();
        assert_eq!(t.url(), "http://[::1]:9000/-/ready");
        let t = target(&args("10.1.2.3:8080", true, None)).unwrap();
        assert_eq!(t.url(), "http://10.1.2.3:8080/-/ready");
    }

    #[test]
    fn a_url_is_taken_as_given_and_must_be_plain_http_to_an_ip() {
        let t = target(&args("bad", false, Some("http://127.0.0.1:9/x?y=1"))).unwrap();
        assert_eq!(t.addr, "127.0.0.1:9".parse().unwrap());
        assert_eq!(t.path, "/x?y=1");
        assert_eq!(t.url(), "http://127.0.0.1:9/x?y=1");
        let e = target(&args("", false, Some("https://127.0.0.1:9/"))).unwrap_err();
        assert!(e.contains("only http://"), "{e}");
        let e = target(&args("", false, Some("http://localhost:9/"))).unwrap_err();
        assert!(e.contains("IP address"), "{e}");
        let e = target(&args("nope", false, None)).unwrap_err();
        assert!(e.contains("--listen \"nope\""), "{e}");
    }

    #[test]
    fn the_quoted_body_is_one_short_line() {
        assert_eq!(
            quoted("not ready:\n  no credentials\n"),
            "not ready: no credentials"
        );
        let long = "x".repeat(500);
        assert_eq!(quoted(&long).chars().count(), MAX_QUOTED + 1);
    }
}
