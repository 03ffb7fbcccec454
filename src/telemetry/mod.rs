//! What the gateway tells operators: Prometheus metrics, `tracing` logs and OpenTelemetry
//! traces. All are leaves: they import nothing of the request path (label sets, ids and
//! attribute values are passed in).

pub(crate) mod access;
pub mod logging;
pub mod metrics;
/// The protobuf writer OTLP exports and Envoy ext_authz answers share.
pub(crate) mod protobuf;
pub mod trace;
