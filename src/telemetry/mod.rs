//! What the proxy tells its operators: the metrics registry served on `GET /metrics`
//! ([`metrics`], with its own label types, and the `process_*` metrics of [`process`]) and
//! the log setup ([`logging`]).

pub mod logging;
pub mod metrics;
pub mod process;

pub use logging::{LogFormat, LogThrottle, one_line, one_line_snippet};
pub use metrics::Metrics;
