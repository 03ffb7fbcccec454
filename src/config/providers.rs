//! `providers.<name>`: dispatch on `kind`; the `static` kind's token table. The HTTP kinds
//! are built in [`super::http_provider`].

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::file::{ClientCertificateFile, ProviderFile, StaticFile, StaticTokenFile};
use super::{secret, ConfigError};
use crate::identity::provider::static_tokens::token_digest;
use crate::identity::provider::ProviderSpec;
use crate::identity::{Claim, Identity, IdentityParts};
use crate::policy::net::IpNet;

type Result<T> = std::result::Result<T, ConfigError>;

/// Builds the provider at `path` (e.g. `providers.idp`); which keys its kind takes was
/// settled when the entry was read (each kind's struct refuses the others).
pub fn provider(path: &str, p: &ProviderFile, base_dir: &Path) -> Result<ProviderSpec> {
    match p {
        ProviderFile::Static(s) => static_provider(path, s, base_dir),
        ProviderFile::ClientCertificate(c) => client_certificate_provider(path, c),
        ProviderFile::Jwt(j) => super::jwt_provider::build(path, j, base_dir),
        ProviderFile::Endpoint(kind, e) => super::http_provider::build(path, *kind, e, base_dir),
    }
}

fn static_provider(path: &str, p: &StaticFile, base_dir: &Path) -> Result<ProviderSpec> {
    let tokens = p
        .tokens
        .as_ref()
        .ok_or_else(|| ConfigError::at(format!("{path}.tokens"), "required for kind `static`"))?;
    if tokens.is_empty() {
        return Err(ConfigError::at(
            format!("{path}.tokens"),
            "list at least one token",
        ));
    }
    let mut entries = Vec::with_capacity(tokens.len());
    let mut seen = HashSet::new();
    for (i, t) in tokens.iter().enumerate() {
        let tpath = format!("{path}.tokens[{i}]");
        let digest = static_digest(&tpath, t, base_dir)?;
        if !seen.insert(digest) {
            return Err(ConfigError::at(tpath, "the same token is listed twice"));
        }
        entries.push((digest, static_identity(&format!("{tpath}.identity"), t)?));
    }
    Ok(ProviderSpec::Static(entries))
}

fn client_certificate_provider(path: &str, p: &ClientCertificateFile) -> Result<ProviderSpec> {
    let allow_unlisted = p.allow_unlisted.unwrap_or(false);
    let list = p.clients.as_deref().unwrap_or_default();
    if list.is_empty() && !allow_unlisted {
        return Err(ConfigError::at(
            format!("{path}.clients"),
            "list the certificate ids this provider accepts (or set allow_unlisted: true)",
        ));
    }
    let mut clients = Vec::with_capacity(list.len());
    for (i, c) in list.iter().enumerate() {
        let key = format!("{path}.clients[{i}]");
        if c.id.is_empty() || !c.id.bytes().all(|b| (0x21..0x7f).contains(&b)) {
            return Err(ConfigError::at(
                format!("{key}.id"),
                "a certificate id: its URI SAN (spiffe://…), DNS SAN or CN, printable ASCII",
            ));
        }
        if clients.iter().any(|(id, _)| id == &c.id) {
            return Err(ConfigError::at(format!("{key}.id"), "listed twice"));
        }
        let identity: Identity = IdentityParts {
            subject: c.id.clone(),
            scopes: c.scopes.clone(),
            organizations: c.organizations.clone(),
            ..Default::default()
        }
        .into();
        clients.push((c.id.clone(), identity));
    }
    Ok(ProviderSpec::ClientCertificate {
        clients,
        allow_unlisted,
    })
}

fn static_digest(path: &str, t: &StaticTokenFile, base_dir: &Path) -> Result<[u8; 32]> {
    let given = [
        t.token.is_some(),
        t.token_file.is_some(),
        t.token_sha256.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(ConfigError::at(
            path,
            "give exactly one of `token: ${ENV_VAR}`, `token_file` or `token_sha256`",
        ));
    }
    if let Some(hex_digest) = &t.token_sha256 {
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_digest.trim(), &mut out).map_err(|_| {
            ConfigError::at(
                format!("{path}.token_sha256"),
                "must be 64 hex characters (e.g. `printf %s \"$TOKEN\" | sha256sum`)",
            )
        })?;
        return Ok(out);
    }
    let token = secret::resolve(
        &format!("{path}.token"),
        t.token.as_deref(),
        t.token_file.as_deref(),
        base_dir,
    )?
    .expect("one of token / token_file was given");
    Ok(token_digest(token.expose()))
}

fn static_identity(path: &str, t: &StaticTokenFile) -> Result<Identity> {
    let id = &t.identity;
    if id.subject.is_empty() {
        return Err(ConfigError::at(
            format!("{path}.subject"),
            "cannot be empty",
        ));
    }
    let expires_at = match &id.expires_at {
        None => None,
        Some(text) => {
            let t =
                time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                    .map_err(|_| {
                    ConfigError::at(
                        format!("{path}.expires_at"),
                        format!("{text:?} is not an RFC 3339 time such as 2030-01-01T00:00:00Z"),
                    )
                })?;
            let secs = u64::try_from(t.unix_timestamp()).unwrap_or(0);
            Some(UNIX_EPOCH + Duration::from_secs(secs))
        }
    };
    for (i, entry) in id.ip_restrict.iter().enumerate() {
        IpNet::parse(entry)
            .map_err(|e| ConfigError::at(format!("{path}.ip_restrict[{i}]"), e.to_string()))?;
    }
    let mut claims = Vec::with_capacity(id.claims.len());
    for (name, value) in &id.claims {
        let key = format!("{path}.claims.{name}");
        // A name with `_` cannot be a header name: such a claim is for rules only.
        let forward = !name.contains('_');
        crate::config::http_provider::check_claim_name(&key, name, forward)?;
        let claim = match value {
            serde_json::Value::String(s) => Claim::text(name.as_str(), s.as_str()),
            serde_json::Value::Null => {
                return Err(ConfigError::at(key, "a claim needs a value (not null)"))
            }
            other => Claim {
                json: true,
                ..Claim::text(name.as_str(), other.to_string())
            },
        };
        let claim = Claim { forward, ..claim };
        if forward && claim.value.chars().any(char::is_control) {
            return Err(ConfigError::at(
                key,
                "one line of text (it is forwarded as a header)",
            ));
        }
        claims.push(claim);
    }
    let identity: Identity = IdentityParts {
        subject: id.subject.clone(),
        session_id: id.session_id.clone(),
        scopes: id.scopes.clone(),
        expires_at,
        ip_restrict: id.ip_restrict.clone(),
        organizations: id.organizations.clone(),
        claims,
    }
    .into();
    if identity.is_expired_at(SystemTime::now()) {
        tracing::warn!(
            key = path,
            "static identity has already expired; its token is refused"
        );
    }
    Ok(identity)
}
