//! End-to-end: the gateway, a fake BitGo-style session endpoint and a fake upstream, all
//! real HTTP servers on 127.0.0.1, driven by a real HTTP client.

use std::time::{Duration, SystemTime};

use crate::support::*;
use serde_json::{json, Value};

const CONFIG: &str = r#"
listen: {listen}
admin_listen: {admin}
shutdown_grace_period: 0s
providers:
  idp:
    kind: bitgo
    url: {provider}/api/v2/user/session
    timeout: 500ms
cache: { ttl: 60s, negative_ttl: 30s }
upstreams:
  app: {upstream}
routes:
  - { path_prefix: /public, auth: none, upstream: app }
  - { name: api, path_prefix: /, provider: idp, upstream: app }
  - { name: echo, path_prefix: /echo, provider: idp, upstream: echo }
"#;

fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap();
    time::OffsetDateTime::from_unix_timestamp_nanos(d.as_nanos() as i128)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// A BitGo session answer for `user`, expiring at `expires`.
fn bitgo_session(user: &str, expires: SystemTime) -> Value {
    json!({"session": {
        "id": format!("{:0>32}", user.len()),
        "user": user,
        "client": "bitgo",
        "created": rfc3339(SystemTime::now()),
        "expires": rfc3339(expires),
        "scope": ["wallet_view_all", "wallet_spend:abc123"],
        "ipRestrict": [],
        "enterprise": "ent-1",
        "organizations": ["org-1", "org-2"],
        "token": "v2x-the-token-itself",
        "isExtensible": false
    }})
}

fn unauthorized() -> Reply {
    Reply::json(
        401,
        json!({"error": "unauthorized", "name": "Unauthorized", "requestId": "r1", "context": {}}),
    )
}

/// A fake BitGo: `Bearer good-<user>` is valid for an hour, anything else is a 401.
async fn bitgo() -> Fake {
    Fake::start(|req| {
        match req
            .header("authorization")
            .and_then(|a| a.strip_prefix("Bearer good-"))
        {
            Some(user) => Reply::json(
                200,
                bitgo_session(user, SystemTime::now() + Duration::from_secs(3600)),
            ),
            None => unauthorized(),
        }
    })
    .await
}

struct Setup {
    provider: Fake,
    upstream: Fake,
    gateway: sessiongate::GatewayHandle,
}

async fn setup_with(provider: Fake, config: &str) -> Setup {
    let upstream = Fake::upstream().await;
    let gateway = start_gateway(
        config,
        &[("provider", provider.url()), ("upstream", upstream.url())],
    );
    Setup {
        provider,
        upstream,
        gateway,
    }
}

async fn setup() -> Setup {
    setup_with(bitgo().await, CONFIG).await
}

async fn get(s: &Setup, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = client().get(at(&s.gateway, path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_request_carries_identity_headers_upstream() {
    let s = setup().await;
    let trace = [
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("tracestate", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
    ];
    let resp = get(
        &s,
        "/wallets?limit=5",
        &[("authorization", "Bearer good-alice"), trace[0], trace[1]],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(header_map(&resp).contains_key("x-request-id"));
    assert_eq!(resp.text().await.unwrap(), "upstream ok");

    // The provider was asked the BitGo way.
    let call = s.provider.last();
    assert_eq!(call.method, "GET");
    assert_eq!(call.uri, "/api/v2/user/session");
    assert_eq!(call.header("authorization"), Some("Bearer good-alice"));

    let up = s.upstream.last();
    assert_eq!(up.uri, "/wallets?limit=5");
    assert_eq!(up.header("x-auth-subject"), Some("alice"));
    assert_eq!(
        up.header("x-auth-session-id"),
        Some("00000000000000000000000000000005")
    );
    assert_eq!(
        up.header("x-auth-scopes"),
        Some("wallet_view_all wallet_spend:abc123")
    );
    assert_eq!(up.header("x-auth-organizations"), Some("org-1,org-2,ent-1"));
    assert_eq!(up.header("x-auth-provider"), Some("idp"));
    let expires: u64 = up.header("x-auth-expires").unwrap().parse().unwrap();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        (now + 3500..=now + 3601).contains(&expires),
        "{expires} vs {now}"
    );
    assert!(up.header("x-request-id").is_some());
    // W3C trace context passes through unchanged.
    for (name, value) in trace {
        assert_eq!(up.header(name), Some(value));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_malformed_and_unknown_tokens_get_401_and_reach_nothing() {
    let s = setup().await;
    type Headers<'a> = &'a [(&'a str, &'a str)];
    let cases: [(Headers, u16, &str); 7] = [
        (&[], 401, "missing_token"),
        (
            &[("authorization", "Basic dXNlcjpwYXNz")],
            401,
            "missing_token",
        ),
        (&[("authorization", "Bearer")], 401, "invalid_token"),
        (&[("authorization", "Bearer a b")], 401, "invalid_token"),
        (
            &[("authorization", "Bearer unknown-token")],
            401,
            "invalid_token",
        ),
        (
            &[
                ("authorization", "Bearer good-a"),
                ("authorization", "Bearer good-b"),
            ],
            400,
            "invalid_request",
        ),
        (
            &[("authorization", "bearer unknown-2")],
            401,
            "invalid_token",
        ),
    ];
    for (headers, status, code) in cases {
        let resp = get(&s, "/x", headers).await;
        assert_eq!(resp.status(), status, "{headers:?}");
        let h = header_map(&resp);
        let challenge = &h["www-authenticate"];
        if code == "missing_token" {
            // No credentials: no error code in the challenge (RFC 6750 §3.1).
            assert_eq!(challenge, "Bearer realm=\"sessiongate\"");
        } else {
            assert!(
                challenge.starts_with("Bearer realm=\"sessiongate\"")
                    && challenge.contains(&format!("error=\"{code}\"")),
                "{challenge}"
            );
        }
        assert_eq!(h["content-type"], "application/json");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], code);
        assert!(body["error_description"].is_string());
        assert_eq!(
            body["request_id"].as_str(),
            Some(h["x-request-id"].as_str())
        );
        let text = body.to_string();
        assert!(
            !text.contains("unknown-token") && !text.contains("good-"),
            "{text}"
        );
    }
    assert_eq!(s.upstream.calls(), 0);
    // Only the two well-formed bearer tokens reached the provider.
    assert_eq!(s.provider.calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_identity_headers_never_reach_the_upstream() {
    let s = setup().await;
    let spoof: &[(&str, &str)] = &[
        ("X-Auth-Subject", "mallory"),
        ("x-auth-scopes", "admin"),
        ("X-AUTH-ORGANIZATIONS", "evil-org"),
        ("X_Auth_Subject", "mallory2"),
        ("X-Auth-Something-Else", "x"),
        ("Connection", "X-Auth-Subject, X-Auth-Scopes"),
    ];
    // An authenticated route: the gateway's values replace the client's.
    let mut headers = spoof.to_vec();
    headers.push(("authorization", "Bearer good-alice"));
    assert_eq!(get(&s, "/api", &headers).await.status(), 200);
    let up = s.upstream.last();
    assert_eq!(up.all("x-auth-subject"), ["alice"]);
    assert_eq!(
        up.all("x-auth-scopes"),
        ["wallet_view_all wallet_spend:abc123"]
    );
    assert_eq!(up.all("x-auth-organizations"), ["org-1,org-2,ent-1"]);
    assert!(up.all("x_auth_subject").is_empty());
    assert!(up.all("x-auth-something-else").is_empty());
    let connection = up.all("connection").join(",").to_ascii_lowercase();
    assert!(!connection.contains("x-auth"), "{connection}");

    // A public route: no identity at all, and none of the client's.
    assert_eq!(get(&s, "/public/info", spoof).await.status(), 200);
    let up = s.upstream.last();
    let leaked: Vec<_> = up
        .headers
        .iter()
        .filter(|(k, _)| k.starts_with("x-auth") || k.starts_with("x_auth"))
        .collect();
    assert!(leaked.is_empty(), "{leaked:?}");
    assert_eq!(s.provider.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_cannot_walk_from_a_public_route_to_a_guarded_one() {
    let s = setup().await;
    for path in [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public/.%2E/admin",
    ] {
        let resp = get(&s, path, &[]).await;
        assert_eq!(resp.status(), 401, "{path}");
    }
    let resp = get(&s, "/public/..;/admin", &[]).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(s.upstream.calls(), 0);
    // Allowed requests are forwarded on the normalized path.
    let resp = get(&s, "/public/a/../b?q=1", &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(s.upstream.last().uri, "/public/b?q=1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_hit_makes_no_provider_call_and_negative_answers_are_cached() {
    let s = setup().await;
    for _ in 0..5 {
        let resp = get(&s, "/a", &[("authorization", "Bearer good-bob")]).await;
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(s.provider.calls(), 1);
    for _ in 0..5 {
        let resp = get(&s, "/a", &[("authorization", "Bearer revoked")]).await;
        assert_eq!(resp.status(), 401);
    }
    assert_eq!(s.provider.calls(), 2);
    assert_eq!(s.upstream.calls(), 5);
    let g = &s.gateway;
    assert_eq!(
        metric(g, "sessiongate_cache_lookups_total{result=\"hit\"}").await,
        4.0
    );
    assert_eq!(
        metric(g, "sessiongate_cache_lookups_total{result=\"miss\"}").await,
        2.0
    );
    assert_eq!(
        metric(
            g,
            "sessiongate_cache_lookups_total{result=\"negative_hit\"}"
        )
        .await,
        4.0
    );
    assert_eq!(
        metric(
            g,
            "sessiongate_requests_total{mode=\"proxy\",outcome=\"allowed\",route=\"api\"}"
        )
        .await,
        5.0
    );
    assert_eq!(
        metric(
            g,
            "sessiongate_requests_total{mode=\"proxy\",outcome=\"invalid_token\",route=\"api\"}"
        )
        .await,
        5.0
    );
    assert_eq!(
        metric(
            g,
            "sessiongate_provider_calls_total{provider=\"idp\",result=\"valid\"}"
        )
        .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_requests_make_exactly_one_provider_call() {
    let provider = Fake::start(|_| {
        Reply::json(
            200,
            bitgo_session("carol", SystemTime::now() + Duration::from_secs(3600)),
        )
        .after(Duration::from_millis(300))
    })
    .await;
    let s = setup_with(provider, CONFIG).await;
    let client = client();
    let url = at(&s.gateway, "/burst");
    let requests = (0..100).map(|_| {
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move {
            client
                .get(url)
                .header("authorization", "Bearer good-carol")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    });
    let mut statuses = Vec::new();
    for r in requests.collect::<Vec<_>>() {
        statuses.push(r.await.unwrap());
    }
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(s.provider.calls(), 1);
    assert_eq!(s.upstream.calls(), 100);
    let coalesced = metric(
        &s.gateway,
        "sessiongate_cache_lookups_total{result=\"coalesced\"}",
    )
    .await;
    assert!(coalesced >= 1.0, "coalesced={coalesced}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_lifetime_is_capped_by_the_identity_expiry() {
    // Each answer expires 1.2 s after it is given, although cache.ttl is 60 s.
    let provider = Fake::start(|_| {
        Reply::json(
            200,
            bitgo_session("dave", SystemTime::now() + Duration::from_millis(1200)),
        )
    })
    .await;
    let s = setup_with(provider, CONFIG).await;
    let auth = [("authorization", "Bearer good-dave")];
    assert_eq!(get(&s, "/a", &auth).await.status(), 200);
    assert_eq!(get(&s, "/a", &auth).await.status(), 200);
    assert_eq!(s.provider.calls(), 1);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(get(&s, "/a", &auth).await.status(), 200);
    assert_eq!(
        s.provider.calls(),
        2,
        "an expired identity must not be served from cache"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_that_is_already_expired_is_refused() {
    let provider = Fake::start(|_| {
        Reply::json(
            200,
            bitgo_session("erin", SystemTime::now() - Duration::from_secs(5)),
        )
    })
    .await;
    let s = setup_with(provider, CONFIG).await;
    let resp = get(&s, "/a", &[("authorization", "Bearer good-erin")]).await;
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error_description"], "the token has expired");
    assert_eq!(s.upstream.calls(), 0);
}

async fn assert_fails_closed(provider: Fake, calls_expected: usize) {
    let s = setup_with(provider, CONFIG).await;
    for _ in 0..2 {
        let resp = get(&s, "/a", &[("authorization", "Bearer good-frank")]).await;
        assert_eq!(resp.status(), 503);
        let h = header_map(&resp);
        assert_eq!(h["retry-after"], "1");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "provider_unavailable");
    }
    assert_eq!(s.upstream.calls(), 0, "nothing may be forwarded");
    // Failures are not cached: every request asked again.
    assert_eq!(s.provider.calls(), calls_expected);
    let failed = metric(
        &s.gateway,
        "sessiongate_requests_total{mode=\"proxy\",outcome=\"provider_unavailable\",route=\"api\"}",
    )
    .await;
    assert_eq!(failed, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_answering_5xx_fails_closed() {
    assert_fails_closed(
        Fake::start(|_| Reply::raw(500, "text/plain", "boom")).await,
        2,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_answering_garbage_fails_closed() {
    for body in [
        &b"<html><body>502 Bad Gateway</body></html>"[..],
        b"",
        b"{\"session\": {\"user\": ",
        b"{\"session\": {\"user\": 12.5, \"id\": \"x\"}}",
        b"{\"session\": {\"id\": \"x\"}}",
        b"[]",
    ] {
        let body = body.to_vec();
        let provider =
            Fake::start(move |_| Reply::raw(200, "application/json", body.clone())).await;
        assert_fails_closed(provider, 2).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_slower_than_its_timeout_fails_closed() {
    let provider = Fake::start(|_| {
        Reply::json(
            200,
            bitgo_session("slow", SystemTime::now() + Duration::from_secs(60)),
        )
        .after(Duration::from_secs(3))
    })
    .await;
    let started = std::time::Instant::now();
    assert_fails_closed(provider, 2).await;
    // Two requests, each cut at the 500 ms timeout, not at the 3 s answer.
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_down_fails_closed() {
    // A provider that is gone: its port refuses connections.
    let upstream = Fake::upstream().await;
    let gateway = start_gateway(
        CONFIG,
        &[
            ("provider", format!("http://127.0.0.1:{}", free_port())),
            ("upstream", upstream.url()),
        ],
    );
    let resp = get_bearer(&gateway, "/a", "good-x").await;
    assert_eq!(resp.status(), 503);
    assert_eq!(upstream.calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_provider_answer_fails_closed() {
    let huge = format!("{{\"pad\": \"{}\"}}", "x".repeat(100_000));
    let provider = Fake::start(move |_| Reply::raw(200, "application/json", huge.clone())).await;
    assert_fails_closed(provider, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_values_cannot_inject_headers() {
    let provider = Fake::start(|_| {
        let mut s = bitgo_session("x", SystemTime::now() + Duration::from_secs(60));
        s["session"]["user"] = json!("alice\r\nX-Injected: yes");
        s["session"]["organizations"] = json!(["o1\nX-Also: 1"]);
        Reply::json(200, s)
    })
    .await;
    let s = setup_with(provider, CONFIG).await;
    let resp = get(&s, "/a", &[("authorization", "Bearer good-x")]).await;
    assert_eq!(resp.status(), 200);
    let up = s.upstream.last();
    assert_eq!(
        up.header("x-auth-subject"),
        Some("alice%0D%0AX-Injected: yes")
    );
    assert!(up.all("x-injected").is_empty() && up.all("x-also").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_upstream_shows_what_a_backend_receives() {
    let s = setup().await;
    let resp = get(
        &s,
        "/echo/x?y=1",
        &[
            ("authorization", "Bearer good-gina"),
            ("x-auth-subject", "mallory"),
            ("x-request-id", "client-id-1"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header_map(&resp)["x-request-id"], "client-id-1");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["method"], "GET");
    assert_eq!(body["uri"], "/echo/x?y=1");
    assert_eq!(body["headers"]["x-auth-subject"], "gina");
    assert_eq!(body["headers"]["x-request-id"], "client-id-1");
    assert_eq!(s.upstream.calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_raw_requests_are_cleaned_before_forwarding() {
    let s = setup().await;
    // Sent byte for byte: client libraries would drop or merge some of these headers.
    let request = "GET /public/x HTTP/1.1\r\nHost: gw\r\n\
        Connection: Upgrade, HTTP2-Settings, X-Request-Id, close\r\n\
        Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\
        X-Auth-Subject: mallory\r\nx-auth-subject: mallory2\r\n\
        X_Auth_Subject: mallory3\r\nX-AUTH-SCOPES: admin\r\n\r\n";
    let response = raw_http(s.gateway.proxy_addr, request).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let up = s.upstream.last();
    assert!(up.all("upgrade").is_empty(), "{:?}", up.headers);
    assert!(up.all("http2-settings").is_empty(), "{:?}", up.headers);
    assert!(
        !up.headers.iter().any(|(k, v)| k.starts_with("x-auth")
            || k.starts_with("x_auth")
            || v.contains("mallory")),
        "{:?}",
        up.headers
    );
    let connection = up.all("connection").join(",").to_ascii_lowercase();
    assert!(
        !connection.contains("x-request-id") && !connection.contains("upgrade"),
        "{connection}"
    );
    assert!(up.header("x-request-id").is_some());

    // The same on an authenticated route: exactly one subject, the gateway's.
    let request = "GET /api HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer good-hal\r\n\
        X-Auth-Subject: mallory\r\nX_Auth_Subject: mallory3\r\n\
        Connection: close, X-Auth-Subject\r\n\r\n";
    let response = raw_http(s.gateway.proxy_addr, request).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let up = s.upstream.last();
    assert_eq!(up.all("x-auth-subject"), ["hal"]);
    assert!(up.all("x_auth_subject").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints() {
    let s = setup().await;
    let c = client();
    let health = c.get(admin(&s.gateway, "/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = c.get(admin(&s.gateway, "/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let missing = c.get(admin(&s.gateway, "/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let metrics = c.get(admin(&s.gateway, "/metrics")).send().await.unwrap();
    assert!(header_map(&metrics)["content-type"].starts_with("text/plain; version=0.0.4"));
    let text = metrics.text().await.unwrap();
    assert!(text.contains("sessiongate_build_info{version=\""), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_path_is_404_when_no_catch_all_route() {
    let upstream = Fake::upstream().await;
    let config = r#"
listen: {listen}
admin_listen: {admin}
shutdown_grace_period: 0s
upstreams: { app: {upstream} }
routes:
  - { path_prefix: /only, auth: none, upstream: app }
"#;
    let g = start_gateway(config, &[("upstream", upstream.url())]);
    let resp = client().get(at(&g, "/other")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "no_route");
    let resp = client().get(at(&g, "/onlyx")).send().await.unwrap();
    assert_eq!(resp.status(), 404, "prefixes match on segment boundaries");
    assert_eq!(upstream.calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_target_routes_on_its_own_host() {
    let provider = bitgo().await;
    let upstream = Fake::upstream().await;
    let config = r#"
listen: {listen}
admin_listen: {admin}
shutdown_grace_period: 0s
providers:
  idp: { kind: bitgo, url: "{provider}/api/v2/user/session" }
upstreams: { app: {upstream} }
routes:
  - { name: admin, host: admin.example, path_prefix: /, provider: idp, upstream: app }
  - { name: public, path_prefix: /, auth: none, upstream: app }
"#;
    let g = start_gateway(
        config,
        &[("provider", provider.url()), ("upstream", upstream.url())],
    );
    // Host says public, the request target says admin: refused (Pingora rejects the
    // mismatch RFC 9112 §3.2.2 forbids), never forwarded.
    let sneaky =
        "GET http://admin.example/x HTTP/1.1\r\nHost: public.example\r\nConnection: close\r\n\r\n";
    let response = raw_http(g.proxy_addr, sneaky).await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert_eq!(upstream.calls(), 0);

    // Absolute-form naming the guarded host is judged as that host.
    let admin_abs =
        "GET http://admin.example/x HTTP/1.1\r\nHost: admin.example\r\nConnection: close\r\n\r\n";
    let response = raw_http(g.proxy_addr, admin_abs).await;
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    assert_eq!(upstream.calls(), 0);

    let public = "GET http://public.example/y?z=1 HTTP/1.1\r\nHost: public.example\r\nConnection: close\r\n\r\n";
    let response = raw_http(g.proxy_addr, public).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let up = upstream.last();
    assert_eq!(up.uri, "/y?z=1", "forwarded in origin-form");
    assert_eq!(up.header("host"), Some("public.example"));

    let guarded = "GET /x HTTP/1.1\r\nHost: ADMIN.example:8080\r\nConnection: close\r\n\r\n";
    let response = raw_http(g.proxy_addr, guarded).await;
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
}
