//! Configuration: `sessiongate --check` on every shipped config, and bad configs rejected
//! with a message that names the key (and, where the parser knows it, the line).

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_sessiongate");

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

/// Issue #14: validating a config builds plain-data specs only — no HTTP client — for
/// every shipped config; building the live providers from those specs is where clients
/// are made (which also shows the counter counts).
#[test]
fn validating_builds_no_http_client() {
    use sessiongate::identity::provider::http::clients_built_on_this_thread;
    for (k, v) in [
        ("RFC7662_CLIENT_SECRET", "example-secret"),
        ("SERVICE_TOKEN", "example-service-token"),
        ("KRYSTAL_API_KEY", "example-krystal-key"),
        ("PREFACTOR_API_KEY", "example-prefactor-key"),
        ("SESSIONS_PASSWORD", "example-password"),
        ("INTROSPECTION_CLIENT_SECRET", "example-secret"),
        ("SESSIONGATE_ADMIN_TOKEN", "example-admin-token-0123456789"),
    ] {
        std::env::set_var(k, v);
    }
    let mut files = Vec::new();
    yaml_files(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("config")
            .as_path(),
        &mut files,
    );
    let before = clients_built_on_this_thread();
    let mut all = Vec::new();
    for file in &files {
        let settings =
            sessiongate::config::load(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        all.push(settings);
    }
    assert_eq!(
        clients_built_on_this_thread(),
        before,
        "validation built an HTTP client"
    );
    let http_providers = all
        .iter()
        .flat_map(|s| s.providers.values())
        .filter(|p| {
            !matches!(
                p.spec,
                sessiongate::identity::provider::ProviderSpec::Static(_)
            )
        })
        .inspect(|p| {
            p.spec.build(&sessiongate::clock::system()).unwrap();
        })
        .count();
    assert!(http_providers > 5);
    assert_eq!(clients_built_on_this_thread(), before + http_providers);
}

#[test]
fn check_accepts_every_shipped_config() {
    let mut files = Vec::new();
    yaml_files(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("config")
            .as_path(),
        &mut files,
    );
    assert!(!files.is_empty());
    for file in files {
        let out = Command::new(BIN)
            .arg("--config")
            .arg(&file)
            .arg("--check")
            // Example configs read their secrets from these.
            .env("RFC7662_CLIENT_SECRET", "example-secret")
            .env("SERVICE_TOKEN", "example-service-token")
            .env("KRYSTAL_API_KEY", "example-krystal-key")
            .env("PREFACTOR_API_KEY", "example-prefactor-key")
            .env("SESSIONS_PASSWORD", "example-password")
            .env("INTROSPECTION_CLIENT_SECRET", "example-secret")
            .env("SESSIONGATE_ADMIN_TOKEN", "example-admin-token-0123456789")
            .current_dir(file.parent().unwrap())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn check_text(text: &str) -> (i32, String) {
    let dir = std::env::temp_dir().join(format!(
        "sg-config-{}-{:x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.yaml");
    std::fs::write(&file, text).unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&file)
        .arg("--check")
        .env_remove("SG_UNSET_SECRET")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const BASE: &str = "listen: 127.0.0.1:18080\nadmin_listen: 127.0.0.1:19090\n";

#[test]
fn check_rejects_bad_configs_naming_the_key() {
    let table: &[(&str, &[&str])] = &[
        // Unknown keys, at every level, with their position.
        (
            "routes:\n  - { path_prefix: /, auth: none, upstream: echo }\nlisten_port: 1\n",
            &["listen_port", "line 5"],
        ),
        (
            "routes:\n  - path_prefix: /\n    provider: p\n    upstream: echo\n    require_scope: [a]\nproviders:\n  p: { kind: static, tokens: [{ token_sha256: 91c16f0d6cc1bec3c3603972182a07c66ff4fa71618a975e963d6dbe42b6dd37, identity: { subject: a } }] }\n",
            &["routes[0]", "require_scope", "line 7"],
        ),
        (
            "providers:\n  p:\n    kind: bitgo\n    url: http://127.0.0.1:1/s\n    timout: 2s\nroutes:\n  - { path_prefix: /, provider: p, upstream: echo }\n",
            &["providers.p", "timout", "line 7"],
        ),
        // Wrong values.
        (
            "cache: { ttl: 60 }\nroutes:\n  - { path_prefix: /, auth: none, upstream: echo }\n",
            &["cache.ttl", "60s"],
        ),
        (
            "cache: { ttl: 1minute }\nroutes:\n  - { path_prefix: /, auth: none, upstream: echo }\n",
            &["cache.ttl", "not a valid duration"],
        ),
        (
            "routes:\n  - { path_prefix: /, auth: maybe, upstream: echo }\n",
            &["routes[0].auth", "maybe"],
        ),
        (
            "providers:\n  p: { kind: keycloak, url: http://x }\nroutes:\n  - { path_prefix: /, auth: none, upstream: echo }\n",
            &["providers.p.kind", "keycloak"],
        ),
        // References.
        (
            "routes:\n  - { path_prefix: /, provider: nope, upstream: echo }\n",
            &["routes[0].provider", "nope"],
        ),
        (
            "routes:\n  - { path_prefix: /, auth: none, upstream: ap }\n",
            &["routes[0].upstream", "ap"],
        ),
        (
            "routes:\n  - { path_prefix: /, upstream: echo }\n",
            &["routes[0].provider", "required"],
        ),
        (
            "routes:\n  - { path_prefix: /a/../b, auth: none, upstream: echo }\n",
            &["routes[0].path_prefix"],
        ),
        (
            "routes:\n  - { path_prefix: /a%2Fb, auth: none, upstream: echo }\n",
            &["routes[0].path_prefix"],
        ),
        (
            "routes:\n  - { path_prefix: /, host: \"a.example:80\", auth: none, upstream: echo }\n",
            &["routes[0].host", "without scheme or port"],
        ),
        // Issue #14: one key table per provider kind; static takes no JWT or HTTP keys.
        (
            "providers:\n  s:\n    kind: static\n    leeway: 5s\n    tokens: [{ token_sha256: 91c16f0d6cc1bec3c3603972182a07c66ff4fa71618a975e963d6dbe42b6dd37, identity: { subject: a } }]\nroutes:\n  - { path_prefix: /, provider: s, upstream: echo }\n",
            &["providers.s.leeway", "not used by kind `static`"],
        ),
        (
            "providers:\n  s:\n    kind: static\n    jwks_refresh: 1m\n    tokens: [{ token_sha256: 91c16f0d6cc1bec3c3603972182a07c66ff4fa71618a975e963d6dbe42b6dd37, identity: { subject: a } }]\nroutes:\n  - { path_prefix: /, provider: s, upstream: echo }\n",
            &["providers.s.jwks_refresh", "not used by kind `static`"],
        ),
        (
            "work_stealing: sometimes\nroutes:\n  - { path_prefix: /, auth: none, upstream: echo }\n",
            &["work_stealing", "expected a boolean"],
        ),
        // Issue #13: canonical CIDRs, request hygiene, connection limits, admin listener.
        (
            "routes:\n  - { path_prefix: /, auth: none, upstream: echo, deny_cidrs: [\"::ffff:0.0.0.0/64\"] }\n",
            &["routes[0].deny_cidrs[0]", "IPv4-mapped"],
        ),
        (
            "trusted_proxies: [\"::ffff:10.0.0.0/90\"]\nroutes:\n  - { path_prefix: /, auth: none, upstream: echo }\n",
            &["trusted_proxies[0]", "IPv4-mapped"],
        ),
        (
            "requests: { keep_override_headers: [X-Api-Key] }\nroutes:\n  - { path_prefix: /, auth: none, upstream: echo }\n",
            &["requests.keep_override_headers[0]", "not an override header"],
        ),
        (
            "requests: { case_insensitve_paths: true }\nroutes:\n  - { path_prefix: /, auth: none, upstream: echo }\n",
            &["requests", "case_insensitve_paths"],
        ),
        (
            "connections: { header_timeout: 0s }\nroutes:\n  - { path_prefix: /, auth: none, upstream: echo }\n",
            &["connections.header_timeout", "at least 100ms"],
        ),
        (
            "connections: { http2_max_concurrent_streams: 0 }\nroutes:\n  - { path_prefix: /, auth: none, upstream: echo }\n",
            &["connections.http2_max_concurrent_streams", "between 1 and 1000"],
        ),
        (
            "upstreams: { app: { url: \"http://127.0.0.1:1\", max_in_flight: 0 } }\nroutes:\n  - { path_prefix: /, auth: none, upstream: app }\n",
            &["upstreams.app.max_in_flight", "between 1 and 1000000"],
        ),
        (
            "connections: { max_connections: 0 }\nroutes:\n  - { path_prefix: /, auth: none, upstream: echo }\n",
            &["connections.max_connections"],
        ),
        (
            "admin: { listen: 127.0.0.1:19090 }\nroutes:\n  - { path_prefix: /, auth: none, upstream: echo }\n",
            &["admin.listen", "must differ"],
        ),
        (
            "routes:\n  - { path_prefix: /, auth: none, upstream: echo }\n  - { path_prefix: /, auth: none, upstream: echo }\n",
            &["routes[1].path_prefix", "already"],
        ),
        // Secrets are never inline; missing env vars are named.
        (
            "providers:\n  i: { kind: rfc7662, url: http://127.0.0.1:1/i, client_id: gw, client_secret: hunter2 }\nroutes:\n  - { path_prefix: /, provider: i, upstream: echo }\n",
            &["providers.i.client_secret", "${ENV_VAR}"],
        ),
        (
            "providers:\n  i: { kind: rfc7662, url: http://127.0.0.1:1/i, client_id: gw, client_secret: '${SG_UNSET_SECRET}' }\nroutes:\n  - { path_prefix: /, provider: i, upstream: echo }\n",
            &["providers.i.client_secret", "SG_UNSET_SECRET", "not set"],
        ),
        (
            "providers:\n  s: { kind: static, tokens: [{ token: plain-token, identity: { subject: a } }] }\nroutes:\n  - { path_prefix: /, provider: s, upstream: echo }\n",
            &["providers.s.tokens[0].token"],
        ),
        (
            "providers:\n  s: { kind: static, url: http://x, tokens: [] }\nroutes:\n  - { path_prefix: /, provider: s, upstream: echo }\n",
            &["providers.s.url", "static"],
        ),
        (
            "upstreams: { app: 'ftp://x' }\nroutes:\n  - { path_prefix: /, auth: none, upstream: app }\n",
            &["upstreams.app", "ftp"],
        ),
        (
            "routes: [\n",
            &["line"],
        ),
        // Route policy.
        (
            "routes:\n  - { path_prefix: /, auth: none, upstream: echo, require_scopes: { all_of: [a] } }\n",
            &["routes[0].require_scopes", "auth: none"],
        ),
        (
            "providers:\n  s: { kind: static, tokens: [{ token_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08, identity: { subject: a } }] }\nroutes:\n  - { path_prefix: /, provider: s, upstream: echo, require_scopes: { all_of: [\"read write\"] } }\n",
            &["routes[0].require_scopes.all_of[0]", "not a scope"],
        ),
        (
            "providers:\n  s: { kind: static, tokens: [{ token_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08, identity: { subject: a } }] }\nroutes:\n  - { path_prefix: /, provider: s, upstream: echo, method_scopes: [{ methods: [\"GE T\"], all_of: [a] }] }\n",
            &["routes[0].method_scopes[0].methods"],
        ),
        // A mounted Secret is a directory: the message says to name the file in it.
        (
            concat!("admin:\n  token_file: ", env!("CARGO_MANIFEST_DIR"), "/config\nroutes:\n  - { path_prefix: /, auth: none, upstream: echo }\n"),
            &["admin.token", "is a directory", "/config/token"],
        ),
        // The parser's words, never the names of the structs and enums behind them.
        (
            "providers:\n  s: { kind: static, tokens: [{ token_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08, identity: { subject: a } }] }\nroutes:\n  - { path_prefix: /, provider: s, upstream: echo, require_scopes: read }\n",
            &["routes[0].require_scopes", "expected a mapping"],
        ),
        (
            "routes:\n  - { path_prefix: /, auth: none, upstream: echo, mode: [report] }\n",
            &["routes[0].mode", "expected a single value"],
        ),
        // Methods left open by accident: per-method scopes alone, nothing for the rest.
        (
            "providers:\n  s: { kind: static, tokens: [{ token_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08, identity: { subject: a } }] }\nroutes:\n  - { path_prefix: /, provider: s, upstream: echo, method_scopes: [{ methods: [GET], all_of: [view] }, { methods: [post], all_of: [spend] }] }\n",
            &["routes[0].method_scopes", "only GET, HEAD, POST have scope rules", "methods: [GET, HEAD, POST]", "require_scopes"],
        ),
        (
            "routes:\n  - { path_prefix: /, auth: none, upstream: echo, methods: [] }\n",
            &["routes[0].methods", "list the methods"],
        ),
        (
            "routes:\n  - { path_prefix: /, auth: none, upstream: echo, methods: [\"GE T\"] }\n",
            &["routes[0].methods", "is not an HTTP method"],
        ),
        (
            "routes:\n  - { path_prefix: /, auth: none, upstream: echo, allow_cidrs: [10.0.0.0/33] }\n",
            &["routes[0].allow_cidrs[0]"],
        ),
        (
            "trusted_proxies: [proxy.local]\nroutes:\n  - { path_prefix: /, auth: none, upstream: echo }\n",
            &["trusted_proxies[0]"],
        ),
        (
            "routes:\n  - { path_prefix: /, auth: none, upstream: echo, mode: shadow }\n",
            &["routes[0].mode", "shadow"],
        ),
        // Identity assertions.
        (
            "providers:\n  s: { kind: static, tokens: [{ token_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08, identity: { subject: a } }] }\nroutes:\n  - { path_prefix: /, provider: s, upstream: echo, assertion: { audience: app } }\n",
            &["routes[0].assertion", "assertion_keys"],
        ),
        (
            "assertion_keys: [{ kid: k, algorithm: HS256, key_file: k.pem }]\nroutes:\n  - { path_prefix: /, auth: none, upstream: echo }\n",
            &["assertion_keys[0]"],
        ),
        // JWT providers.
        (
            "providers:\n  j: { kind: jwt, issuer: https://i/, audiences: [a], algorithms: [HS256], jwks_url: \"http://127.0.0.1:1/k\" }\nroutes:\n  - { path_prefix: /, provider: j, upstream: echo }\n",
            &["providers.j.algorithms[0]", "HMAC"],
        ),
        (
            "providers:\n  j: { kind: jwt, issuer: https://i/, algorithms: [ES256], jwks_url: \"http://127.0.0.1:1/k\" }\nroutes:\n  - { path_prefix: /, provider: j, upstream: echo }\n",
            &["providers.j.audiences", "required"],
        ),
        (
            "providers:\n  j: { kind: jwt, issuer: https://i/, audiences: [a], algorithms: [ES256] }\nroutes:\n  - { path_prefix: /, provider: j, upstream: echo }\n",
            &["providers.j.jwks_url"],
        ),
        (
            "providers:\n  j: { kind: jwt, issuer: https://i/, audiences: [a], algorithms: [ES256], jwks_url: \"http://127.0.0.1:1/k\" }\nroutes:\n  - { path_prefix: /, provider: [j, nope], upstream: echo }\n",
            &["routes[0].provider", "nope"],
        ),
        // The generic http provider and preset overrides.
        (
            "providers:\n  h: { kind: http, url: \"http://127.0.0.1:1/s\" }\nroutes:\n  - { path_prefix: /, provider: h, upstream: echo }\n",
            &["providers.h.response.subject", "required"],
        ),
        (
            "providers:\n  h: { kind: http, url: \"http://127.0.0.1:1/s\", token: { in: path }, response: { subject: /u } }\nroutes:\n  - { path_prefix: /, provider: h, upstream: echo }\n",
            &["providers.h.url", "{token}"],
        ),
        (
            "providers:\n  h: { kind: http, url: \"http://127.0.0.1:1/s?t={token}\", token: { in: path }, response: { subject: /u } }\nroutes:\n  - { path_prefix: /, provider: h, upstream: echo }\n",
            &["providers.h.url", "only in the URL path"],
        ),
        (
            "providers:\n  h: { kind: http, url: \"http://127.0.0.1:1/s\", token: { in: header }, response: { subject: /u } }\nroutes:\n  - { path_prefix: /, provider: h, upstream: echo }\n",
            &["providers.h.token.name", "required"],
        ),
        (
            "providers:\n  h: { kind: http, url: \"http://127.0.0.1:1/s\", response: { subject: session.user } }\nroutes:\n  - { path_prefix: /, provider: h, upstream: echo }\n",
            &["providers.h.response.subject", "JSON pointer"],
        ),
        (
            "providers:\n  k: { kind: krystal, url: \"http://127.0.0.1:1/a\" }\nroutes:\n  - { path_prefix: /, provider: k, upstream: echo }\n",
            &["providers.k.credential", "required"],
        ),
        (
            "providers:\n  b: { kind: bitgo, url: \"http://127.0.0.1:1/a\", credential: { bearer: '${SG_UNSET_SECRET}' } }\nroutes:\n  - { path_prefix: /, provider: b, upstream: echo }\n",
            &["providers.b.credential.bearer", "SG_UNSET_SECRET"],
        ),
        (
            "providers:\n  b: { kind: bitgo, url: \"http://127.0.0.1:1/a\", headers: { Authorization: x } }\nroutes:\n  - { path_prefix: /, provider: b, upstream: echo }\n",
            &["providers.b.headers.Authorization", "credential"],
        ),
        (
            "providers:\n  e: { kind: enos, url: \"http://127.0.0.1:1/a\", response: { success: [{ pointer: /status, equals: 0, one_of: [1] }] } }\nroutes:\n  - { path_prefix: /, provider: e, upstream: echo }\n",
            &["providers.e.response.success[0]", "exactly one"],
        ),
        (
            "providers:\n  e: { kind: enos, url: \"http://127.0.0.1:1/a\", response: { expires: { pointer: /e, format: unix_seconds, base: /b } } }\nroutes:\n  - { path_prefix: /, provider: e, upstream: echo }\n",
            &["providers.e.response.expires.base", "lifetime_seconds"],
        ),
        (
            "providers:\n  u: { kind: userinfo, url: \"http://127.0.0.1:1/a\", response: { claims: { 'e mail': /email } } }\nroutes:\n  - { path_prefix: /, provider: u, upstream: echo }\n",
            &["providers.u.response.claims.e mail"],
        ),
        (
            "providers:\n  u: { kind: userinfo, url: \"http://127.0.0.1:1/a\", response: { claims: { Team: /team, team: /group } } }\nroutes:\n  - { path_prefix: /, provider: u, upstream: echo }\n",
            &["providers.u.response.claims.team", "one header"],
        ),
        // Typed claims (issue #36): a forwarded name with `_`, a lifetime as a claim's time,
        // a misspelt key of the long form.
        (
            "providers:\n  u: { kind: userinfo, url: \"http://127.0.0.1:1/a\", response: { claims: { two_factor: /tfa } } }\nroutes:\n  - { path_prefix: /, provider: u, upstream: echo }\n",
            &["providers.u.response.claims.two_factor", "forward: false"],
        ),
        (
            "providers:\n  u: { kind: userinfo, url: \"http://127.0.0.1:1/a\", response: { claims: { since: { pointer: /t, time: lifetime_seconds } } } }\nroutes:\n  - { path_prefix: /, provider: u, upstream: echo }\n",
            &["providers.u.response.claims.since.time", "unix_seconds"],
        ),
        (
            "providers:\n  u: { kind: userinfo, url: \"http://127.0.0.1:1/a\", response: { claims: { plan: { pointer: /p, foward: false } } } }\nroutes:\n  - { path_prefix: /, provider: u, upstream: echo }\n",
            &["providers.u.response.claims.plan", "keys: pointer, forward, time"],
        ),
        // token_sources (issue #17): each mistake names its entry.
        (
            "providers:\n  s: { kind: static, tokens: [{ token_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08, identity: { subject: a } }] }\nroutes:\n  - { path_prefix: /, provider: s, upstream: echo, token_sources: [authorization, { cookie: \"my session\" }] }\n",
            &["routes[0].token_sources[1]", "not a cookie name"],
        ),
        (
            "providers:\n  s: { kind: static, tokens: [{ token_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08, identity: { subject: a } }] }\nroutes:\n  - { path_prefix: /, provider: s, upstream: echo, token_sources: [{ header: Cookie }] }\n",
            &["routes[0].token_sources[0]", "cannot carry a token"],
        ),
        (
            "providers:\n  s: { kind: static, tokens: [{ token_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08, identity: { subject: a } }] }\nroutes:\n  - { path_prefix: /, provider: s, upstream: echo, token_sources: [{ header: X-Api-Key }, { header: x-api-key }] }\n",
            &["routes[0].token_sources[1]", "listed twice"],
        ),
        (
            "providers:\n  s: { kind: static, tokens: [{ token_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08, identity: { subject: a } }] }\nroutes:\n  - { path_prefix: /, provider: s, upstream: echo, token_sources: [{ query: token }] }\n",
            &["routes[0].token_sources[0]", "unknown token source `query`"],
        ),
        (
            "routes:\n  - { path_prefix: /, auth: none, upstream: echo, token_sources: [{ cookie: sid }] }\n",
            &["routes[0].token_sources", "auth: none"],
        ),
        (
            "providers:\n  s: { kind: static, tokens: [{ token_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08, identity: { subject: a } }] }\nroutes:\n  - { path_prefix: /, provider: s, upstream: echo, token_sources: [{ cookie: sid }], csrf_trusted_origins: [\"https://app.example.com/login\"] }\n",
            &["routes[0].csrf_trusted_origins[0]", "https://app.example.com"],
        ),
        // upstreams: — a URL or a mapping; protocols.
        (
            "upstreams:\n  g: { url: \"http://127.0.0.1:50051\", protocol: http3 }\nroutes:\n  - { path_prefix: /, auth: none, upstream: g }\n",
            &["upstreams.g.protocol", "http1, http2 or auto"],
        ),
        (
            "upstreams:\n  g: { url: \"http://127.0.0.1:50051\", protocol: auto }\nroutes:\n  - { path_prefix: /, auth: none, upstream: g }\n",
            &["upstreams.g.protocol", "https://"],
        ),
        (
            "upstreams:\n  g: { url: \"h2c://127.0.0.1:50051\", protocol: http1 }\nroutes:\n  - { path_prefix: /, auth: none, upstream: g }\n",
            &["upstreams.g.protocol", "h2c://"],
        ),
        (
            "upstreams:\n  g: { url: \"http://127.0.0.1:50051\", protcol: http2 }\nroutes:\n  - { path_prefix: /, auth: none, upstream: g }\n",
            &["upstreams.g", "protcol"],
        ),
        (
            "upstreams:\n  g: \"grpc://127.0.0.1:50051\"\nroutes:\n  - { path_prefix: /, auth: none, upstream: g }\n",
            &["upstreams.g", "h2c://"],
        ),
        (
            "upstreams:\n  g: { url: \"http://127.0.0.1:8080\", ca_file: /etc/hostname }\nroutes:\n  - { path_prefix: /, auth: none, upstream: g }\n",
            &["upstreams.g.ca_file", "only for https://"],
        ),
        (
            "upstreams:\n  g: { url: \"https://127.0.0.1:8443\", verify_hostname: false }\nroutes:\n  - { path_prefix: /, auth: none, upstream: g }\n",
            &["upstreams.g.verify_hostname", "needs `ca_file`"],
        ),
        (
            "upstreams:\n  g: { url: \"https://127.0.0.1:8443\", ca_file: /etc/hostname }\nroutes:\n  - { path_prefix: /, auth: none, upstream: g }\n",
            &["upstreams.g.ca_file", "no certificate"],
        ),
        (
            concat!("upstreams:\n  g: { url: \"https://127.0.0.1:8443\", client_certificate: { chain: ", env!("CARGO_MANIFEST_DIR"), "/config/demo-tls.crt, key: /nonexistent.key } }\nroutes:\n  - { path_prefix: /, auth: none, upstream: g }\n"),
            &["upstreams.g.client_certificate", "cannot read /nonexistent.key"],
        ),
        // client certificates (mTLS): a credential of their own.
        (
            "providers:\n  mesh: { kind: client_certificate }\nroutes:\n  - { path_prefix: /, provider: mesh, upstream: echo, token_sources: [client_certificate] }\n",
            &["providers.mesh.clients", "allow_unlisted"],
        ),
        (
            "providers:\n  mesh: { kind: client_certificate, allow_unlisted: true }\nroutes:\n  - { path_prefix: /, provider: mesh, upstream: echo }\n",
            &["routes[0].provider", "token_sources: [client_certificate]"],
        ),
        (
            "providers:\n  mesh: { kind: client_certificate, allow_unlisted: true }\nroutes:\n  - { path_prefix: /, provider: mesh, upstream: echo, token_sources: [client_certificate, authorization] }\n",
            &["routes[0].token_sources", "read alone"],
        ),
        (
            "providers:\n  s: { kind: static, tokens: [{ token_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08, identity: { subject: a } }] }\nroutes:\n  - { path_prefix: /, provider: s, upstream: echo, token_sources: [client_certificate] }\n",
            &["routes[0].provider", "kind `client_certificate`"],
        ),
        (
            "providers:\n  mesh: { kind: client_certificate, clients: [{ id: \"spiffe://a b\" }] }\nroutes:\n  - { path_prefix: /, provider: mesh, upstream: echo, token_sources: [client_certificate] }\n",
            &["providers.mesh.clients[0].id", "printable"],
        ),
        (
            "providers:\n  mesh: { kind: client_certificate, clients: [{ id: x }], tokens: [] }\nroutes:\n  - { path_prefix: /, provider: mesh, upstream: echo, token_sources: [client_certificate] }\n",
            &["providers.mesh.tokens", "not used by kind `client_certificate`"],
        ),
        (
            "routes:\n  - { path_prefix: /, auth: none, upstream: echo, require_client_certificate: [] }\n",
            &["routes[0].require_client_certificate", "\"*\""],
        ),
        // tls: — each mistake names its key; a key file's content is never echoed.
        (
            "routes:\n  - { path_prefix: /, auth: none, upstream: echo }\ntls:\n  listen: 127.0.0.1:18080\n  certificates: []\n",
            &["tls.listen", "must differ"],
        ),
        (
            "routes:\n  - { path_prefix: /, auth: none, upstream: echo }\ntls:\n  listen: 127.0.0.1:18443\n  certificates: []\n",
            &["tls.certificates", "at least one"],
        ),
        (
            "routes:\n  - { path_prefix: /, auth: none, upstream: echo }\ntls:\n  listen: 127.0.0.1:18443\n  certificates: [{ chain: /nonexistent/tls.crt, key: /nonexistent/tls.key }]\n",
            &["tls.certificates[0]", "cannot read /nonexistent/tls.crt"],
        ),
        (
            concat!("routes:\n  - { path_prefix: /, auth: none, upstream: echo }\ntls:\n  listen: 127.0.0.1:18443\n  certificates:\n    - { chain: ", env!("CARGO_MANIFEST_DIR"), "/config/demo-tls.crt, key: ", env!("CARGO_MANIFEST_DIR"), "/config/demo-tls.crt }\n"),
            &["tls.certificates[0]", "demo-tls.crt: no PEM private key"],
        ),
        (
            concat!("routes:\n  - { path_prefix: /, auth: none, upstream: echo }\ntls:\n  listen: 127.0.0.1:18443\n  certificates:\n    - { chain: ", env!("CARGO_MANIFEST_DIR"), "/config/demo-tls.key, key: ", env!("CARGO_MANIFEST_DIR"), "/config/demo-tls.key }\n"),
            &["tls.certificates[0]", "no certificate in the file"],
        ),
        (
            concat!("routes:\n  - { path_prefix: /, auth: none, upstream: echo }\ntls:\n  listen: 127.0.0.1:18443\n  certificates:\n    - { chain: ", env!("CARGO_MANIFEST_DIR"), "/config/demo-tls.crt, key: ", env!("CARGO_MANIFEST_DIR"), "/config/demo-tls.key }\n  watch: 100ms\n"),
            &["tls.watch", "at least 1s"],
        ),
        (
            concat!("routes:\n  - { path_prefix: /, auth: none, upstream: echo }\ntls:\n  listen: 127.0.0.1:18443\n  certificates:\n    - { chain: ", env!("CARGO_MANIFEST_DIR"), "/config/demo-tls.crt, key: ", env!("CARGO_MANIFEST_DIR"), "/config/demo-tls.key }\n  min_version: \"1.0\"\n"),
            &["tls", "min_version"],
        ),
        // cluster: (Redis) — every mistake names its key, no secret is echoed.
        (
            "routes:\n  - { path_prefix: /, auth: none, upstream: echo }\ncluster:\n  redis: { url: \"http://127.0.0.1:6379\" }\n  key_secret_file: /etc/hostname\n",
            &["cluster.redis.url", "redis://"],
        ),
        (
            "routes:\n  - { path_prefix: /, auth: none, upstream: echo }\ncluster:\n  redis: { url: \"redis://:hunter2@127.0.0.1:6379/0\" }\n  key_secret_file: /etc/hostname\n",
            &["cluster.redis.url", "password_file"],
        ),
        (
            "routes:\n  - { path_prefix: /, auth: none, upstream: echo }\ncluster:\n  redis: { url: \"redis://127.0.0.1:6379/0\" }\n",
            &["cluster.key_secret_file", "required"],
        ),
        (
            "routes:\n  - { path_prefix: /, auth: none, upstream: echo }\ncluster:\n  redis: { url: \"redis://127.0.0.1:6379/0\" }\n  key_secret: ${SG_UNSET_SECRET}\n",
            &["cluster.key_secret", "SG_UNSET_SECRET"],
        ),
        (
            "routes:\n  - { path_prefix: /, auth: none, upstream: echo }\ncluster:\n  redis: { url: \"redis://127.0.0.1:6379/0\" }\n  key_secret_file: /etc/hostname\n",
            &["cluster.key_secret_file", "at least 32"],
        ),
        (
            "routes:\n  - { path_prefix: /, auth: none, upstream: echo }\ncluster:\n  redis: { url: \"redis://127.0.0.1:6379/0\", password: hunter2 }\n  key_secret_file: /etc/hostname\n",
            &["cluster.redis.password", "${ENV_VAR}"],
        ),
        (
            concat!("routes:\n  - { path_prefix: /, auth: none, upstream: echo }\ncluster:\n  redis: { url: \"redis://127.0.0.1:6379/0\" }\n  key_secret_file: ", env!("CARGO_MANIFEST_DIR"), "/config/demo-cluster-secret\n  shared_cache: { timeout: 0s }\n"),
            &["cluster.shared_cache.timeout", "greater than zero"],
        ),
        (
            concat!("routes:\n  - { path_prefix: /, auth: none, upstream: echo }\ncluster:\n  redis: { url: \"redis://127.0.0.1:6379/0\" }\n  key_secret_file: ", env!("CARGO_MANIFEST_DIR"), "/config/demo-cluster-secret\n  shared_cache: { lock_wait: 5m }\n"),
            &["cluster.shared_cache.lock_wait", "30s"],
        ),
        (
            concat!("routes:\n  - { path_prefix: /, auth: none, upstream: echo }\ncluster:\n  redis: { url: \"redis://127.0.0.1:6379/0\" }\n  key_secret_file: ", env!("CARGO_MANIFEST_DIR"), "/config/demo-cluster-secret\n  shared_cache: { ttl: 5s }\n"),
            &["cluster.shared_cache", "ttl"],
        ),
        (
            concat!("routes:\n  - { path_prefix: /, auth: none, upstream: echo }\ncluster:\n  redis: { url: \"redis://127.0.0.1:6379/0\" }\n  key_secret_file: ", env!("CARGO_MANIFEST_DIR"), "/config/demo-cluster-secret\n  shared_cache: sometimes\n"),
            &["cluster.shared_cache", "true, false, or a mapping"],
        ),
        // Authorization rules (#36): the CEL expression is judged as the file is read.
        (
            "routes:\n  - path_prefix: /\n    provider: p\n    upstream: echo\n    rules:\n      - name: r\n        expr: \"user.admin\"\nproviders:\n  p: { kind: static, tokens: [{ token_sha256: 91c16f0d6cc1bec3c3603972182a07c66ff4fa71618a975e963d6dbe42b6dd37, identity: { subject: a } }] }\n",
            &["routes[0].rules[0].expr", "unknown variable `user`", "line 9"],
        ),
        (
            "routes:\n  - path_prefix: /\n    provider: p\n    upstream: echo\n    rules:\n      - name: r\n        expr: \"identity.scopes + 1 > 0\"\nproviders:\n  p: { kind: static, tokens: [{ token_sha256: 91c16f0d6cc1bec3c3603972182a07c66ff4fa71618a975e963d6dbe42b6dd37, identity: { subject: a } }] }\n",
            &["routes[0].rules[0].expr", "type error", "line 9"],
        ),
        (
            "routes:\n  - path_prefix: /\n    provider: p\n    upstream: echo\n    rules:\n      - name: r\n        expr: \"identity.subject ==\"\nproviders:\n  p: { kind: static, tokens: [{ token_sha256: 91c16f0d6cc1bec3c3603972182a07c66ff4fa71618a975e963d6dbe42b6dd37, identity: { subject: a } }] }\n",
            &["routes[0].rules[0].expr", "does not parse", "line 9"],
        ),
        (
            "routes:\n  - path_prefix: /\n    provider: p\n    upstream: echo\n    rules:\n      - name: r\n        expr: \"hash(identity.subject) == 1\"\nproviders:\n  p: { kind: static, tokens: [{ token_sha256: 91c16f0d6cc1bec3c3603972182a07c66ff4fa71618a975e963d6dbe42b6dd37, identity: { subject: a } }] }\n",
            &["routes[0].rules[0].expr", "unknown function `hash`"],
        ),
        (
            "routes:\n  - { name: a, path: \"/orgs/{org}\", provider: p, upstream: echo }\n  - { name: b, path: \"/orgs/{id}\", provider: p, upstream: echo }\nproviders:\n  p: { kind: static, tokens: [{ token_sha256: 91c16f0d6cc1bec3c3603972182a07c66ff4fa71618a975e963d6dbe42b6dd37, identity: { subject: a } }] }\n",
            &["routes[1].path", "routes[0] (`a`: `/orgs/{org}`)", "could never be chosen"],
        ),
        (
            "routes:\n  - { path: \"/wallets/{walletId}\", provider: p, upstream: echo, require_scopes: { all_of: [\"spend:{wallet}\"] } }\nproviders:\n  p: { kind: static, tokens: [{ token_sha256: 91c16f0d6cc1bec3c3603972182a07c66ff4fa71618a975e963d6dbe42b6dd37, identity: { subject: a } }] }\n",
            &["routes[0].require_scopes.all_of[0]", "`{wallet}` is not a parameter", "`{walletId}`"],
        ),
        (
            "routes:\n  - { path: \"/orgs/v{org}\", provider: p, upstream: echo }\nproviders:\n  p: { kind: static, tokens: [{ token_sha256: 91c16f0d6cc1bec3c3603972182a07c66ff4fa71618a975e963d6dbe42b6dd37, identity: { subject: a } }] }\n",
            &["routes[0].path", "one whole `{name}`"],
        ),
        // Rate limits (#37): the key, line and a way out in each.
        (
            "rate_limits:\n  u: { rate: 100/fortnight }\nroutes:\n  - { path_prefix: /, auth: none, upstream: echo }\n",
            &["rate_limits.u.rate", "100/min"],
        ),
        (
            "rate_limits:\n  u: { rate: 0/s }\nroutes:\n  - { path_prefix: /, auth: none, upstream: echo }\n",
            &["rate_limits.u.rate", "admits nothing"],
        ),
        (
            "rate_limits:\n  u: { rate: 10/s, burst: 0 }\nroutes:\n  - { path_prefix: /, auth: none, upstream: echo }\n",
            &["rate_limits.u.burst", "at least 1"],
        ),
        (
            "rate_limits:\n  u: { rate: 10/s, key: user }\nroutes:\n  - { path_prefix: /, auth: none, upstream: echo }\n",
            &["rate_limits.u.key", "\"user\" is not a key", "header:<name>"],
        ),
        (
            "rate_limits:\n  u: { rate: 10/s, key: \"header:bad header\" }\nroutes:\n  - { path_prefix: /, auth: none, upstream: echo }\n",
            &["rate_limits.u.key", "not a header name"],
        ),
        (
            "rate_limits:\n  u: { rate: 10/s, tiers: [{ rate: 100/s }] }\nroutes:\n  - { path_prefix: /, auth: none, upstream: echo }\n",
            &["rate_limits.u.tiers[0]", "one `scope: <scope>`"],
        ),
        (
            "rate_limits:\n  u: { rate: 10/s, max_keys: 0 }\nroutes:\n  - { path_prefix: /, auth: none, upstream: echo }\n",
            &["rate_limits.u.max_keys", "at least 1"],
        ),
        (
            "rate_limits:\n  \"a b\": { rate: 10/s }\nroutes:\n  - { path_prefix: /, auth: none, upstream: echo }\n",
            &["rate_limits.a b", "letters, digits"],
        ),
        (
            "rate_limits:\n  u: { rate: 10/s }\nroutes:\n  - { path_prefix: /, auth: none, upstream: echo, rate_limits: [users] }\n",
            &["routes[0].rate_limits[0]", "no rate limit named `users`", "defined under `rate_limits`: u"],
        ),
        (
            "rate_limits:\n  u: { rate: 10/s }\nroutes:\n  - { path_prefix: /, auth: none, upstream: echo, rate_limits: [u] }\n",
            &["routes[0].rate_limits[0]", "counts by subject", "auth: none", "client_address"],
        ),
        (
            "rate_limits:\n  u: { rate: 10/s, key: organization }\nroutes:\n  - { path_prefix: /, provider: p, upstream: echo, rate_limits: [u] }\nproviders:\n  p: { kind: static, tokens: [{ token_sha256: 91c16f0d6cc1bec3c3603972182a07c66ff4fa71618a975e963d6dbe42b6dd37, identity: { subject: a } }] }\n",
            &["routes[0].rate_limits[0]", "require_organization", "param:<name>"],
        ),
        (
            "rate_limits:\n  u: { rate: 10/s, key: \"param:org\" }\nroutes:\n  - { path: \"/orgs/{id}\", provider: p, upstream: echo, rate_limits: [u] }\nproviders:\n  p: { kind: static, tokens: [{ token_sha256: 91c16f0d6cc1bec3c3603972182a07c66ff4fa71618a975e963d6dbe42b6dd37, identity: { subject: a } }] }\n",
            &["routes[0].rate_limits[0]", "param:org", "no `{org}`"],
        ),
        (
            "rate_limits:\n  u: { rate: 10/s, key: client_address }\nroutes:\n  - { path_prefix: /, auth: none, upstream: echo, rate_limits: [u, u] }\n",
            &["routes[0].rate_limits[1]", "listed twice"],
        ),
    ];
    // Judged in process (`config::from_str_all`, what `--check` runs); the binary's exit
    // code and message shape are checked on the first row.
    let (code, stderr) = check_text(&format!("{BASE}{}", table[0].0));
    assert_eq!(code, 64, "{stderr}");
    assert!(
        stderr.starts_with("sessiongate: invalid configuration in ")
            && stderr.contains(table[0].1[0]),
        "{stderr}"
    );
    let dir = std::env::temp_dir().join(format!("sg-config-table-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (body, wants) in table {
        let text = format!("{BASE}{body}");
        let stderr = match sessiongate::config::from_str_all(&text, &dir) {
            Ok(_) => panic!("should be rejected:\n{text}"),
            Err(errors) => errors.iter().map(|e| format!("{e}\n")).collect::<String>(),
        };
        for want in *wants {
            assert!(stderr.contains(want), "missing {want:?} in: {stderr}");
        }
        assert!(
            !stderr.contains("hunter2")
                && !stderr.contains("PRIVATE KEY")
                && !stderr.contains("panicked")
                && !stderr.contains("File")
                && !stderr.contains("YAML tag"),
            "{stderr}"
        );
    }
}

#[test]
fn missing_file_is_a_clear_error() {
    let out = Command::new(BIN)
        .args(["--config", "/nonexistent/sessiongate.yaml", "--check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot read /nonexistent/sessiongate.yaml"),
        "{stderr}"
    );
}

#[test]
fn unresolvable_upstream_passes_check_but_stops_the_start_naming_it() {
    let dir = std::env::temp_dir().join(format!("sg-dns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("gw.yaml");
    std::fs::write(
        &file,
        "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:1\n\
         upstreams: { app: 'http://no-such-host.invalid:8080' }\n\
         routes:\n  - { path_prefix: /, auth: none, upstream: app }\n",
    )
    .unwrap();
    let check = Command::new(BIN)
        .arg("--config")
        .arg(&file)
        .arg("--check")
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let run = Command::new(BIN)
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("upstreams.app") && stderr.contains("no-such-host.invalid"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue #13 row 12: `--check` warns when the admin API (enabled by a token) listens on
/// a non-loopback address, and is quiet when it is on loopback.
#[test]
fn check_warns_about_an_admin_api_reachable_from_the_network() {
    let routes = "routes:\n  - { path_prefix: /, auth: none, upstream: echo }\n";
    let run = |text: String| {
        let dir = std::env::temp_dir().join(format!(
            "sg-config-warn-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("token"), "an-admin-token-of-length").unwrap();
        std::fs::write(dir.join("c.yaml"), text).unwrap();
        let out = Command::new(BIN)
            .arg("--config")
            .arg(dir.join("c.yaml"))
            .arg("--check")
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let open = run(format!(
        "listen: 0.0.0.0:18080\nadmin_listen: 0.0.0.0:19090\nadmin: {{ token_file: token }}\n{routes}"
    ));
    assert!(
        open.contains("warning: admin_listen") && open.contains("admin.listen"),
        "{open}"
    );
    let apart = run(format!(
        "listen: 0.0.0.0:18080\nadmin_listen: 0.0.0.0:19090\nadmin: {{ listen: 0.0.0.0:19091, token_file: token }}\n{routes}"
    ));
    assert!(apart.contains("warning: admin.listen"), "{apart}");
    let safe = run(format!(
        "listen: 0.0.0.0:18080\nadmin_listen: 0.0.0.0:19090\nadmin: {{ listen: 127.0.0.1:19091, token_file: token }}\n{routes}"
    ));
    assert!(!safe.contains("warning"), "{safe}");
    // Without a token the API is disabled: nothing to warn about.
    let disabled = run(format!(
        "listen: 0.0.0.0:18080\nadmin_listen: 0.0.0.0:19090\n{routes}"
    ));
    assert!(!disabled.contains("warning"), "{disabled}");
}

/// `work_stealing` defaults to `false` with one thread (nothing to steal: the cheaper
/// runtime) and to `true` with more; an explicit value always wins.
#[test]
fn work_stealing_defaults_follow_threads() {
    let settings = |top: &str| {
        let text = format!(
            "listen: 127.0.0.1:8080\nadmin_listen: 127.0.0.1:9090\n{top}\nupstreams: {{ app: http://127.0.0.1:9 }}\nroutes:\n  - {{ path_prefix: /, auth: none, upstream: app }}\n"
        );
        sessiongate::config::from_str(&text, Path::new(".")).unwrap()
    };
    for (top, threads, stealing) in [
        ("", 1, false),
        ("threads: 1", 1, false),
        ("threads: 2", 2, true),
        ("threads: 1\nwork_stealing: true", 1, true),
        ("threads: 4\nwork_stealing: false", 4, false),
    ] {
        let s = settings(top);
        assert_eq!((s.threads, s.work_stealing), (threads, stealing), "{top:?}");
    }
}

/// `--check --no-secrets` (CI without the deployment's secrets): absent secrets are
/// placeholders, counted; everything else is still checked, a literal secret included.
#[test]
fn check_without_secrets_accepts_absent_ones_and_checks_the_rest() {
    let dir = std::env::temp_dir().join(format!("sg-nosecrets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |text: &str, extra: &[&str]| {
        let file = dir.join("c.yaml");
        std::fs::write(&file, text).unwrap();
        let out = Command::new(BIN)
            .arg("--config")
            .arg(&file)
            .arg("--check")
            .args(extra)
            .env_remove("SG_UNSET_SECRET")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let config = format!(
        "{BASE}admin:\n  listen: 127.0.0.1:19091\n  token_file: /nonexistent/sessiongate-admin/token\nproviders:\n  idp: {{ kind: rfc7662, url: https://idp.example/introspect, client_id: gw, client_secret: \"${{SG_UNSET_SECRET}}\" }}\nroutes:\n  - {{ path_prefix: /, provider: idp, upstream: echo }}\n"
    );
    let (code, _, err) = run(&config, &[]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("SG_UNSET_SECRET"), "{err}");
    let (code, out, err) = run(&config, &["--no-secrets"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("2 absent"), "{out}");
    // The rest is checked as always: a wrong key, a literal secret.
    let (code, _, err) = run(&config.replace("client_id", "clientid"), &["--no-secrets"]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("clientid"), "{err}");
    let (code, _, err) = run(
        &config.replace("\"${SG_UNSET_SECRET}\"", "hunter2-literal"),
        &["--no-secrets"],
    );
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("client_secret") && !err.contains("hunter2"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--check` reports every independent error in one run — a wrong address, a provider
/// with a bad URL, a route naming an upstream that does not exist, a bad log filter —
/// and leaves out what only follows from another error (the route that names the broken
/// provider is not also reported).
#[test]
fn check_reports_every_independent_error_at_once() {
    let config = "listen: 127.0.0.1:notaport\nadmin_listen: 127.0.0.1:19090\n\
        providers:\n  idp: { kind: bitgo, url: not-a-url }\n  ok: { kind: bitgo, url: http://127.0.0.1:1/s }\n\
        routes:\n  - { path_prefix: /a, provider: idp, upstream: echo }\n  - { path_prefix: /b, provider: ok, upstream: nowhere }\n  - { path_prefix: /c, auth: none, upstream: echo, stale_if_error: 5s }\n\
        log: { level: \"info,[\" }\n";
    let (code, err) = check_text(config);
    assert_eq!(code, 64, "{err}");
    for key in [
        "listen:",
        "providers.idp",
        "routes[1].upstream",
        "routes[2].stale_if_error",
        "log.level",
    ] {
        assert!(err.contains(key), "{key} not reported:\n{err}");
    }
    assert!(err.contains("5 errors"), "{err}");
    assert!(
        !err.contains("routes[0]"),
        "a dependent error was reported:\n{err}"
    );
    // One error reads as before: on one line.
    let (code, err) = check_text(&format!(
        "{BASE}routes:\n  - {{ path_prefix: /, auth: none, upstream: nowhere }}\n"
    ));
    assert_eq!(code, 64);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("routes[0].upstream"), "{err}");
}
