//! A provider that asks an HTTP endpoint about each token: a request template (where the
//! token goes, how the gateway authenticates itself) plus a [`ResponseMapping`] and a status
//! mapping. The built-in provider kinds are instances of it (see [`super::presets`]).

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::BytesMut;
use reqwest::{Method, StatusCode};

use super::mapping::ResponseMapping;
use super::{InvalidReason, Provider, ProviderError, Resolution};
use crate::config::Secret;

/// Where the user's token goes in the provider request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenPlacement {
    /// `Authorization: Bearer <token>` (BitGo, OIDC UserInfo).
    BearerHeader,
    /// An `application/x-www-form-urlencoded` body field (RFC 7662 `token=`), with fixed
    /// extra fields such as `token_type_hint=access_token`.
    FormField {
        name: String,
        extra: Vec<(String, String)>,
    },
}

/// How the gateway authenticates itself to the provider.
#[derive(Debug, Clone)]
pub enum Credential {
    None,
    Basic { user: String, password: Secret },
}

/// Which answers mean what, besides 2xx.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusMapping {
    /// Statuses that mean "this token is not valid": 401 to the client, negative-cached.
    pub invalid_token: Vec<u16>,
    /// Statuses that mean "the gateway's own credential is wrong": 503, logged loudly.
    pub credential_rejected: Vec<u16>,
}

/// Everything needed to build an [`HttpProvider`].
#[derive(Debug, Clone)]
pub struct HttpProviderSpec {
    pub kind: &'static str,
    pub method: Method,
    pub url: reqwest::Url,
    pub token: TokenPlacement,
    pub credential: Credential,
    pub statuses: StatusMapping,
    pub mapping: ResponseMapping,
    pub timeout: Duration,
    pub max_response_bytes: usize,
    /// Extra PEM CA certificates trusted on top of the system store.
    pub extra_roots: Vec<reqwest::Certificate>,
}

/// The runtime provider: a spec plus its HTTP client.
#[derive(Debug)]
pub struct HttpProvider {
    spec: HttpProviderSpec,
    client: reqwest::Client,
}

/// Makes sure rustls has its crypto provider (ring, the one Pingora links too).
pub fn install_crypto_provider() {
    // An error only means a provider is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl HttpProvider {
    /// Builds the client: no redirects (a token must not follow a redirect), the system CA
    /// store plus `extra_roots`, the spec's timeout for the whole call.
    pub fn new(spec: HttpProviderSpec) -> Result<Self, String> {
        install_crypto_provider();
        let client = reqwest::Client::builder()
            .user_agent(concat!("sessiongate/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(spec.timeout)
            .connect_timeout(spec.timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .tls_certs_merge(spec.extra_roots.clone())
            .build()
            .map_err(|e| error_chain(&e))?;
        Ok(HttpProvider { spec, client })
    }

    /// The spec this provider was built from.
    pub fn spec(&self) -> &HttpProviderSpec {
        &self.spec
    }

    fn request(&self, token: &str) -> reqwest::RequestBuilder {
        let s = &self.spec;
        let mut req = self
            .client
            .request(s.method.clone(), s.url.clone())
            .header(reqwest::header::ACCEPT, "application/json");
        req = match &s.token {
            TokenPlacement::BearerHeader => req.bearer_auth(token),
            TokenPlacement::FormField { name, extra } => {
                let mut form = url::form_urlencoded::Serializer::new(String::new());
                form.append_pair(name, token);
                for (k, v) in extra {
                    form.append_pair(k, v);
                }
                req.header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(form.finish())
            }
        };
        match &s.credential {
            Credential::None => req,
            Credential::Basic { user, password } => req.basic_auth(user, Some(password.expose())),
        }
    }

    async fn read_body(&self, mut resp: reqwest::Response) -> Result<BytesMut, ProviderError> {
        let limit = self.spec.max_response_bytes;
        if resp.content_length().is_some_and(|n| n > limit as u64) {
            return Err(ProviderError::TooLarge(limit));
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.transport_error(e))? {
            if body.len() + chunk.len() > limit {
                return Err(ProviderError::TooLarge(limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn transport_error(&self, e: reqwest::Error) -> ProviderError {
        if e.is_timeout() {
            ProviderError::Timeout(self.spec.timeout)
        } else {
            // The URL may carry the token for some templates: never keep it.
            ProviderError::Unreachable(error_chain(&e.without_url()))
        }
    }

    fn classify(&self, status: StatusCode) -> Option<Result<Resolution, ProviderError>> {
        let code = status.as_u16();
        if self.spec.statuses.invalid_token.contains(&code) {
            return Some(Ok(Resolution::Invalid(InvalidReason::RejectedStatus(code))));
        }
        if self.spec.statuses.credential_rejected.contains(&code) {
            return Some(Err(ProviderError::CredentialRejected(code)));
        }
        if !status.is_success() {
            return Some(Err(ProviderError::Status(code)));
        }
        None
    }
}

/// A transport error with its causes, e.g. "error sending request: connection refused".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[async_trait]
impl Provider for HttpProvider {
    fn kind(&self) -> &'static str {
        self.spec.kind
    }

    async fn resolve(&self, token: &str) -> Result<Resolution, ProviderError> {
        let resp = self
            .request(token)
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        if let Some(decided) = self.classify(resp.status()) {
            return decided;
        }
        let body = self.read_body(resp).await?;
        let doc: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
            if body.is_empty() {
                ProviderError::NotJson("empty body".into())
            } else {
                ProviderError::NotJson(e.to_string())
            }
        })?;
        self.spec.mapping.apply(&doc, SystemTime::now())
    }
}
