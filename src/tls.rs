//! Inbound TLS (optionally mutual), so a gateway can be reached safely across a network.
//! Certificate, key and client CA are re-read when their files change (cert-manager renewals),
//! without a restart: each new connection takes the newest good configuration; a broken update
//! is logged and the previous configuration stays in force.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::task::JoinHandle;

/// How often the files are checked for changes.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// Files of the inbound TLS configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM CA bundle; when set, clients must present a certificate it signed (mTLS).
    pub client_ca: Option<PathBuf>,
}

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

/// Builds a rustls server configuration (aws-lc-rs, TLS 1.2/1.3, ALPN h2 and http/1.1).
pub fn build(files: &TlsFiles) -> Result<ServerConfig, String> {
    let certs = read_certs(&files.cert, "--tls-cert-file")?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("--tls-key-file {}: {e}", files.key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_certs(ca, "--tls-client-ca-file")? {
                roots
                    .add(cert)
                    .map_err(|e| format!("--tls-client-ca-file {}: {e}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("--tls-client-ca-file {}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("--tls-cert-file/--tls-key-file: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn read_certs(path: &Path, flag: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{flag} {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{flag} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{flag} {}: no PEM certificates found",
            path.display()
        ));
    }
    Ok(certs)
}
