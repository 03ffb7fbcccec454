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
    wait_for_readyz(&c, &format!("127.0.0.1:{admin_port}")).await;
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

/// Access lines are batched (see `telemetry::logging`): one written while the gateway runs
/// shows within a moment, not only at exit; and whatever is logged just before the
/// process exits is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_lines_are_written_while_running_and_at_exit() {
    use std::io::BufRead;
    let upstream = Fake::upstream().await;
    let (listen, admin_port) = (free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("sg-process-lines-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("gw.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
listen: 127.0.0.1:{listen}
admin_listen: 127.0.0.1:{admin_port}
shutdown_grace_period: 1s
pid_file: {pid}
upgrade_sock: {sock}
upstreams: {{ app: "{}" }}
routes:
  - {{ path_prefix: /, auth: none, upstream: app }}
log: {{ format: text, level: info }}
"#,
            upstream.url(),
            pid = dir.join("pid").display(),
            sock = dir.join("sock").display(),
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next_line_with = |needle: &str, within: Duration| -> Option<String> {
        let until = Instant::now() + within;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return Some(line),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    };
    let c = client();
    wait_for_readyz(&c, &format!("127.0.0.1:{admin_port}")).await;
    let get = |path: &str| c.get(format!("http://127.0.0.1:{listen}{path}")).send();
    assert_eq!(get("/first").await.unwrap().status(), 200);
    let sent = Instant::now();
    let line = next_line_with("path=\"/first\"", Duration::from_secs(2))
        .expect("the access line of a request is written while the gateway runs");
    assert!(line.contains("sessiongate::access: request"), "{line}");
    assert!(
        sent.elapsed() < Duration::from_secs(1),
        "written {:?} after the request",
        sent.elapsed()
    );
    // The last requests: their lines are still buffered when SIGTERM arrives.
    for i in 0..20 {
        assert_eq!(get(&format!("/last-{i}")).await.unwrap().status(), 200);
    }
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let rest: Vec<String> = rx.iter().collect();
    // Pingora logs its services' exits as the process ends: nothing logged last is lost
    // (the flusher thread or, for the last few milliseconds, the flush at exit).
    assert!(
        rest.iter()
            .any(|l| l.contains("pingora_core::server: service 'sessiongate proxy' exited")),
        "the lines logged last are lost:\n{}",
        rest.join("\n")
    );
    for i in 0..20 {
        let path = format!("path=\"/last-{i}\"");
        assert_eq!(
            rest.iter().filter(|l| l.contains(&path)).count(),
            1,
            "{path}:\n{}",
            rest.join("\n")
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `sessiongate admin …` from inside the container (no curl in the image): the address
/// and the admin token come from the same config; the token to purge from stdin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_subcommands_talk_to_the_running_gateway() {
    let upstream = Fake::upstream().await;
    let (listen, admin_port, api_port) = (free_port(), free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("sg-admin-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("admin-token"), "admin-cli-token-0123456789\n").unwrap();
    let config = dir.join("gw.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
listen: 127.0.0.1:{listen}
admin_listen: 127.0.0.1:{admin_port}
admin:
  listen: 127.0.0.1:{api_port}
  token_file: {}
shutdown_grace_period: 0s
providers:
  s:
    kind: static
    tokens: [{{ token: "${{SG_CLI_USER_TOKEN}}", identity: {{ subject: alice, session_id: s-1 }} }}]
upstreams: {{ app: "{}" }}
routes:
  - {{ path_prefix: /, provider: s, upstream: app }}
"#,
            dir.join("admin-token").display(),
            upstream.url()
        ),
    )
    .unwrap();
    // The same environment for the gateway and for `admin` (as inside its container).
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .env("SG_CLI_USER_TOKEN", "cli-user-token-42")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let c = client();
    wait_for_readyz(&c, &format!("127.0.0.1:{admin_port}")).await;
    let admin = |args: &[&str], stdin: &str| {
        let mut p = Command::new(BIN)
            .env("SG_CLI_USER_TOKEN", "cli-user-token-42")
            .arg("--config")
            .arg(&config)
            .arg("admin")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut p.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
        let out = p.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let get = async || {
        c.get(format!("http://127.0.0.1:{listen}/x"))
            .header("authorization", "Bearer cli-user-token-42")
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(get().await, 200);
    let (ok, out, err) = admin(&["purge", "--token-stdin"], "cli-user-token-42\n");
    assert!(ok, "{out} {err}");
    let reply: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(reply["removed"], 1, "{out}");
    assert_eq!(get().await, 200);
    let (ok, out, _) = admin(&["purge", "--subject", "alice"], "");
    assert!(ok && serde_json::from_str::<serde_json::Value>(&out).unwrap()["removed"] == 1);
    let (ok, out, err) = admin(
        &[
            "explain",
            "--path",
            "/x",
            "--method",
            "POST",
            "--token-stdin",
        ],
        "cli-user-token-42",
    );
    assert!(ok, "{out} {err}");
    let trace: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(trace["decision"]["outcome"], "allowed", "{out}");
    assert_eq!(trace["request"]["mode"], "proxy", "{out}");
    assert!(!out.contains("cli-user-token-42"), "{out}");
    let (ok, out, err) = admin(&["explain", "--path", "/x", "--mode", "decision"], "");
    assert!(ok, "{out} {err}");
    let trace: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(trace["request"]["mode"], "decision", "{out}");
    let (ok, out, err) = admin(&["reload"], "");
    assert!(ok, "{out} {err}");
    // Nothing to purge by: refused before any call; an empty stdin likewise.
    let (ok, _, err) = admin(&["purge"], "");
    assert!(!ok && err.contains("--subject"), "{err}");
    let (ok, _, err) = admin(&["purge", "--token-stdin"], "");
    assert!(!ok && err.contains("no token"), "{err}");
    child.kill().unwrap();
    let _ = child.wait();
}
