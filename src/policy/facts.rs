//! What a route's rules are evaluated over: the resolved identity and the request, as
//! borrowed facts, read by CEL (`rules`) and by the shapes evaluated without it
//! (`fast_rules`) through the same accessors, so both see the same values.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::{Arc, LazyLock};
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderMap;

use crate::identity::Identity;

/// Headers a rule never sees: they carry credentials.
const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "proxy-authorization", "cookie"];

/// What rules are evaluated over.
pub struct Facts<'a> {
    pub identity: &'a Identity,
    pub provider: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub params: &'a [(Arc<str>, String)],
    pub host: Option<&'a str>,
    pub headers: &'a HeaderMap,
    /// True for a header the route reads its token from (never shown to rules).
    pub token_header: &'a (dyn Fn(&str) -> bool + Sync),
    pub client: Option<IpAddr>,
    pub client_certificate: Option<&'a str>,
    pub token_source: &'static str,
    pub now: SystemTime,
}

impl<'a> Facts<'a> {
    /// True for a header name a rule may read: not a credential header, not the route's
    /// token header.
    fn visible(&self, name: &str) -> bool {
        !CREDENTIAL_HEADERS.contains(&name) && !(self.token_header)(name)
    }

    /// Every header a rule sees (lower-case name, value; the values of a repeated header
    /// joined with `, `; values that are not visible ASCII are left out).
    pub(crate) fn visible_headers(&self) -> impl Iterator<Item = (&'a str, Cow<'a, str>)> + '_ {
        self.headers
            .keys()
            .filter(|name| self.visible(name.as_str()))
            .filter_map(|name| Some((name.as_str(), self.joined(name.as_str())?)))
    }

    /// The header `name` (lower case) as a rule sees it, if it does.
    pub(crate) fn header(&self, name: &str) -> Option<Cow<'a, str>> {
        // Rules see lower-case names only (`HeaderMap` itself would find any case).
        if name.bytes().any(|b| b.is_ascii_uppercase()) || !self.visible(name) {
            return None;
        }
        self.joined(name)
    }

    fn joined(&self, name: &str) -> Option<Cow<'a, str>> {
        let mut values = self
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok());
        match (values.next(), values.next()) {
            (None, _) => None,
            (Some(one), None) => Some(Cow::Borrowed(one)),
            (Some(a), Some(b)) => {
                let mut joined = format!("{a}, {b}");
                for v in values {
                    joined.push_str(", ");
                    joined.push_str(v);
                }
                Some(Cow::Owned(joined))
            }
        }
    }

    /// The path template's parameter `name`.
    pub(crate) fn param(&self, name: &str) -> Option<&'a str> {
        self.params
            .iter()
            .find(|(k, _)| &**k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Facts<'static> {
    /// A full identity and request, for the trial run at load time.
    pub(crate) fn sample() -> Facts<'static> {
        static IDENTITY: LazyLock<Identity> = LazyLock::new(|| {
            crate::identity::IdentityParts {
                subject: "user-1".into(),
                session_id: Some("session-1".into()),
                scopes: vec!["read".into()],
                expires_at: Some(UNIX_EPOCH + std::time::Duration::from_secs(4_000_000_000)),
                ip_restrict: vec!["10.0.0.0/8".into()],
                organizations: vec!["org-1".into()],
                claims: vec![
                    crate::identity::Claim::text("role", "admin"),
                    crate::identity::Claim {
                        json: true,
                        forward: false,
                        ..crate::identity::Claim::text("trusted", "true")
                    },
                ],
            }
            .into()
        });
        static HEADERS: LazyLock<HeaderMap> = LazyLock::new(|| {
            let mut h = HeaderMap::new();
            h.insert("x-org-id", http::HeaderValue::from_static("org-1"));
            h
        });
        Facts {
            identity: &IDENTITY,
            provider: "provider",
            method: "GET",
            path: "/orgs/org-1",
            params: &[],
            host: Some("api.example.com"),
            headers: &HEADERS,
            token_header: &|_| false,
            client: Some(IpAddr::from([10, 0, 0, 1])),
            client_certificate: None,
            token_source: "authorization",
            now: UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000),
        }
    }
}
