//! Decision mode (issue #38), the HTTP front door: a front proxy describes a request in
//! headers (nginx `X-Original-*`, Traefik and Caddy `X-Forwarded-*`, ingress-nginx
//! `X-Original-URL`) on `decision.listen`, and gets the proxy's own decision — 200 with the
//! identity headers, or the same refusal a client would get — with nothing forwarded.
//! Only peers in `trusted_proxies` are believed; a description that is incomplete or
//! disagrees with itself is refused, never guessed.

use serde_json::{json, Value};

use crate::support::*;
use sessiongate::GatewayHandle;

const ALICE: &str = "decision-alice-token-0123456789";
const BOB: &str = "decision-bob-token-0123456789";
const ADMIN_TOKEN: &str = "decision-admin-token-0123456789";

fn start(trusted: &str, decision: &str, upstream: &Fake) -> GatewayHandle {
    std::env::set_var("SG_DECISION_ADMIN", ADMIN_TOKEN);
    start_gateway(
        &format!(
            r#"
listen: {{listen}}
admin_listen: {{admin}}
shutdown_grace_period: 0s
trusted_proxies: [{trusted}]
decision: {{ listen: "{decision}", envoy_http_prefix: /ext_authz }}
admin: {{ token: "${{SG_DECISION_ADMIN}}" }}
providers:
  p:
    kind: static
    tokens:
      - {{ token_sha256: {alice}, identity: {{ subject: alice, session_id: s-1, scopes: [read, write] }} }}
      - {{ token_sha256: {bob}, identity: {{ subject: bob, scopes: [read] }} }}
upstreams: {{ app: "{{upstream}}" }}
rate_limits:
  tight: {{ rate: 2/min, burst: 2 }}
routes:
  - {{ name: limited, path_prefix: /limited, provider: p, upstream: app, rate_limits: [tight] }}
  - {{ name: writes, path_prefix: /items, provider: p, upstream: app, methods: [GET, POST], method_scopes: [ {{ methods: [POST], all_of: [write] }} ] }}
  - {{ name: admin, path_prefix: /admin, provider: p, upstream: app, require_scopes: {{ all_of: [admin] }} }}
  - {{ name: open, path_prefix: /public, auth: none, upstream: app }}
  - {{ name: front-only, path_prefix: /front-only, provider: p }}
  - {{ name: api, path_prefix: /, provider: p, upstream: app }}
"#,
            alice = sha(ALICE),
            bob = sha(BOB),
        ),
        &[("upstream", upstream.url())],
    )
}

/// Asks the decision listener as Traefik would: the method, target and host in
/// `X-Forwarded-*`, the client's headers as sent.
async fn ask(
    decision: &str,
    method: &str,
    target: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = client()
        .get(format!("http://{decision}/"))
        .header("x-forwarded-method", method)
        .header("x-forwarded-uri", target)
        .header("x-forwarded-host", "api.example.com")
        .header("x-forwarded-proto", "https");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    for (n, v) in extra {
        req = req.header(*n, *v);
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_front_proxy_gets_the_proxy_s_own_decision_and_nothing_is_forwarded() {
    let upstream = Fake::upstream().await;
    let decision = free_address();
    let g = start("127.0.0.1/32", &decision, &upstream);

    // Allowed: 200, the identity headers, the canonical target, no body.
    let r = ask(&decision, "GET", "/items/./7/../8?x=1", Some(ALICE), &[]).await;
    assert_eq!(r.status(), 200);
    let h = header_map(&r);
    assert_eq!(h["x-auth-subject"], "alice");
    assert_eq!(h["x-auth-session-id"], "s-1");
    assert_eq!(h["x-auth-scopes"], "read write");
    assert_eq!(h["x-sessiongate-canonical-uri"], "/items/8?x=1");
    assert!(h.contains_key("x-request-id"));
    assert_eq!(h["cache-control"], "no-store");
    assert!(r.text().await.unwrap().is_empty());

    // A client's own identity headers are never echoed as trusted.
    let r = ask(
        &decision,
        "GET",
        "/x",
        Some(BOB),
        &[("x-auth-subject", "root"), ("x-auth-scopes", "admin")],
    )
    .await;
    assert_eq!(r.status(), 200);
    let h = header_map(&r);
    assert_eq!(h["x-auth-subject"], "bob");
    assert_eq!(h["x-auth-scopes"], "read");
    assert_eq!(
        h["x-auth-session-id"], "",
        "bob has no session id: sent empty"
    );

    // Refusals are the proxy's: 401 with the Bearer challenge, 403 naming the scope, 405
    // with Allow, the method judged being the original one.
    let r = ask(&decision, "GET", "/x", None, &[]).await;
    assert_eq!(r.status(), 401);
    assert!(header_map(&r)["www-authenticate"].starts_with("Bearer"));
    let r = ask(&decision, "POST", "/items", Some(BOB), &[]).await;
    assert_eq!(r.status(), 403);
    assert!(header_map(&r)["www-authenticate"].contains("insufficient_scope"));
    let r = ask(&decision, "POST", "/items", Some(ALICE), &[]).await;
    assert_eq!(r.status(), 200);
    let r = ask(&decision, "DELETE", "/items", Some(ALICE), &[]).await;
    assert_eq!(r.status(), 405);
    assert_eq!(header_map(&r)["allow"], "GET, POST, HEAD");
    let r = ask(&decision, "GET", "/admin/users", Some(ALICE), &[]).await;
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "insufficient_scope");

    // The answer is framed for the request that asked: a GET asking about a HEAD gets the
    // refusal's body (Caddy and Traefik ask with GET; without it they wait for the bytes
    // Content-Length announces), a HEAD asking about a GET gets none.
    let r = ask(&decision, "HEAD", "/items/1", None, &[]).await;
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "missing_token");
    let r = ask(&decision, "HEAD", "/items/1", Some(BOB), &[]).await;
    assert_eq!(r.status(), 200);
    let r = client()
        .head(format!("http://{decision}/"))
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-uri", "/items/1")
        .header("x-forwarded-host", "api.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.bytes().await.unwrap().is_empty());
    // The same connection still works (a stray body would have been read as a response).
    let r = ask(&decision, "GET", "/items/1", Some(BOB), &[]).await;
    assert_eq!(r.status(), 200);

    // A client calling the front proxy with gRPC's content type still gets its refusal
    // as an HTTP status: the gRPC form (HTTP 200 + grpc-status) would read as a yes to
    // nginx or Traefik, and the request would go through with no identity.
    for content_type in [
        "application/grpc",
        "application/grpc+proto",
        "application/grpc-web",
    ] {
        for (token, want) in [(None, 401), (Some(BOB), 403)] {
            let r = ask(
                &decision,
                "POST",
                "/admin/users",
                token,
                &[("content-type", content_type), ("te", "trailers")],
            )
            .await;
            assert_eq!(r.status(), want, "{content_type}, {token:?}");
            assert!(!header_map(&r).contains_key("grpc-status"));
        }
    }

    // A path that reads two ways is refused, not guessed; traversal is judged where it
    // lands (the admin route), as on the proxy listener.
    let r = ask(&decision, "GET", "/items/..%2fadmin", Some(ALICE), &[]).await;
    assert_eq!(r.status(), 400);
    let r = ask(&decision, "GET", "/items/../admin/users", Some(ALICE), &[]).await;
    assert_eq!(r.status(), 403);

    // Public routes are allowed without a token: every identity header is there, empty,
    // so that a front proxy copying them replaces a client's own copies.
    let r = ask(
        &decision,
        "GET",
        "/public/a",
        Some("x"),
        &[("x-auth-subject", "root")],
    )
    .await;
    assert_eq!(r.status(), 200);
    let h = header_map(&r);
    for name in [
        "subject",
        "session-id",
        "scopes",
        "organizations",
        "expires",
        "provider",
    ] {
        assert_eq!(h[&format!("x-auth-{name}")], "", "{name}");
    }

    // Rate limits count decisions: the third within the minute is 429 with Retry-After.
    for _ in 0..2 {
        assert_eq!(
            ask(&decision, "GET", "/limited", Some(ALICE), &[])
                .await
                .status(),
            200
        );
    }
    let r = ask(&decision, "GET", "/limited", Some(ALICE), &[]).await;
    assert_eq!(r.status(), 429);
    assert!(header_map(&r).contains_key("retry-after"));

    // Nothing reached the upstream; the decisions are counted per route like requests.
    assert_eq!(upstream.calls(), 0);
    assert_eq!(
        metric(
            &g,
            r#"sessiongate_requests_total{mode="decision",outcome="allowed",route="writes"}"#
        )
        .await,
        4.0
    );
    assert_eq!(
        metric(
            &g,
            r#"sessiongate_requests_total{mode="decision",outcome="rate_limited",route="limited"}"#
        )
        .await,
        1.0
    );

    // The proxy listener still proxies; a route without an upstream is judged for front
    // proxies only, and is no route for the proxy's clients.
    let r = get_bearer(&g, "/x", ALICE).await;
    assert_eq!(r.status(), 200);
    assert_eq!(upstream.calls(), 1);
    let r = ask(&decision, "GET", "/front-only/a", Some(ALICE), &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header_map(&r)["x-auth-subject"], "alice");
    let r = get_bearer(&g, "/front-only/a", ALICE).await;
    assert_eq!(r.status(), 404);
    assert_eq!(upstream.calls(), 1);
    // The same route counts each front door under its own `mode`: the one request proxied
    // on `api`, and the front proxies' questions that landed there.
    let on_api = |mode: &str| {
        format!(r#"sessiongate_requests_total{{mode="{mode}",outcome="allowed",route="api"}}"#)
    };
    assert_eq!(metric(&g, &on_api("proxy")).await, 1.0);
    assert!(metric(&g, &on_api("decision")).await >= 1.0);
    let sample =
        r#"sessiongate_requests_total{mode="decision",outcome="allowed",route="front-only"}"#;
    assert_eq!(metric(&g, sample).await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_front_proxy_s_headers_are_read_and_an_incomplete_description_is_refused() {
    let upstream = Fake::upstream().await;
    let decision = free_address();
    let _g = start("127.0.0.1/32", &decision, &upstream);
    let bearer = format!("Bearer {BOB}");
    let send = |headers: Vec<(&'static str, String)>| {
        let decision = decision.clone();
        async move {
            let mut req = client().get(format!("http://{decision}/auth"));
            for (n, v) in headers {
                req = req.header(n, v);
            }
            req.send().await.unwrap()
        }
    };
    // nginx auth_request (the docs' proxy_set_header lines).
    let r = send(vec![
        ("x-original-method", "GET".into()),
        ("x-original-uri", "/items/1".into()),
        ("x-forwarded-host", "api.example.com".into()),
        ("authorization", bearer.clone()),
    ])
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header_map(&r)["x-auth-subject"], "bob");
    // ingress-nginx auth-url.
    let r = send(vec![
        ("x-original-method", "GET".into()),
        ("x-original-url", "https://api.example.com/items/1".into()),
        ("authorization", bearer.clone()),
    ])
    .await;
    assert_eq!(r.status(), 200);

    // No method: the asking request's own (GET) is not assumed.
    let r = send(vec![
        ("x-original-uri", "/items/1".into()),
        ("x-forwarded-host", "api.example.com".into()),
        ("authorization", bearer.clone()),
    ])
    .await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_original_request");
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("X-Original-Method or X-Forwarded-Method"));
    // Two targets that disagree.
    let r = send(vec![
        ("x-original-method", "GET".into()),
        ("x-original-uri", "/items/1".into()),
        ("x-forwarded-uri", "/admin".into()),
        ("x-forwarded-host", "api.example.com".into()),
        ("authorization", bearer.clone()),
    ])
    .await;
    assert_eq!(r.status(), 400);
    // Headers the proxy listener would strip before the upstream reach the backend
    // through the front proxy: a method override, or an `_` spelling of an identity
    // header a CGI-style backend reads as the real one. Refused, not judged.
    for (name, value) in [
        ("x-http-method-override", "DELETE"),
        ("x-forwarded-prefix", "/admin"),
        ("x_auth_subject", "root"),
    ] {
        let r = send(vec![
            ("x-original-method", "GET".into()),
            ("x-original-uri", "/items/1".into()),
            ("x-forwarded-host", "api.example.com".into()),
            ("authorization", bearer.clone()),
            (name, value.into()),
        ])
        .await;
        assert_eq!(r.status(), 400, "{name}");
        let body: Value = r.json().await.unwrap();
        assert!(
            body["error_description"].as_str().unwrap().contains(name),
            "{body}"
        );
    }
    // No host: the asking request's Host (the gateway's own address) is not assumed.
    let r = send(vec![
        ("x-original-method", "GET".into()),
        ("x-original-uri", "/items/1".into()),
        ("authorization", bearer),
    ])
    .await;
    assert_eq!(r.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_is_not_a_front_proxy_cannot_choose_the_request_judged() {
    let upstream = Fake::upstream().await;
    let decision = free_address();
    // The front proxies are elsewhere: 127.0.0.1 is just a client.
    let g = start("10.1.2.0/24", &decision, &upstream);
    let r = ask(&decision, "GET", "/x", Some(ALICE), &[]).await;
    assert_eq!(r.status(), 403);
    let h = header_map(&r);
    assert!(!h.contains_key("x-auth-subject"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "untrusted_front_proxy");
    assert_eq!(
        metric(
            &g,
            r#"sessiongate_requests_total{mode="decision",outcome="untrusted_front_proxy",route="_unmatched"}"#
        )
        .await,
        1.0
    );
    // A HEAD from such a peer gets its refusal without a body, and the connection goes on.
    let c = client();
    let r = c.head(format!("http://{decision}/")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.bytes().await.unwrap().is_empty());
    let r = c.get(format!("http://{decision}/")).send().await.unwrap();
    assert_eq!(r.status(), 403);
}

#[test]
fn decision_mode_needs_front_proxies_and_its_own_address() {
    let base =
        "listen: 127.0.0.1:18001\nroutes:\n  - { path_prefix: /, auth: none, upstream: echo }\n";
    let check = |extra: &str| {
        sessiongate::config::from_str(&format!("{base}{extra}"), std::path::Path::new("."))
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let err = check("decision: { listen: 127.0.0.1:18002 }\n").unwrap_err();
    assert!(err.contains("trusted_proxies"), "{err}");
    let err = check("decision: { listen: 127.0.0.1:18001 }\ntrusted_proxies: [127.0.0.1/32]\n")
        .unwrap_err();
    assert!(err.contains("decision.listen"), "{err}");
    check("decision: { listen: 127.0.0.1:18002 }\ntrusted_proxies: [127.0.0.1/32]\n").unwrap();
    // A route without an upstream needs decision mode.
    let front_only = "  - { path_prefix: /only, auth: none }\n";
    let err = check(front_only).unwrap_err();
    assert!(
        err.contains("routes[1].upstream") && err.contains("decision.listen"),
        "{err}"
    );
    check(&format!(
        "{front_only}decision: {{ listen: 127.0.0.1:18002 }}\ntrusted_proxies: [127.0.0.1/32]\n"
    ))
    .unwrap();
    // Envoy's HTTP prefix is a plain path.
    for bad in ["ext_authz", "/", "/ext_authz/", "/a//b", "/a?b", "/a b"] {
        let err = check(&format!(
            "decision: {{ listen: 127.0.0.1:18002, envoy_http_prefix: \"{bad}\" }}\ntrusted_proxies: [127.0.0.1/32]\n"
        ))
        .unwrap_err();
        assert!(err.contains("decision.envoy_http_prefix"), "{bad}: {err}");
    }
    check("decision: { listen: 127.0.0.1:18002, envoy_http_prefix: /ext_authz }\ntrusted_proxies: [127.0.0.1/32]\n")
        .unwrap();
}

/// Asks as Envoy's `http_service` does: the original method, the original path under
/// `path_prefix`, the original `:authority`, the headers `allowed_headers` lets through.
async fn envoy_http(
    decision: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = client()
        .request(method, format!("http://{decision}/ext_authz{path}"))
        .header("host", "api.example.com")
        .header("content-length", "0");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    for (n, v) in extra {
        req = req.header(*n, *v);
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_s_http_checks_are_the_original_request_under_the_prefix() {
    let upstream = Fake::upstream().await;
    let decision = free_address();
    let g = start("127.0.0.1/32", &decision, &upstream);

    // Allowed: the identity headers, and the headers Envoy must remove — those the
    // identity lacks and the client's own under the identity prefix.
    let r = envoy_http(
        &decision,
        "GET",
        "/items/1?x=1",
        Some(BOB),
        &[("x-auth-subject", "root"), ("x-auth-claim-role", "admin")],
    )
    .await;
    assert_eq!(r.status(), 200);
    let h = header_map(&r);
    assert_eq!(h["x-auth-subject"], "bob");
    assert_eq!(h["x-auth-scopes"], "read");
    let remove: Vec<&str> = h["x-envoy-auth-headers-to-remove"].split(", ").collect();
    for name in ["x-auth-session-id", "x-auth-claim-role"] {
        assert!(remove.contains(&name), "{name} not in {remove:?}");
    }
    assert!(!remove.contains(&"x-auth-subject"), "{remove:?}");
    assert_eq!(h["x-sessiongate-canonical-uri"], "/items/1?x=1");

    // Refusals are the proxy's, as HTTP statuses (a gRPC content type changes nothing).
    let r = envoy_http(&decision, "POST", "/items/1", Some(BOB), &[]).await;
    assert_eq!(r.status(), 403);
    assert!(header_map(&r)["www-authenticate"].contains("insufficient_scope"));
    let r = envoy_http(
        &decision,
        "POST",
        "/items/1",
        None,
        &[("content-type", "application/grpc")],
    )
    .await;
    assert_eq!(r.status(), 401);
    assert!(header_map(&r)["www-authenticate"].starts_with("Bearer"));

    // A path Envoy did not normalise is refused: Envoy forwards what it sent.
    let r = envoy_http(&decision, "GET", "/items//1", Some(ALICE), &[]).await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("normalize_path"),
        "{body}"
    );
    // (sent raw: an HTTP client library resolves dot segments itself)
    let answer = raw_http(
        decision.parse().unwrap(),
        &format!(
            "GET /ext_authz/items/./1 HTTP/1.1\r\nHost: api.example.com\r\nAuthorization: Bearer {ALICE}\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 400") && answer.contains("normalize_path"),
        "{answer}"
    );

    // Only the prefix followed by a path is Envoy's: anything else is a forward-auth
    // question, and without its description it is refused.
    let r = client()
        .get(format!("http://{decision}/ext_authzitems/1"))
        .header("authorization", format!("Bearer {ALICE}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(upstream.calls(), 0);
    assert!(
        metric(
            &g,
            r#"sessiongate_requests_total{mode="decision",outcome="allowed",route="writes"}"#
        )
        .await
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_answers_for_either_front_door() {
    let upstream = Fake::upstream().await;
    let decision = free_address();
    let g = start("127.0.0.1/32", &decision, &upstream);
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
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        }
    };
    // A route judged for front proxies only: no route on the proxy listener, allowed for
    // a front proxy's question.
    let asked = json!({"method": "GET", "path": "/front-only/a", "token": ALICE});
    let (_, t) = explain(asked.clone()).await;
    assert_eq!(t["request"]["mode"], "proxy", "{t}");
    assert_eq!(t["decision"]["outcome"], "no_route", "{t}");
    let mut as_decision = asked.clone();
    as_decision["mode"] = json!("decision");
    let (_, t) = explain(as_decision).await;
    assert_eq!(t["request"]["mode"], "decision", "{t}");
    assert_eq!(t["decision"]["outcome"], "allowed", "{t}");
    // A header a backend may obey: stripped by the proxy, refused for a front proxy.
    let with_override = |mode: &str| {
        json!({"method": "GET", "path": "/items/1", "token": ALICE, "mode": mode,
               "headers": {"x-http-method-override": "DELETE"}})
    };
    let (_, t) = explain(with_override("proxy")).await;
    assert_eq!(t["decision"]["outcome"], "allowed", "{t}");
    let (_, t) = explain(with_override("decision")).await;
    assert_eq!(t["decision"]["outcome"], "bad_request", "{t}");
    assert_eq!(t["decision"]["error"], "invalid_original_request", "{t}");
    assert_eq!(t["decision"]["status"], 400, "{t}");
    let (status, _) = explain(json!({"method": "GET", "path": "/", "mode": "sidecar"})).await;
    assert_eq!(status, 400);
}
