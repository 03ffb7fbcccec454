//! The decision's last step: the route's `rate_limits:`, in order. Each policy's key is
//! read from the identity or the request (a missing header falls back to the client
//! address, a missing claim to the subject), its tier chosen by the identity's scopes or
//! claims, and one request counted. The first enforcing policy over its limit refuses
//! (429) and the policies after it are not counted; a policy in `report` mode, or any
//! policy on a report-only route, only records that it would have limited.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use crate::decision::refused::{RateLimited, Refused};
use crate::decision::route::Route;
use crate::decision::{Decider, Decision, DecisionInput};
use crate::identity::Identity;
use crate::limits::{
    Admission, LimitKey, LimitMode, LimitSpec, LivePolicy, SharedCount, SharedCounter, Tier,
    TierWhen,
};
use crate::policy::Mode;

/// One policy's part in a decision.
#[derive(Debug, Clone)]
pub(crate) struct LimitCheck {
    pub(crate) policy: Arc<LivePolicy>,
    /// Index into the policy's tiers (the last is its own rate).
    pub(crate) tier: usize,
    /// The keyed hash of the key's value.
    pub(crate) key: u64,
    /// `None` when the request was only explained (nothing counted).
    pub(crate) verdict: Option<Admission>,
}

impl LimitCheck {
    pub(crate) fn tier(&self) -> &Tier {
        self.policy.tier(self.tier)
    }

    /// Over the limit (refused, or let through in report mode).
    pub(crate) fn over(&self) -> bool {
        matches!(self.verdict, Some(Admission::Limited(_)))
    }
}

/// How a policy acts on this route: `report` when the policy or the route says so (a
/// report-only route reports its limits as it reports its other denials).
pub(crate) fn effective_mode(route: &Route, spec: &LimitSpec) -> LimitMode {
    if spec.mode == LimitMode::Report || route.spec.policy.mode == Mode::Report {
        LimitMode::Report
    } else {
        LimitMode::Enforce
    }
}

/// The `RateLimit-Policy` and `RateLimit` values an admitted response carries: one list
/// member per policy with `headers: always` that counted the request.
pub(crate) fn response_fields(limits: &[LimitCheck]) -> Option<(String, String)> {
    let mut out: Option<(String, String)> = None;
    for l in limits.iter().filter(|l| l.policy.spec.headers_always) {
        let (remaining, reset) = match l.verdict? {
            Admission::Admitted { remaining, full_in } => (remaining, full_in),
            Admission::Limited(x) => (0, x.retry_after),
        };
        let (p, r) = crate::limits::fields(&l.policy.spec.name, l.tier().rate, remaining, reset);
        match &mut out {
            Some((ps, rs)) => {
                ps.push_str(", ");
                ps.push_str(&p);
                rs.push_str(", ");
                rs.push_str(&r);
            }
            None => out = Some((p, r)),
        }
    }
    out
}

pub(super) async fn rate_limit(
    at: Decider<'_>,
    route: &Route,
    input: &DecisionInput<'_>,
    d: &mut Decision,
) -> Result<(), Refused> {
    if route.limits.is_empty() {
        return Ok(());
    }
    d.limits.reserve_exact(route.limits.len());
    for policy in &route.limits {
        let (key, tier) = {
            let identity = d.identity.as_ref();
            let (kind, value) = key_of(&policy.spec.key, identity, route, input, d);
            (
                at.limiters.key(kind, &value),
                tier_of(&policy.spec.tiers, identity),
            )
        };
        d.limits.push(LimitCheck {
            policy: policy.clone(),
            tier,
            key,
            verdict: None,
        });
    }
    if !at.count_limits {
        return Ok(());
    }
    match at.limiters.shared() {
        // Boxed: the decision's future stays as small for routes without cluster limits.
        Some(shared) => Box::pin(count_shared(&**shared, route, &mut d.limits)).await,
        None => count_here(route, &mut d.limits, |c| c.policy.check(c.tier, c.key)),
    }
}

/// Counts the checks in order with `count`, until an enforcing policy refuses (the
/// checks after it are dropped: not counted).
fn count_here(
    route: &Route,
    checks: &mut Vec<LimitCheck>,
    count: impl Fn(&LimitCheck) -> Admission,
) -> Result<(), Refused> {
    for i in 0..checks.len() {
        let verdict = count(&checks[i]);
        checks[i].verdict = Some(verdict);
        if refuses(route, &checks[i]) {
            checks.truncate(i + 1);
            return Err(refusal(&checks[i]));
        }
    }
    Ok(())
}

/// Counts the checks in the counters every replica shares, in one round trip; at this
/// replica's share of each rate when they cannot answer.
async fn count_shared(
    shared: &dyn SharedCounter,
    route: &Route,
    checks: &mut Vec<LimitCheck>,
) -> Result<(), Refused> {
    let counts: Vec<SharedCount<'_>> = checks
        .iter()
        .map(|c| SharedCount {
            policy: &c.policy,
            tier: c.tier,
            key: c.key,
            enforce: effective_mode(route, &c.policy.spec) == LimitMode::Enforce,
        })
        .collect();
    let Some(verdicts) = shared.count(&counts).await else {
        shared.fell_back();
        let replicas = shared.replicas();
        return count_here(route, checks, |c| {
            c.policy.check_share(c.tier, c.key, replicas)
        });
    };
    checks.truncate(verdicts.len());
    for (check, verdict) in checks.iter_mut().zip(verdicts) {
        check.verdict = Some(verdict);
    }
    match checks.last() {
        Some(last) if refuses(route, last) => Err(refusal(last)),
        _ => Ok(()),
    }
}

/// Whether this check, counted, refuses the request.
fn refuses(route: &Route, check: &LimitCheck) -> bool {
    check.over() && effective_mode(route, &check.policy.spec) == LimitMode::Enforce
}

fn refusal(check: &LimitCheck) -> Refused {
    let retry_after = match check.verdict {
        Some(Admission::Limited(l)) => l.retry_after,
        _ => Duration::ZERO,
    };
    Refused::RateLimited(Box::new(RateLimited {
        policy: check.policy.clone(),
        tier: check.tier,
        retry_after,
    }))
}

/// The key kind actually used (a fallback may replace the configured one) and its value's
/// bytes, borrowed where they can be (the common keys cost no allocation). A header's
/// value is taken as sent, byte for byte: two values never count as one.
fn key_of<'a>(
    key: &'a LimitKey,
    identity: Option<&'a Identity>,
    route: &'a Route,
    input: &'a DecisionInput<'_>,
    d: &'a Decision,
) -> (&'a LimitKey, Cow<'a, [u8]>) {
    const CLIENT: LimitKey = LimitKey::ClientAddress;
    const SUBJECT: LimitKey = LimitKey::Subject;
    let client = || {
        (
            &CLIENT,
            Cow::Owned(
                d.client
                    .map_or_else(|| "unknown".to_string(), |ip| ip.to_string())
                    .into_bytes(),
            ),
        )
    };
    let subject = |i: &'a Identity| (&SUBJECT, Cow::Borrowed(i.subject().as_bytes()));
    match (key, identity) {
        (LimitKey::Subject, Some(i)) => subject(i),
        (LimitKey::Session, Some(i)) => match i.session_id() {
            Some(s) => (key, Cow::Borrowed(s.as_bytes())),
            None => subject(i),
        },
        (LimitKey::Organization, Some(i)) => match &route.spec.policy.organization {
            Some(org) => (
                key,
                Cow::Owned(crate::policy::fill_for_display(org, &d.params).into_bytes()),
            ),
            None => subject(i),
        },
        (LimitKey::Token, Some(i)) => match &d.token_key {
            Some(t) => (key, Cow::Owned(t.hex().into_bytes())),
            None => subject(i),
        },
        (LimitKey::Claim(name), Some(i)) => match i.claim(name) {
            Some(c) => (key, text_bytes(c.header_text())),
            None => subject(i),
        },
        (LimitKey::Header(name), _) => match input.headers.get(name.as_str()) {
            Some(v) => (key, Cow::Borrowed(v.as_bytes())),
            None => client(),
        },
        (LimitKey::Param(name), _) => match d.params.iter().find(|(k, _)| &**k == name) {
            Some((_, v)) => (key, Cow::Borrowed(v.as_bytes())),
            None => client(),
        },
        // The client address, and identity keys on a request without an identity (the
        // config refuses them on `auth: none` routes; this is the fail-safe).
        _ => client(),
    }
}

fn text_bytes(text: Cow<'_, str>) -> Cow<'_, [u8]> {
    match text {
        Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
        Cow::Owned(s) => Cow::Owned(s.into_bytes()),
    }
}

/// The first tier whose condition the identity meets; the policy's own rate otherwise.
fn tier_of(tiers: &[Tier], identity: Option<&Identity>) -> usize {
    let last = tiers.len().saturating_sub(1);
    let Some(identity) = identity else {
        return last;
    };
    tiers
        .iter()
        .position(|t| match &t.when {
            None => true,
            Some(TierWhen::Scope(s)) => identity.scopes().any(|have| have == s),
            Some(TierWhen::Claim { name, equals }) => identity
                .claim(name)
                .is_some_and(|c| c.header_text() == equals.as_str()),
        })
        .unwrap_or(last)
}
