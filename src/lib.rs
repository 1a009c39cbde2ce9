//! amp-rw-proxy: a Prometheus remote-write proxy for Amazon Managed Service for Prometheus
//! workspaces in another AWS account.
//!
//! # The house, top to bottom
//! Each layer imports only from the layers below it, never from a module of its own row or a
//! higher one (`tests/layers.rs` holds the same rows and fails on any import that runs upward,
//! sideways or in a circle).
//!
//! | layer | module | concern |
//! |---|---|---|
//! | 8 | [`cli`] | the command line: serving flags and subcommands |
//! | 7 | [`ops`] | `check` (the credential chain, step by step), `policies` (IAM documents), `probe` (the image's health check) |
//! | 7 | [`app`] | wiring: configuration → routes, credentials, router; serve and drain |
//! | 6 | [`router`] | a request → the write path, the read path or the proxy's own endpoints |
//! | 5 | [`write`] | the write path: inspect, build the outbound request, sign, send with retries |
//! | 5 | [`query`] | the read path (`--enable-query`): allowlisted query API, signed and streamed |
//! | 4 | [`http`] | bodies, responses, the error→status map, admission, upstream client (and its way out through the egress proxy) and what both paths forward with, inbound auth and TLS, server |
//! | 3 | [`aws`] | SDK credential chain and AssumeRole (STS region and endpoint, the SDK's client through the egress proxy), credential cache and refresher, SigV4, clock |
//! | 2 | [`config`] | flags, routes file, validation, endpoint forms, the egress proxy settings, the paths the proxy answers on |
//! | 1 | [`telemetry`] | metrics registry and its label types, `process_*` metrics, logging |
//! | 0 | [`remote_write`] | the remote-write payload: decode, count, validate, rewrite |
//!
//! # One write request
//! [`http::server`] accepts the connection and hands the request to the [`app`]'s service: the
//! request-metrics layer ([`telemetry::metrics::RequestMetrics`]) around the [`router::Router`].
//! The router matches the path to a route and checks inbound authentication
//! ([`http::auth`]), then calls [`write::forward`]: the headers are checked
//! ([`write::inspect`]), admission takes a slot and reads the body within its budget
//! ([`http::admission`], [`http::body`], which hashes it once), the payload is counted or
//! rewritten if configured ([`remote_write`]), and [`write::send`] builds the outbound request
//! ([`write::outbound`]), signs it with the route's cached credentials ([`aws::signing`],
//! [`aws::credentials`]) and sends it on the pooled client ([`http::upstream`]), retrying as
//! [`write::retry`] decides. The upstream's answer — or our failure, through
//! [`http::error::ProxyError::into_response`] — goes back to the sender.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod app;
pub mod aws;
pub mod cli;
pub mod config;
pub mod http;
pub mod ops;
pub mod query;
pub mod remote_write;
pub mod router;
pub mod telemetry;
pub mod write;
