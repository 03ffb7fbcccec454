//! The wall clock the identity cache and the provider breakers decide with.
//!
//! moka keeps its own clock (it does not follow tokio's paused time), so freshness, the
//! stale budget, refresh-ahead and breaker cool-downs are decided on this clock instead;
//! moka only bounds how long an entry may be *stored*. Tests use [`ManualClock`] to step
//! through time without sleeping.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Whole Unix seconds of `t` (before 1970: 0): how rules see times (`now`, `expires_at`,
/// time claims).
pub(crate) fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Whole seconds of `d`, rounded up: a wait or a grace period said in seconds is never
/// shorter than the real one.
pub(crate) fn ceil_seconds(d: std::time::Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// A source of "now".
pub trait Clock: Send + Sync + Debug {
    fn now(&self) -> SystemTime;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<SystemTime>>);

impl ManualClock {
    /// A clock reading the current system time, frozen there.
    pub fn new() -> Self {
        ManualClock(Arc::new(Mutex::new(SystemTime::now())))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        *lock(&self.0) += by;
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *lock(&self.0)
    }
}

/// Locks `m`, also after a panic elsewhere poisoned it: every mutex in the gateway guards
/// plain values that are consistent between statements (a counter, a bucket, an index),
/// so the request path has no reason to fail on a poisoned lock.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The shared clock handle.
pub type SharedClock = Arc<dyn Clock>;

/// The system clock as a [`SharedClock`].
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}
