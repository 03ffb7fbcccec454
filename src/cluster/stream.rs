//! The revocation stream's wire format and continuity: the Lua scripts, the message
//! fields, each entry's epoch and number, and reading the last `cache.ttl` back at start.

use super::*;

/// Makes sure the stream (KEYS[1]) and its epoch hash (KEYS[2]) exist together: when
/// either is missing, a new epoch (ARGV[1]) starts, with an entry of its own (origin
/// ARGV[2]) numbered 0. Leaves `e` (the epoch) and `n` (the last entry number) set.
pub(super) const ENSURE_EPOCH: &str = r"
local e = redis.call('HGET', KEYS[2], 'e')
if (not e) or redis.call('EXISTS', KEYS[1]) == 0 then
  e = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[2], 'e', e, 'n', 0)
  redis.call('XADD', KEYS[1], '*', 'o', ARGV[2], 't', 'epoch', 'e', e, 'n', 0)
end
";

/// [`ENSURE_EPOCH`], then `{epoch, last entry number, last generated id}`, read at once.
pub(super) const CHECK: &str = r"
local n = tonumber(redis.call('HGET', KEYS[2], 'n'))
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local last = '0-0'
for i = 1, #info, 2 do
  if info[i] == 'last-generated-id' then last = info[i + 1] end
end
return {e, n, last}
";

/// [`ENSURE_EPOCH`], then the entry (fields from ARGV[4], trimmed to about ARGV[3]
/// entries) with the epoch and the next number; `{epoch, number, id}`.
pub(super) const PUBLISH: &str = r"
local n = redis.call('HINCRBY', KEYS[2], 'n', 1)
local args = {'XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'o', ARGV[2], 'e', e, 'n', n}
for i = 4, #ARGV do args[#args + 1] = ARGV[i] end
local id = redis.call(unpack(args))
return {e, n, id}
";

/// Where a replica is in the stream, and what it knows of the stream's continuity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Position {
    /// The last entry id read (XREAD goes on after it).
    pub(super) id: String,
    pub(super) epoch: String,
    /// The number of the last entry read; `None` while replaying from a time (its first
    /// numbered entry sets it).
    pub(super) n: Option<u64>,
    /// The stream's entry counter when last checked: every entry up to it had been
    /// added by then, so one not read after that is missing.
    pub(super) added: u64,
}

/// The stream's state as the check script saw it, at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Continuity {
    pub(super) epoch: String,
    pub(super) counter: u64,
    pub(super) last_id: String,
}

impl Position {
    /// A fresh start at the stream's end.
    pub(super) fn at_end(c: &Continuity) -> Self {
        Position {
            id: c.last_id.clone(),
            epoch: c.epoch.clone(),
            n: Some(c.counter),
            added: c.counter,
        }
    }

    /// The numbers of entries just read (in order; `None`: an entry without one, from an
    /// older version). Returns why purges may have been missed, if they may have.
    pub(super) fn read(&mut self, numbers: &[(Option<&str>, Option<u64>)]) -> Option<&'static str> {
        let mut missed = None;
        for (epoch, n) in numbers {
            if epoch.is_some_and(|e| e != self.epoch) {
                missed = missed.or(Some("stream_lost"));
            }
            let Some(n) = *n else { continue };
            match self.n {
                Some(last) if n == last + 1 => {}
                Some(last) if n > last + 1 => missed = missed.or(Some("trimmed")),
                Some(_) => missed = missed.or(Some("stream_lost")),
                None => {}
            }
            self.n = Some(n);
        }
        if numbers.is_empty() {
            match self.n {
                // Nothing after our position, yet entries up to `added` existed before
                // this read began: they were trimmed or deleted unread (the flush this
                // leads to stands for them).
                Some(last) if self.added > last => {
                    missed = Some("trimmed");
                    self.n = Some(self.added);
                }
                // Replaying from a time and nothing (left) to read: caught up.
                None => self.n = Some(self.added),
                _ => {}
            }
        }
        missed
    }

    /// What the check after a read found; `Some(reason)` when the stream is not the one
    /// this position was in (a new epoch, or a counter that went back).
    pub(super) fn checked(&mut self, c: &Continuity) -> Option<&'static str> {
        if c.epoch != self.epoch || self.n.is_some_and(|n| c.counter < n) {
            return Some("stream_lost");
        }
        self.added = c.counter;
        None
    }
}

/// One stream entry's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Message {
    Keys(Vec<TokenKey>),
    Name(NameKind, NameHash, Option<String>),
    Flush,
}

impl Message {
    pub(super) fn fields(&self) -> Vec<(&'static str, String)> {
        match self {
            Message::Keys(keys) => vec![
                ("t", "keys".into()),
                (
                    "v",
                    keys.iter().map(TokenKey::hex).collect::<Vec<_>>().join(","),
                ),
            ],
            Message::Name(kind, hash, provider) => {
                let mut f = vec![
                    (
                        "t",
                        match kind {
                            NameKind::Subject => "subject",
                            NameKind::Session => "session",
                        }
                        .into(),
                    ),
                    ("v", hex::encode(hash.0)),
                ];
                if let Some(p) = provider {
                    f.push(("p", p.clone()));
                }
                f
            }
            Message::Flush => vec![("t", "flush".into())],
        }
    }

    pub(super) fn parse(fields: &HashMap<String, String>) -> Option<Message> {
        let value = fields.get("v").map(String::as_str).unwrap_or("");
        let name = |kind| {
            let mut hash = [0u8; 16];
            hex::decode_to_slice(value, &mut hash).ok()?;
            Some(Message::Name(
                kind,
                NameHash(hash),
                fields.get("p").cloned(),
            ))
        };
        match fields.get("t")?.as_str() {
            "keys" => value
                .split(',')
                .map(TokenKey::from_hex)
                .collect::<Option<Vec<_>>>()
                .map(Message::Keys),
            "subject" => name(NameKind::Subject),
            "session" => name(NameKind::Session),
            "flush" => Some(Message::Flush),
            _ => None,
        }
    }
}

/// Entries read at once when a replica reads back the stream's recent purges.
pub(super) const SEED_PAGE: usize = 1000;

/// What the stream's entries of the last `cache.ttl` say was purged (each purge's mark
/// at its entry's time, Redis's clock), and the floor before which nothing shared can be
/// trusted: a flush, or a gap (entries trimmed or deleted, so their purges are unknown).
/// Values from an earlier epoch need no floor: they carry their epoch, and only the
/// current one's are taken. `before`: the number of the entry just before the first one.
pub(super) fn recent_purges(
    before: Option<u64>,
    entries: &[(String, HashMap<String, String>)],
    now: &Continuity,
) -> (Vec<(SystemTime, Mark)>, Option<SystemTime>) {
    let at = |id: &str| UNIX_EPOCH + Duration::from_millis(parse_id(id).0);
    let mut marks = Vec::new();
    let mut floor: Option<SystemTime> = None;
    let raise = |t: SystemTime, floor: &mut Option<SystemTime>| {
        *floor = Some(floor.map_or(t, |f| f.max(t)));
    };
    let mut last = before;
    for (id, fields) in entries {
        let t = at(id);
        let n = fields.get("n").and_then(|n| n.parse::<u64>().ok());
        let is_epoch = fields.get("t").is_some_and(|k| k == "epoch");
        let follows = match (last, n) {
            (_, Some(0)) if is_epoch => true,
            (Some(l), Some(n)) => n == l + 1,
            _ => false,
        };
        if !follows || fields.get("e") != Some(&now.epoch) {
            // Entries are missing before this one, or it belongs to another stream: what
            // came before cannot be known.
            raise(t, &mut floor);
        }
        last = n.or(last);
        match Message::parse(fields) {
            Some(Message::Keys(keys)) => {
                marks.extend(keys.into_iter().map(|k| (t, Mark::Token(k))))
            }
            Some(Message::Name(_, hash, _)) => marks.push((t, Mark::Name(hash))),
            Some(Message::Flush) => raise(t, &mut floor),
            None => {}
        }
    }
    if last.is_none_or(|l| l < now.counter) {
        // Entries counted but not found (deleted after the window's start, or no entry
        // at all): nothing before now can be trusted.
        raise(SystemTime::now(), &mut floor);
    }
    (marks, floor)
}

/// An entry's fields that are text (all of ours are).
pub(super) fn fields_of(entry: &redis::streams::StreamId) -> HashMap<String, String> {
    entry
        .map
        .iter()
        .filter_map(|(k, v)| {
            redis::from_redis_value_ref::<String>(v)
                .ok()
                .map(|v| (k.clone(), v))
        })
        .collect()
}

/// A new epoch id: 128 random bits, hex.
pub(super) fn new_epoch() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Stream ids `ms-seq`, compared as numbers: true when `a` comes after `b`.
pub(super) fn id_after(a: &str, b: &str) -> bool {
    parse_id(a) > parse_id(b)
}

pub(super) fn parse_id(id: &str) -> (u64, u64) {
    let mut parts = id.splitn(2, '-');
    let ms = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let seq = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (ms, seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_reveal_no_names() {
        let key = TokenKey::from_hex("00112233445566778899aabbccddeeff").unwrap();
        for m in [
            Message::Keys(vec![key, key]),
            Message::Name(NameKind::Subject, NameHash([7; 16]), Some("bitgo".into())),
            Message::Name(NameKind::Session, NameHash([9; 16]), None),
            Message::Flush,
        ] {
            let fields: HashMap<String, String> = m
                .fields()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            assert_eq!(Message::parse(&fields), Some(m));
        }
        let junk: HashMap<String, String> = [
            ("t".to_string(), "keys".to_string()),
            ("v".into(), "zz".into()),
        ]
        .into();
        assert_eq!(Message::parse(&junk), None);
    }

    fn continuity(epoch: &str, counter: u64) -> Continuity {
        Continuity {
            epoch: epoch.into(),
            counter,
            last_id: format!("{counter}-0"),
        }
    }

    /// A stream entry at `ms` numbered `n` in epoch `e`, of kind `t`.
    fn entry(ms: u64, e: &str, n: u64, t: &str, v: &str) -> (String, HashMap<String, String>) {
        let fields = [("e", e), ("t", t), ("v", v)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain([("n".to_string(), n.to_string())])
            .collect();
        (format!("{ms}-0"), fields)
    }

    #[test]
    fn recent_purges_are_read_back_and_every_gap_becomes_the_floor() {
        let at = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
        let key = "00112233445566778899aabbccddeeff";
        let name = "ffeeddccbbaa99887766554433221100";
        let token = Mark::Token(TokenKey::from_hex(key).unwrap());
        let subject = Mark::Name(NameHash(hex::decode(name).unwrap().try_into().unwrap()));
        let whole = vec![
            entry(1000, "e1", 7, "keys", key),
            entry(2000, "e1", 8, "subject", name),
        ];
        // Following on from the entry before the window, up to the counter: no floor.
        let (marks, floor) = recent_purges(Some(6), &whole, &continuity("e1", 8));
        assert_eq!(marks, vec![(at(1000), token), (at(2000), subject)]);
        assert_eq!(floor, None);
        // The entry before the window is gone (trimmed): the first one is the floor.
        let (_, floor) = recent_purges(None, &whole, &continuity("e1", 8));
        assert_eq!(floor, Some(at(1000)));
        // A number skipped inside the window: the floor is the entry after the gap.
        let gap = vec![whole[0].clone(), entry(2000, "e1", 9, "keys", key)];
        let (marks, floor) = recent_purges(Some(6), &gap, &continuity("e1", 9));
        assert_eq!((marks.len(), floor), (2, Some(at(2000))));
        // The epoch started in the window: no floor (values carry their epoch). A flush:
        // nothing older is trusted.
        let epoch = vec![
            entry(500, "e1", 0, "epoch", ""),
            entry(900, "e1", 1, "keys", key),
        ];
        let (marks, floor) = recent_purges(None, &epoch, &continuity("e1", 1));
        assert_eq!((marks, floor), (vec![(at(900), token)], None));
        let flush = vec![whole[0].clone(), entry(1500, "e1", 8, "flush", "")];
        let (_, floor) = recent_purges(Some(6), &flush, &continuity("e1", 8));
        assert_eq!(floor, Some(at(1500)));
        // Entries of another epoch, or fewer entries than the counter: not trusted.
        let (_, floor) = recent_purges(Some(6), &whole, &continuity("e2", 8));
        assert_eq!(floor, Some(at(2000)));
        let (_, floor) = recent_purges(Some(6), &whole, &continuity("e1", 9));
        assert!(
            floor.is_some_and(|f| f > at(2000)),
            "entries deleted at the end"
        );
        // Nothing in the window: the entry before it must be the last one counted.
        assert_eq!(recent_purges(Some(8), &[], &continuity("e1", 8)).1, None);
        assert!(recent_purges(None, &[], &continuity("e1", 8)).1.is_some());
    }

    /// Every kind of discontinuity is noticed on the read or check where it shows, and
    /// nothing else is taken for one.
    #[test]
    fn a_position_notices_every_gap_in_the_stream() {
        let mut at = Position::at_end(&continuity("e1", 5));
        // Entries 6, 7 (one from an older version, without a number), 8: continuous.
        assert_eq!(
            at.read(&[(Some("e1"), Some(6)), (None, None), (Some("e1"), Some(7))]),
            None
        );
        assert_eq!(at.checked(&continuity("e1", 8)), None);
        assert_eq!(at.read(&[(Some("e1"), Some(8))]), None);
        // Nothing new, and nothing missing.
        assert_eq!(at.read(&[]), None);
        // Trimmed while the replica stalled: 9 and 10 were added (the check saw the
        // counter at 10), then removed before it read them.
        assert_eq!(at.checked(&continuity("e1", 10)), None);
        assert_eq!(at.read(&[]), Some("trimmed"));
        // Counted once: the flush stands for the entries missed.
        assert_eq!(at.read(&[]), None);
        assert_eq!(at.read(&[(Some("e1"), Some(11))]), None);
        // ... or trimmed with newer entries after them: a number skipped.
        let mut at = Position::at_end(&continuity("e1", 5));
        assert_eq!(at.read(&[(Some("e1"), Some(9))]), Some("trimmed"));
        // An entry of another epoch: the stream was re-created.
        let mut at = Position::at_end(&continuity("e1", 5));
        assert_eq!(at.read(&[(Some("e2"), Some(1))]), Some("stream_lost"));
        // A new epoch, or a counter that went back (an older copy of the stream).
        let mut at = Position::at_end(&continuity("e1", 5));
        assert_eq!(at.checked(&continuity("e2", 7)), Some("stream_lost"));
        assert_eq!(at.checked(&continuity("e1", 3)), Some("stream_lost"));
        // Replaying from a time: the first numbered entry sets the count.
        let mut at = Position {
            id: "100-0".into(),
            epoch: "e1".into(),
            n: None,
            added: 4,
        };
        assert_eq!(
            at.read(&[(Some("e1"), Some(3)), (Some("e1"), Some(4))]),
            None
        );
        assert_eq!(at.n, Some(4));
        let mut at = Position { n: None, ..at };
        assert_eq!(at.read(&[]), None);
        assert_eq!(at.n, Some(4));
    }

    #[test]
    fn stream_ids_compare_as_numbers() {
        assert!(id_after("10-0", "9-5"));
        assert!(id_after("10-2", "10-1"));
        assert!(!id_after("10-1", "10-1"));
        assert!(!id_after("9-9", "10-0"));
    }
}
