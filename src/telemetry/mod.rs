//! What the gateway tells operators: Prometheus metrics and `tracing` logs. Both are
//! leaves: they import nothing of the request path (label sets are passed in).

pub(crate) mod access;
pub mod logging;
pub mod metrics;
