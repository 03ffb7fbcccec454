//! Soak: the real gateway binary under a fixed rate of mixed requests for a long time while
//! its identity provider flaps (normal, down, slow, garbage), checking that no request is
//! ever allowed without a valid identity and that memory stays flat once warm.
//!
//! Run through `benches/soak/run.sh` (it builds the release binary):
//! `SOAK_SECONDS=600 SOAK_RATE=200 bash benches/soak/run.sh`. Prints one JSON report and
//! exits non-zero on any violation, on RSS growth over 5 % from the warm point to the end
//! (runs of 5 minutes or more), or when the load could not be sent.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

/// Valid tokens `soak-valid-<i>` belong to `user-<i>`.
const VALID_TOKENS: u64 = 500;
/// Revoked tokens `soak-revoked-<i>` are answered 401 by the provider.
const REVOKED_TOKENS: u64 = 500;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The provider's phase at `t` seconds into a flap cycle of `cycle` seconds: half the
/// cycle normal, then down (500), slow (3 s, past the 1 s provider timeout), garbage
/// (200 text/html), a sixth each.
fn phase(elapsed: Duration, cycle: u64) -> &'static str {
    let t = elapsed.as_secs_f64() % cycle as f64;
    let c = cycle as f64;
    if t < c / 2.0 {
        "normal"
    } else if t < c * 4.0 / 6.0 {
        "down"
    } else if t < c * 5.0 / 6.0 {
        "slow"
    } else {
        "garbage"
    }
}

async fn provider(started: Instant, cycle: u64, calls: Arc<AtomicU64>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let calls = calls.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let calls = calls.clone();
                    async move {
                        calls.fetch_add(1, Ordering::Relaxed);
                        let token = req
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.strip_prefix("Bearer "))
                            .unwrap_or("")
                            .to_string();
                        let (status, ctype, body) = match phase(started.elapsed(), cycle) {
                            "down" => (500, "application/json", r#"{"error":"down"}"#.to_string()),
                            "slow" => {
                                tokio::time::sleep(Duration::from_secs(3)).await;
                                (200, "application/json", "{}".to_string())
                            }
                            "garbage" => (200, "text/html", "<html>maintenance</html>".to_string()),
                            _ => match token.strip_prefix("soak-valid-") {
                                Some(i) => (
                                    200,
                                    "application/json",
                                    json!({"sub": format!("user-{i}"), "sid": format!("s-{i}"), "scopes": ["read"]}).to_string(),
                                ),
                                None => (401, "application/json", r#"{"error":"invalid"}"#.to_string()),
                            },
                        };
                        let resp = hyper::Response::builder()
                            .status(status)
                            .header("content-type", ctype)
                            .body(Full::new(Bytes::from(body)))
                            .unwrap();
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// What a request was sent with, and what it may get.
#[derive(Clone, Copy)]
enum Class {
    Valid(u64),
    Revoked,
    Random,
    Missing,
    Malformed,
}

impl Class {
    fn name(self) -> &'static str {
        match self {
            Class::Valid(_) => "valid",
            Class::Revoked => "revoked",
            Class::Random => "random",
            Class::Missing => "missing",
            Class::Malformed => "malformed",
        }
    }
}

/// Stops the gateway however the driver ends (a panic included).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::main]
async fn main() {
    let seconds = env_u64("SOAK_SECONDS", 600);
    let rate = env_u64("SOAK_RATE", 200).max(1);
    let cycle = env_u64("SOAK_FLAP_CYCLE", 60.min(seconds / 2).max(6));
    let bin = PathBuf::from(
        std::env::var("SESSIONGATE_BIN").unwrap_or("target/release/sessiongate".into()),
    );
    let started = Instant::now();
    let provider_calls = Arc::new(AtomicU64::new(0));
    let idp = provider(started, cycle, provider_calls.clone()).await;

    let dir = std::env::temp_dir().join(format!("sessiongate-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (listen, admin) = (free_port(), free_port());
    let config = format!(
        r#"
listen: 127.0.0.1:{listen}
admin_listen: 127.0.0.1:{admin}
shutdown_grace_period: 1s
pid_file: {dir}/sessiongate.pid
upgrade_sock: {dir}/upgrade.sock
cache: {{ ttl: 5s, negative_ttl: 2s, max_entries: 20000, negative_max_entries: 2000 }}
providers:
  idp:
    kind: http
    url: "http://{idp}/session"
    timeout: 1s
    response: {{ subject: /sub, session_id: /sid, scopes: /scopes }}
    protection: {{ failures: 5, open_for: 2s, max_concurrent: 64, queue_timeout: 500ms }}
    token_format: {{ charset: base64url, min_length: 8, max_length: 64 }}
routes:
  - {{ name: tolerant, path_prefix: /tolerant, provider: idp, upstream: echo, stale_if_error: 30s }}
  - {{ name: strict, path_prefix: /strict, provider: idp, upstream: echo }}
log: {{ format: json, level: warn }}
"#,
        dir = dir.display()
    );
    let config_path = dir.join("sessiongate.yaml");
    std::fs::write(&config_path, config).unwrap();
    let log = std::fs::File::create(dir.join("sessiongate.log")).unwrap();
    let child = std::process::Command::new(&bin)
        .arg("--config")
        .arg(&config_path)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let mut child = KillOnDrop(child);
    let pid = child.0.id();
    sessiongate::identity::provider::http::install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let ready = format!("http://127.0.0.1:{admin}/readyz");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(client.get(&ready).send().await, Ok(r) if r.status() == 200) {
        assert!(Instant::now() < deadline, "gateway did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Counts by class and status; violations; transport errors.
    let counts: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let violations: Arc<Mutex<Vec<String>>> = Arc::default();
    let transport_errors = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let rss_start = rss_kib(pid);
    let warm_at = Duration::from_secs(seconds / 5);
    let mut rss_warm = 0;
    let mut rss_samples = Vec::new();

    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let run_for = Duration::from_secs(seconds);
    let load_started = Instant::now();
    let mut last_sample = Instant::now();
    let mut inflight = tokio::task::JoinSet::new();
    while load_started.elapsed() < run_for {
        tick.tick().await;
        if last_sample.elapsed() >= Duration::from_secs(5) {
            last_sample = Instant::now();
            let rss = rss_kib(pid);
            rss_samples.push((load_started.elapsed().as_secs(), rss));
            if rss_warm == 0 && load_started.elapsed() >= warm_at {
                rss_warm = rss;
            }
        }
        let n = sent.fetch_add(1, Ordering::Relaxed);
        let roll = rand::random::<u32>() % 100;
        let class = match roll {
            0..60 => Class::Valid(rand::random::<u64>() % VALID_TOKENS),
            60..70 => Class::Revoked,
            70..90 => Class::Random,
            90..95 => Class::Missing,
            _ => Class::Malformed,
        };
        let route = if n % 2 == 0 { "tolerant" } else { "strict" };
        let url = format!("http://127.0.0.1:{listen}/{route}/item");
        let mut req = client.get(url);
        req = match class {
            Class::Valid(i) => req.header("authorization", format!("Bearer soak-valid-{i}")),
            Class::Revoked => req.header(
                "authorization",
                format!(
                    "Bearer soak-revoked-{}",
                    rand::random::<u64>() % REVOKED_TOKENS
                ),
            ),
            Class::Random => req.header(
                "authorization",
                format!("Bearer {}", hex::encode(rand::random::<[u8; 16]>())),
            ),
            Class::Missing => req,
            Class::Malformed => req.header("authorization", "Bearer a.b+c/d=="),
        };
        // A client trying to smuggle an identity never succeeds either.
        req = req.header("x-auth-subject", "mallory");
        let (counts, violations, transport_errors) =
            (counts.clone(), violations.clone(), transport_errors.clone());
        inflight.spawn(async move {
            let resp = match req.send().await {
                Ok(r) => r,
                Err(_) => {
                    transport_errors.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            };
            let status = resp.status().as_u16();
            *counts
                .lock()
                .unwrap()
                .entry(format!("{}:{}:{status}", class.name(), route))
                .or_default() += 1;
            let problem = match (class, status) {
                (Class::Valid(i), 200) => {
                    let body: Value = resp.json().await.unwrap_or(Value::Null);
                    let subject = body["headers"]["x-auth-subject"].as_str().unwrap_or("");
                    (subject != format!("user-{i}"))
                        .then(|| format!("valid token {i} forwarded as subject {subject:?}"))
                }
                (Class::Valid(_), 503) => None,
                (Class::Valid(_), s) => Some(format!("valid token answered {s}")),
                (c, 200) => Some(format!("{} request allowed", c.name())),
                (Class::Revoked | Class::Random, 401 | 503) => None,
                (Class::Missing | Class::Malformed, 401) => None,
                (c, s) => Some(format!("{} request answered {s}", c.name())),
            };
            if let Some(p) = problem {
                let mut v = violations.lock().unwrap();
                if v.len() < 20 {
                    v.push(p);
                }
                drop(v);
                *counts
                    .lock()
                    .unwrap()
                    .entry("violations".into())
                    .or_default() += 1;
            }
        });
        while inflight.try_join_next().is_some() {}
    }
    while inflight.join_next().await.is_some() {}
    let elapsed = load_started.elapsed();
    let rss_end = rss_kib(pid);
    let metrics = client
        .get(format!("http://127.0.0.1:{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let pick = |prefix: &str| -> BTreeMap<String, f64> {
        metrics
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| {
                l.rsplit_once(' ')
                    .map(|(k, v)| (k.to_string(), v.parse().unwrap_or(0.0)))
            })
            .filter(|(_, v)| *v > 0.0)
            .collect()
    };
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    let _ = child.0.wait();

    let sent = sent.load(Ordering::Relaxed);
    let counts = counts.lock().unwrap().clone();
    let violation_count = counts.get("violations").copied().unwrap_or(0);
    let errors = transport_errors.load(Ordering::Relaxed);
    let growth = if rss_warm > 0 {
        (rss_end as f64 - rss_warm as f64) / rss_warm as f64 * 100.0
    } else {
        0.0
    };
    let report = json!({
        "seconds": elapsed.as_secs_f64(),
        "rate_target": rate,
        "rate_achieved": sent as f64 / elapsed.as_secs_f64(),
        "flap_cycle_s": cycle,
        "requests": sent,
        "transport_errors": errors,
        "by_class_route_status": counts,
        "violations": violation_count,
        "violation_examples": *violations.lock().unwrap(),
        "provider_calls": provider_calls.load(Ordering::Relaxed),
        "rss_kib": {"start": rss_start, "warm": rss_warm, "end": rss_end, "growth_after_warm_pct": growth},
        "rss_samples": rss_samples,
        "gateway_outcomes": pick("sessiongate_requests_total{"),
        "gateway_cache": pick("sessiongate_cache_lookups_total{"),
        "stale_served": pick("sessiongate_stale_served_total{"),
        "provider_results": pick("sessiongate_provider_calls_total{"),
        "provider_rejected": pick("sessiongate_provider_rejected_total{"),
        "cache_entries": pick("sessiongate_cache_entries{"),
    });
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    let _ = std::fs::remove_dir_all(&dir);
    drop(child);
    let mut failed = false;
    if violation_count > 0 {
        eprintln!("soak: {violation_count} requests got an answer they must not get");
        failed = true;
    }
    if errors * 1000 > sent {
        eprintln!("soak: {errors} of {sent} requests failed at the transport level");
        failed = true;
    }
    if (sent as f64) < 0.9 * (rate as f64) * seconds as f64 {
        eprintln!(
            "soak: only {sent} requests sent (target {})",
            rate * seconds
        );
        failed = true;
    }
    if seconds >= 300 && growth > 5.0 {
        eprintln!("soak: RSS grew {growth:.1} % after warm-up");
        failed = true;
    }
    std::process::exit(i32::from(failed));
}
