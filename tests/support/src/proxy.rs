//! The proxy under test, in process: the library's `App` and `server::serve` on a loopback
//! port, with base credentials standing in for Account B's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use amp_rw_proxy::app::App;
use amp_rw_proxy::config::{Cli, Config, Environment};
use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use clap::Parser;
use http::StatusCode;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::accounts::{
    BASE_ACCESS_KEY, BASE_SECRET, EXTERNAL_ID, REGION, ROLE_ARN, WORKSPACE_PATH,
};
use crate::amp::AmpStandIn;
use crate::client::get;
use crate::sts::StsStandIn;

pub struct ProxyUnderTest {
    pub addr: SocketAddr,
    pub app: Arc<App>,
    shutdown: Option<oneshot::Sender<()>>,
    pub served: tokio::task::JoinHandle<amp_rw_proxy::http::server::Drain>,
}

impl ProxyUnderTest {
    /// Starts the proxy with `args` (flags as on the command line) and base credentials
    /// standing in for Account B's, as the default chain would find them.
    pub async fn start(args: &[&str]) -> Self {
        let mut all = vec!["amp-rw-proxy", "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let cli = Cli::try_parse_from(all).expect("flags parse");
        let env = Environment {
            aws_region: None,
            hostname: "test-host".into(),
            proxy: Default::default(),
        };
        let config = Config::from_cli(&cli, &env).expect("valid config");
        let base = Credentials::new(BASE_ACCESS_KEY, BASE_SECRET, None, None, "test-base");
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .credentials_provider(SharedCredentialsProvider::new(base))
            .load()
            .await;
        let app = Arc::new(App::build(&config, &sdk).await.expect("app builds"));
        let listener = TcpListener::bind(config.listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        let serving = app.clone();
        let served = tokio::spawn(async move {
            serving
                .serve(listener, async {
                    let _ = rx.await;
                })
                .await
        });
        Self {
            addr,
            app,
            shutdown: Some(tx),
            served,
        }
    }

    /// Standard flags for a proxy assuming the role via `sts` and forwarding to `amp`.
    pub async fn start_with(sts: &StsStandIn, amp: &AmpStandIn, extra: &[&str]) -> Self {
        Self::start_to(sts, &amp.url(), extra).await
    }

    /// A port nothing listens on: an upstream that refuses connections.
    pub async fn closed_upstream_url() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        format!("http://{addr}{WORKSPACE_PATH}")
    }

    /// Standard flags for a proxy assuming the role via `sts` and forwarding to `upstream_url`.
    pub async fn start_to(sts: &StsStandIn, upstream_url: &str, extra: &[&str]) -> Self {
        let sts_url = sts.url();
        let mut args = vec![
            "--upstream-url",
            upstream_url,
            "--region",
            REGION,
            "--role-arn",
            ROLE_ARN,
            "--external-id",
            EXTERNAL_ID,
            "--sts-endpoint",
            &sts_url,
        ];
        args.extend_from_slice(extra);
        Self::start(&args).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Waits for `/-/ready` to answer 200 (the readiness signal), up to `limit`.
    pub async fn wait_ready(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let r = get(&self.url("/-/ready")).await;
            if r.status == StatusCode::OK {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not ready after {limit:?}: {}",
                r.text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
