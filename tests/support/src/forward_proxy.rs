//! A real forward proxy for the egress tests: Debian's `tinyproxy` (installed by
//! `tests/peers/install.sh`) on loopback, with its own configuration and access log in a
//! temporary directory; killed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::free_port;

/// A running tinyproxy.
pub struct Tinyproxy {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// How the proxy is set up.
#[derive(Default)]
pub struct TinyproxyOptions<'a> {
    /// `BasicAuth user password`: 407 without them.
    pub basic_auth: Option<(&'a str, &'a str)>,
    /// `ConnectPort` lines: CONNECT only to these ports (none: any port).
    pub connect_ports: &'a [u16],
}

impl Tinyproxy {
    /// Starts tinyproxy and waits for it to accept connections (its log says so).
    pub fn start(options: TinyproxyOptions<'_>) -> Self {
        let binary = which("tinyproxy").unwrap_or_else(|| {
            panic!(
                "tinyproxy not found: install the test peers with `bash tests/peers/install.sh` \
                 (Debian's tinyproxy package)"
            )
        });
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.log");
        let port = free_port();
        let mut conf = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 30\nLogFile \"{}\"\nLogLevel Info\n\
             MaxClients 50\nAllow 127.0.0.1\nDisableViaHeader Yes\n",
            log.display()
        );
        if let Some((user, password)) = options.basic_auth {
            conf.push_str(&format!("BasicAuth {user} {password}\n"));
        }
        for p in options.connect_ports {
            conf.push_str(&format!("ConnectPort {p}\n"));
        }
        let conf_path = dir.path().join("tinyproxy.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(binary)
            .arg("-d")
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tinyproxy starts");
        let proxy = Self {
            child,
            port,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !proxy.log().contains("Accepting connections") {
            assert!(
                Instant::now() < deadline,
                "tinyproxy did not start:\n{}",
                proxy.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        proxy
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `http://user:password@127.0.0.1:PORT`.
    pub fn url_with(&self, user: &str, password: &str) -> String {
        format!("http://{user}:{password}@127.0.0.1:{}", self.port)
    }

    /// Its log so far (one line per connection and per request, e.g.
    /// `Request (file descriptor 6): CONNECT localhost:4443 HTTP/1.1`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The request lines it received (`CONNECT host:port HTTP/1.1`, `POST http://… HTTP/1.1`).
    pub fn requests(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter_map(|l| l.split_once("): ").filter(|_| l.contains("Request (")))
            .map(|(_, r)| r.to_string())
            .collect()
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("----- tinyproxy log -----\n{}", self.log());
        }
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .chain(["/usr/bin", "/usr/sbin"])
        .map(|d| PathBuf::from(d).join(name))
        .find(|p| p.is_file())
}
