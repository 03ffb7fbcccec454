//! JWT access tokens verified locally (`kind: jwt`), and a route chaining `jwt` with an
//! introspection provider for opaque tokens. Tokens are signed by the test (ES256 and
//! EdDSA keys generated here, an RS256 test key from tests/fixtures/jwt/), the JWKS is
//! served by a fake over real HTTP, and keys rotate while the gateway runs.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::support::*;
use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const ISS: &str = "https://issuer.test/";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A signing key and its public JWK.
struct TestKey {
    kid: &'static str,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

fn ec_key(kid: &'static str) -> TestKey {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let raw = kp.public_key_raw(); // 0x04 || x || y
    TestKey {
        kid,
        alg: Algorithm::ES256,
        encoding: EncodingKey::from_ec_pem(kp.serialize_pem().as_bytes()).unwrap(),
        jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
                    "x": b64(&raw[1..33]), "y": b64(&raw[33..65])}),
    }
}

fn ed_key(kid: &'static str) -> TestKey {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    TestKey {
        kid,
        alg: Algorithm::EdDSA,
        encoding: EncodingKey::from_ed_pem(kp.serialize_pem().as_bytes()).unwrap(),
        jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "use": "sig", "alg": "EdDSA",
                    "x": b64(kp.public_key_raw())}),
    }
}

fn rsa_key() -> TestKey {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt");
    let pem = std::fs::read(format!("{dir}/rsa-test-key.pem")).unwrap();
    let jwk: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{dir}/rsa-test-key.jwk.json")).unwrap(),
    )
    .unwrap();
    TestKey {
        kid: "rsa-1",
        alg: Algorithm::RS256,
        encoding: EncodingKey::from_rsa_pem(&pem).unwrap(),
        jwk,
    }
}

fn sign(key: &TestKey, claims: &Value) -> String {
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.to_string());
    header.typ = Some("at+jwt".into());
    encode(&header, claims, &key.encoding).unwrap()
}

fn claims(sub: &str) -> Value {
    json!({"iss": ISS, "aud": "api", "sub": sub, "exp": now() + 600, "iat": now(),
           "jti": format!("jti-{sub}"), "scope": "read write", "email": format!("{sub}@example.com")})
}

const CONFIG: &str = r#"
listen: {listen}
admin_listen: {admin}
shutdown_grace_period: 0s
providers:
  tokens:
    kind: jwt
    issuer: "https://issuer.test/"
    audiences: [api, other-api]
    algorithms: [ES256, EdDSA, RS256]
    jwks_url: "{jwks}/.well-known/jwks.json"
    jwks_min_refresh_interval: 0s
    leeway: 5s
    response: { claims: { email: /email } }
  opaque:
    kind: rfc7662
    url: "{introspect}/introspect"
    client_id: gw
    client_secret: ${SG_TEST_JWT_INTROSPECT_SECRET}
upstreams: { app: "{upstream}" }
routes:
  - { path_prefix: /, provider: [tokens, opaque], upstream: app }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_tokens_are_verified_locally_and_opaque_ones_introspected() {
    std::env::set_var("SG_TEST_JWT_INTROSPECT_SECRET", "s");
    let (es, ed, rsa) = (ec_key("ec-1"), ed_key("ed-1"), rsa_key());
    let jwks = Arc::new(Mutex::new(json!({"keys": [es.jwk, ed.jwk, rsa.jwk]})));
    let served = jwks.clone();
    let jwks_server = Fake::start(move |_| Reply::json(200, served.lock().unwrap().clone())).await;
    let introspect = Fake::start(|req| {
        let form: Vec<(String, String)> = url::form_urlencoded::parse(&req.body)
            .into_owned()
            .collect();
        match form
            .iter()
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.as_str())
        {
            Some("opaque-good") => Reply::json(200, json!({"active": true, "sub": "opaque-user"})),
            _ => Reply::json(200, json!({"active": false})),
        }
    })
    .await;
    let upstream = Fake::upstream().await;
    let g = start_gateway(
        CONFIG,
        &[
            ("jwks", jwks_server.url()),
            ("introspect", introspect.url()),
            ("upstream", upstream.url()),
        ],
    );

    // The JWKS is fetched at start, before any token arrives.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while jwks_server.calls() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "JWKS not fetched at start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // Each algorithm, accepted; identity from the claims.
    for (key, sub) in [(&es, "es-user"), (&ed, "ed-user"), (&rsa, "rsa-user")] {
        let token = sign(key, &claims(sub));
        let resp = get_bearer(&g, "/x", &token).await;
        assert_eq!(resp.status(), 200, "{:?}", key.alg);
        let up = upstream.last();
        assert_eq!(up.header("x-auth-subject"), Some(sub));
        assert_eq!(
            up.header("x-auth-session-id"),
            Some(format!("jti-{sub}").as_str())
        );
        assert_eq!(up.header("x-auth-scopes"), Some("read write"));
        assert_eq!(
            up.header("x-auth-claim-email"),
            Some(format!("{sub}@example.com").as_str())
        );
        assert_eq!(up.header("x-auth-provider"), Some("tokens"));
        // Cached: the second request verifies nothing and fetches nothing.
        assert_eq!(get_bearer(&g, "/x", &token).await.status(), 200);
    }
    assert_eq!(
        jwks_server.calls(),
        1,
        "the JWKS is fetched once and reused"
    );
    assert_eq!(
        introspect.calls(),
        0,
        "JWTs never reach the introspection endpoint"
    );

    // `scp` as an array works as well as `scope`.
    let mut c = claims("scp-user");
    c.as_object_mut().unwrap().remove("scope");
    c["scp"] = json!(["a", "b"]);
    assert_eq!(get_bearer(&g, "/x", &sign(&es, &c)).await.status(), 200);
    assert_eq!(upstream.last().header("x-auth-scopes"), Some("a b"));

    // Everything that must be refused: 401, nothing forwarded.
    let before = upstream.calls();
    let mut refused: Vec<(&str, String)> = Vec::new();
    let mut expired = claims("u");
    expired["exp"] = json!(now() - 60);
    refused.push(("expired", sign(&es, &expired)));
    let mut early = claims("u");
    early["nbf"] = json!(now() + 600);
    refused.push(("not yet valid", sign(&es, &early)));
    let mut wrong_iss = claims("u");
    wrong_iss["iss"] = json!("https://evil.test/");
    refused.push(("wrong issuer", sign(&es, &wrong_iss)));
    let mut wrong_aud = claims("u");
    wrong_aud["aud"] = json!("someone-else");
    refused.push(("wrong audience", sign(&es, &wrong_aud)));
    let mut no_exp = claims("u");
    no_exp.as_object_mut().unwrap().remove("exp");
    refused.push(("no exp", sign(&es, &no_exp)));
    let unknown = TestKey {
        kid: "nobody",
        ..ec_key("nobody")
    };
    refused.push(("unknown kid", sign(&unknown, &claims("u"))));
    let none_header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = b64(claims("u").to_string().as_bytes());
    refused.push(("alg none", format!("{none_header}.{payload}.")));
    // Algorithm confusion: HS256 keyed with the RSA public key the JWKS publishes.
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("rsa-1".into());
    let rsa_public = serde_json::to_vec(&rsa.jwk).unwrap();
    refused.push((
        "HS256 with the RSA key as secret",
        encode(&hs, &claims("u"), &EncodingKey::from_secret(&rsa_public)).unwrap(),
    ));
    let good = sign(&es, &claims("victim"));
    let parts: Vec<&str> = good.split('.').collect();
    let mut forged = claims("victim");
    forged["sub"] = json!("admin");
    refused.push((
        "tampered payload",
        format!(
            "{}.{}.{}",
            parts[0],
            b64(forged.to_string().as_bytes()),
            parts[2]
        ),
    ));
    for (what, token) in &refused {
        let resp = get_bearer(&g, "/x", token).await;
        assert_eq!(resp.status(), 401, "{what}");
    }
    assert_eq!(upstream.calls(), before, "nothing refused was forwarded");

    // Key rotation: a new kid is picked up without a restart.
    let es2 = ec_key("ec-2");
    jwks.lock().unwrap()["keys"]
        .as_array_mut()
        .unwrap()
        .push(es2.jwk.clone());
    let rotated = sign(&es2, &claims("rotated-user"));
    assert_eq!(get_bearer(&g, "/x", &rotated).await.status(), 200);
    assert_eq!(
        upstream.last().header("x-auth-subject"),
        Some("rotated-user")
    );

    // Opaque tokens go to the next provider in the chain.
    assert_eq!(get_bearer(&g, "/x", "opaque-good").await.status(), 200);
    assert_eq!(upstream.last().header("x-auth-provider"), Some("opaque"));
    assert_eq!(
        upstream.last().header("x-auth-subject"),
        Some("opaque-user")
    );
    assert_eq!(get_bearer(&g, "/x", "opaque-bad").await.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_unreachable_fails_closed() {
    std::env::set_var("SG_TEST_JWT_INTROSPECT_SECRET", "s");
    let upstream = Fake::upstream().await;
    let g = start_gateway(
        CONFIG,
        &[
            ("jwks", format!("http://127.0.0.1:{}", free_port())),
            ("introspect", format!("http://127.0.0.1:{}", free_port())),
            ("upstream", upstream.url()),
        ],
    );
    let token = sign(&ec_key("ec-1"), &claims("u"));
    assert_eq!(get_bearer(&g, "/x", &token).await.status(), 503);
    assert_eq!(upstream.calls(), 0);
}

const HANGING: &str = r#"
listen: {listen}
admin_listen: {admin}
shutdown_grace_period: 0s
providers:
  tokens:
    kind: jwt
    issuer: "https://issuer.test/"
    audiences: [api]
    algorithms: [ES256]
    jwks_url: "{jwks}/.well-known/jwks.json"
    jwks_refresh: 1s
    jwks_min_refresh_interval: 5s
    timeout: 2s
upstreams: { app: "{upstream}" }
routes:
  - { path_prefix: /, provider: tokens, upstream: app }
"#;

/// `GET /x` with each token, all at once; the statuses in token order.
async fn concurrently(
    g: &sessiongate::GatewayHandle,
    tokens: impl Iterator<Item = String>,
) -> Vec<u16> {
    let url = at(g, "/x");
    let tasks: Vec<_> = tokens
        .map(|token| {
            let url = url.clone();
            tokio::spawn(async move {
                client()
                    .get(url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// Issue #13 row 10: a JWKS endpoint that accepts connections but never answers (after
/// the first fetch) must not make requests wait for scheduled refreshes, and an unknown
/// `kid` costs at most one shared, rate-limited fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_jwks_never_holds_requests_up() {
    let es = ec_key("ec-1");
    let set = json!({"keys": [es.jwk]});
    let served = std::sync::atomic::AtomicUsize::new(0);
    let jwks = Fake::start(move |_| {
        let n = served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let reply = Reply::json(200, set.clone());
        if n == 0 {
            reply
        } else {
            reply.after(std::time::Duration::from_secs(30))
        }
    })
    .await;
    let upstream = Fake::upstream().await;
    let g = start_gateway(
        HANGING,
        &[("jwks", jwks.url()), ("upstream", upstream.url())],
    );
    while jwks.calls() == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Past `jwks_refresh`: the background refresh is now stuck on the endpoint.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(jwks.calls() >= 2, "the scheduled refresh ran");
    let started = std::time::Instant::now();
    let tokens = (0..4).map(|i| sign(&es, &claims(&format!("fresh-{i}"))));
    let statuses = concurrently(&g, tokens).await;
    assert_eq!(statuses, [200; 4]);
    assert!(
        started.elapsed() < std::time::Duration::from_millis(500),
        "new tokens waited on a scheduled refresh: {:?}",
        started.elapsed()
    );

    // Unknown kids: concurrent requests share one bounded wait, not one fetch each.
    let stranger = ec_key("unknown-kid");
    let before = jwks.calls();
    let started = std::time::Instant::now();
    let tokens = (0..4).map(|i| sign(&stranger, &claims(&format!("stranger-{i}"))));
    let statuses = concurrently(&g, tokens).await;
    assert_eq!(statuses, [401; 4]);
    assert!(
        started.elapsed() < std::time::Duration::from_millis(3500),
        "{:?}",
        started.elapsed()
    );
    assert!(
        jwks.calls() - before <= 1,
        "{} fetches for 4 unknown kids",
        jwks.calls() - before
    );
}

/// The `HANGING` gateway in front of `jwks`, with its own refresh period and minimum
/// interval between fetches.
async fn gateway_with_refresh(
    jwks: &Fake,
    refresh: &str,
    min_interval: &str,
) -> (sessiongate::GatewayHandle, Fake) {
    let upstream = Fake::upstream().await;
    let config = HANGING
        .replace("jwks_refresh: 1s", &format!("jwks_refresh: {refresh}"))
        .replace(
            "jwks_min_refresh_interval: 5s",
            &format!("jwks_min_refresh_interval: {min_interval}"),
        );
    let g = start_gateway(
        &config,
        &[("jwks", jwks.url()), ("upstream", upstream.url())],
    );
    (g, upstream)
}

/// A JWKS endpoint that refuses is not asked again for every new token, even with no
/// minimum interval between fetches: after a failure, at most one fetch a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_jwks_is_not_fetched_per_token() {
    let es = ec_key("ec-1");
    let set = json!({"keys": [es.jwk]});
    let served = std::sync::atomic::AtomicUsize::new(0);
    let jwks = Fake::start(move |_| {
        if served.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            Reply::json(200, set.clone())
        } else {
            Reply::json(500, json!({"error": "down"}))
        }
    })
    .await;
    let (g, _upstream) = gateway_with_refresh(&jwks, "10m", "0s").await;
    while jwks.calls() == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let stranger = ec_key("unknown-kid");
    for i in 0..10 {
        let token = sign(&stranger, &claims(&format!("s-{i}")));
        assert_eq!(get_bearer(&g, "/x", &token).await.status(), 401);
    }
    // Known keys keep working throughout.
    assert_eq!(
        get_bearer(&g, "/x", &sign(&es, &claims("known")))
            .await
            .status(),
        200
    );
    assert!(
        jwks.calls() <= 2,
        "{} JWKS fetches for 10 unknown-kid tokens",
        jwks.calls()
    );
}

/// A JWKS that is down when the gateway starts — first hanging, then refusing — and comes
/// back: while it is down, requests get 503 within the fetch timeout; once it is back,
/// tokens are accepted within max(jwks_min_refresh_interval, 2 s), not after a backoff
/// that grew during the outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_down_at_start_is_used_as_soon_as_it_is_back() {
    use std::time::{Duration, Instant};
    let es = ec_key("ec-1");
    let set = json!({"keys": [es.jwk]});
    let opened = Instant::now();
    let (hang_until, refuse_until) = (Duration::from_secs(4), Duration::from_secs(10));
    let jwks = Fake::start(move |_| {
        let t = opened.elapsed();
        if t < hang_until {
            Reply::json(200, set.clone()).after(Duration::from_secs(30))
        } else if t < refuse_until {
            Reply::json(503, json!({"error": "down"}))
        } else {
            Reply::json(200, set.clone())
        }
    })
    .await;
    let (g, _upstream) = gateway_with_refresh(&jwks, "10m", "1s").await;
    let token = sign(&es, &claims("after-outage"));
    let mut slowest_refusal = Duration::ZERO;
    let accepted_at = loop {
        let asked = Instant::now();
        let status = get_bearer(&g, "/x", &token).await.status().as_u16();
        if status == 200 {
            break opened.elapsed();
        }
        assert_eq!(status, 503, "a JWT while the JWKS is down");
        slowest_refusal = slowest_refusal.max(asked.elapsed());
        assert!(opened.elapsed() < Duration::from_secs(30), "never accepted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The fetch timeout is 2 s: a hanging JWKS holds a request no longer (plus slack).
    assert!(
        slowest_refusal < Duration::from_millis(2600),
        "{slowest_refusal:?}"
    );
    let after_back = accepted_at.saturating_sub(refuse_until);
    assert!(
        after_back < Duration::from_secs(2),
        "accepted {after_back:?} after the JWKS was back (refused until {refuse_until:?})"
    );
}
