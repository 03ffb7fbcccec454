//! Built-in descriptions of known session endpoints (see `PROVIDERS.md`). Each preset is
//! only data for the generic [`super::http::HttpProvider`]: method, where the token goes,
//! which statuses mean what, and where each identity field is in the answer.

use reqwest::Method;
use serde_json::json;

use super::http::{StatusMapping, TokenPlacement};
use super::mapping::{ExpiryFormat, ExpiryMapping, Predicate, ResponseMapping};

/// The request and response shape of one provider kind.
#[derive(Debug, Clone)]
pub struct Preset {
    pub method: Method,
    pub token: TokenPlacement,
    pub statuses: StatusMapping,
    pub mapping: ResponseMapping,
}

/// BitGo `GET /api/v2/user/session` with `Authorization: Bearer <token>`.
///
/// 200 `{session: {id, user, scope[], expires (ISO 8601), ipRestrict[], organizations[],
/// enterprise, …}}`; any 401 means the token is not valid (BitGo documents no separate
/// body for expired tokens). The `token` field BitGo echoes back is never read.
pub fn bitgo() -> Preset {
    Preset {
        method: Method::GET,
        token: TokenPlacement::BearerHeader,
        statuses: StatusMapping {
            invalid_token: vec![401],
            credential_rejected: vec![],
        },
        mapping: ResponseMapping {
            active: None,
            subject: vec!["/session/user".into()],
            session_id: Some("/session/id".into()),
            scopes: Some("/session/scope".into()),
            expires: Some(ExpiryMapping {
                pointer: "/session/expires".into(),
                format: ExpiryFormat::Rfc3339,
            }),
            ip_restrict: Some("/session/ipRestrict".into()),
            organizations: vec![
                "/session/organizations".into(),
                "/session/enterprise".into(),
            ],
        },
    }
}

/// RFC 7662 token introspection: `POST` form `token=…&token_type_hint=access_token`, the
/// gateway authenticated with HTTP Basic. `{"active": false}` means not valid; a 401 or 403
/// from the endpoint itself means the gateway's client credentials are wrong.
pub fn rfc7662() -> Preset {
    Preset {
        method: Method::POST,
        token: TokenPlacement::FormField {
            name: "token".into(),
            extra: vec![("token_type_hint".into(), "access_token".into())],
        },
        statuses: StatusMapping {
            invalid_token: vec![],
            credential_rejected: vec![401, 403],
        },
        mapping: ResponseMapping {
            active: Some(Predicate::equals("/active", json!(true))),
            // Client-credentials tokens often carry no `sub`: fall back to the user name,
            // then to the client id.
            subject: vec!["/sub".into(), "/username".into(), "/client_id".into()],
            session_id: Some("/jti".into()),
            scopes: Some("/scope".into()),
            expires: Some(ExpiryMapping {
                pointer: "/exp".into(),
                format: ExpiryFormat::UnixSeconds,
            }),
            ip_restrict: None,
            organizations: vec![],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{InvalidReason, Resolution};
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
        assert_eq!(id.subject, "fedcba9876543210fedcba9876543210");
        assert_eq!(
            id.session_id.as_deref(),
            Some("0123456789abcdef0123456789abcdef")
        );
        assert_eq!(id.scopes, ["wallet_view_all", "wallet_spend:abc123"]);
        assert_eq!(id.ip_restrict, ["203.0.113.0/24", "198.51.100.4"]);
        assert_eq!(id.organizations, ["org1", "ent1"]);
        assert_eq!(id.expires_unix(), Some(1_782_907_200));
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
        assert_eq!((id.subject.as_str(), id.scopes.len()), ("svc", 2));
    }
}
