//! The paths the proxy answers on by itself, named once: the routes file may not take them, the
//! router matches them, and the metrics label requests with them.

/// Paths remote-write is accepted on (besides the upstream URL's own path) by the route the
/// flags describe.
pub const WRITE_PATHS: [&str; 2] = ["/api/v1/write", "/api/v1/remote_write"];

/// The proxy's metrics (OpenMetrics text).
pub const METRICS: &str = "/metrics";
/// Liveness: 200 while the process serves.
pub const HEALTHY: &str = "/-/healthy";
/// Readiness: 200 once every route holds valid credentials, 503 while draining.
pub const READY: &str = "/-/ready";
/// The proxy's own endpoints; no route may take them.
pub const OWN_ENDPOINTS: [&str; 3] = [METRICS, HEALTHY, READY];
