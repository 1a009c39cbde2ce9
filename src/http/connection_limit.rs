//! At most so many upstream connections per destination host.
//!
//! hyper-util's pool races a new connection against the next idle one, and when the idle one
//! wins it still finishes the new connection and pools it. Over HTTP/1.1 with hundreds of
//! writes in flight that snowballs: in `benches/tls.py`, 1,000 senders left 4,478 TLS
//! connections to the sink, about 140 MiB of buffers, for 1,000 writes in flight at most. Each
//! connection therefore takes a slot of its host for its whole life, from before the TCP
//! connect to its close (the connector, [`super::egress::EgressConnector`], keeps it in the
//! stream); with every slot taken, a request waits for a pooled connection to come free (within
//! `--upstream-timeout`) instead of opening one more. Tested with the connector in `egress.rs`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::Uri;
use tokio::sync::Semaphore;

/// The connection slots of each destination `host:port`, `per_host` each.
#[derive(Clone, Debug)]
pub struct HostSlots {
    per_host: usize,
    hosts: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
}

impl HostSlots {
    /// `per_host` slots for each destination (at least 1).
    pub fn new(per_host: usize) -> Self {
        Self {
            per_host: per_host.clamp(1, Semaphore::MAX_PERMITS),
            hosts: Arc::default(),
        }
    }

    /// The slots of `dst`'s host and port; a connection holds one of them while it is open.
    pub fn for_host(&self, dst: &Uri) -> Arc<Semaphore> {
        let key = format!(
            "{}:{}",
            dst.host().unwrap_or_default(),
            dst.port_u16().unwrap_or(0)
        );
        // Routes are configured up front, so the map holds one entry per workspace host.
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        hosts
            .entry(key)
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_host)))
            .clone()
    }
}
