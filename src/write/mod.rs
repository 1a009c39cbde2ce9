//! The write path: one remote-write request from the sender to the workspace and its answer
//! back. Remote-write 1.0/2.0 specs: <https://prometheus.io/docs/specs/prw/remote_write_spec/>
//! and <https://prometheus.io/docs/specs/prw/remote_write_spec_2_0/>.
//!
//! In order: the headers say which protocol ([`inspect::check_request_headers`]); admission
//! takes a request slot and the body's bytes from the budget, and the body is read within
//! bounds; the payload is counted, validated or rewritten as configured ([`inspect::payload`]);
//! then [`send::with_retries`] builds the outbound request fresh ([`outbound`]), signs it and
//! sends it, retrying what the pure policy in [`retry`] calls retryable until the retry deadline,
//! and relays the upstream's answer.

pub mod context;
pub mod forward;
pub mod inspect;
pub mod outbound;
pub mod retry;
pub mod send;

pub use context::{Destination, WriteContext, WriteSettings};
pub use forward::forward;
