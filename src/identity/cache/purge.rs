//! The purge index: subject → cache keys and session id → cache keys, so an operator can
//! remove every cached identity of a user or a session at once.

use std::collections::HashMap;

use crate::identity::token::TokenKey;
use crate::identity::Identity;

/// subject → keys and session id → keys, for purges, kept small: names are stored as
/// keyed 64-bit hashes (no string copies), and a name with one key — nearly every name —
/// is one 24-byte slot of a flat table. A purge re-checks each key's current entry, so a
/// hash collision or a leftover key removes nothing it should not. Keys are dropped from
/// the index when moka drops the entry.
pub(super) struct PurgeIndex {
    hasher: std::collections::hash_map::RandomState,
    /// Names with exactly one key.
    one: HashMap<u64, TokenKey, PassThrough>,
    /// Names with several keys (a user signed in on several devices, a token two
    /// providers resolved).
    many: HashMap<u64, Vec<TokenKey>, PassThrough>,
}

/// The names are already keyed hashes: the tables use them as they are.
type PassThrough = std::hash::BuildHasherDefault<NameHash>;

#[derive(Default)]
pub(super) struct NameHash(u64);

impl std::hash::Hasher for NameHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 names are hashed; this is the fallback the trait requires.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl Default for PurgeIndex {
    fn default() -> Self {
        PurgeIndex {
            hasher: std::collections::hash_map::RandomState::new(),
            one: HashMap::default(),
            many: HashMap::default(),
        }
    }
}

/// What an index name is: the same text as subject and as session id are different names.
#[derive(Clone, Copy)]
pub(super) enum NameKind {
    Subject = 1,
    Session = 2,
}

impl PurgeIndex {
    fn name(&self, kind: NameKind, value: &str) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one((kind as u8, value))
    }

    fn names(&self, identity: &Identity) -> [Option<u64>; 2] {
        [
            Some(self.name(NameKind::Subject, identity.subject())),
            identity
                .session_id()
                .map(|sid| self.name(NameKind::Session, sid)),
        ]
    }

    pub(super) fn add(&mut self, key: TokenKey, identity: &Identity) {
        for name in self.names(identity).into_iter().flatten() {
            if let Some(keys) = self.many.get_mut(&name) {
                if !keys.contains(&key) {
                    keys.push(key);
                }
                continue;
            }
            match self.one.get(&name) {
                None => {
                    self.one.insert(name, key);
                }
                Some(k) if *k == key => {}
                Some(k) => {
                    let first = *k;
                    self.one.remove(&name);
                    self.many.insert(name, vec![first, key]);
                }
            }
        }
    }

    pub(super) fn remove(&mut self, key: &TokenKey, identity: &Identity) {
        for name in self.names(identity).into_iter().flatten() {
            if self.one.get(&name) == Some(key) {
                self.one.remove(&name);
            } else if let Some(keys) = self.many.get_mut(&name) {
                keys.retain(|k| k != key);
                match keys[..] {
                    [] => {
                        self.many.remove(&name);
                    }
                    [last] => {
                        self.many.remove(&name);
                        self.one.insert(name, last);
                    }
                    _ => {}
                }
            }
        }
    }

    pub(super) fn keys(&self, kind: NameKind, value: &str) -> Vec<TokenKey> {
        let name = self.name(kind, value);
        match self.one.get(&name) {
            Some(k) => vec![*k],
            None => self.many.get(&name).cloned().unwrap_or_default(),
        }
    }

    /// Indexed names (tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.one.len() + self.many.len()
    }
}

/// What to purge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurgeBy {
    /// The keys of one token (one per provider that could have resolved it).
    Keys(Vec<TokenKey>),
    Subject(String),
    SessionId(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::token::TokenHasher;
    use crate::identity::{IdentityParts, ProviderId};

    fn id(subject: &str, sid: Option<&str>) -> Identity {
        IdentityParts {
            subject: subject.into(),
            session_id: sid.map(str::to_string),
            ..Default::default()
        }
        .into()
    }

    #[test]
    fn one_key_many_keys_and_back() {
        let h = TokenHasher::with_key(&[5; 32]);
        let p = ProviderId::new("p", 0);
        let (k1, k2, k3) = (h.key(&p, "t1"), h.key(&p, "t2"), h.key(&p, "t3"));
        let mut ix = PurgeIndex::default();
        let alice1 = id("alice", Some("s1"));
        let alice2 = id("alice", Some("s2"));
        let alice3 = id("alice", None);
        ix.add(k1, &alice1);
        ix.add(k1, &alice1);
        assert_eq!(ix.keys(NameKind::Subject, "alice"), [k1]);
        ix.add(k2, &alice2);
        ix.add(k3, &alice3);
        assert_eq!(ix.keys(NameKind::Subject, "alice"), [k1, k2, k3]);
        assert_eq!(ix.keys(NameKind::Session, "s2"), [k2]);
        // The same text as a subject and as a session id are different names.
        assert!(ix.keys(NameKind::Session, "alice").is_empty());
        assert!(ix.keys(NameKind::Subject, "s1").is_empty());
        ix.remove(&k2, &alice2);
        assert_eq!(ix.keys(NameKind::Subject, "alice"), [k1, k3]);
        assert!(ix.keys(NameKind::Session, "s2").is_empty());
        ix.remove(&k1, &alice1);
        assert_eq!(ix.keys(NameKind::Subject, "alice"), [k3]);
        // A key that is not (or no longer) under a name removes nothing.
        ix.remove(&k1, &alice1);
        assert_eq!(ix.keys(NameKind::Subject, "alice"), [k3]);
        ix.remove(&k3, &alice3);
        assert_eq!(ix.len(), 0, "nothing is left behind");
    }
}
