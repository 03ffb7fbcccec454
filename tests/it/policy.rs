//! Authorization policy end to end: scopes (per route and per method), the identity's own
//! IP restrictions, trusted proxies and `X-Forwarded-For`, route CIDR rules, report-only
//! mode, and what the upstream is told about the client.

use crate::support::*;
use serde_json::{json, Value};

/// A provider whose tokens name their identity: `t-<key>` → IDENTITIES[key].
async fn provider() -> Fake {
    Fake::start(|req| {
        let token = req
            .header("authorization")
            .and_then(|a| a.strip_prefix("Bearer t-"))
            .unwrap_or("");
        let id = match token {
            "viewer" => json!({"sub": "viewer", "scopes": ["wallet_view_all"]}),
            "spender" => {
                json!({"sub": "spender", "scopes": ["wallet_view_all", "wallet_spend_all"]})
            }
            "plain" => json!({"sub": "plain", "scopes": ["openid"]}),
            "wallet-bound" => json!({"sub": "wb", "scopes": ["wallet_spend:abc123"]}),
            "local-only" => json!({"sub": "local", "scopes": [], "ips": ["127.0.0.1"]}),
            "v6-and-local" => {
                json!({"sub": "mixed", "scopes": [], "ips": ["2001:db8::/32", "127.0.0.0/8"]})
            }
            "elsewhere" => json!({"sub": "far", "scopes": [], "ips": ["203.0.113.0/24"]}),
            "office" => json!({"sub": "office", "scopes": [], "ips": ["203.0.113.5"]}),
            "garbage-ips" => {
                json!({"sub": "g", "scopes": [], "ips": ["127.0.0.1", "not-an-address"]})
            }
            _ => return Reply::json(401, json!({})),
        };
        Reply::json(200, id)
    })
    .await
}

const POLICY: &str = r#"
listen: {listen}
admin_listen: {admin}
shutdown_grace_period: 0s
{trusted}
providers:
  idp:
    kind: http
    url: "{provider}/session"
    response: { subject: /sub, scopes: /scopes, ip_restrict: /ips }
upstreams: { app: "{upstream}" }
routes:
  - name: wallets
    path_prefix: /wallets
    provider: idp
    upstream: app
    require_scopes: { any_of: [wallet_view_*, admin] }
    method_scopes:
      - { methods: [POST, PUT, DELETE], all_of: [wallet_spend_all] }
  - name: vault
    path_prefix: /vault
    provider: idp
    upstream: app
    methods: [GET, POST]
    method_scopes:
      - { methods: [GET], all_of: [wallet_view_all] }
      - { methods: [POST], all_of: [wallet_spend_all] }
  - name: bound
    path_prefix: /wallet/abc123
    provider: idp
    upstream: app
    require_scopes: { all_of: ["wallet_spend:abc123"] }
  - name: shadow
    path_prefix: /shadow
    provider: idp
    upstream: app
    mode: report
    require_scopes: { all_of: [admin] }
  - name: private
    path_prefix: /private
    auth: none
    upstream: app
    allow_cidrs: [10.0.0.0/8]
  - name: blocked
    path_prefix: /blocked
    auth: none
    upstream: app
    deny_cidrs: [127.0.0.0/8]
  - name: noauthz
    path_prefix: /noauthz
    provider: idp
    upstream: app
    forward_authorization: false
  - { name: open, path_prefix: /, provider: idp, upstream: app }
"#;

struct Setup {
    provider: Fake,
    upstream: Fake,
    gateway: sessiongate::GatewayHandle,
}

async fn setup(trusted: &str) -> Setup {
    let provider = provider().await;
    let upstream = Fake::upstream().await;
    let gateway = start_gateway(
        POLICY,
        &[
            ("trusted", trusted.to_string()),
            ("provider", provider.url()),
            ("upstream", upstream.url()),
        ],
    );
    Setup {
        provider,
        upstream,
        gateway,
    }
}

async fn call(
    s: &Setup,
    method: &str,
    path: &str,
    token: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = client().request(method.parse().unwrap(), at(&s.gateway, path));
    if !token.is_empty() {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_per_route_and_method() {
    let s = setup("").await;
    let table = [
        ("GET", "/wallets", "t-viewer", 200),
        ("GET", "/wallets/w1", "t-spender", 200),
        ("POST", "/wallets/w1/send", "t-viewer", 403),
        ("POST", "/wallets/w1/send", "t-spender", 200),
        ("DELETE", "/wallets/w1", "t-viewer", 403),
        ("GET", "/wallets", "t-plain", 403),
        ("POST", "/wallet/abc123/send", "t-wallet-bound", 200),
        ("POST", "/wallet/abc123/send", "t-spender", 403),
    ];
    for (method, path, token, want) in table {
        let resp = call(&s, method, path, token, &[]).await;
        assert_eq!(resp.status(), want, "{method} {path} {token}");
        if want == 403 {
            let h = header_map(&resp);
            let challenge = &h["www-authenticate"];
            assert!(
                challenge.contains("error=\"insufficient_scope\""),
                "{challenge}"
            );
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["error"], "insufficient_scope");
        }
    }
    // The challenge names what the request needed (RFC 6750 §3).
    let resp = call(&s, "POST", "/wallets/x", "t-viewer", &[]).await;
    let challenge = header_map(&resp)["www-authenticate"].clone();
    assert!(
        challenge.ends_with("scope=\"wallet_view_* admin wallet_spend_all\""),
        "{challenge}"
    );
    let denied = metric(
        &s.gateway,
        "sessiongate_requests_total{mode=\"proxy\",outcome=\"insufficient_scope\",route=\"wallets\"}",
    )
    .await;
    assert_eq!(denied, 4.0);
}

/// "GET needs wallet_view_all, POST needs wallet_spend_all": HEAD is judged as GET, and
/// a method the route does not list is refused (405 with `Allow`) before any token is
/// read — never let through with any valid token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_method_is_open_by_accident() {
    let s = setup("").await;
    let table = [
        ("GET", "t-viewer", 200),
        ("GET", "t-plain", 403),
        ("HEAD", "t-plain", 403),
        ("HEAD", "t-viewer", 200),
        ("POST", "t-viewer", 403),
        ("POST", "t-spender", 200),
        ("PUT", "t-spender", 405),
        ("DELETE", "t-spender", 405),
        ("PATCH", "t-plain", 405),
        ("OPTIONS", "t-spender", 405),
        ("PUT", "", 405),
    ];
    for (method, token, want) in table {
        let resp = call(&s, method, "/vault/v1", token, &[]).await;
        assert_eq!(resp.status(), want, "{method} {token}");
        if want == 405 {
            assert_eq!(header_map(&resp)["allow"], "GET, POST, HEAD");
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["error"], "method_not_allowed");
        }
    }
    // A route without `methods` but with `require_scopes`: HEAD needs them as GET does.
    assert_eq!(
        call(&s, "HEAD", "/wallets", "t-plain", &[]).await.status(),
        403
    );
    let refused = metric(
        &s.gateway,
        "sessiongate_requests_total{mode=\"proxy\",outcome=\"method_not_allowed\",route=\"vault\"}",
    )
    .await;
    assert_eq!(refused, 5.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_cached_identity_is_judged_afresh_on_each_route() {
    let s = setup("").await;
    assert_eq!(
        call(&s, "GET", "/anything", "t-plain", &[]).await.status(),
        200
    );
    assert_eq!(
        call(&s, "GET", "/wallets", "t-plain", &[]).await.status(),
        403
    );
    assert_eq!(
        call(&s, "GET", "/anything", "t-plain", &[]).await.status(),
        200
    );
    assert_eq!(s.provider.calls(), 1, "the identity came from the cache");
    assert_eq!(s.upstream.calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_ip_restrictions_against_the_real_peer() {
    // The test client connects from 127.0.0.1, which is not a trusted proxy here.
    let s = setup("").await;
    let spoof = [
        ("x-forwarded-for", "203.0.113.5"),
        ("x-real-ip", "203.0.113.5"),
        ("forwarded", "for=203.0.113.5"),
    ];
    let table = [
        ("t-local-only", 200),
        ("t-v6-and-local", 200),
        ("t-elsewhere", 403),
        ("t-office", 403),
        ("t-garbage-ips", 403),
    ];
    for (token, want) in table {
        let resp = call(&s, "GET", "/x", token, &spoof).await;
        assert_eq!(resp.status(), want, "{token}");
        if want == 403 {
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["error"], "ip_not_allowed");
            assert!(
                !body.to_string().contains("203.0.113"),
                "no list leaks: {body}"
            );
        }
    }
    assert_eq!(s.upstream.calls(), 2);
    // What the upstream learns: the real peer, never the client's claims.
    let up = s.upstream.last();
    assert_eq!(up.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(up.header("x-real-ip"), Some("127.0.0.1"));
    assert_eq!(up.header("x-forwarded-proto"), Some("http"));
    assert!(up
        .header("x-forwarded-host")
        .is_some_and(|h| h.starts_with("127.0.0.1:")));
    assert!(up.all("forwarded").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxy_chains_name_the_client() {
    let s = setup("trusted_proxies: [127.0.0.1/32, 10.0.0.0/8]").await;
    let table: [(&str, &str, u16); 5] = [
        ("t-office", "203.0.113.5", 200),
        ("t-office", "203.0.113.6", 403),
        // A client-forged left entry is skipped: the rightmost untrusted hop is the client.
        ("t-office", "203.0.113.5, 198.51.100.1", 403),
        ("t-office", "198.51.100.1, 203.0.113.5, 10.1.1.1", 200),
        // An unreadable entry in a trusted chain: the client is unknown, IP rules deny.
        ("t-office", "unknown, 10.1.1.1", 403),
    ];
    for (token, xff, want) in table {
        let resp = call(&s, "GET", "/x", token, &[("x-forwarded-for", xff)]).await;
        assert_eq!(resp.status(), want, "{xff}");
    }
    let resp = call(
        &s,
        "GET",
        "/x",
        "t-office",
        &[
            ("x-forwarded-for", "203.0.113.5"),
            ("x-forwarded-proto", "https"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let up = s.upstream.last();
    // A trusted chain is extended with the peer, and its proto kept.
    assert_eq!(up.header("x-forwarded-for"), Some("203.0.113.5, 127.0.0.1"));
    assert_eq!(up.header("x-real-ip"), Some("203.0.113.5"));
    assert_eq!(up.header("x-forwarded-proto"), Some("https"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_cidr_rules_apply_before_any_token() {
    let s = setup("").await;
    let resp = call(
        &s,
        "GET",
        "/private/x",
        "",
        &[("x-forwarded-for", "10.1.1.1")],
    )
    .await;
    assert_eq!(
        resp.status(),
        403,
        "127.0.0.1 is outside allow_cidrs; XFF is not believed"
    );
    let resp = call(&s, "GET", "/blocked/x", "", &[]).await;
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "ip_not_allowed");
    assert_eq!(s.upstream.calls(), 0);

    let trusted = setup("trusted_proxies: [127.0.0.1/32]").await;
    let resp = call(
        &trusted,
        "GET",
        "/private/x",
        "",
        &[("x-forwarded-for", "10.1.1.1")],
    )
    .await;
    assert_eq!(
        resp.status(),
        200,
        "through a trusted proxy the client is 10.1.1.1"
    );
    let resp = call(
        &trusted,
        "GET",
        "/blocked/x",
        "",
        &[("x-forwarded-for", "10.1.1.1")],
    )
    .await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_mode_counts_but_lets_through() {
    let s = setup("").await;
    let resp = call(&s, "GET", "/shadow/x", "t-plain", &[]).await;
    assert_eq!(resp.status(), 200, "report mode never denies on policy");
    assert_eq!(s.upstream.last().header("x-auth-subject"), Some("plain"));
    let resp = call(&s, "GET", "/shadow/x", "t-elsewhere", &[]).await;
    assert_eq!(resp.status(), 200);
    // Authentication is still enforced: no identity, nothing to forward.
    assert_eq!(
        call(&s, "GET", "/shadow/x", "t-unknown", &[])
            .await
            .status(),
        401
    );
    assert_eq!(call(&s, "GET", "/shadow/x", "", &[]).await.status(), 401);
    let g = &s.gateway;
    let scope = metric(
        g,
        "sessiongate_policy_would_deny_total{reason=\"insufficient_scope\",route=\"shadow\"}",
    )
    .await;
    let ip = metric(
        g,
        "sessiongate_policy_would_deny_total{reason=\"ip_not_allowed\",route=\"shadow\"}",
    )
    .await;
    assert_eq!((scope, ip), (2.0, 1.0));
    assert_eq!(s.upstream.calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_header_forwarding_is_per_route() {
    let s = setup("").await;
    assert_eq!(
        call(&s, "GET", "/noauthz/x", "t-plain", &[]).await.status(),
        200
    );
    let up = s.upstream.last();
    assert!(up.all("authorization").is_empty());
    assert_eq!(up.header("x-auth-subject"), Some("plain"));
    assert_eq!(call(&s, "GET", "/x", "t-plain", &[]).await.status(), 200);
    assert_eq!(
        s.upstream.last().header("authorization"),
        Some("Bearer t-plain")
    );
}
