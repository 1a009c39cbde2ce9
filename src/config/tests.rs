//! Unit tests of configuration validation (flags).

use super::inbound::*;
use super::targets::parse_upstream;
use super::validate::*;
use super::*;
use clap::Parser;
use http::HeaderValue;

fn env() -> Environment {
    Environment {
        aws_region: None,
        hostname: "host-1".into(),
        proxy: Default::default(),
    }
}

fn cli(args: &[&str]) -> Cli {
    let mut all = vec!["amp-rw-proxy"];
    all.extend_from_slice(args);
    Cli::try_parse_from(all).expect("clap parses")
}

const URL: &str =
    "https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-1/api/v1/remote_write";

#[test]
fn enable_query_derives_the_workspace_query_endpoint() {
    let off = Config::from_cli(&cli(&["--upstream-url", URL]), &env()).unwrap();
    assert!(off.routes[0].query.is_none());
    let on = Config::from_cli(&cli(&["--upstream-url", URL, "--enable-query"]), &env()).unwrap();
    assert_eq!(
        on.routes[0].query.as_ref().unwrap().base_path(),
        "/workspaces/ws-1"
    );
    assert_eq!(on.routes[0].query_prefixes, ["", "/workspaces/ws-1"]);
    let odd = "https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-1/api/v1/write";
    let err =
        Config::from_cli(&cli(&["--upstream-url", odd, "--enable-query"]), &env()).unwrap_err();
    assert_eq!(err.0.len(), 1, "{err}");
    assert!(err.0[0].contains("--enable-query"), "{err}");
    // Without --enable-query that URL is fine.
    assert!(Config::from_cli(&cli(&["--upstream-url", odd]), &env()).is_ok());
}

#[test]
fn minimal_config_uses_documented_defaults() {
    let c = Config::from_cli(&cli(&["--upstream-url", URL]), &env()).unwrap();
    assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(c.routes[0].region, "eu-west-1");
    assert!(c.routes[0].role.is_none());
    assert_eq!(c.max_body_size, 32 << 20);
    assert_eq!(c.upstream_timeout, Duration::from_secs(30));
    assert_eq!(c.shutdown_grace, Duration::from_secs(25));
    assert_eq!(c.drain_delay, Duration::from_secs(5));
    assert_eq!(c.retry_deadline, Duration::from_secs(20));
    assert_eq!(c.throttle_status, http::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(c.max_in_flight_requests, 256);
    assert_eq!(c.max_in_flight_bytes, 64 << 20);
    assert_eq!(c.client_header_timeout, Duration::from_secs(30));
    assert_eq!(c.client_body_timeout, Duration::from_secs(30));
    assert_eq!(
        c.routes[0].upstream.path,
        "/workspaces/ws-1/api/v1/remote_write"
    );
    assert_eq!(
        c.routes[0].upstream.host_header,
        "aps-workspaces.eu-west-1.amazonaws.com"
    );
}

#[test]
fn role_defaults() {
    let c = Config::from_cli(
        &cli(&[
            "--upstream-url",
            URL,
            "--role-arn",
            "arn:aws:iam::111111111111:role/account_a_role",
        ]),
        &env(),
    )
    .unwrap();
    let role = c.routes[0].role.clone().unwrap();
    assert_eq!(role.session_name, "amp-rw-proxy-host-1");
    assert_eq!(role.session_duration, Duration::from_secs(3600));
}

#[test]
fn every_error_is_reported_at_once() {
    let errs = Config::from_cli(
        &cli(&[
            "--listen",
            "nonsense",
            "--session-duration",
            "5m",
            "--role-arn",
            "arn:aws:s3:::bucket",
            "--max-body-size",
            "12 parsecs",
            "--log-format",
            "xml",
            "--session-name",
            "has space",
        ]),
        &env(),
    )
    .unwrap_err();
    let all = errs.0.join("\n");
    for flag in [
        "--listen",
        "--upstream-url",
        "--session-duration",
        "--role-arn",
        "--max-body-size",
        "--log-format",
        "--session-name",
    ] {
        assert!(all.contains(flag), "no error for {flag} in:\n{all}");
    }
}

#[test]
fn region_falls_back_to_aws_region_then_errors() {
    let local = ["--upstream-url", "http://127.0.0.1:9000/api/v1/write"];
    let e = Environment {
        aws_region: Some("ap-south-1".into()),
        hostname: "h".into(),
        proxy: Default::default(),
    };
    assert_eq!(
        Config::from_cli(&cli(&local), &e).unwrap().routes[0].region,
        "ap-south-1"
    );
    let errs = Config::from_cli(&cli(&local), &env()).unwrap_err();
    assert!(errs.0[0].contains("--region"), "{errs}");
    // An explicit flag beats the host.
    let c = Config::from_cli(
        &cli(&["--upstream-url", URL, "--region", "us-west-2"]),
        &env(),
    )
    .unwrap();
    assert_eq!(c.routes[0].region, "us-west-2");
}

#[test]
fn upstream_url_is_normalised_and_checked() {
    let ok = parse_upstream("--upstream-url", "https://h.example:443/p").unwrap();
    assert_eq!(ok.host_header, "h.example");
    assert_eq!(ok.uri.to_string(), "https://h.example/p");
    let port = parse_upstream("--upstream-url", "http://127.0.0.1:9000").unwrap();
    assert_eq!(port.host_header, "127.0.0.1:9000");
    assert_eq!(port.path, "/");
    assert!(port.plaintext);
    for bad in [
        "ftp://h/p",
        "/just/a/path",
        "https://user:pw@h/p",
        "https://h/p?x=1",
        "not a url",
    ] {
        assert!(
            parse_upstream("--upstream-url", bad).is_err(),
            "{bad} accepted"
        );
    }
}

#[test]
fn session_names_fit_sts_rules() {
    assert_eq!(
        default_session_name("node.local"),
        "amp-rw-proxy-node.local"
    );
    assert_eq!(
        default_session_name("we ird/name"),
        "amp-rw-proxy-we-ird-name"
    );
    let pod = "prometheus-kube-prometheus-stack-prometheus-shard-with-a-very-long-name-0";
    let name = default_session_name(pod);
    assert_eq!(name.len(), 64);
    assert!(name.starts_with("amp-rw-proxy-"));
    assert!(
        name.ends_with("-long-name-0"),
        "keeps the distinguishing suffix: {name}"
    );
    assert!(validate_session_name("--session-name", &name).is_ok());
    assert_eq!(default_session_name(""), "amp-rw-proxy-unknown");
    // Host and pod names as they come: every result is a name STS accepts.
    for (host, want) in [
        (
            "ip-10-0-1-23.ec2.internal",
            "amp-rw-proxy-ip-10-0-1-23.ec2.internal",
        ),
        ("prometheus-0", "amp-rw-proxy-prometheus-0"),
        ("hôte_ünïcode", "amp-rw-proxy-h-te_-n-code"),
        ("a:b;c", "amp-rw-proxy-a-b-c"),
        ("user@host+1=2,3", "amp-rw-proxy-user@host+1=2,3"),
    ] {
        let name = default_session_name(host);
        assert_eq!(name, want, "{host}");
        assert!(
            validate_session_name("--session-name", &name).is_ok(),
            "{name}"
        );
    }
    let long = "x".repeat(300);
    assert_eq!(default_session_name(&long).len(), 64);
    // A name given by the user is checked, not repaired.
    for (name, ok) in [
        ("ab", true),
        ("a", false),
        (&"n".repeat(64)[..], true),
        (&"n".repeat(65)[..], false),
        ("team-b/writer", false),
        ("team b", false),
        ("tëam", false),
        ("team_b+1=2,3.4@5-6", true),
    ] {
        let r = validate_session_name("--session-name", name);
        assert_eq!(r.is_ok(), ok, "{name}: {r:?}");
        if let Err(e) = r {
            assert!(e.starts_with("--session-name ") && !e.contains('\n'), "{e}");
        }
    }
}

#[test]
fn sizes_parse() {
    assert_eq!(parse_size("f", "32MiB"), Ok(32 << 20));
    assert_eq!(parse_size("f", "512KiB"), Ok(512 << 10));
    assert_eq!(parse_size("f", "10MB"), Ok(10_000_000));
    assert_eq!(parse_size("f", "1048576"), Ok(1_048_576));
    assert!(parse_size("f", "MiB").is_err());
    assert!(parse_size("f", "99999999999GiB").is_err());
}

#[test]
fn a_broken_ca_file_is_a_config_error() {
    let dir = std::env::temp_dir().join(format!("amp-rw-proxy-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let broken = dir.join("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "no pem here").unwrap();
    for (file, why) in [
        (&broken, "certificate #1"),
        (&empty, "no PEM certificates"),
        (&dir.join("missing.pem"), ""),
    ] {
        let args = [
            "--upstream-url",
            URL,
            "--upstream-ca-file",
            file.to_str().unwrap(),
        ];
        let errs = Config::from_cli(&cli(&args), &env()).unwrap_err();
        assert!(
            errs.0[0].contains("--upstream-ca-file") && errs.0[0].contains(why),
            "{errs}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn resilience_settings_are_checked_together() {
    let errs = Config::from_cli(
        &cli(&[
            "--upstream-url",
            URL,
            "--throttle-status",
            "500",
            "--max-in-flight-bytes",
            "1MiB",
            "--drain-delay",
            "30s",
            "--retry-deadline",
            "0s",
            "--max-in-flight-requests",
            "0",
        ]),
        &env(),
    )
    .unwrap_err();
    let all = errs.0.join("\n");
    for flag in [
        "--throttle-status",
        "--max-in-flight-bytes",
        "--drain-delay",
        "--retry-deadline",
        "--max-in-flight-requests",
    ] {
        assert!(all.contains(flag), "no error for {flag} in:\n{all}");
    }
}

#[test]
fn inbound_auth_flags_are_checked() {
    let dir = std::env::temp_dir().join(format!("amp-rw-proxy-cfg-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, "t0ken").unwrap();
    let empty = dir.join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let t = token.to_str().unwrap();
    let ok = Config::from_cli(
        &cli(&["--upstream-url", URL, "--inbound-bearer-token-file", t]),
        &env(),
    )
    .unwrap();
    assert_eq!(
        ok.inbound_auth,
        Some(InboundAuth::Bearer {
            token_file: token.clone()
        })
    );
    let cases: Vec<Vec<&str>> = vec![
        vec!["--inbound-bearer-token-file", empty.to_str().unwrap()],
        vec!["--inbound-bearer-token-file", "/nonexistent/token"],
        vec![
            "--inbound-bearer-token-file",
            t,
            "--inbound-basic-auth-user",
            "u",
        ],
        vec!["--inbound-basic-auth-user", "u"],
        vec![
            "--inbound-basic-auth-user",
            "a:b",
            "--inbound-basic-auth-password-file",
            t,
        ],
    ];
    for extra in cases {
        let mut args = vec!["--upstream-url", URL];
        args.extend(&extra);
        let errs = Config::from_cli(&cli(&args), &env()).unwrap_err();
        assert!(
            errs.0.iter().any(|e| e.contains("--inbound")),
            "{extra:?}: {errs}"
        );
        assert!(!errs.to_string().contains("t0ken"), "secret in the error");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn remote_write_defaults_are_off_and_32mib() {
    let c = Config::from_cli(&cli(&["--upstream-url", URL]), &env()).unwrap();
    assert!(!c.remote_write.validate);
    assert_eq!(c.remote_write.max_decoded_size, 32 << 20);
    assert!(c.remote_write.external_labels.is_empty());
    assert!(!c.remote_write.accounting, "--accounting defaults to off");
    assert!(c.remote_write.is_blind());
    let on = Config::from_cli(&cli(&["--upstream-url", URL, "--accounting", "on"]), &env());
    assert!(on.unwrap().remote_write.accounting);
    let bad = Config::from_cli(
        &cli(&["--upstream-url", URL, "--accounting", "yes"]),
        &env(),
    );
    assert!(bad.unwrap_err().0[0].contains("--accounting \"yes\": expected on or off"));
    let c = Config::from_cli(
        &cli(&[
            "--upstream-url",
            URL,
            "--validate",
            "--max-decoded-size",
            "1MiB",
            "--external-label",
            "region=eu",
            "--external-label",
            "cluster=a",
        ]),
        &env(),
    )
    .unwrap();
    assert!(c.remote_write.validate);
    assert_eq!(c.remote_write.max_decoded_size, 1 << 20);
    let labels: Vec<_> = c.remote_write.external_labels.pairs().collect();
    assert_eq!(
        labels,
        [("cluster", "a"), ("region", "eu")],
        "sorted by name"
    );
}

#[test]
fn bad_external_labels_are_all_reported_with_the_other_errors() {
    let errs = Config::from_cli(
        &cli(&[
            "--upstream-url",
            URL,
            "--external-label",
            "__name__=x",
            "--external-label",
            "1bad=x",
            "--external-label",
            "novalue",
            "--external-label",
            "dup=a",
            "--external-label",
            "dup=b",
            "--external-label",
            "empty=",
            "--max-decoded-size",
            "lots",
            "--listen",
            "nope",
        ]),
        &env(),
    )
    .unwrap_err();
    let all = errs.0.join("\n");
    for needle in [
        "__name__=x: __name__ cannot be set",
        "\"1bad\": invalid label name",
        "\"novalue\": expected NAME=VALUE",
        "dup: given more than once",
        "empty=: empty value",
        "--max-decoded-size",
        "--listen",
    ] {
        assert!(all.contains(needle), "no {needle:?} in:\n{all}");
    }
    // A reserved-looking name other than __name__ is fine (e.g. Cortex's __replica__).
    assert!(
        Config::from_cli(
            &cli(&["--upstream-url", URL, "--external-label", "__replica__=r1"]),
            &env()
        )
        .is_ok()
    );
}

#[test]
fn external_labels_come_comma_separated_from_the_environment() {
    // clap reads the variable itself; parse with an explicit env via try_parse_from is not
    // possible, so check the delimiter on the command line, which shares the parser.
    let c = Config::from_cli(
        &cli(&["--upstream-url", URL, "--external-label", "b=2,a=1,"]),
        &env(),
    )
    .unwrap();
    let labels: Vec<_> = c.remote_write.external_labels.pairs().collect();
    assert_eq!(labels, [("a", "1"), ("b", "2")]);
}

#[test]
fn external_id_needs_a_role() {
    let errs = Config::from_cli(
        &cli(&["--upstream-url", URL, "--external-id", "abc"]),
        &env(),
    )
    .unwrap_err();
    assert!(errs.0.iter().any(|e| e.contains("--external-id")), "{errs}");
}

#[test]
fn external_id_is_not_in_debug_output() {
    let c = Config::from_cli(
        &cli(&[
            "--upstream-url",
            URL,
            "--role-arn",
            "arn:aws:iam::111111111111:role/r",
            "--external-id",
            "very-private-id",
        ]),
        &env(),
    )
    .unwrap();
    assert!(!format!("{c:?}").contains("very-private-id"));
}

#[test]
fn the_flags_describe_one_route_on_the_standard_paths_and_the_upstream_path() {
    let c = Config::from_cli(&cli(&["--upstream-url", URL]), &env()).unwrap();
    assert_eq!(c.routes.len(), 1);
    let r = &c.routes[0];
    assert_eq!(r.name, DEFAULT_ROUTE);
    let paths: Vec<(&str, &str)> = r.paths.iter().map(|p| (p.path.as_str(), p.label)).collect();
    assert_eq!(
        paths,
        [
            ("/api/v1/write", "/api/v1/write"),
            ("/api/v1/remote_write", "/api/v1/remote_write"),
            ("/workspaces/ws-1/api/v1/remote_write", "upstream_path"),
        ]
    );
    // An upstream path equal to a standard one is not listed twice.
    let local = Config::from_cli(
        &cli(&[
            "--upstream-url",
            "http://127.0.0.1:9/api/v1/write",
            "--region",
            "us-east-1",
        ]),
        &env(),
    )
    .unwrap();
    assert_eq!(local.routes[0].paths.len(), 2);
}

#[test]
fn a_routes_file_excludes_the_route_flags_and_its_errors_join_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.toml");
    std::fs::write(
        &file,
        "[[route]]\nname = \"a\"\npath = \"/a\"\nupstream_url = \"https://x\"\nrole_arn = \"nope\"\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let errs = Config::from_cli(
        &cli(&[
            "--config",
            f,
            "--upstream-url",
            URL,
            "--role-arn",
            "x",
            "--log-format",
            "xml",
        ]),
        &env(),
    )
    .unwrap_err();
    let all = errs.0.join("\n");
    assert!(
        all.contains("--upstream-url and --config exclude each other"),
        "{all}"
    );
    assert!(
        all.contains("--role-arn and --config exclude each other"),
        "{all}"
    );
    assert!(all.contains("--log-format"), "{all}");
    assert!(
        all.contains(&format!("{f}:5:12: role_arn \"nope\"")),
        "{all}"
    );
    assert!(
        all.contains(&format!("{f}:4:16: region is required")),
        "{all}"
    );
    assert_eq!(errs.0.len(), 5, "{all}");

    let missing =
        Config::from_cli(&cli(&["--config", "/nonexistent/routes.toml"]), &env()).unwrap_err();
    assert!(
        missing.0[0].starts_with("--config /nonexistent/routes.toml: "),
        "{missing}"
    );
}

#[test]
fn with_the_read_path_routes_file_paths_give_distinct_query_prefixes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.toml");
    let route = |name: &str, path: &str| {
        format!("[[route]]\nname = \"{name}\"\npath = \"{path}\"\nupstream_url = \"{URL}\"\n")
    };
    let write = |routes: &[(&str, &str)]| {
        let text: String = routes.iter().map(|(n, p)| route(n, p)).collect();
        std::fs::write(&file, text).unwrap();
    };
    let f = file.to_str().unwrap();
    write(&[
        ("a", "/a/api/v1/write"),
        ("b", "/b/api/v1/remote_write"),
        ("c", "/api/v1/write"),
    ]);
    let c = Config::from_cli(&cli(&["--config", f, "--enable-query"]), &env()).unwrap();
    let prefixes: Vec<&[String]> = c.routes.iter().map(|r| &r.query_prefixes[..]).collect();
    assert_eq!(prefixes, [["/a"], ["/b"], [""]]);
    assert!(c.routes.iter().all(|r| r.query.is_some()));

    write(&[
        ("a", "/a/api/v1/write"),
        ("b", "/a/api/v1/remote_write"),
        ("c", "/c/ingest"),
    ]);
    let errs = Config::from_cli(&cli(&["--config", f, "--enable-query"]), &env()).unwrap_err();
    let all = errs.0.join("\n");
    assert!(
        all.contains(
            "route \"b\": --enable-query: its query paths /a/api/v1/... would be route \"a\"'s too"
        ),
        "{all}"
    );
    assert!(
        all.contains("route \"c\": --enable-query needs a path ending in /api/v1/write"),
        "{all}"
    );
    assert_eq!(errs.0.len(), 2, "{all}");
    // Without the read path these paths are fine.
    assert!(Config::from_cli(&cli(&["--config", f]), &env()).is_ok());
}

#[test]
fn workspace_base_from_the_remote_write_url() {
    let up = |url: &str| {
        let uri: http::Uri = url.parse().unwrap();
        UpstreamTarget {
            host_header: HeaderValue::from_str(uri.authority().unwrap().as_str()).unwrap(),
            path: uri.path().to_string(),
            plaintext: uri.scheme_str() == Some("http"),
            uri,
        }
    };
    let t = QueryTarget::from_upstream(&up(
        "https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-1/api/v1/remote_write",
    ))
    .unwrap();
    assert_eq!(t.base_path(), "/workspaces/ws-1");
    assert_eq!(t.origin, "https://aps-workspaces.eu-west-1.amazonaws.com");
    let t = QueryTarget::from_upstream(&up("http://127.0.0.1:9/w/api/v1/remote_write")).unwrap();
    assert_eq!(t.origin, "http://127.0.0.1:9");
    assert_eq!(t.base_path(), "/w");
    assert!(QueryTarget::from_upstream(&up("https://example.com/api/v1/write")).is_err());
}
