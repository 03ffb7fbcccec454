//! What this replica knows was purged lately, so that a shared (Redis) identity sealed
//! before a purge is never served again — not even when someone who can write to Redis
//! saves the sealed value and writes it back after the purge.
//!
//! A sealed value carries, inside its authenticated envelope, when the provider answered
//! (`fetched_at`); it can be served until `fetched_at + cache.ttl` at most. So a purge
//! made at `p` only has to be remembered until `p + cache.ttl` (plus [`SKEW`]): by then
//! every value sealed before it has lapsed wherever it is stored. Purges are remembered
//! as *marks* — a token key, or a subject's or session id's keyed hash — with the time
//! this replica applied them; a flush (this replica may have missed purges) is a *floor*:
//! nothing sealed before it is trusted. Replicas learn every purge from the revocation
//! stream, and a replica that starts reads the stream's last `cache.ttl` back first
//! ([`Purged::seed`]); until it has, it trusts no shared value at all.
//!
//! Sealing and purging replicas have different clocks: a value counts as sealed before a
//! purge when `fetched_at ≤ p + SKEW`. A value shared just after a purge is therefore
//! ignored for [`SKEW`] (the replica asks the provider itself: one call, never a wrong
//! answer).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, SystemTime};

use crate::identity::cache::NameHash;
use crate::identity::token::TokenKey;

/// The largest clock difference assumed between replicas, and between a replica and
/// Redis (stream entry ids are Redis's clock).
pub const SKEW: Duration = Duration::from_secs(5);

/// Marks kept at most; past it the oldest ones become the floor (values sealed before
/// them are not trusted: a provider call each, never a wrong answer).
const LIMIT: usize = 100_000;

/// What a purge reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mark {
    Token(TokenKey),
    /// A subject or session id (the hash includes which of the two it is).
    Name(NameHash),
}

/// Recent purges (see the module docs).
#[derive(Debug)]
pub struct Purged {
    /// How long a mark matters: `cache.ttl + SKEW`.
    keep: Duration,
    limit: usize,
    /// Marks in the order they were made (times never go back: see `record`).
    order: VecDeque<(SystemTime, Mark)>,
    /// Each mark's latest time.
    latest: HashMap<Mark, SystemTime>,
    /// Nothing sealed at or before this (+ SKEW) is trusted.
    floor: Option<SystemTime>,
    /// Whether the stream's recent purges are known yet.
    seeded: bool,
}

impl Purged {
    /// Remembers purges for `ttl` (the cache's) plus [`SKEW`]; trusts nothing until seeded.
    pub fn new(ttl: Duration) -> Self {
        Self::with_limit(ttl, LIMIT)
    }

    fn with_limit(ttl: Duration, limit: usize) -> Self {
        Purged {
            keep: ttl + SKEW,
            limit,
            order: VecDeque::new(),
            latest: HashMap::new(),
            floor: None,
            seeded: false,
        }
    }

    /// A purge of `mark` at `at`.
    pub(crate) fn record(&mut self, mark: Mark, at: SystemTime) {
        // Kept in order: a time earlier than the newest (a clock stepped back, a seeded
        // entry) is recorded as the newest, which only makes the mark last longer.
        let at = self.order.back().map_or(at, |(last, _)| at.max(*last));
        self.prune(at);
        if self.order.len() >= self.limit {
            if let Some((oldest, mark)) = self.order.pop_front() {
                self.forget(oldest, mark);
                self.raise_floor(oldest);
            }
        }
        self.order.push_back((at, mark));
        self.latest.insert(mark, at);
    }

    /// Everything was purged at `at` (a flush).
    pub(crate) fn flushed(&mut self, at: SystemTime) {
        self.raise_floor(at);
    }

    /// What the stream says was purged lately (`marks`), and the floor it implies (a gap
    /// in it, a flush, the start of its epoch); from now on shared values are trusted
    /// unless they are older than one of these.
    pub(crate) fn seed(
        &mut self,
        marks: impl IntoIterator<Item = (SystemTime, Mark)>,
        floor: Option<SystemTime>,
    ) {
        for (at, mark) in marks {
            self.record(mark, at);
        }
        if let Some(f) = floor {
            self.raise_floor(f);
        }
        self.seeded = true;
    }

    /// Whether a value the provider gave at `sealed_at` about `marks` may be served at
    /// `now`: known to postdate every purge and flush that reached it.
    pub(crate) fn allows(
        &mut self,
        sealed_at: SystemTime,
        marks: &[Mark],
        now: SystemTime,
    ) -> bool {
        if !self.seeded {
            return false;
        }
        self.prune(now);
        let before = |t: SystemTime| sealed_at <= t + SKEW;
        if self.floor.is_some_and(before) {
            return false;
        }
        !marks
            .iter()
            .any(|m| self.latest.get(m).is_some_and(|t| before(*t)))
    }

    /// Marks remembered (the start-up log, tests).
    pub(crate) fn marks(&self) -> usize {
        self.latest.len()
    }

    fn raise_floor(&mut self, at: SystemTime) {
        self.floor = Some(self.floor.map_or(at, |f| f.max(at)));
    }

    fn forget(&mut self, at: SystemTime, mark: Mark) {
        if self.latest.get(&mark) == Some(&at) {
            self.latest.remove(&mark);
        }
    }

    /// Drops what no longer matters at `now`.
    fn prune(&mut self, now: SystemTime) {
        while let Some(&(at, mark)) = self.order.front() {
            if at + self.keep > now {
                break;
            }
            self.order.pop_front();
            self.forget(at, mark);
        }
        if self.floor.is_some_and(|f| f + self.keep <= now) {
            self.floor = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::token::TokenHasher;
    use crate::identity::ProviderId;

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + s)
    }

    fn token(n: u8) -> Mark {
        let p = ProviderId::new("p", 0);
        Mark::Token(TokenHasher::with_key(&[1; 32]).key(&p, &n.to_string()))
    }

    #[test]
    fn nothing_is_trusted_before_the_stream_is_known() {
        let mut p = Purged::new(Duration::from_secs(60));
        assert!(!p.allows(t(100), &[token(1)], t(101)));
        p.seed([], None);
        assert!(p.allows(t(100), &[token(1)], t(101)));
    }

    #[test]
    fn a_value_sealed_before_a_purge_is_refused_until_it_would_have_lapsed() {
        let mut p = Purged::new(Duration::from_secs(60));
        p.seed([], None);
        p.record(token(1), t(100));
        // Sealed before the purge (or within the skew after it): refused.
        assert!(!p.allows(t(90), &[token(1)], t(101)));
        assert!(!p.allows(t(104), &[token(1)], t(105)));
        // Sealed well after it: served. Other tokens are not concerned.
        assert!(p.allows(t(106), &[token(1)], t(107)));
        assert!(p.allows(t(90), &[token(2)], t(101)));
        // Any of the value's marks counts (a subject purge reaches all its tokens).
        assert!(!p.allows(t(90), &[token(2), token(1)], t(101)));
        // Remembered for ttl + skew, then dropped: a value sealed before then has lapsed.
        assert!(!p.allows(t(90), &[token(1)], t(164)));
        assert!(p.allows(t(90), &[token(1)], t(165)));
        assert_eq!(p.marks(), 0);
    }

    #[test]
    fn a_flush_refuses_everything_sealed_before_it() {
        let mut p = Purged::new(Duration::from_secs(60));
        p.seed([], Some(t(100)));
        assert!(!p.allows(t(99), &[token(3)], t(101)));
        assert!(p.allows(t(106), &[token(3)], t(107)));
        p.flushed(t(200));
        assert!(!p.allows(t(150), &[], t(201)));
        assert!(
            p.allows(t(150), &[], t(265)),
            "the floor lapses with what it guarded"
        );
    }

    #[test]
    fn overflow_turns_the_oldest_marks_into_the_floor() {
        let mut p = Purged::with_limit(Duration::from_secs(60), 2);
        p.seed([], None);
        p.record(token(1), t(10));
        p.record(token(2), t(20));
        p.record(token(3), t(30));
        assert_eq!(p.marks(), 2);
        // token 1 is forgotten, but nothing sealed before its purge is trusted.
        assert!(!p.allows(t(12), &[token(1)], t(31)));
        assert!(p.allows(t(16), &[token(1)], t(31)));
        assert!(!p.allows(t(16), &[token(2)], t(31)));
    }

    #[test]
    fn a_repeated_purge_keeps_the_latest_time() {
        let mut p = Purged::new(Duration::from_secs(60));
        p.seed([], None);
        p.record(token(1), t(10));
        p.record(token(1), t(50));
        // The first purge's time lapses; the second still guards.
        assert!(!p.allows(t(40), &[token(1)], t(80)));
        // A time that goes back is kept as the newest.
        p.record(token(2), t(5));
        assert!(!p.allows(t(52), &[token(2)], t(80)));
    }
}
