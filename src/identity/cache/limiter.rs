//! The per-client cache-miss limiter (`cache.client_miss_rate`): a token bucket per client
//! address, so one client cannot turn random tokens into provider load.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use moka::future::Cache;

use crate::clock::{lock, SharedClock};

/// A token bucket per client address, for `client_miss_rate`.
pub(super) struct MissLimiter {
    pub(super) rate: f64,
    pub(super) burst: f64,
    pub(super) buckets: Cache<IpAddr, Arc<Mutex<(f64, SystemTime)>>>,
    pub(super) clock: SharedClock,
}

impl MissLimiter {
    pub(super) async fn allow(&self, client: IpAddr) -> bool {
        let now = self.clock.now();
        let bucket = self
            .buckets
            .get_with(client, async { Arc::new(Mutex::new((self.burst, now))) })
            .await;
        let mut b = lock(&bucket);
        // A clock stepped back refills nothing (and never panics).
        let elapsed = now.duration_since(b.1).unwrap_or_default();
        b.0 = (b.0 + elapsed.as_secs_f64() * self.rate).min(self.burst);
        b.1 = now;
        if b.0 >= 1.0 {
            b.0 -= 1.0;
            true
        } else {
            false
        }
    }
}
