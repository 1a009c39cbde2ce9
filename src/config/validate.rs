//! The checks behind [`super::Config::from_cli`] and the routes file: each takes the name of
//! the setting as the user wrote it (`--role-arn`, `routes.toml:12:5: role_arn`) and returns
//! one line saying what is wrong and what is expected.

use std::path::PathBuf;
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::remote_write::ExternalLabels;

/// STS accepts session durations from 15 minutes to 12 hours (the role's own maximum may be lower).
pub(crate) const MIN_SESSION_DURATION: Duration = Duration::from_secs(15 * 60);
pub(crate) const MAX_SESSION_DURATION: Duration = Duration::from_secs(12 * 60 * 60);
/// STS `RoleSessionName`: 2 to 64 characters of `[\w+=,.@-]`.
const SESSION_NAME_MAX: usize = 64;
const SESSION_NAME_MIN: usize = 2;
const SESSION_NAME_PREFIX: &str = "amp-rw-proxy-";

/// Collects errors while validation carries on.
#[derive(Default)]
pub(crate) struct ErrorList(pub(crate) Vec<String>);

impl ErrorList {
    pub(crate) fn check<T>(&mut self, r: Result<T, String>) -> Option<T> {
        r.map_err(|e| self.0.push(e)).ok()
    }
}
/// `NAME=VALUE` pairs from `--external-label` (blank entries, e.g. from a trailing comma in
/// the environment variable, are ignored); every problem is added to `errors`.
pub(crate) fn parse_external_labels(
    raw: &[String],
    errors: &mut ErrorList,
) -> Option<ExternalLabels> {
    let mut pairs = Vec::new();
    let mut ok = true;
    for entry in raw.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        match entry.split_once('=') {
            Some((name, value)) => pairs.push((name.trim().to_string(), value.to_string())),
            None => {
                ok = false;
                errors.check(Err::<(), _>(format!(
                    "--external-label {entry:?}: expected NAME=VALUE"
                )));
            }
        }
    }
    match ExternalLabels::new(pairs) {
        Ok(labels) if ok => Some(labels),
        Ok(_) => None,
        Err(problems) => {
            for p in problems {
                errors.check(Err::<(), _>(p));
            }
            None
        }
    }
}
pub(crate) fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}
pub(crate) fn validate_region(what: &str, region: &str) -> Result<(), String> {
    // e.g. us-east-1, eu-central-2, us-gov-west-1, cn-north-1, ap-southeast-5
    let parts: Vec<&str> = region.split('-').collect();
    let ok = parts.len() >= 3
        && parts
            .last()
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} {region:?}: not an AWS region name (e.g. us-east-1)"
        ))
    }
}

pub(crate) fn validate_role_arn(what: &str, arn: &str) -> Result<String, String> {
    // arn:<partition>:iam::<12-digit account>:role/<path/name>
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5]
            .strip_prefix("role/")
            .is_some_and(|n| !n.is_empty());
    if ok {
        Ok(arn.to_string())
    } else {
        Err(format!(
            "{what} {arn:?}: expected arn:aws:iam::<12-digit account id>:role/<name>"
        ))
    }
}

pub(crate) fn validate_external_id(what: &str, id: &str) -> Result<(), String> {
    // STS: 2-1224 characters of [\w+=,.@:/-].
    let ok = (2..=1224).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@:/-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what}: must be 2 to 1224 characters of A-Z a-z 0-9 _ + = , . @ : / -"
        ))
    }
}

fn is_session_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)
}

pub(crate) fn validate_session_name(what: &str, name: &str) -> Result<(), String> {
    if (SESSION_NAME_MIN..=SESSION_NAME_MAX).contains(&name.len())
        && name.chars().all(is_session_name_char)
    {
        Ok(())
    } else {
        Err(format!(
            "{what} {name:?}: must be 2 to 64 characters of A-Z a-z 0-9 _ + = , . @ -"
        ))
    }
}

/// `amp-rw-proxy-<hostname>`, sanitised for STS. Long names keep their *end*: in Kubernetes
/// the distinguishing part of a pod name (ReplicaSet hash, ordinal) is the suffix.
pub fn default_session_name(hostname: &str) -> String {
    let clean: String = hostname
        .chars()
        .map(|c| if is_session_name_char(c) { c } else { '-' })
        .collect();
    let room = SESSION_NAME_MAX - SESSION_NAME_PREFIX.len();
    let tail = if clean.len() > room {
        &clean[clean.len() - room..]
    } else {
        &clean[..]
    };
    let tail = if tail.is_empty() { "unknown" } else { tail };
    format!("{SESSION_NAME_PREFIX}{tail}")
}

pub(crate) fn parse_duration(flag: &str, value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value.trim())
        .map_err(|e| format!("{flag} {value:?}: {e} (expected e.g. 30s, 15m, 1h)"))
}

/// Parses `32MiB`, `512KiB`, `10MB`, `1048576`.
pub fn parse_size(flag: &str, value: &str) -> Result<u64, String> {
    let v = value.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "Ki" => 1 << 10,
        "MiB" | "Mi" => 1 << 20,
        "GiB" | "Gi" => 1 << 30,
        "KB" | "kB" | "K" | "k" => 1_000,
        "MB" | "M" => 1_000_000,
        "GB" | "G" => 1_000_000_000,
        _ => {
            return Err(format!(
                "{flag} {value:?}: unknown unit (use B, KiB, MiB, GiB, KB, MB, GB)"
            ));
        }
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("{flag} {value:?}: expected a size such as 32MiB"))
}

pub(crate) fn load_ca_file(path: &PathBuf) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("--upstream-ca-file {}: {e}", path.display()))?
        .collect();
    match certs {
        Ok(c) if !c.is_empty() => {
            // Check now that each is usable as a trust anchor, so a bad file is a config error
            // (exit 64, reported with the others) rather than a failure after startup.
            let mut store = rustls::RootCertStore::empty();
            for (i, cert) in c.iter().enumerate() {
                store.add(cert.clone()).map_err(|e| {
                    format!(
                        "--upstream-ca-file {}: certificate #{}: {e}",
                        path.display(),
                        i + 1
                    )
                })?;
            }
            Ok(c)
        }
        Ok(_) => Err(format!(
            "--upstream-ca-file {}: no PEM certificates found",
            path.display()
        )),
        Err(e) => Err(format!("--upstream-ca-file {}: {e}", path.display())),
    }
}
