//! Authorization rules end to end (issue #36): `path` templates, scopes filled from the
//! path, `require_organization`, CEL `rules:` — over real sockets, with the static provider
//! and with the BitGo and Krystal fakes answering their documented fixtures.

use serde_json::{json, Value};

use crate::support::*;
use sessiongate::GatewayHandle;

const ADMIN_TOKEN: &str = "rules-admin-token-0123456789";

/// Each route is one recipe of the README's authorization section.
const ROUTES: &str = r#"
routes:
  # Tenant isolation: the org in the path must be one of the identity's.
  - name: tenant
    path: "/orgs/{org}/{rest*}"
    provider: p
    upstream: app
    require_organization: "{org}"
  # Per-wallet spending: the wallet's own scope, or the scope for every wallet.
  - name: spend
    path: "/api/v2/{coin}/wallet/{walletId}/sendcoins"
    provider: p
    upstream: app
    methods: [POST]
    require_scopes: { any_of: ["wallet_spend:{walletId}", wallet_spend_all] }
  # Admin needs two-factor authentication.
  - name: admin
    path_prefix: /admin
    provider: p
    upstream: app
    rules:
      - { name: two-factor, expr: "identity.claims['two-factor'] == 'true'" }
  # The tenant in a header.
  - name: by-header
    path_prefix: /by-header
    provider: p
    upstream: app
    rules:
      - { name: org-header, expr: "request.headers['x-org-id'] in identity.organizations" }
  # A time-bounded rule (Unix seconds): closed since 2000.
  - name: until
    path_prefix: /until
    provider: p
    upstream: app
    rules:
      - { name: before-2000, expr: "now < 946684800", error: "this API closed in 2000" }
  # Hidden rather than refused.
  - name: hidden
    path_prefix: /hidden
    provider: p
    upstream: app
    rules:
      - { name: staff-only, expr: "identity.subject.startsWith('staff-')", status: 404 }
  # Typed claims: a number, a boolean, a list; `level` is forwarded, the others (names
  # with `_`) are for rules only.
  - name: typed
    path_prefix: /typed
    provider: p
    upstream: app
    rules:
      - { name: typed, expr: "identity.claims.mfa_done && identity.claims.level >= 2 && 'ops' in identity.claims.team_roles" }
  # A rule being rolled out: reported, not enforced.
  - name: shadow
    path_prefix: /shadow
    provider: p
    upstream: app
    mode: report
    rules:
      - { name: never, expr: "false" }
  - { name: rest, path_prefix: /, provider: p, upstream: app }
"#;

fn config() -> String {
    format!(
        r#"
listen: {{listen}}
admin_listen: {{admin}}
shutdown_grace_period: 0s
admin: {{ token: "${{SG_RULES_ADMIN}}" }}
providers:
  p:
    kind: static
    tokens:
      - token_sha256: {alice}
        identity:
          subject: alice
          scopes: [read, "wallet_spend:w1"]
          organizations: [acme]
          claims: {{ two-factor: "true", level: 3, mfa_done: true, team_roles: [ops, dev] }}
      - token_sha256: {bob}
        identity:
          subject: bob
          scopes: [wallet_spend_all]
          organizations: [globex]
          claims: {{ level: "3", mfa_done: "true", team_roles: [dev] }}
upstreams: {{ app: "{{upstream}}" }}
{ROUTES}"#,
        alice = sha("alice-token-0123456789"),
        bob = sha("bob-token-0123456789"),
    )
}

const ALICE: &str = "alice-token-0123456789";
const BOB: &str = "bob-token-0123456789";

async fn send(
    g: &GatewayHandle,
    method: &str,
    path: &str,
    token: &str,
    headers: &[(&str, &str)],
) -> (u16, Value, reqwest::header::HeaderMap) {
    // Raw paths: reqwest would normalize `..` and `%2F` away before sending.
    let addr = g.proxy_addr;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: api.example.com\r\nauthorization: Bearer {token}\r\ncontent-length: 0\r\nconnection: close\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let raw = raw_http(addr, &req).await;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status: {raw}"));
    let mut map = reqwest::header::HeaderMap::new();
    for line in head.lines().skip(1) {
        if let Some((k, v)) = line.split_once(':') {
            if let (Ok(k), Ok(v)) = (
                reqwest::header::HeaderName::from_bytes(k.trim().as_bytes()),
                reqwest::header::HeaderValue::from_str(v.trim()),
            ) {
                map.append(k, v);
            }
        }
    }
    (
        status,
        serde_json::from_str(body).unwrap_or(Value::Null),
        map,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_scopes_organizations_and_rules_decide_end_to_end() {
    std::env::set_var("SG_RULES_ADMIN", ADMIN_TOKEN);
    let upstream = Fake::upstream().await;
    let g = start_gateway(&config(), &[("upstream", upstream.url())]);

    // (method, path, token, extra headers, status, error code, path the upstream gets)
    type Row<'a> = (
        &'a str,
        &'a str,
        &'a str,
        &'a [(&'a str, &'a str)],
        u16,
        Option<&'a str>,
        Option<&'a str>,
    );
    #[rustfmt::skip]
    let rows: &[Row] = &[
        // Tenant isolation, and the path variants that must not move the org.
        ("GET", "/orgs/acme/projects", ALICE, &[], 200, None, Some("/orgs/acme/projects")),
        ("GET", "/orgs/acme", ALICE, &[], 200, None, Some("/orgs/acme")),
        ("GET", "/orgs/globex/projects", ALICE, &[], 403, Some("organization_not_allowed"), None),
        ("GET", "/orgs/globex/projects", BOB, &[], 200, None, Some("/orgs/globex/projects")),
        ("GET", "/orgs/%61cme/projects", ALICE, &[], 200, None, Some("/orgs/acme/projects")),
        ("GET", "/orgs/ACME/projects", ALICE, &[], 403, Some("organization_not_allowed"), None),
        ("GET", "/orgs/globex/../acme/x", ALICE, &[], 200, None, Some("/orgs/acme/x")),
        ("GET", "/orgs/acme/../globex/x", ALICE, &[], 403, Some("organization_not_allowed"), None),
        ("GET", "//orgs//globex/x", ALICE, &[], 403, Some("organization_not_allowed"), None),
        ("GET", "/orgs/acme%2F..%2Fglobex/x", ALICE, &[], 400, None, None),
        ("GET", "/orgs/acme;x/projects", ALICE, &[], 400, None, None),
        ("GET", "/orgs/globex;acme/projects", ALICE, &[], 400, None, None),
        // Resource-bound scopes: the wallet in the path, never a wildcard from it.
        ("POST", "/api/v2/btc/wallet/w1/sendcoins", ALICE, &[], 200, None, Some("/api/v2/btc/wallet/w1/sendcoins")),
        ("POST", "/api/v2/btc/wallet/w2/sendcoins", ALICE, &[], 403, Some("insufficient_scope"), None),
        ("POST", "/api/v2/btc/wallet/w*/sendcoins", ALICE, &[], 403, Some("insufficient_scope"), None),
        ("POST", "/api/v2/btc/wallet/w2/sendcoins", BOB, &[], 200, None, Some("/api/v2/btc/wallet/w2/sendcoins")),
        ("GET", "/api/v2/btc/wallet/w1/sendcoins", ALICE, &[], 405, None, None),
        // CEL rules.
        ("GET", "/admin/users", ALICE, &[], 200, None, Some("/admin/users")),
        ("GET", "/admin/users", BOB, &[], 403, Some("rule_denied"), None),
        ("GET", "/by-header/x", ALICE, &[("x-org-id", "acme")], 200, None, Some("/by-header/x")),
        ("GET", "/by-header/x", ALICE, &[("x-org-id", "globex")], 403, Some("rule_denied"), None),
        ("GET", "/by-header/x", ALICE, &[], 403, Some("rule_denied"), None),
        ("GET", "/until/x", ALICE, &[], 403, Some("rule_denied"), None),
        ("GET", "/hidden/x", ALICE, &[], 404, Some("not_found"), None),
        ("GET", "/shadow/x", ALICE, &[], 200, None, Some("/shadow/x")),
        // Typed claims: Bob's are strings where Alice's are a number and a boolean, and
        // his roles lack `ops` — his request is denied either way.
        ("GET", "/typed/x", ALICE, &[], 200, None, Some("/typed/x")),
        ("GET", "/typed/x", BOB, &[], 403, Some("rule_denied"), None),
    ];
    for (method, path, token, headers, status, error, upstream_path) in rows {
        let before = upstream.calls();
        let (got, body, resp_headers) = send(&g, method, path, token, headers).await;
        let what = format!(
            "{method} {path} as {}",
            if *token == ALICE { "alice" } else { "bob" }
        );
        assert_eq!(got, *status, "{what}: {body}");
        if let Some(code) = error {
            assert_eq!(body["error"], *code, "{what}: {body}");
        }
        match upstream_path {
            Some(p) => {
                assert_eq!(upstream.calls(), before + 1, "{what}: not forwarded");
                assert_eq!(upstream.last().uri, *p, "{what}");
            }
            None => assert_eq!(upstream.calls(), before, "{what}: forwarded"),
        }
        if *error == Some("insufficient_scope") {
            let challenge = resp_headers["www-authenticate"].to_str().unwrap();
            if path.contains("/w2/") {
                assert!(
                    challenge.contains("scope=\"wallet_spend:w2 wallet_spend_all\""),
                    "{challenge}"
                );
            } else {
                // A value that is no scope token is not put in a header.
                assert!(
                    challenge.contains("scope=\"wallet_spend:{walletId} wallet_spend_all\""),
                    "{challenge}"
                );
            }
        }
    }
    // Forwarded claims go upstream as text (a number as its digits); claims for rules only
    // never do.
    send(&g, "GET", "/typed/x", ALICE, &[]).await;
    let seen = upstream.last();
    assert_eq!(seen.header("x-auth-claim-level"), Some("3"));
    assert_eq!(seen.header("x-auth-claim-two-factor"), Some("true"));
    assert!(
        !seen
            .headers
            .iter()
            .any(|(k, _)| k.contains("mfa") || k.contains("roles")),
        "{:?}",
        seen.headers
    );

    // The refusal names the rule and never a value the rule read.
    let (_, body, _) = send(&g, "GET", "/admin/users", BOB, &[]).await;
    assert_eq!(body["rule"], "two-factor", "{body}");
    assert_eq!(body["error_description"], "denied by rule `two-factor`");
    let (_, body, _) = send(&g, "GET", "/until/x", ALICE, &[]).await;
    assert_eq!(body["error_description"], "this API closed in 2000");
    let (_, body, _) = send(&g, "GET", "/hidden/x", ALICE, &[]).await;
    assert!(
        body.get("rule").is_none(),
        "a 404 rule does not say it exists: {body}"
    );

    // gRPC clients get PERMISSION_DENIED.
    let (status, _, headers) = send(
        &g,
        "POST",
        "/admin/svc.Admin/Get",
        BOB,
        &[("content-type", "application/grpc"), ("te", "trailers")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["grpc-status"], "7");

    // Metrics: per rule, report-only routes included; failures counted apart.
    for (sample, want) in [
        (
            "sessiongate_policy_rule_denials_total{route=\"admin\",rule=\"two-factor\"}",
            3.0,
        ),
        (
            "sessiongate_policy_rule_denials_total{route=\"by-header\",rule=\"org-header\"}",
            2.0,
        ),
        (
            "sessiongate_policy_rule_errors_total{route=\"by-header\",rule=\"org-header\"}",
            1.0,
        ),
        (
            "sessiongate_policy_rule_denials_total{route=\"shadow\",rule=\"never\"}",
            1.0,
        ),
        (
            "sessiongate_policy_would_deny_total{reason=\"rule_denied\",route=\"shadow\"}",
            1.0,
        ),
        (
            "sessiongate_requests_total{mode=\"proxy\",outcome=\"organization_not_allowed\",route=\"tenant\"}",
            4.0,
        ),
    ] {
        assert_eq!(metric(&g, sample).await, want, "{sample}");
    }

    // `explain` shows the parameters and each rule's verdict.
    let explain = |body: Value| {
        let g = &g;
        async move {
            let resp = client()
                .post(admin(g, "/admin/explain"))
                .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            resp.json::<Value>().await.unwrap()
        }
    };
    let t = explain(json!({"method": "GET", "path": "/orgs/globex/x/y", "token": ALICE})).await;
    assert_eq!(t["route"]["path"], "/orgs/{org}/{rest*}", "{t}");
    assert_eq!(
        t["route"]["params"],
        json!({"org": "globex", "rest": "x/y"}),
        "{t}"
    );
    assert_eq!(t["policy"]["organization_required"], "globex", "{t}");
    assert_eq!(t["policy"]["organization_ok"], false, "{t}");
    assert_eq!(t["decision"]["outcome"], "organization_not_allowed", "{t}");
    let t = explain(json!({"method": "GET", "path": "/by-header/x", "token": ALICE, "headers": {"x-org-id": "globex"}})).await;
    assert_eq!(
        t["policy"]["rules"],
        json!([{"name": "org-header", "expr": "request.headers['x-org-id'] in identity.organizations", "result": "false"}]),
        "{t}"
    );
    assert_eq!(
        t["steps_passed"].as_array().unwrap().last().unwrap(),
        "policy",
        "{t}"
    );
    let t = explain(json!({"method": "GET", "path": "/shadow/x", "token": ALICE})).await;
    assert_eq!(t["decision"]["outcome"], "allowed", "{t}");
    assert_eq!(t["would_deny"][0]["reason"], "rule_denied", "{t}");
    assert_eq!(t["would_deny"][0]["detail"], "rule `never` is false", "{t}");
    // …and the identity's claims as rules read them, typed, with the forwarded ones named.
    let t = explain(json!({"method": "GET", "path": "/typed/x", "token": ALICE})).await;
    let claims = &t["identity"]["claims"];
    assert_eq!(claims["level"], json!(3), "{t}");
    assert_eq!(claims["mfa_done"], json!(true), "{t}");
    assert_eq!(claims["team_roles"], json!(["ops", "dev"]), "{t}");
    assert_eq!(claims["two-factor"], json!("true"), "{t}");
    assert_eq!(
        t["identity"]["claims_forwarded"],
        json!(["level", "two-factor"]),
        "{t}"
    );
}

/// The recipes against the documented answers of three seed providers: BitGo's session
/// (wallet-bound scopes, organizations), Krystal's authorization (organizations,
/// two-factor session state mapped as claims) and EnOS's session info (the working and
/// resident organization).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipes_hold_for_the_seed_providers_documented_answers() {
    fn fixture(preset: &str, name: &str) -> Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(preset)
            .join(name);
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }
    let in_an_hour = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    std::env::set_var("SG_RULES_KRYSTAL_KEY", "gateway-api-key");
    let rfc3339 = |secs: u64| {
        json!(time::OffsetDateTime::from_unix_timestamp(secs as i64)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap())
    };
    let bitgo = Fake::start(move |req| {
        let mut v = fixture("bitgo", "session.json");
        v["session"]["expires"] = rfc3339(in_an_hour);
        // BitGo adds `unlock` while the session is unlocked for spending (the token says
        // which case the fake plays: unlocked, unlocked but lapsed, or locked).
        let bearer = req.header("authorization").unwrap_or_default();
        let unlocked_until = if bearer.contains("unlocked-") {
            Some(in_an_hour - 3000)
        } else if bearer.contains("lapsed-") {
            Some(in_an_hour - 7200)
        } else {
            None
        };
        if let Some(until) = unlocked_until {
            v["session"]["unlock"] = json!({"time": rfc3339(until - 600), "expires": rfc3339(until),
                "txCount": 0, "txValue": 0, "txValueLimit": 100000000});
        }
        Reply::json(200, v)
    })
    .await;
    let krystal = Fake::start(move |req| {
        let mut v = fixture("krystal", "authorization.json");
        v["expiry"] = json!(in_an_hour);
        // The same user on a session without two-factor authentication.
        let asked: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        if asked["token"]
            .as_str()
            .is_some_and(|t| t.starts_with("no-2fa"))
        {
            v["session"]["two_factor_auth"] = json!(false);
        }
        Reply::json(200, v)
    })
    .await;
    let enos = Fake::start(move |_| {
        let mut v = fixture("enos", "session-info-documented.json");
        v["session"]["refreshTime"] = json!(in_an_hour - 3600);
        Reply::json(200, v)
    })
    .await;
    let upstream = Fake::upstream().await;
    let g = start_gateway(
        r#"
listen: {listen}
admin_listen: {admin}
shutdown_grace_period: 0s
trusted_proxies: [127.0.0.1/32]
providers:
  enos: { kind: enos, url: "{enos}/enos-iam-service/v2.0/session/info" }
  bitgo: { kind: bitgo, url: "{bitgo}/api/v2/user/session" }
  krystal:
    kind: krystal
    url: "{krystal}/api/v1/user/authorization"
    credential: { bearer: "${SG_RULES_KRYSTAL_KEY}" }
upstreams: { app: "{upstream}" }
routes:
  - { name: b-tenant, host: bitgo.test, path: "/orgs/{org}/{rest*}", provider: bitgo, upstream: app, require_organization: "{org}" }
  - name: b-spend
    host: bitgo.test
    path: "/api/v2/{coin}/wallet/{walletId}/sendcoins"
    provider: bitgo
    upstream: app
    require_scopes: { any_of: ["wallet_spend:{walletId}", wallet_spend_all] }
  - { name: e-tenant, host: enos.test, path: "/orgs/{org}/{rest*}", provider: enos, upstream: app, require_organization: "{org}" }
  - { name: k-tenant, host: krystal.test, path: "/orgs/{org}/{rest*}", provider: krystal, upstream: app, require_organization: "{org}" }
  - name: k-admin
    host: krystal.test
    path_prefix: /admin
    provider: krystal
    upstream: app
    rules:
      - { name: two-factor, expr: "identity.claims.two_factor_auth == true && identity.claims.trusted" }
      - { name: admin-role, expr: "'admin' in identity.claims.roles && 'servers.write' in identity.scopes" }
  - name: b-unlocked
    host: bitgo.test
    path: "/api/v2/{coin}/wallet/{walletId}/sendmany"
    provider: bitgo
    upstream: app
    require_scopes: { any_of: ["wallet_spend:{walletId}", wallet_spend_all] }
    rules:
      - name: unlocked
        expr: "has(identity.claims.unlocked_until) && identity.claims.unlocked_until > now"
        error: unlock the session to spend
"#,
        &[
            ("bitgo", bitgo.url()),
            ("krystal", krystal.url()),
            ("enos", enos.url()),
            ("upstream", upstream.url()),
        ],
    );
    let c = client();
    let bitgo_wallet = "5f1e2d3c4b5a69788796a5b4c3d2e1f0";
    let two_fa = "seed-token-0123456789";
    let no_2fa = "no-2fa-token-0123456789";
    let enos_token = "IAM_S_0123456789abcdefghijklmnopqrstuvwxyz";
    let rows: &[(&str, &str, &str, &str, u16)] = &[
        (
            "bitgo.test",
            "GET",
            "/orgs/6b2c3d4e5f60718293a4b5c6d7e8f9a0/wallets",
            two_fa,
            200,
        ),
        (
            "bitgo.test",
            "GET",
            "/orgs/0000000000000000000000000000000a/wallets",
            two_fa,
            403,
        ),
        (
            "bitgo.test",
            "POST",
            &format!("/api/v2/btc/wallet/{bitgo_wallet}/sendcoins"),
            two_fa,
            200,
        ),
        (
            "bitgo.test",
            "POST",
            "/api/v2/btc/wallet/ffffffffffffffffffffffffffffffff/sendcoins",
            two_fa,
            403,
        ),
        // Spending needs a session unlocked now (BitGo's `unlock.expires`, a typed claim).
        (
            "bitgo.test",
            "POST",
            &format!("/api/v2/btc/wallet/{bitgo_wallet}/sendmany"),
            "unlocked-0123456789",
            200,
        ),
        (
            "bitgo.test",
            "POST",
            &format!("/api/v2/btc/wallet/{bitgo_wallet}/sendmany"),
            "lapsed-0123456789",
            403,
        ),
        (
            "bitgo.test",
            "POST",
            &format!("/api/v2/btc/wallet/{bitgo_wallet}/sendmany"),
            two_fa,
            403,
        ),
        ("krystal.test", "GET", "/orgs/org_k1Tq/servers", two_fa, 200),
        ("krystal.test", "GET", "/orgs/org_p9Zx/servers", two_fa, 200),
        ("krystal.test", "GET", "/orgs/org_zzzz/servers", two_fa, 403),
        ("krystal.test", "GET", "/admin/servers", two_fa, 200),
        ("krystal.test", "GET", "/admin/servers", no_2fa, 403),
        (
            "enos.test",
            "GET",
            "/orgs/o15578227985571/assets",
            enos_token,
            200,
        ),
        (
            "enos.test",
            "GET",
            "/orgs/o15578227985572/assets",
            enos_token,
            403,
        ),
    ];
    for (host, method, path, token, want) in rows {
        let resp = c
            .request(method.parse().unwrap(), at(&g, path))
            .header("host", *host)
            .header("authorization", format!("Bearer {token}"))
            .header("x-forwarded-for", "203.0.113.7")
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        assert_eq!(
            status,
            *want,
            "{host} {method} {path} ({token}): {}",
            resp.text().await.unwrap()
        );
    }
}
