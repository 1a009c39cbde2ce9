//! The routes file (`--config routes.toml`): several workspaces behind one proxy, each team on
//! its own inbound path with its own role, ExternalId and credential cache.
//!
//! ```toml
//! [[route]]
//! name = "team-a"                       # metrics label `route`; [A-Za-z0-9_.-], unique
//! path = "/team-a/api/v1/write"         # inbound path, unique
//! upstream_url = "https://aps-workspaces.us-east-1.amazonaws.com/workspaces/ws-a/api/v1/remote_write"
//! role_arn = "arn:aws:iam::111111111111:role/account_a_role"   # optional
//! external_id = "from-account-a"        # optional, needs role_arn
//! # region, session_name, session_duration: optional, as the flags of the same name
//! # inbound_bearer_token_file, or inbound_basic_auth_user + inbound_basic_auth_password_file:
//! # optional, this route's own sender authentication (else the global flags apply)
//! ```
//!
//! Every mistake is reported at once, each with `file:line:column`; unknown keys are errors
//! (a misspelt `externl_id` must not silently drop a trust-policy condition).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::inbound::{AuthKeys, inbound_auth_from};
use super::paths::OWN_ENDPOINTS;
use super::targets::{parse_upstream, region_from_host};
use super::validate::{
    MAX_SESSION_DURATION, MIN_SESSION_DURATION, parse_duration, validate_external_id,
    validate_region, validate_role_arn, validate_session_name,
};
use super::{RoleConfig, RouteConfig, RoutePath};
const NAME_MAX: usize = 64;

/// What routes inherit from the flags and the environment.
pub struct RouteDefaults {
    /// `--session-name` or its default (`None` if the flag was invalid: reported already).
    pub session_name: Option<String>,
    /// `--session-duration` (`None` if invalid: reported already).
    pub session_duration: Option<Duration>,
    /// `AWS_REGION`, for routes whose region cannot be inferred from the upstream host.
    pub aws_region: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoutesFile {
    #[serde(default)]
    route: Vec<RouteEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteEntry {
    name: Spanned<String>,
    path: Spanned<String>,
    upstream_url: Spanned<String>,
    region: Option<Spanned<String>>,
    role_arn: Option<Spanned<String>>,
    external_id: Option<Spanned<String>>,
    session_name: Option<Spanned<String>>,
    session_duration: Option<Spanned<String>>,
    inbound_bearer_token_file: Option<Spanned<PathBuf>>,
    inbound_basic_auth_user: Option<Spanned<String>>,
    inbound_basic_auth_password_file: Option<Spanned<PathBuf>>,
}

/// Reads and validates `file`. Every problem is appended to `errors` (one line each, with
/// `file:line:column`); the routes are returned only if there was none.
pub fn load(
    file: &Path,
    defaults: &RouteDefaults,
    errors: &mut Vec<String>,
) -> Option<Vec<RouteConfig>> {
    let shown = file.display().to_string();
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            errors.push(format!("--config {shown}: {e}"));
            return None;
        }
    };
    // Relative secret files are relative to the routes file, as in Prometheus's own config.
    let base = file.parent().unwrap_or(Path::new("."));
    parse(&shown, &text, base, defaults, errors)
}

/// [`load`] on text already read; `shown` names the file in messages.
pub fn parse(
    shown: &str,
    text: &str,
    base: &Path,
    defaults: &RouteDefaults,
    errors: &mut Vec<String>,
) -> Option<Vec<RouteConfig>> {
    let at = |span: std::ops::Range<usize>| {
        let (line, col) = line_col(text, span.start);
        format!("{shown}:{line}:{col}: ")
    };
    let parsed: RoutesFile = match toml::from_str(text) {
        Ok(p) => p,
        Err(e) => {
            let place = e.span().map_or(format!("{shown}: "), at);
            errors.push(format!("{place}{}", e.message().trim()));
            return None;
        }
    };
    if parsed.route.is_empty() {
        errors.push(format!(
            "{shown}: no routes: add at least one [[route]] table with name, path and upstream_url"
        ));
        return None;
    }
    let before = errors.len();
    let mut routes = Vec::new();
    let mut names: Vec<(String, String)> = Vec::new();
    let mut paths: Vec<(String, String)> = Vec::new();
    for entry in parsed.route {
        let name = entry.name.get_ref().trim();
        let name_at = at(entry.name.span());
        if name.is_empty()
            || name.len() > NAME_MAX
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        {
            errors.push(format!(
                "{name_at}name {name:?}: must be 1 to {NAME_MAX} characters of A-Z a-z 0-9 _ . -"
            ));
        } else if let Some((_, first)) = names.iter().find(|(n, _)| n == name) {
            errors.push(format!(
                "{name_at}name {name:?} is already used by the route at {first}"
            ));
        } else {
            names.push((name.to_string(), name_at.trim_end_matches(": ").to_string()));
        }

        let path = entry.path.get_ref().trim();
        let path_at = at(entry.path.span());
        if let Err(why) = check_path(path) {
            errors.push(format!("{path_at}path {path:?}: {why}"));
        } else if let Some((_, first)) = paths.iter().find(|(p, _)| p == path) {
            errors.push(format!(
                "{path_at}path {path:?} is already used by the route at {first}"
            ));
        } else {
            paths.push((path.to_string(), path_at.trim_end_matches(": ").to_string()));
        }

        let url_at = at(entry.upstream_url.span());
        let upstream = parse_upstream(
            &format!("{url_at}upstream_url"),
            entry.upstream_url.get_ref().trim(),
        )
        .map_err(|e| errors.push(e))
        .ok();

        let region = match &entry.region {
            Some(r) => {
                let value = r.get_ref().trim();
                validate_region(&format!("{}region", at(r.span())), value)
                    .map(|_| value.to_string())
                    .map_err(|e| errors.push(e))
                    .ok()
            }
            None => {
                let inferred = upstream
                    .as_ref()
                    .and_then(|u| u.uri.host())
                    .and_then(region_from_host)
                    .or_else(|| defaults.aws_region.clone());
                if inferred.is_none() && upstream.is_some() {
                    errors.push(format!(
                        "{url_at}region is required for this route: it cannot be inferred from \
                         the upstream host and AWS_REGION is not set"
                    ));
                }
                inferred
            }
        };

        let role = route_role(&entry, &at, defaults, errors);

        let auth_at = [
            entry.inbound_bearer_token_file.as_ref().map(|v| v.span()),
            entry.inbound_basic_auth_user.as_ref().map(|v| v.span()),
            entry
                .inbound_basic_auth_password_file
                .as_ref()
                .map(|v| v.span()),
        ]
        .into_iter()
        .flatten()
        .min_by_key(|s| s.start)
        .map(&at)
        .unwrap_or_default();
        let keys = AuthKeys {
            bearer: "inbound_bearer_token_file",
            user: "inbound_basic_auth_user",
            password: "inbound_basic_auth_password_file",
            at: auth_at,
        };
        let inbound_auth = inbound_auth_from(
            &keys,
            entry
                .inbound_bearer_token_file
                .as_ref()
                .map(|f| base.join(f.get_ref()))
                .as_deref(),
            entry
                .inbound_basic_auth_user
                .as_ref()
                .map(|u| u.get_ref().trim()),
            entry
                .inbound_basic_auth_password_file
                .as_ref()
                .map(|f| base.join(f.get_ref()))
                .as_deref(),
        )
        .map_err(|e| errors.push(e))
        .ok();

        if let (Some(upstream), Some(region), Some(role), Some(inbound_auth)) =
            (upstream, region, role, inbound_auth)
        {
            routes.push(RouteConfig {
                // Leaked once per route at startup: metric labels are `&'static str`.
                name: String::leak(name.to_string()),
                paths: vec![RoutePath {
                    path: path.to_string(),
                    label: String::leak(path.to_string()),
                }],
                upstream,
                region,
                role,
                inbound_auth,
                query: None,
                query_prefixes: Vec::new(),
            });
        }
    }
    (errors.len() == before).then_some(routes)
}

/// The route's role, `Some(None)` for none; `None` when something was wrong (reported).
fn route_role(
    entry: &RouteEntry,
    at: &impl Fn(std::ops::Range<usize>) -> String,
    defaults: &RouteDefaults,
    errors: &mut Vec<String>,
) -> Option<Option<RoleConfig>> {
    let mut ok = true;
    let mut fail = |e: String| {
        errors.push(e);
        ok = false;
    };
    let session_name = match &entry.session_name {
        Some(n) => {
            let value = n.get_ref().trim();
            match validate_session_name(&format!("{}session_name", at(n.span())), value) {
                Ok(()) => Some(value.to_string()),
                Err(e) => {
                    fail(e);
                    None
                }
            }
        }
        None => defaults.session_name.clone(),
    };
    let session_duration = match &entry.session_duration {
        Some(d) => {
            let what = format!("{}session_duration", at(d.span()));
            match parse_duration(&what, d.get_ref()) {
                Ok(v) if (MIN_SESSION_DURATION..=MAX_SESSION_DURATION).contains(&v) => Some(v),
                Ok(_) => {
                    fail(format!(
                        "{what} {:?}: must be between 15m and 12h",
                        d.get_ref()
                    ));
                    None
                }
                Err(e) => {
                    fail(e);
                    None
                }
            }
        }
        None => defaults.session_duration,
    };
    let external_id = entry.external_id.as_ref().map(|id| {
        let value = id.get_ref().trim().to_string();
        if let Err(e) = validate_external_id(&format!("{}external_id", at(id.span())), &value) {
            fail(e);
        }
        value
    });
    let arn = match &entry.role_arn {
        None => {
            if let Some(id) = &entry.external_id {
                fail(format!(
                    "{}external_id is set but role_arn is not: an ExternalId only applies to \
                     AssumeRole",
                    at(id.span())
                ));
            }
            None
        }
        Some(arn) => {
            match validate_role_arn(&format!("{}role_arn", at(arn.span())), arn.get_ref().trim()) {
                Ok(a) => Some(a),
                Err(e) => {
                    fail(e);
                    None
                }
            }
        }
    };
    if !ok {
        return None;
    }
    match arn {
        None => Some(None),
        Some(arn) => Some(Some(RoleConfig {
            arn,
            external_id,
            // `None` only when the flag default was invalid, which is reported already.
            session_name: session_name?,
            session_duration: session_duration?,
        })),
    }
}

/// A route path is matched exactly against the request's (undecoded) path, so it must be
/// plain: a leading `/`, unreserved characters only, not one of the proxy's own endpoints.
fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err("must start with /".into());
    }
    if !path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~/".contains(&b))
    {
        return Err("only A-Z a-z 0-9 - . _ ~ / are allowed (it is matched exactly)".into());
    }
    if OWN_ENDPOINTS.contains(&path) {
        return Err("is one of the proxy's own endpoints".into());
    }
    Ok(())
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> RouteDefaults {
        RouteDefaults {
            session_name: Some("amp-rw-proxy-host-1".into()),
            session_duration: Some(Duration::from_secs(3600)),
            aws_region: None,
        }
    }

    fn parse_text(text: &str) -> (Option<Vec<RouteConfig>>, Vec<String>) {
        let mut errors = Vec::new();
        let routes = parse(
            "routes.toml",
            text,
            Path::new("/etc"),
            &defaults(),
            &mut errors,
        );
        (routes, errors)
    }

    fn parse_ok(text: &str) -> Vec<RouteConfig> {
        let (routes, errors) = parse_text(text);
        assert!(errors.is_empty(), "{errors:#?}");
        routes.unwrap()
    }

    fn parse_err(text: &str) -> Vec<String> {
        let (routes, errors) = parse_text(text);
        assert!(routes.is_none(), "accepted:\n{text}");
        assert!(!errors.is_empty());
        errors
    }

    const TWO_ROUTES: &str = r#"
[[route]]
name = "team-a"
path = "/team-a/api/v1/write"
upstream_url = "https://aps-workspaces.us-east-1.amazonaws.com/workspaces/ws-a/api/v1/remote_write"
role_arn = "arn:aws:iam::111111111111:role/account_a_role"
external_id = "ext-a"

[[route]]
name = "team-b"
path = "/team-b/api/v1/write"
upstream_url = "https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-b/api/v1/remote_write"
region = "eu-west-1"
session_name = "team-b-writer"
session_duration = "2h"
"#;

    #[test]
    fn routes_carry_their_own_target_and_role() {
        let routes = parse_ok(TWO_ROUTES);
        assert_eq!(routes.len(), 2);
        let a = &routes[0];
        assert_eq!(a.name, "team-a");
        assert_eq!(a.paths[0].path, "/team-a/api/v1/write");
        assert_eq!(a.paths[0].label, "/team-a/api/v1/write");
        assert_eq!(a.region, "us-east-1");
        assert_eq!(a.upstream.path, "/workspaces/ws-a/api/v1/remote_write");
        let role = a.role.as_ref().unwrap();
        assert_eq!(role.arn, "arn:aws:iam::111111111111:role/account_a_role");
        assert_eq!(role.external_id.as_deref(), Some("ext-a"));
        assert_eq!(role.session_name, "amp-rw-proxy-host-1");
        let b = &routes[1];
        assert_eq!(b.region, "eu-west-1");
        assert!(b.role.is_none(), "no role_arn: base credentials");
        assert!(b.inbound_auth.is_none());
    }

    #[test]
    fn session_settings_of_a_route_override_the_flags() {
        let text = TWO_ROUTES.replace(
            "region = \"eu-west-1\"",
            "region = \"eu-west-1\"\nrole_arn = \"arn:aws:iam::222222222222:role/b\"",
        );
        let routes = parse_ok(&text);
        let role = routes[1].role.as_ref().unwrap();
        assert_eq!(role.session_name, "team-b-writer");
        assert_eq!(role.session_duration, Duration::from_secs(7200));
    }

    #[test]
    fn unknown_keys_are_errors_with_their_line() {
        let text = TWO_ROUTES.replace("external_id = \"ext-a\"", "externl_id = \"ext-a\"");
        let errors = parse_err(&text);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("routes.toml:7:1: ") && errors[0].contains("externl_id"),
            "{errors:?}"
        );
        let errors = parse_err("[server]\nport = 1\n");
        assert!(errors[0].starts_with("routes.toml:1:"), "{errors:?}");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let errors = parse_err("[[route]]\nname = \"a\"\npath = /x\n");
        assert!(errors[0].starts_with("routes.toml:3:"), "{errors:?}");
    }

    #[test]
    fn every_semantic_error_is_reported_with_its_line() {
        let text = r#"
[[route]]
name = "team a"
path = "team-a/write"
upstream_url = "ftp://example.com/x"
role_arn = "arn:aws:s3:::bucket"
session_duration = "5m"

[[route]]
name = "b"
path = "/metrics"
upstream_url = "https://aps-workspaces.us-east-1.amazonaws.com/workspaces/ws-b/api/v1/remote_write"
external_id = "x"

[[route]]
name = "b"
path = "/b"
upstream_url = "http://127.0.0.1:9000/api/v1/write"
inbound_bearer_token_file = "does-not-exist"
"#;
        let errors = parse_err(text);
        let expect = [
            ("routes.toml:3:8: name \"team a\"", "must be"),
            (
                "routes.toml:4:8: path \"team-a/write\"",
                "must start with /",
            ),
            ("routes.toml:5:16: upstream_url", "scheme"),
            ("routes.toml:6:12: role_arn", "expected arn:aws:iam"),
            ("routes.toml:7:20: session_duration", "between 15m and 12h"),
            (
                "routes.toml:11:8: path \"/metrics\"",
                "proxy's own endpoints",
            ),
            ("routes.toml:13:15: external_id", "2 to 1224"),
            (
                "routes.toml:13:15: external_id is set but role_arn is not",
                "",
            ),
            (
                "routes.toml:16:8: name \"b\" is already used",
                "routes.toml:10:8",
            ),
            ("routes.toml:18:16: region is required", "AWS_REGION"),
            (
                "routes.toml:19:29: inbound_bearer_token_file",
                "/etc/does-not-exist",
            ),
        ];
        for (start, contains) in expect {
            assert!(
                errors
                    .iter()
                    .any(|e| e.starts_with(start) && e.contains(contains)),
                "no {start:?}…{contains:?} in {errors:#?}"
            );
        }
        assert_eq!(errors.len(), expect.len(), "{errors:#?}");
    }

    #[test]
    fn duplicate_paths_and_empty_files_are_refused() {
        let text = TWO_ROUTES.replace("/team-b/api/v1/write", "/team-a/api/v1/write");
        let errors = parse_err(&text);
        assert!(
            errors[0].starts_with("routes.toml:11:8: path \"/team-a/api/v1/write\" is already used by the route at routes.toml:4:8"),
            "{errors:?}"
        );
        let errors = parse_err("# nothing\n");
        assert!(errors[0].contains("no routes"), "{errors:?}");
    }

    #[test]
    fn per_route_auth_reads_files_relative_to_the_routes_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.token"), "secret-a\n").unwrap();
        std::fs::write(dir.path().join("b.pass"), "pw\n").unwrap();
        let text = TWO_ROUTES
            .replace(
                "external_id = \"ext-a\"",
                "external_id = \"ext-a\"\ninbound_bearer_token_file = \"a.token\"",
            )
            .replace(
                "region = \"eu-west-1\"",
                "region = \"eu-west-1\"\ninbound_basic_auth_user = \"b\"\ninbound_basic_auth_password_file = \"b.pass\"",
            );
        let mut errors = Vec::new();
        let routes = parse("r.toml", &text, dir.path(), &defaults(), &mut errors).unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            routes[0].inbound_auth,
            Some(crate::config::InboundAuth::Bearer {
                token_file: dir.path().join("a.token")
            })
        );
        assert!(matches!(
            &routes[1].inbound_auth,
            Some(crate::config::InboundAuth::Basic { user, .. }) if user == "b"
        ));
    }

    #[test]
    fn line_and_column_count_characters() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("é\nx", 3), (2, 1));
    }
}
