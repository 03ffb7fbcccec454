//! `kind: jwt`: checked settings for [`crate::identity::provider::jwt::JwtProvider`].

use std::path::Path;
use std::time::Duration;

use jsonwebtoken::Algorithm;

use super::file::JwtFile;
use super::http_provider::{apply_response, ca_roots};
use super::ConfigError;
use crate::identity::provider::jwt::{JwtSpec, KeySource};
use crate::identity::provider::mapping::{
    AnswerRules, ClaimMapping, ExpiryFormat, ExpiryMapping, ResponseMapping,
};
use crate::identity::provider::ProviderSpec;

type Result<T> = std::result::Result<T, ConfigError>;

/// The standard claims of an access token (RFC 9068 / RFC 7519), overridable by `response`.
fn default_mapping() -> ResponseMapping {
    ResponseMapping {
        subject: vec!["/sub".into()],
        session_id: vec!["/sid".into(), "/jti".into()],
        scopes: vec!["/scope".into(), "/scp".into()],
        expires: Some(ExpiryMapping {
            pointer: "/exp".into(),
            format: ExpiryFormat::UnixSeconds,
        }),
        // RFC 9068 §2.2 and OIDC claims rules ask about; kept only when a rule reads them.
        claims: vec![
            ClaimMapping::for_rules("client_id", "/client_id"),
            ClaimMapping::for_rules("roles", "/roles"),
            ClaimMapping::for_rules("groups", "/groups"),
            ClaimMapping::for_rules("entitlements", "/entitlements"),
            ClaimMapping::for_rules("acr", "/acr"),
            ClaimMapping::for_rules("amr", "/amr"),
            ClaimMapping::time_for_rules("auth_time", "/auth_time", ExpiryFormat::UnixSeconds),
        ],
        ..Default::default()
    }
}

/// Builds the JWT provider at `path`.
pub fn build(path: &str, p: &JwtFile, base_dir: &Path) -> Result<ProviderSpec> {
    let issuer =
        p.issuer.clone().filter(|i| !i.is_empty()).ok_or_else(|| {
            ConfigError::at(format!("{path}.issuer"), "required: the tokens' `iss`")
        })?;
    let audiences = p.audiences.clone().unwrap_or_default();
    if audiences.is_empty() {
        return Err(ConfigError::at(
            format!("{path}.audiences"),
            "required: the `aud` values this gateway accepts",
        ));
    }
    let names = p.algorithms.clone().unwrap_or_default();
    if names.is_empty() {
        return Err(ConfigError::at(
            format!("{path}.algorithms"),
            "required: an explicit allow-list such as [RS256, ES256, EdDSA]",
        ));
    }
    let mut algorithms = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let key = format!("{path}.algorithms[{i}]");
        let alg: Algorithm = name
            .parse()
            .map_err(|_| ConfigError::at(&key, format!("{name:?} is not a JWS algorithm")))?;
        if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
            return Err(ConfigError::at(
                key,
                "HMAC algorithms are not accepted: shared secrets invite algorithm confusion; use RS*/PS*/ES*/EdDSA",
            ));
        }
        algorithms.push(alg);
    }
    let http = |what: &str| {
        ConfigError::at(
            format!("{path}.{what}"),
            "give either `jwks_url` or `jwks_file`",
        )
    };
    let keys = match (&p.jwks_url, &p.jwks_file) {
        (Some(_), Some(_)) | (None, None) => return Err(http("jwks_url")),
        (Some(url), None) => {
            let parsed = reqwest::Url::parse(url).map_err(|e| {
                ConfigError::at(format!("{path}.jwks_url"), format!("not a valid URL: {e}"))
            })?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(ConfigError::at(
                    format!("{path}.jwks_url"),
                    "must be an http:// or https:// URL",
                ));
            }
            KeySource::Url {
                url: parsed,
                max_bytes: p.max_response_bytes.unwrap_or(256 * 1024),
                timeout: p.timeout.map_or(Duration::from_secs(5), |d| d.0),
                extra_roots: ca_roots(path, p.ca_file.as_deref(), base_dir)?,
            }
        }
        (None, Some(file)) => {
            let full = base_dir.join(file);
            let text = std::fs::read_to_string(&full).map_err(|e| {
                ConfigError::at(
                    format!("{path}.jwks_file"),
                    format!("cannot read {}: {e}", full.display()),
                )
            })?;
            let set = serde_json::from_str(&text).map_err(|e| {
                ConfigError::at(
                    format!("{path}.jwks_file"),
                    format!("not a JWKS document: {e}"),
                )
            })?;
            KeySource::Static(set)
        }
    };
    let mut mapping = default_mapping();
    if let Some(r) = &p.response {
        if r.invalid_when.is_some() || r.broken_when.is_some() || r.success.is_some() {
            return Err(ConfigError::at(
                format!("{path}.response"),
                "a jwt provider takes only mapping keys (subject, session_id, scopes, expires, ip_restrict, organizations, claims, active)",
            ));
        }
        apply_response(
            &format!("{path}.response"),
            r,
            &mut AnswerRules::default(),
            &mut mapping,
        )?;
    }
    Ok(ProviderSpec::Jwt(JwtSpec {
        issuer,
        audiences,
        algorithms,
        keys,
        refresh: p.jwks_refresh.map_or(Duration::from_secs(600), |d| d.0),
        min_refresh_interval: p
            .jwks_min_refresh_interval
            .map_or(Duration::from_secs(30), |d| d.0),
        leeway: p.leeway.map_or(Duration::from_secs(30), |d| d.0),
        mapping,
    }))
}
