//! The per-request work the gateway adds on a cache hit, piece by piece:
//! token extraction + keyed hash, the identity-cache hit, path normalization + route
//! lookup, client-header sanitization + identity-header building, and (for misses) the
//! BitGo response mapping.
//!
//! The last bench, **end to end**, is what a cache hit costs the gateway as a whole, in
//! process: the gateway's own connection application (the one its listener runs) reads
//! a keep-alive client request from an in-memory connection, decides it, forwards it
//! over a pooled loopback connection to a minimal upstream in the same runtime, and
//! writes the answer back, which the bench reads. Its time per request is CPU time of one
//! thread, kernel included, and includes the minimal upstream and client (a few µs):
//! compare it with the load harness's CPU µs per request for a hit.
//!
//! Run: `cargo bench --bench request_path`. Compare pieces with each other within one run;
//! absolute times drift on shared machines. The side-by-side comparison with nginx
//! `auth_request` is the load harness (benches/load/run.sh).

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use criterion::{criterion_group, criterion_main, Criterion};
use pingora::http::RequestHeader;
use std::net::IpAddr;

use http::Method;
use sessiongate::decision::canonical::normalize_path;
use sessiongate::decision::route::{Route, RouteSpec, RouteTable, ECHO_UPSTREAM};
use sessiongate::decision::template::{PathTemplate, RoutePath};
use sessiongate::identity::cache::{CacheSettings, IdentityCache, Lookup, LookupRequest};
use sessiongate::identity::provider::{presets, Provider, ProviderError, ProviderId, Resolution};
use sessiongate::identity::token::{extract_bearer, TokenHasher, DEFAULT_MAX_TOKEN_BYTES};
use sessiongate::identity::{Identity, IdentityParts};
use sessiongate::policy::rules::{Expr, Facts, RouteRule, RouteRules, RuleVerdict};
use sessiongate::policy::{check_identity, MethodScopes, RoutePolicy, ScopeRule};
use sessiongate::proxy::headers::{sanitize_request, IdentityHeaders};
use sessiongate::proxy::outgoing::{Outgoing, WireRequest};
use sessiongate::telemetry::metrics::{Metrics, RouteSeries};

/// The binary's allocator (mimalloc), counting: the end-to-end bench reports allocations
/// per request, a figure that, unlike time, does not drift with the machine.
struct Counting;

static ALLOCATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static ALLOCATED_BYTES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// `ALLOC_SITES=1`: where the end-to-end requests allocate (see [`alloc_sites`]).
static RECORD_SITES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static SITES: std::sync::Mutex<Option<HashMap<String, u64>>> = std::sync::Mutex::new(None);

thread_local! {
    /// Set while a site is being recorded: what recording allocates is not recorded.
    static RECORDING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Records where an allocation comes from: the first frames of the call stack that are
/// not the allocator's, the standard library's or this bench's.
fn record_site() {
    if !RECORD_SITES.load(std::sync::atomic::Ordering::Relaxed)
        || RECORDING.with(|r| r.replace(true))
    {
        return;
    }
    // The debug form gives each frame's function, file and line; a site is the first two
    // frames outside the standard library and this bench, as file:line.
    let trace = format!("{:?}", std::backtrace::Backtrace::force_capture());
    let frames: Vec<String> = trace
        .split("file: \"")
        .skip(1)
        .filter_map(|f| {
            let (file, rest) = f.split_once('"')?;
            let line = rest
                .trim_start_matches([',', ' '])
                .strip_prefix("line: ")?
                .split(|c: char| !c.is_ascii_digit())
                .next()?;
            Some((file, line))
        })
        .filter(|(file, _)| !file.starts_with("/rustc/") && !file.ends_with("request_path.rs"))
        .map(|(file, line)| {
            let file = file
                .rsplit_once("/src/index.crates.io-")
                .map_or(file, |(_, f)| f.split_once('/').map_or(f, |(_, f)| f));
            format!("{file}:{line}")
        })
        .take(2)
        .collect();
    let key = frames.join("  <  ");
    if let Ok(mut sites) = SITES.lock() {
        *sites
            .get_or_insert_with(HashMap::new)
            .entry(key)
            .or_default() += 1;
    }
    RECORDING.with(|r| r.set(false));
}

unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        use std::sync::atomic::Ordering::Relaxed;
        ALLOCATIONS.fetch_add(1, Relaxed);
        ALLOCATED_BYTES.fetch_add(layout.size() as u64, Relaxed);
        record_site();
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        use std::sync::atomic::Ordering::Relaxed;
        ALLOCATIONS.fetch_add(1, Relaxed);
        ALLOCATED_BYTES.fetch_add(new as u64, Relaxed);
        record_site();
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const TOKEN: &str = "v2x8f3a9c1e5b7d2f4a6c8e0b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a1c3e5b7d9f1a3";

fn identity() -> IdentityParts {
    IdentityParts {
        subject: "fedcba9876543210fedcba9876543210".into(),
        session_id: Some("0123456789abcdef0123456789abcdef".into()),
        scopes: vec!["wallet_view_all".into(), "wallet_spend:abc123".into()],
        expires_at: Some(SystemTime::now() + std::time::Duration::from_secs(3600)),
        ip_restrict: vec![],
        organizations: vec!["org1".into(), "ent1".into()],
        claims: vec![],
    }
}

#[derive(Debug)]
struct Fixed(Identity);

#[async_trait]
impl Provider for Fixed {
    fn kind(&self) -> &'static str {
        "bench"
    }
    async fn resolve(&self, _token: &str) -> Result<Resolution, ProviderError> {
        Ok(Resolution::Valid(self.0.clone()))
    }
}

fn token_and_hash(c: &mut Criterion) {
    let hasher = TokenHasher::with_key(&[9; 32]);
    let provider_id = ProviderId::new("idp", 0);
    let header = format!("Bearer {TOKEN}");
    c.bench_function("token: extract + keyed hash", |b| {
        b.iter(|| {
            let token = extract_bearer(
                std::iter::once(black_box(header.as_bytes())),
                None,
                DEFAULT_MAX_TOKEN_BYTES,
            )
            .unwrap();
            black_box(hasher.key(&provider_id, token))
        })
    });
}

fn cache_hit(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cache = IdentityCache::new(CacheSettings::default());
    let provider: Arc<dyn Provider> = Arc::new(Fixed(identity().into()));
    let id = ProviderId::new("idp", 0);
    let hasher = TokenHasher::with_key(&[9; 32]);
    let key = hasher.key(&id, TOKEN);
    rt.block_on(cache.lookup(LookupRequest::new(key, TOKEN, &id, &provider)));
    c.bench_function("cache: hit", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(
                cache
                    .lookup(LookupRequest::new(key, TOKEN, &id, &provider))
                    .await,
            )
        })
    });
}

fn routing(c: &mut Criterion) {
    let route = |prefix: &str| {
        let spec = RouteSpec {
            name: prefix.into(),
            path: RoutePath::Prefix(prefix.into()),
            host: None,
            providers: Vec::new(),
            upstream: ECHO_UPSTREAM.into(),
            policy: Default::default(),
            forward_authorization: true,
            assertion: None,
            stale_if_error: Duration::ZERO,
            allow_encoded_slashes: false,
            credentials: Default::default(),
            require_client_certificate: Vec::new(),
            rules: Default::default(),
            rate_limits: Vec::new(),
        };
        let series = RouteSeries::new(&Metrics::new(), &spec.name, 0);
        Route::resolve(spec, &HashMap::new(), &HashMap::new(), series).expect("no names to resolve")
    };
    let table = RouteTable::new(
        vec![
            route("/"),
            route("/healthz"),
            route("/api/v1"),
            route("/api/v2"),
            route("/admin"),
        ],
        false,
    );
    c.bench_function("route: normalize + longest prefix", |b| {
        b.iter(|| {
            let path = normalize_path(black_box("/api/v2/wallets/abc/transfers")).unwrap();
            black_box(
                table
                    .find(Some("api.example.com"), path.routing(), &path.forward)
                    .is_some(),
            )
        })
    });
}

/// `GET /api/v2/wallets` with the four headers a typical API client sends, plus `extra`.
fn sample_request(authorization: &str, extra: &[(&str, &str)]) -> RequestHeader {
    let mut req = RequestHeader::build("GET", b"/api/v2/wallets", None).unwrap();
    let common = [
        ("host", "api.example.com"),
        ("authorization", authorization),
        ("accept", "application/json"),
        ("user-agent", "bench/1.0"),
    ];
    for (k, v) in common.iter().chain(extra) {
        req.append_header(k.to_string(), *v).unwrap();
    }
    req
}

fn headers(c: &mut Criterion) {
    let names = IdentityHeaders::new("X-Auth-").unwrap();
    let id: Identity = identity().into();
    let base = sample_request("Bearer x", &[("x-auth-subject", "spoofed")]);
    c.bench_function("headers: sanitize + set identity", |b| {
        b.iter(|| {
            let mut req = base.clone();
            sanitize_request(&mut req, &names);
            req.set_identity(&names, &id, "idp");
            black_box(req)
        })
    });
}

fn bitgo_mapping(c: &mut Criterion) {
    let body = serde_json::to_vec(&serde_json::json!({"session": {
        "id": "0123456789abcdef0123456789abcdef", "user": "fedcba9876543210fedcba9876543210",
        "client": "bitgo", "created": "2026-07-01T10:00:00.000Z", "expires": "2099-07-01T12:00:00.000Z",
        "scope": ["wallet_view_all", "wallet_spend:abc123", "openid", "profile"],
        "ip": "203.0.113.7", "ipRestrict": ["203.0.113.0/24"], "enterprise": "ent1",
        "organizations": ["org1"], "token": "v2xSECRET", "isExtensible": false
    }}))
    .unwrap();
    let mapping = presets::bitgo().mapping;
    let now = SystemTime::now();
    c.bench_function("provider: parse + map BitGo session", |b| {
        b.iter(|| {
            let doc: serde_json::Value = serde_json::from_slice(black_box(&body)).unwrap();
            black_box(mapping.apply(&doc, now).unwrap())
        })
    });
}

/// The target in BENCHMARKS.md: token → cache hit → policy decision → header build.
fn whole_hit_path(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cache = IdentityCache::new(CacheSettings::default());
    let mut id = identity();
    id.ip_restrict = vec!["203.0.113.0/24".into()];
    let provider: Arc<dyn Provider> = Arc::new(Fixed(id.into()));
    let provider_id = ProviderId::new("idp", 0);
    let hasher = TokenHasher::with_key(&[9; 32]);
    let names = IdentityHeaders::new("X-Auth-").unwrap();
    let policy = RoutePolicy {
        scopes: ScopeRule::new(vec![], vec!["wallet_view_*".into()]),
        method_scopes: vec![MethodScopes {
            methods: vec![Method::POST],
            rule: ScopeRule::new(vec!["wallet_spend_all".into()], vec![]),
        }],
        ..Default::default()
    };
    let client: IpAddr = "203.0.113.9".parse().unwrap();
    let header = format!("Bearer {TOKEN}");
    let base = sample_request(&header, &[]);
    rt.block_on(cache.lookup(LookupRequest::new(
        hasher.key(&provider_id, TOKEN),
        TOKEN,
        &provider_id,
        &provider,
    )));
    for (label, wire_form) in [
        ("hit path: token + cache hit + decision + headers", false),
        (
            "hit path, the direct path's form: ... + the upstream request on the wire",
            true,
        ),
    ] {
        c.bench_function(label, |b| {
            b.to_async(&rt).iter(|| async {
                let token = extract_bearer(
                    std::iter::once(black_box(header.as_bytes())),
                    None,
                    DEFAULT_MAX_TOKEN_BYTES,
                )
                .unwrap();
                let outcome = cache
                    .lookup(LookupRequest::new(
                        hasher.key(&provider_id, token),
                        token,
                        &provider_id,
                        &provider,
                    ))
                    .await;
                let Lookup::Valid(identity) = outcome.lookup else {
                    panic!("expected a hit")
                };
                check_identity(
                    &policy,
                    &identity,
                    Some(client),
                    &Method::GET,
                    SystemTime::now(),
                )
                .unwrap();
                let mut req = base.clone();
                sanitize_request(&mut req, &names);
                if wire_form {
                    // The direct path's form: the identity lines written with the rest of the
                    // request into one buffer, as it goes to an HTTP/1.1 upstream.
                    let mut out = WireRequest::new(&req);
                    out.set_identity(&names, &identity, "idp");
                    black_box(out.to_wire().unwrap());
                } else {
                    req.set_identity(&names, &identity, "idp");
                }
                black_box(req)
            })
        });
    }
}

/// The request header clone every header benchmark starts from, measured alone so it
/// can be subtracted.
fn header_clone(c: &mut Criterion) {
    let base = sample_request("Bearer x", &[]);
    c.bench_function("baseline: clone a 4-header request", |b| {
        b.iter(|| black_box(base.clone()))
    });
}

/// A minimal HTTP/1.1 upstream on loopback: answers every request head with a fixed
/// keep-alive 200.
async fn tiny_upstream() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut have = 0;
                loop {
                    match conn.read(&mut buf[have..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => have += n,
                    }
                    while let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                        let answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nupstream ok\n";
                        if conn.write_all(answer).await.is_err() {
                            return;
                        }
                        buf.copy_within(end + 4..have, 0);
                        have -= end + 4;
                    }
                }
            });
        }
    });
    addr
}

/// Sends one request and reads one whole answer: its head, then the 12-byte body it
/// declares.
async fn round_trip(client: &mut tokio::io::DuplexStream, buf: &mut [u8], request: &[u8]) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    client.write_all(request).await.unwrap();
    let mut have = 0;
    loop {
        let n = client.read(&mut buf[have..]).await.unwrap();
        assert!(n > 0, "the gateway closed the connection");
        have += n;
        if let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
            if have >= end + 4 + 12 {
                assert!(
                    buf.starts_with(b"HTTP/1.1 200"),
                    "{}",
                    String::from_utf8_lossy(&buf[..have])
                );
                return;
            }
        }
    }
}

/// `ALLOC_SITES=1 cargo bench --bench request_path -- "end to end"`: runs 200 more
/// requests recording a call stack per allocation (slow) and prints the sites, as
/// allocations per request, most first.
fn alloc_sites(label: &str, mut request: impl FnMut()) {
    use std::sync::atomic::Ordering::Relaxed;
    const N: u64 = 200;
    *SITES.lock().unwrap() = Some(HashMap::new());
    RECORD_SITES.store(true, Relaxed);
    for _ in 0..N {
        request();
    }
    RECORD_SITES.store(false, Relaxed);
    let sites = SITES.lock().unwrap().take().unwrap_or_default();
    let mut sites: Vec<_> = sites.into_iter().collect();
    sites.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    println!("allocation sites ({label}), per request:");
    for (site, n) in sites {
        println!("  {:5.2}  {site}", n as f64 / N as f64);
    }
}

/// The whole request path for a cache hit, in process (see the module docs).
fn end_to_end(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let upstream = rt.block_on(tiny_upstream());
    // As the load harness's hit case, without `ip_restrict`: an in-memory connection has
    // no client address, and the gateway refuses an IP-restricted identity without one.
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(TOKEN.as_bytes()))
    };
    let yaml = format!(
        r#"
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:1
providers:
  idp:
    kind: static
    tokens:
      - {{ token_sha256: {digest}, identity: {{ subject: fedcba9876543210fedcba9876543210, session_id: 0123456789abcdef0123456789abcdef, scopes: [wallet_view_all, wallet_spend_all, openid, profile, user_manage], organizations: [6b2c3d4e5f60718293a4b5c6d7e8f9a0] }} }}
upstreams: {{ app: "http://{upstream}" }}
routes:
  - name: api
    path_prefix: /
    provider: idp
    upstream: app
    require_scopes: {{ any_of: [wallet_view_*] }}
    method_scopes: [{{ methods: [POST], all_of: [wallet_spend_all] }}]
  - {{ name: open, path_prefix: /open, auth: none, upstream: app }}
log: {{ level: error }}
"#
    );
    let settings = sessiongate::config::from_str(&yaml, std::path::Path::new(".")).unwrap();
    let gateway = sessiongate::gateway::Gateway::new(settings).unwrap();
    let app = Arc::new(gateway.proxy_app(&Arc::new(
        pingora::server::configuration::ServerConf::default(),
    )));
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let (_keep_running, shutdown) = tokio::sync::watch::channel(false);
    rt.spawn(async move {
        use pingora::apps::ServerApp;
        app.process_new(Box::new(server), &shutdown).await;
    });
    let hit =
        format!("GET /api/x HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n");
    // The same request on an `auth: none` route (the Authorization header still sent, so
    // the two differ by the auth step alone): hit − none is the auth step's in-process cost.
    let none = hit.replacen("/api/x", "/open/x", 1);
    let mut buf = vec![0u8; 4096];
    for (label, request) in [("hit", &hit), ("auth: none", &none)] {
        rt.block_on(round_trip(&mut client, &mut buf, request.as_bytes()));
        use std::sync::atomic::Ordering::Relaxed;
        const N: u64 = 10_000;
        let (count, bytes) = (ALLOCATIONS.load(Relaxed), ALLOCATED_BYTES.load(Relaxed));
        rt.block_on(async {
            for _ in 0..N {
                round_trip(&mut client, &mut buf, request.as_bytes()).await;
            }
        });
        println!(
            "end to end ({label}): {:.1} allocations ({:.0} bytes) per request, gateway + minimal client and upstream (which allocate nothing per request)",
            (ALLOCATIONS.load(Relaxed) - count) as f64 / N as f64,
            (ALLOCATED_BYTES.load(Relaxed) - bytes) as f64 / N as f64,
        );
        if std::env::var_os("ALLOC_SITES").is_some() {
            alloc_sites(label, || {
                rt.block_on(round_trip(&mut client, &mut buf, request.as_bytes()))
            });
        }
    }
    c.bench_function(
        "end to end: a cache hit through the gateway's connection app",
        |b| b.iter(|| rt.block_on(round_trip(&mut client, &mut buf, hit.as_bytes()))),
    );
    c.bench_function(
        "end to end: the same request on an `auth: none` route",
        |b| b.iter(|| rt.block_on(round_trip(&mut client, &mut buf, none.as_bytes()))),
    );
}

/// Issue #36's cost: a cache hit on a route with a path template and three rules pays the
/// template match (parameters decoded and kept) and the rules (the CEL context built once
/// per request, each rule evaluated). Compared with the prefix match alone.
fn rules(c: &mut Criterion) {
    let identity: Identity = IdentityParts {
        claims: vec![sessiongate::identity::Claim::text("two-factor", "true")],
        ..identity()
    }
    .into();
    let template = PathTemplate::parse("/orgs/{org}/wallets/{walletId}/{rest*}").unwrap();
    let rules = RouteRules::new(
        [
            ("tenant", "request.params.org in identity.organizations"),
            ("two-factor", "identity.claims['two-factor'] == 'true'"),
            ("not-expired-soon", "identity.expires_at > now + 60"),
        ]
        .into_iter()
        .map(|(name, expr)| RouteRule::new(name, Expr::parse(expr).unwrap(), None, 403))
        .collect(),
    );
    let mut headers = http::HeaderMap::new();
    for (k, v) in [
        ("host", "api.example.com"),
        ("accept", "application/json"),
        ("user-agent", "bench/1.0"),
    ] {
        headers.insert(k, v.parse().unwrap());
    }
    let path = "/orgs/org1/wallets/abc123/transfers";
    c.bench_function("rules: prefix match", |b| {
        b.iter(|| black_box(black_box(path).starts_with("/orgs/")))
    });
    c.bench_function("rules: template match", |b| {
        b.iter(|| black_box(template.matches(black_box(path), false)))
    });
    c.bench_function("rules: template match + 3 rules", |b| {
        b.iter(|| {
            let params = template.matches(black_box(path), false).unwrap();
            let facts = Facts {
                identity: &identity,
                provider: "idp",
                method: "GET",
                path,
                params: &params,
                host: Some("api.example.com"),
                headers: &headers,
                token_header: &|_| false,
                client: None,
                client_certificate: None,
                token_source: "authorization",
                now: SystemTime::now(),
            };
            let verdicts = rules.judge(&facts);
            assert!(verdicts.iter().all(|v| *v == RuleVerdict::Pass));
            black_box(verdicts)
        })
    });
}

criterion_group!(
    benches,
    rules,
    token_and_hash,
    cache_hit,
    routing,
    headers,
    bitgo_mapping,
    whole_hit_path,
    header_clone,
    end_to_end
);
criterion_main!(benches);
