//! `decision:` — the listener front proxies ask (decision mode), and what it needs.

use super::*;

/// `decision.listen`: its own address. `None` when it is wrong (reported); `Some(None)`
/// without a `decision:` section.
pub(super) fn listen(
    file: &FileConfig,
    taken: &[Option<SocketAddr>],
    errs: &mut Errors,
) -> Option<Option<SocketAddr>> {
    let Some(d) = &file.decision else {
        return Some(None);
    };
    let addr = errs.keep(socket_addr("decision.listen", &d.listen))?;
    if taken.iter().flatten().any(|a| *a == addr) {
        errs.add(
            "decision.listen",
            "must differ from `listen`, `admin_listen`, `admin.listen` and `tls.listen`",
        );
        return None;
    }
    Some(Some(addr))
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
