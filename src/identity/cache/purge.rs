//! The purge index: subject → cache keys and session id → cache keys, so an operator can
//! remove every cached identity of a user or a session at once.

use std::collections::HashMap;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::identity::token::TokenKey;
use crate::identity::Identity;

/// subject → keys and session id → keys, for purges, kept small: names are stored as
/// keyed 64-bit hashes (no string copies), and a name with one key — nearly every name —
/// is one 24-byte slot of a flat table. The names are keyed HMACs: with a random key per
/// process, or with the cluster's shared key, so that a purge by subject or session id
/// can travel between replicas as a [`NameHash`] that reveals neither. A purge re-checks each key's current entry, so a
/// hash collision or a leftover key removes nothing it should not. Keys are dropped from
/// the index when moka drops the entry.
pub(super) struct PurgeIndex {
    hasher: Hmac<Sha256>,
    /// Names with exactly one key.
    one: HashMap<u64, TokenKey, PassThrough>,
    /// Names with several keys (a user signed in on several devices, a token two
    /// providers resolved).
    many: HashMap<u64, Vec<TokenKey>, PassThrough>,
}

/// The names are already keyed hashes: the tables use them as they are.
type PassThrough = std::hash::BuildHasherDefault<PassThroughHasher>;

/// A `Hasher` for keys that are already keyed hashes (purge names here, rate-limit keys in
/// [`crate::limits`]): hashing them again would be wasted work.
#[derive(Default)]
pub(crate) struct PassThroughHasher(u64);

impl std::hash::Hasher for PassThroughHasher {
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
            hasher: keyed(&rand::random()),
            one: HashMap::default(),
            many: HashMap::default(),
        }
    }
}

fn keyed(key: &[u8; 32]) -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length")
}

/// What an index name is: the same text as subject and as session id are different names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameKind {
    Subject = 1,
    Session = 2,
}

/// A subject or session id as a keyed 128-bit hash: what a purge by name carries between
/// replicas (the session id of some providers is the token itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NameHash(pub [u8; 16]);

impl NameHash {
    /// The index's 64-bit name.
    fn short(&self) -> u64 {
        u64::from_be_bytes(self.0[..8].try_into().expect("8 bytes"))
    }
}

impl PurgeIndex {
    /// Keys the names with `key` (the cluster's shared key). Only before the first entry:
    /// names already indexed would no longer be found.
    pub(super) fn set_key(&mut self, key: &[u8; 32]) {
        debug_assert!(self.one.is_empty() && self.many.is_empty());
        self.hasher = keyed(key);
    }

    pub(super) fn hash(&self, kind: NameKind, value: &str) -> NameHash {
        let mut mac = self.hasher.clone();
        mac.update(&[kind as u8]);
        mac.update(value.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&digest[..16]);
        NameHash(out)
    }

    fn name(&self, kind: NameKind, value: &str) -> u64 {
        self.hash(kind, value).short()
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
        self.keys_of(self.hash(kind, value))
    }

    pub(super) fn keys_of(&self, hash: NameHash) -> Vec<TokenKey> {
        let name = hash.short();
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
pub(crate) enum PurgeBy {
    /// The keys of one token (one per provider that could have resolved it).
    Keys(Vec<TokenKey>),
    Subject(String),
    SessionId(String),
    /// A subject or session id known by its keyed hash only (a purge from another replica).
    Name(NameKind, NameHash),
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
