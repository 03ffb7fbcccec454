//! TLS on the proxy's `tls.listen` listener: certificates from PEM files, chosen per
//! connection by SNI, reloaded when the files change.
//!
//! - **Versions and ciphers**: TLS 1.2 and 1.3 only, rustls' ring suites (AEAD only,
//!   forward secrecy only: no CBC, no RSA key exchange, no SHA-1 MACs).
//! - **SNI**: the first certificate whose names (SAN DNS names, wildcards as RFC 6125
//!   reads them, via webpki) cover the requested name, preferring one whose key the
//!   client can verify; no SNI, or no match, gets the first certificate.
//! - **Rotation**: [`CertStore::reload`] reads the files again and swaps the set in one
//!   step when their content changed; a set that does not load (a half-written secret, a
//!   key that is not the certificate's) keeps the old one and says why. Handshakes in
//!   flight keep the certificate they chose.
//!
//! Plain data ([`TlsListener`], [`CertificateFiles`]) comes from the config; what this
//! module builds from it (the rustls server config, the store) lives with the listener.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// One certificate: its chain (leaf first) and its private key, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertificateFiles {
    pub(crate) chain: PathBuf,
    pub(crate) key: PathBuf,
}

/// `tls:` — the TLS listener, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsListener {
    pub(crate) listen: SocketAddr,
    /// In order of preference; the first is the default (no SNI, unknown name). Read
    /// and parsed when the configuration is checked; the store reloads them in place.
    pub(crate) certificates: Arc<CertStore>,
    /// Offer HTTP/2 by ALPN (`h2`, then `http/1.1`).
    pub(crate) http2: bool,
    /// How often the certificate files are checked for a change; `None`: only on reload.
    pub(crate) watch: Option<Duration>,
    /// Client certificates (mTLS), verified against these CAs.
    pub(crate) client_certificates: Option<ClientCertificates>,
}

/// `tls.client_certificates`: which client certificates the listener verifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientCertificates {
    pub(crate) ca_file: PathBuf,
    /// The CA file's certificates (DER), read when the configuration is checked.
    pub(crate) roots: Vec<Vec<u8>>,
    /// A handshake without a certificate fails (else it is allowed, and routes that read
    /// `client_certificate` refuse the request).
    pub(crate) required: bool,
}

/// A verified client certificate, as the request path sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientCert {
    /// The identity: the first URI SAN (a SPIFFE id), else the first DNS SAN, else the
    /// subject's common name.
    pub(crate) id: String,
    /// The subject distinguished name (RFC 4514 text).
    pub(crate) subject: String,
}

/// The client certificates of open TLS connections, by the SHA-256 of their leaf (what
/// Pingora's TLS digest of a connection carries): the request path finds the verified
/// identity of its connection here, for HTTP/1.1 and HTTP/2 alike. An entry lives while a
/// connection that presented the certificate is open.
#[derive(Debug, Default)]
pub(crate) struct ClientCertRegistry {
    by_digest: Mutex<std::collections::HashMap<Vec<u8>, Registered>>,
}

/// A certificate and how many open connections presented it.
type Registered = (Arc<ClientCert>, usize);

/// Keeps a registration while its connection is open.
pub(crate) struct Registration {
    registry: Arc<ClientCertRegistry>,
    digest: Vec<u8>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut map = self
            .registry
            .by_digest
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some((_, count)) = map.get_mut(&self.digest) {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.digest);
            }
        }
    }
}

impl ClientCertRegistry {
    /// Registers the verified leaf `der` of a connection; `None` when it names no usable
    /// identity (its requests then carry no client certificate).
    pub(crate) fn register(self: &Arc<Self>, der: &[u8]) -> Option<Registration> {
        let cert = client_cert(der)?;
        let digest = ring::digest::digest(&ring::digest::SHA256, der)
            .as_ref()
            .to_vec();
        let mut map = self.by_digest.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(digest.clone())
            .and_modify(|(_, count)| *count += 1)
            .or_insert_with(|| (Arc::new(cert), 1));
        Some(Registration {
            registry: self.clone(),
            digest,
        })
    }

    /// The certificate of a connection, by the leaf digest of its TLS digest.
    pub(crate) fn get(&self, digest: &[u8]) -> Option<Arc<ClientCert>> {
        if digest.is_empty() {
            return None;
        }
        let map = self.by_digest.lock().unwrap_or_else(|e| e.into_inner());
        map.get(digest).map(|(c, _)| c.clone())
    }
}

/// Reads what the gateway uses of a (verified) client certificate; `None` when it names
/// nothing usable.
pub(crate) fn client_cert(der: &[u8]) -> Option<ClientCert> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let mut uri = None;
    let mut dns = None;
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::URI(u) if uri.is_none() => uri = Some((*u).to_string()),
                GeneralName::DNSName(d) if dns.is_none() => dns = Some((*d).to_string()),
                _ => {}
            }
        }
    }
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .map(str::to_string);
    let id = uri.or(dns).or(cn)?;
    // Identity values become header values: printable ASCII only.
    if id.is_empty() || !id.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return None;
    }
    Some(ClientCert {
        id,
        subject: cert.subject().to_string(),
    })
}

/// The verifier of `tls.client_certificates`.
fn client_verifier(
    c: &ClientCertificates,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for der in &c.roots {
        roots
            .add(CertificateDer::from(der.as_slice()))
            .map_err(|e| format!("{}: {e}", c.ca_file.display()))?;
    }
    let builder =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let builder = if c.required {
        builder
    } else {
        builder.allow_unauthenticated()
    };
    builder
        .build()
        .map_err(|e| format!("{}: {e}", c.ca_file.display()))
}

/// A loaded certificate and what is known of it.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) key: Arc<CertifiedKey>,
    /// The leaf's DNS names (SAN), or its common name when it has none; for logs.
    pub(crate) names: Vec<String>,
    /// The leaf's `notAfter`, seconds since the epoch.
    pub(crate) not_after: i64,
}

/// Reads one certificate pair, checking that the key belongs to the leaf.
#[cfg(test)]
pub(crate) fn load_pair(files: &CertificateFiles) -> Result<Loaded, String> {
    load_pair_and_key(files).map(|(loaded, _)| loaded)
}

/// The same, with the private key's DER (Pingora's client certificates take it): each
/// file read once.
pub(crate) fn load_pair_and_key(files: &CertificateFiles) -> Result<(Loaded, Vec<u8>), String> {
    let chain_pem = std::fs::read(&files.chain)
        .map_err(|e| format!("cannot read {}: {e}", files.chain.display()))?;
    let key_pem = std::fs::read(&files.key)
        .map_err(|e| format!("cannot read {}: {e}", files.key.display()))?;
    let (loaded, key) = pair_and_key_from_pem(&chain_pem, &key_pem, files)?;
    Ok((loaded, key.secret_der().to_vec()))
}

fn pair_from_pem(
    chain_pem: &[u8],
    key_pem: &[u8],
    files: &CertificateFiles,
) -> Result<Loaded, String> {
    pair_and_key_from_pem(chain_pem, key_pem, files).map(|(loaded, _)| loaded)
}

/// The pair, checked, and the private key it was made from (parsed once).
fn pair_and_key_from_pem(
    chain_pem: &[u8],
    key_pem: &[u8],
    files: &CertificateFiles,
) -> Result<(Loaded, PrivateKeyDer<'static>), String> {
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            format!(
                "{}: not a PEM certificate chain ({e})",
                files.chain.display()
            )
        })?;
    let Some(leaf) = chain.first() else {
        return Err(format!(
            "{}: no certificate in the file",
            files.chain.display()
        ));
    };
    let (names, not_after) = describe(leaf).map_err(|e| {
        format!(
            "{}: the first certificate does not parse ({e})",
            files.chain.display()
        )
    })?;
    // Never echo key material: the error names the file and the kind of problem only.
    let key_der = PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| {
        format!(
            "{}: no PEM private key (PKCS#8, PKCS#1 or SEC1) in the file",
            files.key.display()
        )
    })?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key_der).map_err(|_| {
        format!(
            "{}: a key type rustls cannot sign with (RSA, ECDSA P-256/P-384, Ed25519 are supported)",
            files.key.display()
        )
    })?;
    let key = CertifiedKey::new(chain, signer);
    key.keys_match().map_err(|_| {
        format!(
            "{} is not the private key of the first certificate in {}",
            files.key.display(),
            files.chain.display()
        )
    })?;
    let loaded = Loaded {
        key: Arc::new(key),
        names,
        not_after,
    };
    Ok((loaded, key_der))
}

/// The certificates (DER) of a CA bundle file: at least one; errors name the file.
pub(crate) fn read_ca_file(path: &std::path::Path) -> Result<Vec<Vec<u8>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let ders = certificates_from_pem(&pem).map_err(|e| format!("{}: {e}", path.display()))?;
    if ders.is_empty() {
        return Err(format!("{}: no certificate in the file", path.display()));
    }
    Ok(ders)
}

/// Every certificate (DER) in a PEM text.
pub(crate) fn certificates_from_pem(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let ders = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not PEM certificates ({e})"))?;
    for der in &ders {
        x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("a certificate does not parse ({e})"))?;
    }
    Ok(ders.into_iter().map(|d| d.as_ref().to_vec()).collect())
}

fn describe(leaf: &CertificateDer<'_>) -> Result<(Vec<String>, i64), String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).map_err(|e| e.to_string())?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) => names.push((*n).to_string()),
                GeneralName::IPAddress(ip) => names.push(format!("ip:{}", hex::encode(ip))),
                _ => {}
            }
        }
    }
    if names.is_empty() {
        if let Some(cn) = cert.subject().iter_common_name().next() {
            if let Ok(cn) = cn.as_str() {
                names.push(cn.to_string());
            }
        }
    }
    Ok((names, cert.validity().not_after.timestamp()))
}

/// What [`CertStore::reload`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CertificateChange {
    /// The files are as they were.
    Unchanged,
    /// A new set is in use.
    Loaded,
    /// The files changed but do not load; the old set stays in use.
    Rejected(String),
    /// The same content as the last rejected attempt (already reported).
    StillRejected,
    /// A periodic check saw new content (or a new read error) for the first time: it is
    /// acted on once the next check sees it unchanged (see [`CertStore::check`]).
    Settling,
}

/// The listener's certificates: a rustls resolver whose set can be swapped while
/// connections are being accepted.
pub(crate) struct CertStore {
    files: Vec<CertificateFiles>,
    current: ArcSwap<Vec<Loaded>>,
    seen: Mutex<Seen>,
}

/// What the store has read so far, as hashes of the files' contents (or, for a read that
/// failed, of its error).
#[derive(Debug, Clone, Copy)]
struct Seen {
    /// The content in use.
    loaded: u64,
    /// The last content reported as not loading.
    rejected: u64,
    /// What the last read found, loaded or not.
    last_read: u64,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("files", &self.files)
            .finish()
    }
}

/// Two stores are the same configuration when they serve the same files (what the files
/// hold is reloaded live).
impl PartialEq for CertStore {
    fn eq(&self, other: &Self) -> bool {
        self.files == other.files
    }
}

impl Eq for CertStore {}

impl CertStore {
    /// Loads every pair; the first problem is the error: the pair's index and a message
    /// naming the file.
    pub(crate) fn load(files: Vec<CertificateFiles>) -> Result<Self, (usize, String)> {
        let (contents, hash) = read_all(&files)?;
        let set = parse_all(&files, &contents)?;
        Ok(CertStore {
            files,
            current: ArcSwap::from_pointee(set),
            seen: Mutex::new(Seen {
                loaded: hash,
                rejected: hash,
                last_read: hash,
            }),
        })
    }

    /// Reads the files again and acts on what it finds at once: swaps the set in when their
    /// content changed and loads. For an explicit reload (SIGHUP, the admin API, a config
    /// reload), when the operator says the files are in place.
    pub(crate) fn reload(&self) -> CertificateChange {
        self.read_and_apply(false)
    }

    /// The periodic check (`tls.watch`): as [`CertStore::reload`], but new content is acted
    /// on only once it has stayed the same for one more check. Files rewritten in place are
    /// briefly half-written — a chain cut between two certificates still loads, as a shorter
    /// chain — and a pair is written one file at a time; a check that lands in between
    /// neither loads nor reports what it saw.
    pub fn check(&self) -> CertificateChange {
        self.read_and_apply(true)
    }

    fn read_and_apply(&self, settle: bool) -> CertificateChange {
        let read = read_all(&self.files);
        // An unreadable file has no content hash: one derived from the message stands in,
        // so the same problem is reported once.
        let hash = match &read {
            Ok((_, hash)) => *hash,
            Err((_, why)) => {
                let mut h = DefaultHasher::new();
                why.hash(&mut h);
                h.finish()
            }
        };
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            let stable = seen.last_read == hash;
            seen.last_read = hash;
            if hash == seen.loaded {
                return CertificateChange::Unchanged;
            }
            if hash == seen.rejected {
                return CertificateChange::StillRejected;
            }
            if settle && !stable {
                return CertificateChange::Settling;
            }
        }
        let result = read.and_then(|(contents, _)| parse_all(&self.files, &contents));
        let result = result.map_err(|(_, why)| why);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(set) => {
                self.current.store(Arc::new(set));
                seen.loaded = hash;
                seen.rejected = hash;
                CertificateChange::Loaded
            }
            Err(why) => {
                seen.rejected = hash;
                CertificateChange::Rejected(why)
            }
        }
    }

    /// The certificates in use, in configured order.
    pub(crate) fn current(&self) -> Arc<Vec<Loaded>> {
        self.current.load_full()
    }

    /// The certificate for a client that asked for `sni` and can verify `schemes`.
    fn choose(
        &self,
        sni: Option<&str>,
        schemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let set = self.current.load();
        let usable = |l: &Loaded| l.key.key.choose_scheme(schemes).is_some();
        if let Some(name) = sni.and_then(|s| ServerName::try_from(s).ok()) {
            let covers = |l: &Loaded| {
                l.key.cert.first().is_some_and(|leaf| {
                    webpki::EndEntityCert::try_from(leaf)
                        .is_ok_and(|ee| ee.verify_is_valid_for_subject_name(&name).is_ok())
                })
            };
            let matching = || set.iter().filter(|l| covers(l));
            if let Some(l) = matching().find(|l| usable(l)).or_else(|| matching().next()) {
                return Some(l.key.clone());
            }
        }
        set.iter()
            .find(|l| usable(l))
            .or_else(|| set.first())
            .map(|l| l.key.clone())
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.choose(hello.server_name(), hello.signature_schemes())
    }
}

/// Each pair's (chain, key) file contents.
type Contents = Vec<(Vec<u8>, Vec<u8>)>;

/// Reads every file; the contents and one hash of them all (an error: the pair's index
/// and a message naming the file).
fn read_all(files: &[CertificateFiles]) -> Result<(Contents, u64), (usize, String)> {
    let mut hasher = DefaultHasher::new();
    let mut out = Vec::with_capacity(files.len());
    for (i, f) in files.iter().enumerate() {
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|e| (i, format!("cannot read {}: {e}", path.display())))
        };
        let chain = read(&f.chain)?;
        let key = read(&f.key)?;
        chain.hash(&mut hasher);
        key.hash(&mut hasher);
        out.push((chain, key));
    }
    Ok((out, hasher.finish()))
}

fn parse_all(
    files: &[CertificateFiles],
    contents: &[(Vec<u8>, Vec<u8>)],
) -> Result<Vec<Loaded>, (usize, String)> {
    files
        .iter()
        .zip(contents)
        .enumerate()
        .map(|(i, (f, (chain, key)))| pair_from_pem(chain, key, f).map_err(|e| (i, e)))
        .collect()
}

/// The rustls server configuration of the TLS listener: TLS 1.2 and 1.3, the store as
/// certificate resolver, ALPN `h2` + `http/1.1` or `http/1.1` alone, client certificates
/// verified when configured.
pub(crate) fn server_config(
    store: Arc<CertStore>,
    listener: &TlsListener,
) -> Result<rustls::ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("the ring provider supports TLS 1.2 and 1.3");
    let builder = match &listener.client_certificates {
        Some(c) => builder.with_client_cert_verifier(client_verifier(c, provider)?),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(store);
    let http2 = listener.http2;
    // The server's suite order (strongest first), not the client's.
    config.ignore_client_order = true;
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    // Stateless tickets would need a key rotated across replicas; session ids (the
    // default in-memory cache) resume on the same process, which is enough.
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pair {
        chain: String,
        key: String,
    }

    fn pair(names: &[&str]) -> Pair {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let c = rcgen::generate_simple_self_signed(names).unwrap();
        Pair {
            chain: c.cert.pem(),
            key: c.signing_key.serialize_pem(),
        }
    }

    fn write(dir: &std::path::Path, name: &str, p: &Pair) -> CertificateFiles {
        let chain = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&chain, &p.chain).unwrap();
        std::fs::write(&key, &p.key).unwrap();
        CertificateFiles { chain, key }
    }

    fn tempdir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sg-tls-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn names_of(key: &CertifiedKey) -> Vec<String> {
        describe(key.cert.first().unwrap()).unwrap().0
    }

    const SCHEMES: &[rustls::SignatureScheme] = &[
        rustls::SignatureScheme::ECDSA_NISTP256_SHA256,
        rustls::SignatureScheme::RSA_PSS_SHA256,
        rustls::SignatureScheme::ED25519,
    ];

    #[test]
    fn sni_picks_the_certificate_that_covers_the_name_else_the_first() {
        let dir = tempdir("sni");
        let a = write(&dir, "a", &pair(&["api.example.com"]));
        let b = write(&dir, "b", &pair(&["*.internal.example"]));
        let store = CertStore::load(vec![a, b]).unwrap();
        let pick = |sni| names_of(&store.choose(sni, SCHEMES).unwrap());
        assert_eq!(pick(Some("api.example.com")), ["api.example.com"]);
        assert_eq!(pick(Some("API.Example.com")), ["api.example.com"]);
        assert_eq!(
            pick(Some("orders.internal.example")),
            ["*.internal.example"]
        );
        // A wildcard covers one label only.
        assert_eq!(pick(Some("a.b.internal.example")), ["api.example.com"]);
        assert_eq!(pick(Some("unknown.test")), ["api.example.com"]);
        assert_eq!(pick(None), ["api.example.com"]);
    }

    #[test]
    fn a_changed_file_is_loaded_a_broken_one_keeps_the_old_set() {
        let dir = tempdir("reload");
        let files = write(&dir, "s", &pair(&["old.example"]));
        let store = CertStore::load(vec![files.clone()]).unwrap();
        assert_eq!(store.reload(), CertificateChange::Unchanged);

        let new = pair(&["new.example"]);
        std::fs::write(&files.chain, &new.chain).unwrap();
        // Chain written, key not yet: the pair does not match, the old set stays.
        match store.reload() {
            CertificateChange::Rejected(why) => {
                assert!(why.contains("is not the private key"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(store.reload(), CertificateChange::StillRejected);
        assert_eq!(store.current()[0].names, ["old.example"]);
        std::fs::write(&files.key, &new.key).unwrap();
        assert_eq!(store.reload(), CertificateChange::Loaded);
        assert_eq!(store.current()[0].names, ["new.example"]);

        std::fs::write(&files.chain, "not pem").unwrap();
        assert!(matches!(store.reload(), CertificateChange::Rejected(_)));
        assert_eq!(store.current()[0].names, ["new.example"]);
        std::fs::remove_file(&files.key).unwrap();
        match store.reload() {
            CertificateChange::Rejected(why) => assert!(why.contains("cannot read"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(store.reload(), CertificateChange::StillRejected);
    }

    #[test]
    fn a_periodic_check_acts_on_new_files_once_they_stay_the_same() {
        let dir = tempdir("settle");
        let files = write(&dir, "s", &pair(&["old.example"]));
        let store = CertStore::load(vec![files.clone()]).unwrap();
        assert_eq!(store.check(), CertificateChange::Unchanged);

        // A chain rewritten in place, caught after its first certificate: a valid, shorter
        // chain (with the old key it does not load either way), then the whole one.
        let leaf = pair(&["new.example"]);
        let ca = pair(&["ca.example"]);
        let full = format!("{}{}", leaf.chain, ca.chain);
        std::fs::write(&files.key, &leaf.key).unwrap();
        std::fs::write(&files.chain, &leaf.chain).unwrap();
        assert_eq!(store.check(), CertificateChange::Settling);
        std::fs::write(&files.chain, &full).unwrap();
        assert_eq!(
            store.check(),
            CertificateChange::Settling,
            "changed again: still settling"
        );
        assert_eq!(store.current()[0].names, ["old.example"]);
        assert_eq!(store.check(), CertificateChange::Loaded);
        assert_eq!(store.current()[0].names, ["new.example"]);
        assert_eq!(store.current()[0].key.cert.len(), 2, "the whole chain");
        assert_eq!(store.check(), CertificateChange::Unchanged);

        // A pair written one file at a time: the check between the writes says nothing.
        let next = pair(&["next.example"]);
        std::fs::write(&files.chain, &next.chain).unwrap();
        assert_eq!(store.check(), CertificateChange::Settling);
        std::fs::write(&files.key, &next.key).unwrap();
        assert_eq!(store.check(), CertificateChange::Settling);
        assert_eq!(store.check(), CertificateChange::Loaded);
        assert_eq!(store.current()[0].names, ["next.example"]);

        // Content that stays broken is reported once, on the second check; a file that
        // stays missing likewise.
        std::fs::write(&files.chain, "not pem").unwrap();
        assert_eq!(store.check(), CertificateChange::Settling);
        assert!(matches!(store.check(), CertificateChange::Rejected(_)));
        assert_eq!(store.check(), CertificateChange::StillRejected);
        std::fs::remove_file(&files.chain).unwrap();
        assert_eq!(store.check(), CertificateChange::Settling);
        match store.check() {
            CertificateChange::Rejected(why) => assert!(why.contains("cannot read"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(store.current()[0].names, ["next.example"]);

        // Put back as it was loaded: nothing to do, at once.
        std::fs::write(&files.chain, &next.chain).unwrap();
        assert_eq!(store.check(), CertificateChange::Unchanged);
        // An explicit reload acts on the first read.
        std::fs::write(&files.chain, &leaf.chain).unwrap();
        std::fs::write(&files.key, &leaf.key).unwrap();
        assert_eq!(store.reload(), CertificateChange::Loaded);
        assert_eq!(store.current()[0].names, ["new.example"]);
    }

    #[test]
    fn load_errors_name_the_file_and_never_the_key() {
        let dir = tempdir("errors");
        let good = pair(&["x.example"]);
        let other = pair(&["y.example"]);
        let f = write(&dir, "f", &good);
        std::fs::write(&f.key, &other.key).unwrap();
        let e = load_pair(&f).unwrap_err();
        assert!(e.contains("f.key is not the private key"), "{e}");
        std::fs::write(
            &f.key,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = load_pair(&f).unwrap_err();
        assert!(e.contains("no PEM private key"), "{e}");
        std::fs::write(&f.key, &good.key).unwrap();
        std::fs::write(&f.chain, "").unwrap();
        let e = load_pair(&f).unwrap_err();
        assert!(e.contains("no certificate"), "{e}");
        assert!(!e.contains("PRIVATE KEY"));
    }
}
