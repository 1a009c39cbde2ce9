//! What amp-rw-proxy's integration tests run against, by peer. Everything binds 127.0.0.1.
//!
//! In process (the `tests/*.rs` suites): [`sts`] and [`amp`] stand-ins, the [`proxy`] under
//! test, [`client`] helpers, a throwaway [`pki`], hand-built remote-write bodies ([`wire`]) and
//! the identities they agree on ([`accounts`]); the real [`binary`] as a child process; a real forward proxy ([`forward_proxy`], tinyproxy). As processes (the `tests/e2e` and `tests/faults`
//! suites): the [`harness`] — moto, Prometheus, the botocore AMP stand-in and the proxy binary.

pub mod accounts;
pub mod amp;
pub mod binary;
pub mod client;
pub mod forward_proxy;
pub mod harness;
pub mod pki;
pub mod proxy;
mod serve;
pub mod sts;
pub mod wire;
