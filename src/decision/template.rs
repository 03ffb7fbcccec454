//! What a route matches: a path prefix (`path_prefix: /api`) or a path template
//! (`path: /orgs/{org}/wallets/{walletId}`, `path: /files/{rest*}`), and the one order
//! routes are tried in.
//!
//! A template is matched on the canonical path, segment by segment (see
//! [`crate::decision::canonical`]: dot segments, repeated slashes and escapes of unreserved
//! characters are already resolved). `{name}` takes exactly one non-empty segment, percent-
//! decoded; a segment whose decoded form contains `/` or `\` (`%2F`, `%5C`) is never a
//! parameter, so a parameter can never be re-split by a backend into two segments. A
//! trailing `{name*}` takes the rest of the path (zero or more segments), as forwarded
//! (escapes kept). Literal segments compare exactly (ASCII case ignored when the table
//! folds case); parameter values are never case-folded.
//!
//! **Precedence: the most specific route wins**, segment by segment from the left: a
//! literal segment beats a parameter, a parameter beats a tail (a `path_prefix` ends in a
//! tail), and a path that ends where the template ends beats a tail. Routes that match
//! exactly the same requests (the same shape on the same host, such as `/orgs/{org}` and
//! `/orgs/{id}`, or `path_prefix: /files` and `path: /files/{rest*}`) are refused by the
//! configuration check, both named. Among prefixes this is the longest prefix, as before.

use std::sync::Arc;

/// The parameters a template took from a path: names in template order, decoded values.
pub type Params = Vec<(Arc<str>, String)>;

/// Segments a template may have (a bound on config input, not a limit anyone meets).
const MAX_SEGMENTS: usize = 64;

/// One `path:` template, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    source: String,
    segments: Vec<Segment>,
    /// The `{name*}` that takes the rest of the path.
    tail: Option<Arc<str>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(Arc<str>),
}

/// Characters a literal template segment may use: RFC 3986 `pchar` without `%` (write the
/// character itself), `;` (a path parameter to some servers) and the braces.
fn literal_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~!$&'()*+,=:@".contains(c)
}

fn param_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 64
}

impl PathTemplate {
    /// Parses a `path:` value; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<PathTemplate, String> {
        let Some(rest) = text.strip_prefix('/') else {
            return Err("a path template starts with `/`".into());
        };
        let parts: Vec<&str> = rest.split('/').collect();
        if parts.len() > MAX_SEGMENTS {
            return Err(format!("at most {MAX_SEGMENTS} segments"));
        }
        let mut segments = Vec::new();
        let mut tail = None;
        let mut names: Vec<&str> = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            if let Some(inner) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                let (name, is_tail) = match inner.strip_suffix('*') {
                    Some(n) => (n, true),
                    None => (inner, false),
                };
                if !param_name(name) {
                    return Err(format!(
                        "`{{{inner}}}`: a parameter is `{{name}}` or a last `{{name*}}`, the name letters, digits and `_`"
                    ));
                }
                if names.contains(&name) {
                    return Err(format!("parameter `{name}` appears twice"));
                }
                names.push(name);
                if is_tail {
                    if !last {
                        return Err(format!(
                            "`{{{name}*}}` takes the rest of the path: it must be the last segment"
                        ));
                    }
                    tail = Some(Arc::from(name));
                } else {
                    segments.push(Segment::Param(Arc::from(name)));
                }
                continue;
            }
            if part.contains(['{', '}']) {
                return Err(format!(
                    "`{part}`: a segment is literal text or one whole `{{name}}`, not both"
                ));
            }
            if part.is_empty() && !last {
                return Err("no empty segments (`//`)".into());
            }
            if *part == "." || *part == ".." {
                return Err(
                    "no `.` or `..` segments: the path is matched after they are resolved".into(),
                );
            }
            if let Some(c) = part.chars().find(|c| !literal_char(*c)) {
                return Err(format!(
                    "`{c}` in `{part}`: literal segments use letters, digits and -._~!$&'()*+,=:@ (write characters, not %-escapes)"
                ));
            }
            segments.push(Segment::Literal((*part).to_string()));
        }
        Ok(PathTemplate {
            source: text.to_string(),
            segments,
            tail,
        })
    }

    /// The template as written.
    pub(crate) fn as_str(&self) -> &str {
        &self.source
    }

    /// The parameter names, in order (the tail's last).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.segments
            .iter()
            .filter_map(|s| match s {
                Segment::Param(n) => Some(&**n),
                Segment::Literal(_) => None,
            })
            .chain(self.tail.as_deref())
    }

    /// The parameters, when `path` (a canonical path as forwarded: escapes other than of
    /// unreserved characters kept) matches.
    pub fn matches(&self, path: &str, fold_case: bool) -> Option<Params> {
        let mut rest = Some(path.strip_prefix('/')?);
        let mut params = Params::new();
        for segment in &self.segments {
            let here = rest?;
            let (this, next) = match here.split_once('/') {
                Some((this, next)) => (this, Some(next)),
                None => (here, None),
            };
            match segment {
                Segment::Literal(l) if fold_case => {
                    if !l.eq_ignore_ascii_case(this) {
                        return None;
                    }
                }
                Segment::Literal(l) => {
                    if l != this {
                        return None;
                    }
                }
                Segment::Param(name) => params.push((name.clone(), decode_segment(this)?)),
            }
            rest = next;
        }
        match (&self.tail, rest) {
            (Some(name), rest) => params.push((name.clone(), rest.unwrap_or("").to_string())),
            (None, None) => {}
            (None, Some(_)) => return None,
        }
        Some(params)
    }

    /// Its place in the matching order (see [`RouteKey`]).
    fn key(&self, fold_case: bool) -> RouteKey {
        let mut parts: Vec<KeyPart> = self
            .segments
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => KeyPart::Literal(fold(l, fold_case)),
                Segment::Param(_) => KeyPart::Param,
            })
            .collect();
        parts.push(if self.tail.is_some() {
            KeyPart::Tail
        } else {
            KeyPart::End
        });
        RouteKey(parts)
    }
}

fn fold(s: &str, fold_case: bool) -> String {
    if fold_case {
        s.to_ascii_lowercase()
    } else {
        s.to_string()
    }
}

/// One path segment as a parameter value: percent-decoded, non-empty, UTF-8, and never a
/// `/` or `\` (an encoded slash would make one parameter two segments to a backend).
fn decode_segment(segment: &str) -> Option<String> {
    if segment.is_empty() {
        return None;
    }
    if !segment.contains('%') {
        return Some(segment.to_string());
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let value = String::from_utf8(out).ok()?;
    if value.contains(['/', '\\']) || value.chars().any(char::is_control) {
        return None;
    }
    Some(value)
}

/// What a route matches: a path prefix or a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoutePath {
    /// `path_prefix:` — the path and everything below it, on segment boundaries.
    Prefix(String),
    /// `path:` — a template.
    Template(Arc<PathTemplate>),
}

impl RoutePath {
    /// As written in the config (`/api`, `/orgs/{org}`).
    pub fn as_str(&self) -> &str {
        match self {
            RoutePath::Prefix(p) => p,
            RoutePath::Template(t) => t.as_str(),
        }
    }

    /// The config key it was given under.
    pub(crate) fn key_name(&self) -> &'static str {
        match self {
            RoutePath::Prefix(_) => "path_prefix",
            RoutePath::Template(_) => "path",
        }
    }

    /// The template's parameter names (none for a prefix).
    pub(crate) fn param_names(&self) -> Vec<&str> {
        match self {
            RoutePath::Prefix(_) => Vec::new(),
            RoutePath::Template(t) => t.names().collect(),
        }
    }

    /// Its place in the matching order.
    pub(crate) fn key(&self, fold_case: bool) -> RouteKey {
        match self {
            RoutePath::Template(t) => t.key(fold_case),
            RoutePath::Prefix(p) => {
                // `/a/b` is `a`, `b`, then any tail; `/a/b/` needs the `/` after `b`.
                let trimmed = p.trim_start_matches('/');
                let (body, slash) = match trimmed.strip_suffix('/') {
                    Some(b) => (b, true),
                    None => (trimmed, p == "/"),
                };
                let mut parts: Vec<KeyPart> = body
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(|s| KeyPart::Literal(fold(s, fold_case)))
                    .collect();
                parts.push(if slash {
                    KeyPart::TailSlash
                } else {
                    KeyPart::Tail
                });
                RouteKey(parts)
            }
        }
    }
}

/// A route's place in the matching order: its segments' kinds, compared from the left,
/// lowest first. Two routes with the same key (on the same host) match the same requests.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct RouteKey(Vec<KeyPart>);

/// One segment's kind, most specific first (the variant order is the precedence).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum KeyPart {
    /// The path ends here (a template without a tail).
    End,
    /// This literal text (case-folded when the table folds case).
    Literal(String),
    /// Any one segment.
    Param,
    /// A `path_prefix` ending in `/`: at least one more segment, possibly empty.
    TailSlash,
    /// Anything, including nothing.
    Tail,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(t: &str, path: &str) -> Option<Vec<(String, String)>> {
        PathTemplate::parse(t)
            .unwrap()
            .matches(path, false)
            .map(|p| p.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }

    fn p(pairs: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn a_parameter_is_one_decoded_segment_and_never_a_slash() {
        let t = "/orgs/{org}/users";
        assert_eq!(params(t, "/orgs/acme/users"), p(&[("org", "acme")]));
        assert_eq!(params(t, "/orgs/a%20b/users"), p(&[("org", "a b")]));
        assert_eq!(params(t, "/orgs/a%2Fb/users"), None);
        assert_eq!(params(t, "/orgs/a%5Cb/users"), None);
        assert_eq!(params(t, "/orgs//users"), None);
        assert_eq!(params(t, "/orgs/acme/users/"), None);
        assert_eq!(params(t, "/orgs/acme"), None);
        assert_eq!(params(t, "/ORGS/acme/users"), None);
        assert_eq!(params(t, "/orgs/acme/users/x"), None);
        let folded = PathTemplate::parse(t)
            .unwrap()
            .matches("/ORGS/Acme/users", true);
        assert_eq!(folded.unwrap()[0].1, "Acme", "values are never case-folded");
    }

    #[test]
    fn a_tail_takes_the_rest_as_forwarded_including_nothing() {
        let t = "/files/{bucket}/{key*}";
        assert_eq!(params(t, "/files/b"), p(&[("bucket", "b"), ("key", "")]));
        assert_eq!(params(t, "/files/b/"), p(&[("bucket", "b"), ("key", "")]));
        assert_eq!(
            params(t, "/files/b/x/y%2Fz"),
            p(&[("bucket", "b"), ("key", "x/y%2Fz")])
        );
        assert_eq!(params("/", "/"), p(&[]));
        assert_eq!(params("/", "/x"), None);
        assert_eq!(params("/a/", "/a/"), p(&[]));
        assert_eq!(params("/a/", "/a"), None);
    }

    #[test]
    fn templates_that_mean_two_things_are_refused() {
        for (bad, why) in [
            ("orgs/{org}", "starts with `/`"),
            ("/orgs/v{n}", "not both"),
            ("/orgs/{org", "not both"),
            ("/orgs/{}", "a parameter is"),
            ("/orgs/{1x}", "a parameter is"),
            ("/{a}/{a}", "twice"),
            ("/{rest*}/x", "last segment"),
            ("/a//b", "empty segments"),
            ("/a/../b", "`..`"),
            ("/a/%2e", "%-escapes"),
            ("/a;x/b", "`;`"),
        ] {
            let e = PathTemplate::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let long = "/a".repeat(MAX_SEGMENTS + 1);
        assert!(PathTemplate::parse(&long).is_err());
    }

    #[test]
    fn literal_beats_parameter_beats_tail_and_prefixes_keep_longest_first() {
        let t = |s: &str| RoutePath::Template(Arc::new(PathTemplate::parse(s).unwrap()));
        let pre = |s: &str| RoutePath::Prefix(s.into());
        let mut routes = [
            pre("/"),
            pre("/api"),
            pre("/api/"),
            pre("/api/v2"),
            t("/api/{version}"),
            t("/api/v2/{id}"),
            t("/api/{version}/{rest*}"),
            t("/{x}"),
        ];
        routes.sort_by_key(|r| r.key(false));
        let order: Vec<&str> = routes.iter().map(RoutePath::as_str).collect();
        assert_eq!(
            order,
            [
                "/api/v2/{id}",
                "/api/v2",
                "/api/{version}",
                "/api/{version}/{rest*}",
                "/api/",
                "/api",
                "/{x}",
                "/",
            ]
        );
        assert_eq!(pre("/files").key(false), t("/files/{rest*}").key(false));
        assert_eq!(t("/o/{a}").key(false), t("/o/{b}").key(false));
        assert_ne!(pre("/Admin").key(false), pre("/admin").key(false));
        assert_eq!(pre("/Admin").key(true), pre("/admin").key(true));
    }
}
