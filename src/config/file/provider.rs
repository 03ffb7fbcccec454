//! A provider entry as written (`providers.<name>`): one struct of keys per kind, chosen
//! by `kind`; the request template and the response mapping.

use super::*;

/// `providers.<name>.protection`: concurrency bound and circuit breaker.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProtectionFile {
    pub(crate) max_concurrent: Option<usize>,
    pub(crate) queue_timeout: Option<ConfigDuration>,
    pub(crate) failures: Option<u32>,
    pub(crate) open_for: Option<ConfigDuration>,
    pub(crate) half_open_probes: Option<u32>,
}

/// `providers.<name>.token_format`: the syntactic check a token passes before any call.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenFormatFile {
    pub(crate) min_length: Option<usize>,
    pub(crate) max_length: Option<usize>,
    /// `visible` (default), `b64token`, `base64url`, `hex`, `alphanumeric`, or `jwt`.
    pub(crate) charset: Option<String>,
    /// A prefix every token starts with (`v2x` for BitGo access tokens, say).
    pub(crate) prefix: Option<String>,
}

/// One `providers.<name>` entry: `kind` says which keys it takes, and each kind's keys are
/// a struct of their own that refuses any other key by name (see the `Deserialize` below).
#[derive(Debug)]
pub(crate) enum ProviderFile {
    Static(StaticFile),
    ClientCertificate(ClientCertificateFile),
    Jwt(JwtFile),
    /// The HTTP session-endpoint kinds (`http`, the presets, `rfc7662`, `userinfo`).
    Endpoint(ProviderKind, EndpointFile),
}

/// `kind: static`: tokens listed in the file; it calls nothing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StaticFile {
    /// The tokens this provider knows.
    pub(crate) tokens: Option<Vec<StaticTokenFile>>,
    /// Syntactic token check before any lookup.
    pub(crate) token_format: Option<TokenFormatFile>,
}

/// `kind: client_certificate`: identities for verified client certificates.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClientCertificateFile {
    /// The certificate ids this provider knows, with their scopes.
    pub(crate) clients: Option<Vec<ClientFile>>,
    /// A verified certificate not in `clients` gets an identity (its id as subject, no
    /// scopes) instead of a refusal (default false).
    pub(crate) allow_unlisted: Option<bool>,
}

/// `kind: jwt`: tokens verified locally against a JWKS.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JwtFile {
    /// The required `iss`.
    pub(crate) issuer: Option<String>,
    /// Accepted `aud` values (a token must carry one).
    pub(crate) audiences: Option<Vec<String>>,
    /// Allowed algorithms (asymmetric only).
    pub(crate) algorithms: Option<Vec<String>>,
    /// Where the verification keys are published.
    pub(crate) jwks_url: Option<String>,
    /// A JWKS file instead of a URL.
    pub(crate) jwks_file: Option<String>,
    /// How often the JWKS is fetched again (default 10m).
    pub(crate) jwks_refresh: Option<ConfigDuration>,
    /// Least time between fetches caused by unknown `kid`s (default 30s).
    pub(crate) jwks_min_refresh_interval: Option<ConfigDuration>,
    /// Clock skew allowed on `nbf` / `iat` (default 30s).
    pub(crate) leeway: Option<ConfigDuration>,
    /// Per JWKS fetch. Default 5s.
    pub(crate) timeout: Option<ConfigDuration>,
    /// Largest JWKS accepted. Default 262144 bytes (256 KiB).
    pub(crate) max_response_bytes: Option<usize>,
    /// Extra PEM CA bundle trusted for the JWKS URL, on top of the system store.
    pub(crate) ca_file: Option<String>,
    /// How claims map to an identity.
    pub(crate) response: Option<ResponseFile>,
    /// Concurrency bound for JWKS fetches.
    pub(crate) protection: Option<ProtectionFile>,
    /// Syntactic token check before any verification.
    pub(crate) token_format: Option<TokenFormatFile>,
}

/// The HTTP session-endpoint kinds: every request/response key overrides the preset's
/// value for that key only.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EndpointFile {
    /// Session / introspection endpoint; may contain `{token}` in the path.
    pub(crate) url: Option<String>,
    /// `GET` or `POST`.
    pub(crate) method: Option<String>,
    /// Where the user's token goes.
    pub(crate) token: Option<TokenFile>,
    /// Static request headers (not secrets: use `credential`).
    pub(crate) headers: Option<BTreeMap<String, String>>,
    /// Static fields added to a form or JSON body.
    pub(crate) body: Option<BTreeMap<String, serde_json::Value>>,
    /// The gateway's own credential for the provider.
    pub(crate) credential: Option<CredentialFile>,
    /// Per-call timeout. Default 2s.
    pub(crate) timeout: Option<ConfigDuration>,
    /// Largest response body accepted. Default 65536 bytes.
    pub(crate) max_response_bytes: Option<usize>,
    /// Extra PEM CA bundle trusted for this provider (private CAs), on top of the system store.
    pub(crate) ca_file: Option<String>,
    /// How answers are judged and mapped to an identity.
    pub(crate) response: Option<ResponseFile>,
    /// Concurrency bound and circuit breaker for calls to this provider.
    pub(crate) protection: Option<ProtectionFile>,
    /// Syntactic token check before any call.
    pub(crate) token_format: Option<TokenFormatFile>,
    /// `kind: rfc7662` only: the [`ClientAuthFile`] keys, read apart from the rest.
    #[serde(skip)]
    pub(crate) client_auth: ClientAuthFile,
}

/// `kind: rfc7662`'s own keys: the gateway's client id and secret (HTTP Basic), the
/// shorthand introspection deployments use instead of a `credential` block.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClientAuthFile {
    pub(crate) client_id: Option<String>,
    /// As `${ENV_VAR}`.
    pub(crate) client_secret: Option<String>,
    /// Read from a file.
    pub(crate) client_secret_file: Option<String>,
}

impl ClientAuthFile {
    /// Any of its keys given.
    pub(crate) fn given(&self) -> bool {
        self.client_id.is_some()
            || self.client_secret.is_some()
            || self.client_secret_file.is_some()
    }
}

impl ProviderFile {
    pub(crate) fn kind(&self) -> ProviderKind {
        match self {
            ProviderFile::Static(_) => ProviderKind::Static,
            ProviderFile::ClientCertificate(_) => ProviderKind::ClientCertificate,
            ProviderFile::Jwt(_) => ProviderKind::Jwt,
            ProviderFile::Endpoint(kind, _) => *kind,
        }
    }

    /// `protection:`, which only the kinds that call out take.
    pub(crate) fn protection(&self) -> Option<&ProtectionFile> {
        match self {
            ProviderFile::Static(_) | ProviderFile::ClientCertificate(_) => None,
            ProviderFile::Jwt(j) => j.protection.as_ref(),
            ProviderFile::Endpoint(_, e) => e.protection.as_ref(),
        }
    }

    /// `token_format:`, which only the kinds that read a token take.
    pub(crate) fn token_format(&self) -> Option<&TokenFormatFile> {
        match self {
            ProviderFile::ClientCertificate(_) => None,
            ProviderFile::Static(s) => s.token_format.as_ref(),
            ProviderFile::Jwt(j) => j.token_format.as_ref(),
            ProviderFile::Endpoint(_, e) => e.token_format.as_ref(),
        }
    }
}

/// Marks an error found inside a provider entry — `{NESTED}{key path}{NESTED}{message}` —
/// so that `config::parse` names the key within the entry (`providers.idp.issuer`).
pub(crate) const NESTED: char = '\u{1f}';

impl<'de> Deserialize<'de> for ProviderFile {
    /// `kind` first, wherever it is written; then the other keys as that kind's struct,
    /// whose own `deny_unknown_fields` refuses any key the kind does not take.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut map = serde_yaml_ng::Mapping::deserialize(d)?;
        // `shift_remove`: the other keys keep the file's order (the first error is the
        // first in the file).
        let kind = map
            .shift_remove("kind")
            .ok_or_else(|| D::Error::missing_field("kind"))?;
        let kind = ProviderKind::deserialize(kind)
            .map_err(|e| D::Error::custom(format!("{NESTED}kind{NESTED}{e}")))?;
        Ok(match kind {
            ProviderKind::Static => ProviderFile::Static(part(kind, map)?),
            ProviderKind::ClientCertificate => ProviderFile::ClientCertificate(part(kind, map)?),
            ProviderKind::Jwt => ProviderFile::Jwt(part(kind, map)?),
            ProviderKind::Rfc7662 => {
                let own = serde_fields::<ClientAuthFile>();
                let (client, rest): (serde_yaml_ng::Mapping, serde_yaml_ng::Mapping) = map
                    .into_iter()
                    .partition(|(k, _)| k.as_str().is_some_and(|k| own.contains(&k)));
                let mut endpoint: EndpointFile = part(kind, rest)?;
                endpoint.client_auth = part(kind, client)?;
                ProviderFile::Endpoint(kind, endpoint)
            }
            // Exhaustive: a new kind says which keys it takes.
            ProviderKind::Http
            | ProviderKind::Bitgo
            | ProviderKind::Krystal
            | ProviderKind::Prefactor
            | ProviderKind::Enos
            | ProviderKind::Userinfo => ProviderFile::Endpoint(kind, part(kind, map)?),
        })
    }
}

/// The entry's other keys as `kind`'s struct; an error keeps the key it is about.
fn part<T: serde::de::DeserializeOwned, E: serde::de::Error>(
    kind: ProviderKind,
    map: serde_yaml_ng::Mapping,
) -> Result<T, E> {
    serde_path_to_error::deserialize(serde_yaml_ng::Value::Mapping(map)).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let message = match inner.strip_prefix("unknown field `") {
            // serde lists the kind's keys; the message says whose they are.
            Some(rest) => {
                let keys = rest.split_once(", expected ").map_or("", |(_, k)| k);
                let mut keys = keys.trim_start_matches("one of ").replace('`', "");
                if kind == ProviderKind::Rfc7662 {
                    // Its client keys are read apart (`ClientAuthFile`), yet are its keys.
                    for key in serde_fields::<ClientAuthFile>() {
                        keys.push_str(", ");
                        keys.push_str(key);
                    }
                }
                format!("not used by kind `{}` (its keys: {keys})", kind.as_str())
            }
            None => inner,
        };
        E::custom(format!("{NESTED}{path}{NESTED}{message}"))
    })
}

/// The field names serde hands a struct's deserializer: the struct's own list, so it
/// cannot drift from the struct.
pub(crate) fn serde_fields<T: serde::de::DeserializeOwned>() -> &'static [&'static str] {
    struct Fields(Option<&'static [&'static str]>);
    impl<'de> serde::Deserializer<'de> for &mut Fields {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: serde::de::Visitor<'de>>(
            self,
            _: V,
        ) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0 = Some(fields);
            Err(serde::de::Error::custom("fields read"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    let mut fields = Fields(None);
    let _ = T::deserialize(&mut fields);
    fields.0.unwrap_or_default()
}

/// Where the user's token goes in the provider request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum TokenIn {
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// `Authorization: <token>` (the raw value).
    Authorization,
    /// The header `name`.
    Header,
    /// The query parameter `name`.
    Query,
    /// The form field `name` (default `token`).
    Form,
    /// The top-level JSON body field `name` (default `token`).
    Json,
    /// `{token}` in the URL path.
    Path,
}

/// `token: { in: …, name: … }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenFile {
    #[serde(rename = "in")]
    pub(crate) location: TokenIn,
    pub(crate) name: Option<String>,
}

/// `credential:` — either a bearer key or HTTP Basic, secrets from env or files.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CredentialFile {
    pub(crate) bearer: Option<String>,
    pub(crate) bearer_file: Option<String>,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) password_file: Option<String>,
}

/// What `if_missing` does when a predicate's pointer is absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum IfMissing {
    Pass,
    Fail,
}

/// A check on the value at `pointer`: exactly one of `equals`, `one_of`, `not_one_of`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PredicateFile {
    pub(crate) pointer: String,
    pub(crate) equals: Option<serde_json::Value>,
    pub(crate) one_of: Option<Vec<serde_json::Value>>,
    pub(crate) not_one_of: Option<Vec<serde_json::Value>>,
    pub(crate) if_missing: Option<IfMissing>,
}

/// A rule: HTTP statuses and/or one body predicate.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleFile {
    pub(crate) status: Option<Vec<u16>>,
    pub(crate) pointer: Option<String>,
    pub(crate) equals: Option<serde_json::Value>,
    pub(crate) one_of: Option<Vec<serde_json::Value>>,
    pub(crate) not_one_of: Option<Vec<serde_json::Value>>,
    pub(crate) if_missing: Option<IfMissing>,
}

/// How an expiry is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ExpiryFormatFile {
    Rfc3339,
    UnixSeconds,
    UnixMillis,
    LifetimeSeconds,
}

/// `expires: { pointer, format, base }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExpiresFile {
    pub(crate) pointer: String,
    pub(crate) format: ExpiryFormatFile,
    /// For `lifetime_seconds`: pointer to the Unix-seconds start; absent = time of answer.
    pub(crate) base: Option<String>,
}

/// `response:` — classification rules and the identity mapping.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResponseFile {
    pub(crate) invalid_when: Option<Vec<RuleFile>>,
    pub(crate) broken_when: Option<Vec<RuleFile>>,
    pub(crate) success: Option<Vec<PredicateFile>>,
    pub(crate) active: Option<Vec<PredicateFile>>,
    pub(crate) subject: Option<OneOrMany>,
    pub(crate) session_id: Option<OneOrMany>,
    pub(crate) scopes: Option<OneOrMany>,
    pub(crate) expires: Option<ExpiresFile>,
    pub(crate) ip_restrict: Option<String>,
    pub(crate) organizations: Option<Vec<String>>,
    /// Claim name → a pointer (forwarded as `<prefix>Claim-<Name>`), or the long form.
    pub(crate) claims: Option<BTreeMap<String, ClaimFile>>,
}

/// One `response.claims` entry: `/pointer`, or `{ pointer, forward, time }`.
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "a JSON pointer such as `/email`, or `{ pointer: /email, forward: false, time: rfc3339 }` (keys: pointer, forward, time)"
)]
pub(crate) enum ClaimFile {
    Pointer(String),
    Full(ClaimFullFile),
}

/// The long form of a claim.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClaimFullFile {
    pub(crate) pointer: String,
    /// Sent to the upstream as a header (default true).
    pub(crate) forward: Option<bool>,
    /// The value is a time in this format; rules see it as Unix seconds.
    pub(crate) time: Option<ExpiryFormatFile>,
}

/// One token of a `static` provider. Exactly one of `token`, `token_file`, `token_sha256`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StaticTokenFile {
    /// The token, as `${ENV_VAR}`.
    pub(crate) token: Option<String>,
    /// A file holding the token.
    pub(crate) token_file: Option<String>,
    /// Lower-case hex SHA-256 digest of the token: safe to write in the file.
    pub(crate) token_sha256: Option<String>,
    pub(crate) identity: StaticIdentityFile,
}

/// One of `clients` (kind `client_certificate`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClientFile {
    /// The certificate's id: its URI SAN (`spiffe://…`), else DNS SAN, else CN.
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) scopes: Vec<String>,
    #[serde(default)]
    pub(crate) organizations: Vec<String>,
}

/// The identity a static token resolves to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StaticIdentityFile {
    pub(crate) subject: String,
    pub(crate) session_id: Option<String>,
    #[serde(default)]
    pub(crate) scopes: Vec<String>,
    #[serde(default)]
    pub(crate) organizations: Vec<String>,
    /// RFC 3339 time after which the token is refused.
    pub(crate) expires_at: Option<String>,
    /// Client addresses or CIDR blocks allowed to use the token (empty: any).
    #[serde(default)]
    pub(crate) ip_restrict: Vec<String>,
    /// Claims, name → value (a string, number, boolean, list or map), as a provider's
    /// `response.claims` maps them: forwarded as `<prefix>Claim-<name>` and read by rules
    /// as `identity.claims`.
    #[serde(default)]
    pub(crate) claims: BTreeMap<String, serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses a file whose `providers.idp` entry is `entry`; the error's path and message.
    fn entry_error(entry: &str) -> (String, String, Option<(usize, usize)>) {
        let text = format!("listen: 127.0.0.1:8080\nroutes: []\nproviders:\n  idp:\n{entry}");
        let e = crate::config::parse(&text).expect_err("refused");
        (e.path, e.message, e.location)
    }

    fn parses(entry: &str) -> ProviderFile {
        let text = format!("listen: 127.0.0.1:8080\nroutes: []\nproviders:\n  idp:\n{entry}");
        let mut file = crate::config::parse(&text).unwrap_or_else(|e| panic!("{e}"));
        file.providers.remove("idp").expect("the entry")
    }

    #[test]
    fn each_kind_takes_its_own_keys_only_and_the_refusal_names_the_key() {
        let table: &[(&str, &str, &str)] = &[
            ("    kind: static\n    leeway: 5s\n", "leeway", "static"),
            (
                "    kind: static\n    jwks_refresh: 1m\n",
                "jwks_refresh",
                "static",
            ),
            ("    kind: static\n    url: http://x\n", "url", "static"),
            (
                "    kind: static\n    protection: {}\n",
                "protection",
                "static",
            ),
            (
                "    kind: client_certificate\n    tokens: []\n",
                "tokens",
                "client_certificate",
            ),
            (
                "    kind: client_certificate\n    token_format: {}\n",
                "token_format",
                "client_certificate",
            ),
            ("    kind: jwt\n    url: http://x\n", "url", "jwt"),
            ("    kind: bitgo\n    issuer: x\n", "issuer", "bitgo"),
            ("    kind: bitgo\n    client_id: x\n", "client_id", "bitgo"),
            (
                "    kind: http\n    client_secret_file: x\n",
                "client_secret_file",
                "http",
            ),
            (
                "    kind: rfc7662\n    jwks_url: http://x\n",
                "jwks_url",
                "rfc7662",
            ),
            ("    kind: userinfo\n    tokens: []\n", "tokens", "userinfo"),
            // `kind` may come last: the entry is judged by it all the same.
            ("    leeway: 5s\n    kind: static\n", "leeway", "static"),
        ];
        let (_, message, _) = entry_error("    kind: rfc7662\n    jwks_url: http://x\n");
        assert!(
            message.ends_with(", client_id, client_secret, client_secret_file)"),
            "{message}"
        );
        for (entry, key, kind) in table {
            let (path, message, location) = entry_error(entry);
            assert_eq!(path, format!("providers.idp.{key}"), "{entry}");
            assert!(
                message.starts_with(&format!("not used by kind `{kind}` (its keys: ")),
                "{entry}: {message}"
            );
            assert!(location.is_some(), "{entry}: a line to look at");
        }
    }

    #[test]
    fn errors_inside_an_entry_name_the_key_they_are_about() {
        let table: &[(&str, &str, &str)] = &[
            (
                "    kind: jwt\n    leeway: soon\n",
                "providers.idp.leeway",
                "soon",
            ),
            (
                "    kind: bitgo\n    max_response_bytes: -1\n",
                "providers.idp.max_response_bytes",
                "invalid",
            ),
            (
                "    kind: bitgo\n    token: { in: nowhere }\n",
                "providers.idp.token.in",
                "nowhere",
            ),
            (
                "    kind: rfc7662\n    client_id: [a]\n",
                "providers.idp.client_id",
                "expected a string",
            ),
            (
                "    kind: static\n    tokens: [{ token_sha256: ab }]\n",
                "providers.idp.tokens[0]",
                "identity",
            ),
            (
                "    kind: nope\n",
                "providers.idp.kind",
                "unknown variant `nope`",
            ),
            (
                "    url: http://x\n",
                "providers.idp",
                "missing field `kind`",
            ),
        ];
        for (entry, want_path, want_text) in table {
            let (path, message, _) = entry_error(entry);
            assert_eq!(&path, want_path, "{entry}: {message}");
            assert!(message.contains(want_text), "{entry}: {message}");
        }
    }

    /// The entry is read as a whole, yet the error points at the key's own line.
    #[test]
    fn errors_inside_an_entry_point_at_the_keys_line() {
        // The entry's lines start at line 5.
        let table: &[(&str, (usize, usize))] = &[
            ("    kind: static\n    leeway: 5s\n", (6, 5)),
            ("    leeway: 5s\n    kind: static\n", (5, 5)),
            (
                "    kind: static\n\n    # a comment\n    \"leeway\": 5s\n",
                (8, 5),
            ),
            ("    kind: bitgo\n    token:\n      in: nowhere\n", (6, 5)),
            // The first of two errors in the file's order, `kind` given in between.
            (
                "    issuer: x\n    kind: bitgo\n    timeout: soon\n",
                (5, 5),
            ),
            ("    { kind: bitgo, url: http://x, timout: 1 }\n", (5, 35)),
        ];
        for (entry, want) in table {
            let (_, message, location) = entry_error(entry);
            assert_eq!(location, Some(*want), "{entry}: {message}");
        }
        // Flow style on the name's own line.
        let text = "listen: 127.0.0.1:8080\nroutes: []\nproviders:\n  idp: { kind: jwt, url: x }\n";
        let e = crate::config::parse(text).expect_err("refused");
        assert_eq!(
            (e.path.as_str(), e.location),
            ("providers.idp.url", Some((4, 21)))
        );
    }

    #[test]
    fn rfc7662_reads_its_client_keys_apart_and_other_kinds_share_the_endpoint_keys() {
        let p = parses(
            "    kind: rfc7662\n    url: https://idp/introspect\n    client_id: gw\n    client_secret_file: s\n",
        );
        let ProviderFile::Endpoint(ProviderKind::Rfc7662, e) = &p else {
            panic!("{p:?}")
        };
        assert_eq!(e.url.as_deref(), Some("https://idp/introspect"));
        assert_eq!(e.client_auth.client_id.as_deref(), Some("gw"));
        assert_eq!(e.client_auth.client_secret_file.as_deref(), Some("s"));
        assert_eq!(
            serde_fields::<ClientAuthFile>(),
            ["client_id", "client_secret", "client_secret_file"]
        );
        for kind in ProviderKind::ALL {
            let text = format!("    kind: {}\n", kind.as_str());
            assert_eq!(parses(&text).kind(), kind);
        }
    }
}
