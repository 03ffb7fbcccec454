//! What every provider entry has besides its kind's keys: protection (concurrency bound,
//! breaker), token format, and the fingerprint that keeps cached identities across reloads.

use super::*;

/// A stable hash of a provider's definition as written (secret *references*, not values)
/// and of the claims its identities keep (`kept`: the mapping's claims, as text).
pub(super) fn fingerprint(p: &ProviderFile, kept: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{p:?}\0{kept}").as_bytes());
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

pub(super) fn protection(path: &str, p: &ProviderFile) -> Result<Option<Protection>> {
    let mut d = Protection::default();
    let kind = p.kind();
    if kind == ProviderKind::Jwt {
        // A JWT provider calls nothing per token; its only failures are JWKS fetches,
        // which have their own rate limit. A breaker would only keep refusing tokens
        // for `open_for` after the JWKS is back.
        d.failures = 0;
    }
    let Some(f) = p.protection() else {
        return Ok((kind != ProviderKind::Static).then_some(d));
    };
    let positive = |key: &str, v: Option<ConfigDuration>, default: Duration| match v {
        Some(d) if d.0.is_zero() => Err(ConfigError::at(
            format!("{path}.protection.{key}"),
            "must be longer than zero",
        )),
        Some(d) => Ok(d.0),
        None => Ok(default),
    };
    Ok(Some(Protection {
        max_concurrent: f.max_concurrent.unwrap_or(d.max_concurrent),
        queue_timeout: positive("queue_timeout", f.queue_timeout, d.queue_timeout)?,
        failures: f.failures.unwrap_or(d.failures),
        open_for: positive("open_for", f.open_for, d.open_for)?,
        half_open_probes: match f.half_open_probes {
            Some(0) => {
                return Err(ConfigError::at(
                    format!("{path}.protection.half_open_probes"),
                    "must be at least 1",
                ))
            }
            Some(n) => n,
            None => d.half_open_probes,
        },
    }))
}

pub(super) fn token_format(path: &str, p: &ProviderFile) -> Result<TokenFormat> {
    let kind = p.kind();
    let d = if kind == ProviderKind::Jwt {
        TokenFormat::jwt()
    } else {
        TokenFormat::opaque()
    };
    let Some(f) = p.token_format() else {
        return Ok(d);
    };
    let key = |k: &str| format!("{path}.token_format.{k}");
    let charset = match &f.charset {
        Some(c) => Charset::parse(c).ok_or_else(|| {
            ConfigError::at(
                key("charset"),
                format!("unknown charset {c:?}: use visible, b64token, base64url, hex, alphanumeric or jwt"),
            )
        })?,
        None => d.charset,
    };
    if kind == ProviderKind::Jwt && charset != Charset::Jwt {
        return Err(ConfigError::at(
            key("charset"),
            "a `jwt` provider only takes JWT-shaped tokens: use `jwt` or leave it out",
        ));
    }
    let min_length = f.min_length.unwrap_or(d.min_length).max(1);
    let max_length = f.max_length.unwrap_or(d.max_length);
    if max_length > crate::identity::token::DEFAULT_MAX_TOKEN_BYTES {
        return Err(ConfigError::at(
            key("max_length"),
            format!(
                "at most {} (longer tokens are refused before any provider sees them)",
                crate::identity::token::DEFAULT_MAX_TOKEN_BYTES
            ),
        ));
    }
    if min_length > max_length {
        return Err(ConfigError::at(
            key("min_length"),
            "must not exceed max_length",
        ));
    }
    if let Some(prefix) = &f.prefix {
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError::at(
                key("prefix"),
                "must be visible ASCII characters",
            ));
        }
    }
    Ok(TokenFormat {
        min_length,
        max_length,
        charset,
        prefix: f.prefix.clone(),
    })
}

#[cfg(test)]
mod tests {
    use crate::config::validate::assert_error_paths;

    #[test]
    fn protection_and_token_format_are_checked_per_provider() {
        let route = "routes:\n  - { path_prefix: /, provider: p, upstream: echo }\n";
        let table: &[(&str, &[&str])] = &[
            ("providers:\n  p: { kind: bitgo, url: \"http://127.0.0.1:1/s\", token_format: { charset: hex, min_length: 8 } }\n", &[]),
            ("providers:\n  p: { kind: bitgo, url: \"http://127.0.0.1:1/s\", token_format: { min_length: 9, max_length: 8 } }\n", &["providers.p.token_format"]),
            ("providers:\n  p: { kind: bitgo, url: \"http://127.0.0.1:1/s\", protection: { half_open_probes: 0 } }\n", &["providers.p.protection"]),
            ("providers:\n  bad name: { kind: bitgo, url: \"http://127.0.0.1:1/s\" }\n  p: { kind: bitgo, url: \"http://127.0.0.1:1/s\" }\n", &["providers.bad name"]),
        ];
        for (body, want) in table {
            assert_error_paths(&format!("{body}{route}"), want);
        }
    }
}
