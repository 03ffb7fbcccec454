//! `POST /admin/explain`: the trace of one decision, serialized.
//!
//! The request is decided by the proxy's own [`crate::decision::decide`] (a miss calls the provider and
//! caches the answer, as the request would) and nothing is forwarded. [`Trace`] is built
//! from the [`Decision`] alone: every policy finding it shows was recorded while deciding,
//! so `explain` cannot disagree with the proxy by evaluating the policy a second time.

use std::collections::BTreeMap;
use std::time::UNIX_EPOCH;

use http::Method;
use serde::Serialize;

use crate::decision::route::{Route, RouteAuth};
use crate::decision::template::{Params, RoutePath};
use crate::decision::{Decision, Verdict};
use crate::identity::cache::CacheStatus;
use crate::identity::Identity;
use crate::policy::rules::RuleVerdict;
use crate::policy::{self, Denial, DenialKind, Mode};

/// The request as `explain` was asked about it.
#[derive(Debug, Serialize)]
pub(crate) struct AskedRequest<'a> {
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) host: Option<&'a str>,
    pub(crate) client_ip: Option<String>,
    /// `proxy` (the proxy listener) or `decision` (a front proxy's question).
    pub(crate) mode: &'a str,
}

/// What one decision saw and concluded (the `explain` answer).
#[derive(Debug, Serialize)]
pub(crate) struct Trace<'a> {
    pub(crate) request: AskedRequest<'a>,
    /// The canonical path (what would be forwarded).
    pub(crate) normalized_path: Option<&'a str>,
    pub(crate) route: Option<RouteTrace<'a>>,
    /// The client address the rules judged.
    pub(crate) client: Option<String>,
    /// Whether the route's network rule admitted the client (absent without a route).
    pub(crate) network_ok: Option<bool>,
    pub(crate) token: Option<TokenTrace>,
    pub(crate) cache: Option<CacheTrace>,
    pub(crate) identity: Option<IdentityTrace<'a>>,
    pub(crate) policy: Option<PolicyTrace<'a>>,
    pub(crate) would_deny: Vec<Finding>,
    /// The route's rate limits that would count the request — policy, key kind, tier —
    /// without counting it (absent when the decision ended before them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) rate_limits: Vec<LimitTrace<'a>>,
    /// The decision's steps the request passed, in order; a refusal stopped it at the
    /// next one (`decision`).
    pub(crate) steps_passed: Vec<&'static str>,
    pub(crate) decision: Conclusion,
}

#[derive(Debug, Serialize)]
pub(crate) struct RouteTrace<'a> {
    pub(crate) name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) path_prefix: Option<&'a str>,
    /// The route's path template, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) path: Option<&'a str>,
    /// What the template took from the request's path.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) params: BTreeMap<&'a str, &'a str>,
    pub(crate) host: Option<&'a str>,
    pub(crate) mode: &'static str,
    pub(crate) providers: Vec<&'a str>,
    pub(crate) auth: &'static str,
    pub(crate) stale_if_error_s: u64,
    pub(crate) allow_cidrs: Vec<String>,
    pub(crate) deny_cidrs: Vec<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct TokenTrace {
    pub(crate) provider: String,
    /// A short prefix of the token's keyed hash (never the token).
    #[serde(rename = "ref")]
    pub(crate) reference: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct CacheTrace {
    pub(crate) before: &'static str,
    pub(crate) result: &'static str,
    pub(crate) provider_called: bool,
    pub(crate) stale_age_s: Option<u64>,
}

#[derive(Debug, Serialize)]
pub(crate) struct IdentityTrace<'a> {
    pub(crate) subject: &'a str,
    pub(crate) session_id: Option<&'a str>,
    pub(crate) scopes: Vec<&'a str>,
    pub(crate) expires_at: Option<u64>,
    pub(crate) ip_restrict: Vec<&'a str>,
    pub(crate) organizations: Vec<&'a str>,
    /// Every claim the identity keeps, typed as rules read it (`identity.claims.<name>`).
    pub(crate) claims: serde_json::Map<String, serde_json::Value>,
    /// Those of them sent upstream as headers.
    pub(crate) claims_forwarded: Vec<&'a str>,
}

impl<'a> IdentityTrace<'a> {
    fn of(i: &'a Identity) -> Self {
        IdentityTrace {
            subject: i.subject(),
            session_id: i.session_id(),
            scopes: i.scopes().collect(),
            expires_at: i
                .expires_at()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs()),
            ip_restrict: i.ip_restrict().collect(),
            organizations: i.organizations().collect(),
            claims: i
                .claims()
                .map(|c| {
                    let value = match c.json {
                        true => serde_json::from_str(c.value).unwrap_or(serde_json::Value::Null),
                        false => serde_json::Value::String(c.value.to_string()),
                    };
                    (c.name.to_string(), value)
                })
                .collect(),
            claims_forwarded: i.claims().filter(|c| c.forward).map(|c| c.name).collect(),
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct ScopeRuleTrace<'a> {
    pub(crate) all_of: &'a [String],
    pub(crate) any_of: &'a [String],
}

#[derive(Debug, Serialize)]
pub(crate) struct PolicyTrace<'a> {
    pub(crate) scopes_required: Vec<ScopeRuleTrace<'a>>,
    pub(crate) scopes_present: Vec<&'a str>,
    pub(crate) scopes_ok: bool,
    pub(crate) ip_restrict_ok: bool,
    /// `require_organization` as the request fills it, and whether the identity is in it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) organization_required: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) organization_ok: Option<bool>,
    /// Every finding of the identity policy, not only the one that decided.
    pub(crate) findings: Vec<Finding>,
    /// Each of the route's `rules:`, in order, with its verdict (absent when the decision
    /// ended before them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) rules: Vec<RuleTrace<'a>>,
}

/// One rate-limit policy a request would be counted by. The key's kind, never its value.
#[derive(Debug, Serialize)]
pub(crate) struct LimitTrace<'a> {
    pub(crate) policy: &'a str,
    pub(crate) key: String,
    pub(crate) tier: &'a str,
    pub(crate) rate: String,
    pub(crate) burst: u32,
    /// `enforce` or `report`.
    pub(crate) mode: &'static str,
}

impl<'a> LimitTrace<'a> {
    fn of(l: &'a crate::decision::limit::LimitCheck) -> Self {
        let tier = l.tier();
        LimitTrace {
            policy: &l.policy.spec.name,
            key: l.policy.spec.key.describe(),
            tier: &tier.name,
            rate: tier.rate.to_string(),
            burst: tier.burst,
            mode: l.policy.spec.mode.as_str(),
        }
    }
}

/// One `rules:` entry and what it said.
#[derive(Debug, Serialize)]
pub(crate) struct RuleTrace<'a> {
    pub(crate) name: &'a str,
    pub(crate) expr: &'a str,
    /// `pass`, `false` or `error` (an error denies).
    pub(crate) result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<&'a str>,
}

/// One policy denial: its reason label and a sentence.
#[derive(Debug, Serialize)]
pub(crate) struct Finding {
    pub(crate) reason: &'static str,
    pub(crate) detail: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct Conclusion {
    pub(crate) outcome: &'static str,
    pub(crate) status: u16,
    pub(crate) error: Option<&'static str>,
    pub(crate) description: Option<String>,
    pub(crate) stale: Option<u64>,
}

impl Finding {
    fn of(d: &Denial) -> Self {
        Finding {
            reason: d.reason(),
            detail: d.detail(),
        }
    }
}

impl<'a> RouteTrace<'a> {
    fn of(r: &'a Route, params: &'a Params) -> Self {
        let spec = &r.spec;
        RouteTrace {
            name: &spec.name,
            path_prefix: match &spec.path {
                RoutePath::Prefix(p) => Some(p),
                RoutePath::Template(_) => None,
            },
            path: match &spec.path {
                RoutePath::Template(t) => Some(t.as_str()),
                RoutePath::Prefix(_) => None,
            },
            params: params.iter().map(|(k, v)| (&**k, v.as_str())).collect(),
            host: spec.host.as_deref(),
            mode: match spec.policy.mode {
                Mode::Report => "report",
                Mode::Enforce => "enforce",
            },
            providers: match &r.auth {
                RouteAuth::Providers(list) => list.iter().map(|p| &**p.name()).collect(),
                RouteAuth::None => Vec::new(),
            },
            auth: match r.auth {
                RouteAuth::None => "none",
                RouteAuth::Providers(_) => "required",
            },
            stale_if_error_s: spec.stale_if_error.as_secs(),
            allow_cidrs: spec
                .policy
                .allow_cidrs
                .iter()
                .map(|n| n.to_string())
                .collect(),
            deny_cidrs: spec
                .policy
                .deny_cidrs
                .iter()
                .map(|n| n.to_string())
                .collect(),
        }
    }
}

impl<'a> Trace<'a> {
    /// The trace of `d`, decided for `request` (with `method`; `d` holds the rest).
    pub(crate) fn of(d: &'a Decision, request: AskedRequest<'a>, method: &Method) -> Self {
        let identity = d.identity.as_ref();
        let policy = match (&d.route, identity) {
            (Some(r), Some(i)) => Some(PolicyTrace {
                scopes_required: policy::rules_for(&r.spec.policy, method)
                    .iter()
                    .map(|rule| ScopeRuleTrace {
                        all_of: &rule.all_of,
                        any_of: &rule.any_of,
                    })
                    .collect(),
                scopes_present: i.scopes().collect(),
                scopes_ok: !d
                    .identity_denials
                    .iter()
                    .any(|x| x.kind() == DenialKind::InsufficientScope),
                ip_restrict_ok: !d
                    .identity_denials
                    .iter()
                    .any(|x| x.kind() == DenialKind::IpNotAllowed),
                organization_required: r
                    .spec
                    .policy
                    .organization
                    .as_deref()
                    .map(|o| policy::fill_for_display(o, &d.params)),
                organization_ok: r.spec.policy.organization.as_ref().map(|_| {
                    !d.identity_denials
                        .iter()
                        .any(|x| x.kind() == DenialKind::OrganizationNotAllowed)
                }),
                findings: d.identity_denials.iter().map(Finding::of).collect(),
                rules: r
                    .spec
                    .rules
                    .list
                    .iter()
                    .zip(&d.rules)
                    .map(|(rule, verdict)| RuleTrace {
                        name: &rule.name,
                        expr: rule.source(),
                        result: match verdict {
                            RuleVerdict::Pass => "pass",
                            RuleVerdict::False => "false",
                            RuleVerdict::Failed(_) => "error",
                        },
                        error: match verdict {
                            RuleVerdict::Failed(e) => Some(e),
                            _ => None,
                        },
                    })
                    .collect(),
            }),
            _ => None,
        };
        let decision = match &d.verdict {
            Verdict::Allow => Conclusion {
                outcome: "allowed",
                status: 200,
                error: None,
                description: None,
                stale: None,
            },
            Verdict::Refuse(refused) => {
                let refusal = refused.response();
                Conclusion {
                    outcome: refused.outcome().as_str(),
                    status: refusal.status,
                    error: Some(refusal.error),
                    description: Some(refusal.description),
                    stale: None,
                }
            }
        };
        Trace {
            steps_passed: d.steps_passed().iter().map(|s| s.as_str()).collect(),
            request,
            normalized_path: d.path.as_deref(),
            route: d.route.as_deref().map(|r| RouteTrace::of(r, &d.params)),
            client: d.client.map(|c| c.to_string()),
            network_ok: d.route.as_ref().map(|_| d.network_denial.is_none()),
            token: d.provider.as_ref().map(|p| TokenTrace {
                provider: p.name().to_string(),
                reference: d.token_key.map(|k| k.short()),
            }),
            cache: d.cache.as_ref().map(|c| CacheTrace {
                before: c.prior.as_str(),
                result: c.status.as_str(),
                provider_called: c.status == CacheStatus::Miss,
                stale_age_s: c.stale_age.map(|a| a.as_secs()),
            }),
            identity: identity.map(IdentityTrace::of),
            policy,
            would_deny: d.would_deny.iter().map(Finding::of).collect(),
            rate_limits: d.limits.iter().map(LimitTrace::of).collect(),
            decision: Conclusion {
                stale: d.stale_age().map(|a| a.as_secs()),
                ..decision
            },
        }
    }
}
