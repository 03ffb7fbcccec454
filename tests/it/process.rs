//! The real binary as an operator runs it: SIGTERM ends it within the configured grace
//! period, and at trace level no log line ever contains a token.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_sessiongate");

const TOKEN_VALID: &str = "tok-VALID-7f3a9c1e5b";
const TOKEN_INVALID: &str = "tok-INVALID-2d8e4f6a0c";
const TOKEN_FAILING: &str = "tok-FAILING-9b1c3e5d7f";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_is_bounded_and_tokens_never_reach_the_logs() {
    let provider = Fake::start(|req| {
        let auth = req.header("authorization").unwrap_or("");
        if auth.ends_with(TOKEN_VALID) {
            Reply::json(
                200,
                json!({"session": {"id": "s1", "user": "u1", "expires": "2099-01-01T00:00:00Z", "scope": []}}),
            )
        } else if auth.ends_with(TOKEN_FAILING) {
            Reply::raw(502, "text/html", "<html>bad gateway</html>")
        } else {
            Reply::json(401, json!({"error": "unauthorized"}))
        }
    })
    .await;
    let upstream = Fake::upstream().await;
    let (listen, admin_port) = (free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("sg-process-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("gw.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
listen: 127.0.0.1:{listen}
admin_listen: 127.0.0.1:{admin_port}
shutdown_grace_period: 1s
providers:
  idp: {{ kind: bitgo, url: "{}/api/v2/user/session" }}
upstreams: {{ app: "{}" }}
routes:
  - {{ path_prefix: /, provider: idp, upstream: app }}
log: {{ format: json, level: trace }}
"#,
            provider.url(),
            upstream.url()
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        // The hardest case: an operator asking for wire-level logs of the HTTP crates.
        .env(
            "RUST_LOG",
            "trace,pingora_core=trace,pingora_proxy=trace,hyper=trace,reqwest=trace",
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let base = format!("http://127.0.0.1:{listen}");
    let c = client();
    let deadline = Instant::now() + Duration::from_secs(20);
    while c
        .get(format!("http://127.0.0.1:{admin_port}/readyz"))
        .send()
        .await
        .map_or(true, |r| r.status() != 200)
    {
        assert!(Instant::now() < deadline, "gateway did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let expect = [
        (TOKEN_VALID, 200),
        (TOKEN_INVALID, 401),
        (TOKEN_FAILING, 503),
    ];
    for (token, status) in expect {
        for _ in 0..2 {
            let resp = c
                .get(format!("{base}/p?x=1"))
                .header("authorization", format!("Bearer {token}"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), status, "{token}");
        }
    }

    // The container HEALTHCHECK form: no curl needed in the image.
    let probe = |path: &str| {
        Command::new(BIN)
            .args([
                "--healthcheck",
                &format!("http://127.0.0.1:{admin_port}{path}"),
            ])
            .output()
            .unwrap()
    };
    assert!(probe("/healthz").status.success());
    let missing = probe("/nope");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("404"));

    let pid = child.id().to_string();
    let stopped = Instant::now();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(5),
            "still running {:?} after SIGTERM with a 1s grace period",
            stopped.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");

    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    assert!(
        logs.contains("\"outcome\":\"allowed\""),
        "access log missing:\n{logs}"
    );
    assert!(
        logs.contains("\"outcome\":\"provider_unavailable\""),
        "{logs}"
    );
    for token in [TOKEN_VALID, TOKEN_INVALID, TOKEN_FAILING] {
        // Also no fragment long enough to matter.
        let leaks: Vec<&str> = logs.lines().filter(|l| l.contains(&token[4..])).collect();
        assert!(
            leaks.is_empty(),
            "token {token} appears in the logs:\n{}",
            leaks.join("\n")
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
