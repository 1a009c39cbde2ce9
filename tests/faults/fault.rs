//! The fault stand-in: sits between the proxy and a Prometheus receiver and can be told to pass
//! requests through, fail some or all with 500, throttle with 429 + `Retry-After`, hang, refuse
//! connections (listener closed and open connections cut), or act as a fast sink.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use support::accounts::WORKSPACE_PATH;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Forward to the receiver and relay its answer.
    Pass,
    /// Fail this fraction of requests with 500 (deterministically spread), pass the rest.
    Intermittent500(f64),
    /// Answer every request 429 with `Retry-After: 1`.
    Storm429,
    /// Never answer.
    Hang,
    /// Close the listener and cut open connections.
    Refuse,
    /// Answer 204 at once (optionally after a delay) without forwarding: a fast sink.
    Sink(Duration),
    /// Forward, then hold the answer for this long (a slow upstream with real storage).
    SlowPass(Duration),
}

pub struct FaultStandIn {
    pub addr: SocketAddr,
    mode: watch::Sender<Mode>,
    pub failed: Arc<AtomicU64>,
}

impl FaultStandIn {
    pub async fn start(receiver: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mode, rx) = watch::channel(Mode::Pass);
        let failed = Arc::new(AtomicU64::new(0));
        let state = Arc::new(State {
            receiver,
            http: hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http(),
            failed: failed.clone(),
            counter: AtomicU64::new(0),
            mode: rx.clone(),
        });
        tokio::spawn(accept_loop(Some(listener), addr, rx, state));
        Self { addr, mode, failed }
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, WORKSPACE_PATH)
    }
}

struct State {
    receiver: String,
    http: HttpClient,
    failed: Arc<AtomicU64>,
    counter: AtomicU64,
    mode: watch::Receiver<Mode>,
}

type HttpClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

async fn accept_loop(
    mut listener: Option<TcpListener>,
    addr: SocketAddr,
    mut mode: watch::Receiver<Mode>,
    state: Arc<State>,
) {
    let mut conns = JoinSet::new();
    loop {
        let current = *mode.borrow_and_update();
        if current == Mode::Refuse {
            // An outage: nothing listens and established connections die.
            listener = None;
            conns.abort_all();
            let _ = mode.changed().await;
            continue;
        }
        if listener.is_none() {
            listener = Some(rebind(addr).await);
        }
        let l = listener.as_ref().unwrap();
        tokio::select! {
            accepted = l.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let state = state.clone();
                conns.spawn(async move {
                    let svc = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handle(req, &state).await) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
            _ = mode.changed() => {}
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn rebind(addr: SocketAddr) -> TcpListener {
    // The port was ours a moment ago; retry briefly in case the kernel still holds it.
    for _ in 0..100 {
        if let Ok(l) = TcpListener::bind(addr).await {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("cannot re-bind {addr}");
}

fn status(code: u16, headers: &[(&str, &str)], body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::builder().status(code);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

async fn handle(req: Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
    let mode = *state.mode.borrow();
    let (parts, body) = req.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return status(400, &[], "broken body");
    };
    let n = state.counter.fetch_add(1, Ordering::Relaxed);
    match mode {
        Mode::Intermittent500(fraction) => {
            // Spread failures evenly: request n fails if the running share of failures is low.
            let should_fail = ((n + 1) as f64 * fraction).floor() > (n as f64 * fraction).floor();
            if should_fail {
                state.failed.fetch_add(1, Ordering::Relaxed);
                return status(500, &[], "injected internal error");
            }
        }
        Mode::Storm429 => {
            state.failed.fetch_add(1, Ordering::Relaxed);
            return status(
                429,
                &[("retry-after", "1")],
                "ThrottlingException: Rate exceeded",
            );
        }
        Mode::Hang => {
            state.failed.fetch_add(1, Ordering::Relaxed);
            let mut rx = state.mode.clone();
            let _ = rx.changed().await;
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Mode::Sink(delay) => {
            tokio::time::sleep(delay).await;
            return status(204, &[], "");
        }
        Mode::Pass | Mode::Refuse | Mode::SlowPass(_) => {}
    }
    let client = &state.http;
    let mut fwd = Request::post(format!("{}/api/v1/write", state.receiver));
    for name in [
        "content-type",
        "content-encoding",
        "x-prometheus-remote-write-version",
        "user-agent",
    ] {
        if let Some(v) = parts.headers.get(name) {
            fwd = fwd.header(name, v);
        }
    }
    let answer = match client.request(fwd.body(Full::new(body)).unwrap()).await {
        Ok(a) => a,
        Err(_) => return status(503, &[], "receiver unreachable"),
    };
    let (p, b) = answer.into_parts();
    let b = b.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    if let Mode::SlowPass(delay) = mode {
        tokio::time::sleep(delay).await;
    }
    let mut resp = Response::builder().status(p.status);
    for (k, v) in p.headers.iter() {
        if k.as_str().starts_with("x-prometheus") || k == "content-type" || k == "retry-after" {
            resp = resp.header(k, v);
        }
    }
    resp.body(Full::new(b)).unwrap()
}
