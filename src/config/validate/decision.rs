//! `decision:` — the listener front proxies ask (decision mode), and what it needs.

use super::*;

/// `decision:`: its own address, and Envoy's HTTP path prefix. `None` when it is wrong
/// (reported); `Some(None)` without a `decision:` section.
pub(super) fn listener(
    file: &FileConfig,
    taken: &[Option<SocketAddr>],
    errs: &mut Errors,
) -> Option<Option<DecisionListener>> {
    let Some(d) = &file.decision else {
        return Some(None);
    };
    let prefix = match d.envoy_http_prefix.as_deref() {
        None => Some(None),
        Some(p) => envoy_http_prefix(p, errs).map(Some),
    };
    let addr = errs.keep(socket_addr("decision.listen", &d.listen))?;
    if taken.iter().flatten().any(|a| *a == addr) {
        errs.add(
            "decision.listen",
            "must differ from `listen`, `admin_listen`, `admin.listen` and `tls.listen`",
        );
        return None;
    }
    Some(Some(DecisionListener {
        listen: addr,
        envoy_http_prefix: prefix?,
    }))
}

/// `decision.envoy_http_prefix`: a plain path (Envoy prepends it to the request's path as
/// is), not `/` alone, not ending in `/`.
fn envoy_http_prefix(p: &str, errs: &mut Errors) -> Option<Arc<str>> {
    let plain = p
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/-._~".contains(&b));
    if !p.starts_with('/') || p.len() < 2 || p.ends_with('/') || !plain || p.contains("//") {
        errs.add(
            "decision.envoy_http_prefix",
            "must be a path like /ext_authz (starting with /, not ending in /, letters, digits and - . _ ~ only): Envoy's http_service.path_prefix",
        );
        return None;
    }
    Some(p.into())
}

/// Decision mode believes front proxies only: `trusted_proxies` must name them.
pub(super) fn needs_front_proxies(
    file: &FileConfig,
    trusted_proxies: Option<&[IpNet]>,
    errs: &mut Errors,
) {
    if file.decision.is_some() && trusted_proxies.is_some_and(<[IpNet]>::is_empty) {
        errs.add(
            "trusted_proxies",
            "decision.listen answers front proxies only: list their addresses here (e.g. 127.0.0.1/32 for an nginx in the same pod)",
        );
    }
}
