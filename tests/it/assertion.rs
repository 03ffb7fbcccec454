//! Signed identity assertions for upstreams: minted per route, verified here against the
//! JWKS the admin listener serves, cached, never spoofable by clients. (An independent
//! implementation, PyJWT, verifies them too: tests/e2e/assertion.sh, run by .ci/run.)

use crate::support::*;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, DecodingKey, Validation};
use serde_json::Value;

fn write_key(dir: &std::path::Path, name: &str, alg: &'static rcgen::SignatureAlgorithm) -> String {
    let kp = rcgen::KeyPair::generate_for(alg).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, kp.serialize_pem()).unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assertions_are_signed_cached_and_verifiable_with_the_served_jwks() {
    let dir = std::env::temp_dir().join(format!("sg-assert-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let es = write_key(&dir, "es.pem", &rcgen::PKCS_ECDSA_P256_SHA256);
    let ed = write_key(&dir, "ed.pem", &rcgen::PKCS_ED25519);
    let rsa = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/jwt/rsa-test-key.pem"
    )
    .to_string();
    let upstream = Fake::upstream().await;
    // sha256("test") = 9f86…: token "test" is subject "alice", expiring 2099.
    let config = r#"
listen: {listen}
admin_listen: {admin}
shutdown_grace_period: 0s
assertion_keys:
  - { kid: es-1, algorithm: ES256, key_file: "{es}" }
  - { kid: ed-1, algorithm: EdDSA, key_file: "{ed}" }
  - { kid: rsa-1, algorithm: RS256, key_file: "{rsa}" }
providers:
  s:
    kind: static
    tokens:
      - token_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
        identity: { subject: alice, session_id: sess-1, scopes: [read, write], organizations: [acme], expires_at: "2099-01-01T00:00:00Z" }
upstreams: { app: "{upstream}" }
routes:
  - { path_prefix: /orders, provider: s, upstream: app, assertion: { audience: orders, ttl: 60s } }
  - { path_prefix: /billing, provider: s, upstream: app, assertion: { audience: billing, key: ed-1, issuer: "https://gw.example" } }
  - { path_prefix: /rsa, provider: s, upstream: app, assertion: { audience: rsa-app, key: rsa-1 } }
  - { path_prefix: /, provider: s, upstream: app }
"#;
    let g = start_gateway(
        config,
        &[
            ("es", es),
            ("ed", ed),
            ("rsa", rsa),
            ("upstream", upstream.url()),
        ],
    );
    let jwks_text = client()
        .get(admin(&g, "/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let jwks: JwkSet = serde_json::from_str(&jwks_text).unwrap();
    assert_eq!(jwks.keys.len(), 3, "every key is published: {jwks_text}");
    assert!(
        !jwks_text.contains("\"d\""),
        "no private parameters: {jwks_text}"
    );

    let verify = |token: &str, aud: &str, iss: &str| -> Value {
        let header = decode_header(token).unwrap();
        let jwk = jwks
            .find(header.kid.as_deref().unwrap())
            .expect("kid published");
        let mut v = Validation::new(header.alg);
        v.set_audience(&[aud]);
        v.set_issuer(&[iss]);
        decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &v)
            .unwrap_or_else(|e| panic!("{e}: {token}"))
            .claims
    };

    let spoof = [(
        "x-auth-assertion",
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.",
    )];
    let req = |path: &'static str| {
        let mut r = client()
            .get(at(&g, path))
            .header("authorization", "Bearer test");
        for (k, v) in spoof {
            r = r.header(k, v);
        }
        r.send()
    };
    assert_eq!(req("/orders/1").await.unwrap().status(), 200);
    let first = upstream
        .last()
        .header("x-auth-assertion")
        .unwrap()
        .to_string();
    let claims = verify(&first, "orders", "sessiongate");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["sid"], "sess-1");
    assert_eq!(claims["scope"], "read write");
    assert_eq!(claims["orgs"], serde_json::json!(["acme"]));
    let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
    assert_eq!(lifetime, 60);
    assert_eq!(decode_header(&first).unwrap().kid.as_deref(), Some("es-1"));

    // Cached: the same assertion is reused, not re-signed per request.
    assert_eq!(req("/orders/2").await.unwrap().status(), 200);
    assert_eq!(
        upstream.last().header("x-auth-assertion"),
        Some(first.as_str())
    );

    assert_eq!(req("/billing/x").await.unwrap().status(), 200);
    let billing = upstream
        .last()
        .header("x-auth-assertion")
        .unwrap()
        .to_string();
    assert_eq!(
        verify(&billing, "billing", "https://gw.example")["sub"],
        "alice"
    );
    assert_eq!(
        decode_header(&billing).unwrap().kid.as_deref(),
        Some("ed-1")
    );

    assert_eq!(req("/rsa/x").await.unwrap().status(), 200);
    let rsa_token = upstream
        .last()
        .header("x-auth-assertion")
        .unwrap()
        .to_string();
    assert_eq!(verify(&rsa_token, "rsa-app", "sessiongate")["sub"], "alice");

    // A route without an assertion: the client's forged one is stripped, none is added.
    assert_eq!(req("/other").await.unwrap().status(), 200);
    assert!(upstream.last().all("x-auth-assertion").is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
