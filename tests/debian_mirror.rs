//! tests/peers/debian-mirror.sh: the Debian mirror tests/peers/install.sh fetches Prometheus 3.x
//! from is the one in the machine's own apt sources (classic and deb822), never a host written
//! into the project; without one it fails with one line. Each case is a throwaway apt
//! configuration (`APT_CONFIG` pointing `Dir::Etc` at a temp dir), read by the real `apt-config`.

use std::path::Path;
use std::process::Command;

/// The release codename the script matches suites against, as it reads it.
fn codename() -> String {
    let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    os.lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "stable".to_string())
}

/// Runs the script against an apt configuration holding exactly `files` (name → content) in
/// place of /etc/apt; returns (exit code, stdout, stderr).
fn mirror_with(files: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(etc.join("sources.list.d")).unwrap();
    std::fs::create_dir_all(etc.join("apt.conf.d")).unwrap();
    for (name, content) in files {
        std::fs::write(etc.join(name), content).unwrap();
    }
    let conf = dir.path().join("apt.conf");
    std::fs::write(&conf, format!("Dir::Etc \"{}/\";\n", etc.display())).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/debian-mirror.sh");
    let out = Command::new("bash")
        .arg(script)
        .env("APT_CONFIG", &conf)
        .output()
        .expect("bash runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

#[test]
fn deb822_sources_give_the_release_suites_uri_not_security_nor_third_parties() {
    let c = codename();
    let sources = format!(
        "Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\nComponents: main\n\n\
         # a comment between stanzas\n\
         Types: deb\nURIs: http://mirror.test/debian-security\nSuites: {c}-security\nComponents: main\n\n\
         Types: deb\nEnabled: no\nURIs: http://disabled.test/debian\nSuites: {c}\nComponents: main\n\n\
         types: deb-src deb\nURIs:\n  http://mirror.test/debian\n  http://second.test/debian\n\
         Suites: {c}-updates\n {c}\nComponents: main\n"
    );
    let (code, out, err) = mirror_with(&[("sources.list.d/debian.sources", &sources)]);
    assert_eq!(code, Some(0), "stderr: {err}");
    assert_eq!(out, "http://mirror.test/debian");
}

#[test]
fn classic_lines_with_options_and_comments_are_read() {
    let c = codename();
    let list = format!(
        "# deb http://commented.test/debian {c} main\n\
         deb-src http://source-only.test/debian {c} main\n\
         deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] http://mirror.test/debian-security {c}-security main\n\
         deb [ arch=amd64 ] http://classic.test/debian {c} main contrib # trailing comment\n"
    );
    let (code, out, err) = mirror_with(&[("sources.list", &list)]);
    assert_eq!(code, Some(0), "stderr: {err}");
    assert_eq!(out, "http://classic.test/debian");
}

#[test]
fn sources_list_comes_before_the_parts_directory_as_apt_reads_them() {
    let c = codename();
    let (code, out, err) = mirror_with(&[
        (
            "sources.list",
            &format!("deb http://first.test/debian {c} main\n"),
        ),
        (
            "sources.list.d/debian.sources",
            &format!("Types: deb\nURIs: http://second.test/debian\nSuites: {c}\n"),
        ),
    ]);
    assert_eq!(code, Some(0), "stderr: {err}");
    assert_eq!(out, "http://first.test/debian");
}

#[test]
fn no_debian_archive_in_apt_sources_fails_with_one_line_and_no_made_up_host() {
    let c = codename();
    let (code, out, err) = mirror_with(&[
        (
            "sources.list.d/other.sources",
            &format!(
                "Types: deb\nURIs: https://packages.cloud.test/apt\nSuites: cloud-sdk-{c}\n\n\
                 Types: deb\nURIs: http://mirror.test/debian-security\nSuites: {c}-security\n"
            ),
        ),
        // apt ignores files without .list/.sources; so does the script.
        (
            "sources.list.d/debian.sources.disabled",
            &format!("Types: deb\nURIs: http://disabled.test/debian\nSuites: {c}\n"),
        ),
    ]);
    assert_eq!(code, Some(1));
    assert_eq!(out, "", "nothing printed as a mirror");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("no Debian mirror in this machine's apt sources"),
        "{err}"
    );
    assert!(!err.contains("deb.debian.org"), "{err}");
}
