//! `routes:` and `assertion_keys:` — each route's match, providers, credentials, policy
//! (methods, scopes, network rules) and identity assertion.

use super::*;

pub(super) fn route(
    path: &str,
    r: &RouteFile,
    providers: &BTreeMap<String, ProviderSettings>,
    upstreams: &BTreeMap<String, UpstreamSpec>,
    deciding: bool,
) -> Result<RouteSpec> {
    let route_path = route_path(path, r)?;
    let host = match &r.host {
        // Compared with the request's canonical host name: lower-case, no trailing dot.
        Some(h) => match canonical_host(h.as_bytes()) {
            Ok(c) if c.port.is_none() => Some(c.name),
            _ => {
                return Err(ConfigError::at(
                    format!("{path}.host"),
                    "give a host name without scheme or port, such as api.example.com",
                ))
            }
        },
        None => None,
    };
    let all_providers = providers;
    let providers = route_providers(path, r, providers)?;
    let upstream = match &r.upstream {
        Some(u) if u != ECHO_UPSTREAM && !upstreams.contains_key(u) => {
            return Err(ConfigError::at(
                format!("{path}.upstream"),
                format!(
                    "no upstream named `{u}` (define it under `upstreams`, or use the built-in `echo`)"
                ),
            ))
        }
        Some(u) => u.clone(),
        None if deciding => NO_UPSTREAM.to_string(),
        None => {
            return Err(ConfigError::at(
                format!("{path}.upstream"),
                "is required: where allowed requests go (an `upstreams` name, or `echo`); a route without one is judged only for front proxies, which needs `decision.listen`",
            ))
        }
    };
    let authenticated = !providers.is_empty();
    let providers_named = providers.clone();
    let policy = route_policy(path, r, authenticated, &route_path.param_names())?;
    let forward_authorization = r.forward_authorization.unwrap_or(true);
    let stale_if_error = r.stale_if_error.map_or(Duration::ZERO, |d| d.0);
    if !authenticated && !stale_if_error.is_zero() {
        return Err(ConfigError::at(
            format!("{path}.stale_if_error"),
            "a route with `auth: none` has no identity to serve stale; remove it",
        ));
    }
    let name = match &r.name {
        Some(n) => {
            check_name(&format!("{path}.name"), n)?;
            n.clone()
        }
        None => format!("{}{}", host.as_deref().unwrap_or(""), route_path.as_str()),
    };
    Ok(RouteSpec {
        name: name.into(),
        path: route_path,
        host,
        providers,
        upstream,
        policy,
        forward_authorization,
        assertion: None,
        stale_if_error,
        allow_encoded_slashes: r.allow_encoded_slashes.unwrap_or(false),
        require_client_certificate: certificate_ids(path, r)?,
        rules: rules(path, r, authenticated)?,
        rate_limits: Vec::new(),
        credentials: {
            let credentials = credentials(path, r, authenticated)?;
            pair_certificates(path, &credentials, &providers_named, all_providers)?;
            credentials
        },
    })
}

/// What the route matches: `path_prefix` (a normalized path) or `path` (a template),
/// exactly one of them.
pub(super) fn route_path(path: &str, r: &RouteFile) -> Result<RoutePath> {
    match (&r.path_prefix, &r.path) {
        (Some(_), Some(_)) => Err(ConfigError::at(
            format!("{path}.path"),
            "give `path_prefix` (a path and everything below it) or `path` (a template), not both",
        )),
        (None, None) => Err(ConfigError::at(
            format!("{path}.path_prefix"),
            "required: `path_prefix: /api` (the path and everything below it) or `path: /orgs/{org}` (a template)",
        )),
        (None, Some(template)) => PathTemplate::parse(template)
            .map(|t| RoutePath::Template(Arc::new(t)))
            .map_err(|e| ConfigError::at(format!("{path}.path"), format!("{template:?}: {e}"))),
        (Some(prefix), None) => {
            let normalized = normalize_path(prefix)
                .ok()
                .filter(|n| !n.encoded_slash)
                .map(|n| n.forward);
            let is_normal = normalized
                .as_deref()
                .is_some_and(|n| n == prefix || format!("{n}/") == *prefix);
            if !is_normal {
                return Err(ConfigError::at(
                    format!("{path}.path_prefix"),
                    format!("{prefix:?} must be a normalized absolute path such as /api (no //, . or .. segments)"),
                ));
            }
            Ok(RoutePath::Prefix(prefix.clone()))
        }
    }
}

/// The providers a route names (none with `auth: none`), each defined under `providers`.
pub(super) fn route_providers(
    path: &str,
    r: &RouteFile,
    providers: &BTreeMap<String, ProviderSettings>,
) -> Result<Vec<String>> {
    let names: Option<Vec<String>> = r.provider.as_ref().map(|p| match p {
        OneOrMany::One(n) => vec![n.clone()],
        OneOrMany::Many(ns) => ns.clone(),
    });
    Ok(match (r.auth.unwrap_or(AuthMode::Required), &names) {
        (AuthMode::None, Some(_)) => {
            return Err(ConfigError::at(
                format!("{path}.provider"),
                "a route with `auth: none` reads no token; remove `provider`",
            ))
        }
        (AuthMode::None, None) => Vec::new(),
        (AuthMode::Required, None) => {
            return Err(ConfigError::at(
                format!("{path}.provider"),
                "required (or set `auth: none` for a public route)",
            ))
        }
        (AuthMode::Required, Some(list)) if list.is_empty() => {
            return Err(ConfigError::at(
                format!("{path}.provider"),
                "name at least one provider",
            ))
        }
        (AuthMode::Required, Some(list)) => {
            if let Some(name) = list.iter().find(|n| !providers.contains_key(*n)) {
                return Err(ConfigError::at(
                    format!("{path}.provider"),
                    format!("no provider named `{name}` under `providers`"),
                ));
            }
            list.clone()
        }
    })
}

/// `require_client_certificate`: certificate ids (or `"*"`), never an empty list.
pub(super) fn certificate_ids(path: &str, r: &RouteFile) -> Result<Vec<String>> {
    let ids = r.require_client_certificate.clone().unwrap_or_default();
    for (i, id) in ids.iter().enumerate() {
        if id.is_empty() || !id.bytes().all(|b| (0x21..0x7f).contains(&b)) {
            return Err(ConfigError::at(
                format!("{path}.require_client_certificate[{i}]"),
                "a certificate id (URI SAN, DNS SAN or CN, printable ASCII) or \"*\"",
            ));
        }
    }
    if r.require_client_certificate
        .as_ref()
        .is_some_and(|l| l.is_empty())
    {
        return Err(ConfigError::at(
            format!("{path}.require_client_certificate"),
            "list certificate ids, or [\"*\"] for any verified certificate",
        ));
    }
    Ok(ids)
}

/// `token_sources`, `forward_token_cookie`, `csrf_trusted_origins`.
/// A client certificate is a credential of its own: a route reads it alone
/// (`token_sources: [client_certificate]`) with `client_certificate` providers only, and
/// those providers serve no other route — so a header can never stand in for a verified
/// certificate, nor a certificate id for a token.
pub(super) fn pair_certificates(
    path: &str,
    credentials: &crate::decision::route::Credentials,
    route_providers: &[String],
    all: &BTreeMap<String, ProviderSettings>,
) -> Result<()> {
    use crate::identity::provider::ProviderSpec;
    use crate::identity::token::TokenSource;
    let from_certificate = credentials
        .sources
        .contains(&TokenSource::ClientCertificate);
    if from_certificate && credentials.sources.len() > 1 {
        return Err(ConfigError::at(
            format!("{path}.token_sources"),
            "`client_certificate` is read alone: list no other source beside it",
        ));
    }
    for name in route_providers {
        let is_certificate = all
            .get(name)
            .is_some_and(|p| matches!(p.spec, ProviderSpec::ClientCertificate { .. }));
        if is_certificate != from_certificate {
            return Err(ConfigError::at(
                format!("{path}.provider"),
                if from_certificate {
                    format!("`{name}` reads tokens; a route with `token_sources: [client_certificate]` needs providers of kind `client_certificate`")
                } else {
                    format!("`{name}` is of kind `client_certificate`: the route needs `token_sources: [client_certificate]`")
                },
            ));
        }
    }
    Ok(())
}

pub(super) fn credentials(
    path: &str,
    r: &crate::config::file::RouteFile,
    authenticated: bool,
) -> Result<crate::decision::route::Credentials> {
    use crate::config::file::TokenSourceFile;
    use crate::identity::token::TokenSource;
    let mut out = crate::decision::route::Credentials::default();
    let given = r.token_sources.is_some()
        || r.forward_token_cookie.is_some()
        || r.csrf_trusted_origins.is_some();
    if given && !authenticated {
        return Err(ConfigError::at(
            format!("{path}.token_sources"),
            "a route with `auth: none` reads no token; remove token_sources, forward_token_cookie and csrf_trusted_origins",
        ));
    }
    if let Some(list) = &r.token_sources {
        if list.is_empty() {
            return Err(ConfigError::at(
                format!("{path}.token_sources"),
                "name at least one source (authorization, cookie: <name>, header: <name>)",
            ));
        }
        out.sources.clear();
        for (i, source) in list.iter().enumerate() {
            let key = format!("{path}.token_sources[{i}]");
            let source = match source {
                TokenSourceFile::Authorization => TokenSource::Authorization,
                TokenSourceFile::ClientCertificate => TokenSource::ClientCertificate,
                TokenSourceFile::Cookie(name) => {
                    // RFC 6265 cookie-name: a token (visible ASCII without separators).
                    let ok = !name.is_empty()
                        && name
                            .bytes()
                            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
                    if !ok {
                        return Err(ConfigError::at(
                            key,
                            format!("{name:?} is not a cookie name"),
                        ));
                    }
                    TokenSource::Cookie(name.clone())
                }
                TokenSourceFile::Header(name) => {
                    let lower = name.to_ascii_lowercase();
                    if http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
                        return Err(ConfigError::at(
                            key,
                            format!("{name:?} is not a header name"),
                        ));
                    }
                    if matches!(
                        lower.as_str(),
                        "authorization"
                            | "cookie"
                            | "host"
                            | "connection"
                            | "content-length"
                            | "transfer-encoding"
                            | "upgrade"
                            | "te"
                            | "trailer"
                            | "x-forwarded-for"
                            | "forwarded"
                    ) {
                        return Err(ConfigError::at(
                            key,
                            format!("{name:?} cannot carry a token (use `authorization` or `cookie: <name>` for those)"),
                        ));
                    }
                    TokenSource::Header(lower)
                }
            };
            if out.sources.contains(&source) {
                return Err(ConfigError::at(
                    key,
                    format!("{} is listed twice", source.describe()),
                ));
            }
            out.sources.push(source);
        }
    }
    out.forward_cookie = r.forward_token_cookie.unwrap_or(false);
    for (i, origin) in r.csrf_trusted_origins.iter().flatten().enumerate() {
        let key = format!("{path}.csrf_trusted_origins[{i}]");
        let parsed = url::Url::parse(origin).map_err(|e| {
            ConfigError::at(
                &key,
                format!("not an origin ({e}): expected https://host[:port]"),
            )
        })?;
        let canonical = parsed.origin().ascii_serialization();
        if canonical == "null" || parsed.path() != "/" || origin.trim_end_matches('/') != canonical
        {
            return Err(ConfigError::at(
                key,
                format!("{origin:?} is not an origin: expected scheme://host[:port] with nothing after it (e.g. {canonical})"),
            ));
        }
        out.trusted_origins.push(canonical);
    }
    Ok(out)
}

pub(super) fn assertion_keys(file: &FileConfig, base_dir: &Path) -> Result<Vec<Arc<SigningKey>>> {
    let mut keys: Vec<Arc<SigningKey>> = Vec::new();
    for (i, k) in file.assertion_keys.iter().enumerate() {
        let path = format!("assertion_keys[{i}]");
        if k.kid.is_empty() || keys.iter().any(|o| o.kid == k.kid) {
            return Err(ConfigError::at(
                format!("{path}.kid"),
                "kids must be non-empty and unique",
            ));
        }
        let algorithm: jsonwebtoken::Algorithm = k.algorithm.parse().map_err(|_| {
            ConfigError::at(
                format!("{path}.algorithm"),
                format!("{:?}: use ES256, EdDSA, RS256 or PS256", k.algorithm),
            )
        })?;
        let full = base_dir.join(&k.key_file);
        let pem = std::fs::read_to_string(&full).map_err(|e| {
            ConfigError::at(
                format!("{path}.key_file"),
                format!("cannot read {}: {e}", full.display()),
            )
        })?;
        let key = SigningKey::from_pem(&k.kid, algorithm, &pem)
            .map_err(|e| ConfigError::at(format!("{path}.key_file"), e))?;
        keys.push(Arc::new(key));
    }
    Ok(keys)
}

pub(super) fn assertion(
    path: &str,
    a: &AssertionFile,
    keys: &[Arc<SigningKey>],
    prefix: &str,
    authenticated: bool,
) -> Result<Arc<AssertionSpec>> {
    let path = format!("{path}.assertion");
    if !authenticated {
        return Err(ConfigError::at(
            path,
            "a route with `auth: none` has no identity to assert",
        ));
    }
    let key = match &a.key {
        Some(kid) => keys
            .iter()
            .find(|k| &k.kid == kid)
            .cloned()
            .ok_or_else(|| {
                ConfigError::at(
                    format!("{path}.key"),
                    format!("no `assertion_keys` entry with kid `{kid}`"),
                )
            })?,
        None => keys.first().cloned().ok_or_else(|| {
            ConfigError::at(
                path.clone(),
                "needs a signing key: add one under `assertion_keys`",
            )
        })?,
    };
    let header = a
        .header
        .clone()
        .unwrap_or_else(|| format!("{prefix}Assertion"));
    let normalized = |s: &str| s.to_ascii_lowercase().replace('_', "-");
    if !normalized(&header).starts_with(&normalized(prefix)) {
        return Err(ConfigError::at(
            format!("{path}.header"),
            format!("must start with the identity header prefix `{prefix}`, so client-sent copies are always stripped"),
        ));
    }
    let header = crate::wire_name::WireName::new(header)
        .ok_or_else(|| ConfigError::at(format!("{path}.header"), "not a valid header name"))?;
    let ttl = a.ttl.map_or(Duration::from_secs(60), |d| d.0);
    if ttl < Duration::from_secs(1) {
        return Err(ConfigError::at(
            format!("{path}.ttl"),
            "must be at least 1s",
        ));
    }
    if a.audience.is_empty() {
        return Err(ConfigError::at(
            format!("{path}.audience"),
            "cannot be empty",
        ));
    }
    Ok(Arc::new(AssertionSpec {
        header,
        key,
        ttl,
        audience: a.audience.clone(),
        issuer: a.issuer.clone().unwrap_or_else(|| "sessiongate".into()),
    }))
}

pub(super) fn scope_rule(
    path: &str,
    all_of: &[String],
    any_of: &[String],
    params: &[&str],
) -> Result<ScopeRule> {
    for (key, list) in [("all_of", all_of), ("any_of", any_of)] {
        for (i, scope) in list.iter().enumerate() {
            placeholders(&format!("{path}.{key}[{i}]"), scope, params)?;
            let bad = scope.is_empty()
                || scope
                    .bytes()
                    .any(|b| b <= b' ' || b == b'"' || b == b'\\' || b >= 0x7f)
                || scope.strip_suffix('*').unwrap_or(scope).contains('*');
            if bad {
                return Err(ConfigError::at(
                    format!("{path}.{key}[{i}]"),
                    format!("{scope:?} is not a scope (no spaces, quotes or backslashes; `*` only at the end)"),
                ));
            }
        }
    }
    Ok(ScopeRule::new(all_of.to_vec(), any_of.to_vec()))
}

/// The `{name}` placeholders of a scope or organization: each one a parameter of the
/// route's `path` template, and no other braces.
pub(super) fn placeholders(path: &str, text: &str, params: &[&str]) -> Result<()> {
    for piece in pieces(text) {
        let name = match piece {
            Piece::Param(name) => name,
            Piece::Text(t) if !t.contains('}') => continue,
            Piece::Text(_) | Piece::Unclosed(_) => {
                return Err(ConfigError::at(
                    path,
                    format!("{text:?}: braces only around a path parameter, `{{name}}`"),
                ))
            }
        };
        if !params.contains(&name) {
            let known = if params.is_empty() {
                "this route has none: give it a `path` template such as /orgs/{org}".to_string()
            } else {
                format!(
                    "its `path` has {}",
                    params
                        .iter()
                        .map(|p| format!("`{{{p}}}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            return Err(ConfigError::at(
                path,
                format!("`{{{name}}}` is not a parameter of the route's path ({known})"),
            ));
        }
    }
    Ok(())
}

/// `rules:` — each compiled and checked as the file was read; names and statuses here.
pub(super) fn rules(path: &str, r: &RouteFile, authenticated: bool) -> Result<RouteRules> {
    let list = match &r.rules {
        None => return Ok(RouteRules::default()),
        Some(_) if !authenticated => {
            return Err(ConfigError::at(
                format!("{path}.rules"),
                "a route with `auth: none` has no identity to check",
            ))
        }
        Some(list) if list.is_empty() => {
            return Err(ConfigError::at(
                format!("{path}.rules"),
                "list at least one rule (or leave `rules` out)",
            ))
        }
        Some(list) => list,
    };
    let mut compiled = Vec::with_capacity(list.len());
    let mut names: Vec<&str> = Vec::new();
    for (i, r) in list.iter().enumerate() {
        let rpath = format!("{path}.rules[{i}]");
        check_name(&format!("{rpath}.name"), &r.name)?;
        if names.contains(&r.name.as_str()) {
            return Err(ConfigError::at(
                format!("{rpath}.name"),
                format!("rule name `{}` is used twice on this route", r.name),
            ));
        }
        names.push(&r.name);
        let status = r.status.unwrap_or(403);
        if status != 403 && status != 404 {
            return Err(ConfigError::at(
                format!("{rpath}.status"),
                "403 (the default: refused) or 404 (to not say that the resource exists)",
            ));
        }
        if let Some(e) = &r.error {
            if e.len() > 200 || e.chars().any(char::is_control) {
                return Err(ConfigError::at(
                    format!("{rpath}.error"),
                    "one line of at most 200 bytes",
                ));
            }
        }
        compiled.push(RouteRule::new(
            &r.name,
            r.expr.0.clone(),
            r.error.clone(),
            status,
        ));
    }
    Ok(RouteRules::new(compiled))
}

/// HTTP methods as a rule lists them (upper-cased); `GET` brings `HEAD` (RFC 9110 §9.3.2:
/// HEAD is GET without the body — same existence, same headers), so a rule on GET is
/// never bypassed by HEAD.
pub(super) fn method_list(path: &str, names: &[String]) -> Result<Vec<http::Method>> {
    let mut methods: Vec<http::Method> = Vec::new();
    for name in names {
        let method = http::Method::from_bytes(name.to_ascii_uppercase().as_bytes())
            .map_err(|_| ConfigError::at(path, format!("{name:?} is not an HTTP method")))?;
        if !methods.contains(&method) {
            methods.push(method);
        }
    }
    if methods.contains(&http::Method::GET) && !methods.contains(&http::Method::HEAD) {
        methods.push(http::Method::HEAD);
    }
    Ok(methods)
}

pub(super) fn route_policy(
    path: &str,
    r: &RouteFile,
    authenticated: bool,
    params: &[&str],
) -> Result<RoutePolicy> {
    if !authenticated {
        for (key, given) in [
            ("require_scopes", r.require_scopes.is_some()),
            ("method_scopes", r.method_scopes.is_some()),
            ("require_organization", r.require_organization.is_some()),
        ] {
            if given {
                return Err(ConfigError::at(
                    format!("{path}.{key}"),
                    "a route with `auth: none` has no identity to check",
                ));
            }
        }
    }
    let organization = match &r.require_organization {
        Some(org) if org.trim().is_empty() => {
            return Err(ConfigError::at(
                format!("{path}.require_organization"),
                "an organization id, or `\"{org}\"` for a path parameter",
            ))
        }
        Some(org) => {
            placeholders(&format!("{path}.require_organization"), org, params)?;
            Some(org.clone())
        }
        None => None,
    };
    let scopes = match &r.require_scopes {
        Some(ScopeRuleFile { all_of, any_of }) => {
            if all_of.is_empty() && any_of.is_empty() {
                return Err(ConfigError::at(
                    format!("{path}.require_scopes"),
                    "give `all_of` and/or `any_of`",
                ));
            }
            scope_rule(&format!("{path}.require_scopes"), all_of, any_of, params)?
        }
        None => ScopeRule::default(),
    };
    let mut method_scopes = Vec::new();
    for (i, m) in r.method_scopes.iter().flatten().enumerate() {
        let mpath = format!("{path}.method_scopes[{i}]");
        let MethodScopesFile {
            methods,
            all_of,
            any_of,
        } = m;
        if methods.is_empty() {
            return Err(ConfigError::at(
                format!("{mpath}.methods"),
                "list at least one method",
            ));
        }
        if all_of.is_empty() && any_of.is_empty() {
            return Err(ConfigError::at(mpath, "give `all_of` and/or `any_of`"));
        }
        let methods = method_list(&format!("{mpath}.methods"), methods)?;
        method_scopes.push(MethodScopes {
            methods,
            rule: scope_rule(&mpath, all_of, any_of, params)?,
        });
    }
    let methods = match &r.methods {
        None => Vec::new(),
        Some(list) if list.is_empty() => {
            return Err(ConfigError::at(
                format!("{path}.methods"),
                "list the methods the route takes (or leave `methods` out: any method)",
            ))
        }
        Some(list) => method_list(&format!("{path}.methods"), list)?,
    };
    if !method_scopes.is_empty() && r.require_scopes.is_none() && methods.is_empty() {
        // The trap: "GET needs X, POST needs Y" written with `method_scopes` alone lets
        // every other method through with any valid token.
        let mut covered: Vec<&str> = Vec::new();
        for m in method_scopes.iter().flat_map(|m| m.methods.iter()) {
            if !covered.contains(&m.as_str()) {
                covered.push(m.as_str());
            }
        }
        return Err(ConfigError::at(
            format!("{path}.method_scopes"),
            format!(
                "only {} have scope rules here: any other method (PUT, DELETE, PATCH, OPTIONS, …) \
                 would pass with any valid token. Add `methods: [{}]` to refuse the others \
                 (405), or `require_scopes` for every method, or list the other methods the \
                 route takes in `methods` too",
                covered.join(", "),
                covered.join(", ")
            ),
        ));
    }
    Ok(RoutePolicy {
        methods,
        scopes,
        method_scopes,
        allow_cidrs: cidrs(
            &format!("{path}.allow_cidrs"),
            r.allow_cidrs.as_deref().unwrap_or(&[]),
        )?,
        deny_cidrs: cidrs(
            &format!("{path}.deny_cidrs"),
            r.deny_cidrs.as_deref().unwrap_or(&[]),
        )?,
        mode: match r.mode {
            Some(ModeFile::Report) => Mode::Report,
            Some(ModeFile::Enforce) | None => Mode::Enforce,
        },
        organization,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::validate::{assert_error_paths, error_paths};

    const PROVIDER: &str = "providers:\n  p: { kind: bitgo, url: http://127.0.0.1:1/s }\n";

    /// Each route is judged alone; a route naming a broken definition is not judged.
    #[test]
    fn routes_name_what_exists_and_leave_no_method_open() {
        let table: &[(&str, &[&str])] = &[
            ("routes:\n  - { path_prefix: /, provider: p, upstream: echo }\n", &[]),
            ("routes:\n  - { path_prefix: /, upstream: echo }\n", &["routes[0].provider"]),
            ("routes:\n  - { path_prefix: /, auth: none, provider: p, upstream: echo }\n", &["routes[0].provider"]),
            ("routes:\n  - { path_prefix: /, provider: q, upstream: echo }\n", &["routes[0].provider"]),
            ("routes:\n  - { path_prefix: /a/../b, auth: none, upstream: echo }\n", &["routes[0].path_prefix"]),
            ("routes:\n  - { path_prefix: /, auth: none, upstream: echo }\n  - { path_prefix: /, auth: none, upstream: echo }\n", &["routes[1].path_prefix"]),
            ("routes:\n  - { path_prefix: /, provider: p, upstream: echo, method_scopes: [{ methods: [POST], all_of: [w] }] }\n", &["routes[0].method_scopes"]),
            ("routes:\n  - { path_prefix: /, provider: p, upstream: echo, methods: [GET, POST], method_scopes: [{ methods: [POST], all_of: [w] }] }\n", &[]),
            ("routes:\n  - { path_prefix: /, provider: p, upstream: echo, require_client_certificate: [] }\n", &["routes[0].require_client_certificate"]),
            ("routes:\n  - { path_prefix: /, auth: none, upstream: echo, stale_if_error: 5s }\n", &["routes[0].stale_if_error"]),
        ];
        for (routes, want) in table {
            assert_error_paths(&format!("{PROVIDER}{routes}"), want);
        }
        // The provider's own error is reported; the route naming it is not judged.
        let broken = "providers:\n  p: { kind: bitgo, url: nope }\nroutes:\n  - { path_prefix: /, provider: p, upstream: nowhere }\n";
        assert_eq!(error_paths(broken), ["providers.p.url"]);
    }

    /// `path` templates, scope and organization placeholders and `rules:` are checked when
    /// the file is loaded: each error names its key, a rule's also its line.
    #[test]
    fn templates_placeholders_and_rules_are_checked_at_load() {
        let r = |extra: &str| {
            format!("{PROVIDER}routes:\n  - {{ path: \"/orgs/{{org}}/w/{{walletId}}\", provider: p, upstream: echo{extra} }}\n")
        };
        let table: &[(String, &[&str])] = &[
            (r(""), &[]),
            (r(", require_organization: \"{org}\""), &[]),
            (r(", require_scopes: { any_of: [\"wallet_spend:{walletId}\", wallet_spend_all] }"), &[]),
            (r(", require_scopes: { all_of: [\"spend:{wallet}\"] }"), &["routes[0].require_scopes.all_of[0]"]),
            (r(", require_organization: \"{tenant}\""), &["routes[0].require_organization"]),
            (r(", require_organization: \"{org\""), &["routes[0].require_organization"]),
            (r(", path_prefix: /x"), &["routes[0].path"]),
            (r(", rules: [{ name: a, expr: \"true\" }, { name: a, expr: \"true\" }]"), &["routes[0].rules[1].name"]),
            (r(", rules: [{ name: a, expr: \"true\", status: 401 }]"), &["routes[0].rules[0].status"]),
            (r(", rules: []"), &["routes[0].rules"]),
            (format!("{PROVIDER}routes:\n  - {{ path: \"/orgs/{{org\", provider: p, upstream: echo }}\n"), &["routes[0].path"]),
            (format!("{PROVIDER}routes:\n  - {{ provider: p, upstream: echo }}\n"), &["routes[0].path_prefix"]),
            (format!("{PROVIDER}routes:\n  - {{ path_prefix: /, auth: none, upstream: echo, require_organization: x }}\n"), &["routes[0].require_organization"]),
            // Shadowed: the same shape on the same host, whatever the parameters are called.
            (format!("{PROVIDER}routes:\n  - {{ path: \"/o/{{a}}\", provider: p, upstream: echo }}\n  - {{ path: \"/o/{{b}}\", provider: p, upstream: echo }}\n"), &["routes[1].path"]),
            (format!("{PROVIDER}routes:\n  - {{ path_prefix: /files, provider: p, upstream: echo }}\n  - {{ path: \"/files/{{rest*}}\", provider: p, upstream: echo }}\n"), &["routes[1].path"]),
            (format!("{PROVIDER}routes:\n  - {{ path_prefix: /files, provider: p, upstream: echo }}\n  - {{ path: \"/files/{{rest*}}\", host: a.example, provider: p, upstream: echo }}\n"), &[]),
        ];
        for (config, want) in table {
            assert_error_paths(config, want);
        }
        let shadowed = crate::config::from_str(
            &format!("listen: 127.0.0.1:1\n{PROVIDER}routes:\n  - {{ name: first, path: \"/o/{{a}}\", provider: p, upstream: echo }}\n  - {{ name: second, path: \"/o/{{b}}\", provider: p, upstream: echo }}\n"),
            std::path::Path::new("."),
        )
        .unwrap_err()
        .to_string();
        assert!(
            shadowed.contains("routes[0] (`first`") && shadowed.contains("/o/{b}"),
            "{shadowed}"
        );
        for (expr, why) in [
            ("user.admin", "unknown variable `user`"),
            ("identity.scopes + 1 == 2", "type error"),
            ("identity.subject ==", "does not parse"),
            ("lower(identity.subject) == 'x'", "unknown function `lower`"),
        ] {
            let text = format!("listen: 127.0.0.1:1\n{PROVIDER}routes:\n  - path_prefix: /\n    provider: p\n    upstream: echo\n    rules:\n      - name: r\n        expr: \"{expr}\"\n");
            let e = crate::config::from_str(&text, std::path::Path::new("."))
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("line 10 column 9: routes[0].rules[0].expr: "),
                "{e}"
            );
            assert!(e.contains(why), "{e}");
        }
    }
}
