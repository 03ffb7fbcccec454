//! A route's `rules:` — conditions in CEL (the Common Expression Language, as Envoy's RBAC
//! filter, Istio and Kubernetes admission policies write them) over the resolved identity
//! and the request. Each rule is compiled once, when the configuration is loaded, and
//! checked there: its variables are `identity`, `request` and `now` only, its functions
//! are CEL's standard ones, it is at most [`MAX_EXPR_BYTES`] long and nested at most
//! [`MAX_NESTING`] deep, and a trial run against a sample identity and request refuses an
//! expression whose operations do not fit their operands' types, or that is not true or
//! false. At request time a rule that is false denies, and so does one that fails (a
//! missing key, a wrong type in the provider's data): fail closed, logged with the rule's
//! name and counted.
//!
//! What a rule sees (the names are the contract; see the README's authorization section):
//! - `identity`: `subject`, `session_id`, `scopes` (list), `organizations` (list),
//!   `ip_restrict` (list), `expires_at` (Unix seconds, or `null`), `provider`, `claims`
//!   (the provider's mapped claims, name → value, typed as the provider wrote it: string,
//!   int/uint/double, bool, list or map; a time claim is Unix seconds);
//! - `request`: `method`, `path` (canonical), `params` (the path template's), `host`,
//!   `headers` (lower-case names; values of repeated headers joined with `, `; never the
//!   credential headers `authorization`, `proxy-authorization`, `cookie` or the route's
//!   token header), `client` (the client address, or `null`), `client_certificate` (the
//!   verified certificate's id, or `null`), `token_source` (`authorization`, `cookie`,
//!   `header` or `client_certificate`);
//! - `now`: Unix seconds (an int).

use std::sync::{Arc, LazyLock};

use cel::{Context, Env, ExecutionError, Program, Value};

pub use super::facts::Facts;
pub use super::fast_rules::ClaimsRead;
use super::fast_rules::{claims_read, Fast};

/// The longest expression a rule may have, in bytes.
pub const MAX_EXPR_BYTES: usize = 2048;
/// How deeply brackets and unary operators may nest (the parser is recursive).
pub const MAX_NESTING: usize = 24;
/// The variables a rule may use.
pub const VARIABLES: [&str; 3] = ["identity", "request", "now"];

/// CEL's standard environment, built once.
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::stdlib()));

/// One compiled rule.
pub struct RouteRule {
    pub(crate) name: Arc<str>,
    source: String,
    program: Arc<Program>,
    /// The expression in a shape evaluated without the interpreter, if it has one.
    fast: Option<Arc<Fast>>,
    /// What the client is told when it denies (default: a sentence naming the rule).
    pub(crate) message: Option<Arc<str>>,
    /// 403 (default) or 404 (to not say that the resource exists).
    pub(crate) status: u16,
}

impl std::fmt::Debug for RouteRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteRule")
            .field("name", &self.name)
            .field("expr", &self.source)
            .finish()
    }
}

impl PartialEq for RouteRule {
    fn eq(&self, other: &Self) -> bool {
        (&self.name, &self.source, &self.message, self.status)
            == (&other.name, &other.source, &other.message, other.status)
    }
}

impl Eq for RouteRule {}

/// What one rule said about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleVerdict {
    Pass,
    /// The expression is false.
    False,
    /// The expression could not be evaluated (it denies); the error, for logs only.
    Failed(String),
}

/// A checked CEL expression: what a `rules:` entry's `expr` becomes when the config file
/// is read (so that an error carries the key's line).
#[derive(Clone)]
pub struct Expr {
    source: String,
    program: Arc<Program>,
    fast: Option<Arc<Fast>>,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source)
    }
}

impl Expr {
    /// Compiles and checks `expr`; the error says what is wrong.
    pub fn parse(expr: &str) -> Result<Expr, String> {
        check_size(expr)?;
        let compiled = std::panic::catch_unwind(|| ENV.compile(expr))
            .map_err(|_| "the CEL parser crashes on it; write it another way".to_string())?;
        let program = compiled
            .map_err(|e| format!("does not parse: {}", e.to_string().replace('\n', " ")))?;
        let refs = program.references();
        let bound = bound_names(expr);
        if let Some(v) = refs
            .variables()
            .into_iter()
            .find(|v| !VARIABLES.contains(v) && !bound.contains(v))
        {
            return Err(format!(
                "unknown variable `{v}`: a rule sees `identity`, `request` and `now`"
            ));
        }
        if let Some(f) = refs.functions().into_iter().find(|f| !is_function(f)) {
            return Err(format!(
                "unknown function `{f}`: rules use CEL's standard functions"
            ));
        }
        let fast = Fast::compile(program.expression()).map(Arc::new);
        let mut expr = Expr {
            source: expr.to_string(),
            program: Arc::new(program),
            fast,
        };
        expr.trial()?;
        // Belt and braces: a fast form that disagrees with the interpreter on the sample
        // is not used (the differential test keeps this from happening).
        let sample = Facts::sample();
        if let Some(f) = &expr.fast {
            let rules = RouteRules::new(vec![RouteRule::new("trial", expr.clone(), None, 403)]);
            if f.eval(&sample).is_some() && rules.judge(&sample) != rules.judge_interpreted(&sample)
            {
                expr.fast = None;
            }
        }
        Ok(expr)
    }

    /// The claims the expression can read.
    pub fn claims_read(&self) -> ClaimsRead {
        claims_read(self.program.expression())
    }

    /// True when it has a shape evaluated without the interpreter.
    pub fn is_fast(&self) -> bool {
        self.fast.is_some()
    }

    /// Runs the expression against a sample identity and request: operations that do not
    /// fit their operands and results that are not true or false are configuration
    /// errors. (A missing key is not: whether a header or claim is there depends on the
    /// request.)
    fn trial(&self) -> Result<(), String> {
        let sample = Facts::sample();
        let mut ctx = Context::with_env(ENV.clone());
        ctx.set_variable_resolver(&sample);
        let Some(result) = execute(&self.program, &ctx) else {
            return Err("the expression crashes the CEL interpreter; write it another way".into());
        };
        match result {
            Ok(Value::Bool(_)) => Ok(()),
            Ok(other) => Err(format!(
                "a rule must be true or false; this one gives a {:?}",
                other.type_of()
            )),
            Err(ExecutionError::NoSuchKey(_) | ExecutionError::IndexOutOfBounds(_)) => Ok(()),
            Err(e) => Err(format!("type error: {e}")),
        }
    }
}

impl RouteRule {
    /// A rule of a checked expression.
    pub fn new(name: &str, expr: Expr, message: Option<String>, status: u16) -> RouteRule {
        RouteRule {
            name: Arc::from(name),
            source: expr.source,
            program: expr.program,
            fast: expr.fast,
            message: message.map(Arc::from),
            status,
        }
    }

    /// Compiles and checks `expr` (tests and benches; the config reads an [`Expr`]).
    #[cfg(test)]
    pub(crate) fn compile(
        name: &str,
        expr: &str,
        message: Option<String>,
        status: u16,
    ) -> Result<RouteRule, String> {
        Ok(RouteRule::new(name, Expr::parse(expr)?, message, status))
    }

    /// The expression as written.
    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates the rule in `ctx` (its variables resolved by [`Facts`]).
    fn judge_in(&self, ctx: &Context<'_, '_>) -> RuleVerdict {
        let Some(result) = execute(&self.program, ctx) else {
            return RuleVerdict::Failed("the CEL interpreter crashed on it".into());
        };
        match result {
            Ok(Value::Bool(true)) => RuleVerdict::Pass,
            Ok(Value::Bool(false)) => RuleVerdict::False,
            Ok(other) => {
                RuleVerdict::Failed(format!("gave a {:?}, not true or false", other.type_of()))
            }
            Err(e) => RuleVerdict::Failed(describe(&e)),
        }
    }
}

/// Runs the interpreter. A panic inside it — a bug of the third-party crate, on some
/// input — is `None`, never a crashed worker: the rule then denies (fail closed).
fn execute(program: &Program, ctx: &Context<'_, '_>) -> Option<cel::ResolveResult> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| program.execute(ctx))).ok()
}

/// A request-time error in words that carry no value the expression read: values come
/// from the identity (a Prefactor or EnOS session id *is* the token) and the request, and
/// this text is logged and shown by `explain`. Names from the expression and type names
/// only.
fn describe(e: &ExecutionError) -> String {
    match e {
        ExecutionError::NoSuchKey(_) => "a key it reads is missing".into(),
        ExecutionError::UndeclaredReference(name) => format!("`{name}` is not defined"),
        ExecutionError::NoSuchOverload(o) => format!(
            "`{}` does not take ({})",
            o.function(),
            o.argument_types().join(", ")
        ),
        ExecutionError::ValuesNotComparable(a, b) => format!(
            "a {:?} cannot be compared with a {:?}",
            a.type_of(),
            b.type_of()
        ),
        ExecutionError::UnsupportedBinaryOperator(op, a, b) => format!(
            "`{op}` does not take a {:?} and a {:?}",
            a.type_of(),
            b.type_of()
        ),
        ExecutionError::UnexpectedType { got, want } => {
            format!("a {got} where a {want} is needed")
        }
        ExecutionError::FunctionError { function, .. } => format!("`{function}` failed"),
        ExecutionError::DivisionByZero(_) | ExecutionError::RemainderByZero(_) => {
            "division by zero".into()
        }
        ExecutionError::IndexOutOfBounds(_) => "a list index out of bounds".into(),
        ExecutionError::Overflow(op, _, _) => format!("`{op}` overflowed"),
        _ => "it could not be evaluated".into(),
    }
}

/// Bounds the input before the (recursive) parser sees it.
fn check_size(expr: &str) -> Result<(), String> {
    if expr.trim().is_empty() {
        return Err(
            "empty: write a condition such as `request.params.org in identity.organizations`"
                .into(),
        );
    }
    if expr.len() > MAX_EXPR_BYTES {
        return Err(format!(
            "{} bytes: a rule is at most {MAX_EXPR_BYTES}; split it into several rules",
            expr.len()
        ));
    }
    // Brackets and runs of unary operators, outside string literals.
    let (mut depth, mut deepest, mut run) = (0usize, 0usize, 0usize);
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in expr.chars() {
        if let Some(q) = quote {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                _ if c == q => quote = None,
                _ => {}
            }
            continue;
        }
        match c {
            '"' | '\'' => quote = Some(c),
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        run = if c == '!' || c == '-' {
            run + 1
        } else if c.is_whitespace() {
            run
        } else {
            0
        };
        deepest = deepest.max(depth + run);
    }
    if deepest > MAX_NESTING {
        return Err(format!(
            "nested more than {MAX_NESTING} deep; split it into several rules"
        ));
    }
    Ok(())
}

/// True for an operator or a function CEL's standard environment has.
fn is_function(name: &str) -> bool {
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return true; // operators: `_==_`, `@in`, `!_`, …
    }
    // Called with no arguments, as a function or a method of each kind of value, a known
    // function complains about its arguments, an unknown one about its name.
    let ctx = Context::with_env(ENV.clone());
    [
        "", "''.", "[].", "{}.", "1.", "1u.", "1.0.", "true.", "b''.",
    ]
    .iter()
    .filter_map(|receiver| ENV.compile(&format!("{receiver}{name}()")).ok())
    .any(|probe| {
        execute(&probe, &ctx)
            .is_some_and(|r| !matches!(r, Err(ExecutionError::UndeclaredReference(_))))
    })
}

/// The names the expression binds itself: the first argument of the comprehension macros
/// (`scopes.exists(s, s == 'admin')`), which the parser lists among its variables.
fn bound_names(expr: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for mac in ["all(", "exists(", "exists_one(", "map(", "filter("] {
        for (at, _) in expr.match_indices(mac) {
            if !expr[..at].ends_with('.') {
                continue;
            }
            let args = &expr[at + mac.len()..];
            if let Some((name, _)) = args.split_once(',') {
                out.push(name.trim());
            }
        }
    }
    out
}

/// A route's rules, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteRules {
    pub(crate) list: Vec<Arc<RouteRule>>,
}

impl RouteRules {
    pub fn new(list: Vec<RouteRule>) -> RouteRules {
        RouteRules {
            list: list.into_iter().map(Arc::new).collect(),
        }
    }

    /// Every rule's verdict on the sample, as [`RouteRules::judge`] gives it and from the
    /// interpreter alone (for the fuzz target: they must agree).
    #[doc(hidden)]
    pub fn judge_sample_both(&self) -> (Vec<RuleVerdict>, Vec<RuleVerdict>) {
        let sample = Facts::sample();
        (self.judge(&sample), self.judge_interpreted(&sample))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Every rule's verdict, in order: from its fast form when that gives one, else from
    /// the interpreter (whose context is made once, when the first rule needs it).
    pub fn judge(&self, facts: &Facts<'_>) -> Vec<RuleVerdict> {
        let mut ctx: Option<Context<'_, '_>> = None;
        self.list
            .iter()
            .map(|r| {
                match r.fast.as_deref().and_then(|f| f.eval(facts)) {
                    Some(true) => return RuleVerdict::Pass,
                    Some(false) => return RuleVerdict::False,
                    None => {}
                }
                let ctx = ctx.get_or_insert_with(|| {
                    let mut c = Context::with_env(ENV.clone());
                    c.set_variable_resolver(facts);
                    c
                });
                r.judge_in(ctx)
            })
            .collect()
    }

    /// Every rule's verdict from the interpreter alone (the differential test's reference).
    #[doc(hidden)]
    pub fn judge_interpreted(&self, facts: &Facts<'_>) -> Vec<RuleVerdict> {
        let mut ctx = Context::with_env(ENV.clone());
        ctx.set_variable_resolver(facts);
        self.list.iter().map(|r| r.judge_in(&ctx)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::IdentityParts;

    fn compile(expr: &str) -> Result<RouteRule, String> {
        RouteRule::compile("r", expr, None, 403)
    }

    #[test]
    fn rules_are_checked_when_they_are_loaded() {
        for ok in [
            "request.params.org in identity.organizations",
            "'admin' in identity.scopes && identity.claims.role == 'admin'",
            "request.headers['x-org-id'] in identity.organizations",
            "now < 1900000000",
            "identity.subject.startsWith('user-') && size(identity.scopes) > 0",
            "identity.scopes.exists(s, s == 'read')",
            "has(identity.claims.two_factor) && identity.claims.two_factor == 'true'",
        ] {
            compile(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for (bad, why) in [
            ("user.admin", "unknown variable `user`"),
            ("identity.subject == ", "does not parse"),
            (
                "frobnicate(identity.subject)",
                "unknown function `frobnicate`",
            ),
            ("identity.scopes + 1 == 2", "type error"),
            ("identity.subject", "true or false"),
            ("", "empty"),
            (&"(".repeat(30), "nested"),
            (&"!".repeat(30), "nested"),
            (
                &format!("'{}' == identity.subject", "x".repeat(MAX_EXPR_BYTES)),
                "bytes",
            ),
        ] {
            let e = compile(bad)
                .err()
                .unwrap_or_else(|| panic!("{bad} compiled"));
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn a_rule_that_fails_at_request_time_denies() {
        let rule = compile("request.headers['x-tenant'] == 'a'").unwrap();
        let rules = RouteRules::new(vec![rule]);
        let sample = Facts::sample();
        assert_eq!(
            rules.judge(&sample),
            [RuleVerdict::Failed("a key it reads is missing".into())]
        );
        // The error never carries a value the rule read (a session id can be the token).
        let compared = compile("identity.session_id > 3").err().unwrap();
        assert!(compared.contains("type error"), "{compared}");
        let rule = compile("has(identity.claims.level) && identity.claims.level > 3").unwrap();
        let verdicts = RouteRules::new(vec![rule]).judge(&Facts {
            identity: &IdentityParts {
                claims: vec![crate::identity::Claim::text("level", "secret-value")],
                ..IdentityParts::default()
            }
            .into(),
            ..Facts::sample()
        });
        match &verdicts[..] {
            [RuleVerdict::Failed(e)] => assert!(!e.contains("secret"), "{e}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn credentials_never_reach_a_rule() {
        let mut headers = http::HeaderMap::new();
        headers.insert("authorization", "Bearer secret".parse().unwrap());
        headers.insert("cookie", "sid=secret".parse().unwrap());
        headers.insert("x-api-key", "secret".parse().unwrap());
        headers.insert("x-org-id", "org-1".parse().unwrap());
        let facts = Facts {
            headers: &headers,
            token_header: &|h| h == "x-api-key",
            ..Facts::sample()
        };
        let seen =
            "request.headers.exists(h, h == 'authorization' || h == 'cookie' || h == 'x-api-key')";
        let rules = RouteRules::new(vec![
            compile(seen).unwrap(),
            compile("request.headers['x-org-id'] == 'org-1'").unwrap(),
        ]);
        assert_eq!(rules.judge(&facts), [RuleVerdict::False, RuleVerdict::Pass]);
    }
}
