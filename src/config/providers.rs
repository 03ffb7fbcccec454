//! `providers.<name>`: dispatch on `kind`; the `static` kind's token table. The HTTP kinds
//! are built in [`super::http_provider`].

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::file::{ProviderFile, ProviderKind, StaticTokenFile};
use super::{secret, ConfigError};
use crate::identity::provider::static_tokens::token_digest;
use crate::identity::provider::ProviderSpec;
use crate::identity::{Identity, IdentityParts};
use crate::policy::net::IpNet;

type Result<T> = std::result::Result<T, ConfigError>;

/// Builds the provider at `path` (e.g. `providers.idp`), after refusing, by name, any key
/// its kind does not take ([`super::file::kind_keys`]).
pub fn provider(path: &str, p: &ProviderFile, base_dir: &Path) -> Result<ProviderSpec> {
    check_keys(path, p)?;
    match p.kind {
        ProviderKind::Static => static_provider(path, p, base_dir),
        ProviderKind::ClientCertificate => client_certificate_provider(path, p),
        ProviderKind::Jwt => super::jwt_provider::build(path, p, base_dir),
        // Exhaustive: a new kind must say which builder it takes.
        ProviderKind::Http
        | ProviderKind::Rfc7662
        | ProviderKind::Bitgo
        | ProviderKind::Krystal
        | ProviderKind::Prefactor
        | ProviderKind::Enos
        | ProviderKind::Userinfo => super::http_provider::build(path, p, base_dir),
    }
}

/// Every optional key of a `providers.<name>` entry and whether the file gives it: the one
/// list of provider keys (`kind` is required and always allowed).
fn given_keys(p: &ProviderFile) -> [(&'static str, bool); 26] {
    [
        ("clients", p.clients.is_some()),
        ("allow_unlisted", p.allow_unlisted.is_some()),
        ("url", p.url.is_some()),
        ("timeout", p.timeout.is_some()),
        ("max_response_bytes", p.max_response_bytes.is_some()),
        ("ca_file", p.ca_file.is_some()),
        ("method", p.method.is_some()),
        ("token", p.token.is_some()),
        ("headers", p.headers.is_some()),
        ("body", p.body.is_some()),
        ("credential", p.credential.is_some()),
        ("response", p.response.is_some()),
        ("client_id", p.client_id.is_some()),
        ("client_secret", p.client_secret.is_some()),
        ("client_secret_file", p.client_secret_file.is_some()),
        ("tokens", p.tokens.is_some()),
        ("issuer", p.issuer.is_some()),
        ("audiences", p.audiences.is_some()),
        ("algorithms", p.algorithms.is_some()),
        ("jwks_url", p.jwks_url.is_some()),
        ("jwks_file", p.jwks_file.is_some()),
        ("jwks_refresh", p.jwks_refresh.is_some()),
        (
            "jwks_min_refresh_interval",
            p.jwks_min_refresh_interval.is_some(),
        ),
        ("leeway", p.leeway.is_some()),
        ("protection", p.protection.is_some()),
        ("token_format", p.token_format.is_some()),
    ]
}

/// Refuses the first key given that the provider's kind does not take, naming it.
fn check_keys(path: &str, p: &ProviderFile) -> Result<()> {
    let allowed = super::file::kind_keys(p.kind);
    match given_keys(p)
        .iter()
        .find(|(key, given)| *given && !allowed.iter().any(|group| group.contains(key)))
    {
        Some((key, _)) => Err(ConfigError::at(
            format!("{path}.{key}"),
            format!("not used by kind `{}`", p.kind.as_str()),
        )),
        None => Ok(()),
    }
}

fn static_provider(path: &str, p: &ProviderFile, base_dir: &Path) -> Result<ProviderSpec> {
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

fn client_certificate_provider(path: &str, p: &ProviderFile) -> Result<ProviderSpec> {
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
    let identity: Identity = IdentityParts {
        subject: id.subject.clone(),
        session_id: id.session_id.clone(),
        scopes: id.scopes.clone(),
        expires_at,
        ip_restrict: id.ip_restrict.clone(),
        organizations: id.organizations.clone(),
        claims: Vec::new(),
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

#[cfg(test)]
mod key_table_tests {
    use super::*;
    use crate::config::file::{kind_keys, ProviderKind};

    /// The key list cannot fall behind the file struct: serde names every field of
    /// `ProviderFile` when it refuses an unknown one, and each (but `kind`) must be in
    /// `given_keys` — else a new key would be accepted for every kind unchecked.
    #[test]
    fn the_key_list_names_every_field_of_a_provider_entry() {
        let err = serde_yaml_ng::from_str::<ProviderFile>("kind: static\nnot_a_key: 1\n")
            .unwrap_err()
            .to_string();
        let listed = err
            .split_once("expected one of ")
            .unwrap_or_else(|| panic!("serde's message changed: {err}"))
            .1;
        let fields: Vec<&str> = listed.split('`').skip(1).step_by(2).collect();
        assert!(fields.len() > 20, "{err}");
        let p: ProviderFile = serde_yaml_ng::from_str("kind: static").unwrap();
        let known: Vec<&str> = given_keys(&p).iter().map(|(k, _)| *k).collect();
        for field in fields.iter().filter(|f| **f != "kind") {
            assert!(known.contains(field), "`{field}` is not in given_keys");
        }
        assert_eq!(known.len() + 1, fields.len(), "{known:?} vs {fields:?}");
    }

    #[test]
    fn every_allowed_key_is_a_real_key() {
        let p: ProviderFile = serde_yaml_ng::from_str("kind: static").unwrap();
        let known: Vec<&str> = given_keys(&p).iter().map(|(k, _)| *k).collect();
        for kind in ProviderKind::ALL {
            for key in kind_keys(kind).iter().flat_map(|g| g.iter()) {
                assert!(known.contains(key), "{}: {key}", kind.as_str());
            }
        }
    }

    #[test]
    fn static_refuses_jwt_and_http_keys() {
        for key in [
            "leeway: 5s",
            "jwks_refresh: 1m",
            "jwks_min_refresh_interval: 1s",
            "url: http://x",
            "protection: {}",
        ] {
            let p: ProviderFile = serde_yaml_ng::from_str(&format!("kind: static\n{key}")).unwrap();
            let err = check_keys("providers.s", &p).unwrap_err();
            let name = key.split(':').next().unwrap();
            assert_eq!(err.path, format!("providers.s.{name}"));
            assert!(err.message.contains("not used by kind `static`"), "{err}");
        }
    }
}
