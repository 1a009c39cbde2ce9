//! Inbound TLS (optionally mutual), so a gateway can be reached safely across a network.
//! Certificate, key and client CA are re-read when their files change (cert-manager renewals),
//! without a restart: each new connection takes the newest good configuration; a broken update
//! is logged and the previous configuration stays in force.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use tokio::task::JoinHandle;

use crate::config::tls_files::{TlsFiles, build};

/// How often the files are checked for changes.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// The current server configuration, swapped on file changes.
#[derive(Debug)]
pub struct TlsConfig {
    files: TlsFiles,
    current: ArcSwap<ServerConfig>,
    /// The file contents `current` was built from.
    loaded: std::sync::Mutex<Vec<Option<Vec<u8>>>>,
}

impl TlsConfig {
    /// Loads and checks the files now.
    pub fn load(files: &TlsFiles) -> Result<Self, String> {
        // Read the contents first: a change landing during the build is then seen as a change.
        let loaded = snapshot(files);
        let config = build(files)?;
        Ok(Self {
            files: files.clone(),
            current: ArcSwap::from_pointee(config),
            loaded: std::sync::Mutex::new(loaded),
        })
    }

    /// The configuration for the next handshake.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current.load_full()
    }

    /// Re-reads the files every [`RELOAD_INTERVAL`] and swaps in a new configuration when their
    /// contents change.
    pub fn spawn_reloader(self: Arc<Self>) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut seen = self.loaded.lock().map(|l| l.clone()).unwrap_or_default();
            loop {
                tokio::time::sleep(RELOAD_INTERVAL).await;
                let now = snapshot(&self.files);
                if now == seen {
                    continue;
                }
                match build(&self.files) {
                    Ok(config) => {
                        self.current.store(Arc::new(config));
                        tracing::info!(cert = %self.files.cert.display(), "inbound TLS configuration reloaded");
                        seen = now;
                    }
                    // Keep `seen` so the next change (a half-written pair completed) is retried.
                    Err(e) => {
                        tracing::warn!(error = %e, "new inbound TLS files are not usable; keeping the previous ones")
                    }
                }
            }
        })
    }
}

fn snapshot(files: &TlsFiles) -> Vec<Option<Vec<u8>>> {
    [
        Some(&files.cert),
        Some(&files.key),
        files.client_ca.as_ref(),
    ]
    .into_iter()
    .map(|p| p.and_then(|p| std::fs::read(p).ok()))
    .collect()
}
