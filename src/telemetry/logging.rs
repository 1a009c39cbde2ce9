//! Logging setup: `tracing` to stderr, text or JSON, verbosity from `RUST_LOG` (default `info`).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing_subscriber::EnvFilter;

/// Output format of the logs (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors in containers.
    Json,
}

/// The AWS SDK's own crates. Their warnings (a provider of the chain failing, say) end in a
/// `Debug` dump of the whole error; the proxy reports the same failures itself, readably.
/// They are held to errors unless `RUST_LOG` names them or asks for debug detail.
const SDK_TARGETS: [&str; 5] = [
    "aws_config",
    "aws_smithy_runtime",
    "aws_smithy_http_client",
    "aws_sdk_sts",
    "aws_smithy_runtime_api",
];

/// Installs the global subscriber. Call once, before anything logs.
pub fn init(format: LogFormat) {
    let filter = filter(std::env::var("RUST_LOG").ok().as_deref());
    // Colours only for a person at a terminal, never in files or log collectors.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}

/// `RUST_LOG` (default `info`), with the SDK's crates held to errors unless it asks for
/// `debug`/`trace` or names an `aws` target itself.
fn filter(rust_log: Option<&str>) -> EnvFilter {
    let spec = rust_log.filter(|s| !s.trim().is_empty()).unwrap_or("info");
    let mut filter = EnvFilter::try_new(spec).unwrap_or_else(|_| EnvFilter::new("info"));
    let wants_detail = ["debug", "trace", "aws"].iter().any(|w| spec.contains(w));
    if !wants_detail {
        for target in SDK_TARGETS {
            if let Ok(directive) = format!("{target}=error").parse() {
                filter = filter.add_directive(directive);
            }
        }
    }
    filter
}

/// Collapses text (an error chain, an upstream's message) to one line for logs, response
/// bodies and `check`'s report: every run of whitespace, newlines included, becomes one space.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// [`one_line`] of at most the first 256 bytes of an upstream's body, which may be binary or
/// long.
pub fn one_line_snippet(body: &[u8]) -> String {
    one_line(&String::from_utf8_lossy(&body[..body.len().min(256)]))
}

/// A throttled line's key: (route, reason).
pub type ThrottleKey = (&'static str, &'static str);

/// Lets one log line through per key and interval, counting the ones held back: an upstream
/// refusing every write (a series limit, say) would otherwise log once per request.
#[derive(Debug)]
pub struct LogThrottle {
    interval: Duration,
    /// Per key: when a line last went through, and how many were held back since.
    last: Mutex<HashMap<ThrottleKey, (Instant, u64)>>,
}

impl LogThrottle {
    /// One line per key per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(lines held back since the last one)` if a line for `key` may be logged now.
    pub fn admit(&self, key: ThrottleKey, now: Instant) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match last.get_mut(&key) {
            Some((at, held)) if now.duration_since(*at) < self.interval => {
                *held += 1;
                None
            }
            Some((at, held)) => {
                let suppressed = *held;
                *at = now;
                *held = 0;
                Some(suppressed)
            }
            None => {
                last.insert(key, (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_throttle_lets_one_line_through_per_key_and_interval() {
        let throttle = LogThrottle::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let key = ("default", "series_limit");
        assert_eq!(throttle.admit(key, t0), Some(0));
        assert_eq!(throttle.admit(key, t0 + Duration::from_secs(1)), None);
        assert_eq!(throttle.admit(key, t0 + Duration::from_secs(2)), None);
        assert_eq!(
            throttle.admit(("default", "label_length"), t0),
            Some(0),
            "keys are independent"
        );
        assert_eq!(throttle.admit(key, t0 + Duration::from_secs(10)), Some(2));
        assert_eq!(throttle.admit(key, t0 + Duration::from_secs(11)), None);
    }

    #[test]
    fn sdk_warnings_are_held_back_unless_asked_for() {
        let shown = |spec: Option<&str>| filter(spec).to_string();
        assert!(shown(None).contains("aws_config=error"));
        assert!(shown(Some("info")).contains("aws_config=error"));
        assert!(shown(Some("warn,amp_rw_proxy=info")).contains("aws_smithy_runtime=error"));
        assert!(!shown(Some("debug")).contains("aws_config=error"));
        assert!(!shown(Some("info,aws_config=debug")).contains("aws_config=error"));
    }
}
