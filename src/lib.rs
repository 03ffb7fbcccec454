//! # sessiongate
//!
//! A reverse-proxy authentication gateway on Pingora: each request's bearer token is
//! resolved to an [`identity::Identity`] by an identity provider (through a cache), and the
//! request is forwarded upstream with identity headers the backend can trust.
//!
//! # Layout
//!
//! Folders follow the request. Stages, top to bottom (an arrow is "imports"; nothing
//! imports upward, there are no circles, and `python3 tools/import_graph.py` — run by
//! `.ci/run` — fails when either changes, when a file passes 800 lines or a function 120
//! (declarative tables listed there), when two types share a name, or when these numbers
//! are not the tree's; today: 99 files on 8 floors, 16 stages on 8):
//!
//! ```text
//! gateway ─▶ state ─▶ config ─▶ proxy ─▶ decision ─▶ policy ─▶ identity ─▶ telemetry, clock, secret, wire_name
//!    └─────▶ admin ─────────────────┘
//! ```
//!
//! **[`proxy`]** — the mechanics of the request path, in the order a request meets them:
//! - `connection/`: limits on client connections (count, header deadline, idle), below
//!   Pingora's HTTP layer (`mod`: the connection loop; `deadlines`: the stream wrapper,
//!   which keeps each request head's bytes for a hand-over; `memory`: giving memory back
//!   after a burst).
//! - `direct` ([`proxy::direct::Direct`]): the gateway's HTTP application. A request
//!   whose forwarding needs no framing decision (HTTP/1.1, no body, no upgrade, no
//!   hop-by-hop header) is served directly over pooled upstream connections; every other
//!   one is handed, unread, to Pingora's full proxy.
//! - `mod` ([`proxy::Proxy`]): the steps both paths share (`filter`: named steps from
//!   the request id to the echo upstream; `prepare_upstream_request`; `fail`;
//!   `log_request`); `phases`: the Pingora `ProxyHttp` phases that call them; `context`:
//!   what a request carries ([`proxy::RequestCtx`]).
//! - `headers`, `forwarded`, `outgoing`, `echo`: what leaves the gateway — client header
//!   hygiene and identity headers, `X-Forwarded-*`, the upstream request as written, the
//!   built-in `echo` upstream.
//! - `front`: decision mode's front door — a front proxy's description of a request
//!   (`X-Original-*`, `X-Forwarded-*`) read into the request judged, and the "yes" it gets
//!   (the identity headers); the same `filter` decides.
//! - `shared`: [`proxy::shared::GatewayState`] and its [`proxy::shared::Snapshot`], what
//!   the request path and the admin listeners share (cache, hasher, metrics, clock, the
//!   configuration in force); `GatewayState::decider` hands the decision what it reads.
//!   Nothing process-wide: the cluster link, the certificate store and reloads are the
//!   assembly's ([`state::Process`]).
//!
//! **[`decision`]** — whether a request goes upstream, and as whom; no I/O but the
//! identity cache's lookup:
//! - `mod`: [`decision::decide`], the list of steps — canonical form → route → network
//!   rules → methods → client certificate → credential → same origin → provider →
//!   identity (cache, provider) → policy → rules → rate limits — each a small function
//!   that records what it found; the proxy and the admin `explain` both call it with a
//!   [`decision::Decider`] (`explain`'s does not count requests in rate limits).
//! - `limit`: the rate-limit step — each policy's key read from the identity or the
//!   request, its tier chosen, the request counted (429 over the limit).
//! - `refused`: [`decision::refused::Refused`], the one refusal type: every reason a
//!   request is not forwarded, each knowing its outcome label and response (`respond`: the
//!   JSON error bodies and RFC 6750 challenges).
//! - `canonical`: the one reading of method, host, path and headers that is both
//!   authorized and forwarded; what has no single reading is refused.
//! - `route`: [`decision::route::Route`] (its config spec plus resolved providers and
//!   upstream) and longest-prefix routing on the canonical path and host.
//! - `client`: the client address (trusted proxies, `X-Forwarded-For`).
//!
//! **[`identity`]** — who a token belongs to: [`identity::Identity`] and
//! [`identity::ProviderId`]; `token` (reading the bearer token, the keyed hash that stands
//! for it); `cache/` (entry, purge index, miss limiter; negative caching, single-flight,
//! refresh-ahead, stale-if-error; `tier`: the interface of the tier replicas share,
//! which `cluster` implements); `provider/` (the provider kinds built from plain-data
//! [`identity::provider::ProviderSpec`]s: `static`, HTTP session endpoints by preset,
//! `jwt`, wrapped by `metered` and `guard`). It is the heaviest folder because each
//! provider kind has its own file; the request path only meets `Provider::resolve`.
//! `assertion`: the signed identity assertion a route can send upstream: minted from an
//! identity, cached per identity and key.
//!
//! **[`policy`]** — scopes and IP rules judged on every request (pure functions); `net`:
//! IP addresses and CIDR blocks (IPv4-mapped rules read as IPv4).
//!
//! **[`limits`]** — rate-limit policies and their counters: GCRA per key (governor's),
//! 8-byte states in a bounded sharded map (`local`), kept across reloads for unchanged policies
//! ([`limits::Limiters`]); with `cluster:`, counted in Redis through the
//! [`limits::SharedCounter`] `cluster` implements, and locally at a replica's share when
//! Redis cannot answer. Keys arrive as keyed hashes; the decision derives them.
//!
//! **Around the request path:** [`config`] (the YAML file strictly parsed and validated
//! into plain-data [`config::Settings`]: specs only, no clients, no sockets; `validate/`
//! by section — listeners and the rest in `mod`, `provider`, `upstream`, `route`,
//! `limits`, `cluster`, `decision` — each with its unit tests, every independent error reported); [`state`]
//! (the assembly: settings → snapshot, and [`state::Process`]: the cluster link, the
//! certificate store, reloads); [`reload`] (how a reload is asked for — a request and
//! its answer on a channel the assembly serves — so the admin API needs no upward path); [`gateway`] (the Pingora server);
//! [`admin`] (`/healthz`, `/readyz`, `/metrics`, JWKS; the admin API in `admin::api`,
//! `explain`'s serializable trace in `admin::explain`); [`wire_name`] (header names the
//! gateway writes, spelled once); [`telemetry`] (metrics, logging:
//! leaves); [`clock`] (the time decisions are made on); [`secret`]; [`tls`] (the TLS listener's certificates: SNI choice, rotation; a leaf); [`cluster`] (replicas
//! sharing revocations through a Redis Stream, identities through sealed Redis values and
//! rate-limit counters: `link` the connection and breaker, `seal` the encryption,
//! `identities` the L2, `limits` the GCRA script and replica heartbeat, `settings` the
//! section and its derived keys).
//!
//! Visibility: `pub(crate)` by default; `pub` only for what the binary
//! (`src/bin/sessiongate.rs`), the integration tests (`tests/it`), the benches and the
//! fuzz targets use — the compiler lists what they need when an item is narrowed.
//!
//! Where things go:
//! - a new **provider kind** (3 files): a [`identity::provider::ProviderKind`] variant
//!   (its name in `as_str`) in `identity/provider/mod.rs`; in `config/file/provider.rs`,
//!   the struct of its keys (or an existing one: an HTTP kind takes `EndpointFile`) and
//!   its arm in `ProviderFile`'s `Deserialize`; for an HTTP kind a preset in
//!   `identity/provider/presets.rs` (`Deserialize` and `Preset::for_kind` are exhaustive
//!   matches, so the compiler lists what is missing);
//! - a new **policy rule** (3 files): its field in `RoutePolicy`, its check, `Denial`
//!   variant and `DenialKind` (label, status, client text) in `policy/mod.rs`; its key in
//!   `config/file/mod.rs`; its validation in `config/validate/route.rs`. The decision, metrics and
//!   `explain` take the rest from `DenialKind` (tried with a throwaway
//!   `require_organizations` rule: those three files, and it compiled);
//! - a new **refusal reason** (2 files): a [`decision::refused::Refused`] variant with its
//!   outcome and response in `decision/refused.rs` (a new outcome label is an `Outcome`
//!   variant in the same file), and the step that returns it in `decision/mod.rs`;
//! - a new **token source** (3 files): its `TokenSource` variant and extraction in
//!   `identity/token.rs`, its key in `config/file/mod.rs`, its validation in
//!   `config/validate/route.rs`; the decision's `credential` step takes it from there (a
//!   source the upstream must not receive also needs its removal in `proxy/mod.rs`'s
//!   `prepare_upstream_request`, as header and cookie sources have);
//! - a new **admin endpoint** (1 file): a match arm and its handler in `admin/api.rs`.
#![forbid(unsafe_code)]

pub mod admin;
pub mod clock;
pub(crate) mod cluster;
pub mod config;
pub mod decision;
pub mod gateway;
pub mod identity;
pub mod limits;
pub mod policy;

pub mod proxy;
pub(crate) mod reload;
pub(crate) mod secret;
pub(crate) mod state;
pub mod telemetry;
pub(crate) mod tls;
pub(crate) mod wire_name;

pub use gateway::{Gateway, GatewayHandle};
