//! The real binary as a child process: its output collected line by line, its address taken
//! from its "listening" log line (the readiness signal for the port), killed when dropped.
//! The test builds the `Command` (only a test target knows `CARGO_BIN_EXE_amp-rw-proxy`).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// A started binary.
pub struct Running {
    /// The process.
    pub child: Child,
    /// Where it listens, from its log (`0.0.0.0:PORT` when it listens on every interface).
    pub addr: SocketAddr,
    /// Everything it wrote to stdout and stderr so far.
    pub logs: Arc<Mutex<String>>,
}

impl Running {
    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The output so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// SIGTERM, then its exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        self.child.wait().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `cmd` and waits (up to 20 s) for its "listening" line.
pub fn spawn(mut cmd: Command) -> Running {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    let logs = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = mpsc::channel();
    for stream in [
        Box::new(child.stderr.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stdout.take().unwrap()),
    ] {
        let (logs, tx) = (logs.clone(), tx.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if line.contains("listening") {
                    if let Some(addr) = listen_addr(&line) {
                        let _ = tx.send(addr);
                    }
                }
                let mut l = logs.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
    }
    let addr = match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(a) => a,
        Err(_) => panic!("no listening line; logs:\n{}", logs.lock().unwrap()),
    };
    Running { child, addr, logs }
}

/// `listen=127.0.0.1:1234` (text) or `"listen":"127.0.0.1:1234"` (JSON).
pub fn listen_addr(line: &str) -> Option<SocketAddr> {
    let rest = line
        .split_once("listen=")
        .or_else(|| line.split_once("\"listen\":\""))?
        .1;
    let end = rest.find([' ', '"']).unwrap_or(rest.len());
    rest[..end].parse().ok()
}
