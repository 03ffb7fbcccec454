//! `Identity`: who a token belongs to, as resolved by an identity provider.
//!
//! Pingora calls each HTTP exchange a "session", and several providers call their token
//! record a "session" too; to keep the words apart, the thing a token resolves to is an
//! *identity* everywhere in this crate, its config and its docs. The provider's own session
//! id is kept as [`Identity::session_id`].
//!
//! This folder holds everything between a bearer token and an identity: [`token`]
//! (reading it, its keyed hash), [`cache`] and the [`provider`] kinds. It is heavier than
//! the request path's own folder (`proxy/`) for one reason: each provider kind (static,
//! HTTP presets and their response mapping, JWT with JWKS refresh, the breaker) is its
//! own file. The request path meets only `IdentityCache::lookup` and `Provider::resolve`.

pub(crate) mod assertion;
pub mod cache;
pub mod provider;
pub mod token;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Which provider, in which definition: its config name and a fingerprint of its
/// definition as written. Token keys are derived from both, so cached identities survive a
/// reload exactly while the provider's definition is unchanged (a changed provider starts
/// from an empty cache). Cloning is one reference count; `Display` shows the name only.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ProviderId(Arc<(Arc<str>, u64)>);

impl ProviderId {
    pub fn new(name: impl Into<Arc<str>>, fingerprint: u64) -> Self {
        ProviderId(Arc::new((name.into(), fingerprint)))
    }

    /// The config name (metric labels, logs, purge filters).
    pub(crate) fn name(&self) -> &Arc<str> {
        &self.0 .0
    }

    pub(crate) fn fingerprint(&self) -> u64 {
        self.0 .1
    }
}

impl std::fmt::Debug for ProviderId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}#{:016x}", self.name(), self.fingerprint())
    }
}

impl std::fmt::Display for ProviderId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a provider mapping fills in (see `PROVIDERS.md`, "Normalization"); turned into
/// the compact, shareable [`Identity`] with `.into()` once it is complete.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IdentityParts {
    /// The user or client the token belongs to.
    pub subject: String,
    /// The provider's id for the token / login session, when it has one.
    pub session_id: Option<String>,
    /// Granted scopes, exactly as the provider spells them (`wallet_spend:<id>` included).
    pub scopes: Vec<String>,
    /// When the token stops being valid, if the provider says.
    pub expires_at: Option<SystemTime>,
    /// Client addresses / CIDR blocks the identity may be used from (empty: any). Kept as
    /// the provider wrote them; the policy parses them and fails closed on garbage.
    pub ip_restrict: Vec<String>,
    /// Organizations / enterprises the subject belongs to.
    pub organizations: Vec<String>,
    /// Provider values the config maps by name (`response.claims`): for rules, and
    /// forwarded as headers when the claim says so.
    pub claims: Vec<Claim>,
}

/// One claim: a provider value the config maps by name, typed as the provider wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Letters, digits, `-` and `_` (a forwarded one: no `_`; it becomes a header name).
    pub name: String,
    /// A string value's text; the compact JSON of any other value (number, `true`/`false`,
    /// list, object).
    pub value: String,
    /// True when `value` is JSON rather than a string's text.
    pub json: bool,
    /// Sent to the upstream as `<prefix>Claim-<name>`.
    pub forward: bool,
}

impl Claim {
    /// A forwarded string claim (static tokens' and tests' usual kind).
    pub fn text(name: impl Into<String>, value: impl Into<String>) -> Claim {
        Claim {
            name: name.into(),
            value: value.into(),
            json: false,
            forward: true,
        }
    }
}

/// A claim as an [`Identity`] holds it (borrowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClaimRef<'a> {
    pub(crate) name: &'a str,
    /// The text of a string; the compact JSON of anything else.
    pub(crate) value: &'a str,
    pub(crate) json: bool,
    pub(crate) forward: bool,
}

impl<'a> ClaimRef<'a> {
    /// The header value: a string as it is, a list of plain values joined with `,`
    /// (`a,b`), anything else as its JSON (`42`, `true`, `{"a":1}`).
    pub(crate) fn header_text(&self) -> std::borrow::Cow<'a, str> {
        if !self.json || !self.value.starts_with('[') {
            return self.value.into();
        }
        match serde_json::from_str::<serde_json::Value>(self.value) {
            Ok(v) => claim_header_text(&v).into(),
            Err(_) => self.value.into(),
        }
    }
}

/// How a provider value is written as a header (see [`ClaimRef::header_text`]).
pub(crate) fn claim_header_text(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) if items.iter().all(|i| !i.is_array() && !i.is_object()) => items
            .iter()
            .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}

/// A claim's name piece in [`Packed`] starts with one byte of flags: `'0'` plus 1 for
/// JSON, plus 2 for forwarded.
fn claim_flags(json: bool, forward: bool) -> char {
    char::from(b'0' + u8::from(json) + 2 * u8::from(forward))
}

impl IdentityParts {
    /// True when the identity carries an expiry that is at or before `now`.
    pub(crate) fn is_expired_at(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|exp| exp <= now)
    }
}

/// The normalized result of resolving a token: who it belongs to, what it may do, until
/// when and from where.
///
/// Built once per provider answer and then only read, by every request that hits it, so
/// it is stored for memory (a cache holds a million of them): all its text in one
/// exact-size string, the boundaries of the pieces as small offsets kept inline, behind
/// one reference count — cloning is a counter increment. A BitGo-sized identity is 2
/// allocations and ≈ 270 bytes (`cargo bench --bench cache_memory`); as plain `String`s
/// and `Vec`s it was 12 allocations and 531 bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity(Arc<Packed>);

#[derive(PartialEq, Eq)]
struct Packed {
    /// Subject, session id, scopes, IP restrictions, organizations, then claim name and
    /// value pairs, back to back.
    text: Box<str>,
    /// Where each piece of `text` ends.
    ends: Ends,
    expires_at: Option<SystemTime>,
    /// Index of the first piece of each list: scopes, IP restrictions, organizations,
    /// claims, and the number of pieces. The subject is piece 0; a session id, when
    /// there is one, piece 1.
    starts: [u32; 5],
}

/// Piece boundaries: inline while they are few and the text is short (every identity a
/// seed provider gives), else one more allocation.
#[derive(PartialEq, Eq)]
enum Ends {
    Inline([u16; INLINE_ENDS]),
    Boxed(Box<[u32]>),
}

const INLINE_ENDS: usize = 14;

impl Ends {
    fn get(&self, i: usize) -> usize {
        match self {
            Ends::Inline(a) => a[i].into(),
            Ends::Boxed(b) => b[i] as usize,
        }
    }
}

impl From<IdentityParts> for Identity {
    fn from(p: IdentityParts) -> Self {
        let mut text = String::with_capacity(
            p.subject.len()
                + p.session_id.as_ref().map_or(0, String::len)
                + [&p.scopes, &p.ip_restrict, &p.organizations]
                    .iter()
                    .flat_map(|l| l.iter())
                    .map(String::len)
                    .sum::<usize>()
                + p.claims
                    .iter()
                    .map(|c| 1 + c.name.len() + c.value.len())
                    .sum::<usize>(),
        );
        let mut ends: Vec<usize> = Vec::new();
        let mut push = |flag: Option<char>, s: &str| {
            text.extend(flag);
            text.push_str(s);
            ends.push(text.len());
        };
        push(None, &p.subject);
        if let Some(sid) = &p.session_id {
            push(None, sid);
        }
        let mut starts = [0u32; 5];
        let mut mark = |i: usize, n: usize| starts[i] = u32::try_from(n).unwrap_or(u32::MAX);
        let first_scope = 1 + usize::from(p.session_id.is_some());
        mark(0, first_scope);
        for s in &p.scopes {
            push(None, s);
        }
        mark(1, first_scope + p.scopes.len());
        for s in &p.ip_restrict {
            push(None, s);
        }
        mark(2, first_scope + p.scopes.len() + p.ip_restrict.len());
        for s in &p.organizations {
            push(None, s);
        }
        let before_claims =
            first_scope + p.scopes.len() + p.ip_restrict.len() + p.organizations.len();
        mark(3, before_claims);
        for c in &p.claims {
            push(Some(claim_flags(c.json, c.forward)), &c.name);
            push(None, &c.value);
        }
        mark(4, before_claims + 2 * p.claims.len());
        let ends = if ends.len() <= INLINE_ENDS && text.len() <= usize::from(u16::MAX) {
            let mut inline = [0u16; INLINE_ENDS];
            for (slot, end) in inline.iter_mut().zip(&ends) {
                *slot = *end as u16;
            }
            Ends::Inline(inline)
        } else {
            // Provider answers are bounded far below 4 GiB (`max_response_bytes`).
            Ends::Boxed(ends.iter().map(|e| *e as u32).collect())
        };
        Identity(Arc::new(Packed {
            text: text.into_boxed_str(),
            ends,
            expires_at: p.expires_at,
            starts,
        }))
    }
}

/// The pieces of one list of an [`Identity`], in the provider's order.
#[derive(Clone)]
pub(crate) struct Pieces<'a> {
    packed: &'a Packed,
    next: usize,
    end: usize,
}

impl<'a> Iterator for Pieces<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        (self.next < self.end).then(|| {
            self.next += 1;
            self.packed.piece(self.next - 1)
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.end - self.next;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Pieces<'_> {}

impl Packed {
    fn piece(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends.get(i - 1) };
        &self.text[start..self.ends.get(i)]
    }

    fn pieces(&self, list: usize) -> Pieces<'_> {
        Pieces {
            packed: self,
            next: self.starts[list] as usize,
            end: self.starts[list + 1] as usize,
        }
    }
}

impl Identity {
    /// The user or client the token belongs to.
    pub fn subject(&self) -> &str {
        self.0.piece(0)
    }

    /// The provider's id for the token / login session, when it has one.
    pub(crate) fn session_id(&self) -> Option<&str> {
        (self.0.starts[0] == 2).then(|| self.0.piece(1))
    }

    /// Granted scopes, exactly as the provider spells them.
    pub(crate) fn scopes(&self) -> Pieces<'_> {
        self.0.pieces(0)
    }

    /// Client addresses / CIDR blocks the identity may be used from (empty: any), as the
    /// provider wrote them.
    pub(crate) fn ip_restrict(&self) -> Pieces<'_> {
        self.0.pieces(1)
    }

    /// Organizations / enterprises the subject belongs to.
    pub(crate) fn organizations(&self) -> Pieces<'_> {
        self.0.pieces(2)
    }

    /// The mapped claims, in the provider mapping's order.
    pub(crate) fn claims(&self) -> impl ExactSizeIterator<Item = ClaimRef<'_>> + Clone + '_ {
        let first = self.0.starts[3] as usize;
        let n = (self.0.starts[4] as usize - first) / 2;
        (0..n).map(move |i| {
            let named = self.0.piece(first + 2 * i);
            let flags = named.as_bytes().first().map_or(0, |b| b.wrapping_sub(b'0'));
            ClaimRef {
                name: named.get(1..).unwrap_or_default(),
                value: self.0.piece(first + 2 * i + 1),
                json: flags & 1 != 0,
                forward: flags & 2 != 0,
            }
        })
    }

    /// The claim called `name`, if the identity has it.
    pub(crate) fn claim(&self, name: &str) -> Option<ClaimRef<'_>> {
        self.claims().find(|c| c.name == name)
    }

    /// When the token stops being valid, if the provider says.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.0.expires_at
    }

    /// True when the identity carries an expiry that is at or before `now`.
    pub(crate) fn is_expired_at(&self, now: SystemTime) -> bool {
        self.0.expires_at.is_some_and(|exp| exp <= now)
    }

    /// Time left until expiry as seen at `now`; `None` when the identity has no expiry.
    pub(crate) fn remaining(&self, now: SystemTime) -> Option<Duration> {
        self.0
            .expires_at
            .map(|exp| exp.duration_since(now).unwrap_or(Duration::ZERO))
    }

    /// Expiry as whole Unix seconds, for the `Expires` identity header.
    pub(crate) fn expires_unix(&self) -> Option<u64> {
        self.0
            .expires_at
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs())
    }

    /// The identity as separate, owned values (to change one, or to compare in tests).
    pub(crate) fn to_parts(&self) -> IdentityParts {
        let owned = |p: Pieces<'_>| p.map(str::to_string).collect();
        IdentityParts {
            subject: self.subject().to_string(),
            session_id: self.session_id().map(str::to_string),
            scopes: owned(self.scopes()),
            expires_at: self.expires_at(),
            ip_restrict: owned(self.ip_restrict()),
            organizations: owned(self.organizations()),
            claims: self
                .claims()
                .map(|c| Claim {
                    name: c.name.to_string(),
                    value: c.value.to_string(),
                    json: c.json,
                    forward: c.forward,
                })
                .collect(),
        }
    }
}

/// A handle that does not keep an identity alive, to tell later whether an identity is
/// the very same one (resolved by the same provider answer), not merely an equal one.
#[derive(Clone)]
pub(crate) struct IdentityRef(std::sync::Weak<Packed>);

impl Identity {
    pub(crate) fn downgrade(&self) -> IdentityRef {
        IdentityRef(Arc::downgrade(&self.0))
    }

    /// True when `r` was taken from this very identity.
    pub(crate) fn is(&self, r: &IdentityRef) -> bool {
        std::ptr::eq(r.0.as_ptr(), Arc::as_ptr(&self.0))
    }
}

impl Default for Identity {
    fn default() -> Self {
        IdentityParts::default().into()
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.to_parts().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_helpers() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let with_expiry = |at: Option<SystemTime>| -> Identity {
            IdentityParts {
                expires_at: at,
                ..Default::default()
            }
            .into()
        };
        let id = with_expiry(None);
        assert!(!id.is_expired_at(now));
        assert_eq!(id.remaining(now), None);
        let id = with_expiry(Some(now + Duration::from_secs(30)));
        assert!(!id.is_expired_at(now));
        assert_eq!(id.remaining(now), Some(Duration::from_secs(30)));
        assert_eq!(id.expires_unix(), Some(1_030));
        let id = with_expiry(Some(now));
        assert!(id.is_expired_at(now));
        assert_eq!(id.remaining(now), Some(Duration::ZERO));
    }

    fn parts(scopes: usize, ips: usize, orgs: usize, claims: usize, sid: bool) -> IdentityParts {
        let list = |tag: &str, n: usize| (0..n).map(|i| format!("{tag}{i}")).collect();
        IdentityParts {
            subject: "sübject".into(),
            session_id: sid.then(|| "sid".into()),
            scopes: list("scope", scopes),
            expires_at: Some(UNIX_EPOCH + Duration::from_secs(7)),
            ip_restrict: list("10.0.0.", ips),
            organizations: list("org", orgs),
            claims: (0..claims)
                .map(|i| Claim {
                    name: format!("c{i}"),
                    value: format!("v{i}"),
                    json: i % 2 == 1,
                    forward: i % 3 != 1,
                })
                .collect(),
        }
    }

    #[test]
    fn every_shape_reads_back_as_built() {
        // Empty lists, empty strings, inline and boxed boundaries, with and without a
        // session id: the compact form gives back exactly what went in.
        let mut shapes = vec![IdentityParts::default()];
        for sid in [false, true] {
            for (s, i, o, c) in [(0, 0, 0, 0), (5, 1, 1, 0), (1, 2, 3, 2), (20, 3, 4, 5)] {
                shapes.push(parts(s, i, o, c, sid));
            }
        }
        let mut empties = parts(2, 1, 1, 1, true);
        empties.scopes[0].clear();
        empties.session_id = Some(String::new());
        empties.claims[0].value.clear();
        shapes.push(empties);
        let mut long = parts(3, 1, 1, 1, true);
        long.subject = "x".repeat(70_000);
        shapes.push(long);
        for p in shapes {
            let id = Identity::from(p.clone());
            assert_eq!(id.to_parts(), p);
            assert_eq!(id.subject(), p.subject);
            assert_eq!(id.session_id(), p.session_id.as_deref());
            assert_eq!(id.scopes().len(), p.scopes.len());
            assert_eq!(id.claims().len(), p.claims.len());
            assert_eq!(id, Identity::from(p));
        }
        let scope_a = IdentityParts {
            scopes: vec!["a".into()],
            ..Default::default()
        };
        let org_a = IdentityParts {
            organizations: vec!["a".into()],
            ..Default::default()
        };
        assert_ne!(
            Identity::from(scope_a),
            Identity::from(org_a),
            "the same text in another list is another identity"
        );
    }
}
