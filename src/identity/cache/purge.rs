//! The purge index: subject → cache keys and session id → cache keys, so an operator can
//! remove every cached identity of a user or a session at once.

use std::collections::HashMap;

use crate::identity::token::TokenKey;
use crate::identity::Identity;

/// subject → keys and session id → keys, for purges, kept small: names are stored as
/// keyed 64-bit hashes (no string copies) and one key inline. A purge re-checks each
/// key's current entry, so a hash collision or a leftover key removes nothing it should
/// not. Keys are dropped from the index when moka drops the entry.
pub(super) struct PurgeIndex {
    hasher: std::collections::hash_map::RandomState,
    names: HashMap<u64, Keys>,
}

/// The keys under one indexed name: almost always one.
enum Keys {
    One(TokenKey),
    Many(Vec<TokenKey>),
}

impl Default for PurgeIndex {
    fn default() -> Self {
        PurgeIndex {
            hasher: std::collections::hash_map::RandomState::new(),
            names: HashMap::new(),
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

    pub(super) fn add(&mut self, key: TokenKey, identity: &Identity) {
        let subject = self.name(NameKind::Subject, &identity.subject);
        let session = identity
            .session_id
            .as_deref()
            .map(|sid| self.name(NameKind::Session, sid));
        let mut insert = |name: u64| {
            let slot = self.names.entry(name).or_insert(Keys::Many(Vec::new()));
            match slot {
                Keys::One(k) if *k == key => {}
                Keys::One(k) => {
                    let first = *k;
                    *slot = Keys::Many(vec![first, key]);
                }
                Keys::Many(v) if v.is_empty() => *slot = Keys::One(key),
                Keys::Many(v) => {
                    if !v.contains(&key) {
                        v.push(key);
                    }
                }
            }
        };
        insert(subject);
        if let Some(session) = session {
            insert(session);
        }
    }

    pub(super) fn remove(&mut self, key: &TokenKey, identity: &Identity) {
        let subject = self.name(NameKind::Subject, &identity.subject);
        let session = identity
            .session_id
            .as_deref()
            .map(|sid| self.name(NameKind::Session, sid));
        let mut drop_from = |name: u64| {
            let empty = match self.names.get_mut(&name) {
                Some(Keys::One(k)) => k == key,
                Some(Keys::Many(v)) => {
                    v.retain(|k| k != key);
                    v.is_empty()
                }
                None => false,
            };
            if empty {
                self.names.remove(&name);
            }
        };
        drop_from(subject);
        if let Some(session) = session {
            drop_from(session);
        }
    }

    pub(super) fn keys(&self, kind: NameKind, value: &str) -> Vec<TokenKey> {
        match self.names.get(&self.name(kind, value)) {
            Some(Keys::One(k)) => vec![*k],
            Some(Keys::Many(v)) => v.clone(),
            None => Vec::new(),
        }
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
