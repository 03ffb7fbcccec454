//! The Grafana dashboard in `deploy/grafana/` may only query metrics sessiongate exports:
//! every `sessiongate_*` name in its queries must appear in a running gateway's `/metrics`
//! (series are created at start, so a quiet gateway exposes them too).

use std::collections::BTreeSet;

use crate::support::*;
use serde_json::Value;

fn dashboard_metric_names() -> BTreeSet<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/grafana/sessiongate.json"
    );
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut names = BTreeSet::new();
    let panels = dash["panels"].as_array().expect("panels");
    assert!(!panels.is_empty());
    for panel in panels {
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {} has no query", panel["title"]);
        for t in targets {
            let expr = t["expr"].as_str().expect("expr");
            let mut rest = expr;
            while let Some(i) = rest.find("sessiongate_") {
                let tail = &rest[i..];
                let end = tail
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(tail.len());
                names.insert(tail[..end].to_string());
                rest = &tail[end..];
            }
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_metric_is_exported() {
    let upstream = Fake::upstream().await;
    let config = r#"
listen: {listen}
admin_listen: {admin}
shutdown_grace_period: 0s
providers:
  demo:
    kind: static
    tokens: [{ token_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08, identity: { subject: a } }]
upstreams: { app: "{upstream}" }
rate_limits:
  per-user: { rate: 100/min }
routes:
  - { name: limited, path_prefix: /limited, provider: demo, upstream: app, rate_limits: [per-user] }
  - { name: shadow, path_prefix: /shadow, provider: demo, upstream: app, mode: report, require_scopes: { all_of: [x] } }
  - { name: api, path_prefix: /, provider: demo, upstream: app, stale_if_error: 1m }
"#;
    // Per-route series exist for what the route uses: report mode (would_deny), an
    // outage budget (stale_served) and a rate limit are all configured here so the dashboard's panels
    // for them have series to find.
    let g = start_gateway(config, &[("upstream", upstream.url())]);
    let text = metrics_text(&g).await;
    let names = dashboard_metric_names();
    assert!(names.len() >= 10, "{names:?}");
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| {
            !text.lines().any(|l| {
                l.strip_prefix(n.as_str())
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
        })
        .collect();
    assert!(
        missing.is_empty(),
        "not exported by a fresh gateway: {missing:?}\n{text}"
    );
}
