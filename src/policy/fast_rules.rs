//! What a rule's parsed CEL expression is read for besides running it:
//!
//! - [`claims_read`]: which `identity.claims` a rule can read, so that claims no rule reads
//!   and no header carries are not kept in the cache at all;
//! - [`Fast`]: the shapes most rules have — comparisons of identity and request fields with
//!   each other and with literals, `in` a list, `has(…)`, `now ± n`, joined by `&&`, `||`
//!   and `!` — evaluated straight from [`Facts`] without building CEL values. Anything
//!   outside those shapes is left to the CEL interpreter; so is every evaluation whose
//!   answer is not plainly true or false (a missing key, a value of another type, an
//!   overflow): [`Fast::eval`] then says `None`, and the rule runs in CEL, which gives the
//!   verdict and its error text. `&&` and `||` follow the interpreter exactly, including
//!   its absorbing of an error by the other side (`error || true` is true). A differential
//!   test runs generated expressions through both and requires the same verdicts.

use std::borrow::Cow;

use cel::common::ast::{operators, Expr, LiteralValue};
use cel::IdedExpr;

use super::facts::Facts;
use crate::clock::unix_seconds as unix;

/// The claims a set of rules can read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ClaimsRead {
    /// These names only (`identity.claims.x`, `identity.claims['x']`, `has(…)`, `?.`).
    #[default]
    None,
    Names(Vec<String>),
    /// A rule reads `identity.claims` in a way that names no claim (iterates it, indexes
    /// it with a computed key, passes `identity` whole): every claim is kept.
    All,
}

impl ClaimsRead {
    pub fn add(&mut self, other: ClaimsRead) {
        match (std::mem::take(self), other) {
            (ClaimsRead::All, _) | (_, ClaimsRead::All) => *self = ClaimsRead::All,
            (ClaimsRead::None, o) | (o, ClaimsRead::None) => *self = o,
            (ClaimsRead::Names(mut a), ClaimsRead::Names(b)) => {
                for n in b {
                    if !a.contains(&n) {
                        a.push(n);
                    }
                }
                *self = ClaimsRead::Names(a);
            }
        }
    }

    /// True when a rule may read the claim `name`.
    pub fn reads(&self, name: &str) -> bool {
        match self {
            ClaimsRead::None => false,
            ClaimsRead::Names(n) => n.iter().any(|n| n == name),
            ClaimsRead::All => true,
        }
    }
}

fn ident(e: &IdedExpr, name: &str) -> bool {
    matches!(&e.expr, Expr::Ident(n) if n == name)
}

fn string_literal(e: &IdedExpr) -> Option<&str> {
    match &e.expr {
        Expr::Literal(LiteralValue::String(s)) => Some(s.inner()),
        _ => None,
    }
}

/// `<var>.<field>` or `<var>['<field>']`: the field's name.
fn field_of<'e>(e: &'e IdedExpr, var: &str) -> Option<&'e str> {
    match &e.expr {
        Expr::Select(s) if !s.test && ident(&s.operand, var) => Some(&s.field),
        Expr::Call(c) if c.func_name == operators::INDEX && c.args.len() == 2 => {
            ident(&c.args[0], var)
                .then(|| string_literal(&c.args[1]))
                .flatten()
        }
        _ => None,
    }
}

/// `<var>.<map>.<key>`, `<var>.<map>['<key>']` (and, with `test`, `has(<var>.<map>.<key>)`):
/// the key. `optional` also takes `?.` and `[?…]`.
fn key_of<'e>(
    e: &'e IdedExpr,
    var: &str,
    map: &str,
    test: bool,
    optional: bool,
) -> Option<&'e str> {
    let is_map = |m: &IdedExpr| field_of(m, var) == Some(map);
    match &e.expr {
        Expr::Select(s) if s.test == test && is_map(&s.operand) => Some(&s.field),
        Expr::Call(c) if !test && c.args.len() == 2 && is_map(&c.args[0]) => {
            let f = c.func_name.as_str();
            let ok = f == operators::INDEX
                || (optional && (f == operators::OPT_INDEX || f == operators::OPT_SELECT));
            ok.then(|| string_literal(&c.args[1])).flatten()
        }
        _ => None,
    }
}

/// The claims `expr` can read (see [`ClaimsRead`]).
pub fn claims_read(expr: &IdedExpr) -> ClaimsRead {
    let mut read = ClaimsRead::None;
    walk_claims(expr, &mut read);
    read
}

fn walk_claims(e: &IdedExpr, read: &mut ClaimsRead) {
    if *read == ClaimsRead::All {
        return;
    }
    let named = key_of(e, "identity", "claims", false, true)
        .or_else(|| key_of(e, "identity", "claims", true, false));
    if let Some(name) = named {
        read.add(ClaimsRead::Names(vec![name.to_string()]));
        return;
    }
    // `'x' in identity.claims` tests for one claim.
    if let Expr::Call(c) = &e.expr {
        if c.func_name == operators::IN && c.args.len() == 2 {
            if let (Some(name), Some("claims")) =
                (string_literal(&c.args[0]), field_of(&c.args[1], "identity"))
            {
                read.add(ClaimsRead::Names(vec![name.to_string()]));
                return;
            }
        }
    }
    if let Some(field) = field_of(e, "identity") {
        if field == "claims" {
            *read = ClaimsRead::All;
        }
        return;
    }
    match &e.expr {
        Expr::Ident(n) if n == "identity" => *read = ClaimsRead::All,
        Expr::Call(c) => {
            c.target.iter().for_each(|t| walk_claims(t, read));
            c.args.iter().for_each(|a| walk_claims(a, read));
        }
        Expr::Select(s) => walk_claims(&s.operand, read),
        Expr::List(l) => l.elements.iter().for_each(|x| walk_claims(x, read)),
        Expr::Map(m) => m.entries.iter().for_each(|en| match &en.expr {
            cel::common::ast::EntryExpr::MapEntry(me) => {
                walk_claims(&me.key, read);
                walk_claims(&me.value, read);
            }
            cel::common::ast::EntryExpr::StructField(sf) => walk_claims(&sf.value, read),
        }),
        Expr::Struct(st) => st.entries.iter().for_each(|en| {
            if let cel::common::ast::EntryExpr::StructField(sf) = &en.expr {
                walk_claims(&sf.value, read);
            }
        }),
        Expr::Comprehension(c) => {
            for x in [
                &c.iter_range,
                &c.accu_init,
                &c.loop_cond,
                &c.loop_step,
                &c.result,
            ] {
                walk_claims(x, read);
            }
        }
        Expr::Literal(_) | Expr::Ident(_) | Expr::Unspecified => {}
    }
}

/// A rule in a shape evaluated without the interpreter.
#[derive(Debug, Clone, PartialEq)]
pub enum Fast {
    Const(bool),
    And(Box<Fast>, Box<Fast>),
    Or(Box<Fast>, Box<Fast>),
    Not(Box<Fast>),
    /// `==` (or `!=` when `negated`).
    Eq(Term, Term, bool),
    /// `<`, `<=`, `>`, `>=`: true when the ordering of left to right is one of these.
    Cmp(Term, Term, [bool; 3]),
    /// `needle in list`.
    In(Term, List),
    /// `has(map.key)`, `'key' in map`.
    Has(Map, String),
    /// A claim read as true or false (`identity.claims.trusted`).
    Truth(Term),
}

/// A value a [`Fast`] compares.
#[derive(Debug, Clone, PartialEq)]
pub enum Term {
    Str(String),
    Int(i64),
    Bool(bool),
    Null,
    Now,
    Subject,
    SessionId,
    Provider,
    ExpiresAt,
    Method,
    Path,
    Host,
    Client,
    ClientCertificate,
    TokenSource,
    Claim(String),
    Param(String),
    Header(String),
    /// `term + n` (`term - n` is `+ -n`).
    Plus(Box<Term>, i64),
}

/// A list `in` looks into.
#[derive(Debug, Clone, PartialEq)]
pub enum List {
    Scopes,
    Organizations,
    IpRestrict,
    /// A claim holding a list of strings.
    Claim(String),
    Literal(Vec<String>),
}

/// A map `has` looks into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Map {
    Claims,
    Params,
    Headers,
}

/// A value as [`Fast`] compares it.
#[derive(Debug, Clone, PartialEq)]
enum V<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    Bool(bool),
    Null,
}

impl Fast {
    /// The fast form of `e`, if it has one.
    pub fn compile(e: &IdedExpr) -> Option<Fast> {
        match &e.expr {
            Expr::Literal(LiteralValue::Boolean(b)) => Some(Fast::Const(*b.inner())),
            Expr::Select(s) if s.test => {
                let map = map_of(&s.operand)?;
                Some(Fast::Has(map, s.field.clone()))
            }
            Expr::Call(c) if c.target.is_none() => {
                let a = &c.args;
                let two = |f: fn(Box<Fast>, Box<Fast>) -> Fast| -> Option<Fast> {
                    Some(f(
                        Box::new(Fast::compile(&a[0])?),
                        Box::new(Fast::compile(&a[1])?),
                    ))
                };
                let cmp = |want: [bool; 3]| Some(Fast::Cmp(term(&a[0])?, term(&a[1])?, want));
                match (c.func_name.as_str(), a.len()) {
                    (operators::LOGICAL_AND, 2) => two(Fast::And),
                    (operators::LOGICAL_OR, 2) => two(Fast::Or),
                    (operators::LOGICAL_NOT, 1) => Some(Fast::Not(Box::new(Fast::compile(&a[0])?))),
                    (operators::EQUALS, 2) => Some(Fast::Eq(term(&a[0])?, term(&a[1])?, false)),
                    (operators::NOT_EQUALS, 2) => Some(Fast::Eq(term(&a[0])?, term(&a[1])?, true)),
                    // [less, equal, greater]
                    (operators::LESS, 2) => cmp([true, false, false]),
                    (operators::LESS_EQUALS, 2) => cmp([true, true, false]),
                    (operators::GREATER, 2) => cmp([false, false, true]),
                    (operators::GREATER_EQUALS, 2) => cmp([false, true, true]),
                    (operators::IN, 2) => {
                        if let (Some(key), Some(map)) = (string_literal(&a[0]), map_of(&a[1])) {
                            return Some(Fast::Has(map, key.to_string()));
                        }
                        Some(Fast::In(term(&a[0])?, list(&a[1])?))
                    }
                    _ => None,
                }
            }
            _ => match term(e)? {
                t @ Term::Claim(_) => Some(Fast::Truth(t)),
                _ => None,
            },
        }
    }

    /// The verdict, when it is plainly true or false; `None`: ask the interpreter.
    pub fn eval<'a, 'f: 'a>(&'a self, f: &'a Facts<'f>) -> Option<bool> {
        match self {
            Fast::Const(b) => Some(*b),
            Fast::Or(a, b) => junction(a, b, f, true),
            Fast::And(a, b) => junction(a, b, f, false),
            Fast::Not(a) => a.eval(f).map(|b| !b),
            Fast::Eq(a, b, negated) => {
                let equal = match (value(a, f)?, value(b, f)?) {
                    (V::Str(x), V::Str(y)) => x == y,
                    (V::Int(x), V::Int(y)) => x == y,
                    (V::Bool(x), V::Bool(y)) => x == y,
                    (V::Null, V::Null) => true,
                    // null against any other value: not equal (no error).
                    (V::Null, _) | (_, V::Null) => false,
                    _ => return None,
                };
                Some(equal != *negated)
            }
            Fast::Cmp(a, b, want) => {
                let ord = match (value(a, f)?, value(b, f)?) {
                    (V::Str(x), V::Str(y)) => x.cmp(&y),
                    (V::Int(x), V::Int(y)) => x.cmp(&y),
                    _ => return None,
                };
                Some(want[(ord as i8 + 1) as usize])
            }
            Fast::In(needle, haystack) => {
                let V::Str(needle) = value(needle, f)? else {
                    return None;
                };
                let i = f.identity;
                let found = match haystack {
                    List::Scopes => i.scopes().any(|s| s == needle),
                    List::Organizations => i.organizations().any(|s| s == needle),
                    List::IpRestrict => i.ip_restrict().any(|s| s == needle),
                    List::Literal(items) => items.iter().any(|s| *s == needle),
                    List::Claim(name) => {
                        let c = i.claim(name)?;
                        if !c.json {
                            return None;
                        }
                        let items: Vec<serde_json::Value> = serde_json::from_str(c.value).ok()?;
                        let mut found = false;
                        for it in &items {
                            found |= it.as_str()? == needle;
                        }
                        found
                    }
                };
                Some(found)
            }
            Fast::Truth(t) => match value(t, f)? {
                V::Bool(b) => Some(b),
                _ => None,
            },
            Fast::Has(map, key) => Some(match map {
                Map::Claims => f.identity.claim(key).is_some(),
                Map::Params => f.param(key).is_some(),
                Map::Headers => f.header(key).is_some(),
            }),
        }
    }
}

/// `||` (`decisive` true) or `&&` (false) as the interpreter evaluates it: a decisive left
/// side decides; otherwise the right side is evaluated (its error is the result), and a
/// decisive right side absorbs an error on the left (`error || true` is true).
fn junction<'a, 'f: 'a>(
    a: &'a Fast,
    b: &'a Fast,
    f: &'a Facts<'f>,
    decisive: bool,
) -> Option<bool> {
    let left = a.eval(f);
    if left == Some(decisive) {
        return Some(decisive);
    }
    match (left, b.eval(f)?) {
        (Some(_), right) => Some(right),
        (None, right) if right == decisive => Some(decisive),
        (None, _) => None,
    }
}

/// `identity.claims`, `request.params`, `request.headers`.
fn map_of(e: &IdedExpr) -> Option<Map> {
    match (field_of(e, "identity"), field_of(e, "request")) {
        (Some("claims"), _) => Some(Map::Claims),
        (_, Some("params")) => Some(Map::Params),
        (_, Some("headers")) => Some(Map::Headers),
        _ => None,
    }
}

fn term(e: &IdedExpr) -> Option<Term> {
    match &e.expr {
        Expr::Literal(LiteralValue::String(s)) => return Some(Term::Str(s.inner().to_string())),
        Expr::Literal(LiteralValue::Int(i)) => return Some(Term::Int(*i.inner())),
        Expr::Literal(LiteralValue::Boolean(b)) => return Some(Term::Bool(*b.inner())),
        Expr::Literal(LiteralValue::Null) => return Some(Term::Null),
        Expr::Ident(n) if n == "now" => return Some(Term::Now),
        Expr::Call(c)
            if c.target.is_none()
                && c.args.len() == 2
                && (c.func_name == operators::ADD || c.func_name == operators::SUBSTRACT) =>
        {
            let sign = if c.func_name == operators::ADD { 1 } else { -1 };
            let Expr::Literal(LiteralValue::Int(n)) = &c.args[1].expr else {
                return None;
            };
            let n = n.inner().checked_mul(sign)?;
            return Some(Term::Plus(Box::new(term(&c.args[0])?), n));
        }
        _ => {}
    }
    if let Some(k) = key_of(e, "identity", "claims", false, false) {
        return Some(Term::Claim(k.to_string()));
    }
    if let Some(k) = key_of(e, "request", "params", false, false) {
        return Some(Term::Param(k.to_string()));
    }
    if let Some(k) = key_of(e, "request", "headers", false, false) {
        return Some(Term::Header(k.to_string()));
    }
    Some(match (field_of(e, "identity"), field_of(e, "request")) {
        (Some("subject"), _) => Term::Subject,
        (Some("session_id"), _) => Term::SessionId,
        (Some("provider"), _) => Term::Provider,
        (Some("expires_at"), _) => Term::ExpiresAt,
        (_, Some("method")) => Term::Method,
        (_, Some("path")) => Term::Path,
        (_, Some("host")) => Term::Host,
        (_, Some("client")) => Term::Client,
        (_, Some("client_certificate")) => Term::ClientCertificate,
        (_, Some("token_source")) => Term::TokenSource,
        _ => return None,
    })
}

fn list(e: &IdedExpr) -> Option<List> {
    if let Expr::List(l) = &e.expr {
        if !l.optional_indices.is_empty() {
            return None;
        }
        let items: Option<Vec<String>> = l
            .elements
            .iter()
            .map(|x| string_literal(x).map(str::to_string))
            .collect();
        return items.map(List::Literal);
    }
    if let Some(k) = key_of(e, "identity", "claims", false, false) {
        return Some(List::Claim(k.to_string()));
    }
    match field_of(e, "identity")? {
        "scopes" => Some(List::Scopes),
        "organizations" => Some(List::Organizations),
        "ip_restrict" => Some(List::IpRestrict),
        _ => None,
    }
}

fn value<'a, 'f: 'a>(t: &'a Term, f: &'a Facts<'f>) -> Option<V<'a>> {
    let text = |s: &'a str| V::Str(Cow::Borrowed(s));
    let maybe = |s: Option<&'a str>| s.map_or(V::Null, text);
    let i = f.identity;
    Some(match t {
        Term::Str(s) => text(s),
        Term::Int(n) => V::Int(*n),
        Term::Bool(b) => V::Bool(*b),
        Term::Null => V::Null,
        Term::Now => V::Int(unix(f.now)),
        Term::Subject => text(i.subject()),
        Term::SessionId => maybe(i.session_id()),
        Term::Provider => text(f.provider),
        Term::ExpiresAt => i.expires_at().map_or(V::Null, |t| V::Int(unix(t))),
        Term::Method => text(f.method),
        Term::Path => text(f.path),
        Term::Host => maybe(f.host),
        Term::Client => f
            .client
            .map_or(V::Null, |ip| V::Str(Cow::Owned(ip.to_string()))),
        Term::ClientCertificate => maybe(f.client_certificate),
        Term::TokenSource => text(f.token_source),
        Term::Claim(name) => {
            let c = i.claim(name)?;
            if !c.json {
                return Some(text(c.value));
            }
            match c.value {
                "true" => V::Bool(true),
                "false" => V::Bool(false),
                "null" => V::Null,
                n => V::Int(n.parse().ok()?),
            }
        }
        Term::Param(name) => text(f.param(name)?),
        Term::Header(name) => V::Str(f.header(name)?),
        Term::Plus(t, n) => match value(t, f)? {
            V::Int(x) => V::Int(x.checked_add(*n)?),
            _ => return None,
        },
    })
}
