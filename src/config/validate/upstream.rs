//! `upstreams:` — each upstream's URL, protocol, TLS and in-flight bound.

use super::*;

pub(super) fn upstream(
    path: &str,
    name: &str,
    up: &crate::config::file::UpstreamFile,
    base_dir: &Path,
) -> Result<UpstreamSpec> {
    use crate::config::file::UpstreamFile;
    let (text, url_path, protocol) = match up {
        UpstreamFile::Url(u) => (u.as_str(), path.to_string(), None),
        UpstreamFile::Options(o) => (o.url.as_str(), format!("{path}.url"), o.protocol.as_deref()),
    };
    // `h2c://host:port` is `http://host:port` spoken in HTTP/2 with prior knowledge.
    let (text, h2c) = match text.strip_prefix("h2c://") {
        Some(rest) => (format!("http://{rest}"), true),
        None => (text.to_string(), false),
    };
    let url = reqwest::Url::parse(&text)
        .map_err(|e| ConfigError::at(&url_path, format!("not a valid URL: {e}")))?;
    let tls = match url.scheme() {
        "http" => false,
        "https" => true,
        other => {
            return Err(ConfigError::at(
                &url_path,
                format!("scheme `{other}` is not supported: use http://, https:// or h2c://"),
            ))
        }
    };
    let protocol =
        match (protocol, h2c) {
            (None, false) | (Some("http1"), false) => UpstreamProtocol::Http1,
            (None, true) | (Some("http2"), _) => UpstreamProtocol::Http2,
            (Some("auto"), false) if tls => UpstreamProtocol::Auto,
            (Some("auto"), false) => return Err(ConfigError::at(
                format!("{path}.protocol"),
                "`auto` needs an https:// upstream (ALPN chooses); over http:// say http1 or http2",
            )),
            (Some("http1" | "auto"), true) => {
                return Err(ConfigError::at(
                    format!("{path}.protocol"),
                    "an h2c:// upstream speaks HTTP/2; drop `protocol` or use http://",
                ))
            }
            (Some(other), _) => {
                return Err(ConfigError::at(
                    format!("{path}.protocol"),
                    format!("`{other}` is not a protocol: http1, http2 or auto"),
                ))
            }
        };
    let host = url
        .host_str()
        .ok_or_else(|| ConfigError::at(path, "the URL needs a host"))?
        .trim_matches(|c| c == '[' || c == ']')
        .to_string();
    if !(url.path().is_empty() || url.path() == "/") || url.query().is_some() {
        return Err(ConfigError::at(
            path,
            "give only scheme://host:port; request paths are forwarded unchanged",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::at(
            path,
            "credentials in upstream URLs are not supported",
        ));
    }
    let port = url
        .port_or_known_default()
        .unwrap_or(if tls { 443 } else { 80 });
    // Host names are resolved when the gateway starts (`Gateway::new`), not here, so
    // `--check` works where the upstreams' names do not resolve (CI, another cluster).
    let authority = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port).to_string(),
        Err(_) => format!("{host}:{port}"),
    };
    let tls_options = match up {
        UpstreamFile::Options(o) => upstream_tls(path, o, tls, base_dir)?,
        UpstreamFile::Url(_) => None,
    };
    let max_in_flight = match up {
        UpstreamFile::Options(o) => o.max_in_flight,
        UpstreamFile::Url(_) => None,
    }
    .unwrap_or(crate::decision::route::DEFAULT_MAX_IN_FLIGHT);
    if !(1..=1_000_000).contains(&max_in_flight) {
        return Err(ConfigError::at(
            format!("{path}.max_in_flight"),
            "must be between 1 and 1000000",
        ));
    }
    Ok(UpstreamSpec {
        name: name.to_string(),
        authority,
        tls,
        host,
        protocol,
        tls_options,
        max_in_flight,
    })
}

/// An `https://` upstream's options, their files read and parsed here, once (a bad one
/// stops `--check` with its key named; the build uses what was read).
pub(super) fn upstream_tls(
    path: &str,
    o: &crate::config::file::UpstreamOptionsFile,
    tls: bool,
    base_dir: &Path,
) -> Result<Option<crate::decision::route::UpstreamTls>> {
    let given = [
        ("ca_file", o.ca_file.is_some()),
        ("server_name", o.server_name.is_some()),
        ("verify_hostname", o.verify_hostname.is_some()),
        ("client_certificate", o.client_certificate.is_some()),
    ];
    if !tls {
        if let Some((key, _)) = given.iter().find(|(_, set)| *set) {
            return Err(ConfigError::at(
                format!("{path}.{key}"),
                "only for https:// upstreams",
            ));
        }
        return Ok(None);
    }
    if !given.iter().any(|(_, set)| *set) {
        return Ok(None);
    }
    if let Some(name) = &o.server_name {
        if rustls::pki_types::ServerName::try_from(name.as_str()).is_err() {
            return Err(ConfigError::at(
                format!("{path}.server_name"),
                "not a DNS name or IP address",
            ));
        }
    }
    let files = crate::decision::route::UpstreamTlsFiles {
        ca_file: o.ca_file.as_ref().map(|f| base_dir.join(f)),
        server_name: o.server_name.clone(),
        verify_hostname: o.verify_hostname.unwrap_or(true),
        client_certificate: o
            .client_certificate
            .as_ref()
            .map(|c| crate::tls::CertificateFiles {
                chain: base_dir.join(&c.chain),
                key: base_dir.join(&c.key),
            }),
    };
    if !files.verify_hostname && files.ca_file.is_none() {
        return Err(ConfigError::at(
            format!("{path}.verify_hostname"),
            "`false` needs `ca_file`: the name check is skipped only against a private CA you name",
        ));
    }
    use crate::decision::route::TlsFileError;
    let loaded = files.load().map_err(|e| match e {
        TlsFileError::Ca(e) => ConfigError::at(format!("{path}.ca_file"), e),
        TlsFileError::ClientCertificate(e) => {
            ConfigError::at(format!("{path}.client_certificate"), e)
        }
    })?;
    Ok(Some(loaded))
}

#[cfg(test)]
mod tests {
    use crate::config::validate::assert_error_paths;

    #[test]
    fn upstreams_are_urls_with_a_host_and_no_reserved_name() {
        let route = "routes:\n  - { path_prefix: /, auth: none, upstream: echo }\n";
        let table: &[(&str, &[&str])] = &[
            ("upstreams: { app: \"http://127.0.0.1:3000\" }\n", &[]),
            ("upstreams: { app: \"h2c://127.0.0.1:50051\" }\n", &[]),
            ("upstreams: { echo: \"http://127.0.0.1:3000\" }\n", &["upstreams.echo"]),
            ("upstreams: { app: \"http://127.0.0.1:3000/path\" }\n", &["upstreams.app"]),
            ("upstreams: { app: \"ftp://127.0.0.1\" }\n", &["upstreams.app"]),
            ("upstreams: { app: { url: \"http://127.0.0.1:3000\", ca_file: /nonexistent.pem } }\n", &["upstreams.app"]),
        ];
        for (body, want) in table {
            assert_error_paths(&format!("{body}{route}"), want);
        }
    }
}
