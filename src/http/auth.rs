//! Inbound authentication: senders prove themselves with a bearer token or basic auth before
//! the proxy signs anything for them — so a shared gateway is not a free signer for whoever
//! can reach it. Secrets live in files (Kubernetes Secrets, Docker secrets) and are re-read when
//! they change, so rotation needs no restart. Comparison is constant-time over SHA-256 digests
//! (which also hides the expected length).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use aws_lc_rs::{constant_time, digest};
use http::HeaderMap;
use tokio::task::JoinHandle;

use crate::config::InboundAuth;
use crate::config::inbound::read_secret_file;

/// How often secret files are checked for changes.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// Checks `Authorization` headers against the configured secret.
#[derive(Debug)]
pub struct Authenticator {
    scheme: Scheme,
    user: String,
    file: PathBuf,
    /// SHA-256 of the credentials part expected after the scheme.
    expected: ArcSwap<digest::Digest>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Bearer,
    Basic,
}

impl Authenticator {
    /// Loads the secret now; fails like the configuration check does.
    pub fn new(config: &InboundAuth) -> Result<Self, String> {
        let (scheme, user, file) = match config {
            InboundAuth::Bearer { token_file } => {
                (Scheme::Bearer, String::new(), token_file.clone())
            }
            InboundAuth::Basic {
                user,
                password_file,
            } => (Scheme::Basic, user.clone(), password_file.clone()),
        };
        let secret = read_secret_file(&file)?;
        let expected = ArcSwap::from_pointee(expected_digest(scheme, &user, &secret));
        Ok(Self {
            scheme,
            user,
            file,
            expected,
        })
    }

    /// The `WWW-Authenticate` challenge for a 401.
    pub fn challenge(&self) -> &'static str {
        match self.scheme {
            Scheme::Bearer => r#"Bearer realm="amp-rw-proxy""#,
            Scheme::Basic => r#"Basic realm="amp-rw-proxy", charset="UTF-8""#,
        }
    }

    /// `true` if `headers` carry the expected credentials.
    pub fn is_authorized(&self, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return false;
        };
        let Some((scheme, credentials)) =
            value.to_str().ok().and_then(|v| v.trim().split_once(' '))
        else {
            return false;
        };
        let scheme_ok = match self.scheme {
            Scheme::Bearer => scheme.eq_ignore_ascii_case("bearer"),
            Scheme::Basic => scheme.eq_ignore_ascii_case("basic"),
        };
        let got = digest::digest(&digest::SHA256, credentials.trim().as_bytes());
        let expected = self.expected.load();
        // Always compare, so a wrong scheme costs the same as a wrong secret.
        let secret_ok =
            constant_time::verify_slices_are_equal(got.as_ref(), expected.as_ref().as_ref())
                .is_ok();
        scheme_ok & secret_ok
    }

    /// Re-reads the secret file every [`RELOAD_INTERVAL`] until aborted. A file that cannot be
    /// read keeps the previous secret in force (and says so in the log).
    pub fn spawn_reloader(self: Arc<Self>) -> JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RELOAD_INTERVAL).await;
                match read_secret_file(&self.file) {
                    // Compared with what is in force (not with an earlier read), so a change
                    // between loading and this task's start is not missed.
                    Ok(secret) => {
                        let digest = expected_digest(self.scheme, &self.user, &secret);
                        if digest.as_ref() != self.expected.load().as_ref().as_ref() {
                            self.expected.store(Arc::new(digest));
                            tracing::info!(file = %self.file.display(), "inbound credentials reloaded");
                        }
                    }
                    Err(e) => tracing::warn!(
                        file = %self.file.display(),
                        error = %e,
                        "cannot re-read inbound credentials; the previous ones stay in force"
                    ),
                }
            }
        })
    }
}

fn expected_digest(scheme: Scheme, user: &str, secret: &str) -> digest::Digest {
    match scheme {
        Scheme::Bearer => digest::digest(&digest::SHA256, secret.as_bytes()),
        Scheme::Basic => {
            let encoded = aws_smithy_types::base64::encode(format!("{user}:{secret}"));
            digest::digest(&digest::SHA256, encoded.as_bytes())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use std::path::Path;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                http::header::AUTHORIZATION,
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn file(contents: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!(
            "amp-rw-proxy-auth-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn bearer_table() {
        let a = Authenticator::new(&InboundAuth::Bearer {
            token_file: file("s3cret-token\n"),
        })
        .unwrap();
        let cases: &[(&[&str], bool)] = &[
            (&["Bearer s3cret-token"], true),
            (&["bearer s3cret-token"], true),
            (&["Bearer  s3cret-token "], true),
            (&["Bearer s3cret-tokeN"], false),
            (&["Bearer s3cret"], false),
            (&["Basic s3cret-token"], false),
            (&["s3cret-token"], false),
            (&[], false),
            (&["Bearer s3cret-token", "Bearer s3cret-token"], false),
        ];
        for (h, ok) in cases {
            assert_eq!(a.is_authorized(&headers(h)), *ok, "{h:?}");
        }
        assert!(a.challenge().starts_with("Bearer"));
    }

    #[test]
    fn basic_table() {
        let a = Authenticator::new(&InboundAuth::Basic {
            user: "prometheus".into(),
            password_file: file("pa:ss word"),
        })
        .unwrap();
        let good = aws_smithy_types::base64::encode("prometheus:pa:ss word");
        let wrong_user = aws_smithy_types::base64::encode("other:pa:ss word");
        assert!(a.is_authorized(&headers(&[&format!("Basic {good}")])));
        assert!(!a.is_authorized(&headers(&[&format!("Basic {wrong_user}")])));
        assert!(!a.is_authorized(&headers(&[&format!("Bearer {good}")])));
        assert!(a.challenge().starts_with("Basic"));
    }

    #[test]
    fn secret_files_are_checked() {
        assert_eq!(read_secret_file(&file("  \n")), Err("empty".into()));
        assert!(
            read_secret_file(&file(&"x".repeat(5000)))
                .unwrap_err()
                .contains("larger")
        );
        assert!(read_secret_file(Path::new("/nonexistent/token")).is_err());
        // Errors never carry the file's contents.
        let err = Authenticator::new(&InboundAuth::Bearer {
            token_file: file(&"s3cr3t-".repeat(1000)),
        })
        .unwrap_err();
        assert!(!err.contains("s3cr3t"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn rotated_secrets_are_picked_up() {
        let path = file("old-token");
        let a = Arc::new(
            Authenticator::new(&InboundAuth::Bearer {
                token_file: path.clone(),
            })
            .unwrap(),
        );
        let _task = a.clone().spawn_reloader();
        tokio::task::yield_now().await;
        std::fs::write(&path, "new-token").unwrap();
        tokio::time::sleep(RELOAD_INTERVAL * 2).await;
        assert!(a.is_authorized(&headers(&["Bearer new-token"])));
        assert!(!a.is_authorized(&headers(&["Bearer old-token"])));
        // A vanished file keeps the last good secret.
        std::fs::remove_file(&path).unwrap();
        tokio::time::sleep(RELOAD_INTERVAL * 2).await;
        assert!(a.is_authorized(&headers(&["Bearer new-token"])));
    }
}
