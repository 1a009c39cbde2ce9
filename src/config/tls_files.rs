//! The inbound TLS files (`--tls-cert-file`, `--tls-key-file`, `--tls-client-ca-file`) and the
//! rustls server configuration built from them: at startup, so a bad file is a configuration
//! error, and again by the server's reloader when the files change.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::flags::Cli;

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

/// The TLS flags: none, or a certificate and key (and optionally a client CA), checked by
/// building the configuration once.
pub(crate) fn from_flags(cli: &Cli) -> Result<Option<TlsFiles>, String> {
    match (
        &cli.tls_cert_file,
        &cli.tls_key_file,
        &cli.tls_client_ca_file,
    ) {
        (None, None, None) => Ok(None),
        (Some(cert), Some(key), client_ca) => {
            let files = TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: client_ca.clone(),
            };
            build(&files).map(|_| Some(files))
        }
        _ => Err(
            "--tls-cert-file and --tls-key-file go together (and --tls-client-ca-file needs both)"
                .to_string(),
        ),
    }
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
