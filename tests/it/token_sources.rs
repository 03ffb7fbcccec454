//! Issue #17, token sources: a route reads its token from `Authorization`, a named cookie
//! or a named header, in order; exactly one credential; a credential cookie is not
//! forwarded; cookie-authenticated unsafe requests must come from the same site.

use crate::support::*;
use sessiongate::gateway::GatewayHandle;

const BROWSER: &str = "browser-session-token-0123456789";
const PARTNER: &str = "partner-api-key-0123456789abcdef";

const CONFIG: &str = r#"
listen: {listen}
admin_listen: {admin}
shutdown_grace_period: 0s
providers:
  s:
    kind: static
    tokens:
      - { token_sha256: {browser}, identity: { subject: browser-user, scopes: [app] } }
      - { token_sha256: {partner}, identity: { subject: partner, scopes: [app] } }
upstreams: { app: "{upstream}" }
routes:
  - name: console
    path_prefix: /console
    provider: s
    upstream: app
    token_sources: [authorization, { cookie: sg_session }, { header: X-Api-Key }]
    csrf_trusted_origins: [https://admin.example.com]
  - name: keep-cookie
    path_prefix: /keep
    provider: s
    upstream: app
    token_sources: [{ cookie: sg_session }]
    forward_token_cookie: true
  - name: private-key
    path_prefix: /private
    provider: s
    upstream: app
    token_sources: [{ header: X-Api-Key }]
    forward_authorization: false
  - name: default
    path_prefix: /api
    provider: s
    upstream: app
"#;

async fn setup() -> (GatewayHandle, Fake) {
    let upstream = Fake::upstream().await;
    let g = start_gateway(
        CONFIG,
        &[
            ("browser", sha(BROWSER)),
            ("partner", sha(PARTNER)),
            ("upstream", upstream.url()),
        ],
    );
    (g, upstream)
}

async fn send(
    g: &GatewayHandle,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = client().request(method, at(g, path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

fn cookie(token: &str) -> String {
    format!("theme=dark; sg_session={token}; lang=en")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cookie_or_a_named_header_authenticates_and_the_cookie_stays_with_the_gateway() {
    let (g, upstream) = setup().await;
    let r = send(
        &g,
        reqwest::Method::GET,
        "/console/a",
        &[("cookie", &cookie(BROWSER))],
    )
    .await;
    assert_eq!(r.status(), 200);
    let seen = upstream.last();
    assert_eq!(seen.header("x-auth-subject"), Some("browser-user"));
    assert_eq!(
        seen.all("cookie"),
        vec!["theme=dark; lang=en"],
        "the credential cookie is removed"
    );

    let r = send(
        &g,
        reqwest::Method::GET,
        "/console/b",
        &[("x-api-key", PARTNER)],
    )
    .await;
    assert_eq!(r.status(), 200);
    let seen = upstream.last();
    assert_eq!(seen.header("x-auth-subject"), Some("partner"));
    assert_eq!(
        seen.header("x-api-key"),
        Some(PARTNER),
        "forwarded like Authorization"
    );

    let r = send(
        &g,
        reqwest::Method::GET,
        "/console/c",
        &[("authorization", &format!("Bearer {PARTNER}"))],
    )
    .await;
    assert_eq!(r.status(), 200);

    // Asked for: the cookie goes on.
    let r = send(
        &g,
        reqwest::Method::GET,
        "/keep/x",
        &[("cookie", &cookie(BROWSER))],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        upstream.last().all("cookie"),
        vec![cookie(BROWSER).as_str()]
    );
    // With forward_authorization: false, a header credential is removed too.
    let r = send(
        &g,
        reqwest::Method::GET,
        "/private/x",
        &[("x-api-key", PARTNER)],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(upstream.last().header("x-api-key"), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_credentials_none_or_an_unconfigured_source_are_refused() {
    let (g, upstream) = setup().await;
    let calls = upstream.calls();
    let bearer = format!("Bearer {PARTNER}");
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, u16);
    let cases: [Case; 6] = [
        (
            "/console/x",
            vec![
                ("authorization", bearer.clone()),
                ("cookie", cookie(BROWSER)),
            ],
            400,
        ),
        (
            "/console/x",
            vec![("cookie", cookie(BROWSER)), ("x-api-key", PARTNER.into())],
            400,
        ),
        (
            "/console/x",
            vec![("cookie", "sg_session=a; sg_session=b".into())],
            400,
        ),
        ("/console/x", vec![("cookie", "theme=dark".into())], 401),
        // A route that reads only Authorization ignores the cookie and the header.
        ("/api/x", vec![("cookie", cookie(BROWSER))], 401),
        ("/api/x", vec![("x-api-key", PARTNER.into())], 401),
    ];
    for (path, headers, want) in cases {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = send(&g, reqwest::Method::GET, path, &h).await;
        assert_eq!(r.status().as_u16(), want, "{path} {headers:?}");
        let challenge = r
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_string());
        let body: serde_json::Value = r.json().await.unwrap();
        // Two credentials: invalid_request; none the route reads: no credentials at all
        // (a challenge without an error code, RFC 6750 §3.1).
        let code = if want == 400 {
            "invalid_request"
        } else {
            "missing_token"
        };
        assert_eq!(body["error"], code, "{path} {headers:?}");
        assert!(
            challenge.as_deref().is_some_and(|c| if want == 400 {
                c.starts_with("Bearer ") && c.contains("error=\"invalid_request\"")
            } else {
                c == "Bearer realm=\"sessiongate\""
            }),
            "{path} {challenge:?}"
        );
    }
    // The same token as cookie and header is one credential.
    let r = send(
        &g,
        reqwest::Method::GET,
        "/console/x",
        &[("cookie", &cookie(BROWSER)), ("x-api-key", BROWSER)],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        upstream.calls(),
        calls + 1,
        "no refused request reached the upstream"
    );
    // Read from Authorization (listed first), the same token in the cookie is still the
    // credential: removed.
    let bearer = format!("Bearer {BROWSER}");
    let r = send(
        &g,
        reqwest::Method::GET,
        "/console/x",
        &[("authorization", &bearer), ("cookie", &cookie(BROWSER))],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(upstream.last().all("cookie"), vec!["theme=dark; lang=en"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn unsafe_methods_authenticated_by_cookie_must_come_from_the_same_site() {
    let (g, upstream) = setup().await;
    let c = cookie(BROWSER);
    let own_origin = format!("http://{}", g.proxy_addr);
    let post = reqwest::Method::POST;
    let cases: Vec<(Vec<(&str, &str)>, u16)> = vec![
        // No browser signal at all: refused (non-browser clients send a header token).
        (vec![("cookie", &c)], 403),
        (
            vec![("cookie", &c), ("origin", "https://evil.example")],
            403,
        ),
        (vec![("cookie", &c), ("sec-fetch-site", "cross-site")], 403),
        (
            vec![
                ("cookie", &c),
                ("sec-fetch-site", "same-site"),
                ("origin", "https://evil.example"),
            ],
            403,
        ),
        (vec![("cookie", &c), ("origin", "null")], 403),
        (vec![("cookie", &c), ("origin", &own_origin)], 200),
        (vec![("cookie", &c), ("sec-fetch-site", "same-origin")], 200),
        (
            vec![
                ("cookie", &c),
                ("sec-fetch-site", "same-site"),
                ("origin", "https://admin.example.com"),
            ],
            200,
        ),
        (
            vec![("cookie", &c), ("origin", "https://admin.example.com")],
            200,
        ),
        // A header credential is not sent by browsers on their own: no CSRF rule.
        (
            vec![("x-api-key", PARTNER), ("origin", "https://evil.example")],
            200,
        ),
    ];
    for (headers, want) in cases {
        let r = send(&g, post.clone(), "/console/orders", &headers).await;
        assert_eq!(r.status().as_u16(), want, "{headers:?}");
        if want == 403 {
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(body["error"], "csrf", "{headers:?}");
        }
    }
    // Safe methods are not subject to it.
    let r = send(
        &g,
        reqwest::Method::GET,
        "/console/orders",
        &[("cookie", &c), ("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(r.status(), 200);
    // ... unless they open a channel: a WebSocket handshake is a GET (cross-site
    // WebSocket hijacking), and so is what a browser marks `Sec-Fetch-Mode: websocket`.
    let calls = upstream.calls();
    for channel in [
        &[("upgrade", "websocket"), ("connection", "Upgrade")][..],
        &[("sec-fetch-mode", "websocket")][..],
    ] {
        for (origin, want) in [("https://evil.example", 403), (own_origin.as_str(), 200)] {
            let mut headers = vec![("cookie", c.as_str()), ("origin", origin)];
            headers.extend_from_slice(channel);
            let r = send(&g, reqwest::Method::GET, "/console/ws", &headers).await;
            assert_eq!(r.status().as_u16(), want, "{headers:?}");
            if want == 403 {
                let body: serde_json::Value = r.json().await.unwrap();
                assert_eq!(body["error"], "csrf", "{headers:?}");
            }
        }
    }
    assert_eq!(
        upstream.calls(),
        calls + 2,
        "only the same-origin ones reach the upstream"
    );
    assert_eq!(
        metric(
            &g,
            r#"sessiongate_requests_total{mode="proxy",outcome="cross_site",route="console"}"#
        )
        .await,
        7.0
    );
    drop(upstream);
}
