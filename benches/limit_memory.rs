//! Memory per key a rate-limit policy tracks, and the bound `max_keys` puts on it: counts
//! one request for each of N distinct keys (a flood of new API keys or subjects) in a
//! policy allowed to track them all, then in one with `max_keys: 100000`, and reports the
//! growth of the process's resident set.
//!
//! Run: `cargo bench --bench limit_memory` (N = 1,000,000; `SG_BENCH_KEYS=N` to change).

use std::time::Instant;

use sessiongate::limits::{LimitKey, LimitSpec, Limiters, Rate, Tier};

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

fn spec(name: &str, max_keys: u64) -> LimitSpec {
    LimitSpec {
        name: name.into(),
        key: LimitKey::Subject,
        tiers: vec![Tier {
            name: "default".into(),
            when: None,
            rate: Rate::parse("100/min").unwrap(),
            burst: 20,
        }],
        mode: Default::default(),
        headers_always: false,
        max_keys,
    }
}

fn flood(limiters: &Limiters, max_keys: u64, n: u64) {
    let policy = limiters.prepare(&[spec("flood", max_keys)]).remove(0);
    let before = rss_bytes();
    let started = Instant::now();
    for i in 0..n {
        let key = limiters.key(&LimitKey::Subject, format!("subject-{i}").as_bytes());
        policy.check(0, key);
    }
    let took = started.elapsed();
    let tracked = policy.tracked_keys();
    let grew = rss_bytes().saturating_sub(before);
    println!(
        "max_keys {max_keys:>9}: {n} keys counted in {took:.2?} ({:.0} ns each); {tracked} tracked; RSS +{:.1} MiB = {:.0} bytes per tracked key",
        took.as_nanos() as f64 / n as f64,
        grew as f64 / (1 << 20) as f64,
        grew as f64 / tracked.max(1) as f64,
    );
}

fn main() {
    let n: u64 = std::env::var("SG_BENCH_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let limiters = Limiters::default();
    // The bounded policy first: memory the allocator keeps from an earlier run would hide
    // its growth.
    flood(&limiters, 100_000, n);
    flood(&limiters, 2 * n, n);
    // A known key (the common case: a caller's next request).
    let policy = limiters.prepare(&[spec("hot", 1_000)]).remove(0);
    let keys: Vec<u64> = (0..100)
        .map(|i| limiters.key(&LimitKey::Subject, format!("hot-{i}").as_bytes()))
        .collect();
    let rounds = 20_000;
    let started = Instant::now();
    for _ in 0..rounds {
        for k in &keys {
            std::hint::black_box(policy.check(0, *k));
        }
    }
    println!(
        "a known key: {:.0} ns per request counted (100 keys, {rounds} rounds, hashing included: no)",
        started.elapsed().as_nanos() as f64 / (rounds * keys.len()) as f64
    );
}
