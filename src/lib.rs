//! # sessiongate
//!
//! A reverse-proxy authentication gateway on Pingora: each request's bearer token is
//! resolved to an [`identity::Identity`] by an identity provider (through a cache), and the
//! request is forwarded upstream with identity headers the backend can trust.
//!
//! # Layout
//!
//! - [`config`]: the YAML file, strictly parsed, validated into [`config::Settings`].
//! - [`token`]: reading the bearer token; the keyed hash that stands for it everywhere.
//! - [`provider`]: identity providers (`static`, and HTTP session endpoints by preset).
//! - [`cache`]: token key → identity, with negative caching and single-flight misses.
//! - [`canonical`]: the one reading of method, host, path and headers that is both
//!   authorized and forwarded; what has no single reading is refused.
//! - [`route`]: longest-prefix routing on the canonical path and host.
//! - [`policy`]: scopes and IP rules, judged on every request (pure functions).
//! - [`forwarded`]: the client address (trusted proxies, `X-Forwarded-For`).
//! - [`headers`]: client header hygiene and the identity headers.
//! - [`proxy`]: the Pingora `ProxyHttp` phases that tie the above together.
//! - [`respond`]: the JSON error responses the gateway writes itself.
//! - [`echo`]: the built-in `echo` upstream.
//! - [`admin`]: the admin listeners: `/healthz`, `/readyz`, `/metrics`,
//!   `/.well-known/jwks.json`, and the admin API (purge, explain, reload) in `admin::api`.
//! - [`assertion`]: signed identity assertions (JWT) for upstreams.
//! - [`metrics`]: the Prometheus metrics.
//! - [`connection`]: limits on client connections (count, header deadline, idle).
//! - [`gateway`]: assembling and running the Pingora server.
//! - [`logging`]: `tracing` setup.
//! - [`net`]: IP addresses and CIDR blocks.
//! - [`secret`]: secret values that never show in `Debug`.
#![forbid(unsafe_code)]

pub mod admin;
pub mod assertion;
pub mod cache;
pub mod canonical;
pub mod clock;
pub mod config;
pub mod connection;
pub mod decision;
pub mod echo;
pub mod forwarded;
pub mod gateway;
pub mod headers;
pub mod identity;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod policy;
pub mod provider;
pub mod proxy;
pub mod respond;
pub mod route;
pub mod secret;
pub mod state;
pub mod token;

pub use gateway::{Gateway, GatewayHandle};
