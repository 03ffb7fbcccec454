//! `tracing:` — where spans go (OTLP/HTTP), how many, and what they may carry. The
//! OpenTelemetry environment variables an SRE already sets for every service
//! (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`) fill
//! what the section leaves out; the section wins where both say something.

use super::*;
use crate::config::file::{ParentSamplingFile, TracingFile};
use crate::telemetry::trace::{ParentSampling, TraceSettings};

/// Headers an export sets itself (or that would make it another request).
const OWN_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
];

/// `tracing:` validated; `None` without the section, or when it is wrong (reported).
pub(super) fn settings(
    file: &FileConfig,
    base_dir: &Path,
    errs: &mut Errors,
) -> Option<TraceSettings> {
    let t = file.tracing.as_ref()?;
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let endpoint = endpoint(t, &env, errs);
    let headers = headers(t, base_dir, errs);
    let ca_pem = errs
        .keep(crate::config::http_provider::ca_bundle(
            "tracing",
            t.ca_file.as_deref(),
            base_dir,
        ))
        .flatten()
        .map(|(pem, _)| pem);
    let sample_ratio = t.sample_ratio.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample_ratio) {
        errs.add(
            "tracing.sample_ratio",
            "must be from 0 (none) to 1 (every request)",
        );
    }
    let queue_size = t.queue_size.unwrap_or(2048);
    let batch_size = t.batch_size.unwrap_or(512);
    if queue_size == 0 || queue_size > 1_000_000 {
        errs.add("tracing.queue_size", "must be from 1 to 1000000 spans");
    }
    if batch_size == 0 || batch_size > queue_size {
        errs.add(
            "tracing.batch_size",
            "must be at least 1 and at most `queue_size`",
        );
    }
    let timeout = t.timeout.map_or(Duration::from_secs(10), |d| d.0);
    if timeout.is_zero() {
        errs.add("tracing.timeout", "must be more than 0s");
    }
    let export_interval = t.export_interval.map_or(Duration::from_secs(5), |d| d.0);
    if export_interval.is_zero() {
        errs.add("tracing.export_interval", "must be more than 0s");
    }
    let resource = resource(t, &env, errs);
    Some(TraceSettings {
        endpoint: endpoint?,
        headers: headers?,
        timeout,
        ca_pem,
        sample_ratio,
        parent_sampling: match t.parent_sampling {
            None | Some(ParentSamplingFile::TrustedProxies) => ParentSampling::TrustedProxies,
            Some(ParentSamplingFile::Everyone) => ParentSampling::Everyone,
            Some(ParentSamplingFile::Nobody) => ParentSampling::Nobody,
        },
        include_subject: t.include_subject.unwrap_or(false),
        resource: resource?,
        queue_size,
        batch_size,
        export_interval,
    })
}

/// The traces URL: the section's, else the environment's; a bare collector address gets
/// OTLP's `/v1/traces` (as `OTEL_EXPORTER_OTLP_ENDPOINT` does).
fn endpoint(
    t: &TracingFile,
    env: &dyn Fn(&str) -> Option<String>,
    errs: &mut Errors,
) -> Option<String> {
    let (key, raw, full) = match (&t.endpoint, env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")) {
        (Some(e), _) => ("tracing.endpoint", e.clone(), false),
        (None, Some(e)) => ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", e, true),
        (None, None) => match env("OTEL_EXPORTER_OTLP_ENDPOINT") {
            Some(e) => ("OTEL_EXPORTER_OTLP_ENDPOINT", e, false),
            None => {
                errs.add(
                    "tracing.endpoint",
                    "required (the collector's OTLP/HTTP address, e.g. http://otel-collector:4318), unless OTEL_EXPORTER_OTLP_ENDPOINT is set",
                );
                return None;
            }
        },
    };
    let mut url = match url::Url::parse(raw.trim()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => u,
        _ => {
            errs.add(key, "must be an http:// or https:// URL with a host (OTLP/HTTP; gRPC's port 4317 is not it)");
            return None;
        }
    };
    if !url.username().is_empty() || url.password().is_some() {
        errs.add(
            key,
            "must not carry credentials: send a key with `tracing.headers`",
        );
        return None;
    }
    if !full && matches!(url.path(), "" | "/") {
        url.set_path("/v1/traces");
    }
    Some(url.into())
}

fn headers(t: &TracingFile, base_dir: &Path, errs: &mut Errors) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut ok = true;
    for (name, value) in &t.headers {
        let path = format!("tracing.headers.{name}");
        let lower = name.to_ascii_lowercase();
        if http::HeaderName::from_bytes(lower.as_bytes()).is_err()
            || OWN_HEADERS.contains(&lower.as_str())
        {
            errs.add(&path, "must be a header name other than Content-Type, Content-Length, Host, Transfer-Encoding");
            ok = false;
            continue;
        }
        // A key belongs in the environment: `${VAR}` is read from it (empty: an error).
        let value = if value.trim_start().starts_with("${") {
            match errs.keep(crate::config::secret::resolve(
                &path,
                Some(value),
                None,
                base_dir,
            )) {
                Some(Some(secret)) => secret.expose().to_string(),
                _ => {
                    ok = false;
                    continue;
                }
            }
        } else {
            value.clone()
        };
        if http::HeaderValue::from_str(&value).is_err() {
            errs.add(
                &path,
                "must be a header value (visible ASCII, no line breaks)",
            );
            ok = false;
            continue;
        }
        out.push((lower, value));
    }
    ok.then_some(out)
}

/// `service.name`, `service.version`, then `OTEL_RESOURCE_ATTRIBUTES`' pairs and the
/// section's (which win), each key once.
fn resource(
    t: &TracingFile,
    env: &dyn Fn(&str) -> Option<String>,
    errs: &mut Errors,
) -> Option<Vec<(String, String)>> {
    let mut attrs: BTreeMap<String, String> = BTreeMap::new();
    if let Some(list) = env("OTEL_RESOURCE_ATTRIBUTES") {
        // `key=value,key=value`, values percent-encoded (the OpenTelemetry specification).
        for pair in list.split(',').filter(|p| !p.trim().is_empty()) {
            let Some((k, v)) = pair.split_once('=') else {
                errs.add(
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "must be key=value pairs separated by commas",
                );
                return None;
            };
            let v = url::form_urlencoded::parse(
                format!("v={}", v.trim().replace('+', "%2B")).as_bytes(),
            )
            .next()
            .map_or_else(String::new, |(_, v)| v.into_owned());
            attrs.insert(k.trim().to_string(), v);
        }
    }
    for (k, v) in &t.resource {
        if k.is_empty() || k == "service.name" {
            errs.add(
                format!("tracing.resource.{k}"),
                "set service.name with `tracing.service_name`",
            );
            return None;
        }
        attrs.insert(k.clone(), v.clone());
    }
    let service = t
        .service_name
        .clone()
        .or_else(|| env("OTEL_SERVICE_NAME"))
        .or_else(|| attrs.get("service.name").cloned())
        .unwrap_or_else(|| "sessiongate".into());
    if service.trim().is_empty() {
        errs.add("tracing.service_name", "must not be empty");
        return None;
    }
    attrs.remove("service.name");
    let mut out = vec![
        ("service.name".to_string(), service),
        (
            "service.version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
        ("telemetry.sdk.name".to_string(), "sessiongate".to_string()),
        ("telemetry.sdk.language".to_string(), "rust".to_string()),
    ];
    out.retain(|(k, _)| !attrs.contains_key(k) || k == "service.name");
    out.extend(attrs);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(yaml: &str) -> FileConfig {
        serde_yaml_ng::from_str(&format!(
            "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:1\nroutes: []\ntracing:\n{yaml}"
        ))
        .unwrap()
    }

    fn check(yaml: &str) -> std::result::Result<TraceSettings, Vec<String>> {
        let mut errs = Errors(Vec::new());
        let s = settings(&file(yaml), Path::new("."), &mut errs);
        if errs.0.is_empty() {
            Ok(s.unwrap())
        } else {
            Err(errs.0.iter().map(|e| e.to_string()).collect())
        }
    }

    #[test]
    fn a_collector_address_gets_the_traces_path_and_defaults() {
        let s = check("  endpoint: http://collector:4318\n").unwrap();
        assert_eq!(s.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(s.sample_ratio, 1.0);
        assert_eq!(s.parent_sampling, ParentSampling::TrustedProxies);
        assert!(!s.include_subject);
        assert_eq!((s.queue_size, s.batch_size), (2048, 512));
        assert_eq!(s.resource[0], ("service.name".into(), "sessiongate".into()));
        let full = check("  endpoint: https://api.example/otlp/v1/traces\n  sample_ratio: 0.25\n  parent_sampling: nobody\n").unwrap();
        assert_eq!(full.endpoint, "https://api.example/otlp/v1/traces");
        assert_eq!(full.parent_sampling, ParentSampling::Nobody);
    }

    #[test]
    fn each_mistake_names_its_key() {
        let cases = [
            ("  endpoint: collector:4317\n", "tracing.endpoint"),
            ("  endpoint: http://user:pw@c:4318\n", "tracing.endpoint"),
            ("  endpoint: http://c:4318\n  sample_ratio: 1.5\n", "tracing.sample_ratio"),
            ("  endpoint: http://c:4318\n  batch_size: 10\n  queue_size: 5\n", "tracing.batch_size"),
            ("  endpoint: http://c:4318\n  timeout: 0s\n", "tracing.timeout"),
            ("  endpoint: http://c:4318\n  headers: {content-type: x}\n", "tracing.headers.content-type"),
            ("  endpoint: http://c:4318\n  headers: {x-key: \"${SESSIONGATE_TEST_UNSET_VAR}\"}\n", "tracing.headers.x-key"),
            ("  endpoint: http://c:4318\n  ca_file: /nonexistent.pem\n", "tracing.ca_file"),
            ("  endpoint: http://c:4318\n  resource: {service.name: x}\n", "tracing.resource.service.name"),
        ];
        for (yaml, key) in cases {
            let errs = check(yaml).expect_err(yaml);
            assert!(errs.iter().any(|e| e.contains(key)), "{yaml}: {errs:?}");
        }
        assert!(serde_yaml_ng::from_str::<FileConfig>(
            "listen: a\nadmin_listen: b\nroutes: []\ntracing: {endpoint: x, sample: 1}\n"
        )
        .is_err());
    }

    #[test]
    fn header_values_in_the_environment_are_read_and_never_shown() {
        std::env::set_var("SESSIONGATE_TEST_OTLP_KEY", "k-123");
        let s = check("  endpoint: http://c:4318\n  headers: {X-Honeycomb-Team: \"${SESSIONGATE_TEST_OTLP_KEY}\", X-Scope-OrgID: tenant-1}\n").unwrap();
        assert!(s
            .headers
            .contains(&("x-honeycomb-team".into(), "k-123".into())));
        assert!(s
            .headers
            .contains(&("x-scope-orgid".into(), "tenant-1".into())));
        assert!(!format!("{s:?}").contains("k-123"));
    }
}
