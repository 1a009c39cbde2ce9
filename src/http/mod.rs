//! HTTP plumbing both paths stand on: reading bodies within bounds ([`body`]), the response body
//! ([`response`]), the one map from failures to status codes ([`error`]), admission control
//! ([`admission`]), the pooled upstream client ([`upstream`]) and its way out through an egress
//! proxy ([`egress`]), inbound authentication
//! ([`auth`]) and TLS ([`tls`]), the server with its drain ([`server`]), and header helpers
//! ([`headers`]).

pub mod admission;
pub mod auth;
pub mod body;
pub mod connection_limit;
pub mod egress;
pub mod error;
pub mod forwarding;
pub mod headers;
pub mod response;
pub mod server;
pub mod tls;
pub mod upstream;

pub use error::{Failure, ProxyError};
pub use forwarding::Forwarding;
pub use response::ResponseBody;
