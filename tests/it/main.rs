//! The integration tests, as one binary (one link of Pingora instead of eleven). Each
//! module starts the gateway in-process with fake providers and upstreams that are real
//! HTTP(S) servers on 127.0.0.1 (see [`support`]), or runs the real binary.
//!
//! | module | what it covers |
//! |---|---|
//! | `gateway` | the request path end to end against a BitGo-style provider |
//! | `canonical` | issue #13 row by row: canonical requests, connection limits, admin listener |
//! | `policy` | scopes, method scopes, IP rules, trusted proxies, report-only mode |
//! | `presets` | every provider preset against its documented answers |
//! | `providers` | the generic `http` kind, HTTPS, timeouts, failures |
//! | `jwt` | local JWT verification, key rotation, JWKS outages |
//! | `resilience` | stale-if-error, breaker, pre-check, miss limit, purge, explain, reload |
//! | `assertion` | signed identity assertions and their JWKS |
//! | `config` | `--check` on every shipped config and on bad ones |
//! | `process` | the binary: SIGTERM, logs without tokens, `--healthcheck` |
//! | `direct` | the lean request path and the hand-over to the full proxy on one connection |
//! | `dashboard` | the Grafana dashboard's queries name real metrics |
//! | `tls` | the TLS listener (SNI, versions, rotation, handshake limits), HTTP/2 by ALPN and h2c, hostile requests over HTTP/1.1 and HTTP/2 alike |
//! | `rules` | path templates, scopes from the path, `require_organization`, CEL `rules:` |
//! | `token_sources` | tokens from cookies and named headers, one credential, CSRF on cookies |
//! | `decision` | decision mode's HTTP front door: front proxies' headers, refusals, spoofing |

mod support;

mod assertion;
mod canonical;
mod config;
mod dashboard;
mod decision;
mod direct;
mod docs;
mod gateway;
mod jwt;
mod limits;
mod policy;
mod presets;
mod process;
mod providers;
mod resilience;
mod rule_shapes;
mod rules;
mod tls;
mod token_sources;
