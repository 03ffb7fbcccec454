//! The rule shapes evaluated without the CEL interpreter (`policy::fast_rules`) against
//! the interpreter itself: generated expressions over every field those shapes read, each
//! judged on identities and requests that make its values present, missing, of another
//! type or out of range. Every verdict — pass, false, or failed with its error text — must
//! be the interpreter's.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sessiongate::identity::{Claim, Identity, IdentityParts};
use sessiongate::policy::rules::{Expr, Facts, RouteRule, RouteRules};

const TEXT: &[&str] = &[
    "identity.subject",
    "identity.session_id",
    "identity.provider",
    "request.method",
    "request.path",
    "request.host",
    "request.client",
    "request.client_certificate",
    "request.token_source",
    "identity.claims.role",
    "identity.claims['two-factor']",
    "identity.claims.missing",
    "request.params.org",
    "request.params['nope']",
    "request.headers['x-org-id']",
    "request.headers['X-Org-Id']",
    "request.headers.authorization",
    "request.headers['x-many']",
    "'acme'",
    "'GET'",
    "'admin'",
    "''",
    "'user-1'",
];
const NUMBER: &[&str] = &[
    "now",
    "identity.expires_at",
    "now + 60",
    "now - 3600",
    "identity.expires_at - 60",
    "identity.claims.level",
    "identity.claims.until",
    "identity.claims.big",
    "identity.claims.ratio",
    "0",
    "1800000000",
    "9223372036854775807 + 1",
    "9223372036854775807",
];
const OTHER: &[&str] = &[
    "true",
    "false",
    "null",
    "identity.claims.trusted",
    "identity.claims.nothing",
];
const LISTS: &[&str] = &[
    "identity.scopes",
    "identity.organizations",
    "identity.ip_restrict",
    "identity.claims.roles",
    "identity.claims.mixed",
    "identity.claims.role",
    "['GET', 'HEAD']",
    "[]",
];
const HAS: &[&str] = &[
    "has(identity.claims.role)",
    "has(identity.claims.missing)",
    "'trusted' in identity.claims",
    "has(request.params.org)",
    "'x-org-id' in request.headers",
    "'authorization' in request.headers",
    "'X-Org-Id' in request.headers",
];
const CMP: &[&str] = &["==", "!=", "<", "<=", ">", ">="];

fn pick<'a>(rng: &mut StdRng, from: &[&'a str]) -> &'a str {
    from[rng.random_range(0..from.len())]
}

fn term(rng: &mut StdRng) -> &'static str {
    match rng.random_range(0..10) {
        0..=4 => pick(rng, TEXT),
        5..=8 => pick(rng, NUMBER),
        _ => pick(rng, OTHER),
    }
}

fn atom(rng: &mut StdRng) -> String {
    match rng.random_range(0..10) {
        0..=5 => {
            // Mostly like with like; sometimes across types.
            let left = term(rng);
            let right = if rng.random_bool(0.7) {
                let same = if TEXT.contains(&left) {
                    TEXT
                } else if NUMBER.contains(&left) {
                    NUMBER
                } else {
                    OTHER
                };
                pick(rng, same)
            } else {
                term(rng)
            };
            format!("{left} {} {right}", pick(rng, CMP))
        }
        6..=7 => format!("{} in {}", pick(rng, TEXT), pick(rng, LISTS)),
        8 => pick(rng, HAS).to_string(),
        _ => pick(rng, &["true", "false", "identity.claims.trusted"]).to_string(),
    }
}

fn expr(rng: &mut StdRng, depth: u32) -> String {
    if depth == 0 || rng.random_bool(0.4) {
        return atom(rng);
    }
    match rng.random_range(0..5) {
        0 | 1 => format!("({} && {})", expr(rng, depth - 1), expr(rng, depth - 1)),
        2 | 3 => format!("({} || {})", expr(rng, depth - 1), expr(rng, depth - 1)),
        _ => format!("!({})", expr(rng, depth - 1)),
    }
}

fn claim(name: &str, value: &str, json: bool) -> Claim {
    Claim {
        json,
        forward: false,
        ..Claim::text(name, value)
    }
}

/// Identities whose fields are present, missing, or of other types than a rule expects.
fn identities() -> Vec<Identity> {
    let at = |s: u64| Some(UNIX_EPOCH + Duration::from_secs(s));
    let full = IdentityParts {
        subject: "user-1".into(),
        session_id: Some("s-1".into()),
        scopes: vec!["read".into(), "admin".into()],
        expires_at: at(1_800_000_100),
        ip_restrict: vec!["10.0.0.0/8".into()],
        organizations: vec!["acme".into(), "other".into()],
        claims: vec![
            Claim::text("role", "admin"),
            Claim::text("two-factor", "true"),
            claim("trusted", "true", true),
            claim("level", "3", true),
            claim("until", "1800000030", true),
            claim("big", "18446744073709551615", true),
            claim("ratio", "2.5", true),
            claim("roles", r#"["admin","ops"]"#, true),
            claim("mixed", r#"["admin",3]"#, true),
            claim("nothing", "null", true),
        ],
    };
    let odd = IdentityParts {
        subject: "acme".into(),
        session_id: None,
        scopes: vec![],
        expires_at: None,
        ip_restrict: vec![],
        organizations: vec![],
        claims: vec![
            Claim::text("role", "3"),
            claim("trusted", "false", true),
            Claim::text("level", "3"),
            claim("roles", r#"{"a":1}"#, true),
            Claim::text("until", "soon"),
        ],
    };
    let expired = IdentityParts {
        expires_at: at(1_700_000_000),
        claims: vec![claim("trusted", "1", true), claim("level", "-4", true)],
        ..full.clone()
    };
    vec![full.into(), odd.into(), expired.into()]
}

struct Request {
    params: Vec<(Arc<str>, String)>,
    headers: HeaderMap,
    host: Option<&'static str>,
    client: Option<IpAddr>,
    certificate: Option<&'static str>,
    method: &'static str,
}

fn requests() -> Vec<Request> {
    let mut with_org = HeaderMap::new();
    with_org.insert("x-org-id", HeaderValue::from_static("acme"));
    with_org.insert("authorization", HeaderValue::from_static("Bearer secret"));
    with_org.append("x-many", HeaderValue::from_static("a"));
    with_org.append("x-many", HeaderValue::from_static("b"));
    let mut other = HeaderMap::new();
    other.insert("x-org-id", HeaderValue::from_static("evil"));
    other.insert("x-many", HeaderValue::from_bytes(b"\xff").unwrap());
    vec![
        Request {
            params: vec![(Arc::from("org"), "acme".into())],
            headers: with_org,
            host: Some("api.example.com"),
            client: Some(IpAddr::from([10, 0, 0, 1])),
            certificate: None,
            method: "GET",
        },
        Request {
            params: vec![],
            headers: other,
            host: None,
            client: None,
            certificate: Some("spiffe://acme/ci"),
            method: "POST",
        },
    ]
}

#[test]
fn fast_shapes_give_the_interpreters_verdicts() {
    let mut rng = StdRng::seed_from_u64(36);
    let identities = identities();
    let requests = requests();
    let (mut parsed, mut fast, mut judged) = (0, 0, 0);
    for _ in 0..4000 {
        let source = expr(&mut rng, 3);
        // The load-time check refuses some (a type error on the sample): not a rule.
        let Ok(e) = Expr::parse(&source) else {
            continue;
        };
        parsed += 1;
        fast += usize::from(e.is_fast());
        let rules = RouteRules::new(vec![RouteRule::new("r", e, None, 403)]);
        for identity in &identities {
            for r in &requests {
                let facts = Facts {
                    identity,
                    provider: "idp",
                    method: r.method,
                    path: "/orgs/acme/x",
                    params: &r.params,
                    host: r.host,
                    headers: &r.headers,
                    token_header: &|n| n == "x-token",
                    client: r.client,
                    client_certificate: r.certificate,
                    token_source: "authorization",
                    now: UNIX_EPOCH + Duration::from_secs(1_800_000_000),
                };
                assert_eq!(
                    rules.judge(&facts),
                    rules.judge_interpreted(&facts),
                    "{source} on {identity:?}"
                );
                judged += 1;
            }
        }
    }
    // The generator must reach the fast shapes, or this test proves nothing.
    eprintln!("parsed {parsed} fast {fast} judged {judged}");
    assert!(parsed > 1000, "only {parsed} expressions parsed");
    assert!(
        fast * 10 > parsed * 8,
        "only {fast} of {parsed} have a fast form"
    );
    assert!(judged > 6000);
}
