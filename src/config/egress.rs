//! The egress proxy: the forward proxy that both the workspace client and the SDK's STS client
//! go through, from `--egress-proxy` or the environment (`HTTPS_PROXY`, `HTTP_PROXY`,
//! `ALL_PROXY`, `NO_PROXY`, each also in lower case, read as curl and the AWS SDKs read them).
//!
//! Resolved here once, so that the two clients can never disagree about which proxy a host
//! goes through, and so that a bad proxy URL is a configuration error at startup rather than a
//! proxy silently not used (the matcher underneath ignores values it cannot parse).

/// Hosts that never go through the proxy whatever `NO_PROXY` says: the link-local addresses
/// of EC2 instance metadata (IPv4 and IPv6), the ECS container credentials endpoint and the
/// EKS Pod Identity agent. A forward proxy cannot reach them (they are local to the instance
/// or pod), and the base credential chain needs them.
pub const ALWAYS_DIRECT: &str =
    "169.254.169.254,fd00:ec2::254,169.254.170.2,169.254.170.23,fd00:ec2::23";

/// A forward proxy URL, normalised to `http://host:port`, its credentials (if any) kept apart
/// so that nothing prints them by accident: [`std::fmt::Display`] and [`std::fmt::Debug`] show
/// `http://user:***@host:port`.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    /// `http://host:port`.
    origin: String,
    /// `user:password` exactly as written in the URL (percent-encoded).
    credentials: Option<String>,
}

impl ProxyUrl {
    /// Parses a proxy URL as written in `--egress-proxy` or an environment variable (`what`
    /// names it in errors): `http://[user:password@]host[:port]`, the scheme optional (curl's
    /// default is http) and the port defaulting to 80. The error never repeats the password.
    pub fn parse(what: &str, raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let (scheme, rest) = match raw.split_once("://") {
            Some((s, rest)) => (s.to_ascii_lowercase(), rest),
            None => ("http".to_string(), raw),
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let (credentials, host_port) = match authority.rsplit_once('@') {
            Some((userinfo, host_port)) => (Some(userinfo.to_string()), host_port),
            None => (None, authority),
        };
        let shown = match &credentials {
            Some(c) => format!("{scheme}://{}:***@{host_port}", user_of(c)),
            None => format!("{scheme}://{host_port}"),
        };
        let err = |why: &str| format!("{what} {shown:?}: {why}");
        if scheme != "http" {
            return Err(err(
                "only http:// forward proxies are supported (TLS to AWS runs inside the \
                 proxy's CONNECT tunnel; the hop to the proxy itself is plain TCP)",
            ));
        }
        let uri: http::uri::Authority = host_port
            .parse()
            .map_err(|_| err("expected http://[user:password@]host:port"))?;
        if uri.host().is_empty() {
            return Err(err("missing host"));
        }
        if credentials
            .as_deref()
            .is_some_and(|c| user_of(c).is_empty())
        {
            return Err(err("credentials need a user name (user:password@)"));
        }
        let port = uri.port_u16().unwrap_or(80);
        Ok(Self {
            origin: format!("http://{}:{port}", uri.host()),
            credentials,
        })
    }

    /// `http://host:port`, without credentials.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The URL with its credentials, for the proxy matchers only (never for logs).
    pub fn with_credentials(&self) -> String {
        match &self.credentials {
            Some(c) => self.origin.replacen("http://", &format!("http://{c}@"), 1),
            None => self.origin.clone(),
        }
    }

    /// Whether the URL carries `user:password@`.
    pub fn has_credentials(&self) -> bool {
        self.credentials.is_some()
    }
}

fn user_of(credentials: &str) -> &str {
    credentials.split(':').next().unwrap_or_default()
}

impl std::fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.credentials {
            Some(c) => write!(
                f,
                "{}",
                self.origin
                    .replacen("http://", &format!("http://{}:***@", user_of(c)), 1)
            ),
            None => f.write_str(&self.origin),
        }
    }
}

impl std::fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProxyUrl({self})")
    }
}

/// Which proxy each kind of destination goes through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Egress {
    /// For `https://` destinations (CONNECT tunnel).
    pub https: Option<ProxyUrl>,
    /// For `http://` destinations (the request forwarded in absolute form).
    pub http: Option<ProxyUrl>,
    /// Bypass rules, curl's syntax: host names (`example.com` and `.example.com` both match the
    /// domain and its subdomains), IP addresses, CIDR ranges, `*` for everything. Always ends
    /// with [`ALWAYS_DIRECT`].
    pub no_proxy: String,
    /// Where the proxy came from (`--egress-proxy`, `HTTPS_PROXY`, …), for the startup log.
    pub source: String,
}

impl Egress {
    /// No proxy at all.
    pub fn direct() -> Self {
        Self {
            no_proxy: ALWAYS_DIRECT.to_string(),
            ..Self::default()
        }
    }

    /// Whether any destination goes through a proxy.
    pub fn is_active(&self) -> bool {
        self.https.is_some() || self.http.is_some()
    }
}

/// The proxy variables of the environment, each with the name it was found under.
#[derive(Debug, Clone, Default)]
pub struct ProxyEnvironment {
    /// `HTTPS_PROXY` or `https_proxy`.
    pub https_proxy: Option<(&'static str, String)>,
    /// `HTTP_PROXY` or `http_proxy`.
    pub http_proxy: Option<(&'static str, String)>,
    /// `ALL_PROXY` or `all_proxy`.
    pub all_proxy: Option<(&'static str, String)>,
    /// `NO_PROXY` or `no_proxy`.
    pub no_proxy: Option<String>,
}

impl ProxyEnvironment {
    /// Reads the process environment: upper case first, then lower case — the order of
    /// hyper-util's matcher, which the AWS SDK's own client uses, so both agree. An empty value
    /// counts as unset (as curl does).
    pub fn from_process() -> Self {
        let get = |names: [&'static str; 2]| {
            names.into_iter().find_map(|n| {
                std::env::var(n)
                    .ok()
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| (n, v))
            })
        };
        Self {
            https_proxy: get(["HTTPS_PROXY", "https_proxy"]),
            http_proxy: get(["HTTP_PROXY", "http_proxy"]),
            all_proxy: get(["ALL_PROXY", "all_proxy"]),
            no_proxy: get(["NO_PROXY", "no_proxy"]).map(|(_, v)| v),
        }
    }
}

/// The egress proxy: `--egress-proxy` for every destination if given, else the environment's
/// `HTTPS_PROXY`/`HTTP_PROXY` (each falling back to `ALL_PROXY`); `NO_PROXY` applies either
/// way (as with curl's `--proxy`).
pub fn resolve(flag: Option<&str>, env: &ProxyEnvironment) -> Result<Egress, Vec<String>> {
    let mut errors = Vec::new();
    let mut parse = |what: &str, raw: &str| match ProxyUrl::parse(what, raw) {
        Ok(p) => Some(p),
        Err(e) => {
            errors.push(e);
            None
        }
    };
    let mut no_proxy = env.no_proxy.clone().unwrap_or_default();
    if !no_proxy.trim().is_empty() {
        no_proxy.push(',');
    }
    no_proxy.push_str(ALWAYS_DIRECT);
    let egress = match flag {
        Some(raw) => {
            let p = parse("--egress-proxy", raw);
            Egress {
                https: p.clone(),
                http: p,
                no_proxy,
                source: "--egress-proxy".to_string(),
            }
        }
        None => {
            let pick = |own: &Option<(&'static str, String)>| own.clone().or(env.all_proxy.clone());
            let https = pick(&env.https_proxy);
            let http = pick(&env.http_proxy);
            let source = [&https, &http]
                .into_iter()
                .flatten()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>();
            let mut source = source;
            source.dedup();
            Egress {
                https: https.and_then(|(n, v)| parse(n, &v)),
                http: http.and_then(|(n, v)| parse(n, &v)),
                no_proxy,
                source: source.join(", "),
            }
        }
    };
    // curl's `NO_PROXY=*` bypasses the proxy for every host; hyper-util's matcher applies `*`
    // to host names only, not to IP addresses, so `*` is taken here to mean no proxy at all.
    let everything_direct = env
        .no_proxy
        .as_deref()
        .is_some_and(|n| n.split(',').any(|r| r.trim() == "*"));
    let egress = if everything_direct && egress.is_active() {
        Egress {
            source: egress.source,
            ..Egress::direct()
        }
    } else {
        egress
    };
    if errors.is_empty() {
        Ok(egress)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_are_normalised_and_never_show_their_password() {
        for (raw, origin, shown) in [
            (
                "http://proxy.corp:3128",
                "http://proxy.corp:3128",
                "http://proxy.corp:3128",
            ),
            (
                "proxy.corp:3128",
                "http://proxy.corp:3128",
                "http://proxy.corp:3128",
            ),
            (
                "http://proxy.corp",
                "http://proxy.corp:80",
                "http://proxy.corp:80",
            ),
            (
                "HTTP://10.0.0.1:8080/",
                "http://10.0.0.1:8080",
                "http://10.0.0.1:8080",
            ),
            (
                "http://[::1]:3128",
                "http://[::1]:3128",
                "http://[::1]:3128",
            ),
            (
                "http://alice:s%40cret@proxy.corp:3128",
                "http://proxy.corp:3128",
                "http://alice:***@proxy.corp:3128",
            ),
        ] {
            let p = ProxyUrl::parse("--egress-proxy", raw).unwrap();
            assert_eq!(p.origin(), origin, "{raw}");
            assert_eq!(p.to_string(), shown, "{raw}");
            assert_eq!(format!("{p:?}"), format!("ProxyUrl({shown})"));
        }
        let p = ProxyUrl::parse("x", "http://alice:s%40cret@proxy.corp:3128").unwrap();
        assert_eq!(
            p.with_credentials(),
            "http://alice:s%40cret@proxy.corp:3128"
        );
    }

    #[test]
    fn bad_proxy_urls_are_one_line_errors_without_the_password() {
        for (raw, needle) in [
            ("https://alice:hunter2@proxy.corp:3128", "only http://"),
            ("socks5://proxy.corp:1080", "only http://"),
            ("http://alice:hunter2@:3128", "missing host"),
            ("http://pro xy:3128", "expected http://"),
            ("http://:hunter2@proxy:3128", "user name"),
        ] {
            let e = ProxyUrl::parse("HTTPS_PROXY", raw).unwrap_err();
            assert!(e.starts_with("HTTPS_PROXY "), "{e}");
            assert!(e.contains(needle), "{raw}: {e}");
            assert!(!e.contains("hunter2"), "{e}");
            assert!(!e.contains('\n'));
        }
    }

    fn env(pairs: &[(&'static str, &str)]) -> ProxyEnvironment {
        let get = |n: &str| {
            pairs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(k, v)| (*k, v.to_string()))
        };
        ProxyEnvironment {
            https_proxy: get("HTTPS_PROXY"),
            http_proxy: get("HTTP_PROXY"),
            all_proxy: get("ALL_PROXY"),
            no_proxy: get("NO_PROXY").map(|(_, v)| v),
        }
    }

    #[test]
    fn the_flag_wins_over_the_environment_and_no_proxy_applies_to_both() {
        let e = resolve(
            Some("http://p:1"),
            &env(&[("HTTPS_PROXY", "http://q:2"), ("NO_PROXY", "internal")]),
        )
        .unwrap();
        assert_eq!(e.https.as_ref().unwrap().origin(), "http://p:1");
        assert_eq!(e.http.as_ref().unwrap().origin(), "http://p:1");
        assert_eq!(e.source, "--egress-proxy");
        assert_eq!(e.no_proxy, format!("internal,{ALWAYS_DIRECT}"));
    }

    #[test]
    fn environment_variables_in_either_case_with_all_proxy_as_the_fallback() {
        let e = resolve(None, &env(&[("https_proxy", "http://q:2")])).unwrap();
        assert_eq!(e.https.as_ref().unwrap().origin(), "http://q:2");
        assert_eq!(e.http, None);
        assert_eq!(e.source, "https_proxy");
        let e = resolve(
            None,
            &env(&[("ALL_PROXY", "http://a:3"), ("HTTP_PROXY", "http://h:4")]),
        )
        .unwrap();
        assert_eq!(e.https.as_ref().unwrap().origin(), "http://a:3");
        assert_eq!(e.http.as_ref().unwrap().origin(), "http://h:4");
        assert_eq!(e.source, "ALL_PROXY, HTTP_PROXY");
        let e = resolve(None, &env(&[])).unwrap();
        assert!(!e.is_active());
        assert_eq!(e, Egress::direct());
        let errs = resolve(
            None,
            &env(&[
                ("HTTPS_PROXY", "https://x:1"),
                ("HTTP_PROXY", "socks5://y:2"),
            ]),
        )
        .unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
    }

    #[test]
    fn no_proxy_star_means_no_proxy_for_anything() {
        let e = resolve(Some("http://p:1"), &env(&[("no_proxy", "internal, *")])).unwrap();
        assert!(!e.is_active());
        assert_eq!(e.source, "--egress-proxy", "named in the log as unused");
        let none = resolve(None, &env(&[("NO_PROXY", "*")])).unwrap();
        assert_eq!(none.source, "");
    }
}
