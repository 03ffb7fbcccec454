//! Authorization policy: may *this* request pass, given the identity its token resolved to?
//!
//! The cache holds identities, never decisions: these functions are evaluated on every
//! request, so one cached identity is judged afresh against each route. They are pure
//! (identity, client address, route policy, method, clock) → decision, with no I/O.

pub(crate) mod cel_view;
pub(crate) mod facts;
pub(crate) mod fast_rules;
pub(crate) mod net;
pub mod rules;

use std::net::IpAddr;
use std::time::SystemTime;

use http::Method;

use crate::identity::Identity;
use crate::policy::net::IpNet;

/// A path template's parameters as the policy reads them: name, decoded value.
pub(crate) type PathParams = [(std::sync::Arc<str>, String)];

/// Scopes a request needs: every `all_of` entry and at least one `any_of` entry (each
/// part optional). An entry ending in `*` matches any scope with that prefix
/// (`wallet_view_*`); any other entry matches exactly (`wallet_spend:<walletId>`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeRule {
    pub(crate) all_of: Vec<String>,
    pub(crate) any_of: Vec<String>,
    /// Whether an entry has a `{name}` placeholder: decided once here, not by scanning
    /// every entry of every request (routes without templates pay nothing for them).
    templated: bool,
}

impl ScopeRule {
    pub fn new(all_of: Vec<String>, any_of: Vec<String>) -> Self {
        let templated = all_of.iter().chain(&any_of).any(|s| s.contains('{'));
        ScopeRule {
            all_of,
            any_of,
            templated,
        }
    }

    fn satisfied_by<'a>(
        &self,
        scopes: impl Iterator<Item = &'a str> + Clone,
        params: &PathParams,
    ) -> bool {
        if !self.templated {
            let has = |want: &String| scopes.clone().any(|s| scope_matches(want, s));
            return self.all_of.iter().all(has)
                && (self.any_of.is_empty() || self.any_of.iter().any(has));
        }
        let has = |want: &String| {
            if want.contains('{') {
                scopes
                    .clone()
                    .any(|s| filled_matches(want, s, params, true))
            } else {
                scopes.clone().any(|s| scope_matches(want, s))
            }
        };
        self.all_of.iter().all(has) && (self.any_of.is_empty() || self.any_of.iter().any(has))
    }

    fn required(&self) -> impl Iterator<Item = &String> {
        self.all_of.iter().chain(self.any_of.iter())
    }
}

/// True when granted scope `have` satisfies rule entry `want`.
pub(crate) fn scope_matches(want: &str, have: &str) -> bool {
    match want.strip_suffix('*') {
        Some(prefix) => have.starts_with(prefix),
        None => want == have,
    }
}

/// A piece of a text with `{name}` placeholders (a scope or `require_organization`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    /// Text between placeholders (a stray `}` stays in it).
    Text(&'a str),
    /// A placeholder: the name between the braces.
    Param(&'a str),
    /// A `{` without its `}`, and all that follows it.
    Unclosed(&'a str),
}

/// The pieces of `template`, in order — the one reading of the placeholder syntax that
/// the configuration check, the policy and the messages share.
pub(crate) fn pieces(template: &str) -> impl Iterator<Item = Piece<'_>> {
    let mut rest = template;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let Some(after) = rest.strip_prefix('{') else {
            let (text, more) = rest.split_at(rest.find('{').unwrap_or(rest.len()));
            rest = more;
            return Some(Piece::Text(text));
        };
        Some(match after.find('}') {
            Some(close) => {
                rest = &after[close + 1..];
                Piece::Param(&after[..close])
            }
            None => Piece::Unclosed(std::mem::take(&mut rest)),
        })
    })
}

fn param<'p>(params: &'p PathParams, name: &str) -> Option<&'p str> {
    params
        .iter()
        .find(|(k, _)| &**k == name)
        .map(|(_, v)| v.as_str())
}

/// True when `have` is `want` with its `{name}` placeholders filled from the path's
/// parameters. A value from the path is always compared literally — a `*` in it is no
/// wildcard; only a `*` the template itself ends with is (when `wildcard`). A placeholder
/// without a parameter never matches (the configuration check prevents it).
pub(crate) fn filled_matches(want: &str, have: &str, params: &PathParams, wildcard: bool) -> bool {
    let (body, prefix) = match want.strip_suffix('*') {
        Some(body) if wildcard => (body, true),
        _ => (want, false),
    };
    let mut rest = have;
    for piece in pieces(body) {
        let expected = match piece {
            Piece::Text(text) => text,
            Piece::Param(name) => match param(params, name) {
                Some(value) => value,
                None => return false,
            },
            Piece::Unclosed(_) => return false,
        };
        match rest.strip_prefix(expected) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    prefix || rest.is_empty()
}

/// `template` with its placeholders filled, for messages and challenges: a value that is
/// not a plain scope token (RFC 6750 `scope-token` characters, and no `*`, which would
/// read as a wildcard) leaves its placeholder as written, so nothing the client put in
/// the path reaches a header unchecked.
pub(crate) fn fill_for_display(template: &str, params: &PathParams) -> String {
    let plain = |v: &str| {
        !v.is_empty()
            && v.bytes()
                .all(|b| b == 0x21 || ((0x23..=0x7e).contains(&b) && !b"\\*".contains(&b)))
    };
    let mut out = String::with_capacity(template.len());
    for piece in pieces(template) {
        match piece {
            Piece::Param(name) => match param(params, name).filter(|v| plain(v)) {
                Some(value) => out.push_str(value),
                None => {
                    out.push('{');
                    out.push_str(name);
                    out.push('}');
                }
            },
            Piece::Text(text) | Piece::Unclosed(text) => out.push_str(text),
        }
    }
    out
}

/// Extra scopes for some HTTP methods, required on top of the route's own rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodScopes {
    pub methods: Vec<Method>,
    pub rule: ScopeRule,
}

/// Enforce decisions, or only report what would have been denied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    #[default]
    Enforce,
    /// Compute, log and count the decision; let the request pass.
    Report,
}

/// The policy of one route.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutePolicy {
    /// The methods the route takes (others: 405); empty: any. Contains HEAD when it
    /// contains GET.
    pub methods: Vec<Method>,
    pub scopes: ScopeRule,
    pub method_scopes: Vec<MethodScopes>,
    /// When non-empty, the client address must be inside one of these.
    pub allow_cidrs: Vec<IpNet>,
    /// The client address must be inside none of these.
    pub deny_cidrs: Vec<IpNet>,
    pub mode: Mode,
    /// `require_organization`: the identity's organizations must contain this (with the
    /// path's parameters filled in: `"{org}"`).
    pub organization: Option<String>,
}

/// Why a request is refused by policy (403).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// The identity lacks scopes; `required` lists the rule entries that apply.
    InsufficientScope { required: Vec<String> },
    /// The client address is outside what the route or the identity allows.
    IpNotAllowed { detail: String },
    /// The identity's own IP restriction list has an entry that is not an address or
    /// CIDR block: the identity is refused everywhere (fail closed), and it is logged as a
    /// provider data problem.
    IpRestrictMalformed { detail: String },
    /// The identity's own expiry has passed.
    Expired,
    /// `require_organization`: the identity is not in the organization the request is for.
    Organization { required: String },
    /// A `rules:` entry is false, or could not be evaluated. Boxed: every decision carries
    /// `Denial`s by value, and routes without rules should not move a rule's fields.
    Rule(Box<RuleDenial>),
}

/// Which `rules:` entry denied, and how the client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleDenial {
    pub name: std::sync::Arc<str>,
    /// What the client is told (its own sentence by default).
    pub message: Option<std::sync::Arc<str>>,
    /// 403, or 404 to not say that the resource exists.
    pub status: u16,
    /// Why it could not be evaluated (for logs only); `None`: the rule is false.
    pub error: Option<String>,
}

/// The kinds of policy refusal, each a label of `sessiongate_requests_total{outcome}` and
/// `sessiongate_policy_would_deny_total{reason}` and the JSON `error` code. A new rule adds
/// its kind here; the decision, metrics and `explain` take it from these methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum DenialKind {
    InsufficientScope,
    IpNotAllowed,
    Expired,
    OrganizationNotAllowed,
    RuleDenied,
}

impl DenialKind {
    pub const ALL: [DenialKind; 5] = [
        DenialKind::InsufficientScope,
        DenialKind::IpNotAllowed,
        DenialKind::Expired,
        DenialKind::OrganizationNotAllowed,
        DenialKind::RuleDenied,
    ];

    /// Its position in [`DenialKind::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The label and error code.
    pub fn as_str(self) -> &'static str {
        match self {
            DenialKind::InsufficientScope => "insufficient_scope",
            DenialKind::IpNotAllowed => "ip_not_allowed",
            DenialKind::Expired => "expired",
            DenialKind::OrganizationNotAllowed => "organization_not_allowed",
            DenialKind::RuleDenied => "rule_denied",
        }
    }

    /// True when a report-only route refuses it anyway (an expired identity is never
    /// let through).
    pub(crate) fn always_enforced(self) -> bool {
        self == DenialKind::Expired
    }

    /// The HTTP status of the refusal.
    pub(crate) fn status(self) -> u16 {
        match self {
            DenialKind::Expired => 401,
            DenialKind::InsufficientScope
            | DenialKind::IpNotAllowed
            | DenialKind::OrganizationNotAllowed
            | DenialKind::RuleDenied => 403,
        }
    }

    /// What the client is told.
    pub(crate) fn description(self) -> &'static str {
        match self {
            DenialKind::InsufficientScope => "the token lacks the scopes this request requires",
            DenialKind::IpNotAllowed => "requests from this client address are not allowed here",
            DenialKind::Expired => "the token has expired",
            DenialKind::OrganizationNotAllowed => {
                "the identity is not a member of the organization this request is for"
            }
            DenialKind::RuleDenied => "a rule of this route denies the request",
        }
    }
}

impl Denial {
    pub(crate) fn kind(&self) -> DenialKind {
        match self {
            Denial::InsufficientScope { .. } => DenialKind::InsufficientScope,
            Denial::IpNotAllowed { .. } | Denial::IpRestrictMalformed { .. } => {
                DenialKind::IpNotAllowed
            }
            Denial::Expired => DenialKind::Expired,
            Denial::Organization { .. } => DenialKind::OrganizationNotAllowed,
            Denial::Rule(_) => DenialKind::RuleDenied,
        }
    }

    /// The deny reason used in metrics, logs and the JSON `error`.
    pub(crate) fn reason(&self) -> &'static str {
        self.kind().as_str()
    }

    /// A sentence for logs and `explain` (never shown to the client).
    pub(crate) fn detail(&self) -> String {
        match self {
            Denial::InsufficientScope { required } => format!("requires {}", required.join(" ")),
            Denial::IpNotAllowed { detail } | Denial::IpRestrictMalformed { detail } => {
                detail.clone()
            }
            Denial::Expired => "the identity has expired".into(),
            Denial::Organization { required } => {
                format!("the identity's organizations do not include {required:?}")
            }
            Denial::Rule(r) => match &r.error {
                None => format!("rule `{}` is false", r.name),
                Some(e) => format!("rule `{}` could not be evaluated (denied): {e}", r.name),
            },
        }
    }
}

/// The route's static network rules, checked before any token is read. `client` is `None`
/// when the address could not be determined; then any rule denies (fail closed).
pub(crate) fn check_network(policy: &RoutePolicy, client: Option<IpAddr>) -> Result<(), Denial> {
    if policy.allow_cidrs.is_empty() && policy.deny_cidrs.is_empty() {
        return Ok(());
    }
    let Some(ip) = client else {
        return Err(Denial::IpNotAllowed {
            detail: "the client address could not be determined".into(),
        });
    };
    if policy.deny_cidrs.iter().any(|n| n.contains(ip)) {
        return Err(Denial::IpNotAllowed {
            detail: format!("{ip} is in the route's deny_cidrs"),
        });
    }
    if !policy.allow_cidrs.is_empty() && !policy.allow_cidrs.iter().any(|n| n.contains(ip)) {
        return Err(Denial::IpNotAllowed {
            detail: format!("{ip} is not in the route's allow_cidrs"),
        });
    }
    Ok(())
}

/// Judges a resolved identity for one request: its own expiry, its own IP restrictions,
/// then the route's scope rules for this method. The first denial, if any.
pub fn check_identity(
    policy: &RoutePolicy,
    identity: &Identity,
    client: Option<IpAddr>,
    method: &Method,
    now: SystemTime,
) -> Result<(), Denial> {
    match identity_denials(policy, identity, client, method, now, &[])
        .into_iter()
        .next()
    {
        Some(denial) => Err(denial),
        None => Ok(()),
    }
}

/// Every reason the identity would be refused, in the order they are enforced (a
/// report-only route counts them all).
pub(crate) fn identity_denials(
    policy: &RoutePolicy,
    identity: &Identity,
    client: Option<IpAddr>,
    method: &Method,
    now: SystemTime,
    params: &PathParams,
) -> Vec<Denial> {
    let mut out = Vec::new();
    if identity.is_expired_at(now) {
        out.push(Denial::Expired);
    }
    if let Err(denial) = check_ip_restrict(identity, client) {
        out.push(denial);
    }
    if !applicable(policy, method).all(|r| r.satisfied_by(identity.scopes(), params)) {
        let mut required: Vec<String> = Vec::new();
        for entry in applicable(policy, method).flat_map(|r| r.required()) {
            let entry = fill_for_display(entry, params);
            if !required.contains(&entry) {
                required.push(entry);
            }
        }
        out.push(Denial::InsufficientScope { required });
    }
    if let Some(org) = &policy.organization {
        if !identity
            .organizations()
            .any(|o| filled_matches(org, o, params, false))
        {
            out.push(Denial::Organization {
                required: fill_for_display(org, params),
            });
        }
    }
    out
}

/// Whether the route takes `method` at all (its `methods` allow-list).
pub(crate) fn method_allowed(policy: &RoutePolicy, method: &Method) -> bool {
    policy.methods.is_empty() || policy.methods.contains(method)
}

/// The scope rules that apply to `method` on a route: its own, then matching method rules.
pub(crate) fn rules_for<'a>(policy: &'a RoutePolicy, method: &Method) -> Vec<&'a ScopeRule> {
    applicable(policy, method).collect()
}

/// [`rules_for`] without collecting them (every request checks them).
fn applicable<'a: 'm, 'm>(
    policy: &'a RoutePolicy,
    method: &'m Method,
) -> impl Iterator<Item = &'a ScopeRule> + 'm {
    let method_rules = policy
        .method_scopes
        .iter()
        .filter(move |m| m.methods.contains(method))
        .map(|m| &m.rule);
    std::iter::once(&policy.scopes).chain(method_rules)
}

/// The identity's own allow-list (BitGo `ipRestrict`). Empty means unrestricted; a
/// malformed entry denies (it is never skipped), as does an unknown client address.
fn check_ip_restrict(identity: &Identity, client: Option<IpAddr>) -> Result<(), Denial> {
    if identity.ip_restrict().len() == 0 {
        return Ok(());
    }
    // Every entry is parsed, even after one matched: a malformed list denies.
    let mut allowed = false;
    for entry in identity.ip_restrict() {
        match IpNet::parse(entry) {
            Ok(net) => allowed |= client.is_some_and(|ip| net.contains(ip)),
            Err(e) => {
                return Err(Denial::IpRestrictMalformed {
                    detail: format!("the identity's IP restriction list is malformed: {e}"),
                })
            }
        }
    }
    match client {
        Some(_) if allowed => Ok(()),
        Some(ip) => Err(Denial::IpNotAllowed {
            detail: format!("{ip} is not in the identity's IP restrictions"),
        }),
        None => Err(Denial::IpNotAllowed {
            detail: "the client address could not be determined".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::IdentityParts;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn placeholders_read_one_way_everywhere() {
        use Piece::*;
        let read = |t| pieces(t).collect::<Vec<_>>();
        assert_eq!(read("spend:{w}*"), [Text("spend:"), Param("w"), Text("*")]);
        assert_eq!(read("{a}{b}"), [Param("a"), Param("b")]);
        assert_eq!(read("x}y{z"), [Text("x}y"), Unclosed("{z")]);
        assert_eq!(read(""), []);
        let params = [(std::sync::Arc::from("w"), "a*b".to_string())];
        assert!(filled_matches("spend:{w}", "spend:a*b", &params, true));
        assert!(!filled_matches("spend:{w}", "spend:aXb", &params, true));
        assert!(filled_matches("spend:{w}*", "spend:a*bc", &params, true));
        assert!(!filled_matches("spend:{w", "spend:{w", &params, true));
        assert_eq!(fill_for_display("spend:{w}", &params), "spend:{w}");
        let params = [(std::sync::Arc::from("w"), "w1".to_string())];
        assert_eq!(
            fill_for_display("spend:{w} {x} {y", &params),
            "spend:w1 {x} {y"
        );
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| IpNet::parse(s).unwrap()).collect()
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn identity(scopes: &[&str], ips: &[&str]) -> Identity {
        IdentityParts {
            subject: "u".into(),
            scopes: strings(scopes),
            ip_restrict: strings(ips),
            expires_at: Some(UNIX_EPOCH + Duration::from_secs(2_000)),
            ..Default::default()
        }
        .into()
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_000)
    }

    fn wallets() -> RoutePolicy {
        RoutePolicy {
            scopes: ScopeRule::new(vec![], strings(&["wallet_view_*", "admin"])),
            method_scopes: vec![MethodScopes {
                methods: vec![Method::POST, Method::PUT, Method::DELETE],
                rule: ScopeRule::new(strings(&["wallet_spend_all"]), vec![]),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn scope_decisions() {
        let p = wallets();
        let table: [(&[&str], Method, Option<&str>); 8] = [
            (&["wallet_view_all"], Method::GET, None),
            (&["wallet_view_enterprise"], Method::GET, None),
            (&["admin"], Method::GET, None),
            (
                &["wallet_spend_all"],
                Method::GET,
                Some("insufficient_scope"),
            ),
            (
                &["wallet_view_all"],
                Method::POST,
                Some("insufficient_scope"),
            ),
            (&["wallet_view_all", "wallet_spend_all"], Method::POST, None),
            (&["wallet_view"], Method::GET, Some("insufficient_scope")),
            (&[], Method::GET, Some("insufficient_scope")),
        ];
        for (scopes, method, want) in table {
            let got = check_identity(
                &p,
                &identity(scopes, &[]),
                ip("203.0.113.9"),
                &method,
                now(),
            );
            assert_eq!(
                got.as_ref().err().map(Denial::reason),
                want,
                "{scopes:?} {method}"
            );
        }
        let err = check_identity(&p, &identity(&[], &[]), None, &Method::POST, now()).unwrap_err();
        assert_eq!(
            err,
            Denial::InsufficientScope {
                required: strings(&["wallet_view_*", "admin", "wallet_spend_all"])
            }
        );
    }

    #[test]
    fn exact_and_wallet_bound_scopes() {
        let p = RoutePolicy {
            scopes: ScopeRule::new(strings(&["wallet_spend:abc123", "openid"]), vec![]),
            ..Default::default()
        };
        let ok = identity(&["openid", "wallet_spend:abc123"], &[]);
        assert!(check_identity(&p, &ok, None, &Method::GET, now()).is_ok());
        let other_wallet = identity(&["openid", "wallet_spend:abc1234"], &[]);
        assert!(check_identity(&p, &other_wallet, None, &Method::GET, now()).is_err());
        assert!(scope_matches("wallet_spend:*", "wallet_spend:abc"));
        assert!(!scope_matches("wallet_spend", "wallet_spend:abc"));
    }

    #[test]
    fn identity_ip_restrictions() {
        let p = RoutePolicy::default();
        let table: [(&[&str], Option<&str>, bool); 9] = [
            (&[], Some("198.51.100.1"), true),
            (&[], None, true),
            (&["203.0.113.0/24"], Some("203.0.113.77"), true),
            (&["203.0.113.0/24"], Some("203.0.114.1"), false),
            (
                &["198.51.100.4", "2001:db8::/32"],
                Some("2001:db8::9"),
                true,
            ),
            (&["198.51.100.4"], Some("::ffff:198.51.100.4"), true),
            (&["198.51.100.4"], None, false),
            // One malformed entry denies even an address another entry allows.
            (
                &["203.0.113.0/24", "not-an-ip"],
                Some("203.0.113.77"),
                false,
            ),
            (&["203.0.113.0/33"], Some("203.0.113.77"), false),
        ];
        for (ips, client, allowed) in table {
            let got = check_identity(
                &p,
                &identity(&[], ips),
                client.and_then(ip),
                &Method::GET,
                now(),
            );
            assert_eq!(got.is_ok(), allowed, "{ips:?} from {client:?}: {got:?}");
            if let Err(d) = got {
                assert_eq!(d.reason(), "ip_not_allowed");
            }
        }
    }

    #[test]
    fn expiry_is_checked_on_every_request() {
        let p = RoutePolicy::default();
        let id = identity(&[], &[]);
        let later = UNIX_EPOCH + Duration::from_secs(2_000);
        assert_eq!(
            check_identity(&p, &id, None, &Method::GET, later),
            Err(Denial::Expired)
        );
    }

    #[test]
    fn every_denial_is_listed_for_report_mode() {
        let p = RoutePolicy {
            scopes: ScopeRule::new(strings(&["admin"]), vec![]),
            ..Default::default()
        };
        let id = identity(&["openid"], &["203.0.113.0/24"]);
        let reasons: Vec<&str> =
            identity_denials(&p, &id, ip("127.0.0.1"), &Method::GET, now(), &[])
                .iter()
                .map(Denial::reason)
                .collect();
        assert_eq!(reasons, ["ip_not_allowed", "insufficient_scope"]);
        assert_eq!(
            check_identity(&p, &id, ip("127.0.0.1"), &Method::GET, now()).map_err(|d| d.reason()),
            Err("ip_not_allowed")
        );
    }

    #[test]
    fn route_network_rules() {
        let p = RoutePolicy {
            allow_cidrs: nets(&["10.0.0.0/8", "2001:db8::/32"]),
            deny_cidrs: nets(&["10.9.0.0/16"]),
            ..Default::default()
        };
        let table = [
            (ip("10.1.2.3"), true),
            (ip("10.9.2.3"), false),
            (ip("192.0.2.1"), false),
            (ip("2001:db8::1"), true),
            (None, false),
        ];
        for (client, allowed) in table {
            assert_eq!(check_network(&p, client).is_ok(), allowed, "{client:?}");
        }
        assert!(check_network(&RoutePolicy::default(), None).is_ok());
        let deny_only = RoutePolicy {
            deny_cidrs: nets(&["192.0.2.0/24"]),
            ..Default::default()
        };
        assert!(check_network(&deny_only, ip("198.51.100.1")).is_ok());
        assert!(check_network(&deny_only, ip("192.0.2.1")).is_err());
    }
}
