//! Resilience and operations end to end: the stale-if-error budget, the provider circuit
//! breaker, the token pre-check, the per-client miss limit, the admin API (purge,
//! explain, reload) and reloads that keep cached identities. Gateways decide on a
//! `ManualClock`, so freshness and cool-downs are stepped, not slept through.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::*;
use serde_json::{json, Value};
use sessiongate::clock::ManualClock;
use sessiongate::GatewayHandle;

const ADMIN_TOKEN: &str = "admin-secret-0123456789";

const NORMAL: u8 = 0;
const DOWN: u8 = 1;
const GARBAGE: u8 = 2;

/// Tokens `t-<name>` name their identity; the mode makes the provider fail.
async fn provider(mode: Arc<AtomicU8>) -> Fake {
    Fake::start(move |req| {
        match mode.load(Ordering::SeqCst) {
            DOWN => return Reply::json(500, json!({"error": "internal"})),
            GARBAGE => return Reply::raw(200, "text/html", "<html>maintenance</html>"),
            _ => {}
        }
        let token = req
            .header("authorization")
            .and_then(|a| a.strip_prefix("Bearer t-"))
            .unwrap_or("");
        let id = match token {
            "alice" => json!({"sub": "alice", "sid": "s-alice", "scopes": ["read"]}),
            "alice2" => json!({"sub": "alice", "sid": "s-alice-2", "scopes": ["read"]}),
            "bob" => json!({"sub": "bob", "sid": "s-bob", "scopes": ["read", "admin"]}),
            "ipbound" => {
                json!({"sub": "carol", "sid": "s-c", "scopes": [], "ips": ["203.0.113.0/24"]})
            }
            t if t.starts_with("user") => json!({"sub": t, "sid": format!("s-{t}"), "scopes": []}),
            _ => return Reply::json(401, json!({"error": "unknown token"})),
        };
        Reply::json(200, id)
    })
    .await
}

const CONFIG: &str = r#"
listen: {listen}
admin_listen: {admin}
shutdown_grace_period: 0s
admin: { token_file: "{admin_token_file}" }
cache: { ttl: 60s, refresh_ahead: 0 {cache_extra} }
providers:
  idp:
    kind: http
    url: "{provider}/session"
    timeout: {timeout}
    response: { subject: /sub, session_id: /sid, scopes: /scopes, ip_restrict: /ips }
    protection: { failures: {failures}, open_for: 10m }
    token_format: { min_length: 3, charset: base64url, prefix: "t-" }
routes:
  - { name: tolerant, path_prefix: /tolerant, provider: idp, upstream: echo, stale_if_error: 5m }
  - { name: strict, path_prefix: /strict, provider: idp, upstream: echo }
  - name: settings
    path_prefix: /settings
    provider: idp
    upstream: echo
    require_scopes: { all_of: [admin] }
  - { name: office, path_prefix: /office, provider: idp, upstream: echo, allow_cidrs: [10.0.0.0/8] }
{extra_routes}
"#;

struct Setup {
    gw: GatewayHandle,
    idp: Fake,
    mode: Arc<AtomicU8>,
    clock: ManualClock,
    dir: std::path::PathBuf,
    vars: Vec<(&'static str, String)>,
}

async fn setup(name: &str, overrides: &[(&'static str, &str)]) -> Setup {
    setup_watching(name, overrides, None).await
}

async fn setup_watching(
    name: &str,
    overrides: &[(&'static str, &str)],
    watch: Option<Duration>,
) -> Setup {
    let mode = Arc::new(AtomicU8::new(NORMAL));
    let idp = provider(mode.clone()).await;
    let dir = temp_dir(name);
    std::fs::write(dir.join("admin-token"), format!("{ADMIN_TOKEN}\n")).unwrap();
    let mut vars: Vec<(&'static str, String)> = vec![
        ("provider", idp.url()),
        (
            "admin_token_file",
            dir.join("admin-token").display().to_string(),
        ),
        ("failures", "100".into()),
        ("timeout", "2s".into()),
        ("cache_extra", String::new()),
        ("extra_routes", String::new()),
    ];
    override_vars(&mut vars, overrides);
    let clock = ManualClock::new();
    let gw = start_gateway_from_file(
        CONFIG,
        &vars,
        &dir.join("sessiongate.yaml"),
        Arc::new(clock.clone()),
        watch,
    );
    Setup {
        gw,
        idp,
        mode,
        clock,
        dir,
        vars,
    }
}

impl Setup {
    async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        get_bearer(&self.gw, path, token).await
    }
    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }
    async fn admin_post(&self, path: &str, body: &str) -> (u16, Value) {
        let resp = client()
            .post(admin(&self.gw, path))
            .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
    /// Rewrites the config file with these overrides (the admin ports stay the same).
    fn rewrite(&self, overrides: &[(&'static str, &str)], raw_suffix: &str) {
        let path = self.dir.join("sessiongate.yaml");
        let mut vars = self.vars.clone();
        override_vars(&mut vars, overrides);
        let mut text = render_config(
            CONFIG,
            &self.gw.proxy_addr.to_string(),
            &self.gw.admin_addr.to_string(),
            &vars,
        );
        text.push_str(raw_suffix);
        std::fs::write(path, text).unwrap();
    }
}

/// Replaces (or adds) the given placeholder values.
fn override_vars(vars: &mut Vec<(&'static str, String)>, overrides: &[(&'static str, &str)]) {
    for (k, v) in overrides {
        vars.retain(|(key, _)| key != k);
        vars.push((k, v.to_string()));
    }
}

async fn echo(resp: reqwest::Response) -> Value {
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_identities_serve_only_within_the_route_budget_and_are_marked() {
    let s = setup("stale", &[]).await;
    // A client cannot claim staleness (or anything under the identity prefix).
    let fresh = client()
        .get(at(&s.gw, "/tolerant/x"))
        .header("authorization", "Bearer t-alice")
        .header("x-auth-stale", "0")
        .send()
        .await
        .unwrap();
    let body = echo(fresh).await;
    assert!(body["headers"].get("x-auth-stale").is_none(), "{body}");
    assert_eq!(s.idp.calls(), 1);

    s.clock.advance(Duration::from_secs(61));
    for mode in [DOWN, GARBAGE] {
        s.set(mode);
        let body = echo(s.get("/tolerant/x", "t-alice").await).await;
        assert_eq!(body["headers"]["x-auth-subject"], "alice");
        assert_eq!(body["headers"]["x-auth-stale"], "61");
        // The same identity on a route without a budget fails closed.
        let strict = s.get("/strict/x", "t-alice").await;
        assert_eq!(strict.status(), 503);
        assert!(strict.headers().contains_key("retry-after"));
    }
    assert_eq!(
        metric(
            &s.gw,
            "sessiongate_stale_served_total{provider=\"idp\",route=\"tolerant\"}"
        )
        .await,
        2.0
    );
    assert_eq!(
        metric(&s.gw, "sessiongate_cache_lookups_total{result=\"stale\"}").await,
        2.0
    );
    // Budget spent (60 s fresh + 300 s): no more stale answers.
    s.clock.advance(Duration::from_secs(300));
    assert_eq!(s.get("/tolerant/x", "t-alice").await.status(), 503);
    // Unknown tokens never get a stale pass.
    assert_eq!(s.get("/tolerant/x", "t-user9").await.status(), 503);
    // The provider recovers: a fresh answer, no stale marker.
    s.set(NORMAL);
    let body = echo(s.get("/tolerant/x", "t-alice").await).await;
    assert!(body["headers"].get("x-auth-stale").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_opens_fails_fast_serves_stale_and_recovers() {
    let s = setup("breaker", &[("failures", "3")]).await;
    assert_eq!(s.get("/tolerant", "t-alice").await.status(), 200);
    s.set(DOWN);
    for t in ["t-user1", "t-user2", "t-user3"] {
        assert_eq!(s.get("/strict", t).await.status(), 503);
    }
    assert_eq!(s.idp.calls(), 4);
    assert_eq!(
        metric(
            &s.gw,
            "sessiongate_provider_circuit_state{provider=\"idp\"}"
        )
        .await,
        2.0
    );
    // Open: no call is made...
    assert_eq!(s.get("/strict", "t-user4").await.status(), 503);
    assert_eq!(s.idp.calls(), 4);
    assert_eq!(
        metric(
            &s.gw,
            "sessiongate_provider_rejected_total{provider=\"idp\",reason=\"circuit_open\"}"
        )
        .await,
        1.0
    );
    // ...and a lapsed identity on a tolerant route is served stale at once.
    s.clock.advance(Duration::from_secs(61));
    let body = echo(s.get("/tolerant", "t-alice").await).await;
    assert_eq!(body["headers"]["x-auth-stale"], "61");
    assert_eq!(s.idp.calls(), 4);
    // After the cool-down one probe goes through; it succeeds and closes the circuit.
    s.clock.advance(Duration::from_secs(600));
    s.set(NORMAL);
    assert_eq!(s.get("/strict", "t-bob").await.status(), 200);
    assert_eq!(
        metric(
            &s.gw,
            "sessiongate_provider_circuit_state{provider=\"idp\"}"
        )
        .await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_tokens_and_miss_floods_never_reach_the_provider() {
    let s = setup(
        "precheck",
        &[("cache_extra", ", client_miss_rate: 2, client_miss_burst: 3")],
    )
    .await;
    for bad in ["alice", "t-", "t-a+b", "t-a.b.c", "x-alice"] {
        let resp = s.get("/strict", bad).await;
        assert_eq!(resp.status(), 401, "{bad}");
        assert!(resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token"));
    }
    assert_eq!(s.idp.calls(), 0);
    assert_eq!(
        metric(
            &s.gw,
            "sessiongate_requests_total{mode=\"proxy\",outcome=\"malformed_token\",route=\"strict\"}"
        )
        .await,
        5.0
    );
    // Three misses (the burst) from one address, then 429 without a provider call.
    for t in ["t-r1", "t-r2", "t-alice"] {
        s.get("/strict", t).await;
    }
    let throttled = s.get("/strict", "t-r3").await;
    assert_eq!(throttled.status(), 429);
    assert!(throttled.headers().contains_key("retry-after"));
    assert_eq!(s.idp.calls(), 3);
    // Hits and known-invalid tokens are not misses: still answered.
    assert_eq!(s.get("/strict", "t-alice").await.status(), 200);
    assert_eq!(s.get("/strict", "t-r1").await.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_removes_every_matching_identity_at_once() {
    let s = setup("purge", &[]).await;
    for t in ["t-alice", "t-alice2", "t-bob"] {
        assert_eq!(s.get("/strict", t).await.status(), 200);
    }
    assert_eq!(s.idp.calls(), 3);
    // Without the admin token: 401, nothing purged.
    for auth in [None, Some("Bearer wrong-token-0123456789")] {
        let mut req = client()
            .post(admin(&s.gw, "/admin/purge"))
            .body(r#"{"subject":"alice"}"#);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401);
        assert!(resp.headers().contains_key("www-authenticate"));
    }
    let (status, body) = s.admin_post("/admin/purge", r#"{"subject":"alice"}"#).await;
    assert_eq!((status, body["removed"].clone()), (200, json!(2)), "{body}");
    assert_eq!(s.get("/strict", "t-alice").await.status(), 200);
    assert_eq!(s.get("/strict", "t-bob").await.status(), 200);
    assert_eq!(s.idp.calls(), 4, "alice asked again, bob still cached");
    let (_, body) = s
        .admin_post("/admin/purge", r#"{"session_id":"s-bob","provider":"idp"}"#)
        .await;
    assert_eq!(body["removed"], 1);
    let (_, body) = s.admin_post("/admin/purge", r#"{"token":"t-alice"}"#).await;
    assert_eq!(body["removed"], 1);
    assert!(!body.to_string().contains("t-alice"));
    s.get("/strict", "t-alice").await;
    s.get("/strict", "t-bob").await;
    assert_eq!(s.idp.calls(), 6);
    assert_eq!(
        metric(&s.gw, "sessiongate_cache_purged_total{by=\"subject\"}").await,
        2.0
    );
    for bad in [
        "",
        "[]",
        "{}",
        r#"{"subject":""}"#,
        r#"{"subject":"a","token":"b"}"#,
        r#"{"subject":1}"#,
        r#"{"user":"alice"}"#,
        r#"{"subject":"alice","provider":"nope"}"#,
    ] {
        let (status, body) = s.admin_post("/admin/purge", bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error_description"].is_string());
    }
    // An oversized body is refused whole, not truncated and parsed.
    let huge = format!(r#"{{"subject":"{}"}}"#, "a".repeat(70 * 1024));
    let (status, body) = s.admin_post("/admin/purge", &huge).await;
    assert_eq!(status, 413, "{body}");
    let get = client()
        .get(admin(&s.gw, "/admin/purge"))
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_is_disabled_without_an_admin_token() {
    let g = start_gateway(
        r#"
listen: {listen}
admin_listen: {admin}
shutdown_grace_period: 0s
routes: [ { path_prefix: /, auth: none, upstream: echo } ]
"#,
        &[],
    );
    for path in ["/admin/purge", "/admin/explain", "/admin/reload"] {
        let resp = client()
            .post(admin(&g, path))
            .header("authorization", "Bearer anything-at-all-12345")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_traces_each_decision_without_forwarding() {
    let s = setup("explain", &[]).await;
    let explain = |body: Value| {
        let s = &s;
        async move {
            let (status, trace) = s.admin_post("/admin/explain", &body.to_string()).await;
            assert_eq!(status, 200, "{trace}");
            assert!(
                !trace.to_string().contains("t-alice"),
                "token echoed: {trace}"
            );
            trace
        }
    };
    let req = |path: &str, token: Option<&str>, ip: &str| json!({"method": "GET", "path": path, "token": token, "client_ip": ip});
    let t = explain(req("/tolerant/a/../b", Some("t-alice"), "127.0.0.1")).await;
    assert_eq!(t["decision"]["outcome"], "allowed");
    assert_eq!(t["decision"]["status"], 200);
    assert_eq!(t["normalized_path"], "/tolerant/b");
    assert_eq!(t["route"]["name"], "tolerant");
    assert_eq!(t["route"]["stale_if_error_s"], 300);
    assert_eq!(t["token"]["provider"], "idp");
    assert_eq!(t["cache"]["before"], "miss");
    assert_eq!(t["cache"]["provider_called"], true);
    assert_eq!(t["identity"]["subject"], "alice");
    assert_eq!(
        t["steps_passed"],
        json!([
            "canonical_form",
            "route",
            "network",
            "methods",
            "client_certificate",
            "credential",
            "same_origin",
            "provider",
            "identity",
            "policy",
            "rules",
            "rate_limit"
        ]),
        "{t}"
    );
    // A refusal stops the steps: the scope check is the policy step.
    let t = explain(req("/settings", Some("t-alice"), "127.0.0.1")).await;
    assert_eq!(t["steps_passed"].as_array().map(Vec::len), Some(9), "{t}");
    let t = explain(req("/nowhere", Some("t-alice"), "127.0.0.1")).await;
    assert_eq!(t["steps_passed"], json!(["canonical_form"]), "{t}");
    let t = explain(req("/strict", Some("t-alice"), "127.0.0.1")).await;
    assert_eq!(t["cache"]["before"], "fresh");
    assert_eq!(t["cache"]["result"], "hit");
    assert_eq!(t["cache"]["provider_called"], false);

    let cases: &[(Value, &str, u16)] = &[
        (req("/strict", None, "127.0.0.1"), "missing_token", 401),
        (
            req("/strict", Some("t-nobody"), "127.0.0.1"),
            "invalid_token",
            401,
        ),
        (
            req("/strict", Some("alice"), "127.0.0.1"),
            "malformed_token",
            401,
        ),
        (
            req("/settings", Some("t-alice"), "127.0.0.1"),
            "insufficient_scope",
            403,
        ),
        (
            req("/strict", Some("t-ipbound"), "127.0.0.1"),
            "ip_not_allowed",
            403,
        ),
        (
            req("/office", Some("t-alice"), "127.0.0.1"),
            "ip_not_allowed",
            403,
        ),
        (
            req("/nowhere", Some("t-alice"), "127.0.0.1"),
            "no_route",
            404,
        ),
        (
            req("/x/..;/strict", Some("t-alice"), "127.0.0.1"),
            "bad_request",
            400,
        ),
    ];
    for (input, outcome, status) in cases {
        let t = explain(input.clone()).await;
        assert_eq!(t["decision"]["outcome"], *outcome, "{input}: {t}");
        assert_eq!(t["decision"]["status"], *status, "{input}: {t}");
    }
    let t = explain(req("/settings", Some("t-alice"), "127.0.0.1")).await;
    assert_eq!(t["policy"]["scopes_ok"], false);
    assert_eq!(
        t["policy"]["scopes_required"][0]["all_of"],
        json!(["admin"])
    );
    assert_eq!(t["policy"]["scopes_present"], json!(["read"]));
    let t = explain(req("/strict", Some("t-ipbound"), "127.0.0.1")).await;
    assert_eq!(t["policy"]["ip_restrict_ok"], false);
    assert_eq!(t["policy"]["findings"][0]["reason"], "ip_not_allowed");
    let t = explain(req("/office", Some("t-alice"), "127.0.0.1")).await;
    assert_eq!(t["network_ok"], false);
    assert!(
        t["cache"].is_null(),
        "network rules come before any token work"
    );
    let t = explain(req("/office", Some("t-alice"), "10.1.2.3")).await;
    assert_eq!(t["decision"]["outcome"], "allowed");
    s.set(DOWN);
    let t = explain(req("/strict", Some("t-user7"), "127.0.0.1")).await;
    assert_eq!(t["decision"]["outcome"], "provider_unavailable");
    assert_eq!(t["decision"]["status"], 503);
    // Nothing was proxied.
    let text = metrics_text(&s.gw).await;
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("sessiongate_requests_total{") && !l.ends_with(" 0")),
        "explain must not count as traffic:\n{text}"
    );
    for bad in [
        r#"{"path":"relative"}"#,
        r#"{"method":"G T","path":"/"}"#,
        r#"{"path":"/","client_ip":"nope"}"#,
        r#"{"path":"/","token":"a\nb"}"#,
        "{}",
    ] {
        let (status, _) = s.admin_post("/admin/explain", bad).await;
        assert_eq!(status, 400, "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_routes_keeps_identities_and_rejects_bad_files() {
    let s = setup("reload", &[]).await;
    assert_eq!(s.get("/strict", "t-alice").await.status(), 200);
    assert_eq!(s.get("/extra", "t-alice").await.status(), 404);
    // A new route; the provider is unchanged, so alice's identity is still cached.
    s.rewrite(
        &[(
            "extra_routes",
            "  - { name: extra, path_prefix: /extra, provider: idp, upstream: echo }",
        )],
        "",
    );
    let (status, body) = s.admin_post("/admin/reload", "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["providers_changed"], json!([]));
    assert_eq!(s.get("/extra", "t-alice").await.status(), 200);
    assert_eq!(s.idp.calls(), 1);
    assert_eq!(
        metric(&s.gw, "sessiongate_config_last_reload_success").await,
        1.0
    );

    // An invalid file is rejected, named, counted, and the old config keeps serving.
    s.rewrite(&[], "bogus_key: 1\n");
    let (status, body) = s.admin_post("/admin/reload", "").await;
    assert_eq!(status, 422);
    assert!(
        body["error"].as_str().unwrap().contains("bogus_key"),
        "{body}"
    );
    assert_eq!(
        metric(&s.gw, "sessiongate_config_last_reload_success").await,
        0.0
    );
    assert_eq!(
        metric(
            &s.gw,
            "sessiongate_config_reloads_total{result=\"rejected\"}"
        )
        .await,
        1.0
    );
    assert_eq!(s.get("/extra", "t-alice").await.status(), 200);

    // Rules reload with the routes; a rule that does not compile is rejected with its key
    // and line, and the rules in force stay in force.
    let ruled = "  - { name: extra, path_prefix: /extra, provider: idp, upstream: echo, rules: [{ name: closed, expr: \"now < 0\" }] }";
    s.rewrite(&[("extra_routes", ruled)], "");
    let (status, body) = s.admin_post("/admin/reload", "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.get("/extra", "t-alice").await.status(), 403);
    s.rewrite(
        &[("extra_routes", &ruled.replace("now < 0", "user.admin"))],
        "",
    );
    let (status, body) = s.admin_post("/admin/reload", "").await;
    assert_eq!(status, 422, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("rules[0].expr")
            && error.contains("unknown variable `user`")
            && error.contains("line "),
        "{body}"
    );
    assert_eq!(s.get("/extra", "t-alice").await.status(), 403);

    // A changed provider definition starts its cache afresh.
    s.rewrite(&[("timeout", "3s")], "");
    let (status, body) = s.admin_post("/admin/reload", "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["providers_changed"], json!(["idp"]));
    assert_eq!(s.get("/strict", "t-alice").await.status(), 200);
    assert_eq!(s.idp.calls(), 2);
    assert_eq!(s.get("/extra", "t-alice").await.status(), 404);
    assert_eq!(
        metric(&s.gw, "sessiongate_config_last_reload_success").await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_config_file_reloads_when_its_content_changes() {
    let s = setup_watching("watch", &[], Some(Duration::from_millis(100))).await;
    assert_eq!(s.get("/extra", "t-alice").await.status(), 404);
    s.rewrite(
        &[(
            "extra_routes",
            "  - { name: extra, path_prefix: /extra, provider: idp, upstream: echo }",
        )],
        "",
    );
    let mut status = 0;
    for _ in 0..100 {
        status = s.get("/extra", "t-alice").await.status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 200, "the changed file was not applied");
    // A broken edit is rejected once, and the gateway keeps serving.
    s.rewrite(&[], "bogus_key: 1\n");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        metric(
            &s.gw,
            "sessiongate_config_reloads_total{result=\"rejected\"}"
        )
        .await,
        1.0
    );
    assert_eq!(s.get("/extra", "t-alice").await.status(), 200);
}

/// A file saved in place is truncated, then written: a check between the two sees a
/// partial file. New content loads only once it stays the same for one more check, so the
/// partial state (gone before the next check) is never loaded, and the save is one reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_saved_in_place_is_never_loaded_half_written() {
    let s = setup_watching("watch-partial", &[], Some(Duration::from_millis(400))).await;
    let path = s.dir.join("sessiongate.yaml");
    let full = std::fs::read_to_string(&path).unwrap();
    for round in 0..6 {
        // Half of the file (invalid YAML or a config missing its routes) for 150 ms, then
        // all of it again with a new route: a check falls in the partial state in about
        // three rounds of eight, and may see it only once.
        std::fs::write(&path, &full[..full.len() / 2]).unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        s.rewrite(
            &[(
                "extra_routes",
                "  - { name: extra, path_prefix: /extra, provider: idp, upstream: echo }",
            )],
            &format!("# save {round}\n"),
        );
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    assert_eq!(s.get("/extra", "t-alice").await.status(), 200);
    assert_eq!(
        metric(
            &s.gw,
            "sessiongate_config_reloads_total{result=\"rejected\"}"
        )
        .await,
        0.0,
        "a half-written file was loaded"
    );
}

/// `max_in_flight` per upstream: with 2 requests running at a slow upstream, a third
/// waits up to 1 s for a slot, then gets 503 `upstream_busy` without reaching it; once
/// the two end, requests go through again. An HTTP/2 client's many streams, or clients
/// that stall, cannot hold more upstream connections than this.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_upstream_turns_requests_away_after_a_short_wait() {
    let slow =
        Fake::start(|_| Reply::json(200, json!({"ok": true})).after(Duration::from_secs(3))).await;
    let g = start_gateway(
        r#"
listen: {listen}
admin_listen: {admin}
shutdown_grace_period: 0s
upstreams:
  slow: { url: "{upstream}", max_in_flight: 2 }
routes:
  - { path_prefix: /, auth: none, upstream: slow }
"#,
        &[("upstream", slow.url())],
    );
    let url = at(&g, "/work");
    let running: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { client().get(url).send().await.unwrap().status() })
        })
        .collect();
    while slow.calls() < 2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = std::time::Instant::now();
    let busy = client().get(&url).send().await.unwrap();
    let waited = started.elapsed();
    assert_eq!(busy.status(), 503);
    let body: Value = busy.json().await.unwrap();
    assert_eq!(body["error"], "upstream_busy");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_millis(2500),
        "{waited:?}"
    );
    assert_eq!(slow.calls(), 2, "the refused request reached the upstream");
    for r in running {
        assert_eq!(r.await.unwrap(), 200);
    }
    assert_eq!(client().get(&url).send().await.unwrap().status(), 200);
    assert_eq!(
        metric(
            &g,
            r#"sessiongate_requests_total{mode="proxy",outcome="upstream_busy",route="/"}"#
        )
        .await,
        1.0
    );
}
