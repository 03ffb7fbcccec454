//! The facts as CEL sees them: `identity`, `request` and `now` for the interpreter's
//! variable resolver. `identity` and `request` are views whose fields are made when a rule
//! reads them, their strings borrowed — a rule pays for what it reads, not for the whole
//! identity.

use std::collections::HashMap;
use std::sync::Arc;

use cel::common::traits::{Container, Indexer};
use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelUInt, Type,
};
use cel::common::value::{CowVal, Val};
use cel::ExecutionError;

use super::facts::Facts;
use crate::clock::unix_seconds as unix;

impl Facts<'_> {
    /// `identity`, `request` and `now` as CEL sees them: `identity` and `request` are
    /// views of these facts, each field made when a rule reads it, its strings borrowed —
    /// a rule pays for what it reads, not for the whole identity.
    fn variable<'v>(&'v self, name: &str) -> Option<CowVal<'v, 'v>> {
        match name {
            "identity" => Some(CowVal::owned(View::new(self, Part::Identity))),
            "request" => Some(CowVal::owned(View::new(self, Part::Request))),
            "now" => Some(CowVal::owned(CelInt::from(unix(self.now)))),
            _ => None,
        }
    }

    /// `request.headers`: every header but the credential ones; repeated ones joined.
    fn headers_map<'v>(&'v self) -> CelMap<'v> {
        let out: HashMap<CelMapKey<'v>, Box<dyn Val + 'v>> = self
            .visible_headers()
            .map(|(name, value)| {
                let value: Box<dyn Val + 'v> = Box::new(CelString::from(value));
                (CelMapKey::String(CelString::from(name)), value)
            })
            .collect();
        out.into()
    }
}

impl cel::context::VariableResolver for Facts<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        self.variable(variable)
    }
}

/// Which part of the facts a [`View`] shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Identity,
    Request,
}

/// `identity` or `request`: a CEL map whose fields are made when they are read.
#[derive(Clone, Copy)]
struct View<'v> {
    facts: &'v Facts<'v>,
    part: Part,
}

impl<'v> View<'v> {
    fn new(facts: &'v Facts<'v>, part: Part) -> Self {
        View { facts, part }
    }

    const IDENTITY_FIELDS: [&'static str; 8] = [
        "subject",
        "session_id",
        "scopes",
        "organizations",
        "ip_restrict",
        "expires_at",
        "provider",
        "claims",
    ];
    const REQUEST_FIELDS: [&'static str; 8] = [
        "method",
        "path",
        "params",
        "host",
        "headers",
        "client",
        "client_certificate",
        "token_source",
    ];

    fn fields(&self) -> &'static [&'static str] {
        match self.part {
            Part::Identity => &Self::IDENTITY_FIELDS,
            Part::Request => &Self::REQUEST_FIELDS,
        }
    }

    /// The field `name`, made now (`None`: no such field).
    fn field(&self, name: &str) -> Option<Box<dyn Val + 'v>> {
        let f = self.facts;
        let i = f.identity;
        let text = |s: &'v str| -> Box<dyn Val + 'v> { Box::new(CelString::from(s)) };
        let maybe = |s: Option<&'v str>| -> Box<dyn Val + 'v> {
            match s {
                Some(s) => Box::new(CelString::from(s)),
                None => Box::new(CelNull),
            }
        };
        let list = |items: &mut dyn Iterator<Item = &'v str>| -> Box<dyn Val + 'v> {
            let items: Vec<Box<dyn Val + 'v>> = items.map(&text).collect();
            Box::new(CelList::from(items))
        };
        let map = |pairs: &mut dyn Iterator<Item = (&'v str, &'v str)>| -> Box<dyn Val + 'v> {
            let m: HashMap<CelMapKey<'v>, Box<dyn Val + 'v>> = pairs
                .map(|(k, v)| (CelMapKey::String(CelString::from(k)), text(v)))
                .collect();
            Box::new(CelMap::from(m))
        };
        Some(match (self.part, name) {
            (Part::Identity, "subject") => text(i.subject()),
            (Part::Identity, "session_id") => maybe(i.session_id()),
            (Part::Identity, "scopes") => list(&mut i.scopes()),
            (Part::Identity, "organizations") => list(&mut i.organizations()),
            (Part::Identity, "ip_restrict") => list(&mut i.ip_restrict()),
            (Part::Identity, "expires_at") => match i.expires_at() {
                Some(t) => Box::new(CelInt::from(unix(t))),
                None => Box::new(CelNull),
            },
            (Part::Identity, "provider") => text(f.provider),
            (Part::Identity, "claims") => {
                let m: HashMap<CelMapKey<'v>, Box<dyn Val + 'v>> = i
                    .claims()
                    .map(|c| {
                        let value = if c.json {
                            json_value(c.value)
                        } else {
                            text(c.value)
                        };
                        (CelMapKey::String(CelString::from(c.name)), value)
                    })
                    .collect();
                Box::new(CelMap::from(m))
            }
            (Part::Request, "method") => text(f.method),
            (Part::Request, "path") => text(f.path),
            (Part::Request, "params") => map(&mut f.params.iter().map(|(k, v)| (&**k, v.as_str()))),
            (Part::Request, "host") => maybe(f.host),
            (Part::Request, "headers") => Box::new(f.headers_map()),
            (Part::Request, "client") => match f.client {
                Some(ip) => Box::new(CelString::from(ip.to_string())),
                None => Box::new(CelNull),
            },
            (Part::Request, "client_certificate") => maybe(f.client_certificate),
            (Part::Request, "token_source") => text(f.token_source),
            _ => return None,
        })
    }

    /// The field named by `key` (a string), or the error CEL gives for a missing key.
    fn lookup(&self, key: &dyn Val) -> Result<Box<dyn Val + 'v>, ExecutionError> {
        let Some(name) = key.downcast_ref::<CelString>() else {
            return Err(ExecutionError::UnexpectedType {
                got: format!("{:?}", key.get_type()),
                want: "string".into(),
            });
        };
        self.field(name.inner())
            .ok_or_else(|| ExecutionError::NoSuchKey(Arc::new(name.inner().to_string())))
    }
}

/// A JSON claim as CEL sees it: numbers as `int` (or `uint` above `int`'s range, `double`
/// when not whole), `true`/`false` as `bool`, lists and objects as lists and maps.
/// Unparsable JSON (never from this crate's own mapping) is `null`.
fn json_value<'v>(json: &str) -> Box<dyn Val + 'v> {
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(v) => json_to_val(&v),
        Err(_) => Box::new(CelNull),
    }
}

fn json_to_val<'v>(v: &serde_json::Value) -> Box<dyn Val + 'v> {
    use serde_json::Value as J;
    match v {
        J::Null => Box::new(CelNull),
        J::Bool(b) => Box::new(CelBool::from(*b)),
        J::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Box::new(CelInt::from(i)),
            (None, Some(u), _) => Box::new(CelUInt::from(u)),
            (_, _, f) => Box::new(CelDouble::from(f.unwrap_or(f64::NAN))),
        },
        J::String(s) => Box::new(CelString::from(s.clone())),
        J::Array(items) => {
            let items: Vec<Box<dyn Val + 'v>> = items.iter().map(json_to_val).collect();
            Box::new(CelList::from(items))
        }
        J::Object(m) => {
            let m: HashMap<CelMapKey<'v>, Box<dyn Val + 'v>> = m
                .iter()
                .map(|(k, v)| {
                    (
                        CelMapKey::String(CelString::from(k.clone())),
                        json_to_val(v),
                    )
                })
                .collect();
            Box::new(CelMap::from(m))
        }
    }
}

impl std::fmt::Debug for View<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.part)
    }
}

impl Val for View<'_> {
    fn get_type(&self) -> &Type {
        &cel::common::types::MAP_TYPE
    }

    fn cel_type() -> &'static Type {
        &cel::common::types::MAP_TYPE
    }

    fn as_indexer<'b, 'w>(&'b self) -> Option<&'b (dyn Indexer + 'w)>
    where
        Self: 'w,
    {
        Some(self)
    }

    fn as_container(&self) -> Option<&dyn Container> {
        Some(self)
    }

    fn clone_as_boxed<'w>(&self) -> Box<dyn Val + 'w>
    where
        Self: 'w,
    {
        Box::new(*self)
    }
}

impl Container for View<'_> {
    fn contains(&self, key: &dyn Val) -> Result<bool, ExecutionError> {
        Ok(key
            .downcast_ref::<CelString>()
            .is_some_and(|k| self.fields().contains(&k.inner())))
    }
}

impl<'v> Indexer for View<'v> {
    fn get<'b, 'w>(&'b self, key: &dyn Val) -> Result<CowVal<'b, 'w>, ExecutionError>
    where
        Self: 'w,
    {
        self.lookup(key).map(CowVal::Owned)
    }

    fn steal<'w>(self: Box<Self>, key: &dyn Val) -> Result<Box<dyn Val + 'w>, ExecutionError>
    where
        Self: 'w,
    {
        self.lookup(key)
    }
}
