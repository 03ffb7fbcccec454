//! Test fixtures that are real servers on 127.0.0.1: a fake identity provider, a fake
//! upstream (both small hyper servers whose behaviour each test scripts), and the gateway
//! itself started in-process from a YAML config.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sessiongate::{Gateway, GatewayHandle};

/// A port that was free a moment ago (the gateway binds it itself), never handed out
/// before in this test binary: two calls in a row can get the same port from the kernel.
pub fn free_port() -> u16 {
    static TAKEN: Mutex<Option<std::collections::HashSet<u16>>> = Mutex::new(None);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if TAKEN
            .lock()
            .unwrap()
            .get_or_insert_with(Default::default)
            .insert(port)
        {
            return port;
        }
    }
}

/// A request as a fake server received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    /// Lower-case header names; repeated headers keep every value.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    /// All values of header `name` (lower-case).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The single value of header `name`, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        let all = self.all(name);
        assert!(
            all.len() <= 1,
            "header {name} appears {} times: {all:?}",
            all.len()
        );
        all.first().copied()
    }
}

/// What a fake answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub content_type: &'static str,
    pub delay: Duration,
}

impl Reply {
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        Reply {
            status,
            body: serde_json::to_vec(&body).unwrap(),
            content_type: "application/json",
            delay: Duration::ZERO,
        }
    }

    pub fn raw(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Reply {
            status,
            body: body.into(),
            content_type,
            delay: Duration::ZERO,
        }
    }

    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

type Handler = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

/// A scripted HTTP/1.1 server on 127.0.0.1 that records every request.
pub struct Fake {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    calls: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Fake {
    /// Starts a fake answering with `handler`. Must be called inside a tokio runtime.
    pub async fn start(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Fake {
        Fake::serve(Arc::new(handler), None).await
    }

    /// Like [`Fake::start`], over HTTPS with the given certificate chain and key.
    pub async fn start_tls(
        handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
        tls: tokio_rustls::TlsAcceptor,
    ) -> Fake {
        Fake::serve(Arc::new(handler), Some(tls)).await
    }

    async fn serve(handler: Handler, tls: Option<tokio_rustls::TlsAcceptor>) -> Fake {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let calls = Arc::new(AtomicUsize::new(0));
        let state = (handler, seen.clone(), calls.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = state.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        None => serve_connection(stream, state).await,
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                serve_connection(stream, state).await
                            }
                        }
                    }
                });
            }
        });
        Fake {
            addr,
            seen,
            calls,
            task,
        }
    }

    /// A fake upstream that answers 200 `upstream ok` to everything.
    pub async fn upstream() -> Fake {
        Fake::start(|_| Reply::raw(200, "text/plain", "upstream ok")).await
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests received so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The last request received.
    pub fn last(&self) -> Seen {
        self.seen().last().cloned().expect("no request received")
    }
}

type FakeState = (Handler, Arc<Mutex<Vec<Seen>>>, Arc<AtomicUsize>);

async fn serve_connection<IO>(io: IO, (handler, seen, calls): FakeState)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let (handler, seen, calls) = (handler.clone(), seen.clone(), calls.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let request = Seen {
                method: parts.method.to_string(),
                uri: parts.uri.to_string(),
                headers: parts
                    .headers
                    .iter()
                    .map(|(k, v)| {
                        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                        (k.as_str().to_string(), v)
                    })
                    .collect(),
                body: body.to_vec(),
            };
            calls.fetch_add(1, Ordering::SeqCst);
            seen.lock().unwrap().push(request.clone());
            let reply = handler(&request);
            if !reply.delay.is_zero() {
                tokio::time::sleep(reply.delay).await;
            }
            let resp = hyper::Response::builder()
                .status(reply.status)
                .header("content-type", reply.content_type)
                .body(Full::new(Bytes::from(reply.body)))
                .unwrap();
            Ok::<_, Infallible>(resp)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .await;
}

/// A test CA and leaf certificates it signs.
pub struct Pki {
    pub ca_pem: String,
    pub issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    pub fn new() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        sessiongate::identity::provider::http::install_crypto_provider();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "sessiongate test CA");
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Pki {
            ca_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// (chain PEM, key PEM, leaf DER) for `names`.
    pub fn leaf(&self, names: &[&str]) -> (String, String, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }
}

/// A test certificate authority and a `localhost` / `127.0.0.1` server certificate it
/// signed: (CA certificate PEM, TLS acceptor for the server).
pub fn test_ca() -> (String, tokio_rustls::TlsAcceptor) {
    use rustls::pki_types::pem::PemObject;
    let pki = Pki::new();
    let (chain, key, _) = pki.leaf(&["localhost", "127.0.0.1"]);
    // The chain the server sends: the leaf, then the CA.
    let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(
        format!("{chain}{}", pki.ca_pem).as_bytes(),
    )
    .map(Result::unwrap)
    .collect();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    (
        pki.ca_pem,
        tokio_rustls::TlsAcceptor::from(Arc::new(config)),
    )
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a gateway from `yaml` after replacing `{listen}` and `{admin}` with free ports and
/// every `{key}` in `vars`. Panics with the config error if the YAML is invalid.
pub fn start_gateway(yaml: &str, vars: &[(&str, String)]) -> GatewayHandle {
    let text = render_config(yaml, &free_address(), &free_address(), vars);
    let settings = sessiongate::config::from_str(&text, std::path::Path::new("."))
        .unwrap_or_else(|e| panic!("test config invalid: {e}\n{text}"));
    let handle = Gateway::new(settings)
        .unwrap_or_else(|e| panic!("gateway cannot start: {e}"))
        .spawn();
    assert!(
        handle.wait_ready(Duration::from_secs(20)),
        "gateway did not become ready"
    );
    handle
}

/// The hex SHA-256 of a token: how static providers' `token_sha256` names it.
pub fn sha(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// `127.0.0.1:<a port that was free a moment ago>`.
pub fn free_address() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// `yaml` with `{listen}` and `{admin}` replaced by these addresses and every `{key}` by
/// its value in `vars`.
pub fn render_config(yaml: &str, listen: &str, admin: &str, vars: &[(&str, String)]) -> String {
    let mut text = yaml.replace("{listen}", listen).replace("{admin}", admin);
    for (k, v) in vars {
        text = text.replace(&format!("{{{k}}}"), v);
    }
    // `SESSIONGATE_TEST_DIRECT_PATH=off cargo test --test it` (in CI): every gateway sends
    // every request through Pingora's full proxy, so each test also holds there.
    if std::env::var("SESSIONGATE_TEST_DIRECT_PATH").as_deref() == Ok("off")
        && text.lines().any(|l| l.starts_with("listen:"))
        && !text.contains("direct_path:")
    {
        text.push_str("\ndirect_path: false\n");
    }
    text
}

/// Writes `yaml` (placeholders filled as [`start_gateway`] does) to `path` and starts a
/// gateway from that file (so it can reload) deciding on `clock`, watching the file every
/// `watch` if given.
pub fn start_gateway_from_file(
    yaml: &str,
    vars: &[(&str, String)],
    path: &std::path::Path,
    clock: sessiongate::clock::SharedClock,
    watch: Option<Duration>,
) -> GatewayHandle {
    let text = render_config(yaml, &free_address(), &free_address(), vars);
    std::fs::write(path, &text).unwrap();
    let settings = sessiongate::config::load(path)
        .unwrap_or_else(|e| panic!("test config invalid: {e}\n{text}"));
    let handle = Gateway::with_options(settings, Some(path.to_path_buf()), clock)
        .unwrap_or_else(|e| panic!("gateway cannot start: {e}"))
        .watch_config(watch)
        .spawn();
    assert!(
        handle.wait_ready(Duration::from_secs(20)),
        "gateway did not become ready"
    );
    handle
}

/// A fresh temporary directory for one test (removed by the OS's tmp cleaning).
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sessiongate-test-{name}-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A client that never pools connections between tests and follows no redirects.
/// Waits up to 20 s for a gateway run as a separate process to answer `/readyz` with 200
/// on `admin` (`host:port`).
pub async fn wait_for_readyz(c: &reqwest::Client, admin: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while c
        .get(format!("http://{admin}/readyz"))
        .send()
        .await
        .map_or(true, |r| r.status() != 200)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "gateway did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn client() -> reqwest::Client {
    sessiongate::identity::provider::http::install_crypto_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// `http://<proxy>` + path.
pub fn at(g: &GatewayHandle, path: &str) -> String {
    format!("http://{}{path}", g.proxy_addr)
}

/// The admin listener URL for `path`.
pub fn admin(g: &GatewayHandle, path: &str) -> String {
    format!("http://{}{path}", g.admin_addr)
}

/// The gateway's whole `/metrics` text.
pub async fn metrics_text(g: &GatewayHandle) -> String {
    client()
        .get(admin(g, "/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// `GET path` through the gateway with `Authorization: Bearer <token>`.
pub async fn get_bearer(g: &GatewayHandle, path: &str, token: &str) -> reqwest::Response {
    client()
        .get(at(g, path))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap()
}

/// Reads one counter/gauge sample from the gateway's `/metrics`, e.g.
/// `sessiongate_requests_total{mode="proxy",outcome="allowed",route="api"}`; 0 when absent.
pub async fn metric(g: &GatewayHandle, sample: &str) -> f64 {
    metrics_text(g)
        .await
        .lines()
        .find_map(|l| {
            l.strip_prefix(sample)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// Headers of a response as a map (lower-case names, last value wins).
pub fn header_map(resp: &reqwest::Response) -> HashMap<String, String> {
    resp.headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect()
}

/// Sends `request` (raw HTTP/1.1 bytes, sent exactly as given) and returns the whole
/// response text. For hostile requests an HTTP client library would tidy up.
pub async fn raw_http(addr: SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}
