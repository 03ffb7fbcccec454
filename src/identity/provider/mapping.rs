//! Response mapping: JSON pointers (RFC 6901) from a provider's answer to an [`Identity`].
//!
//! Absent or `null` optional fields mean "not given"; a field that is present with the wrong
//! type is a provider failure naming the pointer (503, never an allow).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::{InvalidReason, ProviderError, Resolution};
use crate::identity::{Claim, IdentityParts};

/// How a [`Predicate`] compares the value at its pointer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Test {
    /// Equal to one of these (numbers compare by value: `0` equals `0.0`).
    OneOf(Vec<Value>),
    /// Present and equal to none of these.
    NoneOf(Vec<Value>),
}

/// A check on a provider answer: the value at `pointer` passes `test`. When the pointer is
/// absent (or `null`), the predicate holds only if `if_missing` says so.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Predicate {
    pub(crate) pointer: String,
    pub(crate) test: Test,
    pub(crate) if_missing: bool,
}

impl Predicate {
    /// `pointer == value`, failing when absent.
    pub(crate) fn equals(pointer: &str, value: Value) -> Self {
        Predicate {
            pointer: pointer.to_string(),
            test: Test::OneOf(vec![value]),
            if_missing: false,
        }
    }

    /// `pointer` is one of `values`, failing when absent.
    pub(crate) fn one_of(pointer: &str, values: Vec<Value>) -> Self {
        Predicate {
            pointer: pointer.to_string(),
            test: Test::OneOf(values),
            if_missing: false,
        }
    }

    /// The same test, but holding when the pointer is absent.
    pub(crate) fn or_missing(mut self) -> Self {
        self.if_missing = true;
        self
    }

    /// Evaluates the predicate on `doc`.
    pub(crate) fn holds(&self, doc: &Value) -> bool {
        match present(doc, &self.pointer) {
            None => self.if_missing,
            Some(v) => match &self.test {
                Test::OneOf(values) => values.iter().any(|w| same(v, w)),
                Test::NoneOf(values) => !values.iter().any(|w| same(v, w)),
            },
        }
    }
}

/// JSON equality with numbers compared by value.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// A rule deciding an answer before the mapping: it matches when the status is one of
/// `statuses` (any status if empty) and every predicate holds on the JSON body (a rule
/// with predicates never matches a body that is not JSON).
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Rule {
    pub(crate) statuses: Vec<u16>,
    pub(crate) predicates: Vec<Predicate>,
}

impl Rule {
    /// A rule matching these statuses whatever the body.
    pub(crate) fn status(statuses: &[u16]) -> Self {
        Rule {
            statuses: statuses.to_vec(),
            predicates: Vec::new(),
        }
    }

    /// A rule matching a body predicate (on any status).
    pub(crate) fn body(predicate: Predicate) -> Self {
        Rule {
            statuses: Vec::new(),
            predicates: vec![predicate],
        }
    }

    /// Adds a status restriction.
    pub(crate) fn with_status(mut self, statuses: &[u16]) -> Self {
        self.statuses = statuses.to_vec();
        self
    }

    /// True when the rule matches an answer with `status` and parsed body `doc`.
    pub(crate) fn matches(&self, status: u16, doc: Option<&Value>) -> bool {
        if !self.statuses.is_empty() && !self.statuses.contains(&status) {
            return false;
        }
        match doc {
            Some(doc) => self.predicates.iter().all(|p| p.holds(doc)),
            None => self.predicates.is_empty(),
        }
    }
}

/// How a provider's answers are classified before the identity is mapped.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AnswerRules {
    /// Any match: the token is not valid (401 to the client, negative-cached).
    pub(crate) invalid_when: Vec<Rule>,
    /// Any match: the provider or the gateway's credential is broken (503, not cached).
    pub(crate) broken_when: Vec<Rule>,
    /// On a 2xx answer, all must hold; otherwise the answer is a failure (503). For
    /// providers that answer 200 with an error inside (EnOS `status != 0`).
    pub(crate) success: Vec<Predicate>,
}

/// What an answer means before mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AnswerClass {
    Invalid,
    Broken,
    /// Not decided by a rule: a non-2xx status is a failure, a 2xx is mapped.
    Undecided,
}

impl AnswerRules {
    /// Applies the rules, `invalid_when` first.
    pub(crate) fn verdict(&self, status: u16, doc: Option<&Value>) -> AnswerClass {
        if self.invalid_when.iter().any(|r| r.matches(status, doc)) {
            AnswerClass::Invalid
        } else if self.broken_when.iter().any(|r| r.matches(status, doc)) {
            AnswerClass::Broken
        } else {
            AnswerClass::Undecided
        }
    }

    /// Checks the success predicates on a 2xx body.
    pub(crate) fn check_success(&self, doc: &Value) -> Result<(), ProviderError> {
        match self.success.iter().find(|p| !p.holds(doc)) {
            None => Ok(()),
            Some(p) => Err(mapping_error(
                p.pointer.clone(),
                format!(
                    "the provider reported a failure (found {})",
                    present(doc, &p.pointer).map_or("nothing".to_string(), |v| v.to_string())
                ),
            )),
        }
    }
}

/// How an expiry field is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExpiryFormat {
    /// An RFC 3339 / ISO 8601 date-time string (BitGo `expires`).
    Rfc3339,
    /// Unix time in seconds (RFC 7662 `exp`).
    UnixSeconds,
    /// Unix time in milliseconds.
    UnixMillis,
    /// A lifetime in seconds, added to the Unix-seconds value at `base`, or to the time of
    /// the answer when `base` is `None` (EnOS: `refreshTime + expires`).
    LifetimeSeconds { base: Option<String> },
}

/// Where the expiry is and how it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExpiryMapping {
    pub(crate) pointer: String,
    pub(crate) format: ExpiryFormat,
}

/// Pointers from a provider response to identity fields.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResponseMapping {
    /// All must hold, else the token is not active (RFC 7662 `/active == true`).
    pub(crate) active: Vec<Predicate>,
    /// Tried in order; the first present one is the subject. Required.
    pub(crate) subject: Vec<String>,
    /// Tried in order; the first present one is the session id.
    pub(crate) session_id: Vec<String>,
    /// Tried in order; the first present one holds the scopes: a JSON array of strings,
    /// or one space-delimited string (JWT `scope` vs `scp`).
    pub(crate) scopes: Vec<String>,
    pub(crate) expires: Option<ExpiryMapping>,
    /// A JSON array of addresses / CIDR blocks.
    pub(crate) ip_restrict: Option<String>,
    /// Each pointer may hold a string or an array of strings; all are collected, in order.
    pub(crate) organizations: Vec<String>,
    /// Named values for rules and headers (`response.claims`, and the presets' own).
    pub(crate) claims: Vec<ClaimMapping>,
}

/// One claim of a mapping: where its value is, whether it is a time, whether it is sent
/// to the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClaimMapping {
    pub(crate) name: String,
    pub(crate) pointer: String,
    /// The value is a time written this way; the claim holds it as Unix seconds (what a
    /// rule compares with `now`). A value that does not read as one leaves the claim out.
    pub(crate) time: Option<ExpiryFormat>,
    /// Sent as `<prefix>Claim-<name>`.
    pub(crate) forward: bool,
}

impl ClaimMapping {
    /// A claim kept for rules only (the presets' kind).
    pub(crate) fn for_rules(name: &str, pointer: &str) -> ClaimMapping {
        ClaimMapping {
            name: name.into(),
            pointer: pointer.into(),
            time: None,
            forward: false,
        }
    }

    /// The same, for a time.
    pub(crate) fn time_for_rules(name: &str, pointer: &str, format: ExpiryFormat) -> ClaimMapping {
        ClaimMapping {
            time: Some(format),
            ..ClaimMapping::for_rules(name, pointer)
        }
    }
}

impl ResponseMapping {
    /// Maps a parsed 2xx response to a resolution, as seen at `now`.
    pub fn apply(&self, doc: &Value, now: SystemTime) -> Result<Resolution, ProviderError> {
        // A status field that is present but says "not active" is an invalid token; one
        // that is missing (and not marked `if_missing: pass`) is a malformed answer.
        for p in &self.active {
            match present(doc, &p.pointer) {
                None if p.if_missing => {}
                None => {
                    return Err(mapping_error(
                        p.pointer.clone(),
                        "required field is missing",
                    ))
                }
                Some(_) if !p.holds(doc) => {
                    return Ok(Resolution::Invalid(InvalidReason::Inactive))
                }
                Some(_) => {}
            }
        }
        let subject = self
            .subject
            .iter()
            .find_map(|p| present(doc, p).map(|v| (p, v)))
            .ok_or_else(|| mapping_error(self.subject.join(" or "), "required field is missing"))
            .and_then(|(p, v)| scalar_string(p, v))?;
        if subject.is_empty() {
            return Err(mapping_error(self.subject.join(" or "), "subject is empty"));
        }
        let identity = IdentityParts {
            subject,
            session_id: optional(doc, first_present(doc, &self.session_id), scalar_string)?,
            scopes: optional(doc, first_present(doc, &self.scopes), scopes)?.unwrap_or_default(),
            expires_at: match &self.expires {
                Some(m) => optional(doc, Some(&m.pointer), |p, v| {
                    expiry(doc, p, v, &m.format, now)
                })?,
                None => None,
            },
            ip_restrict: optional(doc, self.ip_restrict.as_deref(), string_list)?
                .unwrap_or_default(),
            organizations: self.organizations(doc)?,
            claims: self.claims(doc, now),
        };
        if identity.is_expired_at(now) {
            return Ok(Resolution::Invalid(InvalidReason::Expired));
        }
        Ok(Resolution::Valid(identity.into()))
    }

    /// The claims the answer has, typed as it writes them: a string is text, anything
    /// else is kept as its JSON; a time claim is Unix seconds.
    fn claims(&self, doc: &Value, now: SystemTime) -> Vec<Claim> {
        let mut out = Vec::new();
        for m in &self.claims {
            let Some(v) = present(doc, &m.pointer) else {
                continue;
            };
            let (value, json) = match (&m.time, v) {
                (Some(format), v) => match expiry(doc, &m.pointer, v, format, now) {
                    Ok(t) => (crate::clock::unix_seconds(t).to_string(), true),
                    Err(_) => continue,
                },
                (None, Value::String(s)) => (s.clone(), false),
                (None, other) => (other.to_string(), true),
            };
            out.push(Claim {
                name: m.name.clone(),
                value,
                json,
                forward: m.forward,
            });
        }
        out
    }

    fn organizations(&self, doc: &Value) -> Result<Vec<String>, ProviderError> {
        let mut out: Vec<String> = Vec::new();
        for pointer in &self.organizations {
            for (at, value) in select(doc, pointer) {
                let items = match value {
                    Value::Array(_) => string_list(&at, value)?,
                    _ => vec![scalar_string(&at, value)?],
                };
                for item in items {
                    if !item.is_empty() && !out.contains(&item) {
                        out.push(item);
                    }
                }
            }
        }
        Ok(out)
    }
}

fn mapping_error(pointer: impl Into<String>, problem: impl Into<String>) -> ProviderError {
    ProviderError::Mapping {
        pointer: pointer.into(),
        problem: problem.into(),
    }
}

/// Every non-null value at `pointer`, with its concrete pointer. A `*` segment stands for
/// each element of an array (`/user/organizations/*/organization_id`); elsewhere the pointer
/// is plain RFC 6901.
fn select<'a>(doc: &'a Value, pointer: &str) -> Vec<(String, &'a Value)> {
    if !pointer.split('/').any(|seg| seg == "*") {
        return present(doc, pointer)
            .map(|v| vec![(pointer.to_string(), v)])
            .unwrap_or_default();
    }
    let mut current: Vec<(String, &Value)> = vec![(String::new(), doc)];
    for seg in pointer.split('/').skip(1) {
        let mut next = Vec::new();
        for (at, v) in current {
            match (seg, v) {
                ("*", Value::Array(items)) => next.extend(
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, it)| (format!("{at}/{i}"), it)),
                ),
                (seg, v) => {
                    if let Some(child) = v.pointer(&format!("/{seg}")) {
                        next.push((format!("{at}/{seg}"), child));
                    }
                }
            }
        }
        current = next;
    }
    current.retain(|(_, v)| !v.is_null());
    current
}

/// The first of `pointers` with a value in `doc`.
fn first_present<'a>(doc: &Value, pointers: &'a [String]) -> Option<&'a str> {
    pointers
        .iter()
        .find(|p| present(doc, p).is_some())
        .map(String::as_str)
}

/// The value at `pointer`, treating JSON `null` as absent.
fn present<'a>(doc: &'a Value, pointer: &str) -> Option<&'a Value> {
    doc.pointer(pointer).filter(|v| !v.is_null())
}

fn optional<T>(
    doc: &Value,
    pointer: Option<&str>,
    convert: impl Fn(&str, &Value) -> Result<T, ProviderError>,
) -> Result<Option<T>, ProviderError> {
    match pointer.and_then(|p| present(doc, p).map(|v| (p, v))) {
        Some((p, v)) => convert(p, v).map(Some),
        None => Ok(None),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A string, or a number written as its decimal text (numeric user ids).
fn scalar_string(pointer: &str, v: &Value) -> Result<String, ProviderError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
        other => Err(mapping_error(
            pointer,
            format!("expected a string, found {}", type_name(other)),
        )),
    }
}

fn string_list(pointer: &str, v: &Value) -> Result<Vec<String>, ProviderError> {
    match v {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| scalar_string(&format!("{pointer}/{i}"), item))
            .collect(),
        other => Err(mapping_error(
            pointer,
            format!("expected an array of strings, found {}", type_name(other)),
        )),
    }
}

fn scopes(pointer: &str, v: &Value) -> Result<Vec<String>, ProviderError> {
    match v {
        Value::String(s) => Ok(s.split_ascii_whitespace().map(str::to_string).collect()),
        Value::Array(_) => string_list(pointer, v),
        other => Err(mapping_error(
            pointer,
            format!(
                "expected an array of scopes or a space-delimited string, found {}",
                type_name(other)
            ),
        )),
    }
}

fn expiry(
    doc: &Value,
    pointer: &str,
    v: &Value,
    format: &ExpiryFormat,
    now: SystemTime,
) -> Result<SystemTime, ProviderError> {
    let bad = |what: &str| mapping_error(pointer, format!("expected {what}, found {v}"));
    match format {
        ExpiryFormat::Rfc3339 => {
            let s = v
                .as_str()
                .ok_or_else(|| bad("an RFC 3339 date-time string"))?;
            let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map_err(|_| bad("an RFC 3339 date-time string"))?;
            let nanos = t.unix_timestamp_nanos();
            if nanos < 0 {
                return Ok(UNIX_EPOCH);
            }
            Ok(UNIX_EPOCH + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)))
        }
        ExpiryFormat::UnixSeconds => unix(v, 1.0).ok_or_else(|| bad("Unix seconds")),
        ExpiryFormat::UnixMillis => unix(v, 1_000.0).ok_or_else(|| bad("Unix milliseconds")),
        ExpiryFormat::LifetimeSeconds { base } => {
            let lifetime = v
                .as_f64()
                .filter(|n| n.is_finite() && *n >= 0.0)
                .ok_or_else(|| bad("a lifetime in seconds"))?;
            let start = match base {
                None => now,
                Some(bp) => {
                    let b = present(doc, bp)
                        .ok_or_else(|| mapping_error(bp.clone(), "required field is missing"))?;
                    unix(b, 1.0).ok_or_else(|| {
                        mapping_error(bp.clone(), format!("expected Unix seconds, found {b}"))
                    })?
                }
            };
            Ok(start + Duration::from_secs_f64(lifetime.min(16_725_225_600.0)))
        }
    }
}

/// A non-negative finite number of `per_second` units since the epoch.
fn unix(v: &Value, per_second: f64) -> Option<SystemTime> {
    let n = v.as_f64()?;
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    let secs = n / per_second;
    // Beyond year ~2500 is treated as "no practical expiry" but still a valid time.
    let secs = secs.min(16_725_225_600.0);
    Some(UNIX_EPOCH + Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn introspection() -> ResponseMapping {
        ResponseMapping {
            active: vec![Predicate::equals("/active", json!(true))],
            subject: vec!["/sub".into(), "/client_id".into()],
            session_id: vec!["/jti".into()],
            scopes: vec!["/scope".into()],
            expires: Some(ExpiryMapping {
                pointer: "/exp".into(),
                format: ExpiryFormat::UnixSeconds,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn maps_a_full_answer() {
        let doc = json!({"active": true, "sub": "u1", "jti": "s1", "scope": "a  b:c", "exp": 1_700_000_100});
        let Resolution::Valid(id) = introspection().apply(&doc, now()).unwrap() else {
            panic!("expected valid")
        };
        let id = id.to_parts();
        assert_eq!(id.subject, "u1");
        assert_eq!(id.session_id.as_deref(), Some("s1"));
        assert_eq!(id.scopes, ["a", "b:c"]);
        assert_eq!(
            crate::identity::Identity::from(id.clone()).expires_unix(),
            Some(1_700_000_100)
        );
    }

    #[test]
    fn decisions_and_failures() {
        let m = introspection();
        let table: [(Value, Result<&str, &str>); 9] = [
            (json!({"active": false}), Ok("inactive")),
            (json!({"active": "true", "sub": "u"}), Ok("inactive")),
            (json!({}), Err("/active")),
            (
                json!({"active": true, "sub": "u", "exp": 1_600_000_000}),
                Ok("expired"),
            ),
            (json!({"active": true, "client_id": "svc"}), Ok("valid")),
            (json!({"active": true}), Err("/sub or /client_id")),
            (json!({"active": true, "sub": {"x": 1}}), Err("/sub")),
            (
                json!({"active": true, "sub": "u", "scope": 5}),
                Err("/scope"),
            ),
            (
                json!({"active": true, "sub": "u", "exp": "soon"}),
                Err("/exp"),
            ),
        ];
        for (doc, want) in table {
            let got = m.apply(&doc, now());
            match (got, want) {
                (Ok(Resolution::Invalid(InvalidReason::Inactive)), Ok("inactive")) => {}
                (Ok(Resolution::Invalid(InvalidReason::Expired)), Ok("expired")) => {}
                (Ok(Resolution::Valid(_)), Ok("valid")) => {}
                (Err(ProviderError::Mapping { pointer, .. }), Err(p)) => assert_eq!(pointer, p),
                (got, want) => panic!("{doc}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn organizations_are_flattened_and_deduplicated() {
        let m = ResponseMapping {
            subject: vec!["/u".into()],
            organizations: vec!["/orgs".into(), "/ent".into(), "/missing".into()],
            ip_restrict: Some("/ips".into()),
            expires: Some(ExpiryMapping {
                pointer: "/exp".into(),
                format: ExpiryFormat::Rfc3339,
            }),
            ..Default::default()
        };
        let doc = json!({"u": 42, "orgs": ["o1", "o2"], "ent": "o1", "ips": ["10.0.0.0/24"], "exp": "2030-01-01T00:00:00.000Z"});
        let Resolution::Valid(id) = m.apply(&doc, now()).unwrap() else {
            panic!()
        };
        let id = id.to_parts();
        assert_eq!(id.subject, "42");
        assert_eq!(id.organizations, ["o1", "o2"]);
        assert_eq!(id.ip_restrict, ["10.0.0.0/24"]);
        assert_eq!(
            crate::identity::Identity::from(id.clone()).expires_unix(),
            Some(1_893_456_000)
        );
        let bad = json!({"u": "x", "orgs": [1.5]});
        assert!(
            matches!(m.apply(&bad, now()), Err(ProviderError::Mapping { pointer, .. }) if pointer == "/orgs/0")
        );
        let wild = ResponseMapping {
            subject: vec!["/u".into()],
            organizations: vec!["/user/organizations/*/organization_id".into()],
            ..Default::default()
        };
        let doc = json!({"u": "x", "user": {"organizations": [
            {"organization_id": "k1", "owner": true}, {"organization_id": "k2"}, {"owner": false}
        ]}});
        let Resolution::Valid(id) = wild.apply(&doc, now()).unwrap() else {
            panic!()
        };
        let id = id.to_parts();
        assert_eq!(id.organizations, ["k1", "k2"]);
        let bad = json!({"u": "x", "user": {"organizations": [{"organization_id": {"x": 1}}]}});
        assert!(
            matches!(wild.apply(&bad, now()), Err(ProviderError::Mapping { pointer, .. }) if pointer == "/user/organizations/0/organization_id")
        );
        let bad_ips = json!({"u": "x", "ips": "10.0.0.1"});
        assert!(
            matches!(m.apply(&bad_ips, now()), Err(ProviderError::Mapping { pointer, .. }) if pointer == "/ips")
        );
    }

    #[test]
    fn unix_formats() {
        let secs = ExpiryFormat::UnixSeconds;
        let ms = ExpiryFormat::UnixMillis;
        let doc = json!({"refreshTime": 1_562_850_052});
        let at = |v: Value, f: &ExpiryFormat| expiry(&doc, "/e", &v, f, now());
        assert_eq!(
            at(json!(1_700_000_000_500u64), &ms).unwrap(),
            UNIX_EPOCH + Duration::from_millis(1_700_000_000_500)
        );
        assert!(at(json!(-5), &secs).is_err());
        assert!(at(json!(true), &secs).is_err());
        assert!(at(json!("2030-01-01"), &ExpiryFormat::Rfc3339).is_err());
        let enos = ExpiryFormat::LifetimeSeconds {
            base: Some("/refreshTime".into()),
        };
        assert_eq!(
            at(json!(7200), &enos).unwrap(),
            UNIX_EPOCH + Duration::from_secs(1_562_850_052 + 7200)
        );
        let from_now = ExpiryFormat::LifetimeSeconds { base: None };
        assert_eq!(
            at(json!(60), &from_now).unwrap(),
            now() + Duration::from_secs(60)
        );
        let missing_base = ExpiryFormat::LifetimeSeconds {
            base: Some("/nope".into()),
        };
        assert!(
            matches!(at(json!(60), &missing_base), Err(ProviderError::Mapping { pointer, .. }) if pointer == "/nope")
        );
    }
}

#[cfg(test)]
mod rule_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn predicates() {
        let doc = json!({"status": 0, "session": {"active": true, "trusted": null}, "f": 1.0});
        assert!(Predicate::equals("/status", json!(0)).holds(&doc));
        assert!(
            Predicate::equals("/f", json!(1)).holds(&doc),
            "numbers by value"
        );
        assert!(!Predicate::equals("/status", json!("0")).holds(&doc));
        assert!(!Predicate::equals("/missing", json!(0)).holds(&doc));
        assert!(Predicate::equals("/missing", json!(0))
            .or_missing()
            .holds(&doc));
        let not_false = Predicate {
            pointer: "/session/trusted".into(),
            test: Test::NoneOf(vec![json!(false)]),
            if_missing: true,
        };
        assert!(not_false.holds(&doc), "null counts as missing");
        assert!(!not_false.holds(&json!({"session": {"trusted": false}})));
        assert!(not_false.holds(&json!({"session": {"trusted": true}})));
    }

    #[test]
    fn rules_and_verdicts() {
        let outcome = AnswerRules {
            invalid_when: vec![
                Rule::status(&[401]),
                Rule::body(Predicate::one_of(
                    "/error/code",
                    vec![json!("session_not_found")],
                ))
                .with_status(&[404]),
            ],
            broken_when: vec![Rule::status(&[403])],
            success: vec![Predicate::equals("/status", json!(0))],
        };
        let not_found = json!({"error": {"code": "session_not_found"}});
        let org = json!({"error": {"code": "organization_not_found"}});
        assert_eq!(outcome.verdict(401, None), AnswerClass::Invalid);
        assert_eq!(outcome.verdict(404, Some(&not_found)), AnswerClass::Invalid);
        assert_eq!(
            outcome.verdict(400, Some(&not_found)),
            AnswerClass::Undecided
        );
        assert_eq!(outcome.verdict(404, Some(&org)), AnswerClass::Undecided);
        assert_eq!(outcome.verdict(404, None), AnswerClass::Undecided);
        assert_eq!(outcome.verdict(403, Some(&org)), AnswerClass::Broken);
        assert!(outcome.check_success(&json!({"status": 0})).is_ok());
        let err = outcome
            .check_success(&json!({"status": 30401}))
            .unwrap_err();
        assert!(
            matches!(err, ProviderError::Mapping { ref pointer, .. } if pointer == "/status"),
            "{err}"
        );
    }

    #[test]
    fn claims_keep_the_type_the_provider_wrote() {
        let m = ResponseMapping {
            subject: vec!["/sub".into()],
            claims: vec![
                ClaimMapping {
                    forward: true,
                    ..ClaimMapping::for_rules("email", "/email")
                },
                ClaimMapping::for_rules("roles", "/roles"),
                ClaimMapping::for_rules("verified", "/v"),
                ClaimMapping::for_rules("level", "/n"),
                ClaimMapping::for_rules("absent", "/nope"),
                ClaimMapping::time_for_rules("until", "/t", ExpiryFormat::Rfc3339),
                ClaimMapping::time_for_rules("bad_time", "/email", ExpiryFormat::Rfc3339),
            ],
            ..Default::default()
        };
        let doc = json!({"sub": "u", "email": "a@b.c", "roles": ["r1", "r2"], "v": true,
            "n": 2.5, "t": "2030-01-01T00:00:00Z"});
        let Resolution::Valid(id) = m.apply(&doc, SystemTime::now()).unwrap() else {
            panic!()
        };
        let got: Vec<_> = id
            .claims()
            .map(|c| {
                (
                    c.name,
                    c.value,
                    c.json,
                    c.forward,
                    c.header_text().into_owned(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("email", "a@b.c", false, true, "a@b.c".to_string()),
                ("roles", r#"["r1","r2"]"#, true, false, "r1,r2".to_string()),
                ("verified", "true", true, false, "true".to_string()),
                ("level", "2.5", true, false, "2.5".to_string()),
                ("until", "1893456000", true, false, "1893456000".to_string()),
            ],
            "a missing value and a time that does not parse leave the claim out"
        );
    }
}
