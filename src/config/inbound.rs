//! Inbound authentication settings: a bearer token file, or a basic-auth user and password
//! file, from the flags or a route of the routes file. The files must be readable at startup;
//! the server's authenticator re-reads them when they change.

use std::path::{Path, PathBuf};

/// Largest secret file accepted.
const MAX_SECRET_BYTES: u64 = 4096;

/// How senders must authenticate to the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundAuth {
    /// `Authorization: Bearer <contents of the file>`.
    Bearer {
        /// The token file.
        token_file: PathBuf,
    },
    /// `Authorization: Basic base64(user:password)`.
    Basic {
        /// The user name.
        user: String,
        /// The password file.
        password_file: PathBuf,
    },
}

/// How the inbound-auth settings are called where they were given (flags or a routes file),
/// so messages name what the user wrote.
pub(crate) struct AuthKeys {
    pub bearer: &'static str,
    pub user: &'static str,
    pub password: &'static str,
    /// Prefix of every message (e.g. `routes.toml:12: `).
    pub at: String,
}

impl AuthKeys {
    pub(crate) const FLAGS: AuthKeys = AuthKeys {
        bearer: "--inbound-bearer-token-file",
        user: "--inbound-basic-auth-user",
        password: "--inbound-basic-auth-password-file",
        at: String::new(),
    };
}

/// Validates one inbound-auth setting: bearer token file, or basic-auth user and password
/// file; each file must be readable now.
pub(crate) fn inbound_auth_from(
    keys: &AuthKeys,
    bearer: Option<&Path>,
    user: Option<&str>,
    password: Option<&Path>,
) -> Result<Option<InboundAuth>, String> {
    let AuthKeys {
        bearer: bearer_key,
        user: user_key,
        password: password_key,
        at,
    } = keys;
    match (bearer, user, password) {
        (None, None, None) => Ok(None),
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(format!(
            "{at}{bearer_key} and {user_key}/{password_key} are exclusive: choose one"
        )),
        (Some(file), None, None) => {
            read_secret_file(file)
                .map_err(|e| format!("{at}{bearer_key} {}: {e}", file.display()))?;
            Ok(Some(InboundAuth::Bearer {
                token_file: file.to_path_buf(),
            }))
        }
        (None, Some(user), Some(file)) => {
            if user.contains(':') {
                return Err(format!("{at}{user_key} must not contain ':'"));
            }
            read_secret_file(file)
                .map_err(|e| format!("{at}{password_key} {}: {e}", file.display()))?;
            Ok(Some(InboundAuth::Basic {
                user: user.to_string(),
                password_file: file.to_path_buf(),
            }))
        }
        _ => Err(format!("{at}{user_key} and {password_key} go together")),
    }
}

/// Reads a secret file: trimmed, not empty, at most 4 KiB. Errors never include the contents.
pub fn read_secret_file(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.len() > MAX_SECRET_BYTES {
        return Err(format!("larger than {MAX_SECRET_BYTES} bytes"));
    }
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err("empty".to_string());
    }
    Ok(secret.to_string())
}
