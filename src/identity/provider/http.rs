//! A provider that asks an HTTP endpoint about each token: a request template (where the
//! token goes, how the gateway authenticates itself) plus a [`ResponseMapping`] and a status
//! mapping. The built-in provider kinds are instances of it (see [`super::presets`]).

use crate::telemetry::logging::error_chain;
use crate::telemetry::trace;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::BytesMut;
use reqwest::Method;

use super::mapping::{AnswerClass, AnswerRules, ResponseMapping};
use super::{BuildError, InvalidReason, Provider, ProviderError, Resolution};
use crate::clock::SharedClock;
use crate::secret::Secret;

/// Where the user's token goes in the provider request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenPlacement {
    /// `Authorization: Bearer <token>` (BitGo, OIDC UserInfo).
    Bearer,
    /// `Authorization: <token>`, the raw value (EnOS).
    Authorization,
    /// Another request header.
    Header(http::HeaderName),
    /// A query parameter.
    Query(String),
    /// An `application/x-www-form-urlencoded` body field (RFC 7662 `token=`).
    Form(String),
    /// A top-level field of a JSON body (Krystal `{"token": …}`).
    Json(String),
    /// The `{token}` placeholder in the URL path, percent-encoded (Prefactor).
    Path,
}

impl TokenPlacement {
    /// True when the token occupies the `Authorization` header.
    pub(crate) fn uses_authorization(&self) -> bool {
        matches!(self, TokenPlacement::Bearer | TokenPlacement::Authorization)
            || matches!(self, TokenPlacement::Header(h) if h == http::header::AUTHORIZATION)
    }

    /// True when the token goes in a request body.
    pub(crate) fn uses_body(&self) -> bool {
        matches!(self, TokenPlacement::Form(_) | TokenPlacement::Json(_))
    }
}

/// How the gateway authenticates itself to the provider.
#[derive(Debug, Clone)]
pub(crate) enum Credential {
    None,
    Basic { user: String, password: Secret },
    Bearer(Secret),
}

/// Everything needed to build an [`HttpProvider`].
#[derive(Debug, Clone)]
pub struct HttpProviderSpec {
    pub(crate) kind: &'static str,
    pub(crate) method: Method,
    /// The endpoint; with `TokenPlacement::Path` it contains `{token}`.
    pub(crate) url: String,
    pub(crate) token: TokenPlacement,
    /// Static request headers (never secrets: those go in `credential`).
    pub(crate) headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Static body fields sent with a form or JSON token.
    pub(crate) body: Vec<(String, serde_json::Value)>,
    pub(crate) credential: Credential,
    pub(crate) outcome: AnswerRules,
    pub(crate) mapping: ResponseMapping,
    pub(crate) timeout: Duration,
    pub(crate) max_response_bytes: usize,
    /// Extra PEM CA certificates trusted on top of the system store.
    pub(crate) extra_roots: Vec<reqwest::Certificate>,
}

/// The runtime provider: a spec plus its HTTP client.
#[derive(Debug)]
pub(crate) struct HttpProvider {
    spec: HttpProviderSpec,
    client: reqwest::Client,
    /// The endpoint, parsed once (query tokens are appended to a copy).
    url: url::Url,
    /// What identities' expiry is judged on.
    clock: SharedClock,
}

/// Makes sure rustls has its crypto provider (ring, the one Pingora links too).
pub fn install_crypto_provider() {
    // An error only means a provider is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

thread_local! {
    static CLIENTS_BUILT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// HTTP clients built on the calling thread so far: how tests show that validating a
/// config (`--check`) builds none — specs are plain data; clients are built with the
/// running gateway's providers ([`super::ProviderSpec::build`]).
pub fn clients_built_on_this_thread() -> usize {
    CLIENTS_BUILT.with(|c| c.get())
}

/// The HTTP client every outbound call of the gateway uses (providers, JWKS): our user
/// agent, `timeout` for the whole call, the system CA store plus `extra_roots`.
pub(crate) fn client(
    timeout: Duration,
    extra_roots: Vec<reqwest::Certificate>,
    redirect: reqwest::redirect::Policy,
) -> Result<reqwest::Client, BuildError> {
    install_crypto_provider();
    CLIENTS_BUILT.with(|c| c.set(c.get() + 1));
    reqwest::Client::builder()
        .user_agent(concat!("sessiongate/", env!("CARGO_PKG_VERSION")))
        .redirect(redirect)
        .timeout(timeout)
        .connect_timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(60))
        .tls_certs_merge(extra_roots)
        .build()
        .map_err(|e| BuildError::HttpClient(error_chain(&e)))
}

/// An outbound call made for a traced request (a provider call, a JWKS fetch): its
/// client span, named `{method} {path}` from `path` — a template or a path that carries
/// no token, never the URL as sent — with the callee's address, and `req` carrying a
/// `traceparent` that names it. `None` (and `req` as it was) for a request not sampled.
pub(crate) fn traced_call(
    mut req: reqwest::RequestBuilder,
    method: &str,
    (path_key, path): (&'static str, &str),
    url: &url::Url,
) -> (reqwest::RequestBuilder, Option<trace::ChildSpan>) {
    let Some(mut s) = trace::child(format!("{method} {path}"), trace::SpanKind::Client) else {
        return (req, None);
    };
    s.attr("http.request.method", method.to_string());
    s.attr(path_key, path.to_string());
    if let Some(host) = url.host_str() {
        s.attr("server.address", host.to_string());
    }
    if let Some(port) = url.port_or_known_default() {
        s.attr("server.port", i64::from(port));
    }
    req = req.header("traceparent", &s.traceparent()[..]);
    (req, Some(s))
}

/// The callee's answer on its span: the status, and whether the call failed by it.
pub(crate) fn answered(
    span: &mut Option<trace::ChildSpan>,
    status: reqwest::StatusCode,
    failed: bool,
) {
    if let Some(s) = span {
        s.attr("http.response.status_code", status.as_u16());
        if failed {
            s.fail(status.as_str().to_string());
        }
    }
}

/// Reads a response body of at most `limit` bytes, refusing a larger one as soon as its
/// `Content-Length` or its running size says so (never buffering it whole).
pub(crate) async fn read_limited(
    mut resp: reqwest::Response,
    limit: usize,
    transport_error: impl Fn(reqwest::Error) -> ProviderError,
) -> Result<BytesMut, ProviderError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ProviderError::TooLarge(limit));
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = resp.chunk().await.map_err(&transport_error)? {
        if body.len() + chunk.len() > limit {
            return Err(ProviderError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

impl HttpProvider {
    /// Builds the client: no redirects (a token must not follow a redirect), the system CA
    /// store plus `extra_roots`, the spec's timeout for the whole call.
    pub fn new(spec: HttpProviderSpec, clock: SharedClock) -> Result<Self, BuildError> {
        let url = url::Url::parse(&spec.url).map_err(|e| BuildError::Url {
            url: spec.url.clone(),
            reason: e.to_string(),
        })?;
        let client = client(
            spec.timeout,
            spec.extra_roots.clone(),
            reqwest::redirect::Policy::none(),
        )?;
        Ok(HttpProvider {
            spec,
            client,
            url,
            clock,
        })
    }

    fn request(&self, token: &str) -> reqwest::RequestBuilder {
        let s = &self.spec;
        let url = match &s.token {
            TokenPlacement::Path => s.url.replace("{token}", &encode_path_segment(token)),
            TokenPlacement::Query(name) => {
                let mut url = self.url.clone();
                url.query_pairs_mut().append_pair(name, token);
                url.into()
            }
            _ => s.url.clone(),
        };
        let mut req = self
            .client
            .request(s.method.clone(), url)
            .header(reqwest::header::ACCEPT, "application/json");
        for (name, value) in &s.headers {
            req = req.header(name, value);
        }
        req = match &s.credential {
            Credential::None => req,
            Credential::Basic { user, password } => req.basic_auth(user, Some(password.expose())),
            Credential::Bearer(key) => req.bearer_auth(key.expose()),
        };
        match &s.token {
            TokenPlacement::Bearer => req.bearer_auth(token),
            TokenPlacement::Authorization => req.header(reqwest::header::AUTHORIZATION, token),
            TokenPlacement::Header(name) => req.header(name, token),
            TokenPlacement::Query(_) | TokenPlacement::Path => req,
            TokenPlacement::Form(name) => {
                let mut form = url::form_urlencoded::Serializer::new(String::new());
                form.append_pair(name, token);
                for (k, v) in &s.body {
                    form.append_pair(k, &v.as_str().map_or_else(|| v.to_string(), str::to_string));
                }
                req.header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(form.finish())
            }
            TokenPlacement::Json(field) => {
                let mut body = serde_json::Map::new();
                for (k, v) in &s.body {
                    body.insert(k.clone(), v.clone());
                }
                body.insert(field.clone(), serde_json::Value::String(token.to_string()));
                let bytes = serde_json::to_vec(&body).expect("a JSON map always serializes");
                req.header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(bytes)
            }
        }
    }

    /// The URL as configured, for the provider call's span: its path, without the query
    /// (`{token}` stays a placeholder; a query-placed token is added after), never the
    /// URL as sent.
    fn url_template(&self) -> &str {
        let path = self.spec.url.split(['?', '#']).next().unwrap_or_default();
        path.find("://")
            .and_then(|i| path[i + 3..].find('/').map(|j| &path[i + 3 + j..]))
            .unwrap_or("/")
    }

    fn transport_error(&self, e: reqwest::Error) -> ProviderError {
        if e.is_timeout() {
            ProviderError::Timeout(self.spec.timeout)
        } else {
            // The URL may carry the token for some templates: never keep it.
            ProviderError::Unreachable(error_chain(&e.without_url()))
        }
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters, for a path segment.
fn encode_path_segment(token: &str) -> String {
    let mut out = String::with_capacity(token.len());
    for b in token.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[async_trait]
impl Provider for HttpProvider {
    fn kind(&self) -> &'static str {
        self.spec.kind
    }

    /// A token placed in the URL path must stay one segment: `.` and `..` would be read as
    /// dot segments (by the URL parser already) and call another endpoint with the
    /// gateway's own credential. Such tokens are refused without a call.
    fn accepts(&self, token: &str) -> bool {
        !(self.spec.token == TokenPlacement::Path && matches!(token, "." | ".." | ""))
    }

    async fn resolve(&self, token: &str) -> Result<Resolution, ProviderError> {
        if !self.accepts(token) {
            return Ok(Resolution::Invalid(InvalidReason::RejectedStatus(404)));
        }
        let (req, mut span) = traced_call(
            self.request(token),
            self.spec.method.as_str(),
            ("url.template", self.url_template()),
            &self.url,
        );
        if let Some(s) = &mut span {
            s.attr("sessiongate.provider.kind", self.spec.kind);
        }
        let resp = req.send().await.map_err(|e| {
            let e = self.transport_error(e);
            if let Some(s) = &mut span {
                s.fail(e.kind());
            }
            e
        })?;
        let status = resp.status();
        answered(&mut span, status, status.is_server_error());
        let limit = self.spec.max_response_bytes;
        let body = match read_limited(resp, limit, |e| self.transport_error(e)).await {
            Ok(body) => body,
            // An oversized error page still has a status the rules can judge.
            Err(ProviderError::TooLarge(_)) if !status.is_success() => BytesMut::new(),
            Err(e) => return Err(e),
        };
        match judge(
            &self.spec.outcome,
            &self.spec.mapping,
            status.as_u16(),
            &body,
            self.clock.now(),
        ) {
            // The URL was built from the client's token: "no such resource" means no such
            // session (Prefactor answers 404 for unknown ids), never a provider failure, or
            // unknown tokens would open the circuit breaker for every user.
            Err(ProviderError::Status(404)) if self.spec.token == TokenPlacement::Path => {
                Ok(Resolution::Invalid(InvalidReason::RejectedStatus(404)))
            }
            other => other,
        }
    }
}

/// Judges one provider answer (status and body) with a kind's rules and mapping: the pure
/// part of [`HttpProvider::resolve`], also what the fuzz target drives. A status outside
/// 2xx never yields a valid identity.
pub fn judge(
    outcome: &AnswerRules,
    mapping: &ResponseMapping,
    status: u16,
    body: &[u8],
    now: SystemTime,
) -> Result<Resolution, ProviderError> {
    let doc: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    match outcome.verdict(status, doc.as_ref()) {
        AnswerClass::Invalid => {
            return Ok(Resolution::Invalid(InvalidReason::RejectedStatus(status)))
        }
        AnswerClass::Broken => return Err(ProviderError::Refused(status)),
        AnswerClass::Undecided if !(200..300).contains(&status) => {
            return Err(ProviderError::Status(status))
        }
        AnswerClass::Undecided => {}
    }
    let doc = match doc {
        Some(doc) => doc,
        None if body.is_empty() => return Err(ProviderError::NotJson("empty body".into())),
        None => {
            let e = serde_json::from_slice::<serde_json::Value>(body)
                .err()
                .map_or_else(String::new, |e| e.to_string());
            return Err(ProviderError::NotJson(e));
        }
    };
    outcome.check_success(&doc)?;
    mapping.apply(&doc, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_tokens_are_encoded_as_one_segment() {
        assert_eq!(encode_path_segment("013xrzp12g3nqk8n"), "013xrzp12g3nqk8n");
        assert_eq!(
            encode_path_segment("a/../b?c#d e%"),
            "a%2F..%2Fb%3Fc%23d%20e%25"
        );
    }
}
