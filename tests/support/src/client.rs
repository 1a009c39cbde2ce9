//! Talking to the proxy (or any peer) as a client: plain HTTP requests, remote-write POSTs as
//! Prometheus sends them, and raw bytes for requests a client library will not produce.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioExecutor;

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub fn client() -> hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
> {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http()
}

pub async fn send(req: Request<Full<Bytes>>) -> Answer {
    let resp = client().request(req).await.expect("proxy answers");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub async fn get(url: &str) -> Answer {
    send(Request::get(url).body(Full::new(Bytes::new())).unwrap()).await
}

/// A remote-write POST as Prometheus 2.42 sends it.
pub fn prometheus_post(url: &str) -> http::request::Builder {
    Request::post(url)
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "snappy")
        .header("user-agent", "Prometheus/2.42.0+ds")
        .header("x-prometheus-remote-write-version", "0.1.0")
}

pub async fn write(url: &str, body: Bytes) -> Answer {
    send(prometheus_post(url).body(Full::new(body)).unwrap()).await
}

/// Sends raw bytes on a fresh connection and returns everything read until the server closes
/// or `limit` passes — for requests a well-behaved client library will not produce.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8], limit: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => {
                out.extend_from_slice(&buf[..n]);
                // A complete short response (headers + declared body) is enough.
                if response_complete(&out) {
                    break;
                }
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn response_complete(buf: &[u8]) -> bool {
    let text = String::from_utf8_lossy(buf);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let len = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_string())
        })
        .and_then(|v| v.parse::<usize>().ok());
    len.is_some_and(|l| body.len() >= l)
}
