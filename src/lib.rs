//! # sessiongate
//!
//! A reverse-proxy authentication gateway on Pingora: each request's bearer token is
//! resolved to an [`identity::Identity`] by an identity provider (through a cache), and the
//! request is forwarded upstream with identity headers the backend can trust.
//!
//! # Layout
//!
//! In the order a request meets them (the stages), then what assembles and serves them.
//!
//! **Connection and request** — what arrives, read one way only:
//! - [`connection`]: limits on client connections (count, header deadline, idle), below
//!   Pingora's HTTP layer.
//! - [`proxy`]: the Pingora `ProxyHttp` phases; `request_filter` runs the steps below.
//! - [`canonical`]: the one reading of method, host, path and headers that is both
//!   authorized and forwarded; what has no single reading is refused.
//! - [`route`]: longest-prefix routing on the canonical path and host.
//! - [`forwarded`]: the client address (trusted proxies, `X-Forwarded-For`) and what the
//!   upstream is told about it.
//!
//! **Decision** — allow or refuse, in one function:
//! - [`decision`]: path → route → network rules → token → provider → cache → policy;
//!   the proxy and the admin `explain` both call it. Owns [`decision::Outcome`].
//! - [`token`]: reading the bearer token; the keyed hash that stands for it everywhere.
//! - [`cache`]: token key → identity (entry, purge index, miss limiter), negative caching,
//!   single-flight misses, refresh-ahead, stale-if-error.
//! - [`provider`]: identity providers — [`provider::ProviderSpec`] (plain data from the
//!   config) built into live providers: `static`, HTTP session endpoints by preset, `jwt`;
//!   wrapped by `metered` (metrics) and `guard` (concurrency bound, breaker).
//! - [`identity`]: what a token resolves to.
//! - [`policy`]: scopes and IP rules, judged on every request (pure functions).
//! - [`net`]: IP addresses and CIDR blocks (IPv4-mapped rules read as IPv4).
//!
//! **Answer** — what leaves the gateway:
//! - [`headers`]: client header hygiene and the identity headers.
//! - [`assertion`]: signed identity assertions (JWT) for upstreams.
//! - [`respond`]: the JSON error responses the gateway writes itself.
//! - [`echo`]: the built-in `echo` upstream.
//!
//! **Around the request path:**
//! - [`config`]: the YAML file (`file`), strictly parsed and validated (`validate`,
//!   `providers`, `http_provider`, `jwt_provider`) into plain-data [`config::Settings`]:
//!   no clients, no sockets.
//! - [`state`]: a configuration built into a [`state::Snapshot`] (live providers, routes),
//!   swapped whole on reload; what the proxy and admin listeners share.
//! - [`gateway`]: assembling and running the Pingora server.
//! - [`admin`]: the admin listeners: `/healthz`, `/readyz`, `/metrics`,
//!   `/.well-known/jwks.json`, and the admin API (purge, explain, reload) in `admin::api`.
//! - [`metrics`]: the Prometheus metrics (a leaf: imports nothing of the request path).
//! - [`logging`]: `tracing` setup. [`clock`]: the time decisions are made on.
//! - [`secret`]: secret values that never show in `Debug`.
//!
//! Where things go: a new **provider kind** is a [`provider::ProviderKind`] variant (its
//! name in `as_str`), its keys in `config::file::kind_keys`, and — for an HTTP kind — a
//! preset in `provider::presets` (`Preset::for_kind` is an exhaustive match, so the
//! compiler lists what is missing). A new **policy rule** is a `policy` check plus its
//! `Denial`, mapped to an [`decision::Outcome`]. A new **admin endpoint** is a match arm
//! in `admin::api`.
#![forbid(unsafe_code)]

pub mod admin;
pub mod clock;
pub mod config;
pub mod gateway;
pub mod identity;
pub mod policy;
pub mod provider;
pub mod proxy;
pub mod secret;
pub mod state;
pub mod telemetry;

pub use gateway::{Gateway, GatewayHandle};
