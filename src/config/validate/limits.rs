//! `rate_limits:` — named policies (key, rate, burst, tiers, mode) — and each route's
//! `rate_limits:` list, checked against what the route can key by.

use super::*;
use crate::config::file::{RateLimitFile, RateLimitHeadersFile, RateLimitTierFile};
use crate::limits::{LimitKey, LimitMode, LimitSpec, Rate, Tier, TierWhen, DEFAULT_MAX_KEYS};

/// Burst sizes above this are surely a typo (a million requests at once).
const MAX_BURST: u32 = 1_000_000;

/// Every policy under `rate_limits:`, by name (a broken one is reported and left out).
pub(super) fn rate_limits(file: &FileConfig, errs: &mut Errors) -> BTreeMap<String, LimitSpec> {
    let mut out = BTreeMap::new();
    for (name, p) in &file.rate_limits {
        let path = format!("rate_limits.{name}");
        if let Some(spec) = errs.keep(policy(&path, name, p)) {
            out.insert(name.clone(), spec);
        }
    }
    out
}

/// With cluster-wide limits, every tier's interval is at least a microsecond: Redis
/// counts on its microsecond clock (a faster rate per key would never be limited there).
pub(super) fn fit_cluster(
    cluster: &Option<Option<crate::cluster::ClusterSettings>>,
    specs: &BTreeMap<String, LimitSpec>,
    errs: &mut Errors,
) {
    if !matches!(cluster, Some(Some(c)) if c.rate_limits.is_some()) {
        return;
    }
    for (name, spec) in specs {
        for (i, tier) in spec.tiers.iter().enumerate() {
            if tier.rate.interval() >= std::time::Duration::from_micros(1) {
                continue;
            }
            let path = match tier.when {
                Some(_) => format!("rate_limits.{name}.tiers[{i}].rate"),
                None => format!("rate_limits.{name}.rate"),
            };
            errs.add(
                path,
                "faster than 1,000,000 requests a second per key: cluster-wide limits count on Redis' microsecond clock (set cluster.rate_limits: false to count per replica)",
            );
        }
    }
}

fn policy(path: &str, name: &str, p: &RateLimitFile) -> Result<LimitSpec> {
    // The name is a metric label and a quoted string in the RateLimit fields.
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(ConfigError::at(
            path,
            "a policy name is letters, digits, `-`, `_` and `.` (it is sent in the RateLimit fields)",
        ));
    }
    let key = match &p.key {
        Some(k) => limit_key(&format!("{path}.key"), k)?,
        None => LimitKey::Subject,
    };
    let mut tiers = Vec::with_capacity(p.tiers.len() + 1);
    for (i, t) in p.tiers.iter().enumerate() {
        tiers.push(tier(&format!("{path}.tiers[{i}]"), i, t)?);
    }
    let rate = rate(&format!("{path}.rate"), &p.rate)?;
    tiers.push(Tier {
        name: "default".into(),
        when: None,
        rate,
        burst: burst(&format!("{path}.burst"), p.burst, rate)?,
    });
    let max_keys = p.max_keys.unwrap_or(DEFAULT_MAX_KEYS);
    if max_keys == 0 {
        return Err(ConfigError::at(
            format!("{path}.max_keys"),
            "must be at least 1 (it bounds the memory the policy's counters take)",
        ));
    }
    Ok(LimitSpec {
        name: name.into(),
        key,
        tiers,
        mode: match p.mode {
            Some(ModeFile::Report) => LimitMode::Report,
            Some(ModeFile::Enforce) | None => LimitMode::Enforce,
        },
        headers_always: p.headers == Some(RateLimitHeadersFile::Always),
        max_keys,
    })
}

fn limit_key(path: &str, text: &str) -> Result<LimitKey> {
    let named = |kind: &str, rest: &str| -> Result<String> {
        if rest.is_empty() {
            return Err(ConfigError::at(
                path,
                format!("`{kind}:` needs a name after the colon"),
            ));
        }
        Ok(rest.to_string())
    };
    Ok(match text.split_once(':') {
        None => match text {
            "subject" => LimitKey::Subject,
            "session" => LimitKey::Session,
            "organization" => LimitKey::Organization,
            "token" => LimitKey::Token,
            "client_address" => LimitKey::ClientAddress,
            _ => {
                return Err(ConfigError::at(
                    path,
                    format!("{text:?} is not a key: use subject, session, organization, token, client_address, header:<name>, claim:<name> or param:<name>"),
                ))
            }
        },
        Some(("header", h)) => {
            let h = named("header", h)?;
            if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                return Err(ConfigError::at(path, format!("{h:?} is not a header name")));
            }
            LimitKey::Header(h.to_ascii_lowercase())
        }
        Some(("claim", c)) => LimitKey::Claim(named("claim", c)?),
        Some(("param", p)) => LimitKey::Param(named("param", p)?),
        Some((kind, _)) => {
            return Err(ConfigError::at(
                path,
                format!("`{kind}:` is not a key kind: use header:<name>, claim:<name> or param:<name>"),
            ))
        }
    })
}

fn rate(path: &str, text: &str) -> Result<Rate> {
    Rate::parse(text).map_err(|e| ConfigError::at(path, e))
}

fn burst(path: &str, burst: Option<u32>, rate: Rate) -> Result<u32> {
    match burst {
        None => Ok(rate.count.min(MAX_BURST)),
        Some(0) => Err(ConfigError::at(
            path,
            "must be at least 1 (a burst of 1 spaces requests evenly)",
        )),
        Some(b) if b > MAX_BURST => Err(ConfigError::at(
            path,
            format!("at most {MAX_BURST} requests at once"),
        )),
        Some(b) => Ok(b),
    }
}

fn tier(path: &str, i: usize, t: &RateLimitTierFile) -> Result<Tier> {
    let when = match (&t.scope, &t.claim) {
        (Some(scope), None) if !scope.is_empty() => TierWhen::Scope(scope.clone()),
        (None, Some(claim)) if claim.len() == 1 => {
            let (name, equals) = claim.iter().next().expect("one entry");
            TierWhen::Claim {
                name: name.clone(),
                equals: equals.clone(),
            }
        }
        _ => {
            return Err(ConfigError::at(
                path,
                "a tier is for identities with one `scope: <scope>` or one `claim: { <name>: <value> }`",
            ))
        }
    };
    let rate = rate(&format!("{path}.rate"), &t.rate)?;
    Ok(Tier {
        name: t
            .name
            .clone()
            .unwrap_or_else(|| format!("tier{}", i + 1))
            .into(),
        when: Some(when),
        rate,
        burst: burst(&format!("{path}.burst"), t.burst, rate)?,
    })
}

/// The claims rate limits read: `key: claim:<name>` and tiers' `claim:` (providers keep
/// them in cached identities even when they are not forwarded).
pub(super) fn claims_read(file: &FileConfig) -> Vec<String> {
    let mut out = Vec::new();
    for p in file.rate_limits.values() {
        if let Some(c) = p.key.as_deref().and_then(|k| k.strip_prefix("claim:")) {
            out.push(c.to_string());
        }
        for t in &p.tiers {
            out.extend(t.claim.iter().flat_map(|c| c.keys().cloned()));
        }
    }
    out
}

/// A route's `rate_limits:` list: each a defined policy whose key the route can read.
pub(super) fn route_limits(
    path: &str,
    r: &RouteFile,
    route: &RouteSpec,
    defined: &BTreeMap<String, LimitSpec>,
    file: &FileConfig,
) -> Result<Vec<LimitSpec>> {
    let Some(names) = &r.rate_limits else {
        return Ok(Vec::new());
    };
    let mut out: Vec<LimitSpec> = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let at = format!("{path}.rate_limits[{i}]");
        let Some(spec) = defined.get(name) else {
            if file.rate_limits.contains_key(name) {
                continue; // its own definition's error is reported
            }
            let known: Vec<&str> = defined.keys().map(String::as_str).collect();
            return Err(ConfigError::at(
                at,
                format!(
                    "no rate limit named `{name}` (defined under `rate_limits`: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        };
        if out.iter().any(|s| s.name == spec.name) {
            return Err(ConfigError::at(at, format!("`{name}` is listed twice")));
        }
        let authenticated = !route.providers.is_empty();
        if !authenticated && (spec.key.needs_identity() || spec.tiers.len() > 1) {
            return Err(ConfigError::at(
                at,
                format!(
                    "`{name}` counts by {}{}, but this route has `auth: none` (no identity): key it by client_address, a header or a path parameter",
                    spec.key.describe(),
                    if spec.tiers.len() > 1 { " with tiers" } else { "" }
                ),
            ));
        }
        match &spec.key {
            LimitKey::Organization if route.policy.organization.is_none() => {
                return Err(ConfigError::at(
                    at,
                    format!("`{name}` counts by organization: the route needs `require_organization` (the organization the request is for), or key it by param:<name>"),
                ))
            }
            LimitKey::Param(p) if !route.path.param_names().contains(&p.as_str()) => {
                return Err(ConfigError::at(
                    at,
                    format!("`{name}` counts by param:{p}, but this route's path has no `{{{p}}}`"),
                ))
            }
            _ => {}
        }
        out.push(spec.clone());
    }
    Ok(out)
}
