//! The HTTP provider kinds (`http`, `bitgo`, `rfc7662`, `krystal`, `prefactor`, `enos`,
//! `userinfo`): the kind's preset, with every key the config gives replacing the preset's
//! value for that key (`response.claims` adds to the preset's claims, replacing those of
//! the same name), checked and turned into an [`HttpProviderSpec`].

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::file::{
    ClaimFile, CredentialFile, EndpointFile, ExpiresFile, ExpiryFormatFile, IfMissing, OneOrMany,
    PredicateFile, ProviderKind, ResponseFile, RuleFile, TokenIn,
};
use super::{secret, ConfigError};
use crate::identity::provider::http::{Credential, HttpProviderSpec, TokenPlacement};
use crate::identity::provider::mapping::{
    ClaimMapping, ExpiryFormat, ExpiryMapping, Predicate, Rule, Test,
};
use crate::identity::provider::presets::Preset;
use crate::identity::provider::ProviderSpec;

type Result<T> = std::result::Result<T, ConfigError>;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Request headers the config may not set: framing, routing, and `Authorization` (which
/// is the token's or the credential's).
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
];

/// Builds the HTTP provider at `path` from its preset and the config's overrides.
pub fn build(
    path: &str,
    provider_kind: ProviderKind,
    p: &EndpointFile,
    base_dir: &Path,
) -> Result<ProviderSpec> {
    let kind = provider_kind.as_str();
    let preset = Preset::for_kind(provider_kind)
        .ok_or_else(|| ConfigError::at(format!("{path}.kind"), "not an HTTP provider kind"))?;

    let url = p
        .url
        .clone()
        .ok_or_else(|| ConfigError::at(format!("{path}.url"), "required for this kind"))?;
    let method = match &p.method {
        None => preset.method.clone(),
        Some(m) => match m.to_ascii_uppercase().as_str() {
            "GET" => reqwest::Method::GET,
            "POST" => reqwest::Method::POST,
            _ => {
                return Err(ConfigError::at(
                    format!("{path}.method"),
                    format!("{m:?}: use GET or POST"),
                ))
            }
        },
    };
    let token = match &p.token {
        None => preset.token.clone(),
        Some(t) => placement(&format!("{path}.token"), t.location, t.name.as_deref())?,
    };
    check_url(&format!("{path}.url"), &url, &token)?;

    let mut headers = preset.headers.clone();
    for (name, value) in p.headers.iter().flatten() {
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        headers.push((name.clone(), value.clone()));
    }
    let headers = headers
        .into_iter()
        .map(|(name, value)| header(&format!("{path}.headers.{name}"), &name, &value))
        .collect::<Result<Vec<_>>>()?;

    let mut body = preset.body.clone();
    if let Some(extra) = &p.body {
        if !token.uses_body() {
            return Err(ConfigError::at(
                format!("{path}.body"),
                "body fields are sent only when `token.in` is `form` or `json`",
            ));
        }
        for (k, v) in extra {
            body.retain(|(n, _)| n != k);
            body.push((k.clone(), v.clone()));
        }
    }

    let credential = credential(path, provider_kind, p, base_dir)?;
    if matches!(
        provider_kind,
        ProviderKind::Krystal | ProviderKind::Prefactor
    ) && matches!(credential, Credential::None)
    {
        return Err(ConfigError::at(
            format!("{path}.credential"),
            format!("required: {kind} is called with the gateway's own API key (`bearer: ${{ENV_VAR}}`)"),
        ));
    }
    if !matches!(credential, Credential::None) && token.uses_authorization() {
        return Err(ConfigError::at(
            format!("{path}.credential"),
            "the token already occupies the Authorization header; send it elsewhere (`token.in`)",
        ));
    }

    let mut outcome = preset.outcome.clone();
    let mut mapping = preset.mapping.clone();
    if let Some(r) = &p.response {
        apply_response(&format!("{path}.response"), r, &mut outcome, &mut mapping)?;
    }
    if mapping.subject.is_empty() {
        return Err(ConfigError::at(
            format!("{path}.response.subject"),
            "required: the JSON pointer of the subject in the provider's answer",
        ));
    }

    let timeout = p.timeout.map_or(DEFAULT_TIMEOUT, |d| d.0);
    if timeout.is_zero() {
        return Err(ConfigError::at(
            format!("{path}.timeout"),
            "must be more than 0",
        ));
    }
    let max_response_bytes = p.max_response_bytes.unwrap_or(DEFAULT_MAX_RESPONSE_BYTES);
    if max_response_bytes == 0 {
        return Err(ConfigError::at(
            format!("{path}.max_response_bytes"),
            "must be at least 1",
        ));
    }
    let spec = HttpProviderSpec {
        kind,
        method,
        url,
        token,
        headers,
        body,
        credential,
        outcome,
        mapping,
        timeout,
        max_response_bytes,
        extra_roots: ca_roots(path, p.ca_file.as_deref(), base_dir)?,
    };
    Ok(ProviderSpec::Http(spec))
}

fn placement(path: &str, location: TokenIn, name: Option<&str>) -> Result<TokenPlacement> {
    let needs_name = |what: &str| {
        name.filter(|n| !n.is_empty())
            .map(str::to_string)
            .ok_or_else(|| {
                ConfigError::at(format!("{path}.name"), format!("required: the {what} name"))
            })
    };
    let no_name = || match name {
        Some(_) => Err(ConfigError::at(
            format!("{path}.name"),
            "not used with this `in`",
        )),
        None => Ok(()),
    };
    Ok(match location {
        TokenIn::Bearer => no_name().map(|_| TokenPlacement::Bearer)?,
        TokenIn::Authorization => no_name().map(|_| TokenPlacement::Authorization)?,
        TokenIn::Path => no_name().map(|_| TokenPlacement::Path)?,
        TokenIn::Header => {
            let n = needs_name("header")?;
            let h = http::HeaderName::from_bytes(n.as_bytes()).map_err(|_| {
                ConfigError::at(
                    format!("{path}.name"),
                    format!("{n:?} is not a header name"),
                )
            })?;
            TokenPlacement::Header(h)
        }
        TokenIn::Query => TokenPlacement::Query(needs_name("query parameter")?),
        TokenIn::Form => TokenPlacement::Form(name.unwrap_or("token").to_string()),
        TokenIn::Json => TokenPlacement::Json(name.unwrap_or("token").to_string()),
    })
}

fn check_url(path: &str, url: &str, token: &TokenPlacement) -> Result<()> {
    let has_placeholder = url.contains("{token}");
    let parsed = reqwest::Url::parse(&url.replace("{token}", "token"))
        .map_err(|e| ConfigError::at(path, format!("not a valid URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(ConfigError::at(
            path,
            "must be an http:// or https:// URL with a host",
        ));
    }
    match (token == &TokenPlacement::Path, has_placeholder) {
        (true, false) => Err(ConfigError::at(
            path,
            "`token.in: path` needs `{token}` in the URL path",
        )),
        (false, true) => Err(ConfigError::at(
            path,
            "`{token}` in the URL needs `token: { in: path }`",
        )),
        (true, true) if !placeholder_in_path(url) => Err(ConfigError::at(
            path,
            "`{token}` may appear only in the URL path",
        )),
        _ => Ok(()),
    }
}

/// True when every `{token}` sits between the authority and the query/fragment.
fn placeholder_in_path(url: &str) -> bool {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let path_start = url[after_scheme..]
        .find('/')
        .map_or(url.len(), |i| after_scheme + i);
    let path_end = url[path_start..]
        .find(['?', '#'])
        .map_or(url.len(), |i| path_start + i);
    url.match_indices("{token}")
        .all(|(i, _)| i >= path_start && i < path_end)
}

fn header(path: &str, name: &str, value: &str) -> Result<(http::HeaderName, http::HeaderValue)> {
    let n = http::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| ConfigError::at(path, "not a valid header name"))?;
    if RESERVED_HEADERS.contains(&n.as_str()) {
        return Err(ConfigError::at(
            path,
            "set by the gateway (use `credential` for the gateway's own key)",
        ));
    }
    let v = http::HeaderValue::from_str(value)
        .map_err(|_| ConfigError::at(path, "not a valid header value"))?;
    Ok((n, v))
}

fn credential(
    path: &str,
    kind: ProviderKind,
    p: &EndpointFile,
    base_dir: &Path,
) -> Result<Credential> {
    let client = &p.client_auth;
    match (&p.credential, client.given()) {
        (Some(_), true) => Err(ConfigError::at(
            format!("{path}.credential"),
            "give either `credential` or `client_id`/`client_secret`, not both",
        )),
        (Some(c), false) => credential_block(&format!("{path}.credential"), c, base_dir),
        (None, true) => {
            let user = client.client_id.clone().ok_or_else(|| {
                ConfigError::at(format!("{path}.client_id"), "required with client_secret")
            })?;
            let password = secret::resolve(
                &format!("{path}.client_secret"),
                client.client_secret.as_deref(),
                client.client_secret_file.as_deref(),
                base_dir,
            )?
            .ok_or_else(|| {
                ConfigError::at(
                    format!("{path}.client_secret"),
                    "required: give `client_secret: ${ENV_VAR}` or `client_secret_file`",
                )
            })?;
            Ok(Credential::Basic { user, password })
        }
        (None, false) if kind == ProviderKind::Rfc7662 => Err(ConfigError::at(
            format!("{path}.client_id"),
            "required: introspection endpoints authenticate the gateway (HTTP Basic), or give `credential`",
        )),
        (None, false) => Ok(Credential::None),
    }
}

fn credential_block(path: &str, c: &CredentialFile, base_dir: &Path) -> Result<Credential> {
    let bearer = secret::resolve(
        &format!("{path}.bearer"),
        c.bearer.as_deref(),
        c.bearer_file.as_deref(),
        base_dir,
    )?;
    let password = secret::resolve(
        &format!("{path}.password"),
        c.password.as_deref(),
        c.password_file.as_deref(),
        base_dir,
    )?;
    match (bearer, &c.username, password) {
        (Some(key), None, None) => Ok(Credential::Bearer(key)),
        (None, Some(user), Some(password)) => Ok(Credential::Basic {
            user: user.clone(),
            password,
        }),
        (None, Some(_), None) => Err(ConfigError::at(
            format!("{path}.password"),
            "required with `username`",
        )),
        (None, None, Some(_)) => Err(ConfigError::at(
            format!("{path}.username"),
            "required with `password`",
        )),
        (None, None, None) => Err(ConfigError::at(
            path,
            "give `bearer` (or `bearer_file`), or `username` with `password` (or `password_file`)",
        )),
        (Some(_), _, _) => Err(ConfigError::at(
            path,
            "give either a bearer key or username/password, not both",
        )),
    }
}

fn pointer(path: &str, p: &str) -> Result<String> {
    if p.is_empty() || p.starts_with('/') {
        Ok(p.to_string())
    } else {
        Err(ConfigError::at(
            path,
            format!("{p:?} is not a JSON pointer: write it like /session/user"),
        ))
    }
}

/// One pointer or a non-empty list of pointers (tried in order).
fn pointer_list(path: &str, ps: &OneOrMany) -> Result<Vec<String>> {
    let list = match ps {
        OneOrMany::One(p) => vec![p.clone()],
        OneOrMany::Many(ps) => ps.clone(),
    };
    if list.is_empty() {
        return Err(ConfigError::at(path, "cannot be empty"));
    }
    list.iter().map(|p| pointer(path, p)).collect()
}

fn predicate(
    path: &str,
    ptr: &str,
    equals: &Option<Value>,
    one_of: &Option<Vec<Value>>,
    not_one_of: &Option<Vec<Value>>,
    if_missing: Option<IfMissing>,
) -> Result<Predicate> {
    let test = match (equals, one_of, not_one_of) {
        (Some(v), None, None) => Test::OneOf(vec![v.clone()]),
        (None, Some(vs), None) => Test::OneOf(vs.clone()),
        (None, None, Some(vs)) => Test::NoneOf(vs.clone()),
        _ => {
            return Err(ConfigError::at(
                path,
                "give exactly one of `equals`, `one_of`, `not_one_of`",
            ))
        }
    };
    Ok(Predicate {
        pointer: pointer(&format!("{path}.pointer"), ptr)?,
        test,
        if_missing: if_missing == Some(IfMissing::Pass),
    })
}

fn predicates(path: &str, list: &[PredicateFile]) -> Result<Vec<Predicate>> {
    list.iter()
        .enumerate()
        .map(|(i, p)| {
            predicate(
                &format!("{path}[{i}]"),
                &p.pointer,
                &p.equals,
                &p.one_of,
                &p.not_one_of,
                p.if_missing,
            )
        })
        .collect()
}

fn rules(path: &str, list: &[RuleFile]) -> Result<Vec<Rule>> {
    list.iter()
        .enumerate()
        .map(|(i, r)| {
            let rpath = format!("{path}[{i}]");
            let predicates = match &r.pointer {
                Some(ptr) => vec![predicate(
                    &rpath,
                    ptr,
                    &r.equals,
                    &r.one_of,
                    &r.not_one_of,
                    r.if_missing,
                )?],
                None if r.equals.is_some() || r.one_of.is_some() || r.not_one_of.is_some() => {
                    return Err(ConfigError::at(
                        format!("{rpath}.pointer"),
                        "required with equals / one_of / not_one_of",
                    ))
                }
                None => Vec::new(),
            };
            let statuses = r.status.clone().unwrap_or_default();
            if statuses.iter().any(|s| !(100..=599).contains(s)) {
                return Err(ConfigError::at(
                    format!("{rpath}.status"),
                    "HTTP statuses are 100..599",
                ));
            }
            if statuses.is_empty() && predicates.is_empty() {
                return Err(ConfigError::at(
                    rpath,
                    "a rule needs `status` and/or a `pointer` check",
                ));
            }
            Ok(Rule {
                statuses,
                predicates,
            })
        })
        .collect()
}

fn expires(path: &str, e: &ExpiresFile) -> Result<ExpiryMapping> {
    let format = match (e.format, &e.base) {
        (ExpiryFormatFile::LifetimeSeconds, base) => ExpiryFormat::LifetimeSeconds {
            base: base
                .as_deref()
                .map(|b| pointer(&format!("{path}.base"), b))
                .transpose()?,
        },
        (_, Some(_)) => {
            return Err(ConfigError::at(
                format!("{path}.base"),
                "only used with `format: lifetime_seconds`",
            ))
        }
        (ExpiryFormatFile::Rfc3339, None) => ExpiryFormat::Rfc3339,
        (ExpiryFormatFile::UnixSeconds, None) => ExpiryFormat::UnixSeconds,
        (ExpiryFormatFile::UnixMillis, None) => ExpiryFormat::UnixMillis,
    };
    Ok(ExpiryMapping {
        pointer: pointer(&format!("{path}.pointer"), &e.pointer)?,
        format,
    })
}

pub(super) fn apply_response(
    path: &str,
    r: &ResponseFile,
    outcome: &mut crate::identity::provider::mapping::AnswerRules,
    mapping: &mut crate::identity::provider::mapping::ResponseMapping,
) -> Result<()> {
    if let Some(list) = &r.invalid_when {
        outcome.invalid_when = rules(&format!("{path}.invalid_when"), list)?;
    }
    if let Some(list) = &r.broken_when {
        outcome.broken_when = rules(&format!("{path}.broken_when"), list)?;
    }
    if let Some(list) = &r.success {
        outcome.success = predicates(&format!("{path}.success"), list)?;
    }
    if let Some(list) = &r.active {
        mapping.active = predicates(&format!("{path}.active"), list)?;
    }
    if let Some(subject) = &r.subject {
        mapping.subject = pointer_list(&format!("{path}.subject"), subject)?;
    }
    let single = |key: &str, v: &Option<String>| -> Result<Option<String>> {
        v.as_deref()
            .map(|p| pointer(&format!("{path}.{key}"), p))
            .transpose()
    };
    if let Some(ps) = &r.session_id {
        mapping.session_id = pointer_list(&format!("{path}.session_id"), ps)?;
    }
    if let Some(ps) = &r.scopes {
        mapping.scopes = pointer_list(&format!("{path}.scopes"), ps)?;
    }
    if r.ip_restrict.is_some() {
        mapping.ip_restrict = single("ip_restrict", &r.ip_restrict)?;
    }
    if let Some(e) = &r.expires {
        mapping.expires = Some(expires(&format!("{path}.expires"), e)?);
    }
    if let Some(orgs) = &r.organizations {
        mapping.organizations = orgs
            .iter()
            .enumerate()
            .map(|(i, p)| pointer(&format!("{path}.organizations[{i}]"), p))
            .collect::<Result<_>>()?;
    }
    if let Some(claims) = &r.claims {
        for (name, c) in claims {
            let key = format!("{path}.claims.{name}");
            let claim = claim(&key, name, c)?;
            // One written with a preset's name replaces the preset's.
            mapping.claims.retain(|m| m.name != *name);
            // Header names ignore case: two forwarded claims spelled alike would make one
            // header.
            if let Some(other) = mapping
                .claims
                .iter()
                .find(|m| m.forward && claim.forward && m.name.eq_ignore_ascii_case(name))
            {
                return Err(ConfigError::at(
                    key,
                    format!(
                        "claims `{}` and `{name}` would both be sent as one header (header names ignore case); rename one",
                        other.name
                    ),
                ));
            }
            mapping.claims.push(claim);
        }
    }
    Ok(())
}

/// `<path>.ca_file`'s certificates (none without one).
pub(super) fn ca_roots(
    path: &str,
    file: Option<&str>,
    base_dir: &Path,
) -> Result<Vec<reqwest::Certificate>> {
    Ok(ca_bundle(path, file, base_dir)?.map_or_else(Vec::new, |(_, certs)| certs))
}

/// `<path>.ca_file` read and checked (a PEM bundle of at least one certificate): its bytes
/// and its certificates; `None` without one.
pub(super) fn ca_bundle(
    path: &str,
    file: Option<&str>,
    base_dir: &Path,
) -> Result<Option<(Vec<u8>, Vec<reqwest::Certificate>)>> {
    let Some(file) = file else {
        return Ok(None);
    };
    let key = format!("{path}.ca_file");
    let full = base_dir.join(file);
    let pem = std::fs::read(&full)
        .map_err(|e| ConfigError::at(&key, format!("cannot read {}: {e}", full.display())))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
        ConfigError::at(&key, format!("{} is not a PEM bundle: {e}", full.display()))
    })?;
    if certs.is_empty() {
        return Err(ConfigError::at(
            &key,
            format!("{} holds no certificate", full.display()),
        ));
    }
    Ok(Some((pem, certs)))
}

/// One `response.claims` entry, checked.
fn claim(key: &str, name: &str, c: &ClaimFile) -> Result<ClaimMapping> {
    let (pointer_text, forward, time) = match c {
        ClaimFile::Pointer(p) => (p, true, None),
        ClaimFile::Full(f) => (&f.pointer, f.forward.unwrap_or(true), f.time),
    };
    check_claim_name(key, name, forward)?;
    let time = match time {
        None => None,
        Some(ExpiryFormatFile::Rfc3339) => Some(ExpiryFormat::Rfc3339),
        Some(ExpiryFormatFile::UnixSeconds) => Some(ExpiryFormat::UnixSeconds),
        Some(ExpiryFormatFile::UnixMillis) => Some(ExpiryFormat::UnixMillis),
        Some(ExpiryFormatFile::LifetimeSeconds) => {
            return Err(ConfigError::at(
                format!("{key}.time"),
                "a claim's time is `rfc3339`, `unix_seconds` or `unix_millis`",
            ))
        }
    };
    let pointer_key = match c {
        ClaimFile::Pointer(_) => key.to_string(),
        ClaimFile::Full(_) => format!("{key}.pointer"),
    };
    Ok(ClaimMapping {
        name: name.to_string(),
        pointer: pointer(&pointer_key, pointer_text)?,
        time,
        forward,
    })
}

/// A claim name at `key`. Rules read it (`identity.claims.<name>`); a forwarded one is
/// also a header name (`<prefix>Claim-<name>`), and proxies such as nginx drop header
/// names with `_` by default, so a forwarded name has none.
pub(crate) fn check_claim_name(key: &str, name: &str, forward: bool) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        return Err(ConfigError::at(
            key,
            "claim names may use only letters, digits, `-` and `_`, at most 64",
        ));
    }
    if forward && name.contains('_') {
        return Err(ConfigError::at(
            key,
            "a forwarded claim's name becomes a header name, and proxies drop header names with `_` (nginx: underscores_in_headers off): use `-`, or `forward: false` for a claim only rules read",
        ));
    }
    Ok(())
}
