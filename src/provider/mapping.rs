//! Response mapping: JSON pointers (RFC 6901) from a provider's answer to an [`Identity`].
//!
//! Absent or `null` optional fields mean "not given"; a field that is present with the wrong
//! type is a provider failure naming the pointer (503, never an allow).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::{InvalidReason, ProviderError, Resolution};
use crate::identity::Identity;

/// A check on the response: the value at `pointer` must equal one of `any_of`.
#[derive(Debug, Clone, PartialEq)]
pub struct Predicate {
    pub pointer: String,
    pub any_of: Vec<Value>,
}

impl Predicate {
    /// `pointer == value`.
    pub fn equals(pointer: &str, value: Value) -> Self {
        Predicate {
            pointer: pointer.to_string(),
            any_of: vec![value],
        }
    }

    fn holds(&self, doc: &Value) -> bool {
        doc.pointer(&self.pointer)
            .is_some_and(|v| self.any_of.contains(v))
    }
}

/// How an expiry field is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpiryFormat {
    /// An RFC 3339 / ISO 8601 date-time string (BitGo `expires`).
    Rfc3339,
    /// Unix time in seconds (RFC 7662 `exp`).
    UnixSeconds,
    /// Unix time in milliseconds.
    UnixMillis,
}

/// Where the expiry is and how it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiryMapping {
    pub pointer: String,
    pub format: ExpiryFormat,
}

/// Pointers from a provider response to identity fields.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResponseMapping {
    /// When given and false, the token is not active (RFC 7662 `/active == true`).
    pub active: Option<Predicate>,
    /// Tried in order; the first present one is the subject. Required.
    pub subject: Vec<String>,
    pub session_id: Option<String>,
    /// A JSON array of strings, or one space-delimited string.
    pub scopes: Option<String>,
    pub expires: Option<ExpiryMapping>,
    /// A JSON array of addresses / CIDR blocks.
    pub ip_restrict: Option<String>,
    /// Each pointer may hold a string or an array of strings; all are collected, in order.
    pub organizations: Vec<String>,
}

impl ResponseMapping {
    /// Maps a parsed 2xx response to a resolution, as seen at `now`.
    pub fn apply(&self, doc: &Value, now: SystemTime) -> Result<Resolution, ProviderError> {
        if let Some(active) = &self.active {
            if !active.holds(doc) {
                return Ok(Resolution::Invalid(InvalidReason::Inactive));
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
        let identity = Identity {
            subject,
            session_id: optional(doc, self.session_id.as_deref(), scalar_string)?,
            scopes: optional(doc, self.scopes.as_deref(), scopes)?.unwrap_or_default(),
            expires_at: match &self.expires {
                Some(m) => optional(doc, Some(&m.pointer), |p, v| expiry(p, v, &m.format))?,
                None => None,
            },
            ip_restrict: optional(doc, self.ip_restrict.as_deref(), string_list)?
                .unwrap_or_default(),
            organizations: self.organizations(doc)?,
        };
        if identity.is_expired_at(now) {
            return Ok(Resolution::Invalid(InvalidReason::Expired));
        }
        Ok(Resolution::Valid(identity))
    }

    fn organizations(&self, doc: &Value) -> Result<Vec<String>, ProviderError> {
        let mut out: Vec<String> = Vec::new();
        for pointer in &self.organizations {
            let Some(value) = present(doc, pointer) else {
                continue;
            };
            let items = match value {
                Value::Array(_) => string_list(pointer, value)?,
                _ => vec![scalar_string(pointer, value)?],
            };
            for item in items {
                if !item.is_empty() && !out.contains(&item) {
                    out.push(item);
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

fn expiry(pointer: &str, v: &Value, format: &ExpiryFormat) -> Result<SystemTime, ProviderError> {
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
            active: Some(Predicate::equals("/active", json!(true))),
            subject: vec!["/sub".into(), "/client_id".into()],
            session_id: Some("/jti".into()),
            scopes: Some("/scope".into()),
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
        assert_eq!(id.subject, "u1");
        assert_eq!(id.session_id.as_deref(), Some("s1"));
        assert_eq!(id.scopes, ["a", "b:c"]);
        assert_eq!(id.expires_unix(), Some(1_700_000_100));
    }

    #[test]
    fn decisions_and_failures() {
        let m = introspection();
        let table: [(Value, Result<&str, &str>); 9] = [
            (json!({"active": false}), Ok("inactive")),
            (json!({"active": "true", "sub": "u"}), Ok("inactive")),
            (json!({}), Ok("inactive")),
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
        assert_eq!(id.subject, "42");
        assert_eq!(id.organizations, ["o1", "o2"]);
        assert_eq!(id.ip_restrict, ["10.0.0.0/24"]);
        assert_eq!(id.expires_unix(), Some(1_893_456_000));
        let bad = json!({"u": "x", "orgs": [1.5]});
        assert!(
            matches!(m.apply(&bad, now()), Err(ProviderError::Mapping { pointer, .. }) if pointer == "/orgs/0")
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
        assert_eq!(
            expiry("/e", &json!(1_700_000_000_500u64), &ms).unwrap(),
            UNIX_EPOCH + Duration::from_millis(1_700_000_000_500)
        );
        assert!(expiry("/e", &json!(-5), &secs).is_err());
        assert!(expiry("/e", &json!(true), &secs).is_err());
        assert!(expiry("/e", &json!("2030-01-01"), &ExpiryFormat::Rfc3339).is_err());
    }
}
