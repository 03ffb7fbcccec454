//! The `rfc7662` and `static` provider kinds end to end, against real HTTP servers.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::support::*;
use serde_json::{json, Value};

const INTROSPECTION: &str = r#"
listen: {listen}
admin_listen: {admin}
shutdown_grace_period: 0s
providers:
  oauth:
    kind: rfc7662
    url: {provider}/oauth2/introspect
    client_id: sessiongate
    client_secret: ${SG_TEST_INTROSPECT_SECRET}
upstreams:
  app: {upstream}
routes:
  - { name: api, path_prefix: /, provider: oauth, upstream: app }
"#;

fn form(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc7662_introspection() {
    std::env::set_var("SG_TEST_INTROSPECT_SECRET", "s3cret");
    let provider = Fake::start(|req| {
        // The gateway's own credential: HTTP Basic sessiongate:s3cret.
        if req.header("authorization") != Some("Basic c2Vzc2lvbmdhdGU6czNjcmV0") {
            return Reply::json(401, json!({"error": "invalid_client"}));
        }
        let fields = form(&req.body);
        let token = fields
            .iter()
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.as_str());
        match token {
            Some("tok-live") => Reply::json(
                200,
                json!({"active": true, "sub": "user-7", "client_id": "web", "jti": "j-1",
                       "scope": "read write:all", "exp": now_secs() + 600, "token_type": "Bearer"}),
            ),
            Some("tok-service") => Reply::json(
                200,
                json!({"active": true, "client_id": "svc-billing", "scope": "invoices"}),
            ),
            _ => Reply::json(200, json!({"active": false})),
        }
    })
    .await;
    let upstream = Fake::upstream().await;
    let g = start_gateway(
        INTROSPECTION,
        &[("provider", provider.url()), ("upstream", upstream.url())],
    );
    let c = client();
    let send = |token: &str| {
        c.get(at(&g, "/r"))
            .header("authorization", format!("Bearer {token}"))
            .send()
    };

    assert_eq!(send("tok-live").await.unwrap().status(), 200);
    let call = provider.last();
    assert_eq!(call.method, "POST");
    assert_eq!(
        call.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let fields = form(&call.body);
    assert!(
        fields.contains(&("token".into(), "tok-live".into())),
        "{fields:?}"
    );
    assert!(fields.contains(&("token_type_hint".into(), "access_token".into())));
    let up = upstream.last();
    assert_eq!(up.header("x-auth-subject"), Some("user-7"));
    assert_eq!(up.header("x-auth-session-id"), Some("j-1"));
    assert_eq!(up.header("x-auth-scopes"), Some("read write:all"));

    // No `sub`: the client id is the subject (client-credentials tokens).
    assert_eq!(send("tok-service").await.unwrap().status(), 200);
    assert_eq!(
        upstream.last().header("x-auth-subject"),
        Some("svc-billing")
    );

    let resp = send("tok-revoked").await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(upstream.calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc7662_endpoint_rejecting_the_gateway_is_a_503_not_a_401() {
    std::env::set_var("SG_TEST_INTROSPECT_SECRET", "s3cret");
    let provider = Fake::start(|_| Reply::json(401, json!({"error": "invalid_client"}))).await;
    let upstream = Fake::upstream().await;
    let g = start_gateway(
        INTROSPECTION,
        &[("provider", provider.url()), ("upstream", upstream.url())],
    );
    for _ in 0..2 {
        let resp = client()
            .get(at(&g, "/r"))
            .header("authorization", "Bearer any")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 503);
    }
    // Not negative-cached: it is the gateway's problem, not the token's.
    assert_eq!(provider.calls(), 2);
    assert_eq!(upstream.calls(), 0);
    let rejected = metric(
        &g,
        "sessiongate_provider_calls_total{provider=\"oauth\",result=\"refused\"}",
    )
    .await;
    assert_eq!(rejected, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_tokens_from_env_and_digest() {
    std::env::set_var("SG_TEST_STATIC_TOKEN", "svc-token-1");
    let upstream = Fake::upstream().await;
    // sha256("test") = 9f86d081…
    let config = r#"
listen: {listen}
admin_listen: {admin}
shutdown_grace_period: 0s
providers:
  svc:
    kind: static
    tokens:
      - token: ${SG_TEST_STATIC_TOKEN}
        identity: { subject: billing, scopes: [a, b], organizations: [o1] }
      - token_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
        identity: { subject: reporter }
      - token_sha256: 60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752
        identity: { subject: expired, expires_at: "2020-01-01T00:00:00Z" }
upstreams: { app: {upstream} }
routes:
  - { path_prefix: /, provider: svc, upstream: app }
"#;
    let g = start_gateway(config, &[("upstream", upstream.url())]);
    let send = |token: &'static str| {
        client()
            .get(at(&g, "/x"))
            .header("authorization", format!("Bearer {token}"))
            .send()
    };
    assert_eq!(send("svc-token-1").await.unwrap().status(), 200);
    assert_eq!(upstream.last().header("x-auth-subject"), Some("billing"));
    assert_eq!(upstream.last().header("x-auth-scopes"), Some("a b"));
    assert_eq!(send("test").await.unwrap().status(), 200);
    assert_eq!(upstream.last().header("x-auth-subject"), Some("reporter"));
    // sha256("test2"): listed, but expired.
    let resp = send("test2").await.unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error_description"], "the token has expired");
    assert_eq!(send("svc-token-2").await.unwrap().status(), 401);
    assert_eq!(upstream.calls(), 2);
}

const HTTPS_PROVIDER: &str = r#"
listen: {listen}
admin_listen: {admin}
shutdown_grace_period: 0s
providers:
  idp:
    kind: bitgo
    url: https://localhost:{port}/api/v2/user/session
    {ca}
upstreams: { app: {upstream} }
routes:
  - { path_prefix: /, provider: idp, upstream: app }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_provider_with_a_private_ca() {
    let (ca_pem, acceptor) = test_ca();
    let dir = std::env::temp_dir().join(format!("sg-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();

    let provider = Fake::start_tls(
        |_| {
            Reply::json(
                200,
                json!({"session": {"id": "s", "user": "tls-user", "expires": "2099-01-01T00:00:00Z"}}),
            )
        },
        acceptor,
    )
    .await;
    let upstream = Fake::upstream().await;
    let port = provider.addr.port().to_string();

    // Trusted through `ca_file`: the call succeeds over TLS.
    let g = start_gateway(
        HTTPS_PROVIDER,
        &[
            ("port", port.clone()),
            ("ca", format!("ca_file: {}", ca_file.display())),
            ("upstream", upstream.url()),
        ],
    );
    let send = |g: &sessiongate::GatewayHandle| {
        client()
            .get(at(g, "/x"))
            .header("authorization", "Bearer t")
            .send()
    };
    assert_eq!(send(&g).await.unwrap().status(), 200);
    assert_eq!(upstream.last().header("x-auth-subject"), Some("tls-user"));
    assert_eq!(provider.calls(), 1);

    // Without the private CA the certificate is not trusted: fail closed, nothing sent.
    let g2 = start_gateway(
        HTTPS_PROVIDER,
        &[
            ("port", port),
            ("ca", String::new()),
            ("upstream", upstream.url()),
        ],
    );
    assert_eq!(send(&g2).await.unwrap().status(), 503);
    assert_eq!(
        provider.calls(),
        1,
        "no request may reach an untrusted provider"
    );
    assert_eq!(upstream.calls(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}
