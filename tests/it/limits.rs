//! Rate limits per identity (issue #37), local mode, over real sockets: accuracy of one
//! identity sent at 5× its rate, other identities unaffected, tiers by scope and claim, the
//! 429's shape, report mode, the RateLimit fields on admitted responses, `auth: none`
//! routes keyed by the client address, `explain` without spending quota, the admin reset,
//! metrics, and a reload that keeps unchanged policies' counters.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::*;
use sessiongate::GatewayHandle;

const ADMIN_TOKEN: &str = "limits-admin-token-0123456789";
const ALICE: &str = "alice-token-0123456789";
const BOB: &str = "bob-token-0123456789";
const CAROL: &str = "carol-token-0123456789";
const DAVE: &str = "dave-token-0123456789";

fn config() -> String {
    format!(
        r#"
listen: {{listen}}
admin_listen: {{admin}}
shutdown_grace_period: 0s
admin: {{ token: "${{SG_LIMITS_ADMIN}}" }}
providers:
  p:
    kind: static
    tokens:
      - {{ token_sha256: {alice}, identity: {{ subject: alice, scopes: [read], organizations: [acme] }} }}
      - {{ token_sha256: {bob}, identity: {{ subject: bob, scopes: [read, "plan:premium"], organizations: [acme] }} }}
      - {{ token_sha256: {carol}, identity: {{ subject: carol, scopes: [read], organizations: [globex] }} }}
      - {{ token_sha256: {dave}, identity: {{ subject: dave, scopes: [read], claims: {{ plan: gold }} }} }}
upstreams: {{ app: "{{upstream}}" }}
rate_limits:
  per-user:
    rate: 20/s
    burst: 5
    tiers:
      - {{ name: premium, scope: "plan:premium", rate: 100/s, burst: 10 }}
      - {{ name: gold, claim: {{ plan: gold }}, rate: 2/min, burst: 2 }}
  strict:
    key: subject
    rate: 2/min
    burst: 2
    headers: always
  shadow:
    rate: 1/min
    burst: 1
    mode: report
  per-org:
    key: param:org
    rate: 3/min
    burst: 3
  by-address:
    key: client_address
    rate: 2/min
    burst: 2
routes:
  - {{ name: api, path_prefix: /api, provider: p, upstream: app, rate_limits: [per-user] }}
  - {{ name: expensive, path_prefix: /expensive, provider: p, upstream: app, rate_limits: [per-user, strict] }}
  - {{ name: shadow, path_prefix: /shadow, provider: p, upstream: app, rate_limits: [shadow] }}
  - {{ name: orgs, path: "/orgs/{{org}}/{{rest*}}", provider: p, upstream: app, rate_limits: [per-org] }}
  - {{ name: public, path_prefix: /public, auth: none, upstream: app, rate_limits: [by-address] }}
  - {{ name: rest, path_prefix: /, provider: p, upstream: app }}
"#,
        alice = sha(ALICE),
        bob = sha(BOB),
        carol = sha(CAROL),
        dave = sha(DAVE),
    )
}

fn gateway(upstream: &Fake) -> GatewayHandle {
    std::env::set_var("SG_LIMITS_ADMIN", ADMIN_TOKEN);
    start_gateway(&config(), &[("upstream", upstream.url())])
}

/// `POST` to the admin API with the admin token (a JSON body unless `Null`).
async fn admin_post(g: &GatewayHandle, path: &str, body: Value) -> reqwest::Response {
    let req = client().post(admin(g, path)).bearer_auth(ADMIN_TOKEN);
    let req = if body.is_null() { req } else { req.json(&body) };
    req.send().await.unwrap()
}

/// Sends `GET path` as `token` every `every` for `run`; returns (admitted, refused, the
/// time from the first request to the last).
async fn paced(
    g: &GatewayHandle,
    path: &str,
    token: &str,
    every: Duration,
    run: Duration,
) -> (u32, u32, Duration) {
    let c = client();
    let (mut ok, mut limited) = (0, 0);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let start = Instant::now();
    let mut last = start;
    while start.elapsed() < run {
        tick.tick().await;
        last = Instant::now();
        let resp = c
            .get(at(g, path))
            .header("authorization", format!("Bearer {token}"))
            .send()
            .await
            .unwrap();
        match resp.status().as_u16() {
            200 => ok += 1,
            429 => limited += 1,
            s => panic!("{path} as {token}: status {s}"),
        }
    }
    (ok, limited, last - start)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_identity_at_five_times_its_rate_gets_its_rate_and_the_others_are_unaffected() {
    let upstream = Fake::upstream().await;
    let g = gateway(&upstream);
    let run = Duration::from_secs(10);
    // Alice: 20/s with a burst of 5, sent 100/s. Bob (premium tier, 100/s): 50/s, all
    // admitted though the default tier would limit him. Carol: 10/s, under her own limit.
    // Halfway, the gauge counts the keys that are not full again: alice's surely.
    let halfway = async {
        tokio::time::sleep(run / 2).await;
        metric(&g, r#"sessiongate_rate_limit_keys{policy="per-user"}"#).await
    };
    let (alice, bob, carol, keys) = tokio::join!(
        paced(&g, "/api/a", ALICE, Duration::from_millis(10), run),
        paced(&g, "/api/b", BOB, Duration::from_millis(20), run),
        paced(&g, "/api/c", CAROL, Duration::from_millis(100), run),
        halfway,
    );
    assert!((1.0..=3.0).contains(&keys), "{keys} keys tracked halfway");
    // GCRA admits the burst, then one request per interval of the time that passed
    // between the first request and the last.
    let expected = 5.0 + alice.2.as_secs_f64() * 20.0;
    let got = f64::from(alice.0);
    eprintln!(
        "alice: {} admitted, {} refused in {:?} (expected {expected:.1}); bob {}/{}; carol {}/{}",
        alice.0, alice.1, alice.2, bob.0, bob.1, carol.0, carol.1
    );
    assert!(
        (got - expected).abs() <= expected * 0.02,
        "alice admitted {got}, expected {expected:.1} ±2 % (refused {})",
        alice.1
    );
    assert!(alice.1 > 600, "alice was refused only {} times", alice.1);
    assert_eq!(bob.1, 0, "bob (premium tier) was limited {} times", bob.1);
    assert!(bob.0 > 400, "bob sent only {}", bob.0);
    assert_eq!(carol.1, 0, "carol was limited by alice's traffic");
    assert_eq!(
        metric(
            &g,
            r#"sessiongate_rate_limited_total{mode="enforce",policy="per-user",route="api"}"#
        )
        .await,
        f64::from(alice.1)
    );
    assert_eq!(
        metric(
            &g,
            r#"sessiongate_requests_total{mode="proxy",outcome="rate_limited",route="api"}"#
        )
        .await,
        f64::from(alice.1)
    );
    // A second later every key is full again, and dropped.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let keys = metric(&g, r#"sessiongate_rate_limit_keys{policy="per-user"}"#).await;
    assert_eq!(keys, 0.0, "keys full again are still tracked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_names_the_policy_and_when_to_come_back_and_the_strictest_policy_decides() {
    let upstream = Fake::upstream().await;
    let g = gateway(&upstream);
    let c = client();
    let get = |path: &'static str, token: &'static str| {
        c.get(at(&g, path))
            .header("authorization", format!("Bearer {token}"))
            .send()
    };
    // `strict` (2/min, headers always) on top of per-user: two admitted, each saying
    // what is left; the third refused by `strict`, not by per-user.
    for left in [1, 0] {
        let r = get("/expensive/x", ALICE).await.unwrap();
        assert_eq!(r.status(), 200);
        let h = header_map(&r);
        assert_eq!(h["ratelimit-policy"], r#""strict";q=2;w=60"#);
        assert!(
            h["ratelimit"].starts_with(&format!(r#""strict";r={left};t="#)),
            "{h:?}"
        );
    }
    let r = get("/expensive/x", ALICE).await.unwrap();
    assert_eq!(r.status(), 429);
    let h = header_map(&r);
    let wait: u64 = h["retry-after"].parse().unwrap();
    assert!((29..=31).contains(&wait), "Retry-After {wait}");
    assert_eq!(h["ratelimit-policy"], r#""strict";q=2;w=60"#);
    assert_eq!(h["ratelimit"], format!(r#""strict";r=0;t={wait}"#));
    assert_eq!(h["cache-control"], "no-store");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");
    assert_eq!(body["policy"], "strict");
    let text = body.to_string();
    assert!(!text.contains("alice") && !text.contains(ALICE), "{text}");
    // Another identity has its own count.
    assert_eq!(get("/expensive/x", CAROL).await.unwrap().status(), 200);
    // A tier by claim: dave's `plan: gold` gets 2/min on /api (the default is 20/s).
    for _ in 0..2 {
        assert_eq!(get("/api/x", DAVE).await.unwrap().status(), 200);
    }
    assert_eq!(get("/api/x", DAVE).await.unwrap().status(), 429);

    // explain shows the policies, the key kind and the tier, and spends nothing.
    let explain = |token: &str, path: &str| {
        c.post(admin(&g, "/admin/explain"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"method": "GET", "path": path, "token": token}))
            .send()
    };
    let trace: Value = explain(BOB, "/expensive/x")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        trace["rate_limits"],
        json!([
            {"policy": "per-user", "key": "subject", "tier": "premium", "rate": "100/1s", "burst": 10, "mode": "enforce"},
            {"policy": "strict", "key": "subject", "tier": "default", "rate": "2/60s", "burst": 2, "mode": "enforce"},
        ])
    );
    for _ in 0..5 {
        explain(CAROL, "/expensive/x").await.unwrap();
    }
    assert_eq!(get("/expensive/x", CAROL).await.unwrap().status(), 200);
    assert_eq!(get("/expensive/x", CAROL).await.unwrap().status(), 429);

    // The admin reset gives one key a full burst again (this replica).
    let reset = admin_post(
        &g,
        "/admin/rate_limits/reset",
        json!({"policy": "strict", "key": "alice"}),
    );
    assert_eq!(reset.await.status(), 200);
    assert_eq!(get("/expensive/x", ALICE).await.unwrap().status(), 200);
    assert_eq!(get("/expensive/x", CAROL).await.unwrap().status(), 429);
    let unknown = admin_post(
        &g,
        "/admin/rate_limits/reset",
        json!({"policy": "nope", "key": "alice"}),
    );
    assert_eq!(unknown.await.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_mode_counts_and_lets_through_and_keys_by_path_and_address() {
    let upstream = Fake::upstream().await;
    let g = gateway(&upstream);
    let c = client();
    // Report mode: 1/min, five requests, all admitted, four counted as over the limit.
    for _ in 0..5 {
        let r = get_bearer(&g, "/shadow/x", ALICE).await;
        assert_eq!(r.status(), 200);
        assert!(r.headers().get("ratelimit").is_none());
    }
    assert_eq!(
        metric(
            &g,
            r#"sessiongate_rate_limited_total{mode="report",policy="shadow",route="shadow"}"#
        )
        .await,
        4.0
    );
    // Per organization in the path: acme's quota is shared by alice and bob, globex's is
    // its own.
    for (token, org, want) in [
        (ALICE, "acme", 200),
        (BOB, "acme", 200),
        (ALICE, "acme", 200),
        (BOB, "acme", 429),
        (CAROL, "globex", 200),
    ] {
        let r = get_bearer(&g, &format!("/orgs/{org}/x"), token).await;
        assert_eq!(r.status().as_u16(), want, "{token} on {org}");
    }
    // auth: none, by client address: two, then 429 (no token involved).
    for want in [200, 200, 429] {
        let r = c.get(at(&g, "/public/x")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), want);
    }
    // A route without limits is not limited.
    for _ in 0..30 {
        assert_eq!(get_bearer(&g, "/other", ALICE).await.status(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_the_counters_of_unchanged_policies_and_resets_changed_ones() {
    let upstream = Fake::upstream().await;
    std::env::set_var("SG_LIMITS_ADMIN", ADMIN_TOKEN);
    let dir = temp_dir("limits-reload");
    let path = dir.join("gw.yaml");
    let g = start_gateway_from_file(
        &config(),
        &[("upstream", upstream.url())],
        &path,
        sessiongate::clock::system(),
        None,
    );
    let c = client();
    // Spend `strict` (2/min) and `by-address` (2/min).
    for _ in 0..2 {
        assert_eq!(get_bearer(&g, "/expensive/x", ALICE).await.status(), 200);
        assert_eq!(
            c.get(at(&g, "/public/x")).send().await.unwrap().status(),
            200
        );
    }
    // Reload with `by-address` changed (3/min) and `strict` as it was.
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "    key: client_address\n    rate: 2/min",
        "    key: client_address\n    rate: 3/min",
    );
    std::fs::write(&path, text).unwrap();
    let r = admin_post(&g, "/admin/reload", Value::Null).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(
        get_bearer(&g, "/expensive/x", ALICE).await.status(),
        429,
        "strict kept its count"
    );
    assert_eq!(
        c.get(at(&g, "/public/x")).send().await.unwrap().status(),
        200,
        "by-address changed: a new count"
    );
    // A bad rate is refused with its key, and the limits in force stay.
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("rate: 3/min", "rate: 3/fortnight");
    std::fs::write(&path, text).unwrap();
    let r = admin_post(&g, "/admin/reload", Value::Null).await;
    assert_eq!(r.status(), 422);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("rate_limits.by-address.rate"));
    assert_eq!(get_bearer(&g, "/expensive/x", ALICE).await.status(), 429);
}
