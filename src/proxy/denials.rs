//! Denials as operators see them: the log line and the counters of each policy refusal,
//! enforced or let through by a report-only route.

use crate::decision::route::Route;
use crate::policy::Denial;
use crate::proxy::{Proxy, RequestCtx};

impl Proxy {
    /// Logs and counts a denial: a refused one, or one a report-only route let through.
    pub(super) fn record_denial(
        &self,
        ctx: &RequestCtx,
        route: &Route,
        denial: &Denial,
        enforced: bool,
    ) {
        let reason = denial.reason();
        match denial {
            Denial::IpRestrictMalformed { detail } => tracing::warn!(
                request_id = %ctx.request_id,
                route = %route.spec.name,
                provider = ctx.provider(),
                subject = ctx.identity().map(|i| i.subject()),
                detail,
                "identity refused: its IP restriction list is malformed"
            ),
            Denial::Rule(rule) => {
                let (name, error) = (&rule.name, &rule.error);
                let labels = [&*route.spec.name, &**name];
                self.state
                    .metrics
                    .rule_denials
                    .with_label_values(&labels)
                    .inc();
                if let Some(error) = error {
                    self.state
                        .metrics
                        .rule_errors
                        .with_label_values(&labels)
                        .inc();
                    tracing::warn!(request_id = %ctx.request_id, route = %route.spec.name, rule = %name, error, "rule could not be evaluated: denied");
                } else if enforced {
                    tracing::info!(request_id = %ctx.request_id, route = %route.spec.name, rule = %name, "denied by rule");
                }
            }
            Denial::IpNotAllowed { detail } if enforced => {
                tracing::info!(request_id = %ctx.request_id, route = %route.spec.name, detail, "client address not allowed")
            }
            _ => {}
        }
        if !enforced {
            tracing::info!(
                request_id = %ctx.request_id,
                route = %route.spec.name,
                would_deny = reason,
                detail = %denial.detail(),
                "report-only route: request would have been denied"
            );
            self.state
                .metrics
                .would_deny
                .with_label_values(&[&*route.spec.name, reason])
                .inc();
        }
    }
}

/// True when a denial can leave the connection open: the request has no body, or a small
/// one that is drained before the answer. A large or unframed body
/// would have to be read just to throw it away: close instead.
pub(super) fn body_is_safe_to_skip(session: &mut pingora::protocols::http::ServerSession) -> bool {
    const DRAIN_LIMIT: u64 = 64 * 1024;
    let req = session.req_header();
    if req.headers.contains_key(http::header::TRANSFER_ENCODING) {
        return false;
    }
    let small = match req.headers.get(http::header::CONTENT_LENGTH) {
        None => true,
        Some(v) => std::str::from_utf8(v.as_bytes())
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .is_some_and(|n| n <= DRAIN_LIMIT),
    };
    small && session.get_keepalive().is_some()
}
