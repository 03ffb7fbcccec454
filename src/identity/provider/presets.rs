//! Built-in descriptions of known session endpoints (see `PROVIDERS.md`). A preset is only
//! data for the generic [`super::http::HttpProvider`] — method, where the token goes, which
//! answers mean "invalid token" or "broken", and where each identity field is — and every
//! part of it can be overridden in the config.
//!
//! Behaviour marked "inferred" below is not documented by the provider; it is configurable
//! for that reason (`invalid_when` / `broken_when`).

use reqwest::Method;
use serde_json::{json, Value};

use super::http::TokenPlacement;
use super::mapping::{
    AnswerRules, ClaimMapping, ExpiryFormat, ExpiryMapping, Predicate, ResponseMapping, Rule, Test,
};
use super::ProviderKind;

/// The request and response shape of one provider kind.
#[derive(Debug, Clone)]
pub struct Preset {
    pub(crate) method: Method,
    pub(crate) token: TokenPlacement,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<(String, Value)>,
    pub outcome: AnswerRules,
    pub mapping: ResponseMapping,
}

/// Every provider kind that has an HTTP preset.
pub fn kinds() -> impl Iterator<Item = ProviderKind> {
    ProviderKind::ALL
        .into_iter()
        .filter(|k| Preset::for_kind(*k).is_some())
}

impl Preset {
    /// The preset for a provider `kind`, or `None` for kinds that are not HTTP presets
    /// (an exhaustive match: a new kind must say which it is).
    pub fn for_kind(kind: ProviderKind) -> Option<Preset> {
        Some(match kind {
            ProviderKind::Http => http(),
            ProviderKind::Bitgo => bitgo(),
            ProviderKind::Rfc7662 => rfc7662(),
            ProviderKind::Krystal => krystal(),
            ProviderKind::Prefactor => prefactor(),
            ProviderKind::Enos => enos(),
            ProviderKind::Userinfo => userinfo(),
            ProviderKind::Static | ProviderKind::Jwt | ProviderKind::ClientCertificate => {
                return None
            }
        })
    }
}

fn strings(items: &[&str]) -> Vec<Value> {
    items.iter().map(|s| json!(s)).collect()
}

fn expires(pointer: &str, format: ExpiryFormat) -> Option<ExpiryMapping> {
    Some(ExpiryMapping {
        pointer: pointer.into(),
        format,
    })
}

/// `kind: http`: nothing built in but `GET` with `Authorization: Bearer <token>`, 401 as
/// "invalid token" and 2xx as success. The config must at least map `subject`.
pub fn http() -> Preset {
    Preset {
        method: Method::GET,
        token: TokenPlacement::Bearer,
        headers: vec![],
        body: vec![],
        outcome: AnswerRules {
            invalid_when: vec![Rule::status(&[401])],
            ..Default::default()
        },
        mapping: ResponseMapping::default(),
    }
}

/// BitGo `GET /api/v2/user/session` with `Authorization: Bearer <token>`.
///
/// 200 `{session: {id, user, scope[], expires (ISO 8601), ipRestrict[], organizations[],
/// enterprise, …}}`; any 401 means the token is not valid (BitGo documents no separate
/// body for expired tokens). The `token` field BitGo echoes back is never read.
pub fn bitgo() -> Preset {
    Preset {
        method: Method::GET,
        token: TokenPlacement::Bearer,
        headers: vec![],
        body: vec![],
        outcome: AnswerRules {
            invalid_when: vec![Rule::status(&[401])],
            ..Default::default()
        },
        mapping: ResponseMapping {
            subject: vec!["/session/user".into()],
            session_id: vec!["/session/id".into()],
            scopes: vec!["/session/scope".into()],
            expires: expires("/session/expires", ExpiryFormat::Rfc3339),
            ip_restrict: Some("/session/ipRestrict".into()),
            organizations: vec![
                "/session/organizations".into(),
                "/session/enterprise".into(),
            ],
            // `unlock` is present only while the session is unlocked for spending.
            claims: vec![
                ClaimMapping::for_rules("enterprise", "/session/enterprise"),
                ClaimMapping::time_for_rules(
                    "unlocked_until",
                    "/session/unlock/expires",
                    ExpiryFormat::Rfc3339,
                ),
                ClaimMapping::for_rules("unlock", "/session/unlock"),
            ],
            ..Default::default()
        },
    }
}

/// RFC 7662 token introspection: `POST` form `token=…&token_type_hint=access_token`, the
/// gateway authenticated with HTTP Basic. `{"active": false}` means not valid; a 401 or 403
/// from the endpoint itself means the gateway's client credentials are wrong.
pub(crate) fn rfc7662() -> Preset {
    Preset {
        method: Method::POST,
        token: TokenPlacement::Form("token".into()),
        headers: vec![],
        body: vec![("token_type_hint".into(), json!("access_token"))],
        outcome: AnswerRules {
            broken_when: vec![Rule::status(&[401, 403])],
            ..Default::default()
        },
        mapping: ResponseMapping {
            active: vec![Predicate::equals("/active", json!(true))],
            // Client-credentials tokens often carry no `sub`: fall back to the user name,
            // then to the client id.
            subject: vec!["/sub".into(), "/username".into(), "/client_id".into()],
            session_id: vec!["/jti".into()],
            scopes: vec!["/scope".into()],
            expires: expires("/exp", ExpiryFormat::UnixSeconds),
            claims: vec![
                ClaimMapping::for_rules("client_id", "/client_id"),
                ClaimMapping::for_rules("username", "/username"),
                ClaimMapping::for_rules("token_type", "/token_type"),
            ],
            ..Default::default()
        },
    }
}

/// Krystal Identity `POST /api/v1/user/authorization` with JSON `{"token": "<token>"}`,
/// the gateway calling with its own Identity API key (`credential.bearer`).
///
/// Documented: `404 session_not_found` (invalid), `403 scope_not_granted` and 401 from
/// the authenticator (the gateway's key is wrong: broken). Inferred: an unknown or expired
/// `token` argument answers 404 with a `*_not_found` / `invalid_token` code; other errors
/// (`400 invalid_argument`, `404 organization_not_found`) stay failures (503).
pub(crate) fn krystal() -> Preset {
    let error_code = |codes: &[&str]| Rule::body(Predicate::one_of("/error/code", strings(codes)));
    Preset {
        method: Method::POST,
        token: TokenPlacement::Json("token".into()),
        headers: vec![],
        body: vec![],
        outcome: AnswerRules {
            invalid_when: vec![error_code(&[
                "session_not_found",
                "token_not_found",
                "invalid_token",
                "token_expired",
                "token_invalid",
            ])
            .with_status(&[400, 404, 422])],
            broken_when: vec![Rule::status(&[401, 403])],
            ..Default::default()
        },
        mapping: ResponseMapping {
            // `session` may be absent (then the expiry decides); when present it must be
            // active, and not explicitly untrusted.
            active: vec![
                Predicate::equals("/session/active", json!(true)).or_missing(),
                Predicate {
                    pointer: "/session/trusted".into(),
                    test: Test::NoneOf(vec![json!(false)]),
                    if_missing: true,
                },
            ],
            subject: vec!["/user/id".into()],
            session_id: vec![],
            scopes: vec!["/scopes".into()],
            expires: expires("/expiry", ExpiryFormat::UnixSeconds),
            ip_restrict: None,
            organizations: vec!["/user/organizations/*/organization_id".into()],
            claims: vec![
                ClaimMapping::for_rules("trusted", "/session/trusted"),
                ClaimMapping::for_rules("two_factor_auth", "/session/two_factor_auth"),
                ClaimMapping::for_rules("two_factor_auth_enabled", "/user/two_factor_auth_enabled"),
                ClaimMapping::for_rules("roles", "/user/roles"),
                ClaimMapping::for_rules("client_id", "/client_id"),
            ],
        },
    }
}

/// Prefactor `GET {base}/api/v1/session/{token}` (the session id in the path), the gateway
/// calling with its API key (`credential.bearer`). `summary.status` must be
/// `authenticated`. Errors are `{code, message, status: "error"}`: `not_found`,
/// `invalid_value`, `bad_request` mean the session id is not valid; `bad_authtoken`,
/// `not_authenticated`, `not_permitted` concern the gateway's own key (broken).
/// No expiry and no scopes are returned.
pub(crate) fn prefactor() -> Preset {
    Preset {
        method: Method::GET,
        token: TokenPlacement::Path,
        headers: vec![],
        body: vec![],
        outcome: AnswerRules {
            invalid_when: vec![Rule::body(Predicate::one_of(
                "/code",
                strings(&[
                    "not_found",
                    "invalid_value",
                    "bad_request",
                    "required_value",
                ]),
            ))],
            broken_when: vec![
                Rule::body(Predicate::one_of(
                    "/code",
                    strings(&["bad_authtoken", "not_authenticated", "not_permitted"]),
                )),
                Rule::status(&[401, 403]),
            ],
            ..Default::default()
        },
        mapping: ResponseMapping {
            active: vec![Predicate::equals("/summary/status", json!("authenticated"))],
            subject: vec!["/summary/authenticated_identity_id".into()],
            session_id: vec!["/summary/id".into()],
            organizations: vec!["/summary/domain_id".into(), "/summary/pool_id".into()],
            ..Default::default()
        },
    }
}

/// EnOS IAM `POST /enos-iam-service/v2.0/session/info` with the raw session id as
/// `Authorization` and no body. Answers HTTP 200 with `status` 0 on success; `status`
/// 30401 / 30404 (or 401 / 404) mean the session is not valid, any other non-zero status
/// is a failure. Expiry is `refreshTime + expires` (a lifetime); no scopes are returned.
pub(crate) fn enos() -> Preset {
    Preset {
        method: Method::POST,
        token: TokenPlacement::Authorization,
        headers: vec![("content-type".into(), "application/json".into())],
        body: vec![],
        outcome: AnswerRules {
            invalid_when: vec![
                Rule::body(Predicate::one_of(
                    "/status",
                    vec![json!(30401), json!(30404), json!(401), json!(404)],
                )),
                Rule::status(&[401]),
            ],
            broken_when: vec![Rule::status(&[403])],
            success: vec![
                Predicate::equals("/status", json!(0)),
                Predicate::equals("/success", json!(true)).or_missing(),
            ],
        },
        mapping: ResponseMapping {
            subject: vec!["/session/user/id".into()],
            session_id: vec!["/session/id".into()],
            expires: expires(
                "/session/expires",
                ExpiryFormat::LifetimeSeconds {
                    base: Some("/session/refreshTime".into()),
                },
            ),
            organizations: vec![
                "/session/workingOrganization/id".into(),
                "/session/residentOrganization/id".into(),
            ],
            claims: vec![
                ClaimMapping::for_rules("mfa_type", "/session/user/mfaType"),
                ClaimMapping::for_rules("email_verified", "/session/user/emailVerified"),
            ],
            ..Default::default()
        },
    }
}

/// OIDC UserInfo (`GET userinfo_endpoint`, `Authorization: Bearer <token>`). 401 and 403
/// (`insufficient_scope`: the token cannot read UserInfo) mean not valid. Only `sub` is
/// guaranteed; no expiry and no scopes. JSON answers only (not signed `application/jwt`).
pub(crate) fn userinfo() -> Preset {
    Preset {
        method: Method::GET,
        token: TokenPlacement::Bearer,
        headers: vec![],
        body: vec![],
        outcome: AnswerRules {
            invalid_when: vec![Rule::status(&[401, 403])],
            ..Default::default()
        },
        mapping: ResponseMapping {
            subject: vec!["/sub".into()],
            claims: vec![
                ClaimMapping::for_rules("email", "/email"),
                ClaimMapping::for_rules("email_verified", "/email_verified"),
                ClaimMapping::for_rules("groups", "/groups"),
            ],
            ..Default::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::provider::{InvalidReason, Resolution};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn bitgo_documented_session() {
        let doc = json!({"session": {
            "id": "0123456789abcdef0123456789abcdef",
            "user": "fedcba9876543210fedcba9876543210",
            "client": "bitgo",
            "created": "2026-07-01T10:00:00.000Z",
            "expires": "2026-07-01T12:00:00.000Z",
            "scope": ["wallet_view_all", "wallet_spend:abc123"],
            "ip": "203.0.113.7",
            "ipRestrict": ["203.0.113.0/24", "198.51.100.4"],
            "enterprise": "ent1",
            "organizations": ["org1"],
            "token": "v2xSECRET",
            "isExtensible": false
        }});
        let Resolution::Valid(id) = bitgo().mapping.apply(&doc, at(1_782_900_000)).unwrap() else {
            panic!("expected valid")
        };
        let id = id.to_parts();
        assert_eq!(id.subject, "fedcba9876543210fedcba9876543210");
        assert_eq!(
            id.session_id.as_deref(),
            Some("0123456789abcdef0123456789abcdef")
        );
        assert_eq!(id.scopes, ["wallet_view_all", "wallet_spend:abc123"]);
        assert_eq!(id.ip_restrict, ["203.0.113.0/24", "198.51.100.4"]);
        assert_eq!(id.organizations, ["org1", "ent1"]);
        assert_eq!(
            crate::identity::Identity::from(id.clone()).expires_unix(),
            Some(1_782_907_200)
        );
        // Two hours later the same answer is an expired token.
        assert_eq!(
            bitgo().mapping.apply(&doc, at(1_782_907_200)),
            Ok(Resolution::Invalid(InvalidReason::Expired))
        );
    }

    #[test]
    fn rfc7662_inactive_and_active() {
        let m = rfc7662().mapping;
        assert_eq!(
            m.apply(&json!({"active": false}), at(0)),
            Ok(Resolution::Invalid(InvalidReason::Inactive))
        );
        let doc = json!({"active": true, "client_id": "svc", "scope": "read write", "exp": 2_000_000_000});
        let Resolution::Valid(id) = m.apply(&doc, at(1_900_000_000)).unwrap() else {
            panic!()
        };
        let id = id.to_parts();
        assert_eq!((id.subject.as_str(), id.scopes.len()), ("svc", 2));
    }

    #[test]
    fn every_kind_has_a_preset() {
        assert_eq!(kinds().count(), 7);
        assert!(Preset::for_kind(ProviderKind::Static).is_none());
        assert!(Preset::for_kind(ProviderKind::Jwt).is_none());
    }
}
